//! Redis cache-aside for models, kept coherent by the reflector, with a staleness bound
//! that is enforced: when it cannot be guaranteed, reads bypass the cache.
//!
//! A model opts in with `#[lifeguard(cache)]` (optionally `cache(ttl_ms = 60000, mode =
//! "invalidate", tenant = "tenant_id")`); a pool opts in with [`Pool::with_cache`]. Then
//! `find_by_id(..).one(db)` and `find_each_by_id` on such a model read Redis first; every
//! other query goes to PostgreSQL as before.
//!
//! The guarantees (spec §3.1), and what gives each:
//! - **G1, bounded staleness `B`** ([`CacheConfig::staleness_bound`], 2 s by default): a
//!   cached value is never older than the row's latest commit by more than `B`. The
//!   reflector renews a heartbeat only while it has caught up within `B`; a reader without
//!   a heartbeat bypasses the cache.
//! - **G2, read-your-writes**: ORM writes of a cached model drop its keys after commit
//!   (a transaction drops them when it commits, never before); a handle that wrote reads
//!   PostgreSQL from then on; a read carrying a consistency token uses the cache only once
//!   the heartbeat says every commit up to the token has been reflected.
//! - **G3, no lost update**: the capture trigger writes the outbox in the writing
//!   transaction; the reflector consumes it in commit-safe order from a checkpoint.
//! - **G4, stampede bound**: one load per key per process (single-flight), about one per
//!   fleet (a Redis lease); a fill stores only while its lease stands, and any change to
//!   the row deletes the lease, so a fill can never store what it read before a change.
//!
//! Redis down or slow never fails a request: each call has a short deadline, failures
//! count as bypasses (`lifeguard_cache_bypass_total{reason}`) and open a circuit that
//! closes by itself.
//!
//! [`Pool::with_cache`]: crate::pool::Pool::with_cache

mod capture;
#[doc(hidden)]
pub mod failpoint;
mod flight;
mod heartbeat;
pub mod key;
mod metrics;
mod payload;
mod read;
pub mod redis;
mod write;

pub use capture::{
    capture_base_sql, change_capture_sql, install_change_capture, register, registration_sql,
    CaptureOptions,
};
pub use heartbeat::Heartbeat;
pub use key::KeyPart;
pub use payload::{encode_payload, scripts};
pub use read::CacheScope;
pub(crate) use read::{find_each_cached, find_one_cached};
pub use write::Written;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use self::redis::RedisClient;
use crate::model::LifeModel;
use crate::pg::Column;
use crate::rt::lock;

/// How the reflector treats a cached model's changed rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheMode {
    /// Re-read the row and store it (for read-heavy models).
    Refresh,
    /// Drop the key; the next read loads it (for write-heavy models).
    Invalidate,
}

/// A model's cache settings, from `#[lifeguard(cache(..))]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSpec {
    /// How long a filled value lives; reflector refreshes do not extend it, so keys nobody
    /// reads fall out.
    pub ttl: Duration,
    /// What the reflector does on a change.
    pub mode: CacheMode,
    /// The tenant column (SQL name), for models whose rows belong to one tenant each; the
    /// tenant is part of the key.
    pub tenant: Option<&'static str>,
}

/// What the derive generates for a cached model: its settings and how to name its keys.
#[doc(hidden)]
pub struct CacheHooks<M: LifeModel> {
    pub spec: CacheSpec,
    pub write_pk: fn(&M::PrimaryKey, &mut String),
    pub write_tenant: fn(&M, &mut String),
}

/// The bounds and names of a cache.
///
/// ```
/// use std::time::Duration;
/// use lifeguard_core::cache::CacheConfig;
///
/// let config = CacheConfig::new("shop").staleness_bound(Duration::from_secs(1));
/// assert_eq!(config.get_staleness_bound(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct CacheConfig {
    pub(crate) namespace: String,
    pub(crate) bound: Duration,
    pub(crate) lease_ttl: Duration,
    pub(crate) lease_wait: Duration,
    pub(crate) call_timeout: Duration,
    pub(crate) heartbeat_refresh: Duration,
    pub(crate) shards: u32,
}

impl CacheConfig {
    /// A cache in namespace `namespace` (shared with the reflector that keeps it), with
    /// `B` = 2 s, 2 s leases, a 25 ms deadline per Redis call, and the heartbeat looked up
    /// every 100 ms.
    pub fn new(namespace: impl Into<String>) -> CacheConfig {
        CacheConfig {
            namespace: namespace.into(),
            bound: Duration::from_secs(2),
            lease_ttl: Duration::from_secs(2),
            lease_wait: Duration::from_millis(50),
            call_timeout: Duration::from_millis(25),
            heartbeat_refresh: Duration::from_millis(100),
            shards: 1,
        }
    }

    /// `B`: a cached value is never older than this behind the row's latest commit.
    /// The reflector must run with the same bound.
    pub fn staleness_bound(mut self, bound: Duration) -> CacheConfig {
        self.bound = bound;
        self
    }

    /// How long a fill's lease holds other processes off a cold key.
    pub fn lease_ttl(mut self, ttl: Duration) -> CacheConfig {
        self.lease_ttl = ttl;
        self
    }

    /// How long a reader that lost the lease waits for the winner's fill before reading
    /// PostgreSQL itself (without filling).
    pub fn lease_wait(mut self, wait: Duration) -> CacheConfig {
        self.lease_wait = wait;
        self
    }

    /// The deadline of each Redis call; past it the read falls back to PostgreSQL.
    pub fn call_timeout(mut self, timeout: Duration) -> CacheConfig {
        self.call_timeout = timeout;
        self
    }

    /// How many reflectors split the namespace's outbox (`LIFEGUARD_REFLECTOR_SHARDS` of
    /// each; default 1). Reads use the cache only while every shard's heartbeat is there.
    pub fn reflector_shards(mut self, shards: u32) -> CacheConfig {
        self.shards = shards.max(1);
        self
    }

    /// How many reflectors split the namespace's outbox.
    pub fn get_reflector_shards(&self) -> u32 {
        self.shards
    }

    /// The namespace.
    pub fn get_namespace(&self) -> &str {
        &self.namespace
    }

    /// The staleness bound `B`.
    pub fn get_staleness_bound(&self) -> Duration {
        self.bound
    }

    /// How long readers trust a heartbeat lookup; the reflector's heartbeat lives `B`
    /// minus this, so that a reader's view never outlasts the bound.
    pub fn heartbeat_trust(&self) -> Duration {
        self.heartbeat_refresh * 5 / 2
    }
}

/// A cache: a Redis client, its configuration and the process's view of the reflector.
/// Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<CacheInner>,
}

pub(crate) struct CacheInner {
    pub(crate) redis: RedisClient,
    pub(crate) config: CacheConfig,
    pub(crate) heartbeat: Mutex<heartbeat::View>,
    pub(crate) flights: flight::Flights,
    /// The result columns of each model's cache statement, learnt from its first load.
    pub(crate) columns: Mutex<HashMap<std::any::TypeId, Arc<[Column]>>>,
    /// After a write whose keys could not be dropped, every read bypasses until then (`B`
    /// later: by then the reflector has dropped or refreshed them).
    pub(crate) suspect_until: Mutex<Option<Instant>>,
    /// Tables written in bulk (keys unknown): their reads bypass until these instants.
    pub(crate) table_suspect: Mutex<HashMap<&'static str, Instant>>,
    /// Consecutive Redis failures, and until when reads skip Redis after too many.
    pub(crate) failures: Mutex<(u32, Option<Instant>)>,
    pub(crate) metrics: metrics::CacheMetrics,
}

impl Cache {
    /// A cache over `redis` with `config`.
    pub fn new(redis: RedisClient, config: CacheConfig) -> Cache {
        Cache {
            inner: Arc::new(CacheInner {
                redis,
                config,
                heartbeat: Mutex::new(heartbeat::View::new()),
                flights: flight::Flights::default(),
                columns: Mutex::default(),
                suspect_until: Mutex::default(),
                table_suspect: Mutex::default(),
                failures: Mutex::default(),
                // A fresh registry of the cache's own takes fixed, valid names: registration
                // cannot fail.
                metrics: metrics::CacheMetrics::new().expect("cache metrics on a fresh registry"),
            }),
        }
    }

    /// The registry of the cache's metrics (render it beside the pool's for `/metrics`).
    /// Only with the `metrics` feature (on by default).
    #[cfg(feature = "metrics")]
    pub fn registry(&self) -> &prometheus::Registry {
        self.inner.metrics.registry()
    }

    /// The Redis client.
    pub fn redis(&self) -> &RedisClient {
        &self.inner.redis
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.inner.config
    }

    pub(crate) fn inner(&self) -> &CacheInner {
        &self.inner
    }

    /// Marks the whole cache suspect for `B`: used when a write's keys could not be
    /// dropped.
    pub(crate) fn suspect_all(&self) {
        *lock(&self.inner.suspect_until) = Some(Instant::now() + self.inner.config.bound);
    }

    /// Marks `table` suspect for `B`: used after a bulk write, whose keys are unknown.
    pub(crate) fn suspect_table(&self, table: &'static str) {
        lock(&self.inner.table_suspect).insert(table, Instant::now() + self.inner.config.bound);
    }
}

/// FNV-1a over the payload format's version, the table, each column's name and SQL type,
/// and `row_version`, each part followed by a separator byte so parts cannot run into
/// each other.
const fn layout_hash(table: &str, columns: &[crate::model::ColumnDef]) -> u32 {
    const fn mix(mut h: u32, part: &str) -> u32 {
        let bytes = part.as_bytes();
        let mut i = 0;
        while i <= bytes.len() {
            let b = if i < bytes.len() { bytes[i] } else { 0xff };
            h ^= b as u32;
            h = h.wrapping_mul(0x0100_0193);
            i += 1;
        }
        h
    }
    let mut h = mix(mix(0x811c_9dc5, "payload-v1"), table);
    let mut i = 0;
    while i < columns.len() {
        h = mix(mix(h, columns[i].name), columns[i].sql_type);
        i += 1;
    }
    mix(h, "row_version")
}

/// The layout hash of a model's cached payload (`fmt` in the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout(pub(crate) u32);

impl Layout {
    /// Computed at compile time for each model: it is part of every key.
    pub(crate) fn of<M: LifeModel>() -> Layout {
        const { Layout(layout_hash(M::QUALIFIED, M::COLUMNS)) }
    }

    pub(crate) fn hex(self) -> String {
        format!("{:08x}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ColumnDef;

    const fn col(name: &'static str, sql_type: &'static str) -> ColumnDef {
        ColumnDef {
            name,
            field: name,
            primary_key: false,
            auto_increment: false,
            nullable: false,
            default_expr: None,
            sql_type,
        }
    }

    #[test]
    fn the_layout_changes_with_any_column_and_parts_do_not_run_together() {
        let base = layout_hash("t", &[col("a", "int"), col("b", "text")]);
        assert_eq!(base, layout_hash("t", &[col("a", "int"), col("b", "text")]));
        assert_ne!(
            base,
            layout_hash("t", &[col("a", "bigint"), col("b", "text")])
        );
        assert_ne!(base, layout_hash("t", &[col("b", "text"), col("a", "int")]));
        assert_ne!(
            layout_hash("t", &[col("ab", "c")]),
            layout_hash("t", &[col("a", "bc")])
        );
    }
}
