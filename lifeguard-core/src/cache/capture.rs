//! Change capture for cached models: the row version, the outbox and the registry the
//! reflector reads, as SQL to run once or embed in a migration (spec §3.3, §3.5).
//!
//! For a model `M` on table `t` this installs:
//! - `t.row_version bigint`, set from the sequence `lifeguard_row_version` by a `BEFORE
//!   INSERT OR UPDATE` row trigger: versions only grow, across a delete and re-insert too;
//! - statement-level `AFTER` triggers with transition tables that append one row per
//!   changed key to `lifeguard_outbox` in the writing transaction (a key that an update
//!   moves away from, and every deleted key, as a drop), then `pg_notify` as a wake-up only;
//! - a row of `lifeguard_cache_tables`: the statement the reflector fetches current rows
//!   with, in the same layout the application caches, and the entity's mode and TTL.

use std::fmt::Write as _;

use super::key::{sql_key_part, sql_key_value};
use super::{CacheMode, CacheSpec, Layout};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::model::LifeModel;
use crate::query::quote;

/// Where the shared capture tables live and whether triggers send the wake-up.
///
/// ```
/// use lifeguard_core::cache::CaptureOptions;
/// let opts = CaptureOptions::new().schema("lifeguard").notify(false);
/// assert_eq!(opts.get_schema(), "lifeguard");
/// ```
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    schema: String,
    notify: bool,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions::new()
    }
}

impl CaptureOptions {
    /// The outbox, the registry and the sequence in schema `public`, with the wake-up.
    pub fn new() -> CaptureOptions {
        CaptureOptions {
            schema: "public".to_owned(),
            notify: true,
        }
    }

    /// The schema of `lifeguard_outbox`, `lifeguard_cache_tables` and
    /// `lifeguard_row_version` (created when missing).
    pub fn schema(mut self, schema: impl Into<String>) -> CaptureOptions {
        self.schema = schema.into();
        self
    }

    /// Whether the triggers send `NOTIFY lifeguard_outbox` (default on). A transaction
    /// with a pending `NOTIFY` takes a global lock at commit, so under many concurrent
    /// writers the reflector's polling alone may be the better choice.
    pub fn notify(mut self, on: bool) -> CaptureOptions {
        self.notify = on;
        self
    }

    /// The schema.
    pub fn get_schema(&self) -> &str {
        &self.schema
    }

    /// `name` qualified by the schema, quoted: how the reflector names the outbox and the
    /// registry.
    ///
    /// ```
    /// use lifeguard_core::cache::CaptureOptions;
    /// assert_eq!(CaptureOptions::new().qualify("lifeguard_outbox"), r#""public"."lifeguard_outbox""#);
    /// ```
    pub fn qualify(&self, name: &str) -> String {
        format!("{}.{}", quote(&self.schema), quote(name))
    }
}

/// The name the outbox, the registry and the keys know a model's table by: `schema.table`,
/// or the bare table name for a model that names no schema (its table is whichever the
/// connections' `search_path` finds, for the application and the reflector alike).
pub(crate) fn table_name<M: LifeModel>() -> String {
    match M::SCHEMA {
        Some(schema) => format!("{schema}.{}", M::TABLE),
        None => M::TABLE.to_owned(),
    }
}

/// The shared objects every captured table writes to, in `opts`' schema (idempotent):
/// the row-version sequence, the outbox and the registry. Part of
/// [`change_capture_sql`]; the reflector runs it at start-up so that it can wait for
/// changes before any application has installed capture. It starts by taking a
/// transaction-scoped advisory lock: `CREATE ... IF NOT EXISTS` is not safe against a
/// concurrent twin, and applications and reflectors start together.
pub fn capture_base_sql(opts: &CaptureOptions) -> String {
    let schema = quote(&opts.schema);
    let seq = opts.qualify("lifeguard_row_version");
    let outbox = opts.qualify("lifeguard_outbox");
    let registry = opts.qualify("lifeguard_cache_tables");
    format!(
        "SELECT pg_advisory_xact_lock(hashtextextended('lifeguard-capture', 0));\n\
         CREATE SCHEMA IF NOT EXISTS {schema};\n\
         CREATE SEQUENCE IF NOT EXISTS {seq};\n\
         CREATE TABLE IF NOT EXISTS {outbox} (\n  \
           id bigserial PRIMARY KEY,\n  \
           txid xid8 NOT NULL DEFAULT pg_current_xact_id(),\n  \
           tbl text NOT NULL,\n  \
           tenant text NOT NULL DEFAULT '',\n  \
           pk text NOT NULL,\n  \
           op \"char\" NOT NULL,\n  \
           row_version bigint NOT NULL,\n  \
           created_at timestamptz NOT NULL DEFAULT clock_timestamp()\n\
         );\n\
         CREATE INDEX IF NOT EXISTS lifeguard_outbox_txid_id ON {outbox} (txid, id);\n\
         CREATE INDEX IF NOT EXISTS lifeguard_outbox_created_at ON {outbox} (created_at);\n\
         CREATE TABLE IF NOT EXISTS {registry} (\n  \
           tbl text NOT NULL,\n  \
           layout text NOT NULL,\n  \
           fetch_sql text NOT NULL,\n  \
           mode text NOT NULL,\n  \
           ttl_ms bigint NOT NULL,\n  \
           registered_at timestamptz NOT NULL DEFAULT now(),\n  \
           PRIMARY KEY (tbl, layout)\n\
         );\n\
         "
    )
}

/// The SQL that installs change capture for `M` (idempotent), to run once or to embed in a
/// migration.
///
/// # Errors
///
/// [`Error::InvalidUse`] when `M` is not cached (`#[lifeguard(cache)]`) or a key or tenant
/// column has a type the cache cannot key on (integers, text and UUIDs can).
pub fn change_capture_sql<M: LifeModel>(opts: &CaptureOptions) -> Result<String> {
    let spec = spec_of::<M>()?;
    let table = table_name::<M>();
    let seq = opts.qualify("lifeguard_row_version");
    let outbox = opts.qualify("lifeguard_outbox");
    let target = M::QUALIFIED;
    let func = |suffix: &str| {
        opts.qualify(&format!(
            "lifeguard_{suffix}_{}",
            table.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
        ))
    };
    let capture = func("capture");
    let key_of = |alias: &str| key_exprs::<M>(alias, spec);
    let (pk_new, tenant_new) = key_of("n")?;
    let (pk_old, tenant_old) = key_of("o")?;
    let notify = match opts.notify {
        true => "PERFORM pg_notify('lifeguard_outbox', '');",
        false => "",
    };
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let tbl = lit(&table);
    let mut sql = capture_base_sql(opts);
    let _ = write!(
        sql,
        "ALTER TABLE {target} ADD COLUMN IF NOT EXISTS row_version bigint NOT NULL DEFAULT 0;\n\
         CREATE OR REPLACE FUNCTION {version_fn}() RETURNS trigger LANGUAGE plpgsql AS $lg$\n\
         BEGIN\n  NEW.row_version := nextval('{seq_text}');\n  RETURN NEW;\nEND\n$lg$;\n\
         CREATE OR REPLACE TRIGGER lifeguard_row_version BEFORE INSERT OR UPDATE ON {target}\n  \
           FOR EACH ROW EXECUTE FUNCTION {version_fn}();\n\
         CREATE OR REPLACE FUNCTION {capture}() RETURNS trigger LANGUAGE plpgsql AS $lg$\n\
         BEGIN\n  \
           IF TG_OP IN ('INSERT', 'UPDATE') THEN\n    \
             INSERT INTO {outbox} (tbl, tenant, pk, op, row_version)\n    \
             SELECT {tbl}, {tenant_new}, {pk_new}, 'u', n.row_version FROM new_rows n;\n  \
           END IF;\n  \
           IF TG_OP = 'UPDATE' THEN\n    \
             INSERT INTO {outbox} (tbl, tenant, pk, op, row_version)\n    \
             SELECT {tbl}, {tenant_old}, {pk_old}, 'd', nextval('{seq_text}') FROM old_rows o\n    \
             WHERE NOT EXISTS (SELECT 1 FROM new_rows n WHERE ({pk_new}, {tenant_new}) = ({pk_old}, {tenant_old}));\n  \
           ELSIF TG_OP = 'DELETE' THEN\n    \
             INSERT INTO {outbox} (tbl, tenant, pk, op, row_version)\n    \
             SELECT {tbl}, {tenant_old}, {pk_old}, 'd', nextval('{seq_text}') FROM old_rows o;\n  \
           END IF;\n  \
           {notify}\n  \
           RETURN NULL;\n\
         END\n$lg$;\n\
         CREATE OR REPLACE TRIGGER lifeguard_capture_insert AFTER INSERT ON {target}\n  \
           REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {capture}();\n\
         CREATE OR REPLACE TRIGGER lifeguard_capture_update AFTER UPDATE ON {target}\n  \
           REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION {capture}();\n\
         CREATE OR REPLACE TRIGGER lifeguard_capture_delete AFTER DELETE ON {target}\n  \
           REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION {capture}();\n\
         ",
        version_fn = func("version"),
        seq_text = seq.replace('\'', "''"),
    );
    sql.push_str(&registration_sql::<M>(opts)?);
    Ok(sql)
}

/// The statement that registers `M`'s current layout with the reflector (part of
/// [`change_capture_sql`]); run it at start-up with [`register`] so a deploy that changes
/// the model registers its new layout while the old one stays for instances still running.
pub fn registration_sql<M: LifeModel>(opts: &CaptureOptions) -> Result<String> {
    let spec = spec_of::<M>()?;
    let lit = |s: &str| format!("'{}'", s.replace('\'', "''"));
    Ok(format!(
        "INSERT INTO {registry} (tbl, layout, fetch_sql, mode, ttl_ms)\n  \
           VALUES ({tbl}, {layout}, {fetch}, {mode}, {ttl})\n  \
           ON CONFLICT (tbl, layout) DO UPDATE SET fetch_sql = EXCLUDED.fetch_sql,\n    \
             mode = EXCLUDED.mode, ttl_ms = EXCLUDED.ttl_ms, registered_at = now();\n",
        registry = opts.qualify("lifeguard_cache_tables"),
        tbl = lit(&table_name::<M>()),
        layout = lit(&Layout::of::<M>().hex()),
        fetch = lit(&fetch_sql::<M>(spec)?),
        mode = lit(spec.mode.as_str()),
        ttl = spec.ttl.as_millis(),
    ))
}

/// Runs [`registration_sql`] on `db` (the primary).
pub fn register<M: LifeModel>(db: &(impl Executor + ?Sized), opts: &CaptureOptions) -> Result<()> {
    db.batch_execute(&registration_sql::<M>(opts)?)
}

/// Runs [`change_capture_sql`] on `db` (the primary), refusing a table whose row-level
/// security is on while the model has no tenant column: rows visible under one role would
/// otherwise be served to another.
pub fn install_change_capture<M: LifeModel>(
    db: &(impl Executor + ?Sized),
    opts: &CaptureOptions,
) -> Result<()> {
    let spec = spec_of::<M>()?;
    let rls: Option<bool> = db
        .query_opt(
            "SELECT relrowsecurity FROM pg_class WHERE oid = to_regclass($1)",
            &[&M::QUALIFIED],
        )?
        .map(|row| row.try_get(0))
        .transpose()?;
    if rls == Some(true) && spec.tenant.is_none() {
        return Err(Error::invalid_use(format!(
            "{} has row-level security and no tenant column: it cannot be cached",
            M::QUALIFIED
        )));
    }
    db.batch_execute(&change_capture_sql::<M>(opts)?)
}

fn spec_of<M: LifeModel>() -> Result<&'static CacheSpec> {
    M::CACHE.as_ref().map(|hooks| &hooks.spec).ok_or_else(|| {
        Error::invalid_use(format!(
            "{} is not cached: mark it #[lifeguard(cache)]",
            M::QUALIFIED
        ))
    })
}

/// The SQL expressions of a row's key text and tenant text, for rows aliased `alias`.
fn key_exprs<M: LifeModel>(alias: &str, spec: &CacheSpec) -> Result<(String, String)> {
    let part = |name: &str, sql_type: &str| {
        sql_key_part(&format!("{alias}.{}", quote(name)), sql_type).ok_or_else(|| {
            Error::invalid_use(format!(
                "{}.{name} is {sql_type}; the cache keys on integers, text and UUIDs",
                M::QUALIFIED
            ))
        })
    };
    let pk = M::COLUMNS
        .iter()
        .filter(|c| c.primary_key)
        .map(|c| part(c.name, c.sql_type))
        .collect::<Result<Vec<_>>>()?
        .join(" || ',' || ");
    let tenant = match spec.tenant {
        Some(t) => {
            let col = M::COLUMNS.iter().find(|c| c.name == t).ok_or_else(|| {
                Error::invalid_use(format!("{} has no tenant column {t:?}", M::QUALIFIED))
            })?;
            part(col.name, col.sql_type)?
        }
        None => "''".to_owned(),
    };
    Ok((pk, tenant))
}

/// The reflector's fetch: given `$1`, an array of key texts, the current row of each (with
/// its key text and tenant text first, then the model's columns and `row_version`, the
/// layout the application caches); rows gone (or soft-deleted) are simply absent.
fn fetch_sql<M: LifeModel>(spec: &CacheSpec) -> Result<String> {
    let (pk, tenant) = key_exprs::<M>("t", spec)?;
    let mut join = Vec::new();
    for (i, c) in M::COLUMNS.iter().filter(|c| c.primary_key).enumerate() {
        let part = format!("split_part(k.lg_key, ',', {})", i + 1);
        let value = sql_key_value(&part, c.sql_type).ok_or_else(|| {
            Error::invalid_use(format!("{}.{} cannot be keyed on", M::QUALIFIED, c.name))
        })?;
        join.push(format!("t.{} = {value}", quote(c.name)));
    }
    if let Some(deleted) = M::SOFT_DELETE {
        join.push(format!("t.{} IS NULL", quote(deleted)));
    }
    let columns: Vec<String> = M::COLUMNS
        .iter()
        .map(|c| format!("t.{}", quote(c.name)))
        .collect();
    Ok(format!(
        "SELECT {pk} AS lg_key, {tenant} AS lg_tenant, {}, t.row_version \
         FROM unnest($1::text[]) AS k(lg_key) JOIN {} t ON {}",
        columns.join(", "),
        M::QUALIFIED,
        join.join(" AND ")
    ))
}

impl CacheMode {
    /// The registry's name of the mode.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheMode::Refresh => "refresh",
            CacheMode::Invalidate => "invalidate",
        }
    }
}
