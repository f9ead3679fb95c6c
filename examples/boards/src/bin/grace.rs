//! Board test image for NVIDIA Grace (Tegra241), ACPI: a UEFI application.
//!
//! Finds the IORT (and SPCR's console) through the ACPI 2.0 RSDP in the UEFI configuration
//! table, reads every SMMUv3 node through `arm_smmuv3::discovery::acpi`, pairs each with the
//! CMDQV (`NVDA200C`) its DSDT/SSDTs describe, exits boot services and runs the shared bring-up
//! (boards/bringup.rs), printing the RESULT/SUMMARY contract of the QEMU demo. See
//! `board_images::uefi_app` and the README ("Board images").

#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
#[uefi::entry]
fn main() -> uefi::Status {
    use board_images::bringup::CmdqvRule;
    use board_images::uefi_app::{self, Firmware, Profile};
    uefi_app::main(&Profile {
        name: "Grace (Tegra241)",
        firmware: Firmware::Acpi,
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
