//! SMMUv3 and CMDQV instances, their interrupts and the StreamID maps of the devices behind them,
//! read from what firmware describes (feature `discovery`).
//!
//! Two readers produce one [`Topology`]:
//! * [`dt::DeviceTree`]: a flattened device tree (`arm,smmu-v3` nodes, the binding
//!   `Documentation/devicetree/bindings/iommu/arm,smmu-v3.yaml`; `nvidia,tegra264-smmu` with its
//!   `nvidia,cmdqv` node, `Documentation/devicetree/bindings/iommu/nvidia,tegra264-cmdqv.yaml`;
//!   `iommu-map` of PCIe host bridges, `Documentation/devicetree/bindings/pci/pci-iommu.txt`;
//!   `iommus` of platform devices, `Documentation/devicetree/bindings/iommu/iommu.txt`).
//! * [`iort::Iort`]: the ACPI IORT (Arm DEN 0049, "IO Remapping Table"): SMMUv3 nodes, root
//!   complex and named component ID mappings, each generic SMMUv3 paired with the Tegra241
//!   CMDQV ([`iort::AcpiCmdqv`]) whose `_UID` is its identifier.
//!
//! On an ACPI machine [`acpi::Acpi`] finds the tables from the RSDP through a caller-supplied
//! [`acpi::PhysMem`] (RSDP, XSDT, FADT → DSDT, SSDTs, IORT, SPCR; every length and checksum
//! checked) and [`aml::DefinitionBlock`] scans the DSDT and SSDTs for the `NVDA200C` devices, so
//! [`acpi::Acpi::topology`] gives the whole [`Topology`]. [`dt::DeviceTree::reg`] translates
//! any node's `reg`, e.g. the `stdout-path` console ([`dt::DeviceTree::stdout`]).
//!
//! Everything is bounds-checked: a corrupt blob gives a [`DiscoveryError`], never a panic or a
//! read outside the slice. No heap: the result lives in fixed-capacity vectors
//! ([`MAX_SMMUS`], [`MAX_ID_MAPS`]).
//!
//! What a hypervisor does with it, per SMMU instance `i` of [`Topology::smmus`]: map
//! [`SmmuDesc::page0`] and [`SmmuDesc::page1`] (each 64 KiB, Device-nGnRE), call
//! [`Smmu::new`](crate::smmu::Smmu::new) with [`SmmuDesc::config`], route the wired interrupts
//! of [`SmmuDesc::irqs`] to that instance's drains, and with [`SmmuDesc::cmdqv`] map the window
//! and call `Cmdqv::new` with `CmdqvDesc::config` (feature `cmdqv`). A device's StreamID and
//! instance come from [`Topology::pci_stream`] (a PCIe requester ID) or
//! [`Topology::device_streams`] (a platform device).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod acpi;
pub mod aml;
pub mod dt;
pub mod iort;

use core::fmt;

use heapless::Vec;

use crate::ids::{PhysAddr, StreamId};
use crate::smmu::{Config, Quirks};

/// Most SMMUv3 instances one [`Topology`] holds (a Tegra264 has 5).
pub const MAX_SMMUS: usize = 16;
/// Most ID mappings one [`Topology`] holds: one per `iommu-map` entry, per `iommus` entry, per
/// IORT ID mapping that ends at an SMMUv3.
pub const MAX_ID_MAPS: usize = 128;

/// Size of one SMMUv3 register page (IHI 0070 §6.2); page 1 follows page 0.
pub const SMMU_PAGE_SIZE: u64 = crate::regs::offset::PAGE_SIZE as u64;

/// Why a firmware description could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The blob is not a valid flattened device tree or IORT (header, lengths, checksum,
    /// structure); `offset` is where the reader stopped, in bytes from the blob's start.
    Malformed {
        /// What was wrong.
        what: &'static str,
        /// Byte offset in the blob.
        offset: u32,
    },
    /// A well-formed description this reader does not handle (an interrupt parent that is not
    /// a GIC, an `#iommu-cells` other than 1 on an SMMUv3, ...).
    Unsupported(&'static str),
    /// More entries than a fixed capacity ([`MAX_SMMUS`], [`MAX_ID_MAPS`], nesting depth).
    TooMany(&'static str),
    /// A phandle (DT) or node reference (IORT) that names nothing.
    Dangling(u32),
    /// A lookup found no SMMU for the requester or device.
    NotFound,
    /// The caller's physical-memory reader refused the range at this physical address
    /// ([`acpi::PhysMem`]).
    Unreadable(u64),
    /// The XSDT lists no table with this signature.
    TableNotFound([u8; 4]),
}

impl DiscoveryError {
    /// The Linux errno the same failure gives: `-EINVAL` for a malformed or dangling
    /// description, `-EOPNOTSUPP`, `-ENOSPC`, `-ENODEV` (also for a missing table), `-EFAULT`
    /// for memory the reader refused.
    pub const fn errno(self) -> i32 {
        match self {
            Self::Malformed { .. } | Self::Dangling(_) => -22,
            Self::Unsupported(_) => -95,
            Self::TooMany(_) => -28,
            Self::NotFound | Self::TableNotFound(_) => -19,
            Self::Unreadable(_) => -14,
        }
    }

    pub(crate) const fn malformed(what: &'static str, offset: usize) -> Self {
        Self::Malformed {
            what,
            offset: if offset > u32::MAX as usize {
                u32::MAX
            } else {
                offset as u32
            },
        }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { what, offset } => {
                write!(f, "malformed description at {offset:#x}: {what}")
            }
            Self::Unsupported(what) => write!(f, "unsupported description: {what}"),
            Self::TooMany(what) => write!(f, "too many {what}"),
            Self::Dangling(r) => write!(f, "reference {r:#x} names nothing"),
            Self::NotFound => f.write_str("no SMMU translates this requester"),
            Self::Unreadable(pa) => write!(f, "physical memory at {pa:#x} not readable"),
            Self::TableNotFound(sig) => match core::str::from_utf8(sig) {
                Ok(s) => write!(f, "no ACPI table {s}"),
                Err(_) => write!(f, "no ACPI table {sig:02x?}"),
            },
        }
    }
}

/// Trigger of a wired interrupt (the GIC's edge/level configuration, IHI 0069 §12.9.13
/// GICD_ICFGR; the DT flags of `dt-bindings/interrupt-controller/irq.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Trigger {
    /// Rising edge (DT flag 1; every IORT SMMUv3 GSIV, as Linux registers them).
    EdgeRising,
    /// Falling edge (DT flag 2).
    EdgeFalling,
    /// Active-high level (DT flag 4).
    LevelHigh,
    /// Active-low level (DT flag 8).
    LevelLow,
}

impl Trigger {
    /// Whether the line is edge-triggered.
    pub const fn is_edge(self) -> bool {
        matches!(self, Self::EdgeRising | Self::EdgeFalling)
    }
}

/// One wired interrupt: its GIC INTID (SPI n = n + 32, PPI n = n + 16, extended SPI n =
/// n + 4096, extended PPI n = n + 1056; an ACPI GSIV is already an INTID) and its trigger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Irq {
    /// GIC interrupt ID.
    pub intid: u32,
    /// Edge or level.
    pub trigger: Trigger,
}

/// The SMMU's wired interrupts by purpose (DT `interrupt-names`; IORT SMMUv3 GSIVs). A source
/// without a line signals by MSI or not at all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SmmuIrqs {
    /// "eventq": event queue not empty.
    pub eventq: Option<Irq>,
    /// "priq": PRI queue not empty.
    pub priq: Option<Irq>,
    /// "cmdq-sync": CMD_SYNC complete.
    pub cmdq_sync: Option<Irq>,
    /// "gerror": global error.
    pub gerror: Option<Irq>,
    /// "combined": one line for everything (then the others are unused, as in Linux; IORT:
    /// Cavium CN99xx with four equal GSIVs).
    pub combined: Option<Irq>,
}

/// What a wired interrupt of an SMMU instance signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IrqSource {
    /// Event queue: drain it (`Smmu::drain_evtq`).
    Eventq,
    /// PRI queue: drain it (`Smmu::drain_priq`).
    Priq,
    /// CMD_SYNC completion.
    CmdqSync,
    /// Global error (`Smmu::handle_gerror`).
    Gerror,
    /// Everything on one line: check GERROR, then drain both queues.
    Combined,
    /// The paired CMDQV's error interrupt (`Cmdqv::handle_error`).
    Cmdqv,
}

/// Where the SMMU's own MSIs go (DT `msi-parent`; IORT: the SMMUv3 node's DeviceID mapping to
/// an ITS group).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsiParent {
    /// The MSI controller: its DT phandle, or the IORT ITS group node's offset in the table.
    pub controller: u32,
    /// The SMMU's DeviceID at that controller (DT `msi-parent` specifier cell; IORT single
    /// mapping's output ID), if firmware gives one.
    pub device_id: Option<u32>,
    /// The controller's register base (DT `reg`, translated); IORT does not carry it (MADT).
    pub base: Option<PhysAddr>,
}

/// Which NVIDIA SoC a CMDQV belongs to: the firmware path tells them apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CmdqvModel {
    /// Tegra241 (Grace), ACPI `NVDA200C`.
    Tegra241,
    /// Tegra264 (Thor), DT `nvidia,tegra264-cmdqv`.
    Tegra264,
}

/// One CMDQV window paired with an SMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CmdqvDesc {
    /// Physical base of the window (DT `reg`; ACPI memory resource 0).
    pub base: PhysAddr,
    /// Window size in bytes (`0x30000 + 0x20000 × VINTFs`).
    pub size: u64,
    /// The error interrupt (optional in ACPI: without it errors are not reported).
    pub irq: Option<Irq>,
    /// Which SoC.
    pub model: CmdqvModel,
    /// Whether firmware enabled the node (DT `status`); always true from ACPI.
    pub enabled: bool,
}

impl CmdqvDesc {
    /// The driver configuration for this window with Linux's defaults, given the paired SMMU's
    /// IDR1.CMDQS (`Features` after `Smmu::new`) and whether the SMMU is coherent.
    #[cfg(feature = "cmdqv")]
    pub fn config(&self, cmdq_log2_max: u8, coherent: bool) -> crate::cmdqv::CmdqvConfig {
        let size = usize::try_from(self.size).unwrap_or(usize::MAX);
        let mut cfg = crate::cmdqv::CmdqvConfig::new(self.base, size, cmdq_log2_max);
        cfg.board = match self.model {
            CmdqvModel::Tegra241 => crate::cmdqv::Board::Tegra241,
            CmdqvModel::Tegra264 => crate::cmdqv::Board::Tegra264,
        };
        cfg.coherent = coherent;
        cfg
    }
}

/// Where in the firmware description an SMMU was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FwNode {
    /// A DT node: its identity ([`DtNode`]) and its phandle if it has one.
    Dt {
        /// The node.
        node: DtNode,
        /// Its `phandle` property.
        phandle: Option<u32>,
    },
    /// An IORT node: its offset in the table and its Identifier field (matched to the
    /// `NVDA200C` device's `_UID`).
    Iort {
        /// Byte offset of the node in the IORT.
        offset: u32,
        /// The node's Identifier.
        identifier: u32,
    },
}

/// A DT node's identity: the byte offset of its name in the blob (stable for one blob).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DtNode(pub u32);

/// One SMMUv3 as firmware describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SmmuDesc {
    /// Physical base of register page 0 (DT `reg` translated through the parents' `ranges`;
    /// IORT Base Address).
    pub base: PhysAddr,
    /// Size of the register window (DT `reg`; IORT: 128 KiB, 64 KiB for Cavium CN99xx, as
    /// Linux assumes).
    pub size: u64,
    /// Wired interrupts.
    pub irqs: SmmuIrqs,
    /// Coherency as firmware states it (DT `dma-coherent`; IORT COHACC override flag), which
    /// takes precedence over IDR0.COHACC as in Linux.
    pub coherent: bool,
    /// Quirks implied by the compatible, DT properties or the IORT model field.
    pub quirks: Quirks,
    /// Where the SMMU's own MSIs go.
    pub msi_parent: Option<MsiParent>,
    /// The CMDQV paired with this SMMU.
    pub cmdqv: Option<CmdqvDesc>,
    /// Whether firmware enabled the node (DT `status` "okay" or absent); always true from
    /// ACPI. A hypervisor leaves a disabled SMMU alone.
    pub enabled: bool,
    /// Where it was described.
    pub fw: FwNode,
}

impl SmmuDesc {
    /// Physical address of register page 0.
    pub const fn page0(&self) -> PhysAddr {
        self.base
    }

    /// Physical address of register page 1 (page 0 + 64 KiB; with
    /// [`Quirks::PAGE0_REGS_ONLY`] the driver ignores it).
    pub const fn page1(&self) -> PhysAddr {
        PhysAddr(self.base.0.wrapping_add(SMMU_PAGE_SIZE))
    }

    /// The driver configuration firmware implies: [`Config::DEFAULT`] with the firmware's
    /// coherency and quirks. The hypervisor adds its own choices (queue sizes, MSI doorbells).
    pub const fn config(&self) -> Config {
        let mut cfg = Config::DEFAULT;
        cfg.coherent = Some(self.coherent);
        cfg.quirks = self.quirks;
        cfg
    }
}

/// Index of an SMMU in [`Topology::smmus`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SmmuIndex(pub u8);

/// Who an ID mapping belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MapOwner {
    /// A PCIe root complex or host bridge: the input IDs are requester IDs
    /// (bus << 8 | device << 3 | function) of PCI segment `segment` (DT `linux,pci-domain`,
    /// 0 when absent; IORT PCI Segment number).
    PciRoot {
        /// PCI segment (domain).
        segment: u32,
        /// The firmware node.
        node: u32,
    },
    /// A platform device (DT node with `iommus`; IORT named component).
    Device(DeviceRef),
}

/// A platform device in a firmware description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DeviceRef {
    /// A DT node.
    Dt(DtNode),
    /// An IORT named component node, by its offset in the table.
    Iort(u32),
}

/// One ID mapping: input IDs `[input_base, input_base + count)`, masked by `mask` first, go to
/// StreamIDs `output_base + (id - input_base)` of SMMU `smmu`. A single mapping (`count` 0 in
/// this type's terms: [`IdMap::single`]) sends every ID of its owner to `output_base`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IdMap {
    /// Whose IDs these are.
    pub owner: MapOwner,
    /// First input ID.
    pub input_base: u32,
    /// Number of input IDs (up to 2^32).
    pub count: u64,
    /// StreamID of `input_base`.
    pub output_base: u32,
    /// Applied to an input ID before the range check (DT `iommu-map-mask`; all ones otherwise).
    pub mask: u32,
    /// Every ID maps to `output_base` (DT `iommus` entry; IORT single mapping flag).
    pub single: bool,
    /// The SMMU.
    pub smmu: SmmuIndex,
}

impl IdMap {
    /// The StreamID for input ID `id`, if this mapping covers it (Linux `of_map_id`,
    /// `iort_id_map`).
    pub fn translate(&self, id: u32) -> Option<StreamId> {
        if self.single {
            return Some(StreamId(self.output_base));
        }
        let masked = id & self.mask;
        let off = u64::from(masked).checked_sub(u64::from(self.input_base))?;
        if off >= self.count {
            return None;
        }
        let sid = u64::from(self.output_base).checked_add(off)?;
        u32::try_from(sid).ok().map(StreamId)
    }
}

/// A StreamID at one SMMU instance.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stream {
    /// The SMMU.
    pub smmu: SmmuIndex,
    /// The StreamID at that SMMU.
    pub sid: StreamId,
}

/// Every SMMU and ID mapping one firmware description holds.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    smmus: Vec<SmmuDesc, MAX_SMMUS>,
    maps: Vec<IdMap, MAX_ID_MAPS>,
    foreign_maps: u32,
}

impl Topology {
    /// The SMMUv3 instances, in firmware order; [`SmmuIndex`] indexes this slice.
    pub fn smmus(&self) -> &[SmmuDesc] {
        &self.smmus
    }

    /// One SMMU by index.
    pub fn smmu(&self, index: SmmuIndex) -> Option<&SmmuDesc> {
        self.smmus.get(usize::from(index.0))
    }

    /// Every ID mapping that ends at one of [`smmus`](Self::smmus).
    pub fn id_maps(&self) -> &[IdMap] {
        &self.maps
    }

    /// ID mappings that end at another IOMMU or straight at an MSI controller (not ours to
    /// translate), counted so nothing is dropped silently.
    pub const fn foreign_maps(&self) -> u32 {
        self.foreign_maps
    }

    /// The SMMU and StreamID of PCIe requester `rid` (bus << 8 | devfn) in segment `segment`.
    ///
    /// # Errors
    /// [`DiscoveryError::NotFound`] when no mapping of that segment's root covers `rid`.
    pub fn pci_stream(&self, segment: u32, rid: u16) -> Result<Stream, DiscoveryError> {
        self.maps
            .iter()
            .filter(|m| matches!(m.owner, MapOwner::PciRoot { segment: s, .. } if s == segment))
            .find_map(|m| {
                m.translate(u32::from(rid))
                    .map(|sid| Stream { smmu: m.smmu, sid })
            })
            .ok_or(DiscoveryError::NotFound)
    }

    /// Every SMMU and StreamID of a platform device (a DT node may list several `iommus`).
    pub fn device_streams(&self, dev: DeviceRef) -> impl Iterator<Item = Stream> + '_ {
        self.maps
            .iter()
            .filter(move |m| m.owner == MapOwner::Device(dev))
            .filter_map(|m| m.translate(0).map(|sid| Stream { smmu: m.smmu, sid }))
    }

    /// Which SMMU instance owns wired interrupt `intid`, and what it signals: the interrupt
    /// entry's routing by instance. Firmware that gives one INTID to two instances gets the
    /// first (a shared line must then be handled by checking both).
    pub fn irq_owner(&self, intid: u32) -> Option<(SmmuIndex, IrqSource)> {
        self.smmus.iter().enumerate().find_map(|(i, s)| {
            let lines = [
                (s.irqs.eventq, IrqSource::Eventq),
                (s.irqs.priq, IrqSource::Priq),
                (s.irqs.cmdq_sync, IrqSource::CmdqSync),
                (s.irqs.gerror, IrqSource::Gerror),
                (s.irqs.combined, IrqSource::Combined),
                (s.cmdqv.and_then(|c| c.irq), IrqSource::Cmdqv),
            ];
            let (_, src) = lines
                .into_iter()
                .find(|(irq, _)| irq.is_some_and(|irq| irq.intid == intid))?;
            Some((SmmuIndex(u8::try_from(i).ok()?), src))
        })
    }

    /// The SMMUs with a CMDQV.
    pub fn cmdqvs(&self) -> impl Iterator<Item = (SmmuIndex, &CmdqvDesc)> + '_ {
        self.smmus
            .iter()
            .enumerate()
            .filter_map(|(i, s)| Some((SmmuIndex(u8::try_from(i).ok()?), s.cmdqv.as_ref()?)))
    }

    fn push_smmu(&mut self, smmu: SmmuDesc) -> Result<SmmuIndex, DiscoveryError> {
        let index = u8::try_from(self.smmus.len()).map_err(|_| DiscoveryError::TooMany("SMMUs"))?;
        self.smmus
            .push(smmu)
            .map_err(|_| DiscoveryError::TooMany("SMMUs"))?;
        Ok(SmmuIndex(index))
    }

    fn push_map(&mut self, map: IdMap) -> Result<(), DiscoveryError> {
        self.maps
            .push(map)
            .map_err(|_| DiscoveryError::TooMany("ID mappings"))
    }
}

/// Quirks a boolean DT property of an SMMU node implies (Linux `arm_smmu_options`).
pub(crate) fn quirk_for_dt_property(name: &str) -> Quirks {
    match name {
        // HiSilicon Hi161x: never issue CMD_PREFETCH_CONFIG.
        "hisilicon,broken-prefetch-cmd" => Quirks::BROKEN_PREFETCH,
        // Cavium CN99xx: page-1 registers only reachable at their page-0 offsets.
        "cavium,cn9900-broken-page1-regspace" => Quirks::PAGE0_REGS_ONLY,
        _ => Quirks::empty(),
    }
}

#[cfg(test)]
mod tests;
