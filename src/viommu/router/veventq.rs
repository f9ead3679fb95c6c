//! vEVENTQs: allocation, destruction and the `read()` of their fd (IOMMU_VEVENTQ_ALLOC,
//! `struct iommu_veventq_alloc`; Documentation/userspace-api/iommufd.rst, "IOMMUFD_OBJ_VEVENTQ").

use super::{TEARDOWN_SPINS, ViommuId};
use crate::error::{Error, Object};
use crate::iommufd::VeventqType;
use crate::vevent::VeventQueue;

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> super::Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// Creates the vEVENTQ of type `ty` (IOMMU_VEVENTQ_ALLOC; Linux's
    /// `iommufd_veventq_alloc`): DEFAULT → EOPNOTSUPP, depth 0 → EINVAL, a depth above `VEVENTS` →
    /// ENOMEM, a second queue of one type → EEXIST. A new queue starts at sequence 0. Without
    /// feature `cmdqv` the TEGRA241_CMDQV type → EOPNOTSUPP.
    pub fn alloc_veventq(&self, id: ViommuId, ty: VeventqType, depth: u32) -> Result<(), Error> {
        self.with_ctl(id, |v, c| match ty {
            VeventqType::Default => Err(Error::Reserved {
                field: "iommu_veventq_alloc.type",
                value: u64::from(ty.raw()),
            }),
            VeventqType::ArmSmmuv3 => v
                .veventq
                .open(VeventQueue::new(depth)?, c.generation)
                .map_err(|_| Error::AlreadyExists(Object::Veventq(ty.raw()))),
            #[cfg(feature = "cmdqv")]
            VeventqType::Tegra241Cmdqv => v
                .veventq_cmdqv
                .open(VeventQueue::new(depth)?, c.generation)
                .map_err(|_| Error::AlreadyExists(Object::Veventq(ty.raw()))),
            #[cfg(not(feature = "cmdqv"))]
            VeventqType::Tegra241Cmdqv => Err(Error::Unsupported(crate::error::Feature::Cmdqv)),
        })
    }

    /// Destroys the vEVENTQ of type `ty`, dropping its unread records, once no reader is inside
    /// and a round of its producer token passed (bounded: [`crate::Error::InUse`] otherwise, and
    /// nothing enters it meanwhile; call again). ENOENT if there is none.
    pub fn destroy_veventq(&self, id: ViommuId, ty: VeventqType) -> Result<(), Error> {
        self.with_ctl(id, |v, _| {
            let taken = match ty {
                VeventqType::ArmSmmuv3 => v
                    .veventq
                    .close(TEARDOWN_SPINS, || self.producer_round())
                    .map(|q| q.is_some()),
                #[cfg(feature = "cmdqv")]
                VeventqType::Tegra241Cmdqv => v
                    .veventq_cmdqv
                    .close(TEARDOWN_SPINS, || self.cmdqv_round())
                    .map(|q| q.is_some()),
                _ => Ok(false),
            };
            match taken {
                Ok(true) => Ok(()),
                Ok(false) => Err(Error::NoSuch(Object::Veventq(ty.raw()))),
                Err(()) => Err(Error::InUse(Object::Veventq(ty.raw()))),
            }
        })
    }

    /// Reads vEVENTQ records exactly as Linux's vEVENTQ `read()` (`iommufd_veventq_fops_read`):
    /// whole records, header + payload, a trailing LOST_EVENTS header if events were dropped; 0
    /// when empty or when the first record does not fit. ENOENT if vIOMMU `id` (this very one,
    /// not a later vIOMMU of its slot) has no queue of that type.
    ///
    /// Never waits and takes no lock, so the IRQ path may call it (right after a drain). The
    /// queue has one consumer: a read while another read of the same queue is in progress
    /// returns EBUSY and takes nothing.
    pub fn read_vevents(
        &self,
        id: ViommuId,
        ty: VeventqType,
        buf: &mut [u8],
    ) -> Result<usize, Error> {
        let v = self.slot(id)?;
        let mine = |tag: u64| tag == id.generation() && v.accepts(id.generation());
        let absent = || match v.accepts(id.generation()) {
            true => Error::NoSuch(Object::Veventq(ty.raw())),
            false => Error::NoSuch(Object::Viommu(id)),
        };
        let r = match ty {
            VeventqType::ArmSmmuv3 => v.veventq.read(|tag, q| {
                if mine(tag) {
                    q.read(buf)
                } else {
                    Err(absent())
                }
            }),
            #[cfg(feature = "cmdqv")]
            VeventqType::Tegra241Cmdqv => v.veventq_cmdqv.read(|tag, q| {
                if mine(tag) {
                    q.read(buf)
                } else {
                    Err(absent())
                }
            }),
            _ => None,
        };
        r.unwrap_or_else(|| Err(absent()))
    }

    /// Whether a read of the vEVENTQ would return something (POLLIN).
    pub fn veventq_readable(&self, id: ViommuId, ty: VeventqType) -> bool {
        let Ok(v) = self.slot(id) else {
            return false;
        };
        let mine = |tag: u64| tag == id.generation() && v.accepts(id.generation());
        match ty {
            VeventqType::ArmSmmuv3 => v.veventq.read(|tag, q| mine(tag) && q.is_readable()),
            #[cfg(feature = "cmdqv")]
            VeventqType::Tegra241Cmdqv => {
                v.veventq_cmdqv.read(|tag, q| mine(tag) && q.is_readable())
            }
            _ => None,
        }
        .unwrap_or(false)
    }
}
