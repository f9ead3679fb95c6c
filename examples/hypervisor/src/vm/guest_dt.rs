//! The guest's device tree, derived from the one QEMU hands the hypervisor.
//!
//! Edited in place with dtoolkit's `FdtMut` (no allocator needed): the copy of QEMU's tree in
//! the guest's RAM gets the guest's memory (the hypervisor's own RAM left out), `/chosen` with
//! the initramfs and the kernel command line, and an SMMU as [`SmmuMode`] says: hidden (node and
//! `iommu-map` removed, so Linux boots without an IOMMU), virtual (node kept at the same
//! address; `iommu-map` rewritten so the guest's StreamIDs are vSIDs, [`VSID_BASE`] + RID) or
//! passed through (QEMU's node and `iommu-map` unchanged).

use dtoolkit::fdt_mut::FdtMut;
use dtoolkit::{Node, Property};

use super::LinuxBoot;
use crate::board;
use crate::vdev::smmu::{SmmuMode, VSID_BASE, VSID_COUNT};

/// The kernel command line; `edu_dma=` and `edu_fence=` are read by the guest's /init
/// (examples/guest/init).
pub const BOOTARGS: &str =
    "console=ttyAMA0 earlycon rdinit=/init edu_dma=0x5ff00000 edu_fence=0x43000000";
const _: () = assert!(board::GUEST_DMA_WINDOW == 0x5ff0_0000 && board::FENCE_PROBE == 0x4300_0000);

/// FDT header magic (big-endian 0xd00dfeed).
const FDT_MAGIC: u32 = 0xd00d_feed;

/// Why the guest's tree could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum DtError {
    /// No valid FDT at [`board::HOST_DTB`], or it does not fit the guest's buffer.
    HostDt,
    /// A node the derivation needs is missing.
    Missing(&'static str),
    /// The buffer is too small for the additions.
    NoSpace,
}

/// Writes the guest's tree at [`board::GUEST_DTB`]; returns its size.
pub fn build(boot: &LinuxBoot) -> Result<usize, DtError> {
    let host = board::HOST_DTB as *const u8;
    // SAFETY: QEMU put its tree at the start of RAM, identity-mapped normal memory that nothing
    // else in the hypervisor uses; the header is read before its size is trusted.
    let (magic, total) = unsafe {
        (
            u32::from_be(host.cast::<u32>().read_volatile()),
            u32::from_be(host.add(4).cast::<u32>().read_volatile()) as usize,
        )
    };
    if magic != FDT_MAGIC || !(40..=board::GUEST_DTB_MAX - 0x1000).contains(&total) {
        return Err(DtError::HostDt);
    }
    // SAFETY: `total` bytes of QEMU's tree (checked above), and the guest's buffer: the first
    // GUEST_DTB_MAX bytes of guest RAM, which the guest has not started to use. The two do not
    // overlap (the host tree is below HYP_END, the buffer above it).
    let (src, out) = unsafe {
        (
            core::slice::from_raw_parts(host, total),
            core::slice::from_raw_parts_mut(board::GUEST_DTB as *mut u8, board::GUEST_DTB_MAX),
        )
    };
    out[..total].copy_from_slice(src);
    let mut fdt = FdtMut::from_slice(out).map_err(|_| DtError::HostDt)?;

    let reg = |base: u64, size: u64| {
        [
            (base >> 32) as u32,
            base as u32,
            (size >> 32) as u32,
            size as u32,
        ]
    };
    let mut memory = fdt
        .find_node_mut("/memory@40000000")
        .ok_or(DtError::Missing("/memory@40000000"))?;
    memory
        .property_mut("reg")
        .ok_or(DtError::Missing("/memory reg"))?
        .set_value(reg(
            board::GUEST_RAM_BASE,
            board::GUEST_DMA_WINDOW - board::GUEST_RAM_BASE,
        ))
        .map_err(|_| DtError::NoSpace)?;

    let mut chosen = fdt
        .find_node_mut("/chosen")
        .ok_or(DtError::Missing("/chosen"))?;
    chosen.remove_property("bootargs");
    chosen
        .add_property("bootargs", BOOTARGS)
        .map_err(|_| DtError::NoSpace)?;
    chosen
        .add_property("linux,initrd-start", boot.initrd)
        .map_err(|_| DtError::NoSpace)?;
    chosen
        .add_property("linux,initrd-end", boot.initrd + boot.initrd_size)
        .map_err(|_| DtError::NoSpace)?;

    let smmu_name = "smmuv3@9050000";
    let phandle = fdt
        .find_node_mut("/smmuv3@9050000")
        .ok_or(DtError::Missing("/smmuv3@9050000"))?
        .property("phandle")
        .and_then(|p| p.value().try_into().ok())
        .map(u32::from_be_bytes)
        .ok_or(DtError::Missing("smmu phandle"))?;
    // No ITS for the guest (vdev/gicr.rs says why): no node, no MSI map.
    fdt.find_node_mut("/intc@8000000")
        .ok_or(DtError::Missing("/intc@8000000"))?
        .remove_child("its@8080000");
    let mut pcie = fdt
        .find_node_mut("/pcie@10000000")
        .ok_or(DtError::Missing("/pcie@10000000"))?;
    pcie.remove_property("msi-map");
    match boot.smmu {
        SmmuMode::Hidden => {
            pcie.remove_property("iommu-map");
            fdt.root_mut().remove_child(smmu_name);
        }
        // QEMU's own node and iommu-map: the guest's StreamIDs are the physical ones.
        SmmuMode::Passthrough => {}
        SmmuMode::Virtual => {
            pcie.property_mut("iommu-map")
                .ok_or(DtError::Missing("iommu-map"))?
                .set_value([0, phandle, VSID_BASE, VSID_COUNT])
                .map_err(|_| DtError::NoSpace)?;
        }
    }
    let len = fdt.as_read_only().data().len();
    clean_to_poc(board::GUEST_DTB, len);
    Ok(len)
}

/// Cleans `len` bytes at `addr` to the point of coherency: the guest reads its tree with its MMU
/// (and so its caches) off.
fn clean_to_poc(addr: u64, len: usize) {
    let line = 64u64;
    let mut a = addr & !(line - 1);
    while a < addr + len as u64 {
        // SAFETY: cache maintenance by address on identity-mapped RAM; no data changes.
        unsafe { core::arch::asm!("dc cvac, {}", in(reg) a, options(nostack, preserves_flags)) };
        a += line;
    }
    // SAFETY: a barrier only.
    unsafe { core::arch::asm!("dsb sy", options(nostack, preserves_flags)) };
}
