//! The collector's metrics: [`CATALOG`] lists every metric its events move (plus the runtime's
//! `COMMON` ones), with the label values known in advance; `docs/METRICS.md` documents each one
//! (a test checks it).

use sipcapture_runtime::counters::{Catalog, counter, gauge, histogram};

/// The `input` label values (one per input kind).
pub const INPUTS: &[&str] = &[
    "hep_udp",
    "hep_tcp",
    "hep_tls",
    "mirror",
    "ipip",
    "pcap",
    "unspecified",
];
/// The `dropped{reason}` values known in advance (docs/METRICS.md); any other reason still
/// counts (the registry's spare series).
pub const DROP_REASONS: &[&str] = &[
    "truncated",
    "bad_magic",
    "unsupported_family",
    "bad_total_length",
    "bad_chunk_length",
    "chunk_header_overrun",
    "chunk_type_zero",
    "bad_chunk_value",
    "payload_too_large",
    "bad_compressed_payload",
    "frame_too_large",
    "unencodable",
    "auth_failed",
    "rate_limited",
    "tcp_bad_frame",
    "tcp_frame_timeout",
    "no_payload",
    "too_short",
    "bad_start_line",
    "not_sip",
    "bad_request_uri",
    "bad_header",
    "no_header_end",
    "bad_via",
    "bad_cseq",
    "bad_number",
    "bad_from",
    "bad_to",
    "bad_from_uri",
    "bad_to_uri",
    "bad_contact",
    "bad_contact_uri",
    "duplicate_header",
    "missing_header",
    "port_filtered",
    "fragment",
    "unsupported_ethertype",
    "too_many_vlan_tags",
    "bad_ip_version",
    "bad_ipv4_length",
    "not_udp",
    "bad_udp_length",
    "unsupported_ip_protocol",
    "unsupported_encapsulation",
    "too_many_encapsulations",
    "bad_tcp_header",
    "bad_sctp_chunk",
    "bad_fragment",
    "fragment_overlap",
    "fragment_timeout",
    "reassembly_overflow",
    "tcp_gap",
    "tcp_incomplete",
    "stream_framing",
    "bad_websocket_frame",
    "read_error",
    "spool_full",
    "spool_error",
    "script",
    "forwarded_only",
    "forward_queue_full",
    "forward_unreachable",
    "forward_send_failed",
    "forward_shutdown",
    "forward_unencodable",
    "fragment_duplicate",
    "tcp_retransmission",
    "sctp_no_data",
    "websocket_control",
    "unsupported_link_type",
];

/// Every metric the collector exports (plus the runtime's `COMMON` ones).
pub const CATALOG: Catalog = Catalog {
    service: "collector",
    metrics: &[
        counter(
            "hep_received",
            Some("input"),
            "HEP packets received (UDP datagrams, TCP/TLS frames), before decoding",
        )
        .values(INPUTS),
        counter(
            "hep_decoded",
            Some("input"),
            "HEP packets decoded successfully",
        )
        .values(INPUTS),
        counter(
            "hep_incomplete",
            None,
            "HEP packets missing core chunks, stored with the gaps flagged",
        ),
        counter(
            "raw_received",
            Some("input"),
            "raw transport payloads seen by a raw input (mirror port)",
        )
        .values(INPUTS),
        counter(
            "mirror_frames",
            None,
            "frames read from the mirror-port packet socket",
        ),
        counter(
            "ipip_packets",
            None,
            "IP-in-IP packets read from the raw IPIP socket",
        ),
        counter(
            "pcap_frames",
            None,
            "frames read from an imported pcap/pcapng file",
        ),
        counter("tcp_connections", None, "HEP TCP connections accepted"),
        counter(
            "tls_connections",
            None,
            "HEP TLS connections accepted (handshake done)",
        ),
        counter(
            "tls_handshake_failed",
            None,
            "HEP TLS handshakes that failed or timed out",
        ),
        counter(
            "tcp_idle_closed",
            None,
            "HEP TCP/TLS connections closed after tcp_idle_timeout",
        ),
        counter(
            "tcp_refused_per_ip",
            None,
            "HEP TCP/TLS connections closed at accept because their source address held tcp_max_connections_per_ip",
        ),
        counter(
            "tcp_accept_failed",
            None,
            "HEP TCP/TLS accepts that failed (out of file descriptors, ...)",
        ),
        counter(
            "dropped",
            Some("reason"),
            "packets or records dropped, by reason (every drop is counted)",
        )
        .values(DROP_REASONS),
        counter(
            "discarded",
            Some("reason"),
            "packets decoded but deliberately not captured (reason status: capture is off)",
        )
        .values(&["status"]),
        counter(
            "records_queued",
            None,
            "records built and queued for export",
        ),
        counter(
            "batches_sealed",
            None,
            "batches sealed (numbered) for delivery",
        ),
        counter(
            "batches_sent",
            None,
            "batches sent to a storer for the first time",
        ),
        counter(
            "batches_resent",
            None,
            "batches sent again after a lost stream",
        ),
        counter(
            "batches_acked",
            None,
            "batches acknowledged by a storer after commit",
        ),
        counter(
            "batches_duplicate",
            None,
            "acknowledgements saying the batch was committed before (a resend)",
        ),
        counter("records_acked", None, "records in acknowledged batches"),
        counter(
            "records_spooled",
            None,
            "records written to the on-disk spool",
        ),
        counter(
            "records_lost_at_shutdown",
            None,
            "records neither acknowledged nor spooled when shutdown timed out (no spool)",
        ),
        counter(
            "spool_corrupt_frames",
            None,
            "spool frames skipped (at recovery or read-back) because their checksum failed: each damaged stretch counts once",
        ),
        counter(
            "stream_connects",
            None,
            "Deliver streams opened to a storer",
        ),
        counter("stream_errors", None, "Deliver streams lost"),
        counter(
            "lane_moves",
            None,
            "delivery lanes moved to another storer by the placement (rebalancing, storer set change)",
        ),
        counter(
            "stream_connect_failed",
            None,
            "Deliver streams that could not be opened (storer down, TLS refused, no Welcome)",
        ),
        gauge(
            "queue_depth",
            Some("lane"),
            "records waiting in a lane's queue between the inputs and the exporter",
        ),
        gauge("queue_capacity", Some("lane"), "capacity of a lane's queue"),
        gauge(
            "unacked_batches",
            Some("lane"),
            "batches sealed and not yet acknowledged, in memory",
        ),
        gauge(
            "spool_bytes",
            Some("lane"),
            "bytes of a lane's spool on disk",
        ),
        gauge(
            "spool_segments",
            Some("lane"),
            "segment files of a lane's spool",
        ),
        gauge(
            "capture_on",
            Some("input"),
            "1 while records of an input are captured (status on), 0 while capture is off for it",
        ),
        histogram(
            "batch_ack_seconds",
            "time from a batch's first send to its acknowledgement",
        ),
        counter(
            "script_reloads",
            None,
            "Lua hook script loads (start-up, SIGHUP, file change)",
        ),
        counter(
            "script_errors",
            None,
            "Lua hook errors (load failures, runtime errors, time-outs); the packet takes the default path",
        ),
        counter(
            "script_skipped_busy",
            None,
            "packets stored without the Lua hook because every Lua state was busy (slow calls)",
        ),
        counter(
            "script_overruns",
            None,
            "Lua hook calls whose verdict was not back within script_timeout_ms + 50 ms (a C function the time limit cannot interrupt); the packet took the default path",
        ),
        counter(
            "script_reports",
            None,
            "report rows queued by the script's report_capture()",
        ),
        counter(
            "forwarded",
            None,
            "HEP packets sent to forward destinations (forward rules and sip_capture_forward)",
        ),
        counter(
            "forward_connects",
            None,
            "connections opened to HEP forward destinations",
        ),
        counter(
            "forward_connect_failed",
            None,
            "failed attempts to reach a HEP forward destination (retried with backoff)",
        ),
        counter(
            "forward_errors",
            None,
            "sends to a HEP forward destination that failed (the connection is reopened)",
        ),
    ],
};

#[cfg(test)]
mod tests {
    use super::*;

    use crate::events::input_label;

    #[test]
    fn docs_list_every_metric() {
        let docs = include_str!("../../../docs/METRICS.md");
        assert_eq!(CATALOG.undocumented(docs), Vec::<String>::new());
    }

    #[test]
    fn every_input_label_is_catalogued() {
        for input in super::super::INPUT_KINDS {
            assert!(INPUTS.contains(&input_label(input)), "{input:?}");
        }
    }

    #[test]
    fn packet_counters_count_their_series() {
        use crate::events::{
            HepDecoded, HepReceived, PacketCounters, PacketEvent, RawReceived, RecordQueued,
        };
        let counters = sipcapture_runtime::counters::Counters::new(&CATALOG);
        let packets = PacketCounters::new(&counters);
        for input in super::super::INPUT_KINDS {
            HepReceived { input }.emit(&packets);
            HepReceived { input }.emit(&packets);
            HepDecoded { input }.emit(&packets);
            RawReceived { input }.emit(&packets);
            let label = input_label(input);
            assert_eq!(counters.get(&format!("hep_received.{label}")), 2, "{label}");
            assert_eq!(counters.get(&format!("hep_decoded.{label}")), 1, "{label}");
            assert_eq!(counters.get(&format!("raw_received.{label}")), 1, "{label}");
        }
        RecordQueued.emit(&packets);
        assert_eq!(counters.get("records_queued"), 1);
        assert!(counters.uncatalogued().is_empty());
    }
}
