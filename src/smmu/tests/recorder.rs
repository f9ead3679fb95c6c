//! A rig that records MMIO and cache maintenance in order, checks what a non-coherent SMMU
//! could see, and lends memory that counts and can run out.

use core::ops::Range;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::string::String;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::super::*;
use super::*;
use crate::error::{Error, WaitFor};
use crate::event::{EventRecord, EvtqEntry};
use crate::fake::{DmaArena, ModelPlatform, OverflowStyle, SmmuModel};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Iova, PhysAddr, StreamId, Vmid};
use crate::platform::{DmaBuf, DmaMemory, MmioAccess, Platform};
use crate::pri::{PageRequest, PriqEntry};
use crate::ste::{Granule, S2Config, Ste};

/// QEMU's ID registers plus `idr0` bits, with IDR1.PRIQS = `priqs` when PRI is among them.
pub(super) fn ids(idr0: u32, priqs: u32) -> IdRegs {
    IdRegs {
        idr0: QEMU_VIRT.idr0 | idr0,
        idr1: (QEMU_VIRT.idr1 & !(0x1f << 11)) | (priqs << 11),
        ..QEMU_VIRT
    }
}

pub(super) fn pri_ids(priqs: u32) -> IdRegs {
    ids(IDR0_PRI, priqs)
}

/// A model with a 512 KiB arena (small enough to compare whole in the coherency checker).
pub(super) fn model(ids: IdRegs) -> Arc<SmmuModel> {
    SmmuModel::with_dma(ids, DmaArena::new(512 << 10, DmaArena::DEFAULT_PA_BASE))
}

pub(super) fn page0(m: &SmmuModel) -> &Page0 {
    // SAFETY: the model's register page lives as long as `m`; reading a register is a volatile
    // load of host memory.
    unsafe { m.page0().as_ref() }
}

pub(super) fn rec_evt(sid: u32) -> EvtqEntry {
    EventRecord::translation_fault(StreamId(sid), Iova(u64::from(sid) << 12), true, false).encode()
}

pub(super) fn req(i: u32) -> PriqEntry {
    PageRequest {
        sid: StreamId(i),
        read: true,
        last: true,
        prg_index: (i & 0x1ff) as u16,
        addr: u64::from(i) << 12,
        ..PageRequest::default()
    }
    .encode()
}

pub(super) fn rec_s2(vmid: u16) -> Ste {
    let cfg =
        S2Config::for_ipa_bits(Vmid(vmid), PhysAddr(0x8040_0000), 40, Granule::Size4K).unwrap();
    Ste::stage2(&cfg)
}

/// One thing the driver did, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Ev {
    /// Register access: page (by address), offset, write, value written (writes only; low 32
    /// bits).
    Mmio(u8, usize, bool, u32),
    /// `dma_flush` of `len` bytes at physical address `pa`.
    Flush(u64, usize),
    /// `dma_invalidate` of `len` bytes at physical address `pa`.
    Inval(u64, usize),
}

pub(super) fn w(page: u8, off: usize) -> impl Fn(&Ev) -> bool {
    move |e| matches!(*e, Ev::Mmio(p, o, true, _) if p == page && o == off)
}

pub(super) fn r(page: u8, off: usize) -> impl Fn(&Ev) -> bool {
    move |e| matches!(*e, Ev::Mmio(p, o, false, _) if p == page && o == off)
}

/// What the SMMU can see of the DMA arena when the SMMU is not coherent: CPU stores reach it
/// only through `dma_flush`.
pub(super) struct Coherency {
    /// The bytes as cleaned to memory (indexed from the arena base).
    pub(super) shadow: Vec<u8>,
    /// Ranges (physical) the SMMU writes or never reads (queues it produces into, the driver's
    /// own bookkeeping): not checked.
    pub(super) excluded: Vec<Range<u64>>,
    /// Each MMIO access that found CPU-written bytes not yet cleaned: a description.
    pub(super) violations: Vec<String>,
}

#[derive(Clone)]
pub(super) struct Rec {
    pub(super) inner: ModelPlatform,
    pub(super) m: Arc<SmmuModel>,
    pub(super) p1: usize,
    pub(super) log: Arc<Mutex<Vec<Ev>>>,
    pub(super) coh: Option<Arc<Mutex<Coherency>>>,
}

impl Rec {
    pub(super) fn new(m: &Arc<SmmuModel>, check_coherency: bool) -> Self {
        let coh = check_coherency.then(|| {
            Arc::new(Mutex::new(Coherency {
                shadow: std::vec![0; m.dma().size()],
                excluded: Vec::new(),
                violations: Vec::new(),
            }))
        });
        Self {
            inner: m.platform(),
            m: m.clone(),
            p1: m.page1_ptr().as_ptr().addr(),
            log: Arc::new(Mutex::new(Vec::new())),
            coh,
        }
    }

    pub(super) fn take(&self) -> Vec<Ev> {
        core::mem::take(&mut *self.log.lock().unwrap())
    }

    pub(super) fn exclude(&self, pa: u64, len: usize) {
        if let Some(c) = &self.coh {
            c.lock().unwrap().excluded.push(pa..pa + len as u64);
        }
    }

    pub(super) fn violations(&self) -> Vec<String> {
        self.coh
            .as_ref()
            .map(|c| c.lock().unwrap().violations.clone())
            .unwrap_or_default()
    }

    pub(super) fn arena(&self, len: usize) -> Vec<u8> {
        let mut buf = std::vec![0u8; len];
        self.m
            .dma()
            .read_cpu(self.m.dma().pa_base(), &mut buf)
            .unwrap();
        buf
    }

    /// Compares what the CPU wrote with what was cleaned, over the used part of the arena.
    pub(super) fn check(&self, at: Ev) {
        let Some(c) = &self.coh else { return };
        let used = self.m.dma().used();
        let now = self.arena(used);
        let mut c = c.lock().unwrap();
        let base = self.m.dma().pa_base().0;
        let bad = (0..used).find(|&i| {
            let pa = base + i as u64;
            now[i] != c.shadow[i] && !c.excluded.iter().any(|r| r.contains(&pa))
        });
        if let Some(i) = bad {
            let msg = std::format!(
                "{at:?}: byte at pa {:#x} written by the CPU and not flushed",
                base + i as u64
            );
            c.violations.push(msg);
        }
    }

    pub(super) fn pa(&self, p: NonNull<u8>) -> u64 {
        self.m
            .dma()
            .pa_of(p.as_ptr())
            .expect("cache maintenance outside the lent memory")
            .0
    }
}

impl Platform for Rec {
    fn now_us(&self) -> u64 {
        self.inner.now_us()
    }
    fn relax(&self, what: WaitFor) {
        self.inner.relax(what);
    }
    fn wait_for_event(&self, what: WaitFor) {
        self.inner.wait_for_event(what);
    }
    fn mmio(&self, addr: usize, access: MmioAccess) {
        let write = access == MmioAccess::Write;
        let page = u8::from((self.p1..self.p1 + 0x10000).contains(&addr));
        let off = if page == 1 {
            addr - self.p1
        } else {
            addr.wrapping_sub(self.m.page0_ptr().as_ptr().addr())
        };
        let val = if write {
            // The register's pointer keeps the provenance of the model's register pages.
            let reg = self.m.page0_ptr().as_ptr().with_addr(addr).cast::<u32>();
            // SAFETY: `addr` is one of the driver's register addresses, inside the model's
            // 4-byte aligned register pages (one allocation), which live as long as the model.
            unsafe { reg.read_volatile() }
        } else {
            0
        };
        let ev = Ev::Mmio(page, off, write, val);
        // The SMMU may look at memory at any register access: check before the model runs.
        self.check(ev);
        self.log.lock().unwrap().push(ev);
        self.inner.mmio(addr, access);
    }
    fn dma_flush(&self, vaddr: NonNull<u8>, len: usize) {
        let pa = self.pa(vaddr);
        self.log.lock().unwrap().push(Ev::Flush(pa, len));
        if let Some(c) = &self.coh {
            let mut bytes = std::vec![0u8; len];
            self.m.dma().read_cpu(PhysAddr(pa), &mut bytes).unwrap();
            let off = (pa - self.m.dma().pa_base().0) as usize;
            c.lock().unwrap().shadow[off..off + len].copy_from_slice(&bytes);
        }
    }
    fn dma_invalidate(&self, vaddr: NonNull<u8>, len: usize) {
        let pa = self.pa(vaddr);
        self.log.lock().unwrap().push(Ev::Inval(pa, len));
    }
}

/// One allocation made: physical address, size, alignment.
pub(super) type Alloc = (u64, usize, usize);

/// The model's arena with a byte budget (exact bytes, padding not counted) and a log of every
/// allocation.
#[derive(Clone)]
pub(super) struct CountingDma {
    pub(super) m: Arc<SmmuModel>,
    pub(super) allocs: Arc<Mutex<Vec<Alloc>>>,
    pub(super) budget: Arc<AtomicUsize>,
}

impl CountingDma {
    pub(super) fn new(m: &Arc<SmmuModel>, budget: usize) -> Self {
        Self {
            m: m.clone(),
            allocs: Arc::new(Mutex::new(Vec::new())),
            budget: Arc::new(AtomicUsize::new(budget)),
        }
    }

    pub(super) fn allocs(&self) -> Vec<Alloc> {
        self.allocs.lock().unwrap().clone()
    }
}

// SAFETY: every buffer comes from the model's `DmaArena`, which meets the contract; the budget
// only refuses requests.
unsafe impl DmaMemory for CountingDma {
    fn alloc(&self, size: usize, align: usize) -> Option<DmaBuf> {
        let left = self.budget.load(Ordering::SeqCst);
        if size > left {
            return None;
        }
        let b = self.m.dma().alloc(size, align)?;
        self.budget.store(left - size, Ordering::SeqCst);
        self.allocs.lock().unwrap().push((b.paddr.0, size, align));
        Some(b)
    }
}

pub(super) struct H<D: DmaMemory = CountingDma> {
    pub(super) m: Arc<SmmuModel>,
    pub(super) d: Smmu<Rec, D>,
    pub(super) rec: Rec,
}

impl<D: DmaMemory> H<D> {
    pub(super) fn with(
        m: Arc<SmmuModel>,
        dma: D,
        config: Config,
        check: bool,
    ) -> Result<Self, Error> {
        let rec = Rec::new(&m, check);
        // SAFETY: the model's pages live as long as `m`, which `H` keeps; nothing else drives
        // them.
        let d = unsafe { Smmu::new(m.page0(), m.page1(), rec.clone(), dma, config) }?;
        Ok(Self { m, d, rec })
    }
}

impl H {
    pub(super) fn new(ids: IdRegs, config: Config) -> Self {
        let m = model(ids);
        let dma = CountingDma::new(&m, usize::MAX);
        Self::with(m, dma, config, false).unwrap()
    }

    pub(super) fn reset(ids: IdRegs, config: Config) -> Self {
        let h = Self::new(ids, config);
        h.d.reset().unwrap();
        h
    }

    /// Reset, on a model with PRI (IDR1.PRIQS = 9) whose PRI queue has 8 slots and overflows
    /// in `style`.
    pub(super) fn small_priq(style: OverflowStyle) -> Self {
        let config = Config {
            priq_log2: Some(3),
            ..Config::default()
        };
        let h = Self::reset(pri_ids(9), config);
        h.m.set_pri_overflow(style);
        h
    }
}
