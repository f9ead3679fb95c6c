//! Board test image for NVIDIA Jetson AGX Thor (Tegra264), device tree.
//!
//! Entered at EL2 as an arm64 kernel is (MMU off, x0 = the device tree's physical address): it
//! reads every `nvidia,tegra264-smmu` and its `nvidia,tegra264-cmdqv` from the tree through
//! `arm_smmuv3::discovery`, then runs the shared bring-up (boards/bringup.rs) and prints the
//! RESULT/SUMMARY contract of the QEMU demo. See the README ("Board images").

#![cfg_attr(target_os = "none", no_std, no_main)]

/// The GiB the image is linked in (thor.ld: 0x9000_0000).
#[cfg(target_os = "none")]
const IMAGE_GIB: u64 = 0x9000_0000 >> 30;

#[cfg(target_os = "none")]
#[path = "../../../hypervisor/src/cs.rs"]
mod cs;
#[cfg(target_os = "none")]
#[path = "../image.rs"]
mod image;
#[cfg(target_os = "none")]
#[path = "../../../hypervisor/src/mmu.rs"]
mod mmu;
// The QEMU demo's Platform (the generic timer); its DMA region is not used here.
#[cfg(target_os = "none")]
#[allow(dead_code)]
#[path = "../../../hypervisor/src/platform.rs"]
mod platform;

#[cfg(target_os = "none")]
aarch64_rt::entry!(thor_main, 64);

/// Largest device tree accepted (Tegra264's is a few hundred KiB).
#[cfg(target_os = "none")]
const DTB_MAX: usize = 2 << 20;

#[cfg(target_os = "none")]
fn thor_main(x0: u64, _: u64, _: u64, _: u64) -> ! {
    use arm_smmuv3::discovery::DiscoveryError;
    use arm_smmuv3::discovery::dt::DeviceTree;
    let topo = core::ptr::NonNull::new(x0 as usize as *mut u8)
        .ok_or(DiscoveryError::NotFound)
        .and_then(|p| {
            // SAFETY: the boot protocol hands the device tree's address in x0; the loader keeps
            // DTB_MAX bytes from there readable (the tree and what follows it in RAM, inside
            // the boot map) and nothing writes to them.
            unsafe { DeviceTree::from_ptr(p, DTB_MAX) }?.topology()
        });
    image::run(
        "Jetson AGX Thor (Tegra264)",
        topo,
        board_images::bringup::CmdqvRule::AsDescribed,
    )
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the Thor board image is bare-metal: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
