//! The demo's scenarios: each one prints what happened and returns an [`Outcome`].
//!
//! The first four check the platform with no driver in charge of the SMMU; the numbered ones
//! (smmu.rs) drive QEMU's SMMUv3 through the library's driver.

pub mod smmu;
pub mod stage1;
pub mod viommu;

use arm_smmuv3::features::{Features, IdRegs};
use arm_smmuv3::regs::{self, Page0};
use arm_smmuv3::{BumpDma, DmaBuf, DmaMemory, Iova, Ipa, PhysAddr, Platform};
use tock_registers::interfaces::Readable;

use crate::edu::{self, Edu};
use crate::gic;
use crate::platform::QemuPlatform;
use crate::say;
use crate::stage2::{S2Access, Stage2Tables};

/// What a scenario found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Everything it checked held.
    Pass,
    /// Something it checked did not hold (details already printed).
    Fail,
}

impl Outcome {
    /// The word printed in RESULT lines.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
        }
    }
}

/// What every scenario gets.
pub struct Ctx {
    /// Clock and waits, as handed to the library.
    pub platform: QemuPlatform,
    /// Lent DMA memory (tables, queues, VM memory, buffers).
    pub dma: &'static BumpDma,
    /// The edu device, DMA master at StreamID [`Edu::stream_id`].
    pub edu: Edu,
}

impl Ctx {
    /// A zeroed DMA buffer of `size` bytes (page aligned), or `None` when the region is exhausted.
    pub fn buffer(&self, size: usize) -> Option<DmaBuf> {
        self.dma.alloc(size, 4096)
    }
}

/// One named scenario.
pub struct Scenario {
    /// Short stable name (the host test matches on it).
    pub name: &'static str,
    /// One line saying what it shows.
    pub what: &'static str,
    /// The body.
    pub run: fn(&mut Ctx) -> Outcome,
}

/// Every scenario, in the order they run.
pub const SCENARIOS: &[Scenario] = &[
    Scenario {
        name: "irq-fpsimd",
        what: "edu INTx taken at EL2 through the GICv3; v0-v31 and FPCR survive the IRQ",
        run: irq_fpsimd,
    },
    Scenario {
        name: "stage2-tables",
        what: "aarch64-paging Stage2 tables for the VM: a 16 KiB IPA window walks to VM memory",
        run: stage2_tables,
    },
    Scenario {
        name: "smmu-id",
        what: "SMMU identification through regs::Page0, decoded by features::Features",
        run: smmu_id,
    },
    Scenario {
        name: "edu-dma-smmu-reset",
        what: "edu DMA with the SMMU in its reset state (SMMUEN=0, GBPA bypass): data verified",
        run: edu_dma_smmu_reset,
    },
    Scenario {
        name: "1-bypass-ste",
        what: "bypass STE: edu DMA reaches RAM, data verified",
        run: smmu::bypass,
    },
    Scenario {
        name: "2-stage2-fault-irq",
        what: "stage-2 STE (VMID 5): DMA in the window succeeds, outside raises F_TRANSLATION S2=1 via INTID 106",
        run: smmu::stage2_fault_irq,
    },
    Scenario {
        name: "3-nested",
        what: "nested: guest stage-1 CD and tables in VM memory over stage 2; stage-1 and stage-2 faults",
        run: smmu::nested,
    },
    Scenario {
        name: "5-cmdq-error",
        what: "illegal command: typed error, GERROR via INTID 109, queue recovers, later commands complete",
        run: smmu::cmdq_error,
    },
    Scenario {
        name: "6-event-storm",
        what: "faulting DMAs overflow an 8-entry event queue (EVENTQ_ABT_ERR): recovery and loss count",
        run: smmu::event_storm,
    },
    Scenario {
        name: "7-drain-burst",
        what: "16 event records drained by one drain with 3 SMMU register accesses",
        run: smmu::drain_burst,
    },
    // Runs after every linear-table scenario: once STRTAB_BASE_CFG.FMT = 2-level has been written,
    // QEMU (10.0) walks every later stream table as 2-level until the machine resets.
    Scenario {
        name: "4-bad-ste-2level",
        what: "2-level stream table: unbound SID (C_BAD_STREAMID), bound SID, V=0 STE (C_BAD_STE), abort",
        run: smmu::bad_ste_2level,
    },
    Scenario {
        name: "8-viommu",
        what: "edu behind a vIOMMU (virtual StreamID 0x42): stage-1 faults read from its vEVENTQ",
        run: viommu::viommu,
    },
];

/// Totals over a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Scenarios that passed.
    pub passed: u32,
    /// Scenarios that failed.
    pub failed: u32,
}

/// Runs every scenario, printing a header, its own lines and a RESULT line for each.
pub fn run_all(ctx: &mut Ctx) -> Summary {
    let mut summary = Summary::default();
    let total = SCENARIOS.len();
    for (i, s) in SCENARIOS.iter().enumerate() {
        crate::uprintln!("[{}/{}] {}: {}", i + 1, total, s.name, s.what);
        let outcome = (s.run)(ctx);
        match outcome {
            Outcome::Pass => summary.passed += 1,
            Outcome::Fail => summary.failed += 1,
        }
        say!("RESULT {} {}", s.name, outcome.label());
    }
    summary
}

/// Prints `what` and returns whether `ok`, in the style of every check line.
pub fn check(ok: bool, what: &str) -> bool {
    if ok {
        crate::uprintln!("    ok: {}", what);
    } else {
        crate::uprintln!("    MISMATCH: {}", what);
        defmt::error!("    MISMATCH: {=str}", what);
    }
    ok
}

/// [`Outcome::Pass`] when every check held.
pub fn outcome(all_ok: bool) -> Outcome {
    if all_ok { Outcome::Pass } else { Outcome::Fail }
}

unsafe extern "C" {
    /// scenarios/fp_probe.s.
    fn fp_irq_probe(trigger: *mut u32, value: u32, counter: *const u32, before: u32) -> u64;
}

/// edu's "raise interrupt" register is the trigger; the hook acknowledges at the device.
fn irq_fpsimd(ctx: &mut Ctx) -> Outcome {
    gic::set_hook(Some(edu::ack_irq_hook));
    let before = gic::counts();
    // SAFETY: the trigger is edu's IRQ-raise register inside its BAR0 (a 32-bit register), the
    // counter is a live static; the routine follows the AAPCS64 (it restores d8-d15 and FPCR).
    let mask = unsafe {
        fp_irq_probe(
            ctx.edu.irq_raise_register(),
            1,
            gic::edu_count_ptr(),
            before.edu,
        )
    };
    gic::set_hook(None);
    let after = gic::counts();
    say!(
        "    edu INTx (INTID 36) taken {} time(s); clobber mask {:#x} (bit n = vn, 32 = FPCR, 63 = no IRQ)",
        after.edu - before.edu,
        mask
    );
    let mut ok = check(mask & (1 << 63) == 0, "the IRQ arrived at EL2");
    ok &= check(after.edu == before.edu + 1, "exactly one edu IRQ was taken");
    ok &= check(mask & 0xffff_ffff == 0, "v0-v31 unchanged across the IRQ");
    ok &= check(mask & (1 << 32) == 0, "FPCR unchanged across the IRQ");
    ok &= check(after.other == before.other, "no unexpected INTID");
    outcome(ok)
}

fn stage2_tables(ctx: &mut Ctx) -> Outcome {
    const WINDOW: usize = 16 * 1024;
    let ipa = Ipa(0x1_0000_0000);
    let Some(vm_ram) = ctx.buffer(WINDOW) else {
        return Outcome::Fail;
    };
    let mut s2 = Stage2Tables::new(ctx.dma);
    if let Err(e) = s2.map(ipa, vm_ram.paddr, WINDOW, S2Access::ReadWrite) {
        crate::uprintln!("    map failed: {:?}", e);
        return Outcome::Fail;
    }
    say!(
        "    IPA {:#x}..{:#x} -> PA {:#x}, S2TTB {:#x}, {} table pages, T0SZ {} SL0 {}",
        ipa.0,
        ipa.0 + WINDOW as u64,
        vm_ram.paddr.0,
        s2.s2ttb().0,
        s2.table_pages() as u32,
        Stage2Tables::T0SZ,
        Stage2Tables::SL0
    );
    let mut ok = check(
        s2.table_pages() == 3,
        "3 table pages (levels 1, 2, 3) for a 4 KiB-page window",
    );
    ok &= check(
        s2.translate(ipa) == Some(vm_ram.paddr),
        "first page translates to VM memory",
    );
    ok &= check(
        s2.translate(Ipa(ipa.0 + WINDOW as u64 - 4))
            == Some(PhysAddr(vm_ram.paddr.0 + WINDOW as u64 - 4)),
        "last word of the window translates",
    );
    ok &= check(
        s2.translate(Ipa(ipa.0 + WINDOW as u64)).is_none(),
        "the page after the window is unmapped",
    );
    ok &= check(
        s2.map(
            Ipa(1 << Stage2Tables::IPA_BITS),
            vm_ram.paddr,
            4096,
            S2Access::ReadWrite,
        )
        .is_err(),
        "an IPA beyond 39 bits is refused",
    );
    ok &= check(
        s2.unmap(ipa, 4096).is_ok() && s2.translate(ipa).is_none(),
        "unmap removes the first page",
    );
    let ro = Ipa(ipa.0 + 0x20_0000);
    ok &= check(
        s2.map(ro, vm_ram.paddr, 4096, S2Access::ReadOnly).is_ok()
            && s2.lookup(ro) == Some((vm_ram.paddr, S2Access::ReadOnly)),
        "a read-only page walks as read-only (S2AP = 0b01)",
    );
    outcome(ok)
}

/// The SMMU's register page 0, read-only use before any driver owns the SMMU.
fn smmu_page0() -> &'static Page0 {
    let base = crate::discover::smmu().map_or(0, |d| d.page0().0 as usize);
    assert!(base != 0, "no SMMU discovered");
    // SAFETY: `base` is page 0 of the SMMUv3 the device tree describes (QEMU `virt`'s, in the
    // first GiB, identity-mapped as device memory by boot.rs). The scenarios using this only read identification and reset-state registers, which
    // has no side effect, and no `Smmu` exists while they run.
    unsafe { &*(base as *const Page0) }
}

fn smmu_id(_ctx: &mut Ctx) -> Outcome {
    let p0 = smmu_page0();
    let raw = IdRegs {
        idr0: p0.IDR0.get(),
        idr1: p0.IDR1.get(),
        idr2: p0.IDR2.get(),
        idr3: p0.IDR3.get(),
        idr4: p0.IDR4.get(),
        idr5: p0.IDR5.get(),
        iidr: p0.IIDR.get(),
        aidr: p0.AIDR.get(),
    };
    let f = Features::decode(raw);
    say!(
        "    IDR0 {:#010x} IDR1 {:#010x} IDR3 {:#010x} IDR5 {:#010x} AIDR {:#x}",
        raw.idr0,
        raw.idr1,
        raw.idr3,
        raw.idr5,
        raw.aidr
    );
    say!(
        "    stage1 {} stage2 {} coherent {} msi {} pri {} sid_bits {} cmdq_log2 {} evtq_log2 {} oas {} bits",
        f.stage1,
        f.stage2,
        f.coherent,
        f.msi,
        f.pri,
        f.sid_bits,
        f.cmdq_log2,
        f.evtq_log2,
        f.oas.bits()
    );
    let mut ok = check(
        raw == Features::QEMU_VIRT_IDREGS,
        "ID registers are QEMU virt's (nested-capable SMMUv3.1)",
    );
    ok &= check(
        f.check().is_ok(),
        "the driver's feature check accepts this SMMU",
    );
    ok &= check(f.stage1 && f.stage2, "both stages: nested is possible");
    ok &= check(f.sid_bits >= 8, "StreamIDs reach edu's RID");
    outcome(ok)
}

/// Fills `buf` with a pattern derived from `seed`.
pub fn fill_pattern(buf: &DmaBuf, seed: u8) {
    for i in 0..buf.size {
        // SAFETY: `i < size`, inside the lent buffer; no DMA is running on it.
        unsafe {
            buf.vaddr
                .add(i)
                .write_volatile(seed.wrapping_add((i as u8).wrapping_mul(31)))
        };
    }
}

/// Whether the first `len` bytes of `a` and `b` are equal.
pub fn bytes_equal(a: &DmaBuf, b: &DmaBuf, len: usize) -> bool {
    // SAFETY: both buffers hold at least `len` bytes (checked by the callers' sizes) and no DMA is
    // running on them.
    (0..len).all(|i| unsafe { a.vaddr.add(i).read_volatile() == b.vaddr.add(i).read_volatile() })
}

fn edu_dma_smmu_reset(ctx: &mut Ctx) -> Outcome {
    let p0 = smmu_page0();
    let (cr0, gbpa) = (p0.CR0.get(), p0.GBPA.get());
    say!(
        "    SMMU CR0 {:#x} GBPA {:#x} (no driver in charge)",
        cr0,
        gbpa
    );
    let mut ok = check(!p0.CR0.is_set(regs::CR0::SMMUEN), "SMMUEN = 0");
    ok &= check(
        !p0.GBPA.is_set(regs::GBPA::ABORT),
        "GBPA.ABORT = 0: incoming traffic bypasses",
    );

    let (Some(src), Some(dst)) = (ctx.buffer(4096), ctx.buffer(4096)) else {
        return Outcome::Fail;
    };
    fill_pattern(&src, 0x5a);
    let p = &ctx.platform;
    let edu = &ctx.edu;
    let t0 = p.now_us();
    // A full-buffer round trip, then a 4-byte one at an unaligned-in-page offset.
    let r1 = edu.read_from_memory(p, Iova(src.paddr.0), 0, 4096);
    let r2 = edu.write_to_memory(p, 0, Iova(dst.paddr.0), 4096);
    let full = r1.is_ok() && r2.is_ok() && bytes_equal(&src, &dst, 4096);
    let small_src = Iova(src.paddr.0 + 0x100);
    let small_dst = Iova(dst.paddr.0 + 0x800);
    // SAFETY: offsets 0x800..0x804 are inside `dst`; no DMA is running.
    unsafe { dst.vaddr.add(0x800).cast::<u32>().write_volatile(0) };
    let r3 = edu.read_from_memory(p, small_src, 0xffc, 4);
    let r4 = edu.write_to_memory(p, 0xffc, small_dst, 4);
    // SAFETY: both offsets are inside their 4 KiB buffers and 4-byte aligned.
    let (want, got) = unsafe {
        (
            src.vaddr.add(0x100).cast::<u32>().read_volatile(),
            dst.vaddr.add(0x800).cast::<u32>().read_volatile(),
        )
    };
    let elapsed_ms = p.now_us().wrapping_sub(t0) / 1000;
    say!(
        "    sid {:#x}: 4 KiB RAM {:#x} -> edu -> RAM {:#x}; 4 B {:#x} -> edu[0xffc] -> {:#x}: {:#x} (want {:#x}); 4 DMAs in {} ms",
        edu.stream_id().0,
        src.paddr.0,
        dst.paddr.0,
        small_src.0,
        small_dst.0,
        got,
        want,
        elapsed_ms
    );
    if let Some(e) = [r1, r2, r3, r4].into_iter().find_map(Result::err) {
        say!("    edu error: {:?}", e);
        ok = false;
    }
    ok &= check(full, "4 KiB round trip arrived intact");
    ok &= check(got == want, "4-byte round trip arrived intact");
    ok &= check(
        edu.out_of_buffer_refused(),
        "a transfer past the 4 KiB device buffer is refused",
    );
    outcome(ok)
}
