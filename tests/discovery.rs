//! Discovery from firmware descriptions nobody here wrote (QEMU's own `virt` DT, the Linux
//! kernel's Tegra264 DT), a small synthetic DT for the cases those lack, and an IORT laid out
//! like Grace's (see `tests/fixtures/README.md` for how each fixture was made).

mod iort_builder;

use arm_smmuv3::discovery::dt::{Console, DeviceTree, Reg};
use arm_smmuv3::discovery::iort::{AcpiCmdqv, Iort, SmmuModel};
use arm_smmuv3::discovery::{
    CmdqvModel, DeviceRef, DiscoveryError, FwNode, Irq, IrqSource, MapOwner, SmmuIndex, Stream,
    Topology, Trigger,
};
use arm_smmuv3::smmu::Quirks;
use arm_smmuv3::{PhysAddr, StreamId};

use iort_builder::{GRACE_CMDQVS, IortBuilder, Target, grace_iort};

const QEMU_VIRT: &[u8] = include_bytes!("fixtures/dt/qemu-virt-smmuv3.dtb");
const TEGRA264: &[u8] = include_bytes!("fixtures/dt/tegra264/tegra264-p3834-smmu.dtb");
const EDGE: &[u8] = include_bytes!("fixtures/dt/synthetic/edge.dtb");
const BAD_INTC: &[u8] = include_bytes!("fixtures/dt/synthetic/bad-intc.dtb");
const CAVIUM: &[u8] = include_bytes!("fixtures/dt/synthetic/cavium.dtb");
const CONSOLE: &[u8] = include_bytes!("fixtures/dt/synthetic/console.dtb");
const GRACE_IORT: &[u8] = include_bytes!("fixtures/iort/grace.iort");

fn edge(intid: u32) -> Option<Irq> {
    Some(Irq {
        intid,
        trigger: Trigger::EdgeRising,
    })
}

fn stream(smmu: u8, sid: u32) -> Stream {
    Stream {
        smmu: SmmuIndex(smmu),
        sid: StreamId(sid),
    }
}

#[test]
fn qemu_virt_dt_has_one_smmu_with_the_edu_stream() {
    let dt = DeviceTree::new(QEMU_VIRT).unwrap();
    // QEMU pads the blob to 1 MiB; totalsize says so.
    assert_eq!(dt.data().len(), 0x10_0000);
    let topo = dt.topology().unwrap();
    let [smmu] = topo.smmus() else {
        panic!("expected one SMMU, got {:?}", topo.smmus());
    };
    assert_eq!(smmu.base, PhysAddr(0x0905_0000));
    assert_eq!(smmu.page1(), PhysAddr(0x0906_0000));
    assert_eq!(smmu.size, 0x2_0000);
    // SPIs 74..77, all edge (qemu-virt.md §4): INTIDs 106..109.
    assert_eq!(smmu.irqs.eventq, edge(106));
    assert_eq!(smmu.irqs.priq, edge(107));
    assert_eq!(smmu.irqs.cmdq_sync, edge(108));
    assert_eq!(smmu.irqs.gerror, edge(109));
    assert_eq!(smmu.irqs.combined, None);
    assert!(smmu.coherent && smmu.enabled);
    assert_eq!(smmu.quirks, Quirks::empty());
    assert_eq!(smmu.cmdqv, None);
    assert!(matches!(
        smmu.fw,
        FwNode::Dt {
            phandle: Some(0x8004),
            ..
        }
    ));
    let cfg = smmu.config();
    assert_eq!(cfg.coherent, Some(true));
    // edu at 00:01.0 (RID 0x8) is StreamID 0x8; the map covers all 65536 RIDs.
    assert_eq!(topo.pci_stream(0, 0x8), Ok(stream(0, 0x8)));
    assert_eq!(topo.pci_stream(0, 0xffff), Ok(stream(0, 0xffff)));
    assert_eq!(topo.pci_stream(1, 0x8), Err(DiscoveryError::NotFound));
    assert_eq!(topo.id_maps().len(), 1);
    assert_eq!(topo.foreign_maps(), 0);
}

#[test]
fn tegra264_dt_has_five_smmus_each_with_its_cmdqv() {
    let dt = DeviceTree::new(TEGRA264).unwrap();
    let topo = dt.topology().unwrap();
    // (page 0, eventq SPI, gerror SPI, CMDQV base, CMDQV SPI, enabled by the p3834 module)
    let expect = [
        (0x81_0500_0000u64, 12, 13, 0x81_0520_0000u64, 19, true),
        (0x81_0600_0000, 1, 2, 0x81_0620_0000, 8, true),
        (0x81_0a00_0000, 21, 22, 0x81_0a20_0000, 28, false),
        (0x81_0b00_0000, 30, 31, 0x81_0b20_0000, 37, false),
        (0x88_0600_0000, 225, 226, 0x88_0620_0000, 232, false),
    ];
    assert_eq!(topo.smmus().len(), expect.len());
    for (smmu, (base, ev, ge, cbase, cspi, enabled)) in topo.smmus().iter().zip(expect) {
        assert_eq!(smmu.base, PhysAddr(base), "{smmu:?}");
        assert_eq!(smmu.size, 0x20_0000);
        assert_eq!(smmu.irqs.eventq, edge(ev + 32));
        assert_eq!(smmu.irqs.gerror, edge(ge + 32));
        assert_eq!((smmu.irqs.priq, smmu.irqs.cmdq_sync), (None, None));
        assert!(smmu.coherent);
        assert_eq!(smmu.enabled, enabled);
        // Tegra264's erratum, known only from the compatible.
        assert_eq!(smmu.quirks, Quirks::REPEAT_CFGI_TLBI);
        assert_eq!(smmu.config().quirks, Quirks::REPEAT_CFGI_TLBI);
        let cmdqv = smmu.cmdqv.expect("every Tegra264 SMMU names its CMDQV");
        assert_eq!(cmdqv.base, PhysAddr(cbase));
        // 0x30000 + 64 VINTFs x 0x20000.
        assert_eq!(cmdqv.size, 0x83_0000);
        assert_eq!(
            cmdqv.irq,
            Some(Irq {
                intid: cspi + 32,
                trigger: Trigger::LevelHigh
            })
        );
        assert_eq!(cmdqv.model, CmdqvModel::Tegra264);
        assert!(
            !cmdqv.enabled,
            "the module enables no CMDQV in this kernel version"
        );
    }
    assert_eq!(topo.cmdqvs().count(), 5);
    // Interrupt routing by instance: smmu2's gerror (SPI 2) and cmdqv3's error (SPI 232).
    assert_eq!(topo.irq_owner(34), Some((SmmuIndex(1), IrqSource::Gerror)));
    assert_eq!(topo.irq_owner(264), Some((SmmuIndex(4), IrqSource::Cmdqv)));
    assert_eq!(topo.irq_owner(33), Some((SmmuIndex(1), IrqSource::Eventq)));
    assert_eq!(topo.irq_owner(32), None);

    // Platform devices: gpcdma behind smmu1 (index 0), hda behind smmu3 (index 4).
    let gpcdma = dt.device("/bus@0/dma-controller@8400000").unwrap();
    assert_eq!(
        topo.device_streams(gpcdma).collect::<Vec<_>>(),
        [stream(0, 0x800)]
    );
    let hda = dt.device("/bus@8800000000/hda@90b0000").unwrap();
    assert_eq!(
        topo.device_streams(hda).collect::<Vec<_>>(),
        [stream(4, 0xa00)]
    );

    // PCIe: domain 0 behind smmu2 (index 1) at 0x10000 + RID; domains 1-5 behind smmu1 at
    // 0x10000 x domain + RID.
    assert_eq!(topo.pci_stream(0, 0x0100), Ok(stream(1, 0x1_0100)));
    for domain in 1..=5u32 {
        assert_eq!(
            topo.pci_stream(domain, 0x0208),
            Ok(stream(0, 0x1_0000 * domain + 0x208))
        );
    }
    assert_eq!(topo.pci_stream(6, 0), Err(DiscoveryError::NotFound));
    assert_eq!(topo.id_maps().len(), 8);
    assert_eq!(topo.foreign_maps(), 0);
}

#[cfg(feature = "cmdqv")]
#[test]
fn tegra264_cmdqv_config_is_a_tegra264_board() {
    let topo = DeviceTree::new(TEGRA264).unwrap().topology().unwrap();
    let cmdqv = topo.smmus()[0].cmdqv.unwrap();
    let cfg = cmdqv.config(19, true);
    assert_eq!(cfg.phys_base, PhysAddr(0x81_0520_0000));
    assert_eq!(cfg.window_size, 0x83_0000);
    assert_eq!(cfg.board, arm_smmuv3::cmdqv::Board::Tegra264);
    assert_eq!(cfg.host_queue_log2, 12);
}

#[test]
fn synthetic_dt_covers_nested_ranges_quirks_masks_and_foreign_iommus() {
    let dt = DeviceTree::new(EDGE).unwrap();
    let topo = dt.topology().unwrap();
    let [a, b] = topo.smmus() else {
        panic!("expected two SMMUs, got {:?}", topo.smmus());
    };
    assert_eq!(a.base, PhysAddr(0x2b40_0000));
    assert_eq!(a.quirks, Quirks::BROKEN_PREFETCH);
    assert_eq!(
        a.irqs.combined,
        Some(Irq {
            intid: 132,
            trigger: Trigger::LevelHigh
        })
    );
    assert_eq!(a.irqs.eventq, None);
    assert!(!a.coherent);
    let msi = a.msi_parent.unwrap();
    assert_eq!(msi.device_id, Some(0xff_0000));
    assert_eq!(msi.base, Some(PhysAddr(0x808_0000)));
    // `nvidia,cmdqv` only counts on nvidia,tegra264-smmu.
    assert_eq!(a.cmdqv, None);

    // Two levels of ranges: 0x100000 -> 0x20100000 -> 0x10_2010_0000.
    assert_eq!(b.base, PhysAddr(0x10_2010_0000));
    assert_eq!(
        b.irqs.eventq,
        Some(Irq {
            intid: 4096 + 5,
            trigger: Trigger::EdgeFalling
        })
    );
    assert_eq!(b.irqs.gerror, edge(38));
    assert_eq!(b.irqs.priq, edge(39));
    assert!(b.coherent && b.enabled);

    // iommu-map-mask 0x3ff, then two ranges to two SMMUs; a third range goes elsewhere.
    assert_eq!(topo.pci_stream(7, 0x0080), Ok(stream(0, 0x80)));
    assert_eq!(topo.pci_stream(7, 0x0150), Ok(stream(1, 0x1050)));
    assert_eq!(topo.pci_stream(7, 0x0550), Ok(stream(1, 0x1050)));
    assert_eq!(topo.pci_stream(7, 0x0205), Err(DiscoveryError::NotFound));
    let dma = dt.device("/dma@5000000").unwrap();
    assert_eq!(
        topo.device_streams(dma).collect::<Vec<_>>(),
        [stream(1, 0x42), stream(1, 0x43)]
    );
    // The other IOMMU's iommu-map range and iommus entry are counted, not dropped silently.
    assert_eq!(topo.foreign_maps(), 2);
    assert!(topo.id_maps().iter().all(|m| matches!(
        m.owner,
        MapOwner::PciRoot { segment: 7, .. } | MapOwner::Device(_)
    )));
}

#[test]
fn cavium_property_name_is_longer_than_the_parser_accepts() {
    // The binding's `cavium,cn9900-broken-page1-regspace` (35 characters) breaks the
    // Devicetree Specification's 31-character limit, which the FDT parser enforces while
    // validating: the blob is refused whole, with a typed error, never half-read. CN99xx
    // systems boot with ACPI, where the IORT model field carries the same quirk (tested below).
    assert_eq!(
        DeviceTree::new(CAVIUM).unwrap_err(),
        DiscoveryError::Malformed {
            what: "FDT property name",
            offset: 0
        }
    );
}

#[test]
fn dt_errors_are_typed() {
    assert!(matches!(
        DeviceTree::new(BAD_INTC).unwrap().topology(),
        Err(DiscoveryError::Unsupported(_))
    ));
    assert!(matches!(
        DeviceTree::new(&[]),
        Err(DiscoveryError::Malformed { .. })
    ));
    let mut bad_magic = EDGE.to_vec();
    bad_magic[0] ^= 1;
    assert!(matches!(
        DeviceTree::new(&bad_magic),
        Err(DiscoveryError::Malformed { .. })
    ));
    // totalsize beyond the slice.
    assert!(matches!(
        DeviceTree::new(&EDGE[..EDGE.len() - 1]),
        Err(DiscoveryError::Malformed { offset: 4, .. })
    ));
    // A reference to a phandle nobody has: patch smmu_a's msi-parent phandle.
    let its = phandle_of(EDGE, "msi-parent");
    let mut dangling = EDGE.to_vec();
    let at = find(
        &dangling,
        &its.to_be_bytes(),
        first_prop_value(EDGE, "msi-parent"),
    );
    dangling[at..at + 4].copy_from_slice(&0x7777u32.to_be_bytes());
    assert_eq!(
        DeviceTree::new(&dangling).unwrap().topology().unwrap_err(),
        DiscoveryError::Dangling(0x7777)
    );
}

#[test]
fn single_byte_corruptions_of_the_dts_are_handled() {
    // A cheap, exhaustive companion of the fuzz target: flip every byte of the small trees and
    // every 31st of the Tegra264 one; nothing may panic, and what parses must be consistent.
    for (blob, step) in [(EDGE, 1), (BAD_INTC, 1), (TEGRA264, 31)] {
        let mut v = blob.to_vec();
        for i in (0..v.len()).step_by(step) {
            v[i] ^= 0xff;
            if let Ok(dt) = DeviceTree::new(&v)
                && let Ok(topo) = dt.topology()
            {
                check_consistent(&topo);
            }
            v[i] ^= 0xff;
        }
    }
}

fn check_consistent(topo: &Topology) {
    for m in topo.id_maps() {
        assert!(topo.smmu(m.smmu).is_some());
    }
}

#[test]
fn grace_iort_fixture_is_what_the_generator_builds() {
    let built = grace_iort();
    if std::env::var_os("DISCOVERY_WRITE_FIXTURES").is_some() {
        std::fs::write(
            concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/iort/grace.iort"
            ),
            &built,
        )
        .unwrap();
    }
    assert_eq!(
        built, GRACE_IORT,
        "tests/fixtures/iort/grace.iort is stale: rerun with DISCOVERY_WRITE_FIXTURES=1"
    );
}

#[test]
fn grace_iort_has_four_smmus_each_with_its_cmdqv() {
    let iort = Iort::new(GRACE_IORT).unwrap();
    let topo = iort.topology(&GRACE_CMDQVS).unwrap();
    assert_eq!(topo.smmus().len(), 4);
    for (i, smmu) in topo.smmus().iter().enumerate() {
        let FwNode::Iort { identifier, offset } = smmu.fw else {
            panic!("{smmu:?}");
        };
        assert_eq!(identifier, i as u32);
        assert_eq!(iort.smmu_model(offset), Some(SmmuModel::Generic));
        assert_eq!(smmu.base, PhysAddr(iort_builder::GRACE_SMMU_BASES[i]));
        assert_eq!(smmu.size, 0x2_0000);
        assert!(smmu.coherent, "COHACC override set");
        assert_eq!(smmu.quirks, Quirks::empty());
        assert_eq!(smmu.irqs.eventq, edge(iort_builder::grace_event_gsiv(i)));
        assert_eq!(
            smmu.irqs.gerror,
            edge(iort_builder::grace_event_gsiv(i) + 1)
        );
        assert_eq!((smmu.irqs.priq, smmu.irqs.cmdq_sync), (None, None));
        // PRI and sync are not wired, so the SMMU's own MSIs have a DeviceID at the ITS.
        let msi = smmu.msi_parent.unwrap();
        assert_eq!(msi.device_id, Some(0x1_0000 + i as u32));
        let cmdqv = smmu.cmdqv.unwrap();
        let dsdt = GRACE_CMDQVS[i];
        assert_eq!(
            (cmdqv.base, cmdqv.size, cmdqv.irq),
            (dsdt.base, dsdt.size, dsdt.irq)
        );
        assert_eq!(cmdqv.model, CmdqvModel::Tegra241);
    }
    // Segment k behind SMMU k, RID = StreamID; segment 4 shares SMMU 0 at 0x10000 + RID.
    for seg in 0..4u32 {
        assert_eq!(topo.pci_stream(seg, 0x0310), Ok(stream(seg as u8, 0x310)));
    }
    assert_eq!(topo.pci_stream(4, 0x0310), Ok(stream(0, 0x1_0310)));
    // Segment 5 goes straight to the ITS: no SMMU translates it.
    assert_eq!(topo.pci_stream(5, 0), Err(DiscoveryError::NotFound));
    assert_eq!(topo.foreign_maps(), 1);
    let eth = iort.named_component("\\_SB.ETH0").unwrap();
    assert!(matches!(eth, DeviceRef::Iort(_)));
    assert_eq!(
        topo.device_streams(eth).collect::<Vec<_>>(),
        [stream(1, 0x5)]
    );
    assert_eq!(iort.named_component("\\_SB.NONE"), None);
}

#[test]
fn iort_without_its_dsdt_device_has_no_cmdqv() {
    let topo = Iort::new(GRACE_IORT).unwrap().topology(&[]).unwrap();
    assert!(topo.smmus().iter().all(|s| s.cmdqv.is_none()));
    // A _UID that matches no SMMU pairs with nothing.
    let stray = AcpiCmdqv {
        uid: 99,
        ..GRACE_CMDQVS[0]
    };
    let topo = Iort::new(GRACE_IORT).unwrap().topology(&[stray]).unwrap();
    assert_eq!(topo.cmdqvs().count(), 0);
}

#[test]
fn iort_models_imply_quirks_and_the_cavium_combined_line() {
    let mut b = IortBuilder::new();
    let its = b.its_group();
    let cavium = b.smmu_v3(
        7,
        0x4000_0000,
        0,
        2,
        [0x50, 0x50, 0x50, 0x50],
        Some((its, 9)),
    );
    let hisi = b.smmu_v3(8, 0x5000_0000, 1, 1, [0x60, 0x61, 0x62, 0x63], None);
    let rc = b.root_complex(0);
    b.map(rc, 0, 0x100, 0, cavium, false);
    b.map(rc, 0x100, 0x100, 0, hisi, false);
    let blob = b.finish();
    let topo = Iort::new(&blob).unwrap().topology(&GRACE_CMDQVS).unwrap();
    let [c, h] = topo.smmus() else { panic!() };
    assert_eq!(c.quirks, Quirks::PAGE0_REGS_ONLY);
    assert_eq!(c.size, 0x1_0000);
    assert_eq!(c.irqs.combined, edge(0x50));
    assert_eq!(c.irqs.eventq, None);
    assert!(!c.coherent);
    assert_eq!(h.quirks, Quirks::BROKEN_PREFETCH);
    assert_eq!(h.irqs.cmdq_sync, edge(0x63));
    assert!(h.coherent);
    // Only a generic model looks for an NVDA200C companion (identifiers 7 and 8 match none
    // anyway; this checks the model gate with a matching _UID).
    let mut b = IortBuilder::new();
    b.smmu_v3(0, 0x4000_0000, 1, 2, [1, 2, 3, 4], None);
    let blob = b.finish();
    let topo = Iort::new(&blob).unwrap().topology(&GRACE_CMDQVS).unwrap();
    assert_eq!(topo.smmus()[0].cmdqv, None);
    // ID count is "number of IDs minus one": 0x100 IDs cover 0x00..=0xff, inclusive.
    assert_eq!(
        Iort::new(&{
            let mut b = IortBuilder::new();
            let s = b.smmu_v3(0, 0, 1, 0, [1, 2, 3, 4], None);
            let rc = b.root_complex(3);
            b.map(rc, 0x10, 0x100, 0x500, s, false);
            b.finish()
        })
        .unwrap()
        .topology(&[])
        .unwrap()
        .pci_stream(3, 0x10f),
        Ok(stream(0, 0x5ff))
    );
}

#[test]
fn iort_errors_are_typed() {
    let good = GRACE_IORT;
    let malformed = |blob: &[u8]| {
        let r = Iort::new(blob).and_then(|i| i.topology(&[]));
        assert!(matches!(r, Err(DiscoveryError::Malformed { .. })), "{r:?}");
    };
    malformed(&[]);
    malformed(&good[..40]);
    let mut bad_sum = good.to_vec();
    bad_sum[60] ^= 1;
    malformed(&bad_sum);
    let mut bad_sig = good.to_vec();
    bad_sig[0] = b'X';
    malformed(&bad_sig);
    // Length beyond the slice.
    malformed(&good[..good.len() - 1]);
    // A node whose ID mapping array runs past its end.
    let mut b = IortBuilder::new();
    let s = b.smmu_v3(0, 0, 1, 0, [1, 2, 3, 4], None);
    let rc = b.root_complex(0);
    b.map(rc, 0, 1, 0, s, false);
    let mut blob = b.finish();
    let rc_off = b.offsets()[1] as usize;
    let count = u32::from_le_bytes(blob[rc_off + 8..rc_off + 12].try_into().unwrap());
    blob[rc_off + 8..rc_off + 12].copy_from_slice(&(count + 1).to_le_bytes());
    iort_builder::fix_checksum(&mut blob);
    malformed(&blob);
    // An output reference into the middle of nowhere.
    let mut b = IortBuilder::new();
    b.smmu_v3(0, 0, 1, 0, [1, 2, 3, 4], None);
    let rc = b.root_complex(0);
    b.map(rc, 0, 1, 0, Target::Raw(0xfff0), false);
    let blob = b.finish();
    assert_eq!(
        Iort::new(&blob).unwrap().topology(&[]).unwrap_err(),
        DiscoveryError::Dangling(0xfff0)
    );
}

#[test]
fn every_single_byte_corruption_of_the_iort_is_handled() {
    let mut v = GRACE_IORT.to_vec();
    for i in 0..v.len() {
        for x in [0x01u8, 0x80, 0xff] {
            v[i] ^= x;
            // Keep the checksum right so the corruption reaches the node walk.
            let mut fixed = v.clone();
            iort_builder::fix_checksum(&mut fixed);
            for blob in [&v, &fixed] {
                if let Ok(iort) = Iort::new(blob)
                    && let Ok(topo) = iort.topology(&GRACE_CMDQVS)
                {
                    check_consistent(&topo);
                }
            }
            v[i] ^= x;
        }
    }
}

/// The phandle value of the first `name` property's first cell.
fn phandle_of(blob: &[u8], name: &str) -> u32 {
    let at = first_prop_value(blob, name);
    u32::from_be_bytes(blob[at..at + 4].try_into().unwrap())
}

/// Byte offset of the value of the first property called `name` (walking FDT_PROP tokens).
fn first_prop_value(blob: &[u8], name: &str) -> usize {
    let be = |at: usize| u32::from_be_bytes(blob[at..at + 4].try_into().unwrap()) as usize;
    let (off_struct, off_strings) = (be(8), be(12));
    let mut at = off_struct;
    loop {
        match be(at) {
            1 => {
                at += 4;
                while blob[at] != 0 {
                    at += 1;
                }
                at = (at + 4) & !3;
            }
            2 | 4 => at += 4,
            3 => {
                let (len, nameoff) = (be(at + 4), be(at + 8));
                let s = &blob[off_strings + nameoff..];
                let n = s.iter().position(|&b| b == 0).unwrap();
                if &s[..n] == name.as_bytes() {
                    return at + 12;
                }
                at = (at + 12 + len + 3) & !3;
            }
            _ => panic!("no property {name}"),
        }
    }
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> usize {
    from + hay[from..]
        .windows(needle.len())
        .position(|w| w == needle)
        .unwrap()
}

fn reg(base: u64, size: u64) -> Result<Reg, DiscoveryError> {
    Ok(Reg {
        base: PhysAddr(base),
        size,
    })
}

#[test]
fn qemu_virt_console_is_found_through_stdout_path() {
    let dt = DeviceTree::new(QEMU_VIRT).unwrap();
    assert_eq!(dt.stdout_path(), Ok(Some("/pl011@9000000")));
    assert_eq!(
        dt.stdout(),
        Ok(Some(Console {
            path: "/pl011@9000000",
            compatible: Some("arm,pl011"),
            reg: Reg {
                base: PhysAddr(0x0900_0000),
                size: 0x1000,
            },
        }))
    );
    // The SMMU's own reg through the public call agrees with the topology.
    let smmu = dt.topology().unwrap().smmus()[0];
    assert_eq!(dt.reg("/smmuv3@9050000", 0), reg(smmu.base.0, smmu.size));
    assert_eq!(dt.reg("/smmuv3@9050000", 1), Err(DiscoveryError::NotFound));
    assert_eq!(dt.reg("/no-such-node", 0), Err(DiscoveryError::NotFound));
}

#[test]
fn tegra264_reg_is_translated_through_nested_ranges() {
    let dt = DeviceTree::new(TEGRA264).unwrap();
    // hda behind bus@8800000000 (child 0 -> 0x88_0000_0000).
    assert_eq!(
        dt.reg("/bus@8800000000/hda@90b0000", 0),
        reg(0x88_090b_0000, 0x1_0000)
    );
    // The ITS behind the GIC's ranges (0 -> 0x4600_0000) behind bus@8100000000.
    let its = dt.reg(
        "/bus@8100000000/interrupt-controller@46000000/msi-controller@40000",
        0,
    );
    assert_eq!(its, reg(0x81_4604_0000, 0x4_0000));
    // The GIC's second entry (redistributors).
    assert_eq!(
        dt.reg("/bus@8100000000/interrupt-controller@46000000", 1),
        reg(0x81_4608_0000, 0x40_0000)
    );
    // This tree has no stdout-path (the extract keeps no serial node).
    assert_eq!(dt.stdout_path(), Ok(None));
    assert_eq!(dt.stdout(), Ok(None));
}

#[test]
fn console_alias_options_and_untranslatable_nodes() {
    let dt = DeviceTree::new(CONSOLE).unwrap();
    assert_eq!(
        dt.stdout_path(),
        Ok(Some("/soc@40000000/apb@100000/serial@2000"))
    );
    let console = dt.stdout().unwrap().unwrap();
    assert_eq!(console.compatible, Some("arm,pl011"));
    // 0x2000 -> apb window 0 (0 -> 0x10_0000) -> soc (0 -> 0x4000_0000).
    assert_eq!(Ok(console.reg), reg(0x4010_2000, 0x1000));
    // The second entry falls in the apb's second window.
    let timer = "/soc@40000000/apb@100000/timer@20000";
    assert_eq!(dt.reg(timer, 0), reg(0x4020_0000, 0x100));
    assert_eq!(dt.reg(timer, 1), reg(0x4020_0800, 0x100));
    assert_eq!(dt.reg(timer, 2), Err(DiscoveryError::NotFound));
    // An I2C device: its parent has no ranges, so it has no CPU address.
    assert!(matches!(
        dt.reg("/soc@40000000/i2c@300000/eeprom@50", 0),
        Err(DiscoveryError::Unsupported(_))
    ));
    assert_eq!(
        dt.reg("/soc@40000000/i2c@300000", 0),
        reg(0x4030_0000, 0x1000)
    );
    // A node without reg.
    assert_eq!(dt.reg("/chosen", 0), Err(DiscoveryError::NotFound));
}

#[test]
fn corrupted_console_tree_never_panics() {
    for at in 0..CONSOLE.len() {
        for x in [0x01u8, 0x20, 0x80, 0xff] {
            let mut b = CONSOLE.to_vec();
            b[at] ^= x;
            let Ok(dt) = DeviceTree::new(&b) else {
                continue;
            };
            let _ = dt.stdout();
            let _ = dt.reg("/soc@40000000/apb@100000/timer@20000", 1);
        }
    }
}
