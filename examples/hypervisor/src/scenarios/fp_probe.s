/*
 * fp_irq_probe(trigger: *mut u32, value: u32, counter: *const u32, before: u32) -> u64
 *
 * Loads a distinct pattern into each of v0-v31 and a non-default rounding mode into FPCR, writes
 * `value` to `trigger` (an MMIO register that raises an interrupt), spins until the 32-bit
 * `counter` differs from `before` (the IRQ handler ran) or a bound expires, then checks every
 * register. Returns a bit mask: bit n = vn was changed, bit 32 = FPCR was changed, bit 63 = the
 * interrupt never came. d8-d15 (callee-saved) and FPCR are restored before returning.
 */
	.section .text.fp_irq_probe, "ax"
	.global fp_irq_probe
	.type fp_irq_probe, %function
fp_irq_probe:
	stp d8, d9, [sp, #-64]!
	stp d10, d11, [sp, #16]
	stp d12, d13, [sp, #32]
	stp d14, d15, [sp, #48]

	mrs x15, fpcr
	orr x14, x15, #(3 << 22)
	msr fpcr, x14

	.irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	movi v\i\().16b, #(\i + 1)
	.endr

	str w1, [x0]
	movz x4, #0x100, lsl #16
1:	ldar w5, [x2]
	cmp w5, w3
	b.ne 2f
	subs x4, x4, #1
	b.ne 1b
	mov x0, #(1 << 63)
	b 3f
2:	mov x0, #0
3:	mov x12, #0x0101010101010101
	.irp i, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	mov x11, #(\i + 1)
	mul x11, x11, x12
	umov x9, v\i\().d[0]
	umov x10, v\i\().d[1]
	cmp x9, x11
	ccmp x10, x11, #0, eq
	cset x13, ne
	orr x0, x0, x13, lsl #\i
	.endr

	mrs x13, fpcr
	cmp x13, x14
	cset x13, ne
	orr x0, x0, x13, lsl #32
	msr fpcr, x15

	ldp d14, d15, [sp, #48]
	ldp d12, d13, [sp, #32]
	ldp d10, d11, [sp, #16]
	ldp d8, d9, [sp], #64
	ret
	.size fp_irq_probe, . - fp_irq_probe
