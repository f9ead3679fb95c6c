//! A bare-metal, `no_std` driver for the Arm SMMUv3 IOMMU (IHI 0070) and NVIDIA's Tegra241
//! CMDQV extension, for type-1 hypervisors, with an iommufd-compatible vIOMMU report interface.
//!
//! Layers, bottom up: [`regs`] (the only MMIO), pure data formats ([`queue`], [`command`],
//! [`event`], [`pri`], [`ste`], [`cd`], [`features`]), the physical driver [`smmu`], the
//! virtualisation layer [`viommu`] with its [`iommufd`] uAPI mirror, the guest-visible SMMUv3
//! [`vsmmu`] built on it, and `cmdqv` (feature `cmdqv`). The software models in `fake` (feature
//! `fakes`) let the same driver code run on the host.
//!
//! From taking over an SMMU to a drained event (QEMU `virt` addresses):
//!
//! ```no_run
//! use core::ptr::NonNull;
//! use arm_smmuv3::event::{EventRecord, EvtqEntry};
//! use arm_smmuv3::smmu::{Config, Smmu};
//! use arm_smmuv3::ste::Ste;
//! use arm_smmuv3::{BumpDma, PhysAddr, Platform, StreamId};
//!
//! struct Board;
//! impl Platform for Board {
//!     fn now_us(&self) -> u64 {
//!         0 // e.g. CNTPCT_EL0 scaled by CNTFRQ_EL0
//!     }
//! }
//!
//! # fn main() -> Result<(), arm_smmuv3::Error> {
//! let regs = 0x0905_0000usize;
//! let lent = 0x4800_0000usize; // 1 MiB of identity-mapped RAM for tables and queues
//! // SAFETY: the region is zeroed, identity-mapped, and used by nothing else.
//! let dma = unsafe { BumpDma::new(NonNull::new(lent as *mut u8).unwrap(), PhysAddr(lent as u64), 1 << 20) };
//! let page0 = NonNull::new(regs as *mut _).unwrap();
//! let page1 = NonNull::new((regs + 0x1_0000) as *mut _).unwrap();
//! // SAFETY: both pages are mapped Device-nGnRE and only this driver touches them.
//! let smmu = unsafe { Smmu::new(page0, page1, Board, dma, Config::default())? };
//! smmu.reset()?; // every StreamID aborts until bound
//! smmu.set_ste(StreamId(0x8), &Ste::bypass(false))?;
//!
//! // In the event-queue interrupt handler: at most 3 MMIO accesses, whatever the backlog.
//! let stats = smmu.drain_evtq(&mut |e: &EvtqEntry| {
//!     let rec = EventRecord::decode(e);
//!     let _owner = rec.sid; // route to the VM that owns this StreamID
//! });
//! assert!(stats.mmio <= 3);
//! # Ok(())
//! # }
//! ```

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
pub mod vsmmu;

#[cfg(feature = "cmdqv")]
pub mod cmdqv;

#[cfg(feature = "discovery")]
pub mod discovery;

#[cfg(any(test, feature = "fakes"))]
pub mod fake;

pub use error::{CmdqError, Error, Feature, WaitFor};
pub use ids::{Asid, Iova, Ipa, PhysAddr, StreamId, SubstreamId, VStreamId, Vmid};
pub use platform::{BumpDma, DmaBuf, DmaMemory, MmioAccess, Platform};
