//! The state of one field in a record.

use crate::pg::ToSql;
use crate::query::Expr;

/// What a record says about one field (SeaORM's `ActiveValue`).
///
/// ```
/// use lifeguard_core::model::ActiveValue::{self, NotSet, Set};
/// use lifeguard_core::query::Expr;
///
/// let name: ActiveValue<Option<String>> = ActiveValue::set_null();
/// assert!(name.is_set());
/// let visits: ActiveValue<i64> = ActiveValue::Expr(Expr::cust("visits + 1"));
/// assert!(visits.is_set());
/// assert!(!ActiveValue::<i32>::NotSet.is_set());
/// ```
#[derive(Debug, Clone, Default)]
pub enum ActiveValue<T> {
    /// Not part of the change: an insert leaves the column to its default, an update
    /// leaves it alone.
    #[default]
    NotSet,
    /// A new value to write.
    Set(T),
    /// The value as loaded; not written, but identifies the row when it is a key.
    Unchanged(T),
    /// A SQL expression to write, e.g. `Expr::cust("count + 1")`.
    Expr(Expr),
}

pub use ActiveValue::{NotSet, Set, Unchanged};

impl<T> ActiveValue<T> {
    /// Whether the field will be written (a value or an expression).
    pub fn is_set(&self) -> bool {
        matches!(self, ActiveValue::Set(_) | ActiveValue::Expr(_))
    }

    /// Whether the field is `NotSet`.
    pub fn is_not_set(&self) -> bool {
        matches!(self, ActiveValue::NotSet)
    }

    /// The value, set or unchanged.
    pub fn as_ref(&self) -> Option<&T> {
        match self {
            ActiveValue::Set(v) | ActiveValue::Unchanged(v) => Some(v),
            _ => None,
        }
    }

    /// The value, set or unchanged.
    pub fn into_value(self) -> Option<T> {
        match self {
            ActiveValue::Set(v) | ActiveValue::Unchanged(v) => Some(v),
            _ => None,
        }
    }
}

impl<T> ActiveValue<Option<T>> {
    /// Writes NULL.
    pub fn set_null() -> Self {
        ActiveValue::Set(None)
    }
}

impl<T: ToSql + Sync> ActiveValue<T> {
    /// The field as the CRUD code sees it: borrowed value or expression.
    pub fn field(&self) -> Field<'_> {
        match self {
            ActiveValue::NotSet => Field::NotSet,
            ActiveValue::Set(v) => Field::Set(v),
            ActiveValue::Unchanged(v) => Field::Unchanged(v),
            ActiveValue::Expr(e) => Field::Expr(e),
        }
    }
}

/// A borrowed view of one record field, independent of its Rust type.
#[derive(Clone, Copy)]
pub enum Field<'a> {
    /// Leave the column alone.
    NotSet,
    /// Write this value.
    Set(&'a (dyn ToSql + Sync)),
    /// Loaded value: not written, identifies the row when it is a key.
    Unchanged(&'a (dyn ToSql + Sync)),
    /// Write this expression.
    Expr(&'a Expr),
}
