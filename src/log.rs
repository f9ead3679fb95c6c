//! Logging through `defmt` when the `defmt` feature is on; nothing otherwise.

#![allow(unused_macros)]

macro_rules! log_error {
    ($($t:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::error!($($t)*);
    }};
}

macro_rules! log_warn {
    ($($t:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::warn!($($t)*);
    }};
}

macro_rules! log_info {
    ($($t:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::info!($($t)*);
    }};
}

macro_rules! log_debug {
    ($($t:tt)*) => {{
        #[cfg(feature = "defmt")]
        defmt::debug!($($t)*);
    }};
}
