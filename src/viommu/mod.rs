//! Virtualisation: one vIOMMU per VM, vDEVICEs, vEVENTQ rings fed from the IRQ path, I/O page
//! faults, guest invalidations and HW info, with Linux iommufd's semantics
//! (`include/uapi/linux/iommufd.h`, `Documentation/userspace-api/iommufd.rst`; the uAPI structures are in [`crate::iommufd`]).
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
//! | IOMMU_HWPT_INVALIDATE on the vIOMMU | [`Router::hwpt_invalidate`] (the struct and the entry array as bytes), [`Router::invalidate_bytes`], [`Router::invalidate`] |
//! | IOMMU_GET_HW_INFO | [`Router::hw_info`], [`hw_info::get_hw_info`] |
//! | IOMMU_DESTROY / closing the fd | `destroy_*`, [`Router::teardown_viommu`] |
//! | TEGRA241_CMDQV vIOMMU, HW queues, CMDQV vEVENTs (feature `cmdqv`) | `Router::alloc_viommu_cmdqv` and the other `*_cmdqv` methods, `Router::hw_queue_alloc`, `Router::cmdqv_sink` |
//!
//! The driver's IRQ drains hand every event record and page request to the router
//! ([`Router::sink`] is an [`EventSink`] and a [`PriSink`]); it forwards a vDEVICE's stage-1
//! events to its vIOMMU's vEVENTQ with the StreamID replaced by the vSID, turns stalls and page
//! requests into page-fault groups, and passes the rest to the host's own sink.
//!
//! # What a hardware event-queue overflow does to the vEVENTQs
//! When the SMMU's event queue overflows (PROD.OVFLG toggled, or QEMU's GERROR.EVENTQ_ABT_ERR),
//! records are lost and nobody knows whose. Linux only logs it, so a VMM never learns that its
//! guest lost a fault. Here [`Router::route_overflow`] (called by the driver's drain through
//! [`Router::sink`], after the records it did copy) charges the loss to everyone who may have
//! lost a record:
//! - every live vIOMMU's SMMUv3 vEVENTQ gets a LOST_EVENTS marker, through
//!   [`veventq::VeventQueue::report_lost`]: the path Linux takes when it cannot allocate a
//!   record (`Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event` "Producer side": the event "is dropped ... the LOST_EVENTS header ...
//!   is moved to the tail of the queue and gets the sequence number of the dropped event"). So
//!   one sequence number is consumed per overflow, the queued records stay, a reader sees an
//!   8-byte LOST_EVENTS header at the tail with that number, and the next real event replaces
//!   the marker (the loss then stays visible as a sequence gap) — all of which an unmodified
//!   VMM already handles;
//! - the router's and every live vIOMMU's `evtq_overflows` and `lost_marked` counters
//!   ([`RouterStats`], [`ViommuStats`]);
//! - the host's sink ([`EventSink::overflow`]).
//!
//! A vIOMMU without an SMMUv3 vEVENTQ gets nothing (its events would have been dropped anyway,
//! "Events raised while no queue of that type exists are silently dropped"), and the
//! TEGRA241_CMDQV vEVENTQs are not touched (CMDQV errors do not go through the event queue).
//! A PRI-queue overflow marks nothing: lost page requests are not vEVENTs (the device times
//! out its request).
//!
//! # One producer per ring
//! The rings are single-producer. The event drain, the PRI drain (possibly on another CPU) and
//! the overflow marks share one producer token in the router (bounded wait; an overflow never
//! waits and is carried out by whoever holds the token); the CMDQV error interrupt has its own.

mod gate;
pub mod hw_info;
pub mod invalidate;
pub mod iopf;
mod producer;
mod router;
pub mod routing;
pub mod sink;
pub(crate) mod sync;
pub mod veventq;
pub mod vste;

pub use invalidate::{
    EntryArray, GuestCmdPolicy, InvalidateOutcome, check_entries, copy_struct_from_user,
    read_sized, sanitise_guest_command,
};
pub use router::{
    FORWARDED_EVENTS, HostReason, PRODUCER_SPINS, Routed, Router, RouterStats, SINK_CHUNK,
    TEARDOWN_SPINS, VDevice, Viommu, ViommuConfig, ViommuId, ViommuStats,
};
pub use sink::{CommandSink, EventSink, PriSink};
pub use vste::{GuestConfig, NestedSte};
