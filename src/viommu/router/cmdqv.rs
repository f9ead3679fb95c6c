//! The iommufd `TEGRA241_CMDQV` vIOMMU type on a [`Router`] (feature `cmdqv`;
//! `IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV` and `struct iommu_viommu_tegra241_cmdqv` in
//! `include/uapi/linux/iommufd.h`, Linux's `tegra241_cmdqv_init_vintf_user`).
//!
//! A TEGRA241_CMDQV vIOMMU keeps every SMMUv3 vIOMMU feature (nested STEs, trapped
//! invalidation, SMMUv3 vEVENTs) and adds, through the [`Cmdqv`] driver:
//!
//! | iommufd | here |
//! |---|---|
//! | IOMMU_VIOMMU_ALLOC type TEGRA241_CMDQV: a guest VINTF with the S2 VMID | [`Router::alloc_viommu_cmdqv`] |
//! | IOMMU_VDEVICE_ALLOC: + a SID_REPLACE/SID_MATCH pair | [`Router::alloc_vdevice_cmdqv`], [`Router::destroy_vdevice_cmdqv`] |
//! | IOMMU_HW_QUEUE_ALLOC / IOMMU_DESTROY of a HW queue | [`Router::hw_queue_alloc`], [`Router::hw_queue_free`] |
//! | IOMMU_GET_HW_INFO type TEGRA241_CMDQV | [`Router::hw_info_cmdqv`], [`super::hw_info::get_hw_info_cmdqv`] |
//! | IOMMU_DESTROY of the vIOMMU / closing the fd | [`Router::destroy_viommu_cmdqv`], [`Router::teardown_viommu_cmdqv`] |
//! | TEGRA241_CMDQV vEVENTs | [`Router::cmdqv_sink`] for [`Cmdqv::handle_error`] |
//!
//! The CMDQV error interrupt reports each flagged guest VINTF once; [`Router::cmdqv_sink`] finds
//! the VINTF's vIOMMU in a fixed table (one atomic load) and appends the record to that
//! vIOMMU's TEGRA241_CMDQV vEVENTQ: no lock, no allocation, bounded.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::super::sync::Ordering;
use super::{
    HostReason, PRODUCER_SPINS, Routed, Router, TEARDOWN_SPINS, Tenant, ViommuConfig, ViommuId,
    bump,
};
use crate::cmdqv::{Cmdqv, CmdqvEventSink, VintfId};
use crate::error::{Error, Feature, Object, Quantity};
use crate::ids::{PhysAddr, StreamId, VStreamId};
use crate::iommufd::{HwInfoTegra241Cmdqv, HwQueueType, VeventTegra241Cmdqv, ViommuTegra241Cmdqv};
use crate::platform::{DmaMemory, Platform};
use crate::smmu::CommandSink;
use crate::vevent::Reported;

/// A `vintf_owner` word: 0 for none, else the owning [`ViommuId`] + 1 (generations are 48 bits,
/// so the sum never wraps).
const fn owner_word(id: ViommuId) -> u64 {
    id.0 + 1
}

fn vintf_of<const VDEVICES: usize, const FAULTS: usize>(
    c: &Tenant<VDEVICES, FAULTS>,
) -> Result<VintfId, Error> {
    c.vintf
        .map(VintfId)
        .ok_or(Error::Unsupported(Feature::Cmdqv))
}

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// Creates a TEGRA241_CMDQV vIOMMU (IOMMU_VIOMMU_ALLOC with type TEGRA241_CMDQV): the SMMUv3 vIOMMU of [`Router::alloc_viommu`] (same checks and errors) plus a free
    /// guest VINTF of `cmdqv`, enabled with HYP_OWN clear, VMID = the S2 VMID and no queues
    /// ([`Cmdqv::vintf_alloc`]). Returns the driver data Linux writes back
    /// (`iommu_viommu_tegra241_cmdqv`: the VINTF page-0 mmap offset and its 64 KiB length).
    ///
    /// # Errors
    /// Those of [`Router::alloc_viommu`], then those of [`Cmdqv::vintf_alloc`] (`ENODEV` before
    /// CMDQV reset, `ENOSPC` when every VINTF is taken, a timeout); nothing is left behind.
    pub fn alloc_viommu_cmdqv<P: Platform, A: DmaMemory>(
        &self,
        cfg: ViommuConfig,
        cmdqv: &Cmdqv<P, A>,
    ) -> Result<(ViommuId, ViommuTegra241Cmdqv), Error> {
        let id = self.alloc_viommu(cfg)?;
        let g = match cmdqv.vintf_alloc(cfg.s2.vmid) {
            Ok(g) => g,
            Err(e) => {
                // Nothing hangs off the new vIOMMU yet.
                self.destroy_viommu(id)?;
                return Err(e);
            }
        };
        let owner = self
            .vintf_owner
            .get(usize::from(g.id.0))
            .ok_or(Error::OutOfRange {
                what: Quantity::Index,
                value: u64::from(g.id.0),
                max: (crate::cmdqv::regs::MAX_VINTFS - 1) as u64,
            });
        let set = owner.and_then(|o| {
            self.with_ctl(id, |_, c| {
                c.vintf = Some(g.id.0);
                o.store(owner_word(id), Ordering::Release);
                Ok(())
            })
        });
        if let Err(e) = set {
            let _ = cmdqv.vintf_free(g.id);
            let _ = self.destroy_viommu(id);
            return Err(e);
        }
        Ok((id, g.page0.to_uapi()))
    }

    /// The guest VINTF of TEGRA241_CMDQV vIOMMU `id`; EOPNOTSUPP for a plain SMMUv3 vIOMMU.
    pub fn vintf(&self, id: ViommuId) -> Result<VintfId, Error> {
        self.with_ctl(id, |_, c| vintf_of(c))
    }

    /// Creates a vDEVICE on a TEGRA241_CMDQV vIOMMU (IOMMU_VDEVICE_ALLOC): the
    /// route of [`Router::alloc_vdevice`] plus a SID_REPLACE/SID_MATCH pair of the vIOMMU's
    /// VINTF ([`Cmdqv::vdevice_bind`]), so that the guest's own queues rewrite `virt_id` to
    /// `psid`. The pair is written after the core checks and released again if the route
    /// cannot be made.
    ///
    /// # Errors
    /// Those of [`Router::alloc_vdevice`]; EOPNOTSUPP on a plain SMMUv3 vIOMMU; those of
    /// [`Cmdqv::vdevice_bind`] (EINVAL for a vSID wider than SID_MATCH, ENOSPC when every pair
    /// is taken).
    #[allow(clippy::too_many_arguments)]
    pub fn alloc_vdevice_cmdqv<P: Platform, A: DmaMemory>(
        &self,
        id: ViommuId,
        dev_id: u32,
        psid: StreamId,
        virt_id: u64,
        ats_capable: bool,
        cmdqv: &Cmdqv<P, A>,
    ) -> Result<VStreamId, Error> {
        self.alloc_vdevice_with(
            id,
            dev_id,
            psid,
            virt_id,
            ats_capable,
            |c, vsid| cmdqv.vdevice_bind(vintf_of(c)?, vsid, psid).map(|_| ()),
            |c, vsid| {
                if let Ok(v) = vintf_of(c) {
                    let _ = cmdqv.vdevice_unbind(v, vsid);
                }
            },
        )
    }

    /// Destroys a vDEVICE of a TEGRA241_CMDQV vIOMMU: its SID pair is cleared
    /// ([`Cmdqv::vdevice_unbind`]; already cleared by a refused earlier attempt is fine), then
    /// as [`Router::destroy_vdevice`].
    pub fn destroy_vdevice_cmdqv<P: Platform, A: DmaMemory>(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        cmds: &impl CommandSink,
        cmdqv: &Cmdqv<P, A>,
    ) -> Result<(), Error> {
        self.destroy_vdevice_with(id, vsid, cmds, |c, vsid| {
            match cmdqv.vdevice_unbind(vintf_of(c)?, vsid) {
                Ok(()) | Err(Error::NoSuch(Object::VDevice(_) | Object::Vintf(_))) => Ok(()),
                Err(e) => Err(e),
            }
        })
    }

    /// Allocates HW queue `index` of TEGRA241_CMDQV vIOMMU `id` (IOMMU_HW_QUEUE_ALLOC,
    /// `struct iommu_hw_queue_alloc`) on the `length` bytes at host physical address `base` (the hypervisor
    /// resolved the guest's `nesting_parent_iova` through the VM's stage 2; the pages must be
    /// physically contiguous and stay so until the queue is freed).
    ///
    /// # Errors
    /// The core's checks first, as Linux: `length` 0 → EINVAL; `base + length − 1` overflows →
    /// EOVERFLOW; type DEFAULT → EOPNOTSUPP ([`Error::Reserved`]), a plain SMMUv3 vIOMMU →
    /// EOPNOTSUPP. Then the Tegra241 rules
    /// of [`Cmdqv::hw_queue_alloc`]: `index` beyond the VINTF's queues, a bad length or base →
    /// EINVAL; `index` taken → EEXIST; `index − 1` missing → EIO.
    #[allow(clippy::too_many_arguments)]
    pub fn hw_queue_alloc<P: Platform, A: DmaMemory>(
        &self,
        id: ViommuId,
        ty: HwQueueType,
        index: u32,
        base: PhysAddr,
        length: u64,
        cmdqv: &Cmdqv<P, A>,
        main: &impl CommandSink,
    ) -> Result<(), Error> {
        cmdqv.check_hw_queue_span(base, length)?;
        if ty != HwQueueType::Tegra241Cmdqv {
            // IOMMU_HW_QUEUE_TYPE_DEFAULT: a reserved type, EOPNOTSUPP as Linux answers it.
            return Err(Error::Reserved {
                field: "iommu_hw_queue_alloc.type",
                value: u64::from(ty.raw()),
            });
        }
        self.with_ctl(id, |_, c| {
            cmdqv.hw_queue_alloc(vintf_of(c)?, index, base, length, main)
        })
    }

    /// Destroys HW queue `index` of TEGRA241_CMDQV vIOMMU `id` (IOMMU_DESTROY of the HW queue):
    /// the queue is disabled, a CMD_SYNC goes through `main`, and it is unmapped. EBUSY while
    /// queue `index + 1` exists (descending order, as Linux's `tegra241_vintf_destroy_lvcmdq`
    /// requires); ENOENT if it does not exist.
    pub fn hw_queue_free<P: Platform, A: DmaMemory>(
        &self,
        id: ViommuId,
        index: u32,
        cmdqv: &Cmdqv<P, A>,
        main: &impl CommandSink,
    ) -> Result<(), Error> {
        self.with_ctl(id, |_, c| cmdqv.hw_queue_free(vintf_of(c)?, index, main))
    }

    /// The HW queues of TEGRA241_CMDQV vIOMMU `id` (bit *l* = logical queue *l*).
    pub fn hw_queues<P: Platform, A: DmaMemory>(
        &self,
        id: ViommuId,
        cmdqv: &Cmdqv<P, A>,
    ) -> Result<u128, Error> {
        self.with_ctl(id, |_, c| cmdqv.hw_queues(vintf_of(c)?))
    }

    /// The TEGRA241_CMDQV HW info blob for the guest of vIOMMU `id` (IOMMU_GET_HW_INFO with
    /// INPUT_TYPE and type TEGRA241_CMDQV, `struct iommu_hw_info_tegra241_cmdqv`):
    /// [`Cmdqv::hw_info`]. EOPNOTSUPP for a
    /// plain SMMUv3 vIOMMU. The VMM reports NUM_VINTF_LOG2 = 0 to its guest.
    pub fn hw_info_cmdqv<P: Platform, A: DmaMemory>(
        &self,
        id: ViommuId,
        cmdqv: &Cmdqv<P, A>,
    ) -> Result<HwInfoTegra241Cmdqv, Error> {
        self.with_ctl(id, |_, c| vintf_of(c).map(|_| cmdqv.hw_info()))
    }

    /// Destroys a TEGRA241_CMDQV vIOMMU with no children left (IOMMU_DESTROY): EBUSY while it
    /// has a vDEVICE, a vEVENTQ, a fault queue or a HW queue; then its VINTF is disabled and
    /// released ([`Cmdqv::vintf_free`]; a timeout keeps the vIOMMU). EOPNOTSUPP for a plain
    /// SMMUv3 vIOMMU.
    pub fn destroy_viommu_cmdqv<P: Platform, A: DmaMemory>(
        &self,
        id: ViommuId,
        cmdqv: &Cmdqv<P, A>,
    ) -> Result<(), Error> {
        self.destroy_viommu_with(id, |c| {
            // Refused (EBUSY) while the VINTF has HW queues.
            let vintf = vintf_of(c)?;
            cmdqv.vintf_free(vintf)?;
            self.clear_owner(vintf, id);
            Ok(())
        })
    }

    /// Releases everything of a TEGRA241_CMDQV vIOMMU at once, as closing the iommufd does:
    /// CMDQV errors of its VINTF stop reaching it, then everything
    /// [`Router::teardown_viommu`] does, then its HW queues are freed from the highest index
    /// down (each with a CMD_SYNC through `cmds`; Linux destroys HW queues before their
    /// vIOMMU, highest index first), its vDEVICEs' SID pairs are cleared, and its VINTF is
    /// disabled and released. Returns the number of fault groups answered. On an error (a
    /// producer still inside a ring, a queue or the VINTF that does not disable, a CMD_SYNC that
    /// fails) the vIOMMU is dying with its devices still reserved, and a second call resumes.
    /// EOPNOTSUPP for a plain SMMUv3 vIOMMU.
    pub fn teardown_viommu_cmdqv<P: Platform, A: DmaMemory>(
        &self,
        id: ViommuId,
        cmds: &impl CommandSink,
        cmdqv: &Cmdqv<P, A>,
    ) -> Result<usize, Error> {
        self.teardown_viommu_with(
            id,
            cmds,
            |c| {
                let vintf = vintf_of(c)?;
                self.clear_owner(vintf, id);
                Ok(())
            },
            |c| {
                let vintf = vintf_of(c)?;
                let queues = cmdqv.hw_queues(vintf)?;
                for l in (0..128u32).rev() {
                    if queues & (1u128 << l) != 0 {
                        cmdqv.hw_queue_free(vintf, l, cmds)?;
                    }
                }
                for d in &c.vdevices {
                    match cmdqv.vdevice_unbind(vintf, d.vsid) {
                        Ok(()) | Err(Error::NoSuch(Object::VDevice(_) | Object::Vintf(_))) => {}
                        Err(e) => return Err(e),
                    }
                }
                cmdqv.vintf_free(vintf)
            },
        )
    }

    /// Forgets that `vintf` belongs to `id` (no more CMDQV records reach it).
    fn clear_owner(&self, vintf: VintfId, id: ViommuId) {
        if let Some(o) = self.vintf_owner.get(usize::from(vintf.0)) {
            let _ = o.compare_exchange(owner_word(id), 0, Ordering::AcqRel, Ordering::Acquire);
        }
    }

    /// One round of the CMDQV producer token (a grace period for the TEGRA241_CMDQV vEVENTQs).
    pub(super) fn cmdqv_round(&self) -> bool {
        self.cmdqv_producer.round(TEARDOWN_SPINS)
    }

    /// Reports a Tegra241 CMDQV error map to vIOMMU `id`'s CMDQV vEVENTQ (the CMDQV error
    /// interrupt path; `struct iommu_vevent_tegra241_cmdqv`). IRQ-path safe: the CMDQV
    /// vEVENTQs have their own producer token (waited for at most [`PRODUCER_SPINS`] rounds,
    /// else [`HostReason::Contended`]). Counted in the router's and the vIOMMU's counters like
    /// SMMUv3 records. [`Router::cmdqv_sink`] finds `id` from the VINTF.
    pub fn report_cmdqv(&self, id: ViommuId, payload: &VeventTegra241Cmdqv) -> Routed {
        let Some(()) = self.cmdqv_producer.enter(PRODUCER_SPINS, &mut |_| {}) else {
            self.contended
                .fetch_add(1, core::sync::atomic::Ordering::Relaxed);
            return Routed::Host(HostReason::Contended);
        };
        // SAFETY: we hold `self.cmdqv_producer` until the `leave` below.
        let routed = unsafe { self.report_cmdqv_held(id, payload) };
        if let Routed::Host(_) = routed {
            bump(&self.cmdqv_counters.host_other);
        }
        self.cmdqv_producer.leave(&mut |_| {});
        routed
    }

    /// # Safety
    /// The caller holds `self.cmdqv_producer`.
    unsafe fn report_cmdqv_held(&self, id: ViommuId, payload: &VeventTegra241Cmdqv) -> Routed {
        let viommu = id.index();
        let Some(v) = self.viommus.get(usize::from(viommu)) else {
            return Routed::Host(HostReason::Stale);
        };
        if !v.accepts(id.generation()) {
            return Routed::Host(HostReason::Stale);
        }
        // SAFETY: we hold `self.cmdqv_producer` (caller's promise), whose round every close of
        // the CMDQV vEVENTQ gate waits for. A queue opened for a later vIOMMU of the slot is
        // told apart by its tag.
        let r = unsafe {
            v.veventq_cmdqv
                .read_held(|tag, q| (tag == id.generation()).then(|| q.report(payload)))
        };
        let c = &self.cmdqv_counters;
        let vc = &v.cmdqv_counters;
        match r {
            Some(Some(Reported::Queued { sequence })) => {
                bump(&c.forwarded);
                bump(&vc.forwarded);
                Routed::Forwarded { viommu, sequence }
            }
            Some(Some(Reported::Dropped { .. })) => {
                bump(&c.dropped_full);
                bump(&vc.dropped_full);
                Routed::DroppedFull { viommu }
            }
            Some(None) => Routed::Host(HostReason::Stale),
            None => {
                bump(&c.dropped_no_veventq);
                bump(&vc.dropped_no_veventq);
                Routed::DroppedNoVeventq { viommu }
            }
        }
    }

    /// Routes one CMDQV error record of guest VINTF `vintf` (IRQ path: no lock, no allocation,
    /// bounded): to the TEGRA241_CMDQV vEVENTQ of the vIOMMU owning the VINTF
    /// ([`Router::report_cmdqv`]), dropped and counted if it has none. A VINTF no vIOMMU owns
    /// gives [`HostReason::Unassigned`] (counted as a host record).
    pub fn route_cmdqv_error(&self, vintf: VintfId, event: &VeventTegra241Cmdqv) -> Routed {
        let owner = self
            .vintf_owner
            .get(usize::from(vintf.0))
            .map_or(0, |o| o.load(Ordering::Acquire));
        if owner == 0 {
            if self
                .cmdqv_producer
                .enter(PRODUCER_SPINS, &mut |_| {})
                .is_some()
            {
                bump(&self.cmdqv_counters.host_unassigned);
                self.cmdqv_producer.leave(&mut |_| {});
            }
            return Routed::Host(HostReason::Unassigned);
        }
        self.report_cmdqv(ViommuId(owner - 1), event)
    }

    /// The [`CmdqvEventSink`] for [`Cmdqv::handle_error`]: each guest VINTF's record goes to its
    /// vIOMMU's TEGRA241_CMDQV vEVENTQ ([`Router::route_cmdqv_error`]).
    pub fn cmdqv_sink(&self) -> impl CmdqvEventSink + '_ {
        CmdqvRouterSink { router: self }
    }
}

/// The [`Router`] as the CMDQV error interrupt sees it (see [`Router::cmdqv_sink`]).
struct CmdqvRouterSink<
    'a,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> {
    router: &'a Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>,
}

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> CmdqvEventSink for CmdqvRouterSink<'_, VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    fn report(&self, vintf: VintfId, event: VeventTegra241Cmdqv) {
        self.router.route_cmdqv_error(vintf, &event);
    }
}
