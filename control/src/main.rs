//! `sipcapture-control`: flags → config → [`sipcapture_control::run`].

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use figment::value::Value;
use sipcapture_control::config::ControlConfig;
use sipcapture_runtime::config::{Sources, load};

/// Holds the fleet's capture status and fans it out to every collector and storer.
#[derive(Debug, Parser)]
#[command(name = "sipcapture-control", version)]
struct Args {
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// gRPC listen address.
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Member URL (repeatable), e.g. http://10.0.0.5:9062.
    #[arg(long)]
    member: Vec<String>,
    /// Override any config key, e.g. `--set member_timeout_ms=500`.
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
    sources.flag("grpc_listen", args.grpc_listen.map(|a| a.to_string()));
    if !args.member.is_empty() {
        let list: Vec<Value> = args.member.into_iter().map(Value::from).collect();
        sources.flag("member", Some(list));
    }
    let config: ControlConfig = load(&sources)?;
    config.validate()?;
    if args.check_config {
        println!("config ok");
        return Ok(());
    }
    let log = config.service.log_settings();
    sipcapture_runtime::service::main("sipcapture-control", &log, |shutdown| {
        sipcapture_control::run(config, shutdown)
    })
    .await?;
    Ok(())
}
