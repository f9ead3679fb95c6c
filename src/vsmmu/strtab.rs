//! The guest's stream table: linear or 2-level, walked by IPA (IHI 0070 §3.3, §5.1, §6.3.24,
//! §6.3.25), and what each vDEVICE is given from it.

use crate::error::Error;
use crate::event::EventRecord;
use crate::ids::{Ipa, PhysAddr, StreamId, VStreamId};
use crate::regs::STRTAB_BASE_CFG::FMT::Value as Fmt;
use crate::regs::bits::{self, get32};
use crate::regs::{STRTAB_BASE, STRTAB_BASE_CFG};
use crate::ste::L1Std;
use crate::ste::STE0::{self, CONFIG::Value as Config};
use tock_registers::LocalRegisterCopy;

use super::regs;
use super::{Backend, GuestIrq, GuestMemory, State, VSmmu};

/// Bytes of one STE (IHI 0070 §5.2).
const STE_BYTES: u64 = 64;
/// Bytes of one L1 descriptor (IHI 0070 §5.1).
const L1_BYTES: u64 = 8;

/// STE.Config of dword 0 (IHI 0070 §5.2).
const fn config(d0: u64) -> u64 {
    bits::get(STE0::CONFIG, d0)
}

/// What the guest's table holds for a StreamID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fetch {
    /// STE dwords 0-1.
    Ste([u64; 2]),
    /// No STE: beyond the table, an invalid L1 descriptor, or a reserved format or SPLIT
    /// (an SMMU reports C_BAD_STREAMID for a transaction there).
    Missing,
    /// The table walk hit an IPA outside guest RAM (F_STE_FETCH with that address).
    Fault(Ipa),
}

impl<B: Backend, M: GuestMemory, I: GuestIrq> VSmmu<B, M, I> {
    fn read_u64s<const N: usize>(&self, ipa: u64) -> Result<[u64; N], Ipa> {
        let mut out = [0u64; N];
        for (i, w) in out.iter_mut().enumerate() {
            let at = Ipa(ipa.wrapping_add(8 * i as u64));
            let mut b = [0u8; 8];
            self.mem.read(at, &mut b).map_err(|e| e.0)?;
            *w = u64::from_le_bytes(b);
        }
        Ok(out)
    }

    /// Walks the guest's stream table for `sid` (at most two reads of guest memory, each
    /// bounded by the table geometry the registers give).
    pub(super) fn fetch_ste(&self, st: &State, sid: u32) -> Fetch {
        let cfg = st.regs.strtab_base_cfg;
        let base =
            st.regs.strtab_base & regs::addr_mask(self.cfg.ipa_bits) & STRTAB_BASE::ADDR::SET.value;
        // LOG2SIZE above IDR1.SIDSIZE is taken as SIDSIZE (IHI 0070 §6.3.25).
        let log2 = (get32(STRTAB_BASE_CFG::LOG2SIZE, cfg) as u8).min(self.cfg.sid_bits);
        let sid = u64::from(sid);
        if log2 < 64 && sid >> log2 != 0 {
            return Fetch::Missing;
        }
        let fmt = LocalRegisterCopy::<u32, STRTAB_BASE_CFG::Register>::new(cfg)
            .read_as_enum(STRTAB_BASE_CFG::FMT);
        let split = get32(STRTAB_BASE_CFG::SPLIT, cfg) as u8;
        let ste_at = match fmt {
            Some(Fmt::Linear) => base + sid * STE_BYTES,
            Some(Fmt::TwoLevel) if matches!(split, 6 | 8 | 10) => {
                let l1 = base + (sid >> split) * L1_BYTES;
                let desc = match self.read_u64s::<1>(l1) {
                    Ok([d]) => L1Std(d),
                    Err(ipa) => return Fetch::Fault(ipa),
                };
                let idx = sid & ((1 << split) - 1);
                if !desc.is_valid() || idx >= u64::from(desc.l2_entries()) {
                    return Fetch::Missing;
                }
                (desc.l2ptr().0 & regs::addr_mask(self.cfg.ipa_bits)) + idx * STE_BYTES
            }
            _ => return Fetch::Missing,
        };
        match self.read_u64s::<2>(ste_at) {
            Ok(d) => Fetch::Ste(d),
            Err(ipa) => Fetch::Fault(ipa),
        }
    }

    /// Gives the vDEVICE `vsid` what the guest's registers and table say: GBPA while the
    /// guest's SMMU is off; its STE, sanitised, once on. A refused STE aborts the stream and
    /// gives the guest C_BAD_STE; an unreachable one aborts it and gives F_STE_FETCH.
    pub(super) fn apply_ste(&self, st: &mut State, vsid: VStreamId) {
        let r = if !st.regs.smmuen() {
            if st.regs.gbpa & regs::GBPA_ABORT != 0 {
                self.backend.abort(vsid)
            } else {
                self.backend.bypass(vsid)
            }
        } else {
            match self.fetch_ste(st, vsid.0) {
                // Abort and bypass STEs carry no guest configuration: they become the
                // vIOMMU's abort and stage-2-only STEs whatever their other fields say (Linux
                // sets SHCFG = incoming in its bypass STE, a field the nesting sanitiser refuses;
                // QEMU's accelerated SMMUv3 likewise attaches such streams to its own abort or
                // bypass domain). Only a stage-1 STE goes through the sanitiser.
                Fetch::Ste([d0, _])
                    if !bits::is_set(STE0::V, d0) || config(d0) == Config::Abort as u64 =>
                {
                    self.backend.abort(vsid)
                }
                Fetch::Ste([d0, _]) if config(d0) == Config::Bypass as u64 => {
                    self.backend.bypass(vsid)
                }
                Fetch::Ste(ste) => match self.backend.attach(vsid, ste) {
                    Ok(()) => {
                        st.stats.ste_installed += 1;
                        Ok(())
                    }
                    Err(Error::Rejected(_)) => {
                        st.stats.ste_refused += 1;
                        self.push_event(st, EventRecord::bad_ste(StreamId(vsid.0)).encode());
                        self.backend.abort(vsid)
                    }
                    Err(e) => {
                        st.stats.backend_errors += 1;
                        self.backend.abort(vsid).and(Err(e))
                    }
                },
                Fetch::Missing => {
                    st.stats.ste_missing += 1;
                    self.backend.abort(vsid)
                }
                Fetch::Fault(ipa) => {
                    st.stats.ste_fetch_faults += 1;
                    let rec = EventRecord::ste_fetch(StreamId(vsid.0), PhysAddr(ipa.0));
                    self.push_event(st, rec.encode());
                    self.backend.abort(vsid)
                }
            }
        };
        if r.is_err() {
            st.stats.backend_errors += 1;
        }
    }

    /// [`VSmmu::apply_ste`] for every vDEVICE of the guest.
    pub(super) fn apply_all(&self, st: &mut State) {
        self.backend
            .for_each_vsid(&mut |v: VStreamId| self.apply_ste(st, v));
    }
}
