//! Mutations through the ORM: each model's writer is the ORM's record insert and update and
//! model delete, monomorphised for its type, so hooks, validators, timestamps and soft
//! delete apply as they do in Rust code. The written rows are then read back with the
//! field's selection, in the same transaction.

use async_graphql::dynamic::{FieldValue, ResolverContext};
use async_graphql::Value;
use lifeguard_core::model::{InputError, InputRecord, LifeModel, LifeRecord};
use lifeguard_core::query::Expr;
use lifeguard_core::{Error, Executor};

use crate::error::LoadError;
use crate::model::ModelInfo;
use crate::plan::key_condition;
use crate::run;
use crate::schema::roots::reload;
use crate::schema::Shared;
use crate::sql;

/// Input values by SQL column.
type Data = Vec<(&'static str, serde_json::Value)>;

type UpdateFn = fn(&dyn Executor, Expr, u64, &Data) -> Result<Vec<Expr>, LoadError>;

/// The ORM calls for one model.
pub(crate) struct Writer {
    /// Whether a column's field accepts input.
    pub accepts: fn(&str) -> bool,
    create: fn(&dyn Executor, &Data) -> Result<Expr, LoadError>,
    update: UpdateFn,
    delete: fn(&dyn Executor, Expr, u64) -> Result<u64, LoadError>,
}

impl Writer {
    /// The writer of `M`.
    pub(crate) fn of<M: LifeModel>() -> Writer
    where
        M::Record: InputRecord,
    {
        Writer {
            accepts: <M::Record as InputRecord>::accepts_input,
            create: create_one::<M>,
            update: update_where::<M>,
            delete: delete_where::<M>,
        }
    }
}

fn fill<R: InputRecord>(record: &mut R, data: &Data) -> Result<(), LoadError> {
    let mut invalid = Vec::new();
    for (column, value) in data {
        match record.set_input(column, value) {
            Ok(()) => {}
            Err(InputError::Invalid(m)) => invalid.push((column.to_string(), m)),
            Err(e) => invalid.push((column.to_string(), e.to_string())),
        }
    }
    if invalid.is_empty() {
        Ok(())
    } else {
        Err(LoadError::Invalid(invalid))
    }
}

/// Field errors from validators name Rust fields; GraphQL names columns' fields.
fn written<M: LifeModel, T>(result: lifeguard_core::Result<T>) -> Result<T, LoadError> {
    result.map_err(|e| match e {
        Error::Validation(v) => LoadError::Invalid(
            v.errors()
                .iter()
                .map(|f| {
                    let column = M::COLUMNS
                        .iter()
                        .find(|c| c.field == f.field)
                        .map_or(f.field.to_string(), |c| c.name.to_owned());
                    (column, f.message.clone())
                })
                .collect(),
        ),
        e => LoadError::Db(e),
    })
}

fn create_one<M: LifeModel>(db: &dyn Executor, data: &Data) -> Result<Expr, LoadError>
where
    M::Record: InputRecord,
{
    let mut record = M::Record::default();
    fill(&mut record, data)?;
    let row = written::<M, _>(record.insert(db))?;
    Ok(M::key_condition(&row.primary_key()))
}

/// The rows `cond` matches, refusing more than `cap`.
fn matching<M: LifeModel>(db: &dyn Executor, cond: Expr, cap: u64) -> Result<Vec<M>, LoadError> {
    let rows = M::find()
        .filter(cond)
        .limit(cap.saturating_add(1))
        .all(db)?;
    if rows.len() as u64 > cap {
        return Err(LoadError::Input(format!(
            "the filter matches more than {cap} rows; narrow it"
        )));
    }
    Ok(rows)
}

fn update_where<M: LifeModel>(
    db: &dyn Executor,
    cond: Expr,
    cap: u64,
    data: &Data,
) -> Result<Vec<Expr>, LoadError>
where
    M::Record: InputRecord,
{
    let mut keys = Vec::new();
    for row in matching::<M>(db, cond, cap)? {
        let mut record = row.into_record();
        fill(&mut record, data)?;
        let row = written::<M, _>(record.update(db))?;
        keys.push(M::key_condition(&row.primary_key()));
    }
    Ok(keys)
}

fn delete_where<M: LifeModel>(db: &dyn Executor, cond: Expr, cap: u64) -> Result<u64, LoadError> {
    let mut deleted = 0;
    for row in matching::<M>(db, cond, cap)? {
        deleted += row.delete(db)?;
    }
    Ok(deleted)
}

/// The `data` argument by SQL column.
fn data(m: &ModelInfo, v: &Value) -> Result<Data, LoadError> {
    let Value::Object(fields) = v else {
        return Err(LoadError::Input("data is an object".into()));
    };
    fields
        .iter()
        .map(|(name, v)| {
            let c = m
                .columns
                .iter()
                .find(|c| c.field == name.as_str() && c.writable)
                .ok_or_else(|| LoadError::Input(format!("{name} cannot be written")))?;
            let json = v
                .clone()
                .into_json()
                .map_err(|_| LoadError::Input(format!("{name}: not a JSON value")))?;
            Ok((c.sql, json))
        })
        .collect()
}

/// Column names in validation errors become the GraphQL field names.
fn named(m: &ModelInfo, e: LoadError) -> LoadError {
    match e {
        LoadError::Invalid(list) => LoadError::Invalid(
            list.into_iter()
                .map(|(col, msg)| {
                    let field = m
                        .columns
                        .iter()
                        .find(|c| c.sql == col)
                        .map_or(col, |c| c.field.clone());
                    (field, msg)
                })
                .collect(),
        ),
        e => e,
    }
}

fn arguments(ctx: &ResolverContext<'_>) -> Result<Vec<(async_graphql::Name, Value)>, LoadError> {
    ctx.ctx
        .field()
        .arguments()
        .map_err(|e| LoadError::Input(e.message))
}

fn arg<'a>(args: &'a [(async_graphql::Name, Value)], name: &str) -> Option<&'a Value> {
    args.iter()
        .find(|(n, _)| n.as_str() == name)
        .map(|(_, v)| v)
}

fn on_db<T>(f: impl FnOnce(&dyn Executor) -> Result<T, LoadError>) -> Result<T, LoadError> {
    run::db(f).unwrap_or_else(|| {
        Err(LoadError::Input(
            "the schema runs only through Schema::execute".into(),
        ))
    })
}

fn any_of(keys: Vec<Expr>) -> Expr {
    keys.into_iter()
        .reduce(|a, b| a.or(b))
        .unwrap_or_else(|| Expr::cust("FALSE"))
}

type Resolved = Result<Option<FieldValue<'static>>, LoadError>;

/// `createX` / `createXs`.
pub(crate) fn create(shared: &Shared, i: usize, ctx: &ResolverContext<'_>, many: bool) -> Resolved {
    let m = &shared.models[i];
    let writer = writer_of(m)?;
    let args = arguments(ctx)?;
    let items = match (arg(&args, "data"), many) {
        (Some(v), false) => vec![v.clone()],
        (Some(v), true) => sql::as_list(v),
        (None, _) => Vec::new(),
    };
    if items.len() as u64 > shared.limits.max_page_size {
        return Err(LoadError::Input(format!(
            "at most {} rows per mutation",
            shared.limits.max_page_size
        )));
    }
    let keys = on_db(|db| {
        items
            .iter()
            .map(|item| (writer.create)(db, &data(m, item)?))
            .collect::<Result<Vec<Expr>, LoadError>>()
    })
    .map_err(|e| named(m, e))?;
    let n = keys.len() as u64;
    let rows = reload(shared, i, ctx, any_of(keys), n)?;
    Ok(Some(if many {
        FieldValue::list(rows.into_iter().map(FieldValue::owned_any))
    } else {
        match rows.into_iter().next() {
            Some(r) => FieldValue::owned_any(r),
            None => return Err(LoadError::Db(Error::NotFound)),
        }
    }))
}

/// The rows a by-key or by-filter mutation is about.
fn target(
    m: &ModelInfo,
    args: &[(async_graphql::Name, Value)],
    by_key: bool,
) -> Result<Expr, LoadError> {
    if by_key {
        key_condition(m, args).map_err(LoadError::Input)
    } else {
        sql::filter(m, arg(args, "filter").unwrap_or(&Value::Null)).map_err(LoadError::Input)
    }
}

/// The model's writer; a read-only model has none (and no mutation fields).
fn writer_of(m: &ModelInfo) -> Result<&Writer, LoadError> {
    m.writer
        .as_ref()
        .ok_or_else(|| LoadError::Input("read-only".into()))
}

/// The most rows a by-key (one) or by-filter mutation may touch.
fn row_cap(shared: &Shared, by_key: bool) -> u64 {
    if by_key {
        1
    } else {
        shared.limits.max_page_size
    }
}

/// `updateX(key, data)` / `updateXs(filter, data)`.
pub(crate) fn update(
    shared: &Shared,
    i: usize,
    ctx: &ResolverContext<'_>,
    by_key: bool,
) -> Resolved {
    let m = &shared.models[i];
    let writer = writer_of(m)?;
    let args = arguments(ctx)?;
    let cond = target(m, &args, by_key)?;
    let values = data(m, arg(&args, "data").unwrap_or(&Value::Null))?;
    let cap = row_cap(shared, by_key);
    let keys = on_db(|db| (writer.update)(db, cond, cap, &values)).map_err(|e| named(m, e))?;
    let n = keys.len() as u64;
    if keys.is_empty() {
        return Ok(if by_key {
            None
        } else {
            Some(FieldValue::list(Vec::<FieldValue>::new()))
        });
    }
    let rows = reload(shared, i, ctx, any_of(keys), n)?;
    Ok(Some(if by_key {
        match rows.into_iter().next() {
            Some(r) => FieldValue::owned_any(r),
            None => return Ok(None),
        }
    } else {
        FieldValue::list(rows.into_iter().map(FieldValue::owned_any))
    }))
}

/// `deleteX(key)` / `deleteXs(filter)`: the number of rows deleted.
pub(crate) fn delete(
    shared: &Shared,
    i: usize,
    ctx: &ResolverContext<'_>,
    by_key: bool,
) -> Resolved {
    let m = &shared.models[i];
    let writer = writer_of(m)?;
    let args = arguments(ctx)?;
    let cond = target(m, &args, by_key)?;
    let cap = row_cap(shared, by_key);
    let n = on_db(|db| (writer.delete)(db, cond, cap))?;
    Ok(Some(FieldValue::value(
        i32::try_from(n).unwrap_or(i32::MAX),
    )))
}
