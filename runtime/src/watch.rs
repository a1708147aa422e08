//! The member side of control: register with control's `Watch` and apply every desired status it
//! sends, reconnecting with backoff for as long as the member runs. A member that starts while
//! the fleet is off comes up off as soon as it reaches control.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::status::CaptureSwitch;
use crate::tls::GrpcClientTls;
use sipcapture_proto::v1::WatchRequest;
use sipcapture_proto::v1::control_service_client::ControlServiceClient;

const MIN_BACKOFF: Duration = Duration::from_millis(200);
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How a member reaches control: client TLS for an `https://` URL and the bearer token
/// (control requires it, or a client certificate, on Watch when it has auth configured).
#[derive(Debug, Clone, Default)]
pub struct ControlLink {
    /// Client TLS settings.
    pub tls: GrpcClientTls,
    /// Bearer token sent on Watch.
    pub token: Option<String>,
}

/// Keeps a Watch stream to `control_url` open until `shutdown`, applying what arrives.
/// `first` is signalled once the first desired status has been applied (members wait for it,
/// briefly, before opening their inputs).
pub async fn watch_control(
    control_url: String,
    link: ControlLink,
    registration: WatchRequest,
    switch: Arc<CaptureSwitch>,
    shutdown: CancellationToken,
    mut first: Option<tokio::sync::oneshot::Sender<()>>,
) {
    let mut backoff = MIN_BACKOFF;
    loop {
        let session = watch_once(&control_url, &link, &registration, &switch, &mut first);
        let result = tokio::select! {
            () = shutdown.cancelled() => return,
            r = session => r,
        };
        match result {
            Ok(()) => {
                tracing::info!(control = %control_url, "control closed the watch stream");
                backoff = MIN_BACKOFF;
            }
            Err(e) => {
                tracing::warn!(control = %control_url, error = %e, retry_in = ?backoff, "cannot watch control");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

async fn watch_once(
    control_url: &str,
    link: &ControlLink,
    registration: &WatchRequest,
    switch: &CaptureSwitch,
    first: &mut Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // Files are read per connection: a rotated client certificate is used on the next one.
    let channel = link
        .tls
        .endpoint(control_url)?
        .connect_timeout(Duration::from_secs(3))
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(5))
        .connect()
        .await?;
    let mut client = ControlServiceClient::new(channel);
    let request = crate::auth::with_bearer(
        tonic::Request::new(registration.clone()),
        link.token.as_deref(),
    );
    let mut stream = client.watch(request).await?.into_inner();
    tracing::info!(control = %control_url, "registered with control");
    while let Some(desired) = stream.message().await? {
        switch.apply_desired(&desired);
        tracing::info!(state = ?desired.state, "capture status from control applied");
        if let Some(first) = first.take() {
            let _waiter_gone = first.send(());
        }
    }
    Ok(())
}

/// Starts watching control (when a URL is configured) and waits up to `wait` for the first
/// desired status, so a member started while the fleet is off does not capture meanwhile.
/// Returns without waiting longer when control is unreachable: capture then follows the
/// member's own config until control answers.
pub async fn start(
    control_url: Option<String>,
    link: ControlLink,
    registration: WatchRequest,
    switch: Arc<CaptureSwitch>,
    shutdown: CancellationToken,
    wait: Duration,
) {
    let Some(url) = control_url.filter(|u| !u.is_empty()) else {
        return;
    };
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(watch_control(
        url.clone(),
        link,
        registration,
        switch,
        shutdown,
        Some(first_tx),
    ));
    if tokio::time::timeout(wait, first_rx).await.is_err() {
        tracing::warn!(control = %url, "no status from control yet; starting with the configured status");
    }
}
