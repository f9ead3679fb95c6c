//! ACPI tables found from the RSDP: the XSDT's entries (ACPI 6.5 §5.2.5 RSDP, §5.2.8 XSDT),
//! the DSDT through the FADT (§5.2.9), the SSDTs, the IORT, SPCR's console (Microsoft "Serial
//! Port Console Redirection Table"), and from them the whole [`Topology`] with each SMMU paired
//! with its `NVDA200C` CMDQV.
//!
//! Memory is read only through the caller's [`PhysMem`]: the library never dereferences a
//! physical address. Every table's length is checked against what the reader returns and every
//! checksum (RSDP: the first 20 bytes and the whole extended structure) is verified before a
//! byte of it is used.
//!
//! ```no_run
//! # #[cfg(feature = "discovery")] {
//! use arm_smmuv3::discovery::acpi::{Acpi, PhysMem};
//!
//! /// Physical memory identity-mapped by the hypervisor's boot page tables.
//! struct Identity;
//! impl PhysMem for Identity {
//!     fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]> {
//!         // The hypervisor checks that [pa, pa + len) is mapped firmware memory, then:
//!         # let _ = (pa, len);
//!         # None
//!         // Some(unsafe { core::slice::from_raw_parts(pa as *const u8, len) })
//!     }
//! }
//!
//! let rsdp = 0x8000_0000; // from the UEFI configuration table or the boot protocol
//! let acpi = Acpi::new(&Identity, rsdp)?;
//! let topo = acpi.topology()?; // IORT + every NVDA200C in the DSDT and SSDTs
//! # let _ = topo;
//! # }
//! # Ok::<(), arm_smmuv3::discovery::DiscoveryError>(())
//! ```

use heapless::Vec;

use super::aml::{DefinitionBlock, MAX_CMDQVS};
use super::iort::{AcpiCmdqv, Iort};
use super::{DiscoveryError, Topology};

type Result<T> = core::result::Result<T, DiscoveryError>;

/// Length of the ACPI system description table header (ACPI 6.5 §5.2.6).
pub const HEADER_LEN: usize = 36;
/// Length of an ACPI 2.0+ RSDP.
const RSDP_LEN: usize = 36;
/// The ACPI 1.0 part of the RSDP its first checksum covers.
const RSDP_V1_LEN: usize = 20;
/// FADT fields: 32-bit DSDT address, 64-bit X_DSDT address (ACPI 6.5 Table 5.9).
const FADT_DSDT: usize = 40;
const FADT_X_DSDT: usize = 140;

/// Physical memory as the caller maps it.
pub trait PhysMem {
    /// The `len` bytes at physical address `pa`, or `None` when the caller cannot or will not
    /// let them be read (unmapped, not firmware memory, beyond a bound it sets).
    fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]>;
}

/// Physical memory held in a slice: `bytes` starts at physical address `base` (a copy of the
/// firmware tables, or a test's).
#[derive(Clone, Copy, Debug)]
pub struct Region<'a> {
    /// Physical address of `bytes[0]`.
    pub base: u64,
    /// The contents.
    pub bytes: &'a [u8],
}

impl PhysMem for Region<'_> {
    fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]> {
        let off = usize::try_from(pa.checked_sub(self.base)?).ok()?;
        self.bytes.get(off..off.checked_add(len)?)
    }
}

fn le(b: &[u8], at: usize, n: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(n)?)?;
    Some(s.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
}

fn sums_to_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
}

/// The system description table at the start of `blob`: its header's length is at least the
/// header, fits in `blob`, and the bytes it covers sum to zero.
pub(crate) fn checked_table(blob: &[u8]) -> Result<&[u8]> {
    let len = le(blob, 4, 4).ok_or(DiscoveryError::malformed(
        "shorter than an ACPI table header",
        0,
    ))?;
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len < HEADER_LEN {
        return Err(DiscoveryError::malformed(
            "ACPI table length below its header",
            4,
        ));
    }
    let table = blob.get(..len).ok_or(DiscoveryError::malformed(
        "ACPI table length past the blob",
        4,
    ))?;
    if !sums_to_zero(table) {
        return Err(DiscoveryError::malformed("ACPI table checksum", 9));
    }
    Ok(table)
}

/// The tables the XSDT lists, read through a [`PhysMem`].
#[derive(Debug)]
pub struct Acpi<'m, M: PhysMem + ?Sized> {
    mem: &'m M,
    xsdt: &'m [u8],
}

impl<M: PhysMem + ?Sized> Clone for Acpi<'_, M> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<M: PhysMem + ?Sized> Copy for Acpi<'_, M> {}

impl<'m, M: PhysMem + ?Sized> Acpi<'m, M> {
    /// Checks the RSDP at `rsdp` (signature `RSD PTR `, revision 2 or later so that it has an
    /// XSDT, both checksums) and the XSDT it points to (signature, length, checksum, whole
    /// entries).
    ///
    /// # Errors
    /// [`DiscoveryError::Unreadable`] when `mem` refuses a range;
    /// [`DiscoveryError::Malformed`] for a bad RSDP or XSDT;
    /// [`DiscoveryError::Unsupported`] for an ACPI 1.0 RSDP (RSDT only).
    pub fn new(mem: &'m M, rsdp: u64) -> Result<Self> {
        let r = mem
            .bytes(rsdp, RSDP_V1_LEN)
            .ok_or(DiscoveryError::Unreadable(rsdp))?;
        if r.get(..8) != Some(b"RSD PTR ") {
            return Err(DiscoveryError::malformed("RSDP signature", 0));
        }
        if !sums_to_zero(r) {
            return Err(DiscoveryError::malformed("RSDP checksum", 8));
        }
        if r.get(15).copied().unwrap_or(0) < 2 {
            return Err(DiscoveryError::Unsupported(
                "ACPI 1.0 RSDP (revision below 2: no XSDT)",
            ));
        }
        let len = declared_len(mem, rsdp, RSDP_LEN, 20, "RSDP length below 36 bytes")?;
        let r = mem
            .bytes(rsdp, len)
            .ok_or(DiscoveryError::Unreadable(rsdp))?;
        if !sums_to_zero(r) {
            return Err(DiscoveryError::malformed("RSDP extended checksum", 32));
        }
        let xsdt_pa = le(r, 24, 8).ok_or(DiscoveryError::malformed("RSDP length", 20))?;
        let xsdt = table_at(mem, xsdt_pa)?;
        if xsdt.get(..4) != Some(b"XSDT") {
            return Err(DiscoveryError::malformed("XSDT signature", 0));
        }
        if !(xsdt.len() - HEADER_LEN).is_multiple_of(8) {
            return Err(DiscoveryError::malformed("XSDT holds a partial entry", 4));
        }
        Ok(Self { mem, xsdt })
    }

    /// The physical addresses the XSDT lists, in its order.
    pub fn entries(&self) -> impl Iterator<Item = u64> + 'm {
        self.xsdt
            .get(HEADER_LEN..)
            .unwrap_or(&[])
            .chunks_exact(8)
            .filter_map(|e| le(e, 0, 8))
    }

    /// The checked table at physical address `pa`.
    ///
    /// # Errors
    /// [`DiscoveryError::Unreadable`], or [`DiscoveryError::Malformed`] for a bad length or
    /// checksum.
    pub fn table(&self, pa: u64) -> Result<&'m [u8]> {
        table_at(self.mem, pa)
    }

    /// Every listed table with signature `sig`, each checked.
    pub fn find_all(&self, sig: [u8; 4]) -> impl Iterator<Item = Result<&'m [u8]>> + 'm {
        let mem = self.mem;
        self.entries().filter_map(move |pa| {
            let Some(head) = mem.bytes(pa, HEADER_LEN) else {
                return Some(Err(DiscoveryError::Unreadable(pa)));
            };
            (head.get(..4) == Some(&sig[..])).then(|| table_at(mem, pa))
        })
    }

    /// The first listed table with signature `sig`, checked.
    ///
    /// # Errors
    /// [`DiscoveryError::TableNotFound`] when the XSDT lists none; the table's own error when
    /// it is unreadable or fails its checks (a corrupt table is not passed over in favour of a
    /// later one).
    pub fn find(&self, sig: [u8; 4]) -> Result<&'m [u8]> {
        self.find_all(sig)
            .next()
            .unwrap_or(Err(DiscoveryError::TableNotFound(sig)))
    }

    /// The DSDT, from the FADT's `X_DSDT` (or its 32-bit `DSDT` when `X_DSDT` is absent or 0).
    ///
    /// # Errors
    /// As [`Acpi::find`] for the FADT (`FACP`); [`DiscoveryError::Malformed`] for a FADT
    /// without a DSDT address or a DSDT that fails its checks.
    pub fn dsdt(&self) -> Result<DefinitionBlock<'m>> {
        let fadt = self.find(*b"FACP")?;
        let x = le(fadt, FADT_X_DSDT, 8).filter(|&a| a != 0);
        let pa = match x {
            Some(a) => a,
            None => le(fadt, FADT_DSDT, 4)
                .filter(|&a| a != 0)
                .ok_or(DiscoveryError::malformed(
                    "FADT without a DSDT address",
                    FADT_DSDT,
                ))?,
        };
        let table = self.table(pa)?;
        if table.get(..4) != Some(b"DSDT") {
            return Err(DiscoveryError::malformed("FADT's DSDT is not a DSDT", 0));
        }
        DefinitionBlock::new(table)
    }

    /// Every SSDT the XSDT lists.
    pub fn ssdts(&self) -> impl Iterator<Item = Result<DefinitionBlock<'m>>> + 'm {
        self.find_all(*b"SSDT")
            .map(|t| t.and_then(DefinitionBlock::new))
    }

    /// The IORT.
    ///
    /// # Errors
    /// As [`Acpi::find`] and [`Iort::new`].
    pub fn iort(&self) -> Result<Iort<'m>> {
        Iort::new(self.find(*b"IORT")?)
    }

    /// Every present `NVDA200C` CMDQV device of the DSDT and the SSDTs, in that order (see
    /// [`aml`](super::aml)).
    ///
    /// # Errors
    /// The first table's or device's error ([`DefinitionBlock::cmdqvs`]).
    pub fn cmdqvs(&self) -> Result<Vec<AcpiCmdqv, MAX_CMDQVS>> {
        let mut out = Vec::new();
        self.dsdt()?.cmdqvs(&mut out)?;
        for ssdt in self.ssdts() {
            ssdt?.cmdqvs(&mut out)?;
        }
        Ok(out)
    }

    /// The IORT's SMMUs and ID mappings, each generic SMMUv3 paired with the `NVDA200C` device
    /// whose `_UID` is its identifier.
    ///
    /// # Errors
    /// As [`Acpi::iort`], [`Acpi::cmdqvs`] and [`Iort::topology`].
    pub fn topology(&self) -> Result<Topology> {
        let cmdqvs = self.cmdqvs()?;
        self.iort()?.topology(&cmdqvs)
    }

    /// The console SPCR describes.
    ///
    /// # Errors
    /// As [`Acpi::find`] and [`Spcr::new`].
    pub fn spcr(&self) -> Result<Spcr> {
        Spcr::new(self.find(*b"SPCR")?)
    }
}

/// The 32-bit length field at `field` of the `min`-byte structure at `pa`, at least `min`.
fn declared_len<M: PhysMem + ?Sized>(
    mem: &M,
    pa: u64,
    min: usize,
    field: usize,
    what: &'static str,
) -> Result<usize> {
    let head = mem.bytes(pa, min).ok_or(DiscoveryError::Unreadable(pa))?;
    let len = le(head, field, 4).unwrap_or(0);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len < min {
        return Err(DiscoveryError::malformed(what, field));
    }
    Ok(len)
}

fn table_at<M: PhysMem + ?Sized>(mem: &M, pa: u64) -> Result<&[u8]> {
    let len = declared_len(mem, pa, HEADER_LEN, 4, "ACPI table length below its header")?;
    checked_table(mem.bytes(pa, len).ok_or(DiscoveryError::Unreadable(pa))?)
}

/// SPCR interface types (Microsoft "Debug Port Table 2" serial subtypes) this module names.
pub mod interface {
    /// Fully 16550-compatible.
    pub const NS16550: u8 = 0x00;
    /// Arm PL011 UART.
    pub const PL011: u8 = 0x03;
    /// Arm SBSA generic UART, 32-bit accesses only (deprecated subtype).
    pub const SBSA_32BIT: u8 = 0x0d;
    /// Arm SBSA generic UART.
    pub const SBSA: u8 = 0x0e;
    /// 16550-compatible with parameters from the Generic Address Structure.
    pub const NS16550_GAS: u8 = 0x12;
}

/// The console SPCR describes (SPCR revision 2 layout; later revisions only append).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Spcr {
    /// Interface type ([`interface`]).
    pub interface: u8,
    /// Base address's Generic Address Structure address space ID (0: system memory).
    pub space: u8,
    /// Register width in bits from the Generic Address Structure.
    pub bit_width: u8,
    /// Access size (1 byte, 2 word, 3 dword, 4 qword; 0 undefined).
    pub access_size: u8,
    /// The base address.
    pub base: u64,
    /// The GIC interrupt (GSIV), when the interrupt type says it is one (bit 3, "ARMH GIC").
    pub gsiv: Option<u32>,
    /// The baud rate code (3: 9600, 4: 19200, 6: 57600, 7: 115200; 0: as the firmware left it).
    pub baud: u8,
}

impl Spcr {
    const MIN_LEN: usize = 80;

    /// Reads a checked SPCR.
    ///
    /// # Errors
    /// [`DiscoveryError::Malformed`] for another signature or a table shorter than revision 1.
    pub fn new(table: &[u8]) -> Result<Self> {
        let table = checked_table(table)?;
        if table.get(..4) != Some(b"SPCR") {
            return Err(DiscoveryError::malformed("not an SPCR", 0));
        }
        if table.len() < Self::MIN_LEN {
            return Err(DiscoveryError::malformed("SPCR shorter than its fields", 4));
        }
        let byte = |at: usize| table.get(at).copied().unwrap_or(0);
        let gic = byte(52) & (1 << 3) != 0;
        Ok(Self {
            interface: byte(36),
            space: byte(40),
            bit_width: byte(41),
            access_size: byte(43),
            base: le(table, 44, 8).unwrap_or(0),
            gsiv: gic.then(|| le(table, 54, 4).unwrap_or(0) as u32),
            baud: byte(58),
        })
    }

    /// The MMIO base of a PL011 or SBSA generic UART console (drivable as a PL011
    /// transmitter), if that is what SPCR describes.
    pub const fn pl011_base(&self) -> Option<u64> {
        match self.interface {
            interface::PL011 | interface::SBSA | interface::SBSA_32BIT if self.space == 0 => {
                Some(self.base)
            }
            _ => None,
        }
    }
}
