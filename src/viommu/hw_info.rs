//! HW info for a guest: `IOMMU_GET_HW_INFO` with the SMMUv3 blob (IOMMU_GET_HW_INFO in `include/uapi/linux/iommufd.h`).
//!
//! Linux reports the SMMU's ID registers raw: it copies SMMU_IDR0..IDR5, IIDR and AIDR into
//! `struct iommu_hw_info_arm_smmuv3` without masking any field, and sets flags bit 0
//! (`ERRATA_REPEAT_TLBI_CFGI`) when the SMMU needs every TLBI/CFGI issued twice. Which fields a
//! VMM may rely on is the VMM's business (the uAPI's list, [`VMM_IDR_FIELDS`]); so the library
//! reports exactly what Linux reports, and offers the list as a mask for a VMM that wants it.

use crate::error::Error;
use crate::features::IdRegs;
use crate::iommufd::{
    HwCapabilities, HwInfo, HwInfoArmSmmuv3, HwInfoFlags, HwInfoTegra241Cmdqv, HwInfoType,
};
use crate::regs::{IDR0, IDR1, IDR3, IDR5};

/// `IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI`: the host SMMU needs each TLBI and CFGI
/// repeated (Linux's `tegra241-cmdqv.c`, Linux's `arm_smmu_hw_info`).
pub const ERRATA_REPEAT_TLBI_CFGI: u32 = 1 << 0;

/// The IDR fields the uAPI tells a VMM it may use (IOMMU_GET_HW_INFO in `include/uapi/linux/iommufd.h`), as masks over IDR0..IDR5:
/// IDR0 ST_LEVEL, TERM_MODEL, STALL_MODEL, TTENDIAN, CD2L, ASID16, TTF; IDR1 SIDSIZE, SSIDSIZE;
/// IDR3 BBML, RIL; IDR5 VAX, GRAN64K/16K/4K and OAS (which QEMU reads).
pub const VMM_IDR_FIELDS: [u32; 6] = [
    IDR0::ST_LEVEL::SET.value
        | IDR0::TERM_MODEL::SET.value
        | IDR0::STALL_MODEL::SET.value
        | IDR0::TTENDIAN::SET.value
        | IDR0::CD2L::SET.value
        | IDR0::ASID16::SET.value
        | IDR0::TTF::SET.value,
    IDR1::SSIDSIZE::SET.value | IDR1::SIDSIZE::SET.value,
    0,
    IDR3::BBML::SET.value | IDR3::RIL::SET.value,
    0,
    IDR5::VAX::SET.value
        | IDR5::GRAN64K::SET.value
        | IDR5::GRAN16K::SET.value
        | IDR5::GRAN4K::SET.value
        | IDR5::OAS::SET.value,
];

/// The SMMUv3 HW info blob, as Linux fills it: raw registers, flags = the errata bit if the
/// board needs it.
pub fn arm_smmuv3_info(regs: &IdRegs, repeat_tlbi_cfgi: bool) -> HwInfoArmSmmuv3 {
    HwInfoArmSmmuv3 {
        flags: if repeat_tlbi_cfgi {
            ERRATA_REPEAT_TLBI_CFGI
        } else {
            0
        },
        reserved: 0,
        idr: [
            regs.idr0, regs.idr1, regs.idr2, regs.idr3, regs.idr4, regs.idr5,
        ],
        iidr: regs.iidr,
        aidr: regs.aidr,
    }
}

/// `info` with only [`VMM_IDR_FIELDS`] kept in the IDRs (not something Linux does; for a VMM
/// that wants to be sure it emulates nothing it was not meant to read).
pub fn vmm_view(info: &HwInfoArmSmmuv3) -> HwInfoArmSmmuv3 {
    let mut out = *info;
    for (idr, mask) in out.idr.iter_mut().zip(VMM_IDR_FIELDS) {
        *idr &= mask;
    }
    out
}

/// What only the device knows (PCIe PASID capability), for [`get_hw_info`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DeviceCaps {
    /// log2 of the device's PASID count, capped by the SMMU's SSIDSIZE; 0 = no PASID.
    pub max_pasid_log2: u8,
    /// The PASID capability allows execute requests.
    pub pasid_exec: bool,
    /// The PASID capability allows privileged requests.
    pub pasid_priv: bool,
    /// The SMMU can track dirty state for this device (IDR0.HTTU dirty and coherent).
    pub dirty_tracking: bool,
}

/// `IOMMU_GET_HW_INFO` (IOMMU_GET_HW_INFO in `include/uapi/linux/iommufd.h`) for an SMMUv3 vIOMMU: checks `arg`, copies
/// `min(data_len, 40)` bytes of `info` into `data` and zero-fills the rest of the caller's
/// `data_len` bytes, then writes back `data_len = 40`, the type (ARM_SMMUV3), the PASID width and
/// the capabilities. `data` is the caller's buffer (`data_len` bytes of it are used).
///
/// Errors as Linux: a flag other than INPUT_TYPE, non-zero reserved bytes, or a requested type
/// other than DEFAULT/ARM_SMMUV3 → EOPNOTSUPP; `size` below the minimum → EINVAL; a buffer
/// shorter than `data_len` → EINVAL (Linux: EFAULT, which the error type does not carry).
pub fn get_hw_info(
    arg: &mut HwInfo,
    data: &mut [u8],
    info: &HwInfoArmSmmuv3,
    caps: DeviceCaps,
) -> Result<(), Error> {
    hw_info_of(arg, data, info, None, caps)
}

/// `IOMMU_GET_HW_INFO` (IOMMU_GET_HW_INFO in `include/uapi/linux/iommufd.h`) for a device behind an SMMU with a Tegra241 CMDQV: as
/// [`get_hw_info`], and with `IOMMU_HW_INFO_FLAG_INPUT_TYPE` and type TEGRA241_CMDQV (3) it
/// returns `cmdqv` (8 bytes, `data_type` = 3) instead. Asking for DEFAULT still gives the SMMUv3
/// blob, as on Linux ("the TEGRA241_CMDQV type (3) must be asked for explicitly with
/// INPUT_TYPE"). PASID width and capabilities are the device's whatever the type.
pub fn get_hw_info_cmdqv(
    arg: &mut HwInfo,
    data: &mut [u8],
    info: &HwInfoArmSmmuv3,
    cmdqv: &HwInfoTegra241Cmdqv,
    caps: DeviceCaps,
) -> Result<(), Error> {
    hw_info_of(arg, data, info, Some(cmdqv), caps)
}

fn hw_info_of(
    arg: &mut HwInfo,
    data: &mut [u8],
    info: &HwInfoArmSmmuv3,
    cmdqv: Option<&HwInfoTegra241Cmdqv>,
    caps: DeviceCaps,
) -> Result<(), Error> {
    use crate::error::Feature;
    if arg.size < HwInfo::MIN_SIZE {
        return Err(Error::Invalid {
            field: "iommu_hw_info.size",
            value: u64::from(arg.size),
        });
    }
    let flags = HwInfoFlags::from_bits(arg.flags).ok_or(Error::Reserved {
        field: "iommu_hw_info.flags",
        value: u64::from(arg.flags),
    })?;
    let [r0, r1, r2] = arg.reserved;
    if arg.reserved != [0; 3] {
        return Err(Error::Reserved {
            field: "iommu_hw_info.__reserved",
            value: u64::from(u32::from_le_bytes([r0, r1, r2, 0])),
        });
    }
    let ty = if flags.contains(HwInfoFlags::INPUT_TYPE) {
        HwInfoType::from_raw(arg.data_type)
    } else {
        Some(HwInfoType::Default)
    };
    let smmu_blob;
    let cmdqv_blob;
    let (out_type, blob): (HwInfoType, &[u8]) = match (ty, cmdqv) {
        (Some(HwInfoType::Default | HwInfoType::ArmSmmuv3), _) => {
            smmu_blob = info.to_bytes();
            (HwInfoType::ArmSmmuv3, &smmu_blob)
        }
        (Some(HwInfoType::Tegra241Cmdqv), Some(c)) => {
            cmdqv_blob = c.to_bytes();
            (HwInfoType::Tegra241Cmdqv, &cmdqv_blob)
        }
        (Some(HwInfoType::Tegra241Cmdqv), None) => return Err(Error::Unsupported(Feature::Cmdqv)),
        _ => {
            return Err(Error::Reserved {
                field: "iommu_hw_info.in_data_type",
                value: u64::from(arg.data_type),
            });
        }
    };
    let user = data
        .get_mut(..arg.data_len as usize)
        .ok_or(Error::Invalid {
            field: "iommu_hw_info.data_len",
            value: u64::from(arg.data_len),
        })?;
    let n = user.len().min(blob.len());
    let (head, tail) = user.split_at_mut(n);
    head.copy_from_slice(blob.get(..n).unwrap_or(&[]));
    tail.fill(0);
    arg.data_len = blob.len() as u32;
    arg.data_type = out_type.raw();
    arg.out_max_pasid_log2 = caps.max_pasid_log2;
    let mut cap = HwCapabilities::empty();
    cap.set(HwCapabilities::DIRTY_TRACKING, caps.dirty_tracking);
    if caps.max_pasid_log2 > 0 {
        cap.set(HwCapabilities::PCI_PASID_EXEC, caps.pasid_exec);
        cap.set(HwCapabilities::PCI_PASID_PRIV, caps.pasid_priv);
    }
    arg.out_capabilities = cap.bits();
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::features::Features;

    fn arg(len: u32) -> HwInfo {
        HwInfo {
            size: 40,
            data_len: len,
            ..HwInfo::default()
        }
    }

    #[test]
    fn raw_idrs_as_linux_and_errata_flag() {
        let regs = Features::QEMU_VIRT_IDREGS;
        let i = arm_smmuv3_info(&regs, false);
        assert_eq!(
            i.idr,
            [
                regs.idr0, regs.idr1, regs.idr2, regs.idr3, regs.idr4, regs.idr5
            ]
        );
        assert_eq!((i.iidr, i.aidr, i.flags), (regs.iidr, regs.aidr, 0));
        assert_eq!(arm_smmuv3_info(&regs, true).flags, 1);
        let v = vmm_view(&i);
        assert_eq!(v.idr[0], regs.idr0 & VMM_IDR_FIELDS[0]);
        assert_eq!(v.idr[2], 0);
    }

    /// The uAPI's list by bit positions (IHI 0070 §6.3.1-6), written out rather than taken from
    /// the field definitions: IDR0 ST_LEVEL [28:27], TERM_MODEL [26], STALL_MODEL [25:24],
    /// TTENDIAN [22:21], CD2L [19], ASID16 [12], TTF [3:2]; IDR1 SSIDSIZE [10:6], SIDSIZE
    /// [5:0]; IDR3 BBML [12:11], RIL [10]; IDR5 VAX [11:10], GRAN64K/16K/4K [6:4], OAS [2:0].
    #[test]
    fn vmm_fields_by_position() {
        assert_eq!(VMM_IDR_FIELDS, [0x1f68_100c, 0x7ff, 0, 0x1c00, 0, 0xc77]);
    }

    #[test]
    fn copy_rules() {
        let info = arm_smmuv3_info(&Features::QEMU_VIRT_IDREGS, true);
        // Larger buffer: the blob, then zeros; data_len becomes the kernel's 40.
        let mut buf = [0xaau8; 48];
        let mut a = arg(48);
        get_hw_info(&mut a, &mut buf, &info, DeviceCaps::default()).unwrap();
        assert_eq!(&buf[..40], &info.to_bytes());
        assert_eq!(&buf[40..], &[0u8; 8]);
        assert_eq!((a.data_len, a.data_type), (40, 2));
        // Smaller buffer: a prefix, and data_len still 40.
        let mut buf = [0u8; 12];
        let mut a = arg(12);
        get_hw_info(&mut a, &mut buf, &info, DeviceCaps::default()).unwrap();
        assert_eq!(&buf[..], &info.to_bytes()[..12]);
        assert_eq!(a.data_len, 40);
        // data_len 0: only the type and length.
        let mut a = arg(0);
        get_hw_info(&mut a, &mut [], &info, DeviceCaps::default()).unwrap();
        assert_eq!((a.data_len, a.data_type), (40, 2));
    }

    #[test]
    fn errors_and_capabilities() {
        let info = arm_smmuv3_info(&Features::QEMU_VIRT_IDREGS, false);
        let caps = DeviceCaps {
            max_pasid_log2: 0,
            pasid_exec: true,
            pasid_priv: true,
            dirty_tracking: true,
        };
        let mut a = arg(0);
        get_hw_info(&mut a, &mut [], &info, caps).unwrap();
        assert_eq!(a.out_capabilities, 1, "PASID bits need a PASID width");
        let mut a = arg(0);
        get_hw_info(
            &mut a,
            &mut [],
            &info,
            DeviceCaps {
                max_pasid_log2: 20,
                ..caps
            },
        )
        .unwrap();
        assert_eq!((a.out_capabilities, a.out_max_pasid_log2), (7, 20));

        let e = |a: &mut HwInfo| get_hw_info(a, &mut [], &info, caps).unwrap_err();
        let reserved = |field, value| Error::Reserved { field, value };
        let cases = [
            (
                HwInfo { flags: 2, ..arg(0) },
                reserved("iommu_hw_info.flags", 2),
            ),
            (
                HwInfo {
                    reserved: [0, 1, 0],
                    ..arg(0)
                },
                reserved("iommu_hw_info.__reserved", 0x100),
            ),
            (
                HwInfo {
                    flags: 1,
                    data_type: 3,
                    ..arg(0)
                },
                Error::Unsupported(crate::error::Feature::Cmdqv),
            ),
            (
                HwInfo {
                    flags: 1,
                    data_type: 1,
                    ..arg(0)
                },
                reserved("iommu_hw_info.in_data_type", 1),
            ),
        ];
        for (mut a, want) in cases {
            assert_eq!(e(&mut a), want);
            assert_eq!(want.errno(), -95);
        }
        let size = Error::Invalid {
            field: "iommu_hw_info.size",
            value: 24,
        };
        assert_eq!(e(&mut HwInfo { size: 24, ..arg(0) }), size);
        assert_eq!(size.errno(), -22);
        let mut a = HwInfo {
            flags: 1,
            data_type: 2,
            ..arg(0)
        };
        assert!(get_hw_info(&mut a, &mut [], &info, caps).is_ok());
        let mut a = arg(8);
        let short = Error::Invalid {
            field: "iommu_hw_info.data_len",
            value: 8,
        };
        assert_eq!(get_hw_info(&mut a, &mut [0; 4], &info, caps), Err(short));
        assert_eq!(short.errno(), -22);
    }

    #[test]
    fn tegra241_cmdqv_type_on_request_only() {
        let info = arm_smmuv3_info(&Features::QEMU_VIRT_IDREGS, false);
        let cq = HwInfoTegra241Cmdqv {
            flags: 0,
            version: 1,
            log2vcmdqs: 2,
            log2vsids: 4,
            reserved: 0,
        };
        let caps = DeviceCaps::default();
        // INPUT_TYPE + type 3: the 8-byte CMDQV blob, zero-filled beyond.
        let mut buf = [0xaau8; 16];
        let mut a = HwInfo {
            flags: 1,
            data_type: 3,
            ..arg(16)
        };
        get_hw_info_cmdqv(&mut a, &mut buf, &info, &cq, caps).unwrap();
        assert_eq!((a.data_len, a.data_type), (8, 3));
        assert_eq!(buf[..8], [0, 0, 0, 0, 1, 2, 4, 0]);
        assert_eq!(buf[8..], [0; 8]);
        // DEFAULT on a CMDQV host still gives the SMMUv3 blob.
        let mut buf = [0u8; 40];
        let mut a = arg(40);
        get_hw_info_cmdqv(&mut a, &mut buf, &info, &cq, caps).unwrap();
        assert_eq!((a.data_len, a.data_type), (40, 2));
        assert_eq!(buf, info.to_bytes());
        // Without a CMDQV, type 3 is EOPNOTSUPP.
        let mut a = HwInfo {
            flags: 1,
            data_type: 3,
            ..arg(0)
        };
        assert_eq!(
            get_hw_info(&mut a, &mut [], &info, caps)
                .unwrap_err()
                .errno(),
            -95
        );
    }
}
