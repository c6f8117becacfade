//! Features of the `lifeguard_core::pg` client against the real services: authentication,
//! the simple protocol, the statement cache, transactions, LISTEN/NOTIFY, COPY and the
//! connection's server-reported state.

use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeguard_core::pg::{
    BinaryCopyWriter, Config, Connection, IsolationLevel, SimpleQueryMessage, TransactionStatus,
    Type,
};
use lifeguard_core::{DbError, Error, Executor};
use lifeguard_tests::pg::{connect, connect_url, in_coroutine, one_each, scratch_table};
use lifeguard_tests::{app_url, clear_url, md5_url, pg_port, pg_socket_dir, primary_url};

fn current_user(conn: &Connection) -> String {
    conn.query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0)
}

fn count(conn: &impl Executor, table: &str) -> i64 {
    conn.query_one(&format!("SELECT count(*) FROM {table}"), &[])
        .unwrap()
        .get(0)
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[test]
fn auth_trust() {
    let conn = connect_url(&primary_url());
    assert_eq!(current_user(&conn), "postgres");
}

#[test]
fn auth_scram() {
    let conn = connect_url(&app_url());
    assert_eq!(current_user(&conn), "lifeguard_app");
}

#[test]
fn auth_md5() {
    let conn = connect_url(&md5_url());
    assert_eq!(current_user(&conn), "lifeguard_md5");
}

#[test]
fn auth_cleartext() {
    let conn = connect_url(&clear_url());
    assert_eq!(current_user(&conn), "lifeguard_clear");
}

#[test]
fn auth_unix_socket_key_value() {
    let conninfo = format!(
        "host={} port={} user=postgres dbname=lifeguard",
        pg_socket_dir(),
        pg_port()
    );
    let conn = connect_url(&conninfo);
    assert_eq!(current_user(&conn), "postgres");
    // No client address on a Unix socket.
    let addr: Option<String> = conn
        .query_one("SELECT inet_client_addr()::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(addr, None);
}

#[test]
fn auth_scram_over_unix_socket() {
    let cfg = Config::parse(&app_url())
        .unwrap()
        .unix_socket_dir(pg_socket_dir())
        .port(pg_port());
    lifeguard_tests::pg::init();
    let conn = Connection::connect(&cfg).unwrap();
    assert_eq!(current_user(&conn), "lifeguard_app");
}

// ---------------------------------------------------------------------------------------------
// Simple protocol, execute

#[test]
fn simple_query_multi_statement_rows_and_counts() {
    let conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY, name text");
    let msgs = conn
        .simple_query(&format!(
            "INSERT INTO {t} VALUES (1, 'a'), (2, NULL), (3, 'c'); \
             SELECT id, name FROM {t} ORDER BY id; \
             UPDATE {t} SET name = 'z' WHERE id > 1; \
             DELETE FROM {t} WHERE id = 3"
        ))
        .unwrap();
    let mut rows = Vec::new();
    let mut completes = Vec::new();
    for m in &msgs {
        match m {
            SimpleQueryMessage::Row(r) => rows.push(r.clone()),
            SimpleQueryMessage::CommandComplete(n) => completes.push(*n),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(completes, vec![3, 3, 2, 1]);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].columns(), ["id".to_string(), "name".to_string()]);
    assert_eq!(rows[0].get(0), Some("1"));
    assert_eq!(rows[0].get("name"), Some("a"));
    assert_eq!(rows[1].get("name"), None);
    assert_eq!(rows[2].get("id"), Some("3"));
    assert_eq!(rows[2].get("nope"), None);
    // The order of messages: rows come between the INSERT's and the SELECT's completion.
    assert!(matches!(msgs[0], SimpleQueryMessage::CommandComplete(3)));
    assert!(matches!(msgs[1], SimpleQueryMessage::Row(_)));

    conn.batch_execute(&format!(
        "INSERT INTO {t} VALUES (10, 'x'); INSERT INTO {t} VALUES (11, 'y')"
    ))
    .unwrap();
    assert_eq!(count(&conn, &t), 4);
    // A failing statement in a batch rolls back the whole implicit transaction.
    let e = conn
        .batch_execute(&format!(
            "INSERT INTO {t} VALUES (20, 'x'); INSERT INTO {t} VALUES (1, 'dup')"
        ))
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("23505"));
    assert_eq!(count(&conn, &t), 4);
}

#[test]
fn execute_returns_rows_affected() {
    let conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY, v int4");
    let ins = conn
        .execute(
            &format!("INSERT INTO {t} SELECT g, g % 3 FROM generate_series(1, 10) g"),
            &[],
        )
        .unwrap();
    assert_eq!(ins, 10);
    assert_eq!(
        conn.execute(
            &format!("INSERT INTO {t} VALUES ($1, $2)"),
            &[&11i32, &0i32]
        )
        .unwrap(),
        1
    );
    assert_eq!(
        conn.execute(&format!("UPDATE {t} SET v = v + 1 WHERE v = $1"), &[&0i32])
            .unwrap(),
        4
    );
    assert_eq!(
        conn.execute(&format!("UPDATE {t} SET v = 0 WHERE id > 100"), &[])
            .unwrap(),
        0
    );
    assert_eq!(
        conn.execute(&format!("DELETE FROM {t} WHERE id <= $1"), &[&5i32])
            .unwrap(),
        5
    );
    assert_eq!(conn.execute(&format!("SELECT * FROM {t}"), &[]).unwrap(), 6);
    assert_eq!(
        conn.execute(&format!("CREATE INDEX ON {t} (v)"), &[])
            .unwrap(),
        0
    );
}

#[test]
fn many_coroutines_share_one_connection() {
    let conn = Arc::new(connect());
    let handles: Vec<_> = (0..50i32)
        .map(|i| {
            let conn = conn.clone();
            may::go!(move || {
                let row = conn.query_one("SELECT $1::int4 * 2", &[&i]).unwrap();
                row.get::<_, i32>(0)
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), 2 * i as i32);
    }
    assert_eq!(conn.in_flight(), 0);
}

// ---------------------------------------------------------------------------------------------
// Statement cache

fn server_prepared(conn: &Connection) -> i64 {
    conn.query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .unwrap()
        .get(0)
}

fn server_prepared_for(conn: &Connection, sql: &str) -> i64 {
    conn.query_one(
        "SELECT count(*) FROM pg_prepared_statements WHERE statement = $1",
        &[&sql],
    )
    .unwrap()
    .get(0)
}

#[test]
fn statement_cache_prepares_each_sql_once() {
    let conn = connect();
    let before = conn.cached_statements();
    let sql = "SELECT $1::int4 + 1 AS lg_cache_probe";
    for i in 0..50i32 {
        let v: i32 = conn.query_one(sql, &[&i]).unwrap().get(0);
        assert_eq!(v, i + 1);
    }
    assert_eq!(conn.cached_statements(), before + 1);
    assert_eq!(server_prepared_for(&conn, sql), 1);
    let other = "SELECT $1::text AS lg_cache_probe2";
    for _ in 0..10 {
        conn.query_one(other, &[&"x"]).unwrap();
    }
    assert_eq!(server_prepared_for(&conn, sql), 1);
    assert_eq!(server_prepared_for(&conn, other), 1);
    // Every cached statement (including the counting ones) exists once on the server.
    let on_server = server_prepared(&conn);
    assert_eq!(on_server, conn.cached_statements() as i64);
}

#[test]
fn discard_all_clears_the_cache() {
    let conn = connect();
    let sql = "SELECT $1::int4 AS lg_discard_probe";
    conn.query_one(sql, &[&1i32]).unwrap();
    assert!(conn.cached_statements() >= 1);
    conn.batch_execute("DISCARD ALL").unwrap();
    assert_eq!(conn.cached_statements(), 0);
    // Queries still work, re-prepared.
    assert_eq!(conn.query_one(sql, &[&2i32]).unwrap().get::<_, i32>(0), 2);
    assert_eq!(server_prepared_for(&conn, sql), 1);
    // DEALLOCATE ALL too.
    conn.batch_execute("DEALLOCATE ALL").unwrap();
    assert_eq!(conn.cached_statements(), 0);
    assert_eq!(conn.query_one(sql, &[&3i32]).unwrap().get::<_, i32>(0), 3);
}

#[test]
fn discard_all_through_the_extended_protocol_is_recovered_from() {
    let conn = connect();
    let sql = "SELECT $1::int4 AS lg_discard_probe_ext";
    conn.query_one(sql, &[&1i32]).unwrap();
    // The cache does not see this one; the next run meets "prepared statement does not
    // exist" and re-prepares.
    conn.execute("DISCARD ALL", &[]).unwrap();
    assert_eq!(conn.query_one(sql, &[&2i32]).unwrap().get::<_, i32>(0), 2);
}

#[test]
fn stale_cached_plan_is_reprepared_transparently() {
    let conn = connect();
    let other = connect();
    let t = scratch_table(&conn, "id int4");
    conn.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .unwrap();
    let sql = format!("SELECT * FROM {t}");
    let rows = conn.query(&sql, &[]).unwrap();
    assert_eq!(rows[0].len(), 1);
    other
        .batch_execute(&format!(
            "ALTER TABLE {t} ADD COLUMN extra text DEFAULT 'new'"
        ))
        .unwrap();
    let rows = conn.query(&sql, &[]).unwrap();
    assert_eq!(rows[0].len(), 2);
    assert_eq!(rows[0].get::<_, String>("extra"), "new");
    assert_eq!(server_prepared_for(&conn, &sql), 1);
    // A dropped column too.
    other
        .batch_execute(&format!("ALTER TABLE {t} DROP COLUMN extra"))
        .unwrap();
    let rows = conn.query(&sql, &[]).unwrap();
    assert_eq!(rows[0].len(), 1);
}

#[test]
fn statement_cache_is_bounded() {
    lifeguard_tests::pg::init();
    let cfg = Config::parse(&primary_url()).unwrap().statement_cache(4);
    let conn = Connection::connect(&cfg).unwrap();
    for i in 0..10i32 {
        let sql = format!("SELECT $1::int4 + {i} AS lg_bounded_{i}");
        assert_eq!(
            conn.query_one(&sql, &[&1i32]).unwrap().get::<_, i32>(0),
            1 + i
        );
        assert!(conn.cached_statements() <= 4);
    }
    // Evicted statements are closed with the next request; the count query itself is one
    // more statement, so the server holds at most the cache's capacity (+1 in flight).
    let n = server_prepared(&conn);
    assert!(n <= 5, "{n} statements prepared on the server");
    for _ in 0..3 {
        let n = server_prepared(&conn);
        assert!(n <= 5, "{n} statements prepared on the server");
    }
    // A cache of 0 prepares every time and leaks nothing.
    let cfg = Config::parse(&primary_url()).unwrap().statement_cache(0);
    let conn = Connection::connect(&cfg).unwrap();
    for i in 0..10i32 {
        conn.query_one(&format!("SELECT {i}::int4"), &[]).unwrap();
    }
    assert_eq!(conn.cached_statements(), 0);
    let n = server_prepared(&conn);
    assert!(n <= 1, "{n} statements prepared on the server");
}

#[test]
fn explicit_prepare_and_query_statement() {
    let conn = connect();
    let stmt = conn.prepare("SELECT $1::int8 * 2 AS doubled").unwrap();
    assert_eq!(stmt.params(), &[Type::INT8]);
    assert_eq!(stmt.columns()[0].name(), "doubled");
    for i in 0..5i64 {
        let rows = conn.query_statement(&stmt, &[&i]).unwrap();
        assert_eq!(rows[0].get::<_, i64>("doubled"), 2 * i);
    }
    let other = connect();
    let e = other.query_statement(&stmt, &[&1i64]).unwrap_err();
    assert!(matches!(e, Error::InvalidUse(_)), "{e:?}");
    drop(stmt);
    // The server-side statement is closed with the next request.
    conn.query_one("SELECT 1::int4", &[]).unwrap();
    assert_eq!(
        server_prepared_for(&conn, "SELECT $1::int8 * 2 AS doubled"),
        0
    );
}

// ---------------------------------------------------------------------------------------------
// Transactions

#[test]
fn commit_is_visible_and_rollback_is_not() {
    let mut conn = connect();
    let observer = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY");
    let tx = conn.begin().unwrap();
    tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .unwrap();
    assert_eq!(count(&tx, &t), 1);
    assert_eq!(count(&observer, &t), 0, "uncommitted row leaked");
    assert_eq!(
        tx.connection().transaction_status(),
        TransactionStatus::InTransaction
    );
    tx.commit().unwrap();
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert_eq!(count(&observer, &t), 1);

    let tx = conn.begin().unwrap();
    tx.execute(&format!("INSERT INTO {t} VALUES (2)"), &[])
        .unwrap();
    tx.rollback().unwrap();
    assert_eq!(count(&observer, &t), 1);
    assert_eq!(count(&conn, &t), 1);
}

#[test]
fn transaction_closure_commits_on_ok_and_rolls_back_on_err() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY");
    let n = conn
        .transaction(|tx| tx.execute(&format!("INSERT INTO {t} VALUES (1), (2)"), &[]))
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(count(&conn, &t), 2);

    let r: lifeguard_core::Result<()> = conn.transaction(|tx| {
        tx.execute(&format!("INSERT INTO {t} VALUES (3)"), &[])?;
        Err(Error::config("changed my mind"))
    });
    assert!(matches!(r, Err(Error::Config(ref m)) if m == "changed my mind"));
    assert_eq!(count(&conn, &t), 2);
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);

    // A server error inside the closure is returned and rolled back.
    let r = conn.transaction(|tx| {
        tx.execute(&format!("INSERT INTO {t} VALUES (4)"), &[])?;
        tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
    });
    assert_eq!(r.unwrap_err().sqlstate(), Some("23505"));
    assert_eq!(count(&conn, &t), 2);
}

#[test]
fn transaction_closure_rolls_back_on_panic() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY");
    let table = t.name().to_owned();
    let result = catch_unwind(AssertUnwindSafe(|| {
        conn.transaction(|tx| -> lifeguard_core::Result<()> {
            tx.execute(&format!("INSERT INTO {table} VALUES (1)"), &[])?;
            panic!("boom inside the transaction");
        })
    }));
    assert!(result.is_err(), "the panic must propagate");
    assert_eq!(count(&conn, &t), 0);
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    // And the connection still runs transactions.
    conn.transaction(|tx| tx.execute(&format!("INSERT INTO {t} VALUES (2)"), &[]))
        .unwrap();
    assert_eq!(count(&conn, &t), 1);
}

#[test]
fn dropping_an_open_transaction_rolls_back() {
    let mut conn = connect();
    let observer = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY");
    {
        let tx = conn.begin().unwrap();
        tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
            .unwrap();
    }
    // Usable right away; the rollback was queued ahead of this.
    assert_eq!(count(&conn, &t), 0);
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert_eq!(count(&observer, &t), 0);
    // A new transaction starts cleanly (no "already a transaction in progress").
    let tx = conn.begin().unwrap();
    tx.execute(&format!("INSERT INTO {t} VALUES (2)"), &[])
        .unwrap();
    tx.commit().unwrap();
    assert_eq!(count(&observer, &t), 1);
}

#[test]
fn savepoints_roll_back_only_the_inner_part() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY");
    conn.transaction(|tx| {
        tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])?;
        let inner: lifeguard_core::Result<()> = tx.transaction(|sp| {
            sp.execute(&format!("INSERT INTO {t} VALUES (2)"), &[])?;
            Err(Error::config("inner fails"))
        });
        assert!(inner.is_err());
        // A savepoint whose statement fails on the server also leaves the outer one usable.
        let inner = tx.transaction(|sp| sp.execute(&format!("INSERT INTO {t} VALUES (1)"), &[]));
        assert_eq!(inner.unwrap_err().sqlstate(), Some("23505"));
        // A successful savepoint is kept.
        tx.transaction(|sp| sp.execute(&format!("INSERT INTO {t} VALUES (3)"), &[]))?;
        // Nested two deep.
        tx.transaction(|sp| {
            sp.execute(&format!("INSERT INTO {t} VALUES (4)"), &[])?;
            let r: lifeguard_core::Result<()> = sp.transaction(|sp2| {
                sp2.execute(&format!("INSERT INTO {t} VALUES (5)"), &[])?;
                Err(Error::NotFound)
            });
            assert!(matches!(r, Err(Error::NotFound)));
            Ok(())
        })?;
        // Explicit savepoint handle, rolled back.
        let sp = tx.savepoint()?;
        sp.execute(&format!("INSERT INTO {t} VALUES (6)"), &[])?;
        sp.rollback()?;
        tx.execute(&format!("INSERT INTO {t} VALUES (7)"), &[])
    })
    .unwrap();
    let ids: Vec<i32> = conn
        .query(&format!("SELECT id FROM {t} ORDER BY id"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![1, 3, 4, 7]);
}

#[test]
fn isolation_levels() {
    let mut conn = connect();
    for (level, name) in [
        (IsolationLevel::Serializable, "serializable"),
        (IsolationLevel::RepeatableRead, "repeatable read"),
        (IsolationLevel::ReadCommitted, "read committed"),
        (IsolationLevel::ReadUncommitted, "read uncommitted"),
    ] {
        let tx = conn
            .build_transaction()
            .isolation_level(level)
            .begin()
            .unwrap();
        let shown: String = tx
            .query_one("SHOW transaction_isolation", &[])
            .unwrap()
            .get(0);
        assert_eq!(shown, name);
        tx.commit().unwrap();
    }
    let shown: String = conn
        .query_one("SHOW transaction_isolation", &[])
        .unwrap()
        .get(0);
    assert_eq!(shown, "read committed");
}

#[test]
fn read_only_transaction_refuses_writes() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4");
    let tx = conn.build_transaction().read_only(true).begin().unwrap();
    let ro: String = tx
        .query_one("SHOW transaction_read_only", &[])
        .unwrap()
        .get(0);
    assert_eq!(ro, "on");
    let e = tx
        .execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("25006"), "{e:?}");
    drop(tx);
    // Explicit READ WRITE works.
    conn.build_transaction()
        .read_only(false)
        .run(|tx| tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[]))
        .unwrap();
    assert_eq!(count(&conn, &t), 1);
}

#[test]
fn deferrable_serializable_read_only() {
    let mut conn = connect();
    let (deferrable, iso): (String, String) = conn
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .read_only(true)
        .deferrable(true)
        .run(|tx| {
            let d = tx
                .query_one("SHOW transaction_deferrable", &[])?
                .try_get(0)?;
            let i = tx
                .query_one("SHOW transaction_isolation", &[])?
                .try_get(0)?;
            Ok((d, i))
        })
        .unwrap();
    assert_eq!(deferrable, "on");
    assert_eq!(iso, "serializable");
    conn.build_transaction()
        .deferrable(false)
        .run(|tx| tx.batch_execute("SELECT 1"))
        .unwrap();
}

#[test]
fn transaction_timeout_bounds_every_attempt_and_savepoint() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4");
    let mut attempts = 0;
    let started = Instant::now();
    let e = conn
        .build_transaction()
        .retry_conflicts(50)
        .timeout(Duration::from_millis(300))
        .run(|tx| {
            attempts += 1;
            tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[&attempts])?;
            // A savepoint inherits the deadline; each attempt eats into the same budget.
            tx.transaction(|sp| sp.execute("SELECT pg_sleep(0.1)", &[]))?;
            Err::<(), _>(fake_serialization_failure())
        })
        .unwrap_err();
    assert!(
        matches!(e, Error::Timeout(d) if d == Duration::from_millis(300)),
        "{e}"
    );
    assert!((2..=5).contains(&attempts), "{attempts} attempts");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Nothing committed, and the connection is usable.
    let n: i64 = conn
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
}

fn fake_serialization_failure() -> Error {
    Error::from_db(DbError {
        severity: "ERROR".into(),
        code: "40001".into(),
        message: "could not serialize access (simulated)".into(),
        ..DbError::default()
    })
}

#[test]
fn retry_conflicts_reruns_the_closure() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4");
    let mut attempts = 0;
    let n = conn
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .retry_conflicts(3)
        .run(|tx| {
            attempts += 1;
            tx.execute(&format!("INSERT INTO {t} VALUES ($1)"), &[&attempts])?;
            if attempts == 1 {
                return Err(fake_serialization_failure());
            }
            Ok(attempts)
        })
        .unwrap();
    assert_eq!(n, 2);
    assert_eq!(attempts, 2);
    // Only the second attempt's row was committed.
    let ids: Vec<i32> = conn
        .query(&format!("SELECT id FROM {t}"), &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ids, vec![2]);

    // Gives up after the given number of attempts.
    let mut attempts = 0;
    let e = conn
        .build_transaction()
        .retry_conflicts(3)
        .run(|_tx| -> lifeguard_core::Result<()> {
            attempts += 1;
            Err(fake_serialization_failure())
        })
        .unwrap_err();
    assert!(matches!(e, Error::SerializationFailure(_)));
    assert_eq!(attempts, 3);

    // Other errors are not retried; nor is anything without retry_conflicts.
    let mut attempts = 0;
    let _ = conn
        .build_transaction()
        .retry_conflicts(3)
        .run(|_tx| -> lifeguard_core::Result<()> {
            attempts += 1;
            Err(Error::NotFound)
        });
    assert_eq!(attempts, 1);
    let mut attempts = 0;
    let _ = conn.transaction(|_tx| -> lifeguard_core::Result<()> {
        attempts += 1;
        Err(fake_serialization_failure())
    });
    assert_eq!(attempts, 1);
}

#[test]
fn retry_conflicts_with_a_real_conflict() {
    let mut conn = connect();
    let other = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY, v int4 NOT NULL");
    conn.execute(&format!("INSERT INTO {t} VALUES (1, 0)"), &[])
        .unwrap();
    let mut attempts = 0;
    conn.build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .retry_conflicts(3)
        .run(|tx| {
            attempts += 1;
            // Take the snapshot, then let another session change the row under it.
            tx.query_one(&format!("SELECT v FROM {t} WHERE id = 1"), &[])?;
            if attempts == 1 {
                other.execute(&format!("UPDATE {t} SET v = v + 100 WHERE id = 1"), &[])?;
            }
            tx.execute(&format!("UPDATE {t} SET v = v + 1 WHERE id = 1"), &[])
        })
        .unwrap();
    assert_eq!(attempts, 2);
    let v: i32 = conn
        .query_one(&format!("SELECT v FROM {t}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(v, 101);
}

#[test]
fn commit_of_a_failed_transaction_reports_25p02() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY");
    conn.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .unwrap();
    let tx = conn.begin().unwrap();
    tx.execute(&format!("INSERT INTO {t} VALUES (2)"), &[])
        .unwrap();
    let e = tx
        .execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("23505"));
    assert_eq!(
        tx.connection().transaction_status(),
        TransactionStatus::Failed
    );
    // Later statements are refused by the server.
    let e = tx.query_one("SELECT 1::int4", &[]).unwrap_err();
    assert_eq!(e.sqlstate(), Some("25P02"));
    let e = tx.commit().unwrap_err();
    assert_eq!(e.sqlstate(), Some("25P02"), "{e:?}");
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert_eq!(count(&conn, &t), 1);
}

#[test]
fn commit_after_a_parse_time_error_reports_25p02() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY");
    let tx = conn.begin().unwrap();
    tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])
        .unwrap();
    // Fails in Parse (undefined table), i.e. in Call::prepare, not in Call::run.
    let e = tx
        .execute("INSERT INTO lg_no_such_table_for_commit VALUES (1)", &[])
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("42P01"));
    assert_eq!(
        tx.connection().transaction_status(),
        TransactionStatus::Failed,
        "the server reported 'E' in ReadyForQuery"
    );
    let r = tx.commit();
    // The server answered COMMIT with ROLLBACK; the row is gone, so Ok(()) would be a lie.
    assert_eq!(count(&conn, &t), 0);
    assert_eq!(r.unwrap_err().sqlstate(), Some("25P02"));
}

#[test]
fn closure_that_swallows_a_parse_error_is_not_reported_committed() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY");
    let r = conn.transaction(|tx| {
        tx.execute(&format!("INSERT INTO {t} VALUES (1)"), &[])?;
        // The caller ignores this error (e.g. logs it) and returns Ok.
        let _ = tx.execute("SELEC broken", &[]);
        Ok(())
    });
    assert_eq!(
        count(&conn, &t),
        0,
        "the server rolled the transaction back"
    );
    assert!(
        r.is_err(),
        "transaction() reported success for a rolled-back transaction"
    );
}

// ---------------------------------------------------------------------------------------------
// LISTEN / NOTIFY

fn notify_roundtrip() {
    let listener = connect();
    let sender = connect();
    let channel = lifeguard_tests::unique_name("lg_Chan");
    listener.listen(&channel).unwrap();
    sender
        .execute("SELECT pg_notify($1, $2)", &[&channel, &"héllo payload"])
        .unwrap();
    let n = listener
        .next_notification(Duration::from_secs(5))
        .unwrap()
        .expect("a notification");
    assert_eq!(n.channel, channel);
    assert_eq!(n.payload, "héllo payload");
    assert_eq!(n.process_id, sender.process_id());

    // Several, in order; an empty payload.
    for i in 0..3 {
        sender
            .execute("SELECT pg_notify($1, $2)", &[&channel, &i.to_string()])
            .unwrap();
    }
    sender
        .batch_execute(&format!("NOTIFY \"{channel}\""))
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 4 {
        let n = listener
            .next_notification(Duration::from_secs(5))
            .unwrap()
            .expect("a notification");
        got.push(n.payload);
    }
    assert_eq!(got, vec!["0", "1", "2", ""]);

    // Nothing more: Ok(None) promptly.
    let started = Instant::now();
    assert_eq!(
        listener
            .next_notification(Duration::from_millis(100))
            .unwrap(),
        None
    );
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(90), "{waited:?}");
    assert!(waited < Duration::from_secs(2), "{waited:?}");

    // After UNLISTEN nothing arrives.
    listener.unlisten(&channel).unwrap();
    sender
        .execute("SELECT pg_notify($1, 'late')", &[&channel])
        .unwrap();
    // A round trip on the listener makes sure anything sent has been read.
    listener.query_one("SELECT 1::int4", &[]).unwrap();
    assert_eq!(
        listener
            .next_notification(Duration::from_millis(50))
            .unwrap(),
        None
    );
    assert!(listener.drain_notifications().is_empty());
}

#[test]
fn listen_notify() {
    notify_roundtrip();
}

#[test]
fn listen_notify_in_a_coroutine() {
    in_coroutine(notify_roundtrip);
}

#[test]
fn notification_timeout_with_nothing_is_prompt() {
    let conn = connect();
    conn.listen("lg_silent_channel_never_notified").unwrap();
    let started = Instant::now();
    assert_eq!(
        conn.next_notification(Duration::from_millis(100)).unwrap(),
        None
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let started = Instant::now();
    assert_eq!(conn.next_notification(Duration::ZERO).unwrap(), None);
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn notification_wakes_a_waiting_coroutine() {
    let listener = Arc::new(connect());
    let channel = lifeguard_tests::unique_name("lg_wake");
    listener.listen(&channel).unwrap();
    let waiter = {
        let listener = listener.clone();
        may::go!(move || listener.next_notification(Duration::from_secs(5)))
    };
    std::thread::sleep(Duration::from_millis(100));
    let sender = connect();
    let started = Instant::now();
    sender
        .execute("SELECT pg_notify($1, 'wake')", &[&channel])
        .unwrap();
    let n = waiter
        .join()
        .unwrap()
        .unwrap()
        .expect("woken with a notification");
    assert_eq!(n.payload, "wake");
    assert!(started.elapsed() < Duration::from_secs(2));
}

// ---------------------------------------------------------------------------------------------
// COPY

fn copy_text_roundtrip() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY, name text, note text");
    let mut data = String::new();
    for i in 0..10_000 {
        let note = if i % 7 == 0 {
            "\\N".to_string()
        } else {
            format!("n\\t{i}")
        };
        data.push_str(&format!("{i}\tname {i} ü\t{note}\n"));
    }
    let mut copy = conn
        .copy_in(&format!("COPY {t} (id, name, note) FROM STDIN"))
        .unwrap();
    // Uneven writes, across the 64 KiB chunking.
    for piece in data.as_bytes().chunks(7_777) {
        copy.write_all(piece).unwrap();
    }
    assert_eq!(copy.finish().unwrap(), 10_000);
    assert_eq!(count(&conn, &t), 10_000);
    let nulls: i64 = conn
        .query_one(&format!("SELECT count(*) FROM {t} WHERE note IS NULL"), &[])
        .unwrap()
        .get(0);
    assert_eq!(nulls, (0..10_000).filter(|i| i % 7 == 0).count() as i64);
    let note: String = conn
        .query_one(&format!("SELECT note FROM {t} WHERE id = 1"), &[])
        .unwrap()
        .get(0);
    assert_eq!(note, "n\t1");

    // copy_out gives back exactly what went in.
    let out = conn
        .copy_out(&format!(
            "COPY (SELECT id, name, note FROM {t} ORDER BY id) TO STDOUT"
        ))
        .unwrap()
        .read_all()
        .unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), data);
    // The connection is in step afterwards.
    assert_eq!(
        conn.query_one("SELECT 5::int4", &[])
            .unwrap()
            .get::<_, i32>(0),
        5
    );
}

#[test]
fn copy_in_text_and_copy_out() {
    copy_text_roundtrip();
}

#[test]
fn copy_in_a_coroutine() {
    in_coroutine(|| {
        copy_text_roundtrip();
        copy_binary_rows();
    });
}

#[test]
fn copy_in_csv() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4, label text, amount numeric");
    let mut copy = conn
        .copy_in(&format!(
            "COPY {t} (id, label, amount) FROM STDIN (FORMAT csv, HEADER true)"
        ))
        .unwrap();
    copy.send(b"id,label,amount\n").unwrap();
    copy.send(b"1,\"with, comma\",1.50\n2,\"quote \"\"q\"\"\",-3\n3,,0\n")
        .unwrap();
    copy.send(b"4,\"multi\nline\",7\n").unwrap();
    assert_eq!(copy.finish().unwrap(), 4);
    let rows = conn
        .query(&format!("SELECT id, label FROM {t} ORDER BY id"), &[])
        .unwrap();
    let labels: Vec<Option<String>> = rows.iter().map(|r| r.get(1)).collect();
    assert_eq!(
        labels,
        vec![
            Some("with, comma".to_string()),
            Some("quote \"q\"".to_string()),
            None,
            Some("multi\nline".to_string()),
        ]
    );
    let out = conn
        .copy_out(&format!(
            "COPY (SELECT id, amount FROM {t} ORDER BY id) TO STDOUT (FORMAT csv)"
        ))
        .unwrap();
    let mut text = String::new();
    std::io::Read::read_to_string(&mut { out }, &mut text).unwrap();
    assert_eq!(text, "1,1.50\n2,-3\n3,0\n4,7\n");
}

fn copy_binary_rows() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4, label text, n int8");
    let copy = conn
        .copy_in(&format!(
            "COPY {t} (id, label, n) FROM STDIN (FORMAT binary)"
        ))
        .unwrap();
    let mut w = BinaryCopyWriter::new(copy, &[Type::INT4, Type::TEXT, Type::INT8]).unwrap();
    for i in 0..1000i32 {
        let label = if i % 10 == 0 {
            None
        } else {
            Some(format!("row {i} ✓"))
        };
        w.write(&[&i, &label, &(i64::from(i) << 33)]).unwrap();
    }
    // A wrong value count is a count error, a wrong type an encode error.
    assert!(matches!(
        w.write(&[&1i32]),
        Err(Error::ParameterCount {
            expected: 3,
            given: 1
        })
    ));
    match w.write(&[&1i32, &"x", &"not an int8"]) {
        Err(Error::Encode { index, pg_type, .. }) => {
            assert_eq!(index, 2);
            assert_eq!(pg_type, "int8");
        }
        other => panic!("expected Encode, got {other:?}"),
    }
    assert_eq!(w.finish().unwrap(), 1000);
    assert_eq!(count(&conn, &t), 1000);
    let row = conn
        .query_one(&format!("SELECT label, n FROM {t} WHERE id = 7"), &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "row 7 ✓");
    assert_eq!(row.get::<_, i64>(1), 7i64 << 33);
    let nulls: i64 = conn
        .query_one(
            &format!("SELECT count(*) FROM {t} WHERE label IS NULL"),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(nulls, 100);
}

#[test]
fn copy_in_binary() {
    copy_binary_rows();
}

#[test]
fn dropping_an_unfinished_copy_in_aborts_it() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4");
    {
        let mut copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).unwrap();
        for i in 0..100 {
            copy.send(format!("{i}\n").as_bytes()).unwrap();
        }
        copy.flush().unwrap();
    }
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert_eq!(count(&conn, &t), 0);
    // Still works, COPY included.
    let mut copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).unwrap();
    copy.send(b"1\n2\n").unwrap();
    assert_eq!(copy.finish().unwrap(), 2);
    assert_eq!(count(&conn, &t), 2);
}

#[test]
fn copy_in_bad_row_is_a_db_error() {
    let mut conn = connect();
    let t = scratch_table(&conn, "id int4");
    let mut copy = conn.copy_in(&format!("COPY {t} FROM STDIN")).unwrap();
    copy.send(b"1\n2\nnot-a-number\n4\n").unwrap();
    let e = copy.finish().unwrap_err();
    assert_eq!(e.sqlstate(), Some("22P02"), "{e:?}");
    assert!(matches!(e, Error::Db(_)));
    assert_eq!(count(&conn, &t), 0);
    assert_eq!(
        conn.query_one("SELECT 1::int4", &[])
            .unwrap()
            .get::<_, i32>(0),
        1
    );

    // Errors before any data: a missing table, and a statement that is not COPY FROM STDIN.
    // (CopyIn is not Debug, so no unwrap_err.)
    let Err(e) = conn.copy_in("COPY lg_no_such_copy_table FROM STDIN") else {
        panic!("copy_in into a missing table succeeded");
    };
    assert_eq!(e.sqlstate(), Some("42P01"));
    assert!(conn.copy_in("SELECT 1").is_err());
    // copy_in of a COPY TO STDOUT is refused, and the connection stays in step.
    let Err(e) = conn.copy_in("COPY (SELECT g FROM generate_series(1, 1000) g) TO STDOUT") else {
        panic!("copy_in accepted COPY TO STDOUT");
    };
    assert!(matches!(e, Error::InvalidUse(_)), "{e:?}");
    assert_eq!(
        conn.query_one("SELECT 7::int4", &[])
            .unwrap()
            .get::<_, i32>(0),
        7
    );
    // A plain query refuses COPY FROM STDIN.
    assert!(conn.execute(&format!("COPY {t} FROM STDIN"), &[]).is_err());
    assert!(conn.batch_execute(&format!("COPY {t} FROM STDIN")).is_err());
    assert_eq!(
        conn.query_one("SELECT 2::int4", &[])
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[test]
fn copy_out_of_copy_from_stdin_is_an_error_not_a_hang() {
    let (done, result) = std::sync::mpsc::channel();
    // Run on a thread so a hang fails the test instead of wedging the harness.
    std::thread::spawn(move || {
        let mut conn = connect();
        let t = scratch_table(&conn, "id int4");
        let outcome = conn
            .copy_out(&format!("COPY {t} FROM STDIN"))
            .map(|_| ())
            .map_err(|e| e.to_string());
        let usable = conn.query_one("SELECT 1::int4", &[]).is_ok();
        let _ = done.send((outcome, usable));
    });
    let (outcome, usable) = result
        .recv_timeout(Duration::from_secs(5))
        .expect("copy_out(\"COPY ... FROM STDIN\") did not return within 5 s");
    assert!(outcome.is_err(), "copy_out accepted COPY FROM STDIN");
    assert!(usable, "the connection is out of step afterwards");
}

#[test]
fn copy_out_dropped_early_keeps_the_connection_in_step() {
    let mut conn = connect();
    {
        let mut out = conn
            .copy_out("COPY (SELECT g FROM generate_series(1, 50000) g) TO STDOUT")
            .unwrap();
        let first = out.next_chunk().unwrap().expect("data");
        assert!(first.starts_with(b"1\n"));
    }
    assert_eq!(
        conn.query_one("SELECT 3::int4", &[])
            .unwrap()
            .get::<_, i32>(0),
        3
    );
}

// ---------------------------------------------------------------------------------------------
// Server state

#[test]
fn server_parameters_and_process_id() {
    let conn = connect();
    let version = conn.parameter("server_version").expect("server_version");
    assert!(version.starts_with("15"), "{version}");
    assert_eq!(conn.parameter("client_encoding").as_deref(), Some("UTF8"));
    assert_eq!(conn.parameter("integer_datetimes").as_deref(), Some("on"));
    assert!(conn.parameter("lg_no_such_parameter").is_none());
    let pid: i32 = conn
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    assert_eq!(conn.process_id(), pid);
    assert!(!conn.is_broken());
    // A ParameterStatus sent mid-session updates the value.
    conn.batch_execute("SET application_name = 'lg_param_test'")
        .unwrap();
    assert_eq!(
        conn.parameter("application_name").as_deref(),
        Some("lg_param_test")
    );
}

#[test]
fn concurrent_notification_waiters_are_all_woken() {
    let listener = Arc::new(connect());
    let channel = lifeguard_tests::unique_name("lg_two");
    listener.listen(&channel).unwrap();
    let waiters: Vec<_> = (0..2)
        .map(|_| {
            let listener = listener.clone();
            may::go!(move || {
                let started = Instant::now();
                let n = listener.next_notification(Duration::from_secs(5));
                (n, started.elapsed())
            })
        })
        .collect();
    // Let both coroutines park.
    std::thread::sleep(Duration::from_millis(200));
    let sender = connect();
    sender
        .batch_execute(&format!(
            "NOTIFY \"{channel}\", 'a'; NOTIFY \"{channel}\", 'b'"
        ))
        .unwrap();
    let mut payloads = Vec::new();
    for w in waiters {
        let (n, took) = w.join().unwrap();
        let n = n
            .unwrap()
            .expect("each waiter gets one of the two notifications");
        payloads.push(n.payload);
        assert!(
            took < Duration::from_secs(2),
            "a waiter slept {took:?} although a notification was queued"
        );
    }
    payloads.sort();
    assert_eq!(payloads, vec!["a", "b"]);
}

#[test]
fn deferred_constraint_fails_at_commit() {
    let mut conn = connect();
    let parent = scratch_table(&conn, "id int4 PRIMARY KEY");
    let child = scratch_table(
        &conn,
        &format!("id int4, p int4 REFERENCES {parent} (id) DEFERRABLE INITIALLY DEFERRED"),
    );
    let tx = conn.begin().unwrap();
    tx.execute(&format!("INSERT INTO {child} VALUES (1, 42)"), &[])
        .unwrap();
    let e = tx.commit().unwrap_err();
    assert!(matches!(e, Error::ForeignKeyViolation { .. }), "{e:?}");
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    let e = conn
        .transaction(|tx| tx.execute(&format!("INSERT INTO {child} VALUES (1, 43)"), &[]))
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("23503"));
    assert_eq!(count(&conn, &child), 0);
}

#[test]
fn domain_columns_decode_as_their_base_type() {
    let conn = connect();
    let d = lifeguard_tests::unique_name("lg_dom");
    conn.batch_execute(&format!("CREATE DOMAIN {d} AS int4 CHECK (VALUE > 0)"))
        .unwrap();
    let r = conn
        .query_one(&format!("SELECT 5::{d}"), &[])
        .map(|r| r.try_get::<_, i32>(0));
    conn.batch_execute(&format!("DROP DOMAIN {d}")).unwrap();
    assert_eq!(r.unwrap().unwrap(), 5);
}

#[test]
fn listen_quotes_channel_names() {
    let conn = connect();
    let other = connect();
    let channel = format!("{} we\"ird Chan", lifeguard_tests::unique_name("lg"));
    conn.listen(&channel).unwrap();
    other
        .execute("SELECT pg_notify($1, 'x')", &[&channel])
        .unwrap();
    let n = conn
        .next_notification(Duration::from_secs(5))
        .unwrap()
        .expect("notification");
    assert_eq!(n.channel, channel);
    assert!(matches!(conn.listen(""), Err(Error::InvalidUse(_))));
}

// ---------------------------------------------------------------------------------------------
// Pipelined batches

#[test]
fn query_pipelined_returns_every_run_in_order() {
    let conn = connect();
    let ids: Vec<i32> = (1..=20).rev().collect();
    let params = one_each(&ids);
    let batch: Vec<_> = params.iter().map(|p| &p[..]).collect();
    let results = conn
        .query_pipelined(
            "SELECT $1::int4 * 10 FROM generate_series(1, $1::int4 % 3)",
            &batch,
        )
        .unwrap();
    assert_eq!(results.len(), ids.len());
    for (id, rows) in ids.iter().zip(&results) {
        assert_eq!(rows.len() as i32, id % 3, "rows of run {id}");
        for row in rows {
            assert_eq!(row.get::<_, i32>(0), id * 10);
        }
    }
    assert!(conn.query_pipelined("SELECT 1", &[]).unwrap().is_empty());
}

#[test]
fn query_pipelined_fails_as_one_and_commits_nothing() {
    let mut conn = connect();
    let table = scratch_table(&conn, "id int4 PRIMARY KEY");
    let ids = [1, 2, 2, 3];
    let params = one_each(&ids);
    let batch: Vec<_> = params.iter().map(|p| &p[..]).collect();
    let sql = format!("INSERT INTO {} (id) VALUES ($1) RETURNING id", &*table);
    let err = conn.query_pipelined(&sql, &batch).unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err}");
    assert_eq!(
        count(&conn, &table),
        0,
        "the runs before the error rolled back"
    );
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);

    // In a transaction the batch is part of it.
    let unique = [4, 5, 6];
    let params = one_each(&unique);
    let batch: Vec<_> = params.iter().map(|p| &p[..]).collect();
    conn.transaction(|tx| {
        let inserted = tx.query_pipelined(&sql, &batch)?;
        assert_eq!(inserted.len(), 3);
        assert_eq!(count(tx, &table), 3);
        Err::<(), _>(Error::NotFound)
    })
    .unwrap_err();
    assert_eq!(count(&conn, &table), 0, "rolled back with its transaction");
}

#[test]
fn query_pipelined_shares_the_connection_with_other_callers() {
    let conn = Arc::new(connect());
    in_coroutine(move || {
        let workers: Vec<_> = (0..32i32)
            .map(|w| {
                let conn = conn.clone();
                may::go!(move || {
                    for round in 0..20i32 {
                        let values: Vec<i32> =
                            (0..w % 7).map(|i| w * 1000 + round * 10 + i).collect();
                        let params = one_each(&values);
                        let batch: Vec<_> = params.iter().map(|p| &p[..]).collect();
                        let got = conn.query_pipelined("SELECT $1::int4", &batch).unwrap();
                        let got: Vec<i32> = got.iter().map(|rows| rows[0].get(0)).collect();
                        assert_eq!(got, values);
                        let single: i32 = conn.query_one("SELECT $1::int4", &[&w]).unwrap().get(0);
                        assert_eq!(single, w);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
    });
}

#[test]
fn query_pipelined_keeps_a_deadline() {
    let conn = connect();
    let sleeps = [0, 1];
    let params = one_each(&sleeps);
    let batch: Vec<_> = params.iter().map(|p| &p[..]).collect();
    let started = Instant::now();
    let err = conn
        .timeout(Duration::from_millis(200))
        .query_pipelined("SELECT pg_sleep($1::int4)", &batch)
        .unwrap_err();
    assert!(matches!(err, Error::Timeout(_)), "{err}");
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(conn.query_one("SELECT 7", &[]).unwrap().get::<_, i32>(0), 7);
}
