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
