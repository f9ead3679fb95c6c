//! The driver paths the first round of model tests left out: PRI queue reset, drains and
//! overflow, the CN99xx page-0-only layout, E2H, ATSCHK, non-coherent SMMUs (every byte the
//! SMMU can see was cleaned to memory first), drains racing with producers, and the memory
//! plan against real allocations.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use core::ops::Range;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::string::String;
use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::*;
use crate::command::Command;
use crate::error::{Error, WaitFor};
use crate::event::{EventRecord, EvtqEntry};
use crate::fake::{
    AckBehaviour, AckReg, CmdqFault, DmaOutcome, FakeDma, FakePlatform, FakeSmmu, HostSink,
    OverflowStyle,
};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Iova, PhysAddr, StreamId, Vmid};
use crate::platform::{BumpDma, DmaBuf, MmioAccess, Platform};
use crate::pri::{PageRequest, PriqEntry};
use crate::regs::offset;
use crate::ste::{Granule, S2Config, Ste, StreamTableLayout};

const IDR0_COHACC: u32 = 1 << 4;
const IDR0_HYP: u32 = 1 << 9;
const IDR0_ATS: u32 = 1 << 10;
const IDR0_MSI: u32 = 1 << 13;
const IDR0_PRI: u32 = 1 << 16;

const CR0_SMMUEN: u32 = 1 << 0;
const CR0_PRIQEN: u32 = 1 << 1;
const CR0_EVENTQEN: u32 = 1 << 2;
const CR0_CMDQEN: u32 = 1 << 3;
const CR0_ATSCHK: u32 = 1 << 4;

/// QEMU's ID registers plus `idr0` bits, with IDR1.PRIQS = `priqs` when PRI is among them.
fn ids(idr0: u32, priqs: u32) -> IdRegs {
    IdRegs {
        idr0: QEMU_VIRT.idr0 | idr0,
        idr1: (QEMU_VIRT.idr1 & !(0x1f << 11)) | (priqs << 11),
        ..QEMU_VIRT
    }
}

fn pri_ids(priqs: u32) -> IdRegs {
    ids(IDR0_PRI, priqs)
}

/// A model with a 512 KiB arena (small enough to compare whole in the coherency checker).
fn model(ids: IdRegs) -> Arc<FakeSmmu> {
    FakeSmmu::with_dma(ids, FakeDma::new(512 << 10, FakeDma::DEFAULT_PA_BASE))
}

fn page0(m: &FakeSmmu) -> &Page0 {
    // SAFETY: the model's register page lives as long as `m`; reading a register is a volatile
    // load of host memory.
    unsafe { m.page0().as_ref() }
}

fn evt(sid: u32) -> EvtqEntry {
    EventRecord::translation_fault(StreamId(sid), Iova(u64::from(sid) << 12), true, false).encode()
}

fn req(i: u32) -> PriqEntry {
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

fn s2(vmid: u16) -> Ste {
    let cfg =
        S2Config::for_ipa_bits(Vmid(vmid), PhysAddr(0x8040_0000), 40, Granule::Size4K).unwrap();
    Ste::stage2(&cfg)
}

// ----- a platform that records MMIO and cache maintenance in order -----

/// One thing the driver did, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// Register access: page (by address), offset, write, value written (writes only; low 32
    /// bits).
    Mmio(u8, usize, bool, u32),
    /// `dma_flush` of `len` bytes at physical address `pa`.
    Flush(u64, usize),
    /// `dma_invalidate` of `len` bytes at physical address `pa`.
    Inval(u64, usize),
}

fn w(page: u8, off: usize) -> impl Fn(&Ev) -> bool {
    move |e| matches!(*e, Ev::Mmio(p, o, true, _) if p == page && o == off)
}

fn r(page: u8, off: usize) -> impl Fn(&Ev) -> bool {
    move |e| matches!(*e, Ev::Mmio(p, o, false, _) if p == page && o == off)
}

/// What the SMMU can see of the DMA arena when the SMMU is not coherent: CPU stores reach it
/// only through `dma_flush`.
struct Coherency {
    /// The bytes as cleaned to memory (indexed from the arena base).
    shadow: Vec<u8>,
    /// Ranges (physical) the SMMU writes or never reads (queues it produces into, the driver's
    /// own bookkeeping): not checked.
    excluded: Vec<Range<u64>>,
    /// Each MMIO access that found CPU-written bytes not yet cleaned: a description.
    violations: Vec<String>,
}

#[derive(Clone)]
struct Rec {
    inner: FakePlatform,
    m: Arc<FakeSmmu>,
    p1: usize,
    log: Arc<Mutex<Vec<Ev>>>,
    coh: Option<Arc<Mutex<Coherency>>>,
}

impl Rec {
    fn new(m: &Arc<FakeSmmu>, check_coherency: bool) -> Self {
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

    fn take(&self) -> Vec<Ev> {
        core::mem::take(&mut *self.log.lock().unwrap())
    }

    fn exclude(&self, pa: u64, len: usize) {
        if let Some(c) = &self.coh {
            c.lock().unwrap().excluded.push(pa..pa + len as u64);
        }
    }

    fn violations(&self) -> Vec<String> {
        self.coh
            .as_ref()
            .map(|c| c.lock().unwrap().violations.clone())
            .unwrap_or_default()
    }

    fn arena(&self, len: usize) -> Vec<u8> {
        let mut buf = std::vec![0u8; len];
        self.m
            .dma()
            .read_cpu(self.m.dma().pa_base(), &mut buf)
            .unwrap();
        buf
    }

    /// Compares what the CPU wrote with what was cleaned, over the used part of the arena.
    fn check(&self, at: Ev) {
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

    fn pa(&self, p: NonNull<u8>) -> u64 {
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

// ----- lent memory that counts and can run out -----

/// One allocation made: physical address, size, alignment.
type Alloc = (u64, usize, usize);

/// The model's arena with a byte budget (exact bytes, padding not counted) and a log of every
/// allocation.
#[derive(Clone)]
struct CountingDma {
    m: Arc<FakeSmmu>,
    allocs: Arc<Mutex<Vec<Alloc>>>,
    budget: Arc<AtomicUsize>,
}

impl CountingDma {
    fn new(m: &Arc<FakeSmmu>, budget: usize) -> Self {
        Self {
            m: m.clone(),
            allocs: Arc::new(Mutex::new(Vec::new())),
            budget: Arc::new(AtomicUsize::new(budget)),
        }
    }

    fn allocs(&self) -> Vec<Alloc> {
        self.allocs.lock().unwrap().clone()
    }
}

// SAFETY: every buffer comes from the model's `FakeDma`, which meets the contract; the budget
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

struct H<D: DmaMemory = CountingDma> {
    m: Arc<FakeSmmu>,
    d: Smmu<Rec, D>,
    rec: Rec,
}

impl<D: DmaMemory> H<D> {
    fn with(m: Arc<FakeSmmu>, dma: D, config: Config, check: bool) -> Result<Self, Error> {
        let rec = Rec::new(&m, check);
        // SAFETY: the model's pages live as long as `m`, which `H` keeps; nothing else drives
        // them.
        let d = unsafe { Smmu::new(m.page0(), m.page1(), rec.clone(), dma, config) }?;
        Ok(Self { m, d, rec })
    }
}

impl H {
    fn new(ids: IdRegs, config: Config) -> Self {
        let m = model(ids);
        let dma = CountingDma::new(&m, usize::MAX);
        Self::with(m, dma, config, false).unwrap()
    }

    fn reset(ids: IdRegs, config: Config) -> Self {
        let h = Self::new(ids, config);
        h.d.reset().unwrap();
        h
    }
}

// ----- 1. PRI queue -----

#[test]
fn reset_with_pri_programs_the_queue_acks_priqen_and_sets_lo() {
    let h = H::new(pri_ids(9), Config::default());
    h.rec.take();
    h.d.reset().unwrap();
    let log = h.rec.take();
    let pos = |f: &dyn Fn(&Ev) -> bool| log.iter().position(f).unwrap();
    let base_w = pos(&w(0, offset::PRIQ_BASE));
    let prod_w = pos(&w(1, offset::PRIQ_PROD));
    let cons_w = pos(&w(1, offset::PRIQ_CONS));
    let evtq_en = pos(
        &|e: &Ev| matches!(*e, Ev::Mmio(0, o, true, v) if o == offset::CR0 && v & CR0_EVENTQEN != 0),
    );
    let priq_en = pos(
        &|e: &Ev| matches!(*e, Ev::Mmio(0, o, true, v) if o == offset::CR0 && v & CR0_PRIQEN != 0),
    );
    let cfg2_w = pos(&w(0, offset::PRIQ_IRQ_CFG2));
    let irq_on = log
        .iter()
        .rposition(|e| matches!(*e, Ev::Mmio(0, o, true, v) if o == offset::IRQ_CTRL && v != 0))
        .unwrap();
    // Base and indices while PRIQEN is off, after the event queue, then PRIQEN and its ACK.
    assert!(evtq_en < base_w && base_w < prod_w && prod_w < cons_w && cons_w < priq_en);
    assert!(matches!(log[prod_w], Ev::Mmio(1, _, true, 0)));
    assert!(matches!(log[cons_w], Ev::Mmio(1, _, true, 0)));
    assert!(r(0, offset::CR0ACK)(&log[priq_en + 1]), "PRIQEN ACK polled");
    // LO written (0: interrupt on empty to non-empty) before the interrupts are enabled.
    assert!(cfg2_w < irq_on);
    let Ev::Mmio(_, _, _, cfg2) = log[cfg2_w] else {
        unreachable!()
    };
    assert_eq!(cfg2 & (1 << 31), 0, "LO = 0");
    let Ev::Mmio(_, _, _, irq) = log[irq_on] else {
        unreachable!()
    };
    assert_eq!(irq, 0b111, "PRIQ_IRQEN with GERROR and EVENTQ");
    // PRIQ_BASE: WA | the lent queue | LOG2SIZE (default 7, within PRIQS 9).
    let base = page0(&h.m).PRIQ_BASE.get();
    let plan = *h.d.plan();
    let arena = h.m.dma().pa_base().0;
    assert_eq!(base & 0x1f, 7);
    assert_eq!(base >> 62, 1, "WA");
    let addr = base & 0x00ff_ffff_ffff_ffe0;
    assert!(addr >= arena);
    assert_eq!(addr % plan.priq.unwrap().align as u64, 0);
    assert_eq!(
        plan.priq,
        Some(Region {
            bytes: 2048,
            align: 2048
        })
    );
    assert_eq!(
        h.m.cr0(),
        CR0_SMMUEN | CR0_PRIQEN | CR0_EVENTQEN | CR0_CMDQEN
    );
    assert_eq!(page0(&h.m).PRIQ_IRQ_CFG2.get() >> 31, 0);
}

#[test]
fn priq_drains_cost_at_most_three_mmio_accesses() {
    let h = H::reset(
        pri_ids(9),
        Config {
            priq_log2: Some(9),
            ..Config::default()
        },
    );
    let mut seen = 0;
    for n in [1u32, 16, 256] {
        for i in 0..n {
            h.m.inject_pri(req(seen + i));
        }
        h.m.reset_mmio_counts();
        let mut sink = HostSink::default();
        let st = h.d.drain_priq(&mut sink);
        let c = h.m.mmio_counts();
        assert_eq!(c.total(), 3, "n = {n}");
        assert_eq!((c.reads("PRIQ_PROD"), c.writes("PRIQ_CONS")), (2, 1));
        assert_eq!((st.mmio, st.records, st.extra_passes), (3, n, 0));
        assert_eq!(sink.requests, (seen..seen + n).map(req).collect::<Vec<_>>());
        seen += n;
    }
    h.m.reset_mmio_counts();
    let st = h.d.drain_priq(&mut HostSink::default());
    assert_eq!((st.records, st.mmio, h.m.mmio_counts().total()), (0, 1, 1));
    assert_eq!(h.d.counters().pri_requests, 1 + 16 + 256);
    assert_eq!(h.m.pri_stats().written, 1 + 16 + 256);
}

#[test]
fn priq_overflow_hardware_style_is_acked_in_the_one_cons_write() {
    let h = H::reset(
        pri_ids(9),
        Config {
            priq_log2: Some(3),
            ..Config::default()
        },
    );
    h.m.set_pri_overflow(OverflowStyle::Hardware);
    for round in 0..2u32 {
        for i in 0..12 {
            h.m.inject_pri(req(i));
        }
        assert_eq!(h.m.pri_stats().dropped_full, 4 * u64::from(round + 1));
        let prod = h.rec.m.pri_stats().overflows;
        assert_eq!(prod, u64::from(round + 1), "OVFLG toggled once per episode");
        h.rec.take();
        let mut sink = HostSink::default();
        let st = h.d.drain_priq(&mut sink);
        assert_eq!((st.records, st.overflows, sink.pri_overflows), (8, 1, 1));
        assert_eq!(sink.requests, (0..8).map(req).collect::<Vec<_>>());
        let log = h.rec.take();
        let cons: Vec<u32> = log
            .iter()
            .filter_map(|e| match *e {
                Ev::Mmio(1, o, true, v) if o == offset::PRIQ_CONS => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(cons.len(), 1, "one CONS write");
        assert_eq!(st.mmio, 3);
        // OVACKFLG now equals OVFLG (toggled `round + 1` times), index/wrap past the 8 records.
        let ovflg = (round + 1) % 2;
        assert_eq!(cons[0] >> 31, ovflg);
        assert_eq!(cons[0] & 0xf, (8 * (round + 1)) & 0xf);
    }
    assert_eq!(h.d.counters().pri_overflows, 2);
    // A quiet period reports none, and nothing is dropped any more.
    h.m.inject_pri(req(1));
    let st = h.d.drain_priq(&mut HostSink::default());
    assert_eq!((st.records, st.overflows), (1, 0));
    assert_eq!(h.m.pri_stats().dropped_full, 8);
}

#[test]
fn priq_overflow_qemu_style_goes_through_gerror_and_the_next_drain() {
    let h = H::reset(
        pri_ids(9),
        Config {
            priq_log2: Some(3),
            ..Config::default()
        },
    );
    h.m.set_pri_overflow(OverflowStyle::Qemu);
    for i in 0..10 {
        h.m.inject_pri(req(i));
    }
    assert_eq!(h.m.pri_stats().overflows, 0, "QEMU never toggles OVFLG");
    assert_eq!(h.m.gerror_active(), 1 << 3);
    let g = h.d.handle_gerror();
    assert_eq!((g.active, g.acked), (1 << 3, 1 << 3));
    assert!(g.drain_priq && !g.drain_evtq);
    assert_eq!(h.m.gerror_active(), 0);
    let mut sink = HostSink::default();
    let st = h.d.drain_priq(&mut sink);
    assert_eq!((st.records, st.overflows, sink.pri_overflows), (8, 1, 1));
    // The event queue is not told about the PRI loss.
    let mut ev = HostSink::default();
    assert_eq!(h.d.drain_evtq(&mut ev).overflows, 0);
    assert_eq!(ev.overflows, 0);
    let c = h.d.counters();
    assert_eq!((c.gerror.priq_abt_err, c.pri_overflows), (1, 1));
    // Reported once.
    h.m.inject_pri(req(3));
    let st = h.d.drain_priq(&mut sink);
    assert_eq!((st.records, st.overflows), (1, 0));
    assert_eq!(sink.pri_overflows, 1);
}

// ----- 2. PAGE0_REGS_ONLY -----

#[test]
fn the_model_page0_only_layout_hides_page1() {
    // Without the quirk the driver uses page 1, which this SMMU does not have: the model never
    // sees the accesses and the drains find nothing (the knob is real).
    let m = model(pri_ids(9));
    m.set_page0_regs_only(true);
    let h = H::with(
        m.clone(),
        CountingDma::new(&m, usize::MAX),
        Config::default(),
        false,
    )
    .unwrap();
    h.d.reset().unwrap();
    m.inject_event(evt(1));
    m.reset_mmio_counts();
    let st = h.d.drain_evtq(&mut HostSink::default());
    assert_eq!(st.records, 0);
    assert_eq!(m.mmio_counts().outside, 1);
}

#[test]
fn page0_regs_only_quirk_drains_and_resets_without_touching_page1() {
    let m = model(pri_ids(9));
    m.set_page0_regs_only(true);
    let config = Config {
        quirks: Quirks::PAGE0_REGS_ONLY,
        ..Config::default()
    };
    let h = H::with(m.clone(), CountingDma::new(&m, usize::MAX), config, false).unwrap();
    for _ in 0..2 {
        h.d.reset().unwrap();
        let log = h.rec.take();
        for (reg, name) in [
            (offset::EVENTQ_PROD, "EVENTQ_PROD"),
            (offset::EVENTQ_CONS, "EVENTQ_CONS"),
            (offset::PRIQ_PROD, "PRIQ_PROD"),
            (offset::PRIQ_CONS, "PRIQ_CONS"),
        ] {
            assert!(
                log.iter().any(w(0, reg)),
                "{name} reset at its page-0 offset"
            );
        }
        assert_eq!(
            h.m.cr0() & (CR0_EVENTQEN | CR0_PRIQEN),
            CR0_EVENTQEN | CR0_PRIQEN
        );
        for round in 0..3u32 {
            for i in 0..5 {
                m.inject_event(evt(round * 5 + i));
                m.inject_pri(req(round * 5 + i));
            }
            m.reset_mmio_counts();
            let mut ev = HostSink::default();
            let mut pri = HostSink::default();
            let se = h.d.drain_evtq(&mut ev);
            let sp = h.d.drain_priq(&mut pri);
            assert_eq!((se.records, se.mmio), (5, 3));
            assert_eq!((sp.records, sp.mmio), (5, 3));
            let want: Vec<_> = (round * 5..round * 5 + 5).collect();
            assert_eq!(ev.events, want.iter().map(|&i| evt(i)).collect::<Vec<_>>());
            assert_eq!(
                pri.requests,
                want.iter().map(|&i| req(i)).collect::<Vec<_>>()
            );
            let c = m.mmio_counts();
            assert_eq!(c.outside, 0);
            assert_eq!((c.reads("EVENTQ_PROD"), c.writes("EVENTQ_CONS")), (2, 1));
            assert_eq!((c.reads("PRIQ_PROD"), c.writes("PRIQ_CONS")), (2, 1));
        }
        // Overflow through the aliased PROD.OVFLG.
        for i in 0..200 {
            m.inject_event(evt(i));
        }
        let mut ev = HostSink::default();
        let st = h.d.drain_evtq(&mut ev);
        assert_eq!((st.records, st.overflows, ev.overflows), (128, 1, 1));
        let log = h.rec.take();
        assert!(
            !log.iter().any(|e| matches!(e, Ev::Mmio(1, ..))),
            "page 1 touched"
        );
    }
}

// ----- 3. E2H -----

#[test]
fn e2h_sets_cr2_e2h_with_hyp_and_is_ignored_without() {
    const PTM_RECINVSID: u32 = 0b110;
    for (idr0, e2h, cr2, el2) in [
        (IDR0_HYP, true, PTM_RECINVSID | 1, true),
        (IDR0_HYP, false, PTM_RECINVSID, true),
        (0, true, PTM_RECINVSID, false),
        (0, false, PTM_RECINVSID, false),
    ] {
        let h = H::reset(
            ids(idr0, 0),
            Config {
                e2h,
                ..Config::default()
            },
        );
        assert_eq!(page0(&h.m).CR2.get(), cr2, "HYP {idr0:#x} e2h {e2h}");
        let mut want = std::vec![Command::CfgiAll];
        if el2 {
            want.push(Command::TlbiEl2All);
        }
        want.extend([Command::TlbiNsnhAll, Command::sync()]);
        assert_eq!(h.m.take_commands(), want);
        // CR2 written once, while CR0 is 0.
        assert_eq!(h.m.mmio_counts().writes("CR2"), 1);
    }
}

// ----- 4. ATSCHK -----

#[test]
fn atschk_is_set_and_acknowledged_with_ats() {
    let h = H::new(ids(IDR0_ATS, 0), Config::default());
    h.rec.take();
    h.d.reset().unwrap();
    let log = h.rec.take();
    let cr0: Vec<(usize, u32)> = log
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match *e {
            Ev::Mmio(0, o, true, v) if o == offset::CR0 => Some((i, v)),
            _ => None,
        })
        .collect();
    let (i, v) = *cr0.iter().find(|(_, v)| v & CR0_ATSCHK != 0).unwrap();
    assert_eq!(v, CR0_ATSCHK | CR0_EVENTQEN | CR0_CMDQEN, "before SMMUEN");
    assert!(r(0, offset::CR0ACK)(&log[i + 1]));
    assert_eq!(
        h.m.cr0(),
        CR0_SMMUEN | CR0_ATSCHK | CR0_EVENTQEN | CR0_CMDQEN
    );
    assert_eq!(page0(&h.m).CR0ACK.get(), h.m.cr0());
    // Without ATS: never set.
    let h = H::reset(QEMU_VIRT, Config::default());
    assert_eq!(h.m.cr0() & CR0_ATSCHK, 0);
}

// ----- 5. non-coherent SMMU -----

/// A driver over a non-coherent SMMU with the coherency checker on; the driver's bookkeeping
/// and the queues the SMMU writes are excluded from the check.
fn noncoherent(idr: IdRegs, config: Config) -> H {
    let m = model(idr);
    let dma = CountingDma::new(&m, usize::MAX);
    let h = H::with(m, dma.clone(), config, true).unwrap();
    let plan = *h.d.plan();
    let a = dma.allocs();
    let mut k = 1;
    if plan.l2_index.is_some() {
        h.rec.exclude(a[k].0, a[k].1);
        k += 1;
    }
    // cmdq at k: checked. Event queue and PRI queue: written by the SMMU.
    for q in &a[k + 1..] {
        h.rec.exclude(q.0, q.1);
    }
    h
}

/// Invalidations in `log` between each PROD read of the queue at page-1 `prod` and the next CONS
/// write must be exactly the slots consumed, `bytes` each, from `base` + index.
fn check_invalidates(log: &[Ev], prod: usize, cons: usize, base: u64, log2: u8, bytes: usize) {
    let mut last_cons = None::<u32>;
    let mut pending: Vec<(u64, usize)> = Vec::new();
    let mut seen_prod = false;
    let mask = (1u32 << log2) - 1;
    let wrap_mask = (2u32 << log2) - 1;
    for e in log {
        match *e {
            Ev::Mmio(1, o, false, _) if o == prod => seen_prod = true,
            Ev::Inval(pa, len) if (base..base + (bytes << log2) as u64).contains(&pa) => {
                assert!(seen_prod, "slot invalidated before PROD was read");
                pending.push((pa, len));
            }
            Ev::Mmio(1, o, true, v) if o == cons => {
                let from = last_cons.unwrap_or(0) & wrap_mask;
                let n = (v & wrap_mask).wrapping_sub(from) & wrap_mask;
                let want: Vec<(u64, usize)> = (0..n)
                    .map(|i| (base + u64::from((from + i) & mask) * bytes as u64, bytes))
                    .collect();
                assert_eq!(pending, want, "invalidations before CONS {v:#x}");
                pending.clear();
                last_cons = Some(v);
            }
            _ => {}
        }
    }
}

#[test]
fn non_coherent_smmu_gets_non_cacheable_cr1_and_no_msi_sync() {
    for (idr, coherent) in [
        (ids(IDR0_MSI, 0), Some(false)),
        (
            IdRegs {
                idr0: (QEMU_VIRT.idr0 | IDR0_MSI) & !IDR0_COHACC,
                ..QEMU_VIRT
            },
            None,
        ),
    ] {
        let config = Config {
            coherent,
            ..Config::default()
        };
        let h = H::reset(idr, config);
        assert!(!h.d.coherent());
        assert_eq!(page0(&h.m).CR1.get(), CR1_NON_COHERENT);
        assert_eq!(page0(&h.m).CR1.get() & 0x3cf, 0, "IC = OC = 0");
        assert_eq!(h.d.completion(), Completion::Poll, "Auto: no MSI polling");
        let msi = Config {
            sync: SyncMode::Msi,
            ..config
        };
        let m = model(idr);
        assert_eq!(
            H::with(m.clone(), CountingDma::new(&m, usize::MAX), msi, false).err(),
            Some(Error::Unsupported(Feature::Msi))
        );
    }
    // The same SMMU declared coherent: WB/ISH and MSI completion.
    let h = H::reset(ids(IDR0_MSI, 0), Config::default());
    assert_eq!(page0(&h.m).CR1.get(), CR1_COHERENT);
    assert_eq!(h.d.completion(), Completion::Msi);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "compares a 4 MiB shadow of the lent memory at every MMIO access: minutes per test under Miri; the same driver paths run under Miri in the coherent tests"
)]
fn non_coherent_smmu_sees_only_cleaned_tables_and_commands() {
    for strtab in [StrtabFormat::TwoLevel, StrtabFormat::Linear] {
        let config = Config {
            coherent: Some(false),
            strtab,
            sid_bits: Some(if strtab == StrtabFormat::Linear {
                8
            } else {
                16
            }),
            cmdq_log2: Some(4),
            ..Config::default()
        };
        let h = noncoherent(ids(IDR0_PRI, 9), config);
        // Bindings before reset (simply written) and after (live updates, each step cleaned).
        h.d.set_ste(StreamId(3), &s2(1)).unwrap();
        h.d.reset().unwrap();
        for (i, sid) in [3u32, 7, 0x42, 0x1ff, 0x2345].into_iter().enumerate() {
            if sid >= 1 << h.d.strtab_layout().sid_bits() {
                continue;
            }
            let sid = StreamId(sid);
            h.d.set_ste(sid, &s2(i as u16 + 2)).unwrap(); // new or replaced (breaking)
            h.d.set_ste(sid, &Ste::bypass(false)).unwrap();
            h.d.set_ste(sid, &s2(9)).unwrap();
            h.d.clear_ste(sid).unwrap();
            h.d.set_ste(sid, &s2(10)).unwrap();
            // What the SMMU walks is what was written.
            assert_eq!(h.m.ste_in_memory(sid), Some(s2(10)));
            assert!(matches!(
                h.m.dma_access(sid, None, Iova(0x1000), false),
                DmaOutcome::Completed { .. }
            ));
        }
        // Batches that wrap the 16-slot queue several times.
        let cmds: Vec<Command> = (0..40)
            .map(|v| Command::TlbiS12Vmall { vmid: Vmid(v) })
            .collect();
        h.d.submit(&cmds).unwrap();
        h.d.submit(&cmds[..5]).unwrap();
        assert_eq!(h.rec.violations(), Vec::<String>::new(), "{strtab:?}");
        let log = h.rec.take();
        assert!(log.iter().any(|e| matches!(e, Ev::Flush(..))));
        // The checker is not vacuous: a coherent driver writes without cleaning.
        let mut coherent = config;
        coherent.coherent = Some(true);
        let hc = noncoherent(ids(IDR0_PRI, 9), coherent);
        hc.d.reset().unwrap();
        hc.d.set_ste(StreamId(7), &s2(1)).unwrap();
        assert!(!hc.rec.violations().is_empty());
        assert!(
            !hc.rec
                .take()
                .iter()
                .any(|e| matches!(e, Ev::Flush(..) | Ev::Inval(..)))
        );
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "compares a 4 MiB shadow of the lent memory at every MMIO access: minutes per test under Miri; the same driver paths run under Miri in the coherent tests"
)]
fn non_coherent_drains_invalidate_every_slot_they_read() {
    let h = noncoherent(
        ids(IDR0_PRI, 9),
        Config {
            coherent: Some(false),
            evtq_log2: Some(4),
            priq_log2: Some(4),
            ..Config::default()
        },
    );
    h.d.reset().unwrap();
    let ebase = page0(&h.m).EVENTQ_BASE.get() & 0x00ff_ffff_ffff_ffe0;
    let pbase = page0(&h.m).PRIQ_BASE.get() & 0x00ff_ffff_ffff_ffe0;
    h.rec.take();
    let mut total = 0u32;
    for n in [1u32, 5, 16, 11, 3] {
        for i in 0..n {
            h.m.inject_event(evt(total + i));
            h.m.inject_pri(req(total + i));
        }
        let mut ev = HostSink::default();
        let mut pri = HostSink::default();
        assert_eq!(h.d.drain_evtq(&mut ev).records, n);
        assert_eq!(h.d.drain_priq(&mut pri).records, n);
        assert_eq!(ev.events, (total..total + n).map(evt).collect::<Vec<_>>());
        assert_eq!(
            pri.requests,
            (total..total + n).map(req).collect::<Vec<_>>()
        );
        total += n;
    }
    let log = h.rec.take();
    assert_eq!(
        log.iter().filter(|e| matches!(e, Ev::Inval(..))).count(),
        2 * total as usize
    );
    check_invalidates(&log, offset::EVENTQ_PROD, offset::EVENTQ_CONS, ebase, 4, 32);
    check_invalidates(&log, offset::PRIQ_PROD, offset::PRIQ_CONS, pbase, 4, 16);
    assert_eq!(h.rec.violations(), Vec::<String>::new());
}

// ----- 6. drains racing with producers -----

/// An event sink that produces more events into the model while it is called.
struct Producer<'a> {
    m: &'a FakeSmmu,
    got: Vec<EvtqEntry>,
    /// Events still to inject, one per event received (`u32::MAX`: endless).
    left: u32,
    next: u32,
    per_event: u32,
}

impl EventSink for Producer<'_> {
    fn event(&mut self, e: &EvtqEntry) {
        self.got.push(*e);
        for _ in 0..self.per_event {
            if self.left == 0 {
                return;
            }
            self.left = self.left.saturating_sub(u32::from(self.left != u32::MAX));
            self.m.inject_event(evt(self.next));
            self.next += 1;
        }
    }
}

#[test]
fn records_arriving_during_a_drain_are_seen_by_the_confirm_read() {
    let h = H::reset(QEMU_VIRT, Config::default());
    h.m.inject_event(evt(0));
    h.m.inject_event(evt(1));
    let mut p = Producer {
        m: &h.m,
        got: Vec::new(),
        left: 3,
        next: 2,
        per_event: 1,
    };
    h.m.reset_mmio_counts();
    let st = h.d.drain_evtq(&mut p);
    // Pass 1: 2 records (2 injected); pass 2: 2 records (1 injected); pass 3: 1 record.
    assert_eq!((st.records, st.extra_passes, st.incomplete), (5, 2, false));
    assert_eq!(st.mmio, 1 + 2 * 3);
    assert_eq!(h.m.mmio_counts().total(), u64::from(st.mmio));
    assert_eq!(p.got, (0..5).map(evt).collect::<Vec<_>>());
    // Nothing left behind.
    let st = h.d.drain_evtq(&mut HostSink::default());
    assert_eq!((st.records, st.mmio), (0, 1));
}

#[test]
fn a_drain_with_an_endless_producer_is_bounded_and_loses_nothing() {
    for (per_event, style) in [(1, OverflowStyle::Hardware), (3, OverflowStyle::Hold)] {
        let h = H::reset(
            QEMU_VIRT,
            Config {
                evtq_log2: Some(3),
                ..Config::default()
            },
        );
        h.m.set_event_overflow(style);
        let entries = 8u32;
        for i in 0..4 {
            h.m.inject_event(evt(i));
        }
        let mut p = Producer {
            m: &h.m,
            got: Vec::new(),
            left: u32::MAX,
            next: 4,
            per_event,
        };
        let mut drains = 0;
        let mut incomplete = 0;
        while drains < 5 {
            let st = h.d.drain_evtq(&mut p);
            drains += 1;
            assert!(st.records <= 4 * entries, "one drain is bounded");
            assert!(st.mmio <= 1 + 2 * 4);
            assert_eq!(st.overflows, 0, "{style:?}");
            incomplete += u32::from(st.incomplete);
        }
        assert_eq!(incomplete, 5, "{style:?}: every drain stopped at its bound");
        assert_eq!(h.d.counters().drains_incomplete, 5);
        // The producer stops; the next drains collect the rest, in order, nothing lost.
        p.left = 0;
        for _ in 0..64 {
            if h.d.drain_evtq(&mut p).records == 0 {
                break;
            }
        }
        assert_eq!(h.m.event_stats().dropped_full, 0, "{style:?}");
        assert_eq!(p.got.len() as u32, p.next, "{style:?}");
        assert_eq!(p.got, (0..p.next).map(evt).collect::<Vec<_>>());
    }
}

// ----- 7. memory plan vs allocations -----

fn plan_regions(plan: &MemoryPlan) -> Vec<Region> {
    let mut v = std::vec![plan.strtab];
    v.extend(plan.l2_index);
    v.extend([plan.cmdq, plan.evtq]);
    v.extend(plan.priq);
    v
}

fn regions(a: &[Alloc]) -> Vec<Region> {
    a.iter()
        .map(|&(_, bytes, align)| Region { bytes, align })
        .collect()
}

#[test]
fn memory_plan_is_exactly_what_new_allocates() {
    let cases = [
        (QEMU_VIRT, Config::default()),
        (pri_ids(9), Config::default()),
        (
            pri_ids(9),
            Config {
                strtab: StrtabFormat::Linear,
                sid_bits: Some(10),
                cmdq_log2: Some(5),
                evtq_log2: Some(9),
                priq_log2: Some(9),
                ..Config::default()
            },
        ),
        (
            QEMU_VIRT,
            Config {
                strtab: StrtabFormat::TwoLevel,
                sid_bits: Some(6),
                ..Config::default()
            },
        ),
    ];
    for (idr, config) in cases {
        let plan = Smmu::<Rec, CountingDma>::memory_plan(&Features::decode(idr), &config).unwrap();
        let m = model(idr);
        let dma = CountingDma::new(&m, usize::MAX);
        let h = H::with(m, dma.clone(), config, false).unwrap();
        assert_eq!(*h.d.plan(), plan);
        let a = dma.allocs();
        assert_eq!(regions(&a), plan_regions(&plan), "{config:?}");
        for &(pa, _, align) in &a {
            assert_eq!(pa % align as u64, 0);
        }
        let exact: usize = a.iter().map(|x| x.1).sum();
        assert!(exact <= plan.at_probe_bytes());
        h.d.reset().unwrap();
        // Level-2 tables: one per group of 2^split StreamIDs, on first use, as planned.
        h.d.set_ste(StreamId(1), &s2(1)).unwrap();
        h.d.set_ste(StreamId(2), &s2(2)).unwrap();
        let a2 = dma.allocs();
        match plan.l2_table {
            Some(l2) => {
                assert_eq!(regions(&a2[a.len()..]), [l2]);
                assert_eq!(a2.last().unwrap().0 % l2.align as u64, 0);
                assert_eq!(
                    plan.max_bytes(),
                    plan.at_probe_bytes() + l2.worst_case() * plan.l2_tables_max as usize
                );
            }
            None => {
                assert_eq!(a2.len(), a.len());
                assert_eq!(plan.max_bytes(), plan.at_probe_bytes());
            }
        }
    }
}

#[test]
fn at_probe_bytes_suffice_from_a_misaligned_bump_region() {
    let idr = pri_ids(9);
    let config = Config::default();
    let plan = Smmu::<Rec, BumpDma>::memory_plan(&Features::decode(idr), &config).unwrap();
    let m = model(idr);
    let big = m
        .dma()
        .alloc(plan.at_probe_bytes() + 0x10000, 0x10000)
        .unwrap();
    // One byte past a 64 KiB boundary: every piece needs its full alignment padding.
    // SAFETY: the region is zeroed model memory, used by nothing else, and the SMMU model sees
    // it at `paddr`.
    let bump = unsafe { BumpDma::new(big.vaddr.add(1), big.paddr.add(1), plan.at_probe_bytes()) };
    let h = H::with(m.clone(), bump, config, false).unwrap();
    h.d.reset().unwrap();
    h.d.submit(&[Command::CfgiAll]).unwrap();
}

#[test]
fn one_byte_short_is_no_memory_at_probe() {
    for idr in [QEMU_VIRT, pri_ids(9)] {
        let config = Config::default();
        let plan = Smmu::<Rec, CountingDma>::memory_plan(&Features::decode(idr), &config).unwrap();
        let need: usize = plan_regions(&plan).iter().map(|r| r.bytes).sum();
        let m = model(idr);
        let res = H::with(m.clone(), CountingDma::new(&m, need - 1), config, false);
        assert!(matches!(res, Err(Error::NoMemory)));
        // Short at each earlier piece too.
        let sizes: Vec<usize> = plan_regions(&plan).iter().map(|r| r.bytes).collect();
        for k in 0..sizes.len() {
            let budget: usize = sizes[..k].iter().sum::<usize>() + sizes[k] - 1;
            let m = model(idr);
            let dma = CountingDma::new(&m, budget);
            assert!(matches!(
                H::with(m, dma.clone(), config, false),
                Err(Error::NoMemory)
            ));
            assert_eq!(dma.allocs().len(), k, "stopped at piece {k}");
        }
        let m = model(idr);
        let dma = CountingDma::new(&m, need);
        let h = H::with(m, dma.clone(), config, false).unwrap();
        h.d.reset().unwrap();
        assert_eq!(dma.budget.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn a_level2_table_one_byte_short_fails_cleanly() {
    let config = Config::default();
    let plan =
        Smmu::<Rec, CountingDma>::memory_plan(&Features::decode(QEMU_VIRT), &config).unwrap();
    let l2 = plan.l2_table.unwrap();
    let need: usize = plan_regions(&plan).iter().map(|r| r.bytes).sum();
    let m = model(QEMU_VIRT);
    let dma = CountingDma::new(&m, need + l2.bytes - 1);
    let h = H::with(m, dma.clone(), config, false).unwrap();
    h.d.reset().unwrap();
    let sid = StreamId(0x321);
    let strtab = dma.allocs()[0];
    let table = |h: &H| {
        let mut b = std::vec![0u8; strtab.1];
        h.m.dma().read(PhysAddr(strtab.0), &mut b).unwrap();
        b
    };
    let before = table(&h);
    h.m.take_commands();
    h.m.reset_mmio_counts();
    assert_eq!(h.d.set_ste(sid, &s2(1)), Err(Error::NoMemory));
    assert_eq!(table(&h), before, "L1 table unchanged");
    assert_eq!(h.m.take_commands(), [], "nothing issued");
    assert_eq!(h.m.mmio_counts().total(), 0);
    assert_eq!(h.d.ste(sid), Ok(Ste::INVALID));
    assert_eq!(h.m.ste_in_memory(sid), None);
    assert!(!matches!(
        h.m.dma_access(sid, None, Iova(0), false),
        DmaOutcome::Completed { .. }
    ));
    assert_eq!(h.d.clear_ste(sid), Ok(()));
    // One more byte and the same call succeeds.
    dma.budget.fetch_add(1, Ordering::SeqCst);
    h.d.set_ste(sid, &s2(1)).unwrap();
    assert_eq!(h.m.ste_in_memory(sid), Some(s2(1)));
    assert_eq!(dma.allocs().len(), 5);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "compares a 4 MiB shadow of the lent memory at every MMIO access: minutes per test under Miri; the same driver paths run under Miri in the coherent tests"
)]
fn non_coherent_command_error_recovery_cleans_the_replacement() {
    let h = noncoherent(
        QEMU_VIRT,
        Config {
            coherent: Some(false),
            ..Config::default()
        },
    );
    h.d.reset().unwrap();
    h.m.take_commands();
    h.m.inject_cmdq_error(1, CmdqFault::Illegal);
    let cmds = [Command::TlbiNsnhAll, Command::CfgiAll, Command::TlbiNsnhAll];
    h.rec.take();
    assert!(matches!(
        h.d.submit(&cmds),
        Err(Error::Cmdq(crate::error::CmdqError::Illegal(_)))
    ));
    // The refused slot was read after an invalidate, replaced, and cleaned before GERRORN.
    let log = h.rec.take();
    let inval = log
        .iter()
        .position(|e| matches!(e, Ev::Inval(_, 16)))
        .unwrap();
    let gerrorn = log.iter().position(w(0, offset::GERRORN)).unwrap();
    let Ev::Inval(slot, _) = log[inval] else {
        unreachable!()
    };
    assert!(log[inval..gerrorn].contains(&Ev::Flush(slot, 16)));
    assert_eq!(
        h.m.take_commands(),
        [
            Command::TlbiNsnhAll,
            Command::sync(),
            Command::TlbiNsnhAll,
            Command::sync()
        ]
    );
    assert_eq!(h.rec.violations(), Vec::<String>::new());
}

#[test]
fn priq_loss_during_a_drain_is_reported_by_the_next_one() {
    // The PRI queue (8 slots) overflows, QEMU style, while a drain is running: the records
    // copied are delivered, the loss goes through GERROR and the next drain reports it.
    let h = H::reset(
        pri_ids(9),
        Config {
            priq_log2: Some(3),
            ..Config::default()
        },
    );
    h.m.set_pri_overflow(OverflowStyle::Qemu);
    struct Burst<'a>(&'a FakeSmmu, HostSink, bool);
    impl PriSink for Burst<'_> {
        fn request(&mut self, e: &PriqEntry) {
            self.1.request(e);
            if !self.2 {
                self.2 = true;
                for i in 100..112 {
                    self.0.inject_pri(req(i));
                }
            }
        }
        fn overflow(&mut self) {
            PriSink::overflow(&mut self.1);
        }
    }
    h.m.inject_pri(req(0));
    let mut s = Burst(&h.m, HostSink::default(), false);
    let st = h.d.drain_priq(&mut s);
    // 7 of the 12 fit behind the one not yet released; 5 lost.
    assert_eq!(h.m.pri_stats().dropped_full, 5);
    assert_eq!((st.records, st.extra_passes, st.overflows), (8, 1, 0));
    let g = h.d.handle_gerror();
    assert!(g.drain_priq);
    let st = h.d.drain_priq(&mut s);
    assert_eq!((st.records, st.overflows), (0, 1));
    assert_eq!(s.1.pri_overflows, 1);
    assert_eq!(s.1.requests.len(), 8);
}

#[test]
fn late_priqen_and_atschk_acks_are_waited_for() {
    let h = H::new(ids(IDR0_PRI | IDR0_ATS, 9), Config::default());
    h.m.set_ack(AckReg::Cr0, AckBehaviour::AfterPolls(4));
    h.d.reset().unwrap();
    assert_eq!(
        h.m.cr0(),
        CR0_SMMUEN | CR0_ATSCHK | CR0_PRIQEN | CR0_EVENTQEN | CR0_CMDQEN
    );
    // Six CR0 writes (0, CMDQEN, EVENTQEN, PRIQEN, ATSCHK, SMMUEN), each polled until the
    // fifth read shows it (CR0 = 0 matches the reset value at once).
    let c = h.m.mmio_counts();
    assert_eq!((c.writes("CR0"), c.reads("CR0ACK")), (6, 1 + 5 * 5));
    // One that never comes times out, naming CR0ACK.
    let h = H::new(
        ids(IDR0_PRI | IDR0_ATS, 9),
        Config {
            timeout_us: 100,
            ..Config::default()
        },
    );
    h.m.set_ack(AckReg::Cr0, AckBehaviour::Never);
    assert_eq!(h.d.reset(), Err(Error::Timeout(WaitFor::Cr0Ack)));
    assert!(!h.d.is_ready());
}

#[test]
fn a_reset_that_fails_late_leaves_the_driver_not_ready() {
    let h = H::new(
        pri_ids(9),
        Config {
            timeout_us: 100,
            ..Config::default()
        },
    );
    // The queues are enabled, then IRQ_CTRL is never acknowledged.
    h.m.set_ack(AckReg::IrqCtrl, AckBehaviour::Never);
    assert_eq!(h.d.reset(), Err(Error::Timeout(WaitFor::IrqCtrlAck)));
    assert_ne!(h.m.cr0() & CR0_PRIQEN, 0);
    assert!(!h.d.is_ready());
    h.m.inject_event(evt(1));
    h.m.reset_mmio_counts();
    assert!(h.d.drain_evtq(&mut HostSink::default()).not_ready);
    assert!(h.d.drain_priq(&mut HostSink::default()).not_ready);
    assert_eq!(h.d.handle_gerror(), GerrorStats::default());
    assert_eq!(h.m.mmio_counts().total(), 0);
    // A reset that succeeds brings it back.
    h.m.set_ack(AckReg::IrqCtrl, AckBehaviour::Immediate);
    h.d.reset().unwrap();
    assert!(h.d.is_ready());
}

#[test]
fn forced_two_level_never_covers_more_streamids_than_asked() {
    let f = Features::decode(QEMU_VIRT);
    let plan = |bits| {
        let config = Config {
            strtab: StrtabFormat::TwoLevel,
            sid_bits: Some(bits),
            ..Config::default()
        };
        Smmu::<Rec, CountingDma>::memory_plan(&f, &config).map(|p| p.layout)
    };
    assert_eq!(
        plan(16),
        Ok(StreamTableLayout::TwoLevel { log2: 16, split: 8 })
    );
    assert_eq!(
        plan(8),
        Ok(StreamTableLayout::TwoLevel { log2: 8, split: 8 })
    );
    // Below Linux's SPLIT of 8, the smallest legal SPLIT (6) keeps LOG2SIZE at the bits asked.
    assert_eq!(
        plan(7),
        Ok(StreamTableLayout::TwoLevel { log2: 7, split: 6 })
    );
    assert_eq!(
        plan(6),
        Ok(StreamTableLayout::TwoLevel { log2: 6, split: 6 })
    );
    assert_eq!(plan(5), Err(Error::InvalidArgument));
}
