//! The library's own `Smmu` driver run as a guest against a `VSmmu`: every register access of
//! the guest driver goes through its platform's MMIO hook to `VSmmu::read`/`write`, its tables
//! and queues live in a block of "guest RAM" that the vSMMU reads by IPA, and the physical SMMU
//! behind the vIOMMU is the software SMMUv3 model driven by the same driver.
#![cfg(feature = "fakes")]

use std::alloc::{Layout, alloc_zeroed, dealloc};
use std::cell::Cell;
use std::ptr::NonNull;
use std::sync::Arc;

use arm_smmuv3::command::Command;
use arm_smmuv3::error::CmdqError;
use arm_smmuv3::event::{EventId, EventRecord, EvtqEntry};
use arm_smmuv3::fake::{DmaOutcome, DriverOnModel, HostSink, SmmuModel, rig};
use arm_smmuv3::regs::{Page0, Page1};
use arm_smmuv3::smmu::{Config, EventSink, Smmu};
use arm_smmuv3::ste::{Granule, S1Fmt, S1StreamConfig, S2Config, Ste, SteConfig};
use arm_smmuv3::viommu::{Router, ViommuId};
use arm_smmuv3::vsmmu::{GuestMemory, IrqLine, OutsideRam, RouterBackend, VSmmu, VSmmuConfig};
use arm_smmuv3::{
    BumpDma, Error, Iova, Ipa, MmioAccess, PhysAddr, Platform, StreamId, SubstreamId, Vmid, WaitFor,
};

type R = Router<2, 16, 4, 64, 8>;

/// Where the guest's RAM starts in its IPA space, and how much there is.
const IPA_BASE: u64 = 0x4000_0000;
const RAM_BYTES: usize = 4 << 20;
/// The guest's devices: vSID → pSID.
const DEVS: [(u32, u32); 2] = [(0x8, 0x10), (0x9, 0x11)];
const VMID: Vmid = Vmid(3);

/// A zeroed, 64 KiB-aligned block the test owns for its whole run.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
}

impl Block {
    fn new(bytes: usize) -> Self {
        let layout = Layout::from_size_align(bytes, 0x1_0000).unwrap();
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { alloc_zeroed(layout) }).unwrap();
        Self { ptr, layout }
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// Guest RAM as the hypervisor sees it: IPA `IPA_BASE..` backed by a block.
struct GuestRam(Block);

impl GuestRam {
    fn host(&self, ipa: Ipa, len: usize) -> Result<*mut u8, OutsideRam> {
        let off = ipa.0.checked_sub(IPA_BASE).ok_or(OutsideRam(ipa))? as usize;
        if off.checked_add(len).is_none_or(|end| end > RAM_BYTES) {
            return Err(OutsideRam(ipa));
        }
        // SAFETY: `off + len <= RAM_BYTES`, inside the block.
        Ok(unsafe { self.0.ptr.as_ptr().add(off) })
    }
}

impl GuestMemory for GuestRam {
    fn read(&self, ipa: Ipa, buf: &mut [u8]) -> Result<(), OutsideRam> {
        let p = self.host(ipa, buf.len())?;
        // SAFETY: `p..p + len` is inside the block (checked by `host`); the test is single
        // threaded, so no store of the guest driver races with this copy.
        unsafe { std::ptr::copy_nonoverlapping(p, buf.as_mut_ptr(), buf.len()) };
        Ok(())
    }
    fn write(&self, ipa: Ipa, data: &[u8]) -> Result<(), OutsideRam> {
        let p = self.host(ipa, data.len())?;
        // SAFETY: as in `read`.
        unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), p, data.len()) };
        Ok(())
    }
}

type Lines = arm_smmuv3::fake::rig::RaisedLines;

type Backend<'a> = RouterBackend<'a, arm_smmuv3::fake::ModelPlatform, arm_smmuv3::fake::ModelArena>;
type Vs<'a> = VSmmu<Backend<'a>, &'a GuestRam, &'a Lines>;

/// The guest driver's platform: each MMIO access of the guest driver is a trap delivered to the
/// vSMMU, the way a hypervisor's data-abort handler would (the register window is plain memory
/// the hook fills before a read and reads after a write).
struct GuestPlatform<'a> {
    vs: &'a Vs<'a>,
    window: &'a Block,
    clock: Cell<u64>,
    reads: Cell<u32>,
    writes: Cell<u32>,
}

impl GuestPlatform<'_> {
    /// 64-bit registers (IHI 0070 §6.2): accessed by the driver with 64-bit loads and stores.
    fn width(off: u64) -> usize {
        if matches!(off, 0x68 | 0x80 | 0x90 | 0xa0 | 0xb0 | 0xc0 | 0xd0) {
            8
        } else {
            4
        }
    }
}

impl Platform for GuestPlatform<'_> {
    fn now_us(&self) -> u64 {
        self.clock.get()
    }
    fn relax(&self, _: WaitFor) {
        self.clock.set(self.clock.get() + 10);
    }
    fn mmio(&self, addr: usize, access: MmioAccess) {
        let off = (addr - self.window.ptr.as_ptr() as usize) as u64;
        let w = Self::width(off);
        let p = addr as *mut u8;
        match access {
            MmioAccess::Read => {
                self.reads.set(self.reads.get() + 1);
                let v = self.vs.read(off, w);
                // SAFETY: `addr` is a register of the window the guest driver was given, aligned
                // to its width; nothing else accesses the window meanwhile.
                unsafe {
                    if w == 8 {
                        p.cast::<u64>().write_volatile(v);
                    } else {
                        p.cast::<u32>().write_volatile(v as u32);
                    }
                }
            }
            MmioAccess::Write => {
                self.writes.set(self.writes.get() + 1);
                // SAFETY: as above.
                let v = unsafe {
                    if w == 8 {
                        p.cast::<u64>().read_volatile()
                    } else {
                        u64::from(p.cast::<u32>().read_volatile())
                    }
                };
                self.vs.write(off, w, v);
            }
        }
    }
}

fn physical() -> (Arc<SmmuModel>, DriverOnModel) {
    let (m, d) = rig::reset_driver(Config::default()).unwrap();
    // The host's own start-up commands are not the guest's.
    m.take_commands();
    (m, d)
}

fn viommu(router: &R) -> ViommuId {
    let devices: Vec<_> = (0..)
        .zip(DEVS)
        .map(|(i, (v, p))| (i, StreamId(p), u64::from(v)))
        .collect();
    rig::viommu(router, VMID, PhysAddr(0x8000_0000), &devices, 64)
        .unwrap()
        .0
}

type Guest<'a> = Smmu<GuestPlatform<'a>, BumpDma>;

/// The library's driver as the guest's: its registers are `window` (every access trapped to
/// `vs`), its tables and queues are allocated from the guest's RAM by IPA; 8-entry event queue.
fn guest_driver<'a>(vs: &'a Vs<'a>, window: &'a Block, ram: &'a GuestRam) -> Guest<'a> {
    let plat = GuestPlatform {
        vs,
        window,
        clock: Cell::new(0),
        reads: Cell::new(0),
        writes: Cell::new(0),
    };
    // SAFETY: the guest RAM block is zeroed, lives for the test, and is used by nothing but the
    // guest driver (and the vSMMU, which reads it the way an SMMU does).
    let dma = unsafe { BumpDma::new(ram.0.ptr, PhysAddr(IPA_BASE), RAM_BYTES) };
    let page0 = window.ptr.cast::<Page0>();
    // SAFETY: the window is 0x20000 bytes, page 1 starts 0x10000 in.
    let page1 = unsafe { window.ptr.add(0x1_0000) }.cast::<Page1>();
    let gcfg = Config {
        evtq_log2: Some(3),
        ..Config::default()
    };
    // SAFETY: the window is the vSMMU's register pages for this guest driver only.
    unsafe { Smmu::new(page0, page1, plat, dma, gcfg) }.unwrap()
}

#[derive(Default)]
struct Seen {
    events: Vec<EventRecord>,
    overflows: u32,
}

impl EventSink for Seen {
    fn event(&mut self, e: &EvtqEntry) {
        self.events.push(EventRecord::decode(e));
    }
    fn overflow(&mut self) {
        self.overflows += 1;
    }
}

#[test]
fn the_library_driver_as_a_guest_of_a_vsmmu() {
    let (m, phys) = physical();
    let router: Box<R> = Box::new(Router::new());
    let id = viommu(&router);
    let ram = GuestRam(Block::new(RAM_BYTES));
    let lines = Lines::default();
    let cfg = VSmmuConfig {
        sid_bits: 16,
        cmdq_log2: 8,
        evtq_log2: 3,
        ..VSmmuConfig::DEFAULT
    };
    let vs: Vs<'_> = VSmmu::new(cfg, RouterBackend::new(&router, &phys, id), &ram, &lines).unwrap();
    vs.sync_streams();
    for (_, p) in DEVS {
        assert_eq!(
            m.ste_in_memory(StreamId(p)),
            Some(Ste::ABORT),
            "abort until the guest says"
        );
    }

    // --- probe and reset, as the guest's kernel would.
    let window = Block::new(0x2_0000);
    let guest = guest_driver(&vs, &window, &ram);
    assert!(guest.features().stage1 && !guest.features().stage2);
    assert_eq!(guest.strtab_layout().sid_bits(), 16);
    guest.reset().unwrap();
    let (reads, writes) = (guest.platform().reads.get(), guest.platform().writes.get());
    let s = vs.stats();
    assert_eq!(
        (s.unknown_reads, s.unknown_writes, s.bad_accesses),
        (0, 0, 0)
    );
    assert_eq!(s.cmdq_errors, 0);
    assert!(
        s.syncs >= 1,
        "the start-up CFGI_ALL + TLBI_NSNH_ALL + CMD_SYNC ran"
    );
    println!("guest probe + reset: {reads} trapped reads, {writes} trapped writes");
    // TLBI_NSNH_ALL arrived on the physical SMMU as TLBI_NH_ALL for the guest's VMID only.
    let cmds = m.take_commands();
    assert!(
        cmds.contains(&Command::TlbiNhAll { vmid: VMID }),
        "{cmds:?}"
    );
    assert!(!cmds.contains(&Command::TlbiNsnhAll));

    // --- bind a stream: a stage-1 STE with a linear CD table in guest memory.
    let cd_ipa = PhysAddr(IPA_BASE + 0x30_0000);
    let s1 = S1StreamConfig::new(cd_ipa, S1Fmt::Linear, 0);
    guest.set_ste(StreamId(0x8), &Ste::stage1(&s1)).unwrap();
    let pste = m.ste_in_memory(StreamId(0x10)).unwrap();
    match pste.config() {
        Ok(SteConfig::Nested { s1, s2 }) => {
            assert_eq!(s1.context_ptr, cd_ipa, "the guest's CD table, by IPA");
            assert_eq!(s2.vmid, VMID);
        }
        other => panic!("not nested: {other:?}"),
    }
    // The other device stays aborting.
    assert_eq!(m.ste_in_memory(StreamId(0x11)), Some(Ste::ABORT));
    assert_eq!(vs.stats().ste_refused, 0);

    // --- submit commands: the VMID is forced, vSIDs become pSIDs.
    m.take_commands();
    guest
        .submit(&[
            Command::TlbiNhAsid {
                vmid: Vmid(0),
                asid: arm_smmuv3::Asid(5),
            },
            Command::CfgiCdAll { sid: StreamId(0x8) },
        ])
        .unwrap();
    let cmds = m.take_commands();
    assert!(cmds.contains(&Command::TlbiNhAsid {
        vmid: VMID,
        asid: arm_smmuv3::Asid(5)
    }));
    assert!(cmds.contains(&Command::CfgiCdAll {
        sid: StreamId(0x10)
    }));

    // --- a command error: the guest driver sees CERROR_ILL for the command it may not issue,
    // replaces it, acknowledges, and its queue works again.
    let bad = Command::TlbiS12Vmall { vmid: Vmid(1) };
    let err = guest.submit(&[bad]).unwrap_err();
    assert_eq!(err, Error::Cmdq(CmdqError::Illegal(bad.encode().0)));
    assert!(lines.0.borrow().contains(&IrqLine::Gerror));
    let cmds = m.take_commands();
    assert!(
        !cmds
            .iter()
            .any(|c| matches!(c, Command::TlbiS12Vmall { .. }))
    );
    guest
        .submit(&[Command::TlbiNhAll { vmid: Vmid(0) }])
        .unwrap();
    assert!(
        m.take_commands()
            .contains(&Command::TlbiNhAll { vmid: VMID })
    );
    assert_eq!(vs.stats().cmdq_errors, 1);

    // --- a faulting DMA of the guest's device: SubstreamID 1 with S1CDMax = 0 gives
    // C_BAD_SUBSTREAMID on the physical SMMU, which the drain routes to the vIOMMU, which the
    // vSMMU copies into the guest's event queue with the vSID.
    let out = m.dma_access(StreamId(0x10), Some(SubstreamId(1)), Iova(0x1234), false);
    assert!(!matches!(out, DmaOutcome::Completed { .. }), "{out:?}");
    let mut host = HostSink::default();
    phys.drain_evtq(&mut router.sink(&mut host));
    assert!(
        host.events.is_empty(),
        "the guest's record is not the host's"
    );
    let d = vs.deliver_events();
    assert_eq!(d.written, 1);
    assert!(lines.0.borrow().contains(&IrqLine::Eventq));
    let mut seen = Seen::default();
    guest.drain_evtq(&mut seen);
    assert_eq!(seen.events.len(), 1);
    assert_eq!(seen.events[0].id, EventId::C_BAD_SUBSTREAMID);
    assert_eq!(seen.events[0].sid, StreamId(0x8), "the vSID");
    assert_eq!(seen.overflows, 0);

    // --- a flood larger than the guest's 8-entry queue: what fits arrives, the rest shows as
    // OVFLG, which the guest driver reports as an overflow.
    for i in 0..20u64 {
        m.inject_event(
            EventRecord::translation_fault(StreamId(0x10), Iova(0x1000 * (i + 1)), false, true)
                .encode(),
        );
    }
    phys.drain_evtq(&mut router.sink(&mut host));
    assert!(host.events.is_empty());
    // No explicit delivery: the guest's read of EVENTQ_PROD pulls the records itself.
    let mut seen = Seen::default();
    guest.drain_evtq(&mut seen);
    assert_eq!(seen.events.len(), 8);
    assert!(seen.events.iter().all(|e| e.sid == StreamId(0x8)));
    assert_eq!(seen.events[0].input_addr, 0x1000);
    assert_eq!(seen.overflows, 1, "OVFLG");
    let s = vs.stats();
    assert_eq!(s.events_lost, 12);
    assert_eq!(s.overflows, 1);
    // After the acknowledgement the queue works again.
    m.inject_event(
        EventRecord::translation_fault(StreamId(0x10), Iova(0x9000), false, true).encode(),
    );
    phys.drain_evtq(&mut router.sink(&mut host));
    let mut seen = Seen::default();
    guest.drain_evtq(&mut seen);
    assert_eq!((seen.events.len(), seen.overflows), (1, 0));
}

/// A guest STE the sanitiser refuses never reaches the hardware: the stream aborts and the
/// guest reads C_BAD_STE for its vSID from its own event queue.
#[test]
fn a_refused_guest_ste_aborts_and_reports_c_bad_ste() {
    let (m, phys) = physical();
    let router: Box<R> = Box::new(Router::new());
    let id = viommu(&router);
    let ram = GuestRam(Block::new(RAM_BYTES));
    let lines = Lines::default();
    let vs: Vs<'_> = VSmmu::new(
        VSmmuConfig {
            evtq_log2: 3,
            ..VSmmuConfig::DEFAULT
        },
        RouterBackend::new(&router, &phys, id),
        &ram,
        &lines,
    )
    .unwrap();
    vs.sync_streams();
    let window = Block::new(0x2_0000);
    let guest = guest_driver(&vs, &window, &ram);
    guest.reset().unwrap();
    // A stage-2-only STE is the hypervisor's business, not the guest's.
    let s2 = S2Config::for_ipa_bits(Vmid(1), PhysAddr(0), 40, Granule::Size4K).unwrap();
    guest.set_ste(StreamId(0x9), &Ste::stage2(&s2)).unwrap();
    assert_eq!(m.ste_in_memory(StreamId(0x11)), Some(Ste::ABORT));
    assert!(vs.stats().ste_refused >= 1);
    let mut seen = Seen::default();
    guest.drain_evtq(&mut seen);
    assert!(!seen.events.is_empty());
    assert!(
        seen.events
            .iter()
            .all(|e| e.id == EventId::C_BAD_STE && e.sid == StreamId(0x9))
    );
}
