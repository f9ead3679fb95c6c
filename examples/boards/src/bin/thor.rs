//! Board test image for NVIDIA Jetson AGX Thor (Tegra264), device tree: a UEFI application.
//!
//! Reads every `nvidia,tegra264-smmu` and its `nvidia,tegra264-cmdqv` from the device tree in
//! the UEFI configuration table through `arm_smmuv3::discovery`, exits boot services and runs
//! the shared bring-up (boards/bringup.rs), printing the RESULT/SUMMARY contract of the QEMU
//! demo. See `board_images::uefi_app` and the README ("Board images").

#![cfg_attr(target_os = "uefi", no_std, no_main)]

#[cfg(target_os = "uefi")]
#[uefi::entry]
fn main() -> uefi::Status {
    use board_images::bringup::CmdqvRule;
    use board_images::uefi_app::{self, Firmware, Profile};
    uefi_app::main(&Profile {
        name: "Jetson AGX Thor (Tegra264)",
        firmware: Firmware::DeviceTree,
        // The DT's `status` says which CMDQVs the board uses.
        rule: CmdqvRule::AsDescribed,
    })
}

#[cfg(not(target_os = "uefi"))]
fn main() {
    eprintln!(
        "the Thor board image is a UEFI application: build it with --target aarch64-unknown-uefi"
    );
    std::process::exit(2);
}
