//! The binary's config handling: Kamailio's ranges and names are validated with messages that
//! name the key.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipcapture-storer"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn kamailio_names_are_accepted() {
    let (ok, text) = run(&[
        "--check-config",
        "--set",
        "insert_retries=500",
        "--set",
        "insert_retry_timeout=300",
        "--set",
        "mt_mode=round_robin",
        "--set",
        "hash_source=from_user",
        "--set",
        "table_name=sip_capture_a|sip_capture_b_%Y%m%d",
        "--set",
        "capture_on=0",
        "--db-url",
        "postgres://postgres@127.0.0.1/test",
    ]);
    assert!(ok, "{text}");
}

#[test]
fn out_of_range_values_are_named() {
    for (set, key) in [
        ("insert_retries=501", "insert_retries"),
        ("insert_retry_timeout=301", "insert_retry_timeout"),
        ("db_insert_mode=3", "db_insert_mode"),
        ("mt_mode=random", "mt_mode"),
        ("table_name=bad-name", "table_name"),
    ] {
        let (ok, text) = run(&["--check-config", "--set", set]);
        assert!(!ok, "{set} accepted");
        assert!(text.contains(key), "{set}: {text}");
    }
    let (ok, text) = run(&["--check-config", "--db-url", "oracle://x"]);
    assert!(!ok);
    assert!(text.contains("db_url"), "{text}");
}
