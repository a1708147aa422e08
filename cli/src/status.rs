//! `sipcapture status on|off|check`: calls a control service and prints one line per member.

use std::fmt::Write as _;

use sipcapture_proto::v1::control_service_client::ControlServiceClient;
use sipcapture_proto::v1::{
    CaptureAction, CaptureState, ControlCheckRequest, ControlSetStatusRequest, ControlStatusReply,
    InputKind, MemberKind,
};
use sipcapture_runtime::auth::with_bearer;

/// CLI failures.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Not on/off/check.
    #[error("Bad parameter (on, off or check): {0:?}")]
    BadAction(String),
    /// Not an input kind.
    #[error("unknown input {0:?} (hep_udp, hep_tcp, hep_tls, ipip, mirror, pcap)")]
    BadInput(String),
    /// Cannot reach control.
    #[error("cannot reach control at {target}: {reason}")]
    Connect {
        /// The target.
        target: String,
        /// Why (with the transport error's causes, e.g. the TLS reason).
        reason: String,
    },
    /// The call failed.
    #[error("control answered {code:?}: {message}")]
    Call {
        /// gRPC code.
        code: tonic::Code,
        /// Message.
        message: String,
    },
}

/// Exit code: every member answered.
pub const EXIT_OK: i32 = 0;
/// Exit code: any other failure (a TLS file that cannot be read, an unexpected answer).
pub const EXIT_FAILURE: i32 = 1;
/// Exit code: a usage error (unknown action, option or value), as clap reports it.
pub const EXIT_USAGE: i32 = 2;
/// Exit code: control answered, but some member did not (the reply is printed all the same).
pub const EXIT_MEMBER_UNREACHABLE: i32 = 3;
/// Exit code: control refused the call (a missing or wrong token or certificate).
pub const EXIT_REFUSED: i32 = 4;
/// Exit code: control itself cannot be reached.
pub const EXIT_CONTROL_UNREACHABLE: i32 = 5;

/// The exit codes as `--help` prints them.
pub const EXIT_CODES_HELP: &str = "Exit codes:
  0  every member answered
  1  any other failure
  2  usage error (unknown action, option or value)
  3  control answered but some member did not (the table is printed all the same)
  4  refused: control wants a token (--token, SIPCAPTURE_TOKEN) or a client certificate
  5  control cannot be reached";

impl CliError {
    /// The process exit code for this failure (see [`EXIT_CODES_HELP`]).
    pub fn exit_code(&self) -> i32 {
        match self {
            CliError::BadAction(_) | CliError::BadInput(_) => EXIT_USAGE,
            CliError::Connect { .. } => EXIT_CONTROL_UNREACHABLE,
            CliError::Call { code, .. } => match code {
                tonic::Code::Unauthenticated | tonic::Code::PermissionDenied => EXIT_REFUSED,
                tonic::Code::Unavailable => EXIT_CONTROL_UNREACHABLE,
                _ => EXIT_FAILURE,
            },
        }
    }
}

/// Parses the action for clap: Kamailio's prefix rule, refused with the choices otherwise.
pub fn parse_action(arg: &str) -> Result<String, String> {
    match CaptureAction::parse_kamailio(arg) {
        Some(_) => Ok(arg.to_owned()),
        None => Err(
            "Bad parameter (on, off or check; Kamailio's prefix rule: \"ONx\" means on)".to_owned(),
        ),
    }
}

/// Normalises a `--target` to a URL (`host:port` → `http://host:port`).
pub fn target_url(target: &str) -> String {
    if target.contains("://") {
        target.to_owned()
    } else {
        format!("http://{target}")
    }
}

/// What one `sipcapture status` call asks for.
#[derive(Debug, Clone, Default)]
pub struct StatusCommand {
    /// on, off or check (Kamailio's prefix rule).
    pub action: String,
    /// Control address (`host:port` or URL).
    pub target: String,
    /// Only these members (ids or addresses).
    pub members: Vec<String>,
    /// Only these inputs (`hep_udp`, `hep_tcp`, `hep_tls`, `ipip`, `mirror`, `pcap`).
    pub inputs: Vec<String>,
    /// Bearer token for control.
    pub token: Option<String>,
    /// TLS for an `https://` target (`--cacert`, `--cert`, `--key`, `--server-name`).
    pub tls: sipcapture_runtime::tls::GrpcClientTls,
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        // Layers often repeat their cause's text ("tcp connect error: tcp connect error"):
        // each cause is printed once.
        let cause = inner.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
        source = inner.source();
    }
    text
}

/// Parses an input kind name: `hep_udp` or `INPUT_KIND_HEP_UDP`, any case.
pub fn parse_input(name: &str) -> Result<InputKind, CliError> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("INPUT_KIND_") {
        upper
    } else {
        format!("INPUT_KIND_{upper}")
    };
    InputKind::from_str_name(&full)
        .filter(|k| *k != InputKind::Unspecified)
        .ok_or_else(|| CliError::BadInput(name.to_owned()))
}

/// Runs one status command against control and returns the reply.
pub async fn status(cmd: &StatusCommand) -> Result<ControlStatusReply, CliError> {
    let action = CaptureAction::parse_kamailio(&cmd.action)
        .ok_or_else(|| CliError::BadAction(cmd.action.clone()))?;
    let inputs = cmd
        .inputs
        .iter()
        .map(|i| parse_input(i).map(|k| k as i32))
        .collect::<Result<Vec<_>, _>>()?;
    let url = target_url(&cmd.target);
    let connect_error = |reason: String| CliError::Connect {
        target: url.clone(),
        reason,
    };
    let channel = cmd
        .tls
        .endpoint(&url)
        .map_err(|e| connect_error(e.to_string()))?
        .connect()
        .await
        .map_err(|e| connect_error(error_chain(&e)))?;
    let mut client = ControlServiceClient::new(channel);
    let reply = match action {
        CaptureAction::Check if cmd.members.is_empty() => {
            client.check(ControlCheckRequest {}).await
        }
        _ => {
            let request = ControlSetStatusRequest {
                action: action as i32,
                inputs,
                members: cmd.members.clone(),
            };
            client
                .set_status(with_bearer(
                    tonic::Request::new(request),
                    cmd.token.as_deref(),
                ))
                .await
        }
    };
    reply.map(tonic::Response::into_inner).map_err(|s| {
        let mut message = match std::error::Error::source(&s) {
            // A refused TLS handshake surfaces as a bare transport error: the reason (e.g.
            // "received fatal alert: CertificateRequired") is in the source chain.
            Some(source) => format!("{}: {}", s.message(), error_chain(source)),
            None => s.message().to_owned(),
        };
        let transport = matches!(
            s.code(),
            tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Unavailable
        );
        if transport && url.starts_with("https://") && !cmd.tls.has_identity() {
            message.push_str(
                " (a control with grpc_tls.client_ca refuses clients without a certificate: \
                     pass --cert and --key)",
            );
        }
        CliError::Call {
            code: s.code(),
            message,
        }
    })
}

fn kind_name(kind: i32) -> &'static str {
    match MemberKind::try_from(kind).unwrap_or(MemberKind::Unspecified) {
        MemberKind::Collector => "collector",
        MemberKind::Storer => "storer",
        MemberKind::AllInOne => "all-in-one",
        MemberKind::Unspecified => "?",
    }
}

fn state_name(state: i32, reachable: bool) -> &'static str {
    if !reachable {
        return "UNREACHABLE";
    }
    match CaptureState::try_from(state).unwrap_or(CaptureState::Unspecified) {
        CaptureState::Enabled => "Enabled",
        CaptureState::Disabled => "Disabled",
        CaptureState::Unspecified => "?",
    }
}

/// Renders a reply as one JSON object: `desired`, `reply` and a `members` array (id, kind,
/// address, reachable, state, error, last seen, per-input states), for scripts and alerting.
pub fn render_json(reply: &ControlStatusReply) -> String {
    let members: Vec<serde_json::Value> = reply
        .members
        .iter()
        .map(|m| {
            let inputs: Vec<serde_json::Value> = m
                .inputs
                .iter()
                .map(|i| {
                    let input = InputKind::try_from(i.input).unwrap_or(InputKind::Unspecified);
                    let name = input
                        .as_str_name()
                        .trim_start_matches("INPUT_KIND_")
                        .to_ascii_lowercase();
                    serde_json::json!({ "input": name, "state": state_name(i.state, true) })
                })
                .collect();
            serde_json::json!({
                "member_id": m.member_id,
                "kind": kind_name(m.kind),
                "address": m.address,
                "reachable": m.reachable,
                "state": state_name(m.state, m.reachable),
                "error": m.error,
                "last_seen_unix_ms": m.last_seen_unix_ms,
                "inputs": inputs,
            })
        })
        .collect();
    let desired = CaptureState::try_from(reply.desired).unwrap_or(CaptureState::Unspecified);
    let value = serde_json::json!({
        "desired": state_name(desired as i32, true),
        "reply": reply.reply,
        "members": members,
    });
    format!("{value:#}\n")
}

/// Renders a reply as a table: the desired state, then member, kind, address, state, last seen.
pub fn render(reply: &ControlStatusReply) -> String {
    let mut rows = vec![[
        "MEMBER".to_owned(),
        "KIND".to_owned(),
        "ADDRESS".to_owned(),
        "STATE".to_owned(),
        "LAST SEEN".to_owned(),
    ]];
    for m in &reply.members {
        let seen = if m.last_seen_unix_ms == 0 {
            "never".to_owned()
        } else {
            chrono::DateTime::from_timestamp_millis(m.last_seen_unix_ms)
                .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
                .unwrap_or_default()
        };
        let state = if m.reachable {
            state_name(m.state, true).to_owned()
        } else {
            format!("UNREACHABLE ({})", m.error)
        };
        rows.push([
            m.member_id.clone(),
            kind_name(m.kind).to_owned(),
            m.address.clone(),
            state,
            seen,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let _ = writeln!(out, "desired: {}", reply.reply);
    for row in rows {
        let mut line = String::new();
        for (cell, width) in row.iter().zip(&widths) {
            let _ = write!(line, "{cell:<width$}  ");
        }
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipcapture_proto::v1::MemberStatus;

    #[test]
    fn renders_a_table() {
        let reply = ControlStatusReply {
            desired: CaptureState::Disabled as i32,
            reply: "Disabled".into(),
            members: vec![
                MemberStatus {
                    member_id: "collector-a".into(),
                    kind: MemberKind::Collector as i32,
                    address: "http://10.0.0.1:9062".into(),
                    state: CaptureState::Disabled as i32,
                    reachable: true,
                    last_seen_unix_ms: 1_700_000_000_000,
                    ..Default::default()
                },
                MemberStatus {
                    member_id: "http://10.0.0.2:9063".into(),
                    address: "http://10.0.0.2:9063".into(),
                    reachable: false,
                    error: "unreachable".into(),
                    ..Default::default()
                },
            ],
        };
        let text = render(&reply);
        assert!(text.starts_with("desired: Disabled\nMEMBER"));
        assert!(text.contains("collector-a"));
        assert!(text.contains("Disabled"));
        assert!(text.contains("UNREACHABLE (unreachable)"));
        assert!(text.contains("never"));
        assert_eq!(target_url("127.0.0.1:9061"), "http://127.0.0.1:9061");
        assert_eq!(parse_input("hep_udp").unwrap(), InputKind::HepUdp);
        assert_eq!(parse_input("MIRROR").unwrap(), InputKind::Mirror);
        assert!(parse_input("carrier_pigeon").is_err());
    }
}
