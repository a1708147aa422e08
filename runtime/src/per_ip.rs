//! Connections per source IP address: a cap shared by the listeners of one service (the gRPC
//! listener; the collector's HEP TCP and TLS listeners), so that one address cannot take every
//! connection slot. TCP needs a completed handshake, so the source address is not spoofed.
//!
//! Loopback is an address like any other: the defaults are high enough for `sipcapture up`
//! (its collector, control and the CLI all connect from 127.0.0.1).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections per source address, each at most `max`.
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl PerIpLimit {
    /// A limit of `max` connections per address (at least 1).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(PerIpLimit {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for one more connection from `ip`, or `None` when `ip` already holds `max`.
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let ip = canonical(ip);
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limit: Arc::clone(self),
            ip,
        })
    }

    /// Connections open from `ip`.
    pub fn open(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&canonical(ip)).copied().unwrap_or(0)
    }

    /// The cap per address.
    pub fn max(&self) -> usize {
        self.max
    }
}

/// An IPv4 client on a dual-stack socket shows up as `::ffff:a.b.c.d`: count it as `a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 @ IpAddr::V4(_) => v4,
    }
}

/// One connection's place in its address's count, given back when dropped.
#[derive(Debug)]
pub struct IpSlot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .limit
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // The map holds only addresses with open connections.
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn each_address_gets_its_own_cap_and_slots_come_back() {
        let limit = PerIpLimit::new(2);
        let a = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1));
        let b = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2));
        let a1 = limit.try_acquire(a).unwrap();
        let _a2 = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none(), "third from a");
        let _b1 = limit.try_acquire(b).unwrap();
        assert_eq!(limit.open(a), 2);
        drop(a1);
        assert_eq!(limit.open(a), 1);
        let _a3 = limit.try_acquire(a).unwrap();
        assert!(limit.try_acquire(a).is_none());
    }

    #[test]
    fn mapped_ipv4_counts_as_ipv4_and_empty_entries_go() {
        let limit = PerIpLimit::new(1);
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let mapped = IpAddr::V6(Ipv4Addr::LOCALHOST.to_ipv6_mapped());
        let slot = limit.try_acquire(v4).unwrap();
        assert!(limit.try_acquire(mapped).is_none());
        assert!(limit.try_acquire(IpAddr::V6(Ipv6Addr::LOCALHOST)).is_some());
        drop(slot);
        assert!(limit.open.lock().unwrap().is_empty());
        assert_eq!(limit.max(), 1);
    }
}
