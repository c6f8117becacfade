//! Migrations against the real primary: up, re-up, status, down, checksum changes, unknown
//! and out-of-order versions, concurrent migrators, Rust migrations, failing migrations,
//! DDL from models, drift, and the commands a migration tool runs.
//!
//! Every test works in a schema of its own: its connection's `search_path` points there
//! (the fixture SQL and the test models use unqualified names) and its tracking table lives
//! there, so the advisory lock key is per test too. The schema is dropped at the end.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use lifeguard_core::error::{MigrateError, MigrateErrorKind};
use lifeguard_core::migrate::commands::{Command, Report};
use lifeguard_core::migrate::{
    self, create_table_sql, ColumnShape, Difference, ForeignKey, Migration, MigrationState,
    Migrator, ReferentialAction, TableSpec,
};
use lifeguard_core::model::ActiveValue::Set;
use lifeguard_core::model::{LifeModel, LifeRecord};
use lifeguard_core::pg::{Config, Connection, Transaction};
use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::{Error, Executor, LifeModel, LifeRecord, Result};
use lifeguard_tests::{pg, primary_url, try_psql, unique_name};

const FIXTURES: &[(&str, &str)] = lifeguard_core::migrations!(
    "../../lifeguard-core/migrations_test";
    "0001_create_widgets.sql",
    "0002_add_widget_color.sql",
    "0003_seed_widgets.sql",
);

/// A fresh schema, dropped (through `psql`) when the guard goes out of scope.
struct Schema(String);

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = try_psql(
            &primary_url(),
            &format!(
                "SET lock_timeout = '5s'; DROP SCHEMA IF EXISTS {} CASCADE",
                self.0
            ),
        );
    }
}

/// A connection whose `search_path` is a new schema of its own.
fn fresh(prefix: &str) -> (Connection, Schema) {
    let schema = Schema(unique_name(prefix));
    let conn = connect_in(&schema.0);
    conn.batch_execute(&format!("CREATE SCHEMA {}", schema.0))
        .unwrap();
    (conn, schema)
}

fn connect_in(schema: &str) -> Connection {
    let conn = pg::connect();
    conn.batch_execute(&format!("SET search_path TO {schema}"))
        .unwrap();
    conn
}

fn fixtures(schema: &Schema) -> Migrator {
    Migrator::new(FIXTURES).schema(schema.0.clone())
}

fn count(db: &impl Executor, sql: &str) -> i64 {
    db.query_one(sql, &[]).unwrap().get(0)
}

fn tracked(db: &impl Executor, schema: &Schema) -> Vec<(i64, String)> {
    db.query(
        &format!(
            "SELECT version, name FROM {}.lifeguard_migrations ORDER BY version",
            schema.0
        ),
        &[],
    )
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

fn exists(db: &impl Executor, name: &str) -> bool {
    db.query_one("SELECT to_regclass($1) IS NOT NULL", &[&name])
        .unwrap()
        .get(0)
}

/// Whether any session holds the migrator's advisory lock.
fn lock_held(db: &impl Executor, m: &Migrator) -> bool {
    let key = m.lock_key();
    let (hi, lo) = ((key >> 32) as u32 as i64, key as u32 as i64);
    count(
        db,
        &format!(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid::int8 = {hi} \
             AND objid::int8 = {lo} AND objsubid = 1 AND granted"
        ),
    ) > 0
}

fn versions(runs: &[migrate::MigrationRun]) -> Vec<i64> {
    runs.iter().map(|r| r.version).collect()
}

/// The migration error `err` is, with its kind and the version it concerns checked.
fn migrate_error(err: &Error, kind: MigrateErrorKind, version: Option<i64>) -> &MigrateError {
    let Error::Migrate(e) = err else {
        panic!("not a migration error: {err:?}")
    };
    assert_eq!((e.kind, e.version), (kind, version), "{err}");
    e
}

#[test]
fn up_applies_every_migration_in_order_with_a_tracking_row() {
    let (mut conn, schema) = fresh("lg_mig_up");
    let m = fixtures(&schema);
    let runs = m.up(&mut conn).unwrap();
    assert_eq!(versions(&runs), [1, 2, 3]);
    assert_eq!(runs[0].name, "create_widgets");
    assert_eq!(
        tracked(&conn, &schema),
        [
            (1, "create_widgets".to_owned()),
            (2, "add_widget_color".to_owned()),
            (3, "seed_widgets".to_owned())
        ]
    );
    let row = conn
        .query_one(
            &format!(
                "SELECT checksum, applied_at, duration_ms FROM {}.lifeguard_migrations WHERE version = 2",
                schema.0
            ),
            &[],
        )
        .unwrap();
    let (sum, at, ms): (String, DateTime<Utc>, i64) = (row.get(0), row.get(1), row.get(2));
    assert_eq!(sum, m.migrations()[1].checksum());
    assert_eq!(sum.len(), 16);
    assert!((Utc::now() - at).num_seconds().abs() < 60, "{at}");
    assert!(ms >= 0);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM widgets WHERE color = 'red'"),
        1
    );
    assert!(!lock_held(&conn, &m));
}

#[test]
fn up_again_is_a_no_op() {
    let (mut conn, schema) = fresh("lg_mig_reup");
    let m = fixtures(&schema);
    assert_eq!(m.up(&mut conn).unwrap().len(), 3);
    assert!(m.up(&mut conn).unwrap().is_empty());
    assert!(m.up(&mut conn).unwrap().is_empty());
    assert_eq!(tracked(&conn, &schema).len(), 3);
    assert_eq!(count(&conn, "SELECT count(*) FROM widgets"), 2);
}

#[test]
fn status_reports_pending_applied_changed_and_unknown() {
    let (mut conn, schema) = fresh("lg_mig_status");
    let all = fixtures(&schema);
    // Nothing applied, and reading the status creates nothing.
    let status = all.status(&conn).unwrap();
    assert_eq!(status.len(), 3);
    assert!(status.iter().all(|s| s.state() == MigrationState::Pending));
    assert!(!exists(
        &conn,
        &format!("{}.lifeguard_migrations", schema.0)
    ));

    let first_two = Migrator::new(&FIXTURES[..2]).schema(schema.0.clone());
    assert_eq!(versions(&first_two.up(&mut conn).unwrap()), [1, 2]);
    let status = all.status(&conn).unwrap();
    let states: Vec<_> = status.iter().map(|s| (s.version, s.state())).collect();
    assert_eq!(
        states,
        [
            (1, MigrationState::Applied),
            (2, MigrationState::Applied),
            (3, MigrationState::Pending)
        ]
    );
    assert!(status[0].applied_at.is_some() && status[0].checksum_ok && status[0].known);
    assert!(status[2].applied_at.is_none() && status[2].duration_ms.is_none());

    // Code that knows only version 1 sees 2 as unknown.
    let only_first = Migrator::new(&FIXTURES[..1]).schema(schema.0.clone());
    let status = only_first.status(&conn).unwrap();
    assert_eq!(status[1].state(), MigrationState::Unknown);
    assert_eq!(status[1].name, "add_widget_color");
    // By default that does not stop `up` (an older binary after a newer one migrated)...
    assert!(only_first.up(&mut conn).unwrap().is_empty());
    // ... unless asked to.
    let err = only_first
        .clone()
        .deny_unknown(true)
        .up(&mut conn)
        .unwrap_err();
    let e = migrate_error(&err, MigrateErrorKind::Unknown, Some(2));
    assert!(e.message.contains("does not know: 2"), "{err}");
    // `down` never reverts what it does not know.
    let err = only_first.down(&mut conn, 1).unwrap_err();
    let e = migrate_error(&err, MigrateErrorKind::Unknown, Some(2));
    assert!(
        e.message
            .contains("cannot revert migration 2 (add_widget_color)"),
        "{err}"
    );

    // The status command's table.
    let text = Report::Status(all.status(&conn).unwrap()).to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].contains("version") && lines[0].contains("applied at"),
        "{text}"
    );
    assert!(
        lines[1].contains("create_widgets")
            && lines[1].contains("applied")
            && lines[1].contains(" UTC"),
        "{text}"
    );
    assert!(
        lines[3].contains("seed_widgets") && lines[3].ends_with("pending"),
        "{text}"
    );
}

#[test]
fn down_reverts_newest_first_and_down_to_zero_reverts_all() {
    let (mut conn, schema) = fresh("lg_mig_down");
    let m = fixtures(&schema);
    m.up(&mut conn).unwrap();
    assert_eq!(versions(&m.down(&mut conn, 1).unwrap()), [3]);
    assert_eq!(count(&conn, "SELECT count(*) FROM widgets"), 0);
    assert_eq!(tracked(&conn, &schema).len(), 2);
    assert_eq!(versions(&m.down_to(&mut conn, 0).unwrap()), [2, 1]);
    assert!(!exists(&conn, "widgets"));
    assert!(tracked(&conn, &schema).is_empty());
    assert!(m.down(&mut conn, 5).unwrap().is_empty());
    // And up again from scratch.
    assert_eq!(versions(&m.up(&mut conn).unwrap()), [1, 2, 3]);
    assert_eq!(versions(&m.down(&mut conn, 2).unwrap()), [3, 2]);
    assert_eq!(m.status(&conn).unwrap()[1].state(), MigrationState::Pending);
}

#[test]
fn down_refuses_an_irreversible_migration_before_reverting_anything() {
    let (mut conn, schema) = fresh("lg_mig_irrev");
    let m = Migrator::new(&[
        (
            "1_t.sql",
            "CREATE TABLE t (id int);\n-- lifeguard:down\nDROP TABLE t;",
        ),
        ("2_u.sql", "CREATE TABLE u (id int);"),
        (
            "3_v.sql",
            "CREATE TABLE v (id int);\n-- lifeguard:down\nDROP TABLE v;",
        ),
    ])
    .schema(schema.0.clone());
    m.up(&mut conn).unwrap();
    let err = m.down(&mut conn, 2).unwrap_err();
    let e = migrate_error(&err, MigrateErrorKind::Irreversible, Some(2));
    assert!(e.message.contains("cannot revert migration 2 (u)"), "{err}");
    assert!(exists(&conn, "v"), "3 was reverted although 2 cannot be");
    assert_eq!(tracked(&conn, &schema).len(), 3);
}

#[test]
fn a_changed_applied_migration_is_refused() {
    let (mut conn, schema) = fresh("lg_mig_sum");
    fixtures(&schema).up(&mut conn).unwrap();
    let edited = Migrator::new(&[
        FIXTURES[0],
        (
            "0002_add_widget_color.sql",
            "ALTER TABLE widgets ADD COLUMN colour text;",
        ),
        FIXTURES[2],
    ])
    .schema(schema.0.clone());
    let err = edited.up(&mut conn).unwrap_err();
    let msg = &migrate_error(&err, MigrateErrorKind::Changed, Some(2)).message;
    assert!(
        msg.contains("migration 2 (add_widget_color) was changed after it was applied"),
        "{msg}"
    );
    let err = edited.down(&mut conn, 3).unwrap_err();
    migrate_error(&err, MigrateErrorKind::Changed, Some(2));
    let status = edited.status(&conn).unwrap();
    assert_eq!(status[1].state(), MigrationState::Changed);
    assert!(!status[1].checksum_ok);
    // Only the up section counts: editing the down section is fine, and so are CRLF endings.
    let down_edited = Migrator::new(&[
        FIXTURES[0],
        (
            "0002_add_widget_color.sql",
            "ALTER TABLE widgets ADD COLUMN color text;\r\n-- lifeguard:down\r\nALTER TABLE widgets DROP COLUMN IF EXISTS color;",
        ),
        FIXTURES[2],
    ])
    .schema(schema.0.clone());
    assert!(down_edited.up(&mut conn).unwrap().is_empty());
    assert!(!lock_held(&conn, &edited));
}

#[test]
fn out_of_order_pending_migrations_are_refused_unless_allowed() {
    let (mut conn, schema) = fresh("lg_mig_order");
    Migrator::new(&[FIXTURES[0], FIXTURES[2]])
        .schema(schema.0.clone())
        .up(&mut conn)
        .unwrap_err(); // 3 needs 2's column
    Migrator::new(&[
        FIXTURES[0],
        ("0004_later.sql", "CREATE TABLE later (id int)"),
    ])
    .schema(schema.0.clone())
    .up(&mut conn)
    .unwrap();
    let all = Migrator::new(&[
        FIXTURES[0],
        FIXTURES[1],
        ("0004_later.sql", "CREATE TABLE later (id int)"),
    ])
    .schema(schema.0.clone());
    let err = all.up(&mut conn).unwrap_err();
    let e = migrate_error(&err, MigrateErrorKind::OutOfOrder, Some(2));
    assert!(
        e.message.contains(
            "pending migration 2 (add_widget_color) is older than the newest applied one (4)"
        ),
        "{err}"
    );
    assert_eq!(
        versions(&all.out_of_order(true).up(&mut conn).unwrap()),
        [2]
    );
}

#[test]
fn an_invalid_list_is_reported_before_touching_the_database() {
    let (mut conn, schema) = fresh("lg_mig_list");
    let dup = Migrator::new(&[
        ("1_a.sql", "SELECT 1"),
        ("001_b.sql", "SELECT 2"),
        ("c.sql", ""),
    ])
    .schema(schema.0.clone());
    let err = dup.up(&mut conn).unwrap_err();
    let msg = &migrate_error(&err, MigrateErrorKind::InvalidList, None).message;
    assert!(msg.contains("a and b share version 1"), "{msg}");
    assert!(msg.contains("c.sql must start with its version"), "{msg}");
    let err = dup.status(&conn).unwrap_err();
    migrate_error(&err, MigrateErrorKind::InvalidList, None);
    assert!(!exists(
        &conn,
        &format!("{}.lifeguard_migrations", schema.0)
    ));
}

#[test]
fn a_failing_migration_rolls_back_and_leaves_no_tracking_row() {
    let (mut conn, schema) = fresh("lg_mig_fail");
    let broken = Migrator::new(&[
        FIXTURES[0],
        (
            "0002_half.sql",
            "CREATE TABLE half (id int);\nINSERT INTO widgets (name) VALUES ('ghost');\nSELECT 1 / 0;",
        ),
        ("0003_never.sql", "CREATE TABLE never (id int);"),
    ])
    .schema(schema.0.clone());
    let err = broken.up(&mut conn).unwrap_err();
    // The migration is named, and the server's error stays readable underneath.
    let e = migrate_error(&err, MigrateErrorKind::Failed, Some(2));
    assert_eq!(e.message, "applying migration 2 (half)");
    assert_eq!(err.sqlstate(), Some("22012"), "{err}");
    assert!(
        err.to_string().contains("applying migration 2 (half)"),
        "{err}"
    );
    assert!(!exists(&conn, "half"));
    assert!(!exists(&conn, "never"));
    assert_eq!(count(&conn, "SELECT count(*) FROM widgets"), 0);
    assert_eq!(tracked(&conn, &schema), [(1, "create_widgets".to_owned())]);
    assert!(!lock_held(&conn, &broken), "the lock outlived the failure");
    // The connection is usable and a fixed version applies.
    let fixed = Migrator::new(&[
        FIXTURES[0],
        ("0002_half.sql", "CREATE TABLE half (id int);"),
        ("0003_never.sql", "CREATE TABLE never (id int);"),
    ])
    .schema(schema.0.clone());
    assert_eq!(versions(&fixed.up(&mut conn).unwrap()), [2, 3]);
}

/// A Rust migration: data through bound parameters, and its down step.
struct SeedWidgets;

impl Migration for SeedWidgets {
    fn version(&self) -> i64 {
        10
    }
    fn name(&self) -> &str {
        "seed_widgets_in_rust"
    }
    fn up(&self, tx: &Transaction<'_>) -> Result<()> {
        for (i, name) in ["alpha", "beta", "gamma"].into_iter().enumerate() {
            let color = format!("shade-{i}");
            tx.execute(
                "INSERT INTO widgets (name, color) VALUES ($1, $2)",
                &[&name, &color],
            )?;
        }
        Ok(())
    }
    fn down(&self, tx: &Transaction<'_>) -> Result<()> {
        tx.execute("DELETE FROM widgets WHERE color LIKE 'shade-%'", &[])
            .map(drop)
    }
    fn checksum(&self) -> String {
        "seed-v1".into()
    }
}

/// A Rust migration that fails half-way.
struct FailsHalfWay;

impl Migration for FailsHalfWay {
    fn version(&self) -> i64 {
        3
    }
    fn name(&self) -> &str {
        "fails_half_way"
    }
    fn up(&self, tx: &Transaction<'_>) -> Result<()> {
        tx.execute("INSERT INTO widgets (name) VALUES ('partial')", &[])?;
        Err(Error::config("the back-fill found a bad row"))
    }
    fn down(&self, _tx: &Transaction<'_>) -> Result<()> {
        Ok(())
    }
}

#[test]
fn rust_migrations_run_next_to_sql_ones() {
    let (mut conn, schema) = fresh("lg_mig_rust");
    // Registered out of order: they run by version.
    let m = Migrator::new(&FIXTURES[..2])
        .with(SeedWidgets)
        .with(ColorDefault)
        .schema(schema.0.clone());
    let runs = m.up(&mut conn).unwrap();
    assert_eq!(versions(&runs), [1, 2, 5, 10]);
    assert_eq!(runs[3].name, "seed_widgets_in_rust");
    assert_eq!(
        count(
            &conn,
            "SELECT count(*) FROM widgets WHERE color LIKE 'shade-%'"
        ),
        3
    );
    let sum: String = conn
        .query_one(
            &format!(
                "SELECT checksum FROM {}.lifeguard_migrations WHERE version = 10",
                schema.0
            ),
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(sum, "seed-v1");
    assert_eq!(versions(&m.down_to(&mut conn, 2).unwrap()), [10, 5]);
    assert_eq!(count(&conn, "SELECT count(*) FROM widgets"), 0);
    assert!(!conn
        .query_one(
            "SELECT column_default IS NOT NULL FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = 'widgets' AND column_name = 'color'",
            &[],
        )
        .unwrap()
        .get::<_, bool>(0));

    // A Rust migration's error rolls its work back too, and names it.
    let failing = Migrator::new(&FIXTURES[..2])
        .with(FailsHalfWay)
        .schema(schema.0.clone());
    let err = failing.up(&mut conn).unwrap_err();
    let e = migrate_error(&err, MigrateErrorKind::Failed, Some(3));
    assert_eq!(e.message, "applying migration 3 (fails_half_way)");
    let cause = e.source.as_deref().and_then(|s| s.downcast_ref::<Error>());
    assert!(
        matches!(cause, Some(Error::Config(m)) if m == "the back-fill found a bad row"),
        "{err}"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM widgets WHERE name = 'partial'"),
        0
    );
    assert_eq!(tracked(&conn, &schema).len(), 2);
}

/// Version 5, registered after version 10.
struct ColorDefault;

impl Migration for ColorDefault {
    fn version(&self) -> i64 {
        5
    }
    fn name(&self) -> &str {
        "color_not_null"
    }
    fn up(&self, tx: &Transaction<'_>) -> Result<()> {
        tx.batch_execute("ALTER TABLE widgets ALTER COLUMN color SET DEFAULT 'none'")
    }
    fn down(&self, tx: &Transaction<'_>) -> Result<()> {
        tx.batch_execute("ALTER TABLE widgets ALTER COLUMN color DROP DEFAULT")
    }
}

#[test]
fn concurrent_migrators_apply_each_migration_exactly_once() {
    let schema = Schema(unique_name("lg_mig_race"));
    pg::connect()
        .batch_execute(&format!(
            "CREATE SCHEMA {0}; CREATE TABLE {0}.applied_log (version int NOT NULL, pid int NOT NULL)",
            schema.0
        ))
        .unwrap();
    // Slow migrations that log which session applied them.
    let slow: Vec<(String, String)> = (1..=4)
        .map(|v| {
            (
                format!("{v:04}_slow_{v}.sql"),
                format!(
                    "SELECT pg_sleep(0.15);\nCREATE TABLE t{v} (id int);\n\
                     INSERT INTO applied_log VALUES ({v}, pg_backend_pid());"
                ),
            )
        })
        .collect();
    let contenders = 4;
    let barrier = Arc::new(Barrier::new(contenders));
    let started = Instant::now();
    let handles: Vec<_> = (0..contenders)
        .map(|_| {
            let (barrier, slow, name) = (barrier.clone(), slow.clone(), schema.0.clone());
            thread::spawn(move || {
                let mut conn = connect_in(&name);
                let list: Vec<(&str, &str)> =
                    slow.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                let m = Migrator::new(&list).schema(name);
                barrier.wait();
                versions(&m.up(&mut conn).unwrap())
            })
        })
        .collect();
    let mut all: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort();
    assert_eq!(
        all,
        [1, 2, 3, 4],
        "every version applied by exactly one migrator"
    );
    let conn = connect_in(&schema.0);
    assert_eq!(
        count(&conn, "SELECT count(*) FROM applied_log"),
        4,
        "a migration ran twice"
    );
    assert_eq!(
        count(&conn, "SELECT count(DISTINCT pid) FROM applied_log"),
        1,
        "the first migrator holds the lock for the whole run"
    );
    assert!(started.elapsed() >= Duration::from_millis(600));
}

#[test]
fn concurrent_migrators_in_coroutines_on_leases_of_a_pool() {
    let schema = Schema(unique_name("lg_mig_pool"));
    pg::init();
    let config = Config::parse(&primary_url())
        .unwrap()
        .options(format!("-c search_path={}", schema.0));
    let pool = Pool::connect(PoolConfig::new(config).max_size(4)).unwrap();
    pool.primary()
        .batch_execute(&format!("CREATE SCHEMA {}", schema.0))
        .unwrap();
    let sql: Vec<(String, String)> = (1..=3)
        .map(|v| {
            (
                format!("{v}_m{v}.sql"),
                format!("SELECT pg_sleep(0.05); CREATE TABLE c{v} (id int);"),
            )
        })
        .collect();
    let workers: Vec<_> = (0..3)
        .map(|_| {
            let (pool, sql, name) = (pool.clone(), sql.clone(), schema.0.clone());
            may::go!(move || {
                let list: Vec<(&str, &str)> =
                    sql.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
                let m = Migrator::new(&list)
                    .schema(name)
                    .statement_timeout(Duration::ZERO)
                    .lock_timeout(Duration::from_secs(30));
                migrate::startup_migrations(&pool, &m).map(|runs| versions(&runs))
            })
        })
        .collect();
    let mut all: Vec<i64> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap().unwrap())
        .collect();
    all.sort();
    assert_eq!(all, [1, 2, 3]);
    pool.close();
}

#[test]
fn lock_timeout_gives_up_while_another_session_holds_the_lock() {
    let (mut conn, schema) = fresh("lg_mig_lockto");
    let m = fixtures(&schema).lock_timeout(Duration::from_millis(300));
    let holder = pg::connect();
    holder
        .query("SELECT pg_advisory_lock($1)", &[&m.lock_key()])
        .unwrap();
    let start = Instant::now();
    let err = m.up(&mut conn).unwrap_err();
    migrate_error(&err, MigrateErrorKind::LockTimeout, None);
    assert!(start.elapsed() >= Duration::from_millis(300));
    holder
        .query("SELECT pg_advisory_unlock($1)", &[&m.lock_key()])
        .unwrap();
    assert_eq!(m.up(&mut conn).unwrap().len(), 3);
}

#[test]
fn the_lock_wait_is_bounded_by_default() {
    let debug = format!("{:?}", Migrator::default());
    assert!(debug.contains("lock_timeout: 300s"), "{debug}");
}

// Models for DDL and drift: unqualified, so they live in each test's schema.

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "makers")]
pub struct Maker {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "gadgets")]
pub struct Gadget {
    #[lifeguard(primary_key, auto_increment)]
    pub id: i64,
    pub maker_id: i64,
    pub name: String,
    pub price: Option<i32>,
    pub weight: f64,
    #[lifeguard(default_expr = "now()")]
    pub created_at: DateTime<Utc>,
    #[lifeguard(default_expr = "'{}'")]
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, LifeModel, LifeRecord)]
#[lifeguard(table_name = "nowhere")]
pub struct Nowhere {
    #[lifeguard(primary_key)]
    pub id: i32,
}

fn specs() -> (TableSpec, TableSpec) {
    (
        TableSpec::of::<Maker>().unique(["name"]),
        TableSpec::of::<Gadget>()
            .index(["maker_id"])
            .unique_index(["maker_id", "name"])
            .foreign_key_with(
                ForeignKey::to::<Maker>("maker_id").on_delete(ReferentialAction::Cascade),
            )
            .check("weight >= 0"),
    )
}

#[test]
fn ddl_from_models_creates_tables_that_round_trip() {
    let (conn, _schema) = fresh("lg_mig_ddl");
    let (makers, gadgets) = specs();
    assert!(create_table_sql::<Gadget>()
        .contains(r#""id" bigint GENERATED BY DEFAULT AS IDENTITY NOT NULL"#));
    makers.create(&conn).unwrap();
    gadgets.create(&conn).unwrap();
    // Idempotent.
    gadgets.create(&conn).unwrap();

    let acme = MakerRecord {
        name: Set("acme".into()),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    let g = GadgetRecord {
        maker_id: Set(acme.id),
        name: Set("anvil".into()),
        weight: Set(50.5),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap();
    assert!(g.id > 0);
    assert_eq!(g.price, None);
    assert!(g.tags.is_empty());
    assert!((Utc::now() - g.created_at).num_seconds().abs() < 60);
    let found = Gadget::find_by_id(g.id).one(&conn).unwrap().unwrap();
    assert_eq!((found.name.as_str(), found.weight), ("anvil", 50.5));

    // The constraints from the spec are there, with PostgreSQL's names.
    let dup = MakerRecord {
        name: Set("acme".into()),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    assert_eq!(dup.constraint(), Some("makers_name_key"), "{dup}");
    let orphan = GadgetRecord {
        maker_id: Set(acme.id + 1000),
        name: Set("x".into()),
        weight: Set(1.0),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    assert_eq!(
        orphan.constraint(),
        Some("gadgets_maker_id_fkey"),
        "{orphan}"
    );
    let negative = GadgetRecord {
        maker_id: Set(acme.id),
        name: Set("y".into()),
        weight: Set(-1.0),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    assert!(
        matches!(negative, Error::CheckViolation { .. }),
        "{negative}"
    );
    let same_name = GadgetRecord {
        maker_id: Set(acme.id),
        name: Set("anvil".into()),
        weight: Set(1.0),
        ..Default::default()
    }
    .insert(&conn)
    .unwrap_err();
    assert_eq!(
        same_name.constraint(),
        Some("gadgets_maker_id_name_idx"),
        "{same_name}"
    );
    assert_eq!(
        count(&conn, "SELECT count(*) FROM pg_indexes WHERE indexname = 'gadgets_maker_id_idx' AND schemaname = current_schema()"),
        1
    );
    // ON DELETE CASCADE.
    acme.delete(&conn).unwrap();
    assert_eq!(count(&conn, "SELECT count(*) FROM gadgets"), 0);
    // And the tables match the models.
    assert_eq!(makers.drift(&conn).unwrap(), []);
    assert_eq!(migrate::drift::<Gadget>(&conn).unwrap(), []);
}

#[test]
fn ddl_as_a_rust_migration() {
    struct CreateModels;
    impl Migration for CreateModels {
        fn version(&self) -> i64 {
            1
        }
        fn name(&self) -> &str {
            "create_models"
        }
        fn up(&self, tx: &Transaction<'_>) -> Result<()> {
            let (makers, gadgets) = specs();
            makers.create(tx)?;
            gadgets.create(tx)
        }
        fn down(&self, tx: &Transaction<'_>) -> Result<()> {
            let (makers, gadgets) = specs();
            tx.batch_execute(&format!("{}; {}", gadgets.drop_sql(), makers.drop_sql()))
        }
    }
    let (mut conn, schema) = fresh("lg_mig_ddlrust");
    let m = Migrator::default()
        .with(CreateModels)
        .schema(schema.0.clone());
    m.up(&mut conn).unwrap();
    assert_eq!(migrate::drift::<Gadget>(&conn).unwrap(), []);
    m.down(&mut conn, 1).unwrap();
    assert_eq!(
        migrate::drift::<Gadget>(&conn).unwrap(),
        [Difference::MissingTable {
            table: "gadgets".into()
        }]
    );
}

#[test]
fn drift_names_each_difference() {
    let (conn, _schema) = fresh("lg_mig_drift");
    let (makers, gadgets) = specs();
    makers.create(&conn).unwrap();
    gadgets.create(&conn).unwrap();
    assert_eq!(gadgets.drift(&conn).unwrap(), []);

    // A missing table.
    let d = migrate::drift::<Nowhere>(&conn).unwrap();
    assert_eq!(
        d,
        [Difference::MissingTable {
            table: "nowhere".into()
        }]
    );
    assert_eq!(
        d[0].to_string(),
        "nowhere: model says the table exists, database has no such table"
    );

    conn.batch_execute(
        "ALTER TABLE gadgets ADD COLUMN sku text NOT NULL;
         ALTER TABLE gadgets ALTER COLUMN name TYPE varchar(50), ALTER COLUMN name DROP NOT NULL;
         ALTER TABLE gadgets ALTER COLUMN price TYPE bigint;
         ALTER TABLE gadgets ALTER COLUMN weight SET DATA TYPE float8;
         ALTER TABLE gadgets ALTER COLUMN tags DROP DEFAULT;
         ALTER TABLE gadgets DROP COLUMN created_at;
         ALTER TABLE makers ALTER COLUMN name DROP NOT NULL;",
    )
    .unwrap();
    let d = gadgets.drift(&conn).unwrap();
    let text: Vec<String> = d.iter().map(ToString::to_string).collect();
    assert_eq!(
        text,
        [
            "gadgets.name: model says text NOT NULL, database has character varying(50) NULL",
            "gadgets.name: model says text NOT NULL, database has character varying(50) NULL",
            "gadgets.price: model says integer NULL, database has bigint NULL",
            "gadgets.created_at: model says timestamptz NOT NULL, database has no such column",
            "gadgets.tags: model says a default, database has no default",
            "gadgets.sku: model has no such column, database has text NOT NULL (inserts through the model will fail)",
        ],
        "{d:#?}"
    );
    assert!(matches!(&d[0], Difference::TypeMismatch { column, .. } if column == "name"));
    assert!(matches!(&d[1], Difference::NullabilityMismatch { column, .. } if column == "name"));
    assert!(matches!(&d[3], Difference::MissingColumn { column, .. } if column == "created_at"));
    assert!(matches!(
        &d[5],
        Difference::ExtraColumn { column, database: ColumnShape { nullable: false, .. }, .. } if column == "sku"
    ));
    assert_eq!(
        makers.drift(&conn).unwrap(),
        [Difference::NullabilityMismatch {
            table: "makers".into(),
            column: "name".into(),
            model: ColumnShape {
                sql_type: "text".into(),
                nullable: false,
                has_default: false
            },
            database: ColumnShape {
                sql_type: "text".into(),
                nullable: true,
                has_default: false
            },
        }]
    );

    // Primary key.
    conn.batch_execute(
        "ALTER TABLE makers DROP CONSTRAINT makers_pkey CASCADE; ALTER TABLE makers ADD PRIMARY KEY (id, name)",
    )
    .unwrap();
    let d = makers.drift(&conn).unwrap();
    assert_eq!(
        d.last().map(ToString::to_string).as_deref(),
        Some("makers: model says PRIMARY KEY (id), database has PRIMARY KEY (id, name)")
    );
}

#[test]
fn commands_up_status_drift_down() {
    let (mut conn, schema) = fresh("lg_mig_cmd");
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../lifeguard-core/migrations_test"
    );
    let migrator = Migrator::from_dir(dir).unwrap().schema(schema.0.clone());
    let tables = [TableSpec::of::<Maker>()];
    let mut run = |command: Command| command.run(&migrator, &tables, &mut conn).unwrap();
    let report = run(Command::Up);
    let out = report.to_string();
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(out.starts_with("applied  1 create_widgets ("), "{out}");
    assert_eq!(
        run(Command::Up).to_string().trim(),
        "nothing to apply: the database is up to date"
    );
    let out = run(Command::Status).to_string();
    let applied = out
        .lines()
        .skip(1)
        .filter(|l| l.contains(" applied "))
        .count();
    assert_eq!(applied, 3, "{out}");
    let report = run(Command::Drift);
    assert_eq!(report.differences(), 1, "{report}");
    assert!(
        report
            .to_string()
            .contains("DRIFT    makers: model says the table exists"),
        "{report}"
    );
    TableSpec::of::<Maker>()
        .create(&connect_in(&schema.0))
        .unwrap();
    let report = run(Command::Drift);
    assert_eq!(
        (report.differences(), report.to_string().trim()),
        (0, "ok       makers")
    );
    let out = run(Command::DownTo(1)).to_string();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("reverted 3 seed_widgets ("), "{out}");
    assert!(
        lines[1].starts_with("reverted 2 add_widget_color ("),
        "{out}"
    );
    assert!(run(Command::Down(9)).to_string().starts_with("reverted 1 "));
    assert_eq!(run(Command::Down(1)).to_string(), "nothing to revert\n");
    // Without models, drift compares nothing and says so.
    let report = Command::Drift.run(&migrator, &[], &mut conn).unwrap();
    assert_eq!(
        (report.differences(), report.to_string().trim()),
        (
            0,
            "no models registered with this binary: nothing to compare"
        )
    );
}
