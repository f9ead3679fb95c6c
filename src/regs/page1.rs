//! SMMU register page 1: the EVENTQ and PRIQ producer/consumer indices (IHI 0070 §6.2.2).

use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

use super::{EVENTQ_CONS, EVENTQ_PROD};

register_structs! {
    /// SMMU register page 1, normally at SMMU base + `0x10000` (IHI 0070 §6.2.2).
    ///
    /// Offsets are page-1 relative. Every other location of the page is CONSTRAINED
    /// UNPREDICTABLE (RES0 or an alias of page 0) and is padding here. Cavium CN99xx: page-1
    /// registers are only reachable at their page-0 offsets, so there the driver is given a
    /// `Page1` pointer equal to the `Page0` pointer.
    #[allow(non_snake_case)]
    pub Page1 {
        (0x0000 => _reserved0),
        /// SMMU_EVENTQ_PROD: event queue producer index and OVFLG, updated by the SMMU
        /// (IHI 0070 §6.3.95).
        (0x00A8 => pub EVENTQ_PROD: ReadWrite<u32, EVENTQ_PROD::Register>),
        /// SMMU_EVENTQ_CONS: event queue consumer index and OVACKFLG, written by software
        /// (IHI 0070 §6.3.96).
        (0x00AC => pub EVENTQ_CONS: ReadWrite<u32, EVENTQ_CONS::Register>),
        (0x00B0 => _reserved1),
        /// SMMU_PRIQ_PROD: PRI queue producer index and OVFLG, updated by the SMMU
        /// (IHI 0070 §6.3.97).
        (0x00C8 => pub PRIQ_PROD: ReadWrite<u32, EVENTQ_PROD::Register>),
        /// SMMU_PRIQ_CONS: PRI queue consumer index and OVACKFLG, written by software
        /// (IHI 0070 §6.3.98).
        (0x00CC => pub PRIQ_CONS: ReadWrite<u32, EVENTQ_CONS::Register>),
        (0x00D0 => _reserved2),
        (0x10000 => @END),
    }
}

const _: () = assert!(size_of::<Page1>() == 0x10000);
