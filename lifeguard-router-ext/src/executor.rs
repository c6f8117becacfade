//! The per-request executor: the pool, seen through one request's context.

use std::sync::Arc;

use lifeguard_core::pg::{Params, Row, SimpleQueryMessage};
use lifeguard_core::pool::{ConsistencyToken, Db, Pool};
use lifeguard_core::{Executor, Result};

use crate::context::{RequestContext, Settings};

/// One request's handle on the pool: its reads follow the request's preference, staleness
/// bound and consistency token; every statement shares the request's deadline
/// ([`Db::with_timeout`]); once it has written, its later reads stay on the primary.
///
/// Implements [`Executor`], so ORM code runs on it directly.
///
/// ```no_run
/// # fn demo(lg: &lifeguard_router_ext::Lifeguard) -> lifeguard_core::Result<()> {
/// use lifeguard_core::Executor;
/// use lifeguard_router_ext::RequestContext;
/// let ctx = RequestContext::from_headers(lg.settings(), [("Lifeguard-Read-Preference", "replica")])
///     .expect("valid headers");
/// let exec = lg.executor(ctx);
/// let n: i64 = exec.query_one("SELECT count(*) FROM notes", &[])?.try_get(0)?;
/// for (name, value) in exec.response_headers() {
///     println!("{name}: {value}");
/// }
/// # let _ = n; Ok(()) }
/// ```
pub struct RequestExecutor {
    ctx: RequestContext,
    db: Db,
    settings: Arc<Settings>,
}

impl RequestExecutor {
    /// The executor of `ctx` on `pool`.
    pub fn new(pool: &Pool, ctx: RequestContext, settings: Arc<Settings>) -> RequestExecutor {
        // The response carries the token after any write: read it in the write's flush.
        let mut db = pool.db(*ctx.read_options()).prefetch_token();
        if let Some(deadline) = ctx.deadline() {
            db = db.with_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
        }
        RequestExecutor { ctx, db, settings }
    }

    /// The request's context.
    pub fn context(&self) -> &RequestContext {
        &self.ctx
    }

    /// The underlying pool handle (transactions, `served_by`, `wrote`).
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// The token to send back: `Some` only when this request wrote something that may have
    /// committed. It is the request's incoming token merged with the primary's position
    /// after the writes. A failure to read the position is logged and yields `None` (the
    /// client then simply has no read-your-writes guarantee for its next request).
    pub fn committed_token(&self) -> Option<ConsistencyToken> {
        if !self.db.wrote() {
            return None;
        }
        match self.db.token() {
            Ok(token) => token,
            Err(e) => {
                tracing::warn!(error = %e, request_id = self.ctx.request_id(), "could not read the commit position for the consistency token");
                None
            }
        }
    }

    /// The headers to add to the response: the request id always, the consistency token
    /// after a committed write, `Lifeguard-Served-By` when enabled and a statement ran.
    pub fn response_headers(&self) -> Vec<(&str, String)> {
        let names = &self.settings.names;
        let mut out = vec![(names.request_id.as_str(), self.ctx.request_id().to_string())];
        if let Some(token) = self.committed_token() {
            out.push((names.consistency_token.as_str(), token.to_string()));
        }
        if self.settings.served_by {
            if let Some(role) = self.db.served_by() {
                out.push((names.served_by.as_str(), role.as_str().to_string()));
            }
        }
        out
    }
}

impl Executor for RequestExecutor {
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.db.query(sql, params)
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.db.execute(sql, params)
    }

    fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>> {
        self.db.simple_query(sql)
    }

    fn query_pipelined(&self, sql: &str, batch: &[Params<'_>]) -> Result<Vec<Vec<Row>>> {
        self.db.query_pipelined(sql, batch)
    }

    fn cache_scope(&self) -> Option<lifeguard_core::cache::CacheScope> {
        self.db.cache_scope()
    }

    fn cache_invalidate(&self, written: lifeguard_core::cache::Written) {
        self.db.cache_invalidate(written)
    }
}
