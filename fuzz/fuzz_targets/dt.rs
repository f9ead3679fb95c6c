//! Flattened device trees, corrupted: the reader returns a typed error or a topology whose
//! every ID mapping names a discovered SMMU and whose lookups stay consistent; it never panics,
//! reads out of bounds or recurses without bound. Seed with tests/fixtures/dt/**/*.dtb.
#![no_main]

use arm_smmuv3::discovery::dt::DeviceTree;
use arm_smmuv3::discovery::{MapOwner, SmmuIndex};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dt) = DeviceTree::new(data) else {
        return;
    };
    assert!(dt.data().len() <= data.len());
    let Ok(topo) = dt.topology() else {
        return;
    };
    for (i, smmu) in topo.smmus().iter().enumerate() {
        assert!(topo.smmu(SmmuIndex(i as u8)) == Some(smmu));
        let _ = smmu.config();
    }
    for m in topo.id_maps() {
        assert!(topo.smmu(m.smmu).is_some());
        if let MapOwner::PciRoot { segment, .. } = m.owner {
            // The first RID a mapping covers must resolve through the topology too.
            if !m.single
                && m.count > 0
                && m.input_base <= 0xffff
                && m.input_base & m.mask == m.input_base
            {
                let rid = m.input_base as u16;
                assert!(topo.pci_stream(segment, rid).is_ok());
            }
        }
    }
    for (_, c) in topo.cmdqvs() {
        let _ = c.base;
    }
    let _ = dt.device("/bus@0/dma-controller@8400000");
});
