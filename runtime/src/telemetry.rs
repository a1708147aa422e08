//! Logging and OpenTelemetry set-up shared by every binary.
//!
//! - Logs: `tracing` to stderr as text or JSON lines (`log_format`), filtered by `RUST_LOG` when
//!   set, else by the `log_level` key (same directive syntax, e.g. `info,sipcapture_storer=debug`).
//! - OpenTelemetry: on only when the standard env asks for it — `OTEL_EXPORTER_OTLP_ENDPOINT`, or
//!   `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT` for one signal
//!   (`OTEL_SDK_DISABLED=true`, `OTEL_TRACES_EXPORTER=none`, `OTEL_METRICS_EXPORTER=none` turn
//!   it off). Traces and metrics then go over OTLP/gRPC; `OTEL_SERVICE_NAME`,
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_METRIC_EXPORT_INTERVAL` (ms), `OTEL_EXPORTER_OTLP_HEADERS`
//!   and `OTEL_EXPORTER_OTLP_TIMEOUT` are honoured by the SDK. When off, no SDK object exists:
//!   no tracing layer, no instruments, no context propagation work.
//! - Trace context: W3C `traceparent`/`tracestate`, injected into gRPC metadata and into each
//!   `RecordBatch` ([`inject_map`] / [`extract_map`]), so a batch's spans on the collector and
//!   the storer share one trace.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::{Extractor, Injector};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde::{Deserialize, Serialize};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer};

/// The default filter: our crates at info, database drivers quiet (sqlx logs every statement at
/// info otherwise).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn,hyper=warn";

static TRACES_ON: AtomicBool = AtomicBool::new(false);
static METRICS_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported (trace context is propagated only then).
pub fn otel_traces_enabled() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
}

/// Whether metrics are exported over OTLP (observable instruments are registered only then).
pub fn otel_metrics_enabled() -> bool {
    METRICS_ON.load(Ordering::Relaxed)
}

/// Log line format (`log_format` key).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Logging settings every service config carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// `log_format`.
    pub format: LogFormat,
    /// `log_level`: a `RUST_LOG`-style directive; `RUST_LOG` wins when set.
    pub level: String,
}

impl LogSettings {
    /// Settings from a config's `log_format` and `log_level`.
    pub fn new(format: LogFormat, level: &str) -> Self {
        LogSettings {
            format,
            level: level.to_owned(),
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        LogSettings {
            format: LogFormat::Text,
            level: DEFAULT_FILTER.to_owned(),
        }
    }
}

/// Checks a `log_level` directive; the error names the key.
pub fn validate_log_level(level: &str) -> Result<(), crate::config::ConfigError> {
    EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| crate::config::ConfigError::invalid("log_level", e.to_string()))
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// An OTLP exporter could not be built (bad endpoint URL, ...).
    #[error("OpenTelemetry exporter: {0}")]
    Exporter(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// The running OpenTelemetry providers; [`Telemetry::shutdown`] flushes them.
#[derive(Debug, Default)]
#[must_use = "call shutdown() at exit so the last spans and metrics are exported"]
pub struct Telemetry {
    tracer: Option<SdkTracerProvider>,
    meter: Option<SdkMeterProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporters (last spans, a final metrics export).
    pub fn shutdown(self) {
        if let Some(tracer) = self.tracer
            && let Err(e) = tracer.shutdown()
        {
            tracing::warn!(error = %e, "opentelemetry trace export did not shut down cleanly");
        }
        if let Some(meter) = self.meter
            && let Err(e) = meter.shutdown()
        {
            tracing::warn!(error = %e, "opentelemetry metrics export did not shut down cleanly");
        }
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn env_is(name: &str, value: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v.trim().eq_ignore_ascii_case(value))
}

/// Which OTLP signals the env turns on: (traces, metrics).
pub fn otel_signals_from_env() -> (bool, bool) {
    if env_is("OTEL_SDK_DISABLED", "true") {
        return (false, false);
    }
    let all = env_set("OTEL_EXPORTER_OTLP_ENDPOINT");
    let traces = (all || env_set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
        && !env_is("OTEL_TRACES_EXPORTER", "none");
    let metrics = (all || env_set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
        && !env_is("OTEL_METRICS_EXPORTER", "none");
    (traces, metrics)
}

/// Starts logging and, when the env asks for it, OpenTelemetry export. Must run inside a tokio
/// runtime (the OTLP exporters open their gRPC channel lazily on it) and before the service's
/// metrics are created. `service` names the resource when `OTEL_SERVICE_NAME` is unset.
pub fn init(service: &'static str, log: &LogSettings) -> Result<Telemetry, TelemetryError> {
    let (traces, metrics) = otel_signals_from_env();
    let resource = || {
        let builder = opentelemetry_sdk::Resource::builder();
        if env_set("OTEL_SERVICE_NAME") {
            builder.build()
        } else {
            builder.with_service_name(service).build()
        }
    };
    let mut telemetry = Telemetry::default();
    if metrics {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .build()?;
        let provider = SdkMeterProvider::builder()
            .with_periodic_exporter(exporter)
            .with_resource(resource())
            .build();
        opentelemetry::global::set_meter_provider(provider.clone());
        METRICS_ON.store(true, Ordering::Relaxed);
        telemetry.meter = Some(provider);
    }
    let otel_layer = if traces {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .build()?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource())
            .build();
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        opentelemetry::global::set_tracer_provider(provider.clone());
        let tracer = provider.tracer("sipcapture");
        TRACES_ON.store(true, Ordering::Relaxed);
        telemetry.tracer = Some(provider);
        // Spans of our crates are exported whatever the log level.
        let spans = tracing_subscriber::filter::Targets::new()
            .with_target("sipcapture_collector", tracing::Level::INFO)
            .with_target("sipcapture_storer", tracing::Level::INFO)
            .with_target("sipcapture_control", tracing::Level::INFO)
            .with_target("sipcapture_runtime", tracing::Level::INFO)
            .with_target("sipcapture_cli", tracing::Level::INFO);
        Some(
            tracing_opentelemetry::layer()
                .with_tracer(tracer)
                .with_filter(spans),
        )
    } else {
        None
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let fmt = match log.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(colours())
            .with_target(true)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .with_writer(std::io::stderr)
            .with_target(true)
            .boxed(),
    };
    let _already_set = tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel_layer)
        .try_init();
    if traces || metrics {
        tracing::info!(traces, metrics, "opentelemetry export on");
    }
    Ok(telemetry)
}

/// Starts text logging with [`DEFAULT_FILTER`] (or `RUST_LOG`) and no OpenTelemetry. Safe to
/// call twice (the second call is a no-op), so tests may call it too.
pub fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colours())
        .with_target(true)
        .try_init();
}

/// Colours only on a terminal, and never with `NO_COLOR` set (log files and collectors get
/// plain text).
fn colours() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

struct MapInjector<'a>(&'a mut HashMap<String, String>);

impl Injector for MapInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

struct MapExtractor<'a>(&'a HashMap<String, String>);

impl Extractor for MapExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

struct MetadataInjector<'a>(&'a mut tonic::metadata::MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

struct MetadataExtractor<'a>(&'a tonic::metadata::MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Writes `span`'s W3C trace context into `map` (nothing when tracing is off).
pub fn inject_map(span: &tracing::Span, map: &mut HashMap<String, String>) {
    if !otel_traces_enabled() {
        return;
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MapInjector(map))
    });
}

/// Makes `span` a child of the trace context carried in `map` (no-op when tracing is off or the
/// map carries none).
pub fn extract_map(span: &tracing::Span, map: &HashMap<String, String>) {
    if !otel_traces_enabled() || map.is_empty() {
        return;
    }
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&MapExtractor(map)));
    let _ = span.set_parent(cx);
}

/// Writes `span`'s W3C trace context into gRPC request metadata (a tonic interceptor's job).
pub fn inject_metadata(span: &tracing::Span, metadata: &mut tonic::metadata::MetadataMap) {
    if !otel_traces_enabled() {
        return;
    }
    let cx = span.context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(metadata));
    });
}

/// Makes `span` a child of the trace context in gRPC request metadata, when there is one.
pub fn extract_metadata(span: &tracing::Span, metadata: &tonic::metadata::MetadataMap) {
    if !otel_traces_enabled() || metadata.get("traceparent").is_none() {
        return;
    }
    let cx =
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)));
    let _ = span.set_parent(cx);
}

/// A tonic client interceptor injecting the current span's trace context into every call.
pub fn trace_interceptor(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    inject_metadata(&tracing::Span::current(), request.metadata_mut());
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_levels_are_validated() {
        assert!(validate_log_level("info,sipcapture_storer=debug").is_ok());
        let err = validate_log_level("info,=[").unwrap_err().to_string();
        assert!(err.contains("log_level"), "{err}");
    }

    #[test]
    fn log_format_names() {
        #[derive(Deserialize)]
        struct F {
            f: LogFormat,
        }
        let f: F = toml_like("json");
        assert_eq!(f.f, LogFormat::Json);
        fn toml_like(v: &str) -> F {
            figment::Figment::from(figment::providers::Serialized::global("f", v))
                .extract()
                .unwrap_or(F { f: LogFormat::Text })
        }
    }
}
