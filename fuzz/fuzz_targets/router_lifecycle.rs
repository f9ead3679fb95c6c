//! The router's whole lifecycle, driven by the input: vIOMMU alloc/destroy/teardown (with
//! command failures injected), vDEVICE alloc/destroy, nested attach/detach (with install
//! failures), event and page-request routing (single records and drain batches, overflows),
//! fault queues, fault reads and responses, guest invalidations, vEVENTQ alloc/destroy/reads,
//! and calls through stale handles.
//!
//! The oracle is a model of who owns what, kept apart from the router: every command issued
//! during a call names only the VMID of the vIOMMU the call was made through and StreamIDs that
//! vIOMMU owned when the call started (a stale handle issues nothing); a device is never given
//! to a second vIOMMU while another one owns or reserves it; a vEVENTQ read through a handle
//! returns only records of devices of that vIOMMU; no panic; a bounded number of commands per
//! call.
#![no_main]

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};

use arm_smmuv3::command::{Command, Opcode};
use arm_smmuv3::error::{CmdqError, Error, Object, WaitFor};
use arm_smmuv3::event::{EventRecord, EvtqEntry};
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::{HwptPageResponse, HwptPgfault, VeventqType, ViommuArmSmmuv3Invalidate};
use arm_smmuv3::pri::{PageRequest, PriqEntry};
use arm_smmuv3::ste::{Granule, S2Config};
use arm_smmuv3::viommu::{CommandSink, EventSink, PriSink, Router, ViommuConfig, ViommuId};
use arm_smmuv3::{Iova, PhysAddr, StreamId, SubstreamId, VStreamId, Vmid};
use libfuzzer_sys::fuzz_target;

type R = Router<3, 16, 4, 4, 4>;
const PSIDS: [u32; 6] = [0x10, 0x18, 0x20, 0x28, 0x100, 0x7f8];

struct Rec {
    cmds: RefCell<Vec<Command>>,
    fail: bool,
}

impl CommandSink for Rec {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        assert!(
            !cmds.is_empty() && cmds.len() <= 63,
            "batch of {}",
            cmds.len()
        );
        if self.fail {
            return Err(Error::Cmdq(CmdqError::Abort));
        }
        self.cmds.borrow_mut().extend_from_slice(cmds);
        Ok(())
    }
}

#[derive(Default)]
struct Host {
    events: usize,
    requests: usize,
}
impl EventSink for Host {
    fn event(&mut self, _: &EvtqEntry) {
        self.events += 1;
    }
}
impl PriSink for Host {
    fn request(&mut self, _: &PriqEntry) {
        self.requests += 1;
    }
}

/// What the model knows of one vIOMMU handle.
struct Model {
    vmid: u16,
    root: u64,
    live: bool,
    /// vSID -> (pSID, ats_capable, attached with ATS asked)
    devs: BTreeMap<u32, (u32, bool, bool)>,
    /// Every vSID a device of it ever had (records queued before a detach stay readable).
    vsids_ever: BTreeSet<u32>,
}

fn cfg(vmid: u16, root: u64, ats: bool) -> ViommuConfig {
    let mut s2 =
        S2Config::for_ipa_bits(Vmid(vmid), PhysAddr(0x4000_0000), 40, Granule::Size4K).unwrap();
    s2.ttb = PhysAddr(0x4000_0000 + (root << 20));
    let mut features = Features::decode(Features::QEMU_VIRT_IDREGS);
    features.ats = ats;
    ViommuConfig {
        s2,
        features,
        coherent_devices: true,
        repeat_tlbi_cfgi: false,
    }
}

/// Checks every command a call through `h` issued against what `h` owned when it started.
fn check(cmds: &[Command], m: Option<&Model>, call: &str) {
    if cmds.is_empty() {
        return;
    }
    let m = m.unwrap_or_else(|| panic!("{call}: commands through an unknown handle"));
    assert!(m.live, "{call}: {cmds:?} issued through a dead handle");
    assert!(cmds.len() <= 64, "{call}: {} commands", cmds.len());
    let owned = |sid: StreamId| m.devs.values().any(|(p, _, _)| *p == sid.0);
    for c in cmds {
        let e = c.encode();
        match Opcode::from_u8(e.opcode()) {
            Some(Opcode::TlbiNhAll | Opcode::TlbiNhAsid | Opcode::TlbiNhVa | Opcode::TlbiNhVaa) => {
                assert_eq!(e.vmid(), Vmid(m.vmid), "{call}: VMID escape {c:?}")
            }
            Some(Opcode::CfgiCd | Opcode::CfgiCdAll | Opcode::PriResp | Opcode::Resume) => {
                assert!(owned(e.sid()), "{call}: StreamID escape {c:?}")
            }
            Some(Opcode::AtcInv) => assert!(
                m.devs
                    .values()
                    .any(|(p, ats, asked)| *p == e.sid().0 && *ats && *asked),
                "{call}: ATC_INV for a device without ATS {c:?}"
            ),
            other => panic!("{call}: opcode escape {other:?} {c:?}"),
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let r: Box<R> = Box::new(R::new());
    let mut handles: Vec<ViommuId> = Vec::new();
    let mut model: BTreeMap<u64, Model> = BTreeMap::new();
    let mut host = Host::default();
    let mut bytes = data.chunks_exact(4);
    for op in bytes.by_ref().take(64) {
        let [kind, a, b, c] = [op[0], op[1], op[2], op[3]];
        let h = if handles.is_empty() {
            ViommuId(u64::from(a & 3))
        } else {
            handles[usize::from(a) % handles.len()]
        };
        let psid = PSIDS[usize::from(b) % PSIDS.len()];
        let vsid = u32::from(c & 7);
        let rec = Rec {
            cmds: RefCell::new(Vec::new()),
            fail: kind & 0x80 != 0 && c & 0x40 != 0,
        };
        let before_live = model.get(&h.0).is_some_and(|m| m.live);
        match kind % 14 {
            0 => {
                let vmid = 1 + u16::from(b % 3);
                let root = u64::from(c % 2);
                let res = r.alloc_viommu(cfg(vmid, root, c & 4 != 0));
                let clash = model
                    .values()
                    .any(|m| m.live && m.vmid == vmid && m.root != root);
                if let Ok(id) = res {
                    assert!(!clash, "VMID {vmid} on two stage-2 roots");
                    assert!(!model.contains_key(&id.0), "a handle came back: {id:?}");
                    handles.push(id);
                    model.insert(
                        id.0,
                        Model {
                            vmid,
                            root,
                            live: true,
                            devs: BTreeMap::new(),
                            vsids_ever: BTreeSet::new(),
                        },
                    );
                }
            }
            1 => {
                let res = r.teardown_viommu(h, &rec);
                check(&rec.cmds.borrow(), model.get(&h.0), "teardown");
                if !before_live {
                    assert_eq!(res, Err(Error::NoSuch(Object::Viommu(h))));
                } else if !matches!(res, Err(Error::InUse(_))) {
                    let m = model.get_mut(&h.0).unwrap();
                    m.live = false;
                    m.devs.clear();
                }
            }
            2 => {
                let res = r.destroy_viommu(h);
                if res.is_ok() {
                    let m = model.get_mut(&h.0).unwrap();
                    assert!(m.live && m.devs.is_empty());
                    m.live = false;
                } else if !before_live {
                    assert_eq!(res, Err(Error::NoSuch(Object::Viommu(h))));
                }
            }
            3 => {
                let res = r.alloc_vdevice(h, 1, StreamId(psid), u64::from(vsid), c & 8 != 0);
                let owner = model
                    .iter()
                    .find(|(_, m)| m.devs.values().any(|(p, _, _)| *p == psid))
                    .map(|(k, _)| *k);
                if let Ok(v) = res {
                    assert_eq!(v, VStreamId(vsid));
                    assert!(before_live, "vDEVICE through a dead handle");
                    assert_eq!(owner, None, "device {psid:#x} given twice");
                    let m = model.get_mut(&h.0).unwrap();
                    m.devs.insert(vsid, (psid, c & 8 != 0, false));
                    m.vsids_ever.insert(vsid);
                }
            }
            4 => {
                let res = r.destroy_vdevice(h, VStreamId(vsid), &rec);
                check(&rec.cmds.borrow(), model.get(&h.0), "destroy_vdevice");
                if !matches!(res, Err(Error::InUse(_) | Error::NoSuch(_))) {
                    model.get_mut(&h.0).unwrap().devs.remove(&vsid);
                }
                if !before_live {
                    assert_eq!(res, Err(Error::NoSuch(Object::Viommu(h))));
                }
            }
            5 => {
                // Config 5 (S1 translate) with or without EATS = 1, or a bypass vSTE.
                let ste = match c >> 6 {
                    0 => [1 | 4 << 1, 0],
                    1 => [1 | 5 << 1, 1 << 28],
                    _ => [1 | 5 << 1, 0],
                };
                let fail = b & 0x80 != 0;
                let res = r.attach_nested(h, VStreamId(vsid), ste, &rec, |_, _| {
                    if fail {
                        Err(Error::Timeout(WaitFor::CmdSync))
                    } else {
                        Ok(())
                    }
                });
                check(&rec.cmds.borrow(), model.get(&h.0), "attach");
                if let Ok(p) = res {
                    let m = model.get_mut(&h.0).unwrap();
                    let d = m.devs.get_mut(&vsid).unwrap();
                    // EATS exactly as the guest asked and the device allows.
                    let want = c >> 6 == 1 && d.1;
                    assert_eq!(p.eats() == 1, want, "EATS {} for {ste:x?}", p.eats());
                    d.2 = c >> 6 == 1;
                }
            }
            6 => {
                let res = r.detach_nested(h, VStreamId(vsid), &rec);
                check(&rec.cmds.borrow(), model.get(&h.0), "detach");
                if res.is_ok() {
                    if let Some(d) = model.get_mut(&h.0).unwrap().devs.get_mut(&vsid) {
                        d.2 = false;
                    }
                }
            }
            7 => {
                let sid = StreamId(psid);
                let e = match c % 4 {
                    0 => EventRecord::translation_fault(sid, Iova(0x1000), false, true)
                        .with_ssid(Some(SubstreamId(1))),
                    1 => EventRecord::translation_fault(sid, Iova(0x2000), false, false)
                        .with_stall(u16::from(b)),
                    2 => EventRecord::translation_fault(sid, Iova(0x3000), true, true),
                    _ => EventRecord::translation_fault(sid, Iova(0x4000), false, true),
                }
                .encode();
                if c & 0x10 != 0 {
                    let mut sink = r.sink(&mut host);
                    for _ in 0..=(b & 7) {
                        EventSink::event(&mut sink, &e);
                    }
                    if c & 0x20 != 0 {
                        EventSink::overflow(&mut sink);
                    }
                } else {
                    r.route_event(&e, &mut host);
                }
            }
            8 => {
                let q = PageRequest {
                    sid: StreamId(psid),
                    ssid: None,
                    privileged: false,
                    exec: false,
                    read: true,
                    write: false,
                    last: c & 1 != 0,
                    prg_index: u16::from(c >> 1 & 7),
                    addr: 0x1000,
                }
                .encode();
                let mut sink = r.sink(&mut host);
                PriSink::request(&mut sink, &q);
            }
            9 => {
                if c & 1 == 0 {
                    let _ = r.alloc_fault_queue(h);
                } else {
                    let _ = r.destroy_fault_queue(h, &rec);
                    check(&rec.cmds.borrow(), model.get(&h.0), "destroy_fault_queue");
                }
            }
            10 => {
                let mut out = [HwptPgfault::default(); 4];
                let n = r
                    .read_faults(h, &mut out[..usize::from(b % 5)])
                    .unwrap_or(0);
                if n > 0 {
                    assert!(before_live);
                }
                let mut resp: Vec<_> = out[..n]
                    .iter()
                    .map(|f| HwptPageResponse {
                        cookie: f.cookie,
                        code: u32::from(c & 1),
                    })
                    .collect();
                resp.push(HwptPageResponse {
                    cookie: u32::from(c),
                    code: u32::from(c >> 7),
                });
                let _ = r.respond(h, &resp, &rec);
                check(&rec.cmds.borrow(), model.get(&h.0), "respond");
            }
            11 => {
                let cmd = match c % 5 {
                    0 => Command::TlbiNhAll {
                        vmid: Vmid(u16::from(b)),
                    },
                    1 => Command::CfgiCdAll {
                        sid: StreamId(vsid),
                    },
                    2 => Command::AtcInv {
                        sid: StreamId(vsid),
                        ssid: None,
                        global: false,
                        addr: 0,
                        size: 52,
                    },
                    3 => Command::CfgiCdAll {
                        sid: StreamId(psid),
                    },
                    _ => Command::TlbiNsnhAll,
                };
                let ent = ViommuArmSmmuv3Invalidate {
                    cmd: cmd.encode().0,
                };
                let out = r.invalidate(h, &[ent, ent], &rec);
                check(&rec.cmds.borrow(), model.get(&h.0), "invalidate");
                if !before_live {
                    assert_eq!(out.result, Err(Error::NoSuch(Object::Viommu(h))));
                }
            }
            12 => match c % 3 {
                0 => {
                    let _ = r.alloc_veventq(h, VeventqType::ArmSmmuv3, 1 + u32::from(b % 4));
                }
                1 => {
                    let _ = r.destroy_veventq(h, VeventqType::ArmSmmuv3);
                }
                _ => {
                    let mut buf = [0u8; 200];
                    let n = r
                        .read_vevents(h, VeventqType::ArmSmmuv3, &mut buf)
                        .unwrap_or(0);
                    let mut at = 0;
                    while at < n {
                        let flags = u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap());
                        at += 8;
                        if flags & 1 != 0 {
                            continue;
                        }
                        let d0 = u64::from_le_bytes(buf[at..at + 8].try_into().unwrap());
                        let vsid = (d0 >> 32) as u32;
                        let m = model.get(&h.0).expect("a read through an unknown handle");
                        assert!(m.live, "a read through a dead handle returned records");
                        assert!(
                            m.vsids_ever.contains(&vsid),
                            "a record of vSID {vsid:#x} is not ours"
                        );
                        at += 32;
                    }
                }
            },
            _ => {
                // A handle from another slot or generation.
                let stale = ViommuId(h.0 ^ (1 << (16 + (c % 3))));
                let out = r.invalidate(
                    stale,
                    &[ViommuArmSmmuv3Invalidate {
                        cmd: Command::TlbiNsnhAll.encode().0,
                    }],
                    &rec,
                );
                check(&rec.cmds.borrow(), model.get(&stale.0), "stale invalidate");
                if !model.get(&stale.0).is_some_and(|m| m.live) {
                    assert_eq!(out.result, Err(Error::NoSuch(Object::Viommu(stale))));
                }
            }
        }
    }
});
