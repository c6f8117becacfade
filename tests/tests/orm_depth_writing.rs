//! Writing in bulk against the real primary: `update_many` with expressions, `delete_many`,
//! upserts (`DO UPDATE` / `DO NOTHING` as `Option`), multi-row upserts, chunked
//! `insert_many` past the parameter limit, and binary `COPY` loads.
//!
//! Tables live in the schema `orm_depth`; tests isolate themselves by a unique `tag`.

use std::time::Instant;

use lifeguard_core::model::ActiveValue::{NotSet, Set};
use lifeguard_core::model::{LifeModel, LifeRecord, OnConflict, Returning};
use lifeguard_core::pg::{Connection, TransactionStatus};
use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::query::{ColumnExpr, Expr};
use lifeguard_core::{Error, Executor, LifeModel, LifeRecord};
use lifeguard_tests::pg;

const DDL: &str = r#"
SELECT pg_advisory_xact_lock(4243);
CREATE SCHEMA IF NOT EXISTS orm_depth;
CREATE TABLE IF NOT EXISTS orm_depth.accounts (
  id bigserial PRIMARY KEY,
  tag text NOT NULL,
  email text NOT NULL CONSTRAINT accounts_email_key UNIQUE,
  name text,
  visits int4 NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS accounts_tag_idx ON orm_depth.accounts (tag);
CREATE TABLE IF NOT EXISTS orm_depth.loads (
  id bigserial PRIMARY KEY,
  tag text NOT NULL,
  n int8 NOT NULL,
  label text
);
CREATE INDEX IF NOT EXISTS loads_tag_idx ON orm_depth.loads (tag);
"#;

fn connect() -> Connection {
    static ONCE: pg::SchemaOnce = pg::SchemaOnce::new();
    pg::connect_with_schema(&ONCE, DDL)
}

/// `orm_depth.accounts`.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "accounts", schema_name = "orm_depth")]
pub struct Account {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub tag: String,
    pub email: String,
    pub name: Option<String>,
    pub visits: i32,
}

/// `orm_depth.loads`.
#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(table_name = "loads", schema_name = "orm_depth")]
pub struct Load {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub tag: String,
    pub n: i64,
    pub label: Option<String>,
}

fn email(tag: &str, i: usize) -> String {
    format!("{tag}-{i}@depth.test")
}

fn account(tag: &str, i: usize) -> AccountRecord {
    AccountRecord {
        tag: Set(tag.to_owned()),
        email: Set(email(tag, i)),
        name: Set(Some(format!("user {i}"))),
        visits: Set(i as i32),
        ..Default::default()
    }
}

fn seed_accounts(conn: &Connection, tag: &str, n: usize) -> Vec<Account> {
    AccountRecord::insert_many((0..n).map(|i| account(tag, i)))
        .exec_with_returning(conn)
        .unwrap()
}

fn mine(tag: &str) -> Expr {
    AccountColumn::Tag.eq(tag.to_owned())
}

#[test]
fn update_many_sets_expressions_and_values_by_filter() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("upd_many");
    seed_accounts(&conn, &tag, 6);
    let changed = Account::update_many()
        .set(AccountColumn::Visits, AccountColumn::Visits.add(10))
        .set_value(AccountColumn::Name, Some("bulk".to_string()))
        .filter(mine(&tag))
        .filter(AccountColumn::Visits.lt(3))
        .exec(&conn)
        .unwrap();
    assert_eq!(changed, 3);
    let mut rows = Account::find().filter(mine(&tag)).all(&conn).unwrap();
    rows.sort_by_key(|a| a.email.clone());
    let visits: Vec<i32> = rows.iter().map(|a| a.visits).collect();
    assert_eq!(visits, [10, 11, 12, 3, 4, 5]);
    let bulk = rows
        .iter()
        .filter(|a| a.name.as_deref() == Some("bulk"))
        .count();
    assert_eq!(bulk, 3);

    // With RETURNING: the rows as stored after the update.
    let mut returned = Account::update_many()
        .set(AccountColumn::Name, Expr::cust("upper(\"name\")"))
        .filter(mine(&tag))
        .filter_opt(Some(AccountColumn::Visits.gte(10)))
        .exec_with_returning(&conn)
        .unwrap();
    returned.sort_by_key(|a| a.visits);
    assert_eq!(returned.len(), 3);
    assert!(returned.iter().all(|a| a.name.as_deref() == Some("BULK")));
    assert_eq!(returned[0].visits, 10);
    // Nothing matching: zero, not an error.
    let none = Account::update_many()
        .set_value(AccountColumn::Visits, 0i32)
        .filter(mine(&format!("{tag}-none")))
        .exec(&conn)
        .unwrap();
    assert_eq!(none, 0);
    // Nothing set is a mistake.
    let empty = Account::update_many().filter(mine(&tag)).exec(&conn);
    assert!(matches!(empty, Err(Error::InvalidUse(_))), "{empty:?}");
    // The statement reads as expected.
    let (sql, params) = Account::update_many()
        .set(AccountColumn::Visits, AccountColumn::Visits.add(1))
        .filter(AccountColumn::Id.eq(1i64))
        .build(Returning::All);
    assert_eq!(
        sql,
        r#"UPDATE "orm_depth"."accounts" SET "visits" = "visits" + $1 WHERE ("orm_depth"."accounts"."id" = $2) RETURNING "id", "tag", "email", "name", "visits""#
    );
    assert_eq!(params.len(), 2);
}

#[test]
fn update_many_keeps_error_kinds() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("upd_err");
    seed_accounts(&conn, &tag, 2);
    let err = Account::update_many()
        .set_value(AccountColumn::Email, email(&tag, 99))
        .filter(mine(&tag))
        .exec(&conn)
        .unwrap_err();
    match &err {
        Error::UniqueViolation { constraint, .. } => {
            assert_eq!(constraint.as_deref(), Some("accounts_email_key"))
        }
        other => panic!("expected UniqueViolation, got {other:?}"),
    }
    let err = Account::update_many()
        .set(AccountColumn::Email, Expr::cust("NULL"))
        .filter(mine(&tag))
        .exec(&conn)
        .unwrap_err();
    assert!(matches!(err, Error::NotNullViolation { .. }), "{err:?}");
    // Nothing changed.
    let rows = Account::find().filter(mine(&tag)).all(&conn).unwrap();
    assert!(rows.iter().all(|a| a.email.starts_with(&tag)));
}

#[test]
fn delete_many_counts_and_returns() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("del_many");
    seed_accounts(&conn, &tag, 7);
    let gone = Account::delete_many()
        .filter(mine(&tag))
        .filter(AccountColumn::Visits.lt(3))
        .exec(&conn)
        .unwrap();
    assert_eq!(gone, 3);
    let returned = Account::delete_many()
        .filter(mine(&tag))
        .filter(AccountColumn::Visits.is_in([3, 4]))
        .exec_with_returning(&conn)
        .unwrap();
    let mut visits: Vec<i32> = returned.iter().map(|a| a.visits).collect();
    visits.sort();
    assert_eq!(visits, [3, 4]);
    assert_eq!(Account::find().filter(mine(&tag)).count(&conn).unwrap(), 2);
    assert_eq!(
        Account::delete_many()
            .filter_opt(Some(mine(&tag)))
            .exec(&conn)
            .unwrap(),
        2
    );
    assert_eq!(
        Account::delete_many()
            .filter(mine(&tag))
            .exec(&conn)
            .unwrap(),
        0
    );
}

#[test]
fn upsert_updates_or_skips_without_an_error() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("upsert");
    let original = account(&tag, 1).insert(&conn).unwrap();

    // DO UPDATE: the stored row comes back, same id, chosen columns overwritten.
    let mut change = account(&tag, 1);
    change.name = Set(Some("renamed".into()));
    change.visits = Set(500);
    let updated = change
        .insert_on_conflict(
            OnConflict::columns([AccountColumn::Email]).do_update([AccountColumn::Name]),
            &conn,
        )
        .unwrap()
        .expect("DO UPDATE returns the row");
    assert_eq!(updated.id, original.id);
    assert_eq!(updated.name.as_deref(), Some("renamed"));
    assert_eq!(
        updated.visits, original.visits,
        "visits was not in do_update"
    );

    // DO NOTHING: a skip is Ok(None), and the row is untouched.
    let skipped = account(&tag, 1)
        .insert_on_conflict(
            OnConflict::columns([AccountColumn::Email]).do_nothing(),
            &conn,
        )
        .unwrap();
    assert!(skipped.is_none());
    let stored = Account::find_by_id(original.id)
        .one(&conn)
        .unwrap()
        .unwrap();
    assert_eq!(stored.name.as_deref(), Some("renamed"));
    // A new key inserts, whatever the action.
    let fresh = account(&tag, 2)
        .insert_on_conflict(
            OnConflict::constraint("accounts_email_key").do_nothing(),
            &conn,
        )
        .unwrap()
        .expect("no conflict: inserted");
    assert_eq!(fresh.email, email(&tag, 2));

    // A counter: the stored row by table name, the proposed one as EXCLUDED.
    for _ in 0..3 {
        AccountRecord {
            tag: Set(tag.clone()),
            email: Set(email(&tag, 3)),
            visits: Set(1),
            ..Default::default()
        }
        .insert_on_conflict(
            OnConflict::columns([AccountColumn::Email]).update_expr(
                AccountColumn::Visits,
                AccountColumn::Visits
                    .expr()
                    .append_sql(" + EXCLUDED.\"visits\""),
            ),
            &conn,
        )
        .unwrap()
        .unwrap();
    }
    let counter = Account::find()
        .filter(AccountColumn::Email.eq(email(&tag, 3)))
        .one(&conn)
        .unwrap()
        .unwrap();
    assert_eq!(counter.visits, 3);

    // A conflict the clause does not cover still fails with its kind.
    let err = AccountRecord {
        id: Set(original.id),
        tag: Set(tag.clone()),
        email: Set(email(&tag, 4)),
        ..Default::default()
    }
    .insert_on_conflict(
        OnConflict::columns([AccountColumn::Email]).do_nothing(),
        &conn,
    )
    .unwrap_err();
    assert!(matches!(err, Error::UniqueViolation { .. }), "{err:?}");
    // A malformed clause is caught before the server sees it.
    let err = account(&tag, 5)
        .insert_on_conflict(OnConflict::columns([]), &conn)
        .unwrap_err();
    assert!(matches!(err, Error::InvalidUse(_)), "{err:?}");
}

#[test]
fn insert_many_on_conflict_skips_or_updates_in_bulk() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("ups_many");
    seed_accounts(&conn, &tag, 3);
    // 0..3 exist, 3..6 are new: DO NOTHING inserts only the new ones.
    let inserted = AccountRecord::insert_many_on_conflict(
        (0..6).map(|i| account(&tag, i)),
        OnConflict::columns([AccountColumn::Email]),
    )
    .exec(&conn)
    .unwrap();
    assert_eq!(inserted, 3);
    // DO UPDATE returns every row, updated or inserted.
    let rows = AccountRecord::insert_many_on_conflict(
        (0..8).map(|i| {
            let mut r = account(&tag, i);
            r.visits = Set(100 + i as i32);
            r
        }),
        OnConflict::columns([AccountColumn::Email]).do_update([AccountColumn::Visits]),
    )
    .exec_with_returning(&conn)
    .unwrap();
    assert_eq!(rows.len(), 8);
    assert!(rows.iter().all(|a| a.visits >= 100));
    assert_eq!(Account::find().filter(mine(&tag)).count(&conn).unwrap(), 8);
}

fn loads_of(tag: &str) -> Expr {
    LoadColumn::Tag.eq(tag.to_owned())
}

fn load_totals(conn: &Connection, tag: &str) -> (i64, i64, i64) {
    let row = conn
        .query_one(
            "SELECT count(*), coalesce(sum(n), 0)::int8, count(label) FROM orm_depth.loads WHERE tag = $1",
            &[&tag],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[test]
fn insert_many_splits_under_the_parameter_limit() {
    let conn = connect();
    // The first batch builds both statements' texts; the second finds them cached and
    // slices its values per statement.
    for round in 0..2 {
        let tag = lifeguard_tests::unique_name(&format!("ins_40k_{round}"));
        let n = 40_000usize;
        let started = Instant::now();
        // 3 columns x 40,000 rows = 120,000 parameters: two statements.
        let inserted = LoadRecord::insert_many((0..n).map(|i| LoadRecord {
            tag: Set(tag.clone()),
            n: Set(i as i64),
            label: Set(Some(format!("row {i}"))),
            ..Default::default()
        }))
        .exec(&conn)
        .unwrap();
        eprintln!("insert_many of {n} rows: {:?}", started.elapsed());
        assert_eq!(inserted, n as u64);
        let expected_sum = (n as i64 - 1) * n as i64 / 2;
        assert_eq!(load_totals(&conn, &tag), (n as i64, expected_sum, n as i64));
        // Every label still sits beside its own number.
        let misplaced: i64 = conn
            .query_one(
                "SELECT count(*) FROM orm_depth.loads WHERE tag = $1 AND label <> 'row ' || n",
                &[&tag],
            )
            .unwrap()
            .get(0);
        assert_eq!(misplaced, 0);
        // Two autocommit statements (21,845 rows, then 18,155): two transactions wrote them.
        let writers: i64 = conn
            .query_one(
                "SELECT count(DISTINCT xmin::text) FROM orm_depth.loads WHERE tag = $1",
                &[&tag],
            )
            .unwrap()
            .get(0);
        assert_eq!(writers, 2);
        let gone = Load::delete_many()
            .filter(loads_of(&tag))
            .exec(&conn)
            .unwrap();
        assert_eq!(gone, n as u64);
    }
}

#[test]
fn copy_loads_a_hundred_thousand_rows() {
    let mut conn = connect();
    let tag = lifeguard_tests::unique_name("copy_100k");
    let n = 100_000usize;
    let records = (0..n).map(|i| LoadRecord {
        tag: Set(tag.clone()),
        n: Set(i as i64),
        label: Set((i % 2 == 0).then(|| format!("even {i}"))),
        ..Default::default()
    });
    let started = Instant::now();
    let loaded = LoadRecord::insert_many_copy(&mut conn, records).unwrap();
    eprintln!("COPY of {n} rows: {:?}", started.elapsed());
    assert_eq!(loaded, n as u64);
    let expected_sum = (n as i64 - 1) * n as i64 / 2;
    assert_eq!(
        load_totals(&conn, &tag),
        (n as i64, expected_sum, n as i64 / 2)
    );
    let sample = Load::find()
        .filter(loads_of(&tag))
        .filter(LoadColumn::N.eq(42i64))
        .one(&conn)
        .unwrap()
        .unwrap();
    assert_eq!(sample.label.as_deref(), Some("even 42"));
    assert!(sample.id > 0, "ids come from the sequence");
    // Nothing to load is zero rows, no statement.
    assert_eq!(
        LoadRecord::insert_many_copy(&mut conn, Vec::new()).unwrap(),
        0
    );
    assert_eq!(
        Load::delete_many()
            .filter(loads_of(&tag))
            .exec(&conn)
            .unwrap(),
        n as u64
    );
}

#[test]
fn copy_runs_on_a_lease_and_inside_a_transaction_and_aborts_cleanly() {
    let mut conn = connect();
    let tag = lifeguard_tests::unique_name("copy_tx");
    let record = |i: i64| LoadRecord {
        tag: Set(tag.clone()),
        n: Set(i),
        label: Set(None),
        ..Default::default()
    };
    // In a transaction that rolls back: loaded, then gone.
    {
        let tx = conn.begin().unwrap();
        assert_eq!(
            LoadRecord::insert_many_copy(&tx, (0..10).map(record)).unwrap(),
            10
        );
        assert_eq!(Load::find().filter(loads_of(&tag)).count(&tx).unwrap(), 10);
        tx.rollback().unwrap();
    }
    assert_eq!(load_totals(&conn, &tag).0, 0);

    // A record that sets other columns than the first aborts the whole copy.
    let mut odd = record(5);
    odd.label = NotSet;
    let err = LoadRecord::insert_many_copy(
        &mut conn,
        (0..5).map(record).chain([odd]).chain((6..9).map(record)),
    )
    .unwrap_err();
    assert!(matches!(err, Error::InvalidUse(_)), "{err:?}");
    assert_eq!(load_totals(&conn, &tag).0, 0);
    assert_eq!(conn.transaction_status(), TransactionStatus::Idle);
    // Expressions cannot be copied.
    let mut expr = record(1);
    expr.n = lifeguard_core::model::ActiveValue::Expr(Expr::cust("1 + 1"));
    let err = LoadRecord::insert_many_copy(&mut conn, [expr]).unwrap_err();
    assert!(matches!(err, Error::InvalidUse(_)), "{err:?}");
    // A server-side failure (NOT NULL) keeps its kind and loads nothing.
    let err = LoadRecord::insert_many_copy(
        &mut conn,
        [LoadRecord {
            n: Set(1),
            label: Set(None),
            ..Default::default()
        }],
    )
    .unwrap_err();
    assert!(matches!(err, Error::NotNullViolation { .. }), "{err:?}");
    assert_eq!(conn.query_one("SELECT 1", &[]).unwrap().get::<_, i32>(0), 1);

    // On a pool lease.
    let pool = Pool::connect(
        PoolConfig::from_env()
            .expect("pool config from env")
            .max_size(2),
    )
    .expect("connect pool");
    let lease = pool.lease_primary().unwrap();
    assert_eq!(
        LoadRecord::insert_many_copy(&lease, (0..1000).map(record)).unwrap(),
        1000
    );
    drop(lease);
    pool.close();
    assert_eq!(load_totals(&conn, &tag), (1000, 999 * 1000 / 2, 0));
    Load::delete_many()
        .filter(loads_of(&tag))
        .exec(&conn)
        .unwrap();
}

/// Two batches of the same columns and size whose unset values sit in different rows are
/// two statements: the second must not reuse the first's text (its `DEFAULT`s would take
/// the second's values out of order).
#[test]
fn insert_many_with_unset_values_in_different_rows_keeps_each_value_in_place() {
    let conn = connect();
    let tag = lifeguard_tests::unique_name("many_holes");
    let row = |i: usize, named: bool, visits: bool| AccountRecord {
        tag: Set(tag.clone()),
        email: Set(email(&tag, i)),
        name: if named {
            Set(Some(format!("n{i}")))
        } else {
            NotSet
        },
        visits: if visits { Set(i as i32) } else { NotSet },
        ..Default::default()
    };
    for batch in [
        vec![row(0, true, true), row(1, false, false)],
        vec![row(2, false, false), row(3, true, true)],
        vec![row(4, true, false), row(5, false, true)],
    ] {
        AccountRecord::insert_many(batch).exec(&conn).unwrap();
    }
    let got: Vec<(String, Option<String>, i32)> = Account::find()
        .filter(mine(&tag))
        .order_by_asc(AccountColumn::Email)
        .all(&conn)
        .unwrap()
        .into_iter()
        .map(|a| (a.email, a.name, a.visits))
        .collect();
    let want: Vec<(String, Option<String>, i32)> = [
        (0, Some("n0"), 0),
        (1, None, 0),
        (2, None, 0),
        (3, Some("n3"), 3),
        (4, Some("n4"), 0),
        (5, None, 5),
    ]
    .into_iter()
    .map(|(i, n, v)| (email(&tag, i), n.map(String::from), v))
    .collect();
    assert_eq!(got, want);
}
