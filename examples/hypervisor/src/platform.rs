//! The library's [`Platform`] for this hypervisor, and the DMA memory it lends to the driver.

use core::ptr::NonNull;
use core::sync::atomic::{AtomicU32, Ordering};

use aarch64_cpu::asm::barrier;
use aarch64_cpu::registers::{CNTFRQ_EL0, CNTPCT_EL0, Readable};
use arm_smmuv3::{BumpDma, MmioAccess, PhysAddr, Platform, WaitFor};

/// Time and waiting on QEMU `virt`: the generic timer's physical counter.
#[derive(Clone, Copy, Debug)]
pub struct QemuPlatform {
    freq_hz: u64,
}

impl QemuPlatform {
    /// Reads CNTFRQ_EL0 (1 GHz on `virt` >= 9.1, 62.5 MHz on `virt-9.0`).
    pub fn new() -> Self {
        Self {
            freq_hz: CNTFRQ_EL0.get().max(1),
        }
    }

    /// The counter frequency in Hz.
    pub fn freq_hz(&self) -> u64 {
        self.freq_hz
    }
}

impl Platform for QemuPlatform {
    fn now_us(&self) -> u64 {
        // The ISB keeps the counter read from being hoisted above earlier instructions.
        barrier::isb(barrier::SY);
        let ticks = CNTPCT_EL0.get();
        (u128::from(ticks) * 1_000_000 / u128::from(self.freq_hz)) as u64
    }

    fn relax(&self, _what: WaitFor) {
        core::hint::spin_loop();
    }

    fn mmio(&self, _addr: usize, _access: MmioAccess) {
        MMIO_ACCESSES.fetch_add(1, Ordering::Relaxed);
    }
}

/// Every SMMU register access the driver announced through [`Platform::mmio`], since boot.
static MMIO_ACCESSES: AtomicU32 = AtomicU32::new(0);

/// How many SMMU register accesses the driver has made so far (its own MMIO hook's count).
pub fn mmio_accesses() -> u32 {
    MMIO_ACCESSES.load(Ordering::Relaxed)
}

unsafe extern "C" {
    /// First byte after the image (aarch64-rt's image.ld), 4 KiB aligned.
    static dma_region: u8;
    /// Absolute symbol from qemu_virt.ld (beside this crate's Cargo.toml): how many bytes from
    /// `dma_region` are lent.
    static DMA_REGION_SIZE: u8;
}

/// Physical (= CPU) address of the lent region.
pub fn dma_region_base() -> usize {
    (&raw const dma_region) as usize
}

static DMA: spin::Once<BumpDma> = spin::Once::new();

/// The region after the image, lent as DMA memory for everything the SMMU or edu touches: stream
/// tables, queues, stage-2 tables, "VM" memory, DMA test buffers. Zeroed on first use. The CPU
/// address is the physical address (identity map, see boot.rs); the SMMU is cache-coherent on
/// QEMU (IDR0.COHACC = 1) and the map is normal write-back memory.
pub fn dma() -> &'static BumpDma {
    DMA.call_once(|| {
        let base = dma_region_base();
        let size = (&raw const DMA_REGION_SIZE) as usize;
        let ptr = NonNull::new(base as *mut u8).expect("dma_region");
        // SAFETY: the linker places `size` bytes of otherwise unused RAM at `dma_region` (asserted
        // to fit in qemu_virt.ld); nothing else refers to it before this `Once` hands it out.
        unsafe {
            ptr.as_ptr().write_bytes(0, size);
            BumpDma::new(ptr, PhysAddr(base as u64), size)
        }
    })
}
