//! Stage-2 translation tables for a "VM", built with aarch64-paging's `Stage2` regime and handed
//! to the SMMU as an STE's S2TTB.
//!
//! No heap: table pages come from the lent DMA memory ([`crate::platform::dma`]) and are never
//! freed (the STE may point at them for the rest of the run). Nothing here touches VTTBR_EL2 or
//! issues CPU TLBIs: those do not reach the SMMU (no BTM); after changing a live mapping the driver
//! must send CMD_TLBI_S12_VMALL / CMD_TLBI_S2_IPA + CMD_SYNC.

use core::ptr::NonNull;

use aarch64_paging::MapError;
use aarch64_paging::descriptor::{PhysicalAddress, Stage2Attributes, VirtualAddress};
use aarch64_paging::paging::{
    Constraints, MemoryRegion, PAGE_SIZE, PageTable, RootTable, Stage2, Translation,
};
use arm_smmuv3::{BumpDma, DmaMemory, Ipa, PhysAddr};

/// Table pages from lent DMA memory, identity-mapped (CPU address = physical address).
pub struct DmaTranslation {
    dma: &'static BumpDma,
    pages: usize,
}

impl Translation<Stage2Attributes> for DmaTranslation {
    fn allocate_table(&mut self) -> (NonNull<PageTable<Stage2Attributes>>, PhysicalAddress) {
        let buf = self
            .dma
            .alloc(PAGE_SIZE, PAGE_SIZE)
            .expect("DMA region exhausted by stage-2 tables");
        self.pages += 1;
        (buf.vaddr.cast(), PhysicalAddress(buf.paddr.0 as usize))
    }

    unsafe fn deallocate_table(&mut self, _page_table: NonNull<PageTable<Stage2Attributes>>) {
        // Bump memory is never reused: the SMMU may still walk a table a stale STE points at.
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<Stage2Attributes>> {
        NonNull::new(pa.0 as *mut _).expect("table at physical address 0")
    }
}

/// Access a stage-2 mapping grants to the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum S2Access {
    /// Reads and writes.
    ReadWrite,
    /// DMA reads only; a DMA write faults (F_PERMISSION).
    ReadOnly,
}

/// Stage-2 tables for a VM with a 39-bit IPA space and a 4 KiB granule, walked from level 1.
///
/// STE fields to use with them: S2T0SZ = [`Stage2Tables::T0SZ`], S2SL0 = [`Stage2Tables::SL0`]
/// (start at level 1 for 4 KiB), S2TG = 4 KiB, S2PS >= 40 bits (QEMU's OAS is 44), S2AA64 = 1,
/// S2IR0/S2OR0 = write-back, S2SH0 = inner shareable, S2R = 1 to record faults.
pub struct Stage2Tables {
    root: RootTable<Stage2, DmaTranslation>,
}

impl Stage2Tables {
    /// IPA width.
    pub const IPA_BITS: u8 = 39;
    /// S2T0SZ = 64 - IPA width.
    pub const T0SZ: u8 = 64 - Self::IPA_BITS;
    /// Level the walk starts at.
    pub const START_LEVEL: u8 = 1;
    /// S2SL0 encoding of [`Self::START_LEVEL`] for the 4 KiB granule.
    pub const SL0: u8 = 1;

    /// Empty tables (one root page).
    pub fn new(dma: &'static BumpDma) -> Self {
        let translation = DmaTranslation { dma, pages: 0 };
        Self {
            root: RootTable::new(translation, usize::from(Self::START_LEVEL), Stage2),
        }
    }

    /// Maps `len` bytes at `ipa` to `pa` (both page aligned) as normal write-back memory, inner
    /// shareable, access flag set (S2AFFD can stay 0).
    pub fn map(
        &mut self,
        ipa: Ipa,
        pa: PhysAddr,
        len: usize,
        access: S2Access,
    ) -> Result<(), MapError> {
        let ipa_end = ipa
            .0
            .checked_add(len as u64)
            .filter(|end| *end <= 1 << Self::IPA_BITS);
        let Some(ipa_end) = ipa_end else {
            return Err(MapError::AddressRange(VirtualAddress(ipa.0 as usize)));
        };
        let perm = match access {
            S2Access::ReadWrite => Stage2Attributes::S2AP_ACCESS_RW,
            S2Access::ReadOnly => Stage2Attributes::S2AP_ACCESS_RO,
        };
        let attrs = Stage2Attributes::VALID
            | Stage2Attributes::ACCESS_FLAG
            | Stage2Attributes::SH_INNER
            | Stage2Attributes::MEMATTR_NORMAL_OUTER_WB
            | Stage2Attributes::MEMATTR_NORMAL_INNER_WB
            | perm;
        self.root.map_range(
            &MemoryRegion::new(ipa.0 as usize, ipa_end as usize),
            PhysicalAddress(pa.0 as usize),
            attrs,
            Constraints::empty(),
        )
    }

    /// Maps `len` bytes at `ipa` to `pa` as Device-nGnRE memory, read/write, for a VM's CPU (the
    /// devices it owns). Both page aligned.
    pub fn map_device(&mut self, ipa: Ipa, pa: PhysAddr, len: usize) -> Result<(), MapError> {
        let ipa_end = ipa
            .0
            .checked_add(len as u64)
            .filter(|end| *end <= 1 << Self::IPA_BITS);
        let Some(ipa_end) = ipa_end else {
            return Err(MapError::AddressRange(VirtualAddress(ipa.0 as usize)));
        };
        let attrs = Stage2Attributes::VALID
            | Stage2Attributes::ACCESS_FLAG
            | Stage2Attributes::MEMATTR_DEVICE_nGnRE
            | Stage2Attributes::S2AP_ACCESS_RW;
        self.root.map_range(
            &MemoryRegion::new(ipa.0 as usize, ipa_end as usize),
            PhysicalAddress(pa.0 as usize),
            attrs,
            Constraints::empty(),
        )
    }

    /// Removes the mapping of `len` bytes at `ipa` (the driver must then invalidate the SMMU TLB).
    pub fn unmap(&mut self, ipa: Ipa, len: usize) -> Result<(), MapError> {
        self.root.map_range(
            &MemoryRegion::new(ipa.0 as usize, ipa.0 as usize + len),
            PhysicalAddress(0),
            Stage2Attributes::empty(),
            Constraints::empty(),
        )
    }

    /// What `ipa` translates to, by walking the tables as the SMMU would (page-granular).
    pub fn translate(&self, ipa: Ipa) -> Option<PhysAddr> {
        self.lookup(ipa).map(|(pa, _)| pa)
    }

    /// What `ipa` translates to and the access the mapping grants.
    pub fn lookup(&self, ipa: Ipa) -> Option<(PhysAddr, S2Access)> {
        let page = ipa.0 as usize & !(PAGE_SIZE - 1);
        let region = MemoryRegion::new(page, page + PAGE_SIZE);
        let mut out = None;
        let _ = self.root.walk_range(&region, &mut |_chunk, desc, level| {
            if desc.is_valid() {
                // The walk clips the chunk to `region`; the descriptor maps a whole block or page.
                let granule = PAGE_SIZE << (9 * (3 - level));
                let offset_in_block = ipa.0 as usize & (granule - 1);
                let access = if desc.flags().contains(Stage2Attributes::S2AP_ACCESS_RW) {
                    S2Access::ReadWrite
                } else {
                    S2Access::ReadOnly
                };
                out = Some((
                    PhysAddr((desc.output_address().0 + offset_in_block) as u64),
                    access,
                ));
            }
            Ok(())
        });
        out
    }

    /// The S2TTB value: physical address of the level-1 root table.
    pub fn s2ttb(&self) -> PhysAddr {
        PhysAddr(self.root.to_physical().0 as u64)
    }

    /// Table pages allocated so far, root included.
    pub fn table_pages(&self) -> usize {
        self.root.translation().pages
    }
}
