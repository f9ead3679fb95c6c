//! The memory barriers the driver needs between normal-memory accesses (queues, tables) and the
//! SMMU (IHI 0070 §3.5; the instruction choice mirrors Linux's `dma_wmb`, `dma_rmb` and
//! `__iomb` on arm64), and the one way the driver stores to a live stream-table entry.
//!
//! On the host (tests and the `fakes` feature) each barrier and each table store is also
//! reported to the software models (`fake::observe`), which let the SMMU see memory only as
//! these barriers publish it.

use core::ptr::NonNull;

/// Orders earlier stores to queue/table memory before later stores, including the MMIO write
/// that publishes them (PROD): `DMB OSHST`.
#[inline(always)]
pub(crate) fn dma_wmb() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::OSHST);
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    #[cfg(any(test, feature = "fakes"))]
    crate::fake::observe::barrier(crate::fake::observe::Barrier::Wmb);
}

/// Orders an earlier read that observed the SMMU's progress (PROD, CONS, an MSI write-back)
/// before later reads of the memory it covers: `DMB OSHLD`.
#[inline(always)]
pub(crate) fn dma_rmb() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::OSHLD);
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    #[cfg(any(test, feature = "fakes"))]
    crate::fake::observe::barrier(crate::fake::observe::Barrier::Rmb);
}

/// Completes every earlier read of queue slots before the MMIO write (CONS) that lets the SMMU
/// overwrite them: `DMB OSH`.
#[inline(always)]
pub(crate) fn dma_mb() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::OSH);
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
    #[cfg(any(test, feature = "fakes"))]
    crate::fake::observe::barrier(crate::fake::observe::Barrier::Mb);
}

/// Stores `v` at `p`, a qword of a stream-table entry or L1 descriptor the SMMU may fetch at
/// any moment: one 64-bit store, single-copy atomic for the SMMU (IHI 0070 §3.21.3).
///
/// # Safety
/// `p` is 8-byte aligned, inside lent DMA memory valid for writes, and the caller has exclusive
/// CPU-side access to it (the stream-table lock, or a table nothing else references yet).
#[inline(always)]
pub(crate) unsafe fn table_store(p: NonNull<u64>, v: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe { p.as_ptr().write_volatile(v) };
    #[cfg(any(test, feature = "fakes"))]
    crate::fake::observe::table_store(p.as_ptr().addr());
}
