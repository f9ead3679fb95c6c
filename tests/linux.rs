//! Boots Debian's unmodified arm64 kernel as a guest of the demo hypervisor (examples/hypervisor,
//! Linux mode) and checks what the guest and the hypervisor print.
//!
//! Needs qemu-system-aarch64 and the guest (.ci/linux-guest fetches Debian's kernel and busybox
//! through apt on first use and caches them): when either is missing the test fails saying so; it
//! never passes without the guest having run.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use qemu_virt_runner::linux::{self, GuestFiles, SmmuMode};
use qemu_virt_runner::{self as host, Output, RunResult};

// Measured figures are printed with --nocapture.

/// A boot to power-off takes 5-10 s of wall time on 2 cores; a hung guest is killed well before
/// the 2-minute budget of the whole test.
const TIMEOUT: Duration = Duration::from_secs(90);

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// QEMU, the guest's files and the image (found once for all the tests), or a panic naming
/// what is missing.
fn prerequisites() -> (PathBuf, GuestFiles) {
    static ONCE: OnceLock<Result<(PathBuf, GuestFiles), String>> = OnceLock::new();
    let found = ONCE.get_or_init(|| {
        host::check_qemu().map_err(|e| format!("cannot boot the Linux guest: {e}"))?;
        let files = linux::provision(&workspace())
            .map_err(|e| format!("cannot boot the Linux guest: missing kernel/initramfs: {e}"))?;
        let elf = host::build_image(&workspace())?;
        Ok((elf, files))
    });
    found.clone().unwrap_or_else(|e| panic!("{e}"))
}

/// The guest's console lines and the hypervisor's messages of one run.
struct Boot {
    run: RunResult,
    guest: Vec<String>,
    hyp: Vec<String>,
}

impl Boot {
    fn start(smmu: SmmuMode) -> Self {
        let (elf, files) = prerequisites();
        let started = Instant::now();
        let run = linux::run(&elf, &files, smmu, &[], TIMEOUT, &mut |_: &Output| {})
            .unwrap_or_else(|e| panic!("cannot run QEMU: {e}"));
        let guest: Vec<String> = run.uart.lines().map(str::to_owned).collect();
        let hyp: Vec<String> = run.log.iter().map(|l| l.message.clone()).collect();
        let boot = Self { run, guest, hyp };
        eprintln!(
            "Linux guest ({smmu:?}): {} guest lines, {} hypervisor lines, {:.1} s wall",
            boot.guest.len(),
            boot.hyp.len(),
            started.elapsed().as_secs_f64()
        );
        assert!(
            !boot.run.timed_out,
            "the guest hung: QEMU killed after {} s\n{}",
            TIMEOUT.as_secs(),
            boot.tail()
        );
        assert_eq!(
            boot.run.exit_code,
            Some(0),
            "the hypervisor did not end with the guest's power-off\n{}",
            boot.tail()
        );
        for bad in [
            "Kernel panic",
            "Internal error",
            "Oops",
            "Unable to handle",
            "BUG:",
        ] {
            assert!(
                !boot.guest.iter().any(|l| l.contains(bad)),
                "the guest printed {bad:?}\n{}",
                boot.tail()
            );
        }
        boot
    }

    /// The last lines of both streams, for failure messages.
    fn tail(&self) -> String {
        let last = |v: &[String], n: usize| v[v.len().saturating_sub(n)..].join("\n    ");
        format!(
            "last guest lines:\n    {}\nlast hypervisor lines:\n    {}\nQEMU stderr:\n{}",
            last(&self.guest, 30),
            last(&self.hyp, 15),
            self.run.stderr
        )
    }

    fn guest_line(&self, needle: &str) -> &str {
        self.guest
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no guest line contains {needle:?}\n{}", self.tail()))
    }

    fn hyp_line(&self, needle: &str) -> &str {
        self.hyp
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no hypervisor line contains {needle:?}\n{}", self.tail()))
    }

    /// The number after `key ` in the hypervisor line containing `needle`.
    fn hyp_count(&self, needle: &str, key: &str) -> u32 {
        let line = self.hyp_line(needle);
        let rest = line
            .split(key)
            .nth(1)
            .unwrap_or_else(|| panic!("no {key:?} in {line:?}"));
        rest.split_whitespace()
            .next()
            .and_then(|w| w.trim_end_matches([',', ';']).parse().ok())
            .unwrap_or_else(|| panic!("no number after {key:?} in {line:?}"))
    }
}

#[test]
fn linux_guest_boots_with_edu_dma_and_the_smmu_hidden() {
    let boot = Boot::start(SmmuMode::Hidden);
    // The kernel's own banner: Debian's arm64 build, at EL1 under the hypervisor.
    boot.guest_line("Booting Linux on physical CPU 0x0000000000");
    let banner = boot.guest_line("Linux version 6.");
    assert!(banner.contains("Debian"), "not Debian's kernel: {banner}");
    boot.guest_line("CPU: All CPU(s) started at EL1");
    boot.guest_line("Run /init as init process");
    let init = boot.guest_line("GUEST: /init reached at");
    // No IOMMU in the guest: no arm-smmu-v3 probe, edu outside any IOMMU group.
    assert!(!boot.guest.iter().any(|l| l.contains("arm-smmu-v3")));
    boot.guest_line("GUEST: pci 0000:00:01.0 0x1234:0x11e8 class 0x00ff00");
    boot.guest_line("GUEST: edu at 0000:00:01.0, driver pci-stub");
    boot.guest_line("GUEST: edu has no iommu group");
    boot.guest_line("id 0x010000ED liveness 0xEDCBA987");
    // DMA into guest memory works through the physical SMMU on the VM's stage 2 ...
    boot.guest_line("GUEST: edu DMA ok: 64 bytes 0x5ff00000 -> edu -> 0x5ff00100 intact");
    // ... and DMA aimed at the hypervisor's memory is stopped there, drained at EL2 with 3 MMIO.
    boot.guest_line("GUEST: edu DMA to 0x43000000 issued");
    boot.hyp_line(
        "physical SMMU: EVENT F_TRANSLATION id=0x10 sid=0x8 addr=0x43000000 ipa=0x43000000 S2=true write",
    );
    let drain = boot.hyp_line("physical SMMU: DRAIN #1 records=1");
    assert!(drain.contains("mmio=3"), "{drain}");
    boot.guest_line("GUEST: done");
    boot.hyp_line("VM: guest called PSCI SYSTEM_OFF");
    // The hidden SMMU is never touched; nothing unexpected trapped.
    assert_eq!(boot.hyp_count("vSMMU window:", "reads"), 0);
    assert_eq!(boot.hyp_count("vSMMU window:", "writes"), 0);
    assert_eq!(boot.hyp_count("VM exits:", "mmio"), 0);
    assert_eq!(boot.hyp_count("VM exits:", "no-syndrome"), 0);
    assert_eq!(boot.hyp_count("vSMMU window:", "refused guest accesses"), 0);
    assert!(
        boot.hyp_count("VM exits:", "irq") > 100,
        "the guest's timer never ticked"
    );
    assert_eq!(
        boot.hyp_count("vGIC:", "dropped"),
        0,
        "the vGIC dropped interrupts"
    );
    assert!(boot.hyp_count("vGIC:", "injected") > 100);
    eprintln!("{init}");
}

#[test]
fn linux_guest_probe_of_the_smmu_window_traps_to_the_hypervisor() {
    let boot = Boot::start(SmmuMode::Virtual);
    // Linux's arm-smmu-v3 driver probes the node the guest DT kept; its first register read
    // (IDR0, offset 0, 4 bytes) traps to vdev::smmu, which has no vSMMU behind it yet and reads
    // as zero, so the driver gives up cleanly and the guest boots on.
    boot.hyp_line("vSMMU: read 0x0 (4 bytes), no vSMMU: 0");
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: no translation support!");
    boot.guest_line("GUEST: /init reached at");
    boot.guest_line("GUEST: done");
    assert_eq!(boot.hyp_count("VM exits:", "mmio"), 1);
    assert_eq!(boot.hyp_count("vSMMU window:", "reads"), 1);
    assert_eq!(boot.hyp_count("vSMMU window:", "writes"), 0);
}

#[test]
fn linux_guest_drives_the_smmu_through_the_trap_path() {
    let boot = Boot::start(SmmuMode::Passthrough);
    // Every access of Linux's arm-smmu-v3 driver traps and is forwarded to QEMU's SMMU: the probe
    // reads what it reads on QEMU's SMMU directly.
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: ias 44-bit, oas 44-bit (features 0x00088705)");
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: allocated 65536 entries for cmdq");
    boot.guest_line("pci-stub 0000:00:01.0: Adding to iommu group 0");
    boot.guest_line("GUEST: edu iommu group 0 type DMA");
    // edu's DMA to a physical address the guest's DMA domain does not map: Linux prints the
    // fault records it read through the trapped EVENTQ registers (StreamID 0x8, read, IOVA).
    boot.guest_line("GUEST: edu DMA did not land: 16 of 16 words differ");
    let first = boot
        .guest
        .iter()
        .position(|l| l.contains("arm-smmu-v3 9050000.smmuv3: event 0x10 received:"))
        .unwrap_or_else(|| panic!("no fault record printed\n{}", boot.tail()));
    let dwords: Vec<&str> = boot.guest[first + 1..first + 5]
        .iter()
        .map(|l| l.rsplit('\t').next().unwrap_or("").trim())
        .collect();
    assert_eq!(
        dwords,
        [
            "0x0000000800000010",
            "0x0000020800000000",
            "0x000000005ff00000",
            "0x0000000000000000"
        ],
        "{}",
        boot.tail()
    );
    let reads = boot.hyp_count("vSMMU window:", "reads");
    let writes = boot.hyp_count("vSMMU window:", "writes");
    eprintln!("SMMU window accesses trapped: {reads} reads, {writes} writes");
    assert!(
        reads >= 20 && writes >= 30,
        "{reads} reads, {writes} writes"
    );
    assert_eq!(boot.hyp_count("VM exits:", "mmio"), reads + writes);
    assert_eq!(boot.hyp_count("vSMMU window:", "refused guest accesses"), 0);
}
