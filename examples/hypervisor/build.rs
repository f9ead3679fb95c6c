//! Link setup for the bare-metal image: aarch64-rt's image.ld lays out the sections into a
//! `MEMORY` region named `image`, which qemu_virt.ld places in QEMU `virt` RAM; defmt.x (from
//! defmt's build script) adds the `.defmt` table the host decoder reads.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=qemu_virt.ld");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    println!("cargo::rustc-link-search={}", dir.display());
    println!("cargo::rustc-link-arg-bins=-Timage.ld");
    println!("cargo::rustc-link-arg-bins=-Tqemu_virt.ld");
    println!("cargo::rustc-link-arg-bins=-Tdefmt.x");
}
