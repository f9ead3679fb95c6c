//! The board images' bring-up on the host: the Tegra264 (Jetson Thor) device tree and the
//! Grace IORT fixtures discovered as the images discover them, each SMMU and CMDQV they describe
//! replaced by a software model (`arm_smmuv3::fake`) at the discovered instance, and the output
//! read by the same checker as the QEMU demo's.

use std::fmt;
use std::ptr::NonNull;
use std::sync::Arc;

use arm_smmuv3::discovery::aml::DefinitionBlock;
use arm_smmuv3::discovery::dt::DeviceTree;
use arm_smmuv3::discovery::iort::{AcpiCmdqv, Iort};
use arm_smmuv3::discovery::{CmdqvDesc, SmmuDesc, Topology};
use arm_smmuv3::fake::cmdqv::{CmdqvModel, CmdqvModelParams};
use arm_smmuv3::fake::{CmdqFault, ModelArena, ModelPlatform, SmmuModel};
use arm_smmuv3::features::{Features, IdRegs};
use arm_smmuv3::regs::{Page0, Page1};
use arm_smmuv3::{DmaMemory, PhysAddr};
use qemu_virt_runner::contract;

use crate::bringup::{self, CmdqvRule, Machine, Summary};

const TEGRA264: &[u8] =
    include_bytes!("../../../tests/fixtures/dt/tegra264/tegra264-p3834-smmu.dtb");
const GRACE_IORT: &[u8] = include_bytes!("../../../tests/fixtures/iort/grace.iort");
const GRACE_DSDT: &[u8] = include_bytes!("../../../tests/fixtures/acpi/grace-dsdt.aml");
const GRACE_SSDT: &[u8] = include_bytes!("../../../tests/fixtures/acpi/grace-ssdt.aml");

type Slot = (
    PhysAddr,
    Arc<SmmuModel>,
    Option<Arc<CmdqvModel>>,
    Option<PhysAddr>,
);

/// One model per discovered SMMU (and CMDQV), found by the discovered base.
struct Models {
    /// Per discovered SMMU: its base, its model, its CMDQV's model and the CMDQV's base.
    smmus: Vec<Slot>,
    out: Vec<String>,
    /// Whether the CMDQV windows are mapped (false: a board that cannot reach them).
    mapped_cmdqv: bool,
    /// Hand out every DMA buffer no more aligned than asked ([`Arena`]).
    stingy: bool,
}

/// A model's DMA arena as the bring-up gets it. Stingy: each buffer is aligned to exactly what
/// was asked and never to twice that, as firmware's allocator may happen to give, so a request
/// for less alignment than the hardware needs fails here every time, not by the luck of where
/// the previous buffers ended.
struct Arena {
    inner: ModelArena,
    stingy: bool,
}

// SAFETY: forwards to the model's arena; a stingy buffer is a sub-range of one the arena gave
// (`size + align` bytes), so it is as reachable, zeroed and unshared as that one.
unsafe impl DmaMemory for Arena {
    fn alloc(&self, size: usize, align: usize) -> Option<arm_smmuv3::platform::DmaBuf> {
        if !self.stingy {
            return self.inner.alloc(size, align);
        }
        let mut b = self.inner.alloc(size.checked_add(align)?, align)?;
        if b.paddr.0 % (2 * align as u64) == 0 {
            // SAFETY: `align < size + align`: still inside the buffer the arena gave.
            b.vaddr = unsafe { b.vaddr.add(align) };
            b.paddr = PhysAddr(b.paddr.0 + align as u64);
        }
        b.size = size;
        Some(b)
    }
}

impl Models {
    fn new(topo: &Topology) -> Self {
        let smmus = topo
            .smmus()
            .iter()
            .map(|d| {
                // QEMU's ID registers with 20 StreamID bits: Tegra264's DT maps PCIe domains to
                // StreamIDs up to 0x5_ffff.
                let m = SmmuModel::new(IdRegs {
                    idr1: (Features::QEMU_VIRT_IDREGS.idr1 & !0x3f) | 20,
                    ..Features::QEMU_VIRT_IDREGS
                });
                let q = d
                    .cmdqv
                    .map(|_| CmdqvModel::attach(&m, CmdqvModelParams::TEST));
                (d.base, m, q, d.cmdqv.map(|c| c.base))
            })
            .collect();
        Self {
            smmus,
            out: Vec::new(),
            mapped_cmdqv: true,
            stingy: false,
        }
    }

    fn model(&self, index: usize, base: PhysAddr) -> &Slot {
        let m = &self.smmus[index];
        assert_eq!(
            m.0, base,
            "the bring-up asked for SMMU {index} at another base"
        );
        m
    }
}

// SAFETY: each model's pages and window live as long as `Models` (which outlives the run), and
// the bring-up creates one driver per model.
unsafe impl Machine for Models {
    type Platform = ModelPlatform;
    type Dma = Arena;

    fn smmu_pages(
        &mut self,
        index: usize,
        desc: &SmmuDesc,
    ) -> Option<(NonNull<Page0>, NonNull<Page1>)> {
        let (_, m, _, _) = self.model(index, desc.base);
        Some((m.page0(), m.page1()))
    }

    fn cmdqv_window(&mut self, index: usize, desc: &CmdqvDesc) -> Option<(NonNull<u8>, usize)> {
        let slot = &self.smmus[index];
        assert_eq!(
            slot.3,
            Some(desc.base),
            "the bring-up asked for another SMMU's CMDQV"
        );
        let q = slot.2.as_ref()?;
        self.mapped_cmdqv.then(|| (q.base(), q.size()))
    }

    fn platform(&self, index: usize) -> ModelPlatform {
        self.smmus[index].1.platform()
    }

    fn dma(&self, index: usize) -> Arena {
        Arena {
            inner: self.smmus[index].1.lend_dma(),
            stingy: self.stingy,
        }
    }

    fn line(&mut self, args: fmt::Arguments<'_>) {
        self.out.push(args.to_string());
    }

    fn forcing_illegal_command(&mut self, index: usize) {
        // The model takes every opcode; hardware refuses this one itself.
        self.smmus[index].1.inject_cmdq_error(0, CmdqFault::Illegal);
    }
}

fn run(models: &mut Models, name: &str, topo: &Topology) -> (Summary, String) {
    let rule = if name.starts_with("Grace") {
        CmdqvRule::Required
    } else {
        CmdqvRule::AsDescribed
    };
    let s = bringup::run(models, name, topo, rule, &|| 0);
    let text = models.out.join("\n") + "\n";
    (s, text)
}

/// The NVDA200C devices of the Grace DSDT and SSDT fixtures, read as the image reads them
/// (`arm_smmuv3::discovery::aml`).
fn grace_cmdqvs() -> Vec<AcpiCmdqv> {
    let mut out = heapless::Vec::<AcpiCmdqv, 16>::new();
    for table in [GRACE_DSDT, GRACE_SSDT] {
        DefinitionBlock::new(table)
            .unwrap()
            .cmdqvs(&mut out)
            .unwrap();
    }
    out.into_iter().collect()
}

#[test]
fn thor_image_brings_up_the_enabled_tegra264_smmus_with_their_cmdqvs() {
    let topo = DeviceTree::new(TEGRA264).unwrap().topology().unwrap();
    let mut models = Models::new(&topo);
    let (summary, text) = run(&mut models, "Jetson AGX Thor (Tegra264)", &topo);
    // p3834 enables two of the five SMMUs: indexes 0 (iommu@5000000) and 1 (iommu@6000000).
    let results = contract::results(text.lines()).unwrap();
    let want: Vec<(String, String)> = [
        "smmu0-probe-reset",
        "smmu0-stage2-ste",
        "smmu0-fault-cmdq",
        "smmu1-probe-reset",
        "smmu1-stage2-ste",
        "smmu1-fault-cmdq",
    ]
    .iter()
    .map(|n| ((*n).to_owned(), "PASS".to_owned()))
    .collect();
    let mut want = want;
    want.sort();
    let got: Vec<(String, String)> = results.into_iter().collect();
    assert_eq!(got, want, "{text}");
    // In this kernel's DT the CMDQV nodes are disabled: the image leaves them alone.
    assert!(!text.contains("-cmdqv "), "{text}");
    assert!(text.contains("cmdqv 0x8105200000 enabled false"), "{text}");
    assert_eq!(
        summary,
        Summary {
            passed: 6,
            failed: 0
        },
        "{text}"
    );
    assert_eq!(contract::summary(&text), Some((6, 0, 6)), "{text}");
    for needle in [
        "DISCOVERED SMMU 0: page0 0x8105000000",
        "DISCOVERED SMMU 4: page0 0x8806000000",
        "quirks 0x",
        "device StreamID 0x800: stage-2 STE (VMID 1) Ok(())",
        "root complex StreamID 0x10000: stage-2 STE (VMID 1) Ok(())",
        "submit([TLBI_S_EL2_ALL]) = Err(Cmdq(Illegal(",
    ] {
        assert!(text.contains(needle), "no `{needle}`\n{text}");
    }
    assert!(!text.contains("MISMATCH"), "{text}");
}

/// The Tegra264 tree with every `status = "disabled"` turned into "okay" (same length, padded
/// with NULs): all five SMMUs and their CMDQVs enabled, as a board file enabling them would.
fn enable_all(blob: &[u8]) -> Vec<u8> {
    let mut out = blob.to_vec();
    let (from, to) = (b"disabled\0", b"okay\0\0\0\0\0");
    let mut i = 0;
    while i + from.len() <= out.len() {
        if &out[i..i + from.len()] == from {
            out[i..i + from.len()].copy_from_slice(to);
        }
        i += 1;
    }
    out
}

#[test]
fn thor_image_with_cmdqvs_enabled_uses_the_vcmdqs() {
    let enabled = enable_all(TEGRA264);
    let topo = DeviceTree::new(&enabled).unwrap().topology().unwrap();
    assert_eq!(
        topo.smmus()
            .iter()
            .filter(|d| d.enabled && d.cmdqv.is_some_and(|c| c.enabled))
            .count(),
        5
    );
    let mut models = Models::new(&topo);
    let (summary, text) = run(&mut models, "Jetson AGX Thor (Tegra264)", &topo);
    let results = contract::results(text.lines()).unwrap();
    assert_eq!(
        results
            .iter()
            .filter(|(n, o)| n.ends_with("-cmdqv") && *o == "PASS")
            .count(),
        5,
        "{text}"
    );
    // SMMUs 2 and 3 have nothing behind them in this tree: no stage-2 step for them.
    assert_eq!(
        summary,
        Summary {
            passed: 18,
            failed: 0
        },
        "{text}"
    );
    assert_eq!(
        text.matches("firmware puts no device or root complex behind SMMU")
            .count(),
        2,
        "{text}"
    );
    assert_eq!(
        text.matches("CFGI_ALL + TLBI_NSNH_ALL completed on VCMDQ 0")
            .count(),
        5,
        "{text}"
    );
    assert!(!text.contains("MISMATCH"), "{text}");
    // Unmapped CMDQV windows are a FAIL each, not a skip.
    let mut models = Models::new(&topo);
    models.mapped_cmdqv = false;
    let (summary, text) = run(&mut models, "Jetson AGX Thor (Tegra264)", &topo);
    assert_eq!(
        summary,
        Summary {
            passed: 13,
            failed: 5
        },
        "{text}"
    );
    assert_eq!(contract::summary(&text), Some((13, 5, 18)), "{text}");
}

#[test]
fn grace_image_brings_up_four_smmus_each_with_its_cmdqv() {
    let (summary, text) = run_grace(|_| {});
    assert_eq!(
        summary,
        Summary {
            passed: 16,
            failed: 0
        },
        "{text}"
    );
    assert_eq!(contract::summary(&text), Some((16, 0, 16)), "{text}");
    let results = contract::results(text.lines()).unwrap();
    assert_eq!(results.len(), 16, "{text}");
    assert!(results.values().all(|o| o == "PASS"), "{text}");
    assert!(
        text.contains("DISCOVERED SMMU 3: page0 0x16000000"),
        "{text}"
    );
    assert!(!text.contains("MISMATCH"), "{text}");
}

#[test]
fn grace_image_without_the_dsdt_cmdqvs_fails_each_smmu() {
    let topo = Iort::new(GRACE_IORT).unwrap().topology(&[]).unwrap();
    let mut models = Models::new(&topo);
    let (summary, text) = run(&mut models, "Grace (Tegra241)", &topo);
    assert_eq!(
        summary,
        Summary {
            passed: 12,
            failed: 4
        },
        "{text}"
    );
    assert_eq!(
        text.matches("no CMDQV described for SMMU").count(),
        4,
        "{text}"
    );
    let results = contract::results(text.lines()).unwrap();
    assert!(
        results
            .iter()
            .all(|(n, o)| (o == "FAIL") == n.ends_with("-cmdqv")),
        "{text}"
    );
}

/// The Grace image on the fixtures' IORT and DSDT/SSDT CMDQVs; `prepare` runs on the models
/// first.
fn run_grace(prepare: impl FnOnce(&mut Models)) -> (Summary, String) {
    let topo = Iort::new(GRACE_IORT)
        .unwrap()
        .topology(&grace_cmdqvs())
        .unwrap();
    let mut models = Models::new(&topo);
    prepare(&mut models);
    run(&mut models, "Grace (Tegra241)", &topo)
}

#[test]
fn stage2_root_is_allocated_at_its_concatenated_size_and_alignment() {
    // A 40-bit IPA space starts at level 1 with two concatenated tables: 8 KiB, aligned to 8 KiB.
    // Every buffer only as aligned as asked (edk2's AllocatePages region made the 4 KiB-aligned
    // request of an earlier bring-up land on an odd page): every step still passes.
    let (_, text) = run_grace(|models| models.stingy = true);
    assert_eq!(contract::summary(&text), Some((16, 0, 16)), "{text}");
    assert_eq!(text.matches("-stage2-ste PASS").count(), 4, "{text}");
}
