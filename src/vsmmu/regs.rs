//! The guest-visible register file: ID registers derived from the physical SMMU and what the
//! virtual SMMU offers, reset values, and the bits each register implements (IHI 0070 §6.3).

use tock_registers::fields::Field;

use crate::features::{Features, IdRegs};
use crate::regs::{
    AIDR, CMDQ_CONS, CR0, CR1, CR2, EVENTQ_PROD, GBPA, GERROR, IDR0, IDR1, IDR3, IDR5, IRQ_CTRL,
    Q_BASE, STRTAB_BASE, STRTAB_BASE_CFG,
};

use super::VSmmuConfig;

/// CR0 bits the virtual SMMU implements: SMMUEN, EVENTQEN, CMDQEN (no PRI queue, no ATS, no
/// VMW: PRIQEN, ATSCHK and VMW are RES0, IHI 0070 §6.3.9).
pub(super) const CR0_IMPL: u32 =
    CR0::SMMUEN::SET.value | CR0::EVENTQEN::SET.value | CR0::CMDQEN::SET.value;
/// CR1: the six cacheability/shareability fields, bits [11:0] (IHI 0070 §6.3.10).
pub(super) const CR1_IMPL: u32 = CR1::QUEUE_IC::SET.value
    | CR1::QUEUE_OC::SET.value
    | CR1::QUEUE_SH::SET.value
    | CR1::TABLE_IC::SET.value
    | CR1::TABLE_OC::SET.value
    | CR1::TABLE_SH::SET.value;
/// CR2: RECINVSID and PTM; E2H needs IDR0.HYP and REC_CFG_ATS needs ATS, neither offered
/// (IHI 0070 §6.3.11).
pub(super) const CR2_IMPL: u32 = CR2::RECINVSID::SET.value | CR2::PTM::SET.value;
/// GBPA fields: MEMATTR, MTCFG, ALLOCCFG, SHCFG, PRIVCFG, INSTCFG, ABORT (IHI 0070 §6.3.14).
pub(super) const GBPA_FIELDS: u32 = GBPA::MEMATTR.mask
    | (GBPA::MTCFG.mask << GBPA::MTCFG.shift)
    | (GBPA::ALLOCCFG.mask << GBPA::ALLOCCFG.shift)
    | (GBPA::SHCFG.mask << GBPA::SHCFG.shift)
    | (GBPA::PRIVCFG.mask << GBPA::PRIVCFG.shift)
    | (GBPA::INSTCFG.mask << GBPA::INSTCFG.shift)
    | GBPA::ABORT::SET.value;
/// GBPA.UPDATE, bit [31].
pub(super) const GBPA_UPDATE: u32 = GBPA::UPDATE::SET.value;
/// GBPA.ABORT, bit [20].
pub(super) const GBPA_ABORT: u32 = GBPA::ABORT::SET.value;
/// GBPA reset value apart from ABORT: SHCFG = 0b01 (use incoming), as QEMU resets it.
const GBPA_RESET: u32 = GBPA::SHCFG::UseIncoming.value;
/// IRQ_CTRL: GERROR_IRQEN and EVENTQ_IRQEN (no PRI queue; IHI 0070 §6.3.16).
pub(super) const IRQ_CTRL_IMPL: u32 =
    IRQ_CTRL::GERROR_IRQEN::SET.value | IRQ_CTRL::EVENTQ_IRQEN::SET.value;
/// GERROR bits the virtual SMMU can raise: CMDQ_ERR and EVENTQ_ABT_ERR (IHI 0070 §6.3.17);
/// GERRORN implements the same bits.
pub(super) const GERROR_IMPL: u32 = GERROR::CMDQ_ERR::SET.value | GERROR::EVENTQ_ABT_ERR::SET.value;
/// GERROR.CMDQ_ERR.
pub(super) const GERROR_CMDQ: u32 = GERROR::CMDQ_ERR::SET.value;
/// GERROR.EVENTQ_ABT_ERR.
pub(super) const GERROR_EVTQ_ABT: u32 = GERROR::EVENTQ_ABT_ERR::SET.value;
/// STRTAB_BASE_CFG: LOG2SIZE [5:0], SPLIT [10:6], FMT [17:16] (IHI 0070 §6.3.25).
pub(super) const STRTAB_CFG_IMPL: u32 = STRTAB_BASE_CFG::LOG2SIZE::SET.value
    | STRTAB_BASE_CFG::SPLIT::SET.value
    | STRTAB_BASE_CFG::FMT::SET.value;
/// STRTAB_BASE.RA, bit [62], and *Q_BASE.RA/WA, bit [62].
pub(super) const BASE_RA: u64 = STRTAB_BASE::RA::SET.value;
const _: () = assert!(BASE_RA == Q_BASE::RA_WA::SET.value);
/// STRTAB_BASE: RA and the ADDR bits within the guest's `ipa` mask (IHI 0070 §6.3.24).
pub(super) const fn strtab_base_impl(ipa: u64) -> u64 {
    BASE_RA | (ipa & STRTAB_BASE::ADDR::SET.value)
}
/// CMDQ_BASE/EVENTQ_BASE: RA/WA, the ADDR bits within the guest's `ipa` mask, and LOG2SIZE
/// (IHI 0070 §6.3.26, §6.3.29).
pub(super) const fn q_base_impl(ipa: u64) -> u64 {
    BASE_RA | (ipa & Q_BASE::ADDR::SET.value) | Q_BASE::LOG2SIZE::SET.value
}
/// PROD/CONS bit 31 (EVENTQ_PROD.OVFLG, EVENTQ_CONS.OVACKFLG).
pub(super) const OVF: u32 = EVENTQ_PROD::OVFLG::SET.value;
/// CMDQ_CONS.ERR, bits [30:24].
pub(super) const CONS_ERR: Field<u32, CMDQ_CONS::Register> = CMDQ_CONS::ERR;
/// CERROR_ILL (IHI 0070 §4.8).
pub(super) const CERROR_ILL: u32 = CMDQ_CONS::ERR::Value::Illegal as u32;
/// CERROR_ABT: abort on command fetch (IHI 0070 §4.8).
pub(super) const CERROR_ABT: u32 = CMDQ_CONS::ERR::Value::Abort as u32;

/// Mask of the `bits`-wide address space, for address fields of the registers the guest
/// programs: bits above the advertised OAS (the guest's IPA size) are RES0.
pub(super) const fn addr_mask(bits: u8) -> u64 {
    if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    }
}

/// The ID registers a guest sees: stage 1 only, AArch64 tables, linear and 2-level stream
/// tables, the configured StreamID and queue sizes, and only what the physical SMMU can do for
/// nested stage 1 (ASID16, CD2L, SSIDSIZE, RIL, granules, VAX, DS pass through). No MSI, SEV,
/// PRI, ATS, stall, HTTU, BTM, HYP or stage 2 (IHI 0070 §6.3.1-§6.3.6).
/// The bits of `f` in `raw`.
fn keep<R: tock_registers::RegisterLongName>(raw: u32, f: Field<u32, R>) -> u32 {
    raw & (f.mask << f.shift)
}

pub(super) fn guest_idregs(phys: &Features, cfg: &VSmmuConfig) -> IdRegs {
    let p = phys.raw;
    let idr0 = IDR0::S1P::SET.value
        | IDR0::TTF::AArch64.value
        | keep(p.idr0, IDR0::COHACC)
        | keep(p.idr0, IDR0::ASID16)
        | keep(p.idr0, IDR0::CD2L)
        | IDR0::TTENDIAN::Little.value
        // Stall is never offered: terminate only.
        | IDR0::STALL_MODEL::TerminateOnly.value
        | keep(p.idr0, IDR0::TERM_MODEL)
        | IDR0::ST_LEVEL::TwoLevel.value;
    let idr1 = IDR1::SIDSIZE.val(u32::from(cfg.sid_bits)).value
        | IDR1::SSIDSIZE.val(u32::from(phys.ssid_bits)).value
        | IDR1::EVENTQS.val(u32::from(cfg.evtq_log2)).value
        | IDR1::CMDQS.val(u32::from(cfg.cmdq_log2)).value;
    let idr3 = keep(p.idr3, IDR3::RIL) | keep(p.idr3, IDR3::HAD);
    let oas = crate::features::Oas::from_bits(cfg.ipa_bits).map_or(0, |o| u32::from(o.encoding()));
    let idr5 = IDR5::OAS.val(oas).value
        | keep(p.idr5, IDR5::GRAN4K)
        | keep(p.idr5, IDR5::GRAN16K)
        | keep(p.idr5, IDR5::GRAN64K)
        | keep(p.idr5, IDR5::DS)
        | keep(p.idr5, IDR5::VAX);
    IdRegs {
        idr0,
        idr1,
        idr2: 0,
        idr3,
        idr4: 0,
        idr5,
        iidr: cfg.iidr,
        aidr: p.aidr & (AIDR::ARCHMAJORREV::SET.value | AIDR::ARCHMINORREV::SET.value),
    }
}

/// The guest-programmable registers, as the guest last wrote them (masked as hardware masks
/// them). ACK registers equal their control registers: the virtual SMMU completes every update
/// within the trapped write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Regs {
    pub cr0: u32,
    pub cr1: u32,
    pub cr2: u32,
    pub gbpa: u32,
    pub irq_ctrl: u32,
    pub gerror: u32,
    pub gerrorn: u32,
    pub strtab_base: u64,
    pub strtab_base_cfg: u32,
    pub cmdq_base: u64,
    pub cmdq_prod: u32,
    pub cmdq_cons: u32,
    pub eventq_base: u64,
    pub eventq_prod: u32,
    pub eventq_cons: u32,
}

impl Regs {
    /// Reset values (IHI 0070 §6.3: CR0, CR1, CR2, IRQ_CTRL, GERROR(N) and the queue indices
    /// reset to 0; GBPA.ABORT is the hypervisor's choice).
    pub(super) const fn reset(gbpa_abort: bool) -> Self {
        Self {
            cr0: 0,
            cr1: 0,
            cr2: 0,
            gbpa: GBPA_RESET | if gbpa_abort { GBPA_ABORT } else { 0 },
            irq_ctrl: 0,
            gerror: 0,
            gerrorn: 0,
            strtab_base: 0,
            strtab_base_cfg: 0,
            cmdq_base: 0,
            cmdq_prod: 0,
            cmdq_cons: 0,
            eventq_base: 0,
            eventq_prod: 0,
            eventq_cons: 0,
        }
    }

    /// GERROR bits active (GERROR ^ GERRORN).
    pub(super) const fn gerror_active(&self) -> u32 {
        self.gerror ^ self.gerrorn
    }

    /// Toggles GERROR `bit` unless it is already active; whether it toggled.
    pub(super) fn raise_gerror(&mut self, bit: u32) -> bool {
        if self.gerror_active() & bit != 0 {
            return false;
        }
        self.gerror ^= bit;
        true
    }

    pub(super) const fn smmuen(&self) -> bool {
        self.cr0 & CR0::SMMUEN::SET.value != 0
    }
    pub(super) const fn cmdqen(&self) -> bool {
        self.cr0 & CR0::CMDQEN::SET.value != 0
    }
    pub(super) const fn eventqen(&self) -> bool {
        self.cr0 & CR0::EVENTQEN::SET.value != 0
    }
}

/// Mask of the index-and-wrap bits of a PROD/CONS register for a queue of at most
/// `2^log2` entries (IHI 0070 §3.5: bits above the wrap bit are RES0).
pub(super) const fn index_mask(log2: u8) -> u32 {
    (2u32 << log2).wrapping_sub(1)
}
