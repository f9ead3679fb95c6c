//! The event queue and the PRI queue: queues the model produces into (IHI 0070 §3.5, §7, §8).
//!
//! Records are written while the queue is enabled (CR0.EVENTQEN / PRIQEN acknowledged), at
//! `base + index * entry size` through the DMA arena; a record that finds the queue full is
//! handled per [`OverflowStyle`]. The queue interrupt is an edge: it is signalled when the queue
//! goes from empty to non-empty with its IRQ_CTRL enable set (IHI 0070 §3.18.2), as a counted
//! wired pulse or, when IDR0.MSI and `*_IRQ_CFG0` is non-zero, as an MSI write.

use std::collections::VecDeque;

use tock_registers::LocalRegisterCopy;

use super::bits::{self, GERROR_EVENTQ_ABT, GERROR_PRIQ_ABT};
use super::regs::{RegPage, off};
use super::{Hw, Model};
use crate::ids::PhysAddr;
use crate::queue::QueueIndex;
use crate::regs::{IRQ_CFG0, Q_BASE};

/// What the model does with a record that finds its queue full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OverflowStyle {
    /// The architecture (IHI 0070 §3.5.1): the record is dropped and PROD.OVFLG toggled, unless
    /// an overflow is already unacknowledged (OVFLG != CONS.OVACKFLG).
    #[default]
    Hardware,
    /// QEMU: the record is dropped, GERROR.EVENTQ_ABT_ERR (PRIQ_ABT_ERR) is raised if not
    /// already active, OVFLG is never touched (QEMU's `smmuv3_write_eventq`, hw/arm/smmuv3.c).
    Qemu,
    /// Nothing is lost: the record waits inside the model and is written when CONS frees a slot
    /// (a back-pressuring SMMU; useful to test drains without losses).
    Hold,
}

/// Counters of one output queue.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Records written to the queue memory.
    pub written: u64,
    /// Records dropped because the queue was full.
    pub dropped_full: u64,
    /// Records dropped because the queue was disabled.
    pub dropped_disabled: u64,
    /// Records dropped because the queue memory was not reachable (external abort).
    pub dropped_abort: u64,
    /// Times PROD.OVFLG was toggled ([`OverflowStyle::Hardware`]).
    pub overflows: u64,
    /// Records waiting inside the model ([`OverflowStyle::Hold`]).
    pub held: u64,
}

/// Which of the two output queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Which {
    Evtq,
    Priq,
}

impl Which {
    /// The tag of this queue's records in the DMA arena's pending list.
    pub(crate) fn tag(self) -> u8 {
        match self {
            Which::Evtq => 0,
            Which::Priq => 1,
        }
    }
    fn dwords(self) -> usize {
        match self {
            Which::Evtq => 4,
            Which::Priq => 2,
        }
    }
    fn base_reg(self) -> usize {
        match self {
            Which::Evtq => off::EVENTQ_BASE,
            Which::Priq => off::PRIQ_BASE,
        }
    }
    pub(crate) fn prod_reg(self) -> usize {
        match self {
            Which::Evtq => off::EVENTQ_PROD,
            Which::Priq => off::PRIQ_PROD,
        }
    }
    pub(crate) fn cons_reg(self) -> usize {
        match self {
            Which::Evtq => off::EVENTQ_CONS,
            Which::Priq => off::PRIQ_CONS,
        }
    }
    fn cfg0_reg(self) -> usize {
        match self {
            Which::Evtq => off::EVENTQ_IRQ_CFG0,
            Which::Priq => off::PRIQ_IRQ_CFG0,
        }
    }
    fn cfg1_reg(self) -> usize {
        match self {
            Which::Evtq => off::EVENTQ_IRQ_CFG1,
            Which::Priq => off::PRIQ_IRQ_CFG1,
        }
    }
    pub(crate) fn cr0_bit(self) -> u32 {
        match self {
            Which::Evtq => bits::CR0_EVENTQEN,
            Which::Priq => bits::CR0_PRIQEN,
        }
    }
    fn irq_bit(self) -> u32 {
        match self {
            Which::Evtq => bits::IRQ_EVENTQ,
            Which::Priq => bits::IRQ_PRIQ,
        }
    }
    fn abt_bit(self) -> u32 {
        match self {
            Which::Evtq => GERROR_EVENTQ_ABT,
            Which::Priq => GERROR_PRIQ_ABT,
        }
    }
    fn msi_abt_bit(self) -> u32 {
        match self {
            Which::Evtq => bits::GERROR_MSI_EVENTQ_ABT,
            Which::Priq => bits::GERROR_MSI_PRIQ_ABT,
        }
    }
}

/// Decodes a queue base register: (effective base address, log2 entries) with LOG2SIZE capped
/// at `max_log2` and the address aligned down to the queue size (IHI 0070 §6.3.26).
pub(crate) fn decode_base(raw: u64, max_log2: u8, entry_bytes: u64) -> (u64, u8) {
    let r = LocalRegisterCopy::<u64, Q_BASE::Register>::new(raw);
    let log2 = (r.read(Q_BASE::LOG2SIZE) as u8).min(max_log2);
    let addr = r.read(Q_BASE::ADDR) << 5;
    let bytes = (entry_bytes << log2).max(32);
    (addr & !(bytes - 1), log2)
}

/// One output queue (event or PRI).
pub(crate) struct OutQueue {
    which: Which,
    pub(crate) enabled: bool,
    base: u64,
    log2: u8,
    prod: QueueIndex,
    pub(crate) style: OverflowStyle,
    held: VecDeque<Vec<u64>>,
    pub(crate) stats: QueueStats,
    /// Records were handed to the CPU (a barrier after a PROD read) and no barrier ordering
    /// loads has followed: the CPU may still be reading slots, so a CONS write freeing them
    /// would let the SMMU overwrite a record being read.
    pub(crate) cpu_reading: bool,
}

impl OutQueue {
    pub(crate) fn new(which: Which) -> Self {
        Self {
            which,
            enabled: false,
            base: 0,
            log2: 0,
            prod: QueueIndex::from_reg(0, 0),
            style: OverflowStyle::default(),
            held: VecDeque::new(),
            stats: QueueStats::default(),
            cpu_reading: false,
        }
    }

    fn cons(&self, hw: &Hw) -> QueueIndex {
        QueueIndex::from_reg(
            self.log2,
            hw.regs.read32(RegPage::Page1, self.which.cons_reg()),
        )
    }

    fn write_prod(&self, hw: &Hw) {
        hw.regs
            .write32(RegPage::Page1, self.which.prod_reg(), self.prod.to_reg());
    }
}

impl Model {
    fn queue(&mut self, w: Which) -> &mut OutQueue {
        match w {
            Which::Evtq => &mut self.evtq,
            Which::Priq => &mut self.priq,
        }
    }

    fn max_log2(&self, w: Which) -> u8 {
        match w {
            Which::Evtq => self.feat.evtq_log2,
            Which::Priq => self.feat.priq_log2,
        }
    }

    /// The queue was enabled (CR0 acknowledged): latch its base and indices.
    pub(crate) fn queue_enable(&mut self, hw: &Hw, w: Which) {
        let max = self.max_log2(w);
        let (base, log2) = decode_base(hw.regs.r64(w.base_reg()), max, 8 * w.dwords() as u64);
        let prod = hw.regs.read32(RegPage::Page1, w.prod_reg());
        let q = self.queue(w);
        q.enabled = true;
        q.base = base;
        q.log2 = log2;
        q.prod = QueueIndex::from_reg(log2, prod);
        q.write_prod(hw);
        self.queue_flush_held(hw, w);
    }

    /// The queue was disabled.
    pub(crate) fn queue_disable(&mut self, w: Which) {
        self.queue(w).enabled = false;
    }

    /// Software wrote PROD (page 1): accepted only while the queue is disabled.
    pub(crate) fn queue_prod_written(&mut self, hw: &Hw, w: Which) {
        let q = self.queue(w);
        if q.enabled {
            q.write_prod(hw);
        }
    }

    /// Software wrote CONS (the register itself): the reads of the records it frees must be
    /// complete (IHI 0070 §3.5: the SMMU may write a freed slot at once).
    pub(crate) fn queue_cons_register_written(&mut self, hw: &Hw, w: Which) {
        assert!(
            !self.queue(w).cpu_reading,
            "{w:?} CONS written while the CPU may still be reading the records it frees: no \
             barrier ordering the record reads before the CONS write"
        );
        self.queue_cons_written(hw, w);
    }

    /// The CPU read the queue's PROD register: the records written so far are covered.
    pub(crate) fn queue_prod_read(&mut self, hw: &Hw, w: Which) {
        hw.dma.observe_records(w.tag());
    }

    /// Software wrote CONS (page 1), or a step of the model: slots are free again; held
    /// records go in.
    pub(crate) fn queue_cons_written(&mut self, hw: &Hw, w: Which) {
        if self.queue(w).enabled {
            self.queue_flush_held(hw, w);
        }
    }

    fn queue_flush_held(&mut self, hw: &Hw, w: Which) {
        while let Some(rec) = self.queue(w).held.pop_front() {
            let q = self.queue(w);
            if QueueIndex::is_full(q.prod, q.cons(hw)) {
                q.held.push_front(rec);
                break;
            }
            q.stats.held -= 1;
            self.queue_write(hw, w, &rec);
        }
    }

    /// Produces one record (4 dwords for the event queue, 2 for the PRI queue).
    pub(crate) fn produce(&mut self, hw: &Hw, w: Which, rec: &[u64]) {
        let q = self.queue(w);
        if !q.enabled {
            q.stats.dropped_disabled += 1;
            return;
        }
        if q.style == OverflowStyle::Hold && !q.held.is_empty() {
            q.held.push_back(rec.to_vec());
            q.stats.held += 1;
            return;
        }
        let cons = q.cons(hw);
        if QueueIndex::is_full(q.prod, cons) {
            match q.style {
                OverflowStyle::Hardware => {
                    q.stats.dropped_full += 1;
                    if q.prod.ovf() == cons.ovf() {
                        q.prod = q.prod.with_ovf(!q.prod.ovf());
                        q.stats.overflows += 1;
                        q.write_prod(hw);
                    }
                }
                OverflowStyle::Qemu => {
                    q.stats.dropped_full += 1;
                    self.raise_gerror(hw, w.abt_bit());
                }
                OverflowStyle::Hold => {
                    q.held.push_back(rec.to_vec());
                    q.stats.held += 1;
                }
            }
            return;
        }
        self.queue_write(hw, w, rec);
    }

    /// Writes a record into a queue known to have room.
    fn queue_write(&mut self, hw: &Hw, w: Which, rec: &[u64]) {
        let q = self.queue(w);
        let cons = q.cons(hw);
        let addr = q.base + (q.prod.index() as u64) * (8 * w.dwords() as u64);
        if hw.dma.write_record(PhysAddr(addr), rec, w.tag()).is_none() {
            q.stats.dropped_abort += 1;
            self.raise_gerror(hw, w.abt_bit());
            return;
        }
        let was_empty = QueueIndex::is_empty(q.prod, cons);
        q.prod = q.prod.next();
        q.stats.written += 1;
        q.write_prod(hw);
        if was_empty && self.ctl.irq_ctrl & w.irq_bit() != 0 {
            match w {
                Which::Evtq => self.irqs.eventq += 1,
                Which::Priq => self.irqs.priq += 1,
            }
            self.signal_msi(hw, w.cfg0_reg(), w.cfg1_reg(), w.msi_abt_bit());
        }
    }

    /// Sends the MSI configured in `cfg0`/`cfg1` if the SMMU has MSIs and the address is
    /// non-zero (IHI 0070 §3.18.2); an unreachable target raises `abt_bit` in GERROR.
    pub(crate) fn signal_msi(&mut self, hw: &Hw, cfg0: usize, cfg1: usize, abt_bit: u32) {
        if !self.feat.msi {
            return;
        }
        let a = LocalRegisterCopy::<u64, IRQ_CFG0::Register>::new(hw.regs.r64(cfg0));
        let addr = a.read(IRQ_CFG0::ADDR) << 2;
        if addr == 0 {
            return;
        }
        let data = hw.regs.r32(cfg1);
        self.msi_write(hw, PhysAddr(addr), data, abt_bit);
    }

    /// Performs a 32-bit MSI write; an unreachable target raises `abt_bit` in GERROR.
    pub(crate) fn msi_write(&mut self, hw: &Hw, addr: PhysAddr, data: u32, abt_bit: u32) {
        if hw.dma.write_u32(addr, data).is_some() {
            self.irqs.msi_writes += 1;
        } else if abt_bit != bits::GERROR_MSI_GERROR_ABT {
            self.raise_gerror(hw, abt_bit);
        } else {
            // A failed GERROR MSI only toggles its own bit (no further MSI).
            self.raise_gerror_quiet(hw, abt_bit);
        }
    }
}
