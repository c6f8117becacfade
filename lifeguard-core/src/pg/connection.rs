//! A connection: one socket shared by many coroutines, with a prepared-statement cache.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postgres_types::Type;

use super::call::{Call, FollowUp, Params};
use super::cancel::CancelToken;
use super::config::{Config, Prepare};
use super::connect::handshake;
use super::notify::quote_channel;
use super::pipeline::Shared;
use super::row::Row;
use super::session::{refusal, LocalSession, SessionFeature};
use super::statement::{Statement, StatementCache};
use crate::error::Result;
use crate::executor::Executor;
use crate::rt::lock;

/// The transaction state the server reported after the last request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransactionStatus {
    /// Not in a transaction block.
    Idle,
    /// In a transaction block.
    InTransaction,
    /// In a failed transaction block: only `ROLLBACK` will be accepted.
    Failed,
}

/// A PostgreSQL connection.
///
/// Every method takes `&self`: share the connection (e.g. in an `Arc`) and concurrent
/// coroutines pipeline their statements on its one socket, each getting its own result.
/// Work that needs the session to itself (transactions, `COPY`) takes `&mut self`, which the
/// borrow checker makes exclusive.
///
/// With [`Prepare::Unnamed`] (`prepare=unnamed` or `statement_cache=0`, for PgBouncer in
/// transaction mode) every request is self-contained: the unnamed statement is parsed,
/// bound and executed in one request, nothing is prepared on the server, and statements
/// whose effect outlives their transaction (`LISTEN`, session advisory locks, `SET` without
/// `LOCAL`) are refused with [`Error::InvalidUse`](crate::Error::InvalidUse).
///
/// ```no_run
/// use lifeguard_core::pg::Connection;
/// use lifeguard_core::Executor;
///
/// let conn = Connection::open("postgres://postgres@127.0.0.1:55432/lifeguard")?;
/// let row = conn.query_one("SELECT $1::int4 + 1", &[&41i32])?;
/// assert_eq!(row.get::<_, i32>(0), 42);
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
pub struct Connection {
    shared: Arc<Shared>,
    config: Config,
    process_id: i32,
    secret_key: i32,
    pub(crate) statements: Mutex<StatementCache>,
    pub(crate) types: Mutex<HashMap<u32, Type>>,
    next_name: AtomicU64,
    status: AtomicU8,
    session_dirty: AtomicBool,
    /// [`Prepare::Unnamed`]: no named statements, session features refused.
    unnamed: bool,
    /// Session defaults set per transaction and per request (a pool's, in unnamed mode).
    local: Option<Arc<LocalSession>>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("target", &self.config.display_target())
            .field("process_id", &self.process_id)
            .field("broken", &self.is_broken())
            .finish()
    }
}

impl Connection {
    /// Connects with a parsed configuration; with several hosts, to the first that answers
    /// and fits `target_session_attrs` (see [`Config::hosts`]).
    pub fn connect(config: &Config) -> Result<Connection> {
        super::targets::connect(config).map(super::liveness::watched)
    }

    /// Connects to the one host of `config`.
    pub(crate) fn connect_one(config: &Config) -> Result<Connection> {
        let (socket, startup) = handshake(config)?;
        let shared = Shared::start(socket, startup.parameters, config.limits())?;
        // In unnamed mode the cache keeps descriptions (parameter and column types), not
        // server-side statements, bounded the same way; `statement_cache=0` keeps none, so
        // each statement is described (a round trip) before it runs.
        let cached = config.get_statement_cache();
        Ok(Connection {
            shared,
            config: config.clone(),
            process_id: startup.process_id,
            secret_key: startup.secret_key,
            statements: Mutex::new(StatementCache::new(cached)),
            types: Mutex::new(HashMap::new()),
            next_name: AtomicU64::new(0),
            status: AtomicU8::new(b'I'),
            session_dirty: AtomicBool::new(false),
            unnamed: config.get_prepare() == Prepare::Unnamed,
            local: None,
        })
    }

    /// Applies `local` session defaults per transaction and per request (a pool's timeouts
    /// in unnamed mode, where the `options` start-up parameter cannot carry them).
    pub(crate) fn with_local_session(mut self, local: Option<Arc<LocalSession>>) -> Connection {
        self.local = local;
        self
    }

    /// Whether statements run as the unnamed statement ([`Prepare::Unnamed`]).
    pub(crate) fn is_unnamed(&self) -> bool {
        self.unnamed
    }

    /// The statement timeout (milliseconds) each autocommit request sets for itself.
    pub(crate) fn local_statement_timeout(&self) -> Option<&str> {
        self.local
            .as_deref()
            .and_then(LocalSession::statement_timeout)
    }

    /// The session defaults each transaction sets for itself.
    pub(crate) fn local_session(&self) -> Option<&LocalSession> {
        self.local.as_deref()
    }

    /// Connects with a `postgres://` URL or a libpq `key=value` string.
    pub fn open(conninfo: &str) -> Result<Connection> {
        Connection::connect(&Config::parse(conninfo)?)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(crate) fn next_statement_name(&self) -> String {
        format!("lg{}", self.next_name.fetch_add(1, Ordering::Relaxed))
    }

    pub(crate) fn set_transaction_status(&self, status: u8) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// Notes a command that changed session state beyond one transaction.
    pub(crate) fn mark_session_dirty(&self) {
        self.session_dirty.store(true, Ordering::Relaxed);
    }

    /// Whether a statement changed session state that outlives it (`SET` without `LOCAL`,
    /// `LISTEN`, `PREPARE`, a temporary table), clearing the flag. A pool retires such a
    /// connection rather than share that state with the next user.
    pub(crate) fn take_session_dirty(&self) -> bool {
        self.session_dirty.swap(false, Ordering::Relaxed)
    }

    /// The transaction state after the last request (meaningful for exclusive use).
    pub fn transaction_status(&self) -> TransactionStatus {
        match self.status.load(Ordering::Relaxed) {
            b'T' => TransactionStatus::InTransaction,
            b'E' => TransactionStatus::Failed,
            _ => TransactionStatus::Idle,
        }
    }

    /// The configuration this connection was opened with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The server process serving this connection (its `pg_backend_pid()`).
    pub fn process_id(&self) -> i32 {
        self.process_id
    }

    /// A server parameter (`server_version`, `TimeZone`, `integer_datetimes`, ...).
    pub fn parameter(&self, name: &str) -> Option<String> {
        self.shared.parameter(name)
    }

    /// Whether the connection has failed; every later call on it fails at once.
    pub fn is_broken(&self) -> bool {
        self.shared.is_broken()
    }

    /// Requests queued and not yet answered; pick the least loaded of several connections.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// How many statements are cached now (in unnamed mode: statement descriptions, with
    /// nothing prepared on the server).
    pub fn cached_statements(&self) -> usize {
        lock(&self.statements).len()
    }

    /// A handle that can cancel whatever statement this connection is running, from anywhere.
    pub fn cancel_token(&self) -> CancelToken {
        CancelToken::new(self.config.clone(), self.process_id, self.secret_key)
    }

    /// Prepares a statement (uncached) for [`Connection::query_statement`].
    ///
    /// In unnamed mode ([`Prepare::Unnamed`]) this describes the statement (its parameter
    /// and column types) without keeping anything on the server; each
    /// [`Connection::query_statement`] then parses it again in the same request as its
    /// `Bind` and `Execute`.
    pub fn prepare(&self, sql: &str) -> Result<Statement> {
        Call::new(self).prepare(sql)
    }

    /// Runs a statement prepared on this connection.
    pub fn query_statement(&self, stmt: &Statement, params: Params<'_>) -> Result<Vec<Row>> {
        Call::new(self)
            .query_statement(stmt, params)
            .map(|(rows, _)| rows)
    }

    /// A handle whose every call must finish within `timeout` of now; a late call returns
    /// `Error::Timeout` promptly and its statement is cancelled on the server.
    ///
    /// ```no_run
    /// # fn demo(conn: &lifeguard_core::pg::Connection) {
    /// use std::time::Duration;
    /// use lifeguard_core::{Error, Executor};
    /// let r = conn.timeout(Duration::from_millis(50)).execute("SELECT pg_sleep(1)", &[]);
    /// assert!(matches!(r, Err(Error::Timeout(_))));
    /// # }
    /// ```
    pub fn timeout(&self, timeout: Duration) -> Timed<'_> {
        Timed(Call::new(self).with_timeout(timeout))
    }

    /// A handle whose calls end at `deadline` (when set) and queue `follow` right behind
    /// each request (when set).
    pub(crate) fn call_with<'a>(
        &'a self,
        deadline: Option<(Instant, Duration)>,
        follow: Option<&'a FollowUp>,
    ) -> Timed<'a> {
        Timed(Call {
            deadline,
            follow,
            ..Call::new(self)
        })
    }

    /// Subscribes this connection to a notification channel.
    ///
    /// Refused in unnamed mode ([`Prepare::Unnamed`]): behind a transaction-mode pooler the
    /// subscription would stay on whichever server connection ran it.
    pub fn listen(&self, channel: &str) -> Result<()> {
        let sql = format!("LISTEN {}", quote_channel(channel)?);
        if self.unnamed {
            return Err(refusal(SessionFeature::Listen));
        }
        self.batch_execute(&sql)
    }

    /// Unsubscribes this connection from a notification channel.
    pub fn unlisten(&self, channel: &str) -> Result<()> {
        self.batch_execute(&format!("UNLISTEN {}", quote_channel(channel)?))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.terminate();
    }
}

/// A connection or transaction whose calls share one deadline; see [`Connection::timeout`].
pub struct Timed<'a>(pub(crate) Call<'a>);

/// Implements [`Executor`] for a type from the [`Call`] it runs with.
macro_rules! impl_executor {
    ($ty:ty, |$s:ident| $call:expr) => {
        $crate::pg::connection::impl_executor!($ty, |$s| $call, {});
    };
    ($ty:ty, |$s:ident| $call:expr, { $($extra:item)* }) => {
        impl $crate::executor::Executor for $ty {
            $($extra)*

            fn query(
                &self,
                sql: &str,
                params: $crate::pg::Params<'_>,
            ) -> $crate::Result<Vec<$crate::pg::Row>> {
                let $s = self;
                $call.query(sql, params).map(|(rows, _)| rows)
            }

            fn execute(&self, sql: &str, params: $crate::pg::Params<'_>) -> $crate::Result<u64> {
                let $s = self;
                $call.query(sql, params).map(|(_, n)| n)
            }

            fn simple_query(
                &self,
                sql: &str,
            ) -> $crate::Result<Vec<$crate::pg::SimpleQueryMessage>> {
                let $s = self;
                $call.simple_query(sql)
            }

            fn query_pipelined(
                &self,
                sql: &str,
                batch: &[$crate::pg::Params<'_>],
            ) -> $crate::Result<Vec<Vec<$crate::pg::Row>>> {
                let $s = self;
                $call.query_pipelined(sql, batch)
            }
        }
    };
}
pub(crate) use impl_executor;

impl_executor!(Connection, |c| Call::new(c));
impl_executor!(Timed<'_>, |t| t.0);
