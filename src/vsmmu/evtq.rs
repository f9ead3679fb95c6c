//! The guest's event queue: vEVENTQ records copied into guest memory, with EVENTQ_PROD.OVFLG
//! for every loss (IHI 0070 §3.5, §7.4).

use crate::event::EvtqEntry;
use crate::ids::Ipa;
use crate::iommufd::{VeventFlags, VeventHeader};
use crate::queue::{EVTQ_ENTRY_BYTES, QueueIndex};
use crate::regs::IRQ_CTRL;

use super::regs;
use super::{Backend, DeliverStats, GuestIrq, GuestMemory, IrqLine, State, VSmmu};

/// vEVENTQ records read per call of [`Backend::read_vevents`].
const READ_BATCH: usize = 16;
/// One vEVENTQ record: header + SMMUv3 event.
const RECORD: usize = VeventHeader::SIZE + EVTQ_ENTRY_BYTES;

/// What writing one record into the guest's queue did.
enum Pushed {
    Written,
    Lost,
    Discarded,
}

impl<B: Backend, M: GuestMemory, I: GuestIrq> VSmmu<B, M, I> {
    /// The event queue's effective base IPA and log2 size.
    fn evtq_geometry(&self, st: &State) -> (u64, u8) {
        self.queue_geometry(st.regs.eventq_base, self.cfg.evtq_log2, EVTQ_ENTRY_BYTES)
    }

    /// A record was lost: toggles EVENTQ_PROD.OVFLG unless an overflow is already waiting for
    /// the guest's acknowledgement (PROD.OVFLG != CONS.OVACKFLG, IHI 0070 §7.4).
    fn lose(&self, st: &mut State) {
        st.stats.events_lost += 1;
        let pending = (st.regs.eventq_prod ^ st.regs.eventq_cons) & regs::OVF != 0;
        if !pending {
            st.regs.eventq_prod ^= regs::OVF;
            st.stats.overflows += 1;
        }
    }

    fn push(&self, st: &mut State, e: &EvtqEntry) -> Pushed {
        if !st.regs.eventqen() {
            st.stats.events_discarded += 1;
            return Pushed::Discarded;
        }
        if st.regs.gerror_active() & regs::GERROR_EVTQ_ABT != 0 {
            // The queue's memory aborted: records are lost until the guest acknowledges
            // GERROR.EVENTQ_ABT_ERR, which is what tells it.
            st.stats.events_lost += 1;
            return Pushed::Lost;
        }
        let (base, log2) = self.evtq_geometry(st);
        let prod = QueueIndex::from_reg(log2, st.regs.eventq_prod);
        let cons = QueueIndex::from_reg(log2, st.regs.eventq_cons);
        if QueueIndex::is_full(prod, cons) {
            self.lose(st);
            return Pushed::Lost;
        }
        let mut bytes = [0u8; EVTQ_ENTRY_BYTES];
        for (dst, w) in bytes.chunks_exact_mut(8).zip(e.0) {
            dst.copy_from_slice(&w.to_le_bytes());
        }
        let at = base + (EVTQ_ENTRY_BYTES as u64) * u64::from(prod.index());
        if self.mem.write(Ipa(at), &bytes).is_err() {
            st.stats.events_lost += 1;
            self.gerror(st, regs::GERROR_EVTQ_ABT);
            return Pushed::Lost;
        }
        // The record is in guest memory before PROD says so: the guest reads PROD through a
        // trap that returns only after this store.
        let next = prod.next().to_reg();
        st.regs.eventq_prod = (st.regs.eventq_prod & !regs::index_mask(log2)) | next;
        st.stats.events_written += 1;
        Pushed::Written
    }

    /// Writes one record the virtual SMMU made itself (C_BAD_STE, F_STE_FETCH) and signals it.
    pub(super) fn push_event(&self, st: &mut State, e: EvtqEntry) {
        let before = st.regs.eventq_prod;
        self.push(st, &e);
        self.signal(st, before);
    }

    fn signal(&self, st: &State, prod_before: u32) {
        if st.regs.eventq_prod != prod_before
            && st.regs.irq_ctrl & IRQ_CTRL::EVENTQ_IRQEN::SET.value != 0
        {
            self.irq.raise(IrqLine::Eventq);
        }
    }

    /// Copies pending vEVENTQ records into the guest's queue. Bounded: at most one guest
    /// queue's worth of records plus one read batch per call. A full guest queue loses the
    /// records (as an SMMU does) and toggles OVFLG; so do a LOST_EVENTS marker and a gap in the
    /// vEVENTQ's sequence numbers.
    pub(super) fn deliver(&self, st: &mut State) -> DeliverStats {
        let mut out = DeliverStats::default();
        let before = st.regs.eventq_prod;
        let (_, log2) = self.evtq_geometry(st);
        let passes = (1usize << log2) / READ_BATCH + 2;
        let mut buf = [0u8; READ_BATCH * RECORD];
        for _ in 0..passes {
            let prod = QueueIndex::from_reg(log2, st.regs.eventq_prod);
            let cons = QueueIndex::from_reg(log2, st.regs.eventq_cons);
            let free = QueueIndex::free(prod, cons) as usize;
            // With no room, read a batch anyway: those records are lost, and OVFLG says so.
            let want = if free == 0 {
                READ_BATCH
            } else {
                free.min(READ_BATCH)
            };
            let Some(dst) = buf.get_mut(..want * RECORD) else {
                break;
            };
            let n = match self.backend.read_vevents(dst) {
                Ok(n) => n,
                Err(_) => break,
            };
            if n == 0 {
                break;
            }
            let mut at = 0usize;
            while let Some(h) = buf.get(at..n).and_then(VeventHeader::from_prefix) {
                at += VeventHeader::SIZE;
                let seq = h.sequence & VeventHeader::SEQUENCE_MASK;
                let gap = st.next_seq.is_some_and(|s| s != seq);
                st.next_seq = Some(seq.wrapping_add(1) & VeventHeader::SEQUENCE_MASK);
                if h.flags & VeventFlags::LOST_EVENTS.bits() != 0 {
                    self.lose(st);
                    out.lost += 1;
                    continue;
                }
                if gap {
                    self.lose(st);
                    out.lost += 1;
                }
                let Some(rec) = buf.get(at..at + EVTQ_ENTRY_BYTES) else {
                    break;
                };
                at += EVTQ_ENTRY_BYTES;
                let e = EvtqEntry(core::array::from_fn(|i| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(rec.get(8 * i..8 * i + 8).unwrap_or(&[0; 8]));
                    u64::from_le_bytes(w)
                }));
                match self.push(st, &e) {
                    Pushed::Written => out.written += 1,
                    Pushed::Lost => out.lost += 1,
                    Pushed::Discarded => out.discarded += 1,
                }
            }
        }
        self.signal(st, before);
        out
    }
}
