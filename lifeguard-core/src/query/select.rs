//! `SELECT` queries over a model: filters, order, limits, grouping, joins, locks,
//! projections.

use std::any::TypeId;
use std::marker::PhantomData;
use std::sync::Arc;

use super::expr::{quote_path, ColumnExpr, Expr, Value};
use super::typed::TypedColumn;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::model::shapes::{statement, Kind};
use crate::model::{FromRow, LifeModel, ModelColumn};
use crate::pg::{Row, ToSql};

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

/// How a joined table is joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinType {
    /// `INNER JOIN`.
    Inner,
    /// `LEFT JOIN`.
    Left,
    /// `RIGHT JOIN`.
    Right,
}

impl JoinType {
    fn sql(self) -> &'static str {
        match self {
            JoinType::Inner => " INNER JOIN ",
            JoinType::Left => " LEFT JOIN ",
            JoinType::Right => " RIGHT JOIN ",
        }
    }
}

/// Which rows of a soft-delete model a query sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deleted {
    /// Live rows only (the default).
    Exclude,
    /// Every row.
    Include,
    /// Soft-deleted rows only.
    Only,
}

#[derive(Debug, Clone)]
enum Distinct {
    No,
    All,
    On(Vec<Expr>),
}

/// A query over `M`'s table; finish it with [`Select::all`], [`Select::one`],
/// [`Select::count`] or [`Select::exists`], or project it with [`Select::into_model`].
///
/// ```no_run
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub email: String, pub age: i32 }
/// use lifeguard_core::query::{ColumnExpr, Condition};
///
/// # fn demo(db: &impl lifeguard_core::Executor, search: Option<String>) -> lifeguard_core::Result<()> {
/// let adults = User::find()
///     .filter(UserColumn::Age.gte(18))
///     .filter_opt(search.map(|s| UserColumn::Email.ilike(format!("%{s}%"))))
///     .order_by_asc(UserColumn::Email)
///     .limit(20)
///     .all(db)?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Select<M: LifeModel> {
    filters: Vec<Expr>,
    order: Vec<Expr>,
    group_by: Vec<Expr>,
    having: Vec<Expr>,
    joins: Vec<Expr>,
    columns: Option<Vec<Expr>>,
    distinct: Distinct,
    limit: Option<u64>,
    offset: Option<u64>,
    lock: Option<&'static str>,
    /// Set by `find_by_id`: while nothing else is added, the constant statement runs.
    key: Option<M::PrimaryKey>,
    /// Soft-delete visibility (ignored for models without `SOFT_DELETE`).
    deleted: Deleted,
    _model: PhantomData<fn() -> M>,
}

impl<M: LifeModel> Clone for Select<M> {
    fn clone(&self) -> Self {
        Select {
            filters: self.filters.clone(),
            order: self.order.clone(),
            group_by: self.group_by.clone(),
            having: self.having.clone(),
            joins: self.joins.clone(),
            columns: self.columns.clone(),
            distinct: self.distinct.clone(),
            limit: self.limit,
            offset: self.offset,
            lock: self.lock,
            key: self.key.clone(),
            deleted: self.deleted,
            _model: PhantomData,
        }
    }
}

impl<M: LifeModel> Default for Select<M> {
    fn default() -> Self {
        Select::new()
    }
}

impl<M: LifeModel> Select<M> {
    /// Every row of the table.
    pub fn new() -> Select<M> {
        Select {
            filters: Vec::new(),
            order: Vec::new(),
            group_by: Vec::new(),
            having: Vec::new(),
            joins: Vec::new(),
            columns: None,
            distinct: Distinct::No,
            limit: None,
            offset: None,
            lock: None,
            key: None,
            deleted: Deleted::Exclude,
            _model: PhantomData,
        }
    }

    /// The row with this primary key.
    pub fn by_primary_key(key: M::PrimaryKey) -> Select<M> {
        Select {
            key: Some(key),
            ..Select::new()
        }
    }

    /// Adds a condition; several are joined by `AND`.
    pub fn filter(mut self, condition: impl Into<Expr>) -> Self {
        self.filters.push(condition.into());
        self
    }

    /// Adds a condition when there is one (optional search fields).
    pub fn filter_opt(self, condition: Option<impl Into<Expr>>) -> Self {
        match condition {
            Some(c) => self.filter(c),
            None => self,
        }
    }

    /// Applies `f` with the value when there is one.
    pub fn apply_if<T>(self, value: Option<T>, f: impl FnOnce(Self, T) -> Self) -> Self {
        match value {
            Some(v) => f(self, v),
            None => self,
        }
    }

    /// Orders by a column or expression.
    pub fn order_by(mut self, by: impl IntoOrderExpr, order: Order) -> Self {
        let dir = match order {
            Order::Asc => " ASC",
            Order::Desc => " DESC",
        };
        self.order.push(by.into_order_expr().append_sql(dir));
        self
    }

    /// Orders ascending.
    pub fn order_by_asc(self, by: impl IntoOrderExpr) -> Self {
        self.order_by(by, Order::Asc)
    }

    /// Orders descending.
    pub fn order_by_desc(self, by: impl IntoOrderExpr) -> Self {
        self.order_by(by, Order::Desc)
    }

    /// At most `n` rows.
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` rows.
    pub fn offset(mut self, n: u64) -> Self {
        self.offset = Some(n);
        self
    }

    /// Groups by a column or expression.
    pub fn group_by(mut self, by: impl IntoOrderExpr) -> Self {
        self.group_by.push(by.into_order_expr());
        self
    }

    /// Adds a `HAVING` condition.
    pub fn having(mut self, condition: impl Into<Expr>) -> Self {
        self.having.push(condition.into());
        self
    }

    /// Joins another model's table on a condition.
    pub fn join<R: LifeModel>(mut self, kind: JoinType, on: impl Into<Expr>) -> Self {
        self.joins.push(
            Expr::cust(kind.sql())
                .append_sql(R::QUALIFIED)
                .append_sql(" ON ")
                .append(on.into()),
        );
        self
    }

    /// Appends a join clause written in full (` LEFT JOIN "t" ON ...`): for relation
    /// joins, which name tables by their SQL rather than by a model type.
    pub(crate) fn join_sql(mut self, join: Expr) -> Self {
        self.joins.push(join);
        self
    }

    /// `SELECT DISTINCT`.
    pub fn distinct(mut self) -> Self {
        self.distinct = Distinct::All;
        self
    }

    /// `SELECT DISTINCT ON (...)`.
    pub fn distinct_on(mut self, on: impl IntoIterator<Item = Expr>) -> Self {
        self.distinct = Distinct::On(on.into_iter().collect());
        self
    }

    /// `FOR UPDATE`: lock the rows until the transaction ends.
    pub fn for_update(mut self) -> Self {
        self.lock = Some(" FOR UPDATE");
        self
    }

    /// `FOR SHARE`.
    pub fn for_share(mut self) -> Self {
        self.lock = Some(" FOR SHARE");
        self
    }

    /// `FOR UPDATE SKIP LOCKED`: work-queue style.
    pub fn for_update_skip_locked(mut self) -> Self {
        self.lock = Some(" FOR UPDATE SKIP LOCKED");
        self
    }

    /// `FOR UPDATE NOWAIT`.
    pub fn for_update_nowait(mut self) -> Self {
        self.lock = Some(" FOR UPDATE NOWAIT");
        self
    }

    /// Selects only these expressions (then use [`Select::into_model`] or `into_tuple`).
    pub fn columns(mut self, columns: impl IntoIterator<Item = Expr>) -> Self {
        self.columns = Some(columns.into_iter().collect());
        self
    }

    /// Adds `expr AS alias` to the selected expressions.
    pub fn column_as(mut self, expr: Expr, alias: &str) -> Self {
        let e = expr.append_sql(" AS ").append_sql(quote_path(alias));
        self.columns.get_or_insert_with(Vec::new).push(e);
        self
    }

    /// Soft-delete models: see deleted rows too (the default hides them). No effect on
    /// other models.
    ///
    /// ```
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "notes", soft_delete)]
    /// # pub struct Note { #[lifeguard(primary_key)] pub id: i64,
    /// #   pub deleted_at: Option<chrono::DateTime<chrono::Utc>> }
    /// let (live, _) = Note::find().build();
    /// assert!(live.ends_with(r#"WHERE ("notes"."deleted_at" IS NULL)"#));
    /// let (all, _) = Note::find().with_deleted().build();
    /// assert!(!all.contains("WHERE"));
    /// let (gone, _) = Note::find().only_deleted().build();
    /// assert!(gone.ends_with(r#"WHERE ("notes"."deleted_at" IS NOT NULL)"#));
    /// ```
    pub fn with_deleted(mut self) -> Self {
        self.deleted = Deleted::Include;
        self
    }

    /// Soft-delete models: see only the deleted rows. No effect on other models.
    pub fn only_deleted(mut self) -> Self {
        self.deleted = Deleted::Only;
        self
    }

    /// The soft-delete condition this query adds, if any.
    fn deleted_filter(&self) -> Option<Expr> {
        let column = M::SOFT_DELETE?;
        let test = match self.deleted {
            Deleted::Exclude => " IS NULL",
            Deleted::Only => " IS NOT NULL",
            Deleted::Include => return None,
        };
        Some(Expr::cust(format!(
            "{}.{}{test}",
            M::QUALIFIED,
            super::expr::quote(column)
        )))
    }

    /// Whether the constant find-by-key statement still describes this query.
    fn is_plain_key_lookup(&self) -> bool {
        self.key.is_some() && self.is_unrefined()
    }

    /// Whether this is `find()` as it comes (nothing added, not even a limit), so its text
    /// depends on the model alone and may be cached.
    pub(crate) fn is_plain(&self) -> bool {
        self.key.is_none() && self.limit.is_none() && self.is_unrefined()
    }

    /// Nothing added beyond `find()` or `find_by_id` (a limit aside).
    fn is_unrefined(&self) -> bool {
        self.deleted == Deleted::Exclude
            && self.filters.is_empty()
            && self.order.is_empty()
            && self.group_by.is_empty()
            && self.having.is_empty()
            && self.joins.is_empty()
            && self.columns.is_none()
            && matches!(self.distinct, Distinct::No)
            && self.offset.is_none()
            && self.lock.is_none()
    }

    /// The SQL and its parameters.
    pub fn build(&self) -> (String, Vec<Value>) {
        let mut sql = String::with_capacity(128);
        let mut params = Vec::new();
        sql.push_str("SELECT ");
        match &self.distinct {
            Distinct::No => {}
            Distinct::All => sql.push_str("DISTINCT "),
            Distinct::On(on) => {
                sql.push_str("DISTINCT ON (");
                write_list(&mut sql, &mut params, on, ", ");
                sql.push_str(") ");
            }
        }
        match &self.columns {
            Some(cols) => write_list(&mut sql, &mut params, cols, ", "),
            None => write_model_columns::<M>(&mut sql),
        }
        sql.push_str(" FROM ");
        sql.push_str(M::QUALIFIED);
        for j in &self.joins {
            j.write(&mut sql, &mut params);
        }
        let key_filter = self.key.as_ref().map(M::key_condition);
        let deleted_filter = self.deleted_filter();
        let filters: Vec<&Expr> = key_filter
            .iter()
            .chain(deleted_filter.iter())
            .chain(&self.filters)
            .collect();
        if !filters.is_empty() {
            sql.push_str(" WHERE ");
            for (i, f) in filters.iter().enumerate() {
                if i > 0 {
                    sql.push_str(" AND ");
                }
                sql.push('(');
                f.write(&mut sql, &mut params);
                sql.push(')');
            }
        }
        if !self.group_by.is_empty() {
            sql.push_str(" GROUP BY ");
            write_list(&mut sql, &mut params, &self.group_by, ", ");
        }
        if !self.having.is_empty() {
            sql.push_str(" HAVING ");
            write_list(&mut sql, &mut params, &self.having, " AND ");
        }
        if !self.order.is_empty() {
            sql.push_str(" ORDER BY ");
            write_list(&mut sql, &mut params, &self.order, ", ");
        }
        // Bound, not written into the text: every page of a query is one prepared
        // statement, not one per page number.
        for (clause, n) in [(" LIMIT $", self.limit), (" OFFSET $", self.offset)] {
            if let Some(n) = n {
                params.push(Arc::new(count_param(n)));
                sql.push_str(clause);
                sql.push_str(&params.len().to_string());
            }
        }
        if let Some(lock) = self.lock {
            sql.push_str(lock);
        }
        (sql, params)
    }

    fn rows(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<Row>> {
        if self.is_plain() {
            // The same text every time, formatted once.
            let sql = statement(Some((TypeId::of::<M>(), Kind::FindAll, 0)), || {
                self.build().0
            });
            return db.query(&sql, &[]);
        }
        if self.is_plain_key_lookup() && self.limit.is_none_or(|n| n > 0) {
            if let Some(key) = &self.key {
                return db.query(M::FIND_BY_PK_SQL, &M::key_params(key));
            }
        }
        let (sql, params) = self.build();
        db.query(&sql, &as_params(&params))
    }

    /// Every matching row.
    pub fn all(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<M>> {
        self.rows(db)?.iter().map(M::from_row).collect()
    }

    /// The first matching row, if any (adds `LIMIT 1` unless the query is a key lookup).
    pub fn one(&self, db: &(impl Executor + ?Sized)) -> Result<Option<M>> {
        #[cfg(feature = "cache")]
        if let (Some(hooks), Some(key), true) =
            (M::CACHE.as_ref(), &self.key, self.is_plain_key_lookup())
        {
            if let Some(scope) = db.cache_scope() {
                return crate::cache::find_one_cached(&scope, hooks, key, || self.one_uncached(db));
            }
        }
        self.one_uncached(db)
    }

    /// [`Select::one`] from PostgreSQL.
    fn one_uncached(&self, db: &(impl Executor + ?Sized)) -> Result<Option<M>> {
        let rows = if self.is_plain_key_lookup() {
            self.rows(db)?
        } else {
            self.clone().limit(1).rows(db)?
        };
        rows.first().map(M::from_row).transpose()
    }

    /// How many rows match.
    pub fn count(&self, db: &(impl Executor + ?Sized)) -> Result<i64> {
        let mut inner = self.clone();
        inner.order.clear();
        inner.lock = None;
        let (sql, params) = inner.build();
        let sql = format!("SELECT count(*) FROM ({sql}) AS lifeguard_count");
        db.query_one(&sql, &as_params(&params))?.try_get(0)
    }

    /// Whether any row matches.
    pub fn exists(&self, db: &(impl Executor + ?Sized)) -> Result<bool> {
        let mut inner = self.clone().limit(1);
        inner.order.clear();
        inner.lock = None;
        let (sql, params) = inner.build();
        let sql = format!("SELECT EXISTS ({sql})");
        db.query_one(&sql, &as_params(&params))?.try_get(0)
    }

    /// The same query decoded into another type (a projection struct or a tuple); usually
    /// after [`Select::columns`] or [`Select::column_as`].
    pub fn into_model<P: FromRow>(self) -> Projected<M, P> {
        Projected {
            select: self,
            _p: PhantomData,
        }
    }
}

/// A [`Select`] whose rows decode into `P`.
#[derive(Debug)]
pub struct Projected<M: LifeModel, P> {
    select: Select<M>,
    _p: PhantomData<fn() -> P>,
}

impl<M: LifeModel, P: FromRow> Projected<M, P> {
    /// Every row, decoded.
    pub fn all(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<P>> {
        let (sql, params) = self.select.build();
        db.query(&sql, &as_params(&params))?
            .iter()
            .map(P::from_row)
            .collect()
    }

    /// The first row, decoded.
    pub fn one(&self, db: &(impl Executor + ?Sized)) -> Result<Option<P>> {
        let (sql, params) = self.select.clone().limit(1).build();
        db.query(&sql, &as_params(&params))?
            .first()
            .map(P::from_row)
            .transpose()
    }
}

/// Something a query can order or group by: a column or an expression.
pub trait IntoOrderExpr {
    /// The expression.
    fn into_order_expr(self) -> Expr;
}

impl IntoOrderExpr for Expr {
    fn into_order_expr(self) -> Expr {
        self
    }
}

impl<C: ColumnExpr> IntoOrderExpr for C {
    fn into_order_expr(self) -> Expr {
        self.expr()
    }
}

impl<C: ModelColumn, T> IntoOrderExpr for TypedColumn<C, T> {
    fn into_order_expr(self) -> Expr {
        self.expr()
    }
}

fn write_list(sql: &mut String, params: &mut Vec<Value>, items: &[Expr], sep: &str) {
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            sql.push_str(sep);
        }
        item.write(sql, params);
    }
}

fn write_model_columns<M: LifeModel>(sql: &mut String) {
    sql.push_str(model_columns::<M>());
}

/// `"table"."col", ...` for `M`, formatted once per model and kept for the process: every
/// query over a model starts with it.
fn model_columns<M: LifeModel>() -> &'static str {
    use std::any::TypeId;
    use std::collections::HashMap;
    use std::sync::{OnceLock, RwLock};
    static LISTS: OnceLock<RwLock<HashMap<TypeId, &'static str>>> = OnceLock::new();
    let lists = LISTS.get_or_init(Default::default);
    let key = TypeId::of::<M>();
    if let Some(list) = lists.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return list;
    }
    let list = M::COLUMNS
        .iter()
        .map(|c| format!("{}.{}", M::QUALIFIED, super::expr::quote(c.name)))
        .collect::<Vec<_>>()
        .join(", ");
    let list: &'static str = Box::leak(list.into_boxed_str());
    lists
        .write()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, list);
    list
}

/// Borrows owned parameters as the executor's parameter slice.
pub fn as_params(values: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    values.iter().map(|v| &**v as &(dyn ToSql + Sync)).collect()
}

/// `NotFound` when an expected row is missing.
pub(crate) fn require<T>(value: Option<T>) -> Result<T> {
    value.ok_or(Error::NotFound)
}

/// A row count as the `bigint` that `LIMIT` and `OFFSET` take (beyond its range, the
/// largest: no table holds that many rows).
pub(crate) fn count_param(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
