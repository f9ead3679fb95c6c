//! A bare-metal, `no_std` driver for the Arm SMMUv3 IOMMU (IHI 0070) and NVIDIA's Tegra241
//! CMDQV extension, for type-1 hypervisors, with an iommufd-compatible vIOMMU report interface.
//!
//! Layers, bottom up: [`regs`] (the only MMIO), pure data formats ([`queue`], [`command`],
//! [`event`], [`pri`], [`ste`], [`cd`], [`features`]), the physical driver [`smmu`], the
//! virtualisation layer [`viommu`] with its [`iommufd`] uAPI mirror, and `cmdqv` (feature
//! `cmdqv`). The software models in `fake` (feature `fakes`) let the same driver code run on the
//! host.

#![cfg_attr(not(any(test, feature = "fakes")), no_std)]
#![deny(
    unsafe_op_in_unsafe_fn,
    clippy::undocumented_unsafe_blocks,
    missing_docs
)]

#[macro_use]
mod log;

pub mod cd;
pub mod command;
pub mod error;
pub mod event;
pub mod features;
pub mod ids;
pub mod iommufd;
pub mod platform;
pub mod pri;
pub mod queue;
pub mod regs;
pub mod smmu;
pub mod ste;
pub mod viommu;

#[cfg(feature = "cmdqv")]
pub mod cmdqv;

#[cfg(any(test, feature = "fakes"))]
pub mod fake;

pub use error::{CmdqError, Error, Feature, WaitFor};
pub use ids::{Asid, Iova, Ipa, PhysAddr, StreamId, SubstreamId, VStreamId, Vmid};
pub use platform::{BumpDma, DmaBuf, DmaMemory, MmioAccess, Platform};
