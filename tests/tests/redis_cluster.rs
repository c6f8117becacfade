//! The Redis client and the cache against a Redis Cluster of three masters of the test's
//! own: keys spread over the nodes, pipelines and scripts split by node with their replies
//! in order, `ASK` and `MOVED` while a slot migrates and after, and cached reads served
//! from the cluster.

use std::sync::Once;
use std::time::{Duration, Instant};

use lifeguard_core::cache::key::{epoch_key, heartbeat_key, lease_key, KeySpace};
use lifeguard_core::cache::redis::{
    cmd, key_slot, Pipeline, RedisClient, RedisConfig, Script, Value,
};
use lifeguard_core::cache::{install_change_capture, scripts, Cache, CacheConfig, CaptureOptions};
use lifeguard_core::error::RedisErrorKind;
use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord};
use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::{Error, Executor, LifeModel, LifeRecord};
use lifeguard_tests::cache::{beat, cache_metric};
use lifeguard_tests::redis_cluster::LocalCluster;
use lifeguard_tests::{pg, pool::cfg, primary_url, unique_name};

const WAIT: Duration = Duration::from_secs(5);

fn client(cluster: &LocalCluster) -> RedisClient {
    RedisClient::new(RedisConfig::from_url(&cluster.url()).expect("the cluster URL parses"))
}

fn deadline() -> Instant {
    Instant::now() + WAIT
}

/// How many keys each node holds.
fn keys_per_node(cluster: &LocalCluster) -> Vec<u64> {
    cluster
        .ports()
        .iter()
        .map(|&p| cluster.cli(p, &["DBSIZE"]).parse().expect("DBSIZE"))
        .collect()
}

/// How often `command` has reached the node on `port`, run or refused (a redirect is a
/// refusal), from `INFO commandstats`.
fn calls(cluster: &LocalCluster, port: u16, command: &str) -> u64 {
    let stats = cluster.cli(port, &["INFO", "commandstats"]);
    let Some(line) = stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:")))
    else {
        return 0;
    };
    line.split(',')
        .filter_map(|field| field.split_once('='))
        .filter(|(name, _)| *name == "calls" || *name == "rejected_calls")
        .filter_map(|(_, n)| n.trim().parse::<u64>().ok())
        .sum()
}

fn bulk(text: &str) -> Value {
    Value::BulkString(text.as_bytes().to_vec())
}

#[test]
fn keys_spread_over_every_node_and_slots_match_the_servers() {
    let cluster = LocalCluster::start();
    let redis = client(&cluster);
    for i in 0..100 {
        let key = format!("spread:{i}");
        redis
            .query_until::<()>(cmd("SET").arg(&key).arg(i), deadline())
            .unwrap();
    }
    for i in 0..100 {
        let back: i64 = redis
            .query_until(cmd("GET").arg(format!("spread:{i}")), deadline())
            .unwrap();
        assert_eq!(back, i);
    }
    let held = keys_per_node(&cluster);
    assert_eq!(held.iter().sum::<u64>(), 100, "{held:?}");
    assert!(
        held.iter().all(|&n| n > 0),
        "every node holds keys: {held:?}"
    );
    for key in [
        "foo",
        "spread:7",
        "{user1000}.following",
        "lg:{shop}:hb",
        "a{}b",
    ] {
        let server: u16 = cluster
            .cli(cluster.ports()[0], &["CLUSTER", "KEYSLOT", key])
            .parse()
            .unwrap();
        assert_eq!(key_slot(key.as_bytes()), server, "{key}");
    }
    // Commands without keys go to some node; errors stay typed.
    let pong: String = redis.query(&cmd("PING")).unwrap();
    assert_eq!(pong, "PONG");
    let e = redis
        .query::<i64>(cmd("INCR").arg("spread:1").arg("extra"))
        .unwrap_err();
    assert!(
        matches!(&e, Error::Redis(r) if r.kind == RedisErrorKind::Server),
        "{e}"
    );
    // One connection per node at least, counted over the nodes.
    assert_eq!(redis.reconnects(), 0, "first connections are no reconnects");
}

#[test]
fn a_pipeline_over_many_slots_returns_replies_in_order() {
    let cluster = LocalCluster::start();
    let redis = client(&cluster);
    let mut set = Pipeline::new();
    for i in 0..300 {
        set.cmd("SET").arg(format!("order:{i}")).arg(i);
    }
    let replies = redis.pipeline_until(&set, deadline()).unwrap();
    assert_eq!(replies.len(), 300);
    assert!(replies.iter().all(|r| *r == Value::Okay), "{replies:?}");
    // Reads in another order, a keyless command, and an error reply in the middle.
    let mut get = Pipeline::new();
    for i in (0..300).rev() {
        get.cmd("GET").arg(format!("order:{i}"));
        if i == 150 {
            get.cmd("PING");
            get.cmd("HGET").arg("order:150").arg("f");
        }
    }
    let replies = redis.pipeline_until(&get, deadline()).unwrap();
    assert_eq!(replies.len(), 302);
    let mut replies = replies.into_iter();
    for i in (0..300).rev() {
        assert_eq!(replies.next(), Some(bulk(&i.to_string())), "order:{i}");
        if i == 150 {
            assert_eq!(replies.next(), Some(Value::SimpleString("PONG".into())));
            assert!(
                matches!(replies.next(), Some(Value::ServerError(e)) if e.code() == "WRONGTYPE")
            );
        }
    }
    assert!(redis
        .pipeline_until(&Pipeline::new(), deadline())
        .unwrap()
        .is_empty());
    let mut atomic = Pipeline::new();
    atomic.atomic().cmd("GET").arg("order:1");
    assert!(redis.pipeline_until(&atomic, deadline()).is_err());
}

#[test]
fn scripts_load_and_run_on_the_node_of_their_keys() {
    let cluster = LocalCluster::start();
    let redis = client(&cluster);
    // A script no node has seen (its text is unique to this run).
    let script = Script::new(&format!(
        "-- {}\nredis.call('INCRBY', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[2]) or 'none'",
        unique_name("script")
    ));
    for &port in cluster.ports() {
        assert_eq!(cluster.cli(port, &["SCRIPT", "EXISTS", script.hash()]), "0");
    }
    // Keys on every node; each call's two keys share a hash tag.
    let tags: Vec<String> = (0..30).map(|i| format!("{{tag{i}}}")).collect();
    for tag in &tags {
        let (n, name) = (format!("{tag}:n"), format!("{tag}:name"));
        redis
            .query_until::<()>(cmd("SET").arg(&name).arg(tag), deadline())
            .unwrap();
        let got: String = redis
            .eval_until(
                &script,
                &[n.as_bytes(), name.as_bytes()],
                &[b"2"],
                deadline(),
            )
            .unwrap();
        assert_eq!(&got, tag);
    }
    for &port in cluster.ports() {
        assert_eq!(
            cluster.cli(port, &["SCRIPT", "EXISTS", script.hash()]),
            "1",
            "loaded on node {port}"
        );
    }
    // A node that loses its scripts loads them again on NOSCRIPT.
    cluster.cli(cluster.ports()[1], &["SCRIPT", "FLUSH"]);
    let calls: Vec<_> = tags
        .iter()
        .map(|tag| {
            (
                vec![
                    format!("{tag}:n").into_bytes(),
                    format!("{tag}:name").into_bytes(),
                ],
                vec![b"3".to_vec()],
            )
        })
        .collect();
    let replies = redis.eval_each_until(&script, &calls, deadline()).unwrap();
    assert_eq!(replies, tags.iter().map(|t| bulk(t)).collect::<Vec<_>>());
    cluster.cli(cluster.ports()[2], &["SCRIPT", "FLUSH"]);
    for tag in &tags {
        let n: i64 = redis
            .query_until(cmd("GET").arg(format!("{tag}:n")), deadline())
            .unwrap();
        assert_eq!(n, 5);
        let key = format!("{tag}:n");
        let _: String = redis
            .eval_until(
                &script,
                &[key.as_bytes(), key.as_bytes()],
                &[b"0"],
                deadline(),
            )
            .unwrap();
    }
    // Keys of two slots in one script: the server's CROSSSLOT, typed.
    let e = redis
        .eval_until::<String>(&script, &[b"{a}x", b"{b}x"], &[b"1"], deadline())
        .unwrap_err();
    assert!(
        matches!(&e, Error::Redis(r) if r.code.as_deref() == Some("CROSSSLOT")),
        "{e}"
    );
}

#[test]
fn ask_then_moved_follow_a_slot_migrated_by_hand() {
    let cluster = LocalCluster::start();
    let redis = client(&cluster);
    let key = "{moving}:a";
    let slot = key_slot(key.as_bytes());
    redis
        .query_until::<()>(cmd("SET").arg(key).arg("before"), deadline())
        .unwrap();
    // Some keys elsewhere, for pipelines that mix slots.
    for i in 0..20 {
        redis
            .query_until::<()>(cmd("SET").arg(format!("other:{i}")).arg(i), deadline())
            .unwrap();
    }
    // Let the background load of the slot map finish.
    std::thread::sleep(Duration::from_millis(300));
    let from = cluster.owner_of(slot, cluster.ports()[0]);
    let to = *cluster.ports().iter().find(|&&p| p != from).unwrap();
    let (from_id, to_id) = (cluster.node_id(from), cluster.node_id(to));
    let slot_text = slot.to_string();
    assert_eq!(
        cluster.cli(
            to,
            &["CLUSTER", "SETSLOT", &slot_text, "IMPORTING", &from_id]
        ),
        "OK"
    );
    assert_eq!(
        cluster.cli(
            from,
            &["CLUSTER", "SETSLOT", &slot_text, "MIGRATING", &to_id]
        ),
        "OK"
    );
    let moved = cluster.cli(
        from,
        &[
            "MIGRATE",
            "127.0.0.1",
            &to.to_string(),
            "",
            "0",
            "5000",
            "KEYS",
            key,
        ],
    );
    assert_eq!(moved, "OK");
    // Migrating: the old owner answers ASK for the key it no longer has.
    let asking = calls(&cluster, to, "asking");
    for _ in 0..2 {
        let got: String = redis.query_until(cmd("GET").arg(key), deadline()).unwrap();
        assert_eq!(got, "before");
    }
    assert_eq!(
        calls(&cluster, to, "asking"),
        asking + 2,
        "each read is asked again: ASK does not change the map"
    );
    // Finished: every node assigns the slot to its new owner, and the old one answers MOVED.
    for &port in cluster.ports() {
        assert_eq!(
            cluster.cli(port, &["CLUSTER", "SETSLOT", &slot_text, "NODE", &to_id]),
            "OK"
        );
    }
    let mut pipe = Pipeline::new();
    pipe.cmd("GET").arg("other:3");
    pipe.cmd("GET").arg(key);
    pipe.cmd("GET").arg("other:4");
    let gets_before = calls(&cluster, from, "get");
    let replies = redis.pipeline_until(&pipe, deadline()).unwrap();
    assert_eq!(replies, [bulk("3"), bulk("before"), bulk("4")]);
    let others_on_from = ["other:3", "other:4"]
        .iter()
        .filter(|k| cluster.owner_of(key_slot(k.as_bytes()), from) == from)
        .count() as u64;
    assert_eq!(
        calls(&cluster, from, "get"),
        gets_before + others_on_from + 1,
        "the key's GET went to the old owner once, and was moved"
    );
    // From then on the key's commands go to the new owner directly.
    let gets_before = calls(&cluster, from, "get");
    redis
        .query_until::<()>(cmd("SET").arg(key).arg("after"), deadline())
        .unwrap();
    let got: String = redis.query_until(cmd("GET").arg(key), deadline()).unwrap();
    assert_eq!(got, "after");
    let script = Script::new("return redis.call('GET', KEYS[1])");
    let got: String = redis
        .eval_until(&script, &[key.as_bytes()], &[], deadline())
        .unwrap();
    assert_eq!(got, "after");
    assert_eq!(calls(&cluster, from, "get"), gets_before, "no more detours");
    // A client that never saw the old map agrees.
    let fresh = client(&cluster);
    let got: String = fresh.query_until(cmd("GET").arg(key), deadline()).unwrap();
    assert_eq!(got, "after");
}

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "parts",
    schema_name = "cache_cluster",
    cache(ttl_ms = 60000)
)]
pub struct Part {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub name: String,
}

fn part_table() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let conn = pg::connect();
        conn.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS cache_cluster;
             CREATE TABLE IF NOT EXISTS cache_cluster.parts (id bigint PRIMARY KEY, name text NOT NULL)",
        )
        .expect("table");
        install_change_capture::<Part>(&conn, &CaptureOptions::new().schema("cache_cluster"))
            .expect("capture");
    });
}

#[test]
fn the_cache_serves_hits_from_the_cluster() {
    let cluster = LocalCluster::start();
    pg::init();
    part_table();
    let ns = unique_name("ns");
    // A generous call timeout: the first calls of a test on a busy machine open the
    // connections to three nodes.
    let cache = Cache::new(
        client(&cluster),
        CacheConfig::new(&ns).call_timeout(Duration::from_millis(500)),
    );
    let pool = Pool::connect(PoolConfig::new(cfg(&primary_url())).max_size(4))
        .expect("pool")
        .with_cache(cache.clone());
    // The scripts' keys share a slot: a row with its lease, the heartbeat with the epoch.
    let space = KeySpace::new(&ns, 7, 0, "cache_cluster.parts");
    let row = space.row("", "i:42");
    assert_eq!(
        key_slot(row.as_bytes()),
        key_slot(lease_key(&row).as_bytes())
    );
    let (hb, epoch) = (heartbeat_key(&ns), epoch_key(&ns));
    assert_eq!(key_slot(hb.as_bytes()), key_slot(epoch.as_bytes()));
    beat(&cache, 0, u64::MAX, Duration::from_secs(60));
    let conn = pg::connect();
    let base = i64::from(std::process::id()) * 1_000_000;
    let ids: Vec<i64> = (base..base + 30).collect();
    for &id in &ids {
        conn.execute(
            "INSERT INTO cache_cluster.parts (id, name) VALUES ($1, 'first')
             ON CONFLICT (id) DO UPDATE SET name = 'first'",
            &[&id],
        )
        .expect("insert");
    }
    let entity = [("entity", "parts")];
    for &id in &ids {
        let read = Part::find_by_id(id).one(&pool).unwrap().unwrap();
        assert_eq!(read.name, "first");
    }
    assert_eq!(
        cache_metric(&cache, "lifeguard_cache_loads_total", &entity),
        30.0,
        "first connections to the nodes cost no bypass"
    );
    assert_eq!(
        cache_metric(
            &cache,
            "lifeguard_cache_fills_total",
            &[("result", "stored")]
        ),
        30.0,
        "every fill script ran on its row's node"
    );
    // Changed behind the cache's back: what comes back is Redis's copy, from every node.
    conn.execute(
        "UPDATE cache_cluster.parts SET name = 'second' WHERE id >= $1 AND id < $2",
        &[&base, &(base + 30)],
    )
    .expect("update");
    for &id in &ids {
        let read = Part::find_by_id(id).one(&pool).unwrap().unwrap();
        assert_eq!(read.name, "first", "a hit");
    }
    let many = Part::find_each_by_id(&pool, &ids).unwrap();
    assert!(many
        .iter()
        .zip(&ids)
        .all(|(p, &id)| p.as_ref().is_some_and(|p| p.id == id && p.name == "first")));
    assert_eq!(
        cache_metric(&cache, "lifeguard_cache_loads_total", &entity),
        30.0
    );
    let held = keys_per_node(&cluster);
    assert!(held.iter().all(|&n| n > 0), "rows on every node: {held:?}");
    // An ORM write drops its row's keys on the row's node.
    let mut record = Part::find_by_id(ids[0])
        .one(&pool)
        .unwrap()
        .unwrap()
        .into_record();
    record.name = Set("third".into());
    record.update(&pool).unwrap();
    let read = Part::find_by_id(ids[0]).one(&pool).unwrap().unwrap();
    assert_eq!(read.name, "third");
    // The reflector's run id check: `INFO server` routed beside the heartbeat reads the
    // node that runs the heartbeat script.
    let info: String = cache
        .redis()
        .query_for_key(hb.as_bytes(), cmd("INFO").arg("server"))
        .unwrap();
    let run_id = |info: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix("run_id:"))
            .map(|id| id.trim().to_owned())
            .unwrap()
    };
    let owner = cluster.owner_of(key_slot(hb.as_bytes()), cluster.ports()[0]);
    assert_eq!(
        run_id(&info),
        run_id(&cluster.cli(owner, &["INFO", "server"]))
    );
    let beat_with = |id: &str| -> i64 {
        cache
            .redis()
            .eval_until(
                scripts::heartbeat(),
                &[hb.as_bytes(), epoch.as_bytes()],
                &[b"1", b"1 0 0 0", b"60000", id.as_bytes()],
                deadline(),
            )
            .unwrap()
    };
    assert_eq!(beat_with(&run_id(&info)), 1);
    assert_eq!(beat_with("0123456789abcdef"), -1, "another server's run id");
    for &id in &ids {
        conn.execute("DELETE FROM cache_cluster.parts WHERE id = $1", &[&id])
            .expect("delete");
    }
}
