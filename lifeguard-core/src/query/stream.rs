//! Streaming a query through a server-side cursor, so memory stays bounded by one batch
//! whatever the result's size.
//!
//! A cursor lives in a transaction and needs the session to itself, so the entry point takes
//! an [`ExclusiveSession`]: a `&mut Connection`, a pool [`Lease`], or a `&Transaction` the
//! caller already runs. A shared, pipelined connection cannot be passed by mistake.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};

use super::select::{as_params, Select};
use crate::error::Result;
use crate::executor::Executor;
use crate::model::LifeModel;
use crate::pg::{Connection, Row, Statement, Transaction, TransactionBuilder, TransactionStatus};
use crate::pool::Lease;

/// A session held exclusively: what cursors and `COPY` need.
///
/// Made from a `&mut Connection` (the borrow checker proves nobody pipelines on it), a pool
/// [`Lease`], or a `&Transaction` (work then runs inside the caller's transaction). Pass any of
/// them where an `impl Into<ExclusiveSession>` is asked for.
///
/// ```no_run
/// # use lifeguard_core::{LifeModel, model::LifeModel as _};
/// # #[derive(Debug, Clone, LifeModel)]
/// # #[lifeguard(table_name = "events")]
/// # pub struct Event { #[lifeguard(primary_key)] pub id: i64 }
/// # fn demo(pool: &lifeguard_core::pool::Pool) -> lifeguard_core::Result<()> {
/// let lease = pool.lease_primary()?;
/// let tx = lease.begin()?;
/// for event in Event::find().stream(&tx, 1_000)? {
///     let _event = event?;
/// }
/// tx.commit()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ExclusiveSession<'a> {
    conn: &'a Connection,
    /// Borrowed from a caller's transaction: never begin or end one.
    in_transaction: bool,
}

impl<'a> ExclusiveSession<'a> {
    /// The connection underneath.
    pub fn connection(&self) -> &'a Connection {
        self.conn
    }

    /// Whether work runs inside a transaction the caller owns (or the session is already
    /// in one), so nothing may begin or end a transaction on it.
    pub fn in_transaction(&self) -> bool {
        self.in_transaction || self.conn.transaction_status() != TransactionStatus::Idle
    }
}

impl<'a> From<&'a mut Connection> for ExclusiveSession<'a> {
    fn from(conn: &'a mut Connection) -> Self {
        ExclusiveSession {
            conn,
            in_transaction: false,
        }
    }
}

impl<'a> From<&'a Lease> for ExclusiveSession<'a> {
    fn from(lease: &'a Lease) -> Self {
        ExclusiveSession {
            conn: lease.connection(),
            in_transaction: false,
        }
    }
}

impl<'a, 'b> From<&'a Transaction<'b>> for ExclusiveSession<'a> {
    fn from(tx: &'a Transaction<'b>) -> Self {
        ExclusiveSession {
            conn: tx.connection(),
            in_transaction: true,
        }
    }
}

impl<'a, 'b> From<&'a mut Transaction<'b>> for ExclusiveSession<'a> {
    fn from(tx: &'a mut Transaction<'b>) -> Self {
        ExclusiveSession::from(&*tx)
    }
}

/// Cursor names are unique per process, so several streams may share one transaction.
fn next_cursor_name() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    format!("lifeguard_cur_{}", NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Rows of a query read batch by batch from a server-side cursor; see [`Select::stream`].
///
/// Each `FETCH` brings at most one batch into memory, and each row is dropped once the
/// iterator hands it out decoded. The cursor is closed (and the stream's own transaction
/// committed) as soon as the last batch arrives, or when the stream is dropped early. The
/// first error ends the stream.
pub struct ModelStream<'a, M> {
    conn: &'a Connection,
    /// The read-only transaction the stream began, when it began one.
    tx: Option<Transaction<'a>>,
    cursor: String,
    fetch: Option<Statement>,
    batch_size: usize,
    rows: std::vec::IntoIter<Row>,
    /// No more `FETCH`es: the cursor is exhausted or the stream failed.
    exhausted: bool,
    /// The cursor is closed and the stream's transaction ended.
    closed: bool,
    _model: PhantomData<fn() -> M>,
}

impl<M> std::fmt::Debug for ModelStream<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ModelStream")
            .field("cursor", &self.cursor)
            .field("batch_size", &self.batch_size)
            .field("buffered", &self.rows.len())
            .field("exhausted", &self.exhausted)
            .finish()
    }
}

impl<M: LifeModel> Select<M> {
    /// Streams the rows through a server-side cursor, `batch_size` rows per round trip,
    /// decoding them one at a time: memory stays at one batch whatever the result's size.
    ///
    /// On a `&mut Connection` or a [`Lease`] the stream runs in a `READ ONLY` transaction of
    /// its own, committed when the rows run out or the stream is dropped. On a
    /// `&Transaction` it runs inside the caller's transaction and only closes its cursor.
    /// The query is `DECLARE lifeguard_cur_N NO SCROLL CURSOR FOR <query>`, then
    /// `FETCH batch_size FROM lifeguard_cur_N` until a short batch. A `batch_size` of 0 is
    /// taken as 1.
    ///
    /// ```no_run
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "events")]
    /// # pub struct Event { #[lifeguard(primary_key)] pub id: i64, pub kind: String }
    /// use lifeguard_core::query::ColumnExpr;
    ///
    /// # fn demo(conn: &mut lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
    /// let mut clicks = 0u64;
    /// for event in Event::find().filter(EventColumn::Kind.eq("click")).stream(conn, 5_000)? {
    ///     let _event = event?;
    ///     clicks += 1;
    /// }
    /// # Ok(()) }
    /// ```
    pub fn stream<'a>(
        &self,
        session: impl Into<ExclusiveSession<'a>>,
        batch_size: usize,
    ) -> Result<ModelStream<'a, M>> {
        let session = session.into();
        let conn = session.conn;
        let tx = if session.in_transaction() {
            None
        } else {
            Some(
                TransactionBuilder::exclusive(conn)
                    .read_only(true)
                    .begin()?,
            )
        };
        let cursor = next_cursor_name();
        let (sql, params) = self.build();
        let declare = format!("DECLARE {cursor} NO SCROLL CURSOR FOR {sql}");
        let declared = conn
            .prepare(&declare)
            .and_then(|stmt| conn.query_statement(&stmt, &as_params(&params)));
        if let Err(e) = declared {
            if let Some(tx) = tx {
                // Awaited, so the session is idle again when the error reaches the caller.
                let _ = tx.rollback();
            }
            return Err(e);
        }
        let mut stream = ModelStream {
            conn,
            tx,
            cursor,
            fetch: None,
            batch_size: batch_size.max(1),
            rows: Vec::new().into_iter(),
            exhausted: false,
            closed: false,
            _model: PhantomData,
        };
        let fetch_sql = format!("FETCH {} FROM {}", stream.batch_size, stream.cursor);
        match conn.prepare(&fetch_sql) {
            Ok(stmt) => stream.fetch = Some(stmt),
            Err(e) => {
                stream.exhausted = true;
                let _ = stream.close_cursor();
                return Err(e);
            }
        }
        Ok(stream)
    }
}

impl<M> ModelStream<'_, M> {
    /// Reads the next batch into the buffer.
    fn fetch_batch(&mut self) -> Result<()> {
        let Some(fetch) = &self.fetch else {
            self.exhausted = true;
            return Ok(());
        };
        let rows = self.conn.query_statement(fetch, &[])?;
        if rows.len() < self.batch_size {
            self.exhausted = true;
        }
        self.rows = rows.into_iter();
        Ok(())
    }

    /// Closes the cursor and ends the stream's own transaction; idempotent.
    fn close_cursor(&mut self) -> Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        self.fetch = None;
        match self.tx.take() {
            // Ending the transaction closes its cursors.
            Some(tx) => tx.commit(),
            None => self.conn.batch_execute(&format!("CLOSE {}", self.cursor)),
        }
    }

    /// Stops reading, closes the cursor and ends the stream's transaction, reporting a
    /// failure to do so (dropping the stream does the same silently). Rows already buffered
    /// are discarded.
    ///
    /// ```no_run
    /// # use lifeguard_core::{LifeModel, model::LifeModel as _};
    /// # #[derive(Debug, Clone, LifeModel)]
    /// # #[lifeguard(table_name = "events")]
    /// # pub struct Event { #[lifeguard(primary_key)] pub id: i64 }
    /// # fn demo(conn: &mut lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
    /// let mut events = Event::find().stream(conn, 100)?;
    /// let first_ten: Vec<Event> = events.by_ref().take(10).collect::<Result<_, _>>()?;
    /// events.close()?;
    /// # Ok(()) }
    /// ```
    pub fn close(mut self) -> Result<()> {
        self.exhausted = true;
        self.rows = Vec::new().into_iter();
        self.close_cursor()
    }

    /// The cursor's name (`lifeguard_cur_N`).
    pub fn cursor_name(&self) -> &str {
        &self.cursor
    }
}

impl<M: LifeModel> Iterator for ModelStream<'_, M> {
    type Item = Result<M>;

    fn next(&mut self) -> Option<Result<M>> {
        loop {
            if let Some(row) = self.rows.next() {
                return Some(M::from_row(&row));
            }
            if self.exhausted {
                return match self.close_cursor() {
                    Ok(()) => None,
                    Err(e) => Some(Err(e)),
                };
            }
            if let Err(e) = self.fetch_batch() {
                self.exhausted = true;
                // The error is the one worth reporting; the cleanup is best effort.
                let _ = self.close_cursor();
                return Some(Err(e));
            }
            if self.exhausted && !self.rows.as_slice().is_empty() {
                // The last batch: free the session now rather than after the caller
                // drains the buffer.
                if let Err(e) = self.close_cursor() {
                    self.rows = Vec::new().into_iter();
                    return Some(Err(e));
                }
            }
        }
    }
}

impl<M> Drop for ModelStream<'_, M> {
    fn drop(&mut self) {
        if let Err(e) = self.close_cursor() {
            tracing::debug!(target: "lifeguard::query", "closing {}: {e}", self.cursor);
        }
    }
}
