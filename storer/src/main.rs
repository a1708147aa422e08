//! `sipcapture-storer`: flags → config → [`sipcapture_storer::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use sipcapture_runtime::config::{Sources, load};
use sipcapture_storer::config::StorerConfig;

/// Stores captured SIP and HEP reports into SQLite, PostgreSQL or MySQL/MariaDB.
#[derive(Debug, Parser)]
#[command(name = "sipcapture-storer", version)]
struct Args {
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Database URL (Kamailio `db_url`).
    #[arg(long)]
    db_url: Option<String>,
    /// Control service URL.
    #[arg(long)]
    control: Option<String>,
    /// Override any config key (Kamailio names where one exists), e.g. `--set insert_retries=5`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Validate the config and exit.
    #[arg(long)]
    check_config: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut sources = Sources::new(args.config, args.set);
    sources
        .flag("grpc_listen", args.grpc_listen.map(|a| a.to_string()))
        .flag("db_url", args.db_url)
        .flag("control", args.control);
    let config: StorerConfig = load(&sources)?;
    config.validate()?;
    if args.check_config {
        println!("config ok");
        return Ok(());
    }
    let log = config.service.log_settings();
    sipcapture_runtime::service::main("sipcapture-storer", &log, |shutdown| {
        sipcapture_storer::run(config, shutdown)
    })
    .await?;
    Ok(())
}
