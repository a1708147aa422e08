//! `sipcapture`: the operator CLI. `sipcapture up` runs everything in one process on SQLite;
//! `sipcapture status on|off|check` switches and inspects the fleet through control;
//! `sipcapture calls` and `sipcapture flow` show what was captured.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use sipcapture_cli::up::{self, UpFlags};
use sipcapture_runtime::config::Sources;

/// SIP capture (HOMER / Kamailio sipcapture compatible).
#[derive(Debug, Parser)]
#[command(name = "sipcapture", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// The database `calls` and `flow` read.
#[derive(Debug, clap::Args)]
struct DbArg {
    /// Database URL (default: SIPCAPTURE_DB_URL, else sqlite://sipcapture.db).
    #[arg(long = "db", alias = "db-url", env = "SIPCAPTURE_DB_URL", default_value = sipcapture_cli::calls::DEFAULT_DB, hide_env_values = true)]
    db: String,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Collector + storer + control in one process: HEP on UDP/TCP 9060 into SQLite.
    Up {
        /// TOML config file (sections [collector], [storer], [control]).
        #[arg(long)]
        config: Option<PathBuf>,
        /// HEP listen address (UDP and TCP).
        #[arg(long)]
        hep_listen: Option<SocketAddr>,
        /// Database URL (default sqlite://sipcapture.db in the working directory).
        #[arg(long)]
        db_url: Option<String>,
        /// Kamailio `capture_node`.
        #[arg(long)]
        capture_node: Option<String>,
        /// gRPC listen address for every service.
        #[arg(long)]
        grpc_listen: Option<SocketAddr>,
        /// Override any config key: Kamailio names (`insert_retries=3`) or `section.key`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Validate the config and exit.
        #[arg(long)]
        check_config: bool,
    },
    /// Import a pcap/pcapng file into the database (SQLite by default), then exit with a
    /// summary: packets, SIP messages, HEP packets, and what was not stored, by reason.
    Import {
        /// The capture file (pcap or pcapng; Ethernet, Linux cooked v1/v2 or raw IP).
        file: PathBuf,
        /// Database URL (default sqlite://sipcapture.db in the working directory).
        #[arg(long = "db", alias = "db-url")]
        db_url: Option<String>,
        /// TOML config file (sections [collector], [storer], [control]).
        #[arg(long)]
        config: Option<PathBuf>,
        /// Kamailio `capture_node`.
        #[arg(long)]
        capture_node: Option<String>,
        /// Override any config key: Kamailio names (`capture_bad_msgs=1`) or `section.key`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// No progress bar even on a terminal.
        #[arg(long)]
        quiet: bool,
    },
    /// Translate a Kamailio `kamailio.cfg` (HOMER 5 sipcapture) or a `heplify-server.toml`
    /// into a config for `sipcapture up --config`.
    ///
    /// The TOML goes to stdout; every line or option that could not be translated is listed on
    /// stderr as `FILE:LINE: ITEM: REASON`. From kamailio.cfg: `modparam("sipcapture", ...)`
    /// (after `#!define`, `#!substdef`, `#!ifdef`), `listen=`, and the `request_route` /
    /// `onreply_route` pattern (`sip_capture("table")` per method, drops on `$ua` or method)
    /// as `[[storer.route]]` rules. From heplify-server.toml: HEP addresses, the database
    /// (DBDriver/DBAddr/DBUser/DBPass/DBDataTable, DBShema), DBDropDays*, Dedup, DiscardMethod,
    /// AlegIDs, CustomHeader, PromAddr. See docs/MIGRATING.md.
    ///
    /// Exit codes: 0 a config was written (even with items listed on stderr); 2 usage error;
    /// 65 the file is neither format (or not valid for the one forced with --from);
    /// 66 the file cannot be read.
    Migrate {
        /// The Kamailio or heplify-server config file.
        file: PathBuf,
        /// The file's format (default: detected from the content).
        #[arg(long, value_enum)]
        from: Option<sipcapture_cli::migrate::Format>,
    },
    /// Captured calls, newest first: time, duration, From → To, final reply, messages, nodes.
    Calls {
        #[command(flatten)]
        db: DbArg,
        /// Calls with a message at or after: 2026-12-05T10:00:00Z, "2026-12-05 10:00", a date, epoch seconds, or 15m / 2h / 7d ago.
        #[arg(long)]
        from: Option<String>,
        /// Calls with a message at or before (same forms as --from).
        #[arg(long)]
        to: Option<String>,
        /// From, To or Request-URI user.
        #[arg(long)]
        user: Option<String>,
        /// Call-ID.
        #[arg(long)]
        callid: Option<String>,
        /// A message of the call has this method or reply code (INVITE, BYE, 486).
        #[arg(long)]
        method: Option<String>,
        /// A message of the call was sent from or to this address.
        #[arg(long)]
        ip: Option<String>,
        /// Calls to print (1..=1000).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Calls to skip (paging).
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// table or json.
        #[arg(long, default_value = "table")]
        output: String,
    },
    /// A call's message flow as a ladder: a column per IP:port, an arrow per message.
    Flow {
        /// The Call-ID.
        callid: String,
        #[command(flatten)]
        db: DbArg,
        /// Also the legs correlated through the A-leg Call-ID and the call's RTCP/QoS/log reports.
        #[arg(long)]
        related: bool,
        /// Also write one self-contained HTML page with an SVG ladder (click an arrow for the message).
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Kamailio's `sipcapture.status`: on, off or check, for every member via control.
    #[command(after_help = sipcapture_cli::status::EXIT_CODES_HELP)]
    Status {
        /// on, off or check (Kamailio's prefix rule: "ONx" means on).
        #[arg(value_parser = sipcapture_cli::status::parse_action)]
        action: String,
        /// table or json (one object: desired state and every member with its inputs).
        #[arg(long, default_value = "table", value_parser = ["table", "json"])]
        output: String,
        /// Control address.
        #[arg(long, default_value = "127.0.0.1:9061")]
        target: String,
        /// Only these members (id or address); repeatable.
        #[arg(long)]
        member: Vec<String>,
        /// Only these inputs (hep_udp, hep_tcp, hep_tls, ipip, mirror, pcap); repeatable.
        #[arg(long)]
        input: Vec<String>,
        /// Bearer token for control (its admin token, or `auth_token`); read from
        /// SIPCAPTURE_TOKEN, else SIPCAPTURE_ADMIN_TOKEN, else SIPCAPTURE_AUTH_TOKEN when not
        /// given, so it need not appear in the process list.
        #[arg(long, env = "SIPCAPTURE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// CA certificate (PEM) to trust for an `https://` target (default: the system roots).
        #[arg(long)]
        cacert: Option<PathBuf>,
        /// Client certificate (PEM) for a control that requires mTLS.
        #[arg(long, requires = "key")]
        cert: Option<PathBuf>,
        /// Private key (PEM) of `--cert`.
        #[arg(long, requires = "cert")]
        key: Option<PathBuf>,
        /// Name to verify control's certificate against instead of the target's host.
        #[arg(long)]
        server_name: Option<String>,
    },
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell) on stdout, e.g.
    /// `sipcapture completions bash > /etc/bash_completion.d/sipcapture`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Args::parse().command {
        Command::Up {
            config,
            hep_listen,
            db_url,
            capture_node,
            grpc_listen,
            set,
            check_config,
        } => {
            let flags = UpFlags {
                hep_listen,
                db_url,
                capture_node,
                grpc_listen,
            };
            let config = up::load(Sources::new(config, set), &flags)?;
            if check_config {
                println!("config ok");
                return Ok(());
            }
            let log = sipcapture_runtime::telemetry::LogSettings::new(
                config.log_format,
                &config.log_level,
            );
            sipcapture_runtime::service::main("sipcapture-up", &log, |shutdown| {
                up::run(config, shutdown, None)
            })
            .await?;
        }
        Command::Import {
            file,
            db_url,
            config,
            capture_node,
            set,
            quiet,
        } => {
            let flags = UpFlags {
                db_url,
                capture_node,
                ..Default::default()
            };
            let config = up::load(Sources::new(config, set), &flags)?;
            let stop = sipcapture_runtime::server::shutdown_on_signal();
            let summary = sipcapture_cli::import::run(config, &file, !quiet, stop).await?;
            print!("{}: imported\n{summary}", file.display());
        }
        Command::Migrate { file, from } => {
            match sipcapture_cli::migrate::migrate_file(&file, from) {
                Ok(migration) => {
                    print!("{}", migration.toml);
                    eprint!("{}", migration.render_notes(&file.display().to_string()));
                }
                Err(e) => {
                    eprintln!("Error: {e}");
                    std::process::exit(e.exit_code());
                }
            }
        }
        Command::Calls {
            db,
            from,
            to,
            user,
            callid,
            method,
            ip,
            limit,
            offset,
            output,
        } => {
            let cmd = sipcapture_cli::calls::CallsCommand {
                db: db.db,
                filters: sipcapture_storer::view::html::FormValues {
                    from: from.unwrap_or_default(),
                    to: to.unwrap_or_default(),
                    user: user.unwrap_or_default(),
                    callid: callid.unwrap_or_default(),
                    method: method.unwrap_or_default(),
                    ip: ip.unwrap_or_default(),
                },
                limit,
                offset,
                output,
            };
            print!("{}", sipcapture_cli::calls::calls(&cmd).await?);
        }
        Command::Flow {
            callid,
            db,
            related,
            html,
        } => {
            print!(
                "{}",
                sipcapture_cli::calls::flow(&db.db, &callid, related, html.as_deref()).await?
            );
        }
        Command::Completions { shell } => {
            let mut command = <Args as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "sipcapture", &mut std::io::stdout());
        }
        Command::Status {
            action,
            output,
            target,
            member,
            input,
            token,
            cacert,
            cert,
            key,
            server_name,
        } => {
            sipcapture_runtime::telemetry::init_logging();
            let tls = sipcapture_runtime::tls::GrpcClientTls {
                ca: cacert,
                cert,
                key,
                server_name,
            };
            tls.validate("status --cacert/--cert/--key")
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let token = token.or_else(|| {
                ["SIPCAPTURE_ADMIN_TOKEN", "SIPCAPTURE_AUTH_TOKEN"]
                    .iter()
                    .find_map(|name| std::env::var(name).ok().filter(|t| !t.is_empty()))
            });
            let cmd = sipcapture_cli::status::StatusCommand {
                action,
                target,
                members: member,
                inputs: input,
                token,
                tls,
            };
            let reply = match sipcapture_cli::status::status(&cmd).await {
                Ok(reply) => reply,
                Err(e) => {
                    eprintln!("Error: {e}");
                    std::process::exit(e.exit_code());
                }
            };
            if output == "json" {
                print!("{}", sipcapture_cli::status::render_json(&reply));
            } else {
                print!("{}", sipcapture_cli::status::render(&reply));
            }
            // Exit codes: EXIT_CODES_HELP (status --help).
            if reply.members.iter().any(|m| !m.reachable) {
                std::process::exit(sipcapture_cli::status::EXIT_MEMBER_UNREACHABLE);
            }
        }
    }
    Ok(())
}
