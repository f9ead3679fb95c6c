//! The memory barriers the driver needs between normal-memory accesses (queues, tables) and the
//! SMMU (IHI 0070 §3.5; the instruction choice mirrors what Linux uses on arm64).

/// Orders earlier stores to queue/table memory before later stores, including the MMIO write
/// that publishes them (PROD): `DMB OSHST`.
#[inline(always)]
pub(crate) fn dma_wmb() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::OSHST);
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Orders an earlier read that observed the SMMU's progress (PROD, CONS, an MSI write-back)
/// before later reads of the memory it covers: `DMB OSHLD`.
#[inline(always)]
pub(crate) fn dma_rmb() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::OSHLD);
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}

/// Completes every earlier read of queue slots before the MMIO write (CONS) that lets the SMMU
/// overwrite them: `DMB OSH`.
#[inline(always)]
pub(crate) fn dma_mb() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::OSH);
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(core::sync::atomic::Ordering::SeqCst);
}
