//! The command queue engine: batched submission, bounded CMD_SYNC waits in three completion
//! modes, and CONS.ERR recovery (IHI 0070 §3.5, §4.7.3, §7.1).
//!
//! The engine owns the queue memory and the software producer state; the queue's registers are
//! reached through a [`CmdqBackend`], so the same engine drives the SMMU's own command queue and
//! the Tegra241 CMDQV virtual command queues (same PROD/CONS/ERR layout).
//!
//! # Concurrency
//!
//! One `spin::Mutex` guards the producer side *and* the wait for the batch's CMD_SYNC: a
//! submitter owns the queue from its first slot write until its sync completed or timed out.
//! This serialises submitters on one queue, which keeps every CONS.ERR attributable to the
//! batch that caused it and makes recovery a local affair of the waiter; hypervisors with
//! heavy invalidation traffic get parallelism from several queues (Tegra241 VCMDQs, one per CPU)
//! rather than from lock-free sharing of one. The IRQ path never waits for the lock: it only
//! `try_lock`s it ([`Cmdq::recover_from_irq`]), and leaves recovery to the waiter when it fails.
//! Every wait is bounded by the configured timeout, so the lock is always released.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{barrier, bump};
use crate::command::{CmdqEntry, Command, Opcode, SyncCs};
use crate::error::{CmdqError, Error, WaitFor};
use crate::ids::PhysAddr;
use crate::platform::{DmaBuf, Platform};
use crate::queue::{CMDQ_ENTRY_BYTES, QueueGeometry, QueueIndex};
use crate::regs::CMDQ_CONS;

/// Tegra241 VCMDQ CERROR_ILL_ACCESS: not an SMMU_CMDQ_CONS.ERR value, but the VCMDQs share the
/// register layout (`regs::CMDQ_CONS::ERR`) and this engine.
const CERROR_ILL_ACCESS: u8 = 4;

/// Memory polls of an MSI-completed CMD_SYNC before each poll also reads CONS (to notice a
/// command error or a lost MSI without depending on the GERROR interrupt).
const MSI_POLLS_BEFORE_CONS: u32 = 64;

/// The registers of one command queue, as the engine needs them.
///
/// Implemented by the SMMU for SMMU_CMDQ_PROD/CONS + GERROR/GERRORN.CMDQ_ERR, and by the
/// Tegra241 VCMDQs for VCMDQ_PROD/CONS + their own error state.
pub trait CmdqBackend {
    /// Writes the PROD register: index and wrap bit (IHI 0070 §6.3.27).
    fn write_prod(&self, prod: u32);
    /// Reads the CONS register as it is, ERR bits `[30:24]` included (IHI 0070 §6.3.28).
    fn read_cons(&self) -> u32;
    /// Whether the queue's error is active (SMMU: GERROR.CMDQ_ERR != GERRORN.CMDQ_ERR). The
    /// engine asks only after CONS showed a non-zero ERR, which some models leave set after
    /// recovery.
    fn error_active(&self) -> bool;
    /// Acknowledges the queue's error so the consumer resumes at CONS. Must be idempotent and
    /// must not disturb other error bits.
    fn ack_error(&self);
}

/// The completion mode the engine uses; [`SyncMode::Auto`](super::SyncMode::Auto) is resolved
/// before an engine is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Completion {
    /// CS = SIG_NONE, poll CONS.
    Poll,
    /// CS = SIG_SEV, `WFE` between CONS reads.
    Sev,
    /// CS = SIG_IRQ, MSI write of 0 into the CMD_SYNC's own slot, polled in memory.
    Msi,
}

/// How an engine behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CmdqOptions {
    /// CMD_SYNC completion mode.
    pub completion: Completion,
    /// Bound of each wait (space, CMD_SYNC), in microseconds.
    pub timeout_us: u64,
    /// Whether the SMMU reads the queue coherently; if not, every written slot is cleaned
    /// with [`Platform::dma_flush`] and every slot read back is invalidated first.
    pub coherent: bool,
    /// NVIDIA Tegra264: issue every batch containing CFGI/TLBI a second time (those commands
    /// only, ATC_INV never) after the first CMD_SYNC completed.
    pub repeat_cfgi_tlbi: bool,
}

/// Cumulative command queue counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CmdqStats {
    /// Batches submitted (each ends with one CMD_SYNC).
    pub batches: u64,
    /// Commands written, CMD_SYNCs included.
    pub commands: u64,
    /// PROD register writes.
    pub prod_writes: u64,
    /// CERROR_ILL (and undefined ERR values) recovered by overwriting the slot with CMD_SYNC.
    pub illegal: u64,
    /// CERROR_ABT acknowledged (the SMMU refetches the command).
    pub abort: u64,
    /// CERROR_ATC_INV_SYNC acknowledged (the CMD_SYNC is retried).
    pub atc_inv_sync: u64,
    /// Errors recovered from the IRQ path because no submitter was waiting.
    pub recovered_by_irq: u64,
    /// Waits for a CMD_SYNC that gave up.
    pub sync_timeouts: u64,
    /// Waits for queue space that gave up.
    pub space_timeouts: u64,
}

#[derive(Default)]
struct AtomicCounters {
    batches: AtomicU64,
    commands: AtomicU64,
    prod_writes: AtomicU64,
    illegal: AtomicU64,
    abort: AtomicU64,
    atc_inv_sync: AtomicU64,
    recovered_by_irq: AtomicU64,
    sync_timeouts: AtomicU64,
    space_timeouts: AtomicU64,
}

/// The producer state, owned by whoever holds the lock.
struct State {
    /// Next slot to write (index + wrap), as last written to PROD or about to be.
    prod: QueueIndex,
    /// Last CONS seen (index + wrap, ERR dropped).
    cons: QueueIndex,
}

/// One command queue: memory, producer state and counters.
pub struct Cmdq {
    buf: DmaBuf,
    geo: QueueGeometry,
    opts: CmdqOptions,
    state: spin::Mutex<State>,
    counters: AtomicCounters,
}

/// Whether `cmd` is repeated under the Tegra264 quirk (CFGI_* and TLBI_*, never ATC_INV).
fn is_cfgi_tlbi(cmd: &Command) -> bool {
    matches!(
        cmd.opcode(),
        Opcode::CfgiSte
            | Opcode::CfgiSteRange
            | Opcode::CfgiCd
            | Opcode::CfgiCdAll
            | Opcode::CfgiVmsPidm
            | Opcode::TlbiNhAll
            | Opcode::TlbiNhAsid
            | Opcode::TlbiNhVa
            | Opcode::TlbiNhVaa
            | Opcode::TlbiEl2All
            | Opcode::TlbiEl2Asid
            | Opcode::TlbiEl2Va
            | Opcode::TlbiEl2Vaa
            | Opcode::TlbiS12Vmall
            | Opcode::TlbiS2Ipa
            | Opcode::TlbiNsnhAll
    )
}

/// Counts CONS reads that showed no progress, to look for an error with CONS.ERR = 0 on the
/// first such read and every 16th after it (each look costs 2 MMIO reads).
#[derive(Default)]
struct Stuck {
    last: Option<u32>,
    polls: u32,
}

impl Stuck {
    /// Records a CONS read; whether this one should look for a silent error.
    fn poll(&mut self, cons: u32) -> bool {
        if self.last == Some(cons) {
            self.polls = self.polls.wrapping_add(1);
        } else {
            self.last = Some(cons);
            self.polls = 0;
        }
        self.polls % 16 == 1
    }
}

/// What a batch returns for the first error met while it ran: a refused command (replaced by a
/// CMD_SYNC, the rest of the queue ran) is an error; CERROR_ABT and CERROR_ATC_INV_SYNC were
/// retried by the SMMU and are not.
fn batch_result(err: Option<CmdqError>) -> Result<(), Error> {
    match err {
        Some(e @ (CmdqError::Illegal(_) | CmdqError::IllegalAccess(_) | CmdqError::Unknown(_))) => {
            Err(Error::Cmdq(e))
        }
        _ => Ok(()),
    }
}

/// A CMD_SYNC with CS = SIG_NONE and no MSI: what replaces an illegal command (IHI 0070 §4.8).
const RECOVERY_SYNC: Command = Command::sync();

impl Cmdq {
    /// An engine over `buf`, which holds `2^log2_entries` 16-byte slots, naturally aligned
    /// (IHI 0070 §6.3.26). Indices start at 0; program the queue's PROD and CONS to 0 too.
    ///
    /// # Errors
    /// [`Error::OutOfRange`] when `log2_entries` exceeds 19; [`Error::TooSmall`] or
    /// [`Error::Misaligned`] when `buf` is too small or misaligned
    /// ([`QueueGeometry::check_buffer`]).
    ///
    /// # Safety
    /// `buf.vaddr` points to `buf.size` bytes of memory that are valid for reads and writes for
    /// as long as the engine lives, that the CPU reaches only through this engine meanwhile (the
    /// queue's SMMU or VCMDQ reads it, and writes only CMD_SYNC MSIs into it), and `buf.paddr`
    /// is where that SMMU sees the same bytes: what [`DmaMemory`](crate::platform::DmaMemory)
    /// promises for a buffer it handed out and nobody else was given.
    pub unsafe fn new(buf: DmaBuf, log2_entries: u8, opts: CmdqOptions) -> Result<Self, Error> {
        let geo = QueueGeometry::checked(log2_entries, CMDQ_ENTRY_BYTES)?;
        geo.check_buffer(&buf)?;
        Ok(Self {
            buf,
            geo,
            opts,
            state: spin::Mutex::new(State {
                prod: geo.zero_index(),
                cons: geo.zero_index(),
            }),
            counters: AtomicCounters::default(),
        })
    }

    /// The queue's base register value: RA (bit 62) | ADDR | LOG2SIZE (IHI 0070 §6.3.26).
    pub fn base_reg(&self) -> u64 {
        (1u64 << 62)
            | (self.buf.paddr.0 & 0x00ff_ffff_ffff_ffe0)
            | u64::from(self.geo.log2_entries())
    }

    /// log2 of the number of slots.
    pub fn log2_entries(&self) -> u8 {
        self.geo.log2_entries()
    }

    /// The memory of the queue.
    pub fn buf(&self) -> DmaBuf {
        self.buf
    }

    /// The engine's options.
    pub fn options(&self) -> CmdqOptions {
        self.opts
    }

    /// Forgets the software indices (PROD = CONS = 0). Call only while the queue is disabled and
    /// its PROD/CONS registers are being reset to 0.
    pub fn reset_indices(&self) {
        let mut st = self.state.lock();
        st.prod = self.geo.zero_index();
        st.cons = self.geo.zero_index();
    }

    /// Cumulative counters.
    pub fn counters(&self) -> CmdqStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CmdqStats {
            batches: l(&c.batches),
            commands: l(&c.commands),
            prod_writes: l(&c.prod_writes),
            illegal: l(&c.illegal),
            abort: l(&c.abort),
            atc_inv_sync: l(&c.atc_inv_sync),
            recovered_by_irq: l(&c.recovered_by_irq),
            sync_timeouts: l(&c.sync_timeouts),
            space_timeouts: l(&c.space_timeouts),
        }
    }

    /// Submits `cmds` followed by one CMD_SYNC and waits for the CMD_SYNC.
    ///
    /// The commands and the sync are published with one PROD write when they fit; a batch
    /// larger than the free space is published in pieces as the SMMU consumes, still with one
    /// CMD_SYNC at the end. An empty `cmds` issues a lone CMD_SYNC (a barrier).
    ///
    /// # Errors
    /// - [`Error::Cmdq`] with [`CmdqError::Illegal`] (raw dwords of the offending command) when
    ///   the SMMU refused a command; the slot was replaced by a CMD_SYNC, the queue resumed and
    ///   every other command of the batch was still executed.
    /// - [`Error::Timeout`] ([`WaitFor::CmdqSpace`] or [`WaitFor::CmdSync`]) when the SMMU did
    ///   not make progress within the timeout.
    pub fn submit<B: CmdqBackend + ?Sized, P: Platform + ?Sized>(
        &self,
        hw: &B,
        plat: &P,
        cmds: &[Command],
    ) -> Result<(), Error> {
        let mut st = self.state.lock();
        let first = self.issue(&mut st, hw, plat, cmds.iter().copied());
        if self.opts.repeat_cfgi_tlbi && cmds.iter().any(is_cfgi_tlbi) {
            // Tegra264: the second pass runs only after the first CMD_SYNC completed.
            first?;
            return self.issue(&mut st, hw, plat, cmds.iter().copied().filter(is_cfgi_tlbi));
        }
        first
    }

    /// Writes `cmds` and publishes them with one PROD write (per piece that fits), without a
    /// CMD_SYNC and without waiting for them: for hints such as PREFETCH_CONFIG, which Linux
    /// issues the same way. The next [`Cmdq::submit`]'s CMD_SYNC covers them (and reports an
    /// error one of them caused).
    ///
    /// # Errors
    /// [`Error::Timeout`] ([`WaitFor::CmdqSpace`]) when the queue stays full; [`Error::Cmdq`]
    /// for an illegal command of an earlier batch found while waiting for space.
    pub fn post<B: CmdqBackend + ?Sized, P: Platform + ?Sized>(
        &self,
        hw: &B,
        plat: &P,
        cmds: &[Command],
    ) -> Result<(), Error> {
        let mut st = self.state.lock();
        let deadline = self.deadline(plat);
        let mut err = None;
        let mut rest = cmds.iter();
        let mut next = rest.next();
        while next.is_some() {
            let free = self.wait_space(&mut st, hw, plat, 1, deadline, &mut err)?;
            let mut written = 0u32;
            while written < free {
                let Some(cmd) = next else { break };
                self.write_slot(plat, st.prod.add(written), cmd.encode());
                written += 1;
                next = rest.next();
            }
            self.publish(&mut st, hw, written);
        }
        batch_result(err)
    }

    /// Runs the CONS.ERR recovery from the IRQ path, if no submitter holds the queue (a
    /// submitter that holds it recovers by itself while it waits). Never waits.
    ///
    /// Returns `None` when a submitter holds the queue, else the error found (`Some(None)` if
    /// the error was no longer active).
    pub fn recover_from_irq<B: CmdqBackend + ?Sized, P: Platform + ?Sized>(
        &self,
        hw: &B,
        plat: &P,
    ) -> Option<Option<CmdqError>> {
        let mut st = self.state.try_lock()?;
        let cons = hw.read_cons();
        let err = self.check_error(&mut st, hw, plat, cons, false);
        if err.is_some() {
            bump(&self.counters.recovered_by_irq, 1);
        } else {
            // Flagged but nothing to recover (CONS.ERR = 0, or already recovered): acknowledge
            // anyway, as Linux writes GERRORN = GERROR for every flagged queue.
            hw.ack_error();
        }
        Some(err)
    }

    fn deadline<P: Platform + ?Sized>(&self, plat: &P) -> u64 {
        plat.now_us().saturating_add(self.opts.timeout_us)
    }

    fn slot_ptr(&self, at: QueueIndex) -> NonNull<u64> {
        let off = self.geo.offset_of(at);
        // SAFETY: `at.index() < 2^log2` and `buf` holds `2^log2` 16-byte slots (checked in
        // `new`), so the offset stays inside the lent buffer.
        unsafe { self.buf.vaddr.add(off).cast::<u64>() }
    }

    fn write_slot<P: Platform + ?Sized>(&self, plat: &P, at: QueueIndex, e: CmdqEntry) {
        let p = self.slot_ptr(at);
        // SAFETY: `p` is a 16-byte aligned slot inside the lent queue memory (see `slot_ptr`),
        // which the SMMU only reads; the producer lock gives this CPU exclusive write access.
        unsafe {
            p.as_ptr().write_volatile(e.0[0]);
            p.as_ptr().add(1).write_volatile(e.0[1]);
        }
        if !self.opts.coherent {
            plat.dma_flush(p.cast(), CMDQ_ENTRY_BYTES);
        }
    }

    fn read_slot<P: Platform + ?Sized>(&self, plat: &P, at: QueueIndex) -> [u64; 2] {
        let p = self.slot_ptr(at);
        if !self.opts.coherent {
            plat.dma_invalidate(p.cast(), CMDQ_ENTRY_BYTES);
        }
        // SAFETY: as in `write_slot`; volatile because the SMMU may write the slot (MSI).
        unsafe {
            [
                p.as_ptr().read_volatile(),
                p.as_ptr().add(1).read_volatile(),
            ]
        }
    }

    /// The low 32 bits of a slot, where an MSI-signalled CMD_SYNC writes its MSIData (0).
    fn read_slot_word0<P: Platform + ?Sized>(&self, plat: &P, at: QueueIndex) -> u32 {
        let p = self.slot_ptr(at).cast::<u32>();
        if !self.opts.coherent {
            plat.dma_invalidate(p.cast(), 4);
        }
        // SAFETY: as in `read_slot`; the first 4 bytes of an 8-byte aligned slot.
        unsafe { p.as_ptr().read_volatile() }
    }

    fn sync_command(&self, at: QueueIndex) -> Command {
        match self.opts.completion {
            Completion::Poll => Command::sync(),
            Completion::Sev => Command::Sync {
                cs: SyncCs::Sev,
                msh: 0,
                msi_attr: 0,
                msi_data: 0,
                msi_addr: PhysAddr(0),
            },
            Completion::Msi => Command::Sync {
                cs: SyncCs::Irq,
                // Inner Shareable, Normal Write-Back: the slot is ordinary coherent memory.
                msh: 3,
                msi_attr: 0xf,
                msi_data: 0,
                msi_addr: self.buf.paddr.add(self.geo.offset_of(at) as u64),
            },
        }
    }

    /// Writes the commands of `cmds` and a final CMD_SYNC, publishing as space allows, then
    /// waits for the CMD_SYNC.
    fn issue<B, P, I>(&self, st: &mut State, hw: &B, plat: &P, cmds: I) -> Result<(), Error>
    where
        B: CmdqBackend + ?Sized,
        P: Platform + ?Sized,
        I: Iterator<Item = Command>,
    {
        let mut cmds = cmds.peekable();
        let mut err: Option<CmdqError> = None;
        let deadline = self.deadline(plat);
        let entries = self.geo.entries();
        bump(&self.counters.batches, 1);
        let sync_pos = loop {
            let need = if cmds.peek().is_some() {
                2.min(entries)
            } else {
                1
            };
            let free = self.wait_space(st, hw, plat, need, deadline, &mut err)?;
            let mut written = 0u32;
            // Keep one free slot for the CMD_SYNC while commands remain.
            while written + 1 < free {
                let Some(cmd) = cmds.next() else { break };
                self.write_slot(plat, st.prod.add(written), cmd.encode());
                written += 1;
            }
            let done = cmds.peek().is_none();
            let mut sync_at = None;
            if done {
                let at = st.prod.add(written);
                self.write_slot(plat, at, self.sync_command(at).encode());
                written += 1;
                sync_at = Some(at);
            } else if let Some(cmd) = cmds.next() {
                // The last free slot goes to one more command; the sync follows later.
                self.write_slot(plat, st.prod.add(written), cmd.encode());
                written += 1;
            }
            self.publish(st, hw, written);
            if let Some(at) = sync_at {
                break at;
            }
        };
        self.wait_sync(st, hw, plat, sync_pos, deadline, &mut err)?;
        batch_result(err)
    }

    /// Waits until at least `need` slots are free; returns the free count.
    fn wait_space<B: CmdqBackend + ?Sized, P: Platform + ?Sized>(
        &self,
        st: &mut State,
        hw: &B,
        plat: &P,
        need: u32,
        deadline: u64,
        err: &mut Option<CmdqError>,
    ) -> Result<u32, Error> {
        let mut stuck = Stuck::default();
        loop {
            let free = QueueIndex::free(st.prod, st.cons);
            if free >= need {
                return Ok(free);
            }
            let cons = self.read_cons(st, hw, plat, &mut stuck, err);
            if QueueIndex::free(st.prod, cons) >= need {
                continue;
            }
            self.check_deadline(plat, deadline, WaitFor::CmdqSpace)?;
            plat.relax(WaitFor::CmdqSpace);
        }
    }

    /// Waits for the CMD_SYNC at `at` to complete.
    fn wait_sync<B: CmdqBackend + ?Sized, P: Platform + ?Sized>(
        &self,
        st: &mut State,
        hw: &B,
        plat: &P,
        at: QueueIndex,
        deadline: u64,
        err: &mut Option<CmdqError>,
    ) -> Result<(), Error> {
        let mut polls = 0u32;
        let mut stuck = Stuck::default();
        loop {
            if self.opts.completion == Completion::Msi {
                if self.read_slot_word0(plat, at) == 0 {
                    // Ordered after the memory poll: later reads see what the SMMU did.
                    barrier::dma_rmb();
                    st.cons = at.next();
                    return Ok(());
                }
                polls = polls.saturating_add(1);
            }
            if self.opts.completion != Completion::Msi || polls > MSI_POLLS_BEFORE_CONS {
                let c = self.read_cons(st, hw, plat, &mut stuck, err);
                if QueueIndex::has_consumed(c, at) {
                    barrier::dma_rmb();
                    return Ok(());
                }
            }
            self.check_deadline(plat, deadline, WaitFor::CmdSync)?;
            if self.opts.completion == Completion::Sev {
                plat.wait_for_event(WaitFor::CmdSync);
            } else {
                plat.relax(WaitFor::CmdSync);
            }
        }
    }

    /// Hands the `written` slots after PROD to the SMMU: one PROD write.
    fn publish<B: CmdqBackend + ?Sized>(&self, st: &mut State, hw: &B, written: u32) {
        // Order the slot writes (and any STE/CD/page-table writes before them) before the
        // PROD write that lets the SMMU read them.
        barrier::dma_wmb();
        st.prod = st.prod.add(written);
        hw.write_prod(st.prod.to_reg());
        bump(&self.counters.prod_writes, 1);
        bump(&self.counters.commands, u64::from(written));
    }

    /// Reads CONS, recovers from an error it reports (the first one is kept in `err`), and
    /// records it in `st.cons` (ERR and OVF dropped); returns it.
    fn read_cons<B: CmdqBackend + ?Sized, P: Platform + ?Sized>(
        &self,
        st: &mut State,
        hw: &B,
        plat: &P,
        stuck: &mut Stuck,
        err: &mut Option<CmdqError>,
    ) -> QueueIndex {
        let cons = hw.read_cons();
        if let Some(e) = self.check_error(st, hw, plat, cons, stuck.poll(cons)) {
            err.get_or_insert(e);
        }
        st.cons = QueueIndex::from_reg(self.geo.log2_entries(), cons).with_ovf(false);
        st.cons
    }

    /// [`Error::Timeout`] once `deadline` has passed, counted as a space or a sync timeout.
    fn check_deadline<P: Platform + ?Sized>(
        &self,
        plat: &P,
        deadline: u64,
        what: WaitFor,
    ) -> Result<(), Error> {
        if plat.now_us() < deadline {
            return Ok(());
        }
        let counter = if what == WaitFor::CmdqSpace {
            &self.counters.space_timeouts
        } else {
            &self.counters.sync_timeouts
        };
        bump(counter, 1);
        Err(Error::Timeout(what))
    }

    /// If `cons` carries an active error, recovers as IHI 0070 §4.8 / Linux's
    /// `__arm_smmu_cmdq_skip_err` do and returns it: every active CERROR_ILL (or unknown code)
    /// has the entry at CONS replaced by a CMD_SYNC, whatever was recovered before (a second
    /// illegal command may stop at the same index after the queue wrapped twice), and the error
    /// is acknowledged through [`CmdqBackend::ack_error`].
    ///
    /// `stuck` says the queue made no progress since the previous CONS read: only then is an
    /// error with CONS.ERR = 0 looked for (2 more MMIO reads), and acknowledged if active, as
    /// Linux acknowledges GERRORN whatever CONS.ERR reads.
    fn check_error<B: CmdqBackend + ?Sized, P: Platform + ?Sized>(
        &self,
        st: &mut State,
        hw: &B,
        plat: &P,
        cons: u32,
        stuck: bool,
    ) -> Option<CmdqError> {
        // ERR is 7 bits wide, so the narrowing keeps every value.
        let code = CMDQ_CONS::ERR.read(cons) as u8;
        if code == 0 {
            if stuck && hw.error_active() {
                log_warn!(
                    "cmdq error active with CONS.ERR = 0 at cons {=u32:#x}",
                    cons
                );
                hw.ack_error();
            }
            return None;
        }
        if !hw.error_active() {
            // Some implementations (QEMU) leave ERR set after recovery: only an active
            // GERROR.CMDQ_ERR makes it meaningful.
            return None;
        }
        let at = QueueIndex::from_reg(self.geo.log2_entries(), cons).with_ovf(false);
        st.cons = at;
        let err = match CMDQ_CONS::ERR.read_as_enum(cons) {
            Some(CMDQ_CONS::ERR::Value::Abort) => CmdqError::Abort,
            Some(CMDQ_CONS::ERR::Value::AtcInvSync) => CmdqError::AtcInvSync,
            _ => {
                let raw = self.read_slot(plat, at);
                // Replace the refused command by a CMD_SYNC so that the consumer can resume.
                self.write_slot(plat, at, RECOVERY_SYNC.encode());
                barrier::dma_wmb();
                match CMDQ_CONS::ERR.read_as_enum(cons) {
                    Some(CMDQ_CONS::ERR::Value::Illegal) => CmdqError::Illegal(raw),
                    _ if code == CERROR_ILL_ACCESS => CmdqError::IllegalAccess(raw),
                    _ => CmdqError::Unknown(code),
                }
            }
        };
        match err {
            CmdqError::Abort => bump(&self.counters.abort, 1),
            CmdqError::AtcInvSync => bump(&self.counters.atc_inv_sync, 1),
            _ => bump(&self.counters.illegal, 1),
        }
        log_warn!("cmdq error {=u8} at cons {=u32:#x}", code, cons);
        hw.ack_error();
        Some(err)
    }
}

/// Where commands go: the SMMU's own queue, a Tegra241 VCMDQ, or a test double. Higher layers
/// (vIOMMU invalidation forwarding, CMDQV) are generic over it.
pub trait CommandSink {
    /// Issues `cmds` followed by a CMD_SYNC and waits for it (IHI 0070 §4.7.3).
    ///
    /// # Errors
    /// As [`Cmdq::submit`].
    fn submit(&self, cmds: &[Command]) -> Result<(), Error>;
}

impl<T: CommandSink + ?Sized> CommandSink for &T {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        (**self).submit(cmds)
    }
}

/// Accumulates commands and submits them in batches of up to `N` (Linux batches 64), each
/// with one CMD_SYNC.
#[derive(Debug, Default)]
pub struct CmdBatch<const N: usize = 64> {
    cmds: heapless::Vec<Command, N>,
}

impl<const N: usize> CmdBatch<N> {
    /// An empty batch.
    pub const fn new() -> Self {
        Self {
            cmds: heapless::Vec::new(),
        }
    }

    /// Adds `cmd`, first submitting the batch to `sink` if it is full.
    ///
    /// # Errors
    /// What `sink` returned for the flushed batch; `cmd` is then not added.
    pub fn push<S: CommandSink + ?Sized>(&mut self, sink: &S, cmd: Command) -> Result<(), Error> {
        if self.cmds.is_full() {
            self.flush(sink)?;
        }
        self.cmds.push(cmd).map_err(|_| Error::NoSpace)
    }

    /// Submits what is accumulated (nothing if empty) and empties the batch.
    ///
    /// # Errors
    /// What `sink` returned; the batch is emptied either way.
    pub fn flush<S: CommandSink + ?Sized>(&mut self, sink: &S) -> Result<(), Error> {
        if self.cmds.is_empty() {
            return Ok(());
        }
        let r = sink.submit(&self.cmds);
        self.cmds.clear();
        r
    }

    /// The commands accumulated so far.
    pub fn as_slice(&self) -> &[Command] {
        &self.cmds
    }

    /// Number of commands accumulated.
    pub fn len(&self) -> usize {
        self.cmds.len()
    }

    /// Whether nothing is accumulated.
    pub fn is_empty(&self) -> bool {
        self.cmds.is_empty()
    }
}
