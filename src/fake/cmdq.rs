//! The command queue (IHI 0070 §4): consumed synchronously when CMDQ_PROD is written, as QEMU
//! does, until CONS reaches PROD, an error stops it (CMDQ_CONS.ERR, GERROR.CMDQ_ERR; resumed
//! after GERRORN acknowledges it), or a stalled CMD_SYNC holds it.

use super::bits::{self, GERROR_CMDQ_ERR};
use super::queues::decode_base;
use super::regs::off;
use super::{Hw, Model};
use crate::command::{CmdqEntry, Command};
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

/// What the model acts on in a command, decoded here with the field positions of IHI 0070 §4.1
/// (command formats) rather than with the driver's `Command::decode`, so that a misplaced field
/// in the driver's encoder and decoder cannot pass both.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    /// CMD_CFGI_STE (0x03): SID, dword 0 `[63:32]`.
    CfgiSte { sid: u32 },
    /// CMD_CFGI_STE_RANGE (0x04): SID `[63:32]`, Range dword 1 `[4:0]` (31: CMD_CFGI_ALL).
    CfgiSteRange { sid: u32, range: u8 },
    /// CMD_CFGI_CD (0x05), CMD_CFGI_CD_ALL (0x06).
    CfgiCd,
    /// CMD_CFGI_VMS_PIDM (0x07): legal only with IDR3.MPAM.
    CfgiVmsPidm,
    /// CMD_TLBI_* of the Non-secure and EL2/EL3 regimes (0x10-0x30) and CMD_TLBI_S_EL2_ALL.
    Tlbi,
    /// CMD_ATC_INV (0x40).
    AtcInv,
    /// CMD_PREFETCH_CONFIG (0x01), CMD_PREFETCH_ADDR (0x02).
    Prefetch,
    /// CMD_SYNC (0x46): CS dword 0 `[13:12]`, MSIData `[63:32]`, MSIAddr dword 1 `[51:2]`.
    Sync {
        cs: u8,
        msi_data: u32,
        msi_addr: u64,
    },
    /// CMD_PRI_RESP (0x41), CMD_RESUME (0x44).
    Response,
    /// CMD_STALL_TERM (0x45): illegal on a terminate-only SMMU.
    StallTerm,
}

/// CMD_SYNC CS = SIG_IRQ.
const CS_SIG_IRQ: u8 = 1;
/// CMD_SYNC CS = SIG_SEV.
const CS_SIG_SEV: u8 = 2;

/// Decodes `raw` for the model; `None` for what the model refuses with CERROR_ILL: reserved
/// opcodes, the Secure-only opcodes the Non-secure queue cannot take (0x51-0x73), SSec = 1
/// (dword 0 bit 10) where the command has it, CMD_SYNC CS = 0b11, CMD_PRI_RESP Resp = 0b11
/// (dword 1 `[13:12]`), and a range TLBI with TG != 0 and NUM = SCALE = TTL = 0.
fn decode_op(raw: [u64; 2]) -> Option<Op> {
    let [d0, d1] = raw;
    let opcode = (d0 & 0xff) as u8;
    let ssec = d0 & (1 << 10) != 0;
    let sid = (d0 >> 32) as u32;
    let op = match opcode {
        0x01 | 0x02 => Op::Prefetch,
        0x03 => Op::CfgiSte { sid },
        0x04 => Op::CfgiSteRange {
            sid,
            range: (d1 & 0x1f) as u8,
        },
        0x05 | 0x06 => Op::CfgiCd,
        0x07 => Op::CfgiVmsPidm,
        0x12 | 0x13 | 0x1a | 0x22 | 0x23 | 0x2a => {
            let (num, scale) = ((d0 >> 12) & 0x1f, (d0 >> 20) & 0x1f);
            let (ttl, tg) = ((d1 >> 8) & 0x3, (d1 >> 10) & 0x3);
            if tg != 0 && num == 0 && scale == 0 && ttl == 0 {
                return None;
            }
            Op::Tlbi
        }
        0x10 | 0x11 | 0x18 | 0x20 | 0x21 | 0x28 | 0x30 | 0x50 => Op::Tlbi,
        0x40 => Op::AtcInv,
        0x41 if (d1 >> 12) & 0x3 == 0x3 => return None,
        0x41 | 0x44 => Op::Response,
        0x45 => Op::StallTerm,
        0x46 => {
            let cs = ((d0 >> 12) & 0x3) as u8;
            if cs == 0x3 {
                return None;
            }
            Op::Sync {
                cs,
                msi_data: (d0 >> 32) as u32,
                msi_addr: d1 & 0x000f_ffff_ffff_fffc,
            }
        }
        _ => return None,
    };
    // SSec: PREFETCH_*, CFGI_*, RESUME and STALL_TERM carry it in dword 0 bit 10.
    let has_ssec = matches!(opcode, 0x01..=0x07 | 0x44 | 0x45);
    if has_ssec && ssec {
        return None;
    }
    Some(op)
}

/// An error the test asks the command queue to report (see [`SmmuModel::inject_cmdq_error`]).
///
/// [`SmmuModel::inject_cmdq_error`]: super::SmmuModel::inject_cmdq_error
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
            let op = match decode_op(raw) {
                Some(op) if self.op_legal(op) => op,
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
            self.execute(hw, op);
            // The log is for tests to compare with what they submitted, in the driver's terms.
            if let Ok(cmd) = Command::decode(CmdqEntry(raw)) {
                self.cmdq.log.push(cmd);
            }
        }
    }

    /// Checks that depend on the SMMU's features (IHI 0070 §4.3.5, §4.7.2).
    fn op_legal(&self, op: Op) -> bool {
        match op {
            Op::CfgiVmsPidm => self.feat.mpam,
            Op::StallTerm => self.feat.stall_model != StallModel::TerminateOnly,
            _ => true,
        }
    }

    /// The effect of one consumed command.
    fn execute(&mut self, hw: &Hw, op: Op) {
        let s = &mut self.cmdq.stats;
        match op {
            Op::CfgiSte { sid } => {
                s.cfgi += 1;
                self.strtab_invalidate(hw, Some((StreamId(sid), 0)));
            }
            Op::CfgiSteRange { sid, range } => {
                s.cfgi += 1;
                if range >= 31 {
                    self.strtab_invalidate(hw, None);
                } else {
                    self.strtab_invalidate(hw, Some((StreamId(sid), range + 1)));
                }
            }
            Op::CfgiCd | Op::CfgiVmsPidm => s.cfgi += 1,
            Op::Tlbi => s.tlbi += 1,
            Op::AtcInv => s.atc_inv += 1,
            Op::Prefetch => s.prefetch += 1,
            Op::Sync {
                cs,
                msi_data,
                msi_addr,
            } => {
                s.syncs += 1;
                // Transactions before the sync are complete: its completion signal covers them.
                hw.dma.observe_records(DEVICE_WRITES);
                match cs {
                    CS_SIG_IRQ => {
                        if self.feat.msi && msi_addr != 0 {
                            self.msi_write(
                                hw,
                                PhysAddr(msi_addr),
                                msi_data,
                                bits::GERROR_MSI_CMDQ_ABT,
                            );
                        } else {
                            self.irqs.cmd_sync += 1;
                        }
                    }
                    CS_SIG_SEV if self.feat.sev => self.irqs.sev += 1,
                    _ => {}
                }
            }
            Op::Response | Op::StallTerm => {}
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
