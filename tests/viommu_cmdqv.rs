//! The TEGRA241_CMDQV vIOMMU end to end: the router on the SMMU driver and the CMDQV driver,
//! both on their software models (SmmuModel + CmdqvModel): VINTF per vIOMMU, SID pairs per
//! vDEVICE, HW queues with Linux's rules, guest queue errors read back from the vIOMMU's
//! TEGRA241_CMDQV vEVENTQ byte for byte, and teardown in descending queue order.
#![cfg(all(feature = "fakes", feature = "cmdqv"))]

use std::sync::Arc;

use arm_smmuv3::cmdqv::regs::{self, offset as off};
use arm_smmuv3::cmdqv::{Cmdqv, CmdqvConfig, CmdqvErrorStats, VintfId};
use arm_smmuv3::command::{CmdqEntry, Command};
use arm_smmuv3::error::{Error, Object, Quantity, WaitFor};
use arm_smmuv3::fake::cmdqv::{CmdqvModel, CmdqvModelParams};
use arm_smmuv3::fake::{DriverOnModel, ModelArena, ModelPlatform, SmmuModel};
use arm_smmuv3::iommufd::{HwQueueType, VeventTegra241Cmdqv, VeventqType};
use arm_smmuv3::platform::DmaMemory;
use arm_smmuv3::smmu::Config;
use arm_smmuv3::viommu::{HostReason, Routed, Router, ViommuConfig, ViommuId};
use arm_smmuv3::{Asid, PhysAddr, StreamId, VStreamId, Vmid};

type R = Router<4, 16, 4, 8, 8>;

struct Rig {
    m: Arc<SmmuModel>,
    fake: Arc<CmdqvModel>,
    smmu: DriverOnModel,
    cmdqv: Cmdqv<ModelPlatform, ModelArena>,
    router: Box<R>,
}

fn rig() -> Rig {
    let m = SmmuModel::qemu_virt();
    let fake = CmdqvModel::attach(&m, CmdqvModelParams::TEST);
    let smmu = m.driver(Config::default()).unwrap();
    smmu.reset().unwrap();
    let cfg = CmdqvConfig {
        host_queue_log2: 4,
        ..CmdqvConfig::new(fake.phys(), fake.size(), 8)
    };
    // SAFETY: the model's window is `fake.size()` bytes and lives as long as `fake`, kept in
    // the rig; only this driver (and the test acting as a guest) touch it.
    let mut cmdqv =
        unsafe { Cmdqv::new(fake.base().cast(), m.platform(), m.lend_dma(), cfg) }.unwrap();
    cmdqv.reset(&smmu).unwrap();
    m.take_commands();
    Rig {
        m,
        fake,
        smmu,
        cmdqv,
        router: Box::new(R::new()),
    }
}

fn cfg(vmid: u16) -> ViommuConfig {
    arm_smmuv3::fake::rig::viommu_config(Vmid(vmid), PhysAddr(0x4000_0000)).unwrap()
}

impl Rig {
    fn queue_mem(&self, bytes: u64) -> PhysAddr {
        let n = bytes as usize;
        self.m.dma().alloc(n, n).unwrap().paddr
    }

    /// The guest enables HW queue `l` of VINTF `v` through its page 0.
    fn guest_enable(&self, v: VintfId, l: usize) {
        let p0 = regs::vintf_page0(usize::from(v.0)) + l * regs::VCMDQ_SLOT_SIZE;
        self.fake.write32(p0 + off::VCMDQ_CONFIG, 1);
        assert_eq!(self.fake.read32(p0 + off::VCMDQ_STATUS), 1);
    }

    /// The guest writes `cmds` into its 16-entry queue 0 at `pa` and publishes them.
    fn guest_issue(&self, v: VintfId, pa: PhysAddr, cmds: &[CmdqEntry]) {
        let p0 = regs::vintf_page0(usize::from(v.0));
        let mut prod = self.fake.read32(p0 + off::VCMDQ_PROD);
        for c in cmds {
            self.m
                .dma()
                .write_dwords(pa.add(16 * u64::from(prod & 0xF)), &c.0)
                .unwrap();
            prod = (prod + 1) & 0x1F;
        }
        self.fake.write32(p0 + off::VCMDQ_PROD, prod);
    }

    /// A TEGRA241_CMDQV vIOMMU with vDEVICE 0x1234 → vSID 0x10, a CMDQV vEVENTQ and HW
    /// queue 0 (256 bytes) enabled by the guest.
    fn guest(&self, vmid: u16) -> (ViommuId, VintfId, PhysAddr) {
        let (id, data) = self
            .router
            .alloc_viommu_cmdqv(cfg(vmid), &self.cmdqv)
            .unwrap();
        let v = self.router.vintf(id).unwrap();
        assert_eq!(
            data.out_vintf_mmap_offset,
            regs::vintf_page0(usize::from(v.0)) as u64
        );
        assert_eq!(data.out_vintf_mmap_length, 0x10000);
        let pa = self.queue_mem(256);
        self.router
            .hw_queue_alloc(
                id,
                HwQueueType::Tegra241Cmdqv,
                0,
                pa,
                256,
                &self.cmdqv,
                &self.smmu,
            )
            .unwrap();
        self.router
            .alloc_veventq(id, VeventqType::Tegra241Cmdqv, 4)
            .unwrap();
        self.guest_enable(v, 0);
        (id, v, pa)
    }
}

fn tlbi_asid(vmid: u16, asid: u16) -> Command {
    Command::TlbiNhAsid {
        vmid: Vmid(vmid),
        asid: Asid(asid),
    }
}

#[test]
fn viommu_owns_a_vintf_with_its_vmid_and_vdevices_bind_sid_pairs() {
    let r = rig();
    let (id, v, pa) = r.guest(0x33);
    assert_eq!(v, VintfId(1), "VINTF0 is the host's");
    let (config, enabled) = r.fake.vintf(1).unwrap();
    assert!(enabled);
    assert_eq!((config >> 1) & 0xffff, 0x33, "VMID = the S2 VMID");
    assert_eq!(config & (1 << 14), 0, "HYP_OWN clear");
    // vDEVICE: route + SID_REPLACE = pSID, SID_MATCH = vSID << 1 | ENABLE.
    assert_eq!(
        r.router
            .alloc_vdevice_cmdqv(id, 7, StreamId(0x1234), 0x10, false, &r.cmdqv),
        Ok(VStreamId(0x10))
    );
    assert_eq!(r.fake.sid_pair(1, 0), Some(((0x10 << 1) | 1, 0x1234)));
    assert_eq!(
        r.router.vsid_to_psid(id, VStreamId(0x10)),
        Ok(StreamId(0x1234))
    );
    // The guest's own queue now rewrites the VMID and the vSID.
    let atc = |sid: u32| Command::AtcInv {
        sid: StreamId(sid),
        ssid: None,
        global: false,
        addr: 0,
        size: 52,
    };
    r.guest_issue(v, pa, &[tlbi_asid(0, 5).encode(), atc(0x10).encode()]);
    let g = r.fake.global_of(1, 0).unwrap();
    assert_eq!(r.fake.commands(g), vec![tlbi_asid(0x33, 5), atc(0x1234)]);
    // Core errors before the SID pair: duplicate vSID or device.
    assert_eq!(
        r.router
            .alloc_vdevice_cmdqv(id, 8, StreamId(0x99), 0x10, false, &r.cmdqv),
        Err(Error::AlreadyExists(Object::VDevice(VStreamId(0x10))))
    );
    // A vSID SID_MATCH cannot hold: the pair is refused and nothing is left behind.
    assert_eq!(
        r.router
            .alloc_vdevice_cmdqv(id, 8, StreamId(0x99), 1 << 20, false, &r.cmdqv)
            .unwrap_err()
            .errno(),
        -22
    );
    assert_eq!(r.router.vdevices(id).unwrap().len(), 1);
    assert_eq!(r.fake.sid_pair(1, 1), Some((0, 0)));
    // The plain SMMUv3 calls refuse a TEGRA241_CMDQV vIOMMU, and the other way round.
    assert_eq!(
        r.router.alloc_vdevice(id, 9, StreamId(0x98), 0x11, false),
        Err(Error::WrongType(Object::Viommu(id)))
    );
    assert_eq!(
        r.router.destroy_viommu(id),
        Err(Error::InUse(Object::Viommu(id))),
        "children first"
    );
    assert_eq!(
        r.router.teardown_viommu(id, &r.smmu),
        Err(Error::WrongType(Object::Viommu(id)))
    );
    assert_eq!(
        r.router.vintf(id),
        Ok(v),
        "the refused teardown changed nothing"
    );
    let plain = r.router.alloc_viommu(cfg(5)).unwrap();
    assert_eq!(
        r.router
            .alloc_vdevice_cmdqv(plain, 9, StreamId(0x98), 0x11, false, &r.cmdqv)
            .unwrap_err()
            .errno(),
        -95
    );
    // hw_info of type TEGRA241_CMDQV, for the CMDQV vIOMMU only.
    let info = r.router.hw_info_cmdqv(id, &r.cmdqv).unwrap();
    assert_eq!(info, r.cmdqv.hw_info());
    assert_eq!((info.log2vcmdqs, info.log2vsids), (2, 4));
    assert_eq!(
        r.router.hw_info_cmdqv(plain, &r.cmdqv).unwrap_err().errno(),
        -95
    );
    // Destroying the vDEVICE clears its pair.
    r.router
        .destroy_vdevice_cmdqv(id, VStreamId(0x10), &r.smmu, &r.cmdqv)
        .unwrap();
    assert_eq!(r.fake.sid_pair(1, 0), Some((0, 0)));
    assert_eq!(
        r.router
            .destroy_vdevice_cmdqv(id, VStreamId(0x10), &r.smmu, &r.cmdqv),
        Err(Error::NoSuch(Object::VDevice(VStreamId(0x10))))
    );
    assert_eq!(r.fake.errors(), vec![]);
}

#[test]
fn hw_queue_alloc_and_free_follow_linux_rules() {
    let r = rig();
    let (id, v, _) = r.guest(3);
    let plain = r.router.alloc_viommu(cfg(5)).unwrap();
    let pa = r.queue_mem(512);
    let alloc = |id, ty, index, base: PhysAddr, len| {
        r.router
            .hw_queue_alloc(id, ty, index, base, len, &r.cmdqv, &r.smmu)
            .map_err(Error::errno)
    };
    let t = HwQueueType::Tegra241Cmdqv;
    // Core rules first, whatever the vIOMMU.
    assert_eq!(alloc(plain, t, 1, pa, 0), Err(-22), "length 0");
    assert_eq!(alloc(plain, t, 1, PhysAddr(u64::MAX - 8), 32), Err(-75));
    assert_eq!(alloc(id, HwQueueType::Default, 1, pa, 256), Err(-95));
    // What each of the core's refusals carries.
    let raw = |id, ty, index, base: PhysAddr, len| {
        r.router
            .hw_queue_alloc(id, ty, index, base, len, &r.cmdqv, &r.smmu)
    };
    assert_eq!(
        raw(id, HwQueueType::Default, 1, pa, 256),
        Err(Error::Reserved {
            field: "iommu_hw_queue_alloc.type",
            value: 0
        })
    );
    assert_eq!(
        raw(plain, t, 1, PhysAddr(u64::MAX - 8), 32),
        Err(Error::RangeWraps {
            base: u64::MAX - 8,
            length: 32
        })
    );
    assert!(matches!(
        raw(plain, t, 1, pa, 0),
        Err(Error::OutOfRange {
            what: Quantity::Length,
            value: 0,
            ..
        })
    ));
    assert_eq!(
        alloc(plain, t, 0, pa, 256),
        Err(-95),
        "no HW queues on SMMUv3"
    );
    // Tegra241 rules.
    assert_eq!(alloc(id, t, 2, pa, 256), Err(-5), "ascending order");
    assert_eq!(alloc(id, t, 0, pa, 256), Err(-17), "taken");
    assert_eq!(
        alloc(id, t, 4, pa, 256),
        Err(-22),
        "beyond the VINTF's 4 queues"
    );
    assert_eq!(alloc(id, t, 1, pa, 48), Err(-22), "not a power of two");
    assert_eq!(alloc(id, t, 1, pa.add(256), 512), Err(-22), "misaligned");
    assert_eq!(alloc(id, t, 1, pa, 512), Ok(()));
    assert_eq!(r.router.hw_queues(id, &r.cmdqv), Ok(0b11));
    // Without its vEVENTQ and with no vDEVICE, the vIOMMU still stays while its VINTF has HW
    // queues.
    r.router
        .destroy_veventq(id, VeventqType::Tegra241Cmdqv)
        .unwrap();
    assert_eq!(
        r.router.destroy_viommu_cmdqv(id, &r.cmdqv),
        Err(Error::InUse(Object::Vintf(v.0)))
    );
    // Descending teardown.
    assert_eq!(
        r.router.hw_queue_free(id, 0, &r.cmdqv, &r.smmu),
        Err(Error::InUse(Object::Vcmdq {
            vintf: v.0,
            index: 0
        }))
    );
    r.m.take_commands();
    r.router.hw_queue_free(id, 1, &r.cmdqv, &r.smmu).unwrap();
    assert_eq!(
        r.m.take_commands(),
        vec![Command::sync()],
        "the CMD_SYNC on the SMMU's queue"
    );
    assert_eq!(r.router.hw_queues(id, &r.cmdqv), Ok(0b1));
    assert_eq!(
        r.router
            .hw_queue_free(plain, 0, &r.cmdqv, &r.smmu)
            .unwrap_err()
            .errno(),
        -95
    );
    assert_eq!(v, VintfId(1));
    assert_eq!(r.fake.errors(), vec![]);
}

/// A guest queue error becomes one 24-byte TEGRA241_CMDQV record in its vIOMMU's vEVENTQ,
/// byte for byte as Linux's read() returns it; the guest's GERROR is left alone.
#[test]
fn guest_queue_error_is_a_24_byte_record_in_the_viommus_veventq() {
    let r = rig();
    let (id, v, pa) = r.guest(9);
    r.guest_issue(
        v,
        pa,
        &[tlbi_asid(0, 1).encode(), Command::CfgiAll.encode()],
    );
    assert_eq!(r.fake.vintf_err_map(), 1 << 1);
    let stats = r.cmdqv.handle_error(&r.router.cmdqv_sink());
    assert_eq!(
        stats,
        CmdqvErrorStats {
            guest_reports: 1,
            ..Default::default()
        }
    );
    assert!(r.router.veventq_readable(id, VeventqType::Tegra241Cmdqv));
    assert!(!r.router.veventq_readable(id, VeventqType::ArmSmmuv3));
    let mut small = [0u8; 23];
    assert_eq!(
        r.router
            .read_vevents(id, VeventqType::Tegra241Cmdqv, &mut small),
        Ok(0),
        "a record is never split"
    );
    let mut buf = [0xeeu8; 64];
    let n = r
        .router
        .read_vevents(id, VeventqType::Tegra241Cmdqv, &mut buf)
        .unwrap();
    assert_eq!(n, 24);
    let mut want = Vec::new();
    want.extend(0u32.to_ne_bytes()); // flags
    want.extend(0u32.to_ne_bytes()); // sequence
    want.extend(1u64.to_le_bytes()); // lvcmdq_err_map[0]: logical queue 0
    want.extend(0u64.to_le_bytes()); // lvcmdq_err_map[1]
    assert_eq!(buf[..24], want[..]);
    assert_eq!(buf[24..], [0xee; 40]);
    let s = r.router.viommu_stats(id).unwrap();
    assert_eq!(s.forwarded, 1);
    // The guest's error is still active: it acknowledges through its own page.
    let p0 = regs::vintf_page0(1);
    let gerror = r.fake.read32(p0 + off::VCMDQ_GERROR);
    assert_eq!(gerror ^ r.fake.read32(p0 + off::VCMDQ_GERRORN), 1);
    assert_eq!(r.fake.errors(), vec![]);
}

/// An error on a host queue and on a guest queue in the same interrupt: the host queue is
/// recovered, the guest's record goes to its vIOMMU only (not to a second guest's vIOMMU).
#[test]
fn host_and_guest_queue_errors_in_one_interrupt() {
    let r = rig();
    let (id, v, pa) = r.guest(3);
    let (id2, v2, _) = r.guest(4);
    assert_eq!((v, v2), (VintfId(1), VintfId(2)));
    // Guest: an ATC_INV for a vSID it has no vDEVICE for.
    let atc = Command::AtcInv {
        sid: StreamId(0x99),
        ssid: None,
        global: false,
        addr: 0,
        size: 52,
    };
    r.guest_issue(v, pa, &[atc.encode()]);
    // Host: an undecodable command on host LVCMDQ 2, as if its submitter were interrupted.
    let host_base = r.fake.queue(2).unwrap().base & !0x1F;
    r.m.dma()
        .write_dwords(PhysAddr(host_base), &[0x7F, 0])
        .unwrap();
    r.fake
        .write32(regs::vintf_page0(0) + 2 * 0x80 + off::VCMDQ_PROD, 1);
    assert_eq!(r.fake.vintf_err_map(), 0b11);

    let stats = r.cmdqv.handle_error(&r.router.cmdqv_sink());
    assert_eq!(
        stats,
        CmdqvErrorStats {
            host_recovered: 1,
            guest_reports: 1,
            ..Default::default()
        }
    );
    assert_eq!(r.fake.commands(2), vec![Command::sync()]);
    let mut buf = [0u8; 64];
    let n = r
        .router
        .read_vevents(id, VeventqType::Tegra241Cmdqv, &mut buf)
        .unwrap();
    assert_eq!(n, 24);
    assert_eq!(buf[8..16], 1u64.to_le_bytes());
    assert_eq!(
        r.router
            .read_vevents(id2, VeventqType::Tegra241Cmdqv, &mut buf),
        Ok(0)
    );
    assert_eq!(r.fake.vintf_err_map(), 0b10, "the guest's error stays");
    // A second interrupt with the guest's error still flagged: a second record, sequence 1.
    r.cmdqv.handle_error(&r.router.cmdqv_sink());
    let n = r
        .router
        .read_vevents(id, VeventqType::Tegra241Cmdqv, &mut buf)
        .unwrap();
    assert_eq!((n, buf[4]), (24, 1));
    // Without a CMDQV vEVENTQ the record is dropped and counted (Linux drops it too).
    r.router
        .destroy_veventq(id, VeventqType::Tegra241Cmdqv)
        .unwrap();
    r.cmdqv.handle_error(&r.router.cmdqv_sink());
    assert_eq!(r.router.viommu_stats(id).unwrap().dropped_no_veventq, 1);
    // A VINTF nobody owns.
    assert_eq!(
        r.router.route_cmdqv_error(
            VintfId(3),
            &VeventTegra241Cmdqv {
                lvcmdq_err_map: [1, 0]
            }
        ),
        Routed::Host(HostReason::Unassigned)
    );
    assert_eq!(r.fake.errors(), vec![]);
}

/// Teardown of a TEGRA241_CMDQV vIOMMU with three HW queues and two vDEVICEs: queues unmapped
/// from the highest index down (the model rejects any other order), one CMD_SYNC each, SID
/// pairs cleared, the VINTF disabled and free for the next vIOMMU, and its errors no longer
/// routed.
#[test]
fn teardown_frees_queues_in_descending_order_then_the_vintf() {
    let r = rig();
    let (id, v, _) = r.guest(3);
    for l in 1..3 {
        let pa = r.queue_mem(256);
        r.router
            .hw_queue_alloc(
                id,
                HwQueueType::Tegra241Cmdqv,
                l,
                pa,
                256,
                &r.cmdqv,
                &r.smmu,
            )
            .unwrap();
    }
    r.guest_enable(v, 1);
    for (psid, vsid) in [(0x100, 1), (0x200, 2)] {
        r.router
            .alloc_vdevice_cmdqv(id, psid, StreamId(psid), vsid, false, &r.cmdqv)
            .unwrap();
    }
    assert_eq!(r.router.hw_queues(id, &r.cmdqv), Ok(0b111));
    // IOMMU_DESTROY of the vIOMMU while children exist: EBUSY.
    assert_eq!(
        r.router.destroy_viommu_cmdqv(id, &r.cmdqv),
        Err(Error::InUse(Object::Viommu(id)))
    );
    let globals: Vec<usize> = (0..3).map(|l| r.fake.global_of(1, l).unwrap()).collect();
    r.m.take_commands();
    r.router
        .teardown_viommu_cmdqv(id, &r.smmu, &r.cmdqv)
        .unwrap();
    assert_eq!(r.fake.errors(), vec![], "no out-of-order unmap");
    assert_eq!(r.m.take_commands(), vec![Command::sync(); 3]);
    for g in globals {
        let q = r.fake.queue(g).unwrap();
        assert!(!q.enabled);
        assert_eq!(q.alloc & 1, 0, "unmapped");
        assert_eq!(q.base, 0);
    }
    assert_eq!(r.fake.vintf(1).map(|x| x.1), Some(false), "VINTF disabled");
    for s in 0..2 {
        assert_eq!(r.fake.sid_pair(1, s), Some((0, 0)));
    }
    assert_eq!(r.router.vintf(id), Err(Error::NoSuch(Object::Viommu(id))));
    assert_eq!(
        r.router.route_cmdqv_error(
            v,
            &VeventTegra241Cmdqv {
                lvcmdq_err_map: [1, 0]
            }
        ),
        Routed::Host(HostReason::Unassigned)
    );
    // The routes went too; the VINTF is free for the next vIOMMU.
    let (id2, _) = r.router.alloc_viommu_cmdqv(cfg(6), &r.cmdqv).unwrap();
    assert_eq!(r.router.vintf(id2), Ok(VintfId(1)));
    r.router
        .alloc_vdevice_cmdqv(id2, 0x100, StreamId(0x100), 1, false, &r.cmdqv)
        .unwrap();
    // Orderly destroy: vDEVICE, then the vIOMMU, which releases the VINTF.
    r.router
        .destroy_vdevice_cmdqv(id2, VStreamId(1), &r.smmu, &r.cmdqv)
        .unwrap();
    r.router.destroy_viommu_cmdqv(id2, &r.cmdqv).unwrap();
    assert_eq!(r.fake.vintf(1).map(|x| x.1), Some(false));
    assert_eq!(r.router.vintf(id2), Err(Error::NoSuch(Object::Viommu(id2))));
    assert_eq!(r.fake.errors(), vec![]);
}

/// A teardown that fails half-way (here: the CMD_SYNC after unmapping a HW queue) keeps the
/// vIOMMU's devices reserved, so another vIOMMU cannot take one of them meanwhile, and the
/// retried teardown never touches another vIOMMU's route.
#[test]
fn failed_teardown_keeps_its_devices_and_a_retry_only_removes_its_own() {
    use arm_smmuv3::event::{EventRecord, EvtqEntry};
    use arm_smmuv3::fake::HostSink;
    use arm_smmuv3::{Iova, SubstreamId};
    struct Failing;
    impl arm_smmuv3::viommu::CommandSink for Failing {
        fn submit(&self, _: &[Command]) -> Result<(), Error> {
            Err(Error::Timeout(WaitFor::CmdSync))
        }
    }
    let r = rig();
    let (id, _v, _) = r.guest(3);
    let psid = StreamId(0x100);
    r.router
        .alloc_vdevice_cmdqv(id, 0x100, psid, 1, false, &r.cmdqv)
        .unwrap();
    assert!(
        r.router
            .teardown_viommu_cmdqv(id, &Failing, &r.cmdqv)
            .is_err()
    );
    // Another (plain SMMUv3) vIOMMU asks for the same device.
    let other = r.router.alloc_viommu(cfg(4)).unwrap();
    let early = r.router.alloc_vdevice(other, 9, psid, 7, false);
    r.router
        .teardown_viommu_cmdqv(id, &r.smmu, &r.cmdqv)
        .unwrap();
    if early.is_err() {
        assert_eq!(early.map_err(Error::errno), Err(-17));
        r.router.alloc_vdevice(other, 9, psid, 7, false).unwrap();
    }
    r.router
        .attach_nested(other, VStreamId(7), [1 | (5 << 1), 0], &r.smmu, |_, _| {
            Ok(())
        })
        .unwrap();
    r.router
        .alloc_veventq(other, VeventqType::ArmSmmuv3, 4)
        .unwrap();
    let e: EvtqEntry = EventRecord::translation_fault(psid, Iova(0x1000), false, true)
        .with_ssid(Some(SubstreamId(1)))
        .encode();
    let mut host = HostSink::default();
    assert!(
        matches!(
            r.router.route_event(&e, &mut host),
            Routed::Forwarded { viommu, .. } if viommu == other.index()
        ),
        "the other vIOMMU's route survived the retried teardown"
    );
}
