//! The reflector's figures (issue 18), against the local services (`scripts/services up`,
//! then `eval "$(scripts/services env)"`):
//!
//! ```text
//! cargo bench -p lifeguard-reflector --bench reflector
//! ```
//!
//! 1. **Capacity**: 8 writers commit a backlog of single-row updates over 1,000 warm keys
//!    with no reflector running; one is started and timed until it has drained them.
//! 2. **Commit-to-refresh latency** at 1,000 changes/s (8 writers, paced): after each
//!    commit the writer polls the key in Redis until it holds the new version.
//! 3. **The capture trigger's cost**: single-row update latency on a table without
//!    capture, with capture, and with capture but no `NOTIFY`, interleaved.
//!
//! Figures are ratios or distributions from one run; the machine is shared.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeguard_core::cache::key::KeySpace;
use lifeguard_core::cache::redis::cmd;
use lifeguard_core::cache::{install_change_capture, CaptureOptions};
use lifeguard_core::model::LifeModel as _;
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_tests::cache::cached_pool_in;
use lifeguard_tests::pg::connect;
use lifeguard_tests::reflector::ReflectorProcess;
use lifeguard_tests::unique_name;

const KEYS: i64 = 1000;
const WRITERS: usize = 8;
const BIN: &str = env!("CARGO_BIN_EXE_lifeguard-reflector");

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "items",
    schema_name = "reflector_bench",
    cache(ttl_ms = 3600000)
)]
struct Item {
    #[lifeguard(primary_key)]
    id: i64,
    n: i64,
}

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "quiet",
    schema_name = "reflector_bench",
    cache(ttl_ms = 600000)
)]
struct Quiet {
    #[lifeguard(primary_key)]
    id: i64,
    n: i64,
}

fn setup() {
    let conn = connect();
    conn.batch_execute(
        "DROP SCHEMA IF EXISTS reflector_bench CASCADE; CREATE SCHEMA reflector_bench;
         CREATE TABLE reflector_bench.items (id bigint PRIMARY KEY, n bigint NOT NULL);
         CREATE TABLE reflector_bench.quiet (id bigint PRIMARY KEY, n bigint NOT NULL);
         CREATE TABLE reflector_bench.plain (id bigint PRIMARY KEY, n bigint NOT NULL);
         INSERT INTO reflector_bench.items SELECT g, 0 FROM generate_series(1, 1000) g;
         INSERT INTO reflector_bench.quiet SELECT g, 0 FROM generate_series(1, 1000) g;
         INSERT INTO reflector_bench.plain SELECT g, 0 FROM generate_series(1, 1000) g;",
    )
    .expect("tables");
    let opts = CaptureOptions::new().schema("reflector_bench");
    install_change_capture::<Item>(&conn, &opts).expect("capture");
    install_change_capture::<Quiet>(&conn, &opts.clone().notify(false)).expect("capture");
}

/// Runs `per_writer` single-row updates of `table` on each of `WRITERS` coroutines (a
/// connection each, as in a service), each waiting for `pace` between its starts (zero:
/// as fast as it can), calling `after(key, row_version)` after each commit; returns the
/// latencies and the wall time.
fn updates(
    table: &'static str,
    per_writer: usize,
    pace: Duration,
    after: Arc<dyn Fn(i64, i64) + Send + Sync>,
) -> (Vec<Duration>, Duration) {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let writers: Vec<_> = (0..WRITERS)
        .map(|_| {
            let (next, after) = (next.clone(), after.clone());
            may::go!(move || {
                let conn = connect();
                let sql = match table {
                    "plain" => format!("UPDATE reflector_bench.{table} SET n = n + 1 WHERE id = $1 RETURNING 0::int8"),
                    _ => format!("UPDATE reflector_bench.{table} SET n = n + 1 WHERE id = $1 RETURNING row_version"),
                };
                let mut lat = Vec::with_capacity(per_writer);
                let t0 = Instant::now();
                for i in 0..per_writer {
                    let slot = t0 + pace * i as u32;
                    if let Some(wait) = slot.checked_duration_since(Instant::now()) {
                        may::coroutine::sleep(wait);
                    }
                    let id = (next.fetch_add(1, Ordering::Relaxed) as i64 % KEYS) + 1;
                    let began = Instant::now();
                    let v: i64 = conn.query_one(&sql, &[&id]).expect("update").get(0);
                    lat.push(began.elapsed());
                    after(id, v);
                }
                lat
            })
        })
        .collect();
    let lat = writers
        .into_iter()
        .flat_map(|w| w.join().expect("writer"))
        .collect();
    (lat, start.elapsed())
}

fn nothing() -> Arc<dyn Fn(i64, i64) + Send + Sync> {
    Arc::new(|_, _| {})
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn main() {
    // `cargo bench` passes --bench; nothing else is accepted.
    lifeguard_tests::pg::init();
    setup();
    let ns = unique_name("rbench");
    let (pool, cache) = cached_pool_in(&ns, |c| c);
    let schema = "reflector_bench";
    let fast = [("LIFEGUARD_REFLECTOR_RETRY_MS", "200")];

    // Warm every key under a running reflector.
    let reflector = ReflectorProcess::spawn(BIN, &ns, schema, &fast);
    reflector.wait_leading(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let ids: Vec<i64> = (1..=KEYS).collect();
    for _ in 0..3 {
        let _ = Item::find_each_by_id(&pool, &ids).expect("warm");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(reflector);

    // 1. Capacity.
    let backlog = 40_000;
    let (_, wrote) = updates("items", backlog / WRITERS, Duration::ZERO, nothing());
    eprintln!("backlog written in {wrote:?}");
    let reflector = ReflectorProcess::spawn(BIN, &ns, schema, &fast);
    let started = Instant::now();
    reflector.wait_leading(Duration::from_secs(20));
    let leading = Instant::now();
    // Drained when the stored checkpoint has passed the backlog's last row.
    let until = Instant::now() + Duration::from_secs(120);
    let check = connect();
    loop {
        let done: bool = check
            .query_one(
                "SELECT coalesce((SELECT (c.txid, c.id) >= (o.txid, o.id) \
                   FROM reflector_bench.lifeguard_reflector_checkpoint c, \
                        (SELECT txid, id FROM reflector_bench.lifeguard_outbox ORDER BY txid DESC, id DESC LIMIT 1) o \
                   WHERE c.namespace = $1), false)",
                &[&ns],
            )
            .expect("checkpoint")
            .get(0);
        if done {
            break;
        }
        assert!(Instant::now() < until, "the backlog did not drain");
        std::thread::sleep(Duration::from_millis(2));
    }
    let (drained, led) = (started.elapsed(), leading.elapsed());
    println!(
        "capacity: {backlog} changes over {KEYS} warm keys written by {WRITERS} writers in {:.2} s ({:.0}/s); \
         a new reflector drained them {:.2} s after it started, {:.2} s after it led: {:.0} changes/s",
        wrote.as_secs_f64(),
        backlog as f64 / wrote.as_secs_f64(),
        drained.as_secs_f64(),
        led.as_secs_f64(),
        backlog as f64 / led.as_secs_f64()
    );

    // 2. Commit-to-refresh at 1,000 changes/s, every key warm.
    let _ = Item::find_each_by_id(&pool, &ids).expect("warm");
    let layout: String = connect()
        .query_one(
            "SELECT layout FROM reflector_bench.lifeguard_cache_tables WHERE tbl = 'reflector_bench.items'",
            &[],
        )
        .expect("layout")
        .get(0);
    let status = reflector.status().expect("status");
    let generation = status["generation"].as_u64().unwrap_or(0);
    let space = KeySpace::new(
        &ns,
        u32::from_str_radix(&layout, 16).expect("hex"),
        generation,
        "reflector_bench.items",
    );
    let refresh = Arc::new(Mutex::new(Vec::new()));
    let redis = cache.redis().clone();
    let record = refresh.clone();
    let poll = Arc::new(move |id: i64, version: i64| {
        let key = space.row("", &format!("i:{id}"));
        let committed = Instant::now();
        loop {
            let v: Option<i64> = redis.query(cmd("HGET").arg(&key).arg("v")).unwrap_or(None);
            if v.is_some_and(|v| v >= version) || committed.elapsed() > Duration::from_millis(500) {
                break;
            }
            may::coroutine::sleep(Duration::from_micros(200));
        }
        record.lock().unwrap().push(committed.elapsed());
    });
    let (_, took) = updates("items", 10_000 / WRITERS, Duration::from_millis(8), poll);
    let mut refresh = std::mem::take(&mut *refresh.lock().unwrap());
    refresh.sort();
    println!(
        "commit to refresh at {:.0} changes/s (target 1000): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms over {} changes",
        refresh.len() as f64 / took.as_secs_f64(),
        pct(&refresh, 0.5).as_secs_f64() * 1e3,
        pct(&refresh, 0.99).as_secs_f64() * 1e3,
        refresh.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
        refresh.len()
    );

    // 3. The trigger's cost, interleaved rounds, 8 writers as fast as they go.
    let mut by_table: std::collections::BTreeMap<&str, (Vec<Duration>, f64)> = Default::default();
    for _round in 0..3 {
        for table in ["plain", "items", "quiet"] {
            let (lat, wall) = updates(table, 1000, Duration::ZERO, nothing());
            let entry = by_table.entry(table).or_default();
            entry.1 += lat.len() as f64 / wall.as_secs_f64() / 3.0;
            entry.0.extend(lat);
        }
    }
    let mean = |v: &[Duration]| v.iter().sum::<Duration>().as_secs_f64() / v.len() as f64;
    let (plain_lat, plain_tps) = by_table["plain"].clone();
    for (table, what) in [
        ("items", "capture + NOTIFY"),
        ("quiet", "capture, no NOTIFY"),
    ] {
        let (lat, tps) = &by_table[table];
        let mut sorted = lat.clone();
        sorted.sort();
        let mut plain_sorted = plain_lat.clone();
        plain_sorted.sort();
        println!(
            "trigger cost ({what}) vs no capture, {WRITERS} writers: mean latency x{:.2}, p99 x{:.2}, throughput x{:.2}",
            mean(lat) / mean(&plain_lat),
            pct(&sorted, 0.99).as_secs_f64() / pct(&plain_sorted, 0.99).as_secs_f64(),
            tps / plain_tps
        );
    }
    drop(reflector);
}
