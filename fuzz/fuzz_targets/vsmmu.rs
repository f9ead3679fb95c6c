//! Two guests' virtual SMMUs on one physical SMMU (the software model behind the real driver
//! and a Router): arbitrary register accesses, guest memory contents (stream tables, commands,
//! queue bases) and physical events. The oracle checks, after every step of guest `g`, that
//! each command that reached the physical SMMU names guest `g`'s VMID or one of its physical
//! StreamIDs (or is a CMD_SYNC), that every physical STE of `g`'s devices is an abort STE or
//! carries `g`'s VMID and stage-2 root, that the other guest's STEs did not change, and that
//! the work per step stays within what the vSMMU's sizes allow. Panics and hangs are failures.
#![no_main]

use std::cell::RefCell;
use std::sync::Arc;

use arm_smmuv3::command::{CmdqEntry, Command};
use arm_smmuv3::event::EventRecord;
use arm_smmuv3::fake::{DriverOnModel, HostSink, ModelArena, ModelPlatform, SmmuModel};
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::VeventqType;
use arm_smmuv3::regs::offset as off;
use arm_smmuv3::smmu::Config;
use arm_smmuv3::ste::{Granule, S2Config, Ste};
use arm_smmuv3::viommu::{Router, ViommuConfig, ViommuId};
use arm_smmuv3::vsmmu::{
    GuestIrq, GuestMemory, IrqLine, OutsideRam, RouterBackend, VSmmu, VSmmuConfig,
};
use arm_smmuv3::{Iova, Ipa, PhysAddr, StreamId, Vmid};
use libfuzzer_sys::fuzz_target;

type R = Router<2, 16, 4, 16, 8>;

const RAM_BASE: u64 = 0x4000_0000;
const RAM_BYTES: usize = 0x1_0000;
/// Per guest: VMID, stage-2 root, (vSID, pSID) of its devices. Both guests use vSID 8.
const GUESTS: [(Vmid, u64, [(u32, u32); 2]); 2] = [
    (Vmid(3), 0x8000_0000, [(0x8, 0x10), (0x9, 0x11)]),
    (Vmid(4), 0x9000_0000, [(0x8, 0x20), (0x30, 0x21)]),
];
/// The largest command queue a guest may program (IDR1.CMDQS).
const CMDQ_LOG2: u8 = 5;

struct Rig {
    model: Arc<SmmuModel>,
    phys: &'static DriverOnModel,
    router: &'static R,
    ids: [ViommuId; 2],
}

fn rig() -> &'static Rig {
    thread_local! {
        static RIG: &'static Rig = {
            let model = SmmuModel::qemu_virt();
            let phys: &'static DriverOnModel = Box::leak(Box::new(model.driver(Config::default()).unwrap()));
            phys.reset().unwrap();
            let router: &'static R = Box::leak(Box::new(Router::new()));
            let ids = GUESTS.map(|(vmid, root, devs)| {
                let s2 = S2Config::for_ipa_bits(vmid, PhysAddr(root), 40, Granule::Size4K).unwrap();
                let id = router
                    .alloc_viommu(ViommuConfig {
                        s2,
                        features: Features::decode(Features::QEMU_VIRT_IDREGS),
                        coherent_devices: true,
                        repeat_tlbi_cfgi: false,
                    })
                    .unwrap();
                for (i, (v, p)) in devs.into_iter().enumerate() {
                    router.alloc_vdevice(id, i as u32, StreamId(p), u64::from(v), false).unwrap();
                }
                router.alloc_veventq(id, VeventqType::ArmSmmuv3, 16).unwrap();
                id
            });
            Box::leak(Box::new(Rig { model, phys, router, ids }))
        };
    }
    RIG.with(|r| *r)
}

struct Ram(RefCell<Vec<u8>>);

impl GuestMemory for Ram {
    fn read(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let o = ipa.0.wrapping_sub(RAM_BASE) as usize;
        let m = self.0.borrow();
        let src = m
            .get(o..o.checked_add(buf.len()).ok_or(OutsideRam(ipa))?)
            .ok_or(OutsideRam(ipa))?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write(&self, ipa: Ipa, data: &[u8]) -> Result<(), OutsideRam> {
        let o = ipa.0.wrapping_sub(RAM_BASE) as usize;
        let mut m = self.0.borrow_mut();
        let dst = m
            .get_mut(o..o.checked_add(data.len()).ok_or(OutsideRam(ipa))?)
            .ok_or(OutsideRam(ipa))?;
        dst.copy_from_slice(data);
        Ok(())
    }
}

struct NoIrq;
impl GuestIrq for NoIrq {
    fn raise(&self, _: IrqLine) {}
}

type Vs<'a> = VSmmu<RouterBackend<'a, ModelPlatform, ModelArena>, &'a Ram, NoIrq>;

const OFFSETS: [u64; 16] = [
    off::CR0 as u64,
    off::CR1 as u64,
    off::CR2 as u64,
    off::GBPA as u64,
    off::IRQ_CTRL as u64,
    off::GERRORN as u64,
    off::STRTAB_BASE as u64,
    off::STRTAB_BASE as u64 + 4,
    off::STRTAB_BASE_CFG as u64,
    off::CMDQ_BASE as u64,
    off::CMDQ_PROD as u64,
    off::CMDQ_CONS as u64,
    off::EVENTQ_BASE as u64,
    (off::PAGE_SIZE + off::EVENTQ_PROD) as u64,
    (off::PAGE_SIZE + off::EVENTQ_CONS) as u64,
    off::GERROR_IRQ_CFG0 as u64,
];

const OPCODES: [u8; 20] = [
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x10, 0x11, 0x12, 0x13, 0x20, 0x28, 0x2a, 0x30, 0x40,
    0x41, 0x44, 0x45, 0x46,
];

struct Bytes<'a>(&'a [u8]);
impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |a, i| a | (u64::from(self.u8()) << (8 * i)))
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// The physical STEs of every device of both guests. A StreamID whose level-2 table the
/// driver has not allocated yet is unreachable, which aborts like the driver's abort STE.
fn stes(r: &Rig) -> [[Ste; 2]; 2] {
    GUESTS.map(|(_, _, devs)| {
        devs.map(|(_, p)| r.model.ste_in_memory(StreamId(p)).unwrap_or(Ste::ABORT))
    })
}

fn check(r: &Rig, g: usize, before: &[[Ste; 2]; 2]) {
    let (vmid, root, devs) = GUESTS[g];
    let mine = |s: StreamId| devs.iter().any(|&(_, p)| StreamId(p) == s);
    let cmds = r.model.take_commands();
    // Per step at most one queue's worth of guest commands, each batch with its CMD_SYNC, plus
    // two CFGI_STE + CMD_SYNC pairs for each device whose STE changes.
    assert!(
        cmds.len() <= 2 * (1 << CMDQ_LOG2) + 16 * devs.len(),
        "{}",
        cmds.len()
    );
    for c in &cmds {
        let ok = match *c {
            Command::TlbiNhAll { vmid: v }
            | Command::TlbiNhAsid { vmid: v, .. }
            | Command::TlbiNhVa { vmid: v, .. }
            | Command::TlbiNhVaa { vmid: v, .. } => v == vmid,
            Command::CfgiSte { sid, .. }
            | Command::CfgiCd { sid, .. }
            | Command::CfgiCdAll { sid }
            | Command::AtcInv { sid, .. }
            | Command::PrefetchConfig { sid, .. }
            | Command::PrefetchAddr { sid, .. } => mine(sid),
            Command::Sync { .. } => true,
            _ => false,
        };
        assert!(ok, "guest {g} issued {c:?}");
    }
    let now = stes(r);
    assert_eq!(
        now[1 - g],
        before[1 - g],
        "guest {g} changed the other guest's STEs"
    );
    for ste in &now[g] {
        if *ste != Ste::ABORT {
            assert_eq!(ste.s2vmid(), vmid, "{ste:?}");
            assert_eq!(ste.s2ttb(), PhysAddr(root), "{ste:?}");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let r = rig();
    // Whatever earlier inputs left: empty vEVENTQs and physical queue, no pending commands.
    let mut host = HostSink::default();
    r.phys.drain_evtq(&mut r.router.sink(&mut host));
    let mut sink = [0u8; 1024];
    for id in r.ids {
        while r
            .router
            .read_vevents(id, VeventqType::ArmSmmuv3, &mut sink)
            .unwrap_or(0)
            > 0
        {}
    }
    r.model.take_commands();

    thread_local! {
        static RAMS: [Ram; 2] = [Ram(RefCell::new(vec![0; RAM_BYTES])), Ram(RefCell::new(vec![0; RAM_BYTES]))];
    }
    RAMS.with(|rams| run(r, rams, data));
});

fn run(r: &Rig, rams: &[Ram; 2], data: &[u8]) {
    let mut host = HostSink::default();
    for ram in rams {
        ram.0.borrow_mut().fill(0);
    }
    let mut b = Bytes(data);
    let flags = b.u8();
    let cfg = VSmmuConfig {
        sid_bits: 8,
        cmdq_log2: CMDQ_LOG2,
        evtq_log2: 3,
        ipa_bits: 40,
        gbpa_abort: flags & 2 == 0,
        iidr: 0,
    };
    let vs: [Vs<'_>; 2] = [0, 1].map(|g| {
        VSmmu::new(
            cfg,
            RouterBackend::new(r.router, r.phys, r.ids[g]),
            &rams[g],
            NoIrq,
        )
        .unwrap()
    });
    for (g, v) in vs.iter().enumerate() {
        let before = stes(r);
        if flags & 4 != 0 {
            v.sync_streams();
            check(r, g, &before);
        }
        if flags & 1 != 0 {
            // Linux's reset sequence, so that inputs start from a live SMMU.
            v.write(off::STRTAB_BASE as u64, 8, RAM_BASE);
            v.write(off::STRTAB_BASE_CFG as u64, 4, 6);
            v.write(
                off::CMDQ_BASE as u64,
                8,
                RAM_BASE + 0x4000 | u64::from(CMDQ_LOG2),
            );
            v.write(off::EVENTQ_BASE as u64, 8, RAM_BASE + 0x8000 | 3);
            v.write(off::CR0 as u64, 4, 0xc);
            v.write(off::IRQ_CTRL as u64, 4, 5);
            v.write(off::CR0 as u64, 4, 0xd);
            check(r, g, &before);
        }
    }
    let mut steps = 0;
    while !b.done() && steps < 64 {
        steps += 1;
        let op = b.u8();
        let g = usize::from(op >> 7);
        let v = &vs[g];
        let before = stes(r);
        match op & 7 {
            0 | 1 => {
                let sel = b.u8();
                let o = if sel & 0x80 != 0 {
                    b.u64() % 0x2_0010
                } else {
                    OFFSETS[usize::from(sel) % OFFSETS.len()]
                };
                let size = if sel & 0x40 != 0 { 8 } else { 4 };
                if op & 1 == 0 {
                    v.write(o, size, b.u64());
                } else {
                    v.read(o, size);
                }
            }
            2 => {
                let at = u64::from(b.u8()) << 8 | u64::from(b.u8() & 0xf8);
                let w = b.u64();
                let _ = rams[g].write(Ipa(RAM_BASE + at), &w.to_le_bytes());
            }
            3 => {
                // One command at the guest's PROD, then PROD + 1 (through the trapped path).
                let base = v.read(off::CMDQ_BASE as u64, 8);
                let prod = v.read(off::CMDQ_PROD as u64, 4) as u32;
                let log2 = ((base & 0x1f) as u8).min(CMDQ_LOG2);
                let op = b.u8();
                let opcode = if op & 0x80 != 0 {
                    op
                } else {
                    OPCODES[usize::from(op) % OPCODES.len()]
                };
                let d0 = (b.u64() & !0xff) | u64::from(opcode);
                let d1 = b.u64();
                let slot = (base & 0xff_ffff_ffe0) + 16 * u64::from(prod & ((1 << log2) - 1));
                let e = CmdqEntry([d0, d1]);
                let mut bytes = [0u8; 16];
                bytes[..8].copy_from_slice(&e.0[0].to_le_bytes());
                bytes[8..].copy_from_slice(&e.0[1].to_le_bytes());
                let _ = rams[g].write(Ipa(slot), &bytes);
                v.write(off::CMDQ_PROD as u64, 4, u64::from(prod.wrapping_add(1)));
            }
            4 => {
                // A guest STE for one of its vSIDs (or another), then CFGI_STE for it.
                let (_, _, devs) = GUESTS[g];
                let sel = b.u8();
                let vsid = match sel & 3 {
                    0 | 1 => devs[usize::from(sel & 1)].0,
                    _ => u32::from(b.u8()),
                };
                let d0 = b.u64();
                let d1 = b.u64();
                let at = RAM_BASE + 64 * u64::from(vsid & 0x3f);
                let _ = rams[g].write(Ipa(at), &d0.to_le_bytes());
                let _ = rams[g].write(Ipa(at + 8), &d1.to_le_bytes());
                let base = v.read(off::CMDQ_BASE as u64, 8);
                let prod = v.read(off::CMDQ_PROD as u64, 4) as u32;
                let log2 = ((base & 0x1f) as u8).min(CMDQ_LOG2);
                let slot = (base & 0xff_ffff_ffe0) + 16 * u64::from(prod & ((1 << log2) - 1));
                let c = Command::CfgiSte {
                    sid: StreamId(vsid),
                    leaf: true,
                }
                .encode();
                let _ = rams[g].write(Ipa(slot), &c.0[0].to_le_bytes());
                let _ = rams[g].write(Ipa(slot + 8), &c.0[1].to_le_bytes());
                v.write(off::CMDQ_PROD as u64, 4, u64::from(prod.wrapping_add(1)));
            }
            5 => {
                // A physical event for a device of either guest (or nobody's), drained into the
                // router, then delivered to both guests.
                let sel = b.u8();
                let psid = match sel & 7 {
                    0..=3 => GUESTS[usize::from(sel & 1)].2[usize::from(sel >> 1 & 1)].1,
                    _ => 0x40,
                };
                for i in 0..u64::from(b.u8() & 31) {
                    r.model.inject_event(
                        EventRecord::translation_fault(
                            StreamId(psid),
                            Iova(0x1000 * i),
                            false,
                            true,
                        )
                        .encode(),
                    );
                }
                r.phys.drain_evtq(&mut r.router.sink(&mut host));
                for v in &vs {
                    v.deliver_events();
                }
            }
            _ => {
                v.deliver_events();
            }
        }
        check(r, g, &before);
    }
}
