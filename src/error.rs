//! The crate's error type and its one mapping to Linux errno values.

use core::fmt;

use crate::ids::StreamId;

/// What a bounded wait was waiting for when it gave up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum WaitFor {
    /// SMMU_CR0ACK to equal the value written to SMMU_CR0 (IHI 0070 §6.3.10).
    Cr0Ack,
    /// SMMU_IRQ_CTRLACK to equal the value written to SMMU_IRQ_CTRL (IHI 0070 §6.3.22).
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

/// The error type of the crate. Small, `Copy`, and carrying the value that failed.
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
    /// An argument is malformed or out of range.
    InvalidArgument,
    /// The object is in use (e.g. a vIOMMU that still has vDEVICEs).
    Busy,
    /// The object already exists (e.g. a second vEVENTQ of one type).
    Exists,
    /// No such object.
    NotFound,
    /// A guest-supplied command or entry was rejected by the sanitiser.
    Io,
    /// A value does not fit its field.
    Overflow,
    /// The SMMU is disabled (service failure mode, or not yet enabled).
    Disabled,
    /// A user-supplied structure is larger than this library knows and its unknown tail is not
    /// zero (the iommufd size-prefix rule).
    TooBig,
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
            Error::Cmdq(_) | Error::Io => errno::EIO,
            Error::NoMemory => errno::ENOMEM,
            Error::NoSpace => errno::ENOSPC,
            Error::BadStreamId(_) | Error::InvalidArgument => errno::EINVAL,
            Error::Unsupported(_) => errno::EOPNOTSUPP,
            Error::Busy => errno::EBUSY,
            Error::Exists => errno::EEXIST,
            Error::NotFound => errno::ENOENT,
            Error::Overflow => errno::EOVERFLOW,
            Error::Disabled => errno::ENODEV,
            Error::TooBig => errno::E2BIG,
        })
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
            Error::InvalidArgument => f.write_str("invalid argument"),
            Error::Busy => f.write_str("object busy"),
            Error::Exists => f.write_str("object exists"),
            Error::NotFound => f.write_str("no such object"),
            Error::Io => f.write_str("rejected by the sanitiser"),
            Error::Overflow => f.write_str("value does not fit its field"),
            Error::Disabled => f.write_str("SMMU disabled"),
            Error::TooBig => f.write_str("structure too big, with a non-zero unknown tail"),
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
        assert_eq!(Error::Exists.errno(), -17);
        assert_eq!(Error::Io.errno(), -5);
        assert_eq!(Error::InvalidArgument.errno(), -22);
        assert_eq!(Error::Unsupported(Feature::Stage2).errno(), -95);
        assert_eq!(Error::NoSpace.errno(), -28);
        assert_eq!(Error::TooBig.errno(), -7);
    }
}
