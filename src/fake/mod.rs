//! Software models of an SMMUv3 (and CMDQV) for host tests (feature `fakes`).
//!
//! [`SmmuModel`] is a software SMMUv3 that the real driver code runs against. Its register pages
//! are plain host memory; the driver reaches them through `tock-registers` like real MMIO, and
//! the model runs from the [`Platform::mmio`](crate::platform::Platform::mmio) hook of
//! [`ModelPlatform`]: after a write it reacts synchronously as QEMU's SMMUv3 does (CR0 → CR0ACK,
//! CMDQ_PROD → commands consumed, EVENTQ_CONS → slots freed, ...), before a read it brings the
//! register up to date (late ACKs). Memory the SMMU reads or writes (stream table, queues, CDs,
//! MSI targets) lives in a [`DmaArena`] with fake physical addresses.
//!
//! ```
//! use arm_smmuv3::fake::SmmuModel;
//! use arm_smmuv3::platform::{DmaMemory, Platform};
//! let smmu = SmmuModel::qemu_virt();
//! let platform = smmu.platform(); // give to the driver with smmu.page0(), smmu.page1()
//! let buf = smmu.dma().alloc(4096, 4096).unwrap(); // what the driver allocates from
//! assert_eq!(buf.paddr.0, 0x8000_0000);
//! assert_eq!(platform.now_us(), 0);
//! ```
//!
//! What the model does, in short (each behaviour has its own test in `fake::tests`):
//! - CR0/IRQ_CTRL acknowledged at once, GBPA UPDATE cleared at once, unless [`SmmuModel::set_ack`]
//!   delays or withholds it. Queue bases are latched when a queue is enabled, the stream table at
//!   SMMUEN and at every CFGI. Writes to read-only registers are ignored.
//! - Command queue: consumed on CMDQ_PROD writes; illegal commands (decode error, SSec, CS = 3,
//!   CFGI_VMS_PIDM without MPAM, STALL_TERM on a terminate-only SMMU) stop it with CERROR_ILL and
//!   GERROR.CMDQ_ERR, resumed by GERRORN. CMD_SYNC CS=SIG_IRQ writes the MSI when IDR0.MSI and
//!   MSIAddr != 0, else counts a wired pulse. Errors and stalls on demand.
//! - Stream table: linear and 2-level walk, STEs cached per StreamID until CFGI (as QEMU), CDs
//!   fetched (not cached) for stage-1 streams. [`SmmuModel::dma_access`] simulates a device access;
//!   translation is the identity unless a test registered a fault.
//! - Event and PRI queues with three overflow styles, edge interrupts, MSIs.
//! - MMIO counters per register, STE snapshots for write-ordering checks.

mod bits;
mod cmdq;
mod control;
mod dma;
pub mod observe;
mod platform;
mod queues;
mod regs;
mod strtab;

#[cfg(feature = "cmdqv")]
pub mod cmdqv;

#[cfg(test)]
mod tests;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

pub use cmdq::{CmdqFault, CmdqStats};
pub use dma::{DmaArena, ModelArena};
pub use platform::{MmioDevice, ModelPlatform};
pub use queues::{OverflowStyle, QueueStats};
pub use regs::{MmioCounts, RegCount, RegPage, register_offset};
pub use strtab::{DmaOutcome, FaultKind, RejectedSte, SteSnapshot};

/// The real driver ([`Smmu`](crate::smmu::Smmu)) running on a [`SmmuModel`], as
/// [`SmmuModel::driver`] builds it.
pub type DriverOnModel = crate::smmu::Smmu<ModelPlatform, ModelArena>;

/// A host-side sink for tests: keeps every event record and PRI request the IRQ path hands to
/// the host, and counts the overflow notifications of each queue.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostSink {
    /// Event records, in order.
    pub events: Vec<EvtqEntry>,
    /// PRI requests, in order.
    pub requests: Vec<PriqEntry>,
    /// Event-queue overflow notifications.
    pub overflows: u32,
    /// PRI-queue overflow notifications.
    pub pri_overflows: u32,
}

impl crate::smmu::EventSink for HostSink {
    fn event(&mut self, e: &EvtqEntry) {
        self.events.push(*e);
    }
    fn overflow(&mut self) {
        self.overflows += 1;
    }
}

impl crate::smmu::PriSink for HostSink {
    fn request(&mut self, r: &PriqEntry) {
        self.requests.push(*r);
    }
    fn overflow(&mut self) {
        self.pri_overflows += 1;
    }
}

use std::ops::Range;
use std::ptr::NonNull;

use crate::command::Command;
use crate::event::EvtqEntry;
use crate::features::{Features, IdRegs};
use crate::ids::{Iova, StreamId, SubstreamId};
use crate::pri::PriqEntry;
use crate::regs::{Page0, Page1};
use crate::ste::Ste;
use cmdq::Cmdq;
use control::Control;
use queues::{OutQueue, Which};
use regs::RegPages;
use strtab::Strtab;

/// How the model acknowledges a write to CR0, IRQ_CTRL or GBPA (IHI 0070 §6.3.9-§6.3.18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AckBehaviour {
    /// The ACK (or GBPA.UPDATE clearing) is visible to the very next read, as in QEMU.
    #[default]
    Immediate,
    /// The first `n` reads of the ACK register (GBPA for GBPA) still show the old state; the
    /// `n + 1`-th read sees the new one.
    AfterPolls(u32),
    /// The write is never acknowledged (a hung SMMU): polling must time out.
    Never,
}

/// A register with a write-then-poll handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckReg {
    /// CR0, acknowledged in CR0ACK.
    Cr0,
    /// IRQ_CTRL, acknowledged in IRQ_CTRLACK.
    IrqCtrl,
    /// GBPA, acknowledged by UPDATE reading back as 0.
    Gbpa,
}

/// Interrupts the model signalled (wired pulses or MSIs), counted per source (IHI 0070 §3.18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqCounts {
    /// Event queue went empty → non-empty with IRQ_CTRL.EVENTQ_IRQEN set (edge).
    pub eventq: u64,
    /// PRI queue went empty → non-empty with IRQ_CTRL.PRIQ_IRQEN set (edge).
    pub priq: u64,
    /// A GERROR bit became active with IRQ_CTRL.GERROR_IRQEN set.
    pub gerror: u64,
    /// CMD_SYNC with CS=SIG_IRQ completed without an MSI write (QEMU's wired cmdq-sync line).
    pub cmd_sync: u64,
    /// CMD_SYNC with CS=SIG_SEV completed on an SMMU with IDR0.SEV (a WFE wake-up event).
    pub sev: u64,
    /// MSI writes performed (CMD_SYNC completions and EVENTQ/PRIQ/GERROR MSIs).
    pub msi_writes: u64,
}

/// Hardware the model owns outside its lock: the register pages and the DMA arena.
pub(crate) struct Hw {
    pub(crate) regs: RegPages,
    pub(crate) dma: DmaArena,
}

/// The model's state, behind [`SmmuModel`]'s mutex.
pub(crate) struct Model {
    pub(crate) feat: Features,
    pub(crate) ctl: Control,
    pub(crate) cmdq: Cmdq,
    pub(crate) evtq: OutQueue,
    pub(crate) priq: OutQueue,
    pub(crate) strtab: Strtab,
    pub(crate) irqs: IrqCounts,
    pub(crate) counts: MmioCounts,
}

/// A software SMMUv3 for host tests. Create it with [`SmmuModel::new`] or
/// [`SmmuModel::qemu_virt`], hand [`page0`](Self::page0)/[`page1`](Self::page1),
/// [`platform`](Self::platform) and [`dma`](Self::dma) to the driver, and steer or observe it with
/// the other methods.
pub struct SmmuModel {
    hw: Hw,
    clock_us: AtomicU64,
    relax_step_us: AtomicU64,
    model: Mutex<Model>,
    devices: std::sync::RwLock<Vec<Arc<dyn MmioDevice>>>,
    /// Accesses outside the two SMMU pages, counted without the model lock.
    outside: std::sync::atomic::AtomicU64,
    /// Set once [`SmmuModel::driver`] has lent the register pages to a driver.
    driver_taken: std::sync::atomic::AtomicBool,
    /// This model, for the thread-local list of models a CPU's barriers reach.
    me: std::sync::Weak<SmmuModel>,
}

// SAFETY: the register pages and the DMA arena are owned by the model for its whole life (freed
// only when it drops) and hold plain integers, so the owner may move between threads.
unsafe impl Send for SmmuModel {}
// SAFETY: through `&SmmuModel` the register pages are only touched by model code running with the
// `model` mutex held (the MMIO hook, `relax`, test steering), so two of those accesses never race;
// the DMA arena is `Sync` itself (`DmaArena`). The driver reaches the pages through the pointers
// from `page0`/`page1` under `Smmu::new`'s contract, and reads a register only after the hook
// for that read returned.
unsafe impl Sync for SmmuModel {}

impl SmmuModel {
    /// A model presenting `idregs`, with QEMU's reset values (GBPA 0x1000, queue bases with
    /// LOG2SIZE at the IDR1 maximum for CMDQ and EVENTQ, everything else 0) and a default
    /// 4 MiB [`DmaArena`] arena at physical address 0x8000_0000.
    pub fn new(idregs: IdRegs) -> Arc<Self> {
        Self::with_dma(idregs, DmaArena::default())
    }

    /// As [`new`](Self::new), with the caller's DMA arena.
    pub fn with_dma(idregs: IdRegs, dma: DmaArena) -> Arc<Self> {
        let hw = Hw {
            regs: RegPages::new(),
            dma,
        };
        let ctl = Control::reset(&hw, idregs);
        hw.dma.set_strict(true);
        Arc::new_cyclic(|me| Self {
            hw,
            clock_us: AtomicU64::new(0),
            relax_step_us: AtomicU64::new(1),
            model: Mutex::new(Model {
                feat: Features::decode(idregs),
                ctl,
                cmdq: Cmdq::new(),
                evtq: OutQueue::new(Which::Evtq),
                priq: OutQueue::new(Which::Priq),
                strtab: Strtab::default(),
                irqs: IrqCounts::default(),
                counts: MmioCounts::default(),
            }),
            devices: std::sync::RwLock::new(Vec::new()),
            outside: std::sync::atomic::AtomicU64::new(0),
            driver_taken: std::sync::atomic::AtomicBool::new(false),
            me: me.clone(),
        })
    }

    /// A model with QEMU `virt`'s ID registers (IHI 0070 §6.3; QEMU 9.1+ with both stages).
    pub fn qemu_virt() -> Arc<Self> {
        Self::new(crate::features::QEMU_VIRT)
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Register page 0 (offsets 0x0_0000-0x0_FFFF), 64 KiB aligned, valid while the model lives.
    pub fn page0(&self) -> NonNull<Page0> {
        self.hw.regs.page0().cast()
    }

    /// Register page 1 (offsets 0x1_0000-0x1_FFFF), right after page 0.
    pub fn page1(&self) -> NonNull<Page1> {
        self.hw.regs.page1().cast()
    }

    /// Presents the Cavium CN99xx layout (Linux `ARM_SMMU_OPT_PAGE0_REGS_ONLY`): the page-1
    /// registers EVENTQ_PROD/CONS and PRIQ_PROD/CONS are found at their page-0 offsets
    /// (0xA8/0xAC/0xC8/0xCC) and page 1 does not exist: accesses there reach no register and are
    /// counted in [`MmioCounts::outside`]. Set it before the driver enables the queues.
    pub fn set_page0_regs_only(&self, on: bool) {
        let _m = self.lock();
        self.hw.regs.set_page0_only(on);
    }

    /// The host address of register page 0 as bytes.
    pub fn page0_ptr(&self) -> NonNull<u8> {
        self.hw.regs.page0()
    }

    /// The host address of register page 1 as bytes.
    pub fn page1_ptr(&self) -> NonNull<u8> {
        self.hw.regs.page1()
    }

    /// The decoded ID registers the model presents.
    pub fn features(&self) -> Features {
        self.lock().feat
    }

    /// The DMA arena the driver allocates from and the model reads and writes.
    pub fn dma(&self) -> &DmaArena {
        &self.hw.dma
    }

    /// The model's DMA arena as an owned [`DmaMemory`](crate::platform::DmaMemory) to lend to
    /// a driver (`Smmu::new` takes its memory by value).
    pub fn lend_dma(self: &Arc<Self>) -> ModelArena {
        ModelArena(Arc::clone(self))
    }

    /// The driver of this model, probed (not reset) with `config`: the safe way to build one in
    /// tests. A model lends its register pages to one driver only; a second call gives
    /// [`Error::InUse`](crate::Error::InUse)`(`[`Object::Smmu`](crate::Object::Smmu)`)`.
    pub fn driver(
        self: &Arc<Self>,
        config: crate::smmu::Config,
    ) -> Result<DriverOnModel, crate::Error> {
        if self.driver_taken.swap(true, Ordering::AcqRel) {
            return Err(crate::Error::InUse(crate::Object::Smmu));
        }
        // SAFETY: the pages belong to this model, and the driver's platform and DMA handle each
        // hold an `Arc` of it, so they outlive the driver; `driver_taken` makes this the pages'
        // only driver; the model itself touches them only inside the driver's MMIO hook or in
        // test steering calls made between the driver's accesses.
        let d = unsafe {
            crate::smmu::Smmu::new(
                self.page0(),
                self.page1(),
                self.platform(),
                self.lend_dma(),
                config,
            )
        };
        if d.is_err() {
            self.driver_taken.store(false, Ordering::Release);
        }
        d
    }

    /// A [`Platform`](crate::platform::Platform) whose MMIO hook runs this model.
    pub fn platform(self: &Arc<Self>) -> ModelPlatform {
        ModelPlatform::new(Arc::clone(self))
    }

    /// The virtual clock in microseconds.
    pub fn now_us(&self) -> u64 {
        self.clock_us.load(Ordering::Relaxed)
    }

    /// Moves the virtual clock forward by `us` microseconds.
    pub fn advance_us(&self, us: u64) {
        self.clock_us.fetch_add(us, Ordering::Relaxed);
    }

    /// How far each [`Platform::relax`](crate::platform::Platform::relax) moves the clock
    /// (default 1 µs; raise it to make long timeouts cheap to reach).
    pub fn set_relax_step_us(&self, us: u64) {
        self.relax_step_us.store(us, Ordering::Relaxed);
    }

    pub(crate) fn relax_step_us(&self) -> u64 {
        self.relax_step_us.load(Ordering::Relaxed)
    }

    /// Registers another MMIO device (e.g. a CMDQV model) that the platform hook forwards
    /// accesses outside the two SMMU pages to.
    pub fn add_device(&self, dev: Arc<dyn MmioDevice>) {
        self.devices
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .push(dev);
    }

    /// Runs the model for one MMIO access at host address `addr` (what the platform hook does).
    /// The calling thread's barriers reach this model from now on ([`observe`]).
    pub fn mmio(&self, addr: usize, write: bool) {
        observe::register(&self.me);
        let Some((page, offset)) = self.hw.regs.decode(addr) else {
            // Other devices run without the SMMU model's lock, so that several CPUs driving
            // their own queues of another device do not serialise on this model.
            self.outside.fetch_add(1, Ordering::Relaxed);
            let devs = self.devices.read().unwrap_or_else(|e| e.into_inner());
            for d in devs.iter() {
                if d.contains(addr) {
                    d.access(addr, write);
                }
            }
            return;
        };
        let mut m = self.lock();
        m.snapshot_watched(&self.hw);
        m.counts.record(page, offset, write);
        m.on_access(&self.hw, page, offset, write);
    }

    /// A barrier of the driver on a thread that drove this model (see [`observe`]).
    pub(crate) fn on_barrier(&self, kind: observe::Barrier) {
        let mut m = self.lock();
        m.on_barrier(&self.hw, kind);
    }

    /// A 64-bit store of the driver to a live stream-table entry at host address `addr`.
    pub(crate) fn on_table_store(&self, addr: usize) {
        let Some(pa) = self.hw.dma.pa_of_addr(addr) else {
            return;
        };
        self.hw.dma.publish_word(pa);
        let mut m = self.lock();
        m.check_table_store(&self.hw, pa);
        m.snapshot_watched(&self.hw);
    }

    /// Whether the SMMU sees DMA memory only as the driver's barriers publish it (default on;
    /// see [`DmaArena`]'s strict mode). Turn it off only for a test that writes memory behind the
    /// driver's back on purpose.
    pub fn set_strict(&self, on: bool) {
        self.hw.dma.set_strict(on);
    }

    /// One step of background work, run by every `relax`: lets anything the model deferred
    /// (e.g. a command queue that a test un-stalled) make progress.
    pub fn step(&self) {
        let mut m = self.lock();
        m.step(&self.hw);
    }

    /// Chooses how writes to `reg` are acknowledged (default [`AckBehaviour::Immediate`]).
    pub fn set_ack(&self, reg: AckReg, behaviour: AckBehaviour) {
        self.lock().ctl.set_ack(reg, behaviour);
    }

    /// Raises the GERROR errors in `bits` (IHI 0070 §6.3.19): each bit that is not active
    /// (GERROR == GERRORN) is toggled; an active one stays as it is. Signals the GERROR
    /// interrupt when something became active and IRQ_CTRL.GERROR_IRQEN is on.
    pub fn raise_gerror(&self, bits: u32) {
        let mut m = self.lock();
        m.raise_gerror(&self.hw, bits);
    }

    /// Active GERROR errors: GERROR XOR GERRORN.
    pub fn gerror_active(&self) -> u32 {
        let m = self.lock();
        m.ctl.gerror ^ m.ctl.gerrorn
    }

    /// Interrupt counters.
    pub fn irq_counts(&self) -> IrqCounts {
        self.lock().irqs
    }

    /// MMIO access counters per register.
    pub fn mmio_counts(&self) -> MmioCounts {
        let mut counts = self.lock().counts.clone();
        counts.outside = self.outside.load(Ordering::Relaxed);
        counts
    }

    /// Clears the MMIO access counters.
    pub fn reset_mmio_counts(&self) {
        self.lock().counts = MmioCounts::default();
        self.outside.store(0, Ordering::Relaxed);
    }

    /// The CR0 value in effect (acknowledged).
    pub fn cr0(&self) -> u32 {
        self.lock().ctl.cr0
    }

    /// The IRQ_CTRL value in effect (acknowledged).
    pub fn irq_ctrl(&self) -> u32 {
        self.lock().ctl.irq_ctrl
    }

    /// The GBPA value in effect (UPDATE clear).
    pub fn gbpa(&self) -> u32 {
        self.lock().ctl.gbpa
    }

    // ---- command queue ----

    /// Makes the command queue report `fault` after `skip` more commands are consumed
    /// successfully (0: at the next command; for [`CmdqFault::AtcInvSync`], at the first
    /// CMD_SYNC from that point). One-shot.
    pub fn inject_cmdq_error(&self, skip: u64, fault: CmdqFault) {
        self.lock().cmdq.inject(skip, fault);
    }

    /// While `stall` is set, every CMD_SYNC stays unconsumed: CONS stops at it (a sync that never
    /// completes). Clearing it lets the queue run on at once.
    pub fn set_sync_stall(&self, stall: bool) {
        let mut m = self.lock();
        m.cmdq.stall_syncs = stall;
        if !stall {
            m.cmdq_consume(&self.hw);
        }
    }

    /// Whether the command queue is waiting at a stalled CMD_SYNC.
    pub fn cmdq_stalled(&self) -> bool {
        self.lock().cmdq.stalled
    }

    /// The commands consumed since the last call, oldest first, and forgets them.
    pub fn take_commands(&self) -> Vec<Command> {
        std::mem::take(&mut self.lock().cmdq.log)
    }

    /// The commands consumed and not yet taken, oldest first.
    pub fn commands(&self) -> Vec<Command> {
        self.lock().cmdq.log.clone()
    }

    /// Command queue counters.
    pub fn cmdq_stats(&self) -> CmdqStats {
        self.lock().cmdq.stats
    }

    // ---- stream table and DMA ----

    /// Simulates one device transaction of `sid` (and `ssid`) to `iova` (IHI 0070 §3.3): GBPA
    /// while SMMUEN = 0, else the (cached) STE decides; configuration errors and registered
    /// faults write their event records (IHI 0070 §7.3).
    pub fn dma_access(
        &self,
        sid: StreamId,
        ssid: Option<SubstreamId>,
        iova: Iova,
        write: bool,
    ) -> DmaOutcome {
        let mut m = self.lock();
        m.dma(&self.hw, sid, ssid, iova, write)
    }

    /// From now on, transactions of `sid` to an address in `iova` fault with `kind` (when the
    /// faulting stage is in use by the stream's STE). Faults are not cached: clearing them takes
    /// effect at once, as in QEMU.
    pub fn set_fault(&self, sid: StreamId, iova: Range<u64>, kind: FaultKind) {
        self.lock().set_fault(sid, iova, kind);
    }

    /// Removes every registered fault.
    pub fn clear_faults(&self) {
        self.lock().clear_faults();
    }

    /// The STE of `sid` in memory now, walked from the current STRTAB_BASE/_CFG register values
    /// (`None` if unreachable: beyond the table, invalid L1 descriptor, bad address).
    pub fn ste_in_memory(&self, sid: StreamId) -> Option<Ste> {
        self.lock().ste_in_memory(&self.hw, sid)
    }

    /// The STE the model has cached for `sid` (`None` until a DMA fetched it, or after a CFGI).
    pub fn cached_ste(&self, sid: StreamId) -> Option<Ste> {
        self.lock().cached_ste(sid)
    }

    /// Whether the cached STE of `sid` differs from memory: the driver changed the STE and has not
    /// (yet) invalidated it with CFGI_STE / CFGI_ALL.
    pub fn ste_cache_stale(&self, sid: StreamId) -> bool {
        let m = self.lock();
        match m.cached_ste(sid) {
            Some(c) => m.ste_in_memory(&self.hw, sid) != Some(c),
            None => false,
        }
    }

    /// Starts watching the STE of `sid`: at every MMIO access from now on the model reads it from
    /// memory (real hardware may fetch it at any moment) and keeps each distinct state.
    pub fn watch_ste(&self, sid: StreamId) {
        let mut m = self.lock();
        m.watch_ste(&self.hw, sid);
    }

    /// The distinct states the watched STE of `sid` went through, oldest first.
    pub fn ste_snapshots(&self, sid: StreamId) -> Vec<SteSnapshot> {
        self.lock().ste_snapshots(sid)
    }

    /// STEs with V = 1 that [`Ste::config`] rejected, seen by a DMA fetch or a watch snapshot.
    pub fn ste_rejections(&self) -> Vec<RejectedSte> {
        self.lock().strtab.rejected.clone()
    }

    /// A device's DMA write of `words` at `pa` that the SMMU let through and that is still in
    /// flight: the CPU's memory shows it only once a CMD_SYNC completed (IHI 0070 §4.7.3: a
    /// completed CMD_SYNC means earlier transactions are visible) and the CPU executed a load
    /// barrier after observing that completion (in a strict arena; at once otherwise).
    pub fn device_write(&self, pa: crate::ids::PhysAddr, words: &[u64]) -> Option<()> {
        self.hw.dma.write_record(pa, words, cmdq::DEVICE_WRITES)
    }

    // ---- event and PRI queues ----

    /// Produces `entry` into the event queue, as if the SMMU generated it.
    pub fn inject_event(&self, entry: EvtqEntry) {
        let mut m = self.lock();
        m.produce(&self.hw, Which::Evtq, &entry.0);
    }

    /// Produces `entry` into the PRI queue, as if a device sent a page request.
    pub fn inject_pri(&self, entry: PriqEntry) {
        let mut m = self.lock();
        m.produce(&self.hw, Which::Priq, &entry.0);
    }

    /// How the event queue treats a record that finds it full (default
    /// [`OverflowStyle::Hardware`]).
    pub fn set_event_overflow(&self, style: OverflowStyle) {
        self.lock().evtq.style = style;
    }

    /// How the PRI queue treats a record that finds it full.
    pub fn set_pri_overflow(&self, style: OverflowStyle) {
        self.lock().priq.style = style;
    }

    /// Event queue counters.
    pub fn event_stats(&self) -> QueueStats {
        self.lock().evtq.stats
    }

    /// PRI queue counters.
    pub fn pri_stats(&self) -> QueueStats {
        self.lock().priq.stats
    }
}

impl Model {
    fn on_access(&mut self, hw: &Hw, page: RegPage, offset: usize, write: bool) {
        if write {
            self.on_write(hw, page, offset);
        } else {
            self.on_read(hw, page, offset);
        }
    }

    fn step(&mut self, hw: &Hw) {
        self.cmdq_consume(hw);
        if self.evtq.enabled {
            self.queue_cons_written(hw, Which::Evtq);
        }
        if self.priq.enabled {
            self.queue_cons_written(hw, Which::Priq);
        }
    }

    /// A barrier of the driver: publishes its stores to the SMMU's view of memory, hands it the
    /// queue records its PROD reads covered, and notes which queues it may now be reading.
    fn on_barrier(&mut self, hw: &Hw, kind: observe::Barrier) {
        if kind.orders_loads() {
            // Every earlier read of queue slots is complete.
            self.evtq.cpu_reading = false;
            self.priq.cpu_reading = false;
        }
        if kind.orders_stores() {
            hw.dma.publish();
        }
        if kind.orders_loads() {
            for q in hw.dma.hand_over_records() {
                match q {
                    0 => self.evtq.cpu_reading = true,
                    1 => self.priq.cpu_reading = true,
                    _ => {}
                }
            }
        }
    }

    /// Raises GERROR bits (see [`SmmuModel::raise_gerror`]).
    pub(crate) fn raise_gerror(&mut self, hw: &Hw, bits: u32) {
        let active = self.ctl.gerror ^ self.ctl.gerrorn;
        let new = bits & !active & bits::GERROR_MASK;
        if new == 0 {
            return;
        }
        self.ctl.gerror ^= new;
        hw.regs.w32(regs::off::GERROR, self.ctl.gerror);
        if self.ctl.irq_ctrl & bits::IRQ_GERROR != 0 {
            self.irqs.gerror += 1;
            self.signal_msi(
                hw,
                regs::off::GERROR_IRQ_CFG0,
                regs::off::GERROR_IRQ_CFG1,
                bits::GERROR_MSI_GERROR_ABT,
            );
        }
    }

    /// Toggles GERROR bits without signalling (a failed GERROR MSI reports itself this way).
    pub(crate) fn raise_gerror_quiet(&mut self, hw: &Hw, bits: u32) {
        let active = self.ctl.gerror ^ self.ctl.gerrorn;
        self.ctl.gerror ^= bits & !active & bits::GERROR_MASK;
        hw.regs.w32(regs::off::GERROR, self.ctl.gerror);
    }
}
