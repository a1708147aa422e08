//! The per-call context a Lua state's functions, its packet object and its instruction hook
//! share, and the services every state calls.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mlua::Value;
use sipcapture_proto::v1::InputKind;
use sipcapture_runtime::counters::Counters;

use crate::forward::Forwarder;

/// One `report_capture(table, cid, data)` call.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportRequest {
    /// Table name, used as-is (no strftime, as Kamailio).
    pub table: String,
    /// Correlation id argument (empty: the packet's chunk 0x0011).
    pub cid: Vec<u8>,
    /// Data argument (empty, or exactly `"report_capture"`: the packet's payload).
    pub data: Vec<u8>,
}

/// The per-call state the Lua functions and the packet object read (Lua app data).
#[derive(Debug, Default)]
pub(super) struct CallContext {
    pub(super) raw: Vec<u8>,
    pub(super) input: Option<InputKind>,
    pub(super) peer: Option<SocketAddr>,
    pub(super) capture: Option<(String, String)>,
    pub(super) reports: Vec<ReportRequest>,
    pub(super) deadline: Option<Instant>,
    /// Field values already read in this call (a script often reads `hep.method` several times).
    pub(super) memo: Vec<(String, Value)>,
}

/// The call context shared by a state's functions, its packet object and its instruction hook
/// (a plain mutex: cheaper per call than Lua app data, and never contended — one state, one
/// call at a time).
#[derive(Debug, Clone, Default)]
pub(super) struct Ctx(Arc<Mutex<CallContext>>);

impl Ctx {
    pub(super) fn lock(&self) -> std::sync::MutexGuard<'_, CallContext> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Shared by every state: forwarding and counters.
#[derive(Debug, Clone)]
pub(super) struct Services {
    pub(super) forwarder: Option<Arc<Forwarder>>,
    pub(super) counters: Arc<Counters>,
}
