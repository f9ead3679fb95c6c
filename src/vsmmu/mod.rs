//! A virtual SMMUv3 for a guest: the vIOMMU made visible to the VM that owns it.
//!
//! A guest programs a [`VSmmu`] exactly as it programs a real SMMUv3 (IHI 0070): the
//! hypervisor leaves the virtual register window (two 64 KiB pages) out of the guest's stage 2,
//! and hands every trapped access to [`VSmmu::read`] / [`VSmmu::write`] (offset from the start
//! of page 0, 4 or 8 bytes, as the ESR_EL2 ISS decode gives them). The guest's stream table,
//! command queue and event queue live in guest memory, which the virtual SMMU reads and writes
//! by IPA through [`GuestMemory`] (fallible: an IPA outside the guest's RAM becomes what an
//! SMMU reports for it, F_STE_FETCH, CERROR_ABT or GERROR.EVENTQ_ABT_ERR). Its interrupt lines
//! are raised through [`GuestIrq`].
//!
//! Behind it, one narrow [`Backend`] (for a [`Router`](crate::viommu::Router) vIOMMU:
//! [`RouterBackend`]) does everything physical:
//! - a guest STE (dwords 0-1) read on CMD_CFGI_STE, CMD_CFGI_STE_RANGE or CMD_CFGI_ALL becomes
//!   a nested STE for the device's physical StreamID through the vIOMMU layer's sanitiser; a
//!   refused STE leaves the stream aborting and gives the guest C_BAD_STE; an unreachable table
//!   gives F_STE_FETCH;
//! - TLBI_NH_*, TLBI_NSNH_ALL, CFGI_CD, CFGI_CD_ALL and ATC_INV go through the guest-command
//!   sanitiser (VMID forced, vSID → pSID) in batches of up to 63, each completed by a physical
//!   CMD_SYNC before the guest's CMD_SYNC completes; PREFETCH_* is absorbed; anything else
//!   stops the guest's queue with CMDQ_CONS.ERR = CERROR_ILL and GERROR.CMDQ_ERR, until the
//!   guest acknowledges through GERRORN (IHI 0070 §4.8, §7.1);
//! - the vIOMMU's vEVENTQ records (already carrying the guest's vSIDs) are copied into the
//!   guest's event queue, with EVENTQ_PROD.OVFLG toggled when the guest queue was full or the
//!   vEVENTQ reported LOST_EVENTS or a sequence gap (IHI 0070 §7.4): nothing is lost silently.
//!
//! # Wiring
//! - Trap: a data abort on the virtual window → `vsmmu.read(off, size)` (write the result to
//!   the SRT register) or `vsmmu.write(off, size, value)`, then skip the instruction.
//! - IRQ path: right after the physical SMMU's event drain
//!   (`smmu.drain_evtq(&mut router.sink(&mut host))`), call [`VSmmu::deliver_events`] for each
//!   guest. It never waits: if a trapped access of the same guest holds the vSMMU (on this or
//!   another CPU), the delivery is left to that access, which runs it before it returns.
//! - The guest also pulls: every read of EVENTQ_PROD delivers first.
//!
//! What a guest sees (IDR0-IDR5): stage 1 only, AArch64 tables, linear and 2-level stream
//! tables, [`VSmmuConfig::sid_bits`] StreamID bits, the configured queue sizes, wired
//! interrupts (no MSI), no SEV, PRI, ATS, stall, HTTU or BTM; ASID16, CD2L, SSIDSIZE, RIL,
//! HAD, granules, VAX and DS as the physical SMMU has them (its stage 1 walks the guest's CD
//! tables); OAS is the guest's IPA size.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod backend;
mod cmdq;
mod evtq;
mod regs;
mod router_backend;
mod strtab;
#[cfg(test)]
mod tests;

use core::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Feature, Quantity};
use crate::features::IdRegs;
use crate::ids::Ipa;
use crate::queue::MAX_LOG2;
use crate::regs::offset as off;

pub use backend::{Backend, GUEST_STE_ABORT, GUEST_STE_BYPASS};
pub use router_backend::RouterBackend;

use regs::Regs;

/// Size of the virtual register window: page 0 and page 1 (IHI 0070 §6.2).
pub const WINDOW_BYTES: u64 = 2 * off::PAGE_SIZE as u64;

/// An IPA the guest named is not backed by its RAM (or the hypervisor refuses the access).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct OutsideRam(pub Ipa);

/// Guest memory by IPA, as the hypervisor's stage 2 maps it. Both calls are fallible: the
/// virtual SMMU turns an error into what an SMMU reports for an external abort on that access.
pub trait GuestMemory {
    /// Copies `buf.len()` bytes of guest memory at `ipa` into `buf`.
    fn read(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), OutsideRam>;
    /// Copies `data` into guest memory at `ipa`.
    fn write(&self, ipa: Ipa, data: &[u8]) -> Result<(), OutsideRam>;
}

impl<T: GuestMemory + ?Sized> GuestMemory for &T {
    fn read(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        (**self).read(ipa, buf)
    }
    fn write(&self, ipa: Ipa, data: &[u8]) -> Result<(), OutsideRam> {
        (**self).write(ipa, data)
    }
}

/// The virtual SMMU's interrupt lines, as a DT names them (`interrupt-names` of
/// `arm,smmu-v3`: "eventq", "priq", "cmdq-sync", "gerror").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IrqLine {
    /// New event records (or an overflow) in the guest's event queue, with
    /// IRQ_CTRL.EVENTQ_IRQEN.
    Eventq,
    /// A GERROR bit became active, with IRQ_CTRL.GERROR_IRQEN.
    Gerror,
    /// A CMD_SYNC with CS = SIG_IRQ completed.
    CmdqSync,
}

/// Delivers the virtual SMMU's edge-triggered interrupts to the guest (e.g. a vGIC list
/// register). Called with the vSMMU's state locked and possibly from the IRQ path: it must not
/// call back into the [`VSmmu`] and must not wait.
pub trait GuestIrq {
    /// Raises `line` once (an edge).
    fn raise(&self, line: IrqLine);
}

impl<T: GuestIrq + ?Sized> GuestIrq for &T {
    fn raise(&self, line: IrqLine) {
        (**self).raise(line);
    }
}

/// What the hypervisor chooses for one guest's virtual SMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VSmmuConfig {
    /// StreamID bits offered (IDR1.SIDSIZE), 1..=32: must cover every vSID of the guest.
    pub sid_bits: u8,
    /// log2 of the largest command queue the guest may program (IDR1.CMDQS), 1..=19. Linux
    /// refuses an SMMU whose command queue is not larger than its 64-entry batch (7 or more).
    pub cmdq_log2: u8,
    /// log2 of the largest event queue (IDR1.EVENTQS), 1..=19.
    pub evtq_log2: u8,
    /// The guest's IPA size in bits (IDR5.OAS; 32..=52): address fields above it are RES0.
    pub ipa_bits: u8,
    /// GBPA.ABORT at reset: with the guest's SMMU off its devices abort (`true`) or are
    /// translated by stage 2 only (`false`).
    pub gbpa_abort: bool,
    /// SMMU_IIDR the guest reads.
    pub iidr: u32,
}

impl VSmmuConfig {
    /// 16 StreamID bits, 256-entry command queue, 128-entry event queue, 40-bit IPA, abort
    /// while disabled.
    pub const DEFAULT: Self = Self {
        sid_bits: 16,
        cmdq_log2: 8,
        evtq_log2: 7,
        ipa_bits: 40,
        gbpa_abort: true,
        iidr: 0,
    };
}

impl Default for VSmmuConfig {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Counters of one virtual SMMU (nothing it drops or refuses goes uncounted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VSmmuStats {
    /// Trapped reads.
    pub reads: u64,
    /// Trapped writes.
    pub writes: u64,
    /// Reads of offsets that hold no register (read as zero).
    pub unknown_reads: u64,
    /// Writes to offsets that hold no register (ignored).
    pub unknown_writes: u64,
    /// Accesses of a size other than 4 or 8 bytes, misaligned, or outside the window (RAZ/WI).
    pub bad_accesses: u64,
    /// Writes ignored because the register is guarded by an enable bit that was set
    /// (STRTAB_* with SMMUEN, CMDQ_BASE/CONS with CMDQEN, EVENTQ_BASE/PROD with EVENTQEN).
    pub guarded_writes: u64,
    /// Guest commands consumed.
    pub commands: u64,
    /// Guest commands forwarded (sanitised) to the physical SMMU.
    pub forwarded: u64,
    /// Batches issued to the physical SMMU (each with its CMD_SYNC).
    pub batches: u64,
    /// CMD_SYNCs completed.
    pub syncs: u64,
    /// Guest STEs installed as nested STEs.
    pub ste_installed: u64,
    /// Guest STEs the sanitiser refused (the stream aborts; C_BAD_STE to the guest).
    pub ste_refused: u64,
    /// Guest STEs that could not be fetched (F_STE_FETCH to the guest).
    pub ste_fetch_faults: u64,
    /// StreamIDs without an STE in the guest's table (outside it, or an invalid L1 descriptor):
    /// the stream aborts.
    pub ste_missing: u64,
    /// Commands that stopped the queue (CERROR_ILL or CERROR_ABT).
    pub cmdq_errors: u64,
    /// Records written into the guest's event queue (forwarded and synthesised).
    pub events_written: u64,
    /// Records lost (guest queue full, vEVENTQ loss, event queue write abort): each is behind
    /// an OVFLG toggle or GERROR.EVENTQ_ABT_ERR the guest can see.
    pub events_lost: u64,
    /// Records discarded because the guest's event queue was disabled (as an SMMU does).
    pub events_discarded: u64,
    /// EVENTQ_PROD.OVFLG toggles.
    pub overflows: u64,
    /// Errors from the backend other than a refusal (physical driver errors).
    pub backend_errors: u64,
}

/// What one [`VSmmu::deliver_events`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeliverStats {
    /// Records written into the guest's event queue.
    pub written: u32,
    /// Records lost (see [`VSmmuStats::events_lost`]).
    pub lost: u32,
    /// Records discarded with the event queue disabled.
    pub discarded: u32,
    /// The vSMMU was busy (a trapped access holds it): the delivery runs when that access ends.
    pub deferred: bool,
}

struct State {
    regs: Regs,
    stats: VSmmuStats,
    /// The vEVENTQ sequence number expected next (`None` before the first record).
    next_seq: Option<u32>,
}

/// One guest's virtual SMMUv3. See the [module documentation](self).
pub struct VSmmu<B: Backend, M: GuestMemory, I: GuestIrq> {
    backend: B,
    mem: M,
    irq: I,
    cfg: VSmmuConfig,
    idr: IdRegs,
    state: spin::Mutex<State>,
    /// Events wait for delivery: set by [`VSmmu::deliver_events`] before it tries the lock,
    /// taken by whoever holds the lock next.
    pending: AtomicBool,
}

impl<B: Backend, M: GuestMemory, I: GuestIrq> VSmmu<B, M, I> {
    /// A virtual SMMU in its reset state (IHI 0070 §6.3: everything disabled, GBPA as
    /// configured) over `backend`, reaching guest memory through `mem` and the guest's
    /// interrupt controller through `irq`. Nothing physical is touched until the guest acts
    /// or [`VSmmu::sync_streams`] runs.
    ///
    /// # Errors
    /// [`Error::Unsupported`] ([`Feature::Nesting`]) when the physical SMMU lacks stage 1 or
    /// stage 2; [`Error::TooSmall`] or [`Error::OutOfRange`] for a size outside the ranges of
    /// [`VSmmuConfig`] (the first one found: StreamID bits, command queue, event queue, IPA
    /// bits).
    pub fn new(cfg: VSmmuConfig, backend: B, mem: M, irq: I) -> Result<Self, Error> {
        let phys = backend.features();
        if !(phys.stage1 && phys.stage2) {
            return Err(Error::Unsupported(Feature::Nesting));
        }
        for (what, value, min, max) in [
            (Quantity::StreamIdBits, cfg.sid_bits, 1u8, 32u8),
            (Quantity::QueueLog2, cfg.cmdq_log2, 1, MAX_LOG2),
            (Quantity::QueueLog2, cfg.evtq_log2, 1, MAX_LOG2),
            (Quantity::AddressBits, cfg.ipa_bits, 32, 52),
        ] {
            let (value, min, max) = (u64::from(value), u64::from(min), u64::from(max));
            if value < min {
                return Err(Error::TooSmall { what, value, min });
            }
            if value > max {
                return Err(Error::OutOfRange { what, value, max });
            }
        }
        let idr = regs::guest_idregs(&phys, &cfg);
        Ok(Self {
            backend,
            mem,
            irq,
            cfg,
            idr,
            state: spin::Mutex::new(State {
                regs: Regs::reset(cfg.gbpa_abort),
                stats: VSmmuStats::default(),
                next_seq: None,
            }),
            pending: AtomicBool::new(false),
        })
    }

    /// The ID registers the guest reads.
    pub fn idregs(&self) -> IdRegs {
        self.idr
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The counters.
    pub fn stats(&self) -> VSmmuStats {
        self.state.lock().stats
    }

    /// Gives every vDEVICE the configuration the current register state implies (GBPA while
    /// the guest's SMMU is off, the guest's STE once it is on). Call it once after creating the
    /// guest's vDEVICEs, so that they abort (or bypass) from the start as the guest expects.
    pub fn sync_streams(&self) {
        let mut st = self.state.lock();
        self.apply_all(&mut st);
        self.unlock(st);
    }

    /// A trapped guest read of `size` bytes (4 or 8) at `offset` from the start of page 0.
    /// Anything else reads as zero and is counted ([`VSmmuStats::bad_accesses`]).
    pub fn read(&self, offset: u64, size: usize) -> u64 {
        let mut st = self.state.lock();
        st.stats.reads += 1;
        let v = match (size, offset.checked_add(size as u64)) {
            (4, Some(end)) if offset.is_multiple_of(4) && end <= WINDOW_BYTES => {
                u64::from(self.read32(&mut st, offset))
            }
            (8, Some(end)) if offset.is_multiple_of(8) && end <= WINDOW_BYTES => {
                let lo = self.read32(&mut st, offset);
                let hi = self.read32(&mut st, offset + 4);
                u64::from(lo) | (u64::from(hi) << 32)
            }
            _ => {
                st.stats.bad_accesses += 1;
                0
            }
        };
        self.unlock(st);
        v
    }

    /// A trapped guest write of `size` bytes (4 or 8) of `value` at `offset` from the start of
    /// page 0. A 64-bit write is two 32-bit writes, low word first (IHI 0070 §6.2: 64-bit
    /// registers may be accessed as two 32-bit halves). Anything else is ignored and counted.
    pub fn write(&self, offset: u64, size: usize, value: u64) {
        let mut st = self.state.lock();
        st.stats.writes += 1;
        match (size, offset.checked_add(size as u64)) {
            (4, Some(end)) if offset.is_multiple_of(4) && end <= WINDOW_BYTES => {
                self.write32(&mut st, offset, value as u32);
            }
            (8, Some(end)) if offset.is_multiple_of(8) && end <= WINDOW_BYTES => {
                self.write32(&mut st, offset, value as u32);
                self.write32(&mut st, offset + 4, (value >> 32) as u32);
            }
            _ => st.stats.bad_accesses += 1,
        }
        self.unlock(st);
    }

    /// Copies the vIOMMU's pending vEVENTQ records into the guest's event queue (IRQ path:
    /// call it after the physical event drain routed records to the vIOMMU). Bounded by the
    /// guest's queue size; never waits: when a trapped access holds the vSMMU, the work is left
    /// to it ([`DeliverStats::deferred`]).
    pub fn deliver_events(&self) -> DeliverStats {
        self.pending.store(true, Ordering::SeqCst);
        match self.state.try_lock() {
            Some(mut st) => {
                self.pending.store(false, Ordering::SeqCst);
                let out = self.deliver(&mut st);
                self.unlock(st);
                out
            }
            None => DeliverStats {
                deferred: true,
                ..DeliverStats::default()
            },
        }
    }

    /// Releases the state, then runs a delivery that an IRQ-path call left pending while the
    /// state was held (at most once more: a delivery that finds the lock taken again is left
    /// to its holder).
    fn unlock(&self, mut st: spin::MutexGuard<'_, State>) {
        if self.pending.swap(false, Ordering::SeqCst) {
            self.deliver(&mut st);
        }
        drop(st);
        if self.pending.load(Ordering::SeqCst)
            && let Some(mut st) = self.state.try_lock()
        {
            self.pending.store(false, Ordering::SeqCst);
            self.deliver(&mut st);
        }
    }

    fn read32(&self, st: &mut State, offset: u64) -> u32 {
        let r = &st.regs;
        let lo = |v: u64| v as u32;
        let hi = |v: u64| (v >> 32) as u32;
        let Ok(o) = usize::try_from(offset) else {
            return 0;
        };
        match o {
            off::IDR0 => self.idr.idr0,
            off::IDR1 => self.idr.idr1,
            off::IDR2 => self.idr.idr2,
            off::IDR3 => self.idr.idr3,
            off::IDR4 => self.idr.idr4,
            off::IDR5 => self.idr.idr5,
            off::IIDR => self.idr.iidr,
            off::AIDR => self.idr.aidr,
            off::CR0 | off::CR0ACK => r.cr0,
            off::CR1 => r.cr1,
            off::CR2 => r.cr2,
            off::GBPA => r.gbpa,
            off::IRQ_CTRL | off::IRQ_CTRLACK => r.irq_ctrl,
            off::GERROR => r.gerror,
            off::GERRORN => r.gerrorn,
            off::STRTAB_BASE => lo(r.strtab_base),
            o if o == off::STRTAB_BASE + 4 => hi(r.strtab_base),
            off::STRTAB_BASE_CFG => r.strtab_base_cfg,
            off::CMDQ_BASE => lo(r.cmdq_base),
            o if o == off::CMDQ_BASE + 4 => hi(r.cmdq_base),
            off::CMDQ_PROD => r.cmdq_prod,
            off::CMDQ_CONS => r.cmdq_cons,
            off::EVENTQ_BASE => lo(r.eventq_base),
            o if o == off::EVENTQ_BASE + 4 => hi(r.eventq_base),
            o if o == off::PAGE_SIZE + off::EVENTQ_PROD => {
                // The guest polls PROD for new records: deliver what is waiting first.
                self.deliver(st);
                st.regs.eventq_prod
            }
            o if o == off::PAGE_SIZE + off::EVENTQ_CONS => r.eventq_cons,
            o if Self::raz_wi(o) => 0,
            _ => {
                st.stats.unknown_reads += 1;
                0
            }
        }
    }

    /// Registers that exist but hold nothing in this implementation (RAZ/WI, not counted):
    /// STATUSR, AGBPA, the IRQ_CFG registers (RES0 without IDR0.MSI), the PRI queue's (no
    /// IDR0.PRI), GATOS/VATOS (no IDR0.ATOS/VATOS), the CoreSight ID registers.
    fn raz_wi(o: usize) -> bool {
        matches!(
            o,
            off::STATUSR
                | off::AGBPA
                | off::GERROR_IRQ_CFG0..=off::GERROR_IRQ_CFG2
                | off::EVENTQ_IRQ_CFG0..=off::EVENTQ_IRQ_CFG2
                | off::PRIQ_BASE..=off::PRIQ_IRQ_CFG2
                | off::GATOS_CTRL..=0x11c
                | off::VATOS_SEL
                | off::PIDR4..=off::CIDR3
        ) || o == off::PAGE_SIZE + off::PRIQ_PROD
            || o == off::PAGE_SIZE + off::PRIQ_CONS
    }

    fn write32(&self, st: &mut State, offset: u64, v: u32) {
        let Ok(o) = usize::try_from(offset) else {
            return;
        };
        let set_lo = |r: &mut u64, v: u32| *r = (*r & !0xffff_ffff) | u64::from(v);
        let set_hi = |r: &mut u64, v: u32| *r = (*r & 0xffff_ffff) | (u64::from(v) << 32);
        let ipa = regs::addr_mask(self.cfg.ipa_bits);
        let strtab_mask = regs::strtab_base_impl(ipa);
        let q_mask = regs::q_base_impl(ipa);
        let cmdq_idx = regs::index_mask(self.cfg.cmdq_log2);
        let evtq_idx = regs::index_mask(self.cfg.evtq_log2);
        let smmuen = st.regs.smmuen();
        let cmdqen = st.regs.cmdqen();
        let eventqen = st.regs.eventqen();
        let guarded = |st: &mut State, en: bool, f: &mut dyn FnMut(&mut Regs)| {
            if en {
                st.stats.guarded_writes += 1;
            } else {
                f(&mut st.regs);
            }
        };
        match o {
            off::CR0 => self.write_cr0(st, v & regs::CR0_IMPL),
            off::CR1 => st.regs.cr1 = v & regs::CR1_IMPL,
            off::CR2 => st.regs.cr2 = v & regs::CR2_IMPL,
            off::GBPA => self.write_gbpa(st, v),
            off::IRQ_CTRL => st.regs.irq_ctrl = v & regs::IRQ_CTRL_IMPL,
            off::GERRORN => self.write_gerrorn(st, v & regs::GERROR_IMPL),
            off::STRTAB_BASE => guarded(st, smmuen, &mut |r| {
                set_lo(&mut r.strtab_base, v);
                r.strtab_base &= strtab_mask;
            }),
            o if o == off::STRTAB_BASE + 4 => guarded(st, smmuen, &mut |r| {
                set_hi(&mut r.strtab_base, v);
                r.strtab_base &= strtab_mask;
            }),
            off::STRTAB_BASE_CFG => guarded(st, smmuen, &mut |r| {
                r.strtab_base_cfg = v & regs::STRTAB_CFG_IMPL;
            }),
            off::CMDQ_BASE => guarded(st, cmdqen, &mut |r| {
                set_lo(&mut r.cmdq_base, v);
                r.cmdq_base &= q_mask;
            }),
            o if o == off::CMDQ_BASE + 4 => guarded(st, cmdqen, &mut |r| {
                set_hi(&mut r.cmdq_base, v);
                r.cmdq_base &= q_mask;
            }),
            off::CMDQ_PROD => {
                st.regs.cmdq_prod = v & cmdq_idx;
                self.run_cmdq(st);
            }
            off::CMDQ_CONS => guarded(st, cmdqen, &mut |r| r.cmdq_cons = v & cmdq_idx),
            off::EVENTQ_BASE => guarded(st, eventqen, &mut |r| {
                set_lo(&mut r.eventq_base, v);
                r.eventq_base &= q_mask;
            }),
            o if o == off::EVENTQ_BASE + 4 => guarded(st, eventqen, &mut |r| {
                set_hi(&mut r.eventq_base, v);
                r.eventq_base &= q_mask;
            }),
            o if o == off::PAGE_SIZE + off::EVENTQ_PROD => guarded(st, eventqen, &mut |r| {
                r.eventq_prod = v & (evtq_idx | regs::OVF);
            }),
            o if o == off::PAGE_SIZE + off::EVENTQ_CONS => {
                st.regs.eventq_cons = v & (evtq_idx | regs::OVF);
            }
            // Read-only registers: writes ignored, as on hardware.
            off::IDR0..=off::AIDR | off::CR0ACK | off::IRQ_CTRLACK | off::GERROR => {}
            o if Self::raz_wi(o) => {}
            _ => st.stats.unknown_writes += 1,
        }
    }

    /// CR0 (IHI 0070 §6.3.9): the update completes at once (CR0ACK = CR0). SMMUEN 0 → 1 makes
    /// every vDEVICE follow its guest STE, 1 → 0 makes them follow GBPA; CMDQEN 0 → 1 consumes
    /// what the guest already published.
    fn write_cr0(&self, st: &mut State, v: u32) {
        let was = st.regs;
        st.regs.cr0 = v;
        if was.smmuen() != st.regs.smmuen() {
            self.apply_all(st);
        }
        if st.regs.cmdqen() && !was.cmdqen() {
            self.run_cmdq(st);
        }
    }

    /// GBPA (IHI 0070 §6.3.14): fields change only on a write with UPDATE = 1, and the update
    /// completes at once (UPDATE reads 0). With the SMMU off, a change of ABORT reaches every
    /// vDEVICE.
    fn write_gbpa(&self, st: &mut State, v: u32) {
        if v & regs::GBPA_UPDATE == 0 {
            return;
        }
        let old = st.regs.gbpa;
        st.regs.gbpa = v & regs::GBPA_FIELDS;
        if !st.regs.smmuen() && (old ^ st.regs.gbpa) & regs::GBPA_ABORT != 0 {
            self.apply_all(st);
        }
    }

    /// GERRORN (IHI 0070 §6.3.18): acknowledging CMDQ_ERR restarts the command queue at CONS
    /// (where the guest has replaced the refused command, as Linux does).
    fn write_gerrorn(&self, st: &mut State, v: u32) {
        let was = st.regs.gerror_active();
        st.regs.gerrorn = v;
        if was & regs::GERROR_CMDQ != 0 && st.regs.gerror_active() & regs::GERROR_CMDQ == 0 {
            st.regs.cmdq_cons &= !(regs::CONS_ERR.mask << regs::CONS_ERR.shift);
            self.run_cmdq(st);
        }
    }

    /// A queue's effective base IPA and log2 size from its *Q_BASE value (IHI 0070 §6.3.26,
    /// §6.3.29): LOG2SIZE above the advertised `max_log2` is taken as `max_log2`, address bits
    /// above the guest's IPA size are RES0, and bits below the queue's natural alignment are
    /// ignored.
    fn queue_geometry(&self, base: u64, max_log2: u8, entry_bytes: usize) -> (u64, u8) {
        let log2 = ((base & 0x1f) as u8).min(max_log2);
        let bytes = (entry_bytes as u64) << log2;
        let addr = base & regs::addr_mask(self.cfg.ipa_bits) & !0x1f & !(bytes - 1);
        (addr, log2)
    }

    /// Raises a GERROR bit (if not active) and the gerror line (with GERROR_IRQEN).
    fn gerror(&self, st: &mut State, bit: u32) {
        if st.regs.raise_gerror(bit)
            && st.regs.irq_ctrl & crate::regs::IRQ_CTRL::GERROR_IRQEN::SET.value != 0
        {
            self.irq.raise(IrqLine::Gerror);
        }
    }
}
