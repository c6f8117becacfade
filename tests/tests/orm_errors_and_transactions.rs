//! Errors and transactions through the ORM against the real primary: error kinds
//! (unique, foreign-key, not-null and check violations), decode and encode errors naming
//! the column or parameter, call timeouts, and transactions (commit, rollback on error, on
//! panic and on drop, savepoints, isolation, retried serialization conflicts).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use lifeguard_core::model::ActiveValue::{self, Set};
use lifeguard_core::model::{LifeModel, LifeRecord};
use lifeguard_core::pg::{IsolationLevel, TransactionStatus};
use lifeguard_core::query::{ColumnExpr, Expr};
use lifeguard_core::{Error, Executor, ExecutorExt, FromRow};
use lifeguard_tests::orm::{
    connect, email, new_user, run_id, user_exists, user_record, Mismatch, MismatchRecord, Post,
    PostRecord, User, UserColumn, UserRecord,
};
use rust_decimal::Decimal;

// ------------------------------------------------------------------ errors --

/// `e` is a decode error naming `column`, the Rust type and the PostgreSQL type.
fn assert_decode(e: &Error, column_name: &str, rust: &str, pg: &str) {
    match e {
        Error::Decode {
            column,
            rust_type,
            pg_type,
            ..
        } => {
            assert_eq!(column, column_name);
            assert!(rust_type.contains(rust), "{rust_type}");
            assert_eq!(pg_type, pg);
        }
        other => panic!("expected Decode, got {other:?}"),
    }
}

#[test]
fn unique_violation_names_the_constraint() {
    let conn = connect();
    let run = run_id("b_uniq");
    let first = new_user(&conn, &email(&run, 0), &run);
    let e = user_record(&email(&run, 0), &run)
        .insert(&conn)
        .unwrap_err();
    match &e {
        Error::UniqueViolation { constraint, db } => {
            assert_eq!(constraint.as_deref(), Some("users_email_key"));
            assert_eq!(db.schema.as_deref(), Some("orm_test"));
            assert_eq!(db.table.as_deref(), Some("users"));
        }
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    // Through an update too.
    let second = new_user(&conn, &email(&run, 1), &run);
    let mut change = second.into_record();
    change.email = Set(first.email.clone());
    let e = change.update(&conn).unwrap_err();
    assert!(
        matches!(&e, Error::UniqueViolation { constraint: Some(c), .. } if c == "users_email_key"),
        "{e:?}"
    );
}

#[test]
fn foreign_key_not_null_and_check_violations() {
    let conn = connect();
    let run = run_id("b_cons");
    let e = PostRecord {
        author_id: Set(-1),
        title: Set("orphan".into()),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    assert!(
        matches!(&e, Error::ForeignKeyViolation { constraint: Some(c), .. } if c == "posts_author_id_fkey"),
        "{e:?}"
    );
    // A NOT NULL column left NotSet without a default.
    let e = UserRecord {
        name: Set(Some(run.clone())),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    assert!(
        matches!(&e, Error::NotNullViolation { column: Some(c), .. } if c == "email"),
        "{e:?}"
    );
    let author = new_user(&conn, &email(&run, 0), &run);
    let e = PostRecord {
        author_id: Set(author.id),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    assert!(
        matches!(&e, Error::NotNullViolation { column: Some(c), .. } if c == "post_title"),
        "{e:?}"
    );
    // CHECK, on insert and on an expression update.
    let e = UserRecord {
        email: Set(email(&run, 1)),
        balance: Set(Decimal::new(-1, 2)),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    assert!(
        matches!(&e, Error::CheckViolation { constraint: Some(c), .. } if c == "users_balance_check"),
        "{e:?}"
    );
    let mut change = author.clone().into_record();
    change.balance = ActiveValue::Expr(UserColumn::Balance.sub(Decimal::ONE));
    let e = change.update(&conn).unwrap_err();
    assert!(matches!(&e, Error::CheckViolation { .. }), "{e:?}");
    // None of the failures left anything behind.
    assert!(!user_exists(&conn, &email(&run, 1)));
    assert_eq!(
        User::find_by_id(author.id)
            .one(&conn)
            .unwrap()
            .unwrap()
            .balance,
        Decimal::ZERO
    );
}

#[test]
fn decode_mismatch_names_column_and_types() {
    let conn = connect();
    let id: i64 = conn
        .query_one(
            "INSERT INTO orm_test.mismatch (n) VALUES ('not a number') RETURNING id",
            &[],
        )
        .unwrap()
        .get(0);
    // The model says i32; the column is text.
    let e = Mismatch::find_by_id(id).one(&conn).unwrap_err();
    assert_decode(&e, "n", "i32", "text");
    let text = e.to_string();
    assert!(
        text.contains("`n`") && text.contains("i32") && text.contains("text"),
        "{text}"
    );
    assert!(matches!(
        Mismatch::find()
            .filter(lifeguard_tests::orm::MismatchColumn::Id.eq(id))
            .all(&conn),
        Err(Error::Decode { .. })
    ));
    // Writing the wrong type is an Encode error naming the parameter, before anything runs.
    let e = MismatchRecord {
        n: Set(5),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    match &e {
        Error::Encode { index, pg_type, .. } => {
            assert_eq!(*index, 0);
            assert_eq!(pg_type, "text");
        }
        other => panic!("expected Encode, got {other:?}"),
    }
    // A raw-SQL projection with a wrong field type.
    #[derive(Debug, FromRow)]
    struct WrongEmail {
        #[allow(dead_code)]
        id: i64,
        #[allow(dead_code)]
        email: i32,
    }
    let run = run_id("b_dec");
    let u = new_user(&conn, &email(&run, 0), &run);
    let e = conn
        .query_as::<WrongEmail>(
            "SELECT id, email FROM orm_test.users WHERE id = $1",
            &[&u.id],
        )
        .unwrap_err();
    assert_decode(&e, "email", "i32", "text");
    // A tuple projection with the wrong type, by position.
    let e = User::find()
        .columns([UserColumn::Email.expr()])
        .filter(UserColumn::Id.eq(u.id))
        .into_model::<(i64,)>()
        .all(&conn)
        .unwrap_err();
    assert!(
        matches!(&e, Error::Decode { column, pg_type, .. } if column == "email" && pg_type == "text"),
        "{e:?}"
    );
}

#[test]
fn a_filter_value_of_the_wrong_width_is_an_encode_error() {
    let conn = connect();
    // `visits` is int4: an i64 value is refused before the statement runs, naming $1.
    let e = User::find()
        .filter(UserColumn::Visits.eq(1i64))
        .all(&conn)
        .unwrap_err();
    match &e {
        Error::Encode { index, pg_type, .. } => {
            assert_eq!(*index, 0);
            assert_eq!(pg_type, "int4");
        }
        other => panic!("expected Encode, got {other:?}"),
    }
    // The connection is fine afterwards.
    assert!(User::find_by_id(-1).one(&conn).unwrap().is_none());
}

#[test]
fn orm_calls_honour_a_timeout_handle() {
    let conn = connect();
    let run = run_id("b_timeout");
    let u = new_user(&conn, &email(&run, 0), &run);
    let started = Instant::now();
    let e = User::find()
        .filter(UserColumn::Id.eq(u.id))
        .filter(Expr::cust("pg_sleep(2) IS NOT NULL"))
        .all(&conn.timeout(std::time::Duration::from_millis(100)))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    // Within the deadline it works, and the connection stays usable.
    let found = User::find_by_id(u.id)
        .one(&conn.timeout(std::time::Duration::from_secs(5)))
        .unwrap();
    assert!(found.is_some());
    let mut change = u.into_record();
    change.visits = Set(3);
    assert_eq!(change.update(&conn).unwrap().visits, 3);
}

// ------------------------------------------------------------ transactions --

#[test]
fn transaction_commits_on_ok() {
    let mut conn = connect();
    let other = connect();
    let run = run_id("b_txok");
    let (uid, pid) = conn
        .transaction(|tx| {
            let u = user_record(&email(&run, 0), &run).insert(tx)?;
            let p = PostRecord {
                author_id: Set(u.id),
                title: Set("in tx".into()),
                ..Default::default()
            }
            .insert(tx)?;
            // Visible inside, not outside yet.
            assert!(User::find_by_id(u.id).one(tx)?.is_some());
            assert!(User::find_by_id(u.id).one(&other)?.is_none());
            let mut change = u.into_record();
            change.visits = ActiveValue::Expr(UserColumn::Visits.add(1));
            let u = change.update(tx)?;
            Ok((u.id, p.id))
        })
        .unwrap();
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert_eq!(
        User::find_by_id(uid).one(&other).unwrap().unwrap().visits,
        1
    );
    assert!(Post::find_by_id(pid).one(&other).unwrap().is_some());
}

#[test]
fn transaction_rolls_back_on_err() {
    let mut conn = connect();
    let run = run_id("b_txerr");
    let e = conn
        .transaction(|tx| {
            user_record(&email(&run, 0), &run).insert(tx)?;
            user_record(&email(&run, 1), &run).insert(tx)?;
            // Fails: the whole transaction goes.
            user_record(&email(&run, 0), &run).insert(tx)?;
            Ok(())
        })
        .unwrap_err();
    assert!(matches!(e, Error::UniqueViolation { .. }), "{e:?}");
    assert!(!user_exists(&conn, &email(&run, 0)));
    assert!(!user_exists(&conn, &email(&run, 1)));
    // An application error rolls back too.
    let e = conn
        .transaction(|tx| -> lifeguard_core::Result<()> {
            user_record(&email(&run, 2), &run).insert(tx)?;
            Err(Error::config("changed my mind"))
        })
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)), "{e:?}");
    assert!(!user_exists(&conn, &email(&run, 2)));
    // A swallowed server error still aborts the transaction: the commit says so.
    let e = conn
        .transaction(|tx| {
            user_record(&email(&run, 3), &run).insert(tx)?;
            let dup = user_record(&email(&run, 3), &run).insert(tx);
            assert!(dup.is_err());
            Ok(())
        })
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("25P02"), "{e:?}");
    assert!(!user_exists(&conn, &email(&run, 3)));
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
}

#[test]
fn transaction_rolls_back_on_panic() {
    let mut conn = connect();
    let run = run_id("b_txpanic");
    let caught = catch_unwind(AssertUnwindSafe(|| {
        conn.transaction(|tx| -> lifeguard_core::Result<()> {
            user_record(&email(&run, 0), &run).insert(tx)?;
            panic!("boom inside the transaction");
        })
    }));
    let panic = caught.unwrap_err();
    assert_eq!(
        panic.downcast_ref::<&str>().copied(),
        Some("boom inside the transaction")
    );
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    assert!(!user_exists(&conn, &email(&run, 0)));
    // The connection is still good for the next transaction.
    let u = conn
        .transaction(|tx| user_record(&email(&run, 1), &run).insert(tx))
        .unwrap();
    assert!(User::find_by_id(u.id).one(&conn).unwrap().is_some());
}

#[test]
fn savepoint_rolls_back_only_the_inner_work() {
    let mut conn = connect();
    let run = run_id("b_sp");
    conn.transaction(|tx| {
        user_record(&email(&run, 0), &run).insert(tx)?;
        // Inner error: only the inner insert goes.
        let inner = tx.transaction(|sp| -> lifeguard_core::Result<()> {
            user_record(&email(&run, 1), &run).insert(sp)?;
            assert!(user_exists(sp, &email(&run, 1)));
            Err(Error::config("inner fails"))
        });
        assert!(matches!(inner, Err(Error::Config(_))));
        assert!(!user_exists(tx, &email(&run, 1)));
        // Inner server error: the outer transaction stays usable.
        let inner = tx.transaction(|sp| {
            user_record(&email(&run, 2), &run).insert(sp)?;
            user_record(&email(&run, 0), &run).insert(sp)
        });
        assert!(matches!(inner, Err(Error::UniqueViolation { .. })));
        // Inner panic, caught by the caller: rolled back to the savepoint.
        let inner = catch_unwind(AssertUnwindSafe(|| {
            tx.transaction(|sp| -> lifeguard_core::Result<()> {
                user_record(&email(&run, 3), &run).insert(sp)?;
                panic!("inner panic");
            })
        }));
        assert!(inner.is_err());
        // Inner success, two levels deep, is kept.
        tx.transaction(|sp| {
            user_record(&email(&run, 4), &run).insert(sp)?;
            sp.transaction(|sp2| user_record(&email(&run, 5), &run).insert(sp2))
        })?;
        user_record(&email(&run, 6), &run).insert(tx)?;
        Ok(())
    })
    .unwrap();
    let present: Vec<bool> = (0..7)
        .map(|i| user_exists(&conn, &email(&run, i)))
        .collect();
    assert_eq!(
        present,
        vec![true, false, false, false, true, true, true],
        "users 0, 4, 5, 6 committed"
    );
}

#[test]
fn serializable_read_only_transaction() {
    let mut conn = connect();
    let run = run_id("b_ro");
    let u = new_user(&conn, &email(&run, 0), &run);
    let found = conn
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .read_only(true)
        .run(|tx| {
            let iso: String = tx.query_one("SHOW transaction_isolation", &[])?.get(0);
            let ro: String = tx.query_one("SHOW transaction_read_only", &[])?.get(0);
            assert_eq!((iso.as_str(), ro.as_str()), ("serializable", "on"));
            User::find_by_id(u.id).one(tx)
        })
        .unwrap();
    assert_eq!(found.unwrap().email, u.email);
    // Writes are refused (25006) and the transaction rolls back.
    let e = conn
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .read_only(true)
        .run(|tx| user_record(&email(&run, 1), &run).insert(tx))
        .unwrap_err();
    assert_eq!(e.sqlstate(), Some("25006"), "{e:?}");
    assert!(!user_exists(&conn, &email(&run, 1)));
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
}

#[test]
fn retry_conflicts_reruns_a_serialization_failure() {
    let mut a = connect();
    let mut b = connect();
    let run = run_id("b_retry");
    let mine = || User::find().filter(UserColumn::Name.eq(run.clone()));
    let mut attempts = 0;
    let seen = a
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .retry_conflicts(3)
        .run(|tx| {
            attempts += 1;
            let seen = mine().count(tx)?;
            if attempts == 1 {
                // A concurrent serializable writer reads the same predicate and inserts
                // into it first: classic write skew, so this transaction must fail.
                b.build_transaction()
                    .isolation_level(IsolationLevel::Serializable)
                    .run(|tb| {
                        let n = mine().count(tb)?;
                        assert_eq!(n, 0);
                        user_record(&email(&run, 100), &run).insert(tb)
                    })
                    .unwrap();
            }
            user_record(&email(&run, attempts), &run).insert(tx)?;
            Ok(seen)
        })
        .unwrap();
    assert_eq!(attempts, 2, "one failure, one retry");
    assert_eq!(seen, 1, "the retry saw the other writer's row");
    assert!(user_exists(&a, &email(&run, 100)));
    assert!(!user_exists(&a, &email(&run, 1)));
    assert!(user_exists(&a, &email(&run, 2)));
    assert_eq!(mine().count(&a).unwrap(), 2);
    // Without retries, the same conflict surfaces as SerializationFailure.
    let run2 = run_id("b_noretry");
    let mine2 = || User::find().filter(UserColumn::Name.eq(run2.clone()));
    let e = a
        .build_transaction()
        .isolation_level(IsolationLevel::Serializable)
        .run(|tx| {
            mine2().count(tx)?;
            b.build_transaction()
                .isolation_level(IsolationLevel::Serializable)
                .run(|tb| {
                    mine2().count(tb)?;
                    user_record(&email(&run2, 100), &run2).insert(tb)
                })
                .unwrap();
            user_record(&email(&run2, 1), &run2).insert(tx)
        })
        .unwrap_err();
    assert!(matches!(e, Error::SerializationFailure(_)), "{e:?}");
    assert!(e.is_retryable());
}

#[test]
fn a_dropped_transaction_rolls_back_its_orm_writes() {
    let mut conn = connect();
    let run = run_id("b_txdrop");
    {
        let tx = conn.begin().unwrap();
        let u = user_record(&email(&run, 0), &run).insert(&tx).unwrap();
        assert!(User::find_by_id(u.id).one(&tx).unwrap().is_some());
        // Dropped without commit.
    }
    assert!(!user_exists(&conn, &email(&run, 0)));
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    // Explicit begin/commit with the ORM.
    let tx = conn.begin().unwrap();
    let u = user_record(&email(&run, 1), &run).insert(&tx).unwrap();
    tx.commit().unwrap();
    assert!(User::find_by_id(u.id).one(&conn).unwrap().is_some());
}
