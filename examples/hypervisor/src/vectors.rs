//! Exception handlers for aarch64-rt's EL2 vector table.
//!
//! aarch64-rt saves only x0-x18, x29, x30, ELR and SPSR before calling a handler. Rust code uses
//! the NEON registers freely (memcpy, core::fmt, zeroing locals), so the handler that returns to
//! the interrupted code, `irq_current`, is a naked trampoline that also saves q0-q31, FPSR and
//! FPCR around the Rust body. The others never return.

use core::arch::naked_asm;

use aarch64_cpu::registers::{ESR_EL2, FAR_EL2, Readable};
use aarch64_rt::{ExceptionHandlers, RegisterStateRef};

use crate::exit;

/// Exit code of a run that took an unexpected exception.
pub const EXIT_EXCEPTION: i32 = 3;

/// The demo's exception handlers.
pub struct Handlers;

aarch64_rt::exception_handlers!(Handlers);

impl ExceptionHandlers for Handlers {
    /// Saves the FP/SIMD state (544-byte frame: x29/x30, q0-q31, FPSR, FPCR), calls
    /// [`irq_body`], restores and returns to aarch64-rt's vector code.
    #[unsafe(naked)]
    extern "C" fn irq_current(_register_state: RegisterStateRef) {
        naked_asm!(
            "sub sp, sp, #544",
            "stp x29, x30, [sp, #0]",
            "stp q0, q1, [sp, #16]",
            "stp q2, q3, [sp, #48]",
            "stp q4, q5, [sp, #80]",
            "stp q6, q7, [sp, #112]",
            "stp q8, q9, [sp, #144]",
            "stp q10, q11, [sp, #176]",
            "stp q12, q13, [sp, #208]",
            "stp q14, q15, [sp, #240]",
            "stp q16, q17, [sp, #272]",
            "stp q18, q19, [sp, #304]",
            "stp q20, q21, [sp, #336]",
            "stp q22, q23, [sp, #368]",
            "stp q24, q25, [sp, #400]",
            "stp q26, q27, [sp, #432]",
            "stp q28, q29, [sp, #464]",
            "stp q30, q31, [sp, #496]",
            "mrs x9, fpsr",
            "mrs x10, fpcr",
            "str x9, [sp, #528]",
            "str x10, [sp, #536]",
            "bl {body}",
            "ldr x9, [sp, #528]",
            "ldr x10, [sp, #536]",
            "msr fpsr, x9",
            "msr fpcr, x10",
            "ldp q0, q1, [sp, #16]",
            "ldp q2, q3, [sp, #48]",
            "ldp q4, q5, [sp, #80]",
            "ldp q6, q7, [sp, #112]",
            "ldp q8, q9, [sp, #144]",
            "ldp q10, q11, [sp, #176]",
            "ldp q12, q13, [sp, #208]",
            "ldp q14, q15, [sp, #240]",
            "ldp q16, q17, [sp, #272]",
            "ldp q18, q19, [sp, #304]",
            "ldp q20, q21, [sp, #336]",
            "ldp q22, q23, [sp, #368]",
            "ldp q24, q25, [sp, #400]",
            "ldp q26, q27, [sp, #432]",
            "ldp q28, q29, [sp, #464]",
            "ldp q30, q31, [sp, #496]",
            "ldp x29, x30, [sp, #0]",
            "add sp, sp, #544",
            "ret",
            body = sym irq_body,
        )
    }

    extern "C" fn sync_current(register_state: RegisterStateRef) {
        fatal("synchronous exception", &register_state)
    }

    extern "C" fn fiq_current(register_state: RegisterStateRef) {
        fatal("FIQ", &register_state)
    }

    extern "C" fn serror_current(register_state: RegisterStateRef) {
        fatal("SError", &register_state)
    }
}

extern "C" fn irq_body() {
    crate::gic::handle_irq();
}

fn fatal(what: &str, state: &RegisterStateRef) -> ! {
    let esr = ESR_EL2.get();
    let far = FAR_EL2.get();
    let elr = state.elr as u64;
    crate::uart::write_fmt_panicking(format_args!(
        "FATAL: {what} at EL2: ESR_EL2={esr:#x} FAR_EL2={far:#x} ELR_EL2={elr:#x}\n"
    ));
    defmt::error!(
        "{=str} at EL2: ESR_EL2={=u64:#x} FAR_EL2={=u64:#x} ELR_EL2={=u64:#x}",
        what,
        esr,
        far,
        elr
    );
    exit(EXIT_EXCEPTION)
}
