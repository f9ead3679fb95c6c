//! ACPI definition blocks, corrupted: the NVDA200C scanner returns a typed error or CMDQVs with
//! a non-empty window and distinct `_UID`s; it never panics, reads outside the table or recurses.
//! The first input byte picks the table revision (integer width); the rest is the AML after the
//! header, whose length and checksum are made right so that the mutations reach the scanner.
//! The resource template decoder and the RSDP/XSDT walk read the raw input too. Seed with the
//! AML after the 36-byte header of tests/fixtures/acpi/**/*.aml, prefixed by its revision.
#![no_main]

use arm_smmuv3::discovery::acpi::{Acpi, Region};
use arm_smmuv3::discovery::aml::{DefinitionBlock, Resources};
use arm_smmuv3::discovery::iort::AcpiCmdqv;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&revision, aml)) = data.split_first() else {
        return;
    };
    let mut table = vec![0u8; 36];
    table[..4].copy_from_slice(if revision & 0x80 != 0 {
        b"DSDT"
    } else {
        b"SSDT"
    });
    table[8] = revision & 0x7f;
    table.extend_from_slice(aml);
    let len = table.len() as u32;
    table[4..8].copy_from_slice(&len.to_le_bytes());
    let sum = table.iter().fold(0u8, |s, b| s.wrapping_add(*b));
    table[9] = sum.wrapping_neg();

    let block = DefinitionBlock::new(&table).expect("a well-formed header");
    let mut out = heapless::Vec::<AcpiCmdqv, 16>::new();
    if block.cmdqvs(&mut out).is_ok() {
        for (i, c) in out.iter().enumerate() {
            assert!(c.size > 0);
            assert!(out.iter().skip(i + 1).all(|d| d.uid != c.uid));
        }
    }

    let mut n = 0usize;
    for r in Resources::new(aml, 0) {
        n += 1;
        assert!(n <= aml.len() + 1);
        if r.is_err() {
            break;
        }
    }

    let mem = Region {
        base: 0,
        bytes: data,
    };
    if let Ok(acpi) = Acpi::new(&mem, 0) {
        let _ = acpi.topology();
        let _ = acpi.spcr();
    }
});
