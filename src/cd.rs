//! Stage-1 context descriptors (IHI 0070 §5.4) and L1 CD descriptors.
//!
//! [`Cd`] is the raw 64-byte slot, [`CdConfig`] the typed view Linux programs. Field positions
//! are named once, in the `CD0`/`CD1` bitfield blocks below.

use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::error::Error;
use crate::ids::{Asid, PhysAddr};
use crate::ste::{Granule, ps_bits};

register_bitfields![u64,
    /// CD dword 0 (IHI 0070 §5.4).
    pub(crate) CD0 [
        /// T0SZ, bits `[5:0]`: 64 - VA size for TTB0.
        T0SZ OFFSET(0) NUMBITS(6) [],
        /// TG0, bits `[7:6]`: TTB0 granule (0 4K, 1 64K, 2 16K).
        TG0 OFFSET(6) NUMBITS(2) [],
        /// IR0, bits `[9:8]`: TTB0 walk inner cacheability.
        IR0 OFFSET(8) NUMBITS(2) [],
        /// OR0, bits `[11:10]`: TTB0 walk outer cacheability.
        OR0 OFFSET(10) NUMBITS(2) [],
        /// SH0, bits `[13:12]`: TTB0 walk shareability.
        SH0 OFFSET(12) NUMBITS(2) [],
        /// EPD0, bit `[14]`: no TTB0 walks.
        EPD0 OFFSET(14) NUMBITS(1) [],
        /// ENDI, bit `[15]`: big-endian tables.
        ENDI OFFSET(15) NUMBITS(1) [],
        /// EPD1, bit `[30]`: no TTB1 walks.
        EPD1 OFFSET(30) NUMBITS(1) [],
        /// V, bit `[31]`: the CD is valid.
        V OFFSET(31) NUMBITS(1) [],
        /// IPS, bits `[34:32]`: intermediate/output size (OAS encoding).
        IPS OFFSET(32) NUMBITS(3) [],
        /// AFFD, bit `[35]`: no access-flag faults.
        AFFD OFFSET(35) NUMBITS(1) [],
        /// TBI, bits `[39:38]`: top-byte ignore (TBI0, TBI1).
        TBI OFFSET(38) NUMBITS(2) [],
        /// AA64, bit `[41]`: AArch64 tables.
        AA64 OFFSET(41) NUMBITS(1) [],
        /// HD, bit `[42]`: hardware dirty-state update.
        HD OFFSET(42) NUMBITS(1) [],
        /// HA, bit `[43]`: hardware access-flag update.
        HA OFFSET(43) NUMBITS(1) [],
        /// S, bit `[44]`: stall on faults.
        S OFFSET(44) NUMBITS(1) [],
        /// R, bit `[45]`: record faults.
        R OFFSET(45) NUMBITS(1) [],
        /// A, bit `[46]`: abort terminated transactions (vs RAZ/WI).
        A OFFSET(46) NUMBITS(1) [],
        /// ASET, bit `[47]`: ASID excluded from broadcast TLB invalidation.
        ASET OFFSET(47) NUMBITS(1) [],
        /// ASID, bits `[63:48]`.
        ASID OFFSET(48) NUMBITS(16) []
    ],
    /// CD dword 1 (IHI 0070 §5.4).
    pub(crate) CD1 [
        /// TTB0, bits `[51:4]`: TTB0 table address >> 4.
        TTB0 OFFSET(4) NUMBITS(48) []
    ],
    /// L1 CD descriptor (IHI 0070 §5.4.1).
    pub(crate) L1CD [
        /// V, bit `[0]`.
        V OFFSET(0) NUMBITS(1) [],
        /// L2Ptr, bits `[51:12]`: leaf table address >> 12.
        L2PTR OFFSET(12) NUMBITS(40) []
    ]
];

type Dw0 = LocalRegisterCopy<u64, CD0::Register>;

/// Why a CD is not one the SMMU would accept (C_BAD_CD, IHI 0070 §7.3.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CdError {
    /// V = 0.
    NotValid,
    /// TG0 = 3 (reserved).
    ReservedTg0,
    /// IPS = 7 (reserved).
    ReservedIps(u8),
}

impl From<CdError> for Error {
    /// [`Error::Cd`], carrying why (`EINVAL`).
    fn from(e: CdError) -> Self {
        Error::Cd(e)
    }
}

/// The fields of a stage-1 CD (IHI 0070 §5.4). `ir0`/`or0` 0 NC, 1 WBWA, 2 WT, 3 WB;
/// `sh0` 0 NSH, 2 OSH, 3 ISH; `ips` OAS encoding; `tbi` bit 0 = TBI0, bit 1 = TBI1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CdConfig {
    /// ASID.
    pub asid: Asid,
    /// TTB0: the stage-1 table base (16-byte aligned, 52 bits).
    pub ttb0: PhysAddr,
    /// T0SZ.
    pub t0sz: u8,
    /// TG0.
    pub tg0: Granule,
    /// IR0.
    pub ir0: u8,
    /// OR0.
    pub or0: u8,
    /// SH0.
    pub sh0: u8,
    /// EPD0: TTB0 walks disabled (all TTB0 translations fault).
    pub epd0: bool,
    /// EPD1: TTB1 walks disabled (Linux: always).
    pub epd1: bool,
    /// IPS.
    pub ips: u8,
    /// AFFD.
    pub affd: bool,
    /// TBI.
    pub tbi: u8,
    /// AA64: AArch64 tables (Linux: always).
    pub aa64: bool,
    /// HD.
    pub hd: bool,
    /// HA.
    pub ha: bool,
    /// S: stall on faults.
    pub stall: bool,
    /// R: record faults.
    pub r: bool,
    /// A: abort terminated transactions.
    pub a: bool,
    /// ASET.
    pub aset: bool,
    /// MAIR (dword 3), MAIR_EL1 format.
    pub mair: u64,
}

impl CdConfig {
    /// Linux's stage-1 CD: `ttb0` walked with `tg0` over `64 - t0sz` bits, WBWA inner/outer, inner
    /// shareable, EPD1, AA64, R, A, ASET, no stall, no hardware updates.
    pub const fn new(
        asid: Asid,
        ttb0: PhysAddr,
        t0sz: u8,
        tg0: Granule,
        ips: u8,
        mair: u64,
    ) -> Self {
        Self {
            asid,
            ttb0,
            t0sz,
            tg0,
            ir0: 1,
            or0: 1,
            sh0: 3,
            epd0: false,
            epd1: true,
            ips,
            affd: false,
            tbi: 0,
            aa64: true,
            hd: false,
            ha: false,
            stall: false,
            r: true,
            a: true,
            aset: true,
            mair,
        }
    }
}

/// A stage-1 context descriptor: 64 bytes, 8 little-endian dwords (IHI 0070 §5.4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C, align(64))]
pub struct Cd(pub [u64; 8]);

const _: () = assert!(core::mem::size_of::<Cd>() == 64);

impl Default for Cd {
    fn default() -> Self {
        Self::INVALID
    }
}

impl Cd {
    /// All zero: V = 0 (C_BAD_CD on use).
    pub const INVALID: Self = Self([0; 8]);

    /// A valid CD (V = 1) from `cfg`; values are masked to their fields. IHI 0070 §5.4.
    pub fn new(cfg: &CdConfig) -> Self {
        let d0 = CD0::T0SZ.val(u64::from(cfg.t0sz))
            + CD0::TG0.val(u64::from(cfg.tg0.tg_encoding()))
            + CD0::IR0.val(u64::from(cfg.ir0))
            + CD0::OR0.val(u64::from(cfg.or0))
            + CD0::SH0.val(u64::from(cfg.sh0))
            + CD0::EPD0.val(u64::from(cfg.epd0))
            + CD0::EPD1.val(u64::from(cfg.epd1))
            + CD0::V::SET
            + CD0::IPS.val(u64::from(cfg.ips))
            + CD0::AFFD.val(u64::from(cfg.affd))
            + CD0::TBI.val(u64::from(cfg.tbi))
            + CD0::AA64.val(u64::from(cfg.aa64))
            + CD0::HD.val(u64::from(cfg.hd))
            + CD0::HA.val(u64::from(cfg.ha))
            + CD0::S.val(u64::from(cfg.stall))
            + CD0::R.val(u64::from(cfg.r))
            + CD0::A.val(u64::from(cfg.a))
            + CD0::ASET.val(u64::from(cfg.aset))
            + CD0::ASID.val(u64::from(cfg.asid.0));
        let d1 = CD1::TTB0.val(cfg.ttb0.0 >> 4);
        Self([d0.value, d1.value, 0, cfg.mair, 0, 0, 0, 0])
    }

    fn d0(&self) -> Dw0 {
        LocalRegisterCopy::new(self.0[0])
    }

    /// V.
    pub fn valid(&self) -> bool {
        self.d0().is_set(CD0::V)
    }

    /// ASID.
    pub fn asid(&self) -> Asid {
        Asid(self.d0().read(CD0::ASID) as u16)
    }

    /// TTB0 as an address.
    pub fn ttb0(&self) -> PhysAddr {
        PhysAddr(LocalRegisterCopy::<u64, CD1::Register>::new(self.0[1]).read(CD1::TTB0) << 4)
    }

    /// T0SZ.
    pub fn t0sz(&self) -> u8 {
        self.d0().read(CD0::T0SZ) as u8
    }

    /// EPD0.
    pub fn epd0(&self) -> bool {
        self.d0().is_set(CD0::EPD0)
    }

    /// S: faults stall.
    pub fn stall(&self) -> bool {
        self.d0().is_set(CD0::S)
    }

    /// MAIR (dword 3).
    pub fn mair(&self) -> u64 {
        self.0[3]
    }

    /// The typed configuration, or why the SMMU would reject the CD (IHI 0070 §5.4).
    pub fn config(&self) -> Result<CdConfig, CdError> {
        let d0 = self.d0();
        if !d0.is_set(CD0::V) {
            return Err(CdError::NotValid);
        }
        let tg0 = Granule::from_tg_encoding(d0.read(CD0::TG0) as u8).ok_or(CdError::ReservedTg0)?;
        let ips = d0.read(CD0::IPS) as u8;
        if ps_bits(ips).is_none() {
            return Err(CdError::ReservedIps(ips));
        }
        Ok(CdConfig {
            asid: self.asid(),
            ttb0: self.ttb0(),
            t0sz: d0.read(CD0::T0SZ) as u8,
            tg0,
            ir0: d0.read(CD0::IR0) as u8,
            or0: d0.read(CD0::OR0) as u8,
            sh0: d0.read(CD0::SH0) as u8,
            epd0: d0.is_set(CD0::EPD0),
            epd1: d0.is_set(CD0::EPD1),
            ips,
            affd: d0.is_set(CD0::AFFD),
            tbi: d0.read(CD0::TBI) as u8,
            aa64: d0.is_set(CD0::AA64),
            hd: d0.is_set(CD0::HD),
            ha: d0.is_set(CD0::HA),
            stall: d0.is_set(CD0::S),
            r: d0.is_set(CD0::R),
            a: d0.is_set(CD0::A),
            aset: d0.is_set(CD0::ASET),
            mair: self.0[3],
        })
    }

    /// The bits the SMMU uses (IHI 0070 §5.4; Linux's model): only V when V = 0; otherwise
    /// everything except, with EPD0 = 1, the TTB0 walk fields (T0SZ, TG0, IR0, OR0, SH0, TTB0).
    pub fn used_bits(&self) -> [u64; 8] {
        let d0 = self.d0();
        if !d0.is_set(CD0::V) {
            return [CD0::V::SET.value, 0, 0, 0, 0, 0, 0, 0];
        }
        let mut used = [u64::MAX; 8];
        if d0.is_set(CD0::EPD0) {
            used[0] &= !(CD0::T0SZ::SET.value
                | CD0::TG0::SET.value
                | CD0::IR0::SET.value
                | CD0::OR0::SET.value
                | CD0::SH0::SET.value);
            used[1] &= !CD1::TTB0::SET.value;
        }
        used
    }
}

/// An L1 CD descriptor (IHI 0070 §5.4.1): V `[0]`, L2Ptr `[51:12]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(transparent)]
pub struct L1Cd(pub u64);

const _: () = assert!(core::mem::size_of::<L1Cd>() == 8);

impl L1Cd {
    /// V = 0: no leaf table.
    pub const INVALID: Self = Self(0);

    /// A valid descriptor for the leaf CD table at `l2`; `None` unless `l2` is 4 KiB aligned and
    /// fits in 52 bits.
    pub fn new(l2: PhysAddr) -> Option<Self> {
        if !l2.is_aligned(1 << 12) || l2.0 >= 1 << 52 {
            return None;
        }
        Some(Self((L1CD::V::SET + L1CD::L2PTR.val(l2.0 >> 12)).value))
    }

    /// V.
    pub fn valid(self) -> bool {
        self.0 & L1CD::V::SET.value != 0
    }

    /// L2Ptr as an address.
    pub fn l2ptr(self) -> PhysAddr {
        PhysAddr(self.0 & L1CD::L2PTR::SET.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn linux_cd_dwords() {
        let cfg = CdConfig::new(
            Asid(0x1234),
            PhysAddr(0x8_0000_1000),
            25,
            Granule::Size4K,
            2,
            0xff04,
        );
        let cd = Cd::new(&cfg);
        // ASID 0x1234 | ASET | A | R | AA64 | IPS 2 || V | EPD1 | SH0 3 | OR0 1 | IR0 1 | T0SZ 25
        assert_eq!(
            cd.0,
            [0x1234_E202_C000_3519, 0x8_0000_1000, 0, 0xff04, 0, 0, 0, 0]
        );
        assert_eq!(cd.config(), Ok(cfg));
        assert!(cd.valid());
        assert_eq!(
            (cd.asid(), cd.ttb0(), cd.t0sz(), cd.mair()),
            (Asid(0x1234), PhysAddr(0x8_0000_1000), 25, 0xff04)
        );
    }

    #[test]
    fn field_positions() {
        let z = CdConfig {
            asid: Asid(0),
            ttb0: PhysAddr(0),
            t0sz: 0,
            tg0: Granule::Size4K,
            ir0: 0,
            or0: 0,
            sh0: 0,
            epd0: false,
            epd1: false,
            ips: 0,
            affd: false,
            tbi: 0,
            aa64: false,
            hd: false,
            ha: false,
            stall: false,
            r: false,
            a: false,
            aset: false,
            mair: 0,
        };
        let v = 1u64 << 31;
        let d0 = |c: CdConfig| Cd::new(&c).0[0] & !v;
        assert_eq!(Cd::new(&z).0, [v, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(d0(CdConfig { t0sz: 0xFF, ..z }), 0x3F);
        assert_eq!(
            d0(CdConfig {
                tg0: Granule::Size16K,
                ..z
            }),
            2 << 6
        );
        assert_eq!(
            d0(CdConfig {
                tg0: Granule::Size64K,
                ..z
            }),
            1 << 6
        );
        assert_eq!(d0(CdConfig { ir0: 3, ..z }), 3 << 8);
        assert_eq!(d0(CdConfig { or0: 3, ..z }), 3 << 10);
        assert_eq!(d0(CdConfig { sh0: 3, ..z }), 3 << 12);
        assert_eq!(d0(CdConfig { epd0: true, ..z }), 1 << 14);
        assert_eq!(d0(CdConfig { epd1: true, ..z }), 1 << 30);
        assert_eq!(d0(CdConfig { ips: 7, ..z }), 7 << 32);
        assert_eq!(d0(CdConfig { affd: true, ..z }), 1 << 35);
        assert_eq!(d0(CdConfig { tbi: 3, ..z }), 3 << 38);
        assert_eq!(d0(CdConfig { aa64: true, ..z }), 1 << 41);
        assert_eq!(d0(CdConfig { hd: true, ..z }), 1 << 42);
        assert_eq!(d0(CdConfig { ha: true, ..z }), 1 << 43);
        assert_eq!(d0(CdConfig { stall: true, ..z }), 1 << 44);
        assert_eq!(d0(CdConfig { r: true, ..z }), 1 << 45);
        assert_eq!(d0(CdConfig { a: true, ..z }), 1 << 46);
        assert_eq!(d0(CdConfig { aset: true, ..z }), 1 << 47);
        assert_eq!(
            d0(CdConfig {
                asid: Asid(0xFFFF),
                ..z
            }),
            0xFFFF << 48
        );
        assert_eq!(
            Cd::new(&CdConfig {
                ttb0: PhysAddr(u64::MAX),
                ..z
            })
            .0[1],
            0x000F_FFFF_FFFF_FFF0
        );
        assert_eq!(
            Cd::new(&CdConfig {
                mair: u64::MAX,
                ..z
            })
            .0[3],
            u64::MAX
        );
    }

    #[test]
    fn errors_and_used_bits() {
        assert_eq!(Cd::INVALID.config(), Err(CdError::NotValid));
        let cd = Cd::new(&CdConfig::new(
            Asid(1),
            PhysAddr(0x1000),
            25,
            Granule::Size4K,
            2,
            0,
        ));
        let mut bad = cd;
        bad.0[0] |= 3 << 6;
        assert_eq!(bad.config(), Err(CdError::ReservedTg0));
        let mut bad = cd;
        bad.0[0] |= 7 << 32;
        assert_eq!(bad.config(), Err(CdError::ReservedIps(7)));

        assert_eq!(Cd::INVALID.used_bits(), [1 << 31, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(cd.used_bits(), [u64::MAX; 8]);
        let mut c = cd;
        c.0[0] |= 1 << 14;
        let u = c.used_bits();
        assert_eq!(u[0], !0x3FFF | 1 << 14);
        assert_eq!(u[1], !0x000F_FFFF_FFFF_FFF0);
        assert_eq!(u[2..], [u64::MAX; 6]);
    }

    #[test]
    fn l1_descriptor() {
        let d = L1Cd::new(PhysAddr(0x1234_5000)).unwrap();
        assert_eq!(d.0, 0x1234_5001);
        assert!(d.valid());
        assert_eq!(d.l2ptr(), PhysAddr(0x1234_5000));
        assert_eq!(
            L1Cd::new(PhysAddr(0x000F_FFFF_FFFF_F000)).unwrap().0,
            0x000F_FFFF_FFFF_F001
        );
        assert_eq!(L1Cd::new(PhysAddr(0x1234_5800)), None);
        assert_eq!(L1Cd::new(PhysAddr(1 << 52)), None);
        assert!(!L1Cd::INVALID.valid());
    }

    fn cd_config() -> impl Strategy<Value = CdConfig> {
        (
            (any::<u16>(), 0u64..(1 << 48), 0u8..64),
            prop_oneof![
                Just(Granule::Size4K),
                Just(Granule::Size16K),
                Just(Granule::Size64K)
            ],
            (0u8..4, 0u8..4, 0u8..4, 0u8..=6, 0u8..4),
            any::<[bool; 11]>(),
            any::<u64>(),
        )
            .prop_map(
                |((asid, ttb, t0sz), tg0, (ir0, or0, sh0, ips, tbi), f, mair)| CdConfig {
                    asid: Asid(asid),
                    ttb0: PhysAddr(ttb << 4),
                    t0sz,
                    tg0,
                    ir0,
                    or0,
                    sh0,
                    epd0: f[0],
                    epd1: f[1],
                    ips,
                    affd: f[2],
                    tbi,
                    aa64: f[3],
                    hd: f[4],
                    ha: f[5],
                    stall: f[6],
                    r: f[7],
                    a: f[8],
                    aset: f[9],
                    mair,
                },
            )
    }

    proptest! {
        #[test]
        fn cd_round_trip(c in cd_config()) {
            prop_assert_eq!(Cd::new(&c).config(), Ok(c));
        }

        #[test]
        fn arbitrary_cd_never_panics(raw in any::<[u64; 8]>(), l1 in any::<u64>()) {
            let cd = Cd(raw);
            let _ = cd.used_bits();
            if let Ok(c) = cd.config() {
                prop_assert_eq!(Cd::new(&c).config(), Ok(c));
            }
            let d = L1Cd(l1);
            let _ = (d.valid(), d.l2ptr());
        }
    }
}
