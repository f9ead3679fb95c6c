//! Board test image for NVIDIA Grace (Tegra241), ACPI: a UEFI application.
//!
//! Finds the IORT (and SPCR's console) through the ACPI 2.0 RSDP in the UEFI configuration
//! table, reads every SMMUv3 node through `arm_smmuv3::discovery::iort`, pairs each with its
//! CMDQV from [`NVDA200C`], exits boot services and runs the shared bring-up
//! (boards/bringup.rs), printing the RESULT/SUMMARY contract of the QEMU demo. See
//! `board_images::uefi_app` and the README ("Board images").

#![cfg_attr(target_os = "uefi", no_std, no_main)]

/// The `NVDA200C` devices of the board's DSDT (`_UID`, memory resource 0, interrupt resource 0),
/// one per SMMUv3 node: there is no AML interpreter here, so they are copied from the board's
/// own DSDT (`acpidump` + `iasl -d` on a Linux booted on it) into this table. Empty, every SMMU
/// reports `smmuN-cmdqv FAIL` ("no CMDQV described").
#[cfg(target_os = "uefi")]
const NVDA200C: &[arm_smmuv3::discovery::iort::AcpiCmdqv] = &[];

#[cfg(target_os = "uefi")]
#[uefi::entry]
fn main() -> uefi::Status {
    use board_images::bringup::CmdqvRule;
    use board_images::uefi_app::{self, Firmware, Profile};
    uefi_app::main(&Profile {
        name: "Grace (Tegra241)",
        firmware: Firmware::Acpi { cmdqvs: NVDA200C },
        // Every Grace SMMU has a CMDQV: one not described is a FAIL.
        rule: CmdqvRule::Required,
    })
}

#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!(
        "the Grace board image is a UEFI application: build it with --target aarch64-unknown-uefi"
    );
    std::process::exit(2);
}
