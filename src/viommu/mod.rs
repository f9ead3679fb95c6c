//! Virtualisation: one vIOMMU per VM, vDEVICEs, vEVENTQ rings fed from the IRQ path, I/O page
//! faults, guest invalidations and HW info, with Linux iommufd's semantics
//! (`iommufd.md`; the uAPI structures are in [`crate::iommufd`]).
//!
//! A hypervisor uses a [`Router`] the way a Linux VMM uses `/dev/iommu`:
//!
//! | iommufd | here |
//! |---|---|
//! | IOMMU_VIOMMU_ALLOC on a nest-parent S2 | [`Router::alloc_viommu`] with the VM's [`S2Config`](crate::ste::S2Config) |
//! | IOMMU_VDEVICE_ALLOC | [`Router::alloc_vdevice`] |
//! | IOMMU_HWPT_ALLOC (`iommu_hwpt_arm_smmuv3`) + attach | [`Router::attach_nested`] |
//! | IOMMU_VEVENTQ_ALLOC, `read()` on its fd | [`Router::alloc_veventq`], [`Router::read_vevents`] |
//! | IOMMU_FAULT_QUEUE_ALLOC, `read()`/`write()` | [`Router::alloc_fault_queue`], [`Router::read_faults`], [`Router::respond`] |
//! | IOMMU_HWPT_INVALIDATE on the vIOMMU | [`Router::invalidate`] |
//! | IOMMU_GET_HW_INFO | [`Router::hw_info`], [`hw_info::get_hw_info`] |
//! | IOMMU_DESTROY / closing the fd | `destroy_*`, [`Router::teardown_viommu`] |
//!
//! The driver's IRQ drains hand every event record and page request to the router
//! ([`Router::sink`] is an [`EventSink`] and a [`PriSink`]); it forwards a vDEVICE's stage-1
//! events to its vIOMMU's vEVENTQ with the StreamID replaced by the vSID, turns stalls and page
//! requests into page-fault groups, and passes the rest to the host's own sink.
//!
//! # Hardware event-queue overflow
//! When the SMMU's event queue overflows, records are lost and nobody knows whose. Linux logs it
//! and leaves the vEVENTQs alone; here the overflow is counted in [`RouterStats`] and in every
//! live vIOMMU's [`ViommuStats::evtq_overflows`] (any of them may have lost a record) and passed
//! to the host's sink. Marking every vEVENTQ with a LOST_EVENTS header, which would let an
//! unmodified VMM see the loss, needs the vEVENTQ to consume a sequence number without a record
//! (Linux's allocation-failure path), which [`veventq::VeventQueue`] does not offer yet.

mod gate;
pub mod hw_info;
pub mod invalidate;
pub mod iopf;
#[cfg(not(loom))]
mod router;
pub mod routing;
pub mod sink;
mod sync;
pub mod veventq;
pub mod vste;

pub use invalidate::{GuestCmdPolicy, InvalidateOutcome, sanitise_guest_command};
#[cfg(not(loom))]
pub use router::{
    FORWARDED_EVENTS, HostReason, Routed, Router, RouterSink, RouterStats, TEARDOWN_SPINS, VDevice,
    Viommu, ViommuConfig, ViommuId, ViommuStats,
};
pub use sink::{CommandSink, EventSink, PriSink};
pub use vste::{GuestConfig, NestedSte};
