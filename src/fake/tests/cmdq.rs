//! Command queue: consumption, errors and recovery, CMD_SYNC completion signals, stalls.

use super::util::{CMDQEN, Rig, msi_idregs};
use crate::command::{CmdqEntry, Command, SyncCs};
use crate::fake::CmdqFault;
use crate::ids::{Asid, PhysAddr, StreamId, Vmid};

fn sync_irq(addr: u64, data: u32) -> Command {
    Command::Sync {
        cs: SyncCs::Irq,
        msh: 3,
        msi_attr: 0xf,
        msi_data: data,
        msi_addr: PhysAddr(addr),
    }
}

/// Linux's CERROR_ILL recovery: overwrite the entry at CONS with a CMD_SYNC, then ack GERROR.
fn skip_bad(r: &Rig, q: &crate::platform::DmaBuf, log2: u8) {
    let cons = r.cmdq_cons(log2);
    let slot = r.cmdq_slot(q, log2, cons);
    r.smmu
        .dma()
        .write_dwords(slot, &Command::sync().encode().0)
        .unwrap();
    let g = r.read32("GERROR");
    r.write32("GERRORN", g);
}

#[test]
fn commands_are_consumed_synchronously_and_logged() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(4);
    let cmds = [
        Command::CfgiAll,
        Command::TlbiNsnhAll,
        Command::TlbiEl2All,
        Command::sync(),
    ];
    r.submit(&q, 4, &cmds);
    assert_eq!(r.cmdq_cons(4), 4);
    assert_eq!(r.smmu.take_commands(), cmds);
    assert!(r.smmu.take_commands().is_empty());
    let s = r.smmu.cmdq_stats();
    assert_eq!((s.consumed, s.syncs, s.cfgi, s.tlbi), (4, 1, 1, 2));
}

#[test]
fn commands_wait_for_cmdqen() {
    let r = Rig::qemu();
    let log2 = 3;
    let q = r.alloc(16 << log2);
    r.write64("CMDQ_BASE", q.paddr.0 | u64::from(log2));
    r.write32("CMDQ_PROD", 0);
    r.write32("CMDQ_CONS", 0);
    r.submit(&q, log2, &[Command::TlbiNsnhAll, Command::sync()]);
    assert_eq!(r.cmdq_cons(log2), 0);
    assert!(r.cr0_sync(CMDQEN, 1));
    assert_eq!(r.cmdq_cons(log2), 2);
    // Disabled again: nothing more is consumed, and software may reset CONS.
    assert!(r.cr0_sync(0, 1));
    r.submit(&q, log2, &[Command::sync()]);
    assert_eq!(r.cmdq_cons(log2), 2);
}

#[test]
fn cons_writes_are_ignored_while_enabled() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(3);
    r.submit(&q, 3, &[Command::sync()]);
    r.write32("CMDQ_CONS", 0);
    assert_eq!(r.cmdq_cons(3), 1);
}

#[test]
fn queue_wraps() {
    let r = Rig::qemu();
    let log2 = 2;
    let q = r.enable_cmdq(log2);
    for _ in 0..5 {
        r.submit(
            &q,
            log2,
            &[Command::TlbiNsnhAll, Command::TlbiEl2All, Command::sync()],
        );
    }
    // 15 commands in a 4-entry queue: position 15 = wrap 1 (bit 2), index 3.
    assert_eq!(r.cmdq_cons(log2), 15 & 7);
    assert_eq!(r.read32("CMDQ_PROD"), 15 & 7);
    assert_eq!(r.smmu.cmdq_stats().consumed, 15);
    // A full queue (PROD = CONS + 4) is consumed entirely.
    r.submit(&q, log2, &[Command::TlbiNsnhAll; 4]);
    assert_eq!(r.smmu.cmdq_stats().consumed, 19);
    assert_eq!(r.cmdq_cons(log2), 19 & 7);
}

#[test]
fn unknown_opcode_stops_with_cerror_ill_until_acknowledged() {
    let r = Rig::qemu();
    r.write32("IRQ_CTRL", 1);
    let q = r.enable_cmdq(5);
    r.submit(&q, 5, &[Command::TlbiNsnhAll]);
    r.submit_raw(
        &q,
        5,
        &[
            CmdqEntry([0x7f, 0]),
            Command::CfgiAll.encode(),
            Command::sync().encode(),
        ],
    );
    // CONS stops at the bad entry with ERR = CERROR_ILL; GERROR.CMDQ_ERR toggled.
    assert_eq!(r.read32("CMDQ_CONS"), (1 << 24) | 1);
    assert_eq!(r.read32("GERROR") & 1, 1);
    assert_eq!(r.smmu.gerror_active(), 1);
    assert_eq!(r.smmu.irq_counts().gerror, 1);
    assert_eq!(r.smmu.cmdq_stats().errors, 1);
    // Writing PROD again does not restart it while the error is active.
    r.write32("CMDQ_PROD", r.read32("CMDQ_PROD"));
    assert_eq!(r.cmdq_cons(5), 1);
    skip_bad(&r, &q, 5);
    // Resumed at once; ERR stays as QEMU leaves it.
    assert_eq!(r.read32("CMDQ_CONS"), (1 << 24) | 4);
    assert_eq!(
        r.smmu.take_commands(),
        [
            Command::TlbiNsnhAll,
            Command::sync(),
            Command::CfgiAll,
            Command::sync()
        ]
    );
}

#[test]
fn malformed_commands_are_illegal() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(4);
    let mut secure = Command::CfgiSte {
        sid: StreamId(3),
        leaf: true,
    }
    .encode();
    secure.0[0] |= 1 << 10;
    let mut cs3 = Command::sync().encode();
    cs3.0[0] |= 3 << 12;
    // QEMU's IDRs: no MPAM (CFGI_VMS_PIDM illegal), terminate-only stall model (STALL_TERM).
    let pidm = Command::CfgiVmsPidm { vmid: Vmid(1) }.encode();
    let stall_term = Command::StallTerm { sid: StreamId(1) }.encode();
    for (i, bad) in [secure, cs3, pidm, stall_term].into_iter().enumerate() {
        r.submit_raw(&q, 4, &[bad]);
        assert_eq!(r.cons_err(), 1, "case {i}");
        assert_eq!(r.smmu.gerror_active(), 1, "case {i}");
        skip_bad(&r, &q, 4);
        assert_eq!(r.smmu.gerror_active(), 0);
    }
    assert_eq!(r.smmu.cmdq_stats().errors, 4);
    assert_eq!(r.smmu.take_commands(), [Command::sync(); 4]);
}

#[test]
fn injected_abort_is_refetched_after_acknowledgement() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(4);
    r.smmu.inject_cmdq_error(1, CmdqFault::Abort);
    r.submit(
        &q,
        4,
        &[Command::TlbiNsnhAll, Command::CfgiAll, Command::sync()],
    );
    assert_eq!(r.read32("CMDQ_CONS"), (2 << 24) | 1);
    assert_eq!(r.smmu.gerror_active(), 1);
    // CERROR_ABT: acknowledge only; the command is fetched again and succeeds.
    let g = r.read32("GERROR");
    r.write32("GERRORN", g);
    assert_eq!(r.cmdq_cons(4), 3);
    assert_eq!(r.smmu.cmdq_stats().consumed, 3);
}

#[test]
fn injected_atc_inv_sync_error_stops_at_the_sync() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(4);
    r.smmu.inject_cmdq_error(0, CmdqFault::AtcInvSync);
    let atc = Command::AtcInv {
        sid: StreamId(8),
        ssid: None,
        global: false,
        addr: 0,
        size: 52,
    };
    r.submit(&q, 4, &[atc, atc, Command::sync()]);
    assert_eq!(r.read32("CMDQ_CONS"), (3 << 24) | 2);
    assert_eq!(r.smmu.cmdq_stats().atc_inv, 2);
    let g = r.read32("GERROR");
    r.write32("GERRORN", g);
    assert_eq!(r.cmdq_cons(4), 3, "the CMD_SYNC is retried and completes");
}

#[test]
fn injected_illegal_at_a_chosen_command() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(4);
    r.smmu.inject_cmdq_error(2, CmdqFault::Illegal);
    r.submit(&q, 4, &[Command::TlbiNsnhAll; 4]);
    assert_eq!(r.read32("CMDQ_CONS"), (1 << 24) | 2);
}

#[test]
fn unreachable_queue_memory_is_cerror_abt() {
    let r = Rig::qemu();
    r.write64("CMDQ_BASE", 0x1_0000_0000 | 4);
    r.write32("CMDQ_PROD", 0);
    r.write32("CMDQ_CONS", 0);
    assert!(r.cr0_sync(CMDQEN, 1));
    r.write32("CMDQ_PROD", 1);
    assert_eq!(r.read32("CMDQ_CONS"), 2 << 24);
    assert_eq!(r.smmu.gerror_active(), 1);
}

#[test]
fn stalled_sync_never_completes_until_released() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(4);
    r.smmu.set_sync_stall(true);
    r.submit(&q, 4, &[Command::TlbiNsnhAll, Command::sync()]);
    for _ in 0..100 {
        assert_eq!(r.cmdq_cons(4), 1, "CONS stops before the CMD_SYNC");
    }
    assert!(r.smmu.cmdq_stalled());
    assert_eq!(r.smmu.cmdq_stats().syncs, 0);
    r.smmu.set_sync_stall(false);
    assert_eq!(r.cmdq_cons(4), 2);
    assert!(!r.smmu.cmdq_stalled());
    assert_eq!(r.smmu.cmdq_stats().syncs, 1);
}

#[test]
fn sync_irq_pulses_the_wired_line_without_msi() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(4);
    let target = r.alloc(64);
    r.smmu.dma().write_u32(target.paddr, 0xffff_ffff).unwrap();
    r.submit(&q, 4, &[sync_irq(target.paddr.0, 0xcafe_f00d)]);
    // QEMU (IDR0.MSI = 0): the wired cmdq-sync IRQ fires, memory is untouched.
    assert_eq!(r.smmu.irq_counts().cmd_sync, 1);
    assert_eq!(r.smmu.irq_counts().msi_writes, 0);
    assert_eq!(r.smmu.dma().read_u32(target.paddr), Some(0xffff_ffff));
}

#[test]
fn sync_irq_writes_the_msi_when_msis_are_supported() {
    let r = Rig::with(msi_idregs());
    let log2 = 4;
    let q = r.enable_cmdq(log2);
    // Linux MSI polling: MSIAddr = the CMD_SYNC's own slot, MSIData = 0.
    r.submit(&q, log2, &[Command::TlbiNsnhAll]);
    let slot = r.cmdq_slot(&q, log2, 1);
    r.submit(&q, log2, &[sync_irq(slot.0, 0)]);
    assert_eq!(r.smmu.dma().read_u32(slot), Some(0));
    assert_eq!(r.smmu.irq_counts().msi_writes, 1);
    assert_eq!(r.smmu.irq_counts().cmd_sync, 0);
    // MSIAddr = 0: no write, the wired line instead.
    r.submit(&q, log2, &[sync_irq(0, 1)]);
    assert_eq!(r.smmu.irq_counts().cmd_sync, 1);
    // An unreachable MSI target raises GERROR.MSI_CMDQ_ABT_ERR.
    r.submit(&q, log2, &[sync_irq(0x10, 1)]);
    assert_eq!(r.smmu.gerror_active(), 1 << 4);
    // SEV completion is counted when IDR0.SEV = 1.
    r.submit(
        &q,
        log2,
        &[Command::Sync {
            cs: SyncCs::Sev,
            msh: 0,
            msi_attr: 0,
            msi_data: 0,
            msi_addr: PhysAddr(0),
        }],
    );
    assert_eq!(r.smmu.irq_counts().sev, 1);
}

#[test]
fn every_opcode_family_is_consumed_and_counted() {
    let r = Rig::qemu();
    let q = r.enable_cmdq(6);
    let cmds = [
        Command::PrefetchConfig {
            sid: StreamId(1),
            ssid: None,
        },
        Command::CfgiSte {
            sid: StreamId(1),
            leaf: true,
        },
        Command::CfgiSteRange {
            sid: StreamId(0),
            range: 3,
        },
        Command::CfgiCdAll { sid: StreamId(1) },
        Command::TlbiNhAsid {
            vmid: Vmid(1),
            asid: Asid(2),
        },
        Command::TlbiS12Vmall { vmid: Vmid(3) },
        Command::AtcInv {
            sid: StreamId(1),
            ssid: None,
            global: false,
            addr: 0,
            size: 52,
        },
        Command::PriResp {
            sid: StreamId(1),
            ssid: None,
            prg_index: 5,
            resp: crate::command::PriResponse::Success,
        },
        Command::Resume {
            sid: StreamId(1),
            stag: 7,
            action: crate::command::ResumeAction::Retry,
        },
        Command::sync(),
    ];
    r.submit(&q, 6, &cmds);
    assert_eq!(r.smmu.take_commands(), cmds);
    let s = r.smmu.cmdq_stats();
    assert_eq!(
        (s.prefetch, s.cfgi, s.tlbi, s.atc_inv, s.syncs, s.errors),
        (1, 3, 2, 1, 1, 0)
    );
}
