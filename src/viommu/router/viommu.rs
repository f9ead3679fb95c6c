//! vIOMMU allocation, destruction and teardown (IOMMU_VIOMMU_ALLOC, IOMMU_DESTROY, closing the
//! iommufd), and its HW info.

use super::super::gate::Held;
use super::super::invalidate::GuestCmdPolicy;
use super::super::iopf::FaultGroups;
use super::super::routing::Route;
use super::super::sync::Ordering;
use super::{GENERATION_MASK, LIVE, TEARDOWN_SPINS, Tenant, Viommu, ViommuConfig, ViommuId};
use crate::error::{Error, Feature, Object, Quantity};
use crate::ids::Vmid;
use crate::iommufd::HwInfoArmSmmuv3;
use crate::smmu::CommandSink;

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> super::Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// Creates a vIOMMU (IOMMU_VIOMMU_ALLOC; Linux's `arm_vsmmu_alloc`). Errors as Linux: no
    /// nesting (IDR0.S1P and S2P) → EOPNOTSUPP; neither coherent devices nor S2FWB →
    /// EOPNOTSUPP; a VMID of 0 or wider than IDR0.VMID16 allows → EINVAL; no free slot →
    /// ENOMEM. A VMID already used by a vIOMMU on another stage 2 → EEXIST: the VMID tags the
    /// TLB entries of one stage 2 (IHI 0070 §3.9.1), so two vIOMMUs share it only when they sit
    /// on the same nesting parent, as in Linux where the VMID belongs to the S2 domain.
    pub fn alloc_viommu(&self, cfg: ViommuConfig) -> Result<ViommuId, Error> {
        if !cfg.features.nesting() {
            return Err(Error::Unsupported(Feature::Nesting));
        }
        if !cfg.coherent_devices && !cfg.features.fwb {
            return Err(Error::Unsupported(Feature::S2Fwb));
        }
        let vmid = cfg.s2.vmid;
        if vmid.0 == 0 {
            return Err(Error::TooSmall {
                what: Quantity::Vmid,
                value: 0,
                min: 1,
            });
        }
        if Vmid::new(vmid.0, cfg.features.vmid_bits()).is_none() {
            return Err(Error::OutOfRange {
                what: Quantity::Vmid,
                value: u64::from(vmid.0),
                max: (1 << cfg.features.vmid_bits()) - 1,
            });
        }
        let _w = self.writers.lock();
        let mut free = None;
        for (i, v) in self.viommus.iter().enumerate() {
            match v.tenant.lock().as_ref() {
                Some(c) if c.cfg.s2.vmid == vmid && c.cfg.s2 != cfg.s2 => {
                    return Err(Error::AlreadyExists(Object::Vmid(vmid.0)));
                }
                Some(_) => {}
                None => free = free.or(Some((i, v))),
            }
        }
        let (i, v) = free.ok_or(Error::NoMemory)?;
        let mut tenant = v.tenant.lock();
        let generation = match ((v.state.load(Ordering::Acquire) >> 1) + 1) & GENERATION_MASK {
            0 => 1,
            g => g,
        };
        *tenant = Held::Full(Tenant {
            generation,
            dying: false,
            cfg,
            policy: GuestCmdPolicy::new(vmid, &cfg.features),
            vdevices: heapless::Vec::new(),
            groups: FaultGroups::new(),
            vintf: None,
        });
        v.counters.reset();
        #[cfg(feature = "cmdqv")]
        v.cmdqv_counters.reset();
        v.state.store((generation << 1) | LIVE, Ordering::Release);
        Ok(ViommuId::new(i as u16, generation))
    }

    /// Destroys a vIOMMU that has no children left (IOMMU_DESTROY): EBUSY while it has a
    /// vDEVICE, a vEVENTQ or a fault queue. A TEGRA241_CMDQV vIOMMU is destroyed with
    /// `Router::destroy_viommu_cmdqv` (EINVAL here).
    pub fn destroy_viommu(&self, id: ViommuId) -> Result<(), Error> {
        self.destroy_viommu_with(id, |c| c.plain(id))
    }

    /// [`Router::destroy_viommu`](super::Router::destroy_viommu) with `release` run after the busy checks and before the slot
    /// is freed (an error keeps the vIOMMU).
    pub(super) fn destroy_viommu_with(
        &self,
        id: ViommuId,
        release: impl FnOnce(&Tenant<VDEVICES, FAULTS>) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let _w = self.writers.lock();
        let v = self.slot(id)?;
        let mut guard = v.tenant.lock();
        let c = match guard.as_ref() {
            Some(c) if c.generation == id.generation() && !c.dying => c,
            _ => return Err(Error::NoSuch(Object::Viommu(id))),
        };
        let busy = !c.vdevices.is_empty() || v.veventq.is_open() || v.faults.is_open();
        #[cfg(feature = "cmdqv")]
        let busy = busy || v.veventq_cmdqv.is_open();
        if busy {
            return Err(Error::InUse(Object::Viommu(id)));
        }
        // A ring whose destruction was refused (EBUSY) is still closed with its value: finish.
        self.close_rings(id, v)?;
        release(c)?;
        v.state.store(id.generation() << 1, Ordering::Release);
        *guard = Held::Empty;
        Ok(())
    }

    /// Closes every ring of `v` and drops what they hold, once no reader or producer is inside
    /// (bounded): EBUSY otherwise, the rings then stay closed and a retry finishes.
    fn close_rings(
        &self,
        id: ViommuId,
        v: &Viommu<VDEVICES, VEVENTS, FAULTS>,
    ) -> Result<(), Error> {
        let mut ok = v
            .veventq
            .close(TEARDOWN_SPINS, || self.producer_round())
            .is_ok();
        #[cfg(feature = "cmdqv")]
        {
            ok &= v
                .veventq_cmdqv
                .close(TEARDOWN_SPINS, || self.cmdqv_round())
                .is_ok();
        }
        ok &= v
            .faults
            .close(TEARDOWN_SPINS, || self.producer_round())
            .is_ok();
        if ok {
            Ok(())
        } else {
            Err(Error::InUse(Object::Viommu(id)))
        }
    }

    /// Releases everything of a vIOMMU at once, as closing the iommufd does: the IRQ path stops
    /// delivering to it, its devices' routes stop being attached, every fault group (pending in
    /// the IRQ ring, assembled or delivered) is answered INVALID through `cmds`, its rings are
    /// taken away once no IRQ-path producer or reader is inside them (bounded wait,
    /// [`TEARDOWN_SPINS`]), and the routes go. The STEs of its devices are the caller's to
    /// replace. Returns the number of fault groups answered.
    ///
    /// Every step can be retried: on an error ([`Error::InUse`] when a producer or reader did not
    /// leave in time, or the error of a failed release step) the vIOMMU is dying, nothing
    /// reaches it and no call but this one reaches it, its devices stay reserved (no other
    /// vIOMMU can take them), and calling again resumes. If issuing the answers fails, the
    /// teardown still completes and returns that error.
    ///
    /// A TEGRA241_CMDQV vIOMMU is torn down with `Router::teardown_viommu_cmdqv` (EINVAL here).
    pub fn teardown_viommu(&self, id: ViommuId, cmds: &impl CommandSink) -> Result<usize, Error> {
        self.teardown_viommu_with(id, cmds, |c| c.plain(id), |_| Ok(()))
    }

    /// [`Router::teardown_viommu`](super::Router::teardown_viommu) with `check` run first on every attempt (an error on the
    /// first attempt leaves everything as it was) and `release` run once the rings are gone and
    /// before the routes and the slot are freed (an error leaves the vIOMMU dying; calling
    /// again resumes).
    pub(super) fn teardown_viommu_with(
        &self,
        id: ViommuId,
        cmds: &impl CommandSink,
        check: impl FnOnce(&Tenant<VDEVICES, FAULTS>) -> Result<(), Error>,
        release: impl FnOnce(&mut Tenant<VDEVICES, FAULTS>) -> Result<(), Error>,
    ) -> Result<usize, Error> {
        let _w = self.writers.lock();
        let v = self.slot(id)?;
        let mut guard = v.tenant.lock();
        let ctl = match guard.as_mut() {
            Some(c) if c.generation == id.generation() => c,
            _ => return Err(Error::NoSuch(Object::Viommu(id))),
        };
        check(ctl)?;
        // 1. Nothing but teardown reaches the vIOMMU any more.
        ctl.dying = true;
        v.state.store(id.generation() << 1, Ordering::Release);
        // 2. Routes stay (the devices stay reserved) but are no longer attached.
        for d in &ctl.vdevices {
            let detached = Route {
                viommu: id.index(),
                vsid: d.vsid,
                attached: false,
            };
            if self
                .routes
                .get(d.psid)
                .is_some_and(|r| r.viommu == id.index())
            {
                self.routes.update(d.psid, detached)?;
            }
        }
        // 3. Faults: after a producer round, nothing more arrives; answer everything.
        let answered = self.purge_faults(id, v, ctl, None, cmds);
        if let Err(e @ Error::InUse(Object::FaultQueue(_))) = answered {
            return Err(e);
        }
        // 4. Rings.
        self.close_rings(id, v)?;
        // 5. What the vIOMMU type holds besides (CMDQV queues, SID pairs, VINTF).
        release(ctl)?;
        // 6. Routes and slot.
        for d in &ctl.vdevices {
            if self
                .routes
                .get(d.psid)
                .is_some_and(|r| r.viommu == id.index())
            {
                self.routes.remove(d.psid);
            }
        }
        *guard = Held::Empty;
        answered
    }

    /// The HW info blob for the guest (IOMMU_GET_HW_INFO, `struct iommu_hw_info_arm_smmuv3`):
    /// the SMMU's raw ID registers, as Linux's `arm_smmu_hw_info` reports them, plus the errata
    /// flag if the board needs it. See [`super::super::hw_info`].
    pub fn hw_info(&self, id: ViommuId) -> Result<HwInfoArmSmmuv3, Error> {
        self.with_ctl(id, |_, c| {
            Ok(super::super::hw_info::arm_smmuv3_info(
                &c.cfg.features.raw,
                c.cfg.repeat_tlbi_cfgi,
            ))
        })
    }

    /// The vIOMMU's VMID.
    pub fn vmid(&self, id: ViommuId) -> Result<Vmid, Error> {
        self.with_ctl(id, |_, c| Ok(c.cfg.s2.vmid))
    }
}
