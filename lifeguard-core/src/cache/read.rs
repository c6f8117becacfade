//! The read path: Redis first, single-flight and a lease on a miss, a versioned fill, and
//! a bypass to PostgreSQL whenever the cache cannot vouch for a value (spec §3.4, §3.7).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::failpoint;
use super::flight::{Join, Loaded};
use super::heartbeat::{Heartbeat, Look};
use super::key::{lease_key, RowPrefix};
use super::metrics::Found;
use super::redis::{cmd, Cmd};
use super::{Cache, CacheHooks, Layout};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::model::shapes::{self, Kind};
use crate::model::LifeModel;
use crate::pg::{Row, ToSql};
use crate::pool::Db;
use crate::query::quote;
use crate::rt::lock;

/// After this many Redis failures in a row, reads skip Redis for a while.
const FAILURES_TO_OPEN: u32 = 3;
/// How long reads skip Redis once the failures opened the circuit.
const OPEN_FOR: Duration = Duration::from_millis(500);
/// How often a reader that lost the lease looks again for the winner's fill.
const LEASE_POLL: Duration = Duration::from_millis(5);

/// How many caches in the process have Redis failures on their books (counted, or the
/// circuit open). While none has, a successful call has nothing to reset and a read no
/// circuit to look at, so the healthy path reads this word, which nothing writes then,
/// instead of taking each cache's lock twice per read from every worker. (A cache dropped
/// with failures on its books leaves the count up: reads then take the slower path, which
/// is as correct.)
static UNSETTLED: AtomicUsize = AtomicUsize::new(0);

/// What a read may use the cache under: the cache, how to load from the primary, and
/// what the read requires.
#[doc(hidden)]
pub struct CacheScope {
    pub(crate) cache: Cache,
    /// Runs the loads that fill the cache: on the primary, within the read's deadline.
    pub(crate) primary: Db,
    /// Every commit up to this WAL position must be visible (a consistency token).
    pub(crate) min_lsn: Option<u64>,
    /// The request's tenant, for models keyed by one.
    pub(crate) tenant: Option<String>,
}

/// Why a read went to PostgreSQL instead (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bypass {
    HeartbeatMissing,
    TokenAhead,
    NoTenant,
    Suspect,
    RedisError,
    LoadFailed,
    PrimaryDown,
}

impl Bypass {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Bypass::HeartbeatMissing => "heartbeat_missing",
            Bypass::TokenAhead => "token_ahead",
            Bypass::NoTenant => "no_tenant",
            Bypass::Suspect => "write_unconfirmed",
            Bypass::RedisError => "redis_error",
            Bypass::LoadFailed => "load_failed",
            Bypass::PrimaryDown => "primary_down",
        }
    }
}

/// `M::find_by_id(key).one(db)` through the cache; `Ok(None)` when there is no such row.
/// `fallback` is the uncached read, run on a bypass.
pub(crate) fn find_one_cached<M: LifeModel>(
    scope: &CacheScope,
    hooks: &CacheHooks<M>,
    key: &M::PrimaryKey,
    fallback: impl FnOnce() -> Result<Option<M>>,
) -> Result<Option<M>> {
    let generation = match scope.usable::<M>(hooks) {
        Ok(generation) => generation,
        Err(_) => return fallback(),
    };
    let row_key = scope
        .rows::<M>(generation)
        .row(scope.tenant.as_deref().unwrap_or(""), |out| {
            (hooks.write_pk)(key, out)
        });
    match scope.cached_or_loaded::<M>(&row_key, key) {
        Ok(Some(found)) => Ok(found),
        Ok(None) => fallback(),
        Err(e) if primary_lost(&e) => scope.load_failed::<M, _>(fallback),
        Err(e) => Err(e),
    }
}

/// Whether a miss's load failed for want of the primary, which the read's preference may
/// not need: it is then served uncached, wherever it may run.
fn primary_lost(e: &Error) -> bool {
    matches!(
        e,
        Error::Connection(_) | Error::Unavailable { .. } | Error::PoolTimeout(_)
    )
}

/// `M::find_each_by_id(db, keys)` through the cache: one Redis round trip for all keys,
/// then one pipelined PostgreSQL batch for the misses (which are filled).
pub(crate) fn find_each_cached<M: LifeModel>(
    scope: &CacheScope,
    hooks: &CacheHooks<M>,
    keys: &[M::PrimaryKey],
    fallback: impl FnOnce(&[M::PrimaryKey]) -> Result<Vec<Option<M>>>,
) -> Result<Vec<Option<M>>> {
    let space = match scope.usable::<M>(hooks) {
        Ok(generation) => scope.rows::<M>(generation).space(),
        Err(_) => return fallback(keys),
    };
    let tenant = scope.tenant.as_deref().unwrap_or("");
    let row_keys: Vec<String> = keys
        .iter()
        .map(|k| {
            let mut pk = String::new();
            (hooks.write_pk)(k, &mut pk);
            space.row(tenant, &pk)
        })
        .collect();
    let Some(hits) = scope.lookup_many::<M>(&row_keys) else {
        return fallback(keys);
    };
    let mut out: Vec<Option<Option<M>>> = hits;
    for (i, slot) in out.iter_mut().enumerate() {
        if slot.is_none() {
            match scope.cached_or_loaded::<M>(&row_keys[i], &keys[i]) {
                Ok(Some(found)) => *slot = Some(found),
                Ok(None) => return fallback(keys),
                Err(e) if primary_lost(&e) => return scope.load_failed::<M, _>(|| fallback(keys)),
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out.into_iter().map(|found| found.flatten()).collect())
}

impl CacheScope {
    /// A read whose miss could not be loaded from the primary, served by `fallback`.
    fn load_failed<M: LifeModel, T>(&self, fallback: impl FnOnce() -> Result<T>) -> Result<T> {
        let metrics = &self.cache.inner().metrics;
        metrics.bypass(Bypass::LoadFailed.as_str());
        metrics.request(M::TABLE, Found::Bypass);
        fallback()
    }

    /// The generation of the keys to read under, or why the cache may not serve this read.
    fn usable<M: LifeModel>(&self, hooks: &CacheHooks<M>) -> std::result::Result<u64, Bypass> {
        let inner = self.cache.inner();
        let now = Instant::now();
        let verdict = (|| {
            if hooks.spec.tenant.is_some() && self.tenant.is_none() {
                return Err(Bypass::NoTenant);
            }
            if lock(&inner.suspect_until).is_some_and(|until| now < until)
                || lock(&inner.table_suspect)
                    .get(M::QUALIFIED)
                    .is_some_and(|until| now < *until)
            {
                return Err(Bypass::Suspect);
            }
            if UNSETTLED.load(Ordering::Acquire) > 0
                && lock(&inner.failures).1.is_some_and(|until| now < until)
            {
                return Err(Bypass::RedisError);
            }
            let hb = self.cache.heartbeat(now)?.ok_or(Bypass::HeartbeatMissing)?;
            if self.min_lsn.is_some_and(|lsn| lsn > hb.reflected_lsn) {
                return Err(Bypass::TokenAhead);
            }
            Ok(hb.generation)
        })();
        if let Err(reason) = verdict {
            inner.metrics.bypass(reason.as_str());
            inner.metrics.request(M::TABLE, Found::Bypass);
        }
        verdict
    }

    /// What the keys of `M`'s rows in `generation` start with.
    fn rows<M: LifeModel>(&self, generation: u64) -> RowPrefix<'_> {
        RowPrefix {
            ns: &self.cache.inner().config.namespace,
            layout: Layout::of::<M>().0,
            gen: generation,
            schema: M::SCHEMA,
            table: M::TABLE,
        }
    }

    /// The row at `row_key`: from Redis, from another coroutine's load, or loaded (and
    /// filled) by this one. `None` when the cache cannot serve it (then the caller reads
    /// PostgreSQL as if uncached).
    fn cached_or_loaded<M: LifeModel>(
        &self,
        row_key: &str,
        key: &M::PrimaryKey,
    ) -> Result<Option<Option<M>>> {
        let inner = self.cache.inner();
        match self.lookup::<M>(row_key) {
            Err(()) => {
                inner.metrics.bypass(Bypass::RedisError.as_str());
                inner.metrics.request(M::TABLE, Found::Error);
                return Ok(None);
            }
            Ok(Some(found)) => {
                inner.metrics.request(M::TABLE, Found::Hit);
                return Ok(Some(Some(found)));
            }
            Ok(None) => inner.metrics.request(M::TABLE, Found::Miss),
        }
        if self.primary.pool().primary_down() {
            inner.metrics.bypass(Bypass::PrimaryDown.as_str());
            return Ok(None);
        }
        let deadline = Instant::now() + inner.config.lease_wait + inner.config.call_timeout * 2;
        let leader = match inner.flights.join(row_key) {
            Join::Follower(flight) => {
                inner.metrics.coalesced(M::TABLE);
                return flight
                    .wait(deadline)
                    .map(|loaded| self.decode_loaded::<M>(loaded))
                    .transpose();
            }
            Join::Leader(leader) => leader,
        };
        let token = format!("{:016x}", rand::random::<u64>());
        let lease = lease_key(row_key);
        let granted = self.cache.redis_call(|deadline| {
            inner.redis.query_until::<Option<String>>(
                cmd("SET")
                    .arg(&lease)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(millis(inner.config.lease_ttl)),
                deadline,
            )
        });
        let loaded = match granted {
            Err(_) => return Ok(None),
            Ok(Some(_)) => match self.load::<M>(key)? {
                Load::Found(payload, version) => {
                    failpoint::after_load(row_key);
                    self.fill::<M>(row_key, &lease, &token, &payload, version);
                    Some(Arc::new(payload))
                }
                Load::Missing => None,
                Load::Foreign => return Ok(None),
            },
            Ok(None) => match self.await_fill::<M>(row_key, deadline) {
                Some(found) => {
                    return Ok(Some(Some(found)));
                }
                // The winner did not fill in time: read without filling.
                None => match self.load::<M>(key)? {
                    Load::Found(payload, _) => Some(Arc::new(payload)),
                    Load::Missing => None,
                    Load::Foreign => return Ok(None),
                },
            },
        };
        leader.finish(loaded.clone());
        Ok(Some(self.decode_loaded::<M>(loaded)?))
    }

    /// Looks the row up: `Ok(None)` on a miss, `Err(())` when Redis failed or the payload
    /// is unusable (the caller then bypasses).
    fn lookup<M: LifeModel>(&self, row_key: &str) -> std::result::Result<Option<M>, ()> {
        // Sized up front: built arg by arg, a command reallocates as it grows.
        let mut hget = Cmd::with_capacity(3, 5 + row_key.len());
        hget.arg("HGET").arg(row_key).arg("p");
        let redis = &self.cache.inner().redis;
        let reconnects = redis.reconnects();
        let payload = self
            .cache
            .redis_call(|deadline| redis.query_until::<Option<Vec<u8>>>(&hget, deadline))
            .map_err(drop)?;
        // A value read over a connection that replaced a broken one meanwhile may come from
        // a restarted server the heartbeat does not vouch for.
        if redis.reconnects() != reconnects {
            return Err(());
        }
        match payload {
            None => Ok(None),
            Some(bytes) => self.decode::<M>(&bytes).map_err(drop),
        }
    }

    /// Looks up many rows in one round trip; `None` when Redis failed.
    fn lookup_many<M: LifeModel>(&self, row_keys: &[String]) -> Option<Vec<Option<Option<M>>>> {
        let mut pipe = super::redis::Pipeline::new();
        for k in row_keys {
            pipe.cmd("HGET").arg(k).arg("p");
        }
        let redis = &self.cache.inner().redis;
        let reconnects = redis.reconnects();
        let replies = self
            .cache
            .redis_call(|deadline| redis.pipeline_until(&pipe, deadline))
            .ok()?;
        if redis.reconnects() != reconnects {
            return None;
        }
        replies
            .into_iter()
            .map(|reply| match reply {
                ::redis::Value::BulkString(bytes) => {
                    self.decode::<M>(&bytes).ok().map(|m| m.map(Some))
                }
                ::redis::Value::Nil => Some(None),
                _ => None,
            })
            .collect()
    }

    /// Waits up to `deadline` for another process's fill of `row_key`.
    fn await_fill<M: LifeModel>(&self, row_key: &str, deadline: Instant) -> Option<M> {
        let started = Instant::now();
        let found = self.poll_fill::<M>(row_key, deadline);
        self.cache
            .inner()
            .metrics
            .lease_wait(M::TABLE, started.elapsed());
        found
    }

    fn poll_fill<M: LifeModel>(&self, row_key: &str, deadline: Instant) -> Option<M> {
        while Instant::now() + LEASE_POLL < deadline {
            may::coroutine::sleep(LEASE_POLL);
            match self.lookup::<M>(row_key) {
                Ok(Some(found)) => return Some(found),
                Ok(None) => {}
                Err(()) => return None,
            }
        }
        None
    }

    /// Reads the row from the primary in the cached layout. A row of another tenant than
    /// the read's (`Load::Foreign`) is never stored under this tenant's key (the read then goes to
    /// PostgreSQL as if uncached, under whatever row-level security applies there).
    fn load<M: LifeModel>(&self, key: &M::PrimaryKey) -> Result<Load> {
        let params: Vec<&(dyn ToSql + Sync)> = M::key_params(key);
        self.cache.inner().metrics.load(M::TABLE);
        let rows = self.primary.query(&select_sql::<M>(), &params)?;
        let Some(row) = rows.first() else {
            return Ok(Load::Missing);
        };
        if let (Some(hooks), Some(tenant)) = (M::CACHE.as_ref(), self.tenant.as_deref()) {
            let mut own = String::new();
            (hooks.write_tenant)(&M::from_row(row)?, &mut own);
            if own != tenant {
                return Ok(Load::Foreign);
            }
        }
        let n = M::COLUMNS.len();
        let version: i64 = row.try_get(n)?;
        lock(&self.cache.inner().columns)
            .entry(std::any::TypeId::of::<M>())
            .or_insert_with(|| row.columns_shared());
        Ok(Load::Found(super::encode_payload(row, 0), version))
    }

    /// Stores a loaded row under the lease; a refused fill only costs the next reader a
    /// load.
    fn fill<M: LifeModel>(
        &self,
        row_key: &str,
        lease: &str,
        token: &str,
        payload: &[u8],
        version: i64,
    ) {
        let Some(hooks) = M::CACHE.as_ref() else {
            return;
        };
        let inner = self.cache.inner();
        let version = version.to_string();
        let ttl = millis(hooks.spec.ttl).to_string();
        let outcome = self.cache.redis_call(|deadline| {
            inner.redis.eval_until::<String>(
                super::scripts::fill(),
                &[row_key.as_bytes(), lease.as_bytes()],
                &[
                    token.as_bytes(),
                    version.as_bytes(),
                    payload,
                    ttl.as_bytes(),
                ],
                deadline,
            )
        });
        let result = outcome.as_deref().unwrap_or("error");
        inner.metrics.fill(M::TABLE, result);
    }

    fn decode_loaded<M: LifeModel>(&self, loaded: Loaded) -> Result<Option<M>> {
        match loaded {
            None => Ok(None),
            Some(payload) => self.decode::<M>(&payload),
        }
    }

    /// Decodes a payload with the result columns of the cache statement (their types
    /// decode the values), learnt from a load or, before any load in this process, from
    /// the statement's description on the primary, once.
    fn decode<M: LifeModel>(&self, payload: &[u8]) -> Result<Option<M>> {
        let known = lock(&self.cache.inner().columns)
            .get(&std::any::TypeId::of::<M>())
            .cloned();
        let columns = match known {
            Some(columns) => columns,
            None => {
                let lease = self.primary.pool().lease_primary()?;
                let described: Arc<[crate::pg::Column]> = lease
                    .connection()
                    .prepare(&select_sql::<M>())?
                    .columns()
                    .into();
                lock(&self.cache.inner().columns)
                    .entry(std::any::TypeId::of::<M>())
                    .or_insert(described)
                    .clone()
            }
        };
        let row = Row::from_values(columns, payload)?;
        M::from_row(&row).map(Some)
    }
}

impl Cache {
    /// The heartbeat as this process last saw it, looked up again when old.
    pub(crate) fn heartbeat(&self, now: Instant) -> std::result::Result<Option<Heartbeat>, Bypass> {
        let inner = self.inner();
        let config = &inner.config;
        let deadline = now + config.call_timeout;
        let mut at = now;
        loop {
            let look = lock(&inner.heartbeat).look(
                at,
                config.heartbeat_refresh,
                config.heartbeat_trust(),
                inner.redis.reconnects(),
            );
            match look {
                Look::Use(hb) => return Ok(hb),
                Look::Wait(waiter) if at < deadline => {
                    crate::rt::park(&waiter, Some(deadline));
                    at = Instant::now();
                }
                Look::Wait(_) => return Err(Bypass::HeartbeatMissing),
                Look::Refresh => {
                    let reconnects = inner.redis.reconnects();
                    let found = self.redis_call(|deadline| self.fetch_heartbeat(deadline));
                    // Read across a reconnect, it is known for no server.
                    let known = match inner.redis.reconnects() == reconnects {
                        true => found.as_ref().map(|hb| *hb).map_err(|_| ()),
                        false => Err(()),
                    };
                    let waiters = lock(&inner.heartbeat).record(now, known, reconnects);
                    for w in waiters {
                        w.unpark();
                    }
                    return found.map_err(|_| Bypass::RedisError);
                }
            }
        }
    }

    /// The heartbeat in Redis now: with several reflector shards, one that holds for all of
    /// them (every shard's present, under one generation; the lowest reflected position),
    /// else none.
    fn fetch_heartbeat(&self, deadline: Instant) -> Result<Option<Heartbeat>> {
        let config = &self.inner().config;
        let mut mget = cmd("MGET");
        for shard in 0..config.shards {
            mget.arg(super::key::shard_heartbeat_key(
                &config.namespace,
                shard,
                config.shards,
            ));
        }
        let texts: Vec<Option<String>> = self.inner().redis.query_until(&mget, deadline)?;
        let mut beats = texts
            .iter()
            .map(|t| t.as_deref().and_then(Heartbeat::parse));
        let Some(Some(mut all)) = beats.next() else {
            return Ok(None);
        };
        for beat in beats {
            match beat {
                Some(hb) if hb.generation == all.generation => {
                    all.reflected_lsn = all.reflected_lsn.min(hb.reflected_lsn);
                }
                // A shard missing, or one that has not yet seen a generation bump.
                _ => return Ok(None),
            }
        }
        Ok(Some(all))
    }

    /// A Redis call with the cache's deadline, counted for the circuit.
    pub(crate) fn redis_call<T>(&self, call: impl FnOnce(Instant) -> Result<T>) -> Result<T> {
        let inner = self.inner();
        let result = call(Instant::now() + inner.config.call_timeout);
        match &result {
            // Nothing to reset unless some cache has failures on its books.
            Ok(_) if UNSETTLED.load(Ordering::Acquire) == 0 => {}
            Ok(_) => {
                let mut failures = lock(&inner.failures);
                if *failures != (0, None) {
                    *failures = (0, None);
                    UNSETTLED.fetch_sub(1, Ordering::AcqRel);
                }
            }
            Err(_) => {
                let mut failures = lock(&inner.failures);
                if *failures == (0, None) {
                    UNSETTLED.fetch_add(1, Ordering::AcqRel);
                }
                failures.0 += 1;
                if failures.0 >= FAILURES_TO_OPEN {
                    *failures = (0, Some(Instant::now() + OPEN_FOR));
                }
            }
        }
        result
    }
}

/// What a load from the primary found.
enum Load {
    /// The row's payload and version.
    Found(Vec<u8>, i64),
    /// No such row.
    Missing,
    /// A row of another tenant.
    Foreign,
}

/// `SELECT <columns>, row_version FROM <table> WHERE <key> [AND not soft-deleted]`, built
/// once per model.
pub(crate) fn select_sql<M: LifeModel>() -> std::borrow::Cow<'static, str> {
    let key = (std::any::TypeId::of::<M>(), Kind::CacheSelect, 0);
    shapes::statement(Some(key), || {
        let mut sql = format!(
            "SELECT {}, row_version FROM {} WHERE ",
            M::COLUMN_LIST,
            M::QUALIFIED
        );
        let keys: Vec<String> = M::COLUMNS
            .iter()
            .filter(|c| c.primary_key)
            .enumerate()
            .map(|(i, c)| format!("{} = ${}", quote(c.name), i + 1))
            .collect();
        sql.push_str(&keys.join(" AND "));
        if let Some(deleted) = M::SOFT_DELETE {
            sql.push_str(&format!(" AND {} IS NULL", quote(deleted)));
        }
        sql
    })
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl From<Bypass> for Error {
    fn from(b: Bypass) -> Error {
        Error::invalid_use(format!("cache bypass: {}", b.as_str()))
    }
}
