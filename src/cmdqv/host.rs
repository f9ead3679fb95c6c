//! Host command submission on VINTF0's logical queues (Linux's `tegra241_cmdqv_get_cmdq`).
//!
//! Each host VCMDQ is driven by the SMMU driver's command-queue engine
//! ([`Cmdq`](crate::smmu::cmdq::Cmdq)): VCMDQ PROD/CONS/ERR have the SMMU CMDQ's layout, and
//! [`VcmdqHw`] supplies the registers (the queue's own GERROR/GERRORN instead of the SMMU's).
//! The engine batches (one PROD write per batch that fits), closes each batch with a CMD_SYNC
//! with CS = NONE (completion by polling CONS), recovers CONS.ERR, and applies the Tegra264
//! CFGI/TLBI repeat.

use core::sync::atomic::Ordering;

use super::regs::VCMDQ_GERROR;
use super::{Cmdqv, CpuIndex};
use crate::command::{Command, Opcode};
use crate::error::Error;
use crate::platform::{DmaMemory, Platform};
use crate::smmu::{CmdqBackend, CommandSink};

/// Whether a non-HYP_OWN queue takes `cmd`: TLBI_NH_ASID, TLBI_NH_VA, ATC_INV, and the CMD_SYNC
/// that closes a batch (Linux's `tegra241_guest_vcmdq_supports_cmd`).
pub const fn guest_queue_accepts(cmd: &Command) -> bool {
    matches!(
        cmd.opcode(),
        Opcode::TlbiNhAsid | Opcode::TlbiNhVa | Opcode::AtcInv | Opcode::Sync
    )
}

/// The registers of host queue `l` (VINTF0's logical page), for the command-queue engine.
pub(super) struct VcmdqHw<'a, P: Platform, D: DmaMemory> {
    pub(super) cmdqv: &'a Cmdqv<P, D>,
    pub(super) l: usize,
}

impl<P: Platform, D: DmaMemory> CmdqBackend for VcmdqHw<'_, P, D> {
    fn write_prod(&self, prod: u32) {
        if let Ok((q, _)) = self.cmdqv.lvcmdq(0, self.l) {
            self.cmdqv.write(&q.PROD, prod);
        }
    }

    fn read_cons(&self) -> u32 {
        self.cmdqv
            .lvcmdq(0, self.l)
            .ok()
            .map_or(0, |(q, _)| self.cmdqv.read(&q.CONS))
    }

    fn error_active(&self) -> bool {
        self.cmdqv.lvcmdq(0, self.l).ok().is_some_and(|(q, _)| {
            let g = self.cmdqv.read(&q.GERROR);
            let n = self.cmdqv.read(&q.GERRORN);
            (g ^ n) & VCMDQ_GERROR::CMDQ_ERR::SET.value != 0
        })
    }

    fn ack_error(&self) {
        if let Ok((q, _)) = self.cmdqv.lvcmdq(0, self.l) {
            let g = self.cmdqv.read(&q.GERROR);
            self.cmdqv.write(&q.GERRORN, g);
        }
    }
}

impl<P: Platform, D: DmaMemory> Cmdqv<P, D> {
    /// Issues `cmds` and waits for them to complete, on VINTF0's logical queue
    /// `cpu % lvcmdqs_per_vintf` (Linux's `tegra241_cmdqv_get_cmdq`), so CPUs do not contend on one queue.
    /// Commands the queue does not take (when VINTF0 is not HYP_OWN), and everything while
    /// VCMDQs are bypassed or not ready, go to the SMMU's queue through `main`; a batch is
    /// closed with its CMD_SYNC whenever the target changes. MMIO per batch that fits the
    /// queue: one PROD write and one CONS read.
    ///
    /// # Errors
    /// As [`Cmdq::submit`](crate::smmu::cmdq::Cmdq::submit): [`Error::Timeout`] when the queue
    /// does not progress; [`Error::Cmdq`] when a command was refused (it was replaced by a
    /// CMD_SYNC and the rest of the batch ran). What `main` returns for its part.
    pub fn submit<M: CommandSink + ?Sized>(
        &self,
        cpu: CpuIndex,
        cmds: &[Command],
        main: &M,
    ) -> Result<(), Error> {
        if cmds.is_empty() {
            return Ok(());
        }
        let l = cpu.0 as usize % self.per_vintf.max(1);
        let ready = !self.cfg.bypass_vcmdq && self.ready.load(Ordering::Acquire);
        let Some(hq) = self.host.get(l).filter(|_| ready) else {
            return main.submit(cmds);
        };
        let hw = VcmdqHw { cmdqv: self, l };
        if self.hyp_own() {
            return hq.submit(&hw, &self.platform, cmds);
        }
        // Not HYP_OWN: runs of accepted commands go to the VCMDQ, the others to the SMMU queue.
        let mut rest = cmds;
        while let Some(first) = rest.first() {
            let on_vcmdq = guest_queue_accepts(first);
            let n = rest
                .iter()
                .position(|c| guest_queue_accepts(c) != on_vcmdq)
                .unwrap_or(rest.len());
            let (run, tail) = rest.split_at(n);
            if on_vcmdq {
                hq.submit(&hw, &self.platform, run)?;
            } else {
                main.submit(run)?;
            }
            rest = tail;
        }
        Ok(())
    }

    /// Counters of host queue `l`'s engine (batches, PROD writes, recovered errors...).
    pub fn host_queue_counters(&self, l: usize) -> Option<crate::smmu::CmdqStats> {
        self.host.get(l).map(crate::smmu::cmdq::Cmdq::counters)
    }
}

/// VINTF0 seen as a [`CommandSink`] for one CPU: lets layers generic over a sink (batching,
/// invalidation forwarding) use a host VCMDQ. Commands it does not take go to `main`.
pub struct VcmdqSink<'a, P: Platform, D: DmaMemory, M: CommandSink + ?Sized> {
    /// The CMDQV.
    pub cmdqv: &'a Cmdqv<P, D>,
    /// The CPU whose queue to use.
    pub cpu: CpuIndex,
    /// The SMMU's own queue.
    pub main: &'a M,
}

impl<P: Platform, D: DmaMemory, M: CommandSink + ?Sized> CommandSink for VcmdqSink<'_, P, D, M> {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        self.cmdqv.submit(self.cpu, cmds, self.main)
    }
}
