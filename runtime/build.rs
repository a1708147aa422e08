//! Captures the git commit the binaries are built from, for the `*_build_info` metric:
//! `SIPCAPTURE_GIT_COMMIT` from the build environment when set (the Dockerfile passes it: the
//! image's build context has no `.git`), else `git rev-parse` of the checkout, else `unknown`
//! (a source tarball, no git installed). Never fails the build.

use std::path::{Path, PathBuf};
use std::process::Command;

const ENV: &str = "SIPCAPTURE_GIT_COMMIT";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={ENV}");
    let commit = match std::env::var(ENV) {
        Ok(given) if !clean(&given).is_empty() => clean(&given),
        _ => from_git().unwrap_or_else(|| "unknown".to_owned()),
    };
    println!("cargo:rustc-env={ENV}={commit}");
}

/// A given commit (or tag) reduced to label-safe characters, at most 64.
fn clean(given: &str) -> String {
    given
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'))
        .take(64)
        .collect()
}

/// The short commit of HEAD; asks cargo to rerun when HEAD or the branch it points to moves.
fn from_git() -> Option<String> {
    // Relative answers are relative to the crate's directory (where git runs).
    let here = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR")?);
    let git_dir = here.join(git(&["rev-parse", "--git-dir"])?);
    let common_dir = here.join(git(&["rev-parse", "--git-common-dir"])?);
    watch(&git_dir.join("HEAD"));
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        watch(&common_dir.join(branch));
    }
    watch(&common_dir.join("packed-refs"));
    let commit = git(&["rev-parse", "--short=12", "HEAD"])?;
    let valid = !commit.is_empty() && commit.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then_some(commit)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}

/// `git args` in the crate's directory: trimmed stdout, `None` when git is missing or fails.
fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var_os("CARGO_MANIFEST_DIR")?;
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    Some(text.trim().to_owned())
}
