//! Kamailio 5.6 (Debian packages `kamailio`, `kamailio-extra-modules`, `kamailio-sqlite-modules`)
//! as the reference HOMER capture server for differential tests: `sipcapture` writing to SQLite,
//! run in the foreground in a temporary directory on a free loopback UDP port.
//!
//! The recipe follows `shared/tools/start-kamailio-capture.sh`: `hep_capture_on=1`,
//! `capture_on=1` (Kamailio's default is 0), one worker (db_sqlite has no busy timeout), the
//! 44-column table created beforehand (Kamailio never creates tables), `TZ=UTC` so that the
//! `date` column (Kamailio: `localtime_r`) is UTC like ours. Routing reproduces the HOMER 5 split
//! our storer applies by default: `$rm` (request method, or the CSeq method of a reply) INVITE,
//! ACK, BYE, CANCEL, UPDATE, PRACK, REFER → `sip_capture_call_%Y%m%d`, REGISTER →
//! `sip_capture_registration_%Y%m%d`, anything else → `sip_capture_rest_%Y%m%d` (Kamailio runs
//! the name through strftime with the packet's UTC time).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use sea_orm::{ConnectionTrait, Statement};

use crate::{Process, free_port, open_db};

/// The 44 columns `sipcapture.c:sip_capture_store` inserts, in Kamailio's key order (§2.1).
pub const SIP_CAPTURE_COLUMNS: [&str; 44] = [
    "date",
    "micro_ts",
    "method",
    "reply_reason",
    "ruri",
    "ruri_user",
    "from_user",
    "from_tag",
    "to_user",
    "to_tag",
    "pid_user",
    "contact_user",
    "auth_user",
    "callid",
    "callid_aleg",
    "via_1",
    "via_1_branch",
    "cseq",
    "reason",
    "content_type",
    "auth",
    "user_agent",
    "source_ip",
    "source_port",
    "destination_ip",
    "destination_port",
    "contact_ip",
    "contact_port",
    "originator_ip",
    "originator_port",
    "proto",
    "family",
    "rtp_stat",
    "type",
    "node",
    "correlation_id",
    "from_domain",
    "to_domain",
    "ruri_domain",
    "diversion",
    "msg",
    "custom_field1",
    "custom_field2",
    "custom_field3",
];

/// Integer columns (the rest are strings, `date` a datetime, `msg` a blob).
const INT_COLUMNS: [&str; 8] = [
    "micro_ts",
    "source_port",
    "destination_port",
    "contact_port",
    "originator_port",
    "proto",
    "family",
    "type",
];

/// Where the Debian packages put the modules (multi-arch directory).
fn module_dir() -> Option<PathBuf> {
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/kamailio/modules",
        "/usr/lib/aarch64-linux-gnu/kamailio/modules",
        "/usr/lib/kamailio/modules",
        "/usr/lib64/kamailio/modules",
    ];
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|d| d.join("sipcapture.so").exists() && d.join("db_sqlite.so").exists())
}

/// The `kamailio` binary, if it is installed.
fn binary() -> Option<PathBuf> {
    ["/usr/sbin/kamailio", "/usr/local/sbin/kamailio"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// Why Kamailio with `sipcapture` and `db_sqlite` cannot run here, or `None` when it can.
pub fn unavailable() -> Option<String> {
    if binary().is_none() {
        return Some("the kamailio binary is not installed (apt-get install kamailio)".to_owned());
    }
    if module_dir().is_none() {
        return Some(
            "sipcapture.so / db_sqlite.so not found (apt-get install kamailio-extra-modules \
             kamailio-sqlite-modules)"
                .to_owned(),
        );
    }
    None
}

/// `CREATE TABLE` for a Kamailio-compatible 44-column capture table on SQLite. Every column is
/// nullable: Kamailio's db_sqlite binds empty strings as NULL.
pub fn sqlite_table_ddl(table: &str) -> String {
    let mut cols = vec!["\"id\" INTEGER PRIMARY KEY AUTOINCREMENT".to_owned()];
    for c in SIP_CAPTURE_COLUMNS {
        let ty = if c == "date" {
            "DATETIME"
        } else if c == "msg" {
            "BLOB"
        } else if INT_COLUMNS.contains(&c) {
            "INTEGER"
        } else {
            "TEXT"
        };
        cols.push(format!("\"{c}\" {ty}"));
    }
    format!(
        "CREATE TABLE IF NOT EXISTS \"{table}\" ({})",
        cols.join(", ")
    )
}

/// The Kamailio configuration (see the module documentation).
pub fn config(modules: &Path, listen: SocketAddr, capture_node: &str, db_url: &str) -> String {
    format!(
        r#"#!KAMAILIO
debug=2
log_stderror=yes
memdbg=5
memlog=5
children=1
auto_aliases=no
disable_tcp=yes
listen=udp:{listen}
mpath="{modules}/"
loadmodule "pv.so"
loadmodule "xlog.so"
loadmodule "db_sqlite.so"
loadmodule "sipcapture.so"
modparam("sipcapture", "db_url", "{db_url}")
modparam("sipcapture", "capture_on", 1)
modparam("sipcapture", "hep_capture_on", 1)
modparam("sipcapture", "capture_node", "{capture_node}")
request_route {{
    route(STORE);
    drop;
}}
onreply_route {{
    route(STORE);
    drop;
}}
route[STORE] {{
    if ($rm == "INVITE" || $rm == "ACK" || $rm == "BYE" || $rm == "CANCEL"
            || $rm == "UPDATE" || $rm == "PRACK" || $rm == "REFER") {{
        sip_capture("sip_capture_call_%Y%m%d");
    }} else if ($rm == "REGISTER") {{
        sip_capture("sip_capture_registration_%Y%m%d");
    }} else {{
        sip_capture("sip_capture_rest_%Y%m%d");
    }}
}}
"#,
        modules = modules.display(),
    )
}

/// A running Kamailio capture server; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct Kamailio {
    /// The main process (its workers are its children and exit with it).
    pub process: Process,
    /// UDP address for HEP.
    pub hep: SocketAddr,
    /// The SQLite file it writes to.
    pub db_path: PathBuf,
}

impl Kamailio {
    /// Creates `tables` (the dated tables the test will fill) in `dir/kamailio.sqlite`, writes
    /// the configuration, checks it with `kamailio -c` and starts Kamailio in the foreground;
    /// returns once its UDP socket is bound.
    pub async fn start(dir: &Path, tables: &[String], capture_node: &str) -> anyhow::Result<Self> {
        if let Some(why) = unavailable() {
            bail!("{why}");
        }
        let bin = binary().context("kamailio binary")?;
        let modules = module_dir().context("kamailio module directory")?;
        std::fs::create_dir_all(dir)?;
        let run = dir.join("run");
        std::fs::create_dir_all(&run)?;
        let db_path = dir.join("kamailio.sqlite");
        {
            let db = open_db(&format!("sqlite://{}?mode=rwc", db_path.display())).await?;
            let backend = db.get_database_backend();
            // WAL: the test reads while Kamailio writes; db_sqlite would fail a locked insert.
            db.execute_raw(Statement::from_string(
                backend,
                "PRAGMA journal_mode=WAL".to_owned(),
            ))
            .await?;
            for t in tables {
                db.execute_raw(Statement::from_string(backend, sqlite_table_ddl(t)))
                    .await?;
            }
            db.close().await?;
        }
        let hep = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let cfg_path = dir.join("kamailio-capture.cfg");
        std::fs::write(
            &cfg_path,
            config(
                &modules,
                hep,
                capture_node,
                &format!("sqlite://{}", db_path.display()),
            ),
        )?;
        let check = Command::new(&bin)
            .arg("-c")
            .arg("-f")
            .arg(&cfg_path)
            .env("TZ", "UTC")
            .current_dir(dir)
            .output()
            .context("running kamailio -c")?;
        if !check.status.success() {
            bail!(
                "kamailio -c rejected {}:\n{}{}",
                cfg_path.display(),
                String::from_utf8_lossy(&check.stdout),
                String::from_utf8_lossy(&check.stderr)
            );
        }
        let log = dir.join("kamailio.log");
        let out = std::fs::File::create(&log)?;
        let err = out.try_clone()?;
        // -DD: stay in the foreground (our child), -E: log to stderr (the log file).
        let child = Command::new(&bin)
            .arg("-DD")
            .arg("-E")
            .arg("-f")
            .arg(&cfg_path)
            .arg("-Y")
            .arg(&run)
            .arg("-P")
            .arg(dir.join("kamailio.pid"))
            .env("TZ", "UTC")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting kamailio")?;
        let mut process = Process {
            name: "kamailio".to_owned(),
            child,
            log,
        };
        // Ready when its UDP socket is bound: datagrams then queue in the socket buffer until the
        // worker reads them. Probed in /proc/net/udp, not by binding (that could steal the port).
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if !process.is_running() {
                bail!(
                    "kamailio exited during start-up; log:\n{}",
                    process.log_text()
                );
            }
            if udp_bound(hep) {
                break;
            }
            if Instant::now() >= deadline {
                bail!(
                    "kamailio did not bind {hep} within 20 s; log:\n{}",
                    process.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Kamailio {
            process,
            hep,
            db_path,
        })
    }

    /// `sqlite://` URL of its database (for reading).
    pub fn db_url(&self) -> String {
        format!("sqlite://{}", self.db_path.display())
    }

    /// Stops Kamailio (SIGTERM to the main process, which stops its workers).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        if self.process.is_running() {
            let _clean = self.process.terminate(Duration::from_secs(10))?;
        }
        Ok(())
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        // SIGTERM first so the main process takes its workers down with it.
        let _ignored = self.stop();
    }
}

/// Whether some socket is bound to the IPv4 UDP address `addr` (Linux `/proc/net/udp`).
fn udp_bound(addr: SocketAddr) -> bool {
    let SocketAddr::V4(v4) = addr else {
        return false;
    };
    // local_address is the IPv4 address as a little-endian hex u32, then the port in hex.
    let want = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/udp").is_ok_and(|table| {
        table
            .lines()
            .skip(1)
            .any(|line| line.split_whitespace().nth(1) == Some(want.as_str()))
    })
}

/// A SQL expression that normalises one capture column to comparable text on SQLite: `date` as
/// `YYYY-MM-DD HH:MM:SS` (Kamailio's db_sqlite stores a Julian day number, we store text), every
/// other column as the hex of its bytes (so `msg` with an embedded NUL survives), and a
/// separate `<col>__null` flag (Kamailio's db_sqlite binds empty strings as NULL).
pub fn normalised_select(column: &str) -> String {
    if column == "date" {
        // Kamailio's db_sqlite binds a DATETIME `t` as `(t - 0.5) / 86400 + 2440587.5` (a double
        // with ~40 us resolution at today's dates) and reads it back as
        // `(time_t)(86400 * (jd - 2440587.5) + 0.5)`; that truncation can land one second short,
        // so round to the nearest second instead.
        "CASE WHEN typeof(\"date\") IN ('real', 'integer') \
         THEN strftime('%Y-%m-%d %H:%M:%S', \
           CAST(round(86400.0 * (\"date\" - 2440587.5) + 0.5) AS INTEGER), 'unixepoch') \
         ELSE strftime('%Y-%m-%d %H:%M:%S', \"date\") END AS \"date\", \
         \"date\" IS NULL AS \"date__null\""
            .to_owned()
    } else {
        format!(
            "hex(CAST(\"{column}\" AS BLOB)) AS \"{column}\", \"{column}\" IS NULL AS \"{column}__null\""
        )
    }
}

/// One stored row: column → (value as text, was NULL).
pub type NormalisedRow = Vec<(String, bool)>;

/// All rows of `table` with every capture column normalised (see [`normalised_select`]), in id
/// order; an absent table gives no rows.
pub async fn normalised_rows(
    db: &sea_orm::DatabaseConnection,
    table: &str,
) -> anyhow::Result<Vec<NormalisedRow>> {
    let backend = db.get_database_backend();
    let select = SIP_CAPTURE_COLUMNS
        .iter()
        .map(|c| normalised_select(c))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!("SELECT {select} FROM \"{table}\" ORDER BY id");
    let rows = match db.query_all_raw(Statement::from_string(backend, sql)).await {
        Ok(rows) => rows,
        Err(e) if e.to_string().contains("no such table") => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for row in rows {
        let mut values = Vec::new();
        for c in SIP_CAPTURE_COLUMNS {
            let null: i64 = row.try_get("", &format!("{c}__null"))?;
            let raw: Option<String> = row.try_get("", c)?;
            let raw = raw.unwrap_or_default();
            let text = if c == "date" {
                raw
            } else {
                String::from_utf8_lossy(&unhex(&raw)?).into_owned()
            };
            values.push((text, null != 0));
        }
        out.push(values);
    }
    Ok(out)
}

fn unhex(s: &str) -> anyhow::Result<Vec<u8>> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        bail!("odd hex length");
    }
    b.chunks(2)
        .map(|pair| {
            let hi = hex_digit(pair[0])?;
            let lo = hex_digit(pair[1])?;
            Ok(hi << 4 | lo)
        })
        .collect()
}

fn hex_digit(c: u8) -> anyhow::Result<u8> {
    match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'A'..=b'F' => Ok(c - b'A' + 10),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => bail!("bad hex digit {c}"),
    }
}
