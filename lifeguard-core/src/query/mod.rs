//! The query builder: expressions with bound parameters and `SELECT` over models.
//!
//! Values are bound as `ToSql` parameters, never spliced into SQL text, and any `ToSql`
//! type works (enums, newtypes, arrays, JSON), so the builder needs no value conversion
//! layer. Lists use `= ANY($n)` with one array parameter, so a filter prepares one
//! statement whatever the list's length.
//!
//! Two layers name columns: the untyped [`ColumnExpr`] helpers on a model's column enum
//! (`UserColumn::Email.eq(v)`, any `ToSql` value, checked by the server), and the
//! [`TypedColumn`]s the derive generates (`User::COL_EMAIL.eq(v)`, where a value of the
//! wrong type does not compile). They build the same SQL and mix freely.

mod expr;
mod paginate;
mod select;
mod stream;
mod typed;

pub use expr::{quote, quote_path, ColumnExpr, Condition, Expr, Value};
pub use paginate::{Cursor, CursorColumns, CursorValues, ItemsAndPages, Paginator};
pub(crate) use select::require;
pub use select::{as_params, IntoOrderExpr, JoinType, Order, Projected, Select};
pub use stream::{ExclusiveSession, ModelStream};
pub use typed::{AssignValue, ColumnValue, IntoColumn, NumericField, TextField, TypedColumn};
