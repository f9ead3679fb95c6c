//! Register bits the model acts on, named once for every part of the model (control,
//! queues, command queue, stream table); positions come from `regs`.

use crate::regs::{CR0, GBPA, GERROR, IRQ_CTRL};

/// CR0 bits the model implements: SMMUEN, PRIQEN, EVENTQEN, CMDQEN, ATSCHK, VMW (IHI 0070 §6.3.9).
pub(crate) const CR0_MASK: u32 = 0x1DF;
/// CR0.SMMUEN.
pub(crate) const CR0_SMMUEN: u32 = CR0::SMMUEN::SET.value;
/// CR0.PRIQEN.
pub(crate) const CR0_PRIQEN: u32 = CR0::PRIQEN::SET.value;
/// CR0.EVENTQEN.
pub(crate) const CR0_EVENTQEN: u32 = CR0::EVENTQEN::SET.value;
/// CR0.CMDQEN.
pub(crate) const CR0_CMDQEN: u32 = CR0::CMDQEN::SET.value;
/// IRQ_CTRL.GERROR_IRQEN.
pub(crate) const IRQ_GERROR: u32 = IRQ_CTRL::GERROR_IRQEN::SET.value;
/// IRQ_CTRL.PRIQ_IRQEN.
pub(crate) const IRQ_PRIQ: u32 = IRQ_CTRL::PRIQ_IRQEN::SET.value;
/// IRQ_CTRL.EVENTQ_IRQEN.
pub(crate) const IRQ_EVENTQ: u32 = IRQ_CTRL::EVENTQ_IRQEN::SET.value;
/// GBPA.UPDATE.
pub(crate) const GBPA_UPDATE: u32 = GBPA::UPDATE::SET.value;
/// GBPA.ABORT.
pub(crate) const GBPA_ABORT: u32 = GBPA::ABORT::SET.value;
/// GBPA fields other than UPDATE (IHI 0070 §6.3.14).
pub(crate) const GBPA_FIELDS: u32 = 0x001F_3F1F;
/// GERROR bits the model can raise: bits 0 and 2-10 (IHI 0070 §6.3.19).
pub(crate) const GERROR_MASK: u32 = 0x7FD;
/// GERROR.CMDQ_ERR.
pub(crate) const GERROR_CMDQ_ERR: u32 = GERROR::CMDQ_ERR::SET.value;
/// GERROR.EVENTQ_ABT_ERR.
pub(crate) const GERROR_EVENTQ_ABT: u32 = GERROR::EVENTQ_ABT_ERR::SET.value;
/// GERROR.PRIQ_ABT_ERR.
pub(crate) const GERROR_PRIQ_ABT: u32 = GERROR::PRIQ_ABT_ERR::SET.value;
/// GERROR.MSI_CMDQ_ABT_ERR.
pub(crate) const GERROR_MSI_CMDQ_ABT: u32 = GERROR::MSI_CMDQ_ABT_ERR::SET.value;
/// GERROR.MSI_EVENTQ_ABT_ERR.
pub(crate) const GERROR_MSI_EVENTQ_ABT: u32 = GERROR::MSI_EVENTQ_ABT_ERR::SET.value;
/// GERROR.MSI_PRIQ_ABT_ERR.
pub(crate) const GERROR_MSI_PRIQ_ABT: u32 = GERROR::MSI_PRIQ_ABT_ERR::SET.value;
/// GERROR.MSI_GERROR_ABT_ERR.
pub(crate) const GERROR_MSI_GERROR_ABT: u32 = GERROR::MSI_GERROR_ABT_ERR::SET.value;
