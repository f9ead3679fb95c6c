//! End to end on the software SMMUv3: the real driver installs the nested STE the router built,
//! a simulated DMA of the assigned device faults, the driver's event-queue drain hands the record
//! to the router, and the vEVENTQ reader returns the iommufd record carrying the vSID.
#![cfg(feature = "fakes")]

use std::sync::Arc;

use arm_smmuv3::event::{EventId, EvtqEntry};
use arm_smmuv3::fake::{DmaOutcome, FakeSmmu, FaultKind, ModelDma, OverflowStyle};
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::{VeventHeader, VeventqType};
use arm_smmuv3::smmu::{Config, Smmu};
use arm_smmuv3::ste::{Granule, S2Config};
use arm_smmuv3::viommu::{EventSink, Router, ViommuConfig};
use arm_smmuv3::{Iova, PhysAddr, StreamId, SubstreamId, VStreamId, Vmid};

#[derive(Default)]
struct Host {
    events: Vec<EvtqEntry>,
    overflows: u32,
}

impl EventSink for Host {
    fn event(&mut self, e: &EvtqEntry) {
        self.events.push(*e);
    }
    fn overflow(&mut self) {
        self.overflows += 1;
    }
}

type Drv = Smmu<arm_smmuv3::fake::FakePlatform, ModelDma>;

fn rig() -> (Arc<FakeSmmu>, Drv) {
    let m = FakeSmmu::qemu_virt();
    // SAFETY: the model's register pages live as long as `m`, which the caller keeps beside the
    // driver; nothing else drives them.
    let d = unsafe {
        Smmu::new(
            m.page0(),
            m.page1(),
            m.platform(),
            m.lend_dma(),
            Config::default(),
        )
    }
    .unwrap();
    d.reset().unwrap();
    (m, d)
}

#[test]
fn faulting_dma_reaches_the_guest_with_its_vsid() {
    let (m, smmu) = rig();
    let router: Box<Router<2, 16, 4, 16, 8>> = Box::new(Router::new());
    let s2 = S2Config::for_ipa_bits(Vmid(3), PhysAddr(0x4000_0000), 40, Granule::Size4K).unwrap();
    let id = router
        .alloc_viommu(ViommuConfig {
            s2,
            features: Features::decode(Features::QEMU_VIRT_IDREGS),
            coherent_devices: true,
            repeat_tlbi_cfgi: false,
        })
        .unwrap();
    let (psid, vsid) = (StreamId(0x10), VStreamId(0x2));
    router.alloc_vdevice(id, 1, psid, 2, false).unwrap();
    router.alloc_veventq(id, VeventqType::ArmSmmuv3, 8).unwrap();
    // Guest STE: V = 1, Config = S1, a CD table at IPA 0x8000_0000 (bits [51:6]).
    let guest = [1 | (5 << 1) | 0x8000_0000, 0];
    let ste = router
        .attach_nested(id, vsid, guest, &smmu, |sid, ste| smmu.set_ste(sid, ste))
        .unwrap();
    assert_eq!(m.ste_in_memory(psid), Some(ste));

    // A faulting DMA of the assigned device: it uses SubstreamID 1 while the guest's STE has
    // S1CDMax = 0 (no substreams), so the SMMU reports C_BAD_SUBSTREAMID, a record Linux
    // forwards. Then a fault of a device the VM does not own.
    m.set_fault(
        psid,
        0x1000..0x2000,
        FaultKind::Translation { stage2: false },
    );
    let out = m.dma_access(psid, Some(SubstreamId(1)), Iova(0x1234), true);
    assert!(!matches!(out, DmaOutcome::Completed { .. }), "{out:?}");
    // The other device's STE is the driver's default abort STE, which records nothing: inject
    // its fault record directly.
    m.inject_event(
        arm_smmuv3::event::EventRecord::translation_fault(
            StreamId(0x11),
            Iova(0x1000),
            false,
            false,
        )
        .encode(),
    );

    let mut host = Host::default();
    let st = smmu.drain_evtq(&mut router.sink(&mut host));
    assert_eq!(st.records, 2);
    assert_eq!(
        host.events.len(),
        1,
        "the unassigned device's record stays with the host"
    );
    assert_eq!(host.events[0].sid(), StreamId(0x11));

    let mut buf = [0u8; 128];
    let n = router
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    assert_eq!(n, 40, "one iommufd record: 8-byte header + 32-byte event");
    let h = VeventHeader::from_prefix(&buf).unwrap();
    assert_eq!((h.flags, h.sequence), (0, 0));
    let w0 = u64::from_le_bytes(buf[8..16].try_into().unwrap());
    assert_eq!(
        w0 >> 32,
        u64::from(vsid.0),
        "the vSID, not the physical StreamID"
    );
    assert_eq!(EventId(w0 as u8), EventId::C_BAD_SUBSTREAMID);
    assert_eq!(
        w0 & 0xffff_ffff,
        (1 << 12) | (1 << 11) | 0x08,
        "SSV and SSID untouched"
    );
}

#[test]
fn hardware_overflow_reaches_the_router() {
    let (m, smmu) = rig();
    let router: Box<Router<2, 16, 4, 16, 8>> = Box::new(Router::new());
    m.set_event_overflow(OverflowStyle::Qemu);
    let mut host = Host::default();
    smmu.drain_evtq(&mut router.sink(&mut host));
    assert_eq!(router.stats().evtq_overflows, u64::from(host.overflows));
}
