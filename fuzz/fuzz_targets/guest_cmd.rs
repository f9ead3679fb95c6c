//! Guest invalidation commands: whatever a guest sends, the sanitiser never panics, and nothing
//! it lets through names a VMID other than the vIOMMU's or a StreamID outside its vDEVICEs, or
//! has an opcode a guest may not issue. The array goes in as bytes, as IOMMU_HWPT_INVALIDATE
//! takes it (`Router::hwpt_invalidate` / `Router::invalidate_bytes`, any `entry_len`), with a
//! recording sink; the size rules are checked against the bytes.
#![no_main]

use arm_smmuv3::command::{CmdqEntry, Command, Opcode};
use arm_smmuv3::error::{Error, Rejection};
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::{HwptInvalidate, ViommuArmSmmuv3Invalidate};
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

/// The StreamID the guest named (dword 0 bits [63:32]) must have become its vDEVICE's pSID,
/// looked up here in the table above, not through the router.
fn check_map(raw: [u64; 2], cmd: &Command) {
    let e = cmd.encode();
    if let Some(Opcode::CfgiCd | Opcode::CfgiCdAll | Opcode::AtcInv) = Opcode::from_u8(e.opcode()) {
        let vsid = (raw[0] >> 32) as u32;
        let want = VDEVS.iter().find(|(v, _)| *v == vsid).map(|(_, p)| *p);
        assert_eq!(
            Some(e.sid().0),
            want,
            "vSID {vsid:#x} mapped wrong: {cmd:?}"
        );
    }
}

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
    let Some((&[flags, lenb], rest)) = data.split_first_chunk::<2>() else {
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
    // entry_len 0..=40 (0: EINVAL with entries); entry_num what the bytes hold, or one more
    // than they hold (EINVAL) with flag bit 5.
    let entry_len = u32::from(lenb % 41);
    let held = if entry_len == 0 {
        rest.len().min(3)
    } else {
        rest.len() / entry_len as usize
    };
    let entry_num = held as u32 + u32::from(flags & 32 != 0);
    let mut entries = Vec::new();
    let mut dirty_tail = false;
    if entry_len != 0 {
        for chunk in rest.chunks_exact(entry_len as usize) {
            let mut img = [0u8; 16];
            let n = chunk.len().min(16);
            img[..n].copy_from_slice(&chunk[..n]);
            dirty_tail |= chunk.iter().skip(16).any(|&b| b != 0);
            let e = ViommuArmSmmuv3Invalidate::from_bytes(&img);
            if let Ok(cmd) = sanitise_guest_command(CmdqEntry(e.cmd), &policy, lookup) {
                check(&cmd);
                check_map(e.cmd, &cmd);
            }
            entries.push(e);
        }
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
    // ATS-capable devices attached with EATS = 1, so ATC_INV goes through when the SMMU has ATS.
    for (v, p) in VDEVS {
        router
            .alloc_vdevice(id, p, StreamId(p), u64::from(v), true)
            .unwrap();
        router
            .attach_nested(
                id,
                VStreamId(v),
                [1 | 5 << 1, 1 << 28],
                &Rec(RefCell::new(Vec::new())),
                |_, _| Ok(()),
            )
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
    let (entry_num_out, result) = if flags & 64 != 0 {
        // The whole ioctl: a 32- or 40-byte struct (zero tail), entry_num written back.
        let size = if flags & 128 != 0 { 40 } else { 32 };
        let mut arg = HwptInvalidate {
            size,
            hwpt_id: 1,
            data_uptr: 0x1000,
            data_type: 1,
            entry_len,
            entry_num,
            reserved: 0,
        }
        .to_bytes()
        .to_vec();
        arg.resize(size as usize, 0);
        let r = router.hwpt_invalidate(id, &mut arg, rest, &rec);
        (u32::from_ne_bytes(arg[24..28].try_into().unwrap()), r)
    } else {
        let out = router.invalidate_bytes(id, rest, entry_len, entry_num, &rec);
        (out.entry_num, out.result)
    };
    let issued = rec.0.borrow();
    assert!(entry_num_out as usize <= issued.len());
    if entry_num == 0 {
        assert_eq!((entry_num_out, result), (0, Ok(())));
    } else if entry_len == 0 {
        let field = "iommu_hwpt_invalidate.entry_len";
        assert_eq!(result, Err(Error::Invalid { field, value: 0 }));
        assert!(issued.is_empty());
    } else if flags & 32 != 0 {
        let field = "iommu_hwpt_invalidate.entry_num";
        let value = u64::from(entry_num);
        assert_eq!(result, Err(Error::Invalid { field, value }));
        assert!(issued.is_empty());
    } else if dirty_tail {
        assert_eq!(result, Err(Error::TooBig));
        assert!(issued.is_empty());
    } else {
        assert_eq!(result.is_ok(), entry_num_out as usize == entries.len());
        // A refusal is the sanitiser's, with its reason; an unbound vSID is no vDEVICE here.
        if let Err(e) = result {
            let Error::Rejected(why) = e else {
                panic!("not a sanitiser refusal: {e:?}")
            };
            if let Rejection::UnboundVsid(v) = why {
                assert!(VDEVS.iter().all(|(vs, _)| *vs != v.0), "{v:?} is bound");
            }
        }
        // The struct path agrees.
        let rec2 = Rec(RefCell::new(Vec::new()));
        let out2 = router.invalidate(id, &entries, &rec2);
        assert_eq!((out2.entry_num, out2.result), (entry_num_out, result));
        assert_eq!(*rec2.0.borrow(), *issued);
    }
    // The router issues one command per entry, in order.
    for (i, c) in issued.iter().enumerate() {
        check(c);
        if let Some(e) = entries.get(i) {
            check_map(e.cmd, c);
        }
    }
});
