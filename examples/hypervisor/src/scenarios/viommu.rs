//! Scenario 8: edu assigned to a VM through a vIOMMU (`arm_smmuv3::viommu::Router`), the way a
//! Linux VMM does it with iommufd: vIOMMU on the VM's stage 2, vDEVICE with a virtual StreamID,
//! vEVENTQ, nested attach with the guest's STE. The interrupt handler's drains go through the
//! router, and the guest's stage-1 faults come out of the vEVENTQ `read()` as iommufd records.

use core::fmt::Write;

use arm_smmuv3::event::{EventId, EventRecord, EvtqEntry};
use arm_smmuv3::iommufd::{VeventArmSmmuv3, VeventHeader, VeventqType};
use arm_smmuv3::smmu::Config;
use arm_smmuv3::ste::{Ste, SteConfig};
use arm_smmuv3::viommu::{ViommuConfig, ViommuId};
use arm_smmuv3::{Error, StreamId, VStreamId};

use crate::edu::Direction;
use crate::say;
use crate::scenarios::smmu::{
    GuestVm, IOVA_NO_S1, Want, counters_are, drains_cheap, faulting_dma, print_ste, record_is,
    stage2_output_fault, take,
};
use crate::scenarios::{Ctx, Outcome, check, outcome};
use crate::smmu::{self, DemoSmmu, ROUTER};

/// The StreamID the guest knows edu by.
const VSID: u32 = 0x42;
/// The hypervisor's device ID for edu (iommufd `dev_id`).
const DEV_ID: u32 = 1;
/// Bytes of one vEVENTQ record: header + `iommu_vevent_arm_smmuv3`.
const RECORD: usize = 8 + 32;

/// One record read from the vEVENTQ.
struct Vevent {
    header: VeventHeader,
    /// `None` for a LOST_EVENTS marker.
    payload: Option<VeventArmSmmuv3>,
}

/// Splits what `read()` returned into records, printing each.
fn parse(bytes: &[u8]) -> heapless::Vec<Vevent, 8> {
    let mut out = heapless::Vec::new();
    let mut rest = bytes;
    while let Some(header) = VeventHeader::from_prefix(rest) {
        let len = if header.is_lost_events() { 8 } else { RECORD };
        let raw = rest.get(..len).unwrap_or_default();
        let mut words: heapless::String<100> = heapless::String::new();
        for w in raw.chunks_exact(4) {
            let v = u32::from_le_bytes([w[0], w[1], w[2], w[3]]);
            let _ = write!(words, " {v:08x}");
        }
        say!("    read() bytes, as LE u32:{}", words.as_str());
        rest = rest.get(8..).unwrap_or_default();
        let payload = if header.is_lost_events() {
            None
        } else {
            let p = VeventArmSmmuv3::from_prefix(rest);
            rest = rest.get(32..).unwrap_or_default();
            p
        };
        match payload {
            Some(p) => {
                let r = EventRecord::decode(&EvtqEntry(p.evt));
                say!(
                    "    VEVENT seq={} flags={:#x} vsid={:#x} {} id={:#x} addr={:#x} S2={} class={} {}",
                    header.sequence,
                    header.flags,
                    r.sid.0,
                    smmu::event_name(&r),
                    r.id.0,
                    r.input_addr,
                    u8::from(r.s2),
                    smmu::class_name(&r),
                    if r.rnw { "read" } else { "write" }
                );
            }
            None => say!(
                "    VEVENT seq={} flags={:#x} (LOST_EVENTS)",
                header.sequence,
                header.flags
            ),
        }
        if out.push(Vevent { header, payload }).is_err() {
            break;
        }
    }
    out
}

/// Scenario 8: edu behind a vIOMMU with virtual StreamID 0x42.
pub fn viommu(ctx: &mut Ctx) -> Outcome {
    // Runs after the 2-level scenario, so Linux's default layout (2-level for 16 SID bits) it is.
    let Some(smmu) = take("Config::DEFAULT", Config::DEFAULT) else {
        return Outcome::Fail;
    };
    let sid = ctx.edu.stream_id();
    let Some(vm) = GuestVm::build(ctx, 9) else {
        say!("    building the VM failed");
        return Outcome::Fail;
    };
    let r = setup(smmu, sid, &vm);
    let Ok((id, vsid)) = r else {
        say!("    vIOMMU setup failed: {:?}", r.err());
        return Outcome::Fail;
    };
    smmu::set_routing(true);
    let mut ok = vm.round_trip(ctx, 0x88);

    // Two stage-1 faults of the guest: forwarded to its vEVENTQ, not to the host.
    let mut faults = 0;
    for (iova, dir) in [
        (IOVA_NO_S1, Direction::FromDevice),
        (IOVA_NO_S1 + 0x1000, Direction::ToDevice),
    ] {
        let seen = faulting_dma(ctx, dir, iova, 4, 1, |_| true);
        faults += 1;
        ok &= check(
            seen.records.is_empty() && seen.drains.len() == 1 && drains_cheap(&seen),
            "stage-1 fault drained in the IRQ handler and routed away from the host",
        );
    }
    // A stage-2 fault of the device: the hypervisor's own, to the host's sink.
    ok &= stage2_output_fault(
        ctx,
        sid,
        "stage-2 fault: to the host's sink with the physical StreamID",
    );

    // The VMM's read() of the vEVENTQ.
    let mut buf = [0u8; 256];
    let n = ROUTER.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf);
    say!("    read(vEVENTQ, 256) = {:?} bytes", n);
    let n = n.unwrap_or(0);
    let records = parse(buf.get(..n).unwrap_or_default());
    ok &= check(
        n == faults * RECORD && records.len() == faults,
        "read() returned 2 whole records of 40 bytes (8-byte header + 32-byte payload)",
    );
    let want = |i: usize| Want {
        id: EventId::F_TRANSLATION,
        sid: StreamId(VSID),
        addr: IOVA_NO_S1 + 0x1000 * i as u64,
        ipa: None,
        s2: false,
        class: 2,
        read: Some(i == 1),
    };
    let recs_ok = records.iter().enumerate().all(|(i, v)| {
        v.header.flags == 0
            && v.header.sequence == i as u32
            && v.payload
                .is_some_and(|p| record_is(&EventRecord::decode(&EvtqEntry(p.evt)), &want(i)))
    });
    ok &= check(
        recs_ok,
        "sequence 0 and 1, flags 0, StreamID replaced by the vSID 0x42, the rest as QEMU wrote it",
    );
    let again = ROUTER.read_vevents(id, VeventqType::ArmSmmuv3, &mut buf);
    ok &= check(
        again == Ok(0),
        "a second read() returns 0: the queue is empty",
    );

    let rs = ROUTER.stats();
    let vs = ROUTER.viommu_stats(id).unwrap_or_default();
    say!(
        "    ROUTER forwarded={} host_stage2={} host_unassigned={} dropped_full={} viommu_forwarded={}",
        rs.forwarded,
        rs.host_stage2,
        rs.host_unassigned,
        rs.dropped_full,
        vs.forwarded
    );
    ok &= check(
        rs.forwarded == 2 && rs.host_stage2 == 1 && vs.forwarded == 2,
        "router: 2 forwarded, 1 stage-2 fault for the host",
    );
    ok &= counters_are(smmu, 3, 0, 0, 0);

    smmu::set_routing(false);
    ok &= teardown(smmu, id, vsid);
    outcome(ok)
}

/// Why the vIOMMU setup failed: a driver call, or one of the scenario's own checks.
#[derive(Clone, Copy, Debug, defmt::Format)]
enum SetupError {
    Driver(Error),
    Check(&'static str),
}

impl From<Error> for SetupError {
    fn from(e: Error) -> Self {
        SetupError::Driver(e)
    }
}

fn setup(
    smmu: &'static DemoSmmu,
    sid: StreamId,
    vm: &GuestVm,
) -> Result<(ViommuId, VStreamId), SetupError> {
    let id = ROUTER.alloc_viommu(ViommuConfig {
        s2: vm.s2cfg,
        features: *smmu.features(),
        coherent_devices: true,
        repeat_tlbi_cfgi: false,
    })?;
    let info = ROUTER.hw_info(id)?;
    say!(
        "    vIOMMU {:#x} (VMID 9); HW info for the guest: IDR0 {:#010x} IDR1 {:#010x} IDR3 {:#010x} IDR5 {:#010x}",
        id.0,
        info.idr[0],
        info.idr[1],
        info.idr[3],
        info.idr[5]
    );
    let vsid = ROUTER.alloc_vdevice(id, DEV_ID, sid, u64::from(VSID), false)?;
    ROUTER.alloc_veventq(id, VeventqType::ArmSmmuv3, 8)?;
    say!(
        "    vDEVICE: StreamID {:#x} is vSID {:#x} in the VM; vEVENTQ (ARM_SMMUV3, depth 8)",
        sid.0,
        vsid.0
    );
    // A guest STE the sanitiser must refuse: STRW = EL2 (dword 1 bits [31:30]).
    let guest = GuestVm::guest_ste();
    let bad = ROUTER.attach_nested(
        id,
        vsid,
        [guest.0[0], guest.0[1] | (2 << 30)],
        smmu,
        |_, _| Ok(()),
    );
    say!("    attach with a guest STE that sets STRW: {:?}", bad);
    let strw = arm_smmuv3::Rejection::SteBits {
        dword: 1,
        bits: 2 << 30,
    };
    // Refused as Linux refuses it (EIO from the guest-STE check), naming the STRW bits.
    if bad != Err(Error::Rejected(strw)) {
        return Err(SetupError::Check(
            "the guest STE with STRW = EL2 was not refused",
        ));
    }
    say!(
        "    guest STE {:#018x} {:#018x} (stage 1, CD at IPA {:#x})",
        guest.0[0],
        guest.0[1],
        guest.s1_context_ptr().0
    );
    let ste = ROUTER.attach_nested(id, vsid, [guest.0[0], guest.0[1]], smmu, |psid, ste| {
        smmu.set_ste(psid, ste)
    })?;
    print_ste(sid, &ste);
    let installed = smmu.ste(sid)?;
    if installed != ste || !matches!(ste.config(), Ok(SteConfig::Nested { .. })) {
        return Err(SetupError::Check("the installed STE is not the nested one"));
    }
    Ok((id, vsid))
}

/// Detach, then destroy in the order iommufd requires (children first).
fn teardown(smmu: &'static DemoSmmu, id: ViommuId, vsid: VStreamId) -> bool {
    let r = ROUTER
        .detach_nested(id, vsid, smmu)
        .and_then(|()| ROUTER.vsid_to_psid(id, vsid))
        .and_then(|psid| smmu.set_ste(psid, &Ste::ABORT))
        .and_then(|()| ROUTER.destroy_veventq(id, VeventqType::ArmSmmuv3))
        .and_then(|()| ROUTER.destroy_vdevice(id, vsid, smmu))
        .and_then(|()| ROUTER.destroy_viommu(id));
    say!(
        "    teardown (detach, abort STE, vEVENTQ, vDEVICE, vIOMMU): {:?}",
        r
    );
    check(r.is_ok(), "vIOMMU torn down")
}
