//! Stream table walk, STE cache, simulated DMA outcomes and records, STE watcher.

use super::util::Rig;
use crate::cd::{Cd, CdConfig};
use crate::command::Command;
use crate::event::{EventId, EventRecord, FaultClass};
use crate::fake::{DmaOutcome, FaultKind};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Asid, Iova, PhysAddr, StreamId, SubstreamId, Vmid};
use crate::platform::DmaBuf;
use crate::ste::{Granule, S1Dss, S1Fmt, S1StreamConfig, S2Config, Ste};

const RECINVSID: u32 = 1 << 1;

fn s2cfg(r: &Rig) -> S2Config {
    let ttb = r.alloc(4096);
    S2Config::for_ipa_bits(Vmid(5), ttb.paddr, 39, Granule::Size4K).unwrap()
}

/// A stage-1 STE whose linear CD table of `2^cd_max` CDs is all valid with CD.R = `record`.
fn s1_ste(r: &Rig, cd_max: u8, dss: S1Dss, record: bool) -> (Ste, DmaBuf) {
    let n = 1usize << cd_max;
    let cds = r.alloc(64 * n);
    let mut cfg = CdConfig::new(Asid(1), PhysAddr(0x8010_0000), 25, Granule::Size4K, 2, 0);
    cfg.r = record;
    for i in 0..n {
        r.smmu
            .dma()
            .write_dwords(cds.paddr.add(64 * i as u64), &Cd::new(&cfg).0)
            .unwrap();
    }
    let mut s1 = S1StreamConfig::new(cds.paddr, S1Fmt::Linear, cd_max);
    s1.dss = dss;
    (Ste::stage1(&s1), cds)
}

/// Linear table of 2^log2 STEs, event queue, command queue, CR2.RECINVSID, SMMUEN.
fn live(r: &Rig, log2: u8) -> (DmaBuf, DmaBuf, DmaBuf) {
    let t = r.linear_strtab(log2);
    r.write32("CR2", RECINVSID);
    let e = r.enable_evtq(4);
    let c = r.enable_cmdq(4);
    r.enable_smmu();
    (t, e, c)
}

fn event(r: &Rig, e: &DmaBuf, i: u32) -> EventRecord {
    EventRecord::decode(&r.event_at(e, i))
}

fn dma(r: &Rig, sid: u32, iova: u64, write: bool) -> DmaOutcome {
    r.smmu.dma_access(StreamId(sid), None, Iova(iova), write)
}

const OK: DmaOutcome = DmaOutcome::Completed {
    pa: PhysAddr(0x1234),
    translated: false,
};

#[test]
fn gbpa_decides_while_smmuen_is_clear() {
    let r = Rig::qemu();
    assert_eq!(dma(&r, 1, 0x1234, false), OK);
    r.write32("GBPA", (1 << 31) | (1 << 20));
    assert_eq!(dma(&r, 1, 0x1234, false), DmaOutcome::Aborted);
}

#[test]
fn bypass_abort_and_invalid_stes() {
    let r = Rig::qemu();
    let (t, e, _c) = live(&r, 4);
    r.write_linear_ste(&t, 1, Ste::bypass(true));
    r.write_linear_ste(&t, 2, Ste::INVALID);
    assert_eq!(dma(&r, 1, 0x1234, true), OK);
    assert_eq!(
        dma(&r, 3, 0x1234, true),
        DmaOutcome::Aborted,
        "abort STE: silent"
    );
    assert_eq!(r.read32("EVENTQ_PROD"), 0);
    assert_eq!(
        dma(&r, 2, 0x1234, false),
        DmaOutcome::Faulted(EventId::C_BAD_STE)
    );
    assert_eq!(r.read32("EVENTQ_PROD"), 1);
    // QEMU's raw record for a V=0 STE: type 4, SID, everything else 0.
    assert_eq!(r.event_at(&e, 0).0, [4 | (2 << 32), 0, 0, 0]);
}

#[test]
fn stes_are_cached_until_cfgi() {
    let r = Rig::qemu();
    let (t, _e, c) = live(&r, 4);
    r.write_linear_ste(&t, 5, Ste::bypass(false));
    assert_eq!(dma(&r, 5, 0x1234, false), OK);
    assert_eq!(r.smmu.cached_ste(StreamId(5)), Some(Ste::bypass(false)));
    // Replace it without CFGI: the old STE is still used (as QEMU), and the staleness shows.
    r.write_linear_ste(&t, 5, Ste::INVALID);
    assert!(r.smmu.ste_cache_stale(StreamId(5)));
    assert_eq!(dma(&r, 5, 0x1234, false), OK);
    // CFGI for another StreamID does not help.
    r.submit(
        &c,
        4,
        &[
            Command::CfgiSte {
                sid: StreamId(6),
                leaf: true,
            },
            Command::sync(),
        ],
    );
    assert_eq!(dma(&r, 5, 0x1234, false), OK);
    r.submit(
        &c,
        4,
        &[
            Command::CfgiSte {
                sid: StreamId(5),
                leaf: true,
            },
            Command::sync(),
        ],
    );
    assert!(!r.smmu.ste_cache_stale(StreamId(5)));
    assert_eq!(
        dma(&r, 5, 0x1234, false),
        DmaOutcome::Faulted(EventId::C_BAD_STE)
    );
}

#[test]
fn cfgi_range_and_cfgi_all_drop_cached_stes() {
    let r = Rig::qemu();
    let (t, _e, c) = live(&r, 5);
    for sid in [3, 4, 7, 8] {
        r.write_linear_ste(&t, sid, Ste::bypass(false));
        assert_eq!(dma(&r, sid, 0x1234, false), OK);
        r.write_linear_ste(&t, sid, Ste::ABORT);
    }
    // Range 1: 4 StreamIDs 4..=7.
    r.submit(
        &c,
        4,
        &[Command::CfgiSteRange {
            sid: StreamId(5),
            range: 1,
        }],
    );
    assert_eq!(dma(&r, 3, 0x1234, false), OK);
    assert_eq!(dma(&r, 4, 0x1234, false), DmaOutcome::Aborted);
    assert_eq!(dma(&r, 7, 0x1234, false), DmaOutcome::Aborted);
    assert_eq!(dma(&r, 8, 0x1234, false), OK);
    r.submit(&c, 4, &[Command::CfgiAll]);
    assert_eq!(dma(&r, 3, 0x1234, false), DmaOutcome::Aborted);
    assert_eq!(dma(&r, 8, 0x1234, false), DmaOutcome::Aborted);
}

#[test]
fn streamids_beyond_the_table_need_recinvsid_for_a_record() {
    let r = Rig::qemu();
    let (_t, e, _c) = live(&r, 4);
    assert_eq!(
        dma(&r, 16, 0, false),
        DmaOutcome::Faulted(EventId::C_BAD_STREAMID)
    );
    assert_eq!(event(&r, &e, 0).sid, StreamId(16));
    r.write32("CR2", 0);
    assert_eq!(dma(&r, 1 << 15, 0, false), DmaOutcome::Aborted);
    // Beyond IDR1.SIDSIZE (16 bits) too.
    r.write32("CR2", RECINVSID);
    assert_eq!(
        dma(&r, 1 << 16, 0, false),
        DmaOutcome::Faulted(EventId::C_BAD_STREAMID)
    );
}

#[test]
fn two_level_table_walk() {
    let r = Rig::qemu();
    let l1 = r.two_level_strtab(16);
    r.write32("CR2", RECINVSID);
    let e = r.enable_evtq(4);
    r.enable_smmu();
    // L1 SPAN = 0: C_BAD_STREAMID (QEMU's raw record: type 2, SID).
    assert_eq!(
        dma(&r, 8, 0, false),
        DmaOutcome::Faulted(EventId::C_BAD_STREAMID)
    );
    assert_eq!(r.event_at(&e, 0).0, [2 | (8 << 32), 0, 0, 0]);
    let l2 = r.add_l2(&l1, 1, 9);
    r.write_ste_at(l2.paddr.add(64 * 3), Ste::bypass(false));
    assert_eq!(dma(&r, 0x103, 0x1234, false), OK);
    assert_eq!(dma(&r, 0x104, 0x1234, false), DmaOutcome::Aborted);
    // A shorter L2 (SPAN 2: 2 STEs): StreamIDs of the group past it are invalid.
    let _ = r.add_l2(&l1, 2, 2);
    assert_eq!(dma(&r, 0x201, 0, false), DmaOutcome::Aborted);
    assert_eq!(
        dma(&r, 0x202, 0, false),
        DmaOutcome::Faulted(EventId::C_BAD_STREAMID)
    );
}

#[test]
fn unreachable_stream_table_is_f_ste_fetch() {
    let r = Rig::qemu();
    r.write64("STRTAB_BASE", 0x2_0000_0000);
    r.write32("STRTAB_BASE_CFG", 8);
    let e = r.enable_evtq(4);
    r.enable_smmu();
    assert_eq!(
        dma(&r, 2, 0, false),
        DmaOutcome::Faulted(EventId::F_STE_FETCH)
    );
    assert_eq!(event(&r, &e, 0).fetch_addr, 0x2_0000_0080);
}

#[test]
fn stage2_fault_records_match_qemu() {
    let r = Rig::qemu();
    let (t, e, _c) = live(&r, 4);
    r.write_linear_ste(&t, 8, Ste::stage2(&s2cfg(&r)));
    assert_eq!(
        dma(&r, 8, 0x8410_1000, true),
        DmaOutcome::Completed {
            pa: PhysAddr(0x8410_1000),
            translated: true
        }
    );
    r.smmu.set_fault(
        StreamId(8),
        0x8410_0000..0x8420_0000,
        FaultKind::Translation { stage2: true },
    );
    assert_eq!(
        dma(&r, 8, 0x8410_1000, true),
        DmaOutcome::Faulted(EventId::F_TRANSLATION)
    );
    assert_eq!(
        dma(&r, 8, 0x8410_0008, false),
        DmaOutcome::Faulted(EventId::F_TRANSLATION)
    );
    // QEMU's raw records (hw/arm/smmuv3.c), except that the IPA's page offset is not written.
    assert_eq!(
        r.event_at(&e, 0).to_le_words(),
        [0x10, 8, 0, 0x280, 0x8410_1000, 0, 0x8410_1000, 0]
    );
    let rd = event(&r, &e, 1);
    assert!(rd.rnw && rd.s2);
    assert_eq!(rd.class, FaultClass::In);
    assert_eq!((rd.input_addr, rd.ipa), (0x8410_0008, 0x8410_0000));
    // Faults are not cached.
    r.smmu.clear_faults();
    assert!(matches!(
        dma(&r, 8, 0x8410_1000, true),
        DmaOutcome::Completed { .. }
    ));
}

#[test]
fn unrecorded_stage2_faults_are_silent() {
    let r = Rig::qemu();
    let (t, _e, _c) = live(&r, 4);
    let mut cfg = s2cfg(&r);
    cfg.s2r = false;
    r.write_linear_ste(&t, 8, Ste::stage2(&cfg));
    r.smmu.set_fault(
        StreamId(8),
        0..u64::MAX,
        FaultKind::Permission { stage2: true },
    );
    assert_eq!(dma(&r, 8, 0x1000, true), DmaOutcome::Aborted);
    assert_eq!(r.read32("EVENTQ_PROD"), 0);
}

#[test]
fn stage_without_support_is_c_bad_ste() {
    // QEMU virt-9.0 stage=1: S2P = 0.
    let r = Rig::with(IdRegs {
        idr0: QEMU_VIRT.idr0 & !1,
        ..QEMU_VIRT
    });
    let (t, _e, _c) = live(&r, 4);
    r.write_linear_ste(&t, 8, Ste::stage2(&s2cfg(&r)));
    assert_eq!(
        dma(&r, 8, 0, false),
        DmaOutcome::Faulted(EventId::C_BAD_STE)
    );
}

#[test]
fn stage1_faults_follow_cd_r() {
    let r = Rig::qemu();
    let (t, e, _c) = live(&r, 4);
    let (ste, _cds) = s1_ste(&r, 0, S1Dss::Terminate, true);
    r.write_linear_ste(&t, 1, ste);
    let (ste, _cds) = s1_ste(&r, 0, S1Dss::Terminate, false);
    r.write_linear_ste(&t, 2, ste);
    for sid in [1, 2] {
        r.smmu.set_fault(
            StreamId(sid),
            0x4000..0x5000,
            FaultKind::Access { stage2: false },
        );
    }
    assert_eq!(
        dma(&r, 1, 0x4000, false),
        DmaOutcome::Faulted(EventId::F_ACCESS)
    );
    assert!(!event(&r, &e, 0).s2);
    assert_eq!(dma(&r, 2, 0x4000, false), DmaOutcome::Aborted);
    // A stage-2 fault does not apply to a stage-1-only stream.
    r.smmu.set_fault(
        StreamId(1),
        0x8000..0x9000,
        FaultKind::Translation { stage2: true },
    );
    assert!(matches!(
        dma(&r, 1, 0x8000, false),
        DmaOutcome::Completed {
            translated: true,
            ..
        }
    ));
}

#[test]
fn invalid_cd_is_c_bad_cd() {
    let r = Rig::qemu();
    let (t, e, _c) = live(&r, 4);
    let (ste, cds) = s1_ste(&r, 1, S1Dss::Ssid0, true);
    r.write_linear_ste(&t, 1, ste);
    r.smmu.dma().write_u64(cds.paddr.add(64), 0).unwrap();
    let ssid1 = Some(SubstreamId(1));
    assert_eq!(
        r.smmu.dma_access(StreamId(1), ssid1, Iova(0), false),
        DmaOutcome::Faulted(EventId::C_BAD_CD)
    );
    assert_eq!(event(&r, &e, 0).ssid, ssid1);
    assert!(matches!(
        dma(&r, 1, 0, false),
        DmaOutcome::Completed {
            translated: true,
            ..
        }
    ));
}

#[test]
fn substream_rules_and_s1dss() {
    let r = Rig::qemu();
    let (t, e, _c) = live(&r, 4);
    let (term, _a) = s1_ste(&r, 2, S1Dss::Terminate, true);
    let (byp, _b) = s1_ste(&r, 2, S1Dss::Bypass, true);
    let (none, _n) = s1_ste(&r, 0, S1Dss::Terminate, true);
    r.write_linear_ste(&t, 1, term);
    r.write_linear_ste(&t, 2, byp);
    r.write_linear_ste(&t, 3, none);
    r.write_linear_ste(&t, 4, Ste::stage2(&s2cfg(&r)));
    assert_eq!(
        dma(&r, 1, 0x1234, false),
        DmaOutcome::Faulted(EventId::F_STREAM_DISABLED)
    );
    assert_eq!(dma(&r, 2, 0x1234, false), OK, "S1DSS bypass");
    let at = |sid, ssid| {
        r.smmu
            .dma_access(StreamId(sid), Some(SubstreamId(ssid)), Iova(0), false)
    };
    assert!(matches!(
        at(1, 3),
        DmaOutcome::Completed {
            translated: true,
            ..
        }
    ));
    assert_eq!(at(1, 4), DmaOutcome::Faulted(EventId::C_BAD_SUBSTREAMID));
    assert_eq!(at(3, 0), DmaOutcome::Faulted(EventId::C_BAD_SUBSTREAMID));
    assert_eq!(at(4, 0), DmaOutcome::Faulted(EventId::C_BAD_SUBSTREAMID));
    assert_eq!(event(&r, &e, 1).ssid, Some(SubstreamId(4)));
    // Without substreams (S1CDMax = 0) a plain transaction uses the single CD.
    assert!(matches!(
        dma(&r, 3, 0, false),
        DmaOutcome::Completed {
            translated: true,
            ..
        }
    ));
}

#[test]
fn rejected_stes_are_c_bad_ste_and_flagged() {
    let r = Rig::qemu();
    let (t, _e, _c) = live(&r, 4);
    // V = 1, Config = 0b101 (stage 1) with the reserved S1Fmt = 3.
    let bad = Ste([1 | (5 << 1) | (3 << 4), 0, 0, 0, 0, 0, 0, 0]);
    r.write_linear_ste(&t, 6, bad);
    assert_eq!(
        dma(&r, 6, 0, false),
        DmaOutcome::Faulted(EventId::C_BAD_STE)
    );
    let rej = r.smmu.ste_rejections();
    assert_eq!(rej.len(), 1);
    assert_eq!((rej[0].sid, rej[0].ste), (StreamId(6), bad));
}

#[test]
fn watched_ste_snapshots_every_distinct_state_at_mmio_accesses() {
    let r = Rig::qemu();
    let t = r.linear_strtab(4);
    r.smmu.watch_ste(StreamId(2));
    let target = Ste::bypass(true);
    // Breaking update as Linux does it: V=0 in dword 0, other dwords, then dword 0.
    r.smmu.dma().write_u64(t.paddr.add(128), 0).unwrap();
    r.write32("CMDQ_PROD", 0);
    r.smmu
        .dma()
        .write_dwords(t.paddr.add(128 + 8), &target.0[1..])
        .unwrap();
    r.write32("CMDQ_PROD", 0);
    r.write32("CMDQ_PROD", 0);
    r.smmu
        .dma()
        .write_u64(t.paddr.add(128), target.0[0])
        .unwrap();
    r.read32("CMDQ_CONS");
    let snaps: Vec<Ste> = r
        .smmu
        .ste_snapshots(StreamId(2))
        .iter()
        .map(|s| s.ste)
        .collect();
    let mut mid = Ste::INVALID;
    mid.0[1..].copy_from_slice(&target.0[1..]);
    assert_eq!(snaps, [Ste::ABORT, Ste::INVALID, mid, target]);
    assert!(r.smmu.ste_rejections().is_empty());
    // A torn state with V = 1 that the STE decoder rejects is flagged.
    r.smmu
        .dma()
        .write_u64(t.paddr.add(128), 1 | (5 << 1) | (3 << 4))
        .unwrap();
    r.read32("CMDQ_CONS");
    assert_eq!(r.smmu.ste_rejections().len(), 1);
    assert!(r.smmu.ste_snapshots(StreamId(2))[4].at_access > 0);
}

#[test]
fn stage2_input_range_is_enforced_as_qemu_does() {
    let r = Rig::qemu();
    let (t, e, _c) = live(&r, 4);
    r.write_linear_ste(&t, 8, Ste::stage2(&s2cfg(&r)));
    // S2T0SZ = 25: a 39-bit IPA space.
    assert!(matches!(
        dma(&r, 8, (1 << 39) - 4, true),
        DmaOutcome::Completed { .. }
    ));
    assert_eq!(
        dma(&r, 8, 1 << 39, true),
        DmaOutcome::Faulted(EventId::F_TRANSLATION)
    );
    assert_eq!(
        r.event_at(&e, 0).to_le_words(),
        [0x10, 8, 0, 0x280, 0, 0x80, 0, 0x80]
    );
}

#[test]
fn nested_stage2_faults_carry_s2_and_the_ipa() {
    let r = Rig::qemu();
    let (t, e, _c) = live(&r, 4);
    let (guest, _cds) = s1_ste(&r, 0, S1Dss::Terminate, true);
    r.write_linear_ste(&t, 9, Ste::nested(&guest, &s2cfg(&r)));
    assert!(matches!(
        dma(&r, 9, 0x5000, false),
        DmaOutcome::Completed {
            translated: true,
            ..
        }
    ));
    r.smmu.set_fault(
        StreamId(9),
        0x5000..0x6000,
        FaultKind::Permission { stage2: true },
    );
    assert_eq!(
        dma(&r, 9, 0x5008, true),
        DmaOutcome::Faulted(EventId::F_PERMISSION)
    );
    let rec = event(&r, &e, 0);
    assert!(rec.s2 && !rec.rnw);
    assert_eq!((rec.input_addr, rec.ipa), (0x5008, 0x5000));
}
