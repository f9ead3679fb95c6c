//! The register pages of the model: plain host memory the driver reaches through `tock-registers`,
//! plus address decoding and per-register MMIO counters.
//!
//! Page 0 and page 1 (IHI 0070 §6.2) are one 128 KiB allocation aligned to 64 KiB. The driver's
//! accesses are ordinary volatile loads and stores into it; the model observes them through the
//! [`Platform::mmio`](crate::platform::Platform::mmio) hook (after a write, before a read) and
//! keeps hardware-owned registers (ACKs, GERROR, CONS/PROD it owns, IDRs) up to date in the
//! memory itself.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};

/// Register offsets within a page (IHI 0070 §6.2).
pub(crate) use crate::regs::offset as off;

/// Which register page an access hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RegPage {
    /// Page 0: control registers (IHI 0070 §6.2.1).
    Page0,
    /// Page 1: EVENTQ/PRIQ PROD and CONS (IHI 0070 §6.2.2).
    Page1,
}

/// Width of a register, for the registers the model decodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    W32,
    W64,
}

/// `(offset, name, width)` for every named page-0 register (IHI 0070 §6.2.1).
const PAGE0_REGS: &[(usize, &str, Width)] = &[
    (off::IDR0, "IDR0", Width::W32),
    (off::IDR1, "IDR1", Width::W32),
    (off::IDR2, "IDR2", Width::W32),
    (off::IDR3, "IDR3", Width::W32),
    (off::IDR4, "IDR4", Width::W32),
    (off::IDR5, "IDR5", Width::W32),
    (off::IIDR, "IIDR", Width::W32),
    (off::AIDR, "AIDR", Width::W32),
    (off::CR0, "CR0", Width::W32),
    (off::CR0ACK, "CR0ACK", Width::W32),
    (off::CR1, "CR1", Width::W32),
    (off::CR2, "CR2", Width::W32),
    (off::STATUSR, "STATUSR", Width::W32),
    (off::GBPA, "GBPA", Width::W32),
    (off::AGBPA, "AGBPA", Width::W32),
    (off::IRQ_CTRL, "IRQ_CTRL", Width::W32),
    (off::IRQ_CTRLACK, "IRQ_CTRLACK", Width::W32),
    (off::GERROR, "GERROR", Width::W32),
    (off::GERRORN, "GERRORN", Width::W32),
    (off::GERROR_IRQ_CFG0, "GERROR_IRQ_CFG0", Width::W64),
    (off::GERROR_IRQ_CFG1, "GERROR_IRQ_CFG1", Width::W32),
    (off::GERROR_IRQ_CFG2, "GERROR_IRQ_CFG2", Width::W32),
    (off::STRTAB_BASE, "STRTAB_BASE", Width::W64),
    (off::STRTAB_BASE_CFG, "STRTAB_BASE_CFG", Width::W32),
    (off::CMDQ_BASE, "CMDQ_BASE", Width::W64),
    (off::CMDQ_PROD, "CMDQ_PROD", Width::W32),
    (off::CMDQ_CONS, "CMDQ_CONS", Width::W32),
    (off::EVENTQ_BASE, "EVENTQ_BASE", Width::W64),
    (off::EVENTQ_IRQ_CFG0, "EVENTQ_IRQ_CFG0", Width::W64),
    (off::EVENTQ_IRQ_CFG1, "EVENTQ_IRQ_CFG1", Width::W32),
    (off::EVENTQ_IRQ_CFG2, "EVENTQ_IRQ_CFG2", Width::W32),
    (off::PRIQ_BASE, "PRIQ_BASE", Width::W64),
    (off::PRIQ_IRQ_CFG0, "PRIQ_IRQ_CFG0", Width::W64),
    (off::PRIQ_IRQ_CFG1, "PRIQ_IRQ_CFG1", Width::W32),
    (off::PRIQ_IRQ_CFG2, "PRIQ_IRQ_CFG2", Width::W32),
    (off::GATOS_CTRL, "GATOS_CTRL", Width::W32),
    (off::GATOS_SID, "GATOS_SID", Width::W64),
    (off::GATOS_ADDR, "GATOS_ADDR", Width::W64),
    (off::GATOS_PAR, "GATOS_PAR", Width::W64),
    (off::VATOS_SEL, "VATOS_SEL", Width::W32),
];

/// The named page-1 registers (IHI 0070 §6.2.2).
const PAGE1_REGS: &[(usize, &str, Width)] = &[
    (off::EVENTQ_PROD, "EVENTQ_PROD", Width::W32),
    (off::EVENTQ_CONS, "EVENTQ_CONS", Width::W32),
    (off::PRIQ_PROD, "PRIQ_PROD", Width::W32),
    (off::PRIQ_CONS, "PRIQ_CONS", Width::W32),
];

/// The register an access at `(page, offset)` belongs to: its first offset and its name. An
/// access to the upper half of a 64-bit register maps to that register.
pub(crate) fn lookup(page: RegPage, offset: usize) -> Option<(usize, &'static str, Width)> {
    let table = match page {
        RegPage::Page0 => PAGE0_REGS,
        RegPage::Page1 => PAGE1_REGS,
    };
    table.iter().copied().find(|&(o, _, w)| {
        let len = match w {
            Width::W32 => 4,
            Width::W64 => 8,
        };
        offset >= o && offset < o + len
    })
}

/// Page and first offset of the register called `name` (spec spelling, e.g. `"EVENTQ_CONS"`).
pub fn register_offset(name: &str) -> Option<(RegPage, usize)> {
    PAGE0_REGS
        .iter()
        .find(|r| r.1 == name)
        .map(|r| (RegPage::Page0, r.0))
        .or_else(|| {
            PAGE1_REGS
                .iter()
                .find(|r| r.1 == name)
                .map(|r| (RegPage::Page1, r.0))
        })
}

/// The two register pages as raw host memory: 128 KiB aligned to 64 KiB.
pub(crate) struct RegPages {
    base: NonNull<u8>,
    /// Cavium CN99xx layout: the page-1 registers live at their page-0 offsets and page 1 does
    /// not exist (see [`SmmuModel::set_page0_regs_only`](super::SmmuModel::set_page0_regs_only)).
    page0_only: AtomicBool,
}

/// Whether `offset` is one of the page-1 registers (EVENTQ/PRIQ PROD/CONS, IHI 0070 §6.2.2).
fn is_page1_reg(offset: usize) -> bool {
    matches!(
        offset,
        off::EVENTQ_PROD | off::EVENTQ_CONS | off::PRIQ_PROD | off::PRIQ_CONS
    )
}

const PAGES_LAYOUT: Layout = match Layout::from_size_align(2 * off::PAGE_SIZE, off::PAGE_SIZE) {
    Ok(l) => l,
    Err(_) => panic!("bad register page layout"),
};

impl RegPages {
    pub(crate) fn new() -> Self {
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(PAGES_LAYOUT) };
        let base = NonNull::new(ptr).expect("register pages: host allocation failed");
        Self {
            base,
            page0_only: AtomicBool::new(false),
        }
    }

    /// Switches the page-0-only layout on or off (see `SmmuModel::set_page0_regs_only`).
    pub(crate) fn set_page0_only(&self, on: bool) {
        self.page0_only.store(on, Ordering::Relaxed);
    }

    /// Whether the page-1 registers are aliased into page 0 and page 1 is absent.
    pub(crate) fn page0_only(&self) -> bool {
        self.page0_only.load(Ordering::Relaxed)
    }

    /// The first byte of page 0.
    pub(crate) fn page0(&self) -> NonNull<u8> {
        self.base
    }

    /// The first byte of page 1.
    pub(crate) fn page1(&self) -> NonNull<u8> {
        // SAFETY: the allocation is two pages long.
        unsafe { self.base.add(off::PAGE_SIZE) }
    }

    /// Which page and offset a host address falls in. In the page-0-only layout the page-1
    /// registers are found at their page-0 offsets and page 1 is outside the SMMU.
    pub(crate) fn decode(&self, addr: usize) -> Option<(RegPage, usize)> {
        let rel = addr.checked_sub(self.base.as_ptr().addr())?;
        let only0 = self.page0_only();
        match rel {
            r if r < off::PAGE_SIZE && only0 && is_page1_reg(r & !3) => Some((RegPage::Page1, r)),
            r if r < off::PAGE_SIZE => Some((RegPage::Page0, r)),
            r if r < 2 * off::PAGE_SIZE && !only0 => Some((RegPage::Page1, r - off::PAGE_SIZE)),
            _ => None,
        }
    }

    fn ptr(&self, page: RegPage, offset: usize, len: usize) -> NonNull<u8> {
        assert!(
            offset.is_multiple_of(len) && offset + len <= off::PAGE_SIZE,
            "register offset {offset:#x} out of the page or misaligned"
        );
        let base = match page {
            RegPage::Page0 => self.page0(),
            RegPage::Page1 if self.page0_only() => self.page0(),
            RegPage::Page1 => self.page1(),
        };
        // SAFETY: `offset + len <= PAGE_SIZE` (checked), inside that page of the allocation.
        unsafe { base.add(offset) }
    }

    /// Reads a 32-bit register.
    pub(crate) fn read32(&self, page: RegPage, offset: usize) -> u32 {
        let p = self.ptr(page, offset, 4).cast::<u32>();
        // SAFETY: in bounds and 4-byte aligned (checked by `ptr`; the base is 64 KiB aligned).
        unsafe { p.read_volatile() }
    }

    /// Writes a 32-bit register.
    pub(crate) fn write32(&self, page: RegPage, offset: usize, v: u32) {
        let p = self.ptr(page, offset, 4).cast::<u32>();
        // SAFETY: in bounds and 4-byte aligned (checked by `ptr`; the base is 64 KiB aligned).
        unsafe { p.write_volatile(v) }
    }

    /// Reads a 64-bit register.
    pub(crate) fn read64(&self, page: RegPage, offset: usize) -> u64 {
        let p = self.ptr(page, offset, 8).cast::<u64>();
        // SAFETY: in bounds and 8-byte aligned (checked by `ptr`; the base is 64 KiB aligned).
        unsafe { p.read_volatile() }
    }

    /// Writes a 64-bit register.
    pub(crate) fn write64(&self, page: RegPage, offset: usize, v: u64) {
        let p = self.ptr(page, offset, 8).cast::<u64>();
        // SAFETY: in bounds and 8-byte aligned (checked by `ptr`; the base is 64 KiB aligned).
        unsafe { p.write_volatile(v) }
    }

    /// Page-0 32-bit read.
    pub(crate) fn r32(&self, offset: usize) -> u32 {
        self.read32(RegPage::Page0, offset)
    }

    /// Page-0 32-bit write.
    pub(crate) fn w32(&self, offset: usize, v: u32) {
        self.write32(RegPage::Page0, offset, v)
    }

    /// Page-0 64-bit read.
    pub(crate) fn r64(&self, offset: usize) -> u64 {
        self.read64(RegPage::Page0, offset)
    }

    /// Page-0 64-bit write.
    pub(crate) fn w64(&self, offset: usize, v: u64) {
        self.write64(RegPage::Page0, offset, v)
    }
}

impl Drop for RegPages {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with `PAGES_LAYOUT`, freed once.
        unsafe { dealloc(self.base.as_ptr(), PAGES_LAYOUT) }
    }
}

/// Reads and writes of one register, as seen by the MMIO hook.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RegCount {
    /// Number of reads.
    pub reads: u64,
    /// Number of writes.
    pub writes: u64,
}

/// MMIO accesses the driver made, per register (IHI 0070 §6.2 offsets), since creation or the
/// last [`reset_mmio_counts`](super::SmmuModel::reset_mmio_counts).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MmioCounts {
    /// Per `(page, first offset of the register)`; unnamed offsets are counted at their own
    /// offset.
    pub per_register: BTreeMap<(RegPage, usize), RegCount>,
    /// Accesses outside both register pages (e.g. another device's pages), by address.
    pub outside: u64,
}

impl MmioCounts {
    pub(crate) fn record(&mut self, page: RegPage, offset: usize, write: bool) {
        let key = lookup(page, offset).map_or(offset, |r| r.0);
        let c = self.per_register.entry((page, key)).or_default();
        if write {
            c.writes += 1;
        } else {
            c.reads += 1;
        }
    }

    /// The counts of the register called `name` (spec spelling: `"CMDQ_PROD"`, `"EVENTQ_CONS"`).
    ///
    /// # Panics
    /// If `name` is not a register name the model knows (a typo in a test).
    pub fn get(&self, name: &str) -> RegCount {
        let key = register_offset(name).unwrap_or_else(|| panic!("unknown register {name}"));
        self.per_register.get(&key).copied().unwrap_or_default()
    }

    /// Reads of the register called `name`.
    pub fn reads(&self, name: &str) -> u64 {
        self.get(name).reads
    }

    /// Writes of the register called `name`.
    pub fn writes(&self, name: &str) -> u64 {
        self.get(name).writes
    }

    /// All register reads.
    pub fn total_reads(&self) -> u64 {
        self.per_register.values().map(|c| c.reads).sum()
    }

    /// All register writes.
    pub fn total_writes(&self) -> u64 {
        self.per_register.values().map(|c| c.writes).sum()
    }

    /// All register accesses (reads and writes).
    pub fn total(&self) -> u64 {
        self.total_reads() + self.total_writes()
    }

    /// `(name, counts)` for every named register that was accessed, in offset order.
    pub fn named(&self) -> Vec<(&'static str, RegCount)> {
        self.per_register
            .iter()
            .filter_map(|(&(p, o), &c)| lookup(p, o).map(|r| (r.1, c)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_are_aligned_and_decode_addresses() {
        let p = RegPages::new();
        let b = p.page0().as_ptr() as usize;
        assert_eq!(b % 0x10000, 0);
        assert_eq!(p.page1().as_ptr() as usize, b + 0x10000);
        assert_eq!(p.decode(b + 0x20), Some((RegPage::Page0, 0x20)));
        assert_eq!(p.decode(b + 0x100AC), Some((RegPage::Page1, 0xAC)));
        assert_eq!(p.decode(b + 0x20000), None);
        assert_eq!(p.decode(b.wrapping_sub(4)), None);
        p.w64(off::STRTAB_BASE, 0x4000_0000_8000_1000);
        assert_eq!(p.r32(off::STRTAB_BASE), 0x8000_1000);
        assert_eq!(p.r32(off::STRTAB_BASE + 4), 0x4000_0000);
        p.write32(RegPage::Page1, off::EVENTQ_CONS, 7);
        assert_eq!(p.read32(RegPage::Page1, off::EVENTQ_CONS), 7);
        assert_eq!(p.r32(off::EVENTQ_CONS), 0, "page 0 is separate memory");
    }

    #[test]
    fn page0_only_layout_aliases_the_page1_registers() {
        let p = RegPages::new();
        let b = p.page0().as_ptr() as usize;
        p.set_page0_only(true);
        assert_eq!(p.decode(b + 0xA8), Some((RegPage::Page1, 0xA8)));
        assert_eq!(p.decode(b + 0xCC), Some((RegPage::Page1, 0xCC)));
        assert_eq!(p.decode(b + 0xA0), Some((RegPage::Page0, 0xA0)));
        assert_eq!(p.decode(b + 0x100A8), None, "no page 1");
        p.write32(RegPage::Page1, off::PRIQ_CONS, 5);
        assert_eq!(p.r32(off::PRIQ_CONS), 5, "stored at the page-0 offset");
        p.set_page0_only(false);
        assert_eq!(p.decode(b + 0xA8), Some((RegPage::Page0, 0xA8)));
        assert_eq!(p.read32(RegPage::Page1, off::PRIQ_CONS), 0);
    }

    #[test]
    fn counts_map_offsets_to_register_names() {
        let mut c = MmioCounts::default();
        c.record(RegPage::Page0, off::CMDQ_PROD, true);
        c.record(RegPage::Page0, off::CMDQ_PROD, true);
        c.record(RegPage::Page0, off::STRTAB_BASE + 4, true);
        c.record(RegPage::Page1, off::EVENTQ_PROD, false);
        c.record(RegPage::Page0, 0x3000, false);
        assert_eq!(c.writes("CMDQ_PROD"), 2);
        assert_eq!(c.writes("STRTAB_BASE"), 1);
        assert_eq!(c.reads("EVENTQ_PROD"), 1);
        assert_eq!(c.reads("CMDQ_CONS"), 0);
        assert_eq!(c.total_reads(), 2);
        assert_eq!(c.total(), 5);
        assert_eq!(c.named().len(), 3);
        assert_eq!(register_offset("PRIQ_CONS"), Some((RegPage::Page1, 0xCC)));
        assert_eq!(register_offset("NOPE"), None);
    }
}
