//! Several SMMUs on one machine, as a hypervisor would run them: the topology comes from a
//! device tree (two SMMUv3 nodes, a PCIe host bridge whose `iommu-map` splits its requester IDs
//! between them), each SMMU instance gets its own model, `Smmu` and `Router`, a VM's vIOMMU is
//! bound to the instance its device sits behind, and each interrupt is routed by instance.

use std::sync::Arc;

use arm_smmuv3::discovery::dt::DeviceTree;
use arm_smmuv3::discovery::{DiscoveryError, IrqSource, SmmuIndex, Stream, Topology};
use arm_smmuv3::event::EventRecord;
use arm_smmuv3::fake::{DmaOutcome, DriverOnModel, FaultKind, HostSink, SmmuModel};
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::VeventqType;
use arm_smmuv3::smmu::Quirks;
use arm_smmuv3::ste::{Granule, S2Config};
use arm_smmuv3::viommu::{Router, ViommuConfig, ViommuId};
use arm_smmuv3::{Iova, PhysAddr, StreamId, VStreamId, Vmid};

const EDGE: &[u8] = include_bytes!("fixtures/dt/synthetic/edge.dtb");
/// The host bridge's PCI domain in `edge.dts`.
const SEGMENT: u32 = 7;

type R = Router<2, 16, 4, 16, 8>;

/// One SMMU instance as the hypervisor keeps it.
struct Instance {
    model: Arc<SmmuModel>,
    smmu: DriverOnModel,
    router: Box<R>,
    host: HostSink,
}

/// Brings up every SMMU of the topology on its own model, as `Smmu::new` would on hardware
/// with the instance's page 0/page 1 and `SmmuDesc::config`.
fn bring_up(topo: &Topology) -> Vec<Instance> {
    topo.smmus()
        .iter()
        .map(|desc| {
            let model = SmmuModel::qemu_virt();
            let smmu = model.driver(desc.config()).unwrap();
            smmu.reset().unwrap();
            Instance {
                model,
                smmu,
                router: Box::new(Router::new()),
                host: HostSink::default(),
            }
        })
        .collect()
}

/// The IRQ entry: the instance that owns `intid` (from the topology) drains its event queue
/// into its own router. Returns which instance ran and how many records it drained.
fn on_irq(topo: &Topology, instances: &mut [Instance], intid: u32) -> Option<(usize, usize)> {
    let (index, source) = topo.irq_owner(intid)?;
    assert!(matches!(source, IrqSource::Eventq | IrqSource::Combined));
    let inst = &mut instances[usize::from(index.0)];
    let st = inst.smmu.drain_evtq(&mut inst.router.sink(&mut inst.host));
    Some((usize::from(index.0), st.records as usize))
}

/// A VM's vIOMMU on the instance `stream` is behind, with the device as `vsid`; the vIOMMU
/// reports the instance's Tegra264 erratum to the guest when the firmware names it.
fn assign(
    topo: &Topology,
    inst: &Instance,
    stream: Stream,
    vmid: u16,
    vsid: VStreamId,
) -> ViommuId {
    let desc = topo.smmu(stream.smmu).unwrap();
    let s2 =
        S2Config::for_ipa_bits(Vmid(vmid), PhysAddr(0x4000_0000), 40, Granule::Size4K).unwrap();
    let router = &inst.router;
    let id = router
        .alloc_viommu(ViommuConfig {
            s2,
            features: Features::decode(Features::QEMU_VIRT_IDREGS),
            coherent_devices: true,
            repeat_tlbi_cfgi: desc.quirks.contains(Quirks::REPEAT_CFGI_TLBI),
        })
        .unwrap();
    router
        .alloc_vdevice(id, 1, stream.sid, u64::from(vsid.0), false)
        .unwrap();
    router.alloc_veventq(id, VeventqType::ArmSmmuv3, 8).unwrap();
    // Guest STE: V = 1, Config = S1 with a CD table at IPA 0x8000_0000.
    let guest = [1 | (5 << 1) | 0x8000_0000, 0];
    router
        .attach_nested(id, vsid, guest, &inst.smmu, |sid, ste| {
            inst.smmu.set_ste(sid, ste)
        })
        .unwrap();
    id
}

fn vevents(inst: &Instance, id: ViommuId) -> Vec<u32> {
    let mut buf = [0u8; 512];
    let n = inst
        .router
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    // Each record: 8-byte header + 32-byte event; the vSID is in bits [63:32] of dword 0.
    buf[..n]
        .chunks(40)
        .map(|r| (u64::from_le_bytes(r[8..16].try_into().unwrap()) >> 32) as u32)
        .collect()
}

#[test]
fn two_smmus_each_route_their_own_devices_and_interrupts() {
    let dt = DeviceTree::new(EDGE).unwrap();
    let topo = dt.topology().unwrap();
    assert_eq!(topo.smmus().len(), 2);
    let mut inst = bring_up(&topo);
    // SMMU 0 has one combined line, SMMU 1 an event line on an extended SPI.
    assert_eq!(
        topo.irq_owner(132),
        Some((SmmuIndex(0), IrqSource::Combined))
    );
    assert_eq!(
        topo.irq_owner(4096 + 5),
        Some((SmmuIndex(1), IrqSource::Eventq))
    );
    assert_eq!(topo.irq_owner(38), Some((SmmuIndex(1), IrqSource::Gerror)));
    assert_eq!(topo.irq_owner(39), Some((SmmuIndex(1), IrqSource::Priq)));

    // Two PCIe functions of one host bridge, behind different SMMUs (iommu-map of edge.dts).
    let nic = topo.pci_stream(SEGMENT, 0x0008).unwrap(); // 00:01.0
    let gpu = topo.pci_stream(SEGMENT, 0x0150).unwrap(); // 01:0a.0
    assert_eq!((nic.smmu, nic.sid), (SmmuIndex(0), StreamId(0x8)));
    assert_eq!((gpu.smmu, gpu.sid), (SmmuIndex(1), StreamId(0x1050)));
    assert_eq!(
        topo.pci_stream(SEGMENT, 0x0205),
        Err(DiscoveryError::NotFound)
    );

    // VM 1 gets the NIC, VM 2 the GPU: each vIOMMU lives on its device's instance, as Linux
    // binds a vIOMMU to one physical SMMU.
    let vm1 = assign(
        &topo,
        &inst[usize::from(nic.smmu.0)],
        nic,
        1,
        VStreamId(0x1),
    );
    let vm2 = assign(
        &topo,
        &inst[usize::from(gpu.smmu.0)],
        gpu,
        2,
        VStreamId(0x2),
    );
    // The other instance does not know the device: its STE there is still abort.
    assert_ne!(
        inst[1].model.ste_in_memory(nic.sid),
        inst[0].model.ste_in_memory(nic.sid)
    );

    // The GPU faults: only SMMU 1 records it, only SMMU 1's interrupt drains it, only VM 2
    // sees it.
    inst[1].model.set_fault(
        gpu.sid,
        0x1000..0x2000,
        FaultKind::Translation { stage2: false },
    );
    let out = inst[1].model.dma_access(gpu.sid, None, Iova(0x1000), false);
    assert!(!matches!(out, DmaOutcome::Completed { .. }), "{out:?}");
    assert_eq!(inst[0].model.event_stats().written, 0);
    assert_eq!(on_irq(&topo, &mut inst, 4096 + 5), Some((1, 1)));
    assert_eq!(vevents(&inst[1], vm2), [0x2]);
    assert_eq!(vevents(&inst[0], vm1), [0u32; 0]);

    // StreamID 0x8 exists on both instances: a fault of 0x8 at SMMU 1 is not the NIC's (it is
    // a device of SMMU 1 nobody assigned), so it stays with the host of SMMU 1.
    inst[1].model.inject_event(
        EventRecord::translation_fault(StreamId(0x8), Iova(0x3000), false, false).encode(),
    );
    assert_eq!(on_irq(&topo, &mut inst, 4096 + 5), Some((1, 1)));
    assert_eq!(inst[1].host.events.len(), 1);
    assert_eq!(inst[1].host.events[0].sid(), StreamId(0x8));
    assert_eq!(vevents(&inst[0], vm1), [0u32; 0]);

    // The same record at SMMU 0, through SMMU 0's combined line, is the NIC's: VM 1 gets it
    // with its vSID.
    inst[0].model.inject_event(
        EventRecord::translation_fault(StreamId(0x8), Iova(0x3000), false, false).encode(),
    );
    assert_eq!(on_irq(&topo, &mut inst, 132), Some((0, 1)));
    assert_eq!(vevents(&inst[0], vm1), [0x1]);
    assert!(inst[0].host.events.is_empty());
    assert_eq!(vevents(&inst[1], vm2), [0u32; 0]);

    // An interrupt nobody owns drains nothing.
    assert_eq!(on_irq(&topo, &mut inst, 33), None);
}

#[test]
fn a_device_cannot_be_bound_through_the_wrong_instance() {
    let topo = DeviceTree::new(EDGE).unwrap().topology().unwrap();
    let inst = bring_up(&topo);
    let dma = DeviceTree::new(EDGE)
        .unwrap()
        .device("/dma@5000000")
        .unwrap();
    let streams: Vec<Stream> = topo.device_streams(dma).collect();
    assert!(streams.iter().all(|s| s.smmu == SmmuIndex(1)));
    // The hypervisor installs the device's STEs on its instance only.
    for s in &streams {
        let i = &inst[usize::from(s.smmu.0)];
        i.smmu
            .set_ste(s.sid, &arm_smmuv3::ste::Ste::bypass(false))
            .unwrap();
        assert_eq!(
            i.model.ste_in_memory(s.sid),
            Some(arm_smmuv3::ste::Ste::bypass(false))
        );
        assert_ne!(
            inst[0].model.ste_in_memory(s.sid),
            Some(arm_smmuv3::ste::Ste::bypass(false))
        );
    }
}
