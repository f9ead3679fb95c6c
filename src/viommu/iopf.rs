//! I/O page faults (IOMMU_FAULT_QUEUE_ALLOC in `include/uapi/linux/iommufd.h`, Linux's `iommufd_fault_fops_read`): PRI page requests and stalled transactions of a vIOMMU's
//! devices become `struct iommu_hwpt_pgfault` groups the hypervisor reads, and its
//! `struct iommu_hwpt_page_response`s become CMD_PRI_RESP or CMD_RESUME.
//!
//! Two halves:
//! - [`FaultRing`]: the IRQ path's single-producer/single-consumer ring of raw faults (fixed
//!   size, never blocks; full → the record goes to the host's sink, which must answer it).
//! - [`FaultGroups`]: the control path's fixed-size table. It assembles PRI requests into page
//!   request groups (a group is complete at the request with Last = 1; a stall is a group of one,
//!   Linux's LAST_PAGE), hands whole groups to the reader with a cookie, and turns responses into
//!   commands. Linux's rules: whole groups only, 0 when the first group does not fit; cookies
//!   unique among unanswered groups (1..2^32-1); an unknown cookie or a code other than 0/1 is
//!   EINVAL and stops; on detach or teardown every pending and delivered group is answered
//!   INVALID.
//!
//! Responses (iommufd code → command): stall SUCCESS → RESUME Retry, INVALID → RESUME Abort
//! (IHI 0070 §4.7 CMD_RESUME and CMD_PRI_RESP, Linux's mapping); PRI SUCCESS → PRI_RESP Success, INVALID → PRI_RESP
//! InvalidRequest (PCIe "Invalid Request", the page could not be made resident).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::sync::{AtomicU32, AtomicU64, Ordering};
use crate::command::{Command, PriResponse, ResumeAction};
use crate::error::Error;
use crate::event::{EventRecord, EvtqEntry};
use crate::ids::{StreamId, SubstreamId};
use crate::iommufd::{HwptPageResponse, HwptPgfault, PageResponseCode, PgfaultFlags, PgfaultPerm};
use crate::pri::{PageRequest, PriqEntry};
use crate::regs::bits::{get, is_set, put};
use tock_registers::register_bitfields;

register_bitfields![u64,
    /// Word 0 of a fault in the IRQ ring ([`FaultRing`]'s own packing; word 1 is the
    /// SubstreamID, word 2 the address).
    FAULT0 [
        /// The physical StreamID.
        PSID OFFSET(0) NUMBITS(32) [],
        /// A stall (answered with CMD_RESUME), else a page request (CMD_PRI_RESP).
        STALL OFFSET(32) NUMBITS(1) [],
        /// The last fault of its group.
        LAST OFFSET(33) NUMBITS(1) [],
        /// Word 1 holds a SubstreamID.
        SSV OFFSET(34) NUMBITS(1) [],
        /// The `PgfaultPerm` bits (READ, WRITE, EXEC, PRIV).
        PERM OFFSET(36) NUMBITS(4) [],
        /// The PRG index (page request) or STAG (stall).
        GRPID OFFSET(40) NUMBITS(16) []
    ]
];

/// Where a fault came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum FaultKind {
    /// A PCIe page request from the PRI queue; answered with CMD_PRI_RESP.
    Pri,
    /// A stalled transaction (event record with Stall = 1); answered with CMD_RESUME.
    Stall,
}

/// One fault as the IRQ path captured it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Fault {
    /// PRI or stall.
    pub kind: FaultKind,
    /// Physical StreamID.
    pub psid: StreamId,
    /// PASID, if valid.
    pub ssid: Option<SubstreamId>,
    /// PRG index (PRI) or STAG (stall).
    pub grpid: u16,
    /// Requested access.
    pub perm: PgfaultPerm,
    /// Last fault of its group (always for a stall).
    pub last: bool,
    /// Faulting address (PRI: page address).
    pub addr: u64,
}

impl Fault {
    /// A fault from a PRI queue entry (IHI 0070 §8.1).
    pub fn from_pri(entry: &PriqEntry) -> Self {
        let r = PageRequest::decode(entry);
        let mut perm = PgfaultPerm::empty();
        perm.set(PgfaultPerm::READ, r.read);
        perm.set(PgfaultPerm::WRITE, r.write);
        perm.set(PgfaultPerm::EXEC, r.exec);
        perm.set(PgfaultPerm::PRIV, r.privileged);
        Self {
            kind: FaultKind::Pri,
            psid: r.sid,
            ssid: r.ssid,
            grpid: r.prg_index,
            perm,
            last: r.last,
            addr: r.addr,
        }
    }

    /// A fault from a stall event record (IHI 0070 §7.3: Stall = 1, STAG): read if RnW, else
    /// write; exec if InD; privileged if PnU; the address is InputAddr (Linux's mapping).
    pub fn from_stall(entry: &EvtqEntry) -> Self {
        let r = EventRecord::decode(entry);
        let mut perm = if r.rnw {
            PgfaultPerm::READ
        } else {
            PgfaultPerm::WRITE
        };
        perm.set(PgfaultPerm::EXEC, r.ind);
        perm.set(PgfaultPerm::PRIV, r.pnu);
        Self {
            kind: FaultKind::Stall,
            psid: r.sid,
            ssid: r.ssid,
            grpid: r.stag,
            perm,
            last: true,
            addr: r.input_addr,
        }
    }

    fn encode(&self) -> [u64; 3] {
        let w0 = put(FAULT0::PSID, u64::from(self.psid.0))
            | put(FAULT0::STALL, u64::from(self.kind == FaultKind::Stall))
            | put(FAULT0::LAST, u64::from(self.last))
            | put(FAULT0::SSV, u64::from(self.ssid.is_some()))
            | put(FAULT0::PERM, u64::from(self.perm.bits()))
            | put(FAULT0::GRPID, u64::from(self.grpid));
        let w1 = u64::from(self.ssid.map_or(0, |s| s.0));
        [w0, w1, self.addr]
    }

    fn decode(w: [u64; 3]) -> Self {
        let [w0, w1, addr] = w;
        Self {
            kind: if is_set(FAULT0::STALL, w0) {
                FaultKind::Stall
            } else {
                FaultKind::Pri
            },
            psid: StreamId(get(FAULT0::PSID, w0) as u32),
            ssid: is_set(FAULT0::SSV, w0).then_some(SubstreamId(w1 as u32)),
            grpid: get(FAULT0::GRPID, w0) as u16,
            perm: PgfaultPerm::from_bits_truncate(get(FAULT0::PERM, w0) as u32),
            last: is_set(FAULT0::LAST, w0),
            addr,
        }
    }

    fn same_group(&self, other: &Fault) -> bool {
        self.kind == other.kind && self.psid == other.psid && self.grpid == other.grpid
    }

    /// The command answering this fault's group with `code`.
    pub fn response(&self, code: PageResponseCode) -> Command {
        match self.kind {
            FaultKind::Stall => Command::Resume {
                sid: self.psid,
                stag: self.grpid,
                action: match code {
                    PageResponseCode::Success => ResumeAction::Retry,
                    PageResponseCode::Invalid => ResumeAction::Abort,
                },
            },
            FaultKind::Pri => Command::PriResp {
                sid: self.psid,
                ssid: self.ssid,
                prg_index: self.grpid,
                resp: match code {
                    PageResponseCode::Success => PriResponse::Success,
                    PageResponseCode::Invalid => PriResponse::InvalidRequest,
                },
            },
        }
    }
}

struct RingSlot {
    words: [AtomicU64; 3],
}

/// The IRQ path's fault ring: single producer ([`push`](Self::push)), single consumer
/// ([`pop`](Self::pop)); `F` a power of two.
pub struct FaultRing<const F: usize> {
    slots: [RingSlot; F],
    head: AtomicU32,
    tail: AtomicU32,
}

impl<const F: usize> Default for FaultRing<F> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const F: usize> FaultRing<F> {
    const SIZE_OK: () = assert!(F.is_power_of_two() && F <= 1 << 20);

    /// An empty ring.
    #[cfg(not(loom))]
    pub const fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::SIZE_OK;
        Self {
            slots: [const {
                RingSlot {
                    words: [const { AtomicU64::new(0) }; 3],
                }
            }; F],
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
        }
    }

    /// An empty ring (loom build).
    #[cfg(loom)]
    pub fn new() -> Self {
        #[allow(clippy::let_unit_value)]
        let () = Self::SIZE_OK;
        Self {
            slots: core::array::from_fn(|_| RingSlot {
                words: core::array::from_fn(|_| AtomicU64::new(0)),
            }),
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
        }
    }

    /// Appends a fault (IRQ path); `false` if the ring is full.
    pub fn push(&self, fault: &Fault) -> bool {
        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire: the consumer's reads of the slot happen before we overwrite it.
        let head = self.head.load(Ordering::Acquire);
        if tail.wrapping_sub(head) as usize >= F {
            return false;
        }
        let Some(slot) = self.slots.get(tail as usize & (F - 1)) else {
            return false;
        };
        for (dst, w) in slot.words.iter().zip(fault.encode()) {
            dst.store(w, Ordering::Relaxed);
        }
        // Release: publishes the slot.
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        true
    }

    /// Takes the oldest fault (control path).
    pub fn pop(&self) -> Option<Fault> {
        let head = self.head.load(Ordering::Relaxed);
        let tail = self.tail.load(Ordering::Acquire);
        if head == tail {
            return None;
        }
        let slot = self.slots.get(head as usize & (F - 1))?;
        let mut w = [0u64; 3];
        for (d, s) in w.iter_mut().zip(&slot.words) {
            *d = s.load(Ordering::Relaxed);
        }
        // Release: our slot reads happen before the producer reuses it.
        self.head.store(head.wrapping_add(1), Ordering::Release);
        Some(Fault::decode(w))
    }

    /// Faults waiting.
    pub fn len(&self) -> usize {
        let tail = self.tail.load(Ordering::Acquire);
        tail.wrapping_sub(self.head.load(Ordering::Acquire)) as usize
    }

    /// Whether no fault waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// A PRI request whose group's Last request has not arrived.
    Partial,
    /// Its group is complete; the number orders groups by completion.
    Ready(u32),
    /// Delivered to the reader with this cookie, awaiting a response.
    Delivered(u32),
}

#[derive(Clone, Copy, Debug)]
struct Entry {
    fault: Fault,
    state: State,
}

/// The control path's fault table (fixed size `P` faults) for one fault queue.
pub struct FaultGroups<const P: usize> {
    pool: heapless::Vec<Entry, P>,
    next_ready: u32,
    next_cookie: u32,
}

impl<const P: usize> Default for FaultGroups<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const P: usize> FaultGroups<P> {
    /// An empty table.
    pub const fn new() -> Self {
        Self {
            pool: heapless::Vec::new(),
            next_ready: 0,
            next_cookie: 0,
        }
    }

    /// Faults held (partial, ready or delivered).
    pub fn len(&self) -> usize {
        self.pool.len()
    }

    /// Whether the table holds nothing.
    pub fn is_empty(&self) -> bool {
        self.pool.is_empty()
    }

    /// Moves faults from the IRQ ring into the table while there is room; faults that do not fit
    /// stay in the ring (which then fills up and sends new faults to the host's sink).
    pub fn pull<const F: usize>(&mut self, ring: &FaultRing<F>) {
        while !self.pool.is_full() {
            let Some(fault) = ring.pop() else {
                return;
            };
            // Cannot fail: the pool is not full.
            let _ = self.add(fault);
        }
    }

    /// Adds one fault; `Err` gives it back when the table is full.
    pub fn add(&mut self, fault: Fault) -> Result<(), Fault> {
        self.pool
            .push(Entry {
                fault,
                state: State::Partial,
            })
            .map_err(|e| e.fault)?;
        if fault.last {
            let n = self.next_ready;
            self.next_ready = n.wrapping_add(1);
            for e in self.pool.iter_mut() {
                if e.state == State::Partial && e.fault.same_group(&fault) {
                    e.state = State::Ready(n);
                }
            }
        }
        Ok(())
    }

    fn oldest_ready(&self) -> Option<(u32, Fault)> {
        let base = self.next_ready;
        self.pool
            .iter()
            .filter_map(|e| match e.state {
                // Age relative to the next number keeps the order across the u32 wrap.
                State::Ready(n) => Some((n, e.fault)),
                _ => None,
            })
            .min_by_key(|(n, _)| n.wrapping_sub(base))
    }

    fn cookie_in_use(&self, c: u32) -> bool {
        self.pool.iter().any(|e| e.state == State::Delivered(c))
    }

    fn new_cookie(&mut self) -> u32 {
        loop {
            let c = self.next_cookie;
            self.next_cookie = c.wrapping_add(1);
            if c != 0 && !self.cookie_in_use(c) {
                return c;
            }
        }
    }

    /// Delivers whole groups, oldest first, into `out` as `struct iommu_hwpt_pgfault` records
    /// (IOMMU_FAULT_QUEUE_ALLOC in `include/uapi/linux/iommufd.h`, Linux's `iommufd_fault_fops_read` read()): stops before a group that does not fit (0 if the first does not).
    /// `dev_id` maps a physical StreamID to the iommufd device ID written into the records.
    pub fn read(&mut self, out: &mut [HwptPgfault], dev_id: impl Fn(StreamId) -> u32) -> usize {
        let mut done = 0usize;
        while let Some((n, first)) = self.oldest_ready() {
            let count = self
                .pool
                .iter()
                .filter(|e| e.state == State::Ready(n))
                .count();
            if out.len().saturating_sub(done) < count {
                break;
            }
            let cookie = self.new_cookie();
            let dev = dev_id(first.psid);
            for e in self.pool.iter_mut().filter(|e| e.state == State::Ready(n)) {
                e.state = State::Delivered(cookie);
                let f = e.fault;
                let mut flags = PgfaultFlags::empty();
                flags.set(PgfaultFlags::PASID_VALID, f.ssid.is_some());
                flags.set(PgfaultFlags::LAST_PAGE, f.last);
                if let Some(slot) = out.get_mut(done) {
                    *slot = HwptPgfault {
                        flags: flags.bits(),
                        dev_id: dev,
                        pasid: f.ssid.map_or(0, |s| s.0),
                        grpid: u32::from(f.grpid),
                        perm: f.perm.bits(),
                        reserved: 0,
                        addr: f.addr,
                        length: 0,
                        cookie,
                    };
                }
                done += 1;
            }
        }
        done
    }

    /// Whether a group is waiting to be read (Linux's POLLIN on the fault fd).
    pub fn has_ready(&self) -> bool {
        self.oldest_ready().is_some()
    }

    /// Removes the group delivered with `cookie` and returns the command answering it with
    /// `code` (its last fault gives the SSID for PRI_RESP). [`Error::Invalid`] (EINVAL)
    /// for an unknown cookie or a code other than SUCCESS/INVALID, as Linux.
    pub fn respond(&mut self, resp: &HwptPageResponse) -> Result<Command, Error> {
        let cmd = self.response(resp)?;
        self.retire(resp.cookie);
        Ok(cmd)
    }

    /// The command answering the group delivered with `resp.cookie` with `resp.code`, as
    /// [`respond`](Self::respond) but leaving the group in place (to be [`retire`](Self::retire)d
    /// once the command was issued).
    pub fn response(&self, resp: &HwptPageResponse) -> Result<Command, Error> {
        let code = PageResponseCode::from_raw(resp.code).ok_or(Error::Invalid {
            field: "iommu_hwpt_page_response.code",
            value: u64::from(resp.code),
        })?;
        let state = State::Delivered(resp.cookie);
        let last = self
            .pool
            .iter()
            .rfind(|e| e.state == state)
            .map(|e| e.fault)
            .ok_or(Error::Invalid {
                field: "iommu_hwpt_page_response.cookie",
                value: u64::from(resp.cookie),
            })?;
        Ok(last.response(code))
    }

    /// Removes the group delivered with `cookie` (its answer was issued).
    pub fn retire(&mut self, cookie: u32) {
        let state = State::Delivered(cookie);
        self.pool.retain(|e| e.state != state);
    }

    /// Answers INVALID every ready and delivered group whose StreamID matches `filter` (all if
    /// `None`), dropping partial groups (no Last request yet, so nothing to answer), and passes
    /// each answer to `issue`. Linux's auto-response on detach, replace and fault-object destroy.
    pub fn answer_all_invalid(
        &mut self,
        filter: Option<StreamId>,
        mut issue: impl FnMut(Command),
    ) -> usize {
        let matches = |f: &Fault| filter.is_none_or(|s| s == f.psid);
        let mut answered = 0;
        while let Some(e) = self
            .pool
            .iter()
            .find(|e| matches(&e.fault) && e.state != State::Partial)
            .copied()
        {
            let state = e.state;
            let last = self
                .pool
                .iter()
                .rfind(|x| x.state == state)
                .map_or(e.fault, |x| x.fault);
            self.pool.retain(|x| x.state != state);
            issue(last.response(PageResponseCode::Invalid));
            answered += 1;
        }
        self.pool
            .retain(|e| !(matches(&e.fault) && e.state == State::Partial));
        answered
    }
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn pri(sid: u32, prg: u16, last: bool, addr: u64) -> Fault {
        Fault::from_pri(
            &PageRequest {
                sid: StreamId(sid),
                ssid: Some(SubstreamId(4)),
                privileged: false,
                exec: false,
                read: true,
                write: last,
                last,
                prg_index: prg,
                addr,
            }
            .encode(),
        )
    }

    fn stall(sid: u32, stag: u16) -> Fault {
        let e = EventRecord::translation_fault(
            StreamId(sid),
            crate::ids::Iova(0xdead_b000),
            false,
            true,
        )
        .with_stall(stag)
        .encode();
        Fault::from_stall(&e)
    }

    #[test]
    fn fault_round_trips_through_the_ring_words() {
        for f in [pri(0x1234, 511, true, 0xffff_f000), stall(7, 0xffff)] {
            assert_eq!(Fault::decode(f.encode()), f);
        }
        let s = stall(7, 9);
        assert_eq!(s.perm, PgfaultPerm::WRITE);
        assert!(s.last);
        assert_eq!(s.addr, 0xdead_b000);
    }

    #[test]
    fn ring_full_and_order() {
        let r: FaultRing<2> = FaultRing::new();
        assert!(r.push(&stall(1, 1)));
        assert!(r.push(&stall(1, 2)));
        assert!(!r.push(&stall(1, 3)));
        assert_eq!(r.pop().unwrap().grpid, 1);
        assert!(r.push(&stall(1, 3)));
        assert_eq!(r.pop().unwrap().grpid, 2);
        assert_eq!(r.pop().unwrap().grpid, 3);
        assert_eq!(r.pop(), None);
    }

    #[test]
    fn groups_are_whole_with_one_cookie() {
        let mut g: FaultGroups<8> = FaultGroups::new();
        g.add(pri(5, 1, false, 0x1000)).unwrap();
        g.add(pri(5, 2, false, 0x9000)).unwrap();
        g.add(pri(5, 1, false, 0x2000)).unwrap();
        assert!(!g.has_ready());
        g.add(pri(5, 1, true, 0x3000)).unwrap();
        assert!(g.has_ready());
        let mut out = [HwptPgfault::default(); 2];
        // The first group (3 faults) does not fit in 2 records: nothing is returned.
        assert_eq!(g.read(&mut out, |_| 42), 0);
        let mut out = [HwptPgfault::default(); 4];
        assert_eq!(g.read(&mut out, |_| 42), 3);
        let c = out[0].cookie;
        assert_ne!(c, 0);
        assert!(
            out[..3]
                .iter()
                .all(|r| r.cookie == c && r.dev_id == 42 && r.grpid == 1)
        );
        assert_eq!(
            out[..3].iter().map(|r| r.addr).collect::<Vec<_>>(),
            [0x1000, 0x2000, 0x3000]
        );
        assert_eq!(
            out[2].flags,
            (PgfaultFlags::LAST_PAGE | PgfaultFlags::PASID_VALID).bits()
        );
        assert_eq!(out[0].flags, PgfaultFlags::PASID_VALID.bits());
        assert_eq!(out[0].pasid, 4);
        assert_eq!(out[2].perm, (PgfaultPerm::READ | PgfaultPerm::WRITE).bits());
        // Nothing more until group 2 completes.
        assert_eq!(g.read(&mut out, |_| 42), 0);
        // Respond: unknown cookie / bad code are EINVAL.
        let bad = HwptPageResponse {
            cookie: c + 100,
            code: 0,
        };
        let unknown = Error::Invalid {
            field: "iommu_hwpt_page_response.cookie",
            value: u64::from(c + 100),
        };
        assert_eq!(g.respond(&bad), Err(unknown));
        assert_eq!(unknown.errno(), -22);
        let bad = HwptPageResponse { cookie: c, code: 2 };
        let code = Error::Invalid {
            field: "iommu_hwpt_page_response.code",
            value: 2,
        };
        assert_eq!(g.respond(&bad), Err(code));
        assert_eq!(code.errno(), -22);
        let cmd = g.respond(&HwptPageResponse { cookie: c, code: 0 }).unwrap();
        assert_eq!(
            cmd,
            Command::PriResp {
                sid: StreamId(5),
                ssid: Some(SubstreamId(4)),
                prg_index: 1,
                resp: PriResponse::Success
            }
        );
        // Answered once only.
        assert!(g.respond(&HwptPageResponse { cookie: c, code: 0 }).is_err());
        assert_eq!(g.len(), 1, "the partial group 2 remains");
    }

    #[test]
    fn stall_responses_and_auto_response() {
        let mut g: FaultGroups<8> = FaultGroups::new();
        g.add(stall(3, 10)).unwrap();
        g.add(stall(4, 11)).unwrap();
        g.add(pri(3, 7, false, 0)).unwrap();
        let mut out = [HwptPgfault::default(); 1];
        assert_eq!(g.read(&mut out, |_| 1), 1);
        assert_eq!(out[0].grpid, 10);
        assert_eq!(
            g.respond(&HwptPageResponse {
                cookie: out[0].cookie,
                code: 1
            }),
            Ok(Command::Resume {
                sid: StreamId(3),
                stag: 10,
                action: ResumeAction::Abort
            })
        );
        g.add(stall(3, 12)).unwrap();
        assert_eq!(g.read(&mut out, |_| 1), 1); // stall(4, 11) delivered, unanswered
        let mut issued = Vec::new();
        // Detach of StreamID 3: its ready stall is answered, its partial PRI group dropped.
        assert_eq!(
            g.answer_all_invalid(Some(StreamId(3)), |c| issued.push(c)),
            1
        );
        assert_eq!(
            issued,
            [Command::Resume {
                sid: StreamId(3),
                stag: 12,
                action: ResumeAction::Abort
            }]
        );
        // Teardown: the delivered-but-unanswered group of StreamID 4 is answered INVALID.
        issued.clear();
        assert_eq!(g.answer_all_invalid(None, |c| issued.push(c)), 1);
        assert_eq!(
            issued,
            [Command::Resume {
                sid: StreamId(4),
                stag: 11,
                action: ResumeAction::Abort
            }]
        );
        assert!(g.is_empty());
    }

    #[test]
    fn cookies_skip_zero_and_live_ones() {
        let mut g: FaultGroups<4> = FaultGroups::new();
        g.add(stall(1, 0)).unwrap();
        let mut first = [HwptPgfault::default(); 1];
        assert_eq!(g.read(&mut first, |_| 0), 1);
        assert_eq!(first[0].cookie, 1, "a new table starts at cookie 1");
        g.retire(1);
        g.next_cookie = u32::MAX;
        g.add(stall(1, 1)).unwrap();
        g.add(stall(1, 2)).unwrap();
        let mut out = [HwptPgfault::default(); 2];
        assert_eq!(g.read(&mut out, |_| 0), 2);
        assert_eq!((out[0].cookie, out[1].cookie), (u32::MAX, 1));
        g.next_cookie = u32::MAX;
        g.add(stall(1, 3)).unwrap();
        assert_eq!(g.read(&mut out, |_| 0), 1);
        assert_eq!(
            out[0].cookie, 2,
            "skips the cookies still awaiting an answer"
        );
    }

    #[test]
    fn full_table_leaves_faults_in_the_ring() {
        let ring: FaultRing<8> = FaultRing::new();
        for i in 0..5 {
            assert!(ring.push(&stall(1, i)));
        }
        let mut g: FaultGroups<3> = FaultGroups::new();
        g.pull(&ring);
        assert_eq!((g.len(), ring.len()), (3, 2));
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;

    /// The consumer sees faults whole and in order, and a full ring refuses rather than
    /// overwrites.
    #[test]
    fn ring_handoff() {
        crate::viommu::sync::model("ring_handoff", || {
            let r = Arc::new(FaultRing::<2>::new());
            let f = |g: u16| Fault {
                kind: FaultKind::Stall,
                psid: StreamId(u32::from(g) * 3),
                ssid: None,
                grpid: g,
                perm: PgfaultPerm::READ,
                last: true,
                addr: u64::from(g) << 12,
            };
            let c = {
                let r = r.clone();
                loom::thread::spawn(move || {
                    let mut seen = Vec::new();
                    for _ in 0..2 {
                        if let Some(x) = r.pop() {
                            seen.push(x);
                        }
                    }
                    seen
                })
            };
            let pushed = (0..3u16).filter(|g| r.push(&f(*g))).count();
            let mut seen = c.join().unwrap_or_default();
            while let Some(x) = r.pop() {
                seen.push(x);
            }
            assert_eq!(seen.len(), pushed);
            for (i, x) in seen.iter().enumerate() {
                assert_eq!(*x, f(x.grpid));
                if i > 0 {
                    assert!(x.grpid > seen[i - 1].grpid);
                }
            }
        });
    }
}
