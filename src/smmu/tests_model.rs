//! The driver against the software SMMUv3 model (`fake::FakeSmmu`).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::*;
use crate::command::Command;
use crate::error::{CmdqError, Error, WaitFor};
use crate::event::{EventId, EventRecord, EvtqEntry};
use crate::fake::{
    AckBehaviour, AckReg, CmdqFault, DmaOutcome, FakePlatform, FakeSmmu, HostSink, ModelDma,
    OverflowStyle,
};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Iova, PhysAddr, StreamId, Vmid};
use crate::platform::{MmioAccess, Platform};
use crate::pri::{PageRequest, PriqEntry};
use crate::regs::offset;
use crate::ste::{Granule, S2Config, Ste, StreamTableLayout};

/// One MMIO access: page (0/1), offset, write.
pub(crate) type Access = (u8, usize, bool);

/// The model's platform, plus a log of every MMIO access in order.
#[derive(Clone)]
pub(crate) struct LogPlatform {
    inner: FakePlatform,
    p0: usize,
    p1: usize,
    pub(crate) log: Arc<Mutex<Vec<Access>>>,
}

impl Platform for LogPlatform {
    fn now_us(&self) -> u64 {
        self.inner.now_us()
    }
    fn relax(&self, what: WaitFor) {
        self.inner.relax(what);
    }
    fn wait_for_event(&self, what: WaitFor) {
        self.inner.wait_for_event(what);
    }
    fn mmio(&self, addr: usize, access: MmioAccess) {
        let entry = if (self.p1..self.p1 + 0x10000).contains(&addr) {
            (1, addr - self.p1, access == MmioAccess::Write)
        } else {
            (0, addr.wrapping_sub(self.p0), access == MmioAccess::Write)
        };
        self.log.lock().unwrap().push(entry);
        self.inner.mmio(addr, access);
    }
}

pub(crate) type Drv = Smmu<LogPlatform, ModelDma>;

pub(crate) struct Rig {
    pub(crate) m: Arc<FakeSmmu>,
    pub(crate) d: Drv,
    pub(crate) log: Arc<Mutex<Vec<Access>>>,
}

impl Rig {
    pub(crate) fn new(ids: IdRegs, config: Config) -> Result<Self, Error> {
        let m = FakeSmmu::new(ids);
        let log = Arc::new(Mutex::new(Vec::new()));
        let plat = LogPlatform {
            inner: m.platform(),
            p0: m.page0_ptr().as_ptr() as usize,
            p1: m.page1_ptr().as_ptr() as usize,
            log: log.clone(),
        };
        // SAFETY: the model's pages live as long as `m`, which the rig keeps; nothing else
        // drives them.
        let d = unsafe { Smmu::new(m.page0(), m.page1(), plat, m.lend_dma(), config) }?;
        Ok(Self { m, d, log })
    }

    pub(crate) fn qemu(config: Config) -> Self {
        let r = Self::new(QEMU_VIRT, config).unwrap();
        r.d.reset().unwrap();
        r
    }

    pub(crate) fn take_log(&self) -> Vec<Access> {
        core::mem::take(&mut *self.log.lock().unwrap())
    }
}

fn with_idr0(bits: u32) -> IdRegs {
    IdRegs {
        idr0: QEMU_VIRT.idr0 | bits,
        ..QEMU_VIRT
    }
}

const IDR0_MSI: u32 = 1 << 13;
const IDR0_SEV: u32 = 1 << 14;
const IDR0_PRI: u32 = 1 << 16;
const IDR0_HYP: u32 = 1 << 9;

fn s2(vmid: u16, ttb: u64) -> Ste {
    let cfg = S2Config::for_ipa_bits(Vmid(vmid), PhysAddr(ttb), 40, Granule::Size4K).unwrap();
    Ste::stage2(&cfg)
}

fn evt(sid: u32, iova: u64) -> EvtqEntry {
    EventRecord::translation_fault(StreamId(sid), Iova(iova), true, false).encode()
}

// ----- reset -----

#[test]
fn reset_follows_the_linux_order_and_waits_for_every_ack() {
    let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
    r.take_log();
    r.d.reset().unwrap();
    let log = r.take_log();
    let w = |o: usize| (0u8, o, true);
    let rd = |o: usize| (0u8, o, false);
    // The writes in order (page 0 unless noted), reads left out.
    let writes: Vec<Access> = log.iter().copied().filter(|a| a.2).collect();
    let expected = [
        w(offset::CR0),
        w(offset::CR1),
        w(offset::CR2),
        w(offset::STRTAB_BASE),
        w(offset::STRTAB_BASE_CFG),
        w(offset::CMDQ_BASE),
        w(offset::CMDQ_PROD),
        w(offset::CMDQ_CONS),
        w(offset::CR0),
        w(offset::CMDQ_PROD),
        w(offset::EVENTQ_BASE),
        (1, offset::EVENTQ_PROD, true),
        (1, offset::EVENTQ_CONS, true),
        w(offset::CR0),
        w(offset::IRQ_CTRL),
        w(offset::IRQ_CTRL),
        w(offset::CR0),
    ];
    assert_eq!(writes, expected);
    // Every CR0 / IRQ_CTRL write is followed by a read of its ACK before the next write.
    for (i, a) in log.iter().enumerate() {
        let ack = match *a {
            (0, o, true) if o == offset::CR0 => offset::CR0ACK,
            (0, o, true) if o == offset::IRQ_CTRL => offset::IRQ_CTRLACK,
            _ => continue,
        };
        assert_eq!(
            log[i + 1],
            rd(ack),
            "write {a:?} not followed by its ACK poll"
        );
    }
    // SMMUEN was off: GBPA left alone.
    assert!(!log.iter().any(|a| a.1 == offset::GBPA && a.0 == 0));
    assert_eq!(r.m.cr0(), 0b1101);
    assert_eq!(r.m.irq_ctrl(), 0b101);
    assert_eq!(
        r.m.take_commands(),
        [Command::CfgiAll, Command::TlbiNsnhAll, Command::sync()]
    );
    assert!(r.d.is_ready());
}

#[test]
fn reset_with_hyp_invalidates_el2_and_second_reset_aborts_through_gbpa() {
    let r = Rig::new(with_idr0(IDR0_HYP), Config::default()).unwrap();
    r.d.reset().unwrap();
    assert_eq!(
        r.m.take_commands(),
        [
            Command::CfgiAll,
            Command::TlbiEl2All,
            Command::TlbiNsnhAll,
            Command::sync()
        ]
    );
    r.take_log();
    r.d.reset().unwrap();
    let log = r.take_log();
    // SMMUEN was on: GBPA.ABORT through UPDATE first, before CR0 = 0.
    let gbpa_w = log
        .iter()
        .position(|a| *a == (0, offset::GBPA, true))
        .unwrap();
    let cr0_w = log
        .iter()
        .position(|a| *a == (0, offset::CR0, true))
        .unwrap();
    assert!(gbpa_w < cr0_w);
    assert_eq!(log[gbpa_w - 1], (0, offset::GBPA, false));
    assert_eq!(log[gbpa_w + 1], (0, offset::GBPA, false));
    assert_ne!(r.m.gbpa() & (1 << 20), 0, "GBPA.ABORT set");
    assert_eq!(r.m.gbpa() & (1 << 31), 0, "UPDATE completed");
}

#[test]
fn late_acks_are_waited_for_and_missing_acks_time_out() {
    let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
    r.m.set_ack(AckReg::Cr0, AckBehaviour::AfterPolls(5));
    r.m.set_ack(AckReg::IrqCtrl, AckBehaviour::AfterPolls(3));
    r.d.reset().unwrap();

    for (reg, what) in [
        (AckReg::Cr0, WaitFor::Cr0Ack),
        (AckReg::IrqCtrl, WaitFor::IrqCtrlAck),
    ] {
        let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
        r.m.set_relax_step_us(1000);
        r.m.set_ack(reg, AckBehaviour::Never);
        let t0 = r.m.now_us();
        assert_eq!(r.d.reset(), Err(Error::Timeout(what)));
        let waited = r.m.now_us() - t0;
        assert!((1_000_000..1_010_000).contains(&waited), "waited {waited}");
    }

    // GBPA is only used when SMMUEN was on: second reset.
    let r = Rig::qemu(Config {
        timeout_us: 5_000,
        ..Config::default()
    });
    r.m.set_ack(AckReg::Gbpa, AckBehaviour::Never);
    assert_eq!(r.d.reset(), Err(Error::Timeout(WaitFor::GbpaUpdate)));
}

#[test]
fn probe_refuses_what_it_cannot_drive() {
    let no_aarch64 = IdRegs {
        idr0: QEMU_VIRT.idr0 & !(0b11 << 2) | (1 << 2),
        ..QEMU_VIRT
    };
    assert_eq!(
        Rig::new(no_aarch64, Config::default()).err(),
        Some(Error::Unsupported(Feature::Aarch64Tables))
    );
    let need_more_sids = Config {
        sid_bits: Some(20),
        ..Config::default()
    };
    assert_eq!(
        Rig::new(QEMU_VIRT, need_more_sids).err(),
        Some(Error::Unsupported(Feature::StreamIdBits))
    );
    let big_evtq = Config {
        evtq_log2: Some(20),
        ..Config::default()
    };
    assert_eq!(
        Rig::new(QEMU_VIRT, big_evtq).err(),
        Some(Error::InvalidArgument)
    );
    let msi = Config {
        sync: SyncMode::Msi,
        ..Config::default()
    };
    assert_eq!(
        Rig::new(QEMU_VIRT, msi).err(),
        Some(Error::Unsupported(Feature::Msi))
    );
    let sev = Config {
        sync: SyncMode::Sev,
        ..Config::default()
    };
    assert_eq!(
        Rig::new(QEMU_VIRT, sev).err(),
        Some(Error::Unsupported(Feature::Sev))
    );
    // Before reset, the command queue is off.
    let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
    assert_eq!(r.d.submit(&[]), Err(Error::Disabled));
}

// ----- command queue -----

#[test]
fn a_batch_is_one_prod_write_and_one_sync() {
    let r = Rig::qemu(Config::default());
    r.m.take_commands();
    let cmds: Vec<Command> = (0..16)
        .map(|v| Command::TlbiS12Vmall { vmid: Vmid(v) })
        .collect();
    r.m.reset_mmio_counts();
    r.d.submit(&cmds).unwrap();
    let c = r.m.mmio_counts();
    assert_eq!(c.writes("CMDQ_PROD"), 1);
    assert_eq!(c.reads("CMDQ_CONS"), 1);
    assert_eq!(c.total(), 2);
    let mut want = cmds.clone();
    want.push(Command::sync());
    assert_eq!(r.m.take_commands(), want);
}

#[test]
fn batches_larger_than_the_queue_are_split_with_one_sync_at_the_end() {
    let r = Rig::qemu(Config {
        cmdq_log2: Some(3),
        ..Config::default()
    });
    r.m.take_commands();
    let cmds: Vec<Command> = (0..50)
        .map(|v| Command::TlbiS12Vmall { vmid: Vmid(v) })
        .collect();
    r.d.submit(&cmds).unwrap();
    let mut want = cmds.clone();
    want.push(Command::sync());
    assert_eq!(r.m.take_commands(), want);
    // A batch builder flushes at its capacity.
    let mut b = CmdBatch::<4>::new();
    for v in 0..10 {
        b.push(&r.d, Command::TlbiS12Vmall { vmid: Vmid(v) })
            .unwrap();
    }
    b.flush(&r.d).unwrap();
    let got = r.m.take_commands();
    assert_eq!(got.iter().filter(|c| **c == Command::sync()).count(), 3);
    assert_eq!(got.len(), 13);
}

#[test]
fn a_sync_that_never_completes_times_out_and_the_queue_recovers() {
    let r = Rig::qemu(Config {
        timeout_us: 10_000,
        ..Config::default()
    });
    r.m.set_sync_stall(true);
    let t0 = r.m.now_us();
    assert_eq!(
        r.d.submit(&[Command::TlbiNsnhAll]),
        Err(Error::Timeout(WaitFor::CmdSync))
    );
    let waited = r.m.now_us() - t0;
    assert!((10_000..10_100).contains(&waited), "waited {waited}");
    assert_eq!(r.d.cmdq_counters().sync_timeouts, 1);
    r.m.set_sync_stall(false);
    r.d.submit(&[Command::TlbiNsnhAll]).unwrap();
}

#[test]
fn illegal_command_is_reported_replaced_and_the_rest_completes() {
    let r = Rig::qemu(Config::default());
    r.m.take_commands();
    let bad = Command::TlbiS12Vmall { vmid: Vmid(7) };
    let cmds = [
        Command::TlbiS12Vmall { vmid: Vmid(1) },
        bad,
        Command::TlbiS12Vmall { vmid: Vmid(3) },
    ];
    r.m.inject_cmdq_error(1, CmdqFault::Illegal);
    assert_eq!(
        r.d.submit(&cmds),
        Err(Error::Cmdq(CmdqError::Illegal(bad.encode().0)))
    );
    // The bad slot ran as a CMD_SYNC, the others ran, the error is acknowledged.
    assert_eq!(
        r.m.take_commands(),
        [cmds[0], Command::sync(), cmds[2], Command::sync()]
    );
    assert_eq!(r.m.gerror_active(), 0);
    assert_eq!(r.d.cmdq_counters().illegal, 1);
    // Later commands complete normally even though QEMU-like CONS keeps ERR set.
    r.d.submit(&[Command::TlbiNsnhAll]).unwrap();
    assert_eq!(r.m.take_commands(), [Command::TlbiNsnhAll, Command::sync()]);
}

#[test]
fn abort_and_atc_inv_sync_are_acknowledged_only() {
    let r = Rig::qemu(Config::default());
    r.m.take_commands();
    r.m.inject_cmdq_error(1, CmdqFault::Abort);
    let cmds = [Command::TlbiNsnhAll, Command::CfgiAll];
    r.d.submit(&cmds).unwrap();
    assert_eq!(r.m.take_commands(), [cmds[0], cmds[1], Command::sync()]);
    assert_eq!(r.d.cmdq_counters().abort, 1);
    assert_eq!(r.m.gerror_active(), 0);

    r.m.inject_cmdq_error(0, CmdqFault::AtcInvSync);
    let atc = Command::AtcInv {
        sid: StreamId(3),
        ssid: None,
        global: false,
        addr: 0,
        size: crate::command::ATC_INV_SIZE_ALL,
    };
    r.d.submit(&[atc]).unwrap();
    assert_eq!(r.m.take_commands(), [atc, Command::sync()]);
    assert_eq!(r.d.cmdq_counters().atc_inv_sync, 1);
    assert_eq!(r.m.gerror_active(), 0);
}

#[test]
fn tegra264_quirk_repeats_cfgi_and_tlbi_but_not_atc_inv() {
    let r = Rig::qemu(Config {
        quirks: Quirks::REPEAT_CFGI_TLBI,
        ..Config::default()
    });
    r.m.take_commands();
    let atc = Command::AtcInv {
        sid: StreamId(3),
        ssid: None,
        global: false,
        addr: 0,
        size: 0,
    };
    let cfgi = Command::CfgiSte {
        sid: StreamId(3),
        leaf: true,
    };
    r.d.submit(&[cfgi, atc, Command::TlbiNsnhAll]).unwrap();
    assert_eq!(
        r.m.take_commands(),
        [
            cfgi,
            atc,
            Command::TlbiNsnhAll,
            Command::sync(),
            cfgi,
            Command::TlbiNsnhAll,
            Command::sync()
        ]
    );
    // A batch without CFGI/TLBI is not repeated.
    r.d.submit(&[atc]).unwrap();
    assert_eq!(r.m.take_commands(), [atc, Command::sync()]);
}

#[test]
fn msi_sync_mode_polls_memory_with_no_cons_read() {
    let r = Rig::new(with_idr0(IDR0_MSI), Config::default()).unwrap();
    assert_eq!(r.d.completion(), Completion::Msi);
    r.d.reset().unwrap();
    r.m.take_commands();
    let before = r.m.irq_counts().msi_writes;
    r.m.reset_mmio_counts();
    r.d.submit(&[Command::TlbiNsnhAll]).unwrap();
    let c = r.m.mmio_counts();
    assert_eq!(c.reads("CMDQ_CONS"), 0);
    assert_eq!(c.total(), 1, "only the PROD write");
    assert_eq!(r.m.irq_counts().msi_writes, before + 1);
    let got = r.m.take_commands();
    assert!(matches!(
        got[1],
        Command::Sync {
            cs: crate::command::SyncCs::Irq,
            msi_data: 0,
            ..
        }
    ));
}

#[test]
fn sev_sync_mode_waits_for_events() {
    let sev = Config {
        event_stream: true,
        ..Config::default()
    };
    let r = Rig::new(with_idr0(IDR0_SEV), sev).unwrap();
    assert_eq!(r.d.completion(), Completion::Sev);
    r.d.reset().unwrap();
    let before = r.m.irq_counts().sev;
    r.d.submit(&[Command::TlbiNsnhAll]).unwrap();
    assert_eq!(r.m.irq_counts().sev, before + 1);
    // MMU-600 erratum: SEV ignored.
    let r = Rig::new(
        with_idr0(IDR0_SEV),
        Config {
            quirks: Quirks::SKIP_SEV,
            ..sev
        },
    )
    .unwrap();
    assert_eq!(r.d.completion(), Completion::Poll);
}

#[test]
fn several_threads_submit_concurrently() {
    let r = Arc::new(Rig::qemu(Config {
        cmdq_log2: Some(4),
        ..Config::default()
    }));
    r.m.take_commands();
    let threads: Vec<_> = (0..4u16)
        .map(|t| {
            let r = r.clone();
            std::thread::spawn(move || {
                for i in 0..50u16 {
                    let cmds: Vec<Command> = (0..(i % 7 + 1))
                        .map(|_| Command::TlbiS12Vmall { vmid: Vmid(t) })
                        .collect();
                    r.d.submit(&cmds).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let got = r.m.take_commands();
    assert_eq!(got.iter().filter(|c| **c == Command::sync()).count(), 200);
    for t in 0..4u16 {
        let n = got
            .iter()
            .filter(|c| **c == Command::TlbiS12Vmall { vmid: Vmid(t) })
            .count();
        assert_eq!(n, (0..50u16).map(|i| usize::from(i % 7 + 1)).sum::<usize>());
    }
    // Batches never interleave: every sync is preceded by one thread's commands only.
    let mut cur: Option<Command> = None;
    for c in got {
        if c == Command::sync() {
            cur = None;
        } else {
            assert!(cur.is_none() || cur == Some(c), "interleaved batch");
            cur = Some(c);
        }
    }
}

// ----- stream tables -----

fn check_resolution(r: &Rig, bound: &[u32], all: core::ops::Range<u32>) {
    // Under Miri (about 100 times slower) a 65,536-StreamID sweep takes tens of minutes: check
    // every bound StreamID, its neighbours and a stride through the range instead.
    let sids: Vec<u32> = if cfg!(miri) && all.len() > 256 {
        let near = bound
            .iter()
            .flat_map(|&s| [s.wrapping_sub(1), s, s.wrapping_add(1)])
            .filter(|s| all.contains(s));
        all.clone().step_by(251).chain(near).collect()
    } else {
        all.collect()
    };
    for sid in sids {
        let out = r.m.dma_access(StreamId(sid), None, Iova(0x1000), false);
        if bound.contains(&sid) {
            assert!(
                matches!(out, DmaOutcome::Completed { .. }),
                "sid {sid:#x}: {out:?}"
            );
        } else {
            assert!(
                matches!(
                    out,
                    DmaOutcome::Aborted | DmaOutcome::Faulted(EventId::C_BAD_STREAMID)
                ),
                "sid {sid:#x}: {out:?}"
            );
        }
    }
}

#[test]
fn linear_table_resolves_bound_streams_and_aborts_the_rest() {
    let r = Rig::qemu(Config {
        sid_bits: Some(8),
        ..Config::default()
    });
    assert_eq!(r.d.strtab_layout(), StreamTableLayout::Linear { log2: 8 });
    let bound = [0, 1, 0x42, 0xff];
    for &s in &bound {
        r.d.set_ste(StreamId(s), &Ste::bypass(false)).unwrap();
    }
    check_resolution(&r, &bound, 0..256);
    assert_eq!(
        r.d.set_ste(StreamId(256), &Ste::ABORT),
        Err(Error::BadStreamId(StreamId(256)))
    );
    r.d.clear_ste(StreamId(0x42)).unwrap();
    check_resolution(&r, &[0, 1, 0xff], 0..256);
    assert!(r.m.ste_rejections().is_empty());
}

#[test]
fn two_level_table_resolves_bound_streams_and_aborts_the_rest() {
    let r = Rig::qemu(Config::default());
    assert_eq!(
        r.d.strtab_layout(),
        StreamTableLayout::TwoLevel { log2: 16, split: 8 }
    );
    let used_before = r.m.dma().used();
    let bound = [0, 0xff, 0x100, 0x1234, 0x1235, 0xffff];
    for &s in &bound {
        r.d.set_ste(StreamId(s), &Ste::bypass(false)).unwrap();
    }
    // Four level-2 tables (groups 0x00, 0x01, 0x12, 0xff) of 16 KiB.
    let grown = r.m.dma().used() - used_before;
    assert!((4 * 16384..5 * 16384).contains(&grown), "grew {grown}");
    check_resolution(&r, &bound, 0..0x1_0000);
    assert_eq!(r.d.ste(StreamId(0x5000)).unwrap(), Ste::INVALID);
    assert_eq!(r.d.ste(StreamId(0x1236)).unwrap(), Ste::ABORT);
    assert_eq!(r.d.ste(StreamId(0x1235)).unwrap(), Ste::bypass(false));
    // Clearing a StreamID without a level-2 table is a no-op.
    r.d.clear_ste(StreamId(0x7777)).unwrap();
    assert_eq!(
        r.d.ste(StreamId(0x1_0000)),
        Err(Error::BadStreamId(StreamId(0x1_0000)))
    );
}

#[test]
fn bindings_made_before_reset_survive_it() {
    let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
    r.d.set_ste(StreamId(9), &Ste::bypass(false)).unwrap();
    r.d.reset().unwrap();
    check_resolution(&r, &[9], 0..32);
}

fn used_view(s: &Ste) -> [u64; 8] {
    let u = s.used_bits();
    core::array::from_fn(|i| s.0[i] & u[i])
}

/// Replaces the STE of `sid` through `seq` while the model snapshots every state; each
/// snapshot must be invalid (V = 0) or use exactly the bits of one of the targets.
fn replace_and_check(r: &Rig, sid: StreamId, seq: &[Ste]) {
    r.m.watch_ste(sid);
    let mut seen = vec![used_view(&r.d.ste(sid).unwrap())];
    for s in seq {
        r.d.set_ste(sid, s).unwrap();
        seen.push(used_view(s));
        assert_eq!(r.d.ste(sid).unwrap(), *s);
        assert_eq!(r.m.cached_ste(sid), None, "cache invalidated");
    }
    let snaps = r.m.ste_snapshots(sid);
    assert!(snaps.len() > seq.len());
    for snap in snaps {
        let ste = snap.ste;
        assert!(
            !ste.valid() || seen.contains(&used_view(&ste)),
            "half-written STE visible: {ste:x?}"
        );
    }
    assert!(r.m.ste_rejections().is_empty());
}

#[test]
fn ste_replacement_never_exposes_a_half_written_entry() {
    let r = Rig::qemu(Config::default());
    let sid = StreamId(0x0105);
    r.d.set_ste(sid, &Ste::ABORT).unwrap();
    replace_and_check(
        &r,
        sid,
        &[
            Ste::bypass(false),
            s2(5, 0x9000_0000),
            s2(6, 0x9000_0000), // one qword (VMID): hitless
            s2(6, 0x9100_0000), // one qword (S2TTB): hitless
            s2(7, 0x9200_0000), // two qwords: breaking
            Ste::ABORT,
        ],
    );
}

#[test]
fn ste_update_step_counts_follow_the_used_bits() {
    let r = Rig::qemu(Config::default());
    let sid = StreamId(0x20);
    let cfgi = |r: &Rig| {
        r.m.take_commands()
            .iter()
            .filter(|c| matches!(c, Command::CfgiSte { leaf: true, .. }))
            .count()
    };
    r.d.set_ste(sid, &Ste::bypass(false)).unwrap(); // allocates the level-2 table
    r.m.take_commands();
    r.d.set_ste(sid, &s2(5, 0x9000_0000)).unwrap();
    assert_eq!(cfgi(&r), 2, "hitless: unused qwords 2-3, then qword 0");
    r.d.set_ste(sid, &s2(6, 0x9000_0000)).unwrap();
    assert_eq!(cfgi(&r), 1, "hitless: only the critical qword changes");
    r.d.set_ste(sid, &s2(7, 0x9100_0000)).unwrap();
    assert_eq!(cfgi(&r), 3, "breaking: V = 0, qwords 1-7, qword 0");
    r.d.set_ste(sid, &s2(7, 0x9100_0000).with_mev(true))
        .unwrap();
    assert_eq!(cfgi(&r), 1, "MEV is safe: one sync");
    r.d.set_ste(sid, &s2(7, 0x9100_0000).with_mev(true))
        .unwrap();
    assert_eq!(cfgi(&r), 0, "no change, no command");
    // PREFETCH_CONFIG unless BROKEN_PREFETCH.
    r.d.set_ste(sid, &Ste::bypass(false)).unwrap();
    assert!(
        r.m.take_commands()
            .contains(&Command::PrefetchConfig { sid, ssid: None })
    );
    let r = Rig::qemu(Config {
        quirks: Quirks::BROKEN_PREFETCH,
        ..Config::default()
    });
    r.d.set_ste(sid, &Ste::bypass(false)).unwrap();
    assert!(
        !r.m.take_commands()
            .iter()
            .any(|c| matches!(c, Command::PrefetchConfig { .. }))
    );
}

// ----- IRQ path -----

#[test]
fn drains_cost_at_most_three_mmio_accesses() {
    let r = Rig::qemu(Config {
        evtq_log2: Some(9),
        ..Config::default()
    });
    for n in [1u32, 16, 256] {
        for i in 0..n {
            r.m.inject_event(evt(i, u64::from(i) << 12));
        }
        r.m.reset_mmio_counts();
        let mut sink = HostSink::default();
        let st = r.d.drain_evtq(&mut sink);
        assert_eq!(r.m.mmio_counts().total(), 3, "n = {n}");
        assert_eq!(st.mmio, 3);
        assert_eq!(st.records, n);
        assert_eq!(sink.events.len(), n as usize);
        for (i, e) in sink.events.iter().enumerate() {
            assert_eq!(*e, evt(i as u32, (i as u64) << 12));
        }
    }
    // Nothing new: one read.
    r.m.reset_mmio_counts();
    let st = r.d.drain_evtq(&mut HostSink::default());
    assert_eq!((st.records, st.mmio), (0, 1));
    assert_eq!(r.m.mmio_counts().total(), 1);
    assert_eq!(r.d.counters().events, 1 + 16 + 256);
}

#[test]
fn event_overflow_hardware_style_is_acknowledged_and_reported() {
    let r = Rig::qemu(Config {
        evtq_log2: Some(3),
        ..Config::default()
    });
    r.m.set_event_overflow(OverflowStyle::Hardware);
    for i in 0..12 {
        r.m.inject_event(evt(i, 0));
    }
    assert_eq!(r.m.event_stats().dropped_full, 4);
    let mut sink = HostSink::default();
    let st = r.d.drain_evtq(&mut sink);
    assert_eq!((st.records, st.overflows), (8, 1));
    assert_eq!(sink.overflows, 1);
    assert!(st.mmio <= 3);
    // Acknowledged: the next overflow toggles OVFLG again and is seen again.
    for i in 0..9 {
        r.m.inject_event(evt(i, 0));
    }
    let mut sink = HostSink::default();
    let st = r.d.drain_evtq(&mut sink);
    assert_eq!((st.records, st.overflows, sink.overflows), (8, 1, 1));
    assert_eq!(r.d.counters().event_overflows, 2);
    // And a quiet period reports none.
    r.m.inject_event(evt(1, 0));
    let st = r.d.drain_evtq(&mut HostSink::default());
    assert_eq!((st.records, st.overflows), (1, 0));
}

#[test]
fn event_overflow_qemu_style_goes_through_gerror() {
    let r = Rig::qemu(Config {
        evtq_log2: Some(3),
        ..Config::default()
    });
    r.m.set_event_overflow(OverflowStyle::Qemu);
    for i in 0..10 {
        r.m.inject_event(evt(i, 0));
    }
    let g = r.d.handle_gerror();
    assert_eq!(g.active, 1 << 2);
    assert!(g.drain_evtq);
    assert_eq!(r.m.gerror_active(), 0);
    let mut sink = HostSink::default();
    let st = r.d.drain_evtq(&mut sink);
    assert_eq!((st.records, st.overflows, sink.overflows), (8, 1, 1));
    assert_eq!(r.d.counters().gerror.eventq_abt_err, 1);
    // After the drain and the acknowledgement new events arrive normally.
    r.m.inject_event(evt(3, 0));
    let st = r.d.drain_evtq(&mut sink);
    assert_eq!((st.records, st.overflows), (1, 0));
}

#[test]
fn every_gerror_bit_is_handled_counted_and_acknowledged() {
    let bits = [0u32, 2, 3, 4, 5, 6, 7, 9, 10];
    let r = Rig::qemu(Config::default());
    for b in bits {
        r.m.raise_gerror(1 << b);
        assert_ne!(r.m.gerror_active(), 0);
        let st = r.d.handle_gerror();
        assert_eq!(st.active, 1 << b, "bit {b}");
        assert_eq!(st.errors(), 1);
        assert_eq!(r.m.gerror_active(), 0, "bit {b} acknowledged");
        assert!(!st.disabled);
        assert!(st.mmio >= 2);
    }
    let c = r.d.counters().gerror;
    assert_eq!(
        (
            c.cmdq_err,
            c.eventq_abt_err,
            c.priq_abt_err,
            c.msi_cmdq_abt_err,
            c.msi_eventq_abt_err,
            c.msi_priq_abt_err,
            c.msi_gerror_abt_err,
            c.other
        ),
        (1, 1, 1, 1, 1, 1, 1, 2)
    );
    // Nothing active: two reads, nothing written.
    r.m.reset_mmio_counts();
    assert_eq!(r.d.handle_gerror().active, 0);
    assert_eq!(r.m.mmio_counts().total(), 2);
    // The queue still works after a CMDQ_ERR without an error code.
    r.d.submit(&[Command::TlbiNsnhAll]).unwrap();
    // Several at once.
    r.m.raise_gerror(0b1111_0100);
    assert_eq!(r.d.handle_gerror().errors(), 5);
    assert_eq!(r.m.gerror_active(), 0);

    // SFM: the SMMU is disabled with DMA blocked, and a reset brings it back.
    r.m.raise_gerror(1 << 8);
    let st = r.d.handle_gerror();
    assert!(st.disabled);
    assert_eq!(r.m.cr0(), 0);
    assert_ne!(r.m.gbpa() & (1 << 20), 0);
    assert!(!r.d.is_ready());
    assert_eq!(r.d.handle_gerror(), GerrorStats::default());
    assert_eq!(r.d.submit(&[]), Err(Error::Disabled));
    assert_eq!(r.d.counters().gerror.sfm_err, 1);
    r.d.reset().unwrap();
    r.d.submit(&[Command::TlbiNsnhAll]).unwrap();
}

#[test]
fn service_failure_mode_never_waits_in_the_irq_path() {
    let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
    r.d.reset().unwrap();
    // An SMMU in SFM may acknowledge nothing: the handler must not wait for CR0ACK or GBPA.
    r.m.set_ack(AckReg::Cr0, AckBehaviour::Never);
    r.m.set_ack(AckReg::Gbpa, AckBehaviour::Never);
    r.m.raise_gerror(1 << 8);
    let t0 = r.m.now_us();
    r.m.reset_mmio_counts();
    let st = r.d.handle_gerror();
    assert!(st.disabled);
    assert!(!r.d.is_ready());
    assert_eq!(r.m.now_us(), t0, "the IRQ path relaxed (waited) in SFM");
    let c = r.m.mmio_counts();
    assert_eq!(c.writes("CR0"), 1);
    assert_eq!(c.writes("GBPA"), 1);
    assert_eq!(c.reads("CR0ACK"), 0);
}

#[test]
fn irq_entry_points_do_nothing_before_reset() {
    let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
    r.m.reset_mmio_counts();
    assert!(r.d.drain_evtq(&mut HostSink::default()).not_ready);
    assert_eq!(r.d.handle_gerror(), GerrorStats::default());
    assert_eq!(r.m.mmio_counts().total(), 0);
}

#[test]
fn pri_queue_is_drained_like_the_event_queue() {
    let ids = IdRegs {
        idr0: QEMU_VIRT.idr0 | IDR0_PRI,
        idr1: QEMU_VIRT.idr1 | (7 << 11),
        ..QEMU_VIRT
    };
    let r = Rig::new(ids, Config::default()).unwrap();
    r.d.reset().unwrap();
    assert_eq!(r.m.cr0() & 0b10, 0b10, "PRIQEN");
    assert_eq!(r.m.irq_ctrl(), 0b111);
    let req = |i: u32| {
        PageRequest {
            sid: StreamId(i),
            read: true,
            last: true,
            prg_index: i as u16,
            addr: u64::from(i) << 12,
            ..PageRequest::default()
        }
        .encode()
    };
    for i in 0..5 {
        r.m.inject_pri(req(i));
    }
    let mut got: Vec<PriqEntry> = Vec::new();
    r.m.reset_mmio_counts();
    let st = r.d.drain_priq(&mut |e: &PriqEntry| got.push(*e));
    assert_eq!(st.records, 5);
    assert_eq!(r.m.mmio_counts().total(), 3);
    assert_eq!(got, (0..5).map(req).collect::<Vec<_>>());
    // QEMU has no PRI queue.
    let r = Rig::qemu(Config::default());
    assert!(r.d.drain_priq(&mut |_: &PriqEntry| ()).not_ready);
}

#[test]
fn msi_irq_configuration_programs_the_doorbells() {
    let r = Rig::new(
        with_idr0(IDR0_MSI),
        Config {
            irq: IrqConfig::Msi {
                gerror: Some(MsiDoorbell {
                    addr: PhysAddr(0x8030_0040),
                    data: 7,
                }),
                evtq: Some(MsiDoorbell {
                    addr: PhysAddr(0x8030_0080),
                    data: 9,
                }),
                priq: None,
            },
            ..Config::default()
        },
    )
    .unwrap();
    r.d.reset().unwrap();
    let before = r.m.irq_counts().msi_writes;
    r.m.inject_event(evt(1, 0));
    assert_eq!(r.m.irq_counts().msi_writes, before + 1);
    assert_eq!(r.m.dma().read_u32(PhysAddr(0x8030_0080)), Some(9));
    // Wired mode on an MSI-capable SMMU clears the addresses: no MSI.
    let r = Rig::new(with_idr0(IDR0_MSI), Config::default()).unwrap();
    r.d.reset().unwrap();
    let before = r.m.irq_counts();
    r.m.inject_event(evt(1, 0));
    assert_eq!(r.m.irq_counts().eventq, before.eventq + 1);
}

#[test]
fn cmdq_error_with_no_waiter_is_recovered_from_the_irq_path() {
    let r = Rig::qemu(Config {
        timeout_us: 1_000,
        ..Config::default()
    });
    r.m.set_sync_stall(true);
    assert_eq!(
        r.d.submit(&[Command::TlbiNsnhAll]),
        Err(Error::Timeout(WaitFor::CmdSync))
    );
    // The submitter gave up; the SMMU now refuses the pending CMD_SYNC.
    r.m.inject_cmdq_error(0, CmdqFault::Illegal);
    r.m.set_sync_stall(false);
    assert_ne!(r.m.gerror_active() & 1, 0);
    let st = r.d.handle_gerror();
    assert_eq!(st.active, 1);
    assert!(!st.cmdq_deferred);
    assert!(matches!(st.cmdq_recovered, Some(CmdqError::Illegal(_))));
    assert_eq!(r.m.gerror_active(), 0);
    assert_eq!(r.d.cmdq_counters().recovered_by_irq, 1);
    // The queue runs on.
    r.m.take_commands();
    r.d.submit(&[Command::CfgiAll]).unwrap();
    assert_eq!(r.m.take_commands(), [Command::CfgiAll, Command::sync()]);
}

#[test]
fn a_second_cpu_draining_at_the_same_time_is_turned_away() {
    let r = Rig::qemu(Config::default());
    r.m.inject_event(evt(1, 0));
    // A sink that, from inside the drain, tries to drain again (as another CPU would).
    struct Reenter<'a>(&'a Drv, Option<DrainStats>);
    impl EventSink for Reenter<'_> {
        fn event(&mut self, _: &EvtqEntry) {
            self.1 = Some(self.0.drain_evtq(&mut |_: &EvtqEntry| ()));
        }
    }
    let mut s = Reenter(&r.d, None);
    let st = r.d.drain_evtq(&mut s);
    assert_eq!(st.records, 1);
    assert!(s.1.unwrap().busy);
    assert_eq!(r.d.counters().drains_busy, 1);
}
