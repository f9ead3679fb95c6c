//! [`Router`]: the set of vIOMMUs of one physical SMMU, their vDEVICEs, and the IRQ-path routing
//! of event records and page requests into them.
//!
//! Concurrency: control-path calls (allocation, attach, invalidation, reading) may run on any CPU
//! and are serialised by spin locks the IRQ path never takes. The IRQ path
//! ([`Router::route_event`], [`Router::route_page_request`], [`Router::route_overflow`]) reads the
//! [`RoutingTable`] lock-free and enters a vIOMMU's rings through gates that never wait; a vIOMMU
//! torn down in between is recognised by its generation and its records are not delivered.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::gate::Gate;
use super::invalidate::{GuestCmdPolicy, INVALIDATE_BATCH, InvalidateOutcome, invalidate_batches};
use super::iopf::{Fault, FaultGroups, FaultRing};
use super::routing::{GENERATION_MASK, Lookup, MAX_VIOMMUS, Route, RoutingTable};
use super::sink::{CommandSink, EventSink, PriSink};
use super::veventq::{Reported, VeventQueue};
use super::vste::NestedSte;
use crate::command::{CmdqEntry, Command};
use crate::error::{Error, Feature};
use crate::event::{EventId, EvtqEntry};
use crate::features::Features;
use crate::ids::{StreamId, VStreamId, Vmid};
use crate::iommufd::{
    HwInfoArmSmmuv3, HwptPageResponse, HwptPgfault, VeventArmSmmuv3, VeventTegra241Cmdqv,
    VeventqType, ViommuArmSmmuv3Invalidate,
};
use crate::pri::PriqEntry;
use crate::ste::{S2Config, Ste};

/// How many rounds teardown waits for an IRQ-path producer inside a vIOMMU's ring before it
/// reports [`Error::Busy`] (the caller retries; no new producer can get in meanwhile).
pub const TEARDOWN_SPINS: u32 = 1 << 16;

/// Event IDs forwarded to a guest (iommufd.md §6 "What the kernel writes into an SMMUv3 vEVENT"):
/// C_BAD_STE, F_STREAM_DISABLED, C_BAD_SUBSTREAMID, C_BAD_CD, F_TRANSLATION, F_ADDR_SIZE,
/// F_ACCESS, F_PERMISSION.
pub const FORWARDED_EVENTS: [EventId; 8] = [
    EventId(0x04),
    EventId(0x06),
    EventId(0x08),
    EventId(0x0a),
    EventId(0x10),
    EventId(0x11),
    EventId(0x12),
    EventId(0x13),
];

const EVT1_STALL: u64 = 1 << 31;
const EVT1_S2: u64 = 1 << 39;

/// A vIOMMU handle: slot index (bits `[15:0]`) and generation (bits `[30:16]`), so a handle of
/// a destroyed vIOMMU never reaches its slot's next occupant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ViommuId(pub u32);

impl ViommuId {
    const fn new(index: u16, generation: u16) -> Self {
        Self(index as u32 | ((generation as u32) << 16))
    }

    /// The slot index.
    pub const fn index(self) -> u16 {
        self.0 as u16
    }

    /// The generation (15 bits).
    pub const fn generation(self) -> u16 {
        (self.0 >> 16) as u16 & GENERATION_MASK
    }
}

/// What the hypervisor tells the library when it creates a vIOMMU (IOMMU_VIOMMU_ALLOC on a
/// nesting-parent stage 2, iommufd.md §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ViommuConfig {
    /// The VM's stage 2 (from the hypervisor's stage-2 root); its VMID is the vIOMMU's.
    pub s2: S2Config,
    /// The physical SMMU's features.
    pub features: Features,
    /// The VM's devices are fully coherent (Linux's CANWBS); without it the SMMU needs S2FWB.
    pub coherent_devices: bool,
    /// The board needs TLBI/CFGI repeated (reported to the guest in the HW info flags).
    pub repeat_tlbi_cfgi: bool,
}

/// One vDEVICE: a physical device of the VM with its virtual StreamID (iommufd.md §3).
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
    /// A route changed under the lookup too often ([`super::routing::READ_RETRIES`]).
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
    /// Hardware PRI-queue overflows seen.
    pub priq_overflows: u64,
}

#[derive(Default)]
struct Counters {
    forwarded: AtomicU64,
    dropped_full: AtomicU64,
    dropped_no_veventq: AtomicU64,
    iopf: AtomicU64,
    host_unassigned: AtomicU64,
    host_stage2: AtomicU64,
    host_other: AtomicU64,
    evtq_overflows: AtomicU64,
    priq_overflows: AtomicU64,
}

impl Counters {
    const fn new() -> Self {
        Self {
            forwarded: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            dropped_no_veventq: AtomicU64::new(0),
            iopf: AtomicU64::new(0),
            host_unassigned: AtomicU64::new(0),
            host_stage2: AtomicU64::new(0),
            host_other: AtomicU64::new(0),
            evtq_overflows: AtomicU64::new(0),
            priq_overflows: AtomicU64::new(0),
        }
    }

    fn snapshot(&self) -> RouterStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RouterStats {
            forwarded: l(&self.forwarded),
            dropped_full: l(&self.dropped_full),
            dropped_no_veventq: l(&self.dropped_no_veventq),
            iopf: l(&self.iopf),
            host_unassigned: l(&self.host_unassigned),
            host_stage2: l(&self.host_stage2),
            host_other: l(&self.host_other),
            evtq_overflows: l(&self.evtq_overflows),
            priq_overflows: l(&self.priq_overflows),
        }
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// Counters of one vIOMMU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ViommuStats {
    /// Records appended to its vEVENTQ.
    pub forwarded: u64,
    /// Records dropped because its vEVENTQ was full.
    pub dropped_full: u64,
    /// Records dropped because it had no vEVENTQ.
    pub dropped_no_veventq: u64,
    /// Hardware event-queue overflows seen while it was live (any of its records may have been
    /// among the lost ones).
    pub evtq_overflows: u64,
    /// Faults queued for its fault queue.
    pub iopf: u64,
    /// Faults passed to the host because its fault queue was missing or full.
    pub iopf_to_host: u64,
}

struct Ctl<const D: usize, const F: usize> {
    cfg: ViommuConfig,
    policy: GuestCmdPolicy,
    vdevices: heapless::Vec<VDevice, D>,
    groups: FaultGroups<F>,
}

impl<const D: usize, const F: usize> Ctl<D, F> {
    fn vdevice(&self, vsid: VStreamId) -> Option<&VDevice> {
        self.vdevices.iter().find(|d| d.vsid == vsid)
    }
}

const LIVE: u32 = 1;

/// One vIOMMU (per VM): its configuration and vDEVICEs (control path), and the rings the IRQ
/// path feeds: an SMMUv3 vEVENTQ and a Tegra241 CMDQV vEVENTQ of capacity `Q` each, and a fault
/// ring of `F` faults. Lives inside a [`Router`].
pub struct Viommu<const D: usize, const Q: usize, const F: usize> {
    /// Bit 0: live; bits `[15:1]`: generation.
    state: AtomicU32,
    ctl: spin::Mutex<Option<Ctl<D, F>>>,
    veventq: Gate<VeventQueue<VeventArmSmmuv3, Q>>,
    veventq_cmdqv: Gate<VeventQueue<VeventTegra241Cmdqv, Q>>,
    faults: Gate<FaultRing<F>>,
    forwarded: AtomicU64,
    dropped_full: AtomicU64,
    dropped_no_veventq: AtomicU64,
    evtq_overflows: AtomicU64,
    iopf: AtomicU64,
    iopf_to_host: AtomicU64,
}

impl<const D: usize, const Q: usize, const F: usize> Default for Viommu<D, Q, F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const D: usize, const Q: usize, const F: usize> Viommu<D, Q, F> {
    /// A free slot.
    pub const fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            ctl: spin::Mutex::new(None),
            veventq: Gate::new(),
            veventq_cmdqv: Gate::new(),
            faults: Gate::new(),
            forwarded: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            dropped_no_veventq: AtomicU64::new(0),
            evtq_overflows: AtomicU64::new(0),
            iopf: AtomicU64::new(0),
            iopf_to_host: AtomicU64::new(0),
        }
    }

    fn generation(&self) -> u16 {
        ((self.state.load(Ordering::Acquire) >> 1) as u16) & GENERATION_MASK
    }

    /// Whether the IRQ path may still deliver a record routed with `generation`.
    #[inline]
    fn accepts(&self, generation: u16) -> bool {
        self.state.load(Ordering::Acquire) == (u32::from(generation) << 1) | LIVE
    }

    /// Counters.
    pub fn stats(&self) -> ViommuStats {
        let l = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ViommuStats {
            forwarded: l(&self.forwarded),
            dropped_full: l(&self.dropped_full),
            dropped_no_veventq: l(&self.dropped_no_veventq),
            evtq_overflows: l(&self.evtq_overflows),
            iopf: l(&self.iopf),
            iopf_to_host: l(&self.iopf_to_host),
        }
    }

    fn reset_counters(&self) {
        for c in [
            &self.forwarded,
            &self.dropped_full,
            &self.dropped_no_veventq,
            &self.evtq_overflows,
            &self.iopf,
            &self.iopf_to_host,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

/// The vIOMMUs of one physical SMMU and the routing of its records.
///
/// Capacities: `V` vIOMMUs, `S` routes (vDEVICEs over all vIOMMUs; a power of two), `D` vDEVICEs
/// per vIOMMU, `Q` records per vEVENTQ (a power of two; `veventq_depth <= Q`), `F` faults per
/// fault queue (a power of two). No heap: place the router in a `static` (`new` is `const`).
pub struct Router<const V: usize, const S: usize, const D: usize, const Q: usize, const F: usize> {
    viommus: [Viommu<D, Q, F>; V],
    routes: RoutingTable<S>,
    /// Serialises route writers and vIOMMU allocation; taken before any vIOMMU's `ctl`.
    writers: spin::Mutex<()>,
    counters: Counters,
}

impl<const V: usize, const S: usize, const D: usize, const Q: usize, const F: usize> Default
    for Router<V, S, D, Q, F>
{
    fn default() -> Self {
        Self::new()
    }
}

impl<const V: usize, const S: usize, const D: usize, const Q: usize, const F: usize>
    Router<V, S, D, Q, F>
{
    const V_OK: () = assert!(V <= MAX_VIOMMUS, "too many vIOMMUs");

    /// A router with every vIOMMU slot free.
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::V_OK;
        Self {
            viommus: [const { Viommu::new() }; V],
            routes: RoutingTable::new(),
            writers: spin::Mutex::new(()),
            counters: Counters::new(),
        }
    }

    /// Counters.
    pub fn stats(&self) -> RouterStats {
        self.counters.snapshot()
    }

    /// The vIOMMU `id` if it is live.
    fn get(&self, id: ViommuId) -> Result<&Viommu<D, Q, F>, Error> {
        let v = self
            .viommus
            .get(usize::from(id.index()))
            .ok_or(Error::NotFound)?;
        if v.accepts(id.generation()) {
            Ok(v)
        } else {
            Err(Error::NotFound)
        }
    }

    fn with_ctl<R>(
        &self,
        id: ViommuId,
        f: impl FnOnce(&Viommu<D, Q, F>, &mut Ctl<D, F>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        let v = self.get(id)?;
        let mut guard = v.ctl.lock();
        let ctl = guard.as_mut().ok_or(Error::NotFound)?;
        f(v, ctl)
    }

    /// Counters of vIOMMU `id`.
    pub fn viommu_stats(&self, id: ViommuId) -> Result<ViommuStats, Error> {
        Ok(self.get(id)?.stats())
    }

    // ------------------------------------------------------------------------------------
    // vIOMMU

    /// Creates a vIOMMU (IOMMU_VIOMMU_ALLOC, iommufd.md §2). Errors as Linux: no nesting
    /// (IDR0.S1P and S2P) → EOPNOTSUPP; neither coherent devices nor S2FWB → EOPNOTSUPP; a VMID
    /// of 0 or wider than IDR0.VMID16 allows → EINVAL; no free slot → ENOMEM.
    pub fn alloc_viommu(&self, cfg: ViommuConfig) -> Result<ViommuId, Error> {
        if !cfg.features.nesting() {
            return Err(Error::Unsupported(Feature::Nesting));
        }
        if !cfg.coherent_devices && !cfg.features.fwb {
            return Err(Error::Unsupported(Feature::Nesting));
        }
        let vmid = cfg.s2.vmid;
        if vmid.0 == 0 || Vmid::new(vmid.0, cfg.features.vmid_bits()).is_none() {
            return Err(Error::InvalidArgument);
        }
        let _w = self.writers.lock();
        for (i, v) in self.viommus.iter().enumerate() {
            let mut ctl = v.ctl.lock();
            if ctl.is_some() || v.state.load(Ordering::Acquire) & LIVE != 0 {
                continue;
            }
            let generation = v.generation().wrapping_add(1) & GENERATION_MASK;
            *ctl = Some(Ctl {
                cfg,
                policy: GuestCmdPolicy::new(vmid, &cfg.features),
                vdevices: heapless::Vec::new(),
                groups: FaultGroups::new(),
            });
            v.reset_counters();
            v.state
                .store((u32::from(generation) << 1) | LIVE, Ordering::Release);
            return Ok(ViommuId::new(i as u16, generation));
        }
        Err(Error::NoMemory)
    }

    /// Destroys a vIOMMU that has no children left (IOMMU_DESTROY, iommufd.md §0): EBUSY while
    /// it has a vDEVICE, a vEVENTQ or a fault queue.
    pub fn destroy_viommu(&self, id: ViommuId) -> Result<(), Error> {
        let _w = self.writers.lock();
        let v = self.get(id)?;
        let mut ctl = v.ctl.lock();
        let busy = ctl.as_ref().is_some_and(|c| !c.vdevices.is_empty())
            || v.veventq.is_open()
            || v.veventq_cmdqv.is_open()
            || v.faults.is_open();
        if busy {
            return Err(Error::Busy);
        }
        v.state
            .store(u32::from(id.generation()) << 1, Ordering::Release);
        *ctl = None;
        Ok(())
    }

    /// Releases everything of a vIOMMU at once, as closing the iommufd does: the IRQ path stops
    /// delivering to it at once (generation), every route of its vDEVICEs goes, every pending and
    /// delivered fault group is answered INVALID through `cmds`, and its rings are taken away
    /// once no IRQ-path producer is inside them (bounded wait, [`TEARDOWN_SPINS`]). The STEs of
    /// its devices are the caller's to replace. Returns the number of fault groups answered.
    ///
    /// [`Error::Busy`] if a producer did not leave in time: the vIOMMU is then half torn down
    /// (no record reaches it any more); call again to finish.
    pub fn teardown_viommu(&self, id: ViommuId, cmds: &impl CommandSink) -> Result<usize, Error> {
        let _w = self.writers.lock();
        let v = self
            .viommus
            .get(usize::from(id.index()))
            .ok_or(Error::NotFound)?;
        let mut guard = v.ctl.lock();
        let Some(ctl) = guard.as_mut() else {
            return Err(Error::NotFound);
        };
        if v.generation() != id.generation() {
            return Err(Error::NotFound);
        }
        // 1. Stop delivery: the IRQ path compares the generation it routed with.
        v.state
            .store(u32::from(id.generation()) << 1, Ordering::Release);
        // 2. Routes.
        for d in &ctl.vdevices {
            self.routes.remove(d.psid);
        }
        // 3. Faults: take what the IRQ path queued, answer every group INVALID.
        let mut answered = 0;
        v.faults.read(|ring| ctl.groups.pull(ring));
        let result = answer_invalid(&mut ctl.groups, None, cmds, &mut answered);
        // 4. Rings: wait for producers to leave.
        let q1 = v.veventq.close(TEARDOWN_SPINS);
        let q2 = v.veventq_cmdqv.close(TEARDOWN_SPINS);
        let fr = v.faults.close(TEARDOWN_SPINS);
        // Faults queued between the pull and the close are answered too.
        let result = match &fr {
            Ok(Some(ring)) => result.and(drain_invalid(ring, &mut ctl.groups, cmds, &mut answered)),
            _ => result,
        };
        if q1.is_err() || q2.is_err() || fr.is_err() {
            return Err(Error::Busy);
        }
        let result = result.and(answer_invalid(&mut ctl.groups, None, cmds, &mut answered));
        *guard = None;
        result.map(|()| answered)
    }

    /// The HW info blob for the guest (IOMMU_GET_HW_INFO, iommufd.md §1): the SMMU's raw ID
    /// registers, as Linux reports them, plus the errata flag if the board needs it. See
    /// [`super::hw_info`].
    pub fn hw_info(&self, id: ViommuId) -> Result<HwInfoArmSmmuv3, Error> {
        self.with_ctl(id, |_, c| {
            Ok(super::hw_info::arm_smmuv3_info(
                &c.cfg.features.raw,
                c.cfg.repeat_tlbi_cfgi,
            ))
        })
    }

    /// The vIOMMU's VMID.
    pub fn vmid(&self, id: ViommuId) -> Result<Vmid, Error> {
        self.with_ctl(id, |_, c| Ok(c.cfg.s2.vmid))
    }

    // ------------------------------------------------------------------------------------
    // vDEVICE

    /// Creates a vDEVICE (IOMMU_VDEVICE_ALLOC, iommufd.md §3): physical StreamID `psid` of device
    /// `dev_id` appears to the guest as `virt_id`. Errors as Linux: `virt_id` above 32 bits →
    /// EINVAL (StreamIDs are 32 bits wide); `psid` outside the SMMU's SIDSIZE → EINVAL (not a
    /// device of this SMMU); the device already has a vDEVICE (in any vIOMMU) → EEXIST; the
    /// vSID is already used in this vIOMMU → EEXIST; no room → ENOMEM.
    pub fn alloc_vdevice(
        &self,
        id: ViommuId,
        dev_id: u32,
        psid: StreamId,
        virt_id: u64,
        ats_capable: bool,
    ) -> Result<VStreamId, Error> {
        let vsid = VStreamId(u32::try_from(virt_id).map_err(|_| Error::InvalidArgument)?);
        let _w = self.writers.lock();
        self.with_ctl(id, |_, c| {
            let bits = c.cfg.features.sid_bits;
            if bits < 32 && psid.0 >> bits != 0 {
                return Err(Error::InvalidArgument);
            }
            if self.routes.get(psid).is_some() || c.vdevices.iter().any(|d| d.psid == psid) {
                return Err(Error::Exists);
            }
            if c.vdevice(vsid).is_some() {
                return Err(Error::Exists);
            }
            if c.vdevices.is_full() {
                return Err(Error::NoMemory);
            }
            let route = Route {
                viommu: id.index(),
                generation: id.generation(),
                vsid,
                attached: false,
            };
            self.routes.insert(psid, route).map_err(|e| match e {
                Error::NoSpace => Error::NoMemory,
                e => e,
            })?;
            c.vdevices
                .push(VDevice {
                    dev_id,
                    psid,
                    vsid,
                    ats_capable,
                    nested: None,
                })
                .map_err(|_| Error::NoMemory)?;
            Ok(vsid)
        })
    }

    /// Destroys a vDEVICE: its pending and delivered fault groups are answered INVALID through
    /// `cmds`, its route goes (records of the device then go to the host). ENOENT if the vSID
    /// has no vDEVICE here.
    pub fn destroy_vdevice(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        cmds: &impl CommandSink,
    ) -> Result<(), Error> {
        let _w = self.writers.lock();
        self.with_ctl(id, |v, c| {
            let pos = c
                .vdevices
                .iter()
                .position(|d| d.vsid == vsid)
                .ok_or(Error::NotFound)?;
            let psid = c.vdevices.get(pos).map(|d| d.psid).ok_or(Error::NotFound)?;
            self.routes.remove(psid);
            c.vdevices.swap_remove(pos);
            v.faults.read(|ring| c.groups.pull(ring));
            answer_invalid(&mut c.groups, Some(psid), cmds, &mut 0)
        })
    }

    /// The vDEVICEs of vIOMMU `id` (a copy).
    pub fn vdevices(&self, id: ViommuId) -> Result<heapless::Vec<VDevice, D>, Error> {
        self.with_ctl(id, |_, c| Ok(c.vdevices.clone()))
    }

    /// The physical StreamID of vSID `vsid` in vIOMMU `id`.
    pub fn vsid_to_psid(&self, id: ViommuId, vsid: VStreamId) -> Result<StreamId, Error> {
        self.with_ctl(id, |_, c| {
            c.vdevice(vsid).map(|d| d.psid).ok_or(Error::NotFound)
        })
    }

    /// Attaches the device with vSID `vsid` to a nested HWPT of this vIOMMU (IOMMU_HWPT_ALLOC
    /// with `iommu_hwpt_arm_smmuv3` + attach, iommufd.md §4): sanitises the guest STE (EIO for a
    /// forbidden one), builds the physical STE from it and the vIOMMU's stage 2, and has
    /// `install` write it for the physical StreamID (the driver's `set_ste`). From then on the
    /// device's stage-1 events are forwarded. Re-attaching answers the old attachment's fault
    /// groups INVALID. ENOENT without a vDEVICE (Linux needs one before a nested attach).
    pub fn attach_nested(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        guest_ste: [u64; 2],
        cmds: &impl CommandSink,
        install: impl FnOnce(StreamId, &Ste) -> Result<(), Error>,
    ) -> Result<Ste, Error> {
        let nested = NestedSte::from_guest(guest_ste)?;
        let _w = self.writers.lock();
        self.with_ctl(id, |v, c| {
            let d = *c.vdevice(vsid).ok_or(Error::NotFound)?;
            let shcfg = c.cfg.features.attr_types_ovr;
            let ste = nested.physical(&c.cfg.s2, d.ats_capable, shcfg);
            let route = Route {
                viommu: id.index(),
                generation: id.generation(),
                vsid,
                attached: true,
            };
            let old = self.routes.get(d.psid).ok_or(Error::NotFound)?;
            self.routes.update(d.psid, route)?;
            if let Err(e) = install(d.psid, &ste) {
                self.routes.update(d.psid, old)?;
                return Err(e);
            }
            if d.nested.is_some() {
                v.faults.read(|ring| c.groups.pull(ring));
                answer_invalid(&mut c.groups, Some(d.psid), cmds, &mut 0)?;
            }
            if let Some(x) = c.vdevices.iter_mut().find(|x| x.vsid == vsid) {
                x.nested = Some(nested);
            }
            Ok(ste)
        })
    }

    /// Detaches the device with vSID `vsid` from its nested HWPT: its records stop being
    /// forwarded and its fault groups are answered INVALID (Linux's auto-response on detach).
    /// The caller installs the device's next STE.
    pub fn detach_nested(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        cmds: &impl CommandSink,
    ) -> Result<(), Error> {
        let _w = self.writers.lock();
        self.with_ctl(id, |v, c| {
            let d = c
                .vdevices
                .iter_mut()
                .find(|x| x.vsid == vsid)
                .ok_or(Error::NotFound)?;
            d.nested = None;
            let psid = d.psid;
            let route = Route {
                viommu: id.index(),
                generation: id.generation(),
                vsid,
                attached: false,
            };
            self.routes.update(psid, route)?;
            v.faults.read(|ring| c.groups.pull(ring));
            answer_invalid(&mut c.groups, Some(psid), cmds, &mut 0)
        })
    }

    // ------------------------------------------------------------------------------------
    // vEVENTQ

    /// Creates the vEVENTQ of type `ty` (IOMMU_VEVENTQ_ALLOC, iommufd.md §6): DEFAULT →
    /// EOPNOTSUPP, depth 0 → EINVAL, a depth above `Q` → ENOMEM, a second queue of one type →
    /// EEXIST. A new queue starts at sequence 0.
    pub fn alloc_veventq(&self, id: ViommuId, ty: VeventqType, depth: u32) -> Result<(), Error> {
        self.with_ctl(id, |v, _| match ty {
            VeventqType::Default => Err(Error::Unsupported(Feature::Nesting)),
            VeventqType::ArmSmmuv3 => v
                .veventq
                .open(VeventQueue::new(depth)?)
                .map_err(|_| Error::Exists),
            VeventqType::Tegra241Cmdqv => v
                .veventq_cmdqv
                .open(VeventQueue::new(depth)?)
                .map_err(|_| Error::Exists),
        })
    }

    /// Destroys the vEVENTQ of type `ty`, dropping its unread records, once no IRQ-path producer
    /// is inside (bounded: [`Error::Busy`] otherwise, and no record enters it meanwhile). ENOENT
    /// if there is none.
    pub fn destroy_veventq(&self, id: ViommuId, ty: VeventqType) -> Result<(), Error> {
        self.with_ctl(id, |v, _| {
            let taken = match ty {
                VeventqType::ArmSmmuv3 => v.veventq.close(TEARDOWN_SPINS).map(|q| q.is_some()),
                VeventqType::Tegra241Cmdqv => {
                    v.veventq_cmdqv.close(TEARDOWN_SPINS).map(|q| q.is_some())
                }
                VeventqType::Default => Ok(false),
            };
            match taken {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::NotFound),
                Err(()) => Err(Error::Busy),
            }
        })
    }

    /// Reads vEVENTQ records exactly as Linux's vEVENTQ `read()` (iommufd.md §6): whole records,
    /// header + payload, a trailing LOST_EVENTS header if events were dropped; 0 when empty or
    /// when the first record does not fit. ENOENT if the vIOMMU has no queue of that type.
    pub fn read_vevents(
        &self,
        id: ViommuId,
        ty: VeventqType,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let v = self.get(id)?;
        let r = match ty {
            VeventqType::ArmSmmuv3 => v.veventq.read(|q| q.read(buf)),
            VeventqType::Tegra241Cmdqv => v.veventq_cmdqv.read(|q| q.read(buf)),
            VeventqType::Default => None,
        };
        r.unwrap_or(Err(Error::NotFound))
    }

    /// Whether a read of the vEVENTQ would return something (POLLIN).
    pub fn veventq_readable(&self, id: ViommuId, ty: VeventqType) -> bool {
        let Ok(v) = self.get(id) else {
            return false;
        };
        match ty {
            VeventqType::ArmSmmuv3 => v.veventq.read(|q| q.is_readable()),
            VeventqType::Tegra241Cmdqv => v.veventq_cmdqv.read(|q| q.is_readable()),
            VeventqType::Default => None,
        }
        .unwrap_or(false)
    }

    /// Reports a Tegra241 CMDQV error map to vIOMMU `id`'s CMDQV vEVENTQ (the CMDQV error
    /// interrupt path; iommufd.md §6 "Tegra241 CMDQV vEVENT"). IRQ-path safe.
    pub fn report_cmdqv(&self, id: ViommuId, payload: &VeventTegra241Cmdqv) -> Routed {
        let viommu = id.index();
        let Some(v) = self.viommus.get(usize::from(viommu)) else {
            return Routed::Host(HostReason::Stale);
        };
        let r = v.veventq_cmdqv.read(|q| {
            if v.accepts(id.generation()) {
                Some(q.report(payload))
            } else {
                None
            }
        });
        match r {
            Some(Some(Reported::Queued { sequence })) => Routed::Forwarded { viommu, sequence },
            Some(Some(Reported::Dropped { .. })) => Routed::DroppedFull { viommu },
            Some(None) => Routed::Host(HostReason::Stale),
            None => Routed::DroppedNoVeventq { viommu },
        }
    }

    // ------------------------------------------------------------------------------------
    // IOPF

    /// Creates the vIOMMU's fault queue (IOMMU_FAULT_QUEUE_ALLOC plus a fault-capable nested
    /// HWPT, iommufd.md §8): from now on stall events and page requests of its attached devices
    /// become page-fault groups. EEXIST if it has one.
    pub fn alloc_fault_queue(&self, id: ViommuId) -> Result<(), Error> {
        self.with_ctl(id, |v, _| {
            v.faults.open(FaultRing::new()).map_err(|_| Error::Exists)
        })
    }

    /// Destroys the fault queue: every pending and delivered group is answered INVALID through
    /// `cmds` (Linux does this when the fault object goes). Returns the groups answered.
    pub fn destroy_fault_queue(
        &self,
        id: ViommuId,
        cmds: &impl CommandSink,
    ) -> Result<usize, Error> {
        self.with_ctl(id, |v, c| {
            let ring = match v.faults.close(TEARDOWN_SPINS) {
                Ok(Some(ring)) => ring,
                Ok(None) => return Err(Error::NotFound),
                Err(()) => return Err(Error::Busy),
            };
            let mut n = 0;
            drain_invalid(&ring, &mut c.groups, cmds, &mut n)?;
            Ok(n)
        })
    }

    /// Reads whole fault groups (the fault fd's `read()`, iommufd.md §8) into `out`; returns the
    /// number of records. 0 when nothing is pending or the first group does not fit.
    pub fn read_faults(&self, id: ViommuId, out: &mut [HwptPgfault]) -> Result<usize, Error> {
        self.with_ctl(id, |v, c| {
            if v.faults.read(|ring| c.groups.pull(ring)).is_none() {
                return Err(Error::NotFound);
            }
            let devs = &c.vdevices;
            let dev_id =
                |psid: StreamId| devs.iter().find(|d| d.psid == psid).map_or(0, |d| d.dev_id);
            Ok(c.groups.read(out, dev_id))
        })
    }

    /// Answers delivered groups (the fault fd's `write()`, iommufd.md §8): each response becomes
    /// PRI_RESP or RESUME, issued through `cmds` in batches. Processing stops at the first
    /// unknown cookie or bad code (EINVAL); the result is the number of responses taken if at
    /// least one was, otherwise the error.
    pub fn respond(
        &self,
        id: ViommuId,
        responses: &[HwptPageResponse],
        cmds: &impl CommandSink,
    ) -> Result<usize, Error> {
        self.with_ctl(id, |_, c| {
            let mut batch: heapless::Vec<Command, INVALIDATE_BATCH> = heapless::Vec::new();
            let mut done = 0usize;
            let mut err = None;
            for r in responses {
                match c.groups.respond(r) {
                    Ok(cmd) => {
                        if batch.push(cmd).is_err() {
                            cmds.submit(&batch)?;
                            batch.clear();
                            batch.push(cmd).map_err(|_| Error::NoSpace)?;
                        }
                        done += 1;
                    }
                    Err(e) => {
                        err = Some(e);
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                cmds.submit(&batch)?;
            }
            match (done, err) {
                (0, Some(e)) => Err(e),
                _ => Ok(done),
            }
        })
    }

    // ------------------------------------------------------------------------------------
    // Invalidation

    /// Guest invalidation (IOMMU_HWPT_INVALIDATE on the vIOMMU with
    /// `iommu_viommu_arm_smmuv3_invalidate` entries, iommufd.md §5): each command is sanitised
    /// (see [`super::invalidate`]) and the batch is issued through `cmds` with one CMD_SYNC.
    /// `entry_num` in the outcome is what Linux writes back.
    pub fn invalidate(
        &self,
        id: ViommuId,
        entries: &[ViommuArmSmmuv3Invalidate],
        cmds: &impl CommandSink,
    ) -> InvalidateOutcome {
        let r = self.with_ctl(id, |_, c| {
            let mut raw = [CmdqEntry::default(); INVALIDATE_BATCH];
            let mut done = 0u32;
            for chunk in entries.chunks(INVALIDATE_BATCH) {
                for (dst, src) in raw.iter_mut().zip(chunk) {
                    *dst = CmdqEntry(src.cmd);
                }
                let out = invalidate_batches(
                    raw.get(..chunk.len()).unwrap_or(&[]),
                    &c.policy,
                    |vsid| c.vdevice(vsid).map(|d| d.psid),
                    |b| cmds.submit(b),
                );
                done = done.saturating_add(out.entry_num);
                if out.result.is_err() {
                    return Ok(InvalidateOutcome {
                        entry_num: done,
                        result: out.result,
                    });
                }
            }
            Ok(InvalidateOutcome {
                entry_num: done,
                result: Ok(()),
            })
        });
        r.unwrap_or_else(|e| InvalidateOutcome {
            entry_num: 0,
            result: Err(e),
        })
    }

    // ------------------------------------------------------------------------------------
    // IRQ path

    /// Routes one event record (IRQ path: no lock, no allocation, no panic, bounded):
    /// - StreamID without a vDEVICE → `host` ([`HostReason::Unassigned`]);
    /// - vDEVICE not attached to a nested STE → `host`;
    /// - Stall = 1 (F_TRANSLATION..F_PERMISSION) at stage 1 → the vIOMMU's fault queue as a
    ///   page-fault group, or `host` if it has none or it is full (the host must RESUME it);
    /// - S2 = 1 → `host` ([`HostReason::Stage2`]);
    /// - an ID in [`FORWARDED_EVENTS`] → the vIOMMU's SMMUv3 vEVENTQ with only the StreamID
    ///   replaced by the vSID, or dropped and counted if it has none;
    /// - anything else → `host`.
    pub fn route_event(&self, entry: &EvtqEntry, host: &mut impl EventSink) -> Routed {
        let routed = self.classify_event(entry);
        if let Routed::Host(reason) = routed {
            match reason {
                HostReason::Unassigned => bump(&self.counters.host_unassigned),
                HostReason::Stage2 => bump(&self.counters.host_stage2),
                _ => bump(&self.counters.host_other),
            }
            host.event(entry);
        }
        routed
    }

    fn lookup(&self, psid: StreamId) -> Result<(Route, &Viommu<D, Q, F>), HostReason> {
        let route = match self.routes.lookup(psid) {
            Lookup::Found(r) => r,
            Lookup::Absent => return Err(HostReason::Unassigned),
            Lookup::Busy => return Err(HostReason::Contended),
        };
        if !route.attached {
            return Err(HostReason::NotAttached);
        }
        let v = self
            .viommus
            .get(usize::from(route.viommu))
            .ok_or(HostReason::Stale)?;
        Ok((route, v))
    }

    fn classify_event(&self, entry: &EvtqEntry) -> Routed {
        let (route, v) = match self.lookup(entry.sid()) {
            Ok(x) => x,
            Err(r) => return Routed::Host(r),
        };
        let viommu = route.viommu;
        let [_, d1, _, _] = entry.0;
        let id = EventId(entry.id());
        if d1 & EVT1_STALL != 0 && id.can_stall() && d1 & EVT1_S2 == 0 {
            return self.queue_fault(v, route, &Fault::from_stall(entry));
        }
        if d1 & EVT1_S2 != 0 {
            return Routed::Host(HostReason::Stage2);
        }
        if !FORWARDED_EVENTS.contains(&id) || d1 & EVT1_STALL != 0 {
            return Routed::Host(HostReason::NotForwarded);
        }
        let payload = VeventArmSmmuv3 {
            evt: entry.with_sid(StreamId(route.vsid.0)).0,
        };
        let r = v.veventq.read(|q| {
            // Checked inside the gate: a vEVENTQ re-opened for the slot's next vIOMMU was
            // opened after the generation changed, and entering it synchronised with that.
            v.accepts(route.generation).then(|| q.report(&payload))
        });
        match r {
            Some(Some(Reported::Queued { sequence })) => {
                bump(&self.counters.forwarded);
                bump(&v.forwarded);
                Routed::Forwarded { viommu, sequence }
            }
            Some(Some(Reported::Dropped { .. })) => {
                bump(&self.counters.dropped_full);
                bump(&v.dropped_full);
                Routed::DroppedFull { viommu }
            }
            Some(None) => Routed::Host(HostReason::Stale),
            None if v.accepts(route.generation) => {
                bump(&self.counters.dropped_no_veventq);
                bump(&v.dropped_no_veventq);
                Routed::DroppedNoVeventq { viommu }
            }
            None => Routed::Host(HostReason::Stale),
        }
    }

    fn queue_fault(&self, v: &Viommu<D, Q, F>, route: Route, fault: &Fault) -> Routed {
        let r = v
            .faults
            .read(|ring| v.accepts(route.generation).then(|| ring.push(fault)));
        match r {
            Some(Some(true)) => {
                bump(&self.counters.iopf);
                bump(&v.iopf);
                Routed::Iopf {
                    viommu: route.viommu,
                }
            }
            Some(None) => Routed::Host(HostReason::Stale),
            _ => {
                bump(&v.iopf_to_host);
                Routed::Host(HostReason::NoFaultQueue)
            }
        }
    }

    /// Routes one PRI queue entry (IRQ path): a page request of a device attached to a nested
    /// STE goes to its vIOMMU's fault queue; anything else (no vDEVICE, not attached, no or a
    /// full fault queue) goes to `host`, which must answer it with PRI_RESP if Last is set.
    pub fn route_page_request(&self, entry: &PriqEntry, host: &mut impl PriSink) -> Routed {
        let routed = match self.lookup(entry.sid()) {
            Ok((route, v)) => self.queue_fault(v, route, &Fault::from_pri(entry)),
            Err(r) => Routed::Host(r),
        };
        if let Routed::Host(reason) = routed {
            match reason {
                HostReason::Unassigned => bump(&self.counters.host_unassigned),
                _ => bump(&self.counters.host_other),
            }
            host.request(entry);
        }
        routed
    }

    /// A hardware event-queue overflow (IRQ path). Records were lost and their owners are
    /// unknown, so the loss is charged to everyone who may have lost one: the router's and every
    /// live vIOMMU's `evtq_overflows` counters, and the host's sink. The vEVENTQs themselves are
    /// left untouched, as Linux leaves them (it only logs the overflow): a loss marker needs a
    /// sequence number consumed without a record, which the vEVENTQ ring cannot do yet (see the
    /// module documentation).
    pub fn route_overflow(&self, host: &mut impl EventSink) {
        bump(&self.counters.evtq_overflows);
        for v in &self.viommus {
            if v.state.load(Ordering::Acquire) & LIVE != 0 {
                bump(&v.evtq_overflows);
            }
        }
        host.overflow();
    }

    /// A hardware PRI-queue overflow (IRQ path): counted and passed to the host's sink. Lost page
    /// requests are never answered; the device times out its request (PCIe PRI).
    pub fn route_pri_overflow(&self, host: &mut impl PriSink) {
        bump(&self.counters.priq_overflows);
        host.overflow();
    }

    /// An [`EventSink`] and [`PriSink`] for the driver's drains, handing what is not routed to a
    /// guest to `host`.
    pub fn sink<'a, H>(&'a self, host: &'a mut H) -> RouterSink<'a, H, V, S, D, Q, F> {
        RouterSink { router: self, host }
    }
}

/// Takes every fault out of `ring` and answers INVALID every group of `groups` and every
/// group-ending fault that did not fit in the table.
fn drain_invalid<const F: usize>(
    ring: &FaultRing<F>,
    groups: &mut FaultGroups<F>,
    cmds: &impl CommandSink,
    answered: &mut usize,
) -> Result<(), Error> {
    let mut result = Ok(());
    loop {
        groups.pull(ring);
        result = result.and(answer_invalid(groups, None, cmds, answered));
        if ring.is_empty() {
            return result;
        }
    }
}

/// Answers INVALID the groups of `filter` (all if `None`), issuing the commands in batches.
fn answer_invalid<const F: usize>(
    groups: &mut FaultGroups<F>,
    filter: Option<StreamId>,
    cmds: &impl CommandSink,
    answered: &mut usize,
) -> Result<(), Error> {
    let mut batch: heapless::Vec<Command, INVALIDATE_BATCH> = heapless::Vec::new();
    let mut result = Ok(());
    *answered += groups.answer_all_invalid(filter, |cmd| {
        if batch.push(cmd).is_err() {
            result = result.and(cmds.submit(&batch));
            batch.clear();
            batch.push(cmd).ok();
        }
    });
    if !batch.is_empty() {
        result = result.and(cmds.submit(&batch));
    }
    result
}

/// The [`Router`] as the driver's drains see it: [`EventSink`] + [`PriSink`], with the host's
/// own sink behind it.
pub struct RouterSink<
    'a,
    H,
    const V: usize,
    const S: usize,
    const D: usize,
    const Q: usize,
    const F: usize,
> {
    router: &'a Router<V, S, D, Q, F>,
    host: &'a mut H,
}

impl<H: EventSink, const V: usize, const S: usize, const D: usize, const Q: usize, const F: usize>
    EventSink for RouterSink<'_, H, V, S, D, Q, F>
{
    fn event(&mut self, entry: &EvtqEntry) {
        self.router.route_event(entry, self.host);
    }

    fn overflow(&mut self) {
        self.router.route_overflow(self.host);
    }
}

impl<H: PriSink, const V: usize, const S: usize, const D: usize, const Q: usize, const F: usize>
    PriSink for RouterSink<'_, H, V, S, D, Q, F>
{
    fn request(&mut self, entry: &PriqEntry) {
        self.router.route_page_request(entry, self.host);
    }

    fn overflow(&mut self) {
        self.router.route_pri_overflow(self.host);
    }
}
