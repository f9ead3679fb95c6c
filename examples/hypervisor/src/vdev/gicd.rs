//! The guest's GIC distributor: the physical one, with the hypervisor's own interrupts taken out
//! of the guest's reach.
//!
//! The distributor is left out of the guest's stage 2; every access traps here and is forwarded
//! to the physical GICD, except what would touch the interrupts the hypervisor owns (the SMMU's
//! INTID 106-109): enable, pending and active bits, group, priority, trigger and routing of those
//! are kept as the hypervisor set them, and GICD_CTLR keeps Group 1 and affinity routing on.
//! Reads are forwarded as they are (the guest may see the hypervisor's lines enabled).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use super::gicd_filter::{Write, filter};
use crate::board::GICD_BASE;
use crate::vm::vgic::SMMU_INTIDS;

static ACCESSES: AtomicU32 = AtomicU32::new(0);
/// Off when the SMMU is passed through: its lines are then the guest's.
static PROTECT: AtomicBool = AtomicBool::new(true);

/// Whether the hypervisor's INTIDs are protected (set before the guest starts).
pub fn protect(on: bool) {
    PROTECT.store(on, Ordering::Relaxed);
}

static KEPT: AtomicU32 = AtomicU32::new(0);

/// One trapped guest access at `offset` (0..0x1_0000) of `size` bytes; returns what a read gets.
pub fn access(offset: u64, size: u8, write: Option<u64>) -> u64 {
    ACCESSES.fetch_add(1, Ordering::Relaxed);
    let Some(value) = write else {
        return read(offset, size);
    };
    let owned = PROTECT.load(Ordering::Relaxed).then_some(&SMMU_INTIDS);
    let action = filter(offset, size, value, owned);
    if action != Write::Forward(value) {
        KEPT.fetch_add(1, Ordering::Relaxed);
    }
    match action {
        Write::Forward(v) => write_raw(offset, size, v),
        Write::Merge { value, keep } => {
            let current = read(offset, size);
            write_raw(offset, size, (value & !keep) | (current & keep));
        }
        Write::Drop => {}
    }
    0
}

fn read(offset: u64, size: u8) -> u64 {
    let addr = GICD_BASE + offset as usize;
    // SAFETY: a register of the GIC distributor (offset < 64 KiB, checked by `vdev::mmio`),
    // identity-mapped device memory at EL2; reads have no side effects on the distributor.
    unsafe {
        match size {
            1 => u64::from((addr as *const u8).read_volatile()),
            2 => u64::from((addr as *const u16).read_volatile()),
            4 => u64::from((addr as *const u32).read_volatile()),
            _ => (addr as *const u64).read_volatile(),
        }
    }
}

fn write_raw(offset: u64, size: u8, value: u64) {
    let addr = GICD_BASE + offset as usize;
    // SAFETY: as in `read`; the caller has removed what would change the hypervisor's own
    // interrupts.
    unsafe {
        match size {
            1 => (addr as *mut u8).write_volatile(value as u8),
            2 => (addr as *mut u16).write_volatile(value as u16),
            4 => (addr as *mut u32).write_volatile(value as u32),
            _ => (addr as *mut u64).write_volatile(value),
        }
    }
}

/// Trapped distributor accesses, and how many of them had the hypervisor's part taken out.
pub fn counts() -> (u32, u32) {
    (
        ACCESSES.load(Ordering::Relaxed),
        KEPT.load(Ordering::Relaxed),
    )
}
