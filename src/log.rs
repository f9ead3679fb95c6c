//! Logging through `defmt` when the `defmt` feature is on and the target is bare metal; nothing
//! otherwise.
//!
//! A `defmt` log statement links against the global logger that the final firmware image
//! defines (`#[defmt::global_logger]`, e.g. `defmt-rtt` or `defmt-semihosting`). A hosted
//! build (tests, benches, tools) has no such image, so with the feature on there it keeps the
//! `defmt::Format` derives (checked by the compiler, usable by a host-side logger) and compiles
//! the log statements out, which lets every feature combination build and test on the host
//! (`cargo test --all-features`, `cargo hack --each-feature`).

#![allow(unused_macros)]

macro_rules! log_error {
    ($($t:tt)*) => {{
        #[cfg(all(feature = "defmt", target_os = "none"))]
        defmt::error!($($t)*);
    }};
}

macro_rules! log_warn {
    ($($t:tt)*) => {{
        #[cfg(all(feature = "defmt", target_os = "none"))]
        defmt::warn!($($t)*);
    }};
}

macro_rules! log_info {
    ($($t:tt)*) => {{
        #[cfg(all(feature = "defmt", target_os = "none"))]
        defmt::info!($($t)*);
    }};
}

macro_rules! log_debug {
    ($($t:tt)*) => {{
        #[cfg(all(feature = "defmt", target_os = "none"))]
        defmt::debug!($($t)*);
    }};
}
