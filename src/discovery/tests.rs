//! Unit tests of the mapping arithmetic.

use super::*;

fn map(input_base: u32, count: u64, output_base: u32, mask: u32) -> IdMap {
    IdMap {
        owner: MapOwner::PciRoot {
            segment: 0,
            node: 0,
        },
        input_base,
        count,
        output_base,
        mask,
        single: false,
        smmu: SmmuIndex(0),
    }
}

#[test]
fn translate_covers_exactly_its_range() {
    let m = map(0x100, 0x100, 0x2000, u32::MAX);
    assert_eq!(m.translate(0xff), None);
    assert_eq!(m.translate(0x100), Some(StreamId(0x2000)));
    assert_eq!(m.translate(0x1ff), Some(StreamId(0x20ff)));
    assert_eq!(m.translate(0x200), None);
}

#[test]
fn translate_applies_the_mask_first() {
    // iommu-map-mask = 0x7: only the function number selects the StreamID.
    let m = map(0, 8, 0x40, 0x7);
    assert_eq!(m.translate(0x0b), Some(StreamId(0x43)));
}

#[test]
fn translate_never_wraps_past_u32() {
    let m = map(0, 1 << 32, 0xffff_fff0, u32::MAX);
    assert_eq!(m.translate(0xf), Some(StreamId(0xffff_ffff)));
    assert_eq!(m.translate(0x10), None);
}

#[test]
fn single_mapping_ignores_the_input() {
    let mut m = map(0, 1, 0x77, u32::MAX);
    m.single = true;
    assert_eq!(m.translate(0xdead), Some(StreamId(0x77)));
}

#[test]
fn errno_values_are_linux_ones() {
    assert_eq!(DiscoveryError::NotFound.errno(), -19);
    assert_eq!(DiscoveryError::TooMany("x").errno(), -28);
    assert_eq!(DiscoveryError::Unsupported("x").errno(), -95);
    assert_eq!(DiscoveryError::Dangling(1).errno(), -22);
}

#[test]
fn topology_fits_a_boot_stack() {
    // What a board image holds on its stack or in a static while it brings the SMMUs up.
    let (t, s, m) = (
        size_of::<Topology>(),
        size_of::<SmmuDesc>(),
        size_of::<IdMap>(),
    );
    println!("Topology {t} B, SmmuDesc {s} B, IdMap {m} B");
    assert!(t <= 8 * 1024, "Topology grew to {t} bytes");
}
