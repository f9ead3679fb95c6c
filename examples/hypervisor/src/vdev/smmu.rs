//! The guest's SMMU: its accesses to the SMMU's register window (0x0905_0000, 128 KiB, left out
//! of stage 2) arrive here, one call per trapped access.
//!
//! This is where `arm_smmuv3::vsmmu::VSmmu` plugs in: [`access`] becomes `VSmmu::read(offset,
//! size)` / `VSmmu::write(offset, size, value)`, and [`physical_irq`] drains the physical SMMU and
//! injects the vSMMU's lines ([`VIRTUAL_INTIDS`]) through [`crate::vm::vgic::inject`]. Until then
//! the window reads as zero and ignores writes: with [`SmmuMode::Hidden`] the guest's device tree
//! has no SMMU, so Linux never touches it.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use arm_smmuv3::event::EventRecord;

use crate::board;
use crate::smmu::Logged;

/// What the guest sees at the SMMU's address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum SmmuMode {
    /// No SMMU in the guest's device tree (no node, no `iommu-map`).
    Hidden,
    /// The SMMU node kept at the same address (the virtual SMMU), `iommu-map` giving vSIDs.
    Virtual,
    /// A measuring mode, not a VM's configuration: the hypervisor leaves the physical SMMU alone
    /// and forwards every trapped access to it, so the guest's own driver runs on QEMU's SMMU
    /// through the trap path (the accesses the vSMMU will see, and their decode); its lines are
    /// injected like any device's. The guest could DMA anywhere: no isolation.
    Passthrough,
}

/// The guest's StreamID of PCI RID `r` is `VSID_BASE + r` (the physical one is `r`).
pub const VSID_BASE: u32 = 0x100;
/// How many RIDs the `iommu-map` covers (bus 0).
pub const VSID_COUNT: u32 = 0x100;
/// The virtual SMMU's wired interrupts as the guest's device tree names them (eventq, priq,
/// cmdq-sync, gerror): the physical SMMU's INTIDs, SPI 74-77, so that the guest's GIC settings
/// for them are the ones the hypervisor needs too.
pub const VIRTUAL_INTIDS: [u32; 4] = [106, 107, 108, 109];
const _: () = assert!(
    VIRTUAL_INTIDS[0] == *crate::vm::vgic::SMMU_INTIDS.start()
        && VIRTUAL_INTIDS[3] == *crate::vm::vgic::SMMU_INTIDS.end()
);

static MODE: AtomicU8 = AtomicU8::new(0);
static READS: AtomicU32 = AtomicU32::new(0);
static WRITES: AtomicU32 = AtomicU32::new(0);
static PHYSICAL_IRQS: AtomicU32 = AtomicU32::new(0);

/// Sets the mode before the guest starts.
pub fn init(mode: SmmuMode) {
    MODE.store(mode as u8, Ordering::Relaxed);
    super::gicd::protect(mode != SmmuMode::Passthrough);
}

/// The mode [`init`] set.
pub fn mode() -> SmmuMode {
    match MODE.load(Ordering::Relaxed) {
        m if m == SmmuMode::Virtual as u8 => SmmuMode::Virtual,
        m if m == SmmuMode::Passthrough as u8 => SmmuMode::Passthrough,
        _ => SmmuMode::Hidden,
    }
}

/// Forwards one access to the physical SMMU ([`SmmuMode::Passthrough`]); sizes other than 4 and
/// 8 bytes (which an SMMU does not support) read as zero and are dropped.
fn forward(offset: u64, size: u8, write: Option<u64>) -> u64 {
    let addr = (board::SMMU_BASE + offset) as usize;
    // SAFETY: the SMMU's register window (offset < SMMU_SIZE, checked by `vdev::mmio`),
    // identity-mapped device memory at EL2; in this mode nothing in the hypervisor drives the
    // SMMU, so the guest's accesses reach it exactly as it made them.
    unsafe {
        match (size, write) {
            (4, None) => u64::from((addr as *const u32).read_volatile()),
            (8, None) => (addr as *const u64).read_volatile(),
            (4, Some(v)) => {
                (addr as *mut u32).write_volatile(v as u32);
                0
            }
            (8, Some(v)) => {
                (addr as *mut u64).write_volatile(v);
                0
            }
            _ => 0,
        }
    }
}

/// One guest access to the window at `offset` (0..0x2_0000; page 1 from 0x1_0000) of `size`
/// bytes; `write` holds the value written. Returns what a read gets.
pub fn access(offset: u64, size: u8, write: Option<u64>) -> u64 {
    if mode() == SmmuMode::Passthrough {
        match write {
            Some(_) => WRITES.fetch_add(1, Ordering::Relaxed),
            None => READS.fetch_add(1, Ordering::Relaxed),
        };
        return forward(offset, size, write);
    }
    match write {
        Some(value) => {
            let n = WRITES.fetch_add(1, Ordering::Relaxed);
            if n < 64 {
                defmt::info!(
                    "vSMMU: write {=u64:#x} <- {=u64:#x} ({=u8} bytes), no vSMMU: ignored",
                    offset,
                    value,
                    size
                );
            }
            0
        }
        None => {
            let n = READS.fetch_add(1, Ordering::Relaxed);
            if n < 64 {
                defmt::info!(
                    "vSMMU: read {=u64:#x} ({=u8} bytes), no vSMMU: 0",
                    offset,
                    size
                );
            }
            0
        }
    }
}

/// A physical SMMU interrupt (INTID 106-109) taken while the guest ran; the caller deactivates it.
/// The driver drains the event queue (or handles GERROR) in the IRQ path; what it drained is
/// reported here. Today no record reaches the guest (there is no vSMMU to forward it to).
pub fn physical_irq(intid: u32) {
    PHYSICAL_IRQS.fetch_add(1, Ordering::Relaxed);
    crate::smmu::handle_guest_time_irq(intid);
    for logged in crate::smmu::take_log() {
        match logged {
            Logged::Record { drain, entry } => {
                let r = EventRecord::decode(&entry);
                RECORDS.fetch_add(1, Ordering::Relaxed);
                defmt::info!(
                    "physical SMMU: EVENT {=str} id={=u8:#x} sid={=u32:#x} addr={=u64:#x} ipa={=u64:#x} S2={=bool} {=str} (drain #{=u32})",
                    crate::smmu::event_name(&r),
                    r.id.0,
                    r.sid.0,
                    r.input_addr,
                    r.ipa,
                    r.s2,
                    if r.rnw { "read" } else { "write" },
                    drain
                );
            }
            Logged::Overflow { drain } => {
                defmt::warn!(
                    "physical SMMU: event queue overflowed (drain #{=u32})",
                    drain
                );
            }
            Logged::Drain {
                drain,
                stats,
                hook_mmio,
                ..
            } => defmt::info!(
                "physical SMMU: DRAIN #{=u32} records={=u32} mmio={=u32} hook_mmio={=u32}",
                drain,
                stats.records,
                stats.mmio,
                hook_mmio
            ),
            _ => {}
        }
    }
}

static RECORDS: AtomicU32 = AtomicU32::new(0);

/// Prints the window's counters (defmt).
pub fn print_stats() {
    defmt::info!(
        "vSMMU window: reads {=u32} writes {=u32}; physical SMMU: irqs {=u32} records {=u32}; refused guest accesses {=u32}",
        READS.load(Ordering::Relaxed),
        WRITES.load(Ordering::Relaxed),
        PHYSICAL_IRQS.load(Ordering::Relaxed),
        RECORDS.load(Ordering::Relaxed),
        super::refused()
    );
    let (injected, queued, dropped, own) = crate::vm::vgic::counts();
    defmt::info!(
        "vGIC: injected {=u32} queued {=u32} dropped {=u32} own {=u32} (handled at EL2)",
        injected,
        queued,
        dropped,
        own
    );
    let (accesses, kept) = super::gicd::counts();
    defmt::info!(
        "GICD: {=u32} guest accesses trapped, {=u32} of them kept off the hypervisor's INTIDs",
        accesses,
        kept
    );
    let (accesses, refused) = super::gicr::counts();
    defmt::info!(
        "GICR: {=u32} guest accesses trapped, {=u32} refused (LPI enable, table bases)",
        accesses,
        refused
    );
}
