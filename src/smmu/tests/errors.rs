//! Recurring and stale errors: the same illegal command at the same slot after the queue
//! wrapped, global errors left active by a previous owner or raised while the driver was not
//! ready, a command error active with CONS.ERR = 0, and WFE waits with no wake-up source.

use super::super::*;
use super::rig::Rig;
use crate::command::Command;
use crate::error::{CmdqError, Error, Feature, WaitFor};
use crate::event::{EventRecord, EvtqEntry};
use crate::fake::{HostSink, OverflowStyle};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Iova, StreamId, Vmid};

const IDR0_MSI: u32 = 1 << 13;
const IDR0_SEV: u32 = 1 << 14;

const GERROR_CMDQ_ERR: u32 = 1 << 0;
const GERROR_EVENTQ_ABT_ERR: u32 = 1 << 2;

fn with_idr0(bits: u32) -> IdRegs {
    IdRegs {
        idr0: QEMU_VIRT.idr0 | bits,
        ..QEMU_VIRT
    }
}

/// A command the model refuses every time it meets it (CFGI_VMS_PIDM without IDR3.MPAM,
/// IHI 0070 §4.3.5), unlike a one-shot injected error.
const ILLEGAL: Command = Command::CfgiVmsPidm { vmid: Vmid(9) };

/// The queue's PROD (index and wrap) as the driver wrote it last: every command the engine
/// wrote so far, modulo twice the queue size.
fn prod(r: &Rig) -> u64 {
    let entries = 1u64 << r.d.plan().cmdq_log2;
    r.d.cmdq_counters().commands % (2 * entries)
}

/// Issues lone CMD_SYNCs until PROD is `at` (index and wrap).
fn advance_to(r: &Rig, at: u64) {
    while prod(r) != at {
        r.d.submit(&[]).unwrap();
    }
}

#[test]
fn a_second_illegal_command_at_the_same_slot_after_two_wraps_is_replaced_too() {
    // MSI completion (coherent SMMU with IDR0.MSI): CONS is read only when a CMD_SYNC is late,
    // so nothing else tells the engine that the first error is long gone.
    let r = Rig::new(
        with_idr0(IDR0_MSI),
        Config {
            cmdq_log2: Some(3),
            timeout_us: 20_000,
            ..Config::default()
        },
    )
    .unwrap();
    assert_eq!(r.d.completion(), Completion::Msi);
    r.d.reset().unwrap();
    let batch = [Command::TlbiNsnhAll, ILLEGAL, Command::CfgiAll];
    for round in 0..3 {
        // The illegal command lands at index 1 with the wrap bit clear, every round: CONS
        // reads the same value at each error.
        advance_to(&r, 0);
        r.m.take_commands();
        assert_eq!(
            r.d.submit(&batch),
            Err(Error::Cmdq(CmdqError::Illegal(ILLEGAL.encode().0))),
            "round {round}"
        );
        // The bad slot ran as a plain CMD_SYNC; the batch's own CMD_SYNC (signalled by MSI)
        // followed.
        let got = r.m.take_commands();
        assert_eq!(got.len(), 4, "round {round}: {got:?}");
        assert_eq!(
            got[..3],
            [Command::TlbiNsnhAll, Command::sync(), Command::CfgiAll],
            "round {round}"
        );
        assert_eq!(r.m.gerror_active(), 0, "round {round}");
        // Fill the rest of the queue twice over with good batches.
        advance_to(&r, 8);
    }
    assert_eq!(r.d.cmdq_counters().illegal, 3);
    assert_eq!(r.d.cmdq_counters().sync_timeouts, 0);
    r.d.submit(&[Command::TlbiNsnhAll]).unwrap();
}

#[test]
fn the_same_illegal_command_twice_in_poll_mode_is_reported_twice() {
    let r = Rig::qemu(Config {
        cmdq_log2: Some(2),
        timeout_us: 20_000,
        ..Config::default()
    });
    for _ in 0..4 {
        advance_to(&r, 0);
        assert_eq!(
            r.d.submit(&[ILLEGAL]),
            Err(Error::Cmdq(CmdqError::Illegal(ILLEGAL.encode().0)))
        );
    }
    assert_eq!(r.d.cmdq_counters().illegal, 4);
}

#[test]
fn a_command_error_left_by_a_previous_owner_does_not_stop_reset() {
    let r = Rig::new(
        QEMU_VIRT,
        Config {
            timeout_us: 10_000,
            ..Config::default()
        },
    )
    .unwrap();
    // Firmware (or the kernel before a kexec) left CMDQ_ERR and EVENTQ_ABT_ERR active.
    r.m.raise_gerror(GERROR_CMDQ_ERR | GERROR_EVENTQ_ABT_ERR);
    r.d.reset().unwrap();
    assert_eq!(r.m.gerror_active(), 0);
    let c = r.d.counters();
    assert_eq!(c.gerror_stale, 2);
    assert_eq!((c.gerror.cmdq_err, c.gerror.eventq_abt_err), (1, 1));
    r.d.submit(&[Command::CfgiAll]).unwrap();
}

fn evt(sid: u32) -> EvtqEntry {
    EventRecord::translation_fault(StreamId(sid), Iova(0x1000), true, false).encode()
}

#[test]
fn an_error_raised_while_disabled_is_cleared_by_the_next_reset() {
    let r = Rig::qemu(Config {
        evtq_log2: Some(2),
        ..Config::default()
    });
    r.m.set_event_overflow(OverflowStyle::Qemu);
    r.d.disable().unwrap();
    // QEMU reports event-queue overflow as EVENTQ_ABT_ERR; this one comes while the driver is
    // down, so its IRQ path does nothing.
    r.m.raise_gerror(GERROR_EVENTQ_ABT_ERR);
    assert_eq!(r.d.handle_gerror(), GerrorStats::default());
    r.d.reset().unwrap();
    assert_eq!(r.m.gerror_active(), 0, "reset acknowledged the stale error");
    // The next overflow is raised (a still-active bit could not be) and reported.
    for i in 0..5 {
        r.m.inject_event(evt(i));
    }
    assert_eq!(r.m.gerror_active(), GERROR_EVENTQ_ABT_ERR);
    let st = r.d.handle_gerror();
    assert!(st.drain_evtq);
    let mut sink = HostSink::default();
    r.d.drain_evtq(&mut sink);
    assert_eq!((sink.events.len(), sink.overflows), (4, 1));
    assert_eq!(r.m.gerror_active(), 0);
}

#[test]
fn an_active_command_error_with_cons_err_zero_is_acknowledged_by_the_waiter() {
    let r = Rig::qemu(Config {
        timeout_us: 10_000,
        ..Config::default()
    });
    // CMDQ_ERR active while CONS.ERR reads 0 (QEMU raises it so for a failed MSI write of a
    // CMD_SYNC; here raised directly): the queue stops until GERRORN acknowledges it.
    r.m.raise_gerror(GERROR_CMDQ_ERR);
    r.m.take_commands();
    r.d.submit(&[Command::CfgiAll]).unwrap();
    assert_eq!(r.m.take_commands(), [Command::CfgiAll, Command::sync()]);
    assert_eq!(r.m.gerror_active(), 0);
}

#[test]
fn the_irq_path_acknowledges_a_command_error_with_cons_err_zero() {
    let r = Rig::qemu(Config::default());
    r.m.raise_gerror(GERROR_CMDQ_ERR);
    let st = r.d.handle_gerror();
    assert_eq!(st.cmdq_recovered, None);
    assert_eq!(st.acked, GERROR_CMDQ_ERR);
    assert_eq!(r.m.gerror_active(), 0);
}

#[test]
fn sev_completion_needs_a_bounded_wait_for_event() {
    // IDR0.SEV alone: WFE could sleep past every timeout (a CMD_SYNC that never completes sends
    // no SEV), so Auto polls and an explicit Sev is refused.
    let r = Rig::new(with_idr0(IDR0_SEV), Config::default()).unwrap();
    assert_eq!(r.d.completion(), Completion::Poll);
    assert!(matches!(
        Rig::new(
            with_idr0(IDR0_SEV),
            Config {
                sync: SyncMode::Sev,
                ..Config::default()
            }
        ),
        Err(Error::Unsupported(Feature::Sev))
    ));
    // With the event stream, SEV is used and a sync that never completes still times out.
    let r = Rig::new(
        with_idr0(IDR0_SEV),
        Config {
            event_stream: true,
            timeout_us: 1_000,
            ..Config::default()
        },
    )
    .unwrap();
    assert_eq!(r.d.completion(), Completion::Sev);
    r.d.reset().unwrap();
    r.m.set_sync_stall(true);
    assert_eq!(
        r.d.submit(&[Command::TlbiNsnhAll]),
        Err(Error::Timeout(WaitFor::CmdSync))
    );
}
