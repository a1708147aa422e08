//! Private database servers for fault tests: a PostgreSQL or MariaDB instance of its own, in a
//! temporary data directory on a free port, that a test stops (cleanly, or SIGKILL for a crash)
//! and starts again on the same data. The machine's shared servers are never touched.
//!
//! `None` from [`DbServer::start`] (with a printed reason) means the server binaries are absent;
//! `.ci/run` installs them, so CI never skips.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::{free_port, signal};

/// The engine of a private server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerKind {
    /// PostgreSQL from `/usr/lib/postgresql/<version>/bin`, run as the `postgres` user.
    Postgres,
    /// MariaDB (`mariadb-install-db`, `mariadbd`), run as root.
    MariaDb,
}

/// How a test stops the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A clean shutdown: SIGTERM to MariaDB; SIGINT to PostgreSQL (its "fast" shutdown: its
    /// SIGTERM "smart" shutdown would wait for the storer's pooled connections to end).
    Clean,
    /// SIGKILL to the server and every process it started (a crash).
    Kill,
}

/// A private server; killed (every process of it) when dropped, its directory removed.
#[derive(Debug)]
pub struct DbServer {
    kind: ServerKind,
    bin: PathBuf,
    dir: tempfile::TempDir,
    /// Its TCP port on 127.0.0.1.
    pub port: u16,
    child: Option<Child>,
    starts: u32,
}

fn postgres_bin() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").exists() && p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop().map(|d| d.join("postgres"))
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    let dirs = path
        .split(':')
        .map(PathBuf::from)
        .chain(["/usr/sbin", "/usr/bin", "/sbin"].map(PathBuf::from))
        .collect::<Vec<_>>();
    names
        .iter()
        .find_map(|n| dirs.iter().map(|d| d.join(n)).find(|p| p.exists()))
}

fn run(cmd: &mut Command, what: &str) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("running {what}"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The children of `pid` (from `/proc/<n>/stat`).
fn children(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|n| {
            std::fs::read_to_string(format!("/proc/{n}/stat"))
                .ok()
                .and_then(|s| {
                    // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                    let rest = s.rsplit_once(')')?.1;
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

impl DbServer {
    /// Creates and starts a server; `None` (after printing why) when its binaries are absent.
    pub async fn start(kind: ServerKind) -> anyhow::Result<Option<Self>> {
        let bin = match kind {
            ServerKind::Postgres => postgres_bin(),
            ServerKind::MariaDb => which(&["mariadbd", "mysqld"]),
        };
        let Some(bin) = bin else {
            assert!(
                std::env::var("CI").is_err(),
                "{kind:?} server binaries must be installed in CI (.ci/run installs them)"
            );
            eprintln!("skipping: no {kind:?} server binaries on this machine");
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("sipcapture-fault-db-")
            .tempdir()?;
        let data = dir.path().join("data");
        match kind {
            ServerKind::Postgres => {
                // PostgreSQL refuses to run as root: the directory belongs to `postgres`.
                run(
                    Command::new("chown").arg("postgres:").arg(dir.path()),
                    "chown",
                )?;
                run(
                    Command::new("runuser")
                        .args(["-u", "postgres", "--"])
                        .arg(bin.with_file_name("initdb"))
                        .args(["--no-sync", "-A", "trust", "-U", "postgres", "-E", "UTF8"])
                        .arg("-D")
                        .arg(&data),
                    "initdb",
                )?;
            }
            ServerKind::MariaDb => {
                let install = which(&["mariadb-install-db", "mysql_install_db"])
                    .context("mariadb-install-db not found")?;
                run(
                    Command::new(install)
                        .arg("--no-defaults")
                        .arg(format!("--datadir={}", data.display()))
                        .args([
                            "--user=root",
                            "--auth-root-authentication-method=normal",
                            "--skip-test-db",
                        ]),
                    "mariadb-install-db",
                )?;
            }
        }
        let mut server = DbServer {
            kind,
            bin: bin.clone(),
            dir,
            port: free_port()?,
            child: None,
            starts: 0,
        };
        server.restart().await?;
        Ok(Some(server))
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The admin URL of database `db` (TCP on 127.0.0.1).
    pub fn url(&self, db: &str) -> String {
        match self.kind {
            ServerKind::Postgres => format!("postgres://postgres@127.0.0.1:{}/{db}", self.port),
            ServerKind::MariaDb => format!("mysql://root@127.0.0.1:{}/{db}", self.port),
        }
    }

    /// The URL of the server's own database (`postgres` / `mysql`), for administration.
    fn admin_url(&self) -> String {
        match self.kind {
            ServerKind::Postgres => self.url("postgres"),
            ServerKind::MariaDb => self.url("mysql"),
        }
    }

    /// The server's log so far (every start appends to it).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts the server on its data directory and port and waits until it accepts queries.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the server is already running");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let data = self.data_dir();
        let mut cmd = match self.kind {
            ServerKind::Postgres => {
                if self.starts == 0 {
                    run(
                        Command::new("chown").arg("postgres:").arg(self.log_path()),
                        "chown",
                    )?;
                }
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", "postgres", "--"])
                    .arg(&self.bin)
                    .arg("-D")
                    .arg(&data)
                    .args(["-p", &self.port.to_string()])
                    .arg("-k")
                    .arg(self.dir.path())
                    .args(["-c", "listen_addresses=127.0.0.1"])
                    .args(["-c", "max_connections=50"]);
                cmd
            }
            ServerKind::MariaDb => {
                let mut cmd = Command::new(&self.bin);
                cmd.arg("--no-defaults")
                    .arg(format!("--datadir={}", data.display()))
                    .arg(format!("--port={}", self.port))
                    .arg(format!("--socket={}", self.dir.path().join("s").display()))
                    .arg(format!(
                        "--pid-file={}",
                        self.dir.path().join("mariadbd.pid").display()
                    ))
                    .args([
                        "--bind-address=127.0.0.1",
                        "--user=root",
                        "--skip-grant-tables",
                        "--skip-name-resolve",
                        "--innodb-buffer-pool-size=64M",
                        "--max-connections=100",
                    ]);
                cmd
            }
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {:?}", self.kind))?;
        self.child = Some(child);
        self.starts += 1;
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                bail!(
                    "{:?} exited at start ({status}); log:\n{}",
                    self.kind,
                    self.log_text()
                );
            }
            if self.ready().await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{:?} not ready within 60 s; log:\n{}",
                    self.kind,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn ready(&self) -> bool {
        let admin = self.admin_url();
        match sea_orm::Database::connect(&admin).await {
            Ok(db) => {
                let _ignored = db.close().await;
                true
            }
            Err(_) => false,
        }
    }

    /// Creates database `name` and returns its URL.
    pub async fn create_database(&self, name: &str) -> anyhow::Result<String> {
        use sea_orm::ConnectionTrait;
        let admin = self.admin_url();
        let db = sea_orm::Database::connect(&admin).await?;
        let backend = db.get_database_backend();
        db.execute_raw(sea_orm::Statement::from_string(
            backend,
            format!("CREATE DATABASE {name}"),
        ))
        .await?;
        db.close().await?;
        Ok(self.url(name))
    }

    /// Stops the server; returns once every process of it has exited.
    pub fn stop(&mut self, how: Stop) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            bail!("the server is not running");
        };
        let server = match self.kind {
            ServerKind::Postgres => children(child.id()).into_iter().next(),
            ServerKind::MariaDb => Some(child.id()),
        };
        let mut family = Vec::new();
        if let Some(pid) = server {
            family.push(pid);
            family.extend(children(pid));
        }
        match how {
            Stop::Clean => {
                if let Some(pid) = server {
                    let sig = match self.kind {
                        ServerKind::Postgres => "INT",
                        ServerKind::MariaDb => "TERM",
                    };
                    signal(pid, sig);
                }
            }
            Stop::Kill => {
                // The server first, so it cannot restart its children; then the children.
                for pid in family.iter().filter(|p| is_alive(**p)) {
                    signal(*pid, "KILL");
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                let _ignored = child.kill();
                bail!("{:?} did not stop within 60 s", self.kind);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Orphans of a crash (PostgreSQL backends) leave once they see the postmaster gone.
        while family
            .iter()
            .any(|p| Path::new(&format!("/proc/{p}")).exists() && is_alive(*p))
        {
            if Instant::now() >= deadline {
                bail!("{:?} processes still running after 60 s", self.kind);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }
}

/// A process that exists and is not a zombie.
fn is_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

impl Drop for DbServer {
    fn drop(&mut self) {
        if self.child.is_some() {
            let _ignored = self.stop(Stop::Kill);
        }
    }
}
