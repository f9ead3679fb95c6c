//! Drains that race with the SMMU and with each other, acted out at exact points of the
//! driver through the barrier hook (`fake::observe`).

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use super::super::*;
use super::rig::Rig;
use crate::event::{EventRecord, EvtqEntry};
use crate::fake::HostSink;
use crate::fake::observe::{self, Barrier};
use crate::ids::{Iova, StreamId};

fn evt(sid: u32) -> EvtqEntry {
    EventRecord::translation_fault(StreamId(sid), Iova(0x2000), false, false).encode()
}

/// Clears the thread's barrier hook when dropped (also when a test fails).
struct HookGuard;

impl Drop for HookGuard {
    fn drop(&mut self) {
        observe::clear_barrier_hook();
    }
}

#[test]
fn a_record_landing_after_the_last_prod_read_is_drained_by_the_holder() {
    let r = Rc::new(Rig::qemu(Config::default()));
    r.m.inject_event(evt(1));
    let irqs = r.m.irq_counts().eventq;
    // At the barrier after the drain's confirming PROD read (its second load barrier), a
    // record lands: the queue goes empty -> non-empty, its interrupt goes to another CPU, and
    // that CPU's drain finds this one still holding the queue.
    let refused = Rc::new(Cell::new(None));
    let rmbs = Rc::new(Cell::new(0u32));
    let _guard = HookGuard;
    {
        let (r, refused, rmbs) = (r.clone(), refused.clone(), rmbs.clone());
        observe::set_barrier_hook(move |b| {
            if b != Barrier::Rmb {
                return;
            }
            rmbs.set(rmbs.get() + 1);
            if rmbs.get() == 2 {
                r.m.inject_event(evt(2));
                refused.set(Some(r.d.drain_evtq(&mut HostSink::default())));
            }
        });
    }
    let sink = RefCell::new(HostSink::default());
    let st = r.d.drain_evtq(&mut *sink.borrow_mut());
    observe::clear_barrier_hook();
    assert_eq!(
        r.m.irq_counts().eventq,
        irqs + 1,
        "the second record's interrupt"
    );
    assert!(refused.get().unwrap().busy);
    // Nothing else will interrupt: the holder must have taken the record.
    let got = sink.borrow().events.clone();
    assert_eq!(got, [evt(1), evt(2)]);
    assert_eq!(st.records, 2);
    assert!(!st.incomplete);
    let again = r.d.drain_evtq(&mut HostSink::default());
    assert_eq!(again.records, 0);
}

#[test]
fn a_refused_drain_never_makes_the_holder_exceed_its_pass_bound() {
    let r = Rc::new(Rig::qemu(Config::default()));
    r.m.inject_event(evt(1));
    let _guard = HookGuard;
    {
        let r = r.clone();
        // A refused drain, and a new record, at every load barrier of the holder.
        observe::set_barrier_hook(move |b| {
            if b == Barrier::Rmb {
                r.m.inject_event(evt(3));
                assert!(r.d.drain_evtq(&mut HostSink::default()).busy);
            }
        });
    }
    let mut sink = HostSink::default();
    let st = r.d.drain_evtq(&mut sink);
    observe::clear_barrier_hook();
    assert!(st.incomplete);
    assert!(st.extra_passes < 4);
    assert_eq!(st.records as usize, sink.events.len());
    // What is left is drained by the next call.
    let rest = r.d.drain_evtq(&mut sink);
    assert!(!rest.busy);
    assert_eq!(sink.events.len() as u64, r.m.event_stats().written);
}

#[test]
fn device_writes_before_a_cmd_sync_are_read_after_its_completion() {
    // A device wrote memory through the SMMU; the hypervisor invalidates, waits for the
    // CMD_SYNC, and reads the memory: the read must be ordered after the completion it saw.
    for idr0 in [0, 1 << 13] {
        let r = Rig::new(
            crate::features::IdRegs {
                idr0: crate::features::QEMU_VIRT.idr0 | idr0,
                ..crate::features::QEMU_VIRT
            },
            Config::default(),
        )
        .unwrap();
        r.d.reset().unwrap();
        let buf = crate::platform::DmaMemory::alloc(r.m.dma(), 64, 64).unwrap();
        r.m.device_write(buf.paddr, &[0x1234_5678_9abc_def0])
            .unwrap();
        r.d.submit(&[crate::command::Command::TlbiNsnhAll]).unwrap();
        // SAFETY: a fresh 64-byte buffer of the model's arena that only this test uses.
        let got = unsafe { buf.vaddr.cast::<u64>().read_volatile() };
        assert_eq!(
            got,
            0x1234_5678_9abc_def0,
            "completion mode {:?}",
            r.d.completion()
        );
    }
}
