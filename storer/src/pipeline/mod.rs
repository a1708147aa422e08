//! From a received record to a committed row, one file per stage: [`mode`] (capture modes and
//! their table choice) → [`rules`] (routing rules, which own their `[[route]]` config type) →
//! [`route`] (which table: routing rules, sharding, strftime) → [`rows`] (column values) →
//! [`batch`] (one batch: route, group per capture mode and table, commit the parts, the ack) →
//! [`write`] (one transaction per batch part, with retries). Below: [`crate::db`] (SQL) and
//! [`crate::table`] (naming, columns); nothing here imports [`crate::grpc`] or [`crate::config`].

pub mod batch;
pub mod mode;
pub mod route;
pub mod rows;
pub mod rules;
pub mod write;
