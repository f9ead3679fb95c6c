//! Raw register access helpers: write the register memory, then call the hook, as the driver's
//! `tock-registers` accesses plus `Platform::mmio` do.

use std::sync::Arc;

use crate::fake::regs::{RegPage, register_offset};
use crate::fake::{FakePlatform, FakeSmmu};
use crate::platform::{MmioAccess, Platform};

/// A model and its platform, with raw register accessors.
pub(crate) struct Rig {
    pub(crate) smmu: Arc<FakeSmmu>,
    pub(crate) plat: FakePlatform,
}

impl Rig {
    pub(crate) fn qemu() -> Self {
        let smmu = FakeSmmu::qemu_virt();
        let plat = smmu.platform();
        Self { smmu, plat }
    }

    fn addr(&self, name: &str) -> usize {
        let (page, off) = register_offset(name).unwrap_or_else(|| panic!("no register {name}"));
        let base = match page {
            RegPage::Page0 => self.smmu.page0_ptr(),
            RegPage::Page1 => self.smmu.page1_ptr(),
        };
        base.as_ptr() as usize + off
    }

    pub(crate) fn read32(&self, name: &str) -> u32 {
        let a = self.addr(name);
        self.plat.mmio(a, MmioAccess::Read);
        // SAFETY: `a` is a 4-byte aligned register inside the model's register pages.
        unsafe { (a as *const u32).read_volatile() }
    }

    pub(crate) fn write32(&self, name: &str, v: u32) {
        let a = self.addr(name);
        // SAFETY: `a` is a 4-byte aligned register inside the model's register pages.
        unsafe { (a as *mut u32).write_volatile(v) };
        self.plat.mmio(a, MmioAccess::Write);
    }

    pub(crate) fn read64(&self, name: &str) -> u64 {
        let a = self.addr(name);
        self.plat.mmio(a, MmioAccess::Read);
        // SAFETY: `a` is an 8-byte aligned 64-bit register inside the model's register pages.
        unsafe { (a as *const u64).read_volatile() }
    }

    pub(crate) fn write64(&self, name: &str, v: u64) {
        let a = self.addr(name);
        // SAFETY: `a` is an 8-byte aligned 64-bit register inside the model's register pages.
        unsafe { (a as *mut u64).write_volatile(v) };
        self.plat.mmio(a, MmioAccess::Write);
    }

    /// Writes CR0 and polls CR0ACK up to `polls` times; returns whether it matched.
    pub(crate) fn cr0_sync(&self, v: u32, polls: u32) -> bool {
        self.write32("CR0", v);
        (0..polls).any(|_| self.read32("CR0ACK") == v)
    }
}
