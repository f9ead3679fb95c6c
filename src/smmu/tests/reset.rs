//! Reset and enable: Linux's order, every ACK waited for (late or missing), PRI, E2H, ATSCHK,
//! the CN99xx page-0-only layout and interrupt programming.

use std::vec::Vec;

use super::super::*;
use super::recorder::*;
use super::rig::*;
use super::*;
use crate::command::Command;
use crate::error::{Error, WaitFor};
use crate::fake::{AckBehaviour, AckReg, HostSink};
use crate::features::QEMU_VIRT;
use crate::ids::PhysAddr;
use crate::regs::offset;

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
fn reset_with_pri_programs_the_queue_acks_priqen_and_sets_lo() {
    let h = H::new(pri_ids(9), Config::default());
    h.rec.take();
    h.d.reset().unwrap();
    let log = h.rec.take();
    let pos = |f: &dyn Fn(&Ev) -> bool| log.iter().position(f).unwrap();
    let base_w = pos(&w(0, offset::PRIQ_BASE));
    let prod_w = pos(&w(1, offset::PRIQ_PROD));
    let cons_w = pos(&w(1, offset::PRIQ_CONS));
    let evtq_en = pos(
        &|e: &Ev| matches!(*e, Ev::Mmio(0, o, true, v) if o == offset::CR0 && v & CR0_EVENTQEN != 0),
    );
    let priq_en = pos(
        &|e: &Ev| matches!(*e, Ev::Mmio(0, o, true, v) if o == offset::CR0 && v & CR0_PRIQEN != 0),
    );
    let cfg2_w = pos(&w(0, offset::PRIQ_IRQ_CFG2));
    let irq_on = log
        .iter()
        .rposition(|e| matches!(*e, Ev::Mmio(0, o, true, v) if o == offset::IRQ_CTRL && v != 0))
        .unwrap();
    // Base and indices while PRIQEN is off, after the event queue, then PRIQEN and its ACK.
    assert!(evtq_en < base_w && base_w < prod_w && prod_w < cons_w && cons_w < priq_en);
    assert!(matches!(log[prod_w], Ev::Mmio(1, _, true, 0)));
    assert!(matches!(log[cons_w], Ev::Mmio(1, _, true, 0)));
    assert!(r(0, offset::CR0ACK)(&log[priq_en + 1]), "PRIQEN ACK polled");
    // LO written (0: interrupt on empty to non-empty) before the interrupts are enabled.
    assert!(cfg2_w < irq_on);
    let Ev::Mmio(_, _, _, cfg2) = log[cfg2_w] else {
        unreachable!()
    };
    assert_eq!(cfg2 & (1 << 31), 0, "LO = 0");
    let Ev::Mmio(_, _, _, irq) = log[irq_on] else {
        unreachable!()
    };
    assert_eq!(irq, 0b111, "PRIQ_IRQEN with GERROR and EVENTQ");
    // PRIQ_BASE: WA | the lent queue | LOG2SIZE (default 7, within PRIQS 9).
    let base = page0(&h.m).PRIQ_BASE.get();
    let plan = *h.d.plan();
    let arena = h.m.dma().pa_base().0;
    assert_eq!(base & 0x1f, 7);
    assert_eq!(base >> 62, 1, "WA");
    let addr = base & 0x00ff_ffff_ffff_ffe0;
    assert!(addr >= arena);
    assert_eq!(addr % plan.priq.unwrap().align as u64, 0);
    assert_eq!(
        plan.priq,
        Some(Region {
            bytes: 2048,
            align: 2048
        })
    );
    assert_eq!(
        h.m.cr0(),
        CR0_SMMUEN | CR0_PRIQEN | CR0_EVENTQEN | CR0_CMDQEN
    );
    assert_eq!(page0(&h.m).PRIQ_IRQ_CFG2.get() >> 31, 0);
}

#[test]
fn the_model_page0_only_layout_hides_page1() {
    // Without the quirk the driver uses page 1, which this SMMU does not have: the model never
    // sees the accesses and the drains find nothing (the knob is real).
    let m = model(pri_ids(9));
    m.set_page0_regs_only(true);
    let h = H::with(
        m.clone(),
        CountingDma::new(&m, usize::MAX),
        Config::default(),
        false,
    )
    .unwrap();
    h.d.reset().unwrap();
    m.inject_event(rec_evt(1));
    m.reset_mmio_counts();
    let st = h.d.drain_evtq(&mut HostSink::default());
    assert_eq!(st.records, 0);
    assert_eq!(m.mmio_counts().outside, 1);
}

#[test]
fn page0_regs_only_quirk_drains_and_resets_without_touching_page1() {
    let m = model(pri_ids(9));
    m.set_page0_regs_only(true);
    let config = Config {
        quirks: Quirks::PAGE0_REGS_ONLY,
        ..Config::default()
    };
    let h = H::with(m.clone(), CountingDma::new(&m, usize::MAX), config, false).unwrap();
    for _ in 0..2 {
        h.d.reset().unwrap();
        let log = h.rec.take();
        for (reg, name) in [
            (offset::EVENTQ_PROD, "EVENTQ_PROD"),
            (offset::EVENTQ_CONS, "EVENTQ_CONS"),
            (offset::PRIQ_PROD, "PRIQ_PROD"),
            (offset::PRIQ_CONS, "PRIQ_CONS"),
        ] {
            assert!(
                log.iter().any(w(0, reg)),
                "{name} reset at its page-0 offset"
            );
        }
        assert_eq!(
            h.m.cr0() & (CR0_EVENTQEN | CR0_PRIQEN),
            CR0_EVENTQEN | CR0_PRIQEN
        );
        for round in 0..3u32 {
            for i in 0..5 {
                m.inject_event(rec_evt(round * 5 + i));
                m.inject_pri(req(round * 5 + i));
            }
            m.reset_mmio_counts();
            let mut ev = HostSink::default();
            let mut pri = HostSink::default();
            let se = h.d.drain_evtq(&mut ev);
            let sp = h.d.drain_priq(&mut pri);
            assert_eq!((se.records, se.mmio), (5, 3));
            assert_eq!((sp.records, sp.mmio), (5, 3));
            let want: Vec<_> = (round * 5..round * 5 + 5).collect();
            assert_eq!(
                ev.events,
                want.iter().map(|&i| rec_evt(i)).collect::<Vec<_>>()
            );
            assert_eq!(
                pri.requests,
                want.iter().map(|&i| req(i)).collect::<Vec<_>>()
            );
            let c = m.mmio_counts();
            assert_eq!(c.outside, 0);
            assert_eq!((c.reads("EVENTQ_PROD"), c.writes("EVENTQ_CONS")), (2, 1));
            assert_eq!((c.reads("PRIQ_PROD"), c.writes("PRIQ_CONS")), (2, 1));
        }
        // Overflow through the aliased PROD.OVFLG.
        for i in 0..200 {
            m.inject_event(rec_evt(i));
        }
        let mut ev = HostSink::default();
        let st = h.d.drain_evtq(&mut ev);
        assert_eq!((st.records, st.overflows, ev.overflows), (128, 1, 1));
        let log = h.rec.take();
        assert!(
            !log.iter().any(|e| matches!(e, Ev::Mmio(1, ..))),
            "page 1 touched"
        );
    }
}

#[test]
fn e2h_sets_cr2_e2h_with_hyp_and_is_ignored_without() {
    const PTM_RECINVSID: u32 = 0b110;
    for (idr0, e2h, cr2, el2) in [
        (IDR0_HYP, true, PTM_RECINVSID | 1, true),
        (IDR0_HYP, false, PTM_RECINVSID, true),
        (0, true, PTM_RECINVSID, false),
        (0, false, PTM_RECINVSID, false),
    ] {
        let h = H::reset(
            ids(idr0, 0),
            Config {
                e2h,
                ..Config::default()
            },
        );
        assert_eq!(page0(&h.m).CR2.get(), cr2, "HYP {idr0:#x} e2h {e2h}");
        let mut want = std::vec![Command::CfgiAll];
        if el2 {
            want.push(Command::TlbiEl2All);
        }
        want.extend([Command::TlbiNsnhAll, Command::sync()]);
        assert_eq!(h.m.take_commands(), want);
        // CR2 written once, while CR0 is 0.
        assert_eq!(h.m.mmio_counts().writes("CR2"), 1);
    }
}

#[test]
fn atschk_is_set_and_acknowledged_with_ats() {
    let h = H::new(ids(IDR0_ATS, 0), Config::default());
    h.rec.take();
    h.d.reset().unwrap();
    let log = h.rec.take();
    let cr0: Vec<(usize, u32)> = log
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match *e {
            Ev::Mmio(0, o, true, v) if o == offset::CR0 => Some((i, v)),
            _ => None,
        })
        .collect();
    let (i, v) = *cr0.iter().find(|(_, v)| v & CR0_ATSCHK != 0).unwrap();
    assert_eq!(v, CR0_ATSCHK | CR0_EVENTQEN | CR0_CMDQEN, "before SMMUEN");
    assert!(r(0, offset::CR0ACK)(&log[i + 1]));
    assert_eq!(
        h.m.cr0(),
        CR0_SMMUEN | CR0_ATSCHK | CR0_EVENTQEN | CR0_CMDQEN
    );
    assert_eq!(page0(&h.m).CR0ACK.get(), h.m.cr0());
    // Without ATS: never set.
    let h = H::reset(QEMU_VIRT, Config::default());
    assert_eq!(h.m.cr0() & CR0_ATSCHK, 0);
}

#[test]
fn late_priqen_and_atschk_acks_are_waited_for() {
    let h = H::new(ids(IDR0_PRI | IDR0_ATS, 9), Config::default());
    h.m.set_ack(AckReg::Cr0, AckBehaviour::AfterPolls(4));
    h.d.reset().unwrap();
    assert_eq!(
        h.m.cr0(),
        CR0_SMMUEN | CR0_ATSCHK | CR0_PRIQEN | CR0_EVENTQEN | CR0_CMDQEN
    );
    // Six CR0 writes (0, CMDQEN, EVENTQEN, PRIQEN, ATSCHK, SMMUEN), each polled until the
    // fifth read shows it (CR0 = 0 matches the reset value at once).
    let c = h.m.mmio_counts();
    assert_eq!((c.writes("CR0"), c.reads("CR0ACK")), (6, 1 + 5 * 5));
    // One that never comes times out, naming CR0ACK.
    let h = H::new(
        ids(IDR0_PRI | IDR0_ATS, 9),
        Config {
            timeout_us: 100,
            ..Config::default()
        },
    );
    h.m.set_ack(AckReg::Cr0, AckBehaviour::Never);
    assert_eq!(h.d.reset(), Err(Error::Timeout(WaitFor::Cr0Ack)));
    assert!(!h.d.is_ready());
}

#[test]
fn a_reset_that_fails_late_leaves_the_driver_not_ready() {
    let h = H::new(
        pri_ids(9),
        Config {
            timeout_us: 100,
            ..Config::default()
        },
    );
    // The queues are enabled, then IRQ_CTRL is never acknowledged.
    h.m.set_ack(AckReg::IrqCtrl, AckBehaviour::Never);
    assert_eq!(h.d.reset(), Err(Error::Timeout(WaitFor::IrqCtrlAck)));
    assert_ne!(h.m.cr0() & CR0_PRIQEN, 0);
    assert!(!h.d.is_ready());
    h.m.inject_event(rec_evt(1));
    h.m.reset_mmio_counts();
    assert!(h.d.drain_evtq(&mut HostSink::default()).not_ready);
    assert!(h.d.drain_priq(&mut HostSink::default()).not_ready);
    assert_eq!(h.d.handle_gerror(), GerrorStats::default());
    assert_eq!(h.m.mmio_counts().total(), 0);
    // A reset that succeeds brings it back.
    h.m.set_ack(AckReg::IrqCtrl, AckBehaviour::Immediate);
    h.d.reset().unwrap();
    assert!(h.d.is_ready());
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
fn irq_entry_points_do_nothing_before_reset() {
    let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
    r.m.reset_mmio_counts();
    assert!(r.d.drain_evtq(&mut HostSink::default()).not_ready);
    assert_eq!(r.d.handle_gerror(), GerrorStats::default());
    assert_eq!(r.m.mmio_counts().total(), 0);
}
