//! Event and PRI queues: production, edge interrupts, overflow styles, MSIs, aborts.

use super::util::{Rig, msi_idregs};
use crate::event::{EventId, EventRecord, EvtqEntry};
use crate::fake::OverflowStyle;
use crate::ids::{Iova, StreamId};
use crate::pri::{PageRequest, PriqEntry};

fn ev(sid: u32) -> EvtqEntry {
    EventRecord::translation_fault(StreamId(sid), Iova(0x1000 * u64::from(sid)), true, false)
        .encode()
}

fn pr(sid: u32, last: bool) -> PriqEntry {
    PageRequest {
        sid: StreamId(sid),
        ssid: None,
        privileged: false,
        exec: false,
        read: true,
        write: false,
        last,
        prg_index: 3,
        addr: 0x4000,
    }
    .encode()
}

#[test]
fn events_are_written_only_while_the_queue_is_enabled() {
    let r = Rig::qemu();
    r.smmu.inject_event(ev(1));
    assert_eq!(r.smmu.event_stats().dropped_disabled, 1);
    let q = r.enable_evtq(3);
    r.smmu.inject_event(ev(2));
    r.smmu.inject_event(ev(3));
    assert_eq!(r.read32("EVENTQ_PROD"), 2);
    assert_eq!(r.event_at(&q, 0), ev(2));
    assert_eq!(r.event_at(&q, 1), ev(3));
    assert_eq!(
        EventRecord::decode(&r.event_at(&q, 1)).id,
        EventId::F_TRANSLATION
    );
    assert_eq!(r.smmu.event_stats().written, 2);
    // PROD belongs to the SMMU while the queue is enabled.
    r.write32("EVENTQ_PROD", 0);
    assert_eq!(r.read32("EVENTQ_PROD"), 2);
}

#[test]
fn eventq_interrupt_is_an_edge_on_empty_to_non_empty() {
    let r = Rig::qemu();
    let _q = r.enable_evtq(3);
    r.smmu.inject_event(ev(1));
    assert_eq!(r.smmu.irq_counts().eventq, 0, "IRQ disabled");
    r.write32("EVENTQ_CONS", 1);
    r.write32("IRQ_CTRL", 0x4);
    r.smmu.inject_event(ev(2));
    r.smmu.inject_event(ev(3));
    assert_eq!(
        r.smmu.irq_counts().eventq,
        1,
        "only the first record makes an edge"
    );
    r.write32("EVENTQ_CONS", 3);
    r.smmu.inject_event(ev(4));
    assert_eq!(r.smmu.irq_counts().eventq, 2);
}

#[test]
fn hardware_overflow_toggles_ovflg_once_per_unacknowledged_overflow() {
    let r = Rig::qemu();
    let q = r.enable_evtq(2);
    for s in 0..4 {
        r.smmu.inject_event(ev(s));
    }
    assert_eq!(r.read32("EVENTQ_PROD"), 4, "full: wrap 1, index 0");
    r.smmu.inject_event(ev(10));
    r.smmu.inject_event(ev(11));
    assert_eq!(r.read32("EVENTQ_PROD"), (1 << 31) | 4);
    let st = r.smmu.event_stats();
    assert_eq!((st.written, st.dropped_full, st.overflows), (4, 2, 1));
    // Drain two and acknowledge the overflow: new records go in; OVFLG stays.
    r.write32("EVENTQ_CONS", (1 << 31) | 2);
    r.smmu.inject_event(ev(12));
    assert_eq!(r.read32("EVENTQ_PROD"), (1 << 31) | 5);
    assert_eq!(r.event_at(&q, 0), ev(12));
    // Fill again: a new overflow toggles OVFLG back to 0.
    r.smmu.inject_event(ev(13));
    r.smmu.inject_event(ev(14));
    assert_eq!(r.read32("EVENTQ_PROD"), 6);
    assert_eq!(r.smmu.event_stats().overflows, 2);
    assert_eq!(r.smmu.gerror_active(), 0, "no GERROR in hardware style");
}

#[test]
fn qemu_overflow_raises_eventq_abt_err_and_leaves_ovflg() {
    let r = Rig::qemu();
    r.smmu.set_event_overflow(OverflowStyle::Qemu);
    r.write32("IRQ_CTRL", 0x5);
    let _q = r.enable_evtq(3);
    for s in 0..10 {
        r.smmu.inject_event(ev(s));
    }
    assert_eq!(r.read32("EVENTQ_PROD"), 8);
    assert_eq!(r.smmu.gerror_active(), 1 << 2);
    assert_eq!(r.smmu.irq_counts().gerror, 1, "raised once while pending");
    assert_eq!(r.smmu.event_stats().dropped_full, 2);
    // After draining and acknowledging, records flow again.
    r.write32("EVENTQ_CONS", 8);
    let g = r.read32("GERROR");
    r.write32("GERRORN", g);
    r.smmu.inject_event(ev(20));
    assert_eq!(r.read32("EVENTQ_PROD"), 9);
}

#[test]
fn hold_style_delivers_waiting_records_when_cons_frees_slots() {
    let r = Rig::qemu();
    r.smmu.set_event_overflow(OverflowStyle::Hold);
    let q = r.enable_evtq(1);
    for s in 0..5 {
        r.smmu.inject_event(ev(s));
    }
    assert_eq!(r.read32("EVENTQ_PROD"), 2);
    assert_eq!(r.smmu.event_stats().held, 3);
    r.write32("EVENTQ_CONS", 1);
    assert_eq!(r.read32("EVENTQ_PROD"), 3);
    assert_eq!(r.event_at(&q, 0), ev(2));
    r.write32("EVENTQ_CONS", 3);
    assert_eq!(
        r.read32("EVENTQ_PROD"),
        5 & 3,
        "position 5 in a 2-entry queue"
    );
    assert_eq!(r.event_at(&q, 0), ev(4));
    assert_eq!(r.event_at(&q, 1), ev(3));
    let st = r.smmu.event_stats();
    assert_eq!((st.written, st.held, st.dropped_full), (5, 0, 0));
}

#[test]
fn unreachable_event_queue_raises_eventq_abt_err() {
    let r = Rig::qemu();
    r.write64("EVENTQ_BASE", 0x1_0000_0000 | 3);
    r.write32("EVENTQ_PROD", 0);
    r.write32("EVENTQ_CONS", 0);
    assert!(r.cr0_sync(1 << 2, 1));
    r.smmu.inject_event(ev(1));
    assert_eq!(r.smmu.gerror_active(), 1 << 2);
    assert_eq!(r.smmu.event_stats().dropped_abort, 1);
    assert_eq!(r.read32("EVENTQ_PROD"), 0);
}

#[test]
fn queue_msis_are_written_when_configured() {
    let r = Rig::with(msi_idregs());
    let doorbell = r.alloc(64);
    r.write64("EVENTQ_IRQ_CFG0", doorbell.paddr.0);
    r.write32("EVENTQ_IRQ_CFG1", 0x55);
    r.write64("GERROR_IRQ_CFG0", doorbell.paddr.0 + 4);
    r.write32("GERROR_IRQ_CFG1", 0x66);
    r.write32("IRQ_CTRL", 0x7);
    let _q = r.enable_evtq(3);
    r.smmu.inject_event(ev(1));
    assert_eq!(r.smmu.dma().read_u32(doorbell.paddr), Some(0x55));
    r.smmu.raise_gerror(1 << 8);
    assert_eq!(r.smmu.dma().read_u32(doorbell.paddr.add(4)), Some(0x66));
    assert_eq!(r.smmu.irq_counts().msi_writes, 2);
    // A PRIQ MSI to an unreachable address raises MSI_PRIQ_ABT_ERR.
    r.write64("PRIQ_IRQ_CFG0", 0x40);
    let _p = r.enable_priq(3);
    r.smmu.inject_pri(pr(1, true));
    assert_eq!(r.smmu.gerror_active(), (1 << 8) | (1 << 6));
}

#[test]
fn page_requests_go_to_the_pri_queue() {
    let r = Rig::with(msi_idregs());
    r.write32("IRQ_CTRL", 0x2);
    r.smmu.inject_pri(pr(1, true));
    assert_eq!(r.smmu.pri_stats().dropped_disabled, 1);
    let q = r.enable_priq(2);
    r.smmu.inject_pri(pr(2, false));
    r.smmu.inject_pri(pr(2, true));
    assert_eq!(r.read32("PRIQ_PROD"), 2);
    assert_eq!(
        PageRequest::decode(&r.pri_at(&q, 1)),
        PageRequest::decode(&pr(2, true))
    );
    assert_eq!(r.smmu.irq_counts().priq, 1);
    assert_eq!(r.smmu.irq_counts().eventq, 0);
}

#[test]
fn pri_overflow_style_is_chosen_separately() {
    let r = Rig::with(msi_idregs());
    r.smmu.set_pri_overflow(OverflowStyle::Qemu);
    let _e = r.enable_evtq(1);
    let _q = r.enable_priq(1);
    for s in 0..3 {
        r.smmu.inject_pri(pr(s, true));
        r.smmu.inject_event(ev(s));
    }
    assert_eq!(r.smmu.gerror_active(), 1 << 3, "PRIQ_ABT_ERR only");
    assert_eq!(r.read32("PRIQ_PROD"), 2);
    assert_eq!(
        r.read32("EVENTQ_PROD"),
        (1 << 31) | 2,
        "event queue: hardware style"
    );
    assert_eq!(r.smmu.pri_stats().dropped_full, 1);
}

#[test]
fn relax_steps_the_model() {
    use crate::error::WaitFor;
    use crate::platform::Platform;
    let r = Rig::qemu();
    r.smmu.set_event_overflow(OverflowStyle::Hold);
    let _q = r.enable_evtq(1);
    for s in 0..3 {
        r.smmu.inject_event(ev(s));
    }
    // CONS stored without the hook (e.g. by a test): the next relax lets the model catch up.
    let cons = r.smmu.page1_ptr().as_ptr().wrapping_add(0xAC).cast::<u32>();
    // SAFETY: EVENTQ_CONS inside the model's page 1, 4-byte aligned.
    unsafe { cons.write_volatile(1) };
    assert_eq!(r.smmu.event_stats().held, 1);
    r.plat.relax(WaitFor::CmdSync);
    assert_eq!(r.smmu.event_stats().held, 0);
    assert_eq!(r.read32("EVENTQ_PROD"), 3);
}
