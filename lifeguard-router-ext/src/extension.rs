//! [`Lifeguard`]: the pool plus the settings, with the three hooks every adapter calls —
//! `before` (validate), the handler wrapper ([`Lifeguard::handle`]) and `after` (metrics).

use std::sync::Arc;
use std::time::Duration;

use lifeguard_core::pool::Pool;
use prometheus::Registry;

use crate::context::{RequestContext, Settings};
use crate::endpoints::{self, HttpMetrics, ReadyPolicy, Reply};
use crate::executor::RequestExecutor;
use crate::problem::Problem;
use crate::scope::scope;

/// The router extension of one service: cheap to clone, shared by every request.
///
/// Its methods mirror a BRRTRouter middleware and handler wrapper without depending on any
/// framework; see the crate docs for the BRRTRouter glue and [`minihttp`](crate::minihttp)
/// for a ready server.
///
/// ```no_run
/// use lifeguard_core::pool::{Pool, PoolConfig};
/// use lifeguard_core::Executor;
/// use lifeguard_router_ext::{Lifeguard, Settings};
///
/// let lg = Lifeguard::new(Pool::connect(PoolConfig::from_env()?)?, Settings::default());
/// let headers = [("Lifeguard-Read-Preference", "primary")];
/// if let Some(rejection) = lg.before(headers) {
///     // answer `rejection` (a 400 problem+json) and stop
/// #   let _ = rejection;
/// }
/// let ctx = lg.context(headers).expect("validated above");
/// let done = lg.handle(ctx, |db| db.query_one("SELECT 1", &[]).is_ok());
/// assert!(done.output);
/// // add done.headers (request id, token after a write) to the response
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
#[derive(Clone)]
pub struct Lifeguard {
    pool: Pool,
    settings: Arc<Settings>,
    registry: Registry,
    metrics: Arc<HttpMetrics>,
}

/// A handler's output plus the headers the response must carry.
#[derive(Debug)]
pub struct Handled<R> {
    /// What the handler returned.
    pub output: R,
    /// `Lifeguard-Request-Id`, `Lifeguard-Consistency-Token` after a committed write,
    /// `Lifeguard-Served-By` when enabled.
    pub headers: Vec<(String, String)>,
}

impl Lifeguard {
    /// The extension over `pool`; the HTTP request series live on a registry of its own
    /// ([`Lifeguard::registry`]), rendered with the pool's by [`Lifeguard::metrics`].
    /// Without a [`Settings::max_timeout`], the pool's statement timeout becomes the cap of
    /// `Lifeguard-Timeout`.
    pub fn new(pool: Pool, mut settings: Settings) -> Lifeguard {
        if settings.max_timeout.is_none() {
            settings.max_timeout = pool.config().statement_timeout();
        }
        let registry = Registry::new();
        let metrics = HttpMetrics::register(&registry)
            .expect("two distinct series always register on a fresh registry");
        Lifeguard {
            pool,
            settings: Arc::new(settings),
            registry,
            metrics: Arc::new(metrics),
        }
    }

    /// The pool.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// The header settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The registry of the HTTP request series.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The HTTP request series.
    pub fn http_metrics(&self) -> &HttpMetrics {
        &self.metrics
    }

    /// Parses a request's headers ([`RequestContext::from_headers`]).
    pub fn context<'a, I>(&self, headers: I) -> Result<RequestContext, Problem>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        RequestContext::from_headers(&self.settings, headers)
    }

    /// The per-request executor of `ctx`.
    pub fn executor(&self, ctx: RequestContext) -> RequestExecutor {
        RequestExecutor::new(&self.pool, ctx, self.settings.clone())
    }

    /// Middleware `before`: `Some(400 problem+json)` when a `Lifeguard-*` header is
    /// malformed, so the request never reaches a handler; `None` to continue.
    pub fn before<'a, I>(&self, headers: I) -> Option<Reply>
    where
        I: IntoIterator<Item = (&'a str, &'a str)>,
    {
        self.context(headers).err().map(Reply::from)
    }

    /// Middleware `after`: counts the request under a bounded `route` label.
    pub fn after(&self, route: &str, status: u16, latency: Duration) {
        self.metrics.observe(route, status, latency);
    }

    /// The handler wrapper: runs `f` with the request's executor (also installed as the
    /// coroutine-local [`current`](crate::current) unless [`Settings::coroutine_local`] is
    /// off) and collects the response headers once it returns. A panic in `f` propagates
    /// after the coroutine-local has been cleared.
    pub fn handle<R>(
        &self,
        ctx: RequestContext,
        f: impl FnOnce(&RequestExecutor) -> R,
    ) -> Handled<R> {
        let exec = Arc::new(self.executor(ctx));
        let output = if self.settings.coroutine_local {
            scope(&exec, || f(&exec))
        } else {
            f(&exec)
        };
        let headers = exec
            .response_headers()
            .into_iter()
            .map(|(n, v)| (n.to_string(), v))
            .collect();
        Handled { output, headers }
    }

    /// `/metrics`: the pool's series, the cache's when the pool has one, and the HTTP series.
    pub fn metrics(&self) -> Reply {
        match self.pool.cache() {
            Some(cache) => {
                endpoints::metrics(&[self.pool.registry(), cache.registry(), &self.registry])
            }
            None => endpoints::metrics(&[self.pool.registry(), &self.registry]),
        }
    }

    /// `/health/ready` ([`endpoints::ready`]).
    pub fn ready(&self, policy: &ReadyPolicy) -> Reply {
        endpoints::ready(&self.pool, policy)
    }
}
