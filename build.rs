//! Link setup for the bare-metal QEMU `virt` example (examples/qemu_virt); the library itself needs
//! nothing from here.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=linker/qemu_virt.ld");
    if env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("none") {
        return;
    }
    let linker =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo")).join("linker");
    println!("cargo::rustc-link-search={}", linker.display());
    // aarch64-rt's image.ld lays out the sections into a `MEMORY` region named `image`, which
    // qemu_virt.ld places in QEMU `virt` RAM; defmt.x (from defmt's build script) adds the
    // `.defmt` table the host decoder reads.
    println!("cargo::rustc-link-arg-examples=-Timage.ld");
    println!("cargo::rustc-link-arg-examples=-Tqemu_virt.ld");
    println!("cargo::rustc-link-arg-examples=-Tdefmt.x");
}
