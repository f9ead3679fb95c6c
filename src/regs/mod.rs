//! SMMUv3 register pages as `tock-registers` blocks: the only MMIO definitions in the crate.
