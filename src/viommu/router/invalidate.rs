//! Guest invalidations (IOMMU_HWPT_INVALIDATE on a vIOMMU with
//! `struct iommu_viommu_arm_smmuv3_invalidate` entries; Linux's `arm_vsmmu_cache_invalidate`),
//! sanitised by [`super::super::invalidate`].

use super::super::invalidate::{
    INVALIDATE_BATCH, InvalidateOutcome, check_entries, invalidate_batches, read_sized,
};
use super::ViommuId;
use crate::command::CmdqEntry;
use crate::error::Error;
use crate::iommufd::{HwptInvalidate, HwptInvalidateDataType, ViommuArmSmmuv3Invalidate};
use crate::smmu::CommandSink;

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> super::Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// Guest invalidation (IOMMU_HWPT_INVALIDATE on the vIOMMU with
    /// `iommu_viommu_arm_smmuv3_invalidate` entries): each command is sanitised
    /// (see [`super::super::invalidate`]; an ATC_INV only for a vDEVICE with ATS enabled, [`super::VDevice::ats_enabled`]) and the batch is issued through `cmds` with one CMD_SYNC.
    /// `entry_num` in the outcome is what Linux writes back.
    pub fn invalidate(
        &self,
        id: ViommuId,
        entries: &[ViommuArmSmmuv3Invalidate],
        cmds: &impl CommandSink,
    ) -> InvalidateOutcome {
        self.invalidate_with(
            id,
            entries.len(),
            |i| {
                entries
                    .get(i)
                    .map_or(CmdqEntry::default(), |e| CmdqEntry(e.cmd))
            },
            cmds,
        )
    }

    /// [`Router::invalidate`](super::Router::invalidate) on the caller's array as bytes: `entry_num` entries of
    /// `entry_len` bytes (the `data_uptr` array of `iommu_hwpt_invalidate`). The whole array is
    /// checked first with Linux's size rules ([`check_entries`]: `entry_len` 0 → EINVAL; an
    /// entry shorter than 16 bytes is zero-filled; a longer one needs a zero tail, else E2BIG
    /// with `entry_num` 0 and nothing issued); an empty array succeeds.
    pub fn invalidate_bytes(
        &self,
        id: ViommuId,
        data: &[u8],
        entry_len: u32,
        entry_num: u32,
        cmds: &impl CommandSink,
    ) -> InvalidateOutcome {
        let entries = match check_entries(data, entry_len, entry_num) {
            Ok(e) => e,
            Err(e) => {
                return InvalidateOutcome {
                    entry_num: 0,
                    result: Err(e),
                };
            }
        };
        self.invalidate_with(id, entries.len(), |i| entries.get(i), cmds)
    }

    /// IOMMU_HWPT_INVALIDATE as the ioctl takes it (`iommufd_hwpt_invalidate`): `arg` is the caller's
    /// `struct iommu_hwpt_invalidate` as bytes (`size`-prefixed: below 32 → EINVAL, a longer
    /// struct needs a zero tail → E2BIG; [`read_sized`]), `data` the entry array `data_uptr`
    /// points to. `hwpt_id` and `data_uptr` are the caller's to resolve (to `id` and `data`).
    /// Checks as Linux: `__reserved` ≠ 0 → EOPNOTSUPP; `data_type` other than
    /// VIOMMU_INVALIDATE_DATA_ARM_SMMUV3 → EINVAL; then [`Router::invalidate_bytes`](super::Router::invalidate_bytes). Once the
    /// struct was read, `entry_num` is written back into `arg` whatever the result (Linux
    /// "always writes entry_num back, even on error").
    pub fn hwpt_invalidate(
        &self,
        id: ViommuId,
        arg: &mut [u8],
        data: &[u8],
        cmds: &impl CommandSink,
    ) -> Result<(), Error> {
        let (img, _) = read_sized::<{ HwptInvalidate::SIZE }>(
            arg,
            HwptInvalidate::MIN_SIZE,
            "iommu_hwpt_invalidate.size",
        )?;
        let a = HwptInvalidate::from_bytes(&img);
        let out = if a.reserved != 0 {
            InvalidateOutcome {
                entry_num: 0,
                result: Err(Error::Reserved {
                    field: "iommu_hwpt_invalidate.__reserved",
                    value: u64::from(a.reserved),
                }),
            }
        } else if a.data_type != HwptInvalidateDataType::ArmSmmuv3.raw() {
            InvalidateOutcome {
                entry_num: 0,
                result: Err(Error::Invalid {
                    field: "iommu_hwpt_invalidate.data_type",
                    value: u64::from(a.data_type),
                }),
            }
        } else {
            self.invalidate_bytes(id, data, a.entry_len, a.entry_num, cmds)
        };
        let at = core::mem::offset_of!(HwptInvalidate, entry_num);
        if let Some(dst) = arg.get_mut(at..at + 4) {
            dst.copy_from_slice(&out.entry_num.to_ne_bytes());
        }
        out.result
    }

    fn invalidate_with(
        &self,
        id: ViommuId,
        n: usize,
        entry: impl Fn(usize) -> CmdqEntry,
        cmds: &impl CommandSink,
    ) -> InvalidateOutcome {
        let r = self.with_ctl(id, |_, c| {
            let mut raw = [CmdqEntry::default(); INVALIDATE_BATCH];
            let mut done = 0u32;
            let mut start = 0usize;
            while start < n {
                let len = (n - start).min(INVALIDATE_BATCH);
                for (i, dst) in raw.iter_mut().take(len).enumerate() {
                    *dst = entry(start + i);
                }
                let out = invalidate_batches(
                    raw.get(..len).unwrap_or(&[]),
                    &c.policy,
                    |vsid, atc| {
                        c.vdevice(vsid)
                            .ok()
                            .filter(|d| !atc || d.ats_enabled())
                            .map(|d| d.psid)
                    },
                    |b| cmds.submit(b),
                );
                done = done.saturating_add(out.entry_num);
                if out.result.is_err() {
                    return Ok(InvalidateOutcome {
                        entry_num: done,
                        result: out.result,
                    });
                }
                start += len;
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
}
