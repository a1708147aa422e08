//! HEP forwarding: the collector as a HEP relay (Kamailio `sip_capture_forward(uri)`) and as a
//! HEP agent for an existing HOMER (forward rules, `[[forward]]`).
//!
//! Each destination (`sip:host:port;transport=udp|tcp|tls`) owns a bounded queue and one task
//! that sends what arrives: UDP datagrams as they are, HEP3 frames over TCP or TLS (reconnecting
//! with capped exponential backoff). A full queue drops the packet and counts
//! `dropped.forward_queue_full`; nothing blocks the capture path.
//!
//! What is sent: a HEP packet received from an agent is forwarded byte-identical (a HEP v1/v2
//! packet towards a TCP/TLS destination is re-encoded as HEP3, since v1/v2 have no length field to
//! frame a stream); a record from raw capture (mirror port) is encoded as HEP3 by our encoder.
//!
//! Here: the [`Forwarder`] (rules compiled, one queue per destination); `rules.rs`, the
//! `[[forward]]` rules as configured, destination URIs and their validation; `destination.rs`,
//! one destination's task (connect, reconnect, put the bytes on the wire); `tls.rs`, the TLS
//! client of TLS destinations. Raw-captured records are encoded by
//! [`crate::decode::hep::record`].

mod destination;
mod rules;
mod tls;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use sipcapture_proto::v1::CaptureRecord;
use sipcapture_runtime::config::ConfigError;
use sipcapture_runtime::counters::{Counters, worth_logging};
use sipcapture_runtime::matching::Matcher;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

pub use self::destination::Outgoing;
use self::destination::run_destination;
pub use self::rules::{ForwardRuleConfig, Target, Transport, validate_rules};
use self::tls::tls_connector;
use crate::decode::hep::encode_record;

/// Most destinations `sip_capture_forward` may create at run time (each is a task and a queue).
const MAX_SCRIPT_DESTINATIONS: usize = 64;

/// Forwarding settings.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// Packets queued per destination before drops.
    pub queue: usize,
    /// PEM file of the CA certificates TLS destinations are verified against.
    pub tls_ca: Option<std::path::PathBuf>,
    /// Capture agent id (chunk 0x000c) of HEP3 packets we encode from raw capture.
    pub capture_id: u32,
}

#[derive(Debug)]
struct Destination {
    tx: mpsc::Sender<Outgoing>,
}

/// The forward rules and every destination's queue.
pub struct Forwarder {
    rules: Vec<(Matcher, Vec<Arc<Destination>>, bool)>,
    by_uri: Mutex<HashMap<String, Arc<Destination>>>,
    settings: ForwardSettings,
    tls: Option<TlsConnector>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Forwarder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forwarder")
            .field("rules", &self.rules.len())
            .field("settings", &self.settings)
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

/// Why a packet could not be handed to a destination.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The URI does not parse.
    #[error("bad forward uri: {0}")]
    BadUri(String),
    /// A TLS destination without `forward_tls_ca`.
    #[error("tls destination {0:?} needs forward_tls_ca")]
    NoTlsRoots(String),
    /// Too many distinct destinations created by the script.
    #[error("more than {MAX_SCRIPT_DESTINATIONS} forward destinations")]
    TooManyDestinations,
    /// The destination's queue is full.
    #[error("forward queue full")]
    QueueFull,
    /// No tokio runtime to run the destination task on.
    #[error("no runtime for the forward task")]
    NoRuntime,
}

impl Forwarder {
    /// Compiles the rules and starts one task per configured destination (call inside a tokio
    /// runtime; the rules were validated by [`validate_rules`]).
    pub fn start(
        rules: &[ForwardRuleConfig],
        settings: ForwardSettings,
        counters: Arc<Counters>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, ConfigError> {
        let tls = match &settings.tls_ca {
            Some(ca) => {
                Some(tls_connector(ca).map_err(|e| ConfigError::invalid("forward_tls_ca", e))?)
            }
            None => None,
        };
        let forwarder = Forwarder {
            rules: Vec::new(),
            by_uri: Mutex::new(HashMap::new()),
            settings,
            tls,
            counters,
            shutdown,
        };
        let mut compiled = Vec::with_capacity(rules.len());
        for (i, rule) in rules.iter().enumerate() {
            let matcher = Matcher::compile(&rule.matches, &format!("forward[{i}].match"))?;
            let mut destinations = Vec::with_capacity(rule.to.len());
            for uri in &rule.to {
                let dest = forwarder
                    .destination(uri, usize::MAX)
                    .map_err(|e| ConfigError::invalid(format!("forward[{i}].to"), e.to_string()))?;
                destinations.push(dest);
            }
            compiled.push((matcher, destinations, rule.store));
        }
        Ok(Arc::new(Forwarder {
            rules: compiled,
            ..forwarder
        }))
    }

    /// Whether any forward rule is configured.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
    }

    /// The destination for `uri`, started on first use.
    fn destination(&self, uri: &str, cap: usize) -> Result<Arc<Destination>, ForwardError> {
        let mut map = self
            .by_uri
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(d) = map.get(uri) {
            return Ok(d.clone());
        }
        if map.len() >= cap {
            return Err(ForwardError::TooManyDestinations);
        }
        let target = Target::parse(uri).map_err(ForwardError::BadUri)?;
        let tls = match target.transport {
            Transport::Tls => Some(
                self.tls
                    .clone()
                    .ok_or_else(|| ForwardError::NoTlsRoots(uri.to_owned()))?,
            ),
            _ => None,
        };
        let handle = tokio::runtime::Handle::try_current().map_err(|_| ForwardError::NoRuntime)?;
        let (tx, rx) = mpsc::channel(self.settings.queue.max(1));
        handle.spawn(run_destination(
            target,
            tls,
            rx,
            self.counters.clone(),
            self.shutdown.clone(),
        ));
        let dest = Arc::new(Destination { tx });
        map.insert(uri.to_owned(), dest.clone());
        Ok(dest)
    }

    /// Kamailio `sip_capture_forward(uri)`: queues the raw packet for `uri`.
    pub fn forward_raw(&self, uri: &str, packet: &[u8]) -> Result<(), ForwardError> {
        let dest = self.destination(uri, MAX_SCRIPT_DESTINATIONS)?;
        self.enqueue(&dest, Outgoing::Raw(Bytes::copy_from_slice(packet)))
    }

    fn enqueue(&self, dest: &Destination, out: Outgoing) -> Result<(), ForwardError> {
        match dest.tx.try_send(out) {
            Ok(()) => Ok(()),
            Err(_) => {
                let total = self.counters.count_drop("forward_queue_full");
                if worth_logging(total) {
                    tracing::warn!(total, "forward queue full; packet dropped");
                }
                Err(ForwardError::QueueFull)
            }
        }
    }

    /// Applies the forward rules to a record: every matching rule's destinations get the packet
    /// (`raw`, the received HEP bytes, or the record encoded as HEP3 when it came from raw
    /// capture). Returns false when a matching rule says `store = false`.
    pub fn apply_rules(&self, record: &CaptureRecord, raw: Option<&[u8]>) -> bool {
        let mut store = true;
        let mut encoded: Option<Outgoing> = None;
        for (matcher, destinations, keep) in &self.rules {
            if !matcher.holds(record) {
                continue;
            }
            store &= *keep;
            let out = match (&encoded, raw) {
                (Some(out), _) => out.clone(),
                (None, Some(bytes)) => {
                    let out = Outgoing::Raw(Bytes::copy_from_slice(bytes));
                    encoded = Some(out.clone());
                    out
                }
                (None, None) => {
                    let mut buf = Vec::with_capacity(record.payload.len() + 96);
                    if let Err(e) = encode_record(record, self.settings.capture_id, &mut buf) {
                        let total = self.counters.count_drop("forward_unencodable");
                        if worth_logging(total) {
                            tracing::warn!(error = %e, total, "record not forwardable as HEP3");
                        }
                        continue;
                    }
                    let out = Outgoing::Hep3(Bytes::from(buf));
                    encoded = Some(out.clone());
                    out
                }
            };
            for dest in destinations {
                let _counted = self.enqueue(dest, out.clone());
            }
        }
        store
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use sipcapture_runtime::matching::MatchConfig;

    use super::*;

    #[tokio::test]
    async fn queued_packets_reach_a_udp_and_a_tcp_destination() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let counters = Arc::new(Counters::new(&crate::events::CATALOG));
        let rules = vec![ForwardRuleConfig {
            matches: MatchConfig {
                dst_port: vec![5080],
                ..Default::default()
            },
            to: vec![
                format!("sip:{}", udp.local_addr().unwrap()),
                format!("sip:{};transport=tcp", tcp.local_addr().unwrap()),
            ],
            store: false,
        }];
        let settings = ForwardSettings {
            queue: 16,
            tls_ca: None,
            capture_id: 1,
        };
        let shutdown = CancellationToken::new();
        let fwd = Forwarder::start(&rules, settings, counters.clone(), shutdown.clone()).unwrap();
        let v3 = include_bytes!("../../testdata/hep/hep3_kamailio_invite.bin");
        let mut record = CaptureRecord {
            dst_port: 5080,
            ..Default::default()
        };
        assert!(!fwd.apply_rules(&record, Some(v3)));
        record.dst_port = 5060;
        assert!(fwd.apply_rules(&record, Some(v3)), "no rule matched: store");

        let mut buf = [0u8; 2048];
        let n = tokio::task::spawn_blocking(move || udp.recv(&mut buf).map(|n| buf[..n].to_vec()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(n, v3);
        let (mut stream, _) = tcp.accept().await.unwrap();
        let mut got = vec![0u8; v3.len()];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut got)
            .await
            .unwrap();
        assert_eq!(got, v3);
        assert!(counters.get("forwarded") >= 1);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn tls_destinations_verify_the_peer_and_tcp_reconnects() {
        // A TLS HEP collector with a certificate for "localhost", trusted via forward_tls_ca.
        let dir = tempfile::tempdir().unwrap();
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        std::fs::write(&cert_file, cert.cert.pem()).unwrap();
        std::fs::write(&key_file, cert.signing_key.serialize_pem()).unwrap();
        let reloading =
            crate::source::tls::acceptor(&cert_file, &key_file, None, &CancellationToken::new())
                .unwrap();
        let acceptor = reloading.acceptor();
        let tls_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tls_port = tls_listener.local_addr().unwrap().port();
        let tcp_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let tcp_addr = tcp_listener.local_addr().unwrap();

        let counters = Arc::new(Counters::new(&crate::events::CATALOG));
        let shutdown = CancellationToken::new();
        let settings = ForwardSettings {
            queue: 16,
            tls_ca: Some(cert_file.clone()),
            capture_id: 1,
        };
        let fwd = Forwarder::start(&[], settings, counters.clone(), shutdown.clone()).unwrap();
        let v3 = include_bytes!("../../testdata/hep/hep3_kamailio_invite.bin");

        fwd.forward_raw(&format!("sip:localhost:{tls_port};transport=tls"), v3)
            .unwrap();
        let (stream, _) = tls_listener.accept().await.unwrap();
        let mut tls = acceptor.accept(stream).await.unwrap();
        let mut got = vec![0u8; v3.len()];
        tokio::io::AsyncReadExt::read_exact(&mut tls, &mut got)
            .await
            .unwrap();
        assert_eq!(got, v3);

        // TCP: the peer closes after the first packet; later packets arrive on a new connection.
        let tcp_uri = format!("sip:{tcp_addr};transport=tcp");
        fwd.forward_raw(&tcp_uri, v3).unwrap();
        let (mut first, _) = tcp_listener.accept().await.unwrap();
        tokio::io::AsyncReadExt::read_exact(&mut first, &mut got)
            .await
            .unwrap();
        drop(first);
        let mut second = None;
        for _ in 0..50 {
            // The first write after the close may still succeed (the RST comes back later):
            // keep sending until the forwarder notices and reconnects.
            let _queued = fwd.forward_raw(&tcp_uri, v3);
            if let Ok(Ok((s, _))) =
                tokio::time::timeout(Duration::from_millis(100), tcp_listener.accept()).await
            {
                second = Some(s);
                break;
            }
        }
        let mut second = second.expect("the forwarder reconnects");
        tokio::io::AsyncReadExt::read_exact(&mut second, &mut got)
            .await
            .unwrap();
        assert_eq!(got, v3);
        assert!(counters.get("forward_connects") >= 3);
        assert!(counters.get("forward_errors") >= 1);

        // A script destination over TLS without forward_tls_ca is refused.
        let plain = Forwarder::start(
            &[],
            ForwardSettings {
                queue: 1,
                tls_ca: None,
                capture_id: 1,
            },
            counters.clone(),
            shutdown.clone(),
        )
        .unwrap();
        assert!(matches!(
            plain.forward_raw("sips:localhost:1", v3),
            Err(ForwardError::NoTlsRoots(_))
        ));
        shutdown.cancel();
    }

    #[tokio::test]
    async fn packets_still_queued_at_shutdown_are_counted() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let counters = Arc::new(Counters::new(&crate::events::CATALOG));
        let shutdown = CancellationToken::new();
        let settings = ForwardSettings {
            queue: 8,
            tls_ca: None,
            capture_id: 1,
        };
        let fwd = Forwarder::start(&[], settings, counters.clone(), shutdown.clone()).unwrap();
        let uri = format!("sip:{addr};transport=tcp");
        for _ in 0..3 {
            fwd.forward_raw(&uri, b"HEP3\x00\x06").unwrap();
        }
        for _ in 0..100 {
            if counters.get("forward_connect_failed") >= 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        shutdown.cancel();
        let accounted = || {
            counters.get("dropped.forward_shutdown") + counters.get("dropped.forward_unreachable")
        };
        for _ in 0..100 {
            if accounted() == 3 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(accounted(), 3, "every queued packet is accounted for");
        assert_eq!(counters.get("forwarded"), 0);
    }
}
