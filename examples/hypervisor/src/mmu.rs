//! The demo image's MMU constants (used by boot.rs): the memory
//! attributes, block descriptor bits, SCTLR_EL2 and CPTR_EL2.

/// MAIR_EL2: index 0 = Device-nGnRE, index 1 = Normal write-back read/write-allocate.
pub const MAIR: u64 = 0x04 | (0xff << 8);
/// Attribute index of [`MAIR`]'s device entry.
pub const ATTR_DEVICE: u64 = 0 << 2;
/// Attribute index of [`MAIR`]'s normal-memory entry.
pub const ATTR_NORMAL: u64 = 1 << 2;
/// Block descriptor (bits [1:0] = 0b01) with the access flag set.
pub const BLOCK: u64 = 0b01 | (1 << 10);
/// Inner shareable.
pub const SH_INNER: u64 = 0b11 << 8;
/// Execute-never at EL2 (bit 54).
pub const XN: u64 = 1 << 54;
/// A 1 GiB block of device memory.
pub const DEVICE_1G: u64 = BLOCK | ATTR_DEVICE | XN;
/// A 1 GiB block of normal inner-shareable memory.
pub const NORMAL_1G: u64 = BLOCK | ATTR_NORMAL | SH_INNER;

/// SCTLR_EL2 (E2H = 0): M, C, SA, I plus the RES1 bits 4, 5, 11, 16, 18, 22, 23, 28, 29. A = 0, so
/// unaligned accesses to normal memory are allowed.
pub const SCTLR: u64 = (1 << 0)
    | (1 << 2)
    | (1 << 3)
    | (1 << 12)
    | (1 << 4)
    | (1 << 5)
    | (1 << 11)
    | (1 << 16)
    | (1 << 18)
    | (1 << 22)
    | (1 << 23)
    | (1 << 28)
    | (1 << 29);
/// CPTR_EL2 (E2H = 0): RES1 bits [13:12], [9:0] set; TFP (bit 10), TTA, TCPAC and TZ clear, so
/// FP/SIMD at EL2 does not trap.
pub const CPTR: u64 = 0x33ff;

/// Defines `enable_mmu`, which aarch64-rt's entry calls with `bl` before .bss is zeroed and
/// before SP is set (so it may use only x8-x12 and must return with x0-x3 intact): CPTR_EL2 (no
/// FP/SIMD traps), MAIR_EL2, TTBR0_EL2 = `$pagetable` (its address in x9; the `$fixup`
/// instructions run right after and may complete the table through x9-x11), TCR_EL2 = `$tcr`,
/// then the TLB and I-cache invalidated (nothing can be assumed about them at reset) and
/// SCTLR_EL2 with the MMU and caches on.
macro_rules! enable_mmu {
    ($pagetable:path, $tcr:expr $(, $fixup:literal)* $(,)?) => {
        core::arch::global_asm!(
            ".section .init.enable_mmu, \"ax\"",
            ".global enable_mmu",
            "enable_mmu:",
            "    movz x8, #{cptr}",
            "    msr cptr_el2, x8",
            "    isb",
            "    movz x8, #{mair}",
            "    msr mair_el2, x8",
            "    adrp x9, {pagetable}",
            $($fixup,)*
            "    msr ttbr0_el2, x9",
            "    movz x10, #{tcr_lo}",
            "    movk x10, #{tcr_hi}, lsl #16",
            "    msr tcr_el2, x10",
            "    isb",
            "    tlbi alle2",
            "    ic iallu",
            "    dsb nsh",
            "    isb",
            "    movz x11, #{sctlr_lo}",
            "    movk x11, #{sctlr_hi}, lsl #16",
            "    msr sctlr_el2, x11",
            "    isb",
            "    ret",
            cptr = const crate::mmu::CPTR,
            mair = const crate::mmu::MAIR,
            pagetable = sym $pagetable,
            tcr_lo = const $tcr & 0xffff,
            tcr_hi = const $tcr >> 16,
            sctlr_lo = const crate::mmu::SCTLR & 0xffff,
            sctlr_hi = const crate::mmu::SCTLR >> 16,
        );
        const _: () = assert!(
            $tcr >> 32 == 0
                && crate::mmu::SCTLR >> 32 == 0
                && crate::mmu::CPTR >> 16 == 0
                && crate::mmu::MAIR >> 16 == 0
        );
    };
}
pub(crate) use enable_mmu;
