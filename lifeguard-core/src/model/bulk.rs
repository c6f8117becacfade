//! Writes over many rows: `UPDATE`/`DELETE` by filter, upserts (`INSERT ... ON CONFLICT`),
//! and binary `COPY` loads.

use std::marker::PhantomData;

use super::active::Field;
use super::crud::push_value;
use super::forget;
use super::shapes::Returning;
use super::{FromRow, LifeModel, LifeRecord, ModelColumn};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::pg::{BinaryCopyWriter, ToSql, Type};
use crate::query::{as_params, quote, AssignValue, ExclusiveSession, Expr, IntoColumn, Value};

/// Appends `WHERE (f1) AND (f2) ...` when there are filters.
fn write_filters(sql: &mut String, params: &mut Vec<Value>, filters: &[Expr]) {
    for (i, f) in filters.iter().enumerate() {
        sql.push_str(if i == 0 { " WHERE (" } else { " AND (" });
        f.write(sql, params);
        sql.push(')');
    }
}

/// `UPDATE` of every row matching the filters; see [`LifeModel::update_many`].
///
/// ```no_run
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub name: String, pub visits: i32 }
/// use lifeguard_core::query::ColumnExpr;
///
/// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
/// let touched: u64 = User::update_many()
///     .set(UserColumn::Visits, UserColumn::Visits.add(1))
///     .set_value(UserColumn::Name, "anonymous".to_string())
///     .filter(UserColumn::Visits.lt(10))
///     .exec(db)?;
/// # Ok(()) }
/// ```
#[must_use = "nothing is updated until exec or exec_with_returning"]
pub struct UpdateMany<M: LifeModel> {
    sets: Vec<(M::Column, Expr)>,
    filters: Vec<Expr>,
}

impl<M: LifeModel> std::fmt::Debug for UpdateMany<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.build(Returning::Nothing).0)
    }
}

impl<M: LifeModel> Clone for UpdateMany<M> {
    fn clone(&self) -> Self {
        UpdateMany {
            sets: self.sets.clone(),
            filters: self.filters.clone(),
        }
    }
}

impl<M: LifeModel> Default for UpdateMany<M> {
    fn default() -> Self {
        UpdateMany::new()
    }
}

impl<M: LifeModel> UpdateMany<M> {
    /// An update of the whole table, with nothing set yet.
    pub fn new() -> UpdateMany<M> {
        UpdateMany {
            sets: Vec::new(),
            filters: Vec::new(),
        }
    }

    /// Sets `column` (plain or typed) to an expression (`UserColumn::Visits.add(1)`,
    /// `Expr::cust("now()")`, `Expr::val(..)`); unqualified column names in it refer to the
    /// row being updated.
    #[doc(alias = "col_expr")]
    pub fn set(mut self, column: impl IntoColumn<M::Column>, value: impl Into<Expr>) -> Self {
        self.sets.push((column.into_column(), value.into()));
        self
    }

    /// Sets `column` to a bound value: any `ToSql` value for a plain column, a value of the
    /// field's type for a typed one (`User::COL_NAME`, see [`AssignValue`]).
    pub fn set_value<V>(self, column: impl AssignValue<M::Column, V>, value: V) -> Self {
        let (column, value) = column.assign(value);
        self.set(column, value)
    }

    /// Adds a condition; several are joined by `AND`. With none, every row is updated.
    pub fn filter(mut self, condition: impl Into<Expr>) -> Self {
        self.filters.push(condition.into());
        self
    }

    /// Adds a condition when there is one.
    pub fn filter_opt(self, condition: Option<impl Into<Expr>>) -> Self {
        match condition {
            Some(c) => self.filter(c),
            None => self,
        }
    }

    /// The SQL and its parameters, with or without `RETURNING` every column (see
    /// [`Returning`]).
    pub fn build(&self, returning: Returning) -> (String, Vec<Value>) {
        let mut sql = format!("UPDATE {} SET ", M::QUALIFIED);
        let mut params = Vec::new();
        for (i, (col, value)) in self.sets.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&quote(col.name()));
            sql.push_str(" = ");
            value.write(&mut sql, &mut params);
        }
        // As for a record update: `updated_at` follows unless the caller set it.
        if let Some(updated) = M::UPDATED_AT {
            if !self.sets.iter().any(|(c, _)| c.name() == updated) {
                sql.push_str(&format!(", {} = now()", quote(updated)));
            }
        }
        let filters = with_live_rows::<M>(&self.filters);
        write_filters(&mut sql, &mut params, &filters);
        if returning == Returning::All {
            sql.push_str(" RETURNING ");
            sql.push_str(M::COLUMN_LIST);
        }
        (sql, params)
    }

    fn check(&self) -> Result<()> {
        if self.sets.is_empty() {
            return Err(Error::invalid_use(format!(
                "update_many on {} sets no column",
                M::TABLE
            )));
        }
        Ok(())
    }

    /// Runs the update; returns how many rows it changed.
    pub fn exec(&self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        self.check()?;
        let (sql, params) = self.build(Returning::Nothing);
        let changed = db.execute(&sql, &as_params(&params))?;
        forget::table::<M>(db);
        Ok(changed)
    }

    /// Runs the update and returns the changed rows as stored.
    pub fn exec_with_returning(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<M>> {
        self.check()?;
        let (sql, params) = self.build(Returning::All);
        let rows: Vec<M> = db
            .query(&sql, &as_params(&params))?
            .iter()
            .map(M::from_row)
            .collect::<Result<_>>()?;
        for row in &rows {
            forget::row(db, row);
        }
        Ok(rows)
    }
}

/// `DELETE` of every row matching the filters; see [`LifeModel::delete_many`].
///
/// ```no_run
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "sessions")]
/// # pub struct Session { #[lifeguard(primary_key)] pub id: i64, pub expired: bool }
/// use lifeguard_core::query::ColumnExpr;
///
/// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
/// let gone: u64 = Session::delete_many().filter(SessionColumn::Expired.eq(true)).exec(db)?;
/// # Ok(()) }
/// ```
#[must_use = "nothing is deleted until exec or exec_with_returning"]
pub struct DeleteMany<M: LifeModel> {
    filters: Vec<Expr>,
    force: bool,
    _model: PhantomData<fn() -> M>,
}

impl<M: LifeModel> std::fmt::Debug for DeleteMany<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.build(Returning::Nothing).0)
    }
}

impl<M: LifeModel> Clone for DeleteMany<M> {
    fn clone(&self) -> Self {
        DeleteMany {
            filters: self.filters.clone(),
            force: self.force,
            _model: PhantomData,
        }
    }
}

impl<M: LifeModel> Default for DeleteMany<M> {
    fn default() -> Self {
        DeleteMany::new()
    }
}

impl<M: LifeModel> DeleteMany<M> {
    /// A delete of the whole table (until filtered).
    pub fn new() -> DeleteMany<M> {
        DeleteMany {
            filters: Vec::new(),
            force: false,
            _model: PhantomData,
        }
    }

    /// Adds a condition; several are joined by `AND`. With none, every row is deleted.
    pub fn filter(mut self, condition: impl Into<Expr>) -> Self {
        self.filters.push(condition.into());
        self
    }

    /// Adds a condition when there is one.
    pub fn filter_opt(self, condition: Option<impl Into<Expr>>) -> Self {
        match condition {
            Some(c) => self.filter(c),
            None => self,
        }
    }

    /// Deletes for real even on a soft-delete model.
    pub fn force(mut self) -> Self {
        self.force = true;
        self
    }

    /// The SQL and its parameters, with or without `RETURNING` every column (see
    /// [`Returning`]). On a soft-delete model (unless forced) this marks the matching live
    /// rows deleted instead of removing them.
    pub fn build(&self, returning: Returning) -> (String, Vec<Value>) {
        let mut params = Vec::new();
        let mut sql = match (M::SOFT_DELETE, self.force) {
            (Some(col), false) => {
                let mut sql = format!("UPDATE {} SET {} = now()", M::QUALIFIED, quote(col));
                if let Some(updated) = M::UPDATED_AT {
                    sql.push_str(&format!(", {} = now()", quote(updated)));
                }
                let filters = with_live_rows::<M>(&self.filters);
                write_filters(&mut sql, &mut params, &filters);
                sql
            }
            _ => {
                let mut sql = format!("DELETE FROM {}", M::QUALIFIED);
                write_filters(&mut sql, &mut params, &self.filters);
                sql
            }
        };
        if returning == Returning::All {
            sql.push_str(" RETURNING ");
            sql.push_str(M::COLUMN_LIST);
        }
        (sql, params)
    }

    /// Runs the delete; returns how many rows went.
    pub fn exec(&self, db: &(impl Executor + ?Sized)) -> Result<u64> {
        let (sql, params) = self.build(Returning::Nothing);
        let changed = db.execute(&sql, &as_params(&params))?;
        forget::table::<M>(db);
        Ok(changed)
    }

    /// Runs the delete and returns the deleted rows.
    pub fn exec_with_returning(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<M>> {
        let (sql, params) = self.build(Returning::All);
        let rows: Vec<M> = db
            .query(&sql, &as_params(&params))?
            .iter()
            .map(M::from_row)
            .collect::<Result<_>>()?;
        for row in &rows {
            forget::row(db, row);
        }
        Ok(rows)
    }
}

#[derive(Debug, Clone)]
enum Target<C> {
    Columns(Vec<C>),
    Constraint(String),
}

#[derive(Debug, Clone)]
enum Action<C> {
    Nothing,
    /// Each column with its new value: `None` for the proposed row's (`EXCLUDED.col`).
    Update(Vec<(C, Option<Expr>)>),
}

/// The `ON CONFLICT` clause of an upsert; see [`LifeRecord::insert_on_conflict`].
///
/// ```
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub email: String, pub name: String, pub visits: i32 }
/// use lifeguard_core::model::OnConflict;
/// use lifeguard_core::query::ColumnExpr;
///
/// let upsert = OnConflict::columns([UserColumn::Email])
///     .do_update([UserColumn::Name])
///     .update_expr(UserColumn::Visits, UserColumn::Visits.expr().append(lifeguard_core::query::Expr::cust(" + 1")));
/// assert_eq!(
///     upsert.to_sql_string(),
///     r#" ON CONFLICT ("email") DO UPDATE SET "name" = EXCLUDED."name", "visits" = "users"."visits" + 1"#
/// );
/// let skip = OnConflict::<UserColumn>::constraint("users_email_key").do_nothing();
/// assert_eq!(skip.to_sql_string(), r#" ON CONFLICT ON CONSTRAINT "users_email_key" DO NOTHING"#);
/// ```
#[derive(Debug, Clone)]
pub struct OnConflict<C> {
    target: Target<C>,
    action: Action<C>,
}

impl<C: ModelColumn> OnConflict<C> {
    /// A conflict on the unique index over these columns; `DO NOTHING` until
    /// [`OnConflict::do_update`] says otherwise.
    pub fn columns(columns: impl IntoIterator<Item = C>) -> OnConflict<C> {
        OnConflict {
            target: Target::Columns(columns.into_iter().collect()),
            action: Action::Nothing,
        }
    }

    /// A conflict on the named constraint.
    pub fn constraint(name: impl Into<String>) -> OnConflict<C> {
        OnConflict {
            target: Target::Constraint(name.into()),
            action: Action::Nothing,
        }
    }

    /// Skip the row: the upsert then returns `Ok(None)` for it.
    pub fn do_nothing(mut self) -> Self {
        self.action = Action::Nothing;
        self
    }

    /// On conflict, overwrite these columns with the proposed row's values
    /// (`col = EXCLUDED.col`).
    pub fn do_update(mut self, columns: impl IntoIterator<Item = C>) -> Self {
        let mut sets = match self.action {
            Action::Update(sets) => sets,
            Action::Nothing => Vec::new(),
        };
        sets.extend(columns.into_iter().map(|c| (c, None)));
        self.action = Action::Update(sets);
        self
    }

    /// On conflict, set `column` to an expression; the stored row is the table's name
    /// (`ColumnExpr::expr`), the proposed one `EXCLUDED`.
    pub fn update_expr(mut self, column: impl IntoColumn<C>, value: impl Into<Expr>) -> Self {
        let mut sets = match self.action {
            Action::Update(sets) => sets,
            Action::Nothing => Vec::new(),
        };
        sets.push((column.into_column(), Some(value.into())));
        self.action = Action::Update(sets);
        self
    }

    /// Writes the clause, borrowing its values into `params`.
    pub(crate) fn write<'a>(&'a self, sql: &mut String, params: &mut Vec<&'a (dyn ToSql + Sync)>) {
        sql.push_str(" ON CONFLICT ");
        match &self.target {
            Target::Columns(cols) => {
                let names: Vec<String> = cols.iter().map(|c| quote(c.name())).collect();
                sql.push('(');
                sql.push_str(&names.join(", "));
                sql.push(')');
            }
            Target::Constraint(name) => {
                sql.push_str("ON CONSTRAINT ");
                sql.push_str(&quote(name));
            }
        }
        match &self.action {
            Action::Nothing => sql.push_str(" DO NOTHING"),
            Action::Update(sets) => {
                sql.push_str(" DO UPDATE SET ");
                for (i, (col, value)) in sets.iter().enumerate() {
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    let name = quote(col.name());
                    sql.push_str(&name);
                    sql.push_str(" = ");
                    match value {
                        Some(e) => e.write_borrowed(sql, params),
                        None => {
                            sql.push_str("EXCLUDED.");
                            sql.push_str(&name);
                        }
                    }
                }
            }
        }
    }

    /// The clause as SQL, its placeholders numbered from `$1` (for logs and tests).
    pub fn to_sql_string(&self) -> String {
        let mut sql = String::new();
        self.write(&mut sql, &mut Vec::new());
        sql
    }

    pub(crate) fn check(&self, table: &str) -> Result<()> {
        match (&self.target, &self.action) {
            (Target::Columns(cols), _) if cols.is_empty() => Err(Error::invalid_use(format!(
                "the ON CONFLICT target on {table} names no column"
            ))),
            (_, Action::Update(sets)) if sets.is_empty() => Err(Error::invalid_use(format!(
                "ON CONFLICT DO UPDATE on {table} sets no column"
            ))),
            _ => Ok(()),
        }
    }
}

fn is_written(field: &Field<'_>) -> bool {
    matches!(field, Field::Set(_) | Field::Expr(_))
}

/// `INSERT ... ON CONFLICT ... RETURNING`: the stored row, or `None` when the conflict
/// clause skipped it.
pub(crate) fn insert_on_conflict<R: LifeRecord>(
    record: &R,
    on_conflict: &OnConflict<<R::Model as LifeModel>::Column>,
    db: &(impl Executor + ?Sized),
) -> Result<Option<R::Model>> {
    type M<R> = <R as LifeRecord>::Model;
    on_conflict.check(M::<R>::TABLE)?;
    let fields = record.fields();
    let fields = fields.as_ref();
    let set: Vec<_> = fields.iter().filter(|(_, f)| is_written(f)).collect();
    let mut params = Vec::with_capacity(set.len());
    let mut sql = format!("INSERT INTO {}", M::<R>::QUALIFIED);
    if set.is_empty() {
        sql.push_str(" DEFAULT VALUES");
    } else {
        let names: Vec<String> = set.iter().map(|(c, _)| quote(c.name())).collect();
        sql.push_str(&format!(" ({}) VALUES (", names.join(", ")));
        for (i, (_, field)) in set.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            push_value(&mut sql, &mut params, *field);
        }
        sql.push(')');
    }
    on_conflict.write(&mut sql, &mut params);
    sql.push_str(" RETURNING ");
    sql.push_str(M::<R>::COLUMN_LIST);
    let stored = db
        .query_opt(&sql, &params)?
        .as_ref()
        .map(M::<R>::from_row)
        .transpose()?;
    // An upsert may have updated the row that was there.
    if let Some(row) = &stored {
        forget::row(db, row);
    }
    Ok(stored)
}

/// `filters` plus, on a soft-delete model, `deleted_at IS NULL`: bulk writes leave
/// deleted rows alone, as queries do.
fn with_live_rows<M: LifeModel>(filters: &[Expr]) -> Vec<Expr> {
    let mut out = filters.to_vec();
    if let Some(col) = M::SOFT_DELETE {
        out.push(Expr::cust(format!(
            "{}.{} IS NULL",
            M::QUALIFIED,
            quote(col)
        )));
    }
    out
}

/// Loads records with `COPY ... FROM STDIN (FORMAT binary)`; see
/// [`LifeRecord::insert_many_copy`].
pub(crate) fn insert_many_copy<'a, R: LifeRecord>(
    session: ExclusiveSession<'a>,
    records: impl IntoIterator<Item = R>,
) -> Result<u64> {
    type M<R> = <R as LifeRecord>::Model;
    let conn = session.connection();
    let mut records = records.into_iter().peekable();
    let Some(first) = records.peek() else {
        return Ok(0);
    };
    // The first record's fields borrow the iterator; they go before it is consumed.
    let (columns, width) = {
        let fields = first.fields();
        let fields = fields.as_ref();
        let mut columns = Vec::new();
        for (i, (col, field)) in fields.iter().enumerate() {
            match field {
                Field::Set(_) => columns.push((i, *col)),
                Field::Expr(_) => {
                    return Err(Error::invalid_use(format!(
                        "insert_many_copy into {} takes plain values; {} is an expression",
                        M::<R>::TABLE,
                        col.name()
                    )))
                }
                Field::NotSet | Field::Unchanged(_) => {}
            }
        }
        if columns.is_empty() {
            return Err(Error::invalid_use(format!(
                "insert_many_copy into {} needs at least one set column",
                M::<R>::TABLE
            )));
        }
        (columns, fields.len())
    };
    let names = columns
        .iter()
        .map(|(_, c)| quote(c.name()))
        .collect::<Vec<_>>()
        .join(", ");
    // The server describes the columns' types (custom ones resolved like any result's).
    let types: Vec<Type> = conn
        .prepare(&format!(
            "SELECT {names} FROM {} LIMIT 0",
            M::<R>::QUALIFIED
        ))?
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    let copy = conn.copy_in_exclusive(&format!(
        "COPY {} ({names}) FROM STDIN (FORMAT binary)",
        M::<R>::QUALIFIED
    ))?;
    // On an error the writer drops unfinished, which aborts the copy: nothing is loaded.
    let mut writer = BinaryCopyWriter::new(copy, &types)?;
    for (n, record) in records.enumerate() {
        let fields = record.fields();
        let fields = fields.as_ref();
        let mut values: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(columns.len());
        let mut next = 0;
        for (i, (col, field)) in fields.iter().enumerate().take(width) {
            let wanted = columns.get(next).is_some_and(|(at, _)| *at == i);
            match (field, wanted) {
                (Field::Set(v), true) => {
                    values.push(*v);
                    next += 1;
                }
                (Field::NotSet | Field::Unchanged(_), false) => {}
                _ => {
                    return Err(Error::invalid_use(format!(
                        "insert_many_copy into {}: record {n} does not set the same plain \
                         values as the first (column {})",
                        M::<R>::TABLE,
                        col.name()
                    )))
                }
            }
        }
        writer.write(&values)?;
    }
    writer.finish()
}
