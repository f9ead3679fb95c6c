//! What only the hypervisor knows: time, waiting, cache maintenance, and the DMA memory it lends.
//!
//! The driver never allocates from a heap. Tables and queues live in memory the hypervisor lends
//! through [`DmaMemory`]; waits are bounded by [`Platform::now_us`] and a configured timeout.

use core::ptr::NonNull;

use crate::error::WaitFor;
use crate::ids::PhysAddr;

/// Whether an MMIO access read or wrote the register.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MmioAccess {
    /// A load from the register.
    Read,
    /// A store to the register.
    Write,
}

/// Services the driver needs from its environment.
///
/// Every method has a cheap default except [`now_us`](Platform::now_us). On hardware the MMIO hook
/// compiles to nothing; the software models in [`crate::fake`] use it to run the model exactly
/// where a real SMMU would observe an access.
pub trait Platform {
    /// A monotonic clock in microseconds, used to bound every wait.
    fn now_us(&self) -> u64;

    /// Called once per iteration of a polling loop, with what is being waited for.
    fn relax(&self, what: WaitFor) {
        let _ = what;
        core::hint::spin_loop();
    }

    /// Waits for an event (AArch64 `WFE`), used when the SMMU signals CMD_SYNC completion with
    /// SEV (IDR0.SEV). The default just relaxes; a spurious return is always allowed.
    fn wait_for_event(&self, what: WaitFor) {
        self.relax(what);
    }

    /// Observes one MMIO access: called *before* a read and *after* a write of the register at
    /// `addr` (its virtual address). Hardware platforms leave the default, which does nothing.
    #[inline(always)]
    fn mmio(&self, addr: usize, access: MmioAccess) {
        let _ = (addr, access);
    }

    /// Makes `len` bytes at `vaddr`, written by the CPU, visible to a non-coherent SMMU (clean the
    /// data cache to the point of coherency). Called only when the SMMU is not coherent.
    fn dma_flush(&self, vaddr: NonNull<u8>, len: usize) {
        let _ = (vaddr, len);
    }

    /// Makes `len` bytes at `vaddr`, written by a non-coherent SMMU, visible to the CPU
    /// (invalidate the data cache). Called only when the SMMU is not coherent.
    fn dma_invalidate(&self, vaddr: NonNull<u8>, len: usize) {
        let _ = (vaddr, len);
    }
}

/// A block of lent DMA memory: where the CPU sees it and where the SMMU sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DmaBuf {
    /// The CPU's address of the first byte.
    pub vaddr: NonNull<u8>,
    /// The address the SMMU uses for the first byte.
    pub paddr: PhysAddr,
    /// Size in bytes.
    pub size: usize,
}

// SAFETY: a `DmaBuf` is a description of memory (addresses and a size), not a reference to it;
// the code that dereferences `vaddr` is responsible for synchronisation.
unsafe impl Send for DmaBuf {}
// SAFETY: as for `Send`: sharing the description shares no access.
unsafe impl Sync for DmaBuf {}

/// DMA-able memory the hypervisor lends to the driver for stream tables, queues and CD tables.
///
/// The driver allocates at probe and lazily for 2-level stream-table leaves; it never frees (like
/// Linux, whose level-2 tables live as long as the SMMU). `smmu::MemoryPlan` says how
/// much a configuration needs.
///
/// # Safety
///
/// Callers (the driver) only access a returned buffer within its `size`.
///
/// # Implementation safety
///
/// Every buffer returned by [`alloc`](DmaMemory::alloc) must be zero-filled, physically contiguous,
/// aligned to `align` both at `vaddr` and at `paddr`, at least `size` bytes long, mapped for the CPU
/// at `vaddr` for as long as the allocator lives, reachable by the SMMU at `paddr`, and not aliased
/// by any other allocation or by memory the hypervisor uses for anything else.
pub unsafe trait DmaMemory {
    /// Allocates `size` zeroed bytes aligned to `align` (a power of two), or `None` when the lent
    /// memory is exhausted.
    fn alloc(&self, size: usize, align: usize) -> Option<DmaBuf>;
}

// SAFETY: forwards to `T`, which meets the contract; sharing the allocator shares no buffer.
unsafe impl<T: DmaMemory + ?Sized> DmaMemory for &T {
    fn alloc(&self, size: usize, align: usize) -> Option<DmaBuf> {
        (**self).alloc(size, align)
    }
}

/// A bump allocator over one region the hypervisor lends at start-up.
///
/// The region must satisfy [`DmaMemory`]'s implementation contract as a whole; the bump
/// allocator then satisfies it for each piece.
pub struct BumpDma {
    base: NonNull<u8>,
    paddr: PhysAddr,
    size: usize,
    next: spin::Mutex<usize>,
}

// SAFETY: the region is owned by the allocator (contract of `BumpDma::new`), and `next` is
// protected by a lock.
unsafe impl Send for BumpDma {}
// SAFETY: as above; `alloc` takes the lock.
unsafe impl Sync for BumpDma {}

impl BumpDma {
    /// Lends `size` bytes at CPU address `base`, which the SMMU sees at `paddr`.
    ///
    /// # Safety
    ///
    /// The region is zero-filled, physically contiguous, mapped at `base` for the allocator's life,
    /// reachable by the SMMU at `paddr`, and used by nothing else.
    pub const unsafe fn new(base: NonNull<u8>, paddr: PhysAddr, size: usize) -> Self {
        Self {
            base,
            paddr,
            size,
            next: spin::Mutex::new(0),
        }
    }

    /// Bytes handed out so far, including alignment padding.
    pub fn used(&self) -> usize {
        *self.next.lock()
    }

    /// The size of the lent region.
    pub fn capacity(&self) -> usize {
        self.size
    }
}

// SAFETY: allocations are disjoint sub-ranges of a region that meets the contract (promised by
// the caller of `BumpDma::new`); both `vaddr` and `paddr` are aligned because the offset is
// aligned relative to both bases, which is checked.
unsafe impl DmaMemory for BumpDma {
    fn alloc(&self, size: usize, align: usize) -> Option<DmaBuf> {
        if !align.is_power_of_two() {
            return None;
        }
        let mut next = self.next.lock();
        let va = self.base.as_ptr().addr().checked_add(*next)?;
        let pad = va.wrapping_neg() & (align - 1);
        let start = next.checked_add(pad)?;
        let end = start.checked_add(size)?;
        if end > self.size {
            return None;
        }
        let paddr = self.paddr.add(start as u64);
        if !paddr.is_aligned(align as u64) {
            return None;
        }
        *next = end;
        // SAFETY: `start <= end <= self.size`, so the pointer stays inside the lent region (or
        // one past its end, for a zero-sized buffer at the very end).
        let vaddr = unsafe { self.base.add(start) };
        Some(DmaBuf { vaddr, paddr, size })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bump_allocates_aligned_disjoint_pieces() {
        #[repr(C, align(65536))]
        struct Region([u8; 1 << 17]);
        let mut region = Box::new(Region([0; 1 << 17]));
        let base = NonNull::new(region.0.as_mut_ptr()).unwrap();
        // SAFETY: the boxed region is zeroed, lives for the test, and nothing else uses it.
        let dma = unsafe { BumpDma::new(base, PhysAddr(0x8000_0000), 1 << 17) };
        let a = dma.alloc(64, 64).unwrap();
        let b = dma.alloc(0x4000, 0x4000).unwrap();
        assert_eq!(a.paddr, PhysAddr(0x8000_0000));
        assert_eq!(b.paddr, PhysAddr(0x8000_4000));
        assert!(dma.alloc(1 << 17, 64).is_none());
        assert!(dma.alloc(8, 3).is_none());
        assert_eq!(dma.used(), 0x8000);
    }
}
