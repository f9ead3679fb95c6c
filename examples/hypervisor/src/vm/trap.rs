//! Guest exits, dispatched by ESR_EL2's exception class: data aborts on regions left out of stage
//! 2 go to the virtual devices ([`crate::vdev`]), SMCs to [`super::psci`], trapped ICC_SGI1R_EL1
//! writes to [`super::vgic`]; physical interrupts to [`super::vgic::irq_exit`].

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use aarch64_cpu::registers::{ESR_EL2, FAR_EL2, HPFAR_EL2, Readable};
use aarch64_rt::RegisterStateRef;

use super::stats::{self, Exit};
use super::vcpu::GuestRegs;
use super::{psci, vgic};
use crate::vdev::{self, Access};

/// ESR_EL2.EC: trapped MSR/MRS/system instruction.
const EC_SYSREG: u64 = 0x18;
/// ESR_EL2.EC: HVC from AArch64.
const EC_HVC64: u64 = 0x16;
/// ESR_EL2.EC: SMC from AArch64 (HCR_EL2.TSC).
const EC_SMC64: u64 = 0x17;
/// ESR_EL2.EC: data abort from a lower EL.
const EC_DABT_LOW: u64 = 0x24;

/// SMCCC NOT_SUPPORTED.
const SMCCC_NOT_SUPPORTED: u64 = u64::MAX;

/// A data abort's syndrome (ESR_EL2.ISS for EC 0x24), as far as emulation needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct DataAbort {
    /// ISV, bit [24]: the fields below are valid.
    pub isv: bool,
    /// Access size in bytes (SAS, bits [23:22]).
    pub size: u8,
    /// SSE, bit [21]: sign-extend a load.
    pub sign_extend: bool,
    /// SRT, bits [20:16]: the transfer register.
    pub reg: u8,
    /// SF, bit [15]: the register is 64-bit (else 32-bit).
    pub sixty_four: bool,
    /// WnR, bit [6]: a write.
    pub write: bool,
}

impl DataAbort {
    /// Decodes ESR_EL2's ISS for a data abort.
    pub fn decode(esr: u64) -> Self {
        Self {
            isv: esr & (1 << 24) != 0,
            size: 1 << ((esr >> 22) & 3),
            sign_extend: esr & (1 << 21) != 0,
            reg: ((esr >> 16) & 0x1f) as u8,
            sixty_four: esr & (1 << 15) != 0,
            write: esr & (1 << 6) != 0,
        }
    }
}

/// The faulting IPA of a stage-2 abort: HPFAR_EL2.FIPA (IPA[51:12]) and FAR_EL2's page offset.
fn fault_ipa() -> u64 {
    ((HPFAR_EL2.get() & 0x0000_0fff_ffff_fff0) << 8) | (FAR_EL2.get() & 0xfff)
}

/// Entry from the `sync_lower` trampoline (vectors.rs).
pub extern "C" fn sync_exit(mut frame: RegisterStateRef, high: *mut [u64; 10]) {
    // SAFETY: the trampoline passes aarch64-rt's saved frame and its own save area of x19-x28,
    // both on this exception's stack and live until it returns; changing them changes only the
    // guest's registers, which is what an exit handler is for.
    let mut regs = GuestRegs::new(unsafe { frame.get_mut() }, unsafe { &mut *high });
    vgic::refill();
    let esr = ESR_EL2.get();
    match (esr >> 26) & 0x3f {
        EC_DABT_LOW => {
            data_abort(&mut regs, esr);
        }
        EC_SMC64 => {
            stats::count(Exit::Smc);
            psci::handle_smc(&mut regs);
            regs.skip_instruction();
        }
        EC_HVC64 => {
            // No hypercalls: SMCCC says NOT_SUPPORTED. ELR already points past the HVC.
            stats::count(Exit::Hvc);
            regs.set(0, SMCCC_NOT_SUPPORTED);
        }
        EC_SYSREG => {
            sysreg(&mut regs, esr);
            regs.skip_instruction();
        }
        ec => {
            stats::count(Exit::Unknown);
            crate::vectors::guest_fatal(ec, esr, regs.pc());
        }
    }
}

/// Entry from the `irq_lower` trampoline.
pub extern "C" fn irq_exit(_frame: RegisterStateRef, _high: *mut [u64; 10]) {
    stats::count(Exit::Irq);
    vgic::irq_exit();
}

fn data_abort(regs: &mut GuestRegs<'_>, esr: u64) {
    let ipa = fault_ipa();
    let abort = DataAbort::decode(esr);
    if !abort.isv {
        // A load/store pair or a write-back form on an emulated region: nothing to emulate it
        // with. Linux's MMIO accessors never do this.
        stats::count(Exit::DabtNoSyndrome);
        crate::vectors::guest_fatal(EC_DABT_LOW, esr, regs.pc());
    }
    let mask = if abort.size == 8 {
        u64::MAX
    } else {
        (1u64 << (u32::from(abort.size) * 8)) - 1
    };
    let access = Access {
        ipa,
        size: abort.size,
        write: abort.write.then(|| regs.get(abort.reg) & mask),
    };
    let value = vdev::mmio(access);
    if !abort.write {
        let mut v = value & mask;
        if abort.sign_extend && abort.size < 8 {
            let shift = 64 - u32::from(abort.size) * 8;
            v = (((v << shift) as i64) >> shift) as u64;
        }
        if !abort.sixty_four {
            v &= u64::from(u32::MAX);
        }
        regs.set(abort.reg, v);
    }
    regs.skip_instruction();
}

/// ICC_SGI1R_EL1: Op0 3, Op1 0, CRn 12, CRm 11, Op2 5.
const ICC_SGI1R: (u64, u64, u64, u64, u64) = (3, 0, 12, 11, 5);

fn sysreg(regs: &mut GuestRegs<'_>, esr: u64) {
    let op0 = (esr >> 20) & 3;
    let op2 = (esr >> 17) & 7;
    let op1 = (esr >> 14) & 7;
    let crn = (esr >> 10) & 0xf;
    let rt = ((esr >> 5) & 0x1f) as u8;
    let crm = (esr >> 1) & 0xf;
    let read = esr & 1 != 0;
    if (op0, op1, crn, crm, op2) == ICC_SGI1R && !read {
        stats::count(Exit::Sgi);
        vgic::guest_sgi(regs.get(rt));
    } else {
        // Anything else the configuration traps: reads as zero, writes ignored, counted.
        stats::count(Exit::SysregOther);
        if read {
            regs.set(rt, 0);
        }
    }
}
