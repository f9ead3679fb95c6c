//! The physical SMMUv3 driver: probe, reset, stream tables, command queue, IRQ-path drains.
//!
//! [`Smmu`] owns one SMMU's register pages and the DMA memory its tables and queues live in.
//! Every method takes `&self` so that the hypervisor can share one `&Smmu` between CPUs:
//! the command queue has its own lock ([`cmdq`]), stream-table updates another, and the IRQ
//! entry points ([`Smmu::drain_evtq`], [`Smmu::drain_priq`], [`Smmu::handle_gerror`]) take no
//! lock that other code can hold (only try-flags), so they can run on any CPU at any time.
//!
//! Every register access goes through the private accessors of this module, which call
//! [`Platform::mmio`] before each read and after each write: nothing else touches MMIO.
//!
//! [`Smmu::reset`] and [`Smmu::disable`] must not run concurrently with other methods; everything
//! else may run on any CPU at any time.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod cmdq;
mod config;
mod irq;
mod strtab;

pub(crate) mod barrier;

#[cfg(test)]
mod tests;

use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use tock_registers::interfaces::{Readable, Writeable};

use crate::command::Command;
use crate::error::{Error, Feature, Quantity, WaitFor};
use crate::features::{Features, IdRegs};
use crate::platform::{DmaMemory, MmioAccess, Platform};
use crate::queue::{
    CMDQ_ENTRY_BYTES, EVTQ_ENTRY_BYTES, PRIQ_ENTRY_BYTES, QueueGeometry, check_log2,
};
use crate::regs::{CR0, CR1, CR2, GBPA, GERROR, IRQ_CTRL, Page0, Page1};
use crate::ste::StreamTableLayout;

pub use cmdq::{CmdBatch, CmdqBackend, CmdqOptions, CmdqStats, CommandSink, Completion};
pub use config::{Config, IrqConfig, MsiDoorbell, Quirks, StrtabFormat, SyncMode};
pub use irq::{DrainStats, EventSink, GerrorBitStats, GerrorStats, PriSink, SmmuStats};

use cmdq::Cmdq;
use irq::{InQueue, IrqCounters};
use strtab::StreamTable;

/// SMMU_CR1 for a coherent SMMU: tables and queues Inner Shareable, Write-Back inner and outer
/// (IHI 0070 §6.3.11; the value Linux writes).
const CR1_COHERENT: u32 = CR1::QUEUE_IC::WriteBack.value
    | CR1::QUEUE_OC::WriteBack.value
    | CR1::QUEUE_SH::InnerShareable.value
    | CR1::TABLE_IC::WriteBack.value
    | CR1::TABLE_OC::WriteBack.value
    | CR1::TABLE_SH::InnerShareable.value;
const _: () = assert!(CR1_COHERENT == 0xd75);
/// SMMU_CR1 for a non-coherent SMMU: Non-cacheable tables and queues (SH ignored, Outer
/// Shareable), matching memory the CPU cleans to the point of coherency.
const CR1_NON_COHERENT: u32 = CR1::QUEUE_IC::NonCacheable.value
    | CR1::QUEUE_OC::NonCacheable.value
    | CR1::QUEUE_SH::OuterShareable.value
    | CR1::TABLE_IC::NonCacheable.value
    | CR1::TABLE_OC::NonCacheable.value
    | CR1::TABLE_SH::OuterShareable.value;
const _: () = assert!(CR1_NON_COHERENT == (2 << 4) | (2 << 10));

/// GERROR bits this driver knows (bits 0 and 2-10; bit 1 is reserved).
const GERROR_KNOWN: u32 = GERROR::CMDQ_ERR::SET.value
    | GERROR::EVENTQ_ABT_ERR::SET.value
    | GERROR::PRIQ_ABT_ERR::SET.value
    | GERROR::MSI_CMDQ_ABT_ERR::SET.value
    | GERROR::MSI_EVENTQ_ABT_ERR::SET.value
    | GERROR::MSI_PRIQ_ABT_ERR::SET.value
    | GERROR::MSI_GERROR_ABT_ERR::SET.value
    | GERROR::SFM_ERR::SET.value
    | GERROR::CMDQP_ERR::SET.value
    | GERROR::DPT_ERR::SET.value;
const _: () = assert!(GERROR_KNOWN == 0x7fd);

/// One block of lent memory a configuration needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Region {
    /// Size in bytes.
    pub bytes: usize,
    /// Alignment in bytes (power of two), both for the CPU and the SMMU address.
    pub align: usize,
}

impl Region {
    /// Bytes a bump allocator may consume for it in the worst case (size + alignment padding).
    pub const fn worst_case(self) -> usize {
        self.bytes.saturating_add(self.align.saturating_sub(1))
    }
}

/// How much DMA memory a configuration needs, and in which pieces (IHI 0070 §3.3, §3.5).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MemoryPlan {
    /// The stream table format and size chosen.
    pub layout: StreamTableLayout,
    /// The linear STE array or the L1 descriptor array.
    pub strtab: Region,
    /// 2-level only: the CPU addresses of the level-2 tables (driver bookkeeping, not read by
    /// the SMMU), one pointer per L1 descriptor.
    pub l2_index: Option<Region>,
    /// 2-level only: one level-2 table, allocated the first time a StreamID of its group is
    /// bound.
    pub l2_table: Option<Region>,
    /// 2-level only: how many level-2 tables can exist (the number of L1 descriptors).
    pub l2_tables_max: u32,
    /// Command queue (`2^cmdq_log2` × 16 bytes).
    pub cmdq: Region,
    /// log2 of the command queue entries.
    pub cmdq_log2: u8,
    /// Event queue (`2^evtq_log2` × 32 bytes).
    pub evtq: Region,
    /// log2 of the event queue entries.
    pub evtq_log2: u8,
    /// PRI queue, when the SMMU has one (IDR0.PRI).
    pub priq: Option<Region>,
    /// log2 of the PRI queue entries (0 without PRI).
    pub priq_log2: u8,
}

impl MemoryPlan {
    /// Worst-case bytes [`Smmu::new`] takes from a bump allocator (alignment padding included).
    pub fn at_probe_bytes(&self) -> usize {
        let opt = |r: Option<Region>| r.map_or(0, Region::worst_case);
        self.strtab
            .worst_case()
            .saturating_add(opt(self.l2_index))
            .saturating_add(self.cmdq.worst_case())
            .saturating_add(self.evtq.worst_case())
            .saturating_add(opt(self.priq))
    }

    /// Worst-case bytes when every level-2 table has been allocated too.
    pub fn max_bytes(&self) -> usize {
        let l2 = self.l2_table.map_or(0, |r| {
            r.worst_case().saturating_mul(self.l2_tables_max as usize)
        });
        self.at_probe_bytes().saturating_add(l2)
    }
}

/// Adds `n` to a statistics counter (no ordering: counters are read for reports only).
fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

fn queue_region(geo: QueueGeometry) -> Region {
    Region {
        bytes: geo.bytes(),
        align: geo.align(),
    }
}

/// The queue LOG2SIZE for a wish (`None`: `default` capped at the SMMU's limit).
fn pick_log2(want: Option<u8>, default: u8, idr_max: u8) -> Result<u8, Error> {
    match want {
        Some(n) => check_log2(n, idr_max),
        None => Ok(default.min(idr_max)),
    }
}

/// One SMMUv3, taken over by the hypervisor (IHI 0070).
///
/// `P` is the platform (time, waiting, cache maintenance, the MMIO hook), `D` the DMA memory
/// the hypervisor lends for tables and queues.
pub struct Smmu<P: Platform, D: DmaMemory> {
    page0: NonNull<Page0>,
    page1: NonNull<Page1>,
    platform: P,
    dma: D,
    config: Config,
    features: Features,
    plan: MemoryPlan,
    coherent: bool,
    strtab: StreamTable,
    cmdq: Cmdq,
    evtq: InQueue,
    priq: Option<InQueue>,
    /// Command queue enabled (CR0ACK.CMDQEN seen): commands may be submitted.
    cmdq_live: AtomicBool,
    /// Event/PRI queues enabled and their shadows initialised: the IRQ path may run. Stored with
    /// `Release` at the end of the queue setup, loaded with `Acquire` by every IRQ entry point.
    ready: AtomicBool,
    /// GERRORN acknowledgements waiting to be written (see `ack_gerror`).
    gerr_ack_pending: AtomicU32,
    /// Whoever holds this writes GERRORN for everybody.
    gerr_ack_busy: AtomicBool,
    counters: IrqCounters,
    /// Number of `reset` calls that completed.
    resets: AtomicU64,
}

// SAFETY: the register pages are only accessed through `&self` methods whose concurrent use is
// what the hardware supports (each register access is a single volatile load or store); every
// piece of software state is behind a lock or an atomic. The platform and allocator are shared
// only if they are `Sync`/`Send` themselves.
unsafe impl<P: Platform + Send, D: DmaMemory + Send> Send for Smmu<P, D> {}
// SAFETY: as for `Send`: `&Smmu` gives no unsynchronised access to anything.
unsafe impl<P: Platform + Sync, D: DmaMemory + Sync> Sync for Smmu<P, D> {}

impl<P: Platform, D: DmaMemory> Smmu<P, D> {
    /// Takes over the SMMU whose register pages start at `page0` and `page1`: probes it, refuses
    /// what the driver cannot drive, and allocates its stream table and queues from `dma`
    /// (every STE starts as abort). The SMMU is not touched beyond reading its ID registers;
    /// call [`Smmu::reset`] to program and enable it.
    ///
    /// With [`Quirks::PAGE0_REGS_ONLY`] the page-1 registers are used at their page-0 offsets
    /// and `page1` is ignored.
    ///
    /// The driver keeps `dma` for as long as it lives (it allocates 2-level stream-table leaves
    /// later, and its queues live in `dma`'s memory): pass an allocator by value to give it to
    /// the driver, or a reference to share one (`&A` is a [`DmaMemory`] too), e.g. with the
    /// CMDQV of this SMMU (`Cmdqv::new` takes its allocator the same way); the
    /// borrow then keeps it alive as long as the driver.
    ///
    /// # Errors
    /// - [`Error::Unsupported`] from [`Features::check`], or [`Feature::StreamIdBits`] when
    ///   `config.sid_bits` exceeds IDR1.SIDSIZE, [`Feature::TwoLevelStreamTable`] for a forced
    ///   2-level table without IDR0.ST_LEVEL, [`Feature::Msi`]/[`Feature::Sev`] for a sync or
    ///   IRQ mode the SMMU lacks;
    /// - [`Error::OutOfRange`] ([`Quantity::QueueLog2`]) for a queue log2 above the IDR1 limit,
    ///   [`Error::TooSmall`] ([`Quantity::StreamIdBits`]) for a forced 2-level table for fewer
    ///   than 6 StreamID bits (the smallest legal SPLIT);
    /// - [`Error::NoMemory`] when `dma` cannot provide the [`MemoryPlan`].
    ///
    /// # Safety
    /// `page0` and `page1` point to the register pages of one SMMUv3, mapped as Device memory
    /// for as long as the returned value lives, and nothing else (no other `Smmu`, no guest
    /// mapping, no code outside this crate) accesses those registers meanwhile.
    pub unsafe fn new(
        page0: NonNull<Page0>,
        page1: NonNull<Page1>,
        platform: P,
        dma: D,
        config: Config,
    ) -> Result<Self, Error> {
        let page1 = if config.quirks.contains(Quirks::PAGE0_REGS_ONLY) {
            // Cavium CN99xx: page-1 registers only reachable at their page-0 offsets.
            page0.cast::<Page1>()
        } else {
            page1
        };
        let features = Features::decode(Self::read_idregs(page0, &platform));
        features.check()?;
        let plan = Self::memory_plan(&features, &config)?;
        let coherent = config.coherent.unwrap_or(features.coherent);
        let completion = Self::resolve_completion(&features, &config, coherent)?;
        if matches!(config.irq, IrqConfig::Msi { .. }) && !features.msi {
            return Err(Error::Unsupported(Feature::Msi));
        }

        let strtab = StreamTable::new(&dma, &platform, &plan, coherent)?;
        let alloc = |r: Region| dma.alloc(r.bytes, r.align).ok_or(Error::NoMemory);
        let opts = CmdqOptions {
            completion,
            timeout_us: config.timeout_us,
            coherent,
            repeat_cfgi_tlbi: config.quirks.contains(Quirks::REPEAT_CFGI_TLBI),
        };
        // SAFETY: each queue buffer was just handed out by `dma`, whose `DmaMemory` contract
        // makes it valid, unaliased and seen by the SMMU at its `paddr` for as long as `dma`
        // lives, which is as long as the driver; only its engine uses it.
        let cmdq = unsafe { Cmdq::new(alloc(plan.cmdq)?, plan.cmdq_log2, opts) }?;
        // SAFETY: as above.
        let evtq = unsafe { InQueue::new(alloc(plan.evtq)?, plan.evtq_log2, 32) }?;
        let priq = match plan.priq {
            // SAFETY: as above.
            Some(r) => Some(unsafe { InQueue::new(alloc(r)?, plan.priq_log2, 16) }?),
            None => None,
        };
        log_info!(
            "smmu: sid bits {=u8}, cmdq {=u8}, evtq {=u8}",
            plan.layout.sid_bits(),
            plan.cmdq_log2,
            plan.evtq_log2
        );
        Ok(Self {
            page0,
            page1,
            platform,
            dma,
            config,
            features,
            plan,
            coherent,
            strtab,
            cmdq,
            evtq,
            priq,
            cmdq_live: AtomicBool::new(false),
            ready: AtomicBool::new(false),
            gerr_ack_pending: AtomicU32::new(0),
            gerr_ack_busy: AtomicBool::new(false),
            counters: IrqCounters::default(),
            resets: AtomicU64::new(0),
        })
    }

    /// Reads the identification registers through the MMIO hook.
    fn read_idregs(page0: NonNull<Page0>, platform: &P) -> IdRegs {
        // SAFETY: the caller of `new` promised `page0` maps the SMMU's page 0 for our use.
        let p0 = unsafe { page0.as_ref() };
        fn rd<P: Platform, R: Readable<T = u32>>(platform: &P, reg: &R) -> u32 {
            platform.mmio(core::ptr::from_ref(reg) as usize, MmioAccess::Read);
            reg.get()
        }
        IdRegs {
            idr0: rd(platform, &p0.IDR0),
            idr1: rd(platform, &p0.IDR1),
            idr2: rd(platform, &p0.IDR2),
            idr3: rd(platform, &p0.IDR3),
            idr4: rd(platform, &p0.IDR4),
            idr5: rd(platform, &p0.IDR5),
            iidr: rd(platform, &p0.IIDR),
            aidr: rd(platform, &p0.AIDR),
        }
    }

    /// Resolves [`SyncMode`] against the SMMU.
    fn resolve_completion(
        features: &Features,
        config: &Config,
        coherent: bool,
    ) -> Result<Completion, Error> {
        // WFE without a guaranteed wake-up could keep the CPU past every timeout.
        let sev = features.sev && !config.quirks.contains(Quirks::SKIP_SEV) && config.event_stream;
        match config.sync {
            SyncMode::Auto if features.msi && coherent => Ok(Completion::Msi),
            SyncMode::Auto if sev => Ok(Completion::Sev),
            SyncMode::Auto | SyncMode::Poll => Ok(Completion::Poll),
            SyncMode::Sev if sev => Ok(Completion::Sev),
            SyncMode::Sev => Err(Error::Unsupported(Feature::Sev)),
            SyncMode::Msi if features.msi && coherent => Ok(Completion::Msi),
            SyncMode::Msi => Err(Error::Unsupported(Feature::Msi)),
        }
    }

    /// The memory a configuration needs on an SMMU with `features` (callable before
    /// [`Smmu::new`], e.g. with features decoded from the ID registers by the hypervisor).
    ///
    /// # Errors
    /// As [`Smmu::new`] for sizes and formats.
    pub fn memory_plan(features: &Features, config: &Config) -> Result<MemoryPlan, Error> {
        /// The smallest legal SPLIT (4 KiB level-2 tables).
        const TWO_LEVEL_MIN_SPLIT: u8 = 6;
        let hw_bits = features.sid_bits.min(32);
        let bits = match config.sid_bits {
            Some(n) if n > hw_bits => return Err(Error::Unsupported(Feature::StreamIdBits)),
            Some(n) => n,
            None => hw_bits,
        };
        let two = features.two_level_strtab();
        let layout = match config.strtab {
            StrtabFormat::Auto => StreamTableLayout::choose(two, hw_bits, bits),
            StrtabFormat::Linear => StreamTableLayout::Linear { log2: bits },
            StrtabFormat::TwoLevel if !two => {
                return Err(Error::Unsupported(Feature::TwoLevelStreamTable));
            }
            // SPLIT may only be 6, 8 or 10 (IHI 0070 §6.3.25): Linux's 8 where the StreamIDs
            // allow it, 6 for 6 or 7 bits; never a LOG2SIZE beyond the bits asked for.
            StrtabFormat::TwoLevel if bits < TWO_LEVEL_MIN_SPLIT => {
                return Err(Error::TooSmall {
                    what: Quantity::StreamIdBits,
                    value: u64::from(bits),
                    min: u64::from(TWO_LEVEL_MIN_SPLIT),
                });
            }
            StrtabFormat::TwoLevel => {
                let split = if bits >= StreamTableLayout::LINUX_SPLIT {
                    StreamTableLayout::LINUX_SPLIT
                } else {
                    TWO_LEVEL_MIN_SPLIT
                };
                StreamTableLayout::TwoLevel {
                    log2: bits.min(StreamTableLayout::MAX_L1_LOG2 + split),
                    split,
                }
            }
        };
        let table_bytes = usize::try_from(layout.table_bytes()).map_err(|_| Error::NoMemory)?;
        let strtab = Region {
            bytes: table_bytes,
            align: table_bytes.next_power_of_two().max(64),
        };
        let (l2_index, l2_table, l2_tables_max) = match layout {
            StreamTableLayout::Linear { .. } => (None, None, 0),
            StreamTableLayout::TwoLevel { split, .. } => {
                let n = layout.l1_entries();
                let l2_bytes = 64usize << split;
                (
                    Some(Region {
                        bytes: (n as usize).saturating_mul(size_of::<*mut u8>()),
                        align: align_of::<*mut u8>(),
                    }),
                    Some(Region {
                        bytes: l2_bytes,
                        align: l2_bytes,
                    }),
                    n,
                )
            }
        };
        let cmdq_log2 = pick_log2(
            config.cmdq_log2,
            Config::DEFAULT_CMDQ_LOG2,
            features.cmdq_log2,
        )?;
        let evtq_log2 = pick_log2(
            config.evtq_log2,
            Config::DEFAULT_EVTQ_LOG2,
            features.evtq_log2,
        )?;
        let priq_log2 = if features.pri {
            pick_log2(
                config.priq_log2,
                Config::DEFAULT_PRIQ_LOG2,
                features.priq_log2,
            )?
        } else {
            0
        };
        let geo = |log2, entry| QueueGeometry::checked(log2, entry).map(queue_region);
        Ok(MemoryPlan {
            layout,
            strtab,
            l2_index,
            l2_table,
            l2_tables_max,
            cmdq: geo(cmdq_log2, CMDQ_ENTRY_BYTES)?,
            cmdq_log2,
            evtq: geo(evtq_log2, EVTQ_ENTRY_BYTES)?,
            evtq_log2,
            priq: if features.pri {
                Some(geo(priq_log2, PRIQ_ENTRY_BYTES)?)
            } else {
                None
            },
            priq_log2,
        })
    }

    /// The decoded ID registers.
    pub fn features(&self) -> &Features {
        &self.features
    }

    /// The configuration the SMMU was taken over with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The memory plan in use.
    pub fn plan(&self) -> &MemoryPlan {
        &self.plan
    }

    /// The CMD_SYNC completion mode in use.
    pub fn completion(&self) -> Completion {
        self.cmdq.options().completion
    }

    /// Whether the driver treats the SMMU as coherent.
    pub fn coherent(&self) -> bool {
        self.coherent
    }

    /// The platform the driver runs on.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The command queue engine's counters.
    pub fn cmdq_counters(&self) -> CmdqStats {
        self.cmdq.counters()
    }

    // ----- register accessors: the only MMIO in the crate -----

    fn p0(&self) -> &Page0 {
        // SAFETY: the caller of `new` promised `page0` maps page 0 of the SMMU, exclusively for
        // this value, for as long as it lives.
        unsafe { self.page0.as_ref() }
    }

    fn p1(&self) -> &Page1 {
        // SAFETY: as for `p0`, for page 1 (or page 0 itself under PAGE0_REGS_ONLY, whose
        // EVENTQ/PRIQ PROD/CONS offsets then hold those registers).
        unsafe { self.page1.as_ref() }
    }

    fn rd<R: Readable>(&self, reg: &R) -> R::T {
        self.platform
            .mmio(core::ptr::from_ref(reg) as usize, MmioAccess::Read);
        reg.get()
    }

    fn wr<R: Writeable>(&self, reg: &R, val: R::T) {
        reg.set(val);
        self.platform
            .mmio(core::ptr::from_ref(reg) as usize, MmioAccess::Write);
    }

    /// Polls `done` until it holds or the configured timeout expires.
    fn poll(&self, what: WaitFor, mut done: impl FnMut(&Self) -> bool) -> Result<(), Error> {
        let deadline = self
            .platform
            .now_us()
            .saturating_add(self.config.timeout_us);
        loop {
            if done(self) {
                return Ok(());
            }
            if self.platform.now_us() >= deadline {
                log_error!("smmu: timeout");
                return Err(Error::Timeout(what));
            }
            self.platform.relax(what);
        }
    }

    /// Writes SMMU_CR0 and waits for CR0ACK to equal it (IHI 0070 §6.3.9).
    fn write_cr0(&self, val: u32) -> Result<(), Error> {
        self.wr(&self.p0().CR0, val);
        self.poll(WaitFor::Cr0Ack, |s| s.rd(&s.p0().CR0ACK) == val)
    }

    /// Writes SMMU_IRQ_CTRL and waits for IRQ_CTRLACK to equal it (IHI 0070 §6.3.16).
    fn write_irq_ctrl(&self, val: u32) -> Result<(), Error> {
        self.wr(&self.p0().IRQ_CTRL, val);
        self.poll(WaitFor::IrqCtrlAck, |s| s.rd(&s.p0().IRQ_CTRLACK) == val)
    }

    /// Changes SMMU_GBPA with the UPDATE handshake (IHI 0070 §6.3.14).
    fn update_gbpa(&self, set: u32, clear: u32) -> Result<(), Error> {
        let update = GBPA::UPDATE::SET.value;
        let mut cur = 0;
        self.poll(WaitFor::GbpaUpdate, |s| {
            cur = s.rd(&s.p0().GBPA);
            cur & update == 0
        })?;
        let val = (cur & !clear) | set;
        self.wr(&self.p0().GBPA, val | update);
        self.poll(WaitFor::GbpaUpdate, |s| s.rd(&s.p0().GBPA) & update == 0)
    }

    /// Programs and enables the SMMU, following Linux's `device_reset` order (IHI 0070 §6.3.9,
    /// Linux's `arm_smmu_device_reset`): GBPA abort (if the SMMU was enabled), CR0 = 0, CR1, CR2, stream table
    /// base, command queue, CFGI_ALL + TLBI_EL2_ALL (with IDR0.HYP) + TLBI_NSNH_ALL + CMD_SYNC,
    /// event queue, PRI queue (IDR0.PRI), ATSCHK (IDR0.ATS), interrupts (wired or MSI), SMMUEN.
    /// Every CR0/IRQ_CTRL write waits for its ACK.
    ///
    /// The stream table keeps its contents, so `reset` also recovers from service failure mode
    /// with every binding intact.
    ///
    /// # Errors
    /// [`Error::Timeout`] naming the ACK, GBPA update or CMD_SYNC that did not come;
    /// [`Error::Cmdq`] if the invalidation commands were refused.
    pub fn reset(&self) -> Result<(), Error> {
        self.ready.store(false, Ordering::Release);
        self.cmdq_live.store(false, Ordering::Release);
        let p0 = self.p0();

        // 1. Keep DMA blocked while translation is off, if it was on.
        if self.rd(&p0.CR0) & CR0::SMMUEN::SET.value != 0 {
            self.update_gbpa(GBPA::ABORT::SET.value, 0)?;
        }
        // 2. Everything off.
        self.write_cr0(0)?;
        // Global errors left active by a previous owner (firmware, an earlier kernel) or raised
        // while the driver was not ready: acknowledged (and counted) before anything runs. An
        // active CMDQ_ERR would stop this reset's own CFGI_ALL, and an active bit hides every
        // later error of its class (IHI 0070 §6.3.19: a bit is raised only when inactive).
        self.ack_stale_gerror();
        // 3, 4. Memory attributes, private TLB maintenance, invalid-SID events.
        self.wr(
            &p0.CR1,
            if self.coherent {
                CR1_COHERENT
            } else {
                CR1_NON_COHERENT
            },
        );
        let mut cr2 = CR2::PTM::SET.value | CR2::RECINVSID::SET.value;
        if self.config.e2h && self.features.hyp {
            cr2 |= CR2::E2H::SET.value;
        }
        self.wr(&p0.CR2, cr2);
        // 5. Stream table.
        // The table lives in lent memory as long as `self`; every STE in it is valid (abort
        // until bound) and every L1 descriptor valid or invalid, never half-written.
        self.wr(&p0.STRTAB_BASE, self.strtab.base_reg());
        self.wr(&p0.STRTAB_BASE_CFG, self.plan.layout.strtab_base_cfg());
        // 6. Command queue.
        self.wr(&p0.CMDQ_BASE, self.cmdq.base_reg());
        self.wr(&p0.CMDQ_PROD, 0);
        self.wr(&p0.CMDQ_CONS, 0);
        self.cmdq.reset_indices();
        // 7.
        let mut cr0 = CR0::CMDQEN::SET.value;
        self.write_cr0(cr0)?;
        self.cmdq_live.store(true, Ordering::Release);
        // 8-10. Forget whatever configuration and TLB entries the SMMU cached.
        let mut inval = [Command::CfgiAll, Command::TlbiEl2All, Command::TlbiNsnhAll];
        let n = if self.features.hyp {
            3
        } else {
            inval[1] = Command::TlbiNsnhAll;
            2
        };
        self.submit(inval.get(..n).unwrap_or(&[]))?;
        // 11, 12. Event queue.
        self.wr(&p0.EVENTQ_BASE, self.evtq.base_reg());
        self.wr(&self.p1().EVENTQ_PROD, 0);
        self.wr(&self.p1().EVENTQ_CONS, 0);
        self.evtq.reset_indices();
        cr0 |= CR0::EVENTQEN::SET.value;
        self.write_cr0(cr0)?;
        // 13. PRI queue.
        if let Some(priq) = &self.priq {
            self.wr(&p0.PRIQ_BASE, priq.base_reg());
            self.wr(&self.p1().PRIQ_PROD, 0);
            self.wr(&self.p1().PRIQ_CONS, 0);
            priq.reset_indices();
            cr0 |= CR0::PRIQEN::SET.value;
            self.write_cr0(cr0)?;
        }
        // 14. Translated transactions only from streams with ATS enabled.
        if self.features.ats {
            cr0 |= CR0::ATSCHK::SET.value;
            self.write_cr0(cr0)?;
        }
        // The IRQ path may run from here on: queues live, shadows initialised.
        self.ready.store(true, Ordering::Release);
        // 15. Interrupts. 17. Translation on.
        cr0 |= CR0::SMMUEN::SET.value;
        if let Err(e) = self.setup_irqs().and_then(|()| self.write_cr0(cr0)) {
            // A reset that failed leaves the driver not ready (`is_ready` promises a
            // successful reset).
            self.ready.store(false, Ordering::Release);
            return Err(e);
        }
        self.resets.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// IRQ_CTRL off, MSI addresses cleared or programmed, IRQ_CTRL on (IHI 0070 §6.3.16-§6.3.18, Linux's `arm_smmu_setup_irqs`).
    fn setup_irqs(&self) -> Result<(), Error> {
        let p0 = self.p0();
        self.write_irq_ctrl(0)?;
        let (gerror, evtq, priq) = match self.config.irq {
            IrqConfig::Wired => (None, None, None),
            IrqConfig::Msi { gerror, evtq, priq } => (gerror, evtq, priq),
        };
        // Without IDR0.MSI the *_IRQ_CFGn registers do nothing (QEMU even refuses 64-bit
        // accesses to EVENTQ_IRQ_CFG0), so they are left alone.
        if self.features.msi {
            let addr = |d: Option<MsiDoorbell>| d.map_or(0, |d| d.addr.0 & 0x00ff_ffff_ffff_fffc);
            let data = |d: Option<MsiDoorbell>| d.map_or(0, |d| d.data);
            let attr = |d: Option<MsiDoorbell>| if d.is_some() { 1 } else { 0 };
            self.wr(&p0.GERROR_IRQ_CFG0, addr(gerror));
            self.wr(&p0.GERROR_IRQ_CFG1, data(gerror));
            self.wr(&p0.GERROR_IRQ_CFG2, attr(gerror));
            self.wr(&p0.EVENTQ_IRQ_CFG0, addr(evtq));
            self.wr(&p0.EVENTQ_IRQ_CFG1, data(evtq));
            self.wr(&p0.EVENTQ_IRQ_CFG2, attr(evtq));
            if self.priq.is_some() {
                self.wr(&p0.PRIQ_IRQ_CFG0, addr(priq));
                self.wr(&p0.PRIQ_IRQ_CFG1, data(priq));
            }
        }
        if self.priq.is_some() {
            // LO resets UNKNOWN: interrupt on empty to non-empty (LO = 0).
            let attr = if self.features.msi && priq.is_some() {
                1
            } else {
                0
            };
            self.wr(&p0.PRIQ_IRQ_CFG2, attr);
        }
        let mut en = IRQ_CTRL::GERROR_IRQEN::SET.value | IRQ_CTRL::EVENTQ_IRQEN::SET.value;
        if self.priq.is_some() {
            en |= IRQ_CTRL::PRIQ_IRQEN::SET.value;
        }
        self.write_irq_ctrl(en)
    }

    /// Turns translation and every queue off, leaving DMA blocked: GBPA.ABORT through the UPDATE
    /// handshake, then CR0 = 0 and its ACK (IHI 0070 §6.3.9, §6.3.14). The IRQ entry points
    /// return empty counts until the next [`Smmu::reset`].
    ///
    /// # Errors
    /// [`Error::Timeout`] if GBPA or CR0ACK did not follow; CR0 = 0 is written in any case.
    pub fn disable(&self) -> Result<(), Error> {
        self.ready.store(false, Ordering::Release);
        self.cmdq_live.store(false, Ordering::Release);
        let gbpa = self.update_gbpa(GBPA::ABORT::SET.value, 0);
        let cr0 = self.write_cr0(0);
        gbpa.and(cr0)
    }

    /// [`Smmu::disable`] without waiting for any acknowledgement, for the IRQ path (service
    /// failure mode): marks the driver not ready, requests GBPA.ABORT with the UPDATE bit when
    /// no update is in flight (one read, at most one write), and writes CR0 = 0.
    pub(crate) fn disable_nowait(&self) {
        self.ready.store(false, Ordering::Release);
        self.cmdq_live.store(false, Ordering::Release);
        let update = GBPA::UPDATE::SET.value;
        let cur = self.rd(&self.p0().GBPA);
        if cur & update == 0 {
            self.wr(&self.p0().GBPA, cur | GBPA::ABORT::SET.value | update);
        }
        self.wr(&self.p0().CR0, 0);
    }

    /// Whether the queues are live (between a successful [`Smmu::reset`] and
    /// [`Smmu::disable`]).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Submits `cmds` plus one CMD_SYNC on the SMMU's command queue and waits for completion
    /// (IHI 0070 §4.7.3). See [`Cmdq::submit`](cmdq::Cmdq::submit).
    ///
    /// # Errors
    /// [`Error::Disabled`] before [`Smmu::reset`] enabled the queue; otherwise as
    /// [`Cmdq::submit`](cmdq::Cmdq::submit).
    pub fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        if !self.cmdq_live.load(Ordering::Acquire) {
            return Err(Error::Disabled);
        }
        self.cmdq
            .submit(&MainCmdq { smmu: self }, &self.platform, cmds)
    }

    /// Issues `cmds` on the SMMU's command queue without a CMD_SYNC and without waiting (see
    /// [`Cmdq::post`](cmdq::Cmdq::post)).
    pub(crate) fn post(&self, cmds: &[Command]) -> Result<(), Error> {
        if !self.cmdq_live.load(Ordering::Acquire) {
            return Err(Error::Disabled);
        }
        self.cmdq
            .post(&MainCmdq { smmu: self }, &self.platform, cmds)
    }

    /// Acknowledges GERROR bits `mask` by making the same bits of GERRORN equal to GERROR,
    /// leaving every other bit as it is (IHI 0070 §6.3.20). Never waits: when another CPU is
    /// writing GERRORN, the bits are left to it (it rereads the pending set before it lets go).
    fn ack_gerror(&self, mask: u32) {
        if mask == 0 {
            return;
        }
        self.gerr_ack_pending.fetch_or(mask, Ordering::SeqCst);
        // Bounded: each pass either finds nothing new or writes what it found.
        for _ in 0..8 {
            if self
                .gerr_ack_busy
                .compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                return;
            }
            let m = self.gerr_ack_pending.swap(0, Ordering::SeqCst);
            if m != 0 {
                let g = self.rd(&self.p0().GERROR);
                let n = self.rd(&self.p0().GERRORN);
                let new = (n & !m) | (g & m);
                if new != n {
                    self.wr(&self.p0().GERRORN, new);
                }
            }
            self.gerr_ack_busy.store(false, Ordering::SeqCst);
            if self.gerr_ack_pending.load(Ordering::SeqCst) == 0 {
                return;
            }
        }
    }

    /// Acknowledges every active GERROR bit while the IRQ path is off (during [`Smmu::reset`]),
    /// counting each in [`SmmuStats::gerror`] and [`SmmuStats::gerror_stale`].
    fn ack_stale_gerror(&self) {
        let (g, active) = self.gerror_active();
        if active == 0 {
            return;
        }
        log_warn!("smmu: stale global errors {=u32:#x} acknowledged", active);
        self.counters.count_gerror(active, true);
        self.wr(&self.p0().GERRORN, g);
    }

    /// GERROR ^ GERRORN (2 reads).
    fn gerror_active(&self) -> (u32, u32) {
        let g = self.rd(&self.p0().GERROR);
        let n = self.rd(&self.p0().GERRORN);
        (g, g ^ n)
    }
}

impl<P: Platform, D: DmaMemory> Drop for Smmu<P, D> {
    /// The lent memory goes away with the driver: stop the SMMU from using it first (GBPA abort,
    /// CR0 = 0), best effort and bounded like every wait.
    fn drop(&mut self) {
        if self.cmdq_live.load(Ordering::Acquire) || self.ready.load(Ordering::Acquire) {
            let _ = self.disable();
        }
    }
}

impl<P: Platform, D: DmaMemory> CommandSink for Smmu<P, D> {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        Smmu::submit(self, cmds)
    }
}

/// The SMMU's own command queue registers, for the engine.
struct MainCmdq<'a, P: Platform, D: DmaMemory> {
    smmu: &'a Smmu<P, D>,
}

impl<P: Platform, D: DmaMemory> CmdqBackend for MainCmdq<'_, P, D> {
    fn write_prod(&self, prod: u32) {
        self.smmu.wr(&self.smmu.p0().CMDQ_PROD, prod);
    }

    fn read_cons(&self) -> u32 {
        self.smmu.rd(&self.smmu.p0().CMDQ_CONS)
    }

    fn error_active(&self) -> bool {
        self.smmu.gerror_active().1 & GERROR::CMDQ_ERR::SET.value != 0
    }

    fn ack_error(&self) {
        self.smmu.ack_gerror(GERROR::CMDQ_ERR::SET.value);
    }
}
