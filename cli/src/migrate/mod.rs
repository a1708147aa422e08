//! `sipcapture migrate FILE`: a Kamailio `kamailio.cfg` (HOMER 5) or a `heplify-server.toml`
//! turned into a `sipcapture up` config, with every line or option that could not be translated
//! listed (line number and reason).
//!
//! - [`detect`]: which of the two formats a file is.
//! - [`lex`]: Kamailio's preprocessor (`#!define`, `#!substdef`, `#!ifdef`) and tokenizer.
//! - [`kamailio`]: the top-level statements (`modparam`, `loadmodule`, `listen`, route blocks).
//! - [`ast`]: route blocks as statement trees.
//! - [`script`]: the route blocks walked path by path into `[[storer.route]]` rules, which
//!   [`rules`] combines and cleans up.
//! - [`heplify`]: `heplify-server.toml` options.
//! - [`emit`]: the TOML document (sections, comments naming the source line) and the notes.

pub mod ast;
pub mod detect;
pub mod emit;
pub mod heplify;
pub mod kamailio;
pub mod lex;
pub mod rules;
pub mod script;

use std::path::Path;

pub use detect::Format;
pub use emit::{Document, Note};

/// The exit code of `migrate` when the file cannot be read (sysexits `EX_NOINPUT`).
pub const EXIT_UNREADABLE: i32 = 66;
/// The exit code of `migrate` when the file is neither a Kamailio config nor a heplify-server
/// config (or cannot be parsed as the forced one; sysexits `EX_DATAERR`).
pub const EXIT_UNKNOWN_FORMAT: i32 = 65;

/// Why no config was produced.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Unreadable {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The content is not a config of a known format.
    #[error("{path}: {reason}")]
    UnknownFormat {
        /// The file.
        path: String,
        /// What was looked for.
        reason: String,
    },
}

impl MigrateError {
    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            MigrateError::Unreadable { .. } => EXIT_UNREADABLE,
            MigrateError::UnknownFormat { .. } => EXIT_UNKNOWN_FORMAT,
        }
    }
}

/// A translated config: the TOML text for `sipcapture up --config` and what was not translated.
#[derive(Debug, Clone)]
pub struct Migration {
    /// The format the file was read as.
    pub format: Format,
    /// The TOML config.
    pub toml: String,
    /// Lines and options not translated, in file order.
    pub notes: Vec<Note>,
}

impl Migration {
    /// The notes as lines for stderr: `FILE:LINE: ITEM: REASON`.
    pub fn render_notes(&self, file: &str) -> String {
        let mut out = String::new();
        for note in &self.notes {
            out.push_str(&note.render(file));
            out.push('\n');
        }
        out
    }
}

/// Reads `path` and translates it (format detected unless `from` forces one).
pub fn migrate_file(path: &Path, from: Option<Format>) -> Result<Migration, MigrateError> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| MigrateError::Unreadable {
        path: name.clone(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    migrate_text(&text, &name, from)
}

/// Translates the text of a config (`name` is used in messages and the output's header).
pub fn migrate_text(
    text: &str,
    name: &str,
    from: Option<Format>,
) -> Result<Migration, MigrateError> {
    let format = match from {
        Some(f) => f,
        None => detect::detect(text).ok_or_else(|| MigrateError::UnknownFormat {
            path: name.to_owned(),
            reason: "neither a Kamailio config (modparam/loadmodule/request_route) nor a \
                     heplify-server TOML config (HEPAddr, DBDriver, ...); use --from to force one"
                .to_owned(),
        })?,
    };
    let mut doc = Document::new(format, name);
    match format {
        Format::Kamailio => kamailio::translate(text, &mut doc),
        Format::HeplifyServer => {
            heplify::translate(text, &mut doc).map_err(|reason| MigrateError::UnknownFormat {
                path: name.to_owned(),
                reason,
            })?;
        }
    }
    let notes = doc.sorted_notes();
    Ok(Migration {
        format,
        toml: doc.render(),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAMAILIO: &str = include_str!("../../../integration-tests/testdata/migrate/kamailio.cfg");
    const HEPLIFY: &str =
        include_str!("../../../integration-tests/testdata/migrate/heplify-server.toml");

    /// Input never panics: prefixes of the test configs (cut anywhere, unbalanced
    /// brackets and strings included), read as either format.
    #[test]
    fn truncated_configs_never_panic() {
        for text in [KAMAILIO, HEPLIFY] {
            // Right after every bracket, quote, operator and line end, and every 17 bytes.
            let cuts: Vec<usize> = (0..=text.len())
                .filter(|i| text.is_char_boundary(*i))
                .filter(|i| {
                    i % 17 == 0
                        || text[..*i]
                            .chars()
                            .next_back()
                            .is_some_and(|c| "([{\"\n$=,;!".contains(c))
                })
                .collect();
            for cut in cuts {
                let part = &text[..cut];
                for from in [Some(Format::Kamailio), Some(Format::HeplifyServer)] {
                    let _ = migrate_text(part, "t", from);
                }
            }
        }
        for junk in [
            "{{{{",
            "}}}",
            "if (",
            "route[",
            "modparam(",
            "$",
            "\"",
            "#!define",
            "a = ",
            "/*",
            "#!subst \"/(/x/\"",
        ] {
            let _ = migrate_text(junk, "t", Some(Format::Kamailio));
        }
    }
}
