//! Set-ups that host tests, benches and fuzz targets share: the real driver on a reset model,
//! and a vIOMMU of a [`Router`] with its devices bound and a vEVENTQ open.
//!
//! ```
//! use arm_smmuv3::fake::rig;
//! use arm_smmuv3::smmu::Config;
//! use arm_smmuv3::viommu::Router;
//! use arm_smmuv3::{PhysAddr, StreamId, Vmid};
//!
//! let (model, smmu) = rig::reset_driver(Config::default()).unwrap();
//! let router: Box<Router<2, 16, 4, 16, 8>> = Box::new(Router::new());
//! let (id, s2) = rig::viommu(&router, Vmid(3), PhysAddr(0x4000_0000), &[(1, StreamId(0x10), 2)], 8)
//!     .unwrap();
//! assert_eq!(s2.vmid, Vmid(3));
//! # let _ = (model, smmu, id);
//! ```

use std::sync::Arc;

use super::{DriverOnModel, SmmuModel};
use crate::error::Error;
use crate::features::{Features, IdRegs};
use crate::ids::{PhysAddr, StreamId, Vmid};
use crate::iommufd::{VeventHeader, VeventqType};
use crate::smmu::Config;
use crate::ste::{Granule, S2Config};
use crate::viommu::{Router, ViommuConfig, ViommuId};

/// The real driver on a QEMU `virt` model ([`SmmuModel::qemu_virt`]), probed with `config` and
/// reset (every StreamID aborts, the queues are enabled).
pub fn reset_driver(config: Config) -> Result<(Arc<SmmuModel>, DriverOnModel), Error> {
    reset_driver_on(crate::features::QEMU_VIRT, config)
}

/// The real driver on a model presenting `idregs` ([`SmmuModel::new`]), probed with `config`
/// and reset.
pub fn reset_driver_on(
    idregs: IdRegs,
    config: Config,
) -> Result<(Arc<SmmuModel>, DriverOnModel), Error> {
    let model = SmmuModel::new(idregs);
    let smmu = model.driver(config)?;
    smmu.reset()?;
    Ok((model, smmu))
}

/// The configuration of a vIOMMU for a VM with VMID `vmid` whose stage-2 tables (40-bit IPA
/// space, 4 KiB granule) start at `s2_root`, on a QEMU `virt` SMMU with coherent devices.
pub fn viommu_config(vmid: Vmid, s2_root: PhysAddr) -> Result<ViommuConfig, Error> {
    Ok(ViommuConfig {
        s2: S2Config::for_ipa_bits(vmid, s2_root, 40, Granule::Size4K)?,
        features: Features::decode(Features::QEMU_VIRT_IDREGS),
        coherent_devices: true,
        repeat_tlbi_cfgi: false,
    })
}

/// A vIOMMU of `router` for a VM with VMID `vmid` whose stage-2 tables (40-bit IPA space, 4 KiB
/// granule) start at `s2_root`, on a QEMU `virt` SMMU with coherent devices; each
/// `(dev_id, psid, vsid)` of `devices` bound as a vDEVICE, and an SMMUv3 vEVENTQ of `depth`
/// records. Returns the vIOMMU and its stage-2 configuration.
pub fn viommu<const V: usize, const S: usize, const D: usize, const Q: usize, const F: usize>(
    router: &Router<V, S, D, Q, F>,
    vmid: Vmid,
    s2_root: PhysAddr,
    devices: &[(u32, StreamId, u64)],
    depth: u32,
) -> Result<(ViommuId, S2Config), Error> {
    let cfg = viommu_config(vmid, s2_root)?;
    let id = router.alloc_viommu(cfg)?;
    for &(dev_id, psid, vsid) in devices {
        router.alloc_vdevice(id, dev_id, psid, vsid, false)?;
    }
    router.alloc_veventq(id, VeventqType::ArmSmmuv3, depth)?;
    Ok((id, cfg.s2))
}

/// Splits what a vEVENTQ `read` returned into its records: each header with the 32-byte SMMUv3
/// event that follows it, or `None` for a LOST_EVENTS marker (a header alone).
///
/// # Panics
/// If `buf` ends inside a header or an event (a test's read returned a torn record).
pub fn vevents(buf: &[u8]) -> Vec<(VeventHeader, Option<[u64; 4]>)> {
    let mut out = Vec::new();
    let mut rest = buf;
    while !rest.is_empty() {
        let h = VeventHeader::from_prefix(rest).expect("a whole vEVENT header");
        rest = &rest[core::mem::size_of::<VeventHeader>()..];
        if h.is_lost_events() {
            out.push((h, None));
            continue;
        }
        let (evt, tail) = rest.split_at_checked(32).expect("a whole 32-byte event");
        let evt: [u64; 4] =
            core::array::from_fn(|i| u64::from_le_bytes(evt[8 * i..8 * i + 8].try_into().unwrap()));
        rest = tail;
        out.push((h, Some(evt)));
    }
    out
}

/// A guest's interrupt lines for a [`VSmmu`](crate::vsmmu::VSmmu) under test: records every
/// line raised, in order.
#[derive(Debug, Default)]
pub struct RaisedLines(pub core::cell::RefCell<Vec<crate::vsmmu::IrqLine>>);

impl crate::vsmmu::GuestIrq for RaisedLines {
    fn raise(&self, line: crate::vsmmu::IrqLine) {
        self.0.borrow_mut().push(line);
    }
}
