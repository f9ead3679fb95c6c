//! Fault queues (IOMMU_FAULT_QUEUE_ALLOC, `struct iommu_fault_alloc`): the page-fault groups the
//! IRQ path queued, read and answered by the hypervisor, and answered INVALID whenever their
//! device leaves the vIOMMU (Linux's `iommufd_auto_response_faults`).

use super::super::invalidate::INVALIDATE_BATCH;
use super::super::iopf::{FaultGroups, FaultRing};
use super::{TEARDOWN_SPINS, Tenant, Viommu, ViommuId};
use crate::command::Command;
use crate::error::{Error, Object};
use crate::ids::StreamId;
use crate::iommufd::{HwptPageResponse, HwptPgfault, PageResponseCode};
use crate::smmu::CommandSink;

impl<
    const VIOMMUS: usize,
    const ROUTES: usize,
    const VDEVICES: usize,
    const VEVENTS: usize,
    const FAULTS: usize,
> super::Router<VIOMMUS, ROUTES, VDEVICES, VEVENTS, FAULTS>
{
    /// Creates the vIOMMU's fault queue (IOMMU_FAULT_QUEUE_ALLOC plus a fault-capable nested
    /// HWPT): from now on stall events and page requests of its attached devices become
    /// page-fault groups. EEXIST if it has one.
    pub fn alloc_fault_queue(&self, id: ViommuId) -> Result<(), Error> {
        self.with_ctl(id, |v, c| {
            v.faults
                .open(FaultRing::new(), c.generation)
                .map_err(|_| Error::AlreadyExists(Object::FaultQueue(id)))
        })
    }

    /// Destroys the fault queue: every pending and delivered group is answered INVALID through
    /// `cmds` (Linux does this when the fault object goes). Returns the groups answered. EBUSY
    /// if the IRQ path held its rings too long (nothing enters the queue meanwhile; call again).
    pub fn destroy_fault_queue(
        &self,
        id: ViommuId,
        cmds: &impl CommandSink,
    ) -> Result<usize, Error> {
        self.with_ctl(id, |v, c| {
            let ring = match v.faults.close(TEARDOWN_SPINS, || self.producer_round()) {
                Ok(Some(ring)) => ring,
                Ok(None) => return Err(Error::NoSuch(Object::FaultQueue(id))),
                Err(()) => return Err(Error::InUse(Object::FaultQueue(id))),
            };
            let mut n = 0;
            drain_invalid(&ring, &mut c.groups, cmds, &mut n)?;
            Ok(n)
        })
    }

    /// Reads whole fault groups (the fault fd's `read()`, `iommufd_fault_fops_read`) into
    /// `out`; returns the number of records. 0 when nothing is pending or the first group does
    /// not fit.
    pub fn read_faults(&self, id: ViommuId, out: &mut [HwptPgfault]) -> Result<usize, Error> {
        self.with_ctl(id, |v, c| {
            if v.faults.read(|_, ring| c.groups.pull(ring)).is_none() {
                return Err(Error::NoSuch(Object::FaultQueue(id)));
            }
            let devs = &c.vdevices;
            let dev_id =
                |psid: StreamId| devs.iter().find(|d| d.psid == psid).map_or(0, |d| d.dev_id);
            Ok(c.groups.read(out, dev_id))
        })
    }

    /// Answers delivered groups (the fault fd's `write()`, `iommufd_fault_fops_write`): each
    /// response becomes PRI_RESP or RESUME, issued through `cmds` in batches (one CMD_SYNC
    /// each). Processing stops at the first unknown cookie or bad code (EINVAL). A group is
    /// retired only once its command was issued: the result is the number of responses issued
    /// if at least one was, otherwise the error (of the first bad response or of the first
    /// batch that could not be issued, whose groups stay delivered and can be answered again).
    pub fn respond(
        &self,
        id: ViommuId,
        responses: &[HwptPageResponse],
        cmds: &impl CommandSink,
    ) -> Result<usize, Error> {
        self.with_ctl(id, |_, c| {
            let mut done = 0usize;
            for chunk in responses.chunks(INVALIDATE_BATCH) {
                let mut batch: heapless::Vec<Command, INVALIDATE_BATCH> = heapless::Vec::new();
                let mut cookies: heapless::Vec<u32, INVALIDATE_BATCH> = heapless::Vec::new();
                let mut bad = None;
                for r in chunk {
                    // A cookie answered earlier in this batch is unknown by now.
                    let cmd = match cookies.contains(&r.cookie) {
                        true => Err(Error::Invalid {
                            field: "iommu_hwpt_page_response.cookie",
                            value: u64::from(r.cookie),
                        }),
                        false => c.groups.response(r),
                    };
                    match cmd {
                        Ok(cmd) => {
                            let _ = batch.push(cmd);
                            let _ = cookies.push(r.cookie);
                        }
                        Err(e) => {
                            bad = Some(e);
                            break;
                        }
                    }
                }
                if !batch.is_empty() {
                    if let Err(e) = cmds.submit(&batch) {
                        return if done > 0 { Ok(done) } else { Err(e) };
                    }
                    for cookie in &cookies {
                        c.groups.retire(*cookie);
                    }
                    done += batch.len();
                }
                if let Some(e) = bad {
                    return if done > 0 { Ok(done) } else { Err(e) };
                }
            }
            Ok(done)
        })
    }

    /// Answers INVALID every fault group of `filter` (every group if `None`) once no IRQ-path
    /// producer can add to them: the caller made sure no route sends the device's faults here
    /// any more; this waits a grace round of the producer token (every producer that looked the
    /// route up earlier has pushed what it had), then takes what the IRQ ring holds: faults of
    /// `filter` are answered (a group's Last fault) or dropped (partial), the others go to the
    /// group table, or, if it is full, are answered or dropped too (the guest left its table
    /// full; what is answered is its own device's, answered while it still is). Then the
    /// table's groups of `filter` are answered. Returns the groups answered; EBUSY (nothing
    /// done) if the grace round did not come in time.
    pub(super) fn purge_faults(
        &self,
        id: ViommuId,
        v: &Viommu<VDEVICES, VEVENTS, FAULTS>,
        c: &mut Tenant<VDEVICES, FAULTS>,
        filter: Option<StreamId>,
        cmds: &impl CommandSink,
    ) -> Result<usize, Error> {
        if !self.producer_round() {
            return Err(Error::InUse(Object::FaultQueue(id)));
        }
        let matches = |psid: StreamId| filter.is_none_or(|s| s == psid);
        // The ring holds at most F faults, so `owed` cannot overflow.
        let mut owed: heapless::Vec<Command, FAULTS> = heapless::Vec::new();
        let groups = &mut c.groups;
        v.faults.read(|_, ring| {
            // Bounded by what was there: producers may push other devices' faults meanwhile.
            for _ in 0..ring.len() {
                let Some(f) = ring.pop() else { break };
                let answer = if matches(f.psid) {
                    true
                } else {
                    groups.add(f).is_err()
                };
                if answer && f.last {
                    let _ = owed.push(f.response(PageResponseCode::Invalid));
                }
            }
        });
        let mut answered = owed.len();
        let mut result = Ok(());
        for chunk in owed.chunks(INVALIDATE_BATCH) {
            result = result.and(cmds.submit(chunk));
        }
        result = result.and(answer_invalid(groups, filter, cmds, &mut answered));
        result.map(|()| answered)
    }
}

/// Takes every fault out of `ring` and answers INVALID every group of `groups` and every
/// group-ending fault that did not fit in the table.
fn drain_invalid<const FAULTS: usize>(
    ring: &FaultRing<FAULTS>,
    groups: &mut FaultGroups<FAULTS>,
    cmds: &impl CommandSink,
    answered: &mut usize,
) -> Result<(), Error> {
    let mut result = Ok(());
    loop {
        groups.pull(ring);
        result = result.and(answer_invalid(groups, None, cmds, answered));
        if ring.is_empty() {
            return result;
        }
    }
}

/// Answers INVALID the groups of `filter` (all if `None`), issuing the commands in batches.
fn answer_invalid<const FAULTS: usize>(
    groups: &mut FaultGroups<FAULTS>,
    filter: Option<StreamId>,
    cmds: &impl CommandSink,
    answered: &mut usize,
) -> Result<(), Error> {
    let mut batch: heapless::Vec<Command, INVALIDATE_BATCH> = heapless::Vec::new();
    let mut result = Ok(());
    *answered += groups.answer_all_invalid(filter, |cmd| {
        if batch.push(cmd).is_err() {
            result = result.and(cmds.submit(&batch));
            batch.clear();
            let _ = batch.push(cmd);
        }
    });
    if !batch.is_empty() {
        result = result.and(cmds.submit(&batch));
    }
    result
}
