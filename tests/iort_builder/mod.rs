//! Builds IORT tables byte by byte from the layouts of Arm DEN 0049 (issue E: table header,
//! node header, ITS group, named component, root complex, SMMUv3 node, ID mapping), and the
//! Grace-like table behind `tests/fixtures/iort/grace.iort`.
//!
//! What the Grace table takes from Grace: one SMMUv3 per group of PCIe root complexes, each of
//! generic model with the COHACC override set and a Tegra241 CMDQV described in the DSDT as
//! `NVDA200C` with `_UID` equal to the SMMUv3 node's identifier (Linux
//! `acpi_smmu_dsdt_probe_tegra241_cmdqv`, `tegra241_cmdqv_acpi_probe`), PCIe requester IDs
//! mapped 1:1 to StreamIDs, and SMMU DeviceIDs mapped to one ITS group. What it does not: the
//! addresses, GSIVs, segment numbers and counts are made up (no Grace firmware dump was
//! available to copy them from), and so is the named component.

#![allow(dead_code)]

use arm_smmuv3::PhysAddr;
use arm_smmuv3::discovery::iort::AcpiCmdqv;
use arm_smmuv3::discovery::{Irq, Trigger};

/// A node handle: its index in creation order.
#[derive(Clone, Copy, Debug)]
pub struct NodeId(usize);

/// Where an ID mapping points.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Node(NodeId),
    /// A raw output reference (byte offset in the table), for malformed tables.
    Raw(u32),
}

impl From<NodeId> for Target {
    fn from(n: NodeId) -> Self {
        Target::Node(n)
    }
}

struct Mapping {
    input_base: u32,
    num_ids: u32,
    output_base: u32,
    target: Target,
    single: bool,
}

struct NodeSpec {
    kind: u8,
    revision: u8,
    identifier: u32,
    /// Node bytes after the 16-byte header.
    body: Vec<u8>,
    maps: Vec<Mapping>,
}

/// An IORT under construction.
#[derive(Default)]
pub struct IortBuilder {
    nodes: Vec<NodeSpec>,
}

fn put32(v: &mut Vec<u8>, x: u32) {
    v.extend_from_slice(&x.to_le_bytes());
}

impl IortBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, kind: u8, revision: u8, identifier: u32, body: Vec<u8>) -> NodeId {
        self.nodes.push(NodeSpec {
            kind,
            revision,
            identifier,
            body,
            maps: Vec::new(),
        });
        NodeId(self.nodes.len() - 1)
    }

    /// An ITS group with one ITS, ID 0 (DEN 0049 §3.1.1.1 "ITS group node").
    pub fn its_group(&mut self) -> NodeId {
        let mut body = Vec::new();
        put32(&mut body, 1);
        put32(&mut body, 0);
        self.push(0x00, 1, 0, body)
    }

    /// An SMMUv3 node (DEN 0049 §3.1.1.5): base, flags, model, GSIVs [event, PRI, GERR, sync];
    /// with `msi` its ID mapping 0 is the single DeviceID mapping to that ITS group.
    pub fn smmu_v3(
        &mut self,
        identifier: u32,
        base: u64,
        flags: u32,
        model: u32,
        gsivs: [u32; 4],
        msi: Option<(NodeId, u32)>,
    ) -> NodeId {
        let mut body = Vec::new();
        body.extend_from_slice(&base.to_le_bytes()); // 16: base address
        put32(&mut body, flags); // 24: flags
        put32(&mut body, 0); // 28: reserved
        body.extend_from_slice(&0u64.to_le_bytes()); // 32: VATOS address
        put32(&mut body, model); // 40: model
        for g in gsivs {
            put32(&mut body, g); // 44, 48, 52, 56: event, PRI, GERR, sync GSIV
        }
        put32(&mut body, 0); // 60: proximity domain
        put32(&mut body, 0); // 64: DeviceID mapping index
        let id = self.push(0x04, 5, identifier, body);
        if let Some((its, device_id)) = msi {
            self.map(id, 0, 1, device_id, its, true);
        }
        id
    }

    /// A PCI root complex node (DEN 0049 §3.1.1.3), coherent, ATS supported.
    pub fn root_complex(&mut self, segment: u32) -> NodeId {
        let mut body = Vec::new();
        put32(&mut body, 1); // 16: cache coherent attribute
        body.extend_from_slice(&[0, 0, 0, 0]); // 20: hints, reserved, memory access flags
        put32(&mut body, 1); // 24: ATS attribute
        put32(&mut body, segment); // 28: PCI segment number
        body.extend_from_slice(&[64, 0, 0, 0]); // 32: address size limit, PASID caps, reserved
        put32(&mut body, 0); // 36: flags
        self.push(0x02, 4, 0, body)
    }

    /// A named component node (DEN 0049 §3.1.1.2) for the ACPI object `name`.
    pub fn named_component(&mut self, name: &str) -> NodeId {
        let mut body = Vec::new();
        put32(&mut body, 0); // 16: node flags
        put32(&mut body, 1); // 20: cache coherent attribute
        body.extend_from_slice(&[0, 0, 0, 0]); // 24: hints, reserved, memory access flags
        body.push(64); // 28: address size limit
        body.extend_from_slice(name.as_bytes()); // 29: device object name
        body.push(0);
        while (16 + body.len()) % 4 != 0 {
            body.push(0);
        }
        self.push(0x01, 4, 0, body)
    }

    /// An ID mapping on `owner`: `num_ids` IDs from `input_base` to `output_base` at `target`.
    pub fn map(
        &mut self,
        owner: NodeId,
        input_base: u32,
        num_ids: u32,
        output_base: u32,
        target: impl Into<Target>,
        single: bool,
    ) {
        self.nodes[owner.0].maps.push(Mapping {
            input_base,
            num_ids,
            output_base,
            target: target.into(),
            single,
        });
    }

    /// The byte offset each node gets.
    pub fn offsets(&self) -> Vec<u32> {
        let mut at = 48u32;
        self.nodes
            .iter()
            .map(|n| {
                let here = at;
                at += (16 + n.body.len() + 20 * n.maps.len()) as u32;
                here
            })
            .collect()
    }

    /// The table, checksum included.
    pub fn finish(&self) -> Vec<u8> {
        let offsets = self.offsets();
        let mut t = Vec::new();
        t.extend_from_slice(b"IORT");
        put32(&mut t, 0); // length, patched below
        t.push(3); // revision
        t.push(0); // checksum, patched below
        t.extend_from_slice(b"SMMUV3"); // OEM ID
        t.extend_from_slice(b"GRACELIK"); // OEM table ID
        put32(&mut t, 1); // OEM revision
        t.extend_from_slice(b"RUST"); // creator ID
        put32(&mut t, 1); // creator revision
        put32(&mut t, self.nodes.len() as u32); // 36: number of nodes
        put32(&mut t, 48); // 40: offset of the node array
        put32(&mut t, 0); // 44: reserved
        for n in &self.nodes {
            let len = 16 + n.body.len() + 20 * n.maps.len();
            t.push(n.kind);
            t.extend_from_slice(&(len as u16).to_le_bytes());
            t.push(n.revision);
            put32(&mut t, n.identifier);
            put32(&mut t, n.maps.len() as u32);
            put32(
                &mut t,
                if n.maps.is_empty() {
                    0
                } else {
                    (16 + n.body.len()) as u32
                },
            );
            t.extend_from_slice(&n.body);
            for m in &n.maps {
                put32(&mut t, m.input_base);
                put32(&mut t, m.num_ids - 1); // "number of IDs": the count minus one
                put32(&mut t, m.output_base);
                put32(
                    &mut t,
                    match m.target {
                        Target::Node(NodeId(i)) => offsets[i],
                        Target::Raw(r) => r,
                    },
                );
                put32(&mut t, u32::from(m.single));
            }
        }
        let len = t.len() as u32;
        t[4..8].copy_from_slice(&len.to_le_bytes());
        fix_checksum(&mut t);
        t
    }
}

/// Sets the ACPI checksum byte so that the table's bytes sum to zero.
pub fn fix_checksum(t: &mut [u8]) {
    t[9] = 0;
    let sum = t.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
}

/// SMMUv3 page-0 bases of the Grace-like table (made up).
pub const GRACE_SMMU_BASES: [u64; 4] = [0x1100_0000, 0x1200_0000, 0x1500_0000, 0x1600_0000];

/// The event GSIV of SMMU `i` (GERR is the next one; made up).
pub const fn grace_event_gsiv(i: usize) -> u32 {
    0x100 + 4 * i as u32
}

/// The `NVDA200C` devices a DSDT would describe beside the Grace-like IORT (made up bases and
/// GSIVs; the window size is Tegra264's 64-VINTF one from its DT binding).
pub const GRACE_CMDQVS: [AcpiCmdqv; 4] = {
    let mut out = [AcpiCmdqv {
        uid: 0,
        base: PhysAddr(0),
        size: 0,
        irq: None,
    }; 4];
    let mut i = 0;
    while i < 4 {
        out[i] = AcpiCmdqv {
            uid: i as u32,
            base: PhysAddr(GRACE_SMMU_BASES[i] + 0x20_0000),
            size: 0x83_0000,
            irq: Some(Irq {
                intid: 0x140 + i as u32,
                trigger: Trigger::EdgeRising,
            }),
        };
        i += 1;
    }
    out
};

/// The Grace-like IORT: an ITS group, four generic SMMUv3 nodes (event and GERR wired, PRI and
/// sync by MSI, COHACC override), root complexes 0-3 each behind its SMMU with RID = StreamID,
/// root complex 4 sharing SMMU 0 at StreamID 0x10000 + RID, root complex 5 straight to the ITS,
/// and one named component `\_SB.ETH0` with a single mapping to StreamID 5 of SMMU 1.
pub fn grace_iort() -> Vec<u8> {
    let mut b = IortBuilder::new();
    let its = b.its_group();
    let smmus: Vec<NodeId> = (0..4)
        .map(|i| {
            let ev = grace_event_gsiv(i);
            b.smmu_v3(
                i as u32,
                GRACE_SMMU_BASES[i],
                1,
                0,
                [ev, 0, ev + 1, 0],
                Some((its, 0x1_0000 + i as u32)),
            )
        })
        .collect();
    for (seg, smmu) in smmus.iter().enumerate() {
        let rc = b.root_complex(seg as u32);
        b.map(rc, 0, 0x1_0000, 0, *smmu, false);
    }
    let shared = b.root_complex(4);
    b.map(shared, 0, 0x1_0000, 0x1_0000, smmus[0], false);
    let direct = b.root_complex(5);
    b.map(direct, 0, 0x1_0000, 0x5_0000, its, false);
    let eth = b.named_component("\\_SB.ETH0");
    // A single mapping: its input base is ignored (DEN 0049 §3.1.1.1), so make it non-zero.
    b.map(eth, 0x77, 1, 5, smmus[1], true);
    b.finish()
}
