//! `sipcapture calls` and `sipcapture flow`: the storer's read side ([`sipcapture_storer::view`])
//! on the command line: a list of calls, a call's ladder as text or as one HTML page.

use std::path::{Path, PathBuf};

use sipcapture_storer::view::calls::{self, CallSummary};
use sipcapture_storer::view::html::{self, FormValues};
use sipcapture_storer::view::ladder::Ladder;
use sipcapture_storer::view::query::View;
use sipcapture_storer::view::{ViewError, search_calls};

/// The database the commands read when `--db` is not given (and `SIPCAPTURE_DB_URL` unset):
/// the file `sipcapture up` writes in the working directory.
pub const DEFAULT_DB: &str = "sqlite://sipcapture.db";

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CallsError {
    /// Search or database failure.
    #[error(transparent)]
    View(#[from] ViewError),
    /// Opening the database failed.
    #[error(transparent)]
    Db(#[from] sipcapture_storer::db::DbError),
    /// A SQLite file that is not there (the read side never creates one).
    #[error("no database at {0}: run `sipcapture up` (or `sipcapture import`) first, or pass --db")]
    NoFile(String),
    /// `--output` is neither `table` nor `json`.
    #[error("--output {0:?}: use table or json")]
    Output(String),
    /// Writing the HTML file failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// JSON encoding failed.
    #[error("cannot encode JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Opens the read side of `url`; a SQLite file must exist.
pub async fn open(url: &str) -> Result<View, CallsError> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let file = path.split('?').next().unwrap_or("");
        if !file.is_empty() && file != ":memory:" && !Path::new(file).exists() {
            return Err(CallsError::NoFile(file.to_owned()));
        }
    }
    Ok(View::open(url).await?)
}

/// `sipcapture calls` options as given.
#[derive(Debug, Clone, Default)]
pub struct CallsCommand {
    /// Database URL.
    pub db: String,
    /// `--from`, `--to`, `--user`, `--callid`, `--method`, `--ip` as typed (empty: not given).
    pub filters: FormValues,
    /// `--limit`.
    pub limit: usize,
    /// `--offset`.
    pub offset: usize,
    /// `--output`.
    pub output: String,
}

/// Runs `sipcapture calls`: the text to print.
pub async fn calls(cmd: &CallsCommand) -> Result<String, CallsError> {
    if cmd.output != "table" && cmd.output != "json" {
        return Err(CallsError::Output(cmd.output.clone()));
    }
    let search = cmd
        .filters
        .search(chrono::Utc::now(), cmd.limit, cmd.offset)?;
    let view = open(&cmd.db).await?;
    let (found, page) = search_calls(&view, &search).await?;
    Ok(render_calls(&found, page.more, page.partial, &cmd.output)?)
}

fn render_calls(
    found: &[CallSummary],
    more: bool,
    partial: bool,
    output: &str,
) -> Result<String, serde_json::Error> {
    if output == "json" {
        let mut text = serde_json::to_string_pretty(&serde_json::json!({
            "calls": found,
            "more": more,
            "partial": partial,
        }))?;
        text.push('\n');
        return Ok(text);
    }
    if found.is_empty() {
        return Ok("no calls found\n".to_owned());
    }
    let mut text = calls::render_table(found);
    if more {
        text.push_str("(more calls: use --offset to page)\n");
    }
    if partial {
        text.push_str(
            "(the search stopped at its row limit: narrow --from/--to for older calls)\n",
        );
    }
    Ok(text)
}

/// Runs `sipcapture flow`: the ladder as text; with `html`, also writes the page there.
pub async fn flow(
    db: &str,
    callid: &str,
    related: bool,
    html_file: Option<&Path>,
) -> Result<String, CallsError> {
    let view = open(db).await?;
    let messages = view.call(callid, related).await?;
    if messages.is_empty() {
        return Ok(format!("no messages stored for Call-ID {callid}\n"));
    }
    let ladder = Ladder::build(messages);
    if let Some(path) = html_file {
        std::fs::write(path, html::flow_page(callid, &ladder, None)).map_err(|source| {
            CallsError::Write {
                path: path.to_owned(),
                source,
            }
        })?;
    }
    Ok(ladder.render_text())
}
