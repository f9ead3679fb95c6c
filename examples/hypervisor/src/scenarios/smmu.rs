//! The scenarios that drive QEMU's SMMUv3 through the library's driver (`arm_smmuv3::smmu::Smmu`),
//! public API only. Each takes the SMMU over with a fresh driver instance, makes edu DMA through
//! it, and checks what reached memory and which event records the interrupt handler drained.

use arm_smmuv3::cd::{Cd, CdConfig};
use arm_smmuv3::command::Command;
use arm_smmuv3::event::{EventId, EventRecord};
use arm_smmuv3::smmu::{Config, StrtabFormat};
use arm_smmuv3::ste::{
    Granule, S1Fmt, S1StreamConfig, S2Config, Ste, SteConfig, StreamTableLayout,
};
use arm_smmuv3::{Asid, CmdqError, DmaBuf, Error, Iova, Ipa, PhysAddr, StreamId, Vmid};

use crate::edu::Direction;
use crate::gic::{self, IrqCounts};
use crate::say;
use crate::scenarios::stage1::{GuestMemory, GuestStage1};
use crate::scenarios::{Ctx, Outcome, bytes_equal, check, fill_pattern, outcome};
use crate::smmu::{self, DemoSmmu, Seen};
use crate::stage2::{S2Access, Stage2Tables};

/// Where the "VM" sees its memory (IPA), in every scenario with a stage 2.
pub(crate) const VM_IPA: u64 = 0x1_0000_0000;

/// A linear stream table for the 256 StreamIDs of PCIe bus 0 (edu is 00:01.0 = StreamID 0x8),
/// everything else as `Config::default()`.
const LINEAR: Config = Config {
    sid_bits: Some(8),
    strtab: StrtabFormat::Linear,
    ..Config::DEFAULT
};

/// Takes the SMMU over and says how.
pub(crate) fn take(what: &str, config: Config) -> Option<&'static DemoSmmu> {
    match smmu::take_over(config) {
        Ok(s) => {
            let plan = s.plan();
            let (log2, split) = match plan.layout {
                StreamTableLayout::Linear { log2 } => (log2, 0),
                StreamTableLayout::TwoLevel { log2, split } => (log2, split),
            };
            say!(
                "    Smmu::new + reset ({}): {} SID bits, {}, cmdq 2^{}, evtq 2^{}, CMD_SYNC completion {:?}",
                what,
                log2,
                if split == 0 {
                    "linear stream table"
                } else {
                    "2-level stream table (SPLIT 8)"
                },
                plan.cmdq_log2,
                plan.evtq_log2,
                s.completion()
            );
            Some(s)
        }
        Err(e) => {
            say!("    taking the SMMU over failed: {:?}", e);
            None
        }
    }
}

/// The STE's Config, for people.
fn config_name(ste: &Ste) -> &'static str {
    if !ste.valid() {
        return "V=0";
    }
    match ste.config() {
        Ok(SteConfig::Abort) => "abort",
        Ok(SteConfig::Bypass) => "bypass",
        Ok(SteConfig::Stage1(_)) => "stage 1",
        Ok(SteConfig::Stage2(_)) => "stage 2",
        Ok(SteConfig::Nested { .. }) => "nested",
        Err(_) => "illegal",
    }
}

pub(crate) fn print_ste(sid: StreamId, ste: &Ste) {
    say!(
        "    STE[{:#x}] = {:#018x} {:#018x} {:#018x} {:#018x} ... ({})",
        sid.0,
        ste.0[0],
        ste.0[1],
        ste.0[2],
        ste.0[3],
        config_name(ste)
    );
}

pub(crate) fn install(smmu: &DemoSmmu, sid: StreamId, ste: &Ste) -> bool {
    print_ste(sid, ste);
    match smmu.set_ste(sid, ste) {
        Ok(()) => smmu.ste(sid).is_ok_and(|s| s == *ste),
        Err(e) => {
            say!("    set_ste failed: {:?}", e);
            false
        }
    }
}

/// One edu transfer, waited for. `false` (and a line) if edu refused or timed out.
pub(crate) fn dma(ctx: &Ctx, dir: Direction, iova: u64, offset: usize, len: usize) -> bool {
    let r = ctx.edu.dma(&ctx.platform, dir, Iova(iova), offset, len);
    let (what, arrow) = match dir {
        Direction::ToDevice => ("read", "->"),
        Direction::FromDevice => ("write", "<-"),
    };
    say!(
        "    DMA {} {} B: iova {:#x} {} edu[{:#x}]: {:?}",
        what,
        len,
        iova,
        arrow,
        offset,
        r
    );
    r.is_ok()
}

/// A DMA the SMMU must fault with `records` records: waits for the event IRQ that announces them
/// and for the handler to have drained them, then prints and returns what it logged.
pub(crate) fn faulting_dma(
    ctx: &Ctx,
    dir: Direction,
    iova: u64,
    len: usize,
    records: usize,
    extra_wait: impl Fn(IrqCounts) -> bool,
) -> Seen {
    let before = gic::counts();
    let mut ok = dma(ctx, dir, iova, 0, len);
    if records > 0 {
        ok &= smmu::wait_irqs(&ctx.platform, smmu::IRQ_EXPECTED_US, |c| {
            c.eventq > before.eventq && extra_wait(c)
        });
    } else {
        // Nothing may come: give a stray record the same time to show up.
        let _ = smmu::wait_irqs(&ctx.platform, smmu::IRQ_UNEXPECTED_US, |c| {
            c.eventq > before.eventq
        });
    }
    if !ok {
        say!("    no event-queue interrupt after the DMA");
    }
    smmu::collect()
}

/// What a record must say.
pub(crate) struct Want {
    pub id: EventId,
    pub sid: StreamId,
    pub addr: u64,
    /// Checked only when given (IPA is defined only for stage-2 faults).
    pub ipa: Option<u64>,
    pub s2: bool,
    pub class: u8,
    /// RnW; `None` for configuration errors, whose records define no RnW (QEMU leaves it 0).
    pub read: Option<bool>,
}

pub(crate) fn record_is(r: &EventRecord, w: &Want) -> bool {
    r.id == w.id
        && r.sid == w.sid
        && r.input_addr == w.addr
        && w.ipa.is_none_or(|ipa| r.ipa == ipa & !0xfff)
        && r.s2 == w.s2
        && r.class.raw() == w.class
        && w.read.is_none_or(|read| r.rnw == read)
}

pub(crate) fn check_one(seen: &Seen, w: &Want, what: &str) -> bool {
    let ok = seen.records.len() == 1 && seen.records.first().is_some_and(|r| record_is(r, w));
    check(ok, what)
}

/// A DMA of `sid`'s device to [`IOVA_NO_S2`], which the guest's stage 1 maps to an IPA with no
/// memory ([`IPA_NO_RAM`]): one stage-2 F_TRANSLATION record with the IOVA and that IPA, read,
/// CLASS = IN, checked as `what`.
pub(crate) fn stage2_output_fault(ctx: &Ctx, sid: StreamId, what: &str) -> bool {
    let seen = faulting_dma(ctx, Direction::ToDevice, IOVA_NO_S2, 4, 1, |_| true);
    check_one(
        &seen,
        &Want {
            id: EventId::F_TRANSLATION,
            sid,
            addr: IOVA_NO_S2,
            ipa: Some(IPA_NO_RAM),
            s2: true,
            class: 2,
            read: Some(true),
        },
        what,
    )
}

fn read_u32(buf: &DmaBuf, off: usize) -> u32 {
    assert!(off + 4 <= buf.size);
    // SAFETY: inside the buffer (asserted), 4-byte aligned by the callers, no DMA in flight.
    unsafe { buf.vaddr.add(off).cast::<u32>().read_volatile() }
}

fn write_u32(buf: &DmaBuf, off: usize, v: u32) {
    assert!(off + 4 <= buf.size);
    // SAFETY: as for `read_u32`.
    unsafe { buf.vaddr.add(off).cast::<u32>().write_volatile(v) }
}

/// A buffer that views `len` bytes of lent memory at `pa` (which the CPU reaches at the same
/// address).
fn view(pa: PhysAddr, len: usize) -> Option<DmaBuf> {
    Some(DmaBuf {
        vaddr: core::ptr::NonNull::new(pa.0 as *mut u8)?,
        paddr: pa,
        size: len,
    })
}

pub(crate) fn counters_are(
    smmu: &DemoSmmu,
    events: u64,
    overflows: u64,
    cmdq_err: u64,
    abt: u64,
) -> bool {
    smmu::print_counters(smmu);
    let c = smmu.counters();
    check(
        c.events == events
            && c.event_overflows == overflows
            && c.gerror.cmdq_err == cmdq_err
            && c.gerror.eventq_abt_err == abt,
        "driver counters: events, overflows, GERROR bits as expected",
    )
}

/// Every drain made at most 3 SMMU accesses, by the driver's count and its MMIO hook's.
pub(crate) fn drains_cheap(seen: &Seen) -> bool {
    seen.drains
        .iter()
        .all(|(st, hook)| st.mmio <= 3 && *hook == st.mmio)
}

// ---------------------------------------------------------------------------------------------

/// Scenario 1: a bypass STE: edu's DMA reaches RAM untranslated.
pub fn bypass(ctx: &mut Ctx) -> Outcome {
    let Some(smmu) = take("StreamIDs of PCIe bus 0", LINEAR) else {
        return Outcome::Fail;
    };
    let sid = ctx.edu.stream_id();
    let mut ok = install(smmu, sid, &Ste::bypass(false));
    ok &= check(
        smmu.ste(sid)
            .is_ok_and(|s| s.config() == Ok(SteConfig::Bypass)),
        "edu's STE reads back as bypass",
    );
    let (Some(src), Some(dst)) = (ctx.buffer(4096), ctx.buffer(4096)) else {
        return Outcome::Fail;
    };
    fill_pattern(&src, 0x11);
    let before = gic::counts();
    ok &= dma(ctx, Direction::ToDevice, src.paddr.0, 0, 4096);
    ok &= dma(ctx, Direction::FromDevice, dst.paddr.0, 0, 4096);
    let _ = smmu::wait_irqs(&ctx.platform, smmu::IRQ_UNEXPECTED_US, |c| {
        c.eventq > before.eventq
    });
    let seen = smmu::collect();
    ok &= check(
        bytes_equal(&src, &dst, 4096),
        "4 KiB RAM -> edu -> RAM through the bypass STE arrived intact",
    );
    ok &= check(
        seen.records.is_empty() && gic::counts().eventq == before.eventq,
        "no event record, no event-queue interrupt",
    );
    ok &= counters_are(smmu, 0, 0, 0, 0);
    outcome(ok)
}

/// Scenario 2: a stage-2 STE with a VMID over aarch64-paging tables: translation inside the
/// window, an F_TRANSLATION (S2 = 1) outside it, taken by the event-queue interrupt and drained
/// there.
pub fn stage2_fault_irq(ctx: &mut Ctx) -> Outcome {
    const WINDOW: usize = 16 * 1024;
    let Some(smmu) = take("StreamIDs of PCIe bus 0", LINEAR) else {
        return Outcome::Fail;
    };
    let sid = ctx.edu.stream_id();
    let Some(vm_ram) = ctx.buffer(WINDOW) else {
        return Outcome::Fail;
    };
    let mut s2 = Stage2Tables::new(ctx.dma);
    if s2
        .map(Ipa(VM_IPA), vm_ram.paddr, WINDOW, S2Access::ReadWrite)
        .is_err()
    {
        return Outcome::Fail;
    }
    let Ok(cfg) = S2Config::new(
        Vmid(5),
        s2.s2ttb(),
        Stage2Tables::IPA_BITS,
        Granule::Size4K,
        Stage2Tables::START_LEVEL,
    ) else {
        return Outcome::Fail;
    };
    say!(
        "    VM 5: IPA {:#x}..{:#x} -> PA {:#x}, S2TTB {:#x}, S2T0SZ {} S2SL0 {} S2PS {}",
        VM_IPA,
        VM_IPA + WINDOW as u64,
        vm_ram.paddr.0,
        cfg.ttb.0,
        cfg.t0sz,
        cfg.sl0,
        cfg.ps
    );
    let mut ok = install(smmu, sid, &Ste::stage2(&cfg));

    // Inside the window: IPA page 0 -> edu -> IPA page 1; compare at the PAs stage 2 gives.
    let (Some(pa0), Some(pa1)) = (
        s2.translate(Ipa(VM_IPA)),
        s2.translate(Ipa(VM_IPA + 0x1000)),
    ) else {
        return Outcome::Fail;
    };
    let (Some(page0), Some(page1)) = (view(pa0, 4096), view(pa1, 4096)) else {
        return Outcome::Fail;
    };
    fill_pattern(&page0, 0x22);
    let before = gic::counts();
    ok &= dma(ctx, Direction::ToDevice, VM_IPA, 0, 4096);
    ok &= dma(ctx, Direction::FromDevice, VM_IPA + 0x1000, 0, 4096);
    let _ = smmu::wait_irqs(&ctx.platform, smmu::IRQ_UNEXPECTED_US, |c| {
        c.eventq > before.eventq
    });
    let seen = smmu::collect();
    ok &= check(
        bytes_equal(&page0, &page1, 4096),
        "IPA 0x100000000 -> edu -> IPA 0x100001000: data at the translated PA intact",
    );
    ok &= check(seen.records.is_empty(), "no event inside the window");

    // Outside: the first IPA after the window, a 4-byte write (one record).
    let outside = VM_IPA + WINDOW as u64;
    let irq_before = gic::counts().eventq;
    let seen = faulting_dma(ctx, Direction::FromDevice, outside, 4, 1, |_| true);
    ok &= check_one(
        &seen,
        &Want {
            id: EventId::F_TRANSLATION,
            sid,
            addr: outside,
            ipa: Some(outside),
            s2: true,
            class: 2,
            read: Some(false),
        },
        "one F_TRANSLATION, sid 0x8, addr = IPA = window end, S2=1, CLASS=IN, write",
    );
    ok &= check(
        gic::counts().eventq == irq_before + 1 && seen.drains.len() == 1,
        "taken by one event-queue interrupt (INTID 106) and drained in its handler",
    );
    ok &= check(drains_cheap(&seen), "the drain made <= 3 SMMU accesses");
    ok &= counters_are(smmu, 1, 0, 0, 0);
    outcome(ok)
}

/// VM memory for the nested scenarios: 64 KiB at IPA [`VM_IPA`].
pub(crate) const VM_SIZE: usize = 64 * 1024;
// The guest's layout (offsets in VM memory = IPA - VM_IPA).
pub(crate) const CD_AT: u64 = 0x0;
pub(crate) const TABLES_AT: u64 = 0x1000;
pub(crate) const DATA_AT: u64 = 0x8000;
// Guest IOVAs.
pub(crate) const IOVA: u64 = 0x4000_0000;
pub(crate) const IOVA_NO_S1: u64 = IOVA + 0x20_0000;
pub(crate) const IOVA_NO_S2: u64 = IOVA + 0x10_0000;
pub(crate) const IOVA_BAD_TABLE: u64 = 0x8000_0000;
// IPAs the VM has no memory at (stage 2 does not map them).
pub(crate) const IPA_NO_RAM: u64 = VM_IPA + 0x10_0000;
pub(crate) const IPA_NO_TABLE: u64 = VM_IPA + 0x20_0000;

/// A VM as the nested scenarios build it: its memory, the host's stage 2 over it, and inside it
/// the guest's stage-1 tables (IOVA -> IPA) and CD.
pub struct GuestVm {
    /// The host's stage-2 configuration of the VM.
    pub s2cfg: S2Config,
    /// The guest's stage-1 tables.
    pub s1: GuestStage1,
}

impl GuestVm {
    /// Host: 64 KiB of VM memory mapped by stage 2 with VMID `vmid`. Guest: stage 1 maps IOVA
    /// [`IOVA`] (8 KiB) to its data pages and [`IOVA_NO_S2`] to an IPA where it has no memory; its
    /// CD (ASID 1) at IPA `VM_IPA + CD_AT`.
    pub(crate) fn build(ctx: &Ctx, vmid: u16) -> Option<Self> {
        let ram = ctx.buffer(VM_SIZE)?;
        let mut s2 = Stage2Tables::new(ctx.dma);
        s2.map(Ipa(VM_IPA), ram.paddr, VM_SIZE, S2Access::ReadWrite)
            .ok()?;
        let s2cfg = S2Config::new(
            Vmid(vmid),
            s2.s2ttb(),
            Stage2Tables::IPA_BITS,
            Granule::Size4K,
            Stage2Tables::START_LEVEL,
        )
        .ok()?;
        // The STE will point at the tables for the rest of the run.
        core::mem::forget(s2);
        let mem = GuestMemory::new(Ipa(VM_IPA), ram.paddr, VM_SIZE as u64, TABLES_AT);
        let mut s1 = GuestStage1::new(mem);
        s1.map(Iova(IOVA), Ipa(VM_IPA + DATA_AT), 0x2000).ok()?;
        s1.map(Iova(IOVA_NO_S2), Ipa(IPA_NO_RAM), 0x1000).ok()?;
        let cd = Cd::new(&CdConfig::new(
            Asid(1),
            PhysAddr(s1.ttb0().0),
            GuestStage1::T0SZ,
            Granule::Size4K,
            2,
            GuestStage1::MAIR,
        ));
        let cd_ptr = s1.memory().cpu_ptr(VM_IPA + CD_AT)?;
        for (i, q) in cd.0.iter().enumerate() {
            // SAFETY: the CD slot is 64 bytes at the start of VM memory (64 KiB, page aligned),
            // which nothing else uses; no DMA is in flight.
            unsafe { cd_ptr.cast::<u64>().add(i).write_volatile(*q) };
        }
        say!(
            "    host: VM {} IPA {:#x}..{:#x} -> PA {:#x}, S2TTB {:#x}",
            vmid,
            VM_IPA,
            VM_IPA + VM_SIZE as u64,
            ram.paddr.0,
            s2cfg.ttb.0
        );
        say!(
            "    guest: CD at IPA {:#x} (ASID 1, TTB0 IPA {:#x}, T0SZ {}); stage 1 maps IOVA {:#x} -> IPA {:#x} and IOVA {:#x} -> IPA {:#x} (no memory there)",
            VM_IPA + CD_AT,
            s1.ttb0().0,
            GuestStage1::T0SZ,
            IOVA,
            VM_IPA + DATA_AT,
            IOVA_NO_S2,
            IPA_NO_RAM
        );
        Some(Self { s2cfg, s1 })
    }

    /// The guest's STE for its device: stage 1, its CD table at an IPA.
    pub(crate) fn guest_ste() -> Ste {
        Ste::stage1(&S1StreamConfig::new(
            PhysAddr(VM_IPA + CD_AT),
            S1Fmt::Linear,
            0,
        ))
    }

    /// The guest's data pages (IOVA [`IOVA`] and the page after it), as the host sees them.
    fn data_pages(&self) -> Option<(DmaBuf, DmaBuf)> {
        let mem = self.s1.memory();
        let p0 = mem.pa_of(Ipa(VM_IPA + DATA_AT))?;
        let p1 = mem.pa_of(Ipa(VM_IPA + DATA_AT + 0x1000))?;
        Some((view(p0, 4096)?, view(p1, 4096)?))
    }

    /// IOVA page 0 -> edu -> IOVA page 1 through both stages, compared in VM memory.
    pub(crate) fn round_trip(&self, ctx: &Ctx, seed: u8) -> bool {
        let Some((page0, page1)) = self.data_pages() else {
            return false;
        };
        fill_pattern(&page0, seed);
        let before = gic::counts();
        let mut ok = dma(ctx, Direction::ToDevice, IOVA, 0, 4096);
        ok &= dma(ctx, Direction::FromDevice, IOVA + 0x1000, 0, 4096);
        let _ = smmu::wait_irqs(&ctx.platform, smmu::IRQ_UNEXPECTED_US, |c| {
            c.eventq > before.eventq
        });
        let seen = smmu::collect();
        ok &= check(
            bytes_equal(&page0, &page1, 4096),
            "IOVA -> IPA -> PA both ways: data intact in VM memory",
        );
        ok &= check(seen.records.is_empty(), "no event while both stages map");
        ok
    }
}

/// Scenario 3: nested: the guest's CD and stage-1 tables in VM memory, over the host's stage 2.
pub fn nested(ctx: &mut Ctx) -> Outcome {
    let Some(smmu) = take("StreamIDs of PCIe bus 0", LINEAR) else {
        return Outcome::Fail;
    };
    let sid = ctx.edu.stream_id();
    let Some(mut vm) = GuestVm::build(ctx, 6) else {
        say!("    building the VM failed");
        return Outcome::Fail;
    };
    // The guest also maps IOVA_BAD_TABLE, then its level-1 entry for it is pointed at a level-2
    // table where the VM has no memory: the SMMU's stage-2 walk of that table address faults.
    let redirected = vm
        .s1
        .map(Iova(IOVA_BAD_TABLE), Ipa(VM_IPA + DATA_AT), 0x1000)
        .is_ok()
        && vm
            .s1
            .redirect_l1_table(Iova(IOVA_BAD_TABLE), Ipa(IPA_NO_TABLE))
            .is_some();
    if !redirected {
        return Outcome::Fail;
    }
    say!(
        "    guest: IOVA {:#x} walks through a level-2 table at IPA {:#x} (no memory there)",
        IOVA_BAD_TABLE,
        IPA_NO_TABLE
    );
    // The guest's STE (stage 1, CD table at an IPA), nested over the host's stage 2.
    let ste = Ste::nested(&GuestVm::guest_ste(), &vm.s2cfg);
    let mut ok = install(smmu, sid, &ste);
    ok &= check(
        matches!(ste.config(), Ok(SteConfig::Nested { .. })),
        "the STE is nested (Config 0b111)",
    );

    // Both stages translate.
    ok &= vm.round_trip(ctx, 0x33);

    // A stage-1 fault: the guest did not map the IOVA.
    let seen = faulting_dma(ctx, Direction::FromDevice, IOVA_NO_S1, 4, 1, |_| true);
    ok &= check_one(
        &seen,
        &Want {
            id: EventId::F_TRANSLATION,
            sid,
            addr: IOVA_NO_S1,
            ipa: None,
            s2: false,
            class: 2,
            read: Some(false),
        },
        "stage-1 fault: F_TRANSLATION, addr = IOVA, S2=0, CLASS=IN",
    );
    // A stage-2 fault on the output: the guest mapped the IOVA to an IPA it has no memory at.
    ok &= stage2_output_fault(
        ctx,
        sid,
        "stage-2 fault on the output: F_TRANSLATION, addr = IOVA, IPA = the unmapped IPA, S2=1, CLASS=IN",
    );
    // A stage-2 fault during the stage-1 walk: a table at an IPA with no memory. IHI 0070
    // §7.3.12 says S2 = 1, CLASS = TT, IPA = the table's IPA; QEMU 10.0.2 reports S2 = 0 here,
    // so the S2 bit is shown but not checked.
    let seen = faulting_dma(ctx, Direction::ToDevice, IOVA_BAD_TABLE, 4, 1, |_| true);
    let tt = |s2| Want {
        id: EventId::F_TRANSLATION,
        sid,
        addr: IOVA_BAD_TABLE,
        ipa: Some(IPA_NO_TABLE),
        s2,
        class: 1,
        read: Some(true),
    };
    let as_arch = seen
        .records
        .first()
        .is_some_and(|r| record_is(r, &tt(true)));
    let as_qemu = seen
        .records
        .first()
        .is_some_and(|r| record_is(r, &tt(false)));
    ok &= check(
        seen.records.len() == 1 && (as_arch || as_qemu),
        "stage-2 fault walking a stage-1 table: F_TRANSLATION, IPA = the table's IPA, CLASS=TT",
    );
    if as_qemu {
        say!("    note: S2=0 on that record (QEMU 10.0.2; the architecture says S2=1)");
    }
    ok &= counters_are(smmu, 3, 0, 0, 0);
    outcome(ok)
}

/// Scenario 4: a 2-level stream table (the driver's layout: SPLIT 8, level-2 tables on first
/// bind): an unbound StreamID, a bound one, an invalid STE and an abort STE.
pub fn bad_ste_2level(ctx: &mut Ctx) -> Outcome {
    let config = Config {
        sid_bits: Some(16),
        strtab: StrtabFormat::TwoLevel,
        ..Config::DEFAULT
    };
    let Some(smmu) = take("StrtabFormat::TwoLevel", config) else {
        return Outcome::Fail;
    };
    let sid = ctx.edu.stream_id();
    let plan = smmu.plan();
    say!(
        "    {} L1 descriptors ({} B), level-2 tables of {} B allocated on first bind",
        plan.l2_tables_max,
        plan.strtab.bytes as u32,
        plan.l2_table.map_or(0, |r| r.bytes) as u32
    );
    let mut ok = check(
        matches!(
            smmu.strtab_layout(),
            StreamTableLayout::TwoLevel { log2: 16, split: 8 }
        ),
        "2-level layout, 16 SID bits, SPLIT 8",
    );
    let Some(buf) = ctx.buffer(4096) else {
        return Outcome::Fail;
    };
    let want = |id| Want {
        id,
        sid,
        addr: 0,
        ipa: None,
        s2: false,
        class: 0,
        read: None,
    };

    // Unbound: no level-2 table behind L1[0] yet (Span 0).
    ok &= check(
        smmu.ste(sid).is_ok_and(|s| s == Ste::INVALID),
        "before any bind, edu's STE has no level-2 table",
    );
    let seen = faulting_dma(ctx, Direction::ToDevice, buf.paddr.0, 4, 1, |_| true);
    ok &= check_one(
        &seen,
        &want(EventId::C_BAD_STREAMID),
        "unbound StreamID: C_BAD_STREAMID, sid 0x8",
    );

    // Bound: bypass through the new level-2 table.
    ok &= install(smmu, sid, &Ste::bypass(false));
    fill_pattern(&buf, 0x44);
    write_u32(&buf, 0x800, 0);
    let before = gic::counts();
    ok &= dma(ctx, Direction::ToDevice, buf.paddr.0 + 0x100, 0, 4);
    ok &= dma(ctx, Direction::FromDevice, buf.paddr.0 + 0x800, 0, 4);
    let _ = smmu::wait_irqs(&ctx.platform, smmu::IRQ_UNEXPECTED_US, |c| {
        c.eventq > before.eventq
    });
    let seen = smmu::collect();
    ok &= check(
        read_u32(&buf, 0x800) == read_u32(&buf, 0x100) && seen.records.is_empty(),
        "bound StreamID (level-2 table allocated): bypass DMA arrived, no event",
    );

    // V = 0: C_BAD_STE (the driver's CFGI_STE makes QEMU drop its cached copy).
    ok &= install(smmu, sid, &Ste::INVALID);
    let seen = faulting_dma(ctx, Direction::ToDevice, buf.paddr.0, 4, 1, |_| true);
    ok &= check_one(
        &seen,
        &want(EventId::C_BAD_STE),
        "STE V=0: C_BAD_STE, sid 0x8",
    );

    // Abort: the transaction is terminated silently.
    let mut ok2 = smmu.clear_ste(sid).is_ok();
    ok2 &= smmu.ste(sid).is_ok_and(|s| s == Ste::ABORT);
    write_u32(&buf, 0x900, 0x5555_5555);
    let seen = faulting_dma(
        ctx,
        Direction::FromDevice,
        buf.paddr.0 + 0x900,
        4,
        0,
        |_| true,
    );
    ok &= check(
        ok2 && seen.records.is_empty() && read_u32(&buf, 0x900) == 0x5555_5555,
        "clear_ste (abort STE): the write is dropped, no event",
    );
    ok &= counters_are(smmu, 2, 0, 0, 0);
    outcome(ok)
}

/// Scenario 5: an illegal command through `submit`: CMDQ_ERR, GERROR interrupt, the submitter
/// gets the typed error, the queue recovers.
pub fn cmdq_error(ctx: &mut Ctx) -> Outcome {
    let Some(smmu) = take("StreamIDs of PCIe bus 0", LINEAR) else {
        return Outcome::Fail;
    };
    let before = gic::counts();
    let c0 = smmu.cmdq_counters();
    // CMD_TLBI_S_EL2_ALL: a Secure-only command, illegal on the Non-secure queue.
    let bad = Command::TlbiSel2All;
    let r = smmu.submit(&[bad]);
    let _ = smmu::wait_irqs(&ctx.platform, smmu::IRQ_EXPECTED_US, |c| {
        c.gerror > before.gerror
    });
    say!("    submit([TLBI_S_EL2_ALL]) = {:?}", r);
    let seen = smmu::collect();
    let mut ok = check(
        matches!(r, Err(Error::Cmdq(CmdqError::Illegal(raw))) if raw[0] & 0xff == 0x50),
        "the submitter gets Error::Cmdq(CmdqError::Illegal) with the command's opcode 0x50",
    );
    ok &= check(
        gic::counts().gerror == before.gerror + 1,
        "GERROR interrupt (INTID 109) taken once",
    );
    ok &= check(
        seen.gerrors.len() == 1 && seen.gerrors.iter().all(|g| g.active & 1 == 1),
        "handle_gerror saw CMDQ_ERR active",
    );
    let later = smmu.submit(&[Command::CfgiAll, Command::TlbiNsnhAll]);
    let sid = ctx.edu.stream_id();
    let bound = smmu.set_ste(sid, &Ste::bypass(false));
    say!(
        "    later: submit([CFGI_ALL, TLBI_NSNH_ALL]) = {:?}, set_ste = {:?}",
        later,
        bound
    );
    ok &= check(
        later.is_ok() && bound.is_ok(),
        "later commands complete (CMD_SYNC seen)",
    );
    let c1 = smmu.cmdq_counters();
    say!(
        "    cmdq: batches {} -> {}, illegal {} -> {}, recovered by IRQ {}",
        c0.batches,
        c1.batches,
        c0.illegal,
        c1.illegal,
        c1.recovered_by_irq
    );
    ok &= check(
        c1.illegal == c0.illegal + 1,
        "one CERROR_ILL recovered (slot overwritten with CMD_SYNC)",
    );
    ok &= counters_are(smmu, 0, 0, 1, 0);
    outcome(ok)
}

/// Stage-2 STE over empty tables: every DMA faults (for the storm and the burst).
fn stage2_nothing_mapped(ctx: &Ctx, smmu: &DemoSmmu, vmid: u16) -> bool {
    let s2 = Stage2Tables::new(ctx.dma);
    let Ok(cfg) = S2Config::new(
        Vmid(vmid),
        s2.s2ttb(),
        Stage2Tables::IPA_BITS,
        Granule::Size4K,
        Stage2Tables::START_LEVEL,
    ) else {
        return false;
    };
    // The tables must outlive the STE: leak them (bump memory is never reused anyway).
    core::mem::forget(s2);
    install(smmu, ctx.edu.stream_id(), &Ste::stage2(&cfg))
}

/// Scenario 6: an event storm: 64-byte faulting DMAs (16 records each, one per 4 bytes) into an
/// 8-entry event queue. QEMU keeps 8, drops the rest and raises GERROR.EVENTQ_ABT_ERR.
pub fn event_storm(ctx: &mut Ctx) -> Outcome {
    let config = Config {
        evtq_log2: Some(3),
        ..LINEAR
    };
    let Some(smmu) = take("evtq_log2 = 3", config) else {
        return Outcome::Fail;
    };
    let sid = ctx.edu.stream_id();
    let mut ok = stage2_nothing_mapped(ctx, smmu, 7);
    let mut total = 0;
    for round in 0..2u64 {
        let ipa = VM_IPA + round * 0x1000;
        let before = gic::counts();
        let seen = faulting_dma(ctx, Direction::FromDevice, ipa, 64, 8, |c| {
            c.gerror > before.gerror
        });
        total += seen.records.len();
        let addrs_ok = seen
            .records
            .iter()
            .enumerate()
            .all(|(i, r)| r.id == EventId::F_TRANSLATION && r.input_addr == ipa + 4 * i as u64);
        ok &= check(
            seen.records.len() == 8 && addrs_ok,
            "the queue's 8 records kept: the first 8 words of the DMA, in order",
        );
        ok &= check(
            seen.overflows == 1 && seen.gerrors.iter().any(|g| g.active & 4 != 0),
            "GERROR.EVENTQ_ABT_ERR (INTID 109) -> handle_gerror -> the sink is told once",
        );
        ok &= check(drains_cheap(&seen), "every drain made <= 3 SMMU accesses");
    }
    // After the storms: events are recorded again.
    let after = VM_IPA + 0x8000;
    let seen = faulting_dma(ctx, Direction::ToDevice, after, 4, 1, |_| true);
    ok &= check_one(
        &seen,
        &Want {
            id: EventId::F_TRANSLATION,
            sid,
            addr: after,
            ipa: Some(after),
            s2: true,
            class: 2,
            read: Some(true),
        },
        "after recovery a new fault is recorded again",
    );
    say!(
        "    {} records kept of 33 faulting words; 2 losses counted",
        total + seen.records.len()
    );
    ok &= counters_are(smmu, 17, 2, 0, 2);
    outcome(ok)
}

/// Scenario 7: a burst of 16 records drained by one drain, with 3 SMMU register accesses.
pub fn drain_burst(ctx: &mut Ctx) -> Outcome {
    let Some(smmu) = take("StreamIDs of PCIe bus 0", LINEAR) else {
        return Outcome::Fail;
    };
    let sid = ctx.edu.stream_id();
    let mut ok = stage2_nothing_mapped(ctx, smmu, 8);
    let ipa = VM_IPA + 0x4000;
    let seen = faulting_dma(ctx, Direction::ToDevice, ipa, 64, 16, |_| true);
    let addrs_ok = seen.records.iter().enumerate().all(|(i, r)| {
        r.id == EventId::F_TRANSLATION
            && r.sid == sid
            && r.s2
            && r.rnw
            && r.input_addr == ipa + 4 * i as u64
    });
    ok &= check(
        seen.records.len() == 16 && addrs_ok,
        "16 F_TRANSLATION records (one per 4 bytes of the 64-byte read), in order",
    );
    let one = seen.drains.len() == 1 && seen.drains.iter().all(|(st, _)| st.records == 16);
    ok &= check(one, "all 16 drained by a single drain");
    if let Some((st, hook)) = seen.drains.first() {
        say!(
            "    BURST records={} mmio={} hook_mmio={}",
            st.records,
            st.mmio,
            hook
        );
        ok &= check(
            st.mmio == 3 && *hook == 3,
            "that drain made 3 SMMU accesses (PROD read, CONS write, PROD read)",
        );
    }
    ok &= counters_are(smmu, 16, 0, 0, 0);
    outcome(ok)
}
