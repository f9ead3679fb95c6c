//! Virtual devices: what the guest reaches through stage-2 faults on regions left out of its
//! stage 2: the SMMU's register window, the GIC distributor and CPU 0's redistributor control
//! frame; every other unmapped access (the ITS, the hypervisor's memory) is refused (reads as
//! zero, writes ignored) and counted.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod gicd;
pub mod gicd_filter;
pub mod gicr;
pub mod smmu;

use core::sync::atomic::{AtomicU32, Ordering};

use crate::board;
use crate::vm::stats::{self, Exit};

/// One trapped guest access.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Access {
    /// The intermediate physical address.
    pub ipa: u64,
    /// Size in bytes: 1, 2, 4 or 8.
    pub size: u8,
    /// The value written, or `None` for a read.
    pub write: Option<u64>,
}

static REFUSED: AtomicU32 = AtomicU32::new(0);

/// Emulates `access`; returns the value a read gets (ignored for writes).
pub fn mmio(access: Access) -> u64 {
    if let Some(offset) = access
        .ipa
        .checked_sub(board::SMMU_BASE)
        .filter(|o| *o < board::SMMU_SIZE)
    {
        stats::count(Exit::Mmio);
        return smmu::access(offset, access.size, access.write);
    }
    if let Some(offset) = (access.ipa)
        .checked_sub(board::GICD_BASE as u64)
        .filter(|o| *o < board::GICD_SIZE)
    {
        stats::count(Exit::Gicd);
        return gicd::access(offset, access.size, access.write);
    }
    if let Some(offset) = (access.ipa)
        .checked_sub(board::GICR_BASE as u64)
        .filter(|o| *o < board::GICR_RD_SIZE)
    {
        stats::count(Exit::Gicd);
        return gicr::access(offset, access.size, access.write);
    }
    let n = REFUSED.fetch_add(1, Ordering::Relaxed);
    if n < 8 {
        defmt::warn!("VM: guest access outside its memory refused: {}", access);
    }
    0
}

/// Guest accesses that hit no device and no memory.
pub fn refused() -> u32 {
    REFUSED.load(Ordering::Relaxed)
}
