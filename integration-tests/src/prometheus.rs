//! Scraping a Prometheus `/metrics` endpoint in tests: a plain HTTP/1.1 GET and a parser of the
//! text exposition format into `series → value`.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// One scrape: series (`name` or `name{label="value"}`) → value.
#[derive(Debug, Clone, Default)]
pub struct Scrape {
    /// Every sample.
    pub series: BTreeMap<String, f64>,
    /// The body as served.
    pub text: String,
}

impl Scrape {
    /// A sample's value (0 when absent: counters are 0 until they move).
    pub fn get(&self, series: &str) -> f64 {
        self.series.get(series).copied().unwrap_or(0.0)
    }

    /// The sum over every label set of metric `name`.
    pub fn sum(&self, name: &str) -> f64 {
        self.series
            .iter()
            .filter(|(k, _)| {
                k.as_str() == name || k.strip_prefix(name).is_some_and(|r| r.starts_with('{'))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// Whether `# TYPE name kind` is declared.
    pub fn declares(&self, name: &str, kind: &str) -> bool {
        self.text.contains(&format!("# TYPE {name} {kind}\n"))
    }
}

/// GETs `http://{addr}/metrics` and parses it; fails on a non-200 answer or a wrong type.
pub async fn scrape(addr: SocketAddr) -> anyhow::Result<Scrape> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    stream
        .write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await?;
    let Some((head, body)) = raw.split_once("\r\n\r\n") else {
        bail!("no HTTP header end in {raw:?}");
    };
    if !head.starts_with("HTTP/1.1 200") {
        bail!("scrape failed: {head}");
    }
    if !head
        .to_ascii_lowercase()
        .contains("content-type: text/plain; version=0.0.4")
    {
        bail!("not the Prometheus text format: {head}");
    }
    Ok(parse(body))
}

/// Checks the text format strictly, as a Prometheus server would refuse it: every family has at
/// most one HELP and one TYPE line, before its samples; a family's samples are contiguous; no
/// series appears twice; names are valid and values are numbers. Returns the families declared.
pub fn validate(body: &str) -> anyhow::Result<std::collections::BTreeSet<String>> {
    use std::collections::{BTreeSet, HashSet};
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let mut typed = BTreeSet::new();
    let mut helped = HashSet::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut series = HashSet::new();
    let mut current = String::new();
    for (n, line) in body.lines().enumerate() {
        let n = n + 1;
        let comment = line
            .strip_prefix("# TYPE ")
            .map(|r| ("TYPE", r))
            .or_else(|| line.strip_prefix("# HELP ").map(|r| ("HELP", r)));
        if let Some((what, rest)) = comment {
            let name = rest.split(' ').next().unwrap_or("");
            if !valid_name(name) {
                bail!("line {n}: bad metric name {name:?}");
            }
            if finished.contains(name) {
                bail!("line {n}: {what} of {name} after its samples");
            }
            let fresh = match what {
                "TYPE" => typed.insert(name.to_owned()),
                _ => helped.insert(name.to_owned()),
            };
            if !fresh {
                bail!("line {n}: second {what} line for {name}");
            }
            if current != name && !current.is_empty() {
                finished.insert(std::mem::take(&mut current));
            }
            current = name.to_owned();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.rsplit_once(' ') else {
            bail!("line {n}: no value: {line:?}");
        };
        if value.parse::<f64>().is_err() && !["+Inf", "-Inf", "NaN"].contains(&value) {
            bail!("line {n}: value {value:?} is not a number");
        }
        let name = key.split('{').next().unwrap_or("");
        if !valid_name(name) {
            bail!("line {n}: bad metric name {name:?}");
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| *f == current))
            .unwrap_or(name);
        if family != current {
            if finished.contains(family) || typed.contains(family) {
                bail!("line {n}: samples of {family} are not together");
            }
            if !current.is_empty() {
                finished.insert(std::mem::take(&mut current));
            }
            current = family.to_owned();
        }
        if !series.insert(key.to_owned()) {
            bail!("line {n}: series {key} twice");
        }
    }
    Ok(typed)
}

/// Parses the text format (comments skipped; `name{labels} value`).
pub fn parse(body: &str) -> Scrape {
    let mut series = BTreeMap::new();
    for line in body.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some((name, value)) = line.rsplit_once(' ')
            && let Ok(v) = value.parse::<f64>()
        {
            series.insert(name.to_owned(), v);
        }
    }
    Scrape {
        series,
        text: body.to_owned(),
    }
}
