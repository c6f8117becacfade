//! Lifeguard core: the coroutine-native PostgreSQL client and everything built on it.
//!
//! - [`pg`]: the wire client: pipelined shared connections, transactions, COPY,
//!   LISTEN/NOTIFY, cancellation, binary types.
//! - [`pool`]: a primary and its streaming replicas, WAL-lag-aware read routing, read
//!   preferences and read-your-writes consistency tokens, health and metrics.
//! - [`model`] and [`query`]: the ORM (derived models and records, the query builder,
//!   relations and batched loaders, paging, bulk writes, hooks, soft delete).
//! - [`migrate`]: versioned migrations under an advisory lock, DDL from models, drift.
//! - [`rt`]: the runtime helpers (spawn, park with a deadline) the other crates share.
//! - [`Executor`]: the one abstraction SQL runs on; a connection, a transaction, the pool
//!   and a per-request [`pool::Db`] all implement it.
//!
//! Nothing in this crate blocks a `may` worker thread: sockets are `may::net` sockets and
//! every wait parks the calling coroutine.

#![warn(missing_docs)]

#[doc(hidden)]
pub mod __private;
#[cfg(feature = "cache")]
pub mod cache;
pub mod error;
pub mod executor;
pub mod migrate;
pub mod model;
pub mod pg;
pub mod pool;
pub mod query;
pub mod rt;

pub use error::{DbError, Error, Result, SqlState};
pub use executor::{Executor, ExecutorExt};
pub use lifeguard_derive::{FromRow, LifeEnum, LifeModel, LifeRecord};
