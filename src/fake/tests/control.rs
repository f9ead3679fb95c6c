//! CR0/IRQ_CTRL/GBPA handshakes, GERROR, read-only registers, clock and counters.

use super::util::Rig;
use crate::error::WaitFor;
use crate::fake::{AckBehaviour, AckReg};
use crate::features::QEMU_VIRT;
use crate::platform::Platform;

#[test]
fn reset_values_are_qemus() {
    let r = Rig::qemu();
    assert_eq!(r.read32("IDR0"), QEMU_VIRT.idr0);
    assert_eq!(r.read32("IDR1"), 0x0273_0010);
    assert_eq!(r.read32("IDR3"), 0x1414);
    assert_eq!(r.read32("IDR5"), 0x74);
    assert_eq!(r.read32("AIDR"), 1);
    assert_eq!(r.read32("GBPA"), 0x1000);
    assert_eq!(r.read64("CMDQ_BASE"), 19);
    assert_eq!(r.read64("EVENTQ_BASE"), 19);
    assert_eq!(r.read32("CR0ACK"), 0);
    assert_eq!(r.read32("GERROR"), 0);
}

#[test]
fn cr0_is_acknowledged_synchronously() {
    let r = Rig::qemu();
    r.write32("CR0", 0x8);
    assert_eq!(r.read32("CR0ACK"), 0x8);
    assert_eq!(r.smmu.cr0(), 0x8);
    // Reserved bits are not acknowledged.
    r.write32("CR0", 0x8 | (1 << 5) | (1 << 12));
    assert_eq!(r.read32("CR0ACK"), 0x8);
}

#[test]
fn cr0_ack_can_be_late_or_never() {
    let r = Rig::qemu();
    r.smmu.set_ack(AckReg::Cr0, AckBehaviour::AfterPolls(3));
    r.write32("CR0", 0x8);
    let seen: Vec<u32> = (0..5).map(|_| r.read32("CR0ACK")).collect();
    assert_eq!(seen, [0, 0, 0, 8, 8]);
    r.smmu.set_ack(AckReg::Cr0, AckBehaviour::Never);
    assert!(!r.cr0_sync(0, 1000));
    assert_eq!(r.smmu.cr0(), 0x8, "unacknowledged write has no effect");
    r.smmu.set_ack(AckReg::Cr0, AckBehaviour::Immediate);
    assert!(r.cr0_sync(0, 1));
}

#[test]
fn irq_ctrl_is_acknowledged_and_can_be_withheld() {
    let r = Rig::qemu();
    r.write32("IRQ_CTRL", 0x5);
    assert_eq!(r.read32("IRQ_CTRLACK"), 0x5);
    assert_eq!(r.smmu.irq_ctrl(), 0x5);
    r.smmu.set_ack(AckReg::IrqCtrl, AckBehaviour::Never);
    r.write32("IRQ_CTRL", 0);
    assert!((0..100).all(|_| r.read32("IRQ_CTRLACK") == 0x5));
    r.smmu.set_ack(AckReg::IrqCtrl, AckBehaviour::AfterPolls(1));
    r.write32("IRQ_CTRL", 0x7 | 0x100);
    assert_eq!(r.read32("IRQ_CTRLACK"), 0x5);
    assert_eq!(r.read32("IRQ_CTRLACK"), 0x7);
}

#[test]
fn gbpa_update_handshake() {
    let r = Rig::qemu();
    // Without UPDATE the write is ignored.
    r.write32("GBPA", 1 << 20);
    assert_eq!(r.read32("GBPA"), 0x1000);
    r.write32("GBPA", (1 << 31) | (1 << 20) | 0x1000);
    assert_eq!(r.read32("GBPA"), (1 << 20) | 0x1000);
    assert_eq!(r.smmu.gbpa(), (1 << 20) | 0x1000);
    r.smmu.set_ack(AckReg::Gbpa, AckBehaviour::AfterPolls(2));
    r.write32("GBPA", (1 << 31) | 0x1000);
    assert_eq!(r.read32("GBPA") >> 31, 1);
    assert_eq!(r.read32("GBPA") >> 31, 1);
    assert_eq!(r.read32("GBPA"), 0x1000);
    r.smmu.set_ack(AckReg::Gbpa, AckBehaviour::Never);
    r.write32("GBPA", (1 << 31) | (1 << 20));
    assert!((0..50).all(|_| r.read32("GBPA") >> 31 == 1));
    assert_eq!(r.smmu.gbpa(), 0x1000);
}

#[test]
fn read_only_registers_ignore_writes() {
    let r = Rig::qemu();
    r.write32("IDR0", 0);
    r.write32("CR0ACK", 0xf);
    r.write32("GERROR", 0x1);
    r.write32("IRQ_CTRLACK", 0x7);
    assert_eq!(r.read32("IDR0"), QEMU_VIRT.idr0);
    assert_eq!(r.read32("CR0ACK"), 0);
    assert_eq!(r.read32("GERROR"), 0);
    assert_eq!(r.read32("IRQ_CTRLACK"), 0);
}

#[test]
fn gerror_toggles_and_is_acknowledged_through_gerrorn() {
    let r = Rig::qemu();
    r.write32("IRQ_CTRL", 0x1);
    r.smmu.raise_gerror(1 << 8 | 1 << 2);
    assert_eq!(r.read32("GERROR"), 0x104);
    assert_eq!(r.smmu.gerror_active(), 0x104);
    assert_eq!(r.smmu.irq_counts().gerror, 1);
    // Raising an active error again changes nothing.
    r.smmu.raise_gerror(1 << 2);
    assert_eq!(r.read32("GERROR"), 0x104);
    assert_eq!(r.smmu.irq_counts().gerror, 1);
    let g = r.read32("GERROR");
    r.write32("GERRORN", g);
    assert_eq!(r.smmu.gerror_active(), 0);
    // The next error toggles the bit back to 0: still active (GERROR != GERRORN).
    r.smmu.raise_gerror(1 << 2);
    assert_eq!(r.read32("GERROR"), 0x100);
    assert_eq!(r.smmu.gerror_active(), 0x4);
    assert_eq!(r.smmu.irq_counts().gerror, 2);
    // Without GERROR_IRQEN no interrupt is signalled.
    r.write32("IRQ_CTRL", 0);
    r.smmu.raise_gerror(1 << 5);
    assert_eq!(r.smmu.irq_counts().gerror, 2);
}

#[test]
fn relax_advances_the_virtual_clock() {
    let r = Rig::qemu();
    assert_eq!(r.plat.now_us(), 0);
    r.plat.relax(WaitFor::Cr0Ack);
    r.plat.wait_for_event(WaitFor::CmdSync);
    assert_eq!(r.plat.now_us(), 2);
    r.smmu.set_relax_step_us(1000);
    r.plat.relax(WaitFor::Cr0Ack);
    assert_eq!(r.plat.now_us(), 1002);
    r.smmu.advance_us(8);
    assert_eq!(r.smmu.now_us(), 1010);
}

#[test]
fn mmio_is_counted_per_register() {
    let r = Rig::qemu();
    r.write32("CR0", 0x8);
    r.read32("CR0ACK");
    r.read32("CR0ACK");
    r.write64("STRTAB_BASE", 0x8000_0000);
    r.write32("EVENTQ_CONS", 0);
    let c = r.smmu.mmio_counts();
    assert_eq!(c.writes("CR0"), 1);
    assert_eq!(c.reads("CR0ACK"), 2);
    assert_eq!(c.writes("STRTAB_BASE"), 1);
    assert_eq!(c.writes("EVENTQ_CONS"), 1);
    assert_eq!(c.total(), 5);
    r.smmu.reset_mmio_counts();
    assert_eq!(r.smmu.mmio_counts().total(), 0);
}

#[test]
fn accesses_outside_the_pages_go_to_other_devices() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    struct Dev(AtomicU64);
    impl crate::fake::MmioDevice for Dev {
        fn contains(&self, addr: usize) -> bool {
            addr == 0x1000
        }
        fn access(&self, _addr: usize, write: bool) {
            self.0
                .fetch_add(if write { 100 } else { 1 }, Ordering::Relaxed);
        }
    }
    let r = Rig::qemu();
    let d = Arc::new(Dev(AtomicU64::new(0)));
    r.smmu.add_device(d.clone());
    r.plat.mmio(0x1000, crate::platform::MmioAccess::Write);
    r.plat.mmio(0x1000, crate::platform::MmioAccess::Read);
    r.plat.mmio(0x2000, crate::platform::MmioAccess::Read);
    assert_eq!(d.0.load(Ordering::Relaxed), 101);
    assert_eq!(r.smmu.mmio_counts().outside, 3);
    assert_eq!(r.smmu.mmio_counts().total(), 0);
}

#[test]
fn typed_register_pages_reach_the_model() {
    use crate::regs::{CR0, EVENTQ_CONS};
    use tock_registers::interfaces::{Readable, Writeable};
    let r = Rig::qemu();
    // SAFETY: the pages live as long as `r.smmu` and are only accessed from this thread.
    let (p0, p1) = unsafe { (r.smmu.page0().as_ref(), r.smmu.page1().as_ref()) };
    assert_eq!(p0.IDR0.get(), QEMU_VIRT.idr0);
    p0.CR0.write(CR0::CMDQEN::SET);
    r.plat.mmio(
        core::ptr::addr_of!(p0.CR0) as usize,
        crate::platform::MmioAccess::Write,
    );
    assert_eq!(p0.CR0ACK.get(), 0x8);
    p1.EVENTQ_CONS.write(EVENTQ_CONS::OVACKFLG::SET);
    let a = core::ptr::addr_of!(p1.EVENTQ_CONS) as usize;
    r.plat.mmio(a, crate::platform::MmioAccess::Write);
    assert_eq!(r.smmu.mmio_counts().writes("EVENTQ_CONS"), 1);
    assert_eq!(r.read32("EVENTQ_CONS"), 1 << 31);
}

#[test]
fn the_model_lends_its_pages_to_one_driver_only() {
    let m = crate::fake::SmmuModel::qemu_virt();
    // A refused probe gives the pages back.
    let too_many = crate::smmu::Config {
        sid_bits: Some(17),
        ..crate::smmu::Config::default()
    };
    assert!(m.driver(too_many).is_err());
    let d = m.driver(crate::smmu::Config::default()).unwrap();
    assert_eq!(
        m.driver(crate::smmu::Config::default()).err(),
        Some(crate::Error::InUse(crate::Object::Smmu))
    );
    d.reset().unwrap();
    assert_eq!(m.cr0() & 1, 1, "the driver drove this model");
}
