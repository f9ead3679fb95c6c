//! `#[repr(C)]` mirror of the Linux iommufd uAPI structures an SMMUv3 (and Tegra241 CMDQV)
//! vIOMMU uses, with their constants and ioctl numbers: the subset of
//! `include/uapi/linux/iommufd.h` (Linux ≈v6.18) that the vIOMMU layer needs. Every struct, enum
//! and flag below is documented by its C name in that header; the ioctl conventions (size
//! prefix, `__reserved` fields, object IDs) are those of `Documentation/userspace-api/iommufd.rst`,
//! and the minimum sizes those of the `IOCTL_OP` table in `drivers/iommu/iommufd/main.c`.
//!
//! Names keep the uAPI's: `struct iommufd_vevent_header` is [`VeventHeader`],
//! `IOMMU_VEVENTQ_FLAG_LOST_EVENTS` is [`VeventFlags::LOST_EVENTS`]. Fields named `__reserved`
//! in C are `reserved` here; a C field named `type` is `type_`.
//!
//! # Byte images
//! Every struct here is **padding-free** (checked at compile time: the field sizes add up to the
//! struct size), so its byte image is fully defined. `to_bytes`/`from_bytes` convert field by
//! field at the field's `offset_of!` position, without `unsafe`:
//! - scalar fields (`__u8`, `__u32`, `__aligned_u64`) and `__u32` arrays are host-endian, as in
//!   the uAPI;
//! - every `[u64; N]` field of this subset is declared `__aligned_le64` in C (`ste`, `cmd`, `evt`,
//!   `lvcmdq_err_map`): the Rust field holds the numeric value and the byte image is
//!   little-endian on any host.
//!
//! On a little-endian target (every target this crate supports) the `#[repr(C)]` memory image
//! and `to_bytes()` are identical.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::mem::{align_of, offset_of, size_of};

/// A field type that has a defined uAPI byte encoding (see the module doc).
trait Wire: Sized {
    /// Writes `self` at `at` in `out`. `out` is always large enough (callers pass the struct's
    /// own image and the field's own offset); a short buffer writes nothing.
    fn put(&self, out: &mut [u8], at: usize);
    /// Reads the value at `at` in `bytes`; a short buffer reads zero.
    fn get(bytes: &[u8], at: usize) -> Self;
}

macro_rules! wire_scalar {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            fn put(&self, out: &mut [u8], at: usize) {
                if let Some(dst) = out.get_mut(at..at + size_of::<$t>()) {
                    dst.copy_from_slice(&self.to_ne_bytes());
                }
            }
            fn get(bytes: &[u8], at: usize) -> Self {
                bytes
                    .get(at..at + size_of::<$t>())
                    .and_then(|b| b.try_into().ok())
                    .map_or(0, <$t>::from_ne_bytes)
            }
        }
    )*};
}
wire_scalar!(u8, u32, u64);

/// Host-endian `__u8`/`__u32` arrays.
macro_rules! wire_ne_array {
    ($($t:ty),*) => {$(
        impl<const N: usize> Wire for [$t; N] {
            fn put(&self, out: &mut [u8], at: usize) {
                for (i, v) in self.iter().enumerate() {
                    v.put(out, at + i * size_of::<$t>());
                }
            }
            fn get(bytes: &[u8], at: usize) -> Self {
                core::array::from_fn(|i| <$t>::get(bytes, at + i * size_of::<$t>()))
            }
        }
    )*};
}
wire_ne_array!(u8, u32);

/// `__aligned_le64` arrays: little-endian whatever the host.
impl<const N: usize> Wire for [u64; N] {
    fn put(&self, out: &mut [u8], at: usize) {
        for (i, v) in self.iter().enumerate() {
            if let Some(dst) = out.get_mut(at + 8 * i..at + 8 * i + 8) {
                dst.copy_from_slice(&v.to_le_bytes());
            }
        }
    }
    fn get(bytes: &[u8], at: usize) -> Self {
        core::array::from_fn(|i| {
            bytes
                .get(at + 8 * i..at + 8 * i + 8)
                .and_then(|b| b.try_into().ok())
                .map_or(0, u64::from_le_bytes)
        })
    }
}

/// Declares a padding-free uAPI struct, its size/alignment asserts and its byte conversions.
macro_rules! uapi_struct {
    (
        $(#[$m:meta])*
        pub struct $name:ident = $cname:literal, size $size:literal, align $align:literal {
            $( $(#[$fm:meta])* pub $field:ident : $ty:ty, )*
        }
    ) => {
        $(#[$m])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub struct $name {
            $( $(#[$fm])* pub $field: $ty, )*
        }

        const _: () = assert!(size_of::<$name>() == $size);
        const _: () = assert!(align_of::<$name>() == $align);
        // Padding-free: the fields cover every byte, so the byte image is fully defined.
        const _: () = assert!(0 $(+ size_of::<$ty>())* == $size);

        impl $name {
            /// Size in bytes of the C struct (`sizeof`).
            pub const SIZE: usize = $size;
            /// The C name of the struct in `include/uapi/linux/iommufd.h`.
            pub const C_NAME: &'static str = $cname;
            #[cfg(test)]
            const FIELDS: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The uAPI byte image (see the module doc for endianness).
            pub fn to_bytes(&self) -> [u8; $size] {
                let mut out = [0u8; $size];
                $( Wire::put(&self.$field, &mut out, offset_of!($name, $field)); )*
                out
            }

            /// Decodes a uAPI byte image (see the module doc for endianness).
            pub fn from_bytes(bytes: &[u8; $size]) -> Self {
                Self { $( $field: Wire::get(bytes, offset_of!($name, $field)), )* }
            }

            /// Decodes the first [`Self::SIZE`] bytes of `bytes`; `None` if it is shorter.
            pub fn from_prefix(bytes: &[u8]) -> Option<Self> {
                let img: &[u8; $size] = bytes.get(..$size)?.try_into().ok()?;
                Some(Self::from_bytes(img))
            }
        }
    };
}

/// Declares a `#[repr(u32)]` uAPI enum with `from_raw`/`raw`.
macro_rules! uapi_enum {
    (
        $(#[$m:meta])*
        pub enum $name:ident { $( $(#[$vm:meta])* $var:ident = $val:literal, )* }
    ) => {
        $(#[$m])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        pub enum $name {
            $( $(#[$vm])* $var = $val, )*
        }

        impl $name {
            /// The enum value for a raw uAPI number; `None` for a value this subset lacks.
            pub const fn from_raw(raw: u32) -> Option<Self> {
                match raw {
                    $( $val => Some(Self::$var), )*
                    _ => None,
                }
            }

            /// The raw uAPI number.
            pub const fn raw(self) -> u32 {
                self as u32
            }
        }
    };
}

/// Implements `defmt::Format` for a bitflags type as its raw bits.
macro_rules! defmt_bits {
    ($name:ident, $fmt:literal) => {
        #[cfg(feature = "defmt")]
        impl defmt::Format for $name {
            fn format(&self, f: defmt::Formatter<'_>) {
                defmt::write!(f, $fmt, self.bits());
            }
        }
    };
}

// ------------------------------------------------------------------------------------------
// ioctl numbers

/// ioctl numbers (`include/uapi/linux/iommufd.h`): the `IOMMUFD_CMD_*` command numbers of the
/// header's anonymous enum, and each `IOMMU_*` request number built from one of them as
/// `_IO(IOMMUFD_TYPE, IOMMUFD_CMD_*)`, so direction and size bits are zero (the argument's size
/// travels in its first `size` field instead; `Documentation/userspace-api/iommufd.rst`).
pub mod ioctl {
    /// The ioctl type byte, `';'`.
    pub const IOMMUFD_TYPE: u8 = b';';
    /// The first command number, `IOMMUFD_CMD_BASE`.
    pub const IOMMUFD_CMD_BASE: u8 = 0x80;

    /// `_IO(IOMMUFD_TYPE, nr)`.
    pub const fn io(nr: u8) -> u32 {
        ((IOMMUFD_TYPE as u32) << 8) | nr as u32
    }

    /// IOMMUFD_CMD_DESTROY.
    pub const IOMMUFD_CMD_DESTROY: u8 = IOMMUFD_CMD_BASE;
    /// IOMMUFD_CMD_IOAS_ALLOC.
    pub const IOMMUFD_CMD_IOAS_ALLOC: u8 = 0x81;
    /// IOMMUFD_CMD_IOAS_ALLOW_IOVAS.
    pub const IOMMUFD_CMD_IOAS_ALLOW_IOVAS: u8 = 0x82;
    /// IOMMUFD_CMD_IOAS_COPY.
    pub const IOMMUFD_CMD_IOAS_COPY: u8 = 0x83;
    /// IOMMUFD_CMD_IOAS_IOVA_RANGES.
    pub const IOMMUFD_CMD_IOAS_IOVA_RANGES: u8 = 0x84;
    /// IOMMUFD_CMD_IOAS_MAP.
    pub const IOMMUFD_CMD_IOAS_MAP: u8 = 0x85;
    /// IOMMUFD_CMD_IOAS_UNMAP.
    pub const IOMMUFD_CMD_IOAS_UNMAP: u8 = 0x86;
    /// IOMMUFD_CMD_OPTION.
    pub const IOMMUFD_CMD_OPTION: u8 = 0x87;
    /// IOMMUFD_CMD_VFIO_IOAS.
    pub const IOMMUFD_CMD_VFIO_IOAS: u8 = 0x88;
    /// IOMMUFD_CMD_HWPT_ALLOC.
    pub const IOMMUFD_CMD_HWPT_ALLOC: u8 = 0x89;
    /// IOMMUFD_CMD_GET_HW_INFO.
    pub const IOMMUFD_CMD_GET_HW_INFO: u8 = 0x8a;
    /// IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING.
    pub const IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING: u8 = 0x8b;
    /// IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP.
    pub const IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP: u8 = 0x8c;
    /// IOMMUFD_CMD_HWPT_INVALIDATE.
    pub const IOMMUFD_CMD_HWPT_INVALIDATE: u8 = 0x8d;
    /// IOMMUFD_CMD_FAULT_QUEUE_ALLOC.
    pub const IOMMUFD_CMD_FAULT_QUEUE_ALLOC: u8 = 0x8e;
    /// IOMMUFD_CMD_IOAS_MAP_FILE.
    pub const IOMMUFD_CMD_IOAS_MAP_FILE: u8 = 0x8f;
    /// IOMMUFD_CMD_VIOMMU_ALLOC.
    pub const IOMMUFD_CMD_VIOMMU_ALLOC: u8 = 0x90;
    /// IOMMUFD_CMD_VDEVICE_ALLOC.
    pub const IOMMUFD_CMD_VDEVICE_ALLOC: u8 = 0x91;
    /// IOMMUFD_CMD_IOAS_CHANGE_PROCESS.
    pub const IOMMUFD_CMD_IOAS_CHANGE_PROCESS: u8 = 0x92;
    /// IOMMUFD_CMD_VEVENTQ_ALLOC.
    pub const IOMMUFD_CMD_VEVENTQ_ALLOC: u8 = 0x93;
    /// IOMMUFD_CMD_HW_QUEUE_ALLOC.
    pub const IOMMUFD_CMD_HW_QUEUE_ALLOC: u8 = 0x94;

    /// IOMMU_DESTROY ([`Destroy`](super::Destroy)).
    pub const IOMMU_DESTROY: u32 = io(IOMMUFD_CMD_DESTROY);
    /// IOMMU_IOAS_ALLOC.
    pub const IOMMU_IOAS_ALLOC: u32 = io(IOMMUFD_CMD_IOAS_ALLOC);
    /// IOMMU_IOAS_ALLOW_IOVAS.
    pub const IOMMU_IOAS_ALLOW_IOVAS: u32 = io(IOMMUFD_CMD_IOAS_ALLOW_IOVAS);
    /// IOMMU_IOAS_COPY.
    pub const IOMMU_IOAS_COPY: u32 = io(IOMMUFD_CMD_IOAS_COPY);
    /// IOMMU_IOAS_IOVA_RANGES.
    pub const IOMMU_IOAS_IOVA_RANGES: u32 = io(IOMMUFD_CMD_IOAS_IOVA_RANGES);
    /// IOMMU_IOAS_MAP.
    pub const IOMMU_IOAS_MAP: u32 = io(IOMMUFD_CMD_IOAS_MAP);
    /// IOMMU_IOAS_UNMAP.
    pub const IOMMU_IOAS_UNMAP: u32 = io(IOMMUFD_CMD_IOAS_UNMAP);
    /// IOMMU_OPTION.
    pub const IOMMU_OPTION: u32 = io(IOMMUFD_CMD_OPTION);
    /// IOMMU_VFIO_IOAS.
    pub const IOMMU_VFIO_IOAS: u32 = io(IOMMUFD_CMD_VFIO_IOAS);
    /// IOMMU_HWPT_ALLOC ([`HwptAlloc`](super::HwptAlloc)).
    pub const IOMMU_HWPT_ALLOC: u32 = io(IOMMUFD_CMD_HWPT_ALLOC);
    /// IOMMU_GET_HW_INFO ([`HwInfo`](super::HwInfo)).
    pub const IOMMU_GET_HW_INFO: u32 = io(IOMMUFD_CMD_GET_HW_INFO);
    /// IOMMU_HWPT_SET_DIRTY_TRACKING.
    pub const IOMMU_HWPT_SET_DIRTY_TRACKING: u32 = io(IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING);
    /// IOMMU_HWPT_GET_DIRTY_BITMAP.
    pub const IOMMU_HWPT_GET_DIRTY_BITMAP: u32 = io(IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP);
    /// IOMMU_HWPT_INVALIDATE ([`HwptInvalidate`](super::HwptInvalidate)).
    pub const IOMMU_HWPT_INVALIDATE: u32 = io(IOMMUFD_CMD_HWPT_INVALIDATE);
    /// IOMMU_FAULT_QUEUE_ALLOC ([`FaultAlloc`](super::FaultAlloc)).
    pub const IOMMU_FAULT_QUEUE_ALLOC: u32 = io(IOMMUFD_CMD_FAULT_QUEUE_ALLOC);
    /// IOMMU_IOAS_MAP_FILE.
    pub const IOMMU_IOAS_MAP_FILE: u32 = io(IOMMUFD_CMD_IOAS_MAP_FILE);
    /// IOMMU_VIOMMU_ALLOC ([`ViommuAlloc`](super::ViommuAlloc)).
    pub const IOMMU_VIOMMU_ALLOC: u32 = io(IOMMUFD_CMD_VIOMMU_ALLOC);
    /// IOMMU_VDEVICE_ALLOC ([`VdeviceAlloc`](super::VdeviceAlloc)).
    pub const IOMMU_VDEVICE_ALLOC: u32 = io(IOMMUFD_CMD_VDEVICE_ALLOC);
    /// IOMMU_IOAS_CHANGE_PROCESS.
    pub const IOMMU_IOAS_CHANGE_PROCESS: u32 = io(IOMMUFD_CMD_IOAS_CHANGE_PROCESS);
    /// IOMMU_VEVENTQ_ALLOC ([`VeventqAlloc`](super::VeventqAlloc)).
    pub const IOMMU_VEVENTQ_ALLOC: u32 = io(IOMMUFD_CMD_VEVENTQ_ALLOC);
    /// IOMMU_HW_QUEUE_ALLOC ([`HwQueueAlloc`](super::HwQueueAlloc)).
    pub const IOMMU_HW_QUEUE_ALLOC: u32 = io(IOMMUFD_CMD_HW_QUEUE_ALLOC);
}

// ------------------------------------------------------------------------------------------
// IOMMU_DESTROY

uapi_struct! {
    /// `struct iommu_destroy`, the IOMMU_DESTROY argument: destroys any destroyable iommufd
    /// object by its ID (`include/uapi/linux/iommufd.h`). Size 8, align 4.
    pub struct Destroy = "iommu_destroy", size 8, align 4 {
        /// Offset 0: caller's `sizeof`.
        pub size: u32,
        /// Offset 4: the object ID to destroy.
        pub id: u32,
    }
}

impl Destroy {
    /// Minimum `size` the kernel accepts (ends at `id`): `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 8;
}

// ------------------------------------------------------------------------------------------
// IOMMU_GET_HW_INFO

uapi_enum! {
    /// `enum iommu_hw_info_type`. `IOMMU_HW_INFO_TYPE_NONE` is
    /// [`HwInfoType::NONE`], an alias of `Default`.
    pub enum HwInfoType {
        /// IOMMU_HW_INFO_TYPE_DEFAULT (= NONE): the driver's own type.
        Default = 0,
        /// IOMMU_HW_INFO_TYPE_INTEL_VTD.
        IntelVtd = 1,
        /// IOMMU_HW_INFO_TYPE_ARM_SMMUV3: [`HwInfoArmSmmuv3`].
        ArmSmmuv3 = 2,
        /// IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV: [`HwInfoTegra241Cmdqv`]; asked for with INPUT_TYPE.
        Tegra241Cmdqv = 3,
    }
}

impl HwInfoType {
    /// IOMMU_HW_INFO_TYPE_NONE, the same value as DEFAULT.
    pub const NONE: Self = Self::Default;
}

bitflags::bitflags! {
    /// `enum iommufd_hw_info_flags`: [`HwInfo::flags`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HwInfoFlags: u32 {
        /// IOMMU_HW_INFO_FLAG_INPUT_TYPE: `in_data_type` selects the type to report.
        const INPUT_TYPE = 1 << 0;
    }
}
defmt_bits!(HwInfoFlags, "HwInfoFlags({=u32:#x})");

bitflags::bitflags! {
    /// `enum iommufd_hw_capabilities`: [`HwInfo::out_capabilities`]. The PASID
    /// bits mean nothing when `out_max_pasid_log2` is 0. (Newer trees add
    /// PCI_ATS_NOT_SUPPORTED = 1 << 3; it is not in the snapshot this mirror follows.)
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HwCapabilities: u64 {
        /// IOMMU_HW_CAP_DIRTY_TRACKING.
        const DIRTY_TRACKING = 1 << 0;
        /// IOMMU_HW_CAP_PCI_PASID_EXEC.
        const PCI_PASID_EXEC = 1 << 1;
        /// IOMMU_HW_CAP_PCI_PASID_PRIV.
        const PCI_PASID_PRIV = 1 << 2;
    }
}
defmt_bits!(HwCapabilities, "HwCapabilities({=u64:#x})");

uapi_struct! {
    /// `struct iommu_hw_info`, the IOMMU_GET_HW_INFO argument. Size 40, align 8.
    pub struct HwInfo = "iommu_hw_info", size 40, align 8 {
        /// Offset 0: `sizeof(struct)` as the caller knows it.
        pub size: u32,
        /// Offset 4: [`HwInfoFlags`].
        pub flags: u32,
        /// Offset 8: iommufd device ID.
        pub dev_id: u32,
        /// Offset 12: in: user buffer length; out: the kernel's length of the type data.
        pub data_len: u32,
        /// Offset 16: user buffer receiving the type-specific struct.
        pub data_uptr: u64,
        /// Offset 24: the `in_data_type`/`out_data_type` union ([`HwInfoType`]).
        pub data_type: u32,
        /// Offset 28: PASID width; 0 means no PASID.
        pub out_max_pasid_log2: u8,
        /// Offset 29: `__reserved[3]`, must be 0.
        pub reserved: [u8; 3],
        /// Offset 32: [`HwCapabilities`].
        pub out_capabilities: u64,
    }
}

impl HwInfo {
    /// Minimum `size` the kernel accepts (ends at `__reserved[3]`): `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 32;
}

uapi_struct! {
    /// `struct iommu_hw_info_arm_smmuv3` (type 2), raw SMMU ID registers.
    /// Size 40, align 4.
    pub struct HwInfoArmSmmuv3 = "iommu_hw_info_arm_smmuv3", size 40, align 4 {
        /// Offset 0: 0 in the snapshot.
        pub flags: u32,
        /// Offset 4: 0.
        pub reserved: u32,
        /// Offset 8: raw SMMU_IDR0..IDR5 (IHI 0070 §6.3.1-6).
        pub idr: [u32; 6],
        /// Offset 32: raw SMMU_IIDR.
        pub iidr: u32,
        /// Offset 36: raw SMMU_AIDR.
        pub aidr: u32,
    }
}

uapi_struct! {
    /// `struct iommu_hw_info_tegra241_cmdqv` (type 3). Size 8, align 4.
    pub struct HwInfoTegra241Cmdqv = "iommu_hw_info_tegra241_cmdqv", size 8, align 4 {
        /// Offset 0: 0.
        pub flags: u32,
        /// Offset 4: CMDQV_PARAM bits \[3:0\].
        pub version: u8,
        /// Offset 5: log2 of logical VCMDQs per VINTF.
        pub log2vcmdqs: u8,
        /// Offset 6: log2 of SID_MATCH/REPLACE pairs per VINTF.
        pub log2vsids: u8,
        /// Offset 7: 0.
        pub reserved: u8,
    }
}

// ------------------------------------------------------------------------------------------
// IOMMU_VIOMMU_ALLOC

uapi_enum! {
    /// `enum iommu_viommu_type`.
    pub enum ViommuType {
        /// IOMMU_VIOMMU_TYPE_DEFAULT: refused with EOPNOTSUPP.
        Default = 0,
        /// IOMMU_VIOMMU_TYPE_ARM_SMMUV3.
        ArmSmmuv3 = 1,
        /// IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV (driver data [`ViommuTegra241Cmdqv`] mandatory).
        Tegra241Cmdqv = 2,
    }
}

uapi_struct! {
    /// `struct iommu_viommu_alloc`, the IOMMU_VIOMMU_ALLOC argument.
    /// Size 40, align 8.
    pub struct ViommuAlloc = "iommu_viommu_alloc", size 40, align 8 {
        /// Offset 0: caller's `sizeof`.
        pub size: u32,
        /// Offset 4: must be 0.
        pub flags: u32,
        /// Offset 8: [`ViommuType`] (C `type`).
        pub type_: u32,
        /// Offset 12: a device behind the physical IOMMU.
        pub dev_id: u32,
        /// Offset 16: a NEST_PARENT paging HWPT.
        pub hwpt_id: u32,
        /// Offset 20: out: the vIOMMU's object ID.
        pub out_viommu_id: u32,
        /// Offset 24: driver data length (0 = none).
        pub data_len: u32,
        /// Offset 28: 0.
        pub reserved: u32,
        /// Offset 32: driver data pointer.
        pub data_uptr: u64,
    }
}

impl ViommuAlloc {
    /// Minimum `size` the kernel accepts (ends at `out_viommu_id`): `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 24;
}

uapi_struct! {
    /// `struct iommu_viommu_tegra241_cmdqv`, TEGRA241_CMDQV vIOMMU driver data.
    /// Size 16, align 8.
    pub struct ViommuTegra241Cmdqv = "iommu_viommu_tegra241_cmdqv", size 16, align 8 {
        /// Offset 0: out: `mmap()` offset of the VINTF page0 on the iommufd fd.
        pub out_vintf_mmap_offset: u64,
        /// Offset 8: out: 0x10000.
        pub out_vintf_mmap_length: u64,
    }
}

// ------------------------------------------------------------------------------------------
// IOMMU_VDEVICE_ALLOC

uapi_struct! {
    /// `struct iommu_vdevice_alloc`, the IOMMU_VDEVICE_ALLOC argument.
    /// Size 24, align 8.
    pub struct VdeviceAlloc = "iommu_vdevice_alloc", size 24, align 8 {
        /// Offset 0: caller's `sizeof`.
        pub size: u32,
        /// Offset 4: the vIOMMU.
        pub viommu_id: u32,
        /// Offset 8: the physical device.
        pub dev_id: u32,
        /// Offset 12: out: the vDEVICE's object ID.
        pub out_vdevice_id: u32,
        /// Offset 16: the virtual ID: the vSID for SMMUv3/CMDQV.
        pub virt_id: u64,
    }
}

impl VdeviceAlloc {
    /// Minimum `size` the kernel accepts: `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 24;
}

// ------------------------------------------------------------------------------------------
// IOMMU_HWPT_ALLOC

bitflags::bitflags! {
    /// `enum iommufd_hwpt_alloc_flags`: [`HwptAlloc::flags`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct HwptAllocFlags: u32 {
        /// IOMMU_HWPT_ALLOC_NEST_PARENT.
        const NEST_PARENT = 1 << 0;
        /// IOMMU_HWPT_ALLOC_DIRTY_TRACKING.
        const DIRTY_TRACKING = 1 << 1;
        /// IOMMU_HWPT_FAULT_ID_VALID: `fault_id` is used.
        const FAULT_ID_VALID = 1 << 2;
        /// IOMMU_HWPT_ALLOC_PASID.
        const ALLOC_PASID = 1 << 3;
    }
}
defmt_bits!(HwptAllocFlags, "HwptAllocFlags({=u32:#x})");

uapi_enum! {
    /// `enum iommu_hwpt_data_type`.
    pub enum HwptDataType {
        /// IOMMU_HWPT_DATA_NONE.
        None = 0,
        /// IOMMU_HWPT_DATA_VTD_S1.
        VtdS1 = 1,
        /// IOMMU_HWPT_DATA_ARM_SMMUV3: [`HwptArmSmmuv3`].
        ArmSmmuv3 = 2,
    }
}

uapi_struct! {
    /// `struct iommu_hwpt_alloc`, the IOMMU_HWPT_ALLOC argument.
    /// Size 48, align 8.
    pub struct HwptAlloc = "iommu_hwpt_alloc", size 48, align 8 {
        /// Offset 0: caller's `sizeof`.
        pub size: u32,
        /// Offset 4: [`HwptAllocFlags`].
        pub flags: u32,
        /// Offset 8: device.
        pub dev_id: u32,
        /// Offset 12: IOAS, parent HWPT or vIOMMU.
        pub pt_id: u32,
        /// Offset 16: out: HWPT object ID.
        pub out_hwpt_id: u32,
        /// Offset 20: must be 0.
        pub reserved: u32,
        /// Offset 24: [`HwptDataType`].
        pub data_type: u32,
        /// Offset 28: type data length.
        pub data_len: u32,
        /// Offset 32: type data pointer.
        pub data_uptr: u64,
        /// Offset 40: FAULT object, used with [`HwptAllocFlags::FAULT_ID_VALID`].
        pub fault_id: u32,
        /// Offset 44: 0 (C `__reserved2`).
        pub reserved2: u32,
    }
}

impl HwptAlloc {
    /// Minimum `size` the kernel accepts (ends at the first `__reserved`): `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 24;
}

uapi_struct! {
    /// `struct iommu_hwpt_arm_smmuv3`: guest STE words 0-1 for a nested HWPT.
    /// Size 16, align 8.
    pub struct HwptArmSmmuv3 = "iommu_hwpt_arm_smmuv3", size 16, align 8 {
        /// Offset 0: `__aligned_le64 ste[2]` (IHI 0070 §5.2 STE dwords 0-1).
        pub ste: [u64; 2],
    }
}

// ------------------------------------------------------------------------------------------
// IOMMU_HWPT_INVALIDATE

uapi_enum! {
    /// `enum iommu_hwpt_invalidate_data_type`.
    pub enum HwptInvalidateDataType {
        /// IOMMU_HWPT_INVALIDATE_DATA_VTD_S1.
        VtdS1 = 0,
        /// IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3: [`ViommuArmSmmuv3Invalidate`].
        ArmSmmuv3 = 1,
    }
}

uapi_struct! {
    /// `struct iommu_hwpt_invalidate`, the IOMMU_HWPT_INVALIDATE argument.
    /// Size 32, align 8.
    pub struct HwptInvalidate = "iommu_hwpt_invalidate", size 32, align 8 {
        /// Offset 0: caller's `sizeof`.
        pub size: u32,
        /// Offset 4: nested HWPT or vIOMMU ID.
        pub hwpt_id: u32,
        /// Offset 8: entry array base.
        pub data_uptr: u64,
        /// Offset 16: [`HwptInvalidateDataType`].
        pub data_type: u32,
        /// Offset 20: bytes per entry.
        pub entry_len: u32,
        /// Offset 24: in: entries; out: entries handled (always written back).
        pub entry_num: u32,
        /// Offset 28: 0.
        pub reserved: u32,
    }
}

impl HwptInvalidate {
    /// Minimum `size` the kernel accepts: `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 32;
}

uapi_struct! {
    /// `struct iommu_viommu_arm_smmuv3_invalidate`: one raw guest CMDQ command
    ///. Size 16, align 8.
    pub struct ViommuArmSmmuv3Invalidate = "iommu_viommu_arm_smmuv3_invalidate", size 16, align 8 {
        /// Offset 0: `__aligned_le64 cmd[2]` (IHI 0070 §4 command, 128 bits).
        pub cmd: [u64; 2],
    }
}

// ------------------------------------------------------------------------------------------
// IOMMU_VEVENTQ_ALLOC and the vEVENTQ records

uapi_enum! {
    /// `enum iommu_veventq_type`.
    pub enum VeventqType {
        /// IOMMU_VEVENTQ_TYPE_DEFAULT: refused with EOPNOTSUPP.
        Default = 0,
        /// IOMMU_VEVENTQ_TYPE_ARM_SMMUV3: payload [`VeventArmSmmuv3`].
        ArmSmmuv3 = 1,
        /// IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV: payload [`VeventTegra241Cmdqv`].
        Tegra241Cmdqv = 2,
    }
}

uapi_struct! {
    /// `struct iommu_veventq_alloc`, the IOMMU_VEVENTQ_ALLOC argument.
    /// Size 32, align 4.
    pub struct VeventqAlloc = "iommu_veventq_alloc", size 32, align 4 {
        /// Offset 0: caller's `sizeof`.
        pub size: u32,
        /// Offset 4: must be 0.
        pub flags: u32,
        /// Offset 8: the vIOMMU.
        pub viommu_id: u32,
        /// Offset 12: [`VeventqType`] (C `type`).
        pub type_: u32,
        /// Offset 16: maximum number of unread events; 0 is EINVAL.
        pub veventq_depth: u32,
        /// Offset 20: out: object ID.
        pub out_veventq_id: u32,
        /// Offset 24: out: the new fd.
        pub out_veventq_fd: u32,
        /// Offset 28: must be 0.
        pub reserved: u32,
    }
}

impl VeventqAlloc {
    /// Minimum `size` the kernel accepts (ends at `out_veventq_fd`): `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 28;
}

bitflags::bitflags! {
    /// `enum iommu_veventq_flag`: [`VeventHeader::flags`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct VeventFlags: u32 {
        /// IOMMU_VEVENTQ_FLAG_LOST_EVENTS: a payload-less marker; events were dropped up to and
        /// including the one numbered `sequence`.
        const LOST_EVENTS = 1 << 0;
    }
}
defmt_bits!(VeventFlags, "VeventFlags({=u32:#x})");

uapi_struct! {
    /// `struct iommufd_vevent_header`, the 8 bytes before every vEVENTQ payload, and alone as a
    /// LOST_EVENTS marker. Size 8, align 4.
    pub struct VeventHeader = "iommufd_vevent_header", size 8, align 4 {
        /// Offset 0: [`VeventFlags`]; 0 for normal records.
        pub flags: u32,
        /// Offset 4: 31-bit sequence number; bit 31 is always 0.
        pub sequence: u32,
    }
}

impl VeventHeader {
    /// Sequence numbers are 31 bits wide and wrap from this value to 0.
    pub const SEQUENCE_MASK: u32 = 0x7fff_ffff;

    /// Whether this header is a LOST_EVENTS marker (no payload follows it).
    pub const fn is_lost_events(&self) -> bool {
        self.flags & VeventFlags::LOST_EVENTS.bits() != 0
    }
}

uapi_struct! {
    /// `struct iommu_vevent_arm_smmuv3`: a forwarded SMMUv3 event record.
    /// Size 32, align 8; the record in the stream is 40 bytes with its header.
    pub struct VeventArmSmmuv3 = "iommu_vevent_arm_smmuv3", size 32, align 8 {
        /// Offset 0: `__aligned_le64 evt[4]`, the IHI 0070 §7.3 event record with the vSID in
        /// `evt[0]` bits \[63:32\].
        pub evt: [u64; 4],
    }
}

uapi_struct! {
    /// `struct iommu_vevent_tegra241_cmdqv`: a VINTF's LVCMDQ_ERR_MAP.
    /// Size 16, align 8; the record in the stream is 24 bytes with its header.
    pub struct VeventTegra241Cmdqv = "iommu_vevent_tegra241_cmdqv", size 16, align 8 {
        /// Offset 0: `__aligned_le64 lvcmdq_err_map[2]` (VINTF+0xC0, +0xC8), raw.
        pub lvcmdq_err_map: [u64; 2],
    }
}

// ------------------------------------------------------------------------------------------
// IOMMU_HW_QUEUE_ALLOC

uapi_enum! {
    /// `enum iommu_hw_queue_type`.
    pub enum HwQueueType {
        /// IOMMU_HW_QUEUE_TYPE_DEFAULT: refused with EOPNOTSUPP.
        Default = 0,
        /// IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV: a guest VCMDQ.
        Tegra241Cmdqv = 1,
    }
}

uapi_struct! {
    /// `struct iommu_hw_queue_alloc`, the IOMMU_HW_QUEUE_ALLOC argument.
    /// Size 40, align 8.
    pub struct HwQueueAlloc = "iommu_hw_queue_alloc", size 40, align 8 {
        /// Offset 0: caller's `sizeof`.
        pub size: u32,
        /// Offset 4: 0.
        pub flags: u32,
        /// Offset 8: the vIOMMU.
        pub viommu_id: u32,
        /// Offset 12: [`HwQueueType`] (C `type`).
        pub type_: u32,
        /// Offset 16: logical queue index within the vIOMMU.
        pub index: u32,
        /// Offset 20: out: object ID.
        pub out_hw_queue_id: u32,
        /// Offset 24: queue base as guest PA (IOVA in the parent IOAS).
        pub nesting_parent_iova: u64,
        /// Offset 32: queue size in bytes.
        pub length: u64,
    }
}

impl HwQueueAlloc {
    /// Minimum `size` the kernel accepts: `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 40;
}

// ------------------------------------------------------------------------------------------
// IOPF fault queue

uapi_struct! {
    /// `struct iommu_fault_alloc`, the IOMMU_FAULT_QUEUE_ALLOC argument.
    /// Size 16, align 4.
    pub struct FaultAlloc = "iommu_fault_alloc", size 16, align 4 {
        /// Offset 0: caller's `sizeof`.
        pub size: u32,
        /// Offset 4: must be 0.
        pub flags: u32,
        /// Offset 8: out: FAULT object ID.
        pub out_fault_id: u32,
        /// Offset 12: out: the fault fd.
        pub out_fault_fd: u32,
    }
}

impl FaultAlloc {
    /// Minimum `size` the kernel accepts: `offsetofend` of the last
    /// field of its `IOCTL_OP` entry in `drivers/iommu/iommufd/main.c`.
    pub const MIN_SIZE: u32 = 16;
}

bitflags::bitflags! {
    /// `enum iommu_hwpt_pgfault_flags`: [`HwptPgfault::flags`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct PgfaultFlags: u32 {
        /// IOMMU_PGFAULT_FLAGS_PASID_VALID: `pasid` is valid.
        const PASID_VALID = 1 << 0;
        /// IOMMU_PGFAULT_FLAGS_LAST_PAGE: the last fault of its group.
        const LAST_PAGE = 1 << 1;
    }
}
defmt_bits!(PgfaultFlags, "PgfaultFlags({=u32:#x})");

bitflags::bitflags! {
    /// `enum iommu_hwpt_pgfault_perm`: [`HwptPgfault::perm`].
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    pub struct PgfaultPerm: u32 {
        /// IOMMU_PGFAULT_PERM_READ.
        const READ = 1 << 0;
        /// IOMMU_PGFAULT_PERM_WRITE.
        const WRITE = 1 << 1;
        /// IOMMU_PGFAULT_PERM_EXEC.
        const EXEC = 1 << 2;
        /// IOMMU_PGFAULT_PERM_PRIV.
        const PRIV = 1 << 3;
    }
}
defmt_bits!(PgfaultPerm, "PgfaultPerm({=u32:#x})");

uapi_struct! {
    /// `struct iommu_hwpt_pgfault`, one fault read from a fault fd.
    /// Size 40, align 8.
    pub struct HwptPgfault = "iommu_hwpt_pgfault", size 40, align 8 {
        /// Offset 0: [`PgfaultFlags`].
        pub flags: u32,
        /// Offset 4: iommufd device ID.
        pub dev_id: u32,
        /// Offset 8: valid with [`PgfaultFlags::PASID_VALID`].
        pub pasid: u32,
        /// Offset 12: page-request group index (SMMUv3 stall: STAG).
        pub grpid: u32,
        /// Offset 16: [`PgfaultPerm`].
        pub perm: u32,
        /// Offset 20: 0.
        pub reserved: u32,
        /// Offset 24: fault address.
        pub addr: u64,
        /// Offset 32: size hint, always 0 from the kernel.
        pub length: u32,
        /// Offset 36: group cookie to echo back in [`HwptPageResponse`].
        pub cookie: u32,
    }
}

uapi_enum! {
    /// `enum iommufd_page_response_code`.
    pub enum PageResponseCode {
        /// IOMMUFD_PAGE_RESP_SUCCESS: retry the access.
        Success = 0,
        /// IOMMUFD_PAGE_RESP_INVALID: do not retry.
        Invalid = 1,
    }
}

uapi_struct! {
    /// `struct iommu_hwpt_page_response`, one response written to a fault fd.
    /// Size 8, align 4.
    pub struct HwptPageResponse = "iommu_hwpt_page_response", size 8, align 4 {
        /// Offset 0: the group's cookie.
        pub cookie: u32,
        /// Offset 4: [`PageResponseCode`].
        pub code: u32,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Pins size, alignment and every field offset to the numbers `pahole` prints for the
    /// structs of include/uapi/linux/iommufd.h, and checks
    /// that the list names every field of the mirror.
    macro_rules! pin_layout {
        ($t:ty, size $size:expr, align $align:expr, { $($f:ident : $off:expr),* $(,)? }) => {{
            assert_eq!(size_of::<$t>(), $size, "{} size", stringify!($t));
            assert_eq!(align_of::<$t>(), $align, "{} align", stringify!($t));
            assert_eq!(<$t>::SIZE, $size);
            $( assert_eq!(offset_of!($t, $f), $off, "{}.{}", stringify!($t), stringify!($f)); )*
            assert_eq!(<$t>::FIELDS, &[$(stringify!($f)),*], "{} field list", stringify!($t));
        }};
    }

    #[test]
    fn layouts_match_spec() {
        pin_layout!(Destroy, size 8, align 4, { size: 0, id: 4 });
        pin_layout!(HwInfo, size 40, align 8, {
            size: 0, flags: 4, dev_id: 8, data_len: 12, data_uptr: 16, data_type: 24,
            out_max_pasid_log2: 28, reserved: 29, out_capabilities: 32,
        });
        pin_layout!(HwInfoArmSmmuv3, size 40, align 4, {
            flags: 0, reserved: 4, idr: 8, iidr: 32, aidr: 36,
        });
        pin_layout!(HwInfoTegra241Cmdqv, size 8, align 4, {
            flags: 0, version: 4, log2vcmdqs: 5, log2vsids: 6, reserved: 7,
        });
        pin_layout!(ViommuAlloc, size 40, align 8, {
            size: 0, flags: 4, type_: 8, dev_id: 12, hwpt_id: 16, out_viommu_id: 20,
            data_len: 24, reserved: 28, data_uptr: 32,
        });
        pin_layout!(ViommuTegra241Cmdqv, size 16, align 8, {
            out_vintf_mmap_offset: 0, out_vintf_mmap_length: 8,
        });
        pin_layout!(VdeviceAlloc, size 24, align 8, {
            size: 0, viommu_id: 4, dev_id: 8, out_vdevice_id: 12, virt_id: 16,
        });
        pin_layout!(HwptAlloc, size 48, align 8, {
            size: 0, flags: 4, dev_id: 8, pt_id: 12, out_hwpt_id: 16, reserved: 20,
            data_type: 24, data_len: 28, data_uptr: 32, fault_id: 40, reserved2: 44,
        });
        pin_layout!(HwptArmSmmuv3, size 16, align 8, { ste: 0 });
        pin_layout!(HwptInvalidate, size 32, align 8, {
            size: 0, hwpt_id: 4, data_uptr: 8, data_type: 16, entry_len: 20, entry_num: 24,
            reserved: 28,
        });
        pin_layout!(ViommuArmSmmuv3Invalidate, size 16, align 8, { cmd: 0 });
        pin_layout!(VeventqAlloc, size 32, align 4, {
            size: 0, flags: 4, viommu_id: 8, type_: 12, veventq_depth: 16, out_veventq_id: 20,
            out_veventq_fd: 24, reserved: 28,
        });
        pin_layout!(VeventHeader, size 8, align 4, { flags: 0, sequence: 4 });
        pin_layout!(VeventArmSmmuv3, size 32, align 8, { evt: 0 });
        pin_layout!(VeventTegra241Cmdqv, size 16, align 8, { lvcmdq_err_map: 0 });
        pin_layout!(FaultAlloc, size 16, align 4, {
            size: 0, flags: 4, out_fault_id: 8, out_fault_fd: 12,
        });
        pin_layout!(HwptPgfault, size 40, align 8, {
            flags: 0, dev_id: 4, pasid: 8, grpid: 12, perm: 16, reserved: 20, addr: 24,
            length: 32, cookie: 36,
        });
        pin_layout!(HwptPageResponse, size 8, align 4, { cookie: 0, code: 4 });
        pin_layout!(HwQueueAlloc, size 40, align 8, {
            size: 0, flags: 4, viommu_id: 8, type_: 12, index: 16, out_hw_queue_id: 20,
            nesting_parent_iova: 24, length: 32,
        });
    }

    #[test]
    fn min_sizes_match_spec_table() {
        assert_eq!(Destroy::MIN_SIZE, 8);
        assert_eq!(HwptAlloc::MIN_SIZE, 24);
        assert_eq!(HwInfo::MIN_SIZE, 32);
        assert_eq!(HwptInvalidate::MIN_SIZE, 32);
        assert_eq!(FaultAlloc::MIN_SIZE, 16);
        assert_eq!(ViommuAlloc::MIN_SIZE, 24);
        assert_eq!(VdeviceAlloc::MIN_SIZE, 24);
        assert_eq!(VeventqAlloc::MIN_SIZE, 28);
        assert_eq!(HwQueueAlloc::MIN_SIZE, 40);
    }

    #[test]
    fn ioctl_numbers_match_spec_table() {
        use ioctl::*;
        // (command number, full request number) as include/uapi/linux/iommufd.h defines them.
        let table = [
            (IOMMUFD_CMD_DESTROY, IOMMU_DESTROY, 0x80, 0x3b80),
            (IOMMUFD_CMD_IOAS_ALLOC, IOMMU_IOAS_ALLOC, 0x81, 0x3b81),
            (
                IOMMUFD_CMD_IOAS_ALLOW_IOVAS,
                IOMMU_IOAS_ALLOW_IOVAS,
                0x82,
                0x3b82,
            ),
            (IOMMUFD_CMD_IOAS_COPY, IOMMU_IOAS_COPY, 0x83, 0x3b83),
            (
                IOMMUFD_CMD_IOAS_IOVA_RANGES,
                IOMMU_IOAS_IOVA_RANGES,
                0x84,
                0x3b84,
            ),
            (IOMMUFD_CMD_IOAS_MAP, IOMMU_IOAS_MAP, 0x85, 0x3b85),
            (IOMMUFD_CMD_IOAS_UNMAP, IOMMU_IOAS_UNMAP, 0x86, 0x3b86),
            (IOMMUFD_CMD_OPTION, IOMMU_OPTION, 0x87, 0x3b87),
            (IOMMUFD_CMD_VFIO_IOAS, IOMMU_VFIO_IOAS, 0x88, 0x3b88),
            (IOMMUFD_CMD_HWPT_ALLOC, IOMMU_HWPT_ALLOC, 0x89, 0x3b89),
            (IOMMUFD_CMD_GET_HW_INFO, IOMMU_GET_HW_INFO, 0x8a, 0x3b8a),
            (
                IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING,
                IOMMU_HWPT_SET_DIRTY_TRACKING,
                0x8b,
                0x3b8b,
            ),
            (
                IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP,
                IOMMU_HWPT_GET_DIRTY_BITMAP,
                0x8c,
                0x3b8c,
            ),
            (
                IOMMUFD_CMD_HWPT_INVALIDATE,
                IOMMU_HWPT_INVALIDATE,
                0x8d,
                0x3b8d,
            ),
            (
                IOMMUFD_CMD_FAULT_QUEUE_ALLOC,
                IOMMU_FAULT_QUEUE_ALLOC,
                0x8e,
                0x3b8e,
            ),
            (IOMMUFD_CMD_IOAS_MAP_FILE, IOMMU_IOAS_MAP_FILE, 0x8f, 0x3b8f),
            (IOMMUFD_CMD_VIOMMU_ALLOC, IOMMU_VIOMMU_ALLOC, 0x90, 0x3b90),
            (IOMMUFD_CMD_VDEVICE_ALLOC, IOMMU_VDEVICE_ALLOC, 0x91, 0x3b91),
            (
                IOMMUFD_CMD_IOAS_CHANGE_PROCESS,
                IOMMU_IOAS_CHANGE_PROCESS,
                0x92,
                0x3b92,
            ),
            (IOMMUFD_CMD_VEVENTQ_ALLOC, IOMMU_VEVENTQ_ALLOC, 0x93, 0x3b93),
            (
                IOMMUFD_CMD_HW_QUEUE_ALLOC,
                IOMMU_HW_QUEUE_ALLOC,
                0x94,
                0x3b94,
            ),
        ];
        for (cmd, req, want_cmd, want_req) in table {
            assert_eq!((cmd, req), (want_cmd, want_req));
        }
        assert_eq!(IOMMUFD_CMD_DESTROY, IOMMUFD_CMD_BASE);
    }

    #[test]
    fn constants_match_spec() {
        assert_eq!(HwInfoType::NONE.raw(), 0);
        assert_eq!(HwInfoType::ArmSmmuv3.raw(), 2);
        assert_eq!(HwInfoType::Tegra241Cmdqv.raw(), 3);
        assert_eq!(ViommuType::ArmSmmuv3.raw(), 1);
        assert_eq!(ViommuType::Tegra241Cmdqv.raw(), 2);
        assert_eq!(HwptDataType::ArmSmmuv3.raw(), 2);
        assert_eq!(HwptInvalidateDataType::ArmSmmuv3.raw(), 1);
        assert_eq!(VeventqType::ArmSmmuv3.raw(), 1);
        assert_eq!(VeventqType::Tegra241Cmdqv.raw(), 2);
        assert_eq!(HwQueueType::Tegra241Cmdqv.raw(), 1);
        assert_eq!(PageResponseCode::Invalid.raw(), 1);
        assert_eq!(VeventFlags::LOST_EVENTS.bits(), 1);
        assert_eq!(HwInfoFlags::INPUT_TYPE.bits(), 1);
        assert_eq!(HwptAllocFlags::FAULT_ID_VALID.bits(), 4);
        assert_eq!(HwptAllocFlags::ALLOC_PASID.bits(), 8);
        assert_eq!(PgfaultFlags::LAST_PAGE.bits(), 2);
        assert_eq!(PgfaultPerm::PRIV.bits(), 8);
        assert_eq!(HwCapabilities::PCI_PASID_PRIV.bits(), 4);
        assert_eq!(VeventqType::from_raw(0xbeef_beef), None);
        assert_eq!(VeventqType::from_raw(2), Some(VeventqType::Tegra241Cmdqv));
    }

    #[test]
    fn byte_images_are_field_by_field() {
        let h = VeventHeader {
            flags: VeventFlags::LOST_EVENTS.bits(),
            sequence: 0x1234_5678,
        };
        let mut want = [0u8; 8];
        want[..4].copy_from_slice(&1u32.to_ne_bytes());
        want[4..].copy_from_slice(&0x1234_5678u32.to_ne_bytes());
        assert_eq!(h.to_bytes(), want);
        assert_eq!(VeventHeader::from_bytes(&want), h);
        assert!(h.is_lost_events());

        // __aligned_le64 payloads are little-endian on any host.
        let e = VeventTegra241Cmdqv {
            lvcmdq_err_map: [0x0102_0304_0506_0708, 0x1112_1314_1516_1718],
        };
        assert_eq!(
            e.to_bytes(),
            [
                8, 7, 6, 5, 4, 3, 2, 1, 0x18, 0x17, 0x16, 0x15, 0x14, 0x13, 0x12, 0x11
            ]
        );

        let hw = HwInfo {
            size: 40,
            flags: 1,
            dev_id: 3,
            data_len: 40,
            data_uptr: 0xdead_beef_0000,
            data_type: 3,
            out_max_pasid_log2: 20,
            reserved: [0, 0, 0],
            out_capabilities: 6,
        };
        let img = hw.to_bytes();
        assert_eq!(img[28], 20);
        assert_eq!(&img[16..24], &0xdead_beef_0000u64.to_ne_bytes());
        assert_eq!(HwInfo::from_bytes(&img), hw);
        assert_eq!(HwInfo::from_prefix(&img[..39]), None);
        assert_eq!(
            HwInfo::from_prefix(&[img.as_slice(), &[9]].concat()),
            Some(hw)
        );
    }

    proptest::proptest! {
        #[test]
        fn pgfault_roundtrip(
            flags in 0u32..4, dev_id: u32, pasid: u32, grpid: u32, perm in 0u32..16,
            addr: u64, cookie: u32,
        ) {
            let f = HwptPgfault { flags, dev_id, pasid, grpid, perm, reserved: 0, addr, length: 0, cookie };
            proptest::prop_assert_eq!(HwptPgfault::from_bytes(&f.to_bytes()), f);
        }

        #[test]
        fn smmuv3_vevent_roundtrip(evt: [u64; 4]) {
            let v = VeventArmSmmuv3 { evt };
            let b = v.to_bytes();
            for (i, w) in evt.iter().enumerate() {
                proptest::prop_assert_eq!(&b[8 * i..8 * i + 8], &w.to_le_bytes());
            }
            proptest::prop_assert_eq!(VeventArmSmmuv3::from_bytes(&b), v);
        }
    }

    /// Layout against Cloud Hypervisor's bindgen of the Linux header (`iommufd-bindings` 0.2).
    /// Every struct of this mirror is present in that crate version; it is newer than the
    /// snapshot this mirror follows (it also has the AMD additions), which changes none of
    /// these layouts.
    #[cfg(not(target_os = "none"))]
    mod bindings {
        use super::super::*;
        use iommufd_bindings as b;

        macro_rules! same_layout {
            ($ours:ty, $theirs:ty, { $($f:ident = $g:ident),* $(,)? }) => {{
                assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), "{} size", stringify!($ours));
                assert_eq!(align_of::<$ours>(), align_of::<$theirs>(), "{} align", stringify!($ours));
                $(
                    assert_eq!(offset_of!($ours, $f), offset_of!($theirs, $g),
                        "{}.{}", stringify!($ours), stringify!($f));
                )*
                assert_eq!(<$ours>::FIELDS, &[$(stringify!($f)),*], "{} field list", stringify!($ours));
            }};
        }

        #[test]
        fn layouts_match_iommufd_bindings() {
            same_layout!(HwInfo, b::iommu_hw_info, {
                size = size, flags = flags, dev_id = dev_id, data_len = data_len,
                data_uptr = data_uptr, data_type = __bindgen_anon_1,
                out_max_pasid_log2 = out_max_pasid_log2, reserved = __reserved,
                out_capabilities = out_capabilities,
            });
            same_layout!(HwInfoArmSmmuv3, b::iommu_hw_info_arm_smmuv3, {
                flags = flags, reserved = __reserved, idr = idr, iidr = iidr, aidr = aidr,
            });
            same_layout!(HwInfoTegra241Cmdqv, b::iommu_hw_info_tegra241_cmdqv, {
                flags = flags, version = version, log2vcmdqs = log2vcmdqs,
                log2vsids = log2vsids, reserved = __reserved,
            });
            same_layout!(ViommuAlloc, b::iommu_viommu_alloc, {
                size = size, flags = flags, type_ = type_, dev_id = dev_id, hwpt_id = hwpt_id,
                out_viommu_id = out_viommu_id, data_len = data_len, reserved = __reserved,
                data_uptr = data_uptr,
            });
            same_layout!(ViommuTegra241Cmdqv, b::iommu_viommu_tegra241_cmdqv, {
                out_vintf_mmap_offset = out_vintf_mmap_offset,
                out_vintf_mmap_length = out_vintf_mmap_length,
            });
            same_layout!(VdeviceAlloc, b::iommu_vdevice_alloc, {
                size = size, viommu_id = viommu_id, dev_id = dev_id,
                out_vdevice_id = out_vdevice_id, virt_id = virt_id,
            });
            same_layout!(HwptAlloc, b::iommu_hwpt_alloc, {
                size = size, flags = flags, dev_id = dev_id, pt_id = pt_id,
                out_hwpt_id = out_hwpt_id, reserved = __reserved, data_type = data_type,
                data_len = data_len, data_uptr = data_uptr, fault_id = fault_id,
                reserved2 = __reserved2,
            });
            same_layout!(HwptArmSmmuv3, b::iommu_hwpt_arm_smmuv3, { ste = ste });
            same_layout!(HwptInvalidate, b::iommu_hwpt_invalidate, {
                size = size, hwpt_id = hwpt_id, data_uptr = data_uptr, data_type = data_type,
                entry_len = entry_len, entry_num = entry_num, reserved = __reserved,
            });
            same_layout!(ViommuArmSmmuv3Invalidate, b::iommu_viommu_arm_smmuv3_invalidate, {
                cmd = cmd,
            });
            same_layout!(VeventqAlloc, b::iommu_veventq_alloc, {
                size = size, flags = flags, viommu_id = viommu_id, type_ = type_,
                veventq_depth = veventq_depth, out_veventq_id = out_veventq_id,
                out_veventq_fd = out_veventq_fd, reserved = __reserved,
            });
            same_layout!(VeventHeader, b::iommufd_vevent_header, {
                flags = flags, sequence = sequence,
            });
            same_layout!(VeventArmSmmuv3, b::iommu_vevent_arm_smmuv3, { evt = evt });
            same_layout!(VeventTegra241Cmdqv, b::iommu_vevent_tegra241_cmdqv, {
                lvcmdq_err_map = lvcmdq_err_map,
            });
            same_layout!(FaultAlloc, b::iommu_fault_alloc, {
                size = size, flags = flags, out_fault_id = out_fault_id,
                out_fault_fd = out_fault_fd,
            });
            same_layout!(HwptPgfault, b::iommu_hwpt_pgfault, {
                flags = flags, dev_id = dev_id, pasid = pasid, grpid = grpid, perm = perm,
                reserved = __reserved, addr = addr, length = length, cookie = cookie,
            });
            same_layout!(HwptPageResponse, b::iommu_hwpt_page_response, {
                cookie = cookie, code = code,
            });
            same_layout!(Destroy, b::iommu_destroy, { size = size, id = id });
            same_layout!(HwQueueAlloc, b::iommu_hw_queue_alloc, {
                size = size, flags = flags, viommu_id = viommu_id, type_ = type_,
                index = index, out_hw_queue_id = out_hw_queue_id,
                nesting_parent_iova = nesting_parent_iova, length = length,
            });
        }

        #[test]
        fn constants_match_iommufd_bindings() {
            assert_eq!(u32::from(ioctl::IOMMUFD_TYPE), u32::from(b::IOMMUFD_TYPE));
            assert_eq!(u32::from(ioctl::IOMMUFD_CMD_BASE), b::IOMMUFD_CMD_BASE);
            let nrs = [
                (
                    ioctl::IOMMUFD_CMD_DESTROY,
                    ioctl::IOMMU_DESTROY,
                    b::IOMMUFD_CMD_DESTROY,
                ),
                (
                    ioctl::IOMMUFD_CMD_IOAS_ALLOC,
                    ioctl::IOMMU_IOAS_ALLOC,
                    b::IOMMUFD_CMD_IOAS_ALLOC,
                ),
                (
                    ioctl::IOMMUFD_CMD_IOAS_ALLOW_IOVAS,
                    ioctl::IOMMU_IOAS_ALLOW_IOVAS,
                    b::IOMMUFD_CMD_IOAS_ALLOW_IOVAS,
                ),
                (
                    ioctl::IOMMUFD_CMD_IOAS_COPY,
                    ioctl::IOMMU_IOAS_COPY,
                    b::IOMMUFD_CMD_IOAS_COPY,
                ),
                (
                    ioctl::IOMMUFD_CMD_IOAS_IOVA_RANGES,
                    ioctl::IOMMU_IOAS_IOVA_RANGES,
                    b::IOMMUFD_CMD_IOAS_IOVA_RANGES,
                ),
                (
                    ioctl::IOMMUFD_CMD_IOAS_MAP,
                    ioctl::IOMMU_IOAS_MAP,
                    b::IOMMUFD_CMD_IOAS_MAP,
                ),
                (
                    ioctl::IOMMUFD_CMD_IOAS_UNMAP,
                    ioctl::IOMMU_IOAS_UNMAP,
                    b::IOMMUFD_CMD_IOAS_UNMAP,
                ),
                (
                    ioctl::IOMMUFD_CMD_OPTION,
                    ioctl::IOMMU_OPTION,
                    b::IOMMUFD_CMD_OPTION,
                ),
                (
                    ioctl::IOMMUFD_CMD_VFIO_IOAS,
                    ioctl::IOMMU_VFIO_IOAS,
                    b::IOMMUFD_CMD_VFIO_IOAS,
                ),
                (
                    ioctl::IOMMUFD_CMD_HWPT_ALLOC,
                    ioctl::IOMMU_HWPT_ALLOC,
                    b::IOMMUFD_CMD_HWPT_ALLOC,
                ),
                (
                    ioctl::IOMMUFD_CMD_GET_HW_INFO,
                    ioctl::IOMMU_GET_HW_INFO,
                    b::IOMMUFD_CMD_GET_HW_INFO,
                ),
                (
                    ioctl::IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING,
                    ioctl::IOMMU_HWPT_SET_DIRTY_TRACKING,
                    b::IOMMUFD_CMD_HWPT_SET_DIRTY_TRACKING,
                ),
                (
                    ioctl::IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP,
                    ioctl::IOMMU_HWPT_GET_DIRTY_BITMAP,
                    b::IOMMUFD_CMD_HWPT_GET_DIRTY_BITMAP,
                ),
                (
                    ioctl::IOMMUFD_CMD_HWPT_INVALIDATE,
                    ioctl::IOMMU_HWPT_INVALIDATE,
                    b::IOMMUFD_CMD_HWPT_INVALIDATE,
                ),
                (
                    ioctl::IOMMUFD_CMD_FAULT_QUEUE_ALLOC,
                    ioctl::IOMMU_FAULT_QUEUE_ALLOC,
                    b::IOMMUFD_CMD_FAULT_QUEUE_ALLOC,
                ),
                (
                    ioctl::IOMMUFD_CMD_IOAS_MAP_FILE,
                    ioctl::IOMMU_IOAS_MAP_FILE,
                    b::IOMMUFD_CMD_IOAS_MAP_FILE,
                ),
                (
                    ioctl::IOMMUFD_CMD_VIOMMU_ALLOC,
                    ioctl::IOMMU_VIOMMU_ALLOC,
                    b::IOMMUFD_CMD_VIOMMU_ALLOC,
                ),
                (
                    ioctl::IOMMUFD_CMD_VDEVICE_ALLOC,
                    ioctl::IOMMU_VDEVICE_ALLOC,
                    b::IOMMUFD_CMD_VDEVICE_ALLOC,
                ),
                (
                    ioctl::IOMMUFD_CMD_IOAS_CHANGE_PROCESS,
                    ioctl::IOMMU_IOAS_CHANGE_PROCESS,
                    b::IOMMUFD_CMD_IOAS_CHANGE_PROCESS,
                ),
                (
                    ioctl::IOMMUFD_CMD_VEVENTQ_ALLOC,
                    ioctl::IOMMU_VEVENTQ_ALLOC,
                    b::IOMMUFD_CMD_VEVENTQ_ALLOC,
                ),
                (
                    ioctl::IOMMUFD_CMD_HW_QUEUE_ALLOC,
                    ioctl::IOMMU_HW_QUEUE_ALLOC,
                    b::IOMMUFD_CMD_HW_QUEUE_ALLOC,
                ),
            ];
            for (cmd, req, nr) in nrs {
                assert_eq!(u32::from(cmd), nr);
                assert_eq!(req, (u32::from(b::IOMMUFD_TYPE) << 8) | nr);
            }

            assert_eq!(
                HwInfoType::NONE.raw(),
                b::iommu_hw_info_type_IOMMU_HW_INFO_TYPE_NONE
            );
            assert_eq!(
                HwInfoType::Default.raw(),
                b::iommu_hw_info_type_IOMMU_HW_INFO_TYPE_DEFAULT
            );
            assert_eq!(
                HwInfoType::IntelVtd.raw(),
                b::iommu_hw_info_type_IOMMU_HW_INFO_TYPE_INTEL_VTD
            );
            assert_eq!(
                HwInfoType::ArmSmmuv3.raw(),
                b::iommu_hw_info_type_IOMMU_HW_INFO_TYPE_ARM_SMMUV3
            );
            assert_eq!(
                HwInfoType::Tegra241Cmdqv.raw(),
                b::iommu_hw_info_type_IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV
            );
            assert_eq!(
                HwInfoFlags::INPUT_TYPE.bits(),
                b::iommufd_hw_info_flags_IOMMU_HW_INFO_FLAG_INPUT_TYPE
            );
            assert_eq!(
                HwCapabilities::DIRTY_TRACKING.bits(),
                u64::from(b::iommufd_hw_capabilities_IOMMU_HW_CAP_DIRTY_TRACKING)
            );
            assert_eq!(
                HwCapabilities::PCI_PASID_EXEC.bits(),
                u64::from(b::iommufd_hw_capabilities_IOMMU_HW_CAP_PCI_PASID_EXEC)
            );
            assert_eq!(
                HwCapabilities::PCI_PASID_PRIV.bits(),
                u64::from(b::iommufd_hw_capabilities_IOMMU_HW_CAP_PCI_PASID_PRIV)
            );

            assert_eq!(
                ViommuType::Default.raw(),
                b::iommu_viommu_type_IOMMU_VIOMMU_TYPE_DEFAULT
            );
            assert_eq!(
                ViommuType::ArmSmmuv3.raw(),
                b::iommu_viommu_type_IOMMU_VIOMMU_TYPE_ARM_SMMUV3
            );
            assert_eq!(
                ViommuType::Tegra241Cmdqv.raw(),
                b::iommu_viommu_type_IOMMU_VIOMMU_TYPE_TEGRA241_CMDQV
            );

            assert_eq!(
                HwptAllocFlags::NEST_PARENT.bits(),
                b::iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_NEST_PARENT
            );
            assert_eq!(
                HwptAllocFlags::DIRTY_TRACKING.bits(),
                b::iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_DIRTY_TRACKING
            );
            assert_eq!(
                HwptAllocFlags::FAULT_ID_VALID.bits(),
                b::iommufd_hwpt_alloc_flags_IOMMU_HWPT_FAULT_ID_VALID
            );
            assert_eq!(
                HwptAllocFlags::ALLOC_PASID.bits(),
                b::iommufd_hwpt_alloc_flags_IOMMU_HWPT_ALLOC_PASID
            );
            assert_eq!(
                HwptDataType::None.raw(),
                b::iommu_hwpt_data_type_IOMMU_HWPT_DATA_NONE
            );
            assert_eq!(
                HwptDataType::VtdS1.raw(),
                b::iommu_hwpt_data_type_IOMMU_HWPT_DATA_VTD_S1
            );
            assert_eq!(
                HwptDataType::ArmSmmuv3.raw(),
                b::iommu_hwpt_data_type_IOMMU_HWPT_DATA_ARM_SMMUV3
            );
            assert_eq!(
                HwptInvalidateDataType::VtdS1.raw(),
                b::iommu_hwpt_invalidate_data_type_IOMMU_HWPT_INVALIDATE_DATA_VTD_S1
            );
            assert_eq!(
                HwptInvalidateDataType::ArmSmmuv3.raw(),
                b::iommu_hwpt_invalidate_data_type_IOMMU_VIOMMU_INVALIDATE_DATA_ARM_SMMUV3
            );

            assert_eq!(
                VeventqType::Default.raw(),
                b::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_DEFAULT
            );
            assert_eq!(
                VeventqType::ArmSmmuv3.raw(),
                b::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_ARM_SMMUV3
            );
            assert_eq!(
                VeventqType::Tegra241Cmdqv.raw(),
                b::iommu_veventq_type_IOMMU_VEVENTQ_TYPE_TEGRA241_CMDQV
            );
            assert_eq!(
                VeventFlags::LOST_EVENTS.bits(),
                b::iommu_veventq_flag_IOMMU_VEVENTQ_FLAG_LOST_EVENTS
            );

            assert_eq!(
                HwQueueType::Default.raw(),
                b::iommu_hw_queue_type_IOMMU_HW_QUEUE_TYPE_DEFAULT
            );
            assert_eq!(
                HwQueueType::Tegra241Cmdqv.raw(),
                b::iommu_hw_queue_type_IOMMU_HW_QUEUE_TYPE_TEGRA241_CMDQV
            );

            assert_eq!(
                PgfaultFlags::PASID_VALID.bits(),
                b::iommu_hwpt_pgfault_flags_IOMMU_PGFAULT_FLAGS_PASID_VALID
            );
            assert_eq!(
                PgfaultFlags::LAST_PAGE.bits(),
                b::iommu_hwpt_pgfault_flags_IOMMU_PGFAULT_FLAGS_LAST_PAGE
            );
            assert_eq!(
                PgfaultPerm::READ.bits(),
                b::iommu_hwpt_pgfault_perm_IOMMU_PGFAULT_PERM_READ
            );
            assert_eq!(
                PgfaultPerm::WRITE.bits(),
                b::iommu_hwpt_pgfault_perm_IOMMU_PGFAULT_PERM_WRITE
            );
            assert_eq!(
                PgfaultPerm::EXEC.bits(),
                b::iommu_hwpt_pgfault_perm_IOMMU_PGFAULT_PERM_EXEC
            );
            assert_eq!(
                PgfaultPerm::PRIV.bits(),
                b::iommu_hwpt_pgfault_perm_IOMMU_PGFAULT_PERM_PRIV
            );
            assert_eq!(
                PageResponseCode::Success.raw(),
                b::iommufd_page_response_code_IOMMUFD_PAGE_RESP_SUCCESS
            );
            assert_eq!(
                PageResponseCode::Invalid.raw(),
                b::iommufd_page_response_code_IOMMUFD_PAGE_RESP_INVALID
            );
        }
    }
}
