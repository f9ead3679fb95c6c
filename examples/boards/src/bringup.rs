//! The board images' bring-up, the same on every board: from the topology firmware describes,
//! every enabled SMMU is probed and reset, its CMDQV taken over with its VCMDQs, a stage-2 STE
//! installed for the first StreamID of every device or root complex firmware puts behind it,
//! faults forced, and each step reported as `RESULT <name> PASS|FAIL` followed by one
//! `SUMMARY: <p> passed, <f> failed (of <n>) in <ms> ms` line: the contract the QEMU demo prints,
//! read by the same host checker (`qemu_virt_runner::contract`).
//!
//! It is plain library calls over a [`Machine`], so the host tests run it on the software models
//! (`arm_smmuv3::fake`) against the Tegra264 device tree and the Grace IORT fixtures.

use core::fmt;
use core::ptr::NonNull;

use arm_smmuv3::cmdqv::{Cmdqv, CpuIndex};
use arm_smmuv3::command::Command;
use arm_smmuv3::discovery::{CmdqvDesc, MapOwner, SmmuDesc, Topology};
use arm_smmuv3::error::CmdqError;
use arm_smmuv3::regs::{Page0, Page1};
use arm_smmuv3::smmu::Smmu;
use arm_smmuv3::ste::{Granule, S2Config, Ste};
use arm_smmuv3::{DmaMemory, Error, PhysAddr, Platform, StreamId, Vmid};

/// What a board gives the bring-up.
///
/// # Safety
/// [`smmu_pages`](Machine::smmu_pages) returns the register pages of the SMMU `desc` describes
/// and [`cmdqv_window`](Machine::cmdqv_window) the window of the CMDQV `desc` describes (with
/// its mapped size), mapped as device memory for the rest of the run and used by nothing but the
/// driver the bring-up creates on them; [`dma`](Machine::dma) hands out memory the SMMU reaches
/// at its physical addresses and that stays valid for the rest of the run.
pub unsafe trait Machine {
    /// Time and waiting.
    type Platform: Platform + Clone;
    /// The memory lent to the drivers.
    type Dma: DmaMemory;
    /// Register pages 0 and 1 of SMMU `index`, or `None` when the board cannot reach them.
    fn smmu_pages(
        &mut self,
        index: usize,
        desc: &SmmuDesc,
    ) -> Option<(NonNull<Page0>, NonNull<Page1>)>;
    /// The window of SMMU `index`'s CMDQV and how many bytes of it are mapped.
    fn cmdqv_window(&mut self, index: usize, desc: &CmdqvDesc) -> Option<(NonNull<u8>, usize)>;
    /// The platform the drivers of SMMU `index` use.
    fn platform(&self, index: usize) -> Self::Platform;
    /// The DMA memory the drivers of SMMU `index` use.
    fn dma(&self, index: usize) -> Self::Dma;
    /// Prints one line.
    fn line(&mut self, args: fmt::Arguments<'_>);
    /// Called right before the forced illegal command on SMMU `index`'s queue. Hardware refuses
    /// CMD_TLBI_S_EL2_ALL on the Non-secure queue by itself (CERROR_ILL); a software model that
    /// does not check legality arms its error here.
    fn forcing_illegal_command(&mut self, _index: usize) {}
}

/// Totals of a bring-up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Steps that passed.
    pub passed: u32,
    /// Steps that failed.
    pub failed: u32,
}

struct Run<'m, M: Machine> {
    m: &'m mut M,
    summary: Summary,
}

impl<M: Machine> Run<'_, M> {
    fn check(&mut self, ok: bool, what: &str) -> bool {
        let word = if ok { "ok" } else { "MISMATCH" };
        self.m.line(format_args!("    {word}: {what}"));
        ok
    }

    fn result(&mut self, smmu: usize, step: &str, ok: bool) {
        if ok {
            self.summary.passed += 1;
        } else {
            self.summary.failed += 1;
        }
        let word = if ok { "PASS" } else { "FAIL" };
        self.m.line(format_args!("RESULT smmu{smmu}-{step} {word}"));
    }
}

/// The IPA size of the stage-2 STEs. Their root is an empty (zeroed) table, so every DMA of the
/// device faults (F_TRANSLATION, S2) instead of reaching memory.
const S2_IPA_BITS: u8 = 40;

/// What the board's SoC has beside each SMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmdqvRule {
    /// Every SMMU has a CMDQV (Grace): an SMMU without one is a FAIL (firmware or the board
    /// profile failed to describe it).
    Required,
    /// Firmware says (Thor's DT `status`): only enabled CMDQVs are brought up.
    AsDescribed,
}

/// Brings up every enabled SMMU of `topo` in turn and prints the RESULT lines and the
/// SUMMARY line; `now_us` stamps the run. Disabled SMMUs (DT `status`) are listed and left alone.
pub fn run<M: Machine>(
    m: &mut M,
    name: &str,
    topo: &Topology,
    cmdqv_rule: CmdqvRule,
    now_us: &dyn Fn() -> u64,
) -> Summary {
    let t0 = now_us();
    let mut r = Run {
        m,
        summary: Summary::default(),
    };
    r.m.line(format_args!(
        "arm-smmuv3 board image: {name}, {} SMMU(s) described, {} enabled, {} CMDQV(s)",
        topo.smmus().len(),
        topo.smmus().iter().filter(|d| d.enabled).count(),
        topo.cmdqvs().count()
    ));
    for (i, desc) in topo.smmus().iter().enumerate() {
        r.m.line(format_args!(
            "DISCOVERED SMMU {i}: page0 {:#x} size {:#x} coherent {} enabled {} eventq {:?} gerror {:?} cmdqv {:#x} enabled {}",
            desc.base.0,
            desc.size,
            desc.coherent,
            desc.enabled,
            desc.irqs.eventq.map(|q| q.intid),
            desc.irqs.gerror.map(|q| q.intid),
            desc.cmdqv.map_or(0, |c| c.base.0),
            desc.cmdqv.is_some_and(|c| c.enabled)
        ));
    }
    for (i, desc) in topo.smmus().iter().enumerate() {
        if desc.enabled {
            instance(&mut r, topo, i, desc, cmdqv_rule);
        }
    }
    let total = r.summary.passed + r.summary.failed;
    let ms = now_us().wrapping_sub(t0) / 1000;
    r.m.line(format_args!(
        "SUMMARY: {} passed, {} failed (of {total}) in {ms} ms",
        r.summary.passed, r.summary.failed
    ));
    r.summary
}

/// The first StreamID of every ID mapping that ends at SMMU `index`.
fn streams(topo: &Topology, index: usize) -> impl Iterator<Item = (MapOwner, StreamId)> + '_ {
    topo.id_maps()
        .iter()
        .filter(move |m| usize::from(m.smmu.0) == index)
        .filter_map(|m| Some((m.owner, m.translate(m.input_base)?)))
}

fn instance<M: Machine>(
    r: &mut Run<'_, M>,
    topo: &Topology,
    i: usize,
    desc: &SmmuDesc,
    cmdqv_rule: CmdqvRule,
) {
    let Some((page0, page1)) = r.m.smmu_pages(i, desc) else {
        r.m.line(format_args!(
            "    SMMU {i} at {:#x} is not mapped",
            desc.base.0
        ));
        r.result(i, "probe-reset", false);
        return;
    };
    // SAFETY: the `Machine` contract: the pages are this SMMU's, mapped, and only this driver
    // uses them; the DMA memory is the SMMU's and lives for the run.
    let smmu = match unsafe { Smmu::new(page0, page1, r.m.platform(i), r.m.dma(i), desc.config()) }
    {
        Ok(s) => s,
        Err(e) => {
            r.m.line(format_args!("    Smmu::new: {e:?}"));
            r.result(i, "probe-reset", false);
            return;
        }
    };
    let f = *smmu.features();
    r.m.line(format_args!(
        "    SMMU {i}: stage1 {} stage2 {} sid_bits {} cmdq_log2 {} evtq_log2 {} oas {} bits, quirks {:#x}",
        f.stage1,
        f.stage2,
        f.sid_bits,
        f.cmdq_log2,
        f.evtq_log2,
        f.oas.bits(),
        desc.quirks.bits()
    ));
    let reset = smmu.reset();
    let ok = r.check(reset.is_ok(), "Smmu::reset (tables, queues, SMMUEN)")
        & r.check(f.stage2, "stage 2 supported");
    r.result(i, "probe-reset", ok);
    if reset.is_err() {
        return;
    }

    // CMDQV with its VCMDQs, when firmware pairs one with this SMMU.
    let mut cmdqv = None;
    if desc.cmdqv.is_none() && cmdqv_rule == CmdqvRule::Required {
        r.m.line(format_args!("    no CMDQV described for SMMU {i}"));
        r.result(i, "cmdqv", false);
    }
    if let Some(c) = desc.cmdqv.filter(|c| c.enabled) {
        let mut ok = false;
        if let Some((window, mapped)) = r.m.cmdqv_window(i, &c) {
            let mut cfg = c.config(f.cmdq_log2, desc.coherent);
            cfg.window_size = cfg.window_size.min(mapped);
            // SAFETY: the `Machine` contract: the window is this CMDQV's, `window_size` bytes are
            // mapped, and only this driver uses them; the SMMU is enabled.
            match unsafe { Cmdqv::new(window.cast(), r.m.platform(i), r.m.dma(i), cfg) } {
                Ok(mut q) => {
                    let reset = q.reset(&smmu);
                    r.m.line(format_args!(
                        "    CMDQV {:#x}: {} VINTF(s), {} VCMDQ(s) per VINTF, reset {:?}",
                        c.base.0,
                        q.num_vintfs(),
                        q.lvcmdqs_per_vintf(),
                        reset
                    ));
                    ok = r.check(
                        reset.is_ok() && q.is_ready(),
                        "CMDQV enabled, VINTF0's VCMDQs ready",
                    );
                    let before = q.host_queue_counters(0).map_or(0, |c| c.batches);
                    let sent = q.submit(
                        CpuIndex(0),
                        &[Command::CfgiAll, Command::TlbiNsnhAll],
                        &smmu,
                    );
                    let after = q.host_queue_counters(0).map_or(0, |c| c.batches);
                    ok &= r.check(
                        sent.is_ok() && after > before,
                        "CFGI_ALL + TLBI_NSNH_ALL completed on VCMDQ 0 (not the SMMU's queue)",
                    );
                    cmdqv = Some(q);
                }
                Err(e) => r.m.line(format_args!("    Cmdqv::new: {e:?}")),
            }
        } else {
            r.m.line(format_args!("    CMDQV at {:#x} is not mapped", c.base.0));
        }
        r.result(i, "cmdqv", ok);
    }

    // Stage 2 for what sits behind this SMMU.
    let mut ok = true;
    let mut n = 0;
    // The start-level table may be several concatenated pages, aligned to its whole size
    // (IHI 0070 §5.2, S2TTB): ask the configuration how big before allocating it.
    let root_bytes = S2Config::for_ipa_bits(Vmid(1), PhysAddr(0), S2_IPA_BITS, Granule::Size4K)
        .map_or(4096, |c| c.root_table_bytes().max(4096) as usize);
    let root = r.m.dma(i).alloc(root_bytes, root_bytes);
    match root.map(|root| S2Config::for_ipa_bits(Vmid(1), root.paddr, S2_IPA_BITS, Granule::Size4K))
    {
        Some(Ok(cfg)) => {
            let ste = Ste::stage2(&cfg);
            for (owner, sid) in streams(topo, i) {
                let set = smmu.set_ste(sid, &ste);
                let back = smmu.ste(sid);
                let what = match owner {
                    MapOwner::PciRoot { .. } => "root complex",
                    MapOwner::Device(_) => "device",
                };
                r.m.line(format_args!(
                    "    {what} StreamID {:#x}: stage-2 STE (VMID 1) {set:?}",
                    sid.0
                ));
                ok &= set.is_ok() && back.is_ok_and(|b| b == ste);
                n += 1;
            }
        }
        Some(Err(e)) => {
            ok = false;
            r.m.line(format_args!("    stage-2 configuration refused: {e:?}"));
        }
        None => {
            ok = false;
            r.m.line(format_args!(
                "    no DMA memory for a {root_bytes}-byte stage-2 root"
            ));
        }
    }
    if n == 0 && ok {
        r.m.line(format_args!(
            "    firmware puts no device or root complex behind SMMU {i}"
        ));
    } else {
        r.check(ok, "every stage-2 STE reads back as written");
        r.result(i, "stage2-ste", ok);
    }

    // A forced fault: a Secure-only command on the Non-secure queue.
    let c0 = smmu.cmdq_counters();
    r.m.forcing_illegal_command(i);
    let bad = smmu.submit(&[Command::TlbiSel2All]);
    let g = smmu.handle_gerror();
    let later = smmu.submit(&[Command::CfgiAll, Command::TlbiNsnhAll]);
    let c1 = smmu.cmdq_counters();
    r.m.line(format_args!(
        "    submit([TLBI_S_EL2_ALL]) = {bad:?}; GERROR active {:#x}; later {later:?}; illegal {} -> {}",
        g.active, c0.illegal, c1.illegal
    ));
    let mut ok = r.check(
        matches!(bad, Err(Error::Cmdq(CmdqError::Illegal(raw))) if raw[0] & 0xff == 0x50),
        "CERROR_ILL reported with the command",
    );
    ok &= r.check(
        later.is_ok() && c1.illegal == c0.illegal + 1,
        "the queue recovered",
    );
    r.result(i, "fault-cmdq", ok);

    let mut ok = true;
    if let Some(mut q) = cmdqv {
        ok &= q.shutdown(&smmu).is_ok();
    }
    ok &= smmu.disable().is_ok();
    r.check(ok, "CMDQV and SMMU disabled again");
}
