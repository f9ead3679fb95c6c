//! The board images as UEFI applications, booted by edk2 on QEMU `virt` (EL2, GICv3, SMMUv3):
//! the Grace image with QEMU's ACPI tables (IORT, SPCR), the Thor image with `acpi=off` (edk2
//! then hands QEMU's device tree over), and the two failure paths the images must report
//! themselves (no EL2, the wrong kind of firmware description).
//!
//! Each test builds both images for `aarch64-unknown-uefi` (one nested cargo per process), puts
//! one on a FAT drive as `EFI/BOOT/BOOTAA64.EFI` (QEMU's `fat:` drive), boots edk2 from pflash
//! and reads the serial console until the image's SUMMARY line. On QEMU the SMMU is QEMU's
//! emulated SMMUv3 and there is no CMDQV: the Grace image keeps its board rule (every SMMU must
//! have one), so on QEMU it reports `smmu0-cmdqv FAIL` and the test asserts exactly that.
//!
//! Fails (never skips) when QEMU or the firmware is missing: `bash .ci/install-deps` installs
//! both (QEMU 10 and Debian's `qemu-efi-aarch64`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use qemu_virt_runner as host;
use qemu_virt_runner::contract;

/// edk2's code and variable-store templates (Debian `qemu-efi-aarch64`), overridable.
const CODE_ENV: &str = "SMMU_EDK2_CODE";
const VARS_ENV: &str = "SMMU_EDK2_VARS";
const CODE_DEFAULT: &str = "/usr/share/AAVMF/AAVMF_CODE.fd";
const VARS_DEFAULT: &str = "/usr/share/AAVMF/AAVMF_VARS.fd";

/// A boot takes about 10 s of wall time alone (edk2 about 8 s, the bring-up well under one);
/// generous for two boots at once on a loaded 2-core machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
/// How long the console is read after the SUMMARY line.
const AFTER_SUMMARY: Duration = Duration::from_secs(2);

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds thor.efi and grace.efi once per process; returns the directory holding them.
fn images() -> &'static Path {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let target_dir = std::env::var_os(host::TARGET_DIR_ENV)
            .map_or_else(|| workspace().join("target"), PathBuf::from);
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args([
                "build",
                "-p",
                "board-images",
                "--release",
                "--target",
                "aarch64-unknown-uefi",
                "--bins",
                "--target-dir",
            ])
            .arg(&target_dir)
            .env_remove("RUSTFLAGS")
            .env_remove("CARGO_ENCODED_RUSTFLAGS")
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !status.success() {
            return Err(format!(
                "building the board images for aarch64-unknown-uefi failed: {status} \
                 (`rustup target add aarch64-unknown-uefi`; .ci/install-deps does)"
            ));
        }
        Ok(target_dir.join("aarch64-unknown-uefi/release"))
    });
    match built {
        Ok(dir) => dir,
        Err(e) => panic!("{e}"),
    }
}

fn firmware() -> (PathBuf, PathBuf) {
    let code =
        std::env::var_os(CODE_ENV).map_or_else(|| PathBuf::from(CODE_DEFAULT), PathBuf::from);
    let vars =
        std::env::var_os(VARS_ENV).map_or_else(|| PathBuf::from(VARS_DEFAULT), PathBuf::from);
    for (f, env) in [(&code, CODE_ENV), (&vars, VARS_ENV)] {
        assert!(
            f.is_file(),
            "edk2 firmware for aarch64 missing: {} not found. `bash .ci/install-deps` installs it \
             (Debian package qemu-efi-aarch64), or point {env} at it",
            f.display()
        );
    }
    (code, vars)
}

/// What one boot printed on the serial console.
struct Boot {
    lines: Vec<String>,
    text: String,
    /// From QEMU's start to the SUMMARY line.
    wall: Duration,
}

impl Boot {
    fn has(&self, line: &str) -> bool {
        self.lines.iter().any(|l| l == line)
    }

    fn starting(&self, prefix: &str) -> Option<&str> {
        self.lines.iter().find_map(|l| l.strip_prefix(prefix))
    }

    /// Asserts the console has each of `lines` whole and a line starting with each of
    /// `prefixes`.
    fn expect_lines(&self, lines: &[&str], prefixes: &[&str]) {
        for l in lines {
            assert!(self.has(l), "no line {l:?} in:\n{}", self.text);
        }
        for p in prefixes {
            assert!(
                self.starting(p).is_some(),
                "no line starting {p:?} in:\n{}",
                self.text
            );
        }
    }
}

/// Boots `image` (thor or grace) from a FAT drive under edk2 with `machine` options appended to
/// the `virt` machine, and reads the console until shortly after the SUMMARY line (or the
/// timeout).
fn boot(image: &str, machine: &str) -> Boot {
    let version = host::check_qemu().unwrap_or_else(|e| panic!("{e}"));
    let (code, vars_template) = firmware();
    let efi = images().join(format!("{image}.efi"));

    let dir = std::env::temp_dir().join(format!(
        "arm-smmuv3-uefi-{}-{image}-{}",
        std::process::id(),
        machine.replace([',', '='], "-")
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let boot_dir = dir.join("esp/EFI/BOOT");
    std::fs::create_dir_all(&boot_dir).expect("temporary ESP");
    std::fs::copy(&efi, boot_dir.join("BOOTAA64.EFI"))
        .unwrap_or_else(|e| panic!("cannot copy {}: {e}", efi.display()));
    let vars = dir.join("vars.fd");
    std::fs::copy(&vars_template, &vars).expect("copy of the variable store");

    let mut qemu = Command::new(host::qemu_binary())
        .args([
            "-machine",
            &format!("virt,virtualization=on,iommu=smmuv3,gic-version=3{machine}"),
            "-cpu",
            "max",
            "-m",
            "1G",
            "-display",
            "none",
            "-monitor",
            "none",
            "-serial",
            "stdio",
            "-nic",
            "none",
            "-drive",
            &format!("if=pflash,format=raw,readonly=on,file={}", code.display()),
            "-drive",
            &format!("if=pflash,format=raw,file={}", vars.display()),
            "-drive",
            &format!(
                "if=virtio,format=raw,readonly=on,file=fat:{}",
                dir.join("esp").display()
            ),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", host::qemu_binary()));
    let start = Instant::now();
    let (tx, rx) = mpsc::channel::<String>();
    let out = qemu.stdout.take().expect("piped stdout");
    thread::spawn(move || {
        for l in BufReader::new(out).split(b'\n').map_while(Result::ok) {
            let l = String::from_utf8_lossy(&l)
                .trim_end_matches('\r')
                .to_owned();
            if tx.send(l).is_err() {
                break;
            }
        }
    });

    let mut lines = Vec::new();
    let mut wall = None;
    loop {
        // After SUMMARY, what the image (or firmware) prints within two seconds.
        let left = match wall {
            None => BOOT_TIMEOUT.saturating_sub(start.elapsed()),
            Some(_) => AFTER_SUMMARY,
        };
        let Ok(l) = rx.recv_timeout(left) else { break };
        if wall.is_none() && l.starts_with("SUMMARY: ") {
            wall = Some(start.elapsed());
        }
        lines.push(l);
    }
    let _ = qemu.kill();
    let status = qemu.wait();
    let mut stderr = String::new();
    if let Some(mut e) = qemu.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut e, &mut stderr);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let text = lines.join("\n");
    let Some(wall) = wall else {
        panic!(
            "{image} under edk2 (QEMU {}.{}.{}, machine options {machine:?}): no SUMMARY line in \
             {BOOT_TIMEOUT:?}; QEMU {status:?}, stderr:\n{stderr}\nconsole:\n{text}",
            version.0, version.1, version.2
        );
    };
    eprintln!("{image} ({machine}): SUMMARY {wall:?} after QEMU started\n{text}");
    Boot { lines, text, wall }
}

fn results(b: &Boot) -> BTreeMap<String, String> {
    contract::results(b.lines.iter().map(String::as_str)).unwrap_or_else(|e| panic!("{e}"))
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(n, o)| ((*n).to_owned(), (*o).to_owned()))
        .collect()
}

/// The steps every image runs after ExitBootServices, with the firmware facts it printed.
fn assert_exited_boot_services(b: &Boot) {
    b.expect_lines(
        &[
            "UEFI: running at EL2",
            "UEFI: ExitBootServices",
            // QEMU's SMMUv3, found where `virt` puts it, with its wired SPIs.
            "DISCOVERED SMMU 0: page0 0x9050000 size 0x20000 coherent true enabled true \
             eventq Some(106) gerror Some(109) cmdqv 0x0 enabled false",
            "    root complex StreamID 0x0: stage-2 STE (VMID 1) Ok(())",
            "    submit([TLBI_S_EL2_ALL]) = Err(Cmdq(Illegal([80, 0]))); GERROR active 0x0; \
             later Ok(()); illegal 0 -> 1",
        ],
        &[],
    );
    let exited = b
        .starting("UEFI: boot services exited; memory map: ")
        .unwrap_or_else(|| panic!("no exit line:\n{}", b.text));
    assert!(
        exited.ends_with("DMA region is EfiLoaderData: true"),
        "{exited}"
    );
    assert!(
        b.starting("UEFI: DMA region 0x")
            .is_some_and(|l| l.ends_with("(AllocatePages, EfiLoaderData, write-back)")),
        "{}",
        b.text
    );
    // Printed on the PL011 by the image itself: boot services (and ConOut) are gone by then.
    assert!(
        b.lines.iter().any(|l| l.starts_with("UEFI: bring-up done")),
        "{}",
        b.text
    );
}

#[test]
fn grace_image_under_edk2_reads_qemus_iort_at_el2() {
    let b = boot("grace", "");
    b.expect_lines(
        &[
            "arm-smmuv3 board image: Grace (Tegra241), UEFI application",
            "UEFI: console after ExitBootServices: PL011 at 0x9000000 (SPCR)",
        ],
        &["UEFI: ACPI 2.0 RSDP at 0x", "UEFI: IORT at 0x"],
    );
    assert_exited_boot_services(&b);
    // QEMU has no CMDQV; Grace's rule makes that a named FAIL, and only that.
    assert!(b.has("    no CMDQV described for SMMU 0"), "{}", b.text);
    assert_eq!(
        results(&b),
        expect(&[
            ("smmu0-probe-reset", "PASS"),
            ("smmu0-cmdqv", "FAIL"),
            ("smmu0-stage2-ste", "PASS"),
            ("smmu0-fault-cmdq", "PASS"),
        ])
    );
    assert_eq!(contract::summary(&b.text), Some((3, 1, 4)));
    eprintln!("grace: {:?} to SUMMARY", b.wall);
}

#[test]
fn thor_image_under_edk2_reads_qemus_device_tree_at_el2() {
    let b = boot("thor", ",acpi=off");
    b.expect_lines(
        &[
            "arm-smmuv3 board image: Jetson AGX Thor (Tegra264), UEFI application",
            "UEFI: console after ExitBootServices: PL011 at 0x9000000 (the device tree's stdout-path)",
        ],
        &["UEFI: device tree at 0x"],
    );
    assert_exited_boot_services(&b);
    assert_eq!(
        results(&b),
        expect(&[
            ("smmu0-probe-reset", "PASS"),
            ("smmu0-stage2-ste", "PASS"),
            ("smmu0-fault-cmdq", "PASS"),
        ])
    );
    assert_eq!(contract::summary(&b.text), Some((3, 0, 3)));
    eprintln!("thor: {:?} to SUMMARY", b.wall);
}

/// Without `virtualization=on` edk2 runs at EL1 and so does the image: it must say so and fail,
/// before it touches anything (it returns to firmware, boot services still up).
#[test]
fn image_started_at_el1_fails_naming_the_level() {
    let b = boot("grace", ",virtualization=off");
    assert!(b.has("UEFI: running at EL1"), "{}", b.text);
    assert_eq!(results(&b), expect(&[("uefi-el2", "FAIL")]));
    assert_eq!(contract::summary(&b.text), Some((0, 1, 1)));
    assert!(!b.text.contains("ExitBootServices"), "{}", b.text);
}

/// The Thor image needs a device tree; under QEMU's default ACPI boot edk2 hands only the RSDP.
#[test]
fn thor_image_under_acpi_firmware_says_there_is_no_device_tree() {
    let b = boot("thor", "");
    assert!(
        b.has("UEFI: no device tree in the configuration table (an ACPI 2.0 RSDP is: firmware runs in ACPI mode)"),
        "{}",
        b.text
    );
    assert_eq!(results(&b), expect(&[("discovery", "FAIL")]));
    assert_eq!(contract::summary(&b.text), Some((0, 1, 1)));
    assert!(!b.text.contains("ExitBootServices"), "{}", b.text);
}
