//! The flattened device tree reader.
//!
//! The blob is validated whole by [`dtoolkit`] (Devicetree Specification v0.4 §5: header,
//! memory reservation block, structure block tokens, node and property names, string offsets)
//! before anything is read; this module then reads properties with bounds-checked big-endian
//! cell accessors. Nesting deeper than 16 levels is refused rather than recursed into.
//!
//! What is read, per node:
//! * `compatible` containing `arm,smmu-v3` or `nvidia,tegra264-smmu`: `reg`, `interrupts`/`interrupts-extended` by
//!   `interrupt-names` (`eventq`, `priq`, `cmdq-sync`, `gerror`, `combined`), `dma-coherent`,
//!   `msi-parent`, `hisilicon,broken-prefetch-cmd`, `cavium,cn9900-broken-page1-regspace`,
//!   `#iommu-cells` (must be 1), `status`; with `nvidia,tegra264-smmu` also the
//!   [`Quirks::REPEAT_CFGI_TLBI`] erratum and the `nvidia,cmdqv` phandle to an
//!   `nvidia,tegra264-cmdqv` node (`reg`, one interrupt), as Linux's
//!   `arm_smmu_device_dt_probe` and `tegra241_cmdqv` DT probe do.
//! * `iommu-map` (with `iommu-map-mask`, `linux,pci-domain`) of PCIe host bridges:
//!   `<rid-base iommu-phandle sid-base length>` entries (Linux `of_map_id`).
//! * `iommus` of platform devices: `<iommu-phandle specifier...>` entries, the specifier as long
//!   as the IOMMU's `#iommu-cells`.
//!
//! `reg` addresses are translated to CPU physical addresses through every parent's `ranges`
//! (Devicetree Specification §2.3.8); interrupt specifiers are decoded for a GIC parent
//! (`Documentation/devicetree/bindings/interrupt-controller/arm,gic-v3.yaml`, `arm,gic.yaml`).

use core::ptr::NonNull;

use dtoolkit::fdt::{Fdt, FdtNode};
use dtoolkit::{Node, Property};
use heapless::Vec;

use super::{
    CmdqvDesc, CmdqvModel, DeviceRef, DiscoveryError, DtNode, FwNode, IdMap, Irq, MapOwner,
    MsiParent, SmmuDesc, SmmuIrqs, Topology, Trigger, quirk_for_dt_property,
};
use crate::ids::PhysAddr;
use crate::smmu::Quirks;

/// Deepest node nesting the reader follows (the root is level 1).
pub const MAX_DEPTH: usize = 16;

const FDT_MAGIC: u32 = 0xd00d_feed;
/// Per-entry cells of `iommu-map` (Linux `of_map_id` requires 4: `#iommu-cells` = 1).
const IOMMU_MAP_CELLS: usize = 4;
/// SMMUs whose raw `iommu-map`/`iommus` references are kept until the SMMUs are known.
const MAX_PENDING: usize = super::MAX_ID_MAPS;

type Result<T> = core::result::Result<T, DiscoveryError>;

fn malformed(what: &'static str) -> DiscoveryError {
    DiscoveryError::malformed(what, 0)
}

/// A validated flattened device tree.
#[derive(Clone, Copy, Debug)]
pub struct DeviceTree<'a> {
    fdt: Fdt<'a>,
    data: &'a [u8],
}

/// One `reg` entry translated to a CPU physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Reg {
    /// CPU physical address.
    pub base: PhysAddr,
    /// Size in bytes (0 when the parent has `#size-cells = <0>`).
    pub size: u64,
}

/// The console `/chosen` `stdout-path` names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Console<'a> {
    /// The node's path.
    pub path: &'a str,
    /// Its first `compatible` string (e.g. `arm,pl011`), which tells the driver.
    pub compatible: Option<&'a str>,
    /// Its first `reg` entry, translated.
    pub reg: Reg,
}

/// One level of the path from the root to the node being visited.
#[derive(Clone, Copy)]
struct Frame<'a> {
    node: FdtNode<'a>,
    /// This node's `#address-cells` (for its children's `reg`); 2 when absent.
    addr_cells: usize,
    /// This node's `#size-cells`; 1 when absent.
    size_cells: usize,
    /// This node's `ranges`: `None` when absent (children not translatable), empty = identity.
    ranges: Option<&'a [u8]>,
    /// The effective interrupt parent: this node's `interrupt-parent` or the inherited one.
    irq_parent: Option<u32>,
}

type Path<'a> = Vec<Frame<'a>, MAX_DEPTH>;

/// An SMMU node's properties that need other nodes to decode, kept for the second pass.
#[derive(Clone, Copy)]
struct RawSmmu<'a> {
    desc: SmmuDesc,
    phandle: Option<u32>,
    irq_parent: Option<u32>,
    interrupts: Option<&'a [u8]>,
    interrupts_ext: Option<&'a [u8]>,
    names: Option<&'a [u8]>,
    msi_parent: Option<&'a [u8]>,
    cmdqv: Option<u32>,
}

/// A node's `iommu-map` or `iommus`, kept until every SMMU's phandle is known.
#[derive(Clone, Copy)]
struct RawMap<'a> {
    owner: MapOwner,
    cells: &'a [u8],
    mask: u32,
    is_map: bool,
}

impl<'a> DeviceTree<'a> {
    /// Validates the flattened device tree at the start of `blob` (which may be longer than
    /// the tree: the header's `totalsize` bounds it).
    ///
    /// # Errors
    /// [`DiscoveryError::Malformed`] for a bad header, a `totalsize` beyond `blob`, or any
    /// structural error the parser finds.
    pub fn new(blob: &'a [u8]) -> Result<Self> {
        if be32(blob, 0).ok_or(malformed("shorter than an FDT header"))? != FDT_MAGIC {
            return Err(malformed("bad FDT magic"));
        }
        let total = be32(blob, 4).ok_or(malformed("shorter than an FDT header"))?;
        let data = usize::try_from(total)
            .ok()
            .and_then(|t| blob.get(..t))
            .ok_or(DiscoveryError::malformed(
                "FDT totalsize beyond the blob",
                4,
            ))?;
        let fdt = Fdt::new(data).map_err(|e| malformed(parse_error(&e.kind)))?;
        Ok(Self { fdt, data })
    }

    /// Validates the flattened device tree a boot loader handed over at `ptr` (QEMU and U-Boot
    /// pass it in `x0`).
    ///
    /// # Safety
    /// `max_len` bytes from `ptr` are readable and do not change for `'a`.
    ///
    /// # Errors
    /// As [`DeviceTree::new`].
    pub unsafe fn from_ptr(ptr: NonNull<u8>, max_len: usize) -> Result<Self> {
        // SAFETY: the caller guarantees `max_len` readable, unchanging bytes at `ptr` for 'a.
        let blob = unsafe { core::slice::from_raw_parts(ptr.as_ptr().cast_const(), max_len) };
        Self::new(blob)
    }

    /// The blob's bytes (up to `totalsize`).
    pub const fn data(&self) -> &'a [u8] {
        self.data
    }

    /// The node at `path` (e.g. `/bus@8800000000/hda@90b0000`), for
    /// [`Topology::device_streams`].
    pub fn device(&self, path: &str) -> Option<DeviceRef> {
        self.fdt
            .find_node(path)
            .map(|n| DeviceRef::Dt(self.node_id(&n)))
    }

    /// Entry `index` of the `reg` of the node at `path` (e.g. `/bus@8800000000/hda@90b0000`),
    /// its address translated to a CPU physical address through the `ranges` of every parent
    /// bus (Devicetree Specification §2.3.8), as Linux `of_address_to_resource` does: for
    /// finding the MMIO of a node this module does not otherwise read (the console of
    /// [`DeviceTree::stdout`], a timer, a DMA engine).
    ///
    /// # Errors
    /// [`DiscoveryError::NotFound`] when no node has that path or its `reg` has no entry
    /// `index`; [`DiscoveryError::Unsupported`] for a node behind a bus without `ranges` (not
    /// memory-mapped) or outside every window, or more than 2 cells per field;
    /// [`DiscoveryError::Malformed`] for a malformed `reg` or `ranges`.
    pub fn reg(&self, path: &str, index: usize) -> Result<Reg> {
        let target = self.fdt.find_node(path).ok_or(DiscoveryError::NotFound)?;
        let id = self.node_id(&target);
        self.walk(&mut |frames| {
            let Some(frame) = frames.last() else {
                return Ok(None);
            };
            if self.node_id(&frame.node) != id {
                return Ok(None);
            }
            let (base, size) = reg_entry(frames, index)?;
            Ok(Some(Reg {
                base: PhysAddr(base),
                size,
            }))
        })?
        .ok_or(DiscoveryError::NotFound)
    }

    /// The node `/chosen` `stdout-path` names (Devicetree Specification §3.6): its path with an
    /// alias resolved through `/aliases` and the `:options` suffix dropped. `None` without a
    /// `stdout-path`.
    ///
    /// # Errors
    /// [`DiscoveryError::Malformed`] for a value that is not a string;
    /// [`DiscoveryError::Dangling`] (0) for an alias `/aliases` does not define.
    pub fn stdout_path(&self) -> Result<Option<&'a str>> {
        let Some(chosen) = self.fdt.find_node("/chosen") else {
            return Ok(None);
        };
        let Some(v) = prop(&chosen, "stdout-path") else {
            return Ok(None);
        };
        let v = string(v).ok_or(malformed("stdout-path not a string"))?;
        let spec = v.split(':').next().unwrap_or(v);
        if spec.starts_with('/') {
            return Ok(Some(spec));
        }
        let aliases = self
            .fdt
            .find_node("/aliases")
            .ok_or(DiscoveryError::Dangling(0))?;
        let target = prop(&aliases, spec).ok_or(DiscoveryError::Dangling(0))?;
        string(target)
            .filter(|t| t.starts_with('/'))
            .map(Some)
            .ok_or(malformed("alias not a path"))
    }

    /// The console `/chosen` `stdout-path` names: its path, first `compatible` string and first
    /// `reg` entry translated ([`DeviceTree::reg`]). `None` without a `stdout-path`.
    ///
    /// # Errors
    /// As [`DeviceTree::stdout_path`] and [`DeviceTree::reg`].
    pub fn stdout(&self) -> Result<Option<Console<'a>>> {
        let Some(path) = self.stdout_path()? else {
            return Ok(None);
        };
        let node = self.fdt.find_node(path).ok_or(DiscoveryError::NotFound)?;
        let compatible = compatibles(&node)
            .next()
            .and_then(|c| core::str::from_utf8(c).ok());
        Ok(Some(Console {
            path,
            compatible,
            reg: self.reg(path, 0)?,
        }))
    }

    /// Reads every SMMUv3 (with its CMDQV) and every `iommu-map`/`iommus` that ends at one.
    ///
    /// # Errors
    /// [`DiscoveryError`] for a malformed or unsupported description of an SMMU, its CMDQV,
    /// its interrupt parent or an ID mapping to it; [`DiscoveryError::TooMany`] beyond
    /// [`MAX_SMMUS`](super::MAX_SMMUS), [`MAX_ID_MAPS`](super::MAX_ID_MAPS) or
    /// [`MAX_DEPTH`].
    pub fn topology(&self) -> Result<Topology> {
        let mut smmus: Vec<RawSmmu<'a>, { super::MAX_SMMUS }> = Vec::new();
        let mut maps: Vec<RawMap<'a>, MAX_PENDING> = Vec::new();
        self.walk(&mut |path| {
            let Some(frame) = path.last() else {
                return Ok(None);
            };
            let node = frame.node;
            if has_compatible(&node, "arm,smmu-v3") || has_compatible(&node, "nvidia,tegra264-smmu")
            {
                let raw = self.read_smmu(path)?;
                smmus
                    .push(raw)
                    .map_err(|_| DiscoveryError::TooMany("SMMUs"))?;
            }
            if let Some(cells) = prop(&node, "iommu-map") {
                let mask = match prop(&node, "iommu-map-mask") {
                    Some(v) => be32(v, 0).ok_or(malformed("iommu-map-mask shorter than a cell"))?,
                    None => u32::MAX,
                };
                let segment = match prop(&node, "linux,pci-domain") {
                    Some(v) => {
                        be32(v, 0).ok_or(malformed("linux,pci-domain shorter than a cell"))?
                    }
                    None => 0,
                };
                let owner = MapOwner::PciRoot {
                    segment,
                    node: self.node_id(&node).0,
                };
                maps.push(RawMap {
                    owner,
                    cells,
                    mask,
                    is_map: true,
                })
                .map_err(|_| DiscoveryError::TooMany("ID mappings"))?;
            }
            if let Some(cells) = prop(&node, "iommus") {
                let owner = MapOwner::Device(DeviceRef::Dt(self.node_id(&node)));
                maps.push(RawMap {
                    owner,
                    cells,
                    mask: u32::MAX,
                    is_map: false,
                })
                .map_err(|_| DiscoveryError::TooMany("ID mappings"))?;
            }
            Ok(None::<()>)
        })?;

        let mut topo = Topology::default();
        for raw in &smmus {
            let desc = self.finish_smmu(raw)?;
            topo.push_smmu(desc)?;
        }
        for map in &maps {
            self.resolve_map(map, &smmus, &mut topo)?;
        }
        Ok(topo)
    }

    fn node_id(&self, node: &FdtNode<'a>) -> DtNode {
        let off = node
            .name()
            .as_ptr()
            .addr()
            .wrapping_sub(self.data.as_ptr().addr());
        DtNode(u32::try_from(off).unwrap_or(u32::MAX))
    }

    /// Depth-first visit of every node with its path from the root; `f` returning `Some`
    /// stops the walk with that value.
    fn walk<T>(&self, f: &mut dyn FnMut(&[Frame<'a>]) -> Result<Option<T>>) -> Result<Option<T>> {
        let mut path: Path<'a> = Vec::new();
        Self::visit(self.fdt.root(), &mut path, f)
    }

    fn visit<T>(
        node: FdtNode<'a>,
        path: &mut Path<'a>,
        f: &mut dyn FnMut(&[Frame<'a>]) -> Result<Option<T>>,
    ) -> Result<Option<T>> {
        let inherited = path.last().and_then(|p| p.irq_parent);
        let frame = Frame {
            node,
            addr_cells: cells_prop(&node, "#address-cells")?.unwrap_or(2),
            size_cells: cells_prop(&node, "#size-cells")?.unwrap_or(1),
            ranges: prop(&node, "ranges"),
            irq_parent: match prop(&node, "interrupt-parent") {
                Some(v) => {
                    Some(be32(v, 0).ok_or(malformed("interrupt-parent shorter than a cell"))?)
                }
                None => inherited,
            },
        };
        path.push(frame)
            .map_err(|_| DiscoveryError::TooMany("DT nesting levels"))?;
        if let Some(found) = f(path)? {
            return Ok(Some(found));
        }
        for child in node.children() {
            if let Some(found) = Self::visit(child, path, f)? {
                return Ok(Some(found));
            }
        }
        path.pop();
        Ok(None)
    }

    /// The node whose `phandle` (or legacy `linux,phandle`) is `phandle`, with its first `reg`
    /// address translated (if it has one) and its effective interrupt parent.
    fn by_phandle(&self, phandle: u32) -> Result<Found<'a>> {
        self.walk(&mut |path| {
            let Some(frame) = path.last() else {
                return Ok(None);
            };
            let ph = prop(&frame.node, "phandle").or_else(|| prop(&frame.node, "linux,phandle"));
            if ph.and_then(|v| be32(v, 0)) != Some(phandle) {
                return Ok(None);
            }
            let reg = match prop(&frame.node, "reg") {
                Some(_) => Some(first_reg(path)?),
                None => None,
            };
            Ok(Some(Found {
                node: frame.node,
                reg,
                irq_parent: frame.irq_parent,
            }))
        })?
        .ok_or(DiscoveryError::Dangling(phandle))
    }

    fn read_smmu(&self, path: &[Frame<'a>]) -> Result<RawSmmu<'a>> {
        let frame = path.last().ok_or(malformed("empty path"))?;
        let node = frame.node;
        match cells_prop(&node, "#iommu-cells")? {
            Some(1) => {}
            Some(_) => {
                return Err(DiscoveryError::Unsupported(
                    "SMMUv3 #iommu-cells other than 1",
                ));
            }
            None => return Err(malformed("SMMUv3 node without #iommu-cells")),
        }
        let (base, size) = first_reg(path)?;
        let tegra264 = has_compatible(&node, "nvidia,tegra264-smmu");
        let mut quirks = Quirks::empty();
        for p in node.properties() {
            quirks |= quirk_for_dt_property(p.name());
        }
        if tegra264 {
            // Tegra264: every CFGI/TLBI...CMD_SYNC sequence is issued twice; known only from
            // the compatible (not advertised in IDR/IIDR).
            quirks |= Quirks::REPEAT_CFGI_TLBI;
        }
        let phandle = prop(&node, "phandle")
            .or_else(|| prop(&node, "linux,phandle"))
            .and_then(|v| be32(v, 0));
        let cmdqv = if tegra264 {
            match prop(&node, "nvidia,cmdqv") {
                Some(v) => Some(be32(v, 0).ok_or(malformed("nvidia,cmdqv shorter than a cell"))?),
                None => None,
            }
        } else {
            None
        };
        let desc = SmmuDesc {
            base: PhysAddr(base),
            size,
            irqs: SmmuIrqs::default(),
            coherent: prop(&node, "dma-coherent").is_some(),
            quirks,
            msi_parent: None,
            cmdqv: None,
            enabled: is_enabled(&node),
            fw: FwNode::Dt {
                node: self.node_id(&node),
                phandle,
            },
        };
        Ok(RawSmmu {
            desc,
            phandle,
            irq_parent: frame.irq_parent,
            interrupts: prop(&node, "interrupts"),
            interrupts_ext: prop(&node, "interrupts-extended"),
            names: prop(&node, "interrupt-names"),
            msi_parent: prop(&node, "msi-parent"),
            cmdqv,
        })
    }

    fn finish_smmu(&self, raw: &RawSmmu<'a>) -> Result<SmmuDesc> {
        let mut desc = raw.desc;
        let mut irqs = [None::<Irq>; MAX_SMMU_IRQS];
        let count = self.decode_irqs(
            raw.interrupts,
            raw.interrupts_ext,
            raw.irq_parent,
            &mut irqs,
        )?;
        if let Some(names) = raw.names {
            for (i, name) in strings(names).enumerate() {
                let irq = if i < count {
                    irqs.get(i).copied().flatten()
                } else {
                    return Err(malformed("more interrupt-names than interrupts"));
                };
                match name {
                    b"eventq" => desc.irqs.eventq = irq,
                    b"priq" => desc.irqs.priq = irq,
                    b"cmdq-sync" => desc.irqs.cmdq_sync = irq,
                    b"gerror" => desc.irqs.gerror = irq,
                    b"combined" => desc.irqs.combined = irq,
                    _ => {}
                }
            }
        }
        if let Some(v) = raw.msi_parent {
            let controller = be32(v, 0).ok_or(malformed("msi-parent shorter than a cell"))?;
            let target = self.by_phandle(controller)?;
            let device_id = match cells_prop(&target.node, "#msi-cells")?.unwrap_or(0) {
                0 => None,
                1 => Some(be32(v, 4).ok_or(malformed("msi-parent shorter than its #msi-cells"))?),
                _ => return Err(DiscoveryError::Unsupported("#msi-cells above 1")),
            };
            desc.msi_parent = Some(MsiParent {
                controller,
                device_id,
                base: target.reg.map(|(b, _)| PhysAddr(b)),
            });
        }
        if let Some(ph) = raw.cmdqv {
            desc.cmdqv = Some(self.read_cmdqv(ph)?);
        }
        Ok(desc)
    }

    fn read_cmdqv(&self, phandle: u32) -> Result<CmdqvDesc> {
        let found = self.by_phandle(phandle)?;
        if !has_compatible(&found.node, "nvidia,tegra264-cmdqv") {
            return Err(DiscoveryError::Unsupported(
                "nvidia,cmdqv names a node that is not nvidia,tegra264-cmdqv",
            ));
        }
        let (base, size) = found.reg.ok_or(malformed("CMDQV node without reg"))?;
        let mut irqs = [None::<Irq>; MAX_SMMU_IRQS];
        let count = self.decode_irqs(
            prop(&found.node, "interrupts"),
            prop(&found.node, "interrupts-extended"),
            found.irq_parent,
            &mut irqs,
        )?;
        let irq = if count > 0 {
            irqs.first().copied().flatten()
        } else {
            None
        };
        Ok(CmdqvDesc {
            base: PhysAddr(base),
            size,
            irq,
            model: CmdqvModel::Tegra264,
            enabled: is_enabled(&found.node),
        })
    }

    /// Decodes the node's interrupt specifiers into `out`; returns how many there are (more
    /// than `out` holds is refused, not truncated).
    fn decode_irqs(
        &self,
        interrupts: Option<&'a [u8]>,
        extended: Option<&'a [u8]>,
        parent: Option<u32>,
        out: &mut [Option<Irq>],
    ) -> Result<usize> {
        if let Some(ext) = extended {
            // <phandle specifier...> repeated, each specifier as long as its parent's cells.
            let mut at = 0;
            let mut n = 0;
            while at < ext.len() {
                let ph = be32(ext, at).ok_or(malformed("interrupts-extended truncated"))?;
                let gic = self.gic(ph)?;
                let spec = ext
                    .get(at + 4..at + 4 + 4 * gic.cells)
                    .ok_or(malformed("interrupts-extended truncated"))?;
                if let Some(slot) = out.get_mut(n) {
                    *slot = Some(decode_gic(spec)?);
                }
                n += 1;
                at += 4 + 4 * gic.cells;
            }
            return Self::bounded(n, out.len());
        }
        let Some(ints) = interrupts else {
            return Ok(0);
        };
        let ph = parent.ok_or(malformed("interrupts without an interrupt-parent"))?;
        let gic = self.gic(ph)?;
        let stride = 4 * gic.cells;
        if ints.is_empty() || !ints.len().is_multiple_of(stride) {
            return Err(malformed("interrupts not a multiple of #interrupt-cells"));
        }
        let mut n = 0;
        for spec in ints.chunks_exact(stride) {
            if let Some(slot) = out.get_mut(n) {
                *slot = Some(decode_gic(spec)?);
            }
            n += 1;
        }
        Self::bounded(n, out.len())
    }

    fn bounded(n: usize, cap: usize) -> Result<usize> {
        if n > cap {
            return Err(DiscoveryError::Unsupported(
                "more than 8 interrupts on an SMMU or CMDQV node",
            ));
        }
        Ok(n)
    }

    /// The GIC whose phandle is `phandle`, with its `#interrupt-cells`.
    fn gic(&self, phandle: u32) -> Result<Gic> {
        let found = self.by_phandle(phandle)?;
        let is_gic = prop(&found.node, "interrupt-controller").is_some()
            && compatibles(&found.node).any(|c| {
                c.starts_with(b"arm,gic")
                    || (c.starts_with(b"arm,cortex-a") && c.ends_with(b"-gic"))
            });
        if !is_gic {
            return Err(DiscoveryError::Unsupported(
                "interrupt parent is not an Arm GIC",
            ));
        }
        match cells_prop(&found.node, "#interrupt-cells")? {
            Some(cells @ 3..=4) => Ok(Gic { cells }),
            _ => Err(DiscoveryError::Unsupported(
                "GIC #interrupt-cells other than 3 or 4",
            )),
        }
    }

    fn resolve_map(
        &self,
        raw: &RawMap<'a>,
        smmus: &[RawSmmu<'a>],
        topo: &mut Topology,
    ) -> Result<()> {
        let smmu_of = |ph: u32| {
            smmus
                .iter()
                .position(|s| s.phandle == Some(ph))
                .and_then(|i| u8::try_from(i).ok())
                .map(super::SmmuIndex)
        };
        if raw.is_map {
            if raw.cells.is_empty() || !raw.cells.len().is_multiple_of(4 * IOMMU_MAP_CELLS) {
                return Err(malformed("iommu-map not a multiple of 4 cells"));
            }
            for entry in raw.cells.chunks_exact(4 * IOMMU_MAP_CELLS) {
                let rid_base = be32(entry, 0).ok_or(malformed("iommu-map entry"))?;
                let ph = be32(entry, 4).ok_or(malformed("iommu-map entry"))?;
                let sid_base = be32(entry, 8).ok_or(malformed("iommu-map entry"))?;
                let len = be32(entry, 12).ok_or(malformed("iommu-map entry"))?;
                match smmu_of(ph) {
                    Some(smmu) => topo.push_map(IdMap {
                        owner: raw.owner,
                        input_base: rid_base,
                        count: u64::from(len),
                        output_base: sid_base,
                        mask: raw.mask,
                        single: false,
                        smmu,
                    })?,
                    None => topo.foreign_maps = topo.foreign_maps.saturating_add(1),
                }
            }
            return Ok(());
        }
        // iommus: <phandle specifier...>, each specifier as long as that IOMMU's #iommu-cells.
        let mut at = 0;
        while at < raw.cells.len() {
            let ph = be32(raw.cells, at).ok_or(malformed("iommus truncated"))?;
            if let Some(smmu) = smmu_of(ph) {
                let sid = be32(raw.cells, at + 4).ok_or(malformed("iommus truncated"))?;
                topo.push_map(IdMap {
                    owner: raw.owner,
                    input_base: 0,
                    count: 1,
                    output_base: sid,
                    mask: u32::MAX,
                    single: true,
                    smmu,
                })?;
                at += 8;
            } else {
                let other = self.by_phandle(ph)?;
                let cells = cells_prop(&other.node, "#iommu-cells")?
                    .ok_or(malformed("iommus names a node without #iommu-cells"))?;
                topo.foreign_maps = topo.foreign_maps.saturating_add(1);
                at += 4 + 4 * cells;
            }
        }
        Ok(())
    }
}

/// Interrupt specifiers read per SMMU (four named lines plus room to detect extras).
const MAX_SMMU_IRQS: usize = 8;

struct Found<'a> {
    node: FdtNode<'a>,
    reg: Option<(u64, u64)>,
    irq_parent: Option<u32>,
}

struct Gic {
    cells: usize,
}

/// Decodes one GIC interrupt specifier: cell 0 type (0 SPI, 1 PPI, 2 extended SPI, 3 extended
/// PPI), cell 1 number, cell 2 flags (bits `[3:0]` trigger; bits `[15:8]` a GICv2 PPI CPU mask,
/// ignored); a fourth cell (GICv3 PPI partition) is ignored.
fn decode_gic(spec: &[u8]) -> Result<Irq> {
    let kind = be32(spec, 0).ok_or(malformed("GIC specifier truncated"))?;
    let num = be32(spec, 4).ok_or(malformed("GIC specifier truncated"))?;
    let flags = be32(spec, 8).ok_or(malformed("GIC specifier truncated"))?;
    let intid = match (kind, num) {
        (0, 0..=987) => num + 32,
        (1, 0..=15) => num + 16,
        (2, 0..=1023) => num + 4096,
        (3, 0..=63) => num + 1056,
        (0..=3, _) => return Err(malformed("GIC interrupt number out of range for its type")),
        _ => {
            return Err(DiscoveryError::Unsupported(
                "GIC interrupt type other than SPI/PPI/ESPI/EPPI",
            ));
        }
    };
    let trigger = match flags & 0xf {
        1 => Trigger::EdgeRising,
        2 => Trigger::EdgeFalling,
        4 => Trigger::LevelHigh,
        8 => Trigger::LevelLow,
        _ => return Err(malformed("GIC interrupt flags name no single trigger type")),
    };
    Ok(Irq { intid, trigger })
}

/// The first `reg` entry of the last node of `path`, translated to a CPU physical address.
fn first_reg(path: &[Frame<'_>]) -> Result<(u64, u64)> {
    reg_entry(path, 0).map_err(|e| match e {
        DiscoveryError::NotFound => malformed("node without a reg entry"),
        e => e,
    })
}

/// `reg` entry `index` of the last node of `path`, translated to a CPU physical address;
/// [`DiscoveryError::NotFound`] when `reg` is absent or has no such entry.
fn reg_entry(path: &[Frame<'_>], index: usize) -> Result<(u64, u64)> {
    let depth = path.len();
    let node = path.last().ok_or(malformed("empty path"))?.node;
    let parent = depth
        .checked_sub(2)
        .and_then(|i| path.get(i))
        .ok_or(malformed("reg on the root node"))?;
    let reg = prop(&node, "reg").ok_or(DiscoveryError::NotFound)?;
    let (ac, sc) = (parent.addr_cells, parent.size_cells);
    if !(1..=2).contains(&ac) || sc > 2 {
        return Err(DiscoveryError::Unsupported(
            "reg with more than 2 address or size cells",
        ));
    }
    let entry = 4 * (ac + sc);
    if !reg.len().is_multiple_of(entry) {
        return Err(malformed("reg not a multiple of its entry size"));
    }
    let at = index.checked_mul(entry).ok_or(DiscoveryError::NotFound)?;
    let addr = read_cells(reg, at, ac).ok_or(DiscoveryError::NotFound)?;
    let size = read_cells(reg, at + 4 * ac, sc).ok_or(DiscoveryError::NotFound)?;
    // Translate through each ancestor bus from the parent up; the root's children are CPU
    // physical addresses already.
    let mut addr = addr;
    let mut level = depth - 2;
    while level > 0 {
        let bus = path.get(level).ok_or(malformed("path"))?;
        let up = path.get(level - 1).ok_or(malformed("path"))?;
        addr = translate(addr, bus, up.addr_cells)?;
        level -= 1;
    }
    Ok((addr, size))
}

/// Maps `addr` in `bus`'s child address space to its parent's through `bus`'s `ranges`.
fn translate(addr: u64, bus: &Frame<'_>, parent_cells: usize) -> Result<u64> {
    let ranges = bus.ranges.ok_or(DiscoveryError::Unsupported(
        "reg behind a bus without ranges (not memory-mapped)",
    ))?;
    if ranges.is_empty() {
        return Ok(addr);
    }
    let (ca, pa, sc) = (bus.addr_cells, parent_cells, bus.size_cells);
    if !(1..=2).contains(&ca) || !(1..=2).contains(&pa) || !(1..=2).contains(&sc) {
        return Err(DiscoveryError::Unsupported(
            "ranges with more than 2 cells per field",
        ));
    }
    let entry = 4 * (ca + pa + sc);
    if !ranges.len().is_multiple_of(entry) {
        return Err(malformed("ranges not a multiple of its entry size"));
    }
    for e in ranges.chunks_exact(entry) {
        let child = read_cells(e, 0, ca).ok_or(malformed("ranges entry"))?;
        let parent = read_cells(e, 4 * ca, pa).ok_or(malformed("ranges entry"))?;
        let len = read_cells(e, 4 * (ca + pa), sc).ok_or(malformed("ranges entry"))?;
        if let Some(off) = addr.checked_sub(child)
            && off < len
        {
            return parent
                .checked_add(off)
                .ok_or(malformed("ranges translation overflows"));
        }
    }
    Err(DiscoveryError::Unsupported(
        "reg outside every ranges window of its bus",
    ))
}

fn prop<'a>(node: &FdtNode<'a>, name: &str) -> Option<&'a [u8]> {
    node.properties()
        .find(|p| p.name() == name)
        .and_then(|p| p.value_as::<&'a [u8]>().ok())
}

/// A one-cell count property (`#address-cells` and the like), bounded to 4.
fn cells_prop(node: &FdtNode<'_>, name: &str) -> Result<Option<usize>> {
    match prop(node, name) {
        None => Ok(None),
        Some(v) => {
            let n = be32(v, 0).ok_or(malformed("cell-count property shorter than a cell"))?;
            if n > 4 {
                return Err(malformed("cell count above 4"));
            }
            Ok(Some(n as usize))
        }
    }
}

fn is_enabled(node: &FdtNode<'_>) -> bool {
    match prop(node, "status") {
        None => true,
        Some(v) => matches!(strings(v).next(), Some(b"okay" | b"ok")),
    }
}

fn compatibles<'a>(node: &FdtNode<'a>) -> impl Iterator<Item = &'a [u8]> + use<'a> {
    strings(prop(node, "compatible").unwrap_or(&[]))
}

fn has_compatible(node: &FdtNode<'_>, c: &str) -> bool {
    compatibles(node).any(|x| x == c.as_bytes())
}

/// The NUL-separated strings of a string-list property.
fn strings(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    let v = v.strip_suffix(&[0]).unwrap_or(v);
    v.split(|&b| b == 0).filter(|s| !s.is_empty())
}

/// A string property's value: one NUL-terminated UTF-8 string.
fn string(v: &[u8]) -> Option<&str> {
    core::str::from_utf8(v.strip_suffix(&[0])?).ok()
}

fn be32(v: &[u8], at: usize) -> Option<u32> {
    let b = v.get(at..at.checked_add(4)?)?;
    Some(u32::from_be_bytes([
        *b.first()?,
        *b.get(1)?,
        *b.get(2)?,
        *b.get(3)?,
    ]))
}

/// A 1- or 2-cell big-endian number at byte `at`; 0 cells read as 0.
fn read_cells(v: &[u8], at: usize, cells: usize) -> Option<u64> {
    match cells {
        0 => Some(0),
        1 => be32(v, at).map(u64::from),
        2 => Some(u64::from(be32(v, at)?) << 32 | u64::from(be32(v, at + 4)?)),
        _ => None,
    }
}

fn parse_error(kind: &dtoolkit::error::FdtErrorKind) -> &'static str {
    use dtoolkit::error::FdtErrorKind as K;
    match kind {
        K::InvalidMagic => "bad FDT magic",
        K::UnsupportedVersion(_) => "unsupported FDT version",
        K::InvalidLength => "FDT length",
        K::InvalidHeader(what) => what,
        K::BadToken(_) => "bad FDT structure token",
        K::InvalidOffset => "FDT offset out of bounds",
        K::InvalidString => "FDT string",
        K::InvalidNodeName => "FDT node name",
        K::InvalidPropertyName => "FDT property name",
        K::MemReserveNotTerminated | K::MemReserveInvalid => "FDT memory reservation block",
        _ => "FDT structure",
    }
}
