//! The UEFI front end both board images share. Each image is a UEFI application (PE/COFF,
//! `aarch64-unknown-uefi`) the board's firmware starts from its boot manager; its entry calls
//! [`main`] with the board's [`Profile`], which:
//!
//! 1. checks the CPU runs at EL2 (`CurrentEL`): the bring-up is a hypervisor's, and firmware that
//!    starts applications at EL1 fails it here, before anything is touched;
//! 2. finds the firmware's description in the system table's configuration table: the device
//!    tree (`EFI_DTB_TABLE_GUID`, Thor) or the ACPI 2.0 RSDP (`EFI_ACPI_20_TABLE_GUID`, Grace;
//!    then the IORT and SPCR through the XSDT), reads the topology and the console from it while
//!    boot services still own the memory those tables sit in;
//! 3. allocates the drivers' DMA memory with `AllocatePages` (`EfiLoaderData`, so it stays the
//!    image's after the exit);
//! 4. calls `ExitBootServices` (which takes the final memory map) and masks interrupts: from here
//!    the image owns the machine, prints on the PL011/SBSA UART firmware named (SPCR or the DT's
//!    `stdout-path`) and runs [`bringup::run`], then parks the CPU.
//!
//! **Page tables.** The image keeps firmware's: UEFI runs AArch64 applications with the MMU on
//! and an identity map (UEFI 2.10 §2.3.6), and those tables stay valid after `ExitBootServices`
//! as long as nothing reuses the boot-services memory they live in, which this image never
//! does (it allocates nothing after the exit). Every window the drivers get is first looked up
//! in those tables with `AT S1E2R`: an SMMU or CMDQV window must be identity-mapped as device
//! memory, the DMA region as normal write-back memory; a window firmware did not map is reported
//! and its step FAILs, it is never touched.

use core::fmt::{self, Write};
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use arm_smmuv3::discovery::acpi::{Acpi, PhysMem};
use arm_smmuv3::discovery::dt::DeviceTree;
use arm_smmuv3::discovery::{CmdqvDesc, DiscoveryError, SmmuDesc, Topology};
use arm_smmuv3::regs::{Page0, Page1};
use arm_smmuv3::{BumpDma, PhysAddr, Platform};
use uefi::boot::{self, AllocateType, MemoryType};
use uefi::mem::memory_map::MemoryMap;
use uefi::table::cfg::ConfigTableEntry;
use uefi::{Guid, Status, guid};

use crate::bringup::{self, CmdqvRule, Machine};
use crate::platform::QemuPlatform;

/// `EFI_DTB_TABLE_GUID`: the flattened device tree in the configuration table.
pub const DTB_GUID: Guid = guid!("b1b621d5-f19c-41a5-830b-d9152c69aae0");

/// Which firmware description a board's image reads.
#[derive(Clone, Copy, Debug)]
pub enum Firmware {
    /// The device tree (`EFI_DTB_TABLE_GUID`).
    DeviceTree,
    /// ACPI (`EFI_ACPI_20_TABLE_GUID`): the IORT's SMMUv3 nodes, each paired by `_UID` with
    /// the `NVDA200C` device of the DSDT/SSDTs (`arm_smmuv3::discovery::acpi`).
    Acpi,
}

/// One board's image.
#[derive(Clone, Copy, Debug)]
pub struct Profile {
    /// Printed first and in the bring-up's header.
    pub name: &'static str,
    /// Where its SMMUs are described.
    pub firmware: Firmware,
    /// Whether every SMMU must have a CMDQV.
    pub rule: CmdqvRule,
}

/// The memory lent to the drivers (stream tables, queues, CMDQV queues, stage-2 roots). The
/// run on QEMU (one SMMU, 16 StreamID bits) uses 36 KiB; Tegra264 has five SMMUs with CMDQVs.
const DMA_BYTES: usize = 16 << 20;
const PAGE: u64 = 4096;
/// Largest device tree read (its header's `totalsize`; QEMU's is 1 MiB padded, Tegra264's a few
/// hundred KiB): a corrupt header does not make the image walk gigabytes.
const DTB_MAX: usize = 16 << 20;

// ---------------------------------------------------------------------------------------------
// Output: the UEFI console while boot services run, then the UART; always the in-RAM log.

/// Size of the in-RAM log.
const LOG_SIZE: usize = 64 * 1024;

/// Everything the image printed, as text (NUL after the last byte), for a board whose console
/// the image cannot drive: read it with a debugger at the `BOARD_LOG` symbol.
#[unsafe(no_mangle)]
static BOARD_LOG: spin::Mutex<[u8; LOG_SIZE]> = spin::Mutex::new([0; LOG_SIZE]);
static LOG_LEN: AtomicUsize = AtomicUsize::new(0);
/// Boot services are running: output goes to the UEFI console (`ConOut`).
static BOOT_SERVICES: AtomicBool = AtomicBool::new(true);
/// After `ExitBootServices`: the PL011-compatible UART firmware named (0: none).
static CONSOLE: AtomicUsize = AtomicUsize::new(0);

struct Out;

impl Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        {
            let mut log = BOARD_LOG.lock();
            for b in s.bytes() {
                let n = LOG_LEN.load(Ordering::Relaxed);
                if n + 1 < LOG_SIZE {
                    log[n] = b;
                    LOG_LEN.store(n + 1, Ordering::Relaxed);
                }
            }
        }
        if BOOT_SERVICES.load(Ordering::Acquire) {
            return uefi::system::with_stdout(|o| o.write_str(s));
        }
        let uart = CONSOLE.load(Ordering::Acquire);
        if uart != 0 {
            for b in s.bytes() {
                if b == b'\n' {
                    put(uart, b'\r');
                }
                put(uart, b);
            }
        }
        Ok(())
    }
}

/// UARTDR / UARTFR.TXFF of a PL011 (and of the SBSA generic UART, its subset), waited for a
/// bounded time so a wrong console cannot hang the image.
fn put(base: usize, b: u8) {
    const UARTFR: usize = 0x18;
    const TXFF: u32 = 1 << 5;
    for _ in 0..1_000_000 {
        // SAFETY: `base` is the console firmware named, checked to be identity-mapped device
        // memory (`set_console`); UARTFR is a read-only status register.
        if unsafe { ((base + UARTFR) as *const u32).read_volatile() } & TXFF == 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: UARTDR of the same UART; after ExitBootServices only this function writes to it.
    unsafe { (base as *mut u32).write_volatile(u32::from(b)) };
}

/// Prints one line.
pub fn line(args: fmt::Arguments<'_>) {
    let _ = Out.write_fmt(args);
    let _ = Out.write_str("\n");
}

/// Takes the UART at `base` as the console after `ExitBootServices`, when firmware's tables map
/// its registers as device memory; says which.
fn set_console(base: Option<u64>, from: &str) {
    match base {
        Some(b) if range_is(b, PAGE, Mapping::Device) => {
            CONSOLE.store(b as usize, Ordering::Release);
            line(format_args!(
                "UEFI: console after ExitBootServices: PL011 at {b:#x} ({from})"
            ));
        }
        Some(b) => line(format_args!(
            "UEFI: console {b:#x} ({from}) is not device memory in firmware's map: output goes to BOARD_LOG only"
        )),
        None => line(format_args!(
            "UEFI: no PL011/SBSA console in {from}: after ExitBootServices output goes to BOARD_LOG only"
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Firmware's page tables, asked through the address-translation instruction.

/// How firmware's stage-1 EL2 tables map a page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapping {
    /// Not mapped, or not identity-mapped.
    Unmapped,
    /// Device memory (MAIR attribute 0b0000_xx00).
    Device,
    /// Normal memory, inner and outer write-back.
    NormalWb,
    /// Anything else (non-cacheable, write-through).
    Other,
}

/// What `AT S1E2R` says of the page holding `va`.
fn mapping(va: u64) -> Mapping {
    let par: u64;
    // SAFETY: AT only asks the MMU to translate (it writes PAR_EL1, touches no memory); the ISB
    // orders the PAR_EL1 read after it.
    unsafe {
        core::arch::asm!(
            "at s1e2r, {va}",
            "isb",
            "mrs {par}, par_el1",
            va = in(reg) va,
            par = out(reg) par,
            options(nostack, preserves_flags)
        );
    }
    if par & 1 != 0 || par & 0x000f_ffff_ffff_f000 != va & !(PAGE - 1) {
        return Mapping::Unmapped;
    }
    let attr = (par >> 56) as u8;
    // Write-back: 0b01RW (RW != 0, transient) or 0b11RW (non-transient), per nibble.
    let wb = |n: u8| n & 0b1100 == 0b1100 || (n & 0b1100 == 0b0100 && n & 0b11 != 0);
    if attr >> 4 == 0 {
        Mapping::Device
    } else if wb(attr >> 4) && wb(attr & 0xf) {
        Mapping::NormalWb
    } else {
        Mapping::Other
    }
}

/// Whether every page of `[base, base + size)` is identity-mapped as `want`.
fn range_is(base: u64, size: u64, want: Mapping) -> bool {
    let Some(end) = base.checked_add(size.max(1)) else {
        return false;
    };
    let mut page = base & !(PAGE - 1);
    while page < end {
        if mapping(page) != want {
            return false;
        }
        page += PAGE;
    }
    true
}

/// Physical memory read through firmware's identity map, each page checked to be mapped as
/// normal memory first.
struct Identity;

impl PhysMem for Identity {
    fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]> {
        if pa == 0 || !range_is(pa, len as u64, Mapping::NormalWb) {
            return None;
        }
        // SAFETY: firmware's tables (ACPI, DTB) lie in RAM that firmware maps at its physical
        // address (checked page by page above); the image reads them while boot services run
        // and nothing writes them meanwhile.
        Some(unsafe { core::slice::from_raw_parts(pa as usize as *const u8, len) })
    }
}

// ---------------------------------------------------------------------------------------------
// The firmware description.

fn config_table(guid: Guid) -> Option<u64> {
    uefi::system::with_config_table(|entries| {
        entries
            .iter()
            .find(|e| e.guid == guid)
            .map(|e| e.address as u64)
    })
}

/// The topology and the console's base from the device tree in the configuration table.
fn from_device_tree() -> Result<(Topology, Option<u64>), DiscoveryError> {
    let Some(pa) = config_table(DTB_GUID) else {
        let acpi = config_table(ConfigTableEntry::ACPI2_GUID).is_some();
        line(format_args!(
            "UEFI: no device tree in the configuration table{}",
            if acpi {
                " (an ACPI 2.0 RSDP is: firmware runs in ACPI mode)"
            } else {
                ""
            }
        ));
        return Err(DiscoveryError::NotFound);
    };
    let header = Identity.bytes(pa, 8).ok_or(DiscoveryError::NotFound)?;
    let size = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
    if !(40..=DTB_MAX).contains(&size) {
        line(format_args!(
            "UEFI: device tree at {pa:#x} claims {size} bytes (accepted: 40..={DTB_MAX})"
        ));
        return Err(DiscoveryError::NotFound);
    }
    let blob = Identity.bytes(pa, size).ok_or(DiscoveryError::NotFound)?;
    line(format_args!(
        "UEFI: device tree at {pa:#x} ({size} bytes, EFI_DTB_TABLE_GUID)"
    ));
    let topo = DeviceTree::new(blob)?.topology()?;
    Ok((topo, dt_console(blob)))
}

/// The PL011/SBSA UART `/chosen/stdout-path` names, when it sits directly under the root (its
/// `reg` is then a CPU physical address; a console behind a bus with `ranges` is not translated).
fn dt_console(blob: &[u8]) -> Option<u64> {
    use dtoolkit::standard::NodeStandard;
    use dtoolkit::{Node, Property};
    let fdt = dtoolkit::fdt::Fdt::new(blob).ok()?;
    let chosen = fdt.chosen()?;
    let path = chosen.stdout_path().ok()??;
    let path = path.split(':').next()?;
    let path = if path.starts_with('/') {
        path
    } else {
        fdt.find_node("/aliases")?
            .property(path)?
            .value_as::<&str>()
            .ok()?
    };
    if path.get(1..)?.contains('/') {
        return None;
    }
    let node = fdt.find_node(path)?;
    if !(node.is_compatible("arm,pl011") || node.is_compatible("arm,sbsa-uart")) {
        return None;
    }
    node.reg().ok()??.next()?.address::<u64>().ok()
}

/// The topology and SPCR's console from the ACPI tables of the RSDP in the configuration table.
fn from_acpi() -> Result<(Topology, Option<u64>), DiscoveryError> {
    let Some(rsdp) = config_table(ConfigTableEntry::ACPI2_GUID) else {
        let dt = config_table(DTB_GUID).is_some();
        line(format_args!(
            "UEFI: no ACPI 2.0 RSDP in the configuration table{}",
            if dt {
                " (a device tree is: firmware runs in DT mode)"
            } else {
                ""
            }
        ));
        return Err(DiscoveryError::NotFound);
    };
    line(format_args!(
        "UEFI: ACPI 2.0 RSDP at {rsdp:#x} (EFI_ACPI_20_TABLE_GUID)"
    ));
    let tables = Acpi::new(&Identity, rsdp)?;
    let console = tables.spcr().ok().and_then(|s| s.pl011_base());
    let iort = match tables.find(*b"IORT") {
        Ok(t) => t,
        Err(e) => {
            line(format_args!("UEFI: no IORT through the XSDT: {e}"));
            return Err(e);
        }
    };
    line(format_args!(
        "UEFI: IORT at {:#x} ({} bytes, revision {})",
        iort.as_ptr() as u64,
        iort.len(),
        iort[8]
    ));
    let cmdqvs = tables.cmdqvs()?;
    line(format_args!(
        "UEFI: {} NVDA200C device(s) in the DSDT/SSDTs",
        cmdqvs.len()
    ));
    Ok((tables.topology()?, console))
}

// ---------------------------------------------------------------------------------------------
// The machine after ExitBootServices.

static DMA: spin::Once<BumpDma> = spin::Once::new();

/// Firmware's identity map, the generic timer and the region `AllocatePages` gave.
struct Board {
    dma: &'static BumpDma,
}

// SAFETY: every window handed out is identity-mapped device memory in firmware's tables (checked
// page by page with AT), used by nothing else after ExitBootServices (the image runs alone, with
// interrupts masked, and creates one driver per SMMU and CMDQV); the DMA region is the image's
// `EfiLoaderData` allocation, normal write-back memory at its physical address, lent only here.
unsafe impl Machine for Board {
    type Platform = QemuPlatform;
    type Dma = &'static BumpDma;

    fn smmu_pages(&mut self, _: usize, d: &SmmuDesc) -> Option<(NonNull<Page0>, NonNull<Page1>)> {
        if !range_is(d.page0().0, 0x1_0000, Mapping::Device)
            || !range_is(d.page1().0, 0x1_0000, Mapping::Device)
        {
            line(format_args!(
                "    SMMU at {:#x}: not identity-mapped as device memory by firmware",
                d.base.0
            ));
            return None;
        }
        let p0 = NonNull::new(d.page0().0 as usize as *mut Page0)?;
        let p1 = NonNull::new(d.page1().0 as usize as *mut Page1)?;
        Some((p0, p1))
    }

    fn cmdqv_window(&mut self, _: usize, c: &CmdqvDesc) -> Option<(NonNull<u8>, usize)> {
        if !range_is(c.base.0, c.size, Mapping::Device) {
            line(format_args!(
                "    CMDQV at {:#x}: not identity-mapped as device memory by firmware",
                c.base.0
            ));
            return None;
        }
        Some((
            NonNull::new(c.base.0 as usize as *mut u8)?,
            usize::try_from(c.size).ok()?,
        ))
    }

    fn platform(&self, _: usize) -> QemuPlatform {
        QemuPlatform::new()
    }

    fn dma(&self, _: usize) -> &'static BumpDma {
        self.dma
    }

    fn line(&mut self, args: fmt::Arguments<'_>) {
        line(args);
    }
}

/// The exception level the CPU runs at.
fn current_el() -> u64 {
    use aarch64_cpu::registers::{CurrentEL, Readable};
    CurrentEL.read(CurrentEL::EL)
}

/// A failure before the bring-up: one named RESULT and the SUMMARY, then back to firmware.
fn fail_early(step: &str, status: Status) -> Status {
    line(format_args!("RESULT {step} FAIL"));
    line(format_args!("SUMMARY: 0 passed, 1 failed (of 1) in 0 ms"));
    status
}

/// The image: see the module documentation. Returns to firmware only when it fails before
/// `ExitBootServices`.
pub fn main(p: &Profile) -> Status {
    line(format_args!(
        "arm-smmuv3 board image: {}, UEFI application",
        p.name
    ));
    let el = current_el();
    line(format_args!("UEFI: running at EL{el}"));
    if el != 2 {
        line(format_args!(
            "UEFI: firmware started the image at EL{el}; the bring-up is a hypervisor's and needs \
             EL2 (firmware must leave EL2 to UEFI applications)"
        ));
        return fail_early("uefi-el2", Status::UNSUPPORTED);
    }

    let found = match p.firmware {
        Firmware::DeviceTree => from_device_tree(),
        Firmware::Acpi => from_acpi(),
    };
    let (topo, console) = match found {
        Ok(f) => f,
        Err(e) => {
            line(format_args!(
                "arm-smmuv3 board image: {}: firmware description unreadable: {e}",
                p.name
            ));
            return fail_early("discovery", Status::NOT_FOUND);
        }
    };

    let pages = DMA_BYTES / PAGE as usize;
    let dma = match boot::allocate_pages(AllocateType::AnyPages, MemoryType::LOADER_DATA, pages) {
        Ok(ptr) => ptr,
        Err(e) => {
            line(format_args!(
                "UEFI: AllocatePages({pages}) failed: {:?}",
                e.status()
            ));
            return fail_early("uefi-dma", Status::OUT_OF_RESOURCES);
        }
    };
    let dma_pa = dma.as_ptr() as u64;
    if !range_is(dma_pa, DMA_BYTES as u64, Mapping::NormalWb) {
        line(format_args!(
            "UEFI: DMA region {dma_pa:#x} is not identity-mapped write-back memory"
        ));
        return fail_early("uefi-dma", Status::UNSUPPORTED);
    }
    line(format_args!(
        "UEFI: DMA region {dma_pa:#x}..{:#x} (AllocatePages, EfiLoaderData, write-back)",
        dma_pa + DMA_BYTES as u64
    ));
    line(format_args!("UEFI: ExitBootServices"));

    BOOT_SERVICES.store(false, Ordering::Release);
    // SAFETY: nothing of boot services is referenced after this: the output switched to the UART
    // above, the topology is a copy, the tables are not read again, and the image allocates
    // nothing more. The stack and firmware's page tables stay in memory nobody reuses.
    let map = unsafe { boot::exit_boot_services(None) };
    // Firmware's interrupt handlers belong to the services just left.
    // SAFETY: masks exceptions at this EL; touches no memory.
    unsafe {
        core::arch::asm!(
            "msr daifset, #0xf",
            options(nomem, nostack, preserves_flags)
        )
    };

    set_console(
        console,
        match p.firmware {
            Firmware::DeviceTree => "the device tree's stdout-path",
            Firmware::Acpi => "SPCR",
        },
    );
    let dma_end = dma_pa + DMA_BYTES as u64;
    let conventional: u64 = map
        .entries()
        .filter(|d| d.ty == MemoryType::CONVENTIONAL)
        .map(|d| d.page_count * PAGE)
        .sum();
    let dma_owned = map.entries().any(|d| {
        d.ty == MemoryType::LOADER_DATA
            && d.phys_start <= dma_pa
            && dma_end <= d.phys_start + d.page_count * PAGE
    });
    line(format_args!(
        "UEFI: boot services exited; memory map: {} entries, {} MiB conventional; DMA region is EfiLoaderData: {dma_owned}",
        map.entries().len(),
        conventional >> 20
    ));
    if !dma_owned {
        bringup_failed("uefi-dma");
    }

    // SAFETY: the region was allocated above for the image alone (EfiLoaderData, still listed as
    // such in the final map), `DMA_BYTES` long, write-back memory at its physical address.
    let dma = DMA.call_once(|| unsafe {
        dma.as_ptr().write_bytes(0, DMA_BYTES);
        BumpDma::new(dma, PhysAddr(dma_pa), DMA_BYTES)
    });
    let platform = QemuPlatform::new();
    bringup::run(&mut Board { dma }, p.name, &topo, p.rule, &|| {
        platform.now_us()
    });
    line(format_args!(
        "UEFI: DMA memory used {} KiB of {} KiB",
        dma.used() / 1024,
        dma.capacity() / 1024
    ));
    line(format_args!(
        "UEFI: bring-up done; the CPU parks (boot services are gone, there is no firmware to return to)"
    ));
    park()
}

fn bringup_failed(step: &str) -> ! {
    let _ = fail_early(step, Status::ABORTED);
    park()
}

fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    line(format_args!("PANIC: {info}"));
    park()
}
