//! IPv4 and IPv6 fragment reassembly (RFC 791 §3.2, RFC 8200 §4.5) with bounded memory and a
//! timeout.
//!
//! Policy (documented in docs/COMPATIBILITY.md):
//! * a datagram is keyed by (source, destination, protocol, identification);
//! * an exact duplicate fragment (same offset, same bytes) is ignored;
//! * any other overlap discards the whole datagram (RFC 5722 for IPv6, applied to IPv4 too:
//!   overlapping fragments are an evasion technique, never what a SIP stack sends);
//! * a datagram is discarded when its fragments have not all arrived after the timeout, or when
//!   a fragment contradicts the others (a second different end, bytes beyond the end, a
//!   non-last fragment whose length is not a multiple of 8, more than 65535 bytes);
//! * at most `max_datagrams` datagrams and `max_bytes` buffered bytes: a fragment that would
//!   exceed them is dropped as `reassembly_overflow` (existing datagrams keep their chance).
//!
//! Work per fragment is bounded: overlaps are checked against the two neighbours of the new
//! piece (pieces are sorted and disjoint, O(log k)), and expiry walks datagrams oldest first
//! ([`super::seen::SeenOrder`]) instead of scanning them all.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use crate::decode::error::PacketError;
use crate::decode::ip::FragmentInfo;

use super::seen::SeenOrder;

/// The largest reassembled payload (the 16-bit IP length fields).
pub const MAX_DATAGRAM: usize = 65_535;

/// Identifies the datagram a fragment belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FragmentKey {
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 protocol / IPv6 next header of the fragmentable part.
    pub protocol: u8,
    /// The identification.
    pub id: u32,
}

#[derive(Debug)]
struct Datagram {
    /// Fragments by offset, not overlapping.
    pieces: Vec<(usize, Vec<u8>)>,
    /// The payload length, once the last fragment arrived.
    total: Option<usize>,
    bytes: usize,
}

/// What a fragment did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembly {
    /// Kept, waiting for the others.
    Stored,
    /// An exact copy of a fragment already kept.
    Duplicate,
    /// The last missing piece: the whole payload of the datagram.
    Complete(Vec<u8>),
}

/// Buffers fragments until their datagram is whole.
#[derive(Debug)]
pub struct Defragmenter {
    datagrams: HashMap<FragmentKey, Datagram>,
    /// The datagrams by first-seen time (expiry).
    age: SeenOrder<FragmentKey>,
    bytes: usize,
    max_datagrams: usize,
    max_bytes: usize,
    timeout: Duration,
}

impl Defragmenter {
    /// A defragmenter with these limits.
    pub fn new(max_datagrams: usize, max_bytes: usize, timeout: Duration) -> Self {
        Defragmenter {
            datagrams: HashMap::new(),
            age: SeenOrder::default(),
            bytes: 0,
            max_datagrams,
            max_bytes,
            timeout,
        }
    }

    /// Datagrams waiting for fragments.
    pub fn pending(&self) -> usize {
        self.datagrams.len()
    }

    /// Bytes buffered.
    pub fn buffered_bytes(&self) -> usize {
        self.bytes
    }

    /// Adds one fragment (`data` is its payload after the IP header / Fragment header).
    /// `frame_offset` is where its fragment fields sit in the frame, for errors.
    pub fn insert(
        &mut self,
        key: FragmentKey,
        info: FragmentInfo,
        data: &[u8],
        ts: SystemTime,
        frame_offset: usize,
    ) -> Result<Reassembly, PacketError> {
        let start = info.offset;
        let end = start + data.len();
        let bad = PacketError::BadFragment {
            offset: frame_offset,
            fragment_offset: start,
        };
        if end > MAX_DATAGRAM || (info.more && (data.is_empty() || !data.len().is_multiple_of(8))) {
            self.discard(&key);
            return Err(bad);
        }
        if !self.datagrams.contains_key(&key) {
            if self.datagrams.len() >= self.max_datagrams {
                return Err(PacketError::ReassemblyOverflow {
                    layer: "ip_fragments",
                    limit: self.max_datagrams,
                });
            }
            self.datagrams.insert(
                key,
                Datagram {
                    pieces: Vec::new(),
                    total: None,
                    bytes: 0,
                },
            );
            self.age.touch(key, ts);
        }
        if self.bytes + data.len() > self.max_bytes {
            return Err(PacketError::ReassemblyOverflow {
                layer: "ip_fragments",
                limit: self.max_bytes,
            });
        }
        let Some(d) = self.datagrams.get_mut(&key) else {
            return Err(bad);
        };
        // The end: set once, never contradicted, never exceeded.
        let contradicts_end = match d.total {
            Some(total) => end > total || (!info.more && end != total),
            // Pieces are sorted and disjoint: the last one ends furthest.
            None => !info.more && d.pieces.last().is_some_and(|(o, p)| o + p.len() > end),
        };
        if contradicts_end {
            self.discard(&key);
            return Err(bad);
        }
        // Overlaps: an exact duplicate is ignored, anything else discards the datagram. Pieces
        // are sorted and disjoint, so only the piece before `at` and the one at `at` can
        // overlap the new one.
        let at = d.pieces.partition_point(|(o, _)| *o < start);
        let before = at.checked_sub(1).and_then(|i| d.pieces.get(i));
        let overlaps_before = before.is_some_and(|(o, p)| o + p.len() > start);
        match d.pieces.get(at) {
            Some((o, p)) if *o == start && *o < end && p.as_slice() == data && !overlaps_before => {
                return Ok(Reassembly::Duplicate);
            }
            Some((o, _)) if *o < end => {
                self.discard(&key);
                return Err(PacketError::FragmentOverlap {
                    offset: frame_offset,
                    fragment_offset: start,
                });
            }
            _ if overlaps_before => {
                self.discard(&key);
                return Err(PacketError::FragmentOverlap {
                    offset: frame_offset,
                    fragment_offset: start,
                });
            }
            _ => {}
        }
        if !info.more {
            d.total = Some(end);
        }
        d.pieces.insert(at, (start, data.to_vec()));
        d.bytes += data.len();
        self.bytes += data.len();
        let Some(total) = d.total else {
            return Ok(Reassembly::Stored);
        };
        if d.bytes != total {
            return Ok(Reassembly::Stored);
        }
        // No overlaps and as many bytes as the total: the pieces tile 0..total.
        let Some(d) = self.datagrams.remove(&key) else {
            return Err(bad);
        };
        self.age.remove(&key);
        self.bytes -= d.bytes;
        let mut whole = Vec::with_capacity(total);
        for (_, p) in d.pieces {
            whole.extend_from_slice(&p);
        }
        Ok(Reassembly::Complete(whole))
    }

    fn discard(&mut self, key: &FragmentKey) {
        if let Some(d) = self.datagrams.remove(key) {
            self.age.remove(key);
            self.bytes -= d.bytes;
        }
    }

    /// Discards datagrams older than the timeout, reporting each as
    /// [`PacketError::FragmentTimeout`].
    pub fn expire(&mut self, now: SystemTime, out: &mut dyn FnMut(PacketError)) {
        for key in self.age.idle(now, self.timeout) {
            self.age.remove(&key);
            if let Some(d) = self.datagrams.remove(&key) {
                self.bytes -= d.bytes;
                out(PacketError::FragmentTimeout { received: d.bytes });
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(id: u32) -> FragmentKey {
        FragmentKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            protocol: 17,
            id,
        }
    }

    fn frag(offset: usize, more: bool) -> FragmentInfo {
        FragmentInfo {
            id: 1,
            offset,
            more,
            header_at: 0,
        }
    }

    fn defrag() -> Defragmenter {
        Defragmenter::new(4, 1 << 20, Duration::from_secs(30))
    }

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn out_of_order_and_duplicates() {
        let mut d = defrag();
        let data: Vec<u8> = (0..40u8).collect();
        assert_eq!(
            d.insert(key(1), frag(32, false), &data[32..], T0, 0),
            Ok(Reassembly::Stored)
        );
        assert_eq!(
            d.insert(key(1), frag(0, true), &data[..16], T0, 0),
            Ok(Reassembly::Stored)
        );
        assert_eq!(
            d.insert(key(1), frag(0, true), &data[..16], T0, 0),
            Ok(Reassembly::Duplicate)
        );
        assert_eq!(
            d.insert(key(1), frag(16, true), &data[16..32], T0, 0),
            Ok(Reassembly::Complete(data.clone()))
        );
        assert_eq!((d.pending(), d.buffered_bytes()), (0, 0));
    }

    #[test]
    fn overlap_and_contradictions_discard_the_datagram() {
        let mut d = defrag();
        d.insert(key(1), frag(0, true), &[1; 16], T0, 0).unwrap();
        assert_eq!(
            d.insert(key(1), frag(8, true), &[2; 16], T0, 14),
            Err(PacketError::FragmentOverlap {
                offset: 14,
                fragment_offset: 8
            })
        );
        assert_eq!((d.pending(), d.buffered_bytes()), (0, 0));
        // Non-last fragment not a multiple of 8; bytes beyond the end.
        assert!(matches!(
            d.insert(key(2), frag(0, true), &[1; 10], T0, 0),
            Err(PacketError::BadFragment { .. })
        ));
        d.insert(key(3), frag(8, false), &[1; 8], T0, 0).unwrap();
        assert!(matches!(
            d.insert(key(3), frag(16, true), &[1; 8], T0, 0),
            Err(PacketError::BadFragment { .. })
        ));
        assert!(matches!(
            d.insert(key(4), frag(65_528, false), &[1; 16], T0, 0),
            Err(PacketError::BadFragment { .. })
        ));
        assert_eq!(d.buffered_bytes(), 0);
    }

    #[test]
    fn limits_and_timeout() {
        let mut d = Defragmenter::new(2, 32, Duration::from_secs(30));
        d.insert(key(1), frag(0, true), &[0; 16], T0, 0).unwrap();
        d.insert(key(2), frag(0, true), &[0; 16], T0, 0).unwrap();
        assert_eq!(
            d.insert(key(3), frag(0, true), &[0; 8], T0, 0),
            Err(PacketError::ReassemblyOverflow {
                layer: "ip_fragments",
                limit: 2
            })
        );
        assert_eq!(
            d.insert(key(1), frag(16, true), &[0; 8], T0, 0),
            Err(PacketError::ReassemblyOverflow {
                layer: "ip_fragments",
                limit: 32
            })
        );
        let mut expired = Vec::new();
        d.expire(T0 + Duration::from_secs(29), &mut |e| expired.push(e));
        assert!(expired.is_empty());
        d.expire(T0 + Duration::from_secs(30), &mut |e| expired.push(e));
        assert_eq!(
            expired,
            vec![PacketError::FragmentTimeout { received: 16 }; 2]
        );
        assert_eq!((d.pending(), d.buffered_bytes()), (0, 0));
    }

    proptest! {
        /// Any datagram cut into 8-byte-aligned fragments, delivered in any order with
        /// duplicates, reassembles to itself.
        #[test]
        fn any_order_reassembles(
            len in 1usize..3000,
            cut in 1usize..64,
            seed in any::<u64>(),
        ) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let step = cut * 8;
            let mut frags: Vec<(usize, bool)> = (0..len).step_by(step).map(|o| (o, o + step < len)).collect();
            let n = frags.len();
            // Deterministic shuffle and one duplicate.
            for i in 0..n {
                let j = (seed as usize).wrapping_mul(i + 1).wrapping_add(i * 31) % n;
                frags.swap(i, j);
            }
            frags.insert(0, frags[n / 2]);
            let mut d = defrag();
            let mut done = None;
            for (o, more) in frags {
                let end = (o + step).min(len);
                match d.insert(key(9), frag(o, more), &data[o..end], T0, 0).unwrap() {
                    Reassembly::Complete(v) => done = Some(v),
                    Reassembly::Stored | Reassembly::Duplicate => {}
                }
            }
            prop_assert_eq!(done, Some(data));
        }
    }
}
