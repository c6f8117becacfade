//! SQL texts built once per shape and reused: the hot paths of records and loaders
//! format no SQL, and the stable text always hits the connection's statement cache.

use std::any::TypeId;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use crate::rt::lock;

/// What a write statement sends back: the written rows (`RETURNING` every column) or
/// nothing but the count of rows it changed.
///
/// ```
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "users")]
/// # pub struct User { #[lifeguard(primary_key)] pub id: i64, pub visits: i32 }
/// use lifeguard_core::model::Returning;
/// use lifeguard_core::query::ColumnExpr;
///
/// let bump = User::update_many().set(UserColumn::Visits, UserColumn::Visits.add(1));
/// assert_eq!(
///     bump.build(Returning::Nothing).0,
///     r#"UPDATE "users" SET "visits" = "visits" + $1"#
/// );
/// assert_eq!(
///     bump.build(Returning::All).0,
///     r#"UPDATE "users" SET "visits" = "visits" + $1 RETURNING "id", "visits""#
/// );
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Returning {
    /// `RETURNING` every column of the model, in `COLUMNS` order.
    All,
    /// No `RETURNING` clause: the server sends no row back.
    Nothing,
}

/// How a loader orders the related rows it fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Order {
    /// By the children's primary key, so the first child of a parent is always the same.
    ByChildKey,
    /// As the server sends them.
    AsSent,
}

/// What a statement does.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Insert,
    /// An update by primary key.
    Update(Returning),
    /// A multi-row insert.
    InsertMany {
        rows: usize,
        returning: Returning,
    },
    /// The loader of the model's rows related to the `parent` type, unrefined.
    Load {
        parent: TypeId,
        order: Order,
    },
    /// `find()` as it comes: every row (that is not soft-deleted).
    FindAll,
    /// The cache's read by primary key, with the row version.
    #[cfg(feature = "cache")]
    CacheSelect,
}

/// Model, kind and set-column mask (0 where no mask applies).
pub(crate) type ShapeKey = (TypeId, Kind, u128);

/// Statements by shape. Bounded by the shapes a program uses; each text is leaked once so
/// lookups hand out `&'static str` without copying.
fn shapes() -> &'static Mutex<HashMap<ShapeKey, &'static str>> {
    static SHAPES: OnceLock<Mutex<HashMap<ShapeKey, &'static str>>> = OnceLock::new();
    SHAPES.get_or_init(|| Mutex::new(HashMap::new()))
}

/// The SQL cached for `key`, if any.
pub(crate) fn cached(key: ShapeKey) -> Option<&'static str> {
    lock(shapes()).get(&key).copied()
}

/// Caches `sql` for `key`.
pub(crate) fn remember(key: ShapeKey, sql: String) -> &'static str {
    let sql: &'static str = Box::leak(sql.into_boxed_str());
    lock(shapes()).insert(key, sql);
    sql
}

/// The SQL for `key`, built by `build` the first time (and every time when the shape
/// cannot be cached: `key` is `None`).
pub(crate) fn statement(
    key: Option<ShapeKey>,
    build: impl FnOnce() -> String,
) -> Cow<'static, str> {
    let Some(key) = key else {
        return build().into();
    };
    match cached(key) {
        Some(sql) => sql.into(),
        None => remember(key, build()).into(),
    }
}
