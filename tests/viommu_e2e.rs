//! End to end on the software SMMUv3: the real driver installs the nested STE the router built,
//! a simulated DMA of the assigned device faults, the driver's event-queue drain hands the record
//! to the router, and the vEVENTQ reader returns the iommufd record carrying the vSID.
#![cfg(feature = "fakes")]

use std::sync::Arc;

use arm_smmuv3::event::{EventId, EventRecord};
use arm_smmuv3::fake::{
    DmaOutcome, DriverOnModel, FaultKind, HostSink, OverflowStyle, SmmuModel, rig,
};
use arm_smmuv3::iommufd::{VeventHeader, VeventqType};
use arm_smmuv3::smmu::Config;
use arm_smmuv3::ste::{Granule, Ste};
use arm_smmuv3::viommu::{Router, ViommuId};
use arm_smmuv3::{Iova, PhysAddr, StreamId, SubstreamId, VStreamId, Vmid};

type Drv = DriverOnModel;

fn rig() -> (Arc<SmmuModel>, Drv) {
    rig_with(Config::default())
}

#[test]
fn faulting_dma_reaches_the_guest_with_its_vsid() {
    let (m, smmu) = rig();
    let router: Box<R> = Box::new(Router::new());
    let (psid, vsid) = (StreamId(0x10), VStreamId(0x2));
    // Guest STE: V = 1, Config = S1, a CD table at IPA 0x8000_0000 (bits [51:6]).
    let guest = [1 | (5 << 1) | 0x8000_0000, 0];
    let (id, ste) = viommu_with_device(&router, &smmu, psid, vsid, guest);
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

    let mut host = HostSink::default();
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

type R = Router<2, 16, 4, 16, 8>;

fn rig_with(config: Config) -> (Arc<SmmuModel>, Drv) {
    rig::reset_driver(config).unwrap()
}

/// A vIOMMU (VMID 3) with the device `psid` as `vsid` attached to the guest STE `guest`, and an
/// SMMUv3 vEVENTQ of depth 16; with the physical STE the attach installed.
fn viommu_with_device(
    router: &R,
    smmu: &Drv,
    psid: StreamId,
    vsid: VStreamId,
    guest: [u64; 2],
) -> (ViommuId, Ste) {
    let devices = [(1, psid, u64::from(vsid.0))];
    let (id, _) = rig::viommu(router, Vmid(3), PhysAddr(0x4000_0000), &devices, 16).unwrap();
    let ste = router
        .attach_nested(id, vsid, guest, smmu, |sid, ste| smmu.set_ste(sid, ste))
        .unwrap();
    (id, ste)
}

/// Parses a vEVENTQ stream of SMMUv3 records: (flags, sequence, payload if not a marker).
fn stream(buf: &[u8]) -> Vec<(u32, u32, Option<[u64; 4]>)> {
    rig::vevents(buf)
        .into_iter()
        .map(|(h, evt)| (h.flags, h.sequence, evt))
        .collect()
}

/// A hardware event-queue overflow, in both styles, through the driver's drain: the records
/// that made it are forwarded with sequences 0..7, the overflow consumes sequence 8 and leaves
/// the LOST_EVENTS header at the tail of every live vIOMMU's vEVENTQ, and the next real event
/// (sequence 9) replaces it.
#[test]
fn hardware_overflow_marks_the_veventqs_in_both_styles() {
    for style in [OverflowStyle::Hardware, OverflowStyle::Qemu] {
        let (m, smmu) = rig_with(Config {
            evtq_log2: Some(3),
            ..Config::default()
        });
        m.set_event_overflow(style);
        let router: Box<R> = Box::new(Router::new());
        let (psid, vsid) = (StreamId(0x10), VStreamId(0x2));
        let (id, _) = viommu_with_device(&router, &smmu, psid, vsid, [1 | (4 << 1), 0]);
        // A second VM with a vEVENTQ but no device: its queue is marked too (whose records
        // were lost is unknown).
        let (other, _) = rig::viommu(&router, Vmid(4), PhysAddr(0x5000_0000), &[], 4).unwrap();

        let fault = |i: u64| {
            EventRecord::translation_fault(psid, Iova(0x1000 * (i + 1)), false, false).encode()
        };
        for i in 0..10 {
            m.inject_event(fault(i));
        }
        assert_eq!(m.event_stats().dropped_full, 2, "{style:?}");
        if style == OverflowStyle::Qemu {
            assert!(smmu.handle_gerror().drain_evtq);
        }
        let mut host = HostSink::default();
        let st = smmu.drain_evtq(&mut router.sink(&mut host));
        assert_eq!((st.records, st.overflows), (8, 1), "{style:?}");
        assert_eq!(host.overflows, 1);
        assert!(host.events.is_empty());
        assert_eq!(router.stats().lost_marked, 2);

        let mut buf = [0u8; 8 * 40 + 8 + 40];
        let n = router
            .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
            .unwrap();
        assert_eq!(n, 8 * 40 + 8, "{style:?}");
        let items = stream(&buf[..n]);
        for (i, item) in items.iter().take(8).enumerate() {
            let want = fault(i as u64).with_sid(StreamId(vsid.0)).0;
            assert_eq!(*item, (0, i as u32, Some(want)), "{style:?} record {i}");
        }
        assert_eq!(
            items[8],
            (1, 8, None),
            "{style:?}: LOST_EVENTS with sequence 8"
        );
        // The header bytes themselves: flags 1, sequence 8 (host-endian).
        assert_eq!(
            buf[320..328],
            [1u32.to_ne_bytes(), 8u32.to_ne_bytes()].concat()[..]
        );
        let n = router
            .read_vevents(other, VeventqType::ArmSmmuv3, &mut buf)
            .unwrap();
        assert_eq!(stream(&buf[..n]), [(1, 0, None)], "{style:?}: the other VM");

        // Overflow again without reading; then one more real event.
        for i in 0..9 {
            m.inject_event(fault(i));
        }
        if style == OverflowStyle::Qemu {
            smmu.handle_gerror();
        }
        smmu.drain_evtq(&mut router.sink(&mut host));
        let n = router
            .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf[..8 * 40 + 8])
            .unwrap();
        let items = stream(&buf[..n]);
        assert_eq!(items.len(), 9);
        assert_eq!(items[7].1, 16);
        assert_eq!(items[8], (1, 17, None), "{style:?}");
        m.inject_event(fault(42));
        let st = smmu.drain_evtq(&mut router.sink(&mut host));
        assert_eq!((st.records, st.overflows), (1, 0));
        let n = router
            .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
            .unwrap();
        assert_eq!(
            stream(&buf[..n]),
            [(0, 18, Some(fault(42).with_sid(StreamId(vsid.0)).0))],
            "{style:?}: the next real event, no marker"
        );
        // Read after the marker was consumed and then replaced: the loss is a sequence gap.
        assert_eq!(router.viommu_stats(id).unwrap().lost_marked, 2);
        assert_eq!(router.stats().evtq_overflows, 2);
    }
}

/// A stage-1 F_TRANSLATION of a device attached to a nested STE: the model fetches the guest's
/// CD (CD.R = 1) from the CD table the guest STE points at, records the fault, the drain hands
/// it to the router, and the vEVENTQ holds the 32-byte record with only the StreamID changed.
#[test]
fn stage1_translation_fault_is_forwarded_with_the_vsid() {
    use arm_smmuv3::Asid;
    use arm_smmuv3::cd::{Cd, CdConfig};
    use arm_smmuv3::platform::DmaMemory;
    let (m, smmu) = rig();
    let router: Box<R> = Box::new(Router::new());
    // The guest's CD table: one CD (S1CDMax = 0), recording faults (CD.R = 1). The model's
    // stage 2 is the identity, so the IPA in S1ContextPtr is the CD's physical address.
    let cd_table = m.dma().alloc(64, 64).unwrap().paddr;
    let cd = Cd::new(&CdConfig::new(
        Asid(7),
        PhysAddr(0x8010_0000),
        25,
        Granule::Size4K,
        2,
        0,
    ));
    m.dma().write_dwords(cd_table, &cd.0).unwrap();
    let (psid, vsid) = (StreamId(0x21), VStreamId(0x5));
    let guest = [1 | (5 << 1) | cd_table.0, 0];
    let (id, _) = viommu_with_device(&router, &smmu, psid, vsid, guest);

    let iova = Iova(0x7_0000);
    m.set_fault(
        psid,
        0x7_0000..0x8_0000,
        FaultKind::Translation { stage2: false },
    );
    assert_eq!(
        m.dma_access(psid, None, iova, true),
        DmaOutcome::Faulted(EventId::F_TRANSLATION)
    );
    let mut host = HostSink::default();
    let st = smmu.drain_evtq(&mut router.sink(&mut host));
    assert_eq!(st.records, 1);
    assert!(
        host.events.is_empty(),
        "a stage-1 fault of a nested device is the guest's"
    );

    let raw = EventRecord::translation_fault(psid, iova, false, true).encode();
    let mut buf = [0u8; 64];
    let n = router
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    assert_eq!(n, 40);
    let mut want = Vec::new();
    want.extend(0u32.to_ne_bytes()); // flags
    want.extend(0u32.to_ne_bytes()); // sequence
    let mut fwd = raw.0;
    fwd[0] = (fwd[0] & 0xffff_ffff) | (u64::from(vsid.0) << 32);
    for w in fwd {
        want.extend(w.to_le_bytes());
    }
    assert_eq!(
        buf[..40],
        want[..],
        "header, then the record with only the SID replaced"
    );
    // Everything but dword 0 [63:32] is the model's record as is.
    let got: [u64; 4] =
        std::array::from_fn(|i| u64::from_le_bytes(buf[8 + 8 * i..16 + 8 * i].try_into().unwrap()));
    assert_eq!(got[0] & 0xffff_ffff, raw.0[0] & 0xffff_ffff);
    assert_eq!(got[1..], raw.0[1..]);
    assert_eq!(EventId(got[0] as u8), EventId::F_TRANSLATION);
    assert_eq!(got[1] & (1 << 39), 0, "stage 1");
    assert_eq!(got[2], iova.0, "input address");
}
