//! Reads that call functions (issue 21, "reads that write"): a `SELECT` calling a function
//! that is not known to be read-only runs on the primary, once; a declared read-only
//! function keeps the read on the replica.

use std::time::Duration;

use lifeguard_core::pool::{declare_read_only_functions, Pool, PoolConfig};
use lifeguard_core::Executor;
use lifeguard_tests::pg::{connect, connect_url, init, scratch_table};
use lifeguard_tests::pool::{cfg, wait_healthy};
use lifeguard_tests::{primary_url, replica_url, unique_name, wait_for};

fn pool() -> Pool {
    init();
    let pool = Pool::connect(
        PoolConfig::new(cfg(&primary_url()))
            .replica(cfg(&replica_url()))
            .monitor_interval(Duration::from_millis(100))
            .name(unique_name("fnrt")),
    )
    .expect("connect the pool");
    wait_healthy(&pool, Duration::from_secs(10));
    pool
}

/// Creates a function on the primary and waits until the replica has replayed it.
fn create_function(name: &str, definition: &str) {
    connect()
        .batch_execute(&format!("CREATE FUNCTION {name}{definition}"))
        .expect("create the function");
    let replica = connect_url(&replica_url());
    let seen = wait_for(Duration::from_secs(10), || {
        let row = replica
            .query_one("SELECT to_regproc($1) IS NOT NULL", &[&name])
            .ok()?;
        row.get::<_, bool>(0).then_some(())
    });
    assert!(seen.is_some(), "the replica never replayed {name}");
}

/// Fails without the rule: the replica refuses the function's INSERT ("cannot execute
/// INSERT in a read-only transaction").
#[test]
fn a_select_of_a_writing_function_runs_on_the_primary_once() {
    let pool = pool();
    let db = connect();
    let ledger = scratch_table(&db, "tag text NOT NULL");
    let f = unique_name("lg_fn_writes");
    create_function(
        &f,
        &format!(
            "(t text) RETURNS int LANGUAGE sql AS \
             $$ INSERT INTO {} VALUES (t) RETURNING 1 $$",
            ledger.name()
        ),
    );
    for i in 0..20 {
        let rows = pool
            .query(&format!("SELECT {f}($1)"), &[&format!("call-{i}")])
            .expect("the call runs on the primary");
        assert_eq!(rows[0].get::<_, i32>(0), 1);
    }
    let written: i64 = db
        .query_one(&format!("SELECT count(*) FROM {}", ledger.name()), &[])
        .expect("count")
        .get(0);
    assert_eq!(written, 20, "each call ran exactly once");
}

/// An advisory lock taken through the pool is taken on the primary.
#[test]
fn an_advisory_lock_is_taken_on_the_primary() {
    let pool = pool();
    for _ in 0..10 {
        let rows = pool
            .query(
                "SELECT pg_advisory_xact_lock(4242), pg_is_in_recovery()",
                &[],
            )
            .expect("lock");
        assert!(!rows[0].get::<_, bool>(1), "ran on a replica");
    }
}

/// A declared function leaves the read where the read preference puts it.
#[test]
fn a_declared_read_only_function_stays_on_the_replica() {
    let pool = pool();
    let f = unique_name("lg_fn_reads");
    create_function(
        &f,
        "() RETURNS bool LANGUAGE sql STABLE AS $$ SELECT pg_is_in_recovery() $$",
    );
    let sql = format!("SELECT {f}()");
    let on_replica = || -> bool {
        pool.query(&sql, &[])
            .expect("read")
            .first()
            .is_some_and(|r| r.get(0))
    };
    assert!(!on_replica(), "undeclared: the primary");
    declare_read_only_functions([&f]);
    let landed = wait_for(Duration::from_secs(5), || on_replica().then_some(()));
    assert!(landed.is_some(), "declared: a replica");
}
