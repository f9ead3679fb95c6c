//! vDEVICEs (IOMMU_VDEVICE_ALLOC) and nested attach/detach (IOMMU_HWPT_ALLOC with
//! `struct iommu_hwpt_arm_smmuv3` and the attach of the device to it).

use super::super::routing::Route;
use super::super::vste::NestedSte;
use super::{Tenant, VDevice, Viommu, ViommuId};
use crate::error::{Error, Object, Quantity};
use crate::ids::{StreamId, VStreamId};
use crate::smmu::CommandSink;
use crate::ste::Ste;

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> super::Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// Creates a vDEVICE (IOMMU_VDEVICE_ALLOC; Linux's `iommufd_vdevice_alloc_ioctl`): physical
    /// StreamID `psid` of device `dev_id` appears to the guest as `virt_id`. Errors as Linux:
    /// `virt_id` above 32 bits → EINVAL (StreamIDs are 32 bits wide); `psid` outside the SMMU's
    /// SIDSIZE → EINVAL (not a device of this SMMU); the device already has a vDEVICE (in any
    /// vIOMMU, a dying one included) → EEXIST; the vSID is already used in this vIOMMU → EEXIST;
    /// no room → ENOMEM.
    ///
    /// On a TEGRA241_CMDQV vIOMMU use `Router::alloc_vdevice_cmdqv` (EINVAL here).
    pub fn alloc_vdevice(
        &self,
        id: ViommuId,
        dev_id: u32,
        psid: StreamId,
        virt_id: u64,
        ats_capable: bool,
    ) -> Result<VStreamId, Error> {
        self.alloc_vdevice_with(
            id,
            dev_id,
            psid,
            virt_id,
            ats_capable,
            |c, _| c.plain(id),
            |_, _| {},
        )
    }

    /// [`Router::alloc_vdevice`](super::Router::alloc_vdevice) with `bind` run after the checks and before the route is
    /// made, and `unbind` run if the route cannot be made after `bind` succeeded.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn alloc_vdevice_with(
        &self,
        id: ViommuId,
        dev_id: u32,
        psid: StreamId,
        virt_id: u64,
        ats_capable: bool,
        bind: impl FnOnce(&Tenant<VDEVICES, FAULTS>, VStreamId) -> Result<(), Error>,
        unbind: impl FnOnce(&Tenant<VDEVICES, FAULTS>, VStreamId),
    ) -> Result<VStreamId, Error> {
        let vsid = VStreamId(u32::try_from(virt_id).map_err(|_| Error::OutOfRange {
            what: Quantity::VStreamId,
            value: virt_id,
            max: u64::from(u32::MAX),
        })?);
        let _w = self.writers.lock();
        self.with_ctl(id, |_, c| {
            let bits = c.cfg.features.sid_bits;
            if bits < 32 && psid.0 >> bits != 0 {
                return Err(Error::BadStreamId(psid));
            }
            // Every vDEVICE, of a live or a dying vIOMMU, has its route until it is gone.
            if self.routes.get(psid).is_some() || c.vdevices.iter().any(|d| d.psid == psid) {
                return Err(Error::AlreadyExists(Object::Stream(psid)));
            }
            if c.vdevice(vsid).is_ok() {
                return Err(Error::AlreadyExists(Object::VDevice(vsid)));
            }
            if c.vdevices.is_full() {
                return Err(Error::NoMemory);
            }
            bind(c, vsid)?;
            let route = Route {
                viommu: id.index(),
                vsid,
                attached: false,
            };
            if let Err(e) = self.routes.insert(psid, route) {
                unbind(c, vsid);
                return Err(match e {
                    Error::NoSpace => Error::NoMemory,
                    e => e,
                });
            }
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

    /// Destroys a vDEVICE (IOMMU_DESTROY): its route stops being attached, then after a round of
    /// the IRQ path's producer token (no record of the device is in flight any more) every fault
    /// group of the device, pending in the IRQ ring, assembled or delivered, is answered INVALID
    /// through `cmds`, and the route goes (records of the device then go to the host). ENOENT
    /// if the vSID has no vDEVICE here. EBUSY if the IRQ path held its rings too long: the
    /// vDEVICE stays, detached; call again.
    ///
    /// On a TEGRA241_CMDQV vIOMMU use `Router::destroy_vdevice_cmdqv` (EINVAL here).
    pub fn destroy_vdevice(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        cmds: &impl CommandSink,
    ) -> Result<(), Error> {
        self.destroy_vdevice_with(id, vsid, cmds, |c, _| c.plain(id))
    }

    /// [`Router::destroy_vdevice`](super::Router::destroy_vdevice) with `check` run once the vDEVICE is found and before
    /// anything changes (it runs again on a retry).
    pub(super) fn destroy_vdevice_with(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        cmds: &impl CommandSink,
        check: impl FnOnce(&Tenant<VDEVICES, FAULTS>, VStreamId) -> Result<(), Error>,
    ) -> Result<(), Error> {
        let _w = self.writers.lock();
        self.with_ctl(id, |v, c| {
            c.vdevice(vsid)?;
            check(c, vsid)?;
            let (psid, answered) = self.detach(id, v, c, vsid, cmds)?;
            if let Err(e @ Error::InUse(Object::FaultQueue(_))) = answered {
                return Err(e);
            }
            self.routes.remove(psid);
            c.vdevices.retain(|d| d.vsid != vsid);
            answered.map(|_| ())
        })
    }

    /// Marks the route of `psid` not attached.
    fn detach_route(&self, id: ViommuId, psid: StreamId, vsid: VStreamId) -> Result<(), Error> {
        self.routes.update(
            psid,
            Route {
                viommu: id.index(),
                vsid,
                attached: false,
            },
        )
    }

    /// The vDEVICEs of vIOMMU `id` (a copy).
    pub fn vdevices(&self, id: ViommuId) -> Result<heapless::Vec<VDevice, VDEVICES>, Error> {
        self.with_ctl(id, |_, c| Ok(c.vdevices.clone()))
    }

    /// The physical StreamID of vSID `vsid` in vIOMMU `id`.
    pub fn vsid_to_psid(&self, id: ViommuId, vsid: VStreamId) -> Result<StreamId, Error> {
        self.with_ctl(id, |_, c| c.vdevice(vsid).map(|d| d.psid))
    }

    /// Attaches the device with vSID `vsid` to a nested HWPT of this vIOMMU (IOMMU_HWPT_ALLOC
    /// with `struct iommu_hwpt_arm_smmuv3` + attach; Linux's `arm_smmu_attach_dev_nested`):
    /// sanitises the guest STE (EIO for a forbidden one), builds the physical STE from it and the
    /// vIOMMU's stage 2, and has `install` write it for the physical StreamID (the driver's
    /// `set_ste`). Only once `install` succeeded is the route marked attached, so the device's
    /// stage-1 events are forwarded from then on and never for an attach that failed.
    /// Re-attaching first answers the old attachment's fault groups INVALID (as a detach does);
    /// if that fails (EBUSY when the IRQ path held its rings too long, or the error of issuing
    /// the answers) the old attachment stays and the error is returned. An error always means
    /// the device is attached as before. ENOENT without a vDEVICE (Linux needs one before a
    /// nested attach).
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
            let d = *c.vdevice(vsid)?;
            let shcfg = c.cfg.features.attr_types_ovr;
            let ste = nested.physical(&c.cfg.s2, d.ats_capable, shcfg);
            let attached = Route {
                viommu: id.index(),
                vsid,
                attached: true,
            };
            if d.nested.is_some() {
                self.detach_route(id, d.psid, vsid)?;
                if let Err(e) = self.purge_faults(id, v, c, Some(d.psid), cmds) {
                    // The old attachment stays (its groups were taken; EBUSY: nothing was).
                    self.routes.update(d.psid, attached)?;
                    return Err(e);
                }
            }
            if let Err(e) = install(d.psid, &ste) {
                // The old STE (if any) is still installed.
                if d.nested.is_some() {
                    self.routes.update(d.psid, attached)?;
                }
                return Err(e);
            }
            self.routes.update(d.psid, attached)?;
            if let Ok(x) = c.vdevice_mut(vsid) {
                x.nested = Some(nested);
            }
            Ok(ste)
        })
    }

    /// Detaches the device with vSID `vsid` from its nested HWPT: its records stop being
    /// forwarded, and after a round of the IRQ path's producer token its fault groups (pending
    /// in the IRQ ring, assembled or delivered) are answered INVALID (Linux's
    /// `iommufd_auto_response_faults` on detach); none is delivered afterwards. The caller
    /// installs the device's next STE. EBUSY if the IRQ path held its rings too long: the device
    /// is detached already, call again to answer its groups.
    pub fn detach_nested(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        cmds: &impl CommandSink,
    ) -> Result<(), Error> {
        let _w = self.writers.lock();
        self.with_ctl(id, |v, c| self.detach(id, v, c, vsid, cmds)?.1.map(|_| ()))
    }

    /// Detaches the vDEVICE with `vsid`: no nested STE any more, its route not attached, then,
    /// after a round of the producer token, its fault groups answered INVALID. Returns its
    /// physical StreamID and the outcome of the answering (the groups answered, or EBUSY
    /// when the round did not come, or the error of issuing the answers).
    fn detach(
        &self,
        id: ViommuId,
        v: &Viommu<VDEVICES, VEVENTS, FAULTS>,
        c: &mut Tenant<VDEVICES, FAULTS>,
        vsid: VStreamId,
        cmds: &impl CommandSink,
    ) -> Result<(StreamId, Result<usize, Error>), Error> {
        let d = c.vdevice_mut(vsid)?;
        d.nested = None;
        let psid = d.psid;
        self.detach_route(id, psid, vsid)?;
        Ok((psid, self.purge_faults(id, v, c, Some(psid), cmds)))
    }
}
