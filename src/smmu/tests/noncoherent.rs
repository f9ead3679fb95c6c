//! A non-coherent SMMU: Non-cacheable CR1, and every byte the SMMU reads cleaned first, every
//! slot the CPU reads invalidated first.

use std::string::String;
use std::vec::Vec;

use super::super::*;
use super::recorder::*;
use super::*;
use crate::command::Command;
use crate::error::Error;
use crate::fake::{CmdqFault, DmaOutcome, HostSink};
use crate::features::{IdRegs, QEMU_VIRT};
use crate::ids::{Iova, StreamId, Vmid};
use crate::regs::offset;
use crate::ste::Ste;

/// A driver over a non-coherent SMMU with the coherency checker on; the driver's bookkeeping
/// and the queues the SMMU writes are excluded from the check.
fn noncoherent(idr: IdRegs, config: Config) -> H {
    let m = model(idr);
    let dma = CountingDma::new(&m, usize::MAX);
    let h = H::with(m, dma.clone(), config, true).unwrap();
    let plan = *h.d.plan();
    let a = dma.allocs();
    let mut k = 1;
    if plan.l2_index.is_some() {
        h.rec.exclude(a[k].0, a[k].1);
        k += 1;
    }
    // cmdq at k: checked. Event queue and PRI queue: written by the SMMU.
    for q in &a[k + 1..] {
        h.rec.exclude(q.0, q.1);
    }
    h
}

/// Invalidations in `log` between each PROD read of the queue at page-1 `prod` and the next CONS
/// write must be exactly the slots consumed, `bytes` each, from `base` + index.
fn check_invalidates(log: &[Ev], prod: usize, cons: usize, base: u64, log2: u8, bytes: usize) {
    let mut last_cons = None::<u32>;
    let mut pending: Vec<(u64, usize)> = Vec::new();
    let mut seen_prod = false;
    let mask = (1u32 << log2) - 1;
    let wrap_mask = (2u32 << log2) - 1;
    for e in log {
        match *e {
            Ev::Mmio(1, o, false, _) if o == prod => seen_prod = true,
            Ev::Inval(pa, len) if (base..base + (bytes << log2) as u64).contains(&pa) => {
                assert!(seen_prod, "slot invalidated before PROD was read");
                pending.push((pa, len));
            }
            Ev::Mmio(1, o, true, v) if o == cons => {
                let from = last_cons.unwrap_or(0) & wrap_mask;
                let n = (v & wrap_mask).wrapping_sub(from) & wrap_mask;
                let want: Vec<(u64, usize)> = (0..n)
                    .map(|i| (base + u64::from((from + i) & mask) * bytes as u64, bytes))
                    .collect();
                assert_eq!(pending, want, "invalidations before CONS {v:#x}");
                pending.clear();
                last_cons = Some(v);
            }
            _ => {}
        }
    }
}

#[test]
fn non_coherent_smmu_gets_non_cacheable_cr1_and_no_msi_sync() {
    for (idr, coherent) in [
        (ids(IDR0_MSI, 0), Some(false)),
        (
            IdRegs {
                idr0: (QEMU_VIRT.idr0 | IDR0_MSI) & !IDR0_COHACC,
                ..QEMU_VIRT
            },
            None,
        ),
    ] {
        let config = Config {
            coherent,
            ..Config::default()
        };
        let h = H::reset(idr, config);
        assert!(!h.d.coherent());
        assert_eq!(page0(&h.m).CR1.get(), CR1_NON_COHERENT);
        assert_eq!(page0(&h.m).CR1.get() & 0x3cf, 0, "IC = OC = 0");
        assert_eq!(h.d.completion(), Completion::Poll, "Auto: no MSI polling");
        let msi = Config {
            sync: SyncMode::Msi,
            ..config
        };
        let m = model(idr);
        assert_eq!(
            H::with(m.clone(), CountingDma::new(&m, usize::MAX), msi, false).err(),
            Some(Error::Unsupported(Feature::Msi))
        );
    }
    // The same SMMU declared coherent: WB/ISH and MSI completion.
    let h = H::reset(ids(IDR0_MSI, 0), Config::default());
    assert_eq!(page0(&h.m).CR1.get(), CR1_COHERENT);
    assert_eq!(h.d.completion(), Completion::Msi);
}

#[test]
#[cfg_attr(
    miri,
    ignore = "compares a 4 MiB shadow of the lent memory at every MMIO access: minutes per test under Miri; the same driver paths run under Miri in the coherent tests"
)]
fn non_coherent_smmu_sees_only_cleaned_tables_and_commands() {
    for strtab in [StrtabFormat::TwoLevel, StrtabFormat::Linear] {
        let config = Config {
            coherent: Some(false),
            strtab,
            sid_bits: Some(if strtab == StrtabFormat::Linear {
                8
            } else {
                16
            }),
            cmdq_log2: Some(4),
            ..Config::default()
        };
        let h = noncoherent(ids(IDR0_PRI, 9), config);
        // Bindings before reset (simply written) and after (live updates, each step cleaned).
        h.d.set_ste(StreamId(3), &rec_s2(1)).unwrap();
        h.d.reset().unwrap();
        for (i, sid) in [3u32, 7, 0x42, 0x1ff, 0x2345].into_iter().enumerate() {
            if sid >= 1 << h.d.strtab_layout().sid_bits() {
                continue;
            }
            let sid = StreamId(sid);
            h.d.set_ste(sid, &rec_s2(i as u16 + 2)).unwrap(); // new or replaced (breaking)
            h.d.set_ste(sid, &Ste::bypass(false)).unwrap();
            h.d.set_ste(sid, &rec_s2(9)).unwrap();
            h.d.clear_ste(sid).unwrap();
            h.d.set_ste(sid, &rec_s2(10)).unwrap();
            // What the SMMU walks is what was written.
            assert_eq!(h.m.ste_in_memory(sid), Some(rec_s2(10)));
            assert!(matches!(
                h.m.dma_access(sid, None, Iova(0x1000), false),
                DmaOutcome::Completed { .. }
            ));
        }
        // Batches that wrap the 16-slot queue several times.
        let cmds: Vec<Command> = (0..40)
            .map(|v| Command::TlbiS12Vmall { vmid: Vmid(v) })
            .collect();
        h.d.submit(&cmds).unwrap();
        h.d.submit(&cmds[..5]).unwrap();
        assert_eq!(h.rec.violations(), Vec::<String>::new(), "{strtab:?}");
        let log = h.rec.take();
        assert!(log.iter().any(|e| matches!(e, Ev::Flush(..))));
        // The checker is not vacuous: a coherent driver writes without cleaning.
        let mut coherent = config;
        coherent.coherent = Some(true);
        let hc = noncoherent(ids(IDR0_PRI, 9), coherent);
        hc.d.reset().unwrap();
        hc.d.set_ste(StreamId(7), &rec_s2(1)).unwrap();
        assert!(!hc.rec.violations().is_empty());
        assert!(
            !hc.rec
                .take()
                .iter()
                .any(|e| matches!(e, Ev::Flush(..) | Ev::Inval(..)))
        );
    }
}

#[test]
#[cfg_attr(
    miri,
    ignore = "compares a 4 MiB shadow of the lent memory at every MMIO access: minutes per test under Miri; the same driver paths run under Miri in the coherent tests"
)]
fn non_coherent_drains_invalidate_every_slot_they_read() {
    let h = noncoherent(
        ids(IDR0_PRI, 9),
        Config {
            coherent: Some(false),
            evtq_log2: Some(4),
            priq_log2: Some(4),
            ..Config::default()
        },
    );
    h.d.reset().unwrap();
    let ebase = page0(&h.m).EVENTQ_BASE.get() & 0x00ff_ffff_ffff_ffe0;
    let pbase = page0(&h.m).PRIQ_BASE.get() & 0x00ff_ffff_ffff_ffe0;
    h.rec.take();
    let mut total = 0u32;
    for n in [1u32, 5, 16, 11, 3] {
        for i in 0..n {
            h.m.inject_event(rec_evt(total + i));
            h.m.inject_pri(req(total + i));
        }
        let mut ev = HostSink::default();
        let mut pri = HostSink::default();
        assert_eq!(h.d.drain_evtq(&mut ev).records, n);
        assert_eq!(h.d.drain_priq(&mut pri).records, n);
        assert_eq!(
            ev.events,
            (total..total + n).map(rec_evt).collect::<Vec<_>>()
        );
        assert_eq!(
            pri.requests,
            (total..total + n).map(req).collect::<Vec<_>>()
        );
        total += n;
    }
    let log = h.rec.take();
    assert_eq!(
        log.iter().filter(|e| matches!(e, Ev::Inval(..))).count(),
        2 * total as usize
    );
    check_invalidates(&log, offset::EVENTQ_PROD, offset::EVENTQ_CONS, ebase, 4, 32);
    check_invalidates(&log, offset::PRIQ_PROD, offset::PRIQ_CONS, pbase, 4, 16);
    assert_eq!(h.rec.violations(), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    miri,
    ignore = "compares a 4 MiB shadow of the lent memory at every MMIO access: minutes per test under Miri; the same driver paths run under Miri in the coherent tests"
)]
fn non_coherent_command_error_recovery_cleans_the_replacement() {
    let h = noncoherent(
        QEMU_VIRT,
        Config {
            coherent: Some(false),
            ..Config::default()
        },
    );
    h.d.reset().unwrap();
    h.m.take_commands();
    h.m.inject_cmdq_error(1, CmdqFault::Illegal);
    let cmds = [Command::TlbiNsnhAll, Command::CfgiAll, Command::TlbiNsnhAll];
    h.rec.take();
    assert!(matches!(
        h.d.submit(&cmds),
        Err(Error::Cmdq(crate::error::CmdqError::Illegal(_)))
    ));
    // The refused slot was read after an invalidate, replaced, and cleaned before GERRORN.
    let log = h.rec.take();
    let inval = log
        .iter()
        .position(|e| matches!(e, Ev::Inval(_, 16)))
        .unwrap();
    let gerrorn = log.iter().position(w(0, offset::GERRORN)).unwrap();
    let Ev::Inval(slot, _) = log[inval] else {
        unreachable!()
    };
    assert!(log[inval..gerrorn].contains(&Ev::Flush(slot, 16)));
    assert_eq!(
        h.m.take_commands(),
        [
            Command::TlbiNsnhAll,
            Command::sync(),
            Command::TlbiNsnhAll,
            Command::sync()
        ]
    );
    assert_eq!(h.rec.violations(), Vec::<String>::new());
}
