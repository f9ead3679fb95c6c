//! Board test image for NVIDIA Grace (Tegra241), ACPI.
//!
//! Entered at EL2 with the MMU off and x0 = the ACPI RSDP's physical address: it finds the IORT
//! (and SPCR's console) through the XSDT, reads every SMMUv3 node through
//! `arm_smmuv3::discovery::iort`, pairs each with its CMDQV from [`NVDA200C`], then runs the
//! shared bring-up (boards/bringup.rs) and prints the RESULT/SUMMARY contract of the QEMU demo.
//! See the README ("Board images").

#![cfg_attr(target_os = "none", no_std, no_main)]

/// The GiB the image is linked in (grace.ld: 0x80_9000_0000).
#[cfg(target_os = "none")]
const IMAGE_GIB: u64 = 0x80_9000_0000 >> 30;

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

/// The `NVDA200C` devices of the board's DSDT (`_UID`, memory resource 0, interrupt resource 0),
/// one per SMMUv3 node: there is no AML interpreter here, so they are copied from the board's
/// own DSDT (`acpidump` + `iasl -d` on a Linux booted on it) into this table. Empty, every SMMU
/// reports `smmuN-cmdqv FAIL` ("no CMDQV described").
#[cfg(target_os = "none")]
const NVDA200C: &[arm_smmuv3::discovery::iort::AcpiCmdqv] = &[];

#[cfg(target_os = "none")]
aarch64_rt::entry!(grace_main, 64);

/// Physical memory read through the boot map (identity, everything below 1 TiB).
#[cfg(target_os = "none")]
struct Identity;

#[cfg(target_os = "none")]
impl board_images::acpi::PhysMem for Identity {
    fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]> {
        let end = pa.checked_add(len as u64)?;
        if pa == 0 || end > image::MAPPED_END {
            return None;
        }
        // SAFETY: firmware's ACPI tables lie in RAM the boot map covers below 1 TiB (checked),
        // are never written while the image runs, and are read as plain bytes.
        Some(unsafe { core::slice::from_raw_parts(pa as usize as *const u8, len) })
    }
}

#[cfg(target_os = "none")]
fn grace_main(x0: u64, _: u64, _: u64, _: u64) -> ! {
    use arm_smmuv3::discovery::DiscoveryError;
    use arm_smmuv3::discovery::iort::Iort;
    if let Ok(spcr) = board_images::acpi::find(&Identity, x0, b"SPCR") {
        image::set_console(board_images::acpi::spcr_pl011(spcr).unwrap_or(0));
    }
    let topo = match board_images::acpi::find(&Identity, x0, b"IORT") {
        Ok(t) => Iort::new(t).and_then(|i| i.topology(NVDA200C)),
        Err(e) => {
            image::line(format_args!("no IORT through the RSDP at {x0:#x}: {e:?}"));
            Err(DiscoveryError::NotFound)
        }
    };
    image::run(
        "Grace (Tegra241)",
        topo,
        board_images::bringup::CmdqvRule::Required,
    )
}

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("the Grace board image is bare-metal: build it with --target aarch64-unknown-none");
    std::process::exit(2);
}
