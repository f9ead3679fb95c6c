//! SMMUv3 register pages as `tock-registers` blocks: the only MMIO definitions in the crate.
//!
//! [`Page0`] holds every Non-secure control register (IHI 0070 §6.2.1); [`Page1`] holds only the
//! EVENTQ and PRIQ producer/consumer indices (IHI 0070 §6.2.2). The pages are separate blocks so
//! that an implementation whose page 1 is not at `page0 + 0x10000` (Cavium CN99xx: page-1
//! registers only reachable at their page-0 offsets) can be described by two pointers.
//!
//! Register and field names are the specification's. The bitfield modules below are shared by
//! the registers with the same layout: [`CR0`] also describes `CR0ACK`, [`IRQ_CTRL`] also
//! `IRQ_CTRLACK`, [`GERROR`] also `GERRORN`, [`IRQ_CFG0`]/[`IRQ_CFG2`] every `*_IRQ_CFG0`/`2`,
//! [`Q_BASE`] `CMDQ_BASE`/`EVENTQ_BASE`/`PRIQ_BASE`, [`EVENTQ_PROD`]/[`EVENTQ_CONS`] also
//! `PRIQ_PROD`/`PRIQ_CONS` (re-exported under those names).
//!
//! Field widths follow IHI 0070 G.b: physical-address fields end at bit 55 (bits above the
//! implemented OAS, and bits `[55:52]` before SMMUv3.4, are RES0 and must be written as zero).

#![allow(non_snake_case)]

mod page0;
mod page1;

pub use page0::Page0;
pub use page1::Page1;

pub use self::EVENTQ_CONS as PRIQ_CONS;
pub use self::EVENTQ_PROD as PRIQ_PROD;

pub use fields::*;

use core::cell::UnsafeCell;
use core::marker::PhantomData;

use tock_registers::interfaces::Readable;
use tock_registers::{RegisterLongName, UIntLike};

/// A register software only reads and the device changes: the SMMU's ACKs, GERROR, STATUSR, ID
/// registers; CMDQV's STATUS and error maps.
///
/// `tock_registers::registers::ReadOnly` stores a plain `T`, which tells the compiler that the
/// value behind a `&Page0` never changes while the reference lives. A device register does
/// change, and in host tests the software model writes it into the same memory while the driver
/// holds `&Page0`. This cell holds its value in an [`UnsafeCell`] (like tock-registers'
/// `ReadWrite`), so a change behind a shared reference is allowed; it offers only
/// [`Readable`], so software still cannot write it.
#[repr(transparent)]
pub struct ReadOnly<T: UIntLike, R: RegisterLongName = ()> {
    value: UnsafeCell<T>,
    associated_register: PhantomData<R>,
}

impl<T: UIntLike, R: RegisterLongName> Readable for ReadOnly<T, R> {
    type T = T;
    type R = R;

    #[inline]
    fn get(&self) -> T {
        // SAFETY: `self` is a live reference to a register cell, so the pointer is non-null,
        // aligned for `T` and points at a `T`-sized register (a register block is only ever
        // reached through a pointer its owner promised maps the device, or host memory in
        // tests); every bit pattern is a valid `T`.
        unsafe { core::ptr::read_volatile(self.value.get()) }
    }
}

/// `const` access to `tock-registers` fields, for the `const fn` encoders and decoders of the
/// in-memory formats (commands, events, STEs) and of the ID registers (`Features`);
/// `Field::read` and `FieldValue::modify` are not `const`. Each takes the field by its one
/// definition in a `register_bitfields!` block.
pub(crate) mod bits {
    use tock_registers::RegisterLongName;
    use tock_registers::fields::Field;

    /// The field's value in `dword`, shifted down.
    #[inline]
    pub(crate) const fn get<R: RegisterLongName>(f: Field<u64, R>, dword: u64) -> u64 {
        (dword >> f.shift) & f.mask
    }

    /// Whether any bit of the field is set in `dword`.
    #[inline]
    pub(crate) const fn is_set<R: RegisterLongName>(f: Field<u64, R>, dword: u64) -> bool {
        get(f, dword) != 0
    }

    /// `value` truncated to the field and shifted into place.
    #[inline]
    pub(crate) const fn put<R: RegisterLongName>(f: Field<u64, R>, value: u64) -> u64 {
        (value & f.mask) << f.shift
    }

    /// The field's value in the 32-bit register value `raw`, shifted down.
    #[inline]
    pub(crate) const fn get32<R: RegisterLongName>(f: Field<u32, R>, raw: u32) -> u32 {
        (raw >> f.shift) & f.mask
    }

    /// Whether any bit of the field is set in the 32-bit register value `raw`.
    #[inline]
    pub(crate) const fn is_set32<R: RegisterLongName>(f: Field<u32, R>, raw: u32) -> bool {
        get32(f, raw) != 0
    }

    /// `dword` with the field replaced by `value` (truncated to the field).
    #[inline]
    pub(crate) const fn set<R: RegisterLongName>(f: Field<u64, R>, dword: u64, value: u64) -> u64 {
        (dword & !(f.mask << f.shift)) | put(f, value)
    }
}

/// The bitfield definitions. `tock-registers` generates an undocumented `Register` marker type,
/// a `Field` constant beside each documented field module, and `SET`/`CLEAR` values; the
/// `missing_docs` allowance is for those generated items (it applies to the whole module, so
/// every hand-written register, field and value below carries its own doc).
#[allow(missing_docs)]
mod fields {
    use tock_registers::register_bitfields;

    register_bitfields![u32,
        /// SMMU_IDR0: translation, table and queue features (IHI 0070 §6.3.1).
        pub IDR0 [
            /// S2P, bit [0]: stage-2 translation supported.
            S2P OFFSET(0) NUMBITS(1) [],
            /// S1P, bit [1]: stage-1 translation supported.
            S1P OFFSET(1) NUMBITS(1) [],
            /// TTF, bits [3:2]: translation table formats supported.
            TTF OFFSET(2) NUMBITS(2) [
                /// Reserved encoding.
                Reserved = 0,
                /// AArch32 (LPAE) tables only.
                AArch32 = 1,
                /// AArch64 tables only.
                AArch64 = 2,
                /// Both AArch32 and AArch64 tables.
                Both = 3
            ],
            /// COHACC, bit [4]: coherent access to tables, queues and MSIs supported.
            COHACC OFFSET(4) NUMBITS(1) [],
            /// BTM, bit [5]: broadcast TLB maintenance supported.
            BTM OFFSET(5) NUMBITS(1) [],
            /// HTTU, bits [7:6]: hardware translation-table update (Access flag, Dirty state).
            HTTU OFFSET(6) NUMBITS(2) [
                /// No hardware updates.
                None = 0,
                /// Access flag updates.
                Access = 1,
                /// Access flag and dirty state updates.
                AccessDirty = 2,
                /// Access flag, dirty state and hardware-managed table Access flag (HAFT).
                AccessDirtyHaft = 3
            ],
            /// DORMHINT, bit [8]: SMMU_STATUSR.DORMANT hint supported.
            DORMHINT OFFSET(8) NUMBITS(1) [],
            /// Hyp, bit [9]: EL2 StreamWorld and TLBI_EL2_* commands supported.
            HYP OFFSET(9) NUMBITS(1) [],
            /// ATS, bit [10]: PCIe ATS supported.
            ATS OFFSET(10) NUMBITS(1) [],
            /// NS1ATS, bit [11]: 1 = split-stage (stage-1-only) ATS not supported (STE.EATS = 0b10).
            NS1ATS OFFSET(11) NUMBITS(1) [],
            /// ASID16, bit [12]: 16-bit ASIDs supported (else 8-bit).
            ASID16 OFFSET(12) NUMBITS(1) [],
            /// MSI, bit [13]: MSIs supported for EVENTQ, PRIQ, GERROR and CMD_SYNC.
            MSI OFFSET(13) NUMBITS(1) [],
            /// SEV, bit [14]: the SMMU can send WFE wake-up events (CMD_SYNC CS=SEV).
            SEV OFFSET(14) NUMBITS(1) [],
            /// ATOS, bit [15]: global address-translation operations (SMMU_GATOS_*) supported.
            ATOS OFFSET(15) NUMBITS(1) [],
            /// PRI, bit [16]: PCIe Page Request Interface (PRI queue) supported.
            PRI OFFSET(16) NUMBITS(1) [],
            /// VMW, bit [17]: VMID wildcard matching (SMMU_CR0.VMW) supported.
            VMW OFFSET(17) NUMBITS(1) [],
            /// VMID16, bit [18]: 16-bit VMIDs supported (else 8-bit).
            VMID16 OFFSET(18) NUMBITS(1) [],
            /// CD2L, bit [19]: 2-level context-descriptor tables supported.
            CD2L OFFSET(19) NUMBITS(1) [],
            /// VATOS, bit [20]: the VATOS page is present.
            VATOS OFFSET(20) NUMBITS(1) [],
            /// TTENDIAN, bits [22:21]: endianness of translation tables.
            TTENDIAN OFFSET(21) NUMBITS(2) [
                /// Mixed: the endianness is chosen per table (STE/CD ENDI).
                Mixed = 0,
                /// Reserved encoding.
                Reserved = 1,
                /// Little-endian only.
                Little = 2,
                /// Big-endian only.
                Big = 3
            ],
            /// ATSRECERR, bit [23]: additional ATS/PRI configuration events (SMMU_CR2.REC_CFG_ATS).
            ATSRECERR OFFSET(23) NUMBITS(1) [],
            /// STALL_MODEL, bits [25:24]: stalling fault model.
            STALL_MODEL OFFSET(24) NUMBITS(2) [
                /// Stall and terminate models both supported.
                StallAndTerminate = 0,
                /// Terminate only: no stalls, CMD_RESUME/CMD_STALL_TERM unavailable.
                TerminateOnly = 1,
                /// Stall forced: STE.S2S and CD.S must be 1.
                StallForced = 2,
                /// Reserved encoding.
                Reserved = 3
            ],
            /// TERM_MODEL, bit [26]: 1 = terminated transactions always abort (CD.A must be 1).
            TERM_MODEL OFFSET(26) NUMBITS(1) [],
            /// ST_LEVEL, bits [28:27]: stream-table formats supported.
            ST_LEVEL OFFSET(27) NUMBITS(2) [
                /// Linear stream table only.
                Linear = 0,
                /// Linear and 2-level stream tables.
                TwoLevel = 1
            ],
            /// RME_IMPL, bit [30]: Realm Management Extension implemented.
            RME_IMPL OFFSET(30) NUMBITS(1) []
        ],

        /// SMMU_IDR1: table and queue sizes, presets (IHI 0070 §6.3.2).
        pub IDR1 [
            /// SIDSIZE, bits [5:0]: number of StreamID bits implemented (at most 32).
            SIDSIZE OFFSET(0) NUMBITS(6) [],
            /// SSIDSIZE, bits [10:6]: number of SubstreamID bits (0 = no substreams, at most 20).
            SSIDSIZE OFFSET(6) NUMBITS(5) [],
            /// PRIQS, bits [15:11]: log2 of the largest PRI queue (at most 19).
            PRIQS OFFSET(11) NUMBITS(5) [],
            /// EVENTQS, bits [20:16]: log2 of the largest event queue (at most 19).
            EVENTQS OFFSET(16) NUMBITS(5) [],
            /// CMDQS, bits [25:21]: log2 of the largest command queue (at most 19).
            CMDQS OFFSET(21) NUMBITS(5) [],
            /// ATTR_PERMS_OVR, bit [26]: STE.INSTCFG/PRIVCFG overrides supported.
            ATTR_PERMS_OVR OFFSET(26) NUMBITS(1) [],
            /// ATTR_TYPES_OVR, bit [27]: STE/GBPA MemAttr, SHCFG and ALLOCCFG overrides supported.
            ATTR_TYPES_OVR OFFSET(27) NUMBITS(1) [],
            /// REL, bit [28]: preset table/queue base addresses are relative to the SMMU base.
            REL OFFSET(28) NUMBITS(1) [],
            /// QUEUES_PRESET, bit [29]: queue base addresses are fixed by the implementation.
            QUEUES_PRESET OFFSET(29) NUMBITS(1) [],
            /// TABLES_PRESET, bit [30]: table base addresses are fixed by the implementation.
            TABLES_PRESET OFFSET(30) NUMBITS(1) [],
            /// ECMDQ, bit [31]: enhanced command queues present (SMMUv3.3).
            ECMDQ OFFSET(31) NUMBITS(1) []
        ],

        /// SMMU_IDR2: VATOS page location (IHI 0070 §6.3.3).
        pub IDR2 [
            /// BA_VATOS, bits [9:0]: VATOS page offset in 64 KiB units above 0x20000.
            BA_VATOS OFFSET(0) NUMBITS(10) []
        ],

        /// SMMU_IDR3: additional translation features (IHI 0070 §6.3.4).
        pub IDR3 [
            /// HAD, bit [2]: hierarchical attribute disables (CD.HAD0/HAD1) supported.
            HAD OFFSET(2) NUMBITS(1) [],
            /// PBHA, bit [3]: page-based hardware attributes supported.
            PBHA OFFSET(3) NUMBITS(1) [],
            /// XNX, bit [4]: stage-2 EL0/EL1 execute-never split (XN[1:0]) supported.
            XNX OFFSET(4) NUMBITS(1) [],
            /// PPS, bit [5]: PRI responses carry a PASID when the request had one.
            PPS OFFSET(5) NUMBITS(1) [],
            /// MPAM, bit [7]: Memory System Resource Partitioning and Monitoring supported.
            MPAM OFFSET(7) NUMBITS(1) [],
            /// FWB, bit [8]: stage-2 forced write-back (STE.S2FWB) supported.
            FWB OFFSET(8) NUMBITS(1) [],
            /// STT, bit [9]: small translation tables (larger T0SZ) supported.
            STT OFFSET(9) NUMBITS(1) [],
            /// RIL, bit [10]: range invalidation (TLBI NUM/SCALE) supported.
            RIL OFFSET(10) NUMBITS(1) [],
            /// BBML, bits [12:11]: break-before-make level (0, 1 or 2).
            BBML OFFSET(11) NUMBITS(2) [],
            /// E0PD, bit [13]: CD.E0PD0/E0PD1 supported.
            E0PD OFFSET(13) NUMBITS(1) [],
            /// PTWNNC, bit [14]: table walks to Normal Non-cacheable memory are coherent.
            PTWNNC OFFSET(14) NUMBITS(1) [],
            /// DPT, bit [15]: device permission table supported (SMMUv3.3).
            DPT OFFSET(15) NUMBITS(1) []
        ],

        /// SMMU_IDR5: output address size, granules, stall limit (IHI 0070 §6.3.6).
        pub IDR5 [
            /// OAS, bits [2:0]: output address size (0=32, 1=36, 2=40, 3=42, 4=44, 5=48, 6=52,
            /// 7=56 bits from SMMUv3.4).
            OAS OFFSET(0) NUMBITS(3) [
                /// 32 bits, 4 GiB.
                Bits32 = 0,
                /// 36 bits, 64 GiB.
                Bits36 = 1,
                /// 40 bits, 1 TiB.
                Bits40 = 2,
                /// 42 bits, 4 TiB.
                Bits42 = 3,
                /// 44 bits, 16 TiB.
                Bits44 = 4,
                /// 48 bits, 256 TiB.
                Bits48 = 5,
                /// 52 bits, 4 PiB.
                Bits52 = 6,
                /// 56 bits (SMMUv3.4, with IDR5.D128; reserved before).
                Bits56 = 7
            ],
            /// GRAN4K, bit [4]: 4 KiB translation granule supported.
            GRAN4K OFFSET(4) NUMBITS(1) [],
            /// GRAN16K, bit [5]: 16 KiB translation granule supported.
            GRAN16K OFFSET(5) NUMBITS(1) [],
            /// GRAN64K, bit [6]: 64 KiB translation granule supported.
            GRAN64K OFFSET(6) NUMBITS(1) [],
            /// DS, bit [7]: 52-bit addresses with 4 KiB and 16 KiB granules supported.
            DS OFFSET(7) NUMBITS(1) [],
            /// D128, bit [8]: 128-bit (VMSAv9-128) descriptors supported (SMMUv3.4).
            D128 OFFSET(8) NUMBITS(1) [],
            /// VAX, bits [11:10]: virtual address size (0 = 48, 1 = 52, 2 = 56 bits).
            VAX OFFSET(10) NUMBITS(2) [
                /// 48-bit VAs.
                Bits48 = 0,
                /// 52-bit VAs.
                Bits52 = 1,
                /// 56-bit VAs (SMMUv3.4).
                Bits56 = 2
            ],
            /// STALL_MAX, bits [31:16]: maximum number of outstanding stalled transactions.
            STALL_MAX OFFSET(16) NUMBITS(16) []
        ],

        /// SMMU_IIDR: implementation identification (IHI 0070 §6.3.7).
        pub IIDR [
            /// Implementer, bits [11:0]: JEP106 code of the implementer (Arm = 0x43B).
            IMPLEMENTER OFFSET(0) NUMBITS(12) [],
            /// Revision, bits [15:12]: minor revision of the product.
            REVISION OFFSET(12) NUMBITS(4) [],
            /// Variant, bits [19:16]: major revision of the product.
            VARIANT OFFSET(16) NUMBITS(4) [],
            /// ProductID, bits [31:20]: implementation-defined product number.
            PRODUCTID OFFSET(20) NUMBITS(12) []
        ],

        /// SMMU_AIDR: architecture revision (IHI 0070 §6.3.8).
        pub AIDR [
            /// ArchMinorRev, bits [3:0]: minor architecture revision (1 = SMMUv3.1).
            ARCHMINORREV OFFSET(0) NUMBITS(4) [],
            /// ArchMajorRev, bits [7:4]: major architecture revision (0 = SMMUv3).
            ARCHMAJORREV OFFSET(4) NUMBITS(4) []
        ],

        /// SMMU_CR0 global enables, also the layout of SMMU_CR0ACK (IHI 0070 §6.3.9, §6.3.10).
        pub CR0 [
            /// SMMUEN, bit [0]: translation enabled (0: all traffic follows SMMU_GBPA).
            SMMUEN OFFSET(0) NUMBITS(1) [],
            /// PRIQEN, bit [1]: PRI queue enabled.
            PRIQEN OFFSET(1) NUMBITS(1) [],
            /// EVENTQEN, bit [2]: event queue enabled.
            EVENTQEN OFFSET(2) NUMBITS(1) [],
            /// CMDQEN, bit [3]: command queue processing enabled.
            CMDQEN OFFSET(3) NUMBITS(1) [],
            /// ATSCHK, bit [4]: reject ATS-translated transactions from streams without ATS.
            ATSCHK OFFSET(4) NUMBITS(1) [],
            /// VMW, bits [8:6]: VMID wildcard for TLB invalidations (needs IDR0.VMW).
            VMW OFFSET(6) NUMBITS(3) []
        ],

        /// SMMU_CR1: table and queue memory attributes (IHI 0070 §6.3.11).
        pub CR1 [
            /// QUEUE_IC, bits [1:0]: queue inner cacheability.
            QUEUE_IC OFFSET(0) NUMBITS(2) [
                /// Non-cacheable.
                NonCacheable = 0,
                /// Write-Back cacheable.
                WriteBack = 1,
                /// Write-Through cacheable.
                WriteThrough = 2
            ],
            /// QUEUE_OC, bits [3:2]: queue outer cacheability.
            QUEUE_OC OFFSET(2) NUMBITS(2) [
                /// Non-cacheable.
                NonCacheable = 0,
                /// Write-Back cacheable.
                WriteBack = 1,
                /// Write-Through cacheable.
                WriteThrough = 2
            ],
            /// QUEUE_SH, bits [5:4]: queue shareability.
            QUEUE_SH OFFSET(4) NUMBITS(2) [
                /// Non-shareable.
                NonShareable = 0,
                /// Outer Shareable.
                OuterShareable = 2,
                /// Inner Shareable.
                InnerShareable = 3
            ],
            /// TABLE_IC, bits [7:6]: table (STE, CD, L1 descriptor) inner cacheability.
            TABLE_IC OFFSET(6) NUMBITS(2) [
                /// Non-cacheable.
                NonCacheable = 0,
                /// Write-Back cacheable.
                WriteBack = 1,
                /// Write-Through cacheable.
                WriteThrough = 2
            ],
            /// TABLE_OC, bits [9:8]: table outer cacheability.
            TABLE_OC OFFSET(8) NUMBITS(2) [
                /// Non-cacheable.
                NonCacheable = 0,
                /// Write-Back cacheable.
                WriteBack = 1,
                /// Write-Through cacheable.
                WriteThrough = 2
            ],
            /// TABLE_SH, bits [11:10]: table shareability.
            TABLE_SH OFFSET(10) NUMBITS(2) [
                /// Non-shareable.
                NonShareable = 0,
                /// Outer Shareable.
                OuterShareable = 2,
                /// Inner Shareable.
                InnerShareable = 3
            ]
        ],

        /// SMMU_CR2: miscellaneous control (IHI 0070 §6.3.12).
        pub CR2 [
            /// E2H, bit [0]: EL2 StreamWorld is EL2-E2H (needs IDR0.Hyp).
            E2H OFFSET(0) NUMBITS(1) [],
            /// RECINVSID, bit [1]: record C_BAD_STREAMID for out-of-range StreamIDs.
            RECINVSID OFFSET(1) NUMBITS(1) [],
            /// PTM, bit [2]: private TLB maintenance (ignore broadcast TLB invalidations).
            PTM OFFSET(2) NUMBITS(1) [],
            /// REC_CFG_ATS, bit [3]: record configuration events for ATS/PRI (needs IDR0.ATSRECERR).
            REC_CFG_ATS OFFSET(3) NUMBITS(1) []
        ],

        /// SMMU_STATUSR: status (IHI 0070 §6.3.13).
        pub STATUSR [
            /// DORMANT, bit [0]: the SMMU is dormant (hint, needs IDR0.DORMHINT).
            DORMANT OFFSET(0) NUMBITS(1) []
        ],

        /// SMMU_GBPA: global bypass attributes while SMMU_CR0.SMMUEN = 0 (IHI 0070 §6.3.14).
        pub GBPA [
            /// MemAttr, bits [3:0]: memory type override (used when MTCFG = 1).
            MEMATTR OFFSET(0) NUMBITS(4) [],
            /// MTCFG, bit [4]: 0 = use incoming memory type, 1 = use MEMATTR.
            MTCFG OFFSET(4) NUMBITS(1) [],
            /// ALLOCCFG, bits [11:8]: allocation hints (bit 3 set: override with RA/WA/TR).
            ALLOCCFG OFFSET(8) NUMBITS(4) [],
            /// SHCFG, bits [13:12]: shareability override.
            SHCFG OFFSET(12) NUMBITS(2) [
                /// Non-shareable.
                NonShareable = 0,
                /// Use the incoming shareability.
                UseIncoming = 1,
                /// Outer Shareable.
                OuterShareable = 2,
                /// Inner Shareable.
                InnerShareable = 3
            ],
            /// PRIVCFG, bits [17:16]: privilege override (0 incoming, 2 unprivileged, 3 privileged).
            PRIVCFG OFFSET(16) NUMBITS(2) [],
            /// INSTCFG, bits [19:18]: instruction/data override (0 incoming, 2 data, 3 instruction).
            INSTCFG OFFSET(18) NUMBITS(2) [],
            /// ABORT, bit [20]: 1 = abort all incoming transactions while SMMUEN = 0.
            ABORT OFFSET(20) NUMBITS(1) [],
            /// Update, bit [31]: written as 1 with a new value; reads 1 until the value took effect.
            UPDATE OFFSET(31) NUMBITS(1) []
        ],

        /// SMMU_IRQ_CTRL interrupt enables, also the layout of SMMU_IRQ_CTRLACK
        /// (IHI 0070 §6.3.16, §6.3.18).
        pub IRQ_CTRL [
            /// GERROR_IRQEN, bit [0]: global error interrupt enabled.
            GERROR_IRQEN OFFSET(0) NUMBITS(1) [],
            /// PRIQ_IRQEN, bit [1]: PRI queue interrupt enabled.
            PRIQ_IRQEN OFFSET(1) NUMBITS(1) [],
            /// EVENTQ_IRQEN, bit [2]: event queue interrupt enabled.
            EVENTQ_IRQEN OFFSET(2) NUMBITS(1) []
        ],

        /// SMMU_GERROR global errors, also the layout of SMMU_GERRORN: a bit is active while it
        /// differs between the two (IHI 0070 §6.3.19, §6.3.20).
        pub GERROR [
            /// CMDQ_ERR, bit [0]: the command queue stopped on an error (SMMU_CMDQ_CONS.ERR).
            CMDQ_ERR OFFSET(0) NUMBITS(1) [],
            /// EVENTQ_ABT_ERR, bit [2]: an abort writing the event queue (events may be lost).
            EVENTQ_ABT_ERR OFFSET(2) NUMBITS(1) [],
            /// PRIQ_ABT_ERR, bit [3]: an abort writing the PRI queue.
            PRIQ_ABT_ERR OFFSET(3) NUMBITS(1) [],
            /// MSI_CMDQ_ABT_ERR, bit [4]: a CMD_SYNC completion MSI write aborted.
            MSI_CMDQ_ABT_ERR OFFSET(4) NUMBITS(1) [],
            /// MSI_EVENTQ_ABT_ERR, bit [5]: an event queue MSI write aborted.
            MSI_EVENTQ_ABT_ERR OFFSET(5) NUMBITS(1) [],
            /// MSI_PRIQ_ABT_ERR, bit [6]: a PRI queue MSI write aborted.
            MSI_PRIQ_ABT_ERR OFFSET(6) NUMBITS(1) [],
            /// MSI_GERROR_ABT_ERR, bit [7]: a GERROR MSI write aborted.
            MSI_GERROR_ABT_ERR OFFSET(7) NUMBITS(1) [],
            /// SFM_ERR, bit [8]: the SMMU entered Service Failure Mode.
            SFM_ERR OFFSET(8) NUMBITS(1) [],
            /// CMDQP_ERR, bit [9]: an enhanced command queue (control page) error (SMMUv3.3).
            CMDQP_ERR OFFSET(9) NUMBITS(1) [],
            /// DPT_ERR, bit [10]: a device permission table lookup fault (SMMUv3.3).
            DPT_ERR OFFSET(10) NUMBITS(1) []
        ],

        /// SMMU_*_IRQ_CFG2: MSI write attributes of GERROR, EVENTQ and PRIQ interrupts
        /// (IHI 0070 §6.3.23, §6.3.32, §6.3.36).
        pub IRQ_CFG2 [
            /// MemAttr, bits [3:0]: memory type of the MSI write (0x1 = Device-nGnRE).
            MEMATTR OFFSET(0) NUMBITS(4) [
                /// Device-nGnRE.
                DeviceNGnRE = 1
            ],
            /// SH, bits [5:4]: shareability of the MSI write.
            SH OFFSET(4) NUMBITS(2) [
                /// Non-shareable.
                NonShareable = 0,
                /// Outer Shareable.
                OuterShareable = 2,
                /// Inner Shareable.
                InnerShareable = 3
            ],
            /// LO, bit [31] (SMMU_PRIQ_IRQ_CFG2 only, RES0 elsewhere): interrupt on a last-in-group
            /// page request instead of on empty to non-empty; resets UNKNOWN (IHI 0070 §6.3.36).
            LO OFFSET(31) NUMBITS(1) []
        ],

        /// SMMU_CMDQ_CONS: command queue consumer index and error (IHI 0070 §6.3.28).
        pub CMDQ_CONS [
            /// RD, bits [19:0]: read index and wrap bit (bit LOG2SIZE is the wrap bit).
            RD OFFSET(0) NUMBITS(20) [],
            /// ERR, bits [30:24]: error code of the command at RD when the queue stopped.
            ERR OFFSET(24) NUMBITS(7) [
                /// CERROR_NONE: no error.
                None = 0,
                /// CERROR_ILL: illegal command.
                Illegal = 1,
                /// CERROR_ABT: abort on command fetch.
                Abort = 2,
                /// CERROR_ATC_INV_SYNC: ATC invalidation timeout or error before a CMD_SYNC.
                AtcInvSync = 3
            ]
        ],

        /// SMMU_EVENTQ_PROD and SMMU_PRIQ_PROD: producer index and overflow flag
        /// (IHI 0070 §6.3.95, §6.3.97).
        pub EVENTQ_PROD [
            /// WR, bits [19:0]: write index and wrap bit (bit LOG2SIZE is the wrap bit).
            WR OFFSET(0) NUMBITS(20) [],
            /// OVFLG, bit [31]: toggled by the SMMU when records were lost to a full queue.
            OVFLG OFFSET(31) NUMBITS(1) []
        ],

        /// SMMU_EVENTQ_CONS and SMMU_PRIQ_CONS: consumer index and overflow acknowledge
        /// (IHI 0070 §6.3.96, §6.3.98).
        pub EVENTQ_CONS [
            /// RD, bits [19:0]: read index and wrap bit (bit LOG2SIZE is the wrap bit).
            RD OFFSET(0) NUMBITS(20) [],
            /// OVACKFLG, bit [31]: software copies PROD.OVFLG here to acknowledge an overflow.
            OVACKFLG OFFSET(31) NUMBITS(1) []
        ],

        /// SMMU_STRTAB_BASE_CFG: stream table format and size (IHI 0070 §6.3.25).
        pub STRTAB_BASE_CFG [
            /// LOG2SIZE, bits [5:0]: log2 of the number of StreamIDs covered by the table.
            LOG2SIZE OFFSET(0) NUMBITS(6) [],
            /// SPLIT, bits [10:6]: StreamID bits resolved by a level-2 table (6, 8 or 10).
            SPLIT OFFSET(6) NUMBITS(5) [],
            /// FMT, bits [17:16]: stream table format.
            FMT OFFSET(16) NUMBITS(2) [
                /// Linear stream table.
                Linear = 0,
                /// 2-level stream table.
                TwoLevel = 1
            ]
        ]
    ];

    register_bitfields![u64,
        /// SMMU_*_IRQ_CFG0: MSI target address of GERROR, EVENTQ and PRIQ interrupts
        /// (IHI 0070 §6.3.21, §6.3.30, §6.3.34).
        pub IRQ_CFG0 [
            /// ADDR, bits [55:2]: MSI target physical address bits [55:2]; 0 disables the MSI.
            ADDR OFFSET(2) NUMBITS(54) []
        ],

        /// SMMU_STRTAB_BASE: stream table base address (IHI 0070 §6.3.24).
        pub STRTAB_BASE [
            /// ADDR, bits [55:6]: physical address bits [55:6] of the linear or level-1 table.
            ADDR OFFSET(6) NUMBITS(50) [],
            /// RA, bit [62]: read-allocate hint for table fetches.
            RA OFFSET(62) NUMBITS(1) []
        ],

        /// SMMU_CMDQ_BASE, SMMU_EVENTQ_BASE and SMMU_PRIQ_BASE: queue base and size
        /// (IHI 0070 §6.3.26, §6.3.29, §6.3.33).
        pub Q_BASE [
            /// LOG2SIZE, bits [4:0]: log2 of the number of entries (at most IDR1.CMDQS/EVENTQS/PRIQS).
            LOG2SIZE OFFSET(0) NUMBITS(5) [],
            /// ADDR, bits [55:5]: physical address bits [55:5] of the naturally aligned queue.
            ADDR OFFSET(5) NUMBITS(51) [],
            /// RA (CMDQ) / WA (EVENTQ, PRIQ), bit [62]: read- or write-allocate hint.
            RA_WA OFFSET(62) NUMBITS(1) []
        ]
    ];
}

/// Register offsets within their page, for decoding an MMIO address (IHI 0070 §6.2).
///
/// Page-0 offsets unless marked page-1 relative. Each is `offset_of!` of the register of the
/// same name in [`Page0`] or [`Page1`], so the offsets are written once, in `register_structs!`.
pub mod offset {
    use core::mem::{offset_of, size_of};

    use super::{Page0, Page1};

    /// Offset of the register at `idx` in [`Page0::ID_REGS`].
    const fn id_reg(idx: usize) -> usize {
        offset_of!(Page0, ID_REGS) + 4 * idx
    }

    /// SMMU_IDR0, page 0 (IHI 0070 §6.3.1).
    pub const IDR0: usize = offset_of!(Page0, IDR0);
    /// SMMU_IDR1, page 0 (IHI 0070 §6.3.2).
    pub const IDR1: usize = offset_of!(Page0, IDR1);
    /// SMMU_IDR2, page 0 (IHI 0070 §6.3.3).
    pub const IDR2: usize = offset_of!(Page0, IDR2);
    /// SMMU_IDR3, page 0 (IHI 0070 §6.3.4).
    pub const IDR3: usize = offset_of!(Page0, IDR3);
    /// SMMU_IDR4, page 0 (IHI 0070 §6.3.5).
    pub const IDR4: usize = offset_of!(Page0, IDR4);
    /// SMMU_IDR5, page 0 (IHI 0070 §6.3.6).
    pub const IDR5: usize = offset_of!(Page0, IDR5);
    /// SMMU_IIDR, page 0 (IHI 0070 §6.3.7).
    pub const IIDR: usize = offset_of!(Page0, IIDR);
    /// SMMU_AIDR, page 0 (IHI 0070 §6.3.8).
    pub const AIDR: usize = offset_of!(Page0, AIDR);
    /// SMMU_CR0, page 0 (IHI 0070 §6.3.9).
    pub const CR0: usize = offset_of!(Page0, CR0);
    /// SMMU_CR0ACK, page 0 (IHI 0070 §6.3.10).
    pub const CR0ACK: usize = offset_of!(Page0, CR0ACK);
    /// SMMU_CR1, page 0 (IHI 0070 §6.3.11).
    pub const CR1: usize = offset_of!(Page0, CR1);
    /// SMMU_CR2, page 0 (IHI 0070 §6.3.12).
    pub const CR2: usize = offset_of!(Page0, CR2);
    /// SMMU_STATUSR, page 0 (IHI 0070 §6.3.13).
    pub const STATUSR: usize = offset_of!(Page0, STATUSR);
    /// SMMU_GBPA, page 0 (IHI 0070 §6.3.14).
    pub const GBPA: usize = offset_of!(Page0, GBPA);
    /// SMMU_AGBPA, page 0 (IHI 0070 §6.3.15).
    pub const AGBPA: usize = offset_of!(Page0, AGBPA);
    /// SMMU_IRQ_CTRL, page 0 (IHI 0070 §6.3.16).
    pub const IRQ_CTRL: usize = offset_of!(Page0, IRQ_CTRL);
    /// SMMU_IRQ_CTRLACK, page 0 (IHI 0070 §6.3.18).
    pub const IRQ_CTRLACK: usize = offset_of!(Page0, IRQ_CTRLACK);
    /// SMMU_GERROR, page 0 (IHI 0070 §6.3.19).
    pub const GERROR: usize = offset_of!(Page0, GERROR);
    /// SMMU_GERRORN, page 0 (IHI 0070 §6.3.20).
    pub const GERRORN: usize = offset_of!(Page0, GERRORN);
    /// SMMU_GERROR_IRQ_CFG0 (64-bit), page 0 (IHI 0070 §6.3.21).
    pub const GERROR_IRQ_CFG0: usize = offset_of!(Page0, GERROR_IRQ_CFG0);
    /// SMMU_GERROR_IRQ_CFG1, page 0 (IHI 0070 §6.3.22).
    pub const GERROR_IRQ_CFG1: usize = offset_of!(Page0, GERROR_IRQ_CFG1);
    /// SMMU_GERROR_IRQ_CFG2, page 0 (IHI 0070 §6.3.23).
    pub const GERROR_IRQ_CFG2: usize = offset_of!(Page0, GERROR_IRQ_CFG2);
    /// SMMU_STRTAB_BASE (64-bit), page 0 (IHI 0070 §6.3.24).
    pub const STRTAB_BASE: usize = offset_of!(Page0, STRTAB_BASE);
    /// SMMU_STRTAB_BASE_CFG, page 0 (IHI 0070 §6.3.25).
    pub const STRTAB_BASE_CFG: usize = offset_of!(Page0, STRTAB_BASE_CFG);
    /// SMMU_CMDQ_BASE (64-bit), page 0 (IHI 0070 §6.3.26).
    pub const CMDQ_BASE: usize = offset_of!(Page0, CMDQ_BASE);
    /// SMMU_CMDQ_PROD, page 0 (IHI 0070 §6.3.27).
    pub const CMDQ_PROD: usize = offset_of!(Page0, CMDQ_PROD);
    /// SMMU_CMDQ_CONS, page 0 (IHI 0070 §6.3.28).
    pub const CMDQ_CONS: usize = offset_of!(Page0, CMDQ_CONS);
    /// SMMU_EVENTQ_BASE (64-bit), page 0 (IHI 0070 §6.3.29).
    pub const EVENTQ_BASE: usize = offset_of!(Page0, EVENTQ_BASE);
    /// SMMU_EVENTQ_IRQ_CFG0 (64-bit), page 0 (IHI 0070 §6.3.30).
    pub const EVENTQ_IRQ_CFG0: usize = offset_of!(Page0, EVENTQ_IRQ_CFG0);
    /// SMMU_EVENTQ_IRQ_CFG1, page 0 (IHI 0070 §6.3.31).
    pub const EVENTQ_IRQ_CFG1: usize = offset_of!(Page0, EVENTQ_IRQ_CFG1);
    /// SMMU_EVENTQ_IRQ_CFG2, page 0 (IHI 0070 §6.3.32).
    pub const EVENTQ_IRQ_CFG2: usize = offset_of!(Page0, EVENTQ_IRQ_CFG2);
    /// SMMU_PRIQ_BASE (64-bit), page 0 (IHI 0070 §6.3.33).
    pub const PRIQ_BASE: usize = offset_of!(Page0, PRIQ_BASE);
    /// SMMU_PRIQ_IRQ_CFG0 (64-bit), page 0 (IHI 0070 §6.3.34).
    pub const PRIQ_IRQ_CFG0: usize = offset_of!(Page0, PRIQ_IRQ_CFG0);
    /// SMMU_PRIQ_IRQ_CFG1, page 0 (IHI 0070 §6.3.35).
    pub const PRIQ_IRQ_CFG1: usize = offset_of!(Page0, PRIQ_IRQ_CFG1);
    /// SMMU_PRIQ_IRQ_CFG2, page 0 (IHI 0070 §6.3.36).
    pub const PRIQ_IRQ_CFG2: usize = offset_of!(Page0, PRIQ_IRQ_CFG2);
    /// SMMU_GATOS_CTRL, page 0 (IHI 0070 §6.3.37).
    pub const GATOS_CTRL: usize = offset_of!(Page0, GATOS_CTRL);
    /// SMMU_GATOS_SID (64-bit), page 0 (IHI 0070 §6.3.38).
    pub const GATOS_SID: usize = offset_of!(Page0, GATOS_SID);
    /// SMMU_GATOS_ADDR (64-bit), page 0 (IHI 0070 §6.3.39).
    pub const GATOS_ADDR: usize = offset_of!(Page0, GATOS_ADDR);
    /// SMMU_GATOS_PAR (64-bit), page 0 (IHI 0070 §6.3.40).
    pub const GATOS_PAR: usize = offset_of!(Page0, GATOS_PAR);
    /// SMMU_VATOS_SEL, page 0 (IHI 0070 §6.3.44).
    pub const VATOS_SEL: usize = offset_of!(Page0, VATOS_SEL);
    /// SMMU_PIDR4, first register of the ID block, page 0 (IHI 0070 §6.3.170).
    pub const PIDR4: usize = id_reg(Page0::PIDR4_IDX);
    /// SMMU_PIDR5, page 0 (IHI 0070 §6.3.170).
    pub const PIDR5: usize = id_reg(Page0::PIDR5_IDX);
    /// SMMU_PIDR6, page 0 (IHI 0070 §6.3.170).
    pub const PIDR6: usize = id_reg(Page0::PIDR6_IDX);
    /// SMMU_PIDR7, page 0 (IHI 0070 §6.3.170).
    pub const PIDR7: usize = id_reg(Page0::PIDR7_IDX);
    /// SMMU_PIDR0, page 0 (IHI 0070 §6.3.170).
    pub const PIDR0: usize = id_reg(Page0::PIDR0_IDX);
    /// SMMU_PIDR1, page 0 (IHI 0070 §6.3.170).
    pub const PIDR1: usize = id_reg(Page0::PIDR1_IDX);
    /// SMMU_PIDR2, page 0 (IHI 0070 §6.3.170).
    pub const PIDR2: usize = id_reg(Page0::PIDR2_IDX);
    /// SMMU_PIDR3, page 0 (IHI 0070 §6.3.170).
    pub const PIDR3: usize = id_reg(Page0::PIDR3_IDX);
    /// SMMU_CIDR0, page 0 (IHI 0070 §6.3.170).
    pub const CIDR0: usize = id_reg(Page0::CIDR0_IDX);
    /// SMMU_CIDR1, page 0 (IHI 0070 §6.3.170).
    pub const CIDR1: usize = id_reg(Page0::CIDR1_IDX);
    /// SMMU_CIDR2, page 0 (IHI 0070 §6.3.170).
    pub const CIDR2: usize = id_reg(Page0::CIDR2_IDX);
    /// SMMU_CIDR3, last register of the ID block, page 0 (IHI 0070 §6.3.170).
    pub const CIDR3: usize = id_reg(Page0::CIDR3_IDX);

    /// SMMU_EVENTQ_PROD, **page-1 relative** (absolute `0x100A8`; IHI 0070 §6.2.2, §6.3.95).
    pub const EVENTQ_PROD: usize = offset_of!(Page1, EVENTQ_PROD);
    /// SMMU_EVENTQ_CONS, **page-1 relative** (absolute `0x100AC`; IHI 0070 §6.2.2, §6.3.96).
    pub const EVENTQ_CONS: usize = offset_of!(Page1, EVENTQ_CONS);
    /// SMMU_PRIQ_PROD, **page-1 relative** (absolute `0x100C8`; IHI 0070 §6.2.2, §6.3.97).
    pub const PRIQ_PROD: usize = offset_of!(Page1, PRIQ_PROD);
    /// SMMU_PRIQ_CONS, **page-1 relative** (absolute `0x100CC`; IHI 0070 §6.2.2, §6.3.98).
    pub const PRIQ_CONS: usize = offset_of!(Page1, PRIQ_CONS);

    /// Size of each register page (IHI 0070 §6.2).
    pub const PAGE_SIZE: usize = size_of::<Page0>();
}

#[cfg(test)]
mod tests {
    use core::mem::{align_of, offset_of, size_of};

    use tock_registers::LocalRegisterCopy;
    use tock_registers::interfaces::{Readable, Writeable};

    use super::*;
    use crate::features::{IdRegs, QEMU_VIRT};

    #[test]
    fn absolute_offsets_match_spec_table() {
        // Offsets are written once, in `register_structs!` (which checks their order and gaps);
        // these are the facts derived from them that IHI 0070 §6.2 prints separately.
        // Page-1 registers at their absolute addresses on an SMMU with contiguous pages.
        assert_eq!(offset::PAGE_SIZE + offset::EVENTQ_PROD, 0x100A8);
        assert_eq!(offset::PAGE_SIZE + offset::EVENTQ_CONS, 0x100AC);
        assert_eq!(offset::PAGE_SIZE + offset::PRIQ_PROD, 0x100C8);
        assert_eq!(offset::PAGE_SIZE + offset::PRIQ_CONS, 0x100CC);
        // The ID block's `*_IDX` constants put each register at its address.
        assert_eq!(offset::PIDR4, 0xFD0);
        assert_eq!(offset::PIDR0, 0xFE0);
        assert_eq!(offset::CIDR0, 0xFF0);
        assert_eq!(offset::CIDR3, 0xFFC);
    }

    #[test]
    fn page_sizes_and_alignment() {
        assert_eq!(size_of::<Page0>(), 0x10000);
        assert_eq!(size_of::<Page1>(), 0x10000);
        assert_eq!(size_of::<Page0>(), offset::PAGE_SIZE);
        // 64-bit registers are accessed with single 64-bit loads/stores.
        assert_eq!(align_of::<Page0>(), 8);
        assert_eq!(offset_of!(Page0, GERROR_IRQ_CFG0) % 8, 0);
        assert_eq!(offset_of!(Page0, GATOS_PAR) % 8, 0);
    }

    #[test]
    fn field_positions_match_spec() {
        // CR1 as Linux and Hafnium program it: ISH / WB / WB for tables and queues.
        let cr1 = CR1::TABLE_SH::InnerShareable
            + CR1::TABLE_OC::WriteBack
            + CR1::TABLE_IC::WriteBack
            + CR1::QUEUE_SH::InnerShareable
            + CR1::QUEUE_OC::WriteBack
            + CR1::QUEUE_IC::WriteBack;
        assert_eq!(cr1.value, 0xD75);
        let cr0 = CR0::SMMUEN::SET
            + CR0::PRIQEN::SET
            + CR0::EVENTQEN::SET
            + CR0::CMDQEN::SET
            + CR0::ATSCHK::SET
            + CR0::VMW.val(0b111);
        assert_eq!(cr0.value, 0x1DF);
        let cr2 = CR2::E2H::SET + CR2::RECINVSID::SET + CR2::PTM::SET + CR2::REC_CFG_ATS::SET;
        assert_eq!(cr2.value, 0xF);
        assert_eq!(GBPA::UPDATE::SET.value, 1 << 31);
        assert_eq!(GBPA::ABORT::SET.value, 1 << 20);
        assert_eq!(GBPA::SHCFG::UseIncoming.value, 0x1000);
        assert_eq!(
            (GBPA::INSTCFG.val(3) + GBPA::PRIVCFG.val(3)).value,
            0xF_0000
        );
        assert_eq!((GBPA::ALLOCCFG.val(0xF) + GBPA::MTCFG::SET).value, 0xF10);
        assert_eq!(GBPA::MEMATTR.val(0xF).value, 0xF);
        let irq = IRQ_CTRL::GERROR_IRQEN::SET + IRQ_CTRL::PRIQ_IRQEN::SET;
        assert_eq!((irq + IRQ_CTRL::EVENTQ_IRQEN::SET).value, 0x7);
        assert_eq!(STATUSR::DORMANT::SET.value, 1);
        assert_eq!(CMDQ_CONS::ERR.val(0x7F).value, 0x7F00_0000);
        assert_eq!(CMDQ_CONS::RD.val(0xF_FFFF).value, 0xF_FFFF);
        assert_eq!(EVENTQ_PROD::OVFLG::SET.value, 1 << 31);
        assert_eq!(EVENTQ_CONS::OVACKFLG::SET.value, 1 << 31);
        assert_eq!(PRIQ_PROD::OVFLG::SET.value, 1 << 31);
        assert_eq!(PRIQ_CONS::OVACKFLG::SET.value, 1 << 31);
        let cfg = STRTAB_BASE_CFG::FMT::TwoLevel
            + STRTAB_BASE_CFG::SPLIT.val(8)
            + STRTAB_BASE_CFG::LOG2SIZE.val(16);
        assert_eq!(cfg.value, 0x1_0210);
        let q = Q_BASE::RA_WA::SET + Q_BASE::ADDR.val(0x4000_0000 >> 5) + Q_BASE::LOG2SIZE.val(19);
        assert_eq!(q.value, (1 << 62) | 0x4000_0000 | 19);
        assert_eq!(Q_BASE::ADDR.val(u64::MAX).value, 0x00FF_FFFF_FFFF_FFE0);
        let st = STRTAB_BASE::RA::SET + STRTAB_BASE::ADDR.val(0x8000_0000 >> 6);
        assert_eq!(st.value, (1 << 62) | 0x8000_0000);
        assert_eq!(STRTAB_BASE::ADDR.val(u64::MAX).value, 0x00FF_FFFF_FFFF_FFC0);
        assert_eq!(IRQ_CFG0::ADDR.val(u64::MAX).value, 0x00FF_FFFF_FFFF_FFFC);
        let cfg2 = IRQ_CFG2::MEMATTR::DeviceNGnRE + IRQ_CFG2::SH::InnerShareable;
        assert_eq!(cfg2.value, 0x31);
        assert_eq!(IRQ_CFG2::LO::SET.value, 1 << 31);
        let all_gerror = [
            GERROR::CMDQ_ERR,
            GERROR::EVENTQ_ABT_ERR,
            GERROR::PRIQ_ABT_ERR,
            GERROR::MSI_CMDQ_ABT_ERR,
            GERROR::MSI_EVENTQ_ABT_ERR,
            GERROR::MSI_PRIQ_ABT_ERR,
            GERROR::MSI_GERROR_ABT_ERR,
            GERROR::SFM_ERR,
            GERROR::CMDQP_ERR,
            GERROR::DPT_ERR,
        ]
        .iter()
        .fold(0u32, |acc, f| acc | (f.mask << f.shift));
        // Bit 1 is reserved; Linux's 0x1FD is the v3.0-v3.2 subset.
        assert_eq!(all_gerror, 0x7FD);
    }

    #[test]
    fn id_fields_decode_qemu_values() {
        let idr0 = LocalRegisterCopy::<u32, IDR0::Register>::new(QEMU_VIRT.idr0);
        assert_eq!(
            idr0.read_as_enum(IDR0::TTF),
            Some(IDR0::TTF::Value::AArch64)
        );
        assert_eq!(
            idr0.read_as_enum(IDR0::STALL_MODEL),
            Some(IDR0::STALL_MODEL::Value::TerminateOnly)
        );
        assert_eq!(
            idr0.read_as_enum(IDR0::ST_LEVEL),
            Some(IDR0::ST_LEVEL::Value::TwoLevel)
        );
        assert_eq!(
            idr0.read_as_enum(IDR0::TTENDIAN),
            Some(IDR0::TTENDIAN::Value::Little)
        );
        let idr1 = LocalRegisterCopy::<u32, IDR1::Register>::new(QEMU_VIRT.idr1);
        assert_eq!(idr1.read(IDR1::SIDSIZE), 16);
        assert_eq!(idr1.read(IDR1::CMDQS), 19);
        assert_eq!(idr1.read(IDR1::EVENTQS), 19);
        let idr3 = LocalRegisterCopy::<u32, IDR3::Register>::new(QEMU_VIRT.idr3);
        assert_eq!(idr3.read(IDR3::BBML), 2);
        let idr5 = LocalRegisterCopy::<u32, IDR5::Register>::new(QEMU_VIRT.idr5);
        assert_eq!(idr5.read_as_enum(IDR5::OAS), Some(IDR5::OAS::Value::Bits44));
        let iidr = LocalRegisterCopy::<u32, IIDR::Register>::new(0x4831_243B);
        assert_eq!(iidr.read(IIDR::PRODUCTID), 0x483);
        assert_eq!(iidr.read(IIDR::IMPLEMENTER), 0x43B);
        let aidr = LocalRegisterCopy::<u32, AIDR::Register>::new(0x12);
        assert_eq!(
            (aidr.read(AIDR::ARCHMAJORREV), aidr.read(AIDR::ARCHMINORREV)),
            (1, 2)
        );
        let idr2 = LocalRegisterCopy::<u32, IDR2::Register>::new(0xFFFF_FFFF);
        assert_eq!(idr2.read(IDR2::BA_VATOS), 0x3FF);
    }

    /// Page 0 over plain host memory: the registers land where the offsets say.
    #[test]
    fn page0_over_memory() {
        let mut mem = vec![0u64; size_of::<Page0>() / 8];
        let put = |mem: &mut [u64], off: usize, v: u32| {
            let word = &mut mem[off / 8];
            let shift = (off % 8) * 8;
            *word = (*word & !(0xFFFF_FFFFu64 << shift)) | (u64::from(v) << shift);
        };
        put(&mut mem, offset::IDR0, QEMU_VIRT.idr0);
        put(&mut mem, offset::IDR1, QEMU_VIRT.idr1);
        put(&mut mem, offset::IDR3, QEMU_VIRT.idr3);
        put(&mut mem, offset::IDR5, QEMU_VIRT.idr5);
        put(&mut mem, offset::AIDR, QEMU_VIRT.aidr);
        put(&mut mem, offset::CIDR0, 0x0D);
        let ptr = mem.as_mut_ptr().cast::<Page0>();
        // SAFETY: `mem` is 0x10000 bytes, 8-byte aligned (a `Vec<u64>`), zero-initialised and
        // outlives `page0`; every register type is a transparent `UnsafeCell` over an integer,
        // valid for any bit pattern, and nothing else accesses `mem` while `page0` lives.
        let page0 = unsafe { &*ptr };
        assert_eq!(IdRegs::read(page0), QEMU_VIRT);
        assert_eq!(page0.ID_REGS[Page0::CIDR0_IDX].get(), 0x0D);
        page0
            .STRTAB_BASE
            .write(STRTAB_BASE::RA::SET + STRTAB_BASE::ADDR.val(0x1234_5000 >> 6));
        page0
            .GBPA
            .write(GBPA::UPDATE::SET + GBPA::SHCFG::UseIncoming);
        // `page0` is not used past this point; read the memory back directly.
        assert_eq!(mem[offset::STRTAB_BASE / 8], (1 << 62) | 0x1234_5000);
        assert_eq!(mem[offset::GBPA / 8] >> 32, 0x8000_1000);
    }
}
