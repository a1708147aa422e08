//! A TCP proxy between a service and its database that a test switches off (every connection
//! closed, new ones closed at once) and on again: a database outage without touching the server.

use std::net::SocketAddr;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::storer::with_database;

/// A running proxy.
#[derive(Debug)]
pub struct Proxy {
    /// Where clients connect.
    pub addr: SocketAddr,
    /// `false` cuts it: existing connections close, new ones are closed at once.
    pub up: watch::Sender<bool>,
}

/// Starts a proxy to `upstream` on a free loopback port, switched on.
pub async fn start_proxy(upstream: SocketAddr) -> Proxy {
    try_start_proxy(upstream)
        .await
        .unwrap_or_else(|e| panic!("cannot start the proxy: {e:#}"))
}

async fn try_start_proxy(upstream: SocketAddr) -> anyhow::Result<Proxy> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("binding 127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (up, up_rx) = watch::channel(true);
    tokio::spawn(async move {
        loop {
            let Ok((mut client, _)) = listener.accept().await else {
                return;
            };
            if !*up_rx.borrow() {
                drop(client);
                continue;
            }
            let mut down = up_rx.clone();
            tokio::spawn(async move {
                let Ok(mut server) = TcpStream::connect(upstream).await else {
                    return;
                };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    _ = down.wait_for(|up| !*up) => {}
                }
            });
        }
    });
    Ok(Proxy { addr, up })
}

/// The `host:port` of a database URL (an IP address, as the test URLs have).
pub fn host_port(url: &str) -> SocketAddr {
    let after = url.split("://").nth(1).unwrap_or(url);
    let authority = after.split('/').next().unwrap_or(after);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    host_port
        .parse()
        .unwrap_or_else(|e| panic!("{host_port:?} is not an address: {e}"))
}

/// `url` going through `proxy`, to database `db`.
pub fn through(url: &str, proxy: SocketAddr, db: &str) -> String {
    let real = host_port(url).to_string();
    with_database(&url.replacen(&real, &proxy.to_string(), 1), db)
}
