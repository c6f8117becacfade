//! Two reflectors splitting a namespace's outbox by key hash, each shard with its own
//! lock, epoch, checkpoint and heartbeat: both shards' keys are refreshed, and with one
//! shard gone readers bypass the cache, since part of it would go unguarded.

mod common;

use std::time::Duration;

use common::*;
use lifeguard_tests::cache::cached_pool_in;
use lifeguard_tests::reflector::ReflectorProcess;
use lifeguard_tests::unique_name;

#[test]
fn two_shards_share_the_work_and_the_bound() {
    setup();
    let ns = unique_name("rsh");
    let (pool, cache) = cached_pool_in(&ns, |c| c.staleness_bound(BOUND).reflector_shards(2));
    let shard = |i: &str| {
        ReflectorProcess::spawn(
            BIN,
            &ns,
            SCHEMA,
            &[
                ("LIFEGUARD_REFLECTOR_SHARDS", "2"),
                ("LIFEGUARD_REFLECTOR_SHARD", i),
                ("LIFEGUARD_REFLECTOR_RETRY_MS", "200"),
            ],
        )
    };
    let (first, second) = (shard("0"), shard("1"));
    first.wait_leading(Duration::from_secs(20));
    second.wait_leading(Duration::from_secs(20));
    wait_for_heartbeat(&pool, &cache);
    let ids = items(40, "shards");
    warm(&pool, &cache, &ids);
    for id in &ids {
        set_n(*id, 3);
    }
    eventually(BOUND, "every key refreshed", || {
        ids.iter().all(|id| cached_n(&pool, *id) == Some(3))
    });
    let refreshed = |r: &ReflectorProcess| {
        r.metric(
            "lifeguard_reflector_events_total",
            &[("result", "refreshed")],
        )
    };
    let (a, b) = (refreshed(&first), refreshed(&second));
    assert!(
        a > 0.0 && b > 0.0,
        "both shards refreshed keys: {a} and {b}"
    );
    assert!(a + b >= ids.len() as f64);
    // With shard 1 gone its keys are unguarded: reads bypass, and see the database.
    drop(second);
    for id in &ids {
        set_n(*id, 4);
    }
    eventually(BOUND, "reads see every change without shard 1", || {
        ids.iter().all(|id| cached_n(&pool, *id) == Some(4))
    });
    let _second = shard("1");
    let hits_before = hits(&cache, "items");
    eventually(Duration::from_secs(10), "the cache is used again", || {
        let _ = cached_n(&pool, ids[0]);
        hits(&cache, "items") > hits_before
    });
}
