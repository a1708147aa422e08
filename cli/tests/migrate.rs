//! `sipcapture migrate` on a realistic HOMER 5 kamailio.cfg and heplify-server.toml: the real
//! binary translates them, `sipcapture up --check-config` accepts the result, and `up`'s own
//! loader reads the values the sources meant; the untranslated items are listed by line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use sipcapture_cli::up::{self, UpConfig, UpFlags};
use sipcapture_runtime::config::Sources;
use sipcapture_storer::config::{CaptureModes, RouteRuleConfig};

const BIN: &str = env!("CARGO_BIN_EXE_sipcapture");

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../integration-tests/testdata/migrate")
        .join(name)
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn sipcapture(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Migrates `source`, checks the result with `up --check-config`, loads it with `up`'s loader.
fn migrate_and_load(source: &Path, dir: &Path) -> (Run, UpConfig) {
    let run = sipcapture(&["migrate", source.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let out = dir.join("migrated.toml");
    std::fs::write(&out, &run.stdout).unwrap();
    let check = sipcapture(&["up", "--config", out.to_str().unwrap(), "--check-config"]);
    assert_eq!(
        check.code,
        Some(0),
        "up refused the migrated config:\n{}\n{}",
        check.stderr,
        run.stdout
    );
    assert!(check.stdout.contains("config ok"), "{}", check.stdout);
    let sources = Sources {
        file: Some(out),
        ..Sources::default()
    };
    let config = up::load(sources, &UpFlags::default()).unwrap();
    (run, config)
}

fn lines_with(stderr: &str, file: &str) -> Vec<usize> {
    stderr
        .lines()
        .filter_map(|l| {
            l.strip_prefix(file)?
                .strip_prefix(':')?
                .split(':')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Every `(line, text)` is listed on stderr as `FILE:LINE: TEXT...`.
fn assert_listed(stderr: &str, file: &str, items: &[(usize, &str)]) {
    for (line, text) in items {
        let expected = format!("{file}:{line}: {text}");
        assert!(
            stderr.lines().any(|l| l.starts_with(&expected)),
            "missing {expected:?} in:\n{stderr}"
        );
    }
}

fn route<'a>(routes: &'a [RouteRuleConfig], table: &str) -> Vec<&'a RouteRuleConfig> {
    routes
        .iter()
        .filter(|r| r.table.as_deref() == Some(table))
        .collect()
}

#[test]
fn homer5_kamailio_cfg_becomes_an_up_config() {
    let dir = tempfile::tempdir().unwrap();
    let source = testdata("kamailio.cfg");
    let (run, cfg) = migrate_and_load(&source, dir.path());

    // modparams, with #!define / #!substdef / #!ifdef resolved.
    let s = &cfg.storer;
    assert_eq!(s.db_url, "mysql://homer_user:s3cr3t@10.20.0.5/homer_data");
    assert_eq!(s.insert_retries, 5);
    assert_eq!(s.insert_retry_timeout, 10);
    assert_eq!(s.db_insert_mode, 1);
    assert_eq!(s.table_name, "sip_capture");
    assert_eq!(s.capture_node, "homer-homer_user");
    assert!(s.service.capture_on);
    assert!(
        !s.homer5_split,
        "the script's rules decide every SIP record"
    );
    assert_eq!(
        s.capture_mode,
        CaptureModes::Kamailio(vec![
            "archive=>db_url=mysql://homer_user@10.20.0.5/homer_archive;\
             table_name=archive_a|archive_b;mt_mode=hash;hash_source=call_id"
                .to_owned()
        ])
    );
    let c = &cfg.collector;
    assert_eq!(c.hep_listen, "10.20.0.10:9060".parse().unwrap());
    assert!(c.hep_udp && c.hep_tcp);
    assert!(c.hep_capture_on);
    assert_eq!(c.capture_node, "homer-homer_user");
    assert_eq!(c.callid_aleg_header, "X-CID;X-BroadWorks-Correlation-Info");
    assert!(
        !c.raw_moni_capture_on,
        "WITH_RAW is not defined in the file"
    );
    assert!(c.raw_socket_listen.is_empty());

    // The routing script: replies first (each rule needs a status), then requests.
    let routes = &s.route;
    assert!(routes.iter().all(|r| r.matches.payload_type == [1]));
    let scanner = routes
        .iter()
        .position(|r| r.drop && !r.matches.header.is_empty())
        .expect("the friendly-scanner drop");
    let h = &routes[scanner].matches.header[0];
    assert_eq!(h.name, "user_agent");
    assert_eq!(
        h.regex.as_deref(),
        Some("(?i)friendly-scanner|sipvicious|sipcli")
    );
    assert_eq!(routes[scanner].matches.method, ["INVITE", "REGISTER"]);
    let options = routes
        .iter()
        .position(|r| r.drop && r.matches.method == ["OPTIONS"])
        .expect("the OPTIONS exit");
    let register = routes
        .iter()
        .position(|r| {
            r.matches.method == ["REGISTER"]
                && r.table.as_deref() == Some("sip_capture_registration_%Y%m%d")
        })
        .expect("REGISTER → registration");
    assert!(
        scanner < register,
        "the scanner drop comes before the REGISTER store"
    );
    let calls = route(routes, "sip_capture_call_%Y%m%d");
    let call_methods: Vec<&str> = calls
        .iter()
        .filter(|r| r.matches.reply_code.is_empty())
        .flat_map(|r| r.matches.method.iter().map(String::as_str))
        .collect();
    assert_eq!(
        call_methods,
        ["INVITE", "UPDATE", "BYE", "ACK", "PRACK", "REFER", "CANCEL"]
    );
    let reply_auth = routes
        .iter()
        .position(|r| r.matches.reply_code == ["407", "401"])
        .expect("the 401/407 rule of onreply_route");
    assert_eq!(
        routes[reply_auth].table.as_deref(),
        Some("sip_capture_registration_%Y%m%d")
    );
    assert!(reply_auth < options);
    let rest = routes.last().unwrap();
    assert_eq!(rest.table.as_deref(), Some("sip_capture_rest_%Y%m%d"));
    assert!(rest.matches.method.is_empty() && rest.matches.reply_code.is_empty());

    // What was not translated, with line numbers.
    let file = source.display().to_string();
    let listed = lines_with(&run.stderr, &file);
    assert_listed(
        &run.stderr,
        &file,
        &[
            (21, "#!ifdef WITH_HOMER_GEO"),
            (26, "debug=1: Kamailio core setting"),
            (43, "loadmodule \"pv.so\""),
            (
                55,
                "modparam(\"sqlops\", \"sqlcon\"): module sqlops: not applicable",
            ),
            (69, "#!ifdef WITH_RAW"),
            (
                76,
                "include_file \"homer-extra.cfg\": included files are not read",
            ),
            (81, "if ($sht(a=>method::all) == $null)"),
            (87, "sql_query(\"cb\""),
            (
                102,
                "if (is_method(\"NOTIFY\") && $hdr(Event) =~ \"call-info\")",
            ),
            (141, "event_route[sipcapture:request]"),
        ],
    );
    assert!(listed.windows(2).all(|w| w[0] <= w[1]), "in line order");
    for translated in [58, 59, 61, 63, 68, 36] {
        assert!(
            !listed.contains(&translated),
            "line {translated} was translated"
        );
    }
    assert!(
        run.stdout.contains("# line 58"),
        "values name their source line"
    );
}

#[test]
fn heplify_server_toml_becomes_an_up_config() {
    let dir = tempfile::tempdir().unwrap();
    let source = testdata("heplify-server.toml");
    let (run, cfg) = migrate_and_load(&source, dir.path());

    let s = &cfg.storer;
    assert_eq!(
        s.db_url,
        "postgres://homer:p%40ss%3Aword@db.example.net:5432/homer_data?sslmode=require"
    );
    assert_eq!(
        s.schema,
        sipcapture_storer::pipeline::mode::StorageSchema::Homer7
    );
    assert_eq!(s.retention_days, 30, "the longest of DBDropDays*");
    assert!(s.dedup);
    assert_eq!(s.partition_sip_minutes, 60);
    assert_eq!(s.partition_qos_minutes, 360);
    assert_eq!(s.partition_log_minutes, 120);
    assert_eq!(s.homer7_custom_fields, ["X-CustomerIP", "X-Billing"]);
    assert_eq!(s.route.len(), 1);
    assert!(s.route[0].drop);
    assert_eq!(s.route[0].matches.cseq_method, ["OPTIONS", "NOTIFY"]);
    let c = &cfg.collector;
    assert_eq!(c.hep_listen, "0.0.0.0:9060".parse().unwrap());
    assert!(c.hep_udp && c.hep_tcp);
    assert_eq!(
        c.hep_tls_listen, None,
        "TLS needs a certificate: written commented out"
    );
    assert!(run.stdout.contains("# hep_tls_listen = \"0.0.0.0:9061\""));
    assert_eq!(c.callid_aleg_header, "X-CID;P-Charging-Vector");
    assert_eq!(c.custom_field1_header, "X-CustomerIP");
    assert_eq!(c.custom_field2_header, "X-Billing");
    assert_eq!(cfg.metrics_listen, Some("0.0.0.0:9096".parse().unwrap()));
    assert_eq!(cfg.log_level, "warn");

    let file = source.display().to_string();
    assert_listed(
        &run.stderr,
        &file,
        &[
            (4, "HEPTLSAddr = \"0.0.0.0:9061\": written commented out"),
            (8, "LokiURL = \"\": not applicable: Loki output"),
            (26, "DBConfTable = \"homer_config\": not applicable"),
            (
                35,
                "DBDropDays = 14: one retention for every table here: retention_days = 30",
            ),
            (37, "DBDropDaysRegister = 2"),
            (
                43,
                "DBMaxSize = \"30MB\": not applicable: size-based dropping",
            ),
            (47, "AlegIDs entry"),
            (
                57,
                "ConfigHTTPAddr = \"\": not applicable: the web configuration page",
            ),
            (60, "TLSCertFolder"),
        ],
    );
    let listed = lines_with(&run.stderr, &file);
    for translated in [
        2, 3, 16, 19, 20, 21, 22, 23, 24, 25, 32, 33, 34, 44, 45, 49, 53,
    ] {
        assert!(
            !listed.contains(&translated),
            "line {translated} was translated"
        );
    }
}

#[test]
fn unknown_unreadable_and_forced_formats_have_their_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("nginx.conf");
    std::fs::write(&other, "server {\n  listen 80;\n}\n").unwrap();
    let run = sipcapture(&["migrate", other.to_str().unwrap()]);
    assert_eq!(run.code, Some(65), "{}", run.stderr);
    assert!(run.stderr.contains("--from"), "{}", run.stderr);
    assert!(run.stdout.is_empty());

    let missing = dir.path().join("nope.cfg");
    let run = sipcapture(&["migrate", missing.to_str().unwrap()]);
    assert_eq!(run.code, Some(66), "{}", run.stderr);
    assert!(run.stderr.contains("nope.cfg"), "{}", run.stderr);

    // kamailio.cfg is not TOML: forcing heplify-server fails as an unknown format.
    let cfg = testdata("kamailio.cfg");
    let run = sipcapture(&["migrate", "--from", "heplify-server", cfg.to_str().unwrap()]);
    assert_eq!(run.code, Some(65), "{}", run.stderr);

    let run = sipcapture(&["migrate", "--from", "asterisk", cfg.to_str().unwrap()]);
    assert_eq!(run.code, Some(2), "a usage error: {}", run.stderr);

    // A heplify-server file forced as Kamailio is read as such (nothing recognised, listed).
    let toml = dir.path().join("h.toml");
    std::fs::write(&toml, "HEPAddr = \"127.0.0.1:9060\"\n").unwrap();
    let run = sipcapture(&["migrate", "--from", "kamailio", toml.to_str().unwrap()]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(run.stderr.contains(":1: HEPAddr="), "{}", run.stderr);
}

#[test]
fn migrate_help_documents_formats_and_exit_codes() {
    let run = sipcapture(&["migrate", "--help"]);
    assert_eq!(run.code, Some(0));
    for text in [
        "kamailio.cfg",
        "heplify-server.toml",
        "--from",
        "stderr",
        "65",
        "66",
        "docs/MIGRATING.md",
    ] {
        assert!(
            run.stdout.contains(text),
            "{text:?} not in:\n{}",
            run.stdout
        );
    }
}
