//! The interfaces between the vIOMMU layer and the physical driver: where commands go
//! ([`CommandSink`]) and what the IRQ drains hand records to ([`EventSink`], [`PriSink`]).
//!
//! The physical driver's `Smmu` implements [`CommandSink`]; the [`Router`](super::Router) is an
//! [`EventSink`] and a [`PriSink`] that hands on, to the host's own sinks, whatever it does not
//! route to a guest.

use crate::command::Command;
use crate::error::Error;
use crate::event::EvtqEntry;
use crate::pri::PriqEntry;

/// Something that issues commands on an SMMU command queue: the batch, then one CMD_SYNC, and
/// waits for it (IHI 0070 §4.7.3). The batch must not contain a CMD_SYNC.
pub trait CommandSink {
    /// Issues `cmds` and one CMD_SYNC; returns once the sync completed or failed.
    fn submit(&self, cmds: &[Command]) -> Result<(), Error>;
}

impl<T: CommandSink + ?Sized> CommandSink for &T {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        (**self).submit(cmds)
    }
}

/// Receives every event record the event-queue drain takes off the queue (IHI 0070 §7), in
/// order, in the IRQ path: must not block, allocate or panic.
pub trait EventSink {
    /// One record.
    fn event(&mut self, entry: &EvtqEntry);
    /// The event queue overflowed (EVENTQ_PROD.OVFLG toggled, or GERROR.EVENTQ_ABT_ERR on QEMU):
    /// records were lost whose content and owners are unknown (IHI 0070 §7.4).
    fn overflow(&mut self) {}
}

/// Receives every PRI queue entry the PRI drain takes off the queue (IHI 0070 §8), in the IRQ
/// path: must not block, allocate or panic.
pub trait PriSink {
    /// One page request.
    fn request(&mut self, entry: &PriqEntry);
    /// The PRI queue overflowed: page requests were lost (IHI 0070 §8.1).
    fn overflow(&mut self) {}
}
