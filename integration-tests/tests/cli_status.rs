//! `sipcapture status` as an operator's script uses it: a checked action, `--output json`, the
//! token from the environment, one exit code per kind of failure, and shell completions —
//! against a real `sipcapture up` that requires an admin token.

use std::process::{Command, Output};

use sipcapture_integration_tests::{Sandbox, bin_path, free_port};

const TOKEN: &str = "s3cret-admin";

/// Runs `sipcapture` with `args` and exactly the given `SIPCAPTURE_*` token variables.
fn sipcapture(args: &[&str], env: &[(&str, &str)]) -> std::io::Result<Output> {
    let path = bin_path("sipcapture").map_err(std::io::Error::other)?;
    let mut command = Command::new(path);
    command.args(args);
    for name in [
        "SIPCAPTURE_TOKEN",
        "SIPCAPTURE_ADMIN_TOKEN",
        "SIPCAPTURE_AUTH_TOKEN",
    ] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command.output()
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_exit_codes_json_output_token_from_env_and_completions() {
    let sandbox = Sandbox::new().unwrap();
    let up = sandbox
        .up(&["--set", &format!("admin_token={TOKEN}")])
        .await
        .unwrap();
    let target = up.grpc.to_string();

    // check is a read: no token needed; --output json is one object with every member.
    let check = sipcapture(
        &["status", "check", "--target", &target, "--output", "json"],
        &[],
    )
    .unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", text(&check));
    let json: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap();
    assert_eq!(json["desired"], "Enabled", "{json}");
    assert_eq!(json["reply"], "Enabled", "{json}");
    let members = json["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{json}");
    assert_eq!(members[0]["kind"], "all-in-one", "{json}");
    assert_eq!(members[0]["reachable"], true, "{json}");
    assert_eq!(members[0]["state"], "Enabled", "{json}");
    assert!(
        members[0]["inputs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["input"] == "hep_udp" && i["state"] == "Enabled"),
        "{json}"
    );

    // Switching without the token: refused, exit 4, capture still on.
    let refused = sipcapture(&["status", "off", "--target", &target], &[]).unwrap();
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    let wrong = sipcapture(
        &["status", "off", "--target", &target],
        &[("SIPCAPTURE_TOKEN", "not-it")],
    )
    .unwrap();
    assert_eq!(wrong.status.code(), Some(4), "{}", text(&wrong));
    let still_on = sipcapture(&["status", "check", "--target", &target], &[]).unwrap();
    assert!(
        String::from_utf8_lossy(&still_on.stdout).contains("desired: Enabled"),
        "{}",
        text(&still_on)
    );

    // The token from SIPCAPTURE_TOKEN (never on the command line): switched, exit 0.
    let off = sipcapture(
        &["status", "OFFx", "--target", &target],
        &[("SIPCAPTURE_TOKEN", TOKEN)],
    )
    .unwrap();
    assert_eq!(off.status.code(), Some(0), "{}", text(&off));
    assert!(
        String::from_utf8_lossy(&off.stdout).contains("desired: Disabled"),
        "{}",
        text(&off)
    );
    // SIPCAPTURE_AUTH_TOKEN still works as the last fallback.
    let on = sipcapture(
        &["status", "on", "--target", &target],
        &[("SIPCAPTURE_AUTH_TOKEN", TOKEN)],
    )
    .unwrap();
    assert_eq!(on.status.code(), Some(0), "{}", text(&on));

    // A usage error: not an action (checked before anything is dialled), exit 2.
    let usage = sipcapture(&["status", "bogus", "--target", &target], &[]).unwrap();
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));
    assert!(
        String::from_utf8_lossy(&usage.stderr).contains("Bad parameter (on, off or check"),
        "{}",
        text(&usage)
    );

    // Control unreachable: exit 5, each cause once.
    let closed = format!("127.0.0.1:{}", free_port().unwrap());
    let unreachable = sipcapture(&["status", "check", "--target", &closed], &[]).unwrap();
    assert_eq!(unreachable.status.code(), Some(5), "{}", text(&unreachable));
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(stderr.contains("cannot reach control"), "{stderr}");
    assert_eq!(
        stderr.matches("tcp connect error").count(),
        1,
        "each cause printed once: {stderr}"
    );

    // The exit codes are in --help.
    let help = sipcapture(&["status", "--help"], &[]).unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for line in [
        "0  every member",
        "2  usage error",
        "3  control answered",
        "4  refused",
        "5  control cannot",
    ] {
        assert!(help.contains(line), "{line:?} missing from:\n{help}");
    }

    // SIPCAPTURE_TOKEN belongs to the CLI: a shell that exports it still starts a service
    // (any other unknown SIPCAPTURE_ variable is refused, naming it).
    let checked = sipcapture(&["up", "--check-config"], &[("SIPCAPTURE_TOKEN", TOKEN)]).unwrap();
    assert_eq!(checked.status.code(), Some(0), "{}", text(&checked));
    let typo = sipcapture(&["up", "--check-config"], &[("SIPCAPTURE_TOKNE", TOKEN)]).unwrap();
    assert_ne!(typo.status.code(), Some(0), "{}", text(&typo));
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("tokne"),
        "{}",
        text(&typo)
    );

    // Shell completions name the subcommands.
    for shell in ["bash", "zsh", "fish"] {
        let completions = sipcapture(&["completions", shell], &[]).unwrap();
        assert_eq!(completions.status.code(), Some(0), "{}", text(&completions));
        let script = String::from_utf8_lossy(&completions.stdout);
        assert!(
            script.contains("status") && script.contains("migrate") && script.contains("import"),
            "{shell}: {script}"
        );
    }
}
