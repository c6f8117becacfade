//! Rows of a result: typed access by column index or name.

use std::fmt;
use std::sync::Arc;

use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::DataRowBody;
use postgres_types::{FromSql, Type};
use smallvec::SmallVec;

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
    /// The DataRow message itself: the row shares the read buffer, with no copy and no
    /// reference count of its own to bump.
    body: DataRowBody,
    /// Where each value lies in `body`; inline for rows of up to 8 columns, so a row costs
    /// no allocation of its own.
    slots: SmallVec<[Slot; 8]>,
}

/// One value's place in a row's message: `len == Slot::NULL` for SQL NULL.
#[derive(Clone, Copy)]
struct Slot {
    start: u32,
    len: u32,
}

impl Slot {
    const NULL: u32 = u32::MAX;
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
        let malformed = |e: String| Error::protocol(format!("malformed data row: {e}"));
        let mut slots = SmallVec::with_capacity(columns.len());
        let mut ranges = body.ranges();
        while let Some(range) = ranges.next().map_err(|e| malformed(e.to_string()))? {
            // Messages are capped far below 4 GiB (`frame::MAX_MESSAGE_LEN`).
            let narrow = |n: usize| u32::try_from(n).map_err(|e| malformed(e.to_string()));
            slots.push(match range {
                Some(r) => Slot {
                    start: narrow(r.start)?,
                    len: narrow(r.len())?,
                },
                None => Slot {
                    start: 0,
                    len: Slot::NULL,
                },
            });
        }
        if slots.len() != columns.len() {
            return Err(Error::protocol(format!(
                "data row has {} values for {} columns",
                slots.len(),
                columns.len()
            )));
        }
        Ok(Row {
            columns,
            body,
            slots,
        })
    }

    #[cfg(feature = "cache")]
    /// Writes the values of columns `columns` in a `DataRow` body's layout (a count, then
    /// each value as a length, -1 for NULL, and its bytes): the cache's payload format.
    pub(crate) fn write_values(&self, columns: std::ops::Range<usize>, out: &mut Vec<u8>) {
        let count = u16::try_from(columns.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&count.to_be_bytes());
        for i in columns.take(usize::from(count)) {
            match self.raw(i) {
                Some(value) => {
                    // A value is at most 1 GiB in PostgreSQL, so its length fits.
                    let len = i32::try_from(value.len()).unwrap_or(i32::MAX);
                    out.extend_from_slice(&len.to_be_bytes());
                    out.extend_from_slice(value);
                }
                None => out.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    }

    #[cfg(feature = "cache")]
    /// A row of `columns` from values written by [`Row::write_values`].
    pub(crate) fn from_values(columns: Arc<[Column]>, values: &[u8]) -> Result<Row> {
        let len = i32::try_from(values.len() + 4)
            .map_err(|_| Error::protocol("a cached row is longer than 2 GiB"))?;
        let mut message = bytes::BytesMut::with_capacity(values.len() + 5);
        message.extend_from_slice(b"D");
        message.extend_from_slice(&len.to_be_bytes());
        message.extend_from_slice(values);
        match postgres_protocol::message::backend::Message::parse(&mut message) {
            Ok(Some(postgres_protocol::message::backend::Message::DataRow(body))) => {
                Row::new(columns, body)
            }
            _ => Err(Error::protocol("a cached row is not in the payload format")),
        }
    }

    #[cfg(feature = "cache")]
    /// The result's columns, shared.
    pub(crate) fn columns_shared(&self) -> Arc<[Column]> {
        self.columns.clone()
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
        let i = idx
            .index(&self.columns)
            .ok_or_else(|| Error::ColumnNotFound {
                column: idx.to_string(),
            })?;
        let column = &self.columns[i];
        let decode_error = |source: Option<crate::error::Cause>| Error::Decode {
            column: column_label(column, i),
            rust_type: std::any::type_name::<T>(),
            pg_type: column.type_().to_string(),
            source,
        };
        if !T::accepts(column.type_()) {
            return Err(decode_error(None));
        }
        let raw = self.raw(i);
        if let Some(value) = raw {
            if super::types::needs_check(column.type_()) {
                super::types::check_claimed_sizes(column.type_(), value).map_err(|e| {
                    decode_error(Some(std::sync::Arc::from(Box::<
                        dyn std::error::Error + Send + Sync,
                    >::from(e))))
                })?;
            }
        }
        T::from_sql_nullable(column.type_(), raw).map_err(|e| decode_error(Some(e.into())))
    }

    /// The raw binary value of a column (`None` for NULL).
    pub fn raw(&self, idx: usize) -> Option<&[u8]> {
        let slot = self.slots.get(idx)?;
        if slot.len == Slot::NULL {
            return None;
        }
        let start = slot.start as usize;
        self.body.buffer().get(start..start + slot.len as usize)
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
