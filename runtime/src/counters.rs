//! The metrics of one service: counters (with at most one low-cardinality label), gauges and
//! latency histograms, incremented by the typed events of each crate (`events.rs`).
//!
//! One source of truth, three readers: `StatusService/Check` replies ([`Counters::snapshot`]),
//! the Prometheus `/metrics` endpoint ([`Counters::render_prometheus`], see [`crate::metrics`]),
//! and OpenTelemetry, which observes the same values at export time (observable instruments
//! registered only when OTLP metrics export is on, so the hot path never calls into the SDK).
//! Every metric is listed in [`CATALOG`] and documented in `docs/METRICS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use opentelemetry::KeyValue;

/// What kind of value a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic count (`<name>_total` in Prometheus).
    Counter,
    /// A current value.
    Gauge,
    /// Latency distribution in seconds (`_bucket`, `_sum`, `_count`).
    Histogram,
}

/// One documented metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// The service that exports it (`collector`, `storer`, `control`).
    pub service: &'static str,
    /// Family name without prefix or suffix (`hep_received`, `dropped`).
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its one label, when it has one (`reason`, `input`, `family`, `lane`, `mode`).
    pub label: Option<&'static str>,
    /// What it means.
    pub help: &'static str,
}

impl MetricDef {
    /// The Prometheus name: `sipcapture_<service>_<name>` plus `_total` for counters.
    pub fn prometheus_name(&self) -> String {
        match self.kind {
            Kind::Counter => format!("sipcapture_{}_{}_total", self.service, self.name),
            Kind::Gauge | Kind::Histogram => format!("sipcapture_{}_{}", self.service, self.name),
        }
    }

    /// The OpenTelemetry instrument name: `sipcapture.<service>.<name>`.
    pub fn otel_name(&self) -> String {
        format!("sipcapture.{}.{}", self.service, self.name)
    }
}

const fn counter(
    service: &'static str,
    name: &'static str,
    label: Option<&'static str>,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        service,
        name,
        kind: Kind::Counter,
        label,
        help,
    }
}

const fn gauge(
    service: &'static str,
    name: &'static str,
    label: Option<&'static str>,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        service,
        name,
        kind: Kind::Gauge,
        label,
        help,
    }
}

const fn histogram(service: &'static str, name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        service,
        name,
        kind: Kind::Histogram,
        label: None,
        help,
    }
}

const C: &str = "collector";
const S: &str = "storer";
const K: &str = "control";

/// Every metric any service exports. `docs/METRICS.md` documents each one (a test checks it).
pub const CATALOG: &[MetricDef] = &[
    // collector: inputs
    counter(
        C,
        "hep_received",
        Some("input"),
        "HEP packets received (UDP datagrams, TCP/TLS frames), before decoding",
    ),
    counter(
        C,
        "hep_decoded",
        Some("input"),
        "HEP packets decoded successfully",
    ),
    counter(
        C,
        "hep_incomplete",
        None,
        "HEP packets missing core chunks, stored with the gaps flagged",
    ),
    counter(
        C,
        "raw_received",
        Some("input"),
        "raw transport payloads seen by a raw input (mirror port)",
    ),
    counter(
        C,
        "mirror_frames",
        None,
        "frames read from the mirror-port packet socket",
    ),
    counter(
        C,
        "ipip_packets",
        None,
        "IP-in-IP packets read from the raw IPIP socket",
    ),
    counter(
        C,
        "pcap_frames",
        None,
        "frames read from an imported pcap/pcapng file",
    ),
    counter(C, "tcp_connections", None, "HEP TCP connections accepted"),
    counter(
        C,
        "tls_connections",
        None,
        "HEP TLS connections accepted (handshake done)",
    ),
    counter(
        C,
        "tls_handshake_failed",
        None,
        "HEP TLS handshakes that failed or timed out",
    ),
    counter(
        C,
        "tcp_idle_closed",
        None,
        "HEP TCP/TLS connections closed after tcp_idle_timeout",
    ),
    counter(
        C,
        "dropped",
        Some("reason"),
        "packets or records dropped, by reason (every drop is counted)",
    ),
    counter(
        C,
        "discarded",
        Some("reason"),
        "packets decoded but deliberately not captured (reason status: capture is off)",
    ),
    counter(
        C,
        "records_queued",
        None,
        "records built and queued for export",
    ),
    // collector: export
    counter(
        C,
        "batches_sealed",
        None,
        "batches sealed (numbered) for delivery",
    ),
    counter(
        C,
        "batches_sent",
        None,
        "batches sent to a storer for the first time",
    ),
    counter(
        C,
        "batches_resent",
        None,
        "batches sent again after a lost stream",
    ),
    counter(
        C,
        "batches_acked",
        None,
        "batches acknowledged by a storer after commit",
    ),
    counter(
        C,
        "batches_duplicate",
        None,
        "acknowledgements saying the batch was committed before (a resend)",
    ),
    counter(C, "records_acked", None, "records in acknowledged batches"),
    counter(
        C,
        "records_spooled",
        None,
        "records written to the on-disk spool",
    ),
    counter(
        C,
        "records_lost_at_shutdown",
        None,
        "records neither acknowledged nor spooled when shutdown timed out (no spool)",
    ),
    counter(
        C,
        "spool_corrupt_frames",
        None,
        "spool frames skipped at recovery because their checksum failed",
    ),
    counter(
        C,
        "stream_connects",
        None,
        "Deliver streams opened to a storer",
    ),
    counter(C, "stream_errors", None, "Deliver streams lost"),
    counter(
        C,
        "lane_moves",
        None,
        "delivery lanes moved to another storer by the placement (rebalancing, storer set change)",
    ),
    counter(
        C,
        "stream_connect_failed",
        None,
        "Deliver streams that could not be opened (storer down, TLS refused, no Welcome)",
    ),
    gauge(
        C,
        "queue_depth",
        Some("lane"),
        "records waiting in a lane's queue between the inputs and the exporter",
    ),
    gauge(
        C,
        "queue_capacity",
        Some("lane"),
        "capacity of a lane's queue",
    ),
    gauge(
        C,
        "unacked_batches",
        Some("lane"),
        "batches sealed and not yet acknowledged, in memory",
    ),
    gauge(
        C,
        "spool_bytes",
        Some("lane"),
        "bytes of a lane's spool on disk",
    ),
    gauge(
        C,
        "spool_segments",
        Some("lane"),
        "segment files of a lane's spool",
    ),
    histogram(
        C,
        "batch_ack_seconds",
        "time from a batch's first send to its acknowledgement",
    ),
    // storer
    counter(
        S,
        "batches_received",
        None,
        "batches received from collectors",
    ),
    counter(
        S,
        "batches_committed",
        None,
        "batches committed and acknowledged",
    ),
    counter(
        S,
        "batches_duplicate",
        None,
        "batches received again after they were committed (acknowledged, not stored)",
    ),
    counter(
        S,
        "batch_parts_already_committed",
        None,
        "parts of a resent batch already committed in a capture mode's database",
    ),
    counter(
        S,
        "rows_stored",
        Some("family"),
        "rows inserted, by table family (sip, report)",
    ),
    counter(
        S,
        "rows_truncated",
        None,
        "rows with a value cut to its column width",
    ),
    counter(
        S,
        "hash_source_empty",
        None,
        "records whose mt_mode hash source was empty (first table used)",
    ),
    counter(
        S,
        "insert_retried",
        None,
        "batch transactions retried after a transient database error",
    ),
    counter(
        S,
        "insert_failed",
        None,
        "batch transactions given up after insert_retries (batch not acknowledged)",
    ),
    counter(
        S,
        "dropped",
        Some("reason"),
        "records dropped, by reason (no valid table, row rejected by the database)",
    ),
    counter(
        S,
        "discarded",
        Some("reason"),
        "records acknowledged but deliberately not stored (status off, routing rule drop)",
    ),
    gauge(
        S,
        "streams_open",
        None,
        "collector Deliver streams being served",
    ),
    gauge(
        S,
        "db_pool_connections",
        Some("mode"),
        "connections open in a capture mode's database pool",
    ),
    gauge(
        S,
        "db_pool_idle",
        Some("mode"),
        "idle connections in a capture mode's database pool",
    ),
    gauge(
        S,
        "db_pool_max",
        Some("mode"),
        "configured maximum connections of a capture mode's pool",
    ),
    histogram(
        S,
        "insert_seconds",
        "time to commit one batch part (all attempts included)",
    ),
    // every member and control
    counter(
        C,
        "status_changed",
        Some("state"),
        "capture status changes applied (state on or off)",
    ),
    counter(
        S,
        "status_changed",
        Some("state"),
        "capture status changes applied (state on or off)",
    ),
    counter(
        K,
        "status_changed",
        Some("state"),
        "desired status changes accepted by control",
    ),
    counter(
        K,
        "fanout_failed",
        None,
        "status pushes to a member that failed or timed out",
    ),
    gauge(
        K,
        "members",
        None,
        "members known to control (configured, registered, DNS)",
    ),
    // Lua hook and HEP forwarding (docs/SCRIPTING.md)
    counter(
        C,
        "script_reloads",
        None,
        "Lua hook script loads (start-up, SIGHUP, file change)",
    ),
    counter(
        C,
        "script_errors",
        None,
        "Lua hook errors (load failures, runtime errors, time-outs); the packet takes the default path",
    ),
    counter(
        C,
        "script_reports",
        None,
        "report rows queued by the script's report_capture()",
    ),
    counter(
        C,
        "forwarded",
        None,
        "HEP packets sent to forward destinations (forward rules and sip_capture_forward)",
    ),
    counter(
        C,
        "forward_connects",
        None,
        "connections opened to HEP forward destinations",
    ),
    counter(
        C,
        "forward_connect_failed",
        None,
        "failed attempts to reach a HEP forward destination (retried with backoff)",
    ),
    counter(
        C,
        "forward_errors",
        None,
        "sends to a HEP forward destination that failed (the connection is reopened)",
    ),
    // gRPC TLS (docs/SECURITY.md), every service
    counter(
        C,
        "grpc_tls_refused",
        None,
        "gRPC TLS handshakes refused (untrusted or missing client certificate, timeout)",
    ),
    counter(
        S,
        "grpc_tls_refused",
        None,
        "gRPC TLS handshakes refused (untrusted or missing client certificate, timeout)",
    ),
    counter(
        K,
        "grpc_tls_refused",
        None,
        "gRPC TLS handshakes refused (untrusted or missing client certificate, timeout)",
    ),
    counter(
        C,
        "grpc_tls_closed_early",
        None,
        "connections to a gRPC TLS listener closed before the handshake completed (TCP probes, scans)",
    ),
    counter(
        S,
        "grpc_tls_closed_early",
        None,
        "connections to a gRPC TLS listener closed before the handshake completed (TCP probes, scans)",
    ),
    counter(
        K,
        "grpc_tls_closed_early",
        None,
        "connections to a gRPC TLS listener closed before the handshake completed (TCP probes, scans)",
    ),
    counter(
        C,
        "tls_reloaded",
        None,
        "TLS certificates reloaded after a change on disk or SIGHUP",
    ),
    counter(
        S,
        "tls_reloaded",
        None,
        "TLS certificates reloaded after a change on disk or SIGHUP",
    ),
    counter(
        K,
        "tls_reloaded",
        None,
        "TLS certificates reloaded after a change on disk or SIGHUP",
    ),
    counter(
        C,
        "tls_reload_failed",
        None,
        "TLS certificate reloads that failed (the previous certificates stay in use)",
    ),
    counter(
        S,
        "tls_reload_failed",
        None,
        "TLS certificate reloads that failed (the previous certificates stay in use)",
    ),
    counter(
        K,
        "tls_reload_failed",
        None,
        "TLS certificate reloads that failed (the previous certificates stay in use)",
    ),
];

/// The catalog entry of `service`'s metric `name`.
pub fn find(service: &str, name: &str) -> Option<&'static MetricDef> {
    CATALOG
        .iter()
        .find(|d| d.service == service && d.name == name)
}

/// Histogram bucket bounds, seconds.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Debug, Clone, Default)]
struct Histo {
    /// Per bucket (not cumulative), plus +Inf last.
    buckets: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histo {
    fn observe(&mut self, secs: f64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS.len() + 1];
        }
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        if let Some(b) = self.buckets.get_mut(i) {
            *b += 1;
        }
        self.sum += secs;
        self.count += 1;
    }
}

type GaugeFn = Box<dyn Fn(&mut dyn FnMut(&str, i64)) + Send + Sync>;

#[derive(Default)]
struct Inner {
    /// (family, label value or "") → count.
    counts: Mutex<hashbrown::HashMap<(&'static str, &'static str), u64>>,
    /// (family, label value or "") → value.
    gauges: Mutex<BTreeMap<(&'static str, String), i64>>,
    /// Gauges read when exported: family → callback reporting (label value, value) pairs.
    gauge_fns: Mutex<Vec<(&'static str, GaugeFn)>>,
    histograms: Mutex<hashbrown::HashMap<&'static str, Histo>>,
}

impl Inner {
    fn counter_series(&self, family: &str) -> Vec<(&'static str, u64)> {
        let mut out: Vec<(&'static str, u64)> = self
            .counts
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|((f, _), _)| *f == family)
                    .map(|((_, l), v)| (*l, *v))
                    .collect()
            })
            .unwrap_or_default();
        out.sort_unstable();
        out
    }

    fn gauge_series(&self, family: &str) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = self
            .gauges
            .lock()
            .map(|g| {
                g.iter()
                    .filter(|((f, _), _)| *f == family)
                    .map(|((_, l), v)| (l.clone(), *v))
                    .collect()
            })
            .unwrap_or_default();
        if let Ok(fns) = self.gauge_fns.lock() {
            for (f, read) in fns.iter() {
                if *f == family {
                    read(&mut |label, v| out.push((label.to_owned(), v)));
                }
            }
        }
        out
    }
}

/// The metrics of one service.
pub struct Counters {
    service: &'static str,
    inner: Arc<Inner>,
    /// OpenTelemetry histograms (only with OTLP metrics export on).
    otel_histograms: Vec<(&'static str, opentelemetry::metrics::Histogram<f64>)>,
    /// Keeps the observable instruments registered.
    _otel_observers: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("service", &self.service)
            .field("values", &self.snapshot())
            .finish()
    }
}

impl Counters {
    /// The metrics of `service` ("collector", "storer", "control"). When OTLP metrics export is
    /// on ([`crate::telemetry::otel_metrics_enabled`]), every catalog metric of the service is
    /// registered as an observable OpenTelemetry instrument reading these values.
    pub fn new(service: &'static str) -> Self {
        let inner = Arc::new(Inner::default());
        let mut observers: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        let mut otel_histograms = Vec::new();
        if crate::telemetry::otel_metrics_enabled() {
            let meter = opentelemetry::global::meter("sipcapture");
            for def in CATALOG.iter().filter(|d| d.service == service) {
                let label = def.label.unwrap_or("");
                let family = def.name;
                match def.kind {
                    Kind::Counter => {
                        let weak = Arc::downgrade(&inner);
                        let instrument = meter
                            .u64_observable_counter(def.otel_name())
                            .with_description(def.help)
                            .with_callback(move |observer| {
                                let Some(inner) = weak.upgrade() else { return };
                                for (value, n) in inner.counter_series(family) {
                                    observer.observe(n, &attrs(label, value));
                                }
                            })
                            .build();
                        observers.push(Box::new(instrument));
                    }
                    Kind::Gauge => {
                        let weak = Arc::downgrade(&inner);
                        let instrument = meter
                            .i64_observable_gauge(def.otel_name())
                            .with_description(def.help)
                            .with_callback(move |observer| {
                                let Some(inner) = weak.upgrade() else { return };
                                for (value, n) in inner.gauge_series(family) {
                                    observer.observe(n, &attrs(label, &value));
                                }
                            })
                            .build();
                        observers.push(Box::new(instrument));
                    }
                    Kind::Histogram => {
                        let instrument = meter
                            .f64_histogram(def.otel_name())
                            .with_unit("s")
                            .with_description(def.help)
                            .with_boundaries(BUCKETS.to_vec())
                            .build();
                        otel_histograms.push((family, instrument));
                    }
                }
            }
        }
        Counters {
            service,
            inner,
            otel_histograms,
            _otel_observers: observers,
        }
    }

    /// The service these metrics belong to.
    pub fn service(&self) -> &'static str {
        self.service
    }

    /// Adds `n` to the unlabelled counter `name`; returns its new total (for "log the first and
    /// every power of two" without a second lookup).
    pub fn add(&self, name: &'static str, n: u64) -> u64 {
        self.add_labeled(name, "", n)
    }

    /// Adds `n` to counter `family` with label value `label` (the catalog names the label).
    pub fn add_labeled(&self, family: &'static str, label: &'static str, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        match self.inner.counts.lock() {
            Ok(mut counts) => {
                let v = counts.entry((family, label)).or_insert(0);
                *v += n;
                *v
            }
            Err(_) => 0,
        }
    }

    /// Counts one drop under `dropped{reason}` (`dropped.<reason>` in snapshots); returns the
    /// new total of that reason (callers log the first and every power of two, so a flood
    /// cannot flood the log).
    pub fn count_drop(&self, reason: &'static str) -> u64 {
        self.add_labeled("dropped", reason, 1)
    }

    /// Counts `n` drops of one reason; returns the new total of that reason.
    pub fn count_drops(&self, reason: &'static str, n: u64) -> u64 {
        self.add_labeled("dropped", reason, n)
    }

    /// Sets gauge `family{label}`.
    pub fn set_gauge(&self, family: &'static str, label: &str, value: i64) {
        if let Ok(mut gauges) = self.inner.gauges.lock() {
            match gauges.get_mut(&(family, label.to_owned())) {
                Some(v) => *v = value,
                None => {
                    gauges.insert((family, label.to_owned()), value);
                }
            }
        }
    }

    /// Adds `delta` to gauge `family{label}`.
    pub fn add_gauge(&self, family: &'static str, label: &str, delta: i64) {
        if let Ok(mut gauges) = self.inner.gauges.lock() {
            *gauges.entry((family, label.to_owned())).or_insert(0) += delta;
        }
    }

    /// Registers a gauge read when metrics are exported: `read` reports (label value, value)
    /// pairs of `family` (e.g. database pool state, queue depths).
    pub fn gauge_fn(
        &self,
        family: &'static str,
        read: impl Fn(&mut dyn FnMut(&str, i64)) + Send + Sync + 'static,
    ) {
        if let Ok(mut fns) = self.inner.gauge_fns.lock() {
            fns.push((family, Box::new(read)));
        }
    }

    /// Records one latency observation of histogram `family`.
    pub fn observe(&self, family: &'static str, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        if let Ok(mut h) = self.inner.histograms.lock() {
            h.entry(family).or_default().observe(secs);
        }
        for (name, histogram) in &self.otel_histograms {
            if *name == family {
                histogram.record(secs, &[]);
            }
        }
    }

    /// Current value of a counter: `family.label` for one label value, `family` for the sum
    /// over every label value.
    pub fn get(&self, name: &str) -> u64 {
        let Ok(counts) = self.inner.counts.lock() else {
            return 0;
        };
        match name.split_once('.') {
            Some((family, label)) => counts.get(&(family, label)).copied().unwrap_or(0),
            None => counts
                .iter()
                .filter(|((f, _), _)| *f == name)
                .map(|(_, v)| *v)
                .sum(),
        }
    }

    /// Current value of gauge `family{label}` (set ones, then callbacks).
    pub fn gauge(&self, family: &str, label: &str) -> Option<i64> {
        self.inner
            .gauge_series(family)
            .into_iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v)
    }

    /// Every counter, sorted by name: `family` for unlabelled ones; `family.<label>` per label
    /// value plus `family` (their sum) for labelled ones.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        if let Ok(counts) = self.inner.counts.lock() {
            for ((family, label), v) in counts.iter() {
                if !label.is_empty() {
                    *all.entry(format!("{family}.{label}")).or_insert(0) += v;
                }
                *all.entry((*family).to_owned()).or_insert(0) += v;
            }
        }
        all
    }

    /// Appends these metrics in the Prometheus text exposition format (0.0.4): every catalog
    /// metric of this service (counters at 0 until they move), then any uncatalogued counter.
    pub fn render_prometheus(&self, out: &mut String) {
        for def in CATALOG.iter().filter(|d| d.service == self.service) {
            let name = def.prometheus_name();
            let kind = match def.kind {
                Kind::Counter => "counter",
                Kind::Gauge => "gauge",
                Kind::Histogram => "histogram",
            };
            let _ = writeln!(out, "# HELP {name} {}", def.help);
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let label = def.label.unwrap_or("");
            match def.kind {
                Kind::Counter => {
                    let series = self.inner.counter_series(def.name);
                    if series.is_empty() && def.label.is_none() {
                        let _ = writeln!(out, "{name} 0");
                    }
                    for (value, n) in series {
                        let _ = writeln!(out, "{name}{} {n}", labels(label, value));
                    }
                }
                Kind::Gauge => {
                    let mut series = self.inner.gauge_series(def.name);
                    series.sort();
                    for (value, n) in series {
                        let _ = writeln!(out, "{name}{} {n}", labels(label, &value));
                    }
                }
                Kind::Histogram => {
                    let h = self
                        .inner
                        .histograms
                        .lock()
                        .ok()
                        .and_then(|h| h.get(def.name).cloned())
                        .unwrap_or_default();
                    let mut cumulative = 0;
                    for (i, bound) in BUCKETS.iter().enumerate() {
                        cumulative += h.buckets.get(i).copied().unwrap_or(0);
                        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                    }
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", h.count);
                    let _ = writeln!(out, "{name}_sum {}", h.sum);
                    let _ = writeln!(out, "{name}_count {}", h.count);
                }
            }
        }
        // Counters outside the catalog still show (the catalog test keeps this empty).
        let unknown: BTreeMap<(&'static str, &'static str), u64> = self
            .inner
            .counts
            .lock()
            .map(|c| {
                c.iter()
                    .filter(|((f, _), _)| find(self.service, f).is_none())
                    .map(|(k, v)| (*k, *v))
                    .collect()
            })
            .unwrap_or_default();
        for ((family, label), n) in unknown {
            let name = format!("sipcapture_{}_{}_total", self.service, family);
            let _ = writeln!(out, "# TYPE {name} counter");
            let _ = writeln!(out, "{name}{} {n}", labels("label", label));
        }
    }

    /// Names of counters incremented that the catalog does not list (for tests).
    pub fn uncatalogued(&self) -> Vec<String> {
        self.inner
            .counts
            .lock()
            .map(|c| {
                c.keys()
                    .filter(|(f, _)| find(self.service, f).is_none())
                    .map(|(f, _)| (*f).to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn attrs(label: &'static str, value: &str) -> Vec<KeyValue> {
    if label.is_empty() || value.is_empty() {
        Vec::new()
    } else {
        vec![KeyValue::new(label, value.to_owned())]
    }
}

/// `{label="value"}` (escaped), or nothing.
fn labels(label: &str, value: &str) -> String {
    if label.is_empty() || value.is_empty() {
        return String::new();
    }
    let escaped = value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n");
    format!("{{{label}=\"{escaped}\"}}")
}

/// True for 1, 2, 4, 8, ...: log a repeated event at these counts only.
pub fn worth_logging(total: u64) -> bool {
    total.is_power_of_two()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_snapshots() {
        let c = Counters::new("collector");
        c.add_labeled("hep_received", "hep_udp", 3);
        c.add_labeled("hep_received", "hep_tcp", 2);
        assert_eq!(c.count_drop("bad_magic"), 1);
        assert_eq!(c.count_drop("bad_magic"), 2);
        assert_eq!(c.get("dropped.bad_magic"), 2);
        assert_eq!(c.get("dropped"), 2);
        assert_eq!(c.get("hep_received"), 5);
        assert_eq!(c.get("hep_received.hep_tcp"), 2);
        let snap = c.snapshot();
        assert_eq!(snap.get("dropped.bad_magic"), Some(&2));
        assert_eq!(snap.get("hep_received"), Some(&5));
        assert!(worth_logging(1) && worth_logging(4) && !worth_logging(3));
        assert!(c.uncatalogued().is_empty());
    }

    #[test]
    fn renders_prometheus_text() {
        let c = Counters::new("collector");
        c.add_labeled("hep_received", "hep_udp", 3);
        c.count_drop("bad\"magic");
        c.set_gauge("queue_depth", "0", 7);
        c.gauge_fn("spool_bytes", |report| report("1", 4096));
        c.observe("batch_ack_seconds", std::time::Duration::from_millis(3));
        c.observe("batch_ack_seconds", std::time::Duration::from_secs(100));
        let mut out = String::new();
        c.render_prometheus(&mut out);
        assert!(out.contains("# TYPE sipcapture_collector_hep_received_total counter\n"));
        assert!(out.contains("sipcapture_collector_hep_received_total{input=\"hep_udp\"} 3\n"));
        assert!(out.contains("sipcapture_collector_dropped_total{reason=\"bad\\\"magic\"} 1\n"));
        assert!(out.contains("sipcapture_collector_batches_sent_total 0\n"));
        assert!(out.contains("sipcapture_collector_queue_depth{lane=\"0\"} 7\n"));
        assert!(out.contains("sipcapture_collector_spool_bytes{lane=\"1\"} 4096\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_bucket{le=\"60\"} 1\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_count 2\n"));
        assert!(!out.contains("sipcapture_storer_"));
    }

    #[test]
    fn docs_list_every_metric() {
        let docs = include_str!("../../docs/METRICS.md");
        for def in CATALOG {
            let name = def.prometheus_name();
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/METRICS.md does not list {name}"
            );
        }
    }
}
