//! Global errors: every GERROR bit handled, counted and acknowledged; QEMU-style queue overflow;
//! service failure mode; command errors recovered from the IRQ path.

use super::super::*;
use super::recorder::*;
use super::rig::*;
use crate::command::Command;
use crate::error::{CmdqError, Error, WaitFor};
use crate::fake::{AckBehaviour, AckReg, CmdqFault, HostSink, OverflowStyle};
use crate::features::QEMU_VIRT;

#[test]
fn event_overflow_qemu_style_goes_through_gerror() {
    let r = Rig::small_evtq(OverflowStyle::Qemu);
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
fn priq_overflow_qemu_style_goes_through_gerror_and_the_next_drain() {
    let h = H::small_priq(OverflowStyle::Qemu);
    for i in 0..10 {
        h.m.inject_pri(req(i));
    }
    assert_eq!(h.m.pri_stats().overflows, 0, "QEMU never toggles OVFLG");
    assert_eq!(h.m.gerror_active(), 1 << 3);
    let g = h.d.handle_gerror();
    assert_eq!((g.active, g.acked), (1 << 3, 1 << 3));
    assert!(g.drain_priq && !g.drain_evtq);
    assert_eq!(h.m.gerror_active(), 0);
    let mut sink = HostSink::default();
    let st = h.d.drain_priq(&mut sink);
    assert_eq!((st.records, st.overflows, sink.pri_overflows), (8, 1, 1));
    // The event queue is not told about the PRI loss.
    let mut ev = HostSink::default();
    assert_eq!(h.d.drain_evtq(&mut ev).overflows, 0);
    assert_eq!(ev.overflows, 0);
    let c = h.d.counters();
    assert_eq!((c.gerror.priq_abt_err, c.pri_overflows), (1, 1));
    // Reported once.
    h.m.inject_pri(req(3));
    let st = h.d.drain_priq(&mut sink);
    assert_eq!((st.records, st.overflows), (1, 0));
    assert_eq!(sink.pri_overflows, 1);
}
