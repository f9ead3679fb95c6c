//! The critical section every image uses (defmt's encoder, the IRQ log): one CPU, IRQs masked.

/// Masks IRQs around defmt's encoder (the IRQ path may log too).
struct DaifCriticalSection;
critical_section::set_impl!(DaifCriticalSection);

// SAFETY: one CPU runs; masking IRQs (DAIF.I) excludes every other context, and `release`
// restores exactly the state `acquire` saw, so nested sections work.
unsafe impl critical_section::Impl for DaifCriticalSection {
    unsafe fn acquire() -> u64 {
        let daif: u64;
        // SAFETY: reads DAIF and masks IRQs; no memory is touched.
        unsafe {
            core::arch::asm!("mrs {0}, daif", "msr daifset, #2", out(reg) daif, options(nomem, nostack, preserves_flags));
        }
        daif
    }

    unsafe fn release(daif: u64) {
        // SAFETY: restores the DAIF value saved by `acquire`.
        unsafe {
            core::arch::asm!("msr daif, {0}", in(reg) daif, options(nomem, nostack, preserves_flags));
        }
    }
}
