#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Helm chart's ConfigMaps are valid configs: every TOML file `helm/check.py` rendered into
//! `$HELM_RENDERED_DIR` (`<scenario>-collector.toml`, `-storer.toml`, `-control.toml`) passes
//! the matching binary's `--check-config`. `.ci/run` renders them before `cargo test`; without
//! the variable the test is skipped, unless `CI` is set, where a missing render is a failure.
//! Configs that name the chart's gRPC TLS Secret mount (`/etc/sipcapture/grpc-tls`, values
//! `grpcTls`) are checked against a real Secret's files: a CA and a certificate made here.

use std::path::{Path, PathBuf};
use std::process::Command;

use sipcapture_integration_tests::bin_path;

/// Where the chart mounts the `grpcTls` Secret in every sipcapture container.
const GRPC_TLS_MOUNT: &str = "/etc/sipcapture/grpc-tls";

/// Writes what a `grpcTls` Secret holds (`ca.crt`, `tls.crt`, `tls.key`: a CA and a certificate
/// it issued for `sipcapture`) into `dir`, as Kubernetes projects it into the mount.
fn write_grpc_tls_secret(dir: &Path) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "sipcapture-ci-ca");
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let mut params = CertificateParams::new(vec!["sipcapture".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "sipcapture");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("ca.crt"), ca_cert.pem()).unwrap();
    std::fs::write(dir.join("tls.crt"), cert.pem()).unwrap();
    std::fs::write(dir.join("tls.key"), key.serialize_pem()).unwrap();
}

/// The binary validating a rendered file, from the ConfigMap key the file is named after.
fn binary_for(file: &Path) -> Option<&'static str> {
    let name = file.file_name()?.to_str()?;
    [
        ("-collector.toml", "sipcapture-collector"),
        ("-storer.toml", "sipcapture-storer"),
        ("-control.toml", "sipcapture-control"),
    ]
    .into_iter()
    .find_map(|(suffix, binary)| name.ends_with(suffix).then_some(binary))
}

fn rendered_dir() -> Option<PathBuf> {
    match std::env::var_os("HELM_RENDERED_DIR") {
        Some(dir) => Some(PathBuf::from(dir)),
        None if std::env::var_os("CI").is_some() => {
            panic!("CI is set but HELM_RENDERED_DIR is not: run helm/check.py first (.ci/run does)")
        }
        None => {
            eprintln!(
                "skipped: HELM_RENDERED_DIR is unset (set it to the --out directory of helm/check.py)"
            );
            None
        }
    }
}

#[test]
fn rendered_configmaps_pass_check_config() {
    let Some(dir) = rendered_dir() else {
        return;
    };
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read HELM_RENDERED_DIR {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();

    let secret = tempfile::tempdir().unwrap();
    write_grpc_tls_secret(secret.path());
    let mut checked = Vec::new();
    let mut with_grpc_tls = 0;
    for file in &files {
        let binary =
            binary_for(file).unwrap_or_else(|| panic!("{} names no service", file.display()));
        let text = std::fs::read_to_string(file).unwrap();
        let config = if text.contains(GRPC_TLS_MOUNT) {
            // The same config with the Secret's files where the pod would have them mounted.
            with_grpc_tls += 1;
            let copy = secret.path().join(file.file_name().unwrap());
            let mounted = secret.path().to_str().unwrap();
            std::fs::write(&copy, text.replace(GRPC_TLS_MOUNT, mounted)).unwrap();
            copy
        } else {
            file.clone()
        };
        let output = Command::new(bin_path(binary).unwrap())
            .arg("--config")
            .arg(&config)
            .arg("--check-config")
            // The pods set no other SIPCAPTURE_* variables; neither may the developer's shell.
            .env_clear()
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            output.status.success() && stdout.contains("config ok"),
            "{binary} rejected {}:\n{stdout}{stderr}\n--- the file:\n{}",
            file.display(),
            std::fs::read_to_string(file).unwrap_or_default()
        );
        checked.push(binary);
    }

    // Every service's ConfigMap was rendered at least once (default values render all three).
    for binary in [
        "sipcapture-collector",
        "sipcapture-storer",
        "sipcapture-control",
    ] {
        assert!(
            checked.contains(&binary),
            "no rendered config for {binary} in {} (found {files:?})",
            dir.display()
        );
    }
    // ci-values-all.yaml turns grpcTls on for all three services.
    assert!(
        with_grpc_tls >= 3,
        "expected the grpcTls scenario's collector, storer and control configs, found {with_grpc_tls}"
    );
    eprintln!(
        "{} rendered configs passed --check-config ({with_grpc_tls} with the gRPC TLS Secret)",
        checked.len()
    );
}
