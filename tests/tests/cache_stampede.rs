//! The stampede bound across processes (spec C1, G4): 2,000 coroutines in each of 4
//! processes read one cold key whose first load is held up; with single-flight inside each
//! process and the Redis lease across them, the database sees one load for the fleet (the
//! readers that lost the lease wait for the winner's fill, up to the lease wait).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lifeguard_core::Executor;
use lifeguard_tests::cache::{beat, cached_pool_in, crowd_table};
use lifeguard_tests::pg::connect;
use lifeguard_tests::unique_name;

#[test]
fn four_processes_load_a_cold_key_at_most_once_each() {
    crowd_table();
    let ns = unique_name("crowd");
    let id = i64::from(std::process::id());
    let conn = connect();
    conn.execute(
        "INSERT INTO cache_crowd.crowd (id, n) VALUES ($1, 1) ON CONFLICT (id) DO NOTHING",
        &[&id],
    )
    .unwrap();
    let (_pool, cache) = cached_pool_in(&ns, |c| c);
    beat(&cache, 0, u64::MAX, Duration::from_secs(60));
    // Hold the table so the first load waits and every reader piles up behind it.
    let mut locker = connect();
    let lock = locker.begin().unwrap();
    lock.batch_execute("LOCK TABLE cache_crowd.crowd IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let mut children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_cache_crowd"))
                .args([&ns, &id.to_string(), "2000"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("start cache_crowd")
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().expect("stdout")).lines())
        .collect();
    for out in &mut outputs {
        assert_eq!(out.next().expect("a line").expect("utf-8"), "ready");
    }
    std::thread::sleep(Duration::from_millis(500));
    lock.commit().unwrap();
    let mut loads = Vec::new();
    for (child, out) in children.iter_mut().zip(&mut outputs) {
        let line = out.next().expect("the loads line").expect("utf-8");
        let n: f64 = line
            .strip_prefix("loads ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected output {line:?}"));
        loads.push(n);
        assert!(child.wait().expect("wait").success());
    }
    let total: f64 = loads.iter().sum();
    eprintln!("database loads per process: {loads:?}");
    assert!(loads.iter().all(|n| *n <= 1.0), "single-flight: {loads:?}");
    // The other processes' leaders lost the lease and waited for its holder's fill.
    assert_eq!(total, 1.0, "the lease: {loads:?}");
}
