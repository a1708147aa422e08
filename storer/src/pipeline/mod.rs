//! From a received record to a committed row, one file per stage. [`batch`] takes a whole batch
//! through the stages: [`route`] (which table: the routing hint, the routing [`rules`] — which own
//! their `[[route]]` config type —, the capture [`mode`]'s table list and mt_mode, strftime) →
//! [`rows`] (column values) → [`write`](mod@write) (one transaction per batch part, with retries).
//!
//! [`dedup`] drops a SIP message captured twice (at two capture points) before it is routed.
//!
//! Imports: `batch` → `dedup`, `route`, `rows`, `write`; `route` → `rules` → `mode`; below them only
//! [`crate::db`] (SQL), [`crate::events`] and [`crate::table`] (naming, columns). Nothing here
//! imports [`crate::grpc`], [`crate::config`] or [`crate::retention`].

pub mod batch;
pub mod dedup;
pub mod mode;
pub mod route;
pub mod rows;
pub mod rules;
pub mod write;
