//! A bare-metal, `no_std` driver for the Arm SMMUv3 IOMMU (IHI 0070) and NVIDIA's Tegra241
//! CMDQV extension, for type-1 hypervisors, with an iommufd-compatible vIOMMU report interface.
//!
//! # What a hypervisor provides and gets
//! The hypervisor implements [`Platform`] (time, and optionally how to wait and flush caches) and
//! lends memory through [`DmaMemory`] ([`BumpDma`] is a ready one). It gets an [`Smmu`] (the
//! physical driver: [`Config`], stream table, command queue, IRQ drains) and, per VM, a vIOMMU
//! in a [`Router`] that speaks iommufd's language (`include/uapi/linux/iommufd.h`,
//! `Documentation/userspace-api/iommufd.rst`). The drains hand records to an [`EventSink`] and a
//! [`PriSink`] (a closure will do; [`Router::sink`] is both); invalidations go to a
//! [`CommandSink`] (the [`Smmu`] itself, or a Tegra241 queue). Errors are one [`Error`] type,
//! each with the Linux errno an iommufd ioctl would return ([`Error::errno`]).
//!
//! The design notes are in `docs/design.md` beside this crate's sources; what each error
//! carries, in `docs/errors.md`.
//!
//! Layers, bottom up: [`regs`] (the only MMIO), pure data formats ([`queue`], [`command`],
//! [`event`], [`pri`], [`ste`], [`cd`], [`features`]), the physical driver [`smmu`], the vEVENT
//! ring [`vevent`], the virtualisation layer [`viommu`] with its [`iommufd`] uAPI mirror, the guest-visible SMMUv3
//! [`vsmmu`] built on it, and `cmdqv` (feature `cmdqv`). The software models in `fake` (feature
//! `fakes`) let the same driver code run on the host.
//!
//! # From `Smmu::new` to an event routed to a guest
//! With QEMU `virt`'s addresses (`-machine virt,iommu=smmuv3`): take over the SMMU, let a host
//! device through, give a VM a vIOMMU with one device, and hand that device's faults to the
//! VMM as iommufd vEVENTs. (The same steps run on the software model of an SMMUv3 in the example
//! on [`Router`], feature `fakes`.)
//!
//! ```no_run
//! use core::ptr::NonNull;
//! use arm_smmuv3::event::EvtqEntry;
//! use arm_smmuv3::iommufd::VeventqType;
//! use arm_smmuv3::ste::{Granule, S2Config, Ste};
//! use arm_smmuv3::viommu::ViommuConfig;
//! use arm_smmuv3::pri::PriqEntry;
//! use arm_smmuv3::{BumpDma, Config, EventSink, PhysAddr, Platform, PriSink, Router, Smmu};
//! use arm_smmuv3::{StreamId, Vmid};
//!
//! struct Board;
//! impl Platform for Board {
//!     fn now_us(&self) -> u64 {
//!         0 // e.g. CNTPCT_EL0 scaled by CNTFRQ_EL0
//!     }
//! }
//!
//! /// What no guest owns: the host's own faults and page requests.
//! struct HostFaults;
//! impl EventSink for HostFaults {
//!     fn event(&mut self, _e: &EvtqEntry) { /* log or handle the host's fault */ }
//! }
//! impl PriSink for HostFaults {
//!     fn request(&mut self, _r: &PriqEntry) { /* answer the host device's page request */ }
//! }
//!
//! /// Up to 4 vIOMMUs, 64 routed StreamIDs, 8 vDEVICEs and 64 vEVENTs per vIOMMU, 16 faults.
//! static ROUTER: Router<4, 64, 8, 64, 16> = Router::new();
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
//! smmu.set_ste(StreamId(0x8), &Ste::bypass(false))?; // a host device
//!
//! // A VM: its stage 2 (VMID 1, 40-bit IPA, 4 KiB granule, walk from level 1) and a vIOMMU.
//! let s2 = S2Config::new(Vmid(1), PhysAddr(0x4100_0000), 40, Granule::Size4K, 1)?;
//! let viommu = ROUTER.alloc_viommu(ViommuConfig {
//!     s2,
//!     features: *smmu.features(),
//!     coherent_devices: true,
//!     repeat_tlbi_cfgi: false,
//! })?;
//! // The VM's device: physical StreamID 0x10, seen by the guest as StreamID 0x2.
//! let vsid = ROUTER.alloc_vdevice(viommu, 1, StreamId(0x10), 0x2, false)?;
//! ROUTER.alloc_veventq(viommu, VeventqType::ArmSmmuv3, 64)?;
//! // When the guest writes its STE for StreamID 0x2 (dwords 0-1 of its vSTE):
//! let guest_ste = [0u64; 2];
//! ROUTER.attach_nested(viommu, vsid, guest_ste, &smmu, |sid, ste| smmu.set_ste(sid, ste))?;
//!
//! // In the event-queue interrupt handler: the VM's stage-1 faults go to its vEVENTQ with the
//! // StreamID replaced by 0x2; everything else reaches the host's own sink.
//! let mut host = HostFaults;
//! let stats = smmu.drain_evtq(&mut ROUTER.sink(&mut host));
//! assert!(stats.mmio <= 3); // at most 3 MMIO accesses, whatever the backlog
//!
//! // The VMM reads the vEVENTQ as it would read() its iommufd fd.
//! let mut buf = [0u8; 4096];
//! let _bytes = ROUTER.read_vevents(viommu, VeventqType::ArmSmmuv3, &mut buf)?;
//! # Ok(())
//! # }
//! ```
//!
//! # A guest-visible SMMUv3
//! A VM can also be given an SMMUv3 of its own to program: a [`VSmmu`] (module [`vsmmu`]). The
//! hypervisor hands each trapped access to the virtual register window to [`VSmmu::read`] /
//! [`VSmmu::write`], and calls [`VSmmu::deliver_events`] for each guest right after the physical
//! event drain above. The guest's memory and interrupt lines are reached through
//! [`vsmmu::GuestMemory`] and [`vsmmu::GuestIrq`]; everything physical goes through one
//! [`vsmmu::Backend`] ([`vsmmu::RouterBackend`] for a [`Router`] vIOMMU).

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
pub mod vevent;
pub mod viommu;
pub mod vsmmu;

#[cfg(feature = "cmdqv")]
pub mod cmdqv;

#[cfg(feature = "discovery")]
pub mod discovery;

#[cfg(any(test, feature = "fakes"))]
pub mod fake;

pub use error::{CmdqError, Error, Feature, Object, Quantity, Rejection, WaitFor};
pub use ids::{Asid, Iova, Ipa, PhysAddr, StreamId, SubstreamId, VStreamId, Vmid};
pub use platform::{BumpDma, DmaBuf, DmaMemory, MmioAccess, Platform};
pub use smmu::{CommandSink, Config, EventSink, PriSink, Smmu};
pub use viommu::Router;
pub use vsmmu::VSmmu;
