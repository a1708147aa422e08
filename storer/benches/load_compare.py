#!/usr/bin/env python3
"""Load benchmark, packets in -> rows committed: `sipcapture up` and, when it is installed,
Kamailio 5.6 `sipcapture` side by side on SQLite, PostgreSQL and MariaDB (issue 19).

For each database kind and each system, on a fresh database and a freshly started server:

1. a throughput run: hep-loadgen offers --rate pps of 800-byte HEP3 INVITEs (distinct Call-IDs)
   over UDP for --seconds; the run ends when the backlog is stored. It prints the sustained rate
   = stored rows / (time the last row was committed - time of the first packet), the loss (sent -
   stored; the part the kernel dropped at the UDP socket), CPU% of the server process(es) (CPU
   seconds / wall seconds of that interval; 100% = one core), CPU% of the database server
   processes (postgres / mariadbd) over the same interval, and peak RSS;
2. a search for the highest zero-loss constant rate: runs of --search-seconds at constant rates,
   starting at the sustained rate of (1), widening by x1.25 until a rate fails and then bisecting,
   at most --search-runs runs, to ~5% (two significant digits). A rate passes when every packet
   sent is committed within --drain-timeout seconds of the last packet (so the backlog does not
   grow by more than drain-timeout x rate) and, for sipcapture up, nothing went to its spool.

Then one markdown table per database: Kamailio | sipcapture up | ratio.

How each system is measured:
- sipcapture up: `sipcapture up --hep-listen --grpc-listen --db-url --set metrics_listen=...`,
  run in its own temporary directory (its spool directory lands there). Progress and loss come
  from its Prometheus endpoint (records_acked, hep_received, records_spooled, spool_bytes,
  dropped); the rows are counted in the database at the end (a mismatch with records_acked is
  reported as duplicates or missing rows). Peak RSS is VmHWM of the process, CPU its utime+stime.
  It creates its tables (HOMER 5 `sip_capture_call_YYYYMMDD`, from sql/<db>/sip_capture.sql)
  itself on the first batch.
- Kamailio 5.6: a configuration written by this script (sipcapture module, hep_capture_on=1,
  capture_on=1, the HOMER 5 call/registration/rest split into `sip_capture_*_%Y%m%d`, TZ=UTC),
  `kamailio -DD -E` in the foreground. Its tables are created beforehand (Kamailio never creates
  tables) from the same sql/<db>/sip_capture.sql files, with the same indexes; on SQLite only,
  the NOT NULL constraints are dropped from the copy Kamailio gets, because db_sqlite binds
  empty strings as NULL (every row would fail otherwise). The SQLite file is in WAL mode so the
  rows can be counted while it writes. children=1 on SQLite (db_sqlite has no busy timeout), 2
  otherwise (--kam-children). Rows are counted with SELECT count(*) polled until stable; the
  time of the last change is the time of the last row. CPU is the sum of utime+stime over the
  main process and all its children; "peak RSS" is the peak of the sum of PSS over those
  processes (sampled; summing RSS would count the shared memory segment once per process).
- The UDP receive queue and kernel drops of the listening socket(s) come from /proc/net/udp.
- hep-loadgen runs on the same cores as the servers and the databases (the same for both).
- Other workloads on the machine lower the figures: before each run the script waits (at most
  --wait-idle s) for the machine to be idle; during a run it measures the CPU that neither the
  server, the database server, hep-loadgen nor the script used (/proc/stat), repeats a run where
  that exceeded 25% of a core (--retry-contested times) and flags the figures it had to keep.

Commands (from the repository root; database servers on localhost: PostgreSQL with trust auth
for `postgres`, MariaDB with `root` and an empty password; the database `loadbench` is dropped
and created for every run):

    cargo build --release -p sipcapture-cli --bin sipcapture -p sipcapture-collector --bin hep-loadgen
    apt-get install -y kamailio kamailio-extra-modules kamailio-sqlite-modules \\
        kamailio-mysql-modules kamailio-postgres-modules      # optional: the Kamailio column
    storer/benches/load_compare.py                             # all three databases, full run
    storer/benches/load_compare.py --db sqlite --seconds 3 --search-seconds 3 --no-search
    BIN=/some/dir storer/benches/load_compare.py --db postgres,mysql --rate 30000 --seconds 60

Binaries: $BIN (default <repo>/target/release) holds `sipcapture` and `hep-loadgen`.
Extra `sipcapture up` arguments: --up-arg (repeatable), e.g. --up-arg=--set --up-arg=KEY=VALUE.
Needs: Python 3.11 (standard library only), psql and mysql clients for those databases.
Not a test: nothing here runs in CI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SQL_DIR = ROOT / "sql"
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024
KAM_MODULE_DIRS = [
    "/usr/lib/x86_64-linux-gnu/kamailio/modules",
    "/usr/lib/aarch64-linux-gnu/kamailio/modules",
    "/usr/lib/kamailio/modules",
    "/usr/lib64/kamailio/modules",
]
DB_LABEL = {"sqlite": "SQLite (file)", "postgres": "PostgreSQL", "mysql": "MariaDB / MySQL"}


class BenchError(Exception):
    """A failure the benchmark explains in one message (missing tool, server that did not start)."""


def log(msg: str = "") -> None:
    print(msg, flush=True)


# ---------------------------------------------------------------------------------------------
# processes started by this script: every one is stopped on exit


class Procs:
    """The processes this script started (each in its own session, so its group is its own)."""

    def __init__(self) -> None:
        self.live: list[subprocess.Popen] = []

    def start(self, argv: list[str], **kw) -> subprocess.Popen:
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.live.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout: float = 15.0) -> None:
        """SIGTERM to the process group this script created for `p`, then SIGKILL."""
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        # Children (Kamailio's workers) may outlive the leader briefly: the group goes too.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
        if p in self.live:
            self.live.remove(p)

    def stop_all(self) -> None:
        for p in list(self.live):
            self.stop(p, timeout=5)


PROCS = Procs()


# ---------------------------------------------------------------------------------------------
# /proc


def proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat after the command name (index 0 = state, 1 = ppid, 11 = utime)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def cpu_seconds(pids: list[int], children_too: bool = False) -> float:
    """utime + stime (and, with children_too, of waited-for children) of `pids`, in seconds."""
    total = 0
    for pid in pids:
        f = proc_stat(pid)
        if f is None:
            continue
        total += int(f[11]) + int(f[12])
        if children_too:
            total += int(f[13]) + int(f[14])
    return total / CLK_TCK


def status_kib(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine has spent busy (all CPUs; /proc/stat, not idle or iowait)."""
    cols = [int(c) for c in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return (sum(cols) - cols[3] - cols[4]) / CLK_TCK


def reaped_children_cpu() -> float:
    """CPU seconds of this script and its waited-for children (hep-loadgen, psql / mysql)."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        ru = resource.getrusage(who)
        total += ru.ru_utime + ru.ru_stime
    return total


def all_pids() -> list[int]:
    return [int(d) for d in os.listdir("/proc") if d.isdigit()]


def descendants(root: int) -> list[int]:
    """`root` and every process below it."""
    parent: dict[int, int] = {}
    for pid in all_pids():
        f = proc_stat(pid)
        if f is not None:
            parent[pid] = int(f[1])
    out = [root]
    frontier = [root]
    while frontier:
        nxt = [p for p, pp in parent.items() if pp in frontier and p not in out]
        out += nxt
        frontier = nxt
    return out


def pids_named(names: set[str]) -> list[int]:
    out = []
    for pid in all_pids():
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() in names:
                out.append(pid)
        except OSError:
            pass
    return out


def udp_socket_state(port: int) -> tuple[int, int, int]:
    """(sockets, bytes waiting in their receive queues, kernel drops) of the IPv4/IPv6 UDP
    sockets bound to `port`."""
    n = rx = drops = 0
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 13 or int(cols[1].rsplit(":", 1)[1], 16) != port:
                continue
            n += 1
            rx += int(cols[4].split(":")[1], 16)
            drops += int(cols[-1])
    return n, rx, drops


def free_port() -> int:
    """A port free on 127.0.0.1 for both TCP and UDP (sipcapture up listens HEP on both)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = t.getsockname()[1]
            try:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                    u.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BenchError("no free port on 127.0.0.1")


# ---------------------------------------------------------------------------------------------
# databases


def schema_statements(kind: str, table: str, nullable: bool = False) -> list[str]:
    """The statements of sql/<dir>/sip_capture.sql for `table` (separated by lines holding ';')."""
    folder = {"sqlite": "sqlite", "postgres": "postgresql", "mysql": "mysql"}[kind]
    path = SQL_DIR / folder / "sip_capture.sql"
    if not path.exists():
        raise BenchError(f"schema file {path} is missing")
    text = path.read_text().replace("{table}", table)
    stmts = [s.strip() for s in re.split(r"(?m)^\s*;\s*$", text) if s.strip()]
    if nullable:
        stmts = [s.replace(" NOT NULL", "") for s in stmts]
    return stmts


def run_cli(argv: list[str], env: dict | None = None, stdin: str | None = None) -> str:
    r = subprocess.run(
        argv, input=stdin, capture_output=True, text=True, env=env, timeout=300
    )
    if r.returncode != 0:
        raise BenchError(f"{' '.join(argv[:3])} … failed ({r.returncode}): {r.stderr.strip()}")
    return r.stdout


class Db:
    """One database kind: fresh databases, table creation, row counts, server CPU."""

    kind = ""
    server_names: set[str] = set()

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.seq = 0

    def check(self) -> None:  # raises BenchError when the database cannot be used
        pass

    def fresh(self, system: str) -> str:
        """A new empty database for one run; returns its URL."""
        raise NotImplementedError

    def create_tables(self, url: str, tables: list[str]) -> None:
        raise NotImplementedError

    def count(self, url: str, tables: list[str] | None = None) -> int:
        """Rows in `tables`, or in every sip_capture_* table when None."""
        raise NotImplementedError

    def close(self, url: str) -> None:
        pass

    def drop(self) -> None:
        """Removes the last run's database (files in the work directory go with it)."""

    def server_cpu(self) -> float | None:
        if not self.server_names:
            return None
        return cpu_seconds(pids_named(self.server_names), children_too=True)

    def version(self) -> str:
        return ""


class SqliteDb(Db):
    kind = "sqlite"

    def __init__(self, args, work):
        super().__init__(args, work)
        self.conns: dict[str, sqlite3.Connection] = {}

    def fresh(self, system):
        self.seq += 1
        path = self.work / f"{system}-{self.seq}.sqlite"
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return f"sqlite://{path}"

    @staticmethod
    def path(url: str) -> str:
        return url.removeprefix("sqlite://")

    def create_tables(self, url, tables):
        con = sqlite3.connect(self.path(url))
        try:
            # WAL: rows are counted while Kamailio writes; a reader must not lock its writer
            # (db_sqlite has no busy timeout).
            con.execute("PRAGMA journal_mode=WAL")
            for t in tables:
                for s in schema_statements("sqlite", t, nullable=True):
                    con.execute(s)
            con.commit()
        finally:
            con.close()

    def count(self, url, tables=None):
        con = self.conns.get(url)
        if con is None:
            con = sqlite3.connect(f"file:{self.path(url)}?mode=ro", uri=True, timeout=30)
            self.conns[url] = con
        if tables is None:
            tables = [
                r[0]
                for r in con.execute(
                    "SELECT name FROM sqlite_master WHERE type='table' AND " + table_filter(self.args, "name", " ESCAPE '\\'")
                )
            ]
        return sum(con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in tables)

    def close(self, url):
        con = self.conns.pop(url, None)
        if con is not None:
            con.close()

    def version(self):
        return f"SQLite {sqlite3.sqlite_version} (the Python module's library; each server links its own)"


HEP_SIP_TABLES = ("hep_proto_1_call", "hep_proto_1_registration", "hep_proto_1_default")


def table_filter(args, column: str, escape: str = "") -> str:
    """SQL condition on `column` selecting the tables SIP rows go to: HOMER 5 `sip_capture_*`,
    or with --schema homer7 the three `hep_proto_1_*` parents (not their partitions)."""
    if getattr(args, "schema", "homer5") == "homer7":
        return f"{column} IN ({', '.join(repr(t) for t in HEP_SIP_TABLES)})"
    return f"{column} LIKE 'sip\\_capture\\_%'{escape}"


class ServerDb(Db):
    """A database server reached with its command-line client (psql, mysql)."""

    scheme = ""
    default_user = ""
    default_port = 0
    password_env = ""  # how the client takes the password
    quote = '"'  # identifier quote
    list_tables = ""  # SQL: the sip_capture_* tables of the current database

    def __init__(self, args, work, server_url: str):
        super().__init__(args, work)
        u = urllib.parse.urlsplit(server_url)
        self.user = urllib.parse.unquote(u.username or self.default_user)
        self.password = urllib.parse.unquote(u.password or "")
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or self.default_port
        self.env = dict(os.environ, **{self.password_env: self.password}) if self.password else None

    def url(self, db: str) -> str:
        cred = urllib.parse.quote(self.user)
        if self.password:
            cred += ":" + urllib.parse.quote(self.password)
        return f"{self.scheme}://{cred}@{self.host}:{self.port}/{db}"

    def sql(self, text: str, db: str | None = None) -> str:
        """Runs `text` with the client in database `db` (None: the server's default one)."""
        raise NotImplementedError

    def create_tables(self, url, tables):
        stmts = [s for t in tables for s in schema_statements(self.kind, t)]
        self.sql(";\n".join(stmts) + ";\n", self.args.db_name)

    def count(self, url, tables=None):
        if tables is None:
            tables = self.sql(self.list_tables + table_filter(self.args, "table_name") + ";",
                              self.args.db_name).split()
        if not tables:
            return 0
        q = self.quote
        expr = " + ".join(f"(SELECT count(*) FROM {q}{t}{q})" for t in tables)
        return int(self.sql(f"SELECT {expr};", self.args.db_name).strip())


class PostgresDb(ServerDb):
    kind = "postgres"
    server_names = {"postgres", "postmaster"}
    scheme, default_user, default_port, password_env = "postgres", "postgres", 5432, "PGPASSWORD"
    list_tables = ("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                   "current_schema() AND ")

    def __init__(self, args, work):
        super().__init__(args, work, args.pg_url)

    def sql(self, text, db=None):
        argv = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", self.host,
                "-p", str(self.port), "-U", self.user, "-d", db or "postgres"]
        return run_cli(argv, env=self.env, stdin=text)

    def check(self):
        if shutil.which("psql") is None:
            raise BenchError("psql (PostgreSQL client) is not installed: apt-get install postgresql-client")
        self.sql("SELECT 1;")

    def fresh(self, system):
        name = self.args.db_name
        self.sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE);')
        self.sql(f'CREATE DATABASE "{name}";')
        return self.url(name)

    def version(self):
        return self.sql("SHOW server_version;").strip()

    def drop(self):
        self.sql(f'DROP DATABASE IF EXISTS "{self.args.db_name}" WITH (FORCE);')


class MysqlDb(ServerDb):
    kind = "mysql"
    server_names = {"mariadbd", "mysqld"}
    scheme, default_user, default_port, password_env = "mysql", "root", 3306, "MYSQL_PWD"
    quote = "`"
    list_tables = ("SELECT table_name FROM information_schema.tables WHERE table_schema = "
                   "DATABASE() AND ")

    def __init__(self, args, work):
        super().__init__(args, work, args.mysql_url)

    def sql(self, text, db=None):
        client = shutil.which("mariadb") or shutil.which("mysql") or "mysql"
        argv = [client, "-N", "-B", "-h", self.host, "-P", str(self.port), "-u", self.user]
        if db:
            argv.append(db)
        return run_cli(argv, env=self.env, stdin=text)

    def check(self):
        if shutil.which("mysql") is None and shutil.which("mariadb") is None:
            raise BenchError("the mysql / mariadb client is not installed: apt-get install mariadb-client")
        self.sql("SELECT 1;")

    def fresh(self, system):
        name = self.args.db_name
        self.sql(f"DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`;")
        return self.url(name)

    def version(self):
        return self.sql("SELECT VERSION();").strip()

    def drop(self):
        self.sql(f"DROP DATABASE IF EXISTS `{self.args.db_name}`;")


DBS = {"sqlite": SqliteDb, "postgres": PostgresDb, "mysql": MysqlDb}


# ---------------------------------------------------------------------------------------------
# servers under test


class Server:
    """One started server: its HEP port, progress (rows committed), CPU and memory."""

    name = ""
    hep_port = 0

    def rows_and_backlog(self) -> tuple[int, dict]:
        """Rows committed so far, and extra gauges for this poll."""
        raise NotImplementedError

    def cpu(self) -> float:
        raise NotImplementedError

    def sample_memory(self) -> None:
        pass

    def peak_rss_mib(self) -> float:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def log_problems(self) -> list[str]:
        return []


def distinct_log_lines(path: Path, pattern: str, limit: int = 4) -> list[str]:
    """Lines of a log matching `pattern`, counted after removing numbers (pids, times)."""
    seen: dict[str, int] = {}
    first: dict[str, str] = {}
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    for line in text.splitlines():
        if re.search(pattern, line):
            key = re.sub(r"\d+", "N", line)[-160:]
            seen[key] = seen.get(key, 0) + 1
            first.setdefault(key, line.strip()[:300])
    out = [f"{n}x {first[k]}" for k, n in sorted(seen.items(), key=lambda kv: -kv[1])]
    return out[:limit]


class Ours(Server):
    name = "sipcapture up"

    def __init__(self, args, bin_dir: Path, db_url: str, run_dir: Path) -> None:
        self.hep_port = free_port()
        self.grpc_port = free_port()
        self.metrics_port = free_port()
        self.log_path = run_dir / "up.log"
        argv = [
            str(bin_dir / "sipcapture"), "up",
            "--hep-listen", f"127.0.0.1:{self.hep_port}",
            "--grpc-listen", f"127.0.0.1:{self.grpc_port}",
            "--db-url", db_url,
            "--set", f"metrics_listen=127.0.0.1:{self.metrics_port}",
            *args.up_arg,
            *(["--set", "schema=homer7"] if args.schema == "homer7" else []),
        ]
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "warn")
        self.logf = open(self.log_path, "wb")
        self.proc = PROCS.start(
            argv, cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=self.logf,
            stderr=subprocess.STDOUT,
        )
        self.last_metrics: dict[str, float] = {}
        deadline = time.monotonic() + 30
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"sipcapture up exited ({self.proc.returncode}) during start-up:\n"
                                 + self.log_path.read_text(errors="replace")[-3000:])
            try:
                m = self.metrics()
                if m.get("sipcapture_collector_stream_connects_total", 0) >= 1 and \
                        udp_socket_state(self.hep_port)[0] > 0:
                    break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                raise BenchError("sipcapture up did not become ready within 30 s:\n"
                                 + self.log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.1)

    def metrics(self) -> dict[str, float]:
        """The Prometheus endpoint, each metric summed over its labels (and `name{label=v}` kept
        for `dropped_total`)."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            text = r.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            try:
                key, value = line.rsplit(" ", 1)
                v = float(value)
            except ValueError:
                continue
            name = key.split("{", 1)[0]
            out[name] = out.get(name, 0.0) + v
            if "dropped_total{" in key:
                out[key] = v
        self.last_metrics = out
        return out

    def rows_and_backlog(self):
        try:
            m = self.metrics()
        except (OSError, urllib.error.URLError):
            m = self.last_metrics  # a slow scrape under load: the previous figures
        acked = int(m.get("sipcapture_collector_records_acked_total", 0))
        received = int(m.get("sipcapture_collector_hep_received_total", 0))
        return acked, {
            "received": received,
            "spooled": int(m.get("sipcapture_collector_records_spooled_total", 0)),
            "spool_bytes": int(m.get("sipcapture_collector_spool_bytes", 0)),
            "backlog": received - acked,
        }

    def dropped(self) -> dict[str, int]:
        return {
            k.split("{", 1)[0].removeprefix("sipcapture_") + "{" + k.split("{", 1)[1]: int(v)
            for k, v in self.last_metrics.items()
            if "dropped_total{" in k and v
        }

    def cpu(self):
        return cpu_seconds([self.proc.pid])

    def peak_rss_mib(self):
        return status_kib(self.proc.pid, "VmHWM") / 1024

    def stop(self):
        PROCS.stop(self.proc)
        self.logf.close()

    def log_problems(self):
        return distinct_log_lines(self.log_path, r"\b(WARN|ERROR)\b")


def kamailio_paths() -> tuple[str, str] | str:
    """(binary, module directory), or why Kamailio cannot run."""
    binary = shutil.which("kamailio") or next(
        (p for p in ("/usr/sbin/kamailio", "/usr/local/sbin/kamailio") if os.access(p, os.X_OK)), None
    )
    if binary is None:
        return ("kamailio is not installed (apt-get install kamailio kamailio-extra-modules "
                "kamailio-sqlite-modules kamailio-mysql-modules kamailio-postgres-modules)")
    moddir = next((d for d in KAM_MODULE_DIRS if Path(d, "sipcapture.so").exists()), None)
    if moddir is None:
        return "kamailio's sipcapture.so is not installed (apt-get install kamailio-extra-modules)"
    return binary, moddir


KAM_DB_MODULE = {"sqlite": ("db_sqlite.so", "kamailio-sqlite-modules"),
                 "postgres": ("db_postgres.so", "kamailio-postgres-modules"),
                 "mysql": ("db_mysql.so", "kamailio-mysql-modules")}

# The HOMER 5 split the storer applies by default (request method, or the CSeq method of a reply).
KAM_CONFIG = """#!KAMAILIO
# Written by storer/benches/load_compare.py: Kamailio's sipcapture module as a HEP server on UDP.

####### global parameters
listen=udp:127.0.0.1:{port}
disable_tcp=yes
auto_aliases=no
children={children}
debug=1
log_stderror=yes
memdbg=5
memlog=5

####### modules
mpath="{moddir}/"
loadmodule "pv.so"
loadmodule "{dbmod}"
loadmodule "sipcapture.so"

modparam("sipcapture", "db_url", "{db_url}")
modparam("sipcapture", "hep_capture_on", 1)
modparam("sipcapture", "capture_on", 1)
modparam("sipcapture", "capture_node", "loadbench")

####### routing: every HEP payload is stored, nothing is forwarded
request_route {{
    route(CAPTURE);
    drop;
}}

onreply_route {{
    route(CAPTURE);
    drop;
}}

# The storer's default HOMER 5 tables, chosen by $rm (the request method, or the CSeq method of a
# reply), dated by the packet's time (TZ=UTC).
route[CAPTURE] {{
    if ($rm =~ "^(INVITE|ACK|BYE|CANCEL|UPDATE|PRACK|REFER)$") {{
        sip_capture("sip_capture_call_%Y%m%d");
        return;
    }}
    if ($rm == "REGISTER") {{
        sip_capture("sip_capture_registration_%Y%m%d");
        return;
    }}
    sip_capture("sip_capture_rest_%Y%m%d");
}}
"""


def kam_tables() -> list[str]:
    """The dated tables Kamailio may write during a run: today's and tomorrow's (UTC)."""
    today = dt.datetime.now(dt.timezone.utc).date()
    days = [today, today + dt.timedelta(days=1)]
    return [f"sip_capture_{k}_{d:%Y%m%d}" for d in days for k in ("call", "registration", "rest")]


class Kamailio(Server):
    name = "Kamailio"

    def __init__(self, args, db: Db, db_url: str, run_dir: Path, children: int) -> None:
        found = kamailio_paths()
        assert not isinstance(found, str)
        binary, moddir = found
        dbmod, package = KAM_DB_MODULE[db.kind]
        if not Path(moddir, dbmod).exists():
            raise BenchError(f"{dbmod} is not installed (apt-get install {package})")
        self.db, self.db_url = db, db_url
        self.tables = kam_tables()
        db.create_tables(db_url, self.tables)
        self.hep_port = free_port()
        cfg = run_dir / "kamailio.cfg"
        cfg.write_text(KAM_CONFIG.format(children=children, port=self.hep_port, moddir=moddir,
                                         dbmod=dbmod, db_url=db_url))
        env = dict(os.environ, TZ="UTC")
        check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True,
                               env=env, cwd=run_dir)
        if check.returncode != 0:
            raise BenchError(f"kamailio -c rejected {cfg}:\n{check.stdout}{check.stderr}")
        (run_dir / "run").mkdir(exist_ok=True)
        self.log_path = run_dir / "kamailio.log"
        self.logf = open(self.log_path, "wb")
        self.proc = PROCS.start(
            [binary, "-DD", "-E", "-f", str(cfg), "-Y", str(run_dir / "run"),
             "-P", str(run_dir / "kamailio.pid")],
            cwd=run_dir, env=env, stdin=subprocess.DEVNULL, stdout=self.logf,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while udp_socket_state(self.hep_port)[0] == 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BenchError("kamailio did not start:\n"
                                 + self.log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.05)
        # The workers connect to the database in child_init, after the socket is bound.
        time.sleep(1.0)
        if self.proc.poll() is not None:
            raise BenchError("kamailio exited during start-up:\n"
                             + self.log_path.read_text(errors="replace")[-3000:])
        self.pids = descendants(self.proc.pid)
        self.peak_pss_kib = 0
        self.sample_memory()

    def rows_and_backlog(self):
        return self.db.count(self.db_url, self.tables), {}

    def cpu(self):
        return cpu_seconds(self.pids) + sum(
            int(f[13]) + int(f[14]) for f in [proc_stat(self.proc.pid)] if f
        ) / CLK_TCK

    def sample_memory(self):
        self.peak_pss_kib = max(self.peak_pss_kib, sum(pss_kib(p) for p in self.pids))

    def peak_rss_mib(self):
        return self.peak_pss_kib / 1024

    def sum_hwm_mib(self) -> float:
        return sum(status_kib(p, "VmHWM") for p in self.pids) / 1024

    def stop(self):
        PROCS.stop(self.proc)
        self.logf.close()
        self.db.close(self.db_url)

    def log_problems(self):
        # Not problems: the workers' exit at shutdown, and sipcapture's start-up complaint about
        # its default insert_retry_timeout.
        return [line for line in distinct_log_lines(self.log_path, r"\b(ERROR|CRITICAL|ALERT|BUG)\b", 8)
                if "handle_sigs(): child process" not in line
                and "insert_retry_timeout has no meaning" not in line][:4]


# ---------------------------------------------------------------------------------------------
# one run: start, load, drain, measure


@dataclass
class Run:
    system: str
    db: str
    rate: int
    seconds: float
    sent: int = 0
    rows: int = 0  # counted in the database at the end
    progress_rows: int = 0  # records_acked (ours) or the polled count (Kamailio)
    received: int | None = None
    kernel_drops: int = 0
    elapsed: float = 0.0  # first packet -> last row
    drained_after: float | None = None  # last packet -> last row
    cpu_pct: float = 0.0
    other_cpu_pct: float = 0.0  # processes that are not part of the run (another workload)
    db_cpu_pct: float | None = None
    rss_mib: float = 0.0
    spooled: int = 0
    spool_peak_bytes: int = 0
    max_backlog: int = 0
    passed: bool | None = None
    reason: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def sustained(self) -> float:
        return self.rows / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def lost(self) -> int:
        return self.sent - self.rows


class Loadgen:
    """hep-loadgen in the background; `first_packet` is when it reported that sending began."""

    def __init__(self, bin_dir: Path, port: int, rate: int, seconds: float, args) -> None:
        distinct = min(int(rate * seconds) + 1, 2_000_000)
        argv = [str(bin_dir / "hep-loadgen"), "--target", f"127.0.0.1:{port}", "--rate", str(rate),
                "--seconds", str(seconds), "--senders", str(args.senders), "--size", str(args.size),
                "--distinct", str(distinct)]
        self.started = threading.Event()
        self.lines: list[str] = []
        self.first_packet = 0.0
        self.proc = PROCS.start(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not self.started.is_set() and line.startswith("sending"):
                self.first_packet = time.monotonic()
                self.started.set()
            self.lines.append(line.rstrip())
        self.started.set()

    def running(self) -> bool:
        return self.proc.poll() is None

    def finish(self) -> tuple[int, float]:
        """(packets sent, seconds from the first to the last packet)."""
        self.proc.wait()
        self.reader.join(10)
        PROCS.live.remove(self.proc)
        text = "\n".join(self.lines)
        m = re.search(r"^sent=(\d+) errors=(\d+) elapsed=([0-9.]+)s", text, re.M)
        if self.proc.returncode != 0 or m is None or not self.first_packet:
            raise BenchError(f"hep-loadgen failed ({self.proc.returncode}):\n{text[-2000:]}")
        if int(m.group(2)):
            self.lines.append(f"(hep-loadgen: {m.group(2)} send errors)")
        return int(m.group(1)), float(m.group(3))


def wait_idle(limit: float) -> None:
    """Waits (at most `limit` s) until the machine is idle: less than 15% of one core busy over
    one second. Other workloads on a shared machine would lower the figures."""
    deadline = time.monotonic() + limit
    said = False
    while True:
        b0, t0 = machine_busy_seconds(), time.monotonic()
        time.sleep(1.0)
        busy = (machine_busy_seconds() - b0) / (time.monotonic() - t0)
        if busy < 0.15:
            return
        if time.monotonic() >= deadline:
            log(f"      (machine still busy: {100 * busy:.0f}% CPU; running anyway)")
            return
        if not said:
            log(f"      (machine busy: {100 * busy:.0f}% CPU used by other processes; waiting up "
                f"to {limit:g} s for it to be idle)")
            said = True


def one_run(ctx: "Ctx", system: str, db: Db, rate: int, seconds: float, probe: bool) -> Run:
    """Throughput run (probe=False: wait until the backlog is stored) or zero-loss probe
    (probe=True: pass when every packet is stored within --drain-timeout of the last one)."""
    args = ctx.args
    if args.wait_idle > 0:
        wait_idle(args.wait_idle)
    run = Run(system=system, db=db.kind, rate=rate, seconds=seconds)
    ctx.seq += 1
    run_dir = ctx.work / f"{ctx.seq:03d}-{system}-{db.kind}-{rate}"
    run_dir.mkdir()
    url = db.fresh(system)
    server: Server | None = None
    try:
        if system == "ours":
            server = Ours(args, ctx.bin_dir, url, run_dir)
        else:
            children = 1 if db.kind == "sqlite" else args.kam_children
            server = Kamailio(args, db, url, run_dir, children)
        cpu0 = server.cpu()
        db_cpu0 = db.server_cpu()
        _, _, drops0 = udp_socket_state(server.hep_port)
        t_spawn, busy0, own0 = time.monotonic(), machine_busy_seconds(), reaped_children_cpu()
        gen = Loadgen(ctx.bin_dir, server.hep_port, rate, seconds, args)
        if not gen.started.wait(120):
            raise BenchError("hep-loadgen did not start sending within 120 s")
        t_first = gen.first_packet
        rows, last_rows = 0, -1
        t_change = t_first
        cpu_change, db_cpu_change = cpu0, db_cpu0
        busy_change = busy0
        t_end: float | None = None
        sent = 0
        stable_since = None
        while True:
            now = time.monotonic()
            if t_end is None and not gen.running():
                sent, gen_elapsed = gen.finish()
                t_end = min(t_first + gen_elapsed, time.monotonic())
            rows, extra = server.rows_and_backlog()
            server.sample_memory()
            _, rxq, drops = udp_socket_state(server.hep_port)
            run.kernel_drops = drops - drops0
            run.max_backlog = max(run.max_backlog, extra.get("backlog", 0))
            run.spooled = extra.get("spooled", 0)
            run.spool_peak_bytes = max(run.spool_peak_bytes, extra.get("spool_bytes", 0))
            if "received" in extra:
                run.received = extra["received"]
            if rows != last_rows:
                last_rows, t_change = rows, now
                cpu_change, db_cpu_change = server.cpu(), db.server_cpu()
                busy_change = machine_busy_seconds()
            if t_end is not None:
                since_end = now - t_end
                # Everything that reached the server is stored (or nothing moves any more).
                if system == "ours":
                    idle = rxq == 0 and rows >= (run.received or 0)
                else:
                    idle = rxq == 0
                if idle and rows == last_rows:
                    stable_since = stable_since or now
                else:
                    stable_since = None
                if rows >= sent:
                    break
                if probe:
                    if since_end > args.drain_timeout:
                        break
                    lost_at_socket = run.kernel_drops > 0 or (
                        run.received is not None and run.received < sent)
                    if lost_at_socket and stable_since and now - stable_since > 0.5:
                        # Failed already, and what reached the server is stored: no need to
                        # wait for the drain timeout.
                        break
                else:
                    # Kamailio: the socket queue is empty and the count has not moved for
                    # --settle s. Ours: every received packet is acknowledged, or nothing has
                    # been acknowledged for --stall s.
                    if system == "ours":
                        if stable_since and now - stable_since > 0.5:
                            break
                    elif stable_since and now - stable_since > args.settle:
                        break
                    if now - t_change > args.stall or since_end > args.max_drain:
                        run.notes.append(f"stopped waiting {now - t_change:.0f} s after the last "
                                         "progress with the backlog not stored")
                        break
                # Fine polling after the load: the time of the last row is known to this much.
                time.sleep(0.1 if system == "ours" or db.kind == "sqlite" else 0.2)
            else:
                time.sleep(0.5 if t_first + seconds - now > 0.7 else 0.1)
        run.sent = sent
        run.progress_rows = rows
        run.elapsed = t_change - t_first
        run.drained_after = max(0.0, t_change - (t_end or t_change))
        run.cpu_pct = 100 * (cpu_change - cpu0) / run.elapsed if run.elapsed > 0 else 0
        if db_cpu0 is not None and db_cpu_change is not None and run.elapsed > 0:
            run.db_cpu_pct = 100 * (db_cpu_change - db_cpu0) / run.elapsed
        # Everything else the machine did in [hep-loadgen start, last row]: another workload.
        window = t_change - t_spawn
        if window > 0:
            ours_cpu = (cpu_change - cpu0) + ((db_cpu_change or 0) - (db_cpu0 or 0))
            own = reaped_children_cpu() - own0  # hep-loadgen, this script, its clients
            run.other_cpu_pct = max(0.0, 100 * (busy_change - busy0 - ours_cpu - own) / window)
        run.rss_mib = server.peak_rss_mib()
        if system == "ours":
            assert isinstance(server, Ours)
            server.metrics()
            dropped = server.dropped()
            if dropped:
                run.notes.append("dropped after receive: " + ", ".join(f"{k}={v}" for k, v in dropped.items()))
        else:
            assert isinstance(server, Kamailio)
            run.notes.append(f"{len(server.pids)} processes, sum of their VmHWM "
                             f"{server.sum_hwm_mib():.0f} MiB")
        run.notes += [line for line in gen.lines if line.startswith("(hep-loadgen")]
        # Counted before the server stops: a stop may flush what it still holds.
        run.rows = db.count(url, None if system == "ours" else kam_tables())
        db.close(url)
        server.stop()
        problems = server.log_problems()
        if problems:
            run.notes.append(f"{server.name} log: " + " | ".join(problems))
        server = None
        if system == "ours" and run.rows != run.progress_rows:
            run.notes.append(f"rows in the database {run.rows} != records_acked {run.progress_rows}"
                             + (" (DUPLICATES)" if run.rows > run.progress_rows else ""))
        if probe:
            # `rows` is what was committed when the wait ended (drain timeout or all stored).
            if rows >= run.sent and run.rows == run.sent and (system != "ours" or run.spooled == 0):
                run.passed = True
            else:
                run.passed = False
                stored = min(rows, run.rows)
                if stored < run.sent:
                    if run.received is not None:
                        at_socket = run.sent - run.received
                        late = run.received - stored
                    else:  # Kamailio: what the kernel dropped never reached it
                        at_socket = run.kernel_drops
                        late = run.sent - stored - at_socket
                    where = []
                    if at_socket > 0:
                        where.append(f"{at_socket} dropped at the UDP socket")
                    if late > 0:
                        where.append(f"{late} not stored within {args.drain_timeout:g} s of the "
                                     "last packet")
                    run.reason = f"{run.sent - stored} missing: {', '.join(where)}"
                elif run.rows > run.sent:
                    run.reason = f"{run.rows - run.sent} rows more than sent"
                else:
                    run.reason = f"spooled {run.spooled} records"
        return run
    finally:
        if server is not None:
            server.stop()
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)


def measured_run(ctx: "Ctx", system: str, db: Db, rate: int, seconds: float, probe: bool) -> Run:
    """`one_run`, repeated (at most --retry-contested times) when other processes took more than
    25% of a core during it: on a shared machine such a run measures the other workload too."""
    for attempt in range(ctx.args.retry_contested + 1):
        run = one_run(ctx, system, db, rate, seconds, probe)
        if run.other_cpu_pct < 25 or attempt == ctx.args.retry_contested:
            return run
        log(f"      (other processes used {run.other_cpu_pct:.0f}% CPU during this run "
            f"({run.sustained:,.0f} rows/s): repeating it)")
    return run


def describe(run: Run) -> str:
    parts = [f"sent {run.sent}"]
    if run.received is not None:
        parts.append(f"received {run.received}")
    parts.append(f"rows {run.rows}")
    parts.append(f"lost {run.lost} ({100 * run.lost / run.sent:.1f}%)" if run.sent else "lost ?")
    if run.kernel_drops:
        parts.append(f"kernel drops {run.kernel_drops}")
    s = (f"{', '.join(parts)}; sustained {run.sustained:,.0f} rows/s over {run.elapsed:.1f} s "
         f"(stored {run.drained_after:.1f} s after the last packet); CPU {run.cpu_pct:.0f}%")
    if run.db_cpu_pct is not None:
        s += f", DB server CPU {run.db_cpu_pct:.0f}%"
    s += f"; peak RSS {run.rss_mib:.0f} MiB"
    if run.other_cpu_pct >= 10:
        s += f"; OTHER PROCESSES used {run.other_cpu_pct:.0f}% CPU (contested run)"
    if run.system == "ours":
        s += f"; max backlog {run.max_backlog}, spooled {run.spooled}"
        if run.spool_peak_bytes:
            s += f" (spool peak {run.spool_peak_bytes / 2**20:.0f} MiB)"
    return s


# ---------------------------------------------------------------------------------------------
# search for the highest zero-loss constant rate


def round_rate(r: float) -> int:
    """`r` to two significant digits (steps of 1-10%: 4,123 -> 4,100, 27,456 -> 27,000)."""
    if r <= 0:
        return 0
    step = 10 ** max(0, int(math.floor(math.log10(r))) - 1)
    return int(round(r / step) * step)


@dataclass
class Search:
    best: int | None = None  # highest passing rate
    lowest_fail: int | None = None
    runs: list[Run] = field(default_factory=list)
    note: str = ""

    def label(self) -> str:
        """The result: the rate, `≥ rate` when no higher rate failed, `< rate` when none passed."""
        if self.best is None:
            return f"< {self.lowest_fail:,}" if self.lowest_fail is not None else "—"
        if self.lowest_fail is None:
            return f"≥ {self.best:,}"
        return f"{self.best:,}"


def search_zero_loss(ctx: "Ctx", system: str, db: Db, hint: float) -> Search:
    a = ctx.args
    low, high = a.search_low, a.search_high
    s = Search()
    tried: set[int] = set()

    def probe(rate: int) -> bool:
        tried.add(rate)
        r = measured_run(ctx, system, db, rate, a.search_seconds, probe=True)
        s.runs.append(r)
        verdict = "PASS" if r.passed else f"FAIL: {r.reason}"
        log(f"      {rate:>6} pps x {a.search_seconds:g} s: {verdict}; {describe(r)}")
        for n in r.notes:
            log(f"             note: {n}")
        if r.passed:
            s.best = max(s.best or 0, rate)
        else:
            s.lowest_fail = min(s.lowest_fail or rate, rate)
        return bool(r.passed)

    rate = round_rate(min(max(hint, low), high))
    for _ in range(a.search_runs):
        probe(rate)
        lo = s.best if s.best is not None else None
        hi = s.lowest_fail
        if lo is not None and hi is not None:
            if hi <= lo * (1 + a.search_step / 100) or hi - lo <= 100:
                break
            nxt = round_rate(math.sqrt(lo * hi))
            if nxt in (lo, hi) or nxt in tried:
                # Two significant digits are too coarse here: use the exact midpoint.
                nxt = (lo + hi) // 2
                if nxt in tried or nxt in (lo, hi):
                    break
        elif lo is not None:  # only passes so far: widen upwards
            if lo >= high:
                break
            nxt = min(high, round_rate(lo * 1.25))
        else:  # only failures so far: widen downwards
            if hi is not None and hi <= low:
                break
            nxt = max(low, round_rate(hi / 1.25))
        if nxt in tried:
            break
        rate = nxt
    else:
        s.note = f"stopped after --search-runs {a.search_runs} runs"
    return s


# ---------------------------------------------------------------------------------------------
# main


@dataclass
class Ctx:
    args: argparse.Namespace
    bin_dir: Path
    work: Path
    seq: int = 0


def fmt_int(v: float | None) -> str:
    return "—" if v is None else f"{v:,.0f}"


def ratio(ours: float | None, kam: float | None) -> str:
    if ours is None or kam is None or kam == 0:
        return "—"
    return f"{ours / kam:.1f}×"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description="sipcapture up vs Kamailio 5.6: sustained rows/s, highest zero-loss rate, "
        "CPU and memory, per database (see the docstring at the top of this file).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--db", default="sqlite,postgres,mysql",
                   help="database kinds, comma-separated: sqlite, postgres, mysql")
    p.add_argument("--rate", type=int, default=40000, help="offered pps of the throughput run")
    p.add_argument("--seconds", type=float, default=10, help="length of the throughput run")
    p.add_argument("--search-seconds", type=float, default=10, help="length of each zero-loss run")
    p.add_argument("--no-search", action="store_true", help="skip the zero-loss rate search")
    p.add_argument("--search-low", type=int, default=500, help="lowest rate the search tries")
    p.add_argument("--search-high", type=int, default=60000, help="highest rate the search tries")
    p.add_argument("--search-runs", type=int, default=7, help="most runs per search")
    p.add_argument("--search-step", type=float, default=5,
                   help="stop when the failing rate is within this %% of the passing one")
    p.add_argument("--drain-timeout", type=float, default=2.0,
                   help="zero loss: every packet stored within this many s of the last one")
    p.add_argument("--stall", type=float, default=15,
                   help="throughput run: give up when no row was stored for this many s")
    p.add_argument("--settle", type=float, default=2.0,
                   help="Kamailio throughput run: done when the count is unchanged this long "
                   "with its socket queue empty")
    p.add_argument("--max-drain", type=float, default=900,
                   help="throughput run: most seconds to wait after the last packet")
    p.add_argument("--senders", type=int, default=2, help="hep-loadgen --senders")
    p.add_argument("--size", type=int, default=800, help="hep-loadgen --size (bytes per packet)")
    p.add_argument("--systems", default="ours,kamailio", help="ours, kamailio or both")
    p.add_argument("--kam-children", type=int, default=2,
                   help="Kamailio children on PostgreSQL / MariaDB (SQLite: always 1)")
    p.add_argument("--pg-url", default="postgres://postgres@127.0.0.1:5432",
                   help="PostgreSQL server (user, password, host, port; the database is --db-name)")
    p.add_argument("--mysql-url", default="mysql://root@127.0.0.1:3306",
                   help="MariaDB / MySQL server (user, password, host, port)")
    p.add_argument("--db-name", default="loadbench",
                   help="database dropped and created for each run (PostgreSQL, MariaDB)")
    p.add_argument("--schema", choices=["homer5", "homer7"], default="homer5",
                   help="our storer's tables: HOMER 5 (default) or HOMER 7 (hep_proto_*; ours only)")
    p.add_argument("--up-arg", action="append", default=[],
                   help="extra `sipcapture up` argument (repeatable; --up-arg=--set --up-arg=K=V)")
    p.add_argument("--wait-idle", type=float, default=300,
                   help="before each run, wait up to this many s for the machine to be idle "
                   "(0: don't)")
    p.add_argument("--retry-contested", type=int, default=2,
                   help="repeat a run at most this many times when other processes used more "
                   "than 25%% of a core during it")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, configs)")
    a = p.parse_args(argv)
    a.db = [d.strip() for d in a.db.split(",") if d.strip()]
    for d in a.db:
        if d not in DBS:
            p.error(f"--db: unknown database kind {d!r} (sqlite, postgres, mysql)")
    a.systems = [s.strip() for s in a.systems.split(",") if s.strip()]
    for s in a.systems:
        if s not in ("ours", "kamailio"):
            p.error(f"--systems: unknown system {s!r} (ours, kamailio)")
    if a.search_low <= 0 or a.search_high < a.search_low:
        p.error("--search-low must be > 0 and <= --search-high")
    return a


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    bin_dir = Path(os.environ.get("BIN", ROOT / "target" / "release"))
    for b in ("sipcapture", "hep-loadgen"):
        if not os.access(bin_dir / b, os.X_OK):
            raise BenchError(f"{bin_dir / b} not found: build it (cargo build --release -p "
                             "sipcapture-cli --bin sipcapture -p sipcapture-collector --bin "
                             "hep-loadgen) or point BIN at a directory holding both")
    systems = list(args.systems)
    kam_why = None
    if "kamailio" in systems:
        found = kamailio_paths()
        if isinstance(found, str):
            kam_why = found
            systems.remove("kamailio")
    work = Path(tempfile.mkdtemp(prefix="load_compare."))
    ctx = Ctx(args=args, bin_dir=bin_dir, work=work)

    version = subprocess.run([str(bin_dir / "sipcapture"), "--version"], capture_output=True,
                             text=True).stdout.strip()
    log("# Load benchmark: sipcapture up vs Kamailio (storer/benches/load_compare.py)")
    log(f"command: {' '.join([sys.argv[0], *argv])}  (BIN={bin_dir})")
    log(f"machine: {os.cpu_count()} CPUs, {os.uname().sysname} {os.uname().release}; "
        f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}")
    log(f"sipcapture: {version}")
    if "kamailio" in systems:
        kv = subprocess.run([kamailio_paths()[0], "-v"], capture_output=True, text=True).stdout
        log(f"kamailio: {kv.splitlines()[0] if kv else '?'}")
    elif kam_why:
        log(f"Kamailio: not measured: {kam_why}")
    log(f"load: {args.size}-byte HEP3 INVITEs, distinct Call-IDs, UDP, hep-loadgen --senders "
        f"{args.senders}; throughput run {args.rate} pps x {args.seconds:g} s; zero-loss search "
        + ("skipped" if args.no_search else
           f"{args.search_seconds:g} s runs in {args.search_low}..{args.search_high} pps, "
           f"drain timeout {args.drain_timeout:g} s")
        + f"; work dir {work}")

    results: dict[str, dict[str, tuple[Run | None, Search | None, str]]] = {}
    try:
        for kind in args.db:
            db = DBS[kind](args, work)
            log("")
            log(f"## {DB_LABEL[kind]}")
            results[kind] = {}
            try:
                db.check()
                v = db.version()
                if v:
                    log(f"server: {v}")
            except BenchError as e:
                log(f"skipped: {e}")
                for system in systems:
                    results[kind][system] = (None, None, str(e))
                continue
            for system in systems:
                label = "sipcapture up" if system == "ours" else "Kamailio"
                try:
                    log(f"  {label}: throughput, {args.rate} pps x {args.seconds:g} s")
                    run = measured_run(ctx, system, db, args.rate, args.seconds, probe=False)
                    log(f"    {describe(run)}")
                    for n in run.notes:
                        log(f"    note: {n}")
                    search = None
                    if not args.no_search:
                        log(f"  {label}: highest zero-loss constant rate "
                            f"({args.search_seconds:g} s runs)")
                        search = search_zero_loss(ctx, system, db, run.sustained)
                        log(f"    => {search.label()} pps"
                            + (f" ({search.note})" if search.note else ""))
                    results[kind][system] = (run, search, "")
                except BenchError as e:
                    log(f"    error: {e}")
                    results[kind][system] = (None, None, str(e).splitlines()[0])
            if not args.keep:
                try:
                    db.drop()
                except BenchError as e:
                    log(f"  (could not drop the database: {e})")
    finally:
        PROCS.stop_all()
        if args.keep:
            log(f"\n(work directory kept: {work})")
        else:
            shutil.rmtree(work, ignore_errors=True)

    log("")
    log("## Summary")
    zero_loss = "" if args.no_search else (
        "Zero-loss rate: highest constant rate whose every packet was stored within "
        f"{args.drain_timeout:g} s of the last one ({args.search_seconds:g} s runs; sipcapture "
        "up: and nothing spooled). ")
    log(f"Throughput run: {args.rate} pps offered for {args.seconds:g} s; sustained = rows / (last "
        f"row − first packet). {zero_loss}CPU: server process(es), 100% = one core. "
        "Peak RSS: sipcapture up VmHWM; Kamailio peak of Σ PSS over its processes.")
    for kind, per in results.items():
        log("")
        log(f"### {DB_LABEL[kind]}")
        log("")
        log("| figure | Kamailio 5.6 | sipcapture up | sipcapture / Kamailio |")
        log("|---|---|---|---|")
        ours_run, ours_search, ours_err = per.get("ours", (None, None, "not run"))
        kam_run, kam_search, kam_err = per.get("kamailio", (None, None, kam_why or "not run"))
        if kam_why and "kamailio" in args.systems:
            kam_err = "not installed"

        def cell(run, value):
            return value(run) if run is not None else "—"

        def err_cell(run, err, value):
            return value(run) if run is not None else (f"— ({err})" if err else "—")

        log(f"| sustained rows/s at {args.rate:,} pps offered | "
            f"{err_cell(kam_run, kam_err, lambda r: fmt_int(r.sustained))} | "
            f"{err_cell(ours_run, ours_err, lambda r: fmt_int(r.sustained))} | "
            f"{ratio(ours_run and ours_run.sustained, kam_run and kam_run.sustained)} |")
        log(f"| lost at {args.rate:,} pps (of sent) | "
            f"{cell(kam_run, lambda r: f'{100 * r.lost / max(r.sent, 1):.1f}%')} | "
            f"{cell(ours_run, lambda r: f'{100 * r.lost / max(r.sent, 1):.1f}%')} | |")
        if not args.no_search:
            kz = kam_search.label() if kam_search else "—"
            oz = ours_search.label() if ours_search else "—"
            log(f"| highest zero-loss constant rate, pps | {kz} | {oz} | "
                f"{ratio(ours_search and ours_search.best, kam_search and kam_search.best)} |")
        log(f"| CPU % (throughput run) | {cell(kam_run, lambda r: f'{r.cpu_pct:.0f}%')} | "
            f"{cell(ours_run, lambda r: f'{r.cpu_pct:.0f}%')} | "
            f"{ratio(ours_run and ours_run.cpu_pct, kam_run and kam_run.cpu_pct)} |")
        if kind != "sqlite":
            log(f"| DB server CPU % (throughput run) | "
                f"{cell(kam_run, lambda r: fmt_int(r.db_cpu_pct) + '%')} | "
                f"{cell(ours_run, lambda r: fmt_int(r.db_cpu_pct) + '%')} | |")
        log(f"| rows per server CPU-second | "
            f"{cell(kam_run, lambda r: fmt_int(r.sustained * 100 / r.cpu_pct if r.cpu_pct else None))} | "
            f"{cell(ours_run, lambda r: fmt_int(r.sustained * 100 / r.cpu_pct if r.cpu_pct else None))} | "
            f"{ratio(ours_run and ours_run.cpu_pct and ours_run.sustained / ours_run.cpu_pct, kam_run and kam_run.cpu_pct and kam_run.sustained / kam_run.cpu_pct)} |")
        peak = lambda runs: max((r.rss_mib for r in runs), default=None)  # noqa: E731
        kam_all = ([kam_run] if kam_run else []) + (kam_search.runs if kam_search else [])
        ours_all = ([ours_run] if ours_run else []) + (ours_search.runs if ours_search else [])
        kp, op = peak(kam_all), peak(ours_all)
        log(f"| peak RSS, MiB (all runs) | {fmt_int(kp)} | {fmt_int(op)} | {ratio(op, kp)} |")
    contested = [
        (r.other_cpu_pct, f"{r.system}/{r.db} {r.rate} pps")
        for per in results.values()
        for run, search, _ in per.values()
        for r in ([run] if run else []) + (search.runs if search else [])
        if r.other_cpu_pct >= 10
    ]
    if contested:
        worst = max(contested)
        log("")
        log(f"WARNING: in {len(contested)} run(s) other processes used ≥10% CPU (worst "
            f"{worst[0]:.0f}% in {worst[1]}): those figures are low; rerun on an idle machine.")
    log("")
    log(f"total time {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        sys.exit(main(sys.argv[1:]))
    except BenchError as e:
        PROCS.stop_all()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        PROCS.stop_all()
        sys.exit(130)
