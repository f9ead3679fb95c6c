//! [`Gate`]: an object the IRQ path uses without ever waiting, that the control path can install
//! and take away, waiting (bounded) for the IRQ path to leave.
//!
//! The state word counts the CPUs inside (bits `[30:0]`) and has a CLOSED bit (31). A user
//! increments the count and backs out at once if CLOSED was set, so entering costs one atomic
//! read-modify-write and never spins. Closing sets CLOSED, then waits until the count drains to
//! zero: after that no user holds a reference and none can take one, so the value can be taken
//! or replaced. The ordering (checked by `loom`): entering is an `Acquire` RMW that synchronises
//! with the `Release` RMW that opened the gate, so a user sees the installed value; leaving is a
//! `Release` RMW that the closer's `Acquire` load of a zero count synchronises with, so every
//! use happens before the value is taken.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::sync::{AtomicU32, Ordering, UnsafeCell, spin_hint};

const CLOSED: u32 = 1 << 31;

/// A slot holding an optional `T`, used lock-free by readers and replaced by one (externally
/// serialised) control path.
pub(crate) struct Gate<T> {
    state: AtomicU32,
    value: UnsafeCell<Option<T>>,
}

// SAFETY: the value is only reached through `read` (shared access while the count protects it)
// and through `open`/`close`, which touch it mutably only while CLOSED is set and the count is
// zero, i.e. while no `read` can access it. So sharing the gate shares `&T` across CPUs (needs
// `T: Sync`) and moves `T` between CPUs (needs `T: Send`).
unsafe impl<T: Send + Sync> Sync for Gate<T> {}

impl<T> Gate<T> {
    /// A closed, empty gate.
    #[cfg(not(loom))]
    pub(crate) const fn new() -> Self {
        Self {
            state: AtomicU32::new(CLOSED),
            value: UnsafeCell::new(None),
        }
    }

    /// A closed, empty gate (loom build).
    #[cfg(loom)]
    pub(crate) fn new() -> Self {
        Self {
            state: AtomicU32::new(CLOSED),
            value: UnsafeCell::new(None),
        }
    }

    /// Runs `f` on the value if the gate is open; `None` if closed. Never waits.
    #[inline]
    pub(crate) fn read<R>(&self, f: impl FnOnce(&T) -> R) -> Option<R> {
        let prev = self.state.fetch_add(1, Ordering::Acquire);
        if prev & CLOSED != 0 {
            self.state.fetch_sub(1, Ordering::Release);
            return None;
        }
        // SAFETY: we counted ourselves in while CLOSED was clear, so no `open`/`close` writes the
        // value until our `fetch_sub` below (they need CLOSED set and a zero count); other
        // readers only take shared references.
        let out = self.value.with(|p| unsafe { (*p).as_ref() }.map(f));
        self.state.fetch_sub(1, Ordering::Release);
        out
    }

    /// Whether the gate is open (a snapshot).
    pub(crate) fn is_open(&self) -> bool {
        self.state.load(Ordering::Acquire) & CLOSED == 0
    }

    /// Installs `value` and opens the gate. Callers serialise `open`/`close` among themselves.
    /// Gives the value back if the gate is open or still holds a value a failed `close` could
    /// not take (a reader had not left yet).
    pub(crate) fn open(&self, value: T) -> Result<(), T> {
        if self.is_open() {
            return Err(value);
        }
        // SAFETY: CLOSED is set (checked above; only `open`, serialised with us, clears it). Readers
        // that count themselves in now see CLOSED and leave without touching the value; a reader
        // still inside from before a failed `close` only reads, and we only read here too.
        let occupied = self.value.with(|p| unsafe { (*p).is_some() });
        if occupied {
            return Err(value);
        }
        // SAFETY: the value is `None`, which only `close` makes it after the count drained to zero
        // with CLOSED set; no reader has been inside since, so we have exclusive access.
        self.value.with_mut(|p| unsafe { *p = Some(value) });
        // Release: publishes the value to the `Acquire` RMW of the next `read`.
        self.state.fetch_and(!CLOSED, Ordering::Release);
        Ok(())
    }

    /// Closes the gate, waits up to `spins` rounds for readers inside to leave, and takes the
    /// value out. `Err(())` if a reader was still inside: the gate stays closed (no new reader
    /// gets in) and a later `close` can finish the job.
    pub(crate) fn close(&self, spins: u32) -> Result<Option<T>, ()> {
        self.state.fetch_or(CLOSED, Ordering::AcqRel);
        let mut n = 0u32;
        loop {
            // Acquire: synchronises with every reader's `Release` exit.
            if self.state.load(Ordering::Acquire) & !CLOSED == 0 {
                // SAFETY: CLOSED is set and no reader is inside (count zero); readers arriving
                // later see CLOSED and leave. `open` is serialised with us by the caller.
                return Ok(self.value.with_mut(|p| unsafe { (*p).take() }));
            }
            if n >= spins {
                return Err(());
            }
            n += 1;
            spin_hint();
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn closed_gate_reads_nothing_and_opens_once() {
        let g: Gate<u32> = Gate::new();
        assert_eq!(g.read(|v| *v), None);
        assert!(g.open(7).is_ok());
        assert_eq!(g.open(8), Err(8));
        assert_eq!(g.read(|v| *v), Some(7));
        assert_eq!(g.close(0), Ok(Some(7)));
        assert_eq!(g.read(|v| *v), None);
        assert_eq!(g.close(0), Ok(None));
        assert!(g.open(9).is_ok());
        assert_eq!(g.read(|v| *v + 1), Some(10));
    }

    #[test]
    fn close_reports_busy_while_a_reader_is_inside() {
        let g: Gate<u32> = Gate::new();
        g.open(1).ok();
        g.read(|_| {
            assert_eq!(g.close(3), Err(()));
            // The gate is closed for newcomers already, and the value cannot be replaced.
            assert_eq!(g.read(|v| *v), None);
            assert_eq!(g.open(2), Err(2));
        });
        assert_eq!(g.close(0), Ok(Some(1)));
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// A reader racing a close either sees the value or nothing, and the closer takes the value
    /// only after the reader left (loom reports a data race on the cell otherwise).
    #[test]
    fn close_waits_for_reader() {
        crate::viommu::sync::model("close_waits_for_reader", || {
            let g = Arc::new(Gate::new());
            assert!(g.open(5u32).is_ok());
            let r = {
                let g = g.clone();
                loom::thread::spawn(move || g.read(|v| *v))
            };
            let taken = loop {
                if let Ok(v) = g.close(2) {
                    break v;
                }
            };
            assert_eq!(taken, Some(5));
            let seen = r.join().unwrap_or(None);
            assert!(seen == Some(5) || seen.is_none());
        });
    }

    /// A reader racing an open sees either nothing or the fully installed value.
    #[test]
    fn open_publishes_value() {
        crate::viommu::sync::model("open_publishes_value", || {
            let g = Arc::new(Gate::new());
            let r = {
                let g = g.clone();
                loom::thread::spawn(move || g.read(|v: &[u64; 2]| *v))
            };
            assert!(g.open([1, 2]).is_ok());
            let seen = r.join().unwrap_or(None);
            assert!(seen == Some([1, 2]) || seen.is_none());
        });
    }

    /// Teardown and re-creation of a vIOMMU slot while a producer holds an old route: the
    /// producer either delivers into the old ring (before teardown took it) or sees the
    /// generation change and delivers nothing; it never writes into the slot's next ring.
    #[test]
    fn stale_route_never_reaches_next_ring() {
        use loom::sync::atomic::AtomicU32 as A;
        crate::viommu::sync::model("stale_route_never_reaches_next_ring", || {
            let state = Arc::new(A::new(1 << 1 | 1)); // generation 1, live
            let g = Arc::new(Gate::new());
            assert!(g.open(Arc::new(A::new(0))).is_ok()); // ring of generation 1
            let p = {
                let (g, state) = (g.clone(), state.clone());
                loom::thread::spawn(move || {
                    // Routed with generation 1.
                    g.read(|ring: &Arc<A>| {
                        if state.load(Ordering::Acquire) == (1 << 1 | 1) {
                            ring.fetch_add(1, Ordering::Relaxed);
                        }
                    })
                })
            };
            // Teardown: stop delivery, take the ring, then the next vIOMMU (generation 2).
            state.store(1 << 1, Ordering::Release);
            let old = loop {
                if let Ok(v) = g.close(1) {
                    break v;
                }
            };
            state.store(2 << 1 | 1, Ordering::Release);
            let next = Arc::new(A::new(0));
            assert!(g.open(next.clone()).is_ok());
            p.join().ok();
            assert_eq!(next.load(Ordering::Relaxed), 0);
            assert!(old.is_some_and(|o| o.load(Ordering::Relaxed) <= 1));
        });
    }
}
