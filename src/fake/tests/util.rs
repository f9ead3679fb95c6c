//! Raw register access helpers: write the register memory, then call the hook, as the driver's
//! `tock-registers` accesses plus `Platform::mmio` do.

use std::sync::Arc;

use crate::fake::regs::{RegPage, register_offset};
use crate::fake::{ModelPlatform, SmmuModel};
use crate::platform::{MmioAccess, Platform};

/// A model and its platform, with raw register accessors.
pub(crate) struct Rig {
    pub(crate) smmu: Arc<SmmuModel>,
    pub(crate) plat: ModelPlatform,
}

impl Rig {
    pub(crate) fn qemu() -> Self {
        let smmu = SmmuModel::qemu_virt();
        let plat = smmu.platform();
        Self { smmu, plat }
    }

    /// The register called `name`, as a pointer derived from the model's page (so it keeps the
    /// allocation's provenance; the hook gets its address).
    fn reg(&self, name: &str) -> *mut u8 {
        let (page, off) = register_offset(name).unwrap_or_else(|| panic!("no register {name}"));
        let base = match page {
            RegPage::Page0 => self.smmu.page0_ptr(),
            RegPage::Page1 => self.smmu.page1_ptr(),
        };
        base.as_ptr().wrapping_add(off)
    }

    pub(crate) fn read32(&self, name: &str) -> u32 {
        let p = self.reg(name).cast::<u32>();
        self.plat.mmio(p.addr(), MmioAccess::Read);
        // SAFETY: `p` is a 4-byte aligned register inside the model's register pages, which
        // live as long as `self.smmu`; the model only touches them from this thread's hook.
        unsafe { p.read_volatile() }
    }

    pub(crate) fn write32(&self, name: &str, v: u32) {
        let p = self.reg(name).cast::<u32>();
        // SAFETY: as in `read32`.
        unsafe { p.write_volatile(v) };
        self.plat.mmio(p.addr(), MmioAccess::Write);
    }

    pub(crate) fn read64(&self, name: &str) -> u64 {
        let p = self.reg(name).cast::<u64>();
        self.plat.mmio(p.addr(), MmioAccess::Read);
        // SAFETY: `p` is an 8-byte aligned 64-bit register inside the model's register pages
        // (the table names 64-bit registers only at 8-byte offsets); otherwise as in `read32`.
        unsafe { p.read_volatile() }
    }

    pub(crate) fn write64(&self, name: &str, v: u64) {
        let p = self.reg(name).cast::<u64>();
        // SAFETY: as in `read64`.
        unsafe { p.write_volatile(v) };
        self.plat.mmio(p.addr(), MmioAccess::Write);
    }

    /// Writes CR0 and polls CR0ACK up to `polls` times; returns whether it matched.
    pub(crate) fn cr0_sync(&self, v: u32, polls: u32) -> bool {
        self.write32("CR0", v);
        (0..polls).any(|_| self.read32("CR0ACK") == v)
    }
}

use crate::command::{CmdqEntry, Command};
use crate::event::EvtqEntry;
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::PhysAddr;
use crate::platform::{DmaBuf, DmaMemory};
use crate::pri::PriqEntry;
use crate::ste::{L1Std, Ste};

/// CR0 bits.
pub(crate) const SMMUEN: u32 = 1 << 0;
pub(crate) const PRIQEN: u32 = 1 << 1;
pub(crate) const EVENTQEN: u32 = 1 << 2;
pub(crate) const CMDQEN: u32 = 1 << 3;

/// QEMU's IDRs plus MSI, SEV and PRI (IDR0 bits 13, 14, 16; IDR1.PRIQS = 8).
pub(crate) fn msi_idregs() -> IdRegs {
    IdRegs {
        idr0: QEMU_VIRT.idr0 | (1 << 13) | (1 << 14) | (1 << 16),
        idr1: QEMU_VIRT.idr1 | (8 << 11),
        ..QEMU_VIRT
    }
}

impl Rig {
    pub(crate) fn with(idregs: IdRegs) -> Self {
        let smmu = SmmuModel::new(idregs);
        let plat = smmu.platform();
        Self { smmu, plat }
    }

    pub(crate) fn alloc(&self, size: usize) -> DmaBuf {
        self.smmu
            .dma()
            .alloc(size, size.next_power_of_two())
            .unwrap()
    }

    /// Programs a command queue of `2^log2` entries and enables it.
    pub(crate) fn enable_cmdq(&self, log2: u8) -> DmaBuf {
        let q = self.alloc(16 << log2);
        self.write64("CMDQ_BASE", (1 << 62) | q.paddr.0 | u64::from(log2));
        self.write32("CMDQ_PROD", 0);
        self.write32("CMDQ_CONS", 0);
        let cr0 = self.smmu.cr0() | CMDQEN;
        assert!(self.cr0_sync(cr0, 1));
        q
    }

    pub(crate) fn cmdq_slot(&self, q: &DmaBuf, log2: u8, pos: u32) -> PhysAddr {
        q.paddr.add(16 * u64::from(pos & ((1 << log2) - 1)))
    }

    /// Writes raw entries at PROD and publishes them with one PROD write.
    pub(crate) fn submit_raw(&self, q: &DmaBuf, log2: u8, entries: &[CmdqEntry]) {
        let mask = (2u32 << log2) - 1;
        let mut prod = self.read32("CMDQ_PROD") & mask;
        for e in entries {
            let slot = self.cmdq_slot(q, log2, prod);
            self.smmu.dma().write_dwords(slot, &e.0).unwrap();
            prod = (prod + 1) & mask;
        }
        self.write32("CMDQ_PROD", prod);
    }

    pub(crate) fn submit(&self, q: &DmaBuf, log2: u8, cmds: &[Command]) {
        let raw: Vec<CmdqEntry> = cmds.iter().map(Command::encode).collect();
        self.submit_raw(q, log2, &raw);
    }

    /// CMDQ_CONS index+wrap (no ERR).
    pub(crate) fn cmdq_cons(&self, log2: u8) -> u32 {
        self.read32("CMDQ_CONS") & ((2 << log2) - 1)
    }

    pub(crate) fn cons_err(&self) -> u32 {
        (self.read32("CMDQ_CONS") >> 24) & 0x7f
    }

    /// Programs an event queue of `2^log2` entries and enables it.
    pub(crate) fn enable_evtq(&self, log2: u8) -> DmaBuf {
        let q = self.alloc(32 << log2);
        self.write64("EVENTQ_BASE", (1 << 62) | q.paddr.0 | u64::from(log2));
        self.write32("EVENTQ_PROD", 0);
        self.write32("EVENTQ_CONS", 0);
        let cr0 = self.smmu.cr0() | EVENTQEN;
        assert!(self.cr0_sync(cr0, 1));
        q
    }

    /// Programs a PRI queue of `2^log2` entries and enables it.
    pub(crate) fn enable_priq(&self, log2: u8) -> DmaBuf {
        let q = self.alloc(16 << log2);
        self.write64("PRIQ_BASE", (1 << 62) | q.paddr.0 | u64::from(log2));
        self.write32("PRIQ_PROD", 0);
        self.write32("PRIQ_CONS", 0);
        let cr0 = self.smmu.cr0() | PRIQEN;
        assert!(self.cr0_sync(cr0, 1));
        q
    }

    pub(crate) fn event_at(&self, q: &DmaBuf, index: u32) -> EvtqEntry {
        EvtqEntry(
            self.smmu
                .dma()
                .read_dwords(q.paddr.add(32 * u64::from(index)))
                .unwrap(),
        )
    }

    pub(crate) fn pri_at(&self, q: &DmaBuf, index: u32) -> PriqEntry {
        PriqEntry(
            self.smmu
                .dma()
                .read_dwords(q.paddr.add(16 * u64::from(index)))
                .unwrap(),
        )
    }

    /// A linear stream table of `2^log2` STEs, every entry abort, programmed (not enabled).
    pub(crate) fn linear_strtab(&self, log2: u8) -> DmaBuf {
        let t = self.alloc(64 << log2);
        for sid in 0..1u32 << log2 {
            self.write_ste_at(t.paddr.add(64 * u64::from(sid)), Ste::ABORT);
        }
        self.write64("STRTAB_BASE", (1 << 62) | t.paddr.0);
        self.write32("STRTAB_BASE_CFG", u32::from(log2));
        t
    }

    /// A 2-level stream table of `2^log2` StreamIDs with SPLIT 8 and every L1 invalid.
    pub(crate) fn two_level_strtab(&self, log2: u8) -> DmaBuf {
        let l1 = self.alloc(8 << (log2 - 8));
        self.write64("STRTAB_BASE", (1 << 62) | l1.paddr.0);
        self.write32("STRTAB_BASE_CFG", (1 << 16) | (8 << 6) | u32::from(log2));
        l1
    }

    /// Adds an L2 table (256 abort STEs) for StreamIDs `group << 8 ..`.
    pub(crate) fn add_l2(&self, l1: &DmaBuf, group: u32, span: u8) -> DmaBuf {
        let l2 = self.alloc(64 << 8);
        for i in 0..256 {
            self.write_ste_at(l2.paddr.add(64 * i), Ste::ABORT);
        }
        let d = L1Std::new(l2.paddr, span).unwrap();
        self.smmu
            .dma()
            .write_u64(l1.paddr.add(8 * u64::from(group)), d.0)
            .unwrap();
        l2
    }

    pub(crate) fn write_ste_at(&self, at: PhysAddr, ste: Ste) {
        self.smmu.dma().write_dwords(at, &ste.0).unwrap();
    }

    pub(crate) fn write_linear_ste(&self, t: &DmaBuf, sid: u32, ste: Ste) {
        self.write_ste_at(t.paddr.add(64 * u64::from(sid)), ste);
    }

    /// Enables translation (CR0.SMMUEN with what is already on).
    pub(crate) fn enable_smmu(&self) {
        let cr0 = self.smmu.cr0() | SMMUEN;
        assert!(self.cr0_sync(cr0, 1));
    }
}
