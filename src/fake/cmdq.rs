//! The command queue (IHI 0070 §4): consumed synchronously when CMDQ_PROD is written, as QEMU
//! does, until CONS reaches PROD, an error stops it (CMDQ_CONS.ERR, GERROR.CMDQ_ERR; resumed
//! after GERRORN acknowledges it), or a stalled CMD_SYNC holds it.

use super::control::{self, GERROR_CMDQ_ERR};
use super::queues::decode_base;
use super::regs::off;
use super::{Hw, Model};
use crate::command::{CmdqEntry, Command, SyncCs};
use crate::features::StallModel;
use crate::ids::{PhysAddr, StreamId};
use crate::queue::QueueIndex;
use crate::regs::CMDQ_CONS::ERR::Value as CmdqErr;

/// CMDQ_CONS.ERR codes (IHI 0070 §4.8), as `regs` names them.
const CERROR_ILL: u8 = CmdqErr::Illegal as u8;
/// CERROR_ABT.
const CERROR_ABT: u8 = CmdqErr::Abort as u8;
/// CERROR_ATC_INV_SYNC.
const CERROR_ATC_INV_SYNC: u8 = CmdqErr::AtcInvSync as u8;

/// The pending-record tag of in-flight device writes, covered by the next CMD_SYNC.
pub(crate) const DEVICE_WRITES: u8 = 2;

/// An error the test asks the command queue to report (see [`FakeSmmu::inject_cmdq_error`]).
///
/// [`FakeSmmu::inject_cmdq_error`]: super::FakeSmmu::inject_cmdq_error
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdqFault {
    /// CERROR_ABT: the fetch of the command aborted; the SMMU refetches it after the error is
    /// acknowledged.
    Abort,
    /// CERROR_ATC_INV_SYNC: at the first CMD_SYNC from the chosen point, an ATC invalidation
    /// "timed out"; CONS points at the CMD_SYNC, which is retried after acknowledgement.
    AtcInvSync,
    /// CERROR_ILL at the chosen command, whatever it is.
    Illegal,
}

/// Counters of the command queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CmdqStats {
    /// Commands consumed (CONS moved past them).
    pub consumed: u64,
    /// CMD_SYNCs completed.
    pub syncs: u64,
    /// TLBI_* commands consumed.
    pub tlbi: u64,
    /// CFGI_* commands consumed.
    pub cfgi: u64,
    /// ATC_INV commands consumed.
    pub atc_inv: u64,
    /// PREFETCH_* commands consumed.
    pub prefetch: u64,
    /// Errors reported in CMDQ_CONS.ERR.
    pub errors: u64,
}

#[derive(Clone, Copy, Debug)]
struct Inject {
    skip: u64,
    kind: CmdqFault,
}

/// Command queue state.
pub(crate) struct Cmdq {
    pub(crate) enabled: bool,
    base: u64,
    log2: u8,
    cons: QueueIndex,
    /// CMDQ_CONS.ERR as last reported (kept after recovery, as QEMU does).
    err: u8,
    pub(crate) stall_syncs: bool,
    /// Whether consumption currently waits at a stalled CMD_SYNC.
    pub(crate) stalled: bool,
    inject: Option<Inject>,
    pub(crate) log: Vec<Command>,
    pub(crate) stats: CmdqStats,
}

impl Cmdq {
    pub(crate) fn new() -> Self {
        Self {
            enabled: false,
            base: 0,
            log2: 0,
            cons: QueueIndex::from_reg(0, 0),
            err: 0,
            stall_syncs: false,
            stalled: false,
            inject: None,
            log: Vec::new(),
            stats: CmdqStats::default(),
        }
    }

    pub(crate) fn inject(&mut self, skip: u64, kind: CmdqFault) {
        self.inject = Some(Inject { skip, kind });
    }

    fn cons_reg(&self) -> u32 {
        self.cons.to_reg() | (u32::from(self.err) << 24)
    }
}

impl Model {
    /// CMDQEN was acknowledged on: latch base and indices, then run.
    pub(crate) fn cmdq_enable(&mut self, hw: &Hw) {
        let (base, log2) = decode_base(hw.regs.r64(off::CMDQ_BASE), self.feat.cmdq_log2, 16);
        let q = &mut self.cmdq;
        q.enabled = true;
        q.base = base;
        q.log2 = log2;
        q.cons = QueueIndex::from_reg(log2, hw.regs.r32(off::CMDQ_CONS));
        self.cmdq_consume(hw);
    }

    /// CMDQ_CONS written by software: accepted only while the queue is disabled.
    pub(crate) fn cmdq_cons_written(&mut self, hw: &Hw) {
        if self.cmdq.enabled {
            hw.regs.w32(off::CMDQ_CONS, self.cmdq.cons_reg());
        } else {
            self.cmdq.err = 0;
        }
    }

    fn cmdq_error(&mut self, hw: &Hw, code: u8) {
        self.cmdq.err = code;
        self.cmdq.stats.errors += 1;
        hw.regs.w32(off::CMDQ_CONS, self.cmdq.cons_reg());
        self.raise_gerror(hw, GERROR_CMDQ_ERR);
    }

    /// Consumes commands from CONS up to PROD (IHI 0070 §4.1).
    pub(crate) fn cmdq_consume(&mut self, hw: &Hw) {
        if !self.cmdq.enabled {
            return;
        }
        let prod = QueueIndex::from_reg(self.cmdq.log2, hw.regs.r32(off::CMDQ_PROD));
        self.cmdq.stalled = false;
        while !QueueIndex::is_empty(prod, self.cmdq.cons) {
            if (self.ctl.gerror ^ self.ctl.gerrorn) & GERROR_CMDQ_ERR != 0 {
                return;
            }
            let addr = PhysAddr(self.cmdq.base + 16 * u64::from(self.cmdq.cons.index()));
            let raw = hw.dma.read_dwords::<2>(addr);
            let is_sync = raw.is_some_and(|r| CmdqEntry(r).opcode() == 0x46);
            if let Some(inj) = self.cmdq.inject {
                let fire = inj.skip == 0 && (inj.kind != CmdqFault::AtcInvSync || is_sync);
                if fire {
                    self.cmdq.inject = None;
                    let code = match inj.kind {
                        CmdqFault::Abort => CERROR_ABT,
                        CmdqFault::AtcInvSync => CERROR_ATC_INV_SYNC,
                        CmdqFault::Illegal => CERROR_ILL,
                    };
                    self.cmdq_error(hw, code);
                    return;
                }
            }
            let Some(raw) = raw else {
                self.cmdq_error(hw, CERROR_ABT);
                return;
            };
            let cmd = match Command::decode(CmdqEntry(raw)) {
                Ok(c) if self.cmd_legal(&c) => c,
                _ => {
                    self.cmdq_error(hw, CERROR_ILL);
                    return;
                }
            };
            if is_sync && self.cmdq.stall_syncs {
                self.cmdq.stalled = true;
                return;
            }
            self.cmdq.cons = self.cmdq.cons.next();
            hw.regs.w32(off::CMDQ_CONS, self.cmdq.cons_reg());
            if let Some(inj) = self.cmdq.inject.as_mut() {
                inj.skip = inj.skip.saturating_sub(1);
            }
            self.cmdq.stats.consumed += 1;
            self.execute(hw, &cmd);
            self.cmdq.log.push(cmd);
        }
    }

    /// Checks that depend on the SMMU's features (IHI 0070 §4.3.5, §4.7.2).
    fn cmd_legal(&self, cmd: &Command) -> bool {
        match cmd {
            Command::CfgiVmsPidm { .. } => self.feat.mpam,
            Command::StallTerm { .. } => self.feat.stall_model != StallModel::TerminateOnly,
            _ => true,
        }
    }

    /// The effect of one consumed command.
    fn execute(&mut self, hw: &Hw, cmd: &Command) {
        let s = &mut self.cmdq.stats;
        match *cmd {
            Command::CfgiSte { sid, .. } => {
                s.cfgi += 1;
                self.strtab_invalidate(hw, Some((sid, 0)));
            }
            Command::CfgiSteRange { sid, range } => {
                s.cfgi += 1;
                let span = if range >= 31 { 32 } else { range + 1 };
                self.strtab_invalidate(hw, Some((sid, span)));
            }
            Command::CfgiAll => {
                s.cfgi += 1;
                self.strtab_invalidate(hw, None);
            }
            Command::CfgiCd { .. } | Command::CfgiCdAll { .. } | Command::CfgiVmsPidm { .. } => {
                s.cfgi += 1;
            }
            Command::TlbiNhAll { .. }
            | Command::TlbiNhAsid { .. }
            | Command::TlbiNhVa { .. }
            | Command::TlbiNhVaa { .. }
            | Command::TlbiEl3All
            | Command::TlbiEl3Va { .. }
            | Command::TlbiEl2All
            | Command::TlbiEl2Asid { .. }
            | Command::TlbiEl2Va { .. }
            | Command::TlbiEl2Vaa { .. }
            | Command::TlbiS12Vmall { .. }
            | Command::TlbiS2Ipa { .. }
            | Command::TlbiNsnhAll
            | Command::TlbiSel2All => s.tlbi += 1,
            Command::AtcInv { .. } => s.atc_inv += 1,
            Command::PrefetchConfig { .. } | Command::PrefetchAddr { .. } => s.prefetch += 1,
            Command::Sync {
                cs,
                msi_data,
                msi_addr,
                ..
            } => {
                s.syncs += 1;
                // Transactions before the sync are complete: its completion signal covers them.
                hw.dma.observe_records(DEVICE_WRITES);
                match cs {
                    SyncCs::Irq => {
                        if self.feat.msi && msi_addr.0 != 0 {
                            self.msi_write(hw, msi_addr, msi_data, control::GERROR_MSI_CMDQ_ABT);
                        } else {
                            self.irqs.cmd_sync += 1;
                        }
                    }
                    SyncCs::Sev => {
                        if self.feat.sev {
                            self.irqs.sev += 1;
                        }
                    }
                    SyncCs::None => {}
                }
            }
            Command::PriResp { .. } | Command::Resume { .. } | Command::StallTerm { .. } => {}
        }
    }
}

/// The StreamIDs a CFGI_STE_RANGE covers: `2^span` aligned StreamIDs containing `sid`.
pub(crate) fn cfgi_range(sid: StreamId, span: u8) -> (u32, u32) {
    if span >= 32 {
        return (0, u32::MAX);
    }
    let mask = (1u32 << span) - 1;
    (sid.0 & !mask, sid.0 | mask)
}
