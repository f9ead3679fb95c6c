//! [`Gate`]: an object the IRQ path uses without ever waiting, that the control path can install
//! and take away, waiting (bounded) for everyone using it to leave.
//!
//! Two kinds of users:
//! - **Producers** (the IRQ path) hold the router's producer token ([`super::producer`]) while
//!   they use the value, and enter with one plain `Acquire` load of the state word
//!   ([`Gate::read_held`]): no read-modify-write per record.
//! - **Consumers** (readers of a vEVENTQ, which may run on any CPU, the IRQ path included) count
//!   themselves in: the state word counts them (bits `[30:0]`) beside an OPEN bit (31). Entering
//!   is one `Acquire` RMW and never spins; a consumer finding the gate closed backs out at once.
//!
//! Closing clears OPEN, waits until the consumer count drains to zero, then waits one round of
//! the producer token (a grace period: a producer that saw OPEN held the token and has left when
//! the closer gets it; a producer taking the token after the closer sees OPEN clear). After that
//! nobody holds a reference and nobody can take one, so the value can be taken or replaced.
//! Ordering (checked by `loom`): opening is a `Release` RMW after the value is written, which
//! both kinds of entry `Acquire`; a consumer leaves with a `Release` RMW that the closer's
//! `Acquire` load of a zero count synchronises with; a producer's uses happen before its token
//! release, which the closer's token take acquires. A closed, empty gate is all zero bits.
//!
//! The value carries a tag (the vIOMMU generation it was installed for), so a consumer holding
//! an old handle recognises that the slot's next vIOMMU installed it.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::sync::{AtomicU32, AtomicU64, Ordering, UnsafeCell, spin_hint};

const OPEN: u32 = 1 << 31;

/// An optional value whose empty state is all zero bits by construction: a `repr(u8)` enum's
/// layout is a tag byte followed by the variant's fields (RFC 2195), and `Empty` is tag 0 with
/// the rest padding. (An `Option<T>` may put `None` in a niche of `T`, e.g. the value 2 of a
/// `bool` field, which would keep a router's `static` out of `.bss`.)
#[repr(u8)]
pub(crate) enum Held<T> {
    /// Nothing: tag 0.
    Empty = 0,
    /// A value.
    Full(T) = 1,
}

impl<T> Held<T> {
    /// The value, if any.
    #[inline]
    pub(crate) fn as_ref(&self) -> Option<&T> {
        match self {
            Held::Full(v) => Some(v),
            Held::Empty => None,
        }
    }

    /// The value, if any, mutably.
    #[inline]
    pub(crate) fn as_mut(&mut self) -> Option<&mut T> {
        match self {
            Held::Full(v) => Some(v),
            Held::Empty => None,
        }
    }

    /// Whether there is a value.
    pub(crate) fn is_full(&self) -> bool {
        matches!(self, Held::Full(_))
    }

    /// Takes the value out, leaving `Empty`.
    pub(crate) fn take(&mut self) -> Option<T> {
        match core::mem::replace(self, Held::Empty) {
            Held::Full(v) => Some(v),
            Held::Empty => None,
        }
    }
}

/// A slot holding an optional `T`, used lock-free by producers and consumers and replaced by one
/// (externally serialised) control path.
pub(crate) struct Gate<T> {
    state: AtomicU32,
    tag: AtomicU64,
    value: UnsafeCell<Held<T>>,
}

// SAFETY: the value is only reached through `read`/`read_held` (shared access while the count or
// the producer token protects it) and through `open`/`close`, which touch it mutably only while
// OPEN is clear, the count is zero and a producer-token round has passed, i.e. while no reader
// can access it. So sharing the gate shares `&T` across CPUs (needs `T: Sync`) and moves `T`
// between CPUs (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for Gate<T> {}

impl<T> Gate<T> {
    /// A closed, empty gate.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            tag: AtomicU64::new(0),
            value: UnsafeCell::new(Held::Empty),
        }
    }

    /// A closed, empty gate (loom build).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU32::new(0),
            tag: AtomicU64::new(0),
            value: UnsafeCell::new(Held::Empty),
        }
    }

    /// Consumer entry: runs `f` on the tag and the value if the gate is open; `None` if closed.
    /// Never waits.
    #[inline]
    pub(crate) fn read<R>(&self, f: impl FnOnce(u64, &T) -> R) -> Option<R> {
        let prev = self.state.fetch_add(1, Ordering::Acquire);
        if prev & OPEN == 0 {
            self.state.fetch_sub(1, Ordering::Release);
            return None;
        }
        let tag = self.tag.load(Ordering::Relaxed);
        // SAFETY: we counted ourselves in while OPEN was set, so no `open`/`close` writes the
        // value until our `fetch_sub` below (`close` needs a zero count first); everyone else
        // only takes shared references.
        let out = self
            .value
            .with(|p| unsafe { (*p).as_ref() }.map(|v| f(tag, v)));
        self.state.fetch_sub(1, Ordering::Release);
        out
    }

    /// Producer entry: runs `f` on the tag and the value if the gate is open; `None` if closed.
    /// Plain loads, never waits.
    ///
    /// # Safety
    /// The caller holds the producer token whose round every [`close`](Self::close) of this gate
    /// waits for (its `grace` argument), from before this call until after it returns.
    #[inline]
    pub(crate) unsafe fn read_held<R>(&self, f: impl FnOnce(u64, &T) -> R) -> Option<R> {
        // Acquire: synchronises with the `Release` RMW of `open`, so the value is seen whole.
        if self.state.load(Ordering::Acquire) & OPEN == 0 {
            return None;
        }
        let tag = self.tag.load(Ordering::Relaxed);
        // SAFETY: OPEN was set after the value was written; `close` clears it and then waits for
        // a round of the token we hold (caller's promise) before touching the value, so the
        // value stays in place until we release the token.
        self.value
            .with(|p| unsafe { (*p).as_ref() }.map(|v| f(tag, v)))
    }

    /// Whether the gate is open (a snapshot).
    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) & OPEN != 0
    }

    /// Installs `value` tagged `tag` and opens the gate. Callers serialise `open`/`close` among
    /// themselves. Gives the value back if the gate is open or still holds a value a failed
    /// `close` could not take (someone had not left yet).
    pub(crate) fn open(&self, value: T, tag: u64) -> Result<(), T> {
        if self.is_open() {
            return Err(value);
        }
        // SAFETY: OPEN is clear (checked above; only `open`, serialised with us, sets it).
        // Consumers that count themselves in now back out without touching the value; a user
        // still inside from before a failed `close` only reads, and we only read here too.
        let occupied = self.value.with(|p| unsafe { (*p).is_full() });
        if occupied {
            return Err(value);
        }
        // SAFETY: the value is `None`, which only `close` makes it once the count drained and a
        // token round passed with OPEN clear; nobody has been inside since, so we are alone.
        self.value.with_mut(|p| unsafe { *p = Held::Full(value) });
        self.tag.store(tag, Ordering::Relaxed);
        // Release: publishes the value and the tag to the `Acquire` of the next entry.
        self.state.fetch_or(OPEN, Ordering::Release);
        Ok(())
    }

    /// Closes the gate, waits up to `spins` rounds for consumers inside to leave, then has
    /// `grace` wait one round of the producer token (`true` once done), and takes the value out.
    /// `Err(())` if a consumer was still inside or the round did not happen: the gate stays
    /// closed (nobody new gets in) and a later `close` can finish the job.
    pub(crate) fn close(&self, spins: u32, grace: impl FnOnce() -> bool) -> Result<Option<T>, ()> {
        self.state.fetch_and(!OPEN, Ordering::AcqRel);
        let mut n = 0u32;
        // Acquire: synchronises with every consumer's `Release` exit.
        while self.state.load(Ordering::Acquire) & !OPEN != 0 {
            if n >= spins {
                return Err(());
            }
            n += 1;
            spin_hint();
        }
        if !grace() {
            return Err(());
        }
        // SAFETY: OPEN is clear, no consumer is inside (count zero; newcomers back out), and
        // every producer that saw OPEN has released the token since (`grace`); producers
        // arriving later see OPEN clear. `open` is serialised with us by the caller.
        Ok(self.value.with_mut(|p| unsafe { (*p).take() }))
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn closed_gate_reads_nothing_and_opens_once() {
        let g: Gate<u32> = Gate::new();
        assert_eq!(g.read(|_, v| *v), None);
        assert!(g.open(7, 1).is_ok());
        assert_eq!(g.open(8, 2), Err(8));
        assert_eq!(g.read(|t, v| (t, *v)), Some((1, 7)));
        assert_eq!(g.close(0, || true), Ok(Some(7)));
        assert_eq!(g.read(|_, v| *v), None);
        assert_eq!(g.close(0, || true), Ok(None));
        assert!(g.open(9, 3).is_ok());
        assert_eq!(g.read(|t, v| (t, *v + 1)), Some((3, 10)));
        // SAFETY: no close runs while this test reads.
        assert_eq!(unsafe { g.read_held(|_, v| *v) }, Some(9));
    }

    #[test]
    fn close_reports_busy_while_a_reader_is_inside_or_the_grace_round_fails() {
        let g: Gate<u32> = Gate::new();
        g.open(1, 0).ok();
        g.read(|_, _| {
            assert_eq!(g.close(3, || true), Err(()));
            // The gate is closed for newcomers already, and the value cannot be replaced.
            assert_eq!(g.read(|_, v| *v), None);
            // SAFETY: the close above failed; nothing is taken while we read.
            assert_eq!(unsafe { g.read_held(|_, v| *v) }, None);
            assert_eq!(g.open(2, 0), Err(2));
        });
        assert_eq!(g.close(0, || false), Err(()));
        assert_eq!(g.open(2, 0), Err(2));
        assert_eq!(g.close(0, || true), Ok(Some(1)));
    }

    #[test]
    fn a_new_gate_is_all_zero() {
        let g: Gate<u64> = Gate::new();
        assert_eq!(g.state.load(Ordering::Relaxed), 0);
        assert_eq!(g.tag.load(Ordering::Relaxed), 0);
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod loom_tests {
    use super::*;
    use crate::viommu::producer::Producer;
    use loom::sync::Arc;

    /// A consumer racing a close either sees the value or nothing, and the closer takes the
    /// value only after the consumer left (loom reports a data race on the cell otherwise).
    #[test]
    fn close_waits_for_consumer() {
        crate::viommu::sync::model("close_waits_for_consumer", || {
            let g = Arc::new(Gate::new());
            assert!(g.open(5u32, 1).is_ok());
            let r = {
                let g = g.clone();
                loom::thread::spawn(move || g.read(|_, v| *v))
            };
            let taken = loop {
                if let Ok(v) = g.close(2, || true) {
                    break v;
                }
            };
            assert_eq!(taken, Some(5));
            let seen = r.join().unwrap_or(None);
            assert!(seen == Some(5) || seen.is_none());
        });
    }

    /// A producer using the gate under the token while the control path closes it and waits a
    /// token round: the producer sees the value whole or nothing, and the value is taken only
    /// after the producer left (a data race on the cell otherwise). Without the grace round
    /// (`|| true`) loom finds the race.
    #[test]
    fn close_waits_a_token_round_for_producers() {
        crate::viommu::sync::model("close_waits_a_token_round_for_producers", || {
            let g = Arc::new(Gate::new());
            let p = Arc::new(Producer::new());
            assert!(g.open([1u64, 2], 1).is_ok());
            let prod = {
                let (g, p) = (g.clone(), p.clone());
                loom::thread::spawn(move || {
                    p.run(u32::MAX, &mut |_| {}, || {
                        // SAFETY: we hold `p`, whose round every close below waits for.
                        unsafe { g.read_held(|_, v| *v) }
                    })
                })
            };
            let taken = loop {
                if let Ok(v) = g.close(1, || p.run(1, &mut |_| {}, || ()).is_some()) {
                    break v;
                }
            };
            assert_eq!(taken, Some([1, 2]));
            let seen = prod.join().unwrap().flatten();
            assert!(seen == Some([1, 2]) || seen.is_none());
        });
    }

    /// A consumer racing an open sees either nothing or the fully installed value and its tag.
    #[test]
    fn open_publishes_value_and_tag() {
        crate::viommu::sync::model("open_publishes_value_and_tag", || {
            let g = Arc::new(Gate::new());
            let r = {
                let g = g.clone();
                loom::thread::spawn(move || g.read(|t, v: &[u64; 2]| (t, *v)))
            };
            assert!(g.open([1, 2], 7).is_ok());
            let seen = r.join().unwrap_or(None);
            assert!(seen == Some((7, [1, 2])) || seen.is_none());
        });
    }
}
