//! Row versions (spec §3.3, C13): the capture trigger's `row_version` grows with every
//! committed change of a row, in commit order, under concurrent writers, and across a
//! delete and re-insert of the same key; the outbox records each change with it.

use std::sync::{Arc, Once};

use lifeguard_core::cache::{install_change_capture, CaptureOptions};
use lifeguard_core::{Executor, LifeModel};
use lifeguard_tests::pg::connect;

#[derive(Debug, Clone, LifeModel)]
#[lifeguard(table_name = "counters", schema_name = "cache_versions", cache)]
pub struct Counter {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub n: i64,
}

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let conn = connect();
        conn.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS cache_versions;
             CREATE TABLE IF NOT EXISTS cache_versions.counters (id bigint PRIMARY KEY, n bigint NOT NULL)",
        )
        .expect("table");
        install_change_capture::<Counter>(
            &conn,
            &CaptureOptions::new().schema("cache_versions").notify(false),
        )
        .expect("capture");
    });
}

#[test]
fn versions_grow_in_commit_order_under_sixteen_writers() {
    setup();
    let id = i64::from(std::process::id());
    let conn = Arc::new(connect());
    conn.execute(
        "INSERT INTO cache_versions.counters (id, n) VALUES ($1, 0)
         ON CONFLICT (id) DO UPDATE SET n = 0",
        &[&id],
    )
    .unwrap();
    // Each update takes the row lock, so `n` numbers the commits in order; the version the
    // trigger set must grow with it.
    let writers: Vec<_> = (0..16)
        .map(|_| {
            let conn = Arc::new(connect());
            may::go!(move || {
                (0..625)
                    .map(|_| {
                        let row = conn.query_one(
                            "UPDATE cache_versions.counters SET n = n + 1 WHERE id = $1 RETURNING n, row_version",
                            &[&id],
                        )?;
                        Ok((row.try_get::<_, i64>(0)?, row.try_get::<_, i64>(1)?))
                    })
                    .collect::<lifeguard_core::Result<Vec<(i64, i64)>>>()
            })
        })
        .collect();
    let mut seen: Vec<(i64, i64)> = Vec::new();
    for w in writers {
        seen.extend(w.join().expect("writer").unwrap());
    }
    seen.sort_unstable();
    assert_eq!(seen.len(), 10_000);
    for pair in seen.windows(2) {
        assert!(
            pair[0].0 < pair[1].0 && pair[0].1 < pair[1].1,
            "commit {} has version {} but commit {} has {}",
            pair[0].0,
            pair[0].1,
            pair[1].0,
            pair[1].1
        );
    }
    // The outbox has every change with its version, the same ones.
    let versions: Vec<i64> = conn
        .query(
            "SELECT row_version FROM cache_versions.lifeguard_outbox
             WHERE tbl = 'cache_versions.counters' AND pk = $1 AND op = 'u' ORDER BY row_version",
            &[&format!("i:{id}")],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let from_updates: Vec<i64> = seen.iter().map(|(_, v)| *v).collect();
    assert!(
        from_updates
            .iter()
            .all(|v| versions.binary_search(v).is_ok()),
        "an update's version is missing from the outbox"
    );
}

#[test]
fn a_deleted_and_reinserted_key_gets_a_newer_version() {
    setup();
    let id = -i64::from(std::process::id());
    let conn = connect();
    let before: i64 = conn
        .query_one(
            "INSERT INTO cache_versions.counters (id, n) VALUES ($1, 1)
             ON CONFLICT (id) DO UPDATE SET n = 1 RETURNING row_version",
            &[&id],
        )
        .unwrap()
        .get(0);
    conn.execute("DELETE FROM cache_versions.counters WHERE id = $1", &[&id])
        .unwrap();
    let dropped: i64 = conn
        .query_one(
            "SELECT max(row_version) FROM cache_versions.lifeguard_outbox
             WHERE tbl = 'cache_versions.counters' AND pk = $1 AND op = 'd'",
            &[&format!("i:{id}")],
        )
        .unwrap()
        .get(0);
    let after: i64 = conn
        .query_one(
            "INSERT INTO cache_versions.counters (id, n) VALUES ($1, 2) RETURNING row_version",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert!(
        before < dropped && dropped < after,
        "{before} {dropped} {after}"
    );
}
