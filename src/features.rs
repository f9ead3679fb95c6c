//! `Features`: SMMU_IDR0..IDR5, IIDR and AIDR decoded into typed values (IHI 0070 §6.3.1-§6.3.8).
//!
//! [`Features::decode`] is infallible and total: every raw value decodes, reserved encodings are
//! kept as `Reserved` variants or raw numbers. [`Features::check`] is the one place that refuses
//! an SMMU this driver cannot drive.

use bitflags::bitflags;
use tock_registers::interfaces::Readable;

use crate::error::{Error, Feature};
use crate::regs::bits::{get32, is_set32};
use crate::regs::{AIDR, IDR0, IDR1, IDR2, IDR3, IDR5, IIDR, Page0};

/// The raw identification registers of one SMMU (IHI 0070 §6.3.1-§6.3.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct IdRegs {
    /// SMMU_IDR0 (IHI 0070 §6.3.1).
    pub idr0: u32,
    /// SMMU_IDR1 (IHI 0070 §6.3.2).
    pub idr1: u32,
    /// SMMU_IDR2 (IHI 0070 §6.3.3).
    pub idr2: u32,
    /// SMMU_IDR3 (IHI 0070 §6.3.4).
    pub idr3: u32,
    /// SMMU_IDR4, IMPLEMENTATION DEFINED (IHI 0070 §6.3.5).
    pub idr4: u32,
    /// SMMU_IDR5 (IHI 0070 §6.3.6).
    pub idr5: u32,
    /// SMMU_IIDR (IHI 0070 §6.3.7).
    pub iidr: u32,
    /// SMMU_AIDR (IHI 0070 §6.3.8).
    pub aidr: u32,
}

impl IdRegs {
    /// Reads the eight identification registers of `page0` (IHI 0070 §6.3.1-§6.3.8).
    ///
    /// Plain loads from read-only registers: no side effects on the SMMU.
    pub fn read(page0: &Page0) -> Self {
        Self {
            idr0: page0.IDR0.get(),
            idr1: page0.IDR1.get(),
            idr2: page0.IDR2.get(),
            idr3: page0.IDR3.get(),
            idr4: page0.IDR4.get(),
            idr5: page0.IDR5.get(),
            iidr: page0.IIDR.get(),
            aidr: page0.AIDR.get(),
        }
    }
}

/// The identification registers of QEMU's `virt` SMMUv3 with both stages (QEMU ≥ 10.0, or
/// `stage=nested`): IDR0 `0x0d44101b`, IDR1 `0x02730010`, IDR3 `0x1414`, IDR5 `0x74`, IIDR 0,
/// AIDR 1 (SMMUv3.1). For tests and the software model.
pub const QEMU_VIRT: IdRegs = IdRegs {
    idr0: 0x0d44_101b,
    idr1: 0x0273_0010,
    idr2: 0,
    idr3: 0x0000_1414,
    idr4: 0,
    idr5: 0x0000_0074,
    iidr: 0,
    aidr: 0x1,
};

/// IDR0.TTF: translation table formats (IHI 0070 §6.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TableFormat {
    /// 0b00: reserved encoding (no usable format).
    Reserved,
    /// 0b01: AArch32 (LPAE) tables only.
    Aarch32,
    /// 0b10: AArch64 tables only.
    Aarch64,
    /// 0b11: AArch32 and AArch64 tables.
    Both,
}

impl TableFormat {
    /// Decodes the 2-bit field (only the low two bits of `raw` are used).
    pub const fn from_raw(raw: u32) -> Self {
        match raw & 0b11 {
            0 => Self::Reserved,
            1 => Self::Aarch32,
            2 => Self::Aarch64,
            _ => Self::Both,
        }
    }

    /// Whether AArch64 translation tables (the only format this driver writes) are supported.
    pub const fn aarch64(self) -> bool {
        matches!(self, Self::Aarch64 | Self::Both)
    }
}

/// IDR0.TTENDIAN: endianness of translation tables, queues and structures (IHI 0070 §6.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum TtEndian {
    /// 0b00: mixed endianness, chosen per structure (STE/CD ENDI).
    Mixed,
    /// 0b01: reserved encoding.
    Reserved,
    /// 0b10: little-endian only.
    Little,
    /// 0b11: big-endian only.
    Big,
}

impl TtEndian {
    /// Decodes the 2-bit field (only the low two bits of `raw` are used).
    pub const fn from_raw(raw: u32) -> Self {
        match raw & 0b11 {
            0 => Self::Mixed,
            1 => Self::Reserved,
            2 => Self::Little,
            _ => Self::Big,
        }
    }

    /// Whether little-endian tables (the only endianness this driver writes) are supported.
    pub const fn little_endian(self) -> bool {
        matches!(self, Self::Mixed | Self::Little)
    }
}

/// IDR0.STALL_MODEL: stalling fault model (IHI 0070 §6.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StallModel {
    /// 0b00: both the stall and the terminate model are supported.
    StallAndTerminate,
    /// 0b01: terminate only; no stalls, CMD_RESUME/CMD_STALL_TERM unavailable, STE.S2S and CD.S
    /// must be 0.
    TerminateOnly,
    /// 0b10: stall forced; STE.S2S and CD.S must be 1.
    StallForced,
    /// 0b11: reserved encoding.
    Reserved,
}

impl StallModel {
    /// Decodes the 2-bit field (only the low two bits of `raw` are used).
    pub const fn from_raw(raw: u32) -> Self {
        match raw & 0b11 {
            0 => Self::StallAndTerminate,
            1 => Self::TerminateOnly,
            2 => Self::StallForced,
            _ => Self::Reserved,
        }
    }

    /// Whether stalling faults can be used (CD.S / STE.S2S may be 1).
    pub const fn can_stall(self) -> bool {
        matches!(self, Self::StallAndTerminate | Self::StallForced)
    }
}

/// IDR0.ST_LEVEL: stream table formats (IHI 0070 §6.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StLevel {
    /// 0b00: linear stream table only.
    Linear,
    /// 0b01: linear and 2-level stream tables.
    TwoLevel,
    /// 0b10 or 0b11: reserved; the raw value is kept. Treated as linear only.
    Reserved(u8),
}

impl StLevel {
    /// Decodes the 2-bit field (only the low two bits of `raw` are used).
    pub const fn from_raw(raw: u32) -> Self {
        match raw & 0b11 {
            0 => Self::Linear,
            1 => Self::TwoLevel,
            r => Self::Reserved(r as u8),
        }
    }
}

/// IDR0.HTTU: hardware translation-table updates (IHI 0070 §6.3.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Httu {
    /// 0b00: no hardware updates.
    None,
    /// 0b01: Access flag updates (CD.HA / STE.S2HA).
    Access,
    /// 0b10: Access flag and dirty state updates (also CD.HD / STE.S2HD).
    AccessDirty,
    /// 0b11: Access flag, dirty state and hardware-managed table Access flag (HAFT).
    AccessDirtyHaft,
}

impl Httu {
    /// Decodes the 2-bit field (only the low two bits of `raw` are used).
    pub const fn from_raw(raw: u32) -> Self {
        match raw & 0b11 {
            0 => Self::None,
            1 => Self::Access,
            2 => Self::AccessDirty,
            _ => Self::AccessDirtyHaft,
        }
    }

    /// Whether the hardware can set the Access flag.
    pub const fn access(self) -> bool {
        !matches!(self, Self::None)
    }

    /// Whether the hardware can update the dirty state.
    pub const fn dirty(self) -> bool {
        matches!(self, Self::AccessDirty | Self::AccessDirtyHaft)
    }
}

/// IDR5.OAS: output address size; the same encoding is used by CD.IPS and STE.S2PS
/// (IHI 0070 §6.3.6).
///
/// Every 3-bit value has a meaning: encoding 7 is 56 bits, defined by SMMUv3.4 together with
/// IDR5.D128 = 1 and reserved before it (an older SMMU reporting 7 is out of spec; compare with
/// [`Features::d128`] before relying on more than 52 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Oas {
    /// 0b000: 32 bits (4 GiB).
    Bits32,
    /// 0b001: 36 bits (64 GiB).
    Bits36,
    /// 0b010: 40 bits (1 TiB).
    Bits40,
    /// 0b011: 42 bits (4 TiB).
    Bits42,
    /// 0b100: 44 bits (16 TiB).
    Bits44,
    /// 0b101: 48 bits (256 TiB).
    Bits48,
    /// 0b110: 52 bits (4 PiB).
    Bits52,
    /// 0b111: 56 bits (SMMUv3.4 with IDR5.D128; reserved before).
    Bits56,
}

impl Oas {
    /// Decodes the 3-bit field (only the low three bits of `raw` are used).
    pub const fn from_encoding(raw: u32) -> Self {
        match raw & 0b111 {
            0 => Self::Bits32,
            1 => Self::Bits36,
            2 => Self::Bits40,
            3 => Self::Bits42,
            4 => Self::Bits44,
            5 => Self::Bits48,
            6 => Self::Bits52,
            _ => Self::Bits56,
        }
    }

    /// The smallest size that holds `bits` address bits, or `None` above 56.
    pub const fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0..=32 => Self::Bits32,
            33..=36 => Self::Bits36,
            37..=40 => Self::Bits40,
            41..=42 => Self::Bits42,
            43..=44 => Self::Bits44,
            45..=48 => Self::Bits48,
            49..=52 => Self::Bits52,
            53..=56 => Self::Bits56,
            _ => return None,
        })
    }

    /// The 3-bit encoding (as in IDR5.OAS, CD.IPS, STE.S2PS).
    pub const fn encoding(self) -> u8 {
        self as u8
    }

    /// The number of address bits: 32, 36, 40, 42, 44, 48, 52 or 56.
    pub const fn bits(self) -> u8 {
        match self {
            Self::Bits32 => 32,
            Self::Bits36 => 36,
            Self::Bits40 => 40,
            Self::Bits42 => 42,
            Self::Bits44 => 44,
            Self::Bits48 => 48,
            Self::Bits52 => 52,
            Self::Bits56 => 56,
        }
    }
}

/// IDR5.VAX: virtual address size for stage 1 (IHI 0070 §6.3.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Vax {
    /// 0b00: 48-bit VAs.
    Bits48,
    /// 0b01: 52-bit VAs.
    Bits52,
    /// 0b10: 56-bit VAs (SMMUv3.4).
    Bits56,
    /// 0b11: reserved encoding; treated as 48 bits.
    Reserved,
}

impl Vax {
    /// Decodes the 2-bit field (only the low two bits of `raw` are used).
    pub const fn from_raw(raw: u32) -> Self {
        match raw & 0b11 {
            0 => Self::Bits48,
            1 => Self::Bits52,
            2 => Self::Bits56,
            _ => Self::Reserved,
        }
    }

    /// The number of VA bits (48 for the reserved encoding).
    pub const fn bits(self) -> u8 {
        match self {
            Self::Bits48 | Self::Reserved => 48,
            Self::Bits52 => 52,
            Self::Bits56 => 56,
        }
    }
}

bitflags! {
    /// Translation granules supported, IDR5.GRAN4K/GRAN16K/GRAN64K (IHI 0070 §6.3.6).
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    pub struct Granules: u8 {
        /// IDR5.GRAN4K, `bit [4]`: 4 KiB granule (block sizes 2 MiB, 1 GiB).
        const GRAN4K = 1 << 0;
        /// IDR5.GRAN16K, `bit [5]`: 16 KiB granule (block size 32 MiB).
        const GRAN16K = 1 << 1;
        /// IDR5.GRAN64K, `bit [6]`: 64 KiB granule (block size 512 MiB).
        const GRAN64K = 1 << 2;
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Granules {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Granules {{ 4K: {=bool}, 16K: {=bool}, 64K: {=bool} }}",
            self.contains(Self::GRAN4K),
            self.contains(Self::GRAN16K),
            self.contains(Self::GRAN64K)
        )
    }
}

/// SMMU_IIDR decoded: who made the SMMU (IHI 0070 §6.3.7).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Iidr {
    /// Implementer, `bits [11:0]`: JEP106 code ([`Iidr::IMPLEMENTER_ARM`] for Arm); 0 on QEMU.
    pub implementer: u16,
    /// Revision, `bits [15:12]`: minor revision of the product.
    pub revision: u8,
    /// Variant, `bits [19:16]`: major revision of the product.
    pub variant: u8,
    /// ProductID, `bits [31:20]`: e.g. [`Iidr::PRODUCT_MMU_600`] for an Arm implementation.
    pub product_id: u16,
}

impl Iidr {
    /// JEP106 code of Arm Ltd.
    pub const IMPLEMENTER_ARM: u16 = 0x43B;
    /// Arm CoreLink MMU-600 ProductID.
    pub const PRODUCT_MMU_600: u16 = 0x483;
    /// Arm CoreLink MMU-700 ProductID.
    pub const PRODUCT_MMU_700: u16 = 0x487;

    /// Decodes a raw SMMU_IIDR value.
    pub const fn from_raw(raw: u32) -> Self {
        Self {
            implementer: get32(IIDR::IMPLEMENTER, raw) as u16,
            revision: get32(IIDR::REVISION, raw) as u8,
            variant: get32(IIDR::VARIANT, raw) as u8,
            product_id: get32(IIDR::PRODUCTID, raw) as u16,
        }
    }

    /// Whether the SMMU is an Arm implementation of the given ProductID.
    pub const fn is_arm(self, product_id: u16) -> bool {
        self.implementer == Self::IMPLEMENTER_ARM && self.product_id == product_id
    }
}

/// SMMU_AIDR decoded: architecture revision SMMUv3.`minor` (IHI 0070 §6.3.8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Aidr {
    /// ArchMajorRev, `bits [7:4]`: 0 for SMMUv3.
    pub major: u8,
    /// ArchMinorRev, `bits [3:0]`: the `x` in SMMUv3.x.
    pub minor: u8,
}

impl Aidr {
    /// Decodes a raw SMMU_AIDR value.
    pub const fn from_raw(raw: u32) -> Self {
        Self {
            major: get32(AIDR::ARCHMAJORREV, raw) as u8,
            minor: get32(AIDR::ARCHMINORREV, raw) as u8,
        }
    }

    /// Whether the SMMU implements at least SMMUv3.`minor`.
    pub const fn at_least_v3(self, minor: u8) -> bool {
        self.major > 0 || self.minor >= minor
    }
}

/// Everything SMMU_IDR0..IDR5, IIDR and AIDR say, decoded (IHI 0070 §6.3.1-§6.3.8).
///
/// Field names follow the spec's fields; numeric fields are the raw counts (no clamping), so a
/// malformed SMMU shows up in [`Features::check`] rather than being silently corrected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Features {
    /// The raw registers this was decoded from.
    pub raw: IdRegs,

    // ---- IDR0 (IHI 0070 §6.3.1) ----
    /// IDR0.S2P, `bit [0]`: stage-2 translation.
    pub stage2: bool,
    /// IDR0.S1P, `bit [1]`: stage-1 translation.
    pub stage1: bool,
    /// IDR0.TTF, `bits [3:2]`: translation table formats.
    pub ttf: TableFormat,
    /// IDR0.COHACC, `bit [4]`: coherent access to tables, queues and MSIs (no cache maintenance).
    pub coherent: bool,
    /// IDR0.BTM, `bit [5]`: broadcast TLB maintenance.
    pub btm: bool,
    /// IDR0.HTTU, `bits [7:6]`: hardware table updates.
    pub httu: Httu,
    /// IDR0.DORMHINT, `bit [8]`: SMMU_STATUSR.DORMANT hint.
    pub dormhint: bool,
    /// IDR0.Hyp, `bit [9]`: EL2 StreamWorld and TLBI_EL2_* commands.
    pub hyp: bool,
    /// IDR0.ATS, `bit [10]`: PCIe ATS.
    pub ats: bool,
    /// IDR0.NS1ATS, `bit [11]`: true when split-stage ATS (STE.EATS = 0b10) is **not** supported.
    pub ns1ats: bool,
    /// IDR0.ASID16, `bit [12]`: 16-bit ASIDs (see [`Features::asid_bits`]).
    pub asid16: bool,
    /// IDR0.MSI, `bit [13]`: MSIs for EVENTQ, PRIQ, GERROR and CMD_SYNC.
    pub msi: bool,
    /// IDR0.SEV, `bit [14]`: WFE wake-up events (CMD_SYNC CS=SEV).
    pub sev: bool,
    /// IDR0.ATOS, `bit [15]`: global ATOS registers.
    pub atos: bool,
    /// IDR0.PRI, `bit [16]`: PCIe PRI (the PRI queue).
    pub pri: bool,
    /// IDR0.VMW, `bit [17]`: VMID wildcard matching.
    pub vmw: bool,
    /// IDR0.VMID16, `bit [18]`: 16-bit VMIDs (see [`Features::vmid_bits`]).
    pub vmid16: bool,
    /// IDR0.CD2L, `bit [19]`: 2-level context-descriptor tables.
    pub cd2l: bool,
    /// IDR0.VATOS, `bit [20]`: the VATOS page.
    pub vatos: bool,
    /// IDR0.TTENDIAN, `bits [22:21]`: table endianness.
    pub ttendian: TtEndian,
    /// IDR0.ATSRECERR, `bit [23]`: extra ATS/PRI configuration events (CR2.REC_CFG_ATS).
    pub atsrecerr: bool,
    /// IDR0.STALL_MODEL, `bits [25:24]`: stalling fault model.
    pub stall_model: StallModel,
    /// IDR0.TERM_MODEL, `bit [26]`: true when terminated transactions always abort (CD.A must
    /// be 1; RAZ/WI termination unsupported).
    pub term_model: bool,
    /// IDR0.ST_LEVEL, `bits [28:27]`: stream table formats (see [`Features::two_level_strtab`]).
    pub st_level: StLevel,
    /// IDR0.RME_IMPL, `bit [30]`: Realm Management Extension.
    pub rme_impl: bool,

    // ---- IDR1 (IHI 0070 §6.3.2) ----
    /// IDR1.SIDSIZE, `bits [5:0]`: StreamID bits (architecturally at most 32).
    pub sid_bits: u8,
    /// IDR1.SSIDSIZE, `bits [10:6]`: SubstreamID bits, 0 = no substreams (at most 20).
    pub ssid_bits: u8,
    /// IDR1.PRIQS, `bits [15:11]`: log2 of the largest PRI queue.
    pub priq_log2: u8,
    /// IDR1.EVENTQS, `bits [20:16]`: log2 of the largest event queue.
    pub evtq_log2: u8,
    /// IDR1.CMDQS, `bits [25:21]`: log2 of the largest command queue.
    pub cmdq_log2: u8,
    /// IDR1.ATTR_PERMS_OVR, `bit [26]`: STE.INSTCFG/PRIVCFG overrides.
    pub attr_perms_ovr: bool,
    /// IDR1.ATTR_TYPES_OVR, `bit [27]`: STE/GBPA MemAttr, SHCFG, ALLOCCFG overrides.
    pub attr_types_ovr: bool,
    /// IDR1.REL, `bit [28]`: preset base addresses are relative (refused by [`Features::check`]).
    pub rel: bool,
    /// IDR1.QUEUES_PRESET, `bit [29]`: fixed queue bases (refused by [`Features::check`]).
    pub queues_preset: bool,
    /// IDR1.TABLES_PRESET, `bit [30]`: fixed table bases (refused by [`Features::check`]).
    pub tables_preset: bool,
    /// IDR1.ECMDQ, `bit [31]`: enhanced command queues (SMMUv3.3).
    pub ecmdq: bool,

    // ---- IDR2 (IHI 0070 §6.3.3) ----
    /// IDR2.BA_VATOS, `bits [9:0]`: VATOS page offset in 64 KiB units above SMMU base + 0x20000.
    pub ba_vatos: u16,

    // ---- IDR3 (IHI 0070 §6.3.4) ----
    /// IDR3.HAD, `bit [2]`: hierarchical attribute disables (CD.HAD0/HAD1).
    pub had: bool,
    /// IDR3.PBHA, `bit [3]`: page-based hardware attributes.
    pub pbha: bool,
    /// IDR3.XNX, `bit [4]`: stage-2 EL0/EL1 execute-never split.
    pub xnx: bool,
    /// IDR3.PPS, `bit [5]`: PRI responses carry the request's PASID.
    pub pps: bool,
    /// IDR3.MPAM, `bit [7]`: MPAM.
    pub mpam: bool,
    /// IDR3.FWB, `bit [8]`: stage-2 forced write-back (STE.S2FWB).
    pub fwb: bool,
    /// IDR3.STT, `bit [9]`: small translation tables.
    pub stt: bool,
    /// IDR3.RIL, `bit [10]`: range invalidation (TLBI NUM/SCALE).
    pub ril: bool,
    /// IDR3.BBML, `bits [12:11]`: break-before-make level 0, 1 or 2 (3 is reserved, kept raw).
    pub bbml: u8,
    /// IDR3.E0PD, `bit [13]`: CD.E0PD0/E0PD1.
    pub e0pd: bool,
    /// IDR3.PTWNNC, `bit [14]`: walks of Normal Non-cacheable tables are coherent.
    pub ptwnnc: bool,
    /// IDR3.DPT, `bit [15]`: device permission table (SMMUv3.3).
    pub dpt: bool,

    // ---- IDR5 (IHI 0070 §6.3.6) ----
    /// IDR5.OAS, `bits [2:0]`: output address size.
    pub oas: Oas,
    /// IDR5.GRAN4K/GRAN16K/GRAN64K, `bits [6:4]`: translation granules.
    pub granules: Granules,
    /// IDR5.DS, `bit [7]`: 52-bit addresses with 4 KiB and 16 KiB granules.
    pub ds: bool,
    /// IDR5.D128, `bit [8]`: 128-bit descriptors (SMMUv3.4).
    pub d128: bool,
    /// IDR5.VAX, `bits [11:10]`: stage-1 virtual address size.
    pub vax: Vax,
    /// IDR5.STALL_MAX, `bits [31:16]`: maximum outstanding stalled transactions.
    pub stall_max: u16,

    // ---- IIDR, AIDR (IHI 0070 §6.3.7, §6.3.8) ----
    /// SMMU_IIDR decoded.
    pub iidr: Iidr,
    /// SMMU_AIDR decoded.
    pub aidr: Aidr,
}

impl Features {
    /// The identification registers of QEMU's `virt` SMMUv3; same value as [`QEMU_VIRT`].
    pub const QEMU_VIRT_IDREGS: IdRegs = QEMU_VIRT;

    /// Decodes every field of IDR0-IDR3, IDR5, IIDR and AIDR (IHI 0070 §6.3.1-§6.3.8).
    ///
    /// Infallible: reserved encodings decode to `Reserved` variants or raw numbers; use
    /// [`Features::check`] to refuse an SMMU the driver cannot drive.
    pub const fn decode(raw: IdRegs) -> Self {
        let idr0 = raw.idr0;
        let idr1 = raw.idr1;
        let idr2 = raw.idr2;
        let idr3 = raw.idr3;
        let idr5 = raw.idr5;

        let mut granules = Granules::empty();
        if is_set32(IDR5::GRAN4K, idr5) {
            granules = granules.union(Granules::GRAN4K);
        }
        if is_set32(IDR5::GRAN16K, idr5) {
            granules = granules.union(Granules::GRAN16K);
        }
        if is_set32(IDR5::GRAN64K, idr5) {
            granules = granules.union(Granules::GRAN64K);
        }

        Self {
            raw,

            stage2: is_set32(IDR0::S2P, idr0),
            stage1: is_set32(IDR0::S1P, idr0),
            ttf: TableFormat::from_raw(get32(IDR0::TTF, idr0)),
            coherent: is_set32(IDR0::COHACC, idr0),
            btm: is_set32(IDR0::BTM, idr0),
            httu: Httu::from_raw(get32(IDR0::HTTU, idr0)),
            dormhint: is_set32(IDR0::DORMHINT, idr0),
            hyp: is_set32(IDR0::HYP, idr0),
            ats: is_set32(IDR0::ATS, idr0),
            ns1ats: is_set32(IDR0::NS1ATS, idr0),
            asid16: is_set32(IDR0::ASID16, idr0),
            msi: is_set32(IDR0::MSI, idr0),
            sev: is_set32(IDR0::SEV, idr0),
            atos: is_set32(IDR0::ATOS, idr0),
            pri: is_set32(IDR0::PRI, idr0),
            vmw: is_set32(IDR0::VMW, idr0),
            vmid16: is_set32(IDR0::VMID16, idr0),
            cd2l: is_set32(IDR0::CD2L, idr0),
            vatos: is_set32(IDR0::VATOS, idr0),
            ttendian: TtEndian::from_raw(get32(IDR0::TTENDIAN, idr0)),
            atsrecerr: is_set32(IDR0::ATSRECERR, idr0),
            stall_model: StallModel::from_raw(get32(IDR0::STALL_MODEL, idr0)),
            term_model: is_set32(IDR0::TERM_MODEL, idr0),
            st_level: StLevel::from_raw(get32(IDR0::ST_LEVEL, idr0)),
            rme_impl: is_set32(IDR0::RME_IMPL, idr0),

            sid_bits: get32(IDR1::SIDSIZE, idr1) as u8,
            ssid_bits: get32(IDR1::SSIDSIZE, idr1) as u8,
            priq_log2: get32(IDR1::PRIQS, idr1) as u8,
            evtq_log2: get32(IDR1::EVENTQS, idr1) as u8,
            cmdq_log2: get32(IDR1::CMDQS, idr1) as u8,
            attr_perms_ovr: is_set32(IDR1::ATTR_PERMS_OVR, idr1),
            attr_types_ovr: is_set32(IDR1::ATTR_TYPES_OVR, idr1),
            rel: is_set32(IDR1::REL, idr1),
            queues_preset: is_set32(IDR1::QUEUES_PRESET, idr1),
            tables_preset: is_set32(IDR1::TABLES_PRESET, idr1),
            ecmdq: is_set32(IDR1::ECMDQ, idr1),

            ba_vatos: get32(IDR2::BA_VATOS, idr2) as u16,

            had: is_set32(IDR3::HAD, idr3),
            pbha: is_set32(IDR3::PBHA, idr3),
            xnx: is_set32(IDR3::XNX, idr3),
            pps: is_set32(IDR3::PPS, idr3),
            mpam: is_set32(IDR3::MPAM, idr3),
            fwb: is_set32(IDR3::FWB, idr3),
            stt: is_set32(IDR3::STT, idr3),
            ril: is_set32(IDR3::RIL, idr3),
            bbml: get32(IDR3::BBML, idr3) as u8,
            e0pd: is_set32(IDR3::E0PD, idr3),
            ptwnnc: is_set32(IDR3::PTWNNC, idr3),
            dpt: is_set32(IDR3::DPT, idr3),

            oas: Oas::from_encoding(get32(IDR5::OAS, idr5)),
            granules,
            ds: is_set32(IDR5::DS, idr5),
            d128: is_set32(IDR5::D128, idr5),
            vax: Vax::from_raw(get32(IDR5::VAX, idr5)),
            stall_max: get32(IDR5::STALL_MAX, idr5) as u16,

            iidr: Iidr::from_raw(raw.iidr),
            aidr: Aidr::from_raw(raw.aidr),
        }
    }

    /// Refuses an SMMU this driver cannot drive (IHI 0070 §6.3.1, §6.3.2).
    ///
    /// In this order:
    /// - no AArch64 table format (IDR0.TTF) → [`Feature::Aarch64Tables`];
    /// - big-endian-only or reserved IDR0.TTENDIAN → [`Feature::LittleEndian`];
    /// - IDR1.REL, QUEUES_PRESET or TABLES_PRESET → [`Feature::ProgrammableBases`];
    /// - IDR1.SIDSIZE above 32 (reserved) → [`Feature::StreamIdBits`];
    /// - IDR1.SSIDSIZE above 20 (reserved) → [`Feature::SubstreamIdBits`].
    ///
    /// Which stages, queue sizes or options a configuration needs is the caller's check.
    pub const fn check(&self) -> Result<(), Error> {
        if !self.ttf.aarch64() {
            return Err(Error::Unsupported(Feature::Aarch64Tables));
        }
        if !self.ttendian.little_endian() {
            return Err(Error::Unsupported(Feature::LittleEndian));
        }
        if self.rel || self.queues_preset || self.tables_preset {
            return Err(Error::Unsupported(Feature::ProgrammableBases));
        }
        if self.sid_bits > 32 {
            return Err(Error::Unsupported(Feature::StreamIdBits));
        }
        if self.ssid_bits > 20 {
            return Err(Error::Unsupported(Feature::SubstreamIdBits));
        }
        Ok(())
    }

    /// VMID width in bits: 16 with IDR0.VMID16, else 8 (IHI 0070 §6.3.1).
    pub const fn vmid_bits(&self) -> u8 {
        if self.vmid16 { 16 } else { 8 }
    }

    /// ASID width in bits: 16 with IDR0.ASID16, else 8 (IHI 0070 §6.3.1).
    pub const fn asid_bits(&self) -> u8 {
        if self.asid16 { 16 } else { 8 }
    }

    /// Whether a 2-level stream table is supported (IDR0.ST_LEVEL = 0b01, IHI 0070 §6.3.1).
    pub const fn two_level_strtab(&self) -> bool {
        matches!(self.st_level, StLevel::TwoLevel)
    }

    /// Whether both stages are supported, i.e. nested translation is possible
    /// (IDR0.S1P and IDR0.S2P, IHI 0070 §6.3.1).
    pub const fn nesting(&self) -> bool {
        self.stage1 && self.stage2
    }

    /// Whether the break-before-make level is at least 2 (IDR3.BBML, IHI 0070 §6.3.4).
    pub const fn bbml2(&self) -> bool {
        self.bbml >= 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn qemu() -> Features {
        Features::decode(QEMU_VIRT)
    }

    #[test]
    fn qemu_idr0_fields() {
        let f = qemu();
        assert!(f.stage1);
        assert!(f.stage2);
        assert!(f.nesting());
        assert_eq!(f.ttf, TableFormat::Aarch64);
        assert!(f.coherent);
        assert!(!f.btm);
        assert_eq!(f.httu, Httu::None);
        assert!(!f.dormhint);
        assert!(!f.hyp);
        assert!(!f.ats);
        assert!(!f.ns1ats);
        assert!(f.asid16);
        assert_eq!(f.asid_bits(), 16);
        assert!(!f.msi);
        assert!(!f.sev);
        assert!(!f.atos);
        assert!(!f.pri);
        assert!(!f.vmw);
        assert!(f.vmid16);
        assert_eq!(f.vmid_bits(), 16);
        assert!(!f.cd2l);
        assert!(!f.vatos);
        assert_eq!(f.ttendian, TtEndian::Little);
        assert!(!f.atsrecerr);
        assert_eq!(f.stall_model, StallModel::TerminateOnly);
        assert!(!f.stall_model.can_stall());
        assert!(f.term_model);
        assert_eq!(f.st_level, StLevel::TwoLevel);
        assert!(f.two_level_strtab());
        assert!(!f.rme_impl);
    }

    #[test]
    fn qemu_idr1_fields() {
        let f = qemu();
        assert_eq!(f.sid_bits, 16);
        assert_eq!(f.ssid_bits, 0);
        assert_eq!(f.priq_log2, 0);
        assert_eq!(f.evtq_log2, 19);
        assert_eq!(f.cmdq_log2, 19);
        assert!(!f.attr_perms_ovr);
        assert!(!f.attr_types_ovr);
        assert!(!f.rel);
        assert!(!f.queues_preset);
        assert!(!f.tables_preset);
        assert!(!f.ecmdq);
        assert_eq!(f.ba_vatos, 0);
    }

    #[test]
    fn qemu_idr3_fields() {
        let f = qemu();
        assert!(f.had);
        assert!(!f.pbha);
        assert!(f.xnx);
        assert!(!f.pps);
        assert!(!f.mpam);
        assert!(!f.fwb);
        assert!(!f.stt);
        assert!(f.ril);
        assert_eq!(f.bbml, 2);
        assert!(f.bbml2());
        assert!(!f.e0pd);
        assert!(!f.ptwnnc);
        assert!(!f.dpt);
    }

    #[test]
    fn qemu_idr5_iidr_aidr_fields() {
        let f = qemu();
        assert_eq!(f.oas, Oas::Bits44);
        assert_eq!(f.oas.bits(), 44);
        assert_eq!(f.oas.encoding(), 4);
        assert_eq!(
            f.granules,
            Granules::GRAN4K | Granules::GRAN16K | Granules::GRAN64K
        );
        assert!(!f.ds);
        assert!(!f.d128);
        assert_eq!(f.vax, Vax::Bits48);
        assert_eq!(f.stall_max, 0);
        assert_eq!(f.iidr, Iidr::default());
        assert_eq!(f.aidr, Aidr { major: 0, minor: 1 });
        assert!(f.aidr.at_least_v3(1));
        assert!(!f.aidr.at_least_v3(2));
        assert_eq!(f.raw, QEMU_VIRT);
        assert_eq!(Features::QEMU_VIRT_IDREGS, QEMU_VIRT);
        assert_eq!(f.check(), Ok(()));
    }

    #[test]
    fn qemu_other_modes_differ_only_in_stages() {
        // virt-9.0 default (stage 1 only) and stage=2 (IDR3.XNX only with stage 2).
        let s1 = Features::decode(IdRegs {
            idr0: 0x0d44_101a,
            idr3: 0x1404,
            ..QEMU_VIRT
        });
        assert!(s1.stage1 && !s1.stage2 && !s1.xnx);
        let s2 = Features::decode(IdRegs {
            idr0: 0x0d44_1019,
            ..QEMU_VIRT
        });
        assert!(!s2.stage1 && s2.stage2 && s2.xnx);
        assert_eq!(s1.check(), Ok(()));
        assert_eq!(s2.check(), Ok(()));
    }

    #[test]
    fn oas_encodings() {
        let want = [32, 36, 40, 42, 44, 48, 52, 56];
        for (enc, bits) in want.iter().enumerate() {
            let oas = Oas::from_encoding(enc as u32);
            assert_eq!(oas.bits(), *bits);
            assert_eq!(oas.encoding() as usize, enc);
            assert_eq!(Oas::from_bits(*bits), Some(oas));
        }
        assert_eq!(Oas::from_bits(57), None);
        assert_eq!(Oas::from_bits(39), Some(Oas::Bits40));
        let f = Features::decode(IdRegs {
            idr5: 0x1F7, // OAS 7, all granules, DS, D128
            ..QEMU_VIRT
        });
        assert_eq!(f.oas.bits(), 56);
        assert!(f.ds && f.d128);
    }

    #[test]
    fn small_ids_and_linear_only() {
        let f = Features::decode(IdRegs {
            idr0: 0b1011, // S2P, S1P, TTF = AArch64; no ASID16/VMID16, ST_LEVEL linear
            ..IdRegs::default()
        });
        assert_eq!(f.check(), Ok(()));
        assert_eq!(f.vmid_bits(), 8);
        assert_eq!(f.asid_bits(), 8);
        assert_eq!(f.st_level, StLevel::Linear);
        assert!(!f.two_level_strtab());
        assert_eq!(f.granules, Granules::empty());
        let reserved = Features::decode(IdRegs {
            idr0: 3 << 27,
            ..IdRegs::default()
        });
        assert_eq!(reserved.st_level, StLevel::Reserved(3));
        assert!(!reserved.two_level_strtab());
    }

    #[test]
    fn check_refuses_no_aarch64() {
        for ttf in [0u32, 1] {
            let f = Features::decode(IdRegs {
                idr0: (QEMU_VIRT.idr0 & !(0b11 << 2)) | (ttf << 2),
                ..QEMU_VIRT
            });
            assert_eq!(f.check(), Err(Error::Unsupported(Feature::Aarch64Tables)));
        }
        let both = Features::decode(IdRegs {
            idr0: QEMU_VIRT.idr0 | (0b11 << 2),
            ..QEMU_VIRT
        });
        assert_eq!(both.ttf, TableFormat::Both);
        assert_eq!(both.check(), Ok(()));
    }

    #[test]
    fn check_refuses_big_endian_only_and_reserved() {
        for (tte, ok) in [(0u32, true), (1, false), (2, true), (3, false)] {
            let f = Features::decode(IdRegs {
                idr0: (QEMU_VIRT.idr0 & !(0b11 << 21)) | (tte << 21),
                ..QEMU_VIRT
            });
            let want = if ok {
                Ok(())
            } else {
                Err(Error::Unsupported(Feature::LittleEndian))
            };
            assert_eq!(f.check(), want, "TTENDIAN={tte}");
        }
    }

    #[test]
    fn check_refuses_rel_and_presets() {
        for bit in [28u32, 29, 30] {
            let f = Features::decode(IdRegs {
                idr1: QEMU_VIRT.idr1 | (1 << bit),
                ..QEMU_VIRT
            });
            assert_eq!(
                f.check(),
                Err(Error::Unsupported(Feature::ProgrammableBases)),
                "IDR1 bit {bit}"
            );
        }
        let f = Features::decode(IdRegs {
            idr1: QEMU_VIRT.idr1 | (0b111 << 28),
            ..QEMU_VIRT
        });
        assert!(f.rel && f.queues_preset && f.tables_preset);
    }

    #[test]
    fn check_refuses_reserved_id_widths() {
        let sid33 = Features::decode(IdRegs {
            idr1: (QEMU_VIRT.idr1 & !0x3f) | 33,
            ..QEMU_VIRT
        });
        assert_eq!(sid33.sid_bits, 33);
        assert_eq!(
            sid33.check(),
            Err(Error::Unsupported(Feature::StreamIdBits))
        );
        let sid32 = Features::decode(IdRegs {
            idr1: (QEMU_VIRT.idr1 & !0x3f) | 32,
            ..QEMU_VIRT
        });
        assert_eq!(sid32.check(), Ok(()));
        let ssid21 = Features::decode(IdRegs {
            idr1: QEMU_VIRT.idr1 | (21 << 6),
            ..QEMU_VIRT
        });
        assert_eq!(ssid21.ssid_bits, 21);
        assert_eq!(
            ssid21.check(),
            Err(Error::Unsupported(Feature::SubstreamIdBits))
        );
        let ssid20 = Features::decode(IdRegs {
            idr1: QEMU_VIRT.idr1 | (20 << 6),
            ..QEMU_VIRT
        });
        assert_eq!(ssid20.check(), Ok(()));
    }

    #[test]
    fn iidr_decodes_arm_mmu600() {
        // Implementer 0x43B, revision 2, variant 1, product 0x483.
        let i = Iidr::from_raw(0x4831_243B);
        assert_eq!(
            i,
            Iidr {
                implementer: 0x43B,
                revision: 2,
                variant: 1,
                product_id: 0x483
            }
        );
        assert!(i.is_arm(Iidr::PRODUCT_MMU_600));
        assert!(!i.is_arm(Iidr::PRODUCT_MMU_700));
    }

    #[test]
    fn decode_is_const() {
        const F: Features = Features::decode(QEMU_VIRT);
        assert_eq!(F, qemu());
    }

    proptest! {
        #[test]
        fn decode_never_panics(
            idr0 in any::<u32>(), idr1 in any::<u32>(), idr2 in any::<u32>(),
            idr3 in any::<u32>(), idr4 in any::<u32>(), idr5 in any::<u32>(),
            iidr in any::<u32>(), aidr in any::<u32>(),
        ) {
            let raw = IdRegs { idr0, idr1, idr2, idr3, idr4, idr5, iidr, aidr };
            let f = Features::decode(raw);
            prop_assert_eq!(f.raw, raw);
            prop_assert!(matches!(f.vmid_bits(), 8 | 16));
            prop_assert!(matches!(f.asid_bits(), 8 | 16));
            prop_assert!([32, 36, 40, 42, 44, 48, 52, 56].contains(&f.oas.bits()));
            prop_assert_eq!(u32::from(f.oas.encoding()), idr5 & 0b111);
            prop_assert_eq!(u32::from(f.granules.bits()), (idr5 >> 4) & 0b111);
            prop_assert!(f.sid_bits < 64 && f.ssid_bits < 32);
            prop_assert!(f.cmdq_log2 < 32 && f.evtq_log2 < 32 && f.priq_log2 < 32);
            prop_assert!(f.bbml < 4);
            prop_assert_eq!(f.stall_max as u32, idr5 >> 16);
            // check() is total and refuses exactly the documented conditions.
            let refused = !f.ttf.aarch64() || !f.ttendian.little_endian()
                || f.rel || f.queues_preset || f.tables_preset
                || f.sid_bits > 32 || f.ssid_bits > 20;
            prop_assert_eq!(f.check().is_err(), refused);
        }
    }
}
