//! `loom` models of the router's lifecycle protocol, run on the router itself (its locks,
//! gates, routing table and producer token are `loom`'s under `--cfg loom`).

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::sync::Mutex as StdMutex;
use std::vec::Vec;

use loom::sync::Arc;

use super::{Router, ViommuConfig};
use crate::command::Command;
use crate::error::{Error, Object};
use crate::features::Features;
use crate::ids::{PhysAddr, StreamId, SubstreamId, VStreamId, Vmid};
use crate::iommufd::{HwptPgfault, ViommuArmSmmuv3Invalidate};
use crate::pri::{PageRequest, PriqEntry};
use crate::smmu::{CommandSink, PriSink};
use crate::ste::{Granule, S2Config};

type R = Router<1, 2, 1, 2, 2>;

#[derive(Default)]
struct Rec(StdMutex<Vec<Command>>);

impl CommandSink for Rec {
    fn submit(&self, cmds: &[Command]) -> Result<(), Error> {
        self.0.lock().unwrap().extend_from_slice(cmds);
        Ok(())
    }
}

#[derive(Default)]
struct Host(usize);

impl PriSink for Host {
    fn request(&mut self, _: &PriqEntry) {
        self.0 += 1;
    }
}

fn cfg(vmid: u16) -> ViommuConfig {
    ViommuConfig {
        s2: S2Config::for_ipa_bits(Vmid(vmid), PhysAddr(0x4000_0000), 40, Granule::Size4K).unwrap(),
        features: Features::decode(Features::QEMU_VIRT_IDREGS),
        coherent_devices: true,
        repeat_tlbi_cfgi: false,
    }
}

/// A guest invalidation through vIOMMU A's handle races A's teardown and the allocation of B in
/// the same slot: the call either runs against A (VMID 1) or fails with ENOENT, never against B
/// (the handle is checked again under the lock). Deleting that check makes loom find a TLBI
/// with VMID 2.
#[test]
fn stale_handle_never_reaches_the_next_vm() {
    crate::viommu::sync::model_bounded("stale_handle_never_reaches_the_next_vm", 2, || {
        let r = Arc::new(R::new());
        let a = r.alloc_viommu(cfg(1)).unwrap();
        let t = {
            let r = r.clone();
            loom::thread::spawn(move || {
                let rec = Rec::default();
                let e = ViommuArmSmmuv3Invalidate {
                    cmd: Command::TlbiNsnhAll.encode().0,
                };
                let out = r.invalidate(a, &[e], &rec);
                (out.result, rec.0.into_inner().unwrap())
            })
        };
        r.teardown_viommu(a, &Rec::default()).unwrap();
        let b = r.alloc_viommu(cfg(2)).unwrap();
        assert_eq!(b.index(), a.index());
        let (result, cmds) = t.join().unwrap();
        match result {
            Ok(()) => assert_eq!(cmds, [Command::TlbiNhAll { vmid: Vmid(1) }]),
            Err(e) => {
                assert_eq!(e, Error::NoSuch(Object::Viommu(a)));
                assert!(cmds.is_empty());
            }
        }
    });
}

/// A page request routed while its device is destroyed: whoever looked the route up first,
/// the request is either answered by the destroy (PRI_RESP through its sink) or handed to the
/// host, exactly once, and never left for the vIOMMU to deliver afterwards. Deleting the
/// producer grace round in the purge makes loom find the request left in the ring.
#[test]
fn fault_routed_during_destroy_is_answered_once_and_never_delivered() {
    crate::viommu::sync::model_bounded(
        "fault_routed_during_destroy_is_answered_once_and_never_delivered",
        2,
        || {
            let r = Arc::new(R::new());
            let a = r.alloc_viommu(cfg(1)).unwrap();
            let psid = StreamId(0x18);
            r.alloc_vdevice(a, 1, psid, 3, false).unwrap();
            r.attach_nested(a, VStreamId(3), [1 | 4 << 1, 0], &Rec::default(), |_, _| {
                Ok(())
            })
            .unwrap();
            r.alloc_fault_queue(a).unwrap();
            let p = {
                let r = r.clone();
                loom::thread::spawn(move || {
                    let q = PageRequest {
                        sid: psid,
                        ssid: Some(SubstreamId(1)),
                        privileged: false,
                        exec: false,
                        read: true,
                        write: false,
                        last: true,
                        prg_index: 5,
                        addr: 0x1000,
                    }
                    .encode();
                    let mut host = Host::default();
                    r.route_page_request(&q, &mut host);
                    host.0
                })
            };
            let rec = Rec::default();
            r.destroy_vdevice(a, VStreamId(3), &rec).unwrap();
            let to_host = p.join().unwrap();
            let answered = rec.0.lock().unwrap().len();
            assert_eq!(to_host + answered, 1, "host {to_host}, answered {answered}");
            let mut out = [HwptPgfault::default(); 2];
            assert_eq!(r.read_faults(a, &mut out), Ok(0));
        },
    );
}
