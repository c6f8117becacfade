//! What the reflector tests share: their models and tables (schema `reflector_it`, which
//! also holds the outbox), fresh rows, and a reflector process in a namespace of the
//! test's own.

#![allow(dead_code)] // each test file uses its own part of this module

pub mod history;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Once;
use std::time::{Duration, Instant};

use lifeguard_core::cache::{install_change_capture, Cache, CaptureOptions};
use lifeguard_core::model::LifeModel as _;
use lifeguard_core::pool::Pool;
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_tests::cache::cached_pool_in;
use lifeguard_tests::pg::connect;
use lifeguard_tests::reflector::ReflectorProcess;
use lifeguard_tests::unique_name;

pub const SCHEMA: &str = "reflector_it";
pub const BIN: &str = env!("CARGO_BIN_EXE_lifeguard-reflector");
/// The bound the tests' caches and reflectors share.
pub const BOUND: Duration = Duration::from_secs(2);

/// A read-heavy model: the reflector refreshes its keys.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "items",
    schema_name = "reflector_it",
    cache(ttl_ms = 60000)
)]
pub struct Item {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub name: String,
    pub n: i64,
}

/// A write-heavy model: the reflector drops its keys.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "notes",
    schema_name = "reflector_it",
    cache(ttl_ms = 60000, mode = "invalidate")
)]
pub struct Note {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub body: String,
}

pub fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let conn = connect();
        conn.batch_execute(
            "SELECT pg_advisory_lock(hashtext('reflector_it setup'));
             CREATE SCHEMA IF NOT EXISTS reflector_it;
             CREATE TABLE IF NOT EXISTS reflector_it.items (
               id bigint PRIMARY KEY, name text NOT NULL, n bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS reflector_it.notes (id bigint PRIMARY KEY, body text NOT NULL)",
        )
        .expect("tables");
        let opts = CaptureOptions::new().schema(SCHEMA);
        install_change_capture::<Item>(&conn, &opts).expect("capture items");
        install_change_capture::<Note>(&conn, &opts).expect("capture notes");
        conn.batch_execute("SELECT pg_advisory_unlock(hashtext('reflector_it setup'))")
            .expect("unlock");
    });
}

/// `n` fresh item rows (keys no other test uses), named `name`, `n` = 0.
pub fn items(count: usize, name: &str) -> Vec<i64> {
    setup();
    static NEXT: AtomicI64 = AtomicI64::new(0);
    let base = i64::from(std::process::id()) * 1_000_000;
    let ids: Vec<i64> = (0..count)
        .map(|_| base + NEXT.fetch_add(1, Ordering::Relaxed))
        .collect();
    connect()
        .execute(
            "INSERT INTO reflector_it.items (id, name, n) SELECT id, $2, 0 FROM unnest($1::int8[]) id",
            &[&ids, &name],
        )
        .expect("insert items");
    ids
}

/// A namespace of the test's own: a cached pool on it and a reflector leading it.
pub fn namespace(env: &[(&str, &str)]) -> (String, Pool, Cache, ReflectorProcess) {
    setup();
    let ns = unique_name("rns");
    let (pool, cache) = cached_pool_in(&ns, |c| c.staleness_bound(BOUND));
    let reflector = ReflectorProcess::spawn(BIN, &ns, SCHEMA, env);
    reflector.wait_leading(Duration::from_secs(20));
    wait_for_heartbeat(&pool, &cache);
    (ns, pool, cache, reflector)
}

/// Waits until reads of the namespace use Redis (the reflector's heartbeat is seen).
pub fn wait_for_heartbeat(pool: &Pool, cache: &Cache) {
    let probe = items(1, "probe")[0];
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let _ = Item::find_by_id(probe).one(pool).expect("read");
        if hits(cache, "items") > 0.0 {
            return;
        }
        assert!(Instant::now() < until, "reads never used the cache");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The cache's hits on `entity`.
pub fn hits(cache: &Cache, entity: &str) -> f64 {
    lifeguard_tests::cache::cache_metric(
        cache,
        "lifeguard_cache_requests_total",
        &[("entity", entity), ("result", "hit")],
    )
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns how long it took.
pub fn eventually(limit: Duration, what: &str, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Changes an item behind the application's back (no ORM write, so only the reflector
/// tells the cache).
pub fn set_n(id: i64, n: i64) {
    connect()
        .execute(
            "UPDATE reflector_it.items SET n = $2 WHERE id = $1",
            &[&id, &n],
        )
        .expect("update");
}

/// The item as the cache serves it now.
pub fn cached_n(pool: &Pool, id: i64) -> Option<i64> {
    Item::find_by_id(id).one(pool).expect("read").map(|i| i.n)
}

/// Reads each item until a read of it is a hit: its key is in Redis (a first fill can be
/// rejected when the reflector passes over the row's insert meanwhile).
pub fn warm(pool: &Pool, cache: &Cache, ids: &[i64]) {
    for id in ids {
        eventually(Duration::from_secs(5), "warming a key", || {
            let before = hits(cache, "items");
            let _ = cached_n(pool, *id);
            hits(cache, "items") > before
        });
    }
}

/// After the outbox drains: every key's cached value equals the database's (read through
/// a cache that holds it, or loaded when absent).
pub fn assert_coherent(pool: &Pool, ids: &[i64]) {
    let db: Vec<(i64, i64)> = connect()
        .query(
            "SELECT id, n FROM reflector_it.items WHERE id = ANY($1) ORDER BY id",
            &[&ids],
        )
        .expect("rows")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let wrong: Vec<String> = db
        .iter()
        .filter_map(|(id, n)| {
            let cached = cached_n(pool, *id);
            (cached != Some(*n)).then(|| format!("{id}: cache {cached:?}, database {n}"))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "{} keys differ: {:?}",
        wrong.len(),
        &wrong[..wrong.len().min(5)]
    );
}

/// Waits until the reflector has handled every change committed before the call: its
/// stored checkpoint has passed every transaction that had begun by then. Other tests'
/// writers share the outbox, so "the backlog is empty" may never hold while they run.
/// On failure it says what it last saw and which transactions held the checkpoint back.
pub fn drained(reflector: &ReflectorProcess, limit: Duration) {
    let db = connect();
    let target: String = db
        .query_one("SELECT pg_snapshot_xmax(pg_current_snapshot())::text", &[])
        .expect("snapshot")
        .get(0);
    let passed = || -> bool {
        db.query_opt(
            &format!(
                "SELECT 1 FROM {SCHEMA}.lifeguard_reflector_checkpoint \
                 WHERE namespace = $1 AND txid >= $2::text::xid8"
            ),
            &[&reflector.namespace(), &target],
        )
        .expect("checkpoint")
        .is_some()
    };
    let start = Instant::now();
    while reflector.leading_epoch().is_none() || !passed() {
        assert!(
            start.elapsed() < limit,
            "the outbox drains: not within {limit:?} (leading {:?}, backlog {}, checkpoint lag \
             {} s; transactions with an xid: {:?})",
            reflector.leading_epoch(),
            reflector.metric("lifeguard_reflector_backlog_events", &[]),
            reflector.metric("lifeguard_reflector_checkpoint_lag_seconds", &[]),
            transactions_with_an_xid()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The sessions whose transaction holds an xid (any of them holds the checkpoint back).
fn transactions_with_an_xid() -> Vec<String> {
    connect()
        .query(
            "SELECT pid::text, application_name, state, backend_xid::text, \
               (clock_timestamp() - xact_start)::text, left(query, 80) \
             FROM pg_stat_activity WHERE backend_xid IS NOT NULL",
            &[],
        )
        .map(|rows| {
            rows.iter()
                .map(|r| {
                    (0..6)
                        .map(|i| r.try_get::<_, Option<String>>(i).ok().flatten())
                        .map(Option::unwrap_or_default)
                        .collect::<Vec<_>>()
                        .join(" | ")
                })
                .collect()
        })
        .unwrap_or_else(|e| vec![format!("unreadable: {e}")])
}
