//! The per-request handle: read options, plus the memory of this request's own writes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::sync::Arc;

use super::node::Role;
use super::routing::classify;
use super::token::{self, TOKEN_SQL};
use super::{ConsistencyToken, Pool, ReadOptions};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::pg::{
    Connection, FollowUp, Params, Row, SimpleQueryMessage, Transaction, TransactionBuilder,
};
use crate::rt::lock;

/// A handle on the pool for one unit of work (typically one HTTP request).
///
/// Reads follow its [`ReadOptions`]; once it has written, its later reads stay on the
/// primary, and [`Db::token`] yields the consistency token a client sends back so that its
/// next request reads its own writes even from a replica.
///
/// ```no_run
/// # fn demo(pool: &lifeguard_core::pool::Pool) -> lifeguard_core::Result<()> {
/// use lifeguard_core::pool::ReadOptions;
/// use lifeguard_core::Executor;
/// let db = pool.db(ReadOptions::default());
/// db.execute("UPDATE users SET seen = now() WHERE id = $1", &[&7i64])?;
/// if let Some(token) = db.token()? {
///     println!("Lifeguard-Consistency-Token: {token}");
/// }
/// # Ok(()) }
/// ```
pub struct Db {
    pool: Pool,
    opts: ReadOptions,
    deadline: Option<(Instant, Duration)>,
    /// Queue the token query behind each write (see [`Db::prefetch_token`]).
    prefetch_token: bool,
    /// The tenant whose rows this handle reads from the cache (see [`Db::with_tenant`]).
    #[cfg(feature = "cache")]
    tenant: Option<String>,
    session: Mutex<Session>,
}

#[derive(Default)]
struct Session {
    wrote: bool,
    token: Option<ConsistencyToken>,
    token_stale: bool,
    served_by: Option<Role>,
    /// The token query queued behind the last write, and the connection it ran on.
    prefetched: Option<(Arc<Connection>, FollowUp)>,
}

impl Db {
    pub(crate) fn new(pool: Pool, opts: ReadOptions) -> Db {
        Db {
            pool,
            opts,
            deadline: None,
            prefetch_token: false,
            #[cfg(feature = "cache")]
            tenant: None,
            session: Mutex::new(Session::default()),
        }
    }

    /// Queues the token query right behind each write of this handle, on the same
    /// connection and in the same flush, so [`Db::token`] after a write costs no round
    /// trip of its own (it reads the rows that came back with the write). For handles whose
    /// token is always wanted after a write, such as an HTTP request that returns
    /// `Lifeguard-Consistency-Token`; elsewhere it would cost the server a statement per
    /// write for nothing. Writes in [`Db::transaction`] still read the token on demand.
    pub fn prefetch_token(mut self) -> Db {
        self.prefetch_token = true;
        self
    }

    /// Gives every statement of this handle a share of one budget: each runs with the time
    /// left until `timeout` from now, after which it returns `Error::Timeout` and is
    /// cancelled on the server (e.g. an HTTP request's deadline). The budget also bounds
    /// waiting for a connection, validating an idle one and opening a new one, and the
    /// statements inside `transaction` and `read_only_transaction` (their `BEGIN`, `COMMIT`
    /// and `ROLLBACK` are not cut short, so a commit's outcome is never left unknown by it).
    pub fn with_timeout(mut self, timeout: Duration) -> Db {
        self.deadline = Some((Instant::now() + timeout, timeout));
        self
    }

    /// Runs one statement on `conn` within this handle's deadline, queueing `follow`
    /// behind it when given.
    fn within_deadline<T>(
        &self,
        conn: &Connection,
        follow: Option<&FollowUp>,
        run: &impl Fn(&dyn Executor) -> Result<T>,
    ) -> Result<T> {
        match self.deadline {
            None => run(&conn.call_with(None, follow)),
            Some((at, timeout)) => {
                let left = at.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(Error::Timeout(timeout));
                }
                // The server-side statement timeout gets what is left; the error names the
                // whole budget.
                run(&conn.call_with(Some((at, left)), follow)).map_err(|e| match e {
                    Error::Timeout(_) => Error::Timeout(timeout),
                    other => other,
                })
            }
        }
    }

    /// Reads cached models keyed by a tenant (`#[lifeguard(cache(tenant = ".."))]`) as
    /// tenant `tenant`: from its keys only. Without a tenant such models are read from
    /// PostgreSQL.
    #[cfg(feature = "cache")]
    pub fn with_tenant(mut self, tenant: &impl crate::cache::KeyPart) -> Db {
        let mut text = String::new();
        tenant.write_key(&mut text);
        self.tenant = Some(text);
        self
    }

    /// The tenant's key text, if a tenant is set.
    #[cfg(feature = "cache")]
    pub(crate) fn tenant_text(&self) -> Option<&str> {
        self.tenant.as_deref()
    }

    /// A handle on the primary with this handle's deadline (the cache's loads).
    #[cfg(feature = "cache")]
    pub(crate) fn pinned_to_primary(&self) -> Db {
        Db {
            deadline: self.deadline,
            ..Db::new(
                self.pool.clone(),
                ReadOptions::new(super::ReadPreference::Primary),
            )
        }
    }

    /// The read options of this handle.
    pub fn options(&self) -> &ReadOptions {
        &self.opts
    }

    /// The pool behind this handle.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Whether anything written through this handle may have committed.
    pub fn wrote(&self) -> bool {
        lock(&self.session).wrote
    }

    /// Which server ran the last statement (diagnostics, e.g. `Lifeguard-Served-By`).
    pub fn served_by(&self) -> Option<Role> {
        lock(&self.session).served_by
    }

    /// The token to hand back to the client: the incoming token merged with the primary's
    /// position after this handle's writes. `None` when nothing was written and no token
    /// came in.
    ///
    /// The position is read once, lazily, after the writes: the primary's insert position
    /// only grows, so reading it after the last commit covers every commit before it.
    pub fn token(&self) -> Result<Option<ConsistencyToken>> {
        let needs_read = {
            let s = lock(&self.session);
            s.wrote && s.token_stale
        };
        if needs_read {
            let token = match self.prefetched_token() {
                Some(token) => token,
                None => {
                    self.pool
                        .inner()
                        .write(None, TOKEN_SQL, |conn| {
                            self.pool.inner().token_after_write(conn)
                        })?
                        .0
                }
            };
            let mut s = lock(&self.session);
            s.token_stale = false;
            s.token = Some(s.token.map_or(token, |old| old.merge(&token)));
        }
        let written = lock(&self.session).token;
        Ok(match (self.opts.min_lsn, written) {
            (Some(a), Some(b)) => Some(a.merge(&b)),
            (a, b) => a.or(b),
        })
    }

    /// The token queued behind the last write ([`Db::prefetch_token`]), if it came back;
    /// `None` sends the caller to read it again (the write's connection may be gone).
    fn prefetched_token(&self) -> Option<ConsistencyToken> {
        let (conn, follow) = lock(&self.session).prefetched.take()?;
        let read = follow.rows(&conn)?.and_then(|rows| {
            let row = rows
                .first()
                .ok_or_else(|| Error::protocol("the token query returned no row"))?;
            token::from_row(row)
        });
        read.map_err(|e| tracing::debug!(target: "lifeguard::pool", "prefetched token lost: {e}"))
            .ok()
    }

    /// Remembers a write that may have committed: it succeeded, or its outcome is unknown.
    /// A server error rolled it back and an acquire error never sent it.
    fn note_write_if_sent<T>(&self, result: &Result<T>) {
        if matches!(result, Ok(_) | Err(Error::CommitOutcomeUnknown(_))) {
            self.note_write();
        }
    }

    fn note_write(&self) {
        let mut s = lock(&self.session);
        s.wrote = true;
        s.token_stale = true;
        s.served_by = Some(Role::Primary);
        // Whatever was prefetched predates this write.
        s.prefetched = None;
    }

    fn note_served(&self, role: Role) {
        lock(&self.session).served_by = Some(role);
    }

    fn read_options(&self) -> Option<ReadOptions> {
        // After a write, this handle's reads stay on the primary: nothing else is sure to
        // have the write yet.
        (!self.wrote()).then_some(self.opts)
    }

    fn run<T>(&self, sql: &str, run: impl Fn(&dyn Executor) -> Result<T>) -> Result<T> {
        let inner = self.pool.inner();
        let limit = self.limit();
        match self.read_options().filter(|_| classify(sql).read_only) {
            Some(opts) => {
                let on = |conn: &Connection| self.within_deadline(conn, None, &run);
                let (value, role) = inner
                    .read_with_role(&opts, limit, sql, on)
                    .map_err(|e| self.past_deadline(e))?;
                self.note_served(role);
                Ok(value)
            }
            None => {
                let follow = self.prefetch_token.then(|| FollowUp::new(TOKEN_SQL));
                let on = |conn: &Connection| self.within_deadline(conn, follow.as_ref(), &run);
                let result = inner
                    .write(limit, sql, on)
                    .map_err(|e| self.past_deadline(e));
                self.note_write_if_sent(&result);
                result.map(|(value, conn)| {
                    if let Some(follow) = follow {
                        lock(&self.session).prefetched = Some((conn, follow));
                    }
                    value
                })
            }
        }
    }

    /// A call that could not get a connection before this handle's deadline timed out.
    ///
    /// A connection error that reaches here never ran a write (the pool turns a write lost
    /// on the wire into `CommitOutcomeUnknown`, which is kept), and a read may always be
    /// called timed out.
    fn past_deadline(&self, e: Error) -> Error {
        match (self.deadline, e) {
            (Some((at, timeout)), Error::PoolTimeout(_) | Error::Connection(_))
                if Instant::now() >= at =>
            {
                Error::Timeout(timeout)
            }
            (_, e) => e,
        }
    }

    /// Runs `f` in a read-write transaction on the primary; the commit counts as this
    /// handle's write.
    pub fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        F: FnMut(&mut Transaction<'_>) -> Result<T>,
    {
        let result = self
            .pool
            .lease_primary_until(self.limit())
            .and_then(|lease| self.bounded(lease.build_transaction()).run(f))
            .map_err(|e| self.past_deadline(e));
        self.note_write_if_sent(&result);
        result
    }

    /// Runs `f` in a `READ ONLY` transaction on the server this handle's options select;
    /// every statement runs on that one connection.
    pub fn read_only_transaction<T, F>(&self, f: F) -> Result<T>
    where
        F: FnMut(&mut Transaction<'_>) -> Result<T>,
    {
        let lease = match self.read_options() {
            Some(opts) => self.pool.lease_read_until(&opts, self.limit()),
            None => self.pool.lease_primary_until(self.limit()),
        }
        .map_err(|e| self.past_deadline(e))?;
        self.note_served(lease.role());
        self.bounded(lease.build_transaction())
            .read_only(true)
            .run(f)
            .map_err(|e| self.past_deadline(e))
    }

    /// When this handle's deadline ends, if it has one.
    fn limit(&self) -> Option<Instant> {
        self.deadline.map(|(at, _)| at)
    }

    /// A transaction whose statements end at this handle's deadline.
    fn bounded<'c>(&self, builder: TransactionBuilder<'c>) -> TransactionBuilder<'c> {
        match self.deadline {
            Some((at, timeout)) => builder.until(at, timeout),
            None => builder,
        }
    }
}

impl Executor for Db {
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.run(sql, |c| c.query(sql, params))
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.run(sql, |c| c.execute(sql, params))
    }

    fn query_pipelined(&self, sql: &str, batch: &[Params<'_>]) -> Result<Vec<Vec<Row>>> {
        self.run(sql, |c| c.query_pipelined(sql, batch))
    }

    /// Runs on the primary within this handle's deadline, like every other statement of
    /// it (so does `batch_execute`, which runs through here).
    fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>> {
        let run = |e: &dyn Executor| e.simple_query(sql);
        let result = self
            .pool
            .inner()
            .write(self.limit(), sql, |c| self.within_deadline(c, None, &run))
            .map(|(m, _)| m)
            .map_err(|e| self.past_deadline(e));
        self.note_write_if_sent(&result);
        result
    }

    #[cfg(feature = "cache")]
    fn cache_scope(&self) -> Option<crate::cache::CacheScope> {
        self.cache_scope_here()
    }

    #[cfg(feature = "cache")]
    fn cache_invalidate(&self, written: crate::cache::Written) {
        self.pool.cache_forget(&written);
    }
}
