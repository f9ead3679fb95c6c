//! Board test images for NVIDIA Jetson AGX Thor (Tegra264, device tree) and Grace (Tegra241,
//! ACPI): what the two share with each other and with the host tests. The images themselves are
//! `src/bin/{thor,grace}.rs` over `src/image.rs` (boot map, output, handlers), which reuse the
//! QEMU demo's platform, MMU constants and critical section (examples/hypervisor).

#![cfg_attr(not(test), no_std)]

pub mod acpi;
pub mod bringup;

#[cfg(test)]
mod tests;
