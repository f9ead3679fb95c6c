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
        Self::start_with(smmu, &[])
    }

    /// [`Boot::start`] with `extra` QEMU arguments.
    fn start_with(smmu: SmmuMode, extra: &[String]) -> Self {
        let (elf, files) = prerequisites();
        let started = Instant::now();
        let run = linux::run(&elf, &files, smmu, extra, TIMEOUT, &mut |_: &Output| {})
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

    /// Linux put the virtio disk and edu (bound to pci-stub) in IOMMU groups with DMA domains.
    fn devices_in_dma_domains(&self) {
        self.guest_line("virtio-pci 0000:00:02.0: Adding to iommu group 0");
        self.guest_line("pci-stub 0000:00:01.0: Adding to iommu group 1");
        self.guest_line("GUEST: virtio-blk iommu group 0 type DMA");
        self.guest_line("GUEST: edu iommu group 1 type DMA");
    }

    /// The guest read its whole virtio disk by DMA and its checksum is the host's.
    fn disk_read_intact(&self) {
        let (_, files) = prerequisites();
        self.guest_line(&format!(
            "GUEST: vda 2048 sectors sha256 {}",
            files.disk_sha256
        ));
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

/// The four dwords of the first `event 0x10 received:` record the guest printed.
fn first_fault(boot: &Boot) -> Vec<&str> {
    let first = boot
        .guest
        .iter()
        .position(|l| l.contains("arm-smmu-v3 9050000.smmuv3: event 0x10 received:"))
        .unwrap_or_else(|| panic!("no fault record printed\n{}", boot.tail()));
    boot.guest
        .get(first + 1..first + 5)
        .unwrap_or_else(|| panic!("the record's dwords are missing\n{}", boot.tail()))
        .iter()
        .map(|l| l.rsplit('\t').next().unwrap_or("").trim())
        .collect()
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
    // The virtio disk's DMA (by guest physical address: no IOMMU in the guest) through the
    // physical SMMU's stage 2.
    boot.disk_read_intact();
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
fn linux_guest_drives_the_virtual_smmu() {
    // QEMU traces the physical SMMU's MMIO between the markers the hypervisor's drain reads.
    let boot = Boot::start_with(SmmuMode::Virtual, &host::drain_trace_args());
    boot.guest_line("CPU: All CPU(s) started at EL1");
    // Linux's unmodified arm-smmu-v3 driver probes the library's virtual SMMU behind the
    // trapped window: stage 1 over the VM's 40-bit IPA, the 8-entry event queue it advertises.
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: ias 40-bit, oas 40-bit");
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: allocated 256 entries for cmdq");
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: allocated 8 entries for evtq");
    boot.devices_in_dma_domains();
    // Real DMA through the guest's stage 1 (Linux's DMA domain, walked by QEMU's SMMU from the
    // nested STE the vSMMU installed) over the VM's stage 2: the whole disk, checksummed.
    boot.disk_read_intact();
    // edu's DMA to an IOVA the guest never mapped: QEMU's SMMU records the fault, the hypervisor
    // drains it at EL2 and the vSMMU writes it into the guest's queue with edu's vSID 0x108
    // (QEMU's own SMMU reports StreamID 0x8, see the passthrough test).
    boot.guest_line("GUEST: edu DMA did not land: 16 of 16 words differ");
    assert_eq!(
        first_fault(&boot),
        [
            "0x0000010800000010",
            "0x0000020800000000",
            "0x000000005ff00000",
            "0x0000000000000000"
        ],
        "{}",
        boot.tail()
    );
    // One 64-byte transfer faults 16 times, more than the guest's 8-entry queue holds: the guest
    // sees the overflow, and every record QEMU recorded is accounted for.
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: EVTQ overflow detected -- events lost");
    let drained = boot.hyp_count("vSMMU window:", "drained");
    let written = boot.hyp_count("vSMMU events:", "written");
    let lost = boot.hyp_count("vSMMU events:", "lost");
    eprintln!("records: {drained} drained at EL2, {written} delivered to the guest, {lost} lost");
    assert!(lost > 0 && written > 0, "{}", boot.tail());
    assert_eq!(boot.hyp_count("vSMMU window:", "log-dropped"), 0);
    assert_eq!(boot.hyp_count("Router:", "forwarded"), drained);
    assert_eq!(boot.hyp_count("Router:", "to-host"), 0);
    assert_eq!(boot.hyp_count("vSMMU events:", "discarded"), 0);
    assert_eq!(written + lost, drained, "{}", boot.tail());
    assert!(boot.hyp_count("vSMMU events:", "overflows") >= 1);
    // The guest's view is confined: Linux's STEs and commands went through the sanitiser, which
    // refused none of them (VMID, stage 2 and StreamIDs are the hypervisor's), and nothing it
    // did reached a register the vSMMU does not emulate. Both devices got a nested STE; the
    // disk's DMA unmaps were forwarded as sanitised TLB invalidations.
    assert!(boot.hyp_count("vSMMU done:", "STEs") >= 2);
    assert!(boot.hyp_count("vSMMU done:", "forwarded") >= 1);
    for refused in [
        "STEs",
        "ste-fetch-faults",
        "cmdq-errors",
        "guarded-writes",
        "unknown-reads",
        "unknown-writes",
        "bad-accesses",
        "backend-errors",
    ] {
        assert_eq!(
            boot.hyp_count("vSMMU refused:", refused),
            0,
            "{refused}\n{}",
            boot.tail()
        );
    }
    let reads = boot.hyp_count("vSMMU window:", "reads");
    let writes = boot.hyp_count("vSMMU window:", "writes");
    eprintln!("vSMMU traps: {reads} reads, {writes} writes");
    assert!(
        reads >= 20 && writes >= 30,
        "{reads} reads, {writes} writes"
    );
    assert_eq!(boot.hyp_count("VM exits:", "mmio"), reads + writes);
    assert_eq!(boot.hyp_count("vSMMU window:", "unserved"), 0);
    assert_eq!(boot.hyp_count("vSMMU window:", "refused guest accesses"), 0);
    // The physical drains at EL2 while Linux runs: at most 3 SMMU accesses each in QEMU's trace.
    let log: Vec<host::LogLine> = boot
        .run
        .log
        .iter()
        .map(|l| host::LogLine {
            message: l.message.replace("physical SMMU: DRAIN", "DRAIN"),
            ..l.clone()
        })
        .collect();
    let drains = host::drain_measures(&log, &boot.run.stderr)
        .unwrap_or_else(|e| panic!("pairing drains with QEMU's trace: {e}\n{}", boot.tail()));
    eprintln!("{}", host::drain_summary(&drains));
    assert!(!drains.is_empty());
    for d in &drains {
        assert!(d.qemu_mmio <= 3 && d.driver_mmio <= 3, "{d:?}");
    }
    assert_eq!(
        drains.iter().map(|d| d.records).sum::<u32>(),
        drained,
        "{drains:?}"
    );
    for l in boot.hyp.iter().filter(|l| l.contains("fault to guest")) {
        eprintln!("{l}");
    }
}

#[test]
fn linux_guest_drives_the_smmu_through_the_trap_path() {
    let boot = Boot::start(SmmuMode::Passthrough);
    // Every access of Linux's arm-smmu-v3 driver traps and is forwarded to QEMU's SMMU: the probe
    // reads what it reads on QEMU's SMMU directly.
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: ias 44-bit, oas 44-bit (features 0x00088705)");
    boot.guest_line("arm-smmu-v3 9050000.smmuv3: allocated 65536 entries for cmdq");
    boot.devices_in_dma_domains();
    boot.disk_read_intact();
    // edu's DMA to a physical address the guest's DMA domain does not map: Linux prints the
    // fault records it read through the trapped EVENTQ registers (StreamID 0x8, read, IOVA).
    boot.guest_line("GUEST: edu DMA did not land: 16 of 16 words differ");
    assert_eq!(
        first_fault(&boot),
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
