//! [`Producer`]: makes the IRQ-path callers that feed a router's rings one producer, as the
//! single-producer rings ([`VeventQueue`](crate::vevent::VeventQueue),
//! [`FaultRing`](super::iopf::FaultRing)) require, without making any of them wait unboundedly.
//!
//! Who produces: the event-queue drain (records, stalls), the PRI-queue drain (page requests),
//! which may run on another CPU at the same time, and the overflow report, which the driver
//! hands over after its drain has already let a second drain in. Records and page requests
//! take the token with a bounded spin ([`Producer::run`]): whoever holds it does a constant
//! amount of work. An overflow never waits ([`Producer::defer`]): it is counted in the token word
//! and carried out by whoever holds the token, before it leaves, or at once if nobody does.
//!
//! One atomic word: bit 0 = held, bits `[31:1]` = deferred requests not carried out yet, bits
//! `[63:32]` = how often the token was freed (an epoch). Every transition is a
//! read-modify-write on that word, so a request can never fall between a holder deciding to
//! leave and leaving (the store-buffering race a separate flag would have); `loom` checks it.
//!
//! The control path waits for a **grace period** with [`Producer::round`] rather than by taking
//! the token (which a stream of IRQ-path producers could keep from it): one read-modify-write
//! that publishes what it changed before (a route, a closed gate) to every later holder, then, if
//! the token was held, a bounded wait until the epoch moves (that holder left, and everything it
//! did happens before the wait returns).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::sync::{AtomicU64, Ordering, spin_hint};

const HELD: u64 = 1;
const ONE_REQUEST: u64 = 2;
const PENDING: u64 = 0xffff_fffe;
const EPOCH: u64 = !0xffff_ffff;
const ONE_EPOCH: u64 = 1 << 32;

/// The requests deferred in a state word.
const fn pending_of(state: u64) -> u32 {
    ((state & PENDING) >> 1) as u32
}

/// How many times a leaving holder takes requests that arrived while it worked before it leaves
/// them to the next holder (bounds the holder's work under a stream of requests).
const HELP_ROUNDS: u32 = 8;

/// The producer token of a set of single-producer rings, with deferred requests.
pub(crate) struct Producer {
    state: AtomicU64,
    /// How often the token was taken (written by the holder only: a load and a store).
    takes: AtomicU64,
}

impl Producer {
    /// A free token with no request.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            takes: AtomicU64::new(0),
        }
    }

    /// A free token with no request (loom build).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU64::new(0),
            takes: AtomicU64::new(0),
        }
    }

    /// Runs `f` as the only producer. Waits at most `spins` rounds for the holder to leave;
    /// `None` (and `f` not run) if it did not. Deferred requests found on entry are carried out
    /// (`deferred(n)`) before `f`, those arriving meanwhile after it.
    pub(crate) fn run<R>(
        &self,
        spins: u32,
        deferred: &mut impl FnMut(u32),
        f: impl FnOnce() -> R,
    ) -> Option<R> {
        self.enter(spins, deferred)?;
        let r = f();
        self.leave(deferred);
        Some(r)
    }

    /// Takes the token, waiting at most `spins` rounds, and carries out the requests deferred so
    /// far; `None` if the holder did not leave in time. The caller holds the token until it
    /// calls [`leave`](Self::leave).
    #[inline]
    pub(crate) fn enter(&self, spins: u32, deferred: &mut impl FnMut(u32)) -> Option<()> {
        let mut tries = 0u32;
        let pending = loop {
            if let Some(n) = self.try_take() {
                break n;
            }
            tries += 1;
            if tries > spins {
                return None;
            }
            spin_hint();
        };
        if pending > 0 {
            deferred(pending);
        }
        Some(())
    }

    /// How often the token was taken since the router was created (each take and its leave are
    /// two locked read-modify-writes).
    pub(crate) fn takes(&self) -> u64 {
        self.takes.load(Ordering::Relaxed)
    }

    /// Asks for `deferred(1)` to run as the producer: at once if nobody holds the token, or by
    /// the holder before it leaves. Never waits.
    pub(crate) fn defer(&self, deferred: &mut impl FnMut(u32)) {
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let (next, take) = if cur & HELD == 0 {
                ((cur & EPOCH) | HELD, true)
            } else if cur & PENDING == PENDING {
                (cur, false)
            } else {
                (cur + ONE_REQUEST, false)
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => {
                    if take {
                        self.count_take();
                        deferred(pending_of(cur).saturating_add(1));
                        self.leave(deferred);
                    }
                    return;
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Takes the token if it is free; returns the requests deferred so far (now ours).
    fn try_take(&self) -> Option<u32> {
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            if cur & HELD != 0 {
                return None;
            }
            match self.state.compare_exchange_weak(
                cur,
                (cur & EPOCH) | HELD,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => {
                    self.count_take();
                    return Some(pending_of(cur));
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Counts a take (token held: we are the only writer).
    fn count_take(&self) {
        let n = self.takes.load(Ordering::Relaxed);
        self.takes.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    /// Leaves: takes and carries out requests that arrived meanwhile (at most [`HELP_ROUNDS`]
    /// times), then frees the token; after the last round any new requests stay for the next
    /// holder.
    #[inline]
    pub(crate) fn leave(&self, deferred: &mut impl FnMut(u32)) {
        let mut rounds = 0u32;
        let mut cur = self.state.load(Ordering::Relaxed);
        loop {
            let pending = pending_of(cur);
            let help = pending > 0 && rounds < HELP_ROUNDS;
            let next = if help {
                (cur & EPOCH) | HELD
            } else {
                // Free, requests kept for the next holder, one more epoch.
                (cur & !HELD).wrapping_add(ONE_EPOCH)
            };
            match self
                .state
                .compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if help => {
                    rounds += 1;
                    deferred(pending);
                    cur = self.state.load(Ordering::Relaxed);
                }
                Ok(_) => return,
                Err(now) => cur = now,
            }
        }
    }

    /// Waits for a grace period (control path): once it returns `true`, everything a producer
    /// did while holding the token before this call happens before the return, and every
    /// producer taking the token after this call sees everything the caller did before it.
    /// Never takes the token, so a stream of producers cannot starve it; waits at most `spins`
    /// rounds for the holder found inside to leave (`false` if it did not).
    pub(crate) fn round(&self, spins: u32) -> bool {
        // An RMW that changes nothing: AcqRel orders it after our earlier writes and after
        // every earlier release of the token; since every transition of the word is an RMW,
        // each later take reads from a release sequence through it and synchronises with it.
        let s = self.state.fetch_or(0, Ordering::AcqRel);
        if s & HELD == 0 {
            return true;
        }
        let epoch = s & EPOCH;
        for _ in 0..spins {
            // Acquire: synchronises with the release that moved the epoch (and every RMW
            // before it), so the holder's work happens before we return.
            let now = self.state.load(Ordering::Acquire);
            if now & EPOCH != epoch {
                return true;
            }
            spin_hint();
        }
        false
    }

    /// Requests deferred and not carried out yet (a snapshot).
    #[cfg(test)]
    pub(crate) fn pending(&self) -> u32 {
        pending_of(self.state.load(Ordering::Acquire))
    }
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use core::cell::Cell;

    #[test]
    fn defer_runs_at_once_when_free() {
        let p = Producer::new();
        let n = Cell::new(0);
        p.defer(&mut |k| n.set(n.get() + k));
        assert_eq!((n.get(), p.pending()), (1, 0));
        assert_eq!(p.run(0, &mut |_| panic!(), || 7), Some(7));
    }

    #[test]
    fn holder_carries_out_requests_made_while_it_works() {
        let p = Producer::new();
        let n = Cell::new(0);
        let r = p.run(0, &mut |k| n.set(n.get() + k), || {
            // A request and a second producer while we hold the token.
            p.defer(&mut |_| panic!("must not run inside the holder"));
            p.defer(&mut |_| panic!("must not run inside the holder"));
            assert_eq!(p.run(3, &mut |_| {}, || ()), None, "bounded wait");
            assert_eq!(p.pending(), 2);
            5
        });
        assert_eq!((r, n.get(), p.pending()), (Some(5), 2, 0));
    }

    #[test]
    fn threads_never_overlap_and_every_request_is_carried_out() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicU32 as A, AtomicU64 as B};
        let p = Arc::new(Producer::new());
        let inside = Arc::new(A::new(0));
        let done = Arc::new(B::new(0));
        let handles: std::vec::Vec<_> = (0..4)
            .map(|t| {
                let (p, inside, done) = (p.clone(), inside.clone(), done.clone());
                std::thread::spawn(move || {
                    let mut ran = 0u64;
                    let mut work = |k: u32| {
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                        done.fetch_add(u64::from(k), Ordering::SeqCst);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    };
                    for i in 0..20_000u32 {
                        if (i + t) % 3 == 0 {
                            p.defer(&mut work);
                        } else if p
                            .run(u32::MAX, &mut work, || {
                                assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "overlap");
                                inside.fetch_sub(1, Ordering::SeqCst);
                            })
                            .is_some()
                        {
                            ran += 1;
                        }
                    }
                    ran
                })
            })
            .collect();
        let ran: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
        let deferred: u64 = (0..4u32)
            .map(|t| (0..20_000u32).filter(|i| (i + t) % 3 == 0).count() as u64)
            .sum();
        assert_eq!(ran + deferred, 80_000);
        // Requests left by a holder past its help rounds wait for the next holder.
        p.run(
            0,
            &mut |k| {
                done.fetch_add(u64::from(k), Ordering::SeqCst);
            },
            || (),
        )
        .unwrap();
        assert_eq!(done.load(Ordering::SeqCst), deferred);
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod loom_tests {
    use super::*;
    use crate::iommufd::VeventTegra241Cmdqv;
    use crate::vevent::VeventQueue;
    use crate::viommu::sync::AtomicU32;
    use loom::sync::Arc;

    /// An overflow deferred while a record is being produced: the two never run at once (the
    /// rings stay single-producer), the lost report is carried out exactly once by one of the
    /// two threads, and the queue ends with a marker iff the lost report came last.
    #[test]
    fn deferred_lost_report_vs_producer() {
        crate::viommu::sync::model("deferred_lost_report_vs_producer", || {
            let p = Arc::new(Producer::new());
            let q = Arc::new(VeventQueue::<VeventTegra241Cmdqv, 2>::new(2).unwrap());
            let inside = Arc::new(AtomicU32::new(0));
            let (p2, q2, i2) = (p.clone(), q.clone(), inside.clone());
            let overflow = loom::thread::spawn(move || {
                p2.defer(&mut |n| {
                    assert_eq!(i2.fetch_add(1, Ordering::Relaxed), 0);
                    for _ in 0..n {
                        q2.report_lost();
                    }
                    i2.fetch_sub(1, Ordering::Relaxed);
                });
            });
            let rec = VeventTegra241Cmdqv {
                lvcmdq_err_map: [1, 2],
            };
            let mut lost = |n: u32| {
                assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                for _ in 0..n {
                    q.report_lost();
                }
                inside.fetch_sub(1, Ordering::Relaxed);
            };
            let r = p
                .run(u32::MAX, &mut lost, || {
                    assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                    let r = q.report(&rec);
                    inside.fetch_sub(1, Ordering::Relaxed);
                    r
                })
                .unwrap();
            overflow.join().unwrap();
            assert_eq!(p.pending(), 0);
            let s = q.stats();
            assert_eq!((s.queued, s.lost), (1, 1));
            // The record took 0 or 1; the marker survives only if it came after the record.
            let marker = q.pending_lost();
            match r.sequence() {
                0 => assert_eq!(marker, Some(1)),
                _ => assert_eq!(marker, None),
            }
        });
    }

    /// Two overflows deferred while a producer works: each is carried out exactly once (one
    /// sequence number each), never beside the producer or each other, and nothing is left
    /// pending.
    #[test]
    fn two_deferred_requests_vs_producer() {
        // Three threads with retry loops: bounded preemptions keep the model finite.
        let mut builder = loom::model::Builder::new();
        builder.preemption_bound = Some(3);
        let runs = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let r = runs.clone();
        builder.check(move || {
            r.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let p = Arc::new(Producer::new());
            let inside = Arc::new(AtomicU32::new(0));
            let done = Arc::new(AtomicU32::new(0));
            let spawn = || {
                let (p, inside, done) = (p.clone(), inside.clone(), done.clone());
                loom::thread::spawn(move || {
                    p.defer(&mut |n| {
                        assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                        done.fetch_add(n, Ordering::Relaxed);
                        inside.fetch_sub(1, Ordering::Relaxed);
                    });
                })
            };
            let (a, b) = (spawn(), spawn());
            let mut work = |n: u32| {
                assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                done.fetch_add(n, Ordering::Relaxed);
                inside.fetch_sub(1, Ordering::Relaxed);
            };
            // A short wait: giving up (None) is allowed, the requests must still be done.
            let _ = p.run(2, &mut work, || {
                assert_eq!(inside.fetch_add(1, Ordering::Relaxed), 0);
                inside.fetch_sub(1, Ordering::Relaxed);
            });
            a.join().unwrap();
            b.join().unwrap();
            assert_eq!(p.pending(), 0);
            assert_eq!(done.load(Ordering::Relaxed), 2);
        });
        std::println!(
            "loom two_deferred_requests_vs_producer (preemption bound 3): {} interleavings",
            runs.load(std::sync::atomic::Ordering::Relaxed)
        );
    }
}
