//! What the driver's CPU does between register accesses that an SMMU could observe: its memory
//! barriers and its 64-bit stores to live stream-table entries.
//!
//! On the host the driver's barrier functions (`smmu::barrier`) and its table stores report
//! here. A barrier orders only the issuing CPU's accesses (Arm ARM B2.3, `DMB`), so the models
//! this thread has driven are kept in a thread-local list: each MMIO access through a model adds
//! it, and every barrier or table store of the thread is handed to each of them. A test can also
//! run its own code at each barrier of the thread ([`set_barrier_hook`]), to act exactly between
//! two steps of the driver (a record landing after a drain's last PROD read, say).

use std::cell::RefCell;
use std::sync::{Arc, Weak};

use super::SmmuModel;

/// A barrier of the driver (see `smmu::barrier`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Barrier {
    /// `DMB OSHST`: earlier stores before later stores (and the MMIO write that publishes them).
    Wmb,
    /// `DMB OSHLD`: an earlier read (PROD, CONS, an MSI write-back) before later reads.
    Rmb,
    /// `DMB OSH`: every earlier access before every later one.
    Mb,
}

impl Barrier {
    /// Whether earlier stores are ordered before later accesses.
    pub fn orders_stores(self) -> bool {
        matches!(self, Barrier::Wmb | Barrier::Mb)
    }

    /// Whether earlier loads are ordered before later accesses.
    pub fn orders_loads(self) -> bool {
        matches!(self, Barrier::Rmb | Barrier::Mb)
    }
}

type Hook = Box<dyn FnMut(Barrier)>;

thread_local! {
    static MODELS: RefCell<Vec<Weak<SmmuModel>>> = const { RefCell::new(Vec::new()) };
    static HOOK: RefCell<Option<Hook>> = const { RefCell::new(None) };
}

/// Adds `m` to the models this thread's barriers and stores reach (once).
pub(crate) fn register(m: &Weak<SmmuModel>) {
    MODELS.with(|ms| {
        let mut ms = ms.borrow_mut();
        if !ms.iter().any(|w| w.ptr_eq(m)) {
            ms.retain(|w| w.strong_count() > 0);
            ms.push(m.clone());
        }
    });
}

fn models() -> Vec<Arc<SmmuModel>> {
    MODELS.with(|ms| ms.borrow().iter().filter_map(Weak::upgrade).collect())
}

/// Runs `f` at every barrier this thread's driver code executes from now on, until
/// [`clear_barrier_hook`] (after the models saw the barrier). Barriers executed by `f` itself
/// do not run it again.
pub fn set_barrier_hook(f: impl FnMut(Barrier) + 'static) {
    HOOK.with(|h| *h.borrow_mut() = Some(Box::new(f)));
}

/// Removes this thread's barrier hook.
pub fn clear_barrier_hook() {
    HOOK.with(|h| *h.borrow_mut() = None);
}

/// A barrier of the driver: every model of this thread sees it, then the test hook runs.
pub fn barrier(kind: Barrier) {
    for m in models() {
        m.on_barrier(kind);
    }
    let hook = HOOK.with(|h| h.borrow_mut().take());
    if let Some(mut f) = hook {
        f(kind);
        HOOK.with(|h| {
            let mut h = h.borrow_mut();
            if h.is_none() {
                *h = Some(f);
            }
        });
    }
}

/// A 64-bit store of the driver to a live stream-table entry (STE or L1 descriptor) at host
/// address `addr`, just made.
pub fn table_store(addr: usize) {
    for m in models() {
        m.on_table_store(addr);
    }
}
