//! Boots the QEMU `virt` demo (examples/qemu_virt) and checks what it reports.
//!
//! Builds the bare-metal image with a nested cargo, boots it under qemu-system-aarch64 with a
//! timeout, decodes its defmt stream and reads its UART text. Fails (never skips) when QEMU is
//! missing or older than 9.2.

#[allow(dead_code)]
#[path = "../examples/qemu_virt/host.rs"]
mod host;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// Generous for a 2-core machine under load; a full run takes about half a second of wall time.
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// What each scenario must report. PENDING scenarios wait for the SMMU driver; when one is wired,
/// its expectation here becomes PASS.
const EXPECTED: &[(&str, &str)] = &[
    ("irq-fpsimd", "PASS"),
    ("stage2-tables", "PASS"),
    ("smmu-id", "PASS"),
    ("edu-dma-smmu-reset", "PASS"),
    ("1-bypass-ste", "PENDING"),
    ("2-stage2-fault-irq", "PENDING"),
    ("3-nested", "PENDING"),
    ("4-bad-ste-2level", "PENDING"),
    ("5-cmdq-error", "PENDING"),
    ("6-event-storm", "PENDING"),
];

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Builds the image where `cargo qemu` puts it (target/aarch64-unknown-none/release/examples), so the
/// two share their build. The pinned cargo (rust-toolchain.toml) releases the target-directory lock
/// before it runs test binaries, so this nested build does not wait for the `cargo test` above it;
/// set SMMU_QEMU_TARGET_DIR to build elsewhere (a runner that keeps the lock would otherwise hang).
fn build_image() -> PathBuf {
    let target_dir = std::env::var_os("SMMU_QEMU_TARGET_DIR")
        .map_or_else(|| manifest_dir().join("target"), PathBuf::from);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let started = Instant::now();
    let status = Command::new(cargo)
        .current_dir(manifest_dir())
        .args([
            "build",
            "--release",
            "--target",
            "aarch64-unknown-none",
            "--features",
            "defmt",
            "--example",
            "qemu_virt",
            "--target-dir",
        ])
        .arg(&target_dir)
        .env("DEFMT_LOG", "info")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .status()
        .expect("cannot run cargo to build the QEMU image");
    assert!(
        status.success(),
        "building examples/qemu_virt for aarch64-unknown-none failed: {status}"
    );
    eprintln!("image built in {:.1} s", started.elapsed().as_secs_f64());
    target_dir.join("aarch64-unknown-none/release/examples/qemu_virt")
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
    let run = host::run(
        &elf,
        &host::extra_args_from_env(),
        RUN_TIMEOUT,
        true,
        &mut |_| {},
    )
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
    assert_eq!(
        from_defmt, expected,
        "RESULT records in the defmt log\n{transcript}"
    );
    assert_eq!(
        from_uart, expected,
        "RESULT lines on the UART\n{transcript}"
    );

    let passed = EXPECTED.iter().filter(|(_, o)| *o == "PASS").count();
    let pending = EXPECTED.iter().filter(|(_, o)| *o == "PENDING").count();
    let summary = format!(
        "SUMMARY: {passed} passed, 0 failed, {pending} pending (of {})",
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

    // Platform facts the SMMU scenarios rely on.
    let uart = &run.uart;
    for needle in [
        "arm-smmuv3 QEMU virt demo: EL2, MMU on",
        "PCI 00:01.0 1234:11e8",
        "StreamID 0x8, id 0x10000ed, liveness 0xedcba987",
        "IDR0 0x0d44101b IDR1 0x02730010 IDR3 0x00001414 IDR5 0x00000074",
        "SMMU CR0 0x0 GBPA 0x1000",
        "4 KiB round trip arrived intact",
        "IRQs taken: eventq 0 priq 0 cmdq-sync 0 gerror 0 edu 1 other 0",
    ] {
        assert!(uart.contains(needle), "UART lacks `{needle}`\n{transcript}");
    }
    assert!(!uart.contains("MISMATCH"), "a check failed\n{transcript}");
}

/// name -> outcome from lines `RESULT <name> <outcome>`; a duplicate name is an error.
fn results<'a>(lines: impl Iterator<Item = &'a str>) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for line in lines {
        let mut words = line.split_whitespace();
        if words.next() != Some("RESULT") {
            continue;
        }
        let (Some(name), Some(outcome)) = (words.next(), words.next()) else {
            panic!("malformed RESULT line: {line}");
        };
        assert!(
            map.insert(name.to_owned(), outcome.to_owned()).is_none(),
            "scenario {name} reported twice"
        );
    }
    map
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
