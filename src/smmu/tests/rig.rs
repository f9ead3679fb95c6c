//! The rig most tests use: the driver over the model, with a log of every MMIO access.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::{Arc, Mutex};
use std::vec::Vec;

use super::super::*;
use crate::error::{Error, WaitFor};
use crate::event::{EventRecord, EvtqEntry};
use crate::fake::{ModelArena, ModelPlatform, SmmuModel};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Iova, PhysAddr, StreamId, Vmid};
use crate::platform::{MmioAccess, Platform};
use crate::ste::{Granule, S2Config, Ste};

/// One MMIO access: page (0/1), offset, write.
pub(super) type Access = (u8, usize, bool);

/// The model's platform, plus a log of every MMIO access in order.
#[derive(Clone)]
pub(super) struct LogPlatform {
    pub(super) inner: ModelPlatform,
    pub(super) p0: usize,
    pub(super) p1: usize,
    pub(super) log: Arc<Mutex<Vec<Access>>>,
}

impl Platform for LogPlatform {
    fn now_us(&self) -> u64 {
        self.inner.now_us()
    }
    fn relax(&self, what: WaitFor) {
        self.inner.relax(what);
    }
    fn wait_for_event(&self, what: WaitFor) {
        self.inner.wait_for_event(what);
    }
    fn mmio(&self, addr: usize, access: MmioAccess) {
        let entry = if (self.p1..self.p1 + 0x10000).contains(&addr) {
            (1, addr - self.p1, access == MmioAccess::Write)
        } else {
            (0, addr.wrapping_sub(self.p0), access == MmioAccess::Write)
        };
        self.log.lock().unwrap().push(entry);
        self.inner.mmio(addr, access);
    }
}

pub(super) type Drv = Smmu<LogPlatform, ModelArena>;

pub(super) struct Rig {
    pub(super) m: Arc<SmmuModel>,
    pub(super) d: Drv,
    pub(super) log: Arc<Mutex<Vec<Access>>>,
}

impl Rig {
    pub(super) fn new(ids: IdRegs, config: Config) -> Result<Self, Error> {
        let m = SmmuModel::new(ids);
        let log = Arc::new(Mutex::new(Vec::new()));
        let plat = LogPlatform {
            inner: m.platform(),
            p0: m.page0_ptr().as_ptr() as usize,
            p1: m.page1_ptr().as_ptr() as usize,
            log: log.clone(),
        };
        // SAFETY: the model's pages live as long as `m`, which the rig keeps; nothing else
        // drives them.
        let d = unsafe { Smmu::new(m.page0(), m.page1(), plat, m.lend_dma(), config) }?;
        Ok(Self { m, d, log })
    }

    pub(super) fn qemu(config: Config) -> Self {
        let r = Self::new(QEMU_VIRT, config).unwrap();
        r.d.reset().unwrap();
        r
    }

    pub(super) fn take_log(&self) -> Vec<Access> {
        core::mem::take(&mut *self.log.lock().unwrap())
    }
}

pub(super) fn with_idr0(bits: u32) -> IdRegs {
    IdRegs {
        idr0: QEMU_VIRT.idr0 | bits,
        ..QEMU_VIRT
    }
}

pub(super) fn s2(vmid: u16, ttb: u64) -> Ste {
    let cfg = S2Config::for_ipa_bits(Vmid(vmid), PhysAddr(ttb), 40, Granule::Size4K).unwrap();
    Ste::stage2(&cfg)
}

pub(super) fn evt(sid: u32, iova: u64) -> EvtqEntry {
    EventRecord::translation_fault(StreamId(sid), Iova(iova), true, false).encode()
}
