//! The library's SMMU driver in charge of QEMU's SMMUv3: take-over, the IRQ path (event queue and
//! global errors, both drained in the interrupt handler) and what it saw, for the scenarios.
//!
//! The interrupt handler only drains into a fixed-size log; the scenarios print the log from the
//! main flow (the UART lock must never be taken in the handler). Every drain runs between two
//! reads of the PL061 GPIO's identification registers: they have no side effect, and with
//! `-trace pl061_read` they mark the drain's start and end in QEMU's trace, in order with the
//! `smmuv3_read_mmio` / `smmuv3_write_mmio` lines, so the host can count the SMMU accesses each
//! drain made on the emulator itself.

use core::cell::RefCell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicUsize, Ordering};

use arm_gic::IntId;
use arm_smmuv3::discovery::IrqSource;
use arm_smmuv3::event::{EventRecord, EvtqEntry};
use arm_smmuv3::pri::PriqEntry;
use arm_smmuv3::regs::{Page0, Page1};
use arm_smmuv3::smmu::{Config, DrainStats, EventSink, GerrorStats, PriSink, Smmu};
use arm_smmuv3::viommu::Router;
use arm_smmuv3::{BumpDma, Error, Object, Platform};
use critical_section::Mutex;
use heapless::Deque;

use crate::gic::{self, IrqCounts};
use crate::platform::{self, QemuPlatform};
use crate::say;

/// The driver as the demo instantiates it.
pub type DemoSmmu = Smmu<QemuPlatform, &'static BumpDma>;

/// One driver instance per take-over; instances are never reused (a disabled one stays parked).
const SLOTS: usize = 8;
static INSTANCES: [spin::Once<DemoSmmu>; SLOTS] = [const { spin::Once::new() }; SLOTS];
static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(0);
/// The instance the interrupt handler serves (null: none).
static ACTIVE: AtomicPtr<DemoSmmu> = AtomicPtr::new(core::ptr::null_mut());

/// Takes the SMMU over with a fresh driver instance: the previous one (if any) is disabled first,
/// then `Smmu::new` + `Smmu::reset`, and the interrupt handler starts serving the new one.
pub fn take_over(config: Config) -> Result<&'static DemoSmmu, Error> {
    release();
    let slot = INSTANCES
        .get(NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed))
        .ok_or(Error::NoSpace)?;
    // No SMMU described, or one at address 0: no register pages to take over.
    let none = Error::NoSuch(Object::Smmu);
    let desc = crate::discover::smmu().ok_or(none)?;
    let page0 = NonNull::new(desc.page0().0 as usize as *mut Page0).ok_or(none)?;
    let page1 = NonNull::new(desc.page1().0 as usize as *mut Page1).ok_or(none)?;
    // SAFETY: the register pages of the SMMU the device tree describes (QEMU `virt`'s SMMUv3, in
    // the first GiB, which boot.rs identity-maps as device memory),
    // for the rest of the run. The only other driver instances are parked in `INSTANCES` after
    // `release` disabled them, and are never used again; the demo's own code no longer touches
    // the SMMU's registers once the first instance exists.
    let smmu = unsafe { Smmu::new(page0, page1, QemuPlatform::new(), platform::dma(), config) }?;
    let smmu: &'static DemoSmmu = slot.call_once(|| smmu);
    smmu.reset()?;
    set_active(Some(smmu));
    Ok(smmu)
}

/// Disables the instance in charge (GBPA abort, CR0 = 0) and stops serving its interrupts.
pub fn release() {
    let p = ACTIVE.swap(core::ptr::null_mut(), Ordering::AcqRel);
    // SAFETY: ACTIVE only ever holds null or a pointer into `INSTANCES`, which live forever.
    if let Some(smmu) = unsafe { p.as_ref() }
        && let Err(e) = smmu.disable()
    {
        say!("    disable failed: {:?}", e);
    }
}

fn set_active(smmu: Option<&'static DemoSmmu>) {
    let p = smmu.map_or(core::ptr::null_mut(), |s| core::ptr::from_ref(s).cast_mut());
    ACTIVE.store(p, Ordering::Release);
    gic::set_hook(if smmu.is_some() { Some(irq_hook) } else { None });
}

fn active() -> Option<&'static DemoSmmu> {
    // SAFETY: as in `release`.
    unsafe { ACTIVE.load(Ordering::Acquire).as_ref() }
}

/// What the interrupt handler did, in order.
#[derive(Clone, Copy, Debug)]
pub enum Logged {
    /// One event record handed to the sink by drain `drain`.
    Record {
        /// Drain number (since boot).
        drain: u32,
        /// The raw record.
        entry: EvtqEntry,
    },
    /// The sink was told that events were lost.
    Overflow {
        /// Drain number.
        drain: u32,
    },
    /// One finished drain.
    Drain {
        /// Drain number.
        drain: u32,
        /// What `drain_evtq` reported.
        stats: DrainStats,
        /// SMMU accesses counted by the platform's MMIO hook during the drain.
        hook_mmio: u32,
        /// Why it ran.
        cause: DrainCause,
    },
    /// One `handle_gerror` call.
    Gerror(GerrorStats),
}

/// The demo's vIOMMU router: 2 vIOMMUs, 16 routes, 4 vDEVICEs per vIOMMU, 16-record vEVENTQs,
/// 8-entry fault queues.
pub type DemoRouter = Router<2, 16, 4, 16, 8>;

/// The router the interrupt handler hands drained records to while routing is on (otherwise
/// they go straight to the log).
pub static ROUTER: DemoRouter = Router::new();
static ROUTING: AtomicBool = AtomicBool::new(false);

/// Makes the interrupt handler's drains go through [`ROUTER`] (vDEVICEs' stage-1 records to
/// their vEVENTQs, the rest to the log) or straight to the log.
pub fn set_routing(on: bool) {
    ROUTING.store(on, Ordering::Release);
}

/// Why a drain ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DrainCause {
    /// The event queue interrupt (the SMMU's `eventq` line).
    EventIrq,
    /// `handle_gerror` asked for it (EVENTQ_ABT_ERR: QEMU's overflow).
    Gerror,
}

impl DrainCause {
    fn label(self) -> &'static str {
        match self {
            DrainCause::EventIrq => "eventq IRQ",
            DrainCause::Gerror => "GERROR hint",
        }
    }
}

const LOG_CAPACITY: usize = 96;
static LOG: Mutex<RefCell<Deque<Logged, LOG_CAPACITY>>> = Mutex::new(RefCell::new(Deque::new()));
/// Entries that did not fit in [`LOG`].
static LOG_DROPPED: AtomicU32 = AtomicU32::new(0);
static DRAINS: AtomicU32 = AtomicU32::new(0);

fn log(item: Logged) {
    critical_section::with(|cs| {
        if LOG.borrow_ref_mut(cs).push_back(item).is_err() {
            LOG_DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    });
}

/// Takes everything logged so far.
pub fn take_log() -> heapless::Vec<Logged, LOG_CAPACITY> {
    critical_section::with(|cs| {
        let mut q = LOG.borrow_ref_mut(cs);
        let mut out = heapless::Vec::new();
        while let Some(item) = q.pop_front() {
            let _ = out.push(item);
        }
        out
    })
}

/// Log entries lost because the log was full (0 in a good run).
pub fn log_dropped() -> u32 {
    LOG_DROPPED.load(Ordering::Relaxed)
}

struct LogSink {
    drain: u32,
}

impl EventSink for LogSink {
    fn event(&mut self, entry: &EvtqEntry) {
        log(Logged::Record {
            drain: self.drain,
            entry: *entry,
        });
    }

    fn overflow(&mut self) {
        log(Logged::Overflow { drain: self.drain });
    }
}

/// The router's sink hands on page requests too; the demo drains no PRI queue.
impl PriSink for LogSink {
    fn request(&mut self, _: &PriqEntry) {}
}

/// PL061 GPIO (QEMU `virt`), whose PeriphID registers mark drains in QEMU's trace.
const PL061_BASE: usize = 0x0903_0000;
/// PL061 GPIOPeriphID0: read right before a drain.
const MARK_DRAIN_START: usize = 0xfe0;
/// PL061 GPIOPeriphID1: read right after a drain.
const MARK_DRAIN_END: usize = 0xfe4;

fn trace_mark(offset: usize) {
    // SAFETY: a read of a PL061 identification register (QEMU `virt` GPIO, identity-mapped as
    // device memory by boot.rs): no side effect, and nothing else uses the GPIO.
    let _ = unsafe { ((PL061_BASE + offset) as *const u32).read_volatile() };
}

/// One event-queue drain between trace markers, logged.
fn traced_drain(smmu: &DemoSmmu, cause: DrainCause) {
    let drain = DRAINS.fetch_add(1, Ordering::Relaxed) + 1;
    let mut sink = LogSink { drain };
    trace_mark(MARK_DRAIN_START);
    let before = platform::mmio_accesses();
    let stats = if ROUTING.load(Ordering::Acquire) {
        smmu.drain_evtq(&mut ROUTER.sink(&mut sink))
    } else {
        smmu.drain_evtq(&mut sink)
    };
    let hook_mmio = platform::mmio_accesses().wrapping_sub(before);
    trace_mark(MARK_DRAIN_END);
    log(Logged::Drain {
        drain,
        stats,
        hook_mmio,
        cause,
    });
}

/// The SMMU's share of the interrupt handler (runs with IRQs masked, before EOI).
/// Serves a physical SMMU interrupt (INTID 106-109) that the caller acknowledged, while a guest
/// runs: the same drain as the demo's interrupt hook.
pub fn handle_guest_time_irq(intid: u32) {
    if let Some(spi) = intid.checked_sub(32) {
        irq_hook(IntId::spi(spi));
    }
}

fn irq_hook(intid: IntId) {
    let Some(smmu) = active() else {
        return;
    };
    let source = crate::discover::irq_source(intid);
    if source == Some(IrqSource::Eventq) {
        traced_drain(smmu, DrainCause::EventIrq);
    } else if source == Some(IrqSource::Gerror) {
        let st = smmu.handle_gerror();
        log(Logged::Gerror(st));
        if st.drain_evtq {
            traced_drain(smmu, DrainCause::Gerror);
        }
    }
}

/// What one step of a scenario got from the IRQ path.
#[derive(Default)]
pub struct Seen {
    /// Records, decoded, in queue order.
    pub records: heapless::Vec<EventRecord, LOG_CAPACITY>,
    /// Drains (records, overflows, driver-counted MMIO, hook-counted MMIO).
    pub drains: heapless::Vec<(DrainStats, u32), 16>,
    /// Overflows the sink was told about.
    pub overflows: u32,
    /// `handle_gerror` results.
    pub gerrors: heapless::Vec<GerrorStats, 8>,
}

/// The name of an event type, for people.
pub fn event_name(r: &EventRecord) -> &'static str {
    r.id.name().unwrap_or("RESERVED")
}

/// The CLASS field, for people.
pub fn class_name(r: &EventRecord) -> &'static str {
    match r.class.raw() {
        0 => "CD",
        1 => "TT",
        2 => "IN",
        _ => "RSVD",
    }
}

/// Whether the record is a fault with an address (F_WALK_EABT, F_TRANSLATION .. F_PERMISSION):
/// the records whose address, S2, CLASS and RnW fields are defined (IHI 0070 §7.3.11-§7.3.15).
fn has_address(r: &EventRecord) -> bool {
    r.id.0 == 0x0b || (0x10..=0x13).contains(&r.id.0)
}

/// Prints one record, decoded, on both streams (the host test parses the defmt line).
pub fn print_record(r: &EventRecord, drain: u32) {
    if has_address(r) {
        say!(
            "    EVENT {} id={:#x} sid={:#x} addr={:#x} ipa={:#x} S2={} class={} {} (drain #{})",
            event_name(r),
            r.id.0,
            r.sid.0,
            r.input_addr,
            r.ipa,
            u8::from(r.s2),
            class_name(r),
            if r.rnw { "read" } else { "write" },
            drain
        );
    } else {
        say!(
            "    EVENT {} id={:#x} sid={:#x} (drain #{})",
            event_name(r),
            r.id.0,
            r.sid.0,
            drain
        );
    }
}

/// Prints and returns what the IRQ path logged since the last call.
pub fn collect() -> Seen {
    let mut seen = Seen::default();
    for item in take_log() {
        match item {
            Logged::Record { drain, entry } => {
                let r = EventRecord::decode(&entry);
                print_record(&r, drain);
                let _ = seen.records.push(r);
            }
            Logged::Overflow { drain } => {
                say!("    OVERFLOW drain #{}: events were lost", drain);
                seen.overflows += 1;
            }
            Logged::Drain {
                drain,
                stats,
                hook_mmio,
                cause,
            } => {
                say!(
                    "    DRAIN #{} ({}) records={} overflows={} mmio={} hook_mmio={} passes={}",
                    drain,
                    cause.label(),
                    stats.records,
                    stats.overflows,
                    stats.mmio,
                    hook_mmio,
                    stats.extra_passes + 1
                );
                let _ = seen.drains.push((stats, hook_mmio));
            }
            Logged::Gerror(st) => {
                say!(
                    "    GERROR active={:#x} acked={:#x} cmdq_deferred={} cmdq_recovered={:?} drain_evtq={} mmio={}",
                    st.active,
                    st.acked,
                    st.cmdq_deferred,
                    st.cmdq_recovered,
                    st.drain_evtq,
                    st.mmio
                );
                let _ = seen.gerrors.push(st);
            }
        }
    }
    seen
}

/// How long to wait for an interrupt that must come.
pub const IRQ_EXPECTED_US: u64 = 200_000;
/// How long to give an interrupt that must not come (QEMU raises it while the DMA runs, before
/// edu reports the DMA done, so a short grace suffices).
pub const IRQ_UNEXPECTED_US: u64 = 20_000;

/// Waits (at most `timeout_us`) until `done(irq counts)` holds, e.g. until the event IRQ has been
/// taken after a faulting DMA. Returns whether it held.
pub fn wait_irqs(
    platform: &QemuPlatform,
    timeout_us: u64,
    done: impl Fn(IrqCounts) -> bool,
) -> bool {
    let start = platform.now_us();
    while !done(gic::counts()) {
        if platform.now_us().wrapping_sub(start) > timeout_us {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Prints the instance's cumulative counters (the host test parses the defmt line).
pub fn print_counters(smmu: &DemoSmmu) {
    let c = smmu.counters();
    say!(
        "    COUNTERS events={} overflows={} gerror_cmdq={} gerror_evtq_abt={} cmdq_batches={} cmdq_illegal={} drains_busy={} drains_incomplete={}",
        c.events,
        c.event_overflows,
        c.gerror.cmdq_err,
        c.gerror.eventq_abt_err,
        c.cmdq.batches,
        c.cmdq.illegal,
        c.drains_busy,
        c.drains_incomplete
    );
}
