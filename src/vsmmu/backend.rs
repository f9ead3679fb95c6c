//! What a [`VSmmu`](super::VSmmu) needs from the vIOMMU layer, as one narrow trait.
//!
//! Every call the virtual SMMU makes into the physical side goes through [`Backend`]: installing
//! the nested STE a guest STE asks for, aborting or bypassing a stream, forwarding sanitised guest
//! invalidations, and reading the vIOMMU's vEVENTQ the way a VMM reads the vEVENTQ fd. The
//! library's implementation for a [`Router`](crate::viommu::Router) and a physical
//! [`Smmu`](crate::smmu::Smmu) is [`RouterBackend`](super::RouterBackend); tests and fuzz
//! targets can record instead.

use crate::command::CmdqEntry;
use crate::error::Error;
use crate::features::Features;
use crate::ids::VStreamId;
use crate::ste::STE0;
use crate::viommu::InvalidateOutcome;

/// Guest STE dwords 0-1 for a stream the guest bypasses: V = 1, Config = 0b100 (IHI 0070
/// §5.2 STE.Config). Through the sanitiser this becomes the vIOMMU's stage-2-only STE.
pub const GUEST_STE_BYPASS: [u64; 2] = [STE0::V::SET.value | STE0::CONFIG::Bypass.value, 0];
/// Guest STE dwords 0-1 of an aborting stream (V = 0): the sanitiser makes it an abort STE.
pub const GUEST_STE_ABORT: [u64; 2] = [0, 0];

/// The physical side of one guest's virtual SMMU: its vIOMMU, the vDEVICEs that map its
/// StreamIDs to physical ones, and the physical SMMU's command queue.
///
/// Implementations must confine every effect to the vIOMMU they were made for: a guest STE only
/// ever reaches the physical StreamID of one of this vIOMMU's vDEVICEs, and every forwarded
/// command carries this vIOMMU's VMID or one of its physical StreamIDs. The virtual SMMU relies
/// on that; it never names a VMID or a physical StreamID itself.
pub trait Backend {
    /// The physical SMMU's decoded ID registers (what the guest may be offered).
    fn features(&self) -> Features;

    /// Makes `guest_ste` (the guest's STE dwords 0-1 for `vsid`) the configuration of the
    /// device with that vSID: sanitised as Linux's IOMMU_HWPT_ALLOC for SMMUv3 nesting does, then
    /// installed as a nested STE on the physical SMMU (`Router::attach_nested`).
    ///
    /// # Errors
    /// [`Error::Rejected`] when the sanitiser refuses the STE (nothing reaches the hardware);
    /// [`Error::NoSuch`] when `vsid` is no vDEVICE of this vIOMMU; anything the physical
    /// driver returns.
    fn attach(&self, vsid: VStreamId, guest_ste: [u64; 2]) -> Result<(), Error>;

    /// The device with `vsid` aborts every transaction (its guest configuration is refused or
    /// unreachable). The default installs [`GUEST_STE_ABORT`] through [`Backend::attach`].
    fn abort(&self, vsid: VStreamId) -> Result<(), Error> {
        self.attach(vsid, GUEST_STE_ABORT)
    }

    /// The device with `vsid` is translated by stage 2 only (the guest's SMMU is off with
    /// GBPA.ABORT = 0). The default installs [`GUEST_STE_BYPASS`] through [`Backend::attach`].
    fn bypass(&self, vsid: VStreamId) -> Result<(), Error> {
        self.attach(vsid, GUEST_STE_BYPASS)
    }

    /// Calls `f` with the vSID of each of this vIOMMU's vDEVICEs (a bounded set the hypervisor
    /// created), holding no lock while `f` runs.
    fn for_each_vsid(&self, f: &mut dyn FnMut(VStreamId));

    /// Sanitises `cmds` (raw guest commands: TLBI_NH_*, TLBI_NSNH_ALL, CFGI_CD*, ATC_INV) and
    /// issues them on the physical SMMU followed by one CMD_SYNC, all or nothing: a refused
    /// command means none of `cmds` was issued (`Router::invalidate`, IOMMU_HWPT_INVALIDATE).
    fn invalidate(&self, cmds: &[CmdqEntry]) -> InvalidateOutcome;

    /// Reads whole vEVENTQ records (SMMUv3 type) into `buf`, as a `read()` of the vEVENTQ fd:
    /// an 8-byte `iommufd_vevent_header` before each 32-byte record, a lone header with
    /// LOST_EVENTS where records were dropped; 0 when empty.
    ///
    /// The virtual SMMU calls it only with its state locked, which makes it the vEVENTQ's one
    /// consumer (the ring is single-consumer): nothing else may read this vIOMMU's vEVENTQ.
    fn read_vevents(&self, buf: &mut [u8]) -> Result<usize, Error>;
}

impl<T: Backend + ?Sized> Backend for &T {
    fn features(&self) -> Features {
        (**self).features()
    }
    fn attach(&self, vsid: VStreamId, guest_ste: [u64; 2]) -> Result<(), Error> {
        (**self).attach(vsid, guest_ste)
    }
    fn abort(&self, vsid: VStreamId) -> Result<(), Error> {
        (**self).abort(vsid)
    }
    fn bypass(&self, vsid: VStreamId) -> Result<(), Error> {
        (**self).bypass(vsid)
    }
    fn for_each_vsid(&self, f: &mut dyn FnMut(VStreamId)) {
        (**self).for_each_vsid(f);
    }
    fn invalidate(&self, cmds: &[CmdqEntry]) -> InvalidateOutcome {
        (**self).invalidate(cmds)
    }
    fn read_vevents(&self, buf: &mut [u8]) -> Result<usize, Error> {
        (**self).read_vevents(buf)
    }
}
