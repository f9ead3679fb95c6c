//! `CmdqvModel`: a software Tegra241 CMDQV for host tests (features `fakes` + `cmdqv`).
//!
//! The register window lives in an aligned host allocation. The driver reaches it through
//! `tock-registers` like real MMIO, and the model runs from the
//! [`Platform::mmio`] hook: after a write it reacts
//! synchronously (CMDQV_EN → STATUS, VINTF ENABLE → STATUS.ENABLED, CMDQ_EN → CMDQ_EN_OK,
//! CMDQ_ALLOC mapping, PROD → commands consumed, GERRORN → queue restarted); registers the model
//! changes are written into memory at once, in both the global and the VINTF-logical view.
//!
//! Behaviour follows Linux's drivers/iommu/arm/arm-smmu-v3/tegra241-cmdqv.c; where it is silent the model picks the strict
//! choice and says so:
//! * CMDQ_ALLOC: a VINTF's logical queues must be mapped in ascending and unmapped in descending
//!   order (§7.3, "hardware requires"); a violating write is recorded as a [`ModelError`] and has
//!   no effect (a map leaves the queue unmapped, an unmap leaves it mapped).
//! * A queue only enables (CMDQ_EN_OK) when CMDQV and its VINTF are enabled and it is mapped.
//! * Non-HYP_OWN VINTFs accept TLBI_NH_ASID, TLBI_NH_VA, ATC_INV and CMD_SYNC (§7.5). Anything
//!   else stops the queue with CERROR_ILL_ACCESS (4). The VINTF's VMID is forced into the TLBIs;
//!   ATC_INV's StreamID is looked up in SID_MATCH and replaced by SID_REPLACE, and a StreamID
//!   without a match is also CERROR_ILL_ACCESS (unconfirmed rule, chosen strict).
//! * A queue error sets CONS.ERR, toggles GERROR.CMDQ_ERR, sets CMDQ_ERR_MAP, the VINTF's
//!   LVCMDQ_ERR_MAP and VINTF_ERR_MAP bits, and pulses the (edge) error interrupt unless
//!   VINTF_INT_MASK masks the VINTF. Acknowledging (GERRORN = GERROR) clears the map bits and
//!   restarts the queue at CONS.
//!
//! Beside the SMMU model: [`CmdqvModel::attach`] registers the model as an
//! [`MmioDevice`] of a [`SmmuModel`], so the SMMU's [`ModelPlatform`](super::ModelPlatform) runs
//! both models from one hook and the queues read commands from the SMMU's [`DmaArena`](super::DmaArena)
//! arena. [`CmdqvModel::standalone`] gives a model with its own arena ([`CmdqvArena`]) and
//! platform ([`StandalonePlatform`]) for tests that need no SMMU.

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use super::{MmioDevice, SmmuModel};

use crate::cmdqv::regs::{self, offset as off};
use crate::command::{CmdqEntry, Command, Opcode};
use crate::error::{Error, WaitFor};
use crate::ids::{PhysAddr, StreamId, Vmid};
use crate::platform::{DmaBuf, DmaMemory, MmioAccess, Platform};

/// Physical memory as the CMDQV sees it: what its queues are fetched from.
pub trait PhysBus: Send + Sync {
    /// The little-endian 64-bit word at `pa`, or `None` (an external abort).
    fn read_u64(&self, pa: PhysAddr) -> Option<u64>;
}

/// The PARAM register and window geometry of a model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CmdqvModelParams {
    /// CMDQV_VER.
    pub version: u8,
    /// NUM_VCMDQ_LOG2.
    pub vcmdqs_log2: u8,
    /// NUM_VINTF_LOG2.
    pub vintfs_log2: u8,
    /// NUM_SID_PER_VM_LOG2.
    pub sids_log2: u8,
}

impl CmdqvModelParams {
    /// QEMU's model: version 1, two VCMDQs, one VINTF, 16 SID pairs (window `0x50000`).
    pub const QEMU: Self = Self {
        version: 1,
        vcmdqs_log2: 1,
        vintfs_log2: 0,
        sids_log2: 4,
    };

    /// A small Grace-like instance for tests: 16 VCMDQs, 4 VINTFs (4 LVCMDQs each), 16 SIDs.
    pub const TEST: Self = Self {
        version: 1,
        vcmdqs_log2: 4,
        vintfs_log2: 2,
        sids_log2: 4,
    };

    /// The raw CMDQV_PARAM value.
    pub const fn param(self) -> u32 {
        (self.version as u32 & 0xF)
            | ((self.vcmdqs_log2 as u32 & 0xF) << 4)
            | ((self.vintfs_log2 as u32 & 0xF) << 8)
            | ((self.sids_log2 as u32 & 0xF) << 12)
    }

    fn num_vintfs(self) -> usize {
        (1usize << self.vintfs_log2).min(regs::MAX_VINTFS)
    }

    fn num_vcmdqs(self) -> usize {
        (1usize << self.vcmdqs_log2).min(regs::MAX_VCMDQS)
    }
}

/// A fault the model injects into a queue's command stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VcmdqFault {
    /// CERROR_ILL at the command.
    Illegal,
    /// CERROR_ABT: fetching the command aborts (once; the retry after the acknowledgement works).
    Abort,
    /// CERROR_ATC_INV_SYNC at the next CMD_SYNC.
    AtcInvSync,
    /// CERROR_ILL_ACCESS at the command.
    IllegalAccess,
}

/// Something the driver did that real hardware would reject or that the sources forbid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelError {
    /// CMDQ_ALLOC mapped LVCMDQ `lvcmdq` of `vintf` (global queue `queue`) while a lower logical
    /// queue was unmapped or a higher one mapped.
    MapOutOfOrder {
        /// Global queue.
        queue: usize,
        /// Target VINTF.
        vintf: usize,
        /// Target logical index.
        lvcmdq: usize,
    },
    /// CMDQ_ALLOC unmapped a logical queue that was not the highest mapped one of its VINTF.
    UnmapOutOfOrder {
        /// Global queue.
        queue: usize,
        /// Owning VINTF.
        vintf: usize,
        /// Logical index.
        lvcmdq: usize,
    },
    /// CMDQ_ALLOC mapped a (VINTF, LVCMDQ) pair that another global queue already holds, or named
    /// a VINTF that does not exist.
    BadMapping {
        /// Global queue.
        queue: usize,
    },
    /// CMDQ_ALLOC changed VINTF/LVCMDQ of a mapped queue.
    RemapWhileAllocated {
        /// Global queue.
        queue: usize,
    },
    /// A queue was unmapped while enabled.
    UnmapWhileEnabled {
        /// Global queue.
        queue: usize,
    },
    /// CMDQ_EN was set while CMDQV or the VINTF was disabled, or the queue unmapped.
    EnableRefused {
        /// Global queue.
        queue: usize,
    },
    /// VINTF ENABLE was set while CMDQV was disabled.
    VintfEnableRefused {
        /// VINTF index.
        vintf: usize,
    },
    /// An access to a VINTF's logical slot with no queue mapped to it (read as zero, write ignored).
    UnmappedLogicalAccess {
        /// VINTF index.
        vintf: usize,
        /// Logical index.
        lvcmdq: usize,
    },
    /// An access to an offset that decodes to no register.
    Unmapped {
        /// Offset in the window.
        offset: usize,
    },
}

/// A register of the window, for the MMIO counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CmdqvReg {
    /// CMDQV_CONFIG.
    Config,
    /// CMDQV_PARAM.
    Param,
    /// CMDQV_STATUS.
    Status,
    /// VINTF_ERR_MAP (either half).
    VintfErrMap,
    /// VINTF_INT_MASK (either half).
    VintfIntMask,
    /// CMDQ_ERR_MAP(m).
    CmdqErrMap,
    /// CMDQ_ALLOC(q).
    CmdqAlloc,
    /// VINTF_CONFIG.
    VintfConfig,
    /// VINTF_STATUS.
    VintfStatus,
    /// SID_MATCH(s).
    SidMatch,
    /// SID_REPLACE(s).
    SidReplace,
    /// LVCMDQ_ERR_MAP(m).
    LvcmdqErrMap,
    /// VCMDQ_CONS.
    Cons,
    /// VCMDQ_PROD.
    Prod,
    /// VCMDQ_CONFIG.
    VcmdqConfig,
    /// VCMDQ_STATUS.
    VcmdqStatus,
    /// VCMDQ_GERROR.
    Gerror,
    /// VCMDQ_GERRORN.
    Gerrorn,
    /// VCMDQ_BASE.
    Base,
    /// VCMDQ_CONS_INDX_BASE.
    ConsIndxBase,
    /// Anything else.
    Other,
}

/// MMIO access counters of a [`CmdqvModel`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CmdqvMmioCounts {
    /// Reads of any register.
    pub reads: u64,
    /// Writes of any register.
    pub writes: u64,
    /// `(reads, writes)` per register.
    pub per_reg: BTreeMap<CmdqvReg, (u64, u64)>,
}

impl CmdqvMmioCounts {
    /// `(reads, writes)` of `reg`.
    pub fn get(&self, reg: CmdqvReg) -> (u64, u64) {
        self.per_reg.get(&reg).copied().unwrap_or((0, 0))
    }

    /// Reads plus writes of every register.
    pub fn total(&self) -> u64 {
        self.reads + self.writes
    }
}

/// What a queue's model state looks like (for assertions).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcmdqState {
    /// CONS including ERR.
    pub cons: u32,
    /// PROD.
    pub prod: u32,
    /// CMDQ_EN_OK.
    pub enabled: bool,
    /// GERROR.
    pub gerror: u32,
    /// GERRORN.
    pub gerrorn: u32,
    /// BASE.
    pub base: u64,
    /// CMDQ_ALLOC value in effect.
    pub alloc: u32,
    /// Commands consumed since creation.
    pub consumed: u64,
}

/// Which enable handshake a never-ack knob targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckTarget {
    /// CMDQV_CONFIG.CMDQV_EN → STATUS.CMDQV_ENABLED.
    Cmdqv,
    /// VINTF_CONFIG.ENABLE of VINTF *v* → VINTF_STATUS.ENABLED.
    Vintf(usize),
    /// VCMDQ_CONFIG.CMDQ_EN of global queue *q* → VCMDQ_STATUS.CMDQ_EN_OK.
    Vcmdq(usize),
}

#[derive(Clone, Default)]
struct QModel {
    cons: u32,
    prod: u32,
    config: u32,
    en_ok: bool,
    gerror: u32,
    gerrorn: u32,
    base: u64,
    cons_indx_base: u64,
    alloc: u32,
    log: Vec<Command>,
    consumed: u64,
    inject: Option<(u64, VcmdqFault)>,
    never_ack: bool,
}

impl QModel {
    fn mapped(&self) -> Option<(usize, usize)> {
        (self.alloc & 1 != 0).then(|| (alloc_vintf(self.alloc), alloc_lvcmdq(self.alloc)))
    }

    fn error_active(&self) -> bool {
        (self.gerror ^ self.gerrorn) & 1 != 0
    }
}

#[derive(Clone, Default)]
struct VintfModel {
    config: u32,
    enabled: bool,
    sid_match: [u32; regs::MAX_SID_SLOTS],
    sid_replace: [u32; regs::MAX_SID_SLOTS],
    err_map: u128,
    never_ack: bool,
}

impl VintfModel {
    fn hyp_own(&self) -> bool {
        self.config & (1 << 17) != 0
    }

    fn vmid(&self) -> u16 {
        ((self.config >> 1) & 0xFFFF) as u16
    }
}

struct State {
    p: CmdqvModelParams,
    config: u32,
    enabled: bool,
    never_ack: bool,
    hyp_own_wired_zero: bool,
    int_mask: u64,
    vintf_err_map: u64,
    cmdq_err_map: u128,
    vintf: Vec<VintfModel>,
    q: Vec<QModel>,
    errors: Vec<ModelError>,
    irqs: u64,
    counts: CmdqvMmioCounts,
}

fn alloc_vintf(a: u32) -> usize {
    ((a >> 15) & 0x3F) as usize
}

fn alloc_lvcmdq(a: u32) -> usize {
    ((a >> 1) & 0x7F) as usize
}

/// Where an MMIO address landed.
#[derive(Clone, Copy, Debug)]
enum Loc {
    Config(usize),
    Vintf(usize, usize),
    Page0 {
        q: usize,
        reg: usize,
    },
    Page1 {
        q: usize,
        reg: usize,
    },
    /// A logical slot no queue is mapped to: reads as zero, writes ignored.
    UnmappedLogical,
    Unmapped(usize),
}

/// An aligned, zeroed host allocation (the register window, the standalone arena).
struct HostMem {
    base: NonNull<u8>,
    layout: Layout,
}

impl HostMem {
    fn new(size: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(size, align).expect("CmdqvModel: bad layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        let base = NonNull::new(ptr).expect("CmdqvModel: host allocation failed");
        Self { base, layout }
    }

    fn r32(&self, off: usize) -> u32 {
        assert!(off + 4 <= self.layout.size() && off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked); volatile because the driver shares the memory.
        unsafe { self.base.add(off).cast::<u32>().read_volatile() }
    }

    fn w32(&self, off: usize, v: u32) {
        assert!(off + 4 <= self.layout.size() && off.is_multiple_of(4));
        // SAFETY: in bounds and aligned (checked); volatile because the driver shares the memory.
        unsafe { self.base.add(off).cast::<u32>().write_volatile(v) }
    }

    fn r64(&self, off: usize) -> u64 {
        assert!(off + 8 <= self.layout.size() && off.is_multiple_of(8));
        // SAFETY: in bounds and aligned (checked); volatile because the driver shares the memory.
        unsafe { self.base.add(off).cast::<u64>().read_volatile() }
    }

    fn w64(&self, off: usize, v: u64) {
        assert!(off + 8 <= self.layout.size() && off.is_multiple_of(8));
        // SAFETY: in bounds and aligned (checked); volatile because the driver shares the memory.
        unsafe { self.base.add(off).cast::<u64>().write_volatile(v) }
    }
}

impl Drop for HostMem {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout, freed once.
        unsafe { dealloc(self.base.as_ptr(), self.layout) };
    }
}

/// A software Tegra241 CMDQV. Create it with [`CmdqvModel::new`] (or [`CmdqvModel::standalone`]),
/// hand [`base`](Self::base) to `Cmdqv::new`, run it from a platform's MMIO hook through
/// [`access`](Self::access), and steer or observe it with the other methods.
pub struct CmdqvModel {
    win: HostMem,
    phys: PhysAddr,
    bus: Arc<dyn PhysBus>,
    state: Mutex<State>,
}

// SAFETY: the window is owned by the model for its whole life (freed only when it drops) and holds
// plain integers, so the owner may move between threads.
unsafe impl Send for CmdqvModel {}
// SAFETY: through `&CmdqvModel`, model code touches the window only with `state` locked (`access`
// and the steering methods), so two model accesses never race. CPU-side accesses (the driver
// through the pointers `Cmdqv::new` was given, or `read32`/`write32`, which stand for a CPU load
// or store) run before or after the hook for that access, never inside it; as on hardware, the
// caller must not let two threads access one register at once, which the driver guarantees by
// giving each VCMDQ to one CPU (its lock) and which Miri's race detector checked for the
// two-thread tests.
unsafe impl Sync for CmdqvModel {}

impl core::fmt::Debug for CmdqvModel {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("CmdqvModel")
            .field("phys", &self.phys)
            .field("size", &self.win.layout.size())
            .finish()
    }
}

impl CmdqvModel {
    /// The physical address the model's window claims (any 64 KiB-aligned value would do).
    pub const DEFAULT_PHYS: PhysAddr = PhysAddr(0x0520_0000);

    /// A model with `params`, its queues fetching commands through `bus`. The window is
    /// `0x30000 + 0x20000 × num_vintfs` bytes, 64 KiB aligned, with reset values: CONFIG 0,
    /// PARAM from `params`, everything else 0.
    pub fn new(params: CmdqvModelParams, bus: Arc<dyn PhysBus>) -> Arc<Self> {
        let nv = params.num_vintfs();
        let win = HostMem::new(regs::window_size(nv), regs::PAGE_SIZE);
        win.w32(off::PARAM, params.param());
        Arc::new(Self {
            win,
            phys: Self::DEFAULT_PHYS,
            bus,
            state: Mutex::new(State {
                p: params,
                config: 0,
                enabled: false,
                never_ack: false,
                hyp_own_wired_zero: false,
                int_mask: 0,
                vintf_err_map: 0,
                cmdq_err_map: 0,
                vintf: vec![VintfModel::default(); nv],
                q: vec![QModel::default(); params.num_vcmdqs()],
                errors: Vec::new(),
                irqs: 0,
                counts: CmdqvMmioCounts::default(),
            }),
        })
    }

    /// A model beside `smmu`: registered as one of its MMIO devices (so
    /// [`SmmuModel::platform`]'s hook runs it) and fetching commands from its DMA arena.
    pub fn attach(smmu: &Arc<SmmuModel>, params: CmdqvModelParams) -> Arc<Self> {
        let cmdqv = Self::new(params, Arc::new(SmmuBus(Arc::downgrade(smmu))));
        smmu.add_device(cmdqv.clone());
        cmdqv
    }

    /// A model with its own DMA arena (see [`CmdqvArena`]) and a platform running it.
    pub fn standalone(
        params: CmdqvModelParams,
    ) -> (Arc<Self>, Arc<CmdqvArena>, StandalonePlatform) {
        let arena = Arc::new(CmdqvArena::default());
        let cmdqv = Self::new(params, arena.clone());
        let platform = StandalonePlatform::new(cmdqv.clone());
        (cmdqv, arena, platform)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The host address of the window (what `Cmdqv::new` takes).
    pub fn base(&self) -> NonNull<u8> {
        self.win.base
    }

    /// The window size in bytes.
    pub fn size(&self) -> usize {
        self.win.layout.size()
    }

    /// The physical address the window claims.
    pub fn phys(&self) -> PhysAddr {
        self.phys
    }

    /// Whether the host address `addr` lies in the window.
    pub fn contains(&self, addr: usize) -> bool {
        let b = self.win.base.as_ptr() as usize;
        addr >= b && addr < b + self.size()
    }

    /// Runs the model for one access at host address `addr` (the platform hook: after a write,
    /// before a read). Addresses outside the window are ignored.
    pub fn access(&self, addr: usize, write: bool) {
        if !self.contains(addr) {
            return;
        }
        let o = addr - self.win.base.as_ptr() as usize;
        let mut s = self.lock();
        let loc = s.decode(o);
        let reg = reg_of(loc);
        let c = s.counts.per_reg.entry(reg).or_default();
        if write {
            c.1 += 1;
            s.counts.writes += 1;
        } else {
            c.0 += 1;
            s.counts.reads += 1;
        }
        // Registers the model owns are written into memory when they change, so a read needs
        // no work; a write runs the model.
        match loc {
            Loc::Unmapped(offset) => s.errors.push(ModelError::Unmapped { offset }),
            Loc::UnmappedLogical if write => self.win.w64(o & !7, 0),
            _ if write => self.on_write(&mut s, loc, o),
            _ => {}
        }
    }

    /// Writes the 32-bit register at window offset `offset` and runs the model, as a CPU store
    /// would (a guest's store to its mapped VINTF page 0, or a test poking a register).
    pub fn write32(&self, offset: usize, v: u32) {
        self.win.w32(offset, v);
        self.access(self.win.base.as_ptr() as usize + offset, true);
    }

    /// Runs the model and reads the 32-bit register at window offset `offset`, as a CPU load.
    pub fn read32(&self, offset: usize) -> u32 {
        self.access(self.win.base.as_ptr() as usize + offset, false);
        self.win.r32(offset)
    }

    /// Reads the 64-bit register at window offset `offset` (runs the model first).
    pub fn read64(&self, offset: usize) -> u64 {
        self.access(self.win.base.as_ptr() as usize + offset, false);
        self.win.r64(offset)
    }

    // ---- knobs ----

    /// Makes global queue `q` report `fault` after `skip` more commands are consumed (for
    /// [`VcmdqFault::AtcInvSync`], at the first CMD_SYNC from there). One-shot.
    pub fn inject_error(&self, q: usize, skip: u64, fault: VcmdqFault) {
        if let Some(m) = self.lock().q.get_mut(q) {
            m.inject = Some((skip, fault));
        }
    }

    /// Raises the VCMDQ_GERROR bits `bits` (of `[2:0]`) of global queue `q` that are not active,
    /// flags the queue in CMDQ_ERR_MAP, its VINTF's LVCMDQ_ERR_MAP and VINTF_ERR_MAP, and pulses
    /// the error interrupt (unless masked), as for an error other than a command error; the
    /// queue's CONS.ERR is left as it is.
    pub fn raise_queue_error(&self, q: usize, bits: u32) {
        let mut guard = self.lock();
        let s = &mut *guard;
        let Some(m) = s.q.get_mut(q) else { return };
        let new = bits & 0x7 & !(m.gerror ^ m.gerrorn);
        if new == 0 {
            return;
        }
        m.gerror ^= new;
        let mapped = m.mapped();
        self.flag_error(s, q, mapped);
        self.publish_q(s, q);
    }

    /// Makes an enable handshake never complete (`never = true`) or complete at once again.
    pub fn set_never_ack(&self, target: AckTarget, never: bool) {
        let mut s = self.lock();
        match target {
            AckTarget::Cmdqv => s.never_ack = never,
            AckTarget::Vintf(v) => {
                if let Some(m) = s.vintf.get_mut(v) {
                    m.never_ack = never;
                }
            }
            AckTarget::Vcmdq(q) => {
                if let Some(m) = s.q.get_mut(q) {
                    m.never_ack = never;
                }
            }
        }
    }

    /// Makes HYP_OWN wired to 0, as when the window is accessed from a guest.
    pub fn set_hyp_own_wired_zero(&self, zero: bool) {
        self.lock().hyp_own_wired_zero = zero;
    }

    // ---- observations ----

    /// Driver mistakes the model saw, oldest first.
    pub fn errors(&self) -> Vec<ModelError> {
        self.lock().errors.clone()
    }

    /// Error interrupts signalled.
    pub fn irq_count(&self) -> u64 {
        self.lock().irqs
    }

    /// The commands global queue `q` consumed (after VMID/SID substitution), oldest first.
    pub fn commands(&self, q: usize) -> Vec<Command> {
        self.lock()
            .q
            .get(q)
            .map(|m| m.log.clone())
            .unwrap_or_default()
    }

    /// The commands of global queue `q`, forgotten by the model.
    pub fn take_commands(&self, q: usize) -> Vec<Command> {
        self.lock()
            .q
            .get_mut(q)
            .map(|m| std::mem::take(&mut m.log))
            .unwrap_or_default()
    }

    /// The state of global queue `q`.
    pub fn queue(&self, q: usize) -> Option<VcmdqState> {
        self.lock().q.get(q).map(|m| VcmdqState {
            cons: m.cons,
            prod: m.prod,
            enabled: m.en_ok,
            gerror: m.gerror,
            gerrorn: m.gerrorn,
            base: m.base,
            alloc: m.alloc,
            consumed: m.consumed,
        })
    }

    /// The global queue mapped to logical queue `l` of VINTF `v`.
    pub fn global_of(&self, v: usize, l: usize) -> Option<usize> {
        self.lock().global_of(v, l)
    }

    /// Whether CMDQV is enabled.
    pub fn enabled(&self) -> bool {
        self.lock().enabled
    }

    /// VINTF `v`'s CONFIG in effect and whether it is enabled.
    pub fn vintf(&self, v: usize) -> Option<(u32, bool)> {
        self.lock().vintf.get(v).map(|m| (m.config, m.enabled))
    }

    /// VINTF `v`'s SID_MATCH/SID_REPLACE pair `s`.
    pub fn sid_pair(&self, v: usize, s: usize) -> Option<(u32, u32)> {
        let st = self.lock();
        let m = st.vintf.get(v)?;
        Some((*m.sid_match.get(s)?, *m.sid_replace.get(s)?))
    }

    /// VINTF_ERR_MAP.
    pub fn vintf_err_map(&self) -> u64 {
        self.lock().vintf_err_map
    }

    /// VINTF `v`'s LVCMDQ_ERR_MAP.
    pub fn lvcmdq_err_map(&self, v: usize) -> u128 {
        self.lock().vintf.get(v).map_or(0, |m| m.err_map)
    }

    /// CMDQ_ERR_MAP.
    pub fn cmdq_err_map(&self) -> u128 {
        self.lock().cmdq_err_map
    }

    /// MMIO access counters.
    pub fn mmio_counts(&self) -> CmdqvMmioCounts {
        self.lock().counts.clone()
    }

    /// Clears the MMIO access counters.
    pub fn reset_mmio_counts(&self) {
        self.lock().counts = CmdqvMmioCounts::default();
    }

    // ---- the model ----

    fn on_write(&self, s: &mut State, loc: Loc, o: usize) {
        match loc {
            Loc::Config(r) => self.config_write(s, r, o),
            Loc::Vintf(v, r) => self.vintf_write(s, v, r, o),
            Loc::Page0 { q, reg } => self.page0_write(s, q, reg, o),
            Loc::Page1 { q, .. } => {
                // 64-bit registers: read the whole register whatever half was written.
                let slot = o & !(regs::VCMDQ_SLOT_SIZE - 1);
                let within = o - slot;
                let Some(m) = s.q.get_mut(q) else { return };
                if within < 8 {
                    m.base = self.win.r64(slot + off::VCMDQ_BASE);
                } else if within < 16 {
                    m.cons_indx_base = self.win.r64(slot + off::VCMDQ_CONS_INDX_BASE);
                }
                self.publish_q(s, q);
            }
            Loc::Unmapped(_) | Loc::UnmappedLogical => {}
        }
    }

    fn config_write(&self, s: &mut State, r: usize, o: usize) {
        let v = self.win.r32(o);
        match r {
            off::CONFIG => {
                s.config = v;
                if !s.never_ack {
                    s.enabled = v & 1 != 0;
                    self.win.w32(off::STATUS, u32::from(s.enabled));
                    if !s.enabled {
                        for q in 0..s.q.len() {
                            self.disable_q(s, q);
                        }
                    }
                }
            }
            off::VINTF_INT_MASK_LO => {
                s.int_mask = (s.int_mask & !0xFFFF_FFFF) | u64::from(v);
            }
            off::VINTF_INT_MASK_HI => {
                s.int_mask = (s.int_mask & 0xFFFF_FFFF) | (u64::from(v) << 32);
            }
            r if (off::CMDQ_ALLOC..off::CMDQ_ALLOC + 4 * regs::MAX_VCMDQS).contains(&r) => {
                let q = (r - off::CMDQ_ALLOC) / 4;
                self.alloc_write(s, q, v);
            }
            _ => {
                // Read-only registers: restore what the model holds.
                self.win.w32(off::PARAM, s.p.param());
                self.publish_config(s);
            }
        }
    }

    fn alloc_write(&self, s: &mut State, q: usize, new: u32) {
        let Some(old) = s.q.get(q).map(|m| m.alloc) else {
            // A CMDQ_ALLOC beyond the implemented queues: RAZ/WI.
            self.win.w32(off::CMDQ_ALLOC + 4 * q, 0);
            return;
        };
        // ALLOCATED, LVCMDQ and VINTF; the other bits are RES0.
        let new = new & 0x001F_80FF;
        let was = old & 1 != 0;
        let now = new & 1 != 0;
        let effective = match (was, now) {
            (false, true) => {
                let (v, l) = (alloc_vintf(new), alloc_lvcmdq(new));
                if v >= s.vintf.len() || s.global_of(v, l).is_some() {
                    s.errors.push(ModelError::BadMapping { queue: q });
                    new & !1
                } else if (0..l).any(|k| s.global_of(v, k).is_none()) || s.mapped_above(v, l) {
                    s.errors.push(ModelError::MapOutOfOrder {
                        queue: q,
                        vintf: v,
                        lvcmdq: l,
                    });
                    new & !1
                } else {
                    new
                }
            }
            (true, false) => {
                let (v, l) = (alloc_vintf(old), alloc_lvcmdq(old));
                if new & !1 != old & !1 {
                    s.errors.push(ModelError::RemapWhileAllocated { queue: q });
                    old
                } else if s.mapped_above(v, l) {
                    s.errors.push(ModelError::UnmapOutOfOrder {
                        queue: q,
                        vintf: v,
                        lvcmdq: l,
                    });
                    old
                } else {
                    if s.q.get(q).is_some_and(|m| m.en_ok) {
                        s.errors.push(ModelError::UnmapWhileEnabled { queue: q });
                        self.disable_q(s, q);
                    }
                    // The logical slot goes away: zero it.
                    self.clear_logical(v, l);
                    new
                }
            }
            (true, true) => {
                if new != old {
                    s.errors.push(ModelError::RemapWhileAllocated { queue: q });
                }
                old
            }
            (false, false) => new,
        };
        if let Some(m) = s.q.get_mut(q) {
            m.alloc = effective;
        }
        self.win.w32(off::CMDQ_ALLOC + 4 * q, effective);
        self.publish_q(s, q);
        self.publish_vintf_status(s);
    }

    fn vintf_write(&self, s: &mut State, v: usize, r: usize, o: usize) {
        let val = self.win.r32(o);
        let wired_zero = s.hyp_own_wired_zero;
        let cmdqv_on = s.enabled;
        let Some(m) = s.vintf.get_mut(v) else { return };
        match r {
            off::VINTF_CONFIG => {
                let val = if wired_zero { val & !(1 << 17) } else { val };
                m.config = val & 0x3_FFFF;
                self.win.w32(o, m.config);
                let en = val & 1 != 0;
                if m.never_ack {
                    // The STATUS never follows.
                } else if en && !cmdqv_on {
                    s.errors.push(ModelError::VintfEnableRefused { vintf: v });
                } else {
                    m.enabled = en;
                    if !en {
                        let qs: Vec<usize> = (0..s.q.len())
                            .filter(|&q| {
                                s.q.get(q)
                                    .and_then(QModel::mapped)
                                    .is_some_and(|(vv, _)| vv == v)
                            })
                            .collect();
                        for q in qs {
                            self.disable_q(s, q);
                        }
                    }
                }
                self.publish_vintf_status(s);
            }
            r if (off::SID_MATCH..off::SID_MATCH + 4 * regs::MAX_SID_SLOTS).contains(&r) => {
                let slot = (r - off::SID_MATCH) / 4;
                if slot < 1 << s.p.sids_log2 {
                    if let Some(x) = m.sid_match.get_mut(slot) {
                        *x = val;
                    }
                } else {
                    self.win.w32(o, 0);
                }
            }
            r if (off::SID_REPLACE..off::SID_REPLACE + 4 * regs::MAX_SID_SLOTS).contains(&r) => {
                let slot = (r - off::SID_REPLACE) / 4;
                if slot < 1 << s.p.sids_log2 {
                    if let Some(x) = m.sid_replace.get_mut(slot) {
                        *x = val;
                    }
                } else {
                    self.win.w32(o, 0);
                }
            }
            _ => self.publish_vintf_status(s),
        }
    }

    fn page0_write(&self, s: &mut State, q: usize, reg: usize, o: usize) {
        let v = self.win.r32(o);
        let cmdqv_on = s.enabled;
        let vintf_on =
            s.q.get(q)
                .and_then(QModel::mapped)
                .is_some_and(|(vv, _)| s.vintf.get(vv).is_some_and(|m| m.enabled));
        let Some(m) = s.q.get_mut(q) else { return };
        match reg {
            off::VCMDQ_CONS => m.cons = v & 0x7F0F_FFFF,
            off::VCMDQ_PROD => m.prod = v & 0xF_FFFF,
            off::VCMDQ_CONFIG => {
                m.config = v & 1;
                if m.never_ack {
                } else if v & 1 == 0 {
                    m.en_ok = false;
                } else if cmdqv_on && vintf_on {
                    m.en_ok = true;
                } else {
                    s.errors.push(ModelError::EnableRefused { queue: q });
                }
            }
            off::VCMDQ_GERRORN => {
                // The queue stays flagged while any of its GERROR bits is active.
                let was = (m.gerror ^ m.gerrorn) & 0x7 != 0;
                m.gerrorn = v & 0x7;
                if was && (m.gerror ^ m.gerrorn) & 0x7 == 0 {
                    self.clear_error_maps(s, q);
                }
            }
            _ => {}
        }
        self.consume(s, q);
        self.publish_q(s, q);
    }

    fn disable_q(&self, s: &mut State, q: usize) {
        if let Some(m) = s.q.get_mut(q) {
            m.en_ok = false;
        }
        self.publish_q(s, q);
    }

    fn clear_error_maps(&self, s: &mut State, q: usize) {
        s.cmdq_err_map &= !(1u128 << q);
        if let Some((v, l)) = s.q.get(q).and_then(QModel::mapped)
            && let Some(vm) = s.vintf.get_mut(v)
        {
            vm.err_map &= !(1u128 << l);
            if vm.err_map == 0 {
                s.vintf_err_map &= !(1u64 << v);
            }
        }
        self.publish_config(s);
        self.publish_vintf_status(s);
    }

    /// Consumes commands of queue `q` while it is enabled, error-free and PROD is ahead.
    fn consume(&self, s: &mut State, q: usize) {
        let Some((v, l)) = s.q.get(q).and_then(QModel::mapped) else {
            return;
        };
        let Some(vm) = s.vintf.get(v).cloned() else {
            return;
        };
        let sids = 1usize << s.p.sids_log2;
        let mut err: Option<u32> = None;
        {
            let Some(m) = s.q.get_mut(q) else { return };
            if !m.en_ok || m.error_active() {
                return;
            }
            let log2 = (m.base & 0x1F) as u32;
            let log2 = log2.min(19);
            let mask = (2u32 << log2) - 1;
            let addr = m.base & 0x0000_FFFF_FFFF_FFE0;
            loop {
                let cons = m.cons & mask;
                if cons == m.prod & mask {
                    break;
                }
                let idx = cons & ((1 << log2) - 1);
                let pa = PhysAddr(addr + 16 * u64::from(idx));
                let mut fault = None;
                if let Some((skip, f)) = m.inject
                    && skip == 0
                {
                    fault = Some(f);
                }
                let raw = match (self.bus.read_u64(pa), self.bus.read_u64(pa.add(8))) {
                    (Some(a), Some(b)) => Some([a, b]),
                    _ => None,
                };
                let code = match (fault, raw) {
                    (Some(VcmdqFault::Abort), _) | (_, None) => Some(2),
                    (Some(VcmdqFault::Illegal), _) => Some(1),
                    (Some(VcmdqFault::IllegalAccess), _) => Some(4),
                    (_, Some(raw)) => {
                        let mut e = CmdqEntry(raw);
                        let is_sync = e.opcode() == Opcode::Sync as u8;
                        if fault == Some(VcmdqFault::AtcInvSync) && is_sync {
                            Some(3)
                        } else if !vm.hyp_own() && !guest_filter(&mut e, &vm, sids) {
                            Some(4)
                        } else {
                            match Command::decode(e) {
                                Ok(c) => {
                                    m.log.push(c);
                                    m.consumed += 1;
                                    None
                                }
                                Err(_) => Some(1),
                            }
                        }
                    }
                };
                if let Some(code) = code {
                    if fault.is_some() {
                        m.inject = None;
                    }
                    m.cons = (cons & mask) | (code << 24);
                    err = Some(code);
                    break;
                }
                if let Some((skip, f)) = m.inject
                    && skip > 0
                {
                    m.inject = Some((skip - 1, f));
                }
                m.cons = (cons + 1) & mask;
            }
            if err.is_some() {
                m.gerror ^= 1;
            }
        }
        if err.is_some() {
            self.flag_error(s, q, Some((v, l)));
        }
    }

    /// Flags global queue `q` (logical queue `l` of VINTF `v` when mapped) in CMDQ_ERR_MAP,
    /// LVCMDQ_ERR_MAP and VINTF_ERR_MAP, and pulses the error interrupt unless masked.
    fn flag_error(&self, s: &mut State, q: usize, mapped: Option<(usize, usize)>) {
        s.cmdq_err_map |= 1u128 << q;
        if let Some((v, l)) = mapped {
            if let Some(vm) = s.vintf.get_mut(v) {
                vm.err_map |= 1u128 << l;
            }
            s.vintf_err_map |= 1u64 << v;
            if s.int_mask & (1u64 << v) == 0 {
                s.irqs += 1;
            }
        }
        self.publish_config(s);
        self.publish_vintf_status(s);
    }

    fn publish_config(&self, s: &State) {
        self.win.w32(off::CONFIG, s.config);
        self.win.w32(off::STATUS, u32::from(s.enabled));
        self.win.w32(off::VINTF_ERR_MAP_LO, s.vintf_err_map as u32);
        self.win
            .w32(off::VINTF_ERR_MAP_HI, (s.vintf_err_map >> 32) as u32);
        for m in 0..4 {
            self.win.w32(
                off::CMDQ_ERR_MAP + 4 * m,
                (s.cmdq_err_map >> (32 * m)) as u32,
            );
        }
    }

    fn publish_vintf_status(&self, s: &State) {
        for (v, m) in s.vintf.iter().enumerate() {
            let blk = off::VINTF + regs::VINTF_BLOCK_SIZE * v;
            let n = (0..128)
                .take_while(|&l| s.global_of(v, l).is_some())
                .count() as u32;
            let status = u32::from(m.enabled) | (u32::from(m.err_map != 0) << 1) | (n << 16);
            self.win.w32(blk + off::VINTF_STATUS, status);
            self.win.w64(blk + off::LVCMDQ_ERR_MAP, m.err_map as u64);
            self.win
                .w64(blk + off::LVCMDQ_ERR_MAP + 8, (m.err_map >> 64) as u64);
        }
    }

    /// Writes queue `q`'s registers into the global view and, when mapped, the logical one.
    fn publish_q(&self, s: &State, q: usize) {
        let Some(m) = s.q.get(q) else { return };
        let global = (
            regs::GLOBAL_PAGE0 + q * regs::VCMDQ_SLOT_SIZE,
            regs::GLOBAL_PAGE1 + q * regs::VCMDQ_SLOT_SIZE,
        );
        let logical = m
            .mapped()
            .filter(|&(v, _)| v < s.vintf.len())
            .map(|(v, l)| {
                (
                    regs::vintf_page0(v) + l * regs::VCMDQ_SLOT_SIZE,
                    regs::vintf_page1(v) + l * regs::VCMDQ_SLOT_SIZE,
                )
            });
        for (b, _) in std::iter::once(global).chain(logical) {
            self.win.w32(b + off::VCMDQ_CONS, m.cons);
            self.win.w32(b + off::VCMDQ_PROD, m.prod);
            self.win.w32(b + off::VCMDQ_CONFIG, m.config);
            self.win.w32(b + off::VCMDQ_STATUS, u32::from(m.en_ok));
            self.win.w32(b + off::VCMDQ_GERROR, m.gerror);
            self.win.w32(b + off::VCMDQ_GERRORN, m.gerrorn);
        }
        for (_, b) in std::iter::once(global).chain(logical) {
            self.win.w64(b + off::VCMDQ_BASE, m.base);
            self.win
                .w64(b + off::VCMDQ_CONS_INDX_BASE, m.cons_indx_base);
        }
    }

    fn clear_logical(&self, v: usize, l: usize) {
        let p0 = regs::vintf_page0(v) + l * regs::VCMDQ_SLOT_SIZE;
        let p1 = regs::vintf_page1(v) + l * regs::VCMDQ_SLOT_SIZE;
        for r in (0..0x18).step_by(4) {
            self.win.w32(p0 + r, 0);
        }
        self.win.w64(p1, 0);
        self.win.w64(p1 + 8, 0);
    }
}

impl State {
    fn global_of(&self, v: usize, l: usize) -> Option<usize> {
        self.q.iter().position(|m| m.mapped() == Some((v, l)))
    }

    fn mapped_above(&self, v: usize, l: usize) -> bool {
        self.q
            .iter()
            .any(|m| m.mapped().is_some_and(|(vv, ll)| vv == v && ll > l))
    }

    fn decode(&mut self, o: usize) -> Loc {
        let nv = self.vintf.len();
        if o < regs::PAGE_SIZE {
            let vb = off::VINTF;
            if (vb..vb + regs::VINTF_BLOCK_SIZE * nv).contains(&o) {
                return Loc::Vintf(
                    (o - vb) / regs::VINTF_BLOCK_SIZE,
                    (o - vb) % regs::VINTF_BLOCK_SIZE,
                );
            }
            return Loc::Config(o);
        }
        let slot = |x: usize| (x / regs::VCMDQ_SLOT_SIZE, x % regs::VCMDQ_SLOT_SIZE);
        let nq = self.q.len();
        if o < regs::GLOBAL_PAGE1 {
            let (q, reg) = slot(o - regs::GLOBAL_PAGE0);
            return if q < nq {
                Loc::Page0 { q, reg }
            } else {
                Loc::Unmapped(o)
            };
        }
        if o < regs::VINTF_PAGE0_BASE {
            let (q, reg) = slot(o - regs::GLOBAL_PAGE1);
            return if q < nq {
                Loc::Page1 { q, reg }
            } else {
                Loc::Unmapped(o)
            };
        }
        let rel = o - regs::VINTF_PAGE0_BASE;
        let v = rel / regs::VINTF_PAGE_STRIDE;
        let within = rel % regs::VINTF_PAGE_STRIDE;
        let page1 = within >= regs::PAGE_SIZE;
        let (l, reg) = slot(within % regs::PAGE_SIZE);
        if v >= nv || l >= 128 {
            return Loc::Unmapped(o);
        }
        match self.global_of(v, l) {
            Some(q) if page1 => Loc::Page1 { q, reg },
            Some(q) => Loc::Page0 { q, reg },
            None => {
                self.errors.push(ModelError::UnmappedLogicalAccess {
                    vintf: v,
                    lvcmdq: l,
                });
                Loc::UnmappedLogical
            }
        }
    }
}

/// The guest command filter of a non-HYP_OWN VINTF: `true` (with VMID/SID substituted in `e`)
/// when the command may run.
fn guest_filter(e: &mut CmdqEntry, vm: &VintfModel, sids: usize) -> bool {
    match e.opcode() {
        x if x == Opcode::TlbiNhAsid as u8 || x == Opcode::TlbiNhVa as u8 => {
            e.set_vmid(Vmid(vm.vmid()));
            true
        }
        x if x == Opcode::AtcInv as u8 => {
            let vsid = e.sid().0;
            let hit = (0..sids.min(regs::MAX_SID_SLOTS)).find(|&s| {
                vm.sid_match
                    .get(s)
                    .is_some_and(|&m| m & 1 != 0 && (m >> 1) & 0xF_FFFF == vsid)
            });
            match hit.and_then(|s| vm.sid_replace.get(s)) {
                Some(&p) => {
                    e.set_sid(StreamId(p));
                    true
                }
                None => false,
            }
        }
        x if x == Opcode::Sync as u8 => true,
        _ => false,
    }
}

fn reg_of(loc: Loc) -> CmdqvReg {
    match loc {
        Loc::Config(o) => match o {
            off::CONFIG => CmdqvReg::Config,
            off::PARAM => CmdqvReg::Param,
            off::STATUS => CmdqvReg::Status,
            off::VINTF_ERR_MAP_LO | off::VINTF_ERR_MAP_HI => CmdqvReg::VintfErrMap,
            off::VINTF_INT_MASK_LO | off::VINTF_INT_MASK_HI => CmdqvReg::VintfIntMask,
            o if (off::CMDQ_ERR_MAP..off::CMDQ_ERR_MAP + 16).contains(&o) => CmdqvReg::CmdqErrMap,
            o if (off::CMDQ_ALLOC..off::CMDQ_ALLOC + 0x200).contains(&o) => CmdqvReg::CmdqAlloc,
            _ => CmdqvReg::Other,
        },
        Loc::Vintf(_, r) => match r {
            off::VINTF_CONFIG => CmdqvReg::VintfConfig,
            off::VINTF_STATUS => CmdqvReg::VintfStatus,
            r if (off::SID_MATCH..off::SID_REPLACE).contains(&r) => CmdqvReg::SidMatch,
            r if (off::SID_REPLACE..off::LVCMDQ_ERR_MAP).contains(&r) => CmdqvReg::SidReplace,
            r if (off::LVCMDQ_ERR_MAP..off::LVCMDQ_ERR_MAP + 16).contains(&r) => {
                CmdqvReg::LvcmdqErrMap
            }
            _ => CmdqvReg::Other,
        },
        Loc::Page0 { reg, .. } => match reg {
            off::VCMDQ_CONS => CmdqvReg::Cons,
            off::VCMDQ_PROD => CmdqvReg::Prod,
            off::VCMDQ_CONFIG => CmdqvReg::VcmdqConfig,
            off::VCMDQ_STATUS => CmdqvReg::VcmdqStatus,
            off::VCMDQ_GERROR => CmdqvReg::Gerror,
            off::VCMDQ_GERRORN => CmdqvReg::Gerrorn,
            _ => CmdqvReg::Other,
        },
        Loc::Page1 { reg, .. } => match reg {
            0..8 => CmdqvReg::Base,
            8..16 => CmdqvReg::ConsIndxBase,
            _ => CmdqvReg::Other,
        },
        Loc::Unmapped(_) | Loc::UnmappedLogical => CmdqvReg::Other,
    }
}

impl MmioDevice for CmdqvModel {
    fn contains(&self, addr: usize) -> bool {
        CmdqvModel::contains(self, addr)
    }

    fn access(&self, addr: usize, write: bool) {
        CmdqvModel::access(self, addr, write);
    }
}

/// The SMMU model's DMA arena as the CMDQV sees it (weak: the SMMU model owns the CMDQV model).
struct SmmuBus(Weak<SmmuModel>);

impl PhysBus for SmmuBus {
    fn read_u64(&self, pa: PhysAddr) -> Option<u64> {
        self.0.upgrade()?.dma().read_u64(pa)
    }
}

// ---- standalone support: a DMA arena and a platform ----

/// A DMA arena for standalone CMDQV tests: zeroed, aligned to its size, seen at physical address
/// [`CmdqvArena::PA_BASE`]; a bump allocator implementing [`DmaMemory`] and the model's
/// [`PhysBus`].
pub struct CmdqvArena {
    mem: HostMem,
    next: Mutex<usize>,
}

// SAFETY: the arena is owned by `CmdqvArena`; reads go through bounds-checked volatile loads and
// the allocator state is behind a mutex.
unsafe impl Send for CmdqvArena {}
// SAFETY: see `Send`.
unsafe impl Sync for CmdqvArena {}

impl CmdqvArena {
    /// The physical address of the first byte.
    pub const PA_BASE: u64 = 0x8000_0000;
    /// The arena size: 4 MiB.
    pub const SIZE: usize = 4 << 20;

    /// The host address of `len` bytes at `pa`, or `None` outside the arena.
    pub fn host_ptr(&self, pa: PhysAddr, len: usize) -> Option<NonNull<u8>> {
        let o = pa.0.checked_sub(Self::PA_BASE)?;
        let end = o.checked_add(len as u64)?;
        if end > Self::SIZE as u64 {
            return None;
        }
        // SAFETY: `o + len <= SIZE`, inside the allocation.
        Some(unsafe { self.mem.base.add(o as usize) })
    }

    /// Writes the 16-byte command `e` at `pa` (a guest filling its own queue).
    pub fn write_entry(&self, pa: PhysAddr, e: CmdqEntry) {
        let p = self
            .host_ptr(pa, 16)
            .expect("CmdqvArena: entry outside the arena");
        let p = p.cast::<u64>();
        assert!(pa.0.is_multiple_of(16), "CmdqvArena: misaligned entry");
        // SAFETY: 16 bytes inside the arena (checked), 16-byte aligned (checked; the arena base
        // is aligned to its size).
        unsafe {
            p.write_volatile(e.0[0].to_le());
            p.add(1).write_volatile(e.0[1].to_le());
        }
    }
}

impl Default for CmdqvArena {
    fn default() -> Self {
        Self {
            mem: HostMem::new(Self::SIZE, Self::SIZE),
            next: Mutex::new(0),
        }
    }
}

impl PhysBus for CmdqvArena {
    fn read_u64(&self, pa: PhysAddr) -> Option<u64> {
        if !pa.0.is_multiple_of(8) {
            return None;
        }
        let p = self.host_ptr(pa, 8)?.cast::<u64>();
        // SAFETY: in bounds (checked) and 8-byte aligned (arena and `pa` aligned).
        Some(u64::from_le(unsafe { p.read_volatile() }))
    }
}

// SAFETY: buffers are disjoint, zeroed sub-ranges of an arena owned by `self` and never handed
// out twice; the host base is aligned to the arena size and so is `PA_BASE`, so an offset aligned
// to `align` is aligned at both addresses.
unsafe impl DmaMemory for CmdqvArena {
    fn alloc(&self, size: usize, align: usize) -> Option<DmaBuf> {
        if !align.is_power_of_two() || align > Self::SIZE {
            return None;
        }
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let start = next.checked_add(align - 1)? & !(align - 1);
        let end = start.checked_add(size.max(1))?;
        if end > Self::SIZE {
            return None;
        }
        *next = end;
        // SAFETY: `start < SIZE`, inside the arena.
        let vaddr = unsafe { self.mem.base.add(start) };
        Some(DmaBuf {
            vaddr,
            paddr: PhysAddr(Self::PA_BASE + start as u64),
            size,
        })
    }
}

/// A [`Platform`] running only a [`CmdqvModel`]: virtual clock (1 µs per `relax`), MMIO hook
/// forwarding to the model.
#[derive(Clone, Debug)]
pub struct StandalonePlatform {
    cmdqv: Arc<CmdqvModel>,
    clock: Arc<AtomicU64>,
}

impl StandalonePlatform {
    /// A platform for `cmdqv`.
    pub fn new(cmdqv: Arc<CmdqvModel>) -> Self {
        Self {
            cmdqv,
            clock: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The model.
    pub fn cmdqv(&self) -> &Arc<CmdqvModel> {
        &self.cmdqv
    }
}

impl Platform for StandalonePlatform {
    fn now_us(&self) -> u64 {
        self.clock.load(Ordering::Relaxed)
    }

    fn relax(&self, _what: WaitFor) {
        self.clock.fetch_add(1, Ordering::Relaxed);
    }

    fn mmio(&self, addr: usize, access: MmioAccess) {
        self.cmdqv.access(addr, access == MmioAccess::Write);
    }
}

/// A stand-in for the SMMU's own command queue: records what it is asked to issue (each call
/// ends with a CMD_SYNC) and can be told to fail.
#[derive(Debug, Default)]
pub struct RecordingCommandSink {
    log: Mutex<Vec<Vec<Command>>>,
    fail: Mutex<Option<Error>>,
}

impl RecordingCommandSink {
    /// The batches issued so far (without their trailing CMD_SYNC), oldest first.
    pub fn batches(&self) -> Vec<Vec<Command>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Makes every later batch fail with `err` (`None`: succeed again).
    pub fn fail_with(&self, err: Option<Error>) {
        *self.fail.lock().unwrap_or_else(|e| e.into_inner()) = err;
    }
}

impl crate::smmu::CommandSink for RecordingCommandSink {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        if let Some(e) = *self.fail.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(e);
        }
        self.log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(cmds.to_vec());
        Ok(())
    }
}
