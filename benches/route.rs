//! The IRQ path's cost per routed event record (lookup, StreamID rewrite, vEVENTQ append) next
//! to a bare 32-byte copy, measured in the same run as medians over interleaved rounds, with the
//! number of locked read-modify-writes per record on the drain path, and the cost of a lookup
//! miss before and after 4,000 StreamIDs came and went through the routing table.
//!
//! `cargo bench --bench route`

use std::hint::black_box;
use std::time::Instant;

use arm_smmuv3::event::{EventRecord, EvtqEntry};
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::VeventqType;
use arm_smmuv3::pri::PriqEntry;
use arm_smmuv3::ste::{Granule, S2Config};
use arm_smmuv3::viommu::{CommandSink, EventSink, PriSink, Router, Viommu, ViommuConfig, ViommuId};
use arm_smmuv3::{Iova, PhysAddr, StreamId, VStreamId, Vmid};

const Q: usize = 1024;
/// 16 vIOMMUs, 256 routes, 16 vDEVICEs each, 1024-record vEVENTQs, 64-fault queues.
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
impl PriSink for Host {
    fn request(&mut self, e: &PriqEntry) {
        self.0 = self.0.wrapping_add(e.0[1]);
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn cfg(vmid: u16) -> ViommuConfig {
    ViommuConfig {
        s2: S2Config::for_ipa_bits(Vmid(vmid), PhysAddr(0x4000_0000), 40, Granule::Size4K).unwrap(),
        features: Features::decode(Features::QEMU_VIRT_IDREGS),
        coherent_devices: true,
        repeat_tlbi_cfgi: false,
    }
}

/// Nanoseconds per lookup miss (an unassigned StreamID through the drain's sink to the host).
fn miss_ns(r: &R, host: &mut Host, rounds: usize) -> f64 {
    let mut per = Vec::new();
    for round in 0..rounds {
        let t = Instant::now();
        {
            let mut sink = r.sink(host);
            for i in 0..Q {
                let sid = 0x10_0000 + ((round * Q + i) as u32 & 0xfff);
                let e = EventRecord::translation_fault(StreamId(sid), Iova(0x1000), false, true)
                    .encode();
                EventSink::event(&mut sink, black_box(&e));
            }
        }
        per.push(t.elapsed().as_nanos() as f64 / Q as f64);
    }
    median(&mut per)
}

fn main() {
    let r: &'static R = Box::leak(Box::new(R::new()));
    // 16 vIOMMUs with 8 devices each, to give the routing table realistic occupancy (128/256).
    let mut ids: Vec<ViommuId> = Vec::new();
    for v in 0..16u16 {
        let id = r.alloc_viommu(cfg(v + 1)).unwrap();
        for d in 0..8u32 {
            let psid = StreamId(u32::from(v) << 8 | d << 3);
            r.alloc_vdevice(id, 0, psid, u64::from(d), false).unwrap();
            r.attach_nested(id, VStreamId(d), [1 | 5 << 1, 0], &NoCmds, |_, _| Ok(()))
                .unwrap();
        }
        r.alloc_veventq(id, VeventqType::ArmSmmuv3, Q as u32)
            .unwrap();
        ids.push(id);
    }
    let target = ids[9];
    let psid = StreamId(9 << 8 | 5 << 3);
    let evt = EventRecord::translation_fault(psid, Iova(0xdead_b000), false, true).encode();
    let mut host = Host(0);
    let mut buf = vec![0u8; Q * 40];
    let mut ring = vec![EvtqEntry::default(); Q];

    // Interleaved rounds: a bare copy of Q records, Q records routed through the drain's sink,
    // and the read of those Q records; the medians of the per-round costs are compared.
    const ROUNDS: usize = 2001;
    let (mut copy, mut route, mut read, mut ratio) = (vec![], vec![], vec![], vec![]);
    let takes_before = r.stats().producer_takes;
    for round in 0..ROUNDS {
        let t = Instant::now();
        for (i, slot) in ring.iter_mut().enumerate() {
            *slot = black_box(EvtqEntry([
                evt.0[0],
                evt.0[1],
                (round + i) as u64,
                evt.0[3],
            ]));
        }
        black_box(&ring);
        let c = t.elapsed().as_nanos() as f64 / Q as f64;

        let t = Instant::now();
        {
            let mut sink = r.sink(&mut host);
            for i in 0..Q {
                let e = EvtqEntry([evt.0[0], evt.0[1], (round + i) as u64, evt.0[3]]);
                EventSink::event(&mut sink, black_box(&e));
            }
        }
        let x = t.elapsed().as_nanos() as f64 / Q as f64;

        let t = Instant::now();
        let got = r
            .read_vevents(target, VeventqType::ArmSmmuv3, &mut buf)
            .unwrap();
        read.push(t.elapsed().as_nanos() as f64 / Q as f64);
        assert_eq!(got, Q * 40);
        copy.push(c);
        route.push(x);
        ratio.push(x / c);
    }
    let records = (ROUNDS * Q) as u64;
    let takes = r.stats().producer_takes - takes_before;
    let s = r.viommu_stats(target).unwrap();
    assert_eq!(s.forwarded, records);
    assert_eq!(s.dropped_full, 0);
    let (copy_ns, route_ns) = (median(&mut copy), median(&mut route));

    // Lookup misses on the table as it is, then after 4,000 StreamIDs were given a vDEVICE and
    // taken away again one after the other (each insert and removal touches the table).
    let fresh = miss_ns(r, &mut host, 201);
    let churn = ids[15];
    for i in 0..4000u32 {
        let sid = StreamId(0x8000 + i);
        r.alloc_vdevice(churn, 0, sid, u64::from(100 + i), false)
            .unwrap();
        r.destroy_vdevice(churn, VStreamId(100 + i), &NoCmds)
            .unwrap();
    }
    let after = miss_ns(r, &mut host, 201);
    black_box(host.0);

    println!(
        "records per case:                     {records} ({ROUNDS} interleaved rounds of {Q})"
    );
    println!("bare 32-byte copy (median):           {copy_ns:7.2} ns/record");
    println!(
        "routed to a guest vEVENTQ (median):   {route_ns:7.2} ns/record ({:.2}x copy; median of per-round ratios {:.2}x)",
        route_ns / copy_ns,
        median(&mut ratio)
    );
    println!(
        "locked RMWs per routed record:        {:.4} (producer token taken {takes} times, 2 RMWs each; no other RMW on the drain path)",
        2.0 * takes as f64 / records as f64
    );
    println!(
        "vEVENTQ read (median):                {:7.2} ns/record",
        median(&mut read)
    );
    println!("unassigned StreamID -> host (median): {fresh:7.2} ns/record");
    println!("  after 4,000 StreamIDs came and went: {after:7.2} ns/record");
    println!(
        "memory: this Router<16, 256, 16, 1024, 64> {} bytes, {} per vIOMMU; the demo's Router<2, 16, 4, 16, 8> {} bytes, {} per vIOMMU (feature cmdqv {})",
        size_of::<R>(),
        size_of::<Viommu<16, 1024, 64>>(),
        size_of::<Router<2, 16, 4, 16, 8>>(),
        size_of::<Viommu<4, 16, 8>>(),
        if cfg!(feature = "cmdqv") { "on" } else { "off" },
    );
}
