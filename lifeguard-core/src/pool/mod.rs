//! The pool: one primary and any number of streaming replicas, WAL-aware read routing, read
//! preferences and read-your-writes tokens.
//!
//! Autocommit statements pipeline on shared connections (the least loaded one of the chosen
//! server); transactions and `COPY` lease a connection, and so does an autocommit statement
//! whose text changes the session (`SET`, `set_config(.., false)`, `LISTEN`, a temporary
//! table...), whose connection is then closed rather than shared. A monitor coroutine
//! samples every server's WAL position, so a replica serves a read only while its measured
//! staleness is inside the read's bound and it has replayed past the read's consistency
//! token.
//!
//! ```no_run
//! use lifeguard_core::pool::{Pool, PoolConfig, ReadOptions, ReadPreference};
//! use lifeguard_core::Executor;
//!
//! let pool = Pool::connect(PoolConfig::from_env()?)?;
//! // A per-request handle: its reads follow its own writes.
//! let db = pool.db(ReadOptions::new(ReadPreference::ReplicaPreferred));
//! db.execute("INSERT INTO notes (body) VALUES ($1)", &[&"hello"])?;
//! let token = db.token(); // send it to the client as Lifeguard-Consistency-Token
//! let n: i64 = db.query_one("SELECT count(*) FROM notes", &[])?.try_get(0)?;
//! # let _ = (token, n);
//! # Ok::<(), lifeguard_core::Error>(())
//! ```

#[cfg(feature = "cache")]
mod cached;
mod choose;
mod config;
mod db;
mod functions;
mod metrics;
mod monitor;
mod node;
mod observe;
mod operation;
mod routing;
mod token;

pub use config::PoolConfig;
pub use db::Db;
pub use functions::declare_read_only_functions;
pub use metrics::PoolMetrics;
pub use monitor::NodeState;
pub use node::{Lease, Role};
pub use observe::WarnLimiter;
pub use routing::{ReadOptions, ReadPreference};
pub use token::ConsistencyToken;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::pg::{Connection, Params, Row, SimpleQueryMessage};
use monitor::{start_monitors, History, NodeState as State, Tracker};
use node::Node;
use operation::Operation;
use routing::classify;

/// How many times a read may run when its connection fails under it: several connections
/// of a restarted server can each fail once before their readers notice.
const READ_ATTEMPTS: u32 = 3;

/// How often a caller waiting out a server's outage looks again: the circuit closes as
/// soon as the monitor or a probe reaches the server, and the caller should not sit out
/// more than a few milliseconds of the server being back.
const OUTAGE_RECHECK: Duration = Duration::from_millis(5);

/// Whether an error getting a connection says the server cannot be reached right now (its
/// circuit is open, a connect failed, or it is starting up or shutting down), rather than
/// anything about the caller's request, none of which was sent yet.
fn server_down(e: &Error) -> bool {
    match e {
        Error::Unavailable { .. } | Error::Connection(_) => true,
        // 57P03 cannot_connect_now: starting up, shutting down, in recovery.
        e => e.sqlstate() == Some("57P03"),
    }
}

/// Whether a server error says the session ended because the server is shutting down or
/// restarting (57P01 admin_shutdown, 57P02 crash_shutdown, 57P03 cannot_connect_now).
fn shut_down(e: &Error) -> bool {
    matches!(e.sqlstate(), Some("57P01" | "57P02" | "57P03"))
}

/// A read that failed getting its connection (nothing was sent) or running on it.
enum Failed {
    Acquire(Error),
    Run(Error),
}

/// Runs `acquire` again while it fails with [`server_down`] and `deadline` has not passed:
/// a caller whose deadline outlasts a short outage waits for the server (HikariCP's
/// `connectionTimeout`) instead of failing at once; the last error is returned at the
/// deadline.
fn through_outage<T>(deadline: Instant, mut acquire: impl FnMut() -> Result<T>) -> Result<T> {
    loop {
        match acquire() {
            Err(e) if server_down(&e) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(e);
                }
                may::coroutine::sleep(left.min(OUTAGE_RECHECK));
            }
            other => return other,
        }
    }
}

/// A pool of connections to a primary and its replicas. Cheap to clone; clones share
/// everything. The monitor stops when the last clone drops.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<PoolInner>,
    #[cfg(feature = "cache")]
    cache: Option<crate::cache::Cache>,
}

pub(crate) struct PoolInner {
    config: PoolConfig,
    primary: Member,
    replicas: Vec<Member>,
    history: Mutex<History>,
    fallback: choose::Fallback,
    /// Rate-limits the pool's own repeated warnings.
    quiet: WarnLimiter,
    metrics: Arc<PoolMetrics>,
    closed: AtomicBool,
}

pub(crate) struct Member {
    node: Arc<Node>,
    tracker: Tracker,
}

/// A snapshot of the pool's health, for readiness checks and dashboards.
#[derive(Debug, Clone)]
pub struct PoolHealth {
    /// The primary's state.
    pub primary: NodeState,
    /// Each replica's label and state.
    pub replicas: Vec<(String, NodeState)>,
    /// Open and leased connections per server label.
    pub connections: Vec<(String, usize, usize)>,
}

impl PoolHealth {
    /// Whether some configured server (the primary or a replica) is not healthy.
    pub fn is_degraded(&self) -> bool {
        self.primary != NodeState::Healthy
            || self.replicas.iter().any(|(_, s)| *s != NodeState::Healthy)
    }
}

impl Pool {
    /// Validates `config` and starts the monitor; with the `metrics` feature the pool's
    /// metrics go on a registry of its own (`Pool::registry`). Connections open lazily (or
    /// `min_idle` of them at once).
    pub fn connect(config: PoolConfig) -> Result<Pool> {
        config.validate()?;
        let metrics = PoolMetrics::new(&config.name)?;
        Pool::start(config, metrics)
    }

    /// As [`Pool::connect`], with the metrics on the caller's registry. Only with the
    /// `metrics` feature (on by default).
    #[cfg(feature = "metrics")]
    pub fn connect_with_registry(
        config: PoolConfig,
        registry: prometheus::Registry,
    ) -> Result<Pool> {
        config.validate()?;
        let metrics = PoolMetrics::register(&registry, &config.name)?;
        Pool::start(config, metrics)
    }

    /// Starts the pool on a validated `config`.
    fn start(config: PoolConfig, metrics: PoolMetrics) -> Result<Pool> {
        let metrics = Arc::new(metrics.with_node_labels(config.node_labels()));
        let member = |c: &crate::pg::Config, role| Member {
            node: Node::new(c.clone(), role, &config, metrics.clone()),
            tracker: Tracker::new(role),
        };
        let inner = Arc::new(PoolInner {
            primary: member(&config.primary, Role::Primary),
            replicas: config
                .replicas
                .iter()
                .map(|c| member(c, Role::Replica))
                .collect(),
            history: Mutex::new(History::new(config.history_window)),
            fallback: choose::Fallback::new(config.fallback_limit()),
            quiet: WarnLimiter::new(Duration::from_secs(1)),
            metrics,
            closed: AtomicBool::new(false),
            config,
        });
        start_monitors(&inner, inner.config.monitor_interval)?;
        Ok(Pool {
            inner,
            #[cfg(feature = "cache")]
            cache: None,
        })
    }

    /// The registry holding this pool's metrics (render it for `/metrics`). Only with the
    /// `metrics` feature (on by default).
    #[cfg(feature = "metrics")]
    pub fn registry(&self) -> &prometheus::Registry {
        self.inner.metrics.registry()
    }

    /// The configuration the pool runs with.
    pub fn config(&self) -> &PoolConfig {
        &self.inner.config
    }

    /// A per-request handle with these read options; it tracks its own writes so its later
    /// reads see them, and exposes the resulting consistency token.
    pub fn db(&self, opts: ReadOptions) -> Db {
        Db::new(self.clone(), opts)
    }

    /// A handle pinned to the primary for reads and writes.
    pub fn primary(&self) -> Db {
        self.db(ReadOptions::new(ReadPreference::Primary))
    }

    /// A connection on the primary held exclusively (transactions, `COPY`, session state).
    pub fn lease_primary(&self) -> Result<Lease> {
        self.lease_primary_until(None)
    }

    /// As [`Pool::lease_primary`], waiting no later than `limit` either.
    pub(crate) fn lease_primary_until(&self, limit: Option<Instant>) -> Result<Lease> {
        self.inner.check_open()?;
        let deadline = self.inner.acquire_deadline(limit);
        let node = &self.inner.primary.node;
        let lease = through_outage(deadline, || node.lease(deadline))?;
        #[cfg(feature = "cache")]
        let lease = lease.with_cache(self.cache.clone());
        Ok(lease)
    }

    /// A connection on the server `opts` selects, held exclusively (e.g. a read-only
    /// transaction on a replica: every statement stays on that connection).
    pub fn lease_read(&self, opts: &ReadOptions) -> Result<Lease> {
        self.lease_read_until(opts, None)
    }

    /// As [`Pool::lease_read`], waiting no later than `limit` either.
    pub(crate) fn lease_read_until(
        &self,
        opts: &ReadOptions,
        limit: Option<Instant>,
    ) -> Result<Lease> {
        self.inner.check_open()?;
        let deadline = self.inner.acquire_deadline(limit);
        let routed = self.inner.route(opts, deadline)?;
        let node = &routed.member.node;
        match node.role {
            Role::Primary => through_outage(deadline, || node.lease(deadline)),
            Role::Replica => node.lease(deadline),
        }
    }

    /// Runs `f` in a read-write transaction on the primary: commit on `Ok`, rollback on
    /// `Err` or panic.
    pub fn transaction<T, F>(&self, f: F) -> Result<T>
    where
        F: FnMut(&mut crate::pg::Transaction<'_>) -> Result<T>,
    {
        self.lease_primary()?.transaction(f)
    }

    /// The state of every server and its connections.
    pub fn health(&self) -> PoolHealth {
        let inner = &self.inner;
        let state = |m: &Member| effective_state(m, inner.config.monitor_interval);
        let mut connections = Vec::new();
        for m in std::iter::once(&inner.primary).chain(&inner.replicas) {
            let (open, leased) = m.node.counts();
            connections.push((m.node.label.clone(), open, leased));
        }
        PoolHealth {
            primary: state(&inner.primary),
            replicas: inner
                .replicas
                .iter()
                .map(|m| (m.node.label.clone(), state(m)))
                .collect(),
            connections,
        }
    }

    /// The newest consistency token the primary could issue now (its insert position), from
    /// the monitor's last sample.
    pub fn current_token(&self) -> Option<ConsistencyToken> {
        let h = self.inner.primary.tracker.get();
        h.sampled_at
            .map(|_| ConsistencyToken::new(h.system_id, h.timeline, h.lsn))
    }

    /// Closes every connection and stops the monitor. Calls made afterwards fail.
    pub fn close(&self) {
        self.inner.closed.store(true, Ordering::Release);
        for m in std::iter::once(&self.inner.primary).chain(&self.inner.replicas) {
            m.node.close_all();
        }
    }

    pub(crate) fn inner(&self) -> &PoolInner {
        &self.inner
    }
}

/// A server's state, downgraded to `Unknown` once its samples have gone stale.
fn effective_state(m: &Member, interval: Duration) -> State {
    let h = m.tracker.get();
    if h.state != State::Unreachable && !h.fresh(Instant::now(), interval) {
        State::Unknown
    } else {
        h.state
    }
}

impl PoolInner {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::PoolClosed);
        }
        Ok(())
    }

    /// How long a call may wait for a connection: the acquire timeout, cut short by the
    /// caller's own deadline (`limit`) when it has one.
    fn acquire_deadline(&self, limit: Option<Instant>) -> Instant {
        let by_pool = Instant::now() + self.config.acquire_timeout;
        limit.map_or(by_pool, |limit| limit.min(by_pool))
    }

    /// Runs a read where `opts` routes it. A read whose connection fails is routed and run
    /// again, up to `READ_ATTEMPTS` runs in all while the acquire deadline lasts, and a first
    /// run that a recovery conflict cancels on a replica is routed and run once more. A
    /// replica that failed a request it was sent is marked unreachable first (as a failed
    /// sample would), so the retry goes to another server where `opts` allows one.
    fn read<T>(
        &self,
        opts: &ReadOptions,
        sql: &str,
        run: impl Fn(&Connection) -> Result<T>,
    ) -> Result<T> {
        self.read_with_role(opts, None, sql, run)
            .map(|(value, _)| value)
    }

    /// As `read`, also saying which kind of server answered.
    fn read_with_role<T>(
        &self,
        opts: &ReadOptions,
        limit: Option<Instant>,
        sql: &str,
        run: impl Fn(&Connection) -> Result<T>,
    ) -> Result<(T, Role)> {
        let deadline = self.acquire_deadline(limit);
        let mut attempt = 1;
        // Replicas found unreachable on the way; each is skipped once it is marked.
        let mut skipped = 0;
        loop {
            let routed = self.route(opts, deadline)?;
            let role = routed.member.node.role;
            let result = match self.on_member(routed.member, deadline, sql, &run) {
                Ok(value) => return Ok((value, role)),
                Err(Failed::Acquire(e))
                    if role == Role::Replica
                        && server_down(&e)
                        && skipped < self.replicas.len()
                        && Instant::now() < deadline =>
                {
                    // Nothing was sent, so this costs no attempt: the replica is marked
                    // as a failed sample would mark it, and the read routed again.
                    routed.member.tracker.unreachable();
                    self.metrics.retried("unreachable");
                    skipped += 1;
                    continue;
                }
                Err(Failed::Acquire(e) | Failed::Run(e)) => Err(e),
            };
            // A read is idempotent: a lost connection (a server restart, sockets that closed
            // just before the send) is worth another try, a recovery conflict one more on
            // another server.
            let retry_reason = match &result {
                Err(e)
                    if (matches!(e, Error::Connection(_)) || shut_down(e))
                        && attempt < READ_ATTEMPTS
                        && Instant::now() < deadline =>
                {
                    Some("connectivity")
                }
                Err(Error::SerializationFailure(db))
                    if attempt == 1
                        && role == Role::Replica
                        && db.message.contains("conflict with recovery") =>
                {
                    Some("recovery_conflict")
                }
                _ => None,
            };
            let Some(reason) = retry_reason else {
                return result.map(|value| (value, role));
            };
            if role == Role::Replica && !matches!(&result, Err(e) if e.is_unsent()) {
                // The replica failed us: mark it suspect now rather than at the next sample.
                routed.member.tracker.unreachable();
            }
            self.metrics.retried(reason);
            attempt += 1;
        }
    }

    /// Runs a write (or anything not provably a read) on the primary; `sql` is what `run`
    /// runs, for telemetry.
    fn write<T>(
        &self,
        limit: Option<Instant>,
        sql: &str,
        run: impl Fn(&Connection) -> Result<T>,
    ) -> Result<(T, Arc<Connection>)> {
        self.check_open()?;
        let deadline = self.acquire_deadline(limit);
        let node = &self.primary.node;
        let mut conn = through_outage(deadline, || node.for_call(sql, deadline))?;
        let op = Operation::of(sql);
        let started = Instant::now();
        let (mut result, mut took) = self.observe(node, "write", sql, op, started, || run(&conn));
        if matches!(&result, Err(e) if e.is_unsent()) {
            // It failed before leaving the process, so it cannot have run: one more try.
            conn = through_outage(deadline, || node.for_call(sql, deadline))?;
            (result, took) = self.observe(node, "write", sql, op, started, || run(&conn));
        }
        let kept = conn.connection().clone();
        conn.finish();
        let result = result.map_err(|e| match e {
            Error::Connection(c) if c.unsent => Error::Connection(c),
            // The request was on the wire: it may have committed. Never retried.
            Error::Connection(c) => Error::CommitOutcomeUnknown(c),
            other => other,
        });
        self.metrics.statement(Role::Primary, op, took, &result);
        result.map(|value| (value, kept))
    }

    fn on_member<T>(
        &self,
        member: &Member,
        deadline: Instant,
        sql: &str,
        run: &impl Fn(&Connection) -> Result<T>,
    ) -> Result<T, Failed> {
        let node = &member.node;
        let conn = match node.role {
            Role::Primary => through_outage(deadline, || node.for_call(sql, deadline)),
            // A replica that is down is not waited for: the read goes elsewhere.
            Role::Replica => node.for_call(sql, deadline),
        }
        .map_err(Failed::Acquire)?;
        let op = Operation::of(sql);
        let (result, took) =
            self.observe(&member.node, "read", sql, op, Instant::now(), || run(&conn));
        conn.finish();
        self.metrics.statement(member.node.role, op, took, &result);
        result.map_err(Failed::Run)
    }

    /// The token for everything committed on `conn` so far: its insert position, read on
    /// the same connection after the commit's `ReadyForQuery`.
    fn token_after_write(&self, conn: &Connection) -> Result<ConsistencyToken> {
        token::from_row(&conn.query_one(token::TOKEN_SQL, &[])?)
    }
}

/// Statements through the pool itself: reads routed with the default options, everything
/// else on the primary. Use [`Pool::db`] for per-request options and read-your-writes.
impl Pool {
    /// Runs `run` where `sql` belongs: routed with the default read options when it is a
    /// read, on the primary otherwise.
    fn route_sql<T>(&self, sql: &str, run: impl Fn(&Connection) -> Result<T>) -> Result<T> {
        if classify(sql).read_only {
            self.inner.read(&ReadOptions::default(), sql, run)
        } else {
            self.inner.write(None, sql, run).map(|(value, _)| value)
        }
    }
}

impl Executor for Pool {
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>> {
        self.route_sql(sql, |c| c.query(sql, params))
    }

    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64> {
        self.route_sql(sql, |c| c.execute(sql, params))
    }

    fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>> {
        self.inner
            .write(None, sql, |c| c.simple_query(sql))
            .map(|(m, _)| m)
    }

    fn query_pipelined(&self, sql: &str, batch: &[Params<'_>]) -> Result<Vec<Vec<Row>>> {
        self.route_sql(sql, |c| c.query_pipelined(sql, batch))
    }

    #[cfg(feature = "cache")]
    fn cache_scope(&self) -> Option<crate::cache::CacheScope> {
        self.cache_scope_with(&ReadOptions::default(), self.primary())
    }

    #[cfg(feature = "cache")]
    fn cache_invalidate(&self, written: crate::cache::Written) {
        self.cache_forget(&written);
    }
}
