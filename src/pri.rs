//! PRI queue entries (IHI 0070 §8): page requests from PCIe devices.
//!
//! [`PriqEntry`] is the raw 16-byte slot, [`PageRequest`] its typed view. Decoding never fails.
//! Reached from the IRQ path.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::ids::{StreamId, SubstreamId};

register_bitfields![u64,
    /// PRI queue entry dword 0 (IHI 0070 §8.1).
    PRIQ0 [
        /// StreamID, bits `[31:0]`.
        SID OFFSET(0) NUMBITS(32) [],
        /// SubstreamID (PASID), bits `[51:32]`.
        SSID OFFSET(32) NUMBITS(20) [],
        /// Privileged access requested, bit `[58]`.
        PRIV OFFSET(58) NUMBITS(1) [],
        /// Execute requested, bit `[59]`.
        EXEC OFFSET(59) NUMBITS(1) [],
        /// Read requested, bit `[60]`.
        READ OFFSET(60) NUMBITS(1) [],
        /// Write requested, bit `[61]`.
        WRITE OFFSET(61) NUMBITS(1) [],
        /// Last request of the page request group, bit `[62]`.
        LAST OFFSET(62) NUMBITS(1) [],
        /// SSV, bit `[63]`: the SubstreamID is valid.
        SSV OFFSET(63) NUMBITS(1) []
    ],
    /// PRI queue entry dword 1 (IHI 0070 §8.1).
    PRIQ1 [
        /// PRG index, bits `[8:0]`.
        PRG_INDEX OFFSET(0) NUMBITS(9) [],
        /// Page address, bits `[63:12]`.
        ADDR OFFSET(12) NUMBITS(52) []
    ]
];

/// A raw PRI queue entry: 16 bytes, 2 little-endian dwords (IHI 0070 §8.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub struct PriqEntry(pub [u64; 2]);

const _: () = assert!(core::mem::size_of::<PriqEntry>() == 16);

impl PriqEntry {
    /// The StreamID, dword 0 bits `[31:0]`.
    pub const fn sid(&self) -> StreamId {
        let [d0, _] = self.0;
        StreamId(d0 as u32)
    }
}

/// A PCIe page request (IHI 0070 §8.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PageRequest {
    /// StreamID of the requester.
    pub sid: StreamId,
    /// PASID, if SSV = 1.
    pub ssid: Option<SubstreamId>,
    /// Privileged access requested.
    pub privileged: bool,
    /// Execute access requested.
    pub exec: bool,
    /// Read access requested.
    pub read: bool,
    /// Write access requested.
    pub write: bool,
    /// Last request of its page request group (needs a PRI_RESP).
    pub last: bool,
    /// Page request group index (9 bits).
    pub prg_index: u16,
    /// Page address (bits `[63:12]`; the low 12 bits are zero).
    pub addr: u64,
}

impl PageRequest {
    /// Decodes a raw entry. Never fails.
    pub fn decode(entry: &PriqEntry) -> Self {
        let [d0, d1] = entry.0;
        let d0 = LocalRegisterCopy::<u64, PRIQ0::Register>::new(d0);
        let d1 = LocalRegisterCopy::<u64, PRIQ1::Register>::new(d1);
        Self {
            sid: StreamId(d0.read(PRIQ0::SID) as u32),
            ssid: d0
                .is_set(PRIQ0::SSV)
                .then(|| SubstreamId(d0.read(PRIQ0::SSID) as u32)),
            privileged: d0.is_set(PRIQ0::PRIV),
            exec: d0.is_set(PRIQ0::EXEC),
            read: d0.is_set(PRIQ0::READ),
            write: d0.is_set(PRIQ0::WRITE),
            last: d0.is_set(PRIQ0::LAST),
            prg_index: d1.read(PRIQ1::PRG_INDEX) as u16,
            addr: d1.get() & PRIQ1::ADDR::SET.value,
        }
    }

    /// Encodes the request; values are masked to their fields.
    pub fn encode(&self) -> PriqEntry {
        let ssid = match self.ssid {
            Some(s) => PRIQ0::SSV::SET + PRIQ0::SSID.val(u64::from(s.0)),
            None => PRIQ0::SSV::CLEAR,
        };
        let d0 = PRIQ0::SID.val(u64::from(self.sid.0))
            + ssid
            + PRIQ0::PRIV.val(u64::from(self.privileged))
            + PRIQ0::EXEC.val(u64::from(self.exec))
            + PRIQ0::READ.val(u64::from(self.read))
            + PRIQ0::WRITE.val(u64::from(self.write))
            + PRIQ0::LAST.val(u64::from(self.last));
        let d1 = PRIQ1::PRG_INDEX.val(u64::from(self.prg_index)).value
            | (self.addr & PRIQ1::ADDR::SET.value);
        PriqEntry([d0.value, d1])
    }
}

impl From<&PriqEntry> for PageRequest {
    fn from(e: &PriqEntry) -> Self {
        Self::decode(e)
    }
}

impl From<PageRequest> for PriqEntry {
    fn from(r: PageRequest) -> Self {
        r.encode()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn field_positions() {
        let r = PageRequest {
            sid: StreamId(0x1234),
            ssid: Some(SubstreamId(0xA_BCDE)),
            privileged: true,
            exec: false,
            read: true,
            write: true,
            last: true,
            prg_index: 0x1FF,
            addr: 0xDEAD_B000,
        };
        let e = r.encode();
        assert_eq!(e.0, [0xF40A_BCDE_0000_1234, 0xDEAD_B1FF]);
        assert_eq!(e.sid(), StreamId(0x1234));
        assert_eq!(PageRequest::decode(&e), r);

        let z = PageRequest::default();
        let e = |r: PageRequest| r.encode().0;
        assert_eq!(e(z), [0, 0]);
        assert_eq!(
            e(PageRequest {
                sid: StreamId(u32::MAX),
                ..z
            }),
            [0xFFFF_FFFF, 0]
        );
        assert_eq!(
            e(PageRequest {
                ssid: Some(SubstreamId(0)),
                ..z
            }),
            [1 << 63, 0]
        );
        assert_eq!(
            e(PageRequest {
                privileged: true,
                ..z
            }),
            [1 << 58, 0]
        );
        assert_eq!(e(PageRequest { exec: true, ..z }), [1 << 59, 0]);
        assert_eq!(e(PageRequest { read: true, ..z }), [1 << 60, 0]);
        assert_eq!(e(PageRequest { write: true, ..z }), [1 << 61, 0]);
        assert_eq!(e(PageRequest { last: true, ..z }), [1 << 62, 0]);
        assert_eq!(
            e(PageRequest {
                prg_index: 0xFFFF,
                ..z
            }),
            [0, 0x1FF]
        );
        assert_eq!(
            e(PageRequest {
                addr: u64::MAX,
                ..z
            }),
            [0, 0xFFFF_FFFF_FFFF_F000]
        );
        // SubstreamID is 20 bits.
        assert_eq!(
            e(PageRequest {
                ssid: Some(SubstreamId(u32::MAX)),
                ..z
            }),
            [1 << 63 | 0xF_FFFF << 32, 0]
        );
    }

    fn request() -> impl Strategy<Value = PageRequest> {
        (
            any::<u32>(),
            proptest::option::of(0..=SubstreamId::MAX),
            any::<[bool; 5]>(),
            0u16..512,
            any::<u64>(),
        )
            .prop_map(|(sid, ssid, f, prg_index, addr)| PageRequest {
                sid: StreamId(sid),
                ssid: ssid.map(SubstreamId),
                privileged: f[0],
                exec: f[1],
                read: f[2],
                write: f[3],
                last: f[4],
                prg_index,
                addr: addr & !0xFFF,
            })
    }

    proptest! {
        #[test]
        fn request_round_trip(r in request()) {
            prop_assert_eq!(PageRequest::decode(&r.encode()), r);
        }

        #[test]
        fn arbitrary_entry_decodes(raw in any::<[u64; 2]>()) {
            let e = PriqEntry(raw);
            let r = PageRequest::decode(&e);
            prop_assert_eq!(r.sid, e.sid());
            let ssv = raw[0] >> 63 != 0;
            let d0m = 0xFC00_0000_FFFF_FFFF | if ssv { 0x000F_FFFF_0000_0000 } else { 0 };
            prop_assert_eq!(r.encode().0, [raw[0] & d0m, raw[1] & 0xFFFF_FFFF_FFFF_F1FF]);
        }
    }
}
