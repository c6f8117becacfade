//! Connection settings: where the server is, who to log in as, and how.
//!
//! A [`Config`] is built either with its setters or by parsing a connection string in one of
//! the two forms libpq accepts: a `postgres://` URL or `key=value` pairs. Only the parameters
//! this client can honour are accepted; anything else is an error rather than being silently
//! ignored, so a misspelt or unsupported setting is noticed at start-up, not in production.

mod limits;
mod net;
mod options;
mod parse;
mod tls;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

pub(crate) use limits::Limits;
pub use net::Keepalives;
pub use options::{
    AuthMethod, ChannelBinding, LoadBalanceHosts, Prepare, RequireAuth, RootCert, SslMode,
    SslNegotiation, TargetSessionAttrs,
};
pub(crate) use tls::{mode_name, TlsSettings};

const DEFAULT_HOST: &str = "localhost";
/// How many statements a connection keeps prepared unless told otherwise.
pub const DEFAULT_STATEMENT_CACHE: usize = 256;
const DEFAULT_PORT: u16 = 5432;
/// How long opening a connection may take unless told otherwise.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address (IPv6 without brackets), reached over TCP.
    Tcp(String),
    /// The directory holding the server's Unix-domain socket, as in libpq: the socket itself
    /// is `<dir>/.s.PGSQL.<port>` (see [`Config::socket_path`]).
    Unix(PathBuf),
}

impl Host {
    fn parse(value: &str) -> Host {
        if value.is_empty() {
            Host::Tcp(DEFAULT_HOST.to_owned())
        } else if value.starts_with('/') {
            Host::Unix(PathBuf::from(value))
        } else {
            Host::Tcp(value.to_owned())
        }
    }
}

/// Everything needed to open a connection.
///
/// ```
/// use std::time::Duration;
/// use lifeguard_core::pg::Config;
///
/// let config = Config::new()
///     .host("db.internal")
///     .port(6432)
///     .user("app")
///     .password("s3cret")
///     .dbname("orders")
///     .connect_timeout(Duration::from_secs(5));
/// assert_eq!(config.display_target(), "db.internal:6432");
/// // The password never shows up in logs.
/// assert!(!format!("{config:?}").contains("s3cret"));
/// ```
///
/// Three parameters cap the memory a server can make a connection hold, each also taken in
/// a connection string: `max_message_size` (bytes; the largest message, a larger one fails
/// the connection with [`Error::Protocol`]), `reply_buffer` (bytes of one reply held for a
/// slow caller before the connection stops reading its socket) and `notification_queue`
/// (notifications kept for a listener; the oldest are dropped and counted past it). See
/// [`Config::max_message_size`], [`Config::reply_buffer`] and [`Config::notification_queue`].
///
/// ```
/// use lifeguard_core::pg::Config;
///
/// let s = "host=db max_message_size=16777216 reply_buffer=1048576 notification_queue=500";
/// let config = Config::parse(s)?;
/// assert_eq!(config.get_max_message_size(), 16 << 20);
/// assert_eq!(config.get_reply_buffer(), 1 << 20);
/// assert_eq!(config.get_notification_queue(), 500);
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    hosts: Vec<Host>,
    ports: Vec<u16>,
    user: String,
    password: Option<String>,
    dbname: Option<String>,
    application_name: Option<String>,
    connect_timeout: Option<Duration>,
    options: Option<String>,
    tls: TlsSettings,
    require_auth: Option<RequireAuth>,
    target_session_attrs: TargetSessionAttrs,
    load_balance_hosts: LoadBalanceHosts,
    prepare: Prepare,
    statement_cache: usize,
    keepalives: Keepalives,
    tcp_user_timeout: Option<Duration>,
    limits: Limits,
}

impl Config {
    /// The defaults: TCP to `localhost:5432`, user `$PGUSER`, else `$USER`, else `postgres`,
    /// no password, the database named after the user, a connect timeout of
    /// [`DEFAULT_CONNECT_TIMEOUT`], `sslmode=prefer`, TCP keepalives on (see [`Keepalives`])
    /// and a `TCP_USER_TIMEOUT` of 30 s.
    pub fn new() -> Config {
        Config {
            hosts: vec![Host::Tcp(DEFAULT_HOST.to_owned())],
            ports: vec![DEFAULT_PORT],
            user: default_user(),
            password: None,
            dbname: None,
            application_name: None,
            connect_timeout: Some(DEFAULT_CONNECT_TIMEOUT),
            options: None,
            tls: TlsSettings::default(),
            require_auth: None,
            target_session_attrs: TargetSessionAttrs::Any,
            load_balance_hosts: LoadBalanceHosts::Disable,
            prepare: Prepare::Named,
            statement_cache: DEFAULT_STATEMENT_CACHE,
            keepalives: Keepalives::default(),
            tcp_user_timeout: Some(net::DEFAULT_TCP_USER_TIMEOUT),
            limits: Limits::default(),
        }
    }

    /// Parses a connection string: either a URL
    /// (`postgres[ql]://[user[:password]@][host][:port][,host[:port]...][/dbname][?key=value&...]`)
    /// or libpq `key=value` pairs. Settings it does not mention keep the defaults of
    /// [`Config::new`].
    ///
    /// ```
    /// use lifeguard_core::pg::{Config, Host};
    ///
    /// let url = Config::parse("postgres://app:p%40ss@db.internal:6432/orders?sslmode=disable")?;
    /// assert_eq!(url.get_user(), "app");
    /// assert_eq!(url.get_password(), Some("p@ss"));
    /// assert_eq!(url.get_port(), 6432);
    ///
    /// let kv = Config::parse("host=/var/run/postgresql dbname=orders application_name='my app'")?;
    /// assert_eq!(kv.get_host(), &Host::Unix("/var/run/postgresql".into()));
    /// assert_eq!(kv.get_application_name(), Some("my app"));
    /// # Ok::<(), lifeguard_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the offending part when the string is malformed, names an
    /// unknown parameter or gives a value the parameter does not take.
    pub fn parse(s: &str) -> Result<Config> {
        parse::parse(s)
    }

    /// Sets how many prepared statements a connection keeps (least recently used go first);
    /// 0 prepares nothing and runs every statement as the unnamed statement, like
    /// [`Prepare::Unnamed`].
    pub fn statement_cache(mut self, capacity: usize) -> Self {
        self.statement_cache = capacity;
        self
    }

    /// How many prepared statements a connection keeps.
    pub fn get_statement_cache(&self) -> usize {
        self.statement_cache
    }

    /// Sets how statements are prepared; [`Prepare::Unnamed`] for PgBouncer in transaction
    /// mode.
    pub fn prepare(mut self, prepare: Prepare) -> Self {
        self.prepare = prepare;
        self
    }

    /// How statements are prepared: [`Prepare::Unnamed`] when asked for, or when the statement
    /// cache is off.
    pub fn get_prepare(&self) -> Prepare {
        if self.statement_cache == 0 {
            Prepare::Unnamed
        } else {
            self.prepare
        }
    }

    /// Sets the user to log in as.
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = user.into();
        self
    }

    /// Sets the password, used if the server asks for one.
    pub fn password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Sets the database to connect to (by default, the one named after the user).
    pub fn dbname(mut self, dbname: impl Into<String>) -> Self {
        self.dbname = Some(dbname.into());
        self
    }

    /// Sets the `application_name` the server shows in `pg_stat_activity` and its logs.
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Sets how long opening a connection (each host's, with several) may take before
    /// giving up; `None` waits as long as the operating system does.
    pub fn connect_timeout(mut self, timeout: impl Into<Option<Duration>>) -> Self {
        self.connect_timeout = timeout.into();
        self
    }

    /// Sets command-line options sent to the server at start-up, e.g. `-c search_path=app`.
    pub fn options(mut self, options: impl Into<String>) -> Self {
        self.options = Some(options.into());
        self
    }

    /// Restricts the authentication methods the server may use.
    pub fn require_auth(mut self, allowed: RequireAuth) -> Self {
        self.require_auth = Some(allowed);
        self
    }

    /// The authentication methods the server may use; `None` allows every one this client
    /// speaks.
    pub fn get_require_auth(&self) -> Option<RequireAuth> {
        self.require_auth
    }

    /// The user to log in as.
    pub fn get_user(&self) -> &str {
        &self.user
    }

    /// The password, if one was given.
    pub fn get_password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The database to connect to; the user's name when none was given, which is what the
    /// server would pick anyway.
    pub fn get_dbname(&self) -> &str {
        self.dbname.as_deref().unwrap_or(&self.user)
    }

    /// The `application_name`, if one was given.
    pub fn get_application_name(&self) -> Option<&str> {
        self.application_name.as_deref()
    }

    /// How long opening a connection may take; `None` waits as long as the OS does.
    pub fn get_connect_timeout(&self) -> Option<Duration> {
        self.connect_timeout
    }

    /// The start-up command-line options, if any.
    pub fn get_options(&self) -> Option<&str> {
        self.options.as_deref()
    }
}

impl Default for Config {
    fn default() -> Config {
        Config::new()
    }
}

impl FromStr for Config {
    type Err = Error;

    fn from_str(s: &str) -> Result<Config> {
        Config::parse(s)
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Configs end up in logs and panic messages; the password must not.
        let password = self.password.as_ref().map(|_| "***");
        f.debug_struct("Config")
            .field("hosts", &self.hosts)
            .field("ports", &self.ports)
            .field("user", &self.user)
            .field("password", &password)
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field("tls", &self.tls)
            .field("require_auth", &self.require_auth)
            .field("target_session_attrs", &self.target_session_attrs)
            .field("load_balance_hosts", &self.load_balance_hosts)
            .field("prepare", &self.prepare)
            .field("statement_cache", &self.statement_cache)
            .field("keepalives", &self.keepalives)
            .field("tcp_user_timeout", &self.tcp_user_timeout)
            .field("limits", &self.limits)
            .finish()
    }
}

fn default_user() -> String {
    ["PGUSER", "USER"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres".to_owned())
}

fn socket_file(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

#[cfg(test)]
mod tests;
