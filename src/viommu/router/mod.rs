//! [`Router`]: the set of vIOMMUs of one physical SMMU, their vDEVICEs, and the IRQ-path routing
//! of event records and page requests into them. One concern per file:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the types, the vIOMMU slot, the lookup of a handle under its lock |
//! | `viommu.rs` | vIOMMU allocation, destruction, teardown, HW info |
//! | `vdevice.rs` | vDEVICEs and nested attach/detach |
//! | `veventq.rs` | vEVENTQ allocation and reading |
//! | `fault.rs` | fault queues: reading, responding, answering pending groups |
//! | `invalidate.rs` | guest invalidations |
//! | `irq.rs` | the IRQ path: routing records and page requests, overflows, the drains' sink |
//! | `cmdqv.rs` | the TEGRA241_CMDQV vIOMMU type (feature `cmdqv`) |
//!
//! # Lifecycle and concurrency
//! Control-path calls (allocation, attach, invalidation, fault reads) may run on any CPU and are
//! serialised per vIOMMU by a spin lock the IRQ path never takes; a handle ([`ViommuId`]: slot
//! and 48-bit generation) is checked against the slot's occupant **under** that lock, so a call
//! that waited while the vIOMMU was torn down and its slot reused fails with ENOENT instead of
//! acting on the next VM.
//!
//! The IRQ path ([`Router::route_event`], [`Router::route_page_request`], the drains'
//! [`Router::sink`]) holds the router's producer token while it reads the [`RoutingTable`]
//! (lock-free) and appends to a vIOMMU's rings (a plain load of the ring's gate). The control
//! path never frees anything the IRQ path may be using: it first changes the route (the device
//! is no longer attached), then waits one round of the producer token (a grace period: every
//! producer that looked up the old route has finished), and only then purges the device's
//! faults or takes the rings away. Every step of a teardown can be retried, and the vIOMMU's
//! devices stay reserved until the last step, so a failed teardown never lets another vIOMMU
//! take one of them.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod fault;
mod invalidate;
mod irq;
mod vdevice;
mod veventq;
mod viommu;

#[cfg(feature = "cmdqv")]
mod cmdqv;
#[cfg(all(test, loom))]
mod loom_tests;

use super::gate::{Gate, Held};
use super::invalidate::GuestCmdPolicy;
use super::iopf::{FaultGroups, FaultRing};
use super::producer::Producer;
use super::routing::{MAX_VIOMMUS, RoutingTable};
use super::sync::{AtomicU64, Mutex, Ordering, array_of, ctor};
use super::vste::NestedSte;
use crate::error::{Error, Object};
use crate::event::EventId;
use crate::features::Features;
use crate::ids::{StreamId, VStreamId};
use crate::iommufd::VeventArmSmmuv3;
#[cfg(feature = "cmdqv")]
use crate::iommufd::VeventTegra241Cmdqv;
use crate::ste::S2Config;
use crate::vevent::VeventQueue;

/// How many rounds teardown waits for an IRQ-path producer or a vEVENTQ reader inside a
/// vIOMMU's ring before it reports [`Error::InUse`] (the caller retries; no new producer or
/// reader can get in meanwhile).
pub const TEARDOWN_SPINS: u32 = 1 << 16;

/// How many rounds an IRQ-path producer waits for another one (the other drain, an overflow
/// being marked, or the control path's grace round) to leave the router's rings before it gives
/// the record to the host ([`HostReason::Contended`]). The holder does a bounded amount of work.
pub const PRODUCER_SPINS: u32 = 1 << 12;

/// How many records a drain's [`Router::sink`] routes per take of the producer token before it
/// lets another producer in.
pub const SINK_CHUNK: u32 = 64;

/// At most this many LOST_EVENTS sequence numbers are consumed per vEVENTQ in one go (overflows
/// reported while the rings were busy are carried out together).
const MAX_LOST_PER_MARK: u32 = 64;

/// Event IDs forwarded to a guest: the ones Linux's `arm_smmu_handle_event` hands to a vEVENTQ
/// (`iommufd_viommu_report_event` for a device with a vmaster): C_BAD_STE, F_STREAM_DISABLED,
/// C_BAD_SUBSTREAMID, C_BAD_CD, F_TRANSLATION, F_ADDR_SIZE, F_ACCESS, F_PERMISSION.
pub const FORWARDED_EVENTS: [EventId; 8] = [
    EventId::C_BAD_STE,
    EventId::F_STREAM_DISABLED,
    EventId::C_BAD_SUBSTREAMID,
    EventId::C_BAD_CD,
    EventId::F_TRANSLATION,
    EventId::F_ADDR_SIZE,
    EventId::F_ACCESS,
    EventId::F_PERMISSION,
];

/// Generations are 48 bits: a slot reused once a microsecond wraps after nine years.
const GENERATION_MASK: u64 = (1 << 48) - 1;

/// A vIOMMU handle: slot index (bits `[15:0]`) and generation (bits `[63:16]`), so a handle of
/// a destroyed vIOMMU never reaches its slot's next occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ViommuId(pub u64);

impl ViommuId {
    const fn new(index: u16, generation: u64) -> Self {
        Self(index as u64 | ((generation & GENERATION_MASK) << 16))
    }

    /// The slot index.
    pub const fn index(self) -> u16 {
        self.0 as u16
    }

    /// The generation (48 bits).
    pub const fn generation(self) -> u64 {
        self.0 >> 16
    }
}

/// What the hypervisor tells the library when it creates a vIOMMU (IOMMU_VIOMMU_ALLOC on a
/// nesting-parent stage 2, `struct iommu_viommu_alloc` in `include/uapi/linux/iommufd.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ViommuConfig {
    /// The VM's stage 2 (from the hypervisor's stage-2 root); its VMID is the vIOMMU's. Two
    /// vIOMMUs may share a VMID only with the same stage 2.
    pub s2: S2Config,
    /// The physical SMMU's features.
    pub features: Features,
    /// The VM's devices are fully coherent (Linux's CANWBS); without it the SMMU needs S2FWB.
    pub coherent_devices: bool,
    /// The board needs TLBI/CFGI repeated (reported to the guest in the HW info flags).
    pub repeat_tlbi_cfgi: bool,
}

/// One vDEVICE: a physical device of the VM with its virtual StreamID (IOMMU_VDEVICE_ALLOC,
/// `struct iommu_vdevice_alloc`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VDevice {
    /// The hypervisor's device ID (iommufd `dev_id`), written into page-fault records.
    pub dev_id: u32,
    /// Physical StreamID.
    pub psid: StreamId,
    /// Virtual StreamID (`virt_id`).
    pub vsid: VStreamId,
    /// The device supports ATS.
    pub ats_capable: bool,
    /// The nested vSTE the device is attached to, if any.
    pub nested: Option<NestedSte>,
}

impl VDevice {
    /// Whether ATS is on for the device: it supports ATS and its nested STE asked for it (the
    /// physical STE then has EATS = 1). Only then may the guest issue ATC_INV for it.
    pub fn ats_enabled(&self) -> bool {
        self.ats_capable && self.nested.is_some_and(|n| n.enable_ats())
    }
}

/// Where [`Router::route_event`] / [`Router::route_page_request`] sent a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Routed {
    /// Appended to the vIOMMU's vEVENTQ with this sequence number.
    Forwarded {
        /// The vIOMMU index.
        viommu: u16,
        /// The record's sequence number.
        sequence: u32,
    },
    /// The vEVENTQ held `veventq_depth` unread events: dropped, LOST_EVENTS marker updated.
    DroppedFull {
        /// The vIOMMU index.
        viommu: u16,
    },
    /// The vIOMMU has no vEVENTQ of that type: dropped and counted (Linux drops it too).
    DroppedNoVeventq {
        /// The vIOMMU index.
        viommu: u16,
    },
    /// Queued as an I/O page fault of the vIOMMU's fault queue.
    Iopf {
        /// The vIOMMU index.
        viommu: u16,
    },
    /// Handed to the host's sink.
    Host(HostReason),
}

/// Why a record went to the host's sink.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum HostReason {
    /// The StreamID has no vDEVICE.
    Unassigned,
    /// The device has a vDEVICE but is not attached to a nested STE of its vIOMMU.
    NotAttached,
    /// A stage-2 fault (S2 = 1): the hypervisor's own business.
    Stage2,
    /// An event ID Linux does not forward (or a record that cannot be a guest's).
    NotForwarded,
    /// A stall or page request with no fault queue to take it, or a full one: the host must
    /// answer it (RESUME / PRI_RESP).
    NoFaultQueue,
    /// The vIOMMU was being torn down.
    Stale,
    /// Another producer held the router's rings too long, or a route changed under the lookup
    /// too often ([`super::routing::READ_RETRIES`]).
    Contended,
}

/// Counters of a [`Router`] (totals since it was created).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RouterStats {
    /// Records appended to some vEVENTQ.
    pub forwarded: u64,
    /// Records dropped because a vEVENTQ was full.
    pub dropped_full: u64,
    /// Records dropped because the vIOMMU had no vEVENTQ.
    pub dropped_no_veventq: u64,
    /// Faults queued for a fault queue.
    pub iopf: u64,
    /// Records of StreamIDs with no vDEVICE, passed to the host.
    pub host_unassigned: u64,
    /// Stage-2 faults passed to the host.
    pub host_stage2: u64,
    /// Other records passed to the host (not attached, not forwarded, no fault queue, stale,
    /// contended).
    pub host_other: u64,
    /// Hardware event-queue overflows seen.
    pub evtq_overflows: u64,
    /// LOST_EVENTS markers placed in vEVENTQs for hardware event-queue overflows (one per
    /// overflow and live vIOMMU with an SMMUv3 vEVENTQ).
    pub lost_marked: u64,
    /// Hardware PRI-queue overflows seen.
    pub priq_overflows: u64,
    /// How often the IRQ path's producer token was taken (each take and its release are two
    /// locked read-modify-writes; a drain's [`Router::sink`] takes it once per
    /// [`SINK_CHUNK`] records).
    pub producer_takes: u64,
}

/// A counter written by one side only (the holder of a producer token): a load and a store, no
/// locked read-modify-write.
#[inline]
fn bump(c: &AtomicU64) {
    add(c, 1);
}

#[inline]
fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// A set of counters written by the holder of one producer token, summed into `$stats`.
macro_rules! counters {
    ($(#[$m:meta])* $name:ident for $stats:ident { $($f:ident),* $(,)? }) => {
        $(#[$m])*
        struct $name {
            $($f: AtomicU64,)*
        }

        impl $name {
            ctor! {
                fn new() -> Self {
                    Self { $($f: AtomicU64::new(0),)* }
                }
            }

            fn add_to(&self, s: &mut $stats) {
                $(s.$f += get(&self.$f);)*
            }

            /// Zeroes the counters (control path, while no producer writes them).
            #[allow(dead_code)]
            fn reset(&self) {
                $(self.$f.store(0, Ordering::Relaxed);)*
            }
        }
    };
}

counters! {
    /// The router's counters written under one producer token.
    Counters for RouterStats {
        forwarded, dropped_full, dropped_no_veventq, iopf, host_unassigned, host_stage2,
        host_other, evtq_overflows, lost_marked, priq_overflows,
    }
}

/// Counters of one vIOMMU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ViommuStats {
    /// Records appended to its vEVENTQs.
    pub forwarded: u64,
    /// Records dropped because a vEVENTQ of it was full.
    pub dropped_full: u64,
    /// Records dropped because it had no vEVENTQ of their type.
    pub dropped_no_veventq: u64,
    /// Hardware event-queue overflows seen while it was live (any of its records may have been
    /// among the lost ones).
    pub evtq_overflows: u64,
    /// Sequence numbers its SMMUv3 vEVENTQ gave to LOST_EVENTS markers for those overflows.
    pub lost_marked: u64,
    /// Faults queued for its fault queue.
    pub iopf: u64,
    /// Faults passed to the host because its fault queue was missing or full.
    pub iopf_to_host: u64,
}

counters! {
    /// A vIOMMU's counters written under one producer token (a new vIOMMU of the slot resets
    /// them while no route names it).
    ViommuCounters for ViommuStats {
        forwarded, dropped_full, dropped_no_veventq, evtq_overflows, lost_marked, iopf,
        iopf_to_host,
    }
}

/// The VM whose vIOMMU occupies a slot, as the control path sees it behind the slot's lock: the
/// vIOMMU's generation, configuration, vDEVICEs, fault groups and (CMDQV) VINTF.
struct Tenant<const VDEVICES: usize, const FAULTS: usize> {
    /// The generation the vIOMMU was allocated with: a handle must name it.
    generation: u64,
    /// A teardown started: only teardown may touch the vIOMMU now.
    dying: bool,
    cfg: ViommuConfig,
    policy: GuestCmdPolicy,
    vdevices: heapless::Vec<VDevice, VDEVICES>,
    groups: FaultGroups<FAULTS>,
    /// The guest VINTF of a TEGRA241_CMDQV vIOMMU.
    vintf: Option<u8>,
}

impl<const VDEVICES: usize, const FAULTS: usize> Tenant<VDEVICES, FAULTS> {
    fn vdevice(&self, vsid: VStreamId) -> Result<&VDevice, Error> {
        self.vdevices
            .iter()
            .find(|d| d.vsid == vsid)
            .ok_or(Error::NoSuch(Object::VDevice(vsid)))
    }

    fn vdevice_mut(&mut self, vsid: VStreamId) -> Result<&mut VDevice, Error> {
        self.vdevices
            .iter_mut()
            .find(|d| d.vsid == vsid)
            .ok_or(Error::NoSuch(Object::VDevice(vsid)))
    }

    /// Ok for an ARM_SMMUV3 vIOMMU (`id` is this one's handle); a TEGRA241_CMDQV one is
    /// handled by the `*_cmdqv` calls.
    fn plain(&self, id: ViommuId) -> Result<(), Error> {
        match self.vintf {
            Some(_) => Err(Error::WrongType(Object::Viommu(id))),
            None => Ok(()),
        }
    }
}

/// `Viommu::state`: bit 0 live, bits `[63:1]` the generation of the slot's latest vIOMMU.
const LIVE: u64 = 1;

/// One vIOMMU slot (per VM): its configuration and vDEVICEs (control path), and the rings the
/// IRQ path feeds: an SMMUv3 vEVENTQ of capacity `VEVENTS`, with feature `cmdqv` a Tegra241 CMDQV
/// vEVENTQ of capacity `VEVENTS`, and a fault ring of `FAULTS` faults. Lives inside a [`Router`].
pub struct Viommu<const VDEVICES: usize, const VEVENTS: usize, const FAULTS: usize> {
    state: AtomicU64,
    /// The slot's tenant, if any (all zero bits when free: [`Held::Empty`]).
    tenant: Mutex<Held<Tenant<VDEVICES, FAULTS>>>,
    veventq: Gate<VeventQueue<VeventArmSmmuv3, VEVENTS>>,
    #[cfg(feature = "cmdqv")]
    veventq_cmdqv: Gate<VeventQueue<VeventTegra241Cmdqv, VEVENTS>>,
    faults: Gate<FaultRing<FAULTS>>,
    /// Written under the router's producer token.
    counters: ViommuCounters,
    /// Written under the router's CMDQV producer token.
    #[cfg(feature = "cmdqv")]
    cmdqv_counters: ViommuCounters,
}

#[cfg(not(loom))]
impl<const VDEVICES: usize, const VEVENTS: usize, const FAULTS: usize> Default
    for Viommu<VDEVICES, VEVENTS, FAULTS>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const VDEVICES: usize, const VEVENTS: usize, const FAULTS: usize>
    Viommu<VDEVICES, VEVENTS, FAULTS>
{
    ctor! {
    /// A free slot.
    pub fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            tenant: Mutex::new(Held::Empty),
            veventq: Gate::new(),
            #[cfg(feature = "cmdqv")]
            veventq_cmdqv: Gate::new(),
            faults: Gate::new(),
            counters: ViommuCounters::new(),
            #[cfg(feature = "cmdqv")]
            cmdqv_counters: ViommuCounters::new(),
        }
    }
    }

    /// Whether vIOMMU generation `generation` is live in this slot (a snapshot).
    #[inline]
    fn accepts(&self, generation: u64) -> bool {
        self.state.load(Ordering::Acquire) == (generation << 1) | LIVE
    }

    /// Counters.
    pub fn stats(&self) -> ViommuStats {
        let mut s = ViommuStats::default();
        self.counters.add_to(&mut s);
        #[cfg(feature = "cmdqv")]
        self.cmdqv_counters.add_to(&mut s);
        s
    }
}

/// The vIOMMUs of one physical SMMU and the routing of its records.
///
/// Capacities, in order: `VIOMMUS` vIOMMUs, `ROUTES` routes (vDEVICEs over all vIOMMUs; a power
/// of two), `VDEVICES` vDEVICEs per vIOMMU, `VEVENTS` records per vEVENTQ (a power of two;
/// `veventq_depth <= VEVENTS`), `FAULTS` faults per fault queue (a power of two). No heap: place
/// the router in a `static` (`new` is `const`; every byte of a new router is zero, so the static
/// takes no room in the image: it lands in `.bss`).
#[cfg_attr(
    feature = "fakes",
    doc = r#"
# Example
On the software model of an SMMUv3 (feature `fakes`): a VM gets a vIOMMU with one device, the
device faults, the event-queue drain routes the record, and the VMM reads it from the vEVENTQ
with the device's virtual StreamID.
```
use arm_smmuv3::event::{EventId, EventRecord};
use arm_smmuv3::fake::{HostSink, SmmuModel};
use arm_smmuv3::iommufd::{VeventHeader, VeventqType};
use arm_smmuv3::ste::{Granule, S2Config};
use arm_smmuv3::viommu::{Router, ViommuConfig};
use arm_smmuv3::{Config, Iova, PhysAddr, StreamId, Vmid};

/// 2 vIOMMUs, 16 routed StreamIDs, 4 vDEVICEs, 16-record vEVENTQs and 8 faults per vIOMMU.
static ROUTER: Router<2, 16, 4, 16, 8> = Router::new();

# fn main() -> Result<(), arm_smmuv3::Error> {
let model = SmmuModel::qemu_virt();
let smmu = model.driver(Config::default())?;
smmu.reset()?;

let s2 = S2Config::for_ipa_bits(Vmid(1), PhysAddr(0x4000_0000), 40, Granule::Size4K)?;
let viommu = ROUTER.alloc_viommu(ViommuConfig {
    s2,
    features: *smmu.features(),
    coherent_devices: true,
    repeat_tlbi_cfgi: false,
})?;
// Physical StreamID 0x10 is the guest's StreamID 0x2.
let vsid = ROUTER.alloc_vdevice(viommu, 1, StreamId(0x10), 0x2, false)?;
ROUTER.alloc_veventq(viommu, VeventqType::ArmSmmuv3, 16)?;
// The guest's STE for StreamID 0x2: V = 1, Config = S1 translate, CD table at IPA 0x8000_0000.
let guest_ste = [1 | (5 << 1) | 0x8000_0000, 0];
ROUTER.attach_nested(viommu, vsid, guest_ste, &smmu, |sid, ste| smmu.set_ste(sid, ste))?;

// The device takes a stage-1 translation fault; the event-queue interrupt drains it.
let fault = EventRecord::translation_fault(StreamId(0x10), Iova(0x1000), false, true);
model.inject_event(fault.encode());
let mut host = HostSink::default();
smmu.drain_evtq(&mut ROUTER.sink(&mut host));
assert!(host.events.is_empty(), "the VM's record did not go to the host");

// The VMM reads the record as iommufd's read() gives it: header, then the event, StreamID
// field (word 0, bits [63:32]) replaced by the vSID.
let mut buf = [0u8; 64];
let n = ROUTER.read_vevents(viommu, VeventqType::ArmSmmuv3, &mut buf)?;
assert_eq!(n, 40);
assert_eq!(VeventHeader::from_prefix(&buf).map(|h| h.sequence), Some(0));
let word0 = u64::from_le_bytes(buf[8..16].try_into().unwrap());
assert_eq!(EventId(word0 as u8), EventId::F_TRANSLATION);
assert_eq!(word0 >> 32, 0x2);
# Ok(())
# }
```
"#
)]
pub struct Router<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> {
    viommus: [Viommu<VDEVICES, VEVENTS, FAULTS>; VIOMMUS],
    routes: RoutingTable<ROUTES>,
    /// Serialises route writers and vIOMMU allocation; taken before any vIOMMU's `tenant` lock.
    writers: Mutex<()>,
    /// Written under `producer`.
    counters: Counters,
    /// Records given to the host because the producer token was busy (a locked add: written
    /// without the token).
    contended: AtomicU64,
    /// The IRQ-path producer token of the SMMUv3 vEVENTQs and the fault rings (event drain,
    /// PRI drain, overflow marks, the control path's grace rounds).
    producer: Producer,
    /// The producer token of the TEGRA241_CMDQV vEVENTQs (the CMDQV error interrupt).
    #[cfg(feature = "cmdqv")]
    cmdqv_producer: Producer,
    /// Written under `cmdqv_producer`.
    #[cfg(feature = "cmdqv")]
    cmdqv_counters: Counters,
    /// VINTF index → owning vIOMMU (its [`ViommuId`] + 1), 0 if none.
    #[cfg(feature = "cmdqv")]
    vintf_owner: [AtomicU64; crate::cmdqv::regs::MAX_VINTFS],
}

#[cfg(not(loom))]
impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> Default for Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    const V_OK: () = assert!(VIOMMUS <= MAX_VIOMMUS + 1, "too many vIOMMUs");

    ctor! {
    /// A router with every vIOMMU slot free.
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::V_OK;
        Self {
            viommus: array_of!(Viommu::new(); VIOMMUS),
            routes: RoutingTable::new(),
            writers: Mutex::new(()),
            counters: Counters::new(),
            contended: AtomicU64::new(0),
            producer: Producer::new(),
            #[cfg(feature = "cmdqv")]
            cmdqv_producer: Producer::new(),
            #[cfg(feature = "cmdqv")]
            cmdqv_counters: Counters::new(),
            #[cfg(feature = "cmdqv")]
            vintf_owner: array_of!(AtomicU64::new(0); crate::cmdqv::regs::MAX_VINTFS),
        }
    }
    }

    /// Counters.
    pub fn stats(&self) -> RouterStats {
        let mut s = RouterStats::default();
        self.counters.add_to(&mut s);
        #[cfg(feature = "cmdqv")]
        self.cmdqv_counters.add_to(&mut s);
        s.host_other += get(&self.contended);
        s.producer_takes = self.producer.takes();
        s
    }

    fn slot(&self, id: ViommuId) -> Result<&Viommu<VDEVICES, VEVENTS, FAULTS>, Error> {
        self.viommus
            .get(usize::from(id.index()))
            .ok_or(Error::NoSuch(Object::Viommu(id)))
    }

    /// Runs `f` on vIOMMU `id` under its lock, once the lock is held and the slot's occupant is
    /// known to be `id` (not torn down, not a later vIOMMU of the same slot): ENOENT otherwise.
    fn with_ctl<R>(
        &self,
        id: ViommuId,
        f: impl FnOnce(
            &Viommu<VDEVICES, VEVENTS, FAULTS>,
            &mut Tenant<VDEVICES, FAULTS>,
        ) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let v = self.slot(id)?;
        let mut guard = v.tenant.lock();
        match guard.as_mut() {
            Some(c) if c.generation == id.generation() && !c.dying => f(v, c),
            _ => Err(Error::NoSuch(Object::Viommu(id))),
        }
    }

    /// Counters of vIOMMU `id`.
    pub fn viommu_stats(&self, id: ViommuId) -> Result<ViommuStats, Error> {
        let v = self.slot(id)?;
        if v.accepts(id.generation()) {
            Ok(v.stats())
        } else {
            Err(Error::NoSuch(Object::Viommu(id)))
        }
    }

    /// One round of the IRQ path's producer token: when it returns `true`, every producer that
    /// was inside the rings when it was called has left (a grace period).
    fn producer_round(&self) -> bool {
        self.producer.round(TEARDOWN_SPINS)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use core::mem::size_of;

    /// A vIOMMU reserves room for a TEGRA241_CMDQV vEVENTQ only with feature `cmdqv`: with
    /// 1,024-record queues the second ring alone is 1,024 × 40 bytes.
    #[test]
    fn cmdqv_veventq_storage_only_with_the_feature() {
        let smmuv3_ring = size_of::<VeventQueue<VeventArmSmmuv3, 1024>>();
        let viommu = size_of::<Viommu<1, 1024, 1>>();
        assert!(smmuv3_ring >= 1024 * 40);
        if cfg!(feature = "cmdqv") {
            assert!(viommu >= 2 * smmuv3_ring, "{viommu} bytes");
        } else {
            assert!(viommu < smmuv3_ring + 1024, "{viommu} bytes");
        }
    }
}
