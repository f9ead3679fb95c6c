//! The crate's error type and its one mapping to Linux errno values.

use core::fmt;

use crate::cd::CdError;
use crate::command::DecodeError;
use crate::ids::{StreamId, VStreamId};
use crate::ste::SteError;
use crate::viommu::ViommuId;

/// What a bounded wait was waiting for when it gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WaitFor {
    /// SMMU_CR0ACK to equal the value written to SMMU_CR0 (IHI 0070 §6.3.10).
    Cr0Ack,
    /// SMMU_IRQ_CTRLACK to equal the value written to SMMU_IRQ_CTRL (IHI 0070 §6.3.18).
    IrqCtrlAck,
    /// SMMU_GBPA.UPDATE to clear (IHI 0070 §6.3.14).
    GbpaUpdate,
    /// A CMD_SYNC to be consumed (CONS past it, or its MSI write-back).
    CmdSync,
    /// Room in a command queue.
    CmdqSpace,
    /// Tegra241 CMDQV_STATUS.CMDQV_ENABLED to follow CMDQV_CONFIG.CMDQV_EN.
    CmdqvEnable,
    /// Tegra241 VINTF STATUS.ENABLE_OK to follow VINTF CONFIG.ENABLE.
    VintfEnable,
    /// Tegra241 VCMDQ_STATUS.CMDQ_EN_OK to follow VCMDQ_CONFIG.CMDQ_EN.
    VcmdqEnable,
}

/// A hardware capability the driver needed and the SMMU (or the caller's configuration) lacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Feature {
    /// AArch64 translation tables (IDR0.TTF).
    Aarch64Tables,
    /// Little-endian tables and queues (IDR0.TTENDIAN).
    LittleEndian,
    /// Stage-1 translation (IDR0.S1P).
    Stage1,
    /// Stage-2 translation (IDR0.S2P).
    Stage2,
    /// Both stages at once (nesting).
    Nesting,
    /// A 2-level stream table (IDR0.ST_LEVEL).
    TwoLevelStreamTable,
    /// Enough StreamID bits (IDR1.SIDSIZE) for the configuration.
    StreamIdBits,
    /// Enough SubstreamID bits (IDR1.SSIDSIZE).
    SubstreamIdBits,
    /// MSIs (IDR0.MSI).
    Msi,
    /// Wake-up events for CMD_SYNC (IDR0.SEV).
    Sev,
    /// The PRI queue (IDR0.PRI).
    Pri,
    /// PCIe ATS (IDR0.ATS).
    Ats,
    /// Stalling faults (IDR0.STALL_MODEL).
    Stall,
    /// Queue or table base addresses that software programs (IDR1.REL/QUEUES_PRESET/TABLES_PRESET).
    ProgrammableBases,
    /// A translation granule or address size the SMMU does not implement (IDR5).
    Granule,
    /// The NVIDIA Tegra241 CMDQV extension.
    Cmdqv,
    /// Stage-2 forced write-back (IDR3.FWB), which a VM whose devices are not all coherent needs.
    S2Fwb,
}

/// Why the command queue stopped (SMMU_CMDQ_CONS.ERR, IHI 0070 §4.8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum CmdqError {
    /// CERROR_ILL: an illegal or malformed command; it carries the command's two raw dwords.
    Illegal([u64; 2]),
    /// CERROR_ABT: an external abort fetching a command.
    Abort,
    /// CERROR_ATC_INV_SYNC: an ATC invalidation did not complete before the CMD_SYNC.
    AtcInvSync,
    /// Tegra241 VCMDQ CERROR_ILL_ACCESS: a guest queue issued a command it may not issue.
    IllegalAccess([u64; 2]),
    /// A CONS.ERR value the architecture does not define.
    Unknown(u8),
}

/// The object an error is about: which handle was missing, in use or already taken.
///
/// Handles are the numbers a hypervisor already holds (iommufd object IDs, StreamIDs, queue and
/// interface indices), so an error can be logged or matched without a second lookup.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Object {
    /// A vIOMMU, by the handle [`crate::viommu::Router::alloc_viommu`] returned (IOMMU_VIOMMU_ALLOC).
    Viommu(ViommuId),
    /// A vDEVICE, by its virtual StreamID within its vIOMMU (IOMMU_VDEVICE_ALLOC `virt_id`).
    VDevice(VStreamId),
    /// The binding or route of a physical StreamID.
    Stream(StreamId),
    /// A vIOMMU's vEVENTQ of one type (`enum iommu_veventq_type`, IOMMU_VEVENTQ_ALLOC).
    Veventq(u32),
    /// The fault queue of a vIOMMU, by the vIOMMU's handle (IOMMU_FAULT_QUEUE_ALLOC).
    FaultQueue(ViommuId),
    /// A page request group awaiting its response, by the cookie reported to user space
    /// (`struct iommu_hwpt_pgfault`).
    PageRequest(u32),
    /// A Tegra241 VINTF, by index.
    Vintf(u8),
    /// A Tegra241 logical VCMDQ (an IOMMU_HW_QUEUE_ALLOC HW queue), by VINTF and logical index.
    Vcmdq {
        /// The VINTF the queue belongs to.
        vintf: u8,
        /// The queue's index within the VINTF.
        index: u32,
    },
    /// A VMID, which tags the TLB entries of one stage 2 (IHI 0070 §3.9.1).
    Vmid(u16),
    /// An SMMU's register pages, which one driver value at a time may drive.
    Smmu,
}

/// Why a guest-supplied command or table entry was refused (the vIOMMU sanitisers). iommufd
/// reports every refusal as `EIO`, as Linux's `arm_smmu_convert_user_cmd` and
/// `arm_smmu_validate_vste` do; the reason is for the hypervisor's log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Rejection {
    /// The command does not decode: unknown opcode, SSec = 1 or a reserved field value.
    Undecodable(DecodeError),
    /// The command decodes but a guest may not issue it (its raw opcode, IHI 0070 §4.1.1).
    Opcode(u8),
    /// The command names a virtual StreamID that has no vDEVICE in the vIOMMU.
    UnboundVsid(VStreamId),
    /// The command uses a field the SMMU does not implement (e.g. range invalidation without
    /// IDR3.RIL): the dword index and the offending bits, in place.
    CommandBits {
        /// Dword 0 or 1 of the command.
        dword: u8,
        /// The offending bits, in place.
        bits: u64,
    },
    /// A guest STE sets bits a guest may not supply: the dword index and the offending bits.
    SteBits {
        /// The STE dword (0..8).
        dword: u8,
        /// The offending bits, in place.
        bits: u64,
    },
    /// A guest STE whose Config (STE.Config, IHI 0070 §5.2) a guest may not use.
    SteConfig(u8),
}

/// A number the caller supplied that is outside what the hardware or the table allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Quantity {
    /// log2 of a queue's entry count, against SMMU_IDR1.CMDQS/EVENTQS/PRIQS (IHI 0070 §6.3.2).
    QueueLog2,
    /// A VMID, against SMMU_IDR0.VMID16 (0 is reserved for the host).
    Vmid,
    /// An ASID, against SMMU_IDR0.ASID16.
    Asid,
    /// A virtual StreamID, against the width of the field that holds it.
    VStreamId,
    /// A queue or interface index, against the number implemented.
    Index,
    /// A queue depth or length in bytes.
    Length,
    /// A StreamID width in bits, against SMMU_IDR1.SIDSIZE (at most 32):
    /// [`Config::sid_bits`](crate::smmu::Config::sid_bits) (a 2-level stream table needs at
    /// least 6, the smallest SPLIT) or a guest-visible SMMU's `VSmmuConfig::sid_bits`.
    StreamIdBits,
    /// An address width in bits (an IPA size, SMMU_IDR5.OAS).
    AddressBits,
    /// The address of a queue or table (physical, or the CPU's for a DMA buffer), against its
    /// alignment or the address bits of the register that holds it.
    Address,
}

/// The error type of the crate. Small, `Copy`, and carrying the value that failed.
///
/// The variants below the "legacy" line carry nothing; the code that still returns them moves
/// to the variants above it (see `docs/errors.md`). Match on [`Error::errno`] for the Linux code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Error {
    /// A bounded wait expired.
    Timeout(WaitFor),
    /// The command queue reported an error for a command of this batch.
    Cmdq(CmdqError),
    /// The lent DMA memory could not satisfy an allocation.
    NoMemory,
    /// A fixed-size table, queue or ring is full.
    NoSpace,
    /// A StreamID outside the stream table or the SMMU's SIDSIZE.
    BadStreamId(StreamId),
    /// The SMMU lacks a capability the request needs.
    Unsupported(Feature),
    /// No such object (`ENOENT`).
    NoSuch(Object),
    /// The object is in use, e.g. a vIOMMU that still has vDEVICEs (`EBUSY`).
    InUse(Object),
    /// The object already exists, e.g. a second vEVENTQ of one type (`EEXIST`).
    AlreadyExists(Object),
    /// Objects of one kind are created in ascending and destroyed in descending order, and this
    /// one's predecessor does not exist (Tegra241 HW queues; `EIO` as Linux).
    OutOfOrder(Object),
    /// A guest-supplied command or table entry was refused by a sanitiser (`EIO`).
    Rejected(Rejection),
    /// A caller-supplied number is out of range (`EINVAL`).
    OutOfRange {
        /// What the number is.
        what: Quantity,
        /// The value supplied.
        value: u64,
        /// The largest value accepted.
        max: u64,
    },
    /// A reserved field of a user structure is not zero, or a reserved (DEFAULT) type was asked
    /// for (`EOPNOTSUPP`, as Linux's iommufd ioctls answer a non-zero `__reserved` or `flags`).
    Reserved {
        /// The C name of the field, `struct.field` as `include/uapi/linux/iommufd.h` spells it.
        field: &'static str,
        /// The value found there.
        value: u64,
    },
    /// An STE the caller built or supplied is not one the SMMU accepts (`EINVAL`).
    Ste(SteError),
    /// A CD the caller built or supplied is not one the SMMU accepts (`EINVAL`).
    Cd(CdError),
    /// The SMMU is disabled (service failure mode, or not yet enabled).
    Disabled,
    /// A user-supplied structure is larger than this library knows and its unknown tail is not
    /// zero (the iommufd size-prefix rule).
    TooBig,
    /// A field of a user structure holds a value the call refuses (`EINVAL`): an unknown type
    /// or code, a zero length, a cookie or size that names nothing.
    Invalid {
        /// The C name of the field, `struct.field` as `include/uapi/linux/iommufd.h` spells it.
        field: &'static str,
        /// The value found there.
        value: u64,
    },
    /// The object exists but is of another type than the call needs, e.g. a TEGRA241_CMDQV
    /// vIOMMU given to a call for an ARM_SMMUV3 one (`EINVAL`).
    WrongType(Object),
    /// A caller-supplied number is below the smallest accepted (`EINVAL`).
    TooSmall {
        /// What the number is.
        what: Quantity,
        /// The value supplied.
        value: u64,
        /// The smallest value accepted.
        min: u64,
    },
    /// An address or size is not a multiple of the alignment it needs (`EINVAL`).
    Misaligned {
        /// What the number is.
        what: Quantity,
        /// The value supplied.
        value: u64,
        /// The alignment it needs, in bytes (a power of two).
        align: u64,
    },
    /// An address range whose last byte does not fit 64 bits (`EOVERFLOW`, as Linux's
    /// iommufd answers a `base + length` that wraps).
    RangeWraps {
        /// The first address.
        base: u64,
        /// The length in bytes.
        length: u64,
    },
}

/// Linux errno values (asm-generic/errno-base.h and errno.h).
pub mod errno {
    /// No such file or directory.
    pub const ENOENT: i32 = 2;
    /// I/O error.
    pub const EIO: i32 = 5;
    /// Argument list too long.
    pub const E2BIG: i32 = 7;
    /// Out of memory.
    pub const ENOMEM: i32 = 12;
    /// Bad address.
    pub const EFAULT: i32 = 14;
    /// Device or resource busy.
    pub const EBUSY: i32 = 16;
    /// File exists.
    pub const EEXIST: i32 = 17;
    /// No such device.
    pub const ENODEV: i32 = 19;
    /// Invalid argument.
    pub const EINVAL: i32 = 22;
    /// No space left on device.
    pub const ENOSPC: i32 = 28;
    /// Math result not representable.
    pub const ERANGE: i32 = 34;
    /// Value too large for defined data type.
    pub const EOVERFLOW: i32 = 75;
    /// Operation not supported.
    pub const EOPNOTSUPP: i32 = 95;
    /// Connection timed out.
    pub const ETIMEDOUT: i32 = 110;
}

impl Error {
    /// The negative Linux errno an iommufd ioctl would return for this error.
    pub const fn errno(self) -> i32 {
        -(match self {
            Error::Timeout(_) => errno::ETIMEDOUT,
            Error::Cmdq(_) | Error::Rejected(_) | Error::OutOfOrder(_) => errno::EIO,
            Error::NoMemory => errno::ENOMEM,
            Error::NoSpace => errno::ENOSPC,
            Error::BadStreamId(_)
            | Error::OutOfRange { .. }
            | Error::Ste(_)
            | Error::Cd(_)
            | Error::Invalid { .. }
            | Error::WrongType(_)
            | Error::TooSmall { .. }
            | Error::Misaligned { .. } => errno::EINVAL,
            Error::Unsupported(_) | Error::Reserved { .. } => errno::EOPNOTSUPP,
            Error::InUse(_) => errno::EBUSY,
            Error::AlreadyExists(_) => errno::EEXIST,
            Error::NoSuch(_) => errno::ENOENT,
            Error::RangeWraps { .. } => errno::EOVERFLOW,
            Error::Disabled => errno::ENODEV,
            Error::TooBig => errno::E2BIG,
        })
    }
}

impl fmt::Display for Object {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Object::Viommu(id) => write!(f, "vIOMMU {:#x}", id.0),
            Object::VDevice(vsid) => write!(f, "vDEVICE with virtual StreamID {}", vsid.0),
            Object::Stream(sid) => write!(f, "StreamID {sid}"),
            Object::Veventq(ty) => write!(f, "vEVENTQ of type {ty}"),
            Object::FaultQueue(id) => write!(f, "fault queue of vIOMMU {:#x}", id.0),
            Object::PageRequest(cookie) => write!(f, "page request {cookie}"),
            Object::Vintf(v) => write!(f, "VINTF {v}"),
            Object::Vcmdq { vintf, index } => write!(f, "VCMDQ {index} of VINTF {vintf}"),
            Object::Vmid(vmid) => write!(f, "VMID {vmid}"),
            Object::Smmu => f.write_str("SMMU register pages"),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rejection::Undecodable(e) => write!(f, "{e}"),
            Rejection::Opcode(op) => write!(f, "command {op:#04x} not allowed from a guest"),
            Rejection::UnboundVsid(v) => write!(f, "virtual StreamID {} has no vDEVICE", v.0),
            Rejection::CommandBits { dword, bits } => {
                write!(f, "command dword {dword} bits {bits:#x} not supported")
            }
            Rejection::SteBits { dword, bits } => {
                write!(f, "guest STE dword {dword} bits {bits:#x} not allowed")
            }
            Rejection::SteConfig(c) => write!(f, "guest STE Config {c:#05b} not allowed"),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Timeout(w) => write!(f, "timed out waiting for {w:?}"),
            Error::Cmdq(e) => write!(f, "command queue error: {e:?}"),
            Error::NoMemory => f.write_str("out of lent DMA memory"),
            Error::NoSpace => f.write_str("no space left in a fixed-size table or ring"),
            Error::BadStreamId(sid) => write!(f, "StreamID {sid} out of range"),
            Error::Unsupported(feat) => write!(f, "SMMU lacks {feat:?}"),
            Error::NoSuch(o) => write!(f, "no such {o}"),
            Error::InUse(o) => write!(f, "{o} is in use"),
            Error::AlreadyExists(o) => write!(f, "{o} already exists"),
            Error::OutOfOrder(o) => write!(f, "{o} created or destroyed out of order"),
            Error::Rejected(r) => write!(f, "rejected: {r}"),
            Error::OutOfRange { what, value, max } => {
                write!(f, "{what:?} {value:#x} out of range (at most {max:#x})")
            }
            Error::Reserved { field, value } => {
                write!(f, "reserved field {field} is {value:#x}, not 0")
            }
            Error::Ste(e) => write!(f, "bad STE: {e:?}"),
            Error::Cd(e) => write!(f, "bad CD: {e:?}"),
            Error::Disabled => f.write_str("SMMU disabled"),
            Error::TooBig => f.write_str("structure too big, with a non-zero unknown tail"),
            Error::Invalid { field, value } => write!(f, "{field} = {value:#x} refused"),
            Error::WrongType(o) => write!(f, "{o} is of another type than the call needs"),
            Error::TooSmall { what, value, min } => {
                write!(f, "{what:?} {value:#x} too small (at least {min:#x})")
            }
            Error::Misaligned { what, value, align } => {
                write!(f, "{what:?} {value:#x} not aligned to {align:#x}")
            }
            Error::RangeWraps { base, length } => {
                write!(
                    f,
                    "range {base:#x} + {length:#x} wraps past the top of the address space"
                )
            }
        }
    }
}

impl core::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_matches_linux() {
        assert_eq!(Error::Timeout(WaitFor::CmdSync).errno(), -110);
        assert_eq!(Error::Unsupported(Feature::Stage2).errno(), -95);
        assert_eq!(Error::NoSpace.errno(), -28);
        assert_eq!(Error::TooBig.errno(), -7);
    }

    /// Each variant answers the errno Linux's iommufd and SMMUv3 driver give for the same
    /// failure (the values of asm-generic/errno-base.h and errno.h, written out here).
    #[test]
    fn carrying_variants_answer_linux_errnos() {
        let vintf = Object::Vintf(3);
        let pairs = [
            (Error::NoSuch(vintf), -2),
            (Error::InUse(vintf), -16),
            (Error::AlreadyExists(Object::Veventq(1)), -17),
            (Error::Rejected(Rejection::Opcode(0x46)), -5),
            (Error::OutOfOrder(Object::Vcmdq { vintf: 1, index: 2 }), -5),
            (
                Error::OutOfRange {
                    what: Quantity::QueueLog2,
                    value: 20,
                    max: 19,
                },
                -22,
            ),
            (Error::Ste(SteError::ReservedS1Fmt), -22),
            (Error::Cd(CdError::ReservedTg0), -22),
            (
                Error::Invalid {
                    field: "iommu_veventq_alloc.veventq_depth",
                    value: 0,
                },
                -22,
            ),
            (Error::WrongType(Object::Viommu(ViommuId(1))), -22),
            (Error::NoSuch(Object::FaultQueue(ViommuId(1))), -2),
            (Error::AlreadyExists(Object::Vmid(1)), -17),
            (
                Error::OutOfRange {
                    what: Quantity::AddressBits,
                    value: 60,
                    max: 52,
                },
                -22,
            ),
            (Error::InUse(Object::Smmu), -16),
            (
                Error::TooSmall {
                    what: Quantity::StreamIdBits,
                    value: 5,
                    min: 6,
                },
                -22,
            ),
            (
                Error::Misaligned {
                    what: Quantity::Address,
                    value: 0x1010,
                    align: 0x1000,
                },
                -22,
            ),
            (
                Error::RangeWraps {
                    base: u64::MAX,
                    length: 2,
                },
                -75,
            ),
        ];
        for (e, want) in pairs {
            assert_eq!(e.errno(), want, "{e:?}");
        }
    }

    #[test]
    fn reserved_fields_are_eopnotsupp_not_a_missing_feature() {
        let e = Error::Reserved {
            field: "iommu_hwpt_invalidate.__reserved",
            value: 1,
        };
        assert_eq!(e.errno(), -95);
        assert_ne!(e, Error::Unsupported(Feature::Nesting));
    }

    /// The text says what failed, with the offending value.
    #[test]
    fn display_names_the_object_and_value() {
        let cases: [(Error, &str); 13] = [
            (Error::NoSuch(Object::Vintf(3)), "no such VINTF 3"),
            (
                Error::InUse(Object::Viommu(ViommuId(7))),
                "vIOMMU 0x7 is in use",
            ),
            (
                Error::AlreadyExists(Object::VDevice(VStreamId(0x10))),
                "vDEVICE with virtual StreamID 16 already exists",
            ),
            (
                Error::Rejected(Rejection::SteBits {
                    dword: 1,
                    bits: 0x100,
                }),
                "rejected: guest STE dword 1 bits 0x100 not allowed",
            ),
            (
                Error::Rejected(Rejection::Undecodable(DecodeError::Secure)),
                "rejected: ",
            ),
            (
                Error::OutOfRange {
                    what: Quantity::QueueLog2,
                    value: 20,
                    max: 19,
                },
                "QueueLog2 0x14 out of range (at most 0x13)",
            ),
            (
                Error::Reserved {
                    field: "iommu_hwpt_invalidate.__reserved",
                    value: 2,
                },
                "reserved field iommu_hwpt_invalidate.__reserved is 0x2, not 0",
            ),
            (
                Error::Invalid {
                    field: "iommu_hwpt_page_response.code",
                    value: 7,
                },
                "iommu_hwpt_page_response.code = 0x7 refused",
            ),
            (
                Error::WrongType(Object::Viommu(ViommuId(0x1_0002))),
                "vIOMMU 0x10002 is of another type",
            ),
            (
                Error::AlreadyExists(Object::Vmid(9)),
                "VMID 9 already exists",
            ),
            (
                Error::TooSmall {
                    what: Quantity::StreamIdBits,
                    value: 5,
                    min: 6,
                },
                "StreamIdBits 0x5 too small (at least 0x6)",
            ),
            (
                Error::Misaligned {
                    what: Quantity::Address,
                    value: 0x1010,
                    align: 0x1000,
                },
                "Address 0x1010 not aligned to 0x1000",
            ),
            (
                Error::RangeWraps {
                    base: 0xffff_ffff_ffff_f000,
                    length: 0x2000,
                },
                "range 0xfffffffffffff000 + 0x2000 wraps",
            ),
        ];
        for (e, want) in cases {
            let got = std::format!("{e}");
            assert!(got.starts_with(want), "{got:?} vs {want:?}");
        }
    }
}
