//! NVIDIA Tegra241 CMDQV: VINTFs and VCMDQs beside the SMMUv3 (feature `cmdqv`).

pub mod regs;
