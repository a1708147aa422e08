//! `sipcapture-control` config handling.

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

const CONTROL: &str = env!("CARGO_BIN_EXE_sipcapture-control");

#[test]
fn control_validates_members() {
    let (ok, text) = run(CONTROL, &["--check-config", "--member", "10.0.0.1:9062"]);
    assert!(!ok);
    assert!(text.contains("member"), "{text}");
    let (ok, text) = run(
        CONTROL,
        &["--check-config", "--member", "http://10.0.0.1:9062"],
    );
    assert!(ok, "{text}");
}
