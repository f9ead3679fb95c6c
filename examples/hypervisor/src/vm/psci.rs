//! The guest's SMCs (HCR_EL2.TSC): PSCI queries and SMCCC architecture calls go on to QEMU's
//! PSCI (the SMC conduit of `virt,virtualization=on`, no EL3); SYSTEM_OFF and SYSTEM_RESET end the
//! run; calls that would act on the physical CPU the hypervisor runs on are refused.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::vcpu::GuestRegs;

/// PSCI_VERSION.
const PSCI_VERSION: u32 = 0x8400_0000;
/// PSCI AFFINITY_INFO (SMC32 and SMC64).
const AFFINITY_INFO_32: u32 = 0x8400_0004;
const AFFINITY_INFO_64: u32 = 0xc400_0004;
/// PSCI MIGRATE_INFO_TYPE.
const MIGRATE_INFO_TYPE: u32 = 0x8400_0006;
/// PSCI SYSTEM_OFF.
const SYSTEM_OFF: u32 = 0x8400_0008;
/// PSCI SYSTEM_RESET.
const SYSTEM_RESET: u32 = 0x8400_0009;
/// PSCI PSCI_FEATURES.
const PSCI_FEATURES: u32 = 0x8400_000a;
/// SMCCC_VERSION and SMCCC_ARCH_FEATURES.
const SMCCC_VERSION: u32 = 0x8000_0000;
const SMCCC_ARCH_FEATURES: u32 = 0x8000_0001;
/// PSCI DENIED.
const PSCI_DENIED: u64 = (-3i64) as u64;
/// SMCCC NOT_SUPPORTED (also PSCI NOT_SUPPORTED).
const NOT_SUPPORTED: u64 = u64::MAX;

/// Exit code of a run whose guest reset the machine instead of powering off.
pub const EXIT_GUEST_RESET: i32 = 4;

/// Calls answered by QEMU's PSCI as they are: queries that change nothing on the physical CPU.
/// Everything else that would act on the CPU the hypervisor runs on (CPU_ON, CPU_OFF,
/// CPU_SUSPEND, SYSTEM_SUSPEND, MIGRATE, ...) is not forwarded: one vCPU needs none of them.
fn forwarded(function: u32) -> bool {
    matches!(
        function,
        PSCI_VERSION
            | AFFINITY_INFO_32
            | AFFINITY_INFO_64
            | MIGRATE_INFO_TYPE
            | SMCCC_VERSION
            | SMCCC_ARCH_FEATURES
    )
}

/// Handles the SMC the guest just made; the caller skips the instruction.
pub fn handle_smc(regs: &mut GuestRegs<'_>) {
    let function = regs.get(0) as u32;
    defmt::info!("VM: guest SMC {=u32:#x}", function);
    match function {
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
        PSCI_FEATURES => {
            // Only what is forwarded (or handled here) is advertised.
            let queried = regs.get(1) as u32;
            if forwarded(queried) || matches!(queried, SYSTEM_OFF | SYSTEM_RESET | PSCI_FEATURES) {
                let out = forward([regs.get(0), regs.get(1), 0, 0]);
                regs.set(0, out[0]);
            } else {
                regs.set(0, NOT_SUPPORTED);
            }
        }
        f if forwarded(f) => {
            let out = forward([regs.get(0), regs.get(1), regs.get(2), regs.get(3)]);
            for (n, v) in (0u8..).zip(out) {
                regs.set(n, v);
            }
        }
        // Other PSCI calls act on the physical CPU: refused.
        0x8400_0000..=0x8400_001f | 0xc400_0000..=0xc400_001f => regs.set(0, PSCI_DENIED),
        _ => regs.set(0, NOT_SUPPORTED),
    }
}

/// Issues the SMC with the guest's x0-x3 and returns x0-x3 (SMCCC: results in x0-x3).
fn forward(args: [u64; 4]) -> [u64; 4] {
    let [mut x0, mut x1, mut x2, mut x3] = args;
    // SAFETY: QEMU's PSCI implements the SMC at EL2 for `virtualization=on`; the calls forwarded
    // here (PSCI version, features, affinity info, migrate info, SMCCC version/features) touch
    // no memory of the hypervisor and return to the next instruction; the registers SMCCC lets
    // them change are declared clobbered.
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
