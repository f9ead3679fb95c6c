//! The IRQ path: event records and page requests routed into vIOMMUs, hardware overflows
//! charged to them, and the batched sink the driver's drains hand records to. No lock, no
//! allocation, no panic, bounded: the only wait is the bounded spin for the producer token.

use super::super::iopf::Fault;
use super::super::routing::{Lookup, Route};
use super::super::sync::Ordering;
use super::{
    FORWARDED_EVENTS, HostReason, LIVE, MAX_LOST_PER_MARK, PRODUCER_SPINS, Routed, SINK_CHUNK,
    Viommu, add, bump,
};
use crate::event::{EVT1, EventId, EvtqEntry};
use crate::ids::StreamId;
use crate::iommufd::VeventArmSmmuv3;
use crate::pri::PriqEntry;
use crate::smmu::{EventSink, PriSink};
use crate::vevent::Reported;

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> super::Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// Routes one event record (IRQ path: no lock, no allocation, no panic, bounded):
    /// - StreamID without a vDEVICE → `host` ([`HostReason::Unassigned`]);
    /// - vDEVICE not attached to a nested STE → `host`;
    /// - Stall = 1 (F_TRANSLATION..F_PERMISSION) at stage 1 → the vIOMMU's fault queue as a
    ///   page-fault group, or `host` if it has none or it is full (the host must RESUME it);
    /// - S2 = 1 → `host` ([`HostReason::Stage2`]);
    /// - an ID in [`FORWARDED_EVENTS`] → the vIOMMU's SMMUv3 vEVENTQ with only the StreamID
    ///   replaced by the vSID, or dropped and counted if it has none;
    /// - anything else → `host`.
    ///
    /// The router's rings are single-producer: the call takes the router's producer token
    /// (shared with [`Router::route_page_request`](super::Router::route_page_request), the
    /// overflow marks and the control path's grace rounds), waiting at most [`PRODUCER_SPINS`]
    /// rounds, else the record goes to `host` ([`HostReason::Contended`]). A drain routes many
    /// records per take through [`Router::sink`](super::Router::sink).
    pub fn route_event(&self, entry: &EvtqEntry, host: &mut impl EventSink) -> Routed {
        let routed = self.route_one(Self::event_held, entry);
        if let Routed::Host(_) = routed {
            host.event(entry);
        }
        routed
    }

    /// Routes one PRI queue entry (IRQ path): a page request of a device attached to a nested
    /// STE goes to its vIOMMU's fault queue; anything else (no vDEVICE, not attached, no or a
    /// full fault queue) goes to `host`, which must answer it with PRI_RESP if Last is set.
    /// Takes the producer token as [`Router::route_event`](super::Router::route_event) does.
    pub fn route_page_request(&self, entry: &PriqEntry, host: &mut impl PriSink) -> Routed {
        let routed = self.route_one(Self::request_held, entry);
        if let Routed::Host(_) = routed {
            host.request(entry);
        }
        routed
    }

    /// One record through `held` (a `*_held` path) as a one-record [`RouterSink`]: the producer
    /// token taken, the record routed, the token released (when the sink drops) before the
    /// host sees the record.
    fn route_one<E>(&self, held: unsafe fn(&Self, &E) -> Routed, entry: &E) -> Routed {
        RouterSink {
            router: self,
            host: &mut (),
            held: 0,
        }
        .route(held, entry)
    }

    /// A record given to the host because the producer token did not come.
    #[cold]
    fn contended(&self) -> Routed {
        self.contended.fetch_add(1, Ordering::Relaxed);
        Routed::Host(HostReason::Contended)
    }

    /// Counts a record that goes to the host (producer token held).
    #[inline]
    fn count_host(&self, routed: Routed) -> Routed {
        if let Routed::Host(reason) = routed {
            match reason {
                HostReason::Unassigned => bump(&self.counters.host_unassigned),
                HostReason::Stage2 => bump(&self.counters.host_stage2),
                _ => bump(&self.counters.host_other),
            }
        }
        routed
    }

    /// Routes an event record and counts it.
    ///
    /// # Safety
    /// The caller holds `self.producer`.
    #[inline]
    unsafe fn event_held(&self, entry: &EvtqEntry) -> Routed {
        // SAFETY: passed on from our caller.
        self.count_host(unsafe { self.classify_event(entry) })
    }

    /// Routes a page request and counts it.
    ///
    /// # Safety
    /// The caller holds `self.producer`.
    #[inline]
    unsafe fn request_held(&self, entry: &PriqEntry) -> Routed {
        let routed = match self.lookup(entry.sid()) {
            // SAFETY: passed on from our caller.
            Ok((route, v)) => unsafe { self.queue_fault(v, route, &Fault::from_pri(entry)) },
            Err(r) => Routed::Host(r),
        };
        self.count_host(routed)
    }

    #[inline]
    fn lookup(
        &self,
        psid: StreamId,
    ) -> Result<(Route, &Viommu<VDEVICES, VEVENTS, FAULTS>), HostReason> {
        let route = match self.routes.lookup(psid) {
            Lookup::Found(r) => r,
            Lookup::Absent => return Err(HostReason::Unassigned),
            Lookup::Busy => return Err(HostReason::Contended),
        };
        if !route.attached {
            return Err(HostReason::NotAttached);
        }
        let v = self
            .viommus
            .get(usize::from(route.viommu))
            .ok_or(HostReason::Stale)?;
        Ok((route, v))
    }

    /// # Safety
    /// The caller holds `self.producer`.
    #[inline]
    unsafe fn classify_event(&self, entry: &EvtqEntry) -> Routed {
        let (route, v) = match self.lookup(entry.sid()) {
            Ok(x) => x,
            Err(r) => return Routed::Host(r),
        };
        let viommu = route.viommu;
        let [_, d1, _, _] = entry.0;
        let id = EventId(entry.id());
        if EVT1::STALL.is_set(d1) && id.can_stall() && !EVT1::S2.is_set(d1) {
            // SAFETY: passed on from our caller.
            return unsafe { self.queue_fault(v, route, &Fault::from_stall(entry)) };
        }
        if EVT1::S2.is_set(d1) {
            return Routed::Host(HostReason::Stage2);
        }
        if !FORWARDED_EVENTS.contains(&id) || EVT1::STALL.is_set(d1) {
            return Routed::Host(HostReason::NotForwarded);
        }
        let payload = VeventArmSmmuv3 {
            evt: entry.with_sid(StreamId(route.vsid.0)).0,
        };
        // SAFETY: we hold `self.producer` (caller's promise), whose round every close of the
        // vEVENTQ gate waits for. An attached route names a live vIOMMU: teardown detaches the
        // routes and waits a round of the token before it closes anything.
        match unsafe { v.veventq.read_held(|_, q| q.report(&payload)) } {
            Some(Reported::Queued { sequence }) => {
                bump(&self.counters.forwarded);
                bump(&v.counters.forwarded);
                Routed::Forwarded { viommu, sequence }
            }
            Some(Reported::Dropped { .. }) => {
                bump(&self.counters.dropped_full);
                bump(&v.counters.dropped_full);
                Routed::DroppedFull { viommu }
            }
            None => {
                bump(&self.counters.dropped_no_veventq);
                bump(&v.counters.dropped_no_veventq);
                Routed::DroppedNoVeventq { viommu }
            }
        }
    }

    /// # Safety
    /// The caller holds `self.producer`.
    #[inline]
    unsafe fn queue_fault(
        &self,
        v: &Viommu<VDEVICES, VEVENTS, FAULTS>,
        route: Route,
        fault: &Fault,
    ) -> Routed {
        // SAFETY: as in `classify_event`.
        match unsafe { v.faults.read_held(|_, ring| ring.push(fault)) } {
            Some(true) => {
                bump(&self.counters.iopf);
                bump(&v.counters.iopf);
                Routed::Iopf {
                    viommu: route.viommu,
                }
            }
            _ => {
                bump(&v.counters.iopf_to_host);
                Routed::Host(HostReason::NoFaultQueue)
            }
        }
    }

    /// A hardware event-queue overflow (IRQ path). Records were lost and their owners are
    /// unknown, so the loss is charged to everyone who may have lost one (see the module
    /// documentation of [`crate::viommu`], "What a hardware event-queue overflow does"): the
    /// router's and every live vIOMMU's `evtq_overflows` counters, every live vIOMMU's SMMUv3
    /// vEVENTQ, which gets a LOST_EVENTS marker at its tail with a freshly consumed sequence
    /// number ([`crate::vevent::VeventQueue::report_lost`], Linux's allocation-failure
    /// path), and the host's sink.
    ///
    /// Never waits: if another IRQ-path producer holds the router's rings, the marking is left
    /// to it and done before it leaves. A vIOMMU without an SMMUv3 vEVENTQ gets nothing (as an
    /// event for it would be dropped).
    pub fn route_overflow(&self, host: &mut impl EventSink) {
        self.producer.defer(&mut |n| self.mark_lost(n));
        host.overflow();
    }

    /// Charges `n` overflows: counters, and LOST_EVENTS markers in every live vIOMMU's SMMUv3
    /// vEVENTQ (producer token held). Bounded: `VIOMMUS` vIOMMUs × at most [`MAX_LOST_PER_MARK`]
    /// numbers.
    pub(super) fn mark_lost(&self, n: u32) {
        add(&self.counters.evtq_overflows, u64::from(n));
        let marks = n.min(MAX_LOST_PER_MARK);
        for v in &self.viommus {
            if v.state.load(Ordering::Acquire) & LIVE == 0 {
                continue;
            }
            add(&v.counters.evtq_overflows, u64::from(n));
            // SAFETY: `mark_lost` runs only as the producer token's deferred work, i.e. with
            // `self.producer` held.
            let marked = unsafe {
                v.veventq.read_held(|_, q| {
                    for _ in 0..marks {
                        q.report_lost();
                    }
                })
            };
            if marked.is_some() {
                add(&self.counters.lost_marked, u64::from(marks));
                add(&v.counters.lost_marked, u64::from(marks));
            }
        }
    }

    /// A hardware PRI-queue overflow (IRQ path): counted and passed to the host's sink. Lost page
    /// requests are never answered; the device times out its request (PCIe PRI).
    pub fn route_pri_overflow(&self, host: &mut impl PriSink) {
        self.producer
            .run(PRODUCER_SPINS, &mut |n| self.mark_lost(n), || {
                bump(&self.counters.priq_overflows);
            })
            .unwrap_or_else(|| {
                self.contended.fetch_add(1, Ordering::Relaxed);
            });
        host.overflow();
    }

    /// An [`EventSink`] and [`PriSink`] for the driver's drains (`Smmu::drain_evtq`,
    /// `Smmu::drain_priq`), handing what is not routed to a guest to `host`.
    ///
    /// It takes the router's producer token at its first record and keeps it for up to
    /// [`SINK_CHUNK`] records, so a drain costs two locked read-modify-writes per chunk rather
    /// than per record; the token is released when the chunk is full and when the sink is
    /// dropped. Drop it right after the drain: while it holds the token, other producers (the
    /// other drain, the control path's grace rounds) wait for it, bounded.
    pub fn sink<'a, H: EventSink + PriSink>(
        &'a self,
        host: &'a mut H,
    ) -> impl EventSink + PriSink + 'a {
        RouterSink {
            router: self,
            host,
            held: 0,
        }
    }
}

/// The [`Router`](super::Router) as the driver's drains see it.
struct RouterSink<
    'a,
    H,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> {
    router: &'a super::Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>,
    host: &'a mut H,
    /// Records routed since the token was taken; 0 when not held.
    held: u32,
}

impl<
    H,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> RouterSink<'_, H, VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// Makes sure the token is held; `false` if it did not come in time.
    #[inline]
    fn hold(&mut self) -> bool {
        if self.held > 0 {
            return true;
        }
        let r = self.router;
        if r.producer
            .enter(PRODUCER_SPINS, &mut |n| r.mark_lost(n))
            .is_some()
        {
            self.held = 1;
            true
        } else {
            false
        }
    }

    /// Routes one record with `held` (one of the router's `*_held` paths) under the token, or
    /// counts it as contended when the token did not come in time.
    #[inline]
    fn route<E>(
        &mut self,
        held: unsafe fn(&super::Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>, &E) -> Routed,
        entry: &E,
    ) -> Routed {
        if self.hold() {
            // SAFETY: `hold` made sure we hold the router's producer token, which is all the
            // `*_held` paths ask.
            let r = unsafe { held(self.router, entry) };
            self.done_one();
            r
        } else {
            self.router.contended()
        }
    }

    /// Counts one more record under the token; releases it after [`SINK_CHUNK`].
    #[inline]
    fn done_one(&mut self) {
        self.held += 1;
        if self.held > SINK_CHUNK {
            self.release();
        }
    }

    fn release(&mut self) {
        if self.held > 0 {
            let r = self.router;
            r.producer.leave(&mut |n| r.mark_lost(n));
            self.held = 0;
        }
    }
}

impl<
    H,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> Drop for RouterSink<'_, H, VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    fn drop(&mut self) {
        self.release();
    }
}

impl<
    H: EventSink,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> EventSink for RouterSink<'_, H, VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    #[inline]
    fn event(&mut self, entry: &EvtqEntry) {
        if let Routed::Host(_) = self.route(super::Router::event_held, entry) {
            self.host.event(entry);
        }
    }

    fn overflow(&mut self) {
        if self.hold() {
            // We are the producer: mark now, between the records before and after it.
            self.router.mark_lost(1);
            self.done_one();
            self.host.overflow();
        } else {
            // Carried out by the holder before it leaves.
            self.router.route_overflow(self.host);
        }
    }
}

impl<
    H: PriSink,
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> PriSink for RouterSink<'_, H, VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    #[inline]
    fn request(&mut self, entry: &PriqEntry) {
        if let Routed::Host(_) = self.route(super::Router::request_held, entry) {
            self.host.request(entry);
        }
    }

    fn overflow(&mut self) {
        if self.hold() {
            bump(&self.router.counters.priq_overflows);
            self.done_one();
        } else {
            self.router.contended.fetch_add(1, Ordering::Relaxed);
        }
        self.host.overflow();
    }
}
