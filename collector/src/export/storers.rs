//! Where lanes deliver: the current storer endpoints (a static list and/or DNS names of a
//! headless Service, re-resolved periodically) and the two placements.
//!
//! - `balanced`: each lane goes to the healthy storer with the fewest lanes (ties broken by
//!   rendezvous weight, so lanes spread the same way every time). A delivery stream lives for
//!   hours, so balancing is per lane, not per request: a request-level balancer (tower p2c)
//!   pins every stream to whichever storer was ready first and never moves one to a storer that
//!   joins later. Here a lane re-checks its place when the endpoint set changes and every few
//!   seconds, and moves (after its in-flight batches are acknowledged, opening the new stream
//!   before closing the old one) when its storer has more lanes than the least loaded one: a
//!   storer that starts late, recovers or is added by DNS gets its share, and one that cannot
//!   be reached is marked down while the lane stays.
//! - `call_id`: a record goes to the lane of its Call-ID's CRC-32, and a lane goes to the storer
//!   that wins rendezvous (highest random weight) hashing of the lane over the healthy
//!   endpoints. All records of one Call-ID thus reach the same storer, and when a storer joins
//!   or leaves only the lanes that win or lose it move (about 1/N of them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sipcapture_runtime::tls::GrpcClientTls;
use tokio::sync::watch;
use tonic::transport::Endpoint;

/// How records and lanes are spread over storers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Lanes spread evenly over the healthy storers (and rebalanced when the set changes).
    #[default]
    Balanced,
    /// Records of one Call-ID always on the same storer (consistent hashing).
    CallId,
}

/// How long a storer that failed is skipped by both placements.
const DOWN_FOR: Duration = Duration::from_secs(5);

/// The storer endpoints shared by every lane.
#[derive(Debug)]
pub struct Storers {
    placement: Placement,
    urls: watch::Sender<Vec<String>>,
    /// Balanced placement: the storer each lane is on (or moving to).
    assigned: Mutex<HashMap<u64, String>>,
    down: Mutex<HashMap<String, Instant>>,
    tls: GrpcClientTls,
}

impl Storers {
    /// Endpoints from a static list (URLs already validated), plain or with system roots.
    pub fn new(placement: Placement, urls: &[String]) -> Self {
        Storers::with_tls(placement, urls, GrpcClientTls::default())
    }

    /// Endpoints from a static list; `https://` ones use `tls` (`grpc_client_tls`).
    pub fn with_tls(placement: Placement, urls: &[String], tls: GrpcClientTls) -> Self {
        let storers = Storers {
            placement,
            urls: watch::channel(Vec::new()).0,
            assigned: Mutex::new(HashMap::new()),
            down: Mutex::new(HashMap::new()),
            tls,
        };
        storers.update(urls.to_vec());
        storers
    }

    /// The endpoint of a storer URL, with TLS for `https://` (certificate files read now, so a
    /// rotated client certificate is used by the next connection).
    pub fn endpoint(&self, url: &str) -> Option<Endpoint> {
        match self.tls.endpoint(url) {
            Ok(e) => Some(
                e.connect_timeout(Duration::from_secs(3))
                    .tcp_nodelay(true)
                    .http2_keep_alive_interval(Duration::from_secs(20))
                    .keep_alive_timeout(Duration::from_secs(10)),
            ),
            Err(e) => {
                tracing::error!(error = %e, "cannot build the storer endpoint");
                None
            }
        }
    }

    /// Whether DNS-found storers are reached over TLS (a client CA or certificate configured).
    pub fn dns_scheme(&self) -> &'static str {
        if self.tls.ca.is_some() || self.tls.cert.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// The placement.
    pub fn placement(&self) -> Placement {
        self.placement
    }

    /// Replaces the endpoint set (after a DNS refresh); lanes are told and re-check their place.
    pub fn update(&self, mut urls: Vec<String>) {
        urls.sort();
        urls.dedup();
        if *self.urls.borrow() == urls {
            return;
        }
        tracing::info!(storers = ?urls, "storer endpoints");
        self.urls.send_replace(urls);
    }

    /// A receiver woken when the endpoint set changes.
    pub fn subscribe(&self) -> watch::Receiver<Vec<String>> {
        self.urls.subscribe()
    }

    /// Notes that a storer failed; hash placement skips it for a while.
    pub fn mark_down(&self, url: &str) {
        if let Ok(mut down) = self.down.lock() {
            down.insert(url.to_owned(), Instant::now() + DOWN_FOR);
        }
    }

    fn is_down(&self, url: &str) -> bool {
        self.down
            .lock()
            .ok()
            .and_then(|d| d.get(url).copied())
            .is_some_and(|until| until > Instant::now())
    }

    /// The storer (URL) lane `lane` should deliver to now. Hash placement: the rendezvous
    /// winner among the healthy storers. Balanced placement: the lane's current storer while it
    /// has no more lanes than the least loaded healthy one, else the least loaded (the choice is
    /// recorded, so lanes asking at the same time spread instead of all picking the same
    /// storer).
    pub fn target_for(&self, lane: u64) -> Option<String> {
        let urls = self.urls.borrow().clone();
        let healthy: Vec<&String> = urls.iter().filter(|u| !self.is_down(u)).collect();
        let pool = if healthy.is_empty() {
            urls.iter().collect()
        } else {
            healthy
        };
        if self.placement == Placement::CallId {
            return rendezvous(lane, &pool).cloned();
        }
        let Ok(mut assigned) = self.assigned.lock() else {
            return rendezvous(lane, &pool).cloned();
        };
        let chosen = least_loaded(lane, &pool, &assigned)?.clone();
        assigned.insert(lane, chosen.clone());
        Some(chosen)
    }

    /// Records that `lane` is on `url` (balanced placement; after a move that could not be
    /// made, so the lane counts where it really is).
    pub fn assign(&self, lane: u64, url: &str) {
        if self.placement == Placement::Balanced
            && let Ok(mut assigned) = self.assigned.lock()
        {
            assigned.insert(lane, url.to_owned());
        }
    }
}

/// Balanced placement's choice for `lane` among `pool`, given where the lanes are: its current
/// storer unless another has fewer of the other lanes; among the least loaded, the rendezvous
/// winner.
fn least_loaded<'a>(
    lane: u64,
    pool: &[&'a String],
    assigned: &HashMap<u64, String>,
) -> Option<&'a String> {
    // The other lanes on each storer of the pool, counted once.
    let loads: Vec<usize> = pool
        .iter()
        .map(|url| {
            assigned
                .iter()
                .filter(|(l, u)| **l != lane && u == url)
                .count()
        })
        .collect();
    let min = loads.iter().copied().min()?;
    let current = assigned.get(&lane);
    if let Some(at) = pool.iter().position(|u| Some(*u) == current)
        && loads.get(at) == Some(&min)
    {
        return pool.get(at).copied();
    }
    let least: Vec<&String> = pool
        .iter()
        .zip(&loads)
        .filter(|(_, load)| **load == min)
        .map(|(url, _)| *url)
        .collect();
    rendezvous(lane, &least)
}

/// Highest-random-weight choice of `lane` among `urls`: stable for a given set, and adding or
/// removing one URL only moves the lanes that pick (or picked) it.
pub fn rendezvous<'a>(lane: u64, urls: &[&'a String]) -> Option<&'a String> {
    urls.iter().copied().max_by_key(|u| {
        let mut h = crc32fast::Hasher::new();
        h.update(&lane.to_le_bytes());
        h.update(u.as_bytes());
        // Mix the CRC into 64 bits so ties are practically impossible.
        u64::from(h.finalize()).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ lane
    })
}

/// The lane of a Call-ID: CRC-32 of its first token (as Kamailio's hash), modulo the lanes.
pub fn lane_of_call_id(call_id: &str, lanes: usize) -> usize {
    let token = call_id.split_ascii_whitespace().next().unwrap_or("");
    let crc = crc32fast::hash(token.as_bytes());
    usize::try_from(crc).unwrap_or(0) % lanes.max(1)
}

/// Re-resolves `names` (`host:port`) every `every` and sets the endpoints to the static URLs
/// plus `http://<address>` (`https://` with client TLS configured) of every address found,
/// until `shutdown`.
pub async fn refresh_dns(
    storers: std::sync::Arc<Storers>,
    static_urls: Vec<String>,
    names: Vec<String>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let scheme = storers.dns_scheme();
    loop {
        let mut urls = static_urls.clone();
        for name in &names {
            match tokio::net::lookup_host(name.as_str()).await {
                Ok(addrs) => urls.extend(addrs.map(|a| format!("{scheme}://{a}"))),
                Err(e) => tracing::warn!(name, error = %e, "cannot resolve storer name"),
            }
        }
        storers.update(urls);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("http://10.0.0.{i}:9063")).collect()
    }

    #[test]
    fn rendezvous_is_stable_and_moves_little() {
        let four = urls(4);
        let five = urls(5);
        let refs4: Vec<&String> = four.iter().collect();
        let refs5: Vec<&String> = five.iter().collect();
        let lanes = 1000u64;
        let mut moved = 0;
        let mut per_node = HashMap::new();
        for lane in 0..lanes {
            let a = rendezvous(lane, &refs4).unwrap();
            assert_eq!(a, rendezvous(lane, &refs4).unwrap(), "stable");
            let b = rendezvous(lane, &refs5).unwrap();
            if a != b {
                moved += 1;
                assert_eq!(b, &five[4], "lanes only move to the new storer");
            }
            *per_node.entry(a.clone()).or_insert(0) += 1;
        }
        // About 1/5 of the lanes move to the new storer.
        assert!((100..=300).contains(&moved), "moved {moved}");
        // And the spread is even enough.
        assert!(
            per_node.values().all(|n| (150..=350).contains(n)),
            "{per_node:?}"
        );
    }

    #[test]
    fn call_id_lane_uses_the_first_token() {
        assert_eq!(
            lane_of_call_id("abc@x", 7),
            lane_of_call_id("  abc@x  trailing", 7)
        );
        assert!(lane_of_call_id("anything", 3) < 3);
        assert_eq!(lane_of_call_id("x", 1), 0);
    }

    #[tokio::test]
    async fn dns_names_add_endpoints() {
        let storers = std::sync::Arc::new(Storers::new(
            Placement::CallId,
            &["http://10.9.9.9:9063".to_owned()],
        ));
        let mut changes = storers.subscribe();
        let shutdown = tokio_util::sync::CancellationToken::new();
        let task = tokio::spawn(refresh_dns(
            storers.clone(),
            vec!["http://10.9.9.9:9063".to_owned()],
            vec!["localhost:9064".to_owned()],
            Duration::from_secs(3600),
            shutdown.clone(),
        ));
        tokio::time::timeout(Duration::from_secs(5), changes.changed())
            .await
            .unwrap()
            .unwrap();
        let urls = changes.borrow().clone();
        assert!(
            urls.contains(&"http://127.0.0.1:9064".to_owned()),
            "{urls:?}"
        );
        assert!(
            urls.contains(&"http://10.9.9.9:9063".to_owned()),
            "{urls:?}"
        );
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn hash_placement_skips_a_down_storer() {
        let list = urls(3);
        let storers = Storers::new(Placement::CallId, &list);
        let first = storers.target_for(42).unwrap();
        storers.mark_down(&first);
        let second = storers.target_for(42).unwrap();
        assert_ne!(first, second);
    }

    fn spread(storers: &Storers, lanes: u64) -> HashMap<String, usize> {
        let mut per = HashMap::new();
        for lane in 0..lanes {
            *per.entry(storers.target_for(lane).unwrap()).or_insert(0) += 1;
        }
        per
    }

    #[test]
    fn balanced_placement_spreads_lanes_evenly_and_keeps_them() {
        let storers = Storers::new(Placement::Balanced, &urls(3));
        let per = spread(&storers, 8);
        let mut counts: Vec<usize> = per.values().copied().collect();
        counts.sort_unstable();
        assert_eq!(counts, vec![2, 3, 3], "{per:?}");
        // Asking again changes nothing: a balanced lane stays where it is.
        let before: Vec<String> = (0..8).map(|l| storers.target_for(l).unwrap()).collect();
        let after: Vec<String> = (0..8).map(|l| storers.target_for(l).unwrap()).collect();
        assert_eq!(before, after);
    }

    #[test]
    fn balanced_placement_gives_a_late_storer_its_share() {
        let all = urls(2);
        let storers = Storers::new(Placement::Balanced, &all[..1]);
        assert_eq!(spread(&storers, 8).len(), 1, "one storer takes every lane");
        storers.update(all.clone());
        // Each lane re-checks its place (as the exporters do on the change): half move.
        let per = spread(&storers, 8);
        assert_eq!(per.get(&all[0]), Some(&4), "{per:?}");
        assert_eq!(per.get(&all[1]), Some(&4), "{per:?}");
    }

    #[test]
    fn balanced_placement_avoids_a_down_storer_and_returns_to_it() {
        let all = urls(2);
        let storers = Storers::new(Placement::Balanced, &all);
        storers.mark_down(&all[1]);
        let per = spread(&storers, 4);
        assert_eq!(per.get(&all[0]), Some(&4), "{per:?}");
        // Back up (the down mark expired): the lanes rebalance.
        storers.down.lock().unwrap().clear();
        let per = spread(&storers, 4);
        assert_eq!(per.get(&all[1]), Some(&2), "{per:?}");
    }
}
