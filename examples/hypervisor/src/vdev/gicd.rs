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

use crate::board::GICD_BASE;
use crate::vm::vgic::SMMU_INTIDS;

/// GICD_CTLR.EnableGrp1 (bit 1) and ARE (bit 4) with DS = 1.
const CTLR_KEEP: u64 = (1 << 1) | (1 << 4);

static ACCESSES: AtomicU32 = AtomicU32::new(0);
/// Off when the SMMU is passed through: its lines are then the guest's.
static PROTECT: AtomicBool = AtomicBool::new(true);

/// Whether the hypervisor's INTIDs are protected (set before the guest starts).
pub fn protect(on: bool) {
    PROTECT.store(on, Ordering::Relaxed);
}
static KEPT: AtomicU32 = AtomicU32::new(0);

/// Whether `intid` is one the hypervisor owns.
fn own(intid: u64) -> bool {
    PROTECT.load(Ordering::Relaxed) && u32::try_from(intid).is_ok_and(|i| SMMU_INTIDS.contains(&i))
}

/// Of the `width`-bit fields of the register word at `offset` within a per-INTID array starting
/// at `base` (one field per INTID), the mask of those that belong to the hypervisor's INTIDs.
fn own_mask(offset: u64, base: u64, width: u64, size: u8) -> u64 {
    let per_byte = 8 / width;
    let first = (offset - base) * per_byte;
    let fields = u64::from(size) * per_byte;
    let mut mask = 0u64;
    for f in 0..fields {
        if own(first + f) {
            mask |= ((1u64 << width) - 1) << (f * width);
        }
    }
    mask
}

/// One trapped guest access at `offset` (0..0x1_0000) of `size` bytes; returns what a read gets.
pub fn access(offset: u64, size: u8, write: Option<u64>) -> u64 {
    ACCESSES.fetch_add(1, Ordering::Relaxed);
    let Some(value) = write else {
        return read(offset, size);
    };
    let keep = match offset {
        // GICD_CTLR: Group 1 and affinity routing stay enabled.
        0x0000 => {
            let keep = if PROTECT.load(Ordering::Relaxed) {
                CTLR_KEEP
            } else {
                0
            };
            write_raw(offset, size, value | keep);
            return 0;
        }
        // GICD_SETSPI_NSR, GICD_CLRSPI_NSR, GICD_SETSPI_SR, GICD_CLRSPI_SR: the value is an INTID.
        0x0040 | 0x0048 | 0x0050 | 0x0058 => {
            if own(value & 0x3ff) {
                KEPT.fetch_add(1, Ordering::Relaxed);
                return 0;
            }
            0
        }
        // IGROUPR: the hypervisor's lines stay Group 1.
        0x0080..=0x00ff => {
            let m = own_mask(offset, 0x0080, 1, size);
            write_raw(offset, size, value | m);
            if m != 0 {
                KEPT.fetch_add(1, Ordering::Relaxed);
            }
            return 0;
        }
        // ISENABLER, ICENABLER, ISPENDR, ICPENDR, ISACTIVER, ICACTIVER (set/clear: a 0 changes
        // nothing, so the hypervisor's bits are cleared from the value).
        0x0100..=0x03ff => own_mask(offset, offset & !0x7f, 1, size),
        // IPRIORITYR: one byte per INTID.
        0x0400..=0x07ff => own_mask(offset, 0x0400, 8, size),
        // ICFGR: two bits per INTID.
        0x0c00..=0x0cff => own_mask(offset, 0x0c00, 2, size),
        // IGRPMODR.
        0x0d00..=0x0d7f => own_mask(offset, 0x0d00, 1, size),
        // IROUTER: 8 bytes per INTID.
        0x6000..=0x7fff => {
            if own((offset - 0x6000) / 8) {
                KEPT.fetch_add(1, Ordering::Relaxed);
                return 0;
            }
            0
        }
        _ => 0,
    };
    if keep == 0 {
        write_raw(offset, size, value);
        return 0;
    }
    KEPT.fetch_add(1, Ordering::Relaxed);
    if (0x0100..=0x03ff).contains(&offset) {
        // Set/clear registers: drop the hypervisor's bits.
        write_raw(offset, size, value & !keep);
    } else {
        // Value registers: the hypervisor's fields keep their current value.
        let current = read(offset, size);
        write_raw(offset, size, (value & !keep) | (current & keep));
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
