//! ACPI IORTs, corrupted: the reader returns a typed error or a consistent topology; it never
//! panics or reads outside the table. The checksum byte is recomputed first so that the
//! mutations reach the node walk. Seed with tests/fixtures/iort/grace.iort.
#![no_main]

use arm_smmuv3::PhysAddr;
use arm_smmuv3::discovery::iort::{AcpiCmdqv, Iort};
use arm_smmuv3::discovery::{MapOwner, SmmuIndex};
use libfuzzer_sys::fuzz_target;

const CMDQVS: [AcpiCmdqv; 2] = [
    AcpiCmdqv {
        uid: 0,
        base: PhysAddr(0x1120_0000),
        size: 0x83_0000,
        irq: None,
    },
    AcpiCmdqv {
        uid: 1,
        base: PhysAddr(0x1220_0000),
        size: 0x83_0000,
        irq: None,
    },
];

fuzz_target!(|data: &[u8]| {
    let mut table = data.to_vec();
    if table.len() > 9 {
        table[9] = 0;
        let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
        table[9] = 0u8.wrapping_sub(sum);
    }
    for blob in [data, &table[..]] {
        let Ok(iort) = Iort::new(blob) else {
            continue;
        };
        let _ = iort.named_component("\\_SB.ETH0");
        let Ok(topo) = iort.topology(&CMDQVS) else {
            continue;
        };
        for (i, smmu) in topo.smmus().iter().enumerate() {
            assert!(topo.smmu(SmmuIndex(i as u8)) == Some(smmu));
            if let arm_smmuv3::discovery::FwNode::Iort { offset, .. } = smmu.fw {
                assert!(iort.smmu_model(offset).is_some());
            }
        }
        for m in topo.id_maps() {
            assert!(topo.smmu(m.smmu).is_some());
            if let MapOwner::PciRoot { segment, .. } = m.owner {
                if m.input_base <= 0xffff {
                    assert!(topo.pci_stream(segment, m.input_base as u16).is_ok());
                }
            }
        }
    }
});
