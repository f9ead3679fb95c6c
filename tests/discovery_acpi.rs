//! ACPI discovery end to end: RSDP → XSDT → FADT → DSDT and SSDTs compiled by `iasl` from
//! `tests/fixtures/acpi/*.asl`, their `NVDA200C` CMDQVs paired with the Grace-like IORT's
//! SMMUs, SPCR's console; and the typed errors for what the scanner refuses to read.

mod iort_builder;

use arm_smmuv3::PhysAddr;
use arm_smmuv3::discovery::acpi::{Acpi, HEADER_LEN, Region, Spcr, interface};
use arm_smmuv3::discovery::aml::DefinitionBlock;
use arm_smmuv3::discovery::iort::{AcpiCmdqv, Iort};
use arm_smmuv3::discovery::{CmdqvDesc, CmdqvModel, DiscoveryError, Irq, Trigger};

use iort_builder::{GRACE_CMDQVS, fix_checksum};

const DSDT: &[u8] = include_bytes!("fixtures/acpi/grace-dsdt.aml");
const SSDT: &[u8] = include_bytes!("fixtures/acpi/grace-ssdt.aml");
const IORT: &[u8] = include_bytes!("fixtures/iort/grace.iort");

const BASE: u64 = 0x80_0000_0000;
const XSDT_AT: usize = 0x100;
const FADT_AT: usize = 0x200;
const SPCR_AT: usize = 0x400;
const DSDT_AT: usize = 0x1000;
const SSDT_AT: usize = 0x2000;
const IORT_AT: usize = 0x3000;

fn irq(intid: u32, trigger: Trigger) -> Option<Irq> {
    Some(Irq { intid, trigger })
}

fn cmdqvs(table: &[u8]) -> Result<Vec<AcpiCmdqv>, DiscoveryError> {
    let mut out = heapless::Vec::<AcpiCmdqv, 16>::new();
    DefinitionBlock::new(table)?.cmdqvs(&mut out)?;
    Ok(out.to_vec())
}

fn header(sig: &[u8; 4], len: usize, revision: u8) -> Vec<u8> {
    let mut t = vec![0u8; len];
    t[..4].copy_from_slice(sig);
    t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
    t[8] = revision;
    t
}

/// Firmware memory: RSDP at `BASE`, an XSDT listing FADT, SSDT, IORT and SPCR, the FADT's
/// X_DSDT pointing at the DSDT.
fn firmware() -> Vec<u8> {
    let mut ram = vec![0u8; IORT_AT + IORT.len()];
    let mut rsdp = [0u8; 36];
    rsdp[..8].copy_from_slice(b"RSD PTR ");
    rsdp[15] = 2;
    rsdp[16..20].copy_from_slice(&(0x4000_0000u32).to_le_bytes()); // RSDT: not used
    rsdp[20..24].copy_from_slice(&36u32.to_le_bytes());
    rsdp[24..32].copy_from_slice(&(BASE + XSDT_AT as u64).to_le_bytes());
    let sum = rsdp[..20].iter().fold(0u8, |a, x| a.wrapping_add(*x));
    rsdp[8] = sum.wrapping_neg();
    let sum = rsdp.iter().fold(0u8, |a, x| a.wrapping_add(*x));
    rsdp[32] = sum.wrapping_neg();
    ram[..36].copy_from_slice(&rsdp);

    let mut xsdt = header(b"XSDT", HEADER_LEN + 4 * 8, 1);
    for (i, at) in [FADT_AT, SSDT_AT, IORT_AT, SPCR_AT].iter().enumerate() {
        let o = HEADER_LEN + 8 * i;
        xsdt[o..o + 8].copy_from_slice(&(BASE + *at as u64).to_le_bytes());
    }
    fix_checksum(&mut xsdt);
    ram[XSDT_AT..XSDT_AT + xsdt.len()].copy_from_slice(&xsdt);

    let mut fadt = header(b"FACP", 276, 6);
    fadt[140..148].copy_from_slice(&(BASE + DSDT_AT as u64).to_le_bytes());
    fix_checksum(&mut fadt);
    ram[FADT_AT..FADT_AT + fadt.len()].copy_from_slice(&fadt);

    let mut spcr = header(b"SPCR", 80, 2);
    spcr[36] = interface::SBSA;
    spcr[41] = 32;
    spcr[43] = 3;
    spcr[44..52].copy_from_slice(&0x0c28_0000u64.to_le_bytes());
    spcr[52] = 1 << 3;
    spcr[54..58].copy_from_slice(&0x72u32.to_le_bytes());
    spcr[58] = 7;
    fix_checksum(&mut spcr);
    ram[SPCR_AT..SPCR_AT + spcr.len()].copy_from_slice(&spcr);

    ram[DSDT_AT..DSDT_AT + DSDT.len()].copy_from_slice(DSDT);
    ram[SSDT_AT..SSDT_AT + SSDT.len()].copy_from_slice(SSDT);
    ram[IORT_AT..].copy_from_slice(IORT);
    ram
}

fn region(ram: &[u8]) -> Region<'_> {
    Region {
        base: BASE,
        bytes: ram,
    }
}

#[test]
fn grace_dsdt_and_ssdt_describe_their_cmdqvs() {
    assert_eq!(
        cmdqvs(DSDT),
        Ok(vec![
            GRACE_CMDQVS[0],
            GRACE_CMDQVS[1],
            AcpiCmdqv {
                uid: 0x102,
                base: PhysAddr(0x1420_0000),
                size: 0x31_0000,
                irq: irq(0x1e4, Trigger::LevelLow),
            },
        ])
    );
    assert_eq!(
        cmdqvs(SSDT),
        Ok(vec![
            GRACE_CMDQVS[2],
            GRACE_CMDQVS[3],
            AcpiCmdqv {
                uid: 0x1_0000,
                base: PhysAddr(0x1000_1120_0000),
                size: 0x31_0000,
                irq: irq(0x3e2, Trigger::EdgeFalling),
            },
        ])
    );
    // The hand-written table the IORT tests use says the same as the AML.
    assert_eq!(GRACE_CMDQVS[0].irq, irq(0x140, Trigger::EdgeRising));
}

#[test]
fn firmware_pairs_every_smmu_with_its_cmdqv() {
    let ram = firmware();
    let mem = region(&ram);
    let acpi = Acpi::new(&mem, BASE).unwrap();
    assert_eq!(acpi.entries().count(), 4);
    assert_eq!(acpi.dsdt().unwrap().bytes(), DSDT);
    assert_eq!(acpi.ssdts().count(), 1);
    let found = acpi.cmdqvs().unwrap();
    assert_eq!(found.len(), 6);
    let topo = acpi.topology().unwrap();
    let by_hand = Iort::new(IORT).unwrap().topology(&GRACE_CMDQVS).unwrap();
    assert_eq!(topo.smmus(), by_hand.smmus());
    assert_eq!(topo.id_maps(), by_hand.id_maps());
    assert_eq!(topo.smmus().len(), 4);
    for (i, smmu) in topo.smmus().iter().enumerate() {
        assert_eq!(
            smmu.cmdqv,
            Some(CmdqvDesc {
                base: GRACE_CMDQVS[i].base,
                size: 0x83_0000,
                irq: irq(0x140 + i as u32, Trigger::EdgeRising),
                model: CmdqvModel::Tegra241,
                enabled: true,
            }),
            "SMMU {i}"
        );
    }
    assert_eq!(
        acpi.spcr(),
        Ok(Spcr {
            interface: interface::SBSA,
            space: 0,
            bit_width: 32,
            access_size: 3,
            base: 0x0c28_0000,
            gsiv: Some(0x72),
            baud: 7,
        })
    );
    assert_eq!(acpi.spcr().unwrap().pl011_base(), Some(0x0c28_0000));
    assert_eq!(
        acpi.find(*b"MADT"),
        Err(DiscoveryError::TableNotFound(*b"MADT"))
    );
}

#[test]
fn the_32_bit_dsdt_address_serves_when_x_dsdt_is_zero() {
    let mut ram = firmware();
    let fadt = FADT_AT;
    ram[fadt + 140..fadt + 148].fill(0);
    // A 32-bit DSDT pointer needs the DSDT below 4 GiB: put a copy there, in a second region.
    let low: u32 = 0x1000_0000;
    ram[fadt + 40..fadt + 44].copy_from_slice(&low.to_le_bytes());
    fix_checksum(&mut ram[fadt..fadt + 276]);
    struct Two<'a>(Region<'a>, Region<'a>);
    impl arm_smmuv3::discovery::acpi::PhysMem for Two<'_> {
        fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]> {
            self.0.bytes(pa, len).or_else(|| self.1.bytes(pa, len))
        }
    }
    let mem = Two(
        region(&ram),
        Region {
            base: u64::from(low),
            bytes: DSDT,
        },
    );
    let acpi = Acpi::new(&mem, BASE).unwrap();
    assert_eq!(acpi.dsdt().unwrap().bytes(), DSDT);
    assert_eq!(acpi.topology().unwrap().cmdqvs().count(), 4);
}

#[test]
fn rsdp_xsdt_and_table_errors_are_typed() {
    let fw = firmware();
    let try_with = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut ram = fw.clone();
        edit(&mut ram);
        let mem = region(&ram);
        Acpi::new(&mem, BASE).and_then(|a| a.topology()).err()
    };
    let malformed = |e: Option<DiscoveryError>| matches!(e, Some(DiscoveryError::Malformed { .. }));
    assert!(malformed(try_with(&|r| r[0] ^= 1)), "signature");
    assert!(malformed(try_with(&|r| r[8] ^= 1)), "v1 checksum");
    assert!(malformed(try_with(&|r| r[32] ^= 1)), "extended checksum");
    assert!(
        malformed(try_with(&|r| r[XSDT_AT + 40] ^= 1)),
        "XSDT checksum"
    );
    assert!(
        malformed(try_with(&|r| r[IORT_AT + 60] ^= 1)),
        "IORT checksum"
    );
    assert!(
        malformed(try_with(&|r| r[DSDT_AT + 100] ^= 1)),
        "DSDT checksum"
    );
    assert!(
        malformed(try_with(&|r| r[SSDT_AT + 100] ^= 1)),
        "SSDT checksum"
    );
    // ACPI 1.0: no XSDT.
    assert!(matches!(
        try_with(&|r| {
            r[15] = 0;
            r[8] = r[8].wrapping_add(2);
        }),
        Some(DiscoveryError::Unsupported(_))
    ));
    // An XSDT entry pointing outside memory the reader serves.
    assert_eq!(
        try_with(&|r| {
            let o = XSDT_AT + HEADER_LEN;
            r[o..o + 8].copy_from_slice(&0x10u64.to_le_bytes());
            fix_checksum(&mut r[XSDT_AT..XSDT_AT + HEADER_LEN + 32]);
        }),
        Some(DiscoveryError::Unreadable(0x10))
    );
    // An XSDT claiming more than memory holds.
    assert!(matches!(
        try_with(&|r| r[XSDT_AT + 4..XSDT_AT + 8].copy_from_slice(&0xffff_fff0u32.to_le_bytes())),
        Some(DiscoveryError::Unreadable(_))
    ));
    // Every truncation of memory is an error, never a panic.
    for n in 0..fw.len() {
        let mem = region(&fw[..n]);
        assert!(
            Acpi::new(&mem, BASE).and_then(|a| a.topology()).is_err(),
            "truncated at {n}"
        );
    }
}

fn edge_case(name: &str) -> Result<Vec<AcpiCmdqv>, DiscoveryError> {
    let path = format!(
        "{}/tests/fixtures/acpi/edge/{name}.aml",
        env!("CARGO_MANIFEST_DIR")
    );
    let blob = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    cmdqvs(&blob)
}

fn unsupported(r: Result<Vec<AcpiCmdqv>, DiscoveryError>) -> &'static str {
    match r {
        Err(DiscoveryError::Unsupported(what)) => what,
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[test]
fn what_the_scanner_cannot_read_is_an_error_not_a_guess() {
    assert!(unsupported(edge_case("crs-outer")).contains("does not hold as a buffer"));
    assert!(unsupported(edge_case("ini-method")).contains("may change _CRS"));
    assert!(unsupported(edge_case("in-if")).contains("does not read"));
    assert!(unsupported(edge_case("fixed-only")).contains("address space"));
    assert!(unsupported(edge_case("uid-qword")).contains("wider than 32"));
    assert!(unsupported(edge_case("ones-rev2")).contains("wider than 32"));
    assert!(unsupported(edge_case("irq-source")).contains("other than the GIC"));
    assert!(matches!(
        edge_case("dup-uid"),
        Err(DiscoveryError::Malformed {
            what: "two NVDA200C devices with one _UID",
            ..
        })
    ));
}

#[test]
fn string_uid_named_crs_buffer_and_32_bit_ones() {
    let window = |uid, base: u64, irq| AcpiCmdqv {
        uid,
        base: PhysAddr(base),
        size: 0x31_0000,
        irq,
    };
    assert_eq!(
        edge_case("uid-string"),
        Ok(vec![window(7, 0x1120_0000, None)])
    );
    // `Method (_CRS) { Return (RBUF) }` with RBUF a buffer of the device itself.
    assert_eq!(
        edge_case("crs-method"),
        Ok(vec![window(0, 0x1120_0000, None)])
    );
    assert_eq!(
        edge_case("ones-rev1"),
        Ok(vec![window(u32::MAX, 0x1120_0000, None)])
    );
}

#[test]
fn corrupted_definition_blocks_never_panic() {
    let mut found = 0usize;
    for table in [DSDT, SSDT] {
        for at in HEADER_LEN..table.len() {
            for x in [0x01u8, 0x10, 0x40, 0x80, 0xff] {
                let mut t = table.to_vec();
                t[at] ^= x;
                fix_checksum(&mut t);
                // At most one more than the three present: a flip can turn the switched-off
                // device's `_STA` Zero into One.
                if let Ok(v) = cmdqvs(&t) {
                    found += v.len();
                    assert!(v.len() <= 4, "byte {at:#x} ^ {x:#x}: {v:?}");
                }
            }
        }
        for cut in HEADER_LEN..table.len() {
            let mut t = table[..cut].to_vec();
            t[4..8].copy_from_slice(&(cut as u32).to_le_bytes());
            fix_checksum(&mut t);
            if let Ok(v) = cmdqvs(&t) {
                assert!(v.len() <= 3);
            }
        }
    }
    // Most single-byte corruptions still leave readable devices.
    assert!(found > 0);
}
