//! Conversions next to the generated types.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::v1::{CaptureAction, CaptureState};

/// Encodes an address as the record's `bytes` form: 4 bytes for IPv4, 16 for IPv6.
pub fn ip_to_bytes(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(v4) => v4.octets().to_vec(),
        IpAddr::V6(v6) => v6.octets().to_vec(),
    }
}

/// Decodes the record's `bytes` address form; `None` for any length but 4 or 16.
pub fn ip_from_bytes(bytes: &[u8]) -> Option<IpAddr> {
    if let Ok(octets) = <[u8; 4]>::try_from(bytes) {
        return Some(IpAddr::V4(Ipv4Addr::from(octets)));
    }
    if let Ok(octets) = <[u8; 16]>::try_from(bytes) {
        return Some(IpAddr::V6(Ipv6Addr::from(octets)));
    }
    None
}

impl CaptureState {
    /// The state for an on/off flag.
    pub fn from_enabled(enabled: bool) -> Self {
        if enabled {
            CaptureState::Enabled
        } else {
            CaptureState::Disabled
        }
    }

    /// Kamailio's RPC reply text: "Enabled" or "Disabled" (empty when unknown).
    pub fn reply_text(self) -> &'static str {
        match self {
            CaptureState::Enabled => "Enabled",
            CaptureState::Disabled => "Disabled",
            CaptureState::Unspecified => "",
        }
    }
}

impl CaptureAction {
    /// The flag an action sets: `Some(true)` for ON, `Some(false)` for OFF, `None` otherwise.
    pub fn target(self) -> Option<bool> {
        match self {
            CaptureAction::On => Some(true),
            CaptureAction::Off => Some(false),
            CaptureAction::Check | CaptureAction::Unspecified => None,
        }
    }

    /// Parses Kamailio's RPC argument. Kamailio compares with `strncasecmp` over the keyword's
    /// length, so it is a case-insensitive prefix test ("ONxyz" means on).
    pub fn parse_kamailio(arg: &str) -> Option<Self> {
        let lower = arg.to_ascii_lowercase();
        if lower.starts_with("on") {
            Some(CaptureAction::On)
        } else if lower.starts_with("off") {
            Some(CaptureAction::Off)
        } else if lower.starts_with("check") {
            Some(CaptureAction::Check)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_bytes_round_trip() {
        for ip in ["192.0.2.1", "2001:db8::1", "::"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_from_bytes(&ip_to_bytes(ip)), Some(ip));
        }
        assert_eq!(ip_from_bytes(&[1, 2, 3]), None);
        assert_eq!(ip_from_bytes(&[]), None);
    }

    #[test]
    fn kamailio_action_prefix_rule() {
        assert_eq!(
            CaptureAction::parse_kamailio("ONxyz"),
            Some(CaptureAction::On)
        );
        assert_eq!(
            CaptureAction::parse_kamailio("Off"),
            Some(CaptureAction::Off)
        );
        assert_eq!(
            CaptureAction::parse_kamailio("check"),
            Some(CaptureAction::Check)
        );
        assert_eq!(CaptureAction::parse_kamailio("maybe"), None);
        assert_eq!(CaptureState::from_enabled(true).reply_text(), "Enabled");
        assert_eq!(CaptureState::from_enabled(false).reply_text(), "Disabled");
    }
}
