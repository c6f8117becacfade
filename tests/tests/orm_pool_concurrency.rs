//! The ORM over the pool against the real primary: read-your-writes and transactions
//! through a pool handle, and 1,000 coroutines running CRUD cycles through the pool and on
//! four shared connections.

use std::sync::Arc;
use std::time::Instant;

use lifeguard_core::model::ActiveValue::{self, Set};
use lifeguard_core::model::{LifeModel, LifeRecord};
use lifeguard_core::pg::Connection;
use lifeguard_core::pool::{Pool, PoolConfig, ReadOptions};
use lifeguard_core::query::ColumnExpr;
use lifeguard_core::{Error, Executor};
use lifeguard_tests::orm::{
    connect, email, run_id, user_exists, user_record, Post, PostColumn, PostRecord, User,
    UserColumn, UserRecord,
};

// -------------------------------------------------------------------- pool --

fn pool() -> Pool {
    // Only for the schema it makes sure of.
    drop(connect());
    Pool::connect(PoolConfig::from_env().expect("pool config from env")).expect("connect pool")
}

#[test]
fn orm_over_the_pool() {
    let pool = pool();
    let run = run_id("b_pool");
    // Through a per-request handle: the read after the write sees it.
    let db = pool.db(ReadOptions::default());
    let u = user_record(&email(&run, 0), &run).insert(&db).unwrap();
    let found = User::find_by_id(u.id).one(&db).unwrap();
    assert_eq!(found.map(|f| f.email), Some(email(&run, 0)));
    let listed = User::find()
        .filter(UserColumn::Name.eq(run.clone()))
        .all(&db)
        .unwrap();
    assert_eq!(listed.len(), 1);
    let mut change = u.clone().into_record();
    change.visits = ActiveValue::Expr(UserColumn::Visits.add(5));
    assert_eq!(change.update(&db).unwrap().visits, 5);
    // A locking read through a handle that has not written must go to the primary.
    let fresh = pool.db(ReadOptions::default());
    let locked = User::find()
        .filter(UserColumn::Id.eq(u.id))
        .for_update()
        .all(&fresh);
    assert!(locked.is_ok(), "{locked:?}");
    // Through the pool itself (writes go to the primary).
    let p = PostRecord {
        author_id: Set(u.id),
        title: Set("via pool".into()),
        ..Default::default()
    }
    .insert(&pool)
    .unwrap();
    assert!(Post::find_by_id(p.id)
        .one(&pool.primary())
        .unwrap()
        .is_some());
    // Transactions on the pool and on the handle.
    let (a, b) = pool
        .transaction(|tx| {
            let a = user_record(&email(&run, 1), &run).insert(tx)?;
            let b = user_record(&email(&run, 2), &run).insert(tx)?;
            Ok((a.id, b.id))
        })
        .unwrap();
    let e = db
        .transaction(|tx| -> lifeguard_core::Result<()> {
            user_record(&email(&run, 3), &run).insert(tx)?;
            Err(Error::config("roll back"))
        })
        .unwrap_err();
    assert!(matches!(e, Error::Config(_)));
    let primary = pool.primary();
    assert!(User::find_by_id(a).one(&primary).unwrap().is_some());
    assert!(User::find_by_id(b).one(&primary).unwrap().is_some());
    assert!(!user_exists(&primary, &email(&run, 3)));
    // Deletes through the handle.
    assert_eq!(
        User::find()
            .filter(UserColumn::Name.eq(run.clone()))
            .count(&db)
            .unwrap(),
        3
    );
    for id in [u.id, a, b] {
        assert_eq!(User::delete_by_id(&db, id).unwrap(), 1);
    }
    assert_eq!(
        Post::find()
            .filter(PostColumn::AuthorId.eq(u.id))
            .count(&db)
            .unwrap(),
        0,
        "cascaded"
    );
    pool.close();
}

/// One coroutine's CRUD cycle on `db`, checking every step.
fn crud_cycle(db: &impl Executor, run: &str, i: usize) -> Result<(), String> {
    let check = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(format!("#{i}: {what}"))
        }
    };
    let err = |e: Error| format!("#{i}: {e}");
    let visits = i as i32;
    let u = UserRecord {
        email: Set(email(run, i)),
        name: Set(Some(run.to_owned())),
        visits: Set(visits),
        ..Default::default()
    }
    .insert(db)
    .map_err(err)?;
    check(
        u.email == email(run, i) && u.visits == visits,
        "inserted values",
    )?;
    let found = User::find_by_id(u.id)
        .one(db)
        .map_err(err)?
        .ok_or_else(|| format!("#{i}: not found after insert"))?;
    check(
        found.email == u.email && found.visits == visits && found.created_at == u.created_at,
        "read back",
    )?;
    let mut change = found.into_record();
    change.visits = ActiveValue::Expr(UserColumn::Visits.add(1000));
    change.tags = Set(vec![format!("t{i}")]);
    let updated = change.update(db).map_err(err)?;
    check(
        updated.visits == visits + 1000 && updated.tags == vec![format!("t{i}")],
        "updated values",
    )?;
    let again = User::find()
        .filter(UserColumn::Email.eq(email(run, i)))
        .one(db)
        .map_err(err)?
        .ok_or_else(|| format!("#{i}: not found after update"))?;
    check(
        again.id == u.id && again.visits == visits + 1000 && again.tags == updated.tags,
        "read after update",
    )?;
    check(
        User::delete_by_id(db, u.id).map_err(err)? == 1,
        "deleted one row",
    )?;
    check(
        User::find_by_id(u.id).one(db).map_err(err)?.is_none(),
        "gone after delete",
    )?;
    Ok(())
}

fn join_all(handles: Vec<may::coroutine::JoinHandle<Result<(), String>>>) -> Vec<String> {
    let mut failures = Vec::new();
    for h in handles {
        match h.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => failures.push(e),
            Err(_) => failures.push("a coroutine panicked".into()),
        }
    }
    failures
}

fn remaining(run: &str) -> i64 {
    User::find()
        .filter(UserColumn::Name.eq(run.to_owned()))
        .count(&connect())
        .unwrap()
}

#[test]
fn thousand_coroutines_crud_through_the_pool() {
    let pool = pool();
    let run = Arc::new(run_id("b_many_pool"));
    let started = Instant::now();
    let handles: Vec<_> = (0..1000)
        .map(|i| {
            let pool = pool.clone();
            let run = run.clone();
            may::go!(move || {
                // A handle per coroutine, like a request: reads after its write stay on
                // the primary.
                let db = pool.db(ReadOptions::default());
                crud_cycle(&db, &run, i)
            })
        })
        .collect();
    let failures = join_all(handles);
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(remaining(&run), 0);
    eprintln!(
        "1000 CRUD cycles through the pool in {:?}",
        started.elapsed()
    );
    pool.close();
}

#[test]
fn thousand_coroutines_crud_on_four_shared_connections() {
    let conns: Vec<Arc<Connection>> = (0..4).map(|_| Arc::new(connect())).collect();
    let run = Arc::new(run_id("b_many_conn"));
    let started = Instant::now();
    let handles: Vec<_> = (0..1000)
        .map(|i| {
            let conn = conns[i % 4].clone();
            let run = run.clone();
            may::go!(move || crud_cycle(&*conn, &run, i))
        })
        .collect();
    let failures = join_all(handles);
    assert!(
        failures.is_empty(),
        "{} failures, first: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert_eq!(remaining(&run), 0);
    // 1000 cycles of the same shapes: a handful of statements per connection.
    for c in &conns {
        assert!(c.cached_statements() <= 8, "{}", c.cached_statements());
    }
    eprintln!(
        "1000 CRUD cycles on 4 shared connections in {:?}",
        started.elapsed()
    );
}
