//! `sipcapture-collector`: flags → config → [`sipcapture_collector::run`].

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use figment::value::Value;
use sipcapture_collector::config::CollectorConfig;
use sipcapture_runtime::config::{Sources, load};
use sipcapture_runtime::counters::Counters;
use sipcapture_runtime::status::CaptureSwitch;

/// Receives HEP v1/v2/v3 and streams decoded SIP to storers.
#[derive(Debug, Parser)]
#[command(name = "sipcapture-collector", version)]
struct Args {
    /// TOML config file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// HEP listen address (UDP and TCP).
    #[arg(long)]
    hep_listen: Option<SocketAddr>,
    /// Storer endpoint URL (repeatable), e.g. http://127.0.0.1:9063.
    #[arg(long)]
    storer: Vec<String>,
    /// Control service URL.
    #[arg(long)]
    control: Option<String>,
    /// gRPC listen address (status, health, reflection).
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
    /// Override any config key (Kamailio names where one exists), e.g. `--set capture_node=sbc1`.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Validate the config and exit.
    #[arg(long)]
    check_config: bool,
    /// Import this pcap/pcapng file instead of listening: every SIP message (and HEP packet)
    /// in it is stored through the storers, then the collector exits with a summary.
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut sources = Sources::new(args.config, args.set);
    sources
        .flag("hep_listen", args.hep_listen.map(|a| a.to_string()))
        .flag("grpc_listen", args.grpc_listen.map(|a| a.to_string()))
        .flag("control", args.control);
    if !args.storer.is_empty() {
        let list: Vec<Value> = args.storer.into_iter().map(Value::from).collect();
        sources.flag("storer", Some(list));
    }
    let config: CollectorConfig = load(&sources)?;
    config.validate()?;
    if args.check_config {
        if let Some(hook) = config.hook_settings() {
            sipcapture_collector::hook::check_script(&hook.script_file, &hook.event_callback)?;
        }
        println!("config ok");
        return Ok(());
    }
    let log = config.service.log_settings();
    sipcapture_runtime::service::main("sipcapture-collector", &log, |shutdown| async move {
        let Some(path) = args.pcap else {
            return sipcapture_collector::run(config, shutdown).await;
        };
        let switch = Arc::new(CaptureSwitch::new(config.service.capture_on));
        let counters = Arc::new(Counters::new(&sipcapture_collector::events::CATALOG));
        let summary =
            sipcapture_collector::import_file(&config, &path, switch, counters, true, shutdown)
                .await?;
        print!("{}: imported\n{summary}", path.display());
        Ok(())
    })
    .await?;
    Ok(())
}
