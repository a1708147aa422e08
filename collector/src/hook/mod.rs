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
//! Calls run off the async workers, on tokio's blocking threads, at most one per Lua state
//! (`states`, the bound of that pool): a slow script (a C function such as `string.find` with
//! a pathological pattern, which the instruction-count time limit cannot interrupt) holds a
//! blocking thread, never the HEP listener. The packet waits for its verdict at most
//! `script_timeout_ms` + [`VERDICT_GRACE`]; past that, or when every state is busy, it takes
//! the default path as if there were no hook (counted `script_overruns`,
//! `script_skipped_busy`) and the late call finishes in the background. A reload (SIGHUP or a change of the file) compiles the new script once; states pick
//! it up on their next packet. A script that fails to load, or fails at run time, is logged
//! with file and line and counted (`script_errors`), and the packet takes the default path.
//!
//! Here: the [`Hook`] (the pool of states, reload on SIGHUP or file change, one call per
//! packet) and the [`Verdict`] of a call. `state.rs` builds a Lua state from the script
//! (loading, time and memory limits, [`check_script`]); `api.rs` holds the functions offered to
//! the script; `packet.rs` the packet object (`hep.src_ip`, `hep:chunk(id)`); `context.rs` the
//! per-call context they share.

mod api;
mod context;
mod packet;
mod state;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use mlua::Value;
use sipcapture_proto::v1::InputKind;
use sipcapture_runtime::counters::Counters;
use tokio_util::sync::CancellationToken;

pub use self::api::float2int;
pub use self::context::ReportRequest;
use self::context::Services;
pub use self::state::{EVENT_NAME, HookSettings, ScriptError, check_script};
use self::state::{State, build_state};
use crate::events::{
    InternalEvent, ScriptFailed, ScriptLoadFailed, ScriptLoaded, ScriptOverran, ScriptSkippedBusy,
};
use crate::forward::Forwarder;

/// How long past `script_timeout_ms` a packet waits for its verdict (the instruction hook
/// aborts a Lua loop at the limit; this margin covers its check interval).
pub const VERDICT_GRACE: Duration = Duration::from_millis(50);

/// How often the script file is checked for changes.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);

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

/// The loaded script text and its generation.
#[derive(Debug)]
struct Script {
    generation: u64,
    source: Option<Arc<str>>,
    mtime: Option<SystemTime>,
}

/// The hook: the script, a pool of Lua states, and the services the script calls.
#[derive(Debug)]
pub struct Hook {
    settings: HookSettings,
    script: RwLock<Script>,
    states: Vec<Mutex<Option<State>>>,
    /// One permit per state: the bound of the blocking pool the calls run on.
    slots: Arc<tokio::sync::Semaphore>,
    next: AtomicUsize,
    services: Services,
}

/// The optional per-packet extensions of an [`crate::ingest::Ingest`]: the Lua hook
/// (`nonsip_hook = 1`) and HEP forwarding (`[[forward]]` rules, `sip_capture_forward`).
#[derive(Debug, Clone, Default)]
pub struct Hooks {
    /// The Lua hook, when `nonsip_hook = 1`.
    pub hook: Option<Arc<Hook>>,
    /// The forwarder, when forward rules or the hook are configured.
    pub forwarder: Option<Arc<Forwarder>>,
}

impl Hook {
    /// Loads the script (a failure is logged and counted; the hook then does nothing until a
    /// good version is loaded).
    pub fn new(
        settings: HookSettings,
        forwarder: Option<Arc<Forwarder>>,
        counters: Arc<Counters>,
    ) -> Arc<Self> {
        let states: Vec<_> = (0..settings.states.max(1))
            .map(|_| Mutex::new(None))
            .collect();
        let slots = Arc::new(tokio::sync::Semaphore::new(states.len()));
        let hook = Arc::new(Hook {
            slots,
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

    /// Runs the callback on one decoded packet off the async workers (see the module doc): the
    /// verdict, or the default path when every state is busy or the call overruns.
    pub async fn run_pooled(
        self: &Arc<Self>,
        raw: &[u8],
        input: InputKind,
        peer: Option<SocketAddr>,
    ) -> Verdict {
        let default = Verdict {
            proceed: true,
            ..Verdict::default()
        };
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            ScriptSkippedBusy.emit(&self.services.counters);
            return default;
        };
        let hook = Arc::clone(self);
        let raw = raw.to_vec();
        let call = tokio::task::spawn_blocking(move || {
            let verdict = hook.run(&raw, input, peer);
            drop(permit);
            verdict
        });
        let limit = self.settings.timeout + VERDICT_GRACE;
        match tokio::time::timeout(limit, call).await {
            Ok(Ok(verdict)) => verdict,
            Ok(Err(e)) => {
                self.count_error(&e.to_string());
                Verdict {
                    failed: true,
                    ..default
                }
            }
            Err(_) => {
                ScriptOverran {
                    file: &self.settings.script_file,
                    waited: limit,
                }
                .emit(&self.services.counters);
                Verdict {
                    failed: true,
                    ..default
                }
            }
        }
    }

    /// Runs the callback on one decoded packet (`raw` is the whole received packet), on the
    /// calling thread.
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HEP3: &[u8] = include_bytes!("../../testdata/hep/hep3_kamailio_invite.bin");
    const HEP2: &[u8] = include_bytes!("../../testdata/hep/hep2_kamailio_invite.bin");

    fn hook(script: &str) -> (tempfile::TempDir, Arc<Hook>, Arc<Counters>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hook.lua");
        std::fs::write(&path, script).unwrap();
        let counters = Arc::new(Counters::new(&crate::events::CATALOG));
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

    /// A C-level call the instruction hook cannot interrupt (`string.find` backtracking on a
    /// pathological pattern): about 2 s in one C function here (debug build), several times
    /// the 250 ms a packet may wait even on a much faster machine.
    const SLOW_C_CALL: &str = r#"
        function ksr_sipcapture_event(ev, hep)
          local s = string.rep("a", 1000)
          string.find(s, ".-.-b")
          return 0
        end
    "#;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_c_call_does_not_hold_the_caller() {
        let (_dir, hook, counters) = hook(SLOW_C_CALL);
        // The slow call alone, on the calling thread: well past the 200 ms limit.
        let started = std::time::Instant::now();
        let v = hook.run(HEP3, InputKind::HepUdp, None);
        let alone = started.elapsed();
        eprintln!("one slow C call on the calling thread: {alone:?}");
        assert!(
            !v.proceed,
            "the C call is not interrupted: the script returned 0"
        );
        assert!(
            alone > Duration::from_millis(750),
            "slow enough to matter: {alone:?}"
        );

        // Pooled: each packet waits at most the limit + grace, then takes the default path.
        let started = std::time::Instant::now();
        let first = hook.run_pooled(HEP3, InputKind::HepUdp, None).await;
        let second = hook.run_pooled(HEP3, InputKind::HepUdp, None).await;
        // Both states are busy now: the next packet does not wait at all.
        let third_started = std::time::Instant::now();
        let third = hook.run_pooled(HEP3, InputKind::HepUdp, None).await;
        let third_wait = third_started.elapsed();
        let waited = started.elapsed();
        for v in [&first, &second] {
            assert!(v.proceed && v.failed, "{v:?}");
        }
        assert!(third.proceed && !third.failed, "{third:?}");
        assert!(third_wait < Duration::from_millis(50), "{third_wait:?}");
        // Two waits of at most 250 ms each (limit + grace), far below one call alone.
        assert!(
            waited < Duration::from_millis(1000) && waited < alone,
            "{waited:?} (alone: {alone:?})"
        );
        assert_eq!(counters.get("script_overruns"), 2);
        assert_eq!(counters.get("script_skipped_busy"), 1);
        // Once the background calls finish, the states serve packets again.
        tokio::time::sleep(alone * 2).await;
        let later = hook.run_pooled(HEP3, InputKind::HepUdp, None).await;
        assert!(
            later.failed,
            "a state is free again and the call ran (and overran): {later:?}"
        );
    }
}
