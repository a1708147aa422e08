//! The `sipcapture` command, built on the services' facades.
//!
//! - [`up`]: collector + storer + control in one process with one gRPC listener, SQLite by
//!   default (`Collector`, `Storer::build` and `sipcapture_control::build`).
//! - [`import`]: a pcap/pcapng file through a collector into an in-process storer, then exit.
//! - [`calls`]: `sipcapture calls` (a list of calls) and `sipcapture flow` (a call's ladder as
//!   text or HTML), the storer's read side on the command line.
//! - [`migrate`]: `sipcapture migrate FILE`, a Kamailio `kamailio.cfg` or a `heplify-server.toml`
//!   turned into an `up` config, with what was not translated listed by line.
//! - [`status`]: `sipcapture status on|off|check`, a ControlService client printing a table.

pub mod calls;
pub mod import;
pub mod migrate;
pub mod status;
pub mod up;
