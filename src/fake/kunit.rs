//! Linux's STE templates of its KUnit STE-transition tests (`arm-smmu-v3-test.c`), for the
//! tests and benches that compare the driver's live STE updates with Linux's entry writer:
//! SHCFG = incoming on bypass, stage-2 and nested STEs, a 64 KiB 2-level CD table, VMID 0.

use crate::ids::{PhysAddr, Vmid};
use crate::ste::{Granule, S1Dss, S1Fmt, S1StreamConfig, S2Config, Ste};

/// A CD table address outside the model's default arena: the model never fetches it.
pub const CDTAB: PhysAddr = PhysAddr(0xF0F0_F0F0_F000);

/// Linux's stage-1 (CD table) template: the CD table at `ptr` (2-level, 64 KiB leaves, 8
/// SSID bits), S1DSS `dss`, EATS = `ats`; SHCFG = incoming when S1DSS bypasses.
pub fn cdtable(dss: S1Dss, ptr: PhysAddr, ats: bool) -> Ste {
    let s1 = S1StreamConfig {
        dss,
        eats: u8::from(ats),
        ..S1StreamConfig::new(ptr, S1Fmt::TwoLevel64K, 8)
    };
    let ste = Ste::stage1(&s1);
    if dss == S1Dss::Bypass {
        ste.with_shcfg(1)
    } else {
        ste
    }
}

/// The KUnit stage-2 domain: VMID 0, as the stage-1 STE has, so S2VMID (which a stage-1 STE
/// uses too) does not change between them.
pub fn s2cfg() -> S2Config {
    // A 40-bit IPA space with a 4 KiB granule always has a start level.
    S2Config::for_ipa_bits(Vmid(0), PhysAddr(0x9000_0000), 40, Granule::Size4K)
        .unwrap_or_else(|e| unreachable!("{e:?}"))
}

/// Linux's stage-2 template (SHCFG = incoming), EATS = `ats`.
pub fn s2(ats: bool) -> Ste {
    Ste::stage2(&s2cfg()).with_shcfg(1).with_eats(u8::from(ats))
}

/// Linux's nested STE: the stage-1 template (at [`CDTAB`], S1DSS `dss`) on its stage-2
/// template, SHCFG = incoming included, EATS = `ats`.
pub fn nested(dss: S1Dss, ats: bool) -> Ste {
    Ste::nested(&cdtable(dss, CDTAB, false), &s2cfg())
        .with_shcfg(1)
        .with_eats(u8::from(ats))
}

/// Linux's bypass template (SHCFG = incoming).
pub fn bypass() -> Ste {
    Ste::bypass(true)
}
