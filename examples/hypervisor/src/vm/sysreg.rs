//! `mrs`/`msr` by name for the EL2 and GIC registers aarch64-cpu 11 does not name (HCRX_EL2,
//! ZCR_EL2, SMCR_EL2, ICH_ELRSR_EL2, ICC_DIR_EL1, ...), written in their generic `S<op0>_<op1>_
//! C<n>_C<m>_<op2>` form where the assembler lacks the name.

/// Reads a system register.
macro_rules! mrs {
    ($name:literal) => {{
        let value: u64;
        // SAFETY: reading a system register touches no memory.
        unsafe {
            core::arch::asm!(concat!("mrs {}, ", $name), out(reg) value, options(nomem, nostack, preserves_flags));
        }
        value
    }};
}

/// Writes a system register. Only used for registers that configure the guest's EL1/EL0 and the
/// GIC's virtual interface, which cannot affect the hypervisor's own memory.
macro_rules! msr {
    ($name:literal, $value:expr) => {{
        let value: u64 = $value;
        // SAFETY: see the macro's contract: the registers written through it configure the guest
        // or the GIC CPU interface, never the hypervisor's translation or stack.
        unsafe {
            core::arch::asm!(concat!("msr ", $name, ", {}"), in(reg) value, options(nostack, preserves_flags));
        }
    }};
}

pub(crate) use {mrs, msr};
