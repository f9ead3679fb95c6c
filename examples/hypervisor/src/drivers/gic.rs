//! GICv3 at EL2 (arm-gic, feature `el2`) and the interrupt lines the demo uses.

use core::cell::Cell;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use aarch64_cpu::registers::{DAIF, HCR_EL2, ReadWriteable, Readable, Writeable};
use arm_gic::gicv3::registers::{Gicd, GicrSgi};
use arm_gic::gicv3::{GicCpuInterface, GicV3};
use arm_gic::{IntId, Trigger, UniqueMmioPointer};
use critical_section::Mutex;

use crate::board::{GICD_BASE, GICR_BASE};

/// edu's legacy INTx (slot 1, INTA, swizzled by the host bridge's interrupt-map): SPI 4, level.
pub const EDU_INTX: IntId = IntId::spi(4);

/// Priority of every line the demo enables (lower is more urgent; the mask lets all through).
const PRIORITY: u8 = 0x80;

/// How many lines the demo counts: the SMMU's four (eventq, priq, cmdq-sync, gerror) and edu's.
const NLINES: usize = 5;

/// The lines the demo enables, with their trigger, in the order of [`IrqCounts`]: the SMMU's as
/// the device tree names them (`None` when it does not wire one), then edu's INTx.
static LINES: spin::Once<[Option<(IntId, Trigger)>; NLINES]> = spin::Once::new();

fn lines() -> &'static [Option<(IntId, Trigger)>; NLINES] {
    LINES.call_once(|| {
        let d = crate::discover::smmu();
        let line =
            |irq: Option<arm_smmuv3::discovery::Irq>| irq.and_then(crate::discover::gic_line);
        [
            d.and_then(|d| line(d.irqs.eventq)),
            d.and_then(|d| line(d.irqs.priq)),
            d.and_then(|d| line(d.irqs.cmdq_sync)),
            d.and_then(|d| line(d.irqs.gerror)),
            Some((EDU_INTX, Trigger::Level)),
        ]
    })
}

static COUNTS: [AtomicU32; NLINES + 1] = [const { AtomicU32::new(0) }; NLINES + 1];

/// A function the IRQ handler calls for each acknowledged interrupt, before EOI. It runs with IRQs
/// masked, on the interrupted code's stack; it must not wait for the main flow (no UART lock).
pub type IrqHook = fn(IntId);

static HOOK: Mutex<Cell<Option<IrqHook>>> = Mutex::new(Cell::new(None));

/// Installs (or with `None` removes) the function called for every interrupt.
pub fn set_hook(hook: Option<IrqHook>) {
    critical_section::with(|cs| HOOK.borrow(cs).set(hook));
}

/// How many times each line was taken since boot; `other` counts INTIDs the demo did not enable.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, defmt::Format)]
pub struct IrqCounts {
    /// The SMMU's eventq line (INTID 106 on QEMU `virt`).
    pub eventq: u32,
    /// Its priq line.
    pub priq: u32,
    /// Its cmdq-sync line.
    pub cmdq_sync: u32,
    /// Its gerror line.
    pub gerror: u32,
    /// INTID 36.
    pub edu: u32,
    /// Anything else.
    pub other: u32,
}

/// Reads the per-line counters.
pub fn counts() -> IrqCounts {
    let c = |i: usize| COUNTS[i].load(Ordering::Acquire);
    IrqCounts {
        eventq: c(0),
        priq: c(1),
        cmdq_sync: c(2),
        gerror: c(3),
        edu: c(4),
        other: c(5),
    }
}

/// The counter of edu INTx interrupts, for code that waits on it outside Rust.
pub fn edu_count_ptr() -> *const u32 {
    COUNTS[4].as_ptr()
}

/// Sets up the GIC for one CPU at EL2, enables the SMMU's SPIs the device tree names (with its
/// trigger, priority 0x80) and edu's INTx (level), routes physical IRQs to EL2 and unmasks them.
pub fn init() -> GicV3<'static> {
    // HCR_EL2.{IMO, FMO, AMO}: physical IRQ, FIQ and SError are taken to EL2. Without IMO they go
    // to EL1 and are never taken while running at EL2.
    HCR_EL2.set(HCR_EL2.get() | (1 << 3) | (1 << 4) | (1 << 5));
    GicCpuInterface::enable_system_register_el2(false);

    // SAFETY: the GICD of QEMU `virt` lives at GICD_BASE, identity-mapped as device memory by
    // boot.rs; this is the only pointer to it.
    let gicd = unsafe { UniqueMmioPointer::new(NonNull::new(GICD_BASE as *mut Gicd).unwrap()) };
    let gicr = NonNull::new(GICR_BASE as *mut GicrSgi).unwrap();
    // SAFETY: the redistributors start at GICR_BASE (one frame per CPU, one CPU), mapped as device
    // memory, and nothing else drives them.
    let mut gic = unsafe { GicV3::new(gicd, gicr, 1) }.expect("GICv3 redistributor layout");
    gic.setup(0);
    GicCpuInterface::set_priority_mask(0xff);

    for &(intid, trigger) in lines().iter().flatten() {
        gic.set_trigger(intid, None, trigger).expect("SPI trigger");
        gic.set_interrupt_priority(intid, None, PRIORITY)
            .expect("SPI priority");
        gic.enable_interrupt(intid, None, true).expect("SPI enable");
    }
    DAIF.modify(DAIF::I::Unmasked);
    gic
}

/// Called by the IRQ trampoline (vectors.rs): acknowledges, counts, runs the hook, ends.
pub fn handle_irq() {
    use arm_gic::InterruptGroup::Group1;
    while let Some(intid) = GicCpuInterface::get_and_acknowledge_interrupt(Group1) {
        let slot = lines()
            .iter()
            .position(|l| l.is_some_and(|(l, _)| l == intid))
            .unwrap_or(NLINES);
        COUNTS[slot].fetch_add(1, Ordering::AcqRel);
        if let Some(hook) = critical_section::with(|cs| HOOK.borrow(cs).get()) {
            hook(intid);
        }
        GicCpuInterface::end_interrupt(intid, Group1);
    }
}
