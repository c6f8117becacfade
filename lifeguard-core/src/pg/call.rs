//! One call on a connection: encode the request, queue it, read its reply.
//!
//! Every public way to run SQL (connection, transaction, timed handle) is a [`Call`] with a
//! different deadline and exclusivity, so the protocol logic lives here once.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::message::backend::{Message, ReadyForQueryBody};
use postgres_protocol::message::frontend;
use postgres_types::{ToSql, Type};

use super::connection::Connection;
use super::extended::{encode_runs, may_be_stale_description};
use super::pipeline::{Outgoing, Reply, Wait};
use super::row::{Row, SimpleQueryMessage, SimpleRow};
use super::session::{changes_session, refuse_session_features};
use super::statement::{Column, Statement};
use crate::error::{DbError, Error, Result, SqlState};
use crate::rt::lock;

/// Query parameters: any mix of values that encode as PostgreSQL types.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// Sets a statement timeout that ends with the implicit transaction of one pipelined request,
/// so a deadline on a shared connection never touches the requests queued around it.
const LOCAL_TIMEOUT_SQL: &str = "SELECT pg_catalog.set_config('statement_timeout', $1, true)";

/// How long a cancelled statement on an exclusive connection may take to wind down before the
/// connection is given up on.
const CANCEL_GRACE: Duration = Duration::from_secs(5);

/// The settings of one call.
#[derive(Clone, Copy)]
pub(crate) struct Call<'a> {
    pub(crate) conn: &'a Connection,
    /// Absolute deadline, and the timeout it came from (for the error).
    pub(crate) deadline: Option<(Instant, Duration)>,
    /// A transaction or other exclusive use: nobody else's requests share the session.
    pub(crate) exclusive: bool,
    /// A statement to queue right behind each request of this call.
    pub(crate) follow: Option<&'a FollowUp>,
}

/// A statement queued right behind a call's request, on the same connection and in the
/// same flush, whose rows are read later: it costs no round trip of its own. (The pool
/// reads a write's consistency token this way; the token query runs after the write's
/// implicit transaction has committed, since it is a request of its own.)
pub(crate) struct FollowUp {
    sql: &'static str,
    sent: std::sync::Mutex<Option<(Statement, Arc<Reply>)>>,
}

impl FollowUp {
    /// A follow-up of `sql` (no parameters), not yet sent.
    pub(crate) fn new(sql: &'static str) -> FollowUp {
        FollowUp {
            sql,
            sent: std::sync::Mutex::new(None),
        }
    }

    /// Queues the statement on `call`'s connection; a failure only means it was not sent.
    fn send(&self, call: &Call<'_>) {
        match self.queue(call) {
            Ok(sent) => *lock(&self.sent) = Some(sent),
            Err(e) => tracing::debug!(target: "lifeguard::pg", "follow-up not sent: {e}"),
        }
    }

    fn queue(&self, call: &Call<'_>) -> Result<(Statement, Arc<Reply>)> {
        let stmt = call.prepare_cached(self.sql)?;
        let mut buf = BytesMut::new();
        encode_runs(&stmt, &[&[]], &mut buf)?;
        frontend::sync(&mut buf);
        let reply = call.conn.shared().request(Outgoing::Extended(&buf))?;
        Ok((stmt, reply))
    }

    /// The statement's rows (waiting for them), or `None` when it was never sent. `conn` is
    /// the connection the call ran on.
    pub(crate) fn rows(&self, conn: &Connection) -> Option<Result<Vec<Row>>> {
        let (stmt, reply) = lock(&self.sent).take()?;
        let mut rows = Vec::new();
        Some(
            Call::new(conn)
                .collect(&stmt, &reply, 0, |o| rows = o.rows)
                .map(|()| rows),
        )
    }
}

/// What a finished request reported.
struct Outcome {
    rows: Vec<Row>,
    affected: u64,
}

impl<'a> Call<'a> {
    pub(crate) fn new(conn: &'a Connection) -> Call<'a> {
        Call {
            conn,
            deadline: None,
            exclusive: false,
            follow: None,
        }
    }

    pub(crate) fn with_timeout(mut self, timeout: Duration) -> Call<'a> {
        self.deadline = Some((Instant::now() + timeout, timeout));
        self
    }

    /// Prepares `sql`, reusing this connection's cached statement for the same text.
    pub(crate) fn prepare_cached(&self, sql: &str) -> Result<Statement> {
        if let Some(stmt) = lock(&self.conn.statements).get(sql) {
            return Ok(stmt);
        }
        let stmt = self.prepare(sql)?;
        Ok(lock(&self.conn.statements).insert(sql, stmt))
    }

    /// Parses `sql` on the server and learns its parameter and column types: as a named
    /// statement, or in unnamed mode as the unnamed one, whose description is all that is
    /// kept (every run parses it again; see `extended`).
    pub(crate) fn prepare(&self, sql: &str) -> Result<Statement> {
        refuse_copy_from_stdin(sql)?;
        let name = if self.conn.is_unnamed() {
            // Checked once per SQL text: the description is cached, and only described
            // text runs.
            refuse_session_features(sql)?;
            String::new()
        } else {
            self.conn.next_statement_name()
        };
        let mut buf = BytesMut::new();
        frontend::parse(&name, sql, std::iter::empty(), &mut buf).map_err(unsendable_sql)?;
        frontend::describe(b'S', &name, &mut buf).map_err(unsendable_sql)?;
        frontend::sync(&mut buf);
        let reply = self.conn.shared().request(Outgoing::Extended(&buf))?;
        let mut param_oids = Vec::new();
        let mut fields = Vec::new();
        let mut error = None;
        loop {
            match self.next(&reply)? {
                Message::ParameterDescription(body) => {
                    param_oids = body.parameters().collect().map_err(malformed)?;
                }
                Message::RowDescription(body) => {
                    fields = body
                        .fields()
                        .map(|f| Ok((f.name().to_owned(), f.type_oid())))
                        .collect()
                        .map_err(malformed)?;
                }
                Message::ErrorResponse(body) => error = Some(db_error(&body)?),
                Message::ReadyForQuery(body) => {
                    // A parse error inside a transaction aborts it; COMMIT must learn that.
                    self.note_status(&body);
                    break;
                }
                _ => {}
            }
        }
        if let Some(e) = error {
            return Err(e);
        }
        let params = param_oids
            .into_iter()
            .map(|oid| self.resolve_type(oid))
            .collect::<Result<Vec<_>>>()?;
        let columns = fields
            .into_iter()
            .map(|(name, oid)| Ok(Column::new(name, self.resolve_type(oid)?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(Statement::new(
            name,
            sql,
            params,
            columns,
            self.conn.shared(),
        ))
    }

    /// Runs `sql` with `params`; a cached plan the server calls stale is re-prepared once.
    pub(crate) fn query(&self, sql: &str, params: Params<'_>) -> Result<(Vec<Row>, u64)> {
        self.with_fresh_plan(sql, |stmt| self.run_one(stmt, params))
    }

    /// Runs `sql` once per parameter set in one request (one `Sync`), so the whole batch
    /// costs one round trip; see [`crate::Executor::query_pipelined`].
    pub(crate) fn query_pipelined(&self, sql: &str, batch: &[Params<'_>]) -> Result<Vec<Vec<Row>>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let results = self.with_fresh_plan(sql, |stmt| {
            let mut results = Vec::with_capacity(batch.len());
            self.run(stmt, batch, |o| results.push(o.rows))?;
            Ok(results)
        })?;
        if results.len() != batch.len() {
            return Err(Error::protocol(format!(
                "{} results for {} parameter sets",
                results.len(),
                batch.len()
            )));
        }
        Ok(results)
    }

    /// Runs `attempt` on the cached statement for `sql`, once more on a re-prepared one
    /// when the server calls the cached plan stale (outside a transaction: inside one the
    /// error has aborted it, and a retry would only fail again). Nothing of a failed
    /// attempt ran, so the retry starts over. An unnamed statement's description is
    /// stale only if describing the SQL again gives other parameter types; otherwise the
    /// error stands.
    fn with_fresh_plan<T>(
        &self,
        sql: &str,
        attempt: impl Fn(&Statement) -> Result<T>,
    ) -> Result<T> {
        let stmt = self.prepare_cached(sql)?;
        match attempt(&stmt) {
            Err(e) if is_stale(&stmt, &e) => {
                lock(&self.conn.statements).remove(sql);
                if self.exclusive {
                    return Err(e);
                }
                let fresh = self.prepare_cached(sql)?;
                if fresh.is_unnamed() && fresh.params() == stmt.params() {
                    return Err(e);
                }
                attempt(&fresh)
            }
            other => other,
        }
    }

    /// Runs a prepared statement.
    pub(crate) fn query_statement(
        &self,
        stmt: &Statement,
        params: Params<'_>,
    ) -> Result<(Vec<Row>, u64)> {
        if !stmt.belongs_to(self.conn.shared()) {
            return Err(Error::invalid_use(
                "the statement was prepared on another connection",
            ));
        }
        self.run_one(stmt, params)
    }

    fn run_one(&self, stmt: &Statement, params: Params<'_>) -> Result<(Vec<Row>, u64)> {
        let mut out = None;
        self.run(stmt, std::slice::from_ref(&params), |o| out = Some(o))?;
        // `run` hands over one outcome per parameter set once it succeeds.
        out.map(|o| (o.rows, o.affected))
            .ok_or_else(|| Error::protocol("no result for the statement"))
    }

    /// Sends one Bind/Execute per parameter set and a single Sync, then hands each
    /// statement's outcome to `each` in order. A server error fails the whole request.
    fn run(&self, stmt: &Statement, batch: &[Params<'_>], each: impl FnMut(Outcome)) -> Result<()> {
        // Sized for the common case so encoding a wide Bind does not regrow the buffer.
        let per_bind = 64 + stmt.name().len() + batch.first().map_or(0, |p| p.len() * 24);
        let mut buf = BytesMut::with_capacity(per_bind * batch.len());
        let mut skip = 0;
        if !self.exclusive {
            let millis;
            let timeout = match self.deadline {
                Some((_, timeout)) => {
                    millis = timeout.as_millis().max(1).to_string();
                    Some(millis.as_str())
                }
                // Only a pool's unnamed-mode connections have one (see `session`).
                None => self.conn.local_statement_timeout(),
            };
            if let Some(millis) = timeout {
                let setter = self.prepare_cached(LOCAL_TIMEOUT_SQL)?;
                let params: Params<'_> = &[&millis];
                encode_runs(&setter, &[params], &mut buf)?;
                skip = 1;
            }
        }
        encode_runs(stmt, batch, &mut buf)?;
        frontend::sync(&mut buf);
        let reply = self.conn.shared().request(Outgoing::Extended(&buf))?;
        if let Some(follow) = self.follow {
            follow.send(self);
        }
        self.collect(stmt, &reply, skip, each)
    }

    /// Reads the reply of a request of `stmt` (after `skip` statements of its own), handing
    /// each statement's outcome to `each` in order.
    fn collect(
        &self,
        stmt: &Statement,
        reply: &Arc<Reply>,
        mut skip: usize,
        mut each: impl FnMut(Outcome),
    ) -> Result<()> {
        let mut out = Outcome {
            rows: Vec::new(),
            affected: 0,
        };
        let mut error = None;
        // Set when an unnamed statement's portal has other columns than its description.
        let mut described: Option<Arc<[Column]>> = None;
        let mut noted = false;
        loop {
            match self.next(reply)? {
                Message::DataRow(body) if skip == 0 => {
                    let columns = described.as_ref().unwrap_or(stmt.columns_arc());
                    out.rows.push(Row::new(columns.clone(), body)?)
                }
                Message::RowDescription(body) => described = self.portal_columns(stmt, &body)?,
                Message::CommandComplete(body) => {
                    if skip > 0 {
                        skip -= 1;
                    } else {
                        let tag = body.tag().map_err(malformed)?;
                        if !noted {
                            // Every run of a batch is the same statement: one look will do.
                            noted = true;
                            self.note_session_change(tag, Some(stmt.sql()));
                        }
                        out.affected = rows_affected(tag);
                        let finished = std::mem::replace(
                            &mut out,
                            Outcome {
                                rows: Vec::new(),
                                affected: 0,
                            },
                        );
                        each(finished);
                    }
                }
                Message::ErrorResponse(body) => error = Some(db_error(&body)?),
                Message::CopyInResponse(_) => {
                    // `prepare` refuses COPY FROM STDIN, so this is a statement that slipped
                    // past it. In COPY mode the server ignores our Sync and would swallow the
                    // next caller's request; the session cannot be trusted any more.
                    let e = Error::protocol("COPY FROM STDIN started outside copy_in");
                    self.conn.shared().fail(e.clone());
                    return Err(e);
                }
                Message::ReadyForQuery(body) => {
                    self.note_status(&body);
                    break;
                }
                _ => {}
            }
        }
        match error {
            Some(e) => Err(self.deadline_error(e)),
            None => Ok(()),
        }
    }

    /// Runs one or more `;`-separated statements with the simple protocol (text results).
    pub(crate) fn simple_query(&self, sql: &str) -> Result<Vec<SimpleQueryMessage>> {
        refuse_copy_from_stdin(sql)?;
        if self.conn.is_unnamed() {
            refuse_session_features(sql)?;
        }
        let mut buf = BytesMut::new();
        let mut skip = 0;
        let timeout = match (self.deadline, self.exclusive) {
            (Some((_, timeout)), false) => Some(timeout.as_millis().max(1).to_string()),
            (None, false) => self.conn.local_statement_timeout().map(str::to_owned),
            _ => None,
        };
        match timeout {
            Some(millis) => {
                // Same idea as `run`: the timeout is local to the implicit transaction that a
                // multi-statement query string forms, so it ends with this request.
                let text = format!(
                    "SELECT pg_catalog.set_config('statement_timeout', '{millis}', true);{sql}"
                );
                frontend::query(&text, &mut buf).map_err(unsendable_sql)?;
                skip = 1;
            }
            None => frontend::query(sql, &mut buf).map_err(unsendable_sql)?,
        }
        let reply = self.conn.shared().request(Outgoing::Raw(&buf))?;
        let mut out = Vec::new();
        let mut columns: Arc<[String]> = Arc::from(Vec::new());
        let mut error = None;
        let mut noted = false;
        loop {
            match self.next(&reply)? {
                Message::RowDescription(body) => {
                    columns = body
                        .fields()
                        .map(|f| Ok(f.name().to_owned()))
                        .collect::<Vec<_>>()
                        .map_err(malformed)?
                        .into();
                }
                Message::DataRow(body) if skip == 0 => out.push(SimpleQueryMessage::Row(
                    SimpleRow::new(columns.clone(), body)?,
                )),
                Message::CommandComplete(_) if skip > 0 => skip -= 1,
                Message::CommandComplete(body) => {
                    let tag = body.tag().map_err(malformed)?;
                    // The text is read once for all its statements, each tag as it comes.
                    self.note_session_change(tag, (!noted).then_some(sql));
                    noted = true;
                    if tag == "DISCARD ALL" || tag == "DEALLOCATE ALL" {
                        // The server forgot every prepared statement; so must the cache.
                        lock(&self.conn.statements).clear();
                    }
                    out.push(SimpleQueryMessage::CommandComplete(rows_affected(tag)));
                }
                Message::ErrorResponse(body) => error = Some(db_error(&body)?),
                Message::CopyInResponse(_) => self.refuse_copy_in()?,
                Message::ReadyForQuery(body) => {
                    self.note_status(&body);
                    break;
                }
                _ => {}
            }
        }
        match error {
            Some(e) => Err(self.deadline_error(e)),
            None => Ok(out),
        }
    }

    /// Queues a simple query whose reply nobody waits for (cleanup from destructors).
    pub(crate) fn simple_query_detached(&self, sql: &str) -> Result<()> {
        let mut buf = BytesMut::new();
        frontend::query(sql, &mut buf).map_err(unsendable_sql)?;
        self.conn.shared().request_discard(Outgoing::Raw(&buf))
    }

    /// The next message of `reply`, enforcing this call's deadline.
    pub(crate) fn next(&self, reply: &Arc<Reply>) -> Result<Message> {
        let deadline = self.deadline.map(|(at, _)| at);
        match reply.next(deadline) {
            Ok(m) => Ok(m),
            Err(Wait::Failed(e)) => Err(e),
            Err(Wait::TimedOut) => {
                let timeout = self.deadline.map(|(_, t)| t).unwrap_or_default();
                if self.exclusive {
                    self.cancel_and_drain(reply);
                } else {
                    // On a shared connection the server's own statement_timeout ends the
                    // statement; the reply is abandoned and the reader discards it. If it
                    // never comes, the connection is dead (half-open) and gets retired.
                    self.conn.shared().abandon(reply);
                }
                Err(Error::Timeout(timeout))
            }
        }
    }

    /// Cancels the running statement of an exclusive session and waits for its reply to end,
    /// so the caller's next statement cannot be hit by the cancel.
    fn cancel_and_drain(&self, reply: &Arc<Reply>) {
        if let Err(e) = self.conn.cancel_token().cancel() {
            tracing::warn!(target: "lifeguard::pg", "cancel request failed: {e}");
        }
        let grace = Instant::now() + CANCEL_GRACE;
        loop {
            match reply.next(Some(grace)) {
                Ok(Message::ReadyForQuery(body)) => return self.note_status(&body),
                Ok(_) => {}
                Err(Wait::Failed(_)) => return,
                Err(Wait::TimedOut) => {
                    self.conn.shared().fail(Error::connection(
                        "statement did not stop after cancel",
                        None,
                    ));
                    return;
                }
            }
        }
    }

    /// A statement cancelled by this call's own deadline is a timeout, not a server error.
    fn deadline_error(&self, e: Error) -> Error {
        match (self.deadline, e.sqlstate()) {
            (Some((_, timeout)), Some(SqlState::QUERY_CANCELED)) => Error::Timeout(timeout),
            _ => e,
        }
    }

    /// A plain query started `COPY FROM STDIN`: end it, since only `copy_in` can feed it.
    fn refuse_copy_in(&self) -> Result<()> {
        let mut buf = BytesMut::new();
        frontend::copy_fail("COPY FROM STDIN must be run with copy_in", &mut buf)
            .map_err(unsendable_sql)?;
        self.conn.shared().send_raw(&buf)
    }

    /// Flags commands whose effect outlives the statement and its transaction: from the
    /// parse of the request's text `sql` (given once per request: it covers every
    /// statement), and from each tag that alone says so.
    fn note_session_change(&self, tag: &str, sql: Option<&str>) {
        let by_tag = matches!(tag, "LISTEN" | "PREPARE" | "LOAD" | "RESET")
            || tag.starts_with("DISCARD")
            || tag.starts_with("DEALLOCATE");
        if by_tag || sql.is_some_and(changes_session) {
            self.conn.mark_session_dirty();
        }
    }

    fn note_status(&self, body: &ReadyForQueryBody) {
        self.conn.set_transaction_status(body.status());
    }

    /// The `Type` for an OID, asking the server about types it defines beyond the built-ins.
    pub(crate) fn resolve_type(&self, oid: u32) -> Result<Type> {
        if let Some(t) = Type::from_oid(oid) {
            return Ok(t);
        }
        if let Some(t) = lock(&self.conn.types).get(&oid) {
            return Ok(t.clone());
        }
        let t = super::types::lookup(self, oid)?;
        lock(&self.conn.types).insert(oid, t.clone());
        Ok(t)
    }
}

/// The protocol's encoders fail only on a string with a NUL byte, which no message can carry.
pub(crate) fn unsendable_sql(e: std::io::Error) -> Error {
    Error::invalid_use(format!("the SQL text or a name cannot be sent: {e}"))
}

pub(crate) fn malformed(e: std::io::Error) -> Error {
    Error::protocol(format!("malformed backend message: {e}"))
}

pub(crate) fn db_error(
    body: &postgres_protocol::message::backend::ErrorResponseBody,
) -> Result<Error> {
    DbError::parse(body.fields())
        .map(Error::from_db)
        .map_err(|e| Error::protocol(format!("malformed error response: {e}")))
}

/// The row count at the end of a command tag (`INSERT 0 5`, `UPDATE 3`, `SELECT 7`).
pub(crate) fn rows_affected(tag: &str) -> u64 {
    tag.rsplit(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Whether a run of `stmt` failed in a way that preparing its SQL again may fix.
fn is_stale(stmt: &Statement, e: &Error) -> bool {
    if stmt.is_unnamed() {
        may_be_stale_description(e)
    } else {
        is_stale_statement(e)
    }
}

/// Whether the server rejected a cached statement that a re-prepare would fix.
fn is_stale_statement(e: &Error) -> bool {
    match e.db_error() {
        Some(db) => {
            db.code == SqlState::INVALID_SQL_STATEMENT_NAME
                || (db.code == SqlState::FEATURE_NOT_SUPPORTED
                    && db
                        .message
                        .contains("cached plan must not change result type"))
        }
        None => false,
    }
}

/// `COPY ... FROM STDIN` through a plain query would leave the server waiting for data that
/// never comes; steer it to `copy_in` before anything is sent.
fn refuse_copy_from_stdin(sql: &str) -> Result<()> {
    let head = sql.trim_start();
    let is_copy = head
        .get(..4)
        .is_some_and(|h| h.eq_ignore_ascii_case("copy"));
    if is_copy && sql.to_ascii_lowercase().contains("stdin") {
        return Err(Error::invalid_use(
            "COPY ... FROM STDIN must be run with copy_in",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_row_counts_from_tags() {
        assert_eq!(rows_affected("INSERT 0 5"), 5);
        assert_eq!(rows_affected("UPDATE 3"), 3);
        assert_eq!(rows_affected("CREATE TABLE"), 0);
    }

    #[test]
    fn refuses_copy_from_stdin_in_plain_queries() {
        assert!(refuse_copy_from_stdin("  COPY t FROM STDIN").is_err());
        assert!(refuse_copy_from_stdin("copy t to stdout").is_ok());
        assert!(refuse_copy_from_stdin("SELECT 'stdin'").is_ok());
    }
}
