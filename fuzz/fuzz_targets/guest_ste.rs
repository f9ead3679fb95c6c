//! Guest STEs: the sanitiser never panics, refuses only V = 1 STEs, and the physical STE it
//! builds carries the host's stage 2 and VMID, a legal Config, MEV, EATS exactly as the guest
//! asked (Config = S1 translate with EATS = 1) and the device allows, and no bit the guest may
//! not set.
#![no_main]

use arm_smmuv3::error::{Error, Rejection};
use arm_smmuv3::ste::{Granule, S2Config, Ste};
use arm_smmuv3::viommu::NestedSte;
use arm_smmuv3::viommu::vste::{GUEST_STE0_ALLOWED, GUEST_STE1_ALLOWED};
use arm_smmuv3::{PhysAddr, Vmid};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 17 {
        return;
    }
    let d0 = u64::from_le_bytes(data[..8].try_into().unwrap());
    let d1 = u64::from_le_bytes(data[8..16].try_into().unwrap());
    let (ats, shcfg) = (data[16] & 1 != 0, data[16] & 2 != 0);
    let s2 =
        S2Config::for_ipa_bits(Vmid(0x33), PhysAddr(0x8_0000_0000), 44, Granule::Size4K).unwrap();
    let host = Ste::stage2(&s2).with_shcfg(u8::from(shcfg));
    let n = match NestedSte::from_guest([d0, d1]) {
        Ok(n) => n,
        Err(e) => {
            assert_eq!(e.errno(), -5);
            assert_eq!(d0 & 1, 1, "a V = 0 vSTE is never refused");
            // The reason names the first rule broken, from the guest's own words: forbidden
            // bits of dword 0, of dword 1, Config (bits [3:1]) not 0/4/5, EATS (bits [29:28])
            // above 1.
            let (bad0, bad1) = (d0 & !GUEST_STE0_ALLOWED, d1 & !GUEST_STE1_ALLOWED);
            let why = match ((d0 >> 1) & 7) as u8 {
                _ if bad0 != 0 => Rejection::SteBits {
                    dword: 0,
                    bits: bad0,
                },
                _ if bad1 != 0 => Rejection::SteBits {
                    dword: 1,
                    bits: bad1,
                },
                c @ (1..=3 | 6 | 7) => Rejection::SteConfig(c),
                _ => Rejection::SteBits {
                    dword: 1,
                    bits: d1 & (3 << 28),
                },
            };
            assert_eq!(e, Error::Rejected(why));
            return;
        }
    };
    let p = n.physical(&s2, ats, shcfg);
    if p == Ste::ABORT {
        return;
    }
    assert!(p.valid());
    assert!(matches!(p.config_raw(), 6 | 7));
    // The host's stage 2, whole.
    assert_eq!(p.0[2..], host.0[2..]);
    assert_eq!(p.s2vmid(), Vmid(0x33));
    // Read from the guest's own words, not through the sanitiser's decoding: Config is bits
    // [3:1] of dword 0 (0b101: stage-1 translate), EATS bits [29:28] of dword 1.
    let asked = (d0 >> 1) & 7 == 0b101 && (d1 >> 28) & 3 == 1;
    assert_eq!(u64::from(p.eats()), u64::from(ats && asked), "EATS");
    if p.config_raw() == 7 {
        assert!(p.mev());
        // Dword 0: the guest's allowed bits and V/Config only.
        assert_eq!(p.0[0] & !GUEST_STE0_ALLOWED, 0);
        assert_eq!(p.0[0] & !0xf, d0 & !0xf);
        // Dword 1: the host template, the guest's allowed bits, MEV and EATS.
        let mev_eats = (1 << 19) | (3 << 28);
        assert_eq!(p.0[1] & !(host.0[1] | GUEST_STE1_ALLOWED | mev_eats), 0);
        assert_eq!(
            p.0[1] & GUEST_STE1_ALLOWED & !(3 << 28),
            d1 & GUEST_STE1_ALLOWED & !(3 << 28)
        );
    } else {
        assert_eq!(p, host);
    }
});
