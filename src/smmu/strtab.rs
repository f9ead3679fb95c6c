//! Linear and 2-level stream tables, and live STE updates that never expose a half-written
//! entry (IHI 0070 §3.3, §5.1, §5.2; update order as Linux's `arm_smmu_write_entry`).

use core::ptr::NonNull;

use super::{MemoryPlan, Quirks, Region, Smmu, barrier};
use crate::command::Command;
use crate::error::{Error, Quantity};
use crate::ids::StreamId;
use crate::platform::{DmaBuf, DmaMemory, Platform};
use crate::regs::STRTAB_BASE;
use crate::ste::{L1STD, L1Std, STE1, STE2, Ste, StreamTableLayout};

/// STE dword 1 MEV.
const STE1_MEV: u64 = STE1::MEV::SET.value;
/// STE dword 2 S2S.
const STE2_S2S: u64 = STE2::S2S::SET.value;

/// The stream table memory and the bookkeeping of its level-2 tables.
pub(super) struct StreamTable {
    layout: StreamTableLayout,
    /// Linear STE array, or L1 descriptor array.
    base: DmaBuf,
    /// 2-level: CPU pointer to each level-2 table (null = none), one per L1 descriptor. Kept as
    /// pointers, not addresses, so that reading one back needs no integer-to-pointer cast.
    l2_index: Option<DmaBuf>,
    /// 2-level: size and alignment of one level-2 table.
    l2_region: Option<Region>,
    /// Serialises STE updates and level-2 allocation.
    lock: spin::Mutex<()>,
}

/// Writes the eight qwords of `ste` at `p`, qword 0 first, into a table the SMMU cannot reach
/// yet (a fresh table, or any table before [`Smmu::reset`] programs it); a barrier publishes
/// them before the table becomes reachable.
///
/// # Safety
/// `p` is an 8-byte aligned, 64-byte STE slot in lent DMA memory that is valid for writes, and
/// nothing else on the CPU side accesses it meanwhile (the stream-table lock is held, or the
/// table is not yet shared).
unsafe fn write_ste_mem(p: NonNull<u64>, ste: &Ste) {
    for (i, q) in ste.0.iter().enumerate() {
        // SAFETY: `i < 8`, so `p + i` lies in the slot the caller vouched for.
        unsafe { p.as_ptr().add(i).write_volatile(*q) };
    }
}

impl StreamTable {
    pub(super) fn new<D: DmaMemory, P: Platform>(
        dma: &D,
        plat: &P,
        plan: &MemoryPlan,
        coherent: bool,
    ) -> Result<Self, Error> {
        let alloc = |r: Region| dma.alloc(r.bytes, r.align).ok_or(Error::NoMemory);
        let base = alloc(plan.strtab)?;
        let mut l2_index = None;
        match plan.layout {
            StreamTableLayout::Linear { .. } => {
                // Every StreamID aborts until bound.
                let n = base.size / 64;
                for i in 0..n {
                    // SAFETY: `i * 64 + 64 <= base.size`: inside the allocation.
                    let p = unsafe { base.vaddr.add(i * 64) }.cast::<u64>();
                    // SAFETY: a 64-byte slot of the fresh table (aligned: the table is at least
                    // 64-byte aligned), which nothing else references yet.
                    unsafe { write_ste_mem(p, &Ste::ABORT) };
                }
                if !coherent {
                    plat.dma_flush(base.vaddr, base.size);
                }
            }
            StreamTableLayout::TwoLevel { .. } => {
                // Zeroed memory: every L1 descriptor is invalid (Span 0).
                if let Some(r) = plan.l2_index {
                    l2_index = Some(alloc(r)?);
                }
                if !coherent {
                    plat.dma_flush(base.vaddr, base.size);
                }
            }
        }
        Ok(Self {
            layout: plan.layout,
            base,
            l2_index,
            l2_region: plan.l2_table,
            lock: spin::Mutex::new(()),
        })
    }

    /// SMMU_STRTAB_BASE: RA | ADDR (IHI 0070 §6.3.24).
    pub(super) fn base_reg(&self) -> u64 {
        (STRTAB_BASE::RA::SET + STRTAB_BASE::ADDR.val(self.base.paddr.0 >> 6)).value
    }

    fn l2_slot(&self, l1: u32) -> Option<NonNull<*mut u8>> {
        let idx = self.l2_index?;
        let size = size_of::<*mut u8>();
        let off = (l1 as usize).checked_mul(size)?;
        if off.checked_add(size)? > idx.size {
            return None;
        }
        // SAFETY: `off + size <= idx.size` (checked just above): inside the allocation.
        Some(unsafe { idx.vaddr.add(off) }.cast::<*mut u8>())
    }

    /// The CPU address of the level-2 table of L1 entry `l1`, if allocated.
    fn l2_table(&self, l1: u32) -> Option<NonNull<u8>> {
        let slot = self.l2_slot(l1)?;
        // SAFETY: `slot` is inside the bookkeeping array (from `l2_slot`), aligned (the array is
        // allocated with pointer alignment, `off` is a multiple of the pointer size), only
        // accessed under `lock`; it holds null (zeroed memory) or a pointer `alloc_l2` stored.
        NonNull::new(unsafe { slot.as_ptr().read_volatile() })
    }
}

impl<P: Platform, D: DmaMemory> Smmu<P, D> {
    /// The STE slot of `sid` (under the stream-table lock), allocating its level-2 table when
    /// `alloc` is set. `Ok(None)`: 2-level table without a level-2 table for `sid`.
    fn ste_slot(&self, sid: StreamId, alloc: bool) -> Result<Option<NonNull<u64>>, Error> {
        let t = &self.strtab;
        let idx = t.layout.l2_index(sid).ok_or(Error::BadStreamId(sid))? as usize;
        match t.layout {
            StreamTableLayout::Linear { .. } => {
                let off = idx * 64;
                if off + 64 > t.base.size {
                    return Err(Error::BadStreamId(sid));
                }
                // SAFETY: bounds checked above.
                Ok(Some(unsafe { t.base.vaddr.add(off) }.cast()))
            }
            StreamTableLayout::TwoLevel { split, .. } => {
                let l1 = t.layout.l1_index(sid).ok_or(Error::BadStreamId(sid))?;
                let l2 = match t.l2_table(l1) {
                    Some(l2) => l2,
                    None if !alloc => return Ok(None),
                    None => self.alloc_l2(sid, l1, split)?,
                };
                // SAFETY: `idx < 2^split` and the level-2 table holds `2^split` STEs.
                Ok(Some(unsafe { l2.add(idx * 64) }.cast()))
            }
        }
    }

    /// Allocates, initialises (every STE abort) and publishes the level-2 table for L1 entry
    /// `l1`: one 64-bit store of the L1 descriptor, then CFGI_STE with Leaf = 0 (IHI 0070 §5.1).
    fn alloc_l2(&self, sid: StreamId, l1: u32, split: u8) -> Result<NonNull<u8>, Error> {
        let t = &self.strtab;
        let r = t.l2_region.ok_or(Error::BadStreamId(sid))?;
        let slot = t.l2_slot(l1).ok_or(Error::BadStreamId(sid))?;
        let l1_off = (l1 as usize) * 8;
        if l1_off + 8 > t.base.size {
            return Err(Error::BadStreamId(sid));
        }
        let buf = self.dma.alloc(r.bytes, r.align).ok_or(Error::NoMemory)?;
        if !buf.paddr.is_aligned(r.align as u64) {
            return Err(Error::Misaligned {
                what: Quantity::Address,
                value: buf.paddr.0,
                align: r.align as u64,
            });
        }
        let desc = L1Std::new(buf.paddr, split + 1).ok_or(Error::OutOfRange {
            what: Quantity::Address,
            value: buf.paddr.0,
            max: L1STD::L2PTR.mask << L1STD::L2PTR.shift,
        })?;
        for i in 0..(buf.size / 64) {
            // SAFETY: `i * 64 + 64 <= buf.size`: inside the fresh allocation.
            let p = unsafe { buf.vaddr.add(i * 64) }.cast::<u64>();
            // SAFETY: a 64-byte slot of the fresh level-2 table (aligned to its size), not yet
            // reachable by the SMMU or any other CPU path.
            unsafe { write_ste_mem(p, &Ste::ABORT) };
        }
        if !self.coherent {
            self.platform.dma_flush(buf.vaddr, buf.size);
        }
        // The level-2 table is complete before the descriptor that makes it reachable.
        barrier::dma_wmb();
        // SAFETY: `l1_off + 8 <= base.size` (checked); a single aligned 64-bit store, which the
        // SMMU observes atomically.
        let l1p = unsafe { t.base.vaddr.add(l1_off) }.cast::<u64>();
        // SAFETY: as above; the stream-table lock (held by our caller) makes it ours.
        unsafe { barrier::table_store(l1p, desc.0) };
        if !self.coherent {
            self.platform.dma_flush(l1p.cast(), 8);
        }
        // SAFETY: `slot` is inside the bookkeeping array and aligned (see `l2_table`); the
        // stream-table lock, held by our caller, serialises access to it.
        unsafe { slot.as_ptr().write_volatile(buf.vaddr.as_ptr()) };
        if self.cmdq_live.load(core::sync::atomic::Ordering::Acquire) {
            self.submit(&[Command::CfgiSte { sid, leaf: false }])?;
        }
        Ok(buf.vaddr)
    }

    fn read_ste_at(&self, p: NonNull<u64>) -> Ste {
        if !self.coherent {
            self.platform.dma_invalidate(p.cast(), 64);
        }
        let mut s = Ste::INVALID;
        for (i, q) in s.0.iter_mut().enumerate() {
            // SAFETY: `p` is a 64-byte STE slot in the table (from `ste_slot`), `i < 8`.
            *q = unsafe { p.as_ptr().add(i).read_volatile() };
        }
        s
    }

    /// Writes qwords `range` of `target` that differ; if any did, makes the SMMU forget its
    /// cached copy (CFGI_STE + CMD_SYNC; `extra` joins that batch).
    fn ste_step(
        &self,
        sid: StreamId,
        p: NonNull<u64>,
        target: &[u64; 8],
        range: core::ops::Range<usize>,
        live: bool,
    ) -> Result<bool, Error> {
        let mut changed = false;
        for i in range {
            let (Some(&want), true) = (target.get(i), i < 8) else {
                continue;
            };
            // SAFETY: `p` is a 64-byte STE slot, `i < 8`; the stream-table lock is held.
            let cur = unsafe { p.as_ptr().add(i).read_volatile() };
            if cur != want {
                // SAFETY: as above; one 64-bit store, single-copy atomic for the SMMU.
                unsafe { barrier::table_store(p.add(i), want) };
                changed = true;
            }
        }
        if changed && live {
            if !self.coherent {
                self.platform.dma_flush(p.cast(), 64);
            }
            self.submit(&[Command::CfgiSte { sid, leaf: true }])?;
        }
        Ok(changed)
    }

    /// Installs `ste` for `sid`, replacing whatever was there without ever letting the SMMU see
    /// a half-written entry (Linux's `arm_smmu_write_entry`, with [`Ste::used_bits`]):
    /// if no used bit changes, one write and one CFGI_STE + CMD_SYNC; if the used bits of one
    /// qword change, the hitless three steps (unused bits, the critical qword, the rest); else
    /// the breaking path (V = 0, qwords 1-7, qword 0). Each step that changed memory is followed
    /// by CFGI_STE + CMD_SYNC; then PREFETCH_CONFIG (unless [`Quirks::BROKEN_PREFETCH`]).
    /// Before [`Smmu::reset`] the entry is simply written.
    ///
    /// A 2-level table gets the level-2 table of `sid` allocated on first use.
    ///
    /// # Errors
    /// [`Error::BadStreamId`] outside the table; [`Error::NoMemory`] if a level-2 table cannot
    /// be allocated; command queue errors.
    pub fn set_ste(&self, sid: StreamId, ste: &Ste) -> Result<(), Error> {
        let _guard = self.strtab.lock.lock();
        let p = self.ste_slot(sid, true)?.ok_or(Error::BadStreamId(sid))?;
        self.write_ste_locked(sid, p, ste)
    }

    /// Makes `sid` abort again ([`Ste::ABORT`]) with the same update rules as
    /// [`Smmu::set_ste`]. A StreamID whose level-2 table was never allocated already aborts.
    ///
    /// # Errors
    /// [`Error::BadStreamId`] outside the table; command queue errors.
    pub fn clear_ste(&self, sid: StreamId) -> Result<(), Error> {
        let _guard = self.strtab.lock.lock();
        match self.ste_slot(sid, false)? {
            Some(p) => self.write_ste_locked(sid, p, &Ste::ABORT),
            None => Ok(()),
        }
    }

    /// The STE currently in the table for `sid`; [`Ste::INVALID`] when its level-2 table does
    /// not exist (the SMMU then reports C_BAD_STREAMID).
    ///
    /// # Errors
    /// [`Error::BadStreamId`] outside the table.
    pub fn ste(&self, sid: StreamId) -> Result<Ste, Error> {
        let _guard = self.strtab.lock.lock();
        Ok(match self.ste_slot(sid, false)? {
            Some(p) => self.read_ste_at(p),
            None => Ste::INVALID,
        })
    }

    /// The stream table's layout.
    pub fn strtab_layout(&self) -> StreamTableLayout {
        self.strtab.layout
    }

    fn write_ste_locked(&self, sid: StreamId, p: NonNull<u64>, target: &Ste) -> Result<(), Error> {
        let cur = self.read_ste_at(p);
        if cur == *target {
            return Ok(());
        }
        let live = self.cmdq_live.load(core::sync::atomic::Ordering::Acquire);
        if !live {
            // SAFETY: `p` is an STE slot from `ste_slot`; our caller holds the stream-table lock.
            unsafe { write_ste_mem(p, target) };
            if !self.coherent {
                self.platform.dma_flush(p.cast(), 64);
            }
            return Ok(());
        }
        // Whatever the STE points at (CD tables, page tables) is visible before it.
        barrier::dma_wmb();
        let (unused_update, diff) = entry_qword_diff(&cur, target);
        let mut unused_update = unused_update;
        match diff.count_ones() {
            0 => {
                // No used bit changes (safe bits may): one write.
                self.ste_step(sid, p, &target.0, 0..8, true)?;
            }
            1 => {
                // Hitless: the bits the entry ignores, then the one critical qword, then the
                // bits the target ignores. The critical qword keeps its value in the first step
                // (it is written whole in the second), which spares a sync when nothing else
                // changes.
                let critical = diff.trailing_zeros() as usize;
                if let (Some(u), Some(&c)) = (unused_update.get_mut(critical), cur.0.get(critical))
                {
                    *u = c;
                }
                self.ste_step(sid, p, &unused_update, 0..8, true)?;
                self.ste_step(sid, p, &target.0, critical..critical + 1, true)?;
                self.ste_step(sid, p, &target.0, 0..8, true)?;
            }
            _ => {
                // Breaking: qword 0 all zero (V = 0 and nothing else the SMMU could act on),
                // qwords 1-7, then qword 0.
                unused_update[0] = 0;
                self.ste_step(sid, p, &unused_update, 0..1, true)?;
                self.ste_step(sid, p, &target.0, 1..8, true)?;
                self.ste_step(sid, p, &target.0, 0..1, true)?;
            }
        }
        if !self.config.quirks.contains(Quirks::BROKEN_PREFETCH) && target.valid() {
            // A hint: issued without a CMD_SYNC of its own (Linux's `arm_smmu_write_ste`); the
            // next batch's CMD_SYNC covers it.
            self.post(&[Command::PrefetchConfig { sid, ssid: None }])?;
        }
        Ok(())
    }
}

/// STE bits that may change in place while both the current and the target entry use them
/// (Linux's `arm_smmu_get_ste_update_safe`): MEV, which only changes how many fault records
/// are merged (IHI 0070 §5.2: an SMMU may merge records even with MEV = 0), and EATS between
/// 0b00 and 0b01 when neither entry uses EATS = 0b10 (split-stage) nor S2S, where the
/// transient combination could not be a bad STE (IHI 0070 §5.2, EATS; Linux relies on ATS being
/// disabled at the device while EATS changes).
fn update_safe_bits(cur: &Ste, target: &Ste) -> [u64; 8] {
    const EATS_TRANS: u64 = 1 << STE1::EATS.shift;
    const EATS_S1CHK: u64 = 2 << STE1::EATS.shift;
    let mut safe = [0u64; 8];
    safe[1] |= STE1_MEV;
    if (cur.0[1] | target.0[1]) & EATS_S1CHK == 0 && (cur.0[2] | target.0[2]) & STE2_S2S == 0 {
        safe[1] |= EATS_TRANS;
    }
    safe
}

/// The entry with every bit the current configuration ignores already set to the target, and
/// the qwords (bit i for qword i) whose used bits still differ after it (Linux's
/// `arm_smmu_entry_qword_diff`). Safe bits count as ignored only when both entries use them.
fn entry_qword_diff(cur: &Ste, target: &Ste) -> ([u64; 8], u32) {
    let cur_used = cur.used_bits();
    let tgt_used = target.used_bits();
    let safe = update_safe_bits(cur, target);
    let mut unused_update = [0u64; 8];
    let mut diff = 0u32;
    let words = cur.0.iter().zip(target.0.iter());
    let masks = cur_used.iter().zip(tgt_used.iter()).zip(safe.iter());
    for (i, (u, ((&c, &t), ((&cu, &tu), &sf)))) in
        unused_update.iter_mut().zip(words.zip(masks)).enumerate()
    {
        let cu = cu & !(sf & cu & tu);
        *u = (c & cu) | (t & !cu);
        if (*u ^ t) & tu != 0 {
            diff |= 1 << i;
        }
    }
    (unused_update, diff)
}
