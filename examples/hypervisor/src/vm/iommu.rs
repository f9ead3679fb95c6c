//! The VM's DMA through the physical SMMU: every StreamID of PCIe bus 0 gets a stage-2 STE that
//! points at the VM's own stage-2 tables (the ones the CPU walks), so a passed-through device
//! reaches the guest's RAM and nothing else. Its faults are recorded at EL2: the SMMU's
//! interrupts stay with the hypervisor and are drained in the IRQ path (drivers/smmu.rs).

use arm_smmuv3::smmu::{Config, StrtabFormat};
use arm_smmuv3::ste::{Granule, S2Config, Ste};
use arm_smmuv3::{Error, StreamId, Vmid};

use super::vcpu::VMID;
use crate::smmu::{self, DemoSmmu};
use crate::stage2::Stage2Tables;

/// A linear stream table for the 256 StreamIDs of PCIe bus 0 (edu, 00:01.0, is StreamID 0x8).
const CONFIG: Config = Config {
    sid_bits: Some(8),
    strtab: StrtabFormat::Linear,
    ..Config::DEFAULT
};

/// Takes the SMMU over and gives every StreamID of bus 0 the VM's stage 2. Returns the driver.
pub fn attach(s2: &Stage2Tables) -> Result<&'static DemoSmmu, Error> {
    let smmu = smmu::take_over(CONFIG)?;
    let cfg = S2Config::new(
        Vmid(VMID as u16),
        s2.s2ttb(),
        Stage2Tables::IPA_BITS,
        Granule::Size4K,
        Stage2Tables::START_LEVEL,
    )?;
    let ste = Ste::stage2(&cfg);
    for sid in 0..=0xff {
        smmu.set_ste(StreamId(sid), &ste)?;
    }
    Ok(smmu)
}
