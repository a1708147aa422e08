//! `sipcapture calls` and `sipcapture flow` on what `sipcapture import` stored from real
//! captures, on SQLite, PostgreSQL and MariaDB, HOMER 5 and HOMER 7 tables:
//!
//! - `testdata/gen_hep3_kamailio_siptrace.pcap`: Kamailio 5.6 siptrace HEP3 of 10 sipp calls
//!   through a proxy (uac 127.0.0.1:5070 → Kamailio :5060 → uas :5080): per call INVITE, 180,
//!   200, ACK, BYE, 200 on each leg, 12 messages (counted in the capture with tshark and
//!   `grep -c Call-ID`);
//! - `testdata/corpus/pcpp_sip_resp.pcap` (PcapPlusPlus): replies only, among them 401, 503
//!   and 504 final replies.
//!
//! The flow of one call is compared with a golden text (`testdata/flow_hep3.golden`: three
//! columns in the order the first INVITE crosses them, 12 arrows, offsets from the capture's
//! own timestamps), the same on every database; the HTML page has one SVG arrow per message.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sipcapture_integration_tests::storer::{Engine, TestDb};
use sipcapture_integration_tests::{Sandbox, bin_path, on_every_engine};

on_every_engine!(homer5_calls_and_flow, homer7_calls_and_flow);

const CALL: &str = "1-10397@127.0.0.1";
const GOLDEN: &str = include_str!("../testdata/flow_hep3.golden");

fn testdata(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    [dir.join(name), dir.join("corpus").join(name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap()
}

/// Runs `sipcapture ARGS` in the sandbox; returns stdout, failing on a non-zero exit.
fn sipcapture(sandbox: &Sandbox, args: &[&str]) -> String {
    let out = Command::new(bin_path("sipcapture").unwrap())
        .args(args)
        .current_dir(sandbox.path())
        .env_remove("SIPCAPTURE_DB_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "sipcapture {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn calls_json(sandbox: &Sandbox, db: &str, extra: &[&str]) -> Vec<Value> {
    let mut args = vec!["calls", "--db", db, "--output", "json"];
    if !extra.contains(&"--limit") {
        args.extend_from_slice(&["--limit", "100"]);
    }
    args.extend_from_slice(extra);
    let out: Value = serde_json::from_str(&sipcapture(sandbox, &args)).unwrap();
    out["calls"].as_array().unwrap().clone()
}

async fn homer5_calls_and_flow(engine: Engine) {
    scenario(engine, &[]).await;
}

async fn homer7_calls_and_flow(engine: Engine) {
    scenario(engine, &["--set", "schema=homer7"]).await;
}

async fn scenario(engine: Engine, schema: &[&str]) {
    let sandbox = Sandbox::new().unwrap();
    let Some(db) = TestDb::create(engine, &sandbox, "view").await.unwrap() else {
        eprintln!("skipped: {engine:?} not configured");
        return;
    };
    for file in ["gen_hep3_kamailio_siptrace.pcap", "pcpp_sip_resp.pcap"] {
        let path = testdata(file).display().to_string();
        let mut args = vec!["import", path.as_str(), "--db", db.url.as_str(), "--quiet"];
        args.extend_from_slice(schema);
        let summary = sipcapture(&sandbox, &args);
        assert!(summary.contains("imported"), "{summary}");
    }

    // Every call, newest first, with its counts and final reply.
    let calls = calls_json(&sandbox, &db.url, &[]);
    let sipp: Vec<&Value> = calls
        .iter()
        .filter(|c| c["callid"].as_str().unwrap().ends_with("-10397@127.0.0.1"))
        .collect();
    assert_eq!(sipp.len(), 10, "{calls:#?}");
    for call in &sipp {
        assert_eq!(call["messages"], 12, "{call}");
        assert_eq!(call["method"], "INVITE", "{call}");
        assert_eq!(call["final_reply"], "200 OK", "{call}");
        assert_eq!(call["final_code"], 200, "{call}");
        assert_eq!(call["from_user"], "sipp", "{call}");
        assert_eq!(call["to_user"], "service", "{call}");
    }
    let firsts: Vec<i64> = calls
        .iter()
        .map(|c| c["first_us"].as_i64().unwrap())
        .collect();
    let lasts: Vec<i64> = calls
        .iter()
        .map(|c| c["last_us"].as_i64().unwrap())
        .collect();
    assert!(
        lasts.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {firsts:?}"
    );
    // The replies-only capture: an INVITE answered "200 Ok", REGISTERs answered 401/503/504
    // (registration table: found by method or Call-ID, not in the default list of calls).
    let others: Vec<&Value> = calls
        .iter()
        .filter(|c| !c["callid"].as_str().unwrap().ends_with("-10397@127.0.0.1"))
        .collect();
    assert_eq!(others.len(), 1, "{others:#?}");
    assert_eq!(others[0]["final_reply"], "200 Ok");
    for (code, reply) in [
        ("503", "503 Service Unavailable"),
        ("504", "504 Server Timeout"),
    ] {
        let found = calls_json(&sandbox, &db.url, &["--method", code]);
        assert_eq!(found.len(), 1, "{code}: {found:#?}");
        assert_eq!(found[0]["final_reply"], reply);
        assert_eq!(found[0]["method"], "REGISTER");
    }
    let challenged = calls_json(&sandbox, &db.url, &["--callid", "434981653"]);
    assert_eq!(challenged[0]["final_code"], 401, "{challenged:#?}");

    // Filters: user, Call-ID, method, address, time, paging.
    assert_eq!(
        calls_json(&sandbox, &db.url, &["--user", "service"]).len(),
        10
    );
    let one = calls_json(&sandbox, &db.url, &["--callid", CALL]);
    assert_eq!(one.len(), 1);
    assert_eq!(one[0]["callid"], CALL);
    assert_eq!(
        calls_json(&sandbox, &db.url, &["--method", "BYE"]).len(),
        10
    );
    assert_eq!(
        calls_json(
            &sandbox,
            &db.url,
            &["--ip", "127.0.0.1", "--user", "service"]
        )
        .len(),
        10
    );
    assert!(calls_json(&sandbox, &db.url, &["--user", "nobody-here"]).is_empty());
    assert!(calls_json(&sandbox, &db.url, &["--from", "2100-01-01"]).is_empty());
    let page1 = calls_json(&sandbox, &db.url, &["--user", "service", "--limit", "4"]);
    let page2 = calls_json(
        &sandbox,
        &db.url,
        &["--user", "service", "--limit", "4", "--offset", "4"],
    );
    assert_eq!((page1.len(), page2.len()), (4, 4));
    assert!(
        page1
            .iter()
            .all(|a| page2.iter().all(|b| a["callid"] != b["callid"]))
    );
    let table = sipcapture(&sandbox, &["calls", "--db", &db.url, "--user", "service"]);
    assert!(table.starts_with("TIME (UTC)"), "{table}");
    assert_eq!(table.lines().count(), 11, "{table}");
    assert!(table.contains("sipp -> service  200 OK"), "{table}");

    // The ladder: golden text, the same on every database and schema.
    let text = sipcapture(&sandbox, &["flow", CALL, "--db", &db.url]);
    assert_eq!(text, GOLDEN, "\n{text}");
    let html_file = sandbox.path().join("flow.html");
    let html_arg = html_file.display().to_string();
    sipcapture(
        &sandbox,
        &[
            "flow",
            CALL,
            "--db",
            &db.url,
            "--html",
            &html_arg,
            "--related",
        ],
    );
    let html = std::fs::read_to_string(&html_file).unwrap();
    assert_eq!(html.matches("<g class=\"arrow").count(), 12, "{html}");
    assert_eq!(html.matches("<pre class=\"msg\"").count(), 12);
    assert!(
        html.contains("INVITE sip:service@127.0.0.1"),
        "the messages are in the page"
    );
    assert!(!html.contains("<script"), "no script");
    let missing = sipcapture(&sandbox, &["flow", "no-such-call", "--db", &db.url]);
    assert!(missing.starts_with("no messages stored"), "{missing}");
    db.cleanup().await.unwrap();
}

/// `GET path` on `addr` with an optional `Authorization` value: (status code, body).
fn http_get(addr: std::net::SocketAddr, path: &str, auth: Option<&str>) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Debian's Chromium, when installed (`.ci/run` installs it; without it the browser part is
/// skipped outside CI and fails in CI).
fn chromium() -> Option<PathBuf> {
    let found = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists());
    assert!(
        found.is_some() || std::env::var("CI").is_err(),
        "CI=true but chromium is not installed"
    );
    found
}

/// Headless Chromium's DOM of `url` after it loaded (and its screenshot into `png`).
fn browse(browser: &Path, sandbox: &Sandbox, url: &str, png: Option<&Path>) -> String {
    let profile = sandbox.path().join("chromium-profile");
    let mut args = vec![
        "--headless".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--no-first-run".to_owned(),
        format!("--user-data-dir={}", profile.display()),
        "--window-size=1280,900".to_owned(),
    ];
    match png {
        Some(png) => args.push(format!("--screenshot={}", png.display())),
        None => args.push("--dump-dom".to_owned()),
    }
    args.push(url.to_owned());
    let out = Command::new(browser).args(&args).output().unwrap();
    assert!(
        out.status.success(),
        "chromium {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `sipcapture up --set web_listen=…` serves the search page and the ladder: checked over
/// HTTP (auth, headers, escaping) and in a real browser (headless Chromium: the DOM of the
/// list after a search, of the ladder after opening a call, and a screenshot kept in
/// `target/test-artefacts/web_ladder.png`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_page_in_a_browser() {
    let sandbox = Sandbox::new().unwrap();
    let db = format!(
        "sqlite://{}",
        sandbox.path().join("sipcapture.db").display()
    );
    let path = testdata("gen_hep3_kamailio_siptrace.pcap")
        .display()
        .to_string();
    sipcapture(&sandbox, &["import", &path, "--db", &db, "--quiet"]);

    // A token guards the page like gRPC.
    let port = sipcapture_integration_tests::free_port().unwrap();
    let web = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let listen = format!("web_listen={web}");
    let mut up = sandbox
        .up(&["--set", &listen, "--set", "auth_token=s3cret"])
        .await
        .unwrap();
    let (status, _) = http_get(web, "/", None);
    assert_eq!(status, 401);
    let (status, _) = http_get(web, "/", Some("Basic dXNlcjp3cm9uZw=="));
    assert_eq!(status, 401);
    // "user:s3cret"
    let (status, body) = http_get(web, "/?user=service", Some("Basic dXNlcjpzM2NyZXQ="));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.matches("<tr class=\"call\">").count(), 10, "{body}");
    let (status, body) = http_get(web, "/?from=someday", Some("Bearer s3cret"));
    assert_eq!(status, 400);
    assert!(body.contains("cannot read the time"), "{body}");
    let (status, body) = http_get(
        web,
        "/call?callid=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        Some("Bearer s3cret"),
    );
    assert_eq!(status, 200);
    assert!(
        !body.contains("<script>") && body.contains("&lt;script&gt;"),
        "{body}"
    );
    up.process
        .terminate(std::time::Duration::from_secs(10))
        .unwrap();

    // Without a token, on loopback: the browser.
    let mut up = sandbox.up(&["--set", &listen]).await.unwrap();
    let Some(browser) = chromium() else {
        eprintln!("chromium not installed: browser part skipped");
        up.process
            .terminate(std::time::Duration::from_secs(10))
            .unwrap();
        return;
    };
    let home = browse(&browser, &sandbox, &format!("http://{web}/"), None);
    assert!(home.contains("<form"), "{home}");
    let list = browse(
        &browser,
        &sandbox,
        &format!("http://{web}/?from=&to=&user=service&callid=&method=&ip="),
        None,
    );
    assert_eq!(list.matches("<tr class=\"call\">").count(), 10, "{list}");
    let first = list
        .split("class=\"open\" href=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .replace("&amp;", "&");
    let ladder = browse(&browser, &sandbox, &format!("http://{web}{first}"), None);
    assert_eq!(ladder.matches("class=\"arrow").count(), 12, "{ladder}");
    assert_eq!(ladder.matches("<line class=\"col\"").count(), 3, "{ladder}");
    let artefacts = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-artefacts");
    std::fs::create_dir_all(&artefacts).unwrap();
    let png = artefacts.join("web_ladder.png");
    let _ = std::fs::remove_file(&png);
    browse(
        &browser,
        &sandbox,
        &format!("http://{web}{first}#m0"),
        Some(&png),
    );
    let size = std::fs::metadata(&png).unwrap().len();
    assert!(size > 10_000, "screenshot of {size} bytes");
    up.process
        .terminate(std::time::Duration::from_secs(10))
        .unwrap();
}
