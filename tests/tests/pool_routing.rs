//! Replica routing of the pool (spec `pool.md` §2.5, §2.6, tests P1–P9, P21, P22).
//!
//! Most tests use the shared primary/replica pair. Tests that pause replay (or that assert
//! where a read lands, which a paused replica would change) hold [`exclusive`], a lock
//! shared by every such test of this binary, and a pause is always undone by a drop guard.
//! Tests that break replication itself run on a [`ScratchPair`].

use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lifeguard_core::pg::Connection;
use lifeguard_core::pool::{
    ConsistencyToken, NodeState, Pool, PoolConfig, ReadOptions, ReadPreference, Role,
};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{connect, connect_url, init, scratch_table};
use lifeguard_tests::pool::{cfg, metric, wait_healthy, Writer};
use lifeguard_tests::replica::ScratchPair;
use lifeguard_tests::scratch::free_port;
use lifeguard_tests::{primary_url, psql, replica_url, try_psql, unique_name, wait_for};

const INTERVAL: Duration = Duration::from_millis(100);
const BOUND: Duration = Duration::from_millis(500);
const HOUR: Duration = Duration::from_secs(3600);

// ---------------------------------------------------------------- helpers --

/// Serializes the tests of this binary that pause the shared replica or depend on it
/// replaying.
fn exclusive() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

fn port_of(url: &str) -> i32 {
    i32::from(cfg(url).get_port())
}

/// A pool over `primary` and `replica` with a fast monitor (100 ms) and a 500 ms bound.
fn config(primary: &str, replica: &str) -> PoolConfig {
    PoolConfig::new(cfg(primary))
        .replica(cfg(replica))
        .monitor_interval(INTERVAL)
        .default_max_staleness(BOUND)
        .name(unique_name("rt"))
}

fn shared_pool() -> Pool {
    init();
    Pool::connect(config(&primary_url(), &replica_url())).expect("connect the pool")
}

fn opts(pref: ReadPreference) -> ReadOptions {
    ReadOptions::new(pref)
}

/// `(pg_is_in_recovery(), inet_server_port())` of the server that ran the query.
fn where_ran(e: &impl Executor) -> lifeguard_core::Result<(bool, i32)> {
    let row = e.query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[])?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

fn replica_state(pool: &Pool) -> NodeState {
    pool.health().replicas[0].1
}

fn pg_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// Pauses WAL replay on a replica; resumes it when dropped (also on panic).
struct Replay {
    url: String,
    paused: bool,
}

impl Replay {
    fn new(url: &str) -> Replay {
        Replay {
            url: url.to_owned(),
            paused: false,
        }
    }

    fn paused(url: &str) -> Replay {
        let mut r = Replay::new(url);
        r.pause();
        r
    }

    fn pause(&mut self) {
        psql(&self.url, "SELECT pg_wal_replay_pause()");
        self.paused = true;
    }

    fn resume(&mut self) {
        psql(&self.url, "SELECT pg_wal_replay_resume()");
        self.paused = false;
    }
}

impl Drop for Replay {
    fn drop(&mut self) {
        // Always, whatever `paused` says: the shared replica must replay after this test.
        let _ = try_psql(&self.url, "SELECT pg_wal_replay_resume()");
    }
}

/// A small deterministic generator (xorshift) for the randomized loops; the seed is printed.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0x9E37_79B9)
            | 1;
        println!("rng seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x % n
    }
}

// ----------------------------------------------------------------- tests --

/// P1: with a healthy replica, default reads run on it.
#[test]
fn p1_default_reads_go_to_the_replica() {
    let _g = exclusive();
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    let replica_port = port_of(&replica_url());
    for _ in 0..20 {
        let db = pool.db(ReadOptions::default());
        assert_eq!(where_ran(&db).unwrap(), (true, replica_port));
        assert_eq!(db.served_by(), Some(Role::Replica));
        // The pool itself routes reads with the default options too.
        assert_eq!(where_ran(&pool).unwrap(), (true, replica_port));
    }
    let routed = metric(
        &pool,
        "lifeguard_read_routed_total",
        &[("target", "replica"), ("reason", "eligible")],
    );
    assert!(routed >= 40.0, "routed to replica: {routed}");
}

/// P2: `Primary` (and `PrimaryPreferred` with a healthy primary) always reads the primary.
#[test]
fn p2_primary_preference_always_reads_the_primary() {
    let _g = exclusive();
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    let primary_port = port_of(&primary_url());
    for _ in 0..10 {
        for pref in [ReadPreference::Primary, ReadPreference::PrimaryPreferred] {
            let db = pool.db(opts(pref));
            assert_eq!(where_ran(&db).unwrap(), (false, primary_port), "{pref}");
            assert_eq!(db.served_by(), Some(Role::Primary));
        }
        assert_eq!(where_ran(&pool.primary()).unwrap(), (false, primary_port));
    }
}

/// P3: a paused replica with a writing primary leaves the default bound; wider bounds
/// still admit it; after resuming it comes back only after the hysteresis streak.
#[test]
fn p3_staleness_bound_and_hysteresis() {
    let _g = exclusive();
    let admin = connect();
    let table = scratch_table(&admin, "id bigserial PRIMARY KEY, v int");
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    let (primary_port, replica_port) = (port_of(&primary_url()), port_of(&replica_url()));
    let node = pool.health().replicas[0].0.clone();
    let transitions = |from: &str, to: &str| {
        metric(
            &pool,
            "lifeguard_node_state_transitions_total",
            &[("node", &node), ("from", from), ("to", to)],
        )
    };
    let (hl0, lh0) = (
        transitions("healthy", "lagging"),
        transitions("lagging", "healthy"),
    );

    let mut replay = Replay::paused(&replica_url());
    let writer = Writer::start(&primary_url(), &table, Duration::from_millis(100));
    let paused_at = Instant::now();
    let flipped = wait_for(Duration::from_secs(5), || {
        let db = pool.db(ReadOptions::default());
        let (in_recovery, _) = where_ran(&db).ok()?;
        (!in_recovery).then(|| paused_at.elapsed())
    });
    let flipped = flipped.expect("default reads never left the paused replica");
    assert!(
        flipped < BOUND + INTERVAL * 2 + Duration::from_secs(1),
        "took {flipped:?} to leave the paused replica"
    );
    assert_eq!(replica_state(&pool), NodeState::Lagging);
    for _ in 0..5 {
        let db = pool.db(opts(ReadPreference::ReplicaPreferred));
        assert_eq!(where_ran(&db).unwrap(), (false, primary_port));
        match where_ran(&pool.db(opts(ReadPreference::Replica))) {
            Err(Error::NoEligibleNode(_)) => {}
            other => panic!("Replica read on a stale replica: {other:?}"),
        }
        let relaxed = pool.db(opts(ReadPreference::ReplicaPreferred).max_staleness(HOUR));
        assert_eq!(where_ran(&relaxed).unwrap(), (true, replica_port));
        let relaxed = pool.db(opts(ReadPreference::Replica).max_staleness(HOUR));
        assert_eq!(where_ran(&relaxed).unwrap(), (true, replica_port));
        std::thread::sleep(INTERVAL);
    }

    replay.resume();
    let resumed_at = Instant::now();
    let healthy = wait_for(Duration::from_secs(5), || {
        (replica_state(&pool) == NodeState::Healthy).then(|| resumed_at.elapsed())
    })
    .expect("the replica did not become healthy after resuming");
    // Three good samples in a row, 100 ms apart, so at least ~200 ms.
    assert!(
        healthy >= Duration::from_millis(150),
        "back to healthy after {healthy:?}: no hysteresis"
    );
    let db = pool.db(ReadOptions::default());
    assert_eq!(where_ran(&db).unwrap(), (true, replica_port));
    drop(writer);
    assert_eq!(transitions("healthy", "lagging") - hl0, 1.0);
    assert_eq!(transitions("lagging", "healthy") - lh0, 1.0);
    assert!(metric(&pool, "lifeguard_read_routed_total", &[("reason", "stale")]) >= 5.0);
}

/// P4: an idle primary does not make a caught-up replica look stale.
#[test]
fn p4_idle_primary_is_not_lag() {
    let _g = exclusive();
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    let node = pool.health().replicas[0].0.clone();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        assert_eq!(
            replica_state(&pool),
            NodeState::Healthy,
            "{:?}",
            pool.health()
        );
        std::thread::sleep(INTERVAL);
    }
    let staleness = metric(
        &pool,
        "lifeguard_replica_staleness_seconds",
        &[("node", &node)],
    );
    assert!(
        staleness < BOUND.as_secs_f64() / 2.0,
        "staleness {staleness}"
    );
    assert_eq!(
        metric(
            &pool,
            "lifeguard_node_state_transitions_total",
            &[("node", &node), ("to", "lagging")]
        ),
        0.0
    );
}

/// P5: a replica whose WAL receiver is disconnected (receive = replay, so the reference's
/// byte lag reads 0) is detected as lagging once the primary writes.
#[test]
fn p5_disconnected_wal_receiver_is_lagging() {
    init();
    let pair = ScratchPair::start();
    let admin = connect_url(&pair.primary_url());
    admin
        .batch_execute("CREATE TABLE w (id bigserial PRIMARY KEY, v int)")
        .unwrap();
    let pool = Pool::connect(config(&pair.primary_url(), &pair.replica_url())).unwrap();
    wait_healthy(&pool, Duration::from_secs(5));

    psql(
        &pair.replica_url(),
        "ALTER SYSTEM SET primary_conninfo = 'host=127.0.0.1 port=1'",
    );
    psql(&pair.replica_url(), "SELECT pg_reload_conf()");
    // The primary sees its WAL sender go away once the receiver restarts with the bad conninfo.
    let gone = wait_for(Duration::from_secs(10), || {
        try_psql(
            &pair.primary_url(),
            "SELECT count(*) FROM pg_stat_replication",
        )
        .ok()
        .filter(|n| n == "0")
    });
    assert!(gone.is_some(), "the WAL receiver did not disconnect");
    let writer = Writer::start(&pair.primary_url(), "w", Duration::from_millis(100));
    let started = Instant::now();
    let lagging = wait_for(Duration::from_secs(5), || {
        (replica_state(&pool) == NodeState::Lagging).then(|| started.elapsed())
    });
    let lagging = lagging.unwrap_or_else(|| panic!("not lagging: {:?}", pool.health()));
    assert!(
        lagging < BOUND + INTERVAL * 3 + Duration::from_secs(1),
        "{lagging:?}"
    );
    drop(writer);
    // Everything received was replayed: a receive-minus-replay monitor would see no lag.
    assert_eq!(
        psql(
            &pair.replica_url(),
            "SELECT pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn()"
        ),
        "t"
    );
    let db = pool.db(ReadOptions::default());
    assert_eq!(
        where_ran(&db).unwrap(),
        (false, i32::from(pair.primary_port()))
    );
    assert!(matches!(
        where_ran(&pool.db(opts(ReadPreference::Replica))),
        Err(Error::NoEligibleNode(_))
    ));
}

/// P6: a replica the monitor has never sampled is never used; one it cannot reach shows as
/// `Unreachable`.
#[test]
fn p6_only_sampled_replicas_are_used() {
    init();
    let dead = format!("postgres://postgres@127.0.0.1:{}/postgres", free_port());
    let pool = Pool::connect(config(&primary_url(), &dead)).unwrap();
    let primary_port = port_of(&primary_url());
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        let db = pool.db(ReadOptions::default());
        assert_eq!(where_ran(&db).unwrap(), (false, primary_port));
        match where_ran(&pool.db(opts(ReadPreference::Replica))) {
            Err(Error::NoEligibleNode(_)) => {}
            other => panic!("Replica read with no reachable replica: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let unreachable = wait_for(Duration::from_secs(3), || {
        (replica_state(&pool) == NodeState::Unreachable).then_some(())
    });
    assert!(unreachable.is_some(), "{:?}", pool.health());
    assert!(pool.health().is_degraded());

    // Right after start-up a real replica is not used before its first sample.
    let _g = exclusive();
    for _ in 0..5 {
        let pool = shared_pool();
        match where_ran(&pool.db(opts(ReadPreference::Replica))) {
            Err(Error::NoEligibleNode(_)) => {}
            Ok((true, _)) => assert_ne!(replica_state(&pool), NodeState::Unknown),
            other => panic!("unexpected first read: {other:?}"),
        }
    }
}

/// P6 (hung node): a replica that accepts TCP but never answers must not stop the other
/// replicas from being sampled (the spec gives each node its own monitor).
#[test]
fn p6_hung_replica_does_not_starve_the_monitor() {
    let _g = exclusive();
    init();
    // Bound but never accepted: the kernel completes the TCP handshake, nothing answers.
    let blackhole = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung = format!(
        "postgres://postgres@127.0.0.1:{}/postgres",
        blackhole.local_addr().unwrap().port()
    );
    let pool = Pool::connect(config(&primary_url(), &replica_url()).replica(cfg(&hung))).unwrap();
    let replica_port = port_of(&replica_url());
    let ok = wait_for(Duration::from_secs(5), || {
        (pool.health().replicas[0].1 == NodeState::Healthy).then_some(())
    });
    assert!(ok.is_some(), "{:?}", pool.health());
    let mut failures = Vec::new();
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        match where_ran(&pool.db(opts(ReadPreference::Replica))) {
            Ok(r) => assert_eq!(r, (true, replica_port)),
            Err(e) => failures.push(format!("{e} / {:?}", pool.health())),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        failures.is_empty(),
        "{} Replica reads failed while the healthy replica was up, e.g. {}",
        failures.len(),
        failures[0]
    );
}

/// P7: read-your-writes through a consistency token, with replay paused and resumed.
#[test]
fn p7_read_your_writes_token() {
    const ITERATIONS: i64 = 1_000;
    let _g = exclusive();
    let admin = connect();
    let table = scratch_table(&admin, "id bigint PRIMARY KEY, v int");
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    let replica_port = port_of(&replica_url());
    let select = format!("SELECT v FROM {table} WHERE id = $1");
    let insert = format!("INSERT INTO {table} (id, v) VALUES ($1, 1)");

    let mut replay = Replay::paused(&replica_url());
    let db = pool.db(ReadOptions::default());
    db.execute(&insert, &[&0i64]).unwrap();
    let token = db.token().unwrap().expect("a token after a write");
    let reader = pool.db(ReadOptions::default().min_lsn(token));
    assert!(reader.query_opt(&select, &[&0i64]).unwrap().is_some());
    assert_eq!(reader.served_by(), Some(Role::Primary));
    // The token survives its text form (the header).
    let parsed: ConsistencyToken = token.to_string().parse().unwrap();
    assert_eq!(parsed, token);

    replay.resume();
    let served = wait_for(Duration::from_secs(5), || {
        let reader = pool.db(ReadOptions::default().min_lsn(parsed));
        let row = reader.query_opt(&select, &[&0i64]).unwrap();
        assert!(row.is_some(), "token read missed the row");
        (reader.served_by() == Some(Role::Replica)).then_some(())
    });
    assert!(served.is_some(), "token never satisfied by the replica");
    let reader = pool.db(ReadOptions::default().min_lsn(parsed));
    assert_eq!(where_ran(&reader).unwrap(), (true, replica_port));

    // Random pause/resume; every write followed by a read with its token must see it
    // (the spec's property test: 1,000 iterations, zero violations).
    let mut rng = Rng::seeded();
    let (mut violations, mut on_replica) = (Vec::new(), 0);
    for i in 1..=ITERATIONS {
        match rng.below(3) {
            0 if !replay.paused => replay.pause(),
            1 if replay.paused => replay.resume(),
            _ => {}
        }
        // Every other write has its token read in the write's own flush.
        let writer = match i % 2 {
            0 => pool.db(ReadOptions::default()),
            _ => pool.db(ReadOptions::default()).prefetch_token(),
        };
        writer.execute(&insert, &[&i]).unwrap();
        let token = writer.token().unwrap().expect("token");
        std::thread::sleep(Duration::from_millis(rng.below(12)));
        // Half the reads may wait a little for the replica, so both paths are exercised.
        let wait = Duration::from_millis(rng.below(2) * 40);
        let reader = pool.db(ReadOptions::default().min_lsn(token).lsn_wait(wait));
        if reader.query_opt(&select, &[&i]).unwrap().is_none() {
            violations.push((i, reader.served_by(), replay.paused));
        }
        if reader.served_by() == Some(Role::Replica) {
            on_replica += 1;
        }
    }
    replay.resume();
    println!("token reads served by the replica: {on_replica}/{ITERATIONS}");
    assert!(
        violations.is_empty(),
        "read-your-writes violated: {violations:?}"
    );
}

/// P8: the token of the last write before an idle spell is reached by replay without any
/// further writes.
#[test]
fn p8_token_from_an_idle_primary_is_satisfiable() {
    let _g = exclusive();
    let admin = connect();
    let table = scratch_table(&admin, "id bigint PRIMARY KEY");
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    let db = pool.db(ReadOptions::default());
    db.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])
        .unwrap();
    let token = db.token().unwrap().expect("token");
    let replayed = wait_for(Duration::from_secs(5), || {
        let sql = format!(
            "SELECT pg_last_wal_replay_lsn() >= '{}'::pg_lsn",
            pg_lsn(token.lsn())
        );
        try_psql(&replica_url(), &sql).ok().filter(|v| v == "t")
    });
    assert!(replayed.is_some(), "replay never reached the token's LSN");
    let served = wait_for(Duration::from_secs(5), || {
        let reader = pool.db(ReadOptions::default().min_lsn(token));
        let found = reader
            .query_opt(&format!("SELECT 1 FROM {table} WHERE id = 1"), &[])
            .unwrap();
        assert!(found.is_some());
        (reader.served_by() == Some(Role::Replica)).then_some(())
    });
    assert!(served.is_some(), "the replica never satisfied {token}");
}

/// The primary's insert position, as a number.
fn insert_lsn(admin: &Connection) -> u64 {
    let row = admin
        .query_one(
            "SELECT (pg_current_wal_insert_lsn() - '0/0'::pg_lsn)::int8, \
             current_setting('wal_block_size')::int8",
            &[],
        )
        .unwrap();
    let (lsn, block): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(
        block, 8192,
        "the test sizes its records for 8 KiB WAL pages"
    );
    lsn as u64
}

/// P8, at a WAL page boundary: a write whose record ends exactly where a page ends leaves
/// the primary's insert position past the next page's header, where replay never gets
/// until another record comes. The token must still be satisfiable on an idle primary.
#[test]
fn p8_token_at_a_wal_page_boundary_is_satisfiable() {
    const PAGE: u64 = 8192;
    let _g = exclusive();
    let admin = connect();
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    // A non-transactional logical message is one WAL record of a size we choose.
    let emit = "SELECT pg_logical_emit_message(false, 'lifeguard-test', repeat('x', $1::int4))";
    let emitted_end = |len: i32| -> u64 {
        let sql = format!("SELECT (({emit}) - '0/0'::pg_lsn)::int8");
        admin.query_one(&sql, &[&len]).unwrap().get::<_, i64>(0) as u64
    };
    let room = |lsn: u64| PAGE - lsn % PAGE;
    let mut overhead = None;
    let mut exercised = None;
    for _ in 0..20 {
        let at = insert_lsn(&admin);
        if room(at) < 1024 {
            emitted_end(1024);
            continue;
        }
        let Some(extra) = overhead else {
            // 304: a multiple of 8 long enough for the same length form as the sized one.
            overhead = Some(emitted_end(304) - at - 304);
            continue;
        };
        let len = i32::try_from(room(at) - extra).unwrap();
        let db = pool.db(ReadOptions::default());
        // In a transaction, so the pool takes it for a write; without an xid, its commit
        // adds no record after the message.
        db.transaction(|tx| tx.execute(emit, &[&len])).unwrap();
        let token = db.token().unwrap().expect("token");
        let after = insert_lsn(&admin);
        if after % PAGE == 24 && after - token.lsn() <= 24 {
            exercised = Some(token);
            break;
        }
        // Another record slipped in between (or the overhead is off): measure again.
        overhead = None;
    }
    let token = exercised.expect("no record ended on a page boundary in 20 attempts");
    let served = wait_for(Duration::from_secs(5), || {
        let reader = pool.db(ReadOptions::default().min_lsn(token));
        reader.query_one("SELECT 1", &[]).unwrap();
        (reader.served_by() == Some(Role::Replica)).then_some(())
    });
    assert!(
        served.is_some(),
        "the replica never satisfied {token}, taken on a page boundary"
    );
}

/// P9: a token read waits (bounded) for the replica: it times out to the primary, or is
/// served by the replica when replay resumes within the wait.
#[test]
fn p9_bounded_lsn_wait() {
    let _g = exclusive();
    let admin = connect();
    let table = scratch_table(&admin, "id bigint PRIMARY KEY");
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    let select = format!("SELECT 1 FROM {table} WHERE id = $1");
    let mut replay = Replay::paused(&replica_url());
    let write = |id: i64| {
        let db = pool.db(ReadOptions::default());
        db.execute(&format!("INSERT INTO {table} VALUES ($1)"), &[&id])
            .unwrap();
        db.token().unwrap().expect("token")
    };

    // Staleness is not the obstacle here (1 h bound): only the token is.
    let t1 = write(1);
    let reader = pool.db(ReadOptions::default()
        .max_staleness(HOUR)
        .min_lsn(t1)
        .lsn_wait(Duration::from_millis(300)));
    let started = Instant::now();
    assert!(reader.query_opt(&select, &[&1i64]).unwrap().is_some());
    let took = started.elapsed();
    assert_eq!(reader.served_by(), Some(Role::Primary));
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(1500),
        "timed-out wait took {took:?}"
    );

    let t2 = write(2);
    let url = replica_url();
    let resumer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(100));
        psql(&url, "SELECT pg_wal_replay_resume()");
    });
    let reader = pool.db(ReadOptions::default()
        .max_staleness(HOUR)
        .min_lsn(t2)
        .lsn_wait(Duration::from_secs(2)));
    let started = Instant::now();
    assert!(reader.query_opt(&select, &[&2i64]).unwrap().is_some());
    let took = started.elapsed();
    resumer.join().unwrap();
    replay.paused = false;
    assert_eq!(reader.served_by(), Some(Role::Replica), "after {took:?}");
    assert!(
        took < Duration::from_millis(1500),
        "satisfied wait took {took:?}"
    );
    assert!(
        metric(
            &pool,
            "lifeguard_consistency_wait_duration_seconds_count",
            &[("outcome", "timeout")]
        ) >= 1.0
    );
    assert!(
        metric(
            &pool,
            "lifeguard_consistency_wait_duration_seconds_count",
            &[("outcome", "satisfied")]
        ) >= 1.0
    );
}

/// P21: a transaction's statements share one connection; a read-only transaction runs on
/// the replica and refuses writes with SQLSTATE 25006.
#[test]
fn p21_transactions_are_pinned() {
    let _g = exclusive();
    let admin = connect();
    let table = scratch_table(&admin, "id bigint PRIMARY KEY");
    let pool = shared_pool();
    wait_healthy(&pool, Duration::from_secs(5));
    let on_replica = wait_for(Duration::from_secs(5), || {
        try_psql(&replica_url(), &format!("SELECT count(*) FROM {table}")).ok()
    });
    assert!(on_replica.is_some(), "table never replicated");
    let pid_sql = "SELECT pg_backend_pid()";

    let db = pool.db(ReadOptions::default());
    let pids = db
        .transaction(|tx| {
            let mut pids = Vec::new();
            for i in 0..5i64 {
                pids.push(tx.query_one(pid_sql, &[])?.try_get::<_, i32>(0)?);
                tx.execute(&format!("INSERT INTO {table} VALUES ($1)"), &[&i])?;
            }
            pids.push(tx.query_one(pid_sql, &[])?.try_get::<_, i32>(0)?);
            Ok(pids)
        })
        .unwrap();
    assert!(pids.windows(2).all(|w| w[0] == w[1]), "{pids:?}");

    let replica_port = port_of(&replica_url());
    let reader = pool.db(ReadOptions::default());
    let seen = reader
        .read_only_transaction(|tx| {
            let mut seen = Vec::new();
            for _ in 0..5 {
                let row = tx.query_one(
                    "SELECT pg_backend_pid(), pg_is_in_recovery(), inet_server_port()",
                    &[],
                )?;
                seen.push((
                    row.try_get::<_, i32>(0)?,
                    row.try_get::<_, bool>(1)?,
                    row.try_get::<_, i32>(2)?,
                ));
            }
            Ok(seen)
        })
        .unwrap();
    assert!(seen.iter().all(|s| *s == seen[0]), "{seen:?}");
    assert_eq!((seen[0].1, seen[0].2), (true, replica_port));
    assert_eq!(reader.served_by(), Some(Role::Replica));

    let err = pool
        .db(ReadOptions::default())
        .read_only_transaction(|tx| tx.execute(&format!("INSERT INTO {table} VALUES (99)"), &[]))
        .unwrap_err();
    assert_eq!(err.sqlstate(), Some("25006"), "{err}");
}

/// P22: when no replica is eligible and the primary is saturated (a request in flight on
/// every connection), at most `fallback_max_inflight` fallback reads run on the primary at
/// once; the others queue within their deadline and only then fail with `NoEligibleNode`.
/// (While the primary has room, fallback reads need no unit: the replica-restart drill in
/// `pool_fault_drills.rs`.)
#[test]
fn p22_fallback_budget() {
    let _g = exclusive();
    let admin = connect();
    let table = scratch_table(&admin, "id bigserial PRIMARY KEY, v int");
    init();
    let pool = Pool::connect(
        config(&primary_url(), &replica_url())
            .max_size(10)
            .fallback_max_inflight(4),
    )
    .unwrap();
    wait_healthy(&pool, Duration::from_secs(5));
    let _replay = Replay::paused(&replica_url());
    let _writer = Writer::start(&primary_url(), &table, Duration::from_millis(50));
    let stale = wait_for(Duration::from_secs(5), || {
        matches!(
            where_ran(&pool.db(opts(ReadPreference::Replica))),
            Err(Error::NoEligibleNode(_))
        )
        .then_some(())
    });
    assert!(stale.is_some(), "the paused replica never went stale");

    // Saturate the primary: three statements in flight per connection, all the time.
    let busy = Arc::new(AtomicBool::new(true));
    let saturating: Vec<_> = (0..30)
        .map(|_| {
            let (pool, busy) = (pool.clone(), busy.clone());
            may::go!(move || {
                while busy.load(Ordering::Relaxed) {
                    let _ = pool.primary().execute("SELECT pg_sleep(0.02)", &[]);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));

    let marker = unique_name("fallback");
    let sql = format!("SELECT pg_sleep(0.05), pg_is_in_recovery() /* {marker} */");
    // Watch the primary for concurrent fallback reads.
    let watching = Arc::new(AtomicBool::new(true));
    let peak = Arc::new(AtomicUsize::new(0));
    let watcher = {
        let (watching, peak) = (watching.clone(), peak.clone());
        let count = format!(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' \
             AND query LIKE '%{marker}%' AND pid <> pg_backend_pid()"
        );
        let conn: Connection = connect();
        std::thread::spawn(move || {
            while watching.load(Ordering::Relaxed) {
                let n: i64 = conn.query_one(&count, &[]).unwrap().get(0);
                peak.fetch_max(n as usize, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let deadline = Duration::from_millis(400);
    let (ok, rejected, hasty) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let handles: Vec<_> = (0..100)
        .map(|_| {
            let (pool, sql) = (pool.clone(), sql.clone());
            let (ok, rejected, hasty) = (ok.clone(), rejected.clone(), hasty.clone());
            may::go!(move || {
                let started = Instant::now();
                let db = pool
                    .db(opts(ReadPreference::ReplicaPreferred))
                    .with_timeout(deadline);
                match db.query_one(&sql, &[]) {
                    Ok(row) => {
                        assert!(!row.get::<_, bool>(1), "served by a stale replica");
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(Error::NoEligibleNode(_) | Error::Timeout(_)) => {
                        rejected.fetch_add(1, Ordering::Relaxed);
                        // Queued until the deadline, not refused at once.
                        if started.elapsed() < deadline - Duration::from_millis(50) {
                            hasty.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => panic!("unexpected error: {e}"),
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("reader coroutine panicked");
    }
    watching.store(false, Ordering::Relaxed);
    watcher.join().unwrap();
    busy.store(false, Ordering::Relaxed);
    for h in saturating {
        h.join().expect("saturating coroutine panicked");
    }
    let (ok, rejected) = (ok.load(Ordering::Relaxed), rejected.load(Ordering::Relaxed));
    let peak = peak.load(Ordering::Relaxed);
    println!("fallback: {ok} served, {rejected} rejected, peak {peak} on the primary");
    assert_eq!(ok + rejected, 100);
    assert!(ok >= 4, "only {ok} fallback reads served");
    assert!(rejected >= 20, "only {rejected} rejected");
    assert!(
        peak <= 4,
        "{peak} fallback reads ran on the primary at once"
    );
    assert!(peak >= 1, "the watcher never saw a fallback read");
    assert_eq!(hasty.load(Ordering::Relaxed), 0, "rejections did not queue");
    assert!(metric(&pool, "lifeguard_read_fallback_rejected_total", &[]) >= 1.0);
}

/// A staleness bound tighter than two monitor samples is refused with a clear message.
#[test]
fn config_rejects_unverifiable_staleness_bound() {
    init();
    let base = PoolConfig::new(cfg(&primary_url())).monitor_interval(Duration::from_millis(250));
    let err = base
        .clone()
        .default_max_staleness(Duration::from_millis(400))
        .validate()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("default_max_staleness") && text.contains("twice the monitor interval"),
        "{text}"
    );
    assert!(matches!(
        Pool::connect(
            base.clone()
                .default_max_staleness(Duration::from_millis(100))
        ),
        Err(Error::Config(_))
    ));
    base.clone()
        .default_max_staleness(Duration::from_millis(500))
        .validate()
        .unwrap();
    assert!(base.clone().max_size(0).validate().is_err());
    assert!(base.min_idle(20).max_size(10).validate().is_err());
}

/// Tokens as carried in headers: parse, print, merge several values.
#[test]
fn token_header_parse_and_merge() {
    let a: ConsistencyToken = "v1.7300000000000000001.1.16B374D848".parse().unwrap();
    assert_eq!(a.to_string(), "v1.7300000000000000001.1.16B374D848");
    assert_eq!((a.timeline(), a.lsn()), (1, 0x16_B374_D848));
    let merged = ConsistencyToken::merge_all([
        "v1.7300000000000000001.1.16B374D848, v1.7300000000000000001.1.16B374D849",
        " v1.7300000000000000001.1.10 ",
    ])
    .unwrap()
    .unwrap();
    assert_eq!(merged.lsn(), 0x16_B374_D849);
    // A newer timeline wins whatever its LSN.
    let newer = ConsistencyToken::merge_all([
        "v1.7300000000000000001.2.1",
        "v1.7300000000000000001.1.FFFFFF",
    ])
    .unwrap()
    .unwrap();
    assert_eq!((newer.timeline(), newer.lsn()), (2, 1));
    assert_eq!(ConsistencyToken::merge_all(["", " , "]).unwrap(), None);
    for bad in ["v1.1.1", "v2.1.1.0", "v1.1.1.xyz", "v1.1.1.0, junk"] {
        let err = ConsistencyToken::merge_all([bad]).unwrap_err();
        assert!(err.to_string().contains("consistency token"), "{err}");
    }
    // Options merge tokens too.
    let o = ReadOptions::default()
        .min_lsn(ConsistencyToken::new(7, 1, 10))
        .min_lsn(ConsistencyToken::new(7, 1, 5));
    assert_eq!(o.min_lsn.unwrap().lsn(), 10);
}
