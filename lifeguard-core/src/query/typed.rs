//! Typed columns: a column that carries its field's Rust type, so comparing it with a value
//! of another type fails to compile instead of failing with `Error::Encode` at run time.
//!
//! `#[derive(LifeModel)]` generates one per stored field (`User::COL_EMAIL`); the untyped
//! [`ColumnExpr`] helpers on the column enum stay for dynamic code. Every method here
//! converts its value to the column's type and hands it to the matching `ColumnExpr`
//! helper, so both layers write the same SQL.

use std::fmt;
use std::marker::PhantomData;

use super::expr::{ColumnExpr, Expr};
use crate::model::ModelColumn;
use crate::pg::ToSql;

/// A model column `C` whose field has the Rust type `T`: the typed counterpart of a
/// [`ColumnExpr`] column.
///
/// Its comparisons take a [`ColumnValue<T>`], so a value of the wrong type is a compile
/// error. It goes where a single column goes: `order_by*`, `group_by`, `cursor_by`,
/// `UpdateMany::set` and `OnConflict::update_expr` (through [`IntoColumn`]),
/// `UpdateMany::set_value` (through [`AssignValue`], which checks the value's type),
/// projections and `distinct_on` (through [`TypedColumn::expr`]); [`TypedColumn::column`]
/// gives the plain column back, for lists of columns and the untyped helpers.
///
/// ```
/// use lifeguard_core::model::LifeModel as _;
/// use lifeguard_core::query::TypedColumn;
/// use lifeguard_core::LifeModel;
///
/// #[derive(Debug, Clone, LifeModel)]
/// #[lifeguard(table_name = "users")]
/// pub struct User {
///     #[lifeguard(primary_key)]
///     pub id: i64,
///     pub email: String,
///     pub age: Option<i32>,
/// }
///
/// // The derive writes these; spelled out here.
/// const EMAIL: TypedColumn<UserColumn, String> = TypedColumn::new(UserColumn::Email);
/// assert_eq!(EMAIL.column(), User::COL_EMAIL.column());
///
/// let (sql, params) = User::find()
///     .filter(User::COL_EMAIL.eq("a@example.com"))
///     .filter(User::COL_AGE.gte(18)) // an `Option<i32>` column takes an `i32`
///     .order_by_asc(User::COL_EMAIL)
///     .build();
/// assert!(sql.ends_with(
///     r#"WHERE ("users"."email" = $1) AND ("users"."age" >= $2) ORDER BY "users"."email" ASC"#
/// ));
/// assert_eq!(params.len(), 2);
/// ```
///
/// A value of another type does not compile:
///
/// ```compile_fail,E0277
/// # use lifeguard_core::LifeModel;
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub email: String }
/// let wrong = User::COL_EMAIL.eq(5);
/// ```
pub struct TypedColumn<C, T> {
    column: C,
    /// `fn() -> T`: the column neither owns nor borrows a `T`, so it is `Copy`, `Send` and
    /// `Sync` whatever `T` is.
    field_type: PhantomData<fn() -> T>,
}

// Written out rather than derived: a derive would require `T: Clone`/`T: Copy`, and field
// types (`String`, `Vec<u8>`) are not `Copy`.
impl<C: Copy, T> Clone for TypedColumn<C, T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<C: Copy, T> Copy for TypedColumn<C, T> {}

impl<C: fmt::Debug, T> fmt::Debug for TypedColumn<C, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.column, std::any::type_name::<T>())
    }
}

impl<C: ModelColumn, T> TypedColumn<C, T> {
    /// Types `column` as holding `T`. The derive calls it with each field's type; calling it
    /// by hand with another type only changes which values the comparisons accept.
    ///
    /// ```
    /// # use lifeguard_core::LifeModel;
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64 }
    /// use lifeguard_core::query::TypedColumn;
    /// const ID: TypedColumn<UserColumn, i64> = TypedColumn::new(UserColumn::Id);
    /// ```
    pub const fn new(column: C) -> Self {
        TypedColumn {
            column,
            field_type: PhantomData,
        }
    }

    /// The plain column, for the untyped [`ColumnExpr`] helpers.
    ///
    /// ```
    /// # use lifeguard_core::LifeModel;
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64 }
    /// assert_eq!(User::COL_ID.column(), UserColumn::Id);
    /// ```
    pub const fn column(self) -> C {
        self.column
    }

    /// The column, qualified by its table: `"users"."email"` (for projections,
    /// `Select::columns`, `distinct_on` and hand-written expressions).
    ///
    /// ```
    /// # use lifeguard_core::LifeModel;
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub email: String }
    /// assert_eq!(User::COL_EMAIL.expr().to_sql_string(), r#""users"."email""#);
    /// ```
    pub fn expr(self) -> Expr {
        self.column.expr()
    }
}

/// The comparisons. Each converts its values to `T` and delegates to the [`ColumnExpr`]
/// helper of the same name.
///
/// ```
/// # use lifeguard_core::LifeModel;
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "books")]
/// # pub struct Book { #[lifeguard(primary_key)] pub id: i32, pub title: String,
/// #   pub year: Option<i32>, pub cover: Vec<u8> }
/// let title = String::from("Dune");
/// let sql = |e: lifeguard_core::query::Expr| e.to_sql_string();
/// assert_eq!(sql(Book::COL_TITLE.eq(&title)), r#""books"."title" = $1"#);
/// assert_eq!(sql(Book::COL_YEAR.between(1960, 1970)), r#""books"."year" BETWEEN $1 AND $2"#);
/// assert_eq!(sql(Book::COL_ID.is_in([1, 2, 3])), r#""books"."id" = ANY($1)"#);
/// assert_eq!(sql(Book::COL_COVER.ne(b"\x89PNG")), r#""books"."cover" <> $1"#);
/// assert_eq!(sql(Book::COL_YEAR.is_null()), r#""books"."year" IS NULL"#);
/// ```
impl<C, T> TypedColumn<C, T>
where
    C: ModelColumn,
    T: ToSql + Sync + Send + 'static,
{
    /// `col = value`.
    pub fn eq(self, value: impl ColumnValue<T>) -> Expr {
        self.column.eq(value.into_column_value())
    }

    /// `col <> value`.
    pub fn ne(self, value: impl ColumnValue<T>) -> Expr {
        self.column.ne(value.into_column_value())
    }

    /// `col > value`.
    pub fn gt(self, value: impl ColumnValue<T>) -> Expr {
        self.column.gt(value.into_column_value())
    }

    /// `col >= value`.
    pub fn gte(self, value: impl ColumnValue<T>) -> Expr {
        self.column.gte(value.into_column_value())
    }

    /// `col < value`.
    pub fn lt(self, value: impl ColumnValue<T>) -> Expr {
        self.column.lt(value.into_column_value())
    }

    /// `col <= value`.
    pub fn lte(self, value: impl ColumnValue<T>) -> Expr {
        self.column.lte(value.into_column_value())
    }

    /// `col BETWEEN low AND high`.
    pub fn between(self, low: impl ColumnValue<T>, high: impl ColumnValue<T>) -> Expr {
        self.column
            .between(low.into_column_value(), high.into_column_value())
    }

    /// `col = ANY($n)`: the values bind as one array of `T`, so every list length shares
    /// one statement.
    pub fn is_in<V: ColumnValue<T>>(self, values: impl IntoIterator<Item = V>) -> Expr
    where
        Vec<T>: ToSql + Sync + Send + 'static,
    {
        self.column
            .is_in(values.into_iter().map(ColumnValue::into_column_value))
    }

    /// `col <> ALL($n)`, one array parameter like [`TypedColumn::is_in`].
    pub fn is_not_in<V: ColumnValue<T>>(self, values: impl IntoIterator<Item = V>) -> Expr
    where
        Vec<T>: ToSql + Sync + Send + 'static,
    {
        self.column
            .is_not_in(values.into_iter().map(ColumnValue::into_column_value))
    }

    /// `col IS NULL` (offered for every type: after a `LEFT JOIN` any column can be NULL).
    pub fn is_null(self) -> Expr {
        self.column.is_null()
    }

    /// `col IS NOT NULL`.
    pub fn is_not_null(self) -> Expr {
        self.column.is_not_null()
    }

    /// `col LIKE pattern`, for text columns only.
    ///
    /// ```
    /// # use lifeguard_core::LifeModel;
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub name: Option<String> }
    /// let e = User::COL_NAME.like("A%");
    /// assert_eq!(e.to_sql_string(), r#""users"."name" LIKE $1"#);
    /// ```
    pub fn like(self, pattern: impl Into<String>) -> Expr
    where
        T: TextField,
    {
        self.column.like(pattern)
    }

    /// `col ILIKE pattern` (case-insensitive), for text columns only.
    pub fn ilike(self, pattern: impl Into<String>) -> Expr
    where
        T: TextField,
    {
        self.column.ilike(pattern)
    }

    /// `col + value`, for numeric columns: a counter in `UpdateMany::set` or
    /// `ActiveValue::Expr` (the column is unqualified, as `SET` needs).
    ///
    /// ```
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "users")]
    /// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub visits: i32 }
    /// use lifeguard_core::model::Returning;
    ///
    /// let bump = User::update_many().set(User::COL_VISITS, User::COL_VISITS.add(1));
    /// assert_eq!(bump.build(Returning::Nothing).0, r#"UPDATE "users" SET "visits" = "visits" + $1"#);
    /// ```
    #[allow(clippy::should_implement_trait)]
    pub fn add(self, value: impl ColumnValue<T>) -> Expr
    where
        T: NumericField,
    {
        self.column.add(value.into_column_value())
    }

    /// `col - value`, for numeric columns.
    #[allow(clippy::should_implement_trait)]
    pub fn sub(self, value: impl ColumnValue<T>) -> Expr
    where
        T: NumericField,
    {
        self.column.sub(value.into_column_value())
    }
}

/// A value a column whose field type is `T` can be compared with; it converts into a `T`
/// before it is bound.
///
/// Implemented for:
/// - `T` itself: every field type, the project's `LifeEnum`s and newtypes included;
/// - `&T` (cloned), and `&str` for `String`, `&[E]`, `&[E; N]` and `[E; N]` for `Vec<E>`
///   (so `&[u8]` and `b"..."` for `Vec<u8>`);
/// - for an `Option<U>` column, each of the above for `U` (wrapped in `Some`), so
///   `COL_YEAR.eq(2001)` compiles for `year: Option<i32>` with the literal inferred as
///   `i32`.
///
/// There are no numeric widenings (`i32` for an `i64` column): the server types the
/// parameter from the column, and an `i32` cannot encode as `int8`.
///
/// ```
/// # use lifeguard_core::LifeModel;
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub email: String, pub nick: Option<String> }
/// let owned = String::from("a@b.c");
/// User::COL_EMAIL.eq("a@b.c");
/// User::COL_EMAIL.eq(&owned);
/// User::COL_EMAIL.eq(owned.clone());
/// User::COL_NICK.eq("al");
/// User::COL_NICK.eq(Some(owned));
/// User::COL_ID.is_in(vec![1, 2]);
/// ```
#[diagnostic::on_unimplemented(
    message = "a value of type `{Self}` cannot be compared with column of type `{T}`",
    label = "not a value for a column of type `{T}`",
    note = "a typed column takes its field's type, a reference to it, `&str` for `String`, \
            `&[u8]` for `Vec<u8>`, and for an `Option<U>` column a `U`; \
            `.column()` gives the untyped column"
)]
pub trait ColumnValue<T> {
    /// The value as the column's type.
    fn into_column_value(self) -> T;
}

impl<T> ColumnValue<T> for T {
    fn into_column_value(self) -> T {
        self
    }
}

impl<T> ColumnValue<Option<T>> for T {
    fn into_column_value(self) -> Option<T> {
        Some(self)
    }
}

/// A borrowed form of `$owned`, accepted for `$owned` and `Option<$owned>` columns.
macro_rules! borrowed_value {
    ($([$($generics:tt)*] $borrowed:ty => $owned:ty, |$v:ident| $convert:expr;)*) => {$(
        impl<$($generics)*> ColumnValue<$owned> for $borrowed {
            fn into_column_value(self) -> $owned {
                let $v = self;
                $convert
            }
        }

        impl<$($generics)*> ColumnValue<Option<$owned>> for $borrowed {
            fn into_column_value(self) -> Option<$owned> {
                let $v = self;
                Some($convert)
            }
        }
    )*};
}

borrowed_value! {
    ['a, T: Clone] &'a T => T, |v| v.clone();
    ['a] &'a str => String, |v| v.to_owned();
    ['a, E: Clone] &'a [E] => Vec<E>, |v| v.to_vec();
    ['a, E: Clone, const N: usize] &'a [E; N] => Vec<E>, |v| v.to_vec();
    [E, const N: usize] [E; N] => Vec<E>, |v| Vec::from(v);
}

/// A field type stored as text: its typed columns have `like` and `ilike`.
///
/// Implemented for `String` and `Option<String>`; implement it for a text newtype to get
/// them there too.
///
/// ```
/// use lifeguard_core::query::TextField;
/// fn text<T: TextField>() {}
/// text::<Option<String>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a text column type: `like`/`ilike` need a `String` or \
               `Option<String>` column",
    note = "implement `lifeguard_core::query::TextField` for a text newtype, or use \
            `.column().like(..)`"
)]
pub trait TextField {}

impl TextField for String {}
impl TextField for Option<String> {}

/// A field type with `+` and `-`: its typed columns have `add` and `sub`.
///
/// Implemented for the integer and floating-point types, `Decimal`, and their `Option`s;
/// implement it for a numeric newtype to get them there too.
///
/// ```
/// use lifeguard_core::query::NumericField;
/// fn numeric<T: NumericField>() {}
/// numeric::<Option<i64>>();
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a numeric column type: `add`/`sub` need an integer, float or \
               `Decimal` column",
    note = "implement `lifeguard_core::query::NumericField` for a numeric newtype, or use \
            `.column().add(..)`"
)]
pub trait NumericField {}

macro_rules! numeric_fields {
    ($($t:ty),*) => {$(
        impl NumericField for $t {}
        impl NumericField for Option<$t> {}
    )*};
}

numeric_fields!(i16, i32, i64, f32, f64, rust_decimal::Decimal);

/// Something that names a column of type `C`: the column itself or a [`TypedColumn`] over
/// it. Builders that take one column by name (`UpdateMany::set`,
/// `OnConflict::update_expr`) take it, so both kinds work there. Lists of columns
/// (`OnConflict::columns`, `do_update`, `cursor_by([..])`) stay lists of the plain column:
/// typed columns of different fields have different types, and `[]` must still infer.
///
/// ```
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub email: String }
/// use lifeguard_core::model::{OnConflict, Returning};
/// let upsert = OnConflict::columns([User::COL_ID.column()])
///     .update_expr(User::COL_EMAIL, lifeguard_core::query::Expr::cust("EXCLUDED.email"));
/// assert_eq!(upsert.to_sql_string(), r#" ON CONFLICT ("id") DO UPDATE SET "email" = EXCLUDED.email"#);
/// let (sql, _) = User::update_many().set(User::COL_EMAIL, User::COL_EMAIL.expr()).build(Returning::Nothing);
/// assert_eq!(sql, r#"UPDATE "users" SET "email" = "users"."email""#);
/// ```
pub trait IntoColumn<C> {
    /// The column.
    fn into_column(self) -> C;
}

impl<C: ModelColumn> IntoColumn<C> for C {
    fn into_column(self) -> C {
        self
    }
}

impl<C: ModelColumn, T> IntoColumn<C> for TypedColumn<C, T> {
    fn into_column(self) -> C {
        self.column
    }
}

/// A column [`UpdateMany::set_value`](crate::model::UpdateMany::set_value) can assign a `V`
/// to: a plain column takes any `ToSql` value (checked by the server), a [`TypedColumn`] a
/// [`ColumnValue`] of its type (checked here).
///
/// ```
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub name: Option<String> }
/// use lifeguard_core::model::Returning;
///
/// let (sql, _) = User::update_many()
///     .set_value(User::COL_NAME, "anonymous") // typed: `&str` for `Option<String>`
///     .set_value(UserColumn::Id, 7_i64) // untyped
///     .build(Returning::Nothing);
/// assert_eq!(sql, r#"UPDATE "users" SET "name" = $1, "id" = $2"#);
/// ```
///
/// ```compile_fail,E0277
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub name: Option<String> }
/// User::update_many().set_value(User::COL_NAME, 5);
/// ```
pub trait AssignValue<C, V> {
    /// The column and the value as a bound parameter.
    fn assign(self, value: V) -> (C, Expr);
}

impl<C: ModelColumn, V: ToSql + Sync + Send + 'static> AssignValue<C, V> for C {
    fn assign(self, value: V) -> (C, Expr) {
        (self, Expr::val(value))
    }
}

impl<C, T, V> AssignValue<C, V> for TypedColumn<C, T>
where
    C: ModelColumn,
    T: ToSql + Sync + Send + 'static,
    V: ColumnValue<T>,
{
    fn assign(self, value: V) -> (C, Expr) {
        (self.column, Expr::val(value.into_column_value()))
    }
}
