//! Logging set-up shared by every binary: `tracing` with `RUST_LOG`-style filtering, as text or
//! JSON-like compact lines.

use tracing_subscriber::EnvFilter;

/// The default filter: our crates at info, database drivers quiet (sqlx logs every statement at
/// info otherwise).
pub const DEFAULT_FILTER: &str = "info,sqlx=warn,sea_orm=warn,h2=warn,tower=warn,hyper=warn";

/// Starts logging to stderr. `RUST_LOG` overrides [`DEFAULT_FILTER`]. Safe to call twice (the
/// second call is a no-op), so tests may call it too.
pub fn init_logging() {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let _already_set = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .try_init();
}
