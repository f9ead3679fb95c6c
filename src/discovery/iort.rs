//! The ACPI IORT reader (Arm DEN 0049, "IO Remapping Table", revision E.x; layouts also in
//! Linux `include/acpi/actbl2.h`, behaviour of `drivers/acpi/arm64/iort.c`).
//!
//! Read: the table header (signature `IORT`, length, checksum), every node header
//! (DEN 0049 §3.1 "IORT node header": type, length, revision, identifier, ID mapping count and
//! offset), SMMUv3 nodes (§3.1.1.5 "SMMUv3 node": base address, flags with the COHACC
//! override, model, event/PRI/GERR/sync GSIVs, DeviceID mapping index), root complex nodes
//! (§3.1.1.3: PCI segment) and named component nodes (§3.1.1.2: device object name), and the
//! ID mappings (§3.1.1.1 "ID mappings": input base, number of IDs minus one, output base,
//! output reference, the single-mapping flag) of root complexes and named components that end
//! at an SMMUv3 node. Every offset is checked against the table's length; nodes must lie
//! inside the table and their ID arrays inside the node.
//!
//! The Tegra241 CMDQV is not in the IORT: it is the DSDT device `_HID` `NVDA200C` whose `_UID`
//! (as a decimal number) equals the SMMUv3 node's identifier, used only when the node's model
//! is generic (Linux `acpi_smmu_iort_probe_model`). They are handed in as [`AcpiCmdqv`]s:
//! [`super::aml`] reads them from the DSDT and SSDTs ([`super::acpi::Acpi::topology`] does
//! both), or the caller has them from its board description.

use super::{
    CmdqvDesc, CmdqvModel, DeviceRef, DiscoveryError, FwNode, IdMap, Irq, MapOwner, MsiParent,
    SmmuDesc, SmmuIndex, SmmuIrqs, Topology, Trigger,
};
use crate::ids::PhysAddr;
use crate::smmu::Quirks;

type Result<T> = core::result::Result<T, DiscoveryError>;

/// IORT header: the 36-byte ACPI header (ACPI 6.5 §5.2.6), node count, node array offset,
/// reserved (DEN 0049 Table 2).
const IORT_HEADER_LEN: usize = 48;
/// Node header: type, length, revision, identifier, mapping count, mapping offset.
const NODE_HEADER_LEN: usize = 16;
/// One ID mapping (DEN 0049 Table 4).
const ID_MAPPING_LEN: usize = 20;
/// SMMUv3 node length up to and including the sync GSIV (the oldest layout).
const SMMUV3_MIN_LEN: usize = 60;
/// SMMUv3 node length with the proximity domain and DeviceID mapping index.
const SMMUV3_FULL_LEN: usize = 68;
/// Root complex node length up to and including the PCI segment number.
const RC_MIN_LEN: usize = 32;
/// Named component node length up to the device object name.
const NC_NAME_OFFSET: usize = 29;

/// IORT node types (DEN 0049 Table 3).
mod node_type {
    pub const ITS_GROUP: u8 = 0x00;
    pub const NAMED_COMPONENT: u8 = 0x01;
    pub const ROOT_COMPLEX: u8 = 0x02;
    pub const SMMU_V1_V2: u8 = 0x03;
    pub const SMMU_V3: u8 = 0x04;
}

/// SMMUv3 node Flags bit 0: COHACC override (the SMMU's accesses are coherent).
const SMMUV3_COHACC_OVERRIDE: u32 = 1 << 0;
/// ID mapping Flags bit 0: single mapping.
const ID_SINGLE_MAPPING: u32 = 1 << 0;

/// The SMMUv3 Model field (DEN 0049 Table 14; Linux `ACPI_IORT_SMMU_V3_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SmmuModel {
    /// 0: generic SMMUv3 (may have an `NVDA200C` companion).
    Generic,
    /// 1: HiSilicon Hi161x (never issue CMD_PREFETCH_CONFIG).
    HisiliconHi161x,
    /// 2: Cavium CN99xx (page-1 registers at page-0 offsets, one combined interrupt).
    CaviumCn99xx,
    /// Another value: no quirk known.
    Other(u32),
}

impl SmmuModel {
    const fn from_raw(raw: u32) -> Self {
        match raw {
            0 => Self::Generic,
            1 => Self::HisiliconHi161x,
            2 => Self::CaviumCn99xx,
            other => Self::Other(other),
        }
    }

    /// The driver quirks the model implies.
    pub const fn quirks(self) -> Quirks {
        match self {
            Self::HisiliconHi161x => Quirks::BROKEN_PREFETCH,
            Self::CaviumCn99xx => Quirks::PAGE0_REGS_ONLY,
            Self::Generic | Self::Other(_) => Quirks::empty(),
        }
    }
}

/// A Tegra241 CMDQV as the DSDT describes it: device `_HID` `NVDA200C`, its `_UID`, memory
/// resource 0 and interrupt resource 0 (Linux `tegra241_cmdqv_acpi_probe`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AcpiCmdqv {
    /// `_UID`, matched to the SMMUv3 node's Identifier.
    pub uid: u32,
    /// Memory resource 0: the window's base.
    pub base: PhysAddr,
    /// Memory resource 0: the window's length.
    pub size: u64,
    /// Interrupt resource 0 (a GSIV), if any, and its trigger.
    pub irq: Option<Irq>,
}

/// A bounds-checked view of an IORT.
#[derive(Clone, Copy, Debug)]
pub struct Iort<'a> {
    table: &'a [u8],
    revision: u8,
}

impl<'a> Iort<'a> {
    /// Checks the IORT at the start of `blob`: signature, length within `blob`, checksum, node
    /// array inside the table.
    ///
    /// # Errors
    /// [`DiscoveryError::Malformed`] with the offending offset.
    pub fn new(blob: &'a [u8]) -> Result<Self> {
        if blob.get(0..4) != Some(b"IORT".as_slice()) {
            return Err(DiscoveryError::malformed("signature is not IORT", 0));
        }
        let len = le32(blob, 4).ok_or(DiscoveryError::malformed("header truncated", 4))? as usize;
        let table = blob
            .get(..len)
            .ok_or(DiscoveryError::malformed("length beyond the blob", 4))?;
        if len < IORT_HEADER_LEN {
            return Err(DiscoveryError::malformed(
                "length shorter than the IORT header",
                4,
            ));
        }
        if table.iter().fold(0u8, |s, b| s.wrapping_add(*b)) != 0 {
            return Err(DiscoveryError::malformed("checksum", 9));
        }
        let revision = *table
            .get(8)
            .ok_or(DiscoveryError::malformed("header truncated", 8))?;
        let this = Self { table, revision };
        let (count, first) = this.node_array()?;
        if count > 0 && first < IORT_HEADER_LEN {
            return Err(DiscoveryError::malformed(
                "node array overlaps the header",
                40,
            ));
        }
        Ok(this)
    }

    /// The table revision (ACPI header Revision: 3+ for DEN 0049 E.a and later).
    pub const fn revision(&self) -> u8 {
        self.revision
    }

    /// The named component whose device object name is `name` (e.g. `\_SB.ETH0`), for
    /// [`Topology::device_streams`].
    pub fn named_component(&self, name: &str) -> Option<DeviceRef> {
        self.nodes()
            .filter_map(|n| n.ok())
            .find(|n| {
                n.kind == node_type::NAMED_COMPONENT && self.nc_name(n) == Some(name.as_bytes())
            })
            .map(|n| DeviceRef::Iort(n.offset as u32))
    }

    /// Reads every SMMUv3 node (pairing it with the `NVDA200C` device in `cmdqvs` whose `_UID`
    /// is its identifier) and every root complex or named component ID mapping that ends at one.
    ///
    /// # Errors
    /// [`DiscoveryError::Malformed`] for a node or mapping outside the table or too short,
    /// [`DiscoveryError::Dangling`] for an output reference that is no node,
    /// [`DiscoveryError::TooMany`] beyond the [`Topology`] capacities.
    pub fn topology(&self, cmdqvs: &[AcpiCmdqv]) -> Result<Topology> {
        let mut topo = Topology::default();
        for node in self.nodes() {
            let node = node?;
            if node.kind == node_type::SMMU_V3 {
                let desc = self.read_smmu(&node, cmdqvs)?;
                topo.push_smmu(desc)?;
            }
        }
        for node in self.nodes() {
            let node = node?;
            let owner = match node.kind {
                node_type::ROOT_COMPLEX => {
                    if node.len < RC_MIN_LEN {
                        return Err(DiscoveryError::malformed(
                            "root complex node too short",
                            node.offset,
                        ));
                    }
                    MapOwner::PciRoot {
                        segment: self.u32_at(node.offset + 28)?,
                        node: node.offset as u32,
                    }
                }
                node_type::NAMED_COMPONENT => MapOwner::Device(DeviceRef::Iort(node.offset as u32)),
                _ => continue,
            };
            for i in 0..node.mappings {
                let m = self.mapping(&node, i)?;
                match self.smmu_index(&topo, m.output_ref)? {
                    Some(smmu) => topo.push_map(IdMap {
                        owner,
                        input_base: m.input_base,
                        count: u64::from(m.id_count) + 1,
                        output_base: m.output_base,
                        mask: u32::MAX,
                        single: m.flags & ID_SINGLE_MAPPING != 0,
                        smmu,
                    })?,
                    None => topo.foreign_maps = topo.foreign_maps.saturating_add(1),
                }
            }
        }
        Ok(topo)
    }

    fn node_array(&self) -> Result<(u32, usize)> {
        let count = self.u32_at(36)?;
        let first = self.u32_at(40)? as usize;
        Ok((count, first))
    }

    /// Every node, in table order; stops at the first malformed one.
    fn nodes(&self) -> impl Iterator<Item = Result<NodeRef>> + '_ {
        let (count, first) = self.node_array().unwrap_or((0, 0));
        let mut at = first;
        let mut failed = false;
        (0..count).map_while(move |_| {
            if failed {
                return None;
            }
            let node = self.node_at(at);
            match &node {
                Ok(n) => at = n.offset + n.len,
                Err(_) => failed = true,
            }
            Some(node)
        })
    }

    fn node_at(&self, at: usize) -> Result<NodeRef> {
        let kind = *self
            .table
            .get(at)
            .ok_or(DiscoveryError::malformed("node beyond the table", at))?;
        let len = usize::from(
            le16(self.table, at + 1)
                .ok_or(DiscoveryError::malformed("node header truncated", at))?,
        );
        if len < NODE_HEADER_LEN || at.checked_add(len).is_none_or(|end| end > self.table.len()) {
            return Err(DiscoveryError::malformed(
                "node length outside the table",
                at,
            ));
        }
        let identifier = self.u32_at(at + 4)?;
        let mappings = self.u32_at(at + 8)?;
        let map_off = self.u32_at(at + 12)? as usize;
        if mappings > 0 {
            let bytes = (mappings as usize)
                .checked_mul(ID_MAPPING_LEN)
                .and_then(|b| b.checked_add(map_off));
            if map_off < NODE_HEADER_LEN || bytes.is_none_or(|end| end > len) {
                return Err(DiscoveryError::malformed(
                    "ID mapping array outside its node",
                    at + 12,
                ));
            }
        }
        Ok(NodeRef {
            offset: at,
            kind,
            len,
            identifier,
            mappings,
            map_off,
        })
    }

    fn mapping(&self, node: &NodeRef, i: u32) -> Result<Mapping> {
        let at = node.offset + node.map_off + i as usize * ID_MAPPING_LEN;
        Ok(Mapping {
            input_base: self.u32_at(at)?,
            id_count: self.u32_at(at + 4)?,
            output_base: self.u32_at(at + 8)?,
            output_ref: self.u32_at(at + 12)?,
            flags: self.u32_at(at + 16)?,
        })
    }

    /// The index in `topo` of the SMMUv3 node at table offset `reference`, `None` if the
    /// reference is another kind of node (an ITS group, an SMMUv1/v2).
    fn smmu_index(&self, topo: &Topology, reference: u32) -> Result<Option<SmmuIndex>> {
        let target = self
            .node_at(reference as usize)
            .map_err(|_| DiscoveryError::Dangling(reference))?;
        if target.kind != node_type::SMMU_V3 {
            return match target.kind {
                node_type::ITS_GROUP | node_type::SMMU_V1_V2 => Ok(None),
                _ => Err(DiscoveryError::Unsupported(
                    "ID mapping output reference is neither an SMMU nor an ITS group",
                )),
            };
        }
        let found = topo
            .smmus()
            .iter()
            .position(|s| matches!(s.fw, FwNode::Iort { offset, .. } if offset == reference));
        match found.and_then(|i| u8::try_from(i).ok()) {
            Some(i) => Ok(Some(SmmuIndex(i))),
            // A node the node array does not list: not one of ours.
            None => Err(DiscoveryError::Dangling(reference)),
        }
    }

    fn read_smmu(&self, node: &NodeRef, cmdqvs: &[AcpiCmdqv]) -> Result<SmmuDesc> {
        if node.len < SMMUV3_MIN_LEN {
            return Err(DiscoveryError::malformed(
                "SMMUv3 node too short",
                node.offset,
            ));
        }
        let at = node.offset;
        let base = self.u64_at(at + 16)?;
        let flags = self.u32_at(at + 24)?;
        let model = SmmuModel::from_raw(self.u32_at(at + 40)?);
        let gsiv = |off: usize| -> Result<Option<Irq>> {
            let g = self.u32_at(at + off)?;
            // A zero GSIV: the source is not wired (it uses an MSI). Linux registers every
            // SMMUv3 GSIV edge-triggered, active-high.
            Ok((g != 0).then_some(Irq {
                intid: g,
                trigger: Trigger::EdgeRising,
            }))
        };
        let (event, pri, gerr, sync) = (gsiv(44)?, gsiv(48)?, gsiv(52)?, gsiv(56)?);
        let irqs = if model == SmmuModel::CaviumCn99xx
            && event.is_some()
            && event == pri
            && event == gerr
            && event == sync
        {
            // Cavium CN99xx: one line for everything (Linux `arm_smmu_v3_is_combined_irq`).
            SmmuIrqs {
                combined: event,
                ..SmmuIrqs::default()
            }
        } else {
            SmmuIrqs {
                eventq: event,
                priq: pri,
                cmdq_sync: sync,
                gerror: gerr,
                combined: None,
            }
        };
        let msi_parent = if node.len >= SMMUV3_FULL_LEN
            && [event, pri, gerr, sync].iter().any(Option::is_none)
        {
            // The DeviceID mapping: a single mapping to the ITS group the MSIs go to.
            let index = self.u32_at(at + 64)?;
            if index < node.mappings {
                let m = self.mapping(node, index)?;
                (m.flags & ID_SINGLE_MAPPING != 0).then_some(MsiParent {
                    controller: m.output_ref,
                    device_id: Some(m.output_base),
                    base: None,
                })
            } else {
                None
            }
        } else {
            None
        };
        let cmdqv = match model {
            SmmuModel::Generic => {
                cmdqvs
                    .iter()
                    .find(|c| c.uid == node.identifier)
                    .map(|c| CmdqvDesc {
                        base: c.base,
                        size: c.size,
                        irq: c.irq,
                        model: CmdqvModel::Tegra241,
                        enabled: true,
                    })
            }
            _ => None,
        };
        Ok(SmmuDesc {
            base: PhysAddr(base),
            // Linux `arm_smmu_v3_resource_size`: 64 KiB for CN99xx, 128 KiB otherwise.
            size: if model == SmmuModel::CaviumCn99xx {
                0x1_0000
            } else {
                0x2_0000
            },
            irqs,
            coherent: flags & SMMUV3_COHACC_OVERRIDE != 0,
            quirks: model.quirks(),
            msi_parent,
            cmdqv,
            enabled: true,
            fw: FwNode::Iort {
                offset: node.offset as u32,
                identifier: node.identifier,
            },
        })
    }

    /// The SMMUv3 node's Model field at `offset` (for callers that report it).
    pub fn smmu_model(&self, offset: u32) -> Option<SmmuModel> {
        let node = self.node_at(offset as usize).ok()?;
        if node.kind != node_type::SMMU_V3 || node.len < SMMUV3_MIN_LEN {
            return None;
        }
        self.u32_at(node.offset + 40).ok().map(SmmuModel::from_raw)
    }

    fn nc_name(&self, node: &NodeRef) -> Option<&'a [u8]> {
        let start = node.offset.checked_add(NC_NAME_OFFSET)?;
        let end = node.offset.checked_add(node.len)?;
        let field = self.table.get(start..end)?;
        let len = field.iter().position(|&b| b == 0)?;
        field.get(..len)
    }

    fn u32_at(&self, at: usize) -> Result<u32> {
        le32(self.table, at).ok_or(DiscoveryError::malformed("field beyond the table", at))
    }

    fn u64_at(&self, at: usize) -> Result<u64> {
        let lo = self.u32_at(at)?;
        let hi = self.u32_at(at + 4)?;
        Ok(u64::from(hi) << 32 | u64::from(lo))
    }
}

#[derive(Clone, Copy)]
struct NodeRef {
    offset: usize,
    kind: u8,
    len: usize,
    identifier: u32,
    mappings: u32,
    map_off: usize,
}

#[derive(Clone, Copy)]
struct Mapping {
    input_base: u32,
    id_count: u32,
    output_base: u32,
    output_ref: u32,
    flags: u32,
}

fn le16(v: &[u8], at: usize) -> Option<u16> {
    let b = v.get(at..at.checked_add(2)?)?;
    Some(u16::from_le_bytes([*b.first()?, *b.get(1)?]))
}

fn le32(v: &[u8], at: usize) -> Option<u32> {
    let b = v.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}
