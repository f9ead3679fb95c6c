//! Host tests of the physical driver against the software SMMUv3 model (`fake`), one file per
//! concern; `rig` and `recorder` hold the two test rigs.

// A failed expectation is a test failure: tests may unwrap, index and panic.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod cmdq;
mod drain;
mod errors;
mod gerror;
mod noncoherent;
mod plan;
mod probe;
mod races;
mod recorder;
mod reset;
mod rig;
mod ste_update;
mod strtab;

pub(super) const IDR0_MSI: u32 = 1 << 13;
pub(super) const IDR0_SEV: u32 = 1 << 14;
pub(super) const IDR0_PRI: u32 = 1 << 16;
pub(super) const IDR0_HYP: u32 = 1 << 9;
pub(super) const IDR0_COHACC: u32 = 1 << 4;
pub(super) const IDR0_ATS: u32 = 1 << 10;
pub(super) const CR0_SMMUEN: u32 = 1 << 0;
pub(super) const CR0_PRIQEN: u32 = 1 << 1;
pub(super) const CR0_EVENTQEN: u32 = 1 << 2;
pub(super) const CR0_CMDQEN: u32 = 1 << 3;
pub(super) const CR0_ATSCHK: u32 = 1 << 4;
