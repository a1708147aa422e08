//! `sipcapture` config handling and the status CLI's errors.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(bin: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(bin)
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

const UP: &str = env!("CARGO_BIN_EXE_sipcapture");

#[test]
fn up_accepts_kamailio_flat_names() {
    let (ok, text) = run(
        UP,
        &[
            "up",
            "--check-config",
            "--set",
            "capture_node=n1",
            "--set",
            "insert_retries=2",
            "--set",
            "storer.mt_mode=hash",
            "--db-url",
            "sqlite://x.db",
            "--hep-listen",
            "127.0.0.1:9060",
        ],
    );
    assert!(ok, "{text}");
}

#[test]
fn up_names_bad_keys() {
    let (ok, text) = run(UP, &["up", "--check-config", "--set", "no_such_key=1"]);
    assert!(!ok);
    assert!(text.contains("no_such_key"), "{text}");
    let (ok, text) = run(
        UP,
        &["up", "--check-config", "--set", "insert_retry_timeout=999"],
    );
    assert!(!ok);
    assert!(text.contains("storer.insert_retry_timeout"), "{text}");
}

#[test]
fn status_rejects_bad_action_and_unreachable_control() {
    let (ok, text) = run(UP, &["status", "maybe", "--target", "127.0.0.1:1"]);
    assert!(!ok);
    assert!(text.contains("Bad parameter"), "{text}");
    let (ok, text) = run(UP, &["status", "check", "--target", "127.0.0.1:1"]);
    assert!(!ok);
    assert!(text.contains("cannot reach control"), "{text}");
}
