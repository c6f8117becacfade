//! The cache's read and write paths against the real primary and Redis, without a
//! reflector (the tests write the heartbeat one would): bypass without a heartbeat, fill on
//! a miss, hits, writes dropping keys after commit (and in a transaction only at its end),
//! the token rule, Redis down, and the stampede bound inside one process.

use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use lifeguard_core::cache::{install_change_capture, CaptureOptions};
use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord};
use lifeguard_core::pool::{ReadOptions, ReadPreference};
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_tests::cache::{beat, cache_metric, cached_pool, stop_beating};
use lifeguard_tests::pg::connect;

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "gadgets",
    schema_name = "cache_it",
    cache(ttl_ms = 60000)
)]
pub struct Gadget {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub name: String,
    pub stock: i32,
}

const LONG: Duration = Duration::from_secs(60);

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let conn = connect();
        conn.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS cache_it;
             CREATE TABLE IF NOT EXISTS cache_it.gadgets (
               id bigint PRIMARY KEY, name text NOT NULL, stock int NOT NULL)",
        )
        .expect("table");
        install_change_capture::<Gadget>(&conn, &CaptureOptions::new().schema("cache_it"))
            .expect("capture");
    });
}

/// A fresh row with a key no other test uses.
fn gadget(name: &str) -> Gadget {
    setup();
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let id = (std::process::id() as i64) * 1_000_000
        + NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let conn = connect();
    conn.execute(
        "INSERT INTO cache_it.gadgets (id, name, stock) VALUES ($1, $2, 1)",
        &[&id, &name],
    )
    .expect("insert");
    Gadget {
        id,
        name: name.into(),
        stock: 1,
    }
}

/// A change no ORM write and no reflector tells the cache about.
fn rename_behind_the_cache(id: i64, name: &str) {
    connect()
        .execute(
            "UPDATE cache_it.gadgets SET name = $2 WHERE id = $1",
            &[&id, &name],
        )
        .expect("update");
}

fn entity<'a>() -> [(&'a str, &'a str); 1] {
    [("entity", "gadgets")]
}

#[test]
fn without_a_heartbeat_every_read_goes_to_postgres() {
    let (pool, cache) = cached_pool(|c| c);
    let g = gadget("plain");
    let read = Gadget::find_by_id(g.id).one(&pool).unwrap();
    assert_eq!(read.as_ref(), Some(&g));
    rename_behind_the_cache(g.id, "renamed");
    let read = Gadget::find_by_id(g.id).one(&pool).unwrap().unwrap();
    assert_eq!(read.name, "renamed", "an unguaranteed cache must not serve");
    assert!(
        cache_metric(
            &cache,
            "lifeguard_cache_bypass_total",
            &[("reason", "heartbeat_missing")]
        ) >= 2.0
    );
    assert_eq!(
        cache_metric(&cache, "lifeguard_cache_loads_total", &entity()),
        0.0
    );
}

#[test]
fn a_miss_fills_and_later_reads_hit() {
    let (pool, cache) = cached_pool(|c| c);
    beat(&cache, 0, u64::MAX, LONG);
    let g = gadget("first");
    assert_eq!(
        Gadget::find_by_id(g.id).one(&pool).unwrap(),
        Some(g.clone())
    );
    assert_eq!(
        cache_metric(&cache, "lifeguard_cache_loads_total", &entity()),
        1.0
    );
    // Changed behind the cache's back: the cached value is what comes back, which shows
    // the read was served from Redis (the reflector would have refreshed it within B).
    rename_behind_the_cache(g.id, "second");
    for _ in 0..3 {
        let read = Gadget::find_by_id(g.id).one(&pool).unwrap().unwrap();
        assert_eq!(read.name, "first");
    }
    assert_eq!(
        cache_metric(&cache, "lifeguard_cache_loads_total", &entity()),
        1.0
    );
    assert_eq!(
        cache_metric(
            &cache,
            "lifeguard_cache_requests_total",
            &[("entity", "gadgets"), ("result", "hit")]
        ),
        3.0
    );
    // A query that is not a plain key lookup never uses the cache.
    let by_name = Gadget::find()
        .filter(GadgetColumn::Id.eq(g.id))
        .one(&pool)
        .unwrap()
        .unwrap();
    assert_eq!(by_name.name, "second");
    // A missing row is not cached, and stays missing.
    assert_eq!(Gadget::find_by_id(-g.id).one(&pool).unwrap(), None);
}

#[test]
fn orm_writes_drop_their_keys_after_commit() {
    let (pool, cache) = cached_pool(|c| c);
    beat(&cache, 0, u64::MAX, LONG);
    let g = gadget("v1");
    Gadget::find_by_id(g.id).one(&pool).unwrap();
    // An update through the ORM: the next read (another handle) sees it.
    let mut record = g.clone().into_record();
    record.name = Set("v2".into());
    record.update(&pool).unwrap();
    let read = Gadget::find_by_id(g.id)
        .one(&pool.db(ReadOptions::default()))
        .unwrap();
    assert_eq!(read.unwrap().name, "v2");
    // In a transaction the key is dropped when it commits, never before: while it is open
    // another handle still gets the committed value from the cache.
    Gadget::find_by_id(g.id).one(&pool).unwrap();
    let outside = pool.clone();
    pool.transaction(|tx| {
        let mut record = Gadget::find_by_id(g.id).one(tx)?.unwrap().into_record();
        record.name = Set("v3".into());
        record.update(tx)?;
        let seen = Gadget::find_by_id(g.id).one(&outside)?.unwrap();
        assert_eq!(seen.name, "v2", "the uncommitted write is invisible");
        Ok(())
    })
    .unwrap();
    let read = Gadget::find_by_id(g.id).one(&pool).unwrap().unwrap();
    assert_eq!(read.name, "v3");
    // A delete through the ORM.
    Gadget::delete_by_id(&pool, g.id).unwrap();
    assert_eq!(Gadget::find_by_id(g.id).one(&pool).unwrap(), None);
    assert!(cache_metric(&cache, "lifeguard_cache_invalidations_total", &entity()) >= 3.0);
}

#[test]
fn a_bulk_write_makes_the_table_bypass_for_the_bound() {
    let (pool, cache) = cached_pool(|c| c.staleness_bound(Duration::from_millis(600)));
    beat(&cache, 0, u64::MAX, LONG);
    let g = gadget("bulk");
    Gadget::find_by_id(g.id).one(&pool).unwrap();
    Gadget::update_many()
        .set(GadgetColumn::Stock, GadgetColumn::Stock.add(1))
        .filter(GadgetColumn::Id.eq(g.id))
        .exec(&pool)
        .unwrap();
    rename_behind_the_cache(g.id, "after bulk");
    let read = Gadget::find_by_id(g.id).one(&pool).unwrap().unwrap();
    assert_eq!((read.stock, read.name.as_str()), (2, "after bulk"));
    assert!(
        cache_metric(
            &cache,
            "lifeguard_cache_bypass_total",
            &[("reason", "write_unconfirmed")]
        ) >= 1.0
    );
    // After the bound the reflector would have caught up: the cache serves again.
    std::thread::sleep(Duration::from_millis(700));
    Gadget::find_by_id(g.id).one(&pool).unwrap();
    // Past the bound the cache serves again: here the value cached before the bulk write,
    // since no reflector runs in this test to refresh it (one would have, within B).
    let read = Gadget::find_by_id(g.id).one(&pool).unwrap().unwrap();
    assert_eq!(read.name, "bulk", "served from the cache again");
}

#[test]
fn a_handle_that_wrote_and_a_primary_read_skip_the_cache() {
    let (pool, cache) = cached_pool(|c| c);
    beat(&cache, 0, u64::MAX, LONG);
    let g = gadget("w1");
    Gadget::find_by_id(g.id).one(&pool).unwrap();
    rename_behind_the_cache(g.id, "w2");
    let db = pool.db(ReadOptions::default());
    db.execute(
        "UPDATE cache_it.gadgets SET stock = stock WHERE id = $1",
        &[&g.id],
    )
    .unwrap();
    assert!(db.wrote());
    assert_eq!(
        Gadget::find_by_id(g.id).one(&db).unwrap().unwrap().name,
        "w2"
    );
    let primary = pool.db(ReadOptions::new(ReadPreference::Primary));
    assert_eq!(
        Gadget::find_by_id(g.id)
            .one(&primary)
            .unwrap()
            .unwrap()
            .name,
        "w2"
    );
    // An ordinary handle is served from the cache.
    let fresh = pool.db(ReadOptions::default());
    assert_eq!(
        Gadget::find_by_id(g.id).one(&fresh).unwrap().unwrap().name,
        "w1"
    );
}

#[test]
fn a_token_ahead_of_the_reflector_bypasses() {
    let (pool, cache) = cached_pool(|c| c);
    let g = gadget("t1");
    beat(&cache, 0, u64::MAX, LONG);
    Gadget::find_by_id(g.id).one(&pool).unwrap();
    rename_behind_the_cache(g.id, "t2");
    let token = lifeguard_tests::wait_for(Duration::from_secs(5), || pool.current_token())
        .expect("the monitor sampled the primary");
    let with_token = || pool.db(ReadOptions::default().min_lsn(token));
    // The reflector says it has reflected up to the token: the cache may serve.
    assert_eq!(
        Gadget::find_by_id(g.id)
            .one(&with_token())
            .unwrap()
            .unwrap()
            .name,
        "t1"
    );
    // It says it is behind the token: PostgreSQL.
    beat(&cache, 0, token.lsn() - 1, LONG);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        Gadget::find_by_id(g.id)
            .one(&with_token())
            .unwrap()
            .unwrap()
            .name,
        "t2"
    );
    assert!(
        cache_metric(
            &cache,
            "lifeguard_cache_bypass_total",
            &[("reason", "token_ahead")]
        ) >= 1.0
    );
}

#[test]
fn find_each_by_id_reads_hits_and_loads_misses_once() {
    let (pool, cache) = cached_pool(|c| c);
    beat(&cache, 0, u64::MAX, LONG);
    let (a, b) = (gadget("a"), gadget("b"));
    Gadget::find_by_id(a.id).one(&pool).unwrap();
    rename_behind_the_cache(a.id, "a2");
    let got = Gadget::find_each_by_id(&pool, &[a.id, -1, b.id]).unwrap();
    assert_eq!(got[0].as_ref().unwrap().name, "a", "a hit");
    assert_eq!(got[1], None);
    assert_eq!(got[2].as_ref(), Some(&b));
    let loads = cache_metric(&cache, "lifeguard_cache_loads_total", &entity());
    assert_eq!(loads, 3.0, "a once, then -1 and b");
    let again = Gadget::find_each_by_id(&pool, &[b.id, a.id]).unwrap();
    assert_eq!(
        (again[0].as_ref().unwrap().id, again[1].as_ref().unwrap().id),
        (b.id, a.id)
    );
    assert_eq!(
        cache_metric(&cache, "lifeguard_cache_loads_total", &entity()),
        loads
    );
}

#[test]
fn redis_down_or_gone_never_fails_a_read() {
    let (pool, cache) = cached_pool(|c| c);
    let g = gadget("down");
    // A cache whose Redis refuses connections: reads go to PostgreSQL promptly.
    let dead = lifeguard_core::cache::Cache::new(
        lifeguard_core::cache::redis::RedisClient::new(
            lifeguard_core::cache::redis::RedisConfig::from_url(&format!(
                "redis://127.0.0.1:{}/0",
                lifeguard_tests::scratch::free_port()
            ))
            .unwrap(),
        ),
        lifeguard_core::cache::CacheConfig::new("dead"),
    );
    let down = pool.clone().with_cache(dead.clone());
    let started = Instant::now();
    for _ in 0..50 {
        assert_eq!(
            Gadget::find_by_id(g.id).one(&down).unwrap(),
            Some(g.clone())
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        cache_metric(
            &dead,
            "lifeguard_cache_bypass_total",
            &[("reason", "redis_error")]
        ) >= 1.0
    );
    // And the healthy cache, its heartbeat gone mid-way, still answers.
    beat(&cache, 0, u64::MAX, LONG);
    Gadget::find_by_id(g.id).one(&pool).unwrap();
    stop_beating(&cache);
    std::thread::sleep(Duration::from_millis(300));
    rename_behind_the_cache(g.id, "fresh");
    assert_eq!(
        Gadget::find_by_id(g.id).one(&pool).unwrap().unwrap().name,
        "fresh"
    );
}

#[test]
fn a_cold_key_is_loaded_once_by_a_crowd_of_coroutines() {
    // Redis calls get a long deadline: this is about single-flight, and under a loaded
    // machine the first calls (which connect) may take more than the default 25 ms,
    // sending the crowd to PostgreSQL as designed.
    let (pool, cache) = cached_pool(|c| {
        c.lease_wait(Duration::from_secs(2))
            .call_timeout(Duration::from_secs(1))
    });
    beat(&cache, 0, u64::MAX, LONG);
    let g = gadget("crowd");
    // Hold the table so the first load takes a while and the crowd piles up behind it.
    let mut locker = connect();
    let lock = locker.begin().unwrap();
    lock.batch_execute("LOCK TABLE cache_it.gadgets IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let pool = Arc::new(pool);
    let readers: Vec<_> = (0..2000)
        .map(|_| {
            let pool = pool.clone();
            may::go!(move || Gadget::find_by_id(g.id).one(&*pool))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    lock.commit().unwrap();
    let results: Vec<_> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    let failed = results.iter().filter(|r| r.is_err()).count();
    assert_eq!(
        failed,
        0,
        "{failed} reads failed (first: {:?}); bypass {} loads {}",
        results.iter().find(|r| r.is_err()),
        cache_metric(&cache, "lifeguard_cache_bypass_total", &[]),
        cache_metric(&cache, "lifeguard_cache_loads_total", &entity())
    );
    assert_eq!(
        cache_metric(&cache, "lifeguard_cache_loads_total", &entity()),
        1.0,
        "one load for the whole process: {}",
        lifeguard_tests::pool::registry_text(cache.registry())
    );
    assert!(
        cache_metric(
            &cache,
            "lifeguard_cache_singleflight_coalesced_total",
            &entity()
        ) > 0.0
    );
}
