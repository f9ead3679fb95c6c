//! The routing table the IRQ path reads: physical StreamID → (vIOMMU, virtual StreamID).
//!
//! Fixed size (`S` slots, a power of two) cut into buckets of [`BUCKET`] slots. A StreamID may
//! live in one of two buckets (two hash functions; an insert takes the emptier one), and
//! nowhere else: a lookup reads at most `2 * BUCKET` slots, a miss included, whatever routes came
//! and went before. There are no probe chains, so a removal simply empties its slot (no
//! tombstones) and an entry never moves once written.
//!
//! Each slot is a sequence lock over atomics: a writer makes the sequence odd, stores the key and
//! the route, makes it even again; a reader that finds its key loads the sequence, the key, the
//! route, the sequence again, and retries (a bounded number of times) if it changed or was odd.
//! Readers never block and never see a torn entry; writers (vDEVICE alloc/attach/detach, vIOMMU
//! teardown) are serialised by the caller and never wait for readers. Checked by `loom`.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::sync::{AtomicU32, AtomicU64, Ordering, fence, spin_hint};
use crate::error::{Error, Object};
use crate::ids::{StreamId, VStreamId};

/// How often a reader retries a slot a writer is changing before giving up on this record.
pub const READ_RETRIES: u32 = 16;

/// Slots per bucket (two cache lines of 16-byte slots).
pub const BUCKET: usize = 8;

/// Where the IRQ path sends the records of one physical StreamID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Route {
    /// Index of the vIOMMU in its [`Router`](super::Router).
    pub viommu: u16,
    /// The vDEVICE's virtual StreamID, written into forwarded records.
    pub vsid: VStreamId,
    /// The device is attached to a nested STE of this vIOMMU (Linux's "vmaster"): only then are
    /// its events forwarded.
    pub attached: bool,
}

/// Largest vIOMMU index a [`Route`] can carry.
pub const MAX_VIOMMUS: usize = 0xffff;

/// `val` word: bits `[31:0]` vSID, bits `[47:32]` vIOMMU index, bit 62 attached, bit 63 used.
const USED: u64 = 1 << 63;
const ATTACHED: u64 = 1 << 62;

impl Route {
    const fn val(self) -> u64 {
        USED | ((self.viommu as u64) << 32)
            | self.vsid.0 as u64
            | if self.attached { ATTACHED } else { 0 }
    }

    const fn from_val(val: u64) -> Option<Self> {
        if val & USED == 0 {
            return None;
        }
        Some(Self {
            viommu: (val >> 32) as u16,
            vsid: VStreamId(val as u32),
            attached: val & ATTACHED != 0,
        })
    }
}

/// Result of a lock-free [`RoutingTable::lookup`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Lookup {
    /// The StreamID has a route.
    Found(Route),
    /// The StreamID has no route.
    Absent,
    /// A writer kept changing the StreamID's slot for [`READ_RETRIES`] reads.
    Busy,
}

struct Slot {
    seq: AtomicU32,
    key: AtomicU32,
    val: AtomicU64,
}

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            key: AtomicU32::new(0),
            val: AtomicU64::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            key: AtomicU32::new(0),
            val: AtomicU64::new(0),
        }
    }

    /// Seqlock read of (key, val); `None` after too many retries.
    #[inline]
    fn read(&self) -> Option<(u32, u64)> {
        for _ in 0..READ_RETRIES {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let key = self.key.load(Ordering::Relaxed);
                let val = self.val.load(Ordering::Relaxed);
                // Acquire fence: the field loads above happen before the second sequence load,
                // so if it still reads `s1` no writer's stores were mixed in.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s1 {
                    return Some((key, val));
                }
            }
            spin_hint();
        }
        None
    }

    /// Seqlock write; writers are serialised by the caller.
    fn write(&self, key: u32, val: u64) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // Release fence: a reader that sees any field store below also sees the odd sequence.
        fence(Ordering::Release);
        self.key.store(key, Ordering::Relaxed);
        self.val.store(val, Ordering::Relaxed);
        // Release: the field stores happen before a reader's Acquire load of the even sequence.
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The fields as the (serialised) writer left them.
    fn peek(&self) -> (u32, u64) {
        (
            self.key.load(Ordering::Relaxed),
            self.val.load(Ordering::Relaxed),
        )
    }

    fn holds(&self, psid: StreamId) -> bool {
        let (key, val) = self.peek();
        val & USED != 0 && key == psid.0
    }
}

/// A fixed-size map from physical StreamID to [`Route`], read lock-free by the IRQ path.
///
/// `S` must be a power of two. Reads ([`lookup`](Self::lookup)) may run on any number of CPUs at
/// once; writes ([`insert`](Self::insert), [`update`](Self::update), [`remove`](Self::remove))
/// must be serialised by the caller (the [`Router`](super::Router) holds a lock for them). An
/// insert fails with [`Error::NoSpace`] when both of the StreamID's buckets are full, which two
/// choices make unlikely below three quarters full.
pub struct RoutingTable<const S: usize> {
    slots: [Slot; S],
}

impl<const S: usize> Default for RoutingTable<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const S: usize> RoutingTable<S> {
    const SIZE_OK: () = assert!(
        S.is_power_of_two() && S <= 1 << 20,
        "RoutingTable size must be a power of two"
    );
    const BUCKET_LEN: usize = if S < BUCKET { S } else { BUCKET };
    const BUCKETS: usize = S / Self::BUCKET_LEN;

    /// An empty table.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::SIZE_OK;
        Self {
            slots: [const { Slot::new() }; S],
        }
    }

    /// An empty table (loom build).
    #[cfg(loom)]
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::SIZE_OK;
        Self {
            slots: core::array::from_fn(|_| Slot::new()),
        }
    }

    /// The StreamID's two buckets (the same one twice in a one-bucket table).
    #[inline]
    fn buckets(psid: StreamId) -> [usize; 2] {
        // Multiplicative hashing spreads the PCI BDF layout (bus in the high bits) over the
        // table; the two multipliers are odd and unrelated.
        let h1 = psid.0.wrapping_mul(0x9e37_79b1);
        let h2 = psid.0.wrapping_mul(0x85eb_ca6b) ^ (psid.0 >> 15);
        let mask = Self::BUCKETS - 1;
        let b1 = (h1 >> 16) as usize & mask;
        let mut b2 = (h2 >> 16) as usize & mask;
        if b2 == b1 {
            b2 = (b1 + 1) & mask;
        }
        [b1, b2]
    }

    #[inline]
    fn bucket(&self, b: usize) -> &[Slot] {
        let start = b * Self::BUCKET_LEN;
        self.slots
            .get(start..start + Self::BUCKET_LEN)
            .unwrap_or(&[])
    }

    /// The slots a StreamID may be in: at most `2 * BUCKET`.
    #[inline]
    fn candidates(&self, psid: StreamId) -> impl Iterator<Item = &Slot> {
        let [b1, b2] = Self::buckets(psid);
        let second = if b2 == b1 { &[][..] } else { self.bucket(b2) };
        self.bucket(b1).iter().chain(second)
    }

    /// The route of `psid` (IRQ path: lock-free; at most `2 * BUCKET` key loads and
    /// [`READ_RETRIES`] reads of the matching slot).
    #[inline]
    pub fn lookup(&self, psid: StreamId) -> Lookup {
        self.lookup_counted(psid, &mut 0)
    }

    /// [`lookup`](Self::lookup), adding the number of slots read to `probes`.
    #[inline]
    fn lookup_counted(&self, psid: StreamId, probes: &mut usize) -> Lookup {
        for slot in self.candidates(psid) {
            *probes += 1;
            // A cheap filter: a slot whose key is not ours now is treated as read before any
            // writer put our key there.
            if slot.key.load(Ordering::Relaxed) != psid.0 {
                continue;
            }
            let Some((key, val)) = slot.read() else {
                return Lookup::Busy;
            };
            if key == psid.0
                && let Some(r) = Route::from_val(val)
            {
                return Lookup::Found(r);
            }
        }
        Lookup::Absent
    }

    /// The route of `psid` as the writers left it (control path, serialised with writers).
    pub fn get(&self, psid: StreamId) -> Option<Route> {
        self.find(psid)
            .and_then(|slot| Route::from_val(slot.peek().1))
    }

    fn find(&self, psid: StreamId) -> Option<&Slot> {
        self.candidates(psid).find(|s| s.holds(psid))
    }

    /// Adds a route. [`Error::AlreadyExists`] if `psid` has one, [`Error::NoSpace`] if both of its
    /// buckets are full.
    pub fn insert(&self, psid: StreamId, route: Route) -> Result<(), Error> {
        if self.find(psid).is_some() {
            return Err(Error::AlreadyExists(Object::Stream(psid)));
        }
        let [b1, b2] = Self::buckets(psid);
        let used = |b: usize| {
            self.bucket(b)
                .iter()
                .filter(|s| s.peek().1 & USED != 0)
                .count()
        };
        let first = if used(b2) < used(b1) { b2 } else { b1 };
        let slot = [first, b1 ^ b2 ^ first]
            .into_iter()
            .flat_map(|b| self.bucket(b))
            .find(|s| s.peek().1 & USED == 0)
            .ok_or(Error::NoSpace)?;
        slot.write(psid.0, route.val());
        Ok(())
    }

    /// Replaces the route of `psid`; [`Error::NoSuch`] if it has none.
    pub fn update(&self, psid: StreamId, route: Route) -> Result<(), Error> {
        let slot = self.find(psid).ok_or(Error::NoSuch(Object::Stream(psid)))?;
        slot.write(psid.0, route.val());
        Ok(())
    }

    /// Removes the route of `psid` and returns it.
    pub fn remove(&self, psid: StreamId) -> Option<Route> {
        let slot = self.find(psid)?;
        let (_, val) = slot.peek();
        slot.write(psid.0, 0);
        Route::from_val(val)
    }

    /// Every route, for the control path (serialised with writers).
    pub fn for_each(&self, mut f: impl FnMut(StreamId, Route)) {
        for slot in &self.slots {
            let (key, val) = slot.peek();
            if let Some(r) = Route::from_val(val) {
                f(StreamId(key), r);
            }
        }
    }
}

/// An attached route of vIOMMU `v` to `vsid`, for the tests and the loom models.
#[cfg(test)]
fn route(v: u16, vsid: u32) -> Route {
    Route {
        viommu: v,
        vsid: VStreamId(vsid),
        attached: true,
    }
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn insert_lookup_remove() {
        let t: RoutingTable<8> = RoutingTable::new();
        assert_eq!(t.lookup(StreamId(5)), Lookup::Absent);
        t.insert(StreamId(5), route(1, 0x50)).unwrap();
        assert_eq!(
            t.insert(StreamId(5), route(2, 0x51)),
            Err(Error::AlreadyExists(Object::Stream(StreamId(5))))
        );
        assert_eq!(t.lookup(StreamId(5)), Lookup::Found(route(1, 0x50)));
        assert_eq!(t.remove(StreamId(5)), Some(route(1, 0x50)));
        assert_eq!(t.lookup(StreamId(5)), Lookup::Absent);
        assert_eq!(t.remove(StreamId(5)), None);
        assert_eq!(
            t.update(StreamId(5), route(1, 0x50)),
            Err(Error::NoSuch(Object::Stream(StreamId(5))))
        );
    }

    #[test]
    fn full_table_and_slot_reuse() {
        let t: RoutingTable<4> = RoutingTable::new();
        for i in 0..4 {
            t.insert(StreamId(i * 7), route(0, i)).unwrap();
        }
        assert_eq!(t.insert(StreamId(99), route(0, 9)), Err(Error::NoSpace));
        // Absent keys are still answered in bounded time with no empty slot left.
        assert_eq!(t.lookup(StreamId(99)), Lookup::Absent);
        t.remove(StreamId(7)).unwrap();
        t.insert(StreamId(99), route(0, 9)).unwrap();
        for i in [0, 2, 3] {
            assert_eq!(t.lookup(StreamId(i * 7)), Lookup::Found(route(0, i)));
        }
        assert_eq!(t.lookup(StreamId(99)), Lookup::Found(route(0, 9)));
    }

    #[test]
    fn route_word_round_trips() {
        for (v, a) in [(0u16, false), (MAX_VIOMMUS as u16, true), (7, true)] {
            let r = Route {
                viommu: v,
                vsid: VStreamId(u32::MAX),
                attached: a,
            };
            assert_eq!(Route::from_val(r.val()), Some(r));
        }
        assert_eq!(Route::from_val(0), None);
    }

    /// A miss reads a small constant number of slots whatever the table went through: 4,000
    /// StreamIDs come and go through a table of 64 routes holding 32.
    #[test]
    fn miss_is_bounded_after_churn() {
        let t: RoutingTable<64> = RoutingTable::new();
        for i in 0..32 {
            t.insert(StreamId(0x10_0000 + i), route(0, i)).unwrap();
        }
        for i in 0..4000u32 {
            t.insert(StreamId(i), route(1, i)).unwrap();
            assert_eq!(t.remove(StreamId(i)).map(|r| r.vsid), Some(VStreamId(i)));
        }
        let mut worst = 0;
        for k in 0..1000u32 {
            let mut probes = 0;
            assert_eq!(
                t.lookup_counted(StreamId(0x20_0000 + k), &mut probes),
                Lookup::Absent
            );
            worst = worst.max(probes);
        }
        assert!(worst <= 16, "a miss read {worst} slots");
        for i in 0..32 {
            assert_eq!(
                t.lookup(StreamId(0x10_0000 + i)),
                Lookup::Found(route(0, i))
            );
        }
    }

    proptest! {
        /// The table behaves like a map under any sequence of inserts and removes.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((any::<bool>(), 0u32..24, 0u32..1000), 0..200)) {
            let t: RoutingTable<16> = RoutingTable::new();
            let mut model = std::collections::BTreeMap::new();
            for (ins, sid, vsid) in ops {
                let sid = StreamId(sid * 0x100);
                if ins {
                    let res = t.insert(sid, route(1, vsid));
                    if model.contains_key(&sid.0) {
                        prop_assert_eq!(res, Err(Error::AlreadyExists(Object::Stream(sid))));
                    } else if model.len() == 16 {
                        prop_assert_eq!(res, Err(Error::NoSpace));
                    } else {
                        prop_assert_eq!(res, Ok(()));
                        model.insert(sid.0, vsid);
                    }
                } else {
                    prop_assert_eq!(t.remove(sid).map(|r| r.vsid.0), model.remove(&sid.0));
                }
                for k in 0..24u32 {
                    let k = k * 0x100;
                    let want = model.get(&k).map(|v| Lookup::Found(route(1, *v))).unwrap_or(Lookup::Absent);
                    prop_assert_eq!(t.lookup(StreamId(k)), want);
                }
            }
        }
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A reader racing a detach and a re-attach of the same StreamID to another vIOMMU sees one
    /// of the three states whole, never a mix (vIOMMU of one, vSID of the other).
    #[test]
    fn reader_never_sees_torn_route() {
        crate::viommu::sync::model("reader_never_sees_torn_route", || {
            let t = Arc::new(RoutingTable::<2>::new());
            t.insert(StreamId(4), route(1, 0x10)).ok();
            let reader = {
                let t = t.clone();
                loom::thread::spawn(move || t.lookup(StreamId(4)))
            };
            t.remove(StreamId(4));
            t.insert(StreamId(4), route(2, 0x20)).ok();
            match reader.join().unwrap_or(Lookup::Busy) {
                Lookup::Found(r) => assert!(r == route(1, 0x10) || r == route(2, 0x20)),
                Lookup::Absent | Lookup::Busy => {}
            }
        });
    }

    /// A route that existed before the reader started and is not touched is always found, even
    /// while a writer changes another slot on its probe path.
    #[test]
    fn untouched_route_always_found() {
        crate::viommu::sync::model("untouched_route_always_found", || {
            let t = Arc::new(RoutingTable::<2>::new());
            t.insert(StreamId(0), route(0, 1)).ok();
            t.insert(StreamId(1), route(0, 2)).ok();
            let reader = {
                let t = t.clone();
                loom::thread::spawn(move || (t.lookup(StreamId(0)), t.lookup(StreamId(1))))
            };
            // Changes the other key's slot (and thereby possibly a slot on either probe path).
            t.update(StreamId(1), route(0, 3)).ok();
            let (a, b) = reader.join().unwrap_or((Lookup::Busy, Lookup::Busy));
            assert!(a == Lookup::Found(route(0, 1)) || a == Lookup::Busy);
            assert!(
                b == Lookup::Found(route(0, 2))
                    || b == Lookup::Found(route(0, 3))
                    || b == Lookup::Busy
            );
        });
    }
}
