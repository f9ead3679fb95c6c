//! Guest STEs for nested translation: the sanitiser Linux applies to
//! `struct iommu_hwpt_arm_smmuv3` (`struct iommu_hwpt_arm_smmuv3` in `include/uapi/linux/iommufd.h`, Linux's `arm_smmu_validate_vste`) and the physical STE built from the result
//! (IHI 0070 §5.2 STE, Linux's `arm_smmu_make_nested_domain_ste`).

use crate::error::{Error, Rejection};
use crate::iommufd::HwptArmSmmuv3;
use crate::regs::bits;
use crate::ste::STE0::CONFIG::Value as Config;
use crate::ste::{S2Config, STE0, STE1, Ste};
use tock_registers::LocalRegisterCopy;

/// STE dword 0 bits a guest may set (V, Config, S1Fmt, S1ContextPtr, S1CDMax): `struct iommu_hwpt_arm_smmuv3` in `include/uapi/linux/iommufd.h`, Linux's `arm_smmu_validate_vste`.
pub const GUEST_STE0_ALLOWED: u64 = Ste::GUEST_DWORD0_MASK;
/// STE dword 1 bits a guest may set (S1DSS, S1CIR, S1COR, S1CSH, S1STALLD, EATS): `struct iommu_hwpt_arm_smmuv3` in `include/uapi/linux/iommufd.h`, Linux's `arm_smmu_validate_vste`.
pub const GUEST_STE1_ALLOWED: u64 = Ste::GUEST_DWORD1_MASK;

/// What a sanitised guest STE asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum GuestConfig {
    /// V = 0 or Config = abort: the device gets an abort STE (so the guest sees C_BAD_STE for a
    /// V = 0 vSTE, as Linux intends).
    Abort,
    /// Config = bypass: the device gets the vIOMMU's stage-2-only STE.
    Bypass,
    /// Config = stage 1: the device gets a nested STE with the guest's CD table.
    Translate,
}

/// A guest STE (dwords 0-1) that passed Linux's checks, with EATS taken out (`struct iommu_hwpt_arm_smmuv3` in `include/uapi/linux/iommufd.h`, Linux's `arm_smmu_validate_vste`:
/// "The kernel removes EATS from the stored vSTE and sets the physical EATS itself").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NestedSte {
    ste: [u64; 2],
    config: GuestConfig,
    enable_ats: bool,
}

impl NestedSte {
    /// Sanitises a guest STE exactly as Linux's `IOMMU_HWPT_ALLOC` for SMMUv3 nesting does
    /// (`struct iommu_hwpt_arm_smmuv3` in `include/uapi/linux/iommufd.h`, Linux's `arm_smmu_validate_vste` "Validation and translation"):
    /// - V = 0: the whole STE is treated as zero (an abort STE), whatever else is set;
    /// - any bit outside [`GUEST_STE0_ALLOWED`] / [`GUEST_STE1_ALLOWED`] → EIO
    ///   ([`Rejection::SteBits`] with the dword and the offending bits);
    /// - Config other than 0 (abort), 4 (bypass), 5 (stage 1) → EIO ([`Rejection::SteConfig`]);
    /// - EATS 2 (S1CHK) or 3 → EIO ([`Rejection::SteBits`] with the EATS bits); EATS is
    ///   removed, and ATS is enabled only for Config = 5 with EATS = 1.
    pub fn from_guest(ste: [u64; 2]) -> Result<Self, Error> {
        let [d0, d1] = ste;
        if !bits::is_set(STE0::V, d0) {
            return Ok(Self {
                ste: [0, 0],
                config: GuestConfig::Abort,
                enable_ats: false,
            });
        }
        let refuse = |dword, bits| Err(Error::Rejected(Rejection::SteBits { dword, bits }));
        for (dword, bits) in [(0, d0 & !GUEST_STE0_ALLOWED), (1, d1 & !GUEST_STE1_ALLOWED)] {
            if bits != 0 {
                return refuse(dword, bits);
            }
        }
        let config =
            match LocalRegisterCopy::<u64, STE0::Register>::new(d0).read_as_enum(STE0::CONFIG) {
                Some(Config::Abort) => GuestConfig::Abort,
                Some(Config::Bypass) => GuestConfig::Bypass,
                Some(Config::S1Trans) => GuestConfig::Translate,
                _ => {
                    let raw = bits::get(STE0::CONFIG, d0) as u8;
                    return Err(Error::Rejected(Rejection::SteConfig(raw)));
                }
            };
        let eats = bits::get(STE1::EATS, d1);
        if eats > 1 {
            return refuse(1, d1 & STE1::EATS::SET.value);
        }
        Ok(Self {
            ste: [d0, d1 & !STE1::EATS::SET.value],
            config,
            enable_ats: config == GuestConfig::Translate && eats == 1,
        })
    }

    /// [`from_guest`](Self::from_guest) on the uAPI struct (its words are little-endian).
    pub fn from_hwpt(data: &HwptArmSmmuv3) -> Result<Self, Error> {
        Self::from_guest(data.ste)
    }

    /// The guest's requested configuration.
    pub const fn config(&self) -> GuestConfig {
        self.config
    }

    /// Whether the guest asked for ATS (Config = 5 with EATS = 1). The guest must then issue
    /// ATC_INV itself, which the invalidation path allows.
    pub const fn enable_ats(&self) -> bool {
        self.enable_ats
    }

    /// The stored vSTE words (EATS cleared; all zero for a V = 0 vSTE).
    pub const fn words(&self) -> [u64; 2] {
        self.ste
    }

    /// The physical STE for a device of this vIOMMU (IHI 0070 §5.2, Linux's
    /// `make_nested_domain_ste`): abort for [`GuestConfig::Abort`]; the stage-2 STE of `s2` for
    /// [`GuestConfig::Bypass`]; for [`GuestConfig::Translate`] the stage-2 STE with V = 1,
    /// Config = 7, the guest's dword-0 bits, the guest's dword-1 bits and MEV = 1. EATS = 1 only
    /// if the guest asked for ATS and the device supports it (`ats_capable`); SHCFG = 1
    /// (incoming) on the stage-2 templates when `shcfg_incoming` (IDR1.ATTR_TYPES_OVR).
    pub fn physical(&self, s2: &S2Config, ats_capable: bool, shcfg_incoming: bool) -> Ste {
        let shcfg = u8::from(shcfg_incoming);
        match self.config {
            GuestConfig::Abort => Ste::ABORT,
            GuestConfig::Bypass => Ste::stage2(s2).with_shcfg(shcfg),
            GuestConfig::Translate => {
                let guest = Ste([self.ste[0], self.ste[1], 0, 0, 0, 0, 0, 0]);
                Ste::nested(&guest, s2)
                    .with_shcfg(shcfg)
                    .with_mev(true)
                    .with_eats(u8::from(self.enable_ats && ats_capable))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::{PhysAddr, Vmid};
    use crate::ste::{Granule, SteConfig};

    fn s2() -> S2Config {
        S2Config::for_ipa_bits(Vmid(9), PhysAddr(0x8000_0000), 40, Granule::Size4K).unwrap()
    }

    const V: u64 = 1;
    const CFG_S1: u64 = 5 << 1;
    const CFG_BYPASS: u64 = 4 << 1;
    const CTX: u64 = 0x4_5678_9000; // S1ContextPtr bits [51:6]
    const CDMAX: u64 = 3 << 59;
    const S1FMT: u64 = 1 << 4;
    const D1_GUEST: u64 = 0x1 | (1 << 2) | (1 << 4) | (3 << 6) | (1 << 27);
    const EATS: u64 = 3 << 28;

    fn refused(dword: u8, bits: u64) -> Result<NestedSte, Error> {
        Err(Error::Rejected(Rejection::SteBits { dword, bits }))
    }

    /// The masks are Linux's `STRTAB_STE_0_NESTING_ALLOWED` / `STRTAB_STE_1_NESTING_ALLOWED`
    /// (`arm-smmu-v3.h`), written out here rather than taken from the field definitions.
    #[test]
    fn allowed_masks_are_linuxs() {
        assert_eq!(GUEST_STE0_ALLOWED, 0xf80f_ffff_ffff_ffff);
        assert_eq!(GUEST_STE1_ALLOWED, 0x3800_00ff);
    }

    #[test]
    fn each_forbidden_bit_is_eio_with_v_set() {
        let good = [V | CFG_S1 | CTX | CDMAX | S1FMT, D1_GUEST];
        assert!(NestedSte::from_guest(good).is_ok());
        for bit in 0..64 {
            if GUEST_STE0_ALLOWED & (1 << bit) == 0 {
                let ste = [good[0] | 1 << bit, good[1]];
                let r = NestedSte::from_guest(ste);
                assert_eq!(r, refused(0, 1 << bit), "dword0 bit {bit}");
                assert_eq!(r.unwrap_err().errno(), -5);
            }
            if GUEST_STE1_ALLOWED & (1 << bit) == 0 {
                let ste = [good[0], good[1] | 1 << bit];
                assert_eq!(
                    NestedSte::from_guest(ste),
                    refused(1, 1 << bit),
                    "dword1 bit {bit}"
                );
            }
        }
    }

    #[test]
    fn v0_is_abort_whatever_else_is_set() {
        let n = NestedSte::from_guest([!1u64, u64::MAX]).unwrap();
        assert_eq!(n.config(), GuestConfig::Abort);
        assert_eq!(n.words(), [0, 0]);
        assert_eq!(n.physical(&s2(), true, false), Ste::ABORT);
    }

    #[test]
    fn config_values() {
        for cfg in 0..8u64 {
            let r = NestedSte::from_guest([V | cfg << 1, 0]);
            match cfg {
                0 => assert_eq!(r.unwrap().config(), GuestConfig::Abort),
                4 => assert_eq!(r.unwrap().config(), GuestConfig::Bypass),
                5 => assert_eq!(r.unwrap().config(), GuestConfig::Translate),
                _ => assert_eq!(
                    r,
                    Err(Error::Rejected(Rejection::SteConfig(cfg as u8))),
                    "config {cfg}"
                ),
            }
        }
    }

    #[test]
    fn eats_rules() {
        for eats in 0..4u64 {
            let r = NestedSte::from_guest([V | CFG_S1 | CTX, eats << 28]);
            match eats {
                0 | 1 => {
                    let n = r.unwrap();
                    assert_eq!(n.enable_ats(), eats == 1);
                    assert_eq!(n.words()[1] & EATS, 0, "EATS is stripped");
                    let p = n.physical(&s2(), true, false);
                    assert_eq!(u64::from(p.eats()), eats);
                    // A device without ATS never gets EATS.
                    assert_eq!(n.physical(&s2(), false, false).eats(), 0);
                }
                _ => assert_eq!(r, refused(1, eats << 28)),
            }
        }
        // EATS = 1 on a bypass vSTE does not enable ATS.
        let n = NestedSte::from_guest([V | CFG_BYPASS, 1 << 28]).unwrap();
        assert!(!n.enable_ats());
        assert_eq!(n.physical(&s2(), true, false).eats(), 0);
    }

    #[test]
    fn translate_builds_nested_with_mev_and_host_s2() {
        let n = NestedSte::from_guest([V | CFG_S1 | CTX | CDMAX | S1FMT, D1_GUEST]).unwrap();
        let p = n.physical(&s2(), false, true);
        assert!(p.valid());
        assert_eq!(p.config_raw(), 7);
        assert!(p.mev());
        assert_eq!(p.shcfg(), 1);
        assert_eq!(p.s2vmid(), Vmid(9));
        assert_eq!(p.s2ttb(), PhysAddr(0x8000_0000));
        assert_eq!(p.s1_context_ptr(), PhysAddr(CTX));
        assert_eq!(p.s1_cd_max(), 3);
        assert_eq!(p.s1_fmt_raw(), 1);
        assert_eq!(p.0[1] & D1_GUEST, D1_GUEST);
        assert!(matches!(p.config(), Ok(SteConfig::Nested { .. })));
        // Nothing outside the guest fields and the host's stage-2 template leaks in.
        let s2_only = Ste::stage2(&s2()).with_shcfg(1);
        assert_eq!(p.0[2..], s2_only.0[2..]);
    }

    #[test]
    fn bypass_is_stage2_only() {
        let n = NestedSte::from_guest([V | CFG_BYPASS, 0]).unwrap();
        assert_eq!(n.physical(&s2(), true, false), Ste::stage2(&s2()));
    }
}
