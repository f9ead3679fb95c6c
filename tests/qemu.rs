//! Boots the QEMU `virt` demo hypervisor (examples/hypervisor) and checks what it reports.
//!
//! Builds the bare-metal image with a nested cargo, boots it under qemu-system-aarch64 with a
//! timeout, decodes its defmt stream and reads its UART text. Fails (never skips) when QEMU is
//! missing or older than 9.2.

use qemu_virt_runner as host;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Generous for a 2-core machine under load; a full run takes about 3 s of wall time (about 30 edu
/// DMAs of 100 ms each).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What each scenario must report, in run order.
const EXPECTED: &[(&str, &str)] = &[
    ("irq-fpsimd", "PASS"),
    ("stage2-tables", "PASS"),
    ("smmu-id", "PASS"),
    ("edu-dma-smmu-reset", "PASS"),
    ("1-bypass-ste", "PASS"),
    ("2-stage2-fault-irq", "PASS"),
    ("3-nested", "PASS"),
    ("5-cmdq-error", "PASS"),
    ("6-event-storm", "PASS"),
    ("7-drain-burst", "PASS"),
    ("4-bad-ste-2level", "PASS"),
    ("8-viommu", "PASS"),
];

/// The event records each SMMU scenario must print, in order: every word of a pattern must be a
/// word of the image's `EVENT` line (so a pattern leaves out the fields it does not pin).
fn expected_events(scenario: &str) -> Vec<String> {
    let f = |addr: u64, rest: &str| format!("F_TRANSLATION id=0x10 sid=0x8 addr={addr:#x} {rest}");
    match scenario {
        "2-stage2-fault-irq" => vec![f(0x1_0000_4000, "ipa=0x100004000 S2=1 class=IN write")],
        "3-nested" => vec![
            // Stage 1: the guest did not map the IOVA.
            f(0x4020_0000, "S2=0 class=IN write"),
            // Stage 2, on the output IPA.
            f(0x4010_0000, "ipa=0x100100000 S2=1 class=IN read"),
            // Stage 2, on a stage-1 table's IPA (QEMU 10.0.2 reports S2=0 there, the architecture
            // S2=1: the S2 bit is not pinned).
            f(0x8000_0000, "ipa=0x100200000 class=TT read"),
        ],
        "6-event-storm" => {
            // Two storms of 16 faulting words into an 8-entry queue: the first 8 of each kept.
            let mut v: Vec<String> = (0..8)
                .map(|i| f(0x1_0000_0000 + 4 * i, "S2=1 class=IN write"))
                .collect();
            v.extend((0..8).map(|i| f(0x1_0000_1000 + 4 * i, "S2=1 class=IN write")));
            v.push(f(0x1_0000_8000, "ipa=0x100008000 S2=1 class=IN read"));
            v
        }
        "7-drain-burst" => (0..16)
            .map(|i| f(0x1_0000_4000 + 4 * i, "ipa=0x100004000 S2=1 class=IN read"))
            .collect(),
        // The vIOMMU's device: its stage-1 faults go to the vEVENTQ (below), the stage-2 one to
        // the host.
        "8-viommu" => vec![f(0x4010_0000, "ipa=0x100100000 S2=1 class=IN read")],
        "4-bad-ste-2level" => vec![
            "C_BAD_STREAMID id=0x2 sid=0x8".to_owned(),
            "C_BAD_STE id=0x4 sid=0x8".to_owned(),
        ],
        _ => Vec::new(),
    }
}

/// The driver's counters at the end of each SMMU scenario (`COUNTERS` line):
/// events, overflows, GERROR.CMDQ_ERR, GERROR.EVENTQ_ABT_ERR.
const EXPECTED_COUNTERS: &[(&str, [u64; 4])] = &[
    ("1-bypass-ste", [0, 0, 0, 0]),
    ("2-stage2-fault-irq", [1, 0, 0, 0]),
    ("3-nested", [3, 0, 0, 0]),
    ("5-cmdq-error", [0, 0, 1, 0]),
    ("6-event-storm", [17, 2, 0, 2]),
    ("7-drain-burst", [16, 0, 0, 0]),
    ("4-bad-ste-2level", [2, 0, 0, 0]),
    ("8-viommu", [3, 0, 0, 0]),
];

/// What the VMM's `read()` of the vIOMMU's vEVENTQ must return, decoded (`VEVENT` lines): two
/// stage-1 faults with sequence numbers 0 and 1 and edu's virtual StreamID 0x42.
const EXPECTED_VEVENTS: &[&str] = &[
    "seq=0 flags=0x0 vsid=0x42 F_TRANSLATION id=0x10 addr=0x40200000 S2=0 class=IN write",
    "seq=1 flags=0x0 vsid=0x42 F_TRANSLATION id=0x10 addr=0x40201000 S2=0 class=IN read",
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the image where `cargo qemu` puts it, so the two share their build.
fn build_image() -> PathBuf {
    let started = Instant::now();
    let elf = host::build_image(&manifest_dir()).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("image built in {:.1} s", started.elapsed().as_secs_f64());
    elf
}

#[test]
fn qemu_version_parsing() {
    assert_eq!(
        host::parse_qemu_version(
            "QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\n"
        ),
        Some((10, 0, 2))
    );
    assert_eq!(
        host::parse_qemu_version("QEMU emulator version 9.2.0\n"),
        Some((9, 2, 0))
    );
    assert_eq!(host::parse_qemu_version("something else"), None);
}

#[test]
fn qemu_virt_demo() {
    let version =
        host::check_qemu().unwrap_or_else(|e| panic!("QEMU is required for this test: {e}"));
    eprintln!("QEMU {}.{}.{}", version.0, version.1, version.2);
    let elf = build_image();
    let mut extra = host::extra_args_from_env();
    extra.extend(host::drain_trace_args());
    let run = host::run(&elf, &extra, RUN_TIMEOUT, true, &mut |_| {})
        .unwrap_or_else(|e| panic!("running QEMU: {e}"));
    eprintln!("QEMU ran for {:.2} s", run.wall.as_secs_f64());
    let transcript = transcript(&run);

    assert!(
        !run.timed_out,
        "QEMU did not finish within {RUN_TIMEOUT:?}\n{transcript}"
    );
    assert_eq!(
        run.exit_code,
        Some(0),
        "the image's exit code\n{transcript}"
    );
    assert_eq!(
        run.malformed_frames, 0,
        "malformed defmt frames\n{transcript}"
    );
    assert!(
        run.log.iter().all(|l| l.level != "ERROR"),
        "the image logged errors\n{transcript}"
    );

    // Every scenario reported exactly once, on both streams, with the expected outcome.
    let from_defmt = results(run.log.iter().map(|l| l.message.as_str()));
    let from_uart = results(run.uart.lines());
    let expected: BTreeMap<String, String> = EXPECTED
        .iter()
        .map(|(n, o)| ((*n).to_owned(), (*o).to_owned()))
        .collect();
    let order: Vec<&str> = run
        .log
        .iter()
        .filter_map(|l| l.message.strip_prefix("RESULT "))
        .filter_map(|r| r.split_whitespace().next())
        .collect();
    let want_order: Vec<&str> = EXPECTED.iter().map(|(n, _)| *n).collect();
    assert_eq!(order, want_order, "scenario order\n{transcript}");
    assert_eq!(
        from_defmt, expected,
        "RESULT records in the defmt log\n{transcript}"
    );
    assert_eq!(
        from_uart, expected,
        "RESULT lines on the UART\n{transcript}"
    );

    let summary = format!(
        "SUMMARY: {} passed, 0 failed (of {})",
        EXPECTED.len(),
        EXPECTED.len()
    );
    assert!(
        run.log
            .iter()
            .any(|l| l.level == "INFO" && l.message.starts_with(&summary)),
        "defmt summary `{summary}`\n{transcript}"
    );
    assert!(
        run.uart.contains(&summary),
        "UART summary `{summary}`\n{transcript}"
    );
    let n = EXPECTED.len() as u32;
    assert_eq!(
        host::contract::summary(&run.uart),
        Some((n, 0, n)),
        "UART summary\n{transcript}"
    );

    // What the image read from the device tree QEMU handed it (arm_smmuv3::discovery), on both
    // streams: the SMMU, its four edge-triggered SPIs, the host bridge's iommu-map and edu's
    // StreamID derived through it. QEMU leaves x0 = 0 for an ELF image.
    let discovered = [
        "DISCOVERED device tree at 0x40000000 (start of RAM): 1 SMMU(s), 1 ID map(s)",
        "DISCOVERED SMMU 0: page0 0x9050000 page1 0x9060000 size 0x20000 coherent true enabled true cmdqv false",
        "DISCOVERED SMMU 0 eventq: INTID 106 edge",
        "DISCOVERED SMMU 0 priq: INTID 107 edge",
        "DISCOVERED SMMU 0 cmdq-sync: INTID 108 edge",
        "DISCOVERED SMMU 0 gerror: INTID 109 edge",
        "DISCOVERED iommu-map: segment 0 RID 0x0..=0xffff -> SMMU 0 StreamID 0x0..",
        "DISCOVERED edu 00:01.0 1234:11e8 RID 0x8 -> SMMU 0 StreamID 0x8",
    ];
    let uart_discovered: Vec<&str> = run
        .uart
        .lines()
        .filter(|l| l.starts_with("DISCOVERED"))
        .collect();
    assert_eq!(
        uart_discovered, discovered,
        "DISCOVERED lines on the UART\n{transcript}"
    );
    let defmt_discovered: Vec<&str> = run
        .log
        .iter()
        .filter(|l| l.message.starts_with("DISCOVERED"))
        .map(|l| l.message.as_str())
        .collect();
    assert_eq!(
        defmt_discovered, discovered,
        "DISCOVERED lines in the defmt log\n{transcript}"
    );

    // Platform facts the SMMU scenarios rely on.
    let uart = &run.uart;
    for needle in [
        "arm-smmuv3 QEMU virt demo: EL2, MMU on",
        "PCI 00:01.0 1234:11e8",
        "StreamID 0x8, id 0x10000ed, liveness 0xedcba987",
        "IDR0 0x0d44101b IDR1 0x02730010 IDR3 0x00001414 IDR5 0x00000074",
        "SMMU CR0 0x0 GBPA 0x1000",
        "4 KiB round trip arrived intact",
        // One event-queue interrupt per faulting DMA (13), one GERROR interrupt for the illegal
        // command and one per storm (3).
        "IRQs taken: eventq 13 priq 0 cmdq-sync 0 gerror 3 edu 1 other 0",
        // Scenario 5: the submitter's typed error carries the command (opcode 0x50).
        "submit([TLBI_S_EL2_ALL]) = Err(Cmdq(Illegal([80, 0])))",
        "later: submit([CFGI_ALL, TLBI_NSNH_ALL]) = Ok(()), set_ste = Ok(())",
        "GERROR active=0x1 acked=0x0 cmdq_deferred=true",
        // Scenario 6: QEMU's overflow is GERROR.EVENTQ_ABT_ERR, acknowledged and counted.
        "GERROR active=0x4 acked=0x4",
        // Scenario 8: the vEVENTQ read returns two 40-byte records; the sanitiser refuses a
        // guest STE with STRW set (EIO, naming the STRW bits of dword 1); the nested STE is
        // installed.
        "attach with a guest STE that sets STRW: Err(Rejected(SteBits { dword: 1, bits: 2147483648 }))",
        "read(vEVENTQ, 256) = Ok(80) bytes",
        "ROUTER forwarded=2 host_stage2=1",
        "teardown (detach, abort STE, vEVENTQ, vDEVICE, vIOMMU): Ok(())",
    ] {
        assert!(uart.contains(needle), "UART lacks `{needle}`\n{transcript}");
    }
    assert!(!uart.contains("MISMATCH"), "a check failed\n{transcript}");

    // The decoded records and the counters of each SMMU scenario (defmt stream).
    let per = by_scenario(&run.log);
    for (name, _) in EXPECTED {
        let lines = per.get(*name).map(Vec::as_slice).unwrap_or(&[]);
        let events: Vec<&str> = lines
            .iter()
            .filter_map(|m| m.trim_start().strip_prefix("EVENT "))
            .collect();
        let want = expected_events(name);
        assert_eq!(
            events.len(),
            want.len(),
            "{name}: number of event records {events:#?}\n{transcript}"
        );
        for (got, pattern) in events.iter().zip(&want) {
            let words: Vec<&str> = got.split_whitespace().collect();
            assert!(
                pattern.split_whitespace().all(|w| words.contains(&w)),
                "{name}: record `{got}` does not match `{pattern}`\n{transcript}"
            );
        }
        let overflows = lines
            .iter()
            .filter(|m| m.trim_start().starts_with("OVERFLOW"))
            .count();
        assert_eq!(
            overflows,
            if *name == "6-event-storm" { 2 } else { 0 },
            "{name}: overflows told to the sink\n{transcript}"
        );
    }
    let vevents: Vec<&str> = per
        .get("8-viommu")
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .filter_map(|m| m.trim_start().strip_prefix("VEVENT "))
        .collect();
    assert_eq!(vevents, EXPECTED_VEVENTS, "vEVENTQ records\n{transcript}");
    for (name, [events, overflows, cmdq_err, abt]) in EXPECTED_COUNTERS {
        let want = format!(
            "COUNTERS events={events} overflows={overflows} gerror_cmdq={cmdq_err} gerror_evtq_abt={abt} "
        );
        let lines = per.get(*name).map(Vec::as_slice).unwrap_or(&[]);
        assert!(
            lines.iter().any(|m| m.trim_start().starts_with(&want)),
            "{name}: no `{want}`\n{transcript}"
        );
    }

    // Every drain, as the image and as QEMU's own trace of the SMMU's MMIO saw it.
    let drains = host::drain_measures(&run.log, &run.stderr)
        .unwrap_or_else(|e| panic!("pairing drains with QEMU's trace: {e}\n{transcript}"));
    eprintln!("{}", host::drain_summary(&drains));
    assert_eq!(drains.len(), 15, "event-queue drains\n{transcript}");
    for d in &drains {
        assert!(
            d.qemu_mmio <= 3 && d.qemu_mmio == d.driver_mmio && d.qemu_mmio == d.hook_mmio,
            "drain {d:?}: QEMU traced {} SMMU accesses\n{transcript}",
            d.qemu_mmio
        );
    }
    let burst = drains.iter().max_by_key(|d| d.records).expect("drains");
    assert!(
        burst.records >= 16 && burst.qemu_mmio == 3,
        "the burst drain {burst:?}\n{transcript}"
    );
}

/// The QEMU arguments of a second PCIe root bus behind the same SMMU: a PCIe expander bridge
/// (root bus 0x80) with a root port and a second edu behind it.
const EXPANDER_ARGS: &[&str] = &[
    "-device",
    "pxb-pcie,id=pxb1,bus_nr=0x80",
    "-device",
    "pcie-root-port,id=rp1,bus=pxb1,chassis=1",
    "-device",
    "edu,bus=rp1,dma_mask=0xffffffffffffffff",
];

/// QEMU `virt` describes one host bridge with one `iommu-map` entry in its device tree; an
/// expander's root bus sits behind it, so its devices' requester IDs (bus 0x81 here) go through
/// that same entry. The image finds the second edu and derives its StreamID from the tree.
#[test]
fn qemu_virt_demo_second_root_bus() {
    host::check_qemu().unwrap_or_else(|e| panic!("QEMU is required for this test: {e}"));
    let elf = build_image();
    let mut extra = host::extra_args_from_env();
    extra.extend(EXPANDER_ARGS.iter().map(|s| (*s).to_owned()));
    let run = host::run(&elf, &extra, RUN_TIMEOUT, true, &mut |_| {})
        .unwrap_or_else(|e| panic!("running QEMU: {e}"));
    let transcript = transcript(&run);
    assert!(!run.timed_out, "QEMU did not finish\n{transcript}");
    for needle in [
        "DISCOVERED iommu-map: segment 0 RID 0x0..=0xffff -> SMMU 0 StreamID 0x0..",
        "PCI 80:00.0 1b36:000c",
        "PCI 81:00.0 1234:11e8",
        "DISCOVERED edu 81:00.0 RID 0x8100 -> SMMU 0 StreamID 0x8100",
        "DISCOVERED edu 00:01.0 1234:11e8 RID 0x8 -> SMMU 0 StreamID 0x8",
    ] {
        assert!(
            run.uart.contains(needle),
            "UART lacks `{needle}`\n{transcript}"
        );
    }
    // The scenarios still run on the first edu.
    let n = EXPECTED.len() as u32;
    assert_eq!(
        host::contract::summary(&run.uart),
        Some((n, 0, n)),
        "UART summary\n{transcript}"
    );
    assert_eq!(
        run.exit_code,
        Some(0),
        "the image's exit code\n{transcript}"
    );
}

/// The defmt messages of each scenario: those before its `RESULT` line (and after the previous).
fn by_scenario(log: &[host::LogLine]) -> BTreeMap<String, Vec<String>> {
    let mut map = BTreeMap::new();
    let mut current = Vec::new();
    for l in log {
        if let Some(rest) = l.message.strip_prefix("RESULT ") {
            let name = rest
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned();
            map.insert(name, std::mem::take(&mut current));
        } else {
            current.push(l.message.clone());
        }
    }
    map
}

/// name -> outcome from lines `RESULT <name> <outcome>`, read by the checker the board images'
/// output goes through too (`qemu_virt_runner::contract`).
fn results<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    host::contract::results(lines).unwrap_or_else(|e| panic!("{e}"))
}

fn transcript(run: &host::RunResult) -> String {
    let mut s = String::from("--- UART ---\n");
    s.push_str(&run.uart);
    s.push_str("--- defmt ---\n");
    for l in &run.log {
        s.push_str(&format!("{l}\n"));
    }
    s.push_str("--- QEMU stderr ---\n");
    s.push_str(&run.stderr);
    s
}

#[test]
fn drain_trace_parsing() {
    let trace = "\
smmuv3_read_mmio addr: 0x9c val:0x9 size: 0x4(0)
pl061_read /machine/unattached/device[7] offset 0xfe0 value 0x61
smmuv3_read_mmio addr: 0xa8 val:0x1 size: 0x4(0)
smmuv3_write_mmio addr: 0xac val:0x1 size: 0x4(0)
smmuv3_read_mmio addr: 0xa8 val:0x1 size: 0x4(0)
pl061_read /machine/unattached/device[7] offset 0xfe4 value 0x10
smmuv3_read_mmio addr: 0x44 val:0x101000 size: 0x4(0)
12345@1700000000.000001:pl061_read /machine/unattached/device[7] offset 0xfe0 value 0x61
smmuv3_read_mmio addr: 0xa8 val:0x1 size: 0x4(0)
pl061_read /machine/unattached/device[7] offset 0xfe4 value 0x10
";
    assert_eq!(host::trace_mmio_per_drain(trace), Ok(vec![3, 1]));
    assert!(host::trace_mmio_per_drain("pl061_read x offset 0xfe4 value 0x10\n").is_err());
    assert!(host::trace_mmio_per_drain("pl061_read x offset 0xfe0 value 0x61\n").is_err());
}
