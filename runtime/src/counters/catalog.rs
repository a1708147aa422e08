//! What a service's metrics are: [`Catalog`] (the service's own [`MetricDef`]s, plus
//! [`COMMON`]), built with [`counter`], [`gauge`] and [`histogram`]. Declared next to each
//! service's typed events; the registry ([`super::Counters`]) lays its atomics out from it.

/// What kind of value a metric is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Monotonic count (`<name>_total` in Prometheus).
    Counter,
    /// A current value.
    Gauge,
    /// Latency distribution in seconds (`_bucket`, `_sum`, `_count`).
    Histogram,
    /// A constant 1 whose labels describe the build ([`crate::build_info::LABELS`]); a gauge
    /// in Prometheus and OpenTelemetry.
    Info,
}

/// One documented metric family.
#[derive(Debug, Clone, Copy)]
pub struct MetricDef {
    /// Family name without prefix or suffix (`hep_received`, `dropped`).
    pub name: &'static str,
    /// Its kind.
    pub kind: Kind,
    /// Its one label, when it has one (`reason`, `input`, `family`, `lane`, `mode`).
    pub label: Option<&'static str>,
    /// The label values known in advance: each gets its atomic when the registry is built.
    pub values: &'static [&'static str],
    /// What it means.
    pub help: &'static str,
}

impl MetricDef {
    /// The label values known in advance (builder for catalogs).
    pub const fn values(mut self, values: &'static [&'static str]) -> Self {
        self.values = values;
        self
    }

    /// The Prometheus name: `sipcapture_<service>_<name>` plus `_total` for counters.
    pub fn prometheus_name(&self, service: &str) -> String {
        match self.kind {
            Kind::Counter => format!("sipcapture_{service}_{}_total", self.name),
            Kind::Gauge | Kind::Histogram | Kind::Info => {
                format!("sipcapture_{service}_{}", self.name)
            }
        }
    }

    /// The OpenTelemetry instrument name: `sipcapture.<service>.<name>`.
    pub fn otel_name(&self, service: &str) -> String {
        format!("sipcapture.{service}.{}", self.name)
    }
}

/// A counter family (catalog builder).
pub const fn counter(
    name: &'static str,
    label: Option<&'static str>,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Counter,
        label,
        values: &[],
        help,
    }
}

/// A gauge family (catalog builder).
pub const fn gauge(
    name: &'static str,
    label: Option<&'static str>,
    help: &'static str,
) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Gauge,
        label,
        values: &[],
        help,
    }
}

/// A latency histogram, seconds (catalog builder).
pub const fn histogram(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Histogram,
        label: None,
        values: &[],
        help,
    }
}

/// A build-info metric (catalog builder): 1, labelled with the version and git commit.
pub const fn info(name: &'static str, help: &'static str) -> MetricDef {
    MetricDef {
        name,
        kind: Kind::Info,
        label: None,
        values: &[],
        help,
    }
}

/// The metrics one service exports.
#[derive(Debug, Clone, Copy)]
pub struct Catalog {
    /// The service (`collector`, `storer`, `control`): the Prometheus and OTLP name prefix.
    pub service: &'static str,
    /// Its own metrics; [`COMMON`] is added to them (an own entry of the same name wins).
    pub metrics: &'static [MetricDef],
}

impl Catalog {
    /// Every metric of the service: its own, then the [`COMMON`] ones it does not redefine.
    pub fn all(&self) -> impl Iterator<Item = &'static MetricDef> + '_ {
        let own = self.metrics;
        own.iter().chain(
            COMMON
                .iter()
                .filter(move |c| !own.iter().any(|d| d.name == c.name)),
        )
    }

    /// The entry of metric `name`.
    pub fn find(&self, name: &str) -> Option<&'static MetricDef> {
        self.all().find(|d| d.name == name)
    }

    /// Prometheus names of this catalog that `docs` (docs/METRICS.md) does not list as
    /// `` `name` `` (for the docs check each service runs).
    pub fn undocumented(&self, docs: &str) -> Vec<String> {
        self.all()
            .map(|d| d.prometheus_name(self.service))
            .filter(|name| !docs.contains(&format!("`{name}`")))
            .collect()
    }
}

/// The metrics every member (collector, storer; control redefines `status_changed`) exports.
pub const COMMON: &[MetricDef] = &[
    info(
        "build_info",
        "always 1; labels: version and git_commit of the running build",
    ),
    counter(
        "status_changed",
        Some("state"),
        "capture status changes applied (state on or off)",
    )
    .values(&["on", "off"]),
    counter(
        "grpc_tls_refused",
        None,
        "gRPC TLS handshakes refused (untrusted or missing client certificate, timeout)",
    ),
    counter(
        "grpc_tls_closed_early",
        None,
        "connections to a gRPC TLS listener closed before the handshake completed (TCP probes, scans)",
    ),
    counter(
        "grpc_refused_per_ip",
        None,
        "gRPC connections closed at accept because their source address held grpc_limits.max_connections_per_ip",
    ),
    counter(
        "grpc_connections_closed",
        Some("reason"),
        "gRPC connections closed by a deadline (preface_timeout, idle, keepalive)",
    )
    .values(&["preface_timeout", "idle", "keepalive"]),
    counter(
        "tls_reloaded",
        None,
        "TLS certificates reloaded after a change on disk or SIGHUP",
    ),
    counter(
        "tls_reload_failed",
        None,
        "TLS certificate reloads that failed (the previous certificates stay in use)",
    ),
];

/// Histogram bucket bounds, seconds.
pub const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
