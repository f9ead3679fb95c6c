//! What the hypervisor chooses when it takes over an SMMU: sizes, completion mode, quirks and
//! interrupt delivery.

use crate::ids::PhysAddr;

/// Which stream table format to build (IHI 0070 §3.3, SMMU_STRTAB_BASE_CFG.FMT).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum StrtabFormat {
    /// Linux's rule: 2-level with SPLIT 8 when IDR0.ST_LEVEL allows it and more than 8
    /// StreamID bits are needed, linear otherwise.
    #[default]
    Auto,
    /// Always one linear array of STEs.
    Linear,
    /// Always 2-level with SPLIT 8 (needs IDR0.ST_LEVEL = 1).
    TwoLevel,
}

/// How the command queue waits for a CMD_SYNC (IHI 0070 §4.7.3).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum SyncMode {
    /// [`SyncMode::Msi`] when IDR0.MSI and the SMMU is coherent, else [`SyncMode::Sev`] when
    /// IDR0.SEV and [`Config::event_stream`] is set, else [`SyncMode::Poll`] (Linux's choice,
    /// whose arm64 kernels always run the generic-timer event stream).
    #[default]
    Auto,
    /// CS = SIG_NONE; poll SMMU_CMDQ_CONS.
    Poll,
    /// CS = SIG_SEV; `WFE` (through [`Platform::wait_for_event`](crate::Platform::wait_for_event))
    /// between reads of SMMU_CMDQ_CONS. Needs IDR0.SEV and [`Config::event_stream`]: a
    /// CMD_SYNC that never completes sends no SEV, so only a periodic wake-up lets the timeout
    /// be checked.
    Sev,
    /// CS = SIG_IRQ with MSIAddr = the CMD_SYNC's own slot and MSIData = 0: completion is the
    /// slot's first word turning to zero, polled in memory with no MMIO read. Needs IDR0.MSI and
    /// a coherent SMMU.
    Msi,
}

bitflags::bitflags! {
    /// Implementation quirks the firmware description names (IHI 0070 has none of these; each is
    /// a known erratum or integration issue).
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Quirks: u32 {
        /// NVIDIA Tegra264: every batch with CFGI_* or TLBI_* commands is issued a second time
        /// after the first CMD_SYNC completed (ATC_INV is never repeated).
        const REPEAT_CFGI_TLBI = 1 << 0;
        /// HiSilicon Hi161x: never issue CMD_PREFETCH_CONFIG.
        const BROKEN_PREFETCH = 1 << 1;
        /// Cavium CN99xx: the page-1 registers are only reachable at their page-0 offsets; the
        /// `page1` pointer given to [`Smmu::new`](super::Smmu::new) is ignored.
        const PAGE0_REGS_ONLY = 1 << 2;
        /// Arm MMU-600 erratum 1076982: IDR0.SEV is not trustworthy; never use CS = SIG_SEV.
        const SKIP_SEV = 1 << 3;
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for Quirks {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "Quirks({=u32:#x})", self.bits());
    }
}

/// One MSI doorbell the hypervisor's interrupt controller provides (IHI 0070 §6.3.21-§6.3.23):
/// the SMMU writes `data` to `addr` with Device-nGnRE attributes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct MsiDoorbell {
    /// Doorbell physical address (bits `[1:0]` are ignored).
    pub addr: PhysAddr,
    /// The 32-bit payload (for a GICv3 ITS: the EventID).
    pub data: u32,
}

/// How the SMMU signals its event queue, PRI queue and global errors (IHI 0070 §3.18).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum IrqConfig {
    /// The wired interrupt lines; every `*_IRQ_CFG0` MSI address is cleared.
    #[default]
    Wired,
    /// MSIs to the given doorbells (needs IDR0.MSI). A `None` doorbell leaves that source on its
    /// wired line.
    Msi {
        /// Doorbell for global errors (SMMU_GERROR_IRQ_CFG0-2).
        gerror: Option<MsiDoorbell>,
        /// Doorbell for the event queue (SMMU_EVENTQ_IRQ_CFG0-2).
        evtq: Option<MsiDoorbell>,
        /// Doorbell for the PRI queue (SMMU_PRIQ_IRQ_CFG0-2), used only with IDR0.PRI.
        priq: Option<MsiDoorbell>,
    },
}

/// The hypervisor's choices for one SMMU. `Config::default()` suits QEMU `virt` and most
/// hardware: every StreamID the SMMU implements, Linux's table format rule, 256 commands,
/// 128 events, 128 page requests, 1 s timeouts, automatic completion mode, wired interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// StreamID bits the hypervisor needs. `None`: every bit the SMMU implements (IDR1.SIDSIZE).
    /// `Some(n)` with `n` above IDR1.SIDSIZE is refused with
    /// [`Feature::StreamIdBits`](crate::Feature::StreamIdBits).
    pub sid_bits: Option<u8>,
    /// Stream table format.
    pub strtab: StrtabFormat,
    /// log2 of the command queue entries. `None`: 8, capped at IDR1.CMDQS. `Some(n)` above
    /// IDR1.CMDQS is refused with [`Error::OutOfRange`](crate::Error::OutOfRange).
    pub cmdq_log2: Option<u8>,
    /// log2 of the event queue entries; as `cmdq_log2` with default 7 and IDR1.EVENTQS.
    pub evtq_log2: Option<u8>,
    /// log2 of the PRI queue entries; as `cmdq_log2` with default 7 and IDR1.PRIQS. Ignored
    /// without IDR0.PRI.
    pub priq_log2: Option<u8>,
    /// Bound of every wait (ACKs, GBPA update, CMD_SYNC, queue space), in microseconds.
    pub timeout_us: u64,
    /// CMD_SYNC completion mode.
    pub sync: SyncMode,
    /// Overrides IDR0.COHACC with what the firmware says (IORT COHACC override, DT
    /// `dma-coherent`). `None`: trust IDR0.COHACC.
    pub coherent: Option<bool>,
    /// Known errata and integration quirks.
    pub quirks: Quirks,
    /// Interrupt delivery.
    pub irq: IrqConfig,
    /// SMMU_CR2.E2H: the hypervisor runs with VHE (needs IDR0.HYP; ignored otherwise).
    pub e2h: bool,
    /// The platform guarantees that [`Platform::wait_for_event`](crate::Platform::wait_for_event)
    /// returns within a bounded time even when no SEV comes: the generic-timer event stream
    /// is on (Arm ARM D11.2.3, CNTHCTL_EL2.EVNTEN), or the platform bounds its `WFE` another
    /// way. Without it [`SyncMode::Sev`] is refused and [`SyncMode::Auto`] does not pick it.
    pub event_stream: bool,
}

impl Config {
    /// The default configuration as a constant.
    pub const DEFAULT: Self = Self {
        sid_bits: None,
        strtab: StrtabFormat::Auto,
        cmdq_log2: None,
        evtq_log2: None,
        priq_log2: None,
        timeout_us: 1_000_000,
        sync: SyncMode::Auto,
        coherent: None,
        quirks: Quirks::empty(),
        irq: IrqConfig::Wired,
        e2h: false,
        event_stream: false,
    };

    /// Default command queue log2 (256 entries, 4 KiB).
    pub const DEFAULT_CMDQ_LOG2: u8 = 8;
    /// Default event queue log2 (128 records, 4 KiB).
    pub const DEFAULT_EVTQ_LOG2: u8 = 7;
    /// Default PRI queue log2 (128 entries, 2 KiB).
    pub const DEFAULT_PRIQ_LOG2: u8 = 7;
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}
