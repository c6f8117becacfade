//! Rows of a result: typed access by column index or name.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::DataRowBody;
use postgres_types::{FromSql, Type};

use super::statement::Column;
use crate::error::{Error, Result};

/// One row of a binary-format result.
///
/// ```no_run
/// # fn demo(conn: &lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
/// use lifeguard_core::Executor;
/// let row = conn.query_one("SELECT 42::int4 AS answer, 'hi'::text AS word", &[])?;
/// let answer: i32 = row.get(0);
/// let word: String = row.try_get("word")?;
/// # Ok(()) }
/// ```
pub struct Row {
    columns: Arc<[Column]>,
    body: Bytes,
    ranges: Vec<Option<Range<usize>>>,
}

impl fmt::Debug for Row {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("columns", &self.columns)
            .finish()
    }
}

impl Row {
    pub(crate) fn new(columns: Arc<[Column]>, body: DataRowBody) -> Result<Row> {
        let ranges: Vec<_> = body
            .ranges()
            .collect()
            .map_err(|e| Error::protocol(format!("malformed data row: {e}")))?;
        if ranges.len() != columns.len() {
            return Err(Error::protocol(format!(
                "data row has {} values for {} columns",
                ranges.len(),
                columns.len()
            )));
        }
        Ok(Row {
            columns,
            body: body.buffer_bytes().clone(),
            ranges,
        })
    }

    /// The result's columns.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The number of values in the row.
    pub fn len(&self) -> usize {
        self.columns.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty()
    }

    /// The value of a column, panicking when the column is missing or the types differ.
    ///
    /// Use [`Row::try_get`] where a mismatch is possible; `get` is for code whose SQL and types
    /// were written together.
    #[track_caller]
    pub fn get<'a, I: RowIndex + fmt::Display, T: FromSql<'a>>(&'a self, idx: I) -> T {
        match self.try_get(idx) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        }
    }

    /// The value of a column, or a `Decode` error naming the column, the Rust type and the
    /// PostgreSQL type.
    pub fn try_get<'a, I: RowIndex + fmt::Display, T: FromSql<'a>>(&'a self, idx: I) -> Result<T> {
        let i = idx.index(&self.columns).ok_or_else(|| Error::Decode {
            column: idx.to_string(),
            rust_type: std::any::type_name::<T>(),
            pg_type: "-".into(),
            reason: "no such column".into(),
        })?;
        let column = &self.columns[i];
        let decode_error = |reason: String| Error::Decode {
            column: column_label(column, i),
            rust_type: std::any::type_name::<T>(),
            pg_type: column.type_().to_string(),
            reason,
        };
        if !T::accepts(column.type_()) {
            return Err(decode_error("the types are not compatible".into()));
        }
        let raw = self.ranges[i].clone().map(|r| &self.body[r]);
        T::from_sql_nullable(column.type_(), raw).map_err(|e| decode_error(e.to_string()))
    }

    /// The raw binary value of a column (`None` for NULL).
    pub fn raw(&self, idx: usize) -> Option<&[u8]> {
        self.ranges.get(idx)?.clone().map(|r| &self.body[r])
    }

    /// The PostgreSQL type of a column.
    pub fn type_of(&self, idx: usize) -> Option<&Type> {
        self.columns.get(idx).map(Column::type_)
    }
}

fn column_label(column: &Column, i: usize) -> String {
    if column.name().is_empty() || column.name() == "?column?" {
        format!("#{i}")
    } else {
        column.name().to_owned()
    }
}

/// A way to name a column: its 0-based index or its name.
pub trait RowIndex: sealed::Sealed {
    /// The column's position, if it exists.
    fn index(&self, columns: &[Column]) -> Option<usize>;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for usize {}
    impl Sealed for str {}
    impl<T: ?Sized + Sealed> Sealed for &T {}
}

impl RowIndex for usize {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl RowIndex for str {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|c| c.name() == self).or_else(|| {
            columns
                .iter()
                .position(|c| c.name().eq_ignore_ascii_case(self))
        })
    }
}

impl<T: ?Sized + RowIndex> RowIndex for &T {
    fn index(&self, columns: &[Column]) -> Option<usize> {
        T::index(*self, columns)
    }
}

/// A row of a simple-protocol query: every value as text.
#[derive(Debug, Clone)]
pub struct SimpleRow {
    columns: Arc<[String]>,
    values: Vec<Option<String>>,
}

impl SimpleRow {
    pub(crate) fn new(columns: Arc<[String]>, body: DataRowBody) -> Result<SimpleRow> {
        let buf = body.buffer();
        let values: Vec<Option<String>> = body
            .ranges()
            .map(|r| Ok(r.map(|r| String::from_utf8_lossy(&buf[r]).into_owned())))
            .collect()
            .map_err(|e| Error::protocol(format!("malformed data row: {e}")))?;
        if values.len() != columns.len() {
            return Err(Error::protocol(
                "simple data row does not match its columns",
            ));
        }
        Ok(SimpleRow { columns, values })
    }

    /// The column names.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The text of a value by index or name (`None` for NULL or a missing column).
    pub fn get<I: RowIndexText>(&self, idx: I) -> Option<&str> {
        let i = idx.position(&self.columns)?;
        self.values.get(i)?.as_deref()
    }
}

/// A way to name a column of a [`SimpleRow`].
pub trait RowIndexText {
    /// The column's position, if it exists.
    fn position(&self, columns: &[String]) -> Option<usize>;
}

impl RowIndexText for usize {
    fn position(&self, columns: &[String]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl RowIndexText for &str {
    fn position(&self, columns: &[String]) -> Option<usize> {
        columns.iter().position(|c| c == self)
    }
}

/// One result of a simple-protocol query.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum SimpleQueryMessage {
    /// A row.
    Row(SimpleRow),
    /// A statement finished, affecting (or returning) this many rows.
    CommandComplete(u64),
}
