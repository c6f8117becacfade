//! The connections to one server: shared pipelined use, exclusive leases, lifetime and
//! circuit breaking.
//!
//! A slot is either shared (any number of callers pipeline on it) or leased (one holder,
//! for transactions and COPY). A lease may take a slot that still has shared requests in
//! flight: the lease's statements queue behind them on the wire, which is sound because the
//! connection answers requests in order and each of those requests is its own implicit
//! transaction.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use may::sync::Blocker;

use super::config::PoolConfig;
use super::metrics::{Gauge, PoolMetrics};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::pg::{Config, Connection, TransactionStatus};
use crate::rt::{lock, park, Parked};

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
    /// How many wait in `Slots::waiters`: read without the lock by a shared call that
    /// leaves its slot without sharers, which a waiting lease may then take.
    waiting_for_slot: AtomicUsize,
    waiters_gauge: Gauge,
    slots: Mutex<Slots>,
    next_id: AtomicU64,
    closed: AtomicBool,
    pub(crate) metrics: Arc<PoolMetrics>,
}

#[derive(Default)]
struct Slots {
    list: Vec<Slot>,
    opening: usize,
    /// Callers waiting for a connection: to lease, or to share when every slot is leased.
    waiters: VecDeque<Arc<Waiter>>,
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

/// Connect failures open the circuit for a growing, jittered while, so a dead server costs
/// callers a fast error instead of a connect timeout each.
#[derive(Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
    last_error: Option<String>,
}

impl Circuit {
    fn check(&self, label: &str) -> Result<()> {
        match self.open_until {
            Some(until) if Instant::now() < until => Err(Error::Unavailable {
                node: label.to_owned(),
                reason: format!(
                    "circuit open after {} failed connects (last: {})",
                    self.failures,
                    self.last_error.as_deref().unwrap_or("-")
                ),
            }),
            _ => Ok(()),
        }
    }

    fn failed(&mut self, e: &Error) {
        self.failures = self.failures.saturating_add(1);
        let base = Duration::from_millis(50) * 2u32.saturating_pow(self.failures.min(8));
        let backoff = base
            .min(Duration::from_secs(5))
            .mul_f64(0.5 + rand_unit() * 0.5);
        self.open_until = Some(Instant::now() + backoff);
        self.last_error = Some(e.to_string());
    }

    fn succeeded(&mut self) {
        *self = Circuit::default();
    }
}

/// A uniform number in [0, 1) for jitter.
fn rand_unit() -> f64 {
    rand::random::<f64>()
}

enum Pick {
    /// Use this slot; `true` when it must be validated first.
    Use(Picked, bool),
    Open,
    /// Wait in line; `true` when first in line.
    Wait(Arc<Waiter>, bool),
}

/// A caller waiting in one of a node's queues.
struct Waiter {
    blocker: Blocker,
    /// Set, under the slots lock, when a finished shared call hands its place in a pipeline
    /// straight to this caller (already taken out of the queue), which then uses that
    /// connection without picking again.
    handed: OnceLock<Picked>,
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

/// A slot picked for a caller.
#[derive(Clone)]
struct Picked {
    id: u64,
    conn: Arc<Connection>,
    sharers: Arc<Sharers>,
}

/// The shared calls in progress on one slot, counted from the pick (under the slots lock)
/// to the end of the call. A shared call picks its connection before it writes its
/// request, so a lease may take the slot in between; the lease then waits for the count to
/// drain, or that request would run inside the lease's transaction (and its caller would
/// answer before anything committed).
#[derive(Default)]
struct Sharers {
    count: AtomicUsize,
    /// A lease that took the slot while shared calls were in progress.
    drainer: Mutex<Option<Arc<Waiter>>>,
}

impl Sharers {
    /// Counts a shared call in; only under the slots lock, with the slot not leased.
    fn join(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a shared call out; `true` when it was the last.
    fn leave(&self) -> bool {
        let last = self.count.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            if let Some(w) = lock(&self.drainer).take() {
                w.blocker.unpark();
            }
        }
        last
    }

    fn busy(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// Waits until no shared call is in progress (the slot is leased, so none starts).
    fn drain(&self, deadline: Instant, started: Instant) -> Result<()> {
        if !self.busy() {
            return Ok(());
        }
        let waiter = Waiter::new();
        loop {
            *lock(&self.drainer) = Some(waiter.clone());
            // Checked after registering, so a last `leave` in between is not missed.
            if !self.busy() {
                lock(&self.drainer).take();
                return Ok(());
            }
            if Instant::now() >= deadline {
                lock(&self.drainer).take();
                return Err(Error::PoolTimeout(started.elapsed()));
            }
            park(&waiter, Some(deadline));
        }
    }
}

impl Waiter {
    fn new() -> Arc<Waiter> {
        Arc::new(Waiter {
            blocker: Blocker::new(false),
            handed: OnceLock::new(),
        })
    }
}

impl Parked for Waiter {
    fn blocker(&self) -> &Blocker {
        &self.blocker
    }
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
        if let Some(options) = pool.session_options(config.get_options()) {
            config = config.options(options);
        }
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
        })
    }

    /// A connection to pipeline one autocommit statement on: the least loaded shared slot.
    pub(crate) fn shared(self: &Arc<Self>, deadline: Instant) -> Result<SharedUse> {
        let picked = self.acquire(deadline, false)?;
        Ok(SharedUse {
            node: self.clone(),
            conn: picked.conn,
            sharers: picked.sharers,
        })
    }

    /// A connection held exclusively until the lease drops.
    pub(crate) fn lease(self: &Arc<Self>, deadline: Instant) -> Result<Lease> {
        let started = Instant::now();
        let picked = self.acquire(deadline, true)?;
        let lease = Lease {
            node: self.clone(),
            conn: picked.conn,
            id: picked.id,
        };
        // On a timeout the lease drops, handing the slot back.
        picked.sharers.drain(deadline, started)?;
        Ok(lease)
    }

    fn acquire(self: &Arc<Self>, deadline: Instant, exclusive: bool) -> Result<Picked> {
        let started = Instant::now();
        let mut now = started;
        let mut woken = false;
        loop {
            let pick = self.pick(exclusive, now, woken)?;
            match pick {
                Pick::Use(picked, validate) => {
                    if !validate || self.ping(&picked.conn, deadline) {
                        self.metrics.acquired(self.role, started.elapsed());
                        return Ok(picked);
                    }
                    if !exclusive {
                        let _ = picked.sharers.leave();
                    }
                    self.remove(picked.id, "validation_failed");
                }
                Pick::Open => {
                    let user = match exclusive {
                        true => Opener::Lease,
                        false => Opener::Share,
                    };
                    let opened = self.open(user, Some(deadline));
                    self.wake_one();
                    if let Ok(picked) = opened {
                        self.metrics.acquired(self.role, started.elapsed());
                        return Ok(picked);
                    }
                    opened?;
                }
                Pick::Wait(waiter, first) => {
                    let now = Instant::now();
                    if now >= deadline {
                        self.forget_waiter(&waiter);
                        self.metrics.acquire_timeout(self.role);
                        return Err(Error::PoolTimeout(started.elapsed()));
                    }
                    // Only the first in line looks again on its own; the others are woken
                    // in turn as room is handed on.
                    let until = match first && !exclusive && self.pipeline_depth != usize::MAX {
                        true => deadline.min(now + ROOM_RECHECK),
                        false => deadline,
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

    /// `woken`: the caller waited already, so it goes before callers that did not.
    fn pick(self: &Arc<Self>, exclusive: bool, now: Instant, woken: bool) -> Result<Pick> {
        let mut s = lock(&self.slots);
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::PoolClosed);
        }
        // A connection whose reader saw the server go is never handed out again. (Checked
        // first: picks are hot and broken connections rare.)
        if s.list
            .iter()
            .any(|slot| !slot.leased && slot.conn.is_broken())
        {
            let before = s.list.len();
            s.list.retain(|slot| slot.leased || !slot.conn.is_broken());
            for _ in s.list.len()..before {
                self.metrics.closed(&self.label, "broken");
            }
        }
        let total = s.list.len() + s.opening;
        let room = total < self.max_size;
        let mut free = 0;
        let mut best: Option<(usize, usize)> = None;
        for (i, slot) in s.list.iter().enumerate() {
            if slot.leased {
                continue;
            }
            free += 1;
            let load = slot.conn.in_flight();
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((i, load));
            }
        }
        // Shared callers waiting for room keep their order: a newcomer does not take the
        // place a waiter was woken for.
        let barging = !exclusive && !woken && !s.room_waiters.is_empty();
        let chosen = match best {
            _ if barging => None,
            Some((i, 0)) => Some(i),
            // Everything is busy: pipeline on the least loaded unless a new one may open.
            Some(_) if room => None,
            Some((i, _)) if exclusive && free >= 2 => Some(i),
            Some((i, load)) if !exclusive && load < self.pipeline_depth => Some(i),
            _ => None,
        };
        if let Some(i) = chosen {
            let slot = &mut s.list[i];
            let validate = slot.conn.in_flight() == 0
                && now.duration_since(slot.last_used) > self.validate_after_idle;
            slot.last_used = now;
            slot.leased = exclusive;
            if !exclusive {
                slot.sharers.join();
            }
            let picked = Picked {
                id: slot.id,
                conn: slot.conn.clone(),
                sharers: slot.sharers.clone(),
            };
            let pick = Pick::Use(picked, validate);
            // Gauges change with leases; shared picks are too frequent to publish each, and
            // maintenance refreshes the gauges every second.
            if exclusive {
                self.publish(&s);
            }
            return Ok(pick);
        }
        if room && !barging {
            s.circuit.check(&self.label)?;
            s.opening += 1;
            return Ok(Pick::Open);
        }
        let waiter = Waiter::new();
        if exclusive || best.is_none() {
            s.waiters.push_back(waiter.clone());
            self.count_waiters(&s);
            return Ok(Pick::Wait(waiter, false));
        }
        // Every shared slot is at the depth limit. A caller that waited already was first
        // in line, and stays so.
        if woken {
            s.room_waiters.push_front(waiter.clone());
        } else {
            s.room_waiters.push_back(waiter.clone());
        }
        self.count_waiters(&s);
        Ok(Pick::Wait(waiter, woken || s.room_waiters.len() == 1))
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
        let result = Connection::connect(&self.config.clone().connect_timeout(timeout));
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

    /// A round trip proving an idle connection still works.
    /// Whether an idle connection still answers, within a second and the caller's deadline.
    fn ping(&self, conn: &Connection, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        conn.timeout(VALIDATION_TIMEOUT.min(left).max(MIN_WAIT))
            .batch_execute("")
            .is_ok()
    }

    fn remove(&self, id: u64, reason: &'static str) {
        let mut s = lock(&self.slots);
        let before = s.list.len();
        s.list.retain(|slot| slot.id != id);
        if s.list.len() < before {
            self.metrics.closed(&self.label, reason);
        }
        self.publish(&s);
        drop(s);
        self.wake_one();
    }

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
        self.wake_one();
    }

    /// A slot came free (a lease ended, a connection opened): wakes the first caller
    /// waiting for a connection, else the first waiting for room.
    fn wake_one(&self) {
        let waiter = {
            let mut s = lock(&self.slots);
            let w = match s.waiters.pop_front() {
                Some(w) => Some(w),
                None => s.room_waiters.pop_front(),
            };
            self.count_waiters(&s);
            w
        };
        if let Some(w) = waiter {
            w.blocker.unpark();
        }
    }

    /// Publishes the queue lengths that shared calls read without the lock.
    fn count_waiters(&self, s: &Slots) {
        self.waiting.store(s.room_waiters.len(), Ordering::Relaxed);
        self.waiting_for_slot
            .store(s.waiters.len(), Ordering::Relaxed);
    }

    /// A shared request on `conn` has been answered: its place in the pipeline goes to the
    /// first caller waiting for room, handed over with the connection when that still has
    /// room (the caller then skips picking again; otherwise it picks as usual). When it was
    /// the slot's last shared call, a caller waiting for a whole connection may take it.
    fn shared_done(&self, conn: &Arc<Connection>, slot_drained: bool) {
        if slot_drained && self.waiting_for_slot.load(Ordering::Relaxed) > 0 {
            self.wake_one();
        }
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let waiter = {
            let mut s = lock(&self.slots);
            let w = s.room_waiters.pop_front();
            self.count_waiters(&s);
            if let Some(w) = &w {
                let shared_slot = s
                    .list
                    .iter()
                    .find(|slot| !slot.leased && Arc::ptr_eq(&slot.conn, conn));
                if let Some(slot) = shared_slot {
                    if conn.in_flight() < self.pipeline_depth && !conn.is_broken() {
                        slot.sharers.join();
                        let _ = w.handed.set(Picked {
                            id: slot.id,
                            conn: conn.clone(),
                            sharers: slot.sharers.clone(),
                        });
                    }
                }
            }
            w
        };
        if let Some(w) = waiter {
            w.blocker.unpark();
        }
    }

    /// Takes a waiter out of its queue; returns the connection handed to it, if one was
    /// (handing happens under the same lock, so after this nothing more can be).
    fn forget_waiter(&self, waiter: &Arc<Waiter>) -> Option<Picked> {
        let mut guard = lock(&self.slots);
        let s = &mut *guard;
        // Usually at the front: it was woken, or is the first in line looking again.
        for queue in [&mut s.waiters, &mut s.room_waiters] {
            if let Some(at) = queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                queue.remove(at);
            }
        }
        self.count_waiters(s);
        waiter.handed.get().cloned()
    }

    /// Drops broken, expired and long-idle connections and refills `min_idle`; run by the
    /// pool's maintenance coroutine. Only slots with nothing in flight are retired.
    pub(crate) fn maintain(self: &Arc<Self>) {
        let now = Instant::now();
        let mut closed: Vec<&'static str> = Vec::new();
        let need = {
            let mut s = lock(&self.slots);
            let mut keep = Vec::with_capacity(s.list.len());
            let mut idle_kept = 0;
            for slot in std::mem::take(&mut s.list) {
                let quiet = !slot.leased && !slot.sharers.busy() && slot.conn.in_flight() == 0;
                let reason = if slot.conn.is_broken() && !slot.leased {
                    Some("broken")
                } else if quiet && slot.expires_at.is_some_and(|at| now >= at) {
                    Some("max_lifetime")
                } else if quiet
                    && idle_kept >= self.min_idle
                    && self
                        .idle_timeout
                        .is_some_and(|t| now.duration_since(slot.last_used) >= t)
                {
                    Some("idle_timeout")
                } else {
                    None
                };
                match reason {
                    Some(r) => closed.push(r),
                    None => {
                        if quiet {
                            idle_kept += 1;
                        }
                        keep.push(slot);
                    }
                }
            }
            s.list = keep;
            self.publish(&s);
            let have = s.list.len() + s.opening;
            let need = self.min_idle.saturating_sub(have);
            if need > 0 && s.circuit.check(&self.label).is_ok() {
                s.opening += need;
                need
            } else {
                0
            }
        };
        for reason in closed {
            self.metrics.closed(&self.label, reason);
        }
        for _ in 0..need {
            let _ = self.open(Opener::Pool, None);
        }
        self.wake_one();
    }

    /// Closes every connection (pool shutdown).
    pub(crate) fn close_all(&self) {
        self.closed.store(true, Ordering::Release);
        let waiters = {
            let mut s = lock(&self.slots);
            for _ in s.list.drain(..) {
                self.metrics.closed(&self.label, "shutdown");
            }
            self.publish(&s);
            let mut all = std::mem::take(&mut s.waiters);
            all.append(&mut s.room_waiters);
            self.count_waiters(&s);
            all
        };
        // Waiters wake to find the node closed.
        for w in waiters {
            w.blocker.unpark();
        }
    }

    /// Stops handing out a shared connection whose session state a statement changed; it
    /// closes once its last in-flight request is answered.
    pub(crate) fn retire_if_dirty(&self, conn: &Arc<Connection>) {
        if conn.take_session_dirty() {
            let id = lock(&self.slots)
                .list
                .iter()
                .find(|slot| Arc::ptr_eq(&slot.conn, conn))
                .map(|slot| slot.id);
            if let Some(id) = id {
                self.remove(id, "session_state");
            }
        }
    }

    /// Outstanding work on this server: requests in flight plus leases held.
    pub(crate) fn load(&self) -> usize {
        let s = lock(&self.slots);
        s.list
            .iter()
            .map(|slot| slot.conn.in_flight() + usize::from(slot.leased))
            .sum()
    }

    /// Open and leased connection counts.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = lock(&self.slots);
        let leased = s.list.iter().filter(|slot| slot.leased).count();
        (s.list.len(), leased)
    }

    fn publish(&self, s: &Slots) {
        let leased = s.list.iter().filter(|slot| slot.leased).count();
        let busy = s
            .list
            .iter()
            .filter(|slot| !slot.leased && slot.conn.in_flight() > 0)
            .count();
        let idle = s.list.len() - leased - busy;
        self.metrics
            .connections(&self.label, idle, leased + busy, s.opening);
    }
}

/// A shared connection in use for one call; when it drops, the call's place in the
/// pipeline goes to the first caller waiting for room.
pub(crate) struct SharedUse {
    node: Arc<Node>,
    conn: Arc<Connection>,
    sharers: Arc<Sharers>,
}

impl SharedUse {
    /// The connection, to keep past this use (e.g. for a follow-up read on it).
    pub(crate) fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }
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
    node: Arc<Node>,
    conn: Arc<Connection>,
    id: u64,
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
        crate::pg::TransactionBuilder::exclusive(&self.conn)
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
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.node.release(self.id, &self.conn);
    }
}
