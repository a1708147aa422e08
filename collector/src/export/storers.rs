//! Where lanes deliver: the current storer endpoints (a static list and/or DNS names of a
//! headless Service, re-resolved periodically) and the two placements.
//!
//! - `balanced`: every lane opens its stream through one tonic balanced channel, i.e. tower's
//!   discover + power-of-two-choices balancer over the ready (healthy) endpoints; endpoints that
//!   DNS adds or drops are inserted into / removed from the balancer.
//! - `call_id`: a record goes to the lane of its Call-ID's CRC-32, and a lane goes to the storer
//!   that wins rendezvous (highest random weight) hashing of the lane over the healthy
//!   endpoints. All records of one Call-ID thus reach the same storer, and when a storer joins
//!   or leaves only the lanes that win or lose it move (about 1/N of them).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sipcapture_proto::tls::GrpcClientTls;
use tokio::sync::{mpsc, watch};
use tonic::transport::channel::Change;
use tonic::transport::{Channel, Endpoint};

/// How records and lanes are spread over storers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// Lanes balanced over healthy storers (tower p2c through a tonic balanced channel).
    #[default]
    Balanced,
    /// Records of one Call-ID always on the same storer (consistent hashing).
    CallId,
}

/// How long a storer that failed is skipped by hash placement.
const DOWN_FOR: Duration = Duration::from_secs(5);

/// What a lane connects to.
#[derive(Debug, Clone)]
pub enum Target {
    /// The balanced channel (tower p2c over every endpoint).
    Balanced(Channel),
    /// One storer.
    Url(String),
}

impl Target {
    /// For logs.
    pub fn label(&self) -> &str {
        match self {
            Target::Balanced(_) => "balanced",
            Target::Url(url) => url,
        }
    }
}

/// The storer endpoints shared by every lane.
#[derive(Debug)]
pub struct Storers {
    placement: Placement,
    urls: watch::Sender<Vec<String>>,
    balanced: Option<(Channel, mpsc::Sender<Change<String, Endpoint>>)>,
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
        let balanced =
            (placement == Placement::Balanced).then(|| Channel::balance_channel::<String>(64));
        let storers = Storers {
            placement,
            urls: watch::channel(Vec::new()).0,
            balanced,
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

    /// Re-creates every balanced endpoint, so new connections present the current client
    /// certificate (after a rotation).
    pub fn renew_endpoints(&self) {
        let Some((_, changes)) = &self.balanced else {
            return;
        };
        for url in self.urls.borrow().iter() {
            if let Some(ep) = self.endpoint(url) {
                let _closed = changes.try_send(Change::Insert(url.clone(), ep));
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

    /// Replaces the endpoint set (after a DNS refresh); the balancer gets the differences.
    pub fn update(&self, mut urls: Vec<String>) {
        urls.sort();
        urls.dedup();
        let old = self.urls.borrow().clone();
        if old == urls {
            return;
        }
        if let Some((_, changes)) = &self.balanced {
            for gone in old.iter().filter(|u| !urls.contains(u)) {
                let _closed = changes.try_send(Change::Remove(gone.clone()));
            }
            for new in urls.iter().filter(|u| !old.contains(u)) {
                if let Some(ep) = self.endpoint(new) {
                    let _closed = changes.try_send(Change::Insert(new.clone(), ep));
                }
            }
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

    /// Where lane `lane` should deliver now.
    pub fn target_for(&self, lane: u64) -> Option<Target> {
        if let Some((channel, _)) = &self.balanced {
            return Some(Target::Balanced(channel.clone()));
        }
        let urls = self.urls.borrow().clone();
        let healthy: Vec<&String> = urls.iter().filter(|u| !self.is_down(u)).collect();
        let pool = if healthy.is_empty() {
            urls.iter().collect()
        } else {
            healthy
        };
        rendezvous(lane, &pool).map(|u| Target::Url(u.clone()))
    }
}

/// Renews the balanced endpoints when the client certificate files change (checked every
/// `every`), until `shutdown`. Lanes on single-storer targets re-read the files on every
/// reconnect and need nothing.
pub async fn renew_on_rotation(
    storers: std::sync::Arc<Storers>,
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let files: Vec<std::path::PathBuf> = [&storers.tls.ca, &storers.tls.cert, &storers.tls.key]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    let read = || -> Vec<Option<Vec<u8>>> { files.iter().map(|f| std::fs::read(f).ok()).collect() };
    let mut seen = read();
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let now = read();
        if now != seen {
            seen = now;
            tracing::info!("client tls files changed; renewing storer endpoints");
            storers.renew_endpoints();
        }
    }
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
        let Some(Target::Url(first)) = storers.target_for(42) else {
            panic!()
        };
        storers.mark_down(&first);
        let Some(Target::Url(second)) = storers.target_for(42) else {
            panic!()
        };
        assert_ne!(first, second);
    }
}
