//! LifeReflector: keeps the Redis entries of Lifeguard's cache coherent with PostgreSQL,
//! and vouches for them with a heartbeat that readers require (spec §3.6–§3.8).
//!
//! Each process opens one session on the primary and tries the namespace's advisory lock;
//! the one that holds it leads, the others stand by and try again every second. The
//! leader takes the next **epoch** (a fencing token every Redis write carries) and then,
//! on every wake-up (a capture trigger's `NOTIFY`, or the poll interval without one):
//!
//! 1. reads the primary's WAL position, then the outbox past its checkpoint in
//!    `(txid, id)` order, rows of running-or-younger transactions included but only
//!    transactions older than the snapshot's `xmin` let the checkpoint move (an outbox
//!    id is not commit order);
//! 2. reads the current rows of the changed keys from the primary, one statement per
//!    registered table layout, and runs one `reflect` script per key in one pipelined
//!    round trip: a key in Redis is refreshed (keeping its TTL) or dropped, a key not in
//!    Redis is left absent, a fill in flight loses its lease, an older version never
//!    replaces a newer one, and a leader older than the key's last writer is fenced;
//! 3. stores the checkpoint (only while its epoch still leads);
//! 4. when the pass saw everything and took at most [`ReflectorConfig::heartbeat_life`],
//!    renews the heartbeat `"<epoch> <generation> <lsn> <ms>"` for that long, on the
//!    condition that Redis is the server it last saw (its `run_id`).
//!
//! With [`ReflectorConfig::shards`] above one, processes split the outbox by a hash of
//! each row's key, and each shard elects its own leader (lock, epoch, checkpoint and
//! heartbeat); the applications then require every shard's heartbeat.
//!
//! A Redis that restarted (empty, from an old snapshot, or a replica promoted by Sentinel)
//! and a PostgreSQL whose timeline or system changed make the leader bump the
//! **generation**: readers learn it from the heartbeat and use new keys, so nothing the
//! old server holds is served again. In a Redis Cluster every master's run id is asked
//! before each heartbeat.
//!
//! ```no_run
//! use std::time::Duration;
//! use lifeguard_reflector::{Reflector, ReflectorConfig};
//!
//! may::config().set_stack_size(0x10000);
//! let reflector = Reflector::start(ReflectorConfig::from_env()?)?;
//! // ... until SIGTERM:
//! reflector.shutdown(Duration::from_secs(5));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod http;
mod leader;
mod metrics;
mod progress;
mod reflect;
mod session;

pub use config::{ReflectorConfig, ENVIRONMENT};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeguard_core::cache::redis::{RedisClient, RedisConfig};
use lifeguard_core::rt::{self, lock};
use may::coroutine::JoinHandle;

/// What a reflector process is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Opening its session.
    Connecting,
    /// Connected, waiting for the lock.
    Standby,
    /// Leading with this epoch and generation.
    Leader {
        /// The epoch.
        epoch: i64,
        /// The key generation.
        generation: i64,
    },
}

/// The state the coroutines and the HTTP endpoints share.
pub(crate) struct Shared {
    pub(crate) config: ReflectorConfig,
    pub(crate) redis: RedisClient,
    pub(crate) metrics: metrics::Metrics,
    stop: AtomicBool,
    status: Mutex<Status>,
}

/// The last known role and how recently the process did its job.
#[derive(Debug, Clone)]
struct Status {
    role: Role,
    /// The last pass (leader) or lock attempt (standby) that succeeded.
    last_ok: Option<Instant>,
    /// The last failure, when it came after `last_ok`.
    last_error: Option<String>,
    /// The step of the last failure logged, and when.
    last_logged: Option<(&'static str, Instant)>,
}

impl Shared {
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Sleeps for `d`, cut short by shutdown.
    pub(crate) fn sleep(&self, d: Duration) {
        let until = Instant::now() + d;
        while !self.stopping() {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            may::coroutine::sleep(left.min(Duration::from_millis(50)));
        }
    }

    pub(crate) fn set_role(&self, role: Role) {
        lock(&self.status).role = role;
    }

    pub(crate) fn passed(&self) {
        let mut status = lock(&self.status);
        status.last_ok = Some(Instant::now());
        status.last_error = None;
    }

    /// Records a failed step: counted always, logged when the step differs from the last
    /// one logged or ten seconds have passed (a Redis that is down fails every poll).
    pub(crate) fn failed(&self, step: &'static str, e: &lifeguard_core::Error) {
        self.metrics.error(step);
        let mut status = lock(&self.status);
        let quiet = status
            .last_logged
            .is_some_and(|(s, at)| s == step && at.elapsed() < Duration::from_secs(10));
        if !quiet {
            tracing::warn!(step, error = %e, "reflector step failed");
            status.last_logged = Some((step, Instant::now()));
        }
        status.last_error = Some(format!("{step}: {e}"));
    }

    /// Whether the process is doing its job: standing by or leading, with a success
    /// within the last five seconds.
    fn is_ready(&self) -> bool {
        let status = lock(&self.status);
        status.role != Role::Connecting
            && status
                .last_ok
                .is_some_and(|at| at.elapsed() < Duration::from_secs(5))
    }
}

/// A running reflector: its election coroutine and, when configured, its HTTP endpoints.
pub struct Reflector {
    shared: Arc<Shared>,
    election: JoinHandle<()>,
    http: Option<JoinHandle<()>>,
}

impl Reflector {
    /// Starts a reflector: nothing is connected yet when this returns; the process stands
    /// by until it wins the election.
    ///
    /// # Errors
    ///
    /// An invalid configuration (a URL that does not parse), or an HTTP address that
    /// cannot be bound.
    pub fn start(config: ReflectorConfig) -> Result<Reflector, Box<dyn std::error::Error>> {
        config.validate()?;
        lifeguard_core::pg::Config::parse(&config.database_url)?;
        let redis = RedisClient::new(RedisConfig::from_url(&config.redis_url)?.connections(2));
        let shared = Arc::new(Shared {
            redis,
            metrics: metrics::Metrics::new()?,
            stop: AtomicBool::new(false),
            status: Mutex::new(Status {
                role: Role::Connecting,
                last_ok: None,
                last_error: None,
                last_logged: None,
            }),
            config,
        });
        let http = match &shared.config.listen {
            Some(addr) => Some(http::serve(addr, shared.clone())?),
            None => None,
        };
        let body = {
            let shared = shared.clone();
            move || leader::run(&shared)
        };
        // The reflector's coroutines make no thread-local or blocking calls (the contract
        // of rt::spawn); large pipelines need a roomy stack.
        let election = rt::spawn("lifeguard-reflector", 0x10000, body)?;
        Ok(Reflector {
            shared,
            election,
            http,
        })
    }

    /// The process's role now.
    pub fn role(&self) -> Role {
        lock(&self.shared.status).role
    }

    /// The reflector's Prometheus registry.
    pub fn registry(&self) -> &prometheus::Registry {
        self.shared.metrics.registry()
    }

    /// Stops: the leader finishes its pass and ends its session, which releases the lock
    /// for a standby at once; waits up to `grace` for that. The heartbeat it last wrote
    /// expires by itself.
    pub fn shutdown(self, grace: Duration) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(http) = self.http {
            // SAFETY: cancelling the accept coroutine unwinds it at its next blocking
            // point (the accept), which drops the listener; nothing else shares its stack.
            unsafe { http.coroutine().cancel() };
            let _ = http.join();
        }
        let deadline = Instant::now() + grace;
        while !self.election.is_done() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}
