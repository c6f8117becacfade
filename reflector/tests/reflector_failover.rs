//! Reflector processes failing under a write burst: `kill -9` of the leader (C4), a leader
//! stopped until its session is ended and then resumed (C10), the leader's `LISTEN`
//! session terminated (C7), and the history checker over a long randomized run (C16).

mod common;

use std::time::{Duration, Instant};

use common::history::Workload;
use common::*;
use lifeguard_core::cache::Cache;
use lifeguard_core::pool::Pool;
use lifeguard_core::Executor;
use lifeguard_tests::cache::cached_pool_in;
use lifeguard_tests::pg::connect;
use lifeguard_tests::reflector::ReflectorProcess;

/// How long a standby takes over after the leader's process dies: the server ends the
/// session at once (its socket closes), and the standby tries every 200 ms here.
const FAILOVER: Duration = Duration::from_secs(3);

const FAST: [(&str, &str); 2] = [
    ("LIFEGUARD_REFLECTOR_RETRY_MS", "200"),
    ("LIFEGUARD_REFLECTOR_SESSION_TIMEOUT_MS", "2000"),
];

/// `n` reader pools, each with a cache of its own in namespace `ns`.
fn readers(ns: &str, n: usize) -> (Vec<Pool>, Vec<Cache>) {
    (0..n)
        .map(|_| cached_pool_in(ns, |c| c.staleness_bound(BOUND)))
        .unzip()
}

/// How many of the readers' reads the cache served.
fn served(caches: &[Cache]) -> u64 {
    caches.iter().map(|c| hits(c, "items")).sum::<f64>() as u64
}

/// C4: 1,000 warm keys, 20,000 updates from 8 writers, the leader killed with SIGKILL a
/// third of the way in. The standby leads within `FAILOVER`; no read is staler than
/// `FAILOVER + B`; after the drain every key equals its row.
#[test]
fn kill_9_of_the_leader_during_a_burst_loses_nothing() {
    let (ns, pool, cache, first) = namespace(&FAST);
    let second = ReflectorProcess::spawn(BIN, &ns, SCHEMA, &FAST);
    let ids = items(1000, "c4");
    warm(&pool, &cache, &ids);
    let first_epoch = first.wait_leading(Duration::from_secs(5));
    eventually(
        Duration::from_secs(5),
        "the second process stands by",
        || second.status().is_some_and(|s| s["role"] == "standby"),
    );
    let (read_pools, read_caches) = readers(&ns, 2);
    let killed_at = std::sync::Mutex::new(None);
    let verdict = Workload {
        keys: &ids,
        writers: 8,
        writes: 20_000,
        write_pool: &pool,
        read_pools: &read_pools,
        at_write: Some((
            7_000,
            Box::new(|| {
                first.signal("KILL");
                *killed_at.lock().unwrap() = Some(Instant::now());
            }),
        )),
    }
    .run(FAILOVER + BOUND);
    let killed_at = killed_at
        .into_inner()
        .unwrap()
        .expect("the leader was killed");
    let second_epoch = second.wait_leading(FAILOVER.saturating_sub(killed_at.elapsed()));
    assert!(second_epoch > first_epoch);
    eprintln!(
        "C4: {} writes, {} reads ({} from Redis), stalest read at least {:?} behind",
        verdict.writes,
        verdict.reads,
        served(&read_caches),
        verdict.max_staleness
    );
    assert!(
        verdict.stale.is_empty(),
        "stale reads: {:?}",
        &verdict.stale[..verdict.stale.len().min(5)]
    );
    assert!(verdict.lost_own.is_empty(), "{:?}", verdict.lost_own);
    drained(&second, Duration::from_secs(30));
    assert_coherent(&pool, &ids);
}

/// C10: the leader is stopped (SIGSTOP) until the server ends its silent session; the
/// standby takes over; resumed, the old leader finds its session gone and stands by, and
/// no value regresses.
#[test]
fn a_stopped_leader_is_replaced_and_stands_by_when_resumed() {
    let (ns, pool, cache, first) = namespace(&FAST);
    let second = ReflectorProcess::spawn(BIN, &ns, SCHEMA, &FAST);
    let ids = items(50, "c10");
    warm(&pool, &cache, &ids);
    let first_epoch = first.wait_leading(Duration::from_secs(5));
    first.signal("STOP");
    let stopped = Instant::now();
    let second_epoch = second.wait_leading(Duration::from_secs(10));
    let took = stopped.elapsed();
    eprintln!("C10: the standby led {took:?} after the leader stopped");
    assert!(second_epoch > first_epoch);
    for (i, id) in ids.iter().enumerate() {
        set_n(*id, i as i64 + 1);
    }
    first.signal("CONT");
    eventually(
        Duration::from_secs(10),
        "the resumed leader stands by",
        || first.status().is_some_and(|s| s["role"] != "leader"),
    );
    assert_eq!(second.leading_epoch(), Some(second_epoch));
    drained(&second, Duration::from_secs(10));
    assert_coherent(&pool, &ids);
    let fenced = first.metric("lifeguard_reflector_events_total", &[("result", "fenced")]);
    eprintln!(
        "C10: {} writes of the resumed leader were fenced",
        fenced as u64
    );
}

/// C7: the leader's session (its lock and its `LISTEN`) is terminated during a burst;
/// a leader takes over again, the polling catches up, nothing is lost.
#[test]
fn a_lost_listen_session_loses_no_update() {
    let (ns, pool, cache, reflector) = namespace(&FAST);
    let ids = items(200, "c7");
    warm(&pool, &cache, &ids);
    let epoch = reflector.wait_leading(Duration::from_secs(5));
    let (read_pools, _read_caches) = readers(&ns, 1);
    let app = format!("lifeguard-reflector {ns}");
    let verdict = Workload {
        keys: &ids,
        writers: 4,
        writes: 4_000,
        write_pool: &pool,
        read_pools: &read_pools,
        at_write: Some((
            1_500,
            Box::new(|| {
                let killed: i64 = connect()
                    .query_one(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
                        &[&app],
                    )
                    .unwrap()
                    .get(0);
                assert!(killed >= 1, "no reflector session to terminate");
            }),
        )),
    }
    .run(FAILOVER + BOUND);
    assert!(reflector.wait_leading(Duration::from_secs(5)) > epoch);
    assert!(
        verdict.stale.is_empty(),
        "{:?}",
        &verdict.stale[..verdict.stale.len().min(5)]
    );
    drained(&reflector, Duration::from_secs(20));
    assert_coherent(&pool, &ids);
}

/// C16: a randomized run of writers and cached readers (about 60 s with
/// `LIFEGUARD_HISTORY_WRITES=60000`); no cached read is staler than `B` and every writer
/// reads its own writes.
#[test]
fn the_history_checker_finds_no_read_older_than_the_bound() {
    let (ns, pool, cache, reflector) = namespace(&[]);
    let ids = items(300, "c16");
    warm(&pool, &cache, &ids);
    let writes = std::env::var("LIFEGUARD_HISTORY_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12_000);
    let (read_pools, read_caches) = readers(&ns, 3);
    let verdict = Workload {
        keys: &ids,
        writers: 6,
        writes,
        write_pool: &pool,
        read_pools: &read_pools,
        at_write: None,
    }
    .run(BOUND);
    eprintln!(
        "C16: {} writes, {} reads ({} from Redis), stalest read at least {:?} behind",
        verdict.writes,
        verdict.reads,
        served(&read_caches),
        verdict.max_staleness
    );
    assert!(verdict.reads > 1000, "too few reads to mean anything");
    assert!(
        verdict.stale.is_empty(),
        "{:?}",
        &verdict.stale[..verdict.stale.len().min(5)]
    );
    assert!(
        verdict.lost_own.is_empty(),
        "{:?}",
        &verdict.lost_own[..verdict.lost_own.len().min(5)]
    );
    drained(&reflector, Duration::from_secs(20));
    assert_coherent(&pool, &ids);
}

/// G3 across a leader's death with no standby: changes committed while no reflector runs
/// are replayed from the stored checkpoint by the next leader (one that started at the
/// present would leave the warm keys stale for their whole TTL).
#[test]
fn the_next_leader_replays_from_the_checkpoint() {
    let (ns, pool, cache, first) = namespace(&FAST);
    let ids = items(20, "replay");
    warm(&pool, &cache, &ids);
    // The inserts are behind the checkpoint once a pass after them has been stored.
    drained(&first, Duration::from_secs(10));
    first.signal("KILL");
    for id in &ids {
        set_n(*id, 5);
    }
    let second = ReflectorProcess::spawn(BIN, &ns, SCHEMA, &FAST);
    second.wait_leading(Duration::from_secs(10));
    drained(&second, Duration::from_secs(10));
    let hits_before = hits(&cache, "items");
    assert_coherent(&pool, &ids);
    assert_eq!(
        hits(&cache, "items") - hits_before,
        ids.len() as f64,
        "served from Redis"
    );
}
