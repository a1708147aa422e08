//! A minimal OTLP/gRPC receiver for tests: `TraceService` and `MetricsService` servers (tonic +
//! the opentelemetry-proto types) that keep every export request, so a test can assert on the
//! spans and metrics a real run sent.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
use tokio::sync::oneshot;
use tonic::{Request, Response, Status};

/// One received span, flattened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanSeen {
    /// `service.name` of the resource that sent it.
    pub service: String,
    /// Span name.
    pub name: String,
    /// Trace id (16 bytes).
    pub trace_id: Vec<u8>,
    /// Span id (8 bytes).
    pub span_id: Vec<u8>,
    /// Parent span id (empty for a root).
    pub parent_span_id: Vec<u8>,
}

/// One received number data point (sum or gauge), flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct PointSeen {
    /// `service.name` of the resource that sent it.
    pub service: String,
    /// Instrument name.
    pub metric: String,
    /// Attributes as `key=value`, sorted.
    pub attributes: Vec<String>,
    /// The value (integers as f64), or a histogram's count.
    pub value: f64,
}

#[derive(Debug, Default)]
struct Store {
    spans: Vec<SpanSeen>,
    points: Vec<PointSeen>,
}

/// The running receiver.
#[derive(Debug)]
pub struct OtlpSink {
    /// Its address; `http://{addr}` is the OTLP endpoint.
    pub addr: SocketAddr,
    store: Arc<Mutex<Store>>,
    stop: Option<oneshot::Sender<()>>,
}

#[derive(Debug, Clone)]
struct Receiver {
    store: Arc<Mutex<Store>>,
}

fn service_name(resource: Option<&opentelemetry_proto::tonic::resource::v1::Resource>) -> String {
    resource
        .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
        .and_then(|kv| kv.value.as_ref())
        .and_then(|v| match &v.value {
            Some(any_value::Value::StringValue(s)) => Some(s.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

fn attribute_text(kv: &opentelemetry_proto::tonic::common::v1::KeyValue) -> String {
    let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    };
    format!("{}={value}", kv.key)
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let mut seen = Vec::new();
        for rs in request.into_inner().resource_spans {
            let service = service_name(rs.resource.as_ref());
            for ss in rs.scope_spans {
                for span in ss.spans {
                    seen.push(SpanSeen {
                        service: service.clone(),
                        name: span.name,
                        trace_id: span.trace_id,
                        span_id: span.span_id,
                        parent_span_id: span.parent_span_id,
                    });
                }
            }
        }
        if let Ok(mut store) = self.store.lock() {
            store.spans.extend(seen);
        }
        Ok(Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Receiver {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let mut seen = Vec::new();
        for rm in request.into_inner().resource_metrics {
            let service = service_name(rm.resource.as_ref());
            for sm in rm.scope_metrics {
                for m in sm.metrics {
                    let mut push =
                        |attributes: &[opentelemetry_proto::tonic::common::v1::KeyValue],
                         value: f64| {
                            let mut attributes: Vec<String> =
                                attributes.iter().map(attribute_text).collect();
                            attributes.sort();
                            seen.push(PointSeen {
                                service: service.clone(),
                                metric: m.name.clone(),
                                attributes,
                                value,
                            });
                        };
                    let number = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| {
                        match p.value {
                            Some(number_data_point::Value::AsInt(i)) => i as f64,
                            Some(number_data_point::Value::AsDouble(d)) => d,
                            None => 0.0,
                        }
                    };
                    match &m.data {
                        Some(metric::Data::Sum(sum)) => {
                            for p in &sum.data_points {
                                push(&p.attributes, number(p));
                            }
                        }
                        Some(metric::Data::Gauge(gauge)) => {
                            for p in &gauge.data_points {
                                push(&p.attributes, number(p));
                            }
                        }
                        Some(metric::Data::Histogram(h)) => {
                            for p in &h.data_points {
                                push(&p.attributes, p.count as f64);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Ok(mut store) = self.store.lock() {
            store.points.extend(seen);
        }
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

impl OtlpSink {
    /// Starts the receiver on a free loopback port.
    pub async fn start() -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let store = Arc::new(Mutex::new(Store::default()));
        let receiver = Receiver {
            store: store.clone(),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(TraceServiceServer::new(receiver.clone()))
                .add_service(MetricsServiceServer::new(receiver))
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                ),
        );
        Ok(OtlpSink {
            addr,
            store,
            stop: Some(stop),
        })
    }

    /// The endpoint URL for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<SpanSeen> {
        self.store
            .lock()
            .map(|s| s.spans.clone())
            .unwrap_or_default()
    }

    /// Every data point received so far.
    pub fn points(&self) -> Vec<PointSeen> {
        self.store
            .lock()
            .map(|s| s.points.clone())
            .unwrap_or_default()
    }

    /// The latest value of `metric` from `service` with exactly `attributes` (cumulative
    /// temporality: the last export is the total).
    pub fn latest(&self, service: &str, metric: &str, attributes: &[&str]) -> Option<f64> {
        self.points()
            .into_iter()
            .rev()
            .find(|p| p.service == service && p.metric == metric && p.attributes == attributes)
            .map(|p| p.value)
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
