//! Probe: what the driver refuses, and the memory plan against what it really allocates.

use core::sync::atomic::Ordering;
use std::vec::Vec;

use super::super::*;
use super::recorder::*;
use super::rig::*;
use crate::command::Command;
use crate::error::{Error, Quantity};
use crate::fake::DmaOutcome;
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Iova, PhysAddr, StreamId};
use crate::platform::{BumpDma, DmaMemory};
use crate::ste::{Ste, StreamTableLayout};

fn plan_regions(plan: &MemoryPlan) -> Vec<Region> {
    let mut v = std::vec![plan.strtab];
    v.extend(plan.l2_index);
    v.extend([plan.cmdq, plan.evtq]);
    v.extend(plan.priq);
    v
}

fn regions(a: &[Alloc]) -> Vec<Region> {
    a.iter()
        .map(|&(_, bytes, align)| Region { bytes, align })
        .collect()
}

#[test]
fn probe_refuses_what_it_cannot_drive() {
    let no_aarch64 = IdRegs {
        idr0: QEMU_VIRT.idr0 & !(0b11 << 2) | (1 << 2),
        ..QEMU_VIRT
    };
    assert_eq!(
        Rig::new(no_aarch64, Config::default()).err(),
        Some(Error::Unsupported(Feature::Aarch64Tables))
    );
    let need_more_sids = Config {
        sid_bits: Some(20),
        ..Config::default()
    };
    assert_eq!(
        Rig::new(QEMU_VIRT, need_more_sids).err(),
        Some(Error::Unsupported(Feature::StreamIdBits))
    );
    let big_evtq = Config {
        evtq_log2: Some(20),
        ..Config::default()
    };
    assert_eq!(
        Rig::new(QEMU_VIRT, big_evtq).err(),
        Some(Error::OutOfRange {
            what: Quantity::QueueLog2,
            value: 20,
            max: 19
        })
    );
    let msi = Config {
        sync: SyncMode::Msi,
        ..Config::default()
    };
    assert_eq!(
        Rig::new(QEMU_VIRT, msi).err(),
        Some(Error::Unsupported(Feature::Msi))
    );
    let sev = Config {
        sync: SyncMode::Sev,
        ..Config::default()
    };
    assert_eq!(
        Rig::new(QEMU_VIRT, sev).err(),
        Some(Error::Unsupported(Feature::Sev))
    );
    // Before reset, the command queue is off.
    let r = Rig::new(QEMU_VIRT, Config::default()).unwrap();
    assert_eq!(r.d.submit(&[]), Err(Error::Disabled));
}

#[test]
fn memory_plan_is_exactly_what_new_allocates() {
    let cases = [
        (QEMU_VIRT, Config::default()),
        (pri_ids(9), Config::default()),
        (
            pri_ids(9),
            Config {
                strtab: StrtabFormat::Linear,
                sid_bits: Some(10),
                cmdq_log2: Some(5),
                evtq_log2: Some(9),
                priq_log2: Some(9),
                ..Config::default()
            },
        ),
        (
            QEMU_VIRT,
            Config {
                strtab: StrtabFormat::TwoLevel,
                sid_bits: Some(6),
                ..Config::default()
            },
        ),
    ];
    for (idr, config) in cases {
        let plan = Smmu::<Rec, CountingDma>::memory_plan(&Features::decode(idr), &config).unwrap();
        let m = model(idr);
        let dma = CountingDma::new(&m, usize::MAX);
        let h = H::with(m, dma.clone(), config, false).unwrap();
        assert_eq!(*h.d.plan(), plan);
        let a = dma.allocs();
        assert_eq!(regions(&a), plan_regions(&plan), "{config:?}");
        for &(pa, _, align) in &a {
            assert_eq!(pa % align as u64, 0);
        }
        let exact: usize = a.iter().map(|x| x.1).sum();
        assert!(exact <= plan.at_probe_bytes());
        h.d.reset().unwrap();
        // Level-2 tables: one per group of 2^split StreamIDs, on first use, as planned.
        h.d.set_ste(StreamId(1), &rec_s2(1)).unwrap();
        h.d.set_ste(StreamId(2), &rec_s2(2)).unwrap();
        let a2 = dma.allocs();
        match plan.l2_table {
            Some(l2) => {
                assert_eq!(regions(&a2[a.len()..]), [l2]);
                assert_eq!(a2.last().unwrap().0 % l2.align as u64, 0);
                assert_eq!(
                    plan.max_bytes(),
                    plan.at_probe_bytes() + l2.worst_case() * plan.l2_tables_max as usize
                );
            }
            None => {
                assert_eq!(a2.len(), a.len());
                assert_eq!(plan.max_bytes(), plan.at_probe_bytes());
            }
        }
    }
}

#[test]
fn at_probe_bytes_suffice_from_a_misaligned_bump_region() {
    let idr = pri_ids(9);
    let config = Config::default();
    let plan = Smmu::<Rec, BumpDma>::memory_plan(&Features::decode(idr), &config).unwrap();
    let m = model(idr);
    let big = m
        .dma()
        .alloc(plan.at_probe_bytes() + 0x10000, 0x10000)
        .unwrap();
    // One byte past a 64 KiB boundary: every piece needs its full alignment padding.
    // SAFETY: the region is zeroed model memory, used by nothing else, and the SMMU model sees
    // it at `paddr`.
    let bump = unsafe { BumpDma::new(big.vaddr.add(1), big.paddr.add(1), plan.at_probe_bytes()) };
    let h = H::with(m.clone(), bump, config, false).unwrap();
    h.d.reset().unwrap();
    h.d.submit(&[Command::CfgiAll]).unwrap();
}

#[test]
fn one_byte_short_is_no_memory_at_probe() {
    for idr in [QEMU_VIRT, pri_ids(9)] {
        let config = Config::default();
        let plan = Smmu::<Rec, CountingDma>::memory_plan(&Features::decode(idr), &config).unwrap();
        let need: usize = plan_regions(&plan).iter().map(|r| r.bytes).sum();
        let m = model(idr);
        let res = H::with(m.clone(), CountingDma::new(&m, need - 1), config, false);
        assert!(matches!(res, Err(Error::NoMemory)));
        // Short at each earlier piece too.
        let sizes: Vec<usize> = plan_regions(&plan).iter().map(|r| r.bytes).collect();
        for k in 0..sizes.len() {
            let budget: usize = sizes[..k].iter().sum::<usize>() + sizes[k] - 1;
            let m = model(idr);
            let dma = CountingDma::new(&m, budget);
            assert!(matches!(
                H::with(m, dma.clone(), config, false),
                Err(Error::NoMemory)
            ));
            assert_eq!(dma.allocs().len(), k, "stopped at piece {k}");
        }
        let m = model(idr);
        let dma = CountingDma::new(&m, need);
        let h = H::with(m, dma.clone(), config, false).unwrap();
        h.d.reset().unwrap();
        assert_eq!(dma.budget.load(Ordering::SeqCst), 0);
    }
}

#[test]
fn a_level2_table_one_byte_short_fails_cleanly() {
    let config = Config::default();
    let plan =
        Smmu::<Rec, CountingDma>::memory_plan(&Features::decode(QEMU_VIRT), &config).unwrap();
    let l2 = plan.l2_table.unwrap();
    let need: usize = plan_regions(&plan).iter().map(|r| r.bytes).sum();
    let m = model(QEMU_VIRT);
    let dma = CountingDma::new(&m, need + l2.bytes - 1);
    let h = H::with(m, dma.clone(), config, false).unwrap();
    h.d.reset().unwrap();
    let sid = StreamId(0x321);
    let strtab = dma.allocs()[0];
    let table = |h: &H| {
        let mut b = std::vec![0u8; strtab.1];
        h.m.dma().read(PhysAddr(strtab.0), &mut b).unwrap();
        b
    };
    let before = table(&h);
    h.m.take_commands();
    h.m.reset_mmio_counts();
    assert_eq!(h.d.set_ste(sid, &rec_s2(1)), Err(Error::NoMemory));
    assert_eq!(table(&h), before, "L1 table unchanged");
    assert_eq!(h.m.take_commands(), [], "nothing issued");
    assert_eq!(h.m.mmio_counts().total(), 0);
    assert_eq!(h.d.ste(sid), Ok(Ste::INVALID));
    assert_eq!(h.m.ste_in_memory(sid), None);
    assert!(!matches!(
        h.m.dma_access(sid, None, Iova(0), false),
        DmaOutcome::Completed { .. }
    ));
    assert_eq!(h.d.clear_ste(sid), Ok(()));
    // One more byte and the same call succeeds.
    dma.budget.fetch_add(1, Ordering::SeqCst);
    h.d.set_ste(sid, &rec_s2(1)).unwrap();
    assert_eq!(h.m.ste_in_memory(sid), Some(rec_s2(1)));
    assert_eq!(dma.allocs().len(), 5);
}

#[test]
fn forced_two_level_never_covers_more_streamids_than_asked() {
    let f = Features::decode(QEMU_VIRT);
    let plan = |bits| {
        let config = Config {
            strtab: StrtabFormat::TwoLevel,
            sid_bits: Some(bits),
            ..Config::default()
        };
        Smmu::<Rec, CountingDma>::memory_plan(&f, &config).map(|p| p.layout)
    };
    assert_eq!(
        plan(16),
        Ok(StreamTableLayout::TwoLevel { log2: 16, split: 8 })
    );
    assert_eq!(
        plan(8),
        Ok(StreamTableLayout::TwoLevel { log2: 8, split: 8 })
    );
    // Below Linux's SPLIT of 8, the smallest legal SPLIT (6) keeps LOG2SIZE at the bits asked.
    assert_eq!(
        plan(7),
        Ok(StreamTableLayout::TwoLevel { log2: 7, split: 6 })
    );
    assert_eq!(
        plan(6),
        Ok(StreamTableLayout::TwoLevel { log2: 6, split: 6 })
    );
    let five = plan(5);
    assert_eq!(
        five,
        Err(Error::TooSmall {
            what: Quantity::StreamIdBits,
            value: 5,
            min: 6
        })
    );
    assert_eq!(five.map_err(Error::errno), Err(-22));
}
