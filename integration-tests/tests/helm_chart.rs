#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The Helm chart's ConfigMaps are valid configs: every TOML file `helm/check.py` rendered into
//! `$HELM_RENDERED_DIR` (`<scenario>-collector.toml`, `-storer.toml`, `-control.toml`) passes
//! the matching binary's `--check-config`. `.ci/run` renders them before `cargo test`; without
//! the variable the test is skipped, unless `CI` is set, where a missing render is a failure.

use std::path::{Path, PathBuf};
use std::process::Command;

use sipcapture_integration_tests::bin_path;

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

    let mut checked = Vec::new();
    for file in &files {
        let binary =
            binary_for(file).unwrap_or_else(|| panic!("{} names no service", file.display()));
        let output = Command::new(bin_path(binary).unwrap())
            .arg("--config")
            .arg(file)
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
    eprintln!("{} rendered configs passed --check-config", checked.len());
}
