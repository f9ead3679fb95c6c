//! QEMU's `edu` PCI device (1234:11e8) as a DMA master whose requests go through the SMMU.
//!
//! edu copies between a 4 KiB buffer inside the device (device address 0x40000) and a bus address,
//! 100 ms of guest time after the command is written. Bus addresses reach the SMMU unmodified only
//! with `-device edu,dma_mask=0xffffffffffffffff` (the default mask is 28 bits and QEMU clamps
//! before translation). QEMU performs an out-of-range transfer anyway and corrupts edu's state, so
//! every transfer is checked to stay inside the buffer.

use core::sync::atomic::{AtomicUsize, Ordering};

use arm_smmuv3::{Iova, Platform, StreamId};

/// PCI vendor ID of edu.
pub const VENDOR: u16 = 0x1234;
/// PCI device ID of edu.
pub const DEVICE: u16 = 0x11e8;
/// Device address of edu's DMA buffer.
pub const BUFFER: u64 = 0x40000;
/// Size of edu's DMA buffer.
pub const BUFFER_SIZE: usize = 4096;

const REG_ID: usize = 0x00;
const REG_LIVENESS: usize = 0x04;
const REG_IRQ_STATUS: usize = 0x24;
const REG_IRQ_RAISE: usize = 0x60;
const REG_IRQ_ACK: usize = 0x64;
const REG_DMA_SRC: usize = 0x80;
const REG_DMA_DST: usize = 0x88;
const REG_DMA_COUNT: usize = 0x90;
const REG_DMA_CMD: usize = 0x98;
const CMD_RUN: u64 = 1 << 0;
const CMD_TO_RAM: u64 = 1 << 1;

/// How long [`Edu::wait`] polls before giving up (a DMA starts from a timer 100 ms after the
/// command, in guest time).
pub const DMA_TIMEOUT_US: u64 = 2_000_000;

/// Why an edu DMA was refused or did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum EduError {
    /// Zero bytes, or the range leaves the 4 KiB device buffer.
    OutOfBuffer,
    /// A DMA is still running (edu ignores commands meanwhile).
    Busy,
    /// The DMA did not complete within [`DMA_TIMEOUT_US`].
    Timeout,
}

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum Direction {
    /// Memory (through the SMMU) into the device buffer: a DMA read.
    ToDevice,
    /// The device buffer into memory (through the SMMU): a DMA write.
    FromDevice,
}

/// BAR0 of the edu found at boot, for the IRQ hook (which has no other way to reach it).
static IRQ_BAR: AtomicUsize = AtomicUsize::new(0);

/// An enabled edu function (memory decoding and bus mastering on).
pub struct Edu {
    bar0: usize,
    sid: StreamId,
}

impl Edu {
    /// # Safety
    ///
    /// `bar0` is the edu's BAR0 (1 MiB), mapped as device memory and used by nothing else; the
    /// function has memory decoding and bus mastering enabled.
    pub unsafe fn new(bar0: usize, sid: StreamId) -> Self {
        IRQ_BAR.store(bar0, Ordering::Release);
        Self { bar0, sid }
    }

    /// The StreamID its DMA carries.
    pub fn stream_id(&self) -> StreamId {
        self.sid
    }

    fn read32(&self, off: usize) -> u32 {
        // SAFETY: `off` is a register offset inside BAR0 (contract of `new`).
        unsafe { ((self.bar0 + off) as *const u32).read_volatile() }
    }

    fn write32(&self, off: usize, v: u32) {
        // SAFETY: as for `read32`.
        unsafe { ((self.bar0 + off) as *mut u32).write_volatile(v) }
    }

    fn read64(&self, off: usize) -> u64 {
        // SAFETY: as for `read32`; the DMA registers take 64-bit accesses.
        unsafe { ((self.bar0 + off) as *const u64).read_volatile() }
    }

    fn write64(&self, off: usize, v: u64) {
        // SAFETY: as for `read64`.
        unsafe { ((self.bar0 + off) as *mut u64).write_volatile(v) }
    }

    /// The identification register (0x010000ed on QEMU 10: version 1.0, magic 0xed).
    pub fn id(&self) -> u32 {
        self.read32(REG_ID)
    }

    /// Writes `v` to the liveness register and returns what it reads back (edu returns `!v`).
    pub fn liveness(&self, v: u32) -> u32 {
        self.write32(REG_LIVENESS, v);
        self.read32(REG_LIVENESS)
    }

    /// Address of the register that raises edu's interrupt (for code that must trigger it from
    /// assembly).
    pub fn irq_raise_register(&self) -> *mut u32 {
        (self.bar0 + REG_IRQ_RAISE) as *mut u32
    }

    /// Whether [`Edu::start`] refuses a transfer that would leave the device buffer (checked
    /// before anything reaches the device).
    pub fn out_of_buffer_refused(&self) -> bool {
        self.start(Direction::ToDevice, Iova(0), BUFFER_SIZE - 4, 8) == Err(EduError::OutOfBuffer)
            && self.start(Direction::FromDevice, Iova(0), 0, BUFFER_SIZE + 1)
                == Err(EduError::OutOfBuffer)
            && self.start(Direction::FromDevice, Iova(0), 0, 0) == Err(EduError::OutOfBuffer)
    }

    /// Whether a DMA is running.
    pub fn busy(&self) -> bool {
        self.read64(REG_DMA_CMD) & CMD_RUN != 0
    }

    /// Starts one transfer of `len` bytes between `iova` and `offset` in the device buffer without
    /// waiting. Several can be batched by starting each after the previous one's [`Edu::wait`].
    pub fn start(
        &self,
        dir: Direction,
        iova: Iova,
        offset: usize,
        len: usize,
    ) -> Result<(), EduError> {
        if len == 0 || offset.checked_add(len).is_none_or(|end| end > BUFFER_SIZE) {
            return Err(EduError::OutOfBuffer);
        }
        if self.busy() {
            return Err(EduError::Busy);
        }
        let dev = BUFFER + offset as u64;
        let (src, dst, cmd) = match dir {
            Direction::ToDevice => (iova.0, dev, CMD_RUN),
            Direction::FromDevice => (dev, iova.0, CMD_RUN | CMD_TO_RAM),
        };
        self.write64(REG_DMA_SRC, src);
        self.write64(REG_DMA_DST, dst);
        self.write64(REG_DMA_COUNT, len as u64);
        self.write64(REG_DMA_CMD, cmd);
        Ok(())
    }

    /// Polls until the running transfer (if any) completes. A transfer the SMMU faulted still
    /// completes from edu's point of view.
    pub fn wait(&self, platform: &impl Platform) -> Result<(), EduError> {
        let start = platform.now_us();
        while self.busy() {
            if platform.now_us().wrapping_sub(start) > DMA_TIMEOUT_US {
                return Err(EduError::Timeout);
            }
            core::hint::spin_loop();
        }
        Ok(())
    }

    /// One transfer, waited for.
    pub fn dma(
        &self,
        platform: &impl Platform,
        dir: Direction,
        iova: Iova,
        offset: usize,
        len: usize,
    ) -> Result<(), EduError> {
        self.start(dir, iova, offset, len)?;
        self.wait(platform)
    }

    /// Memory at `iova` into the device buffer at `offset`.
    pub fn read_from_memory(
        &self,
        platform: &impl Platform,
        iova: Iova,
        offset: usize,
        len: usize,
    ) -> Result<(), EduError> {
        self.dma(platform, Direction::ToDevice, iova, offset, len)
    }

    /// The device buffer at `offset` into memory at `iova`.
    pub fn write_to_memory(
        &self,
        platform: &impl Platform,
        offset: usize,
        iova: Iova,
        len: usize,
    ) -> Result<(), EduError> {
        self.dma(platform, Direction::FromDevice, iova, offset, len)
    }
}

/// The IRQ hook for edu's INTx: acknowledges every pending status bit at the device so that the
/// level-triggered line drops before EOI.
pub fn ack_irq_hook(_intid: arm_gic::IntId) {
    let bar0 = IRQ_BAR.load(Ordering::Acquire);
    if bar0 == 0 {
        return;
    }
    // SAFETY: IRQ_BAR holds the BAR0 of the edu set up at boot (see `Edu::new`); the status and
    // acknowledge registers are 32-bit registers inside it.
    unsafe {
        let status = ((bar0 + REG_IRQ_STATUS) as *const u32).read_volatile();
        ((bar0 + REG_IRQ_ACK) as *mut u32).write_volatile(status);
    }
}
