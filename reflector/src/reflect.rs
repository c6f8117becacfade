//! One pass's changes, reflected into Redis: deduplicated per key, the current rows read
//! from the primary in one statement per table layout, and one `reflect` script per key,
//! all pipelined in one round trip.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use lifeguard_core::cache::key::{lease_key, KeySpace};
use lifeguard_core::cache::redis::RedisClient;
use lifeguard_core::cache::{encode_payload, scripts, CacheMode};
use lifeguard_core::pg::Row;
use lifeguard_core::{Error, SqlState};

use crate::metrics::Metrics;
use crate::session::{OutboxRow, Registered, Session};

/// How long the pipelined scripts of one pass may take.
const REDIS_DEADLINE: Duration = Duration::from_secs(2);

/// Why a pass did not complete.
pub(crate) enum Stop {
    /// A newer leader has written: this one must step down.
    Fenced,
    /// A call failed; the pass is retried from the same checkpoint.
    Failed(&'static str, Error),
}

/// The newest change of one key in a pass.
struct Change<'a> {
    tenant: &'a str,
    pk: &'a str,
    version: i64,
    /// When it was read, how old the oldest of the key's outbox rows was.
    age: Duration,
}

/// What a pass needs besides its rows.
pub(crate) struct Target<'a> {
    pub session: &'a Session,
    pub redis: &'a RedisClient,
    pub metrics: &'a Metrics,
    pub registry: &'a HashMap<String, Vec<Registered>>,
    pub namespace: &'a str,
    pub epoch: i64,
    pub generation: i64,
}

/// Reflects `rows` (read `read_at`); returns whether a table was missing from the
/// registry (it may have been registered since it was loaded).
pub(crate) fn reflect(
    target: &Target<'_>,
    rows: &[OutboxRow],
    read_at: Instant,
) -> Result<bool, Stop> {
    let mut tables: BTreeMap<&str, HashMap<(&str, &str), Change<'_>>> = BTreeMap::new();
    for row in rows {
        let change = tables
            .entry(row.tbl.as_str())
            .or_default()
            .entry((row.tenant.as_str(), row.pk.as_str()))
            .or_insert(Change {
                tenant: &row.tenant,
                pk: &row.pk,
                version: row.version,
                age: row.age,
            });
        change.version = change.version.max(row.version);
        change.age = change.age.max(row.age);
    }
    let mut unknown = false;
    let mut calls = Vec::new();
    let epoch = target.epoch.to_string();
    for (tbl, changes) in &tables {
        let Some(layouts) = target.registry.get(*tbl) else {
            unknown = true;
            target.metrics.error("unregistered_table");
            continue;
        };
        for layout in layouts {
            let space = KeySpace::new(
                target.namespace,
                layout.layout,
                target.generation.max(0).unsigned_abs(),
                tbl,
            );
            let current = match layout.mode {
                CacheMode::Refresh => current_rows(target, layout, changes)?,
                CacheMode::Invalidate => HashMap::new(),
            };
            for change in changes.values() {
                let key = space.row(change.tenant, change.pk);
                let (version, payload, op) = match current.get(change.pk) {
                    // A row that moved to another tenant is gone from this tenant's key.
                    Some(row) if row.try_get::<_, &str>(1).ok() == Some(change.tenant) => {
                        match row.try_get::<_, i64>(row.len() - 1) {
                            Ok(v) => (v, encode_payload(row, 2), "r"),
                            Err(_) => (change.version, Vec::new(), "d"),
                        }
                    }
                    _ => (change.version, Vec::new(), "d"),
                };
                let lease = lease_key(&key);
                calls.push((
                    vec![key.into_bytes(), lease.into_bytes()],
                    vec![
                        epoch.clone().into_bytes(),
                        version.to_string().into_bytes(),
                        payload,
                        op.as_bytes().to_vec(),
                    ],
                ));
            }
        }
    }
    let replies = target
        .redis
        .eval_each_until(scripts::reflect(), &calls, Instant::now() + REDIS_DEADLINE)
        .map_err(|e| Stop::Failed("redis", e))?;
    let mut fenced = false;
    for reply in replies {
        let result = match redis::from_redis_value::<String>(reply) {
            Ok(r) => r,
            Err(_) => "error".to_owned(),
        };
        fenced |= result == "fenced";
        target.metrics.events.with_label_values(&[&result]).inc();
    }
    let since_read = read_at.elapsed();
    for change in tables.values().flat_map(HashMap::values) {
        target
            .metrics
            .refresh_latency
            .observe((change.age + since_read).as_secs_f64());
    }
    if fenced {
        return Err(Stop::Fenced);
    }
    Ok(unknown)
}

/// The current rows of `changes`' keys by `layout`'s fetch statement, by key text.
/// A fetch that fails (a layout whose columns are gone, say) leaves the map empty: every
/// key is then dropped, which is always safe.
fn current_rows<'a>(
    target: &Target<'_>,
    layout: &Registered,
    changes: &HashMap<(&'a str, &'a str), Change<'a>>,
) -> Result<HashMap<String, Row>, Stop> {
    let mut pks: Vec<&str> = changes.values().map(|c| c.pk).collect();
    pks.sort_unstable();
    pks.dedup();
    match target.session.fetch_rows(&layout.fetch_sql, &pks) {
        Ok(rows) => Ok(rows
            .into_iter()
            .filter_map(|row| Some((row.try_get::<_, String>(0).ok()?, row)))
            .collect()),
        // Only a statement the server refuses for what it says is a reason to drop the
        // keys; a lost connection or a timeout is a reason to try the pass again.
        Err(e)
            if e.db_error().is_none()
                || e.is_connection()
                || e.sqlstate() == Some(SqlState::QUERY_CANCELED) =>
        {
            Err(Stop::Failed("fetch", e))
        }
        Err(e) => {
            tracing::warn!(error = %e, layout = layout.layout, "cannot fetch rows; dropping their keys");
            target.metrics.error("fetch");
            Ok(HashMap::new())
        }
    }
}
