//! What a caller holds while it uses a connection: a [`SharedUse`] for one pipelined call, a
//! [`Lease`] for exclusive use, and a [`CallUse`] (either) for one autocommit call.

use std::sync::Arc;

use super::waiters::Sharers;
use super::{Node, Role};
use crate::error::Result;
use crate::executor::Executor;
use crate::pg::Connection;

/// A shared connection in use for one call; when it drops, the call's place in the
/// pipeline goes to the first caller waiting for room.
pub(crate) struct SharedUse {
    pub(super) node: Arc<Node>,
    pub(super) conn: Arc<Connection>,
    pub(super) sharers: Arc<Sharers>,
}

impl std::ops::Deref for SharedUse {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Drop for SharedUse {
    fn drop(&mut self) {
        let drained = self.sharers.leave();
        self.node.shared_done(&self.conn, drained);
    }
}

/// The connection of one autocommit call through the pool: shared with other callers, or,
/// for a statement that changes the session (see `Node::for_call`), leased alone and
/// closed when the call ends, so nobody else ever runs on the changed session.
pub(crate) enum CallUse {
    /// Pipelined with other callers' requests.
    Shared(SharedUse),
    /// Alone, marked to be retired on release.
    Alone(Lease),
}

impl CallUse {
    /// The connection, to keep past this use (e.g. for a follow-up read on it).
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        match self {
            CallUse::Shared(s) => &s.conn,
            CallUse::Alone(l) => &l.conn,
        }
    }

    /// Ends the call. A shared connection that a statement changed after all (a change
    /// only its command tag showed) stops being handed out; a leased one is retired as it
    /// is released.
    pub(crate) fn finish(self) {
        if let CallUse::Shared(s) = &self {
            s.node.retire_if_dirty(&s.conn);
        }
    }
}

impl std::ops::Deref for CallUse {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.connection()
    }
}

/// A connection held exclusively; returned to its pool on drop, with any transaction left
/// open rolled back first.
///
/// ```no_run
/// # fn demo(pool: &lifeguard_core::pool::Pool) -> lifeguard_core::Result<()> {
/// use lifeguard_core::Executor;
/// let lease = pool.lease_primary()?;
/// lease.transaction(|tx| tx.execute("UPDATE stock SET n = n - 1 WHERE id = $1", &[&7i32]))?;
/// # Ok(()) }
/// ```
pub struct Lease {
    pub(super) node: Arc<Node>,
    pub(super) conn: Arc<Connection>,
    pub(super) id: u64,
    /// The pool's cache, for the writes of transactions on a lease of the primary.
    #[cfg(feature = "cache")]
    pub(in crate::pool) cache: Option<crate::cache::Cache>,
}

impl Lease {
    /// The connection, for anything the lease does not wrap.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Which server this lease is on.
    pub fn role(&self) -> Role {
        self.node.role
    }

    /// Options for a transaction on this connection.
    pub fn build_transaction(&self) -> crate::pg::TransactionBuilder<'_> {
        let builder = crate::pg::TransactionBuilder::exclusive(&self.conn);
        #[cfg(feature = "cache")]
        let builder = builder.with_cache(self.cache.clone());
        builder
    }

    /// Starts a transaction on this connection.
    pub fn begin(&self) -> Result<crate::pg::Transaction<'_>> {
        self.build_transaction().begin()
    }

    /// Runs `f` in a transaction: commit on `Ok`, rollback on `Err` or panic.
    pub fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        F: FnMut(&mut crate::pg::Transaction<'_>) -> Result<T>,
    {
        self.build_transaction().run(f)
    }

    /// Starts `COPY ... FROM STDIN` on this connection.
    pub fn copy_in(&self, sql: &str) -> Result<crate::pg::CopyIn<'_>> {
        self.conn.copy_in_exclusive(sql)
    }

    /// Runs `COPY ... TO STDOUT` on this connection.
    pub fn copy_out(&self, sql: &str) -> Result<crate::pg::CopyOut<'_>> {
        self.conn.copy_out_exclusive(sql)
    }
}

impl Executor for Lease {
    fn query(&self, sql: &str, params: crate::pg::Params<'_>) -> Result<Vec<crate::pg::Row>> {
        self.conn.query(sql, params)
    }

    fn execute(&self, sql: &str, params: crate::pg::Params<'_>) -> Result<u64> {
        self.conn.execute(sql, params)
    }

    fn simple_query(&self, sql: &str) -> Result<Vec<crate::pg::SimpleQueryMessage>> {
        self.conn.simple_query(sql)
    }

    fn query_pipelined(
        &self,
        sql: &str,
        batch: &[crate::pg::Params<'_>],
    ) -> Result<Vec<Vec<crate::pg::Row>>> {
        self.conn.query_pipelined(sql, batch)
    }

    #[cfg(feature = "cache")]
    fn cache_invalidate(&self, written: crate::cache::Written) {
        // Outside a transaction of its own, a lease's statements commit as they return.
        if let Some(cache) = &self.cache {
            cache.invalidate(&written);
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.node.release(self.id, &self.conn);
    }
}
