//! The reflector and the cache across a Redis restart (C5: empty; C6: from a snapshot
//! older than what was reflected), on a Redis of the test's own, a long transaction
//! holding the snapshot's xmin back (C9), and a changed PostgreSQL identity (C12's bump).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lifeguard_core::cache::Cache;
use lifeguard_core::pool::Pool;
use lifeguard_core::Executor;
use lifeguard_tests::cache::cached_pool_on;
use lifeguard_tests::pg::connect;
use lifeguard_tests::reflector::ReflectorProcess;
use lifeguard_tests::unique_name;

/// A Redis server on a port and directory of its own, restartable.
struct PrivateRedis {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateRedis {
    fn start() -> PrivateRedis {
        let port = lifeguard_tests::scratch::free_port();
        let dir = std::env::temp_dir().join(unique_name("lg-redis"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut redis = PrivateRedis {
            port,
            dir,
            child: None,
        };
        redis.launch();
        redis
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    fn launch(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--dbfilename",
                "dump.rdb",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server");
        self.child = Some(child);
        let until = Instant::now() + Duration::from_secs(10);
        while self.cli(&["PING"]) != "PONG" {
            assert!(Instant::now() < until, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn cli(&self, args: &[&str]) -> String {
        let out = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `SHUTDOWN NOSAVE`, then a new server on the same port and directory (loading the
    /// last `SAVE`d snapshot, if any).
    fn restart(&mut self) {
        self.cli(&["SHUTDOWN", "NOSAVE"]);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
        self.launch();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A pool with a cache on `redis`, and a reflector on it.
fn on_private_redis(redis: &PrivateRedis) -> (Pool, Cache, ReflectorProcess) {
    setup();
    let ns = unique_name("rrs");
    let (pool, cache) = cached_pool_on(&redis.url(), &ns, |c| c.staleness_bound(BOUND));
    let reflector = ReflectorProcess::spawn_on(BIN, &ns, SCHEMA, &redis.url(), &[]);
    reflector.wait_leading(Duration::from_secs(20));
    wait_for_heartbeat(&pool, &cache);
    (pool, cache, reflector)
}

/// Reads every key for `span`, asserting each read equals the database's value.
fn reads_stay_fresh(pool: &Pool, ids: &[i64], want: i64, span: Duration) {
    let until = Instant::now() + span;
    while Instant::now() < until {
        for id in ids {
            assert_eq!(cached_n(pool, *id), Some(want), "a stale read of {id}");
        }
    }
}

/// C5: Redis restarts empty; reads miss and refill, nothing stale, the heartbeat comes
/// back (under a new generation: the reflector cannot tell an empty restart from a
/// stale one).
#[test]
fn a_redis_restarted_empty_is_refilled() {
    let mut redis = PrivateRedis::start();
    let (pool, cache, reflector) = on_private_redis(&redis);
    let ids = items(10, "c5");
    warm(&pool, &cache, &ids);
    redis.restart();
    for id in &ids {
        set_n(*id, 1);
    }
    reads_stay_fresh(&pool, &ids, 1, Duration::from_millis(500));
    eventually(Duration::from_secs(10), "the cache serves again", || {
        let before = hits(&cache, "items");
        let _ = cached_n(&pool, ids[0]);
        hits(&cache, "items") > before
    });
    reads_stay_fresh(&pool, &ids, 1, Duration::from_millis(200));
    assert_eq!(
        reflector.metric("lifeguard_reflector_redis_resets_total", &[]),
        1.0
    );
    assert_eq!(reflector.metric("lifeguard_reflector_generation", &[]), 1.0);
}

/// C6: Redis comes back from a snapshot taken before the values it holds were refreshed;
/// the reflector detects the restart (run id) and bumps the generation, so the old values
/// are never served.
#[test]
fn a_redis_restored_from_a_stale_snapshot_is_never_served() {
    let mut redis = PrivateRedis::start();
    let (pool, cache, reflector) = on_private_redis(&redis);
    let ids = items(10, "c6");
    warm(&pool, &cache, &ids);
    assert_eq!(redis.cli(&["SAVE"]), "OK");
    for id in &ids {
        set_n(*id, 2);
    }
    eventually(BOUND, "the refreshes", || {
        ids.iter().all(|id| cached_n(&pool, *id) == Some(2))
    });
    // Past the life of the heartbeat in the snapshot, which Redis would otherwise load
    // as still valid.
    std::thread::sleep(Duration::from_millis(1000));
    redis.restart();
    assert!(
        redis.cli(&["DBSIZE"]).parse::<u64>().unwrap() >= ids.len() as u64,
        "the snapshot's keys are back"
    );
    reads_stay_fresh(&pool, &ids, 2, Duration::from_secs(2));
    assert_eq!(
        reflector.metric("lifeguard_reflector_redis_resets_total", &[]),
        1.0
    );
    eventually(Duration::from_secs(10), "the cache serves again", || {
        let before = hits(&cache, "items");
        let _ = cached_n(&pool, ids[0]);
        hits(&cache, "items") > before
    });
}

/// C9: a transaction idle for 8 s holds xmin; writes meanwhile are still refreshed within
/// B (handled past the checkpoint), the checkpoint lag grows, and a restarted reflector
/// replays the held-back rows harmlessly.
#[test]
fn a_long_transaction_delays_the_checkpoint_not_the_refreshes() {
    let (ns, pool, cache, reflector) = namespace(&[]);
    let ids = items(5, "c9");
    warm(&pool, &cache, &ids);
    let long = connect();
    long.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT pg_current_xact_id()")
        .unwrap();
    for round in 1..=4i64 {
        for id in &ids {
            set_n(*id, round);
        }
        eventually(BOUND, "a refresh while xmin is held", || {
            ids.iter().all(|id| cached_n(&pool, *id) == Some(round))
        });
        std::thread::sleep(Duration::from_secs(2));
    }
    // The backlog is measured every 2 s.
    eventually(Duration::from_secs(5), "the checkpoint lag shows", || {
        reflector.metric("lifeguard_reflector_checkpoint_lag_seconds", &[]) >= 4.0
    });
    drop(reflector);
    let restarted = ReflectorProcess::spawn(BIN, &ns, SCHEMA, &[]);
    restarted.wait_leading(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    for id in &ids {
        assert_eq!(cached_n(&pool, *id), Some(4));
    }
    long.batch_execute("COMMIT").unwrap();
    drained(&restarted, Duration::from_secs(10));
    assert_coherent(&pool, &ids);
}

/// The PostgreSQL side of a failover (C12's generation bump, without promoting the
/// replica): a leader that finds the server's identity (system, timeline) different from
/// the one stored retires every key by bumping the generation; readers follow the
/// heartbeat to the new keys, so nothing cached under the old server is served.
#[test]
fn a_changed_postgres_identity_bumps_the_generation() {
    let (ns, pool, cache, reflector) = namespace(&[]);
    let ids = items(3, "c12");
    warm(&pool, &cache, &ids);
    let generation = reflector.metric("lifeguard_reflector_generation", &[]);
    drop(reflector);
    // As if the stored identity were an old primary's.
    connect()
        .execute(
            "UPDATE reflector_it.lifeguard_reflector_leader SET pg_identity = 'old:00000001' \
             WHERE namespace = $1",
            &[&ns],
        )
        .unwrap();
    let loads_before = lifeguard_tests::cache::cache_metric(
        &cache,
        "lifeguard_cache_loads_total",
        &[("entity", "items")],
    );
    let reflector = ReflectorProcess::spawn(BIN, &ns, SCHEMA, &[]);
    reflector.wait_leading(Duration::from_secs(20));
    assert_eq!(
        reflector.metric("lifeguard_reflector_generation", &[]),
        generation + 1.0
    );
    assert_eq!(
        reflector.metric(
            "lifeguard_reflector_generation_bumps_total",
            &[("cause", "pg_identity")]
        ),
        1.0
    );
    // The warm keys are behind the old generation: the next reads load again.
    eventually(
        Duration::from_secs(5),
        "reads reload under the new generation",
        || {
            for id in &ids {
                let _ = cached_n(&pool, *id);
            }
            lifeguard_tests::cache::cache_metric(
                &cache,
                "lifeguard_cache_loads_total",
                &[("entity", "items")],
            ) >= loads_before + ids.len() as f64
        },
    );
}
