//! Capture modes: Kamailio's `{db_url, table_name, mt_mode, hash_source}` bundles and the table
//! choice among a mode's table list (behaviour doc §3).

use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// How a mode picks one table of its `a|b|c` list (Kamailio `mt_mode`, matched
/// case-sensitively as Kamailio does).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum MtMode {
    /// `kam_rand() % n`.
    #[default]
    #[serde(rename = "rand")]
    Rand,
    /// Cycles through the list (per storer; Kamailio does it per worker process).
    #[serde(rename = "round_robin")]
    RoundRobin,
    /// CRC-32 of the hash source modulo n: the same input always picks the same table.
    #[serde(rename = "hash")]
    Hash,
}

/// The input of `mt_mode = hash` (Kamailio `hash_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum HashSource {
    /// The Call-ID's first whitespace-delimited token (after topoh unmasking).
    #[default]
    #[serde(
        rename = "call_id",
        alias = "CALL_ID",
        alias = "Call_ID",
        alias = "Call_Id"
    )]
    CallId,
    /// The From URI user, untrimmed.
    #[serde(rename = "from_user", alias = "FROM_USER", alias = "From_User")]
    FromUser,
    /// The To URI user, untrimmed.
    #[serde(rename = "to_user", alias = "TO_USER", alias = "To_User")]
    ToUser,
}

impl MtMode {
    /// Parses Kamailio's `mt_mode` value (case-sensitive, as Kamailio compares it).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim() {
            "rand" => Some(MtMode::Rand),
            "round_robin" => Some(MtMode::RoundRobin),
            "hash" => Some(MtMode::Hash),
            _ => None,
        }
    }
}

impl HashSource {
    /// Parses Kamailio's `hash_source` value (case-insensitive, as Kamailio's `strcasecmp`).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "call_id" => Some(HashSource::CallId),
            "from_user" => Some(HashSource::FromUser),
            "to_user" => Some(HashSource::ToUser),
            _ => None,
        }
    }
}

/// The table layout a capture mode writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum StorageSchema {
    /// Kamailio's HOMER 5 tables (`sip_capture_*`, `rtcp_capture`, ...), one column per field.
    #[default]
    #[serde(rename = "homer5", alias = "HOMER5")]
    Homer5,
    /// heplify-server's HOMER 7 tables (`hep_proto_*`, JSON headers), which homer-app reads.
    #[serde(rename = "homer7", alias = "HOMER7")]
    Homer7,
}

impl StorageSchema {
    /// Parses `homer5` / `homer7` (case-insensitive).
    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "homer5" => Some(StorageSchema::Homer5),
            "homer7" => Some(StorageSchema::Homer7),
            _ => None,
        }
    }
}

/// A validated capture mode: where its rows go and how it picks among its tables.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeSpec {
    /// `default` for the mode built from the top-level keys, else the configured name.
    pub name: String,
    /// Its database.
    pub db_url: String,
    /// Its table list (`a|b|c`, strftime allowed), validated.
    pub table_name: String,
    /// Table choice.
    pub mt_mode: MtMode,
    /// Hash input for `mt_mode = hash`.
    pub hash_source: HashSource,
    /// Pool size.
    pub db_max_connections: u32,
    /// Its table layout.
    pub schema: StorageSchema,
}

/// The name of the mode built from the top-level `db_url` / `table_name` / `mt_mode` /
/// `hash_source` keys (Kamailio synthesises it the same way).
pub const DEFAULT_MODE: &str = "default";

/// The result of choosing among n tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableChoice {
    /// Index into the table list.
    pub index: usize,
    /// True when mt_mode is hash and the hash source was empty: Kamailio drops such a row
    /// ("hashing failed"); we store it in the first table and flag it.
    pub hash_source_empty: bool,
}

/// Kamailio's hash: zlib/IEEE CRC-32 of the bytes, modulo the table count. For `call_id` the
/// input is the first token (leading whitespace skipped, cut at the next whitespace).
pub fn hash_index(source: HashSource, value: &str, tables: usize) -> Option<usize> {
    let input = match source {
        HashSource::CallId => value.split_ascii_whitespace().next().unwrap_or(""),
        HashSource::FromUser | HashSource::ToUser => value,
    };
    if input.is_empty() || tables == 0 {
        return None;
    }
    let crc = crc32fast::hash(input.as_bytes());
    usize::try_from(crc).ok().map(|h| h % tables)
}

/// Per-mode table chooser state (the round-robin cursor).
#[derive(Debug, Default)]
pub struct Chooser {
    cursor: AtomicUsize,
}

impl Chooser {
    /// Picks an index into a list of `tables` entries (≥ 1) for one record. `hash_value` is the
    /// record's value for the mode's hash source.
    pub fn choose(
        &self,
        mt_mode: MtMode,
        source: HashSource,
        hash_value: &str,
        tables: usize,
    ) -> TableChoice {
        if tables <= 1 {
            return TableChoice {
                index: 0,
                hash_source_empty: false,
            };
        }
        match mt_mode {
            MtMode::Rand => TableChoice {
                index: rand::random_range(0..tables),
                hash_source_empty: false,
            },
            MtMode::RoundRobin => TableChoice {
                index: self.cursor.fetch_add(1, Ordering::Relaxed) % tables,
                hash_source_empty: false,
            },
            MtMode::Hash => match hash_index(source, hash_value, tables) {
                Some(index) => TableChoice {
                    index,
                    hash_source_empty: false,
                },
                None => TableChoice {
                    index: 0,
                    hash_source_empty: true,
                },
            },
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn kamailio_hash_example() {
        // behaviour doc §3: crc32("a84b4c76e66710@pc33.atlanta.com") = 1786046826, % 3 = 0.
        assert_eq!(
            crc32fast::hash(b"a84b4c76e66710@pc33.atlanta.com"),
            1786046826
        );
        assert_eq!(
            hash_index(
                HashSource::CallId,
                "  a84b4c76e66710@pc33.atlanta.com trailing",
                3
            ),
            Some(0)
        );
    }

    /// One line of `testdata/crc_golden.csv` (computed with Python's zlib.crc32).
    pub(crate) struct Golden {
        pub source: HashSource,
        pub value: String,
        pub crc: u32,
        /// Expected index for 2, 3 and 5 tables.
        pub index: [(usize, usize); 3],
    }

    pub(crate) fn golden() -> Vec<Golden> {
        include_str!("../../testdata/crc_golden.csv")
            .lines()
            .skip(1)
            .map(|line| {
                let f: Vec<&str> = line.split(',').collect();
                assert_eq!(f.len(), 6, "{line}");
                Golden {
                    source: HashSource::parse(f[0]).unwrap(),
                    value: f[1].to_owned(),
                    crc: f[2].parse().unwrap(),
                    index: [
                        (2, f[3].parse().unwrap()),
                        (3, f[4].parse().unwrap()),
                        (5, f[5].parse().unwrap()),
                    ],
                }
            })
            .collect()
    }

    #[test]
    fn chooser_matches_the_zlib_golden_list() {
        let rows = golden();
        for source in [HashSource::CallId, HashSource::FromUser, HashSource::ToUser] {
            let n = rows.iter().filter(|g| g.source == source).count();
            assert!(n >= 50, "{source:?}: only {n} golden values");
        }
        assert!(
            rows.iter()
                .filter(|g| g.source == HashSource::CallId)
                .count()
                >= 100
        );
        let c = Chooser::default();
        for g in &rows {
            let input = match g.source {
                HashSource::CallId => g.value.split_ascii_whitespace().next().unwrap(),
                _ => g.value.as_str(),
            };
            assert_eq!(crc32fast::hash(input.as_bytes()), g.crc, "{:?}", g.value);
            for (tables, index) in g.index {
                assert_eq!(
                    hash_index(g.source, &g.value, tables),
                    Some(index),
                    "{:?}",
                    g.value
                );
                assert_eq!(
                    c.choose(MtMode::Hash, g.source, &g.value, tables),
                    TableChoice {
                        index,
                        hash_source_empty: false
                    },
                    "{:?} % {tables}",
                    g.value
                );
            }
        }
    }

    #[test]
    fn kamailio_value_names() {
        assert_eq!(MtMode::parse("round_robin"), Some(MtMode::RoundRobin));
        assert_eq!(
            MtMode::parse("HASH"),
            None,
            "mt_mode is case-sensitive in Kamailio"
        );
        assert_eq!(HashSource::parse("From_User"), Some(HashSource::FromUser));
        assert_eq!(HashSource::parse("to_user"), Some(HashSource::ToUser));
        assert_eq!(HashSource::parse("callid"), None);
    }

    #[test]
    fn empty_hash_source_goes_to_first_table_flagged() {
        let c = Chooser::default();
        let choice = c.choose(MtMode::Hash, HashSource::FromUser, "", 4);
        assert_eq!(
            choice,
            TableChoice {
                index: 0,
                hash_source_empty: true
            }
        );
    }

    #[test]
    fn round_robin_cycles() {
        let c = Chooser::default();
        let picks: Vec<usize> = (0..6)
            .map(|_| {
                c.choose(MtMode::RoundRobin, HashSource::CallId, "", 3)
                    .index
            })
            .collect();
        assert_eq!(picks, vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn rand_stays_in_range() {
        let c = Chooser::default();
        for _ in 0..100 {
            assert!(c.choose(MtMode::Rand, HashSource::CallId, "", 3).index < 3);
        }
    }
}
