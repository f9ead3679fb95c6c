//! The rig most tests use: the driver over the model, with a log of every MMIO access.

use std::sync::Arc;
use std::vec::Vec;

use super::super::*;
use super::recorder::{Ev, Rec};
use crate::error::Error;
use crate::event::{EventRecord, EvtqEntry};
use crate::fake::{ModelArena, OverflowStyle, SmmuModel};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Iova, PhysAddr, StreamId, Vmid};
use crate::ste::{Granule, S2Config, Ste};

/// One MMIO access: page (0/1), offset, write.
pub(super) type Access = (u8, usize, bool);

/// The driver on the model's platform, recording every MMIO access in order ([`Rec`] without
/// the coherency checker).
pub(super) type Drv = Smmu<Rec, ModelArena>;

pub(super) struct Rig {
    pub(super) m: Arc<SmmuModel>,
    pub(super) d: Drv,
    rec: Rec,
}

impl Rig {
    pub(super) fn new(ids: IdRegs, config: Config) -> Result<Self, Error> {
        let m = SmmuModel::new(ids);
        let rec = Rec::new(&m, false);
        // SAFETY: the model's pages live as long as `m`, which the rig keeps; nothing else
        // drives them.
        let d = unsafe { Smmu::new(m.page0(), m.page1(), rec.clone(), m.lend_dma(), config) }?;
        Ok(Self { m, d, rec })
    }

    pub(super) fn qemu(config: Config) -> Self {
        let r = Self::new(QEMU_VIRT, config).unwrap();
        r.d.reset().unwrap();
        r
    }

    /// On QEMU's ID registers, reset, with an event queue of 8 slots that overflows in
    /// `style`.
    pub(super) fn small_evtq(style: OverflowStyle) -> Self {
        let r = Self::qemu(Config {
            evtq_log2: Some(3),
            ..Config::default()
        });
        r.m.set_event_overflow(style);
        r
    }

    /// The register accesses since the last call (cache maintenance left out).
    pub(super) fn take_log(&self) -> Vec<Access> {
        let log = self.rec.take().into_iter();
        log.filter_map(|e| match e {
            Ev::Mmio(page, off, write, _) => Some((page, off, write)),
            Ev::Flush(..) | Ev::Inval(..) => None,
        })
        .collect()
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
