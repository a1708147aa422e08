//! Security end to end, with real processes and certificates generated at test time (rcgen):
//! mTLS between collector and storer (a trusted client certificate streams and its identity
//! becomes the stored origin; an untrusted one and none are refused, visibly), status changes
//! refused without the token (the real CLI and grpcurl), admin identities over mTLS, the
//! per-source HEP rate limit (exact counts) and certificate rotation without a restart (SIGHUP
//! and the file watcher).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use sipcapture_integration_tests::hep::{hep3_sip, request};
use sipcapture_integration_tests::storer::text_rows;
use sipcapture_integration_tests::{
    Process, Sandbox, Service, bin_path, count_rows, free_port, grpcurl, member_counters, open_db,
    signal, wait_for_rows, wait_until,
};
use sipcapture_runtime::tls::GrpcClientTls;
use tokio_rustls::rustls;

const WAIT: Duration = Duration::from_secs(30);

/// A CA that issues certificates into a directory.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Issues a certificate with `cn` and `sans`; writes `<stem>.pem` and `<stem>.key`.
    fn issue(&self, dir: &Path, stem: &str, cn: &str, sans: &[&str]) -> (PathBuf, PathBuf) {
        self.issue_serial(dir, stem, cn, sans, None)
    }

    fn issue_serial(
        &self,
        dir: &Path,
        stem: &str,
        cn: &str,
        sans: &[&str],
        serial: Option<u64>,
    ) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.serial_number = serial.map(rcgen::SerialNumber::from);
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let cert_path = dir.join(format!("{stem}.pem"));
        let key_path = dir.join(format!("{stem}.key"));
        std::fs::write(&cert_path, cert.pem()).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    /// A CRL revoking `serials`, written to `<stem>.pem`.
    fn crl(&self, dir: &Path, stem: &str, serials: &[u64]) -> PathBuf {
        let params = rcgen::CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2024, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: rcgen::SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from(*s),
                    revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                    reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(
            &path,
            params.signed_by(&self.issuer).unwrap().pem().unwrap(),
        )
        .unwrap();
        path
    }

    fn write(&self, dir: &Path, stem: &str) -> PathBuf {
        let path = dir.join(format!("{stem}.pem"));
        std::fs::write(&path, &self.pem).unwrap();
        path
    }
}

/// Everything the tests use: the fleet CA with a server, a collector and an admin
/// certificate, and a rogue CA with a client certificate of its own.
struct Pki {
    ca: Ca,
    ca_file: PathBuf,
    server: (PathBuf, PathBuf),
    collector: (PathBuf, PathBuf),
    admin: (PathBuf, PathBuf),
    rogue: (PathBuf, PathBuf),
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let ca = Ca::new("sipcapture test ca");
        let ca_file = ca.write(dir, "ca");
        let server = ca.issue(dir, "server", "storer-1", &["localhost", "127.0.0.1"]);
        let collector = ca.issue(dir, "collector", "collector-good", &["collector-good.test"]);
        let admin = ca.issue(dir, "admin", "ops-admin", &[]);
        let rogue_ca = Ca::new("rogue ca");
        let rogue = rogue_ca.issue(dir, "rogue", "collector-good", &["collector-good.test"]);
        Pki {
            ca,
            ca_file,
            server,
            collector,
            admin,
            rogue,
        }
    }

    /// `--set` arguments serving gRPC with TLS (and mTLS with `client_ca`).
    fn server_args(&self, mtls: bool) -> Vec<String> {
        let mut args = sets(&[
            ("grpc_tls.cert", &self.server.0),
            ("grpc_tls.key", &self.server.1),
        ]);
        if mtls {
            args.extend(sets(&[("grpc_tls.client_ca", &self.ca_file)]));
        }
        args
    }

    /// Client settings trusting the fleet CA, with a client certificate.
    fn client(&self, cert: Option<&(PathBuf, PathBuf)>) -> GrpcClientTls {
        GrpcClientTls {
            ca: Some(self.ca_file.clone()),
            cert: cert.map(|c| c.0.clone()),
            key: cert.map(|c| c.1.clone()),
            server_name: None,
        }
    }
}

fn sets(pairs: &[(&str, &Path)]) -> Vec<String> {
    pairs
        .iter()
        .flat_map(|(k, v)| ["--set".to_owned(), format!("{k}={}", v.display())])
        .collect()
}

/// Waits until a TLS-serving process answers health SERVING over TLS with `tls`.
async fn wait_tls_healthy(process: &mut Process, addr: SocketAddr, tls: &GrpcClientTls) {
    let url = format!("https://{addr}");
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        assert!(process.is_running(), "{}", process.log_text());
        assert!(
            std::time::Instant::now() < deadline,
            "not healthy over tls: {}",
            process.log_text()
        );
        if let Ok(channel) = tls.endpoint(&url).unwrap().connect().await {
            let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
            if client
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
            {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a storer serving TLS on a free port.
async fn tls_storer(sandbox: &Sandbox, pki: &Pki, db_url: &str, extra: &[String]) -> Service {
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut args = vec![
        "--grpc-listen".to_owned(),
        grpc.to_string(),
        "--db-url".to_owned(),
        db_url.to_owned(),
        "--set".to_owned(),
        "storer_id=storer-1".to_owned(),
        "--set".to_owned(),
        "homer5_split=false".to_owned(),
    ];
    args.extend(extra.iter().cloned());
    let mut process = sandbox.spawn("storer", "sipcapture-storer", &args).unwrap();
    wait_tls_healthy(&mut process, grpc, &pki.client(Some(&pki.admin))).await;
    Service {
        process,
        grpc,
        hep: None,
    }
}

/// The TLS status counters of a member.
async fn tls_counters(
    addr: SocketAddr,
    tls: &GrpcClientTls,
) -> std::collections::HashMap<String, u64> {
    let channel = tls
        .endpoint(&format!("https://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    sipcapture_proto::v1::status_service_client::StatusServiceClient::new(channel)
        .check(sipcapture_proto::v1::CheckRequest {})
        .await
        .unwrap()
        .into_inner()
        .counters
}

/// `n` HEP3 SIP packets whose Call-IDs start with `tag`.
fn packets(tag: &str, n: usize) -> Vec<Vec<u8>> {
    let src: SocketAddr = "192.0.2.10:5060".parse().unwrap();
    let dst: SocketAddr = "192.0.2.20:5060".parse().unwrap();
    (0..n)
        .map(|i| {
            let sip = request("OPTIONS", &format!("{tag}-{i}@test"), 1, "ft", None);
            hep3_sip(src, dst, 1_700_000_000, 0, 7, &sip)
        })
        .collect()
}

fn send_from(source: &str, target: SocketAddr, packets: &[Vec<u8>]) {
    let socket = UdpSocket::bind((source, 0)).unwrap();
    for p in packets {
        socket.send_to(p, target).unwrap();
    }
}

async fn rows_like(db: &sea_orm::DatabaseConnection, tag: &str) -> u64 {
    sipcapture_integration_tests::storer::count(
        db,
        &format!("SELECT COUNT(*) AS n FROM sip_capture WHERE callid LIKE '{tag}-%'"),
    )
    .await
    .unwrap_or(0)
}

/// The `collector_id` of every stored delivery stream, by stream id.
async fn stream_owners(db: &sea_orm::DatabaseConnection) -> Vec<Vec<String>> {
    text_rows(
        db,
        "sipcapture_stream_state",
        &["collector_id"],
        "1=1",
        "stream_id",
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_collector_streams_with_its_certificate_identity_and_others_are_refused() {
    let sandbox = Sandbox::new().unwrap();
    let pki = Pki::new(sandbox.path());
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        sandbox.path().join("s.db").display()
    );
    let mut storer = tls_storer(&sandbox, &pki, &db_url, &pki.server_args(true)).await;
    let storer_url = format!("https://{}", storer.grpc);

    // A collector with a certificate of the fleet CA; it claims another id.
    let good_args = sets(&[
        ("grpc_client_tls.ca", &pki.ca_file),
        ("grpc_client_tls.cert", &pki.collector.0),
        ("grpc_client_tls.key", &pki.collector.1),
    ]);
    let mut good = sandbox
        .collector(
            "claims-to-be-someone-else",
            std::slice::from_ref(&storer_url),
            &good_args,
        )
        .await
        .unwrap();
    // A collector with a certificate of another CA (same names).
    let rogue_args = sets(&[
        ("grpc_client_tls.ca", &pki.ca_file),
        ("grpc_client_tls.cert", &pki.rogue.0),
        ("grpc_client_tls.key", &pki.rogue.1),
    ]);
    let mut rogue = sandbox
        .collector("rogue", std::slice::from_ref(&storer_url), &rogue_args)
        .await
        .unwrap();
    // A collector without a client certificate.
    let bare_args = sets(&[("grpc_client_tls.ca", &pki.ca_file)]);
    let mut bare = sandbox
        .collector("bare", std::slice::from_ref(&storer_url), &bare_args)
        .await
        .unwrap();

    send_from("127.0.0.1", good.hep.unwrap(), &packets("good", 10));
    send_from("127.0.0.1", rogue.hep.unwrap(), &packets("rogue", 10));
    send_from("127.0.0.1", bare.hep.unwrap(), &packets("bare", 10));

    let db = open_db(&db_url).await.unwrap();
    wait_until("the good collector's rows", WAIT, || async {
        Ok(rows_like(&db, "good").await == 10)
    })
    .await
    .unwrap();
    // The refused collectors count and log their failed attempts...
    for (collector, name) in [(&rogue, "rogue"), (&bare, "bare")] {
        let addr = collector.grpc;
        wait_until(
            &format!("{name}: refused streams counted"),
            WAIT,
            || async move {
                let counters = member_counters(addr).await?;
                Ok(
                    counters.get("stream_connect_failed").copied().unwrap_or(0) >= 2
                        && counters.get("records_acked").copied().unwrap_or(0) == 0,
                )
            },
        )
        .await
        .unwrap();
        let log = collector.process.log_text();
        assert!(log.contains("cannot open a stream to the storer"), "{log}");
    }
    // ... and so does the storer: two collectors refused in the handshake, repeatedly.
    let storer_counters = tls_counters(storer.grpc, &pki.client(Some(&pki.admin))).await;
    assert!(
        storer_counters
            .get("grpc_tls_refused")
            .copied()
            .unwrap_or(0)
            >= 4,
        "{storer_counters:?}"
    );
    assert!(
        storer
            .process
            .log_text()
            .contains("grpc tls handshake refused")
    );
    // Nothing of theirs was stored, and the one stream stored is owned by the certificate's
    // identity (its subject CN), not by the id the collector claimed.
    assert_eq!(rows_like(&db, "rogue").await, 0);
    assert_eq!(rows_like(&db, "bare").await, 0);
    assert_eq!(count_rows(&db, "sip_capture").await.unwrap(), 10);
    let owners = stream_owners(&db).await;
    assert!(!owners.is_empty());
    assert!(
        owners
            .iter()
            .all(|r| r == &vec!["collector-good".to_owned()]),
        "{owners:?}"
    );
    assert!(
        storer
            .process
            .log_text()
            .contains("collector id replaced by its certificate identity")
    );

    // Another identity of the same CA (the admin certificate) reusing the good collector's
    // stream id cannot open it: the stream's state belongs to "collector-good". The good
    // collector's next packets are stored.
    let stream_ids = text_rows(
        &db,
        "sipcapture_stream_state",
        &["stream_id"],
        "1=1",
        "stream_id",
    )
    .await
    .unwrap();
    let stream_id = stream_ids[0][0].clone();
    let channel = pki
        .client(Some(&pki.admin))
        .endpoint(&storer_url)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let hello = sipcapture_proto::v1::DeliverRequest {
        message: Some(sipcapture_proto::v1::deliver_request::Message::Hello(
            sipcapture_proto::v1::Hello {
                collector_id: "collector-good".into(),
                stream_id,
            },
        )),
    };
    let mut client = sipcapture_proto::v1::storer_service_client::StorerServiceClient::new(channel);
    let opened = client.deliver(tokio_stream::iter(vec![hello])).await;
    let refused = match opened {
        Ok(response) => response.into_inner().message().await.unwrap_err(),
        Err(status) => status,
    };
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused:?}");
    send_from("127.0.0.1", good.hep.unwrap(), &packets("good-after", 5));
    wait_until("the good collector's next rows", WAIT, || async {
        Ok(rows_like(&db, "good-after").await == 5)
    })
    .await
    .unwrap();

    for s in [&mut good, &mut rogue, &mut bare] {
        s.process.terminate(WAIT).unwrap();
    }
    // A TCP connect probe (the Helm chart's tcpSocket probes under grpcTls) is not a refused
    // client: it is counted as closed early and leaves `grpc_tls_refused` alone.
    let admin = pki.client(Some(&pki.admin));
    let before = tls_counters(storer.grpc, &admin).await;
    for _ in 0..3 {
        drop(std::net::TcpStream::connect(storer.grpc).unwrap());
    }
    let closed_early = |c: &std::collections::HashMap<String, u64>| {
        c.get("grpc_tls_closed_early").copied().unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + WAIT;
    let after = loop {
        let now = tls_counters(storer.grpc, &admin).await;
        if closed_early(&now) >= closed_early(&before) + 3 || std::time::Instant::now() > deadline {
            break now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(closed_early(&after), closed_early(&before) + 3, "{after:?}");
    assert_eq!(
        after.get("grpc_tls_refused"),
        before.get("grpc_tls_refused"),
        "{after:?}"
    );
    storer.process.terminate(WAIT).unwrap();
}

/// Runs `sipcapture status ...` and returns (success, stdout + stderr).
fn cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(bin_path("sipcapture").unwrap())
        .arg("status")
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_change_without_the_token_is_unauthenticated() {
    let sandbox = Sandbox::new().unwrap();
    let mut control = sandbox
        .control(&["--set".to_owned(), "auth_token=s3cret".to_owned()])
        .await
        .unwrap();
    let target = control.grpc.to_string();

    let (ok, text) = cli(&["off", "--target", &target]);
    assert!(!ok, "{text}");
    assert!(text.contains("Unauthenticated"), "{text}");
    let (ok, text) = cli(&["off", "--target", &target, "--token", "wrong"]);
    assert!(!ok && text.contains("Unauthenticated"), "{text}");
    // Reads stay open.
    let (ok, text) = cli(&["check", "--target", &target]);
    assert!(ok, "{text}");
    assert!(text.starts_with("desired: Enabled"), "{text}");
    let (ok, text) = cli(&["off", "--target", &target, "--token", "s3cret"]);
    assert!(ok, "{text}");
    assert!(text.starts_with("desired: Disabled"), "{text}");

    // The same through grpcurl, the client operators script with.
    if grpcurl(&["-version"]).is_some() {
        let out = std::process::Command::new(
            std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned()),
        )
        .args([
            "-plaintext",
            "-d",
            r#"{"action":"ON"}"#,
            &target,
            "sipcapture.v1.ControlService/SetStatus",
        ])
        .output()
        .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(text.contains("Code: Unauthenticated"), "{text}");
        let on = grpcurl(&[
            "-plaintext",
            "-H",
            "authorization: Bearer s3cret",
            "-d",
            r#"{"action":"ON"}"#,
            &target,
            "sipcapture.v1.ControlService/SetStatus",
        ])
        .unwrap();
        assert!(on.contains("\"reply\": \"Enabled\""), "{on}");
    }
    control.process.terminate(WAIT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_identities_over_mtls_switch_without_a_token() {
    let sandbox = Sandbox::new().unwrap();
    let pki = Pki::new(sandbox.path());
    let mut args = pki.server_args(true);
    args.extend([
        "--set".to_owned(),
        "auth_token=s3cret".to_owned(),
        "--set".to_owned(),
        "grpc_admin_identities=[ops-admin]".to_owned(),
    ]);
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut full = vec![
        "--grpc-listen".to_owned(),
        grpc.to_string(),
        "--set".to_owned(),
        format!("state_file={}", sandbox.path().join("state.json").display()),
    ];
    full.extend(args);
    let mut control = sandbox
        .spawn("control", "sipcapture-control", &full)
        .unwrap();
    wait_tls_healthy(&mut control, grpc, &pki.client(Some(&pki.admin))).await;
    let target = format!("https://{grpc}");
    let ca = pki.ca_file.display().to_string();
    let tls_args = |cert: &(PathBuf, PathBuf)| {
        vec![
            "--target".to_owned(),
            target.clone(),
            "--cacert".to_owned(),
            ca.clone(),
            "--cert".to_owned(),
            cert.0.display().to_string(),
            "--key".to_owned(),
            cert.1.display().to_string(),
        ]
    };
    let run = |action: &str, extra: &[String]| {
        let mut all = vec![action];
        all.extend(extra.iter().map(String::as_str));
        cli(&all)
    };
    // The admin certificate switches without a token.
    let (ok, text) = run("off", &tls_args(&pki.admin));
    assert!(ok && text.starts_with("desired: Disabled"), "{text}");
    // A certificate of the fleet that is not an admin: denied without the token...
    let (ok, text) = run("on", &tls_args(&pki.collector));
    assert!(!ok && text.contains("PermissionDenied"), "{text}");
    // ... allowed with it.
    let mut with_token = tls_args(&pki.collector);
    with_token.extend(["--token".to_owned(), "s3cret".to_owned()]);
    let (ok, text) = run("on", &with_token);
    assert!(ok && text.starts_with("desired: Enabled"), "{text}");
    // No client certificate: refused in the handshake.
    let (ok, text) = run(
        "check",
        &[
            "--target".to_owned(),
            target.clone(),
            "--cacert".to_owned(),
            ca.clone(),
        ],
    );
    assert!(!ok, "{text}");
    control.terminate(WAIT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_source_rate_limit_drops_exactly_the_excess() {
    let sandbox = Sandbox::new().unwrap();
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        sandbox.path().join("r.db").display()
    );
    let mut storer = sandbox
        .storer(
            "storer-1",
            &db_url,
            &["--set".to_owned(), "homer5_split=false".to_owned()],
        )
        .await
        .unwrap();
    // One packet per 10000 s with a burst of 5: within the test, exactly 5 per source pass
    // (UDP from 127.0.0.1: 20 sent, 15 dropped; UDP from 127.0.0.2: 3 sent, none dropped; TCP
    // from 127.0.0.3: 8 frames, 3 dropped).
    let mut collector = sandbox
        .collector(
            "c1",
            &[storer.url()],
            &[
                "--set".to_owned(),
                "hep_rate_limit=0.0001".to_owned(),
                "--set".to_owned(),
                "hep_rate_burst=5".to_owned(),
            ],
        )
        .await
        .unwrap();
    let hep = collector.hep.unwrap();
    send_from("127.0.0.1", hep, &packets("flood", 20));
    send_from("127.0.0.2", hep, &packets("calm", 3));
    // Over TCP (HEP3 frames on one connection from a third source) the same rule applies.
    {
        use tokio::io::AsyncWriteExt;
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.3:0".parse().unwrap()).unwrap();
        let mut conn = socket.connect(hep).await.unwrap();
        for p in packets("tcp", 8) {
            conn.write_all(&p).await.unwrap();
        }
        conn.shutdown().await.unwrap();
    }
    let addr = collector.grpc;
    wait_until("every packet counted", WAIT, || async move {
        Ok(member_counters(addr)
            .await?
            .get("hep_received")
            .copied()
            .unwrap_or(0)
            == 31)
    })
    .await
    .unwrap();
    let db = open_db(&db_url).await.unwrap();
    wait_for_rows(&db, "sip_capture", 13, WAIT).await.unwrap();
    let counters = member_counters(addr).await.unwrap();
    assert_eq!(
        counters.get("dropped.rate_limited"),
        Some(&18),
        "{counters:?}"
    );
    assert_eq!(rows_like(&db, "flood").await, 5);
    assert_eq!(rows_like(&db, "calm").await, 3);
    assert_eq!(rows_like(&db, "tcp").await, 5);
    assert!(collector.process.log_text().contains("rate_limited"));
    collector.process.terminate(WAIT).unwrap();
    storer.process.terminate(WAIT).unwrap();
}

/// The certificate a new TLS connection to `addr` is served.
async fn served_cert(addr: SocketAddr, ca: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der_of(pem_file: &Path) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::from_pem_file(pem_file)
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_reload_on_sighup_and_on_file_change() {
    let sandbox = Sandbox::new().unwrap();
    let pki = Pki::new(sandbox.path());
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        sandbox.path().join("t.db").display()
    );
    // The watcher is off at first (reload_interval = 0): only SIGHUP reloads.
    let mut args = pki.server_args(false);
    args.extend(["--set".to_owned(), "grpc_tls.reload_interval=0".to_owned()]);
    let mut storer = tls_storer(&sandbox, &pki, &db_url, &args).await;
    assert_eq!(
        served_cert(storer.grpc, &pki.ca_file).await,
        der_of(&pki.server.0)
    );

    // Rotate: new key and certificate written over the old files.
    let rotated = sandbox.path().join("rotated");
    std::fs::create_dir_all(&rotated).unwrap();
    let (cert2, key2) = pki
        .ca
        .issue(&rotated, "server", "storer-1b", &["localhost", "127.0.0.1"]);
    std::fs::copy(&key2, &pki.server.1).unwrap();
    std::fs::copy(&cert2, &pki.server.0).unwrap();
    // Nothing changes until SIGHUP.
    assert_ne!(served_cert(storer.grpc, &pki.ca_file).await, der_of(&cert2));
    signal(storer.process.id(), "HUP");
    let (addr, ca) = (storer.grpc, pki.ca_file.clone());
    let want = der_of(&cert2);
    wait_until("the rotated certificate after SIGHUP", WAIT, || {
        let (ca, want) = (ca.clone(), want.clone());
        async move { Ok(served_cert(addr, &ca).await == want) }
    })
    .await
    .unwrap();
    assert!(
        storer.process.is_running(),
        "SIGHUP must not stop the storer"
    );
    assert!(
        storer
            .process
            .log_text()
            .contains("tls certificates reloaded")
    );
    storer.process.terminate(WAIT).unwrap();

    // With the watcher (every second), a file change alone is enough; a broken file keeps the
    // previous certificate in force.
    let mut args = pki.server_args(false);
    args.extend(["--set".to_owned(), "grpc_tls.reload_interval=1".to_owned()]);
    let mut storer = tls_storer(&sandbox, &pki, &db_url, &args).await;
    std::fs::write(&pki.server.1, "not a key").unwrap();
    let addr = storer.grpc;
    wait_until("the broken key reported", WAIT, || {
        let log = storer.process.log_text();
        async move { Ok(log.contains("tls reload failed")) }
    })
    .await
    .unwrap();
    assert_eq!(served_cert(addr, &pki.ca_file).await, der_of(&cert2));
    let (cert3, key3) = pki.ca.issue(
        &rotated,
        "server3",
        "storer-1c",
        &["localhost", "127.0.0.1"],
    );
    std::fs::copy(&key3, &pki.server.1).unwrap();
    std::fs::copy(&cert3, &pki.server.0).unwrap();
    let want = der_of(&cert3);
    wait_until("the rotated certificate from the watcher", WAIT, || {
        let (ca, want) = (ca.clone(), want.clone());
        async move { Ok(served_cert(addr, &ca).await == want) }
    })
    .await
    .unwrap();
    storer.process.terminate(WAIT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_files_stop_start_up_naming_the_key() {
    let sandbox = Sandbox::new().unwrap();
    let missing = sandbox.path().join("missing.pem");
    let out = std::process::Command::new(bin_path("sipcapture-storer").unwrap())
        .args([
            "--check-config",
            "--set",
            &format!("grpc_tls.cert={}", missing.display()),
            "--set",
            &format!("grpc_tls.key={}", missing.display()),
        ])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("`grpc_tls.cert`"), "{text}");
    let bad = sandbox.path().join("bad.pem");
    std::fs::write(&bad, "garbage").unwrap();
    let out = std::process::Command::new(bin_path("sipcapture-collector").unwrap())
        .args([
            "--check-config",
            "--set",
            &format!("grpc_client_tls.ca={}", bad.display()),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        text.contains("`grpc_client_tls.ca`") && text.contains("no CERTIFICATE"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_serves_mtls_and_its_internal_collector_is_the_certificate_identity() {
    let sandbox = Sandbox::new().unwrap();
    let pki = Pki::new(sandbox.path());
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let hep = SocketAddr::from(([127, 0, 0, 1], free_port().unwrap()));
    let mut args = vec![
        "up".to_owned(),
        "--grpc-listen".to_owned(),
        grpc.to_string(),
        "--hep-listen".to_owned(),
        hep.to_string(),
        "--set".to_owned(),
        "homer5_split=false".to_owned(),
    ];
    args.extend(pki.server_args(true));
    args.extend(sets(&[
        ("collector.grpc_client_tls.cert", &pki.collector.0),
        ("collector.grpc_client_tls.key", &pki.collector.1),
    ]));
    // The server certificate is issued by the CA: trusting the certificate file alone is not
    // enough, and start-up says which key to set.
    let out = std::process::Command::new(bin_path("sipcapture").unwrap())
        .args(&args)
        .current_dir(sandbox.path())
        .env("NO_COLOR", "1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(text.contains("`collector.grpc_client_tls.ca`"), "{text}");

    args.extend(sets(&[("collector.grpc_client_tls.ca", &pki.ca_file)]));
    let mut up = sandbox.spawn("up", "sipcapture", &args).unwrap();
    wait_tls_healthy(&mut up, grpc, &pki.client(Some(&pki.admin))).await;
    send_from("127.0.0.1", hep, &packets("up", 7));
    let db_url = format!(
        "sqlite://{}",
        sandbox.path().join("sipcapture.db").display()
    );
    let db = open_db(&db_url).await.unwrap();
    wait_for_rows(&db, "sip_capture", 7, WAIT).await.unwrap();
    let owners = stream_owners(&db).await;
    assert_eq!(owners, vec![vec!["collector-good".to_owned()]]);
    // Plain gRPC is not served on the TLS port.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(2))
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        assert!(
            client
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_err()
        );
    }
    up.terminate(WAIT).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_client_certificate_is_refused() {
    let sandbox = Sandbox::new().unwrap();
    let pki = Pki::new(sandbox.path());
    let revoked = pki.ca.issue_serial(
        sandbox.path(),
        "revoked",
        "collector-stolen",
        &[],
        Some(0x5107e1),
    );
    let crl = pki.ca.crl(sandbox.path(), "crl", &[0x5107e1]);
    let db_url = format!(
        "sqlite://{}?mode=rwc",
        sandbox.path().join("c.db").display()
    );
    let mut args = pki.server_args(true);
    args.extend(sets(&[("grpc_tls.client_crl", &crl)]));
    let mut storer = tls_storer(&sandbox, &pki, &db_url, &args).await;
    // The admin certificate (not revoked) got the storer healthy; the revoked one is refused.
    let channel = pki
        .client(Some(&revoked))
        .endpoint(&format!("https://{}", storer.grpc))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = channel {
        let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
        assert!(
            client
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_err()
        );
    }
    let addr = storer.grpc;
    wait_until("the refusal logged", WAIT, || {
        let log = storer.process.log_text();
        async move { Ok(log.contains("grpc tls handshake refused")) }
    })
    .await
    .unwrap();
    assert!(
        storer.process.log_text().contains("Revoked"),
        "{}",
        storer.process.log_text()
    );
    let counters = tls_counters(addr, &pki.client(Some(&pki.collector))).await;
    assert!(counters.get("grpc_tls_refused").copied().unwrap_or(0) >= 1);
    storer.process.terminate(WAIT).unwrap();
}

/// Issue 21: one WARN per bad connection floods the log. 300 connections that send garbage
/// instead of a TLS ClientHello are each counted (`grpc_tls_refused` exact), and logged on the
/// first and every power of two only (with the running total): 9 lines, not 300.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tls_handshakes_are_counted_exactly_and_logged_sparingly() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    const BAD: u64 = 300;
    let sandbox = Sandbox::new().unwrap();
    let pki = Pki::new(sandbox.path());
    let db_url = format!("sqlite://{}", sandbox.path().join("flood.db").display());
    let storer = tls_storer(&sandbox, &pki, &db_url, &pki.server_args(true)).await;
    for _ in 0..BAD {
        let mut conn = tokio::net::TcpStream::connect(storer.grpc).await.unwrap();
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut sink = Vec::new();
        let _closed = tokio::time::timeout(WAIT, conn.read_to_end(&mut sink)).await;
    }
    let admin = pki.client(Some(&pki.admin));
    wait_until("every refusal counted", WAIT, || async {
        Ok(tls_counters(storer.grpc, &admin)
            .await
            .get("grpc_tls_refused")
            .copied()
            .unwrap_or(0)
            == BAD)
    })
    .await
    .unwrap();
    let lines = storer
        .process
        .log_text()
        .lines()
        .filter(|l| l.contains("grpc tls handshake refused"))
        .count();
    eprintln!("{BAD} refused handshakes: {lines} log lines");
    // 1, 2, 4, ..., 256.
    assert_eq!(lines, 9);
}

/// Issue 21: with `grpc_client_tls` configured, an `http://` storer or control URL would be
/// silently plaintext. The collector starts (a loopback or sidecar link may be plaintext on
/// purpose) but warns at start-up, naming the key and the URL; an `https://` URL is not named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_urls_with_client_tls_are_named_at_start() {
    let sandbox = Sandbox::new().unwrap();
    let pki = Pki::new(sandbox.path());
    let plain = format!("http://127.0.0.1:{}", free_port().unwrap());
    let secure = format!("https://127.0.0.1:{}", free_port().unwrap());
    let control = format!("http://127.0.0.1:{}", free_port().unwrap());
    let mut extra = sets(&[("grpc_client_tls.ca", &pki.ca_file)]);
    extra.extend(["--set".to_owned(), format!("control={control}")]);
    let collector = sandbox
        .collector("collector", &[plain.clone(), secure.clone()], &extra)
        .await
        .unwrap();
    let warned = |key: &str, url: &str| {
        collector
            .process
            .log_text()
            .lines()
            .any(|l| l.contains("the link is plaintext") && l.contains(key) && l.contains(url))
    };
    wait_until("the warnings", WAIT, || async {
        Ok(warned("storer", &plain) && warned("control", &control))
    })
    .await
    .unwrap();
    assert!(
        !warned("storer", &secure),
        "{}",
        collector.process.log_text()
    );
}
