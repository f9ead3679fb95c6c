//! An EL2 demo hypervisor for QEMU `virt` with its emulated SMMUv3 and the `edu` PCI device.
//!
//! Built for `aarch64-unknown-none` this is the bare-metal image: it boots at EL2 (aarch64-rt),
//! enumerates PCIe, finds edu and runs the scenarios in scenarios.rs, printing readable text on
//! the PL011 UART and a defmt log over semihosting, then exits through semihosting with 0 when no
//! scenario failed. The host runner that boots it is the `qemu-virt-runner` crate beside this one.
//!
//! Run it with `cargo qemu`.

#![cfg_attr(target_os = "none", no_std, no_main)]

// Boot, vectors and the board.
#[cfg(target_os = "none")]
mod board;
#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod cs;
#[cfg(target_os = "none")]
mod mmu;
// The SMMU and edu's StreamID, from the device tree QEMU hands over.
#[cfg(target_os = "none")]
mod discover;
#[cfg(target_os = "none")]
mod platform;
#[cfg(target_os = "none")]
mod vectors;
// Device drivers: PL011, GICv3, PCIe ECAM, edu, and the physical SMMU's glue.
#[cfg(target_os = "none")]
mod drivers;
// The stage-2 tables both the CPU and the SMMU walk.
#[cfg(target_os = "none")]
mod stage2;
// The scenarios the demo runs by default.
#[cfg(target_os = "none")]
mod scenarios;
// A Linux guest: the VM (vCPU, traps, vGIC, PSCI, guest DT) and its virtual devices.
#[cfg(target_os = "none")]
mod vdev;
#[cfg(target_os = "none")]
mod vm;

#[cfg(target_os = "none")]
use drivers::{edu, gic, pci, smmu, uart};

// The pure part of the distributor filter, tested on the host.
#[cfg(all(test, not(target_os = "none")))]
#[path = "vdev/gicd_filter.rs"]
mod gicd_filter;

/// Built for the host this crate is empty: the image only exists for `aarch64-unknown-none`.
#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "the demo hypervisor is a bare-metal image: build it with --target aarch64-unknown-none"
    );
    std::process::exit(2);
}

#[cfg(target_os = "none")]
pub use image::exit;

#[cfg(target_os = "none")]
mod image {
    use core::arch::global_asm;
    use core::panic::PanicInfo;

    use aarch64_cpu::registers::{CurrentEL, Readable, SCTLR_EL2};
    use arm_smmuv3::Platform;
    use arm_smmuv3::discovery::{DiscoveryError, Topology};
    use defmt_semihosting as _;

    use crate::edu::{self, Edu};
    use crate::pci::{self, BarAllocator, Ecam};
    use crate::platform::{self, QemuPlatform};
    use crate::scenarios::{self, Ctx};
    use crate::{gic, say, smmu, uart};

    /// Exit code of a run in which a scenario failed.
    pub const EXIT_FAILED: i32 = 1;
    /// Exit code of a run that could not set up the platform (no edu, BAR assignment failed).
    pub const EXIT_SETUP: i32 = 2;
    /// Exit code of a panic.
    pub const EXIT_PANIC: i32 = 101;

    global_asm!(include_str!("scenarios/fp_probe.s"));

    aarch64_rt::entry!(hyp_main, 64);

    /// Ends the QEMU run with `code` as its exit status (semihosting SYS_EXIT).
    pub fn exit(code: i32) -> ! {
        semihosting::process::exit(code)
    }

    fn hyp_main(x0: u64, _x1: u64, _x2: u64, _x3: u64) -> ! {
        let found = crate::discover::init(x0);
        if let Some(words) = linux_command_line() {
            linux_main(&words, found);
        }
        uart::UART.lock().enable();
        let platform = QemuPlatform::new();
        let el = CurrentEL.read(CurrentEL::EL);
        let mmu = SCTLR_EL2.get() & 1 != 0;
        say!(
            "arm-smmuv3 QEMU virt demo: EL{}, MMU {}, counter {} Hz",
            el,
            if mmu { "on" } else { "off" },
            platform.freq_hz()
        );
        if el != 2 {
            say!("not at EL2: start QEMU with -machine virt,virtualization=on");
            exit(EXIT_SETUP);
        }
        let (topo, src) = match found {
            Ok(f) => f,
            Err(e) => {
                say!("cannot read the device tree: {}", e);
                exit(EXIT_SETUP);
            }
        };
        crate::discover::print(topo, src);
        if crate::discover::smmu().is_none() {
            say!(
                "no enabled SMMUv3 in the device tree: start QEMU with -machine virt,iommu=smmuv3"
            );
            exit(EXIT_SETUP);
        }
        let _gic = gic::init();
        let dma = platform::dma();
        say!(
            "DMA region {:#x}, {} KiB lent",
            platform::dma_region_base(),
            dma.capacity() / 1024
        );

        let Some(edu) = find_edu() else {
            exit(EXIT_SETUP);
        };
        let mut ctx = Ctx { platform, dma, edu };
        let t0 = ctx.platform.now_us();
        let summary = scenarios::run_all(&mut ctx);
        // Leave the SMMU disabled (DMA aborted) rather than half-configured.
        smmu::release();
        if smmu::log_dropped() != 0 {
            say!("IRQ log overflowed: {} entries lost", smmu::log_dropped());
        }
        let ms = ctx.platform.now_us().wrapping_sub(t0) / 1000;
        let irqs = gic::counts();
        say!(
            "IRQs taken: eventq {} priq {} cmdq-sync {} gerror {} edu {} other {}",
            irqs.eventq,
            irqs.priq,
            irqs.cmdq_sync,
            irqs.gerror,
            irqs.edu,
            irqs.other
        );
        say!(
            "SUMMARY: {} passed, {} failed (of {}) in {} ms",
            summary.passed,
            summary.failed,
            scenarios::SCENARIOS.len(),
            ms
        );
        exit(if summary.failed == 0 { 0 } else { EXIT_FAILED })
    }

    /// The words after `linux` when the runner asked for a Linux guest (semihosting command line
    /// `linux kernel=... initrd=... initrd-size=...`).
    fn linux_command_line() -> Option<heapless::String<256>> {
        let mut buf = [core::mem::MaybeUninit::<u8>::uninit(); 256];
        let line = semihosting::sys::arm_compat::sys_get_cmdline_uninit(&mut buf).ok()?;
        let text = core::str::from_utf8(line).ok()?;
        let rest = text.trim().strip_prefix("linux")?;
        heapless::String::try_from(rest).ok()
    }

    /// Boots the Linux guest; the UART is the guest's from the start, so the hypervisor speaks
    /// through defmt only.
    fn linux_main(
        words: &str,
        found: Result<(&'static Topology, crate::discover::Source), DiscoveryError>,
    ) -> ! {
        defmt::info!(
            "arm-smmuv3 QEMU virt demo hypervisor: Linux guest mode ({=str})",
            words
        );
        // The guest's stage 2 leaves out the SMMU's window (board.rs); the SMMU the device tree
        // names must be the one it leaves out.
        match found.map(|_| crate::discover::smmu()) {
            Ok(Some(d)) if d.page0().0 == crate::board::SMMU_BASE => {
                defmt::info!(
                    "DISCOVERED SMMU 0: page0 {=u64:#x} page1 {=u64:#x}",
                    d.page0().0,
                    d.page1().0
                );
            }
            Ok(Some(d)) => {
                defmt::error!(
                    "the device tree's SMMU at {=u64:#x} is not the one the guest's stage 2 leaves out",
                    d.page0().0
                );
                exit(EXIT_SETUP);
            }
            Ok(None) => {
                defmt::error!("no enabled SMMUv3 in the device tree");
                exit(EXIT_SETUP);
            }
            Err(e) => {
                defmt::error!("cannot read the device tree: {}", e);
                exit(EXIT_SETUP);
            }
        }
        let boot = match crate::vm::LinuxBoot::parse(words) {
            Ok(b) => b,
            Err(e) => {
                defmt::error!("cannot boot the guest: {}", e);
                exit(EXIT_SETUP);
            }
        };
        let e = crate::vm::run_linux(boot);
        defmt::error!("cannot boot the guest: {}", e);
        exit(EXIT_SETUP)
    }

    /// Enumerates bus 0, finds edu, assigns its BAR0, enables it, and checks it answers.
    fn find_edu() -> Option<Edu> {
        // SAFETY: QEMU `virt` (highmem on) has its ECAM at ECAM_BASE, mapped as device memory by
        // boot.rs.
        let ecam = unsafe { Ecam::new(pci::ECAM_BASE) };
        let functions = pci::scan_bus0::<32>(ecam);
        for f in &functions {
            say!("PCI {}", f);
        }
        // Devices on PCIe expander root buses (`-device pxb-pcie`): the same host bridge and
        // `iommu-map` in the device tree, other bus numbers, so other StreamIDs.
        for r in pci::scan_expanders::<8>(ecam) {
            say!(
                "PCI {:02x}:{:02x}.0 {:04x}:{:04x}",
                r.bus,
                r.device,
                r.vendor,
                r.device_id
            );
            if (r.vendor, r.device_id) == (edu::VENDOR, edu::DEVICE) {
                match crate::discover::pci_stream_id(r.rid()) {
                    Ok(sid) => say!(
                        "DISCOVERED edu {:02x}:{:02x}.0 RID {:#x} -> SMMU 0 StreamID {:#x}",
                        r.bus,
                        r.device,
                        r.rid(),
                        sid.0
                    ),
                    Err(e) => say!("edu RID {:#x} has no StreamID: {}", r.rid(), e),
                }
            }
        }
        let Some(f) = functions
            .iter()
            .find(|f| f.vendor == edu::VENDOR && f.device_id == edu::DEVICE)
        else {
            say!("edu (1234:11e8) not found: add -device edu,dma_mask=0xffffffffffffffff");
            return None;
        };
        let (bar, size) = match BarAllocator::new().setup_bar0(ecam, f) {
            Ok(b) => b,
            Err(e) => {
                say!("edu BAR0 setup failed: {:?}", e);
                return None;
            }
        };
        let sid = match crate::discover::pci_stream_id(f.rid()) {
            Ok(sid) => sid,
            Err(e) => {
                say!("edu at {}: RID {:#x} has no StreamID: {}", f, f.rid(), e);
                return None;
            }
        };
        say!(
            "DISCOVERED edu {} RID {:#x} -> SMMU 0 StreamID {:#x}",
            f,
            f.rid(),
            sid.0
        );
        // SAFETY: BAR0 was just assigned at `bar` inside the MMIO32 window (identity-mapped device
        // memory), with memory decoding and bus mastering on; nothing else uses it.
        let edu = unsafe { Edu::new(bar as usize, sid) };
        let (id, live) = (edu.id(), edu.liveness(0x1234_5678));
        say!(
            "edu at {}: BAR0 {:#x} ({} KiB), StreamID {:#x}, id {:#x}, liveness {:#x}",
            f,
            bar,
            size / 1024,
            edu.stream_id().0,
            id,
            live
        );
        (id & 0xff == 0xed && live == !0x1234_5678).then_some(edu)
    }

    #[panic_handler]
    fn panic(info: &PanicInfo) -> ! {
        uart::write_fmt_panicking(format_args!("PANIC: {info}\n"));
        defmt::error!("PANIC: {}", defmt::Display2Format(info));
        exit(EXIT_PANIC)
    }
}
