//! `DmaArena`: the memory a test lends to the driver, with fake physical addresses.
//!
//! One zeroed host allocation, aligned to its own (power-of-two) size, seen by the model at
//! physical address [`DmaArena::DEFAULT_PA_BASE`] (or a base of the test's choosing). The driver
//! allocates from it through [`DmaMemory`]; the model reads and writes SMMU-visible memory only
//! through [`DmaArena::read`] / [`DmaArena::write`], which translate a physical address to host
//! memory with bounds checks. A physical address outside the arena is an external abort for the
//! model (F_STE_FETCH, CERROR_ABT, EVENTQ_ABT_ERR, ... as IHI 0070 says for each structure).
//!
//! # Strict mode: what the SMMU sees is what the barriers published
//!
//! An arena owned by a [`SmmuModel`](super::SmmuModel) is strict by default. The driver's CPU
//! reads and stores the host memory directly; the SMMU side (every accessor of this type) sees a
//! second copy that follows the CPU's stores only when the driver executes a barrier that orders
//! them (`dma_wmb`, `dma_mb`; IHI 0070 §3.5: commands, STEs and tables must be visible before
//! the MMIO write or command that makes the SMMU read them), or when the driver reports a single
//! 64-bit store to a live stream-table entry (which the SMMU may observe at once). In the other
//! direction, queue records the SMMU writes ([`DmaArena::write_record`]) reach the CPU's memory
//! only after the CPU read the queue's PROD register and then executed a barrier that orders
//! loads (`dma_rmb`, `dma_mb`), as the CPU may otherwise satisfy the record reads early. MSI
//! writes and test steering writes reach both copies at once.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::ptr::NonNull;
use std::sync::Mutex;

use crate::ids::PhysAddr;
use crate::platform::{DmaBuf, DmaMemory};

/// A DMA arena for host tests: zeroed, contiguous, aligned to its size, with fake physical
/// addresses. Implements [`DmaMemory`] (a bump allocator that never frees).
pub struct DmaArena {
    base: NonNull<u8>,
    layout: Layout,
    pa_base: u64,
    next: Mutex<usize>,
    /// Held for every copy in or out of the arena, so that two threads using the safe accessors
    /// on the same bytes (two models, or a model and a test) never race; holds the SMMU's view
    /// in strict mode.
    bus: Mutex<Option<View>>,
}

/// The SMMU's side of a strict arena (see the module documentation).
struct View {
    /// What the SMMU sees, one little-endian word per 8 bytes of the arena.
    smmu: Vec<u64>,
    /// The CPU's memory as of the last publication, to find what it stored since.
    cpu: Vec<u64>,
    /// Records written by the SMMU that the CPU cannot see yet, oldest first.
    pending: Vec<PendingRecord>,
}

struct PendingRecord {
    /// Arena offset in words.
    at: usize,
    words: Vec<u64>,
    /// Which queue it belongs to (a tag of the caller's).
    queue: u8,
    /// The CPU read that queue's PROD after the record was written.
    observed: bool,
}

// SAFETY: the arena is owned by `DmaArena` (allocated in `new`, freed in `drop`) and holds plain
// bytes, so moving the owner to another thread is fine.
unsafe impl Send for DmaArena {}
// SAFETY: every access through `&DmaArena` is a bounds-checked copy made with `bus` held (so two
// of them never race) or the allocator, behind `next`. The driver's own accesses use the
// buffers `alloc` handed out, under `DmaMemory`'s contract, not `&DmaArena`.
unsafe impl Sync for DmaArena {}

impl core::fmt::Debug for DmaArena {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("DmaArena")
            .field("pa_base", &format_args!("{:#x}", self.pa_base))
            .field("size", &self.layout.size())
            .field("used", &self.used())
            .finish()
    }
}

impl DmaArena {
    /// The physical address the default arena starts at (a typical DRAM base).
    pub const DEFAULT_PA_BASE: u64 = 0x8000_0000;
    /// The default arena size: 4 MiB.
    pub const DEFAULT_SIZE: usize = 4 << 20;

    /// An arena of `size` bytes (rounded up to a power of two, at least 64 KiB) seen by the SMMU
    /// at `pa_base`, which must be aligned to that size.
    ///
    /// # Panics
    /// If `pa_base` is not aligned to the rounded size, or the host allocation fails (test setup
    /// errors).
    pub fn new(size: usize, pa_base: u64) -> Self {
        let size = size.max(1 << 16).next_power_of_two();
        assert!(
            pa_base.is_multiple_of(size as u64),
            "DmaArena: pa_base {pa_base:#x} not aligned to the arena size {size:#x}"
        );
        let layout = Layout::from_size_align(size, size).expect("DmaArena: bad layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).expect("DmaArena: host allocation failed");
        Self {
            base,
            layout,
            pa_base,
            next: Mutex::new(0),
            bus: Mutex::new(None),
        }
    }

    fn bus(&self) -> std::sync::MutexGuard<'_, Option<View>> {
        self.bus.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The word of the CPU's memory at word offset `w` (< size / 8).
    fn live(&self, w: usize) -> u64 {
        // SAFETY: `w * 8 + 8 <= size` (callers stay below the arena's word count), the arena
        // is 8-byte aligned; volatile because the driver may be storing to it.
        unsafe { self.base.cast::<u64>().add(w).read_volatile() }
    }

    fn set_live(&self, w: usize, v: u64) {
        // SAFETY: as in `live`.
        unsafe { self.base.cast::<u64>().add(w).write_volatile(v) };
    }

    /// Turns strict mode on or off (see the module documentation). Turning it on makes the
    /// SMMU's view equal to the memory as it is now.
    pub fn set_strict(&self, on: bool) {
        let mut bus = self.bus();
        if !on {
            // Hand over whatever the CPU has not seen yet.
            if let Some(v) = bus.take() {
                for r in v.pending {
                    for (i, w) in r.words.iter().enumerate() {
                        self.set_live(r.at + i, *w);
                    }
                }
            }
            return;
        }
        if bus.is_none() {
            let words = self.layout.size() / 8;
            let snap: Vec<u64> = (0..words).map(|w| self.live(w)).collect();
            *bus = Some(View {
                smmu: snap.clone(),
                cpu: snap,
                pending: Vec::new(),
            });
        }
    }

    /// Whether the arena is strict.
    pub fn is_strict(&self) -> bool {
        self.bus().is_some()
    }

    /// A barrier ordering the CPU's earlier stores: the SMMU now sees every store made so far.
    pub(crate) fn publish(&self) {
        let used = self.used().div_ceil(8).min(self.layout.size() / 8);
        let mut bus = self.bus();
        let Some(v) = bus.as_mut() else { return };
        for w in 0..used {
            let l = self.live(w);
            if l != v.cpu[w] {
                v.cpu[w] = l;
                v.smmu[w] = l;
            }
        }
    }

    /// One 64-bit store of the CPU at `pa` reaches the SMMU (single-copy atomic).
    pub(crate) fn publish_word(&self, pa: PhysAddr) {
        let Some(off) = self.offset_of(pa, 8) else {
            return;
        };
        let w = off / 8;
        let mut bus = self.bus();
        if let Some(v) = bus.as_mut() {
            let l = self.live(w);
            v.cpu[w] = l;
            v.smmu[w] = l;
        }
    }

    /// Whether the SMMU sees the CPU's current bytes for `len` bytes at `pa` (always in
    /// non-strict mode; `false` outside the arena).
    pub fn published(&self, pa: PhysAddr, len: usize) -> bool {
        let Some(off) = self.offset_of(pa, len) else {
            return false;
        };
        let bus = self.bus();
        let Some(v) = bus.as_ref() else { return true };
        (off / 8..(off + len).div_ceil(8)).all(|w| v.smmu[w] == self.live(w))
    }

    /// Writes a queue record the SMMU produced: the SMMU side sees it at once, the CPU only
    /// after [`DmaArena::observe_records`] and [`DmaArena::hand_over_records`]. `None` outside
    /// the arena or for an unaligned `pa`.
    pub(crate) fn write_record(&self, pa: PhysAddr, words: &[u64], queue: u8) -> Option<()> {
        if !pa.0.is_multiple_of(8) {
            return None;
        }
        let off = self.offset_of(pa, words.len() * 8)?;
        let mut bus = self.bus();
        let Some(v) = bus.as_mut() else {
            drop(bus);
            return self.write_dwords(pa, words);
        };
        let at = off / 8;
        v.smmu[at..at + words.len()].copy_from_slice(words);
        v.pending.push(PendingRecord {
            at,
            words: words.to_vec(),
            queue,
            observed: false,
        });
        Some(())
    }

    /// The CPU read the PROD register of queue `queue`: the records written so far are covered.
    pub(crate) fn observe_records(&self, queue: u8) {
        if let Some(v) = self.bus().as_mut() {
            for r in v.pending.iter_mut().filter(|r| r.queue == queue) {
                r.observed = true;
            }
        }
    }

    /// A barrier ordering the CPU's earlier loads: records covered by a PROD read reach the
    /// CPU's memory. Returns the queues (tags) that got records.
    pub(crate) fn hand_over_records(&self) -> Vec<u8> {
        let mut bus = self.bus();
        let Some(v) = bus.as_mut() else {
            return Vec::new();
        };
        let mut queues = Vec::new();
        let mut keep = Vec::new();
        for r in std::mem::take(&mut v.pending) {
            if !r.observed {
                keep.push(r);
                continue;
            }
            for (i, w) in r.words.iter().enumerate() {
                self.set_live(r.at + i, *w);
                v.cpu[r.at + i] = *w;
            }
            if !queues.contains(&r.queue) {
                queues.push(r.queue);
            }
        }
        v.pending = keep;
        queues
    }

    /// Copies `buf.len()` bytes of the CPU's memory at `pa` (what the driver's own loads see,
    /// not what the SMMU sees); `None` outside the arena.
    pub fn read_cpu(&self, pa: PhysAddr, buf: &mut [u8]) -> Option<()> {
        let src = self.host_ptr(pa, buf.len())?;
        let _bus = self.bus();
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `src..src+len` is inside the arena (checked by `host_ptr`), `i < len`.
            *b = unsafe { src.add(i).read_volatile() };
        }
        Some(())
    }

    /// The physical address of the first byte of the arena.
    pub fn pa_base(&self) -> PhysAddr {
        PhysAddr(self.pa_base)
    }

    /// The arena size in bytes.
    pub fn size(&self) -> usize {
        self.layout.size()
    }

    /// Bytes handed out so far, including alignment padding.
    pub fn used(&self) -> usize {
        *self.next.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `len` bytes at `pa` lie inside the arena.
    pub fn contains(&self, pa: PhysAddr, len: usize) -> bool {
        self.offset_of(pa, len).is_some()
    }

    fn offset_of(&self, pa: PhysAddr, len: usize) -> Option<usize> {
        let off = pa.0.checked_sub(self.pa_base)?;
        let end = off.checked_add(len as u64)?;
        if end > self.layout.size() as u64 {
            return None;
        }
        usize::try_from(off).ok()
    }

    /// The host address of `len` bytes at `pa`, or `None` outside the arena.
    pub fn host_ptr(&self, pa: PhysAddr, len: usize) -> Option<NonNull<u8>> {
        let off = self.offset_of(pa, len)?;
        // SAFETY: `off + len <= size`, so the pointer stays inside the allocation.
        Some(unsafe { self.base.add(off) })
    }

    /// The physical address of a host pointer into the arena, or `None` if it points elsewhere.
    pub fn pa_of(&self, ptr: *const u8) -> Option<PhysAddr> {
        let off = ptr.addr().checked_sub(self.base.as_ptr().addr())?;
        (off < self.layout.size()).then(|| PhysAddr(self.pa_base + off as u64))
    }

    /// The physical address of host address `addr` in the arena, or `None` elsewhere.
    pub fn pa_of_addr(&self, addr: usize) -> Option<PhysAddr> {
        let off = addr.checked_sub(self.base.as_ptr().addr())?;
        (off < self.layout.size()).then(|| PhysAddr(self.pa_base + off as u64))
    }

    /// Copies `buf.len()` bytes at `pa`, as the SMMU sees them, into `buf`; `None` (an external
    /// abort) outside the arena.
    pub fn read(&self, pa: PhysAddr, buf: &mut [u8]) -> Option<()> {
        let src = self.host_ptr(pa, buf.len())?;
        let off = self.offset_of(pa, buf.len())?;
        let bus = self.bus();
        if let Some(v) = bus.as_ref() {
            for (i, b) in buf.iter_mut().enumerate() {
                let at = off + i;
                *b = (v.smmu[at / 8] >> (8 * (at % 8))) as u8;
            }
            return Some(());
        }
        // Volatile, byte by byte: the driver may be writing the same memory.
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: `src..src+len` is inside the arena (checked by `host_ptr`), `i < len`.
            *b = unsafe { src.add(i).read_volatile() };
        }
        Some(())
    }

    /// Copies `buf` to `pa`, seen by the SMMU and the CPU at once (an MSI, or a test acting
    /// on memory directly); `None` (an external abort) outside the arena.
    pub fn write(&self, pa: PhysAddr, buf: &[u8]) -> Option<()> {
        let dst = self.host_ptr(pa, buf.len())?;
        let off = self.offset_of(pa, buf.len())?;
        let mut bus = self.bus();
        for (i, b) in buf.iter().enumerate() {
            // SAFETY: `dst..dst+len` is inside the arena (checked by `host_ptr`).
            unsafe { dst.add(i).write_volatile(*b) };
        }
        if let Some(v) = bus.as_mut() {
            for (i, &byte) in buf.iter().enumerate() {
                let at = off + i;
                let shift = 8 * (at % 8);
                let mask = 0xffu64 << shift;
                let b = u64::from(byte) << shift;
                v.smmu[at / 8] = (v.smmu[at / 8] & !mask) | b;
                v.cpu[at / 8] = (v.cpu[at / 8] & !mask) | b;
            }
        }
        Some(())
    }

    /// Reads the little-endian 64-bit word at `pa` (8-byte aligned reads are single-copy
    /// atomic, as the SMMU guarantees for 64-bit structure fields).
    pub fn read_u64(&self, pa: PhysAddr) -> Option<u64> {
        if !pa.0.is_multiple_of(8) {
            let mut b = [0u8; 8];
            self.read(pa, &mut b)?;
            return Some(u64::from_le_bytes(b));
        }
        let p = self.host_ptr(pa, 8)?.cast::<u64>();
        let off = self.offset_of(pa, 8)?;
        let bus = self.bus();
        if let Some(v) = bus.as_ref() {
            return Some(v.smmu[off / 8]);
        }
        // SAFETY: in bounds (checked), 8-byte aligned (arena base is aligned, `pa` is aligned).
        Some(u64::from_le(unsafe { p.read_volatile() }))
    }

    /// Writes the little-endian 64-bit word `v` at `pa` (one store when aligned).
    pub fn write_u64(&self, pa: PhysAddr, v: u64) -> Option<()> {
        if !pa.0.is_multiple_of(8) {
            return self.write(pa, &v.to_le_bytes());
        }
        let p = self.host_ptr(pa, 8)?.cast::<u64>();
        let off = self.offset_of(pa, 8)?;
        let mut bus = self.bus();
        // SAFETY: in bounds (checked), 8-byte aligned (arena base is aligned, `pa` is aligned).
        unsafe { p.write_volatile(v.to_le()) };
        if let Some(view) = bus.as_mut() {
            view.smmu[off / 8] = v;
            view.cpu[off / 8] = v;
        }
        Some(())
    }

    /// Reads the little-endian 32-bit word at `pa`.
    pub fn read_u32(&self, pa: PhysAddr) -> Option<u32> {
        let mut b = [0u8; 4];
        self.read(pa, &mut b)?;
        Some(u32::from_le_bytes(b))
    }

    /// Writes the little-endian 32-bit word `v` at `pa`.
    pub fn write_u32(&self, pa: PhysAddr, v: u32) -> Option<()> {
        self.write(pa, &v.to_le_bytes())
    }

    /// Reads `N` consecutive 64-bit words at `pa` (a queue entry, STE or CD).
    pub fn read_dwords<const N: usize>(&self, pa: PhysAddr) -> Option<[u64; N]> {
        let mut out = [0u64; N];
        for (i, d) in out.iter_mut().enumerate() {
            *d = self.read_u64(pa.add(8 * i as u64))?;
        }
        Some(out)
    }

    /// Writes consecutive 64-bit words at `pa`, lowest address first.
    pub fn write_dwords(&self, pa: PhysAddr, words: &[u64]) -> Option<()> {
        if !self.contains(pa, words.len() * 8) {
            return None;
        }
        for (i, d) in words.iter().enumerate() {
            self.write_u64(pa.add(8 * i as u64), *d)?;
        }
        Some(())
    }
}

impl Default for DmaArena {
    fn default() -> Self {
        Self::new(Self::DEFAULT_SIZE, Self::DEFAULT_PA_BASE)
    }
}

impl Drop for DmaArena {
    fn drop(&mut self) {
        // SAFETY: `base` was allocated in `new` with exactly `layout` and is freed once.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

// SAFETY: buffers are disjoint sub-ranges of a zeroed arena owned by `self` that is never handed
// out twice (bump allocation, no free); the arena base is aligned to the arena size and the
// physical base to the same size, so an offset aligned to `align <= size` is aligned both at
// `vaddr` and at `paddr`. The arena lives as long as the allocator.
unsafe impl DmaMemory for DmaArena {
    fn alloc(&self, size: usize, align: usize) -> Option<DmaBuf> {
        if !align.is_power_of_two() || align > self.layout.size() {
            return None;
        }
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(size.max(1))?;
        if end > self.layout.size() {
            return None;
        }
        *next = end;
        // SAFETY: `start < end <= size` (`end` counts at least one byte), inside the arena.
        let vaddr = unsafe { self.base.add(start) };
        Some(DmaBuf {
            vaddr,
            paddr: PhysAddr(self.pa_base + start as u64),
            size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocations_are_zeroed_aligned_disjoint_and_translate_back() {
        let dma = DmaArena::default();
        let a = dma.alloc(64, 64).unwrap();
        let b = dma.alloc(0x4000, 0x4000).unwrap();
        let c = dma.alloc(8, 8).unwrap();
        assert_eq!(a.paddr, PhysAddr(0x8000_0000));
        assert_eq!(b.paddr, PhysAddr(0x8000_4000));
        assert_eq!(c.paddr, PhysAddr(0x8000_8000));
        assert_eq!(b.vaddr.as_ptr() as usize % 0x4000, 0);
        assert_eq!(dma.pa_of(b.vaddr.as_ptr()), Some(b.paddr));
        assert_eq!(dma.host_ptr(b.paddr, 0x4000), Some(b.vaddr));
        // SAFETY: `b` is a live 16 KiB allocation of the arena.
        let bytes = unsafe { core::slice::from_raw_parts(b.vaddr.as_ptr(), b.size) };
        assert!(bytes.iter().all(|&x| x == 0));
        assert!(dma.alloc(8, 3).is_none());
        assert!(dma.alloc(DmaArena::DEFAULT_SIZE, 8).is_none());
    }

    #[test]
    fn model_accesses_are_bounds_checked() {
        let dma = DmaArena::new(1 << 16, 0x4000_0000);
        assert_eq!(dma.size(), 1 << 16);
        let top = PhysAddr(0x4000_0000 + 0xfff8);
        assert_eq!(dma.write_u64(top, 0x1122_3344_5566_7788), Some(()));
        assert_eq!(dma.read_u64(top), Some(0x1122_3344_5566_7788));
        assert_eq!(dma.read_u32(top), Some(0x5566_7788));
        assert_eq!(dma.read_u64(PhysAddr(0x4000_0000 + 0xfffc)), None);
        assert_eq!(dma.read_u64(PhysAddr(0x3fff_fff8)), None);
        assert_eq!(dma.write_dwords(top, &[1, 2]), None);
        assert_eq!(
            dma.read_u64(top),
            Some(0x1122_3344_5566_7788),
            "no partial write"
        );
        assert_eq!(dma.read_u64(PhysAddr(u64::MAX - 3)), None);
        assert_eq!(dma.pa_of(core::ptr::null()), None);
        let d: [u64; 2] = dma.read_dwords(PhysAddr(0x4000_0000 + 0xfff0)).unwrap();
        assert_eq!(d[1], 0x1122_3344_5566_7788);
    }
}

/// The DMA arena of a [`SmmuModel`](super::SmmuModel), owned through an `Arc` so that it can be
/// lent by value to a driver while the test keeps the model.
#[derive(Clone)]
pub struct ModelArena(pub std::sync::Arc<super::SmmuModel>);

// SAFETY: `DmaArena` meets the `DmaMemory` contract (zeroed, aligned, disjoint pieces of an arena the
// model keeps alive for as long as this `Arc` does); this only forwards to it.
unsafe impl DmaMemory for ModelArena {
    fn alloc(&self, size: usize, align: usize) -> Option<DmaBuf> {
        self.0.dma().alloc(size, align)
    }
}
