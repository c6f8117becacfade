//! The coroutine-native PostgreSQL wire client.
//!
//! Built on `postgres-protocol` (message encoding, SCRAM, md5) and `postgres-types`
//! (`ToSql`/`FromSql`) over `may` sockets: every wait parks a coroutine, never a thread.
//! One [`Connection`] is shared by many coroutines, which pipeline their statements on its
//! socket; transactions and `COPY` borrow it exclusively.
//!
//! ```no_run
//! use std::sync::Arc;
//! use lifeguard_core::pg::Connection;
//! use lifeguard_core::Executor;
//!
//! let conn = Arc::new(Connection::open("postgres://postgres@127.0.0.1:55432/lifeguard")?);
//! let workers: Vec<_> = (0..100i32)
//!     .map(|i| {
//!         let conn = conn.clone();
//!         may::go!(move || conn.query_one("SELECT $1::int4 * 2", &[&i]).map(|r| r.get::<_, i32>(0)))
//!     })
//!     .collect();
//! for (i, w) in workers.into_iter().enumerate() {
//!     assert_eq!(w.join().unwrap()?, 2 * i as i32);
//! }
//! # Ok::<(), lifeguard_core::Error>(())
//! ```

mod call;
mod cancel;
mod config;
mod connect;
mod connection;
mod copy;
mod extended;
mod frame;
mod liveness;
mod notify;
mod pipeline;
mod redact;
mod row;
mod session;
mod socket;
mod statement;
mod targets;
mod tls;
mod transaction;
pub mod types;

pub(crate) use call::FollowUp;
pub use call::Params;
pub use cancel::CancelToken;
pub use config::{
    AuthMethod, ChannelBinding, Config, Host, Keepalives, LoadBalanceHosts, Prepare, RequireAuth,
    RootCert, SslMode, SslNegotiation, TargetSessionAttrs, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_STATEMENT_CACHE,
};
pub use connection::{Connection, Timed, TransactionStatus};
pub use copy::{BinaryCopyWriter, CopyIn, CopyOut};
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use frame::fuzz_backend_messages;
pub use liveness::DEFAULT_LIVENESS_PROBE;
pub use notify::Notification;
pub use redact::redact_url;
pub use row::{Row, RowIndex, RowIndexText, SimpleQueryMessage, SimpleRow};
pub(crate) use session::{changes_session, LocalSession};
#[cfg(feature = "cache")]
pub(crate) use socket::{Closer, Socket};
pub use statement::{Column, Statement};
pub use transaction::{IsolationLevel, Transaction, TransactionBuilder};
pub use types::{FromSql, Json, ToSql, Type};
