//! The reflector against the real primary and Redis: refreshes and drops, the version and
//! epoch checks of its script (C3, C10's fencing), out-of-order commits (C8) and the
//! heartbeat bypass with every reflector stopped (C11).

mod common;

use std::time::{Duration, Instant};

use common::*;
use lifeguard_core::cache::key::{lease_key, KeySpace};
use lifeguard_core::cache::scripts;
use lifeguard_core::model::LifeModel;
use lifeguard_core::Executor;
use lifeguard_tests::cache::cache_metric;
use lifeguard_tests::pg::connect;

fn loads(cache: &lifeguard_core::cache::Cache, entity: &str) -> f64 {
    cache_metric(cache, "lifeguard_cache_loads_total", &[("entity", entity)])
}

#[test]
fn a_cached_key_is_refreshed_in_place_and_a_deleted_row_dropped() {
    let (_ns, pool, cache, _reflector) = namespace(&[]);
    let ids = items(2, "warm");
    warm(&pool, &cache, &ids);
    let loaded = loads(&cache, "items");
    set_n(ids[0], 7);
    let took = eventually(BOUND, "the refresh", || cached_n(&pool, ids[0]) == Some(7));
    assert_eq!(
        loads(&cache, "items"),
        loaded,
        "served from Redis, not reloaded"
    );
    connect()
        .execute("DELETE FROM reflector_it.items WHERE id = $1", &[&ids[1]])
        .unwrap();
    eventually(BOUND, "the drop", || cached_n(&pool, ids[1]).is_none());
    eprintln!("refreshed {took:?} after the commit");
}

#[test]
fn an_invalidate_mode_key_is_dropped_and_reloaded() {
    let (_ns, pool, cache, _reflector) = namespace(&[]);
    let id = items(1, "n")[0];
    connect()
        .execute("INSERT INTO reflector_it.notes VALUES ($1, 'a')", &[&id])
        .unwrap();
    let body = |pool| Note::find_by_id(id).one(pool).unwrap().map(|n| n.body);
    eventually(Duration::from_secs(5), "warming the note", || {
        let before = hits(&cache, "notes");
        let _ = body(&pool);
        hits(&cache, "notes") > before
    });
    let loaded = loads(&cache, "notes");
    connect()
        .execute(
            "UPDATE reflector_it.notes SET body = 'b' WHERE id = $1",
            &[&id],
        )
        .unwrap();
    eventually(BOUND, "the drop", || body(&pool).as_deref() == Some("b"));
    assert_eq!(
        loads(&cache, "notes"),
        loaded + 1.0,
        "dropped, then loaded again"
    );
}

/// C3 and the fencing half of C10, on the script itself: an older version never replaces
/// a newer one, a leader older than a key's last writer is fenced, a key not in Redis is
/// left absent but its lease is cleared.
#[test]
fn the_reflect_script_keeps_versions_and_epochs_monotone() {
    let (_pool, cache) = lifeguard_tests::cache::cached_pool(|c| c);
    let redis = cache.redis();
    let key = KeySpace::new(cache.config().get_namespace(), 1, 0, "t").row("", "i:1");
    let lease = lease_key(&key);
    let deadline = || Instant::now() + Duration::from_secs(5);
    let reflect = |epoch: &str, version: &str, payload: &str, op: &str| -> String {
        redis
            .eval_until(
                scripts::reflect(),
                &[key.as_bytes(), lease.as_bytes()],
                &[
                    epoch.as_bytes(),
                    version.as_bytes(),
                    payload.as_bytes(),
                    op.as_bytes(),
                ],
                deadline(),
            )
            .unwrap()
    };
    let stored = || -> Vec<Option<String>> {
        redis
            .query(
                lifeguard_core::cache::redis::cmd("HMGET")
                    .arg(&key)
                    .arg("v")
                    .arg("p"),
            )
            .unwrap()
    };
    redis
        .query::<()>(
            lifeguard_core::cache::redis::cmd("SET")
                .arg(&lease)
                .arg("tok"),
        )
        .unwrap();
    assert_eq!(reflect("1", "5", "x", "r"), "lease_cleared");
    assert_eq!(reflect("1", "5", "x", "r"), "skipped_inactive");
    assert_eq!(stored(), vec![None, None], "an absent key stays absent");
    redis
        .query::<()>(
            lifeguard_core::cache::redis::cmd("HSET")
                .arg(&key)
                .arg("v")
                .arg("5")
                .arg("p")
                .arg("five"),
        )
        .unwrap();
    assert_eq!(reflect("2", "4", "four", "r"), "rejected_version");
    assert_eq!(stored(), vec![Some("5".into()), Some("five".into())]);
    assert_eq!(reflect("2", "6", "six", "r"), "refreshed");
    assert_eq!(reflect("1", "9", "zombie", "r"), "fenced");
    assert_eq!(reflect("1", "9", "", "d"), "fenced");
    assert_eq!(stored(), vec![Some("6".into()), Some("six".into())]);
    assert_eq!(reflect("2", "7", "", "d"), "invalidated");
    assert_eq!(stored(), vec![None, None]);
}

/// C8: T1 takes the lower outbox id and commits late; T2 commits at once. T2's key is
/// refreshed while T1 runs, the checkpoint does not pass T1 before it commits, and T1's
/// key is refreshed after. A consumer with an `id > last` watermark would skip T1.
#[test]
fn an_out_of_order_commit_is_neither_lost_nor_waited_for() {
    let (ns, pool, cache, _reflector) = namespace(&[]);
    let ids = items(2, "ooo");
    warm(&pool, &cache, &ids);
    let t1 = connect();
    t1.batch_execute("BEGIN").unwrap();
    let t1_txid: String = t1
        .query_one("SELECT pg_current_xact_id()::text", &[])
        .unwrap()
        .get(0);
    t1.execute(
        "UPDATE reflector_it.items SET n = 1 WHERE id = $1",
        &[&ids[0]],
    )
    .unwrap();
    set_n(ids[1], 2);
    eventually(BOUND, "T2's refresh while T1 runs", || {
        cached_n(&pool, ids[1]) == Some(2)
    });
    std::thread::sleep(Duration::from_millis(500));
    let checkpoint: Option<String> = connect()
        .query_opt(
            "SELECT txid::text FROM reflector_it.lifeguard_reflector_checkpoint WHERE namespace = $1",
            &[&ns],
        )
        .unwrap()
        .map(|r| r.get(0));
    let passed = |c: &str| c.parse::<u64>().unwrap() > t1_txid.parse::<u64>().unwrap();
    assert!(
        !checkpoint.as_deref().is_some_and(passed),
        "the checkpoint {checkpoint:?} passed the running T1 ({t1_txid})"
    );
    assert_eq!(cached_n(&pool, ids[0]), Some(0), "T1 has not committed");
    t1.batch_execute("COMMIT").unwrap();
    eventually(BOUND, "T1's refresh after its commit", || {
        cached_n(&pool, ids[0]) == Some(1)
    });
}

/// C11: with every reflector stopped, reads bypass the cache within the heartbeat's life
/// and see the database; with one started again, they use the cache again.
#[test]
fn with_no_reflector_reads_bypass_within_the_bound() {
    let (ns, pool, cache, reflector) = namespace(&[]);
    let id = items(1, "hb")[0];
    warm(&pool, &cache, &[id]);
    assert!(reflector.terminate(), "a graceful shutdown exits 0");
    let stopped = Instant::now();
    // Until the heartbeat expires the value may be served; a change made now must be seen
    // within B however.
    set_n(id, 1);
    let bypass = || {
        cache_metric(
            &cache,
            "lifeguard_cache_bypass_total",
            &[("reason", "heartbeat_missing")],
        )
    };
    let before = bypass();
    eventually(BOUND, "reads see the change without a reflector", || {
        cached_n(&pool, id) == Some(1)
    });
    assert!(stopped.elapsed() <= BOUND);
    assert!(
        bypass() > before,
        "the reads bypassed the cache: {}",
        lifeguard_tests::pool::registry_text(cache.registry())
    );
    let reflector = lifeguard_tests::reflector::ReflectorProcess::spawn(BIN, &ns, SCHEMA, &[]);
    reflector.wait_leading(Duration::from_secs(20));
    let hits_before = hits(&cache, "items");
    eventually(Duration::from_secs(5), "the cache is used again", || {
        let _ = cached_n(&pool, id);
        hits(&cache, "items") > hits_before
    });
}

/// C14 (in part): a transaction of bulk statements sends one wake-up, and its changes are
/// reflected in batches within the bound.
#[test]
fn a_bulk_transaction_wakes_the_reflector_once() {
    let (_ns, pool, cache, _reflector) = namespace(&[]);
    let ids = items(5000, "bulk");
    warm(&pool, &cache, &ids[..50]);
    let listener = connect();
    listener.listen("lifeguard_outbox").unwrap();
    let writer = connect();
    writer
        .batch_execute("BEGIN")
        .and_then(|_| {
            writer.execute(
                "UPDATE reflector_it.items SET n = 8 WHERE id = ANY($1)",
                &[&ids],
            )
        })
        .and_then(|_| {
            writer.execute(
                "UPDATE reflector_it.items SET n = 9 WHERE id = ANY($1)",
                &[&ids],
            )
        })
        .unwrap();
    writer.batch_execute("COMMIT").unwrap();
    let committed = Instant::now();
    eventually(BOUND, "the bulk change is reflected", || {
        ids[..50].iter().all(|id| cached_n(&pool, *id) == Some(9))
    });
    eprintln!(
        "C14: 10,000 changes reflected {:?} after the commit",
        committed.elapsed()
    );
    std::thread::sleep(Duration::from_millis(200));
    let from_writer = listener
        .drain_notifications()
        .into_iter()
        .filter(|n| n.process_id == writer.process_id())
        .count();
    assert_eq!(from_writer, 1, "one wake-up per transaction");
}
