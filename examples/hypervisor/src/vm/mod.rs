//! One VM with one vCPU running an unmodified Linux kernel at EL1.
//!
//! Laid out the way KVM's arm64 code splits a guest's life: [`vcpu`] sets up EL2 for the guest
//! and enters it, [`trap`] dispatches its exits by exception class (data aborts to the virtual
//! devices in [`crate::vdev`], SMCs to [`psci`]), [`vgic`] injects its interrupts through the
//! GICv3 list registers, [`guest_dt`] derives its device tree from QEMU's. Its memory is an
//! identity-mapped stage 2 built with aarch64-paging ([`crate::stage2::Stage2Tables`]): the
//! guest's RAM and the devices it owns, never the hypervisor's own memory or the SMMU's
//! registers.

mod sysreg;

pub mod guest_dt;
pub mod iommu;
pub mod psci;
pub mod stats;
pub mod trap;
pub mod vcpu;
pub mod vgic;

use arm_smmuv3::{Ipa, PhysAddr};

use crate::board;
use crate::platform;
use crate::stage2::{S2Access, Stage2Tables};
use crate::vdev::smmu::SmmuMode;

/// Where the runner placed the guest's files (QEMU `-device loader`), from the semihosting
/// command line `linux kernel=<addr> initrd=<addr> initrd-size=<bytes> [smmu=hidden]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct LinuxBoot {
    /// Guest-physical (= physical) address of the uncompressed arm64 `Image`.
    pub kernel: u64,
    /// Address of the initramfs.
    pub initrd: u64,
    /// Its size in bytes.
    pub initrd_size: u64,
    /// What the guest sees at the SMMU's address.
    pub smmu: SmmuMode,
}

/// Why a guest could not be started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum BootError {
    /// The command line misses a field or has a malformed number.
    Args,
    /// The kernel or initrd lies outside the guest's RAM.
    Placement,
    /// The kernel has no arm64 `Image` header, or asks for a text offset it cannot get.
    NotAnImage,
    /// The device tree could not be derived.
    Dt(guest_dt::DtError),
    /// Stage-2 tables could not be built.
    Stage2,
    /// The physical SMMU could not be set up for the VM.
    Smmu,
}

impl LinuxBoot {
    /// Parses the words after `linux` on the semihosting command line.
    pub fn parse(words: &str) -> Result<Self, BootError> {
        let mut kernel = None;
        let mut initrd = None;
        let mut initrd_size = None;
        let mut smmu = SmmuMode::Hidden;
        for word in words.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "kernel" => kernel = parse_u64(value),
                "initrd" => initrd = parse_u64(value),
                "initrd-size" => initrd_size = parse_u64(value),
                "smmu" if value == "hidden" => smmu = SmmuMode::Hidden,
                "smmu" if value == "virtual" => smmu = SmmuMode::Virtual,
                "smmu" if value == "passthrough" => smmu = SmmuMode::Passthrough,
                _ => {}
            }
        }
        let boot = Self {
            kernel: kernel.ok_or(BootError::Args)?,
            initrd: initrd.ok_or(BootError::Args)?,
            initrd_size: initrd_size.ok_or(BootError::Args)?,
            smmu,
        };
        let in_ram = |a: u64, len: u64| {
            a >= board::GUEST_RAM_BASE
                && a.checked_add(len)
                    .is_some_and(|end| end <= board::GUEST_RAM_BASE + board::GUEST_RAM_SIZE)
        };
        if !in_ram(boot.kernel, 64) || !in_ram(boot.initrd, boot.initrd_size) {
            return Err(BootError::Placement);
        }
        Ok(boot)
    }
}

fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// arm64 `Image` header magic ("ARM\x64", little-endian at offset 56).
const IMAGE_MAGIC: u32 = 0x644d_5241;

/// Checks the kernel's `Image` header; returns its entry point.
fn kernel_entry(boot: &LinuxBoot) -> Result<u64, BootError> {
    let base = boot.kernel as *const u8;
    // SAFETY: `parse` checked that the 64-byte header lies in guest RAM, which boot.rs maps as
    // normal memory and which nothing in the hypervisor owns; reading it races with nothing (the
    // guest has not started).
    let (text_offset, magic) = unsafe {
        (
            base.add(8).cast::<u64>().read_volatile(),
            base.add(56).cast::<u32>().read_volatile(),
        )
    };
    if magic != IMAGE_MAGIC {
        return Err(BootError::NotAnImage);
    }
    // The image must sit at a 2 MiB-aligned base plus text_offset.
    let image_base = boot.kernel.wrapping_sub(text_offset);
    if image_base % (2 << 20) != 0 {
        return Err(BootError::NotAnImage);
    }
    Ok(boot.kernel)
}

/// The guest's stage 2: its RAM as normal memory, and every device of the board but the SMMU.
fn build_stage2() -> Result<Stage2Tables, BootError> {
    let mut s2 = Stage2Tables::new(platform::dma());
    let ram = |s2: &mut Stage2Tables| {
        s2.map(
            Ipa(board::GUEST_RAM_BASE),
            PhysAddr(board::GUEST_RAM_BASE),
            board::GUEST_RAM_SIZE as usize,
            S2Access::ReadWrite,
        )
    };
    ram(&mut s2).map_err(|_| BootError::Stage2)?;
    for &(base, size) in board::GUEST_DEVICES {
        s2.map_device(Ipa(base), PhysAddr(base), size as usize)
            .map_err(|_| BootError::Stage2)?;
    }
    Ok(s2)
}

/// Builds the VM and enters the guest; returns only if the guest cannot be started.
pub fn run_linux(boot: LinuxBoot) -> BootError {
    let entry = match kernel_entry(&boot) {
        Ok(e) => e,
        Err(e) => return e,
    };
    if platform::dma_region_base() + platform::dma().capacity() > board::HYP_END as usize {
        return BootError::Placement;
    }
    let dtb_len = match guest_dt::build(&boot) {
        Ok(len) => len,
        Err(e) => return BootError::Dt(e),
    };
    let s2 = match build_stage2() {
        Ok(s2) => s2,
        Err(e) => return e,
    };
    defmt::info!(
        "VM: stage 2 at {=u64:#x} ({=usize} table pages), guest RAM {=u64:#x}+{=u64:#x}, DT {=usize} bytes at {=u64:#x}, SMMU {}",
        s2.s2ttb().0,
        s2.table_pages(),
        board::GUEST_RAM_BASE,
        board::GUEST_RAM_SIZE,
        dtb_len,
        board::GUEST_DTB,
        boot.smmu
    );
    if boot.smmu == SmmuMode::Passthrough {
        defmt::warn!("VM: SMMU passed through: the guest drives the physical SMMU (no isolation)");
    } else {
        match iommu::attach(&s2) {
            Ok(smmu) => defmt::info!(
                "VM: physical SMMU on, bus 0's StreamIDs translate through the VM's stage 2 (VMID {=u64}); {} event-queue entries",
                vcpu::VMID,
                1u32 << smmu.plan().evtq_log2
            ),
            Err(e) => {
                defmt::error!("VM: physical SMMU: {}", e);
                return BootError::Smmu;
            }
        }
    }
    crate::vdev::smmu::init(boot.smmu);
    vgic::init();
    stats::mark_guest_start();
    defmt::info!("VM: entering the guest at {=u64:#x} (EL1h)", entry);
    vcpu::enter(entry, board::GUEST_DTB, &s2)
}
