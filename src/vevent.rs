//! The vEVENTQ ring: a single-producer, single-consumer ring of vEVENT records whose byte stream
//! is the one an iommufd vEVENTQ fd gives to `read()` (`Documentation/userspace-api/iommufd.rst`
//! IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event`). It sits below both users: the
//! vIOMMU layer ([`crate::viommu::veventq`], one ring per vIOMMU and vEVENTQ type) and the
//! Tegra241 CMDQV error path. It depends only on the uAPI formats in [`crate::iommufd`].
//!
//! One [`VeventQueue`] per (vIOMMU, [`VeventqType`]). The producer is the IRQ path
//! ([`VeventQueue::report`]: allocation-free, never blocks, never panics); the consumer is the
//! hypervisor ([`VeventQueue::read`]), usually on another CPU. The byte stream read out is the
//! one Linux's vEVENTQ `read()` returns: an 8-byte [`VeventHeader`] (host-endian `flags`,
//! `sequence`) then the payload ([`VeventArmSmmuv3`] 32 bytes or [`VeventTegra241Cmdqv`] 16 bytes,
//! `__aligned_le64` words), records packed back to back, and at most one payload-less
//! LOST_EVENTS header at the tail.
//!
//! # Why an own ring and not `heapless::spsc`
//! The LOST_EVENTS marker is not an entry of the ring: it lives beside it, is renumbered while
//! it waits, and is removed by the next successful append, all while the consumer may be taking
//! it. That needs one more shared word whose ordering with the ring's indices matters, and
//! `heapless::spsc::Queue` neither exposes its indices nor can be model-checked by `loom` (its
//! atomics are `core`'s). So this is a small SPSC ring whose atomics come from a shim (module `sync`,
//! `loom`'s under `cfg(loom)`) and the whole protocol is checked by `loom`. The slots are atomics
//! too (relaxed, published by the index stores), so the module has no `unsafe`: a caller who
//! breaks the single-producer/single-consumer rule gets garbled or repeated records, never
//! undefined behaviour.
//!
//! # Ordering protocol
//! - `tail` (producer-owned): the producer fills a slot, then `Release`-stores `tail`; the consumer
//!   `Acquire`-loads `tail` before reading slots.
//! - `head` (consumer-owned): the consumer reads a slot, then `Release`-stores `head`; the
//!   producer `Acquire`-loads `head` before deciding the ring is full and before reusing a slot.
//! - `lost` (the marker word: sequence number and *position*, the `tail` value when it was
//!   set): the producer writes it (`Release` swap) when it drops an event, and clears it *after*
//!   publishing `tail` when an append follows. The consumer delivers it only when it has read every
//!   record up to a `tail` it loaded **after** loading the marker, only while that `tail` still
//!   equals the marker's position (otherwise an append at that position already removed it in
//!   Linux's order, and the clear is merely not visible yet), and only through a compare-exchange
//!   against the value it loaded. So a marker is never delivered before a record that was appended
//!   before it, nor after a record appended behind it, and a marker is delivered at most once.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::marker::PhantomData;

use crate::error::{Error, Object};
use crate::iommufd::{
    VeventArmSmmuv3, VeventFlags, VeventHeader, VeventTegra241Cmdqv, VeventqType,
};

use self::sync::{AtomicU32, AtomicU64, Ordering};

/// The atomics this module uses: `core`'s, or `loom`'s when built with `--cfg loom`.
mod sync {
    #[cfg(loom)]
    pub(super) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    #[cfg(not(loom))]
    pub(super) use core::sync::atomic::{AtomicU32, AtomicU64, Ordering};
}

/// The largest payload, in 64-bit words (SMMUv3: 4).
pub const MAX_PAYLOAD_WORDS: usize = 4;

/// Size of a [`VeventHeader`] in the stream, and of a LOST_EVENTS marker.
pub const HEADER_BYTES: usize = VeventHeader::SIZE;

mod sealed {
    pub trait Sealed {}
    impl Sealed for crate::iommufd::VeventArmSmmuv3 {}
    impl Sealed for crate::iommufd::VeventTegra241Cmdqv {}
}

/// A vEVENTQ payload type: [`VeventArmSmmuv3`] or [`VeventTegra241Cmdqv`] (`Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event`,
/// "Payloads"). Sealed: the queue relies on `WORDS <= MAX_PAYLOAD_WORDS`.
pub trait VeventPayload: sealed::Sealed + Copy {
    /// The vEVENTQ type whose records carry this payload.
    const TYPE: VeventqType;
    /// Payload length in 64-bit little-endian words.
    const WORDS: usize;
    /// Length of one normal record in the stream: header plus payload (40 or 24 bytes).
    const RECORD_BYTES: usize = HEADER_BYTES + 8 * Self::WORDS;
    /// The payload's words, in uAPI order; words past [`Self::WORDS`] are 0.
    fn to_words(&self) -> [u64; MAX_PAYLOAD_WORDS];
}

impl VeventPayload for VeventArmSmmuv3 {
    const TYPE: VeventqType = VeventqType::ArmSmmuv3;
    const WORDS: usize = 4;
    fn to_words(&self) -> [u64; MAX_PAYLOAD_WORDS] {
        self.evt
    }
}

impl VeventPayload for VeventTegra241Cmdqv {
    const TYPE: VeventqType = VeventqType::Tegra241Cmdqv;
    const WORDS: usize = 2;
    fn to_words(&self) -> [u64; MAX_PAYLOAD_WORDS] {
        let [a, b] = self.lvcmdq_err_map;
        [a, b, 0, 0]
    }
}

const _: () = assert!(VeventArmSmmuv3::RECORD_BYTES == 40);
const _: () = assert!(VeventTegra241Cmdqv::RECORD_BYTES == 24);
const _: () = assert!(VeventArmSmmuv3::WORDS * 8 == VeventArmSmmuv3::SIZE);
const _: () = assert!(VeventTegra241Cmdqv::WORDS * 8 == VeventTegra241Cmdqv::SIZE);

/// What became of one [`VeventQueue::report`]. Linux's report function returns 0 for both
/// (`Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event` "Driver-facing results"); every report consumes one sequence number.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Reported {
    /// Appended with this sequence number.
    Queued {
        /// The record's sequence number.
        sequence: u32,
    },
    /// Dropped because `veventq_depth` events were unread; the LOST_EVENTS marker at the tail
    /// now carries this sequence number.
    Dropped {
        /// The dropped event's sequence number.
        sequence: u32,
    },
}

impl Reported {
    /// The sequence number the report consumed.
    pub const fn sequence(self) -> u32 {
        match self {
            Reported::Queued { sequence } | Reported::Dropped { sequence } => sequence,
        }
    }
}

/// Totals kept by a [`VeventQueue`] since it was created (counts of entries it no longer holds).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VeventqStats {
    /// Events appended.
    pub queued: u64,
    /// Events dropped because the queue held `veventq_depth` unread events.
    pub dropped_full: u64,
    /// Events reported lost without a record ([`VeventQueue::report_lost`]).
    pub lost: u64,
    /// Normal records handed to the reader.
    pub records_read: u64,
    /// LOST_EVENTS markers handed to the reader.
    pub lost_markers_read: u64,
}

/// `lost` word: 0 = no marker; otherwise bit 31 set, bits \[30:0\] the marker's sequence number
/// and bits \[63:32\] its position: the producer index (`tail`) when it was set. A marker is live
/// only while `tail` still equals its position: an append at that position removed it in Linux's
/// order, even if the producer's clearing store is not visible yet.
const LOST_PRESENT: u64 = 1 << 31;

/// The sequence number of a live or stale marker word.
const fn marker_sequence(marker: u64) -> u32 {
    (marker as u32) & VeventHeader::SEQUENCE_MASK
}

/// Whether `marker` is a marker sitting at producer index `tail`.
const fn marker_live(marker: u64, tail: u32) -> bool {
    marker != 0 && (marker >> 32) as u32 == tail
}
/// How often [`VeventQueue::read`] retries taking a marker that changes under it.
const MARKER_RETRIES: u32 = 8;

/// One ring slot: the record's sequence number and payload words.
struct Slot {
    sequence: AtomicU32,
    words: [AtomicU64; MAX_PAYLOAD_WORDS],
}

impl Slot {
    #[cfg(not(loom))]
    const fn new() -> Self {
        Slot {
            sequence: AtomicU32::new(0),
            words: [const { AtomicU64::new(0) }; MAX_PAYLOAD_WORDS],
        }
    }

    #[cfg(loom)]
    fn new() -> Self {
        Slot {
            sequence: AtomicU32::new(0),
            words: core::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// A vEVENTQ of payload `P` with room for up to `N` unread events (`N` a power of two,
/// `veventq_depth <= N`). `Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event`.
///
/// Single producer ([`report`](Self::report), the IRQ path) and single consumer
/// ([`read`](Self::read), the hypervisor); each side must be serialised by the caller, the two
/// sides may run concurrently on different CPUs. Size: about `40 * N` bytes; for a large `N`
/// place it in a `static` (`new` is `const`) rather than on a stack.
pub struct VeventQueue<P: VeventPayload, const N: usize> {
    slots: [Slot; N],
    /// `veventq_depth`: maximum number of unread normal records.
    depth: u32,
    /// Consumer index (free-running; slot = index mod N).
    head: AtomicU32,
    /// Producer index (free-running).
    tail: AtomicU32,
    /// Next sequence number (producer-owned).
    next_sequence: AtomicU32,
    /// The LOST_EVENTS marker, see [`LOST_PRESENT`].
    lost: AtomicU64,
    /// 1 while a [`read`](VeventQueue::read) is in progress: the ring has one consumer.
    reading: AtomicU32,
    queued: AtomicU64,
    dropped_full: AtomicU64,
    lost_reported: AtomicU64,
    records_read: AtomicU64,
    lost_markers_read: AtomicU64,
    _payload: PhantomData<fn() -> P>,
}

macro_rules! queue_init {
    ($slots:expr, $depth:expr) => {
        VeventQueue {
            slots: $slots,
            depth: $depth,
            head: AtomicU32::new(0),
            tail: AtomicU32::new(0),
            next_sequence: AtomicU32::new(0),
            lost: AtomicU64::new(0),
            reading: AtomicU32::new(0),
            queued: AtomicU64::new(0),
            dropped_full: AtomicU64::new(0),
            lost_reported: AtomicU64::new(0),
            records_read: AtomicU64::new(0),
            lost_markers_read: AtomicU64::new(0),
            _payload: PhantomData,
        }
    };
}

impl<P: VeventPayload, const N: usize> VeventQueue<P, N> {
    const CAPACITY_OK: () = assert!(
        N.is_power_of_two() && N <= 1 << 31,
        "VeventQueue capacity must be a power of two <= 2^31"
    );

    /// Checks `veventq_depth` (`Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event` `struct iommu_veventq_alloc`): 0 is EINVAL as in
    /// Linux. Linux has no upper limit; this queue's storage is fixed, so a depth above `N` is
    /// refused with [`Error::NoMemory`] (ENOMEM), the error Linux gives when it cannot allocate.
    const fn check_depth(depth: u32) -> Result<(), Error> {
        #[allow(clippy::let_unit_value)]
        let () = Self::CAPACITY_OK;
        if depth == 0 {
            Err(Error::Invalid {
                field: "iommu_veventq_alloc.veventq_depth",
                value: 0,
            })
        } else if depth as usize > N {
            Err(Error::NoMemory)
        } else {
            Ok(())
        }
    }

    /// An empty queue of `veventq_depth` `depth`, starting at sequence 0 (`Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event`:
    /// "A new queue starts at sequence 0").
    #[cfg(not(loom))]
    pub const fn new(depth: u32) -> Result<Self, Error> {
        match Self::check_depth(depth) {
            Ok(()) => Ok(queue_init!([const { Slot::new() }; N], depth)),
            Err(e) => Err(e),
        }
    }

    /// An empty queue of `veventq_depth` `depth`, starting at sequence 0 (loom build).
    #[cfg(loom)]
    pub fn new(depth: u32) -> Result<Self, Error> {
        match Self::check_depth(depth) {
            Ok(()) => Ok(queue_init!(core::array::from_fn(|_| Slot::new()), depth)),
            Err(e) => Err(e),
        }
    }

    /// The vEVENTQ type of this queue.
    pub const fn queue_type(&self) -> VeventqType {
        P::TYPE
    }

    /// `veventq_depth`: how many unread events the queue keeps before it drops new ones.
    pub const fn depth(&self) -> u32 {
        self.depth
    }

    /// The storage capacity `N`.
    pub const fn capacity(&self) -> usize {
        N
    }

    fn slot(&self, index: u32) -> Option<&Slot> {
        // N is a power of two (CAPACITY_OK), so masking maps the free-running index to a slot
        // and stays continuous across the u32 wrap.
        self.slots.get(index as usize & (N - 1))
    }

    /// Reports one event (IRQ path; `Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event` "Producer side"). Never blocks, never
    /// allocates, never panics.
    ///
    /// Every call consumes one sequence number, which then advances modulo 2^31. While fewer
    /// than `depth` events are unread the event is appended with `flags = 0`, and a LOST_EVENTS
    /// marker at the tail is removed (the loss stays visible as a sequence gap). Otherwise the
    /// new event is dropped, the queued ones are kept, and the single marker sits at the tail
    /// with the dropped event's sequence number (renumbered if it was already there).
    pub fn report(&self, payload: &P) -> Reported {
        let sequence = self.take_sequence();

        let tail = self.tail.load(Ordering::Relaxed);
        // Acquire: the consumer's reads of the slots it freed happen before we reuse them.
        let head = self.head.load(Ordering::Acquire);
        let slot = match self.slot(tail) {
            Some(slot) if tail.wrapping_sub(head) < self.depth => slot,
            _ => return self.drop_event(sequence, tail),
        };

        slot.sequence.store(sequence, Ordering::Relaxed);
        let words = payload.to_words();
        for (dst, w) in slot.words.iter().zip(words).take(P::WORDS) {
            dst.store(w, Ordering::Relaxed);
        }
        // Release: publishes the slot to the consumer's Acquire load of `tail`.
        self.tail.store(tail.wrapping_add(1), Ordering::Release);
        // Remove a marker at the tail only after publishing the record, so a consumer that sees
        // the marker gone also sees the record (its Acquire load syncs with this store).
        if self.lost.load(Ordering::Relaxed) != 0 {
            // A swap rather than a store: see `drop_event`.
            self.lost.swap(0, Ordering::Release);
        }
        bump(&self.queued);
        Reported::Queued { sequence }
    }

    /// Reports an event that is lost before it could be stored (IRQ path), as Linux's
    /// allocation-failure path does (`Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event` "Producer side": "Report while `num_events ==
    /// depth`, or when allocating the record fails: the event is dropped ... The queue's single,
    /// preallocated LOST_EVENTS header ... is moved to the tail of the queue and gets the sequence
    /// number of the dropped event"): whatever the fill level, one sequence number is consumed and
    /// the single LOST_EVENTS marker sits at the tail with it (renumbered if it was already
    /// there); no record is stored and the queued ones are kept. The next successful
    /// [`report`](Self::report) removes the marker again, leaving a sequence gap.
    ///
    /// Returns the consumed sequence number (Linux's report returns `-ENOMEM` on this path).
    /// Same rules as [`report`](Self::report): never blocks, allocates or panics, and it is the
    /// producer side (serialised with `report`).
    pub fn report_lost(&self) -> u32 {
        let sequence = self.take_sequence();
        let tail = self.tail.load(Ordering::Relaxed);
        bump(&self.lost_reported);
        self.set_marker(sequence, tail);
        sequence
    }

    /// Consumes the next sequence number (producer side): it then advances modulo 2^31.
    fn take_sequence(&self) -> u32 {
        let sequence = self.next_sequence.load(Ordering::Relaxed);
        self.next_sequence.store(
            sequence.wrapping_add(1) & VeventHeader::SEQUENCE_MASK,
            Ordering::Relaxed,
        );
        sequence
    }

    fn drop_event(&self, sequence: u32, tail: u32) -> Reported {
        bump(&self.dropped_full);
        self.set_marker(sequence, tail);
        Reported::Dropped { sequence }
    }

    /// Moves the LOST_EVENTS marker to producer index `tail` with `sequence`.
    fn set_marker(&self, sequence: u32, tail: u32) {
        let marker = (u64::from(tail) << 32) | LOST_PRESENT | u64::from(sequence);
        // Written with a read-modify-write so it is ordered with the consumer's compare-exchange
        // in loom as it is on hardware: loom 0.7 lets a plain store land between the read and the
        // write of another thread's RMW (tokio-rs/loom#254), an outcome no real CPU produces,
        // which would make a marker vanish in the model. A swap costs the IRQ path one atomic.
        self.lost.swap(marker, Ordering::Release);
    }

    /// Reads whole records into `buf`, as Linux's vEVENTQ `read()` does (`Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event`
    /// "Consumer side: read() semantics"), and returns the number of bytes written.
    ///
    /// - Never blocks. Returns `Ok(0)` when nothing is queued (0 is not end-of-file).
    /// - Takes records from the head: stops when fewer than 8 bytes are left, or when a normal
    ///   record (8 + payload bytes) does not fit; a LOST_EVENTS marker needs only 8 bytes.
    ///   Records are never split: a buffer smaller than the first record gives `Ok(0)` (Linux
    ///   returns 0 there, not EINVAL) and the record stays queued; room for 1.5 records gives
    ///   one record.
    /// - The marker, if any, comes after every normal record and ends the read.
    ///
    /// The ring has one consumer: a read while another one is in progress (on another CPU, or
    /// interrupted on this one) takes nothing and returns [`Error::InUse`] (EBUSY); Linux
    /// serialises readers of one fd with a mutex instead, which an IRQ-path caller cannot wait
    /// for. Linux's other read errors, a non-zero file position (ESPIPE) or a user buffer it
    /// cannot write (EFAULT), cannot happen with a slice.
    pub fn read(&self, buf: &mut [u8]) -> Result<usize, Error> {
        // Acquire: the previous reader's index stores happen before ours.
        if self
            .reading
            .compare_exchange(0, 1, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return Err(Error::InUse(Object::Veventq(P::TYPE.raw())));
        }
        let n = self.read_exclusive(buf);
        // Release: our index stores happen before the next reader's.
        self.reading.store(0, Ordering::Release);
        Ok(n)
    }

    /// [`read`](Self::read) once the consumer flag is ours.
    fn read_exclusive(&self, buf: &mut [u8]) -> usize {
        let record_bytes = P::RECORD_BYTES;
        let mut head = self.head.load(Ordering::Relaxed);
        // Acquire: slots up to `tail` were written before the producer's Release store.
        let mut tail = self.tail.load(Ordering::Acquire);
        let mut done = 0usize;
        let mut records = 0u64;
        let mut marker_taken = false;
        let mut retries = 0u32;

        'outer: loop {
            while head != tail {
                let Some(slot) = self.slot(head) else {
                    break 'outer;
                };
                let Some(dst) = done
                    .checked_add(record_bytes)
                    .and_then(|end| buf.get_mut(done..end))
                else {
                    // The next record does not fit: it stays at the head, and so does the
                    // marker behind it.
                    break 'outer;
                };
                let header = VeventHeader {
                    flags: 0,
                    sequence: slot.sequence.load(Ordering::Relaxed),
                };
                let (hdr, payload) = dst.split_at_mut(HEADER_BYTES);
                hdr.copy_from_slice(&header.to_bytes());
                for (chunk, word) in payload.chunks_exact_mut(8).zip(slot.words.iter()) {
                    chunk.copy_from_slice(&word.load(Ordering::Relaxed).to_le_bytes());
                }
                head = head.wrapping_add(1);
                // Release: our slot reads happen before the producer reuses the slot.
                self.head.store(head, Ordering::Release);
                done += record_bytes;
                records += 1;
            }

            // Every record up to `tail` is read; a marker, if any, is next.
            if buf.len().saturating_sub(done) < HEADER_BYTES {
                break;
            }
            // Load the marker first, then `tail`: if the marker was set after some append, its
            // Acquire load makes that append's `tail` visible below, so we read that record
            // before taking the marker.
            let marker = self.lost.load(Ordering::Acquire);
            let now = self.tail.load(Ordering::Acquire);
            if now != tail {
                tail = now;
                continue;
            }
            if !marker_live(marker, tail) {
                // None, or one an append at its position removed (its clear is on the way).
                break;
            }
            match self
                .lost
                .compare_exchange(marker, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => {
                    let header = VeventHeader {
                        flags: VeventFlags::LOST_EVENTS.bits(),
                        sequence: marker_sequence(marker),
                    };
                    if let Some(dst) = buf.get_mut(done..done + HEADER_BYTES) {
                        dst.copy_from_slice(&header.to_bytes());
                        done += HEADER_BYTES;
                        marker_taken = true;
                    }
                    break;
                }
                Err(_) => {
                    // An append removed the marker (read the new records first) or a drop
                    // renumbered it. Bounded: after MARKER_RETRIES the marker waits for the
                    // next read.
                    retries += 1;
                    if retries > MARKER_RETRIES {
                        break;
                    }
                    tail = self.tail.load(Ordering::Acquire);
                }
            }
        }

        add(&self.records_read, records);
        if marker_taken {
            bump(&self.lost_markers_read);
        }
        done
    }

    /// Number of unread normal records (Linux's `num_events`); the marker is not counted.
    pub fn len(&self) -> u32 {
        let tail = self.tail.load(Ordering::Acquire);
        let head = self.head.load(Ordering::Acquire);
        tail.wrapping_sub(head).min(self.depth)
    }

    /// Whether no normal record is unread (a LOST_EVENTS marker may still be pending).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a read would return something: at least one record or a lone LOST_EVENTS marker
    /// is queued (Linux's `POLLIN | POLLRDNORM`, `Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event`).
    pub fn is_readable(&self) -> bool {
        !self.is_empty() || self.pending_lost().is_some()
    }

    /// The sequence number of the pending LOST_EVENTS marker, if one is queued.
    pub fn pending_lost(&self) -> Option<u32> {
        let marker = self.lost.load(Ordering::Acquire);
        let tail = self.tail.load(Ordering::Acquire);
        marker_live(marker, tail).then_some(marker_sequence(marker))
    }

    /// The sequence number the next report will consume.
    pub fn next_sequence(&self) -> u32 {
        self.next_sequence.load(Ordering::Relaxed)
    }

    /// Totals since the queue was created.
    pub fn stats(&self) -> VeventqStats {
        VeventqStats {
            queued: self.queued.load(Ordering::Relaxed),
            dropped_full: self.dropped_full.load(Ordering::Relaxed),
            lost: self.lost_reported.load(Ordering::Relaxed),
            records_read: self.records_read.load(Ordering::Relaxed),
            lost_markers_read: self.lost_markers_read.load(Ordering::Relaxed),
        }
    }

    /// Starts numbering at `sequence` (tests of the 2^31 wrap).
    #[cfg(all(test, not(loom)))]
    fn set_next_sequence(&self, sequence: u32) {
        self.next_sequence
            .store(sequence & VeventHeader::SEQUENCE_MASK, Ordering::Relaxed);
    }
}

/// Adds 1 to a counter only one side writes (no read-modify-write needed); returns the new value.
#[inline]
fn bump(counter: &AtomicU64) -> u64 {
    add(counter, 1)
}

#[inline]
fn add(counter: &AtomicU64, n: u64) -> u64 {
    let v = counter.load(Ordering::Relaxed).wrapping_add(n);
    counter.store(v, Ordering::Relaxed);
    v
}

/// One item of a vEVENTQ byte stream, as a reader parses it (test helper).
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Item {
    Record { sequence: u32, words: [u64; 4] },
    Lost { sequence: u32 },
}

/// Parses a byte stream of records of `words`-word payloads; panics on a malformed stream.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
fn parse(mut bytes: &[u8], words: usize) -> std::vec::Vec<Item> {
    let mut out = std::vec::Vec::new();
    while !bytes.is_empty() {
        let h = VeventHeader::from_prefix(bytes).unwrap();
        assert_eq!(h.sequence & !VeventHeader::SEQUENCE_MASK, 0, "bit 31 set");
        if h.is_lost_events() {
            assert_eq!(h.flags, 1);
            out.push(Item::Lost {
                sequence: h.sequence,
            });
            bytes = &bytes[8..];
        } else {
            assert_eq!(h.flags, 0);
            let mut w = [0u64; 4];
            for (i, x) in w.iter_mut().enumerate().take(words) {
                *x = u64::from_le_bytes(bytes[8 + 8 * i..16 + 8 * i].try_into().unwrap());
            }
            out.push(Item::Record {
                sequence: h.sequence,
                words: w,
            });
            bytes = &bytes[8 + 8 * words..];
        }
    }
    out
}

#[cfg(all(test, not(loom)))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    type Smmu<const N: usize> = VeventQueue<VeventArmSmmuv3, N>;

    fn evt(n: u64) -> VeventArmSmmuv3 {
        VeventArmSmmuv3 {
            evt: [n, n << 8, n << 16, !n],
        }
    }

    fn read_all<P: VeventPayload, const N: usize>(q: &VeventQueue<P, N>) -> Vec<Item> {
        let mut buf = [0u8; 4096];
        let n = q.read(&mut buf).unwrap();
        parse(&buf[..n], P::WORDS)
    }

    fn rec(sequence: u32, n: u64) -> Item {
        Item::Record {
            sequence,
            words: evt(n).evt,
        }
    }

    #[test]
    fn depth_is_checked() {
        assert_eq!(
            Smmu::<4>::new(0).err(),
            Some(Error::Invalid {
                field: "iommu_veventq_alloc.veventq_depth",
                value: 0
            })
        );
        assert_eq!(Smmu::<4>::new(0).err().map(Error::errno), Some(-22));
        assert_eq!(Smmu::<4>::new(5).err(), Some(Error::NoMemory));
        let q = Smmu::<4>::new(3).unwrap();
        assert_eq!((q.depth(), q.capacity()), (3, 4));
        assert_eq!(q.queue_type(), VeventqType::ArmSmmuv3);
    }

    #[test]
    fn const_construction_in_a_static() {
        static Q: VeventQueue<VeventTegra241Cmdqv, 8> = match VeventQueue::new(8) {
            Ok(q) => q,
            Err(_) => panic!(),
        };
        assert_eq!(
            Q.report(&VeventTegra241Cmdqv {
                lvcmdq_err_map: [1, 2]
            })
            .sequence(),
            0
        );
        assert_eq!(Q.len(), 1);
    }

    #[test]
    fn a_read_while_another_is_in_progress_is_refused() {
        let q: VeventQueue<VeventArmSmmuv3, 4> = VeventQueue::new(4).unwrap();
        q.report(&evt(1));
        q.reading.store(1, Ordering::Relaxed); // another reader is inside
        let mut buf = [0u8; 80];
        assert_eq!(q.read(&mut buf), Err(Error::InUse(Object::Veventq(1))));
        q.reading.store(0, Ordering::Relaxed);
        assert_eq!(q.read(&mut buf), Ok(40));
    }

    #[test]
    fn empty_read_returns_zero() {
        let q = Smmu::<4>::new(4).unwrap();
        let mut buf = [0xaau8; 64];
        assert_eq!(q.read(&mut buf), Ok(0));
        assert_eq!(buf, [0xaa; 64]);
        assert!(!q.is_readable());
    }

    /// Two SMMUv3 records then a LOST marker, bytes written out by hand (little-endian host:
    /// the header is host-endian, the payload `__aligned_le64`).
    #[cfg(target_endian = "little")]
    #[test]
    fn byte_exact_stream() {
        let q = Smmu::<2>::new(2).unwrap();
        let a = VeventArmSmmuv3 {
            evt: [
                0x0000_0007_0000_0010,
                0x1122_3344_5566_7788,
                0xffff_0000_1234_5000,
                0,
            ],
        };
        let b = VeventArmSmmuv3 {
            evt: [0x0102_0304_0506_0708, 1, 2, 3],
        };
        assert_eq!(q.report(&a), Reported::Queued { sequence: 0 });
        assert_eq!(q.report(&b), Reported::Queued { sequence: 1 });
        assert_eq!(q.report(&a), Reported::Dropped { sequence: 2 });
        #[rustfmt::skip]
        let want: [u8; 88] = [
            // header: flags 0, sequence 0
            0, 0, 0, 0,  0, 0, 0, 0,
            0x10, 0, 0, 0, 0x07, 0, 0, 0,
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11,
            0x00, 0x50, 0x34, 0x12, 0x00, 0x00, 0xff, 0xff,
            0, 0, 0, 0, 0, 0, 0, 0,
            // header: flags 0, sequence 1
            0, 0, 0, 0,  1, 0, 0, 0,
            0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
            1, 0, 0, 0, 0, 0, 0, 0,
            2, 0, 0, 0, 0, 0, 0, 0,
            3, 0, 0, 0, 0, 0, 0, 0,
            // LOST_EVENTS marker: flags 1, sequence 2, no payload
            1, 0, 0, 0,  2, 0, 0, 0,
        ];
        let mut buf = [0u8; 200];
        assert_eq!(q.read(&mut buf), Ok(88));
        assert_eq!(buf[..88], want);
    }

    #[test]
    fn tegra_records_are_24_bytes() {
        let q = VeventQueue::<VeventTegra241Cmdqv, 4>::new(4).unwrap();
        for map in [[0x8000_0000_0000_0001, 2], [3, 4]] {
            q.report(&VeventTegra241Cmdqv {
                lvcmdq_err_map: map,
            });
        }
        let mut buf = [0u8; 23];
        assert_eq!(q.read(&mut buf), Ok(0));
        let mut buf = [0u8; 47];
        assert_eq!(q.read(&mut buf), Ok(24));
        assert_eq!(
            buf[..8],
            VeventHeader {
                flags: 0,
                sequence: 0
            }
            .to_bytes()
        );
        assert_eq!(buf[8..16], [1, 0, 0, 0, 0, 0, 0, 0x80]);
        assert_eq!(buf[16..24], [2, 0, 0, 0, 0, 0, 0, 0]);
        let mut buf = [0u8; 24];
        assert_eq!(q.read(&mut buf), Ok(24));
        assert_eq!(
            parse(&buf, 2),
            [Item::Record {
                sequence: 1,
                words: [3, 4, 0, 0]
            }]
        );
    }

    #[test]
    fn sequence_wraps_at_2_pow_31() {
        let q = Smmu::<4>::new(4).unwrap();
        q.set_next_sequence(0x7fff_fffe);
        let seqs: Vec<u32> = (0..3).map(|i| q.report(&evt(i)).sequence()).collect();
        assert_eq!(seqs, [0x7fff_fffe, 0x7fff_ffff, 0]);
        assert_eq!(q.next_sequence(), 1);
        assert_eq!(
            read_all(&q),
            [rec(0x7fff_fffe, 0), rec(0x7fff_ffff, 1), rec(0, 2)]
        );
    }

    #[test]
    fn lost_marker_sequence_wraps_too() {
        let q = Smmu::<1>::new(1).unwrap();
        q.set_next_sequence(0x7fff_ffff);
        assert_eq!(
            q.report(&evt(1)),
            Reported::Queued {
                sequence: 0x7fff_ffff
            }
        );
        assert_eq!(q.report(&evt(2)), Reported::Dropped { sequence: 0 });
        let items = read_all(&q);
        assert_eq!(items, [rec(0x7fff_ffff, 1), Item::Lost { sequence: 0 }]);
        // The reader's rule: (seq - prev) & 0x7fffffff events were lost, counting `seq`.
        assert_eq!(
            0u32.wrapping_sub(0x7fff_ffff) & VeventHeader::SEQUENCE_MASK,
            1
        );
    }

    /// `Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event`: the test suite's depth-2 queue given 3 events reports the overflow, and
    /// one more event afterwards reads back cleanly.
    #[test]
    fn lost_marker_appears_when_full_and_is_gone_after_next_event() {
        let q = Smmu::<2>::new(2).unwrap();
        for i in 0..3 {
            q.report(&evt(i));
        }
        assert_eq!(q.len(), 2);
        assert_eq!(q.pending_lost(), Some(2));
        assert!(q.is_readable());
        assert_eq!(
            read_all(&q),
            [rec(0, 0), rec(1, 1), Item::Lost { sequence: 2 }]
        );
        assert!(!q.is_readable());
        assert_eq!(q.report(&evt(3)), Reported::Queued { sequence: 3 });
        assert_eq!(read_all(&q), [rec(3, 3)]);
    }

    #[test]
    fn marker_is_renumbered_then_replaced_by_next_event_once_room() {
        let q = Smmu::<2>::new(2).unwrap();
        for i in 0..4 {
            q.report(&evt(i)); // 0, 1 stored; 2, 3 dropped
        }
        // Only one marker ever exists; it carries the last dropped number.
        assert_eq!(q.pending_lost(), Some(3));
        // Consumer frees one slot (a 40-byte buffer holds one record, not the marker).
        let mut buf = [0u8; 40];
        assert_eq!(q.read(&mut buf), Ok(40));
        assert_eq!(parse(&buf, 4), [rec(0, 0)]);
        assert_eq!(q.pending_lost(), Some(3));
        // The next event is appended and removes the marker: the loss is a sequence gap.
        assert_eq!(q.report(&evt(4)), Reported::Queued { sequence: 4 });
        assert_eq!(q.pending_lost(), None);
        assert_eq!(read_all(&q), [rec(1, 1), rec(4, 4)]);
    }

    /// Linux's allocation-failure path: a number is consumed and the marker placed even though
    /// the queue has room; queued records stay; the next real event replaces the marker.
    #[test]
    fn report_lost_places_the_marker_without_a_record() {
        let q = Smmu::<4>::new(4).unwrap();
        assert_eq!(q.report_lost(), 0);
        assert_eq!(q.pending_lost(), Some(0));
        assert!(q.is_readable());
        assert_eq!(q.len(), 0, "the marker is not an event");
        let mut eight = [0u8; 8];
        assert_eq!(q.read(&mut eight), Ok(8));
        assert_eq!(parse(&eight, 4), [Item::Lost { sequence: 0 }]);
        assert!(!q.is_readable());

        assert_eq!(q.report(&evt(1)), Reported::Queued { sequence: 1 });
        assert_eq!(q.report_lost(), 2);
        assert_eq!(q.report_lost(), 3, "renumbered, still one marker");
        assert_eq!(q.pending_lost(), Some(3));
        assert_eq!(read_all(&q), [rec(1, 1), Item::Lost { sequence: 3 }]);

        assert_eq!(q.report_lost(), 4);
        assert_eq!(q.report(&evt(5)), Reported::Queued { sequence: 5 });
        assert_eq!(q.pending_lost(), None, "the next event replaces the marker");
        assert_eq!(read_all(&q), [rec(5, 5)]);
        let s = q.stats();
        assert_eq!((s.queued, s.dropped_full, s.lost), (2, 0, 4));
        assert_eq!(s.lost_markers_read, 2);
    }

    #[test]
    fn report_lost_on_a_full_queue_and_at_the_wrap() {
        let q = Smmu::<2>::new(2).unwrap();
        q.set_next_sequence(0x7fff_fffe);
        q.report(&evt(0));
        q.report(&evt(1));
        assert_eq!(q.report_lost(), 0);
        assert_eq!(q.report(&evt(2)), Reported::Dropped { sequence: 1 });
        assert_eq!(
            read_all(&q),
            [
                rec(0x7fff_fffe, 0),
                rec(0x7fff_ffff, 1),
                Item::Lost { sequence: 1 }
            ]
        );
    }

    #[test]
    fn lone_marker_is_an_8_byte_read() {
        let q = Smmu::<1>::new(1).unwrap();
        q.report(&evt(0));
        q.report(&evt(1));
        let mut one = [0u8; 40];
        assert_eq!(q.read(&mut one), Ok(40));
        let mut small = [0u8; 7];
        assert_eq!(q.read(&mut small), Ok(0), "fewer than 8 bytes: nothing");
        let mut eight = [0u8; 8];
        assert_eq!(q.read(&mut eight), Ok(8));
        assert_eq!(parse(&eight, 4), [Item::Lost { sequence: 1 }]);
        assert_eq!(q.read(&mut eight), Ok(0));
    }

    #[test]
    fn short_buffers_never_split_records() {
        let q = Smmu::<4>::new(4).unwrap();
        q.report(&evt(0));
        q.report(&evt(1));
        // Smaller than one record: Linux returns 0 (not EINVAL), the record stays.
        for len in [0, 1, 8, 39] {
            let mut buf = std::vec![0u8; len];
            assert_eq!(q.read(&mut buf), Ok(0), "len {len}");
        }
        assert_eq!(q.len(), 2);
        // Room for 1.5 records: one record.
        let mut buf = [0u8; 60];
        assert_eq!(q.read(&mut buf), Ok(40));
        assert_eq!(parse(&buf[..40], 4), [rec(0, 0)]);
        assert_eq!(read_all(&q), [rec(1, 1)]);
    }

    #[test]
    fn marker_waits_when_only_records_fit() {
        let q = Smmu::<2>::new(2).unwrap();
        for i in 0..3 {
            q.report(&evt(i));
        }
        let mut buf = [0u8; 87]; // two records and 7 bytes
        assert_eq!(q.read(&mut buf), Ok(80));
        assert_eq!(q.pending_lost(), Some(2));
        assert_eq!(read_all(&q), [Item::Lost { sequence: 2 }]);
    }

    #[test]
    fn counters() {
        let q = Smmu::<2>::new(2).unwrap();
        for i in 0..5 {
            q.report(&evt(i));
        }
        assert_eq!(
            q.stats(),
            VeventqStats {
                queued: 2,
                dropped_full: 3,
                lost: 0,
                records_read: 0,
                lost_markers_read: 0
            }
        );
        read_all(&q);
        q.report(&evt(5));
        q.report(&evt(6));
        q.report(&evt(7));
        let mut one = [0u8; 40];
        q.read(&mut one).unwrap();
        assert_eq!(
            q.stats(),
            VeventqStats {
                queued: 4,
                dropped_full: 4,
                lost: 0,
                records_read: 3,
                lost_markers_read: 1
            }
        );
        assert_eq!(q.next_sequence(), 8);
    }

    /// Linux's algorithm as `Documentation/userspace-api/iommufd.rst` IOMMUFD_OBJ_VEVENTQ, Linux's `iommufd_viommu_report_event` states it, on a plain list.
    #[derive(Default)]
    struct Reference {
        list: VecDeque<Item>,
        num_events: u32,
        depth: u32,
        sequence: u32,
    }

    impl Reference {
        fn report(&mut self, words: [u64; 4]) -> Reported {
            let sequence = self.sequence;
            self.sequence = (sequence + 1) & VeventHeader::SEQUENCE_MASK;
            if matches!(self.list.back(), Some(Item::Lost { .. })) {
                self.list.pop_back();
            }
            if self.num_events < self.depth {
                self.list.push_back(Item::Record { sequence, words });
                self.num_events += 1;
                Reported::Queued { sequence }
            } else {
                self.list.push_back(Item::Lost { sequence });
                Reported::Dropped { sequence }
            }
        }

        fn report_lost(&mut self) -> u32 {
            let sequence = self.sequence;
            self.sequence = (sequence + 1) & VeventHeader::SEQUENCE_MASK;
            if matches!(self.list.back(), Some(Item::Lost { .. })) {
                self.list.pop_back();
            }
            self.list.push_back(Item::Lost { sequence });
            sequence
        }

        fn read(&mut self, len: usize, record_bytes: usize) -> Vec<Item> {
            let mut out = Vec::new();
            let mut left = len;
            while let Some(&item) = self.list.front() {
                if left < 8 {
                    break;
                }
                let need = match item {
                    Item::Lost { .. } => 8,
                    Item::Record { .. } => record_bytes,
                };
                if left < need {
                    break;
                }
                left -= need;
                self.list.pop_front();
                if let Item::Record { .. } = item {
                    self.num_events -= 1;
                }
                out.push(item);
            }
            out
        }
    }

    proptest::proptest! {
        /// Any interleaving of reports, lost reports and reads of any length gives the same
        /// bytes as Linux's algorithm.
        #[test]
        fn matches_linux_reference(
            depth in 1u32..=8,
            start in proptest::prop_oneof![0u32..4, 0x7fff_fff0u32..=0x7fff_ffff],
            ops in proptest::collection::vec(0usize..300, 1..80),
        ) {
            let q = Smmu::<8>::new(depth).unwrap();
            q.set_next_sequence(start);
            let mut r = Reference { depth, sequence: start, ..Default::default() };
            for (i, op) in ops.into_iter().enumerate() {
                match op {
                    280.. => {
                        proptest::prop_assert_eq!(q.report_lost(), r.report_lost());
                    }
                    140.. => {
                        let e = evt(i as u64);
                        proptest::prop_assert_eq!(q.report(&e), r.report(e.evt));
                    }
                    len => {
                        let mut buf = std::vec![0u8; len];
                        let n = q.read(&mut buf).unwrap();
                        let want = r.read(len, 40);
                        proptest::prop_assert_eq!(parse(&buf[..n], 4), want);
                    }
                }
                proptest::prop_assert_eq!(q.len(), r.num_events);
            }
        }
    }

    /// Real threads: a producer outruns a reader with odd buffer sizes; the stream stays
    /// well-formed and accounts for every sequence number.
    #[test]
    fn threads_stream_is_consistent() {
        use std::sync::Arc;
        const EVENTS: u64 = 20_000;
        let q = Arc::new(Smmu::<16>::new(16).unwrap());
        let p = Arc::clone(&q);
        let producer =
            std::thread::spawn(move || (0..EVENTS).map(|i| p.report(&evt(i))).collect::<Vec<_>>());
        let mut stream = Vec::new();
        let mut sizes = [8usize, 40, 47, 87, 200, 1000].into_iter().cycle();
        while !producer.is_finished() {
            let mut buf = std::vec![0u8; sizes.next().unwrap()];
            let n = q.read(&mut buf).unwrap();
            stream.push(parse(&buf[..n], 4));
        }
        let outcomes = producer.join().unwrap();
        stream.push(read_all(&q));
        check_stream(&stream, &outcomes, |s| evt(u64::from(s)).evt);
    }
}

/// Checks a consumer's reads (one `Vec<Item>` per read) against the producer's outcomes:
/// records in order with the right payloads, each queued event read exactly once, a marker only
/// at the end of a read and only for a dropped number, and a final marker iff the last report
/// was dropped. Sequences start at 0 and do not wrap here.
#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::panic)]
fn check_stream(
    reads: &[std::vec::Vec<Item>],
    outcomes: &[Reported],
    words: impl Fn(u32) -> [u64; 4],
) {
    let mut last: Option<u32> = None;
    let mut seen = std::vec::Vec::new();
    let mut final_item = None;
    for read in reads {
        for (i, item) in read.iter().enumerate() {
            let sequence = match *item {
                Item::Record { sequence, words: w } => {
                    assert_eq!(w, words(sequence), "payload of {sequence}");
                    assert!(
                        matches!(outcomes[sequence as usize], Reported::Queued { .. }),
                        "record {sequence} was not queued"
                    );
                    seen.push(sequence);
                    sequence
                }
                Item::Lost { sequence } => {
                    assert_eq!(i, read.len() - 1, "marker not last in its read");
                    assert!(
                        matches!(outcomes[sequence as usize], Reported::Dropped { .. }),
                        "marker {sequence} was not a drop"
                    );
                    sequence
                }
            };
            assert!(
                last.is_none_or(|l| sequence > l),
                "out of order: {sequence} after {last:?}"
            );
            last = Some(sequence);
            final_item = Some(*item);
        }
    }
    let queued: std::vec::Vec<u32> = outcomes
        .iter()
        .filter_map(|o| match o {
            Reported::Queued { sequence } => Some(*sequence),
            Reported::Dropped { .. } => None,
        })
        .collect();
    assert_eq!(seen, queued, "every queued event read exactly once");
    match outcomes.last() {
        Some(Reported::Dropped { sequence }) => {
            assert_eq!(
                final_item,
                Some(Item::Lost {
                    sequence: *sequence
                })
            );
        }
        _ => assert!(!matches!(final_item, Some(Item::Lost { .. }))),
    }
}

#[cfg(all(test, loom))]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod loom_tests {
    use super::*;
    use loom::sync::Arc;
    use std::vec::Vec;

    fn payload(i: u32) -> VeventTegra241Cmdqv {
        VeventTegra241Cmdqv {
            lvcmdq_err_map: [u64::from(i) + 0x100, !u64::from(i)],
        }
    }

    fn words(i: u32) -> [u64; 4] {
        payload(i).to_words()
    }

    fn read(q: &VeventQueue<VeventTegra241Cmdqv, 2>) -> Vec<Item> {
        let mut buf = [0u8; 3 * 24 + 8];
        let n = q.read(&mut buf).unwrap();
        parse(&buf[..n], 2)
    }

    /// Two readers race on one queue holding two records: the consumer flag lets one in, the
    /// other gets EBUSY or reads after it; every record is read exactly once. Without the flag
    /// loom finds a record read twice.
    #[test]
    fn second_reader_is_refused() {
        crate::viommu::sync::model("second_reader_is_refused", || {
            let q = Arc::new(VeventQueue::<VeventTegra241Cmdqv, 2>::new(2).unwrap());
            q.report(&payload(0));
            q.report(&payload(1));
            let other = {
                let q = q.clone();
                loom::thread::spawn(move || {
                    let mut buf = [0u8; 2 * 24];
                    match q.read(&mut buf) {
                        Ok(n) => parse(&buf[..n], 2),
                        Err(e) => {
                            assert_eq!(e, Error::InUse(Object::Veventq(2)));
                            Vec::new()
                        }
                    }
                })
            };
            let mut buf = [0u8; 2 * 24];
            let mine = match q.read(&mut buf) {
                Ok(n) => parse(&buf[..n], 2),
                Err(e) => {
                    assert_eq!(e, Error::InUse(Object::Veventq(2)));
                    Vec::new()
                }
            };
            let mut all = other.join().unwrap();
            all.extend(mine);
            all.extend(read(&q));
            assert_eq!(
                all,
                [
                    Item::Record {
                        sequence: 0,
                        words: words(0)
                    },
                    Item::Record {
                        sequence: 1,
                        words: words(1)
                    }
                ]
            );
        });
    }

    /// Producer reports 3 events into a depth-2 queue while the consumer reads twice; then a
    /// final read. Every interleaving keeps the Linux stream invariants.
    #[test]
    fn spsc_with_lost_marker() {
        loom::model(|| {
            let q = Arc::new(VeventQueue::<VeventTegra241Cmdqv, 2>::new(2).unwrap());
            let p = Arc::clone(&q);
            let producer = loom::thread::spawn(move || {
                (0..3).map(|i| p.report(&payload(i))).collect::<Vec<_>>()
            });
            let c = Arc::clone(&q);
            let consumer = loom::thread::spawn(move || std::vec![read(&c), read(&c)]);
            let outcomes = producer.join().unwrap();
            let mut reads = consumer.join().unwrap();
            reads.push(read(&q));
            assert!(read(&q).is_empty());
            check_stream(&reads, &outcomes, words);
            let s = q.stats();
            let dropped = outcomes
                .iter()
                .filter(|o| matches!(o, Reported::Dropped { .. }))
                .count() as u64;
            assert_eq!((s.queued, s.dropped_full), (3 - dropped, dropped));
            assert_eq!(s.records_read, 3 - dropped);
        });
    }

    /// The marker is taken while the producer appends after freeing room: small buffers force
    /// the consumer to interleave with the append that removes the marker.
    #[test]
    fn marker_vs_append_race() {
        loom::model(|| {
            let q = Arc::new(VeventQueue::<VeventTegra241Cmdqv, 2>::new(1).unwrap());
            // Seq 0 queued, seq 1 dropped: marker(1) pending behind record 0.
            q.report(&payload(0));
            q.report(&payload(1));
            let p = Arc::clone(&q);
            let producer = loom::thread::spawn(move || p.report(&payload(2)));
            let c = Arc::clone(&q);
            let consumer = loom::thread::spawn(move || std::vec![read(&c), read(&c)]);
            let third = producer.join().unwrap();
            let mut reads = consumer.join().unwrap();
            reads.push(read(&q));
            assert!(read(&q).is_empty());
            let outcomes = [
                Reported::Queued { sequence: 0 },
                Reported::Dropped { sequence: 1 },
                third,
            ];
            check_stream(&reads, &outcomes, words);
        });
    }

    /// `report_lost` (Linux's allocation-failure path) races a consumer reading the record in
    /// front of it: the marker is delivered after record 0, exactly once, or waits for the next
    /// read; then an append replaces a marker still queued.
    #[test]
    fn report_lost_vs_consumer() {
        crate::viommu::sync::model("report_lost_vs_consumer", || {
            let q = Arc::new(VeventQueue::<VeventTegra241Cmdqv, 2>::new(2).unwrap());
            q.report(&payload(0));
            let p = Arc::clone(&q);
            let producer = loom::thread::spawn(move || {
                let lost = p.report_lost();
                let next = p.report(&payload(2));
                (lost, next)
            });
            let mut reads = std::vec![read(&q), read(&q)];
            let (lost, next) = producer.join().unwrap();
            reads.push(read(&q));
            assert!(read(&q).is_empty());
            assert_eq!(lost, 1);
            let outcomes = [
                Reported::Queued { sequence: 0 },
                Reported::Dropped { sequence: 1 },
                next,
            ];
            check_stream(&reads, &outcomes, words);
            assert_eq!(q.stats().lost, 1);
        });
    }

    /// The same race with the consumer on the model's main thread: loom explores a different
    /// set of interleavings this way (this variant is the one that finds a marker delivered
    /// after a record appended behind it, if the position check in `marker_live` is removed).
    #[test]
    fn marker_vs_append_race_main_consumer() {
        loom::model(|| {
            let q = Arc::new(VeventQueue::<VeventTegra241Cmdqv, 2>::new(1).unwrap());
            q.report(&payload(0));
            q.report(&payload(1));
            let p = Arc::clone(&q);
            let producer = loom::thread::spawn(move || p.report(&payload(2)));
            let mut reads = std::vec![read(&q), read(&q)];
            let third = producer.join().unwrap();
            reads.push(read(&q));
            assert!(read(&q).is_empty());
            let outcomes = [
                Reported::Queued { sequence: 0 },
                Reported::Dropped { sequence: 1 },
                third,
            ];
            check_stream(&reads, &outcomes, words);
        });
    }
}
