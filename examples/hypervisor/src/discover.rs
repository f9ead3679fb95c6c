//! What the demo learns from the device tree QEMU hands it at boot, through
//! `arm_smmuv3::discovery`: the SMMU (page 0, page 1, its interrupts and their trigger) and the
//! StreamID of a PCI requester. Nothing here is a copy of QEMU's memory map.

use core::ptr::NonNull;

use arm_gic::{IntId, Trigger as GicTrigger};
use arm_smmuv3::StreamId;
use arm_smmuv3::discovery::dt::DeviceTree;
use arm_smmuv3::discovery::{DiscoveryError, Irq, IrqSource, MapOwner, SmmuDesc, Topology};

use crate::board;
use crate::say;

/// How many bytes the device tree may span: QEMU pads it to 1 MiB, and the image starts 2 MiB
/// into RAM (qemu_virt.ld), so this much is always readable and never overwritten.
const DTB_MAX: usize = 0x10_0000;

static TOPOLOGY: spin::Once<Topology> = spin::Once::new();

/// Where the device tree was found.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    /// Its address.
    pub addr: u64,
    /// Whether the boot loader handed it over in x0 (otherwise: QEMU's start of RAM).
    pub from_x0: bool,
}

/// Reads the device tree at `x0` (the arm64 boot protocol's register), or at the start of RAM
/// where QEMU places it for an image that is not a Linux kernel (QEMU leaves x0 = 0 for an ELF),
/// keeps the topology for the rest of the run and returns where it came from.
pub fn init(x0: u64) -> Result<(&'static Topology, Source), DiscoveryError> {
    let src = Source {
        addr: if x0 != 0 { x0 } else { board::HOST_DTB },
        from_x0: x0 != 0,
    };
    if let Some(t) = TOPOLOGY.get() {
        return Ok((t, src));
    }
    let ptr = NonNull::new(src.addr as *mut u8).ok_or(DiscoveryError::NotFound)?;
    // SAFETY: QEMU's device tree lies in RAM at `addr` (identity-mapped normal memory, boot.rs),
    // padded to DTB_MAX bytes, below the image, and nothing writes to it while the hypervisor
    // runs (the guest's tree is a copy at board::GUEST_DTB).
    let dt = unsafe { DeviceTree::from_ptr(ptr, DTB_MAX) }?;
    let topo = dt.topology()?;
    Ok((TOPOLOGY.call_once(|| topo), src))
}

/// The topology read by [`init`].
pub fn topology() -> Option<&'static Topology> {
    TOPOLOGY.get()
}

/// The SMMU the demo drives: the first enabled one (QEMU `virt` has exactly one).
pub fn smmu() -> Option<&'static SmmuDesc> {
    topology()?.smmus().iter().find(|d| d.enabled)
}

/// Which of the demo SMMU's interrupts `intid` is, if any.
pub fn irq_source(intid: IntId) -> Option<IrqSource> {
    let (index, source) = topology()?.irq_owner(u32::from(intid))?;
    (index.0 == 0).then_some(source)
}

/// A discovered interrupt as the GIC driver takes it: only SPIs (INTID 32-1019).
pub fn gic_line(irq: Irq) -> Option<(IntId, GicTrigger)> {
    let spi = irq.intid.checked_sub(32).filter(|_| irq.intid < 1020)?;
    let trigger = if irq.trigger.is_edge() {
        GicTrigger::Edge
    } else {
        GicTrigger::Level
    };
    Some((IntId::spi(spi), trigger))
}

/// The StreamID of PCI requester `rid` on segment 0, on the demo's SMMU.
pub fn pci_stream_id(rid: u16) -> Result<StreamId, DiscoveryError> {
    let topo = topology().ok_or(DiscoveryError::NotFound)?;
    let s = topo.pci_stream(0, rid)?;
    if s.smmu.0 != 0 {
        return Err(DiscoveryError::NotFound);
    }
    Ok(s.sid)
}

fn irq_text(irq: Option<Irq>) -> (u32, &'static str) {
    match irq {
        Some(i) if i.trigger.is_edge() => (i.intid, "edge"),
        Some(i) => (i.intid, "level"),
        None => (0, "absent"),
    }
}

/// Prints what was discovered (the host test reads these lines).
pub fn print(topo: &Topology, src: Source) {
    say!(
        "DISCOVERED device tree at {:#x} ({}): {} SMMU(s), {} ID map(s)",
        src.addr,
        if src.from_x0 { "x0" } else { "start of RAM" },
        topo.smmus().len(),
        topo.id_maps().len()
    );
    for (i, d) in topo.smmus().iter().enumerate() {
        let irqs = [
            ("eventq", d.irqs.eventq),
            ("priq", d.irqs.priq),
            ("cmdq-sync", d.irqs.cmdq_sync),
            ("gerror", d.irqs.gerror),
            ("combined", d.irqs.combined),
        ];
        say!(
            "DISCOVERED SMMU {}: page0 {:#x} page1 {:#x} size {:#x} coherent {} enabled {} cmdqv {}",
            i,
            d.page0().0,
            d.page1().0,
            d.size,
            d.coherent,
            d.enabled,
            d.cmdqv.is_some()
        );
        for (name, irq) in irqs {
            let (intid, trigger) = irq_text(irq);
            if irq.is_some() {
                say!(
                    "DISCOVERED SMMU {} {}: INTID {} {}",
                    i,
                    name,
                    intid,
                    trigger
                );
            }
        }
    }
    for m in topo.id_maps() {
        if let MapOwner::PciRoot { segment, .. } = m.owner {
            say!(
                "DISCOVERED iommu-map: segment {} RID {:#x}..={:#x} -> SMMU {} StreamID {:#x}..",
                segment,
                m.input_base,
                u64::from(m.input_base) + m.count.saturating_sub(1),
                m.smmu.0,
                m.output_base
            );
        }
    }
}
