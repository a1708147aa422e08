//! Helpers for the storer suites: a fresh database per test on every backend available
//! (SQLite always; PostgreSQL / MariaDB from `TEST_PG_URL` / `TEST_MYSQL_URL`), a storer binary
//! started from a TOML config, a gRPC client that speaks the Deliver stream like a collector
//! (Hello, numbered batches, acks, resend after reconnect) and realistic records.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use sipcapture_proto::v1::storer_service_client::StorerServiceClient;
use sipcapture_proto::v1::{
    BatchAck, CaptureRecord, DeliverRequest, Hello, HepMeta, RecordBatch, RecordKind, ReportFields,
    SipFields, deliver_request, deliver_response,
};
use tokio::sync::mpsc;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;

use crate::{Process, Sandbox, free_port, open_db, wait_healthy};

/// A database engine of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// A file in the sandbox.
    Sqlite,
    /// `TEST_PG_URL`.
    Postgres,
    /// `TEST_MYSQL_URL` (MariaDB or MySQL).
    MySql,
}

impl Engine {
    /// The env variable naming the server (none for SQLite).
    pub fn env_var(self) -> Option<&'static str> {
        match self {
            Engine::Sqlite => None,
            Engine::Postgres => Some("TEST_PG_URL"),
            Engine::MySql => Some("TEST_MYSQL_URL"),
        }
    }
}

/// The server URL of an engine, or `None` (with a message) when it is not configured locally.
/// In CI (`CI` set) a missing URL is a failure.
pub fn server_url(engine: Engine) -> Option<String> {
    let var = engine.env_var()?;
    match std::env::var(var) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("CI").is_err(),
                "{var} must be set in CI (.ci/run sets it)"
            );
            eprintln!("skipping {engine:?}: {var} is not set");
            None
        }
    }
}

/// A database created for one test (dropped by [`TestDb::cleanup`]).
#[derive(Debug)]
pub struct TestDb {
    /// Its engine.
    pub engine: Engine,
    /// The URL a storer uses.
    pub url: String,
    admin_url: Option<String>,
    name: String,
}

/// `url` with its database (the last path segment) replaced by `db`.
pub fn with_database(url: &str, db: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let base = match base.get(authority_start..).and_then(|rest| rest.find('/')) {
        Some(slash) => base.get(..authority_start + slash).unwrap_or(base),
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

impl TestDb {
    /// A fresh database: a new SQLite file in the sandbox, or `CREATE DATABASE sipcap_it_<tag>_<random>`
    /// on the server. `None` when the engine is not configured (skip).
    pub async fn create(
        engine: Engine,
        sandbox: &Sandbox,
        tag: &str,
    ) -> anyhow::Result<Option<Self>> {
        let name = format!("sipcap_it_{tag}_{:08x}", rand::random::<u32>());
        if engine == Engine::Sqlite {
            let path = sandbox.path().join(format!("{name}.db"));
            return Ok(Some(TestDb {
                engine,
                url: format!("sqlite://{}", path.display()),
                admin_url: None,
                name,
            }));
        }
        let Some(admin_url) = server_url(engine) else {
            return Ok(None);
        };
        let admin = open_db(&admin_url)
            .await
            .with_context(|| format!("connecting to {admin_url}"))?;
        let backend = admin.get_database_backend();
        admin
            .execute_raw(Statement::from_string(
                backend,
                format!("CREATE DATABASE {name}"),
            ))
            .await?;
        admin.close().await?;
        Ok(Some(TestDb {
            engine,
            url: with_database(&admin_url, &name),
            admin_url: Some(admin_url),
            name,
        }))
    }

    /// Opens a connection for assertions.
    pub async fn connect(&self) -> anyhow::Result<DatabaseConnection> {
        let url = if self.engine == Engine::Sqlite {
            format!("{}?mode=rwc", self.url)
        } else {
            self.url.clone()
        };
        open_db(&url).await
    }

    /// Drops the database (server engines); the sandbox removes SQLite files.
    pub async fn cleanup(self) -> anyhow::Result<()> {
        let Some(admin_url) = self.admin_url else {
            return Ok(());
        };
        let admin = open_db(&admin_url).await?;
        let backend = admin.get_database_backend();
        let sql = match backend {
            DatabaseBackend::Postgres => {
                format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name)
            }
            _ => format!("DROP DATABASE IF EXISTS {}", self.name),
        };
        admin
            .execute_raw(Statement::from_string(backend, sql))
            .await?;
        admin.close().await?;
        Ok(())
    }
}

/// A running `sipcapture-storer`.
#[derive(Debug)]
pub struct StorerProc {
    /// The process.
    pub process: Process,
    /// Its gRPC address.
    pub grpc: SocketAddr,
}

/// Starts `sipcapture-storer` with `db_url` and the extra TOML `extra` (top-level keys first,
/// then tables), waits until it is healthy.
pub async fn start_storer(
    sandbox: &Sandbox,
    name: &str,
    db_url: &str,
    extra: &str,
) -> anyhow::Result<StorerProc> {
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let config = format!(
        "storer_id = \"{name}\"\ngrpc_listen = \"{grpc}\"\ndb_url = \"{db_url}\"\n{extra}\n"
    );
    let path = sandbox.path().join(format!("{name}.toml"));
    std::fs::write(&path, config)?;
    let mut process = sandbox.spawn(
        name,
        "sipcapture-storer",
        &["--config".to_owned(), path.display().to_string()],
    )?;
    wait_healthy(&mut process, grpc, Duration::from_secs(30)).await?;
    Ok(StorerProc { process, grpc })
}

/// One Deliver stream, driven like a collector does.
#[derive(Debug)]
pub struct Delivery {
    tx: mpsc::Sender<DeliverRequest>,
    rx: tonic::Streaming<sipcapture_proto::v1::DeliverResponse>,
    /// The storer's last committed sequence for this stream, from its Welcome.
    pub last_committed: u64,
}

impl Delivery {
    /// Opens a stream: Hello, then waits for the Welcome.
    pub async fn open(
        addr: SocketAddr,
        collector_id: &str,
        stream_id: &str,
    ) -> anyhow::Result<Self> {
        let mut client = StorerServiceClient::connect(format!("http://{addr}"))
            .await?
            .max_decoding_message_size(64 * 1024 * 1024)
            .max_encoding_message_size(64 * 1024 * 1024);
        let (tx, rx) = mpsc::channel(16);
        tx.send(DeliverRequest {
            message: Some(deliver_request::Message::Hello(Hello {
                collector_id: collector_id.to_owned(),
                stream_id: stream_id.to_owned(),
            })),
        })
        .await?;
        let mut rx = client.deliver(ReceiverStream::new(rx)).await?.into_inner();
        let welcome = match rx.message().await?.and_then(|m| m.message) {
            Some(deliver_response::Message::Welcome(w)) => w,
            other => bail!("expected a Welcome, got {other:?}"),
        };
        Ok(Delivery {
            tx,
            rx,
            last_committed: welcome.last_committed_sequence,
        })
    }

    /// Sends one batch and waits for its acknowledgement.
    pub async fn send(
        &mut self,
        sequence: u64,
        records: Vec<CaptureRecord>,
    ) -> anyhow::Result<BatchAck> {
        self.tx
            .send(DeliverRequest {
                message: Some(deliver_request::Message::Batch(RecordBatch {
                    sequence,
                    records,
                    ..Default::default()
                })),
            })
            .await
            .context("stream closed")?;
        match self.rx.message().await?.and_then(|m| m.message) {
            Some(deliver_response::Message::Ack(ack)) if ack.sequence == sequence => Ok(ack),
            other => bail!("expected the ack of batch {sequence}, got {other:?}"),
        }
    }
}

/// Microseconds since the epoch of a UTC date and time.
pub fn micros(y: i32, m: u32, d: u32, hh: u32, mm: u32, ss: u32) -> u64 {
    use chrono::TimeZone;
    chrono::Utc
        .with_ymd_and_hms(y, m, d, hh, mm, ss)
        .single()
        .map_or(0, |t| u64::try_from(t.timestamp_micros()).unwrap_or(0))
}

/// A realistic SIP record (an ~800-byte INVITE or its reply) with every column source filled.
/// `msg_type` 1 is a request (`method` is the method), 2 a reply (`method` is the code).
pub fn sip_record(
    time_us: u64,
    method: &str,
    cseq_method: &str,
    call_id: &str,
    from_user: &str,
) -> CaptureRecord {
    let msg_type = if method.parse::<u32>().is_ok() { 2 } else { 1 };
    let first_line = if msg_type == 1 {
        format!("{method} sip:bob@biloxi.example.com SIP/2.0")
    } else {
        format!("SIP/2.0 {method} OK")
    };
    let payload = format!(
        "{first_line}\r\nVia: SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds\r\n\
         Max-Forwards: 70\r\nTo: Bob <sip:bob@biloxi.example.com>\r\n\
         From: Alice <sip:{from_user}@atlanta.example.com>;tag=1928301774\r\n\
         Call-ID: {call_id}\r\nCSeq: 314159 {cseq_method}\r\n\
         Contact: <sip:{from_user}@pc33.atlanta.example.com>\r\nContent-Type: application/sdp\r\n\
         User-Agent: sipcapture-it/1.0\r\nContent-Length: 400\r\n\r\n\
         v=0\r\no={from_user} 2890844526 2890844526 IN IP4 pc33.atlanta.example.com\r\ns=-\r\n\
         c=IN IP4 192.0.2.101\r\nt=0 0\r\nm=audio 49172 RTP/AVP 0 8 97 101\r\n\
         a=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:97 iLBC/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n\
         a=x-padding:{}\r\n",
        "p".repeat(160)
    );
    CaptureRecord {
        capture_time_us: time_us,
        time_from_packet: true,
        family: 2,
        ip_protocol: 17,
        transport: 1,
        src_ip: vec![192, 0, 2, 10],
        src_port: 5060,
        dst_ip: vec![192, 0, 2, 20],
        dst_port: 5080,
        node: "it-node:2001".to_owned(),
        kind: RecordKind::Sip as i32,
        hep: Some(HepMeta {
            version: 3,
            has_capture_id: true,
            capture_id: 2001,
            payload_type: 1,
            ..Default::default()
        }),
        payload: payload.into_bytes(),
        sip: Some(SipFields {
            msg_type,
            method: method.to_owned(),
            reply_reason: if msg_type == 2 {
                "OK".to_owned()
            } else {
                String::new()
            },
            ruri: if msg_type == 1 {
                "sip:bob@biloxi.example.com".to_owned()
            } else {
                String::new()
            },
            ruri_user: if msg_type == 1 {
                "bob".to_owned()
            } else {
                String::new()
            },
            ruri_domain: if msg_type == 1 {
                "biloxi.example.com".to_owned()
            } else {
                String::new()
            },
            from_user: from_user.to_owned(),
            from_domain: "atlanta.example.com".to_owned(),
            from_tag: "1928301774".to_owned(),
            to_user: "bob".to_owned(),
            to_domain: "biloxi.example.com".to_owned(),
            contact_user: from_user.to_owned(),
            callid: call_id.to_owned(),
            via_1: "SIP/2.0/UDP pc33.atlanta.example.com;branch=z9hG4bK776asdhds".to_owned(),
            via_1_branch: "z9hG4bK776asdhds".to_owned(),
            cseq: format!("314159 {cseq_method}"),
            cseq_method: cseq_method.to_owned(),
            content_type: "application/sdp".to_owned(),
            user_agent: "sipcapture-it/1.0".to_owned(),
            contact_ip: "pc33.atlanta.example.com".to_owned(),
            correlation_id: call_id.to_owned(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A report record (HEP type 5 RTCP, 32/99 reports, 100 logs, any other type).
pub fn report_record(
    time_us: u64,
    payload_type: u32,
    report_type: u32,
    correlation_id: &str,
) -> CaptureRecord {
    CaptureRecord {
        capture_time_us: time_us,
        time_from_packet: true,
        family: 2,
        ip_protocol: 17,
        transport: 1,
        src_ip: vec![192, 0, 2, 10],
        src_port: 5004,
        dst_ip: vec![192, 0, 2, 20],
        dst_port: 5006,
        node: "it-node:2001".to_owned(),
        kind: RecordKind::Report as i32,
        hep: Some(HepMeta {
            version: 3,
            payload_type,
            has_correlation_id: true,
            correlation_id: correlation_id.as_bytes().to_vec(),
            ..Default::default()
        }),
        payload: br#"{"type":200,"ssrc":"0x1234","report_count":1}"#.to_vec(),
        report: Some(ReportFields { report_type }),
        ..Default::default()
    }
}

/// A count query (`SELECT COUNT(...) AS n ...`) as u64.
pub async fn count(db: &DatabaseConnection, sql: &str) -> anyhow::Result<u64> {
    let backend = db.get_database_backend();
    let row = db
        .query_one_raw(Statement::from_string(backend, sql.to_owned()))
        .await?
        .context("no row")?;
    Ok(u64::try_from(row.try_get::<i64>("", "n")?)?)
}

/// Values of `columns` (as text, NULL as "NULL") of every row of `table` matching `filter`
/// (an SQL condition, or "1=1"), ordered by `order`. Works on the three engines.
pub async fn text_rows(
    db: &DatabaseConnection,
    table: &str,
    columns: &[&str],
    filter: &str,
    order: &str,
) -> anyhow::Result<Vec<Vec<String>>> {
    let backend = db.get_database_backend();
    let text = if backend == DatabaseBackend::MySql {
        "CHAR"
    } else {
        "TEXT"
    };
    let select = columns
        .iter()
        .map(|c| format!("CAST({c} AS {text}) AS {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {select} FROM {table} WHERE {filter} ORDER BY {order}");
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql))
        .await?;
    let mut out = Vec::new();
    for row in rows {
        let mut values = Vec::new();
        for c in columns {
            let v: Option<String> = row.try_get("", c)?;
            values.push(v.unwrap_or_else(|| "NULL".to_owned()));
        }
        out.push(values);
    }
    Ok(out)
}

/// The tables of the database (SQLite, PostgreSQL current schema, MySQL current database).
pub async fn table_names(db: &DatabaseConnection) -> anyhow::Result<Vec<String>> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "SELECT tablename::text AS name FROM pg_tables WHERE schemaname = current_schema()"
        }
        DatabaseBackend::MySql => {
            "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables WHERE table_schema = DATABASE()"
        }
        _ => "SELECT name FROM sqlite_master WHERE type = 'table'",
    };
    let rows = db
        .query_all_raw(Statement::from_string(backend, sql.to_owned()))
        .await?;
    let mut names = rows
        .iter()
        .map(|r| r.try_get::<String>("", "name"))
        .collect::<Result<Vec<_>, _>>()?;
    names.sort();
    Ok(names)
}
