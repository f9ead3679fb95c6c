//! Event and PRI queue drains: MMIO cost, overflow in hardware style, records arriving while
//! draining, a second CPU turned away.

use std::vec::Vec;

use super::super::*;
use super::recorder::*;
use super::rig::*;
use super::*;
use crate::event::EvtqEntry;
use crate::fake::{HostSink, OverflowStyle, SmmuModel};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::StreamId;
use crate::pri::{PageRequest, PriqEntry};
use crate::regs::offset;

/// An event sink that produces more events into the model while it is called.
struct Producer<'a> {
    m: &'a SmmuModel,
    got: Vec<EvtqEntry>,
    /// Events still to inject, one per event received (`u32::MAX`: endless).
    left: u32,
    next: u32,
    per_event: u32,
}

impl EventSink for Producer<'_> {
    fn event(&mut self, e: &EvtqEntry) {
        self.got.push(*e);
        for _ in 0..self.per_event {
            if self.left == 0 {
                return;
            }
            self.left = self.left.saturating_sub(u32::from(self.left != u32::MAX));
            self.m.inject_event(rec_evt(self.next));
            self.next += 1;
        }
    }
}

#[test]
fn drains_cost_at_most_three_mmio_accesses() {
    let r = Rig::qemu(Config {
        evtq_log2: Some(9),
        ..Config::default()
    });
    for n in [1u32, 16, 256] {
        for i in 0..n {
            r.m.inject_event(evt(i, u64::from(i) << 12));
        }
        r.m.reset_mmio_counts();
        let mut sink = HostSink::default();
        let st = r.d.drain_evtq(&mut sink);
        assert_eq!(r.m.mmio_counts().total(), 3, "n = {n}");
        assert_eq!(st.mmio, 3);
        assert_eq!(st.records, n);
        assert_eq!(sink.events.len(), n as usize);
        for (i, e) in sink.events.iter().enumerate() {
            assert_eq!(*e, evt(i as u32, (i as u64) << 12));
        }
    }
    // Nothing new: one read.
    r.m.reset_mmio_counts();
    let st = r.d.drain_evtq(&mut HostSink::default());
    assert_eq!((st.records, st.mmio), (0, 1));
    assert_eq!(r.m.mmio_counts().total(), 1);
    assert_eq!(r.d.counters().events, 1 + 16 + 256);
}

#[test]
fn event_overflow_hardware_style_is_acknowledged_and_reported() {
    let r = Rig::small_evtq(OverflowStyle::Hardware);
    for i in 0..12 {
        r.m.inject_event(evt(i, 0));
    }
    assert_eq!(r.m.event_stats().dropped_full, 4);
    let mut sink = HostSink::default();
    let st = r.d.drain_evtq(&mut sink);
    assert_eq!((st.records, st.overflows), (8, 1));
    assert_eq!(sink.overflows, 1);
    assert!(st.mmio <= 3);
    // Acknowledged: the next overflow toggles OVFLG again and is seen again.
    for i in 0..9 {
        r.m.inject_event(evt(i, 0));
    }
    let mut sink = HostSink::default();
    let st = r.d.drain_evtq(&mut sink);
    assert_eq!((st.records, st.overflows, sink.overflows), (8, 1, 1));
    assert_eq!(r.d.counters().event_overflows, 2);
    // And a quiet period reports none.
    r.m.inject_event(evt(1, 0));
    let st = r.d.drain_evtq(&mut HostSink::default());
    assert_eq!((st.records, st.overflows), (1, 0));
}

#[test]
fn pri_queue_is_drained_like_the_event_queue() {
    let ids = IdRegs {
        idr0: QEMU_VIRT.idr0 | IDR0_PRI,
        idr1: QEMU_VIRT.idr1 | (7 << 11),
        ..QEMU_VIRT
    };
    let r = Rig::new(ids, Config::default()).unwrap();
    r.d.reset().unwrap();
    assert_eq!(r.m.cr0() & 0b10, 0b10, "PRIQEN");
    assert_eq!(r.m.irq_ctrl(), 0b111);
    let req = |i: u32| {
        PageRequest {
            sid: StreamId(i),
            read: true,
            last: true,
            prg_index: i as u16,
            addr: u64::from(i) << 12,
            ..PageRequest::default()
        }
        .encode()
    };
    for i in 0..5 {
        r.m.inject_pri(req(i));
    }
    let mut got: Vec<PriqEntry> = Vec::new();
    r.m.reset_mmio_counts();
    let st = r.d.drain_priq(&mut |e: &PriqEntry| got.push(*e));
    assert_eq!(st.records, 5);
    assert_eq!(r.m.mmio_counts().total(), 3);
    assert_eq!(got, (0..5).map(req).collect::<Vec<_>>());
    // QEMU has no PRI queue.
    let r = Rig::qemu(Config::default());
    assert!(r.d.drain_priq(&mut |_: &PriqEntry| ()).not_ready);
}

#[test]
fn a_second_cpu_draining_at_the_same_time_is_turned_away() {
    let r = Rig::qemu(Config::default());
    r.m.inject_event(evt(1, 0));
    // A sink that, from inside the drain, tries to drain again (as another CPU would).
    struct Reenter<'a>(&'a Drv, Option<DrainStats>);
    impl EventSink for Reenter<'_> {
        fn event(&mut self, _: &EvtqEntry) {
            self.1 = Some(self.0.drain_evtq(&mut |_: &EvtqEntry| ()));
        }
    }
    let mut s = Reenter(&r.d, None);
    let st = r.d.drain_evtq(&mut s);
    assert_eq!(st.records, 1);
    assert!(s.1.unwrap().busy);
    assert_eq!(r.d.counters().drains_busy, 1);
}

#[test]
fn priq_drains_cost_at_most_three_mmio_accesses() {
    let h = H::reset(
        pri_ids(9),
        Config {
            priq_log2: Some(9),
            ..Config::default()
        },
    );
    let mut seen = 0;
    for n in [1u32, 16, 256] {
        for i in 0..n {
            h.m.inject_pri(req(seen + i));
        }
        h.m.reset_mmio_counts();
        let mut sink = HostSink::default();
        let st = h.d.drain_priq(&mut sink);
        let c = h.m.mmio_counts();
        assert_eq!(c.total(), 3, "n = {n}");
        assert_eq!((c.reads("PRIQ_PROD"), c.writes("PRIQ_CONS")), (2, 1));
        assert_eq!((st.mmio, st.records, st.extra_passes), (3, n, 0));
        assert_eq!(sink.requests, (seen..seen + n).map(req).collect::<Vec<_>>());
        seen += n;
    }
    h.m.reset_mmio_counts();
    let st = h.d.drain_priq(&mut HostSink::default());
    assert_eq!((st.records, st.mmio, h.m.mmio_counts().total()), (0, 1, 1));
    assert_eq!(h.d.counters().pri_requests, 1 + 16 + 256);
    assert_eq!(h.m.pri_stats().written, 1 + 16 + 256);
}

#[test]
fn priq_overflow_hardware_style_is_acked_in_the_one_cons_write() {
    let h = H::small_priq(OverflowStyle::Hardware);
    for round in 0..2u32 {
        for i in 0..12 {
            h.m.inject_pri(req(i));
        }
        assert_eq!(h.m.pri_stats().dropped_full, 4 * u64::from(round + 1));
        let prod = h.rec.m.pri_stats().overflows;
        assert_eq!(prod, u64::from(round + 1), "OVFLG toggled once per episode");
        h.rec.take();
        let mut sink = HostSink::default();
        let st = h.d.drain_priq(&mut sink);
        assert_eq!((st.records, st.overflows, sink.pri_overflows), (8, 1, 1));
        assert_eq!(sink.requests, (0..8).map(req).collect::<Vec<_>>());
        let log = h.rec.take();
        let cons: Vec<u32> = log
            .iter()
            .filter_map(|e| match *e {
                Ev::Mmio(1, o, true, v) if o == offset::PRIQ_CONS => Some(v),
                _ => None,
            })
            .collect();
        assert_eq!(cons.len(), 1, "one CONS write");
        assert_eq!(st.mmio, 3);
        // OVACKFLG now equals OVFLG (toggled `round + 1` times), index/wrap past the 8 records.
        let ovflg = (round + 1) % 2;
        assert_eq!(cons[0] >> 31, ovflg);
        assert_eq!(cons[0] & 0xf, (8 * (round + 1)) & 0xf);
    }
    assert_eq!(h.d.counters().pri_overflows, 2);
    // A quiet period reports none, and nothing is dropped any more.
    h.m.inject_pri(req(1));
    let st = h.d.drain_priq(&mut HostSink::default());
    assert_eq!((st.records, st.overflows), (1, 0));
    assert_eq!(h.m.pri_stats().dropped_full, 8);
}

#[test]
fn records_arriving_during_a_drain_are_seen_by_the_confirm_read() {
    let h = H::reset(QEMU_VIRT, Config::default());
    h.m.inject_event(rec_evt(0));
    h.m.inject_event(rec_evt(1));
    let mut p = Producer {
        m: &h.m,
        got: Vec::new(),
        left: 3,
        next: 2,
        per_event: 1,
    };
    h.m.reset_mmio_counts();
    let st = h.d.drain_evtq(&mut p);
    // Pass 1: 2 records (2 injected); pass 2: 2 records (1 injected); pass 3: 1 record.
    assert_eq!((st.records, st.extra_passes, st.incomplete), (5, 2, false));
    assert_eq!(st.mmio, 1 + 2 * 3);
    assert_eq!(h.m.mmio_counts().total(), u64::from(st.mmio));
    assert_eq!(p.got, (0..5).map(rec_evt).collect::<Vec<_>>());
    // Nothing left behind.
    let st = h.d.drain_evtq(&mut HostSink::default());
    assert_eq!((st.records, st.mmio), (0, 1));
}

#[test]
fn a_drain_with_an_endless_producer_is_bounded_and_loses_nothing() {
    for (per_event, style) in [(1, OverflowStyle::Hardware), (3, OverflowStyle::Hold)] {
        let h = H::reset(
            QEMU_VIRT,
            Config {
                evtq_log2: Some(3),
                ..Config::default()
            },
        );
        h.m.set_event_overflow(style);
        let entries = 8u32;
        for i in 0..4 {
            h.m.inject_event(rec_evt(i));
        }
        let mut p = Producer {
            m: &h.m,
            got: Vec::new(),
            left: u32::MAX,
            next: 4,
            per_event,
        };
        let mut drains = 0;
        let mut incomplete = 0;
        while drains < 5 {
            let st = h.d.drain_evtq(&mut p);
            drains += 1;
            assert!(st.records <= 4 * entries, "one drain is bounded");
            assert!(st.mmio <= 1 + 2 * 4);
            assert_eq!(st.overflows, 0, "{style:?}");
            incomplete += u32::from(st.incomplete);
        }
        assert_eq!(incomplete, 5, "{style:?}: every drain stopped at its bound");
        assert_eq!(h.d.counters().drains_incomplete, 5);
        // The producer stops; the next drains collect the rest, in order, nothing lost.
        p.left = 0;
        for _ in 0..64 {
            if h.d.drain_evtq(&mut p).records == 0 {
                break;
            }
        }
        assert_eq!(h.m.event_stats().dropped_full, 0, "{style:?}");
        assert_eq!(p.got.len() as u32, p.next, "{style:?}");
        assert_eq!(p.got, (0..p.next).map(rec_evt).collect::<Vec<_>>());
    }
}

#[test]
fn priq_loss_during_a_drain_is_reported_by_the_next_one() {
    // The PRI queue (8 slots) overflows, QEMU style, while a drain is running: the records
    // copied are delivered, the loss goes through GERROR and the next drain reports it.
    let h = H::small_priq(OverflowStyle::Qemu);
    struct Burst<'a>(&'a SmmuModel, HostSink, bool);
    impl PriSink for Burst<'_> {
        fn request(&mut self, e: &PriqEntry) {
            self.1.request(e);
            if !self.2 {
                self.2 = true;
                for i in 100..112 {
                    self.0.inject_pri(req(i));
                }
            }
        }
        fn overflow(&mut self) {
            PriSink::overflow(&mut self.1);
        }
    }
    h.m.inject_pri(req(0));
    let mut s = Burst(&h.m, HostSink::default(), false);
    let st = h.d.drain_priq(&mut s);
    // 7 of the 12 fit behind the one not yet released; 5 lost.
    assert_eq!(h.m.pri_stats().dropped_full, 5);
    assert_eq!((st.records, st.extra_passes, st.overflows), (8, 1, 0));
    let g = h.d.handle_gerror();
    assert!(g.drain_priq);
    let st = h.d.drain_priq(&mut s);
    assert_eq!((st.records, st.overflows), (0, 1));
    assert_eq!(s.1.pri_overflows, 1);
    assert_eq!(s.1.requests.len(), 8);
}
