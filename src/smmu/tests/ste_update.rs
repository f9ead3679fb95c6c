//! Live STE updates against Linux's own cases (the KUnit STE transitions of
//! `arm-smmu-v3-test.c`): the number of CMD_SYNCs each update costs, whether it stays hitless
//! (never V = 0 in between), and what the model sees after every 64-bit store.

use std::vec::Vec;

use super::super::*;
use super::rig::Rig;
use crate::command::Command;
use crate::ids::{PhysAddr, StreamId, Vmid};
use crate::platform::DmaMemory;
use crate::ste::{Granule, S1Dss, S1Fmt, S1StreamConfig, S2Config, Ste};

/// A CD table address outside the model's arena: the model never fetches it here.
const CDTAB: PhysAddr = PhysAddr(0xF0F0_F0F0_F000);

fn cdtable(dss: S1Dss, ptr: PhysAddr, ats: bool) -> Ste {
    let s1 = S1StreamConfig {
        dss,
        eats: u8::from(ats),
        ..S1StreamConfig::new(ptr, S1Fmt::TwoLevel64K, 8)
    };
    let ste = Ste::stage1(&s1);
    // Linux's template asks for incoming shareability when S1DSS bypasses.
    if dss == S1Dss::Bypass {
        ste.with_shcfg(1)
    } else {
        ste
    }
}

/// The KUnit stage-2 domain leaves its VMID at 0, as the stage-1 STE does: S2VMID, which a
/// stage-1 STE uses too, does not change between them.
fn s2cfg() -> S2Config {
    S2Config::for_ipa_bits(Vmid(0), PhysAddr(0x9000_0000), 40, Granule::Size4K).unwrap()
}

fn s2(ats: bool) -> Ste {
    Ste::stage2(&s2cfg()).with_shcfg(1).with_eats(u8::from(ats))
}

fn nested(dss: S1Dss, ats: bool) -> Ste {
    // Linux builds a nested STE on its stage-2 template, SHCFG = incoming included.
    Ste::nested(&cdtable(dss, CDTAB, false), &s2cfg())
        .with_shcfg(1)
        .with_eats(u8::from(ats))
}

/// Linux's bypass template (SHCFG = incoming).
fn bypass() -> Ste {
    Ste::bypass(true)
}

const SID: StreamId = StreamId(0x31);

/// A driver whose STE of [`SID`] is `from` (level-2 table allocated), watched by the model.
fn rig_at(from: &Ste) -> Rig {
    let r = Rig::qemu(Config::default());
    r.d.set_ste(SID, from).unwrap();
    r.m.watch_ste(SID);
    r.m.take_commands();
    r
}

struct Update {
    syncs: usize,
    prefetches: usize,
    /// Some state in between had V = 0.
    broke: bool,
    /// Some state in between had qword 0 all zero.
    zeroed_qword0: bool,
}

/// Moves [`SID`] from `from` to `to`, counting CMD_SYNCs and looking at every state the model
/// saw (at each 64-bit store and each register access).
fn update(from: &Ste, to: &Ste) -> Update {
    let r = rig_at(from);
    let before = r.m.ste_snapshots(SID).len();
    r.d.set_ste(SID, to).unwrap();
    assert_eq!(r.d.ste(SID).unwrap(), *to);
    let cmds = r.m.take_commands();
    // The PREFETCH_CONFIG is posted without a CMD_SYNC: the model consumed it at its PROD write.
    let snaps: Vec<Ste> = r.m.ste_snapshots(SID)[before..]
        .iter()
        .map(|s| s.ste)
        .collect();
    assert!(r.m.ste_rejections().is_empty());
    Update {
        syncs: cmds
            .iter()
            .filter(|c| matches!(c, Command::Sync { .. }))
            .count(),
        prefetches: cmds
            .iter()
            .filter(|c| matches!(c, Command::PrefetchConfig { .. }))
            .count(),
        broke: snaps.iter().any(|s| !s.valid()),
        zeroed_qword0: snaps.iter().any(|s| s.0[0] == 0),
    }
}

fn hitless(from: &Ste, to: &Ste, syncs: usize, case: &str) {
    let u = update(from, to);
    assert_eq!(u.syncs, syncs, "{case}: CMD_SYNCs");
    assert!(!u.broke, "{case}: went through V = 0");
    assert_eq!(
        u.prefetches,
        usize::from(to.valid()),
        "{case}: PREFETCH_CONFIG"
    );
}

#[test]
fn linux_kunit_ste_transitions_cost_the_same_syncs() {
    let ssid0 = cdtable(S1Dss::Ssid0, CDTAB, true);
    let dss_bypass = cdtable(S1Dss::Bypass, CDTAB, true);
    let abort = Ste::ABORT;
    hitless(&bypass(), &abort, 2, "bypass_to_abort");
    hitless(&abort, &bypass(), 2, "abort_to_bypass");
    hitless(&ssid0, &abort, 2, "cdtable_to_abort");
    hitless(&abort, &ssid0, 2, "abort_to_cdtable");
    hitless(&ssid0, &bypass(), 3, "cdtable_to_bypass");
    hitless(&bypass(), &ssid0, 3, "bypass_to_cdtable");
    // (a) Only qword 1 changes: one write, one sync.
    hitless(&ssid0, &dss_bypass, 1, "cdtable_s1dss_change");
    hitless(&dss_bypass, &ssid0, 1, "cdtable_s1dss_change back");
    hitless(&dss_bypass, &bypass(), 2, "s1dssbypass_to_stebypass");
    hitless(&bypass(), &dss_bypass, 2, "stebypass_to_s1dssbypass");
    hitless(&s2(true), &abort, 2, "s2_to_abort");
    hitless(&abort, &s2(true), 2, "abort_to_s2");
    hitless(&s2(true), &bypass(), 2, "s2_to_bypass");
    hitless(&bypass(), &s2(true), 2, "bypass_to_s2");
    hitless(&ssid0, &s2(true), 3, "s1_to_s2");
    hitless(&s2(true), &ssid0, 3, "s2_to_s1");
    hitless(
        &nested(S1Dss::Bypass, true),
        &s2(false),
        3,
        "nested_s1dssbypass_to_s1bypass",
    );
    hitless(
        &s2(false),
        &nested(S1Dss::Bypass, true),
        2,
        "nested_s1bypass_to_s1dssbypass",
    );
}

#[test]
fn nested_to_abort_or_bypass_drops_mev_with_the_rest() {
    // (b) MEV is safe to change in place only while both entries use it.
    hitless(
        &nested(S1Dss::Ssid0, false),
        &Ste::ABORT,
        2,
        "nested_to_abort",
    );
    hitless(
        &nested(S1Dss::Ssid0, false),
        &bypass(),
        2,
        "nested_to_bypass",
    );
}

#[test]
fn the_breaking_path_clears_qword_0_whole_first() {
    // (d) Linux's non_hitless case: the CD table pointer and S1DSS change together.
    let from = cdtable(S1Dss::Ssid0, CDTAB, true);
    let to = cdtable(S1Dss::Bypass, PhysAddr(0x4B_4B4B_4B40), true);
    let u = update(&from, &to);
    assert_eq!(u.syncs, 3);
    assert!(u.broke);
    assert!(
        u.zeroed_qword0,
        "qword 0 written as 0, not with only V cleared"
    );
}

#[test]
fn eats_0_to_1_is_hitless_without_s2s_or_split_stage() {
    // Moving a stream from stage 2 to nested with ATS: EATS 0 -> 1 is a safe bit.
    let u = update(&s2(false), &nested(S1Dss::Ssid0, true));
    assert!(!u.broke, "went through V = 0");
    let u = update(&nested(S1Dss::Ssid0, true), &s2(false));
    assert!(!u.broke, "went through V = 0");
    // With S2S set on either side it is not (EATS = 1 with S2S = 1 is a bad STE): EATS is then
    // sequenced as a used bit, and with Config changing too the update breaks.
    let with_s2s = |mut s: Ste| {
        s.0[2] |= 1 << 57;
        s
    };
    let u = update(&with_s2s(s2(false)), &with_s2s(nested(S1Dss::Ssid0, true)));
    assert!(u.broke);
}

#[test]
fn every_update_costs_its_steps_and_no_sync_for_the_prefetch() {
    // (c) One step, one sync; the prefetch rides on the next batch's CMD_SYNC.
    let to = Ste::stage2(&S2Config {
        vmid: Vmid(4),
        ..s2cfg()
    })
    .with_shcfg(1);
    let u = update(&s2(false), &to);
    assert_eq!((u.syncs, u.prefetches), (1, 1));
}

#[test]
fn an_ste_pointing_at_a_fresh_cd_table_is_published_after_it() {
    // The hitless update that changes only S1ContextPtr: nothing is written and synced before
    // the critical qword, so only the barrier at the start of the update publishes the new CD
    // table before the STE that points at it (the model panics on the store otherwise).
    let r = Rig::qemu(Config::default());
    let sid = StreamId(0x44);
    r.d.set_ste(sid, &Ste::bypass(false)).unwrap();
    let cd_a = r.m.dma().alloc(64, 64).unwrap();
    let cd_b = r.m.dma().alloc(64, 64).unwrap();
    let fill = |b: &crate::platform::DmaBuf, v: u64| {
        for i in 0..8 {
            // SAFETY: `b` is a fresh 64-byte buffer of the model's arena that only this test
            // uses.
            unsafe { b.vaddr.cast::<u64>().add(i).write_volatile(v + i as u64) };
        }
    };
    let s1 = |p: PhysAddr| Ste::stage1(&S1StreamConfig::new(p, S1Fmt::Linear, 0));
    fill(&cd_a, 0x100);
    r.d.set_ste(sid, &s1(cd_a.paddr)).unwrap();
    fill(&cd_b, 0x200);
    r.m.take_commands();
    r.d.set_ste(sid, &s1(cd_b.paddr)).unwrap();
    let syncs =
        r.m.take_commands()
            .iter()
            .filter(|c| matches!(c, Command::Sync { .. }))
            .count();
    assert_eq!(syncs, 1, "one qword, one step");
    assert!(r.m.dma().published(cd_b.paddr, 64));
}
