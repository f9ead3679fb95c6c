//! NVIDIA Tegra241 CMDQV: VINTFs and VCMDQs beside the SMMUv3 (feature `cmdqv`).
//!
//! CMDQV adds many SMMU command queues (VCMDQs) with the SMMU CMDQ's 16-byte command format and
//! PROD/CONS protocol, grouped into virtual interfaces (VINTFs). [`Cmdqv`] drives it as Linux's
//! `drivers/iommu/arm/arm-smmu-v3/tegra241-cmdqv.c` does (there is no public NVIDIA
//! specification; its register and function names are cited here):
//!
//! * VINTF0 belongs to the hypervisor (HYP_OWN) and holds one logical queue per slot; host
//!   invalidations go to the queue chosen by CPU index ([`Cmdqv::submit`]), so CPUs do not
//!   contend on one queue. Commands a queue does not take go to the SMMU's own queue, reached
//!   through [`CommandSink`].
//! * VINTFs 1.. are handed to VMs as the iommufd `TEGRA241_CMDQV` vIOMMU: [`Cmdqv::vintf_alloc`],
//!   [`Cmdqv::vdevice_bind`], [`Cmdqv::hw_queue_alloc`] with Linux's rules and errno values.
//! * The error interrupt ([`Cmdqv::handle_error`]) recovers host queues and turns guest queue
//!   errors into `TEGRA241_CMDQV` vEVENT payloads through a [`CmdqvEventSink`].
//!
//! Order of use: [`Cmdqv::new`] at probe (before or after the SMMU probe), [`Cmdqv::reset`] after
//! the SMMU's CR0.SMMUEN is set, [`Cmdqv::shutdown`] before CR0 is cleared.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod guest;
mod host;
mod irq;
pub mod regs;

use core::fmt;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, Ordering};

use tock_registers::LocalRegisterCopy;
use tock_registers::interfaces::{Readable, Writeable};

use crate::error::{Error, Feature, Object, Quantity, WaitFor};
use crate::ids::{PhysAddr, Vmid};
use crate::platform::{DmaMemory, MmioAccess, Platform};
use crate::queue;
use crate::regs::bits::get32;
use crate::smmu::cmdq::Cmdq;
use crate::smmu::{CmdqOptions, CommandSink, Completion, Quirks};

pub use guest::{GuestVintf, SidSlot, VintfPage};
pub use host::{VcmdqSink, guest_queue_accepts};
pub use irq::{CmdqvErrorStats, CmdqvEventSink};
use regs::{
    CMDQ_ALLOC, CONFIG, ConfigPage, PARAM, STATUS, VCMDQ_BASE, VCMDQ_CONFIG, VCMDQ_STATUS,
    VINTF_CONFIG, VINTF_STATUS, VcmdqBase, VcmdqCtrl, VcmdqPage0, VcmdqPage1, VintfRegs,
};

/// Linux's poll timeout for every enable handshake and CMD_SYNC (`ARM_SMMU_POLL_TIMEOUT_US`).
pub const DEFAULT_TIMEOUT_US: u64 = 1_000_000;

/// Which SoC the CMDQV belongs to: the caller's board description, since neither the SMMU ID
/// registers nor PARAM tell them apart (Linux selects its Tegra264 behaviour from the firmware
/// description too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Board {
    /// Tegra241 (Grace), discovered through ACPI `NVDA200C`.
    #[default]
    Tegra241,
    /// Tegra264 (Thor), discovered through DT `nvidia,tegra264-cmdqv`: its SMMU needs every
    /// CFGI/TLBI…CMD_SYNC sequence issued twice (never ATC_INV).
    Tegra264,
}

impl Board {
    /// Whether CFGI/TLBI commands must be repeated after their CMD_SYNC completed (Tegra264
    /// erratum; `IOMMU_HW_INFO_ARM_SMMUV3_ERRATA_REPEAT_TLBI_CFGI`).
    pub const fn repeats_tlbi_cfgi(self) -> bool {
        matches!(self, Board::Tegra264)
    }

    /// The SMMU driver quirks this board needs: the repeat applies to every queue, the SMMU's
    /// own included, so the hypervisor puts these in the SMMU's [`Config`](crate::smmu::Config)
    /// too.
    pub const fn smmu_quirks(self) -> Quirks {
        if self.repeats_tlbi_cfgi() {
            Quirks::REPEAT_CFGI_TLBI
        } else {
            Quirks::empty()
        }
    }
}

/// How the hypervisor wants CMDQV driven, and what only it knows (window address and size).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CmdqvConfig {
    /// Physical address of the window (ACPI `NVDA200C` memory resource 0, or DT `reg`): the
    /// guest-mappable VINTF pages are reported relative to it.
    pub phys_base: PhysAddr,
    /// Size of the window in bytes (`0x30000 + 0x20000 × VINTFs`); VINTFs beyond it are unused.
    pub window_size: usize,
    /// The SoC, for the Tegra264 erratum.
    pub board: Board,
    /// SMMU_IDR1.CMDQS: the largest queue LOG2SIZE, for host queues and guest HW queues.
    pub cmdq_log2_max: u8,
    /// LOG2SIZE of each host VCMDQ (at most `cmdq_log2_max`, at least 1).
    pub host_queue_log2: u8,
    /// The SMMU is coherent (IDR0.COHACC): queue writes need no cache maintenance.
    pub coherent: bool,
    /// Bound of every poll, in microseconds.
    pub timeout_us: u64,
    /// Keep CMDQV enabled but send every host command to the SMMU's own queue (Linux
    /// `bypass_vcmdq`).
    pub bypass_vcmdq: bool,
}

impl CmdqvConfig {
    /// A configuration with Linux's defaults: Tegra241, host queues as deep as the SMMU CMDQ
    /// allows (capped at 2^12 entries, 64 KiB), coherent, 1 s timeouts, VCMDQs in use.
    pub const fn new(phys_base: PhysAddr, window_size: usize, cmdq_log2_max: u8) -> Self {
        let log2 = if cmdq_log2_max < 12 {
            cmdq_log2_max
        } else {
            12
        };
        Self {
            phys_base,
            window_size,
            board: Board::Tegra241,
            cmdq_log2_max,
            host_queue_log2: log2,
            coherent: true,
            timeout_us: DEFAULT_TIMEOUT_US,
            bypass_vcmdq: false,
        }
    }
}

/// CMDQV_PARAM decoded (Linux's `tegra241_cmdqv_init_structures`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Param {
    /// CMDQV_VER, bits \[3:0\].
    pub version: u8,
    /// NUM_VCMDQ_LOG2, bits \[7:4\].
    pub vcmdqs_log2: u8,
    /// NUM_VINTF_LOG2, bits \[11:8\].
    pub vintfs_log2: u8,
    /// NUM_SID_PER_VM_LOG2, bits \[15:12\].
    pub sids_log2: u8,
    /// The raw register.
    pub raw: u32,
}

impl Param {
    /// Decodes a raw CMDQV_PARAM value.
    pub const fn decode(raw: u32) -> Self {
        // Each field is 4 bits wide, so the narrowing keeps every value.
        Self {
            version: get32(PARAM::CMDQV_VER, raw) as u8,
            vcmdqs_log2: get32(PARAM::NUM_VCMDQ_LOG2, raw) as u8,
            vintfs_log2: get32(PARAM::NUM_VINTF_LOG2, raw) as u8,
            sids_log2: get32(PARAM::NUM_SID_PER_VM_LOG2, raw) as u8,
            raw,
        }
    }

    /// `1 << NUM_VINTF_LOG2`.
    pub const fn num_vintfs(self) -> u32 {
        1 << self.vintfs_log2
    }

    /// `1 << NUM_VCMDQ_LOG2`.
    pub const fn num_vcmdqs(self) -> u32 {
        1 << self.vcmdqs_log2
    }

    /// Logical queues per VINTF: the global queues are partitioned statically,
    /// `num_vcmdqs / num_vintfs` each (0 when there are more VINTFs than queues).
    pub const fn lvcmdqs_per_vintf(self) -> u32 {
        self.num_vcmdqs() / self.num_vintfs()
    }

    /// `1 << NUM_SID_PER_VM_LOG2`.
    pub const fn sids_per_vintf(self) -> u32 {
        1 << self.sids_log2
    }
}

/// A CPU number, used to pick the host VCMDQ (`cpu % queues`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CpuIndex(pub u32);

/// A VINTF index (0 is the host's; guests get 1 and up).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VintfId(pub u8);

impl fmt::Display for VintfId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "VINTF{}", self.0)
    }
}

/// Per-VINTF bookkeeping of a guest-owned VINTF (index ≥ 1).
struct GuestSlot {
    /// Allocated to a vIOMMU (read by the interrupt handler without the lock).
    in_use: AtomicBool,
    state: spin::Mutex<guest::GuestState>,
}

/// The Tegra241 CMDQV driver for one CMDQV window.
///
/// Shared `&self` methods are safe to call from several CPUs: each host queue and each guest
/// VINTF has its own lock, and [`handle_error`](Self::handle_error) takes none.
pub struct Cmdqv<P: Platform, D: DmaMemory> {
    /// The window, from its config page on (`cfg.window_size` bytes).
    base: NonNull<ConfigPage>,
    cfg: CmdqvConfig,
    platform: P,
    /// The allocator of the host rings, held so that they stay valid ([`DmaMemory`]: as long as
    /// the allocator lives). Dropped after [`Drop`] has disabled CMDQV.
    dma: D,
    param: Param,
    /// VINTFs usable: PARAM's count, capped by the window and [`regs::MAX_VINTFS`].
    num_vintfs: usize,
    per_vintf: usize,
    sid_slots: usize,
    /// The engines of VINTF0's logical queues (the SMMU driver's command-queue engine).
    host: heapless::Vec<Cmdq, { regs::MAX_VCMDQS }>,
    /// VINTF0 and its queues are enabled (published last by `reset`, Release).
    ready: AtomicBool,
    /// HYP_OWN as read back from VINTF0 (0 when the window is reached from a guest).
    hyp_own: AtomicBool,
    guests: [GuestSlot; regs::MAX_VINTFS],
}

// SAFETY: the window and the host rings are owned by this value (contract of `Cmdqv::new`);
// register accesses are volatile MMIO, and all software state is behind locks or atomics.
unsafe impl<P: Platform + Send, D: DmaMemory + Send> Send for Cmdqv<P, D> {}
// SAFETY: as for `Send`; `&self` methods synchronise through per-queue locks and atomics.
unsafe impl<P: Platform + Sync, D: DmaMemory + Sync> Sync for Cmdqv<P, D> {}

impl<P: Platform, D: DmaMemory> fmt::Debug for Cmdqv<P, D> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cmdqv")
            .field("param", &self.param)
            .field("num_vintfs", &self.num_vintfs)
            .field("lvcmdqs_per_vintf", &self.per_vintf)
            .field("ready", &self.ready.load(Ordering::Relaxed))
            .finish()
    }
}

impl<P: Platform, D: DmaMemory> Cmdqv<P, D> {
    /// Takes over the CMDQV whose MMIO window starts at `window`, reads PARAM and allocates one
    /// ring per host queue from `dma`. Touches no other register: call [`reset`](Self::reset)
    /// after the SMMU is enabled.
    ///
    /// `window` is typed as the window's first 64 KiB page, its [`ConfigPage`]; the VCMDQ and
    /// VINTF pages follow it at their fixed offsets ([`regs::vintf_page0`], ...) up to
    /// `cfg.window_size` bytes.
    ///
    /// The driver keeps `dma` for as long as it lives, as [`Smmu::new`](crate::smmu::Smmu::new)
    /// does: pass an allocator by value to give it to the driver, or a reference to share one
    /// (`&A` is a [`DmaMemory`] too), e.g. the allocator the SMMU driver uses; the borrow then
    /// keeps it alive as long as the driver.
    ///
    /// # Safety
    /// The hypervisor found the window in ACPI (`_HID` `NVDA200C`, memory resource 0, matched to
    /// the IORT SMMUv3 node) or in the device tree (`nvidia,tegra264-cmdqv`, `reg`):
    /// `cfg.window_size` bytes at `window` are mapped Device-nGnRE for the life of the returned
    /// value, belong to that CMDQV, and nothing else (no other `Cmdqv`, no code outside this
    /// crate) accesses them while it lives, except guests through the VINTF page 0 this driver
    /// hands out. The SMMU this CMDQV belongs to is the one that reaches `dma`'s buffers at
    /// their `paddr`.
    ///
    /// # Errors
    /// [`Error::Unsupported`]`(`[`Feature::Cmdqv`]`)` when PARAM or the window describe no usable
    /// VINTF0 queue; [`Error::OutOfRange`] or [`Error::TooSmall`] ([`Quantity::QueueLog2`]) for
    /// a host queue size the SMMU does not allow (above IDR1.CMDQS or 19, or 0);
    /// [`Error::NoMemory`] when `dma` cannot hold the rings.
    pub unsafe fn new(
        window: NonNull<ConfigPage>,
        platform: P,
        dma: D,
        cfg: CmdqvConfig,
    ) -> Result<Self, Error> {
        let mut this = Self {
            base: window,
            cfg,
            platform,
            dma,
            param: Param::decode(0),
            num_vintfs: 0,
            per_vintf: 0,
            sid_slots: 0,
            host: heapless::Vec::new(),
            ready: AtomicBool::new(false),
            hyp_own: AtomicBool::new(false),
            guests: core::array::from_fn(|_| GuestSlot {
                in_use: AtomicBool::new(false),
                state: spin::Mutex::new(guest::GuestState::EMPTY),
            }),
        };
        if cfg.window_size < regs::window_size(1) {
            return Err(Error::Unsupported(Feature::Cmdqv));
        }
        let param = Param::decode(this.read(&this.config_page().PARAM));
        let window_vintfs = (cfg.window_size - regs::VINTF_PAGE0_BASE) / regs::VINTF_PAGE_STRIDE;
        let num_vintfs = (param.num_vintfs() as usize)
            .min(window_vintfs)
            .min(regs::MAX_VINTFS);
        let per_vintf = param.lvcmdqs_per_vintf() as usize;
        if param.vcmdqs_log2 > 7 || per_vintf == 0 {
            log_error!("cmdqv: unusable PARAM {=u32:#x}", param.raw);
            return Err(Error::Unsupported(Feature::Cmdqv));
        }
        let log2 = queue::check_log2(cfg.host_queue_log2, cfg.cmdq_log2_max)?;
        if log2 == 0 {
            return Err(Error::TooSmall {
                what: Quantity::QueueLog2,
                value: 0,
                min: 1,
            });
        }
        let bytes = queue::queue_bytes(log2, queue::CMDQ_ENTRY_BYTES);
        let opts = CmdqOptions {
            // VCMDQs complete CMD_SYNC by CONS polling only: no MSI, no SEV (§7.5).
            completion: Completion::Poll,
            timeout_us: cfg.timeout_us,
            coherent: cfg.coherent,
            repeat_cfgi_tlbi: cfg.board.repeats_tlbi_cfgi(),
        };
        for _ in 0..per_vintf {
            let ring = this.dma.alloc(bytes, bytes).ok_or(Error::NoMemory)?;
            // SAFETY: `ring` was just handed out by `dma` (`DmaMemory`: unaliased, seen by the
            // SMMU at its `paddr`, valid as long as `dma` lives), and `self` keeps `dma` for its
            // own life; only this engine uses it.
            let q = unsafe { Cmdq::new(ring, log2, opts) }?;
            if this.host.push(q).is_err() {
                return Err(Error::Unsupported(Feature::Cmdqv));
            }
        }
        this.param = param;
        this.num_vintfs = num_vintfs;
        this.per_vintf = per_vintf;
        this.sid_slots = (param.sids_per_vintf() as usize).min(regs::MAX_SID_SLOTS);
        log_info!(
            "cmdqv: version {=u8}, {=u32} VCMDQs, {=usize} VINTFs, {=usize} per VINTF",
            param.version,
            param.num_vcmdqs(),
            num_vintfs,
            per_vintf
        );
        Ok(this)
    }

    /// CMDQV_PARAM as read at probe.
    pub fn param(&self) -> Param {
        self.param
    }

    /// VINTFs in use (PARAM's count capped by the window).
    pub fn num_vintfs(&self) -> usize {
        self.num_vintfs
    }

    /// Logical queues per VINTF (host queues of VINTF0, HW queues of a guest VINTF).
    pub fn lvcmdqs_per_vintf(&self) -> usize {
        self.per_vintf
    }

    /// SID_MATCH/SID_REPLACE pairs per VINTF.
    pub fn sid_slots(&self) -> usize {
        self.sid_slots
    }

    /// The configuration given at probe.
    pub fn config(&self) -> &CmdqvConfig {
        &self.cfg
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// Whether VINTF0 and its queues are enabled (after a successful [`reset`](Self::reset)).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether VINTF0 is hypervisor-owned (HYP_OWN read back as 1); when not, host queues only
    /// take the guest command subset.
    pub fn hyp_own(&self) -> bool {
        self.hyp_own.load(Ordering::Relaxed)
    }

    /// Resets CMDQV (Linux's `tegra241_cmdqv_hw_reset`): disables and re-enables it, writes every
    /// CMDQ_ALLOC with its static (VINTF, LVCMDQ) and ALLOCATED clear, and initialises VINTF0
    /// with HYP_OWN and all its logical queues (mapped in ascending order, then enabled). Run it
    /// after the SMMU's CR0.SMMUEN is set.
    ///
    /// # Errors
    /// [`Error::InUse`] naming the first guest VINTF while any exists; [`Error::Timeout`] when an
    /// enable handshake does
    /// not complete; what `main` returns for the CMD_SYNC of a queue teardown.
    pub fn reset<M: CommandSink + ?Sized>(&mut self, main: &M) -> Result<(), Error> {
        if let Some(v) = self
            .guests
            .iter()
            .position(|g| g.in_use.load(Ordering::Acquire))
        {
            return Err(Error::InUse(Object::Vintf(v as u8)));
        }
        if self.ready.swap(false, Ordering::AcqRel) {
            self.vintf_deinit(0, self.per_vintf, main)?;
        }
        let page = self.config_page();
        let cfg = LocalRegisterCopy::<u32, CONFIG::Register>::new(self.read(&page.CONFIG));
        self.write(&page.CONFIG, cfg.get() & !CONFIG::CMDQV_EN::SET.value);
        self.poll(WaitFor::CmdqvEnable, || {
            !self.read_status_flag(&page.STATUS, STATUS::CMDQV_ENABLED)
        })?;
        self.write(&page.CONFIG, cfg.get() | CONFIG::CMDQV_EN::SET.value);
        self.poll(WaitFor::CmdqvEnable, || {
            self.read_status_flag(&page.STATUS, STATUS::CMDQV_ENABLED)
        })?;
        for v in 0..self.num_vintfs {
            for l in 0..self.per_vintf {
                if let Some(r) = page.CMDQ_ALLOC.get(v * self.per_vintf + l) {
                    self.write(r, alloc_value(v, l, false));
                }
            }
        }
        self.vintf_init(0, true, Vmid(0))?;
        let hyp_own = self
            .vintf_regs(0)
            .is_ok_and(|r| self.read(&r.CONFIG) & VINTF_CONFIG::HYP_OWN::SET.value != 0);
        self.hyp_own.store(hyp_own, Ordering::Relaxed);
        for l in 0..self.per_vintf {
            self.map(0, l, true);
            self.host_queue_init(l, main)?;
        }
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// De-initialises every VINTF (queues disabled and unmapped in descending order, VINTF
    /// disabled, SID pairs cleared), as Linux does before clearing the SMMU's CR0. Guest VINTFs
    /// are released; their handles become stale.
    ///
    /// # Errors
    /// [`Error::Timeout`] when a disable handshake does not complete; what `main` returns.
    pub fn shutdown<M: CommandSink + ?Sized>(&mut self, main: &M) -> Result<(), Error> {
        for v in 1..self.num_vintfs {
            let Some(g) = self.guests.get(v) else { break };
            if g.in_use.load(Ordering::Acquire) {
                let queues = g.state.lock().queues;
                self.vintf_deinit_mask(v, queues, main)?;
                *g.state.lock() = guest::GuestState::EMPTY;
                g.in_use.store(false, Ordering::Release);
            }
        }
        if self.ready.swap(false, Ordering::AcqRel) {
            self.vintf_deinit(0, self.per_vintf, main)?;
        }
        Ok(())
    }

    // ---- VINTF and VCMDQ sequences (Linux's `tegra241_vintf_hw_init`, `tegra241_vcmdq_hw_init`) ----

    /// VINTF init with no logical queues: deinit, CONFIG = HYP_OWN | VMID, then | ENABLE, poll.
    fn vintf_init(&self, v: usize, hyp_own: bool, vmid: Vmid) -> Result<(), Error> {
        let r = self.vintf_regs(v)?;
        self.vintf_disable(r)?;
        let mut val = VINTF_CONFIG::VMID.val(u32::from(vmid.0)).value;
        if hyp_own {
            val |= VINTF_CONFIG::HYP_OWN::SET.value;
        }
        self.write(&r.CONFIG, val);
        self.write(&r.CONFIG, val | VINTF_CONFIG::ENABLE::SET.value);
        self.poll(WaitFor::VintfEnable, || {
            self.read_status_flag(&r.STATUS, VINTF_STATUS::ENABLED)
        })
    }

    /// VINTF deinit of a VINTF whose logical queues `0..n` exist.
    fn vintf_deinit<M: CommandSink + ?Sized>(
        &self,
        v: usize,
        n: usize,
        main: &M,
    ) -> Result<(), Error> {
        let mask = if n >= 128 {
            u128::MAX
        } else {
            (1u128 << n) - 1
        };
        self.vintf_deinit_mask(v, mask, main)
    }

    /// VINTF deinit: queues in `mask` torn down and unmapped from the highest index down, then
    /// CONFIG = 0 (polled) and every SID pair cleared.
    fn vintf_deinit_mask<M: CommandSink + ?Sized>(
        &self,
        v: usize,
        mask: u128,
        main: &M,
    ) -> Result<(), Error> {
        for l in (0..self.per_vintf.min(128)).rev() {
            if mask & (1u128 << l) != 0 {
                self.vcmdq_deinit(v, l, main)?;
                self.map(v, l, false);
            }
        }
        let r = self.vintf_regs(v)?;
        self.vintf_disable(r)?;
        for s in 0..self.sid_slots {
            if let (Some(m), Some(p)) = (r.SID_MATCH.get(s), r.SID_REPLACE.get(s)) {
                self.write(m, 0);
                self.write(p, 0);
            }
        }
        Ok(())
    }

    fn vintf_disable(&self, r: &VintfRegs) -> Result<(), Error> {
        self.write(&r.CONFIG, 0);
        self.poll(WaitFor::VintfEnable, || {
            !self.read_status_flag(&r.STATUS, VINTF_STATUS::ENABLED)
        })
    }

    /// CMDQ_ALLOC of the global queue behind (v, l): ALLOCATED set or clear.
    fn map(&self, v: usize, l: usize, on: bool) {
        if let Some(r) = self.config_page().CMDQ_ALLOC.get(v * self.per_vintf + l) {
            self.write(r, alloc_value(v, l, on));
        }
    }

    /// VCMDQ deinit (Linux's `tegra241_vcmdq_hw_deinit`): CONFIG = 0 (polled), a CMD_SYNC on the SMMU's queue,
    /// PROD/CONS/BASE/CONS_INDX_BASE = 0, a stale error acknowledged.
    fn vcmdq_deinit<M: CommandSink + ?Sized>(
        &self,
        v: usize,
        l: usize,
        main: &M,
    ) -> Result<(), Error> {
        let (q, b) = self.lvcmdq(v, l)?;
        self.write(&q.CONFIG, 0);
        let disabled = self.poll(WaitFor::VcmdqEnable, || {
            !self.read_status_flag(&q.STATUS, VCMDQ_STATUS::CMDQ_EN_OK)
        });
        if let Err(e) = disabled {
            log_error!(
                "cmdqv: VINTF{=usize} LVCMDQ{=usize} did not disable: GERROR {=u32:#x} GERRORN {=u32:#x} CONS {=u32:#x}",
                v,
                l,
                self.read(&q.GERROR),
                self.read(&q.GERRORN),
                self.read(&q.CONS)
            );
            return Err(e);
        }
        // A guest queue ending in a timed-out ATC_INV without a CMD_SYNC would otherwise report
        // the timeout to the next user of this queue.
        main.submit(&[])?;
        self.write(&q.PROD, 0);
        self.write(&q.CONS, 0);
        self.write(&b.BASE, 0);
        self.write(&b.CONS_INDX_BASE, 0);
        let gerror = self.read(&q.GERROR);
        if gerror != self.read(&q.GERRORN) {
            self.write(&q.GERRORN, gerror);
        }
        Ok(())
    }

    /// Host queue init: deinit, BASE, CONFIG = EN (polled); software indices back to 0.
    fn host_queue_init<M: CommandSink + ?Sized>(&self, l: usize, main: &M) -> Result<(), Error> {
        let hq = self
            .host
            .get(l)
            .ok_or_else(|| index_out_of_range(l, self.host.len()))?;
        self.vcmdq_deinit(0, l, main)?;
        let (q, b) = self.lvcmdq(0, l)?;
        hq.reset_indices();
        self.write(&b.BASE, base_value(hq.buf().paddr, hq.log2_entries()));
        self.write(&q.CONFIG, VCMDQ_CONFIG::CMDQ_EN::SET.value);
        self.poll(WaitFor::VcmdqEnable, || {
            self.read_status_flag(&q.STATUS, VCMDQ_STATUS::CMDQ_EN_OK)
        })
    }

    // ---- register access: every access runs the platform's MMIO hook ----

    fn config_page(&self) -> &ConfigPage {
        // SAFETY: the caller of `Cmdqv::new` guaranteed the window is mapped for our lifetime;
        // the config page is its first 64 KiB page (so aligned for the block), and every
        // register in `ConfigPage` is an `UnsafeCell` (`ReadWrite`, `regs::ReadOnly`), so the
        // CMDQV changing a value behind the shared reference is allowed.
        unsafe { self.base.as_ref() }
    }

    /// VINTF `v`'s registers; [`Error::OutOfRange`] ([`Quantity::Index`]) beyond the VINTFs in
    /// use.
    fn vintf_regs(&self, v: usize) -> Result<&VintfRegs, Error> {
        let vintfs = self.config_page().VINTF.get(..self.num_vintfs);
        vintfs
            .and_then(|r| r.get(v))
            .ok_or_else(|| index_out_of_range(v, self.num_vintfs))
    }

    /// VINTF `v`'s logical page-0 and page-1 slots of queue `l`; [`Error::OutOfRange`]
    /// ([`Quantity::Index`]) for a VINTF or queue index beyond those in use.
    fn lvcmdq(&self, v: usize, l: usize) -> Result<(&VcmdqCtrl, &VcmdqBase), Error> {
        if v >= self.num_vintfs {
            return Err(index_out_of_range(v, self.num_vintfs));
        }
        if l >= self.per_vintf {
            return Err(index_out_of_range(l, self.per_vintf));
        }
        // SAFETY: `v < num_vintfs`, which `new` capped to the VINTFs the window holds, so both
        // 64 KiB pages lie inside the window the caller of `Cmdqv::new` lent us.
        let (p0, p1) = unsafe {
            (
                self.base
                    .cast::<u8>()
                    .add(regs::vintf_page0(v))
                    .cast::<VcmdqPage0>()
                    .as_ref(),
                self.base
                    .cast::<u8>()
                    .add(regs::vintf_page1(v))
                    .cast::<VcmdqPage1>()
                    .as_ref(),
            )
        };
        p0.Q.get(l)
            .zip(p1.Q.get(l))
            .ok_or_else(|| index_out_of_range(l, regs::MAX_VCMDQS))
    }

    fn read<R: Readable>(&self, r: &R) -> R::T {
        self.platform
            .mmio(core::ptr::from_ref(r) as usize, MmioAccess::Read);
        r.get()
    }

    fn write<R: Writeable>(&self, r: &R, v: R::T) {
        r.set(v);
        self.platform
            .mmio(core::ptr::from_ref(r) as usize, MmioAccess::Write);
    }

    fn read_status_flag<R: Readable<T = u32>>(
        &self,
        r: &R,
        f: tock_registers::fields::Field<u32, R::R>,
    ) -> bool {
        f.read(self.read(r)) != 0
    }

    /// Polls `done` until it holds or the configured timeout expires.
    fn poll(&self, what: WaitFor, mut done: impl FnMut() -> bool) -> Result<(), Error> {
        let start = self.platform.now_us();
        loop {
            if done() {
                return Ok(());
            }
            if self.platform.now_us().saturating_sub(start) > self.cfg.timeout_us {
                log_error!("cmdqv: timeout waiting for {}", what);
                return Err(Error::Timeout(what));
            }
            self.platform.relax(what);
        }
    }
}

impl<P: Platform, D: DmaMemory> Drop for Cmdqv<P, D> {
    /// Stops CMDQV (CONFIG.CMDQV_EN = 0, polled with the usual bound) when it was in use, so no
    /// queue reads the lent rings or a guest's queue memory after the driver is gone.
    fn drop(&mut self) {
        let guests = self.guests.iter().any(|g| g.in_use.load(Ordering::Acquire));
        if !self.ready.swap(false, Ordering::AcqRel) && !guests {
            return;
        }
        let page = self.config_page();
        let cfg = self.read(&page.CONFIG);
        self.write(&page.CONFIG, cfg & !CONFIG::CMDQV_EN::SET.value);
        let _ = self.poll(WaitFor::CmdqvEnable, || {
            !self.read_status_flag(&page.STATUS, STATUS::CMDQV_ENABLED)
        });
    }
}

/// The error for index `i` of `count` things (a VINTF, or a queue of a VINTF).
fn index_out_of_range(i: usize, count: usize) -> Error {
    Error::OutOfRange {
        what: Quantity::Index,
        value: i as u64,
        max: count.saturating_sub(1) as u64,
    }
}

/// A CMDQ_ALLOC value: VINTF `v`, logical queue `l`, ALLOCATED `on`.
fn alloc_value(v: usize, l: usize, on: bool) -> u32 {
    let mut val = CMDQ_ALLOC::VINTF.val(v as u32).value | CMDQ_ALLOC::LVCMDQ.val(l as u32).value;
    if on {
        val |= CMDQ_ALLOC::ALLOCATED::SET.value;
    }
    val
}

/// A VCMDQ_BASE value: address bits \[47:5\] and LOG2SIZE (no RA/WA bit, unlike SMMU_CMDQ_BASE).
fn base_value(pa: PhysAddr, log2: u8) -> u64 {
    (pa.0 & VCMDQ_BASE::ADDR.mask << VCMDQ_BASE::ADDR.shift)
        | VCMDQ_BASE::LOG2SIZE.val(u64::from(log2)).value
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_host_errors;
