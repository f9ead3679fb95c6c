//! [`Backend`] for today's [`Router`] and the physical driver: the one file that knows the
//! vIOMMU layer's API (`attach_nested`, `invalidate`, `read_vevents`, `vdevices`).

use crate::command::CmdqEntry;
use crate::error::Error;
use crate::features::Features;
use crate::ids::VStreamId;
use crate::iommufd::{VeventqType, ViommuArmSmmuv3Invalidate};
use crate::platform::{DmaMemory, Platform};
use crate::smmu::Smmu;
use crate::viommu::invalidate::INVALIDATE_BATCH;
use crate::viommu::{InvalidateOutcome, Router, ViommuId};

use super::Backend;

/// What a [`RouterBackend`] asks of a [`Router`], whatever its capacities: the backend holds the
/// router as `&dyn RouterOps`, so the capacities stay on the router's own type and do not leak
/// into the backend's (one indirect call per trapped guest operation).
trait RouterOps<P: Platform, D: DmaMemory> {
    fn attach(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        guest_ste: [u64; 2],
        smmu: &Smmu<P, D>,
    ) -> Result<(), Error>;
    fn for_each_vsid(&self, id: ViommuId, f: &mut dyn FnMut(VStreamId));
    fn invalidate(
        &self,
        id: ViommuId,
        entries: &[ViommuArmSmmuv3Invalidate],
        smmu: &Smmu<P, D>,
    ) -> InvalidateOutcome;
    fn read_vevents(&self, id: ViommuId, buf: &mut [u8]) -> Result<usize, Error>;
}

impl<
    P: Platform,
    D: DmaMemory,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> RouterOps<P, D> for Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    fn attach(
        &self,
        id: ViommuId,
        vsid: VStreamId,
        guest_ste: [u64; 2],
        smmu: &Smmu<P, D>,
    ) -> Result<(), Error> {
        self.attach_nested(id, vsid, guest_ste, smmu, |sid, ste| smmu.set_ste(sid, ste))
            .map(|_| ())
    }

    fn for_each_vsid(&self, id: ViommuId, f: &mut dyn FnMut(VStreamId)) {
        if let Ok(devs) = self.vdevices(id) {
            for d in &devs {
                f(d.vsid);
            }
        }
    }

    fn invalidate(
        &self,
        id: ViommuId,
        entries: &[ViommuArmSmmuv3Invalidate],
        smmu: &Smmu<P, D>,
    ) -> InvalidateOutcome {
        Router::invalidate(self, id, entries, smmu)
    }

    fn read_vevents(&self, id: ViommuId, buf: &mut [u8]) -> Result<usize, Error> {
        Router::read_vevents(self, id, VeventqType::ArmSmmuv3, buf)
    }
}

/// One vIOMMU of a [`Router`] on the physical [`Smmu`] it was made for: the [`Backend`] a
/// hypervisor gives a guest's [`VSmmu`](super::VSmmu).
pub struct RouterBackend<'a, P: Platform, D: DmaMemory> {
    router: &'a (dyn RouterOps<P, D> + Sync),
    smmu: &'a Smmu<P, D>,
    id: ViommuId,
}

impl<'a, P: Platform, D: DmaMemory> RouterBackend<'a, P, D> {
    /// The backend of vIOMMU `id` of `router`, whose devices sit behind `smmu`.
    pub fn new<
        const VIOMMUS: usize,
        const ROUTES: usize,
        const VDEVICES: usize,
        const VEVENTS: usize,
        const FAULTS: usize,
    >(
        router: &'a Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>,
        smmu: &'a Smmu<P, D>,
        id: ViommuId,
    ) -> Self {
        Self { router, smmu, id }
    }

    /// The vIOMMU this backend serves.
    pub fn viommu(&self) -> ViommuId {
        self.id
    }
}

impl<P: Platform, D: DmaMemory> Backend for RouterBackend<'_, P, D> {
    fn features(&self) -> Features {
        *self.smmu.features()
    }

    fn attach(&self, vsid: VStreamId, guest_ste: [u64; 2]) -> Result<(), Error> {
        self.router.attach(self.id, vsid, guest_ste, self.smmu)
    }

    fn for_each_vsid(&self, f: &mut dyn FnMut(VStreamId)) {
        self.router.for_each_vsid(self.id, f);
    }

    fn invalidate(&self, cmds: &[CmdqEntry]) -> InvalidateOutcome {
        let mut entries = [ViommuArmSmmuv3Invalidate::default(); INVALIDATE_BATCH];
        let mut done = 0u32;
        for chunk in cmds.chunks(INVALIDATE_BATCH) {
            for (dst, c) in entries.iter_mut().zip(chunk) {
                dst.cmd = c.0;
            }
            let out = self.router.invalidate(
                self.id,
                entries.get(..chunk.len()).unwrap_or(&[]),
                self.smmu,
            );
            done = done.saturating_add(out.entry_num);
            if out.result.is_err() {
                return InvalidateOutcome {
                    entry_num: done,
                    result: out.result,
                };
            }
        }
        InvalidateOutcome {
            entry_num: done,
            result: Ok(()),
        }
    }

    fn read_vevents(&self, buf: &mut [u8]) -> Result<usize, Error> {
        self.router.read_vevents(self.id, buf)
    }
}
