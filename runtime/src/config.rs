//! Loading a service's typed config: defaults < TOML file < `SIPCAPTURE_*` env < `--set KEY=VALUE`
//! < dedicated flags. Every service struct uses `deny_unknown_fields`, so a misspelt key stops
//! start-up with a message naming it.
//!
//! The keys every service shares live in a nested `service` section in Rust
//! (`crate::service::ServiceConfig`, [`SHARED_KEYS`]); every source may still give them flat, next to the
//! service's own keys: each provider's data is rewritten ([`Lifted`]) so that a flat shared key
//! moves into the section wherever the config's defaults have one.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Tag, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The env prefix of every service (`SIPCAPTURE_CAPTURE_NODE=...`; nested keys with `__`).
pub const ENV_PREFIX: &str = "SIPCAPTURE_";

/// A config that could not be loaded or is invalid.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The `--config` file does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// A `--set` argument is not `KEY=VALUE`.
    #[error("--set {0:?}: expected KEY=VALUE")]
    BadSet(String),
    /// A `--set` key names no config key.
    #[error("--set {key}: unknown config key `{key}`")]
    UnknownSetKey {
        /// The key as given.
        key: String,
    },
    /// Parsing or type checking failed: each problem with its key and where the value came from.
    #[error("invalid config: {}", describe(.0))]
    Load(Box<figment::Error>),
    /// A value is out of range or inconsistent.
    #[error("invalid config key `{key}`: {message}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    /// Shorthand for [`ConfigError::Invalid`].
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl From<figment::Error> for ConfigError {
    fn from(e: figment::Error) -> Self {
        ConfigError::Load(Box::new(e))
    }
}

/// figment's errors for people: `<problem> (key `a.b`, from <source>)`, one per problem, without
/// figment's profile prefix, type names or source-code locations.
fn describe(error: &figment::Error) -> String {
    error
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let from = e.metadata.as_ref().map(|m| match &m.source {
                Some(figment::Source::File(path)) => format!("{} {}", m.name, path.display()),
                _ => m.name.to_string(),
            });
            match (key.is_empty(), from) {
                (false, Some(from)) => format!("{} (key `{key}`, from {from})", e.kind),
                (false, None) => format!("{} (key `{key}`)", e.kind),
                (true, Some(from)) => format!("{} (from {from})", e.kind),
                (true, None) => e.kind.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// Where a config comes from, lowest precedence first after the defaults.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// `--config FILE`.
    pub file: Option<PathBuf>,
    /// `--set KEY=VALUE` arguments, as given.
    pub sets: Vec<String>,
    /// Dedicated flags (`--hep-listen` ...), as (dotted key, value); highest precedence.
    pub flags: Vec<(String, Value)>,
    /// Read `SIPCAPTURE_*` env (off in tests that must not see the developer's env).
    pub env: bool,
}

impl Sources {
    /// Sources with env reading on.
    pub fn new(file: Option<PathBuf>, sets: Vec<String>) -> Self {
        Sources {
            file,
            sets,
            flags: Vec::new(),
            env: true,
        }
    }

    /// Adds a dedicated flag value when it was given.
    pub fn flag(&mut self, key: &str, value: Option<impl Into<Value>>) -> &mut Self {
        if let Some(value) = value {
            self.flags.push((key.to_owned(), value.into()));
        }
        self
    }
}

/// Splits `KEY=VALUE` and parses the value the way env values are parsed (numbers, booleans,
/// arrays `[a, b]` and strings).
pub fn parse_set(arg: &str) -> Result<(String, Value), ConfigError> {
    let Some((key, value)) = arg.split_once('=') else {
        return Err(ConfigError::BadSet(arg.to_owned()));
    };
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::BadSet(arg.to_owned()));
    }
    let value = value
        .parse::<Value>()
        .unwrap_or_else(|never| match never {});
    Ok((key.to_owned(), value))
}

/// Every dotted key path of a serialised config (leaves and tables), for `--set` key resolution;
/// the keys of a shared `service` section are listed flat too (`grpc_listen` beside
/// `service.grpc_listen`).
pub fn key_paths<T: Serialize>(config: &T) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Value::Dict(_, dict)) = Value::serialize(config) {
        collect_paths("", &dict, &mut out);
    }
    let section = format!("{}.", SHARED_SECTION);
    let flat: Vec<String> = out
        .iter()
        .filter_map(|path| {
            let (parent, rest) = match path.find(&format!(".{section}")) {
                Some(i) => (&path[..=i], &path[i + 1 + section.len()..]),
                None => ("", path.strip_prefix(&section)?),
            };
            Some(format!("{parent}{rest}"))
        })
        .collect();
    out.extend(flat);
    out
}

/// The dict paths of `T`'s defaults that hold a shared `service` section (`[]` for a service
/// config, `["collector"]`, … for the all-in-one).
fn shared_sections<T: Serialize + Default>() -> Vec<Vec<String>> {
    fn find(dict: &Dict, at: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        for (key, value) in dict {
            if let Value::Dict(_, inner) = value {
                if key == SHARED_SECTION {
                    out.push(at.clone());
                } else {
                    at.push(key.clone());
                    find(inner, at, out);
                    at.pop();
                }
            }
        }
    }
    let mut out = Vec::new();
    if let Ok(Value::Dict(_, dict)) = Value::serialize(T::default()) {
        find(&dict, &mut Vec::new(), &mut out);
    }
    out
}

/// The name of the nested section holding the keys every service shares.
pub const SHARED_SECTION: &str = "service";

/// The keys of the shared section (`crate::service::ServiceConfig`, whose test keeps the two in
/// step), accepted flat.
pub const SHARED_KEYS: &[&str] = &[
    "grpc_listen",
    "auth_token",
    "collector_token",
    "member_token",
    "admin_token",
    "allow_insecure",
    "capture_on",
    "max_grpc_calls",
    "grpc_tls",
    "grpc_client_tls",
    "grpc_limits",
    "grpc_admin_identities",
    "grpc_collector_identities",
    "grpc_member_identities",
    "metrics_listen",
    "log_format",
    "log_level",
];

fn shared_keys() -> Vec<String> {
    SHARED_KEYS.iter().map(|k| (*k).to_owned()).collect()
}

/// A provider whose data has its flat shared keys moved into the `service` section at each of
/// `sections`; metadata (file, env) stays the inner provider's, so errors still say where a
/// value came from.
pub struct Lifted<'r, P> {
    inner: P,
    sections: Vec<Vec<String>>,
    keys: Vec<String>,
    /// What errors call this source (`--set KEY=VALUE`, a flag), instead of figment's.
    name: Option<String>,
    /// For a file or the environment: flat keys that are not top-level fields of the config
    /// (Kamailio's names in the all-in-one's file) go where `--set` would put them.
    flat: Option<Flat<'r>>,
}

/// How flat keys resolve: the `--set` resolver and the config's own top-level fields.
struct Flat<'r> {
    resolve: &'r dyn Fn(&str) -> Vec<String>,
    top: Vec<String>,
}

impl Flat<'_> {
    /// Moves every top-level key that is not a field of its own but that `resolve` maps to
    /// fields into those fields (a value already given there, more specific, wins).
    fn apply(&self, dict: &mut Dict) {
        let keys: Vec<String> = dict.keys().cloned().collect();
        for key in keys {
            if self.top.contains(&key) {
                continue;
            }
            let paths = (self.resolve)(&key);
            if paths.is_empty() || paths == [key.clone()] {
                continue;
            }
            let Some(value) = dict.remove(&key) else {
                continue;
            };
            for path in paths {
                insert_absent(dict, &path, value.clone());
            }
        }
    }
}

/// Sets the dotted `path` in `dict` to `value` unless something is there already.
fn insert_absent(dict: &mut Dict, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut at = dict;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            at.entry(part.to_owned()).or_insert(value);
            return;
        }
        let entry = at
            .entry(part.to_owned())
            .or_insert_with(|| Value::from(Dict::new()));
        let Value::Dict(_, inner) = entry else {
            return;
        };
        at = inner;
    }
}

impl<'r, P: Provider> Lifted<'r, P> {
    /// Wraps `inner` for a config whose defaults have shared sections at `sections`.
    fn new(inner: P, sections: &[Vec<String>], keys: &[String]) -> Self {
        Lifted {
            inner,
            sections: sections.to_vec(),
            keys: keys.to_vec(),
            name: None,
            flat: None,
        }
    }

    /// The same, resolving flat keys like `--set` does.
    fn flat(mut self, resolve: &'r dyn Fn(&str) -> Vec<String>, top: &[String]) -> Self {
        self.flat = Some(Flat {
            resolve,
            top: top.to_vec(),
        });
        self
    }

    /// The same, named `name` in error messages.
    fn named(mut self, name: String) -> Self {
        self.name = Some(name);
        self
    }
}

impl<P: Provider> Provider for Lifted<'_, P> {
    fn metadata(&self) -> Metadata {
        match &self.name {
            Some(name) => Metadata::named(name.clone()),
            None => self.inner.metadata(),
        }
    }

    // The signature is figment's; its error type is large, and built only on a bad config.
    #[allow(clippy::result_large_err)]
    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut data = self.inner.data()?;
        for dict in data.values_mut() {
            if let Some(flat) = &self.flat {
                flat.apply(dict);
            }
            for section in &self.sections {
                lift(dict, section, &self.keys).map_err(figment::Error::from)?;
            }
        }
        Ok(data)
    }

    fn profile(&self) -> Option<Profile> {
        self.inner.profile()
    }
}

/// Moves the flat `keys` of the dict at `path` into its `service` section.
fn lift(dict: &mut Dict, path: &[String], keys: &[String]) -> Result<(), String> {
    if let Some((first, rest)) = path.split_first() {
        return match dict.get_mut(first) {
            Some(Value::Dict(_, inner)) => lift(inner, rest, keys),
            _ => Ok(()),
        };
    }
    let moved: Vec<(String, Value)> = keys
        .iter()
        .filter_map(|key| dict.remove(key).map(|value| (key.clone(), value)))
        .collect();
    if moved.is_empty() {
        return Ok(());
    }
    let section = dict
        .entry(SHARED_SECTION.to_owned())
        .or_insert_with(|| Value::Dict(Tag::Default, Dict::new()));
    let Value::Dict(_, section) = section else {
        return Err(format!("`{SHARED_SECTION}` must be a table"));
    };
    for (key, value) in moved {
        if section.contains_key(&key) {
            return Err(format!(
                "`{key}` is given both flat and in [{SHARED_SECTION}]"
            ));
        }
        section.insert(key, value);
    }
    Ok(())
}

fn collect_paths(prefix: &str, dict: &Dict, out: &mut Vec<String>) {
    for (key, value) in dict {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        if let Value::Dict(_, inner) = value {
            collect_paths(&path, inner, out);
        }
        out.push(path);
    }
}

/// `SIPCAPTURE_*` variables the `sipcapture` CLI reads for itself (`SIPCAPTURE_TOKEN`, the
/// `status --token` fallback): not config keys, so a shell that exports them can still start
/// a service.
const CLI_ONLY_ENV: &[&str] = &["token"];

/// The Kubernetes services whose service-link variables carry our prefix: every `X` of a
/// `SIPCAPTURE_X_SERVICE_HOST` (lower case, after the prefix; empty for a service named like
/// the prefix itself). Kubernetes injects `<SERVICE>_SERVICE_HOST`, `_SERVICE_PORT[_<name>]`,
/// `_PORT` and `_PORT_<n>_<PROTO>[_PORT|_PROTO|_ADDR]` for every Service of the namespace into
/// every pod (unless `enableServiceLinks: false`): with a release named `sipcapture`, they
/// look like our config keys.
fn service_link_names(vars: impl Iterator<Item = String>) -> Vec<String> {
    vars.filter_map(|name| {
        let rest = name.strip_prefix(ENV_PREFIX)?.to_ascii_lowercase();
        if rest == "service_host" {
            return Some(String::new());
        }
        rest.strip_suffix("_service_host").map(str::to_owned)
    })
    .collect()
}

/// Whether an env key (lower case, after the prefix) is a service-link variable of one of
/// `services`: ignored, while any other unknown key is still refused.
fn is_service_link(key: &str, services: &[String]) -> bool {
    services.iter().any(|service| {
        let rest = if service.is_empty() {
            Some(key)
        } else {
            key.strip_prefix(service.as_str())
                .and_then(|r| r.strip_prefix('_'))
        };
        rest.is_some_and(|r| {
            r == "service_host"
                || r == "service_port"
                || r.starts_with("service_port_")
                || r == "port"
                || r.starts_with("port_")
        })
    })
}

/// Builds the figment for `T` from `sources`. `resolve` maps a `--set` key to the dotted paths
/// it sets (identity for single-service configs; the all-in-one maps Kamailio's flat names to
/// every section that has them); an empty answer is an unknown key.
pub fn figment<T: Serialize + Default>(
    sources: &Sources,
    resolve: impl Fn(&str) -> Vec<String>,
) -> Result<Figment, ConfigError> {
    let sections = shared_sections::<T>();
    let keys = shared_keys();
    let top: Vec<String> = match Value::serialize(T::default()) {
        Ok(Value::Dict(_, dict)) => dict.keys().cloned().collect(),
        _ => Vec::new(),
    };
    let lifted = |p| Lifted::new(p, &sections, &keys);
    let mut fig = Figment::from(Serialized::defaults(T::default()));
    if let Some(file) = &sources.file {
        if !Path::new(file).exists() {
            return Err(ConfigError::MissingFile(file.clone()));
        }
        fig = fig.merge(Lifted::new(Toml::file_exact(file), &sections, &keys).flat(&resolve, &top));
    }
    if sources.env {
        let services =
            service_link_names(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
        fig = fig.merge(
            Lifted::new(
                Env::prefixed(ENV_PREFIX)
                    .filter(move |key| {
                        let key = key.as_str().to_ascii_lowercase();
                        !is_service_link(&key, &services) && !CLI_ONLY_ENV.contains(&key.as_str())
                    })
                    .split("__"),
                &sections,
                &keys,
            )
            .flat(&resolve, &top),
        );
    }
    for arg in &sources.sets {
        let (key, value) = parse_set(arg)?;
        let paths = resolve(&key);
        if paths.is_empty() {
            return Err(ConfigError::UnknownSetKey { key });
        }
        for path in paths {
            fig = fig.merge(
                lifted(Serialized::global(&path, value.clone())).named(format!("--set {arg}")),
            );
        }
    }
    for (key, value) in &sources.flags {
        fig = fig.merge(
            lifted(Serialized::global(key, value.clone())).named(format!("the flag for `{key}`")),
        );
    }
    Ok(fig)
}

/// Loads a single-service config: `--set` keys are the struct's own dotted keys.
pub fn load<T: Serialize + DeserializeOwned + Default>(
    sources: &Sources,
) -> Result<T, ConfigError> {
    let known = key_paths(&T::default());
    let resolve = |key: &str| {
        if known.iter().any(|k| k == key) || key.contains('.') {
            vec![key.to_owned()]
        } else {
            Vec::new()
        }
    };
    Ok(figment::<T>(sources, resolve)?.extract()?)
}

/// Serde helpers for Kamailio-style values.
pub mod de {
    use serde::{Deserialize, Deserializer};

    /// A Kamailio-style flag: accepts `true`/`false`, `0`/`1` and "yes"/"no"/"on"/"off" strings,
    /// so `capture_on = 1` from a Kamailio config means what it says.
    pub fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Int(i64),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(b) => Ok(b),
            Raw::Int(0) => Ok(false),
            Raw::Int(1) => Ok(true),
            Raw::Int(other) => Err(serde::de::Error::custom(format!(
                "expected 0 or 1, found {other}"
            ))),
            Raw::Str(s) => match s.to_ascii_lowercase().as_str() {
                "1" | "yes" | "on" | "true" => Ok(true),
                "0" | "no" | "off" | "false" => Ok(false),
                _ => Err(serde::de::Error::custom(format!(
                    "expected a flag (0/1, true/false, on/off), found {s:?}"
                ))),
            },
        }
    }

    /// A flag that may be left unset ([`flag`] values, or none), for keys whose default
    /// depends on whether the operator set them.
    pub fn opt_flag<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        struct Flag(bool);
        impl<'de> Deserialize<'de> for Flag {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                flag(d).map(Flag)
            }
        }
        Ok(Option::<Flag>::deserialize(d)?.map(|f| f.0))
    }
}

/// This host's name (for default member ids): `HOSTNAME`, else /etc/hostname, else "localhost".
pub fn host_name() -> String {
    if let Ok(name) = std::env::var("HOSTNAME")
        && !name.trim().is_empty()
    {
        return name.trim().to_owned();
    }
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        capture_node: String,
        insert_retries: u32,
        #[serde(deserialize_with = "de::flag")]
        capture_on: bool,
        inner: Inner,
    }

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        depth: u32,
    }

    fn sources(sets: &[&str]) -> Sources {
        Sources {
            file: None,
            sets: sets.iter().map(|s| s.to_string()).collect(),
            flags: Vec::new(),
            env: false,
        }
    }

    /// A service config with the shared section.
    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Svc {
        own: u32,
        service: crate::service::ServiceConfig,
    }

    /// An all-in-one config: sections that each have the shared section.
    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Both {
        log_level: String,
        a: Svc,
        b: Svc,
    }

    #[test]
    fn shared_keys_are_accepted_flat_and_nested() {
        let dir = tempfile_dir();
        let path = dir.join("svc.toml");
        std::fs::write(
            &path,
            "own = 2\ngrpc_listen = \"127.0.0.1:7000\"\n[grpc_limits]\nmax_connections = 9\n",
        )
        .unwrap();
        let cfg: Svc = load(&Sources {
            file: Some(path.clone()),
            ..sources(&["capture_on=0", "service.log_level=debug"])
        })
        .unwrap();
        assert_eq!(cfg.own, 2);
        assert_eq!(cfg.service.grpc_listen.port(), 7000);
        assert_eq!(cfg.service.grpc_limits.max_connections, 9);
        assert!(!cfg.service.capture_on);
        assert_eq!(cfg.service.log_level, "debug");
        // The nested form works too; both at once is refused, naming the key.
        std::fs::write(&path, "[service]\nmax_grpc_calls = 5\n").unwrap();
        let cfg: Svc = load(&Sources {
            file: Some(path.clone()),
            ..sources(&[])
        })
        .unwrap();
        assert_eq!(cfg.service.max_grpc_calls, 5);
        std::fs::write(&path, "max_grpc_calls = 4\n[service]\nmax_grpc_calls = 5\n").unwrap();
        let err = load::<Svc>(&Sources {
            file: Some(path),
            ..sources(&[])
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("max_grpc_calls"), "{err}");
        let err = load::<Svc>(&sources(&["max_grpc_calls=many"])).unwrap_err();
        assert!(err.to_string().contains("max_grpc_calls"), "{err}");
    }

    #[test]
    fn shared_keys_lift_inside_sections() {
        assert!(key_paths(&Both::default()).contains(&"a.grpc_listen".to_owned()));
        assert!(key_paths(&Both::default()).contains(&"a.service.grpc_listen".to_owned()));
        let resolve = |key: &str| vec![key.to_owned()];
        let cfg: Both = figment::<Both>(&sources(&["a.auth_token=t", "log_level=warn"]), resolve)
            .unwrap()
            .extract()
            .unwrap();
        assert_eq!(cfg.a.service.auth_token.as_deref(), Some("t"));
        assert_eq!(cfg.b.service.auth_token, None);
        assert_eq!(cfg.log_level, "warn", "the top level has no shared section");
    }

    #[test]
    fn set_overrides_typed_values() {
        let cfg: Demo = load(&sources(&[
            "capture_node=node7",
            "insert_retries=5",
            "capture_on=1",
            "inner.depth=3",
        ]))
        .unwrap();
        assert_eq!(cfg.capture_node, "node7");
        assert_eq!(cfg.insert_retries, 5);
        assert!(cfg.capture_on);
        assert_eq!(cfg.inner.depth, 3);
    }

    #[test]
    fn unknown_set_key_is_named() {
        let err = load::<Demo>(&sources(&["captur_node=x"])).unwrap_err();
        assert!(err.to_string().contains("captur_node"), "{err}");
    }

    #[test]
    fn unknown_file_key_is_named() {
        let dir = tempfile_dir();
        let path = dir.join("c.toml");
        std::fs::write(&path, "capture_node = \"a\"\nbogus_key = 1\n").unwrap();
        let err = load::<Demo>(&Sources {
            file: Some(path),
            ..sources(&[])
        })
        .unwrap_err();
        assert!(err.to_string().contains("bogus_key"), "{err}");
    }

    #[test]
    fn bad_type_is_named() {
        let err = load::<Demo>(&sources(&["insert_retries=lots"])).unwrap_err();
        assert!(err.to_string().contains("insert_retries"), "{err}");
    }

    #[test]
    fn flags_win_over_sets() {
        let mut s = sources(&["capture_node=fromset"]);
        s.flag("capture_node", Some("fromflag"));
        let cfg: Demo = load(&s).unwrap();
        assert_eq!(cfg.capture_node, "fromflag");
    }

    #[test]
    fn kubernetes_service_links_are_ignored_typos_are_not() {
        let env = [
            "SIPCAPTURE_CONTROL_SERVICE_HOST",
            "SIPCAPTURE_SERVICE_HOST",
            "SIPCAPTURE_STORER_SERVICE_HOST",
            "OTHER_SERVICE_HOST",
            "SIPCAPTURE_CAPTURE_NODE",
        ]
        .map(str::to_owned);
        let services = service_link_names(env.into_iter());
        assert_eq!(services, ["control", "", "storer"]);
        for key in [
            "control_service_host",
            "control_service_port",
            "control_service_port_grpc",
            "control_port",
            "control_port_9064_tcp",
            "control_port_9064_tcp_addr",
            "storer_port_9063_tcp_proto",
            "service_host",
            "service_port_hep_udp",
            "port_9060_udp_port",
        ] {
            assert!(is_service_link(key, &services), "{key}");
        }
        for key in [
            "capture_node",
            "insert_retries",
            "controller_port",
            "control_prt",
        ] {
            assert!(!is_service_link(key, &services[..1]), "{key}");
        }
        // Without a matching _SERVICE_HOST nothing is ignored.
        assert!(!is_service_link("control_port", &[]));
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load::<Demo>(&Sources {
            file: Some("/nonexistent/x.toml".into()),
            ..sources(&[])
        })
        .unwrap_err();
        assert!(matches!(err, ConfigError::MissingFile(_)));
    }

    fn tempfile_dir() -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sipcapture-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }
}
