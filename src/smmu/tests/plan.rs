//! Pure tests of the driver's sizing and configuration logic.

use super::super::*;
use crate::features::QEMU_VIRT;
use crate::platform::BumpDma;

type S = Smmu<NullPlatform, BumpDma>;

/// A platform for compile-only tests.
struct NullPlatform;
impl Platform for NullPlatform {
    fn now_us(&self) -> u64 {
        0
    }
}

#[test]
fn qemu_plan_is_two_level_with_linux_split() {
    let f = Features::decode(QEMU_VIRT);
    let plan = S::memory_plan(&f, &Config::default()).unwrap();
    assert_eq!(
        plan.layout,
        StreamTableLayout::TwoLevel { log2: 16, split: 8 }
    );
    assert_eq!(
        plan.strtab,
        Region {
            bytes: 256 * 8,
            align: 2048
        }
    );
    assert_eq!(
        plan.l2_table,
        Some(Region {
            bytes: 16384,
            align: 16384
        })
    );
    assert_eq!(plan.l2_tables_max, 256);
    assert_eq!(
        plan.cmdq,
        Region {
            bytes: 4096,
            align: 4096
        }
    );
    assert_eq!(
        plan.evtq,
        Region {
            bytes: 4096,
            align: 4096
        }
    );
    assert_eq!(plan.priq, None);
}

#[test]
fn plan_refuses_what_the_smmu_lacks() {
    let f = Features::decode(QEMU_VIRT);
    let too_many = Config {
        sid_bits: Some(17),
        ..Config::default()
    };
    assert_eq!(
        S::memory_plan(&f, &too_many),
        Err(Error::Unsupported(Feature::StreamIdBits))
    );
    let big_q = Config {
        cmdq_log2: Some(20),
        ..Config::default()
    };
    let log2_over = |value, max| Error::OutOfRange {
        what: Quantity::QueueLog2,
        value,
        max,
    };
    // The limit is the architecture's (19) here, IDR1.CMDQS's when that is smaller.
    assert_eq!(S::memory_plan(&f, &big_q), Err(log2_over(20, 19)));
    let small_idr = Features { cmdq_log2: 8, ..f };
    let nine = Config {
        cmdq_log2: Some(9),
        ..Config::default()
    };
    assert_eq!(S::memory_plan(&small_idr, &nine), Err(log2_over(9, 8)));
    let linear = Config {
        sid_bits: Some(8),
        strtab: StrtabFormat::Linear,
        ..Config::default()
    };
    let plan = S::memory_plan(&f, &linear).unwrap();
    assert_eq!(plan.layout, StreamTableLayout::Linear { log2: 8 });
    assert_eq!(plan.strtab.bytes, 256 * 64);
    assert!(plan.at_probe_bytes() >= 256 * 64 + 4096 + 4096);
}
