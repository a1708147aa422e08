//! The collector's one typed config (TOML file + `SIPCAPTURE_*` env + `--set` + flags), validated
//! at start-up with errors that name the key. Kamailio's modparam names are used where they mean
//! the same thing (`capture_node`, `hep_capture_on`, `callid_aleg_header`, ...).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sipcapture_runtime::config::{ConfigError, de};
use sipcapture_runtime::service::ServiceConfig;

use crate::sip::{ExtractConfig, TopohConfig};
use crate::source::ipip::IpipConfig;
use crate::source::mirror::MirrorConfig;
use crate::source::raw::{PortFilter, RawListen};

/// Default `max_inflated_payload`: Kamailio's receive buffer (BUF_SIZE, 64 KiB), the largest
/// message it ever handles; a small compressed packet cannot become a large row.
pub const DEFAULT_MAX_INFLATED_PAYLOAD: usize = 64 * 1024;

/// Longest `tcp_idle_timeout` / `tcp_frame_timeout`, seconds (a week).
/// The Lua function `nonsip_hook = 1` calls when `event_callback` is not set: the KEMI name of
/// Kamailio's `event_route[sipcapture:request]` (Kamailio itself has no default for KEMI and
/// runs that native route; `ksr_<module>_event` is the naming its KEMI event callbacks follow).
pub const DEFAULT_EVENT_CALLBACK: &str = "ksr_sipcapture_event";

const MAX_TCP_TIMEOUT: u64 = 7 * 86_400;

/// Collector configuration.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CollectorConfig {
    /// This collector's id (the records' origin and the delivery stream's owner). Default:
    /// `collector-<hostname>`.
    pub collector_id: String,
    /// The keys every service shares (gRPC listener, TLS, auth token, capture_on, logs,
    /// metrics; flat in the file as before, or `[service]`). The collector's `auth_token` is required on StatusService.SetStatus and sent to control.
    pub service: ServiceConfig,
    /// Control service URL to register with (optional): the collector keeps a Watch stream open
    /// and applies the fleet's capture status.
    pub control: Option<String>,
    /// URL control uses to reach this collector's StatusService (default: the address control
    /// sees the collector connect from, with the `grpc_listen` port).
    pub advertise_url: Option<String>,
    /// Storer endpoints (`http://host:port`).
    pub storer: Vec<String>,
    /// Storer DNS names (`host:port`, e.g. a Kubernetes headless Service), re-resolved every
    /// `storer_dns_refresh` seconds; every address found is an endpoint too.
    pub storer_dns: Vec<String>,
    /// Seconds between re-resolutions of `storer_dns`.
    pub storer_dns_refresh: u64,
    /// How records are spread over storers: `balanced` (lanes spread evenly over the healthy
    /// storers) or `call_id` (all records of a Call-ID on the same storer, consistent hashing).
    pub storer_placement: crate::export::storers::Placement,
    /// Delivery lanes (parallel streams, each with its own sequence and spool). 0: one per
    /// static storer endpoint, or 4 with `storer_dns`.
    pub storer_lanes: usize,
    /// HEP listen address, used for UDP and TCP.
    pub hep_listen: SocketAddr,
    /// Receive HEP over UDP.
    #[serde(deserialize_with = "de::flag")]
    pub hep_udp: bool,
    /// Receive HEP3 over TCP (stream framing by the HEP3 length field).
    #[serde(deserialize_with = "de::flag")]
    pub hep_tcp: bool,
    /// Kamailio `hep_capture_on`: HEP inputs on. (Kamailio defaults to 0; the collector exists to
    /// receive HEP, so we default to on.)
    #[serde(deserialize_with = "de::flag")]
    pub hep_capture_on: bool,
    /// UDP sockets sharing the port with SO_REUSEPORT, each with its own receive task
    /// (0 = one per core).
    pub udp_sockets: usize,
    /// SO_RCVBUF per UDP socket, bytes (the kernel may cap it at net.core.rmem_max).
    pub udp_recv_buffer: usize,
    /// Largest HEP3-over-TCP frame accepted, bytes (HEP3's length field allows 65535).
    pub tcp_max_frame: usize,
    /// Concurrent HEP TCP connections; more wait in the accept queue.
    pub tcp_max_connections: usize,
    /// Concurrent HEP TCP + TLS connections from one source IP address (loopback included);
    /// more are closed at once and counted (`tcp_refused_per_ip`).
    pub tcp_max_connections_per_ip: usize,
    /// A HEP TCP connection idle this long (seconds) is closed.
    pub tcp_idle_timeout: u64,
    /// Seconds a HEP frame over TCP/TLS may take from its first byte to its last; a frame
    /// still incomplete then is dropped (`dropped.tcp_frame_timeout`) and its connection
    /// closed, so a sender dripping bytes cannot hold a connection forever.
    pub tcp_frame_timeout: u64,
    /// Cap on an inflated compressed payload (chunk 0x0010), bytes; a payload inflating past
    /// it is dropped and counted. Default 65536 ([`DEFAULT_MAX_INFLATED_PAYLOAD`]).
    pub max_inflated_payload: usize,
    /// HEP3-over-TLS listen address (TCP framing inside TLS); off when unset. Needs
    /// `hep_tls_cert` and `hep_tls_key`. Shares `tcp_max_frame`, `tcp_max_connections`,
    /// `tcp_max_connections_per_ip`, `tcp_frame_timeout` and `tcp_idle_timeout` (which also
    /// bounds the TLS handshake) with the TCP listener.
    pub hep_tls_listen: Option<SocketAddr>,
    /// PEM file with the TLS certificate chain (server certificate first).
    pub hep_tls_cert: Option<PathBuf>,
    /// PEM file with the TLS private key (PKCS#8, PKCS#1 or SEC1).
    pub hep_tls_key: Option<PathBuf>,
    /// When set, HEP3 packets whose auth key (chunk 0x000e) differs are dropped and counted.
    pub hep_auth_key: Option<String>,
    /// Kamailio `capture_node`: the `node` column (`capture_node:captid` when HEP carried a time).
    pub capture_node: String,
    /// Kamailio `callid_aleg_header`: `;`-separated header names, first present wins.
    pub callid_aleg_header: String,
    /// Kamailio `custom_field1_header`.
    pub custom_field1_header: String,
    /// Kamailio `custom_field2_header`.
    pub custom_field2_header: String,
    /// Kamailio `custom_field3_header`.
    pub custom_field3_header: String,
    /// Kamailio `capture_bad_msgs`: store messages with unparsable From/To/Contact, flagged.
    #[serde(deserialize_with = "de::flag")]
    pub capture_bad_msgs: bool,
    /// Kamailio `topoh_unmask`: unmask topoh-masked Call-IDs.
    #[serde(deserialize_with = "de::flag")]
    pub topoh_unmask: bool,
    /// topoh `mask_key`.
    pub mask_key: String,
    /// topoh `callid_prefix`.
    pub callid_prefix: String,
    /// Records per batch sent to a storer.
    pub batch_max_records: usize,
    /// Payload bytes per batch (keeps gRPC messages well under the limits).
    pub batch_max_bytes: usize,
    /// A non-empty batch is sent after this many milliseconds at the latest.
    pub batch_max_delay_ms: u64,
    /// Records buffered between the inputs and the exporter; when full, inputs wait
    /// (backpressure) and the kernel socket buffers absorb bursts.
    pub queue_capacity: usize,
    /// Batches sent but not yet acknowledged (the in-memory window). Beyond it batches go to the
    /// spool, or, without a spool, the exporter stops reading input.
    pub max_unacked_batches: usize,
    /// Directory of the on-disk spool (batches beyond the window while storers are slow or
    /// down, and unacknowledged ones at shutdown). Empty: no spool.
    pub spool_dir: std::path::PathBuf,
    /// Spool size cap, bytes; beyond it records are dropped and counted (`dropped.spool_full`).
    pub spool_max_bytes: u64,
    /// Spool segment file size, bytes.
    pub spool_segment_bytes: u64,
    /// Kamailio `raw_moni_capture_on`: capture SIP over UDP from a mirror (SPAN) port with a
    /// packet socket on `raw_interface` (IPv4, IPv6, VLAN/QinQ). Needs root or CAP_NET_RAW.
    #[serde(deserialize_with = "de::flag")]
    pub raw_moni_capture_on: bool,
    /// Kamailio `raw_interface`: the interface raw capture reads (e.g. `eth1`). Avoid `lo`: a
    /// packet socket sees every loopback datagram twice.
    pub raw_interface: String,
    /// Kamailio `raw_socket_listen`: `ip`, `ip:port` or `ip:portA-portB`. Datagrams whose source
    /// OR destination port is in the (inclusive) range are captured; no port: every port. The
    /// IP must parse but mirror mode ignores it.
    pub raw_socket_listen: String,
    /// Kamailio `promiscuous_on`: put `raw_interface` in promiscuous mode while capturing.
    #[serde(deserialize_with = "de::flag")]
    pub promiscuous_on: bool,
    /// Kamailio `raw_ipip_capture_on`: capture SIP carried in IP-in-IP (protocol 4) packets sent
    /// to this host, with a raw socket bound to the `raw_socket_listen` IPv4 address (none or
    /// `0.0.0.0`: every local address). Needs root or CAP_NET_RAW. May run together with
    /// `raw_moni_capture_on`.
    #[serde(deserialize_with = "de::flag")]
    pub raw_ipip_capture_on: bool,
    /// Kamailio `raw_moni_bpf_on`: filter mirror frames in the kernel by the
    /// `raw_socket_listen` port range (classic BPF; IPv4, IPv6, VLAN/QinQ, UDP/TCP/SCTP;
    /// fragments and tunnels pass). Needs a port range.
    #[serde(deserialize_with = "de::flag")]
    pub raw_moni_bpf_on: bool,
    /// Kamailio `raw_sock_children`: mirror-capture reader threads (1..=64). Above 1 each has its
    /// own packet socket in a `PACKET_FANOUT` group (flow hash, IPv4 defragmented first), so a
    /// flow and its fragments stay on one reader.
    pub raw_sock_children: usize,
    /// HEP packets per second accepted from one source IP (UDP datagrams and TCP/TLS frames
    /// alike; fractions allowed, 0.1 = one per 10 s); excess is dropped and counted as
    /// `dropped.rate_limited`. 0: no rate limit.
    pub hep_rate_limit: f64,
    /// Packets a source may send at once above its rate (token bucket size). 0 with a rate:
    /// the rate itself (one second of traffic).
    pub hep_rate_burst: u32,
    /// Sources tracked by the rate limiter; when full, the source idle the longest is forgotten
    /// (it starts again with a full burst).
    pub hep_rate_sources: usize,
    /// Kamailio `nonsip_hook`: run the Lua hook (`script_file`, `event_callback`) on every HEP
    /// packet before it becomes a record (docs/SCRIPTING.md).
    #[serde(deserialize_with = "de::flag")]
    pub nonsip_hook: bool,
    /// The Lua script of the hook (Kamailio's KEMI script file).
    pub script_file: Option<PathBuf>,
    /// Kamailio `event_callback`: the Lua function called per packet with the event name
    /// `"sipcapture:request"` and the packet object (default [`DEFAULT_EVENT_CALLBACK`]).
    pub event_callback: String,
    /// Longest a hook call may run, milliseconds; a call that runs longer is aborted and counted
    /// as a script error (the packet takes the default path).
    pub script_timeout_ms: u64,
    /// Memory cap of each Lua state, bytes (0: none).
    pub script_memory_limit: usize,
    /// Forward rules (`[[forward]]`): records matching `match` (the storer's routing-rule
    /// conditions) are sent as HEP to every `to` URI (`sip:host:port;transport=udp|tcp|tls`).
    pub forward: Vec<crate::forward::ForwardRuleConfig>,
    /// Packets queued per forward destination; beyond it packets are dropped and counted
    /// (`dropped.forward_queue_full`).
    pub forward_queue: usize,
    /// PEM file of the CA certificates that TLS forward destinations are verified against.
    pub forward_tls_ca: Option<PathBuf>,
    /// Kamailio siptrace `hep_capture_id`: the capture agent id (chunk 0x000c) of HEP3 packets
    /// encoded from raw capture for forwarding.
    pub hep_capture_id: u32,
}

impl Default for CollectorConfig {
    fn default() -> Self {
        CollectorConfig {
            collector_id: format!("collector-{}", sipcapture_runtime::config::host_name()),
            service: ServiceConfig::listening_on(SocketAddr::from(([0, 0, 0, 0], 9062))),
            control: None,
            advertise_url: None,
            storer: vec!["http://127.0.0.1:9063".to_owned()],
            storer_dns: Vec::new(),
            storer_dns_refresh: 30,
            storer_placement: crate::export::storers::Placement::Balanced,
            storer_lanes: 0,
            hep_listen: SocketAddr::from(([0, 0, 0, 0], 9060)),
            hep_udp: true,
            hep_tcp: true,
            hep_capture_on: true,
            udp_sockets: 0,
            udp_recv_buffer: 8 * 1024 * 1024,
            tcp_max_frame: 65_535,
            tcp_max_connections: 1024,
            tcp_max_connections_per_ip: 64,
            tcp_idle_timeout: 60,
            tcp_frame_timeout: 10,
            max_inflated_payload: DEFAULT_MAX_INFLATED_PAYLOAD,
            hep_tls_listen: None,
            hep_tls_cert: None,
            hep_tls_key: None,
            hep_auth_key: None,
            capture_node: "homer01".to_owned(),
            callid_aleg_header: "X-CID".to_owned(),
            custom_field1_header: "Mac".to_owned(),
            custom_field2_header: "IP".to_owned(),
            custom_field3_header: "Port".to_owned(),
            capture_bad_msgs: false,
            topoh_unmask: false,
            mask_key: "aL9.n8~Hm]Z".to_owned(),
            callid_prefix: "!!:".to_owned(),
            batch_max_records: 500,
            batch_max_bytes: 4 * 1024 * 1024,
            batch_max_delay_ms: 100,
            queue_capacity: 65_536,
            max_unacked_batches: 32,
            spool_dir: std::path::PathBuf::from("sipcapture-spool"),
            spool_max_bytes: 1024 * 1024 * 1024,
            spool_segment_bytes: 16 * 1024 * 1024,
            raw_moni_capture_on: false,
            raw_interface: String::new(),
            raw_socket_listen: String::new(),
            promiscuous_on: false,
            raw_ipip_capture_on: false,
            raw_moni_bpf_on: false,
            raw_sock_children: 1,
            hep_rate_limit: 0.0,
            hep_rate_burst: 0,
            hep_rate_sources: 65_536,
            nonsip_hook: false,
            script_file: None,
            event_callback: DEFAULT_EVENT_CALLBACK.to_owned(),
            script_timeout_ms: 100,
            script_memory_limit: 64 * 1024 * 1024,
            forward: Vec::new(),
            forward_queue: 10_000,
            forward_tls_ca: None,
            hep_capture_id: 1,
        }
    }
}

impl CollectorConfig {
    /// Checks ranges; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.service.validate()?;
        if self.storer.is_empty() && self.storer_dns.is_empty() {
            return Err(ConfigError::invalid(
                "storer",
                "at least one storer endpoint (storer or storer_dns) is needed",
            ));
        }
        for name in &self.storer_dns {
            let ok = name
                .rsplit_once(':')
                .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
            if !ok {
                return Err(ConfigError::invalid(
                    "storer_dns",
                    format!("{name:?} is not host:port"),
                ));
            }
        }
        if self.storer_dns_refresh == 0 {
            return Err(ConfigError::invalid(
                "storer_dns_refresh",
                "must be at least 1",
            ));
        }
        for url in &self.storer {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::invalid(
                    "storer",
                    format!("{url:?} is not an http:// or https:// URL"),
                ));
            }
        }
        let positive = [
            ("batch_max_records", self.batch_max_records),
            ("batch_max_bytes", self.batch_max_bytes),
            ("queue_capacity", self.queue_capacity),
            ("max_unacked_batches", self.max_unacked_batches),
            ("tcp_max_connections", self.tcp_max_connections),
            (
                "tcp_max_connections_per_ip",
                self.tcp_max_connections_per_ip,
            ),
            ("hep_rate_sources", self.hep_rate_sources),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err(ConfigError::invalid(key, "must be at least 1"));
            }
        }
        if !self.hep_rate_limit.is_finite() || self.hep_rate_limit < 0.0 {
            return Err(ConfigError::invalid(
                "hep_rate_limit",
                "must be a number of packets per second >= 0",
            ));
        }
        for (key, value) in [
            ("tcp_idle_timeout", self.tcp_idle_timeout),
            ("tcp_frame_timeout", self.tcp_frame_timeout),
        ] {
            if !(1..=MAX_TCP_TIMEOUT).contains(&value) {
                return Err(ConfigError::invalid(
                    key,
                    format!("must be within 1..={MAX_TCP_TIMEOUT} seconds"),
                ));
            }
        }
        if !(6..=65_535).contains(&self.tcp_max_frame) {
            return Err(ConfigError::invalid(
                "tcp_max_frame",
                "must be within 6..=65535",
            ));
        }
        if self.hep_tls_listen.is_some() {
            for (key, value) in [
                ("hep_tls_cert", &self.hep_tls_cert),
                ("hep_tls_key", &self.hep_tls_key),
            ] {
                if value.is_none() {
                    return Err(ConfigError::invalid(key, "hep_tls_listen needs it"));
                }
            }
        }
        if self.capture_node.is_empty() {
            return Err(ConfigError::invalid("capture_node", "must not be empty"));
        }
        if self.topoh_unmask && self.mask_key.is_empty() {
            return Err(ConfigError::invalid(
                "mask_key",
                "topoh_unmask needs a mask_key",
            ));
        }
        self.validate_raw()?;
        self.validate_hooks()?;
        Ok(())
    }

    /// Checks the hook and forwarding keys (Kamailio names where they exist).
    fn validate_hooks(&self) -> Result<(), ConfigError> {
        if self.nonsip_hook {
            let Some(file) = &self.script_file else {
                return Err(ConfigError::invalid(
                    "script_file",
                    "nonsip_hook = 1 needs the Lua script file",
                ));
            };
            if !file.is_file() {
                return Err(ConfigError::invalid(
                    "script_file",
                    format!("{} is not a readable file", file.display()),
                ));
            }
            if self.event_callback.trim().is_empty() {
                return Err(ConfigError::invalid(
                    "event_callback",
                    format!(
                        "must name the Lua function to call (leave it out for \
                         {DEFAULT_EVENT_CALLBACK})"
                    ),
                ));
            }
            if self.script_timeout_ms == 0 {
                return Err(ConfigError::invalid(
                    "script_timeout_ms",
                    "must be at least 1",
                ));
            }
        }
        if self.forward_queue == 0 {
            return Err(ConfigError::invalid("forward_queue", "must be at least 1"));
        }
        crate::forward::validate_rules(&self.forward, self.forward_tls_ca.as_deref())
    }

    /// The hook settings when `nonsip_hook` is on (after [`Self::validate`]).
    pub fn hook_settings(&self) -> Option<crate::hook::HookSettings> {
        if !self.nonsip_hook {
            return None;
        }
        Some(crate::hook::HookSettings {
            script_file: self.script_file.clone()?,
            event_callback: self.event_callback.trim().to_owned(),
            timeout: std::time::Duration::from_millis(self.script_timeout_ms),
            memory_limit: self.script_memory_limit,
            states: std::thread::available_parallelism().map_or(2, |n| n.get() + 1),
        })
    }

    /// Checks the raw-capture keys (Kamailio names).
    fn validate_raw(&self) -> Result<(), ConfigError> {
        if !self.raw_socket_listen.is_empty() {
            RawListen::parse(&self.raw_socket_listen)
                .map_err(|message| ConfigError::invalid("raw_socket_listen", message))?;
        }
        if self.raw_moni_capture_on && self.raw_interface.is_empty() {
            return Err(ConfigError::invalid(
                "raw_interface",
                "raw_moni_capture_on needs the interface to capture on",
            ));
        }
        if !(1..=64).contains(&self.raw_sock_children) {
            return Err(ConfigError::invalid(
                "raw_sock_children",
                "must be within 1..=64",
            ));
        }
        let listen = RawListen::parse(&self.raw_socket_listen).ok();
        if self.raw_moni_capture_on
            && self.raw_moni_bpf_on
            && listen.as_ref().is_none_or(|l| l.ports.range.is_none())
        {
            return Err(ConfigError::invalid(
                "raw_moni_bpf_on",
                "the kernel filter needs a port or port range in raw_socket_listen \
                 (ip:port or ip:portA-portB)",
            ));
        }
        if self.raw_ipip_capture_on && listen.as_ref().is_some_and(|l| l.ip.is_ipv6()) {
            return Err(ConfigError::invalid(
                "raw_socket_listen",
                "raw_ipip_capture_on binds an IPv4 raw socket: use an IPv4 address (or 0.0.0.0)",
            ));
        }
        Ok(())
    }

    /// The IPIP-capture settings when `raw_ipip_capture_on` is set (after [`Self::validate`]).
    pub fn ipip_config(&self) -> Option<IpipConfig> {
        if !self.raw_ipip_capture_on {
            return None;
        }
        let listen = RawListen::parse(&self.raw_socket_listen).ok();
        let bind = match listen.as_ref().map(|l| l.ip) {
            Some(std::net::IpAddr::V4(ip)) if !ip.is_unspecified() => Some(ip),
            _ => None,
        };
        Some(IpipConfig {
            bind,
            ports: listen.map(|l| l.ports).unwrap_or(PortFilter::ANY),
        })
    }

    /// The mirror-capture settings when `raw_moni_capture_on` is set (after [`Self::validate`]).
    pub fn mirror_config(&self) -> Option<MirrorConfig> {
        if !self.raw_moni_capture_on {
            return None;
        }
        let ports = RawListen::parse(&self.raw_socket_listen)
            .map(|l| l.ports)
            .unwrap_or(PortFilter::ANY);
        Some(MirrorConfig {
            interface: self.raw_interface.clone(),
            ports,
            promiscuous: self.promiscuous_on,
            bpf: self.raw_moni_bpf_on,
            children: self.raw_sock_children,
        })
    }

    /// The SIP extraction settings.
    pub fn extract_config(&self) -> ExtractConfig {
        let mut cfg = ExtractConfig::new(
            ExtractConfig::parse_aleg_list(&self.callid_aleg_header),
            [
                self.custom_field1_header.clone(),
                self.custom_field2_header.clone(),
                self.custom_field3_header.clone(),
            ],
        );
        cfg.capture_bad_msgs = self.capture_bad_msgs;
        cfg.topoh = self.topoh_unmask.then(|| TopohConfig {
            mask_key: self.mask_key.clone(),
            callid_prefix: self.callid_prefix.clone(),
        });
        cfg
    }

    /// Number of delivery lanes.
    pub fn lane_count(&self) -> usize {
        if self.storer_lanes > 0 {
            return self.storer_lanes;
        }
        if self.storer_dns.is_empty() {
            self.storer.len().max(1)
        } else {
            4
        }
    }

    /// Number of UDP receive sockets to open.
    pub fn udp_socket_count(&self) -> usize {
        if self.udp_sockets > 0 {
            return self.udp_sockets;
        }
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod raw_capture_tests {
    use super::*;

    fn invalid_key(config: &CollectorConfig) -> String {
        match config.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("expected an invalid key, got {other:?}"),
        }
    }

    #[test]
    fn raw_keys_are_validated_by_name() {
        let mut c = CollectorConfig::default();
        assert!(c.validate().is_ok());
        assert!(c.mirror_config().is_none());

        c.raw_moni_capture_on = true;
        assert_eq!(invalid_key(&c), "raw_interface");

        c.raw_interface = "eth1".to_owned();
        c.raw_socket_listen = "bad-ip:5060".to_owned();
        assert_eq!(invalid_key(&c), "raw_socket_listen");

        c.raw_socket_listen = "10.0.0.0:5060-5090".to_owned();
        c.promiscuous_on = true;
        c.validate().unwrap();
        let m = c.mirror_config().unwrap();
        assert_eq!(m.interface, "eth1");
        assert_eq!(m.ports.range, Some(5060..=5090));
        assert!(m.promiscuous);

        c.raw_socket_listen = String::new();
        assert_eq!(c.mirror_config().unwrap().ports, PortFilter::ANY);
    }

    #[test]
    fn hep_tcp_limits_are_validated_by_name() {
        let defaults = CollectorConfig::default();
        assert_eq!(
            (
                defaults.tcp_max_connections_per_ip,
                defaults.tcp_idle_timeout,
                defaults.tcp_frame_timeout
            ),
            (64, 60, 10)
        );
        type Break = fn(&mut CollectorConfig);
        let cases: [(&str, Break); 4] = [
            ("tcp_max_connections_per_ip", |c| {
                c.tcp_max_connections_per_ip = 0;
            }),
            ("tcp_idle_timeout", |c| c.tcp_idle_timeout = 0),
            ("tcp_frame_timeout", |c| c.tcp_frame_timeout = 0),
            ("tcp_frame_timeout", |c| c.tcp_frame_timeout = u64::MAX),
        ];
        for (key, break_it) in cases {
            let mut c = CollectorConfig::default();
            break_it(&mut c);
            assert_eq!(invalid_key(&c), key);
        }
    }

    #[test]
    fn bpf_children_and_ipip_keys_are_validated_by_name() {
        let mut c = CollectorConfig {
            raw_moni_capture_on: true,
            raw_interface: "eth1".to_owned(),
            raw_moni_bpf_on: true,
            ..CollectorConfig::default()
        };
        // The kernel filter needs a port range.
        assert_eq!(invalid_key(&c), "raw_moni_bpf_on");
        c.raw_socket_listen = "10.0.0.1".to_owned();
        assert_eq!(invalid_key(&c), "raw_moni_bpf_on");
        c.raw_socket_listen = "10.0.0.1:5060-5090".to_owned();
        c.validate().unwrap();
        let m = c.mirror_config().unwrap();
        assert!(m.bpf);
        assert_eq!(m.children, 1);

        for bad in [0, 65] {
            c.raw_sock_children = bad;
            assert_eq!(invalid_key(&c), "raw_sock_children");
        }
        c.raw_sock_children = 4;
        assert_eq!(c.mirror_config().unwrap().children, 4);

        // IPIP binds the IPv4 address of raw_socket_listen; 0.0.0.0 or none binds nothing.
        assert!(c.ipip_config().is_none());
        c.raw_ipip_capture_on = true;
        let ipip = c.ipip_config().unwrap();
        assert_eq!(ipip.bind, Some(std::net::Ipv4Addr::new(10, 0, 0, 1)));
        assert_eq!(ipip.ports.range, Some(5060..=5090));
        c.raw_socket_listen = "0.0.0.0:5060".to_owned();
        assert_eq!(c.ipip_config().unwrap().bind, None);
        c.raw_socket_listen = String::new();
        c.raw_moni_bpf_on = false;
        assert_eq!(c.ipip_config().unwrap().ports, PortFilter::ANY);
        c.raw_socket_listen = "fd00::1:5060".to_owned();
        assert_eq!(invalid_key(&c), "raw_socket_listen");
    }

    #[test]
    fn hook_and_forward_keys_are_validated_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("hook.lua");
        let mut c = CollectorConfig {
            nonsip_hook: true,
            ..CollectorConfig::default()
        };
        assert_eq!(invalid_key(&c), "script_file");
        c.script_file = Some(script.clone());
        assert_eq!(invalid_key(&c), "script_file", "missing file");
        std::fs::write(&script, "function f() return 1 end").unwrap();
        // Without event_callback the hook calls ksr_sipcapture_event; an empty name is refused.
        c.validate().unwrap();
        assert_eq!(
            c.hook_settings().unwrap().event_callback,
            "ksr_sipcapture_event"
        );
        c.event_callback = " ".to_owned();
        assert_eq!(invalid_key(&c), "event_callback");
        c.event_callback = "f".to_owned();
        c.validate().unwrap();
        assert_eq!(c.hook_settings().unwrap().event_callback, "f");
        c.forward_queue = 0;
        assert_eq!(invalid_key(&c), "forward_queue");
        c.forward_queue = 10;

        // Kamailio's names and the forward rules, from TOML.
        let text = format!(
            "nonsip_hook = 1\nscript_file = {:?}\nevent_callback = \"f\"\n\
             [[forward]]\nmatch = {{ method = \"INVITE\" }}\nto = [\"sip:10.0.0.1:9060\"]\n",
            script.display().to_string()
        );
        let parsed: CollectorConfig = toml::from_str(&text).unwrap();
        parsed.validate().unwrap();
        assert_eq!(parsed.forward.len(), 1);
        assert!(parsed.forward[0].store);
        let bad = text.replace("sip:10.0.0.1:9060", "sip:10.0.0.1:x");
        let parsed: CollectorConfig = toml::from_str(&bad).unwrap();
        assert_eq!(invalid_key(&parsed), "forward[0].to");
    }
}
