//! The metrics registry of one service: counters (with at most one low-cardinality label),
//! gauges and latency histograms, incremented by the typed events of each crate (`events.rs`).
//!
//! Each service declares its own [`Catalog`] next to its typed events; [`COMMON`] adds the
//! metrics every member shares (TLS, status changes). One registry, three readers:
//! `StatusService/Check` replies ([`Counters::snapshot`]), the Prometheus `/metrics` endpoint
//! ([`Counters::render_prometheus`], see [`crate::metrics`]) and OpenTelemetry, which observes
//! the same values at export time (observable instruments registered only when OTLP metrics
//! export is on, so the hot path never calls into the SDK).
//!
//! Increments never take a lock: every catalogued series (each label value a catalog lists) is
//! an atomic allocated once when the registry is built, found through an index that never
//! changes afterwards; [`Counters::counter`] resolves a series once into a [`Counter`] handle for
//! hot paths. A label value the catalog does not list still counts: it claims a slot of a fixed
//! table of spare atomics (one `fetch_add`, the slot's key written once by its claimer); when the
//! spare slots run out it counts under `other`.
//!
//! Why not the `prometheus-client` crate: its text encoder writes OpenMetrics only (our endpoint
//! serves the 0.0.4 text format that existing scrapes and tests read), its `Family` takes a lock
//! on every `get_or_create`, and `StatusService/Check` and OTLP need the values back by name —
//! so the handles would have to be kept beside it anyway. This registry is those handles.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use opentelemetry::KeyValue;

mod catalog;
mod sparse_log;

pub use catalog::{BUCKETS, COMMON, Catalog, Kind, MetricDef, counter, gauge, histogram, info};
pub use sparse_log::{LogEvery, worth_logging};

/// Spare counter series for label values no catalog lists (per registry).
const SPARE_COUNTER_SLOTS: usize = 128;
/// Spare gauge series for `set_gauge` / `add_gauge` label values no catalog lists.
const SPARE_GAUGE_SLOTS: usize = 64;
/// The label value a series is counted under when the spare slots are used up.
const OVERFLOW_LABEL: &str = "other";

/// A fixed table of spare series whose keys are written once by the thread that claims them.
/// Lock-free: a lookup reads the claimed prefix; a new key takes the next slot with one
/// `fetch_add`. Two threads adding the same new key at once may claim two slots; readers sum
/// them.
struct Spare<K> {
    slots: Box<[(OnceLock<K>, AtomicU64)]>,
    claimed: AtomicUsize,
}

impl<K> Spare<K> {
    fn new(capacity: usize) -> Self {
        Spare {
            slots: (0..capacity)
                .map(|_| (OnceLock::new(), AtomicU64::new(0)))
                .collect(),
            claimed: AtomicUsize::new(0),
        }
    }

    fn claimed(&self) -> &[(OnceLock<K>, AtomicU64)] {
        let n = self.claimed.load(Ordering::Acquire).min(self.slots.len());
        self.slots.get(..n).unwrap_or_default()
    }

    /// The position of the key `is` recognises, claiming a slot for `make()` when there is
    /// none; `None` when every slot is taken.
    fn position(&self, is: impl Fn(&K) -> bool, make: impl FnOnce() -> K) -> Option<usize> {
        for (i, (key, _)) in self.claimed().iter().enumerate() {
            if key.get().is_some_and(&is) {
                return Some(i);
            }
        }
        let i = self.claimed.fetch_add(1, Ordering::AcqRel);
        let (key, _) = self.slots.get(i)?;
        let _ = key.set(make());
        Some(i)
    }

    /// The atomic at `position`.
    fn value(&self, position: usize) -> Option<&AtomicU64> {
        self.slots.get(position).map(|(_, v)| v)
    }

    /// The atomic of the key `is` recognises (see [`Spare::position`]).
    fn slot(&self, is: impl Fn(&K) -> bool, make: impl FnOnce() -> K) -> Option<&AtomicU64> {
        self.value(self.position(is, make)?)
    }

    /// Every written (key, value).
    fn entries(&self) -> impl Iterator<Item = (&K, u64)> {
        self.claimed()
            .iter()
            .filter_map(|(k, v)| k.get().map(|k| (k, v.load(Ordering::Relaxed))))
    }
}

/// One histogram's atomics.
struct Histo {
    /// Per bucket (not cumulative), plus +Inf last.
    buckets: Box<[AtomicU64]>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histo {
    fn new() -> Self {
        Histo {
            buckets: (0..=BUCKETS.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_nanos: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn observe(&self, elapsed: std::time::Duration) {
        let secs = elapsed.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        if let Some(b) = self.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
}

type GaugeFn = Box<dyn Fn(&mut dyn FnMut(&str, i64)) + Send + Sync>;

/// The atomics of one service, laid out once from its catalog.
struct Inner {
    catalog: Catalog,
    /// (family, label value or "") → index into `counts`; never changes after construction.
    counter_index: hashbrown::HashMap<(&'static str, &'static str), usize>,
    /// The key of each `counts` entry.
    counter_keys: Box<[(&'static str, &'static str)]>,
    counts: Box<[AtomicU64]>,
    /// Label values (or families) no catalog lists.
    spare_counts: Spare<(&'static str, &'static str)>,
    /// Unlabelled gauges of the catalog: family → index into `gauges` (values as i64 bits).
    gauge_index: hashbrown::HashMap<&'static str, usize>,
    gauge_keys: Box<[&'static str]>,
    gauges: Box<[AtomicU64]>,
    /// Labelled gauges set by value (tests, rare callers).
    spare_gauges: Spare<(&'static str, Box<str>)>,
    /// Gauges read when exported: family → callback reporting (label value, value) pairs.
    /// The lock is taken at registration (start-up) and export, never on an increment.
    gauge_fns: Mutex<Vec<(&'static str, GaugeFn)>>,
    histograms: Box<[(&'static str, Histo)]>,
}

impl Inner {
    fn new(catalog: Catalog) -> Self {
        let mut counter_keys = Vec::new();
        let mut gauge_keys = Vec::new();
        let mut histograms = Vec::new();
        for def in catalog.all() {
            match def.kind {
                Kind::Counter => match def.label {
                    None => counter_keys.push((def.name, "")),
                    Some(_) => {
                        for value in def.values.iter().chain([&OVERFLOW_LABEL]) {
                            counter_keys.push((def.name, *value));
                        }
                    }
                },
                Kind::Gauge => {
                    if def.label.is_none() {
                        gauge_keys.push(def.name);
                    }
                }
                Kind::Histogram => histograms.push((def.name, Histo::new())),
                Kind::Info => {}
            }
        }
        let counter_index = counter_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i))
            .collect();
        let gauge_index = gauge_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (*k, i))
            .collect();
        Inner {
            catalog,
            counter_index,
            counts: counter_keys.iter().map(|_| AtomicU64::new(0)).collect(),
            counter_keys: counter_keys.into_boxed_slice(),
            spare_counts: Spare::new(SPARE_COUNTER_SLOTS),
            gauge_index,
            gauges: gauge_keys.iter().map(|_| AtomicU64::new(0)).collect(),
            gauge_keys: gauge_keys.into_boxed_slice(),
            spare_gauges: Spare::new(SPARE_GAUGE_SLOTS),
            gauge_fns: Mutex::new(Vec::new()),
            histograms: histograms.into_boxed_slice(),
        }
    }

    /// Where series (family, label) is counted: catalogued, spare, or the family's `other`.
    fn resolve(&self, family: &'static str, label: &'static str) -> Option<Slot> {
        if let Some(i) = self.counter_index.get(&(family, label)) {
            return Some(Slot::Catalogued(*i));
        }
        let spare = self
            .spare_counts
            .position(|(f, l)| *f == family && *l == label, || (family, label));
        match spare {
            Some(i) => Some(Slot::Spare(i)),
            None => self
                .counter_index
                .get(&(family, OVERFLOW_LABEL))
                .map(|i| Slot::Catalogued(*i)),
        }
    }

    fn atomic(&self, slot: Slot) -> Option<&AtomicU64> {
        match slot {
            Slot::Catalogued(i) => self.counts.get(i),
            Slot::Spare(i) => self.spare_counts.value(i),
        }
    }

    /// Every (family, label, value) of the counters, catalogued then spare; zeros included.
    fn counter_entries(&self) -> impl Iterator<Item = (&'static str, &'static str, u64)> + '_ {
        let catalogued = self
            .counter_keys
            .iter()
            .zip(self.counts.iter())
            .map(|((f, l), v)| (*f, *l, v.load(Ordering::Relaxed)));
        let spare = self.spare_counts.entries().map(|((f, l), v)| (*f, *l, v));
        catalogued.chain(spare)
    }

    /// The series of counter `family`, label values sorted (spare duplicates summed): every
    /// catalogued one, at 0 until it moves, so `rate()` and alerts work before the first
    /// occurrence; the overflow `other` and spare ones once they moved.
    fn counter_series(&self, family: &str) -> Vec<(&'static str, u64)> {
        let mut merged: BTreeMap<&'static str, u64> = BTreeMap::new();
        let catalogued = self.counter_keys.iter().zip(self.counts.iter());
        for ((f, l), v) in catalogued {
            let v = v.load(Ordering::Relaxed);
            if *f == family && (v > 0 || *l != OVERFLOW_LABEL) {
                *merged.entry(l).or_insert(0) += v;
            }
        }
        for ((f, l), v) in self.spare_counts.entries() {
            if *f == family && v > 0 {
                *merged.entry(l).or_insert(0) += v;
            }
        }
        merged.into_iter().collect()
    }

    fn gauge_slot(&self, family: &'static str, label: &str) -> Option<&AtomicU64> {
        if label.is_empty()
            && let Some(i) = self.gauge_index.get(family)
        {
            return self.gauges.get(*i);
        }
        self.spare_gauges.slot(
            |(f, l)| *f == family && &**l == label,
            || (family, label.into()),
        )
    }

    /// Every series of gauge `family`: set ones, then callbacks.
    fn gauge_series(&self, family: &str) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = Vec::new();
        for (name, v) in self.gauge_keys.iter().zip(self.gauges.iter()) {
            if *name == family {
                out.push((String::new(), as_i64(v.load(Ordering::Relaxed))));
            }
        }
        let mut spare: BTreeMap<&str, i64> = BTreeMap::new();
        for ((f, l), v) in self.spare_gauges.entries() {
            if *f == family {
                *spare.entry(l).or_insert(0) += as_i64(v);
            }
        }
        out.extend(spare.into_iter().map(|(l, v)| (l.to_owned(), v)));
        if let Ok(fns) = self.gauge_fns.lock() {
            for (f, read) in fns.iter() {
                if *f == family {
                    read(&mut |label, v| {
                        // A callback is the gauge's source: it replaces a series of the same
                        // label (an unlabelled catalogued gauge's atomic), never adds a twin.
                        out.retain(|(l, _)| l != label);
                        out.push((label.to_owned(), v));
                    });
                }
            }
        }
        out
    }

    fn histogram(&self, family: &str) -> Option<&Histo> {
        self.histograms
            .iter()
            .find(|(name, _)| *name == family)
            .map(|(_, h)| h)
    }
}

/// Gauges keep i64 values in u64 atomics (two's complement, so `fetch_add` of a negative delta
/// cast to u64 subtracts).
fn as_i64(bits: u64) -> i64 {
    i64::from_ne_bytes(bits.to_ne_bytes())
}

fn as_bits(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

/// Where a counter series lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// A series the catalog lists (index into `counts`).
    Catalogued(usize),
    /// A spare series (index into `spare_counts`).
    Spare(usize),
}

/// One counter series resolved once (hot paths keep it instead of naming the series on every
/// increment).
#[derive(Clone)]
pub struct Counter {
    inner: Arc<Inner>,
    slot: Option<Slot>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter").field("slot", &self.slot).finish()
    }
}

impl Counter {
    /// Adds `n`; returns the new total.
    #[inline]
    pub fn add(&self, n: u64) -> u64 {
        match self.slot.and_then(|slot| self.inner.atomic(slot)) {
            Some(v) => v.fetch_add(n, Ordering::Relaxed).wrapping_add(n),
            None => 0,
        }
    }
}

/// The metrics of one service.
pub struct Counters {
    inner: Arc<Inner>,
    /// OpenTelemetry histograms (only with OTLP metrics export on).
    otel_histograms: Vec<(&'static str, opentelemetry::metrics::Histogram<f64>)>,
    /// Keeps the observable instruments registered.
    _otel_observers: Vec<Box<dyn std::any::Any + Send + Sync>>,
}

impl std::fmt::Debug for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counters")
            .field("service", &self.service())
            .field("values", &self.snapshot())
            .finish()
    }
}

impl Counters {
    /// The registry of a service's `catalog` (plus [`COMMON`]). When OTLP metrics export is on
    /// ([`crate::telemetry::otel_metrics_enabled`]), every metric is registered as an observable
    /// OpenTelemetry instrument reading these values.
    pub fn new(catalog: &Catalog) -> Self {
        let catalog = *catalog;
        let inner = Arc::new(Inner::new(catalog));
        let mut observers: Vec<Box<dyn std::any::Any + Send + Sync>> = Vec::new();
        let mut otel_histograms = Vec::new();
        if crate::telemetry::otel_metrics_enabled() {
            let meter = opentelemetry::global::meter("sipcapture");
            for def in catalog.all() {
                let label = def.label.unwrap_or("");
                let family = def.name;
                match def.kind {
                    Kind::Counter => {
                        let weak = Arc::downgrade(&inner);
                        let instrument = meter
                            .u64_observable_counter(def.otel_name(catalog.service))
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
                            .i64_observable_gauge(def.otel_name(catalog.service))
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
                    Kind::Info => {
                        let instrument = meter
                            .i64_observable_gauge(def.otel_name(catalog.service))
                            .with_description(def.help)
                            .with_callback(|observer| {
                                let labels =
                                    crate::build_info::LABELS.map(|(k, v)| KeyValue::new(k, v));
                                observer.observe(1, &labels);
                            })
                            .build();
                        observers.push(Box::new(instrument));
                    }
                    Kind::Histogram => {
                        let instrument = meter
                            .f64_histogram(def.otel_name(catalog.service))
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
            inner,
            otel_histograms,
            _otel_observers: observers,
        }
    }

    /// The service these metrics belong to.
    pub fn service(&self) -> &'static str {
        self.inner.catalog.service
    }

    /// The catalog this registry was built from.
    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The handle of series `family{label}` ("" for an unlabelled counter), resolved once:
    /// the catalogued series, else a spare one (like [`Counters::add_labeled`]).
    pub fn counter(&self, family: &'static str, label: &'static str) -> Counter {
        Counter {
            inner: self.inner.clone(),
            slot: self.inner.resolve(family, label),
        }
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
        match self
            .inner
            .resolve(family, label)
            .and_then(|slot| self.inner.atomic(slot))
        {
            Some(v) => v.fetch_add(n, Ordering::Relaxed).wrapping_add(n),
            None => 0,
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
        if let Some(v) = self.inner.gauge_slot(family, label) {
            v.store(as_bits(value), Ordering::Relaxed);
        }
    }

    /// Adds `delta` to gauge `family{label}`.
    pub fn add_gauge(&self, family: &'static str, label: &str, delta: i64) {
        if let Some(v) = self.inner.gauge_slot(family, label) {
            v.fetch_add(as_bits(delta), Ordering::Relaxed);
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
        if let Some(h) = self.inner.histogram(family) {
            h.observe(elapsed);
        }
        for (name, histogram) in &self.otel_histograms {
            if *name == family {
                histogram.record(elapsed.as_secs_f64(), &[]);
            }
        }
    }

    /// Current value of a counter: `family.label` for one label value, `family` for the sum
    /// over every label value.
    pub fn get(&self, name: &str) -> u64 {
        let (family, label) = match name.split_once('.') {
            Some((family, label)) => (family, Some(label)),
            None => (name, None),
        };
        self.inner
            .counter_entries()
            .filter(|(f, l, _)| *f == family && label.is_none_or(|want| want == *l))
            .map(|(_, _, v)| v)
            .sum()
    }

    /// Current value of gauge `family{label}` (set ones, then callbacks).
    pub fn gauge(&self, family: &str, label: &str) -> Option<i64> {
        self.inner
            .gauge_series(family)
            .into_iter()
            .find(|(l, _)| l == label)
            .map(|(_, v)| v)
    }

    /// Every counter that moved, sorted by name: `family` for unlabelled ones; `family.<label>`
    /// per label value plus `family` (their sum) for labelled ones.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let mut all = BTreeMap::new();
        for (family, label, v) in self.inner.counter_entries() {
            if v == 0 {
                continue;
            }
            if !label.is_empty() {
                *all.entry(format!("{family}.{label}")).or_insert(0) += v;
            }
            *all.entry(family.to_owned()).or_insert(0) += v;
        }
        all
    }

    /// Appends these metrics in the Prometheus text exposition format (0.0.4): every catalog
    /// metric of this service (unlabelled counters at 0 until they move), then any uncatalogued
    /// counter.
    pub fn render_prometheus(&self, out: &mut String) {
        let service = self.service();
        for def in self.inner.catalog.all() {
            let name = def.prometheus_name(service);
            let kind = match def.kind {
                Kind::Counter => "counter",
                Kind::Gauge | Kind::Info => "gauge",
                Kind::Histogram => "histogram",
            };
            let help = def.help.replace('\\', "\\\\").replace('\n', "\\n");
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            let label = def.label.unwrap_or("");
            match def.kind {
                Kind::Counter => {
                    for (value, n) in self.inner.counter_series(def.name) {
                        let _ = writeln!(out, "{name}{} {n}", labels(label, value));
                    }
                }
                Kind::Info => {
                    let [(k1, v1), (k2, v2)] = crate::build_info::LABELS;
                    let _ = writeln!(out, "{name}{{{k1}=\"{v1}\",{k2}=\"{v2}\"}} 1");
                }
                Kind::Gauge => {
                    let mut series = self.inner.gauge_series(def.name);
                    series.sort();
                    for (value, n) in series {
                        let _ = writeln!(out, "{name}{} {n}", labels(label, &value));
                    }
                }
                Kind::Histogram => {
                    let Some(h) = self.inner.histogram(def.name) else {
                        continue;
                    };
                    let mut cumulative = 0;
                    for (bound, bucket) in BUCKETS.iter().zip(h.buckets.iter()) {
                        cumulative += bucket.load(Ordering::Relaxed);
                        let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                    }
                    let count = h.count.load(Ordering::Relaxed);
                    let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
                    let _ = writeln!(out, "{name}_sum {sum}");
                    let _ = writeln!(out, "{name}_count {count}");
                }
            }
        }
        // Counters outside the catalog still show (each service's catalog test keeps this empty).
        let mut unknown: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        for ((family, label), n) in self.inner.spare_counts.entries() {
            if self.inner.catalog.find(family).is_none() {
                *unknown.entry((*family, *label)).or_insert(0) += n;
            }
        }
        let mut previous = None;
        for ((family, label), n) in unknown {
            let name = format!("sipcapture_{service}_{family}_total");
            if previous != Some(family) {
                // One TYPE line per family: its series follow it together (sorted by family).
                let _ = writeln!(out, "# TYPE {name} counter");
                previous = Some(family);
            }
            let _ = writeln!(out, "{name}{} {n}", labels("label", label));
        }
    }

    /// Names of counters incremented that the catalog does not list (for tests).
    pub fn uncatalogued(&self) -> Vec<String> {
        self.inner
            .spare_counts
            .entries()
            .filter(|((f, _), _)| self.inner.catalog.find(f).is_none())
            .map(|((f, _), _)| (*f).to_owned())
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    const TEST: Catalog = Catalog {
        service: "collector",
        metrics: &[
            counter("hep_received", Some("input"), "received").values(&["hep_udp", "hep_tcp"]),
            counter("dropped", Some("reason"), "dropped").values(&["truncated"]),
            counter("batches_sent", None, "sent"),
            gauge("queue_depth", Some("lane"), "depth"),
            gauge("streams_open", None, "open"),
            gauge("spool_bytes", Some("lane"), "bytes"),
            histogram("batch_ack_seconds", "ack latency"),
        ],
    };

    #[test]
    fn counts_and_snapshots() {
        let c = Counters::new(&TEST);
        c.add_labeled("hep_received", "hep_udp", 3);
        c.add_labeled("hep_received", "hep_tcp", 2);
        assert_eq!(c.count_drop("bad_magic"), 1);
        assert_eq!(c.count_drop("bad_magic"), 2);
        assert_eq!(c.count_drop("truncated"), 1);
        assert_eq!(c.get("dropped.bad_magic"), 2);
        assert_eq!(c.get("dropped"), 3);
        assert_eq!(c.get("hep_received"), 5);
        assert_eq!(c.get("hep_received.hep_tcp"), 2);
        let snap = c.snapshot();
        assert_eq!(snap.get("dropped.bad_magic"), Some(&2));
        assert_eq!(snap.get("hep_received"), Some(&5));
        assert_eq!(snap.get("batches_sent"), None, "only what moved");
        assert!(worth_logging(1) && worth_logging(4) && !worth_logging(3));
        assert!(c.uncatalogued().is_empty());
        c.add("not_in_the_catalog", 1);
        assert_eq!(c.uncatalogued(), vec!["not_in_the_catalog".to_owned()]);
        assert_eq!(c.get("not_in_the_catalog"), 1);
    }

    #[test]
    fn handles_and_gauges() {
        let c = Counters::new(&TEST);
        let sent = c.counter("batches_sent", "");
        assert_eq!(sent.add(2), 2);
        assert_eq!(sent.clone().add(1), 3);
        assert_eq!(c.get("batches_sent"), 3);
        let mirror = c.counter("hep_received", "mirror");
        assert_eq!(mirror.add(4), 4, "not catalogued: a spare series");
        assert_eq!(c.get("hep_received.mirror"), 4);
        c.add_labeled("hep_received", "mirror", 1);
        assert_eq!(c.get("hep_received.mirror"), 5, "the same spare series");
        c.add_gauge("streams_open", "", 1);
        c.add_gauge("streams_open", "", 1);
        c.add_gauge("streams_open", "", -3);
        assert_eq!(c.gauge("streams_open", ""), Some(-1));
        c.set_gauge("queue_depth", "2", 9);
        c.set_gauge("queue_depth", "2", 7);
        assert_eq!(c.gauge("queue_depth", "2"), Some(7));
        c.gauge_fn("spool_bytes", |report| report("1", 4096));
        assert_eq!(c.gauge("spool_bytes", "1"), Some(4096));
        c.gauge_fn("streams_open", |report| report("", 5));
        let mut out = String::new();
        c.render_prometheus(&mut out);
        assert_eq!(
            out.matches("\nsipcapture_collector_streams_open ").count(),
            1,
            "a callback replaces the unlabelled atomic: {out}"
        );
        assert!(out.contains("\nsipcapture_collector_streams_open 5\n"));
    }

    #[test]
    fn spare_slots_run_out_into_other() {
        let c = Counters::new(&TEST);
        let reasons: Vec<&'static str> = (0..SPARE_COUNTER_SLOTS + 10)
            .map(|i| &*Box::leak(format!("reason_{i}").into_boxed_str()))
            .collect();
        for r in &reasons {
            c.count_drop(r);
        }
        assert_eq!(c.get("dropped"), reasons.len() as u64, "every drop counted");
        assert_eq!(c.get("dropped.other"), 10);
        assert_eq!(c.get("dropped.reason_0"), 1);
    }

    #[test]
    fn concurrent_increments_are_exact() {
        let c = Arc::new(Counters::new(&TEST));
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let c = c.clone();
                std::thread::spawn(move || {
                    let label: &'static str = if t % 2 == 0 {
                        "new_reason"
                    } else {
                        "truncated"
                    };
                    for _ in 0..10_000 {
                        c.count_drop(label);
                        c.add_labeled("hep_received", "hep_udp", 1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(c.get("dropped.new_reason"), 20_000);
        assert_eq!(c.get("dropped.truncated"), 20_000);
        assert_eq!(c.get("hep_received.hep_udp"), 40_000);
        assert_eq!(c.snapshot().get("dropped.new_reason"), Some(&20_000));
    }

    #[test]
    fn renders_prometheus_text() {
        let c = Counters::new(&TEST);
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
        assert!(
            out.contains("sipcapture_collector_hep_received_total{input=\"hep_tcp\"} 0\n"),
            "known label values are exported at 0: {out}"
        );
        assert!(out.contains("sipcapture_collector_dropped_total{reason=\"truncated\"} 0\n"));
        assert!(
            !out.contains("reason=\"other\""),
            "the overflow appears once used"
        );
        assert!(out.contains(&format!(
            "sipcapture_collector_build_info{{version=\"{}\",git_commit=\"{}\"}} 1\n",
            crate::build_info::VERSION,
            crate::build_info::GIT_COMMIT
        )));
        assert!(out.contains("# TYPE sipcapture_collector_build_info gauge\n"));
        assert!(out.contains("sipcapture_collector_dropped_total{reason=\"bad\\\"magic\"} 1\n"));
        assert!(out.contains("sipcapture_collector_batches_sent_total 0\n"));
        assert!(out.contains("sipcapture_collector_streams_open 0\n"));
        assert!(out.contains("sipcapture_collector_queue_depth{lane=\"0\"} 7\n"));
        assert!(out.contains("sipcapture_collector_spool_bytes{lane=\"1\"} 4096\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_bucket{le=\"0.0025\"} 0\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_bucket{le=\"0.005\"} 1\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_bucket{le=\"60\"} 1\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(out.contains("sipcapture_collector_batch_ack_seconds_count 2\n"));
        assert!(
            out.contains("sipcapture_collector_batch_ack_seconds_sum 100.003\n"),
            "{out}"
        );
        assert!(
            out.contains("sipcapture_collector_tls_reloaded_total 0\n"),
            "COMMON metrics"
        );
        assert!(!out.contains("sipcapture_storer_"));
    }

    #[test]
    fn common_metrics_yield_to_the_service_entry() {
        const CONTROL_LIKE: Catalog = Catalog {
            service: "control",
            metrics: &[counter(
                "status_changed",
                Some("state"),
                "accepted by control",
            )],
        };
        let all: Vec<_> = CONTROL_LIKE
            .all()
            .filter(|d| d.name == "status_changed")
            .collect();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].help, "accepted by control");
        assert_eq!(
            CONTROL_LIKE
                .undocumented("`sipcapture_control_status_changed_total`")
                .len(),
            COMMON.len() - 1
        );
    }

    #[test]
    fn docs_list_every_common_metric() {
        let docs = include_str!("../../../docs/METRICS.md");
        for service in ["collector", "storer", "control"] {
            let catalog = Catalog {
                service,
                metrics: &[],
            };
            assert_eq!(catalog.undocumented(docs), Vec::<String>::new());
        }
    }
}
