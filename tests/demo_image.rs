//! The demo hypervisor's image (examples/hypervisor, aarch64 ELF): its vIOMMU router is
//! zero-initialised, so it lives in `.bss` (NOBITS: no bytes in the image, zeroed at boot)
//! rather than in `.data`.

use object::{Object, ObjectSection, ObjectSymbol, SectionKind};
use std::path::PathBuf;

/// The demo's router static (`examples/hypervisor/src/drivers/smmu.rs`).
const ROUTER_SYMBOL: &str = "qemu_virt::drivers::smmu::ROUTER";
/// Its name as rustc's (legacy) mangling spells it, up to the hash: `_ZN` and each path
/// component with its length.
const ROUTER_MANGLED: &str = "_ZN9qemu_virt7drivers4smmu6ROUTER17h";

#[test]
fn demo_router_lives_in_bss() {
    let elf_path = qemu_virt_runner::build_image(&PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .unwrap_or_else(|e| panic!("building the demo image: {e}"));
    let bytes = std::fs::read(&elf_path).unwrap_or_else(|e| panic!("{}: {e}", elf_path.display()));
    let elf = object::File::parse(&*bytes).expect("the demo image is an ELF file");
    let router: Vec<_> = elf
        .symbols()
        .filter(|s| s.name().is_ok_and(|n| n.starts_with(ROUTER_MANGLED)))
        .collect();
    assert_eq!(
        router.len(),
        1,
        "exactly one {ROUTER_SYMBOL} ({ROUTER_MANGLED}...) in {}",
        elf_path.display()
    );
    let sym = &router[0];
    let section = sym
        .section_index()
        .and_then(|i| elf.section_by_index(i).ok())
        .expect("the router static has a section");
    eprintln!(
        "{ROUTER_SYMBOL}: {} bytes in {} ({:?})",
        sym.size(),
        section.name().unwrap_or("?"),
        section.kind()
    );
    assert_eq!(section.name().ok(), Some(".bss"));
    assert_eq!(section.kind(), SectionKind::UninitializedData);
    assert!(sym.size() > 0);
}
