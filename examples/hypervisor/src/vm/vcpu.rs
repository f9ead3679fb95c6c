//! The vCPU: EL2 state for a guest at EL1 (HCR_EL2, stage 2, timers, FP/SVE/SME access), the
//! entry into the guest, and the guest's general registers as a trap handler sees them.

use aarch64_rt::RegisterState;

use super::sysreg::{mrs, msr};
use crate::stage2::Stage2Tables;

/// HCR_EL2.VM, bit [0]: stage-2 translation on.
const HCR_VM: u64 = 1 << 0;
/// HCR_EL2.SWIO, bit [1]: set/way invalidation becomes clean and invalidate.
const HCR_SWIO: u64 = 1 << 1;
/// HCR_EL2.FMO, bit [3]: physical FIQs to EL2.
const HCR_FMO: u64 = 1 << 3;
/// HCR_EL2.IMO, bit [4]: physical IRQs to EL2; the guest's ICC_* go to the virtual interface.
const HCR_IMO: u64 = 1 << 4;
/// HCR_EL2.AMO, bit [5]: SErrors to EL2.
const HCR_AMO: u64 = 1 << 5;
/// HCR_EL2.TSC, bit [19]: the guest's SMCs trap to EL2 (PSCI goes through [`super::psci`]).
const HCR_TSC: u64 = 1 << 19;
/// HCR_EL2.RW, bit [31]: EL1 is AArch64.
const HCR_RW: u64 = 1 << 31;
/// HCR_EL2.APK, bit [40]: pointer-authentication key registers do not trap.
const HCR_APK: u64 = 1 << 40;
/// HCR_EL2.API, bit [41]: pointer-authentication instructions do not trap.
const HCR_API: u64 = 1 << 41;
/// What the guest runs with.
pub const HCR: u64 =
    HCR_VM | HCR_SWIO | HCR_FMO | HCR_IMO | HCR_AMO | HCR_TSC | HCR_RW | HCR_APK | HCR_API;

/// HCRX_EL2.MSCEn, bit [11]: FEAT_MOPS instructions (memcpy/memset in userspace) do not UNDEF.
const HCRX_MSCEN: u64 = 1 << 11;

/// VTCR_EL2 for [`Stage2Tables`]: T0SZ = 25 (39-bit IPA), SL0 = 1 (start at level 1), inner and
/// outer write-back walks, inner shareable, 4 KiB granule, PS = 40 bits, RES1 bit 31.
const VTCR: u64 = (Stage2Tables::T0SZ as u64)
    | ((Stage2Tables::SL0 as u64) << 6)
    | (1 << 8)
    | (1 << 10)
    | (3 << 12)
    | (0b010 << 16)
    | (1 << 31);
/// The VM's VMID (8-bit VMIDs, VTCR_EL2.VS = 0).
pub const VMID: u64 = 1;

/// CPTR_EL2 (E2H = 0): only the RES1 bits (13, 12 or TSM, 9, 8 or TZ, 7:0 minus what SVE/SME use):
/// FP/SIMD, SVE and SME do not trap.
const CPTR: u64 = (1 << 13) | (1 << 9) | 0xff;
/// SMCR_EL2.FA64, bit [31]: the full A64 instruction set in streaming mode, so the hypervisor's
/// own FP/SIMD code runs even if the guest was interrupted in streaming mode.
const SMCR_FA64: u64 = 1 << 31;
/// SCTLR_EL1 at reset for Linux: RES1 bits 29, 28, 23, 22, 20, 11; MMU and caches off.
const SCTLR_EL1: u64 = (1 << 29) | (1 << 28) | (1 << 23) | (1 << 22) | (1 << 20) | (1 << 11);
/// SPSR_EL2 for the first entry: EL1h, DAIF masked.
const SPSR_EL1H: u64 = 0x3c5;

/// Sets up EL2 for the guest and enters it at `entry` with `x0` = `dtb` (arm64 boot protocol).
///
/// SVE and SME vector lengths are limited to 128 bits (ZCR_EL2.LEN = SMCR_EL2.LEN = 0): a Z
/// register is then exactly the Q register the exit path saves, so the hypervisor's own NEON code
/// cannot clobber guest state it does not save.
pub fn enter(entry: u64, dtb: u64, s2: &Stage2Tables) -> ! {
    let pfr0 = mrs!("id_aa64pfr0_el1");
    let pfr1 = mrs!("id_aa64pfr1_el1");
    let mmfr1 = mrs!("id_aa64mmfr1_el1");
    msr!("cptr_el2", CPTR);
    isb();
    if (pfr0 >> 32) & 0xf != 0 {
        // ZCR_EL2
        msr!("s3_4_c1_c2_0", 0);
    }
    if (pfr1 >> 24) & 0xf != 0 {
        // SMCR_EL2
        msr!("s3_4_c1_c2_6", SMCR_FA64);
    }
    if (mmfr1 >> 40) & 0xf != 0 {
        // HCRX_EL2
        msr!("s3_4_c1_c2_2", HCRX_MSCEN);
    }
    // The EL1 physical counter and timer are the guest's; no virtual offset.
    msr!("cnthctl_el2", 0b11);
    msr!("cntvoff_el2", 0);
    // Performance counters: all of them to EL1 (HPMN = PMCR_EL0.N), nothing traps.
    let pmcr_n = (mrs!("pmcr_el0") >> 11) & 0x1f;
    msr!("mdcr_el2", pmcr_n);
    msr!("vpidr_el2", mrs!("midr_el1"));
    msr!("vmpidr_el2", mrs!("mpidr_el1"));
    msr!("sctlr_el1", SCTLR_EL1);
    msr!("vtcr_el2", VTCR);
    msr!("vttbr_el2", s2.s2ttb().0 | (VMID << 48));
    msr!("hcr_el2", HCR);
    isb();
    // SAFETY: invalidates the TLB entries of this VMID (none are valid yet); no memory accesses.
    unsafe {
        core::arch::asm!(
            "tlbi vmalls12e1",
            "dsb nsh",
            "isb",
            options(nostack, preserves_flags)
        );
    }
    // SAFETY: the guest runs at EL1 under the stage 2 just installed, which maps only its own
    // RAM and devices; the hypervisor's memory stays out of its reach. Exits come back through
    // the vector table's lower-EL entries, on this stack (SP_EL2) below the current frame, which
    // this function never returns to.
    unsafe {
        core::arch::asm!(
            "msr spsr_el2, {spsr}",
            "msr elr_el2, {entry}",
            "mov x1, xzr",
            "mov x2, xzr",
            "mov x3, xzr",
            "eret",
            spsr = in(reg) SPSR_EL1H,
            entry = in(reg) entry,
            in("x0") dtb,
            options(noreturn, nostack),
        )
    }
}

fn isb() {
    aarch64_cpu::asm::barrier::isb(aarch64_cpu::asm::barrier::SY);
}

/// The guest's general registers at an exit: x0-x18, x29, x30 in aarch64-rt's frame, x19-x28
/// saved by the exit trampoline (vectors.rs). Writes go back to the guest on return.
pub struct GuestRegs<'a> {
    low: &'a mut RegisterState,
    high: &'a mut [u64; 10],
}

impl<'a> GuestRegs<'a> {
    /// Wraps the two saved halves.
    pub fn new(low: &'a mut RegisterState, high: &'a mut [u64; 10]) -> Self {
        Self { low, high }
    }

    /// Register `n` (0-30); 31 is the zero register in the instructions that trap here.
    pub fn get(&self, n: u8) -> u64 {
        match n {
            0..=18 => self.low.registers.get(usize::from(n)).copied().unwrap_or(0),
            19..=28 => self.high.get(usize::from(n - 19)).copied().unwrap_or(0),
            29 => self.low.fp,
            30 => self.low.sp,
            _ => 0,
        }
    }

    /// Sets register `n`; writes to 31 (the zero register) are dropped.
    pub fn set(&mut self, n: u8, value: u64) {
        let slot = match n {
            0..=18 => self.low.registers.get_mut(usize::from(n)),
            19..=28 => self.high.get_mut(usize::from(n - 19)),
            29 => Some(&mut self.low.fp),
            30 => Some(&mut self.low.sp),
            _ => None,
        };
        if let Some(slot) = slot {
            *slot = value;
        }
    }

    /// The guest's PC at the exit.
    pub fn pc(&self) -> u64 {
        self.low.elr as u64
    }

    /// Resumes the guest after the trapped instruction (all A64 instructions are 4 bytes).
    pub fn skip_instruction(&mut self) {
        self.low.elr = self.low.elr.wrapping_add(4);
    }
}
