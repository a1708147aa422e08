//! The binary's config handling: `--check-config` accepts defaults and Kamailio names, and a bad
//! key or value stops start-up with a message naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipcapture-collector"))
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
fn defaults_and_kamailio_names_are_valid() {
    let (ok, text) = run(&[
        "--check-config",
        "--set",
        "capture_node=sbc1",
        "--set",
        "hep_capture_on=1",
        "--set",
        "callid_aleg_header=X-CID;X-Leg",
        "--set",
        "capture_bad_msgs=1",
        "--storer",
        "http://127.0.0.1:9063",
    ]);
    assert!(ok, "{text}");
    assert!(text.contains("config ok"));
}

#[test]
fn unknown_key_is_named() {
    let (ok, text) = run(&["--check-config", "--set", "capture_nod=x"]);
    assert!(!ok);
    assert!(text.contains("capture_nod"), "{text}");
}

#[test]
fn bad_value_is_named() {
    let (ok, text) = run(&["--check-config", "--set", "batch_max_records=0"]);
    assert!(!ok);
    assert!(text.contains("batch_max_records"), "{text}");
    let (ok, text) = run(&["--check-config", "--storer", "127.0.0.1:9063"]);
    assert!(!ok);
    assert!(text.contains("storer"), "{text}");
}

#[test]
fn config_file_unknown_key_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("collector.toml");
    std::fs::write(&path, "capture_node = \"a\"\nraw_interfacee = \"eth0\"\n").unwrap();
    let (ok, text) = run(&["--check-config", "--config", path.to_str().unwrap()]);
    assert!(!ok);
    assert!(text.contains("raw_interfacee"), "{text}");
}
