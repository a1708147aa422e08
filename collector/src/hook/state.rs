//! A Lua state built from the script: the API installed, the time limit (an instruction hook)
//! and the memory cap set, the file run, the callback found. Also [`check_script`]
//! (`--check-config`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mlua::{AnyUserData, Function, HookTriggers, Lua, Value, VmState};
use sipcapture_runtime::counters::Counters;

use super::api::install_api;
use super::context::{Ctx, Services};
use super::packet::PacketObject;

/// The event name the callback receives (Kamailio's `event_route[sipcapture:request]`).
pub const EVENT_NAME: &str = "sipcapture:request";
/// How often (in VM instructions) the time limit is checked.
const INSTRUCTION_CHECK: u32 = 10_000;

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

pub(super) struct State {
    pub(super) generation: u64,
    /// Keeps the Lua state alive next to the references into it.
    pub(super) _lua: Lua,
    pub(super) callback: Function,
    pub(super) packet: AnyUserData,
    pub(super) event: mlua::LuaString,
    pub(super) ctx: Ctx,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// Lua's chunk name `@file`, so messages read `file:line: ...`.
fn chunk_name(path: &Path) -> String {
    format!("@{}", path.display())
}

/// A fresh Lua state with the API installed and the script run; checks the callback exists.
pub(super) fn build_state(
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
        counters: Arc::new(Counters::new(&crate::events::CATALOG)),
    };
    build_state(&settings, &text, &services, 0).map(|_| ())
}
