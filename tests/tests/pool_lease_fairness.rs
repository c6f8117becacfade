//! Issue 21: a caller that needs a whole connection (a transaction, a lease, a statement
//! that changes the session) gets one on a small pool that shared reads keep busy without
//! pause, within about the time one connection's in-flight reads take to drain, instead of
//! waiting out the acquire timeout.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::init;
use lifeguard_tests::pool::cfg;
use lifeguard_tests::{primary_url, unique_name};

/// Shared readers that never pause.
const READERS: usize = 16;
/// How long any one exclusive acquire may take: far above a point read's drain time on a
/// loaded 2-core machine, far below the acquire timeout.
const FAIR_WAIT: Duration = Duration::from_millis(500);
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(2);

/// What a caller needing a whole connection does.
#[derive(Debug, Clone, Copy)]
enum Whole {
    Transaction,
    Lease,
    /// Runs on a lease that is retired afterwards, so each one makes the pool open anew.
    SessionChange,
}

/// What the exclusive callers saw.
#[derive(Debug, Default)]
struct Outcome {
    done: usize,
    timeouts: usize,
    worst: Duration,
    reads: u64,
    /// The longest one shared read took.
    worst_read: Duration,
}

/// Runs `rounds` exclusive calls of `whole` one after another while `READERS` coroutines
/// read back to back through a pool of `max_size` connections; stops early at the second
/// timeout (each costs the whole acquire timeout).
fn contend(max_size: usize, whole: Whole, rounds: usize) -> Outcome {
    init();
    let pool = Pool::connect(
        PoolConfig::new(cfg(&primary_url()))
            .max_size(max_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .name(unique_name("lease_fairness")),
    )
    .expect("connect the pool");
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicU64::new(0));
    let readers: Vec<_> = (0..READERS)
        .map(|_| {
            let (pool, stop, reads) = (pool.clone(), stop.clone(), reads.clone());
            may::go!(move || {
                let mut worst = Duration::ZERO;
                while !stop.load(Ordering::Relaxed) {
                    let started = Instant::now();
                    pool.query("SELECT 1", &[]).expect("a shared read");
                    worst = worst.max(started.elapsed());
                    reads.fetch_add(1, Ordering::Relaxed);
                }
                worst
            })
        })
        .collect();
    let exclusive = {
        let pool = pool.clone();
        may::go!(move || {
            let mut out = Outcome::default();
            // Started with the readers, on a pool with no connection yet: both line up
            // for the first ones.
            for _ in 0..rounds {
                let started = Instant::now();
                let result = match whole {
                    Whole::Transaction => pool.transaction(|tx| tx.execute("SELECT 1", &[])),
                    Whole::Lease => pool
                        .lease_primary()
                        .and_then(|l| l.execute("SELECT 1", &[])),
                    Whole::SessionChange => pool.execute("SET application_name = 'x'", &[]),
                };
                out.worst = out.worst.max(started.elapsed());
                match result {
                    Ok(_) => out.done += 1,
                    Err(Error::PoolTimeout(_)) => out.timeouts += 1,
                    Err(e) => panic!("{whole:?}: {e}"),
                }
                if out.timeouts >= 2 {
                    break;
                }
            }
            out
        })
    };
    let mut out = exclusive.join().expect("the exclusive caller");
    stop.store(true, Ordering::Relaxed);
    for r in readers {
        out.worst_read = out.worst_read.max(r.join().expect("a reader"));
    }
    out.reads = reads.load(Ordering::Relaxed);
    println!("max_size {max_size}, {whole:?}: {out:?}");
    out
}

/// Neither side waits long: not the exclusive caller for the readers, nor the readers
/// for the exclusive caller, which must not take a freed slot back before the readers it
/// woke have had their turn on it.
fn assert_fair(out: &Outcome, rounds: usize) {
    assert_eq!(out.timeouts, 0, "starved: {out:?}");
    assert_eq!(out.done, rounds);
    assert!(out.worst < FAIR_WAIT, "waited too long: {out:?}");
    assert!(
        out.worst_read < FAIR_WAIT,
        "a read waited too long: {out:?}"
    );
    assert!(
        out.reads >= rounds as u64,
        "the readers hardly ran: {out:?}"
    );
}

#[test]
fn transactions_are_not_starved_by_shared_reads() {
    let out = contend(2, Whole::Transaction, 200);
    assert_fair(&out, 200);
}

#[test]
fn leases_are_not_starved_by_shared_reads() {
    let out = contend(2, Whole::Lease, 200);
    assert_fair(&out, 200);
}

#[test]
fn session_changes_are_not_starved_by_shared_reads() {
    let out = contend(2, Whole::SessionChange, 100);
    assert_fair(&out, 100);
}

/// With one connection and no other slot to keep shared, the lease takes the busy one and
/// waits only for the reads already on it; between two leases the readers get their turn.
#[test]
fn a_lease_gets_the_only_connection_under_load() {
    let out = contend(1, Whole::Transaction, 100);
    assert_fair(&out, 100);
}
