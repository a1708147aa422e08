//! grpcurl (the real client operators use) against `sipcapture up`: reflection v1alpha (grpcurl
//! 1.8) lists health, reflection and the sipcapture services; status and control calls answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sipcapture_integration_tests::{Sandbox, grpcurl};

/// Runs grpcurl, which the test has found installed.
fn run(args: &[&str]) -> String {
    grpcurl(args).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_and_calls_every_service() {
    if grpcurl(&["-version"]).is_none() {
        return;
    }
    let sandbox = Sandbox::new().unwrap();
    let mut up = sandbox.up(&[]).await.unwrap();
    let target = up.grpc.to_string();

    let list = run(&["-plaintext", &target, "list"]);
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
    let describe = run(&[
        "-plaintext",
        &target,
        "describe",
        "sipcapture.v1.CaptureRecord",
    ]);
    assert!(describe.contains("capture_time_us"), "{describe}");

    let off = run(&[
        "-plaintext",
        "-d",
        r#"{"action":"OFF"}"#,
        &target,
        "sipcapture.v1.ControlService/SetStatus",
    ]);
    assert!(off.contains("\"reply\": \"Disabled\""), "{off}");
    let check = run(&["-plaintext", &target, "sipcapture.v1.StatusService/Check"]);
    assert!(check.contains("\"reply\": \"Disabled\""), "{check}");
    let on = run(&[
        "-plaintext",
        "-d",
        r#"{"action":"ON"}"#,
        &target,
        "sipcapture.v1.ControlService/SetStatus",
    ]);
    assert!(on.contains("\"reply\": \"Enabled\""), "{on}");
    let health = run(&["-plaintext", &target, "grpc.health.v1.Health/Check"]);
    assert!(health.contains("SERVING"), "{health}");
    assert!(up.process.terminate(Duration::from_secs(20)).unwrap());
}
