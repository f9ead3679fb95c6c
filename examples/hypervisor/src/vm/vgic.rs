//! The guest's interrupts through the GICv3 virtual CPU interface (HCR_EL2.IMO = 1).
//!
//! Every physical interrupt comes to EL2. The ones the hypervisor owns (the SMMU's lines,
//! INTID 106-109, and the maintenance interrupt) are handled and deactivated here; every other
//! one is the guest's: its priority is dropped, and it goes into a list register with HW = 1 and
//! pINTID = vINTID, so the guest's own deactivation deactivates the physical interrupt (LPIs,
//! which have no active state, go in with HW = 0). When the list registers are full the
//! interrupt waits in a queue, ICH_HCR_EL2.UIE asks for a maintenance interrupt, and the queue
//! is refilled then (and at every exit). The redistributors and the ITS stay mapped in the
//! guest's stage 2 (the guest configures them itself); the distributor traps (vdev/gicd.rs) so
//! that the guest cannot reconfigure the SMMU's lines.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::cell::RefCell;
use core::sync::atomic::{AtomicU32, Ordering};

use critical_section::Mutex;
use heapless::Deque;

use super::sysreg::{mrs, msr};
use crate::board;

/// The GIC maintenance interrupt (PPI 9).
pub const MAINTENANCE_INTID: u32 = 25;
/// The SMMU's wired lines (eventq, priq, cmdq-sync, gerror): SPI 74-77.
pub const SMMU_INTIDS: core::ops::RangeInclusive<u32> = 106..=109;
/// First LPI.
const FIRST_LPI: u32 = 8192;
/// ICC_IAR1_EL1 values 1020-1023 are special (1023: nothing pending).
const SPURIOUS_FIRST: u32 = 1020;

/// ICH_LR<n>_EL2.State = pending, bits [63:62].
const LR_PENDING: u64 = 0b01 << 62;
/// ICH_LR<n>_EL2.HW, bit [61].
const LR_HW: u64 = 1 << 61;
/// ICH_LR<n>_EL2.Group, bit [60]: Group 1.
const LR_GROUP1: u64 = 1 << 60;
/// ICH_HCR_EL2.En, bit [0].
const ICH_HCR_EN: u64 = 1 << 0;
/// ICH_HCR_EL2.UIE, bit [1]: maintenance interrupt when at most one list register is in use.
const ICH_HCR_UIE: u64 = 1 << 1;
/// ICC_CTLR_EL1.EOImode, bit [1]: EOIR drops priority only; ICC_DIR_EL1 deactivates.
const ICC_CTLR_EOIMODE: u64 = 1 << 1;

/// One interrupt waiting for a list register.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct Pending {
    /// The virtual (and, with `hw`, physical) INTID.
    pub intid: u32,
    /// Priority the guest programmed for it.
    pub priority: u8,
    /// Linked to the physical interrupt of the same INTID.
    pub hw: bool,
}

/// Interrupts waiting for a list register.
const QUEUE: usize = 64;
static WAITING: Mutex<RefCell<Deque<Pending, QUEUE>>> = Mutex::new(RefCell::new(Deque::new()));

static INJECTED: AtomicU32 = AtomicU32::new(0);
static QUEUED: AtomicU32 = AtomicU32::new(0);
static DROPPED: AtomicU32 = AtomicU32::new(0);
static OWN: AtomicU32 = AtomicU32::new(0);

/// Sets up the CPU interface at EL2 for a guest: EOImode 1, empty list registers, the virtual
/// interface on, the maintenance interrupt enabled.
pub fn init() {
    msr!("s3_4_c12_c9_5", 0xf); // ICC_SRE_EL2: SRE, DFB, DIB, Enable (EL1 may use the sysregs)
    msr!("s3_0_c4_c6_0", 0xff); // ICC_PMR_EL1
    msr!("s3_0_c12_c12_3", 0); // ICC_BPR1_EL1
    let ctlr = mrs!("s3_0_c12_c12_4"); // ICC_CTLR_EL1
    msr!("s3_0_c12_c12_4", ctlr | ICC_CTLR_EOIMODE);
    msr!("s3_0_c12_c12_7", 1); // ICC_IGRPEN1_EL1
    for n in 0..list_registers() {
        write_lr(n, 0);
    }
    msr!("s3_4_c12_c8_0", 0); // ICH_AP0R0_EL2
    msr!("s3_4_c12_c9_0", 0); // ICH_AP1R0_EL2
    msr!("s3_4_c12_c11_0", ICH_HCR_EN); // ICH_HCR_EL2
    enable_maintenance();
    configure_own_lines();
}

/// How many list registers the GIC has (ICH_VTR_EL2.ListRegs + 1; 4 on QEMU).
fn list_registers() -> usize {
    (mrs!("s3_4_c12_c11_1") & 0x1f) as usize + 1
}

/// Enables PPI 9 in CPU 0's redistributor (GICR_ISENABLER0): the guest's GIC driver disables
/// the PPIs it does not use.
fn enable_maintenance() {
    let isenabler0 = (board::GICR_SGI_BASE + 0x100) as *mut u32;
    // SAFETY: GICR_ISENABLER0 of CPU 0's SGI frame, identity-mapped device memory at EL2; writing
    // a 1 only enables that one interrupt, which the hypervisor owns.
    unsafe { isenabler0.write_volatile(1 << MAINTENANCE_INTID) };
}

use board::GICD_BASE;
/// GICD_CTLR and its RWP (bit 31), ARE (bit 4, with DS = 1) and EnableGrp1 (bit 1).
const GICD_CTLR: usize = 0x000;
const GICD_CTLR_RWP: u32 = 1 << 31;
const GICD_CTLR_ARE: u32 = 1 << 4;
const GICD_CTLR_ENABLE_GRP1: u32 = 1 << 1;
/// GICD_IROUTER: 8 bytes per INTID.
const GICD_IROUTER: usize = 0x6000;
/// GICD_IGROUPR3, GICD_ISENABLER3, GICD_ICENABLER3: INTIDs 96-127.
const GICD_IGROUPR3: usize = 0x08c;
const GICD_ISENABLER3: usize = 0x10c;
const GICD_ICENABLER3: usize = 0x18c;
/// GICD_ICFGR6: INTIDs 96-111, two bits each (bit 1 of a pair: edge-triggered).
const GICD_ICFGR6: usize = 0xc18;
/// GICD_IPRIORITYR: one byte per INTID.
const GICD_IPRIORITYR: usize = 0x400;
/// Priority of the hypervisor's own lines.
const OWN_PRIORITY: u8 = 0x80;

fn gicd(offset: usize) -> *mut u32 {
    (GICD_BASE + offset) as *mut u32
}

/// Configures the SMMU's four lines at the distributor (Group 1, edge-triggered, priority 0x80,
/// routed to CPU 0, enabled) and turns the distributor on (affinity routing, Group 1). The
/// guest's distributor accesses are filtered (vdev/gicd.rs) so that this stays so.
pub fn configure_own_lines() {
    let enable_bits: u32 = 0xf << (SMMU_INTIDS.start() - 96);
    let edge_bits: u32 = SMMU_INTIDS
        .clone()
        .map(|i| 1u32 << (2 * (i - 96) + 1))
        .fold(0, |a, b| a | b);
    // SAFETY: registers of the GIC distributor, identity-mapped device memory at EL2, before the
    // guest runs; only the hypervisor's own INTIDs and the distributor's enables are changed.
    unsafe {
        gicd(GICD_CTLR).write_volatile(GICD_CTLR_ARE | GICD_CTLR_ENABLE_GRP1);
        for _ in 0..1000 {
            if gicd(GICD_CTLR).read_volatile() & GICD_CTLR_RWP == 0 {
                break;
            }
        }
        gicd(GICD_ICENABLER3).write_volatile(enable_bits);
        let cfg = gicd(GICD_ICFGR6).read_volatile();
        gicd(GICD_ICFGR6).write_volatile(cfg | edge_bits);
        let group = gicd(GICD_IGROUPR3).read_volatile();
        gicd(GICD_IGROUPR3).write_volatile(group | enable_bits);
        for intid in SMMU_INTIDS {
            ((GICD_BASE + GICD_IPRIORITYR + intid as usize) as *mut u8)
                .write_volatile(OWN_PRIORITY);
            ((GICD_BASE + GICD_IROUTER + 8 * intid as usize) as *mut u64).write_volatile(0);
        }
        gicd(GICD_ISENABLER3).write_volatile(enable_bits);
    }
}

/// Handles every pending physical interrupt (called on an IRQ exit).
pub fn irq_exit() {
    refill();
    loop {
        let iar = mrs!("s3_0_c12_c12_0"); // ICC_IAR1_EL1
        let intid = (iar & 0xff_ffff) as u32;
        if (SPURIOUS_FIRST..1024).contains(&intid) {
            break;
        }
        let priority = (mrs!("s3_0_c12_c11_3") & 0xff) as u8; // ICC_RPR_EL1
        msr!("s3_0_c12_c12_1", iar); // ICC_EOIR1_EL1: priority drop
        if intid == MAINTENANCE_INTID {
            OWN.fetch_add(1, Ordering::Relaxed);
            deactivate(intid);
            refill();
        } else if SMMU_INTIDS.contains(&intid) && !smmu_passed_through() {
            OWN.fetch_add(1, Ordering::Relaxed);
            crate::vdev::smmu::physical_irq(intid);
            deactivate(intid);
        } else {
            inject(Pending {
                intid,
                priority,
                hw: intid < FIRST_LPI,
            });
        }
    }
}

/// With the SMMU passed through its lines are the guest's like any other device's.
fn smmu_passed_through() -> bool {
    crate::vdev::smmu::mode() == crate::vdev::smmu::SmmuMode::Passthrough
}

fn deactivate(intid: u32) {
    msr!("s3_0_c12_c11_1", u64::from(intid)); // ICC_DIR_EL1
}

/// A guest write to ICC_SGI1R_EL1: SGIs aimed at this vCPU (affinity 0.0.0.0, target list bit
/// 0) are injected; "all but self" (IRM = 1) reaches no one with one vCPU.
pub fn guest_sgi(value: u64) {
    let intid = ((value >> 24) & 0xf) as u32;
    let irm = value & (1 << 40) != 0;
    let affinity = value & 0x00ff_00ff_00ff_0000;
    if !irm && affinity == 0 && value & 1 != 0 {
        inject(Pending {
            intid,
            priority: 0,
            hw: false,
        });
    }
}

/// Puts `p` into a free list register, or queues it.
pub fn inject(p: Pending) {
    if !try_write(p) {
        let queued = critical_section::with(|cs| WAITING.borrow_ref_mut(cs).push_back(p).is_ok());
        if queued {
            QUEUED.fetch_add(1, Ordering::Relaxed);
            msr!("s3_4_c12_c11_0", ICH_HCR_EN | ICH_HCR_UIE);
            enable_maintenance();
        } else {
            // Nothing can hold it: count it, and deactivate a physical one so it can fire again.
            DROPPED.fetch_add(1, Ordering::Relaxed);
            if p.hw {
                deactivate(p.intid);
            }
        }
    }
}

/// Moves queued interrupts into free list registers; clears UIE once the queue is empty.
pub fn refill() {
    let empty = critical_section::with(|cs| {
        let mut q = WAITING.borrow_ref_mut(cs);
        while let Some(p) = q.front().copied() {
            if !try_write(p) {
                return false;
            }
            q.pop_front();
        }
        true
    });
    msr!(
        "s3_4_c12_c11_0",
        if empty {
            ICH_HCR_EN
        } else {
            ICH_HCR_EN | ICH_HCR_UIE
        }
    );
}

fn try_write(p: Pending) -> bool {
    let elrsr = mrs!("s3_4_c12_c11_5"); // ICH_ELRSR_EL2: bit n set = list register n empty
    let n = list_registers();
    // The same virtual INTID must not sit in two list registers.
    for lr in 0..n {
        let v = read_lr(lr);
        if elrsr & (1 << lr) == 0 && (v & 0xffff_ffff) as u32 == p.intid {
            // A HW interrupt cannot fire again before the guest deactivates it; an SGI or LPI
            // becomes pending (again) in the register that holds it.
            if v & LR_HW == 0 {
                write_lr(lr, v | LR_PENDING);
            }
            return true;
        }
    }
    let Some(free) = (0..n).find(|lr| elrsr & (1 << lr) != 0) else {
        return false;
    };
    let mut lr = LR_PENDING | LR_GROUP1 | (u64::from(p.priority) << 48) | u64::from(p.intid);
    if p.hw {
        lr |= LR_HW | (u64::from(p.intid) << 32);
    }
    write_lr(free, lr);
    INJECTED.fetch_add(1, Ordering::Relaxed);
    true
}

/// Counts: injected into list registers, queued, dropped, handled by the hypervisor itself.
pub fn counts() -> (u32, u32, u32, u32) {
    (
        INJECTED.load(Ordering::Relaxed),
        QUEUED.load(Ordering::Relaxed),
        DROPPED.load(Ordering::Relaxed),
        OWN.load(Ordering::Relaxed),
    )
}

/// The list registers are named in the instruction: one arm each.
fn write_lr(n: usize, value: u64) {
    match n {
        0 => msr!("s3_4_c12_c12_0", value),
        1 => msr!("s3_4_c12_c12_1", value),
        2 => msr!("s3_4_c12_c12_2", value),
        3 => msr!("s3_4_c12_c12_3", value),
        4 => msr!("s3_4_c12_c12_4", value),
        5 => msr!("s3_4_c12_c12_5", value),
        6 => msr!("s3_4_c12_c12_6", value),
        7 => msr!("s3_4_c12_c12_7", value),
        8 => msr!("s3_4_c12_c13_0", value),
        9 => msr!("s3_4_c12_c13_1", value),
        10 => msr!("s3_4_c12_c13_2", value),
        11 => msr!("s3_4_c12_c13_3", value),
        12 => msr!("s3_4_c12_c13_4", value),
        13 => msr!("s3_4_c12_c13_5", value),
        14 => msr!("s3_4_c12_c13_6", value),
        15 => msr!("s3_4_c12_c13_7", value),
        _ => {}
    }
}

fn read_lr(n: usize) -> u64 {
    match n {
        0 => mrs!("s3_4_c12_c12_0"),
        1 => mrs!("s3_4_c12_c12_1"),
        2 => mrs!("s3_4_c12_c12_2"),
        3 => mrs!("s3_4_c12_c12_3"),
        4 => mrs!("s3_4_c12_c12_4"),
        5 => mrs!("s3_4_c12_c12_5"),
        6 => mrs!("s3_4_c12_c12_6"),
        7 => mrs!("s3_4_c12_c12_7"),
        8 => mrs!("s3_4_c12_c13_0"),
        9 => mrs!("s3_4_c12_c13_1"),
        10 => mrs!("s3_4_c12_c13_2"),
        11 => mrs!("s3_4_c12_c13_3"),
        12 => mrs!("s3_4_c12_c13_4"),
        13 => mrs!("s3_4_c12_c13_5"),
        14 => mrs!("s3_4_c12_c13_6"),
        15 => mrs!("s3_4_c12_c13_7"),
        _ => 0,
    }
}
