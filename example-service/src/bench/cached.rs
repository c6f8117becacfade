//! `--mode cached`: `point` through the ORM with the Redis cache in front, every key warm
//! (peer `lifeguard-cached`).
//!
//! The rows are a copy of `world` in schema `lifeguard_bench` with change capture
//! installed there, so the shared tables the other peers use keep no triggers. Nothing
//! writes during a run, so the only thing a reflector would do is keep the heartbeat
//! alive: a coroutine here does that instead, with the reflector's own script.

use std::hint::black_box;
use std::time::{Duration, Instant};

use lifeguard_core::cache::key::{epoch_key, heartbeat_key};
use lifeguard_core::cache::redis::{RedisClient, RedisConfig};
use lifeguard_core::cache::{
    install_change_capture, scripts, Cache, CacheConfig, CaptureOptions, Heartbeat,
};
use lifeguard_core::model::LifeModel;
use lifeguard_core::pool::Pool;
use lifeguard_core::{Executor, LifeModel};
use rand::rngs::StdRng;

use super::{expect, world_id, BoxError, Workload, WORLD_ROWS};

/// `world`, cached.
#[derive(Debug, Clone, LifeModel)]
#[lifeguard(
    table_name = "world",
    schema_name = "lifeguard_bench",
    cache(ttl_ms = 3600000)
)]
pub struct CachedWorld {
    #[lifeguard(primary_key)]
    pub id: i32,
    pub randomnumber: i32,
}

const NAMESPACE: &str = "lifeguard-bench";

/// Copies `world`, installs capture on the copy, attaches a cache on `redis_url` to
/// `pool`, starts the heartbeat and warms every key.
pub fn prepare(pool: Pool, redis_url: &str) -> Result<Pool, BoxError> {
    pool.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS lifeguard_bench;
         CREATE TABLE IF NOT EXISTS lifeguard_bench.world (LIKE public.world INCLUDING ALL);
         INSERT INTO lifeguard_bench.world SELECT * FROM public.world ON CONFLICT DO NOTHING",
    )?;
    install_change_capture::<CachedWorld>(
        &pool,
        &CaptureOptions::new()
            .schema("lifeguard_bench")
            .notify(false),
    )?;
    let redis = RedisClient::new(RedisConfig::from_url(redis_url)?);
    let cache = Cache::new(redis, CacheConfig::new(NAMESPACE));
    beat(&cache)?;
    let keeper = cache.clone();
    lifeguard_core::rt::spawn("bench-heartbeat", 0x4000, move || loop {
        may::coroutine::sleep(Duration::from_millis(500));
        if let Err(e) = beat(&keeper) {
            eprintln!("heartbeat: {e}");
        }
    })?;
    let pool = pool.with_cache(cache);
    let ids: Vec<i32> = (1..=WORLD_ROWS).collect();
    for chunk in ids.chunks(500) {
        let rows = CachedWorld::find_each_by_id(&pool, chunk)?;
        expect("warm rows", rows.iter().flatten().count(), chunk.len())?;
    }
    Ok(pool)
}

/// One heartbeat, as a caught-up reflector of epoch 1 writes it.
fn beat(cache: &Cache) -> Result<(), BoxError> {
    let hb = Heartbeat {
        epoch: 1,
        generation: 0,
        reflected_lsn: u64::MAX,
        written_at_ms: 0,
    }
    .to_string();
    let ttl = cache.config().get_staleness_bound() - cache.config().heartbeat_trust();
    let ttl = ttl.as_millis().to_string();
    cache.redis().eval_until::<i64>(
        scripts::heartbeat(),
        &[
            heartbeat_key(NAMESPACE).as_bytes(),
            epoch_key(NAMESPACE).as_bytes(),
        ],
        &[b"1", hb.as_bytes(), ttl.as_bytes()],
        Instant::now() + Duration::from_secs(1),
    )?;
    Ok(())
}

/// One `point` through the cache.
pub fn op(workload: Workload, db: &dyn Executor, rng: &mut StdRng) -> Result<(), BoxError> {
    if workload != Workload::Point {
        return Err(format!("--mode cached runs point only, not {}", workload.name()).into());
    }
    let id = world_id(rng);
    let world = CachedWorld::find_by_id(id)
        .one(db)?
        .ok_or_else(|| format!("world {id} not found"))?;
    expect("id", world.id as usize, id as usize)?;
    black_box(world.randomnumber);
    Ok(())
}
