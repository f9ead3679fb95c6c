//! `#[repr(C)]` mirror of the Linux iommufd uAPI structures an SMMUv3 vIOMMU uses.
