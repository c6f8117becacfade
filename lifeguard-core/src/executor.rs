//! The one abstraction SQL runs on: a connection, a transaction, a timed handle, a lease,
//! the pool and the per-request [`Db`](crate::pool::Db) handle all implement [`Executor`],
//! so code written against it runs unchanged on any of them.

use crate::error::{Error, Result};
use crate::model::FromRow;
use crate::pg::{Params, Row, SimpleQueryMessage};

/// Runs SQL. Statements are prepared once per connection and cached by their text, so
/// passing the same SQL string again costs no parse.
///
/// ```no_run
/// use lifeguard_core::{Executor, Result};
///
/// fn count_users(db: &impl Executor) -> Result<i64> {
///     db.query_one("SELECT count(*) FROM users WHERE active = $1", &[&true])?
///         .try_get(0)
/// }
/// ```
pub trait Executor {
    /// Runs a statement and returns its rows.
    fn query(&self, sql: &str, params: Params<'_>) -> Result<Vec<Row>>;

    /// Runs a statement and returns the number of rows it affected.
    fn execute(&self, sql: &str, params: Params<'_>) -> Result<u64>;

    /// Runs `;`-separated statements with the simple protocol; values come back as text.
    fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>>;

    /// Runs `sql` once per parameter set and returns each run's rows, in order, for the
    /// cost of one round trip: every run is sent before the first reply is read.
    ///
    /// The runs share one implicit transaction (or the caller's transaction): the first
    /// error fails the whole batch, and outside a transaction none of its writes commit.
    ///
    /// ```no_run
    /// use lifeguard_core::{Executor, Result};
    ///
    /// fn names(db: &impl Executor, ids: &[i32]) -> Result<Vec<String>> {
    ///     let params: Vec<[&(dyn lifeguard_core::pg::ToSql + Sync); 1]> =
    ///         ids.iter().map(|id| [id as _]).collect();
    ///     let batch: Vec<_> = params.iter().map(|p| &p[..]).collect();
    ///     db.query_pipelined("SELECT name FROM users WHERE id = $1", &batch)?
    ///         .iter()
    ///         .map(|rows| rows[0].try_get(0))
    ///         .collect()
    /// }
    /// ```
    fn query_pipelined(&self, sql: &str, batch: &[Params<'_>]) -> Result<Vec<Vec<Row>>>;

    /// Runs a statement that must return exactly one row: none is `NotFound`, more is
    /// `TooManyRows`.
    fn query_one(&self, sql: &str, params: Params<'_>) -> Result<Row> {
        let mut rows = self.query(sql, params)?;
        match rows.len() {
            0 => Err(Error::NotFound),
            1 => Ok(rows.remove(0)),
            n => Err(Error::TooManyRows(n)),
        }
    }

    /// Runs a statement that returns at most one row.
    fn query_opt(&self, sql: &str, params: Params<'_>) -> Result<Option<Row>> {
        let mut rows = self.query(sql, params)?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(Some(rows.remove(0))),
            n => Err(Error::TooManyRows(n)),
        }
    }

    /// Runs `;`-separated statements and discards their results.
    fn batch_execute(&self, sql: &str) -> Result<()> {
        self.simple_query(sql).map(drop)
    }

    /// The cache a read by primary key may use here, and under what it may; `None` (the
    /// default) reads PostgreSQL. The pool and its per-request handles answer when a cache
    /// is attached ([`Pool::with_cache`](crate::pool::Pool::with_cache)); transactions never
    /// do, so their reads see their own writes.
    #[cfg(feature = "cache")]
    #[doc(hidden)]
    fn cache_scope(&self) -> Option<crate::cache::CacheScope> {
        None
    }

    /// Drops the cached rows an ORM write just changed: at once outside a transaction, at
    /// its end inside one. The default does nothing (no cache).
    #[cfg(feature = "cache")]
    #[doc(hidden)]
    fn cache_invalidate(&self, _written: crate::cache::Written) {}
}

/// Raw SQL mapped into structs: the escape hatch next to the query builder. Implemented for
/// every [`Executor`]; parameters are bound, never interpolated.
///
/// ```no_run
/// use lifeguard_core::{ExecutorExt, FromRow};
///
/// #[derive(FromRow)]
/// struct Total { author: String, books: i64 }
///
/// # fn demo(db: &impl lifeguard_core::Executor) -> lifeguard_core::Result<()> {
/// let totals: Vec<Total> = db.query_as(
///     "SELECT a.name AS author, count(*) AS books FROM author a JOIN book b ON b.author_id = a.id \
///      WHERE a.country = $1 GROUP BY a.name",
///     &[&"NZ"],
/// )?;
/// # Ok(()) }
/// ```
pub trait ExecutorExt: Executor {
    /// Every row, decoded into `T`.
    fn query_as<T: FromRow>(&self, sql: &str, params: Params<'_>) -> Result<Vec<T>> {
        self.query(sql, params)?.iter().map(T::from_row).collect()
    }

    /// Exactly one row, decoded (`NotFound` for none, `TooManyRows` for more).
    fn query_one_as<T: FromRow>(&self, sql: &str, params: Params<'_>) -> Result<T> {
        T::from_row(&self.query_one(sql, params)?)
    }

    /// At most one row, decoded.
    fn query_opt_as<T: FromRow>(&self, sql: &str, params: Params<'_>) -> Result<Option<T>> {
        self.query_opt(sql, params)?
            .as_ref()
            .map(T::from_row)
            .transpose()
    }
}

impl<E: Executor + ?Sized> ExecutorExt for E {}
