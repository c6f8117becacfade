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

/// How many row counts of one model's multi-row insert (per `RETURNING` and column set)
/// keep their text. Every other kind is bounded by the program's types; row counts are
/// not (a batch of any length is a new text), and each text is leaked, so past this many
/// the rest are built per call.
const BULK_ROW_COUNTS: usize = 32;

#[derive(Default)]
struct Shapes {
    texts: HashMap<ShapeKey, &'static str>,
    /// Cached multi-row insert texts per model, `RETURNING` and column set.
    bulk: HashMap<(TypeId, Returning, u128), usize>,
}

/// Statements by shape; each text is leaked once so lookups hand out `&'static str`
/// without copying.
fn shapes() -> &'static Mutex<Shapes> {
    static SHAPES: OnceLock<Mutex<Shapes>> = OnceLock::new();
    SHAPES.get_or_init(|| Mutex::new(Shapes::default()))
}

/// The SQL cached for `key`, if any.
pub(crate) fn cached(key: ShapeKey) -> Option<&'static str> {
    lock(shapes()).texts.get(&key).copied()
}

/// Caches `sql` for `key` (a kind whose keys a program can only have finitely many of).
pub(crate) fn remember(key: ShapeKey, sql: String) -> &'static str {
    let sql: &'static str = Box::leak(sql.into_boxed_str());
    lock(shapes()).texts.insert(key, sql);
    sql
}

/// The SQL for `key`, built by `build` the first time (and every time when the shape
/// cannot be cached: `key` is `None`, or its model has used up its multi-row insert
/// shapes).
pub(crate) fn statement(
    key: Option<ShapeKey>,
    build: impl FnOnce() -> String,
) -> Cow<'static, str> {
    let Some(key) = key else {
        return build().into();
    };
    if let Some(sql) = cached(key) {
        return sql.into();
    }
    let sql = build();
    let mut shapes = lock(shapes());
    if let (model, Kind::InsertMany { returning, .. }, mask) = key {
        let kept = shapes.bulk.entry((model, returning, mask)).or_default();
        if *kept >= BULK_ROW_COUNTS {
            return sql.into();
        }
        *kept += 1;
    }
    let sql: &'static str = Box::leak(sql.into_boxed_str());
    // Another caller may have built the same text meanwhile: keep the first.
    Cow::Borrowed(*shapes.texts.entry(key).or_insert(sql))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_insert_texts_are_kept_for_a_bounded_number_of_row_counts() {
        struct Model;
        let key = |rows| {
            let kind = Kind::InsertMany {
                rows,
                returning: Returning::Nothing,
            };
            (TypeId::of::<Model>(), kind, 0b11)
        };
        for rows in 1..=3 * BULK_ROW_COUNTS {
            let text = statement(Some(key(rows)), || format!("INSERT {rows}"));
            assert_eq!(text, format!("INSERT {rows}"));
        }
        let kept = (1..=3 * BULK_ROW_COUNTS)
            .filter(|&rows| cached(key(rows)).is_some())
            .count();
        assert_eq!(kept, BULK_ROW_COUNTS);
        // The kept ones are still served from the cache.
        assert!(matches!(
            statement(Some(key(1)), String::new),
            Cow::Borrowed("INSERT 1")
        ));
    }
}
