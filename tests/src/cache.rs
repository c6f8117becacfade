//! Helpers for the cache tests: a pool with a cache in a namespace of the test's own, the
//! heartbeat a reflector would write, and the cache's metrics.

use std::time::{Duration, Instant};

use lifeguard_core::cache::key::{epoch_key, heartbeat_key};
use lifeguard_core::cache::redis::{RedisClient, RedisConfig};
use lifeguard_core::cache::{scripts, Cache, CacheConfig, Heartbeat};
use lifeguard_core::pool::{Pool, PoolConfig};

use crate::pool::cfg;
use crate::{primary_url, redis_url, unique_name};

/// A pool on the primary with a cache in a fresh namespace.
pub fn cached_pool(config: impl FnOnce(CacheConfig) -> CacheConfig) -> (Pool, Cache) {
    cached_pool_in(&unique_name("ns"), config)
}

/// A pool on the primary with a cache in namespace `ns`.
pub fn cached_pool_in(ns: &str, config: impl FnOnce(CacheConfig) -> CacheConfig) -> (Pool, Cache) {
    cached_pool_on(&redis_url(), ns, config)
}

/// A pool on the primary with a cache in namespace `ns` on the Redis (or cluster) at
/// `redis`.
pub fn cached_pool_on(
    redis: &str,
    ns: &str,
    config: impl FnOnce(CacheConfig) -> CacheConfig,
) -> (Pool, Cache) {
    crate::pg::init();
    let redis = RedisClient::new(RedisConfig::from_url(redis).expect("redis url"));
    let cache = Cache::new(redis, config(CacheConfig::new(ns)));
    let pool = Pool::connect(PoolConfig::new(cfg(&primary_url())).max_size(4))
        .expect("pool")
        .with_cache(cache.clone());
    (pool, cache)
}

/// Writes the heartbeat a caught-up reflector would: epoch 1, `generation`, every commit
/// up to `reflected_lsn` reflected, alive for `ttl`.
pub fn beat(cache: &Cache, generation: u64, reflected_lsn: u64, ttl: Duration) {
    let ns = cache.config().get_namespace();
    let hb = Heartbeat {
        epoch: 1,
        generation,
        reflected_lsn,
        written_at_ms: 0,
    }
    .to_string();
    let ttl = ttl.as_millis().to_string();
    let ok: i64 = cache
        .redis()
        .eval_until(
            scripts::heartbeat(),
            &[heartbeat_key(ns).as_bytes(), epoch_key(ns).as_bytes()],
            &[b"1", hb.as_bytes(), ttl.as_bytes()],
            Instant::now() + Duration::from_secs(5),
        )
        .expect("heartbeat");
    assert_eq!(ok, 1, "the test's heartbeat was fenced");
}

/// Removes the heartbeat, as when every reflector has stopped.
pub fn stop_beating(cache: &Cache) {
    let key = heartbeat_key(cache.config().get_namespace());
    cache
        .redis()
        .query::<()>(lifeguard_core::cache::redis::cmd("DEL").arg(key))
        .expect("del heartbeat");
}

/// The sum of every sample of `name` on the cache's registry whose labels include
/// `labels`.
pub fn cache_metric(cache: &Cache, name: &str, labels: &[(&str, &str)]) -> f64 {
    crate::pool::registry_metric(cache.registry(), name, labels)
}

/// The model of the multi-process stampede test (C1): `cache_crowd.crowd`.
#[derive(Debug, Clone, lifeguard_core::LifeModel)]
#[lifeguard(table_name = "crowd", schema_name = "cache_crowd", cache)]
pub struct Crowd {
    /// The key.
    #[lifeguard(primary_key)]
    pub id: i64,
    /// A value.
    pub n: i64,
}

/// Creates `cache_crowd.crowd` with change capture (idempotent).
pub fn crowd_table() {
    use lifeguard_core::Executor;
    let conn = crate::pg::connect();
    conn.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS cache_crowd;
         CREATE TABLE IF NOT EXISTS cache_crowd.crowd (id bigint PRIMARY KEY, n bigint NOT NULL)",
    )
    .expect("table");
    lifeguard_core::cache::install_change_capture::<Crowd>(
        &conn,
        &lifeguard_core::cache::CaptureOptions::new().schema("cache_crowd"),
    )
    .expect("capture");
}
