//! Join-based loading: a model with its related rows from one `LEFT JOIN` query.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use super::def::Related;
use super::sql::{column, model_columns, soft_delete_cond};
use crate::error::Result;
use crate::executor::Executor;
use crate::model::LifeModel;
use crate::pg::Row;
use crate::query::{as_params, Expr, IntoOrderExpr, Select, Value};

/// Decodes `R` at `start`, or `None` when a left join found no row (its key is NULL).
fn decode_optional<R: LifeModel>(row: &Row, start: usize) -> Result<Option<R>> {
    let key = R::COLUMNS.iter().position(|c| c.primary_key).unwrap_or(0);
    if row.raw(start + key).is_none() {
        return Ok(None);
    }
    R::from_row_at(row, start).map(Some)
}

/// The `LEFT JOIN`s from `M` to `R`, with `M`'s and `R`'s columns selected.
fn joined<M: Related<R>, R: LifeModel>(select: Select<M>) -> Select<M> {
    let def = M::def();
    let target_on = |left: Expr| {
        Expr::cust(" LEFT JOIN ")
            .append_sql(R::QUALIFIED)
            .append_sql(" ON ")
            .append(def.target_column())
            .append_sql(" = ")
            .append(left)
            .append(soft_delete_cond(R::QUALIFIED, R::SOFT_DELETE))
    };
    let select = select.columns(model_columns::<M>().chain(model_columns::<R>()));
    match &def.via {
        None => select.join_sql(target_on(def.owner_column())),
        Some(via) => select
            .join_sql(
                Expr::cust(" LEFT JOIN ")
                    .append_sql(via.table)
                    .append_sql(" ON ")
                    .append(column(via.table, via.from_column))
                    .append_sql(" = ")
                    .append(def.owner_column())
                    .append(soft_delete_cond(via.table, via.soft_delete)),
            )
            .join_sql(target_on(column(via.table, via.to_column))),
    }
}

/// `M` with its related `R` from the same row: one `LEFT JOIN` query; see
/// [`Select::find_also_related`].
pub struct SelectTwo<M: Related<R>, R: LifeModel> {
    select: Select<M>,
    _r: PhantomData<fn() -> R>,
}

/// `M` with all its related `R`s, from one `LEFT JOIN` query grouped by `M`'s key; see
/// [`Select::find_with_related`].
pub struct SelectWithRelated<M: Related<R>, R: LifeModel> {
    select: Select<M>,
    _r: PhantomData<fn() -> R>,
}

impl<M: Related<R>, R: LifeModel> fmt::Debug for SelectTwo<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SelectTwo").field(&self.build().0).finish()
    }
}

impl<M: Related<R>, R: LifeModel> fmt::Debug for SelectWithRelated<M, R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SelectWithRelated")
            .field(&self.build().0)
            .finish()
    }
}

impl<M: Related<R>, R: LifeModel> SelectTwo<M, R> {
    /// The SQL and its parameters.
    pub fn build(&self) -> (String, Vec<Value>) {
        joined::<M, R>(self.select.clone()).build()
    }

    /// Every row: `M` with the `R` joined to it (`None` when no `R` matched). A `has_many`
    /// relation gives one pair per related row.
    pub fn all(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<(M, Option<R>)>> {
        let (sql, params) = self.build();
        db.query(&sql, &as_params(&params))?
            .iter()
            .map(|row| {
                Ok((
                    M::from_row_at(row, 0)?,
                    decode_optional::<R>(row, M::COLUMNS.len())?,
                ))
            })
            .collect()
    }

    /// The first row, if any (adds `LIMIT 1`).
    pub fn one(&self, db: &(impl Executor + ?Sized)) -> Result<Option<(M, Option<R>)>> {
        let limited = SelectTwo::<M, R> {
            select: self.select.clone().limit(1),
            _r: PhantomData,
        };
        Ok(limited.all(db)?.into_iter().next())
    }
}

impl<M: Related<R>, R: LifeModel> SelectWithRelated<M, R> {
    /// The SQL and its parameters.
    pub fn build(&self) -> (String, Vec<Value>) {
        let mut select = joined::<M, R>(self.select.clone());
        for c in R::COLUMNS.iter().filter(|c| c.primary_key) {
            select = select.order_by_asc(column(R::QUALIFIED, c.name).into_order_expr());
        }
        select.build()
    }

    /// Every `M` with its related `R`s, in the order the `M`s first appear; `M`s without
    /// related rows get an empty list. A limit or offset counts joined rows, not `M`s: use
    /// [`load_many`](crate::model::load_many) to page parents.
    pub fn all(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<(M, Vec<R>)>> {
        let (sql, params) = self.build();
        let rows = db.query(&sql, &as_params(&params))?;
        let keys: Vec<usize> = M::COLUMNS
            .iter()
            .enumerate()
            .filter(|(_, c)| c.primary_key)
            .map(|(i, _)| i)
            .collect();
        let mut out: Vec<(M, Vec<R>)> = Vec::new();
        let mut index: HashMap<Vec<Option<&[u8]>>, usize> = HashMap::new();
        for row in &rows {
            let key: Vec<Option<&[u8]>> = keys.iter().map(|&i| row.raw(i)).collect();
            let at = match index.entry(key) {
                Entry::Occupied(e) => *e.get(),
                Entry::Vacant(e) => {
                    out.push((M::from_row_at(row, 0)?, Vec::new()));
                    *e.insert(out.len() - 1)
                }
            };
            if let Some(r) = decode_optional::<R>(row, M::COLUMNS.len())? {
                out[at].1.push(r);
            }
        }
        Ok(out)
    }
}

impl<M: LifeModel> Select<M> {
    /// Each row with its related `R` from the same row, through a `LEFT JOIN`: one query,
    /// `(M, Option<R>)` pairs. Filters and order given before apply; relations of a
    /// model to itself are not supported (the table would need an alias).
    ///
    /// ```
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users", has_one(Profile, from = "id", to = "user_id"))]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64 }
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "profiles")]
    /// # pub struct Profile { #[lifeguard(primary_key)] pub id: i64, pub user_id: i64 }
    /// let (sql, _) = User::find().find_also_related::<Profile>().build();
    /// assert_eq!(
    ///     sql,
    ///     r#"SELECT "users"."id", "profiles"."id", "profiles"."user_id" FROM "users" LEFT JOIN "profiles" ON "profiles"."user_id" = "users"."id""#
    /// );
    /// ```
    pub fn find_also_related<R: LifeModel>(self) -> SelectTwo<M, R>
    where
        M: Related<R>,
    {
        SelectTwo {
            select: self,
            _r: PhantomData,
        }
    }

    /// Each row with all its related `R`s, from one `LEFT JOIN` query grouped by `M`'s
    /// primary key: `(M, Vec<R>)`.
    pub fn find_with_related<R: LifeModel>(self) -> SelectWithRelated<M, R>
    where
        M: Related<R>,
    {
        SelectWithRelated {
            select: self,
            _r: PhantomData,
        }
    }
}
