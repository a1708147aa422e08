//! The exporter's input: one bounded queue per lane. Hash placement sends every record of a
//! Call-ID to the same lane; balanced placement spreads records over the lanes in turn.

use std::sync::atomic::{AtomicUsize, Ordering};

use sipcapture_proto::v1::CaptureRecord;
use tokio::sync::mpsc;

use super::storers::{Placement, lane_of_call_id};

/// The exporter is gone (shutdown).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("exporter closed")]
pub struct Closed;

/// Senders of every lane's queue.
#[derive(Debug)]
pub struct LaneQueues {
    senders: Vec<mpsc::Sender<CaptureRecord>>,
    placement: Placement,
    next: AtomicUsize,
}

impl LaneQueues {
    /// `lanes` queues of `capacity` records each; returns the receivers in lane order.
    pub fn new(
        lanes: usize,
        capacity: usize,
        placement: Placement,
    ) -> (Self, Vec<mpsc::Receiver<CaptureRecord>>) {
        let (senders, receivers) = (0..lanes.max(1))
            .map(|_| mpsc::channel(capacity.max(1)))
            .unzip();
        (
            LaneQueues {
                senders,
                placement,
                next: AtomicUsize::new(0),
            },
            receivers,
        )
    }

    /// The lane of a record.
    pub fn lane_of(&self, record: &CaptureRecord) -> usize {
        let lanes = self.senders.len();
        if lanes <= 1 {
            return 0;
        }
        match self.placement {
            Placement::CallId => {
                let key = match &record.sip {
                    Some(sip) if !sip.callid.is_empty() => sip.callid.clone(),
                    _ => record
                        .hep
                        .as_ref()
                        .map(|h| String::from_utf8_lossy(&h.correlation_id).into_owned())
                        .unwrap_or_default(),
                };
                lane_of_call_id(&key, lanes)
            }
            Placement::Balanced => self.next.fetch_add(1, Ordering::Relaxed) % lanes,
        }
    }

    /// Weak handles on every lane's queue, to read their depth (`queue_depth` gauge) without
    /// keeping the queues open at shutdown.
    pub fn watchers(&self) -> Vec<mpsc::WeakSender<CaptureRecord>> {
        self.senders.iter().map(mpsc::Sender::downgrade).collect()
    }

    /// Queues a record on its lane, waiting while that queue is full (backpressure).
    pub async fn send(&self, record: CaptureRecord) -> Result<(), Closed> {
        let lane = self.lane_of(&record);
        let sender = self.senders.get(lane).ok_or(Closed)?;
        sender.send(record).await.map_err(|_| Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::SipFields;

    fn rec(call_id: &str) -> CaptureRecord {
        CaptureRecord {
            sip: Some(SipFields {
                callid: call_id.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn call_id_placement_is_sticky() {
        let (q, _rx) = LaneQueues::new(4, 10, Placement::CallId);
        for id in ["a@x", "b@y", "c@z"] {
            let lane = q.lane_of(&rec(id));
            for _ in 0..10 {
                assert_eq!(q.lane_of(&rec(id)), lane);
            }
        }
    }

    #[test]
    fn balanced_placement_rotates() {
        let (q, _rx) = LaneQueues::new(3, 10, Placement::Balanced);
        let lanes: Vec<usize> = (0..6).map(|_| q.lane_of(&rec("same"))).collect();
        assert_eq!(lanes, vec![0, 1, 2, 0, 1, 2]);
    }
}
