//! The runtime both board images share: the boot map (a 1 TiB identity map, the image's GiB as
//! normal memory and everything else as device memory, so every window firmware describes below
//! 1 TiB is reachable), the output (an in-RAM log, `BOARD_LOG`, and a PL011-compatible console
//! when firmware names one), exception and panic handlers, and the [`Machine`] the bring-up runs
//! on. Each image's `main` only finds its firmware description and calls [`run`].

use core::fmt::{self, Write};
use core::panic::PanicInfo;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicUsize, Ordering};

use aarch64_rt::{ExceptionHandlers, RegisterStateRef};
use arm_smmuv3::discovery::{CmdqvDesc, DiscoveryError, SmmuDesc, Topology};
use arm_smmuv3::regs::{Page0, Page1};
use arm_smmuv3::{BumpDma, Platform};

use crate::mmu::{DEVICE_1G, NORMAL_1G};
use crate::platform::QemuPlatform;
use board_images::bringup::{self, CmdqvRule, Machine};

/// The GiB the image is linked in (its linker script's ORIGIN >> 30): normal memory.
const RAM_GIB: u64 = crate::IMAGE_GIB;
/// How much of the physical address space the boot map covers (1 TiB, 40 bits).
pub const MAPPED_END: u64 = 1 << 40;

/// TCR_EL2 (E2H = 0): RES1 bits 31 and 23, PS = 0b010 (40-bit PA), TG0 = 4 KiB,
/// inner-shareable write-back walks, T0SZ = 24 (40-bit VA: walks start at level 0).
const TCR: u64 =
    (1 << 31) | (1 << 23) | (0b010 << 16) | (0b11 << 12) | (0b01 << 10) | (0b01 << 8) | 24;

/// A level-0 table (two entries, filled by `enable_mmu`) and the two level-1 tables of 1 GiB
/// blocks it points at.
#[repr(C, align(4096))]
struct BoardPagetable {
    l0: [u64; 512],
    l1: [[u64; 512]; 2],
}

const fn board_pagetable() -> BoardPagetable {
    let mut l1 = [[0u64; 512]; 2];
    let mut gib = 0;
    while gib < 1024 {
        let attrs = if gib == RAM_GIB { NORMAL_1G } else { DEVICE_1G };
        l1[(gib / 512) as usize][(gib % 512) as usize] = (gib << 30) | attrs;
        gib += 1;
    }
    BoardPagetable { l0: [0; 512], l1 }
}

/// Written once by `enable_mmu` (its two level-0 entries) before any Rust code runs.
static mut BOOT_PAGETABLE: BoardPagetable = board_pagetable();

// The level-0 entries point at the level-1 tables (absolute addresses are not known at compile
// time); they are written with the MMU off, so the line is cleaned to the point of coherency for
// the table walker.
crate::mmu::enable_mmu!(
    BOOT_PAGETABLE,
    TCR,
    "    add x10, x9, #0x1000",
    "    orr x10, x10, #3",
    "    str x10, [x9]",
    "    add x10, x9, #0x2000",
    "    orr x10, x10, #3",
    "    str x10, [x9, #8]",
    "    dc civac, x9",
    "    dsb sy",
);
const _: () = assert!(RAM_GIB < 1024);

/// Size of the in-RAM log.
const LOG_SIZE: usize = 64 * 1024;

/// Everything the image printed, as text (NUL after the last byte): read it with a debugger or
/// from the firmware's memory dump command at the address of the `BOARD_LOG` symbol
/// (`nm -C <image> | grep BOARD_LOG`) when the board has no console the image can drive.
#[unsafe(no_mangle)]
static BOARD_LOG: spin::Mutex<[u8; LOG_SIZE]> = spin::Mutex::new([0; LOG_SIZE]);
static LOG_LEN: AtomicUsize = AtomicUsize::new(0);
/// The PL011-compatible console firmware named (0: none).
static CONSOLE: AtomicUsize = AtomicUsize::new(0);

/// Sends output to the PL011-compatible UART at `base` too (Grace: SPCR's console), after
/// checking it lies in the boot map's device memory.
#[allow(
    dead_code,
    reason = "Thor's image has no console it can drive (see the README)"
)]
pub fn set_console(base: u64) {
    if base != 0 && base < MAPPED_END && base >> 30 != RAM_GIB {
        CONSOLE.store(base as usize, Ordering::Release);
    }
}

struct Out;

impl Write for Out {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut log = BOARD_LOG.lock();
        let uart = CONSOLE.load(Ordering::Acquire);
        for b in s.bytes() {
            let n = LOG_LEN.load(Ordering::Relaxed);
            if n + 1 < LOG_SIZE {
                log[n] = b;
                LOG_LEN.store(n + 1, Ordering::Relaxed);
            }
            if uart != 0 {
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
        // SAFETY: `base` is the console firmware named, in the boot map's device memory
        // (`set_console`); UARTFR is a read-only status register.
        if unsafe { ((base + UARTFR) as *const u32).read_volatile() } & TXFF == 0 {
            break;
        }
        core::hint::spin_loop();
    }
    // SAFETY: UARTDR of the same UART; only this function writes to it.
    unsafe { (base as *mut u32).write_volatile(u32::from(b)) };
}

/// Prints one line.
pub fn line(args: fmt::Arguments<'_>) {
    let _ = Out.write_fmt(args);
    let _ = Out.write_str("\n");
}

unsafe extern "C" {
    /// First byte after the image (aarch64-rt's image.ld), 4 KiB aligned.
    static dma_region: u8;
    /// End of the lent region (the board's linker script). A symbol relative to `dma_region`,
    /// not an absolute size: code linked above 4 GiB reaches only symbols within ±4 GiB.
    static board_dma_end: u8;
}

static DMA: spin::Once<BumpDma> = spin::Once::new();

/// The region after the image, lent to the drivers (stream tables, queues, stage-2 roots),
/// zeroed on first use; CPU address = physical address (identity map).
fn dma() -> &'static BumpDma {
    DMA.call_once(|| {
        let base = (&raw const dma_region) as usize;
        let size = ((&raw const board_dma_end) as usize).saturating_sub(base);
        let Some(ptr) = NonNull::new(base as *mut u8) else {
            line(format_args!("no DMA region"));
            park()
        };
        // SAFETY: the linker places `size` bytes of otherwise unused RAM at `dma_region`, inside
        // the image's GiB (asserted in the linker script); nothing else refers to them.
        unsafe {
            ptr.as_ptr().write_bytes(0, size);
            BumpDma::new(ptr, arm_smmuv3::PhysAddr(base as u64), size)
        }
    })
}

/// The machine the board images run the bring-up on: identity-mapped windows, the generic
/// timer, and the DMA region after the image.
struct Board;

fn mapped(base: u64, size: u64) -> bool {
    base.checked_add(size).is_some_and(|end| end <= MAPPED_END)
        && (base >> 30 != RAM_GIB)
        && ((base + size - 1) >> 30 != RAM_GIB)
}

// SAFETY: every window handed out lies in the boot map's device memory (checked by `mapped`),
// identity-mapped; the bring-up creates one driver per SMMU and CMDQV, and nothing else in the
// image touches them; the DMA region is the linker's, lent only here.
unsafe impl Machine for Board {
    type Platform = QemuPlatform;
    type Dma = &'static BumpDma;

    fn smmu_pages(&mut self, _: usize, d: &SmmuDesc) -> Option<(NonNull<Page0>, NonNull<Page1>)> {
        if !mapped(d.base.0, d.size.max(0x2_0000)) {
            return None;
        }
        let p0 = NonNull::new(d.page0().0 as usize as *mut Page0)?;
        let p1 = NonNull::new(d.page1().0 as usize as *mut Page1)?;
        Some((p0, p1))
    }

    fn cmdqv_window(&mut self, _: usize, c: &CmdqvDesc) -> Option<(NonNull<u8>, usize)> {
        if !mapped(c.base.0, c.size) {
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
        dma()
    }

    fn line(&mut self, args: fmt::Arguments<'_>) {
        line(args);
    }
}

/// Runs the bring-up on what firmware described and parks the CPU.
pub fn run(name: &str, topo: Result<Topology, DiscoveryError>, rule: CmdqvRule) -> ! {
    let p = QemuPlatform::new();
    match topo {
        Ok(topo) => {
            line(format_args!(
                "DMA region {:#x}, {} KiB lent",
                (&raw const dma_region) as usize,
                dma().capacity() / 1024
            ));
            bringup::run(&mut Board, name, &topo, rule, &|| p.now_us());
        }
        Err(e) => {
            line(format_args!(
                "arm-smmuv3 board image: {name}: firmware description unreadable: {e}"
            ));
            line(format_args!("RESULT discovery FAIL"));
            line(format_args!("SUMMARY: 0 passed, 1 failed (of 1) in 0 ms"));
        }
    }
    park()
}

fn park() -> ! {
    loop {
        aarch64_cpu::asm::wfe();
    }
}

/// Unexpected exceptions: said, then the CPU parks.
struct Handlers;

aarch64_rt::exception_handlers!(Handlers);

impl ExceptionHandlers for Handlers {
    extern "C" fn sync_current(s: RegisterStateRef) {
        fatal("synchronous exception", &s)
    }

    extern "C" fn irq_current(s: RegisterStateRef) {
        fatal("IRQ", &s)
    }

    extern "C" fn fiq_current(s: RegisterStateRef) {
        fatal("FIQ", &s)
    }

    extern "C" fn serror_current(s: RegisterStateRef) {
        fatal("SError", &s)
    }
}

fn fatal(what: &str, s: &RegisterStateRef) -> ! {
    use aarch64_cpu::registers::{ESR_EL2, FAR_EL2, Readable};
    line(format_args!(
        "FATAL: {what} at EL2: ESR_EL2={:#x} FAR_EL2={:#x} ELR_EL2={:#x}",
        ESR_EL2.get(),
        FAR_EL2.get(),
        s.elr
    ));
    park()
}

#[panic_handler]
fn panic(info: &PanicInfo) -> ! {
    line(format_args!("PANIC: {info}"));
    park()
}
