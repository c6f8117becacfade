//! Paging through a query: by offset ([`Select::paginate`], numbered pages) or by keyset
//! ([`Select::cursor_by`], stable under concurrent writes and fast at any depth).

use std::sync::Arc;

use super::expr::{quote, Value};
use super::select::{as_params, Select};
use super::typed::TypedColumn;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::model::{Field, LifeModel, LifeRecord, ModelColumn};
use crate::pg::ToSql;

/// The primary-key columns of `M`, in declaration order.
fn key_columns<M: LifeModel>() -> Vec<M::Column> {
    <M::Column as ModelColumn>::ALL
        .iter()
        .copied()
        .filter(|c| c.def().primary_key)
        .collect()
}

impl<M: LifeModel> Select<M> {
    /// Numbered pages of `page_size` rows (0-based, like SeaORM) with `LIMIT`/`OFFSET`.
    ///
    /// Offsets only page consistently over a total order, so the primary key is always
    /// appended to the query's order as the last tiebreaker: with no `order_by` the pages
    /// run in key order, and rows that tie on the given order never swap between pages.
    /// (A grouped or `DISTINCT ON` query must therefore be orderable by the key.) A
    /// `page_size` of 0 is taken as 1. Deep pages cost the rows they skip; prefer
    /// [`Select::cursor_by`] for feeds and exports.
    ///
    /// ```no_run
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub name: String }
    /// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
    /// let mut pages = User::find().order_by_asc(UserColumn::Name).paginate(db, 20);
    /// let total = pages.num_items()?;
    /// let third = pages.fetch_page(2)?;
    /// for page in pages {
    ///     let users: Vec<User> = page?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn paginate<E: Executor + ?Sized>(self, db: &E, page_size: u64) -> Paginator<'_, M, E> {
        let mut select = self;
        for key in key_columns::<M>() {
            select = select.order_by_asc(key);
        }
        Paginator {
            select,
            db,
            page_size: page_size.max(1),
            page: 0,
        }
    }

    /// Keyset (cursor) pagination ordered by `columns` (one column or several), with the
    /// primary key appended as a tiebreaker; see [`Cursor`].
    ///
    /// ```no_run
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub name: String }
    /// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
    /// let first = User::find().cursor_by(UserColumn::Name).first(20).all(db)?;
    /// if let Some(last) = first.last() {
    ///     let next = User::find().cursor_by(UserColumn::Name).after_model(last).first(20).all(db)?;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn cursor_by(self, columns: impl CursorColumns<M::Column>) -> Cursor<M> {
        let mut cols = columns.into_columns();
        for key in key_columns::<M>() {
            if !cols.contains(&key) {
                cols.push(key);
            }
        }
        Cursor {
            select: self,
            columns: cols,
            after: None,
            before: None,
            limit: None,
            desc: false,
        }
    }
}

/// Numbered pages over a query; see [`Select::paginate`].
///
/// Iterating yields each page from the current one on, stopping at the first empty page.
///
/// ```no_run
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64 }
/// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
/// let mut pages = User::find().paginate(db, 50);
/// while let Some(users) = pages.fetch_and_next()? {
///     println!("page of {}", users.len());
/// }
/// # Ok(()) }
/// ```
pub struct Paginator<'db, M: LifeModel, E: Executor + ?Sized> {
    select: Select<M>,
    db: &'db E,
    page_size: u64,
    page: u64,
}

impl<M: LifeModel, E: Executor + ?Sized> std::fmt::Debug for Paginator<'_, M, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paginator")
            .field("sql", &self.select.build().0)
            .field("page_size", &self.page_size)
            .field("page", &self.page)
            .finish()
    }
}

/// Item and page counts of a [`Paginator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemsAndPages {
    /// Rows the query matches.
    pub number_of_items: u64,
    /// Pages those rows fill (the last one possibly short).
    pub number_of_pages: u64,
}

impl<M: LifeModel, E: Executor + ?Sized> Paginator<'_, M, E> {
    /// The rows of page `page` (0-based); past the end it is empty.
    ///
    /// ```no_run
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64 }
    /// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
    /// let second = User::find().paginate(db, 10).fetch_page(1)?; // rows 11..=20
    /// # Ok(()) }
    /// ```
    pub fn fetch_page(&self, page: u64) -> Result<Vec<M>> {
        self.select
            .clone()
            .limit(self.page_size)
            .offset(page.saturating_mul(self.page_size))
            .all(self.db)
    }

    /// The rows of the current page (0 until [`Paginator::next_page`] or iteration moves on).
    pub fn fetch(&self) -> Result<Vec<M>> {
        self.fetch_page(self.page)
    }

    /// The current page number (0-based).
    pub fn cur_page(&self) -> u64 {
        self.page
    }

    /// Rows per page.
    pub fn page_size(&self) -> u64 {
        self.page_size
    }

    /// Moves to the next page (without fetching).
    pub fn next_page(&mut self) {
        self.page += 1;
    }

    /// Moves to page `page` (without fetching).
    pub fn set_page(&mut self, page: u64) {
        self.page = page;
    }

    /// The current page and a move to the next one, or `None` once a page comes back
    /// empty (the position then stays put).
    pub fn fetch_and_next(&mut self) -> Result<Option<Vec<M>>> {
        let rows = self.fetch()?;
        if rows.is_empty() {
            return Ok(None);
        }
        self.page += 1;
        Ok(Some(rows))
    }

    /// How many rows the query matches (`SELECT count(*)` over it).
    pub fn num_items(&self) -> Result<u64> {
        let n = self.select.count(self.db)?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// How many pages the rows fill.
    pub fn num_pages(&self) -> Result<u64> {
        Ok(self.num_items_and_pages()?.number_of_pages)
    }

    /// Both counts from one `count(*)`.
    pub fn num_items_and_pages(&self) -> Result<ItemsAndPages> {
        let items = self.num_items()?;
        Ok(ItemsAndPages {
            number_of_items: items,
            number_of_pages: items.div_ceil(self.page_size),
        })
    }
}

impl<M: LifeModel, E: Executor + ?Sized> Iterator for Paginator<'_, M, E> {
    type Item = Result<Vec<M>>;

    /// Each page from the current one on; `None` at the first empty page, and after an
    /// error.
    fn next(&mut self) -> Option<Result<Vec<M>>> {
        self.fetch_and_next().transpose()
    }
}

/// What [`Select::cursor_by`] accepts: one column (plain or typed), an array or a `Vec` of
/// plain columns (`User::COL_NAME.column()` for a typed one: lists of typed columns rarely
/// share a type, and a list of either kind would leave `cursor_by([])` uninferable).
pub trait CursorColumns<C> {
    /// The columns, in order.
    fn into_columns(self) -> Vec<C>;
}

impl<C: ModelColumn> CursorColumns<C> for C {
    fn into_columns(self) -> Vec<C> {
        vec![self]
    }
}

impl<C: ModelColumn, T> CursorColumns<C> for TypedColumn<C, T> {
    fn into_columns(self) -> Vec<C> {
        vec![self.column()]
    }
}

impl<C: ModelColumn, const N: usize> CursorColumns<C> for [C; N] {
    fn into_columns(self) -> Vec<C> {
        self.to_vec()
    }
}

impl<C: ModelColumn> CursorColumns<C> for Vec<C> {
    fn into_columns(self) -> Vec<C> {
        self
    }
}

/// A cursor position: the values of the cursor columns followed by the primary key's (a
/// key column already among the cursor columns is not repeated).
///
/// Implemented for tuples of up to six values, for common scalar types (a cursor on the
/// key alone), and for `Vec<Value>`.
pub trait CursorValues {
    /// The values, in cursor-column order.
    fn into_values(self) -> Vec<Value>;
}

impl CursorValues for Vec<Value> {
    fn into_values(self) -> Vec<Value> {
        self
    }
}

macro_rules! cursor_scalar {
    ($($t:ty),+) => {$(
        impl CursorValues for $t {
            fn into_values(self) -> Vec<Value> {
                vec![Arc::new(self)]
            }
        }
    )+};
}
cursor_scalar!(
    i16,
    i32,
    i64,
    f32,
    f64,
    bool,
    String,
    &'static str,
    uuid::Uuid
);

macro_rules! cursor_tuple {
    ($($t:ident $i:tt),+) => {
        impl<$($t),+> CursorValues for ($($t,)+)
        where
            $($t: ToSql + Sync + Send + 'static),+
        {
            fn into_values(self) -> Vec<Value> {
                vec![$(Arc::new(self.$i) as Value),+]
            }
        }
    };
}
cursor_tuple!(A 0);
cursor_tuple!(A 0, B 1);
cursor_tuple!(A 0, B 1, C 2);
cursor_tuple!(A 0, B 1, C 2, D 3);
cursor_tuple!(A 0, B 1, C 2, D 3, E 4);
cursor_tuple!(A 0, B 1, C 2, D 3, E 4, F 5);

/// Where a cursor bound comes from.
#[derive(Clone)]
enum Bound<M> {
    Values(Vec<Value>),
    Row(M),
}

/// Keyset pagination: rows after and/or before a position in a total order, read with an
/// index range scan instead of an offset; see [`Select::cursor_by`].
///
/// The order is the cursor columns, then the primary key, all ascending (or all descending
/// with [`Cursor::desc`]), and the bounds compare the whole row value:
/// `("name", "id") > ($1, $2)`. Rows whose cursor values tie are told apart by the key, so
/// no row is skipped or repeated between pages. Cursor columns should be `NOT NULL` (a
/// NULL never compares, so such rows are left out); an index on the same columns, key
/// last, serves every page.
///
/// [`Cursor::first`] takes the first `n` rows of the range; [`Cursor::last`] the last `n`,
/// still returned in cursor order. Paging backwards from a page is
/// `before_model(&page[0]).last(n)`.
///
/// ```no_run
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub name: String }
/// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
/// // An opaque client token holding ("bob", 42): the next 20 rows after it.
/// let page = User::find()
///     .cursor_by(UserColumn::Name)
///     .after(("bob".to_string(), 42i64))
///     .first(20)
///     .all(db)?;
/// # Ok(()) }
/// ```
pub struct Cursor<M: LifeModel> {
    select: Select<M>,
    columns: Vec<M::Column>,
    after: Option<Bound<M>>,
    before: Option<Bound<M>>,
    /// The row limit, and whether it takes the last rows rather than the first.
    limit: Option<(u64, bool)>,
    desc: bool,
}

impl<M: LifeModel> Clone for Cursor<M> {
    fn clone(&self) -> Self {
        Cursor {
            select: self.select.clone(),
            columns: self.columns.clone(),
            after: self.after.clone(),
            before: self.before.clone(),
            limit: self.limit,
            desc: self.desc,
        }
    }
}

impl<M: LifeModel> std::fmt::Debug for Cursor<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cursor")
            .field("sql", &self.select.build().0)
            .field("columns", &self.columns)
            .field("limit", &self.limit)
            .field("desc", &self.desc)
            .finish_non_exhaustive()
    }
}

impl<M: LifeModel> Cursor<M> {
    /// Only rows after this position (cursor values, then key values).
    pub fn after(mut self, values: impl CursorValues) -> Self {
        self.after = Some(Bound::Values(values.into_values()));
        self
    }

    /// Only rows before this position (cursor values, then key values).
    pub fn before(mut self, values: impl CursorValues) -> Self {
        self.before = Some(Bound::Values(values.into_values()));
        self
    }

    /// Only rows after this row (its cursor and key values).
    pub fn after_model(mut self, row: &M) -> Self {
        self.after = Some(Bound::Row(row.clone()));
        self
    }

    /// Only rows before this row (its cursor and key values).
    pub fn before_model(mut self, row: &M) -> Self {
        self.before = Some(Bound::Row(row.clone()));
        self
    }

    /// The first `n` rows of the range.
    pub fn first(mut self, n: u64) -> Self {
        self.limit = Some((n, false));
        self
    }

    /// The last `n` rows of the range, returned in cursor order.
    pub fn last(mut self, n: u64) -> Self {
        self.limit = Some((n, true));
        self
    }

    /// Orders (and compares) descending: "after" then means further down the list.
    pub fn desc(mut self) -> Self {
        self.desc = true;
        self
    }

    /// The cursor columns in order, the key columns appended.
    pub fn columns(&self) -> &[M::Column] {
        &self.columns
    }

    /// The rows of the range, in cursor order.
    pub fn all(&self, db: &(impl Executor + ?Sized)) -> Result<Vec<M>> {
        let (base, owned) = self.select.build();
        let mut params = as_params(&owned);
        // Records of model bounds, kept alive while their fields are borrowed.
        let after_record = record_of(&self.after);
        let before_record = record_of(&self.before);
        let backwards = matches!(self.limit, Some((_, true)));
        let column_list = self
            .columns
            .iter()
            .map(|c| quote(c.name()))
            .collect::<Vec<_>>()
            .join(", ");
        let mut sql = format!("SELECT * FROM ({base}) AS lifeguard_cursor");
        let mut glue = " WHERE ";
        for (bound, record, op) in [
            (
                &self.after,
                &after_record,
                if self.desc { "<" } else { ">" },
            ),
            (
                &self.before,
                &before_record,
                if self.desc { ">" } else { "<" },
            ),
        ] {
            let Some(bound) = bound else { continue };
            sql.push_str(glue);
            glue = " AND ";
            sql.push_str(&format!("({column_list}) {op} ("));
            match (bound, record) {
                (Bound::Values(values), _) => {
                    if values.len() != self.columns.len() {
                        return Err(Error::invalid_use(format!(
                            "the cursor on {} is {} values ({column_list}); {} were given",
                            M::TABLE,
                            self.columns.len(),
                            values.len()
                        )));
                    }
                    for (i, v) in values.iter().enumerate() {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        params.push(&**v);
                        sql.push_str(&format!("${}", params.len()));
                    }
                }
                (Bound::Row(_), Some(record)) => {
                    let fields = record.fields();
                    let fields = fields.as_ref();
                    for (i, col) in self.columns.iter().enumerate() {
                        if i > 0 {
                            sql.push_str(", ");
                        }
                        let value =
                            fields
                                .iter()
                                .find(|(c, _)| c == col)
                                .and_then(|(_, f)| match f {
                                    Field::Set(v) | Field::Unchanged(v) => Some(*v),
                                    Field::NotSet | Field::Expr(_) => None,
                                });
                        let value = value.ok_or_else(|| {
                            Error::invalid_use(format!("no value for cursor column {col:?}"))
                        })?;
                        params.push(value);
                        sql.push_str(&format!("${}", params.len()));
                    }
                }
                (Bound::Row(_), None) => unreachable!("record_of makes a record for every row"),
            }
            sql.push(')');
        }
        // Backwards: read descending from the bound, then turn the rows around.
        let dir = if self.desc != backwards {
            " DESC"
        } else {
            " ASC"
        };
        sql.push_str(" ORDER BY ");
        for (i, c) in self.columns.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&quote(c.name()));
            sql.push_str(dir);
        }
        let limit = self.limit.map(|(n, _)| super::select::count_param(n));
        if let Some(n) = &limit {
            params.push(n);
            sql.push_str(&format!(" LIMIT ${}", params.len()));
        }
        let mut rows = db
            .query(&sql, &params)?
            .iter()
            .map(M::from_row)
            .collect::<Result<Vec<M>>>()?;
        if backwards {
            rows.reverse();
        }
        Ok(rows)
    }
}

fn record_of<M: LifeModel>(bound: &Option<Bound<M>>) -> Option<M::Record> {
    match bound {
        Some(Bound::Row(m)) => Some(m.clone().into_record()),
        _ => None,
    }
}
