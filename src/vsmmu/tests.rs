//! Register file, command queue, stream table and event queue against a recording backend that
//! applies the vIOMMU layer's own sanitisers (so refusals are the real ones), guest RAM in a
//! vector, and recorded interrupt lines.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::cell::RefCell;
use std::collections::VecDeque;
use std::vec::Vec;

use super::*;
use crate::command::{CmdqEntry, Command, SyncCs};
use crate::event::{EventId, EventRecord, EvtqEntry};
use crate::features::{Features, QEMU_VIRT};
use crate::ids::{Asid, PhysAddr, StreamId, VStreamId, Vmid};
use crate::iommufd::VeventFlags;
use crate::viommu::{GuestCmdPolicy, InvalidateOutcome, NestedSte, sanitise_guest_command};

const RAM_BASE: u64 = 0x4000_0000;
const RAM_BYTES: usize = 1 << 20;
const STRTAB: u64 = RAM_BASE;
const CMDQ: u64 = RAM_BASE + 0x1_0000;
const EVTQ: u64 = RAM_BASE + 0x2_0000;
const L2: u64 = RAM_BASE + 0x3_0000;
const VMID: Vmid = Vmid(9);

/// vSID → pSID of the guest's vDEVICEs.
const DEVS: [(u32, u32); 3] = [(0x8, 0x108), (0x10, 0x110), (0x123, 0x223)];

#[derive(Default)]
struct Rec {
    /// (vSID, guest STE) installed.
    attached: RefCell<Vec<(u32, [u64; 2])>>,
    /// Physical command batches, sanitised.
    issued: RefCell<Vec<Vec<Command>>>,
    /// vEVENTQ byte stream waiting to be read.
    vevents: RefCell<VecDeque<Vec<u8>>>,
}

impl Rec {
    fn psid(v: VStreamId) -> Option<StreamId> {
        DEVS.iter().find(|d| d.0 == v.0).map(|d| StreamId(d.1))
    }
    fn queue_event(&self, seq: u32, e: EvtqEntry) {
        let mut b = Vec::new();
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        for w in e.0 {
            b.extend_from_slice(&w.to_le_bytes());
        }
        self.vevents.borrow_mut().push_back(b);
    }
    fn queue_lost(&self, seq: u32) {
        let mut b = Vec::new();
        b.extend_from_slice(&VeventFlags::LOST_EVENTS.bits().to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        self.vevents.borrow_mut().push_back(b);
    }
    fn tlbis(&self) -> Vec<Command> {
        self.issued.borrow().iter().flatten().copied().collect()
    }
}

impl Backend for Rec {
    fn features(&self) -> Features {
        Features::decode(QEMU_VIRT)
    }
    fn attach(&self, vsid: VStreamId, guest_ste: [u64; 2]) -> Result<(), Error> {
        Self::psid(vsid).ok_or(Error::NoSuch(crate::error::Object::VDevice(vsid)))?;
        NestedSte::from_guest(guest_ste)?;
        self.attached.borrow_mut().push((vsid.0, guest_ste));
        Ok(())
    }
    fn for_each_vsid(&self, f: &mut dyn FnMut(VStreamId)) {
        for d in DEVS {
            f(VStreamId(d.0));
        }
    }
    fn invalidate(&self, cmds: &[CmdqEntry]) -> InvalidateOutcome {
        let policy = GuestCmdPolicy::new(VMID, &self.features());
        let mut out = Vec::new();
        for c in cmds {
            match sanitise_guest_command(*c, &policy, Self::psid) {
                Ok(c) => out.push(c),
                Err(e) => {
                    return InvalidateOutcome {
                        entry_num: 0,
                        result: Err(e),
                    };
                }
            }
        }
        self.issued.borrow_mut().push(out);
        InvalidateOutcome {
            entry_num: cmds.len() as u32,
            result: Ok(()),
        }
    }
    fn read_vevents(&self, buf: &mut [u8]) -> Result<usize, Error> {
        let mut q = self.vevents.borrow_mut();
        let mut n = 0;
        while let Some(r) = q.front() {
            if n + r.len() > buf.len() {
                break;
            }
            buf[n..n + r.len()].copy_from_slice(r);
            n += r.len();
            q.pop_front();
        }
        Ok(n)
    }
}

struct Ram(RefCell<Vec<u8>>);

impl Ram {
    fn new() -> Self {
        Self(RefCell::new(vec![0; RAM_BYTES]))
    }
    fn range(ipa: Ipa, len: usize) -> Result<core::ops::Range<usize>, OutsideRam> {
        let off = ipa.0.checked_sub(RAM_BASE).ok_or(OutsideRam(ipa))? as usize;
        if off + len > RAM_BYTES {
            return Err(OutsideRam(ipa));
        }
        Ok(off..off + len)
    }
    fn put(&self, ipa: u64, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            self.write(Ipa(ipa + 8 * i as u64), &w.to_le_bytes())
                .unwrap();
        }
    }
    fn get(&self, ipa: u64) -> u64 {
        let mut b = [0; 8];
        self.read(Ipa(ipa), &mut b).unwrap();
        u64::from_le_bytes(b)
    }
}

impl GuestMemory for Ram {
    fn read(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        buf.copy_from_slice(&self.0.borrow()[Self::range(ipa, buf.len())?]);
        Ok(())
    }
    fn write(&self, ipa: Ipa, data: &[u8]) -> Result<(), OutsideRam> {
        self.0.borrow_mut()[Self::range(ipa, data.len())?].copy_from_slice(data);
        Ok(())
    }
}

type Lines = crate::fake::rig::RaisedLines;

type V = VSmmu<Rec, Ram, Lines>;

fn vsmmu(cfg: VSmmuConfig) -> V {
    VSmmu::new(cfg, Rec::default(), Ram::new(), Lines::default()).unwrap()
}

fn cfg() -> VSmmuConfig {
    VSmmuConfig {
        sid_bits: 10,
        cmdq_log2: 7,
        evtq_log2: 3,
        ..VSmmuConfig::DEFAULT
    }
}

const P1: u64 = off::PAGE_SIZE as u64;

fn r32(v: &V, o: usize) -> u32 {
    v.read(o as u64, 4) as u32
}
fn w32(v: &V, o: usize, x: u32) {
    v.write(o as u64, 4, u64::from(x));
}
fn w64(v: &V, o: usize, x: u64) {
    v.write(o as u64, 8, x);
}

/// Linux 6.12's probe and reset writes (arm_smmu_device_reset), with a linear table of 2^10
/// STEs, a 128-entry command queue and an 8-entry event queue, and the vSMMU enabled.
fn linux_reset(v: &V) {
    w32(v, off::CR0, 0);
    assert_eq!(r32(v, off::CR0ACK), 0);
    w32(v, off::CR1, 0xd75);
    w32(v, off::CR2, 0x6);
    w64(v, off::STRTAB_BASE, (1 << 62) | STRTAB);
    w32(v, off::STRTAB_BASE_CFG, 10);
    w64(v, off::CMDQ_BASE, (1 << 62) | CMDQ | 7);
    w32(v, off::CMDQ_PROD, 0);
    w32(v, off::CMDQ_CONS, 0);
    w32(v, off::CR0, 0x8);
    assert_eq!(r32(v, off::CR0ACK), 0x8);
    submit(
        v,
        &[Command::CfgiAll, Command::TlbiNsnhAll, Command::sync()],
    );
    w64(v, off::EVENTQ_BASE, (1 << 62) | EVTQ | 3);
    v.write(P1 + off::EVENTQ_PROD as u64, 4, 0);
    v.write(P1 + off::EVENTQ_CONS as u64, 4, 0);
    w32(v, off::CR0, 0xc);
    assert_eq!(r32(v, off::CR0ACK), 0xc);
    w32(v, off::IRQ_CTRL, 0);
    assert_eq!(r32(v, off::IRQ_CTRLACK), 0);
    w64(v, off::GERROR_IRQ_CFG0, 0);
    w64(v, off::EVENTQ_IRQ_CFG0, 0);
    w32(v, off::IRQ_CTRL, 0x5);
    assert_eq!(r32(v, off::IRQ_CTRLACK), 0x5);
    w32(v, off::CR0, 0xd);
    assert_eq!(r32(v, off::CR0ACK), 0xd);
}

/// Writes `cmds` at the guest's PROD and publishes them with one PROD write.
fn submit(v: &V, cmds: &[Command]) {
    let raws: Vec<CmdqEntry> = cmds.iter().map(|c| c.encode()).collect();
    submit_raw(v, &raws);
}

fn submit_raw(v: &V, cmds: &[CmdqEntry]) {
    let log2 = 7;
    let mut prod = r32(v, off::CMDQ_PROD);
    for c in cmds {
        let idx = u64::from(prod & ((1 << log2) - 1));
        v.mem.put(CMDQ + 16 * idx, &c.0);
        prod = (prod + 1) & ((2 << log2) - 1);
    }
    w32(v, off::CMDQ_PROD, prod);
}

fn guest_events(v: &V) -> Vec<EventRecord> {
    let prod = r32(v, off::PAGE_SIZE + off::EVENTQ_PROD);
    let mut cons = r32(v, off::PAGE_SIZE + off::EVENTQ_CONS);
    let mut out = Vec::new();
    while (cons & 0xf) != (prod & 0xf) {
        let at = EVTQ + 32 * u64::from(cons & 7);
        let e = EvtqEntry(core::array::from_fn(|i| v.mem.get(at + 8 * i as u64)));
        out.push(EventRecord::decode(&e));
        cons = (cons & regs::OVF) | ((cons + 1) & 0xf);
    }
    v.write(P1 + off::EVENTQ_CONS as u64, 4, u64::from(cons));
    out
}

#[test]
fn id_registers_offer_stage1_only() {
    let v = vsmmu(cfg());
    let idr0 = r32(&v, off::IDR0);
    assert_eq!(idr0 & 3, 0b10, "S1P without S2P");
    assert_eq!((idr0 >> 2) & 3, 0b10, "AArch64 tables");
    assert_eq!((idr0 >> 27) & 3, 1, "2-level stream tables");
    assert_eq!((idr0 >> 24) & 3, 1, "terminate only: no stall");
    assert_eq!((idr0 >> 21) & 3, 2, "little endian");
    for (bit, name) in [
        (5, "BTM"),
        (9, "HYP"),
        (10, "ATS"),
        (13, "MSI"),
        (14, "SEV"),
        (16, "PRI"),
        (18, "VMID16"),
    ] {
        assert_eq!(idr0 >> bit & 1, 0, "{name} not offered");
    }
    assert_eq!((idr0 >> 6) & 3, 0, "no HTTU");
    let idr1 = r32(&v, off::IDR1);
    assert_eq!(idr1 & 0x3f, 10, "SIDSIZE");
    assert_eq!((idr1 >> 21) & 0x1f, 7, "CMDQS");
    assert_eq!((idr1 >> 16) & 0x1f, 3, "EVENTQS");
    assert_eq!((idr1 >> 11) & 0x1f, 0, "PRIQS");
    assert_eq!(idr1 >> 26, 0, "no REL, presets, ECMDQ, attribute overrides");
    assert_eq!(r32(&v, off::IDR5) & 7, 2, "OAS = the guest's 40-bit IPA");
    // The library's own decoder accepts it.
    let f = Features::decode(v.idregs());
    f.check().unwrap();
    assert!(f.stage1 && !f.stage2 && f.two_level_strtab());
}

#[test]
fn reset_values() {
    let v = vsmmu(cfg());
    for o in [
        off::CR0,
        off::CR0ACK,
        off::CR1,
        off::CR2,
        off::IRQ_CTRL,
        off::IRQ_CTRLACK,
        off::GERROR,
        off::GERRORN,
        off::STRTAB_BASE_CFG,
        off::CMDQ_PROD,
        off::CMDQ_CONS,
        off::STATUSR,
    ] {
        assert_eq!(r32(&v, o), 0, "offset {o:#x}");
    }
    for o in [off::STRTAB_BASE, off::CMDQ_BASE, off::EVENTQ_BASE] {
        assert_eq!(v.read(o as u64, 8), 0);
    }
    assert_eq!(v.read(P1 + off::EVENTQ_PROD as u64, 4), 0);
    assert_eq!(r32(&v, off::GBPA), 0x0010_1000, "ABORT, SHCFG incoming");
    let bypass = vsmmu(VSmmuConfig {
        gbpa_abort: false,
        ..cfg()
    });
    assert_eq!(r32(&bypass, off::GBPA), 0x1000);
    assert_eq!(v.stats().unknown_reads, 0);
}

#[test]
fn control_registers_mask_and_acknowledge_at_once() {
    let v = vsmmu(cfg());
    w32(&v, off::CR0, 0xffff_ffff);
    assert_eq!(r32(&v, off::CR0), 0xd, "PRIQEN, ATSCHK, VMW are RES0");
    assert_eq!(r32(&v, off::CR0ACK), 0xd);
    w32(&v, off::CR0, 0);
    w32(&v, off::IRQ_CTRL, 0xffff_ffff);
    assert_eq!(r32(&v, off::IRQ_CTRLACK), 0x5, "no PRIQ_IRQEN");
    w32(&v, off::CR1, 0xffff_ffff);
    assert_eq!(r32(&v, off::CR1), 0xfff);
    w32(&v, off::CR2, 0xffff_ffff);
    assert_eq!(r32(&v, off::CR2), 0x6, "no E2H, no REC_CFG_ATS");
    // Read-only registers ignore writes.
    w32(&v, off::IDR0, 0);
    w32(&v, off::CR0ACK, 1);
    w32(&v, off::GERROR, 1);
    assert_ne!(r32(&v, off::IDR0), 0);
    assert_eq!(r32(&v, off::CR0ACK), 0);
    assert_eq!(r32(&v, off::GERROR), 0);
    assert_eq!(v.stats().unknown_writes, 0);
}

#[test]
fn gbpa_update_handshake() {
    let v = vsmmu(cfg());
    // Without UPDATE nothing changes.
    w32(&v, off::GBPA, 0);
    assert_eq!(r32(&v, off::GBPA), 0x0010_1000);
    // With UPDATE the fields change and UPDATE reads back 0 at once; reserved bits stay 0.
    w32(&v, off::GBPA, 0x8000_0000 | 0x4000_2000 | 0x3_3f1f);
    assert_eq!(r32(&v, off::GBPA), 0x3_3f1f | 0x2000 & 0x3000);
    assert_eq!(r32(&v, off::GBPA) & 0x8000_0000, 0);
    // With the SMMU off, ABORT reaches every vDEVICE: 0 → stage-2 only, 1 → abort.
    w32(&v, off::GBPA, 0x8000_0000);
    let a = v.backend.attached.borrow().clone();
    assert_eq!(a.len(), DEVS.len());
    assert!(a.iter().all(|&(_, s)| s == GUEST_STE_BYPASS));
    w32(&v, off::GBPA, 0x8010_0000);
    let a = v.backend.attached.borrow().clone();
    assert!(a[DEVS.len()..].iter().all(|&(_, s)| s == GUEST_STE_ABORT));
}

#[test]
fn sixty_four_bit_registers_and_their_halves() {
    let v = vsmmu(cfg());
    w64(&v, off::STRTAB_BASE, u64::MAX);
    // RA, ADDR[39:6] (40-bit IPA); everything else RES0.
    assert_eq!(
        v.read(off::STRTAB_BASE as u64, 8),
        (1 << 62) | 0xff_ffff_ffc0
    );
    w32(&v, off::STRTAB_BASE, 0x1234_5678);
    w32(&v, off::STRTAB_BASE + 4, 0x8);
    assert_eq!(v.read(off::STRTAB_BASE as u64, 8), 0x8_1234_5640);
    assert_eq!(r32(&v, off::STRTAB_BASE + 4), 0x8);
    w64(&v, off::CMDQ_BASE, u64::MAX);
    assert_eq!(v.read(off::CMDQ_BASE as u64, 8), (1 << 62) | 0xff_ffff_ffff);
    w32(&v, off::STRTAB_BASE_CFG, u32::MAX);
    assert_eq!(r32(&v, off::STRTAB_BASE_CFG), 0x3_07ff);
    // Guarded: STRTAB_* ignore writes while SMMUEN, CMDQ_BASE while CMDQEN.
    w32(&v, off::CR0, 0x9);
    w64(&v, off::STRTAB_BASE, 0);
    w32(&v, off::STRTAB_BASE_CFG, 0);
    w64(&v, off::CMDQ_BASE, 0);
    assert_ne!(v.read(off::STRTAB_BASE as u64, 8), 0);
    assert_ne!(r32(&v, off::STRTAB_BASE_CFG), 0);
    assert_ne!(v.read(off::CMDQ_BASE as u64, 8), 0);
    assert_eq!(v.stats().guarded_writes, 5, "counted per 32-bit half");
}

#[test]
fn unknown_offsets_and_sizes_are_raz_wi_and_counted() {
    let v = vsmmu(cfg());
    for o in [0x30u64, 0x4c, 0x200, 0x8000, P1, P1 + 0xa0, P1 + 0x200] {
        v.write(o, 4, 0xffff_ffff);
        assert_eq!(v.read(o, 4), 0, "{o:#x}");
    }
    let s = v.stats();
    assert_eq!((s.unknown_reads, s.unknown_writes), (7, 7));
    // Known but unimplemented: IRQ_CFG (no MSI), PRI queue, ID registers.
    for o in [
        off::GERROR_IRQ_CFG0,
        off::EVENTQ_IRQ_CFG2,
        off::PRIQ_BASE,
        off::PIDR0,
    ] {
        w32(&v, o, 0xffff_ffff);
        assert_eq!(r32(&v, o), 0);
    }
    assert_eq!(v.stats().unknown_reads, 7);
    // Sizes other than 4 and 8, misaligned, beyond the window.
    v.write(off::CR0 as u64, 2, 1);
    v.write(off::CR0 as u64 + 1, 4, 1);
    v.write(off::CR0 as u64 + 4, 8, 1);
    v.write(WINDOW_BYTES, 4, 1);
    v.write(u64::MAX - 3, 4, 1);
    assert_eq!(v.read(off::CR0 as u64, 1), 0);
    assert_eq!(r32(&v, off::CR0), 0);
    assert_eq!(v.stats().bad_accesses, 6);
}

#[test]
fn linux_probe_sequence_and_startup_commands() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    assert_eq!(
        r32(&v, off::CMDQ_CONS),
        3,
        "CFGI_ALL, TLBI_NSNH_ALL, CMD_SYNC consumed"
    );
    assert_eq!(v.backend.tlbis(), vec![Command::TlbiNhAll { vmid: VMID }]);
    let s = v.stats();
    assert_eq!(
        (s.unknown_reads, s.unknown_writes, s.bad_accesses),
        (0, 0, 0)
    );
    assert_eq!(s.syncs, 1);
    // SMMUEN 0 → 1 gave every vDEVICE its (all-zero, V = 0) guest STE: abort.
    let a = v.backend.attached.borrow().clone();
    assert_eq!(&a[a.len() - 3..], &DEVS.map(|d| (d.0, [0, 0]))[..]);
}

#[test]
fn cfgi_ste_installs_refuses_and_faults() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    v.backend.attached.borrow_mut().clear();
    let s1 = [1 | (5 << 1) | 0x5000_0000, 0];
    v.mem.put(STRTAB + 64 * 0x8, &s1);
    // Config = 6 (stage 2 only) is not a guest's to ask for: refused.
    v.mem.put(STRTAB + 64 * 0x10, &[1 | (6 << 1), 0]);
    submit(
        &v,
        &[
            Command::CfgiSte {
                sid: StreamId(0x8),
                leaf: true,
            },
            Command::CfgiSte {
                sid: StreamId(0x10),
                leaf: true,
            },
            // Not a vDEVICE: nothing happens.
            Command::CfgiSte {
                sid: StreamId(0x9),
                leaf: true,
            },
            Command::sync(),
        ],
    );
    assert_eq!(
        *v.backend.attached.borrow(),
        vec![(0x8, s1), (0x10, GUEST_STE_ABORT)]
    );
    let ev = guest_events(&v);
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].id, ev[0].sid), (EventId::C_BAD_STE, StreamId(0x10)));
    // A table outside guest RAM: F_STE_FETCH with the address, and the stream aborts.
    w32(&v, off::CR0, 0xc);
    w64(&v, off::STRTAB_BASE, 0x10_0000);
    w32(&v, off::CR0, 0xd);
    let ev = guest_events(&v);
    assert_eq!(ev.len(), 3, "one per vDEVICE on SMMUEN");
    assert_eq!(ev[0].id, EventId::F_STE_FETCH);
    assert_eq!(ev[0].fetch_addr, 0x10_0000 + 64 * 0x8);
    assert_eq!(v.stats().ste_fetch_faults, 3);
    // StreamID 0x123 is beyond a 2^8 table: no STE, the stream aborts.
    w32(&v, off::CR0, 0xc);
    w64(&v, off::STRTAB_BASE, STRTAB);
    w32(&v, off::STRTAB_BASE_CFG, 8);
    w32(&v, off::CR0, 0xd);
    assert_eq!(v.stats().ste_missing, 1);
    assert_eq!(
        v.backend.attached.borrow().last(),
        Some(&(0x123, GUEST_STE_ABORT))
    );
}

#[test]
fn linux_abort_and_bypass_stes_need_no_sanitiser() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    v.backend.attached.borrow_mut().clear();
    // Linux's arm_smmu_make_bypass_ste: Config = bypass with SHCFG = incoming (dword 1 bits
    // [45:44]); arm_smmu_make_abort_ste: V = 1, Config = abort.
    v.mem.put(STRTAB + 64 * 0x8, &[1 | (4 << 1), 1 << 44]);
    v.mem.put(STRTAB + 64 * 0x10, &[1, 0]);
    submit(&v, &[Command::CfgiAll, Command::sync()]);
    let a = v.backend.attached.borrow().clone();
    assert_eq!(
        a,
        vec![
            (0x8, GUEST_STE_BYPASS),
            (0x10, GUEST_STE_ABORT),
            (0x123, GUEST_STE_ABORT)
        ]
    );
    assert_eq!(v.stats().ste_refused, 0);
    assert!(guest_events(&v).is_empty());
}

#[test]
fn two_level_stream_table() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    w32(&v, off::CR0, 0xc);
    // FMT = 2-level, SPLIT = 8, LOG2SIZE = 10: four L1 descriptors.
    w32(&v, off::STRTAB_BASE_CFG, (1 << 16) | (8 << 6) | 10);
    // L1[1] → an L2 table of 256 STEs (Span 9) for StreamIDs 0x100..0x1ff.
    v.mem.put(STRTAB + 8, &[L2 | 9]);
    let s1 = [1 | (5 << 1) | 0x6000_0000, 0];
    v.mem.put(L2 + 64 * 0x23, &s1);
    v.backend.attached.borrow_mut().clear();
    w32(&v, off::CR0, 0xd);
    // 0x8 and 0x10 sit under an invalid L1[0]: missing, abort.
    assert_eq!(
        *v.backend.attached.borrow(),
        vec![(0x8, GUEST_STE_ABORT), (0x10, GUEST_STE_ABORT), (0x123, s1)]
    );
    // A reserved SPLIT: no STE anywhere.
    w32(&v, off::CR0, 0xc);
    w32(&v, off::STRTAB_BASE_CFG, (1 << 16) | (7 << 6) | 10);
    w32(&v, off::CR0, 0xd);
    assert_eq!(
        v.backend.attached.borrow().last(),
        Some(&(0x123, GUEST_STE_ABORT))
    );
    // An L1 descriptor outside RAM: F_STE_FETCH at the descriptor.
    w32(&v, off::CR0, 0xc);
    w64(&v, off::STRTAB_BASE, 0x8000_0000);
    w32(&v, off::STRTAB_BASE_CFG, (1 << 16) | (8 << 6) | 10);
    w32(&v, off::CR0, 0xd);
    let ev = guest_events(&v);
    assert!(
        ev.iter()
            .any(|e| e.id == EventId::F_STE_FETCH && e.fetch_addr == 0x8000_0008)
    );
}

#[test]
fn illegal_command_stops_the_queue_until_gerrorn() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    let before = v.backend.tlbis().len();
    let t = |asid| Command::TlbiNhAsid {
        vmid: Vmid(0),
        asid: Asid(asid),
    };
    // Slot 3: TLBI; slot 4: TLBI_S12_VMALL (a hypervisor's command); slot 5: TLBI; 6: SYNC.
    submit(
        &v,
        &[
            t(1),
            Command::TlbiS12Vmall { vmid: Vmid(9) },
            t(2),
            Command::sync(),
        ],
    );
    let cons = r32(&v, off::CMDQ_CONS);
    assert_eq!(cons & 0xff, 4, "stopped at the refused command");
    assert_eq!(cons >> 24 & 0x7f, 1, "CERROR_ILL");
    assert_eq!(r32(&v, off::GERROR) ^ r32(&v, off::GERRORN), 1, "CMDQ_ERR");
    assert_eq!(*v.mem_lines(), vec![IrqLine::Gerror]);
    let issued = v.backend.tlbis();
    assert_eq!(
        &issued[before..],
        &[Command::TlbiNhAsid {
            vmid: VMID,
            asid: Asid(1)
        }]
    );
    // More PROD writes do nothing while the error is active.
    w32(&v, off::CMDQ_PROD, r32(&v, off::CMDQ_PROD));
    assert_eq!(r32(&v, off::CMDQ_CONS), cons);
    // Linux: overwrite the slot with a CMD_SYNC, then acknowledge.
    v.mem.put(CMDQ + 16 * 4, &Command::sync().encode().0);
    w32(&v, off::GERRORN, r32(&v, off::GERROR));
    assert_eq!(r32(&v, off::CMDQ_CONS), 7, "resumed to PROD, ERR cleared");
    assert_eq!(
        &v.backend.tlbis()[before + 1..],
        &[Command::TlbiNhAsid {
            vmid: VMID,
            asid: Asid(2)
        }]
    );
    assert_eq!(v.stats().cmdq_errors, 1);
}

#[test]
fn sanitiser_refusal_inside_a_batch_stops_at_that_command() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    let before = v.backend.tlbis().len();
    let mut bad = Command::TlbiNhAll { vmid: Vmid(0) }.encode();
    bad.0[1] = 1; // a bit TLBI_NH_ALL does not define
    let cd = |sid| Command::CfgiCdAll { sid: StreamId(sid) }.encode();
    submit_raw(
        &v,
        &[cd(0x8), cd(0x10), bad, cd(0x123), Command::sync().encode()],
    );
    assert_eq!(r32(&v, off::CMDQ_CONS) & 0xff, 5, "slot 3 + 2");
    let issued = &v.backend.tlbis()[before..];
    assert_eq!(
        issued,
        &[
            Command::CfgiCdAll {
                sid: StreamId(0x108)
            },
            Command::CfgiCdAll {
                sid: StreamId(0x110)
            }
        ],
        "pSIDs, each once"
    );
    // A CFGI_CD naming a StreamID that is not the guest's is refused too.
    v.mem.put(CMDQ + 16 * 5, &cd(0x55).0);
    w32(&v, off::GERRORN, r32(&v, off::GERROR));
    assert_eq!(r32(&v, off::CMDQ_CONS) >> 24, 1);
}

#[test]
fn queue_sizes_and_prod_values_beyond_the_limits() {
    let v = vsmmu(cfg());
    // LOG2SIZE 31 asks for more than IDR1.CMDQS = 7: the queue is 128 entries.
    w64(&v, off::CMDQ_BASE, CMDQ | 31);
    w32(&v, off::CMDQ_PROD, u32::MAX);
    assert_eq!(
        r32(&v, off::CMDQ_PROD),
        0xff,
        "index and wrap of 2^7 entries only"
    );
    // Fill the whole queue with PREFETCH_CONFIG; PROD (0xff) is 255 entries ahead of CONS (0)
    // in a 128-entry queue, which cannot happen: enabling the queue consumes one queue's worth
    // and no more.
    for i in 0..128u64 {
        v.mem.put(
            CMDQ + 16 * i,
            &Command::PrefetchConfig {
                sid: StreamId(8),
                ssid: None,
            }
            .encode()
            .0,
        );
    }
    w32(&v, off::CMDQ_CONS, 0);
    w32(&v, off::CR0, 0x8);
    assert_eq!(r32(&v, off::CMDQ_CONS), 0x80, "one queue's worth, no more");
    assert_eq!(v.stats().commands, 128);
    w32(&v, off::CMDQ_PROD, 0x80);
    assert_eq!(v.stats().commands, 128, "PROD = CONS: empty");
    // An event queue larger than advertised is capped as well.
    w64(&v, off::EVENTQ_BASE, EVTQ | 19);
    v.write(P1 + off::EVENTQ_PROD as u64, 4, 0xffff_ffff);
    assert_eq!(v.read(P1 + off::EVENTQ_PROD as u64, 4), 0x8000_000f);
    // A command queue outside guest RAM: CERROR_ABT.
    w32(&v, off::CR0, 0);
    w64(&v, off::CMDQ_BASE, 0x10_0000 | 7);
    w32(&v, off::CMDQ_CONS, 0);
    w32(&v, off::CMDQ_PROD, 0);
    w32(&v, off::CR0, 0x8);
    w32(&v, off::CMDQ_PROD, 1);
    assert_eq!(r32(&v, off::CMDQ_CONS) >> 24, 2, "CERROR_ABT");
}

#[test]
fn cmd_sync_with_cs_irq_raises_cmdq_sync() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    v.mem_lines().clear();
    submit(
        &v,
        &[Command::Sync {
            cs: SyncCs::Irq,
            msh: 0,
            msi_attr: 0,
            msi_data: 0,
            msi_addr: PhysAddr(0),
        }],
    );
    assert_eq!(*v.mem_lines(), vec![IrqLine::CmdqSync]);
}

#[test]
fn events_are_delivered_and_every_loss_shows_as_ovflg() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    v.mem_lines().clear();
    let rec = |i: u64| {
        EventRecord::translation_fault(StreamId(0x8), crate::ids::Iova(0x1000 * i), false, true)
            .encode()
    };
    for i in 0..3 {
        v.backend.queue_event(i as u32, rec(i));
    }
    let d = v.deliver_events();
    assert_eq!((d.written, d.lost, d.deferred), (3, 0, false));
    assert_eq!(*v.mem_lines(), vec![IrqLine::Eventq]);
    let ev = guest_events(&v);
    assert_eq!(ev.len(), 3);
    assert_eq!(ev[2].input_addr, 0x2000);
    assert_eq!(ev[0].sid, StreamId(0x8));
    let prod = |v: &V| r32(v, off::PAGE_SIZE + off::EVENTQ_PROD);
    assert_eq!(prod(&v) >> 31, 0);

    // A flood: 12 records into an 8-entry queue → 8 written, 4 lost, OVFLG toggled once.
    for i in 3..15 {
        v.backend.queue_event(i as u32, rec(i));
    }
    // Delivered on the guest's read of EVENTQ_PROD.
    assert_eq!(prod(&v) >> 31, 1, "OVFLG");
    let s = v.stats();
    assert_eq!((s.events_written, s.events_lost, s.overflows), (11, 4, 1));
    assert_eq!(guest_events(&v).len(), 8);
    // The guest acknowledges (OVACKFLG = OVFLG); a LOST_EVENTS marker toggles it again.
    let cons = r32(&v, off::PAGE_SIZE + off::EVENTQ_CONS);
    v.write(P1 + off::EVENTQ_CONS as u64, 4, u64::from(cons | regs::OVF));
    v.backend.queue_lost(15);
    v.backend.queue_event(16, rec(16));
    v.deliver_events();
    assert_eq!(prod(&v) >> 31, 0, "toggled back: a new overflow");
    assert_eq!(guest_events(&v).len(), 1);
    // A sequence gap (17 missing) is a loss too.
    let cons = r32(&v, off::PAGE_SIZE + off::EVENTQ_CONS);
    v.write(
        P1 + off::EVENTQ_CONS as u64,
        4,
        u64::from(cons & !regs::OVF),
    );
    v.backend.queue_event(18, rec(18));
    v.deliver_events();
    assert_eq!(prod(&v) >> 31, 1);
    assert_eq!(v.stats().overflows, 3);
}

#[test]
fn disabled_event_queue_discards_and_abort_raises_gerror() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    w32(&v, off::CR0, 0x9);
    v.backend
        .queue_event(0, EventRecord::bad_ste(StreamId(8)).encode());
    assert_eq!(v.deliver_events().discarded, 1);
    // An event queue outside guest RAM: GERROR.EVENTQ_ABT_ERR and the gerror line.
    w64(&v, off::EVENTQ_BASE, 0x10_0000 | 3);
    w32(&v, off::CR0, 0xd);
    v.mem_lines().clear();
    v.backend
        .queue_event(1, EventRecord::bad_ste(StreamId(8)).encode());
    v.backend
        .queue_event(2, EventRecord::bad_ste(StreamId(8)).encode());
    let d = v.deliver_events();
    assert_eq!(d.lost, 2);
    assert_eq!(r32(&v, off::GERROR) ^ r32(&v, off::GERRORN), 1 << 2);
    assert_eq!(*v.mem_lines(), vec![IrqLine::Gerror]);
}

#[test]
fn delivery_from_the_irq_path_never_waits_for_a_trapped_access() {
    let v = vsmmu(cfg());
    linux_reset(&v);
    v.backend
        .queue_event(0, EventRecord::bad_ste(StreamId(8)).encode());
    let held = v.state.lock();
    let d = v.deliver_events();
    assert!(d.deferred);
    v.unlock(held);
    // The holder ran the delivery when it let go.
    assert_eq!(v.stats().events_written, 1);
    assert!(!v.pending.load(Ordering::SeqCst));
}

/// A size outside the ranges of [`VSmmuConfig`] names the quantity, the value and the limit.
#[test]
fn new_names_the_size_it_refuses() {
    let new = |cfg| VSmmu::new(cfg, Rec::default(), Ram::new(), Lines::default()).err();
    let out = |what, value, max| Some(Error::OutOfRange { what, value, max });
    let small = |what, value, min| Some(Error::TooSmall { what, value, min });
    use crate::error::Quantity::{AddressBits, QueueLog2, StreamIdBits};
    let cases = [
        (
            VSmmuConfig {
                sid_bits: 0,
                ..cfg()
            },
            small(StreamIdBits, 0, 1),
        ),
        (
            VSmmuConfig {
                sid_bits: 33,
                ..cfg()
            },
            out(StreamIdBits, 33, 32),
        ),
        (
            VSmmuConfig {
                cmdq_log2: 20,
                ..cfg()
            },
            out(QueueLog2, 20, 19),
        ),
        (
            VSmmuConfig {
                evtq_log2: 0,
                ..cfg()
            },
            small(QueueLog2, 0, 1),
        ),
        (
            VSmmuConfig {
                ipa_bits: 31,
                ..cfg()
            },
            small(AddressBits, 31, 32),
        ),
        (
            VSmmuConfig {
                ipa_bits: 53,
                ..cfg()
            },
            out(AddressBits, 53, 52),
        ),
    ];
    for (c, want) in cases {
        assert_eq!(new(c), want);
        assert_eq!(want.map(Error::errno), Some(-22));
    }
}

/// The register masks by bit position (IHI 0070 §6.3), written out rather than taken from the
/// field definitions they are built from.
#[test]
fn register_masks_by_position() {
    assert_eq!(regs::CR1_IMPL, 0xfff);
    assert_eq!(regs::STRTAB_CFG_IMPL, 0x3_07ff);
    assert_eq!(regs::OVF, 1 << 31);
    assert_eq!((regs::CONS_ERR.shift, regs::CONS_ERR.mask), (24, 0x7f));
    assert_eq!((regs::CERROR_ILL, regs::CERROR_ABT), (1, 2));
    assert_eq!(
        regs::strtab_base_impl(u64::MAX),
        (1 << 62) | 0x00ff_ffff_ffff_ffc0
    );
    assert_eq!(regs::q_base_impl((1 << 40) - 1), (1 << 62) | 0xff_ffff_ffff);
    assert_eq!(GUEST_STE_BYPASS, [1 | (4 << 1), 0]);
}

impl V {
    fn mem_lines(&self) -> std::cell::RefMut<'_, Vec<IrqLine>> {
        self.irq.0.borrow_mut()
    }
}
