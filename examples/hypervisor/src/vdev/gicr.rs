//! The guest's view of CPU 0's redistributor control frame (RD_base, the first 64 KiB at
//! 0x080A_0000): forwarded to the physical one, except that LPIs stay off.
//!
//! With LPIs on, the redistributor reads and writes the LPI property and pending tables wherever
//! GICR_PROPBASER/PENDBASER point, physical addresses not translated by the guest's stage 2 or
//! the SMMU: a guest that could set them could make the GIC write the hypervisor's memory. The
//! guest has no ITS (its node is removed from its device tree and its frame from its stage 2), so
//! it needs no LPIs: GICR_CTLR.EnableLPIs is kept 0 and writes to PROPBASER/PENDBASER are dropped.
//! The SGI/PPI frame (RD_base + 64 KiB) stays in the guest's stage 2.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::sync::atomic::{AtomicU32, Ordering};

use crate::board::GICR_BASE;

/// GICR_CTLR.EnableLPIs, bit [0].
const CTLR_ENABLE_LPIS: u64 = 1;
/// GICR_PROPBASER and GICR_PENDBASER (64-bit each).
const PROPBASER: u64 = 0x0070;
const PENDBASER: u64 = 0x0078;

static ACCESSES: AtomicU32 = AtomicU32::new(0);
static REFUSED: AtomicU32 = AtomicU32::new(0);

/// One trapped guest access at `offset` (0..0x1_0000) of `size` bytes; returns what a read gets.
pub fn access(offset: u64, size: u8, write: Option<u64>) -> u64 {
    ACCESSES.fetch_add(1, Ordering::Relaxed);
    let addr = GICR_BASE + offset as usize;
    let Some(value) = write else {
        // SAFETY: a register of CPU 0's redistributor control frame (offset < 64 KiB, checked by
        // `vdev::mmio`), identity-mapped device memory at EL2; reads have no side effects.
        return unsafe {
            match size {
                4 => u64::from((addr as *const u32).read_volatile()),
                8 => (addr as *const u64).read_volatile(),
                _ => 0,
            }
        };
    };
    let value = match offset {
        0 if value & CTLR_ENABLE_LPIS != 0 => {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            value & !CTLR_ENABLE_LPIS
        }
        o if (PROPBASER..PENDBASER + 8).contains(&o) => {
            REFUSED.fetch_add(1, Ordering::Relaxed);
            return 0;
        }
        _ => value,
    };
    // SAFETY: as for the read; what would let the redistributor reach memory (LPI enable, table
    // bases) was taken out above.
    unsafe {
        match size {
            4 => (addr as *mut u32).write_volatile(value as u32),
            8 => (addr as *mut u64).write_volatile(value),
            _ => {}
        }
    }
    0
}

/// Trapped accesses, and how many of them were refused (LPI enable, table bases).
pub fn counts() -> (u32, u32) {
    (
        ACCESSES.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed),
    )
}
