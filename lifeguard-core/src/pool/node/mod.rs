//! The connections to one server: shared pipelined use, exclusive leases, lifetime and
//! circuit breaking.
//!
//! A slot is either shared (any number of callers pipeline on it) or leased (one holder,
//! for transactions and COPY, and for an autocommit statement that changes the session). A
//! lease may take a slot that still has shared requests in flight: the lease's statements
//! queue behind them on the wire, which is sound because the connection answers requests in
//! order and each of those requests is its own implicit transaction.
//!
//! [`Node`] wires acquiring, opening and releasing together; the decision which slot a
//! caller gets is `pick`'s, the queues and hand-offs are `waiters`'s, retiring and refilling
//! are `maintain`'s, and what a caller holds meanwhile is `lease`'s.

mod circuit;
mod lease;
mod maintain;
mod pick;
mod waiters;

pub use lease::Lease;
pub(crate) use lease::{CallUse, SharedUse};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::config::PoolConfig;
use super::metrics::{Gauge, PoolMetrics};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::pg::{changes_session, Config, Connection, LocalSession, Prepare, TransactionStatus};
use crate::rt::{lock, park};
use circuit::Circuit;
use pick::{Pick, Place, Validate};
use waiters::{Sharers, Waiter};

/// The longest an idle connection's validation ping may take.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(1);

/// The least time given to a connect or a ping whose caller's deadline has (nearly)
/// passed, so it fails as a timeout rather than as a configuration error.
const MIN_WAIT: Duration = Duration::from_millis(1);

/// How long a caller waiting for pipeline room sleeps before looking again. Room is handed
/// on when a shared call ends, but requests nobody waits for (follow-ups, rollbacks from
/// destructors) end silently; this bounds what such a request can keep a waiter waiting.
const ROOM_RECHECK: Duration = Duration::from_millis(2);

/// Which side of replication a server is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The read-write primary.
    Primary,
    /// A read-only streaming replica.
    Replica,
}

impl Role {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Replica => "replica",
        }
    }
}

/// The connections to one server and the callers waiting for them.
pub(crate) struct Node {
    pub(crate) config: Config,
    pub(crate) role: Role,
    pub(crate) label: String,
    max_size: usize,
    min_idle: usize,
    max_lifetime: Option<Duration>,
    jitter: f64,
    idle_timeout: Option<Duration>,
    validate_after_idle: Duration,
    /// Also the connect timeout of servers whose configuration sets none.
    acquire_timeout: Duration,
    /// The most requests in flight on one shared connection (`usize::MAX`: no limit).
    pipeline_depth: usize,
    /// How many callers wait in `Slots::room_waiters`: read without the lock by every
    /// shared call as it ends, which wakes one of them.
    waiting: AtomicUsize,
    /// How many leases wait in `Slots::waiters`: read without the lock by a shared call
    /// that leaves its slot without sharers, which a waiting lease may then take. (Shared
    /// callers waiting for a slot do not count: a slot that drains was shared, and one
    /// becoming shared wakes them already.)
    waiting_for_slot: AtomicUsize,
    waiters_gauge: Gauge,
    slots: Mutex<Slots>,
    next_id: AtomicU64,
    closed: AtomicBool,
    pub(crate) metrics: Arc<PoolMetrics>,
    /// The session defaults each connection sets per request and transaction, in unnamed
    /// mode (where `options` cannot carry them).
    local_session: Option<Arc<LocalSession>>,
    /// Each connection's liveness probe interval (`PoolConfig::liveness_probe`).
    liveness_probe: Option<Duration>,
}

#[derive(Default)]
struct Slots {
    list: Vec<Slot>,
    opening: usize,
    /// Leases waiting for a connection, in arrival order.
    waiters: VecDeque<Arc<Waiter>>,
    /// Shared callers waiting for a slot to share (every slot is leased or opening); all
    /// are woken when one comes free.
    share_waiters: VecDeque<Arc<Waiter>>,
    /// Shared callers waiting for room under the pipeline depth, in arrival order.
    room_waiters: VecDeque<Arc<Waiter>>,
    circuit: Circuit,
}

struct Slot {
    id: u64,
    conn: Arc<Connection>,
    sharers: Arc<Sharers>,
    leased: bool,
    expires_at: Option<Instant>,
    last_used: Instant,
}

/// How a caller uses the connection it acquires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Pipelined with other callers' requests, for one autocommit call.
    Shared,
    /// Alone, until the lease drops.
    Exclusive,
}

/// Who a new connection is opened for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Opener {
    /// A caller that leases it.
    Lease,
    /// A caller that shares it (counted among its sharers from the start).
    Share,
    /// The pool itself, to keep `min_idle`.
    Pool,
}

impl From<Access> for Opener {
    fn from(access: Access) -> Opener {
        match access {
            Access::Shared => Opener::Share,
            Access::Exclusive => Opener::Lease,
        }
    }
}

/// A slot picked for a caller.
#[derive(Clone)]
struct Picked {
    id: u64,
    conn: Arc<Connection>,
    sharers: Arc<Sharers>,
}

/// A uniform number in [0, 1) for jitter.
fn rand_unit() -> f64 {
    rand::random::<f64>()
}

impl Node {
    pub(crate) fn new(
        config: Config,
        role: Role,
        pool: &PoolConfig,
        metrics: Arc<PoolMetrics>,
    ) -> Arc<Node> {
        let label = config.display_target();
        let mut config = config;
        if config.get_application_name().is_none() {
            config = config.application_name(format!("lifeguard:{}:{}", pool.name, role.as_str()));
        }
        // Transaction-mode poolers, which unnamed mode is for, refuse the `options`
        // start-up parameter: there each request and transaction sets the defaults itself.
        let local_session = match config.get_prepare() {
            Prepare::Named => {
                if let Some(options) = pool.session_options(config.get_options()) {
                    config = config.options(options);
                }
                None
            }
            Prepare::Unnamed => {
                LocalSession::new(pool.statement_timeout, pool.idle_in_transaction_timeout)
                    .map(Arc::new)
            }
        };
        metrics.max_connections(&label, pool.max_size);
        metrics.init_node(&label);
        let waiters_gauge = metrics.waiters(&label);
        Arc::new(Node {
            config,
            role,
            label,
            max_size: pool.max_size,
            min_idle: pool.min_idle,
            max_lifetime: pool.max_lifetime,
            jitter: pool.lifetime_jitter,
            idle_timeout: pool.idle_timeout,
            validate_after_idle: pool.validate_after_idle,
            acquire_timeout: pool.acquire_timeout,
            pipeline_depth: pool.pipeline_depth.unwrap_or(usize::MAX),
            waiting: AtomicUsize::new(0),
            waiting_for_slot: AtomicUsize::new(0),
            waiters_gauge,
            slots: Mutex::new(Slots::default()),
            next_id: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            metrics,
            local_session,
            liveness_probe: pool.liveness_probe,
        })
    }

    /// A connection to pipeline one autocommit statement on: the least loaded shared slot.
    pub(crate) fn shared(self: &Arc<Self>, deadline: Instant) -> Result<SharedUse> {
        let picked = self.acquire(deadline, Access::Shared)?;
        Ok(SharedUse {
            node: self.clone(),
            conn: picked.conn,
            sharers: picked.sharers,
        })
    }

    /// A connection for one autocommit call of `sql`: shared, unless the text shows that
    /// `sql` changes the session (`SET`, `set_config(.., false)`, `LISTEN`, a temporary
    /// table, a session advisory lock...). Then it is leased, so no other caller's request
    /// is pipelined on it while the change is made, and retired when the call ends, even
    /// when the statement failed (a session advisory lock taken before an error stays).
    /// Retired rather than reset with `DISCARD ALL`: that cannot unload a `LOAD`ed library,
    /// drops the connection's prepared statements anyway, and a reset that fails would
    /// need the retirement too; such statements are rare on the autocommit path, so a new
    /// connection is the cheap certainty.
    pub(crate) fn for_call(self: &Arc<Self>, sql: &str, deadline: Instant) -> Result<CallUse> {
        if !changes_session(sql) {
            return self.shared(deadline).map(CallUse::Shared);
        }
        let lease = self.lease(deadline)?;
        lease.conn.mark_session_dirty();
        Ok(CallUse::Alone(lease))
    }

    /// A connection held exclusively until the lease drops.
    pub(crate) fn lease(self: &Arc<Self>, deadline: Instant) -> Result<Lease> {
        let started = Instant::now();
        let picked = self.acquire(deadline, Access::Exclusive)?;
        let lease = Lease {
            node: self.clone(),
            conn: picked.conn,
            id: picked.id,
            #[cfg(feature = "cache")]
            cache: None,
        };
        // On a timeout the lease drops, handing the slot back.
        picked.sharers.drain(deadline, started)?;
        Ok(lease)
    }

    /// A slot for `access` by `deadline`: picked, validated when it sat idle, opened, or
    /// waited for.
    fn acquire(self: &Arc<Self>, deadline: Instant, access: Access) -> Result<Picked> {
        let started = Instant::now();
        let mut now = started;
        let mut woken = false;
        loop {
            match self.pick(access, now, woken)? {
                Pick::Use { picked, validate } => {
                    if validate == Validate::Skip || self.ping(&picked.conn, deadline) {
                        self.metrics.acquired(self.role, started.elapsed());
                        return Ok(picked);
                    }
                    if access == Access::Shared {
                        let _ = picked.sharers.leave();
                    }
                    self.remove(picked.id, "validation_failed");
                }
                Pick::Open => {
                    let opened = self.open(access.into(), Some(deadline));
                    self.wake_for_slot();
                    if let Ok(picked) = opened {
                        self.metrics.acquired(self.role, started.elapsed());
                        return Ok(picked);
                    }
                    opened?;
                }
                Pick::Wait { waiter, place } => {
                    let now = Instant::now();
                    if now >= deadline {
                        self.forget_waiter(&waiter);
                        self.metrics.acquire_timeout(self.role);
                        return Err(Error::PoolTimeout(started.elapsed()));
                    }
                    // Only the first in line looks again on its own; the others are woken
                    // in turn as room is handed on.
                    let until = match place {
                        Place::First => deadline.min(now + ROOM_RECHECK),
                        Place::Behind => deadline,
                    };
                    self.waiters_gauge.inc();
                    park(&waiter, Some(until));
                    self.waiters_gauge.dec();
                    let handed = match waiter.handed.get() {
                        Some(picked) => Some(picked.clone()),
                        None => self.forget_waiter(&waiter),
                    };
                    if let Some(picked) = handed {
                        self.metrics.acquired(self.role, started.elapsed());
                        return Ok(picked);
                    }
                    woken = true;
                }
            }
            // Whatever loops again took time: a ping, a connect, a wait.
            now = Instant::now();
        }
    }

    /// Opens a connection into a new slot (already counted in `opening`) for `user`, within
    /// the caller's `deadline` when there is one.
    fn open(self: &Arc<Self>, user: Opener, deadline: Option<Instant>) -> Result<Picked> {
        // A server that accepts the socket and then says nothing must not hold a caller (or
        // the monitor filling `min_idle`) longer than a caller would wait for a connection.
        let own = self
            .config
            .get_connect_timeout()
            .unwrap_or(self.acquire_timeout);
        let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let cut_short = left.is_some_and(|left| left < own);
        let timeout = match left {
            Some(left) if cut_short => left.max(MIN_WAIT),
            _ => own,
        };
        let result = Connection::connect(&self.config.clone().connect_timeout(timeout))
            .map(|conn| conn.with_local_session(self.local_session.clone()));
        if let Ok(conn) = &result {
            conn.set_liveness_probe(self.liveness_probe);
        }
        let mut s = lock(&self.slots);
        s.opening -= 1;
        match result {
            Ok(conn) => {
                s.circuit.succeeded();
                let conn = Arc::new(conn);
                let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                let now = Instant::now();
                let expires_at = self.max_lifetime.map(|life| {
                    let spread = (rand_unit() * 2.0 - 1.0) * self.jitter;
                    now + life.mul_f64((1.0 + spread).max(0.05))
                });
                let sharers = Arc::new(Sharers::default());
                if user == Opener::Share {
                    sharers.join();
                }
                s.list.push(Slot {
                    id,
                    conn: conn.clone(),
                    sharers: sharers.clone(),
                    leased: user == Opener::Lease,
                    expires_at,
                    last_used: now,
                });
                self.metrics.opened(&self.label);
                self.publish(&s);
                Ok(Picked { id, conn, sharers })
            }
            Err(e) => {
                // A connect the caller's deadline cut short says nothing about the server.
                let caller_gave_up = cut_short && deadline.is_some_and(|d| Instant::now() >= d);
                if !caller_gave_up {
                    s.circuit.failed(&e);
                }
                self.metrics.connect_error(&self.label);
                Err(e)
            }
        }
    }

    /// Whether an idle connection still answers, within a second and the caller's deadline.
    fn ping(&self, conn: &Connection, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        conn.timeout(VALIDATION_TIMEOUT.min(left).max(MIN_WAIT))
            .batch_execute("")
            .is_ok()
    }

    /// Closes the slot `id` (if still there) and lets a waiter have its place.
    fn remove(&self, id: u64, reason: &'static str) {
        let mut s = lock(&self.slots);
        let before = s.list.len();
        s.list.retain(|slot| slot.id != id);
        if s.list.len() < before {
            self.metrics.closed(&self.label, reason);
        }
        self.publish(&s);
        drop(s);
        self.wake_for_slot();
    }

    /// A lease ended: its connection goes back to shared use, rolled back first, unless it
    /// is broken or its session state changed.
    fn release(&self, id: u64, conn: &Connection) {
        if conn.is_broken() {
            return self.remove(id, "broken");
        }
        if conn.take_session_dirty() {
            // Session state (SET, LISTEN, temp tables) must not leak to the next user.
            return self.remove(id, "session_state");
        }
        if conn.transaction_status() != TransactionStatus::Idle {
            // A lease must not hand an open transaction to the shared traffic behind it.
            let rolled_back = conn.batch_execute("ROLLBACK");
            if rolled_back.is_err() {
                return self.remove(id, "reset_failed");
            }
        }
        let mut s = lock(&self.slots);
        if let Some(slot) = s.list.iter_mut().find(|slot| slot.id == id) {
            slot.leased = false;
            slot.last_used = Instant::now();
        }
        self.publish(&s);
        drop(s);
        self.wake_for_slot();
    }
}
