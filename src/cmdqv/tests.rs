//! Tests of the CMDQV driver against the software model.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::sync::{Arc, Mutex};

use super::regs::{self, offset as off};
use super::*;
use crate::command::{CmdqEntry, Command, TlbiRange};
use crate::error::{CmdqError, Object, Quantity, errno};
use crate::fake::cmdqv::{
    AckTarget, CmdqvModel, CmdqvModelParams, CmdqvReg, ModelError, RecordingCommandSink, VcmdqFault,
};
use crate::fake::{DmaArena, ModelArena, ModelPlatform, SmmuModel};
use crate::ids::{Asid, StreamId, VStreamId};
use crate::iommufd::VeventTegra241Cmdqv;
use crate::platform::DmaMemory;

/// The CMDQV model beside the SMMU model, one platform hook and one DMA arena for both.
struct Rig {
    smmu: Arc<SmmuModel>,
    fake: Arc<CmdqvModel>,
    cmdqv: Cmdqv<ModelPlatform, ModelArena>,
    main: RecordingCommandSink,
}

impl Rig {
    fn alloc(&self, bytes: u64) -> PhysAddr {
        let n = bytes as usize;
        self.smmu.dma().alloc(n, n).unwrap().paddr
    }

    fn write_entry(&self, pa: PhysAddr, e: CmdqEntry) {
        self.smmu.dma().write_dwords(pa, &e.0).unwrap();
    }
}

fn config_for(fake: &CmdqvModel) -> CmdqvConfig {
    CmdqvConfig {
        host_queue_log2: 4,
        ..CmdqvConfig::new(fake.phys(), fake.size(), 8)
    }
}

fn rig_with(params: CmdqvModelParams, tweak: impl FnOnce(&CmdqvModel, &mut CmdqvConfig)) -> Rig {
    let smmu = SmmuModel::qemu_virt();
    let fake = CmdqvModel::attach(&smmu, params);
    let mut cfg = config_for(&fake);
    tweak(&fake, &mut cfg);
    // SAFETY: the model's window is `fake.size()` bytes, lives as long as `fake`, and only this
    // driver (and tests acting as guests) touch it.
    let cmdqv =
        unsafe { Cmdqv::new(fake.base().cast(), smmu.platform(), smmu.lend_dma(), cfg) }.unwrap();
    Rig {
        smmu,
        fake,
        cmdqv,
        main: RecordingCommandSink::default(),
    }
}

fn ready_rig() -> Rig {
    let mut r = rig_with(CmdqvModelParams::TEST, |_, _| {});
    r.cmdqv.reset(&r.main).unwrap();
    r
}

fn tlbi_asid(vmid: u16, asid: u16) -> Command {
    Command::TlbiNhAsid {
        vmid: Vmid(vmid),
        asid: Asid(asid),
    }
}

fn tlbi_va(asid: u16, addr: u64) -> Command {
    Command::TlbiNhVa {
        vmid: Vmid(0),
        asid: Asid(asid),
        addr,
        leaf: true,
        range: TlbiRange::NONE,
    }
}

fn cfgi_ste(sid: u32) -> Command {
    Command::CfgiSte {
        sid: StreamId(sid),
        leaf: true,
    }
}

fn atc_inv(sid: u32) -> Command {
    Command::AtcInv {
        sid: StreamId(sid),
        ssid: None,
        global: false,
        addr: 0x1000,
        size: 0,
    }
}

#[test]
fn probe_decodes_param_and_hw_info() {
    let r = rig_with(CmdqvModelParams::TEST, |_, _| {});
    let p = r.cmdqv.param();
    assert_eq!(
        (p.version, p.vcmdqs_log2, p.vintfs_log2, p.sids_log2),
        (1, 4, 2, 4)
    );
    assert_eq!(r.cmdqv.num_vintfs(), 4);
    assert_eq!(r.cmdqv.lvcmdqs_per_vintf(), 4);
    assert_eq!(r.cmdqv.sid_slots(), 16);
    let info = r.cmdqv.hw_info();
    assert_eq!(info.to_bytes(), [0, 0, 0, 0, 1, 2, 4, 0]);
    assert!(!r.cmdqv.is_ready());
    // Probe only reads PARAM.
    let c = r.fake.mmio_counts();
    assert_eq!((c.reads, c.writes), (1, 0));
    assert_eq!(c.get(CmdqvReg::Param), (1, 0));
    // One 256-byte ring per host queue, naturally aligned.
    assert_eq!(r.alloc(1).0, DmaArena::DEFAULT_PA_BASE + 4 * 256);
}

#[test]
fn probe_refuses_unusable_params_and_windows() {
    let (fake, arena, platform) = CmdqvModel::standalone(CmdqvModelParams {
        version: 1,
        vcmdqs_log2: 1,
        vintfs_log2: 2,
        sids_log2: 4,
    });
    // SAFETY: as in `rig_with`.
    let e = unsafe {
        Cmdqv::new(
            fake.base().cast(),
            platform.clone(),
            &*arena,
            config_for(&fake),
        )
    };
    assert_eq!(e.unwrap_err(), Error::Unsupported(Feature::Cmdqv));
    let mut small = config_for(&fake);
    small.window_size = 0x40000;
    // SAFETY: as in `rig_with`.
    let e = unsafe { Cmdqv::new(fake.base().cast(), platform.clone(), &*arena, small) };
    assert_eq!(e.unwrap_err(), Error::Unsupported(Feature::Cmdqv));
    let (fake, arena, platform) = CmdqvModel::standalone(CmdqvModelParams::TEST);
    let mut deep = config_for(&fake);
    deep.host_queue_log2 = 9;
    // SAFETY: as in `rig_with`.
    let e = unsafe { Cmdqv::new(fake.base().cast(), platform.clone(), &*arena, deep) };
    assert_eq!(
        e.unwrap_err(),
        Error::OutOfRange {
            what: Quantity::QueueLog2,
            value: 9,
            max: u64::from(deep.cmdq_log2_max)
        }
    );
    let mut empty = config_for(&fake);
    empty.host_queue_log2 = 0;
    // SAFETY: as in `rig_with`.
    let e = unsafe { Cmdqv::new(fake.base().cast(), platform, &*arena, empty) };
    let e = e.unwrap_err();
    assert_eq!(
        e,
        Error::TooSmall {
            what: Quantity::QueueLog2,
            value: 0,
            min: 1
        }
    );
    assert_eq!(e.errno(), -errno::EINVAL);
}

#[test]
fn window_smaller_than_param_caps_the_vintfs() {
    let r = rig_with(CmdqvModelParams::TEST, |_, cfg| {
        cfg.window_size = regs::window_size(2)
    });
    assert_eq!(r.cmdqv.num_vintfs(), 2);
    assert_eq!(
        r.cmdqv.lvcmdqs_per_vintf(),
        4,
        "the partition still follows PARAM"
    );
}

#[test]
fn reset_enables_vintf0_with_hyp_own_and_maps_its_queues_in_order() {
    let r = ready_rig();
    assert!(r.cmdqv.is_ready());
    assert!(r.cmdqv.hyp_own());
    assert!(r.fake.enabled());
    let (cfg, en) = r.fake.vintf(0).unwrap();
    assert!(en);
    assert_eq!(cfg, (1 << 17) | 1, "HYP_OWN, VMID 0, EN");
    for l in 0..4 {
        assert_eq!(r.fake.global_of(0, l), Some(l), "static partition v*per+l");
        let q = r.fake.queue(l).unwrap();
        assert!(q.enabled);
        assert_eq!(q.base & 0x1F, 4);
        assert_eq!(q.base & !0x1F, DmaArena::DEFAULT_PA_BASE + 256 * l as u64);
    }
    // Other VINTFs' CMDQ_ALLOC carry their static assignment, unallocated.
    assert_eq!(r.fake.queue(5).unwrap().alloc, (1 << 15) | (1 << 1));
    assert_eq!(r.fake.errors(), vec![]);
    // Each VCMDQ teardown during init issued one CMD_SYNC on the SMMU's queue.
    assert_eq!(r.main.batches(), vec![Vec::<Command>::new(); 4]);
}

#[test]
fn reset_twice_tears_down_in_descending_order_first() {
    let mut r = ready_rig();
    r.cmdqv.reset(&r.main).unwrap();
    assert_eq!(r.fake.errors(), vec![]);
    assert!(r.cmdqv.is_ready());
    assert_eq!(r.main.batches().len(), 4 + 4 + 4);
}

#[test]
fn every_enable_handshake_is_bounded() {
    for (target, what) in [
        (AckTarget::Cmdqv, WaitFor::CmdqvEnable),
        (AckTarget::Vintf(0), WaitFor::VintfEnable),
        (AckTarget::Vcmdq(2), WaitFor::VcmdqEnable),
    ] {
        let mut r = rig_with(CmdqvModelParams::TEST, |_, cfg| cfg.timeout_us = 50);
        r.fake.set_never_ack(target, true);
        let start = r.cmdqv.platform().now_us();
        assert_eq!(r.cmdqv.reset(&r.main), Err(Error::Timeout(what)));
        assert!(r.cmdqv.platform().now_us() - start <= 60);
        assert!(!r.cmdqv.is_ready());
    }
}

#[test]
fn host_batch_runs_on_the_cpus_queue_with_one_prod_write_and_one_cons_read() {
    let r = ready_rig();
    r.fake.reset_mmio_counts();
    let cmds = [tlbi_asid(0, 7), cfgi_ste(3), tlbi_va(7, 0x4000)];
    r.cmdqv.submit(CpuIndex(5), &cmds, &r.main).unwrap();
    let mut want = cmds.to_vec();
    want.push(Command::sync());
    assert_eq!(r.fake.commands(1), want, "CPU 5 → LVCMDQ 5 % 4 = 1");
    for q in [0, 2, 3] {
        assert!(r.fake.commands(q).is_empty());
    }
    let c = r.fake.mmio_counts();
    assert_eq!(c.get(CmdqvReg::Prod), (0, 1));
    assert_eq!(c.get(CmdqvReg::Cons), (1, 0));
    assert_eq!(c.total(), 2, "nothing else per batch");
    assert_eq!(
        r.main.batches().len(),
        4,
        "only the init syncs went to the SMMU queue"
    );
}

#[test]
fn batches_larger_than_the_ring_wait_for_space_and_keep_order() {
    let r = ready_rig();
    let cmds: Vec<Command> = (0..40).map(|i| tlbi_asid(0, i)).collect();
    for _ in 0..3 {
        r.cmdqv.submit(CpuIndex(2), &cmds, &r.main).unwrap();
    }
    let log = r.fake.commands(2);
    assert_eq!(log.len(), 3 * 41);
    for chunk in log.chunks(41) {
        assert_eq!(&chunk[..40], &cmds[..]);
        assert_eq!(chunk[40], Command::sync());
    }
    assert_eq!(r.fake.errors(), vec![]);
}

#[test]
fn bypass_and_not_ready_use_the_smmu_queue() {
    let r = rig_with(CmdqvModelParams::TEST, |_, _| {});
    r.cmdqv
        .submit(CpuIndex(0), &[cfgi_ste(1)], &r.main)
        .unwrap();
    assert_eq!(r.main.batches(), vec![vec![cfgi_ste(1)]]);

    let mut r = rig_with(CmdqvModelParams::TEST, |_, cfg| cfg.bypass_vcmdq = true);
    r.cmdqv.reset(&r.main).unwrap();
    r.cmdqv
        .submit(CpuIndex(0), &[cfgi_ste(2)], &r.main)
        .unwrap();
    assert_eq!(r.main.batches().last(), Some(&vec![cfgi_ste(2)]));
    assert!(r.fake.commands(0).is_empty());
}

#[test]
fn without_hyp_own_only_the_guest_subset_goes_to_the_vcmdq() {
    let mut r = rig_with(CmdqvModelParams::TEST, |_, _| {});
    r.fake.set_hyp_own_wired_zero(true);
    r.cmdqv.reset(&r.main).unwrap();
    assert!(!r.cmdqv.hyp_own(), "HYP_OWN read back as 0");
    let before = r.main.batches().len();
    let cmds = [
        tlbi_asid(0, 1),
        cfgi_ste(9),
        cfgi_ste(10),
        tlbi_va(1, 0x2000),
        atc_inv(4),
    ];
    // The model rejects an ATC_INV whose SID has no SID_MATCH: bind one on VINTF0 by hand.
    r.fake.write32(off::VINTF + off::SID_REPLACE, 4);
    r.fake.write32(off::VINTF + off::SID_MATCH, (4 << 1) | 1);
    r.cmdqv.submit(CpuIndex(0), &cmds, &r.main).unwrap();
    assert_eq!(
        r.fake.commands(0),
        vec![
            tlbi_asid(0, 1),
            Command::sync(),
            tlbi_va(1, 0x2000),
            atc_inv(4),
            Command::sync()
        ]
    );
    assert_eq!(
        r.main.batches()[before..],
        [vec![cfgi_ste(9), cfgi_ste(10)]]
    );
}

#[test]
fn tegra264_repeats_cfgi_and_tlbi_after_the_sync_but_never_atc_inv() {
    let mut r = rig_with(CmdqvModelParams::TEST, |_, cfg| cfg.board = Board::Tegra264);
    r.cmdqv.reset(&r.main).unwrap();
    r.fake.reset_mmio_counts();
    let cmds = [cfgi_ste(1), atc_inv(2), tlbi_va(3, 0x8000)];
    r.cmdqv.submit(CpuIndex(0), &cmds, &r.main).unwrap();
    assert_eq!(
        r.fake.commands(0),
        vec![
            cfgi_ste(1),
            atc_inv(2),
            tlbi_va(3, 0x8000),
            Command::sync(),
            cfgi_ste(1),
            tlbi_va(3, 0x8000),
            Command::sync()
        ]
    );
    assert_eq!(r.fake.mmio_counts().get(CmdqvReg::Prod), (0, 2));
    // A batch of only ATC_INV is not repeated.
    r.cmdqv.submit(CpuIndex(0), &[atc_inv(5)], &r.main).unwrap();
    assert_eq!(r.fake.commands(0).len(), 7 + 2);
    assert_eq!(Board::Tegra264.smmu_quirks(), Quirks::REPEAT_CFGI_TLBI);
    assert_eq!(Board::Tegra241.smmu_quirks(), Quirks::empty());
}

#[test]
fn illegal_command_on_a_host_queue_is_skipped_and_reported() {
    let r = ready_rig();
    r.fake.inject_error(3, 1, VcmdqFault::Illegal);
    let cmds = [tlbi_asid(0, 1), cfgi_ste(2), tlbi_asid(0, 3)];
    let err = r.cmdqv.submit(CpuIndex(3), &cmds, &r.main).unwrap_err();
    assert_eq!(err, Error::Cmdq(CmdqError::Illegal(cfgi_ste(2).encode().0)));
    assert_eq!(err.errno(), -errno::EIO);
    assert_eq!(
        r.fake.commands(3),
        vec![
            tlbi_asid(0, 1),
            Command::sync(),
            tlbi_asid(0, 3),
            Command::sync()
        ],
        "the bad command became a CMD_SYNC"
    );
    let q = r.fake.queue(3).unwrap();
    assert_eq!(q.gerror, q.gerrorn, "acknowledged");
    assert_eq!(q.gerror, 1);
    assert_eq!(r.fake.irq_count(), 1);
    assert_eq!(
        r.fake.vintf_err_map(),
        0,
        "maps cleared by the acknowledgement"
    );
    // The interrupt that arrives late finds nothing to do.
    assert_eq!(r.cmdqv.handle_error(&NoSink), CmdqvErrorStats::default());
    // The next batch is clean.
    r.cmdqv
        .submit(CpuIndex(3), &[tlbi_asid(0, 4)], &r.main)
        .unwrap();
}

#[test]
fn abort_and_atc_inv_sync_are_acknowledged_and_retried() {
    let r = ready_rig();
    // As the SMMU's queue: the batch succeeds, the fetch (or the CMD_SYNC) is retried.
    r.fake.inject_error(0, 0, VcmdqFault::Abort);
    r.cmdqv
        .submit(CpuIndex(0), &[cfgi_ste(1)], &r.main)
        .unwrap();
    assert_eq!(r.fake.commands(0), vec![cfgi_ste(1), Command::sync()]);
    assert_eq!(r.cmdqv.host_queue_counters(0).unwrap().abort, 1);

    r.fake.inject_error(1, 0, VcmdqFault::AtcInvSync);
    r.cmdqv.submit(CpuIndex(1), &[atc_inv(1)], &r.main).unwrap();
    assert_eq!(r.fake.commands(1), vec![atc_inv(1), Command::sync()]);
    assert_eq!(r.cmdqv.host_queue_counters(1).unwrap().atc_inv_sync, 1);
    assert_eq!(r.fake.irq_count(), 2);
    assert_eq!(r.fake.vintf_err_map(), 0);
}

#[test]
fn a_stuck_host_queue_times_out() {
    let mut r = rig_with(CmdqvModelParams::TEST, |_, cfg| cfg.timeout_us = 100);
    r.cmdqv.reset(&r.main).unwrap();
    // Disable queue 0 behind the driver's back: PROD is not consumed.
    r.fake.write32(regs::vintf_page0(0) + off::VCMDQ_CONFIG, 0);
    assert_eq!(
        r.cmdqv.submit(CpuIndex(0), &[cfgi_ste(1)], &r.main),
        Err(Error::Timeout(WaitFor::CmdSync))
    );
}

struct NoSink;
impl CmdqvEventSink for NoSink {
    fn report(&self, vintf: VintfId, _event: VeventTegra241Cmdqv) {
        panic!("unexpected report for {vintf}");
    }
}

#[derive(Default)]
struct VecSink(Mutex<Vec<(VintfId, [u64; 2])>>);
impl CmdqvEventSink for VecSink {
    fn report(&self, vintf: VintfId, event: VeventTegra241Cmdqv) {
        self.0.lock().unwrap().push((vintf, event.lvcmdq_err_map));
    }
}

// ---- guest VINTFs ----

fn guest_queue(r: &Rig, bytes: u64) -> PhysAddr {
    r.alloc(bytes)
}

#[test]
fn guest_vintf_gets_its_vmid_no_hyp_own_and_a_mappable_page() {
    let r = ready_rig();
    let g = r.cmdqv.vintf_alloc(Vmid(0x42)).unwrap();
    assert_eq!(g.id, VintfId(1));
    assert_eq!(g.page0.phys, PhysAddr(CmdqvModel::DEFAULT_PHYS.0 + 0x50000));
    assert_eq!(g.page0.mmap_offset, 0x50000);
    assert_eq!(g.page0.mmap_length, 0x10000);
    assert_eq!(r.cmdqv.vintf_page(g.id), Some(g.page0));
    let (cfg, en) = r.fake.vintf(1).unwrap();
    assert!(en);
    assert_eq!(cfg, (0x42 << 1) | 1, "VMID, EN, HYP_OWN clear");
    assert_eq!(r.cmdqv.vintf_alloc(Vmid(2)).unwrap().id, VintfId(2));
    assert_eq!(r.cmdqv.vintf_alloc(Vmid(3)).unwrap().id, VintfId(3));
    assert_eq!(r.cmdqv.vintf_alloc(Vmid(4)), Err(Error::NoSpace));
    r.cmdqv.vintf_free(VintfId(2)).unwrap();
    assert!(!r.fake.vintf(2).unwrap().1);
    assert_eq!(r.cmdqv.vintf_page(VintfId(2)), None);
    assert_eq!(r.cmdqv.vintf_alloc(Vmid(5)).unwrap().id, VintfId(2));
    // VINTF0 is the host's, 9 is beyond the VINTFs: neither is a guest VINTF.
    for v in [0, 9] {
        let e = r.cmdqv.vintf_free(VintfId(v)).unwrap_err();
        assert_eq!(e, Error::NoSuch(Object::Vintf(v)));
        assert_eq!(e.errno(), -errno::ENOENT);
    }
}

/// A reset would re-enable CMDQV under a guest's VINTF: refused, naming the first one.
#[test]
fn reset_refuses_while_a_guest_vintf_exists() {
    let mut r = ready_rig();
    let g = r.cmdqv.vintf_alloc(Vmid(1)).unwrap();
    let e = r.cmdqv.reset(&r.main).unwrap_err();
    assert_eq!(e, Error::InUse(Object::Vintf(g.id.0)));
    assert_eq!(e.errno(), -errno::EBUSY);
    r.cmdqv.vintf_free(g.id).unwrap();
    r.cmdqv.reset(&r.main).unwrap();
}

#[test]
fn guest_vintf_needs_reset_first() {
    let r = rig_with(CmdqvModelParams::TEST, |_, _| {});
    assert_eq!(r.cmdqv.vintf_alloc(Vmid(1)), Err(Error::Disabled));
}

#[test]
fn vdevice_binding_programs_sid_replace_then_sid_match() {
    let r = ready_rig();
    let g = r.cmdqv.vintf_alloc(Vmid(1)).unwrap();
    r.fake.reset_mmio_counts();
    let s = r
        .cmdqv
        .vdevice_bind(g.id, VStreamId(0x10), StreamId(0x1234))
        .unwrap();
    assert_eq!(s, SidSlot(0));
    assert_eq!(r.fake.sid_pair(1, 0), Some(((0x10 << 1) | 1, 0x1234)));
    let c = r.fake.mmio_counts();
    assert_eq!(c.get(CmdqvReg::SidReplace), (0, 1));
    assert_eq!(c.get(CmdqvReg::SidMatch), (0, 1));
    assert_eq!(
        r.cmdqv.vdevice_bind(g.id, VStreamId(0x10), StreamId(1)),
        Err(Error::AlreadyExists(Object::VDevice(VStreamId(0x10))))
    );
    assert_eq!(
        r.cmdqv
            .vdevice_bind(g.id, VStreamId(1 << 20), StreamId(1))
            .map_err(Error::errno),
        Err(-errno::EINVAL)
    );
    for i in 1..16 {
        r.cmdqv
            .vdevice_bind(g.id, VStreamId(0x100 + i), StreamId(i))
            .unwrap();
    }
    assert_eq!(
        r.cmdqv.vdevice_bind(g.id, VStreamId(0x200), StreamId(1)),
        Err(Error::NoSpace)
    );
    assert_eq!(
        r.cmdqv.vintf_free(g.id),
        Err(Error::InUse(Object::Vintf(g.id.0)))
    );
    r.cmdqv.vdevice_unbind(g.id, VStreamId(0x10)).unwrap();
    assert_eq!(r.fake.sid_pair(1, 0), Some((0, 0)));
    assert_eq!(
        r.cmdqv.vdevice_unbind(g.id, VStreamId(0x10)),
        Err(Error::NoSuch(Object::VDevice(VStreamId(0x10))))
    );
    assert_eq!(
        r.cmdqv.vdevice_unbind(VintfId(2), VStreamId(0x300)),
        Err(Error::NoSuch(Object::Vintf(2)))
    );
    assert_eq!(
        r.cmdqv.vdevice_bind(g.id, VStreamId(0x300), StreamId(7)),
        Ok(SidSlot(0))
    );
}

/// The refusals of `hw_queue_alloc`/`hw_queue_free` carry the queue, the offending value and
/// the limit (the errno of each is pinned by `hw_queue_allocation_follows_the_linux_rules`).
#[test]
fn hw_queue_errors_name_the_queue_and_the_limit() {
    let r = ready_rig();
    let g = r.cmdqv.vintf_alloc(Vmid(7)).unwrap();
    let pa = guest_queue(&r, 0x1000);
    let vcmdq = |index| Object::Vcmdq {
        vintf: g.id.0,
        index,
    };
    let max_len = 16u64 << r.cmdqv.config().cmdq_log2_max;
    let alloc = |index, base, length| r.cmdqv.hw_queue_alloc(g.id, index, base, length, &r.main);
    assert_eq!(
        alloc(4, pa, 256),
        Err(Error::OutOfRange {
            what: Quantity::Index,
            value: 4,
            max: r.cmdqv.lvcmdqs_per_vintf() as u64 - 1
        })
    );
    assert_eq!(alloc(1, pa, 256), Err(Error::OutOfOrder(vcmdq(0))));
    for length in [0, 16, 48, max_len * 2] {
        assert_eq!(
            alloc(0, pa, length),
            Err(Error::OutOfRange {
                what: Quantity::Length,
                value: length,
                max: max_len
            })
        );
    }
    assert_eq!(
        alloc(0, pa.add(0x20), 256),
        Err(Error::Misaligned {
            what: Quantity::Address,
            value: pa.0 + 0x20,
            align: 256
        })
    );
    assert_eq!(
        alloc(0, PhysAddr(1 << 48), 256),
        Err(Error::OutOfRange {
            what: Quantity::Address,
            value: 1 << 48,
            max: (1 << 48) - 32
        })
    );
    assert_eq!(
        alloc(0, PhysAddr(!0xFF), 512),
        Err(Error::RangeWraps {
            base: !0xFF,
            length: 512
        })
    );
    assert_eq!(
        r.cmdqv.hw_queue_alloc(VintfId(2), 0, pa, 256, &r.main),
        Err(Error::NoSuch(Object::Vintf(2)))
    );
    alloc(0, pa, 256).unwrap();
    assert_eq!(alloc(0, pa, 256), Err(Error::AlreadyExists(vcmdq(0))));
    alloc(1, pa.add(0x100), 256).unwrap();
    // Freeing: the queue asked for is named, missing or still needed by its successor.
    assert_eq!(
        r.cmdqv.hw_queue_free(g.id, 0, &r.main),
        Err(Error::InUse(vcmdq(0)))
    );
    assert_eq!(
        r.cmdqv.hw_queue_free(g.id, 2, &r.main),
        Err(Error::NoSuch(vcmdq(2)))
    );
    r.cmdqv.hw_queue_free(g.id, 1, &r.main).unwrap();
    r.cmdqv.hw_queue_free(g.id, 0, &r.main).unwrap();
    assert_eq!(
        r.cmdqv.hw_queue_free(g.id, 0, &r.main),
        Err(Error::NoSuch(vcmdq(0)))
    );
}

#[test]
fn hw_queue_allocation_follows_the_linux_rules() {
    let r = ready_rig();
    let g = r.cmdqv.vintf_alloc(Vmid(7)).unwrap();
    let pa = guest_queue(&r, 0x1000);
    let e = |x: Result<(), Error>| x.map_err(Error::errno);
    let syncs = r.main.batches().len();
    // Index bounds, ascending order, length and alignment.
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(g.id, 4, pa, 256, &r.main)),
        Err(-errno::EINVAL)
    );
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(g.id, 1, pa, 256, &r.main)),
        Err(-errno::EIO)
    );
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(g.id, 0, pa, 0, &r.main)),
        Err(-errno::EINVAL)
    );
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(g.id, 0, pa, 48, &r.main)),
        Err(-errno::EINVAL)
    );
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(g.id, 0, pa, 16, &r.main)),
        Err(-errno::EINVAL)
    );
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(g.id, 0, pa, 16 << 9, &r.main)),
        Err(-errno::EINVAL),
        "beyond 2^(CMDQS + 4) bytes"
    );
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(g.id, 0, pa.add(0x20), 256, &r.main)),
        Err(-errno::EINVAL)
    );
    assert_eq!(
        e(r.cmdqv
            .hw_queue_alloc(g.id, 0, PhysAddr(1 << 48), 256, &r.main)),
        Err(-errno::EINVAL)
    );
    assert_eq!(
        e(r.cmdqv
            .hw_queue_alloc(g.id, 0, PhysAddr(!0xFF), 512, &r.main)),
        Err(-errno::EOVERFLOW)
    );
    assert_eq!(r.main.batches().len(), syncs, "nothing touched on refusal");
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(VintfId(2), 0, pa, 256, &r.main)),
        Err(-errno::ENOENT)
    );
    // The extremes of the length rule are accepted.
    r.cmdqv.hw_queue_alloc(g.id, 0, pa, 32, &r.main).unwrap();
    assert_eq!(
        e(r.cmdqv.hw_queue_alloc(g.id, 0, pa, 32, &r.main)),
        Err(-errno::EEXIST)
    );
    let big = guest_queue(&r, 16 << 8);
    r.cmdqv
        .hw_queue_alloc(g.id, 1, big, 16 << 8, &r.main)
        .unwrap();
    r.cmdqv
        .hw_queue_alloc(g.id, 2, pa.add(0x100), 256, &r.main)
        .unwrap();
    assert_eq!(r.cmdqv.hw_queues(g.id), Ok(0b111));
    // Mapped to VINTF1's static global queues, BASE written, not enabled.
    let q0 = r.fake.queue(4).unwrap();
    assert_eq!(r.fake.global_of(1, 0), Some(4));
    assert_eq!(q0.base, pa.0 | 1);
    assert!(!q0.enabled);
    assert_eq!(r.fake.queue(5).unwrap().base, big.0 | 8);
    assert_eq!(
        r.main.batches().len(),
        syncs + 3,
        "one CMD_SYNC per queue teardown"
    );
    // Descending teardown only.
    assert_eq!(
        e(r.cmdqv.hw_queue_free(g.id, 0, &r.main)),
        Err(-errno::EBUSY)
    );
    assert_eq!(
        e(r.cmdqv.hw_queue_free(g.id, 1, &r.main)),
        Err(-errno::EBUSY)
    );
    assert_eq!(
        e(r.cmdqv.hw_queue_free(g.id, 3, &r.main)),
        Err(-errno::ENOENT)
    );
    assert_eq!(
        r.cmdqv.vintf_free(g.id),
        Err(Error::InUse(Object::Vintf(g.id.0)))
    );
    r.cmdqv.hw_queue_free(g.id, 2, &r.main).unwrap();
    r.cmdqv.hw_queue_free(g.id, 1, &r.main).unwrap();
    r.cmdqv.hw_queue_free(g.id, 0, &r.main).unwrap();
    assert_eq!(r.fake.global_of(1, 0), None);
    assert_eq!(r.fake.queue(4).unwrap().base, 0);
    r.cmdqv.vintf_free(g.id).unwrap();
    assert_eq!(r.fake.errors(), vec![], "the model saw every rule kept");
}

#[test]
fn model_rejects_out_of_order_mapping_as_hardware_would() {
    let r = ready_rig();
    let alloc = |q: usize, v: u32, l: u32, on: bool| {
        r.fake.write32(
            off::CMDQ_ALLOC + 4 * q,
            (v << 15) | (l << 1) | u32::from(on),
        );
    };
    alloc(5, 1, 1, true);
    assert_eq!(
        r.fake.errors(),
        vec![ModelError::MapOutOfOrder {
            queue: 5,
            vintf: 1,
            lvcmdq: 1
        }]
    );
    assert_eq!(r.fake.global_of(1, 1), None, "left unmapped");
    assert_eq!(r.fake.read32(off::CMDQ_ALLOC + 4 * 5), (1 << 15) | (1 << 1));
    alloc(4, 1, 0, true);
    alloc(5, 1, 1, true);
    alloc(4, 1, 0, false);
    assert_eq!(
        r.fake.errors()[1..],
        [ModelError::UnmapOutOfOrder {
            queue: 4,
            vintf: 1,
            lvcmdq: 0
        }]
    );
    assert_eq!(r.fake.global_of(1, 0), Some(4), "left mapped");
    alloc(5, 1, 1, false);
    alloc(4, 1, 0, false);
    assert_eq!(r.fake.errors().len(), 2);
    // A logical slot with no queue behind it reads as zero and ignores writes.
    r.fake.write32(regs::vintf_page0(1) + off::VCMDQ_CONFIG, 1);
    assert_eq!(r.fake.read32(regs::vintf_page0(1) + off::VCMDQ_CONFIG), 0);
    assert!(!r.fake.queue(4).unwrap().enabled);
    assert!(matches!(
        r.fake.errors()[2],
        ModelError::UnmappedLogicalAccess {
            vintf: 1,
            lvcmdq: 0
        }
    ));
}

/// A guest on VINTF `g` with HW queue 0 (16 entries) enabled through its page 0; returns the
/// queue's physical address.
fn guest_with_queue(r: &Rig, vmid: u16) -> (GuestVintf, PhysAddr) {
    let g = r.cmdqv.vintf_alloc(Vmid(vmid)).unwrap();
    let pa = guest_queue(r, 256);
    r.cmdqv.hw_queue_alloc(g.id, 0, pa, 256, &r.main).unwrap();
    let p0 = regs::vintf_page0(usize::from(g.id.0));
    r.fake.write32(p0 + off::VCMDQ_CONFIG, 1);
    assert_eq!(r.fake.read32(p0 + off::VCMDQ_STATUS), 1);
    (g, pa)
}

/// The guest writes `cmds` at its queue's PROD and publishes them.
fn guest_issue(r: &Rig, g: &GuestVintf, pa: PhysAddr, cmds: &[CmdqEntry]) {
    let p0 = regs::vintf_page0(usize::from(g.id.0));
    let mut prod = r.fake.read32(p0 + off::VCMDQ_PROD);
    for c in cmds {
        r.write_entry(pa.add(16 * u64::from(prod & 0xF)), *c);
        prod = (prod + 1) & 0x1F;
    }
    r.fake.write32(p0 + off::VCMDQ_PROD, prod);
}

#[test]
fn guest_queue_runs_the_allowed_subset_with_vmid_and_sid_substituted() {
    let r = ready_rig();
    let (g, pa) = guest_with_queue(&r, 0x33);
    r.cmdqv
        .vdevice_bind(g.id, VStreamId(0x10), StreamId(0x1234))
        .unwrap();
    guest_issue(
        &r,
        &g,
        pa,
        &[
            tlbi_asid(0, 5).encode(),
            atc_inv(0x10).encode(),
            Command::sync().encode(),
        ],
    );
    assert_eq!(
        r.fake.commands(4),
        vec![tlbi_asid(0x33, 5), atc_inv(0x1234), Command::sync()]
    );
    assert_eq!(r.fake.irq_count(), 0);
}

#[test]
fn guest_disallowed_command_stops_its_queue_and_becomes_a_vevent() {
    let r = ready_rig();
    let (g, pa) = guest_with_queue(&r, 9);
    guest_issue(
        &r,
        &g,
        pa,
        &[tlbi_asid(0, 1).encode(), Command::CfgiAll.encode()],
    );
    let p0 = regs::vintf_page0(1);
    let cons = r.fake.read32(p0 + off::VCMDQ_CONS);
    assert_eq!(cons, (4 << 24) | 1, "CERROR_ILL_ACCESS at the CFGI_ALL");
    let gerror = r.fake.read32(p0 + off::VCMDQ_GERROR);
    assert_eq!(gerror ^ r.fake.read32(p0 + off::VCMDQ_GERRORN), 1);
    assert_eq!(r.fake.lvcmdq_err_map(1), 1);
    assert_eq!(r.fake.vintf_err_map(), 1 << 1);
    assert_eq!(r.fake.cmdq_err_map(), 1 << 4);
    assert_eq!(r.fake.irq_count(), 1);

    let sink = VecSink::default();
    let stats = r.cmdqv.handle_error(&sink);
    assert_eq!(
        stats,
        CmdqvErrorStats {
            guest_reports: 1,
            ..Default::default()
        }
    );
    assert_eq!(*sink.0.lock().unwrap(), vec![(VintfId(1), [1, 0])]);
    // The host left the guest's error alone.
    assert_eq!(r.fake.read32(p0 + off::VCMDQ_GERRORN) ^ gerror, 1);
    // The guest skips the command and acknowledges through its page.
    r.write_entry(pa.add(16), Command::sync().encode());
    r.fake.write32(p0 + off::VCMDQ_GERRORN, gerror);
    assert_eq!(r.fake.vintf_err_map(), 0);
    assert_eq!(r.fake.commands(4), vec![tlbi_asid(9, 1), Command::sync()]);
}

#[test]
fn host_and_guest_errors_at_once_are_handled_in_one_interrupt() {
    let r = ready_rig();
    let (g, pa) = guest_with_queue(&r, 3);
    // Guest: an ATC_INV for a StreamID it has no vDEVICE for.
    guest_issue(&r, &g, pa, &[atc_inv(0x99).encode()]);
    // Host: a command the SMMU cannot decode lands on LVCMDQ 2 (as if its submitter were
    // interrupted before polling), written straight into the host ring.
    let host_base = r.fake.queue(2).unwrap().base & !0x1F;
    r.write_entry(PhysAddr(host_base), CmdqEntry([0x7F, 0]));
    r.fake
        .write32(regs::vintf_page0(0) + 2 * 0x80 + off::VCMDQ_PROD, 1);
    assert_eq!(r.fake.vintf_err_map(), 0b11);
    assert_eq!(r.fake.irq_count(), 2);

    r.fake.reset_mmio_counts();
    let sink = VecSink::default();
    let stats = r.cmdqv.handle_error(&sink);
    assert_eq!(
        stats,
        CmdqvErrorStats {
            host_recovered: 1,
            guest_reports: 1,
            ..Default::default()
        }
    );
    assert_eq!(*sink.0.lock().unwrap(), vec![(VintfId(1), [1, 0])]);
    // Host queue: bad command replaced by CMD_SYNC, acknowledged, and run.
    assert_eq!(r.fake.commands(2), vec![Command::sync()]);
    let hq = r.fake.queue(2).unwrap();
    assert_eq!(hq.gerror, hq.gerrorn);
    // Guest queue: still stopped, its error still active.
    let gq = r.fake.queue(4).unwrap();
    assert_eq!(gq.gerror ^ gq.gerrorn, 1);
    assert_eq!(r.fake.vintf_err_map(), 0b10);
    // Bounded MMIO: 2 map halves, 2 LVCMDQ_ERR_MAP words per flagged VINTF, and for the host
    // queue CONS, GERROR and GERRORN (is the error active?), GERROR again and the GERRORN write
    // (the acknowledgement).
    let c = r.fake.mmio_counts();
    assert_eq!(c.get(CmdqvReg::VintfErrMap), (2, 0));
    assert_eq!(c.get(CmdqvReg::LvcmdqErrMap), (4, 0));
    assert_eq!(c.get(CmdqvReg::Cons), (1, 0));
    assert_eq!(c.get(CmdqvReg::Gerror), (2, 0));
    assert_eq!(c.get(CmdqvReg::Gerrorn), (1, 1));
    assert_eq!(c.total(), 2 + 4 + 5);
}

#[test]
fn errors_of_unallocated_vintfs_are_ignored() {
    let r = ready_rig();
    let (g, pa) = guest_with_queue(&r, 3);
    guest_issue(&r, &g, pa, &[Command::CfgiAll.encode()]);
    // The vIOMMU goes away behind the interrupt (its bookkeeping says unused).
    r.cmdqv.guests[1].in_use.store(false, Ordering::Release);
    let stats = r.cmdqv.handle_error(&NoSink);
    assert_eq!(stats.ignored, 1);
}

#[test]
fn shutdown_tears_down_guests_and_the_host_cleanly() {
    let mut r = ready_rig();
    let (g, _) = guest_with_queue(&r, 3);
    r.cmdqv
        .vdevice_bind(g.id, VStreamId(1), StreamId(2))
        .unwrap();
    let pa = guest_queue(&r, 256);
    r.cmdqv.hw_queue_alloc(g.id, 1, pa, 256, &r.main).unwrap();
    r.cmdqv.shutdown(&r.main).unwrap();
    assert!(!r.cmdqv.is_ready());
    for v in 0..4 {
        assert!(!r.fake.vintf(v).unwrap().1);
        for l in 0..4 {
            assert_eq!(r.fake.global_of(v, l), None);
        }
    }
    assert_eq!(r.fake.sid_pair(1, 0), Some((0, 0)));
    assert_eq!(r.fake.errors(), vec![]);
    // Host commands fall back to the SMMU queue.
    r.cmdqv
        .submit(CpuIndex(0), &[cfgi_ste(1)], &r.main)
        .unwrap();
    assert_eq!(r.main.batches().last(), Some(&vec![cfgi_ste(1)]));
    // And a reset brings everything back.
    r.cmdqv.reset(&r.main).unwrap();
    assert!(r.cmdqv.is_ready());
    assert_eq!(r.fake.errors(), vec![]);
}

#[test]
fn two_cpus_submit_concurrently_on_their_own_queues() {
    let r = ready_rig();
    let cmdqv = &r.cmdqv;
    let main = &r.main;
    std::thread::scope(|s| {
        for cpu in 0..2u32 {
            s.spawn(move || {
                for i in 0..200u16 {
                    let cmds = [tlbi_asid(0, i), tlbi_va(i, 0x1000 * u64::from(cpu + 1))];
                    cmdqv.submit(CpuIndex(cpu), &cmds, main).unwrap();
                }
            });
        }
    });
    for cpu in 0..2u16 {
        let log = r.fake.commands(usize::from(cpu));
        assert_eq!(log.len(), 600);
        for (i, chunk) in log.chunks(3).enumerate() {
            assert_eq!(chunk[0], tlbi_asid(0, i as u16));
            assert_eq!(chunk[1], tlbi_va(i as u16, 0x1000 * u64::from(cpu + 1)));
            assert_eq!(chunk[2], Command::sync());
        }
    }
    assert_eq!(r.fake.errors(), vec![]);
}

#[test]
fn vevent_read_returns_the_tegra241_cmdqv_record_as_linux_would() {
    use crate::vevent::VeventQueue;
    let r = ready_rig();
    let g = r.cmdqv.vintf_alloc(Vmid(3)).unwrap();
    let q0 = r.alloc(256);
    let q1 = r.alloc(256);
    r.cmdqv.hw_queue_alloc(g.id, 0, q0, 256, &r.main).unwrap();
    r.cmdqv.hw_queue_alloc(g.id, 1, q1, 256, &r.main).unwrap();
    // The guest enables logical queue 1 and issues a CMD_PREFETCH_CONFIG there.
    let slot = regs::vintf_page0(1) + regs::VCMDQ_SLOT_SIZE;
    r.fake.write32(slot + off::VCMDQ_CONFIG, 1);
    let prefetch = Command::PrefetchConfig {
        sid: StreamId(1),
        ssid: None,
    };
    r.write_entry(q1, prefetch.encode());
    r.fake.write32(slot + off::VCMDQ_PROD, 1);
    assert_eq!(r.fake.lvcmdq_err_map(1), 0b10);

    /// VINTF 1's records go to one vEVENTQ.
    struct One<'a>(&'a VeventQueue<VeventTegra241Cmdqv, 4>);
    impl CmdqvEventSink for One<'_> {
        fn report(&self, vintf: VintfId, event: VeventTegra241Cmdqv) {
            assert_eq!(vintf, VintfId(1));
            let _ = self.0.report(&event);
        }
    }
    let vevq: VeventQueue<VeventTegra241Cmdqv, 4> = VeventQueue::new(4).unwrap();
    let stats = r.cmdqv.handle_error(&One(&vevq));
    assert_eq!(stats.guest_reports, 1);

    let mut buf = [0xAAu8; 64];
    let n = vevq.read(&mut buf).unwrap();
    // iommufd_vevent_header { flags: 0, sequence: 0 } then lvcmdq_err_map[2] as __le64.
    let mut want = [0u8; 24];
    want[8] = 0b10;
    assert_eq!(n, 24);
    assert_eq!(&buf[..n], &want[..]);
    assert_eq!(
        vevq.read(&mut buf),
        Ok(0),
        "nothing more, read never blocks"
    );

    // A second error (the guest's own queue 0) while queue 1 is still stopped: one record with
    // both bits and the next sequence number.
    r.fake.write32(regs::vintf_page0(1) + off::VCMDQ_CONFIG, 1);
    r.write_entry(q0, Command::CfgiAll.encode());
    r.fake.write32(regs::vintf_page0(1) + off::VCMDQ_PROD, 1);
    r.cmdqv.handle_error(&One(&vevq));
    let n = vevq.read(&mut buf).unwrap();
    let mut want = [0u8; 24];
    want[4] = 1;
    want[8] = 0b11;
    assert_eq!(&buf[..n], &want[..]);
}

#[test]
fn standalone_model_runs_without_an_smmu() {
    use crate::fake::cmdqv::CmdqvArena;
    let (fake, arena, platform) = CmdqvModel::standalone(CmdqvModelParams::QEMU);
    assert_eq!(fake.size(), 0x50000);
    let cfg = CmdqvConfig {
        host_queue_log2: 3,
        ..CmdqvConfig::new(fake.phys(), fake.size(), 8)
    };
    // SAFETY: as in `rig_with`.
    let mut cmdqv = unsafe { Cmdqv::new(fake.base().cast(), platform, &*arena, cfg) }.unwrap();
    assert_eq!((cmdqv.num_vintfs(), cmdqv.lvcmdqs_per_vintf()), (1, 2));
    let main = RecordingCommandSink::default();
    cmdqv.reset(&main).unwrap();
    assert_eq!(
        cmdqv.vintf_alloc(Vmid(1)),
        Err(Error::NoSpace),
        "one VINTF: the host's"
    );
    cmdqv.submit(CpuIndex(1), &[cfgi_ste(4)], &main).unwrap();
    assert_eq!(fake.commands(1), vec![cfgi_ste(4), Command::sync()]);
    assert_eq!(fake.queue(0).unwrap().base & !0x1F, CmdqvArena::PA_BASE);
}

mod props {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        /// Allocate `index` with `16 << log2` bytes, `misalign` bytes off the natural alignment.
        Alloc {
            index: u32,
            log2: u8,
            misalign: bool,
        },
        Free {
            index: u32,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..6, 0u8..10, prop::bool::weighted(0.1)).prop_map(|(index, log2, misalign)| {
                Op::Alloc {
                    index,
                    log2,
                    misalign,
                }
            }),
            (0u32..6).prop_map(|index| Op::Free { index }),
        ]
    }

    /// Linux's rules (tegra241-cmdqv §8.3), written independently of the driver.
    fn expected(live: u32, op: &Op, per: u32, cmdqs: u8) -> Result<u32, i32> {
        match *op {
            Op::Alloc {
                index,
                log2,
                misalign,
            } => {
                let len = 16u64 << log2;
                if index >= per {
                    Err(-errno::EINVAL)
                } else if live & (1 << index) != 0 {
                    Err(-errno::EEXIST)
                } else if index > 0 && live & (1 << (index - 1)) == 0 {
                    Err(-errno::EIO)
                } else if len < 32 || len > 16 << cmdqs || misalign {
                    Err(-errno::EINVAL)
                } else {
                    Ok(live | 1 << index)
                }
            }
            Op::Free { index } => {
                if index >= per || live & (1 << index) == 0 {
                    Err(-errno::ENOENT)
                } else if live & (1 << (index + 1)) != 0 {
                    Err(-errno::EBUSY)
                } else {
                    Ok(live & !(1 << index))
                }
            }
        }
    }

    proptest! {
        // Under Miri (about 100 times slower, no file system under isolation): a few cases and
        // no failure-persistence file.
        #![proptest_config(ProptestConfig {
            cases: if cfg!(miri) { 4 } else { 64 },
            failure_persistence: if cfg!(miri) {
                None
            } else {
                ProptestConfig::default().failure_persistence
            },
            ..ProptestConfig::default()
        })]
        #[test]
        fn hw_queue_alloc_and_free_follow_the_rules(ops in prop::collection::vec(op(), 1..40)) {
            let r = ready_rig();
            let g = r.cmdqv.vintf_alloc(Vmid(1)).unwrap();
            // One naturally aligned 8 KiB block per index, large enough for every length tried.
            let blocks: Vec<PhysAddr> = (0..4).map(|_| r.alloc(16 << 9)).collect();
            let mut live = 0u32;
            for op in &ops {
                let want = expected(live, op, 4, 8);
                let got = match *op {
                    Op::Alloc { index, log2, misalign } => {
                        let base = blocks.get(index as usize).copied().unwrap_or(blocks[0]);
                        let base = if misalign { base.add(16) } else { base };
                        r.cmdqv.hw_queue_alloc(g.id, index, base, 16 << log2, &r.main)
                    }
                    Op::Free { index } => r.cmdqv.hw_queue_free(g.id, index, &r.main),
                };
                prop_assert_eq!(got.map_err(Error::errno), want.map(|_| ()), "{:?}", op);
                if let Ok(next) = want {
                    live = next;
                }
                prop_assert_eq!(r.cmdqv.hw_queues(g.id).unwrap(), u128::from(live));
                for l in 0..4 {
                    let mapped = r.fake.global_of(1, l).is_some();
                    prop_assert_eq!(mapped, live & (1 << l) != 0);
                }
            }
            prop_assert_eq!(r.fake.errors(), vec![]);
        }
    }
}

#[test]
fn the_smmu_driver_is_the_main_queue() {
    use crate::smmu::Config;
    let m = SmmuModel::qemu_virt();
    let fake = CmdqvModel::attach(&m, CmdqvModelParams::TEST);
    let config = Config {
        quirks: Board::Tegra264.smmu_quirks(),
        ..Config::default()
    };
    let smmu = m.driver(config).unwrap();
    smmu.reset().unwrap();
    let cfg = CmdqvConfig {
        board: Board::Tegra264,
        ..config_for(&fake)
    };
    // SAFETY: as in `rig_with`.
    let mut cmdqv = unsafe { Cmdqv::new(fake.base().cast(), m.platform(), m.dma(), cfg) }.unwrap();
    m.take_commands();
    // CMDQV reset after SMMUEN: each VCMDQ teardown syncs the SMMU's queue.
    cmdqv.reset(&smmu).unwrap();
    assert_eq!(m.take_commands(), vec![Command::sync(); 4]);
    // Host invalidations run on the VCMDQ, repeated on Tegra264; the SMMU queue stays idle.
    cmdqv.submit(CpuIndex(2), &[cfgi_ste(1)], &smmu).unwrap();
    assert_eq!(
        fake.commands(2),
        vec![cfgi_ste(1), Command::sync(), cfgi_ste(1), Command::sync()]
    );
    assert!(m.take_commands().is_empty());
    // A guest HW queue's allocation and teardown each sync the SMMU's queue.
    let g = cmdqv.vintf_alloc(Vmid(9)).unwrap();
    let pa = m.dma().alloc(256, 256).unwrap().paddr;
    cmdqv.hw_queue_alloc(g.id, 0, pa, 256, &smmu).unwrap();
    cmdqv.hw_queue_free(g.id, 0, &smmu).unwrap();
    assert_eq!(m.take_commands(), vec![Command::sync(); 2]);
    cmdqv.vintf_free(g.id).unwrap();
    // Before SMMU CR0 is cleared.
    cmdqv.shutdown(&smmu).unwrap();
    assert_eq!(m.take_commands(), vec![Command::sync(); 4]);
    cmdqv.submit(CpuIndex(0), &[cfgi_ste(3)], &smmu).unwrap();
    assert_eq!(
        m.take_commands(),
        vec![cfgi_ste(3), Command::sync(), cfgi_ste(3), Command::sync()],
        "fallback to the SMMU queue, with the same Tegra264 repeat"
    );
    assert_eq!(fake.errors(), vec![]);
}

#[test]
fn failures_during_guest_setup_leave_nothing_behind() {
    let r = ready_rig();
    // The timeout below is 1 s of virtual time: 1 ms per poll keeps it to a thousand polls.
    r.smmu.set_relax_step_us(1000);
    // A VINTF that does not enable: the allocation fails and the slot is free again.
    r.fake.set_never_ack(AckTarget::Vintf(1), true);
    assert_eq!(
        r.cmdqv.vintf_alloc(Vmid(4)),
        Err(Error::Timeout(WaitFor::VintfEnable))
    );
    assert_eq!(r.cmdqv.vintf_page(VintfId(1)), None);
    r.fake.set_never_ack(AckTarget::Vintf(1), false);
    let g = r.cmdqv.vintf_alloc(Vmid(4)).unwrap();
    assert_eq!(g.id, VintfId(1));
    // The SMMU queue's CMD_SYNC fails during the HW queue's teardown: unmapped again.
    let pa = r.alloc(256);
    r.main.fail_with(Some(Error::Timeout(WaitFor::CmdSync)));
    assert_eq!(
        r.cmdqv.hw_queue_alloc(g.id, 0, pa, 256, &r.main),
        Err(Error::Timeout(WaitFor::CmdSync))
    );
    assert_eq!(r.fake.global_of(1, 0), None);
    assert_eq!(r.cmdqv.hw_queues(g.id), Ok(0));
    r.main.fail_with(None);
    r.cmdqv.hw_queue_alloc(g.id, 0, pa, 256, &r.main).unwrap();
    assert_eq!(r.fake.errors(), vec![]);
}

#[test]
fn masked_vintfs_raise_no_interrupt_but_keep_their_error_maps() {
    let r = ready_rig();
    let (g, pa) = guest_with_queue(&r, 3);
    r.fake.write32(off::VINTF_INT_MASK_LO, 1 << 1);
    guest_issue(&r, &g, pa, &[Command::CfgiAll.encode()]);
    assert_eq!(r.fake.irq_count(), 0);
    assert_eq!(r.fake.vintf_err_map(), 1 << 1);
    // A poll of the handler still finds and reports it.
    let sink = VecSink::default();
    assert_eq!(r.cmdqv.handle_error(&sink).guest_reports, 1);
}

#[test]
fn dropping_the_driver_stops_cmdqv() {
    let r = ready_rig();
    let fake = r.fake.clone();
    assert!(fake.enabled());
    drop(r);
    assert!(!fake.enabled());
    assert!(!fake.queue(0).unwrap().enabled);
    // Never reset: nothing to stop, nothing written.
    let r = rig_with(CmdqvModelParams::TEST, |_, _| {});
    let fake = r.fake.clone();
    drop(r);
    assert_eq!(fake.mmio_counts().writes, 0);
}
