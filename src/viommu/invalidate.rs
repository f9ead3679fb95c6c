//! Guest invalidation commands: the sanitiser for `struct iommu_viommu_arm_smmuv3_invalidate`
//! entries (IOMMU_HWPT_INVALIDATE in `include/uapi/linux/iommufd.h`, Linux's `arm_vsmmu_cache_invalidate`, "Per-command sanitising by the SMMUv3 vIOMMU").
//!
//! Rules, in the order they are applied to one raw command:
//! 1. Only TLBI_NH_ALL/ASID/VA/VAA, TLBI_NSNH_ALL, CFGI_CD, CFGI_CD_ALL and ATC_INV are accepted;
//!    any other opcode (CMD_SYNC included) is EIO.
//! 2. Every bit outside the fields that opcode defines is EIO, so no reserved or Secure bit and
//!    no malformed range can reach the shared command queue and stop it with CERROR_ILL for
//!    every VM (IOMMU_HWPT_INVALIDATE in `include/uapi/linux/iommufd.h`, Linux's `arm_vsmmu_cache_invalidate`, the per-opcode field check of the 2026 rework, which the spec
//!    recommends): ASID only up to IDR0.ASID16's width; range fields (NUM, SCALE, TTL, TG) only
//!    with IDR3.RIL and only in the combinations IHI 0070 §4.4.1.1 allows (SCALE bit 25 only with
//!    IDR5.DS; TTL = 1 with 16 KiB only with DS); ATC_INV only with IDR0.ATS and Size <= 52;
//!    SSV/SSID/Global only with substreams (IDR1.SSIDSIZE > 0).
//! 3. TLBI_NH_*: VMID := the vIOMMU's VMID. TLBI_NSNH_ALL: becomes TLBI_NH_ALL with that VMID
//!    and nothing else. CFGI_CD, CFGI_CD_ALL, ATC_INV: the StreamID is a vSID and is replaced by
//!    the physical StreamID of this vIOMMU's vDEVICE with that vSID; a vSID of no vDEVICE of this
//!    vIOMMU is EIO.

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::command::{ATC_INV_SIZE_ALL, CMD0, CMD1, CmdqEntry, Command, Opcode};
use crate::error::{Error, Rejection};
use crate::features::Features;
use crate::ids::{StreamId, VStreamId, Vmid};
use crate::iommufd::ViommuArmSmmuv3Invalidate;
use crate::regs::bits;

/// Commands per batch: one command-queue batch of Linux (64 slots) minus the CMD_SYNC. A longer
/// array is issued in several batches, each with its own CMD_SYNC (IOMMU_HWPT_INVALIDATE in `include/uapi/linux/iommufd.h`, Linux's `arm_vsmmu_cache_invalidate` "Issue model").
pub const INVALIDATE_BATCH: usize = 63;

/// SCALE's top bit (bit 25) exists only with IDR5.DS; the lower five bits always.
const SCALE_BIT5: u64 = 1 << (CMD0::SCALE.shift + 5);
const SCALE5: u64 = CMD0::SCALE::SET.value & !SCALE_BIT5;

/// What the sanitiser needs to know about the SMMU and the vIOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GuestCmdPolicy {
    /// The vIOMMU's VMID, forced into every TLBI.
    pub vmid: Vmid,
    /// ASID width, 8 or 16 (IDR0.ASID16).
    pub asid_bits: u8,
    /// Range invalidation (IDR3.RIL).
    pub ril: bool,
    /// 52-bit VA / 6-bit SCALE (IDR5.DS).
    pub ds: bool,
    /// ATS (IDR0.ATS).
    pub ats: bool,
    /// SubstreamID width (IDR1.SSIDSIZE).
    pub ssid_bits: u8,
}

impl GuestCmdPolicy {
    /// The policy for a vIOMMU with `vmid` on an SMMU with `features`.
    pub fn new(vmid: Vmid, features: &Features) -> Self {
        Self {
            vmid,
            asid_bits: features.asid_bits(),
            ril: features.ril,
            ds: features.ds,
            ats: features.ats,
            ssid_bits: features.ssid_bits,
        }
    }
}

/// Range fields of TLBI_NH_VA/VAA: the combinations IHI 0070 §4.4.1.1 reserves are EIO.
fn check_range(p: &GuestCmdPolicy, d0: u64, d1: u64) -> Result<(), Error> {
    let range = d0 & (CMD0::NUM::SET.value | CMD0::SCALE::SET.value);
    let ttl = bits::get(CMD1::TTL, d1);
    let tg = bits::get(CMD1::TG, d1);
    let refuse = |dword, bits| Err(Error::Rejected(Rejection::CommandBits { dword, bits }));
    if tg == 0 {
        return match (range, ttl) {
            (0, 0) => Ok(()),
            (0, _) => refuse(1, d1 & CMD1::TTL::SET.value),
            _ => refuse(0, range),
        };
    }
    if tg == 2 && ttl == 1 && !p.ds {
        return refuse(1, d1 & (CMD1::TG::SET.value | CMD1::TTL::SET.value));
    }
    if range == 0 && ttl == 0 {
        return refuse(1, d1 & CMD1::TG::SET.value);
    }
    Ok(())
}

/// The dword-0 and dword-1 bits a guest may set for `opcode`, or EIO for an opcode it may not
/// issue at all.
fn allowed(p: &GuestCmdPolicy, opcode: u8, d0: u64, d1: u64) -> Result<[u64; 2], Error> {
    let asid = bits::put(CMD0::ASID, (1u64 << p.asid_bits.min(16)) - 1);
    let mut a = [CMD0::OPCODE::SET.value, 0u64];
    match Opcode::from_u8(opcode) {
        Some(Opcode::TlbiNsnhAll) => {}
        Some(op @ (Opcode::TlbiNhVa | Opcode::TlbiNhVaa)) => {
            if op == Opcode::TlbiNhVa {
                a[0] |= asid;
            }
            if p.ril {
                check_range(p, d0, d1)?;
                a[0] |= CMD0::NUM::SET.value | SCALE5 | if p.ds { SCALE_BIT5 } else { 0 };
                a[1] |= CMD1::TG::SET.value | CMD1::TTL::SET.value;
            }
            a[0] |= CMD0::VMID::SET.value;
            a[1] |= CMD1::LEAF::SET.value | CMD1::ADDR::SET.value;
        }
        Some(Opcode::TlbiNhAsid) => a[0] |= asid | CMD0::VMID::SET.value,
        Some(Opcode::TlbiNhAll) => a[0] |= CMD0::VMID::SET.value,
        Some(Opcode::AtcInv) => {
            if !p.ats {
                return Err(Error::Rejected(Rejection::Opcode(opcode)));
            }
            if bits::get(CMD1::ATC_SIZE, d1) > u64::from(ATC_INV_SIZE_ALL) {
                return Err(Error::Rejected(Rejection::CommandBits {
                    dword: 1,
                    bits: d1 & CMD1::ATC_SIZE::SET.value,
                }));
            }
            if p.ssid_bits > 0 {
                a[0] |= CMD0::SSV::SET.value | CMD0::SSID::SET.value | CMD0::GLOBAL::SET.value;
            }
            a[0] |= CMD0::SID::SET.value;
            a[1] |= CMD1::ATC_SIZE::SET.value | CMD1::ADDR::SET.value;
        }
        Some(Opcode::CfgiCd) => {
            if p.ssid_bits > 0 {
                a[0] |= CMD0::SSID::SET.value;
            }
            a[0] |= CMD0::SID::SET.value;
            a[1] |= CMD1::LEAF::SET.value;
        }
        Some(Opcode::CfgiCdAll) => a[0] |= CMD0::SID::SET.value,
        _ => return Err(Error::Rejected(Rejection::Opcode(opcode))),
    }
    Ok(a)
}

/// Sanitises one guest command (raw dwords, CPU order) into the command to issue on the host
/// queue, or [`Error::Rejected`] (EIO, with the reason) if the guest may not issue it. `vsid_to_psid` resolves a vSID
/// among this vIOMMU's vDEVICEs. See the module documentation for the rules.
pub fn sanitise_guest_command(
    raw: CmdqEntry,
    policy: &GuestCmdPolicy,
    vsid_to_psid: impl FnOnce(VStreamId) -> Option<StreamId>,
) -> Result<Command, Error> {
    sanitise(raw, policy, |vsid, _| vsid_to_psid(vsid))
}

/// [`sanitise_guest_command`] whose lookup also learns whether the command is an ATC_INV (the
/// router resolves those only for vDEVICEs with ATS enabled).
pub(crate) fn sanitise(
    raw: CmdqEntry,
    policy: &GuestCmdPolicy,
    vsid_to_psid: impl FnOnce(VStreamId, bool) -> Option<StreamId>,
) -> Result<Command, Error> {
    let [d0, d1] = raw.0;
    let opcode = raw.opcode();
    let [a0, a1] = allowed(policy, opcode, d0, d1)?;
    for (dword, bits) in [(0, d0 & !a0), (1, d1 & !a1)] {
        if bits != 0 {
            return Err(Error::Rejected(Rejection::CommandBits { dword, bits }));
        }
    }
    let mut e = raw;
    match Opcode::from_u8(opcode) {
        Some(Opcode::TlbiNsnhAll) => return Ok(Command::TlbiNhAll { vmid: policy.vmid }),
        Some(Opcode::TlbiNhAll | Opcode::TlbiNhAsid | Opcode::TlbiNhVa | Opcode::TlbiNhVaa) => {
            e.set_vmid(policy.vmid);
        }
        Some(op @ (Opcode::AtcInv | Opcode::CfgiCd | Opcode::CfgiCdAll)) => {
            let vsid = VStreamId(e.sid().0);
            let psid = vsid_to_psid(vsid, op == Opcode::AtcInv)
                .ok_or(Error::Rejected(Rejection::UnboundVsid(vsid)))?;
            e.set_sid(psid);
        }
        _ => return Err(Error::Rejected(Rejection::Opcode(opcode))),
    }
    Ok(Command::decode(e)?)
}

/// Linux's `copy_struct_from_user` (Linux's `copy_struct_from_user`; IOMMU_HWPT_INVALIDATE in `include/uapi/linux/iommufd.h`, Linux's `arm_vsmmu_cache_invalidate` "extensible struct" rule): copies the
/// caller's `src` (its `size` bytes) into the kernel-sized `dst`. A shorter `src` leaves the
/// rest of `dst` zero; a longer one must have only zero bytes past `dst.len()`, otherwise
/// [`Error::TooBig`] (`E2BIG`, "non-zero bytes in a part the kernel does not understand").
pub fn copy_struct_from_user(dst: &mut [u8], src: &[u8]) -> Result<(), Error> {
    let n = dst.len().min(src.len());
    let (known, rest) = src.split_at(n);
    if rest.iter().any(|&b| b != 0) {
        return Err(Error::TooBig);
    }
    let (head, tail) = dst.split_at_mut(n);
    head.copy_from_slice(known);
    tail.fill(0);
    Ok(())
}

/// Reads a `size`-prefixed uAPI struct of `N` bytes from the caller's `bytes` (Linux's `copy_struct_from_user`:
/// "The first `__u32` of every ioctl struct is `size`"): `size` below `min_size` → EINVAL;
/// `bytes` shorter than `size` → EINVAL (Linux: EFAULT, which [`Error`] does not carry); a
/// `size` above `N` needs zero bytes past `N` (E2BIG); a `size` below `N` reads the missing
/// tail as zero. Returns the struct's bytes and the caller's `size`. The EINVAL is
/// [`Error::Invalid`] naming `size_field` (the struct's `size`, e.g.
/// `"iommu_hwpt_invalidate.size"`) and the size found (0 if `bytes` cannot hold one).
pub fn read_sized<const N: usize>(
    bytes: &[u8],
    min_size: u32,
    size_field: &'static str,
) -> Result<([u8; N], u32), Error> {
    let size = bytes
        .get(..4)
        .and_then(|b| b.try_into().ok())
        .map(u32::from_ne_bytes);
    let invalid = |size: u32| Error::Invalid {
        field: size_field,
        value: u64::from(size),
    };
    let size = size.ok_or(invalid(0))?;
    if size < min_size {
        return Err(invalid(size));
    }
    let user = bytes.get(..size as usize).ok_or(invalid(size))?;
    let mut out = [0u8; N];
    copy_struct_from_user(&mut out, user)?;
    Ok((out, size))
}

/// The guest commands of an `IOMMU_HWPT_INVALIDATE` array given as bytes: `entry_num` entries
/// of `entry_len` bytes each (IOMMU_HWPT_INVALIDATE in `include/uapi/linux/iommufd.h`, Linux's `arm_vsmmu_cache_invalidate`). Checks the whole array before anything is issued,
/// as Linux copies it whole first:
/// - `entry_num == 0`: an empty array (the uAPI's "probe" use; the spec's recommended 0);
/// - `entry_len == 0` with entries → EINVAL ([`Error::Invalid`] naming `entry_len`);
/// - `entry_len * entry_num` bytes more than `data` holds → EINVAL (Linux: EFAULT;
///   [`Error::Invalid`] naming `entry_num`);
/// - each entry by [`copy_struct_from_user`] into the 16-byte
///   `iommu_viommu_arm_smmuv3_invalidate`: `entry_len == 16` as is, shorter zero-filled, longer
///   only with a zero tail (E2BIG otherwise).
///
/// Returns the entries' 16-byte images (read with [`entry_command`]).
pub fn check_entries(data: &[u8], entry_len: u32, entry_num: u32) -> Result<EntryArray<'_>, Error> {
    if entry_num == 0 {
        return Ok(EntryArray { data: &[], len: 1 });
    }
    if entry_len == 0 {
        return Err(Error::Invalid {
            field: "iommu_hwpt_invalidate.entry_len",
            value: 0,
        });
    }
    // At most (2^32 - 1)^2: no overflow in u64; above usize::MAX no slice holds it.
    let total = u64::from(entry_len) * u64::from(entry_num);
    let data = usize::try_from(total)
        .ok()
        .and_then(|total| data.get(..total))
        .ok_or(Error::Invalid {
            field: "iommu_hwpt_invalidate.entry_num",
            value: u64::from(entry_num),
        })?;
    let len = entry_len as usize;
    let mut img = [0u8; ViommuArmSmmuv3Invalidate::SIZE];
    for e in data.chunks_exact(len) {
        copy_struct_from_user(&mut img, e)?;
    }
    Ok(EntryArray { data, len })
}

/// A checked array of guest invalidation entries (see [`check_entries`]).
#[derive(Clone, Copy, Debug)]
pub struct EntryArray<'a> {
    data: &'a [u8],
    len: usize,
}

impl EntryArray<'_> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.data.len() / self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Entry `i` as a raw command (CPU order), its unknown tail dropped or its missing tail
    /// zero; a zero command past the end.
    pub fn get(&self, i: usize) -> CmdqEntry {
        let mut img = [0u8; ViommuArmSmmuv3Invalidate::SIZE];
        if let Some(e) = i
            .checked_mul(self.len)
            .and_then(|at| self.data.get(at..at.checked_add(self.len)?))
        {
            // Checked in `check_entries`.
            let _ = copy_struct_from_user(&mut img, e);
        }
        entry_command(&img)
    }
}

/// The raw command of one 16-byte `iommu_viommu_arm_smmuv3_invalidate` image (`cmd[2]` is
/// `__aligned_le64`).
pub fn entry_command(img: &[u8; ViommuArmSmmuv3Invalidate::SIZE]) -> CmdqEntry {
    CmdqEntry(ViommuArmSmmuv3Invalidate::from_bytes(img).cmd)
}

/// What an invalidation request did: `entry_num` is always meaningful (IOMMU_HWPT_INVALIDATE in `include/uapi/linux/iommufd.h`, Linux's `arm_vsmmu_cache_invalidate`: "The
/// kernel always writes entry_num back, even on error").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct InvalidateOutcome {
    /// Entries fully executed (issued and synced). On error, the failing entry or batch starts
    /// here.
    pub entry_num: u32,
    /// `Ok`, or the error of the first entry or batch that failed.
    pub result: Result<(), Error>,
}

/// Sanitises and issues `entries` in batches of [`INVALIDATE_BATCH`]: a batch is converted
/// whole first, and one bad command means nothing of its batch is issued (all-or-nothing per
/// batch, the spec's recommended semantics); each batch goes out through `submit` with one
/// CMD_SYNC. An empty array does nothing and succeeds (IOMMU_HWPT_INVALIDATE in `include/uapi/linux/iommufd.h`, Linux's `arm_vsmmu_cache_invalidate`: probing with
/// `entry_num == 0`).
pub(crate) fn invalidate_batches(
    entries: &[CmdqEntry],
    policy: &GuestCmdPolicy,
    mut vsid_to_psid: impl FnMut(VStreamId, bool) -> Option<StreamId>,
    submit: impl Fn(&[Command]) -> Result<(), Error>,
) -> InvalidateOutcome {
    let mut done = 0u32;
    let mut buf = [Command::TlbiNsnhAll; INVALIDATE_BATCH];
    for chunk in entries.chunks(INVALIDATE_BATCH) {
        let mut n = 0usize;
        for (raw, slot) in chunk.iter().zip(buf.iter_mut()) {
            match sanitise(*raw, policy, &mut vsid_to_psid) {
                Ok(cmd) => *slot = cmd,
                Err(e) => {
                    return InvalidateOutcome {
                        entry_num: done,
                        result: Err(e),
                    };
                }
            }
            n += 1;
        }
        if let Err(e) = submit(buf.get(..n).unwrap_or(&[])) {
            return InvalidateOutcome {
                entry_num: done,
                result: Err(e),
            };
        }
        done = done.saturating_add(n as u32);
    }
    InvalidateOutcome {
        entry_num: done,
        result: Ok(()),
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::command::{PriResponse, ResumeAction, SyncCs, TlbiRange};
    use crate::ids::{Asid, PhysAddr, SubstreamId};
    use proptest::prelude::*;

    const POLICY: GuestCmdPolicy = GuestCmdPolicy {
        vmid: Vmid(7),
        asid_bits: 16,
        ril: true,
        ds: false,
        ats: true,
        ssid_bits: 20,
    };

    fn lookup(v: VStreamId) -> Option<StreamId> {
        (v.0 == 0x10).then_some(StreamId(0x800))
    }

    fn san(c: Command) -> Result<Command, Error> {
        sanitise_guest_command(c.encode(), &POLICY, lookup)
    }

    /// The refusal of the bits `bits` (in place) of command dword `dword`.
    fn bits(dword: u8, bits: u64) -> Result<Command, Error> {
        Err(Error::Rejected(Rejection::CommandBits { dword, bits }))
    }

    fn opcode(op: u8) -> Result<Command, Error> {
        Err(Error::Rejected(Rejection::Opcode(op)))
    }

    #[test]
    fn vmid_is_forced() {
        let r = san(Command::TlbiNhAsid {
            vmid: Vmid(99),
            asid: Asid(5),
        });
        assert_eq!(
            r,
            Ok(Command::TlbiNhAsid {
                vmid: Vmid(7),
                asid: Asid(5)
            })
        );
        let va = Command::TlbiNhVa {
            vmid: Vmid(3),
            asid: Asid(1),
            addr: 0x1234_5000,
            leaf: true,
            range: TlbiRange {
                num: 3,
                scale: 1,
                ttl: 3,
                tg: 1,
            },
        };
        let Ok(Command::TlbiNhVa {
            vmid, addr, range, ..
        }) = san(va)
        else {
            panic!()
        };
        assert_eq!(
            (vmid, addr, range.num, range.scale),
            (Vmid(7), 0x1234_5000, 3, 1)
        );
        assert_eq!(
            san(Command::TlbiNhAll { vmid: Vmid(0) }),
            Ok(Command::TlbiNhAll { vmid: Vmid(7) })
        );
    }

    #[test]
    fn nsnh_all_becomes_nh_all() {
        assert_eq!(
            san(Command::TlbiNsnhAll),
            Ok(Command::TlbiNhAll { vmid: Vmid(7) })
        );
        // Any other bit in an NSNH_ALL is refused rather than silently cleared.
        let mut e = Command::TlbiNsnhAll.encode();
        e.0[1] = 1;
        assert_eq!(sanitise_guest_command(e, &POLICY, lookup), bits(1, 1));
    }

    #[test]
    fn vsid_becomes_psid_and_unknown_vsid_is_eio() {
        let ssid = Some(SubstreamId(3));
        assert_eq!(
            san(Command::CfgiCd {
                sid: StreamId(0x10),
                ssid: SubstreamId(3),
                leaf: true
            }),
            Ok(Command::CfgiCd {
                sid: StreamId(0x800),
                ssid: SubstreamId(3),
                leaf: true
            })
        );
        assert_eq!(
            san(Command::CfgiCdAll {
                sid: StreamId(0x10)
            }),
            Ok(Command::CfgiCdAll {
                sid: StreamId(0x800)
            })
        );
        let atc = Command::AtcInv {
            sid: StreamId(0x10),
            ssid,
            global: false,
            addr: 0x4000,
            size: 2,
        };
        assert_eq!(
            san(atc),
            Ok(Command::AtcInv {
                sid: StreamId(0x800),
                ssid,
                global: false,
                addr: 0x4000,
                size: 2
            })
        );
        // Another VM's StreamID (or any vSID without a vDEVICE here) is EIO, even if it is a
        // valid physical StreamID.
        for sid in [0x800u32, 0x11, 0] {
            assert_eq!(
                san(Command::CfgiCdAll { sid: StreamId(sid) }),
                Err(Error::Rejected(Rejection::UnboundVsid(VStreamId(sid))))
            );
        }
    }

    #[test]
    fn every_disallowed_opcode_is_eio() {
        let ok = [0x05u8, 0x06, 0x10, 0x11, 0x12, 0x13, 0x30, 0x40];
        for op in 0..=255u8 {
            if ok.contains(&op) {
                continue;
            }
            let e = CmdqEntry([u64::from(op) | (0x10 << 32), 0]);
            assert_eq!(
                sanitise_guest_command(e, &POLICY, lookup),
                opcode(op),
                "op {op:#x}"
            );
        }
        for c in [
            Command::sync(),
            Command::Sync {
                cs: SyncCs::Irq,
                msh: 3,
                msi_attr: 0xf,
                msi_data: 0,
                msi_addr: PhysAddr(0x1000),
            },
            Command::CfgiSte {
                sid: StreamId(0x10),
                leaf: true,
            },
            Command::CfgiAll,
            Command::TlbiS12Vmall { vmid: Vmid(7) },
            Command::TlbiEl2All,
            Command::PriResp {
                sid: StreamId(0x10),
                ssid: None,
                prg_index: 1,
                resp: PriResponse::Success,
            },
            Command::Resume {
                sid: StreamId(0x10),
                stag: 1,
                action: ResumeAction::Retry,
            },
        ] {
            assert_eq!(san(c), opcode(c.encode().opcode()), "{c:?}");
        }
    }

    #[test]
    fn reserved_bits_and_bad_ranges_are_eio() {
        // SSec on a CFGI_CD.
        let mut e = Command::CfgiCdAll {
            sid: StreamId(0x10),
        }
        .encode();
        e.0[0] |= 1 << 10;
        assert_eq!(sanitise_guest_command(e, &POLICY, lookup), bits(0, 1 << 10));
        // TG != 0 with NUM = SCALE = TTL = 0 is reserved.
        let e = CmdqEntry([0x12 | (7 << 32), 1 << 10]);
        assert_eq!(sanitise_guest_command(e, &POLICY, lookup), bits(1, 1 << 10));
        // NUM without TG.
        let e = CmdqEntry([0x12 | (1 << 12), 0]);
        assert_eq!(sanitise_guest_command(e, &POLICY, lookup), bits(0, 1 << 12));
        // TTL without TG.
        let e = CmdqEntry([0x12, 2 << 8]);
        assert_eq!(sanitise_guest_command(e, &POLICY, lookup), bits(1, 2 << 8));
        // TTL = 1 with 16 KiB granules needs IDR5.DS.
        let e = CmdqEntry([0x12 | (1 << 12), (2 << 10) | (1 << 8)]);
        let ds = GuestCmdPolicy { ds: true, ..POLICY };
        assert!(sanitise_guest_command(e, &ds, lookup).is_ok());
        assert_eq!(
            sanitise_guest_command(e, &POLICY, lookup),
            bits(1, (2 << 10) | (1 << 8))
        );
        // Range fields without RIL.
        let no_ril = GuestCmdPolicy {
            ril: false,
            ..POLICY
        };
        let e = CmdqEntry([0x12 | (1 << 12), (1 << 10) | (3 << 8)]);
        assert!(sanitise_guest_command(e, &POLICY, lookup).is_ok());
        assert_eq!(sanitise_guest_command(e, &no_ril, lookup), bits(0, 1 << 12));
        // ASID bits above an 8-bit ASID SMMU.
        let asid8 = GuestCmdPolicy {
            asid_bits: 8,
            ..POLICY
        };
        let e = CmdqEntry([0x11 | (0x100 << 48), 0]);
        assert_eq!(
            sanitise_guest_command(e, &asid8, lookup),
            bits(0, 0x100 << 48)
        );
        // ATC_INV without ATS, or with Size > 52.
        let atc = Command::AtcInv {
            sid: StreamId(0x10),
            ssid: None,
            global: false,
            addr: 0,
            size: 52,
        }
        .encode();
        assert!(sanitise_guest_command(atc, &POLICY, lookup).is_ok());
        let no_ats = GuestCmdPolicy {
            ats: false,
            ..POLICY
        };
        assert_eq!(sanitise_guest_command(atc, &no_ats, lookup), opcode(0x40));
        let mut big = atc;
        big.0[1] = (big.0[1] & !0x3f) | 53;
        assert_eq!(sanitise_guest_command(big, &POLICY, lookup), bits(1, 53));
        // SSV without substreams.
        let no_ss = GuestCmdPolicy {
            ssid_bits: 0,
            ..POLICY
        };
        let mut e = atc;
        e.0[0] |= 1 << 11;
        assert_eq!(sanitise_guest_command(e, &no_ss, lookup), bits(0, 1 << 11));
    }

    #[test]
    fn batches_entry_num_and_all_or_nothing() {
        use std::cell::RefCell;
        let log: RefCell<Vec<usize>> = RefCell::new(Vec::new());
        let good = Command::TlbiNhAll { vmid: Vmid(1) }.encode();
        let bad = Command::CfgiAll.encode();
        let submit = |c: &[Command]| {
            log.borrow_mut().push(c.len());
            Ok(())
        };
        let entries = vec![good; 130];
        let r = invalidate_batches(&entries, &POLICY, |v, _| lookup(v), submit);
        assert_eq!(
            r,
            InvalidateOutcome {
                entry_num: 130,
                result: Ok(())
            }
        );
        assert_eq!(*log.borrow(), vec![63, 63, 4]);

        log.borrow_mut().clear();
        let mut entries = vec![good; 100];
        entries[70] = bad;
        let r = invalidate_batches(&entries, &POLICY, |v, _| lookup(v), submit);
        assert_eq!(
            r,
            InvalidateOutcome {
                entry_num: 63,
                result: opcode(bad.opcode()).map(|_| ())
            }
        );
        assert_eq!(
            *log.borrow(),
            vec![63],
            "the batch holding the bad entry is not issued"
        );

        let r = invalidate_batches(&[], &POLICY, |v, _| lookup(v), submit);
        assert_eq!(
            r,
            InvalidateOutcome {
                entry_num: 0,
                result: Ok(())
            }
        );

        let fail = |_: &[Command]| Err(Error::Timeout(crate::error::WaitFor::CmdSync));
        let r = invalidate_batches(&[good; 3], &POLICY, |v, _| lookup(v), fail);
        assert_eq!(r.entry_num, 0);
        assert_eq!(r.result.unwrap_err().errno(), -110);
    }

    proptest! {
        /// Whatever stays within the bits the policy allows for an opcode decodes: the
        /// sanitiser refuses by its own rules (opcode, bits, ranges, vSID), never because
        /// `Command::decode` found something it let through.
        #[test]
        fn what_the_masks_allow_decodes(d0 in any::<u64>(), d1 in any::<u64>(), op in prop::sample::select(vec![0x05u8, 0x06, 0x10, 0x11, 0x12, 0x13, 0x30, 0x40]), ril: bool, ds: bool, ssid: bool) {
            let p = GuestCmdPolicy { ril, ds, ssid_bits: if ssid { 20 } else { 0 }, ..POLICY };
            let d0 = (d0 & !0xff) | u64::from(op);
            if let Ok([a0, a1]) = allowed(&p, op, d0, d1) {
                let mut d0 = d0 & a0;
                if matches!(op, 0x05 | 0x06 | 0x40) {
                    d0 = (d0 & 0xffff_ffff) | (0x10 << 32); // vSID 0x10 is bound
                }
                let r = sanitise_guest_command(CmdqEntry([d0, d1 & a1]), &p, lookup);
                prop_assert!(
                    !matches!(r, Err(Error::Rejected(Rejection::Undecodable(_)))),
                    "{:#x?}: {:?}", [d0, d1 & a1], r
                );
            }
        }

        /// No escape: whatever the guest sends, an accepted command carries the vIOMMU's VMID
        /// (TLBI) or a StreamID of one of its vDEVICEs, and nothing but the allowed opcodes.
        #[test]
        fn no_escape(d0 in any::<u64>(), d1 in any::<u64>(), op in prop::sample::select(vec![0x05u8, 0x06, 0x10, 0x11, 0x12, 0x13, 0x30, 0x40, 0x46, 0x03]), vs in 0x0fu32..0x12) {
            let d0 = (d0 & 0xffff_ff00) | u64::from(op) | (u64::from(vs) << 32);
            for p in [POLICY, GuestCmdPolicy { ril: false, ssid_bits: 0, asid_bits: 8, ..POLICY }] {
                let r = sanitise_guest_command(CmdqEntry([d0, d1]), &p, lookup);
                // A refusal names a rule of the sanitiser: what passes the masks decodes.
                prop_assert!(
                    !matches!(r, Err(Error::Rejected(Rejection::Undecodable(_)))),
                    "{:?}",
                    r
                );
                if let Ok(c) = r {
                    let e = c.encode();
                    match Opcode::from_u8(e.opcode()) {
                        Some(Opcode::TlbiNhAll | Opcode::TlbiNhAsid | Opcode::TlbiNhVa | Opcode::TlbiNhVaa) => prop_assert_eq!(e.vmid(), Vmid(7)),
                        Some(Opcode::CfgiCd | Opcode::CfgiCdAll | Opcode::AtcInv) => prop_assert_eq!(e.sid(), StreamId(0x800)),
                        other => prop_assert!(false, "escaped opcode {:?}", other),
                    }
                }
            }
        }
    }
}
