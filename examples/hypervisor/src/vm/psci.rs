//! The guest's SMCs (HCR_EL2.TSC): PSCI and SMCCC architecture calls go on to QEMU's PSCI (the
//! SMC conduit of `virt,virtualization=on`, no EL3), with the exceptions one vCPU needs.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::vcpu::GuestRegs;

/// PSCI CPU_ON (SMC32 and SMC64).
const CPU_ON_32: u32 = 0x8400_0003;
const CPU_ON_64: u32 = 0xc400_0003;
/// PSCI SYSTEM_OFF.
const SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI SYSTEM_RESET.
const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI DENIED.
const PSCI_DENIED: u64 = (-3i64) as u64;
/// SMCCC NOT_SUPPORTED.
const NOT_SUPPORTED: u64 = u64::MAX;

/// Exit code of a run whose guest reset the machine instead of powering off.
pub const EXIT_GUEST_RESET: i32 = 4;

/// Handles the SMC the guest just made; the caller skips the instruction.
pub fn handle_smc(regs: &mut GuestRegs<'_>) {
    let function = regs.get(0) as u32;
    match function {
        CPU_ON_32 | CPU_ON_64 => {
            // One vCPU: there is no other CPU the guest may start.
            regs.set(0, PSCI_DENIED);
        }
        SYSTEM_OFF => {
            defmt::info!(
                "VM: guest called PSCI SYSTEM_OFF after {=u64} ms",
                super::stats::guest_uptime_us() / 1000
            );
            super::stats::print();
            crate::vdev::smmu::print_stats();
            crate::exit(0)
        }
        SYSTEM_RESET => {
            defmt::info!("VM: guest called PSCI SYSTEM_RESET");
            super::stats::print();
            crate::exit(EXIT_GUEST_RESET)
        }
        // PSCI (0x84000000-0x8400001f, 0xc4000000-0xc400001f) and the SMCCC architecture calls
        // (0x80000000-0x8000ffff).
        0x8400_0000..=0x8400_001f | 0xc400_0000..=0xc400_001f | 0x8000_0000..=0x8000_ffff => {
            let out = forward([regs.get(0), regs.get(1), regs.get(2), regs.get(3)]);
            for (n, v) in (0u8..).zip(out) {
                regs.set(n, v);
            }
        }
        _ => regs.set(0, NOT_SUPPORTED),
    }
}

/// Issues the SMC with the guest's x0-x3 and returns x0-x3 (SMCCC: results in x0-x3).
fn forward(args: [u64; 4]) -> [u64; 4] {
    let [mut x0, mut x1, mut x2, mut x3] = args;
    // SAFETY: QEMU's PSCI implements the SMC at EL2 for `virtualization=on`; the calls forwarded
    // here (PSCI queries, suspend, affinity info, SMCCC version/features) touch no memory of the
    // hypervisor and return to the next instruction; the registers SMCCC lets them change are
    // declared clobbered.
    unsafe {
        core::arch::asm!(
            "smc #0",
            inout("x0") x0,
            inout("x1") x1,
            inout("x2") x2,
            inout("x3") x3,
            clobber_abi("C"),
            options(nostack),
        );
    }
    [x0, x1, x2, x3]
}
