//! Insert, update and delete of records, with their SQL built once per shape.
//!
//! A record's statement depends only on which columns it sets (unless it sets one to an
//! expression), so the text is built the first time a shape is seen and reused after: the
//! hot path formats no SQL, and the stable text always hits the statement cache.

use std::any::TypeId;
use std::sync::OnceLock;

use super::active::Field;
use super::bulk::OnConflict;
use super::forget;
use super::shapes::{cached, statement, Kind, Returning, ShapeKey};
use super::{FromRow, LifeModel, LifeRecord, ModelColumn};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::pg::ToSql;
use crate::query::{quote, require, Expr};

/// The set fields of a record and what caching its statement needs.
struct Changes<'a, C> {
    set: Vec<(C, Field<'a>)>,
    mask: u128,
    has_expr: bool,
}

fn changes<R: LifeRecord>(record: &R) -> Changes<'_, <R::Model as LifeModel>::Column> {
    let mut out = Changes {
        set: Vec::new(),
        mask: 0,
        has_expr: false,
    };
    for (i, &(col, field)) in record.fields().as_ref().iter().enumerate() {
        match field {
            Field::Set(_) => {}
            Field::Expr(_) => out.has_expr = true,
            Field::NotSet | Field::Unchanged(_) => continue,
        }
        if i < 128 {
            out.mask |= 1 << i;
        } else {
            out.has_expr = true;
        }
        out.set.push((col, field));
    }
    out
}

/// `now()`, the value of the automatic timestamp columns.
fn now_expr() -> &'static Expr {
    static NOW: OnceLock<Expr> = OnceLock::new();
    NOW.get_or_init(|| Expr::cust("now()"))
}

/// The write that fills the automatic timestamp columns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Write {
    Insert,
    Update,
}

/// Whether column `name` is one the write fills with `now()` when the record leaves it
/// unset: `created_at` and `updated_at` on insert, `updated_at` on update.
fn is_auto_timestamp<M: LifeModel>(name: &str, write: Write) -> bool {
    (write == Write::Insert && M::CREATED_AT == Some(name)) || M::UPDATED_AT == Some(name)
}

/// Adds `now()` for the automatic timestamp columns the record does not set. The set mask
/// is left alone: these columns follow from it, so the cached statement stays right.
fn add_auto_timestamps<M: LifeModel>(c: &mut Changes<'_, M::Column>, write: Write) {
    if M::CREATED_AT.is_none() && M::UPDATED_AT.is_none() {
        return;
    }
    for &col in <M::Column as ModelColumn>::ALL {
        if is_auto_timestamp::<M>(col.name(), write) && !c.set.iter().any(|(s, _)| *s == col) {
            c.set.push((col, Field::Expr(now_expr())));
        }
    }
}

fn shape_key<R: LifeRecord>(
    kind: Kind,
    c: &Changes<'_, <R::Model as LifeModel>::Column>,
) -> Option<ShapeKey> {
    (!c.has_expr).then(|| (TypeId::of::<R>(), kind, c.mask))
}

/// The parameters of a cached statement's set fields, in the order its text numbers them:
/// a cacheable shape has no expression with parameters of its own (only `now()`).
fn set_values<'a, C>(c: &Changes<'a, C>, params: &mut Vec<&'a (dyn ToSql + Sync)>) {
    for (_, field) in &c.set {
        if let Field::Set(v) = field {
            params.push(*v);
        }
    }
}

/// Appends the value of a set field as a placeholder (or the expression's SQL).
pub(super) fn push_value<'a>(
    sql: &mut String,
    params: &mut Vec<&'a (dyn ToSql + Sync)>,
    field: Field<'a>,
) {
    match field {
        Field::Set(v) => {
            params.push(v);
            sql.push('$');
            sql.push_str(&params.len().to_string());
        }
        Field::Expr(e) => e.write_borrowed(sql, params),
        Field::NotSet | Field::Unchanged(_) => sql.push_str("DEFAULT"),
    }
}

pub(crate) fn insert<R: LifeRecord>(record: &R, db: &(impl Executor + ?Sized)) -> Result<R::Model> {
    type M<R> = <R as LifeRecord>::Model;
    let mut c = changes(record);
    add_auto_timestamps::<M<R>>(&mut c, Write::Insert);
    let key = shape_key::<R>(Kind::Insert, &c);
    let mut params = Vec::with_capacity(c.set.len());
    if let Some(sql) = key.and_then(cached) {
        set_values(&c, &mut params);
        let row = db.query_one(sql, &params)?;
        return M::<R>::from_row(&row);
    }
    let mut values = String::new();
    for (i, (_, field)) in c.set.iter().enumerate() {
        if i > 0 {
            values.push_str(", ");
        }
        push_value(&mut values, &mut params, *field);
    }
    let sql = statement(key, || {
        if c.set.is_empty() {
            return format!(
                "INSERT INTO {} DEFAULT VALUES RETURNING {}",
                M::<R>::QUALIFIED,
                M::<R>::COLUMN_LIST
            );
        }
        let cols: Vec<String> = c.set.iter().map(|(col, _)| quote(col.name())).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({values}) RETURNING {}",
            M::<R>::QUALIFIED,
            cols.join(", "),
            M::<R>::COLUMN_LIST
        )
    });
    let row = db.query_one(&sql, &params)?;
    M::<R>::from_row(&row)
}

type Key<R> = <<R as LifeRecord>::Model as LifeModel>::PrimaryKey;

/// The key of the row an update of `record` writes: a record without one is an error, not
/// an `UPDATE` of every row.
fn update_key<R: LifeRecord>(record: &R) -> Result<Key<R>> {
    record.primary_key().ok_or_else(|| {
        Error::invalid_use(format!(
            "updating {} needs every primary-key field set or unchanged",
            R::Model::TABLE
        ))
    })
}

/// Runs the update of `record`'s set fields on the row with `key` through `run` (given the
/// statement and its parameters), returning what `returning` says; `None`, sending nothing,
/// when the record sets nothing.
fn run_update<R: LifeRecord, T>(
    record: &R,
    key: &Key<R>,
    returning: Returning,
    run: impl FnOnce(&str, &[&(dyn ToSql + Sync)]) -> Result<T>,
) -> Result<Option<T>> {
    type M<R> = <R as LifeRecord>::Model;
    let mut c = changes(record);
    if c.set.is_empty() {
        return Ok(None);
    }
    add_auto_timestamps::<M<R>>(&mut c, Write::Update);
    let shape = shape_key::<R>(Kind::Update(returning), &c);
    let mut params = Vec::with_capacity(c.set.len() + 1);
    if let Some(sql) = shape.and_then(cached) {
        set_values(&c, &mut params);
        params.extend(M::<R>::key_params(key));
        return run(sql, &params).map(Some);
    }
    let mut assignments = String::new();
    for (i, (col, field)) in c.set.iter().enumerate() {
        if i > 0 {
            assignments.push_str(", ");
        }
        assignments.push_str(&quote(col.name()));
        assignments.push_str(" = ");
        push_value(&mut assignments, &mut params, *field);
    }
    let key_params = M::<R>::key_params(key);
    let first_key = params.len() + 1;
    params.extend(key_params);
    let sql = statement(shape, || {
        let keys: Vec<String> = M::<R>::COLUMNS
            .iter()
            .filter(|c| c.primary_key)
            .enumerate()
            .map(|(i, c)| format!("{} = ${}", quote(c.name), first_key + i))
            .collect();
        let mut sql = format!(
            "UPDATE {} SET {assignments} WHERE {}",
            M::<R>::QUALIFIED,
            keys.join(" AND ")
        );
        if returning == Returning::All {
            sql.push_str(" RETURNING ");
            sql.push_str(M::<R>::COLUMN_LIST);
        }
        sql
    });
    run(&sql, &params).map(Some)
}

/// The stored row after an update of `record`, or `None` when it sets nothing or no row
/// has its key.
pub(crate) fn update_returning<R: LifeRecord>(
    record: &R,
    db: &(impl Executor + ?Sized),
) -> Result<Option<R::Model>> {
    let key = update_key(record)?;
    let row = run_update(record, &key, Returning::All, |sql, params| {
        db.query_opt(sql, params)
    })?;
    let model = row.flatten().as_ref().map(R::Model::from_row).transpose()?;
    if let Some(m) = &model {
        forget::row(db, m);
    }
    Ok(model)
}

pub(crate) fn update<R: LifeRecord>(record: &R, db: &(impl Executor + ?Sized)) -> Result<R::Model> {
    let key = update_key(record)?;
    match run_update(record, &key, Returning::All, |sql, params| {
        db.query_opt(sql, params)
    })? {
        Some(row) => {
            let model = require(row.as_ref().map(R::Model::from_row).transpose()?)?;
            forget::row(db, &model);
            Ok(model)
        }
        // Nothing to write is not an error: the row as stored.
        None => require(R::Model::find_by_id(key).one(db)?),
    }
}

/// How many rows an update of `record` changed (0 or 1); 0, sending nothing, when it sets
/// nothing.
pub(crate) fn update_rows<R: LifeRecord>(record: &R, db: &(impl Executor + ?Sized)) -> Result<u64> {
    let key = update_key(record)?;
    let rows = run_update(record, &key, Returning::Nothing, |sql, params| {
        db.execute(sql, params)
    })?;
    if rows.is_some_and(|n| n > 0) {
        forget::key::<R::Model>(db, &key);
    }
    Ok(rows.unwrap_or(0))
}

pub(crate) fn delete<R: LifeRecord>(record: &R, db: &(impl Executor + ?Sized)) -> Result<u64> {
    let key = record.primary_key().ok_or_else(|| {
        Error::invalid_use(format!(
            "deleting from {} needs every primary-key field set or unchanged",
            <R::Model as LifeModel>::TABLE
        ))
    })?;
    R::Model::delete_by_id(db, key)
}

/// PostgreSQL's limit on the parameters of one statement.
const MAX_PARAMS: usize = 65_535;

/// Several records inserted with multi-row `INSERT` statements; see
/// [`LifeRecord::insert_many`](super::LifeRecord::insert_many).
///
/// A column set in any record is written for all of them (`DEFAULT` where a record leaves
/// it unset). Rows are split into statements under PostgreSQL's 65,535-parameter limit;
/// run it in a transaction when the batch must be atomic.
#[must_use = "nothing is inserted until exec or exec_with_returning"]
pub struct InsertMany<R: LifeRecord> {
    records: Vec<R>,
    on_conflict: Option<OnConflict<<R::Model as LifeModel>::Column>>,
}

impl<R: LifeRecord> InsertMany<R> {
    pub(crate) fn new(records: Vec<R>) -> InsertMany<R> {
        InsertMany {
            records,
            on_conflict: None,
        }
    }

    /// Makes it an upsert: `ON CONFLICT ... DO NOTHING | DO UPDATE`. Skipped rows are not
    /// counted by `exec` nor returned by `exec_with_returning`. One statement may not
    /// update the same row twice (`DO UPDATE` with two records of one key fails with
    /// `cardinality_violation`).
    pub fn on_conflict(mut self, on_conflict: OnConflict<<R::Model as LifeModel>::Column>) -> Self {
        self.on_conflict = Some(on_conflict);
        self
    }

    /// Inserts and returns how many rows went in.
    pub fn exec(&self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        let mut total = 0;
        self.each_chunk(Returning::Nothing, |sql, params| {
            total += db.execute(sql, params)?;
            Ok(())
        })?;
        Ok(total)
    }

    /// Inserts and returns the stored rows, in order.
    pub fn exec_with_returning(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<R::Model>> {
        let mut out = Vec::with_capacity(self.records.len());
        self.each_chunk(Returning::All, |sql, params| {
            for row in db.query(sql, params)? {
                out.push(R::Model::from_row(&row)?);
            }
            Ok(())
        })?;
        Ok(out)
    }

    fn each_chunk(
        &self,
        returning: Returning,
        mut run: impl FnMut(&str, &[&(dyn ToSql + Sync)]) -> Result<()>,
    ) -> Result<()> {
        type M<R> = <R as LifeRecord>::Model;
        if let Some(oc) = &self.on_conflict {
            oc.check(M::<R>::TABLE)?;
        }
        if self.records.is_empty() {
            return Ok(());
        }
        // The union of set columns decides the shape; unset ones become DEFAULT. One pass
        // also learns, per column, whether every record sets it or none does, and gathers
        // the set values row by row: for a uniform batch those are the parameters, in the
        // text's order. (Records are viewed through `fields()` as they are read, not
        // collected: that would allocate a copy of every record's fields on each call.)
        let records = &self.records[..];
        let first = records[0].fields();
        let first = first.as_ref();
        let width = first.len();
        let mut set_everywhere = vec![true; width];
        let mut unset_everywhere = vec![true; width];
        let mut has_expr = false;
        let set_in_first = first
            .iter()
            .filter(|(_, f)| matches!(f, Field::Set(_)))
            .count();
        let mut values_in_order: Vec<&(dyn ToSql + Sync)> =
            Vec::with_capacity(records.len() * set_in_first);
        for record in records {
            for (i, (_, f)) in record.fields().as_ref().iter().enumerate() {
                match *f {
                    Field::Set(v) => {
                        values_in_order.push(v);
                        unset_everywhere[i] = false;
                    }
                    Field::Expr(_) => {
                        has_expr = true;
                        set_everywhere[i] = false;
                        unset_everywhere[i] = false;
                    }
                    Field::NotSet | Field::Unchanged(_) => set_everywhere[i] = false,
                }
            }
        }
        let auto: Vec<bool> = first
            .iter()
            .map(|(col, _)| is_auto_timestamp::<M<R>>(col.name(), Write::Insert))
            .collect();
        // A column is written when some record sets it, or it is an automatic timestamp.
        let columns: Vec<usize> = (0..width)
            .filter(|&i| !unset_everywhere[i] || auto[i])
            .collect();
        if columns.is_empty() {
            return Err(Error::invalid_use(format!(
                "insert_many into {} needs at least one set column",
                M::<R>::TABLE
            )));
        }
        // A cached text must follow from its key alone: every used column holds a
        // parameter in every row, or (an automatic timestamp nobody set) now() in every
        // row. Then the columns set everywhere name the shape; a batch with DEFAULTs in
        // some rows only is built afresh.
        let uniform = columns
            .iter()
            .all(|&i| set_everywhere[i] || (auto[i] && unset_everywhere[i]));
        let params_mask = columns
            .iter()
            .filter(|&&i| i < 128 && set_everywhere[i])
            .fold(0u128, |m, &i| m | 1 << i);
        // The conflict clause's own values come after each chunk's row values.
        let mut clause_params = Vec::new();
        if let Some(oc) = &self.on_conflict {
            oc.write(&mut String::new(), &mut clause_params);
        }
        let cacheable = uniform && !has_expr && width <= 128 && self.on_conflict.is_none();
        let per_chunk = ((MAX_PARAMS - clause_params.len()) / columns.len()).max(1);
        // In a uniform batch every row holds the same number of values.
        let per_row = params_mask.count_ones() as usize;
        for (k, chunk) in records.chunks(per_chunk).enumerate() {
            let key = cacheable.then(|| {
                (
                    TypeId::of::<R>(),
                    Kind::InsertMany {
                        rows: chunk.len(),
                        returning,
                    },
                    params_mask,
                )
            });
            if let Some(sql) = key.and_then(cached) {
                let start = k * per_chunk * per_row;
                // Always in range for a uniform batch; were it not, the text below is
                // built from the records themselves.
                if let Some(values) = values_in_order.get(start..start + chunk.len() * per_row) {
                    run(sql, values)?;
                    continue;
                }
            }
            let mut params: Vec<&(dyn ToSql + Sync)> =
                Vec::with_capacity(chunk.len() * columns.len());
            let mut values = String::new();
            for (r, record) in chunk.iter().enumerate() {
                let fields = record.fields();
                let row = fields.as_ref();
                values.push_str(if r == 0 { "(" } else { ", (" });
                for (k, &i) in columns.iter().enumerate() {
                    if k > 0 {
                        values.push_str(", ");
                    }
                    let field = match row[i].1 {
                        Field::NotSet | Field::Unchanged(_) if auto[i] => Field::Expr(now_expr()),
                        field => field,
                    };
                    push_value(&mut values, &mut params, field);
                }
                values.push(')');
            }
            if let Some(oc) = &self.on_conflict {
                oc.write(&mut values, &mut params);
            }
            let sql = statement(key, || {
                let names: Vec<String> =
                    columns.iter().map(|&i| quote(first[i].0.name())).collect();
                let mut sql = format!(
                    "INSERT INTO {} ({}) VALUES {values}",
                    M::<R>::QUALIFIED,
                    names.join(", ")
                );
                if returning == Returning::All {
                    sql.push_str(" RETURNING ");
                    sql.push_str(M::<R>::COLUMN_LIST);
                }
                sql
            });
            run(&sql, &params)?;
        }
        Ok(())
    }
}
