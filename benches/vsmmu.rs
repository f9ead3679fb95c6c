//! Cost of the virtual SMMU against the host driver doing the same thing directly, on the
//! software SMMUv3 model: `cargo bench --features fakes --bench vsmmu`.
//!
//! Three operations, each as the hypervisor sees it (the exception entry and exit of a trap are
//! not included):
//! - one trapped register read (`VSmmu::read` of CMDQ_CONS, what a guest polls);
//! - one guest TLBI_NH_VA + CMD_SYNC: the trapped CMDQ_PROD write that consumes both, sanitises
//!   the TLBI and issues it with a physical CMD_SYNC, against `Smmu::submit` of the same TLBI;
//! - one guest CFGI_STE + CMD_SYNC: the trapped CMDQ_PROD write that reads the guest's STE,
//!   sanitises it and installs the nested STE, against `Smmu::set_ste` of the same nested STE.
//!
//! Prints the median time per operation over `VSMMU_BENCH_ROUNDS` rounds (default 31) of
//! `VSMMU_BENCH_ITERS` operations (default 2000), the ratio guest/host from the same run, and
//! the physical SMMU's MMIO accesses per operation (exact, counted by the model). For
//! instruction counts run it under `valgrind --tool=callgrind` with small counts
//! (`VSMMU_BENCH_ROUNDS=1 VSMMU_BENCH_ITERS=1000`) and read the inclusive cost of the `op_*`
//! functions with `callgrind_annotate --inclusive=yes`.

use std::cell::RefCell;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use arm_smmuv3::command::{Command, TlbiRange};
use arm_smmuv3::fake::{DriverOnModel, ModelArena, ModelPlatform, SmmuModel};
use arm_smmuv3::features::Features;
use arm_smmuv3::iommufd::VeventqType;
use arm_smmuv3::regs::offset as off;
use arm_smmuv3::smmu::Config;
use arm_smmuv3::ste::{Granule, S2Config, Ste};
use arm_smmuv3::viommu::{NestedSte, Router, ViommuConfig};
use arm_smmuv3::vsmmu::{
    GuestIrq, GuestMemory, IrqLine, OutsideRam, RouterBackend, VSmmu, VSmmuConfig,
};
use arm_smmuv3::{Asid, Ipa, PhysAddr, StreamId, Vmid};

type R = Router<2, 16, 4, 16, 8>;
type Vs<'a> = VSmmu<RouterBackend<'a, ModelPlatform, ModelArena>, &'a Ram, NoIrq>;

const RAM_BASE: u64 = 0x4000_0000;
const STRTAB: u64 = RAM_BASE;
const CMDQ: u64 = RAM_BASE + 0x1_0000;
const EVTQ: u64 = RAM_BASE + 0x2_0000;
const CMDQ_LOG2: u8 = 8;
const VSID: u32 = 0x8;
const PSID: StreamId = StreamId(0x10);
const VMID: Vmid = Vmid(3);
/// Two guest stage-1 STEs (Config = 5, a linear CD table at IPA 0x5000_0000 or 0x5000_1000):
/// each CFGI_STE changes the STE, so that neither path can skip an unchanged one.
const GUEST_STES: [[u64; 2]; 2] = [
    [1 | (5 << 1) | 0x5000_0000, 0],
    [1 | (5 << 1) | 0x5000_1000, 0],
];

struct Ram(RefCell<Vec<u8>>);

impl GuestMemory for Ram {
    fn read(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let o = ipa.0.wrapping_sub(RAM_BASE) as usize;
        let m = self.0.borrow();
        buf.copy_from_slice(m.get(o..o + buf.len()).ok_or(OutsideRam(ipa))?);
        Ok(())
    }
    fn write(&self, ipa: Ipa, data: &[u8]) -> Result<(), OutsideRam> {
        let o = ipa.0.wrapping_sub(RAM_BASE) as usize;
        let mut m = self.0.borrow_mut();
        m.get_mut(o..o + data.len())
            .ok_or(OutsideRam(ipa))?
            .copy_from_slice(data);
        Ok(())
    }
}

impl Ram {
    fn put(&self, ipa: u64, words: &[u64]) {
        for (i, w) in words.iter().enumerate() {
            self.write(Ipa(ipa + 8 * i as u64), &w.to_le_bytes())
                .expect("in RAM");
        }
    }
}

struct NoIrq;
impl GuestIrq for NoIrq {
    fn raise(&self, _: IrqLine) {}
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn tlbi(asid: u16) -> Command {
    Command::TlbiNhVa {
        vmid: Vmid(0),
        asid: Asid(asid),
        addr: 0x1000,
        leaf: true,
        range: TlbiRange::NONE,
    }
}

/// Writes `cmds` at the guest queue's PROD and publishes them with one trapped PROD write.
fn guest_submit(vs: &Vs<'_>, ram: &Ram, cmds: &[Command]) {
    let mut prod = vs.read(off::CMDQ_PROD as u64, 4) as u32;
    for c in cmds {
        let idx = u64::from(prod & ((1 << CMDQ_LOG2) - 1));
        ram.put(CMDQ + 16 * idx, &c.encode().0);
        prod = (prod + 1) & ((2 << CMDQ_LOG2) - 1);
    }
    vs.write(off::CMDQ_PROD as u64, 4, u64::from(prod));
}

#[inline(never)]
fn op_trapped_read(vs: &Vs<'_>, n: usize) {
    for _ in 0..n {
        black_box(vs.read(black_box(off::CMDQ_CONS as u64), 4));
    }
}

#[inline(never)]
fn op_guest_tlbi_sync(vs: &Vs<'_>, ram: &Ram, n: usize) {
    for i in 0..n {
        guest_submit(vs, ram, &[tlbi(i as u16), Command::sync()]);
    }
}

#[inline(never)]
fn op_host_tlbi_sync(smmu: &DriverOnModel, n: usize) {
    for i in 0..n {
        let mut c = tlbi(i as u16);
        if let Command::TlbiNhVa { vmid, .. } = &mut c {
            *vmid = VMID;
        }
        smmu.submit(&[c]).expect("host TLBI");
    }
}

#[inline(never)]
fn op_guest_cfgi_ste(vs: &Vs<'_>, ram: &Ram, n: usize) {
    for i in 0..n {
        ram.put(STRTAB + 64 * u64::from(VSID), &GUEST_STES[i % 2]);
        guest_submit(
            vs,
            ram,
            &[
                Command::CfgiSte {
                    sid: StreamId(VSID),
                    leaf: true,
                },
                Command::sync(),
            ],
        );
    }
}

#[inline(never)]
fn op_host_cfgi_ste(smmu: &DriverOnModel, stes: &[Ste; 2], n: usize) {
    for i in 0..n {
        smmu.set_ste(PSID, &stes[i % 2]).expect("host set_ste");
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn time(rounds: usize, iters: usize, mut f: impl FnMut(usize)) -> f64 {
    f(iters.min(100)); // warm up
    median(
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                f(iters);
                t.elapsed().as_nanos() as f64 / iters as f64
            })
            .collect(),
    )
}

fn main() {
    let rounds = env("VSMMU_BENCH_ROUNDS", 31).max(1);
    let iters = env("VSMMU_BENCH_ITERS", 2000).max(1);

    let m: Arc<SmmuModel> = SmmuModel::qemu_virt();
    let smmu = m.driver(Config::default()).expect("probe");
    smmu.reset().expect("reset");
    let router: Box<R> = Box::new(Router::new());
    let s2 = S2Config::for_ipa_bits(VMID, PhysAddr(0x8000_0000), 40, Granule::Size4K).expect("s2");
    let id = router
        .alloc_viommu(ViommuConfig {
            s2,
            features: Features::decode(Features::QEMU_VIRT_IDREGS),
            coherent_devices: true,
            repeat_tlbi_cfgi: false,
        })
        .expect("viommu");
    router
        .alloc_vdevice(id, 1, PSID, u64::from(VSID), false)
        .expect("vdevice");
    router
        .alloc_veventq(id, VeventqType::ArmSmmuv3, 16)
        .expect("veventq");
    let ram = Ram(RefCell::new(vec![0; 0x3_0000]));
    let vs: Vs<'_> = VSmmu::new(
        VSmmuConfig {
            cmdq_log2: CMDQ_LOG2,
            ..VSmmuConfig::DEFAULT
        },
        RouterBackend::new(&router, &smmu, id),
        &ram,
        NoIrq,
    )
    .expect("vsmmu");
    // The guest's reset: linear table of 256 STEs, 256-entry command queue, everything on.
    ram.put(STRTAB + 64 * u64::from(VSID), &GUEST_STES[1]);
    vs.write(off::STRTAB_BASE as u64, 8, STRTAB);
    vs.write(off::STRTAB_BASE_CFG as u64, 4, 8);
    vs.write(off::CMDQ_BASE as u64, 8, CMDQ | u64::from(CMDQ_LOG2));
    vs.write(off::EVENTQ_BASE as u64, 8, EVTQ | 7);
    vs.write(off::CR0 as u64, 4, 0xd);
    assert_eq!(vs.read(off::CR0ACK as u64, 4), 0xd);
    let nested = GUEST_STES.map(|g| {
        NestedSte::from_guest(g).expect("guest STE").physical(
            &s2,
            false,
            smmu.features().attr_types_ovr,
        )
    });

    // MMIO on the physical SMMU per operation (exact).
    let mmio = |f: &dyn Fn()| {
        m.reset_mmio_counts();
        f();
        m.mmio_counts().total()
    };
    let g_tlbi = mmio(&|| op_guest_tlbi_sync(&vs, &ram, 1));
    let h_tlbi = mmio(&|| op_host_tlbi_sync(&smmu, 1));
    let g_ste = mmio(&|| op_guest_cfgi_ste(&vs, &ram, 1));
    assert_eq!(
        m.ste_in_memory(PSID),
        Some(nested[0]),
        "the guest's CFGI_STE installed it"
    );
    // The host path from the same state: the guest's STE installed, the other one next.
    let h_ste = mmio(&|| op_host_cfgi_ste(&smmu, &[nested[1], nested[0]], 1));

    let read = time(rounds, iters, |n| op_trapped_read(&vs, n));
    let gt = time(rounds, iters, |n| op_guest_tlbi_sync(&vs, &ram, n));
    let ht = time(rounds, iters, |n| op_host_tlbi_sync(&smmu, n));
    let gs = time(rounds, iters, |n| op_guest_cfgi_ste(&vs, &ram, n));
    let hs = time(rounds, iters, |n| op_host_cfgi_ste(&smmu, &nested, n));
    let st = vs.stats();
    assert_eq!(st.cmdq_errors, 0);
    assert_eq!(st.ste_refused, 0);

    println!("vSMMU cost on the software SMMUv3 ({rounds} rounds x {iters}, medians):");
    println!(
        "  operation                       guest ns   host ns   guest/host   phys MMIO guest/host"
    );
    println!(
        "  trapped register read         {read:>10.0}         -            -                    -"
    );
    println!(
        "  TLBI_NH_VA + CMD_SYNC         {gt:>10.0} {ht:>9.0} {:>12.2} {g_tlbi:>14}/{h_tlbi}",
        gt / ht
    );
    println!(
        "  CFGI_STE + CMD_SYNC           {gs:>10.0} {hs:>9.0} {:>12.2} {g_ste:>14}/{h_ste}",
        gs / hs
    );
    println!(
        "  (anchor, Xen vSMMUv3 design document on R-Car: 630 ns per trapped access, 2 us per \
         TLBI, 5 us per CFGI_STE, exception entry included)"
    );
}
