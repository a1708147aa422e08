//! The binary's config handling: `--check-config` accepts defaults and Kamailio names, and a bad
//! key or value stops start-up with a message naming it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str]) -> (bool, String) {
    run_with_env(args, &[])
}

fn run_with_env(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipcapture-collector"))
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().copied())
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

/// Kubernetes injects service-link variables for every Service of the namespace; with a release
/// named `sipcapture` they carry our prefix. They are ignored; a real unknown key is not.
#[test]
fn kubernetes_service_links_do_not_stop_start_up() {
    let links = [
        ("SIPCAPTURE_CONTROL_SERVICE_HOST", "10.96.0.12"),
        ("SIPCAPTURE_CONTROL_SERVICE_PORT", "9064"),
        ("SIPCAPTURE_CONTROL_SERVICE_PORT_GRPC", "9064"),
        ("SIPCAPTURE_CONTROL_PORT", "tcp://10.96.0.12:9064"),
        ("SIPCAPTURE_CONTROL_PORT_9064_TCP", "tcp://10.96.0.12:9064"),
        ("SIPCAPTURE_CONTROL_PORT_9064_TCP_PROTO", "tcp"),
        ("SIPCAPTURE_CONTROL_PORT_9064_TCP_PORT", "9064"),
        ("SIPCAPTURE_CONTROL_PORT_9064_TCP_ADDR", "10.96.0.12"),
        ("SIPCAPTURE_SERVICE_HOST", "10.96.0.13"),
        ("SIPCAPTURE_PORT", "udp://10.96.0.13:9060"),
        ("SIPCAPTURE_PORT_9060_UDP", "udp://10.96.0.13:9060"),
    ];
    let check = |extra: &[(&str, &str)]| {
        let env: Vec<(&str, &str)> = links.iter().chain(extra).copied().collect();
        run_with_env(
            &["--check-config", "--storer", "http://127.0.0.1:9063"],
            &env,
        )
    };
    let (ok, text) = check(&[("SIPCAPTURE_CAPTURE_NODE", "sbc7")]);
    assert!(ok, "{text}");
    assert!(text.contains("config ok"), "{text}");
    let (ok, text) = check(&[("SIPCAPTURE_CAPTURE_NOD", "sbc7")]);
    assert!(!ok, "a typo must still stop start-up: {text}");
    assert!(text.contains("capture_nod"), "{text}");
}
