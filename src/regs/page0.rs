//! SMMU register page 0: every Non-secure control register (IHI 0070 §6.2.1).

use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

use super::{
    AIDR, CMDQ_CONS, CR0, CR1, CR2, GBPA, GERROR, IDR0, IDR1, IDR2, IDR3, IDR5, IIDR, IRQ_CFG0,
    IRQ_CFG2, IRQ_CTRL, Q_BASE, ReadOnly, STATUSR, STRTAB_BASE, STRTAB_BASE_CFG,
};

register_structs! {
    /// SMMU register page 0, the first 64 KiB of the SMMU's MMIO region (IHI 0070 §6.2.1).
    ///
    /// The EVENTQ/PRIQ PROD and CONS offsets (`0xA8`, `0xAC`, `0xC8`, `0xCC`) are reserved
    /// here: the registers live in [`Page1`](super::Page1). Reserved and IMPLEMENTATION DEFINED
    /// ranges (`0xE00`-`0xEFF`, `0x1000`-`0x3FFF`, the Secure bank at `0x8000`) are padding.
    #[allow(non_snake_case)]
    pub Page0 {
        /// SMMU_IDR0: translation, table and queue features (IHI 0070 §6.3.1).
        (0x0000 => pub IDR0: ReadOnly<u32, IDR0::Register>),
        /// SMMU_IDR1: table and queue sizes, presets (IHI 0070 §6.3.2).
        (0x0004 => pub IDR1: ReadOnly<u32, IDR1::Register>),
        /// SMMU_IDR2: VATOS page location (IHI 0070 §6.3.3).
        (0x0008 => pub IDR2: ReadOnly<u32, IDR2::Register>),
        /// SMMU_IDR3: additional translation features (IHI 0070 §6.3.4).
        (0x000C => pub IDR3: ReadOnly<u32, IDR3::Register>),
        /// SMMU_IDR4: IMPLEMENTATION DEFINED (IHI 0070 §6.3.5).
        (0x0010 => pub IDR4: ReadOnly<u32>),
        /// SMMU_IDR5: output address size, granules, stall limit (IHI 0070 §6.3.6).
        (0x0014 => pub IDR5: ReadOnly<u32, IDR5::Register>),
        /// SMMU_IIDR: implementation identification (IHI 0070 §6.3.7).
        (0x0018 => pub IIDR: ReadOnly<u32, IIDR::Register>),
        /// SMMU_AIDR: architecture revision (IHI 0070 §6.3.8).
        (0x001C => pub AIDR: ReadOnly<u32, AIDR::Register>),
        /// SMMU_CR0: global enables; poll CR0ACK for the value written (IHI 0070 §6.3.9).
        (0x0020 => pub CR0: ReadWrite<u32, CR0::Register>),
        /// SMMU_CR0ACK: the CR0 enables in effect (IHI 0070 §6.3.10).
        (0x0024 => pub CR0ACK: ReadOnly<u32, CR0::Register>),
        /// SMMU_CR1: table and queue memory attributes (IHI 0070 §6.3.11).
        (0x0028 => pub CR1: ReadWrite<u32, CR1::Register>),
        /// SMMU_CR2: miscellaneous control (IHI 0070 §6.3.12).
        (0x002C => pub CR2: ReadWrite<u32, CR2::Register>),
        (0x0030 => _reserved0),
        /// SMMU_STATUSR: status (IHI 0070 §6.3.13).
        (0x0040 => pub STATUSR: ReadOnly<u32, STATUSR::Register>),
        /// SMMU_GBPA: global bypass attributes, UPDATE handshake (IHI 0070 §6.3.14).
        (0x0044 => pub GBPA: ReadWrite<u32, GBPA::Register>),
        /// SMMU_AGBPA: IMPLEMENTATION DEFINED additional bypass attributes (IHI 0070 §6.3.15).
        (0x0048 => pub AGBPA: ReadWrite<u32>),
        (0x004C => _reserved1),
        /// SMMU_IRQ_CTRL: interrupt enables; poll IRQ_CTRLACK (IHI 0070 §6.3.16).
        (0x0050 => pub IRQ_CTRL: ReadWrite<u32, IRQ_CTRL::Register>),
        /// SMMU_IRQ_CTRLACK: the interrupt enables in effect (IHI 0070 §6.3.18).
        (0x0054 => pub IRQ_CTRLACK: ReadOnly<u32, IRQ_CTRL::Register>),
        (0x0058 => _reserved2),
        /// SMMU_GERROR: global errors, toggle style (IHI 0070 §6.3.19).
        (0x0060 => pub GERROR: ReadOnly<u32, GERROR::Register>),
        /// SMMU_GERRORN: global error acknowledge, toggle style (IHI 0070 §6.3.20).
        (0x0064 => pub GERRORN: ReadWrite<u32, GERROR::Register>),
        /// SMMU_GERROR_IRQ_CFG0: GERROR MSI address (IHI 0070 §6.3.21).
        (0x0068 => pub GERROR_IRQ_CFG0: ReadWrite<u64, IRQ_CFG0::Register>),
        /// SMMU_GERROR_IRQ_CFG1: GERROR MSI data (IHI 0070 §6.3.22).
        (0x0070 => pub GERROR_IRQ_CFG1: ReadWrite<u32>),
        /// SMMU_GERROR_IRQ_CFG2: GERROR MSI attributes (IHI 0070 §6.3.23).
        (0x0074 => pub GERROR_IRQ_CFG2: ReadWrite<u32, IRQ_CFG2::Register>),
        (0x0078 => _reserved3),
        /// SMMU_STRTAB_BASE: stream table base (IHI 0070 §6.3.24).
        (0x0080 => pub STRTAB_BASE: ReadWrite<u64, STRTAB_BASE::Register>),
        /// SMMU_STRTAB_BASE_CFG: stream table format and size (IHI 0070 §6.3.25).
        (0x0088 => pub STRTAB_BASE_CFG: ReadWrite<u32, STRTAB_BASE_CFG::Register>),
        (0x008C => _reserved4),
        /// SMMU_CMDQ_BASE: command queue base and size (IHI 0070 §6.3.26).
        (0x0090 => pub CMDQ_BASE: ReadWrite<u64, Q_BASE::Register>),
        /// SMMU_CMDQ_PROD: command queue producer index, written by software (IHI 0070 §6.3.27).
        (0x0098 => pub CMDQ_PROD: ReadWrite<u32>),
        /// SMMU_CMDQ_CONS: command queue consumer index and error (IHI 0070 §6.3.28).
        (0x009C => pub CMDQ_CONS: ReadWrite<u32, CMDQ_CONS::Register>),
        /// SMMU_EVENTQ_BASE: event queue base and size (IHI 0070 §6.3.29).
        (0x00A0 => pub EVENTQ_BASE: ReadWrite<u64, Q_BASE::Register>),
        (0x00A8 => _reserved_eventq_prod_cons),
        /// SMMU_EVENTQ_IRQ_CFG0: event queue MSI address (IHI 0070 §6.3.30).
        (0x00B0 => pub EVENTQ_IRQ_CFG0: ReadWrite<u64, IRQ_CFG0::Register>),
        /// SMMU_EVENTQ_IRQ_CFG1: event queue MSI data (IHI 0070 §6.3.31).
        (0x00B8 => pub EVENTQ_IRQ_CFG1: ReadWrite<u32>),
        /// SMMU_EVENTQ_IRQ_CFG2: event queue MSI attributes (IHI 0070 §6.3.32).
        (0x00BC => pub EVENTQ_IRQ_CFG2: ReadWrite<u32, IRQ_CFG2::Register>),
        /// SMMU_PRIQ_BASE: PRI queue base and size (IHI 0070 §6.3.33).
        (0x00C0 => pub PRIQ_BASE: ReadWrite<u64, Q_BASE::Register>),
        (0x00C8 => _reserved_priq_prod_cons),
        /// SMMU_PRIQ_IRQ_CFG0: PRI queue MSI address (IHI 0070 §6.3.34).
        (0x00D0 => pub PRIQ_IRQ_CFG0: ReadWrite<u64, IRQ_CFG0::Register>),
        /// SMMU_PRIQ_IRQ_CFG1: PRI queue MSI data (IHI 0070 §6.3.35).
        (0x00D8 => pub PRIQ_IRQ_CFG1: ReadWrite<u32>),
        /// SMMU_PRIQ_IRQ_CFG2: PRI queue MSI attributes and LO (IHI 0070 §6.3.36).
        (0x00DC => pub PRIQ_IRQ_CFG2: ReadWrite<u32, IRQ_CFG2::Register>),
        (0x00E0 => _reserved5),
        /// SMMU_GATOS_CTRL: global ATOS control, RUN bit [0] (IHI 0070 §6.3.37; needs IDR0.ATOS).
        (0x0100 => pub GATOS_CTRL: ReadWrite<u32>),
        (0x0104 => _reserved6),
        /// SMMU_GATOS_SID: StreamID and SubstreamID of the ATOS request (IHI 0070 §6.3.38).
        (0x0108 => pub GATOS_SID: ReadWrite<u64>),
        /// SMMU_GATOS_ADDR: address and type of the ATOS request (IHI 0070 §6.3.39).
        (0x0110 => pub GATOS_ADDR: ReadWrite<u64>),
        /// SMMU_GATOS_PAR: result of the ATOS request (IHI 0070 §6.3.40).
        (0x0118 => pub GATOS_PAR: ReadOnly<u64>),
        (0x0120 => _reserved7),
        /// SMMU_VATOS_SEL: VMID, bits [15:0], used by the VATOS page (IHI 0070 §6.3.44).
        (0x0180 => pub VATOS_SEL: ReadWrite<u32>),
        (0x0184 => _reserved8),
        /// ID_REGS, `0xFD0`-`0xFFC`: the CoreSight-style identification block (IHI 0070
        /// §6.3.170), in address order SMMU_PIDR4..PIDR7, PIDR0..PIDR3, CIDR0..CIDR3 (see
        /// [`Page0::PIDR4_IDX`] and the other `*_IDX` constants). IMPLEMENTATION DEFINED contents.
        (0x0FD0 => pub ID_REGS: [ReadOnly<u32>; 12]),
        (0x1000 => _reserved9),
        (0x10000 => @END),
    }
}

const _: () = assert!(size_of::<Page0>() == 0x10000);

impl Page0 {
    /// Index of SMMU_PIDR4 (`0xFD0`) in [`Page0::ID_REGS`] (IHI 0070 §6.3.170).
    pub const PIDR4_IDX: usize = 0;
    /// Index of SMMU_PIDR5 (`0xFD4`) in [`Page0::ID_REGS`].
    pub const PIDR5_IDX: usize = 1;
    /// Index of SMMU_PIDR6 (`0xFD8`) in [`Page0::ID_REGS`].
    pub const PIDR6_IDX: usize = 2;
    /// Index of SMMU_PIDR7 (`0xFDC`) in [`Page0::ID_REGS`].
    pub const PIDR7_IDX: usize = 3;
    /// Index of SMMU_PIDR0 (`0xFE0`) in [`Page0::ID_REGS`].
    pub const PIDR0_IDX: usize = 4;
    /// Index of SMMU_PIDR1 (`0xFE4`) in [`Page0::ID_REGS`].
    pub const PIDR1_IDX: usize = 5;
    /// Index of SMMU_PIDR2 (`0xFE8`) in [`Page0::ID_REGS`].
    pub const PIDR2_IDX: usize = 6;
    /// Index of SMMU_PIDR3 (`0xFEC`) in [`Page0::ID_REGS`].
    pub const PIDR3_IDX: usize = 7;
    /// Index of SMMU_CIDR0 (`0xFF0`) in [`Page0::ID_REGS`].
    pub const CIDR0_IDX: usize = 8;
    /// Index of SMMU_CIDR1 (`0xFF4`) in [`Page0::ID_REGS`].
    pub const CIDR1_IDX: usize = 9;
    /// Index of SMMU_CIDR2 (`0xFF8`) in [`Page0::ID_REGS`].
    pub const CIDR2_IDX: usize = 10;
    /// Index of SMMU_CIDR3 (`0xFFC`) in [`Page0::ID_REGS`].
    pub const CIDR3_IDX: usize = 11;
}
