//! A bounded scanner of ACPI definition blocks (DSDT, SSDT) for the Tegra241 CMDQV devices.
//!
//! This is not an AML interpreter: it walks the declarations firmware writes for a device
//! (ACPI 6.5 §20 "ACPI Machine Language Specification") and reads values only where they are
//! constants in the byte stream:
//!
//! * `DefScope` (0x10) and `DefDevice` (0x5B 0x82) are entered, nested up to
//!   [`MAX_DEPTH`] levels; their `PkgLength` (one to four bytes) bounds everything inside.
//! * `DefName` (0x08) with a constant: `ZeroOp`, `OneOp`, `OnesOp`, `BytePrefix`,
//!   `WordPrefix`, `DWordPrefix`, `QWordPrefix` integers, a `String`, a `Buffer` (a
//!   `ResourceTemplate` compiles to one), a `Package` (kept opaque).
//! * `DefMethod` (0x14) whose whole body is `Return (constant)` (`Method (_STA) { Return
//!   (0x0F) }`) or `Return (NAME)` with `NAME` a buffer the same device declares
//!   (`Method (_CRS) { Return (RBUF) }`); any other method body is not run, and a CMDQV device
//!   holding such a method is refused, since the method could change `_CRS` at run time.
//! * `DefExternal`, `DefAlias`, `DefMutex`, `DefEvent` and `DefOpRegion` with constant offset
//!   and length are stepped over; `DefField`, `DefIndexField`, `DefBankField`, `DefIfElse`,
//!   `DefWhile`, `DefProcessor`, `DefPowerRes` and `DefThermalZone` are skipped whole by their
//!   `PkgLength`.
//!
//! Anything else ends the walk of the enclosing scope, since its length cannot be known without
//! evaluating it. No value is guessed: a region the scanner did not read (a method body, a
//! conditional block, the rest of a scope after an unknown opcode, a package) that contains the
//! bytes `NVDA200C` makes the scan fail with [`DiscoveryError::Unsupported`], so a CMDQV
//! firmware describes in a way this scanner cannot follow is an error, never a silent miss.
//!
//! A device is a Tegra241 CMDQV when its `_HID` or `_CID` is the string `NVDA200C` (Linux
//! `tegra241-cmdqv.c` `TEGRA241_CMDQV_HID`, matched by `acpi_dev_get_first_match_dev`). Its
//! `_UID` pairs it with the IORT SMMUv3 node whose Identifier, printed as an unsigned decimal,
//! equals the `_UID` (Linux `acpi_smmu_dsdt_probe_tegra241_cmdqv`). From `_CRS`, as Linux's
//! `tegra241_cmdqv_find_acpi_resource`: the window is the first valid address space descriptor
//! (`QWordMemory`, `DWordMemory`, `WordMemory`, `ExtendedMemory`; `Memory32Fixed` and
//! `Memory32` are not address space descriptors and are not taken) and the interrupt is the
//! first interrupt of the first interrupt descriptor. A device whose `_STA` says "not present"
//! (bit 0 clear) is left out.

use heapless::Vec;

use super::iort::AcpiCmdqv;
use super::{DiscoveryError, Irq, Trigger};
use crate::ids::PhysAddr;

type Result<T> = core::result::Result<T, DiscoveryError>;

/// `_HID` of the NVIDIA Tegra241 CMDQV.
pub const CMDQV_HID: &[u8; 8] = b"NVDA200C";
/// Deepest nesting of scopes and devices the scanner follows (the definition block is 1).
pub const MAX_DEPTH: usize = 16;
/// Most CMDQV devices one scan collects.
pub const MAX_CMDQVS: usize = super::MAX_SMMUS;

/// Length of the ACPI table header (ACPI 6.5 §5.2.6).
const HEADER_LEN: usize = 36;

/// A checked DSDT or SSDT.
#[derive(Clone, Copy, Debug)]
pub struct DefinitionBlock<'a> {
    table: &'a [u8],
    /// Table revision ≥ 2: integers are 64 bits wide (ACPI 6.5 §5.2.11.1).
    int64: bool,
}

impl<'a> DefinitionBlock<'a> {
    /// Checks the table at the start of `blob`: signature `DSDT` or `SSDT`, length within
    /// `blob`, checksum.
    ///
    /// # Errors
    /// [`DiscoveryError::Malformed`] with the offending offset.
    pub fn new(blob: &'a [u8]) -> Result<Self> {
        let table = super::acpi::checked_table(blob)?;
        if !matches!(table.get(..4), Some(b"DSDT" | b"SSDT")) {
            return Err(DiscoveryError::malformed("not a DSDT or SSDT", 0));
        }
        let revision = table.get(8).copied().unwrap_or(0);
        Ok(Self {
            table,
            int64: revision >= 2,
        })
    }

    /// The table's bytes (header included).
    pub const fn bytes(&self) -> &'a [u8] {
        self.table
    }

    /// Every present `NVDA200C` device, in table order, appended to `out`.
    ///
    /// # Errors
    /// [`DiscoveryError::Malformed`] for broken AML (a package length past its scope, a bad
    /// name, a string without its terminator, a resource template without its end tag);
    /// [`DiscoveryError::Unsupported`] when an `NVDA200C` device, or the bytes `NVDA200C`, sit
    /// where the scanner does not read, or its `_UID`, `_STA` or `_CRS` is not a constant it can
    /// read, or its `_CRS` names no address space memory window or routes its interrupt to
    /// another controller; [`DiscoveryError::TooMany`] beyond [`MAX_DEPTH`] or `N` devices.
    pub fn cmdqvs<const N: usize>(&self, out: &mut Vec<AcpiCmdqv, N>) -> Result<()> {
        Scanner {
            b: self.table,
            int64: self.int64,
        }
        .run(out)
    }
}

/// A value read from the byte stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Data<'a> {
    Int(u64),
    Str(&'a [u8]),
    /// A buffer's initializer bytes and their offset in the table.
    Buffer(&'a [u8], usize),
    Package,
    /// A single relative name segment a method returns (`Return (RBUF)`).
    NameRef([u8; 4]),
}

/// What a device declares about one of the names the scanner reads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Field<'a> {
    #[default]
    Absent,
    Value(Data<'a>),
    /// Declared, but not as a constant (a method that does more than return one); the offset of
    /// the declaration.
    Unreadable(usize),
}

/// Buffers other than `_CRS` a device's names hold, kept for a `_CRS` method that returns one.
const NAMED_BUFFERS: usize = 4;

#[derive(Clone, Copy, Debug, Default)]
struct Device<'a> {
    at: usize,
    hid: Field<'a>,
    cid: Field<'a>,
    uid: Field<'a>,
    crs: Field<'a>,
    sta: Field<'a>,
    /// `Name (RBUF, ResourceTemplate () {...})` and the like, by name.
    buffers: [Option<([u8; 4], Data<'a>)>; NAMED_BUFFERS],
    /// The first method of the device the scanner did not run (it may change `_CRS`).
    opaque_method: Option<usize>,
}

impl<'a> Device<'a> {
    fn record(&mut self, seg: [u8; 4], value: Field<'a>, at: usize) -> Result<()> {
        let slot = match &seg {
            b"_HID" => &mut self.hid,
            b"_CID" => &mut self.cid,
            b"_UID" => &mut self.uid,
            b"_CRS" => &mut self.crs,
            b"_STA" => &mut self.sta,
            _ => {
                match value {
                    Field::Value(d @ Data::Buffer(..)) => {
                        if let Some(free) = self.buffers.iter_mut().find(|b| b.is_none()) {
                            *free = Some((seg, d));
                        }
                    }
                    Field::Unreadable(_) => {
                        self.opaque_method.get_or_insert(at);
                    }
                    _ => {}
                }
                return Ok(());
            }
        };
        if *slot != Field::Absent {
            return Err(DiscoveryError::malformed(
                "a name declared twice in a device",
                at,
            ));
        }
        *slot = value;
        Ok(())
    }

    fn is_cmdqv(&self) -> bool {
        [self.hid, self.cid].contains(&Field::Value(Data::Str(CMDQV_HID)))
    }
}

/// One level of the walk: the bytes left in a scope or device.
#[derive(Clone, Copy, Debug)]
struct Frame<'a> {
    pos: usize,
    end: usize,
    device: Option<Device<'a>>,
    /// The walk of this scope stopped at an opcode it cannot measure.
    cut: bool,
}

/// What one term is.
enum Term<'a> {
    /// A scope or device whose body is `body..end`.
    Open {
        body: usize,
        end: usize,
        device: bool,
    },
    /// A name declaration: its single segment (when it is one, relative) and value.
    Named {
        seg: Option<[u8; 4]>,
        value: Field<'a>,
        next: usize,
    },
    /// Nothing to read; continue at `next`.
    Skip { next: usize },
    /// An opcode whose length the scanner cannot know.
    Unknown,
}

struct Scanner<'a> {
    b: &'a [u8],
    int64: bool,
}

fn malformed(what: &'static str, at: usize) -> DiscoveryError {
    DiscoveryError::malformed(what, at)
}

fn holds_hid(bytes: &[u8]) -> bool {
    bytes.windows(CMDQV_HID.len()).any(|w| w == CMDQV_HID)
}

impl<'a> Scanner<'a> {
    fn byte(&self, at: usize, end: usize) -> Result<u8> {
        if at >= end {
            return Err(malformed("AML ends inside a term", at));
        }
        self.b
            .get(at)
            .copied()
            .ok_or(malformed("AML ends inside a term", at))
    }

    fn slice(&self, from: usize, to: usize) -> Result<&'a [u8]> {
        self.b
            .get(from..to)
            .ok_or(malformed("AML ends inside a term", from))
    }

    fn le(&self, at: usize, n: usize, end: usize) -> Result<(u64, usize)> {
        let to = at.checked_add(n).filter(|&t| t <= end);
        let bytes = to
            .and_then(|t| self.b.get(at..t))
            .ok_or(malformed("AML ends inside an integer", at))?;
        let v = bytes
            .iter()
            .rev()
            .fold(0u64, |v, &x| (v << 8) | u64::from(x));
        Ok((v, at + n))
    }

    /// Fails when `from..to` holds the CMDQV `_HID` bytes: a region the scanner skips unread.
    fn skip_checked(&self, from: usize, to: usize) -> Result<()> {
        if holds_hid(self.b.get(from..to).unwrap_or(&[])) {
            return Err(DiscoveryError::Unsupported(
                "NVDA200C in AML the scanner does not read (a method, a conditional block, a \
                 package or a term of unknown length)",
            ));
        }
        Ok(())
    }

    /// `PkgLength` at `at` (ACPI 6.5 §20.2.4): the end of the package it measures, which starts
    /// at `at`, and where the bytes after the encoding begin.
    fn pkg_length(&self, at: usize, end: usize) -> Result<(usize, usize)> {
        let lead = self.byte(at, end)?;
        let extra = usize::from(lead >> 6);
        let mut len = if extra == 0 {
            usize::from(lead & 0x3f)
        } else {
            usize::from(lead & 0x0f)
        };
        for i in 0..extra {
            len |= usize::from(self.byte(at + 1 + i, end)?) << (4 + 8 * i);
        }
        let body = at + 1 + extra;
        let pkg_end = at
            .checked_add(len)
            .filter(|&e| e >= body && e <= end)
            .ok_or(malformed("package length past its scope", at))?;
        Ok((pkg_end, body))
    }

    /// A `NameString` (§20.2.2): its single segment when it is one relative segment, and the
    /// offset after it.
    fn name_string(&self, at: usize, end: usize) -> Result<(Option<[u8; 4]>, usize)> {
        let mut p = at;
        let mut prefixed = false;
        match self.byte(p, end)? {
            b'\\' => {
                prefixed = true;
                p += 1;
            }
            b'^' => {
                while self.byte(p, end)? == b'^' {
                    prefixed = true;
                    p += 1;
                }
            }
            _ => {}
        }
        let segs = match self.byte(p, end)? {
            0x00 => {
                p += 1;
                0
            }
            0x2e => {
                p += 1;
                2
            }
            0x2f => {
                let n = self.byte(p + 1, end)?;
                p += 2;
                usize::from(n)
            }
            _ => 1,
        };
        let mut last = None;
        for _ in 0..segs {
            let seg = self.slice(p, p + 4)?;
            if p + 4 > end {
                return Err(malformed("AML ends inside a name", p));
            }
            let ok = seg.iter().enumerate().all(|(i, &c)| {
                c.is_ascii_uppercase() || c == b'_' || (i > 0 && c.is_ascii_digit())
            });
            let mut s = [0u8; 4];
            s.copy_from_slice(seg);
            if !ok {
                return Err(malformed("bad name segment", p));
            }
            last = Some(s);
            p += 4;
        }
        Ok(((segs == 1 && !prefixed).then_some(last).flatten(), p))
    }

    /// An integer constant (§20.2.3 `ConstObj`, `ByteConst` ... `QWordConst`): `None` for an
    /// opcode that is not one. Integers are 32 bits wide in a revision 1 table.
    fn integer(&self, at: usize, end: usize) -> Result<Option<(u64, usize)>> {
        let p = at + 1;
        let (v, next) = match self.byte(at, end)? {
            0x00 => (0, p),
            0x01 => (1, p),
            0xff => (u64::MAX, p),
            0x0a => self.le(p, 1, end)?,
            0x0b => self.le(p, 2, end)?,
            0x0c => self.le(p, 4, end)?,
            0x0e => self.le(p, 8, end)?,
            _ => return Ok(None),
        };
        Ok(Some((if self.int64 { v } else { v & 0xffff_ffff }, next)))
    }

    /// A constant data object (§20.2.3 `ComputationalData`, `DefPackage`): `None` for an
    /// opcode that is not one.
    fn data(&self, at: usize, end: usize) -> Result<Option<(Data<'a>, usize)>> {
        if let Some((v, next)) = self.integer(at, end)? {
            return Ok(Some((Data::Int(v), next)));
        }
        let p = at + 1;
        Ok(Some(match self.byte(at, end)? {
            0x0d => {
                let rest = self.slice(p, end)?;
                let len = rest
                    .iter()
                    .position(|&c| c == 0)
                    .ok_or(malformed("string without its terminator", at))?;
                let s = rest.get(..len).unwrap_or(&[]);
                if s.iter().any(|&c| c > 0x7f) {
                    return Err(malformed("string with a non-ASCII character", at));
                }
                (Data::Str(s), p + len + 1)
            }
            0x11 => {
                let (pkg_end, body) = self.pkg_length(p, end)?;
                let Some((size, init)) = self.integer(body, pkg_end)? else {
                    return Ok(None);
                };
                let bytes = self.slice(init, pkg_end)?;
                if (bytes.len() as u64) > size {
                    return Err(malformed("buffer initializer longer than its size", at));
                }
                (Data::Buffer(bytes, init), pkg_end)
            }
            0x12 | 0x13 => {
                let (pkg_end, _) = self.pkg_length(p, end)?;
                self.skip_checked(at, pkg_end)?;
                (Data::Package, pkg_end)
            }
            _ => return Ok(None),
        }))
    }

    /// A method body that is exactly `Return (constant)` or `Return (NAME)` with `NAME` one
    /// relative segment.
    fn trivial_return(&self, body: usize, end: usize) -> Result<Option<Data<'a>>> {
        if body >= end || self.byte(body, end)? != 0xa4 {
            return Ok(None);
        }
        let value = body + 1;
        if let Some((d, next)) = self.data(value, end)? {
            return Ok((next == end).then_some(d));
        }
        let first = self.byte(value, end)?;
        if first.is_ascii_uppercase() || first == b'_' {
            let (seg, next) = self.name_string(value, end)?;
            return Ok(seg.filter(|_| next == end).map(Data::NameRef));
        }
        Ok(None)
    }

    fn term(&self, at: usize, end: usize) -> Result<Term<'a>> {
        let p = at + 1;
        Ok(match self.byte(at, end)? {
            // DefScope
            0x10 => {
                let (pkg_end, body) = self.pkg_length(p, end)?;
                let (_, body) = self.name_string(body, pkg_end)?;
                Term::Open {
                    body,
                    end: pkg_end,
                    device: false,
                }
            }
            // DefName
            0x08 => {
                let (seg, q) = self.name_string(p, end)?;
                match self.data(q, end)? {
                    Some((d, next)) => Term::Named {
                        seg,
                        value: Field::Value(d),
                        next,
                    },
                    None => Term::Unknown,
                }
            }
            // DefMethod
            0x14 => {
                let (pkg_end, q) = self.pkg_length(p, end)?;
                let (seg, q) = self.name_string(q, pkg_end)?;
                let body = q + 1; // MethodFlags
                if body > pkg_end {
                    return Err(malformed("method without its flags", q));
                }
                let value = match self.trivial_return(body, pkg_end)? {
                    Some(d) => Field::Value(d),
                    None => {
                        self.skip_checked(body, pkg_end)?;
                        Field::Unreadable(at)
                    }
                };
                Term::Named {
                    seg,
                    value,
                    next: pkg_end,
                }
            }
            // DefExternal: NameString ObjectType ArgumentCount
            0x15 => {
                let (_, q) = self.name_string(p, end)?;
                Term::Skip {
                    next: self.le(q, 2, end)?.1,
                }
            }
            // DefAlias: NameString NameString
            0x06 => {
                let (_, q) = self.name_string(p, end)?;
                let (_, q) = self.name_string(q, end)?;
                Term::Skip { next: q }
            }
            // DefIfElse, DefElse, DefWhile
            0xa0..=0xa2 => {
                let (pkg_end, _) = self.pkg_length(p, end)?;
                self.skip_checked(at, pkg_end)?;
                Term::Skip { next: pkg_end }
            }
            0x5b => self.ext_term(at, end)?,
            _ => Term::Unknown,
        })
    }

    fn ext_term(&self, at: usize, end: usize) -> Result<Term<'a>> {
        let p = at + 2;
        Ok(match self.byte(at + 1, end)? {
            // DefDevice
            0x82 => {
                let (pkg_end, body) = self.pkg_length(p, end)?;
                let (_, body) = self.name_string(body, pkg_end)?;
                Term::Open {
                    body,
                    end: pkg_end,
                    device: true,
                }
            }
            // DefField, DefProcessor, DefPowerRes, DefThermalZone, DefIndexField, DefBankField
            0x81 | 0x83..=0x87 => {
                let (pkg_end, _) = self.pkg_length(p, end)?;
                self.skip_checked(at, pkg_end)?;
                Term::Skip { next: pkg_end }
            }
            // DefOpRegion: NameString RegionSpace RegionOffset RegionLen, both constants here.
            0x80 => {
                let (_, q) = self.name_string(p, end)?;
                let q = q + 1;
                let Some((_, q)) = self.integer(q, end)? else {
                    return Ok(Term::Unknown);
                };
                let Some((_, q)) = self.integer(q, end)? else {
                    return Ok(Term::Unknown);
                };
                Term::Skip { next: q }
            }
            // DefMutex: NameString SyncFlags
            0x01 => {
                let (_, q) = self.name_string(p, end)?;
                Term::Skip {
                    next: self.le(q, 1, end)?.1,
                }
            }
            // DefEvent: NameString
            0x02 => Term::Skip {
                next: self.name_string(p, end)?.1,
            },
            _ => Term::Unknown,
        })
    }

    fn run<const N: usize>(&self, out: &mut Vec<AcpiCmdqv, N>) -> Result<()> {
        let mut stack: Vec<Frame<'a>, MAX_DEPTH> = Vec::new();
        let root = Frame {
            pos: HEADER_LEN,
            end: self.b.len(),
            device: None,
            cut: false,
        };
        stack
            .push(root)
            .map_err(|_| DiscoveryError::TooMany("AML nesting levels"))?;
        loop {
            let Some(top) = stack.last_mut() else {
                return Ok(());
            };
            if top.pos >= top.end {
                let done = *top;
                stack.pop();
                if let Some(dev) = done.device {
                    self.finish(&dev, done.cut, out)?;
                }
                continue;
            }
            let (at, end) = (top.pos, top.end);
            match self.term(at, end)? {
                Term::Open {
                    body,
                    end: e,
                    device,
                } => {
                    top.pos = e;
                    let frame = Frame {
                        pos: body,
                        end: e,
                        device: device.then(|| Device {
                            at,
                            ..Device::default()
                        }),
                        cut: false,
                    };
                    stack
                        .push(frame)
                        .map_err(|_| DiscoveryError::TooMany("AML nesting levels"))?;
                }
                Term::Named { seg, value, next } => {
                    top.pos = next;
                    if let (Some(dev), Some(seg)) = (top.device.as_mut(), seg) {
                        dev.record(seg, value, at)?;
                    }
                }
                Term::Skip { next } => top.pos = next,
                Term::Unknown => {
                    self.skip_checked(at, end)?;
                    top.cut = true;
                    top.pos = end;
                }
            }
        }
    }

    fn finish<const N: usize>(
        &self,
        dev: &Device<'a>,
        cut: bool,
        out: &mut Vec<AcpiCmdqv, N>,
    ) -> Result<()> {
        if !dev.is_cmdqv() {
            return Ok(());
        }
        let unsupported = DiscoveryError::Unsupported;
        if cut {
            return Err(unsupported(
                "NVDA200C device with a term of unknown length in its body",
            ));
        }
        if dev.opaque_method.is_some() {
            return Err(unsupported(
                "NVDA200C device with a method the scanner does not run (it may change _CRS)",
            ));
        }
        match dev.sta {
            Field::Absent => {}
            Field::Value(Data::Int(sta)) if sta & 1 == 0 => return Ok(()),
            Field::Value(Data::Int(_)) => {}
            Field::Value(_) => return Err(malformed("NVDA200C _STA not an integer", dev.at)),
            Field::Unreadable(_) => {
                return Err(unsupported(
                    "NVDA200C _STA is a method that does more than return",
                ));
            }
        }
        let uid = match dev.uid {
            Field::Value(Data::Int(v)) => {
                u32::try_from(v).map_err(|_| unsupported("NVDA200C _UID wider than 32 bits"))?
            }
            Field::Value(Data::Str(s)) => decimal_u32(s).ok_or(unsupported(
                "NVDA200C _UID string is not a decimal IORT identifier",
            ))?,
            Field::Absent => return Err(malformed("NVDA200C device without _UID", dev.at)),
            Field::Value(_) => return Err(malformed("NVDA200C _UID not an integer", dev.at)),
            Field::Unreadable(_) => {
                return Err(unsupported(
                    "NVDA200C _UID is a method that does more than return",
                ));
            }
        };
        let crs = match dev.crs {
            Field::Value(Data::NameRef(name)) => Field::Value(
                dev.buffers
                    .iter()
                    .flatten()
                    .find(|(n, _)| *n == name)
                    .map(|(_, d)| *d)
                    .ok_or(unsupported(
                        "NVDA200C _CRS returns a name the device does not hold as a buffer",
                    ))?,
            ),
            other => other,
        };
        let (crs, crs_at) = match crs {
            Field::Value(Data::Buffer(b, at)) => (b, at),
            Field::Absent => return Err(malformed("NVDA200C device without _CRS", dev.at)),
            Field::Value(_) => return Err(malformed("NVDA200C _CRS not a buffer", dev.at)),
            Field::Unreadable(_) => {
                return Err(unsupported(
                    "NVDA200C _CRS is a method that does more than return",
                ));
            }
        };
        let (window, irq) = cmdqv_resources(crs, crs_at)?;
        if out.iter().any(|c| c.uid == uid) {
            return Err(malformed("two NVDA200C devices with one _UID", dev.at));
        }
        out.push(AcpiCmdqv {
            uid,
            base: PhysAddr(window.0),
            size: window.1,
            irq,
        })
        .map_err(|_| DiscoveryError::TooMany("NVDA200C devices"))
    }
}

/// `s` as Linux prints a `u32` with `%u`: decimal digits, no sign, no leading zero.
fn decimal_u32(s: &[u8]) -> Option<u32> {
    if s.is_empty() || (s.len() > 1 && s.first() == Some(&b'0')) {
        return None;
    }
    s.iter().try_fold(0u32, |v, &c| {
        c.is_ascii_digit().then_some(())?;
        v.checked_mul(10)?.checked_add(u32::from(c - b'0'))
    })
}

/// An address space descriptor's resource type (ACPI 6.5 §6.4.3.5.1, byte 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Space {
    /// 0: memory range.
    Memory,
    /// 1: I/O range.
    Io,
    /// 2: bus number range.
    BusNumber,
    /// Another value (3-191 reserved, 192-255 hardware vendor defined).
    Other(u8),
}

/// One resource descriptor of a resource template (ACPI 6.5 §6.4), as far as this module
/// decodes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Resource {
    /// `Memory32Fixed` (§6.4.3.4, large item 0x06): base and length.
    Memory32Fixed {
        /// Base address.
        base: u32,
        /// Length in bytes.
        len: u32,
    },
    /// `Word`/`DWord`/`QWord`/`Extended` address space descriptor (§6.4.3.5; large items
    /// 0x08, 0x07, 0x0A, 0x0B), widened to 64 bits.
    AddressSpace {
        /// Resource type.
        space: Space,
        /// General flags bit 0: the device consumes (not produces) the range.
        consumer: bool,
        /// `_MIN`.
        min: u64,
        /// `_MAX`.
        max: u64,
        /// `_TRA`.
        translation: u64,
        /// `_LEN`.
        len: u64,
    },
    /// Extended interrupt descriptor (§6.4.3.6, large item 0x09).
    Interrupt {
        /// The first interrupt number (a GSIV), if the table holds one.
        first: Option<u32>,
        /// How many interrupts the table holds.
        count: u8,
        /// Edge/level and polarity.
        trigger: Trigger,
        /// A resource source names another interrupt controller than the GIC.
        has_source: bool,
    },
    /// The 16-bit ISA IRQ mask descriptor (§6.4.2.1, small item 0x04).
    LegacyIrq,
    /// Any other descriptor: its item name (small: bits 6-3; large: 0x80 | bits 6-0).
    Other(u8),
}

/// The descriptors of a resource template, up to its end tag (§6.4.2.9).
#[derive(Clone, Debug)]
pub struct Resources<'a> {
    buf: &'a [u8],
    pos: usize,
    /// Offset of `buf` in its table, for error offsets.
    base: usize,
    done: bool,
}

impl<'a> Resources<'a> {
    /// The descriptors in `buf` (a `_CRS` buffer's bytes) found at offset `base` of its table.
    pub const fn new(buf: &'a [u8], base: usize) -> Self {
        Self {
            buf,
            pos: 0,
            base,
            done: false,
        }
    }

    fn read_le(&self, at: usize, n: usize) -> Option<u64> {
        let b = self.buf.get(at..at.checked_add(n)?)?;
        Some(b.iter().rev().fold(0u64, |v, &x| (v << 8) | u64::from(x)))
    }

    fn next_resource(&mut self) -> Result<Option<Resource>> {
        let at = self.pos;
        let err = |what| malformed(what, self.base.saturating_add(at));
        let tag = *self
            .buf
            .get(at)
            .ok_or(err("resource template without its end tag"))?;
        if tag & 0x80 == 0 {
            let len = usize::from(tag & 0x07);
            let item = (tag >> 3) & 0x0f;
            let next = at + 1 + len;
            if next > self.buf.len() {
                return Err(err("resource descriptor past its buffer"));
            }
            self.pos = next;
            return Ok(match item {
                0x0f => {
                    self.done = true;
                    None
                }
                0x04 => Some(Resource::LegacyIrq),
                other => Some(Resource::Other(other)),
            });
        }
        let len = usize::try_from(
            self.read_le(at + 1, 2)
                .ok_or(err("resource descriptor past its buffer"))?,
        )
        .unwrap_or(usize::MAX);
        let d = at + 3;
        let next = d
            .checked_add(len)
            .filter(|&n| n <= self.buf.len())
            .ok_or(err("resource descriptor past its buffer"))?;
        self.pos = next;
        let item = tag & 0x7f;
        let short = err("resource descriptor shorter than its kind");
        let field = |off: usize, n: usize| -> Result<u64> {
            if off + n > len {
                return Err(short);
            }
            self.read_le(d + off, n).ok_or(short)
        };
        Ok(Some(match item {
            0x06 => Resource::Memory32Fixed {
                base: field(1, 4)? as u32,
                len: field(5, 4)? as u32,
            },
            0x07 | 0x08 | 0x0a | 0x0b => {
                // Field offsets from the resource type byte (descriptor byte 3).
                let (w, at_gran) = match item {
                    0x08 => (2, 3),
                    0x07 => (4, 3),
                    0x0a => (8, 3),
                    _ => (8, 5),
                };
                let min_at = at_gran + w;
                Resource::AddressSpace {
                    space: match field(0, 1)? as u8 {
                        0 => Space::Memory,
                        1 => Space::Io,
                        2 => Space::BusNumber,
                        other => Space::Other(other),
                    },
                    consumer: field(1, 1)? & 1 != 0,
                    min: field(min_at, w)?,
                    max: field(min_at + w, w)?,
                    translation: field(min_at + 2 * w, w)?,
                    len: field(min_at + 3 * w, w)?,
                }
            }
            0x09 => {
                let flags = field(0, 1)?;
                let count = field(1, 1)? as u8;
                let ints = 2 + 4 * usize::from(count);
                if ints > len {
                    return Err(short);
                }
                Resource::Interrupt {
                    first: if count > 0 {
                        Some(field(2, 4)? as u32)
                    } else {
                        None
                    },
                    count,
                    trigger: match (flags & 0b10 != 0, flags & 0b100 != 0) {
                        (true, false) => Trigger::EdgeRising,
                        (true, true) => Trigger::EdgeFalling,
                        (false, false) => Trigger::LevelHigh,
                        (false, true) => Trigger::LevelLow,
                    },
                    has_source: len > ints,
                }
            }
            other => Resource::Other(0x80 | other),
        }))
    }
}

impl Iterator for Resources<'_> {
    type Item = Result<Resource>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_resource() {
            Ok(Some(r)) => Some(Ok(r)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}

/// The CMDQV's window (base, size) and interrupt from its `_CRS`, chosen as Linux does.
fn cmdqv_resources(crs: &[u8], at: usize) -> Result<((u64, u64), Option<Irq>)> {
    let mut window = None;
    let mut irq = None;
    for r in Resources::new(crs, at) {
        match r? {
            Resource::AddressSpace {
                space,
                consumer,
                min,
                max,
                translation,
                len,
            } if window.is_none() => {
                // Linux `acpi_decode_space`: [min, max] (plus _TRA for a producer), valid only
                // with a non-zero _LEN and min <= max; an invalid one is passed over.
                if len == 0 || min > max {
                    continue;
                }
                if space != Space::Memory {
                    return Err(DiscoveryError::Unsupported(
                        "NVDA200C first address space descriptor is not memory",
                    ));
                }
                let offset = if consumer { 0 } else { translation };
                let base = min
                    .checked_add(offset)
                    .ok_or(malformed("NVDA200C window past 2^64", at))?;
                let size = (max - min)
                    .checked_add(1)
                    .ok_or(malformed("NVDA200C window past 2^64", at))?;
                window = Some((base, size));
            }
            Resource::Interrupt {
                first: Some(intid),
                trigger,
                has_source,
                ..
            } if irq.is_none() => {
                if has_source {
                    return Err(DiscoveryError::Unsupported(
                        "NVDA200C interrupt routed to a controller other than the GIC",
                    ));
                }
                irq = Some(Irq { intid, trigger });
            }
            Resource::LegacyIrq if irq.is_none() => {
                return Err(DiscoveryError::Unsupported(
                    "NVDA200C interrupt as a legacy IRQ mask descriptor",
                ));
            }
            _ => {}
        }
    }
    let window = window.ok_or(DiscoveryError::Unsupported(
        "NVDA200C _CRS without an address space memory descriptor",
    ))?;
    Ok((window, irq))
}

#[cfg(test)]
mod tests;
