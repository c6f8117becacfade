//! Issue 21, "dirty-session detection by substring": a statement that changes the session
//! (`SET`, `SET ROLE`, `set_config(.., false)`, a session advisory lock) sent through the
//! pool's shared autocommit path runs on a leased connection that is closed afterwards, so
//! no caller pipelined on the pool's shared connections ever sees the change, before or
//! after it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{connect, init};
use lifeguard_tests::pool::{cfg, metric};
use lifeguard_tests::{primary_url, unique_name, wait_for};

/// What a session shows of the changes the tests make.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    application_name: String,
    search_path: String,
    user: String,
}

const SEEN_SQL: &str = "SELECT current_setting('application_name'), \
     current_setting('search_path'), current_user::text";

fn seen(db: &impl Executor) -> Seen {
    let row = db.query_one(SEEN_SQL, &[]).expect("read the session");
    Seen {
        application_name: row.get(0),
        search_path: row.get(1),
        user: row.get(2),
    }
}

fn pool(size: usize) -> Pool {
    Pool::connect(
        PoolConfig::new(cfg(&primary_url()))
            .max_size(size)
            .name(unique_name("session")),
    )
    .expect("connect the pool")
}

fn closed_for_session_state(pool: &Pool) -> f64 {
    metric(
        pool,
        "lifeguard_pool_connections_closed_total",
        &[("reason", "session_state")],
    )
}

/// What every connection of `pool` shows, each leased at once so none is read twice.
fn every_connection(pool: &Pool, size: usize) -> Vec<Seen> {
    let leases: Vec<_> = (0..size)
        .map(|_| pool.lease_primary().expect("lease"))
        .collect();
    leases.iter().map(|l| seen(l.connection())).collect()
}

/// Sixteen callers read their session on a two-connection pool while one caller sets
/// `application_name` (with `SET` and with `set_config(.., false)`), `search_path` and the
/// role through the same pool: no reader ever sees a change, and afterwards no connection
/// of the pool carries one. Without the lease, the readers pipelined behind each change on
/// its shared connection see it (and `set_config` was not even noticed as a change).
#[test]
fn session_changes_never_reach_other_callers() {
    init();
    let role = unique_name("lg_sess_role");
    let admin = connect();
    admin
        .batch_execute(&format!("CREATE ROLE {role}"))
        .expect("create the role");
    let pool = pool(2);
    let baseline = seen(&pool);
    let changes = [
        "SET application_name = 'leaked_by_set'".to_owned(),
        "SET search_path TO leaked_schema".to_owned(),
        format!("SET ROLE {role}"),
        "SELECT set_config('application_name', 'leaked_by_set_config', false)".to_owned(),
    ];

    let stop = Arc::new(AtomicBool::new(false));
    let observed: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let reads = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let readers: Vec<_> = (0..16)
        .map(|_| {
            let (pool, stop, observed, reads) =
                (pool.clone(), stop.clone(), observed.clone(), reads.clone());
            let baseline = baseline.clone();
            may::go!(move || {
                while !stop.load(Ordering::Relaxed) {
                    let now = seen(&pool);
                    reads.fetch_add(1, Ordering::Relaxed);
                    if now != baseline {
                        observed.lock().unwrap().push(now);
                    }
                    // A breath between reads: under back-to-back readers a lease on this
                    // small pool (a transaction's too) now and then waits out the whole
                    // acquire timeout, which is the pool's queueing and not this test's
                    // subject.
                    may::coroutine::sleep(Duration::from_micros(500));
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < Duration::from_secs(2) {
        for sql in &changes {
            if sql.starts_with("SELECT") {
                pool.query(sql, &[]).expect(sql);
            } else {
                pool.batch_execute(sql).expect(sql);
            }
        }
        rounds += 1;
    }
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.join().expect("a reader");
    }
    let observed = observed.lock().unwrap().clone();
    let reads = reads.load(Ordering::Relaxed);
    println!(
        "{rounds} rounds of changes, {reads} reads, {} saw a change",
        observed.len()
    );
    assert!(
        rounds >= 3 && reads >= 100,
        "too little ran: {rounds} rounds, {reads} reads"
    );
    assert!(
        observed.is_empty(),
        "{} of {reads} reads saw another caller's session change, e.g. {:?}",
        observed.len(),
        observed.first()
    );
    for s in every_connection(&pool, 2) {
        assert_eq!(s, baseline, "a connection of the pool kept a change");
    }
    assert!(
        closed_for_session_state(&pool) >= (rounds * changes.len()) as f64,
        "each change retires its connection"
    );
    pool.close();
    admin
        .batch_execute(&format!("DROP ROLE {role}"))
        .expect("drop the role");
}

/// A session advisory lock taken by a statement that then fails leaves no tag to notice it
/// by; the pool decided before sending that the statement changes the session, so its
/// connection is closed and the lock goes with it. Statements that only look like session
/// changes (a table named `temperature`, `SET LOCAL` inside a request) stay on shared
/// connections; a caller's own lease keeps its session state while it holds it.
#[test]
fn failed_lock_is_released_and_lookalikes_stay_shared() {
    init();
    let pool = pool(2);
    let key: i64 = 0x5e55_0000 + i64::from(std::process::id() % 0xffff);
    let err = pool
        .query(
            "SELECT pg_advisory_lock($1), 1 / (random() * 0)::int",
            &[&key],
        )
        .expect_err("division by zero");
    assert!(!matches!(err, Error::Connection(_)), "{err}");
    let other = connect();
    let freed = wait_for(Duration::from_secs(3), || {
        let row = other
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .expect("try the lock");
        row.get::<_, bool>(0).then_some(())
    });
    assert!(freed.is_some(), "the pool kept a session advisory lock");
    other
        .query_one("SELECT pg_advisory_unlock($1)", &[&key])
        .expect("unlock");
    let after_lock = closed_for_session_state(&pool);
    assert_eq!(after_lock, 1.0, "the lock's connection was retired");

    let table = unique_name("temperature");
    pool.batch_execute(&format!("CREATE TABLE {table} (temp int)"))
        .expect("create");
    pool.execute(&format!("INSERT INTO {table} (temp) VALUES (1)"), &[])
        .expect("insert");
    pool.query(
        "SELECT set_config('application_name', 'only_this_request', true)",
        &[],
    )
    .expect("a local set_config");
    pool.batch_execute(&format!("DROP TABLE {table}"))
        .expect("drop");
    assert_eq!(
        closed_for_session_state(&pool),
        after_lock,
        "no lasting change, no retired connection"
    );

    let lease = pool.lease_primary().expect("lease");
    lease
        .batch_execute("SET application_name = 'my_lease'")
        .expect("set on the lease");
    assert_eq!(seen(&lease).application_name, "my_lease");
    drop(lease);
    assert_eq!(closed_for_session_state(&pool), after_lock + 1.0);
    pool.close();
}
