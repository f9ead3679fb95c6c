//! What runs before any Rust code: FP/SIMD access at EL2 and the MMU with an identity map.
//!
//! aarch64-rt's entry code calls `enable_mmu` first, with no stack, and preserves x0-x3 around it.
//! With its `initial-pagetable` feature the application provides that symbol; this one also sets
//! CPTR_EL2 so that the NEON code the compiler emits (memcpy, core::fmt) cannot trap, which
//! aarch64-rt does not do at EL2.

use core::arch::global_asm;

/// MAIR_EL2: index 0 = Device-nGnRE, index 1 = Normal write-back read/write-allocate.
const MAIR: u64 = 0x04 | (0xff << 8);
/// Attribute index of [`MAIR`]'s device entry.
const ATTR_DEVICE: u64 = 0 << 2;
/// Attribute index of [`MAIR`]'s normal-memory entry.
const ATTR_NORMAL: u64 = 1 << 2;
/// Block descriptor (bits [1:0] = 0b01) with the access flag set.
const BLOCK: u64 = 0b01 | (1 << 10);
/// Inner shareable.
const SH_INNER: u64 = 0b11 << 8;
/// Execute-never at EL2 (bit 54).
const XN: u64 = 1 << 54;
const DEVICE_1G: u64 = BLOCK | ATTR_DEVICE | XN;
const NORMAL_1G: u64 = BLOCK | ATTR_NORMAL | SH_INNER;

/// TCR_EL2 (E2H = 0): RES1 bits 31 and 23, PS = 0b010 (40-bit PA, covers the high ECAM at
/// 0x40_1000_0000), TG0 = 4 KiB, inner-shareable write-back walks, T0SZ = 25 (39-bit VA, one
/// level-1 table of 1 GiB blocks).
const TCR: u64 =
    (1 << 31) | (1 << 23) | (0b010 << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | 25;
/// SCTLR_EL2 (E2H = 0): M, C, SA, I plus the RES1 bits 4, 5, 11, 16, 18, 22, 23, 28, 29. A = 0, so
/// unaligned accesses to normal memory are allowed.
const SCTLR: u64 = (1 << 0)
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
const CPTR: u64 = 0x33ff;

/// An identity map of QEMU `virt`'s low 2 GiB and of the GiB holding the high PCIe ECAM.
#[repr(C, align(4096))]
struct BootPagetable([u64; 512]);

const fn boot_pagetable() -> BootPagetable {
    let mut t = [0u64; 512];
    // 0..1 GiB: flash, GIC, UART, SMMU, PCIe MMIO32 window and ECAM (low): device memory.
    t[0] = DEVICE_1G;
    // 1..2 GiB: RAM (0x4000_0000, 512 MiB with `-m 512M`): normal cacheable memory.
    t[1] = 0x4000_0000 | NORMAL_1G;
    // 256..257 GiB: PCIe ECAM (high) at 0x40_1000_0000: device memory.
    t[256] = 0x40_0000_0000 | DEVICE_1G;
    BootPagetable(t)
}

static BOOT_PAGETABLE: BootPagetable = boot_pagetable();

// Called by aarch64-rt's entry with `bl`, before .bss is zeroed and before SP is set: may use
// only x8-x12 and must return with x0-x3 intact. The TLB and I-cache are invalidated before the
// MMU is turned on, since nothing can be assumed about them at reset.
global_asm!(
    ".section .init.enable_mmu, \"ax\"",
    ".global enable_mmu",
    "enable_mmu:",
    "    movz x8, #{cptr}",
    "    msr cptr_el2, x8",
    "    isb",
    "    movz x8, #{mair}",
    "    msr mair_el2, x8",
    "    adrp x9, {pagetable}",
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
    cptr = const CPTR,
    mair = const MAIR,
    pagetable = sym BOOT_PAGETABLE,
    tcr_lo = const TCR & 0xffff,
    tcr_hi = const TCR >> 16,
    sctlr_lo = const SCTLR & 0xffff,
    sctlr_hi = const SCTLR >> 16,
);

const _: () = assert!(TCR >> 32 == 0 && SCTLR >> 32 == 0 && CPTR >> 16 == 0 && MAIR >> 16 == 0);
