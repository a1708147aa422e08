//! The per-packet stage every source feeds. HEP: rate limit → decode → auth key → Lua hook →
//! capture switch → record → bounded queue; raw-captured SIP: capture switch → record → queue.
//! The three checks are the [`Gate`]'s. Every packet is either queued or counted under a drop
//! reason.

use std::sync::Arc;
use std::time::SystemTime;

use sipcapture_proto::v1::{InputKind, Routing};
use sipcapture_runtime::counters::Counters;

use crate::decode::flow::{Dissected, PayloadKind};
use crate::decode::hep;
use crate::events::{
    DiscardedByStatus, HepDecoded, HepIncomplete, HepReceived, InternalEvent, PacketCounters,
    PacketDropped, PacketEvent, PacketSkipped, RawReceived, RecordQueued, ScriptReportQueued,
};
use crate::export::lanes::LaneQueues;
use crate::gate::{Check, Decision, Gate};
use crate::hook::Hooks;
use crate::record::{Reception, RecordBuilder, RecordError};

/// Decodes and queues packets.
#[derive(Debug)]
pub struct Ingest {
    /// Builds records.
    pub builder: RecordBuilder,
    /// What may pass: rate limit, HEP auth key, capture switch.
    pub gate: Gate,
    /// Counters.
    pub counters: Arc<Counters>,
    /// The per-packet counters, resolved from `counters` once.
    pub packets: PacketCounters,
    /// The exporter's lane queues.
    pub queue: LaneQueues,
    /// The Lua hook and HEP forwarding (both optional).
    pub hooks: Hooks,
}

/// What happened to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A record was queued.
    Queued,
    /// Decoded, but capture is off for the input: counted as discarded by status.
    Discarded,
    /// Dropped with a reason.
    Dropped(&'static str),
    /// The exporter is gone (shutdown).
    Closed,
}

impl Ingest {
    /// Counts a drop and logs the first and every power-of-two occurrence of its reason.
    pub fn drop_packet(
        &self,
        reason: &'static str,
        input: InputKind,
        detail: &dyn std::fmt::Display,
    ) -> Outcome {
        PacketDropped {
            reason,
            input,
            detail,
        }
        .emit(&self.counters);
        Outcome::Dropped(reason)
    }

    /// Hands a record to the exporter's lane queues (waiting while full) and counts it.
    async fn enqueue(&self, record: sipcapture_proto::v1::CaptureRecord) -> Outcome {
        if self.queue.send(record).await.is_err() {
            return Outcome::Closed;
        }
        RecordQueued.emit(&self.packets);
        Outcome::Queued
    }

    /// Handles one HEP packet (a UDP datagram or one TCP frame).
    pub async fn hep(
        &self,
        data: &[u8],
        input: InputKind,
        peer: Option<std::net::SocketAddr>,
    ) -> Outcome {
        HepReceived { input }.emit(&self.packets);
        // Before decoding: a flooding source costs as little as possible.
        if let Some(peer) = peer
            && let Decision::Drop(reason) = self.gate.check(Check::Sender(peer))
        {
            return self.drop_packet(reason, input, &peer);
        }
        let packet = match hep::decode(data) {
            Ok(p) => p,
            Err(e) => return self.drop_packet(e.reason(), input, &e),
        };
        HepDecoded { input }.emit(&self.packets);
        if let Decision::Drop(reason) = self.gate.check(Check::AuthKey(packet.auth_key)) {
            return self.drop_packet(reason, input, &"auth key missing or wrong");
        }
        let rx = Reception {
            input,
            peer,
            at: SystemTime::now(),
        };
        // Kamailio's nonsip_hook: the event route runs on every decoded packet, before the
        // capture switch (forwarding works while capture is off; report_capture checks it).
        let verdict = match &self.hooks.hook {
            Some(h) => Some(h.run_pooled(data, input, peer).await),
            None => None,
        };
        if let Some(v) = &verdict {
            self.script_reports(&packet, v, rx).await;
            if !v.proceed && v.capture.is_none() {
                self.counters.count_drop("script");
                return Outcome::Dropped("script");
            }
        }
        if self.gate.check(Check::Capture { input, hep: true }) == Decision::Discard {
            DiscardedByStatus.emit(&self.counters);
            return Outcome::Discarded;
        }
        let mut record = match self.builder.from_hep(&packet, rx) {
            Ok(r) => r,
            Err(e) => return self.drop_packet(e.reason(), input, &e),
        };
        if record.flags.as_ref().is_some_and(|f| f.incomplete_hep) {
            HepIncomplete.emit(&self.counters);
        }
        if let Some((table, capture_mode)) = verdict.and_then(|v| v.capture) {
            record.routing = Some(Routing {
                table,
                capture_mode,
            });
        }
        if !self.forward_by_rules(&record, Some(data)) {
            return self.skip_packet("forwarded_only");
        }
        self.enqueue(record).await
    }

    /// Queues the report rows a script asked for (`report_capture`), when capture is on for the
    /// input (Kamailio's `report_capture` checks `capture_on`; a refused row is counted).
    async fn script_reports(
        &self,
        packet: &hep::HepPacket<'_>,
        verdict: &crate::hook::Verdict,
        rx: Reception,
    ) {
        for req in &verdict.reports {
            let input = rx.input;
            if self.gate.check(Check::Capture { input, hep: false }) == Decision::Discard {
                DiscardedByStatus.emit(&self.counters);
                continue;
            }
            let record = self
                .builder
                .script_report(packet, rx, &req.table, &req.cid, &req.data);
            ScriptReportQueued.emit(&self.counters);
            if self.enqueue(record).await == Outcome::Closed {
                return;
            }
        }
    }

    /// Applies the forward rules; false when a matching rule says not to store the record.
    fn forward_by_rules(
        &self,
        record: &sipcapture_proto::v1::CaptureRecord,
        raw: Option<&[u8]>,
    ) -> bool {
        match &self.hooks.forwarder {
            Some(f) if f.has_rules() => f.apply_rules(record, raw),
            _ => true,
        }
    }
}

impl Ingest {
    /// Counts ordinary raw traffic that is not ours (another ethertype or transport, a port
    /// outside `raw_socket_listen`, a fragment, a non-SIP payload) under `dropped.<reason>`,
    /// without logging: on a mirror port it is most of the traffic.
    pub fn skip_packet(&self, reason: &'static str) -> Outcome {
        PacketSkipped { reason }.emit(&self.counters);
        Outcome::Dropped(reason)
    }

    /// Handles one raw-captured transport payload (mirror port, and later IPIP and pcap files):
    /// status gate → record ([`RecordBuilder::from_raw`]) → queue, like [`Ingest::hep`].
    /// Non-SIP payloads are counted as `dropped.not_sip`.
    pub async fn raw(
        &self,
        src: std::net::SocketAddr,
        dst: std::net::SocketAddr,
        ip_protocol: u8,
        payload: &[u8],
        input: InputKind,
        packet_time: Option<SystemTime>,
    ) -> Outcome {
        let transport = crate::record::kamailio_proto(ip_protocol);
        self.raw_transport(
            src,
            dst,
            ip_protocol,
            transport,
            payload,
            input,
            packet_time,
        )
        .await
    }
}

impl Ingest {
    /// Handles one item of the raw-capture dissector ([`crate::decode::flow::dissect`]): a SIP
    /// message goes through [`Ingest::raw`] (with its transport, WebSocket included, and the
    /// packet time when `packet_time` is set, as for pcap files), a HEP packet found in the
    /// traffic through [`Ingest::hep`], a skip is counted silently and a drop is counted and
    /// logged.
    pub async fn dissected(
        &self,
        item: Dissected<'_>,
        input: InputKind,
        packet_time: bool,
    ) -> Outcome {
        match item {
            Dissected::Message(m) => match m.kind {
                PayloadKind::Hep => self.hep(m.payload, input, Some(m.src)).await,
                PayloadKind::Sip => {
                    let time = packet_time.then_some(m.ts);
                    self.raw_transport(
                        m.src,
                        m.dst,
                        m.ip_protocol,
                        m.transport.kamailio_proto(),
                        m.payload,
                        input,
                        time,
                    )
                    .await
                }
            },
            Dissected::Skipped(reason) => self.skip_packet(reason),
            Dissected::Dropped(e) => self.drop_packet(e.reason(), input, &e),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn raw_transport(
        &self,
        src: std::net::SocketAddr,
        dst: std::net::SocketAddr,
        ip_protocol: u8,
        transport: u32,
        payload: &[u8],
        input: InputKind,
        packet_time: Option<SystemTime>,
    ) -> Outcome {
        RawReceived { input }.emit(&self.packets);
        if self.gate.check(Check::Capture { input, hep: false }) == Decision::Discard {
            DiscardedByStatus.emit(&self.counters);
            return Outcome::Discarded;
        }
        let rx = Reception {
            input,
            peer: None,
            at: SystemTime::now(),
        };
        let record = match self.builder.from_raw_transport(
            src,
            dst,
            ip_protocol,
            transport,
            payload,
            rx,
            packet_time,
        ) {
            Ok(r) => r,
            Err(RecordError::NotSip) => return self.skip_packet("not_sip"),
            Err(e) => return self.drop_packet(e.reason(), input, &e),
        };
        // A raw-captured record is forwarded as HEP3 (the collector as a HEP agent).
        if !self.forward_by_rules(&record, None) {
            return self.skip_packet("forwarded_only");
        }
        self.enqueue(record).await
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod raw_tests {
    use std::net::SocketAddr;

    use sipcapture_runtime::status::CaptureSwitch;

    use super::*;
    use crate::export::storers::Placement;
    use crate::sip::ExtractConfig;

    const OPTIONS: &[u8] = b"OPTIONS sip:bob@example.com SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
        From: <sip:alice@example.com>;tag=1\r\n\
        To: <sip:bob@example.com>\r\n\
        Call-ID: ingest-raw-1\r\n\
        CSeq: 1 OPTIONS\r\n\
        Content-Length: 0\r\n\r\n";

    fn ingest() -> (
        Ingest,
        tokio::sync::mpsc::Receiver<sipcapture_proto::v1::CaptureRecord>,
    ) {
        let (queue, mut lanes) = LaneQueues::new(1, 8, Placement::Balanced);
        let counters = Arc::new(Counters::new(&crate::events::CATALOG));
        let ingest = Ingest {
            builder: RecordBuilder {
                capture_node: "homer01".to_owned(),
                collector_id: "c1".to_owned(),
                sip: ExtractConfig::kamailio_defaults(),
                max_inflated_payload: 1024,
            },
            gate: Gate {
                switch: Arc::new(CaptureSwitch::new(true)),
                hep_capture_on: true,
                auth_key: None,
                rate_limit: None,
            },
            packets: crate::events::PacketCounters::new(&counters),
            counters,
            queue,
            hooks: Hooks::default(),
        };
        (ingest, lanes.remove(0))
    }

    #[tokio::test]
    async fn raw_queues_sip_counts_the_rest_and_obeys_the_mirror_switch() {
        let (ingest, mut records) = ingest();
        let src: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let dst: SocketAddr = "10.0.0.2:5090".parse().unwrap();
        let mirror = InputKind::Mirror;

        let queued = ingest.raw(src, dst, 17, OPTIONS, mirror, None).await;
        assert_eq!(queued, Outcome::Queued);
        let record = records.try_recv().unwrap();
        assert_eq!(record.sip.unwrap().callid, "ingest-raw-1");
        assert_eq!(record.origin.unwrap().input, InputKind::Mirror as i32);

        let rtp = [0x80u8; 60];
        let dropped = ingest.raw(src, dst, 17, &rtp, mirror, None).await;
        assert_eq!(dropped, Outcome::Dropped("not_sip"));
        assert_eq!(ingest.counters.get("dropped.not_sip"), 1);

        // Switching the mirror input off discards; other inputs are unaffected.
        ingest.gate.switch.set(false, &[InputKind::Mirror]);
        let off = ingest.raw(src, dst, 17, OPTIONS, mirror, None).await;
        assert_eq!(off, Outcome::Discarded);
        assert_eq!(ingest.counters.get("discarded.status"), 1);
        assert!(records.try_recv().is_err());
        assert_eq!(ingest.counters.get("raw_received"), 3);
        assert_eq!(ingest.counters.get("records_queued"), 1);
    }

    #[tokio::test]
    async fn raw_records_matching_a_forward_rule_go_out_as_hep3() {
        use crate::forward::{ForwardRuleConfig, ForwardSettings, Forwarder};
        let (mut ingest, mut records) = ingest();
        let peer = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let rules = vec![ForwardRuleConfig {
            matches: sipcapture_runtime::matching::MatchConfig {
                method: vec!["OPTIONS".to_owned()],
                ..Default::default()
            },
            to: vec![format!("sip:{}", peer.local_addr().unwrap())],
            store: false,
        }];
        let settings = ForwardSettings {
            queue: 4,
            tls_ca: None,
            capture_id: 77,
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        ingest.hooks.forwarder = Some(
            Forwarder::start(&rules, settings, ingest.counters.clone(), shutdown.clone()).unwrap(),
        );
        let src: SocketAddr = "10.0.0.1:5060".parse().unwrap();
        let dst: SocketAddr = "10.0.0.2:5090".parse().unwrap();
        let out = ingest
            .raw(src, dst, 17, OPTIONS, InputKind::Mirror, None)
            .await;
        assert_eq!(out, Outcome::Dropped("forwarded_only"));
        assert!(records.try_recv().is_err(), "store = false");
        let mut buf = vec![0u8; 2048];
        let n = tokio::time::timeout(std::time::Duration::from_secs(5), peer.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let p = hep::decode(&buf[..n]).unwrap();
        assert_eq!(p.version, 3);
        assert_eq!(p.capture_id, Some(77));
        assert_eq!((p.src_ip, p.dst_port), (Some(src.ip()), Some(5090)));
        assert_eq!(p.payload, Some(hep::HepPayload::Raw(OPTIONS)));
        shutdown.cancel();
    }
}
