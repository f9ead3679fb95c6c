//! IRQ entry points: event queue and PRI queue drains, global error handling
//! (IHI 0070 §3.5.1, §7, §8, §3.18, §6.3.19-§6.3.20).
//!
//! A drain reads PROD once, copies every new record to the sink, writes CONS once and reads PROD
//! once more to confirm the queue is empty: three MMIO accesses whatever the number of records.
//! Nothing here allocates, panics, waits without bound or takes a lock other code can hold:
//! concurrent drains of one queue are refused by a try-flag, and command-queue recovery only
//! `try_lock`s the command queue.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use super::{GERROR_KNOWN, MainCmdq, Smmu, barrier, bump};
use crate::error::Error;
use crate::event::EvtqEntry;
use crate::platform::{DmaBuf, DmaMemory, Platform};
use crate::pri::PriqEntry;
use crate::queue::{QueueGeometry, QueueIndex};
use crate::regs::GERROR;

/// Passes of one drain before it gives up and reports [`DrainStats::incomplete`]: records that
/// keep arriving while the drain runs cannot hold a CPU in the IRQ path for long.
const MAX_PASSES: u32 = 4;

/// Receives event records from [`Smmu::drain_evtq`].
pub trait EventSink {
    /// One event record, in queue order (IHI 0070 §7.1).
    fn event(&mut self, entry: &EvtqEntry);
    /// Events were lost: the SMMU toggled EVENTQ_PROD.OVFLG, or raised GERROR.EVENTQ_ABT_ERR
    /// (QEMU's overflow). Called once per overflow noticed, after the records copied with it.
    fn overflow(&mut self) {}
}

impl<F: FnMut(&EvtqEntry)> EventSink for F {
    fn event(&mut self, entry: &EvtqEntry) {
        self(entry);
    }
}

/// Receives page requests from [`Smmu::drain_priq`].
pub trait PriSink {
    /// One PRI queue entry, in queue order (IHI 0070 §8.1).
    fn request(&mut self, entry: &PriqEntry);
    /// Page requests were lost (PRIQ_PROD.OVFLG toggled or GERROR.PRIQ_ABT_ERR).
    fn overflow(&mut self) {}
}

impl<F: FnMut(&PriqEntry)> PriSink for F {
    fn request(&mut self, entry: &PriqEntry) {
        self(entry);
    }
}

/// What one drain did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DrainStats {
    /// Records handed to the sink.
    pub records: u32,
    /// Overflows noticed (OVFLG toggles and abort errors since the last drain).
    pub overflows: u32,
    /// Extra passes because records arrived while draining (0 normally).
    pub extra_passes: u32,
    /// MMIO accesses made.
    pub mmio: u32,
    /// Another CPU was draining this queue: nothing was done here, and that CPU runs one more
    /// pass after it lets go (so a record that landed after its last PROD read is not left
    /// behind).
    pub busy: bool,
    /// The drain stopped after its pass bound with records possibly left: call again.
    pub incomplete: bool,
    /// The queue is not live (before [`Smmu::reset`], after [`Smmu::disable`], or absent).
    pub not_ready: bool,
}

/// What one [`Smmu::handle_gerror`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GerrorStats {
    /// The active bits found (GERROR ^ GERRORN, IHI 0070 §6.3.19).
    pub active: u32,
    /// Bits acknowledged through GERRORN by this call (CMDQ_ERR may be left to the waiter).
    pub acked: u32,
    /// CMDQ_ERR was active and a submitter is waiting on the queue: it recovers by itself.
    pub cmdq_deferred: bool,
    /// CMDQ_ERR was recovered here (no submitter waiting); the error found.
    pub cmdq_recovered: Option<crate::error::CmdqError>,
    /// SFM_ERR: the SMMU was disabled; a [`Smmu::reset`] is needed.
    pub disabled: bool,
    /// Events may have been lost or are pending: call [`Smmu::drain_evtq`].
    pub drain_evtq: bool,
    /// Page requests may have been lost or are pending: call [`Smmu::drain_priq`].
    pub drain_priq: bool,
    /// MMIO accesses made.
    pub mmio: u32,
}

impl GerrorStats {
    /// Number of active error bits.
    pub fn errors(&self) -> u32 {
        self.active.count_ones()
    }
}

/// Cumulative counts of each GERROR bit seen active (IHI 0070 §6.3.19).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GerrorBitStats {
    /// CMDQ_ERR, bit 0.
    pub cmdq_err: u64,
    /// EVENTQ_ABT_ERR, bit 2.
    pub eventq_abt_err: u64,
    /// PRIQ_ABT_ERR, bit 3.
    pub priq_abt_err: u64,
    /// MSI_CMDQ_ABT_ERR, bit 4.
    pub msi_cmdq_abt_err: u64,
    /// MSI_EVENTQ_ABT_ERR, bit 5.
    pub msi_eventq_abt_err: u64,
    /// MSI_PRIQ_ABT_ERR, bit 6.
    pub msi_priq_abt_err: u64,
    /// MSI_GERROR_ABT_ERR, bit 7.
    pub msi_gerror_abt_err: u64,
    /// SFM_ERR, bit 8.
    pub sfm_err: u64,
    /// CMDQP_ERR (bit 9), DPT_ERR (bit 10) and the reserved bit 1.
    pub other: u64,
}

/// Cumulative counters of the IRQ path and the command queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SmmuStats {
    /// Event records drained.
    pub events: u64,
    /// Event overflows (OVFLG toggles + EVENTQ_ABT_ERR).
    pub event_overflows: u64,
    /// PRI requests drained.
    pub pri_requests: u64,
    /// PRI overflows (OVFLG toggles + PRIQ_ABT_ERR).
    pub pri_overflows: u64,
    /// Drains refused because another CPU was draining.
    pub drains_busy: u64,
    /// Drains that hit their pass bound.
    pub drains_incomplete: u64,
    /// GERROR bits.
    pub gerror: GerrorBitStats,
    /// GERROR bits found active by [`Smmu::reset`] (left by a previous owner, or raised while
    /// the driver was not ready) and acknowledged there; also counted in `gerror`.
    pub gerror_stale: u64,
    /// Command queue.
    pub cmdq: super::CmdqStats,
}

#[derive(Default)]
pub(super) struct IrqCounters {
    events: AtomicU64,
    event_overflows: AtomicU64,
    pri_requests: AtomicU64,
    pri_overflows: AtomicU64,
    drains_busy: AtomicU64,
    drains_incomplete: AtomicU64,
    gerror: [AtomicU64; 11],
    gerror_stale: AtomicU64,
    /// QEMU-style loss (GERROR.EVENTQ_ABT_ERR) not yet told to an event sink.
    evtq_lost: AtomicBool,
    /// GERROR.PRIQ_ABT_ERR not yet told to a PRI sink.
    priq_lost: AtomicBool,
}

impl IrqCounters {
    /// Counts each active bit of `active` (and as stale, when found by a reset).
    pub(super) fn count_gerror(&self, active: u32, stale: bool) {
        for bit in 0..11u32 {
            if active & (1 << bit) != 0
                && let Some(c) = self.gerror.get(bit as usize)
            {
                bump(c, 1);
                if stale {
                    bump(&self.gerror_stale, 1);
                }
            }
        }
    }
}

/// An SMMU-to-CPU queue (event or PRI): memory, geometry, the software CONS and a drain flag.
pub(super) struct InQueue {
    buf: DmaBuf,
    geo: QueueGeometry,
    /// CONS as last written (index, wrap, OVACKFLG); only the drain holding `busy` writes it.
    cons: AtomicU32,
    busy: AtomicBool,
    /// Set by every drain before it tries `busy`: the holder re-checks it after letting go and
    /// runs again when a refused drain came meanwhile.
    again: AtomicBool,
}

impl InQueue {
    /// A queue over `buf` of `2^log2` records of `entry_bytes`.
    ///
    /// # Safety
    /// As [`Cmdq::new`](super::cmdq::Cmdq::new): `buf` is lent memory valid for reads for as
    /// long as the queue lives, written only by the SMMU, seen by it at `buf.paddr`.
    pub(super) unsafe fn new(buf: DmaBuf, log2: u8, entry_bytes: usize) -> Result<Self, Error> {
        let geo = QueueGeometry::checked(log2, entry_bytes)?;
        geo.check_buffer(&buf)?;
        Ok(Self {
            buf,
            geo,
            cons: AtomicU32::new(0),
            busy: AtomicBool::new(false),
            again: AtomicBool::new(false),
        })
    }

    /// EVENTQ_BASE / PRIQ_BASE: WA | ADDR | LOG2SIZE (IHI 0070 §6.3.29, §6.3.33).
    pub(super) fn base_reg(&self) -> u64 {
        (1u64 << 62)
            | (self.buf.paddr.0 & 0x00ff_ffff_ffff_ffe0)
            | u64::from(self.geo.log2_entries())
    }

    pub(super) fn reset_indices(&self) {
        self.cons.store(0, Ordering::Release);
    }

    /// Copies the `W`-dword record at `at`.
    fn read<const W: usize, P: Platform>(
        &self,
        plat: &P,
        coherent: bool,
        at: QueueIndex,
    ) -> [u64; W] {
        let off = self.geo.offset_of(at);
        let mut out = [0u64; W];
        if off + W * 8 > self.buf.size {
            return out;
        }
        // SAFETY: bounds checked above; the slot is inside the lent queue memory.
        let p: NonNull<u64> = unsafe { self.buf.vaddr.add(off) }.cast();
        if !coherent {
            plat.dma_invalidate(p.cast(), W * 8);
        }
        for (i, q) in out.iter_mut().enumerate() {
            // SAFETY: `i < W` and the record is inside the buffer; the SMMU wrote it before
            // advancing PROD, which was read (and ordered by `dma_rmb`) before this.
            *q = unsafe { p.as_ptr().add(i).read_volatile() };
        }
        out
    }
}

/// The registers of one SMMU-to-CPU queue.
struct InRegs<'a, P: Platform, D: DmaMemory> {
    smmu: &'a Smmu<P, D>,
    pri: bool,
}

impl<P: Platform, D: DmaMemory> InRegs<'_, P, D> {
    fn prod(&self) -> u32 {
        let p1 = self.smmu.p1();
        if self.pri {
            self.smmu.rd(&p1.PRIQ_PROD)
        } else {
            self.smmu.rd(&p1.EVENTQ_PROD)
        }
    }

    fn set_cons(&self, v: u32) {
        let p1 = self.smmu.p1();
        if self.pri {
            self.smmu.wr(&p1.PRIQ_CONS, v);
        } else {
            self.smmu.wr(&p1.EVENTQ_CONS, v);
        }
    }
}

impl<P: Platform, D: DmaMemory> Smmu<P, D> {
    /// Drains the event queue into `sink` (IHI 0070 §7): one PROD read, every new record
    /// copied and handed over, one CONS write (acknowledging an overflow with OVACKFLG = OVFLG),
    /// one PROD read to confirm the queue is empty. If records arrived meanwhile, it runs
    /// another pass (at most 4 in all) and says so in [`DrainStats`].
    ///
    /// IRQ-safe: no allocation, no panic, no unbounded wait, no lock; a second CPU draining at
    /// the same time gets [`DrainStats::busy`], and the first one then drains once more after
    /// letting go (within the same pass bound), since the queue interrupt fires only when the
    /// queue goes from empty to non-empty (IHI 0070 §3.18.2).
    pub fn drain_evtq(&self, sink: &mut impl EventSink) -> DrainStats {
        let lost = &self.counters.evtq_lost;
        self.drain::<4, _>(
            &self.evtq,
            false,
            lost,
            |e| sink.event(&EvtqEntry(*e)),
            &self.counters.events,
            &self.counters.event_overflows,
        )
        .finish(|| sink.overflow())
    }

    /// Drains the PRI queue into `sink` (IHI 0070 §8), as [`Smmu::drain_evtq`]. Without
    /// IDR0.PRI it returns [`DrainStats::not_ready`].
    pub fn drain_priq(&self, sink: &mut impl PriSink) -> DrainStats {
        let Some(q) = &self.priq else {
            return DrainStats {
                not_ready: true,
                ..DrainStats::default()
            };
        };
        self.drain::<2, _>(
            q,
            true,
            &self.counters.priq_lost,
            |e| sink.request(&PriqEntry(*e)),
            &self.counters.pri_requests,
            &self.counters.pri_overflows,
        )
        .finish(|| sink.overflow())
    }

    fn drain<const W: usize, F: FnMut(&[u64; W])>(
        &self,
        q: &InQueue,
        pri: bool,
        lost: &AtomicBool,
        mut each: F,
        records: &AtomicU64,
        overflows: &AtomicU64,
    ) -> Pending {
        let mut st = DrainStats::default();
        if !self.ready.load(Ordering::Acquire) {
            st.not_ready = true;
            return Pending { st, overflows: 0 };
        }
        // Announce the work before trying the flag: a holder that lets go after this store
        // sees it (SeqCst orders the two flags) and drains again.
        q.again.store(true, Ordering::SeqCst);
        if q.busy.swap(true, Ordering::SeqCst) {
            st.busy = true;
            bump(&self.counters.drains_busy, 1);
            return Pending { st, overflows: 0 };
        }
        let regs = InRegs { smmu: self, pri };
        let log2 = q.geo.log2_entries();
        let mut ovf_seen = 0u32;
        let mut pass = 0;
        'rounds: loop {
            q.again.store(false, Ordering::SeqCst);
            let mut cons = QueueIndex::from_reg(log2, q.cons.load(Ordering::Relaxed));
            if lost.swap(false, Ordering::AcqRel) {
                ovf_seen += 1;
            }
            let mut prod = QueueIndex::from_reg(log2, regs.prod());
            st.mmio += 1;
            // PROD observed before any slot it covers is read.
            barrier::dma_rmb();
            loop {
                let n = QueueIndex::used(prod, cons);
                for _ in 0..n {
                    let rec = q.read::<W, P>(&self.platform, self.coherent, cons);
                    each(&rec);
                    cons = cons.next();
                }
                st.records += n;
                let ovf = prod.ovf() != cons.ovf();
                if ovf {
                    // Records were lost while the queue was full: acknowledge with OVACKFLG = OVFLG.
                    ovf_seen += 1;
                    cons = cons.with_ovf(prod.ovf());
                }
                if n == 0 && !ovf {
                    break;
                }
                // Every slot read completes before the SMMU may reuse it.
                barrier::dma_mb();
                regs.set_cons(cons.to_reg());
                st.mmio += 1;
                prod = QueueIndex::from_reg(log2, regs.prod());
                st.mmio += 1;
                barrier::dma_rmb();
                if QueueIndex::is_empty(prod, cons) && prod.ovf() == cons.ovf() {
                    break;
                }
                pass += 1;
                if pass >= MAX_PASSES {
                    st.incomplete = true;
                    bump(&self.counters.drains_incomplete, 1);
                    break;
                }
                st.extra_passes += 1;
            }
            q.cons.store(cons.to_reg(), Ordering::Relaxed);
            q.busy.store(false, Ordering::SeqCst);
            // A drain refused while we held the flag left `again` set: its record may have landed
            // after our last PROD read. Run another round unless the pass bound is spent or
            // another CPU holds the flag now (it will see `again` itself).
            if !q.again.load(Ordering::SeqCst) || st.incomplete {
                break 'rounds;
            }
            pass += 1;
            if pass >= MAX_PASSES {
                st.incomplete = true;
                bump(&self.counters.drains_incomplete, 1);
                break 'rounds;
            }
            if q.busy.swap(true, Ordering::SeqCst) {
                break 'rounds;
            }
            st.extra_passes += 1;
        }
        bump(records, u64::from(st.records));
        bump(overflows, u64::from(ovf_seen));
        st.overflows = ovf_seen;
        Pending {
            st,
            overflows: ovf_seen,
        }
    }

    /// Handles every active global error (IHI 0070 §6.3.19, Linux's `arm_smmu_gerror_handler`) and acknowledges it
    /// through GERRORN, each bit counted:
    /// - CMDQ_ERR: the command queue recovery of [`Cmdq`](super::cmdq::Cmdq), run here only when
    ///   no submitter holds the queue (a waiting submitter recovers by itself; never blocks);
    /// - EVENTQ_ABT_ERR / PRIQ_ABT_ERR (QEMU's queue overflow): counted as an overflow that the
    ///   next drain reports to its sink, and a drain hint;
    /// - MSI_*_ABT_ERR: counted (an MSI-polled CMD_SYNC falls back to reading CONS);
    /// - SFM_ERR: the SMMU is disabled (GBPA abort, CR0 = 0); [`Smmu::reset`] brings it back;
    /// - CMDQP_ERR, DPT_ERR: counted and acknowledged.
    ///
    /// IRQ-safe like the drains. 2 MMIO reads when nothing is active.
    pub fn handle_gerror(&self) -> GerrorStats {
        let mut st = GerrorStats::default();
        if !self.ready.load(Ordering::Acquire) {
            return st;
        }
        let (_, active) = self.gerror_active();
        st.mmio += 2;
        let active = active & GERROR_KNOWN;
        st.active = active;
        if active == 0 {
            return st;
        }
        self.counters.count_gerror(active, false);
        let ack = active & !GERROR::CMDQ_ERR::SET.value;
        let mut cmdq_acked = 0;
        if active & GERROR::CMDQ_ERR::SET.value != 0 {
            match self
                .cmdq
                .recover_from_irq(&MainCmdq { smmu: self }, &self.platform)
            {
                None => st.cmdq_deferred = true,
                // The recovery acknowledged CMDQ_ERR, with or without an ERR code to act on.
                Some(e) => {
                    st.cmdq_recovered = e;
                    cmdq_acked = GERROR::CMDQ_ERR::SET.value;
                }
            }
        }
        if active & GERROR::EVENTQ_ABT_ERR::SET.value != 0 {
            self.counters.evtq_lost.store(true, Ordering::Release);
            st.drain_evtq = true;
        }
        if active & GERROR::PRIQ_ABT_ERR::SET.value != 0 {
            self.counters.priq_lost.store(true, Ordering::Release);
            st.drain_priq = true;
        }
        self.ack_gerror(ack);
        st.acked = ack | cmdq_acked;
        if active & GERROR::SFM_ERR::SET.value != 0 {
            log_error!("smmu: service failure mode");
            // An SMMU in service failure mode may never acknowledge anything, so the IRQ path
            // does not wait for ACKs: `disable_nowait` writes the abort and CR0 = 0 and returns.
            self.disable_nowait();
            st.disabled = true;
        }
        st
    }

    /// Cumulative counters of the IRQ path and the command queue.
    pub fn counters(&self) -> SmmuStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = |i: usize| c.gerror.get(i).map_or(0, l);
        SmmuStats {
            events: l(&c.events),
            event_overflows: l(&c.event_overflows),
            pri_requests: l(&c.pri_requests),
            pri_overflows: l(&c.pri_overflows),
            drains_busy: l(&c.drains_busy),
            drains_incomplete: l(&c.drains_incomplete),
            gerror_stale: l(&c.gerror_stale),
            gerror: GerrorBitStats {
                cmdq_err: g(0),
                eventq_abt_err: g(2),
                priq_abt_err: g(3),
                msi_cmdq_abt_err: g(4),
                msi_eventq_abt_err: g(5),
                msi_priq_abt_err: g(6),
                msi_gerror_abt_err: g(7),
                sfm_err: g(8),
                other: g(1) + g(9) + g(10),
            },
            cmdq: self.cmdq.counters(),
        }
    }
}

/// A drain's result before the sink was told about overflows.
struct Pending {
    st: DrainStats,
    overflows: u32,
}

impl Pending {
    fn finish(self, mut overflow: impl FnMut()) -> DrainStats {
        for _ in 0..self.overflows {
            overflow();
        }
        self.st
    }
}
