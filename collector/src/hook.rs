//! The embedded Lua hook: Kamailio's `nonsip_hook` + `event_route[sipcapture:request]` /
//! `event_callback`, run on every decoded HEP packet before it becomes a record.
//!
//! The script's `event_callback` function is called with the event name `"sipcapture:request"`
//! and a packet object exposing every HEP field (by name, `hep.src_ip`, and by chunk id,
//! `hep:chunk(0x000f)`, with the values and types of Kamailio's `$hep(...)`). It can call
//! `sip_capture(table, mode)`, `report_capture(table, cid, data)`, `sip_capture_forward(uri)`,
//! `float2int(fval, ival)` and `log(level, msg)`; returning 0 drops the packet (counted
//! `dropped.script`), 1 (or nothing) lets it continue to SIP parsing and storage.
//!
//! Each worker thread borrows one Lua state from a small pool (no lock contention on the hot
//! path). A reload (SIGHUP or a change of the file) compiles the new script once; states pick
//! it up on their next packet. A script that fails to load, or fails at run time, is logged
//! with file and line and counted (`script_errors`), and the packet takes the default path.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use mlua::{
    AnyUserData, Function, HookTriggers, Lua, MetaMethod, UserData, UserDataMethods, Value, VmState,
};
use sipcapture_proto::v1::InputKind;
use sipcapture_runtime::counters::Counters;
use tokio_util::sync::CancellationToken;

use crate::decode::hep::{self, HepPacket, HepPayload};
use crate::events::{InternalEvent, ScriptFailed, ScriptLoadFailed, ScriptLoaded};
use crate::forward::Forwarder;

/// The event name the callback receives (Kamailio's `event_route[sipcapture:request]`).
pub const EVENT_NAME: &str = "sipcapture:request";
/// How often (in VM instructions) the time limit is checked.
const INSTRUCTION_CHECK: u32 = 10_000;
/// How often the script file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Hook settings (from the collector config).
#[derive(Debug, Clone)]
pub struct HookSettings {
    /// The Lua file.
    pub script_file: PathBuf,
    /// The function called per packet.
    pub event_callback: String,
    /// Longest a call may run before it is aborted (an error: the packet continues).
    pub timeout: Duration,
    /// Memory cap per Lua state, bytes (0: none).
    pub memory_limit: usize,
    /// Lua states in the pool (concurrent calls).
    pub states: usize,
}

/// Why a script could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    /// The file could not be read.
    #[error("script_file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Lua rejected the file (syntax error, error at load time), with file and line.
    #[error("{0}")]
    Lua(String),
    /// The callback function is not defined by the script.
    #[error("script_file {path}: event_callback {name:?} is not a function")]
    NoCallback {
        /// The file.
        path: PathBuf,
        /// The missing function.
        name: String,
    },
}

/// What the script decided for one packet.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Verdict {
    /// False when the script returned anything but 1 (or nothing): do not store, unless
    /// `sip_capture()` was called.
    pub proceed: bool,
    /// `sip_capture(table, mode)` was called (last call wins): store with these hints.
    pub capture: Option<(String, String)>,
    /// `report_capture` calls, in order.
    pub reports: Vec<ReportRequest>,
    /// The call failed (error or time-out): the packet takes the default path.
    pub failed: bool,
}

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
struct CallContext {
    raw: Vec<u8>,
    input: Option<InputKind>,
    peer: Option<SocketAddr>,
    capture: Option<(String, String)>,
    reports: Vec<ReportRequest>,
    deadline: Option<Instant>,
    /// Field values already read in this call (a script often reads `hep.method` several times).
    memo: Vec<(String, Value)>,
}

/// The call context shared by a state's functions, its packet object and its instruction hook
/// (a plain mutex: cheaper per call than Lua app data, and never contended — one state, one
/// call at a time).
#[derive(Debug, Clone, Default)]
struct Ctx(Arc<Mutex<CallContext>>);

impl Ctx {
    fn lock(&self) -> std::sync::MutexGuard<'_, CallContext> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Shared by every state: forwarding and counters.
#[derive(Debug, Clone)]
struct Services {
    forwarder: Option<Arc<Forwarder>>,
    counters: Arc<Counters>,
}

/// The loaded script text and its generation.
#[derive(Debug)]
struct Script {
    generation: u64,
    source: Option<Arc<str>>,
    mtime: Option<SystemTime>,
}

struct State {
    generation: u64,
    /// Keeps the Lua state alive next to the references into it.
    _lua: Lua,
    callback: Function,
    packet: AnyUserData,
    event: mlua::LuaString,
    ctx: Ctx,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// The hook: the script, a pool of Lua states, and the services the script calls.
#[derive(Debug)]
pub struct Hook {
    settings: HookSettings,
    script: RwLock<Script>,
    states: Vec<Mutex<Option<State>>>,
    next: AtomicUsize,
    services: Services,
}

/// The optional per-packet extensions of an [`crate::source::ingest::Ingest`]: the Lua hook
/// (`nonsip_hook = 1`) and HEP forwarding (`[[forward]]` rules, `sip_capture_forward`).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// The Lua hook, when `nonsip_hook = 1`.
    pub hook: Option<Arc<Hook>>,
    /// The forwarder, when forward rules or the hook are configured.
    pub forwarder: Option<Arc<Forwarder>>,
}

/// The packet object handed to the callback; reads the current call's packet.
struct PacketObject(Ctx);

impl Hook {
    /// Loads the script (a failure is logged and counted; the hook then does nothing until a
    /// good version is loaded).
    pub fn new(
        settings: HookSettings,
        forwarder: Option<Arc<Forwarder>>,
        counters: Arc<Counters>,
    ) -> Arc<Self> {
        let states = (0..settings.states.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        let hook = Arc::new(Hook {
            settings,
            script: RwLock::new(Script {
                generation: 0,
                source: None,
                mtime: None,
            }),
            states,
            next: AtomicUsize::new(0),
            services: Services {
                forwarder,
                counters,
            },
        });
        hook.reload();
        hook
    }

    /// Re-reads and checks the script; on success the pool switches to it, on failure the
    /// previous version stays (logged and counted `script_errors`). Returns whether it loaded.
    pub fn reload(&self) -> bool {
        let path = &self.settings.script_file;
        let mtime = modified(path);
        let result = std::fs::read_to_string(path)
            .map_err(|source| ScriptError::Read {
                path: path.clone(),
                source,
            })
            .and_then(|text| {
                build_state(&self.settings, &text, &self.services, 0)?;
                Ok(text)
            });
        let mut script = self
            .script
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        script.mtime = mtime;
        match result {
            Ok(text) => {
                script.generation += 1;
                script.source = Some(Arc::from(text));
                ScriptLoaded {
                    file: path,
                    generation: script.generation,
                }
                .emit(&self.services.counters);
                true
            }
            Err(e) => {
                ScriptLoadFailed {
                    file: path,
                    error: &e,
                }
                .emit(&self.services.counters);
                false
            }
        }
    }

    /// Reloads when the file's modification time changed since the last (attempted) load.
    pub fn reload_if_changed(&self) -> bool {
        let now = modified(&self.settings.script_file);
        let last = self
            .script
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .mtime;
        if now != last && now.is_some() {
            return self.reload();
        }
        false
    }

    /// Reloads on SIGHUP and when the file changes, until `shutdown`.
    pub async fn watch(self: Arc<Self>, shutdown: CancellationToken) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "no SIGHUP handler; the script reloads on file change only");
                None
            }
        };
        let mut tick = tokio::time::interval(WATCH_INTERVAL);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = async {
                    match hup.as_mut() {
                        Some(s) => s.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    tracing::info!("SIGHUP: reloading the lua script");
                    self.reload();
                }
                _ = tick.tick() => {
                    self.reload_if_changed();
                }
            }
        }
    }

    /// Runs the callback on one decoded packet (`raw` is the whole received packet).
    pub fn run(&self, raw: &[u8], input: InputKind, peer: Option<SocketAddr>) -> Verdict {
        let default = Verdict {
            proceed: true,
            ..Verdict::default()
        };
        let n = self.states.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let mut guard = None;
        for i in 0..n {
            if let Some(slot) = self.states.get((start + i) % n)
                && let Ok(g) = slot.try_lock()
            {
                guard = Some(g);
                break;
            }
        }
        let mut guard = match guard {
            Some(g) => g,
            None => match self.states.get(start % n) {
                Some(slot) => slot
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
                None => return default,
            },
        };
        // The source is cloned only when this state must be (re)built.
        let rebuild = {
            let script = self
                .script
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let Some(source) = &script.source else {
                return default;
            };
            guard
                .as_ref()
                .is_none_or(|s| s.generation != script.generation)
                .then(|| (script.generation, source.clone()))
        };
        if let Some((generation, source)) = rebuild {
            *guard = match build_state(&self.settings, &source, &self.services, generation) {
                Ok(state) => Some(state),
                Err(e) => {
                    self.count_error(&e.to_string());
                    return Verdict {
                        failed: true,
                        ..default
                    };
                }
            };
        }
        let Some(state) = guard.as_mut() else {
            return default;
        };
        self.call(state, raw, input, peer)
    }

    fn call(
        &self,
        state: &mut State,
        raw: &[u8],
        input: InputKind,
        peer: Option<SocketAddr>,
    ) -> Verdict {
        {
            let mut ctx = state.ctx.lock();
            ctx.raw.clear();
            ctx.raw.extend_from_slice(raw);
            ctx.input = Some(input);
            ctx.peer = peer;
            ctx.capture = None;
            ctx.reports.clear();
            ctx.memo.clear();
            // Started by the instruction hook on its first tick: no clock read per call.
            ctx.deadline = None;
        }
        let result = state.callback.call::<Value>((&state.event, &state.packet));
        let (capture, reports) = {
            let mut ctx = state.ctx.lock();
            (ctx.capture.take(), std::mem::take(&mut ctx.reports))
        };
        match result {
            Ok(value) => Verdict {
                proceed: returns_continue(&value),
                capture,
                reports,
                failed: false,
            },
            Err(e) => {
                self.count_error(&e.to_string());
                // Default path: the packet continues; what the script did before failing
                // (reports, forwards) stands, as in Kamailio.
                Verdict {
                    proceed: true,
                    capture,
                    reports,
                    failed: true,
                }
            }
        }
    }

    fn count_error(&self, message: &str) {
        // Lua's messages start with `file:line:`; keep the first line (no traceback).
        let first = message.lines().next().unwrap_or(message);
        ScriptFailed {
            file: &self.settings.script_file,
            error: first,
        }
        .emit(&self.services.counters);
    }
}

/// Kamailio's contract: 1 continues; 0 (and any other code) stops. A function that returns
/// nothing (or `true`) continues, so a logging-only script never loses packets.
fn returns_continue(value: &Value) -> bool {
    match value {
        Value::Nil => true,
        Value::Boolean(b) => *b,
        Value::Integer(i) => *i == 1,
        Value::Number(n) => (*n - 1.0).abs() < f64::EPSILON,
        _ => true,
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Lua's chunk name `@file`, so messages read `file:line: ...`.
fn chunk_name(path: &Path) -> String {
    format!("@{}", path.display())
}

/// A fresh Lua state with the API installed and the script run; checks the callback exists.
fn build_state(
    settings: &HookSettings,
    source: &str,
    services: &Services,
    generation: u64,
) -> Result<State, ScriptError> {
    let lua_err = |e: mlua::Error| ScriptError::Lua(e.to_string());
    let lua = Lua::new();
    if settings.memory_limit > 0 {
        lua.set_memory_limit(settings.memory_limit)
            .map_err(lua_err)?;
    }
    let ctx = Ctx::default();
    lua.set_app_data(services.clone());
    install_api(&lua, &ctx).map_err(lua_err)?;
    let timeout = settings.timeout;
    let hook_ctx = ctx.clone();
    lua.set_global_hook(
        HookTriggers::new().every_nth_instruction(INSTRUCTION_CHECK),
        move |_lua, _debug| {
            let now = Instant::now();
            // The first tick of a call (after INSTRUCTION_CHECK instructions) starts its clock;
            // a call this short never reads the clock at all.
            let expired = {
                let mut c = hook_ctx.lock();
                let deadline = *c.deadline.get_or_insert(now + timeout);
                now > deadline
            };
            if expired {
                return Err(mlua::Error::RuntimeError(
                    "script time limit exceeded".to_owned(),
                ));
            }
            Ok(VmState::Continue)
        },
    )
    .map_err(lua_err)?;
    // Loading runs the file's top level; no deadline applies then, but it runs once per
    // state, not per packet.
    lua.load(source)
        .set_name(chunk_name(&settings.script_file))
        .exec()
        .map_err(lua_err)?;
    let callback: Function = match lua.globals().get::<Value>(settings.event_callback.as_str()) {
        Ok(Value::Function(f)) => f,
        _ => {
            return Err(ScriptError::NoCallback {
                path: settings.script_file.clone(),
                name: settings.event_callback.clone(),
            });
        }
    };
    let packet = lua
        .create_userdata(PacketObject(ctx.clone()))
        .map_err(lua_err)?;
    let event = lua.create_string(EVENT_NAME).map_err(lua_err)?;
    Ok(State {
        generation,
        _lua: lua,
        callback,
        packet,
        event,
        ctx,
    })
}

/// Checks a script without running the collector (`--check-config`).
pub fn check_script(path: &Path, event_callback: &str) -> Result<(), ScriptError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
        path: path.to_owned(),
        source,
    })?;
    let settings = HookSettings {
        script_file: path.to_owned(),
        event_callback: event_callback.to_owned(),
        timeout: Duration::from_secs(1),
        memory_limit: 0,
        states: 1,
    };
    let services = Services {
        forwarder: None,
        counters: Arc::new(Counters::new("collector")),
    };
    build_state(&settings, &text, &services, 0).map(|_| ())
}

/// Lua value → bytes (strings as they are, numbers in their Lua text form, nil → empty).
fn arg_bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Integer(i) => i.to_string().into_bytes(),
        Value::Number(n) => n.to_string().into_bytes(),
        Value::Boolean(b) => b.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn arg_text(value: &Value) -> String {
    String::from_utf8_lossy(&arg_bytes(value)).into_owned()
}

fn install_api(lua: &Lua, ctx: &Ctx) -> mlua::Result<()> {
    let globals = lua.globals();

    // sip_capture([table], [mode]): store this packet, with Kamailio's table / capture-mode hints.
    let call = ctx.clone();
    let sip_capture = lua.create_function(move |_, (table, mode): (Value, Value)| {
        let table = arg_text(&table);
        let mode = arg_text(&mode);
        if !table
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'%')
        {
            tracing::warn!(
                table,
                "sip_capture: table name must be [A-Za-z0-9_] with strftime %-sequences"
            );
            return Ok(-1);
        }
        call.lock().capture = Some((table, mode));
        Ok(1)
    })?;
    globals.set("sip_capture", sip_capture)?;

    // report_capture(table, [cid], [data]).
    let call = ctx.clone();
    let report_capture =
        lua.create_function(move |_, (table, cid, data): (Value, Value, Value)| {
            let table = arg_text(&table);
            if table.is_empty()
                || !table
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_')
            {
                tracing::warn!(table, "report_capture: table name must be [A-Za-z0-9_]");
                return Ok(-1);
            }
            let mut data = arg_bytes(&data);
            // Kamailio's workaround: a data argument exactly "report_capture" counts as empty.
            if data == b"report_capture" {
                data.clear();
            }
            call.lock().reports.push(ReportRequest {
                table,
                cid: arg_bytes(&cid),
                data,
            });
            Ok(1)
        })?;
    globals.set("report_capture", report_capture)?;

    // sip_capture_forward(uri): the raw packet to another HEP collector.
    let call = ctx.clone();
    let forward = lua.create_function(move |lua, uri: String| {
        let services = lua.app_data_ref::<Services>().map(|s| s.clone());
        let Some(forwarder) = services.as_ref().and_then(|s| s.forwarder.clone()) else {
            return Ok(-1);
        };
        let raw = call.lock().raw.clone();
        match forwarder.forward_raw(&uri, &raw) {
            Ok(()) => Ok(1),
            Err(e) => {
                tracing::warn!(uri, error = %e, "sip_capture_forward failed");
                Ok(-1)
            }
        }
    })?;
    globals.set("sip_capture_forward", forward)?;

    // float2int(fval, ival): (int)(atof(fval) * atoi(ival)), -1 when that is 0.
    let float2int = lua
        .create_function(|_, (f, i): (Value, Value)| Ok(float2int(&arg_text(&f), &arg_text(&i))))?;
    globals.set("float2int", float2int)?;

    // log(level, msg) / log(msg).
    let log = lua.create_function(|_, (a, b): (Value, Value)| {
        let (level, msg) = match b {
            Value::Nil => ("info".to_owned(), arg_text(&a)),
            _ => (arg_text(&a).to_ascii_lowercase(), arg_text(&b)),
        };
        match level.as_str() {
            "err" | "error" | "crit" | "alert" | "1" => tracing::error!(target: "lua", "{msg}"),
            "warn" | "warning" | "2" => tracing::warn!(target: "lua", "{msg}"),
            "dbg" | "debug" | "4" => tracing::debug!(target: "lua", "{msg}"),
            _ => tracing::info!(target: "lua", "{msg}"),
        }
        Ok(())
    })?;
    globals.set("log", log)?;
    Ok(())
}

/// Kamailio `float2int(fval, ival)`: C `atof` and `atoi` (leading number, else 0), product cut
/// toward zero to an int; -1 when the result is 0.
pub fn float2int(fval: &str, ival: &str) -> i64 {
    let product = c_atof(fval) * c_atoi(ival) as f64;
    // C's (int) conversion: truncation toward zero, saturating here instead of UB.
    let result = if product.is_finite() {
        product.trunc().clamp(i32::MIN as f64, i32::MAX as f64) as i64
    } else {
        0
    };
    if result == 0 { -1 } else { result }
}

fn c_atoi(s: &str) -> i64 {
    let t = s.trim_start();
    let (neg, digits) = match t.as_bytes().first() {
        Some(b'-') => (true, t.get(1..).unwrap_or_default()),
        Some(b'+') => (false, t.get(1..).unwrap_or_default()),
        _ => (false, t),
    };
    let end = digits
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(digits.len());
    let value = digits
        .get(..end)
        .unwrap_or_default()
        .parse::<i64>()
        .unwrap_or(0)
        .clamp(i64::from(i32::MIN), i64::from(i32::MAX));
    if neg { -value } else { value }
}

fn c_atof(s: &str) -> f64 {
    let t = s.trim_start();
    // The longest prefix that parses as a decimal float (C strtod without hex/inf/nan).
    let bytes = t.as_bytes();
    let mut end = 0;
    let mut best = 0.0;
    while end < bytes.len() {
        end += 1;
        if let Some(prefix) = t.get(..end)
            && let Ok(v) = prefix.parse::<f64>()
            && !prefix.ends_with(['i', 'n', 'I', 'N', 'f', 'F', 'a', 'A', 'y', 'Y', 't', 'T'])
        {
            best = v;
        }
        if end > 64 {
            break;
        }
    }
    best
}

/// `$hep(...)` values for one chunk id (behaviour doc §1.4): integers for 1, 2, 11 (u8), 7, 8,
/// 13 (u16), 9, 10, 12 (u32); dotted or colon address text for 3–6; bytes for 14, 15, 17; -1
/// for any other id; nil when the packet has no such chunk. v1/v2 packets answer from their
/// fixed header (Kamailio answers only for HEP3).
fn chunk_value(lua: &Lua, p: &HepPacket<'_>, id: u16) -> mlua::Result<Value> {
    use hep::v3::chunk_type as ct;
    let int = |v: Option<u32>| Value::Integer(v.map_or(0, i64::from));
    let value = match id {
        ct::IP_FAMILY => p.ip_family.map(|v| int(Some(u32::from(v)))),
        ct::IP_PROTOCOL => p.ip_protocol.map(|v| int(Some(u32::from(v)))),
        ct::PROTO_TYPE => p.proto_type.map(|v| int(Some(u32::from(v)))),
        ct::SRC_PORT => p.src_port.map(|v| int(Some(u32::from(v)))),
        ct::DST_PORT => p.dst_port.map(|v| int(Some(u32::from(v)))),
        ct::KEEP_ALIVE => p.keep_alive.map(|v| int(Some(u32::from(v)))),
        ct::TS_SEC => p.ts_sec.map(|v| int(Some(v))),
        ct::TS_USEC => p.ts_usec.map(|v| int(Some(v))),
        ct::CAPTURE_ID => p.capture_id.map(|v| int(Some(v))),
        ct::IPV4_SRC | ct::IPV6_SRC => p
            .src_ip
            .filter(|ip| ip.is_ipv4() == (id == ct::IPV4_SRC))
            .map(|ip| lua.create_string(ip.to_string()).map(Value::String))
            .transpose()?,
        ct::IPV4_DST | ct::IPV6_DST => p
            .dst_ip
            .filter(|ip| ip.is_ipv4() == (id == ct::IPV4_DST))
            .map(|ip| lua.create_string(ip.to_string()).map(Value::String))
            .transpose()?,
        ct::AUTH_KEY => p
            .auth_key
            .map(|b| lua.create_string(b).map(Value::String))
            .transpose()?,
        ct::PAYLOAD => match p.payload {
            Some(HepPayload::Raw(b)) => Some(Value::String(lua.create_string(b)?)),
            _ => None,
        },
        ct::CORRELATION_ID => p
            .correlation_id
            .map(|b| lua.create_string(b).map(Value::String))
            .transpose()?,
        _ => Some(Value::Integer(-1)),
    };
    Ok(value.unwrap_or(Value::Nil))
}

/// Parses a chunk name like `$hep(...)` takes it (`0x00f`, `0x000f`, `15`, `version`) or a
/// number.
fn chunk_id(value: &Value) -> Option<u32> {
    match value {
        Value::Integer(i) => u32::try_from(*i).ok(),
        Value::Number(n) if n.fract() == 0.0 && *n >= 0.0 => Some(*n as u32),
        Value::String(s) => {
            let s = s.to_str().ok()?.trim().to_ascii_lowercase();
            if s == "version" {
                return Some(0);
            }
            match s.strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).ok(),
                None => s.parse().ok(),
            }
        }
        _ => None,
    }
}

/// The request method or reply code of a SIP payload's start line (empty when not SIP).
fn start_line_method(payload: &[u8]) -> &[u8] {
    let line_end = memchr::memchr(b'\r', payload).unwrap_or(payload.len().min(256));
    let line = payload.get(..line_end).unwrap_or_default();
    if let Some(rest) = line.strip_prefix(b"SIP/2.0 ") {
        return rest.get(..3).unwrap_or_default();
    }
    if !line.ends_with(b" SIP/2.0") {
        return b"";
    }
    let end = memchr::memchr(b' ', line).unwrap_or(0);
    line.get(..end).unwrap_or_default()
}

fn field_value(lua: &Lua, ctx: &CallContext, name: &str) -> mlua::Result<Value> {
    use hep::v3::chunk_type as ct;
    let text = |s: String| lua.create_string(s).map(Value::String);
    match name {
        "raw" => return lua.create_string(&ctx.raw).map(Value::String),
        "length" => return Ok(Value::Integer(i64::try_from(ctx.raw.len()).unwrap_or(0))),
        "peer_ip" => {
            return ctx
                .peer
                .map_or(Ok(Value::Nil), |p| text(p.ip().to_string()));
        }
        "peer_port" => {
            return Ok(ctx
                .peer
                .map_or(Value::Nil, |p| Value::Integer(i64::from(p.port()))));
        }
        "transport" => {
            let t = match ctx.input {
                Some(InputKind::HepTcp) => "tcp",
                Some(InputKind::HepTls) => "tls",
                _ => "udp",
            };
            return text(t.to_owned());
        }
        _ => {}
    }
    let Ok(p) = hep::decode(&ctx.raw) else {
        return Ok(Value::Integer(-1));
    };
    let by_chunk = |id: u16| chunk_value(lua, &p, id);
    match name {
        "version" => Ok(Value::Integer(i64::from(p.version))),
        "ip_family" | "family" => by_chunk(ct::IP_FAMILY),
        "ip_protocol" | "protocol" => by_chunk(ct::IP_PROTOCOL),
        "src_ip" => p.src_ip.map_or(Ok(Value::Nil), |ip| text(ip.to_string())),
        "dst_ip" => p.dst_ip.map_or(Ok(Value::Nil), |ip| text(ip.to_string())),
        "src_port" => by_chunk(ct::SRC_PORT),
        "dst_port" => by_chunk(ct::DST_PORT),
        "ts_sec" | "time_sec" => by_chunk(ct::TS_SEC),
        "ts_usec" | "time_usec" => by_chunk(ct::TS_USEC),
        "payload_type" | "proto_type" => by_chunk(ct::PROTO_TYPE),
        "capture_id" => by_chunk(ct::CAPTURE_ID),
        "keep_alive" => by_chunk(ct::KEEP_ALIVE),
        "auth_key" => by_chunk(ct::AUTH_KEY),
        "correlation_id" => by_chunk(ct::CORRELATION_ID),
        "vlan_id" => Ok(p
            .vlan_id
            .map_or(Value::Nil, |v| Value::Integer(i64::from(v)))),
        "node_name" => p
            .node_name
            .map_or(Ok(Value::Nil), |b| lua.create_string(b).map(Value::String)),
        "payload" => match p.payload {
            None => Ok(Value::Nil),
            Some(payload) => match payload.inflate(1024 * 1024) {
                Ok(bytes) => lua.create_string(&*bytes).map(Value::String),
                Err(_) => Ok(Value::Nil),
            },
        },
        "compressed" => Ok(Value::Boolean(matches!(
            p.payload,
            Some(HepPayload::Compressed(_))
        ))),
        "method" => match p.payload {
            Some(HepPayload::Raw(b)) => lua.create_string(start_line_method(b)).map(Value::String),
            _ => text(String::new()),
        },
        _ => Ok(Value::Nil),
    }
}

impl UserData for PacketObject {
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        // hep:chunk(id): Kamailio's $hep(id).
        methods.add_method("chunk", |lua, this, id: Value| {
            let ctx = this.0.lock();
            match chunk_id(&id) {
                Some(0) => Ok(Value::Integer(
                    hep::decode(&ctx.raw).map_or(-1, |p| i64::from(p.version)),
                )),
                Some(id) => {
                    let Ok(p) = hep::decode(&ctx.raw) else {
                        return Ok(Value::Integer(-1));
                    };
                    match u16::try_from(id) {
                        Ok(id) => chunk_value(lua, &p, id),
                        Err(_) => Ok(Value::Integer(-1)),
                    }
                }
                None => Err(mlua::Error::RuntimeError(format!(
                    "hep:chunk: unknown hep name {}",
                    arg_text(&id)
                ))),
            }
        });
        methods.add_meta_method(MetaMethod::Index, |lua, this, key: mlua::LuaString| {
            // Borrowed: no Rust allocation per field read.
            let key = key.to_str()?;
            let mut ctx = this.0.lock();
            if let Some((_, v)) = ctx.memo.iter().find(|(k, _)| k.as_str() == &*key) {
                return Ok(v.clone());
            }
            let value = field_value(lua, &ctx, &key)?;
            ctx.memo.push((key.to_string(), value.clone()));
            Ok(value)
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HEP3: &[u8] = include_bytes!("../testdata/hep/hep3_kamailio_invite.bin");
    const HEP2: &[u8] = include_bytes!("../testdata/hep/hep2_kamailio_invite.bin");

    fn hook(script: &str) -> (tempfile::TempDir, Arc<Hook>, Arc<Counters>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.lua");
        std::fs::write(&path, script).unwrap();
        let counters = Arc::new(Counters::new("collector"));
        let settings = HookSettings {
            script_file: path,
            event_callback: "ksr_sipcapture_event".to_owned(),
            timeout: Duration::from_millis(200),
            memory_limit: 16 * 1024 * 1024,
            states: 2,
        };
        let hook = Hook::new(settings, None, counters.clone());
        (dir, hook, counters)
    }

    #[test]
    fn float2int_is_kamailios() {
        assert_eq!(float2int("10.5", "1"), 10);
        assert_eq!(float2int("4.1", "100"), 409);
        assert_eq!(float2int("0.001", "10"), -1);
        assert_eq!(float2int("abc", "3"), -1);
        assert_eq!(float2int(" -2.5x", "2"), -5);
        assert_eq!(float2int("1e2", "3"), 300);
        assert_eq!(float2int("3.9", "1zz"), 3);
    }

    #[test]
    fn fields_and_chunks_have_hep_types() {
        let (_dir, hook, counters) = hook(
            r#"
            function ksr_sipcapture_event(ev, hep)
              assert(ev == "sipcapture:request")
              assert(hep.version == 3 and hep:chunk("version") == 3)
              assert(hep.src_ip == "127.0.0.1" and hep:chunk(0x0003) == "127.0.0.1")
              assert(hep:chunk(0x0005) == nil)
              assert(hep.src_port == 5070 and hep:chunk("0x007") == 5070)
              assert(math.type(hep.dst_port) == "integer" and hep.dst_port == 5060)
              assert(hep.payload_type == 1 and hep:chunk(0x00b) == 1)
              assert(hep.capture_id == 2001 and hep:chunk(12) == 2001)
              assert(hep.ts_sec == 1795669610 and hep.ts_usec == 987066)
              assert(hep.correlation_id == nil and hep:chunk(0x0011) == nil)
              assert(hep:chunk(0x0012) == -1)
              assert(hep.payload:sub(1, 7) == "INVITE ")
              assert(hep:chunk(0x000f) == hep.payload)
              assert(hep.method == "INVITE")
              assert(hep.peer_ip == "192.0.2.9" and hep.peer_port == 40000)
              assert(hep.transport == "udp" and hep.length == #hep.raw)
              sip_capture("sip_capture_call_%Y%m%d", "cap1")
              report_capture("my_reports", "cid-7", '{"MOS":4.1}')
              report_capture("other", "", "report_capture")
              return 0
            end
            "#,
        );
        let peer = Some("192.0.2.9:40000".parse().unwrap());
        let v = hook.run(HEP3, InputKind::HepUdp, peer);
        assert_eq!(counters.get("script_errors"), 0, "{v:?}");
        assert!(!v.proceed && !v.failed);
        assert_eq!(
            v.capture,
            Some(("sip_capture_call_%Y%m%d".to_owned(), "cap1".to_owned()))
        );
        assert_eq!(v.reports.len(), 2);
        assert_eq!(v.reports[0].cid, b"cid-7");
        assert_eq!(v.reports[0].data, br#"{"MOS":4.1}"#);
        assert!(v.reports[1].data.is_empty());
    }

    #[test]
    fn v2_packets_answer_from_the_fixed_header() {
        let (_dir, hook, counters) = hook(
            r#"
            function ksr_sipcapture_event(ev, hep)
              assert(hep.version == 2)
              assert(hep.capture_id == 2001 and hep:chunk(0x0c) == 2001)
              assert(hep.payload_type == nil)
              return 1
            end
            "#,
        );
        let v = hook.run(HEP2, InputKind::HepUdp, None);
        assert_eq!(counters.get("script_errors"), 0);
        assert!(v.proceed);
    }

    #[test]
    fn errors_and_loops_take_the_default_path_and_are_counted() {
        let (_dir, hook, counters) = hook(
            r#"
            function ksr_sipcapture_event(ev, hep)
              if hep.src_port == 5070 then error("boom") end
              while true do end
            end
            "#,
        );
        let v = hook.run(HEP3, InputKind::HepUdp, None);
        assert!(v.proceed && v.failed);
        assert_eq!(counters.get("script_errors"), 1);
        let v2 = hook.run(HEP2, InputKind::HepUdp, None);
        assert!(v2.proceed && v2.failed, "time limit");
        assert_eq!(counters.get("script_errors"), 2);
    }

    #[test]
    fn reload_switches_states_and_keeps_the_old_script_on_a_syntax_error() {
        let (dir, hook, counters) = hook("function ksr_sipcapture_event() return 0 end");
        assert!(!hook.run(HEP3, InputKind::HepUdp, None).proceed);
        let path = dir.path().join("hook.lua");
        std::fs::write(&path, "function ksr_sipcapture_event( return 1 end").unwrap();
        assert!(!hook.reload());
        assert_eq!(counters.get("script_errors"), 1);
        assert!(
            !hook.run(HEP3, InputKind::HepUdp, None).proceed,
            "old script still runs"
        );
        std::fs::write(&path, "function ksr_sipcapture_event() return 1 end").unwrap();
        assert!(hook.reload());
        assert!(hook.run(HEP3, InputKind::HepUdp, None).proceed);
        let err = check_script(&path, "missing").unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        std::fs::write(&path, "x = = 1").unwrap();
        let err = check_script(&path, "ksr_sipcapture_event")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hook.lua:1:"), "file and line: {err}");
    }
}
