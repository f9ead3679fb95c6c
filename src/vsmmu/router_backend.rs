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

/// One vIOMMU of a [`Router`] on the physical [`Smmu`] it was made for: the [`Backend`] a
/// hypervisor gives a guest's [`VSmmu`](super::VSmmu).
pub struct RouterBackend<
    'a,
    P: Platform,
    D: DmaMemory,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> {
    router: &'a Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>,
    smmu: &'a Smmu<P, D>,
    id: ViommuId,
}

impl<
    'a,
    P: Platform,
    D: DmaMemory,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> RouterBackend<'a, P, D, VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// The backend of vIOMMU `id` of `router`, whose devices sit behind `smmu`.
    pub fn new(
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

impl<
    P: Platform,
    D: DmaMemory,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> Backend for RouterBackend<'_, P, D, VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    fn features(&self) -> Features {
        *self.smmu.features()
    }

    fn attach(&self, vsid: VStreamId, guest_ste: [u64; 2]) -> Result<(), Error> {
        let smmu = self.smmu;
        self.router
            .attach_nested(self.id, vsid, guest_ste, smmu, |sid, ste| {
                smmu.set_ste(sid, ste)
            })
            .map(|_| ())
    }

    fn for_each_vsid(&self, f: &mut dyn FnMut(VStreamId)) {
        if let Ok(devs) = self.router.vdevices(self.id) {
            for d in &devs {
                f(d.vsid);
            }
        }
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
        self.router
            .read_vevents(self.id, VeventqType::ArmSmmuv3, buf)
    }
}
