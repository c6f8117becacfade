//! Issue 21, "Measured under real faults": the primary-restart and replica-restart drills as
//! bounded tests. Coroutines call the pool in a loop with a generous deadline while a
//! scratch server restarts (`pg_ctl restart -m fast`); each test prints the calls, the
//! failures and the failure window, and asserts that calls fail only while the server is
//! really down (the primary) or not at all (reads that another server may serve).

use std::time::{Duration, Instant};

use lifeguard_core::pool::{Pool, PoolConfig, ReadOptions, ReadPreference, Role};
use lifeguard_core::Executor;
use lifeguard_tests::drill::Load;
use lifeguard_tests::pg::{connect_url, init};
use lifeguard_tests::pool::{cfg, metric, wait_healthy};
use lifeguard_tests::replica::ScratchPair;
use lifeguard_tests::scratch::{ScratchServer, StopMode};
use lifeguard_tests::unique_name;

const INTERVAL: Duration = Duration::from_millis(100);
/// Far longer than the outages here: a call given it must outlast them.
const DEADLINE: Duration = Duration::from_secs(5);
/// What a failure may trail the server's return by: a monitor sample and the replies
/// in flight.
const SLACK: Duration = Duration::from_millis(300);

fn config(primary: &str) -> PoolConfig {
    PoolConfig::new(cfg(primary))
        .monitor_interval(INTERVAL)
        .default_max_staleness(Duration::from_millis(500))
        .max_size(4)
        .name(unique_name("drill"))
}

fn ms(t0: Instant, t: Instant) -> u128 {
    t.saturating_duration_since(t0).as_millis()
}

/// Primary restarted under a write load: failures end when the server is back (none after
/// `up + SLACK`), and every write that began once the server was down, and so was not on
/// the wire when it went, waits for it and succeeds.
#[test]
fn primary_restart_drill() {
    init();
    let mut server = ScratchServer::start_new();
    connect_url(&server.url())
        .batch_execute("CREATE TABLE drill (id bigserial PRIMARY KEY, w int)")
        .expect("create the table");
    let pool = Pool::connect(config(&server.url())).expect("connect the pool");
    wait_healthy(&pool, Duration::from_secs(5));
    let writer = pool.clone();
    let load = Load::start(16, move |w| {
        let db = writer.primary().with_timeout(DEADLINE);
        db.execute("INSERT INTO drill (w) VALUES ($1)", &[&(w as i32)])
            .map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(500));
    let stop_began = Instant::now();
    server.stop(StopMode::Fast);
    let down = Instant::now();
    // A write that begins with the server down: nothing of it can be on the wire when the
    // server went, and its deadline outlasts the outage.
    let late = pool.clone();
    let late = may::go!(move || {
        let began = Instant::now();
        let result = late
            .primary()
            .with_timeout(DEADLINE)
            .execute("INSERT INTO drill (w) VALUES (-1)", &[]);
        (result, began.elapsed())
    });
    server.start();
    let up = Instant::now();
    std::thread::sleep(Duration::from_millis(1500));
    let report = load.stop();
    let (late, waited) = late.join().expect("the late writer panicked");
    let t0 = stop_began;
    println!(
        "primary restart: stop {} ms, down at {} ms, up at {} ms; {}",
        0,
        ms(t0, down),
        ms(t0, up),
        report.summary(t0)
    );
    println!("a write begun during the outage: {late:?} after {waited:?}");
    assert!(
        late.is_ok(),
        "a write begun during the outage failed: {late:?}"
    );
    let late: Vec<_> = report
        .failures()
        .into_iter()
        .filter(|o| o.ended > up + SLACK)
        .collect();
    assert!(
        late.is_empty(),
        "{} writes failed after the primary was back (first ended at {} ms: {:?})",
        late.len(),
        ms(t0, late[0].ended),
        late[0].error
    );
    let after = report.outcomes.iter().filter(|o| o.started > up + SLACK);
    assert!(after.count() > 100, "too few writes after the restart");
}

/// Replica restarted under `replica-preferred` reads, the primary healthy all along: not
/// one read fails.
#[test]
fn replica_restart_drill() {
    init();
    let mut pair = ScratchPair::start();
    let pool = Pool::connect(config(&pair.primary_url()).replica(cfg(&pair.replica_url())))
        .expect("connect the pool");
    wait_healthy(&pool, Duration::from_secs(10));
    let reader = pool.clone();
    let load = Load::start(16, move |_| {
        let db = reader
            .db(ReadOptions::new(ReadPreference::ReplicaPreferred))
            .with_timeout(DEADLINE);
        db.query_one("SELECT 1", &[]).map(|_| ())
    });
    std::thread::sleep(Duration::from_millis(500));
    let t0 = Instant::now();
    pair.stop_replica(StopMode::Fast);
    let down = Instant::now();
    pair.start_replica();
    let up = Instant::now();
    // Long enough for the monitor to see the replica healthy and reads to go back to it.
    std::thread::sleep(Duration::from_millis(1500));
    let report = load.stop();
    println!(
        "replica restart: down at {} ms, up at {} ms; {}",
        ms(t0, down),
        ms(t0, up),
        report.summary(t0)
    );
    assert!(report.outcomes.len() > 1000, "too few reads");
    assert!(
        report.failures().is_empty(),
        "reads failed with the primary healthy: {}",
        report.summary(t0)
    );
    // The drill did send reads to the primary while the replica was away, and they went
    // back to the replica after.
    let fallbacks = metric(
        &pool,
        "lifeguard_read_routed_total",
        &[("preference", "replica-preferred"), ("target", "primary")],
    );
    println!("{fallbacks} reads fell back to the primary");
    assert!(
        fallbacks > 0.0,
        "no read fell back: the replica never looked down"
    );
    let db = pool.db(ReadOptions::new(ReadPreference::ReplicaPreferred));
    db.query_one("SELECT 1", &[])
        .expect("a read after the drill");
    assert_eq!(db.served_by(), Some(Role::Replica));
}
