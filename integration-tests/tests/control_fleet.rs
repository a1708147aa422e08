//! Control switching a fleet of separate processes: 3 collectors + 2 storers registered through
//! Watch. OFF (with grpcurl, the documented request shape) → every member reports off and HEP
//! produces no rows; ON → rows again; a collector started while off comes up off; a killed
//! member shows as unreachable; the desired status survives a control restart; a wrong token is
//! refused with UNAUTHENTICATED.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use sipcapture_integration_tests::control::{check, member_state, set_status};
use sipcapture_integration_tests::hep::{hep3_sip, request, send_udp};
use sipcapture_integration_tests::{
    Sandbox, Service, count_rows, grpcurl, member_counters, open_db, wait_until,
};
use sipcapture_proto::v1::{CaptureAction, CaptureState};

const WAIT: Duration = Duration::from_secs(15);
const TOKEN: &str = "fleet-token";

fn grpcurl_set(control: SocketAddr, action: &str, token: &str) -> String {
    grpcurl(&[
        "-plaintext",
        "-H",
        &format!("authorization: Bearer {token}"),
        "-d",
        &format!(r#"{{"action":"{action}"}}"#),
        &control.to_string(),
        "sipcapture.v1.ControlService/SetStatus",
    ])
    .unwrap_or_default()
}

fn sip_packet(n: u32) -> Vec<u8> {
    hep3_sip(
        "10.0.0.1:5060".parse().unwrap(),
        "10.0.0.2:5060".parse().unwrap(),
        1_768_464_000,
        n,
        1,
        &request("OPTIONS", &format!("fleet-{n}@x"), 1, "t", None),
    )
}

async fn total_rows(dbs: &[sea_orm::DatabaseConnection]) -> anyhow::Result<u64> {
    let mut total = 0;
    for db in dbs {
        total += count_rows(db, "sip_capture_rest_20260115").await?;
    }
    Ok(total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_switches_a_fleet_of_processes() {
    let sandbox = Sandbox::new().unwrap();
    let token_args = vec!["--set".to_owned(), format!("auth_token={TOKEN}")];
    let control = sandbox.control(&token_args).await.unwrap();
    let member_args = |extra: &[String]| {
        let mut args = vec!["--control".to_owned(), control.url()];
        args.extend(token_args.iter().cloned());
        args.extend(extra.iter().cloned());
        args
    };
    let db1 = format!("sqlite://{}", sandbox.path().join("storer1.db").display());
    let db2 = format!("sqlite://{}", sandbox.path().join("storer2.db").display());
    let s1 = sandbox
        .storer("storer1", &db1, &member_args(&[]))
        .await
        .unwrap();
    let mut s2 = sandbox
        .storer("storer2", &db2, &member_args(&[]))
        .await
        .unwrap();
    let mut collectors: Vec<Service> = Vec::new();
    for (i, storer) in [&s1, &s1, &s2].iter().enumerate() {
        let c = sandbox
            .collector(
                &format!("collector{}", i + 1),
                &[storer.url()],
                &member_args(&[]),
            )
            .await
            .unwrap();
        collectors.push(c);
    }
    wait_until("5 registered members", WAIT, || async {
        Ok(check(control.grpc)
            .await?
            .members
            .iter()
            .filter(|m| m.reachable)
            .count()
            == 5)
    })
    .await
    .unwrap();

    let dbs = vec![open_db(&db1).await.unwrap(), open_db(&db2).await.unwrap()];

    // A mutating call without the token is refused.
    let refused = set_status(control.grpc, CaptureAction::Off, None)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);
    let refused = set_status(control.grpc, CaptureAction::Off, Some("wrong"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // OFF, with grpcurl exactly as the README documents it.
    let text = grpcurl_set(control.grpc, "OFF", TOKEN);
    if !text.is_empty() {
        assert!(text.contains("\"reply\": \"Disabled\""), "{text}");
    } else {
        set_status(control.grpc, CaptureAction::Off, Some(TOKEN))
            .await
            .unwrap();
    }
    let reply = check(control.grpc).await.unwrap();
    assert_eq!(reply.members.len(), 5, "{reply:?}");
    for m in &reply.members {
        assert!(m.reachable, "{m:?}");
        assert_eq!(m.state, CaptureState::Disabled as i32, "{m:?}");
    }
    for c in &collectors {
        send_udp(c.hep.unwrap(), &[sip_packet(1)]).unwrap();
    }
    for c in &collectors {
        wait_until("discarded by status", WAIT, || async {
            Ok(member_counters(c.grpc)
                .await?
                .get("discarded.status")
                .copied()
                .unwrap_or(0)
                >= 1)
        })
        .await
        .unwrap();
    }
    assert_eq!(total_rows(&dbs).await.unwrap(), 0, "no rows while off");

    // ON: rows again, from every collector.
    let on = set_status(control.grpc, CaptureAction::On, Some(TOKEN))
        .await
        .unwrap();
    assert!(
        on.members
            .iter()
            .all(|m| m.state == CaptureState::Enabled as i32),
        "{on:?}"
    );
    for (i, c) in collectors.iter().enumerate() {
        send_udp(c.hep.unwrap(), &[sip_packet(10 + i as u32)]).unwrap();
    }
    if let Err(e) = wait_until("3 rows", WAIT, || async {
        Ok(total_rows(&dbs).await? == 3)
    })
    .await
    {
        // Show what every member did before failing.
        for p in [&s1.process, &s2.process] {
            eprintln!("==== {}\n{}", p.name, p.log_text());
        }
        for c in &collectors {
            eprintln!("==== {}\n{}", c.process.name, c.process.log_text());
        }
        panic!("{e}");
    }

    // A collector started while off comes up off.
    set_status(control.grpc, CaptureAction::Off, Some(TOKEN))
        .await
        .unwrap();
    let c4 = sandbox
        .collector("collector4", &[s1.url()], &member_args(&[]))
        .await
        .unwrap();
    assert_eq!(member_state(c4.grpc).await.unwrap(), CaptureState::Disabled);
    send_udp(c4.hep.unwrap(), &[sip_packet(20)]).unwrap();
    wait_until("collector4 discards", WAIT, || async {
        Ok(member_counters(c4.grpc)
            .await?
            .get("discarded.status")
            .copied()
            .unwrap_or(0)
            >= 1)
    })
    .await
    .unwrap();
    assert_eq!(total_rows(&dbs).await.unwrap(), 3);

    // A killed member is reported, not hidden.
    s2.process.kill();
    let reply = check(control.grpc).await.unwrap();
    assert_eq!(reply.members.len(), 6, "{reply:?}");
    let dead: Vec<_> = reply.members.iter().filter(|m| !m.reachable).collect();
    assert_eq!(dead.len(), 1, "{reply:?}");
    assert_eq!(dead[0].member_id, "storer2");
    assert!(!dead[0].error.is_empty());
    assert!(dead[0].last_seen_unix_ms > 0);

    // grpcurl list and describe work against every kind of service (reflection v1alpha).
    for (target, service) in [
        (control.grpc, "sipcapture.v1.ControlService"),
        (collectors[0].grpc, "sipcapture.v1.StatusService"),
        (s1.grpc, "sipcapture.v1.StorerService"),
    ] {
        if let Some(list) = grpcurl(&["-plaintext", &target.to_string(), "list"]) {
            assert!(list.contains(service), "{target}: {list}");
            assert!(list.contains("grpc.health.v1.Health"), "{target}: {list}");
            let describe =
                grpcurl(&["-plaintext", &target.to_string(), "describe", service]).unwrap();
            assert!(describe.contains("rpc "), "{describe}");
        }
    }

    // Per member: switch only collector1 back on, with the CLI and the token (from the
    // environment, so it does not show in the process list).
    let cli = Command::new(sipcapture_integration_tests::bin_path("sipcapture").unwrap())
        .args([
            "status",
            "on",
            "--target",
            &control.grpc.to_string(),
            "--member",
            "collector1",
        ])
        .env("SIPCAPTURE_AUTH_TOKEN", TOKEN)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&cli.stdout);
    assert!(
        table.contains("collector1") && table.contains("Enabled"),
        "{table}"
    );
    assert_eq!(
        member_state(collectors[0].grpc).await.unwrap(),
        CaptureState::Enabled
    );
    assert_eq!(
        member_state(collectors[1].grpc).await.unwrap(),
        CaptureState::Disabled
    );

    // The CLI prints the same as a table.
    let cli = Command::new(sipcapture_integration_tests::bin_path("sipcapture").unwrap())
        .args(["status", "check", "--target", &control.grpc.to_string()])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&cli.stdout);
    assert!(table.starts_with("desired: Disabled"), "{table}");
    assert!(table.contains("UNREACHABLE"), "{table}");
    assert!(table.contains("collector4"), "{table}");
    assert_eq!(
        cli.status.code(),
        Some(3),
        "exit 3 when a member is unreachable"
    );
    // A usage error is 2, distinct from an unreachable member.
    let usage = Command::new(sipcapture_integration_tests::bin_path("sipcapture").unwrap())
        .args(["status", "check", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn desired_status_survives_a_control_restart() {
    let sandbox = Sandbox::new().unwrap();
    let mut control = sandbox.control(&[]).await.unwrap();
    let off = set_status(control.grpc, CaptureAction::Off, None)
        .await
        .unwrap();
    assert_eq!(off.reply, "Disabled");
    assert!(control.process.terminate(Duration::from_secs(10)).unwrap());
    let control = sandbox.control(&[]).await.unwrap();
    assert_eq!(check(control.grpc).await.unwrap().reply, "Disabled");
    // A storer registering now comes up off.
    let db = format!("sqlite://{}", sandbox.path().join("s.db").display());
    let storer = sandbox
        .storer("s", &db, &["--control".to_owned(), control.url()])
        .await
        .unwrap();
    assert_eq!(
        member_state(storer.grpc).await.unwrap(),
        CaptureState::Disabled
    );
}
