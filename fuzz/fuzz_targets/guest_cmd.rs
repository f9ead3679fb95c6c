//! Guest invalidation commands: whatever a guest sends, the sanitiser never panics, and nothing
//! it lets through names a VMID other than the vIOMMU's or a StreamID outside its vDEVICEs, or
//! has an opcode a guest may not issue. Also drives `Router::invalidate` with a recording sink.
#![no_main]

use arm_smmuv3::command::{CmdqEntry, Command, Opcode};
use arm_smmuv3::error::Error;
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::ViommuArmSmmuv3Invalidate;
use arm_smmuv3::ste::{Granule, S2Config};
use arm_smmuv3::viommu::{
    CommandSink, GuestCmdPolicy, Router, ViommuConfig, sanitise_guest_command,
};
use arm_smmuv3::{PhysAddr, StreamId, VStreamId, Vmid};
use libfuzzer_sys::fuzz_target;
use std::cell::RefCell;

const VMID: Vmid = Vmid(0x2a);
/// vSID -> pSID of the vIOMMU under test.
const VDEVS: [(u32, u32); 3] = [(1, 0x100), (2, 0x200), (0xffff_ffff, 0x300)];

fn check(cmd: &Command) {
    let e = cmd.encode();
    match Opcode::from_u8(e.opcode()) {
        Some(Opcode::TlbiNhAll | Opcode::TlbiNhAsid | Opcode::TlbiNhVa | Opcode::TlbiNhVaa) => {
            assert_eq!(e.vmid(), VMID, "VMID escape: {cmd:?}")
        }
        Some(Opcode::CfgiCd | Opcode::CfgiCdAll | Opcode::AtcInv) => assert!(
            VDEVS.iter().any(|(_, p)| e.sid() == StreamId(*p)),
            "StreamID escape: {cmd:?}"
        ),
        other => panic!("opcode escape: {other:?} {cmd:?}"),
    }
}

struct Rec(RefCell<Vec<Command>>);
impl CommandSink for Rec {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        assert!(cmds.len() <= 63);
        self.0.borrow_mut().extend_from_slice(cmds);
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let policy = GuestCmdPolicy {
        vmid: VMID,
        asid_bits: if flags & 1 != 0 { 16 } else { 8 },
        ril: flags & 2 != 0,
        ds: flags & 4 != 0,
        ats: flags & 8 != 0,
        ssid_bits: if flags & 16 != 0 { 20 } else { 0 },
    };
    let lookup = |v: VStreamId| {
        VDEVS
            .iter()
            .find(|(vs, _)| *vs == v.0)
            .map(|(_, p)| StreamId(*p))
    };
    let mut entries = Vec::new();
    for chunk in rest.chunks_exact(16) {
        let d0 = u64::from_le_bytes(chunk[..8].try_into().unwrap());
        let d1 = u64::from_le_bytes(chunk[8..].try_into().unwrap());
        if let Ok(cmd) = sanitise_guest_command(CmdqEntry([d0, d1]), &policy, lookup) {
            check(&cmd);
        }
        entries.push(ViommuArmSmmuv3Invalidate { cmd: [d0, d1] });
    }

    // The same commands through a vIOMMU: every issued command is checked, and entry_num never
    // exceeds what was issued.
    let router: Box<Router<2, 8, 4, 4, 4>> = Box::new(Router::new());
    let mut features = Features::decode(Features::QEMU_VIRT_IDREGS);
    features.ats = policy.ats;
    features.ril = policy.ril;
    let s2 = S2Config::for_ipa_bits(VMID, PhysAddr(0x4000_0000), 40, Granule::Size4K).unwrap();
    let id = router
        .alloc_viommu(ViommuConfig {
            s2,
            features,
            coherent_devices: true,
            repeat_tlbi_cfgi: false,
        })
        .unwrap();
    for (v, p) in VDEVS {
        router
            .alloc_vdevice(id, p, StreamId(p), u64::from(v), false)
            .unwrap();
    }
    // Another VM with its own device, whose StreamID must never appear.
    let other = router
        .alloc_viommu(ViommuConfig {
            s2: S2Config {
                vmid: Vmid(7),
                ..s2
            },
            features,
            coherent_devices: true,
            repeat_tlbi_cfgi: false,
        })
        .unwrap();
    router
        .alloc_vdevice(other, 1, StreamId(0x400), 1, false)
        .unwrap();
    let rec = Rec(RefCell::new(Vec::new()));
    let out = router.invalidate(id, &entries, &rec);
    let issued = rec.0.borrow();
    assert!(out.entry_num as usize <= issued.len());
    assert_eq!(out.result.is_ok(), out.entry_num as usize == entries.len());
    for c in issued.iter() {
        check(c);
    }
});
