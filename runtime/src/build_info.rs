//! What the running binary was built from, for the `sipcapture_<service>_build_info` metric and
//! `--version`-style logs: the workspace version and the git commit `build.rs` captured
//! (`unknown` outside a git checkout unless `SIPCAPTURE_GIT_COMMIT` was set at build time).

/// The workspace version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The short git commit of the build, or `unknown`.
pub const GIT_COMMIT: &str = env!("SIPCAPTURE_GIT_COMMIT");

/// The labels of `*_build_info`, in order.
pub const LABELS: [(&str, &str); 2] = [("version", VERSION), ("git_commit", GIT_COMMIT)];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_commit_or_unknown() {
        assert!(!VERSION.is_empty());
        assert!(
            !GIT_COMMIT.is_empty()
                && GIT_COMMIT
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b)),
            "{GIT_COMMIT}"
        );
    }
}
