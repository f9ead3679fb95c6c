//! What runs before any Rust code: FP/SIMD access at EL2 and the MMU with an identity map.
//!
//! aarch64-rt's entry code calls `enable_mmu` first, with no stack, and preserves x0-x3 around it.
//! With its `initial-pagetable` feature the application provides that symbol; this one also sets
//! CPTR_EL2 so that the NEON code the compiler emits (memcpy, core::fmt) cannot trap, which
//! aarch64-rt does not do at EL2.

use crate::mmu::{DEVICE_1G, NORMAL_1G};

/// TCR_EL2 (E2H = 0): RES1 bits 31 and 23, PS = 0b010 (40-bit PA, covers the high ECAM at
/// 0x40_1000_0000), TG0 = 4 KiB, inner-shareable write-back walks, T0SZ = 25 (39-bit VA, one
/// level-1 table of 1 GiB blocks).
const TCR: u64 =
    (1 << 31) | (1 << 23) | (0b010 << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | 25;
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

crate::mmu::enable_mmu!(BOOT_PAGETABLE, TCR);
