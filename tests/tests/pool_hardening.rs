//! Issue 21 defects of the pool: forged consistency tokens, deadlines of `simple_query` and
//! `batch_execute` on a request handle, and metric labels without addresses.

use std::time::{Duration, Instant};

use lifeguard_core::pool::{ConsistencyToken, Pool, PoolConfig, ReadOptions, ReadPreference, Role};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::init;
use lifeguard_tests::pool::{cfg, metric, metrics_text, wait_healthy};
use lifeguard_tests::replica::ScratchPair;
use lifeguard_tests::{primary_url, unique_name, wait_for};

fn rejected(pool: &Pool, reason: &str) -> f64 {
    metric(
        pool,
        "lifeguard_consistency_token_rejected_total",
        &[("reason", reason)],
    )
}

/// A token from another cluster is ignored (the read goes to the replica as if it carried
/// none); one far past the primary's WAL position reads the primary once at once, without
/// waiting for a replica that will never reach it; a genuine token is kept. Each rejection
/// is counted by reason.
#[test]
fn forged_consistency_tokens_claim_nothing() {
    init();
    let pair = ScratchPair::start();
    let pool = Pool::connect(
        PoolConfig::new(cfg(&pair.primary_url()))
            .replica(cfg(&pair.replica_url()))
            .monitor_interval(Duration::from_millis(100))
            .default_max_staleness(Duration::from_millis(500))
            .fallback_max_inflight(1)
            .name(unique_name("tokens")),
    )
    .expect("connect the pool");
    wait_healthy(&pool, Duration::from_secs(10));
    let real = wait_for(Duration::from_secs(5), || pool.current_token()).expect("a sample");
    let read = |token: ConsistencyToken, wait: Duration| {
        let db = pool.db(ReadOptions::new(ReadPreference::ReplicaPreferred)
            .min_lsn(token)
            .lsn_wait(wait));
        let started = Instant::now();
        db.query_one("SELECT 1", &[]).expect("the read");
        (db.served_by(), started.elapsed())
    };

    let foreign = ConsistencyToken::new(real.system_id() ^ 1, real.timeline(), real.lsn());
    let (by, _) = read(foreign, Duration::ZERO);
    assert_eq!(
        by,
        Some(Role::Replica),
        "a foreign token sent the read away"
    );
    assert_eq!(rejected(&pool, "foreign_system"), 1.0);

    let future = ConsistencyToken::new(real.system_id(), real.timeline(), u64::MAX >> 1);
    let (by, took) = read(future, Duration::from_secs(2));
    println!("a far-future token: {by:?} in {took:?}");
    assert_eq!(by, Some(Role::Primary));
    assert!(took < Duration::from_millis(500), "waited {took:?} for it");
    let later_timeline = ConsistencyToken::new(real.system_id(), real.timeline() + 1, 0);
    let (by, took) = read(later_timeline, Duration::from_secs(2));
    assert_eq!(by, Some(Role::Primary));
    assert!(took < Duration::from_millis(500), "waited {took:?} for it");
    assert_eq!(rejected(&pool, "future_lsn"), 2.0);
    // Nothing a replica-only read could be served with: it says so at once.
    let only = pool.db(ReadOptions::new(ReadPreference::Replica).min_lsn(future));
    assert!(matches!(
        only.query_one("SELECT 1", &[]),
        Err(Error::NoEligibleNode(_))
    ));

    let (by, _) = read(real, Duration::from_secs(2));
    assert_eq!(by, Some(Role::Replica), "a genuine token is routed on");
    assert_eq!(rejected(&pool, "future_lsn"), 3.0);
    assert_eq!(rejected(&pool, "foreign_system"), 1.0);
}

/// `simple_query` and `batch_execute` on a handle with a deadline end at it with
/// `Timeout`, and the pool is fine afterwards.
#[test]
fn simple_query_and_batch_execute_honour_the_deadline() {
    init();
    let pool = Pool::connect(PoolConfig::new(cfg(&primary_url())).name(unique_name("simple")))
        .expect("connect the pool");
    let deadline = Duration::from_millis(300);
    let db = || pool.primary().with_timeout(deadline);
    let started = Instant::now();
    let simple = db().simple_query("SELECT pg_sleep(5)");
    let took = started.elapsed();
    assert!(matches!(simple, Err(Error::Timeout(_))), "{simple:?}");
    assert!(took < Duration::from_secs(1), "simple_query took {took:?}");
    let started = Instant::now();
    let batch = db().batch_execute("SELECT 1; SELECT pg_sleep(5)");
    let took = started.elapsed();
    assert!(matches!(batch, Err(Error::Timeout(_))), "{batch:?}");
    assert!(took < Duration::from_secs(1), "batch_execute took {took:?}");
    db().batch_execute("SELECT 1")
        .expect("the pool after the timeouts");
}

/// Named servers carry their names as the `node` label of `/metrics`, not `host:port`;
/// labels that would merge two servers' series are refused.
#[test]
fn node_labels_keep_addresses_out_of_metrics() {
    init();
    let url = primary_url();
    let target = cfg(&url).display_target();
    let pool = Pool::connect(
        PoolConfig::new(cfg(&url))
            .primary_label("orders-primary")
            .name(unique_name("labels")),
    )
    .expect("connect the pool");
    wait_healthy(&pool, Duration::from_secs(5));
    pool.primary()
        .execute("SELECT 1", &[])
        .expect("a statement");
    let text = metrics_text(&pool);
    assert!(text.contains("node=\"orders-primary\""), "{text}");
    assert!(!text.contains(&target), "an address in the metrics: {text}");
    let named_twice = PoolConfig::new(cfg(&url))
        .primary_label("db")
        .replica_labeled(cfg(&url), "db");
    assert!(matches!(named_twice.validate(), Err(Error::Config(_))));
}
