//! From a received record to a committed row: [`mode`] (capture modes and their table choice) →
//! [`route`] (which table: routing rules, sharding, strftime) → [`rows`] (column values) →
//! [`write`] (one transaction per batch, with retries).

pub mod mode;
pub mod route;
pub mod rows;
pub mod rules;
pub mod write;
