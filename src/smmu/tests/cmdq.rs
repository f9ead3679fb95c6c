//! The command queue: batching, one CMD_SYNC per batch, completion modes, errors and timeouts,
//! the Tegra264 repeat, concurrent submitters.

use std::sync::Arc;
use std::vec::Vec;

use super::super::*;
use super::rig::*;
use super::*;
use crate::command::Command;
use crate::error::{CmdqError, Error, WaitFor};
use crate::fake::CmdqFault;
use crate::ids::{StreamId, Vmid};

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
