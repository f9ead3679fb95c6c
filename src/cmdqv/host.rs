//! Host command submission on VINTF0's logical queues (tegra241-cmdqv §7.5).
//!
//! A batch is written into the ring, closed with a CMD_SYNC (CS = NONE), published with one PROD
//! write, and completed by polling CONS: one PROD write and at least one CONS read per batch.
//! The CONS value last read is cached, so the space check costs no MMIO while the ring has room.

use core::sync::atomic::Ordering;

use super::{Cmdqv, CpuIndex, HostQueue, MainCmdq, tegra264_repeats};
use crate::command::{CmdqEntry, Command, Opcode};
use crate::error::{CmdqError, Error, WaitFor};
use crate::platform::Platform;
use crate::queue::{CMDQ_ENTRY_BYTES, QueueIndex};

/// Whether a non-HYP_OWN queue takes `cmd`: TLBI_NH_ASID, TLBI_NH_VA, ATC_INV, and the CMD_SYNC
/// that closes a batch (tegra241-cmdqv §7.5).
pub const fn guest_queue_accepts(cmd: &Command) -> bool {
    matches!(
        cmd.opcode(),
        Opcode::TlbiNhAsid | Opcode::TlbiNhVa | Opcode::AtcInv | Opcode::Sync
    )
}

impl<P: Platform> Cmdqv<P> {
    /// Issues `cmds` and waits for them to complete, on VINTF0's logical queue
    /// `cpu % lvcmdqs_per_vintf` (tegra241-cmdqv §7.5). Commands the queue does not take (when
    /// VINTF0 is not HYP_OWN), and everything while VCMDQs are bypassed or not ready, go to the
    /// SMMU's queue through `main`; a batch is flushed with its CMD_SYNC whenever the target
    /// changes. On a Tegra264 board the CFGI/TLBI commands of each VCMDQ batch are issued again
    /// once its CMD_SYNC completed (the SMMU driver applies the same rule on `main`).
    ///
    /// # Errors
    /// [`Error::Timeout`]`(`[`WaitFor::CmdSync`]`)` or `(`[`WaitFor::CmdqSpace`]`)` when the
    /// queue does not progress; [`Error::Cmdq`] when a command of the batch stopped the queue (it
    /// was skipped, the rest of the batch ran); what `main` returns.
    pub fn submit<M: MainCmdq>(
        &self,
        cpu: CpuIndex,
        cmds: &[Command],
        main: &M,
    ) -> Result<(), Error> {
        if cmds.is_empty() {
            return Ok(());
        }
        let queue = if self.cfg.bypass_vcmdq || !self.ready.load(Ordering::Acquire) {
            None
        } else {
            self.host.get(cpu.0 as usize % self.per_vintf.max(1))
        };
        let Some(hq) = queue else {
            return main.issue_sync(cmds);
        };
        let l = cpu.0 as usize % self.per_vintf.max(1);
        if self.hyp_own() {
            return self.issue_vcmdq(l, hq, cmds);
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
                self.issue_vcmdq(l, hq, run)?;
            } else {
                main.issue_sync(run)?;
            }
            rest = tail;
        }
        Ok(())
    }

    /// One batch plus CMD_SYNC on `hq`, and the Tegra264 repeat.
    fn issue_vcmdq(&self, l: usize, hq: &HostQueue, cmds: &[Command]) -> Result<(), Error> {
        self.issue_filtered(l, hq, cmds, |_| true)?;
        if self.cfg.board.repeats_tlbi_cfgi() && cmds.iter().any(tegra264_repeats) {
            self.issue_filtered(l, hq, cmds, tegra264_repeats)?;
        }
        Ok(())
    }

    /// Writes the commands of `cmds` that pass `keep`, then a CMD_SYNC, and waits for it.
    fn issue_filtered(
        &self,
        l: usize,
        hq: &HostQueue,
        cmds: &[Command],
        keep: fn(&Command) -> bool,
    ) -> Result<(), Error> {
        let (q, _) = self.lvcmdq(0, l).ok_or(Error::InvalidArgument)?;
        let mut sw = hq.sw.lock();
        let epoch = hq.err_epoch.load(Ordering::Acquire);
        let mut it = cmds.iter().filter(|c| keep(c));
        let sync_at;
        loop {
            let mut free = QueueIndex::free(sw.prod, sw.cons);
            if free == 0 {
                self.poll(WaitFor::CmdqSpace, || {
                    let raw = self.read(&q.CONS);
                    sw.cons = QueueIndex::from_reg(hq.log2, raw);
                    self.recover_if_stopped(l, raw & ERR_MASK != 0);
                    QueueIndex::free(sw.prod, sw.cons) > 0
                })?;
                free = QueueIndex::free(sw.prod, sw.cons);
            }
            let mut sync = None;
            for _ in 0..free {
                let entry = match it.next() {
                    Some(c) => c.encode(),
                    None => {
                        sync = Some(sw.prod);
                        Command::sync().encode()
                    }
                };
                self.write_entry(hq, sw.prod, entry);
                sw.prod = sw.prod.next();
                if sync.is_some() {
                    break;
                }
            }
            publish_barrier();
            self.write(&q.PROD, sw.prod.to_reg());
            if let Some(pos) = sync {
                sync_at = pos;
                break;
            }
        }
        self.poll(WaitFor::CmdSync, || {
            let raw = self.read(&q.CONS);
            sw.cons = QueueIndex::from_reg(hq.log2, raw);
            if QueueIndex::has_consumed(sw.cons, sync_at) {
                return true;
            }
            self.recover_if_stopped(l, raw & ERR_MASK != 0);
            false
        })?;
        drop(sw);
        if hq.err_epoch.load(Ordering::Acquire) != epoch {
            return Err(Error::Cmdq(self.last_error(hq)));
        }
        Ok(())
    }

    /// Runs the host-queue recovery of LVCMDQ `l` when CONS shows an error code.
    fn recover_if_stopped(&self, l: usize, err_bits: bool) {
        if err_bits {
            let _ = self.recover_host_queue(l);
        }
    }

    /// The last error recovered on `hq`.
    fn last_error(&self, hq: &HostQueue) -> CmdqError {
        let raw = [
            hq.err_raw[0].load(Ordering::Relaxed),
            hq.err_raw[1].load(Ordering::Relaxed),
        ];
        cmdq_error(hq.err_code.load(Ordering::Relaxed), raw)
    }

    /// Writes one 16-byte entry at `pos` of `hq`'s ring (and cleans it for a non-coherent SMMU).
    fn write_entry(&self, hq: &HostQueue, pos: QueueIndex, e: CmdqEntry) {
        let offset = pos.index() as usize * CMDQ_ENTRY_BYTES;
        if offset + CMDQ_ENTRY_BYTES > hq.ring.size {
            return;
        }
        // SAFETY: `offset + 16 <= ring.size` (checked); the ring was lent by `DmaMemory` for the
        // life of the driver, is 16-byte aligned, and this slot is between the hardware's CONS
        // and our PROD, which only the holder of the queue lock writes.
        let p = unsafe { hq.ring.vaddr.add(offset).cast::<u64>() };
        // SAFETY: as above; volatile because the SMMU reads the memory.
        unsafe {
            p.write_volatile(e.0[0].to_le());
            p.add(1).write_volatile(e.0[1].to_le());
        }
        if !self.cfg.coherent {
            self.platform.dma_flush(p.cast(), CMDQ_ENTRY_BYTES);
        }
    }
}

/// VCMDQ_CONS.ERR, bits \[30:24\].
pub(super) const ERR_MASK: u32 = 0x7F << 24;

/// The typed error of a CONS.ERR code and the command at CONS.
pub(super) const fn cmdq_error(code: u32, raw: [u64; 2]) -> CmdqError {
    match code {
        1 => CmdqError::Illegal(raw),
        2 => CmdqError::Abort,
        3 => CmdqError::AtcInvSync,
        4 => CmdqError::IllegalAccess(raw),
        c => CmdqError::Unknown(c as u8),
    }
}

/// Orders the queue entries written to memory before the PROD write that publishes them (the
/// `dma_wmb` before an MMIO write).
#[inline]
pub(super) fn publish_barrier() {
    #[cfg(target_arch = "aarch64")]
    aarch64_cpu::asm::barrier::dmb(aarch64_cpu::asm::barrier::OSHST);
    #[cfg(not(target_arch = "aarch64"))]
    core::sync::atomic::fence(Ordering::Release);
}
