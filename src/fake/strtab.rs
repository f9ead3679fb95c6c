//! The stream table walk, the STE cache, simulated device DMA and the STE write-order checker
//! (IHI 0070 §3.3, §5.1, §5.2, §7).
//!
//! As QEMU does, decoded STEs are cached per StreamID until a CFGI_STE / CFGI_STE_RANGE /
//! CFGI_ALL drops them (QEMU's configuration cache in hw/arm/smmuv3.c): a driver that forgets a CFGI keeps the old configuration,
//! which [`SmmuModel::ste_cache_stale`](super::SmmuModel::ste_cache_stale) makes visible.

use std::collections::HashMap;
use std::ops::Range;

use tock_registers::LocalRegisterCopy;

use super::bits::GBPA_ABORT;
use super::cmdq::cfgi_range;
use super::queues::Which;
use super::regs::off;
use super::{Hw, Model};
use crate::event::{EventId, EventRecord};
use crate::ids::{Iova, PhysAddr, StreamId, SubstreamId};
use crate::regs::{CR2, STRTAB_BASE, STRTAB_BASE_CFG};
use crate::ste::{Ste, SteError, StreamTableLayout};

/// CR2.RECINVSID.
const CR2_RECINVSID: u32 = CR2::RECINVSID::SET.value;

/// A translation-class fault a test makes the model report for an IOVA range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultKind {
    /// F_TRANSLATION at stage 1 or 2 (IHI 0070 §7.3.12).
    Translation {
        /// Fault at stage 2 (S2 = 1; recorded per STE.S2R) rather than stage 1 (per CD.R).
        stage2: bool,
    },
    /// F_ADDR_SIZE (IHI 0070 §7.3.13).
    AddrSize {
        /// As for [`FaultKind::Translation`].
        stage2: bool,
    },
    /// F_ACCESS (IHI 0070 §7.3.14).
    Access {
        /// As for [`FaultKind::Translation`].
        stage2: bool,
    },
    /// F_PERMISSION (IHI 0070 §7.3.15).
    Permission {
        /// As for [`FaultKind::Translation`].
        stage2: bool,
    },
}

impl FaultKind {
    fn id(self) -> EventId {
        match self {
            FaultKind::Translation { .. } => EventId::F_TRANSLATION,
            FaultKind::AddrSize { .. } => EventId::F_ADDR_SIZE,
            FaultKind::Access { .. } => EventId::F_ACCESS,
            FaultKind::Permission { .. } => EventId::F_PERMISSION,
        }
    }

    fn stage2(self) -> bool {
        match self {
            FaultKind::Translation { stage2 }
            | FaultKind::AddrSize { stage2 }
            | FaultKind::Access { stage2 }
            | FaultKind::Permission { stage2 } => stage2,
        }
    }
}

/// What happened to a simulated device transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaOutcome {
    /// The transaction reached memory at `pa`. `translated` is false for bypass (STE bypass,
    /// S1DSS bypass of a stage-1 stream, or GBPA bypass while SMMUEN = 0). The model translates
    /// as identity: `pa` is the input address.
    Completed {
        /// Output address.
        pa: PhysAddr,
        /// Whether a translation stage applied.
        translated: bool,
    },
    /// Terminated without a record (abort STE, GBPA.ABORT, unrecorded fault, C_BAD_STREAMID
    /// with CR2.RECINVSID = 0).
    Aborted,
    /// Terminated and a record of this type was generated (written to the event queue if it was
    /// enabled and had room; see [`SmmuModel::event_stats`](super::SmmuModel::event_stats)).
    Faulted(EventId),
}

/// A distinct in-memory state of a watched STE.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SteSnapshot {
    /// The 64 bytes the SMMU could have fetched.
    pub ste: Ste,
    /// Total MMIO accesses the model had seen when it was taken.
    pub at_access: u64,
}

/// An STE the model fetched that has V = 1 but that the model's own decoding of IHI 0070 §5.2
/// finds ILLEGAL (C_BAD_STE); `error` names the reason with the driver's error names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RejectedSte {
    /// Its StreamID.
    pub sid: StreamId,
    /// The fetched entry.
    pub ste: Ste,
    /// Why it was rejected.
    pub error: SteError,
}

/// Result of walking the stream table for one StreamID.
enum Walk {
    Found(Ste),
    /// Beyond the table, or an invalid L1 descriptor; `record`: C_BAD_STREAMID is recorded.
    BadStreamId {
        record: bool,
    },
    /// External abort fetching the L1 descriptor or the STE at this address.
    FetchAbort(PhysAddr),
}

/// Result of fetching a CD: its V and R bits (IHI 0070 §5.4, CD word 0 bits 31 and 45).
enum CdWalk {
    Found {
        valid: bool,
        record: bool,
    },
    /// The L1 CD descriptor is invalid.
    BadL1,
    FetchAbort(PhysAddr),
}

/// The STE fields the model acts on, decoded here with IHI 0070 §5.2's bit positions rather
/// than with the driver's `Ste::config`: word 0 V `[0]`, Config `[3:1]`, S1Fmt `[5:4]`,
/// S1ContextPtr `[51:6]`, S1CDMax `[63:59]`; word 1 S1DSS `[1:0]`; word 2 S2T0SZ `[37:32]`,
/// S2TG `[47:46]`, S2AA64 `[51]`, S2R `[58]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SteKind {
    Abort,
    Bypass,
    Translate {
        s1: Option<S1Fields>,
        s2: Option<S2Fields>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct S1Fields {
    /// 0 linear, 1 2-level with 4 KiB leaves, 2 with 64 KiB leaves.
    fmt: u8,
    ctx_ptr: u64,
    cd_max: u8,
    /// 0 terminate, 1 bypass, 2 SSID0.
    dss: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct S2Fields {
    t0sz: u8,
    s2r: bool,
}

/// Decodes a V = 1 STE for the model; `Err` names what makes it C_BAD_STE (the reasons use the
/// driver's error names only as labels).
fn decode_ste(ste: &Ste) -> Result<SteKind, SteError> {
    let [w0, w1, w2, ..] = ste.0;
    if w0 & 1 == 0 {
        return Err(SteError::NotValid);
    }
    let config = ((w0 >> 1) & 0b111) as u8;
    let s1 = if config & 0b101 == 0b101 {
        let fields = S1Fields {
            fmt: ((w0 >> 4) & 0b11) as u8,
            ctx_ptr: w0 & 0x000F_FFFF_FFFF_FFC0,
            cd_max: (w0 >> 59) as u8,
            dss: (w1 & 0b11) as u8,
        };
        if fields.fmt == 3 {
            return Err(SteError::ReservedS1Fmt);
        }
        // SubstreamIDs are at most 20 bits (IHI 0070 §3.3.3).
        if fields.cd_max > 20 {
            return Err(SteError::S1CdMaxTooLarge(fields.cd_max));
        }
        if fields.cd_max != 0 && fields.dss == 3 {
            return Err(SteError::ReservedS1Dss);
        }
        Some(fields)
    } else {
        None
    };
    let s2 = if config & 0b110 == 0b110 {
        if w2 & (1 << 51) == 0 {
            return Err(SteError::S2NotAarch64);
        }
        if (w2 >> 46) & 0b11 == 0b11 {
            return Err(SteError::ReservedS2Tg);
        }
        Some(S2Fields {
            t0sz: ((w2 >> 32) & 0x3f) as u8,
            s2r: w2 & (1 << 58) != 0,
        })
    } else {
        None
    };
    match config {
        0b000 => Ok(SteKind::Abort),
        0b100 => Ok(SteKind::Bypass),
        0b101..=0b111 => Ok(SteKind::Translate { s1, s2 }),
        c => Err(SteError::ReservedConfig(c)),
    }
}

/// Fetches the CD of SubstreamID `ssid` from the CD table of `s1` (IHI 0070 §3.4.2, §5.4). For a
/// nested stream the context pointer is an IPA; the model's stage 2 is the identity. An L1 CD
/// descriptor is V `[0]`, L2Ptr `[51:12]` (IHI 0070 §5.3).
fn fetch_cd(hw: &Hw, s1: &S1Fields, ssid: u32) -> CdWalk {
    let ptr = s1.ctx_ptr;
    let leaf_bits = match s1.fmt {
        0 => None,
        1 => Some(6),
        _ => Some(10),
    };
    let cd_addr = match leaf_bits {
        None => PhysAddr(ptr + 64 * u64::from(ssid)),
        Some(bits) => {
            let l1_addr = PhysAddr(ptr + 8 * u64::from(ssid >> bits));
            let Some(raw) = hw.dma.read_u64(l1_addr) else {
                return CdWalk::FetchAbort(l1_addr);
            };
            if raw & 1 == 0 {
                return CdWalk::BadL1;
            }
            PhysAddr((raw & 0x000F_FFFF_FFFF_F000) + 64 * u64::from(ssid & ((1 << bits) - 1)))
        }
    };
    match hw.dma.read_u64(cd_addr) {
        Some(w0) => CdWalk::Found {
            valid: w0 & (1 << 31) != 0,
            record: w0 & (1 << 45) != 0,
        },
        None => CdWalk::FetchAbort(cd_addr),
    }
}

/// Stream-table state.
#[derive(Default)]
pub(crate) struct Strtab {
    base: u64,
    cfg: u32,
    cache: HashMap<u32, Ste>,
    faults: Vec<(StreamId, Range<u64>, FaultKind)>,
    watch: HashMap<u32, Vec<SteSnapshot>>,
    pub(crate) rejected: Vec<RejectedSte>,
}

fn layout_of(cfg: u32, sid_bits: u8) -> StreamTableLayout {
    let c = LocalRegisterCopy::<u32, STRTAB_BASE_CFG::Register>::new(cfg);
    let log2 = (c.read(STRTAB_BASE_CFG::LOG2SIZE) as u8).min(sid_bits);
    if c.read(STRTAB_BASE_CFG::FMT) == 1 {
        // SPLIT values other than 6, 8, 10 are reserved and behave as 6 (IHI 0070 §6.3.25).
        let split = match c.read(STRTAB_BASE_CFG::SPLIT) as u8 {
            s @ (6 | 8 | 10) => s,
            _ => 6,
        };
        StreamTableLayout::TwoLevel { log2, split }
    } else {
        StreamTableLayout::Linear { log2 }
    }
}

/// Effective table base: ADDR aligned to the table size, or to max(64, L1 size) (§6.3.24).
fn base_of(raw: u64, layout: StreamTableLayout) -> u64 {
    let r = LocalRegisterCopy::<u64, STRTAB_BASE::Register>::new(raw);
    let addr = r.read(STRTAB_BASE::ADDR) << 6;
    let align = layout.table_bytes().max(64);
    if align.is_power_of_two() {
        addr & !(align - 1)
    } else {
        addr
    }
}

impl Model {
    /// Walks the table described by `base_raw`/`cfg` for `sid` (no cache, no events).
    fn walk(&self, hw: &Hw, base_raw: u64, cfg: u32, sid: StreamId) -> Walk {
        let recinvsid = hw.regs.r32(off::CR2) & CR2_RECINVSID != 0;
        let sid_bits = self.feat.sid_bits;
        let layout = layout_of(cfg, sid_bits);
        if !layout.covers(sid) {
            return Walk::BadStreamId { record: recinvsid };
        }
        let base = base_of(base_raw, layout);
        let ste_addr = match layout {
            StreamTableLayout::Linear { .. } => PhysAddr(base + 64 * u64::from(sid.0)),
            StreamTableLayout::TwoLevel { split, .. } => {
                let l1_addr = PhysAddr(base + 8 * u64::from(sid.0 >> split));
                let Some(raw) = hw.dma.read_u64(l1_addr) else {
                    return Walk::FetchAbort(l1_addr);
                };
                // IHI 0070 §5.1 L1STD: Span [4:0] (2^(Span-1) STEs; 0 invalid, above 11
                // reserved, as SPLIT is at most 10), L2Ptr [51:6].
                let span = (raw & 0x1f) as u32;
                if span == 0 || span > 11 {
                    // QEMU records C_BAD_STREAMID for SPAN = 0 whatever RECINVSID says.
                    return Walk::BadStreamId { record: true };
                }
                let l2_index = sid.0 & ((1u32 << split) - 1);
                if l2_index >= 1 << (span - 1) {
                    return Walk::BadStreamId { record: recinvsid };
                }
                let l2_bytes = 64u64 << (span - 1);
                let l2 = raw & 0x000F_FFFF_FFFF_FFC0 & !(l2_bytes - 1);
                PhysAddr(l2 + 64 * u64::from(l2_index))
            }
        };
        match hw.dma.read_dwords::<8>(ste_addr) {
            Some(d) => Walk::Found(Ste(d)),
            None => Walk::FetchAbort(ste_addr),
        }
    }

    /// Latches STRTAB_BASE and STRTAB_BASE_CFG (at SMMUEN and at every CFGI).
    pub(crate) fn strtab_latch(&mut self, hw: &Hw) {
        self.strtab.base = hw.regs.r64(off::STRTAB_BASE);
        self.strtab.cfg = hw.regs.r32(off::STRTAB_BASE_CFG);
    }

    /// CFGI: drops cached STEs, all of them (`None`) or `2^span` StreamIDs around `sid`.
    pub(crate) fn strtab_invalidate(&mut self, hw: &Hw, which: Option<(StreamId, u8)>) {
        self.strtab_latch(hw);
        match which {
            None => self.strtab.cache.clear(),
            Some((sid, span)) => {
                let (lo, hi) = cfgi_range(sid, span);
                self.strtab.cache.retain(|&s, _| s < lo || s > hi);
            }
        }
    }

    fn check_fetched(&mut self, sid: StreamId, ste: Ste) {
        if ste.0[0] & 1 != 0
            && let Err(error) = decode_ste(&ste)
        {
            let r = RejectedSte { sid, ste, error };
            if self.strtab.rejected.last() != Some(&r) {
                self.strtab.rejected.push(r);
            }
        }
    }

    /// The STE for `sid` as the SMMU uses it: from the cache, or fetched and cached.
    fn lookup(&mut self, hw: &Hw, sid: StreamId) -> Walk {
        if let Some(ste) = self.strtab.cache.get(&sid.0) {
            return Walk::Found(*ste);
        }
        let w = self.walk(hw, self.strtab.base, self.strtab.cfg, sid);
        if let Walk::Found(ste) = w {
            self.check_fetched(sid, ste);
            self.strtab.cache.insert(sid.0, ste);
        }
        w
    }

    fn record(&mut self, hw: &Hw, rec: EventRecord) -> DmaOutcome {
        self.produce(hw, Which::Evtq, &rec.encode().0);
        DmaOutcome::Faulted(rec.id)
    }

    /// One device transaction (see [`SmmuModel::dma_access`](super::SmmuModel::dma_access)).
    pub(crate) fn dma(
        &mut self,
        hw: &Hw,
        sid: StreamId,
        ssid: Option<SubstreamId>,
        iova: Iova,
        write: bool,
    ) -> DmaOutcome {
        let bypass = DmaOutcome::Completed {
            pa: PhysAddr(iova.0),
            translated: false,
        };
        if !self.smmu_enabled() {
            return if self.ctl.gbpa & GBPA_ABORT != 0 {
                DmaOutcome::Aborted
            } else {
                bypass
            };
        }
        let ste = match self.lookup(hw, sid) {
            Walk::Found(ste) => ste,
            Walk::BadStreamId { record: true } => {
                return self.record(hw, EventRecord::bad_streamid(sid));
            }
            Walk::BadStreamId { record: false } => return DmaOutcome::Aborted,
            Walk::FetchAbort(addr) => return self.record(hw, EventRecord::ste_fetch(sid, addr)),
        };
        let (s1, s2) = match decode_ste(&ste) {
            Err(_) => return self.record(hw, EventRecord::bad_ste(sid)),
            Ok(SteKind::Abort) => return DmaOutcome::Aborted,
            Ok(SteKind::Bypass) => return bypass,
            Ok(SteKind::Translate { s1, s2 }) => {
                let s1_ok = s1.is_none() || self.feat.stage1;
                let s2_ok = s2.is_none() || self.feat.stage2;
                if !(s1_ok && s2_ok) {
                    return self.record(hw, EventRecord::bad_ste(sid));
                }
                (s1, s2)
            }
        };
        let s2r = s2.map(|s2| s2.s2r);
        // Stage 1: SubstreamID checks and S1DSS (IHI 0070 §5.2).
        let s1_active = match (s1, ssid) {
            (None, Some(_)) => {
                return self.record(hw, EventRecord::bad_substreamid(sid, ssid));
            }
            (None, None) => false,
            (Some(S1Fields { cd_max, .. }), Some(s)) => {
                if cd_max == 0 || u64::from(s.0) >= 1u64 << cd_max {
                    return self.record(hw, EventRecord::bad_substreamid(sid, ssid));
                }
                true
            }
            (Some(S1Fields { cd_max, dss, .. }), None) => match dss {
                _ if cd_max == 0 => true,
                0 => return self.record(hw, EventRecord::stream_disabled(sid)),
                1 => false,
                _ => true,
            },
        };
        if !s1_active && s2r.is_none() {
            return bypass;
        }
        // Stage 1 in use: fetch the CD (not cached) for CD.V and CD.R.
        let mut cd_r = false;
        if let (true, Some(s1)) = (s1_active, s1) {
            let s = ssid.map_or(0, |s| s.0);
            match fetch_cd(hw, &s1, s) {
                CdWalk::Found {
                    valid: true,
                    record,
                } => cd_r = record,
                CdWalk::Found { valid: false, .. } => {
                    return self.record(hw, EventRecord::bad_cd(sid, ssid));
                }
                CdWalk::BadL1 => return self.record(hw, EventRecord::bad_cd(sid, ssid)),
                CdWalk::FetchAbort(a) => {
                    return self.record(hw, EventRecord::cd_fetch(sid, ssid, a));
                }
            }
        }
        // An input address beyond the stage-2 input range (S2T0SZ) is a stage-2 translation
        // fault, as QEMU's hw/arm/smmuv3.c reports it; with stage 1 in front the model's identity
        // stage 1 makes the IPA equal to the IOVA.
        let beyond_s2 = s2.is_some_and(|s2| {
            let bits = 64u32.saturating_sub(u32::from(s2.t0sz));
            bits < 64 && iova.0 >> bits != 0
        });
        let fault = self
            .strtab
            .faults
            .iter()
            .find(|(s, r, k)| {
                *s == sid
                    && r.contains(&iova.0)
                    && if k.stage2() { s2r.is_some() } else { s1_active }
            })
            .map(|f| f.2)
            .or(beyond_s2.then_some(FaultKind::Translation { stage2: true }));
        if let Some(kind) = fault {
            // Stage-2 faults are recorded per STE.S2R, stage-1 faults per CD.R (IHI 0070 §5.2, §5.4).
            let recorded = if kind.stage2() {
                s2r == Some(true)
            } else {
                cd_r
            };
            if !recorded {
                return DmaOutcome::Aborted;
            }
            let rec =
                EventRecord::fault(kind.id(), sid, iova, kind.stage2(), write).with_ssid(ssid);
            return self.record(hw, rec);
        }
        DmaOutcome::Completed {
            pa: PhysAddr(iova.0),
            translated: true,
        }
    }

    pub(crate) fn set_fault(&mut self, sid: StreamId, iova: Range<u64>, kind: FaultKind) {
        self.strtab.faults.push((sid, iova, kind));
    }

    pub(crate) fn clear_faults(&mut self) {
        self.strtab.faults.clear();
    }

    /// The STE for `sid` in memory now, walked from the current register values.
    pub(crate) fn ste_in_memory(&self, hw: &Hw, sid: StreamId) -> Option<Ste> {
        let base = hw.regs.r64(off::STRTAB_BASE);
        let cfg = hw.regs.r32(off::STRTAB_BASE_CFG);
        match self.walk(hw, base, cfg, sid) {
            Walk::Found(ste) => Some(ste),
            _ => None,
        }
    }

    pub(crate) fn cached_ste(&self, sid: StreamId) -> Option<Ste> {
        self.strtab.cache.get(&sid.0).copied()
    }

    pub(crate) fn watch_ste(&mut self, hw: &Hw, sid: StreamId) {
        self.strtab.watch.entry(sid.0).or_default();
        self.snapshot_watched(hw);
    }

    pub(crate) fn ste_snapshots(&self, sid: StreamId) -> Vec<SteSnapshot> {
        self.strtab.watch.get(&sid.0).cloned().unwrap_or_default()
    }

    /// After a 64-bit store of the driver to a live L1 descriptor or STE at `pa` (already
    /// visible to the SMMU): what the entry now makes reachable must have been published
    /// before it (IHI 0070 §3.21.3: a valid entry may be fetched at any time). A level-2 table
    /// behind an L1 descriptor, or the CD table behind a valid stage-1 STE, that the SMMU would
    /// see differently from what the CPU wrote means a barrier was missing.
    ///
    /// # Panics
    /// On such an entry: the driver under test broke the ordering rule.
    pub(crate) fn check_table_store(&mut self, hw: &Hw, pa: PhysAddr) {
        // IHI 0070 §5.1 (L1STD) and §5.2 (STE word 0), decoded here rather than with the
        // driver's types: Span [4:0], L2Ptr [51:6]; V [0], Config [3:1], S1Fmt [5:4],
        // S1ContextPtr [51:6], S1CDMAX [63:59].
        const ADDR_51_6: u64 = 0x000F_FFFF_FFFF_FFC0;
        let layout = layout_of(hw.regs.r32(off::STRTAB_BASE_CFG), self.feat.sid_bits);
        let base = base_of(hw.regs.r64(off::STRTAB_BASE), layout);
        if let StreamTableLayout::TwoLevel { .. } = layout {
            let l1_bytes = 8 * u64::from(layout.l1_entries());
            if (base..base + l1_bytes).contains(&pa.0) {
                let Some(d) = hw.dma.read_u64(pa) else { return };
                let span = d & 0x1f;
                if span == 0 || span > 12 {
                    return;
                }
                let l2 = PhysAddr(d & ADDR_51_6);
                let bytes = 64usize << (span - 1);
                assert!(
                    !hw.dma.contains(l2, bytes) || hw.dma.published(l2, bytes),
                    "L1 descriptor at {:#x} made the level-2 table at {:#x} reachable before \
                     its contents were published (missing barrier)",
                    pa.0,
                    l2.0
                );
                return;
            }
        }
        let Some(q0) = hw.dma.read_u64(PhysAddr(pa.0 & !63)) else {
            return;
        };
        let config = (q0 >> 1) & 0b111;
        if q0 & 1 == 0 || config & 0b101 != 0b101 {
            return;
        }
        let ptr = PhysAddr(q0 & ADDR_51_6);
        let cd_max = (q0 >> 59) as u32;
        let bytes = match (q0 >> 4) & 0b11 {
            // Linear: 2^S1CDMAX CDs of 64 bytes.
            0 => 64u64 << cd_max,
            // 2-level: L1 descriptors of 8 bytes, 2^(S1CDMAX - SPLIT) of them (SPLIT 6 or 10).
            1 => 8u64 << cd_max.saturating_sub(6),
            _ => 8u64 << cd_max.saturating_sub(10),
        }
        .min(4096) as usize;
        assert!(
            !hw.dma.contains(ptr, bytes) || hw.dma.published(ptr, bytes),
            "STE at {:#x} was made to use the CD table at {:#x} before that table was published \
             (missing barrier)",
            pa.0 & !63,
            ptr.0
        );
    }

    /// Takes a snapshot of every watched STE that changed since its last snapshot.
    pub(crate) fn snapshot_watched(&mut self, hw: &Hw) {
        if self.strtab.watch.is_empty() {
            return;
        }
        let at_access = self.counts.total() + self.counts.outside;
        let sids: Vec<u32> = self.strtab.watch.keys().copied().collect();
        for sid in sids {
            let Some(ste) = self.ste_in_memory(hw, StreamId(sid)) else {
                continue;
            };
            let list = self.strtab.watch.entry(sid).or_default();
            if list.last().map(|s| s.ste) != Some(ste) {
                list.push(SteSnapshot { ste, at_access });
                self.check_fetched(StreamId(sid), ste);
            }
        }
    }
}
