//! Time per routed event record (IRQ path: lookup, StreamID rewrite, vEVENTQ append), next to a
//! bare 32-byte copy and the reader's cost per record, measured in the same run.
//!
//! `cargo bench --bench route`

use std::hint::black_box;
use std::time::Instant;

use arm_smmuv3::event::{EventRecord, EvtqEntry};
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::VeventqType;
use arm_smmuv3::ste::{Granule, S2Config};
use arm_smmuv3::viommu::{CommandSink, EventSink, Routed, Router, ViommuConfig};
use arm_smmuv3::{Iova, PhysAddr, StreamId, Vmid};

const Q: usize = 1024;
type R = Router<16, 256, 16, Q, 64>;

struct NoCmds;
impl CommandSink for NoCmds {
    fn submit(&self, _: &[arm_smmuv3::command::Command]) -> Result<(), arm_smmuv3::Error> {
        Ok(())
    }
}

struct Host(u64);
impl EventSink for Host {
    fn event(&mut self, e: &EvtqEntry) {
        self.0 = self.0.wrapping_add(e.0[2]);
    }
}

fn main() {
    let r: &'static R = Box::leak(Box::new(R::new()));
    let features = Features::decode(Features::QEMU_VIRT_IDREGS);
    // 16 vIOMMUs with 8 devices each, to give the routing table realistic occupancy (128/256).
    let mut ids = Vec::new();
    for v in 0..16u16 {
        let s2 = S2Config::for_ipa_bits(Vmid(v + 1), PhysAddr(0x4000_0000), 40, Granule::Size4K)
            .unwrap();
        let id = r
            .alloc_viommu(ViommuConfig {
                s2,
                features,
                coherent_devices: true,
                repeat_tlbi_cfgi: false,
            })
            .unwrap();
        for d in 0..8u32 {
            let psid = StreamId(u32::from(v) << 8 | d << 3);
            r.alloc_vdevice(id, 0, psid, u64::from(d), false).unwrap();
            r.attach_nested(
                id,
                arm_smmuv3::VStreamId(d),
                [1 | 5 << 1, 0],
                &NoCmds,
                |_, _| Ok(()),
            )
            .unwrap();
        }
        r.alloc_veventq(id, VeventqType::ArmSmmuv3, Q as u32)
            .unwrap();
        ids.push(id);
    }
    let target = ids[9];
    let psid = StreamId(9 << 8 | 5 << 3);
    let evt = EventRecord::translation_fault(psid, Iova(0xdead_b000), false, true).encode();
    let unassigned =
        EventRecord::translation_fault(StreamId(0xffff), Iova(0x1000), false, true).encode();
    let mut host = Host(0);
    let mut buf = vec![0u8; Q * 40];

    const ROUNDS: usize = 2000;
    let n = (ROUNDS * Q) as f64;

    // Bare 32-byte copy, same count, into a ring of the same size.
    let mut ring = vec![EvtqEntry::default(); Q];
    let t = Instant::now();
    for round in 0..ROUNDS {
        for (i, slot) in ring.iter_mut().enumerate() {
            *slot = black_box(EvtqEntry([
                evt.0[0],
                evt.0[1],
                (round + i) as u64,
                evt.0[3],
            ]));
        }
        black_box(&ring);
    }
    let copy_ns = t.elapsed().as_nanos() as f64 / n;

    // Routed to a guest, reads excluded.
    let mut route = 0u128;
    let mut read = 0u128;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        for _ in 0..Q {
            let r = r.route_event(black_box(&evt), &mut host);
            debug_assert!(matches!(r, Routed::Forwarded { .. }));
            black_box(r);
        }
        route += t.elapsed().as_nanos();
        let t = Instant::now();
        let got = r
            .read_vevents(target, VeventqType::ArmSmmuv3, &mut buf)
            .unwrap();
        read += t.elapsed().as_nanos();
        assert_eq!(got, Q * 40);
    }
    let route_ns = route as f64 / n;
    let read_ns = read as f64 / n;

    // Unassigned StreamID: lookup miss, then the host's sink.
    let t = Instant::now();
    for _ in 0..ROUNDS * Q {
        black_box(r.route_event(black_box(&unassigned), &mut host));
    }
    let host_ns = t.elapsed().as_nanos() as f64 / n;
    black_box(host.0);

    let s = r.viommu_stats(target).unwrap();
    assert_eq!(s.forwarded, (ROUNDS * Q) as u64);
    assert_eq!(s.dropped_full, 0);
    println!("records per case:                 {}", ROUNDS * Q);
    println!("bare 32-byte copy:                {copy_ns:7.2} ns/record");
    println!(
        "routed to a guest vEVENTQ:        {route_ns:7.2} ns/record ({:.1}x copy)",
        route_ns / copy_ns
    );
    println!("vEVENTQ read (40-byte records):   {read_ns:7.2} ns/record");
    println!("unassigned StreamID -> host sink: {host_ns:7.2} ns/record");
}
