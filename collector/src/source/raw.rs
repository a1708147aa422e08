//! The per-packet path shared by the live raw sources ([`super::mirror`], [`super::ipip`]): one
//! [`RawWorker`] per reader thread owns a [`Dissector`] (its own fragment and TCP state: with
//! `PACKET_FANOUT` the kernel keeps a flow on one socket, hence on one worker) and hands every
//! item to [`Ingest::dissected`]. Both also share Kamailio's `raw_socket_listen` ([`RawListen`])
//! and its port predicate ([`PortFilter`]).

use std::net::IpAddr;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sipcapture_proto::v1::InputKind;

use crate::decode::flow::{DissectLimits, Dissected, Dissector};
use crate::decode::frame::LinkType;
use crate::ingest::Ingest;

/// How often a worker times out fragments and idle TCP flows.
const EXPIRE_EVERY: Duration = Duration::from_secs(1);

/// Kamailio's `raw_socket_listen` value: `ip`, `ip:port` or `ip:portA-portB`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawListen {
    /// The address (bound to in IPIP mode; ignored in mirror mode, but it must parse).
    pub ip: IpAddr,
    /// The port filter.
    pub ports: PortFilter,
}

impl RawListen {
    /// Parses like Kamailio's `extract_host_port`: split at the last `:`, then the port
    /// specification at its last `-`. A bare address (IPv6 included) or `[v6]:port` also
    /// parses. The error says what is wrong, for a message naming `raw_socket_listen`.
    pub fn parse(value: &str) -> Result<Self, String> {
        if let Ok(ip) = value.parse::<IpAddr>() {
            return Ok(RawListen {
                ip,
                ports: PortFilter::ANY,
            });
        }
        let Some((host, spec)) = value.rsplit_once(':') else {
            return Err(format!(
                "{value:?} is not an IP address, ip:port or ip:portA-portB"
            ));
        };
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let ip = host
            .parse::<IpAddr>()
            .map_err(|_| format!("{host:?} is not an IPv4 or IPv6 address (bad RAW IP)"))?;
        let port = |s: &str| {
            s.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("{s:?} is not a port (1..=65535)"))
        };
        let range = match spec.rsplit_once('-') {
            Some((start, end)) => port(start)?..=port(end)?,
            None => {
                let p = port(spec)?;
                p..=p
            }
        };
        if range.is_empty() {
            return Err(format!("port range {spec:?} is empty (start above end)"));
        }
        Ok(RawListen {
            ip,
            ports: PortFilter { range: Some(range) },
        })
    }
}

/// Which UDP ports are captured: a datagram matches when its source OR destination port lies in
/// the inclusive range (Kamailio's userspace check); no range matches everything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortFilter {
    /// The inclusive range, or `None` for every port.
    pub range: Option<RangeInclusive<u16>>,
}

impl PortFilter {
    /// Every port.
    pub const ANY: PortFilter = PortFilter { range: None };

    /// Whether a datagram between these ports is captured.
    pub fn matches(&self, src_port: u16, dst_port: u16) -> bool {
        self.range
            .as_ref()
            .is_none_or(|r| r.contains(&src_port) || r.contains(&dst_port))
    }
}

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn raw_socket_listen_follows_kamailio_syntax() {
        let l = RawListen::parse("10.0.0.0:5060-5090").unwrap();
        assert_eq!(l.ip, "10.0.0.0".parse::<IpAddr>().unwrap());
        assert_eq!(l.ports.range, Some(5060..=5090));
        assert_eq!(
            RawListen::parse("0.0.0.0:5060").unwrap().ports.range,
            Some(5060..=5060)
        );
        // IPv6 without brackets (Kamailio: split at the last ':'), with brackets, bare.
        let v6 = RawListen::parse("fd00::1:5060-5061").unwrap();
        assert_eq!(v6.ip, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(v6.ports.range, Some(5060..=5061));
        assert_eq!(
            RawListen::parse("[fd00::1]:5070").unwrap().ports.range,
            Some(5070..=5070)
        );
        assert_eq!(RawListen::parse("fd00::1").unwrap().ports, PortFilter::ANY);
        assert_eq!(RawListen::parse("10.0.0.1").unwrap().ports, PortFilter::ANY);
        for bad in [
            "",
            "host:5060",
            "10.0.0.1:",
            "10.0.0.1:0",
            "10.0.0.1:5090-5060",
            "10.0.0.1:abc",
            "10.0.0.1:5060-70000",
        ] {
            assert!(RawListen::parse(bad).is_err(), "{bad:?} must not parse");
        }
    }

    #[test]
    fn port_filter_is_source_or_destination_inclusive() {
        let f = RawListen::parse("0.0.0.0:5060-5090").unwrap().ports;
        assert!(f.matches(5060, 40000));
        assert!(f.matches(40000, 5090));
        assert!(f.matches(5075, 5075));
        assert!(!f.matches(5059, 5091));
        assert!(!f.matches(9999, 40000));
        assert!(PortFilter::ANY.matches(1, 2));
    }
}
