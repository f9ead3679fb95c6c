//! The guest's command queue: consumed when the guest writes CMDQ_PROD (IHI 0070 §3.5, §4).

use crate::command::{CmdqEntry, Command, Opcode, SyncCs};
use crate::ids::{Ipa, VStreamId};
use crate::queue::{CMDQ_ENTRY_BYTES, QueueIndex};
use crate::viommu::invalidate::INVALIDATE_BATCH;

use super::regs::{self, CERROR_ABT, CERROR_ILL};
use super::{Backend, GuestIrq, GuestMemory, IrqLine, State, VSmmu};

/// Forwardable commands waiting for the next CMD_SYNC (or a full batch), with the queue
/// position of the first.
struct Batch {
    cmds: [CmdqEntry; INVALIDATE_BATCH],
    len: usize,
    start: QueueIndex,
}

/// What a guest command asks of the virtual SMMU.
enum Kind {
    /// Goes through the guest-command sanitiser to the physical SMMU.
    Forward,
    /// CFGI_STE / CFGI_STE_RANGE / CFGI_ALL: StreamIDs `[lo, lo + n)` of the guest's table.
    Cfgi { lo: u64, n: u64 },
    /// PREFETCH_*: nothing to do.
    Absorb,
    /// CMD_SYNC, and whether it signals the cmdq-sync line (CS = SIG_IRQ).
    Sync { irq: bool },
    /// Anything the virtual SMMU does not offer or that is malformed.
    Illegal,
}

fn classify(raw: CmdqEntry) -> Kind {
    let op = Opcode::from_u8(raw.opcode());
    match op {
        Some(
            Opcode::TlbiNhAll
            | Opcode::TlbiNhAsid
            | Opcode::TlbiNhVa
            | Opcode::TlbiNhVaa
            | Opcode::TlbiNsnhAll
            | Opcode::CfgiCd
            | Opcode::CfgiCdAll
            | Opcode::AtcInv,
        ) => return Kind::Forward,
        Some(Opcode::CfgiSte | Opcode::CfgiSteRange | Opcode::PrefetchConfig)
        | Some(Opcode::PrefetchAddr | Opcode::Sync) => {}
        _ => return Kind::Illegal,
    }
    match Command::decode(raw) {
        Ok(Command::CfgiSte { sid, .. }) => Kind::Cfgi {
            lo: u64::from(sid.0),
            n: 1,
        },
        Ok(Command::CfgiSteRange { sid, range }) => {
            let n = 2u64 << range.min(31);
            Kind::Cfgi {
                lo: u64::from(sid.0) & !(n - 1),
                n,
            }
        }
        Ok(Command::CfgiAll) => Kind::Cfgi { lo: 0, n: 1 << 32 },
        Ok(Command::PrefetchConfig { .. } | Command::PrefetchAddr { .. }) => Kind::Absorb,
        // SIG_SEV without IDR0.SEV behaves as SIG_NONE (IHI 0070 §4.7.3); MSIs are not offered,
        // so MSIAddr is ignored and SIG_IRQ signals the wired cmdq-sync line.
        Ok(Command::Sync { cs, .. }) => Kind::Sync {
            irq: cs == SyncCs::Irq,
        },
        _ => Kind::Illegal,
    }
}

impl<B: Backend, M: GuestMemory, I: GuestIrq> VSmmu<B, M, I> {
    /// The command queue's effective base IPA and log2 size.
    fn cmdq_geometry(&self, st: &State) -> (u64, u8) {
        self.queue_geometry(st.regs.cmdq_base, self.cfg.cmdq_log2, CMDQ_ENTRY_BYTES)
    }

    /// Consumes the guest's command queue from CONS to PROD, at most one queue's worth of
    /// entries per call (so a PROD beyond the queue's size cannot make it loop), stopping at
    /// the first command it refuses (CMDQ_CONS.ERR, GERROR.CMDQ_ERR, IHI 0070 §4.8).
    pub(super) fn run_cmdq(&self, st: &mut State) {
        if !st.regs.cmdqen() || st.regs.gerror_active() & regs::GERROR_CMDQ != 0 {
            return;
        }
        let (base, log2) = self.cmdq_geometry(st);
        let prod = QueueIndex::from_reg(log2, st.regs.cmdq_prod).with_ovf(false);
        let mut cons = QueueIndex::from_reg(log2, st.regs.cmdq_cons).with_ovf(false);
        let mut batch = Batch {
            cmds: [CmdqEntry::default(); INVALIDATE_BATCH],
            len: 0,
            start: cons,
        };
        let mut error = None;
        for _ in 0..cons.entries() {
            if QueueIndex::is_empty(prod, cons) {
                break;
            }
            let ipa = base + (CMDQ_ENTRY_BYTES as u64) * u64::from(cons.index());
            let mut bytes = [0u8; CMDQ_ENTRY_BYTES];
            if self.mem.read(Ipa(ipa), &mut bytes).is_err() {
                error = Some(
                    self.flush(st, &mut batch)
                        .err()
                        .map_or((cons, CERROR_ABT), |at| (at, CERROR_ILL)),
                );
                break;
            }
            let raw = CmdqEntry(core::array::from_fn(|i| {
                let mut w = [0u8; 8];
                w.copy_from_slice(bytes.get(8 * i..8 * i + 8).unwrap_or(&[0; 8]));
                u64::from_le_bytes(w)
            }));
            st.stats.commands += 1;
            let kind = classify(raw);
            if let Kind::Forward = kind {
                if batch.len == INVALIDATE_BATCH
                    && let Err(at) = self.flush(st, &mut batch)
                {
                    error = Some((at, CERROR_ILL));
                    break;
                }
                if batch.len == 0 {
                    batch.start = cons;
                }
                if let Some(slot) = batch.cmds.get_mut(batch.len) {
                    *slot = raw;
                    batch.len += 1;
                }
                cons = cons.next();
                continue;
            }
            // Everything else runs after the forwardable commands before it.
            if let Err(at) = self.flush(st, &mut batch) {
                error = Some((at, CERROR_ILL));
                break;
            }
            match kind {
                Kind::Cfgi { lo, n } => self.cfgi_range(st, lo, n),
                Kind::Sync { irq } => {
                    st.stats.syncs += 1;
                    if irq {
                        self.irq.raise(IrqLine::CmdqSync);
                    }
                }
                Kind::Absorb | Kind::Forward => {}
                Kind::Illegal => {
                    error = Some((cons, CERROR_ILL));
                    break;
                }
            }
            cons = cons.next();
        }
        if error.is_none()
            && let Err(at) = self.flush(st, &mut batch)
        {
            error = Some((at, CERROR_ILL));
        }
        match error {
            Some((at, code)) => {
                st.stats.cmdq_errors += 1;
                st.regs.cmdq_cons = at.to_reg() | (code << regs::CONS_ERR.shift);
                self.gerror(st, regs::GERROR_CMDQ);
            }
            None => st.regs.cmdq_cons = cons.to_reg(),
        }
    }

    /// Issues the batch through the sanitiser with one physical CMD_SYNC. When it is refused
    /// (all or nothing), the commands are reissued one at a time up to the refused one, whose
    /// queue position is returned: everything before it has executed, as on hardware.
    fn flush(&self, st: &mut State, batch: &mut Batch) -> Result<(), QueueIndex> {
        let n = batch.len;
        batch.len = 0;
        let Some(cmds) = batch.cmds.get(..n) else {
            return Ok(());
        };
        if cmds.is_empty() {
            return Ok(());
        }
        st.stats.batches += 1;
        if self.backend.invalidate(cmds).result.is_ok() {
            st.stats.forwarded += n as u64;
            return Ok(());
        }
        for (i, one) in cmds.chunks(1).enumerate() {
            st.stats.batches += 1;
            if self.backend.invalidate(one).result.is_err() {
                return Err(batch.start.add(i as u32));
            }
            st.stats.forwarded += 1;
        }
        Ok(())
    }

    /// CFGI_STE / CFGI_STE_RANGE / CFGI_ALL over StreamIDs `[lo, lo + n)`: each vDEVICE in the
    /// range takes its configuration from the guest's table again (bounded by the number of
    /// vDEVICEs, not by the range).
    fn cfgi_range(&self, st: &mut State, lo: u64, n: u64) {
        let end = lo.saturating_add(n);
        self.backend.for_each_vsid(&mut |v: VStreamId| {
            let s = u64::from(v.0);
            if (lo..end).contains(&s) {
                self.apply_ste(st, v);
            }
        });
    }
}
