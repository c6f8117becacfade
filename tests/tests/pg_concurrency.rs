//! Many coroutines pipelining on a few shared connections: every caller gets its own result
//! (or its own error), slow statements do not reorder fast ones, and deadlines and cancels end
//! only the statement they belong to.
//!
//! Needs the services: `scripts/services up && eval "$(scripts/services env)"`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeguard_core::pg::{Config, Connection, TransactionStatus};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{connect, in_coroutine_within};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// What one coroutine of the big test runs, derived from its index alone.
enum Job {
    /// `SELECT $1::int4, $2::text, repeat($2, $3)`.
    Echo { text: String, times: i32 },
    /// `SELECT $1::int4 / ($1::int4 - $1::int4)`: division by zero.
    DivZero,
    /// `SELECT $1::text::int4` with a text that is no number: the error names the text.
    BadCast { text: String },
}

fn job(i: usize) -> Job {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    for _ in 0..3 {
        rng.next();
    }
    match i % 20 {
        7 => Job::DivZero,
        13 => Job::BadCast {
            text: format!("not-a-number-{i}"),
        },
        _ => {
            let text = format!("<{i}:{}>", rng.next() % 1000);
            let times = if i % 500 == 3 {
                // ~100 KB: the reply spans several 64 KiB reads.
                (100_000 / text.len()) as i32 + 1
            } else if i % 50 == 1 {
                (2_000 + rng.next() % 8_000) as i32
            } else {
                (rng.next() % 40) as i32
            };
            Job::Echo { text, times }
        }
    }
}

/// Runs job `i` on `conn` and checks the result against the job's own parameters.
fn run_job(conn: &Connection, i: usize) -> Result<(), String> {
    let id = i as i32;
    match job(i) {
        Job::Echo { text, times } => {
            let row = conn
                .query_one(
                    "SELECT $1::int4, $2::text, repeat($2, $3)",
                    &[&id, &text, &times],
                )
                .map_err(|e| format!("job {i}: {e}"))?;
            let (got_id, got_text, got_rep): (i32, String, String) =
                (row.get(0), row.get(1), row.get(2));
            if got_id != id || got_text != text || got_rep != text.repeat(times as usize) {
                return Err(format!(
                    "job {i}: got ({got_id}, {got_text:?}, {} bytes), wanted ({id}, {text:?}, {} bytes)",
                    got_rep.len(),
                    text.len() * times as usize
                ));
            }
        }
        Job::DivZero => match conn.query("SELECT $1::int4 / ($1::int4 - $1::int4)", &[&id]) {
            Err(e) if e.sqlstate() == Some("22012") => {}
            other => return Err(format!("job {i}: wanted division by zero, got {other:?}")),
        },
        Job::BadCast { text } => match conn.query("SELECT $1::text::int4", &[&text]) {
            Err(e)
                if e.sqlstate() == Some("22P02")
                    && e.db_error().is_some_and(|db| db.message.contains(&text)) => {}
            other => {
                return Err(format!(
                    "job {i}: wanted 22P02 naming {text:?}, got {other:?}"
                ))
            }
        },
    }
    Ok(())
}

#[test]
fn ten_thousand_coroutines_share_four_connections() {
    const N: usize = 10_000;
    let conns: Arc<Vec<Connection>> = Arc::new((0..4).map(|_| connect()).collect());
    let started = Instant::now();
    let handles: Vec<_> = (0..N)
        .map(|i| {
            let conns = conns.clone();
            may::go!(move || {
                // Half pick the least loaded connection, half go round-robin.
                let conn = if i % 2 == 0 {
                    conns.iter().min_by_key(|c| c.in_flight()).unwrap()
                } else {
                    &conns[i % 4]
                };
                run_job(conn, i)
            })
        })
        .collect();
    let mut failures = Vec::new();
    for (i, h) in handles.into_iter().enumerate() {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push(format!("job {i} panicked")),
        }
    }
    eprintln!("{N} coroutines on 4 connections: {:?}", started.elapsed());
    assert!(
        failures.is_empty(),
        "{} of {N} jobs failed, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    for c in conns.iter() {
        assert!(!c.is_broken());
        assert_eq!(c.in_flight(), 0);
        c.query_one("SELECT 1", &[]).unwrap();
    }
}

#[test]
fn slow_query_does_not_corrupt_or_reorder_fast_ones() {
    let conn = Arc::new(connect());
    // Warm the statement cache so the fast queries pipeline straight behind the slow one.
    conn.query_one("SELECT $1::int4 * 2, $2::text", &[&0i32, &"x"])
        .unwrap();
    let fast = |conn: Arc<Connection>, i: i32| {
        may::go!(move || {
            let text = format!("fast-{i}-{}", "y".repeat((i % 97) as usize));
            let row = conn
                .query_one("SELECT $1::int4 * 2, $2::text", &[&i, &text])
                .map_err(|e| format!("{i}: {e}"))?;
            let (n, t): (i32, String) = (row.get(0), row.get(1));
            if n != i * 2 || t != text {
                return Err(format!("{i}: got ({n}, {t:?})"));
            }
            Ok(Instant::now())
        })
    };
    let before: Vec<_> = (0..500).map(|i| fast(conn.clone(), i)).collect();
    let slow = {
        let conn = conn.clone();
        may::go!(move || {
            let t0 = Instant::now();
            let row = conn
                .query_one(
                    "SELECT pg_sleep(0.5), $1::int4, $2::text",
                    &[&-7i32, &"slow"],
                )
                .unwrap();
            let (n, t): (i32, String) = (row.get(1), row.get(2));
            (n, t, t0.elapsed(), Instant::now())
        })
    };
    let after: Vec<_> = (500..1000).map(|i| fast(conn.clone(), i)).collect();
    let mut errors = Vec::new();
    for h in before.into_iter().chain(after) {
        match h.join().expect("fast coroutine panicked") {
            Ok(_) => {}
            Err(e) => errors.push(e),
        }
    }
    let (n, t, took, _) = slow.join().expect("slow coroutine panicked");
    assert_eq!((n, t.as_str()), (-7, "slow"));
    assert!(
        took >= Duration::from_millis(450),
        "pg_sleep(0.5) took {took:?}"
    );
    assert!(
        errors.is_empty(),
        "{} failed: {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    assert_eq!(conn.in_flight(), 0);
}

/// Behind four unanswered requests, new bytes wait for an answer before they go out. They
/// must still go out as answers arrive, in order, and a deadline must end a request that is
/// still waiting in the client as promptly as one the server is running.
#[test]
fn requests_held_back_behind_a_full_pipeline_go_out_as_answers_arrive() {
    let conn = Arc::new(connect());
    conn.query_one("SELECT pg_sleep(0), $1::int4", &[&0i32])
        .unwrap();
    // Six sleeps, so the fifth and sixth are queued while the server holds four.
    let sleepers: Vec<_> = (1..=6)
        .map(|i: i32| {
            let conn = conn.clone();
            may::go!(move || {
                let v: i32 = conn
                    .query_one("SELECT pg_sleep(0.15), $1::int4", &[&i])
                    .unwrap()
                    .get(1);
                v
            })
        })
        .collect();
    let c = conn.clone();
    let (timed, took) = in_coroutine_within(Duration::from_secs(10), move || {
        // Let the sleepers queue first, so this request waits behind them.
        may::coroutine::sleep(Duration::from_millis(20));
        let t0 = Instant::now();
        let r = c
            .timeout(Duration::from_millis(100))
            .query_one("SELECT $1::int4", &[&99i32]);
        (r, t0.elapsed())
    });
    assert!(matches!(timed, Err(Error::Timeout(_))), "got {timed:?}");
    assert!(took < Duration::from_millis(600), "timeout took {took:?}");
    for (k, h) in sleepers.into_iter().enumerate() {
        assert_eq!(h.join().expect("a sleeper failed"), k as i32 + 1);
    }
    // The abandoned request's answer is discarded when it comes; the connection carries on.
    let c = conn.clone();
    let v: i32 = in_coroutine_within(Duration::from_secs(10), move || {
        c.query_one("SELECT 7", &[]).unwrap().get(0)
    });
    assert_eq!(v, 7);
    assert!(!conn.is_broken());
    assert_eq!(conn.in_flight(), 0);
}

/// Whether backend `pid` is running a statement containing `pg_sleep`.
fn sleeping(admin: &Connection, pid: i32) -> bool {
    let n: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
            &[&pid],
        )
        .unwrap()
        .get(0);
    n > 0
}

#[test]
fn dropped_waiter_times_out_alone_and_its_statement_is_cancelled() {
    let conn = Arc::new(connect());
    let admin = Arc::new(connect());
    let pid = conn.process_id();
    let echo = |conn: Arc<Connection>, i: i32| {
        may::go!(move || {
            let v: i32 = conn
                .query_one("SELECT $1::int4 + 1000", &[&i])
                .unwrap()
                .get(0);
            assert_eq!(v, i + 1000);
        })
    };
    let before: Vec<_> = (0..50).map(|i| echo(conn.clone(), i)).collect();
    let timed = {
        let conn = conn.clone();
        may::go!(move || {
            let t0 = Instant::now();
            let r = conn
                .timeout(Duration::from_millis(50))
                .query("SELECT pg_sleep(1), $1::int4", &[&1i32]);
            (r, t0.elapsed())
        })
    };
    let after: Vec<_> = (50..100).map(|i| echo(conn.clone(), i)).collect();
    let (r, took) = timed.join().unwrap();
    assert!(matches!(r, Err(Error::Timeout(_))), "got {r:?}");
    assert!(took < Duration::from_millis(800), "timeout took {took:?}");
    for h in before.into_iter().chain(after) {
        h.join().expect("an untimed caller failed");
    }
    // The server statement was ended by its own statement_timeout, so the connection is free.
    let t0 = Instant::now();
    let c = conn.clone();
    let v: i32 = in_coroutine_within(Duration::from_secs(10), move || {
        c.query_one("SELECT 7", &[]).unwrap().get(0)
    });
    assert_eq!(v, 7);
    assert!(
        t0.elapsed() < Duration::from_millis(900),
        "next query waited {:?} for the abandoned pg_sleep(1)",
        t0.elapsed()
    );
    let a = admin.clone();
    let still = in_coroutine_within(Duration::from_secs(10), move || {
        let deadline = Instant::now() + Duration::from_millis(1500);
        loop {
            if !sleeping(&a, pid) {
                return false;
            }
            if Instant::now() > deadline {
                return true;
            }
            may::coroutine::sleep(Duration::from_millis(50));
        }
    });
    assert!(!still, "pg_sleep still running on backend {pid}");
    // The deadline was local to that one request: later untimed statements run unbounded.
    let c = conn.clone();
    in_coroutine_within(Duration::from_secs(10), move || {
        c.query("SELECT pg_sleep(0.2)", &[]).unwrap();
        let st: String = c.query_one("SHOW statement_timeout", &[]).unwrap().get(0);
        assert_eq!(st, "0");
    });
}

#[test]
fn timed_simple_query_on_shared_connection_is_cancelled() {
    let conn = Arc::new(connect());
    let c = conn.clone();
    let (r, took) = in_coroutine_within(Duration::from_secs(10), move || {
        let t0 = Instant::now();
        let r = c
            .timeout(Duration::from_millis(50))
            .simple_query("SELECT pg_sleep(2)");
        (r, t0.elapsed())
    });
    assert!(matches!(r, Err(Error::Timeout(_))), "got {r:?}");
    assert!(took < Duration::from_millis(800), "timeout took {took:?}");
    // `Connection::timeout` promises the late statement is cancelled on the server, so the
    // next statement on the connection must not wait for the rest of pg_sleep(2).
    let c = conn.clone();
    let waited = in_coroutine_within(Duration::from_secs(10), move || {
        let t0 = Instant::now();
        c.query_one("SELECT 1", &[]).unwrap();
        t0.elapsed()
    });
    assert!(
        waited < Duration::from_millis(1000),
        "the next query waited {waited:?}: the timed simple query kept running on the server"
    );
}

#[test]
fn deadline_inside_a_transaction_cancels_and_rolls_back() {
    let mut conn = connect();
    in_coroutine_within(Duration::from_secs(30), move || {
        let tx = conn.begin().unwrap();
        tx.execute("SET LOCAL application_name = 'lg_deadline_tx'", &[])
            .unwrap();
        let t0 = Instant::now();
        let r = tx
            .timeout(Duration::from_millis(100))
            .query("SELECT pg_sleep(5)", &[]);
        let took = t0.elapsed();
        assert!(matches!(r, Err(Error::Timeout(_))), "got {r:?}");
        assert!(took < Duration::from_secs(2), "timeout took {took:?}");
        assert_eq!(
            tx.connection().transaction_status(),
            TransactionStatus::Failed
        );
        tx.rollback().unwrap();
        assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
        assert!(!conn.is_broken());
        let t0 = Instant::now();
        let v: i32 = conn.query_one("SELECT $1::int4", &[&5i32]).unwrap().get(0);
        assert_eq!(v, 5);
        assert!(t0.elapsed() < Duration::from_secs(1));
        // The cancel hit only the late statement: a new transaction runs normally.
        let mut tx = conn.begin().unwrap();
        let v: i32 = tx
            .timeout(Duration::from_secs(5))
            .query_one("SELECT 1 FROM pg_sleep(0.1)", &[])
            .unwrap()
            .get(0);
        assert_eq!(v, 1);
        let sp = tx.savepoint().unwrap();
        let r = sp
            .timeout(Duration::from_millis(100))
            .query("SELECT pg_sleep(5)", &[]);
        assert!(matches!(r, Err(Error::Timeout(_))), "got {r:?}");
        sp.rollback().unwrap();
        let v: i32 = tx.query_one("SELECT 2", &[]).unwrap().get(0);
        assert_eq!(v, 2);
        tx.commit().unwrap();
    });
}

#[test]
fn cancel_token_from_another_coroutine_cancels_an_exclusive_statement() {
    let mut conn = connect();
    let token = conn.cancel_token();
    in_coroutine_within(Duration::from_secs(30), move || {
        let tx = conn.begin().unwrap();
        let canceller = may::go!(move || {
            may::coroutine::sleep(Duration::from_millis(300));
            token.cancel()
        });
        let t0 = Instant::now();
        let r = tx.query("SELECT pg_sleep(10)", &[]);
        let took = t0.elapsed();
        canceller.join().unwrap().expect("cancel request failed");
        let e = r.expect_err("pg_sleep(10) was not cancelled");
        assert_eq!(e.sqlstate(), Some("57014"), "got {e:?}");
        assert!(matches!(e, Error::Db(_)), "got {e:?}");
        assert!(took < Duration::from_secs(5), "cancel took {took:?}");
        tx.rollback().unwrap();
        let v: i32 = conn.query_one("SELECT 3", &[]).unwrap().get(0);
        assert_eq!(v, 3);
    });
}

#[test]
fn next_notification_times_out() {
    let conn = connect();
    let took = in_coroutine_within(Duration::from_secs(10), move || {
        conn.listen("lg_never_notified").unwrap();
        let t0 = Instant::now();
        let n = conn.next_notification(Duration::from_millis(200)).unwrap();
        assert!(n.is_none());
        t0.elapsed()
    });
    assert!(
        took < Duration::from_secs(2),
        "next_notification(200ms) took {took:?}"
    );
}

#[test]
fn client_side_deadline_fires_while_the_server_is_silent() {
    // An exclusive timed call relies on the client-side deadline alone (no statement_timeout):
    // repeat it so that the sub-millisecond re-park race is hit at least once.
    let mut conn = connect();
    in_coroutine_within(Duration::from_secs(60), move || {
        for round in 0..5 {
            let tx = conn.begin().unwrap();
            let t0 = Instant::now();
            let r = tx
                .timeout(Duration::from_millis(100))
                .query("SELECT pg_sleep(2)", &[]);
            let took = t0.elapsed();
            assert!(
                matches!(r, Err(Error::Timeout(_))),
                "round {round}: got {r:?}"
            );
            assert!(
                took < Duration::from_millis(1500),
                "round {round}: took {took:?}"
            );
            tx.rollback().unwrap();
        }
    });
}

/// Unix-socket and TCP connections opened, used and dropped side by side. Descriptor numbers
/// are reused at once here, so a socket that left the poller after closing (instead of
/// before) would corrupt another socket's registration: a crash, or a read that never wakes.
#[test]
fn unix_and_tcp_connections_churn_side_by_side() {
    // Every step has a deadline well inside the test's, so a stuck one names itself.
    let step = Duration::from_secs(20);
    let unix = Config::parse(&lifeguard_tests::primary_url())
        .unwrap()
        .unix_socket_dir(lifeguard_tests::pg_socket_dir())
        .port(lifeguard_tests::pg_port())
        .connect_timeout(step);
    let tcp = Config::parse(&lifeguard_tests::primary_url())
        .unwrap()
        .connect_timeout(step);
    in_coroutine_within(Duration::from_secs(120), move || {
        let workers: Vec<_> = (0..8)
            .map(|w| {
                let config = if w % 2 == 0 {
                    unix.clone()
                } else {
                    tcp.clone()
                };
                may::go!(move || {
                    for round in 0..40i32 {
                        let conn = Connection::connect(&config)
                            .unwrap_or_else(|e| panic!("worker {w}, round {round}: connect: {e}"));
                        // Two handles parked on the socket at once: the reader and a caller.
                        let got: i32 = conn
                            .timeout(step)
                            .query_one("SELECT $1::int4", &[&round])
                            .unwrap_or_else(|e| panic!("worker {w}, round {round}: query: {e}"))
                            .get(0);
                        assert_eq!(got, round);
                    }
                })
            })
            .collect();
        for w in workers {
            // The worker's own panic, so its message reaches the report.
            if let Err(panic) = w.join() {
                std::panic::resume_unwind(panic);
            }
        }
    });
}
