//! Host queue errors the CMDQV error interrupt must acknowledge whatever the queue's CONS.ERR
//! and CMDQ_ERR bit say (Linux's `tegra241_vintf0_handle_error` writes GERRORN = GERROR for every
//! queue flagged in LVCMDQ_ERR_MAP).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use super::*;
use crate::command::Command;
use crate::fake::SmmuModel;
use crate::fake::cmdqv::{CmdqvModel, CmdqvModelParams, CmdqvReg, RecordingCommandSink};

#[test]
fn a_flagged_host_queue_without_a_command_error_is_still_acknowledged() {
    let smmu = SmmuModel::qemu_virt();
    let fake = CmdqvModel::attach(&smmu, CmdqvModelParams::TEST);
    let cfg = CmdqvConfig {
        host_queue_log2: 4,
        ..CmdqvConfig::new(fake.phys(), fake.size(), 8)
    };
    // SAFETY: the model's window is `fake.size()` bytes, lives as long as `fake`, and only this
    // driver touches it.
    let mut cmdqv =
        unsafe { Cmdqv::new(fake.base().cast(), smmu.platform(), smmu.dma(), cfg) }.unwrap();
    let main = RecordingCommandSink::default();
    cmdqv.reset(&main).unwrap();
    // Host queue 1 raises a VCMDQ_GERROR bit other than CMDQ_ERR: flagged in the maps, CONS.ERR
    // and the CMDQ_ERR bit clear.
    fake.raise_queue_error(1, 0b10);
    assert_eq!(fake.vintf_err_map(), 1);
    fake.reset_mmio_counts();
    let stats = cmdqv.handle_error(&NoSink);
    assert_eq!(stats.host_recovered, 0);
    assert_eq!(
        fake.mmio_counts().get(CmdqvReg::Gerrorn).1,
        1,
        "GERRORN written"
    );
    let q = fake.queue(1).unwrap();
    assert_eq!(q.gerror, q.gerrorn);
    assert_eq!(fake.vintf_err_map(), 0, "no longer flagged");
    // The queue still works.
    cmdqv
        .submit(CpuIndex(1), &[Command::TlbiNsnhAll], &main)
        .unwrap();
}

struct NoSink;

impl CmdqvEventSink for NoSink {
    fn report(&self, vintf: VintfId, _: crate::iommufd::VeventTegra241Cmdqv) {
        panic!("unexpected report for VINTF {}", vintf.0);
    }
}
