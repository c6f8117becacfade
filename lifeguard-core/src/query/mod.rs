//! The query builder: expressions with bound parameters and `SELECT` over models.
//!
//! Values are bound as `ToSql` parameters, never spliced into SQL text, and any `ToSql`
//! type works (enums, newtypes, arrays, JSON), so the builder needs no value conversion
//! layer. Lists use `= ANY($n)` with one array parameter, so a filter prepares one
//! statement whatever the list's length.

mod expr;
mod paginate;
mod select;
mod stream;

pub use expr::{quote, quote_path, ColumnExpr, Condition, Expr, Value};
pub use paginate::{Cursor, CursorColumns, CursorValues, ItemsAndPages, Paginator};
pub(crate) use select::require;
pub use select::{as_params, IntoOrderExpr, JoinType, Order, Projected, Select};
pub use stream::{ExclusiveSession, ModelStream};
