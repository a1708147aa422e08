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

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sipcapture_proto::ip_from_bytes;
use sipcapture_proto::v1::CaptureRecord;
use sipcapture_runtime::config::ConfigError;
use sipcapture_runtime::counters::{Counters, worth_logging};
use sipcapture_runtime::matching::{MatchConfig, Matcher};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_util::sync::CancellationToken;

use crate::decode::hep::{self, HepPacket, HepPayload};
use crate::events::{
    ForwardConnectFailed, ForwardConnected, ForwardSendFailed, Forwarded, InternalEvent,
};

/// Most destinations `sip_capture_forward` may create at run time (each is a task and a queue).
const MAX_SCRIPT_DESTINATIONS: usize = 64;
/// Longest wait between two reconnect attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Connect time-out of a TCP/TLS destination.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Transport of a forward destination (the URI's `;transport=` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One HEP packet per datagram (the default, as Kamailio).
    Udp,
    /// HEP3 frames on a TCP stream.
    Tcp,
    /// HEP3 frames on a TLS stream.
    Tls,
}

/// A parsed destination URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Host name or address (without IPv6 brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport.
    pub transport: Transport,
}

impl Target {
    /// Parses `sip:host[:port][;transport=udp|tcp|tls]` (also `sips:`, which means TLS, and a
    /// bare `host:port`). The port defaults to 5060 (5061 for TLS), as for a SIP URI.
    pub fn parse(uri: &str) -> Result<Self, String> {
        let uri = uri.trim();
        let (scheme_tls, rest) = if let Some(r) = uri.strip_prefix("sips:") {
            (true, r)
        } else if let Some(r) = uri.strip_prefix("sip:") {
            (false, r)
        } else {
            (false, uri)
        };
        let mut parts = rest.split(';');
        let hostport = parts.next().unwrap_or_default();
        // A user part (`sip:user@host`) is allowed and ignored.
        let hostport = hostport.rsplit_once('@').map_or(hostport, |(_, h)| h);
        let mut transport = if scheme_tls {
            Transport::Tls
        } else {
            Transport::Udp
        };
        for param in parts {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            if name.trim().eq_ignore_ascii_case("transport") {
                transport = match value.trim().to_ascii_lowercase().as_str() {
                    "udp" => Transport::Udp,
                    "tcp" => Transport::Tcp,
                    "tls" => Transport::Tls,
                    other => return Err(format!("{uri:?}: unsupported transport {other:?}")),
                };
            }
        }
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{uri:?}: unclosed IPv6 bracket"))?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        if host.is_empty() {
            return Err(format!("{uri:?}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{uri:?}: bad port {p:?}"))?,
            None if transport == Transport::Tls => 5061,
            None => 5060,
        };
        Ok(Target {
            host: host.to_owned(),
            port,
            transport,
        })
    }
}

/// One forward rule as configured (`[[forward]]`).
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardRuleConfig {
    /// Conditions, exactly as the storer's routing rules (`[[route]]`); an empty `match`
    /// matches every record.
    #[serde(rename = "match", default)]
    pub matches: MatchConfig,
    /// Destinations: `sip:host:port;transport=udp|tcp|tls` (Kamailio `sip_capture_forward`).
    pub to: Vec<String>,
    /// Also store matching records through this collector (default true). False makes the
    /// collector a pure relay for them (Kamailio's `sip_capture_forward(...); return 0;`).
    #[serde(default = "yes")]
    pub store: bool,
}

fn yes() -> bool {
    true
}

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

/// What to send: a received HEP packet, or a record to encode.
#[derive(Debug, Clone)]
pub enum Outgoing {
    /// The packet as received (forwarded byte-identical where the transport allows).
    Raw(Bytes),
    /// Already-encoded HEP3 (a raw-captured record).
    Hep3(Bytes),
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

/// Validates forward rules and the TLS settings; errors name the key (`forward[1].to`).
pub fn validate_rules(
    rules: &[ForwardRuleConfig],
    tls_ca: Option<&Path>,
) -> Result<(), ConfigError> {
    for (i, rule) in rules.iter().enumerate() {
        let key = format!("forward[{i}]");
        Matcher::compile(&rule.matches, &format!("{key}.match"))?;
        if rule.to.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.to"),
                "at least one destination",
            ));
        }
        for uri in &rule.to {
            let target =
                Target::parse(uri).map_err(|e| ConfigError::invalid(format!("{key}.to"), e))?;
            if target.transport == Transport::Tls && tls_ca.is_none() {
                return Err(ConfigError::invalid(
                    "forward_tls_ca",
                    format!("{key}.to: {uri:?} is a TLS destination"),
                ));
            }
        }
    }
    if let Some(ca) = tls_ca {
        tls_connector(ca).map_err(|e| ConfigError::invalid("forward_tls_ca", e))?;
    }
    Ok(())
}

fn tls_connector(ca: &Path) -> Result<TlsConnector, String> {
    use tokio_rustls::rustls::{ClientConfig, RootCertStore, crypto::ring};
    let certs = crate::source::tls::load_certs("forward_tls_ca", ca).map_err(|e| e.to_string())?;
    let mut roots = RootCertStore::empty();
    for cert in certs {
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", ca.display()))?;
    }
    let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
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

/// Encodes a record as HEP3 (the collector as a HEP agent): family, IP protocol, addresses,
/// ports, capture time, payload type, capture id (`capture_id`, or the record's own when it came
/// from HEP), correlation id, VLAN, node name and the payload.
pub fn encode_record(
    record: &CaptureRecord,
    capture_id: u32,
    out: &mut Vec<u8>,
) -> Result<(), hep::HepError> {
    let hep_meta = record.hep.as_ref();
    let ip_protocol = u8::try_from(record.ip_protocol).unwrap_or(0);
    let family = u8::try_from(record.family).unwrap_or(0);
    let ts_sec = u32::try_from(record.capture_time_us / 1_000_000).unwrap_or(u32::MAX);
    let ts_usec = u32::try_from(record.capture_time_us % 1_000_000).unwrap_or(0);
    let payload_type = hep_meta.map_or(1, |h| h.payload_type);
    let packet = HepPacket {
        version: 3,
        ip_family: Some(family),
        ip_protocol: Some(ip_protocol),
        src_ip: ip_from_bytes(&record.src_ip),
        dst_ip: ip_from_bytes(&record.dst_ip),
        src_port: u16::try_from(record.src_port).ok(),
        dst_port: u16::try_from(record.dst_port).ok(),
        ts_sec: Some(ts_sec),
        ts_usec: Some(ts_usec),
        proto_type: Some(u8::try_from(payload_type).unwrap_or(1)),
        capture_id: Some(
            hep_meta
                .filter(|h| h.has_capture_id)
                .map_or(capture_id, |h| h.capture_id),
        ),
        keep_alive: None,
        auth_key: None,
        payload: Some(HepPayload::Raw(&record.payload)),
        correlation_id: hep_meta
            .filter(|h| h.has_correlation_id)
            .map(|h| h.correlation_id.as_slice()),
        vlan_id: hep_meta
            .filter(|h| h.has_vlan_id)
            .and_then(|h| u16::try_from(h.vlan_id).ok()),
        node_name: hep_meta
            .map(|h| h.node_name.as_bytes())
            .filter(|n| !n.is_empty()),
        core_chunks: 0,
        chunk_area: &[],
    };
    hep::try_encode_v3(&packet, out)
}

/// The bytes to put on the wire for `out` over `transport`.
fn wire_bytes(out: &Outgoing, transport: Transport) -> Result<Bytes, hep::HepError> {
    match out {
        Outgoing::Hep3(b) => Ok(b.clone()),
        Outgoing::Raw(b) if transport == Transport::Udp => Ok(b.clone()),
        Outgoing::Raw(b) => {
            // A stream needs HEP3's length field: v1/v2 are re-encoded; HEP3/EEP1 go as received
            // (EEP1 frames on the same length field).
            if b.starts_with(hep::HEP3_MAGIC) || b.starts_with(hep::EEP1_MAGIC) {
                return Ok(b.clone());
            }
            let packet = hep::decode(b)?;
            let mut buf = Vec::with_capacity(b.len() + 64);
            hep::try_encode_v3(&packet, &mut buf)?;
            Ok(Bytes::from(buf))
        }
    }
}

async fn resolve(target: &Target) -> std::io::Result<SocketAddr> {
    if let Ok(ip) = target.host.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, target.port));
    }
    tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{} does not resolve", target.host)))
}

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

async fn connect(target: &Target, tls: Option<&TlsConnector>) -> std::io::Result<Conn> {
    let addr = resolve(target).await?;
    match target.transport {
        Transport::Udp => {
            let local: SocketAddr = if addr.is_ipv4() {
                SocketAddr::from(([0, 0, 0, 0], 0))
            } else {
                SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0))
            };
            let socket = UdpSocket::bind(local).await?;
            socket.connect(addr).await?;
            Ok(Conn::Udp(socket))
        }
        Transport::Tcp | Transport::Tls => {
            let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
                .await
                .map_err(|_| std::io::Error::other("connect timed out"))??;
            stream.set_nodelay(true)?;
            let Some(connector) = tls.filter(|_| target.transport == Transport::Tls) else {
                return Ok(Conn::Tcp(stream));
            };
            let name = rustls_pki_types::ServerName::try_from(target.host.clone())
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tls_stream = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(name, stream))
                .await
                .map_err(|_| std::io::Error::other("tls handshake timed out"))??;
            Ok(Conn::Tls(Box::new(tls_stream)))
        }
    }
}

async fn send(conn: &mut Conn, bytes: &[u8]) -> std::io::Result<()> {
    match conn {
        Conn::Udp(s) => s.send(bytes).await.map(|_| ()),
        Conn::Tcp(s) => s.write_all(bytes).await,
        Conn::Tls(s) => {
            s.write_all(bytes).await?;
            s.flush().await
        }
    }
}

/// At shutdown: what is still queued (and the packet held for a retry) is counted as
/// `dropped.forward_shutdown`, never lost silently.
fn abandon(name: &str, rx: &mut mpsc::Receiver<Outgoing>, held: bool, counters: &Counters) {
    rx.close();
    let mut left = u64::from(held);
    while rx.try_recv().is_ok() {
        left += 1;
    }
    if left > 0 {
        for _ in 0..left {
            counters.count_drop("forward_shutdown");
        }
        tracing::warn!(dest = %name, packets = left, "shutdown: forward queue not sent");
    }
}

/// One destination: connect (and reconnect with backoff), then send what the queue holds. A
/// packet whose send fails is retried once on the next connection.
async fn run_destination(
    target: Target,
    tls: Option<TlsConnector>,
    mut rx: mpsc::Receiver<Outgoing>,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
) {
    let name = format!("{}:{}", target.host, target.port);
    let mut conn: Option<Conn> = None;
    let mut backoff = Duration::from_millis(100);
    let mut pending: Option<(Bytes, bool)> = None;
    loop {
        let (bytes, retried) = match pending.take() {
            Some(p) => p,
            None => {
                let next = tokio::select! {
                    () = shutdown.cancelled() => None,
                    next = rx.recv() => next,
                };
                let Some(out) = next else {
                    abandon(&name, &mut rx, false, &counters);
                    return;
                };
                match wire_bytes(&out, target.transport) {
                    Ok(b) => (b, false),
                    Err(e) => {
                        counters.count_drop("forward_unencodable");
                        tracing::warn!(dest = %name, error = %e, "packet not forwardable");
                        continue;
                    }
                }
            }
        };
        if conn.is_none() {
            match connect(&target, tls.as_ref()).await {
                Ok(c) => {
                    conn = Some(c);
                    backoff = Duration::from_millis(100);
                    ForwardConnected.emit(&counters);
                }
                Err(e) => {
                    ForwardConnectFailed {
                        dest: &name,
                        error: &e,
                    }
                    .emit(&counters);
                    pending = Some((bytes, retried));
                    tokio::select! {
                        () = shutdown.cancelled() => {
                            abandon(&name, &mut rx, true, &counters);
                            return;
                        }
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    // While unreachable, the queue keeps filling; once full, new packets are
                    // counted as `dropped.forward_queue_full`. The held packet is dropped after
                    // one retry so a dead peer cannot pin it forever.
                    if retried {
                        pending = None;
                        counters.count_drop("forward_unreachable");
                    } else if let Some(p) = pending.as_mut() {
                        p.1 = true;
                    }
                    continue;
                }
            }
        }
        let Some(c) = conn.as_mut() else { continue };
        match send(c, &bytes).await {
            Ok(()) => Forwarded.emit(&counters),
            Err(e) => {
                conn = None;
                ForwardSendFailed {
                    dest: &name,
                    error: &e,
                }
                .emit(&counters);
                if !retried {
                    pending = Some((bytes, true));
                } else {
                    counters.count_drop("forward_send_failed");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::{HepMeta, RecordKind};

    #[test]
    fn uris_parse_like_kamailio_sip_uris() {
        let t = Target::parse("sip:10.0.0.1:9060").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("10.0.0.1", 9060, Transport::Udp)
        );
        let t = Target::parse("sip:hep.example.com:9061;transport=TCP").unwrap();
        assert_eq!((t.port, t.transport), (9061, Transport::Tcp));
        let t = Target::parse("sips:[2001:db8::1]").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("2001:db8::1", 5061, Transport::Tls)
        );
        let t = Target::parse("sip:x@h;transport=tls;lr").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.transport),
            ("h", 5061, Transport::Tls)
        );
        assert_eq!(Target::parse("sip:h").unwrap().port, 5060);
        assert!(Target::parse("sip::5060").is_err());
        assert!(Target::parse("sip:h:0").is_err());
        assert!(Target::parse("sip:h:99999").is_err());
        assert!(Target::parse("sip:h;transport=sctp").is_err());
    }

    #[test]
    fn rules_validate_by_key() {
        let rule = |to: &str| ForwardRuleConfig {
            to: vec![to.to_owned()],
            store: true,
            ..Default::default()
        };
        assert!(validate_rules(&[rule("sip:127.0.0.1:9060")], None).is_ok());
        let err = validate_rules(&[rule("sip:127.0.0.1:9060"), rule("sip:h:x")], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("forward[1].to"), "{err}");
        let err = validate_rules(&[rule("sip:h:1;transport=tls")], None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("forward_tls_ca"), "{err}");
    }

    #[test]
    fn raw_records_encode_as_hep3_that_decodes_back() {
        let record = CaptureRecord {
            capture_time_us: 1_700_000_000_123_456,
            family: 2,
            ip_protocol: 17,
            src_ip: vec![10, 0, 0, 1],
            src_port: 5060,
            dst_ip: vec![10, 0, 0, 2],
            dst_port: 5080,
            kind: RecordKind::Sip as i32,
            payload: b"OPTIONS sip:a@b SIP/2.0\r\n\r\n".to_vec(),
            ..Default::default()
        };
        let mut out = Vec::new();
        encode_record(&record, 2001, &mut out).unwrap();
        let p = hep::decode(&out).unwrap();
        assert_eq!(p.version, 3);
        assert_eq!(p.src_ip, Some("10.0.0.1".parse().unwrap()));
        assert_eq!(p.dst_port, Some(5080));
        assert_eq!((p.ts_sec, p.ts_usec), (Some(1_700_000_000), Some(123_456)));
        assert_eq!(p.capture_id, Some(2001));
        assert_eq!(p.proto_type, Some(1));
        assert_eq!(p.core_chunks, 11);
        assert_eq!(p.payload, Some(HepPayload::Raw(&record.payload[..])));

        // A record that came from HEP keeps its own capture id, correlation id and type.
        let mut from_hep = record.clone();
        from_hep.hep = Some(HepMeta {
            version: 3,
            has_capture_id: true,
            capture_id: 7,
            payload_type: 100,
            has_correlation_id: true,
            correlation_id: b"cid-1".to_vec(),
            ..Default::default()
        });
        let mut out = Vec::new();
        encode_record(&from_hep, 2001, &mut out).unwrap();
        let p = hep::decode(&out).unwrap();
        assert_eq!(p.capture_id, Some(7));
        assert_eq!(p.proto_type, Some(100));
        assert_eq!(p.correlation_id, Some(&b"cid-1"[..]));
    }

    #[test]
    fn streams_get_hep3_and_datagrams_the_original_bytes() {
        let v2 = include_bytes!("../testdata/hep/hep2_kamailio_invite.bin");
        let raw = Outgoing::Raw(Bytes::from_static(v2));
        assert_eq!(&wire_bytes(&raw, Transport::Udp).unwrap()[..], &v2[..]);
        let framed = wire_bytes(&raw, Transport::Tcp).unwrap();
        assert!(framed.starts_with(b"HEP3"));
        let p = hep::decode(&framed).unwrap();
        assert_eq!(p.capture_id, Some(2001));
        let v3 = include_bytes!("../testdata/hep/hep3_kamailio_invite.bin");
        let raw = Outgoing::Raw(Bytes::from_static(v3));
        assert_eq!(&wire_bytes(&raw, Transport::Tls).unwrap()[..], &v3[..]);
    }

    #[tokio::test]
    async fn queued_packets_reach_a_udp_and_a_tcp_destination() {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let counters = Arc::new(Counters::new("collector"));
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
        let v3 = include_bytes!("../testdata/hep/hep3_kamailio_invite.bin");
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

        let counters = Arc::new(Counters::new("collector"));
        let shutdown = CancellationToken::new();
        let settings = ForwardSettings {
            queue: 16,
            tls_ca: Some(cert_file.clone()),
            capture_id: 1,
        };
        let fwd = Forwarder::start(&[], settings, counters.clone(), shutdown.clone()).unwrap();
        let v3 = include_bytes!("../testdata/hep/hep3_kamailio_invite.bin");

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
        let counters = Arc::new(Counters::new("collector"));
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
