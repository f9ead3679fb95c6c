//! Counters of what the guest made the hypervisor do, printed when it powers off.

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, Readable};

/// Kinds of exits and events counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Exit {
    /// A physical interrupt while the guest ran.
    Irq,
    /// A data abort on the SMMU window.
    Mmio,
    /// A data abort on the GIC distributor or CPU 0's redistributor control frame.
    Gicd,
    /// A data abort without a valid syndrome.
    DabtNoSyndrome,
    /// An SMC (PSCI).
    Smc,
    /// An HVC.
    Hvc,
    /// A trapped ICC_SGI1R_EL1 write.
    Sgi,
    /// Another trapped system register.
    SysregOther,
    /// An exception class the hypervisor does not handle.
    Unknown,
}

const KINDS: usize = 9;
static COUNTS: [AtomicU32; KINDS] = [const { AtomicU32::new(0) }; KINDS];
static GUEST_START: AtomicU64 = AtomicU64::new(0);

/// Counts one `exit`.
pub fn count(exit: Exit) {
    if let Some(c) = COUNTS.get(exit as usize) {
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// How many `exit`s so far.
pub fn get(exit: Exit) -> u32 {
    COUNTS
        .get(exit as usize)
        .map_or(0, |c| c.load(Ordering::Relaxed))
}

/// Notes the counter value at the guest's first entry.
pub fn mark_guest_start() {
    GUEST_START.store(counter(), Ordering::Relaxed);
}

/// Microseconds since the guest's first entry.
pub fn guest_uptime_us() -> u64 {
    let freq = CNTFRQ_EL0.get().max(1);
    let ticks = counter().wrapping_sub(GUEST_START.load(Ordering::Relaxed));
    (u128::from(ticks) * 1_000_000 / u128::from(freq)) as u64
}

fn counter() -> u64 {
    CNTPCT_EL0.get()
}

/// Prints every counter (defmt), one line.
pub fn print() {
    defmt::info!(
        "VM exits: irq {=u32} mmio {=u32} gic {=u32} smc {=u32} hvc {=u32} sgi {=u32} sysreg {=u32} no-syndrome {=u32}",
        get(Exit::Irq),
        get(Exit::Mmio),
        get(Exit::Gicd),
        get(Exit::Smc),
        get(Exit::Hvc),
        get(Exit::Sgi),
        get(Exit::SysregOther),
        get(Exit::DabtNoSyndrome)
    );
}
