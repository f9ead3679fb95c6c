//! Board test images for NVIDIA Jetson AGX Thor (Tegra264, device tree) and Grace (Tegra241,
//! ACPI): what the two share with each other and with the host tests. The images themselves are
//! the UEFI applications `src/bin/{thor,grace}.rs` over [`uefi_app`] (firmware tables, DMA
//! memory, ExitBootServices, output), which reuses the QEMU demo's platform (examples/hypervisor).

#![cfg_attr(not(test), no_std)]

pub mod bringup;
#[cfg(target_os = "uefi")]
pub mod uefi_app;

// The QEMU demo's Platform (the generic timer); its DMA region is not used here.
#[cfg(target_os = "uefi")]
#[allow(dead_code)]
#[path = "../../hypervisor/src/platform.rs"]
mod platform;

#[cfg(test)]
mod tests;
