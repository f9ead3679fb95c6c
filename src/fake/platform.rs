//! `ModelPlatform`: the [`Platform`] the driver gets in host tests.
//!
//! `now_us` reads the model's virtual clock; `relax` and `wait_for_event` move it forward (by
//! [`SmmuModel::set_relax_step_us`], default 1 µs) and step the model; `mmio` runs the model for
//! each register access, exactly where a real SMMU would observe it.

use std::sync::Arc;

use super::SmmuModel;
use crate::error::WaitFor;
use crate::platform::{MmioAccess, Platform};

/// Another memory-mapped device the fake platform forwards MMIO hooks to (e.g. a CMDQV model),
/// for addresses outside the SMMU's two register pages.
pub trait MmioDevice: Send + Sync {
    /// Whether `addr` belongs to this device.
    fn contains(&self, addr: usize) -> bool;
    /// Observes an access (after a write, before a read), like
    /// [`Platform::mmio`](crate::platform::Platform::mmio).
    fn access(&self, addr: usize, write: bool);
}

/// The host-test [`Platform`]: virtual clock, relax steps the model, MMIO hook runs it.
#[derive(Clone)]
pub struct ModelPlatform {
    smmu: Arc<SmmuModel>,
}

impl core::fmt::Debug for ModelPlatform {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ModelPlatform")
            .field("now_us", &self.smmu.now_us())
            .finish()
    }
}

impl ModelPlatform {
    pub(crate) fn new(smmu: Arc<SmmuModel>) -> Self {
        Self { smmu }
    }

    /// The model this platform runs.
    pub fn smmu(&self) -> &Arc<SmmuModel> {
        &self.smmu
    }
}

impl Platform for ModelPlatform {
    fn now_us(&self) -> u64 {
        // Every bounded wait starts by reading the clock, before the barrier that precedes its
        // MMIO write: the model must see this thread's barriers from here on.
        super::observe::register(&Arc::downgrade(&self.smmu));
        self.smmu.now_us()
    }

    fn relax(&self, _what: WaitFor) {
        self.smmu.advance_us(self.smmu.relax_step_us());
        self.smmu.step();
    }

    fn wait_for_event(&self, what: WaitFor) {
        self.relax(what);
    }

    fn mmio(&self, addr: usize, access: MmioAccess) {
        self.smmu.mmio(addr, access == MmioAccess::Write);
    }
}
