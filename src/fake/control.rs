//! Global control registers: CR0/CR0ACK, IRQ_CTRL/IRQ_CTRLACK, GBPA with its UPDATE handshake,
//! GERROR/GERRORN, and the dispatch of every MMIO access to the part of the model it concerns.
//!
//! As QEMU does, a write is acknowledged synchronously (IHI 0070 §6.3.9-§6.3.18); a test may
//! delay or withhold an acknowledgement with [`AckBehaviour`]. Bit positions come from `regs`.

use super::bits::{
    CR0_CMDQEN, CR0_MASK, CR0_SMMUEN, GBPA_FIELDS, GBPA_UPDATE, GERROR_CMDQ_ERR, GERROR_MASK,
};
use super::queues::Which;
use super::regs::{RegPage, off};
use super::{AckBehaviour, AckReg, Hw, Model};
use crate::features::IdRegs;

/// A write waiting for its acknowledgement.
#[derive(Clone, Copy, Debug)]
struct Pending {
    value: u32,
    /// Reads still to answer with the old state; `None`: never.
    polls_left: Option<u32>,
}

/// State of the global control registers.
pub(crate) struct Control {
    pub(crate) idregs: IdRegs,
    /// CR0 in effect (= CR0ACK).
    pub(crate) cr0: u32,
    /// IRQ_CTRL in effect (= IRQ_CTRLACK).
    pub(crate) irq_ctrl: u32,
    /// GBPA in effect, UPDATE clear.
    pub(crate) gbpa: u32,
    pub(crate) gerror: u32,
    pub(crate) gerrorn: u32,
    acks: [AckBehaviour; 3],
    pending: [Option<Pending>; 3],
}

fn idr_table(i: &IdRegs) -> [(usize, u32); 8] {
    [
        (off::IDR0, i.idr0),
        (off::IDR1, i.idr1),
        (off::IDR2, i.idr2),
        (off::IDR3, i.idr3),
        (off::IDR4, i.idr4),
        (off::IDR5, i.idr5),
        (off::IIDR, i.iidr),
        (off::AIDR, i.aidr),
    ]
}

fn slot(reg: AckReg) -> usize {
    match reg {
        AckReg::Cr0 => 0,
        AckReg::IrqCtrl => 1,
        AckReg::Gbpa => 2,
    }
}

impl Control {
    /// Reset state, written into the register pages (QEMU's `smmuv3_init_regs` values, hw/arm/smmuv3.c).
    pub(crate) fn reset(hw: &Hw, idregs: IdRegs) -> Self {
        let r = &hw.regs;
        for (o, v) in idr_table(&idregs) {
            r.w32(o, v);
        }
        r.w32(off::GBPA, 0x1000);
        // QEMU presets LOG2SIZE of the command and event queue bases to its maximum.
        let f = crate::features::Features::decode(idregs);
        let cmdqs = u64::from(f.cmdq_log2);
        let eventqs = u64::from(f.evtq_log2);
        r.w64(off::CMDQ_BASE, cmdqs);
        r.w64(off::EVENTQ_BASE, eventqs);
        Self {
            idregs,
            cr0: 0,
            irq_ctrl: 0,
            gbpa: 0x1000,
            gerror: 0,
            gerrorn: 0,
            acks: [AckBehaviour::Immediate; 3],
            pending: [None; 3],
        }
    }

    pub(crate) fn set_ack(&mut self, reg: AckReg, b: AckBehaviour) {
        self.acks[slot(reg)] = b;
    }

    fn schedule(&mut self, reg: AckReg, value: u32) -> Option<u32> {
        let polls_left = match self.acks[slot(reg)] {
            AckBehaviour::Immediate => {
                self.pending[slot(reg)] = None;
                return Some(value);
            }
            AckBehaviour::AfterPolls(n) => Some(n),
            AckBehaviour::Never => None,
        };
        self.pending[slot(reg)] = Some(Pending { value, polls_left });
        None
    }

    /// Counts one poll of `reg`'s ACK; returns the value to apply when the ACK becomes visible.
    fn poll(&mut self, reg: AckReg) -> Option<u32> {
        let p = self.pending[slot(reg)].as_mut()?;
        match p.polls_left {
            Some(0) => {
                let v = p.value;
                self.pending[slot(reg)] = None;
                Some(v)
            }
            Some(ref mut n) => {
                *n -= 1;
                None
            }
            None => None,
        }
    }
}

impl Model {
    /// After a write of the register at `(page, offset)`.
    pub(crate) fn on_write(&mut self, hw: &Hw, page: RegPage, offset: usize) {
        let r = &hw.regs;
        if page == RegPage::Page1 {
            self.on_write_page1(hw, offset);
            return;
        }
        match offset {
            off::CR0 => {
                let v = r.r32(off::CR0) & CR0_MASK;
                if let Some(v) = self.ctl.schedule(AckReg::Cr0, v) {
                    self.apply_cr0(hw, v);
                }
            }
            off::IRQ_CTRL => {
                let v = r.r32(off::IRQ_CTRL) & 0x7;
                if let Some(v) = self.ctl.schedule(AckReg::IrqCtrl, v) {
                    self.apply_irq_ctrl(hw, v);
                }
            }
            off::GBPA => {
                let v = r.r32(off::GBPA);
                if v & GBPA_UPDATE == 0 {
                    // Without UPDATE the write is ignored (IHI 0070 §6.3.14).
                    r.w32(off::GBPA, self.ctl.gbpa);
                } else if let Some(v) = self.ctl.schedule(AckReg::Gbpa, v & GBPA_FIELDS) {
                    self.apply_gbpa(hw, v);
                } else {
                    r.w32(off::GBPA, (v & GBPA_FIELDS) | GBPA_UPDATE);
                }
            }
            off::GERRORN => {
                self.ctl.gerrorn = r.r32(off::GERRORN) & GERROR_MASK;
                r.w32(off::GERRORN, self.ctl.gerrorn);
                self.after_gerrorn(hw);
            }
            // Read-only registers: writes are ignored, restore what the model presents.
            off::IDR0..=off::AIDR => {
                for (o, v) in idr_table(&self.ctl.idregs) {
                    r.w32(o, v);
                }
            }
            off::CR0ACK => r.w32(off::CR0ACK, self.ctl.cr0),
            off::IRQ_CTRLACK => r.w32(off::IRQ_CTRLACK, self.ctl.irq_ctrl),
            off::STATUSR => r.w32(off::STATUSR, 0),
            off::GERROR => r.w32(off::GERROR, self.ctl.gerror),
            _ => self.on_write_other(hw, offset),
        }
    }

    /// Before a read of the register at `(page, offset)`.
    pub(crate) fn on_read(&mut self, hw: &Hw, page: RegPage, offset: usize) {
        if page == RegPage::Page1 {
            for w in [Which::Evtq, Which::Priq] {
                if offset == w.prod_reg() {
                    self.queue_prod_read(hw, w);
                }
            }
            return;
        }
        match offset {
            off::CR0ACK => {
                if let Some(v) = self.ctl.poll(AckReg::Cr0) {
                    self.apply_cr0(hw, v);
                }
            }
            off::IRQ_CTRLACK => {
                if let Some(v) = self.ctl.poll(AckReg::IrqCtrl) {
                    self.apply_irq_ctrl(hw, v);
                }
            }
            off::GBPA => {
                if let Some(v) = self.ctl.poll(AckReg::Gbpa) {
                    self.apply_gbpa(hw, v);
                }
            }
            _ => {}
        }
    }

    fn apply_cr0(&mut self, hw: &Hw, v: u32) {
        let old = self.ctl.cr0;
        self.ctl.cr0 = v;
        hw.regs.w32(off::CR0ACK, v);
        self.cr0_changed(hw, old, v);
    }

    fn apply_irq_ctrl(&mut self, hw: &Hw, v: u32) {
        self.ctl.irq_ctrl = v;
        hw.regs.w32(off::IRQ_CTRLACK, v);
    }

    fn apply_gbpa(&mut self, hw: &Hw, v: u32) {
        self.ctl.gbpa = v;
        hw.regs.w32(off::GBPA, v);
    }

    /// Reacts to enables turning on or off (queues latched at enable, stream table at SMMUEN).
    fn cr0_changed(&mut self, hw: &Hw, old: u32, new: u32) {
        let off_now = old & !new;
        let on_now = new & !old;
        if off_now & CR0_CMDQEN != 0 {
            self.cmdq.enabled = false;
        }
        for w in [Which::Evtq, Which::Priq] {
            if off_now & w.cr0_bit() != 0 {
                self.queue_disable(w);
            }
        }
        if on_now & CR0_SMMUEN != 0 {
            self.strtab_latch(hw);
        }
        for w in [Which::Evtq, Which::Priq] {
            if on_now & w.cr0_bit() != 0 {
                self.queue_enable(hw, w);
            }
        }
        if on_now & CR0_CMDQEN != 0 {
            self.cmdq_enable(hw);
        }
    }

    /// After GERRORN was written: a CMDQ_ERR no longer active lets the command queue resume
    /// (QEMU resumes at once).
    fn after_gerrorn(&mut self, hw: &Hw) {
        if (self.ctl.gerror ^ self.ctl.gerrorn) & GERROR_CMDQ_ERR == 0 {
            self.cmdq_consume(hw);
        }
    }

    fn on_write_page1(&mut self, hw: &Hw, offset: usize) {
        for w in [Which::Evtq, Which::Priq] {
            if offset == w.prod_reg() {
                self.queue_prod_written(hw, w);
            } else if offset == w.cons_reg() {
                self.queue_cons_register_written(hw, w);
            }
        }
    }

    fn on_write_other(&mut self, hw: &Hw, offset: usize) {
        match offset {
            off::CMDQ_PROD => self.cmdq_consume(hw),
            off::CMDQ_CONS => self.cmdq_cons_written(hw),
            _ => {}
        }
    }

    /// Whether SMMUEN is in effect.
    pub(crate) fn smmu_enabled(&self) -> bool {
        self.ctl.cr0 & CR0_SMMUEN != 0
    }
}
