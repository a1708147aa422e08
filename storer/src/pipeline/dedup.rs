//! Dedup (heplify-server's `Dedup`): a SIP message whose exact bytes were already stored from
//! another capture point within the window is the same packet captured twice — by two agents
//! on its path, or by a mirror port and a HEP agent — and is not stored again. A copy from the
//! same capture point is a retransmission and is kept (a ladder must show it). A resend of the
//! same batch is never its own duplicate. The memory is bounded (`dedup_max_entries`, oldest
//! first out, counted).

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hashbrown::{DefaultHashBuilder, HashMap};
use sipcapture_proto::v1::CaptureRecord;

/// Where and when a message was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seen {
    capture_us: i64,
    point: u64,
    batch: (u64, u64),
    at: Instant,
}

#[derive(Debug, Default)]
struct State {
    seen: HashMap<u64, Seen>,
    order: VecDeque<(u64, Instant)>,
}

/// What dedup decided for one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Store it.
    Store,
    /// Store it; an older message was forgotten to make room.
    StoreEvicted,
    /// A copy of a message already stored from another capture point.
    Duplicate,
}

/// The dedup memory of a storer.
#[derive(Debug)]
pub struct Dedup {
    window_us: i64,
    window: Duration,
    max_entries: usize,
    hasher: DefaultHashBuilder,
    state: Mutex<State>,
}

impl Dedup {
    /// A memory for messages within `window` of each other, holding at most `max_entries`.
    pub fn new(window: Duration, max_entries: usize) -> Self {
        Dedup {
            window_us: i64::try_from(window.as_micros()).unwrap_or(i64::MAX),
            window,
            max_entries: max_entries.max(1),
            hasher: DefaultHashBuilder::default(),
            state: Mutex::new(State::default()),
        }
    }

    /// The capture point of a record: its node, HEP capture id and node name, and collector.
    fn point(&self, record: &CaptureRecord) -> u64 {
        let mut h = self.hasher.build_hasher();
        record.node.hash(&mut h);
        if let Some(hep) = &record.hep {
            hep.capture_id.hash(&mut h);
            hep.node_name.hash(&mut h);
        }
        if let Some(origin) = &record.origin {
            origin.collector_id.hash(&mut h);
        }
        h.finish()
    }

    /// Decides for one SIP record of batch `sequence` of stream `stream` (other records are
    /// always stored).
    pub fn check(&self, record: &CaptureRecord, stream: u64, sequence: u64) -> Verdict {
        if record.sip.is_none() || record.payload.is_empty() {
            return Verdict::Store;
        }
        let key = self.hasher.hash_one(&record.payload);
        let now = Instant::now();
        let this = Seen {
            capture_us: i64::try_from(record.capture_time_us).unwrap_or(i64::MAX),
            point: self.point(record),
            batch: (stream, sequence),
            at: now,
        };
        let Ok(mut state) = self.state.lock() else {
            return Verdict::Store;
        };
        // Forget what is older than the window (by arrival: imports keep old capture times).
        let horizon = self.window + Duration::from_secs(1);
        while let Some(&(k, at)) = state.order.front() {
            if now.duration_since(at) <= horizon {
                break;
            }
            state.order.pop_front();
            if state.seen.get(&k).is_some_and(|s| s.at == at) {
                state.seen.remove(&k);
            }
        }
        if let Some(before) = state.seen.get(&key)
            && before.point != this.point
            && before.batch != this.batch
            && before.capture_us.abs_diff(this.capture_us) <= self.window_us.unsigned_abs()
        {
            return Verdict::Duplicate;
        }
        let mut verdict = Verdict::Store;
        if state.seen.len() >= self.max_entries && !state.seen.contains_key(&key) {
            while let Some((k, at)) = state.order.pop_front() {
                if state.seen.get(&k).is_some_and(|s| s.at == at) {
                    state.seen.remove(&k);
                    verdict = Verdict::StoreEvicted;
                    break;
                }
            }
        }
        state.seen.insert(key, this);
        state.order.push_back((key, now));
        verdict
    }

    /// The stream key of a stream id (hashed, so records need not carry the text).
    pub fn stream_key(&self, stream_id: &str) -> u64 {
        self.hasher.hash_one(stream_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::{HepMeta, SipFields};

    fn message(node: &str, capture_time_us: u64) -> CaptureRecord {
        CaptureRecord {
            capture_time_us,
            node: node.to_owned(),
            hep: Some(HepMeta::default()),
            payload: b"INVITE sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n".to_vec(),
            sip: Some(SipFields::default()),
            ..Default::default()
        }
    }

    #[test]
    fn a_copy_from_another_point_is_a_duplicate() {
        let d = Dedup::new(Duration::from_secs(2), 100);
        assert_eq!(d.check(&message("sbc1", 1_000_000), 1, 1), Verdict::Store);
        assert_eq!(
            d.check(&message("sbc2", 1_000_300), 2, 7),
            Verdict::Duplicate
        );
        // outside the window: a new message
        assert_eq!(d.check(&message("sbc2", 4_000_000), 2, 8), Verdict::Store);
    }

    #[test]
    fn retransmissions_and_resends_are_kept() {
        let d = Dedup::new(Duration::from_secs(2), 100);
        assert_eq!(d.check(&message("sbc1", 1_000_000), 1, 1), Verdict::Store);
        // the same point half a second later: a retransmission
        assert_eq!(d.check(&message("sbc1", 1_500_000), 1, 2), Verdict::Store);
        // the same batch again (a resend after a failed commit)
        assert_eq!(d.check(&message("sbc1", 1_500_000), 1, 2), Verdict::Store);
        // reports are never deduplicated
        let mut report = message("sbc2", 1_500_000);
        report.sip = None;
        assert_eq!(d.check(&report, 3, 1), Verdict::Store);
    }

    #[test]
    fn memory_is_bounded() {
        let d = Dedup::new(Duration::from_secs(2), 2);
        for i in 0..5u64 {
            let mut m = message("sbc1", 1_000_000);
            m.payload.push(u8::try_from(i).unwrap());
            let v = d.check(&m, 1, i);
            assert_eq!(
                v,
                if i < 2 {
                    Verdict::Store
                } else {
                    Verdict::StoreEvicted
                }
            );
        }
        assert_eq!(d.state.lock().unwrap().seen.len(), 2);
    }
}
