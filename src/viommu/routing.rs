//! The routing table the IRQ path reads: physical StreamID → (vIOMMU, virtual StreamID).
//!
//! Fixed size (`S` slots, a power of two), open addressing with linear probing and tombstones, so
//! an entry never moves once written. Each slot is a sequence lock over atomics: a writer makes
//! the sequence odd, stores the fields, makes it even again; a reader loads the sequence, the
//! fields, the sequence again and retries (a bounded number of times) if it changed or was odd.
//! Readers therefore never block and never see a torn entry; writers (vDEVICE attach/detach,
//! vIOMMU teardown) are serialised by the caller and never wait for readers. Checked by `loom`.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::sync::{AtomicU32, Ordering, fence, spin_hint};
use crate::error::Error;
use crate::ids::{StreamId, VStreamId};

/// How often a reader retries a slot a writer is changing before giving up on this record.
pub const READ_RETRIES: u32 = 16;

/// Where the IRQ path sends the records of one physical StreamID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Route {
    /// Index of the vIOMMU in its [`Router`](super::Router).
    pub viommu: u16,
    /// Generation of that vIOMMU slot when the route was made (15 bits); a record whose route
    /// names an older generation belongs to a vIOMMU that was torn down and is not delivered.
    pub generation: u16,
    /// The vDEVICE's virtual StreamID, written into forwarded records.
    pub vsid: VStreamId,
    /// The device is attached to a nested STE of this vIOMMU (Linux's "vmaster"): only then are
    /// its events forwarded.
    pub attached: bool,
}

/// Largest vIOMMU index a [`Route`] can carry.
pub const MAX_VIOMMUS: usize = 0xfffd;
/// Generations wrap at 15 bits.
pub const GENERATION_MASK: u16 = 0x7fff;

const META_EMPTY: u32 = 0;
const META_TOMBSTONE: u32 = 1;
const META_ATTACHED: u32 = 1 << 31;

impl Route {
    const fn meta(self) -> u32 {
        (self.viommu as u32 + 2)
            | (((self.generation & GENERATION_MASK) as u32) << 16)
            | if self.attached { META_ATTACHED } else { 0 }
    }

    const fn from_meta(meta: u32, vsid: u32) -> Option<Self> {
        let idx = meta & 0xffff;
        if idx < 2 {
            return None;
        }
        Some(Self {
            viommu: (idx - 2) as u16,
            generation: ((meta >> 16) as u16) & GENERATION_MASK,
            vsid: VStreamId(vsid),
            attached: meta & META_ATTACHED != 0,
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
    /// A writer kept changing a slot on the probe path for [`READ_RETRIES`] reads.
    Busy,
}

struct Slot {
    seq: AtomicU32,
    psid: AtomicU32,
    meta: AtomicU32,
    vsid: AtomicU32,
}

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            psid: AtomicU32::new(0),
            meta: AtomicU32::new(META_EMPTY),
            vsid: AtomicU32::new(0),
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Self {
            seq: AtomicU32::new(0),
            psid: AtomicU32::new(0),
            meta: AtomicU32::new(META_EMPTY),
            vsid: AtomicU32::new(0),
        }
    }

    /// Seqlock read of (psid, meta, vsid); `None` after too many retries.
    #[inline]
    fn read(&self) -> Option<(u32, u32, u32)> {
        for _ in 0..READ_RETRIES {
            let s1 = self.seq.load(Ordering::Acquire);
            if s1 & 1 == 0 {
                let psid = self.psid.load(Ordering::Relaxed);
                let meta = self.meta.load(Ordering::Relaxed);
                let vsid = self.vsid.load(Ordering::Relaxed);
                // Acquire fence: the field loads above happen before the second sequence load,
                // so if it still reads `s1` no writer's stores were mixed in.
                fence(Ordering::Acquire);
                if self.seq.load(Ordering::Relaxed) == s1 {
                    return Some((psid, meta, vsid));
                }
            }
            spin_hint();
        }
        None
    }

    /// Seqlock write; writers are serialised by the caller.
    fn write(&self, psid: u32, meta: u32, vsid: u32) {
        let s = self.seq.load(Ordering::Relaxed);
        self.seq.store(s.wrapping_add(1), Ordering::Relaxed);
        // Release fence: a reader that sees any field store below also sees the odd sequence.
        fence(Ordering::Release);
        self.psid.store(psid, Ordering::Relaxed);
        self.meta.store(meta, Ordering::Relaxed);
        self.vsid.store(vsid, Ordering::Relaxed);
        // Release: the field stores happen before a reader's Acquire load of the even sequence.
        self.seq.store(s.wrapping_add(2), Ordering::Release);
    }

    /// The fields as the (serialised) writer left them.
    fn peek(&self) -> (u32, u32, u32) {
        (
            self.psid.load(Ordering::Relaxed),
            self.meta.load(Ordering::Relaxed),
            self.vsid.load(Ordering::Relaxed),
        )
    }
}

/// A fixed-size map from physical StreamID to [`Route`], read lock-free by the IRQ path.
///
/// `S` must be a power of two. Reads ([`lookup`](Self::lookup)) may run on any number of CPUs at
/// once; writes ([`insert`](Self::insert), [`update`](Self::update), [`remove`](Self::remove))
/// must be serialised by the caller (the [`Router`](super::Router) holds a lock for them).
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

    #[inline]
    fn home(psid: StreamId) -> usize {
        // Fibonacci hashing spreads the PCI BDF layout (bus in the high bits) over the table.
        (psid.0.wrapping_mul(0x9e37_79b1) >> 12) as usize & (S - 1)
    }

    #[inline]
    fn probe(&self, psid: StreamId) -> impl Iterator<Item = &Slot> {
        let home = Self::home(psid);
        (0..S).filter_map(move |i| self.slots.get((home + i) & (S - 1)))
    }

    /// The route of `psid` (IRQ path: lock-free, bounded by `S * READ_RETRIES` slot reads).
    pub fn lookup(&self, psid: StreamId) -> Lookup {
        for slot in self.probe(psid) {
            let Some((key, meta, vsid)) = slot.read() else {
                return Lookup::Busy;
            };
            match meta {
                META_EMPTY => return Lookup::Absent,
                META_TOMBSTONE => continue,
                _ if key == psid.0 => {
                    return match Route::from_meta(meta, vsid) {
                        Some(r) => Lookup::Found(r),
                        None => Lookup::Absent,
                    };
                }
                _ => continue,
            }
        }
        Lookup::Absent
    }

    /// The route of `psid` as the writers left it (control path, serialised with writers).
    pub fn get(&self, psid: StreamId) -> Option<Route> {
        self.find(psid).and_then(|slot| {
            let (_, meta, vsid) = slot.peek();
            Route::from_meta(meta, vsid)
        })
    }

    fn find(&self, psid: StreamId) -> Option<&Slot> {
        for slot in self.probe(psid) {
            let (key, meta, _) = slot.peek();
            match meta {
                META_EMPTY => return None,
                META_TOMBSTONE => continue,
                _ if key == psid.0 => return Some(slot),
                _ => continue,
            }
        }
        None
    }

    /// Adds a route. [`Error::Exists`] if `psid` has one, [`Error::NoSpace`] if the table is
    /// full, [`Error::InvalidArgument`] for a vIOMMU index above [`MAX_VIOMMUS`].
    pub fn insert(&self, psid: StreamId, route: Route) -> Result<(), Error> {
        if route.viommu as usize > MAX_VIOMMUS {
            return Err(Error::InvalidArgument);
        }
        let mut free = None;
        for slot in self.probe(psid) {
            let (key, meta, _) = slot.peek();
            match meta {
                META_EMPTY => {
                    free = free.or(Some(slot));
                    break;
                }
                META_TOMBSTONE => free = free.or(Some(slot)),
                _ if key == psid.0 => return Err(Error::Exists),
                _ => {}
            }
        }
        let slot = free.ok_or(Error::NoSpace)?;
        slot.write(psid.0, route.meta(), route.vsid.0);
        Ok(())
    }

    /// Replaces the route of `psid`; [`Error::NotFound`] if it has none.
    pub fn update(&self, psid: StreamId, route: Route) -> Result<(), Error> {
        let slot = self.find(psid).ok_or(Error::NotFound)?;
        slot.write(psid.0, route.meta(), route.vsid.0);
        Ok(())
    }

    /// Removes the route of `psid` and returns it.
    pub fn remove(&self, psid: StreamId) -> Option<Route> {
        let slot = self.find(psid)?;
        let (_, meta, vsid) = slot.peek();
        slot.write(psid.0, META_TOMBSTONE, 0);
        Route::from_meta(meta, vsid)
    }

    /// Every route, for the control path (serialised with writers).
    pub fn for_each(&self, mut f: impl FnMut(StreamId, Route)) {
        for slot in &self.slots {
            let (key, meta, vsid) = slot.peek();
            if let Some(r) = Route::from_meta(meta, vsid) {
                f(StreamId(key), r);
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn route(v: u16, vsid: u32) -> Route {
        Route {
            viommu: v,
            generation: 3,
            vsid: VStreamId(vsid),
            attached: true,
        }
    }

    #[test]
    fn insert_lookup_remove() {
        let t: RoutingTable<8> = RoutingTable::new();
        assert_eq!(t.lookup(StreamId(5)), Lookup::Absent);
        t.insert(StreamId(5), route(1, 0x50)).unwrap();
        assert_eq!(t.insert(StreamId(5), route(2, 0x51)), Err(Error::Exists));
        assert_eq!(t.lookup(StreamId(5)), Lookup::Found(route(1, 0x50)));
        assert_eq!(t.remove(StreamId(5)), Some(route(1, 0x50)));
        assert_eq!(t.lookup(StreamId(5)), Lookup::Absent);
        assert_eq!(t.remove(StreamId(5)), None);
    }

    #[test]
    fn full_table_and_tombstone_reuse() {
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
    fn meta_round_trips() {
        for (v, g, a) in [
            (0u16, 0u16, false),
            (MAX_VIOMMUS as u16, 0x7fff, true),
            (7, 0x1234, true),
        ] {
            let r = Route {
                viommu: v,
                generation: g,
                vsid: VStreamId(u32::MAX),
                attached: a,
            };
            assert_eq!(Route::from_meta(r.meta(), u32::MAX), Some(r));
        }
        assert_eq!(
            RoutingTable::<4>::new().insert(
                StreamId(1),
                Route {
                    viommu: MAX_VIOMMUS as u16 + 1,
                    ..route(0, 0)
                }
            ),
            Err(Error::InvalidArgument)
        );
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
                        prop_assert_eq!(res, Err(Error::Exists));
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

    fn route(v: u16, vsid: u32) -> Route {
        Route {
            viommu: v,
            generation: 1,
            vsid: VStreamId(vsid),
            attached: true,
        }
    }

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
