//! Who may write, switch and register (issue 21, items 1, 2, 7, 8), against the real binaries:
//! - with nothing configured, `sipcapture up` on a non-loopback listener refuses an anonymous
//!   SetStatus OFF, Deliver and Watch from another address (the safe default) while its own
//!   loopback collector keeps storing; `allow_insecure = true` opens it again, with a warning;
//! - per-role tokens: a collector token cannot switch capture, an admin token cannot deliver,
//!   a member token can only register; a real collector with its three tokens stores and
//!   registers;
//! - a forged Hello with a real collector's stream id and sequence 2^64 − 1 is refused and the
//!   real collector's next packets are stored;
//! - Watch: anonymous registrations are refused (and counted), registered members leave with
//!   their stream, the registry is capped, and an `http://` URL naming another host is never
//!   dialled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sea_orm::ConnectionTrait;
use sipcapture_integration_tests::control::{member_set_status, set_status};
use sipcapture_integration_tests::hep::{hep3_sip, request, send_udp};
use sipcapture_integration_tests::prometheus::scrape;
use sipcapture_integration_tests::storer::sip_record;
use sipcapture_integration_tests::{
    Sandbox, count_rows, free_port, open_db, wait_for_rows, wait_healthy, wait_until,
};
use sipcapture_proto::v1::control_service_client::ControlServiceClient;
use sipcapture_proto::v1::status_service_client::StatusServiceClient;
use sipcapture_proto::v1::status_service_server::{StatusService, StatusServiceServer};
use sipcapture_proto::v1::storer_service_client::StorerServiceClient;
use sipcapture_proto::v1::{
    CaptureAction, CaptureRecord, CaptureState, CheckRequest, ControlCheckRequest, DeliverRequest,
    DesiredStatus, Hello, RecordBatch, SetStatusRequest, StatusReply, WatchRequest,
    deliver_request, deliver_response,
};
use sipcapture_runtime::auth::with_bearer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const WAIT: Duration = Duration::from_secs(15);

/// A non-loopback IPv4 address of this host (a connection to it comes from it, not from
/// 127.0.0.1), or None when the host has none.
fn host_address() -> Option<IpAddr> {
    let out = std::process::Command::new("ip")
        .args(["-o", "-4", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .and_then(|ip| ip.parse().ok())
}

fn invite(n: u32) -> Vec<u8> {
    hep3_sip(
        "192.0.2.10:5060".parse().unwrap(),
        "192.0.2.20:5060".parse().unwrap(),
        1_772_668_800,
        0,
        n,
        &request("INVITE", &format!("auth-roles-{n}@x"), 1, "t", None),
    )
}

const TABLE: &str = "sip_capture_call_20260305";

/// An open Deliver stream (after its Welcome) and its sender.
struct Stream {
    tx: mpsc::Sender<DeliverRequest>,
    rx: tonic::Streaming<sipcapture_proto::v1::DeliverResponse>,
    last_committed: u64,
}

async fn deliver(
    addr: SocketAddr,
    token: Option<&str>,
    collector_id: &str,
    stream_id: &str,
) -> Result<Stream, tonic::Status> {
    let mut client = StorerServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(DeliverRequest {
        message: Some(deliver_request::Message::Hello(Hello {
            collector_id: collector_id.to_owned(),
            stream_id: stream_id.to_owned(),
        })),
    })
    .await
    .unwrap();
    let request = with_bearer(tonic::Request::new(ReceiverStream::new(rx)), token);
    let mut rx = client.deliver(request).await?.into_inner();
    match rx.message().await?.and_then(|m| m.message) {
        Some(deliver_response::Message::Welcome(w)) => Ok(Stream {
            tx,
            rx,
            last_committed: w.last_committed_sequence,
        }),
        other => panic!("expected a Welcome, got {other:?}"),
    }
}

impl Stream {
    /// Sends one batch; the storer's answer (its ack's sequence, or the stream's error).
    async fn send(
        &mut self,
        sequence: u64,
        records: Vec<CaptureRecord>,
    ) -> Result<u64, tonic::Status> {
        let batch = RecordBatch {
            sequence,
            records,
            ..Default::default()
        };
        let _closed = self
            .tx
            .send(DeliverRequest {
                message: Some(deliver_request::Message::Batch(batch)),
            })
            .await;
        match self.rx.message().await? {
            Some(m) => match m.message {
                Some(deliver_response::Message::Ack(ack)) => Ok(ack.sequence),
                other => panic!("expected an ack, got {other:?}"),
            },
            None => Err(tonic::Status::aborted("stream ended without an answer")),
        }
    }
}

async fn watch(
    addr: SocketAddr,
    token: Option<&str>,
    req: WatchRequest,
) -> Result<tonic::Streaming<DesiredStatus>, tonic::Status> {
    let mut client = ControlServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let mut stream = client
        .watch(with_bearer(tonic::Request::new(req), token))
        .await?
        .into_inner();
    // The first desired status arrives once the member is registered.
    stream.message().await?;
    Ok(stream)
}

fn member(id: &str, port: u32) -> WatchRequest {
    WatchRequest {
        member_id: id.to_owned(),
        kind: sipcapture_proto::v1::MemberKind::Collector as i32,
        status_port: port,
        ..Default::default()
    }
}

async fn member_addresses(control: SocketAddr) -> Vec<String> {
    let mut client = ControlServiceClient::connect(format!("http://{control}"))
        .await
        .unwrap();
    let reply = client
        .check(ControlCheckRequest {})
        .await
        .unwrap()
        .into_inner();
    reply.members.into_iter().map(|m| m.address).collect()
}

/// Issue item 8: nothing configured, the listener on every address. From another address
/// SetStatus OFF (StatusService and ControlService), Deliver and Watch are refused and capture
/// stays on; from loopback they work, so the built-in collector keeps storing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_configured_refuses_remote_writes_and_switches() {
    let Some(host) = host_address() else {
        eprintln!("SKIP: this host has no non-loopback IPv4 address");
        return;
    };
    let sandbox = Sandbox::new().unwrap();
    let port = free_port().unwrap();
    let hep = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let start = |name: &str, extra: &[&str]| {
        let mut args: Vec<String> = [
            "up",
            "--grpc-listen",
            &format!("0.0.0.0:{port}"),
            "--hep-listen",
            &hep.to_string(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        sandbox.spawn(name, "sipcapture", &args).unwrap()
    };
    let loopback = SocketAddr::from(([127, 0, 0, 1], port));
    let remote = SocketAddr::new(host, port);
    let mut up = start("up", &[]);
    wait_healthy(&mut up, loopback, Duration::from_secs(30))
        .await
        .unwrap();
    let log = up.log_text();
    assert!(
        log.contains("WARN") && log.contains("auth_token") && log.contains("allow_insecure"),
        "{log}"
    );

    let off = member_set_status(remote, CaptureAction::Off, None)
        .await
        .unwrap_err();
    assert_eq!(off.code(), tonic::Code::PermissionDenied, "{off:?}");
    assert!(off.message().contains("allow_insecure"), "{off:?}");
    let off = set_status(remote, CaptureAction::Off, None)
        .await
        .unwrap_err();
    assert_eq!(off.code(), tonic::Code::PermissionDenied, "{off:?}");
    let forged = deliver(remote, None, "intruder", "intruder-0")
        .await
        .err()
        .expect("an anonymous remote Deliver is refused");
    assert_eq!(forged.code(), tonic::Code::PermissionDenied, "{forged:?}");
    let registered = watch(remote, None, member("intruder", 9))
        .await
        .expect_err("an anonymous remote Watch is refused");
    assert_eq!(registered.code(), tonic::Code::PermissionDenied);

    // Capture is still on and the built-in (loopback) collector stores.
    let state = member_set_status(loopback, CaptureAction::Check, None)
        .await
        .unwrap();
    assert_eq!(state, CaptureState::Enabled);
    send_udp(hep, &[invite(1)]).unwrap();
    let db = open_db(&format!(
        "sqlite://{}",
        sandbox.path().join("sipcapture.db").display()
    ))
    .await
    .unwrap();
    if let Err(e) = wait_for_rows(&db, TABLE, 1, WAIT).await {
        panic!("{e}\n{}", up.log_text());
    }
    // Loopback callers (the CLI on the host) may still switch.
    assert_eq!(
        member_set_status(loopback, CaptureAction::Off, None)
            .await
            .unwrap(),
        CaptureState::Disabled
    );
    assert!(up.terminate(Duration::from_secs(20)).unwrap());

    // allow_insecure = true: the explicit opt-out, announced in the log.
    let mut open = start("up-insecure", &["--set", "allow_insecure=true"]);
    wait_healthy(&mut open, loopback, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(open.log_text().contains("allow_insecure = true"));
    assert_eq!(
        member_set_status(remote, CaptureAction::On, None)
            .await
            .unwrap(),
        CaptureState::Enabled
    );
    assert!(open.terminate(Duration::from_secs(20)).unwrap());
}

/// Roles: each token opens only its own calls, on storer and control; a collector holding the
/// three tokens delivers and registers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_token_opens_only_its_role() {
    let sandbox = Sandbox::new().unwrap();
    let roles: Vec<String> = [
        "collector_token=c-token",
        "member_token=m-token",
        "admin_token=a-token",
    ]
    .iter()
    .flat_map(|kv| ["--set".to_owned(), (*kv).to_owned()])
    .collect();
    let control = sandbox.control(&roles).await.unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join("roles.db").display());
    let mut storer_args = roles.clone();
    storer_args.extend(["--control".to_owned(), control.url()]);
    let storer = sandbox
        .storer("storer1", &db_url, &storer_args)
        .await
        .unwrap();

    // Deliver: the collector token only.
    for token in [None, Some("a-token"), Some("m-token")] {
        let refused = deliver(storer.grpc, token, "x", "x-0")
            .await
            .err()
            .expect("Deliver without the collector token is refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    let mut stream = deliver(storer.grpc, Some("c-token"), "tool", "tool-0")
        .await
        .unwrap();
    let record = sip_record(
        1_772_668_800_000_000,
        "INVITE",
        "INVITE",
        "roles-1@x",
        "alice",
    );
    assert_eq!(stream.send(1, vec![record]).await.unwrap(), 1);

    // SetStatus (storer and control): the admin token only.
    for token in [None, Some("c-token"), Some("m-token")] {
        let refused = member_set_status(storer.grpc, CaptureAction::Off, token)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{token:?}");
        let refused = set_status(control.grpc, CaptureAction::Off, token)
            .await
            .unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    // Watch: the member token only.
    for token in [None, Some("c-token"), Some("a-token")] {
        let refused = watch(control.grpc, token, member("m", 9))
            .await
            .expect_err("Watch without the member token is refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{token:?}");
    }
    drop(
        watch(control.grpc, Some("m-token"), member("m", 9))
            .await
            .unwrap(),
    );

    // A real collector sends each token where it belongs: it stores and registers.
    let mut collector_args = roles.clone();
    collector_args.extend(["--control".to_owned(), control.url()]);
    let collector = sandbox
        .collector("collector1", &[storer.url()], &collector_args)
        .await
        .unwrap();
    send_udp(collector.hep.unwrap(), &[invite(2)]).unwrap();
    let db = open_db(&db_url).await.unwrap();
    if let Err(e) = wait_for_rows(&db, TABLE, 2, WAIT).await {
        panic!("{e}\n{}", collector.process.log_text());
    }
    let collector_url = format!("http://{}", collector.grpc);
    wait_until("collector and storer registered", WAIT, || async {
        let members = member_addresses(control.grpc).await;
        Ok(members.contains(&collector_url) && members.contains(&storer.url()))
    })
    .await
    .unwrap();
    // The admin token switches the fleet through control.
    set_status(control.grpc, CaptureAction::Off, Some("a-token"))
        .await
        .unwrap();
    wait_until("collector off", WAIT, || async {
        let mut client = StatusServiceClient::connect(format!("http://{}", collector.grpc)).await?;
        let reply = client.check(CheckRequest {}).await?.into_inner();
        Ok(reply.state == CaptureState::Disabled as i32)
    })
    .await
    .unwrap();
}

/// Issue item 2: a Hello reusing a real collector's stream id with batch sequence 2^64 − 1 is
/// refused and leaves the stream state alone; the collector's next packets are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_sequence_cannot_poison_a_collectors_stream() {
    let sandbox = Sandbox::new().unwrap();
    let db_url = format!("sqlite://{}", sandbox.path().join("poison.db").display());
    let storer = sandbox.storer("storer1", &db_url, &[]).await.unwrap();
    let collector = sandbox
        .collector("collector1", &[storer.url()], &[])
        .await
        .unwrap();
    send_udp(collector.hep.unwrap(), &[invite(1)]).unwrap();
    let db = open_db(&db_url).await.unwrap();
    wait_for_rows(&db, TABLE, 1, WAIT).await.unwrap();
    let row = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT stream_id, last_sequence FROM sipcapture_stream_state".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap();
    let stream_id: String = row.try_get("", "stream_id").unwrap();
    let before: i64 = row.try_get("", "last_sequence").unwrap();

    let mut forged = deliver(storer.grpc, None, "intruder", &stream_id)
        .await
        .unwrap();
    assert_eq!(forged.last_committed, u64::try_from(before).unwrap());
    let record = sip_record(
        1_772_668_800_000_000,
        "INVITE",
        "INVITE",
        "forged@x",
        "mallory",
    );
    let refused = forged.send(u64::MAX, vec![record]).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    drop(forged);
    let after: i64 = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT last_sequence FROM sipcapture_stream_state".to_owned(),
        ))
        .await
        .unwrap()
        .unwrap()
        .try_get("", "last_sequence")
        .unwrap();
    assert!(after < i64::MAX && after >= before, "{after}");

    for n in 2..=4 {
        send_udp(collector.hep.unwrap(), &[invite(n)]).unwrap();
    }
    if let Err(e) = wait_for_rows(&db, TABLE, 4, WAIT).await {
        panic!("{e}\n{}", storer.process.log_text());
    }
    assert_eq!(count_rows(&db, TABLE).await.unwrap(), 4, "no forged row");
}

/// Issue item 7: 200 anonymous Watch calls are refused and counted; members registered with
/// the member role leave with their stream; the registry is capped; a registration naming
/// another host's `http://` URL makes control dial the caller's own address, never that host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_needs_the_member_role_and_leaves_no_trace() {
    let sandbox = Sandbox::new().unwrap();
    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let args: Vec<String> = [
        "auth_token=fleet".to_owned(),
        "max_registered_members=5".to_owned(),
        "registered_member_linger_secs=0".to_owned(),
        format!("metrics_listen={metrics}"),
    ]
    .iter()
    .flat_map(|kv| ["--set".to_owned(), kv.clone()])
    .collect();
    let control = sandbox.control(&args).await.unwrap();

    for i in 0..200 {
        let refused = watch(control.grpc, None, member(&format!("evil-{i}"), 9000 + i))
            .await
            .expect_err("an anonymous Watch is refused");
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    }
    assert!(member_addresses(control.grpc).await.is_empty());
    let scraped = scrape(metrics).await.unwrap();
    assert_eq!(
        scraped.get("sipcapture_control_registrations_refused_total{reason=\"unauthorised\"}"),
        200.0,
        "{}",
        scraped.text
    );

    // With the member role: 5 fit, the 6th is refused; when the streams end they leave.
    let mut streams = Vec::new();
    for i in 0..5 {
        streams.push(
            watch(
                control.grpc,
                Some("fleet"),
                member(&format!("m{i}"), 9100 + i),
            )
            .await
            .unwrap(),
        );
    }
    assert_eq!(member_addresses(control.grpc).await.len(), 5);
    let full = watch(control.grpc, Some("fleet"), member("m5", 9105))
        .await
        .expect_err("the sixth registration is refused");
    assert_eq!(full.code(), tonic::Code::ResourceExhausted);
    drop(streams);
    wait_until("registry empty again", WAIT, || async {
        Ok(member_addresses(control.grpc).await.is_empty())
    })
    .await
    .unwrap();

    // A registration claiming another host's plain-http URL: control dials the caller's own
    // address (127.0.0.1) on Check and SetStatus, never the named host.
    let Some(host) = host_address() else {
        eprintln!("SKIP (SSRF part): this host has no non-loopback IPv4 address");
        return;
    };
    let victim = tokio::net::TcpListener::bind(SocketAddr::new(host, 0))
        .await
        .unwrap();
    let victim_addr = victim.local_addr().unwrap();
    let dialled = Arc::new(AtomicUsize::new(0));
    let counter = dialled.clone();
    tokio::spawn(async move {
        while let Ok((_conn, _peer)) = victim.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    let claim = WatchRequest {
        status_url: format!("http://{victim_addr}"),
        ..member("ssrf", 0)
    };
    let _stream = watch(control.grpc, Some("fleet"), claim).await.unwrap();
    let members = member_addresses(control.grpc).await;
    assert_eq!(
        members,
        vec![format!("http://127.0.0.1:{}", victim_addr.port())],
        "registered at the caller's own address"
    );
    set_status(control.grpc, CaptureAction::Off, Some("fleet"))
        .await
        .unwrap();
    member_addresses(control.grpc).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        dialled.load(Ordering::SeqCst),
        0,
        "the named host was dialled"
    );
}

/// A member's StatusService that records every call and whether it carried a bearer token.
#[derive(Debug, Default, Clone)]
struct Recorder {
    calls: Arc<std::sync::Mutex<Vec<(&'static str, bool)>>>,
}

impl Recorder {
    fn note<T>(&self, method: &'static str, request: &tonic::Request<T>) -> StatusReply {
        let token = request.metadata().get("authorization").is_some();
        self.calls.lock().unwrap().push((method, token));
        StatusReply {
            member_id: "recorder".into(),
            state: CaptureState::Disabled as i32,
            ..Default::default()
        }
    }
}

#[tonic::async_trait]
impl StatusService for Recorder {
    async fn set_status(
        &self,
        request: tonic::Request<SetStatusRequest>,
    ) -> Result<tonic::Response<StatusReply>, tonic::Status> {
        Ok(tonic::Response::new(self.note("SetStatus", &request)))
    }

    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<StatusReply>, tonic::Status> {
        Ok(tonic::Response::new(self.note("Check", &request)))
    }
}

/// Issue item 7, the token leak: control with a token never sends it over plain http to a
/// member that registered through Watch (the member follows through its stream; control only
/// checks it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_never_sends_its_token_to_a_registered_plain_http_member() {
    let sandbox = Sandbox::new().unwrap();
    let control = sandbox
        .control(&["--set".to_owned(), "auth_token=fleet".to_owned()])
        .await
        .unwrap();
    let recorder = Recorder::default();
    let port = free_port().unwrap();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(StatusServiceServer::new(recorder.clone()))
            .serve(SocketAddr::from(([127, 0, 0, 1], port))),
    );
    let _stream = watch(
        control.grpc,
        Some("fleet"),
        member("recorder", u32::from(port)),
    )
    .await
    .unwrap();
    set_status(control.grpc, CaptureAction::Off, Some("fleet"))
        .await
        .unwrap();
    let calls = recorder.calls.lock().unwrap().clone();
    assert!(!calls.is_empty(), "control reached the member");
    assert!(
        calls
            .iter()
            .all(|(method, token)| *method == "Check" && !token),
        "{calls:?}"
    );
    serving.abort();
}

#[test]
fn host_address_is_not_loopback() {
    if let Some(ip) = host_address() {
        assert!(!ip.is_loopback());
    }
}
