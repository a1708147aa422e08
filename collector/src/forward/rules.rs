//! The forward rules as configured (`[[forward]]`): conditions and destination URIs
//! (`sip:host:port;transport=udp|tcp|tls`, Kamailio `sip_capture_forward`), validated at
//! start-up with errors that name the key.

use std::path::Path;

use sipcapture_runtime::config::ConfigError;
use sipcapture_runtime::matching::{MatchConfig, Matcher};

use super::tls::tls_connector;

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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
}
