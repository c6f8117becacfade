//! The reflector on a Redis Cluster of the test's own (three masters): it keeps the keys
//! coherent on every node, and a restart of a master other than the one holding the
//! heartbeat bumps the generation.

mod common;

use std::time::Duration;

use common::*;
use lifeguard_core::cache::key::heartbeat_key;
use lifeguard_core::cache::redis::key_slot;
use lifeguard_tests::cache::cached_pool_on;
use lifeguard_tests::redis_cluster::LocalCluster;
use lifeguard_tests::reflector::ReflectorProcess;
use lifeguard_tests::unique_name;

#[test]
fn a_restarted_master_bumps_the_generation() {
    setup();
    let mut cluster = LocalCluster::start();
    let ns = unique_name("rcl");
    let (pool, cache) = cached_pool_on(&cluster.url(), &ns, |c| c.staleness_bound(BOUND));
    let reflector = ReflectorProcess::spawn_on(BIN, &ns, SCHEMA, &cluster.url(), &[]);
    reflector.wait_leading(Duration::from_secs(20));
    wait_for_heartbeat(&pool, &cache);
    let ids = items(30, "cluster");
    warm(&pool, &cache, &ids);
    for id in &ids {
        set_n(*id, 1);
    }
    eventually(BOUND, "refreshed on every node", || {
        ids.iter().all(|id| cached_n(&pool, *id) == Some(1))
    });
    for (i, port) in cluster.ports().to_vec().into_iter().enumerate() {
        let keys: u64 = cluster.cli(port, &["DBSIZE"]).parse().unwrap();
        assert!(keys > 0, "node {i} holds keys");
    }
    let generation = reflector.metric("lifeguard_reflector_generation", &[]);
    // A master other than the heartbeat's: the heartbeat script cannot see its restart,
    // the leader's check of every master must.
    let hb_slot = key_slot(heartbeat_key(&ns).as_bytes());
    let ports = cluster.ports().to_vec();
    let hb_port = cluster.owner_of(hb_slot, ports[0]);
    let other = ports.iter().position(|p| *p != hb_port).unwrap();
    cluster.restart(other);
    eventually(Duration::from_secs(10), "the restart is seen", || {
        reflector.metric("lifeguard_reflector_generation", &[]) == generation + 1.0
    });
    assert!(reflector.metric("lifeguard_reflector_redis_resets_total", &[]) >= 1.0);
    for id in &ids {
        set_n(*id, 2);
    }
    eventually(BOUND, "reads see the database", || {
        ids.iter().all(|id| cached_n(&pool, *id) == Some(2))
    });
}
