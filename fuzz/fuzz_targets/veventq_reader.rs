//! The vEVENTQ reader fed by arbitrary produce/read sequences, compared byte for byte with a
//! reference model of Linux's vEVENTQ (iommufd.md §6): sequence numbers mod 2^31, drops when
//! `depth` events are unread, one LOST_EVENTS marker at the tail, whole records only.
#![no_main]

use std::collections::VecDeque;

use arm_smmuv3::iommufd::{VeventArmSmmuv3, VeventHeader};
use arm_smmuv3::viommu::veventq::VeventQueue;
use libfuzzer_sys::fuzz_target;

struct Model {
    depth: usize,
    next: u32,
    q: VecDeque<(u32, [u64; 4])>,
    lost: Option<u32>,
}

impl Model {
    fn report(&mut self, evt: [u64; 4]) {
        let seq = self.next;
        self.next = (self.next + 1) & 0x7fff_ffff;
        if self.q.len() < self.depth {
            self.lost = None;
            self.q.push_back((seq, evt));
        } else {
            self.lost = Some(seq);
        }
    }

    fn read(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some((seq, evt)) = self.q.front() {
            if len - out.len() < 40 {
                return out;
            }
            out.extend_from_slice(
                &VeventHeader {
                    flags: 0,
                    sequence: *seq,
                }
                .to_bytes(),
            );
            for w in evt {
                out.extend_from_slice(&w.to_le_bytes());
            }
            self.q.pop_front();
        }
        if let Some(seq) = self.lost {
            if len - out.len() >= 8 {
                out.extend_from_slice(
                    &VeventHeader {
                        flags: 1,
                        sequence: seq,
                    }
                    .to_bytes(),
                );
                self.lost = None;
            }
        }
        out
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&d, ops)) = data.split_first() else {
        return;
    };
    let depth = usize::from(d % 8) + 1;
    let q: Box<VeventQueue<VeventArmSmmuv3, 8>> = Box::new(VeventQueue::new(depth as u32).unwrap());
    let mut m = Model {
        depth,
        next: 0,
        q: VecDeque::new(),
        lost: None,
    };
    let mut buf = vec![0u8; 8 * 40 + 16];
    for (i, &op) in ops.iter().enumerate() {
        if op & 0x80 == 0 {
            // Produce one event; payload derived from the position.
            let w = u64::from(op) | ((i as u64) << 8);
            let evt = [w, !w, w.rotate_left(17), w ^ 0x5555];
            q.report(&VeventArmSmmuv3 { evt });
            m.report(evt);
        } else {
            // Read into a buffer of 0..=335 bytes.
            let len = usize::from(op & 0x7f) * 3 % buf.len();
            let n = q.read(&mut buf[..len]).unwrap();
            assert!(n <= len);
            let want = m.read(len);
            assert_eq!(
                &buf[..n],
                &want[..],
                "read of {len} bytes differs from Linux's"
            );
        }
        assert!(q.len() as usize <= depth);
        assert_eq!(q.is_readable(), !m.q.is_empty() || m.lost.is_some());
    }
});
