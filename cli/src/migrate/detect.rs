//! Which format a config file is: Kamailio's `kamailio.cfg` or heplify-server's TOML.

/// The formats `migrate` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Kamailio's `kamailio.cfg` with the sipcapture module (HOMER 5).
    Kamailio,
    /// heplify-server's `heplify-server.toml` (HOMER 5 or HOMER 7).
    #[value(name = "heplify-server", alias = "heplify")]
    HeplifyServer,
}

impl Format {
    /// The name used in messages and `--from`.
    pub fn name(self) -> &'static str {
        match self {
            Format::Kamailio => "kamailio",
            Format::HeplifyServer => "heplify-server",
        }
    }
}

/// heplify-server option names that say "this is its config".
const HEPLIFY_KEYS: &[&str] = &[
    "HEPAddr",
    "HEPTCPAddr",
    "HEPTLSAddr",
    "DBDriver",
    "DBAddr",
    "DBShema",
    "DBDataTable",
    "PromAddr",
];

/// Detects the format from the content; `None` when it is neither.
pub fn detect(text: &str) -> Option<Format> {
    let mut kamailio = 0;
    let mut heplify = 0;
    for line in text.lines() {
        let t = line.trim_start();
        if t.starts_with("#!KAMAILIO")
            || t.starts_with("#!define")
            || t.starts_with("#!substdef")
            || t.starts_with("loadmodule")
            || t.starts_with("modparam(")
            || t.starts_with("modparam (")
            || t.starts_with("request_route")
            || t.starts_with("onreply_route")
        {
            kamailio += 1;
        }
        if let Some((key, _)) = t.split_once('=')
            && HEPLIFY_KEYS.contains(&key.trim())
        {
            heplify += 1;
        }
    }
    if kamailio > 0 && kamailio >= heplify {
        Some(Format::Kamailio)
    } else if heplify > 0 && toml::from_str::<toml::Table>(text).is_ok() {
        Some(Format::HeplifyServer)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_both_and_refuses_the_rest() {
        assert_eq!(
            detect("#!KAMAILIO\nloadmodule \"sipcapture.so\"\n"),
            Some(Format::Kamailio)
        );
        assert_eq!(
            detect("modparam(\"sipcapture\", \"db_url\", \"mysql://x@y/z\")\n"),
            Some(Format::Kamailio)
        );
        assert_eq!(
            detect("HEPAddr = \"0.0.0.0:9060\"\nDBDriver = \"postgres\"\n"),
            Some(Format::HeplifyServer)
        );
        assert_eq!(detect("[server]\nport = 1\n"), None);
        assert_eq!(detect("HEPAddr = \"unterminated\n"), None);
        assert_eq!(detect(""), None);
    }
}
