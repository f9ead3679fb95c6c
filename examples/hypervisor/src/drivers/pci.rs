//! PCIe enumeration over QEMU `virt`'s ECAM, with pci_types.
//!
//! pci_types was chosen over virtio-drivers' PCI module: it reaches the whole 4 KiB of each
//! function's configuration space (u16 offsets; virtio-drivers stops at 256 bytes, before the
//! extended capabilities such as ATS, PRI and PASID that SMMU work needs), and it depends only on
//! bit_field and bitflags (virtio-drivers brings zerocopy, syn and friends into a 2-core build).
//! The price is this file's ECAM accessor and bus loop.

use core::fmt;

use pci_types::{
    Bar, CommandRegister, ConfigRegionAccess, EndpointHeader, HeaderType, PciAddress, PciHeader,
};

/// PCIe ECAM (high) of QEMU `virt` with highmem on: 256 buses.
pub const ECAM_BASE: usize = 0x40_1000_0000;
/// Start of the 32-bit non-prefetchable MMIO window, where BARs are assigned.
pub const MMIO32_BASE: u32 = 0x1000_0000;
/// End of that window.
pub const MMIO32_END: u32 = 0x3EFF_0000;

/// ECAM configuration access: function (bus, dev, fn) at `base + bus<<20 | dev<<15 | fn<<12`.
#[derive(Clone, Copy)]
pub struct Ecam {
    base: usize,
}

impl Ecam {
    /// # Safety
    ///
    /// `base` is an ECAM region covering bus 0, mapped as device memory.
    pub const unsafe fn new(base: usize) -> Self {
        Self { base }
    }

    fn addr(&self, address: PciAddress, offset: u16) -> *mut u32 {
        let off = (usize::from(address.bus()) << 20)
            | (usize::from(address.device()) << 15)
            | (usize::from(address.function()) << 12)
            | usize::from(offset & 0xffc);
        (self.base + off) as *mut u32
    }
}

impl ConfigRegionAccess for Ecam {
    unsafe fn read(&self, address: PciAddress, offset: u16) -> u32 {
        // SAFETY: the ECAM is mapped (contract of `Ecam::new`); the offset is masked to the
        // function's 4 KiB and aligned to 4 bytes.
        unsafe { self.addr(address, offset).read_volatile() }
    }

    unsafe fn write(&self, address: PciAddress, offset: u16, value: u32) {
        // SAFETY: as for `read`; the caller (pci_types) promises the write is meaningful.
        unsafe { self.addr(address, offset).write_volatile(value) }
    }
}

/// A function found on bus 0.
#[derive(Clone, Copy, Debug)]
pub struct Function {
    /// Device number (bus 0, function 0).
    pub device: u8,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device_id: u16,
}

impl Function {
    /// The requester ID bus<<8 | dev<<3 | fn (the device tree's `iommu-map` turns it into a
    /// StreamID, see discover.rs).
    pub fn rid(&self) -> u16 {
        u16::from(self.device) << 3
    }
}

impl fmt::Display for Function {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00:{:02x}.0 {:04x}:{:04x}",
            self.device, self.vendor, self.device_id
        )
    }
}

impl defmt::Format for Function {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "00:{=u8:02x}.0 {=u16:04x}:{=u16:04x}",
            self.device,
            self.vendor,
            self.device_id
        );
    }
}

/// Lists function 0 of each device on bus 0 (QEMU `virt` has no bridges by default), at most
/// `N` of them.
pub fn scan_bus0<const N: usize>(ecam: Ecam) -> heapless::Vec<Function, N> {
    let mut found = heapless::Vec::new();
    for device in 0..32 {
        let header = PciHeader::new(PciAddress::new(0, 0, device, 0));
        let (vendor, device_id) = header.id(ecam);
        if vendor == 0xffff {
            continue;
        }
        if found
            .push(Function {
                device,
                vendor,
                device_id,
            })
            .is_err()
        {
            break;
        }
    }
    found
}

/// Why an endpoint could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub enum SetupError {
    /// Not a type-0 (endpoint) header.
    NotEndpoint,
    /// BAR0 is absent or not a memory BAR.
    NoMemoryBar0,
    /// BAR0 does not fit in what is left of the MMIO32 window.
    WindowFull,
}

/// A simple assigner of the MMIO32 window.
pub struct BarAllocator {
    next: u32,
}

impl BarAllocator {
    /// Starts at the bottom of the window.
    pub const fn new() -> Self {
        Self { next: MMIO32_BASE }
    }

    /// Sizes BAR0 of `function` with memory decoding off, assigns it a naturally aligned address,
    /// and enables memory decoding and bus mastering. Returns the BAR's address and size.
    pub fn setup_bar0(
        &mut self,
        ecam: Ecam,
        function: &Function,
    ) -> Result<(u64, u64), SetupError> {
        let header = PciHeader::new(PciAddress::new(0, 0, function.device, 0));
        if !matches!(header.header_type(ecam), HeaderType::Endpoint) {
            return Err(SetupError::NotEndpoint);
        }
        let mut ep = EndpointHeader::from_header(header, ecam).ok_or(SetupError::NotEndpoint)?;
        // pci_types sizes a BAR by writing all-ones to it: keep decoding off meanwhile.
        ep.update_command(ecam, |c| {
            c - CommandRegister::MEMORY_ENABLE - CommandRegister::BUS_MASTER_ENABLE
        });
        let size = match ep.bar(0, ecam) {
            Some(Bar::Memory32 { size, .. }) => u64::from(size),
            Some(Bar::Memory64 { size, .. }) => size,
            _ => return Err(SetupError::NoMemoryBar0),
        };
        let addr = u64::from(self.next).next_multiple_of(size);
        let end = addr.checked_add(size).ok_or(SetupError::WindowFull)?;
        if end > u64::from(MMIO32_END) {
            return Err(SetupError::WindowFull);
        }
        // SAFETY: the address range is unused MMIO32 window space (this allocator hands each range
        // out once) and decoding is off while it changes.
        unsafe { ep.write_bar(0, ecam, addr as usize) }.map_err(|_| SetupError::NoMemoryBar0)?;
        self.next = end as u32;
        ep.update_command(ecam, |c| {
            c | CommandRegister::MEMORY_ENABLE | CommandRegister::BUS_MASTER_ENABLE
        });
        Ok((addr, size))
    }
}

/// A function found on a root bus other than bus 0, or behind a root port there.
#[derive(Clone, Copy, Debug)]
pub struct Remote {
    /// Its bus.
    pub bus: u8,
    /// Its device number (function 0).
    pub device: u8,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device_id: u16,
}

impl Remote {
    /// Its requester ID, bus<<8 | dev<<3.
    pub fn rid(&self) -> u16 {
        (u16::from(self.bus) << 8) | (u16::from(self.device) << 3)
    }
}

/// Finds the root buses of PCIe expander bridges (QEMU `pxb-pcie`, whose root bus number
/// `bus_nr` is fixed and answers config reads without any setup), gives each root port on them
/// the next bus number as its secondary and subordinate bus, and lists function 0 of every
/// device on those root buses and behind those root ports (at most `N`). Bus numbers above the
/// expanders' are left unused, so this must run before anything else assigns buses.
pub fn scan_expanders<const N: usize>(ecam: Ecam) -> heapless::Vec<Remote, N> {
    let mut found = heapless::Vec::new();
    let list = |bus: u8, found: &mut heapless::Vec<Remote, N>| {
        for device in 0..32 {
            let header = PciHeader::new(PciAddress::new(0, bus, device, 0));
            let (vendor, device_id) = header.id(ecam);
            if vendor != 0xffff {
                let _ = found.push(Remote {
                    bus,
                    device,
                    vendor,
                    device_id,
                });
            }
        }
    };
    let mut bus = 1u16;
    while bus < 255 {
        let root = bus as u8;
        let header = PciHeader::new(PciAddress::new(0, root, 0, 0));
        if header.id(ecam).0 == 0xffff {
            bus += 1;
            continue;
        }
        list(root, &mut found);
        let mut next = root;
        for device in 0..32 {
            let addr = PciAddress::new(0, root, device, 0);
            let h = PciHeader::new(addr);
            if h.id(ecam).0 == 0xffff || h.header_type(ecam) != HeaderType::PciPciBridge {
                continue;
            }
            let Some(secondary) = next.checked_add(1) else {
                break;
            };
            next = secondary;
            // SAFETY: offset 0x18 of a type-1 header is the primary/secondary/subordinate bus
            // number register; the bridge is not forwarding anything yet.
            unsafe {
                ecam.write(
                    addr,
                    0x18,
                    u32::from(root) | (u32::from(secondary) << 8) | (u32::from(secondary) << 16),
                );
            }
            list(secondary, &mut found);
        }
        bus = u16::from(next) + 1;
    }
    found
}
