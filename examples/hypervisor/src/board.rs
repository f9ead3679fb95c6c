//! The addresses of QEMU `virt` (`-m 512M`, highmem on) the hypervisor relies on, and how its RAM
//! is split between the hypervisor and the guest.

/// QEMU places its device tree at the start of RAM.
pub const HOST_DTB: u64 = 0x4000_0000;
/// The hypervisor's image and the memory it lends (DMA region) end below this address; the
/// guest never gets it.
pub const HYP_END: u64 = 0x4400_0000;
/// The guest's RAM: everything above [`HYP_END`] (identity-mapped at stage 2).
pub const GUEST_RAM_BASE: u64 = HYP_END;
/// The guest's RAM size.
pub const GUEST_RAM_SIZE: u64 = 0x6000_0000 - GUEST_RAM_BASE;
/// The last MiB of the guest's RAM is in its stage 2 but not in its device tree's memory: a
/// buffer the guest's userspace can hand to edu by physical address (through /dev/mem) to check
/// that DMA works. The kernel command line names it (`edu_dma=`).
pub const GUEST_DMA_WINDOW: u64 = GUEST_RAM_BASE + GUEST_RAM_SIZE - 0x10_0000;
/// An address of the hypervisor's own memory, outside the guest's stage 2, that the guest asks
/// edu to write to (`edu_fence=`): the physical SMMU must stop it.
pub const FENCE_PROBE: u64 = 0x4300_0000;

/// Where the guest's device tree is written (the first 2 MiB of its RAM; the runner loads the
/// kernel above).
pub const GUEST_DTB: u64 = GUEST_RAM_BASE;
/// Room for the guest's device tree.
pub const GUEST_DTB_MAX: usize = 0x20_0000;

/// The SMMUv3's register window (pages 0 and 1); left out of the guest's stage 2.
pub const SMMU_BASE: u64 = 0x0905_0000;
/// Its size.
pub const SMMU_SIZE: u64 = 0x2_0000;

/// Device regions the guest reaches directly (identity-mapped device memory at stage 2): flash,
/// the redistributors' SGI/PPI frames (not the distributor, the ITS or CPU 0's RD_base frame),
/// PL011, PL031, fw-cfg, PL061 (all below the SMMU), then
/// virtio-mmio, the platform bus, PCIe MMIO32/PIO/low ECAM, and the high ECAM. The 64-bit PCIe
/// window at 0x80_0000_0000 lies beyond the 39-bit IPA space and is not mapped (no device on the
/// demo's bus has a 64-bit BAR).
pub const GUEST_DEVICES: &[(u64, u64)] = &[
    (0, 0x0800_0000),
    (0x0801_0000, ITS_BASE - 0x0801_0000),
    (
        GICR_BASE as u64 + GICR_RD_SIZE,
        SMMU_BASE - (GICR_BASE as u64 + GICR_RD_SIZE),
    ),
    (SMMU_BASE + SMMU_SIZE, 0x4000_0000 - (SMMU_BASE + SMMU_SIZE)),
    (0x40_1000_0000, 0x1000_0000),
];

/// GICv3 distributor; left out of the guest's stage 2 (vdev/gicd.rs).
pub const GICD_BASE: usize = 0x0800_0000;
/// Its size.
pub const GICD_SIZE: u64 = 0x1_0000;
/// GICv3 ITS; not given to the guest.
pub const ITS_BASE: u64 = 0x0808_0000;
/// GICv3 redistributors (one 128 KiB frame per CPU).
pub const GICR_BASE: usize = 0x080A_0000;
/// The control frame (RD_base) of CPU 0's redistributor; trapped (vdev/gicr.rs).
pub const GICR_RD_SIZE: u64 = 0x1_0000;
/// GIC redistributor SGI/PPI frame of CPU 0 (GICR base + 64 KiB).
pub const GICR_SGI_BASE: usize = GICR_BASE + 0x1_0000;
