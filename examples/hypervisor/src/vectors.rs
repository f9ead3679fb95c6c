//! Exception handlers for aarch64-rt's EL2 vector table.
//!
//! aarch64-rt saves only x0-x18, x29, x30, ELR and SPSR before calling a handler. Rust code uses
//! the NEON registers freely (memcpy, core::fmt, zeroing locals), so the handler that returns to
//! the interrupted code, `irq_current`, is a naked trampoline that also saves q0-q31, FPSR and
//! FPCR around the Rust body. The exits from a guest at EL1 (`sync_lower`, `irq_lower`) save
//! x19-x28 too, so that the trap handlers in [`crate::vm`] see and may change every general
//! register of the guest. The others never return.

use core::arch::naked_asm;

use aarch64_cpu::registers::{ESR_EL2, FAR_EL2, Readable};
use aarch64_rt::{ExceptionHandlers, RegisterStateRef};

use crate::exit;

/// Exit code of a run that took an unexpected exception.
pub const EXIT_EXCEPTION: i32 = 3;

/// The demo's exception handlers.
pub struct Handlers;

aarch64_rt::exception_handlers!(Handlers);

/// Saves what aarch64-rt's vector code leaves to the handler on a guest exit (x19-x28, q0-q31,
/// FPSR, FPCR: 624 bytes) and sets x1 to the saved x19 (x0 still points at aarch64-rt's frame).
macro_rules! guest_exit_save {
    () => {
        concat!(
            "sub sp, sp, #624\n",
            "stp x29, x30, [sp, #0]\n",
            "stp x19, x20, [sp, #32]\n",
            "stp x21, x22, [sp, #48]\n",
            "stp x23, x24, [sp, #64]\n",
            "stp x25, x26, [sp, #80]\n",
            "stp x27, x28, [sp, #96]\n",
            "stp q0, q1, [sp, #112]\n",
            "stp q2, q3, [sp, #144]\n",
            "stp q4, q5, [sp, #176]\n",
            "stp q6, q7, [sp, #208]\n",
            "stp q8, q9, [sp, #240]\n",
            "stp q10, q11, [sp, #272]\n",
            "stp q12, q13, [sp, #304]\n",
            "stp q14, q15, [sp, #336]\n",
            "stp q16, q17, [sp, #368]\n",
            "stp q18, q19, [sp, #400]\n",
            "stp q20, q21, [sp, #432]\n",
            "stp q22, q23, [sp, #464]\n",
            "stp q24, q25, [sp, #496]\n",
            "stp q26, q27, [sp, #528]\n",
            "stp q28, q29, [sp, #560]\n",
            "stp q30, q31, [sp, #592]\n",
            "mrs x9, fpsr\n",
            "mrs x10, fpcr\n",
            "stp x9, x10, [sp, #16]\n",
            "add x1, sp, #32\n",
        )
    };
}

/// Undoes [`guest_exit_save`] (x19-x28 as the handler left them) and returns to aarch64-rt's
/// vector code, which restores the rest and returns to the guest.
macro_rules! guest_exit_restore {
    () => {
        concat!(
            "ldp x9, x10, [sp, #16]\n",
            "msr fpsr, x9\n",
            "msr fpcr, x10\n",
            "ldp q0, q1, [sp, #112]\n",
            "ldp q2, q3, [sp, #144]\n",
            "ldp q4, q5, [sp, #176]\n",
            "ldp q6, q7, [sp, #208]\n",
            "ldp q8, q9, [sp, #240]\n",
            "ldp q10, q11, [sp, #272]\n",
            "ldp q12, q13, [sp, #304]\n",
            "ldp q14, q15, [sp, #336]\n",
            "ldp q16, q17, [sp, #368]\n",
            "ldp q18, q19, [sp, #400]\n",
            "ldp q20, q21, [sp, #432]\n",
            "ldp q22, q23, [sp, #464]\n",
            "ldp q24, q25, [sp, #496]\n",
            "ldp q26, q27, [sp, #528]\n",
            "ldp q28, q29, [sp, #560]\n",
            "ldp q30, q31, [sp, #592]\n",
            "ldp x19, x20, [sp, #32]\n",
            "ldp x21, x22, [sp, #48]\n",
            "ldp x23, x24, [sp, #64]\n",
            "ldp x25, x26, [sp, #80]\n",
            "ldp x27, x28, [sp, #96]\n",
            "ldp x29, x30, [sp, #0]\n",
            "add sp, sp, #624\n",
            "ret\n",
        )
    };
}

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

    /// A synchronous exit from the guest (data abort, SMC, trapped system register).
    #[unsafe(naked)]
    extern "C" fn sync_lower(_register_state: RegisterStateRef) {
        naked_asm!(
            guest_exit_save!(),
            "bl {body}",
            guest_exit_restore!(),
            body = sym crate::vm::trap::sync_exit,
        )
    }

    /// A physical interrupt taken while the guest ran.
    #[unsafe(naked)]
    extern "C" fn irq_lower(_register_state: RegisterStateRef) {
        naked_asm!(
            guest_exit_save!(),
            "bl {body}",
            guest_exit_restore!(),
            body = sym crate::vm::trap::irq_exit,
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

/// An exit from the guest the hypervisor cannot handle: says what it was and ends the run.
pub fn guest_fatal(ec: u64, esr: u64, pc: u64) -> ! {
    let far = FAR_EL2.get();
    defmt::error!(
        "VM: unhandled guest exit: EC {=u64:#x} ESR_EL2={=u64:#x} FAR_EL2={=u64:#x} guest PC {=u64:#x}",
        ec,
        esr,
        far,
        pc
    );
    crate::vm::stats::print();
    exit(EXIT_EXCEPTION)
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
