//! The few ACPI tables the Grace image reads, found from the RSDP the loader hands over: the
//! XSDT's entries, bounds-checked, and SPCR's console. The IORT itself is read by
//! `arm_smmuv3::discovery::iort`.

/// Why a table was not found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AcpiError {
    /// No "RSD PTR " signature, a revision below 2 (no XSDT), or a bad checksum.
    BadRsdp,
    /// The XSDT's header or length is wrong, or memory could not be read.
    BadXsdt,
    /// No table with that signature.
    NotFound,
}

/// Physical memory as the image reads it (identity-mapped on the board; a buffer in tests).
pub trait PhysMem {
    /// `len` bytes at physical address `pa`, or `None` when they are not readable.
    fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]>;
}

fn le32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn le64(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn sums_to_zero(b: &[u8]) -> bool {
    b.iter().fold(0u8, |a, x| a.wrapping_add(*x)) == 0
}

/// The whole table at `pa` (its header's length), checksum verified.
fn table(mem: &impl PhysMem, pa: u64) -> Option<&[u8]> {
    let len = le32(mem.bytes(pa, 36)?, 4)? as usize;
    let t = mem.bytes(pa, len).filter(|_| len >= 36)?;
    sums_to_zero(t).then_some(t)
}

/// The table with signature `sig` listed in the XSDT of the RSDP at `rsdp` (ACPI 6.5 §5.2.5,
/// §5.2.8): the first one whose checksum holds.
pub fn find<'m>(mem: &'m impl PhysMem, rsdp: u64, sig: &[u8; 4]) -> Result<&'m [u8], AcpiError> {
    let r = mem.bytes(rsdp, 36).ok_or(AcpiError::BadRsdp)?;
    if &r[..8] != b"RSD PTR " || r[15] < 2 || !sums_to_zero(r) {
        return Err(AcpiError::BadRsdp);
    }
    let xsdt_pa = le64(r, 24).ok_or(AcpiError::BadRsdp)?;
    let xsdt = table(mem, xsdt_pa).ok_or(AcpiError::BadXsdt)?;
    if &xsdt[..4] != b"XSDT" {
        return Err(AcpiError::BadXsdt);
    }
    let entries = xsdt.get(36..).ok_or(AcpiError::BadXsdt)?;
    for e in entries.chunks_exact(8) {
        let Some(pa) = le64(e, 0) else { continue };
        if let Some(t) = table(mem, pa).filter(|t| &t[..4] == sig) {
            return Ok(t);
        }
    }
    Err(AcpiError::NotFound)
}

/// The console SPCR names, when it is a PL011 or an SBSA generic UART (which the image drives
/// as a PL011 transmitter) in memory space: its base.
pub fn spcr_pl011(spcr: &[u8]) -> Option<u64> {
    // Interface type @36: 0x03 PL011, 0x0E SBSA generic UART, 0x0D SBSA 32-bit-only.
    let kind = *spcr.get(36)?;
    // Base address: a Generic Address Structure @40 (space ID 0 = system memory, address @44).
    (matches!(kind, 0x03 | 0x0d | 0x0e) && *spcr.get(40)? == 0).then(|| le64(spcr, 44))?
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE_IORT: &[u8] = include_bytes!("../../../tests/fixtures/iort/grace.iort");

    /// A buffer standing for physical memory from `base`.
    struct Ram {
        base: u64,
        bytes: Vec<u8>,
    }

    impl PhysMem for Ram {
        fn bytes(&self, pa: u64, len: usize) -> Option<&[u8]> {
            let off = usize::try_from(pa.checked_sub(self.base)?).ok()?;
            self.bytes.get(off..off.checked_add(len)?)
        }
    }

    fn fix_checksum(t: &mut [u8], at: usize) {
        t[at] = 0;
        let sum = t.iter().fold(0u8, |a, x| a.wrapping_add(*x));
        t[at] = sum.wrapping_neg();
    }

    fn header(sig: &[u8; 4], len: usize) -> Vec<u8> {
        let mut t = vec![0u8; len];
        t[..4].copy_from_slice(sig);
        t[4..8].copy_from_slice(&(len as u32).to_le_bytes());
        t[8] = 1;
        t
    }

    /// RSDP at base, XSDT at +0x100 listing SPCR (+0x200) and the IORT (+0x400).
    fn firmware(rsdp_rev: u8) -> Ram {
        let base = 0x8000_0000u64;
        let mut ram = vec![0u8; 0x400 + GRACE_IORT.len()];
        let mut rsdp = [0u8; 36];
        rsdp[..8].copy_from_slice(b"RSD PTR ");
        rsdp[15] = rsdp_rev;
        rsdp[24..32].copy_from_slice(&(base + 0x100).to_le_bytes());
        fix_checksum(&mut rsdp, 8);
        ram[..36].copy_from_slice(&rsdp);
        let mut xsdt = header(b"XSDT", 36 + 16);
        xsdt[36..44].copy_from_slice(&(base + 0x200).to_le_bytes());
        xsdt[44..52].copy_from_slice(&(base + 0x400).to_le_bytes());
        fix_checksum(&mut xsdt, 9);
        ram[0x100..0x100 + xsdt.len()].copy_from_slice(&xsdt);
        let mut spcr = header(b"SPCR", 80);
        spcr[36] = 0x0e;
        spcr[44..52].copy_from_slice(&0x0c28_0000u64.to_le_bytes());
        fix_checksum(&mut spcr, 9);
        ram[0x200..0x200 + spcr.len()].copy_from_slice(&spcr);
        ram[0x400..].copy_from_slice(GRACE_IORT);
        Ram { base, bytes: ram }
    }

    #[test]
    fn finds_the_iort_and_the_console_through_the_xsdt() {
        let fw = firmware(2);
        let iort = find(&fw, fw.base, b"IORT").unwrap();
        assert_eq!(iort, GRACE_IORT);
        let topo = arm_smmuv3::discovery::iort::Iort::new(iort)
            .unwrap()
            .topology(&[])
            .unwrap();
        assert_eq!(topo.smmus().len(), 4);
        assert_eq!(
            spcr_pl011(find(&fw, fw.base, b"SPCR").unwrap()),
            Some(0x0c28_0000)
        );
        assert_eq!(find(&fw, fw.base, b"DSDT"), Err(AcpiError::NotFound));
    }

    #[test]
    fn refuses_a_bad_rsdp_xsdt_or_table() {
        assert_eq!(
            find(&firmware(0), 0x8000_0000, b"IORT"),
            Err(AcpiError::BadRsdp)
        );
        let mut fw = firmware(2);
        fw.bytes[3] ^= 1;
        assert_eq!(find(&fw, fw.base, b"IORT"), Err(AcpiError::BadRsdp));
        // A corrupted IORT (checksum) is not found, a corrupted XSDT is an error.
        let mut fw = firmware(2);
        fw.bytes[0x400 + 40] ^= 0xff;
        assert_eq!(find(&fw, fw.base, b"IORT"), Err(AcpiError::NotFound));
        let mut fw = firmware(2);
        fw.bytes[0x100 + 40] ^= 0xff;
        assert_eq!(find(&fw, fw.base, b"IORT"), Err(AcpiError::BadXsdt));
        // An XSDT longer than memory.
        let mut fw = firmware(2);
        fw.bytes[0x104..0x108].copy_from_slice(&0xffff_fff0u32.to_le_bytes());
        assert_eq!(find(&fw, fw.base, b"IORT"), Err(AcpiError::BadXsdt));
        // Every truncation of memory fails cleanly.
        let fw = firmware(2);
        for n in 0..fw.bytes.len() {
            let cut = Ram {
                base: fw.base,
                bytes: fw.bytes[..n].to_vec(),
            };
            assert!(find(&cut, cut.base, b"IORT").is_err());
        }
    }
}
