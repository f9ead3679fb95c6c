//! Queue index arithmetic for PROD/CONS: index, wrap bit and overflow flag (IHI 0070 §3.5).
//!
//! A PROD or CONS value of a queue with `2^n` entries is `(wrap << n) | index` with
//! `index < 2^n`; advancing adds to that `n + 1`-bit field modulo `2^(n+1)`. Bit 31 is
//! EVENTQ/PRIQ_PROD.OVFLG or EVENTQ/PRIQ_CONS.OVACKFLG and is carried unchanged by the
//! arithmetic. CMDQ_CONS.ERR (bits `[30:24]`) is not part of an index and is dropped.
//! Everything here is pure arithmetic, safe to call from the IRQ path.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::error::{Error, Quantity};
use crate::platform::DmaBuf;
use crate::regs::{EVENTQ_CONS, EVENTQ_PROD};

/// The largest LOG2SIZE of any SMMU queue: index and wrap then fill bits `[19:0]`
/// (IHI 0070 §6.3.26, SMMU_IDR1.CMDQS/EVENTQS/PRIQS).
pub const MAX_LOG2: u8 = 19;

/// Bytes in one command queue entry (IHI 0070 §4.1.1).
pub const CMDQ_ENTRY_BYTES: usize = 16;
/// Bytes in one event queue record (IHI 0070 §7.1).
pub const EVTQ_ENTRY_BYTES: usize = 32;
/// Bytes in one PRI queue entry (IHI 0070 §8.1).
pub const PRIQ_ENTRY_BYTES: usize = 16;

/// Bit 31 of an index register: OVFLG in EVENTQ/PRIQ_PROD, OVACKFLG in EVENTQ/PRIQ_CONS
/// (IHI 0070 §3.5.1, §6.3.29), as the register blocks name it.
const OVF_BIT: u32 = EVENTQ_PROD::OVFLG::SET.value;
const _: () = assert!(OVF_BIT == EVENTQ_CONS::OVACKFLG::SET.value);

/// A PROD or CONS value of a queue with `2^log2_entries` entries: index, wrap bit and the
/// bit-31 overflow flag (IHI 0070 §3.5, §6.3.27-§6.3.35).
///
/// Two values compared by [`QueueIndex::is_empty`] and friends must belong to the same queue;
/// the first argument's size is used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueueIndex {
    log2: u8,
    /// Wrap, index and OVF bits as in the register; every other bit is zero.
    val: u32,
}

impl QueueIndex {
    /// A value from its raw register image, or `None` when `log2_entries` exceeds
    /// [`MAX_LOG2`] or `raw` sets a bit other than index, wrap and bit 31 (IHI 0070 §3.5).
    #[inline]
    pub const fn new(log2_entries: u8, raw: u32) -> Option<Self> {
        if log2_entries > MAX_LOG2 {
            return None;
        }
        let keep = Self::field_mask(log2_entries) | OVF_BIT;
        if raw & !keep != 0 {
            return None;
        }
        Some(Self {
            log2: log2_entries,
            val: raw,
        })
    }

    /// The value read from a PROD/CONS register: keeps index, wrap and bit 31
    /// (OVFLG/OVACKFLG) and drops everything else, such as CMDQ_CONS.ERR bits `[30:24]`
    /// (IHI 0070 §6.3.27-§6.3.35). A `log2_entries` above [`MAX_LOG2`] is taken as
    /// [`MAX_LOG2`], the widest index the registers can hold.
    #[inline]
    pub const fn from_reg(log2_entries: u8, reg: u32) -> Self {
        let log2 = if log2_entries > MAX_LOG2 {
            MAX_LOG2
        } else {
            log2_entries
        };
        Self {
            log2,
            val: reg & (Self::field_mask(log2) | OVF_BIT),
        }
    }

    /// Mask of the `log2 + 1` index-and-wrap bits.
    #[inline]
    const fn field_mask(log2: u8) -> u32 {
        // log2 <= MAX_LOG2, so the shift never reaches 32.
        (2u32 << log2).wrapping_sub(1)
    }

    /// Mask of the index bits `[log2-1:0]`.
    #[inline]
    const fn index_mask(self) -> u32 {
        (1u32 << self.log2).wrapping_sub(1)
    }

    /// Index and wrap bit together (the `n + 1`-bit position field).
    #[inline]
    const fn pos(self) -> u32 {
        self.val & Self::field_mask(self.log2)
    }

    /// log2 of the number of entries of the queue (its LOG2SIZE).
    #[inline]
    pub const fn log2_entries(self) -> u8 {
        self.log2
    }

    /// Number of entries of the queue, `2^LOG2SIZE`.
    #[inline]
    pub const fn entries(self) -> u32 {
        1u32 << self.log2
    }

    /// The slot number, bits `[LOG2SIZE-1:0]`.
    #[inline]
    pub const fn index(self) -> u32 {
        self.val & self.index_mask()
    }

    /// The wrap bit, bit `[LOG2SIZE]`: toggles each time the index passes the end.
    #[inline]
    pub const fn wrap(self) -> bool {
        self.val & (1u32 << self.log2) != 0
    }

    /// Bit 31: OVFLG in a PROD value, OVACKFLG in a CONS value (IHI 0070 §3.5.1).
    #[inline]
    pub const fn ovf(self) -> bool {
        self.val & OVF_BIT != 0
    }

    /// The same position with bit 31 set to `ovf` (used to copy PROD.OVFLG into
    /// CONS.OVACKFLG, IHI 0070 §3.5.1).
    #[inline]
    pub const fn with_ovf(self, ovf: bool) -> Self {
        let val = if ovf {
            self.val | OVF_BIT
        } else {
            self.val & !OVF_BIT
        };
        Self {
            log2: self.log2,
            val,
        }
    }

    /// The next position: index + 1, toggling wrap at the end, OVF kept.
    #[inline]
    pub const fn next(self) -> Self {
        self.add(1)
    }

    /// The position `n` entries further, modulo `2^(LOG2SIZE+1)`, OVF kept.
    #[inline]
    pub const fn add(self, n: u32) -> Self {
        let mask = Self::field_mask(self.log2);
        let pos = self.pos().wrapping_add(n) & mask;
        Self {
            log2: self.log2,
            val: (self.val & OVF_BIT) | pos,
        }
    }

    /// The register image: index, wrap and bit 31; every other bit zero.
    #[inline]
    pub const fn to_reg(self) -> u32 {
        self.val
    }

    /// Whether the queue is empty: same index and same wrap (IHI 0070 §3.5).
    #[inline]
    pub const fn is_empty(prod: Self, cons: Self) -> bool {
        prod.pos() == (cons.val & Self::field_mask(prod.log2))
    }

    /// Whether the queue is full: same index, different wrap (IHI 0070 §3.5).
    #[inline]
    pub const fn is_full(prod: Self, cons: Self) -> bool {
        prod.pos() ^ (cons.val & Self::field_mask(prod.log2)) == (1u32 << prod.log2)
    }

    /// Number of entries between `cons` and `prod` (written, not yet consumed).
    ///
    /// A pair that cannot occur (PROD behind CONS in the same wrap) is reported as full
    /// rather than as more entries than the queue holds.
    #[inline]
    pub const fn used(prod: Self, cons: Self) -> u32 {
        let mask = Self::field_mask(prod.log2);
        let d = prod.pos().wrapping_sub(cons.val & mask) & mask;
        let entries = prod.entries();
        if d > entries { entries } else { d }
    }

    /// Number of free slots: `entries - used` (IHI 0070 §3.5).
    #[inline]
    pub const fn free(prod: Self, cons: Self) -> u32 {
        prod.entries() - Self::used(prod, cons)
    }

    /// Whether the entry written at position `pos` has been consumed once CONS reads `cons`:
    /// same wrap and `index(cons) > index(pos)`, or different wrap and
    /// `index(cons) <= index(pos)` (the rule Linux uses to wait for a CMD_SYNC; IHI 0070 §4.1.4).
    #[inline]
    pub const fn has_consumed(cons: Self, pos: Self) -> bool {
        let cons_idx = cons.val & pos.index_mask();
        let cons_wrap = cons.val & (1u32 << pos.log2) != 0;
        if cons_wrap == pos.wrap() {
            cons_idx > pos.index()
        } else {
            cons_idx <= pos.index()
        }
    }
}

/// Bytes of a queue of `2^log2_entries` entries of `entry_size` bytes (IHI 0070 §3.5);
/// `usize::MAX` when that does not fit, so that an allocation of it fails.
#[inline]
pub const fn queue_bytes(log2_entries: u8, entry_size: usize) -> usize {
    match 1usize.checked_shl(log2_entries as u32) {
        Some(n) => n.saturating_mul(entry_size),
        None => usize::MAX,
    }
}

/// The LOG2SIZE to program for a queue: `want`, if it is at most `idr_max` (the
/// SMMU_IDR1.CMDQS/EVENTQS/PRIQS value) and at most [`MAX_LOG2`] (IHI 0070 §6.3.2, §6.3.26).
///
/// # Errors
/// [`Error::OutOfRange`] ([`Quantity::QueueLog2`], `max` the smaller limit) when `want` is
/// larger than either limit.
#[inline]
pub const fn check_log2(want: u8, idr_max: u8) -> Result<u8, Error> {
    let max = if idr_max < MAX_LOG2 {
        idr_max
    } else {
        MAX_LOG2
    };
    if want > max {
        Err(log2_out_of_range(want, max))
    } else {
        Ok(want)
    }
}

/// The error for a queue LOG2SIZE `log2` above `max`.
const fn log2_out_of_range(log2: u8, max: u8) -> Error {
    Error::OutOfRange {
        what: Quantity::QueueLog2,
        value: log2 as u64,
        max: max as u64,
    }
}

/// Size and layout of one queue in memory (IHI 0070 §3.5, §6.3.26): `2^log2_entries`
/// entries of `entry_size` bytes, naturally aligned to its byte size (at least 32 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct QueueGeometry {
    log2_entries: u8,
    entry_size: usize,
}

impl QueueGeometry {
    /// A geometry, or `None` when `log2_entries` exceeds [`MAX_LOG2`] or `entry_size` is zero.
    #[inline]
    pub const fn new(log2_entries: u8, entry_size: usize) -> Option<Self> {
        if log2_entries > MAX_LOG2 || entry_size == 0 {
            None
        } else {
            Some(Self {
                log2_entries,
                entry_size,
            })
        }
    }

    /// As [`new`](Self::new), refusing with an error: [`Error::OutOfRange`]
    /// ([`Quantity::QueueLog2`], at most [`MAX_LOG2`]) or, for a zero `entry_size`,
    /// [`Error::TooSmall`] ([`Quantity::Length`]).
    #[inline]
    pub const fn checked(log2_entries: u8, entry_size: usize) -> Result<Self, Error> {
        match Self::new(log2_entries, entry_size) {
            Some(g) => Ok(g),
            None if entry_size == 0 => Err(Error::TooSmall {
                what: Quantity::Length,
                value: 0,
                min: 1,
            }),
            None => Err(log2_out_of_range(log2_entries, MAX_LOG2)),
        }
    }

    /// A command queue of `2^log2_entries` 16-byte entries (IHI 0070 §4.1.1).
    #[inline]
    pub const fn cmdq(log2_entries: u8) -> Option<Self> {
        Self::new(log2_entries, CMDQ_ENTRY_BYTES)
    }

    /// An event queue of `2^log2_entries` 32-byte records (IHI 0070 §7.1).
    #[inline]
    pub const fn evtq(log2_entries: u8) -> Option<Self> {
        Self::new(log2_entries, EVTQ_ENTRY_BYTES)
    }

    /// A PRI queue of `2^log2_entries` 16-byte entries (IHI 0070 §8.1).
    #[inline]
    pub const fn priq(log2_entries: u8) -> Option<Self> {
        Self::new(log2_entries, PRIQ_ENTRY_BYTES)
    }

    /// The LOG2SIZE field value.
    #[inline]
    pub const fn log2_entries(self) -> u8 {
        self.log2_entries
    }

    /// Number of entries.
    #[inline]
    pub const fn entries(self) -> u32 {
        1u32 << self.log2_entries
    }

    /// Bytes of one entry.
    #[inline]
    pub const fn entry_size(self) -> usize {
        self.entry_size
    }

    /// Total bytes of the queue.
    #[inline]
    pub const fn bytes(self) -> usize {
        queue_bytes(self.log2_entries, self.entry_size)
    }

    /// Alignment the base address needs: the queue's byte size, at least 32 bytes
    /// (the SMMU ignores the low ADDR bits, IHI 0070 §6.3.26).
    #[inline]
    pub const fn align(self) -> usize {
        let b = self.bytes();
        if b < 32 { 32 } else { b }
    }

    /// Checks that `buf` can hold this queue: at least [`bytes`](Self::bytes) long, its SMMU
    /// address aligned to [`align`](Self::align) and its CPU address to one entry.
    ///
    /// # Errors
    /// [`Error::TooSmall`] ([`Quantity::Length`]) for a short buffer, [`Error::Misaligned`]
    /// ([`Quantity::Address`]) for either address.
    pub fn check_buffer(self, buf: &DmaBuf) -> Result<(), Error> {
        if buf.size < self.bytes() {
            return Err(Error::TooSmall {
                what: Quantity::Length,
                value: buf.size as u64,
                min: self.bytes() as u64,
            });
        }
        let misaligned = |value: u64, align: usize| Error::Misaligned {
            what: Quantity::Address,
            value,
            align: align as u64,
        };
        if !buf.paddr.is_aligned(self.align() as u64) {
            return Err(misaligned(buf.paddr.0, self.align()));
        }
        let va = buf.vaddr.as_ptr().addr();
        if !va.is_multiple_of(self.entry_size.next_power_of_two()) {
            return Err(misaligned(va as u64, self.entry_size.next_power_of_two()));
        }
        Ok(())
    }

    /// Byte offset of the slot `at` points to.
    #[inline]
    pub const fn offset_of(self, at: QueueIndex) -> usize {
        (at.index() as usize).saturating_mul(self.entry_size)
    }

    /// The zero PROD/CONS value of this queue.
    #[inline]
    pub const fn zero_index(self) -> QueueIndex {
        QueueIndex::from_reg(self.log2_entries, 0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn qi(log2: u8, raw: u32) -> QueueIndex {
        QueueIndex::new(log2, raw).unwrap()
    }

    #[test]
    fn new_rejects_large_log2_and_stray_bits() {
        assert!(QueueIndex::new(19, 0).is_some());
        assert!(QueueIndex::new(20, 0).is_none());
        // log2 4: index [3:0], wrap bit 4; bit 5 is not an index bit.
        assert!(QueueIndex::new(4, 0x1f).is_some());
        assert!(QueueIndex::new(4, 0x20).is_none());
        assert!(QueueIndex::new(4, 0x8000_001f).is_some());
        assert!(QueueIndex::new(4, 0x0100_0000).is_none());
    }

    #[test]
    fn from_reg_drops_err_keeps_ovf() {
        // CMDQ_CONS with ERR = CERROR_ILL (1 << 24), wrap set, index 5, log2 8.
        let c = QueueIndex::from_reg(8, (1 << 24) | (1 << 8) | 5);
        assert_eq!(c.index(), 5);
        assert!(c.wrap());
        assert!(!c.ovf());
        assert_eq!(c.to_reg(), 0x105);
        // ERR field fully set, plus OVF.
        let c = QueueIndex::from_reg(8, 0xff00_0003);
        assert_eq!(c.to_reg(), 0x8000_0003);
        assert!(c.ovf());
        // log2 19: wrap is bit 19, bits [23:20] dropped.
        let c = QueueIndex::from_reg(19, 0x00f8_0001);
        assert_eq!(c.to_reg(), 0x0008_0001);
        assert!(c.wrap());
        assert_eq!(c.index(), 1);
        // log2 above 19 is taken as 19.
        assert_eq!(QueueIndex::from_reg(25, 0x00ff_ffff).log2_entries(), 19);
        assert_eq!(QueueIndex::from_reg(25, 0x00ff_ffff).to_reg(), 0x000f_ffff);
    }

    #[test]
    fn log2_zero_queue() {
        // One entry: index always 0, wrap is bit 0.
        let p0 = qi(0, 0);
        assert_eq!(p0.entries(), 1);
        let p1 = p0.next();
        assert_eq!(p1.to_reg(), 1);
        assert_eq!(p1.index(), 0);
        assert!(p1.wrap());
        assert_eq!(p1.next().to_reg(), 0);
        assert!(QueueIndex::is_empty(p0, p0));
        assert!(QueueIndex::is_full(p1, p0));
        assert!(QueueIndex::is_full(p0, p1));
        assert_eq!(QueueIndex::used(p1, p0), 1);
        assert_eq!(QueueIndex::free(p1, p0), 0);
        assert_eq!(QueueIndex::free(p0, p0), 1);
        assert!(QueueIndex::has_consumed(p1, p0));
        assert!(!QueueIndex::has_consumed(p0, p0));
    }

    #[test]
    fn log2_nineteen_queue() {
        let last = qi(19, 0x7_ffff);
        assert_eq!(last.entries(), 1 << 19);
        assert_eq!(last.index(), 0x7_ffff);
        assert!(!last.wrap());
        let w = last.next();
        assert_eq!(w.to_reg(), 0x8_0000);
        assert!(w.wrap());
        assert_eq!(w.index(), 0);
        let back = qi(19, 0xf_ffff).with_ovf(true).next();
        assert_eq!(back.to_reg(), 0x8000_0000);
        let zero = qi(19, 0);
        assert!(QueueIndex::is_full(w, zero));
        assert_eq!(QueueIndex::used(last, zero), 0x7_ffff);
        assert_eq!(QueueIndex::free(last, zero), 1);
    }

    #[test]
    fn full_is_prod_equals_cons_plus_size() {
        for log2 in [0u8, 1, 3, 8, 19] {
            for start in [0u32, 1, 5] {
                let cons = QueueIndex::from_reg(log2, start);
                let prod = cons.add(1 << log2);
                assert!(QueueIndex::is_full(prod, cons), "log2 {log2} start {start}");
                assert!(!QueueIndex::is_empty(prod, cons));
                assert_eq!(prod.index(), cons.index());
                assert_ne!(prod.wrap(), cons.wrap());
                assert_eq!(QueueIndex::used(prod, cons), 1 << log2);
                assert_eq!(QueueIndex::free(prod, cons), 0);
            }
        }
    }

    #[test]
    fn empty_and_both_wrap_states() {
        // log2 3 (8 entries).
        let p = qi(3, 0b0_101);
        let c = qi(3, 0b0_010);
        assert_eq!(QueueIndex::used(p, c), 3);
        assert_eq!(QueueIndex::free(p, c), 5);
        // PROD wrapped, CONS not: index(C) - index(P) free.
        let p = qi(3, 0b1_001);
        let c = qi(3, 0b0_110);
        assert_eq!(QueueIndex::used(p, c), 3);
        assert_eq!(QueueIndex::free(p, c), 5);
        // Both wrapped.
        let p = qi(3, 0b1_111);
        let c = qi(3, 0b1_111);
        assert!(QueueIndex::is_empty(p, c));
        assert_eq!(QueueIndex::free(p, c), 8);
        // CONS wrapped, PROD wrapped back to 0.
        let p = qi(3, 0b0_010);
        let c = qi(3, 0b1_110);
        assert_eq!(QueueIndex::used(p, c), 4);
        assert!(!QueueIndex::is_full(p, c));
        // Flags do not affect the comparisons.
        assert!(QueueIndex::is_empty(
            qi(3, 0x8000_0004),
            QueueIndex::from_reg(3, 0x7f00_0004)
        ));
        // Impossible pair (PROD behind CONS in the same wrap) reads as full, not more.
        assert_eq!(QueueIndex::used(qi(3, 1), qi(3, 3)), 8);
        assert_eq!(QueueIndex::free(qi(3, 1), qi(3, 3)), 0);
    }

    #[test]
    fn add_wraps_modulo_twice_size() {
        let q = qi(4, 14);
        assert_eq!(q.add(1).to_reg(), 15);
        assert_eq!(q.add(2).to_reg(), 16); // wrap set, index 0
        assert_eq!(q.add(17).to_reg(), 31);
        assert_eq!(q.add(18).to_reg(), 0); // wrap toggles back
        assert_eq!(q.add(32).to_reg(), 14);
        assert_eq!(q.add(u32::MAX).to_reg(), 13);
        assert_eq!(q.with_ovf(true).add(18).to_reg(), 0x8000_0000);
        assert!(q.with_ovf(true).ovf());
        assert!(!q.with_ovf(true).with_ovf(false).ovf());
    }

    #[test]
    fn has_consumed_rule() {
        let pos = qi(3, 0b0_100);
        assert!(!QueueIndex::has_consumed(qi(3, 0b0_011), pos));
        assert!(!QueueIndex::has_consumed(qi(3, 0b0_100), pos));
        assert!(QueueIndex::has_consumed(qi(3, 0b0_101), pos));
        assert!(QueueIndex::has_consumed(qi(3, 0b1_000), pos));
        assert!(QueueIndex::has_consumed(qi(3, 0b1_100), pos));
        assert!(!QueueIndex::has_consumed(qi(3, 0b1_101), pos));
        // Position in the wrapped half.
        let pos = qi(3, 0b1_001);
        assert!(!QueueIndex::has_consumed(qi(3, 0b0_111), pos));
        assert!(QueueIndex::has_consumed(qi(3, 0b1_010), pos));
        assert!(QueueIndex::has_consumed(qi(3, 0b0_000), pos));
        // CONS.ERR bits don't matter.
        assert!(QueueIndex::has_consumed(
            QueueIndex::from_reg(3, 0x0100_0000 | 0b1_010),
            pos
        ));
    }

    #[test]
    fn sizes_and_check_log2() {
        assert_eq!(queue_bytes(0, 16), 16);
        assert_eq!(queue_bytes(8, 16), 4096);
        assert_eq!(queue_bytes(19, 32), 16 << 20);
        assert_eq!(queue_bytes(200, 16), usize::MAX);
        let g = QueueGeometry::cmdq(0).unwrap();
        assert_eq!((g.bytes(), g.align()), (16, 32));
        let g = QueueGeometry::evtq(7).unwrap();
        assert_eq!((g.entries(), g.bytes(), g.align()), (128, 4096, 4096));
        assert_eq!(g.offset_of(QueueIndex::from_reg(7, 0x83)), 3 * 32);
        assert_eq!(g.zero_index().log2_entries(), 7);
        assert!(QueueGeometry::priq(20).is_none());
        assert!(QueueGeometry::new(4, 0).is_none());
        assert_eq!(check_log2(8, 19), Ok(8));
        assert_eq!(check_log2(19, 19), Ok(19));
        assert_eq!(check_log2(0, 0), Ok(0));
        let over = |value, max| Error::OutOfRange {
            what: Quantity::QueueLog2,
            value,
            max,
        };
        // The limit reported is the smaller of IDR1's and the architecture's.
        assert_eq!(check_log2(9, 8), Err(over(9, 8)));
        assert_eq!(check_log2(20, 25), Err(over(20, 19)));
        assert_eq!(check_log2(20, 25).map_err(Error::errno), Err(-22));
        assert_eq!(QueueGeometry::checked(20, 16), Err(over(20, 19)));
        assert_eq!(
            QueueGeometry::checked(4, 0),
            Err(Error::TooSmall {
                what: Quantity::Length,
                value: 0,
                min: 1
            })
        );
        assert_eq!(QueueGeometry::checked(7, 32).ok(), QueueGeometry::evtq(7));
    }

    /// A buffer that cannot hold the queue is refused with what is wrong: its size against the
    /// queue's, or the address against the alignment it needs.
    #[test]
    fn check_buffer_names_the_size_or_the_address() {
        #[repr(C, align(4096))]
        struct Page([u8; 4096]);
        let mut page = Page([0; 4096]);
        let vaddr = core::ptr::NonNull::from(&mut page.0).cast::<u8>();
        let buf = |vaddr, paddr, size| DmaBuf {
            vaddr,
            paddr: crate::ids::PhysAddr(paddr),
            size,
        };
        // 2^7 event records of 32 bytes: 4 KiB, aligned to 4 KiB.
        let g = QueueGeometry::evtq(7).unwrap();
        assert_eq!(g.check_buffer(&buf(vaddr, 0x8000_0000, 4096)), Ok(()));
        assert_eq!(
            g.check_buffer(&buf(vaddr, 0x8000_0000, 4095)),
            Err(Error::TooSmall {
                what: Quantity::Length,
                value: 4095,
                min: 4096
            })
        );
        assert_eq!(
            g.check_buffer(&buf(vaddr, 0x8000_0800, 4096)),
            Err(Error::Misaligned {
                what: Quantity::Address,
                value: 0x8000_0800,
                align: 4096
            })
        );
        // The CPU's address needs one record's alignment (the driver reads whole records).
        // SAFETY: 16 bytes into the 4 KiB page.
        let odd = unsafe { vaddr.add(16) };
        assert_eq!(
            g.check_buffer(&buf(odd, 0x8000_0000, 4096)),
            Err(Error::Misaligned {
                what: Quantity::Address,
                value: odd.as_ptr().addr() as u64,
                align: 32
            })
        );
        assert_eq!(
            QueueGeometry::cmdq(0)
                .unwrap()
                .check_buffer(&buf(odd, 0x20, 16)),
            Ok(()),
            "a one-slot command queue: 16 bytes, SMMU address aligned to 32"
        );
    }

    /// A model of a queue: PROD and CONS as unbounded counters.
    fn model(log2: u8, cons_count: u64, used: u64) -> (QueueIndex, QueueIndex) {
        let m = (2u64 << log2) - 1;
        let c = QueueIndex::from_reg(log2, (cons_count & m) as u32);
        let p = QueueIndex::from_reg(log2, ((cons_count + used) & m) as u32);
        (p, c)
    }

    proptest! {
        #[test]
        fn prop_used_free_match_counters(log2 in 0u8..=19, cons in any::<u32>(), frac in 0.0f64..=1.0) {
            let entries = 1u64 << log2;
            let used = ((entries as f64) * frac) as u64;
            let used = used.min(entries);
            let (p, c) = model(log2, u64::from(cons), used);
            prop_assert_eq!(u64::from(QueueIndex::used(p, c)), used);
            prop_assert_eq!(u64::from(QueueIndex::free(p, c)), entries - used);
            prop_assert_eq!(QueueIndex::is_empty(p, c), used == 0);
            prop_assert_eq!(QueueIndex::is_full(p, c), used == entries);
        }

        #[test]
        fn prop_add_is_modular(log2 in 0u8..=19, raw in any::<u32>(), a in any::<u32>(), b in any::<u32>()) {
            let q = QueueIndex::from_reg(log2, raw);
            prop_assert_eq!(q.add(a).add(b), q.add(a.wrapping_add(b)));
            prop_assert_eq!(q.add(2u32 << log2), q);
            prop_assert_eq!(q.add(a).ovf(), q.ovf());
            prop_assert!(q.add(a).index() < q.entries());
            let mut s = q;
            for _ in 0..(a % 70) { s = s.next(); }
            prop_assert_eq!(s, q.add(a % 70));
            prop_assert_eq!(QueueIndex::new(log2, q.to_reg()), Some(q));
        }

        #[test]
        fn prop_has_consumed_matches_counters(log2 in 0u8..=19, base in any::<u32>(), pos_off in any::<u64>(), cons_off in any::<u64>()) {
            // The entry sits `pos_off` after some origin; CONS has advanced `cons_off` from the
            // same origin, with at most one queue's worth of distance between them.
            let entries = 1u64 << log2;
            let pos_off = pos_off % entries;
            let cons_off = cons_off % (entries + 1);
            let m = (2u64 << log2) - 1;
            let at = |off: u64| QueueIndex::from_reg(log2, ((u64::from(base) + off) & m) as u32);
            prop_assert_eq!(QueueIndex::has_consumed(at(cons_off), at(pos_off)), cons_off > pos_off);
        }

        #[test]
        fn prop_from_reg_never_panics(log2 in any::<u8>(), reg in any::<u32>(), n in any::<u32>()) {
            let q = QueueIndex::from_reg(log2, reg);
            let r = q.add(n);
            prop_assert_eq!(r.to_reg() & 0x7ff0_0000, 0);
            prop_assert!(QueueIndex::used(q, r) <= q.entries());
            let _ = QueueIndex::has_consumed(q, r);
            let _ = QueueIndex::new(log2, reg);
        }
    }
}
