//! The desired status: fleet-wide flags (member and per input), per-member overrides, persisted
//! to a small JSON file so a control restart keeps them, and announced to watchers on change.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sipcapture_proto::v1::{CaptureState, DesiredStatus, InputKind, InputState};
use sipcapture_runtime::status::{CaptureSwitch, INPUT_KINDS};
use tokio::sync::watch;

/// The file form of the desired status.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
struct Saved {
    on: bool,
    /// Input kind name → on.
    inputs: std::collections::BTreeMap<String, bool>,
    /// Member id or address → on.
    members: std::collections::BTreeMap<String, bool>,
}

fn input_name(kind: InputKind) -> &'static str {
    kind.as_str_name()
}

/// The desired status held by control.
#[derive(Debug)]
pub struct DesiredState {
    fleet: std::sync::Arc<CaptureSwitch>,
    overrides: Mutex<hashbrown::HashMap<String, bool>>,
    file: Option<PathBuf>,
    changed: watch::Sender<u64>,
}

impl DesiredState {
    /// Loads the state file when it exists, else starts from `on`.
    pub fn load(file: Option<PathBuf>, on: bool) -> Self {
        let state = DesiredState {
            fleet: std::sync::Arc::new(CaptureSwitch::new(on)),
            overrides: Mutex::new(hashbrown::HashMap::new()),
            file,
            changed: watch::channel(0).0,
        };
        if let Some(path) = &state.file {
            match read(path) {
                Ok(Some(saved)) => {
                    state.restore(&saved);
                    tracing::info!(path = %path.display(), on = saved.on, "desired status restored");
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot read the state file; starting from the config")
                }
            }
        }
        state
    }

    fn restore(&self, saved: &Saved) {
        let inputs = INPUT_KINDS
            .iter()
            .map(|k| InputState {
                input: *k as i32,
                state: CaptureState::from_enabled(
                    *saved.inputs.get(input_name(*k)).unwrap_or(&saved.on),
                ) as i32,
            })
            .collect();
        self.fleet.apply_desired(&DesiredStatus {
            state: CaptureState::from_enabled(saved.on) as i32,
            inputs,
        });
        if let Ok(mut o) = self.overrides.lock() {
            o.extend(saved.members.iter().map(|(k, v)| (k.clone(), *v)));
        }
    }

    /// The fleet-wide flags (the `capture_on` gauge reads them).
    pub fn fleet(&self) -> std::sync::Arc<CaptureSwitch> {
        self.fleet.clone()
    }

    /// The fleet-wide state (Kamailio's check answer).
    pub fn fleet_state(&self) -> CaptureState {
        self.fleet.state()
    }

    /// Sets the fleet (no selectors: clears per-member overrides, last command wins) or the
    /// selected members; saves and announces.
    pub fn set(&self, on: bool, inputs: &[InputKind], members: &[String]) {
        if members.is_empty() {
            self.fleet.set(on, inputs);
            if inputs.is_empty()
                && let Ok(mut o) = self.overrides.lock()
            {
                o.clear();
            }
        } else if let Ok(mut o) = self.overrides.lock() {
            for m in members {
                o.insert(m.clone(), on);
            }
        }
        self.save();
        self.changed.send_modify(|n| *n += 1);
    }

    /// What one member must apply: its override when there is one (matched by id or address),
    /// else the fleet's flags.
    pub fn desired_for(&self, member_id: &str, address: &str) -> DesiredStatus {
        let over = self
            .overrides
            .lock()
            .ok()
            .and_then(|o| o.get(member_id).or_else(|| o.get(address)).copied());
        match over {
            Some(on) => DesiredStatus {
                state: CaptureState::from_enabled(on) as i32,
                inputs: INPUT_KINDS
                    .iter()
                    .map(|k| InputState {
                        input: *k as i32,
                        state: CaptureState::from_enabled(on) as i32,
                    })
                    .collect(),
            },
            None => self.fleet.desired(),
        }
    }

    /// A receiver woken on every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    fn snapshot(&self) -> Saved {
        let desired = self.fleet.desired();
        Saved {
            on: desired.state == CaptureState::Enabled as i32,
            inputs: desired
                .inputs
                .iter()
                .map(|i| {
                    let kind = InputKind::try_from(i.input).unwrap_or(InputKind::Unspecified);
                    (
                        input_name(kind).to_owned(),
                        i.state == CaptureState::Enabled as i32,
                    )
                })
                .collect(),
            members: self
                .overrides
                .lock()
                .map(|o| o.iter().map(|(k, v)| (k.clone(), *v)).collect())
                .unwrap_or_default(),
        }
    }

    fn save(&self) {
        let Some(path) = &self.file else {
            return;
        };
        if let Err(e) = write(path, &self.snapshot()) {
            tracing::error!(path = %path.display(), error = %e, "cannot save the desired status; it holds until restart only");
        }
    }
}

fn read(path: &Path) -> Result<Option<Saved>, Box<dyn std::error::Error>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Writes atomically: a temporary file flushed to disk, renamed over the old one, then the
/// directory flushed (a crash leaves the old state or the new one, never an empty file).
fn write(path: &Path, saved: &Saved) -> Result<(), Box<dyn std::error::Error>> {
    use std::io::Write as _;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp)?;
    file.write_all(&serde_json::to_vec_pretty(saved)?)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if let Ok(dir) = std::fs::File::open(dir) {
        let _ignored = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persists_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state.json");
        let state = DesiredState::load(Some(file.clone()), true);
        state.set(false, &[], &[]);
        state.set(true, &[], &["collector-b".to_owned()]);
        let again = DesiredState::load(Some(file), true);
        assert_eq!(again.fleet_state(), CaptureState::Disabled);
        assert_eq!(
            again.desired_for("collector-a", "").state,
            CaptureState::Disabled as i32
        );
        assert_eq!(
            again.desired_for("collector-b", "").state,
            CaptureState::Enabled as i32
        );
    }

    #[test]
    fn fleet_command_clears_overrides() {
        let state = DesiredState::load(None, true);
        state.set(false, &[], &["m1".to_owned()]);
        assert_eq!(
            state.desired_for("m1", "").state,
            CaptureState::Disabled as i32
        );
        state.set(true, &[], &[]);
        assert_eq!(
            state.desired_for("m1", "").state,
            CaptureState::Enabled as i32
        );
    }

    #[test]
    fn per_input_state() {
        let state = DesiredState::load(None, true);
        state.set(false, &[InputKind::Mirror], &[]);
        let d = state.desired_for("x", "");
        assert_eq!(d.state, CaptureState::Enabled as i32);
        let mirror = d
            .inputs
            .iter()
            .find(|i| i.input == InputKind::Mirror as i32)
            .unwrap();
        assert_eq!(mirror.state, CaptureState::Disabled as i32);
    }
}
