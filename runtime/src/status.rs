//! The capture switch every member obeys (Kamailio's shared `capture_on_flag`, per input kind
//! here) and the `StatusService` that serves it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tonic::{Request, Response, Status};

use crate::counters::Counters;
use crate::events::{InternalEvent, StatusChanged};
use sipcapture_proto::v1::status_service_server::StatusService;
use sipcapture_proto::v1::{
    CaptureAction, CaptureState, CheckRequest, DesiredStatus, InputKind, InputState, MemberKind,
    SetStatusRequest, StatusReply,
};

/// Input kinds a collector can switch one by one.
pub const INPUT_KINDS: [InputKind; 6] = [
    InputKind::HepUdp,
    InputKind::HepTcp,
    InputKind::HepTls,
    InputKind::Ipip,
    InputKind::Mirror,
    InputKind::Pcap,
];

/// On/off flags: one for the member as a whole (what a storer obeys) and one per input kind
/// (what a collector obeys). Changes are announced on a watch channel.
#[derive(Debug)]
pub struct CaptureSwitch {
    global: AtomicBool,
    inputs: [AtomicBool; INPUT_KINDS.len()],
    changed: tokio::sync::watch::Sender<u64>,
}

fn input_index(input: InputKind) -> Option<usize> {
    INPUT_KINDS.iter().position(|k| *k == input)
}

impl CaptureSwitch {
    /// A switch with every flag set to `on`.
    pub fn new(on: bool) -> Self {
        CaptureSwitch {
            global: AtomicBool::new(on),
            inputs: std::array::from_fn(|_| AtomicBool::new(on)),
            changed: tokio::sync::watch::channel(0).0,
        }
    }

    /// Whether the member as a whole captures (storers store).
    pub fn is_on(&self) -> bool {
        self.global.load(Ordering::Relaxed)
    }

    /// Whether records of `input` are emitted (collectors).
    pub fn input_on(&self, input: InputKind) -> bool {
        input_index(input)
            .and_then(|i| self.inputs.get(i))
            .is_none_or(|f| f.load(Ordering::Relaxed))
    }

    /// Sets the flags: with no inputs, the whole member and every input; else those inputs.
    pub fn set(&self, on: bool, inputs: &[InputKind]) {
        if inputs.is_empty() {
            self.global.store(on, Ordering::Relaxed);
            for flag in &self.inputs {
                flag.store(on, Ordering::Relaxed);
            }
        } else {
            for input in inputs {
                if let Some(flag) = input_index(*input).and_then(|i| self.inputs.get(i)) {
                    flag.store(on, Ordering::Relaxed);
                }
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// The overall state: enabled when the member and every input are on.
    pub fn state(&self) -> CaptureState {
        let all = self.is_on() && self.inputs.iter().all(|f| f.load(Ordering::Relaxed));
        CaptureState::from_enabled(all)
    }

    /// Per-input states.
    pub fn input_states(&self) -> Vec<InputState> {
        INPUT_KINDS
            .iter()
            .map(|k| InputState {
                input: *k as i32,
                state: CaptureState::from_enabled(self.input_on(*k)) as i32,
            })
            .collect()
    }

    /// The switch's flags as a desired status (what control sends to members).
    pub fn desired(&self) -> DesiredStatus {
        DesiredStatus {
            state: CaptureState::from_enabled(self.is_on()) as i32,
            inputs: self.input_states(),
        }
    }

    /// Applies a desired status from control: the member flag and every listed input.
    pub fn apply_desired(&self, desired: &DesiredStatus) {
        let on = desired.state == CaptureState::Enabled as i32;
        self.global.store(on, Ordering::Relaxed);
        if desired.inputs.is_empty() {
            for flag in &self.inputs {
                flag.store(on, Ordering::Relaxed);
            }
        }
        for input in &desired.inputs {
            let kind = InputKind::try_from(input.input).unwrap_or(InputKind::Unspecified);
            if let Some(flag) = input_index(kind).and_then(|i| self.inputs.get(i)) {
                flag.store(
                    input.state == CaptureState::Enabled as i32,
                    Ordering::Relaxed,
                );
            }
        }
        self.changed.send_modify(|n| *n += 1);
    }

    /// A receiver that sees every change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// The `input` label value of an input kind (metrics).
pub fn input_label(input: InputKind) -> &'static str {
    match input {
        InputKind::HepUdp => "hep_udp",
        InputKind::HepTcp => "hep_tcp",
        InputKind::HepTls => "hep_tls",
        InputKind::Ipip => "ipip",
        InputKind::Mirror => "mirror",
        InputKind::Pcap => "pcap",
        InputKind::Unspecified => "unspecified",
    }
}

/// Registers gauge `capture_on` of `counters`, read from `switch` at scrape time (1 on, 0 off;
/// an operator alerts on "capture left off"): per input kind (label `input`) when `per_input`
/// (collectors; control's desired status), else the member flag (storers).
pub fn register_capture_gauge(counters: &Counters, switch: Arc<CaptureSwitch>, per_input: bool) {
    counters.gauge_fn("capture_on", move |report| {
        if per_input {
            for input in INPUT_KINDS {
                report(input_label(input), i64::from(switch.input_on(input)));
            }
        } else {
            report("", i64::from(switch.is_on()));
        }
    });
}

/// `sipcapture.v1.StatusService` for one member.
#[derive(Debug, Clone)]
pub struct StatusServer {
    member_id: String,
    kind: MemberKind,
    switch: Arc<CaptureSwitch>,
    counters: Vec<Arc<Counters>>,
    auth: crate::auth::Authorizer,
}

impl StatusServer {
    /// A status service over a switch; `counters` are reported in replies.
    pub fn new(
        member_id: impl Into<String>,
        kind: MemberKind,
        switch: Arc<CaptureSwitch>,
        counters: Vec<Arc<Counters>>,
    ) -> Self {
        StatusServer {
            member_id: member_id.into(),
            kind,
            switch,
            counters,
            auth: crate::auth::Authorizer::default(),
        }
    }

    /// Requires `authorization: Bearer <token>` on SetStatus when `token` is set (without
    /// one, any peer may call it).
    pub fn with_token(self, token: Option<String>) -> Self {
        self.with_auth(crate::auth::Authorizer::new(token, Vec::new()))
    }

    /// Requires the token or an allowed client identity on SetStatus (Check stays open).
    pub fn with_auth(mut self, auth: crate::auth::Authorizer) -> Self {
        self.auth = auth;
        self
    }

    /// The member id.
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// The member kind.
    pub fn kind(&self) -> MemberKind {
        self.kind
    }

    /// The switch.
    pub fn switch(&self) -> &Arc<CaptureSwitch> {
        &self.switch
    }

    /// Applies a request and returns the reply (also used in-process by `sipcapture up`).
    pub fn apply(&self, req: &SetStatusRequest) -> Result<StatusReply, Status> {
        let action = CaptureAction::try_from(req.action)
            .map_err(|_| Status::invalid_argument("Bad parameter (on, off or check)"))?;
        let inputs = req
            .inputs
            .iter()
            .map(|i| {
                InputKind::try_from(*i)
                    .map_err(|_| Status::invalid_argument(format!("unknown input kind {i}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        match action {
            CaptureAction::On | CaptureAction::Off => {
                let on = action == CaptureAction::On;
                self.switch.set(on, &inputs);
                let event = StatusChanged {
                    member: &self.member_id,
                    on,
                    inputs: &inputs,
                };
                if let Some(counters) = self.counters.first() {
                    event.emit(counters);
                }
            }
            CaptureAction::Check => {}
            CaptureAction::Unspecified => {
                return Err(Status::invalid_argument(
                    "Not enough parameters (on, off or check)",
                ));
            }
        }
        Ok(self.reply())
    }

    /// The current state as a reply.
    pub fn reply(&self) -> StatusReply {
        let state = self.switch.state();
        let mut counters = std::collections::HashMap::new();
        for c in &self.counters {
            for (k, v) in c.snapshot() {
                *counters.entry(k).or_insert(0) += v;
            }
        }
        StatusReply {
            member_id: self.member_id.clone(),
            kind: self.kind as i32,
            state: state as i32,
            reply: state.reply_text().to_owned(),
            inputs: self.switch.input_states(),
            counters,
        }
    }
}

#[tonic::async_trait]
impl StatusService for StatusServer {
    async fn set_status(
        &self,
        request: Request<SetStatusRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        self.auth.check(&request)?;
        self.apply(request.get_ref()).map(Response::new)
    }

    async fn check(
        &self,
        _request: Request<CheckRequest>,
    ) -> Result<Response<StatusReply>, Status> {
        Ok(Response::new(self.reply()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn switch_per_input_and_global() {
        let s = CaptureSwitch::new(true);
        assert_eq!(s.state(), CaptureState::Enabled);
        s.set(false, &[InputKind::Mirror]);
        assert!(s.is_on());
        assert!(!s.input_on(InputKind::Mirror));
        assert!(s.input_on(InputKind::HepUdp));
        assert_eq!(s.state(), CaptureState::Disabled);
        s.set(true, &[]);
        assert_eq!(s.state(), CaptureState::Enabled);
        s.set(false, &[]);
        assert!(!s.is_on() && !s.input_on(InputKind::HepUdp));
    }

    #[test]
    fn apply_replies_like_kamailio() {
        let server = StatusServer::new(
            "m1",
            MemberKind::Storer,
            Arc::new(CaptureSwitch::new(true)),
            vec![],
        );
        let r = server
            .apply(&SetStatusRequest {
                action: CaptureAction::Off as i32,
                inputs: vec![],
            })
            .unwrap();
        assert_eq!(r.reply, "Disabled");
        let r = server
            .apply(&SetStatusRequest {
                action: CaptureAction::Check as i32,
                inputs: vec![],
            })
            .unwrap();
        assert_eq!(r.reply, "Disabled");
        let r = server
            .apply(&SetStatusRequest {
                action: CaptureAction::On as i32,
                inputs: vec![],
            })
            .unwrap();
        assert_eq!(r.reply, "Enabled");
        assert!(
            server
                .apply(&SetStatusRequest {
                    action: 0,
                    inputs: vec![]
                })
                .is_err()
        );
    }
}
