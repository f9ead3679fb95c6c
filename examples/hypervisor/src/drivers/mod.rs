//! Drivers for the devices of QEMU `virt` the hypervisor itself uses.

pub mod edu;
pub mod gic;
pub mod pci;
pub mod smmu;
pub mod uart;
