//! One Deliver stream to one storer: Hello → Welcome, then batches out and acks in.

use std::time::Duration;

use super::ExportConfig;
use super::encoded::{DeliverCodec, Outgoing};
use super::storers::Storers;
use bytes::Bytes;
use sipcapture_proto::v1::{Hello, Welcome, deliver_response};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::codegen::http::uri::PathAndQuery;

/// Time allowed for connecting and for the Welcome.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a stream could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The storer URL cannot be used (bad URL or TLS files; logged when built).
    #[error("cannot build an endpoint for {0}")]
    Endpoint(String),
    /// Bad endpoint URL or transport failure.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The call failed.
    #[error("{0}")]
    Status(#[from] tonic::Status),
    /// No Welcome in time or a wrong first message.
    #[error("no welcome from the storer")]
    NoWelcome,
}

/// An open stream.
#[derive(Debug)]
pub struct Conn {
    tx: mpsc::Sender<Outgoing>,
    rx: Streaming<sipcapture_proto::v1::DeliverResponse>,
}

impl Conn {
    /// Connects, says Hello and waits for the Welcome.
    pub async fn open(
        url: &str,
        storers: &Storers,
        cfg: &ExportConfig,
        window: usize,
    ) -> Result<(Conn, Welcome), StreamError> {
        let channel = storers
            .endpoint(url)
            .ok_or_else(|| StreamError::Endpoint(url.to_owned()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect()
            .await?;
        let mut grpc = tonic::client::Grpc::new(channel)
            .max_encoding_message_size(64 * 1024 * 1024)
            .max_decoding_message_size(64 * 1024 * 1024);
        let (tx, rx) = mpsc::channel(window.max(2));
        let hello = Outgoing::Hello(Hello {
            collector_id: cfg.collector_id.clone(),
            stream_id: cfg.stream_id.clone(),
        });
        tx.send(hello).await.map_err(|_| StreamError::NoWelcome)?;
        let opened = tokio::time::timeout(CONNECT_TIMEOUT, async {
            let mut request = sipcapture_runtime::auth::with_bearer(
                tonic::Request::new(ReceiverStream::new(rx)),
                cfg.token.as_deref(),
            );
            // The stream's span context goes in the call's metadata (W3C traceparent), so the
            // storer's stream span is its child.
            sipcapture_runtime::telemetry::inject_metadata(
                &tracing::Span::current(),
                request.metadata_mut(),
            );
            request.extensions_mut().insert(tonic::GrpcMethod::new(
                "sipcapture.v1.StorerService",
                "Deliver",
            ));
            grpc.ready()
                .await
                .map_err(|e| tonic::Status::unknown(format!("storer not ready: {e}")))?;
            // Batches go out as the bytes they were encoded to when sealed (DeliverCodec).
            let mut inbound = grpc
                .streaming(
                    request,
                    PathAndQuery::from_static("/sipcapture.v1.StorerService/Deliver"),
                    DeliverCodec,
                )
                .await?
                .into_inner();
            let first = inbound.message().await?;
            Ok::<_, StreamError>((inbound, first))
        })
        .await
        .map_err(|_| StreamError::NoWelcome)??;
        match opened {
            (
                inbound,
                Some(sipcapture_proto::v1::DeliverResponse {
                    message: Some(deliver_response::Message::Welcome(welcome)),
                }),
            ) => Ok((Conn { tx, rx: inbound }, welcome)),
            _ => Err(StreamError::NoWelcome),
        }
    }

    /// Queues an encoded batch without waiting; false when the window is full or the stream
    /// is gone.
    pub fn try_send(&self, batch: Bytes) -> bool {
        self.tx.try_send(Outgoing::Batch(batch)).is_ok()
    }
}

/// The next message of a stream (pending forever without one, for `select!`).
pub async fn next_message(
    conn: Option<&mut Conn>,
) -> Result<Option<deliver_response::Message>, tonic::Status> {
    match conn {
        Some(conn) => Ok(conn.rx.message().await?.and_then(|m| m.message)),
        None => std::future::pending().await,
    }
}
