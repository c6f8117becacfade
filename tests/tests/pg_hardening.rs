//! Hardening of the pipelined connection: a slow statement without a deadline does not get
//! a healthy connection failed. (A flood of `NOTIFY` is `pg_queue_bounds.rs`.)
//!
//! Needs the services: `scripts/services up && eval "$(scripts/services env)"`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{connect, in_coroutine_within};

/// A timed caller queued behind an untimed `pg_sleep(3)` times out, but its grace counts
/// from when the server starts its request, not from its deadline: the connection stays
/// healthy and the long statement's result arrives. Counted from the deadline, the reply
/// was "overdue" 2 s after it (while the sleep still ran) and the connection was failed.
#[test]
fn a_timed_caller_behind_a_slow_untimed_statement_does_not_fail_the_connection() {
    let conn = Arc::new(connect());
    let c = conn.clone();
    let slow = may::go!(move || {
        let t0 = Instant::now();
        let r = c.query_one("SELECT pg_sleep(3), 42::int4", &[]);
        (r.map(|row| row.get::<_, i32>(1)), t0.elapsed())
    });
    let c = conn.clone();
    let timed = in_coroutine_within(Duration::from_secs(10), move || {
        // Let the sleep go out first, so this request queues behind it.
        may::coroutine::sleep(Duration::from_millis(100));
        let r = c
            .timeout(Duration::from_millis(500))
            .query_one("SELECT $1::int4", &[&1i32]);
        // Past the old grace (2 s after the deadline) while the sleep still runs: a new
        // request makes the connection check its abandoned replies.
        may::coroutine::sleep(Duration::from_millis(2200));
        let probe = c.query_one("SELECT $1::int4", &[&7i32]);
        (r, probe.map(|row| row.get::<_, i32>(0)))
    });
    let (r, probe) = timed;
    assert!(matches!(r, Err(Error::Timeout(_))), "got {r:?}");
    assert_eq!(probe.expect("a probe after the grace"), 7);
    let (slow_result, took) = slow.join().expect("the slow caller panicked");
    assert_eq!(slow_result.expect("the slow statement's result"), 42);
    assert!(took >= Duration::from_secs(3), "took {took:?}");
    assert!(!conn.is_broken());
    assert_eq!(conn.in_flight(), 0);
}
