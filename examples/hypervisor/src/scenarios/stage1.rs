//! A guest's stage-1 translation tables, as a guest OS inside the "VM" would build them: in VM
//! memory, linked by IPAs, with aarch64-paging's EL1&0 regime. The SMMU walks them in nested mode,
//! translating every table address through the host's stage 2 (IHI 0070 §3.4).

use core::mem::ManuallyDrop;
use core::ptr::NonNull;

use aarch64_paging::MapError;
use aarch64_paging::descriptor::{El1Attributes, PhysicalAddress};
use aarch64_paging::paging::{
    Constraints, El1And0, MemoryRegion, PAGE_SIZE, PageTable, RootTable, Translation, VaRange,
};
use arm_smmuv3::{Iova, Ipa, PhysAddr};

/// The VM's memory as the guest sees it: IPAs `ipa_base..ipa_base + size`, backed by host
/// physical memory at `pa_base` (identity-mapped for the CPU, so the host can write the guest's
/// structures for it). Table pages are handed out from `next` upwards.
pub struct GuestMemory {
    ipa_base: u64,
    pa_base: u64,
    size: u64,
    next: u64,
}

impl GuestMemory {
    /// Guest memory of `size` bytes at IPA `ipa_base`, backed by PA `pa_base`; table pages come
    /// from offset `tables_at` on.
    pub fn new(ipa_base: Ipa, pa_base: PhysAddr, size: u64, tables_at: u64) -> Self {
        Self {
            ipa_base: ipa_base.0,
            pa_base: pa_base.0,
            size,
            next: tables_at,
        }
    }

    /// The CPU address of guest IPA `ipa`, if inside the VM's memory.
    pub fn cpu_ptr(&self, ipa: u64) -> Option<NonNull<u8>> {
        let off = ipa.checked_sub(self.ipa_base).filter(|o| *o < self.size)?;
        NonNull::new((self.pa_base + off) as *mut u8)
    }

    /// The host physical address of guest IPA `ipa`, if inside the VM's memory.
    pub fn pa_of(&self, ipa: Ipa) -> Option<PhysAddr> {
        let off = ipa
            .0
            .checked_sub(self.ipa_base)
            .filter(|o| *o < self.size)?;
        Some(PhysAddr(self.pa_base + off))
    }
}

impl Translation<El1Attributes> for GuestMemory {
    fn allocate_table(&mut self) -> (NonNull<PageTable<El1Attributes>>, PhysicalAddress) {
        let ipa = self.ipa_base + self.next;
        assert!(
            self.next + PAGE_SIZE as u64 <= self.size,
            "guest memory full"
        );
        self.next += PAGE_SIZE as u64;
        let ptr = self.cpu_ptr(ipa).expect("inside guest memory");
        // SAFETY: one whole page of guest memory (checked above), not handed out before; the
        // table must start zeroed (all entries invalid).
        unsafe { ptr.as_ptr().write_bytes(0, PAGE_SIZE) };
        (ptr.cast(), PhysicalAddress(ipa as usize))
    }

    unsafe fn deallocate_table(&mut self, _page_table: NonNull<PageTable<El1Attributes>>) {
        // Guest pages are never reused in the demo.
    }

    fn physical_to_virtual(&self, pa: PhysicalAddress) -> NonNull<PageTable<El1Attributes>> {
        // The "physical" addresses of the guest's tables are IPAs.
        self.cpu_ptr(pa.0 as u64)
            .expect("guest table outside guest memory")
            .cast()
    }
}

/// Stage-1 tables of the guest: 39-bit input addresses, 4 KiB granule, walked from level 1.
///
/// CD fields to use with them: T0SZ = [`GuestStage1::T0SZ`], TG0 = 4 KiB, MAIR =
/// [`GuestStage1::MAIR`], TTB0 = [`GuestStage1::ttb0`] (an IPA).
///
/// The tables are never freed: they belong to the VM, and the SMMU may walk them for as long as
/// an STE points at the CD (dropping aarch64-paging's `RootTable` would also walk a deliberately
/// broken descriptor, see [`GuestStage1::redirect_l1_table`]).
pub struct GuestStage1 {
    root: ManuallyDrop<RootTable<El1And0, GuestMemory>>,
}

impl GuestStage1 {
    /// Input address width.
    pub const VA_BITS: u8 = 39;
    /// CD.T0SZ.
    pub const T0SZ: u8 = 64 - Self::VA_BITS;
    /// CD.MAIR: index 0 Device-nGnRE, index 1 Normal write-back (what pages use).
    pub const MAIR: u64 = 0xff04;

    /// Empty tables (the root page is taken from `mem`).
    pub fn new(mem: GuestMemory) -> Self {
        Self {
            root: ManuallyDrop::new(RootTable::with_va_range(mem, 1, El1And0, VaRange::Lower)),
        }
    }

    /// Maps `len` bytes of IOVA at `iova` to the guest IPA `ipa`, read/write, normal memory,
    /// accessible to unprivileged transactions.
    pub fn map(&mut self, iova: Iova, ipa: Ipa, len: usize) -> Result<(), MapError> {
        let attrs = El1Attributes::VALID
            | El1Attributes::ATTRIBUTE_INDEX_1
            | El1Attributes::INNER_SHAREABLE
            | El1Attributes::ACCESSED
            | El1Attributes::USER;
        self.root.map_range(
            &MemoryRegion::new(iova.0 as usize, iova.0 as usize + len),
            PhysicalAddress(ipa.0 as usize),
            attrs,
            Constraints::empty(),
        )
    }

    /// The CD.TTB0 value: the IPA of the level-1 root table.
    pub fn ttb0(&self) -> Ipa {
        Ipa(self.root.to_physical().0 as u64)
    }

    /// The guest memory the tables live in.
    pub fn memory(&self) -> &GuestMemory {
        self.root.translation()
    }

    /// Points the level-1 table descriptor covering `iova` at the IPA `table` instead (a guest
    /// bug: the next-level table is somewhere its VM has no memory). Returns the old descriptor.
    /// Only for a descriptor no transaction has used yet (nothing to invalidate).
    pub fn redirect_l1_table(&mut self, iova: Iova, table: Ipa) -> Option<u64> {
        const ADDR: u64 = 0x0000_ffff_ffff_f000;
        let index = (iova.0 >> 30) & 0x1ff;
        let slot = self.memory().cpu_ptr(self.ttb0().0 + index * 8)?;
        let slot = slot.cast::<u64>();
        // SAFETY: `slot` is an 8-byte-aligned entry of the root table page in guest memory, which
        // only this value writes; no table walk is in flight (the caller's contract).
        let old = unsafe { slot.as_ptr().read_volatile() };
        if old & 0b11 != 0b11 {
            return None;
        }
        // SAFETY: as above.
        unsafe {
            slot.as_ptr()
                .write_volatile((old & !ADDR) | (table.0 & ADDR))
        };
        Some(old)
    }
}
