//! Connection floods against the real `sipcapture up` (SQLite, default limits unless noted),
//! reproducing the security review's attacks and showing them bounded:
//!
//! - 1,030 idle TCP connections to the gRPC port that never send the HTTP/2 preface (they used
//!   to hold every connection slot: `StatusService/Check` timed out for 27 s and more): calls
//!   from another address are served at once, the flooding address's connections beyond
//!   `grpc_limits.max_connections_per_ip` are closed at once, the rest after
//!   `grpc_limits.preface_timeout`, and then its own calls are served too;
//! - 1,100 idle and byte-dripping HEP TCP connections (they used to keep a valid packet from
//!   being stored for more than 10 s; the time-out was per read): a valid packet over TCP from
//!   another address and over UDP is stored at once, the flood's connections beyond
//!   `tcp_max_connections_per_ip` are closed at once, the drippers after `tcp_frame_timeout`,
//!   the idle ones after `tcp_idle_timeout`, and then the flooding address is served again.
//!
//! Every refusal and closure is counted (`StatusService/Check` counters).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use sipcapture_integration_tests::hep::{hep3_sip, request, send_udp};
use sipcapture_integration_tests::{Sandbox, count_rows, open_db, wait_for_rows};
use sipcapture_proto::v1::CheckRequest;
use sipcapture_proto::v1::status_service_client::StatusServiceClient;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};

/// Generous: the machine running the tests may be slow and busy.
const WAIT: Duration = Duration::from_secs(30);

/// The flooding address (the default source of loopback connections).
const FLOODER: Ipv4Addr = Ipv4Addr::LOCALHOST;
/// Another loopback address: a client that is not the flooder.
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// 2026-03-05 12:00:00 UTC: the test packets land in `sip_capture_rest_20260305`.
const PACKET_TIME: u32 = 1_772_712_000;
const REST_TABLE: &str = "sip_capture_rest_20260305";

/// File descriptors this process may open (soft `RLIMIT_NOFILE`, from /proc).
fn fd_limit() -> usize {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|limits| {
            let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
            line.split_whitespace().nth(3)?.parse().ok()
        })
        .unwrap_or(1024)
}

/// How many flood connections to open: `wanted`, or fewer when the fd limit is lower (always
/// well above the per-address cap under test).
fn flood_size(wanted: usize, cap: usize) -> usize {
    let budget = fd_limit().saturating_sub(256);
    let n = wanted.min(budget);
    assert!(
        n > cap * 2,
        "RLIMIT_NOFILE {} too low for a flood above the cap of {cap}",
        fd_limit()
    );
    n
}

/// Opens `n` TCP connections to `target` from `FLOODER` and keeps them (refused ones too).
async fn open_flood(target: SocketAddr, n: usize) -> Vec<TcpStream> {
    let mut flood = Vec::with_capacity(n);
    for _ in 0..n {
        flood.push(TcpStream::connect(target).await.unwrap());
    }
    flood
}

/// A TCP connection to `target` from the loopback address `from`.
async fn connect_from(from: Ipv4Addr, target: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(target).await
}

/// `StatusService/Check` counters, asked from the loopback address `from`.
async fn check_from(from: Ipv4Addr, grpc: SocketAddr) -> anyhow::Result<HashMap<String, u64>> {
    let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .local_address(Some(IpAddr::V4(from)))
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    let channel = endpoint.connect().await?;
    let reply = StatusServiceClient::new(channel)
        .check(CheckRequest {})
        .await?
        .into_inner();
    Ok(reply.counters)
}

/// The counters (asked from `OTHER`) once `done` holds for them; fails after `WAIT`.
async fn counters_once(
    grpc: SocketAddr,
    what: &str,
    done: impl Fn(&HashMap<String, u64>) -> bool,
) -> HashMap<String, u64> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let counters = check_from(OTHER, grpc).await.unwrap();
        if done(&counters) {
            return counters;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what} not within {WAIT:?}: {counters:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn counter(counters: &HashMap<String, u64>, name: &str) -> u64 {
    counters.get(name).copied().unwrap_or(0)
}

/// A valid HEP3 OPTIONS (a row in `REST_TABLE`), told apart by `n`.
fn options_packet(n: u32) -> Vec<u8> {
    let src: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let dst: SocketAddr = "192.0.2.20:5060".parse().unwrap();
    let call_id = format!("limits-{n}@192.0.2.10");
    hep3_sip(
        src,
        dst,
        PACKET_TIME,
        n,
        2001,
        &request("OPTIONS", &call_id, 1, &format!("b{n}"), None),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_idle_flood_without_preface_is_bounded() {
    let sandbox = Sandbox::new().unwrap();
    // Default limits: 128 connections per address, 10 s for the preface.
    let up = sandbox.up(&[]).await.unwrap();
    let n = flood_size(1030, 128);
    let started = tokio::time::Instant::now();
    let _flood = open_flood(up.grpc, n).await;

    // Another address is served at once, with the flood open.
    let counters = tokio::time::timeout(Duration::from_secs(10), check_from(OTHER, up.grpc))
        .await
        .expect("Check from another address timed out during the flood")
        .unwrap();
    let refused_early = counter(&counters, "grpc_refused_per_ip");
    eprintln!(
        "{n} idle connections: Check from {OTHER} served after {:?}, {refused_early} refused",
        started.elapsed()
    );

    // The flooding address's own calls are served once its silent connections are closed
    // (10 s after they were accepted), while the flood's sockets stay open on the client side.
    let deadline = tokio::time::Instant::now() + WAIT;
    while check_from(FLOODER, up.grpc).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no Check from {FLOODER} served within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!("Check from {FLOODER} served after {:?}", started.elapsed());

    // Every flood connection was refused at accept or closed for want of a preface.
    let last = counters_once(up.grpc, "every flood connection counted", |c| {
        counter(c, "grpc_refused_per_ip") + counter(c, "grpc_connections_closed.preface_timeout")
            >= n as u64
    })
    .await;
    let refused = counter(&last, "grpc_refused_per_ip");
    let timed_out = counter(&last, "grpc_connections_closed.preface_timeout");
    eprintln!("refused at accept: {refused}, closed without preface: {timed_out}");
    assert!(refused >= (n - 128) as u64, "{last:?}");
    assert!(timed_out >= 64, "{last:?}");
    assert!(timed_out <= 128, "{last:?}");

    // Capture still works end to end: the collector's own stream to the storer survived.
    send_udp(up.hep, &[options_packet(1)]).unwrap();
    let db = open_db(&up.db_url).await.unwrap();
    wait_for_rows(&db, REST_TABLE, 1, WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hep_tcp_idle_and_drip_flood_is_bounded() {
    let sandbox = Sandbox::new().unwrap();
    // Default per-address cap (64) and frame deadline (10 s); a shorter idle time-out than the
    // default 60 s so the test does not wait for a minute.
    let up = sandbox.up(&["--set", "tcp_idle_timeout=15"]).await.unwrap();
    let db = open_db(&up.db_url).await.unwrap();
    let n = flood_size(1100, 64);

    // 32 drippers first (a frame's first 8 bytes, then one byte a second), then idle ones.
    let started = tokio::time::Instant::now();
    let frame = options_packet(999);
    let mut drippers = open_flood(up.hep, 32).await;
    for dripper in &mut drippers {
        dripper.write_all(&frame[..8]).await.unwrap();
    }
    let _idle = open_flood(up.hep, n - 32).await;
    let drip = tokio::spawn(async move {
        for byte in &frame[8..] {
            tokio::time::sleep(Duration::from_secs(1)).await;
            for dripper in &mut drippers {
                let _closed = dripper.write_all(std::slice::from_ref(byte)).await;
            }
        }
    });

    // A valid packet over TCP from another address is stored at once (within 10 s), and one
    // over UDP too.
    let mut other = connect_from(OTHER, up.hep).await.unwrap();
    other.write_all(&options_packet(1)).await.unwrap();
    send_udp(up.hep, &[options_packet(2)]).unwrap();
    wait_for_rows(&db, REST_TABLE, 2, Duration::from_secs(10))
        .await
        .unwrap();
    eprintln!(
        "{n} HEP TCP connections (32 dripping): packets over TCP from {OTHER} and UDP stored after {:?}",
        started.elapsed()
    );

    // The drippers go after the frame deadline, the idle ones after the idle time-out; then
    // the flooding address's packets are stored too.
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        if let Ok(mut conn) = connect_from(FLOODER, up.hep).await {
            let _refused = conn.write_all(&options_packet(3)).await;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if count_rows(&db, REST_TABLE).await.unwrap() >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no packet over TCP from {FLOODER} stored within {:?}",
            WAIT * 2
        );
    }
    eprintln!(
        "packet over TCP from {FLOODER} stored after {:?}",
        started.elapsed()
    );

    // The idle ones are closed 15 s after they were accepted.
    let counters = counters_once(up.grpc, "idle HEP connections closed", |c| {
        counter(c, "tcp_idle_closed") >= 32
    })
    .await;
    let refused = counter(&counters, "tcp_refused_per_ip");
    let drips = counter(&counters, "dropped.tcp_frame_timeout");
    let idle = counter(&counters, "tcp_idle_closed");
    eprintln!("refused at accept: {refused}, frame deadline: {drips}, idle: {idle}");
    assert!(refused >= (n - 64) as u64, "{counters:?}");
    assert_eq!(drips, 32, "{counters:?}");
    assert!(idle >= 32, "{counters:?}");
    // A retry above may have been accepted before the previous one's row showed up.
    let rows = count_rows(&db, REST_TABLE).await.unwrap();
    assert!(rows >= 3, "{rows}");
    drip.abort();
}
