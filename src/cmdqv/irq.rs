//! The CMDQV error interrupt (Linux's `tegra241_cmdqv_isr`): VINTF_ERR_MAP → LVCMDQ_ERR_MAP → GERROR.
//!
//! No allocation, no lock, no panic, no unbounded wait: at most two VINTF_ERR_MAP reads, two
//! LVCMDQ_ERR_MAP reads per flagged VINTF, and a constant number of accesses per flagged host
//! queue. The interrupt is edge-triggered, so every flagged bit is handled in one call.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use core::sync::atomic::Ordering;

use super::host::VcmdqHw;
use super::{Cmdqv, VintfId};
use crate::iommufd::VeventTegra241Cmdqv;
use crate::platform::{DmaMemory, Platform};

/// Where queue errors of guest-owned VINTFs go: the owning vIOMMU's vEVENTQ of type
/// `TEGRA241_CMDQV`, as one `iommu_vevent_tegra241_cmdqv` record (`struct iommu_vevent_tegra241_cmdqv`).
///
/// Called from the interrupt handler: implementations must not block, allocate or panic.
pub trait CmdqvEventSink {
    /// VINTF `vintf` has queues in error; `event` carries its LVCMDQ_ERR_MAP words raw (bit *l*
    /// = logical queue *l*): queue it on the vEVENTQ of the vIOMMU owning `vintf`.
    fn report(&self, vintf: VintfId, event: VeventTegra241Cmdqv);
}

impl<T: CmdqvEventSink + ?Sized> CmdqvEventSink for &T {
    fn report(&self, vintf: VintfId, event: VeventTegra241Cmdqv) {
        (**self).report(vintf, event);
    }
}

/// What one run of [`Cmdqv::handle_error`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CmdqvErrorStats {
    /// Host queues whose error was recovered (bad command skipped, GERRORN acknowledged).
    pub host_recovered: u32,
    /// Host queues flagged in LVCMDQ_ERR_MAP with no active error (already recovered by a
    /// submitter polling its queue).
    pub host_already_clear: u32,
    /// Host queues flagged while a submitter held them: it recovers the error as it polls.
    pub host_left_to_submitter: u32,
    /// Records reported for guest VINTFs.
    pub guest_reports: u32,
    /// Flagged VINTFs or queues that are not in use or beyond the configured counts.
    pub ignored: u32,
}

impl<P: Platform, D: DmaMemory> Cmdqv<P, D> {
    /// Handles the CMDQV error interrupt (Linux's `tegra241_cmdqv_isr`): reads VINTF_ERR_MAP (high word at
    /// `0x18`, low at `0x14`); for VINTF0, reads its LVCMDQ_ERR_MAP and recovers each flagged
    /// host queue (an illegal command at CONS becomes a CMD_SYNC, then GERRORN = GERROR; CERROR_ABT
    /// and CERROR_ATC_INV_SYNC are only acknowledged, the fetch or the CMD_SYNC is retried); for each
    /// flagged guest VINTF in use, reports its two LVCMDQ_ERR_MAP words to `sink` and leaves the
    /// guest's GERROR alone (the guest acknowledges through its VINTF page 0).
    pub fn handle_error<S: CmdqvEventSink + ?Sized>(&self, sink: &S) -> CmdqvErrorStats {
        let mut stats = CmdqvErrorStats::default();
        let page = self.config_page();
        let hi = self.read(&page.VINTF_ERR_MAP_HI);
        let lo = self.read(&page.VINTF_ERR_MAP_LO);
        let mut map = (u64::from(hi) << 32) | u64::from(lo);
        log_warn!("cmdqv: error interrupt, VINTF_ERR_MAP {=u64:#x}", map);
        while map != 0 {
            let v = map.trailing_zeros() as usize;
            map &= map - 1;
            if v == 0 {
                self.handle_host_errors(&mut stats);
                continue;
            }
            let in_use = v < self.num_vintfs
                && self
                    .guests
                    .get(v)
                    .is_some_and(|g| g.in_use.load(Ordering::Acquire));
            let Some(r) = self.vintf_regs(v).ok().filter(|_| in_use) else {
                stats.ignored += 1;
                continue;
            };
            let [w0, w1] = &r.LVCMDQ_ERR_MAP;
            let event = VeventTegra241Cmdqv {
                lvcmdq_err_map: [self.read(w0), self.read(w1)],
            };
            sink.report(VintfId(v as u8), event);
            stats.guest_reports += 1;
        }
        stats
    }

    fn handle_host_errors(&self, stats: &mut CmdqvErrorStats) {
        if !self.ready.load(Ordering::Acquire) {
            stats.ignored += 1;
            return;
        }
        let Ok(r) = self.vintf_regs(0) else { return };
        for (m, word) in r.LVCMDQ_ERR_MAP.iter().enumerate() {
            let mut bits = self.read(word);
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let l = 64 * m + b;
                if l >= self.per_vintf {
                    stats.ignored += 1;
                    continue;
                }
                let Some(q) = self.host.get(l) else { continue };
                let hw = VcmdqHw { cmdqv: self, l };
                match q.recover_from_irq(&hw, &self.platform) {
                    Some(Some(_)) => stats.host_recovered += 1,
                    Some(None) => stats.host_already_clear += 1,
                    None => stats.host_left_to_submitter += 1,
                }
            }
        }
    }
}
