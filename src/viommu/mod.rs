//! Virtualisation: one `Viommu` per VM, vDEVICEs, vEVENTQ rings fed from the IRQ path.

pub mod veventq;
