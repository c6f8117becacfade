//! Tenant isolation in the cache (spec C15): the tenant is part of the key, a row is
//! only ever stored under its own tenant's key, a model keyed by tenant is not cached for a
//! handle without one, and a table under row-level security without a tenant column is
//! refused.

use std::sync::Once;
use std::time::Duration;

use lifeguard_core::cache::{install_change_capture, CaptureOptions};
use lifeguard_core::model::LifeModel;
use lifeguard_core::pool::ReadOptions;
use lifeguard_core::{Error, Executor, LifeModel};
use lifeguard_tests::cache::{beat, cache_metric, cached_pool};
use lifeguard_tests::pg::connect;

#[derive(Debug, Clone, PartialEq, LifeModel)]
#[lifeguard(
    table_name = "notes",
    schema_name = "cache_tenants",
    cache(tenant = "tenant_id")
)]
pub struct Note {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub tenant_id: i64,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, LifeModel)]
#[lifeguard(table_name = "secrets", schema_name = "cache_tenants", cache)]
pub struct Secret {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub body: String,
}

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let conn = connect();
        conn.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS cache_tenants;
             CREATE TABLE IF NOT EXISTS cache_tenants.notes (
               id bigint PRIMARY KEY, tenant_id bigint NOT NULL, body text NOT NULL);
             CREATE TABLE IF NOT EXISTS cache_tenants.secrets (id bigint PRIMARY KEY, body text NOT NULL);
             ALTER TABLE cache_tenants.secrets ENABLE ROW LEVEL SECURITY",
        )
        .expect("tables");
        install_change_capture::<Note>(&conn, &CaptureOptions::new().schema("cache_tenants"))
            .expect("capture");
    });
}

fn set_body(id: i64, body: &str) {
    connect()
        .execute(
            "UPDATE cache_tenants.notes SET body = $2 WHERE id = $1",
            &[&id, &body],
        )
        .expect("update");
}

#[test]
fn a_tenant_is_served_only_its_own_entries() {
    setup();
    let (pool, cache) = cached_pool(|c| c);
    beat(&cache, 0, u64::MAX, Duration::from_secs(60));
    let id = i64::from(std::process::id()) * 10 + 1;
    connect()
        .execute(
            "INSERT INTO cache_tenants.notes (id, tenant_id, body) VALUES ($1, 7, 'a1')
             ON CONFLICT (id) DO UPDATE SET tenant_id = 7, body = 'a1'",
            &[&id],
        )
        .unwrap();
    let as_tenant = |t: i64| pool.db(ReadOptions::default()).with_tenant(&t);
    // Tenant 7 warms its row, then is served from the cache.
    assert_eq!(
        Note::find_by_id(id)
            .one(&as_tenant(7))
            .unwrap()
            .unwrap()
            .body,
        "a1"
    );
    set_body(id, "a2");
    assert_eq!(
        Note::find_by_id(id)
            .one(&as_tenant(7))
            .unwrap()
            .unwrap()
            .body,
        "a1"
    );
    // Tenant 8 asks for the same key: never tenant 7's entry, and nothing is stored under
    // tenant 8's key for a row of tenant 7.
    assert_eq!(
        Note::find_by_id(id)
            .one(&as_tenant(8))
            .unwrap()
            .unwrap()
            .body,
        "a2"
    );
    set_body(id, "a3");
    assert_eq!(
        Note::find_by_id(id)
            .one(&as_tenant(8))
            .unwrap()
            .unwrap()
            .body,
        "a3"
    );
    // Without a tenant the model is not cached at all.
    assert_eq!(Note::find_by_id(id).one(&pool).unwrap().unwrap().body, "a3");
    assert!(
        cache_metric(
            &cache,
            "lifeguard_cache_bypass_total",
            &[("reason", "no_tenant")]
        ) >= 1.0
    );
    // Tenant 7 still has its own entry.
    assert_eq!(
        Note::find_by_id(id)
            .one(&as_tenant(7))
            .unwrap()
            .unwrap()
            .body,
        "a1"
    );
}

#[test]
fn row_level_security_without_a_tenant_is_refused() {
    setup();
    let e = install_change_capture::<Secret>(
        &connect(),
        &CaptureOptions::new().schema("cache_tenants"),
    )
    .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidUse(m) if m.contains("row-level security")),
        "{e}"
    );
}
