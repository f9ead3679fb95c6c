//! Tegra241 CMDQV register blocks as `tock-registers` structs: the only CMDQV MMIO definitions.
//!
//! The window (Linux `tegra241-cmdqv.c`: `TEGRA241_CMDQV_CONFIG_BASE`, `TEGRA241_VCMDQ_PAGE0_BASE`,
//! `TEGRA241_VINTFi_PAGE0`) is a config page ([`ConfigPage`], with one [`VintfRegs`] block per
//! VINTF), then two pages of VCMDQ registers in the *global* view ([`VcmdqPage0`] control,
//! [`VcmdqPage1`] base), then, for each VINTF *i*, the same two page types in the VINTF's *logical*
//! view at `0x30000 + 0x20000 × i` (page 0) and `0x40000 + 0x20000 × i` (page 1). Both views
//! alias one register copy per queue; the driver, like Linux, uses only the logical view.
//!
//! There is no public NVIDIA specification: register names, offsets and fields follow the Linux
//! driver (`drivers/iommu/arm/arm-smmu-v3/tegra241-cmdqv.c`, its `TEGRA241_*` offset macros and
//! field masks) and QEMU's register model (`hw/arm/tegra241-cmdqv.h`, which names the fields
//! Linux leaves unnamed).

#![allow(non_snake_case)]

use tock_registers::register_structs;
use tock_registers::registers::ReadWrite;

use crate::regs::ReadOnly;

pub use fields::*;

/// Size of one register page of the window.
pub const PAGE_SIZE: usize = 0x1_0000;
/// Offset of the global VCMDQ page 0 (control/status) from the window base.
pub const GLOBAL_PAGE0: usize = 0x1_0000;
/// Offset of the global VCMDQ page 1 (base registers) from the window base.
pub const GLOBAL_PAGE1: usize = 0x2_0000;
/// Offset of VINTF 0's logical page 0 from the window base.
pub const VINTF_PAGE0_BASE: usize = 0x3_0000;
/// Distance between the logical pages of consecutive VINTFs.
pub const VINTF_PAGE_STRIDE: usize = 0x2_0000;
/// Size of the per-VINTF block in the config page.
pub const VINTF_BLOCK_SIZE: usize = size_of::<VintfRegs>();
/// Size of one VCMDQ slot in page 0 and in page 1.
pub const VCMDQ_SLOT_SIZE: usize = size_of::<VcmdqCtrl>();
/// Global VCMDQs the config page can describe (CMDQ_ALLOC has 128 entries; QEMU: "hardware
/// supports up to 128 VCMDQs").
pub const MAX_VCMDQS: usize = 128;
/// VINTF blocks this crate lays out in the config page (a Tegra264 window of `0x830000` bytes
/// holds 64 VINTFs).
pub const MAX_VINTFS: usize = 64;
/// SID_MATCH/SID_REPLACE pairs per VINTF block (`0x40..0x7C`, `0x80..0xBC`).
pub const MAX_SID_SLOTS: usize = 16;

/// Offset of VINTF `i`'s logical page 0 (its LVCMDQ control registers) from the window base.
pub const fn vintf_page0(i: usize) -> usize {
    VINTF_PAGE0_BASE + VINTF_PAGE_STRIDE * i
}

/// Offset of VINTF `i`'s logical page 1 (its LVCMDQ base registers) from the window base.
pub const fn vintf_page1(i: usize) -> usize {
    vintf_page0(i) + PAGE_SIZE
}

/// The window size for `num_vintfs` VINTFs: `0x30000 + 0x20000 × num_vintfs`.
pub const fn window_size(num_vintfs: usize) -> usize {
    VINTF_PAGE0_BASE + VINTF_PAGE_STRIDE * num_vintfs
}

/// The bitfield definitions (generated `Register` types and `SET`/`CLEAR` values are
/// undocumented, hence the module-wide allowance; every hand-written item carries its own doc).
#[allow(missing_docs)]
mod fields {
    use tock_registers::register_bitfields;

    register_bitfields![u32,
        /// CMDQV_CONFIG (config page `0x000`).
        pub CONFIG [
            /// CMDQV_EN, bit \[0\]: enable the extension; followed by STATUS.CMDQV_ENABLED.
            CMDQV_EN OFFSET(0) NUMBITS(1) [],
            /// CMDQV_PER_CMD_OFFSET, bits \[3:1\] (QEMU name only; semantics unconfirmed).
            CMDQV_PER_CMD_OFFSET OFFSET(1) NUMBITS(3) [],
            /// CMDQ_MAX_CLK_BATCH, bits \[11:4\] (QEMU name only).
            CMDQ_MAX_CLK_BATCH OFFSET(4) NUMBITS(8) [],
            /// CMDQ_MAX_CMD_BATCH, bits \[19:12\] (QEMU name only).
            CMDQ_MAX_CMD_BATCH OFFSET(12) NUMBITS(8) [],
            /// CONS_DRAM_EN, bit \[20\]: mirror CONS to CONS_INDX_BASE (QEMU name only).
            CONS_DRAM_EN OFFSET(20) NUMBITS(1) []
        ],
        /// CMDQV_PARAM (config page `0x004`, read-only).
        pub PARAM [
            /// CMDQV_VER, bits \[3:0\]: implementation version.
            CMDQV_VER OFFSET(0) NUMBITS(4) [],
            /// NUM_VCMDQ_LOG2, bits \[7:4\]: log2 of the global VCMDQ count.
            NUM_VCMDQ_LOG2 OFFSET(4) NUMBITS(4) [],
            /// NUM_VINTF_LOG2, bits \[11:8\]: log2 of the VINTF count.
            NUM_VINTF_LOG2 OFFSET(8) NUMBITS(4) [],
            /// NUM_SID_PER_VM_LOG2, bits \[15:12\]: log2 of the SID_MATCH/REPLACE pairs per VINTF.
            NUM_SID_PER_VM_LOG2 OFFSET(12) NUMBITS(4) []
        ],
        /// CMDQV_STATUS (config page `0x008`, read-only).
        pub STATUS [
            /// CMDQV_ENABLED, bit \[0\]: the CONFIG.CMDQV_EN value in effect.
            CMDQV_ENABLED OFFSET(0) NUMBITS(1) []
        ],
        /// CMDQ_ALLOC(q) (config page `0x200 + 4q`): attaches global VCMDQ *q* to (VINTF, LVCMDQ).
        pub CMDQ_ALLOC [
            /// ALLOCATED, bit \[0\]: the queue is mapped into its VINTF's logical view.
            ALLOCATED OFFSET(0) NUMBITS(1) [],
            /// LVCMDQ, bits \[7:1\]: the logical index within the VINTF.
            LVCMDQ OFFSET(1) NUMBITS(7) [],
            /// VINTF, bits \[20:15\]: the owning VINTF (QEMU: VIRT_INTF_INDX).
            VINTF OFFSET(15) NUMBITS(6) []
        ],
        /// VINTF_CONFIG (VINTF block `0x00`).
        pub VINTF_CONFIG [
            /// ENABLE, bit \[0\]: enable the VINTF; followed by VINTF_STATUS.ENABLED.
            ENABLE OFFSET(0) NUMBITS(1) [],
            /// VMID, bits \[16:1\]: the VMID of the VINTF's commands (0 for the host's VINTF0).
            VMID OFFSET(1) NUMBITS(16) [],
            /// HYP_OWN, bit \[17\]: owned by the hypervisor (no command filter); reads as 0 from a
            /// guest.
            HYP_OWN OFFSET(17) NUMBITS(1) []
        ],
        /// VINTF_STATUS (VINTF block `0x04`, read-only).
        pub VINTF_STATUS [
            /// ENABLED, bit \[0\]: the VINTF_CONFIG.ENABLE value in effect ("ENABLE_OK").
            ENABLED OFFSET(0) NUMBITS(1) [],
            /// STATUS, bits \[3:1\]: 0 no error, 1 a VCMDQ error (QEMU).
            STATUS OFFSET(1) NUMBITS(3) [],
            /// VI_NUM_LVCMDQ, bits \[23:16\]: logical queues mapped (QEMU).
            VI_NUM_LVCMDQ OFFSET(16) NUMBITS(8) []
        ],
        /// SID_MATCH(s) (VINTF block `0x40 + 4s`).
        pub SID_MATCH [
            /// ENABLE, bit \[0\]: the slot is in use.
            ENABLE OFFSET(0) NUMBITS(1) [],
            /// VIRT_SID, bits \[20:1\]: the StreamID the guest writes in its commands.
            VIRT_SID OFFSET(1) NUMBITS(20) []
        ],
        /// SID_REPLACE(s) (VINTF block `0x80 + 4s`).
        pub SID_REPLACE [
            /// PHYS_SID, bits \[19:0\] (QEMU; Linux writes the whole 32-bit StreamID).
            PHYS_SID OFFSET(0) NUMBITS(20) []
        ],
        /// VCMDQ_CONS (page-0 slot `0x00`): the SMMU CMDQ_CONS layout.
        pub VCMDQ_CONS [
            /// RD, bits \[19:0\]: read index and wrap bit, as SMMU_CMDQ_CONS.
            RD OFFSET(0) NUMBITS(20) [],
            /// ERR, bits \[30:24\]: why the queue stopped (CERROR_*, plus 4 = CERROR_ILL_ACCESS).
            ERR OFFSET(24) NUMBITS(7) [
                /// CERROR_NONE.
                None = 0,
                /// CERROR_ILL: an illegal command.
                Ill = 1,
                /// CERROR_ABT: an abort fetching a command.
                Abt = 2,
                /// CERROR_ATC_INV_SYNC: an ATC invalidation timed out before a CMD_SYNC.
                AtcInvSync = 3,
                /// CERROR_ILL_ACCESS: a command a non-HYP_OWN queue may not issue (QEMU name).
                IllAccess = 4
            ]
        ],
        /// VCMDQ_PROD (page-0 slot `0x04`).
        pub VCMDQ_PROD [
            /// WR, bits \[19:0\]: write index and wrap bit, as SMMU_CMDQ_PROD.
            WR OFFSET(0) NUMBITS(20) []
        ],
        /// VCMDQ_CONFIG (page-0 slot `0x08`).
        pub VCMDQ_CONFIG [
            /// CMDQ_EN, bit \[0\]: enable the queue; followed by VCMDQ_STATUS.CMDQ_EN_OK.
            CMDQ_EN OFFSET(0) NUMBITS(1) []
        ],
        /// VCMDQ_STATUS (page-0 slot `0x0C`, read-only).
        pub VCMDQ_STATUS [
            /// CMDQ_EN_OK, bit \[0\]: the CMDQ_EN value in effect.
            CMDQ_EN_OK OFFSET(0) NUMBITS(1) []
        ],
        /// VCMDQ_GERROR / VCMDQ_GERRORN (page-0 slot `0x10` / `0x14`), toggle protocol of
        /// SMMU_GERROR: an error is active while GERROR and GERRORN differ in its bit.
        pub VCMDQ_GERROR [
            /// CMDQ_ERR, bit \[0\]: the queue stopped on an error (CONS.ERR says which).
            CMDQ_ERR OFFSET(0) NUMBITS(1) [],
            /// CONS_DRAM_WR_ABT_ERR, bit \[1\]: abort writing CONS to CONS_INDX_BASE (QEMU).
            CONS_DRAM_WR_ABT_ERR OFFSET(1) NUMBITS(1) [],
            /// CMDQ_INIT_ERR, bit \[2\]: the queue could not be initialised (QEMU).
            CMDQ_INIT_ERR OFFSET(2) NUMBITS(1) []
        ]
    ];

    register_bitfields![u64,
        /// VCMDQ_BASE (page-1 slot `0x00`). Unlike SMMU_CMDQ_BASE there is no RA/WA bit.
        pub VCMDQ_BASE [
            /// LOG2SIZE, bits \[4:0\]: log2 of the number of 16-byte entries.
            LOG2SIZE OFFSET(0) NUMBITS(5) [],
            /// ADDR, bits \[47:5\]: queue physical address bits \[47:5\].
            ADDR OFFSET(5) NUMBITS(43) []
        ],
        /// VCMDQ_CONS_INDX_BASE (page-1 slot `0x08`); Linux only writes 0.
        pub VCMDQ_CONS_INDX_BASE [
            /// ADDR, bits \[47:0\]: where CONS is mirrored when CONFIG.CONS_DRAM_EN is set.
            ADDR OFFSET(0) NUMBITS(48) []
        ]
    ];
}

register_structs! {
    /// The per-VINTF block of the config page, at `0x1000 + 0x100 × v` (Linux `TEGRA241_VINTF(v)`).
    #[allow(non_snake_case)]
    pub VintfRegs {
        /// VINTF_CONFIG: EN, VMID, HYP_OWN.
        (0x00 => pub CONFIG: ReadWrite<u32, VINTF_CONFIG::Register>),
        /// VINTF_STATUS: ENABLED and error status.
        (0x04 => pub STATUS: ReadOnly<u32, VINTF_STATUS::Register>),
        (0x08 => _reserved0),
        /// SID_MATCH(s): virtual StreamID of slot *s* and its enable.
        (0x40 => pub SID_MATCH: [ReadWrite<u32, SID_MATCH::Register>; MAX_SID_SLOTS]),
        /// SID_REPLACE(s): the physical StreamID substituted for slot *s*'s virtual one.
        (0x80 => pub SID_REPLACE: [ReadWrite<u32, SID_REPLACE::Register>; MAX_SID_SLOTS]),
        /// LVCMDQ_ERR_MAP_64(m): 128-bit map, bit *l* = LVCMDQ *l* of this VINTF in error.
        (0xC0 => pub LVCMDQ_ERR_MAP: [ReadOnly<u64>; 2]),
        (0xD0 => _reserved1),
        (0x100 => @END),
    }
}

register_structs! {
    /// The CMDQV config page, offset `0x0` of the window (Linux `TEGRA241_CMDQV_*`).
    #[allow(non_snake_case)]
    pub ConfigPage {
        /// CMDQV_CONFIG: global enable (Linux read-modify-writes bit 0 only).
        (0x000 => pub CONFIG: ReadWrite<u32, CONFIG::Register>),
        /// CMDQV_PARAM: version and counts.
        (0x004 => pub PARAM: ReadOnly<u32, PARAM::Register>),
        /// CMDQV_STATUS: CMDQV_ENABLED.
        (0x008 => pub STATUS: ReadOnly<u32, STATUS::Register>),
        (0x00C => _reserved0),
        /// VINTF_ERR_MAP low word (VINTFs 0-31). The 64-bit map sits at an unaligned offset and
        /// is read as two 32-bit halves.
        (0x014 => pub VINTF_ERR_MAP_LO: ReadOnly<u32>),
        /// VINTF_ERR_MAP high word (VINTFs 32-63).
        (0x018 => pub VINTF_ERR_MAP_HI: ReadOnly<u32>),
        /// VINTF_INT_MASK low word: bit *v* masks VINTF *v*'s error interrupt (QEMU).
        (0x01C => pub VINTF_INT_MASK_LO: ReadWrite<u32>),
        /// VINTF_INT_MASK high word.
        (0x020 => pub VINTF_INT_MASK_HI: ReadWrite<u32>),
        /// CMDQ_ERR_MAP(m): 128-bit map, bit *q* = global VCMDQ *q* in error.
        (0x024 => pub CMDQ_ERR_MAP: [ReadOnly<u32>; 4]),
        (0x034 => _reserved1),
        /// CMDQ_ALLOC(q): maps global VCMDQ *q* to (VINTF, LVCMDQ).
        (0x200 => pub CMDQ_ALLOC: [ReadWrite<u32, CMDQ_ALLOC::Register>; MAX_VCMDQS]),
        (0x400 => _reserved2),
        /// The per-VINTF blocks.
        (0x1000 => pub VINTF: [VintfRegs; MAX_VINTFS]),
        (0x5000 => _reserved3),
        (0x10000 => @END),
    }
}

register_structs! {
    /// One VCMDQ's control registers: a 0x80-byte slot of page 0 (Linux `TEGRA241_VCMDQ_PAGE0(q)`).
    #[allow(non_snake_case)]
    pub VcmdqCtrl {
        /// VCMDQ_CONS: read index and error code.
        (0x00 => pub CONS: ReadWrite<u32, VCMDQ_CONS::Register>),
        /// VCMDQ_PROD: write index.
        (0x04 => pub PROD: ReadWrite<u32, VCMDQ_PROD::Register>),
        /// VCMDQ_CONFIG: CMDQ_EN.
        (0x08 => pub CONFIG: ReadWrite<u32, VCMDQ_CONFIG::Register>),
        /// VCMDQ_STATUS: CMDQ_EN_OK.
        (0x0C => pub STATUS: ReadOnly<u32, VCMDQ_STATUS::Register>),
        /// VCMDQ_GERROR: active errors (toggle style).
        (0x10 => pub GERROR: ReadOnly<u32, VCMDQ_GERROR::Register>),
        /// VCMDQ_GERRORN: acknowledge by writing the GERROR value.
        (0x14 => pub GERRORN: ReadWrite<u32, VCMDQ_GERROR::Register>),
        (0x18 => _reserved),
        (0x80 => @END),
    }
}

register_structs! {
    /// One VCMDQ's base registers: a 0x80-byte slot of page 1 (Linux `TEGRA241_VCMDQ_PAGE1(q)`).
    #[allow(non_snake_case)]
    pub VcmdqBase {
        /// VCMDQ_BASE: queue address and LOG2SIZE (64-bit access).
        (0x00 => pub BASE: ReadWrite<u64, VCMDQ_BASE::Register>),
        /// VCMDQ_CONS_INDX_BASE: CONS mirror address (64-bit access).
        (0x08 => pub CONS_INDX_BASE: ReadWrite<u64, VCMDQ_CONS_INDX_BASE::Register>),
        (0x10 => _reserved),
        (0x80 => @END),
    }
}

register_structs! {
    /// A VCMDQ page 0 (control/status of up to 128 queues), used for the global view at `0x10000`
    /// and for each VINTF's logical view.
    #[allow(non_snake_case)]
    pub VcmdqPage0 {
        /// The queue slots at `0x80 × q`.
        (0x0000 => pub Q: [VcmdqCtrl; MAX_VCMDQS]),
        (0x4000 => _reserved),
        (0x10000 => @END),
    }
}

register_structs! {
    /// A VCMDQ page 1 (base registers of up to 128 queues), used for the global view at `0x20000`
    /// and for each VINTF's logical view.
    #[allow(non_snake_case)]
    pub VcmdqPage1 {
        /// The queue slots at `0x80 × q`.
        (0x0000 => pub Q: [VcmdqBase; MAX_VCMDQS]),
        (0x4000 => _reserved),
        (0x10000 => @END),
    }
}

const _: () = assert!(size_of::<ConfigPage>() == PAGE_SIZE);
const _: () = assert!(size_of::<VcmdqBase>() == VCMDQ_SLOT_SIZE);
const _: () = assert!(size_of::<VcmdqPage0>() == PAGE_SIZE);
const _: () = assert!(size_of::<VcmdqPage1>() == PAGE_SIZE);

/// Register offsets as `usize`, for decoding an MMIO address (the software model uses them).
///
/// Each is `offset_of!` of the register in its block, so the offsets are written once, in
/// `register_structs!`.
pub mod offset {
    use core::mem::offset_of;

    use super::{ConfigPage, VcmdqBase, VcmdqCtrl, VintfRegs};

    /// CMDQV_CONFIG, config page.
    pub const CONFIG: usize = offset_of!(ConfigPage, CONFIG);
    /// CMDQV_PARAM, config page.
    pub const PARAM: usize = offset_of!(ConfigPage, PARAM);
    /// CMDQV_STATUS, config page.
    pub const STATUS: usize = offset_of!(ConfigPage, STATUS);
    /// VINTF_ERR_MAP low word, config page.
    pub const VINTF_ERR_MAP_LO: usize = offset_of!(ConfigPage, VINTF_ERR_MAP_LO);
    /// VINTF_ERR_MAP high word, config page.
    pub const VINTF_ERR_MAP_HI: usize = offset_of!(ConfigPage, VINTF_ERR_MAP_HI);
    /// VINTF_INT_MASK low word, config page.
    pub const VINTF_INT_MASK_LO: usize = offset_of!(ConfigPage, VINTF_INT_MASK_LO);
    /// VINTF_INT_MASK high word, config page.
    pub const VINTF_INT_MASK_HI: usize = offset_of!(ConfigPage, VINTF_INT_MASK_HI);
    /// CMDQ_ERR_MAP(0), config page; word *m* at `+ 4m`.
    pub const CMDQ_ERR_MAP: usize = offset_of!(ConfigPage, CMDQ_ERR_MAP);
    /// CMDQ_ALLOC(0), config page; queue *q* at `+ 4q`.
    pub const CMDQ_ALLOC: usize = offset_of!(ConfigPage, CMDQ_ALLOC);
    /// The first VINTF block, config page; VINTF *v* at `+ 0x100 v`.
    pub const VINTF: usize = offset_of!(ConfigPage, VINTF);
    /// VINTF_CONFIG within a VINTF block.
    pub const VINTF_CONFIG: usize = offset_of!(VintfRegs, CONFIG);
    /// VINTF_STATUS within a VINTF block.
    pub const VINTF_STATUS: usize = offset_of!(VintfRegs, STATUS);
    /// SID_MATCH(0) within a VINTF block; slot *s* at `+ 4s`.
    pub const SID_MATCH: usize = offset_of!(VintfRegs, SID_MATCH);
    /// SID_REPLACE(0) within a VINTF block; slot *s* at `+ 4s`.
    pub const SID_REPLACE: usize = offset_of!(VintfRegs, SID_REPLACE);
    /// LVCMDQ_ERR_MAP_64(0) within a VINTF block; word *m* at `+ 8m`.
    pub const LVCMDQ_ERR_MAP: usize = offset_of!(VintfRegs, LVCMDQ_ERR_MAP);
    /// VCMDQ_CONS within a page-0 slot.
    pub const VCMDQ_CONS: usize = offset_of!(VcmdqCtrl, CONS);
    /// VCMDQ_PROD within a page-0 slot.
    pub const VCMDQ_PROD: usize = offset_of!(VcmdqCtrl, PROD);
    /// VCMDQ_CONFIG within a page-0 slot.
    pub const VCMDQ_CONFIG: usize = offset_of!(VcmdqCtrl, CONFIG);
    /// VCMDQ_STATUS within a page-0 slot.
    pub const VCMDQ_STATUS: usize = offset_of!(VcmdqCtrl, STATUS);
    /// VCMDQ_GERROR within a page-0 slot.
    pub const VCMDQ_GERROR: usize = offset_of!(VcmdqCtrl, GERROR);
    /// VCMDQ_GERRORN within a page-0 slot.
    pub const VCMDQ_GERRORN: usize = offset_of!(VcmdqCtrl, GERRORN);
    /// VCMDQ_BASE within a page-1 slot.
    pub const VCMDQ_BASE: usize = offset_of!(VcmdqBase, BASE);
    /// VCMDQ_CONS_INDX_BASE within a page-1 slot.
    pub const VCMDQ_CONS_INDX_BASE: usize = offset_of!(VcmdqBase, CONS_INDX_BASE);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use core::mem::offset_of;

    use tock_registers::LocalRegisterCopy;

    use super::*;

    /// Offsets are written once, in `register_structs!` (which checks order and gaps); these
    /// are the array strides and end addresses derived from them that the Linux driver's
    /// `TEGRA241_VINTF`/`TEGRA241_VCMDQ_*` offset macros and QEMU's register model print.
    #[test]
    fn array_strides_match_the_driver() {
        assert_eq!(offset::CMDQ_ALLOC + 4 * 127, 0x3FC);
        assert_eq!(offset::VINTF + VINTF_BLOCK_SIZE * 63, 0x4F00);
        assert_eq!(VINTF_BLOCK_SIZE, 0x100);
        assert_eq!(offset::SID_MATCH + 4 * (MAX_SID_SLOTS - 1), 0x7C);
        assert_eq!(offset::SID_REPLACE + 4 * (MAX_SID_SLOTS - 1), 0xBC);
        assert_eq!(offset::LVCMDQ_ERR_MAP + 8, 0xC8);
        assert_eq!(VCMDQ_SLOT_SIZE, 0x80);
        assert_eq!(offset_of!(VcmdqPage0, Q) + VCMDQ_SLOT_SIZE * 3, 0x180);
        assert_eq!(offset_of!(VcmdqPage1, Q), 0);
    }

    #[test]
    fn window_layout_matches_the_spec() {
        assert_eq!(GLOBAL_PAGE0, 0x10000);
        assert_eq!(GLOBAL_PAGE1, 0x20000);
        assert_eq!(vintf_page0(0), 0x30000);
        assert_eq!(vintf_page1(0), 0x40000);
        assert_eq!(vintf_page0(2), 0x70000);
        assert_eq!(vintf_page1(2), 0x80000);
        // QEMU's one-VINTF window and the Tegra264 DT window.
        assert_eq!(window_size(1), 0x50000);
        assert_eq!(window_size(64), 0x830000);
    }

    #[test]
    fn fields_encode_as_linux_writes_them() {
        let mut alloc = LocalRegisterCopy::<u32, CMDQ_ALLOC::Register>::new(0);
        alloc.modify(
            CMDQ_ALLOC::VINTF.val(3) + CMDQ_ALLOC::LVCMDQ.val(5) + CMDQ_ALLOC::ALLOCATED::SET,
        );
        assert_eq!(alloc.get(), (3 << 15) | (5 << 1) | 1);
        let cfg = LocalRegisterCopy::<u32, VINTF_CONFIG::Register>::new(
            (VINTF_CONFIG::HYP_OWN::SET
                + VINTF_CONFIG::VMID.val(0xABCD)
                + VINTF_CONFIG::ENABLE::SET)
                .value,
        );
        assert_eq!(cfg.get(), (1 << 17) | (0xABCD << 1) | 1);
        let m = (SID_MATCH::VIRT_SID.val(0x12345) + SID_MATCH::ENABLE::SET).value;
        assert_eq!(m, (0x12345 << 1) | 1);
        let base = (VCMDQ_BASE::ADDR.val(0x8000_1000 >> 5) + VCMDQ_BASE::LOG2SIZE.val(8)).value;
        assert_eq!(base, 0x8000_1000 | 8);
        assert_eq!(VCMDQ_CONS::ERR.val(4).value, 4 << 24);
        let p = LocalRegisterCopy::<u32, PARAM::Register>::new(0x4231);
        assert_eq!(p.read(PARAM::CMDQV_VER), 1);
        assert_eq!(p.read(PARAM::NUM_VCMDQ_LOG2), 3);
        assert_eq!(p.read(PARAM::NUM_VINTF_LOG2), 2);
        assert_eq!(p.read(PARAM::NUM_SID_PER_VM_LOG2), 4);
    }
}
