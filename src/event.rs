//! Event queue records (IHI 0070 §7): the typed [`EventRecord`] and its raw 32-byte [`EvtqEntry`].
//!
//! Decoding never fails: unknown event IDs are kept raw in [`EventId`], and fields an event does
//! not define are still reported as the bits the record holds. Reached from the IRQ path.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use tock_registers::{LocalRegisterCopy, register_bitfields};

use crate::ids::{Iova, Ipa, PhysAddr, StreamId, SubstreamId};
use crate::regs::bits::{get, set};

register_bitfields![u64,
    /// Event record dword 0 (IHI 0070 §7.3).
    pub(crate) EVT0 [
        /// Event type, bits `[7:0]`.
        ID OFFSET(0) NUMBITS(8) [],
        /// SSV, bit `[11]`: the SubstreamID is valid.
        SSV OFFSET(11) NUMBITS(1) [],
        /// SubstreamID, bits `[31:12]`.
        SSID OFFSET(12) NUMBITS(20) [],
        /// StreamID, bits `[63:32]`.
        SID OFFSET(32) NUMBITS(32) []
    ],
    /// Event record dword 1 (IHI 0070 §7.3).
    pub(crate) EVT1 [
        /// STAG, bits `[15:0]`: stall tag.
        STAG OFFSET(0) NUMBITS(16) [],
        /// Stall, bit `[31]`: the transaction is stalled.
        STALL OFFSET(31) NUMBITS(1) [],
        /// PnU, bit `[33]`: privileged.
        PNU OFFSET(33) NUMBITS(1) [],
        /// InD, bit `[34]`: instruction.
        IND OFFSET(34) NUMBITS(1) [],
        /// RnW, bit `[35]`: read.
        RNW OFFSET(35) NUMBITS(1) [],
        /// NSIPA, bit `[38]`.
        NSIPA OFFSET(38) NUMBITS(1) [],
        /// S2, bit `[39]`: the fault is at stage 2.
        S2 OFFSET(39) NUMBITS(1) [],
        /// CLASS, bits `[41:40]`.
        CLASS OFFSET(40) NUMBITS(2) [],
        /// TTRnW, bit `[44]`.
        TTRNW OFFSET(44) NUMBITS(1) []
    ],
    /// Event record dword 3 (IHI 0070 §7.3): IPA `[51:12]` or FetchAddr `[51:3]`.
    pub(crate) EVT3 [
        /// IPA, bits `[51:12]`.
        IPA OFFSET(12) NUMBITS(40) [],
        /// FetchAddr, bits `[51:3]`.
        FETCHADDR OFFSET(3) NUMBITS(49) []
    ]
];

/// A raw event queue entry: 32 bytes, 4 little-endian dwords (IHI 0070 §7.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(C)]
pub struct EvtqEntry(pub [u64; 4]);

const _: () = assert!(core::mem::size_of::<EvtqEntry>() == 32);

impl EvtqEntry {
    /// The event ID, dword 0 bits `[7:0]`.
    pub const fn id(&self) -> u8 {
        let [d0, ..] = self.0;
        get(EVT0::ID, d0) as u8
    }

    /// The StreamID, dword 0 bits `[63:32]`.
    pub const fn sid(&self) -> StreamId {
        let [d0, ..] = self.0;
        StreamId(get(EVT0::SID, d0) as u32)
    }

    /// The same record with the StreamID replaced (dword 0 bits `[63:32]` only), as done when a
    /// record is forwarded to a guest with its virtual StreamID.
    pub const fn with_sid(self, sid: StreamId) -> Self {
        let [d0, d1, d2, d3] = self.0;
        Self([set(EVT0::SID, d0, sid.0 as u64), d1, d2, d3])
    }

    /// An entry from eight little-endian 32-bit words, `w0` first (as QEMU traces print them).
    pub const fn from_le_words(w: [u32; 8]) -> Self {
        let [w0, w1, w2, w3, w4, w5, w6, w7] = w;
        Self([dw(w0, w1), dw(w2, w3), dw(w4, w5), dw(w6, w7)])
    }

    /// The eight little-endian 32-bit words of the entry, `w0` first.
    pub const fn to_le_words(&self) -> [u32; 8] {
        let [d0, d1, d2, d3] = self.0;
        [
            d0 as u32,
            (d0 >> 32) as u32,
            d1 as u32,
            (d1 >> 32) as u32,
            d2 as u32,
            (d2 >> 32) as u32,
            d3 as u32,
            (d3 >> 32) as u32,
        ]
    }
}

const fn dw(lo: u32, hi: u32) -> u64 {
    (lo as u64) | ((hi as u64) << 32)
}

/// An event type (IHI 0070 §7.3). Unknown values are kept as they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[repr(transparent)]
pub struct EventId(pub u8);

macro_rules! event_ids {
    ($($(#[$m:meta])* $name:ident = $val:expr,)*) => {
        impl EventId {
            $($(#[$m])* pub const $name: Self = Self($val);)*

            /// The spec's name of an architected event, `"IMPDEF"` for 0xE0..=0xEF, `None`
            /// for a reserved value.
            pub const fn name(self) -> Option<&'static str> {
                match self {
                    $(Self::$name => Some(stringify!($name)),)*
                    _ if self.is_impdef() => Some("IMPDEF"),
                    _ => None,
                }
            }
        }
    };
}

event_ids! {
    /// 0x01 F_UUT: unsupported upstream transaction (IHI 0070 §7.3.1).
    F_UUT = 0x01,
    /// 0x02 C_BAD_STREAMID: StreamID outside the stream table (IHI 0070 §7.3.2).
    C_BAD_STREAMID = 0x02,
    /// 0x03 F_STE_FETCH: external abort fetching an STE; FetchAddr valid (IHI 0070 §7.3.3).
    F_STE_FETCH = 0x03,
    /// 0x04 C_BAD_STE: invalid or illegal STE (IHI 0070 §7.3.4).
    C_BAD_STE = 0x04,
    /// 0x05 F_BAD_ATS_TREQ: ATS translation request not allowed (IHI 0070 §7.3.5).
    F_BAD_ATS_TREQ = 0x05,
    /// 0x06 F_STREAM_DISABLED: transaction without SubstreamID refused (IHI 0070 §7.3.6).
    F_STREAM_DISABLED = 0x06,
    /// 0x07 F_TRANSL_FORBIDDEN: translated transaction not allowed (IHI 0070 §7.3.7).
    F_TRANSL_FORBIDDEN = 0x07,
    /// 0x08 C_BAD_SUBSTREAMID: SubstreamID out of range (IHI 0070 §7.3.8).
    C_BAD_SUBSTREAMID = 0x08,
    /// 0x09 F_CD_FETCH: external abort fetching a CD; FetchAddr valid (IHI 0070 §7.3.9).
    F_CD_FETCH = 0x09,
    /// 0x0A C_BAD_CD: invalid or illegal CD (IHI 0070 §7.3.10).
    C_BAD_CD = 0x0A,
    /// 0x0B F_WALK_EABT: external abort during a table walk (IHI 0070 §7.3.11).
    F_WALK_EABT = 0x0B,
    /// 0x10 F_TRANSLATION: translation fault (IHI 0070 §7.3.12).
    F_TRANSLATION = 0x10,
    /// 0x11 F_ADDR_SIZE: address-size fault (IHI 0070 §7.3.13).
    F_ADDR_SIZE = 0x11,
    /// 0x12 F_ACCESS: access-flag fault (IHI 0070 §7.3.14).
    F_ACCESS = 0x12,
    /// 0x13 F_PERMISSION: permission fault (IHI 0070 §7.3.15).
    F_PERMISSION = 0x13,
    /// 0x20 F_TLB_CONFLICT: TLB conflict (IHI 0070 §7.3.16).
    F_TLB_CONFLICT = 0x20,
    /// 0x21 F_CFG_CONFLICT: configuration cache conflict (IHI 0070 §7.3.17).
    F_CFG_CONFLICT = 0x21,
    /// 0x24 E_PAGE_REQUEST: speculative page-request hint (IHI 0070 §7.3.19).
    E_PAGE_REQUEST = 0x24,
    /// 0x25 F_VMS_FETCH: abort fetching the VMS; FetchAddr valid (IHI 0070 §7.3.20).
    F_VMS_FETCH = 0x25,
}

impl EventId {
    /// Whether the ID is in the IMPLEMENTATION DEFINED range 0xE0..=0xEF (IHI 0070 §7.3.21).
    pub const fn is_impdef(self) -> bool {
        matches!(self.0, 0xE0..=0xEF)
    }

    /// Whether the ID is architected or IMPLEMENTATION DEFINED (not reserved).
    pub const fn is_known(self) -> bool {
        self.name().is_some()
    }

    /// Whether records of this type can carry Stall/STAG: F_TRANSLATION, F_ADDR_SIZE, F_ACCESS,
    /// F_PERMISSION (IHI 0070 §7.3.21).
    pub const fn can_stall(self) -> bool {
        matches!(self.0, 0x10..=0x13)
    }

    /// Whether dword 3 holds FetchAddr: F_STE_FETCH, F_CD_FETCH, F_WALK_EABT, F_VMS_FETCH.
    pub const fn has_fetch_addr(self) -> bool {
        matches!(
            self,
            Self::F_STE_FETCH | Self::F_CD_FETCH | Self::F_WALK_EABT | Self::F_VMS_FETCH
        )
    }
}

/// CLASS of a fault record: what the SMMU was doing (IHI 0070 §7.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FaultClass {
    /// 0 CD: fetching a CD.
    #[default]
    Cd,
    /// 1 TT: a stage-1 table walk.
    Tt,
    /// 2 IN: the input address.
    In,
    /// 3: reserved.
    Reserved,
}

impl FaultClass {
    /// The CLASS field value.
    pub const fn raw(self) -> u8 {
        match self {
            Self::Cd => 0,
            Self::Tt => 1,
            Self::In => 2,
            Self::Reserved => 3,
        }
    }

    /// Decodes the two CLASS bits (upper bits ignored).
    pub const fn from_raw(raw: u8) -> Self {
        match raw & 3 {
            0 => Self::Cd,
            1 => Self::Tt,
            2 => Self::In,
            _ => Self::Reserved,
        }
    }
}

/// The typed view of an event record: every field of IHI 0070 §7.3's common layout.
///
/// `ipa` and `fetch_addr` are two views of dword 3 (IPA `[51:12]` for translation-class faults at
/// stage 2, FetchAddr `[51:3]` for fetch aborts). [`EventRecord::decode`] fills both from the same
/// bits; [`EventRecord::encode`] writes their union. QEMU also writes the IPA's page-offset bits,
/// which `ipa` masks off.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct EventRecord {
    /// Event type.
    pub id: EventId,
    /// StreamID.
    pub sid: StreamId,
    /// SubstreamID, if SSV = 1.
    pub ssid: Option<SubstreamId>,
    /// STAG (meaningful when `stall`).
    pub stag: u16,
    /// Stall: the transaction waits for RESUME or STALL_TERM.
    pub stall: bool,
    /// PnU: privileged.
    pub pnu: bool,
    /// InD: instruction fetch.
    pub ind: bool,
    /// RnW: read (false = write).
    pub rnw: bool,
    /// NSIPA.
    pub nsipa: bool,
    /// S2: the fault happened at stage 2.
    pub s2: bool,
    /// CLASS.
    pub class: FaultClass,
    /// TTRnW: for F_PERMISSION with CLASS = TT, a descriptor read.
    pub ttrnw: bool,
    /// InputAddr: the address the device used.
    pub input_addr: u64,
    /// IPA, bits `[51:12]` of dword 3.
    pub ipa: u64,
    /// FetchAddr, bits `[51:3]` of dword 3.
    pub fetch_addr: u64,
}

const IPA_MASK: u64 = EVT3::IPA::SET.value;
const FETCH_MASK: u64 = EVT3::FETCHADDR::SET.value;

impl EventRecord {
    /// A record of type `id` for `sid` with every other field zero.
    pub const fn new(id: EventId, sid: StreamId) -> Self {
        Self {
            id,
            sid,
            ssid: None,
            stag: 0,
            stall: false,
            pnu: false,
            ind: false,
            rnw: false,
            nsipa: false,
            s2: false,
            class: FaultClass::Cd,
            ttrnw: false,
            input_addr: 0,
            ipa: 0,
            fetch_addr: 0,
        }
    }

    /// Decodes a raw record. Never fails.
    pub fn decode(entry: &EvtqEntry) -> Self {
        let [d0, d1, d2, d3] = entry.0;
        let d0 = LocalRegisterCopy::<u64, EVT0::Register>::new(d0);
        let d1 = LocalRegisterCopy::<u64, EVT1::Register>::new(d1);
        Self {
            id: EventId(d0.read(EVT0::ID) as u8),
            sid: StreamId(d0.read(EVT0::SID) as u32),
            ssid: d0
                .is_set(EVT0::SSV)
                .then(|| SubstreamId(d0.read(EVT0::SSID) as u32)),
            stag: d1.read(EVT1::STAG) as u16,
            stall: d1.is_set(EVT1::STALL),
            pnu: d1.is_set(EVT1::PNU),
            ind: d1.is_set(EVT1::IND),
            rnw: d1.is_set(EVT1::RNW),
            nsipa: d1.is_set(EVT1::NSIPA),
            s2: d1.is_set(EVT1::S2),
            class: FaultClass::from_raw(d1.read(EVT1::CLASS) as u8),
            ttrnw: d1.is_set(EVT1::TTRNW),
            input_addr: d2,
            ipa: d3 & IPA_MASK,
            fetch_addr: d3 & FETCH_MASK,
        }
    }

    /// Encodes the record; values are masked to their fields.
    pub fn encode(&self) -> EvtqEntry {
        let ssid = match self.ssid {
            Some(s) => EVT0::SSV::SET + EVT0::SSID.val(u64::from(s.0)),
            None => EVT0::SSV::CLEAR,
        };
        let d0 = EVT0::ID.val(u64::from(self.id.0)) + ssid + EVT0::SID.val(u64::from(self.sid.0));
        let d1 = EVT1::STAG.val(u64::from(self.stag))
            + EVT1::STALL.val(u64::from(self.stall))
            + EVT1::PNU.val(u64::from(self.pnu))
            + EVT1::IND.val(u64::from(self.ind))
            + EVT1::RNW.val(u64::from(self.rnw))
            + EVT1::NSIPA.val(u64::from(self.nsipa))
            + EVT1::S2.val(u64::from(self.s2))
            + EVT1::CLASS.val(u64::from(self.class.raw()))
            + EVT1::TTRNW.val(u64::from(self.ttrnw));
        let d3 = (self.ipa & IPA_MASK) | (self.fetch_addr & FETCH_MASK);
        EvtqEntry([d0.value, d1.value, self.input_addr, d3])
    }

    /// C_BAD_STREAMID for `sid` (IHI 0070 §7.3.2).
    pub const fn bad_streamid(sid: StreamId) -> Self {
        Self::new(EventId::C_BAD_STREAMID, sid)
    }

    /// C_BAD_STE for `sid` (IHI 0070 §7.3.4).
    pub const fn bad_ste(sid: StreamId) -> Self {
        Self::new(EventId::C_BAD_STE, sid)
    }

    /// F_STREAM_DISABLED for `sid` (IHI 0070 §7.3.6).
    pub const fn stream_disabled(sid: StreamId) -> Self {
        Self::new(EventId::F_STREAM_DISABLED, sid)
    }

    /// C_BAD_SUBSTREAMID for `sid` / `ssid` (IHI 0070 §7.3.8).
    pub const fn bad_substreamid(sid: StreamId, ssid: Option<SubstreamId>) -> Self {
        Self::new(EventId::C_BAD_SUBSTREAMID, sid).with_ssid(ssid)
    }

    /// C_BAD_CD for `sid` / `ssid` (IHI 0070 §7.3.10).
    pub const fn bad_cd(sid: StreamId, ssid: Option<SubstreamId>) -> Self {
        Self::new(EventId::C_BAD_CD, sid).with_ssid(ssid)
    }

    /// F_STE_FETCH for `sid` with the STE address that aborted (IHI 0070 §7.3.3).
    pub const fn ste_fetch(sid: StreamId, fetch_addr: PhysAddr) -> Self {
        Self::new(EventId::F_STE_FETCH, sid).with_dword3(fetch_addr.0)
    }

    /// F_CD_FETCH for `sid` / `ssid` with the CD address that aborted (IHI 0070 §7.3.9).
    pub const fn cd_fetch(sid: StreamId, ssid: Option<SubstreamId>, fetch_addr: PhysAddr) -> Self {
        Self::new(EventId::F_CD_FETCH, sid)
            .with_ssid(ssid)
            .with_dword3(fetch_addr.0)
    }

    /// A translation-class fault (`id` one of F_TRANSLATION, F_ADDR_SIZE, F_ACCESS,
    /// F_PERMISSION) on the input address `iova`, CLASS = IN. With `s2`, the fault is at stage 2
    /// of a stage-2-only stream, so the IPA is `iova` (as QEMU reports it). IHI 0070 §7.3.12-15.
    pub const fn fault(id: EventId, sid: StreamId, iova: Iova, s2: bool, write: bool) -> Self {
        let mut r = Self::new(id, sid);
        r.rnw = !write;
        r.s2 = s2;
        r.class = FaultClass::In;
        r.input_addr = iova.0;
        if s2 { r.with_dword3(iova.0) } else { r }
    }

    /// F_TRANSLATION on `iova`; see [`EventRecord::fault`] (IHI 0070 §7.3.12).
    pub const fn translation_fault(sid: StreamId, iova: Iova, s2: bool, write: bool) -> Self {
        Self::fault(EventId::F_TRANSLATION, sid, iova, s2, write)
    }

    /// F_PERMISSION on `iova`; see [`EventRecord::fault`] (IHI 0070 §7.3.15).
    pub const fn permission_fault(sid: StreamId, iova: Iova, s2: bool, write: bool) -> Self {
        Self::fault(EventId::F_PERMISSION, sid, iova, s2, write)
    }

    /// This record with the SubstreamID (SSV) set to `ssid`.
    pub const fn with_ssid(mut self, ssid: Option<SubstreamId>) -> Self {
        self.ssid = ssid;
        self
    }

    /// This record with IPA `ipa` in dword 3 (a stage-2 fault of a nested stream).
    pub const fn with_ipa(self, ipa: Ipa) -> Self {
        self.with_dword3(ipa.0)
    }

    /// This record marked stalled with tag `stag`.
    pub const fn with_stall(mut self, stag: u16) -> Self {
        self.stall = true;
        self.stag = stag;
        self
    }

    /// This record with CLASS `class`.
    pub const fn with_class(mut self, class: FaultClass) -> Self {
        self.class = class;
        self
    }

    /// Sets both views of dword 3 from one raw value, as a decoded record has them.
    const fn with_dword3(mut self, raw: u64) -> Self {
        self.ipa = raw & IPA_MASK;
        self.fetch_addr = raw & FETCH_MASK;
        self
    }
}

impl From<&EvtqEntry> for EventRecord {
    fn from(e: &EvtqEntry) -> Self {
        Self::decode(e)
    }
}

impl From<EventRecord> for EvtqEntry {
    fn from(r: EventRecord) -> Self {
        r.encode()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Raw records QEMU virt wrote (`smmuv3_record_event` in QEMU's `hw/arm/smmuv3.c`, read back
    /// from the event queue of `-machine virt,iommu=smmuv3`), as eight little-endian u32 words.
    const QEMU_BAD_STE: [u32; 8] = [0x04, 0x08, 0, 0, 0, 0, 0, 0];
    const QEMU_S2_WRITE: [u32; 8] = [0x10, 0x08, 0, 0x280, 0x8410_1000, 0, 0x8410_1000, 0];
    const QEMU_S2_READ: [u32; 8] = [0x10, 0x08, 0, 0x288, 0x8410_0008, 0, 0x8410_0008, 0];
    const QEMU_S2_OUT_OF_RANGE: [u32; 8] = [0x10, 0x08, 0, 0x280, 0, 0x80, 0, 0x80];
    const QEMU_BAD_STREAMID: [u32; 8] = [0x02, 0x08, 0, 0, 0, 0, 0, 0];

    #[test]
    fn qemu_c_bad_ste() {
        let e = EvtqEntry::from_le_words(QEMU_BAD_STE);
        assert_eq!(e.0, [0x0000_0008_0000_0004, 0, 0, 0]);
        assert_eq!((e.id(), e.sid()), (0x04, StreamId(8)));
        let r = EventRecord::decode(&e);
        assert_eq!(r.id, EventId::C_BAD_STE);
        assert_eq!(r.id.name(), Some("C_BAD_STE"));
        assert_eq!(r, EventRecord::bad_ste(StreamId(8)));
        assert_eq!(
            EventRecord::bad_ste(StreamId(8)).encode().to_le_words(),
            QEMU_BAD_STE
        );
    }

    #[test]
    fn qemu_c_bad_streamid() {
        let r = EventRecord::decode(&EvtqEntry::from_le_words(QEMU_BAD_STREAMID));
        assert_eq!(r.id, EventId::C_BAD_STREAMID);
        assert_eq!(r.sid, StreamId(8));
        assert_eq!(r, EventRecord::bad_streamid(StreamId(8)));
        assert_eq!(r.encode().to_le_words(), QEMU_BAD_STREAMID);
    }

    #[test]
    fn qemu_stage2_translation_fault_write() {
        let r = EventRecord::decode(&EvtqEntry::from_le_words(QEMU_S2_WRITE));
        assert_eq!(r.id, EventId::F_TRANSLATION);
        assert_eq!(r.sid, StreamId(8));
        assert_eq!(r.ssid, None);
        assert_eq!((r.stag, r.stall, r.pnu, r.ind), (0, false, false, false));
        assert!(!r.rnw, "a write");
        assert!(!r.nsipa);
        assert!(r.s2);
        assert_eq!(r.class, FaultClass::In);
        assert!(!r.ttrnw);
        assert_eq!(r.input_addr, 0x8410_1000);
        assert_eq!(r.ipa, 0x8410_1000);
        let built = EventRecord::translation_fault(StreamId(8), Iova(0x8410_1000), true, true);
        assert_eq!(built, r);
        assert_eq!(built.encode().to_le_words(), QEMU_S2_WRITE);
    }

    #[test]
    fn qemu_stage2_translation_fault_read() {
        let r = EventRecord::decode(&EvtqEntry::from_le_words(QEMU_S2_READ));
        assert_eq!(r.id, EventId::F_TRANSLATION);
        assert_eq!(r.sid, StreamId(8));
        assert!(r.rnw, "a read");
        assert!(r.s2);
        assert_eq!(r.class, FaultClass::In);
        assert_eq!(r.input_addr, 0x8410_0008);
        // QEMU writes the page offset too; the IPA field is bits [51:12].
        assert_eq!(r.ipa, 0x8410_0000);
        let built = EventRecord::translation_fault(StreamId(8), Iova(0x8410_0008), true, false);
        assert_eq!(built, r);
        assert_eq!(built.encode().to_le_words(), QEMU_S2_READ);
    }

    #[test]
    fn qemu_stage2_fault_outside_t0sz() {
        let r = EventRecord::decode(&EvtqEntry::from_le_words(QEMU_S2_OUT_OF_RANGE));
        assert_eq!(r.id, EventId::F_TRANSLATION);
        assert!(r.s2 && !r.rnw);
        assert_eq!(r.class, FaultClass::In);
        assert_eq!(r.input_addr, 1 << 39);
        assert_eq!(r.ipa, 1 << 39);
    }

    #[test]
    fn field_positions() {
        let e = |r: EventRecord| r.encode().0;
        let z = EventRecord::new(EventId(0), StreamId(0));
        assert_eq!(e(z), [0; 4]);
        assert_eq!(
            e(EventRecord {
                id: EventId(0xAB),
                ..z
            })[0],
            0xAB
        );
        assert_eq!(
            e(EventRecord {
                sid: StreamId(0xDEAD_BEEF),
                ..z
            })[0],
            0xDEAD_BEEF_0000_0000
        );
        assert_eq!(e(z.with_ssid(Some(SubstreamId(0xF_FFFF))))[0], 0xFFFF_F800);
        assert_eq!(e(z.with_ssid(Some(SubstreamId(0))))[0], 0x800);
        assert_eq!(e(z.with_stall(0xBEEF))[1], 0x8000_BEEF);
        assert_eq!(e(EventRecord { pnu: true, ..z })[1], 1 << 33);
        assert_eq!(e(EventRecord { ind: true, ..z })[1], 1 << 34);
        assert_eq!(e(EventRecord { rnw: true, ..z })[1], 1 << 35);
        assert_eq!(e(EventRecord { nsipa: true, ..z })[1], 1 << 38);
        assert_eq!(e(EventRecord { s2: true, ..z })[1], 1 << 39);
        assert_eq!(e(z.with_class(FaultClass::Tt))[1], 1 << 40);
        assert_eq!(e(z.with_class(FaultClass::Reserved))[1], 3 << 40);
        assert_eq!(e(EventRecord { ttrnw: true, ..z })[1], 1 << 44);
        assert_eq!(
            e(EventRecord {
                input_addr: u64::MAX,
                ..z
            })[2],
            u64::MAX
        );
        assert_eq!(e(z.with_ipa(Ipa(u64::MAX)))[3], 0x000F_FFFF_FFFF_FFF8);
        assert_eq!(z.with_ipa(Ipa(u64::MAX)).ipa, 0x000F_FFFF_FFFF_F000);
        assert_eq!(
            e(EventRecord { ipa: u64::MAX, ..z })[3],
            0x000F_FFFF_FFFF_F000
        );
        assert_eq!(
            e(EventRecord {
                fetch_addr: u64::MAX,
                ..z
            })[3],
            0x000F_FFFF_FFFF_FFF8
        );
        let f = EventRecord::ste_fetch(StreamId(3), PhysAddr(0x4000_00C0));
        assert_eq!((f.id, f.fetch_addr), (EventId::F_STE_FETCH, 0x4000_00C0));
        assert_eq!(f.encode().0, [0x0000_0003_0000_0003, 0, 0, 0x4000_00C0]);
        let c = EventRecord::cd_fetch(StreamId(3), Some(SubstreamId(2)), PhysAddr(0x5000_0040));
        assert_eq!(c.encode().0, [0x0000_0003_0000_2809, 0, 0, 0x5000_0040]);
        assert_eq!(
            EventRecord::stream_disabled(StreamId(1)).encode().0[0],
            0x1_0000_0006
        );
        assert_eq!(
            EventRecord::bad_substreamid(StreamId(1), None).encode().0[0],
            0x1_0000_0008
        );
        assert_eq!(
            EventRecord::bad_cd(StreamId(1), Some(SubstreamId(1)))
                .encode()
                .0[0],
            0x1_0000_180A
        );
        let p = EventRecord::permission_fault(StreamId(1), Iova(0x1000), false, false);
        assert_eq!(p.encode().0, [0x1_0000_0013, 1 << 35 | 2 << 40, 0x1000, 0]);
    }

    #[test]
    fn event_ids() {
        let all = [
            (0x01, "F_UUT"),
            (0x02, "C_BAD_STREAMID"),
            (0x03, "F_STE_FETCH"),
            (0x04, "C_BAD_STE"),
            (0x05, "F_BAD_ATS_TREQ"),
            (0x06, "F_STREAM_DISABLED"),
            (0x07, "F_TRANSL_FORBIDDEN"),
            (0x08, "C_BAD_SUBSTREAMID"),
            (0x09, "F_CD_FETCH"),
            (0x0A, "C_BAD_CD"),
            (0x0B, "F_WALK_EABT"),
            (0x10, "F_TRANSLATION"),
            (0x11, "F_ADDR_SIZE"),
            (0x12, "F_ACCESS"),
            (0x13, "F_PERMISSION"),
            (0x20, "F_TLB_CONFLICT"),
            (0x21, "F_CFG_CONFLICT"),
            (0x24, "E_PAGE_REQUEST"),
            (0x25, "F_VMS_FETCH"),
        ];
        for (id, name) in all {
            assert_eq!(EventId(id).name(), Some(name));
            assert!(EventId(id).is_known());
            assert!(!EventId(id).is_impdef());
        }
        for id in 0xE0..=0xEF {
            assert_eq!(EventId(id).name(), Some("IMPDEF"));
            assert!(EventId(id).is_known() && EventId(id).is_impdef());
        }
        let known = (0..=255u8).filter(|&i| EventId(i).is_known()).count();
        assert_eq!(known, all.len() + 16);
        assert_eq!(EventId(0x0C).name(), None);
        assert_eq!(EventId(0xF0).name(), None);
        assert_eq!(EventId(0).name(), None);
        let stall: Vec<u8> = (0..=255u8).filter(|&i| EventId(i).can_stall()).collect();
        assert_eq!(stall, [0x10, 0x11, 0x12, 0x13]);
        let fetch: Vec<u8> = (0..=255u8)
            .filter(|&i| EventId(i).has_fetch_addr())
            .collect();
        assert_eq!(fetch, [0x03, 0x09, 0x0B, 0x25]);
    }

    /// The bits of a record the common layout defines (SubstreamID only with SSV).
    fn defined(e: EvtqEntry) -> EvtqEntry {
        let [d0, d1, d2, d3] = e.0;
        let ssv = d0 & (1 << 11) != 0;
        let d0m = 0xFFFF_FFFF_0000_08FF | if ssv { 0xFFFF_F000 } else { 0 };
        let d1m = 0xFFFF | 1 << 31 | 0b111 << 33 | 0b11 << 38 | 0b11 << 40 | 1 << 44;
        EvtqEntry([d0 & d0m, d1 & d1m, d2, d3 & 0x000F_FFFF_FFFF_FFF8])
    }

    fn record() -> impl Strategy<Value = EventRecord> {
        (
            any::<u8>(),
            any::<u32>(),
            proptest::option::of(0..=SubstreamId::MAX),
            any::<u16>(),
            any::<[bool; 7]>(),
            0u8..4,
            any::<u64>(),
            any::<u64>(),
        )
            .prop_map(|(id, sid, ssid, stag, f, class, input_addr, d3)| {
                let mut r = EventRecord::new(EventId(id), StreamId(sid))
                    .with_ssid(ssid.map(SubstreamId))
                    .with_class(FaultClass::from_raw(class))
                    .with_dword3(d3);
                r.stag = stag;
                [r.stall, r.pnu, r.ind, r.rnw, r.nsipa, r.s2, r.ttrnw] = f;
                r.input_addr = input_addr;
                r
            })
    }

    proptest! {
        #[test]
        fn record_round_trip(r in record()) {
            prop_assert_eq!(EventRecord::decode(&r.encode()), r);
        }

        #[test]
        fn arbitrary_entry_decodes(raw in any::<[u64; 4]>()) {
            let e = EvtqEntry(raw);
            let r = EventRecord::decode(&e);
            let _ = (r.id.name(), r.id.is_known());
            prop_assert_eq!(r.id.0, e.id());
            prop_assert_eq!(r.sid, e.sid());
            prop_assert_eq!(r.encode(), defined(e));
            prop_assert_eq!(EventRecord::decode(&r.encode()), r);
            prop_assert_eq!(EvtqEntry::from_le_words(e.to_le_words()), e);
        }

        #[test]
        fn with_sid_changes_only_the_streamid(raw in any::<[u64; 4]>(), sid in any::<u32>()) {
            let e = EvtqEntry(raw).with_sid(StreamId(sid));
            prop_assert_eq!(e.sid(), StreamId(sid));
            prop_assert_eq!(e.0[0] & 0xFFFF_FFFF, raw[0] & 0xFFFF_FFFF);
            prop_assert_eq!(&e.0[1..], &raw[1..]);
        }
    }
}
