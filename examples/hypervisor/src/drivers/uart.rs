//! PL011 UART output: the human-readable half of the demo's output (the defmt stream goes over
//! semihosting). QEMU `virt` puts UART0 at 0x0900_0000.

use core::fmt;
use core::ptr::NonNull;

/// Base of QEMU `virt`'s UART0.
pub const PL011_BASE: usize = 0x0900_0000;

const UARTDR: usize = 0x000;
const UARTFR: usize = 0x018;
const UARTCR: usize = 0x030;
/// UARTFR.TXFF: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;
/// UARTCR: UARTEN | TXE | RXE.
const CR_ENABLE: u32 = 0x301;

/// A PL011 used for transmit only.
pub struct Pl011 {
    base: NonNull<u32>,
}

// SAFETY: the UART registers may be accessed from any context; all writers go through the
// `UART` lock below (or the panic path, which never returns).
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    ///
    /// `base` is the PL011's register block, mapped as device memory; nothing else configures it.
    const unsafe fn new(base: usize) -> Self {
        Self {
            // SAFETY: the caller passes a non-zero MMIO address.
            base: unsafe { NonNull::new_unchecked(base as *mut u32) },
        }
    }

    fn reg(&self, offset: usize) -> *mut u32 {
        self.base.as_ptr().wrapping_byte_add(offset)
    }

    /// Enables the transmitter (QEMU complains about data written to a disabled UART).
    pub fn enable(&mut self) {
        // SAFETY: UARTCR is a register of the PL011 this value owns (contract of `new`).
        unsafe { self.reg(UARTCR).write_volatile(CR_ENABLE) };
    }

    fn put(&mut self, byte: u8) {
        // SAFETY: UARTFR and UARTDR are registers of the PL011 this value owns.
        unsafe {
            while self.reg(UARTFR).read_volatile() & FR_TXFF != 0 {
                core::hint::spin_loop();
            }
            self.reg(UARTDR).write_volatile(u32::from(byte));
        }
    }
}

impl fmt::Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

// SAFETY: 0x0900_0000 is UART0 on QEMU `virt`, identity-mapped as device memory by boot.rs; this
// is the only instance outside the panic path.
pub static UART: spin::Mutex<Pl011> = spin::Mutex::new(unsafe { Pl011::new(PL011_BASE) });

/// Writes formatted text and a newline to the UART, under one lock.
pub fn write_line(args: fmt::Arguments<'_>) {
    let mut uart = UART.lock();
    let _ = fmt::Write::write_fmt(&mut *uart, args);
    let _ = fmt::Write::write_str(&mut *uart, "\n");
}

/// Writes to the UART from the panic handler, which must not wait for a lock the panicking code
/// may hold.
pub fn write_fmt_panicking(args: fmt::Arguments<'_>) {
    // SAFETY: the panic path never returns, so this second writer only interleaves characters
    // with an interrupted one; the registers are not otherwise reconfigured.
    let mut uart = unsafe { Pl011::new(PL011_BASE) };
    uart.enable();
    let _ = fmt::Write::write_fmt(&mut uart, args);
}

/// `println!` to the UART.
#[macro_export]
macro_rules! uprintln {
    ($($arg:tt)*) => {
        $crate::uart::write_line(format_args!($($arg)*))
    };
}

/// Reports one line both ways: as text on the UART and as a defmt `info!` frame. The format string
/// must be valid for both (`{}`, `{:x}`, `{:#x}`, `{:?}` are).
#[macro_export]
macro_rules! say {
    ($fmt:literal $(, $arg:expr)* $(,)?) => {{
        $crate::uprintln!($fmt $(, $arg)*);
        defmt::info!($fmt $(, $arg)*);
    }};
}
