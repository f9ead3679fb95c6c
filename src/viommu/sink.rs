//! The interfaces between the vIOMMU layer and the physical driver, re-exported from
//! [`crate::smmu`]: where commands go ([`CommandSink`], implemented by the driver's `Smmu` and by
//! Tegra241 VCMDQs) and what the IRQ drains hand records to ([`EventSink`], [`PriSink`]). The
//! [`Router`](super::Router)'s [`sink`](super::Router::sink) is an [`EventSink`] and a
//! [`PriSink`] that hands on to the host's own sinks whatever it does not route to a guest.

pub use crate::smmu::{CommandSink, EventSink, PriSink};
