//! Every error kind of `lifeguard_core::Error`, provoked on the real server.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use lifeguard_core::pg::{Config, Connection, IsolationLevel};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{connect, init, scratch_table};
use lifeguard_tests::{app_url, pg_port, with_password};

fn expect_err<T: std::fmt::Debug>(r: lifeguard_core::Result<T>, what: &str) -> Error {
    match r {
        Ok(v) => panic!("{what}: expected an error, got {v:?}"),
        Err(e) => e,
    }
}

#[test]
fn unique_violation_names_its_constraint() {
    let conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY, email text UNIQUE");
    conn.execute(
        &format!("INSERT INTO {t} (id, email) VALUES (1, 'a@example.com')"),
        &[],
    )
    .unwrap();
    let e = expect_err(
        conn.execute(
            &format!("INSERT INTO {t} (id, email) VALUES (2, $1)"),
            &[&"a@example.com"],
        ),
        "duplicate email",
    );
    let expected = format!("{t}_email_key");
    match &e {
        Error::UniqueViolation {
            constraint: Some(c),
            ..
        } => assert_eq!(c, &expected),
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    assert_eq!(e.constraint(), Some(expected.as_str()));
    assert_eq!(e.sqlstate(), Some("23505"));
    assert!(!e.is_retryable());
    assert!(!e.is_connection());
    let db = e.db_error().expect("db error");
    assert_eq!(db.table.as_deref(), Some(t.name()));
    assert_eq!(db.schema.as_deref(), Some("public"));
    assert_eq!(db.severity, "ERROR");
    let detail = db.detail.as_deref().expect("detail");
    assert!(detail.contains("a@example.com"), "{detail}");
    let text = e.to_string();
    assert!(text.contains("23505"), "{text}");
    assert!(text.contains(&db.message), "{text}");
    // The primary key, too.
    let e = expect_err(
        conn.execute(&format!("INSERT INTO {t} (id) VALUES (1)"), &[]),
        "duplicate id",
    );
    assert_eq!(e.constraint(), Some(format!("{t}_pkey").as_str()));
    // std::error::Error::source is the DbError.
    let source = std::error::Error::source(&e).expect("source");
    assert!(source.to_string().contains("23505"));
}

#[test]
fn foreign_key_violation() {
    let conn = connect();
    let parent = scratch_table(&conn, "id int4 PRIMARY KEY");
    let child = scratch_table(
        &conn,
        &format!(
            "id int4 PRIMARY KEY, parent_id int4 CONSTRAINT {parent}_fk REFERENCES {parent} (id)"
        ),
    );
    let e = expect_err(
        conn.execute(
            &format!("INSERT INTO {child} (id, parent_id) VALUES (1, $1)"),
            &[&99i32],
        ),
        "dangling reference",
    );
    let expected = format!("{parent}_fk");
    assert!(
        matches!(&e, Error::ForeignKeyViolation { constraint: Some(c), .. } if *c == expected),
        "{e:?}"
    );
    assert_eq!(e.sqlstate(), Some("23503"));
    assert_eq!(e.db_error().unwrap().table.as_deref(), Some(child.name()));
    drop(child);
}

#[test]
fn not_null_violation_names_its_column() {
    let conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY, name text NOT NULL");
    let e = expect_err(
        conn.execute(
            &format!("INSERT INTO {t} (id, name) VALUES (1, $1)"),
            &[&None::<String>],
        ),
        "NULL name",
    );
    assert!(
        matches!(&e, Error::NotNullViolation { column: Some(c), .. } if c == "name"),
        "{e:?}"
    );
    assert_eq!(e.sqlstate(), Some("23502"));
    assert_eq!(e.db_error().unwrap().table.as_deref(), Some(t.name()));
}

#[test]
fn check_violation_names_its_constraint() {
    let conn = connect();
    let t = scratch_table(&conn, "id int4 PRIMARY KEY, qty int4 CHECK (qty > 0)");
    let e = expect_err(
        conn.execute(
            &format!("INSERT INTO {t} (id, qty) VALUES (1, $1)"),
            &[&-5i32],
        ),
        "negative qty",
    );
    let expected = format!("{t}_qty_check");
    assert!(
        matches!(&e, Error::CheckViolation { constraint: Some(c), .. } if *c == expected),
        "{e:?}"
    );
    assert_eq!(e.sqlstate(), Some("23514"));
}

#[test]
fn serialization_failure_between_two_serializable_transactions() {
    let setup = connect();
    let t = scratch_table(&setup, "class int4 NOT NULL, value int4 NOT NULL");
    setup
        .batch_execute(&format!(
            "INSERT INTO {t} VALUES (1, 10), (1, 20), (2, 100), (2, 200)"
        ))
        .unwrap();
    let mut c1 = connect();
    let mut c2 = connect();
    let tx1 = c1
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .begin()
        .unwrap();
    let tx2 = c2
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .begin()
        .unwrap();
    // Classic write skew: each reads the other's class, then writes into it.
    let sum = format!("SELECT sum(value)::int8 FROM {t} WHERE class = $1");
    let insert = format!("INSERT INTO {t} VALUES ($1, $2)");
    let s1: i64 = tx1.query_one(&sum, &[&1i32]).unwrap().get(0);
    let s2: i64 = tx2.query_one(&sum, &[&2i32]).unwrap().get(0);
    tx1.execute(&insert, &[&2i32, &(s1 as i32)]).unwrap();
    let second_write = tx2.execute(&insert, &[&1i32, &(s2 as i32)]);
    tx1.commit().expect("the first committer wins");
    let e = match second_write {
        Err(e) => {
            drop(tx2);
            e
        }
        Ok(_) => expect_err(tx2.commit(), "second commit"),
    };
    assert!(matches!(e, Error::SerializationFailure(_)), "{e:?}");
    assert_eq!(e.sqlstate(), Some("40001"));
    assert!(e.is_retryable());
    assert!(e.to_string().contains("40001"), "{e}");
    // Both connections still work, and only tx1's row is there.
    assert_eq!(
        c2.query_one("SELECT 1::int4", &[])
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    let n: i64 = c1
        .query_one(&format!("SELECT count(*) FROM {t}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 5);
}

#[test]
fn deadlock_between_two_connections() {
    init();
    let setup = connect();
    let t = scratch_table(&setup, "id int4 PRIMARY KEY, v int4 NOT NULL");
    setup
        .batch_execute(&format!("INSERT INTO {t} VALUES (1, 0), (2, 0)"))
        .unwrap();
    let barrier = Arc::new(Barrier::new(2));
    let name = t.name().to_owned();
    let worker = |first: i32, second: i32| {
        let barrier = barrier.clone();
        let table = name.clone();
        std::thread::spawn(move || -> lifeguard_core::Result<()> {
            let mut conn = connect();
            let tx = conn.begin()?;
            // Detect the deadlock quickly (superuser-only setting).
            tx.batch_execute("SET LOCAL deadlock_timeout = '100ms'")?;
            let update = format!("UPDATE {table} SET v = v + 1 WHERE id = $1");
            tx.execute(&update, &[&first])?;
            barrier.wait();
            let r = tx.execute(&update, &[&second]);
            match r {
                Ok(_) => tx.commit(),
                Err(e) => {
                    tx.rollback()?;
                    Err(e)
                }
            }
        })
    };
    let started = Instant::now();
    let a = worker(1, 2);
    let b = worker(2, 1);
    let ra = a.join().unwrap();
    let rb = b.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let errors: Vec<Error> = [ra, rb].into_iter().filter_map(|r| r.err()).collect();
    assert_eq!(errors.len(), 1, "exactly one victim: {errors:?}");
    let e = &errors[0];
    assert!(matches!(e, Error::Deadlock(_)), "{e:?}");
    assert_eq!(e.sqlstate(), Some("40P01"));
    assert!(e.is_retryable());
    let sum: i64 = setup
        .query_one(&format!("SELECT sum(v)::int8 FROM {t}"), &[])
        .unwrap()
        .get(0);
    assert_eq!(sum, 2, "only the survivor's two updates remain");
}

#[test]
fn syntax_error_has_sqlstate_and_position() {
    let conn = connect();
    let e = expect_err(conn.query("SELECT 1 FROM WHERE", &[]), "bad SQL");
    let Error::Db(db) = &e else {
        panic!("expected Error::Db, got {e:?}");
    };
    assert_eq!(db.code, "42601");
    assert_eq!(db.position, Some(15));
    assert!(db.message.contains("syntax error"), "{}", db.message);
    let text = e.to_string();
    assert!(
        text.contains("42601") && text.contains("syntax error"),
        "{text}"
    );
    // Simple protocol too.
    let e = expect_err(conn.simple_query("SELEC 1"), "bad simple SQL");
    assert_eq!(e.sqlstate(), Some("42601"));
    assert_eq!(e.db_error().unwrap().position, Some(1));
    // The connection is usable afterwards.
    assert_eq!(
        conn.query_one("SELECT 2::int4", &[])
            .unwrap()
            .get::<_, i32>(0),
        2
    );
}

#[test]
fn undefined_table() {
    let conn = connect();
    let e = expect_err(
        conn.query("SELECT * FROM lg_no_such_table_anywhere", &[]),
        "missing table",
    );
    assert!(matches!(e, Error::Db(_)), "{e:?}");
    assert_eq!(e.sqlstate(), Some("42P01"));
    assert!(e.to_string().contains("lg_no_such_table_anywhere"), "{e}");
}

#[test]
fn query_one_and_query_opt_row_counts() {
    let conn = connect();
    let none = "SELECT 1::int4 WHERE false";
    let two = "SELECT * FROM (VALUES (1), (2)) v(x)";
    assert!(matches!(conn.query_one(none, &[]), Err(Error::NotFound)));
    assert!(matches!(
        conn.query_one(two, &[]),
        Err(Error::TooManyRows(2))
    ));
    assert!(conn.query_opt(none, &[]).unwrap().is_none());
    assert!(matches!(
        conn.query_opt(two, &[]),
        Err(Error::TooManyRows(2))
    ));
    assert!(conn.query_opt("SELECT 1::int4", &[]).unwrap().is_some());
    assert_eq!(Error::NotFound.to_string(), "no row found");
    assert!(Error::TooManyRows(2).to_string().contains('2'));
    assert!(Error::NotFound.sqlstate().is_none());
}

#[test]
fn wrong_scram_password() {
    init();
    let e = expect_err(
        Connection::open(&with_password(&app_url(), "definitely-wrong")),
        "wrong password",
    );
    assert!(matches!(e, Error::Db(_)), "{e:?}");
    assert_eq!(e.sqlstate(), Some("28P01"));
    assert!(e.to_string().contains("28P01"), "{e}");
}

#[test]
fn unknown_database() {
    init();
    let url = format!("postgres://postgres@127.0.0.1:{}/lg_no_such_db", pg_port());
    let e = expect_err(Connection::open(&url), "unknown database");
    assert!(matches!(e, Error::Db(_)), "{e:?}");
    assert_eq!(e.sqlstate(), Some("3D000"));
    assert!(e.to_string().contains("lg_no_such_db"), "{e}");
}

#[test]
fn unknown_user() {
    init();
    // The catch-all rule is scram-sha-256, so the server runs a mock exchange and then says no.
    let url = format!(
        "postgres://lg_nosuchuser:pw@127.0.0.1:{}/lifeguard",
        pg_port()
    );
    let e = expect_err(Connection::open(&url), "unknown user");
    assert!(matches!(e, Error::Db(_)), "{e:?}");
    let code = e.sqlstate().unwrap();
    assert!(code == "28000" || code == "28P01", "{e}");
    // Without a password the client cannot even answer the challenge.
    let url = format!("postgres://lg_nosuchuser@127.0.0.1:{}/lifeguard", pg_port());
    let e = expect_err(Connection::open(&url), "unknown user without password");
    match &e {
        Error::Config(m) => assert!(m.contains("password"), "{m}"),
        Error::Db(db) => assert!(db.code == "28000" || db.code == "28P01", "{db}"),
        other => panic!("expected Config or Db, got {other:?}"),
    }
}

#[test]
fn refused_port_is_a_connection_error_naming_the_target() {
    init();
    let started = Instant::now();
    let e = expect_err(
        Connection::open("postgres://postgres@127.0.0.1:1/lifeguard"),
        "nothing listens on port 1",
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(e.is_connection(), "{e:?}");
    let Error::Connection(inner) = &e else {
        unreachable!()
    };
    assert!(inner.context.contains("127.0.0.1:1"), "{}", inner.context);
    let io = inner.source.as_ref().expect("an I/O cause");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    let text = e.to_string();
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(!e.is_retryable());
    // A missing Unix socket names its path.
    let e = expect_err(
        Connection::open("host=/nonexistent/lg_dir port=5999 user=postgres"),
        "missing socket",
    );
    assert!(e.is_connection(), "{e:?}");
    assert!(
        e.to_string().contains("/nonexistent/lg_dir/.s.PGSQL.5999"),
        "{e}"
    );
}

fn config_error(s: &str) -> String {
    init();
    match Config::parse(s) {
        Err(Error::Config(m)) => {
            // Opening fails the same way, before any traffic.
            match Connection::open(s) {
                Err(Error::Config(m2)) => assert_eq!(m, m2),
                other => panic!("open({s:?}): expected Config, got {other:?}"),
            }
            m
        }
        other => panic!("parse({s:?}): expected Config, got {other:?}"),
    }
}

#[test]
fn malformed_connection_strings_are_config_errors() {
    let port = pg_port();
    let m = config_error(&format!(
        "postgres://postgres@127.0.0.1:{port}/lifeguard?frobnicate=1"
    ));
    assert!(m.contains("frobnicate"), "{m}");
    let m = config_error("host=127.0.0.1 bogus_key=7 user=postgres");
    assert!(m.contains("bogus_key"), "{m}");
    let m = config_error("postgres://postgres@127.0.0.1:notaport/lifeguard");
    assert!(m.contains("notaport"), "{m}");
    let m = config_error("postgres://postgres@127.0.0.1/lifeguard?sslmode=required");
    assert!(m.contains("sslmode"), "{m}");
    let m = config_error("mysql://root@localhost/db");
    assert!(m.contains("mysql"), "{m}");
    let m = config_error("host='unterminated");
    assert!(m.contains("host"), "{m}");
    let e = Error::config("x");
    assert!(e.to_string().starts_with("configuration error"), "{e}");
}

#[test]
fn errors_inside_a_coroutine() {
    lifeguard_tests::pg::in_coroutine(|| {
        let conn = connect();
        let e = expect_err(conn.query("SELECT * FROM lg_nope_nope", &[]), "missing");
        assert_eq!(e.sqlstate(), Some("42P01"));
        let e = expect_err(
            Connection::open("postgres://postgres@127.0.0.1:1/lifeguard"),
            "refused",
        );
        assert!(e.is_connection());
        assert_eq!(
            conn.query_one("SELECT 1::int4", &[])
                .unwrap()
                .get::<_, i32>(0),
            1
        );
    });
}
