//! Hand-assembled AML for the encodings `iasl` never emits (non-minimal package lengths, every
//! integer prefix) and for the scanner's bounds.

#![allow(clippy::indexing_slicing, clippy::unwrap_used)]

use super::*;

/// `PkgLength` for `content` bytes that follow it, in `n` bytes (1-4; 2 when 1 cannot hold it).
fn pkg(content: usize, n: usize) -> std::vec::Vec<u8> {
    let n = if n == 1 && content + 1 >= 0x40 { 2 } else { n };
    let total = content + n;
    match n {
        1 => vec![total as u8],
        _ => {
            let mut v = vec![(((n - 1) as u8) << 6) | (total & 0x0f) as u8];
            for i in 0..n - 1 {
                v.push((total >> (4 + 8 * i)) as u8);
            }
            assert!(total >> (4 + 8 * (n - 1)) == 0);
            v
        }
    }
}

fn with_pkg(op: &[u8], n: usize, content: &[u8]) -> std::vec::Vec<u8> {
    let mut v = op.to_vec();
    v.extend(pkg(content.len(), n));
    v.extend_from_slice(content);
    v
}

fn name(seg: &[u8; 4], value: &[u8]) -> std::vec::Vec<u8> {
    let mut v = vec![0x08];
    v.extend_from_slice(seg);
    v.extend_from_slice(value);
    v
}

fn string(s: &[u8]) -> std::vec::Vec<u8> {
    let mut v = vec![0x0d];
    v.extend_from_slice(s);
    v.push(0);
    v
}

/// `ResourceTemplate () { QWordMemory (consumer, min .. min + len - 1) ExtendedInterrupt }`.
fn crs(min: u64, len: u64, intid: u32, n: usize) -> std::vec::Vec<u8> {
    let mut rt = vec![0x8a, 43, 0, 0, 0x0d, 0x01];
    for v in [0, min, min + len - 1, 0, len] {
        rt.extend_from_slice(&v.to_le_bytes());
    }
    rt.extend_from_slice(&[0x89, 6, 0, 0x01, 1]); // consumer, level, active-high
    rt.extend_from_slice(&intid.to_le_bytes());
    rt.extend_from_slice(&[0x79, 0]);
    let mut body = vec![0x0a, rt.len() as u8];
    body.extend(rt);
    name(b"_CRS", &with_pkg(&[0x11], n, &body))
}

fn device(seg: &[u8; 4], uid: &[u8], n: usize) -> std::vec::Vec<u8> {
    let mut content = seg.to_vec();
    content.extend(name(b"_HID", &string(CMDQV_HID)));
    content.extend(name(b"_UID", uid));
    content.extend(crs(0x1120_0000, 0x83_0000, 0x140, n));
    with_pkg(&[0x5b, 0x82], n, &content)
}

fn table(revision: u8, body: &[u8]) -> std::vec::Vec<u8> {
    let mut t = vec![0u8; HEADER_LEN];
    t[..4].copy_from_slice(b"SSDT");
    t[8] = revision;
    t.extend_from_slice(body);
    let len = t.len() as u32;
    t[4..8].copy_from_slice(&len.to_le_bytes());
    fix(&mut t);
    t
}

fn fix(t: &mut [u8]) {
    t[9] = 0;
    let sum = t.iter().fold(0u8, |a, x| a.wrapping_add(*x));
    t[9] = sum.wrapping_neg();
}

fn scan(t: &[u8]) -> Result<Vec<AcpiCmdqv, MAX_CMDQVS>> {
    let mut out = Vec::new();
    DefinitionBlock::new(t)?.cmdqvs(&mut out)?;
    Ok(out)
}

fn uid_of(t: &[u8]) -> Result<u32> {
    let found = scan(t)?;
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].base, PhysAddr(0x1120_0000));
    assert_eq!(found[0].size, 0x83_0000);
    assert_eq!(
        found[0].irq,
        Some(Irq {
            intid: 0x140,
            trigger: Trigger::LevelHigh
        })
    );
    Ok(found[0].uid)
}

#[test]
fn every_integer_encoding_of_uid() {
    let cases: [(&[u8], u32); 8] = [
        (&[0x00], 0),
        (&[0x01], 1),
        (&[0x0a, 0x05], 5),
        (&[0x0b, 0x34, 0x12], 0x1234),
        (&[0x0c, 0x78, 0x56, 0x34, 0x12], 0x1234_5678),
        (&[0x0e, 7, 0, 0, 0, 0, 0, 0, 0], 7),
        (&string(b"42"), 42),
        (&string(b"4294967295"), u32::MAX),
    ];
    for (enc, want) in cases {
        assert_eq!(uid_of(&table(2, &device(b"CQ00", enc, 1))), Ok(want));
    }
    // OnesOp is 32 bits wide in a revision 1 table, 64 in revision 2.
    assert_eq!(
        uid_of(&table(1, &device(b"CQ00", &[0xff], 1))),
        Ok(u32::MAX)
    );
    assert!(matches!(
        scan(&table(2, &device(b"CQ00", &[0xff], 1))),
        Err(DiscoveryError::Unsupported(_))
    ));
    // A QWordPrefix value above 32 bits is cut to 32 in revision 1.
    let wide = [0x0e, 9, 0, 0, 0, 1, 0, 0, 0];
    assert_eq!(uid_of(&table(1, &device(b"CQ00", &wide, 1))), Ok(9));
    assert!(scan(&table(2, &device(b"CQ00", &wide, 1))).is_err());
    for bad in [&b"042"[..], b"", b"-1", b"4294967296", b"1a"] {
        assert!(matches!(
            scan(&table(2, &device(b"CQ00", &string(bad), 1))),
            Err(DiscoveryError::Unsupported(_))
        ));
    }
}

#[test]
fn every_pkg_length_size_reads_the_same() {
    // One byte holds at most 63, which the device and its buffer exceed: they take two.
    for n in 1..=4 {
        let dev = device(b"CQ00", &[0x0a, 3], n);
        let mut scope = b"_SB_".to_vec();
        scope.extend(dev);
        let t = table(2, &with_pkg(&[0x10], n, &scope));
        assert_eq!(uid_of(&t), Ok(3), "PkgLength of {n} bytes");
    }
}

#[test]
fn a_package_length_past_its_scope_is_malformed() {
    let mut dev = device(b"CQ00", &[0x01], 2);
    // Device's PkgLength (2 bytes after the 0x5b 0x82 opcode) one byte longer than the table.
    let len = dev.len() - 2 + 1;
    dev[2] = 0x40 | (len & 0x0f) as u8;
    dev[3] = (len >> 4) as u8;
    assert!(matches!(
        scan(&table(2, &dev)),
        Err(DiscoveryError::Malformed { .. })
    ));
}

#[test]
fn every_truncation_and_byte_flip_is_an_error_or_a_subset() {
    let mut body = device(b"CQ00", &[0x00], 2);
    body.extend(device(b"CQ01", &[0x01], 2));
    let whole = table(2, &body);
    assert_eq!(scan(&whole).map(|v| v.len()), Ok(2));
    for cut in HEADER_LEN..whole.len() {
        let mut t = whole[..cut].to_vec();
        t[4..8].copy_from_slice(&(cut as u32).to_le_bytes());
        fix(&mut t);
        if let Ok(found) = scan(&t) {
            assert!(found.len() < 2, "cut at {cut}");
        }
    }
    for at in HEADER_LEN..whole.len() {
        for x in [0x01, 0x80, 0xff] {
            let mut t = whole.clone();
            t[at] ^= x;
            fix(&mut t);
            let _ = scan(&t);
        }
    }
}

#[test]
fn nesting_deeper_than_the_bound_is_too_many() {
    let mut inner = device(b"CQ00", &[0x00], 3);
    for _ in 0..MAX_DEPTH {
        let mut scope = b"SCOP".to_vec();
        scope.extend(inner);
        inner = with_pkg(&[0x10], 3, &scope);
    }
    assert!(matches!(
        scan(&table(2, &inner)),
        Err(DiscoveryError::TooMany(_))
    ));
}

#[test]
fn an_unknown_term_ends_its_scope_and_hides_no_cmdqv() {
    // StoreOp at the root: its length is unknown, so the walk of the root stops there.
    let mut after = device(b"CQ00", &[0x00], 2);
    after.extend([0x70, 0x01, 0x60]);
    assert_eq!(scan(&table(2, &after)).map(|v| v.len()), Ok(1));
    let mut before = vec![0x70, 0x01, 0x60];
    before.extend(device(b"CQ00", &[0x00], 2));
    assert!(matches!(
        scan(&table(2, &before)),
        Err(DiscoveryError::Unsupported(_))
    ));
    // Inside the CMDQV device itself: incomplete, so an error even with every name read.
    let mut content = b"CQ00".to_vec();
    content.extend(name(b"_HID", &string(CMDQV_HID)));
    content.extend(name(b"_UID", &[0x00]));
    content.extend(crs(0x1120_0000, 0x83_0000, 0x140, 2));
    content.extend([0x70, 0x01, 0x60]);
    assert!(matches!(
        scan(&table(2, &with_pkg(&[0x5b, 0x82], 2, &content))),
        Err(DiscoveryError::Unsupported(_))
    ));
}

#[test]
fn decimal_uid_is_printed_u32() {
    assert_eq!(decimal_u32(b"0"), Some(0));
    assert_eq!(decimal_u32(b"10"), Some(10));
    assert_eq!(decimal_u32(b"00"), None);
    assert_eq!(decimal_u32(b"+1"), None);
    assert_eq!(decimal_u32(b"99999999999"), None);
}

#[test]
fn a_resource_template_without_end_tag_is_malformed() {
    let r: std::vec::Vec<_> =
        Resources::new(&[0x86, 9, 0, 1, 0, 0, 0, 0, 0, 0x10, 0, 0], 0).collect();
    assert_eq!(r.len(), 2);
    assert!(matches!(
        r[0],
        Ok(Resource::Memory32Fixed {
            base: 0,
            len: 0x1000
        })
    ));
    assert!(matches!(r[1], Err(DiscoveryError::Malformed { .. })));
    // A descriptor whose length runs past the buffer.
    let r: std::vec::Vec<_> = Resources::new(&[0x8a, 0xff, 0xff, 0], 0).collect();
    assert!(matches!(r[..], [Err(DiscoveryError::Malformed { .. })]));
}

/// A QWord address space descriptor: `consumer`, [min, max], `_TRA`, `_LEN`.
fn qword(consumer: bool, min: u64, max: u64, tra: u64, len: u64) -> std::vec::Vec<u8> {
    let mut d = vec![0x8a, 43, 0, 0, 0x0c | u8::from(consumer), 0x01];
    for v in [0, min, max, tra, len] {
        d.extend_from_slice(&v.to_le_bytes());
    }
    d
}

#[test]
fn window_follows_linux_decode_space() {
    let end = [0x79u8, 0];
    // A consumer's _TRA is ignored; the size is max - min + 1.
    let mut b = qword(true, 0x1000, 0x1fff, 0x5000_0000, 0x1000);
    b.extend(end);
    assert_eq!(cmdqv_resources(&b, 0), Ok(((0x1000, 0x1000), None)));
    // A producer's _TRA is added.
    let mut b = qword(false, 0x1000, 0x1fff, 0x5000_0000, 0x1000);
    b.extend(end);
    assert_eq!(cmdqv_resources(&b, 0), Ok(((0x5000_1000, 0x1000), None)));
    // An invalid one (_LEN 0, or min > max) is passed over for the next.
    let mut b = qword(true, 0x1000, 0x1fff, 0, 0);
    b.extend(qword(true, 0x3000, 0x1fff, 0, 0x1000));
    b.extend(qword(true, 0x8000, 0x8fff, 0, 0x1000));
    b.extend(end);
    assert_eq!(cmdqv_resources(&b, 0), Ok(((0x8000, 0x1000), None)));
    // An I/O range first is not a window.
    let mut b = qword(true, 0x1000, 0x1fff, 0, 0x1000);
    b[3] = 1;
    b.extend(end);
    assert!(matches!(
        cmdqv_resources(&b, 0),
        Err(DiscoveryError::Unsupported(_))
    ));
    // A window reaching 2^64 is malformed, not wrapped.
    let mut b = qword(true, 0, u64::MAX, 0, 1);
    b.extend(end);
    assert!(matches!(
        cmdqv_resources(&b, 0),
        Err(DiscoveryError::Malformed { .. })
    ));
}
