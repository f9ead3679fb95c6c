//! The guest's virtual SMMU ([`SmmuMode::Virtual`](super::smmu::SmmuMode::Virtual)): the
//! library's [`VSmmu`] over the demo's [`ROUTER`] and physical driver. The emulation is the
//! library's; this file only says where the guest's RAM is, which lines the vSMMU raises, and
//! which device the guest sees under which vSID.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, Readable};
use arm_smmuv3::ids::Ipa;
use arm_smmuv3::iommufd::VeventqType;
use arm_smmuv3::regs::offset;
use arm_smmuv3::viommu::ViommuConfig;
use arm_smmuv3::vsmmu::{
    DeliverStats, GuestIrq, GuestMemory, IrqLine, OutsideRam, RouterBackend, VSmmu, VSmmuConfig,
    VSmmuStats,
};
use arm_smmuv3::{BumpDma, Error, StreamId};

use super::smmu::{VIRTUAL_INTIDS, VSID_BASE};
use crate::board;
use crate::platform::QemuPlatform;
use crate::smmu::{self, DemoSmmu, ROUTER};
use crate::stage2::Stage2Tables;
use crate::vm::vgic::{self, Pending};

/// What the guest is offered: the defaults, except an 8-entry event queue (IDR1.EVENTQS = 3),
/// smaller than one faulting 64-byte edu transfer (16 records), so that a burst overflows the
/// guest's queue and the loss is visible to it (EVENTQ_PROD.OVFLG).
pub const CONFIG: VSmmuConfig = VSmmuConfig {
    evtq_log2: 3,
    ..VSmmuConfig::DEFAULT
};

/// The guest's devices behind the vSMMU, by physical StreamID (bus 0: edu at device 1, RID 0x8;
/// the virtio disk at device 2, RID 0x10); each one's vSID is the one the guest's `iommu-map`
/// names (see `vm::guest_dt`), [`VSID_BASE`] + RID.
pub const DEVICE_SIDS: [u32; 2] = [0x8, 0x10];
/// Depth of the vEVENTQ between the Router and the vSMMU (the demo Router's largest).
const VEVENTQ_DEPTH: u32 = 16;

type Backend = RouterBackend<'static, QemuPlatform, &'static BumpDma>;
static VSMMU: spin::Once<VSmmu<Backend, GuestRam, GuestLines>> = spin::Once::new();

/// Makes the guest's vIOMMU (on the VM's own stage 2 and VMID), the devices' vDEVICEs, the
/// vEVENTQ and the vSMMU, and routes the physical drains through the Router.
pub fn init(smmu: &'static DemoSmmu, s2: &Stage2Tables) -> Result<(), Error> {
    let id = ROUTER.alloc_viommu(ViommuConfig {
        s2: crate::vm::iommu::s2_config(s2)?,
        features: *smmu.features(),
        coherent_devices: true,
        repeat_tlbi_cfgi: false,
    })?;
    for (dev_id, sid) in (1..).zip(DEVICE_SIDS) {
        ROUTER.alloc_vdevice(id, dev_id, StreamId(sid), u64::from(VSID_BASE + sid), false)?;
    }
    ROUTER.alloc_veventq(id, VeventqType::ArmSmmuv3, VEVENTQ_DEPTH)?;
    smmu::set_routing(true);
    let v = VSmmu::new(
        CONFIG,
        RouterBackend::new(&ROUTER, smmu, id),
        GuestRam,
        GuestLines,
    )?;
    VSMMU.call_once(|| v);
    Ok(())
}

/// A trapped read of the window at `offset`; `None` before [`init`].
pub fn read(offset: u64, size: u8) -> Option<u64> {
    if offset == EVENTQ_PROD {
        note_guest_reads_prod();
    }
    VSMMU.get().map(|v| v.read(offset, usize::from(size)))
}

/// A trapped write of the window at `offset`; `false` before [`init`].
pub fn write(offset: u64, size: u8, value: u64) -> bool {
    VSMMU
        .get()
        .map(|v| v.write(offset, usize::from(size), value))
        .is_some()
}

/// Moves what the physical drain routed to the guest into its event queue (never waits).
pub fn deliver_events() -> Option<DeliverStats> {
    let d = VSMMU.get().map(VSmmu::deliver_events)?;
    if d.written != 0 || d.lost != 0 {
        // The first delivery the guest has not looked at yet starts the latency measurement.
        let _ = DELIVERED_AT.compare_exchange(
            0,
            CNTPCT_EL0.get(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }
    Some(d)
}

/// SMMU_EVENTQ_PROD in the window (page 1): the guest's event-queue handler reads it first.
const EVENTQ_PROD: u64 = 0x1_0000 + offset::EVENTQ_PROD as u64;
/// Counter value at a delivery the guest has not yet read EVENTQ_PROD after (0: none).
static DELIVERED_AT: AtomicU64 = AtomicU64::new(0);
static LATENCIES: AtomicU32 = AtomicU32::new(0);

/// Fault-to-guest latency: from the delivery into the guest's queue (in the physical IRQ's
/// handler, right after the drain) to the guest's first EVENTQ_PROD read, in counter ticks (the
/// guest's timer: CNTVOFF_EL2 is 0).
fn note_guest_reads_prod() {
    let at = DELIVERED_AT.swap(0, Ordering::Relaxed);
    if at != 0 && LATENCIES.fetch_add(1, Ordering::Relaxed) < 8 {
        let ticks = CNTPCT_EL0.get().wrapping_sub(at);
        defmt::info!(
            "vSMMU: fault to guest: EVENTQ_PROD read {=u64} counter ticks after the delivery ({=u64} Hz)",
            ticks,
            CNTFRQ_EL0.get()
        );
    }
}

/// The vSMMU's counters, once it exists.
pub fn stats() -> Option<VSmmuStats> {
    VSMMU.get().map(VSmmu::stats)
}

/// Guest RAM by IPA: stage 2 maps it one to one, and the vSMMU may read or write nothing else.
pub struct GuestRam;

fn guest_ram(ipa: Ipa, len: usize) -> Result<usize, OutsideRam> {
    let end = ipa.0.checked_add(len as u64).ok_or(OutsideRam(ipa))?;
    if ipa.0 >= board::GUEST_RAM_BASE && end <= board::GUEST_RAM_BASE + board::GUEST_RAM_SIZE {
        Ok(ipa.0 as usize)
    } else {
        Err(OutsideRam(ipa))
    }
}

impl GuestMemory for GuestRam {
    fn read(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let base = guest_ram(ipa, buf.len())?;
        for (i, b) in buf.iter_mut().enumerate() {
            // SAFETY: inside guest RAM (checked above), which EL2 maps as normal memory at the
            // same address; volatile because the guest's devices may write it concurrently.
            *b = unsafe { ((base + i) as *const u8).read_volatile() };
        }
        Ok(())
    }

    fn write(&self, ipa: Ipa, data: &[u8]) -> Result<(), OutsideRam> {
        let base = guest_ram(ipa, data.len())?;
        for (i, b) in data.iter().enumerate() {
            // SAFETY: as in `read`; guest RAM holds nothing of the hypervisor's.
            unsafe { ((base + i) as *mut u8).write_volatile(*b) };
        }
        Ok(())
    }
}

/// The vSMMU's lines, injected through the list registers on the INTIDs the guest's device
/// tree names (QEMU's own), with HW = 0: the physical lines stay the hypervisor's.
pub struct GuestLines;

impl GuestIrq for GuestLines {
    fn raise(&self, line: IrqLine) {
        let [eventq, _priq, cmdq_sync, gerror] = VIRTUAL_INTIDS;
        let intid = match line {
            IrqLine::Eventq => eventq,
            IrqLine::CmdqSync => cmdq_sync,
            IrqLine::Gerror => gerror,
        };
        vgic::inject(Pending {
            intid,
            priority: 0x80,
            hw: false,
        });
    }
}
