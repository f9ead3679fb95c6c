//! vEVENTQ: the per-vIOMMU, per-type event queue a VMM reads like an iommufd vEVENTQ fd
//! (IOMMU_VEVENTQ_ALLOC, `struct iommu_veventq_alloc` in `include/uapi/linux/iommufd.h`;
//! `Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ).
//!
//! A vIOMMU has at most one queue per [`VeventqType`](crate::iommufd::VeventqType):
//! [`Router::alloc_veventq`](super::Router::alloc_veventq) opens it with a `veventq_depth`,
//! [`Router::read_vevents`](super::Router::read_vevents) reads it, and the IRQ path appends the
//! vIOMMU's forwarded records. The ring itself ([`VeventQueue`]) lives in [`crate::vevent`],
//! below both this layer and the Tegra241 CMDQV error path; it is re-exported here under the
//! name iommufd users look for.

pub use crate::vevent::{
    HEADER_BYTES, MAX_PAYLOAD_WORDS, Reported, VeventPayload, VeventQueue, VeventqStats,
};
