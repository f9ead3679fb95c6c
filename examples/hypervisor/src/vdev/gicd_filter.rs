//! What the distributor filter (vdev/gicd.rs) makes of a guest's write: a pure function of the
//! register offset, the access size, the value and the INTIDs the hypervisor owns, so that the
//! host can test it (`cargo test -p qemu-virt-hypervisor`).
//!
//! GICv3 distributor layout (IHI 0069, §12.9, affinity routing on): GICD_CTLR 0x0000;
//! SETSPI/CLRSPI 0x0040-0x0058 (the value is an INTID); one bit per INTID in IGROUPR 0x0080,
//! ISENABLER 0x0100, ICENABLER 0x0180, ISPENDR 0x0200, ICPENDR 0x0280, ISACTIVER 0x0300,
//! ICACTIVER 0x0380, IGRPMODR 0x0D00; one byte per INTID in IPRIORITYR 0x0400; two bits in ICFGR
//! 0x0C00; eight bytes in IROUTER 0x6000.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::ops::RangeInclusive;

/// GICD_CTLR.EnableGrp1 (bit 1) and ARE (bit 4) with DS = 1: kept on.
pub const CTLR_KEEP: u64 = (1 << 1) | (1 << 4);

/// What to do with a guest write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Write {
    /// Write this value.
    Forward(u64),
    /// Write `value`, except that the bits in `keep` keep the register's current value.
    Merge {
        /// The guest's value.
        value: u64,
        /// Bits that belong to the hypervisor.
        keep: u64,
    },
    /// Write nothing.
    Drop,
}

/// The bits of the fields (`width` bits per INTID, in an array starting at `base`) that the
/// `size`-byte access at `offset` covers and that belong to `owned`.
fn owned_bits(offset: u64, base: u64, width: u64, size: u8, owned: &RangeInclusive<u32>) -> u64 {
    let per_byte = 8 / width;
    let first = (offset - base) * per_byte;
    let fields = u64::from(size) * per_byte;
    (0..fields)
        .filter(|f| u32::try_from(first + f).is_ok_and(|i| owned.contains(&i)))
        .fold(0, |mask, f| mask | (((1u64 << width) - 1) << (f * width)))
}

/// What the guest's `size`-byte write of `value` at `offset` (0..0x1_0000) becomes, when the
/// hypervisor owns the INTIDs `owned` (`None`: it owns none, everything is forwarded).
pub fn filter(offset: u64, size: u8, value: u64, owned: Option<&RangeInclusive<u32>>) -> Write {
    let Some(owned) = owned else {
        return Write::Forward(value);
    };
    let merge = |keep: u64| {
        if keep == 0 {
            Write::Forward(value)
        } else {
            Write::Merge { value, keep }
        }
    };
    match offset {
        0x0000 => Write::Forward(value | CTLR_KEEP),
        0x0040 | 0x0048 | 0x0050 | 0x0058 => {
            if u32::try_from(value & 0x3ff).is_ok_and(|i| owned.contains(&i)) {
                Write::Drop
            } else {
                Write::Forward(value)
            }
        }
        // IGROUPR: the hypervisor's lines stay Group 1.
        0x0080..=0x00ff => Write::Forward(value | owned_bits(offset, 0x0080, 1, size, owned)),
        // Set/clear registers: a 0 bit changes nothing, so the hypervisor's bits are cleared.
        0x0100..=0x03ff => {
            Write::Forward(value & !owned_bits(offset, offset & !0x7f, 1, size, owned))
        }
        0x0400..=0x07ff => merge(owned_bits(offset, 0x0400, 8, size, owned)),
        0x0c00..=0x0cff => merge(owned_bits(offset, 0x0c00, 2, size, owned)),
        0x0d00..=0x0d7f => merge(owned_bits(offset, 0x0d00, 1, size, owned)),
        0x6000..=0x7fff => {
            if u32::try_from((offset - 0x6000) / 8).is_ok_and(|i| owned.contains(&i)) {
                Write::Drop
            } else {
                Write::Forward(value)
            }
        }
        _ => Write::Forward(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNED: RangeInclusive<u32> = 106..=109;

    /// The register content after `filter`, starting from `current`.
    fn apply(offset: u64, size: u8, value: u64, current: u64) -> u64 {
        match filter(offset, size, value, Some(&OWNED)) {
            Write::Forward(v) => v,
            Write::Merge { value, keep } => (value & !keep) | (current & keep),
            Write::Drop => current,
        }
    }

    #[test]
    fn examples_from_linux_gic_init() {
        // ICENABLER3 = all ones (Linux disables every SPI): INTID 106-109 (bits 10-13) stay.
        assert_eq!(apply(0x018c, 4, 0xffff_ffff, 0), 0xffff_c3ff);
        // ICFGR6 = 0 (level): bits [27:20] keep the hypervisor's edge setting.
        assert_eq!(apply(0x0c18, 4, 0, 0x0aa0_0000), 0x0aa0_0000);
        // IPRIORITYR word for 104-107 = 0xa0a0a0a0: bytes of 106 and 107 stay 0x80.
        assert_eq!(apply(0x0468, 4, 0xa0a0_a0a0, 0x8080_0000), 0x8080_a0a0);
        // A byte write to 106's priority changes nothing; to 105's, it goes through.
        assert_eq!(apply(0x046a, 1, 0xa0, 0x80), 0x80);
        assert_eq!(apply(0x0469, 1, 0xa0, 0x80), 0xa0);
        // IGROUPR3 = 0: the hypervisor's lines stay Group 1.
        assert_eq!(apply(0x008c, 4, 0, 0), 0x3c00);
        // IROUTER of 106 (64-bit and either half) dropped; of 105 forwarded.
        assert_eq!(filter(0x6350, 8, 1, Some(&OWNED)), Write::Drop);
        assert_eq!(filter(0x6354, 4, 1, Some(&OWNED)), Write::Drop);
        assert_eq!(filter(0x6348, 8, 1, Some(&OWNED)), Write::Forward(1));
        // SETSPI/CLRSPI naming 107 dropped, 33 forwarded.
        assert_eq!(filter(0x0048, 4, 107, Some(&OWNED)), Write::Drop);
        assert_eq!(filter(0x0040, 4, 33, Some(&OWNED)), Write::Forward(33));
        // GICD_CTLR = 0 keeps ARE and EnableGrp1.
        assert_eq!(filter(0, 4, 0, Some(&OWNED)), Write::Forward(0x12));
        // Without owned INTIDs everything is forwarded as is.
        assert_eq!(
            filter(0x018c, 4, 0xffff_ffff, None),
            Write::Forward(0xffff_ffff)
        );
    }

    /// Where INTID `i`'s field lies in each per-INTID array, computed independently of
    /// `owned_bits`: (register offset, bit position, width).
    fn field_of(i: u64, base: u64, width: u64) -> (u64, u64, u64) {
        let bit = i * width;
        (base + (bit / 32) * 4, bit % 32, width)
    }

    /// No write of any value, at any offset and size, changes a field of an owned INTID (other
    /// than setting its group bit), and every other field of those registers takes the
    /// guest's value.
    #[test]
    fn no_write_reaches_an_owned_field() {
        let arrays: [(u64, u64); 11] = [
            (0x0080, 1),
            (0x0100, 1),
            (0x0180, 1),
            (0x0200, 1),
            (0x0280, 1),
            (0x0300, 1),
            (0x0380, 1),
            (0x0400, 8),
            (0x0c00, 2),
            (0x0d00, 1),
            (0x6000, 64),
        ];
        for (base, width) in arrays {
            for intid in 0..288u64 {
                let (word, bit, w) = field_of(intid, base, width);
                for size in [1u8, 2, 4, 8] {
                    let size_bytes = u64::from(size);
                    // Every aligned access that covers this field's first byte.
                    let offset = (word + bit / 8) & !(size_bytes - 1);
                    let shift = (word + bit / 8 - offset) * 8 + bit % 8;
                    if shift >= 64 || w > 64 - shift {
                        continue;
                    }
                    let field = if w == 64 {
                        u64::MAX
                    } else {
                        ((1u64 << w) - 1) << shift
                    };
                    for (value, current) in
                        [(u64::MAX, 0), (0, u64::MAX), (0x5a5a_5a5a_5a5a_5a5a, 0)]
                    {
                        let after = apply(offset, size, value, current);
                        let owned = OWNED.contains(&(intid as u32));
                        let ctx =
                            format!("INTID {intid} base {base:#x} offset {offset:#x} size {size}");
                        match (owned, base) {
                            // IGROUPR: owned lines are forced to Group 1.
                            (true, 0x0080) => assert_eq!(after & field, field, "{ctx}"),
                            // Set/clear: the owned bits are never written as 1.
                            (true, 0x0100..=0x03ff) => assert_eq!(after & field, 0, "{ctx}"),
                            // Values and IROUTER: the current content stays.
                            (true, _) => assert_eq!(after & field, current & field, "{ctx}"),
                            (false, _) => {
                                // A field of an unowned INTID takes the guest's value, unless the
                                // same access also covers an owned IROUTER (dropped whole).
                                let covers_owned_router = base == 0x6000
                                    && OWNED.contains(&(((offset - 0x6000) / 8) as u32));
                                if !covers_owned_router {
                                    assert_eq!(after & field, value & field, "{ctx}");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
