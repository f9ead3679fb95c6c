//! Typed identifiers and addresses. No bare integer crosses a public API.
//!
//! Widths follow IHI 0070: StreamID up to 32 bits (IDR1.SIDSIZE), SubstreamID up to 20 bits
//! (IDR1.SSIDSIZE), VMID 8 or 16 bits (IDR0.VMID16), ASID 8 or 16 bits (IDR0.ASID16).

use core::fmt;

macro_rules! typed_id {
    ($(#[$m:meta])* $name:ident($inner:ty)) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[cfg_attr(feature = "defmt", derive(defmt::Format))]
        #[repr(transparent)]
        pub struct $name(pub $inner);

        impl $name {
            /// The raw value.
            #[inline]
            pub const fn raw(self) -> $inner {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{:#x}", self.0)
            }
        }
    };
}

typed_id!(
    /// A physical StreamID as the SMMU sees it (PCIe: the Requester ID). IHI 0070 §3.2.
    StreamId(u32)
);
typed_id!(
    /// A virtual StreamID: the StreamID a guest uses for a device in its vIOMMU.
    VStreamId(u32)
);
typed_id!(
    /// A SubstreamID (PCIe PASID), at most 20 bits. IHI 0070 §3.2.
    SubstreamId(u32)
);
typed_id!(
    /// A virtual machine identifier tagging stage-2 TLB entries (STE.S2VMID). IHI 0070 §5.2.
    Vmid(u16)
);
typed_id!(
    /// An address-space identifier tagging stage-1 TLB entries (CD.ASID). IHI 0070 §5.4.
    Asid(u16)
);
typed_id!(
    /// A physical address as the SMMU sees it (the output of the last translation stage).
    PhysAddr(u64)
);
typed_id!(
    /// An intermediate physical address: the output of stage 1, the input of stage 2.
    Ipa(u64)
);
typed_id!(
    /// An I/O virtual address: the address a device puts on the bus.
    Iova(u64)
);

impl SubstreamId {
    /// The largest SubstreamID the architecture can express (20 bits).
    pub const MAX: u32 = (1 << 20) - 1;

    /// A SubstreamID, if it fits in 20 bits.
    pub const fn new(raw: u32) -> Option<Self> {
        if raw <= Self::MAX {
            Some(Self(raw))
        } else {
            None
        }
    }
}

impl Vmid {
    /// A VMID that fits in `bits` (8 or 16, from `Features::vmid_bits`).
    pub const fn new(raw: u16, bits: u8) -> Option<Self> {
        if bits >= 16 || (raw as u32) < (1u32 << bits) {
            Some(Self(raw))
        } else {
            None
        }
    }
}

impl Asid {
    /// An ASID that fits in `bits` (8 or 16, from `Features::asid_bits`).
    pub const fn new(raw: u16, bits: u8) -> Option<Self> {
        if bits >= 16 || (raw as u32) < (1u32 << bits) {
            Some(Self(raw))
        } else {
            None
        }
    }
}

impl PhysAddr {
    /// The address plus `off` bytes.
    #[inline]
    pub const fn add(self, off: u64) -> Self {
        Self(self.0.wrapping_add(off))
    }

    /// Whether the address is a multiple of `align` (a power of two).
    #[inline]
    pub const fn is_aligned(self, align: u64) -> bool {
        self.0 & (align.wrapping_sub(1)) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_checked() {
        assert_eq!(Vmid::new(255, 8), Some(Vmid(255)));
        assert_eq!(Vmid::new(256, 8), None);
        assert_eq!(Vmid::new(0xffff, 16), Some(Vmid(0xffff)));
        assert_eq!(Asid::new(0x100, 8), None);
        assert_eq!(SubstreamId::new(0xf_ffff), Some(SubstreamId(0xf_ffff)));
        assert_eq!(SubstreamId::new(0x10_0000), None);
        assert!(PhysAddr(0x4000).is_aligned(0x4000));
        assert!(!PhysAddr(0x4040).is_aligned(0x4000));
    }
}
