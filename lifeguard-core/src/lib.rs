//! Lifeguard core: the coroutine-native PostgreSQL client ([`pg`]) and the [`Executor`]
//! abstraction that everything above it runs on. Later issues add the pool, the ORM, the
//! Redis cache and observability here.
//!
//! Nothing in this crate blocks a `may` worker thread: sockets are `may::net` sockets and
//! every wait parks the calling coroutine.

#![warn(missing_docs)]

#[doc(hidden)]
pub mod __private;
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
