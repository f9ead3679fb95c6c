//! Link setup of the board images: aarch64-rt's image.ld lays the sections into a `MEMORY`
//! region named `image`, which each board's script places in that board's DRAM.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for ld in ["thor.ld", "grace.ld"] {
        println!("cargo::rerun-if-changed={ld}");
    }
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo::rustc-link-search={}", dir.display());
    println!("cargo::rustc-link-arg-bins=-Timage.ld");
    println!("cargo::rustc-link-arg-bin=thor=-Tthor.ld");
    println!("cargo::rustc-link-arg-bin=grace=-Tgrace.ld");
}
