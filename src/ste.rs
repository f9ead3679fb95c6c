//! Stream table entries (IHI 0070 §5.2), L1 stream-table descriptors and stream-table geometry.
//!
//! [`Ste`] is the raw 64-byte little-endian slot the SMMU reads; [`SteConfig`] is its typed view.
//! Builders never panic: they mask each value into its field. [`Ste::config`] is the checker: it
//! returns a typed [`SteError`] for the reserved or inconsistent encodings the SMMU would answer
//! with C_BAD_STE (IHI 0070 §7.3.5).
//!
//! Every field position is named once, in the `STE0`..`STE3` bitfield blocks below.

use tock_registers::fields::FieldValue;
use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::error::Error;
use crate::ids::{PhysAddr, StreamId, Vmid};

register_bitfields![u64,
    /// STE dword 0 (IHI 0070 §5.2).
    pub(crate) STE0 [
        /// V, bit `[0]`: the STE is valid.
        V OFFSET(0) NUMBITS(1) [],
        /// Config, bits `[3:1]`: abort, bypass, stage 1, stage 2 or nested.
        CONFIG OFFSET(1) NUMBITS(3) [
            Abort = 0,
            Bypass = 4,
            S1Trans = 5,
            S2Trans = 6,
            Nested = 7
        ],
        /// S1Fmt, bits `[5:4]`: CD table format.
        S1FMT OFFSET(4) NUMBITS(2) [],
        /// S1ContextPtr, bits `[51:6]`: CD table address >> 6.
        S1CONTEXTPTR OFFSET(6) NUMBITS(46) [],
        /// S1CDMax, bits `[63:59]`: log2 of the number of CDs.
        S1CDMAX OFFSET(59) NUMBITS(5) []
    ],
    /// STE dword 1 (IHI 0070 §5.2).
    pub(crate) STE1 [
        /// S1DSS, bits `[1:0]`: behaviour of transactions without a SubstreamID.
        S1DSS OFFSET(0) NUMBITS(2) [],
        /// S1CIR, bits `[3:2]`: inner cacheability of CD and stage-1 table fetches.
        S1CIR OFFSET(2) NUMBITS(2) [],
        /// S1COR, bits `[5:4]`: outer cacheability of CD and stage-1 table fetches.
        S1COR OFFSET(4) NUMBITS(2) [],
        /// S1CSH, bits `[7:6]`: shareability of CD and stage-1 table fetches.
        S1CSH OFFSET(6) NUMBITS(2) [],
        /// MEV, bit `[19]`: merge events.
        MEV OFFSET(19) NUMBITS(1) [],
        /// S2FWB, bit `[25]`: stage-2 forced write-back.
        S2FWB OFFSET(25) NUMBITS(1) [],
        /// S1STALLD, bit `[27]`: disable stalls for stage-1 faults.
        S1STALLD OFFSET(27) NUMBITS(1) [],
        /// EATS, bits `[29:28]`: ATS behaviour.
        EATS OFFSET(28) NUMBITS(2) [],
        /// STRW, bits `[31:30]`: StreamWorld.
        STRW OFFSET(30) NUMBITS(2) [],
        /// SHCFG, bits `[45:44]`: shareability override.
        SHCFG OFFSET(44) NUMBITS(2) [],
        /// INSTCFG, bits `[51:50]`: instruction/data override.
        INSTCFG OFFSET(50) NUMBITS(2) []
    ],
    /// STE dword 2 (IHI 0070 §5.2): stage-2 configuration; bits `[50:32]` follow VTCR_EL2`[18:0]`.
    pub(crate) STE2 [
        /// S2VMID, bits `[15:0]`.
        S2VMID OFFSET(0) NUMBITS(16) [],
        /// S2T0SZ, bits `[37:32]`: 64 - IPA size.
        S2T0SZ OFFSET(32) NUMBITS(6) [],
        /// S2SL0, bits `[39:38]`: starting level.
        S2SL0 OFFSET(38) NUMBITS(2) [],
        /// S2IR0, bits `[41:40]`: inner cacheability of stage-2 walks.
        S2IR0 OFFSET(40) NUMBITS(2) [],
        /// S2OR0, bits `[43:42]`: outer cacheability of stage-2 walks.
        S2OR0 OFFSET(42) NUMBITS(2) [],
        /// S2SH0, bits `[45:44]`: shareability of stage-2 walks.
        S2SH0 OFFSET(44) NUMBITS(2) [],
        /// S2TG, bits `[47:46]`: stage-2 granule.
        S2TG OFFSET(46) NUMBITS(2) [],
        /// S2PS, bits `[50:48]`: physical address size.
        S2PS OFFSET(48) NUMBITS(3) [],
        /// S2AA64, bit `[51]`: AArch64 stage-2 tables.
        S2AA64 OFFSET(51) NUMBITS(1) [],
        /// S2ENDI, bit `[52]`: big-endian stage-2 tables.
        S2ENDI OFFSET(52) NUMBITS(1) [],
        /// S2AFFD, bit `[53]`: disable stage-2 access-flag faults.
        S2AFFD OFFSET(53) NUMBITS(1) [],
        /// S2PTW, bit `[54]`: protected table walk.
        S2PTW OFFSET(54) NUMBITS(1) [],
        /// S2HD, bit `[55]`: stage-2 hardware dirty-state update.
        S2HD OFFSET(55) NUMBITS(1) [],
        /// S2HA, bit `[56]`: stage-2 hardware access-flag update.
        S2HA OFFSET(56) NUMBITS(1) [],
        /// S2S, bit `[57]`: stall on stage-2 faults.
        S2S OFFSET(57) NUMBITS(1) [],
        /// S2R, bit `[58]`: record stage-2 faults.
        S2R OFFSET(58) NUMBITS(1) []
    ],
    /// STE dword 3 (IHI 0070 §5.2).
    pub(crate) STE3 [
        /// S2TTB, bits `[51:4]`: stage-2 start-level table address >> 4.
        S2TTB OFFSET(4) NUMBITS(48) []
    ],
    /// L1 stream-table descriptor (IHI 0070 §5.1).
    pub(crate) L1STD [
        /// Span, bits `[4:0]`: the L2 table holds 2^(Span-1) STEs; 0 = invalid.
        SPAN OFFSET(0) NUMBITS(5) [],
        /// L2Ptr, bits `[51:6]`: L2 table address >> 6.
        L2PTR OFFSET(6) NUMBITS(46) []
    ]
];

register_bitfields![u32,
    /// The value written to SMMU_STRTAB_BASE_CFG (IHI 0070 §6.3.25).
    STRTAB_BASE_CFG_VALUE [
        /// LOG2SIZE, bits `[5:0]`.
        LOG2SIZE OFFSET(0) NUMBITS(6) [],
        /// SPLIT, bits `[10:6]`.
        SPLIT OFFSET(6) NUMBITS(5) [],
        /// FMT, bits `[17:16]`.
        FMT OFFSET(16) NUMBITS(2) []
    ]
];

type Dw0 = LocalRegisterCopy<u64, STE0::Register>;
type Dw1 = LocalRegisterCopy<u64, STE1::Register>;
type Dw2 = LocalRegisterCopy<u64, STE2::Register>;
type Dw3 = LocalRegisterCopy<u64, STE3::Register>;
/// The named STE.Config encodings.
type Config = STE0::CONFIG::Value;

/// Addresses the SMMU can hold: 52 bits at most (IHI 0070 §3.4).
const ADDR_LIMIT: u64 = 1 << 52;

/// A translation granule (IHI 0070 §5.2 S2TG, §5.4 TG0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Granule {
    /// 4 KiB pages, 9 bits per level.
    Size4K,
    /// 16 KiB pages, 11 bits per level.
    Size16K,
    /// 64 KiB pages, 13 bits per level.
    Size64K,
}

impl Granule {
    /// log2 of the page size.
    pub const fn shift(self) -> u8 {
        match self {
            Self::Size4K => 12,
            Self::Size16K => 14,
            Self::Size64K => 16,
        }
    }

    /// The page size in bytes.
    pub const fn bytes(self) -> u64 {
        1 << self.shift()
    }

    /// Address bits resolved by one table level (a table is one page of 8-byte descriptors).
    pub const fn bits_per_level(self) -> u8 {
        self.shift() - 3
    }

    /// The S2TG / CD.TG0 encoding: 0 = 4K, 1 = 64K, 2 = 16K (IHI 0070 §5.2, §5.4).
    pub const fn tg_encoding(self) -> u8 {
        match self {
            Self::Size4K => 0,
            Self::Size64K => 1,
            Self::Size16K => 2,
        }
    }

    /// Decodes an S2TG / CD.TG0 value; 3 is reserved.
    pub const fn from_tg_encoding(raw: u8) -> Option<Self> {
        match raw {
            0 => Some(Self::Size4K),
            1 => Some(Self::Size64K),
            2 => Some(Self::Size16K),
            _ => None,
        }
    }

    /// The largest input size this crate accepts for the granule (no 52-bit LPA2 with 4K/16K).
    const fn max_ias(self) -> u8 {
        match self {
            Self::Size4K | Self::Size16K => 48,
            Self::Size64K => 52,
        }
    }
}

/// Why an STE (or a stage-2 configuration) is not one the SMMU would accept (IHI 0070 §5.2,
/// C_BAD_STE §7.3.5), or cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum SteError {
    /// V = 0.
    NotValid,
    /// Config holds a reserved value (0b001..=0b011).
    ReservedConfig(u8),
    /// S1Fmt = 3 (reserved).
    ReservedS1Fmt,
    /// S1DSS = 3 (reserved) with substreams enabled.
    ReservedS1Dss,
    /// STRW = 0bx1 (illegal for a Non-secure STE).
    IllegalStrw(u8),
    /// S1CDMax larger than 20 SubstreamID bits.
    S1CdMaxTooLarge(u8),
    /// S2AA64 = 0: AArch32 stage-2 tables are not supported.
    S2NotAarch64,
    /// S2TG = 3 (reserved).
    ReservedS2Tg,
    /// S2PS = 7 (reserved).
    ReservedS2Ps(u8),
    /// S2SL0 is reserved for the granule, or does not fit S2T0SZ (IHI 0070 §5.2).
    S2StartLevel {
        /// The S2T0SZ value.
        t0sz: u8,
        /// The S2SL0 value.
        sl0: u8,
    },
    /// A start level S2SL0 cannot encode for the granule (4K: 0..=2; 16K/64K: 1..=3).
    StartLevel(u8),
    /// An IPA size that no stage-2 start level can translate with this granule.
    IpaBits(u8),
    /// A table address not aligned as the SMMU requires.
    Misaligned(PhysAddr),
    /// A table address beyond 52 bits.
    AddressTooWide(PhysAddr),
}

impl From<SteError> for Error {
    /// [`Error::Ste`], carrying why (`EINVAL`).
    fn from(e: SteError) -> Self {
        Error::Ste(e)
    }
}

/// STE.S1Fmt: the CD table format (IHI 0070 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum S1Fmt {
    /// One linear array of `2^S1CDMax` CDs.
    Linear = 0,
    /// Two levels, 4 KiB leaf tables (64 CDs each).
    TwoLevel4K = 1,
    /// Two levels, 64 KiB leaf tables (1024 CDs each).
    TwoLevel64K = 2,
}

/// STE.S1DSS: what happens to transactions without a SubstreamID when S1CDMax > 0 (IHI 0070 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum S1Dss {
    /// Terminate them (abort).
    Terminate = 0,
    /// Bypass stage 1.
    Bypass = 1,
    /// Translate them with CD 0.
    Ssid0 = 2,
}

/// STE.STRW: the StreamWorld of a Non-secure stream (IHI 0070 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Strw {
    /// 0b00: NS-EL1.
    El1 = 0,
    /// 0b10: NS-EL2 (NS-EL2-E2H when SMMU_CR2.E2H = 1).
    El2 = 2,
}

/// The stage-1 fields of an STE (dwords 0 and 1) for a stage-1 or nested stream (IHI 0070 §5.2).
///
/// Two-bit attribute fields keep the spec's encodings: `cir`/`cor` 0 NC, 1 WBRA, 2 WT, 3 WB;
/// `csh` 0 NSH, 2 OSH, 3 ISH; `eats` 0 abort, 1 full ATS, 2 split-stage; `shcfg` 0 NSH,
/// 1 incoming, 2 OSH, 3 ISH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct S1StreamConfig {
    /// S1Fmt.
    pub fmt: S1Fmt,
    /// S1ContextPtr: the CD table (physical address, or an IPA when nested); 64-byte aligned.
    pub context_ptr: PhysAddr,
    /// S1CDMax: log2 of the number of CDs (0 = one CD, no substreams).
    pub cd_max: u8,
    /// S1DSS.
    pub dss: S1Dss,
    /// S1CIR.
    pub cir: u8,
    /// S1COR.
    pub cor: u8,
    /// S1CSH.
    pub csh: u8,
    /// S1STALLD.
    pub stalld: bool,
    /// EATS.
    pub eats: u8,
    /// STRW.
    pub strw: Strw,
    /// SHCFG (used for stage 1 only when S1DSS = bypass).
    pub shcfg: u8,
}

impl S1StreamConfig {
    /// Linux's stage-1 defaults: linear CD table at `context_ptr` with `2^cd_max` CDs, S1DSS =
    /// terminate, WBRA inner/outer, inner shareable, NS-EL1, no ATS, no SHCFG override.
    pub const fn new(context_ptr: PhysAddr, fmt: S1Fmt, cd_max: u8) -> Self {
        Self {
            fmt,
            context_ptr,
            cd_max,
            dss: S1Dss::Terminate,
            cir: 1,
            cor: 1,
            csh: 3,
            stalld: false,
            eats: 0,
            strw: Strw::El1,
            shcfg: 0,
        }
    }

    fn dword0(&self) -> u64 {
        (STE0::S1FMT.val(self.fmt as u64)
            + STE0::S1CONTEXTPTR.val(self.context_ptr.0 >> 6)
            + STE0::S1CDMAX.val(u64::from(self.cd_max)))
        .value
    }

    fn dword1(&self) -> u64 {
        (STE1::S1DSS.val(self.dss as u64)
            + STE1::S1CIR.val(u64::from(self.cir))
            + STE1::S1COR.val(u64::from(self.cor))
            + STE1::S1CSH.val(u64::from(self.csh))
            + STE1::S1STALLD.val(u64::from(self.stalld))
            + STE1::EATS.val(u64::from(self.eats))
            + STE1::STRW.val(self.strw as u64)
            + STE1::SHCFG.val(u64::from(self.shcfg)))
        .value
    }

    fn decode(d0: Dw0, d1: Dw1) -> Result<Self, SteError> {
        let cd_max = d0.read(STE0::S1CDMAX) as u8;
        if cd_max > 20 {
            return Err(SteError::S1CdMaxTooLarge(cd_max));
        }
        let fmt = match d0.read(STE0::S1FMT) {
            0 => S1Fmt::Linear,
            1 => S1Fmt::TwoLevel4K,
            2 => S1Fmt::TwoLevel64K,
            _ => return Err(SteError::ReservedS1Fmt),
        };
        let dss = match d1.read(STE1::S1DSS) {
            0 => S1Dss::Terminate,
            1 => S1Dss::Bypass,
            2 => S1Dss::Ssid0,
            // S1DSS is ignored when substreams are off.
            _ if cd_max == 0 => S1Dss::Terminate,
            _ => return Err(SteError::ReservedS1Dss),
        };
        let strw = match d1.read(STE1::STRW) as u8 {
            0 => Strw::El1,
            2 => Strw::El2,
            raw => return Err(SteError::IllegalStrw(raw)),
        };
        Ok(Self {
            fmt,
            context_ptr: PhysAddr(d0.read(STE0::S1CONTEXTPTR) << 6),
            cd_max,
            dss,
            cir: d1.read(STE1::S1CIR) as u8,
            cor: d1.read(STE1::S1COR) as u8,
            csh: d1.read(STE1::S1CSH) as u8,
            stalld: d1.is_set(STE1::S1STALLD),
            eats: d1.read(STE1::EATS) as u8,
            strw,
            shcfg: d1.read(STE1::SHCFG) as u8,
        })
    }
}

/// The stage-2 fields of an STE (IHI 0070 §5.2 dword 2 and 3, plus S2FWB in dword 1).
///
/// `ir0`/`or0` 0 NC, 1 WBWA, 2 WT, 3 WB no-WA; `sh0` 0 NSH, 2 OSH, 3 ISH; `ps` uses the
/// IDR5.OAS encoding (0 = 32 bits, 1 = 36, 2 = 40, 3 = 42, 4 = 44, 5 = 48, 6 = 52).
/// Build it with [`S2Config::new`], which computes `t0sz` and `sl0` and checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct S2Config {
    /// S2VMID.
    pub vmid: Vmid,
    /// S2TTB: the (possibly concatenated) start-level table.
    pub ttb: PhysAddr,
    /// S2T0SZ: 64 - IPA size.
    pub t0sz: u8,
    /// S2SL0: start level, encoded per granule (IHI 0070 §5.2).
    pub sl0: u8,
    /// S2TG.
    pub tg: Granule,
    /// S2PS.
    pub ps: u8,
    /// S2IR0.
    pub ir0: u8,
    /// S2OR0.
    pub or0: u8,
    /// S2SH0.
    pub sh0: u8,
    /// S2AFFD: no access-flag faults.
    pub affd: bool,
    /// S2PTW: protected table walk.
    pub ptw: bool,
    /// S2R: record stage-2 faults.
    pub s2r: bool,
    /// S2S: stall on stage-2 faults.
    pub s2s: bool,
    /// S2FWB (dword 1): forced write-back.
    pub fwb: bool,
    /// S2ENDI: big-endian tables.
    pub endi: bool,
    /// S2HA: hardware access-flag update.
    pub ha: bool,
    /// S2HD: hardware dirty-state update.
    pub hd: bool,
}

/// Output sizes of the OAS / S2PS / CD.IPS encoding, indexed by the encoding (IHI 0070 §6.3.6).
const PS_BITS: [u8; 7] = [32, 36, 40, 42, 44, 48, 52];

/// The address size of an OAS / PS / IPS encoding (0..=6), or `None` if reserved.
pub const fn ps_bits(ps: u8) -> Option<u8> {
    match ps {
        0 => Some(32),
        1 => Some(36),
        2 => Some(40),
        3 => Some(42),
        4 => Some(44),
        5 => Some(48),
        6 => Some(52),
        _ => None,
    }
}

/// The smallest OAS / PS / IPS encoding holding `bits` address bits.
pub fn ps_for_bits(bits: u8) -> Option<u8> {
    PS_BITS.iter().position(|&b| b >= bits).map(|i| i as u8)
}

/// The start level S2SL0 encodes for granule `tg`, or `None` if reserved (IHI 0070 §5.2).
const fn sl0_to_level(tg: Granule, sl0: u8) -> Option<u8> {
    match (tg, sl0) {
        (_, 3) => None,
        (Granule::Size4K, s) => Some(2 - s),
        (_, s) => Some(3 - s),
    }
}

/// The S2SL0 encoding of start level `level` for granule `tg`, or `None` if not encodable.
const fn level_to_sl0(tg: Granule, level: u8) -> Option<u8> {
    match (tg, level) {
        (Granule::Size4K, 0..=2) => Some(2 - level),
        (Granule::Size16K | Granule::Size64K, 1..=3) => Some(3 - level),
        _ => None,
    }
}

/// Address bits resolved below level `level` (the page offset plus the levels after it).
const fn bits_below(tg: Granule, level: u8) -> u8 {
    tg.shift() + (3 - level) * tg.bits_per_level()
}

/// Whether a walk starting at `level` can translate `ias` bits: the start table resolves at least
/// one bit and at most `bits_per_level` + 4 (16 concatenated tables), IHI 0070 §5.2 / VMSAv8-64.
const fn geometry_ok(tg: Granule, ias: u8, level: u8) -> bool {
    if level > 3 || ias > tg.max_ias() {
        return false;
    }
    let lo = bits_below(tg, level);
    ias > lo && ias <= lo + tg.bits_per_level() + 4
}

impl S2Config {
    /// A stage-2 configuration for `ipa_bits` of IPA, walked from `start_level` with `granule`,
    /// tables at `ttb`. Computes S2T0SZ = 64 - `ipa_bits` and S2SL0, and checks that the start
    /// level can hold the IPA size (at most 16 concatenated tables) and that `ttb` is aligned to
    /// the start-level table size. Defaults (Linux's): WBWA walks, inner shareable, S2AA64,
    /// S2PTW, S2R; `ps` = the smallest encoding holding `ipa_bits` (set it to the SMMU's OAS if
    /// the tables map beyond that). IHI 0070 §5.2.
    pub fn new(
        vmid: Vmid,
        ttb: PhysAddr,
        ipa_bits: u8,
        granule: Granule,
        start_level: u8,
    ) -> Result<Self, SteError> {
        let sl0 = level_to_sl0(granule, start_level).ok_or(SteError::StartLevel(start_level))?;
        if ipa_bits > 52 {
            return Err(SteError::IpaBits(ipa_bits));
        }
        if !geometry_ok(granule, ipa_bits, start_level) {
            return Err(SteError::S2StartLevel {
                t0sz: 64 - ipa_bits,
                sl0,
            });
        }
        let ps = ps_for_bits(ipa_bits).ok_or(SteError::IpaBits(ipa_bits))?;
        let cfg = Self {
            vmid,
            ttb,
            t0sz: 64 - ipa_bits,
            sl0,
            tg: granule,
            ps,
            ir0: 1,
            or0: 1,
            sh0: 3,
            affd: false,
            ptw: true,
            s2r: true,
            s2s: false,
            fwb: false,
            endi: false,
            ha: false,
            hd: false,
        };
        if ttb.0 >= ADDR_LIMIT {
            return Err(SteError::AddressTooWide(ttb));
        }
        if !ttb.is_aligned(cfg.root_table_bytes().max(16)) {
            return Err(SteError::Misaligned(ttb));
        }
        Ok(cfg)
    }

    /// Like [`S2Config::new`] with the start level Linux picks: the fewest levels, and a start one
    /// level lower with concatenated tables when a level-0 table would have at most 16 entries.
    pub fn for_ipa_bits(
        vmid: Vmid,
        ttb: PhysAddr,
        ipa_bits: u8,
        granule: Granule,
    ) -> Result<Self, SteError> {
        let level =
            Self::default_start_level(ipa_bits, granule).ok_or(SteError::IpaBits(ipa_bits))?;
        Self::new(vmid, ttb, ipa_bits, granule, level)
    }

    /// The start level Linux uses for `ipa_bits` with `granule`, if one can be encoded.
    pub fn default_start_level(ipa_bits: u8, granule: Granule) -> Option<u8> {
        let shift = granule.shift();
        let bpl = granule.bits_per_level();
        if ipa_bits <= shift || ipa_bits > granule.max_ias() {
            return None;
        }
        let levels = (ipa_bits - shift).div_ceil(bpl);
        let mut level = 4u8.checked_sub(levels)?;
        if level == 0 && ipa_bits - bits_below(granule, 0) <= 4 {
            level = 1;
        }
        level_to_sl0(granule, level).map(|_| level)
    }

    /// The IPA size, 64 - S2T0SZ.
    pub const fn ipa_bits(&self) -> u8 {
        64u8.saturating_sub(self.t0sz)
    }

    /// The start level S2SL0 encodes, if not reserved.
    pub const fn start_level(&self) -> Option<u8> {
        sl0_to_level(self.tg, self.sl0)
    }

    /// Bytes of the (possibly concatenated) start-level table S2TTB points at; 0 if S2SL0 is
    /// reserved or does not fit S2T0SZ.
    pub const fn root_table_bytes(&self) -> u64 {
        let Some(level) = self.start_level() else {
            return 0;
        };
        let ias = self.ipa_bits();
        if !geometry_ok(self.tg, ias, level) {
            return 0;
        }
        8u64 << (ias - bits_below(self.tg, level))
    }

    /// Dword 2.
    fn dword2(&self) -> u64 {
        (STE2::S2VMID.val(u64::from(self.vmid.0))
            + STE2::S2T0SZ.val(u64::from(self.t0sz))
            + STE2::S2SL0.val(u64::from(self.sl0))
            + STE2::S2IR0.val(u64::from(self.ir0))
            + STE2::S2OR0.val(u64::from(self.or0))
            + STE2::S2SH0.val(u64::from(self.sh0))
            + STE2::S2TG.val(u64::from(self.tg.tg_encoding()))
            + STE2::S2PS.val(u64::from(self.ps))
            + STE2::S2AA64::SET
            + STE2::S2ENDI.val(u64::from(self.endi))
            + STE2::S2AFFD.val(u64::from(self.affd))
            + STE2::S2PTW.val(u64::from(self.ptw))
            + STE2::S2HD.val(u64::from(self.hd))
            + STE2::S2HA.val(u64::from(self.ha))
            + STE2::S2S.val(u64::from(self.s2s))
            + STE2::S2R.val(u64::from(self.s2r)))
        .value
    }

    /// Dword 3.
    fn dword3(&self) -> u64 {
        STE3::S2TTB.val(self.ttb.0 >> 4).value
    }

    fn decode(d1: Dw1, d2: Dw2, d3: Dw3) -> Result<Self, SteError> {
        if !d2.is_set(STE2::S2AA64) {
            return Err(SteError::S2NotAarch64);
        }
        let tg =
            Granule::from_tg_encoding(d2.read(STE2::S2TG) as u8).ok_or(SteError::ReservedS2Tg)?;
        let ps = d2.read(STE2::S2PS) as u8;
        if ps_bits(ps).is_none() {
            return Err(SteError::ReservedS2Ps(ps));
        }
        let cfg = Self {
            vmid: Vmid(d2.read(STE2::S2VMID) as u16),
            ttb: PhysAddr(d3.read(STE3::S2TTB) << 4),
            t0sz: d2.read(STE2::S2T0SZ) as u8,
            sl0: d2.read(STE2::S2SL0) as u8,
            tg,
            ps,
            ir0: d2.read(STE2::S2IR0) as u8,
            or0: d2.read(STE2::S2OR0) as u8,
            sh0: d2.read(STE2::S2SH0) as u8,
            affd: d2.is_set(STE2::S2AFFD),
            ptw: d2.is_set(STE2::S2PTW),
            s2r: d2.is_set(STE2::S2R),
            s2s: d2.is_set(STE2::S2S),
            fwb: d1.is_set(STE1::S2FWB),
            endi: d2.is_set(STE2::S2ENDI),
            ha: d2.is_set(STE2::S2HA),
            hd: d2.is_set(STE2::S2HD),
        };
        if cfg.root_table_bytes() == 0 {
            return Err(SteError::S2StartLevel {
                t0sz: cfg.t0sz,
                sl0: cfg.sl0,
            });
        }
        Ok(cfg)
    }
}

/// The typed view of a valid STE (IHI 0070 §5.2 Config).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SteConfig {
    /// V = 1, Config = 0b000: transactions are terminated silently.
    Abort,
    /// Config = 0b100: stage 1 and stage 2 bypassed.
    Bypass,
    /// Config = 0b101: stage 1 only.
    Stage1(S1StreamConfig),
    /// Config = 0b110: stage 2 only.
    Stage2(S2Config),
    /// Config = 0b111: stage 1 (the guest's CD table) then stage 2.
    Nested {
        /// The stage-1 fields.
        s1: S1StreamConfig,
        /// The stage-2 fields.
        s2: S2Config,
    },
}

/// A Stream Table Entry: 64 bytes, 8 little-endian dwords, 64-byte aligned (IHI 0070 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C, align(64))]
pub struct Ste(pub [u64; 8]);

const _: () = assert!(core::mem::size_of::<Ste>() == 64);
const _: () = assert!(core::mem::align_of::<Ste>() == 64);

impl Default for Ste {
    fn default() -> Self {
        Self::INVALID
    }
}

impl Ste {
    /// All zero: V = 0, so transactions abort and C_BAD_STE is recorded (IHI 0070 §5.2).
    pub const INVALID: Self = Self([0; 8]);

    /// V = 1, Config = abort: transactions are terminated without an event (IHI 0070 §5.2).
    pub const ABORT: Self = Self([
        STE0::V::SET.value | STE0::CONFIG::Abort.value,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
    ]);

    /// Dword 0 bits a guest may supply for a nested STE: V, Config, S1Fmt, S1ContextPtr, S1CDMax.
    pub const GUEST_DWORD0_MASK: u64 = STE0::V::SET.value
        | STE0::CONFIG::SET.value
        | STE0::S1FMT::SET.value
        | STE0::S1CONTEXTPTR::SET.value
        | STE0::S1CDMAX::SET.value;

    /// Dword 1 bits a guest may supply for a nested STE: S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS.
    pub const GUEST_DWORD1_MASK: u64 = STE1::S1DSS::SET.value
        | STE1::S1CIR::SET.value
        | STE1::S1COR::SET.value
        | STE1::S1CSH::SET.value
        | STE1::S1STALLD::SET.value
        | STE1::EATS::SET.value;

    fn d0(&self) -> Dw0 {
        LocalRegisterCopy::new(self.0[0])
    }
    fn d1(&self) -> Dw1 {
        LocalRegisterCopy::new(self.0[1])
    }
    fn d2(&self) -> Dw2 {
        LocalRegisterCopy::new(self.0[2])
    }
    fn d3(&self) -> Dw3 {
        LocalRegisterCopy::new(self.0[3])
    }

    /// Dword 0 of a valid STE with Config `config`.
    fn dword0(config: FieldValue<u64, STE0::Register>) -> u64 {
        (STE0::V::SET + config).value
    }

    /// A bypass STE; `shcfg_incoming` sets SHCFG = 1 (use incoming shareability), which needs
    /// IDR1.ATTR_TYPES_OVR (IHI 0070 §5.2, Linux's bypass template).
    pub fn bypass(shcfg_incoming: bool) -> Self {
        let mut ste = Self::INVALID;
        ste.0[0] = Self::dword0(STE0::CONFIG::Bypass);
        ste.0[1] = STE1::SHCFG.val(u64::from(shcfg_incoming)).value;
        ste
    }

    /// A stage-1-only STE (Config = 0b101). S2VMID stays 0.
    pub fn stage1(s1: &S1StreamConfig) -> Self {
        let mut ste = Self::INVALID;
        ste.0[0] = Self::dword0(STE0::CONFIG::S1Trans) | s1.dword0();
        ste.0[1] = s1.dword1();
        ste
    }

    /// A stage-2-only STE (Config = 0b110), S2AA64 = 1.
    pub fn stage2(s2: &S2Config) -> Self {
        let mut ste = Self::INVALID;
        ste.0[0] = Self::dword0(STE0::CONFIG::S2Trans);
        ste.0[1] = STE1::S2FWB.val(u64::from(s2.fwb)).value;
        ste.0[2] = s2.dword2();
        ste.0[3] = s2.dword3();
        ste
    }

    /// A nested STE (Config = 0b111, MEV = 1) from a guest STE and the host's stage 2.
    ///
    /// Only the guest bits of [`Ste::GUEST_DWORD0_MASK`] and [`Ste::GUEST_DWORD1_MASK`] are taken
    /// (the caller has sanitised them). Following Linux's rules (IHI 0070 §5.2, iommufd): a guest
    /// STE with V = 0, Config = abort or any Config other than bypass / stage 1 gives
    /// [`Ste::ABORT`]; a guest bypass STE gives the host's stage-2-only STE.
    pub fn nested(guest: &Ste, s2: &S2Config) -> Self {
        let g0 = guest.d0();
        if !g0.is_set(STE0::V) {
            return Self::ABORT;
        }
        match g0.read_as_enum(STE0::CONFIG) {
            Some(Config::Bypass) => Self::stage2(s2),
            Some(Config::S1Trans) => {
                let mut ste = Self::stage2(s2);
                ste.0[0] = (guest.0[0] & Self::GUEST_DWORD0_MASK & !STE0::CONFIG::SET.value)
                    | Self::dword0(STE0::CONFIG::Nested);
                ste.0[1] |= (guest.0[1] & Self::GUEST_DWORD1_MASK) | STE1::MEV::SET.value;
                ste
            }
            _ => Self::ABORT,
        }
    }

    /// This STE with EATS set to `eats` (0 abort, 1 full ATS, 2 split-stage).
    pub fn with_eats(mut self, eats: u8) -> Self {
        let mut d1 = self.d1();
        d1.modify(STE1::EATS.val(u64::from(eats)));
        self.0[1] = d1.get();
        self
    }

    /// This STE with SHCFG set to `shcfg` (0 NSH, 1 incoming, 2 OSH, 3 ISH).
    pub fn with_shcfg(mut self, shcfg: u8) -> Self {
        let mut d1 = self.d1();
        d1.modify(STE1::SHCFG.val(u64::from(shcfg)));
        self.0[1] = d1.get();
        self
    }

    /// This STE with MEV (merge events) set to `mev`.
    pub fn with_mev(mut self, mev: bool) -> Self {
        let mut d1 = self.d1();
        d1.modify(STE1::MEV.val(u64::from(mev)));
        self.0[1] = d1.get();
        self
    }

    /// V.
    pub fn valid(&self) -> bool {
        self.d0().is_set(STE0::V)
    }

    /// The raw Config field.
    pub fn config_raw(&self) -> u8 {
        self.d0().read(STE0::CONFIG) as u8
    }

    /// S1ContextPtr as an address.
    pub fn s1_context_ptr(&self) -> PhysAddr {
        PhysAddr(self.d0().read(STE0::S1CONTEXTPTR) << 6)
    }

    /// S1CDMax.
    pub fn s1_cd_max(&self) -> u8 {
        self.d0().read(STE0::S1CDMAX) as u8
    }

    /// The raw S1Fmt field.
    pub fn s1_fmt_raw(&self) -> u8 {
        self.d0().read(STE0::S1FMT) as u8
    }

    /// The raw S1DSS field.
    pub fn s1_dss_raw(&self) -> u8 {
        self.d1().read(STE1::S1DSS) as u8
    }

    /// EATS.
    pub fn eats(&self) -> u8 {
        self.d1().read(STE1::EATS) as u8
    }

    /// SHCFG.
    pub fn shcfg(&self) -> u8 {
        self.d1().read(STE1::SHCFG) as u8
    }

    /// MEV.
    pub fn mev(&self) -> bool {
        self.d1().is_set(STE1::MEV)
    }

    /// S2VMID.
    pub fn s2vmid(&self) -> Vmid {
        Vmid(self.d2().read(STE2::S2VMID) as u16)
    }

    /// S2R: stage-2 faults are recorded.
    pub fn s2r(&self) -> bool {
        self.d2().is_set(STE2::S2R)
    }

    /// S2S: stage-2 faults stall.
    pub fn s2s(&self) -> bool {
        self.d2().is_set(STE2::S2S)
    }

    /// S2TTB as an address.
    pub fn s2ttb(&self) -> PhysAddr {
        PhysAddr(self.d3().read(STE3::S2TTB) << 4)
    }

    /// The typed configuration, or why the SMMU would reject this STE with C_BAD_STE
    /// (IHI 0070 §5.2). Never panics.
    pub fn config(&self) -> Result<SteConfig, SteError> {
        let (d0, d1) = (self.d0(), self.d1());
        if !d0.is_set(STE0::V) {
            return Err(SteError::NotValid);
        }
        match d0.read_as_enum(STE0::CONFIG) {
            Some(Config::Abort) => Ok(SteConfig::Abort),
            Some(Config::Bypass) => Ok(SteConfig::Bypass),
            Some(Config::S1Trans) => Ok(SteConfig::Stage1(S1StreamConfig::decode(d0, d1)?)),
            Some(Config::S2Trans) => Ok(SteConfig::Stage2(S2Config::decode(
                d1,
                self.d2(),
                self.d3(),
            )?)),
            Some(Config::Nested) => Ok(SteConfig::Nested {
                s1: S1StreamConfig::decode(d0, d1)?,
                s2: S2Config::decode(d1, self.d2(), self.d3())?,
            }),
            None => Err(SteError::ReservedConfig(d0.read(STE0::CONFIG) as u8)),
        }
    }

    /// The bits the SMMU uses in this STE's current configuration (IHI 0070 §5.2; Linux's model,
    /// for the hitless-update algorithm). Stage 2 also counts S2AFFD, S2HA and S2HD, which this
    /// crate may set and Linux's model leaves out.
    pub fn used_bits(&self) -> [u64; 8] {
        let mut used = [0u64; 8];
        let d0 = self.d0();
        used[0] = STE0::V::SET.value;
        if !d0.is_set(STE0::V) {
            return used;
        }
        used[0] |= STE0::CONFIG::SET.value;
        let cfg = d0.read_as_enum(STE0::CONFIG);
        if cfg == Some(Config::Bypass) {
            used[1] |= STE1::SHCFG::SET.value;
        }
        if matches!(cfg, Some(Config::S1Trans | Config::Nested)) {
            used[0] |=
                STE0::S1FMT::SET.value | STE0::S1CONTEXTPTR::SET.value | STE0::S1CDMAX::SET.value;
            used[1] |= STE1::S1DSS::SET.value
                | STE1::S1CIR::SET.value
                | STE1::S1COR::SET.value
                | STE1::S1CSH::SET.value
                | STE1::S1STALLD::SET.value
                | STE1::STRW::SET.value
                | STE1::EATS::SET.value
                | STE1::MEV::SET.value
                | STE1::INSTCFG::SET.value;
            if self.d1().read(STE1::S1DSS) == S1Dss::Bypass as u64 {
                used[1] |= STE1::SHCFG::SET.value;
            }
            used[2] |= STE2::S2VMID::SET.value;
        }
        if matches!(cfg, Some(Config::S2Trans | Config::Nested)) {
            used[1] |= STE1::S2FWB::SET.value
                | STE1::EATS::SET.value
                | STE1::SHCFG::SET.value
                | STE1::MEV::SET.value
                | STE1::INSTCFG::SET.value;
            used[2] |= STE2::S2VMID::SET.value
                | STE2::S2T0SZ::SET.value
                | STE2::S2SL0::SET.value
                | STE2::S2IR0::SET.value
                | STE2::S2OR0::SET.value
                | STE2::S2SH0::SET.value
                | STE2::S2TG::SET.value
                | STE2::S2PS::SET.value
                | STE2::S2AA64::SET.value
                | STE2::S2ENDI::SET.value
                | STE2::S2AFFD::SET.value
                | STE2::S2PTW::SET.value
                | STE2::S2HD::SET.value
                | STE2::S2HA::SET.value
                | STE2::S2S::SET.value
                | STE2::S2R::SET.value;
            used[3] |= STE3::S2TTB::SET.value;
        }
        used
    }
}

/// An L1 stream-table descriptor (IHI 0070 §5.1): Span `[4:0]`, L2Ptr `[51:6]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(transparent)]
pub struct L1Std(pub u64);

const _: () = assert!(core::mem::size_of::<L1Std>() == 8);

impl L1Std {
    /// Span = 0: no L2 table; StreamIDs in this group give C_BAD_STREAMID.
    pub const INVALID: Self = Self(0);

    /// A descriptor for an L2 table of `2^(span-1)` STEs at `l2`. `None` unless `span` is
    /// 1..=11, `l2` fits in 52 bits and is aligned to the table size (IHI 0070 §5.1).
    pub fn new(l2: PhysAddr, span: u8) -> Option<Self> {
        if !(1..=11).contains(&span) || l2.0 >= ADDR_LIMIT || !l2.is_aligned(64 << (span - 1)) {
            return None;
        }
        Some(Self(
            (L1STD::SPAN.val(u64::from(span)) + L1STD::L2PTR.val(l2.0 >> 6)).value,
        ))
    }

    fn reg(self) -> LocalRegisterCopy<u64, L1STD::Register> {
        LocalRegisterCopy::new(self.0)
    }

    /// Span.
    pub fn span(self) -> u8 {
        self.reg().read(L1STD::SPAN) as u8
    }

    /// L2Ptr as an address.
    pub fn l2ptr(self) -> PhysAddr {
        PhysAddr(self.reg().read(L1STD::L2PTR) << 6)
    }

    /// Whether Span is 1..=11 (12..=31 are reserved and behave as 0).
    pub fn is_valid(self) -> bool {
        (1..=11).contains(&self.span())
    }

    /// Number of STEs in the L2 table (0 if invalid).
    pub fn l2_entries(self) -> u32 {
        if self.is_valid() {
            1 << (self.span() - 1)
        } else {
            0
        }
    }
}

/// The geometry of a stream table (IHI 0070 §5.1, SMMU_STRTAB_BASE_CFG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StreamTableLayout {
    /// One array of `2^log2` STEs.
    Linear {
        /// log2 of the number of STEs (LOG2SIZE).
        log2: u8,
    },
    /// An L1 array of `2^(log2 - split)` descriptors, each for `2^split` STEs.
    TwoLevel {
        /// StreamID bits covered (LOG2SIZE).
        log2: u8,
        /// StreamID bits resolved by an L2 table (SPLIT: 6, 8 or 10).
        split: u8,
    },
}

impl StreamTableLayout {
    /// Linux's SPLIT: 256 STEs (16 KiB) per L2 table.
    pub const LINUX_SPLIT: u8 = 8;
    /// Linux's cap on L1 entries (2^17).
    pub const MAX_L1_LOG2: u8 = 17;

    /// Linux's choice (IHI 0070 §5.1): 2-level with SPLIT 8 if the SMMU supports it
    /// (IDR0.ST_LEVEL) and more than 8 StreamID bits are needed, covering at most 2^17 L1
    /// entries; otherwise linear. The StreamID bits are min(`hw_sid_bits` (IDR1.SIDSIZE),
    /// `wanted_sid_bits`).
    pub fn choose(two_level_supported: bool, hw_sid_bits: u8, wanted_sid_bits: u8) -> Self {
        let bits = hw_sid_bits.min(wanted_sid_bits).min(32);
        if two_level_supported && bits > Self::LINUX_SPLIT {
            Self::TwoLevel {
                log2: bits.min(Self::MAX_L1_LOG2 + Self::LINUX_SPLIT),
                split: Self::LINUX_SPLIT,
            }
        } else {
            Self::Linear { log2: bits }
        }
    }

    /// The SMMU_STRTAB_BASE_CFG value: LOG2SIZE `[5:0]`, SPLIT `[10:6]`, FMT `[17:16]`.
    pub fn strtab_base_cfg(self) -> u32 {
        let v = match self {
            Self::Linear { log2 } => {
                STRTAB_BASE_CFG_VALUE::LOG2SIZE.val(u32::from(log2))
                    + STRTAB_BASE_CFG_VALUE::FMT.val(0)
            }
            Self::TwoLevel { log2, split } => {
                STRTAB_BASE_CFG_VALUE::LOG2SIZE.val(u32::from(log2))
                    + STRTAB_BASE_CFG_VALUE::SPLIT.val(u32::from(split))
                    + STRTAB_BASE_CFG_VALUE::FMT.val(1)
            }
        };
        v.value
    }

    /// StreamID bits the table covers.
    pub fn sid_bits(self) -> u8 {
        match self {
            Self::Linear { log2 } | Self::TwoLevel { log2, .. } => log2,
        }
    }

    /// Whether `sid` falls inside the table.
    pub fn covers(self, sid: StreamId) -> bool {
        let bits = self.sid_bits();
        bits >= 32 || u64::from(sid.0) < (1u64 << bits)
    }

    /// Number of L1 descriptors (0 for a linear table).
    pub fn l1_entries(self) -> u32 {
        match self {
            Self::Linear { .. } => 0,
            Self::TwoLevel { log2, split } => 1u32
                .checked_shl(u32::from(log2.saturating_sub(split)))
                .unwrap_or(0),
        }
    }

    /// STEs per L2 table (2-level) or in the whole table (linear), saturating at `u32::MAX`.
    pub fn l2_entries(self) -> u32 {
        let bits = match self {
            Self::Linear { log2 } => log2,
            Self::TwoLevel { split, .. } => split,
        };
        1u32.checked_shl(u32::from(bits)).unwrap_or(u32::MAX)
    }

    /// Bytes of the table STRTAB_BASE points at: the STE array (linear) or the L1 array.
    pub fn table_bytes(self) -> u64 {
        match self {
            Self::Linear { log2 } => 64u64 << log2.min(32),
            Self::TwoLevel { .. } => 8 * u64::from(self.l1_entries()),
        }
    }

    /// The L1 descriptor index of `sid` (2-level only; `None` for linear or out of range).
    pub fn l1_index(self, sid: StreamId) -> Option<u32> {
        match self {
            Self::TwoLevel { split, .. } if self.covers(sid) => {
                Some(sid.0.checked_shr(u32::from(split)).unwrap_or(0))
            }
            _ => None,
        }
    }

    /// The STE index of `sid` within its L2 table (2-level) or within the linear table;
    /// `None` if out of range.
    pub fn l2_index(self, sid: StreamId) -> Option<u32> {
        if !self.covers(sid) {
            return None;
        }
        match self {
            Self::Linear { .. } => Some(sid.0),
            Self::TwoLevel { split, .. } => Some(sid.0 & low_mask(split)),
        }
    }
}

const fn low_mask(bits: u8) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// S2AA64, which every stage-2 STE this crate builds carries.
    const AA64: u64 = 1 << 51;

    fn s2_zero() -> S2Config {
        S2Config {
            vmid: Vmid(0),
            ttb: PhysAddr(0),
            t0sz: 0,
            sl0: 0,
            tg: Granule::Size4K,
            ps: 0,
            ir0: 0,
            or0: 0,
            sh0: 0,
            affd: false,
            ptw: false,
            s2r: false,
            s2s: false,
            fwb: false,
            endi: false,
            ha: false,
            hd: false,
        }
    }

    #[test]
    fn config_field_positions() {
        assert_eq!(Ste::ABORT.0, [0x1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ste::bypass(false).0, [0x9, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ste::bypass(true).0[1], 0x0000_1000_0000_0000); // SHCFG = 1 at [45:44]
        assert_eq!(Ste::stage2(&s2_zero()).0[0], 0xD);
        let s1 = S1StreamConfig {
            fmt: S1Fmt::Linear,
            context_ptr: PhysAddr(0),
            cd_max: 0,
            dss: S1Dss::Terminate,
            cir: 0,
            cor: 0,
            csh: 0,
            stalld: false,
            eats: 0,
            strw: Strw::El1,
            shcfg: 0,
        };
        assert_eq!(Ste::stage1(&s1).0, [0xB, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ste::nested(&Ste::stage1(&s1), &s2_zero()).0[0], 0xF);
    }

    #[test]
    fn stage1_field_positions() {
        let mut s1 = S1StreamConfig::new(PhysAddr(0x000F_FFFF_FFFF_FFC0), S1Fmt::Linear, 0);
        s1.cir = 0;
        s1.cor = 0;
        s1.csh = 0;
        // S1ContextPtr [51:6]
        assert_eq!(Ste::stage1(&s1).0[0], 0x000F_FFFF_FFFF_FFC0 | 0xB);
        // Low bits and bits above 51 of the pointer are dropped.
        s1.context_ptr = PhysAddr(0xFFFF_0000_0000_007F);
        assert_eq!(Ste::stage1(&s1).0[0], 0x000F_0000_0000_0040 | 0xB);
        s1.context_ptr = PhysAddr(0);
        // S1CDMax [63:59]
        s1.cd_max = 20;
        assert_eq!(Ste::stage1(&s1).0[0], 0xA000_0000_0000_000B);
        s1.cd_max = 31;
        assert_eq!(Ste::stage1(&s1).0[0], 0xF800_0000_0000_000B);
        s1.cd_max = 0;
        // S1Fmt [5:4]
        s1.fmt = S1Fmt::TwoLevel64K;
        assert_eq!(Ste::stage1(&s1).0[0], 0x2B);
        s1.fmt = S1Fmt::Linear;
        // Dword 1: S1DSS [1:0], S1CIR [3:2], S1COR [5:4], S1CSH [7:6], S1STALLD 27, EATS [29:28],
        // STRW [31:30], SHCFG [45:44].
        s1.dss = S1Dss::Ssid0;
        s1.cir = 1;
        s1.cor = 2;
        s1.csh = 3;
        assert_eq!(Ste::stage1(&s1).0[1], 0b11_10_01_10);
        s1 = S1StreamConfig {
            dss: S1Dss::Terminate,
            cir: 0,
            cor: 0,
            csh: 0,
            stalld: true,
            ..s1
        };
        assert_eq!(Ste::stage1(&s1).0[1], 0x0800_0000);
        s1 = S1StreamConfig {
            stalld: false,
            eats: 2,
            ..s1
        };
        assert_eq!(Ste::stage1(&s1).0[1], 0x2000_0000);
        s1 = S1StreamConfig {
            eats: 0,
            strw: Strw::El2,
            ..s1
        };
        assert_eq!(Ste::stage1(&s1).0[1], 0x8000_0000);
        s1 = S1StreamConfig {
            strw: Strw::El1,
            shcfg: 3,
            ..s1
        };
        assert_eq!(Ste::stage1(&s1).0[1], 0x0000_3000_0000_0000);
    }

    #[test]
    fn stage2_field_positions() {
        let z = s2_zero();
        let dw2 = |c: S2Config| Ste::stage2(&c).0[2];
        assert_eq!(dw2(z), AA64);
        assert_eq!(
            dw2(S2Config {
                vmid: Vmid(0xABCD),
                ..z
            }),
            AA64 | 0xABCD
        ); // S2VMID [15:0]
        assert_eq!(
            dw2(S2Config { t0sz: 0x3F, ..z }),
            AA64 | 0x0000_003F_0000_0000
        ); // [37:32]
        assert_eq!(dw2(S2Config { sl0: 3, ..z }), AA64 | 0x0000_00C0_0000_0000); // [39:38]
        assert_eq!(dw2(S2Config { ir0: 3, ..z }), AA64 | 0x0000_0300_0000_0000); // [41:40]
        assert_eq!(dw2(S2Config { or0: 3, ..z }), AA64 | 0x0000_0C00_0000_0000); // [43:42]
        assert_eq!(dw2(S2Config { sh0: 3, ..z }), AA64 | 0x0000_3000_0000_0000); // [45:44]
        assert_eq!(
            dw2(S2Config {
                tg: Granule::Size16K,
                ..z
            }),
            AA64 | 0x0000_8000_0000_0000
        ); // [47:46]
        assert_eq!(
            dw2(S2Config {
                tg: Granule::Size64K,
                ..z
            }),
            AA64 | 0x0000_4000_0000_0000
        );
        assert_eq!(dw2(S2Config { ps: 7, ..z }), AA64 | 0x0007_0000_0000_0000); // [50:48]
        assert_eq!(AA64, 0x0008_0000_0000_0000); // S2AA64 51
        assert_eq!(
            dw2(S2Config { endi: true, ..z }),
            AA64 | 0x0010_0000_0000_0000
        ); // 52
        assert_eq!(
            dw2(S2Config { affd: true, ..z }),
            AA64 | 0x0020_0000_0000_0000
        ); // 53
        assert_eq!(
            dw2(S2Config { ptw: true, ..z }),
            AA64 | 0x0040_0000_0000_0000
        ); // 54
        assert_eq!(
            dw2(S2Config { hd: true, ..z }),
            AA64 | 0x0080_0000_0000_0000
        ); // 55
        assert_eq!(
            dw2(S2Config { ha: true, ..z }),
            AA64 | 0x0100_0000_0000_0000
        ); // 56
        assert_eq!(
            dw2(S2Config { s2s: true, ..z }),
            AA64 | 0x0200_0000_0000_0000
        ); // 57
        assert_eq!(
            dw2(S2Config { s2r: true, ..z }),
            AA64 | 0x0400_0000_0000_0000
        ); // 58
        // S2FWB is dword 1 bit 25.
        assert_eq!(Ste::stage2(&S2Config { fwb: true, ..z }).0[1], 0x0200_0000);
        // S2TTB, dword 3 [51:4]; other bits dropped.
        let ttb = |a: u64| {
            Ste::stage2(&S2Config {
                ttb: PhysAddr(a),
                ..z
            })
            .0[3]
        };
        assert_eq!(ttb(0x000F_FFFF_FFFF_FFF0), 0x000F_FFFF_FFFF_FFF0);
        assert_eq!(ttb(0xFFF0_0000_0000_001F), 0x0000_0000_0000_0010);
        // Nothing else.
        let ste = Ste::stage2(&S2Config {
            ttb: PhysAddr(0x1000),
            ..z
        });
        assert_eq!(&ste.0[4..], &[0; 4]);
    }

    /// The stage-2 STE QEMU virt accepted (`decode_ste_s2_cfg` in QEMU's `hw/arm/smmuv3.c`, run
    /// with `-machine virt,iommu=smmuv3`): VMID 5, S2T0SZ 25, S2SL0 1, 4K,
    /// S2PS 0b010, WB(WA)/ISH walks, S2AA64, S2AFFD, S2R, S2TTB = a 4 KiB level-1 table.
    #[test]
    fn qemu_accepted_stage2_ste() {
        let mut s2 = S2Config::new(Vmid(5), PhysAddr(0x4100_0000), 39, Granule::Size4K, 1).unwrap();
        assert_eq!((s2.t0sz, s2.sl0, s2.ps), (25, 1, 0b010));
        assert_eq!(s2.root_table_bytes(), 4096);
        s2.affd = true;
        s2.ptw = false; // the probe's STE did not set S2PTW
        let ste = Ste::stage2(&s2);
        let expected = Ste([
            0x0000_0000_0000_000D,
            0,
            // S2R | S2AFFD | S2AA64 | PS 2 | SH0 3 | OR0 1 | IR0 1 | SL0 1 | T0SZ 25 | VMID 5
            0x042A_3559_0000_0005,
            0x0000_0000_4100_0000,
            0,
            0,
            0,
            0,
        ]);
        for (i, (got, want)) in ste.0.iter().zip(expected.0.iter()).enumerate() {
            assert_eq!(got, want, "dword {i}: {got:#018x} != {want:#018x}");
        }
        assert_eq!(ste.config(), Ok(SteConfig::Stage2(s2)));
        assert_eq!(ste.s2vmid(), Vmid(5));
        assert_eq!(ste.s2ttb(), PhysAddr(0x4100_0000));
        assert!(ste.s2r());
    }

    #[test]
    fn reserved_and_illegal_values_are_typed_errors() {
        assert_eq!(Ste::INVALID.config(), Err(SteError::NotValid));
        for raw in 1..=3u64 {
            let ste = Ste([1 | raw << 1, 0, 0, 0, 0, 0, 0, 0]);
            assert_eq!(ste.config(), Err(SteError::ReservedConfig(raw as u8)));
        }
        // V = 0 wins over anything else.
        assert_eq!(
            Ste([0xE, 0, 0, 0, 0, 0, 0, 0]).config(),
            Err(SteError::NotValid)
        );

        let good = Ste::stage2(
            &S2Config::new(Vmid(1), PhysAddr(0x4000_0000), 40, Granule::Size4K, 1).unwrap(),
        );
        assert!(good.config().is_ok());
        let with2 = |clear: u64, set: u64| {
            let mut s = good;
            s.0[2] = (s.0[2] & !clear) | set;
            s.config()
        };
        assert_eq!(with2(1 << 51, 0), Err(SteError::S2NotAarch64));
        assert_eq!(with2(0, 3 << 46), Err(SteError::ReservedS2Tg));
        assert_eq!(with2(0, 7 << 48), Err(SteError::ReservedS2Ps(7)));
        // SL0 = 3 is reserved; SL0 = 0 (level 2) cannot hold 40 bits.
        assert_eq!(
            with2(0, 3 << 38),
            Err(SteError::S2StartLevel { t0sz: 24, sl0: 3 })
        );
        assert_eq!(
            with2(3 << 38, 0),
            Err(SteError::S2StartLevel { t0sz: 24, sl0: 0 })
        );

        let s1 = Ste::stage1(&S1StreamConfig::new(PhysAddr(0x1000), S1Fmt::Linear, 4));
        let with1 = |w: usize, set: u64| {
            let mut s = s1;
            s.0[w] |= set;
            s.config()
        };
        assert_eq!(with1(0, 3 << 4), Err(SteError::ReservedS1Fmt));
        assert_eq!(with1(0, 21 << 59), Err(SteError::S1CdMaxTooLarge(21)));
        assert_eq!(with1(1, 3), Err(SteError::ReservedS1Dss));
        assert_eq!(with1(1, 1 << 30), Err(SteError::IllegalStrw(1)));
        assert_eq!(with1(1, 3 << 30), Err(SteError::IllegalStrw(3)));
        // S1DSS is ignored without substreams.
        let one_cd = Ste::stage1(&S1StreamConfig::new(PhysAddr(0x1000), S1Fmt::Linear, 0));
        let mut s = one_cd;
        s.0[1] |= 3;
        assert!(s.config().is_ok());
    }

    #[test]
    fn s2config_new_checks_geometry() {
        let ttb = PhysAddr(0x4000_0000);
        let c = S2Config::new(Vmid(1), ttb, 48, Granule::Size4K, 0).unwrap();
        assert_eq!(
            (c.t0sz, c.sl0, c.ps, c.root_table_bytes()),
            (16, 2, 5, 4096)
        );
        let c = S2Config::new(Vmid(1), ttb, 44, Granule::Size4K, 0).unwrap();
        assert_eq!((c.t0sz, c.sl0, c.ps, c.root_table_bytes()), (20, 2, 4, 256));
        // 40 bits from level 1: two concatenated tables, 8 KiB aligned.
        let c = S2Config::new(Vmid(1), ttb, 40, Granule::Size4K, 1).unwrap();
        assert_eq!(c.root_table_bytes(), 8192);
        assert_eq!(
            S2Config::new(Vmid(1), PhysAddr(0x4000_1000), 40, Granule::Size4K, 1),
            Err(SteError::Misaligned(PhysAddr(0x4000_1000)))
        );
        assert_eq!(
            S2Config::new(Vmid(1), PhysAddr(1 << 52), 40, Granule::Size4K, 1),
            Err(SteError::AddressTooWide(PhysAddr(1 << 52)))
        );
        // 43 bits is the most level 1 can take (16 tables); 44 is too many.
        assert!(S2Config::new(Vmid(1), ttb, 43, Granule::Size4K, 1).is_ok());
        assert_eq!(
            S2Config::new(Vmid(1), ttb, 44, Granule::Size4K, 1),
            Err(SteError::S2StartLevel { t0sz: 20, sl0: 1 })
        );
        // Level 1 needs more than 30 bits.
        assert!(S2Config::new(Vmid(1), ttb, 30, Granule::Size4K, 1).is_err());
        // Level 3 is not encodable with 4K; level 0 not with 64K.
        assert_eq!(
            S2Config::new(Vmid(1), ttb, 20, Granule::Size4K, 3),
            Err(SteError::StartLevel(3))
        );
        assert_eq!(
            S2Config::new(Vmid(1), ttb, 52, Granule::Size64K, 0),
            Err(SteError::StartLevel(0))
        );
        assert!(S2Config::new(Vmid(1), ttb, 49, Granule::Size4K, 0).is_err());
        assert!(S2Config::new(Vmid(1), ttb, 200, Granule::Size4K, 0).is_err());
        // 16K / 64K SL0 encodings: level 3 -> 0, 2 -> 1, 1 -> 2.
        assert_eq!(
            S2Config::new(Vmid(1), ttb, 25, Granule::Size16K, 3)
                .unwrap()
                .sl0,
            0
        );
        assert_eq!(
            S2Config::new(Vmid(1), ttb, 36, Granule::Size16K, 2)
                .unwrap()
                .sl0,
            1
        );
        assert_eq!(
            S2Config::new(Vmid(1), ttb, 52, Granule::Size64K, 1)
                .unwrap()
                .sl0,
            2
        );

        assert_eq!(S2Config::default_start_level(39, Granule::Size4K), Some(1));
        assert_eq!(S2Config::default_start_level(40, Granule::Size4K), Some(1));
        assert_eq!(S2Config::default_start_level(44, Granule::Size4K), Some(0));
        assert_eq!(S2Config::default_start_level(48, Granule::Size4K), Some(0));
        assert_eq!(S2Config::default_start_level(32, Granule::Size4K), Some(1));
        assert_eq!(S2Config::default_start_level(30, Granule::Size4K), Some(2));
        assert_eq!(S2Config::default_start_level(48, Granule::Size16K), Some(1));
        assert_eq!(S2Config::default_start_level(42, Granule::Size64K), Some(2));
        assert_eq!(S2Config::default_start_level(60, Granule::Size4K), None);
        for g in [Granule::Size4K, Granule::Size16K, Granule::Size64K] {
            for bits in 0..=64 {
                if let Some(l) = S2Config::default_start_level(bits, g) {
                    let base = PhysAddr(1 << 40);
                    assert!(
                        S2Config::new(Vmid(0), base, bits, g, l).is_ok(),
                        "{g:?} {bits}"
                    );
                }
            }
        }
    }

    #[test]
    fn nested_follows_guest_config() {
        let s2 = S2Config::new(Vmid(7), PhysAddr(0x8000_0000), 40, Granule::Size4K, 1).unwrap();
        let mut g1 = S1StreamConfig::new(PhysAddr(0x1234_5640), S1Fmt::TwoLevel64K, 12);
        g1.dss = S1Dss::Bypass;
        g1.stalld = true;
        g1.eats = 1;
        g1.strw = Strw::El2; // not a guest field: dropped
        g1.shcfg = 2; // not a guest field: dropped
        let mut guest = Ste::stage1(&g1);
        guest.0[1] |= 0xF << 20; // SW_RESERVED: dropped
        guest.0[2] = u64::MAX; // dropped
        let n = Ste::nested(&guest, &s2);
        assert_eq!(n.config_raw(), 7);
        assert!(n.mev());
        assert_eq!(n.0[2], Ste::stage2(&s2).0[2]);
        assert_eq!(n.0[3], Ste::stage2(&s2).0[3]);
        let want_s1 = S1StreamConfig {
            strw: Strw::El1,
            shcfg: 0,
            ..g1
        };
        assert_eq!(n.config(), Ok(SteConfig::Nested { s1: want_s1, s2 }));
        assert_eq!(n.0[1] & 0xF << 20, 0);

        assert_eq!(Ste::nested(&Ste::INVALID, &s2), Ste::ABORT);
        assert_eq!(Ste::nested(&Ste::ABORT, &s2), Ste::ABORT);
        assert_eq!(Ste::nested(&Ste::bypass(true), &s2), Ste::stage2(&s2));
        assert_eq!(Ste::nested(&Ste::stage2(&s2), &s2), Ste::ABORT);
        assert_eq!(
            Ste::nested(&Ste([0x7, 0, 0, 0, 0, 0, 0, 0]), &s2),
            Ste::ABORT
        );
    }

    #[test]
    fn used_bits_follow_config() {
        assert_eq!(Ste::INVALID.used_bits(), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Ste::ABORT.used_bits(), [0xF, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(
            Ste::bypass(false).used_bits(),
            [0xF, 3 << 44, 0, 0, 0, 0, 0, 0]
        );

        let s1 = S1StreamConfig::new(PhysAddr(0x1000), S1Fmt::Linear, 0);
        let u = Ste::stage1(&s1).used_bits();
        assert_eq!(u[0], 0xF800_0000_0000_0000 | 0x000F_FFFF_FFFF_FFC0 | 0x3F);
        // S1DSS, S1CIR, S1COR, S1CSH, MEV, S1STALLD, EATS, STRW, INSTCFG.
        let d1 = 0xFF | 1 << 19 | 1 << 27 | 3 << 28 | 3 << 30 | 3 << 50;
        assert_eq!(u[1], d1);
        assert_eq!(u[2], 0xFFFF);
        assert_eq!(u[3], 0);
        let u = Ste::stage1(&S1StreamConfig {
            dss: S1Dss::Bypass,
            ..s1
        })
        .used_bits();
        assert_eq!(u[1], d1 | 3 << 44);

        let s2 = S2Config::new(Vmid(1), PhysAddr(0x4000_0000), 40, Granule::Size4K, 1).unwrap();
        let u = Ste::stage2(&s2).used_bits();
        assert_eq!(u[0], 0xF);
        assert_eq!(u[1], 1 << 19 | 1 << 25 | 3 << 28 | 3 << 44 | 3 << 50);
        assert_eq!(u[2], 0x07FF_FFFF_0000_FFFF);
        assert_eq!(u[3], 0x000F_FFFF_FFFF_FFF0);
        assert_eq!(&u[4..], &[0; 4]);
        let n = Ste::nested(&Ste::stage1(&s1), &s2).used_bits();
        assert_eq!(n[0], 0xF800_0000_0000_0000 | 0x000F_FFFF_FFFF_FFFF);
        assert_eq!(n[1], d1 | 1 << 25 | 3 << 44);
        // Reserved Config values use V and Config only.
        assert_eq!(
            Ste([0x7 | u64::MAX << 4, !0, !0, !0, 0, 0, 0, 0]).used_bits()[1..4],
            [0; 3][..]
        );
    }

    #[test]
    fn l1_descriptor() {
        let d = L1Std::new(PhysAddr(0x1234_4000), 9).unwrap();
        assert_eq!(d.0, 0x1234_4009);
        assert_eq!(
            (d.span(), d.l2ptr(), d.l2_entries(), d.is_valid()),
            (9, PhysAddr(0x1234_4000), 256, true)
        );
        assert_eq!(
            L1Std::new(PhysAddr(0x000F_FFFF_FFFF_FFC0), 1).unwrap().0,
            0x000F_FFFF_FFFF_FFC1
        );
        assert_eq!(L1Std::new(PhysAddr(0x1000), 0), None);
        assert_eq!(L1Std::new(PhysAddr(0x1000), 12), None);
        assert_eq!(L1Std::new(PhysAddr(0x1_2000), 9), None); // 16 KiB table, 8 KiB aligned
        assert_eq!(L1Std::new(PhysAddr(1 << 52), 1), None);
        assert!(!L1Std::INVALID.is_valid());
        assert_eq!(L1Std(12).l2_entries(), 0);
    }

    #[test]
    fn stream_table_layout() {
        // QEMU virt: SIDSIZE 16, 2-level supported.
        let l = StreamTableLayout::choose(true, 16, 32);
        assert_eq!(l, StreamTableLayout::TwoLevel { log2: 16, split: 8 });
        assert_eq!(l.strtab_base_cfg(), 0x0001_0210);
        assert_eq!(
            (l.l1_entries(), l.l2_entries(), l.table_bytes()),
            (256, 256, 2048)
        );
        assert_eq!(l.l1_index(StreamId(0x1234)), Some(0x12));
        assert_eq!(l.l2_index(StreamId(0x1234)), Some(0x34));
        assert_eq!(l.l1_index(StreamId(0x1_0000)), None);
        assert_eq!(l.l2_index(StreamId(0x1_0000)), None);
        // The hypervisor wants only 8 bits: linear, LOG2SIZE 8 (as the QEMU demo image programs it).
        let l = StreamTableLayout::choose(true, 16, 8);
        assert_eq!(l, StreamTableLayout::Linear { log2: 8 });
        assert_eq!(l.strtab_base_cfg(), 8);
        assert_eq!(
            (l.l1_entries(), l.l2_entries(), l.table_bytes()),
            (0, 256, 16384)
        );
        assert_eq!(l.l1_index(StreamId(5)), None);
        assert_eq!(l.l2_index(StreamId(5)), Some(5));
        assert_eq!(l.l2_index(StreamId(256)), None);
        assert_eq!(
            StreamTableLayout::choose(false, 16, 32),
            StreamTableLayout::Linear { log2: 16 }
        );
        // L1 capped at 2^17 entries.
        let l = StreamTableLayout::choose(true, 32, 32);
        assert_eq!(l, StreamTableLayout::TwoLevel { log2: 25, split: 8 });
        assert_eq!(l.strtab_base_cfg(), 25 | 8 << 6 | 1 << 16);
        assert_eq!(l.l1_entries(), 1 << 17);
        assert!(!l.covers(StreamId(1 << 25)));
        let l = StreamTableLayout::Linear { log2: 32 };
        assert!(l.covers(StreamId(u32::MAX)));
        assert_eq!(l.l2_entries(), u32::MAX);
    }

    fn granule() -> impl Strategy<Value = Granule> {
        prop_oneof![
            Just(Granule::Size4K),
            Just(Granule::Size16K),
            Just(Granule::Size64K)
        ]
    }

    fn s1_config() -> impl Strategy<Value = S1StreamConfig> {
        (
            prop_oneof![
                Just(S1Fmt::Linear),
                Just(S1Fmt::TwoLevel4K),
                Just(S1Fmt::TwoLevel64K)
            ],
            0u64..(1 << 46),
            0u8..=20,
            prop_oneof![
                Just(S1Dss::Terminate),
                Just(S1Dss::Bypass),
                Just(S1Dss::Ssid0)
            ],
            (0u8..4, 0u8..4, 0u8..4, 0u8..4, 0u8..4),
            any::<bool>(),
            prop_oneof![Just(Strw::El1), Just(Strw::El2)],
        )
            .prop_map(
                |(fmt, ptr, cd_max, dss, (cir, cor, csh, eats, shcfg), stalld, strw)| {
                    S1StreamConfig {
                        fmt,
                        context_ptr: PhysAddr(ptr << 6),
                        cd_max,
                        dss,
                        cir,
                        cor,
                        csh,
                        stalld,
                        eats,
                        strw,
                        shcfg,
                    }
                },
            )
    }

    fn s2_config() -> impl Strategy<Value = S2Config> {
        (
            granule(),
            16u8..=52,
            0u8..=3,
            any::<u16>(),
            0u64..(1 << 36),
            0u8..=6,
            (0u8..4, 0u8..4, 0u8..4),
            any::<[bool; 8]>(),
        )
            .prop_filter_map(
                "geometry",
                |(g, bits, level, vmid, ttb, ps, (ir0, or0, sh0), f)| {
                    let ttb = PhysAddr(ttb << 16);
                    let mut c = S2Config::new(Vmid(vmid), ttb, bits, g, level).ok()?;
                    c.ps = ps;
                    (c.ir0, c.or0, c.sh0) = (ir0, or0, sh0);
                    [c.affd, c.ptw, c.s2r, c.s2s, c.fwb, c.endi, c.ha, c.hd] = f;
                    Some(c)
                },
            )
    }

    proptest! {
        #[test]
        fn stage1_round_trip(s1 in s1_config()) {
            let ste = Ste::stage1(&s1);
            prop_assert_eq!(ste.config(), Ok(SteConfig::Stage1(s1)));
            prop_assert_eq!(ste.s1_context_ptr(), s1.context_ptr);
            prop_assert_eq!(ste.s1_cd_max(), s1.cd_max);
        }

        #[test]
        fn stage2_round_trip(s2 in s2_config()) {
            let ste = Ste::stage2(&s2);
            prop_assert_eq!(ste.config(), Ok(SteConfig::Stage2(s2)));
            prop_assert_eq!(ste.s2vmid(), s2.vmid);
            prop_assert_eq!(ste.s2ttb(), s2.ttb);
        }

        #[test]
        fn nested_round_trip(s1 in s1_config(), s2 in s2_config()) {
            let ste = Ste::nested(&Ste::stage1(&s1), &s2);
            let s1 = S1StreamConfig { strw: Strw::El1, shcfg: 0, ..s1 };
            prop_assert_eq!(ste.config(), Ok(SteConfig::Nested { s1, s2 }));
        }

        #[test]
        fn arbitrary_ste_never_panics(raw in any::<[u64; 8]>()) {
            let ste = Ste(raw);
            let used = ste.used_bits();
            prop_assert_eq!(used[0] & 1, 1);
            prop_assert!(used[4..].iter().all(|&u| u == 0));
            // A configuration that decodes rebuilds into an STE with the same configuration.
            if let Ok(cfg) = ste.config() {
                let rebuilt = match cfg {
                    SteConfig::Abort => Ste::ABORT,
                    SteConfig::Bypass => Ste::bypass(false),
                    SteConfig::Stage1(s1) => Ste::stage1(&s1),
                    SteConfig::Stage2(s2) => Ste::stage2(&s2),
                    SteConfig::Nested { s1, s2 } => {
                        let mut n = Ste::nested(&Ste::stage1(&s1), &s2);
                        n.0[1] |= STE1::STRW.val(s1.strw as u64).value | STE1::SHCFG.val(u64::from(s1.shcfg)).value;
                        n
                    }
                };
                prop_assert_eq!(rebuilt.config(), Ok(cfg));
            }
        }

        #[test]
        fn arbitrary_l1_and_layout_never_panic(raw in any::<u64>(), sid in any::<u32>(), two in any::<bool>(), hw in any::<u8>(), want in any::<u8>(), split in any::<u8>()) {
            let d = L1Std(raw);
            let _ = (d.span(), d.l2ptr(), d.l2_entries(), d.is_valid());
            for l in [StreamTableLayout::choose(two, hw, want), StreamTableLayout::TwoLevel { log2: hw, split }, StreamTableLayout::Linear { log2: hw }] {
                let _ = (l.strtab_base_cfg(), l.l1_entries(), l.l2_entries(), l.table_bytes());
                let _ = (l.l1_index(StreamId(sid)), l.l2_index(StreamId(sid)), l.covers(StreamId(sid)));
            }
        }
    }
}
