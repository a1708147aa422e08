//! Capture modes and routing rules in config: both accepted shapes of `capture_mode` (TOML tables
//! and Kamailio's one-line syntax, trailing `;` included), and start-up errors that name the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn check(toml_text: &str, sets: &[&str]) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("storer.toml");
    std::fs::write(&path, toml_text).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipcapture-storer"));
    cmd.arg("--check-config")
        .arg("--config")
        .arg(&path)
        .env_remove("RUST_LOG");
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn toml_tables_and_rules_are_accepted() {
    let (ok, text) = check(
        r#"
db_url = "sqlite://main.db"
retention_days = 7

[capture_mode.cap1]
db_url = "postgres://postgres@127.0.0.1/test"
table_name = "sip_capture_a_%Y%m%d|sip_capture_b_%Y%m%d"
mt_mode = "hash"
hash_source = "From_User"

[capture_mode.cap2]
db_url = "mysql://root@127.0.0.1/test"
table_name = "sip_capture_c"

[[route]]
match = { method = ["OPTIONS", "NOTIFY"], src_ip = "10.0.0.0/8" }
drop = true

[[route]]
match = { reply_code = "4xx", header = { name = "user_agent", regex = "^(Asterisk|FPBX)" } }
table = "failed_%Y%m%d"
capture_mode = "cap2"

[[route]]
match = { payload_type = 100 }
capture_mode = "cap1"
"#,
        &[],
    );
    assert!(ok, "{text}");
}

#[test]
fn kamailio_one_line_modes_with_trailing_semicolon() {
    let (ok, text) = check(
        r#"
capture_mode = [
  "cap1=>db_url=postgres://postgres@127.0.0.1/test;table_name=sip_capture_a|sip_capture_b;mt_mode=hash;hash_source=call_id;",
  "cap2=>db_url=sqlite://other.db;table_name=sip_capture_x;mt_mode=round_robin",
]
[[route]]
capture_mode = "cap2"
"#,
        &[],
    );
    assert!(ok, "{text}");
    let (ok, text) = check(
        "",
        &["capture_mode=cap1=>db_url=sqlite://x.db;table_name=t_a|t_b;mt_mode=rand;"],
    );
    assert!(ok, "{text}");
}

#[test]
fn bad_modes_and_rules_name_their_key() {
    for (text, key) in [
        (
            "[capture_mode.cap1]\ndb_url = \"sqlite://x.db\"\ntable_name = \"t\"\nmt_mode = \"random\"\n",
            "capture_mode.cap1.mt_mode",
        ),
        (
            "[capture_mode.cap1]\ndb_url = \"sqlite://x.db\"\ntable_name = \"t\"\nhash_source = \"callid\"\n",
            "capture_mode.cap1.hash_source",
        ),
        (
            "[capture_mode.cap1]\ndb_url = \"oracle://x\"\ntable_name = \"t\"\n",
            "capture_mode.cap1.db_url",
        ),
        (
            "[capture_mode.cap1]\ndb_url = \"sqlite://x.db\"\ntable_name = \"bad-name\"\n",
            "capture_mode.cap1.table_name",
        ),
        (
            "capture_mode = [\"cap1=>db_url=sqlite://x.db;table_name=t;mt_mod=hash\"]\n",
            "capture_mode.cap1.mt_mod",
        ),
        (
            "capture_mode = [\"cap1=>table_name=t;mt_mode=hash\"]\n",
            "capture_mode.cap1.db_url",
        ),
        (
            "[[route]]\ncapture_mode = \"nope\"\n",
            "route[0].capture_mode",
        ),
        (
            "[[route]]\nmatch = { reply_code = \"9xx\" }\ndrop = true\n",
            "route[0].match.reply_code",
        ),
        (
            "retention_tables = [\"monthly_%Y%m\"]\n",
            "retention_tables[0]",
        ),
        ("max_msg_size = 100\n", "max_msg_size"),
        ("max_msg_size = 999999999\n", "max_msg_size"),
        (
            "[capture_mode.cap1]\ndb_url = \"sqlite://x.db\"\ntable_name = \"pg_%Y%m%d\"\n",
            "capture_mode.cap1.table_name",
        ),
        ("logs_table = \"SQLITE_logs\"\n", "logs_table"),
    ] {
        let (ok, out) = check(text, &[]);
        assert!(!ok, "accepted: {text}");
        assert!(out.contains(key), "{text}: {out}");
    }
}

#[test]
fn homer7_schema_per_mode_and_its_keys_are_checked() {
    // The top-level schema, a HOMER 7 mode without a table list (Kamailio's line form too).
    let (ok, text) = check(
        r#"
db_url = "sqlite://main.db"
schema = "homer7"
partition_sip_minutes = 60
homer7_custom_fields = ["x_mac"]
dedup = true
dedup_window = 0.5
capture_mode = ["cap1=>db_url=postgres://postgres@127.0.0.1/test;schema=homer7;", "cap2=>db_url=sqlite://b.db;table_name=t;schema=HOMER5"]
"#,
        &[],
    );
    assert!(ok, "{text}");
    for (set, key) in [
        ("schema=homer9", "schema"),
        ("partition_sip_minutes=7", "partition_sip_minutes"),
        ("partition_log_minutes=0", "partition_log_minutes"),
        ("dedup_window=-1", "dedup_window"),
        (
            "homer7_custom_fields=[\"callid\"]",
            "homer7_custom_fields[0]",
        ),
    ] {
        let (ok, text) = check("db_url = \"sqlite://main.db\"\n", &[set]);
        assert!(!ok, "{set} accepted: {text}");
        assert!(text.contains(key), "{set}: {text}");
    }
    let (ok, text) = check(
        "db_url = \"sqlite://main.db\"\ncapture_mode = [\"cap1=>db_url=sqlite://b.db;schema=homer6\"]\n",
        &[],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("capture_mode.cap1.schema"), "{text}");
    // A HOMER 5 mode still needs its table list.
    let (ok, text) = check(
        "db_url = \"sqlite://main.db\"\ncapture_mode = [\"cap1=>db_url=sqlite://b.db\"]\n",
        &[],
    );
    assert!(!ok, "{text}");
    assert!(text.contains("capture_mode.cap1.table_name"), "{text}");
}

/// The web page shows captured SIP: a non-loopback `web_listen` needs a token or an explicit
/// `web_allow_anonymous`; loopback is fine without.
#[test]
fn web_listen_off_loopback_needs_a_token() {
    let (ok, text) = check("web_listen = \"0.0.0.0:9080\"\n", &[]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("web_listen") && text.contains("auth_token"),
        "{text}"
    );
    for (toml, sets) in [
        ("web_listen = \"127.0.0.1:9080\"\n", &[][..]),
        (
            "web_listen = \"0.0.0.0:9080\"\n",
            &["auth_token=s3cret"][..],
        ),
        (
            "web_listen = \"0.0.0.0:9080\"\nweb_allow_anonymous = true\n",
            &[][..],
        ),
    ] {
        let (ok, text) = check(toml, sets);
        assert!(ok, "{toml} {sets:?}: {text}");
    }
}

#[test]
fn table_and_message_limits_can_be_switched_off() {
    let limits = "max_new_tables_per_minute = 0\nfuture_horizon = 0\nmax_msg_size = 1024\n";
    let (ok, out) = check(limits, &[]);
    assert!(ok, "{out}");
}
