//! vIOMMU layer end to end on the host: a recording command sink, host sinks, and the router.

use std::sync::Mutex;

use arm_smmuv3::command::{Command, ResumeAction};
use arm_smmuv3::error::{CmdqError, Error, Feature, Object, Quantity, Rejection, WaitFor};
use arm_smmuv3::event::{EventRecord, EvtqEntry};
use arm_smmuv3::fake::HostSink;
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::{
    HwptPageResponse, HwptPgfault, PgfaultFlags, PgfaultPerm, VeventHeader, VeventqType,
    ViommuArmSmmuv3Invalidate,
};
use arm_smmuv3::pri::{PageRequest, PriqEntry};
use arm_smmuv3::ste::{Granule, S2Config, Ste};
use arm_smmuv3::viommu::{
    CommandSink, EventSink, HostReason, PriSink, Routed, Router, ViommuConfig, ViommuId,
};
use arm_smmuv3::{Iova, PhysAddr, StreamId, SubstreamId, VStreamId, Vmid};
use proptest::prelude::*;

type R = Router<4, 16, 4, 8, 8>;

#[derive(Default)]
struct Recorder {
    batches: Mutex<Vec<Vec<Command>>>,
}

impl CommandSink for Recorder {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        assert!(!cmds.is_empty());
        assert!(cmds.len() <= 63);
        assert!(!cmds.iter().any(|c| matches!(c, Command::Sync { .. })));
        self.batches.lock().unwrap().push(cmds.to_vec());
        Ok(())
    }
}

impl Recorder {
    fn take(&self) -> Vec<Vec<Command>> {
        std::mem::take(&mut self.batches.lock().unwrap())
    }
}

fn cfg(vmid: u16) -> ViommuConfig {
    arm_smmuv3::fake::rig::viommu_config(Vmid(vmid), PhysAddr(0x4000_0000)).unwrap()
}

const GUEST_S1: [u64; 2] = [1 | (5 << 1) | 0x8_0000_0000, 0];
const PSID: StreamId = StreamId(0x18);
const VSID: VStreamId = VStreamId(0x3);

/// A router with one vIOMMU (VMID 5) whose device 0x18 is vSID 3, nested-attached.
fn setup() -> (Box<R>, ViommuId, Recorder) {
    let r = Box::new(R::new());
    let rec = Recorder::default();
    let id = r.alloc_viommu(cfg(5)).unwrap();
    assert_eq!(r.alloc_vdevice(id, 77, PSID, 3, false), Ok(VSID));
    let mut installed = None;
    let ste = r
        .attach_nested(id, VSID, GUEST_S1, &rec, |sid, ste| {
            installed = Some((sid, *ste));
            Ok(())
        })
        .unwrap();
    assert_eq!(installed, Some((PSID, ste)));
    assert_eq!(ste.config_raw(), 7);
    assert!(ste.mev());
    assert_eq!(ste.s2vmid(), Vmid(5));
    (r, id, rec)
}

fn s1_fault(sid: StreamId) -> EvtqEntry {
    EventRecord::translation_fault(sid, Iova(0x1234_5000), false, true)
        .with_ssid(Some(SubstreamId(9)))
        .encode()
}

fn records(buf: &[u8]) -> Vec<(VeventHeader, Option<[u64; 4]>)> {
    arm_smmuv3::fake::rig::vevents(buf)
}

#[test]
fn viommu_alloc_errors() {
    let r = R::new();
    let vmid = |value, max| Error::OutOfRange {
        what: Quantity::Vmid,
        value,
        max,
    };
    let zero = Error::TooSmall {
        what: Quantity::Vmid,
        value: 0,
        min: 1,
    };
    assert_eq!(r.alloc_viommu(cfg(0)), Err(zero), "VMID 0 is the host's");
    assert_eq!(zero.errno(), -22);
    assert_eq!(vmid(0x100, 0xff).errno(), -22);
    let mut c = cfg(0x100);
    c.features.vmid16 = false;
    assert_eq!(
        r.alloc_viommu(c),
        Err(vmid(0x100, 0xff)),
        "VMID wider than 8 bits"
    );
    let mut c = cfg(1);
    c.coherent_devices = false; // and QEMU has no S2FWB
    assert_eq!(r.alloc_viommu(c), Err(Error::Unsupported(Feature::S2Fwb)));
    assert_eq!(r.alloc_viommu(c).unwrap_err().errno(), -95);
    let mut c = cfg(1);
    c.features.stage1 = false;
    assert_eq!(r.alloc_viommu(c).unwrap_err().errno(), -95, "no nesting");
    // A VMID tags one stage 2: another vIOMMU may share it only on the same stage 2.
    let mut other_s2 = cfg(7);
    other_s2.s2 =
        S2Config::for_ipa_bits(Vmid(7), PhysAddr(0x8000_0000), 40, Granule::Size4K).unwrap();
    let seven = r.alloc_viommu(cfg(7)).unwrap();
    assert_eq!(
        r.alloc_viommu(other_s2),
        Err(Error::AlreadyExists(Object::Vmid(7)))
    );
    assert_eq!(r.alloc_viommu(other_s2).unwrap_err().errno(), -17);
    r.destroy_viommu(seven).unwrap();
    let ids: Vec<_> = (1..=4).map(|v| r.alloc_viommu(cfg(v)).unwrap()).collect();
    assert_eq!(
        r.alloc_viommu(cfg(9)).unwrap_err().errno(),
        -12,
        "no free slot"
    );
    assert_eq!(r.vmid(ids[2]), Ok(Vmid(3)));
    r.destroy_viommu(ids[1]).unwrap();
    assert_eq!(r.vmid(ids[1]), Err(Error::NoSuch(Object::Viommu(ids[1]))));
    let again = r.alloc_viommu(cfg(9)).unwrap();
    assert_eq!(again.index(), ids[1].index());
    assert_ne!(
        again, ids[1],
        "a stale handle never reaches the slot's next vIOMMU"
    );
    assert_eq!(r.vmid(ids[1]).unwrap_err().errno(), -2);
}

#[test]
fn vdevice_errors() {
    let r = R::new();
    let a = r.alloc_viommu(cfg(1)).unwrap();
    let b = r.alloc_viommu(cfg(2)).unwrap();
    r.alloc_vdevice(a, 1, StreamId(8), 1, false).unwrap();
    assert_eq!(
        r.alloc_vdevice(a, 2, StreamId(9), 1, false),
        Err(Error::AlreadyExists(Object::VDevice(VStreamId(1)))),
        "same vSID"
    );
    assert_eq!(
        r.alloc_vdevice(b, 2, StreamId(8), 5, false),
        Err(Error::AlreadyExists(Object::Stream(StreamId(8)))),
        "same device"
    );
    assert_eq!(
        r.alloc_vdevice(a, 2, StreamId(8), 5, false)
            .unwrap_err()
            .errno(),
        -17
    );
    let wide = Error::OutOfRange {
        what: Quantity::VStreamId,
        value: 1 << 32,
        max: 0xffff_ffff,
    };
    assert_eq!(
        r.alloc_vdevice(a, 2, StreamId(9), 1 << 32, false),
        Err(wide)
    );
    assert_eq!(wide.errno(), -22);
    // QEMU's SMMU has 16 StreamID bits.
    assert_eq!(
        r.alloc_vdevice(a, 2, StreamId(0x1_0000), 2, false),
        Err(Error::BadStreamId(StreamId(0x1_0000)))
    );
    // The same vSID in another vIOMMU is fine.
    r.alloc_vdevice(b, 2, StreamId(9), 1, false).unwrap();
    for i in 0..3 {
        r.alloc_vdevice(a, 3, StreamId(20 + i), 10 + u64::from(i), false)
            .unwrap();
    }
    assert_eq!(
        r.alloc_vdevice(a, 3, StreamId(30), 30, false)
            .unwrap_err()
            .errno(),
        -12
    );
    assert_eq!(
        r.destroy_viommu(a),
        Err(Error::InUse(Object::Viommu(a))),
        "vDEVICEs left"
    );
    assert_eq!(r.destroy_viommu(a).unwrap_err().errno(), -16);
    let rec = Recorder::default();
    assert_eq!(
        r.destroy_vdevice(a, VStreamId(99), &rec),
        Err(Error::NoSuch(Object::VDevice(VStreamId(99))))
    );
    r.destroy_vdevice(a, VStreamId(1), &rec).unwrap();
    assert_eq!(
        r.vsid_to_psid(a, VStreamId(1)),
        Err(Error::NoSuch(Object::VDevice(VStreamId(1))))
    );
    assert_eq!(r.vsid_to_psid(a, VStreamId(10)), Ok(StreamId(20)));
    // Attach needs a vDEVICE (Linux: ENOENT from the vSID lookup).
    let e = r
        .attach_nested(a, VStreamId(1), GUEST_S1, &rec, |_, _| Ok(()))
        .unwrap_err();
    assert_eq!(e, Error::NoSuch(Object::VDevice(VStreamId(1))));
    assert_eq!(e.errno(), -2);
}

#[test]
fn attach_rejects_bad_ste_and_reverts_on_install_failure() {
    let (r, id, rec) = setup();
    let bad = [GUEST_S1[0] | (1 << 52), 0];
    let e = r
        .attach_nested(id, VSID, bad, &rec, |_, _| panic!("not installed"))
        .unwrap_err();
    let why = Rejection::SteBits {
        dword: 0,
        bits: 1 << 52,
    };
    assert_eq!(e, Error::Rejected(why));
    assert_eq!(e.errno(), -5);
    // An install failure leaves the device detached for routing.
    r.detach_nested(id, VSID, &rec).unwrap();
    let e = r.attach_nested(id, VSID, GUEST_S1, &rec, |_, _| {
        Err(Error::Timeout(arm_smmuv3::WaitFor::CmdSync))
    });
    assert!(e.is_err());
    let mut host = HostSink::default();
    assert_eq!(
        r.route_event(&s1_fault(PSID), &mut host),
        Routed::Host(HostReason::NotAttached)
    );
    // Guest V=0 gives an abort STE, guest bypass the S2-only STE.
    let ste = r
        .attach_nested(id, VSID, [0, 0], &rec, |_, _| Ok(()))
        .unwrap();
    assert_eq!(ste, Ste::ABORT);
    let ste = r
        .attach_nested(id, VSID, [1 | (4 << 1), 0], &rec, |_, _| Ok(()))
        .unwrap();
    assert_eq!(ste.config_raw(), 6);
}

#[test]
fn forwarded_event_carries_vsid_and_reads_as_iommufd() {
    let (r, id, _rec) = setup();
    let mut host = HostSink::default();
    // No vEVENTQ yet: dropped and counted, not given to the host.
    assert_eq!(
        r.route_event(&s1_fault(PSID), &mut host),
        Routed::DroppedNoVeventq { viommu: id.index() }
    );
    assert_eq!(r.viommu_stats(id).unwrap().dropped_no_veventq, 1);
    assert_eq!(r.stats().dropped_no_veventq, 1);
    assert!(host.events.is_empty());

    assert_eq!(
        r.alloc_veventq(id, VeventqType::Default, 4)
            .unwrap_err()
            .errno(),
        -95
    );
    assert_eq!(
        r.alloc_veventq(id, VeventqType::ArmSmmuv3, 0)
            .unwrap_err()
            .errno(),
        -22
    );
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4).unwrap();
    assert_eq!(
        r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4)
            .unwrap_err()
            .errno(),
        -17
    );
    // A second type is a separate queue.
    r.alloc_veventq(id, VeventqType::Tegra241Cmdqv, 2).unwrap();

    let e = s1_fault(PSID);
    assert_eq!(
        r.route_event(&e, &mut host),
        Routed::Forwarded {
            viommu: id.index(),
            sequence: 0
        },
        "a new queue starts at sequence 0"
    );
    let mut buf = [0u8; 64];
    let n = r
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    assert_eq!(n, 40);
    let recs = records(&buf[..n]);
    let (h, evt) = recs[0];
    assert_eq!((h.flags, h.sequence), (0, 0));
    let evt = evt.unwrap();
    assert_eq!(evt[0] >> 32, u64::from(VSID.0));
    assert_eq!(evt[0] & 0xffff_ffff, e.0[0] & 0xffff_ffff);
    assert_eq!(evt[1..], e.0[1..]);
    assert_eq!(r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf), Ok(0));
}

#[test]
fn host_gets_stage2_unassigned_and_unforwarded() {
    let (r, id, _rec) = setup();
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4).unwrap();
    let mut host = HostSink::default();
    let s2 = EventRecord::translation_fault(PSID, Iova(0x1000), true, false).encode();
    assert_eq!(
        r.route_event(&s2, &mut host),
        Routed::Host(HostReason::Stage2)
    );
    let other = s1_fault(StreamId(0x19));
    assert_eq!(
        r.route_event(&other, &mut host),
        Routed::Host(HostReason::Unassigned)
    );
    let bad_sid = EventRecord::bad_streamid(PSID).encode();
    assert_eq!(
        r.route_event(&bad_sid, &mut host),
        Routed::Host(HostReason::NotForwarded)
    );
    let walk = EventRecord::new(arm_smmuv3::event::EventId(0x0b), PSID).encode();
    assert_eq!(
        r.route_event(&walk, &mut host),
        Routed::Host(HostReason::NotForwarded)
    );
    assert_eq!(host.events, vec![s2, other, bad_sid, walk]);
    let s = r.stats();
    assert_eq!(
        (s.host_stage2, s.host_unassigned, s.host_other, s.forwarded),
        (1, 1, 2, 0)
    );
    // Each forwardable ID of an attached device is forwarded.
    for id_ in arm_smmuv3::viommu::FORWARDED_EVENTS {
        let e = EventRecord::new(id_, PSID).encode();
        assert!(matches!(
            r.route_event(&e, &mut host),
            Routed::Forwarded { .. } | Routed::DroppedFull { .. }
        ));
    }
}

#[test]
fn full_veventq_lost_marker_and_recovery() {
    let (r, id, _rec) = setup();
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 2).unwrap();
    let mut host = HostSink::default();
    let seqs: Vec<_> = (0..4)
        .map(|_| r.route_event(&s1_fault(PSID), &mut host))
        .collect();
    assert!(matches!(seqs[0], Routed::Forwarded { sequence: 0, .. }));
    assert!(matches!(seqs[1], Routed::Forwarded { sequence: 1, .. }));
    assert!(matches!(seqs[2], Routed::DroppedFull { .. }));
    assert!(matches!(seqs[3], Routed::DroppedFull { .. }));
    assert_eq!(r.viommu_stats(id).unwrap().dropped_full, 2);
    // A buffer for one record and a half: one record, never a partial one.
    let mut buf = [0u8; 60];
    assert_eq!(
        r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf[..39]),
        Ok(0)
    );
    assert_eq!(r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf), Ok(40));
    let mut buf = [0u8; 128];
    let n = r
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    let recs = records(&buf[..n]);
    assert_eq!(recs.len(), 2);
    assert_eq!(recs[0].0.sequence, 1);
    assert!(recs[1].0.is_lost_events());
    assert_eq!(
        recs[1].0.sequence, 3,
        "the single marker carries the last dropped number"
    );
    // "Overflow must be gone": the next event reads back cleanly.
    r.route_event(&s1_fault(PSID), &mut host);
    let n = r
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    let recs = records(&buf[..n]);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].0.flags, recs[0].0.sequence), (0, 4));
}

#[test]
fn hardware_overflow_policy() {
    let (r, id, _rec) = setup();
    let other = r.alloc_viommu(cfg(6)).unwrap();
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4).unwrap();
    let mut host = HostSink::default();
    {
        let mut sink = r.sink(&mut host);
        EventSink::event(&mut sink, &s1_fault(PSID));
        EventSink::overflow(&mut sink);
    }
    assert_eq!(host.overflows, 1);
    assert_eq!(r.stats().evtq_overflows, 1);
    assert_eq!(
        r.stats().lost_marked,
        1,
        "only the vIOMMU with a vEVENTQ is marked"
    );
    assert_eq!(r.viommu_stats(id).unwrap().evtq_overflows, 1);
    assert_eq!(r.viommu_stats(id).unwrap().lost_marked, 1);
    assert_eq!(r.viommu_stats(other).unwrap().evtq_overflows, 1);
    assert_eq!(r.viommu_stats(other).unwrap().lost_marked, 0);
    // The overflow consumed sequence 1 and left the LOST_EVENTS marker behind record 0.
    assert!(r.veventq_readable(id, VeventqType::ArmSmmuv3));
    let mut buf = [0u8; 96];
    let n = r
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    assert_eq!(n, 40 + 8);
    let recs = records(&buf[..n]);
    assert_eq!(recs[0].0.sequence, 0);
    assert_eq!(
        (recs[1].0.flags, recs[1].0.sequence, recs[1].1),
        (1, 1, None)
    );
    // Another overflow, then a real event: the event replaces the marker (a sequence gap).
    {
        let mut sink = r.sink(&mut host);
        EventSink::overflow(&mut sink);
        EventSink::event(&mut sink, &s1_fault(PSID));
    }
    let n = r
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    let recs = records(&buf[..n]);
    assert_eq!(recs.len(), 1);
    assert_eq!((recs[0].0.flags, recs[0].0.sequence), (0, 3));
    let mut host = HostSink::default();
    PriSink::overflow(&mut r.sink(&mut host));
    assert_eq!((r.stats().priq_overflows, host.pri_overflows), (1, 1));
    assert_eq!(r.stats().lost_marked, 2, "a PRI overflow marks nothing");
}

/// vEVENTQ and fault-queue errors name the queue (by type, or by its vIOMMU), and a handle
/// whose vIOMMU is gone names the vIOMMU.
#[test]
fn queue_errors_name_the_queue() {
    let (r, id, rec) = setup();
    let smmu = VeventqType::ArmSmmuv3;
    let mut buf = [0u8; 64];
    let no_queue = Error::NoSuch(Object::Veventq(1));
    assert_eq!(r.read_vevents(id, smmu, &mut buf), Err(no_queue));
    assert_eq!(r.destroy_veventq(id, smmu), Err(no_queue));
    assert_eq!(no_queue.errno(), -2);
    assert_eq!(
        r.alloc_veventq(id, VeventqType::Default, 4),
        Err(Error::Reserved {
            field: "iommu_veventq_alloc.type",
            value: 0
        })
    );
    assert_eq!(
        r.alloc_veventq(id, smmu, 0),
        Err(Error::Invalid {
            field: "iommu_veventq_alloc.veventq_depth",
            value: 0
        })
    );
    r.alloc_veventq(id, smmu, 4).unwrap();
    assert_eq!(
        r.alloc_veventq(id, smmu, 4),
        Err(Error::AlreadyExists(Object::Veventq(1)))
    );
    let fq = Object::FaultQueue(id);
    assert_eq!(r.destroy_fault_queue(id, &rec), Err(Error::NoSuch(fq)));
    r.alloc_fault_queue(id).unwrap();
    // A cookie nothing was delivered with.
    let resp = [HwptPageResponse { cookie: 5, code: 0 }];
    assert_eq!(
        r.respond(id, &resp, &rec),
        Err(Error::Invalid {
            field: "iommu_hwpt_page_response.cookie",
            value: 5
        })
    );
    r.teardown_viommu(id, &rec).unwrap();
    let gone = Error::NoSuch(Object::Viommu(id));
    assert_eq!(r.read_vevents(id, smmu, &mut buf), Err(gone));
    assert_eq!(r.read_faults(id, &mut []), Err(gone));
    assert_eq!(r.alloc_fault_queue(id), Err(gone));
}

/// While a drain's sink holds the producer token, every step that needs a grace round of it
/// fails with EBUSY naming what it could not take away, and changes nothing it cannot redo.
#[test]
fn steps_needing_a_grace_round_name_what_is_in_use() {
    let (r, id, rec) = setup();
    let smmu = VeventqType::ArmSmmuv3;
    r.alloc_veventq(id, smmu, 4).unwrap();
    r.alloc_fault_queue(id).unwrap();
    let mut host = HostSink::default();
    let faults = Error::InUse(Object::FaultQueue(id));
    {
        let mut sink = r.sink(&mut host);
        // An event of no vDEVICE: the sink takes the token and keeps it for its chunk.
        EventSink::event(&mut sink, &s1_fault(StreamId(0x7)));
        assert_eq!(
            r.destroy_veventq(id, smmu),
            Err(Error::InUse(Object::Veventq(1)))
        );
        assert_eq!(r.destroy_fault_queue(id, &rec), Err(faults));
        assert_eq!(r.detach_nested(id, VSID, &rec), Err(faults));
        assert_eq!(r.destroy_vdevice(id, VSID, &rec), Err(faults));
        assert_eq!(r.teardown_viommu(id, &rec), Err(faults));
        assert_eq!(faults.errno(), -16);
    }
    // Once the sink is dropped every step can be redone.
    assert_eq!(r.teardown_viommu(id, &rec), Ok(0));
    assert_eq!(r.vmid(id), Err(Error::NoSuch(Object::Viommu(id))));
}

#[test]
fn guest_invalidation() {
    let (r, id, rec) = setup();
    let other = r.alloc_viommu(cfg(6)).unwrap();
    r.alloc_vdevice(other, 1, StreamId(0x20), 7, false).unwrap();
    let ent = |c: Command| ViommuArmSmmuv3Invalidate { cmd: c.encode().0 };
    let out = r.invalidate(
        id,
        &[
            ent(Command::TlbiNhAll { vmid: Vmid(6) }),
            ent(Command::TlbiNsnhAll),
            ent(Command::CfgiCdAll { sid: StreamId(3) }),
        ],
        &rec,
    );
    assert_eq!((out.entry_num, out.result), (3, Ok(())));
    assert_eq!(
        rec.take(),
        vec![vec![
            Command::TlbiNhAll { vmid: Vmid(5) },
            Command::TlbiNhAll { vmid: Vmid(5) },
            Command::CfgiCdAll { sid: PSID },
        ]],
        "one batch, VMID forced, vSID replaced"
    );
    // The other VM's vSID 7 (pSID 0x20) means nothing here; nor does its pSID.
    for sid in [7, 0x20] {
        let out = r.invalidate(id, &[ent(Command::CfgiCdAll { sid: StreamId(sid) })], &rec);
        let unbound = Error::Rejected(Rejection::UnboundVsid(VStreamId(sid)));
        assert_eq!((out.entry_num, out.result), (0, Err(unbound)));
        assert_eq!(unbound.errno(), -5);
    }
    // A CMD_SYNC from the guest is refused; nothing of its batch is issued.
    let out = r.invalidate(
        id,
        &[
            ent(Command::TlbiNhAll { vmid: Vmid(0) }),
            ent(Command::sync()),
        ],
        &rec,
    );
    let sync = Error::Rejected(Rejection::Opcode(0x46));
    assert_eq!((out.entry_num, out.result), (0, Err(sync)));
    assert!(rec.take().is_empty());
    // Empty array: success, nothing issued.
    assert_eq!(r.invalidate(id, &[], &rec).entry_num, 0);
    assert!(rec.take().is_empty());
}

fn stall(sid: StreamId, stag: u16) -> EvtqEntry {
    EventRecord::translation_fault(sid, Iova(0xabc000), false, false)
        .with_stall(stag)
        .encode()
}

fn page_request(prg: u16, last: bool, addr: u64) -> PriqEntry {
    PageRequest {
        sid: PSID,
        ssid: Some(SubstreamId(2)),
        privileged: false,
        exec: false,
        read: true,
        write: false,
        last,
        prg_index: prg,
        addr,
    }
    .encode()
}

#[test]
fn iopf_round_trip() {
    let (r, id, rec) = setup();
    let mut host = HostSink::default();
    // Without a fault queue the host must answer the stall.
    assert_eq!(
        r.route_event(&stall(PSID, 5), &mut host),
        Routed::Host(HostReason::NoFaultQueue)
    );
    assert_eq!(host.events.len(), 1);
    let mut out = [HwptPgfault::default(); 4];
    assert_eq!(
        r.read_faults(id, &mut out),
        Err(Error::NoSuch(Object::FaultQueue(id)))
    );
    r.alloc_fault_queue(id).unwrap();
    assert_eq!(
        r.alloc_fault_queue(id),
        Err(Error::AlreadyExists(Object::FaultQueue(id)))
    );

    assert_eq!(
        r.route_event(&stall(PSID, 6), &mut host),
        Routed::Iopf { viommu: id.index() }
    );
    assert_eq!(
        r.route_page_request(&page_request(9, false, 0x1000), &mut host),
        Routed::Iopf { viommu: id.index() }
    );
    r.route_page_request(&page_request(9, true, 0x2000), &mut host);
    // A page request of an unassigned device goes to the host.
    let mut foreign = page_request(1, true, 0);
    foreign.0[0] = (foreign.0[0] & !0xffff_ffff) | 0x55;
    assert_eq!(
        r.route_page_request(&foreign, &mut host),
        Routed::Host(HostReason::Unassigned)
    );
    assert_eq!(host.requests.len(), 1);

    assert_eq!(r.read_faults(id, &mut out), Ok(3));
    let stall_rec = out[0];
    assert_eq!(stall_rec.grpid, 6);
    assert_eq!(stall_rec.dev_id, 77);
    assert_eq!(stall_rec.flags, PgfaultFlags::LAST_PAGE.bits());
    assert_eq!(stall_rec.perm, PgfaultPerm::READ.bits(), "RnW = 1");
    assert_eq!(stall_rec.addr, 0xabc000);
    assert_eq!(out[1].cookie, out[2].cookie);
    assert_ne!(out[1].cookie, stall_rec.cookie);
    assert_eq!(
        out[2].flags,
        (PgfaultFlags::LAST_PAGE | PgfaultFlags::PASID_VALID).bits()
    );

    let resp = [
        HwptPageResponse {
            cookie: stall_rec.cookie,
            code: 0,
        },
        HwptPageResponse {
            cookie: out[1].cookie,
            code: 1,
        },
        HwptPageResponse {
            cookie: 12345,
            code: 0,
        },
    ];
    assert_eq!(
        r.respond(id, &resp, &rec),
        Ok(2),
        "stops at the unknown cookie"
    );
    assert_eq!(
        rec.take(),
        vec![vec![
            Command::Resume {
                sid: PSID,
                stag: 6,
                action: ResumeAction::Retry
            },
            Command::PriResp {
                sid: PSID,
                ssid: Some(SubstreamId(2)),
                prg_index: 9,
                resp: arm_smmuv3::command::PriResponse::InvalidRequest
            },
        ]]
    );
    // Answered already: the cookie names nothing any more.
    let again = Error::Invalid {
        field: "iommu_hwpt_page_response.cookie",
        value: u64::from(resp[2].cookie),
    };
    assert_eq!(r.respond(id, &resp[2..], &rec), Err(again));
    assert_eq!(again.errno(), -22);
}

#[test]
fn teardown_answers_unanswered_groups() {
    let (r, id, rec) = setup();
    r.alloc_fault_queue(id).unwrap();
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4).unwrap();
    let mut host = HostSink::default();
    r.route_event(&stall(PSID, 1), &mut host);
    r.route_event(&stall(PSID, 2), &mut host);
    r.route_page_request(&page_request(4, false, 0), &mut host);
    let mut out = [HwptPgfault::default(); 1];
    assert_eq!(r.read_faults(id, &mut out), Ok(1)); // delivered, never answered
    assert_eq!(r.destroy_viommu(id), Err(Error::InUse(Object::Viommu(id))));
    assert_eq!(r.teardown_viommu(id, &rec), Ok(2));
    let cmds: Vec<Command> = rec.take().concat();
    assert_eq!(
        cmds,
        vec![
            Command::Resume {
                sid: PSID,
                stag: 1,
                action: ResumeAction::Abort
            },
            Command::Resume {
                sid: PSID,
                stag: 2,
                action: ResumeAction::Abort
            },
        ],
        "delivered and pending groups answered INVALID; the partial PRI group has nothing to answer"
    );
    // Everything is gone: records of the device now go to the host.
    assert_eq!(
        r.route_event(&s1_fault(PSID), &mut host),
        Routed::Host(HostReason::Unassigned)
    );
    assert_eq!(r.vmid(id), Err(Error::NoSuch(Object::Viommu(id))));
    // The slot and the device can be used again.
    let id2 = r.alloc_viommu(cfg(7)).unwrap();
    r.alloc_vdevice(id2, 1, PSID, 3, false).unwrap();
}

#[test]
fn detach_answers_the_devices_groups() {
    let (r, id, rec) = setup();
    r.alloc_fault_queue(id).unwrap();
    let mut host = HostSink::default();
    r.route_event(&stall(PSID, 3), &mut host);
    r.detach_nested(id, VSID, &rec).unwrap();
    assert_eq!(
        rec.take(),
        vec![vec![Command::Resume {
            sid: PSID,
            stag: 3,
            action: ResumeAction::Abort
        }]]
    );
    assert_eq!(
        r.route_event(&stall(PSID, 4), &mut host),
        Routed::Host(HostReason::NotAttached)
    );
    assert_eq!(r.destroy_fault_queue(id, &rec), Ok(0));
}

#[test]
fn hw_info_is_raw_with_errata_flag() {
    let r = R::new();
    let mut c = cfg(1);
    c.repeat_tlbi_cfgi = true;
    let id = r.alloc_viommu(c).unwrap();
    let info = r.hw_info(id).unwrap();
    let regs = Features::QEMU_VIRT_IDREGS;
    assert_eq!(info.flags, 1);
    assert_eq!(
        info.idr,
        [
            regs.idr0, regs.idr1, regs.idr2, regs.idr3, regs.idr4, regs.idr5
        ]
    );
}

#[test]
fn readers_and_producers_on_other_cpus() {
    // Attach/detach and vEVENTQ destroy/alloc race an IRQ-path producer: nothing panics or
    // blocks, and every record that reaches the queue carries the vSID.
    let (r, id, rec) = setup();
    let r: &'static R = Box::leak(r);
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 8).unwrap();
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let producer = {
        let (stop, count) = (stop.clone(), count.clone());
        std::thread::spawn(move || {
            let mut host = HostSink::default();
            while !stop.load(Ordering::Relaxed) {
                r.route_event(&s1_fault(PSID), &mut host);
                count.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    while count.load(Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    let mut buf = [0u8; 400];
    let busy = Error::InUse(Object::FaultQueue(id));
    for i in 0..2000 {
        match i % 4 {
            // EBUSY when the producer thread was preempted holding the token: retry.
            0 => while r.detach_nested(id, VSID, &rec) == Err(busy) {},
            1 => while r.attach_nested(id, VSID, GUEST_S1, &rec, |_, _| Ok(())) == Err(busy) {},
            2 => {
                while r.destroy_veventq(id, VeventqType::ArmSmmuv3)
                    == Err(Error::InUse(Object::Veventq(1)))
                {}
                r.alloc_veventq(id, VeventqType::ArmSmmuv3, 8).unwrap();
            }
            _ => {}
        }
        if let Ok(n) = r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf) {
            for (h, evt) in records(&buf[..n]) {
                if let Some(evt) = evt {
                    assert_eq!(evt[0] >> 32, u64::from(VSID.0), "seq {}", h.sequence);
                }
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    assert!(count.load(Ordering::Relaxed) > 0);
    let s = r.viommu_stats(id).unwrap();
    assert!(s.forwarded > 0);
}

proptest! {
    /// Every other bit of a forwarded record is untouched; only dword 0 [63:32] changes.
    #[test]
    fn forwarding_changes_only_the_streamid(d0 in any::<u64>(), d1 in any::<u64>(), d2 in any::<u64>(), d3 in any::<u64>(), id_ in prop::sample::select(vec![0x04u64, 0x06, 0x08, 0x0a, 0x10, 0x11, 0x12, 0x13])) {
        let (r, id, _rec) = setup();
        r.alloc_veventq(id, VeventqType::ArmSmmuv3, 2).unwrap();
        let d0 = (d0 & !0xff & 0xffff_ffff) | id_ | (u64::from(PSID.0) << 32);
        let d1 = d1 & !(1 << 31) & !(1 << 39); // not stalled, stage 1
        let e = EvtqEntry([d0, d1, d2, d3]);
        let mut host = HostSink::default();
        let fwd = matches!(r.route_event(&e, &mut host), Routed::Forwarded { .. });
        prop_assert!(fwd);
        let mut buf = [0u8; 40];
        prop_assert_eq!(r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf), Ok(40));
        let evt = records(&buf)[0].1.unwrap();
        prop_assert_eq!(evt, [(d0 & 0xffff_ffff) | (u64::from(VSID.0) << 32), d1, d2, d3]);
    }
}

/// The entry array as bytes (iommufd.md §5): each command LE, `len` bytes per entry, `tail`
/// written after the 16 known bytes.
fn entry_bytes(cmds: &[Command], len: usize, tail: u8) -> Vec<u8> {
    let mut out = Vec::new();
    for c in cmds {
        let mut e = vec![0u8; len.max(16)];
        for (i, w) in c.encode().0.iter().enumerate() {
            e[8 * i..8 * i + 8].copy_from_slice(&w.to_le_bytes());
        }
        for b in e.iter_mut().skip(16) {
            *b = tail;
        }
        e.truncate(len);
        out.extend(e);
    }
    out
}

#[test]
fn invalidate_bytes_follows_the_extensible_struct_rule() {
    use arm_smmuv3::viommu::check_entries;
    let (r, id, rec) = setup();
    let cmds = [
        Command::TlbiNhAsid {
            vmid: Vmid(0),
            asid: arm_smmuv3::Asid(4),
        },
        Command::CfgiCdAll { sid: StreamId(3) },
    ];
    let want = vec![vec![
        Command::TlbiNhAsid {
            vmid: Vmid(5),
            asid: arm_smmuv3::Asid(4),
        },
        Command::CfgiCdAll { sid: PSID },
    ]];
    // Exactly 16 bytes, and longer entries with a zero tail.
    for len in [16usize, 17, 24, 64] {
        let b = entry_bytes(&cmds, len, 0);
        let out = r.invalidate_bytes(id, &b, len as u32, 2, &rec);
        assert_eq!((out.entry_num, out.result), (2, Ok(())), "entry_len {len}");
        assert_eq!(rec.take(), want, "entry_len {len}");
    }
    // A non-zero byte the library does not understand: E2BIG, checked before anything is
    // issued (the first entry is not run either).
    for len in [17usize, 24] {
        let mut b = entry_bytes(&cmds, len, 0);
        *b.last_mut().unwrap() = 1;
        let out = r.invalidate_bytes(id, &b, len as u32, 2, &rec);
        assert_eq!((out.entry_num, out.result), (0, Err(Error::TooBig)));
        assert_eq!(out.result.unwrap_err().errno(), -7);
        assert!(rec.take().is_empty());
    }
    // Shorter entries are zero-filled (copy_struct_from_user): 8 bytes keep dword 0 only.
    let b = entry_bytes(&[Command::TlbiNhAll { vmid: Vmid(1) }], 8, 0);
    assert_eq!(b.len(), 8);
    let out = r.invalidate_bytes(id, &b, 8, 1, &rec);
    assert_eq!((out.entry_num, out.result), (1, Ok(())));
    assert_eq!(rec.take(), vec![vec![Command::TlbiNhAll { vmid: Vmid(5) }]]);
    // 4-byte entries keep the low half of dword 0 (the CFGI_CD_ALL loses its vSID).
    let short = entry_bytes(&cmds, 4, 0);
    let a = check_entries(&short, 4, 2).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(
        a.get(1).0,
        [u64::from(0x06u8), 0],
        "only the low 4 bytes survive"
    );
    // entry_len 0 with entries, a too short array, an empty array.
    let field = |name: &'static str, value| Error::Invalid { field: name, value };
    let len = |value| field("iommu_hwpt_invalidate.entry_len", value);
    let num = |value| field("iommu_hwpt_invalidate.entry_num", value);
    let out = r.invalidate_bytes(id, &[], 0, 1, &rec);
    assert_eq!(out.result, Err(len(0)));
    assert_eq!(len(0).errno(), -22);
    let out = r.invalidate_bytes(id, &entry_bytes(&cmds, 16, 0), 16, 3, &rec);
    assert_eq!((out.entry_num, out.result), (0, Err(num(3))));
    let out = r.invalidate_bytes(id, &[], 0, 0, &rec);
    assert_eq!((out.entry_num, out.result), (0, Ok(())));
    // (2^32 - 1)^2 bytes: no overflow on the way, just more than the array holds.
    let out = r.invalidate_bytes(id, &[], u32::MAX, u32::MAX, &rec);
    assert_eq!(out.result, Err(num(u64::from(u32::MAX))));
    assert!(rec.take().is_empty());
}

fn hwpt_invalidate_arg(size: u32, data_type: u32, entry_len: u32, entry_num: u32) -> Vec<u8> {
    let a = arm_smmuv3::iommufd::HwptInvalidate {
        size,
        hwpt_id: 9,
        data_uptr: 0x1000,
        data_type,
        entry_len,
        entry_num,
        reserved: 0,
    };
    let mut v = a.to_bytes().to_vec();
    v.resize(size.max(32) as usize, 0);
    v.truncate(size as usize);
    v
}

fn written_entry_num(arg: &[u8]) -> u32 {
    u32::from_ne_bytes(arg[24..28].try_into().unwrap())
}

#[test]
fn hwpt_invalidate_ioctl_struct_rules() {
    let (r, id, rec) = setup();
    let cmds = [Command::TlbiNsnhAll, Command::TlbiNhAll { vmid: Vmid(9) }];
    let data = entry_bytes(&cmds, 16, 0);
    let mut arg = hwpt_invalidate_arg(32, 1, 16, 2);
    assert_eq!(r.hwpt_invalidate(id, &mut arg, &data, &rec), Ok(()));
    assert_eq!(written_entry_num(&arg), 2);
    assert_eq!(rec.take().len(), 1);
    // A larger struct from a newer caller: zero tail accepted, non-zero tail E2BIG.
    let mut arg = hwpt_invalidate_arg(40, 1, 16, 2);
    assert_eq!(r.hwpt_invalidate(id, &mut arg, &data, &rec), Ok(()));
    arg[36] = 1;
    assert_eq!(
        r.hwpt_invalidate(id, &mut arg, &data, &rec)
            .unwrap_err()
            .errno(),
        -7
    );
    // Below the minimum size, or a buffer shorter than `size`: EINVAL.
    let size = |value| Error::Invalid {
        field: "iommu_hwpt_invalidate.size",
        value,
    };
    let mut arg = hwpt_invalidate_arg(28, 1, 16, 2);
    assert_eq!(r.hwpt_invalidate(id, &mut arg, &data, &rec), Err(size(28)));
    let mut arg = hwpt_invalidate_arg(32, 1, 16, 2);
    arg[0] = 48;
    assert_eq!(r.hwpt_invalidate(id, &mut arg, &data, &rec), Err(size(48)));
    assert_eq!(size(48).errno(), -22);
    // Reserved: EOPNOTSUPP; wrong data type: EINVAL; entry_num written back as 0 for both.
    let mut arg = hwpt_invalidate_arg(32, 1, 16, 2);
    arg[28] = 1;
    let reserved = Error::Reserved {
        field: "iommu_hwpt_invalidate.__reserved",
        value: 1,
    };
    assert_eq!(r.hwpt_invalidate(id, &mut arg, &data, &rec), Err(reserved));
    assert_eq!(reserved.errno(), -95);
    assert_eq!(written_entry_num(&arg), 0);
    let mut arg = hwpt_invalidate_arg(32, 0, 16, 2);
    assert_eq!(
        r.hwpt_invalidate(id, &mut arg, &data, &rec),
        Err(Error::Invalid {
            field: "iommu_hwpt_invalidate.data_type",
            value: 0
        })
    );
    assert_eq!(written_entry_num(&arg), 0);
    // An EIO entry: entry_num written back (0: its batch was not issued).
    let bad = entry_bytes(&[Command::TlbiNsnhAll, Command::sync()], 16, 0);
    let mut arg = hwpt_invalidate_arg(32, 1, 16, 2);
    assert_eq!(
        r.hwpt_invalidate(id, &mut arg, &bad, &rec),
        Err(Error::Rejected(Rejection::Opcode(0x46)))
    );
    assert_eq!(written_entry_num(&arg), 0);
    assert_eq!(
        rec.take().len(),
        1,
        "only the good 40-byte call since the last take"
    );
}

proptest! {
    /// Any entry length and tail: the byte path is the struct path on the zero-filled or
    /// truncated entries, or E2BIG with nothing issued iff a byte past 16 is non-zero.
    #[test]
    fn invalidate_bytes_matches_the_struct_path(
        len in 1usize..48,
        tail in prop::collection::vec(any::<u8>(), 0..32),
        asids in prop::collection::vec(0u16..256, 1..5),
    ) {
        let (r, id, rec) = setup();
        let cmds: Vec<Command> = asids
            .iter()
            .map(|&a| Command::TlbiNhAsid { vmid: Vmid(0), asid: arm_smmuv3::Asid(a) })
            .collect();
        let mut b = entry_bytes(&cmds, len, 0);
        if len > 16 {
            for (k, t) in tail.iter().enumerate() {
                let at = 16 + k;
                if at < len {
                    b[at] = *t; // only in the first entry
                }
            }
        }
        let out = r.invalidate_bytes(id, &b, len as u32, cmds.len() as u32, &rec);
        let dirty = len > 16 && tail.iter().take(len - 16).any(|&t| t != 0);
        if dirty {
            prop_assert_eq!((out.entry_num, out.result), (0, Err(Error::TooBig)));
            prop_assert!(rec.take().is_empty());
        } else {
            let ents: Vec<ViommuArmSmmuv3Invalidate> = b
                .chunks(len)
                .map(|e| {
                    let mut img = [0u8; 16];
                    let n = e.len().min(16);
                    img[..n].copy_from_slice(&e[..n]);
                    ViommuArmSmmuv3Invalidate::from_bytes(&img)
                })
                .collect();
            let via_bytes = rec.take();
            let out2 = r.invalidate(id, &ents, &rec);
            prop_assert_eq!(out, out2);
            prop_assert_eq!(via_bytes, rec.take());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-VM reach through stale handles, fault groups and teardown: each of these failed on the
// router before its lifecycle was redesigned.

/// A handle checked before the vIOMMU's control lock is taken must be checked again under it:
/// threads invalidate (and read the vEVENTQ) through whatever handle they last saw while the
/// slot is torn down and handed to another VM again and again. No command issued through a
/// handle may carry another VM's VMID, and no read through a stale handle may return the next
/// VM's records.
#[test]
fn stale_handle_never_reaches_the_slots_next_vm() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let r: &'static R = Box::leak(Box::new(R::new()));
    let current = std::sync::Arc::new(AtomicU64::new(0));
    let vmids = std::sync::Arc::new(Mutex::new(std::collections::HashMap::new()));
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let bad = std::sync::Arc::new(Mutex::new(Vec::<String>::new()));
    let ent = ViommuArmSmmuv3Invalidate {
        cmd: Command::TlbiNhAll { vmid: Vmid(0) }.encode().0,
    };
    let workers: Vec<_> = (0..3)
        .map(|t| {
            let (current, vmids, stop, bad) =
                (current.clone(), vmids.clone(), stop.clone(), bad.clone());
            std::thread::spawn(move || {
                let rec = Recorder::default();
                let mut buf = [0u8; 200];
                while !stop.load(Ordering::Relaxed) {
                    // A short pause: the spin locks are unfair, and the thread tearing down
                    // must get through.
                    for _ in 0..500 {
                        std::hint::spin_loop();
                    }
                    let raw = current.load(Ordering::Acquire);
                    if raw == 0 {
                        continue;
                    }
                    let id = ViommuId(raw);
                    let want: u16 = *vmids.lock().unwrap().get(&raw).unwrap();
                    if t % 3 == 2 {
                        if let Ok(n) = r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf) {
                            for (_, evt) in records(&buf[..n]) {
                                let vsid = evt.map_or(0, |e| e[0] >> 32);
                                if vsid != u64::from(want) {
                                    bad.lock().unwrap().push(format!(
                                        "read through {raw:#x} returned vSID {vsid:#x}"
                                    ));
                                }
                            }
                        }
                        continue;
                    }
                    let _ = r.invalidate(id, &[ent], &rec);
                    for c in rec.take().concat() {
                        if c != (Command::TlbiNhAll { vmid: Vmid(want) }) {
                            bad.lock()
                                .unwrap()
                                .push(format!("{c:?} issued through {raw:#x} (VMID {want})"));
                        }
                    }
                }
            })
        })
        .collect();
    let mut host = HostSink::default();
    for cycle in 0..600u32 {
        let vmid = 1 + (cycle % 2) as u16;
        let id = r.alloc_viommu(cfg(vmid)).unwrap();
        // The vSID of the VM's one device is its VMID, so a record read says whose it is.
        r.alloc_vdevice(id, 1, PSID, u64::from(vmid), false)
            .unwrap();
        r.attach_nested(
            id,
            VStreamId(u32::from(vmid)),
            GUEST_S1,
            &Recorder::default(),
            |_, _| Ok(()),
        )
        .unwrap();
        r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4).unwrap();
        vmids.lock().unwrap().insert(id.0, vmid);
        current.store(id.0, Ordering::Release);
        r.route_event(&s1_fault(PSID), &mut host);
        std::thread::yield_now();
        while matches!(
            r.teardown_viommu(id, &Recorder::default()),
            Err(Error::InUse(_))
        ) {}
        if !bad.lock().unwrap().is_empty() {
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let bad = bad.lock().unwrap();
    assert!(
        bad.is_empty(),
        "{} cross-VM uses, first: {}",
        bad.len(),
        bad[0]
    );
}

/// [`setup`] with a fault queue whose group table (8 faults) is full of requests that never
/// complete: eight page requests with Last = 0, none of them readable.
fn full_fault_table() -> (Box<R>, ViommuId, Recorder, HostSink) {
    let (r, id, rec) = setup();
    r.alloc_fault_queue(id).unwrap();
    let mut host = HostSink::default();
    for prg in 0..8 {
        r.route_page_request(&page_request(prg, false, 0x1000), &mut host);
    }
    let mut out = [HwptPgfault::default(); 8];
    assert_eq!(r.read_faults(id, &mut out), Ok(0));
    (r, id, rec, host)
}

/// Page-fault groups still queued when a vDEVICE goes are answered then, and never delivered
/// afterwards: the guest fills the fault-group table with requests that never complete, then a
/// complete group waits in the IRQ ring; the device is destroyed and given to another VM.
#[test]
fn fault_groups_never_outlive_their_device() {
    let (r, id, rec, mut host) = full_fault_table();
    let mut out = [HwptPgfault::default(); 8];
    // A complete group now waits in the ring.
    assert_eq!(
        r.route_page_request(&page_request(20, true, 0x2000), &mut host),
        Routed::Iopf { viommu: id.index() }
    );
    r.destroy_vdevice(id, VSID, &rec).unwrap();
    assert_eq!(
        rec.take().concat(),
        vec![Command::PriResp {
            sid: PSID,
            ssid: Some(SubstreamId(2)),
            prg_index: 20,
            resp: arm_smmuv3::command::PriResponse::InvalidRequest
        }],
        "the complete group is answered when its device goes"
    );
    // The device now belongs to another VM.
    let other = r.alloc_viommu(cfg(6)).unwrap();
    r.alloc_vdevice(other, 1, PSID, 3, false).unwrap();
    assert_eq!(
        r.read_faults(id, &mut out),
        Ok(0),
        "nothing of the old device is delivered"
    );
    let resp: Vec<_> = out
        .iter()
        .map(|f| HwptPageResponse {
            cookie: f.cookie,
            code: 0,
        })
        .collect();
    let _ = r.respond(id, &resp, &rec);
    assert!(
        rec.take().is_empty(),
        "the VM cannot answer the other VM's device"
    );
}

/// Re-attaching answers the old attachment's groups, including those still in the IRQ ring
/// behind a full table.
#[test]
fn reattach_answers_groups_still_in_the_ring() {
    let (r, id, rec, mut host) = full_fault_table();
    let mut out = [HwptPgfault::default(); 8];
    r.route_event(&stall(PSID, 33), &mut host);
    r.attach_nested(id, VSID, GUEST_S1, &rec, |_, _| Ok(()))
        .unwrap();
    assert_eq!(
        rec.take().concat(),
        vec![Command::Resume {
            sid: PSID,
            stag: 33,
            action: ResumeAction::Abort
        }]
    );
    assert_eq!(r.read_faults(id, &mut out), Ok(0));
}

/// Two readers of one vEVENTQ: the ring has one consumer, so a second concurrent reader is
/// refused (EBUSY) rather than handed the same records.
#[test]
fn concurrent_veventq_readers_never_duplicate_records() {
    use std::sync::atomic::{AtomicBool, Ordering};
    type Big = Router<1, 16, 4, 1024, 8>;
    let r: &'static Big = Box::leak(Box::new(Big::new()));
    let id = r.alloc_viommu(cfg(5)).unwrap();
    r.alloc_vdevice(id, 77, PSID, 3, false).unwrap();
    r.attach_nested(id, VSID, GUEST_S1, &Recorder::default(), |_, _| Ok(()))
        .unwrap();
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 1024).unwrap();
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut buf = [0u8; 400];
                while !stop.load(Ordering::Acquire) {
                    if let Ok(n) = r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf) {
                        for (h, evt) in records(&buf[..n]) {
                            if let Some(evt) = evt {
                                assert_eq!(evt[3], !evt[2], "torn record");
                                seen.push((h.sequence, evt[2]));
                            }
                        }
                    }
                }
                seen
            })
        })
        .collect();
    let mut host = HostSink::default();
    let total = 100_000u64;
    for i in 0..total {
        let mut e = s1_fault(PSID);
        e.0[2] = i;
        e.0[3] = !i;
        while matches!(r.route_event(&e, &mut host), Routed::DroppedFull { .. }) {
            std::thread::yield_now();
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(20));
    stop.store(true, Ordering::Release);
    let mut all: Vec<(u32, u64)> = readers
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let mut buf = vec![0u8; 1024 * 40 + 8];
    let n = r
        .read_vevents(id, VeventqType::ArmSmmuv3, &mut buf)
        .unwrap();
    all.extend(
        records(&buf[..n])
            .into_iter()
            .filter_map(|(h, e)| e.map(|e| (h.sequence, e[2]))),
    );
    all.sort_unstable();
    let len = all.len();
    all.dedup();
    assert_eq!(len, all.len(), "records read twice");
    // In sequence order the payloads are the routed ones, in order, each once.
    let payloads: Vec<u64> = all.iter().map(|(_, p)| *p).collect();
    assert_eq!(payloads, (0..total).collect::<Vec<_>>());
}

/// ATC_INV is only for a device with ATS: a guest naming a vDEVICE without it could stall the
/// shared queue's CMD_SYNC waiting for an answer that never comes.
#[test]
fn atc_inv_needs_ats() {
    let r = R::new();
    let rec = Recorder::default();
    let mut c = cfg(5);
    c.features.ats = true; // the SMMU has ATS, the device does not
    let id = r.alloc_viommu(c).unwrap();
    r.alloc_vdevice(id, 77, PSID, 3, false).unwrap();
    let atc = ViommuArmSmmuv3Invalidate {
        cmd: Command::AtcInv {
            sid: StreamId(VSID.0),
            ssid: None,
            global: false,
            addr: 0,
            size: 52,
        }
        .encode()
        .0,
    };
    let out = r.invalidate(id, &[atc], &rec);
    assert_eq!((out.entry_num, out.result.is_err()), (0, true));
    assert!(rec.take().is_empty());
}

/// A route is marked attached only once the nested STE is in place: an event raised while the
/// STE is being installed (or whose install fails) never reaches the guest.
#[test]
fn route_is_attached_only_after_install() {
    let r = Box::new(R::new());
    let rec = Recorder::default();
    let id = r.alloc_viommu(cfg(5)).unwrap();
    r.alloc_vdevice(id, 77, PSID, 3, false).unwrap();
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4).unwrap();
    let mut host = HostSink::default();
    let mut during = None;
    let res = r.attach_nested(id, VSID, GUEST_S1, &rec, |_, _| {
        during = Some(r.route_event(&s1_fault(PSID), &mut host));
        Err(Error::Timeout(WaitFor::CmdSync))
    });
    assert_eq!(res, Err(Error::Timeout(WaitFor::CmdSync)));
    assert_eq!(during, Some(Routed::Host(HostReason::NotAttached)));
    let mut buf = [0u8; 80];
    assert_eq!(r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf), Ok(0));
}

/// One VMID names one stage 2: a second vIOMMU may share the VMID only with the same stage-2
/// root (two vIOMMUs on one nesting parent), never with another one.
#[test]
fn vmid_is_unique_per_stage2_root() {
    let r = R::new();
    let a = cfg(5);
    r.alloc_viommu(a).unwrap();
    r.alloc_viommu(a).unwrap();
    let mut b = cfg(5);
    b.s2.ttb = PhysAddr(0x8000_0000);
    assert!(r.alloc_viommu(b).is_err());
}

/// A command queue that stops at every batch (what the driver returns then).
struct Failing;
const FAILING: Error = Error::Cmdq(CmdqError::Abort);
impl CommandSink for Failing {
    fn submit(&self, _: &[Command]) -> Result<(), Error> {
        Err(FAILING)
    }
}

/// A response whose command could not be issued leaves its group delivered, so it can be
/// answered again; nothing is reported done that was not issued.
#[test]
fn respond_is_all_or_nothing() {
    let (r, id, rec) = setup();
    r.alloc_fault_queue(id).unwrap();
    let mut host = HostSink::default();
    r.route_event(&stall(PSID, 1), &mut host);
    r.route_event(&stall(PSID, 2), &mut host);
    let mut out = [HwptPgfault::default(); 2];
    assert_eq!(r.read_faults(id, &mut out), Ok(2));
    let resp = out.map(|f| HwptPageResponse {
        cookie: f.cookie,
        code: 0,
    });
    assert_eq!(r.respond(id, &resp, &Failing), Err(FAILING));
    assert_eq!(r.respond(id, &resp, &rec), Ok(2));
    assert_eq!(rec.take().concat().len(), 2);
}

/// A handle stays stale however often its slot is reused.
#[test]
fn generations_do_not_wrap() {
    let r = R::new();
    let first = r.alloc_viommu(cfg(5)).unwrap();
    r.destroy_viommu(first).unwrap();
    for _ in 0..(1u32 << 15) + 2 {
        let id = r.alloc_viommu(cfg(5)).unwrap();
        assert_ne!(
            id, first,
            "a destroyed vIOMMU's handle names its slot's next occupant"
        );
        r.destroy_viommu(id).unwrap();
    }
}

/// A re-attach whose answers to the old attachment's groups cannot be issued fails as a whole:
/// the device stays attached to its old nested STE (found by the router-lifecycle fuzz target:
/// the new STE, with ATS, used to be in place behind the error).
#[test]
fn reattach_that_cannot_answer_keeps_the_old_attachment() {
    let (r, id, _rec) = setup();
    r.alloc_fault_queue(id).unwrap();
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4).unwrap();
    let mut host = HostSink::default();
    r.route_event(&stall(PSID, 7), &mut host);
    let before = r.vdevices(id).unwrap()[0];
    let mut installed = false;
    let res = r.attach_nested(id, VSID, [1 | (5 << 1), 1 << 28], &Failing, |_, _| {
        installed = true;
        Ok(())
    });
    assert_eq!(res, Err(FAILING));
    assert!(!installed);
    assert_eq!(r.vdevices(id).unwrap()[0], before);
    assert!(matches!(
        r.route_event(&s1_fault(PSID), &mut host),
        Routed::Forwarded { .. }
    ));
}

#[test]
fn records_arriving_while_a_drain_holds_the_token_go_to_the_host_unrouted() {
    let (r, id, _rec) = setup();
    r.alloc_veventq(id, VeventqType::ArmSmmuv3, 4).unwrap();
    r.alloc_fault_queue(id).unwrap();
    let mut drain_host = HostSink::default();
    let mut host = HostSink::default();
    let e = s1_fault(PSID);
    let req = page_request(3, true, 0x3000);
    {
        let mut sink = r.sink(&mut drain_host);
        // A record of no vDEVICE: the drain's sink takes the token and keeps it for its chunk.
        EventSink::event(&mut sink, &s1_fault(StreamId(0x7)));
        assert_eq!(
            r.route_event(&e, &mut host),
            Routed::Host(HostReason::Contended)
        );
        assert_eq!(
            r.route_page_request(&req, &mut host),
            Routed::Host(HostReason::Contended)
        );
    }
    assert_eq!(
        drain_host.events,
        vec![s1_fault(StreamId(0x7))],
        "the drain's own record"
    );
    assert_eq!(host.events, vec![e]);
    assert_eq!(host.requests, vec![req]);
    let mut buf = [0u8; 64];
    assert_eq!(
        r.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf),
        Ok(0),
        "nothing is routed without the token"
    );
    let mut out = [HwptPgfault::default(); 2];
    assert_eq!(r.read_faults(id, &mut out), Ok(0));
    // Once the drain has let go, the same records are routed.
    assert_eq!(
        r.route_event(&e, &mut host),
        Routed::Forwarded {
            viommu: id.index(),
            sequence: 0
        }
    );
    assert_eq!(
        r.route_page_request(&req, &mut host),
        Routed::Iopf { viommu: id.index() }
    );
    assert_eq!((host.events.len(), host.requests.len()), (1, 1));
}
