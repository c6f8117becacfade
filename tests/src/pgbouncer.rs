//! Helpers of the PgBouncer tests (`tests/pgbouncer.rs`): the URLs of the unnamed mode's
//! targets, a model of their own, the concurrent pool-and-ORM workload, and a way to make
//! PgBouncer hand a statement to a server connection other than the one that prepared it.

use std::sync::{Arc, Mutex, MutexGuard, Once};
use std::time::Duration;

use lifeguard_core::model::ActiveValue::Set;
use lifeguard_core::model::{LifeModel as _, LifeRecord as _};
use lifeguard_core::pg::{Config, Connection};
use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::query::ColumnExpr as _;
use lifeguard_core::{Error, Executor, LifeModel, LifeRecord};

use crate::pg::{in_coroutine_within, init};
use crate::{app_url, env_var, unique_name};

/// The test tables, owned by `lifeguard_app` (the role PgBouncer logs in as).
pub const SCHEMA_DDL: &str = "
SELECT pg_advisory_xact_lock(4343);
CREATE SCHEMA IF NOT EXISTS pgb_test;
CREATE TABLE IF NOT EXISTS pgb_test.items (
  id bigserial PRIMARY KEY,
  owner int4 NOT NULL,
  label text NOT NULL,
  amount int8 NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS items_owner_idx ON pgb_test.items (owner);
";

/// `pgb_test.items`.
#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "items", schema_name = "pgb_test")]
pub struct Item {
    /// bigserial
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    /// the coroutine that wrote it
    pub owner: i32,
    /// text
    pub label: String,
    /// int8, default 0
    pub amount: i64,
}

/// `LIFEGUARD_PGBOUNCER_URL`: PgBouncer 1.18, `pool_mode = transaction`, as `lifeguard_app`.
pub fn bouncer_url() -> String {
    env_var("LIFEGUARD_PGBOUNCER_URL")
}

/// `url` with one more query parameter.
pub fn with_param(url: &str, param: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{param}")
}

/// `url` in unnamed mode (`prepare=unnamed`).
pub fn unnamed(url: &str) -> String {
    with_param(url, "prepare=unnamed")
}

/// Where the unnamed mode is tested: through PgBouncer, and directly (the mode must work on
/// a plain server too).
pub fn unnamed_targets() -> [(&'static str, String); 2] {
    [
        ("pgbouncer", unnamed(&bouncer_url())),
        ("direct", unnamed(&app_url())),
    ]
}

/// A connection to `url`, after the runtime is configured; panics naming the URL.
pub fn open(url: &str) -> Connection {
    init();
    Connection::open(url).unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Makes sure of the schema (once per process, on a direct connection).
pub fn schema() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        open(&app_url())
            .batch_execute(SCHEMA_DDL)
            .unwrap_or_else(|e| panic!("create the test schema: {e}"))
    });
}

/// Tests that count on which server connection PgBouncer hands out, or that load it, run
/// one at a time within a test binary.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A pool of `max_size` connections on `url`, with the default session timeouts.
pub fn pool_on(url: &str, max_size: usize) -> Pool {
    // A correctness test on two shared cores: waiting for a connection may take long.
    let config = PoolConfig::new(Config::parse(url).expect("parse the URL"))
        .max_size(max_size)
        .acquire_timeout(Duration::from_secs(30));
    Pool::connect(config).unwrap_or_else(|e| panic!("pool on {url}: {e}"))
}

/// One coroutine's work: typed queries whose SQL text is its own (a statement of another
/// client run in its place would answer another number or another shape), an ORM insert,
/// read and update, and a transaction. Returns the first wrong result or error.
pub fn workload(pool: &Pool, run: &str, owner: i32, round: i32) -> Result<(), String> {
    let err = |what: &str, e: Error| format!("#{owner}/{round} {what}: {e}");
    let check = |ok: bool, what: String| if ok { Ok(()) } else { Err(what) };
    // A text per coroutine: the parameter comes back, beside the coroutine's own constant.
    let own_sql = format!("SELECT $1::int8 AS n, {owner}::int4 AS me, $2::text AS word");
    let tag = i64::from(owner) * 1000 + i64::from(round);
    let word = format!("w{owner}-{round}");
    let row = pool
        .query_one(&own_sql, &[&tag, &word])
        .map_err(|e| err("own query", e))?;
    let (n, me, w): (i64, i32, String) = (row.get(0), row.get(1), row.get(2));
    check(
        n == tag && me == owner && w == word,
        format!("#{owner}/{round}: own query answered ({n}, {me}, {w})"),
    )?;
    // The same text for everyone, with types the server infers.
    let row = pool
        .query_one(
            "SELECT $1 + 1 AS next, $2 || '!' AS shout",
            &[&owner, &word],
        )
        .map_err(|e| err("shared query", e))?;
    let (next, shout): (i32, String) = (row.get(0), row.get(1));
    check(
        next == owner + 1 && shout == format!("{word}!"),
        format!("#{owner}/{round}: shared query answered ({next}, {shout})"),
    )?;
    // The ORM: insert, read back by key, update, through the pool.
    let label = format!("{run}-{owner}-{round}");
    let item = ItemRecord {
        owner: Set(owner),
        label: Set(label.clone()),
        ..Default::default()
    }
    .insert(pool)
    .map_err(|e| err("insert", e))?;
    check(
        item.owner == owner && item.label == label,
        format!("#{owner}/{round}: insert returned {item:?}"),
    )?;
    let found = Item::find_by_id(item.id)
        .one(&pool.primary())
        .map_err(|e| err("find", e))?;
    check(
        found.as_ref().map(|f| &f.label) == Some(&label),
        format!("#{owner}/{round}: find returned {found:?}"),
    )?;
    // A transaction: two writes and a read of its own rows, committed together.
    let (count, total) = pool
        .transaction(|tx| {
            let mut change = item.clone().into_record();
            change.amount = Set(i64::from(round) + 1);
            change.update(tx)?;
            ItemRecord {
                owner: Set(owner),
                label: Set(format!("{label}-b")),
                amount: Set(1),
                ..Default::default()
            }
            .insert(tx)?;
            let count = Item::find()
                .filter(ItemColumn::Owner.eq(owner))
                .filter(ItemColumn::Label.like(format!("{label}%")))
                .count(tx)?;
            let total: i64 = tx
                .query_one(
                    "SELECT sum(amount)::int8 FROM pgb_test.items WHERE owner = $1 AND label LIKE $2",
                    &[&owner, &format!("{label}%")],
                )?
                .try_get(0)?;
            Ok((count, total))
        })
        .map_err(|e| err("transaction", e))?;
    check(
        count == 2 && total == i64::from(round) + 2,
        format!("#{owner}/{round}: transaction saw {count} rows, total {total}"),
    )
}

/// Runs `workload` in `coroutines` coroutines, `rounds` times each, and returns every
/// failure.
pub fn run_workload(pool: &Pool, coroutines: i32, rounds: i32) -> Vec<String> {
    let pool = pool.clone();
    let run = Arc::new(unique_name("pgb"));
    in_coroutine_within(Duration::from_secs(120), move || {
        let owners_base = (std::process::id() % 10_000) as i32 * 10_000;
        let workers: Vec<_> = (0..coroutines)
            .map(|i| {
                let pool = pool.clone();
                let run = run.clone();
                may::go!(move || {
                    let mut failures = Vec::new();
                    for round in 0..rounds {
                        if let Err(f) = workload(&pool, &run, owners_base + i, round) {
                            failures.push(f);
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| {
                w.join()
                    .unwrap_or_else(|_| vec!["a coroutine panicked".into()])
            })
            .collect()
    })
}

/// Holds server connections of the pooler in open transactions until one is the backend
/// `pid`; returns the holders (their transactions end when they drop). Panics when the
/// pooler's servers run out first.
pub fn hold_server(pid: i32) -> Vec<Connection> {
    let mut holders = Vec::new();
    for _ in 0..40 {
        let conn = open(&unnamed(&bouncer_url()));
        conn.batch_execute("BEGIN").expect("BEGIN on a holder");
        let got: i32 = conn
            .timeout(Duration::from_secs(5))
            .query_one("SELECT pg_backend_pid()", &[])
            .and_then(|r| r.try_get(0))
            .expect("a holder's backend");
        holders.push(conn);
        if got == pid {
            return holders;
        }
    }
    panic!("server {pid} never came free to hold");
}

/// Prepares `SELECT $1::int4 + 1` on the server connection a transaction of `conn` runs
/// on, then keeps that server connection busy in another client's transaction and runs the
/// statement: the pooler must send it to another server connection.
pub fn prepare_then_run_elsewhere(conn: &mut Connection) -> lifeguard_core::Result<i32> {
    let (pid, stmt) = {
        let tx = conn.begin()?;
        let pid: i32 = tx.query_one("SELECT pg_backend_pid()", &[])?.try_get(0)?;
        let stmt = tx.connection().prepare("SELECT $1::int4 + 1")?;
        tx.commit()?;
        (pid, stmt)
    };
    let _holders = hold_server(pid);
    let other: i32 = conn.query_one("SELECT pg_backend_pid()", &[])?.try_get(0)?;
    assert_ne!(
        other, pid,
        "the held server connection was handed out again"
    );
    conn.query_statement(&stmt, &[&41i32])?[0].try_get(0)
}
