//! Guest-owned VINTFs: the iommufd `TEGRA241_CMDQV` vIOMMU, as Linux's `tegra241-cmdqv.c` serves
//! it (`tegra241_cmdqv_init_vintf_user`, `tegra241_vintf_init_vsid`,
//! `tegra241_vintf_alloc_lvcmdq_user` and their destroy counterparts).
//!
//! A VM gets one VINTF (index ≥ 1) with its VMID and HYP_OWN clear, so its queues only take the
//! guest command subset with the VMID forced and StreamIDs substituted through the
//! SID_MATCH/SID_REPLACE pairs its vDEVICEs program. The VMM maps the VINTF's page 0 into the
//! guest; queue bases (page 1) are trapped and become HW queue allocations here, with Linux's
//! checks and errno values.

use core::sync::atomic::Ordering;

use super::regs::{self, MAX_SID_SLOTS, MAX_VCMDQS, SID_MATCH, VCMDQ_BASE};
use super::{Cmdqv, VintfId, base_value};
use crate::error::{Error, Object, Quantity};
use crate::ids::{PhysAddr, StreamId, VStreamId, Vmid};
use crate::iommufd::{HwInfoTegra241Cmdqv, ViommuTegra241Cmdqv};
use crate::platform::{DmaMemory, Platform};
use crate::queue::{CMDQ_ENTRY_BYTES, MAX_LOG2};
use crate::smmu::CommandSink;

/// Bookkeeping of one guest VINTF.
pub(super) struct GuestState {
    pub(super) vmid: Vmid,
    /// Allocated HW queues, bit *l* = logical queue *l*.
    pub(super) queues: u128,
    /// vDEVICE bindings per SID pair.
    pub(super) sids: [Option<(VStreamId, StreamId)>; MAX_SID_SLOTS],
}

impl GuestState {
    pub(super) const EMPTY: Self = Self {
        vmid: Vmid(0),
        queues: 0,
        sids: [None; MAX_SID_SLOTS],
    };
}

/// The page a guest may map: VINTF *i*'s logical page 0 (its queues' PROD/CONS/CONFIG/STATUS/
/// GERROR/GERRORN), as `IOMMU_VIOMMU_ALLOC` reports it in `iommu_viommu_tegra241_cmdqv`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct VintfPage {
    /// Physical address: `CMDQV base + 0x30000 + 0x20000 × i`.
    pub phys: PhysAddr,
    /// `out_vintf_mmap_offset`: the page's offset in the CMDQV window (never 0, page aligned,
    /// unique per VINTF). Linux hands out an opaque cookie from its mmap offset allocator; a
    /// hypervisor emulating `mmap` on this value maps `phys`.
    pub mmap_offset: u64,
    /// `out_vintf_mmap_length`: 64 KiB.
    pub mmap_length: u64,
}

impl VintfPage {
    /// The `iommu_viommu_tegra241_cmdqv` driver data `IOMMU_VIOMMU_ALLOC` writes back.
    pub const fn to_uapi(&self) -> ViommuTegra241Cmdqv {
        ViommuTegra241Cmdqv {
            out_vintf_mmap_offset: self.mmap_offset,
            out_vintf_mmap_length: self.mmap_length,
        }
    }
}

/// A VINTF allocated to a vIOMMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct GuestVintf {
    /// Its index (≥ 1).
    pub id: VintfId,
    /// The page the guest may map.
    pub page0: VintfPage,
}

/// A SID_MATCH/SID_REPLACE pair holding a vDEVICE binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SidSlot(pub u8);

impl<P: Platform, D: DmaMemory> Cmdqv<P, D> {
    /// The `IOMMU_HW_INFO_TYPE_TEGRA241_CMDQV` reply of `IOMMU_GET_HW_INFO`
    /// (`struct iommu_hw_info_tegra241_cmdqv` in include/uapi/linux/iommufd.h; Linux
    /// `tegra241_cmdqv_hw_info`): version, log2 of the logical queues per VINTF and of the SID pairs per VINTF. A VMM
    /// copies them into its emulated PARAM with NUM_VINTF_LOG2 = 0 (one VINTF per VM).
    pub fn hw_info(&self) -> HwInfoTegra241Cmdqv {
        HwInfoTegra241Cmdqv {
            flags: 0,
            version: self.param.version,
            log2vcmdqs: self.per_vintf.trailing_zeros() as u8,
            log2vsids: self.sid_slots.trailing_zeros() as u8,
            reserved: 0,
        }
    }

    /// Allocates a free VINTF (index ≥ 1) for a VM whose stage-2 VMID is `vmid` and enables it
    /// with HYP_OWN clear and no queues (Linux `tegra241_cmdqv_init_vintf_user`).
    ///
    /// # Errors
    /// [`Error::Disabled`] before [`reset`](Self::reset); [`Error::NoSpace`] when every VINTF is
    /// taken; [`Error::Timeout`] when the VINTF does not enable.
    pub fn vintf_alloc(&self, vmid: Vmid) -> Result<GuestVintf, Error> {
        if !self.is_ready() {
            return Err(Error::Disabled);
        }
        let v = (1..self.num_vintfs)
            .find(|&v| {
                self.guests.get(v).is_some_and(|g| {
                    g.in_use
                        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                        .is_ok()
                })
            })
            .ok_or(Error::NoSpace)?;
        let Some(g) = self.guests.get(v) else {
            return Err(Error::NoSpace);
        };
        let mut st = g.state.lock();
        *st = GuestState::EMPTY;
        st.vmid = vmid;
        if let Err(e) = self.vintf_init(v, false, vmid) {
            drop(st);
            g.in_use.store(false, Ordering::Release);
            return Err(e);
        }
        let id = VintfId(v as u8);
        Ok(GuestVintf {
            id,
            page0: self.vintf_page_of(v),
        })
    }

    /// The page the guest of VINTF `id` may map, while it is allocated.
    pub fn vintf_page(&self, id: VintfId) -> Option<VintfPage> {
        self.guest(id)
            .ok()
            .map(|_| self.vintf_page_of(usize::from(id.0)))
    }

    fn vintf_page_of(&self, v: usize) -> VintfPage {
        let offset = regs::vintf_page0(v) as u64;
        VintfPage {
            phys: self.cfg.phys_base.add(offset),
            mmap_offset: offset,
            mmap_length: regs::PAGE_SIZE as u64,
        }
    }

    /// Releases VINTF `id` (vIOMMU destroy): disables it and clears its SID pairs.
    ///
    /// # Errors
    /// [`Error::NoSuch`] ([`Object::Vintf`]) for a VINTF not allocated; [`Error::InUse`]
    /// ([`Object::Vintf`]) while it has HW queues or vDEVICEs (they hold references on the vIOMMU); [`Error::Timeout`] when it does not
    /// disable (it stays allocated).
    pub fn vintf_free(&self, id: VintfId) -> Result<(), Error> {
        let g = self.guest(id)?;
        let st = g.state.lock();
        if st.queues != 0 || st.sids.iter().any(Option::is_some) {
            return Err(Error::InUse(Object::Vintf(id.0)));
        }
        let r = self.vintf_regs(usize::from(id.0))?;
        self.vintf_disable(r)?;
        for s in 0..self.sid_slots {
            if let (Some(m), Some(p)) = (r.SID_MATCH.get(s), r.SID_REPLACE.get(s)) {
                self.write(m, 0);
                self.write(p, 0);
            }
        }
        drop(st);
        g.in_use.store(false, Ordering::Release);
        Ok(())
    }

    /// Binds a vDEVICE: virtual StreamID `vsid` of the guest on VINTF `id` is the device with
    /// physical StreamID `psid`. Takes a free SID pair and writes SID_REPLACE = `psid`, then
    /// SID_MATCH = `vsid << 1 | ENABLE` (Linux `tegra241_vintf_init_vsid`).
    ///
    /// # Errors
    /// [`Error::NoSuch`] ([`Object::Vintf`]) for a VINTF not allocated; [`Error::OutOfRange`]
    /// ([`Quantity::VStreamId`], `EINVAL`) for a `vsid` wider than SID_MATCH.VIRT_SID (20 bits);
    /// [`Error::AlreadyExists`] ([`Object::VDevice`]) when `vsid` is already bound
    /// on this VINTF; [`Error::NoSpace`] when every pair is taken.
    pub fn vdevice_bind(
        &self,
        id: VintfId,
        vsid: VStreamId,
        psid: StreamId,
    ) -> Result<SidSlot, Error> {
        let g = self.guest(id)?;
        let max_vsid = SID_MATCH::VIRT_SID.mask;
        if vsid.0 > max_vsid {
            return Err(Error::OutOfRange {
                what: Quantity::VStreamId,
                value: u64::from(vsid.0),
                max: u64::from(max_vsid),
            });
        }
        let mut st = g.state.lock();
        if st.sids.iter().flatten().any(|(v, _)| *v == vsid) {
            return Err(Error::AlreadyExists(Object::VDevice(vsid)));
        }
        let s = (0..self.sid_slots)
            .find(|&s| st.sids.get(s).is_some_and(Option::is_none))
            .ok_or(Error::NoSpace)?;
        let r = self.vintf_regs(usize::from(id.0))?;
        let (Some(m), Some(p), Some(slot)) =
            (r.SID_MATCH.get(s), r.SID_REPLACE.get(s), st.sids.get_mut(s))
        else {
            return Err(Error::NoSpace);
        };
        self.write(p, psid.0);
        self.write(
            m,
            (SID_MATCH::VIRT_SID.val(vsid.0) + SID_MATCH::ENABLE::SET).value,
        );
        *slot = Some((vsid, psid));
        Ok(SidSlot(s as u8))
    }

    /// Unbinds the vDEVICE with virtual StreamID `vsid` from VINTF `id`: SID_MATCH and
    /// SID_REPLACE of its pair back to 0.
    ///
    /// # Errors
    /// [`Error::NoSuch`]: [`Object::Vintf`] when the VINTF is not allocated,
    /// [`Object::VDevice`] when `vsid` is not bound.
    pub fn vdevice_unbind(&self, id: VintfId, vsid: VStreamId) -> Result<(), Error> {
        let g = self.guest(id)?;
        let mut st = g.state.lock();
        let s = st
            .sids
            .iter()
            .position(|b| b.is_some_and(|(v, _)| v == vsid))
            .ok_or(Error::NoSuch(Object::VDevice(vsid)))?;
        let r = self.vintf_regs(usize::from(id.0))?;
        if let (Some(m), Some(p)) = (r.SID_MATCH.get(s), r.SID_REPLACE.get(s)) {
            self.write(m, 0);
            self.write(p, 0);
        }
        if let Some(slot) = st.sids.get_mut(s) {
            *slot = None;
        }
        Ok(())
    }

    /// Allocates HW queue `index` of VINTF `id` on the `length` bytes at host physical address
    /// `base` (`IOMMU_HW_QUEUE_ALLOC`; Linux `tegra241_vintf_alloc_lvcmdq_user`): maps the global queue into the
    /// VINTF (CMDQ_ALLOC), tears it down (with a CMD_SYNC on the SMMU's queue through `main`)
    /// and writes BASE. The queue stays disabled: the guest enables it in its page 0.
    ///
    /// # Errors
    /// As Linux: [`Error::NoSuch`] (`ENOENT`, [`Object::Vintf`]) for a VINTF not allocated;
    /// [`Error::OutOfRange`] (`EINVAL`) for `index` ≥ queues per VINTF ([`Quantity::Index`]) or
    /// a `length` that is not a power of two in `32..=2^(IDR1.CMDQS + 4)` ([`Quantity::Length`]);
    /// [`Error::Misaligned`] (`EINVAL`, [`Quantity::Address`]) for a `base` not aligned to
    /// `length`, [`Error::OutOfRange`] ([`Quantity::Address`]) for one beyond bit 47;
    /// [`Error::RangeWraps`] (`EOVERFLOW`) when `base + length` wraps;
    /// [`Error::AlreadyExists`] (`EEXIST`) when `index` is allocated; [`Error::OutOfOrder`]
    /// (`EIO`) naming queue `index − 1` when it is not (ascending order); timeouts and `main`'s
    /// errors.
    pub fn hw_queue_alloc<M: CommandSink + ?Sized>(
        &self,
        id: VintfId,
        index: u32,
        base: PhysAddr,
        length: u64,
        main: &M,
    ) -> Result<(), Error> {
        let g = self.guest(id)?;
        self.check_hw_queue_span(base, length)?;
        let mut st = g.state.lock();
        let l = index as usize;
        if l >= self.per_vintf {
            return Err(Error::OutOfRange {
                what: Quantity::Index,
                value: u64::from(index),
                max: self.per_vintf.saturating_sub(1) as u64,
            });
        }
        let vcmdq = |index| Object::Vcmdq { vintf: id.0, index };
        if st.queues & (1u128 << l) != 0 {
            return Err(Error::AlreadyExists(vcmdq(index)));
        }
        if l > 0 && st.queues & (1u128 << (l - 1)) == 0 {
            return Err(Error::OutOfOrder(vcmdq(index - 1)));
        }
        if !length.is_power_of_two() || length < 32 || length > self.hw_queue_max_length() {
            return Err(self.bad_hw_queue_length(length));
        }
        if base.0 & (length - 1) != 0 {
            return Err(Error::Misaligned {
                what: Quantity::Address,
                value: base.0,
                align: length,
            });
        }
        if base.0 & !VCMDQ_BASE::ADDR::SET.value != 0 {
            return Err(Error::OutOfRange {
                what: Quantity::Address,
                value: base.0,
                max: VCMDQ_BASE::ADDR::SET.value,
            });
        }
        let v = usize::from(id.0);
        let log2 = (length.trailing_zeros() - 4) as u8;
        self.map(v, l, true);
        if let Err(e) = self.vcmdq_deinit(v, l, main) {
            self.map(v, l, false);
            return Err(e);
        }
        let (_, b) = self.lvcmdq(v, l)?;
        self.write(&b.BASE, base_value(base, log2));
        st.queues |= 1u128 << l;
        Ok(())
    }

    /// Destroys HW queue `index` of VINTF `id`: disables it, issues a CMD_SYNC on the SMMU's
    /// queue, clears its registers and unmaps it.
    ///
    /// # Errors
    /// [`Error::NoSuch`] when the VINTF or the queue is not allocated ([`Object::Vintf`],
    /// [`Object::Vcmdq`]); [`Error::InUse`] (`EBUSY`, [`Object::Vcmdq`] `index`) while queue
    /// `index + 1` exists (descending order); timeouts and `main`'s
    /// errors (the queue stays allocated).
    pub fn hw_queue_free<M: CommandSink + ?Sized>(
        &self,
        id: VintfId,
        index: u32,
        main: &M,
    ) -> Result<(), Error> {
        let g = self.guest(id)?;
        let mut st = g.state.lock();
        let l = index as usize;
        let vcmdq = Object::Vcmdq { vintf: id.0, index };
        if l >= self.per_vintf || st.queues & (1u128 << l) == 0 {
            return Err(Error::NoSuch(vcmdq));
        }
        if l + 1 < MAX_VCMDQS && st.queues & (1u128 << (l + 1)) != 0 {
            return Err(Error::InUse(vcmdq));
        }
        let v = usize::from(id.0);
        self.vcmdq_deinit(v, l, main)?;
        self.map(v, l, false);
        st.queues &= !(1u128 << l);
        Ok(())
    }

    /// HW queues allocated on VINTF `id` (bit *l* = logical queue *l*).
    pub fn hw_queues(&self, id: VintfId) -> Result<u128, Error> {
        Ok(self.guest(id)?.state.lock().queues)
    }

    /// The checks of `IOMMU_HW_QUEUE_ALLOC` that come before any object is looked up (Linux's
    /// iommufd core): a zero `length` is `EINVAL` ([`Error::OutOfRange`], [`Quantity::Length`],
    /// as every bad length), a `base + length` that wraps is `EOVERFLOW`
    /// ([`Error::RangeWraps`]).
    pub(crate) fn check_hw_queue_span(&self, base: PhysAddr, length: u64) -> Result<(), Error> {
        if length == 0 {
            return Err(self.bad_hw_queue_length(length));
        }
        if base.0.checked_add(length - 1).is_none() {
            return Err(Error::RangeWraps {
                base: base.0,
                length,
            });
        }
        Ok(())
    }

    /// The largest HW queue: `2^min(IDR1.CMDQS, 19)` commands.
    fn hw_queue_max_length(&self) -> u64 {
        (CMDQ_ENTRY_BYTES as u64) << self.cfg.cmdq_log2_max.min(MAX_LOG2)
    }

    fn bad_hw_queue_length(&self, length: u64) -> Error {
        Error::OutOfRange {
            what: Quantity::Length,
            value: length,
            max: self.hw_queue_max_length(),
        }
    }

    fn guest(&self, id: VintfId) -> Result<&super::GuestSlot, Error> {
        let v = usize::from(id.0);
        self.guests
            .get(v)
            .filter(|g| v != 0 && v < self.num_vintfs && g.in_use.load(Ordering::Acquire))
            .ok_or(Error::NoSuch(Object::Vintf(id.0)))
    }
}
