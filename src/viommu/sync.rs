//! The atomics and the cell the lock-free parts of the vIOMMU layer use: `core`'s, or `loom`'s
//! when built with `RUSTFLAGS="--cfg loom"` so that `loom` can model-check them.

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

#[cfg(not(loom))]
pub(crate) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering, fence};

/// One step of a bounded wait: a CPU spin hint, or a `loom` yield so the model can schedule the
/// thread being waited for.
#[inline]
pub(crate) fn spin_hint() {
    #[cfg(loom)]
    loom::thread::yield_now();
    #[cfg(not(loom))]
    core::hint::spin_loop();
}

/// Defines `new` once for both builds: `const fn` normally (so routers live in `static`s), a
/// plain `fn` under `loom` (whose atomics cannot be built in a constant).
macro_rules! ctor {
    ($(#[$m:meta])* $vis:vis fn new() -> Self $body:block) => {
        $(#[$m])*
        #[cfg(not(loom))]
        $vis const fn new() -> Self $body

        $(#[$m])*
        #[cfg(loom)]
        $vis fn new() -> Self $body
    };
}
pub(crate) use ctor;

/// `[value; N]` of a non-`Copy` value, in a `const fn` normally, built one by one under `loom`.
macro_rules! array_of {
    ($value:expr; $n:expr) => {{
        #[cfg(not(loom))]
        let a = [const { $value }; $n];
        #[cfg(loom)]
        let a = core::array::from_fn(|_| $value);
        a
    }};
}
pub(crate) use array_of;

/// A spin lock for the control path (`spin`'s), or `loom`'s mutex when built with `--cfg loom`
/// so that `loom` can schedule around it.
pub(crate) struct Mutex<T> {
    #[cfg(not(loom))]
    inner: spin::Mutex<T>,
    #[cfg(loom)]
    inner: loom::sync::Mutex<T>,
}

/// A held [`Mutex`].
#[cfg(not(loom))]
pub(crate) type MutexGuard<'a, T> = spin::MutexGuard<'a, T>;
/// A held [`Mutex`] (loom build).
#[cfg(loom)]
pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

impl<T> Mutex<T> {
    #[cfg(not(loom))]
    pub(crate) const fn new(value: T) -> Self {
        Self {
            inner: spin::Mutex::new(value),
        }
    }

    #[cfg(loom)]
    pub(crate) fn new(value: T) -> Self {
        Self {
            inner: loom::sync::Mutex::new(value),
        }
    }

    /// Takes the lock, spinning while another CPU holds it.
    pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
        #[cfg(not(loom))]
        return self.inner.lock();
        #[cfg(loom)]
        return self.inner.lock().unwrap_or_else(|e| e.into_inner());
    }
}

/// An `UnsafeCell` with `loom`'s closure API, so the same code is checked by `loom`.
#[cfg(not(loom))]
#[derive(Debug)]
pub(crate) struct UnsafeCell<T>(core::cell::UnsafeCell<T>);

#[cfg(not(loom))]
impl<T> UnsafeCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(core::cell::UnsafeCell::new(value))
    }

    #[inline]
    pub(crate) fn with<R>(&self, f: impl FnOnce(*const T) -> R) -> R {
        f(self.0.get())
    }

    #[inline]
    pub(crate) fn with_mut<R>(&self, f: impl FnOnce(*mut T) -> R) -> R {
        f(self.0.get())
    }
}

#[cfg(loom)]
pub(crate) use loom::cell::UnsafeCell;

/// `loom::model`, counting and printing the interleavings it explored.
#[cfg(all(test, loom))]
pub(crate) fn model<F: Fn() + Sync + Send + 'static>(name: &str, f: F) {
    use std::sync::atomic::{AtomicUsize, Ordering as O};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    loom::model(move || {
        r.fetch_add(1, O::Relaxed);
        f();
    });
    std::println!("loom {name}: {} interleavings", runs.load(O::Relaxed));
}

/// `loom::model` with a preemption bound, for models whose threads make many atomic steps.
#[cfg(all(test, loom))]
pub(crate) fn model_bounded<F: Fn() + Sync + Send + 'static>(name: &str, bound: usize, f: F) {
    use std::sync::atomic::{AtomicUsize, Ordering as O};
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(bound);
    builder.check(move || {
        r.fetch_add(1, O::Relaxed);
        f();
    });
    std::println!(
        "loom {name} (preemption bound {bound}): {} interleavings",
        runs.load(O::Relaxed)
    );
}
