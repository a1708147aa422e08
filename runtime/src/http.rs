//! The small HTTP/1.1 endpoints beside gRPC (`/metrics`, the storer's web page): one axum server
//! per listener, stopped by the service's cancellation token, holding at most
//! [`MAX_CONNECTIONS`] connections at once (further clients wait in the kernel's accept
//! backlog, so a flood of idle connections cannot grow the process).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// Most connections one endpoint holds open at once.
pub const MAX_CONNECTIONS: usize = 64;

/// Binds `addr` and serves `app` until `shutdown`; returns the bound address (port 0 picks a
/// free one). `what` names the endpoint in logs.
pub async fn serve(
    addr: SocketAddr,
    app: axum::Router,
    shutdown: CancellationToken,
    what: &'static str,
) -> std::io::Result<SocketAddr> {
    let inner = TcpListener::bind(addr).await?;
    let bound = inner.local_addr()?;
    let listener = Bounded {
        inner,
        slots: Arc::new(Semaphore::new(MAX_CONNECTIONS)),
    };
    tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, endpoint = what, "http endpoint failed");
        }
    });
    tracing::info!(addr = %bound, endpoint = what, "http endpoint listening");
    Ok(bound)
}

/// A listener that accepts only while a connection slot is free.
struct Bounded {
    inner: TcpListener,
    slots: Arc<Semaphore>,
}

impl axum::serve::Listener for Bounded {
    type Io = SlotStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (SlotStream, SocketAddr) {
        // The semaphore is never closed: a failure here cannot happen; waiting forever is the
        // safe answer if it did.
        let Ok(slot) = self.slots.clone().acquire_owned().await else {
            return std::future::pending().await;
        };
        loop {
            match self.inner.accept().await {
                Ok((stream, peer)) => {
                    return (
                        SlotStream {
                            stream,
                            _slot: slot,
                        },
                        peer,
                    );
                }
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::debug!(error = %e, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot until it closes.
struct SlotStream {
    stream: TcpStream,
    _slot: OwnedSemaphorePermit,
}

impl AsyncRead for SlotStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for SlotStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn connections_over_the_cap_wait_for_a_slot() {
        let stop = CancellationToken::new();
        let app = axum::Router::new().route("/", axum::routing::get(|| async { "ok" }));
        let addr = serve("127.0.0.1:0".parse().unwrap(), app, stop.clone(), "test")
            .await
            .unwrap();
        // MAX_CONNECTIONS idle clients hold every slot...
        let mut idle = Vec::new();
        for _ in 0..MAX_CONNECTIONS {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let get = |addr| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut text = String::new();
            tokio::io::AsyncReadExt::read_to_string(&mut s, &mut text)
                .await
                .unwrap();
            text
        };
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(300), get(addr));
        assert!(waiting.await.is_err(), "served past the cap");
        // ... and one closing frees one for the next client.
        idle.pop();
        let text = tokio::time::timeout(std::time::Duration::from_secs(5), get(addr))
            .await
            .unwrap();
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        stop.cancel();
    }
}
