//! The per-packet path shared by the live raw sources ([`super::mirror`], [`super::ipip`]): one
//! [`RawWorker`] per reader thread owns a [`Dissector`] (its own fragment and TCP state: with
//! `PACKET_FANOUT` the kernel keeps a flow on one socket, hence on one worker) and hands every
//! item to [`Ingest::dissected`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sipcapture_proto::v1::InputKind;

use crate::decode::dissect::{DissectLimits, Dissected, Dissector};
use crate::decode::frame::LinkType;
use crate::ingest::Ingest;
use crate::source::mirror::PortFilter;

/// How often a worker times out fragments and idle TCP flows.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// One reader thread's decoding state.
#[derive(Debug)]
pub struct RawWorker {
    ingest: Arc<Ingest>,
    runtime: tokio::runtime::Handle,
    ports: PortFilter,
    input: InputKind,
    dissector: Dissector,
    last_expire: SystemTime,
}

impl RawWorker {
    /// A worker handing records of `input` to `ingest` (blocking on `runtime` while its queue
    /// is full).
    pub fn new(
        ingest: Arc<Ingest>,
        runtime: tokio::runtime::Handle,
        ports: PortFilter,
        input: InputKind,
    ) -> Self {
        RawWorker {
            ingest,
            runtime,
            ports,
            input,
            dissector: Dissector::new(DissectLimits::default()),
            last_expire: SystemTime::now(),
        }
    }

    /// The ingest (for counters).
    pub fn ingest(&self) -> &Ingest {
        &self.ingest
    }

    /// Handles one captured buffer received now. The capture time of live records is the
    /// receipt time, as in Kamailio (the sockets give no packet timestamp).
    pub fn frame(&mut self, link: LinkType, data: &[u8]) {
        let now = SystemTime::now();
        let RawWorker {
            ingest,
            runtime,
            ports,
            input,
            dissector,
            ..
        } = self;
        let filter = |src: u16, dst: u16| ports.matches(src, dst);
        // Backpressure: a full queue blocks this thread, and the kernel socket buffer absorbs
        // the burst (then drops, which the kernel counts).
        let mut handle = |item: Dissected<'_>| {
            runtime.block_on(ingest.dissected(item, *input, false));
        };
        dissector.frame(link, now, data, &filter, &mut handle);
        self.expire_due(now);
    }

    /// Called when a read times out: lets fragments and idle TCP flows expire.
    pub fn idle(&mut self) {
        self.expire_due(SystemTime::now());
    }

    fn expire_due(&mut self, now: SystemTime) {
        if now.duration_since(self.last_expire).unwrap_or_default() < EXPIRE_EVERY {
            return;
        }
        self.last_expire = now;
        let RawWorker {
            ingest,
            runtime,
            input,
            dissector,
            ..
        } = self;
        let mut handle = |item: Dissected<'_>| {
            runtime.block_on(ingest.dissected(item, *input, false));
        };
        dissector.expire(now, &mut handle);
    }
}
