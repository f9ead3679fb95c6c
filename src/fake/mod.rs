//! Software models of an SMMUv3 (and CMDQV) for host tests (feature `fakes`).

#[cfg(feature = "cmdqv")]
pub mod cmdqv;
