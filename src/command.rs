//! Command queue entries (IHI 0070 §4): the typed [`Command`] and its raw 16-byte [`CmdqEntry`].
//!
//! [`Command::encode`] never fails: each field is truncated to its width in the entry.
//! [`Command::decode`] never panics: it refuses unknown opcodes, SSec = 1 and reserved field
//! values, and ignores RES0 bits, so that `decode` then `encode` yields a clean command that
//! is safe to place on the Non-secure queue (the guest-command sanitiser relies on this).
//! Field positions are the ones of IHI 0070 §4.2-§4.7 and are named once, below.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::fmt;

use tock_registers::register_bitfields;

use crate::error::{Error, Rejection};
use crate::ids::{Asid, PhysAddr, StreamId, SubstreamId, Vmid};
use crate::regs::bits::{get, is_set, put, set};

register_bitfields![u64,
    /// Command dword 0: the fields common to every command (IHI 0070 §4.1.1, §4.1.6) and the
    /// per-command ones of §4.2-§4.7. Fields of different commands overlap; each is named once.
    pub(crate) CMD0 [
        /// Opcode, bits `[7:0]` (§4.1.1).
        OPCODE OFFSET(0) NUMBITS(8) [],
        /// ATC_INV Global, bit `[9]` (§4.5.1).
        GLOBAL OFFSET(9) NUMBITS(1) [],
        /// SSec (Secure stream), bit `[10]` (§4.1.6).
        SSEC OFFSET(10) NUMBITS(1) [],
        /// SSV (SubstreamID valid), bit `[11]` (§4.1.6).
        SSV OFFSET(11) NUMBITS(1) [],
        /// SubstreamID, bits `[31:12]` (§4.1.6).
        SSID OFFSET(12) NUMBITS(20) [],
        /// StreamID, bits `[63:32]` (§4.1.6).
        SID OFFSET(32) NUMBITS(32) [],
        /// VMID of TLBI commands and CFGI_VMS_PIDM, bits `[47:32]` (§4.4).
        VMID OFFSET(32) NUMBITS(16) [],
        /// ASID of TLBI commands, bits `[63:48]` (§4.4).
        ASID OFFSET(48) NUMBITS(16) [],
        /// TLBI range NUM, bits `[16:12]` (§4.4.1).
        NUM OFFSET(12) NUMBITS(5) [],
        /// TLBI range SCALE, bits `[25:20]`; bit 25 is RES0 unless IDR5.DS = 1 (§4.4.1).
        SCALE OFFSET(20) NUMBITS(6) [],
        /// CMD_RESUME Action, bits `[13:12]`: bit 12 Ac (retry), bit 13 Ab (abort) (§4.6.2).
        ACTION OFFSET(12) NUMBITS(2) [],
        /// CMD_SYNC CS, bits `[13:12]` (§4.7.3).
        CS OFFSET(12) NUMBITS(2) [],
        /// CMD_SYNC MSH, bits `[23:22]` (§4.7.3).
        MSH OFFSET(22) NUMBITS(2) [],
        /// CMD_SYNC MSIAttr, bits `[27:24]` (§4.7.3).
        MSIATTR OFFSET(24) NUMBITS(4) [],
        /// CMD_SYNC MSIData, bits `[63:32]` (§4.7.3).
        MSIDATA OFFSET(32) NUMBITS(32) []
    ],
    /// Command dword 1 (IHI 0070 §4.2-§4.7).
    pub(crate) CMD1 [
        /// Leaf of CFGI_STE, CFGI_CD and the TLBI-by-address commands, bit `[0]`.
        LEAF OFFSET(0) NUMBITS(1) [],
        /// CFGI_STE_RANGE Range, bits `[4:0]` (§4.3.2).
        RANGE OFFSET(0) NUMBITS(5) [],
        /// PREFETCH_ADDR Size, bits `[4:0]` (§4.2.2).
        SIZE OFFSET(0) NUMBITS(5) [],
        /// TLBI range TTL, bits `[9:8]` (§4.4.1).
        TTL OFFSET(8) NUMBITS(2) [],
        /// TLBI range TG, bits `[11:10]` (§4.4.1).
        TG OFFSET(10) NUMBITS(2) [],
        /// Virtual address of TLBI/ATC_INV/PREFETCH_ADDR, bits `[63:12]`, kept in place.
        ADDR OFFSET(12) NUMBITS(52) [],
        /// TLBI_S2_IPA IPA, bits `[51:12]`, kept in place (§4.4.8).
        IPA OFFSET(12) NUMBITS(40) [],
        /// ATC_INV Size, bits `[5:0]` (§4.5.1).
        ATC_SIZE OFFSET(0) NUMBITS(6) [],
        /// PRI_RESP PRGIndex, bits `[8:0]` (§4.6.1).
        PRGINDEX OFFSET(0) NUMBITS(9) [],
        /// PRI_RESP Resp, bits `[13:12]` (§4.6.1).
        RESP OFFSET(12) NUMBITS(2) [],
        /// CMD_RESUME STAG, bits `[15:0]` (§4.6.2).
        STAG OFFSET(0) NUMBITS(16) [],
        /// CMD_SYNC MSIAddr, bits `[51:2]`, kept in place (§4.7.3).
        MSIADDR OFFSET(2) NUMBITS(50) []
    ]
];

/// CFGI_STE_RANGE Range value meaning "all StreamIDs": CMD_CFGI_ALL (IHI 0070 §4.3.6).
pub const CFGI_RANGE_ALL: u8 = 31;

/// ATC_INV Size that, with Addr 0, invalidates the whole ATC (IHI 0070 §4.5.1).
pub const ATC_INV_SIZE_ALL: u8 = 52;

/// One 16-byte command queue slot, two little-endian dwords (IHI 0070 §4.1.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub struct CmdqEntry(pub [u64; 2]);

const _: () = assert!(core::mem::size_of::<CmdqEntry>() == 16);

impl CmdqEntry {
    /// The opcode, dword 0 bits `[7:0]` (IHI 0070 §4.1.1).
    #[inline]
    pub const fn opcode(&self) -> u8 {
        get(CMD0::OPCODE, self.0[0]) as u8
    }

    /// Dword 0 bits `[63:32]` as a StreamID; meaningful for StreamID-carrying commands
    /// (IHI 0070 §4.1.6).
    #[inline]
    pub const fn sid(&self) -> StreamId {
        StreamId(get(CMD0::SID, self.0[0]) as u32)
    }

    /// Replaces dword 0 bits `[63:32]` (StreamID) and nothing else.
    #[inline]
    pub const fn set_sid(&mut self, sid: StreamId) {
        self.0[0] = set(CMD0::SID, self.0[0], sid.0 as u64);
    }

    /// Dword 0 bits `[47:32]` as a VMID; meaningful for TLBI commands and CFGI_VMS_PIDM
    /// (IHI 0070 §4.4).
    #[inline]
    pub const fn vmid(&self) -> Vmid {
        Vmid(get(CMD0::VMID, self.0[0]) as u16)
    }

    /// Replaces dword 0 bits `[47:32]` (VMID) and nothing else.
    #[inline]
    pub const fn set_vmid(&mut self, vmid: Vmid) {
        self.0[0] = set(CMD0::VMID, self.0[0], vmid.0 as u64);
    }

    /// Dword 0 bits `[63:48]` as an ASID; meaningful for TLBI commands (IHI 0070 §4.4).
    #[inline]
    pub const fn asid(&self) -> Asid {
        Asid(get(CMD0::ASID, self.0[0]) as u16)
    }

    /// The SubstreamID, dword 0 bits `[31:12]`, when SSV (bit 11) is set; for CFGI_CD, which
    /// has no SSV, always the SubstreamID field (IHI 0070 §4.1.6, §4.3.3).
    #[inline]
    pub const fn ssid(&self) -> Option<SubstreamId> {
        let ssid = SubstreamId(get(CMD0::SSID, self.0[0]) as u32);
        if self.opcode() == Opcode::CfgiCd as u8 || is_set(CMD0::SSV, self.0[0]) {
            Some(ssid)
        } else {
            None
        }
    }

    /// SSec, dword 0 bit `[10]` (IHI 0070 §4.1.6).
    #[inline]
    pub const fn ssec(&self) -> bool {
        is_set(CMD0::SSEC, self.0[0])
    }
}

impl From<Command> for CmdqEntry {
    #[inline]
    fn from(cmd: Command) -> Self {
        cmd.encode()
    }
}

/// Every architected command opcode (IHI 0070 §4.1.1). 0x80-0x8F are IMPLEMENTATION DEFINED
/// and all others reserved; neither has a value here.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum Opcode {
    /// CMD_PREFETCH_CONFIG (IHI 0070 §4.2.1).
    PrefetchConfig = 0x01,
    /// CMD_PREFETCH_ADDR (IHI 0070 §4.2.2).
    PrefetchAddr = 0x02,
    /// CMD_CFGI_STE (IHI 0070 §4.3.1).
    CfgiSte = 0x03,
    /// CMD_CFGI_STE_RANGE, and CMD_CFGI_ALL when Range = 31 (IHI 0070 §4.3.2, §4.3.6).
    CfgiSteRange = 0x04,
    /// CMD_CFGI_CD (IHI 0070 §4.3.3).
    CfgiCd = 0x05,
    /// CMD_CFGI_CD_ALL (IHI 0070 §4.3.4).
    CfgiCdAll = 0x06,
    /// CMD_CFGI_VMS_PIDM: invalidate cached MPAM VMS PARTID_MAP (IHI 0070 §4.3.5). Not
    /// CFGI_ALL.
    CfgiVmsPidm = 0x07,
    /// CMD_TLBI_NH_ALL (IHI 0070 §4.4.2).
    TlbiNhAll = 0x10,
    /// CMD_TLBI_NH_ASID (IHI 0070 §4.4.2).
    TlbiNhAsid = 0x11,
    /// CMD_TLBI_NH_VA (IHI 0070 §4.4.2).
    TlbiNhVa = 0x12,
    /// CMD_TLBI_NH_VAA (IHI 0070 §4.4.2).
    TlbiNhVaa = 0x13,
    /// CMD_TLBI_EL3_ALL, Secure only (IHI 0070 §4.4.4).
    TlbiEl3All = 0x18,
    /// CMD_TLBI_EL3_VA, Secure only (IHI 0070 §4.4.4).
    TlbiEl3Va = 0x1A,
    /// CMD_TLBI_EL2_ALL (IHI 0070 §4.4.3).
    TlbiEl2All = 0x20,
    /// CMD_TLBI_EL2_ASID (IHI 0070 §4.4.3).
    TlbiEl2Asid = 0x21,
    /// CMD_TLBI_EL2_VA (IHI 0070 §4.4.3).
    TlbiEl2Va = 0x22,
    /// CMD_TLBI_EL2_VAA (IHI 0070 §4.4.3).
    TlbiEl2Vaa = 0x23,
    /// CMD_TLBI_S12_VMALL (IHI 0070 §4.4.5).
    TlbiS12Vmall = 0x28,
    /// CMD_TLBI_S2_IPA (IHI 0070 §4.4.5).
    TlbiS2Ipa = 0x2A,
    /// CMD_TLBI_NSNH_ALL (IHI 0070 §4.4.6).
    TlbiNsnhAll = 0x30,
    /// CMD_ATC_INV (IHI 0070 §4.5.1).
    AtcInv = 0x40,
    /// CMD_PRI_RESP (IHI 0070 §4.5.2).
    PriResp = 0x41,
    /// CMD_RESUME (IHI 0070 §4.7.1).
    Resume = 0x44,
    /// CMD_STALL_TERM (IHI 0070 §4.7.2).
    StallTerm = 0x45,
    /// CMD_SYNC (IHI 0070 §4.7.3).
    Sync = 0x46,
    /// CMD_TLBI_S_EL2_ALL (Hafnium: TLBI_SEL2_ALL), Secure only (IHI 0070 §4.1.1).
    TlbiSel2All = 0x50,
    /// CMD_TLBI_S_EL2_ASID, Secure only (IHI 0070 §4.1.1); no typed layout here.
    TlbiSel2Asid = 0x51,
    /// CMD_TLBI_S_EL2_VA, Secure only (IHI 0070 §4.1.1); no typed layout here.
    TlbiSel2Va = 0x52,
    /// CMD_TLBI_S_EL2_VAA, Secure only (IHI 0070 §4.1.1); no typed layout here.
    TlbiSel2Vaa = 0x53,
    /// CMD_TLBI_S_S12_VMALL, Secure only (IHI 0070 §4.1.1); no typed layout here.
    TlbiSS12Vmall = 0x58,
    /// CMD_TLBI_S_S2_IPA, Secure only (IHI 0070 §4.1.1); no typed layout here.
    TlbiSS2Ipa = 0x5A,
    /// CMD_TLBI_SNH_ALL, Secure only (IHI 0070 §4.1.1); no typed layout here.
    TlbiSnhAll = 0x60,
    /// CMD_DPTI_ALL, Device Permission Table invalidation (IHI 0070 §4.1.1); no typed layout here.
    DptiAll = 0x70,
    /// CMD_DPTI_PA, Device Permission Table invalidation (IHI 0070 §4.1.1); no typed layout here.
    DptiPa = 0x73,
}

impl Opcode {
    /// CMD_CFGI_ALL shares the CFGI_STE_RANGE opcode, with Range = 31 (IHI 0070 §4.3.6).
    pub const CFGI_ALL: Opcode = Opcode::CfgiSteRange;

    /// Every architected opcode, in numeric order.
    pub const ALL: [Opcode; 34] = [
        Opcode::PrefetchConfig,
        Opcode::PrefetchAddr,
        Opcode::CfgiSte,
        Opcode::CfgiSteRange,
        Opcode::CfgiCd,
        Opcode::CfgiCdAll,
        Opcode::CfgiVmsPidm,
        Opcode::TlbiNhAll,
        Opcode::TlbiNhAsid,
        Opcode::TlbiNhVa,
        Opcode::TlbiNhVaa,
        Opcode::TlbiEl3All,
        Opcode::TlbiEl3Va,
        Opcode::TlbiEl2All,
        Opcode::TlbiEl2Asid,
        Opcode::TlbiEl2Va,
        Opcode::TlbiEl2Vaa,
        Opcode::TlbiS12Vmall,
        Opcode::TlbiS2Ipa,
        Opcode::TlbiNsnhAll,
        Opcode::AtcInv,
        Opcode::PriResp,
        Opcode::Resume,
        Opcode::StallTerm,
        Opcode::Sync,
        Opcode::TlbiSel2All,
        Opcode::TlbiSel2Asid,
        Opcode::TlbiSel2Va,
        Opcode::TlbiSel2Vaa,
        Opcode::TlbiSS12Vmall,
        Opcode::TlbiSS2Ipa,
        Opcode::TlbiSnhAll,
        Opcode::DptiAll,
        Opcode::DptiPa,
    ];

    /// The opcode with this value, or `None` for reserved and IMPLEMENTATION DEFINED values.
    pub const fn from_u8(raw: u8) -> Option<Self> {
        Some(match raw {
            0x01 => Self::PrefetchConfig,
            0x02 => Self::PrefetchAddr,
            0x03 => Self::CfgiSte,
            0x04 => Self::CfgiSteRange,
            0x05 => Self::CfgiCd,
            0x06 => Self::CfgiCdAll,
            0x07 => Self::CfgiVmsPidm,
            0x10 => Self::TlbiNhAll,
            0x11 => Self::TlbiNhAsid,
            0x12 => Self::TlbiNhVa,
            0x13 => Self::TlbiNhVaa,
            0x18 => Self::TlbiEl3All,
            0x1A => Self::TlbiEl3Va,
            0x20 => Self::TlbiEl2All,
            0x21 => Self::TlbiEl2Asid,
            0x22 => Self::TlbiEl2Va,
            0x23 => Self::TlbiEl2Vaa,
            0x28 => Self::TlbiS12Vmall,
            0x2A => Self::TlbiS2Ipa,
            0x30 => Self::TlbiNsnhAll,
            0x40 => Self::AtcInv,
            0x41 => Self::PriResp,
            0x44 => Self::Resume,
            0x45 => Self::StallTerm,
            0x46 => Self::Sync,
            0x50 => Self::TlbiSel2All,
            0x51 => Self::TlbiSel2Asid,
            0x52 => Self::TlbiSel2Va,
            0x53 => Self::TlbiSel2Vaa,
            0x58 => Self::TlbiSS12Vmall,
            0x5A => Self::TlbiSS2Ipa,
            0x60 => Self::TlbiSnhAll,
            0x70 => Self::DptiAll,
            0x73 => Self::DptiPa,
            _ => return None,
        })
    }

    /// The opcode's value.
    #[inline]
    pub const fn raw(self) -> u8 {
        self as u8
    }

    /// The specification's name, e.g. `"CMD_SYNC"`.
    pub const fn name(self) -> &'static str {
        match self {
            Self::PrefetchConfig => "CMD_PREFETCH_CONFIG",
            Self::PrefetchAddr => "CMD_PREFETCH_ADDR",
            Self::CfgiSte => "CMD_CFGI_STE",
            Self::CfgiSteRange => "CMD_CFGI_STE_RANGE",
            Self::CfgiCd => "CMD_CFGI_CD",
            Self::CfgiCdAll => "CMD_CFGI_CD_ALL",
            Self::CfgiVmsPidm => "CMD_CFGI_VMS_PIDM",
            Self::TlbiNhAll => "CMD_TLBI_NH_ALL",
            Self::TlbiNhAsid => "CMD_TLBI_NH_ASID",
            Self::TlbiNhVa => "CMD_TLBI_NH_VA",
            Self::TlbiNhVaa => "CMD_TLBI_NH_VAA",
            Self::TlbiEl3All => "CMD_TLBI_EL3_ALL",
            Self::TlbiEl3Va => "CMD_TLBI_EL3_VA",
            Self::TlbiEl2All => "CMD_TLBI_EL2_ALL",
            Self::TlbiEl2Asid => "CMD_TLBI_EL2_ASID",
            Self::TlbiEl2Va => "CMD_TLBI_EL2_VA",
            Self::TlbiEl2Vaa => "CMD_TLBI_EL2_VAA",
            Self::TlbiS12Vmall => "CMD_TLBI_S12_VMALL",
            Self::TlbiS2Ipa => "CMD_TLBI_S2_IPA",
            Self::TlbiNsnhAll => "CMD_TLBI_NSNH_ALL",
            Self::AtcInv => "CMD_ATC_INV",
            Self::PriResp => "CMD_PRI_RESP",
            Self::Resume => "CMD_RESUME",
            Self::StallTerm => "CMD_STALL_TERM",
            Self::Sync => "CMD_SYNC",
            Self::TlbiSel2All => "CMD_TLBI_S_EL2_ALL",
            Self::TlbiSel2Asid => "CMD_TLBI_S_EL2_ASID",
            Self::TlbiSel2Va => "CMD_TLBI_S_EL2_VA",
            Self::TlbiSel2Vaa => "CMD_TLBI_S_EL2_VAA",
            Self::TlbiSS12Vmall => "CMD_TLBI_S_S12_VMALL",
            Self::TlbiSS2Ipa => "CMD_TLBI_S_S2_IPA",
            Self::TlbiSnhAll => "CMD_TLBI_SNH_ALL",
            Self::DptiAll => "CMD_DPTI_ALL",
            Self::DptiPa => "CMD_DPTI_PA",
        }
    }

    /// Whether the command is only legal on the Secure command queue; on the Non-secure
    /// queue it raises CERROR_ILL (IHI 0070 §4.1.1, §4.4.4).
    pub const fn is_secure_only(self) -> bool {
        matches!(
            self,
            Self::TlbiEl3All
                | Self::TlbiEl3Va
                | Self::TlbiSel2All
                | Self::TlbiSel2Asid
                | Self::TlbiSel2Va
                | Self::TlbiSel2Vaa
                | Self::TlbiSS12Vmall
                | Self::TlbiSS2Ipa
                | Self::TlbiSnhAll
        )
    }

    /// Whether dword 0 bit 10 is the SSec field for this command (IHI 0070 §4.1.6).
    const fn has_ssec(self) -> bool {
        matches!(
            self,
            Self::PrefetchConfig
                | Self::PrefetchAddr
                | Self::CfgiSte
                | Self::CfgiSteRange
                | Self::CfgiCd
                | Self::CfgiCdAll
                | Self::CfgiVmsPidm
                | Self::Resume
                | Self::StallTerm
        )
    }
}

/// CMD_SYNC completion signal, CS (IHI 0070 §4.7.3). Value 3 is reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum SyncCs {
    /// 0 SIG_NONE: completion is visible only as CONS moving past the CMD_SYNC.
    None = 0,
    /// 1 SIG_IRQ: write MSIData to MSIAddr (or a wired interrupt) on completion.
    Irq = 1,
    /// 2 SIG_SEV: send a WFE wake-up event on completion.
    Sev = 2,
}

impl SyncCs {
    /// The CS value, or `None` for the reserved 3.
    pub const fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Self::None),
            1 => Some(Self::Irq),
            2 => Some(Self::Sev),
            _ => None,
        }
    }
}

/// CMD_RESUME Action, bits `[13:12]`: bit 12 Ac (retry), bit 13 Ab (abort) (IHI 0070 §4.7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum ResumeAction {
    /// 0 (Ac = 0, Ab = 0): terminate, completing the transaction with RAZ/WI semantics
    /// (an abort when IDR0.TERM_MODEL = 1).
    Terminate = 0,
    /// 1 (Ac = 1): retry the transaction as if it had just arrived.
    Retry = 1,
    /// 2 (Ac = 0, Ab = 1): terminate with an abort to the device.
    Abort = 2,
}

impl ResumeAction {
    /// The action of an Action field value; 3 (Ac = 1, Ab = 1) is a retry because Ab is
    /// ignored when Ac = 1.
    pub const fn from_raw(raw: u8) -> Self {
        match raw & 3 {
            0 => Self::Terminate,
            2 => Self::Abort,
            _ => Self::Retry,
        }
    }
}

/// CMD_PRI_RESP Resp (IHI 0070 §4.5.2). Value 3 is reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(u8)]
pub enum PriResponse {
    /// 0 ResponseFailure: permanent non-paging error (PCIe PRG response 0b1111).
    Failure = 0,
    /// 1 InvalidRequest: the page could not be made resident (PCIe 0b0001).
    InvalidRequest = 1,
    /// 2 Success (PCIe 0b0000).
    Success = 2,
}

impl PriResponse {
    /// The response of a Resp value, or `None` for the reserved 3.
    pub const fn from_raw(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Self::Failure),
            1 => Some(Self::InvalidRequest),
            2 => Some(Self::Success),
            _ => None,
        }
    }
}

/// Range and level hint of a TLBI-by-address command (IHI 0070 §4.4.1.1, needs IDR3.RIL
/// for `tg != 0`): `(num + 1) << scale` pages of granule `tg` starting at the address.
///
/// With `tg == 0` the command invalidates one address and the other fields are RES0:
/// [`Command::encode`] writes them as zero and [`Command::decode`] reads them as zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TlbiRange {
    /// NUM, dword 0 bits `[16:12]` (5 bits).
    pub num: u8,
    /// SCALE, dword 0 bits `[25:20]` (5 bits unless IDR5.DS = 1).
    pub scale: u8,
    /// TTL, dword 1 bits `[9:8]`: level of the leaf entries, 0 = no hint.
    pub ttl: u8,
    /// TG, dword 1 bits `[11:10]`: 0 = single address, 1 = 4 KiB, 2 = 16 KiB, 3 = 64 KiB.
    pub tg: u8,
}

impl TlbiRange {
    /// A single-address invalidation without range or level hint.
    pub const NONE: TlbiRange = TlbiRange {
        num: 0,
        scale: 0,
        ttl: 0,
        tg: 0,
    };

    /// Whether this is a range invalidation (TG != 0).
    #[inline]
    pub const fn is_range(self) -> bool {
        self.tg & 3 != 0
    }

    /// Dword 0 bits (NUM, SCALE).
    const fn put_d0(self) -> u64 {
        if self.is_range() {
            put(CMD0::NUM, self.num as u64) | put(CMD0::SCALE, self.scale as u64)
        } else {
            0
        }
    }

    /// Dword 1 bits (TTL, TG).
    const fn put_d1(self) -> u64 {
        if self.is_range() {
            put(CMD1::TTL, self.ttl as u64) | put(CMD1::TG, self.tg as u64)
        } else {
            0
        }
    }

    /// The range of an entry; `None` for the reserved TG != 0 with NUM = SCALE = TTL = 0.
    const fn get(e: &CmdqEntry) -> Option<Self> {
        let tg = get(CMD1::TG, e.0[1]) as u8;
        if tg == 0 {
            return Some(Self::NONE);
        }
        let r = Self {
            num: get(CMD0::NUM, e.0[0]) as u8,
            scale: get(CMD0::SCALE, e.0[0]) as u8,
            ttl: get(CMD1::TTL, e.0[1]) as u8,
            tg,
        };
        if r.num == 0 && r.scale == 0 && r.ttl == 0 {
            None
        } else {
            Some(r)
        }
    }
}

/// A typed command, one variant per opcode with a layout (IHI 0070 §4.2-§4.7).
///
/// Virtual addresses (`addr`) are bits `[63:12]` and `ipa` bits `[51:12]`; lower bits are dropped
/// by [`Command::encode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Command {
    /// CMD_PREFETCH_CONFIG: prefetch the STE and CD of a stream (IHI 0070 §4.2.1).
    PrefetchConfig {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID (SSV = 1) or none (SSV = 0).
        ssid: Option<SubstreamId>,
    },
    /// CMD_PREFETCH_ADDR: prefetch configuration and TLB entries (IHI 0070 §4.2.2).
    PrefetchAddr {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID (SSV = 1) or none (SSV = 0).
        ssid: Option<SubstreamId>,
        /// Address, bits `[63:12]`.
        addr: u64,
        /// Size, dword 1 bits `[4:0]`: `2^size` translations.
        size: u8,
    },
    /// CMD_CFGI_STE: invalidate one STE (IHI 0070 §4.3.1).
    CfgiSte {
        /// StreamID.
        sid: StreamId,
        /// Leaf = 1: only the STE, not the L1 descriptor walked to reach it.
        leaf: bool,
    },
    /// CMD_CFGI_STE_RANGE: invalidate `2^(range+1)` STEs around `sid` (IHI 0070 §4.3.2).
    /// `range` 31 is [`Command::CfgiAll`].
    CfgiSteRange {
        /// StreamID; its low `range + 1` bits are ignored.
        sid: StreamId,
        /// Range, dword 1 bits `[4:0]`.
        range: u8,
    },
    /// CMD_CFGI_ALL: opcode 0x04 with Range = 31 (IHI 0070 §4.3.6).
    CfgiAll,
    /// CMD_CFGI_CD: invalidate one CD (IHI 0070 §4.3.3). The command has no SSV bit: a
    /// stream without substreams uses SubstreamID 0.
    CfgiCd {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID (CD table index).
        ssid: SubstreamId,
        /// Leaf = 1: only the CD, not the L1CD walked to reach it.
        leaf: bool,
    },
    /// CMD_CFGI_CD_ALL: invalidate every CD of a stream (IHI 0070 §4.3.4).
    CfgiCdAll {
        /// StreamID.
        sid: StreamId,
    },
    /// CMD_CFGI_VMS_PIDM: invalidate cached MPAM PARTID_MAP of a VMID (IHI 0070 §4.3.5).
    CfgiVmsPidm {
        /// VMID, dword 0 bits `[47:32]`.
        vmid: Vmid,
    },
    /// CMD_TLBI_NH_ALL: all stage-1 entries of a VMID (IHI 0070 §4.4.2).
    TlbiNhAll {
        /// VMID.
        vmid: Vmid,
    },
    /// CMD_TLBI_NH_ASID: stage-1 entries of an ASID in a VMID (IHI 0070 §4.4.2).
    TlbiNhAsid {
        /// VMID.
        vmid: Vmid,
        /// ASID.
        asid: Asid,
    },
    /// CMD_TLBI_NH_VA: stage-1 entries of an address in an ASID and VMID (IHI 0070 §4.4.2).
    TlbiNhVa {
        /// VMID.
        vmid: Vmid,
        /// ASID.
        asid: Asid,
        /// Virtual address, bits `[63:12]`.
        addr: u64,
        /// Leaf = 1: only leaf entries changed.
        leaf: bool,
        /// Range and level hint.
        range: TlbiRange,
    },
    /// CMD_TLBI_NH_VAA: stage-1 entries of an address in any ASID of a VMID (IHI 0070 §4.4.2).
    TlbiNhVaa {
        /// VMID.
        vmid: Vmid,
        /// Virtual address, bits `[63:12]`.
        addr: u64,
        /// Leaf = 1: only leaf entries changed.
        leaf: bool,
        /// Range and level hint.
        range: TlbiRange,
    },
    /// CMD_TLBI_EL3_ALL: all EL3 entries; Secure queue only (IHI 0070 §4.4.4).
    TlbiEl3All,
    /// CMD_TLBI_EL3_VA: EL3 entries of an address; Secure queue only (IHI 0070 §4.4.4).
    TlbiEl3Va {
        /// Virtual address, bits `[63:12]`.
        addr: u64,
        /// Leaf = 1: only leaf entries changed.
        leaf: bool,
        /// Range and level hint.
        range: TlbiRange,
    },
    /// CMD_TLBI_EL2_ALL: all EL2 entries (IHI 0070 §4.4.3).
    TlbiEl2All,
    /// CMD_TLBI_EL2_ASID: EL2 entries of an ASID (IHI 0070 §4.4.3).
    TlbiEl2Asid {
        /// ASID.
        asid: Asid,
    },
    /// CMD_TLBI_EL2_VA: EL2 entries of an address in an ASID (IHI 0070 §4.4.3).
    TlbiEl2Va {
        /// ASID.
        asid: Asid,
        /// Virtual address, bits `[63:12]`.
        addr: u64,
        /// Leaf = 1: only leaf entries changed.
        leaf: bool,
        /// Range and level hint.
        range: TlbiRange,
    },
    /// CMD_TLBI_EL2_VAA: EL2 entries of an address in any ASID (IHI 0070 §4.4.3).
    TlbiEl2Vaa {
        /// Virtual address, bits `[63:12]`.
        addr: u64,
        /// Leaf = 1: only leaf entries changed.
        leaf: bool,
        /// Range and level hint.
        range: TlbiRange,
    },
    /// CMD_TLBI_S12_VMALL: all stage-1 and stage-2 entries of a VMID (IHI 0070 §4.4.5).
    TlbiS12Vmall {
        /// VMID.
        vmid: Vmid,
    },
    /// CMD_TLBI_S2_IPA: stage-2 entries of an IPA in a VMID (IHI 0070 §4.4.5).
    TlbiS2Ipa {
        /// VMID.
        vmid: Vmid,
        /// IPA, bits `[51:12]`.
        ipa: u64,
        /// Leaf = 1: only leaf entries changed.
        leaf: bool,
        /// Range and level hint.
        range: TlbiRange,
    },
    /// CMD_TLBI_NSNH_ALL: all Non-secure non-hypervisor entries (IHI 0070 §4.4.6).
    TlbiNsnhAll,
    /// CMD_ATC_INV: invalidate a device's ATC (IHI 0070 §4.5.1).
    AtcInv {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID (SSV = 1) or none (SSV = 0: also PASID-tagged entries).
        ssid: Option<SubstreamId>,
        /// Global, dword 0 bit `[9]`.
        global: bool,
        /// Address, bits `[63:12]`.
        addr: u64,
        /// Size, dword 1 bits `[5:0]`: `2^size` 4 KiB pages; [`ATC_INV_SIZE_ALL`] with addr 0
        /// is the whole ATC.
        size: u8,
    },
    /// CMD_PRI_RESP: answer a PCIe page request group (IHI 0070 §4.5.2).
    PriResp {
        /// StreamID.
        sid: StreamId,
        /// SubstreamID (SSV = 1) or none.
        ssid: Option<SubstreamId>,
        /// PRGIndex, dword 1 bits `[8:0]`.
        prg_index: u16,
        /// Resp, dword 1 bits `[13:12]`.
        resp: PriResponse,
    },
    /// CMD_RESUME: retry or terminate a stalled transaction (IHI 0070 §4.7.1).
    Resume {
        /// StreamID.
        sid: StreamId,
        /// STAG from the stall event record, dword 1 bits `[15:0]`.
        stag: u16,
        /// Action, dword 0 bits `[13:12]`.
        action: ResumeAction,
    },
    /// CMD_STALL_TERM: terminate every stalled transaction of a stream (IHI 0070 §4.7.2).
    StallTerm {
        /// StreamID.
        sid: StreamId,
    },
    /// CMD_SYNC: completion barrier for earlier commands (IHI 0070 §4.7.3).
    Sync {
        /// CS, dword 0 bits `[13:12]`.
        cs: SyncCs,
        /// MSH, dword 0 bits `[23:22]`: shareability of the MSI write.
        msh: u8,
        /// MSIAttr, dword 0 bits `[27:24]`: memory type of the MSI write.
        msi_attr: u8,
        /// MSIData, dword 0 bits `[63:32]`.
        msi_data: u32,
        /// MSIAddr, dword 1 bits `[51:2]`; 0 = no MSI write.
        msi_addr: PhysAddr,
    },
    /// CMD_TLBI_S_EL2_ALL (Hafnium: TLBI_SEL2_ALL): Secure queue only (IHI 0070 §4.1.1).
    TlbiSel2All,
}

/// Why [`Command::decode`] refused an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum DecodeError {
    /// A reserved or IMPLEMENTATION DEFINED opcode (IHI 0070 §4.1.1).
    UnknownOpcode(u8),
    /// An architected opcode whose field layout this crate does not model (the Secure-only
    /// TLBIs other than TLBI_S_EL2_ALL, and the DPT invalidations).
    Unsupported(Opcode),
    /// SSec = 1: the command names a Secure stream, ILLEGAL on the Non-secure queue
    /// (IHI 0070 §4.1.6).
    Secure,
    /// A field holds a reserved value that raises CERROR_ILL.
    Reserved {
        /// The command's opcode.
        opcode: u8,
        /// The field's name in the specification.
        field: &'static str,
        /// The value found.
        value: u8,
    },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownOpcode(op) => write!(f, "unknown command opcode {op:#04x}"),
            Self::Unsupported(op) => write!(f, "{} is not supported", op.name()),
            Self::Secure => f.write_str("command with SSec = 1"),
            Self::Reserved {
                opcode,
                field,
                value,
            } => write!(
                f,
                "command {opcode:#04x}: reserved value {value} in field {field}"
            ),
        }
    }
}

impl core::error::Error for DecodeError {}

impl From<DecodeError> for Error {
    /// A command that does not decode is rejected: [`Rejection::Undecodable`] (`EIO`).
    fn from(e: DecodeError) -> Self {
        Error::Rejected(Rejection::Undecodable(e))
    }
}

/// SSV and SubstreamID bits of dword 0.
const fn put_ssid(ssid: Option<SubstreamId>) -> u64 {
    match ssid {
        Some(s) => put(CMD0::SSV, 1) | put(CMD0::SSID, s.0 as u64),
        None => 0,
    }
}

/// SubstreamID of dword 0 when SSV is set.
const fn get_ssid(d0: u64) -> Option<SubstreamId> {
    if is_set(CMD0::SSV, d0) {
        Some(SubstreamId(get(CMD0::SSID, d0) as u32))
    } else {
        None
    }
}

const fn put_sid(sid: StreamId) -> u64 {
    put(CMD0::SID, sid.0 as u64)
}

const fn put_vmid(vmid: Vmid) -> u64 {
    put(CMD0::VMID, vmid.0 as u64)
}

const fn put_asid(asid: Asid) -> u64 {
    put(CMD0::ASID, asid.0 as u64)
}

const fn put_leaf(leaf: bool) -> u64 {
    put(CMD1::LEAF, leaf as u64)
}

impl Command {
    /// A CMD_SYNC with CS = SIG_NONE and no MSI: completion is CONS passing it
    /// (IHI 0070 §4.7.3).
    #[inline]
    pub const fn sync() -> Self {
        Command::Sync {
            cs: SyncCs::None,
            msh: 0,
            msi_attr: 0,
            msi_data: 0,
            msi_addr: PhysAddr(0),
        }
    }

    /// The command's opcode ([`Opcode::CfgiSteRange`] for [`Command::CfgiAll`]).
    pub const fn opcode(&self) -> Opcode {
        match self {
            Self::PrefetchConfig { .. } => Opcode::PrefetchConfig,
            Self::PrefetchAddr { .. } => Opcode::PrefetchAddr,
            Self::CfgiSte { .. } => Opcode::CfgiSte,
            Self::CfgiSteRange { .. } | Self::CfgiAll => Opcode::CfgiSteRange,
            Self::CfgiCd { .. } => Opcode::CfgiCd,
            Self::CfgiCdAll { .. } => Opcode::CfgiCdAll,
            Self::CfgiVmsPidm { .. } => Opcode::CfgiVmsPidm,
            Self::TlbiNhAll { .. } => Opcode::TlbiNhAll,
            Self::TlbiNhAsid { .. } => Opcode::TlbiNhAsid,
            Self::TlbiNhVa { .. } => Opcode::TlbiNhVa,
            Self::TlbiNhVaa { .. } => Opcode::TlbiNhVaa,
            Self::TlbiEl3All => Opcode::TlbiEl3All,
            Self::TlbiEl3Va { .. } => Opcode::TlbiEl3Va,
            Self::TlbiEl2All => Opcode::TlbiEl2All,
            Self::TlbiEl2Asid { .. } => Opcode::TlbiEl2Asid,
            Self::TlbiEl2Va { .. } => Opcode::TlbiEl2Va,
            Self::TlbiEl2Vaa { .. } => Opcode::TlbiEl2Vaa,
            Self::TlbiS12Vmall { .. } => Opcode::TlbiS12Vmall,
            Self::TlbiS2Ipa { .. } => Opcode::TlbiS2Ipa,
            Self::TlbiNsnhAll => Opcode::TlbiNsnhAll,
            Self::AtcInv { .. } => Opcode::AtcInv,
            Self::PriResp { .. } => Opcode::PriResp,
            Self::Resume { .. } => Opcode::Resume,
            Self::StallTerm { .. } => Opcode::StallTerm,
            Self::Sync { .. } => Opcode::Sync,
            Self::TlbiSel2All => Opcode::TlbiSel2All,
        }
    }

    /// The 16-byte queue entry of this command (IHI 0070 §4.2-§4.7). Values wider than
    /// their field are truncated; SSec is always 0.
    pub const fn encode(&self) -> CmdqEntry {
        let op = put(CMD0::OPCODE, self.opcode() as u64);
        let (d0, d1) = match *self {
            Self::PrefetchConfig { sid, ssid } => (put_sid(sid) | put_ssid(ssid), 0),
            Self::PrefetchAddr {
                sid,
                ssid,
                addr,
                size,
            } => (
                put_sid(sid) | put_ssid(ssid),
                (addr & CMD1::ADDR::SET.value) | put(CMD1::SIZE, size as u64),
            ),
            Self::CfgiSte { sid, leaf } => (put_sid(sid), put_leaf(leaf)),
            Self::CfgiSteRange { sid, range } => (put_sid(sid), put(CMD1::RANGE, range as u64)),
            Self::CfgiAll => (0, put(CMD1::RANGE, CFGI_RANGE_ALL as u64)),
            Self::CfgiCd { sid, ssid, leaf } => (
                put_sid(sid) | put(CMD0::SSID, ssid.0 as u64),
                put_leaf(leaf),
            ),
            Self::CfgiCdAll { sid } | Self::StallTerm { sid } => (put_sid(sid), 0),
            Self::CfgiVmsPidm { vmid } | Self::TlbiNhAll { vmid } | Self::TlbiS12Vmall { vmid } => {
                (put_vmid(vmid), 0)
            }
            Self::TlbiNhAsid { vmid, asid } => (put_vmid(vmid) | put_asid(asid), 0),
            Self::TlbiNhVa {
                vmid,
                asid,
                addr,
                leaf,
                range,
            } => (
                put_vmid(vmid) | put_asid(asid) | range.put_d0(),
                (addr & CMD1::ADDR::SET.value) | put_leaf(leaf) | range.put_d1(),
            ),
            Self::TlbiNhVaa {
                vmid,
                addr,
                leaf,
                range,
            } => (
                put_vmid(vmid) | range.put_d0(),
                (addr & CMD1::ADDR::SET.value) | put_leaf(leaf) | range.put_d1(),
            ),
            Self::TlbiEl3Va { addr, leaf, range } | Self::TlbiEl2Vaa { addr, leaf, range } => (
                range.put_d0(),
                (addr & CMD1::ADDR::SET.value) | put_leaf(leaf) | range.put_d1(),
            ),
            Self::TlbiEl3All | Self::TlbiEl2All | Self::TlbiNsnhAll | Self::TlbiSel2All => (0, 0),
            Self::TlbiEl2Asid { asid } => (put_asid(asid), 0),
            Self::TlbiEl2Va {
                asid,
                addr,
                leaf,
                range,
            } => (
                put_asid(asid) | range.put_d0(),
                (addr & CMD1::ADDR::SET.value) | put_leaf(leaf) | range.put_d1(),
            ),
            Self::TlbiS2Ipa {
                vmid,
                ipa,
                leaf,
                range,
            } => (
                put_vmid(vmid) | range.put_d0(),
                (ipa & CMD1::IPA::SET.value) | put_leaf(leaf) | range.put_d1(),
            ),
            Self::AtcInv {
                sid,
                ssid,
                global,
                addr,
                size,
            } => (
                put_sid(sid) | put_ssid(ssid) | put(CMD0::GLOBAL, global as u64),
                (addr & CMD1::ADDR::SET.value) | put(CMD1::ATC_SIZE, size as u64),
            ),
            Self::PriResp {
                sid,
                ssid,
                prg_index,
                resp,
            } => (
                put_sid(sid) | put_ssid(ssid),
                put(CMD1::PRGINDEX, prg_index as u64) | put(CMD1::RESP, resp as u64),
            ),
            Self::Resume { sid, stag, action } => (
                put_sid(sid) | put(CMD0::ACTION, action as u64),
                put(CMD1::STAG, stag as u64),
            ),
            Self::Sync {
                cs,
                msh,
                msi_attr,
                msi_data,
                msi_addr,
            } => (
                put(CMD0::CS, cs as u64)
                    | put(CMD0::MSH, msh as u64)
                    | put(CMD0::MSIATTR, msi_attr as u64)
                    | put(CMD0::MSIDATA, msi_data as u64),
                msi_addr.0 & CMD1::MSIADDR::SET.value,
            ),
        };
        CmdqEntry([op | d0, d1])
    }

    /// The typed command of a queue entry (IHI 0070 §4.1-§4.7). Never panics.
    ///
    /// RES0 bits are ignored, as are SubstreamID bits when SSV = 0 and the range fields of a
    /// TLBI with TG = 0.
    ///
    /// # Errors
    /// [`DecodeError::UnknownOpcode`] for reserved and IMPLEMENTATION DEFINED opcodes,
    /// [`DecodeError::Unsupported`] for architected opcodes without a layout here,
    /// [`DecodeError::Secure`] for SSec = 1, and [`DecodeError::Reserved`] for CMD_SYNC
    /// CS = 3, PRI_RESP Resp = 3 and a TLBI range with TG != 0 and NUM = SCALE = TTL = 0.
    pub const fn decode(e: CmdqEntry) -> Result<Command, DecodeError> {
        let [d0, d1] = e.0;
        let raw_op = e.opcode();
        let Some(op) = Opcode::from_u8(raw_op) else {
            return Err(DecodeError::UnknownOpcode(raw_op));
        };
        if op.has_ssec() && is_set(CMD0::SSEC, d0) {
            return Err(DecodeError::Secure);
        }
        let sid = e.sid();
        let vmid = e.vmid();
        let asid = e.asid();
        let leaf = is_set(CMD1::LEAF, d1);
        let addr = d1 & CMD1::ADDR::SET.value;
        let range = match op {
            Opcode::TlbiNhVa
            | Opcode::TlbiNhVaa
            | Opcode::TlbiEl3Va
            | Opcode::TlbiEl2Va
            | Opcode::TlbiEl2Vaa
            | Opcode::TlbiS2Ipa => match TlbiRange::get(&e) {
                Some(r) => r,
                None => {
                    return Err(DecodeError::Reserved {
                        opcode: raw_op,
                        field: "NUM/SCALE/TTL",
                        value: 0,
                    });
                }
            },
            _ => TlbiRange::NONE,
        };
        Ok(match op {
            Opcode::PrefetchConfig => Self::PrefetchConfig {
                sid,
                ssid: get_ssid(d0),
            },
            Opcode::PrefetchAddr => Self::PrefetchAddr {
                sid,
                ssid: get_ssid(d0),
                addr,
                size: get(CMD1::SIZE, d1) as u8,
            },
            Opcode::CfgiSte => Self::CfgiSte { sid, leaf },
            Opcode::CfgiSteRange => {
                let range = get(CMD1::RANGE, d1) as u8;
                if range == CFGI_RANGE_ALL {
                    Self::CfgiAll
                } else {
                    Self::CfgiSteRange { sid, range }
                }
            }
            Opcode::CfgiCd => Self::CfgiCd {
                sid,
                ssid: SubstreamId(get(CMD0::SSID, d0) as u32),
                leaf,
            },
            Opcode::CfgiCdAll => Self::CfgiCdAll { sid },
            Opcode::CfgiVmsPidm => Self::CfgiVmsPidm { vmid },
            Opcode::TlbiNhAll => Self::TlbiNhAll { vmid },
            Opcode::TlbiNhAsid => Self::TlbiNhAsid { vmid, asid },
            Opcode::TlbiNhVa => Self::TlbiNhVa {
                vmid,
                asid,
                addr,
                leaf,
                range,
            },
            Opcode::TlbiNhVaa => Self::TlbiNhVaa {
                vmid,
                addr,
                leaf,
                range,
            },
            Opcode::TlbiEl3All => Self::TlbiEl3All,
            Opcode::TlbiEl3Va => Self::TlbiEl3Va { addr, leaf, range },
            Opcode::TlbiEl2All => Self::TlbiEl2All,
            Opcode::TlbiEl2Asid => Self::TlbiEl2Asid { asid },
            Opcode::TlbiEl2Va => Self::TlbiEl2Va {
                asid,
                addr,
                leaf,
                range,
            },
            Opcode::TlbiEl2Vaa => Self::TlbiEl2Vaa { addr, leaf, range },
            Opcode::TlbiS12Vmall => Self::TlbiS12Vmall { vmid },
            Opcode::TlbiS2Ipa => Self::TlbiS2Ipa {
                vmid,
                ipa: d1 & CMD1::IPA::SET.value,
                leaf,
                range,
            },
            Opcode::TlbiNsnhAll => Self::TlbiNsnhAll,
            Opcode::AtcInv => Self::AtcInv {
                sid,
                ssid: get_ssid(d0),
                global: is_set(CMD0::GLOBAL, d0),
                addr,
                size: get(CMD1::ATC_SIZE, d1) as u8,
            },
            Opcode::PriResp => {
                let raw = get(CMD1::RESP, d1) as u8;
                let Some(resp) = PriResponse::from_raw(raw) else {
                    return Err(DecodeError::Reserved {
                        opcode: raw_op,
                        field: "Resp",
                        value: raw,
                    });
                };
                Self::PriResp {
                    sid,
                    ssid: get_ssid(d0),
                    prg_index: get(CMD1::PRGINDEX, d1) as u16,
                    resp,
                }
            }
            Opcode::Resume => Self::Resume {
                sid,
                stag: get(CMD1::STAG, d1) as u16,
                action: ResumeAction::from_raw(get(CMD0::ACTION, d0) as u8),
            },
            Opcode::StallTerm => Self::StallTerm { sid },
            Opcode::Sync => {
                let raw = get(CMD0::CS, d0) as u8;
                let Some(cs) = SyncCs::from_raw(raw) else {
                    return Err(DecodeError::Reserved {
                        opcode: raw_op,
                        field: "CS",
                        value: raw,
                    });
                };
                Self::Sync {
                    cs,
                    msh: get(CMD0::MSH, d0) as u8,
                    msi_attr: get(CMD0::MSIATTR, d0) as u8,
                    msi_data: get(CMD0::MSIDATA, d0) as u32,
                    msi_addr: PhysAddr(d1 & CMD1::MSIADDR::SET.value),
                }
            }
            Opcode::TlbiSel2All => Self::TlbiSel2All,
            Opcode::TlbiSel2Asid
            | Opcode::TlbiSel2Va
            | Opcode::TlbiSel2Vaa
            | Opcode::TlbiSS12Vmall
            | Opcode::TlbiSS2Ipa
            | Opcode::TlbiSnhAll
            | Opcode::DptiAll
            | Opcode::DptiPa => return Err(DecodeError::Unsupported(op)),
        })
    }

    /// Whether the command is only legal on the Secure command queue (IHI 0070 §4.1.1).
    #[inline]
    pub const fn is_secure_only(&self) -> bool {
        self.opcode().is_secure_only()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Checks `cmd` against raw dwords worked out by hand from the field tables of
    /// IHI 0070 §4, not produced by `encode`.
    fn pin(cmd: Command, raw: [u64; 2]) {
        assert_eq!(cmd.encode(), CmdqEntry(raw), "encode {cmd:?}");
        assert_eq!(Command::decode(CmdqEntry(raw)), Ok(cmd), "decode {raw:#x?}");
        assert_eq!(cmd.encode().opcode(), cmd.opcode().raw());
    }

    const R: TlbiRange = TlbiRange::NONE;

    #[test]
    fn pinned_config_commands() {
        pin(
            Command::PrefetchConfig {
                sid: StreamId(0x1234),
                ssid: Some(SubstreamId(0xabcde)),
            },
            [0x0000_1234_abcd_e801, 0],
        );
        pin(
            Command::PrefetchConfig {
                sid: StreamId(7),
                ssid: None,
            },
            [0x0000_0007_0000_0001, 0],
        );
        pin(
            Command::PrefetchAddr {
                sid: StreamId(0x10),
                ssid: None,
                addr: 0x1234_5000,
                size: 3,
            },
            [0x0000_0010_0000_0002, 0x1234_5003],
        );
        pin(
            Command::CfgiSte {
                sid: StreamId(0x42),
                leaf: true,
            },
            [0x0000_0042_0000_0003, 1],
        );
        pin(
            Command::CfgiSte {
                sid: StreamId(0x42),
                leaf: false,
            },
            [0x0000_0042_0000_0003, 0],
        );
        pin(
            Command::CfgiSteRange {
                sid: StreamId(0x100),
                range: 4,
            },
            [0x0000_0100_0000_0004, 4],
        );
        pin(Command::CfgiAll, [0x04, 31]);
        pin(
            Command::CfgiCd {
                sid: StreamId(9),
                ssid: SubstreamId(5),
                leaf: true,
            },
            [0x0000_0009_0000_5005, 1],
        );
        pin(
            Command::CfgiCdAll {
                sid: StreamId(0xffff_ffff),
            },
            [0xffff_ffff_0000_0006, 0],
        );
        pin(
            Command::CfgiVmsPidm { vmid: Vmid(0x33) },
            [0x0000_0033_0000_0007, 0],
        );
    }

    #[test]
    fn pinned_tlbi_commands() {
        pin(
            Command::TlbiNhAll { vmid: Vmid(1) },
            [0x0000_0001_0000_0010, 0],
        );
        pin(
            Command::TlbiNhAsid {
                vmid: Vmid(2),
                asid: Asid(0xbeef),
            },
            [0xbeef_0002_0000_0011, 0],
        );
        pin(
            Command::TlbiNhVa {
                vmid: Vmid(3),
                asid: Asid(4),
                addr: 0xffff_8000_1234_5000,
                leaf: true,
                range: TlbiRange {
                    num: 5,
                    scale: 2,
                    ttl: 3,
                    tg: 1,
                },
            },
            [0x0004_0003_0020_5012, 0xffff_8000_1234_5701],
        );
        pin(
            Command::TlbiNhVaa {
                vmid: Vmid(0x10),
                addr: 0x4000_0000,
                leaf: false,
                range: R,
            },
            [0x0000_0010_0000_0013, 0x4000_0000],
        );
        pin(Command::TlbiEl3All, [0x18, 0]);
        pin(
            Command::TlbiEl3Va {
                addr: 0x8000,
                leaf: true,
                range: R,
            },
            [0x1a, 0x8001],
        );
        pin(Command::TlbiEl2All, [0x20, 0]);
        pin(
            Command::TlbiEl2Asid { asid: Asid(0x77) },
            [0x0077_0000_0000_0021, 0],
        );
        pin(
            Command::TlbiEl2Va {
                asid: Asid(1),
                addr: 0x2000,
                leaf: false,
                range: TlbiRange {
                    num: 31,
                    scale: 31,
                    ttl: 0,
                    tg: 3,
                },
            },
            [0x0001_0000_01f1_f022, 0x2c00],
        );
        pin(
            Command::TlbiEl2Vaa {
                addr: 0x3000,
                leaf: true,
                range: TlbiRange {
                    num: 1,
                    scale: 0,
                    ttl: 2,
                    tg: 2,
                },
            },
            [0x1023, 0x3a01],
        );
        pin(
            Command::TlbiS12Vmall { vmid: Vmid(0xffff) },
            [0x0000_ffff_0000_0028, 0],
        );
        pin(
            Command::TlbiS2Ipa {
                vmid: Vmid(5),
                ipa: 0x000f_ffff_ffff_f000,
                leaf: true,
                range: TlbiRange {
                    num: 7,
                    scale: 9,
                    ttl: 3,
                    tg: 1,
                },
            },
            [0x0000_0005_0090_702a, 0x000f_ffff_ffff_f701],
        );
        // SCALE bit 25 (6-bit SCALE with IDR5.DS = 1).
        pin(
            Command::TlbiS2Ipa {
                vmid: Vmid(0),
                ipa: 0x1000,
                leaf: false,
                range: TlbiRange {
                    num: 0,
                    scale: 32,
                    ttl: 0,
                    tg: 1,
                },
            },
            [0x0200_002a, 0x1400],
        );
        pin(Command::TlbiNsnhAll, [0x30, 0]);
        pin(Command::TlbiSel2All, [0x50, 0]);
    }

    #[test]
    fn pinned_ats_pri_stall_sync() {
        pin(
            Command::AtcInv {
                sid: StreamId(0x20),
                ssid: Some(SubstreamId(3)),
                global: true,
                addr: 0x10_0000,
                size: ATC_INV_SIZE_ALL,
            },
            [0x0000_0020_0000_3a40, 0x10_0034],
        );
        for (resp, d1) in [
            (PriResponse::Failure, 0x01ff),
            (PriResponse::InvalidRequest, 0x11ff),
            (PriResponse::Success, 0x21ff),
        ] {
            pin(
                Command::PriResp {
                    sid: StreamId(0x30),
                    ssid: None,
                    prg_index: 0x1ff,
                    resp,
                },
                [0x0000_0030_0000_0041, d1],
            );
        }
        pin(
            Command::PriResp {
                sid: StreamId(1),
                ssid: Some(SubstreamId(0xfffff)),
                prg_index: 2,
                resp: PriResponse::Success,
            },
            [0x0000_0001_ffff_f841, 0x2002],
        );
        for (action, d0) in [
            (ResumeAction::Terminate, 0x0000_0050_0000_0044),
            (ResumeAction::Retry, 0x0000_0050_0000_1044),
            (ResumeAction::Abort, 0x0000_0050_0000_2044),
        ] {
            pin(
                Command::Resume {
                    sid: StreamId(0x50),
                    stag: 0xabcd,
                    action,
                },
                [d0, 0xabcd],
            );
        }
        pin(
            Command::StallTerm {
                sid: StreamId(0x60),
            },
            [0x0000_0060_0000_0045, 0],
        );
        for (cs, d0) in [
            (SyncCs::None, 0x46),
            (SyncCs::Irq, 0x1046),
            (SyncCs::Sev, 0x2046),
        ] {
            pin(
                Command::Sync {
                    cs,
                    msh: 0,
                    msi_attr: 0,
                    msi_data: 0,
                    msi_addr: PhysAddr(0),
                },
                [d0, 0],
            );
        }
        assert_eq!(Command::sync().encode(), CmdqEntry([0x46, 0]));
        pin(
            Command::Sync {
                cs: SyncCs::Irq,
                msh: 3,
                msi_attr: 0xf,
                msi_data: 0xdead_beef,
                msi_addr: PhysAddr(0x000f_ffff_ffff_fffc),
            },
            [0xdead_beef_0fc0_1046, 0x000f_ffff_ffff_fffc],
        );
    }

    #[test]
    fn encode_truncates_to_field_widths() {
        // Low address bits, IPA above bit 51 and MSIAddr bits [1:0] are dropped.
        let e = Command::TlbiS2Ipa {
            vmid: Vmid(1),
            ipa: 0xfff0_0000_0000_1fff,
            leaf: false,
            range: R,
        }
        .encode();
        assert_eq!(e.0[1], 0x1000);
        let e = Command::Sync {
            cs: SyncCs::None,
            msh: 0xff,
            msi_attr: 0xff,
            msi_data: 0,
            msi_addr: PhysAddr(0xffff_ffff_ffff_ffff),
        }
        .encode();
        assert_eq!(e.0, [0x0fc0_0046, 0x000f_ffff_ffff_fffc]);
        // TG = 0: NUM/SCALE/TTL are RES0 and not written.
        let e = Command::TlbiNhVaa {
            vmid: Vmid(0),
            addr: 0x5000,
            leaf: true,
            range: TlbiRange {
                num: 3,
                scale: 3,
                ttl: 3,
                tg: 0,
            },
        }
        .encode();
        assert_eq!(e.0, [0x13, 0x5001]);
        // An oversized SubstreamID cannot spill into the StreamID.
        let e = Command::PrefetchConfig {
            sid: StreamId(0),
            ssid: Some(SubstreamId(0xfff_ffff)),
        }
        .encode();
        assert_eq!(e.0, [0xffff_f801, 0]);
    }

    #[test]
    fn decode_errors() {
        let d = |d0: u64, d1: u64| Command::decode(CmdqEntry([d0, d1]));
        for op in [
            0x00u64, 0x08, 0x0a, 0x14, 0x19, 0x31, 0x42, 0x47, 0x80, 0x8f, 0xff,
        ] {
            assert_eq!(d(op, 0), Err(DecodeError::UnknownOpcode(op as u8)));
        }
        for op in [0x51u8, 0x52, 0x53, 0x58, 0x5a, 0x60, 0x70, 0x73] {
            assert_eq!(
                d(u64::from(op), 0),
                Err(DecodeError::Unsupported(Opcode::from_u8(op).unwrap()))
            );
        }
        assert_eq!(
            d(0x3046, 0),
            Err(DecodeError::Reserved {
                opcode: 0x46,
                field: "CS",
                value: 3
            })
        );
        assert_eq!(
            d(0x41, 0x3000),
            Err(DecodeError::Reserved {
                opcode: 0x41,
                field: "Resp",
                value: 3
            })
        );
        // TG != 0 with NUM = SCALE = TTL = 0 is reserved.
        for op in [0x12u64, 0x13, 0x1a, 0x22, 0x23, 0x2a] {
            assert!(
                matches!(d(op, 0x400), Err(DecodeError::Reserved { .. })),
                "{op:#x}"
            );
        }
        // SSec on every command that has it.
        for op in [0x01u64, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x44, 0x45] {
            assert_eq!(d(op | 0x400, 0), Err(DecodeError::Secure), "{op:#x}");
        }
        // Bit 10 is RES0 (not SSec) in ATC_INV and ignored.
        assert!(matches!(d(0x440, 0), Ok(Command::AtcInv { .. })));
        assert_eq!(
            Error::from(DecodeError::Secure),
            Error::Rejected(Rejection::Undecodable(DecodeError::Secure))
        );
        assert_eq!(Error::from(DecodeError::Secure).errno(), -5);
    }

    #[test]
    fn decode_special_cases() {
        let d = |d0: u64, d1: u64| Command::decode(CmdqEntry([d0, d1])).unwrap();
        // 0x07 is CFGI_VMS_PIDM, never CFGI_ALL.
        assert_eq!(d(0x07, 31), Command::CfgiVmsPidm { vmid: Vmid(0) });
        // 0x04 with Range 31 is CFGI_ALL whatever the StreamID.
        assert_eq!(d(0x0000_1234_0000_0004, 31), Command::CfgiAll);
        assert_eq!(
            d(0x0000_1234_0000_0004, 30),
            Command::CfgiSteRange {
                sid: StreamId(0x1234),
                range: 30
            }
        );
        // SSV = 0: SubstreamID bits ignored.
        assert_eq!(
            d(0x0000_0001_1234_5001, 0),
            Command::PrefetchConfig {
                sid: StreamId(1),
                ssid: None
            }
        );
        // RESUME Action 3: Ac = 1 retries, Ab ignored.
        assert_eq!(
            d(0x3044, 9),
            Command::Resume {
                sid: StreamId(0),
                stag: 9,
                action: ResumeAction::Retry
            }
        );
        // TG = 0: NUM/SCALE/TTL read as zero.
        assert_eq!(
            d(0x01f1_f012, 0x0301),
            Command::TlbiNhVa {
                vmid: Vmid(0),
                asid: Asid(0),
                addr: 0,
                leaf: true,
                range: R
            }
        );
        // RES0 bits are dropped by decode + encode.
        let clean = Command::decode(CmdqEntry([0x0000_0042_0000_0303, 0xff00]))
            .unwrap()
            .encode();
        assert_eq!(clean.0, [0x0000_0042_0000_0003, 0]);
    }

    #[test]
    fn raw_accessors() {
        let mut e = CmdqEntry([0xdead_beef_0000_0803 | (0x1234 << 12), 1]);
        assert_eq!(e.opcode(), 0x03);
        assert_eq!(e.sid(), StreamId(0xdead_beef));
        assert_eq!(e.vmid(), Vmid(0xbeef));
        assert_eq!(e.asid(), Asid(0xdead));
        assert_eq!(e.ssid(), Some(SubstreamId(0x1234)));
        assert!(!e.ssec());
        e.set_sid(StreamId(0x55));
        assert_eq!(e.0, [0x0000_0055_0123_4803, 1]);
        let mut t = CmdqEntry([0xbeef_0002_0000_0011, 7]);
        t.set_vmid(Vmid(0x99));
        assert_eq!(t.0, [0xbeef_0099_0000_0011, 7]);
        assert_eq!(t.ssid(), None);
        // CFGI_CD has no SSV: the SubstreamID field is read as is.
        let c = CmdqEntry([0x0000_0009_0000_5005, 1]);
        assert_eq!(c.ssid(), Some(SubstreamId(5)));
        assert!(CmdqEntry([0x403, 0]).ssec());
        assert_eq!(core::mem::size_of::<CmdqEntry>(), 16);
        assert_eq!(CmdqEntry::from(Command::CfgiAll), CmdqEntry([4, 31]));
    }

    #[test]
    fn opcode_table() {
        let mut n = 0;
        for raw in 0..=255u8 {
            if let Some(op) = Opcode::from_u8(raw) {
                assert_eq!(op.raw(), raw);
                assert!(Opcode::ALL.contains(&op));
                assert!(op.name().starts_with("CMD_"));
                n += 1;
            }
        }
        assert_eq!(n, Opcode::ALL.len());
        assert_eq!(Opcode::CFGI_ALL.raw(), 0x04);
        assert_eq!(Opcode::CfgiVmsPidm.raw(), 0x07);
        assert!(Command::TlbiEl3All.is_secure_only());
        assert!(Command::TlbiSel2All.is_secure_only());
        assert!(!Command::TlbiNsnhAll.is_secure_only());
        assert_eq!(Opcode::Sync.name(), "CMD_SYNC");
    }

    /// Variants generated by `arb_command`, one selector each.
    const VARIANTS: u8 = 26;

    fn arb_range() -> impl Strategy<Value = TlbiRange> {
        prop_oneof![
            Just(TlbiRange::NONE),
            (0u8..32, 0u8..64, 0u8..4, 1u8..4)
                .prop_filter("reserved NUM/SCALE/TTL", |&(n, s, t, _)| n | s | t != 0)
                .prop_map(|(num, scale, ttl, tg)| TlbiRange {
                    num,
                    scale,
                    ttl,
                    tg
                }),
        ]
    }

    fn arb_command() -> impl Strategy<Value = Command> {
        (
            0..VARIANTS,
            (
                any::<u32>(),
                proptest::option::of(0u32..=SubstreamId::MAX),
                any::<u16>(),
                any::<u16>(),
                any::<bool>(),
            ),
            (
                any::<u64>(),
                any::<u64>(),
                arb_range(),
                any::<u8>(),
                any::<u16>(),
                any::<u32>(),
            ),
        )
            .prop_map(
                |(sel, (sid, ssid, vmid, asid, flag), (a, b, range, small, half, word))| {
                    let sid = StreamId(sid);
                    let ssid = ssid.map(SubstreamId);
                    let vmid = Vmid(vmid);
                    let asid = Asid(asid);
                    let addr = a & !0xfff;
                    let ipa = b & 0x000f_ffff_ffff_f000;
                    let leaf = flag;
                    match sel {
                        0 => Command::PrefetchConfig { sid, ssid },
                        1 => Command::PrefetchAddr {
                            sid,
                            ssid,
                            addr,
                            size: small & 31,
                        },
                        2 => Command::CfgiSte { sid, leaf },
                        3 => Command::CfgiSteRange {
                            sid,
                            range: small % 31,
                        },
                        4 => Command::CfgiAll,
                        5 => Command::CfgiCd {
                            sid,
                            ssid: SubstreamId(word & SubstreamId::MAX),
                            leaf,
                        },
                        6 => Command::CfgiCdAll { sid },
                        7 => Command::CfgiVmsPidm { vmid },
                        8 => Command::TlbiNhAll { vmid },
                        9 => Command::TlbiNhAsid { vmid, asid },
                        10 => Command::TlbiNhVa {
                            vmid,
                            asid,
                            addr,
                            leaf,
                            range,
                        },
                        11 => Command::TlbiNhVaa {
                            vmid,
                            addr,
                            leaf,
                            range,
                        },
                        12 => Command::TlbiEl3All,
                        13 => Command::TlbiEl3Va { addr, leaf, range },
                        14 => Command::TlbiEl2All,
                        15 => Command::TlbiEl2Asid { asid },
                        16 => Command::TlbiEl2Va {
                            asid,
                            addr,
                            leaf,
                            range,
                        },
                        17 => Command::TlbiEl2Vaa { addr, leaf, range },
                        18 => Command::TlbiS12Vmall { vmid },
                        19 => Command::TlbiS2Ipa {
                            vmid,
                            ipa,
                            leaf,
                            range,
                        },
                        20 => Command::TlbiNsnhAll,
                        21 => Command::AtcInv {
                            sid,
                            ssid,
                            global: flag,
                            addr,
                            size: small & 63,
                        },
                        22 => Command::PriResp {
                            sid,
                            ssid,
                            prg_index: half & 0x1ff,
                            resp: PriResponse::from_raw(small % 3).unwrap(),
                        },
                        23 => Command::Resume {
                            sid,
                            stag: half,
                            action: ResumeAction::from_raw(small % 3),
                        },
                        24 => Command::StallTerm { sid },
                        25 if flag => Command::TlbiSel2All,
                        _ => Command::Sync {
                            cs: SyncCs::from_raw(small % 3).unwrap(),
                            msh: (half & 3) as u8,
                            msi_attr: ((half >> 2) & 15) as u8,
                            msi_data: word,
                            msi_addr: PhysAddr(b & 0x000f_ffff_ffff_fffc),
                        },
                    }
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn prop_round_trip(cmd in arb_command()) {
            let e = cmd.encode();
            prop_assert_eq!(e.opcode(), cmd.opcode().raw());
            prop_assert!(!e.ssec());
            let back = Command::decode(e);
            prop_assert_eq!(back, Ok(cmd));
            prop_assert_eq!(back.unwrap().encode(), e);
        }

        #[test]
        fn prop_decode_never_panics(d0 in any::<u64>(), d1 in any::<u64>(), op in any::<u8>()) {
            // Half the cases get a real opcode so that the field decoders are exercised.
            for raw in [[d0, d1], [(d0 & !0xff) | u64::from(op % 0x47), d1]] {
                let e = CmdqEntry(raw);
                match Command::decode(e) {
                    Ok(cmd) => {
                        let clean = cmd.encode();
                        prop_assert_eq!(clean.opcode(), e.opcode());
                        prop_assert_eq!(Command::decode(clean), Ok(cmd));
                        prop_assert!(!clean.ssec());
                    }
                    Err(DecodeError::UnknownOpcode(o)) => {
                        prop_assert_eq!(o, e.opcode());
                        prop_assert!(Opcode::from_u8(o).is_none());
                    }
                    Err(_) => {}
                }
            }
        }
    }
}
