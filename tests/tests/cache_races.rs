//! The stale-set race (spec §3.9, C2) over 10,000 randomized interleavings: a reader misses,
//! loads v1 and pauses before its fill; a writer commits v2, and the cache hears of it
//! either from the writer (an ORM write) or from the reflector (the writer died before
//! telling it); the reader's fill lands before, between or after. Whatever the order, the
//! key ends at v2 or absent, never at v1.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use lifeguard_core::cache::key::lease_key;
use lifeguard_core::cache::redis::cmd;
use lifeguard_core::cache::{failpoint, install_change_capture, scripts, CaptureOptions};
use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord};
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_tests::cache::{beat, cached_pool};
use lifeguard_tests::pg::connect;
use may::sync::mpsc;

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "racers", schema_name = "cache_it", cache)]
pub struct Racer {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub name: String,
}

const ITERATIONS: usize = 10_000;
const AT_ONCE: usize = 32;

/// Where each paused reader reports its row key and waits to be let go.
type Gates = Mutex<HashMap<i64, (mpsc::Sender<String>, mpsc::Receiver<()>)>>;

fn gates() -> &'static Gates {
    static GATES: std::sync::OnceLock<Gates> = std::sync::OnceLock::new();
    GATES.get_or_init(Gates::default)
}

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let conn = connect();
        conn.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS cache_it;
             CREATE TABLE IF NOT EXISTS cache_it.racers (id bigint PRIMARY KEY, name text NOT NULL)",
        )
        .expect("table");
        install_change_capture::<Racer>(&conn, &CaptureOptions::new().schema("cache_it"))
            .expect("capture");
        failpoint::set_after_load(Some(Arc::new(|row_key: &str| {
            let id: i64 = row_key
                .rsplit("i:")
                .next()
                .and_then(|s| s.trim_end_matches('}').parse().ok())
                .expect("a racer key");
            let gate = gates().lock().unwrap().remove(&id);
            if let Some((loaded, go)) = gate {
                loaded.send(row_key.to_owned()).expect("the test waits");
                go.recv_timeout(Duration::from_secs(10)).expect("the test lets go");
            }
        })));
    });
}

/// The orders the steps after the reader's load can take.
#[derive(Debug, Clone, Copy)]
enum Order {
    FillThenOrmWrite,
    OrmWriteThenFill,
    FillThenCommitThenReflect,
    CommitThenFillThenReflect,
    CommitThenReflectThenFill,
}

const ORDERS: [Order; 5] = [
    Order::FillThenOrmWrite,
    Order::OrmWriteThenFill,
    Order::FillThenCommitThenReflect,
    Order::CommitThenFillThenReflect,
    Order::CommitThenReflectThenFill,
];

#[test]
fn a_fill_never_stores_what_it_read_before_a_change() {
    setup();
    let (pool, cache) = cached_pool(|c| {
        c.lease_wait(Duration::from_millis(10))
            .call_timeout(Duration::from_secs(2))
    });
    beat(&cache, 0, u64::MAX, Duration::from_secs(600));
    let base = i64::from(std::process::id()) * 100_000_000;
    let seed = Instant::now().elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15 ^ base as u64;
    let pool = Arc::new(pool);
    let cache = Arc::new(cache);
    let mut done = 0;
    while done < ITERATIONS {
        let batch: Vec<_> = (done..(done + AT_ONCE).min(ITERATIONS))
            .map(|i| {
                let (pool, cache) = (pool.clone(), cache.clone());
                let order = ORDERS[(xorshift(seed ^ i as u64) % ORDERS.len() as u64) as usize];
                may::go!(move || race(&pool, &cache, base + i as i64, order))
            })
            .collect();
        for (k, task) in batch.into_iter().enumerate() {
            let outcome = task.join().expect("an iteration panicked");
            assert!(
                outcome.is_ok(),
                "seed {seed:#x}, iteration {}: {outcome:?}",
                done + k
            );
        }
        done += AT_ONCE;
    }
    failpoint::set_after_load(None);
}

/// One interleaving; `Err` names what went wrong.
fn race(
    pool: &lifeguard_core::pool::Pool,
    cache: &lifeguard_core::cache::Cache,
    id: i64,
    order: Order,
) -> Result<(), String> {
    fn e(what: &'static str) -> impl Fn(lifeguard_core::Error) -> String {
        move |err| format!("{what}: {err}")
    }
    let conn = pool.primary();
    conn.execute(
        "INSERT INTO cache_it.racers (id, name) VALUES ($1, 'v1')",
        &[&id],
    )
    .map_err(e("insert"))?;
    let (loaded_tx, loaded) = mpsc::channel();
    let (go, go_rx) = mpsc::channel();
    gates().lock().unwrap().insert(id, (loaded_tx, go_rx));
    let reader = {
        let pool = pool.clone();
        may::go!(move || Racer::find_by_id(id).one(&pool).map(|r| r.map(|r| r.name)))
    };
    let row_key = loaded
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "the reader never loaded".to_owned())?;
    let fill = || -> Result<(), String> {
        go.send(()).map_err(|_| "reader gone".to_owned())?;
        Ok(())
    };
    let orm_write = || -> Result<(), String> {
        let mut record = Racer {
            id,
            name: "v1".into(),
        }
        .into_record();
        record.name = Set("v2".into());
        record.update(pool).map_err(e("orm update"))?;
        Ok(())
    };
    // A writer that dies before telling the cache: only the outbox knows.
    let commit = || -> Result<(), String> {
        conn.execute(
            "UPDATE cache_it.racers SET name = 'v2' WHERE id = $1",
            &[&id],
        )
        .map_err(e("raw update"))?;
        Ok(())
    };
    // What the reflector does with that change (mode invalidate).
    let reflect = || -> Result<(), String> {
        let version: i64 = conn
            .query_one(
                "SELECT row_version FROM cache_it.racers WHERE id = $1",
                &[&id],
            )
            .and_then(|r| r.try_get(0))
            .map_err(e("version"))?;
        let version = version.to_string();
        let lease = lease_key(&row_key);
        cache
            .redis()
            .eval_until::<String>(
                scripts::reflect(),
                &[row_key.as_bytes(), lease.as_bytes()],
                &[b"1", version.as_bytes(), b"", b"d"],
                Instant::now() + Duration::from_secs(5),
            )
            .map_err(e("reflect"))?;
        Ok(())
    };
    let wait_reader = |reader: may::coroutine::JoinHandle<_>| -> Result<(), String> {
        let read: lifeguard_core::Result<Option<String>> = reader
            .join()
            .map_err(|_| "the reader panicked".to_owned())?;
        match read.map_err(e("read"))? {
            Some(name) if name == "v1" => Ok(()),
            other => Err(format!("the reader read {other:?} before the change")),
        }
    };
    match order {
        Order::FillThenOrmWrite => {
            fill()?;
            wait_reader(reader)?;
            orm_write()?;
        }
        Order::OrmWriteThenFill => {
            orm_write()?;
            fill()?;
            wait_reader(reader)?;
        }
        Order::FillThenCommitThenReflect => {
            fill()?;
            wait_reader(reader)?;
            commit()?;
            reflect()?;
        }
        Order::CommitThenFillThenReflect => {
            commit()?;
            fill()?;
            wait_reader(reader)?;
            reflect()?;
        }
        Order::CommitThenReflectThenFill => {
            commit()?;
            reflect()?;
            fill()?;
            wait_reader(reader)?;
        }
    }
    let stored: Option<i64> = cache
        .redis()
        .query(cmd("HGET").arg(&row_key).arg("v"))
        .map_err(e("hget"))?;
    let v2: i64 = conn
        .query_one(
            "SELECT row_version FROM cache_it.racers WHERE id = $1",
            &[&id],
        )
        .and_then(|r| r.try_get(0))
        .map_err(e("version"))?;
    match stored {
        Some(v) if v < v2 => Err(format!(
            "{order:?}: the key holds version {v} < {v2}: v1 was stored"
        )),
        _ => Ok(()),
    }
}

fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}
