//! Connection settings: where the server is, who to log in as, and how.
//!
//! A [`Config`] is built either with its setters or by parsing a connection string in one of
//! the two forms libpq accepts: a `postgres://` URL or `key=value` pairs. Only the parameters
//! this client can honour are accepted; anything else is an error rather than being silently
//! ignored, so a misspelt or unsupported setting is noticed at start-up, not in production.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use percent_encoding::percent_decode_str;

use crate::error::{Error, Result};

const DEFAULT_HOST: &str = "localhost";
/// How many statements a connection keeps prepared unless told otherwise.
pub const DEFAULT_STATEMENT_CACHE: usize = 256;
const DEFAULT_PORT: u16 = 5432;

/// Where the server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A host name or IP address (IPv6 without brackets), reached over TCP.
    Tcp(String),
    /// The directory holding the server's Unix-domain socket, as in libpq: the socket itself
    /// is `<dir>/.s.PGSQL.<port>` (see [`Config::socket_path`]).
    Unix(PathBuf),
}

/// Whether to negotiate TLS with the server.
///
/// This client does not speak TLS, so only the modes that allow a plaintext connection exist;
/// `require`, `verify-ca` and `verify-full` are rejected when parsing rather than being
/// quietly downgraded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SslMode {
    /// Use TLS if both sides can; since this client cannot, the connection is plaintext.
    #[default]
    Prefer,
    /// Never use TLS.
    Disable,
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
#[derive(Clone, PartialEq, Eq)]
pub struct Config {
    host: Host,
    port: u16,
    user: String,
    password: Option<String>,
    dbname: Option<String>,
    application_name: Option<String>,
    connect_timeout: Option<Duration>,
    options: Option<String>,
    ssl_mode: SslMode,
    statement_cache: usize,
}

impl Config {
    /// The defaults: TCP to `localhost:5432`, user `$PGUSER`, else `$USER`, else `postgres`,
    /// no password, the database named after the user, no connect timeout, `sslmode=prefer`.
    pub fn new() -> Config {
        Config {
            host: Host::Tcp(DEFAULT_HOST.to_owned()),
            port: DEFAULT_PORT,
            user: default_user(),
            password: None,
            dbname: None,
            application_name: None,
            connect_timeout: None,
            options: None,
            ssl_mode: SslMode::Prefer,
            statement_cache: DEFAULT_STATEMENT_CACHE,
        }
    }

    /// Parses a connection string: either a URL
    /// (`postgres[ql]://[user[:password]@][host][:port][/dbname][?key=value&...]`) or libpq
    /// `key=value` pairs. Settings it does not mention keep the defaults of [`Config::new`].
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
    /// unknown parameter, lists several hosts, or asks for TLS.
    pub fn parse(s: &str) -> Result<Config> {
        let trimmed = s.trim();
        if let Some(rest) = strip_url_scheme(trimmed) {
            return parse_url(rest);
        }
        if trimmed.contains('=') {
            return parse_key_value(trimmed);
        }
        if trimmed.is_empty() {
            return Err(Error::config("empty connection string"));
        }
        if let Some((scheme, _)) = trimmed.split_once("://") {
            return Err(Error::config(format!(
                "unsupported URL scheme \"{scheme}\"; expected postgres:// or postgresql://"
            )));
        }
        Err(Error::config(
            "connection string is neither a postgres:// URL nor key=value pairs",
        ))
    }

    /// Sets how many prepared statements a connection keeps (least recently used go first);
    /// 0 disables the cache.
    pub fn statement_cache(mut self, capacity: usize) -> Self {
        self.statement_cache = capacity;
        self
    }

    /// How many prepared statements a connection keeps.
    pub fn get_statement_cache(&self) -> usize {
        self.statement_cache
    }

    /// Sets the host: a name or IP address for TCP, or, when it starts with `/`, the directory
    /// of the server's Unix-domain socket (as libpq does).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        let host = host.into();
        self.host = if host.starts_with('/') {
            Host::Unix(PathBuf::from(host))
        } else {
            Host::Tcp(host)
        };
        self
    }

    /// Connects through the Unix-domain socket in `dir` (the directory, not the socket file).
    pub fn unix_socket_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.host = Host::Unix(dir.into());
        self
    }

    /// Sets the TCP port, which for Unix sockets also picks the socket file's name.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
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

    /// Sets how long opening a connection may take before giving up.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// Sets command-line options sent to the server at start-up, e.g. `-c search_path=app`.
    pub fn options(mut self, options: impl Into<String>) -> Self {
        self.options = Some(options.into());
        self
    }

    /// Sets whether to negotiate TLS.
    pub fn ssl_mode(mut self, mode: SslMode) -> Self {
        self.ssl_mode = mode;
        self
    }

    /// Where the server listens.
    pub fn get_host(&self) -> &Host {
        &self.host
    }

    /// The TCP port, or the number in the Unix socket's file name.
    pub fn get_port(&self) -> u16 {
        self.port
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

    /// Whether to negotiate TLS.
    pub fn get_ssl_mode(&self) -> SslMode {
        self.ssl_mode
    }

    /// The socket file to connect to when the host is a Unix socket directory:
    /// `<dir>/.s.PGSQL.<port>`. `None` for TCP hosts.
    pub fn socket_path(&self) -> Option<PathBuf> {
        match &self.host {
            Host::Unix(dir) => Some(socket_file(dir, self.port)),
            Host::Tcp(_) => None,
        }
    }

    /// The target in the form error messages show it: `host:port`, `[::1]:port` for IPv6,
    /// or the socket file's path.
    pub fn display_target(&self) -> String {
        match &self.host {
            // Brackets keep the port from reading as one more group of the address.
            Host::Tcp(h) if h.contains(':') => format!("[{h}]:{}", self.port),
            Host::Tcp(h) => format!("{h}:{}", self.port),
            Host::Unix(dir) => socket_file(dir, self.port).display().to_string(),
        }
    }

    /// Applies one named parameter, shared by both string forms so they accept the same keys
    /// with the same meaning.
    ///
    /// An empty value restores the default, as libpq treats empty settings as unset.
    fn apply(&mut self, key: &str, value: &str, src: Source) -> Result<()> {
        let ctx = src.context();
        match key {
            "host" | "hostaddr" => {
                if value.contains(',') {
                    return Err(Error::config(format!(
                        "multiple hosts are not supported; give replicas to the pool \
                         (got {key} \"{value}\" {ctx})"
                    )));
                }
                self.host = if value.is_empty() {
                    Host::Tcp(DEFAULT_HOST.to_owned())
                } else if value.starts_with('/') {
                    Host::Unix(PathBuf::from(value))
                } else {
                    Host::Tcp(value.to_owned())
                };
            }
            "port" => {
                self.port = if value.is_empty() {
                    DEFAULT_PORT
                } else {
                    parse_port(value, ctx)?
                };
            }
            "user" => {
                self.user = if value.is_empty() {
                    default_user()
                } else {
                    value.to_owned()
                };
            }
            "password" => self.password = non_empty(value),
            "dbname" => self.dbname = non_empty(value),
            "application_name" => self.application_name = non_empty(value),
            "options" => self.options = non_empty(value),
            "connect_timeout" => self.connect_timeout = parse_connect_timeout(value, ctx)?,
            "sslmode" => self.ssl_mode = parse_ssl_mode(value, ctx)?,
            _ => {
                return Err(Error::config(format!(
                    "unknown connection parameter \"{key}\""
                )))
            }
        }
        Ok(())
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
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &password)
            .field("dbname", &self.dbname)
            .field("application_name", &self.application_name)
            .field("connect_timeout", &self.connect_timeout)
            .field("options", &self.options)
            .field("ssl_mode", &self.ssl_mode)
            .finish()
    }
}

/// Which string form a parameter came from, so errors point at the right thing.
#[derive(Clone, Copy)]
enum Source {
    Url,
    KeyValue,
}

impl Source {
    fn context(self) -> &'static str {
        match self {
            Source::Url => "in connection URL",
            Source::KeyValue => "in connection string",
        }
    }
}

fn default_user() -> String {
    ["PGUSER", "USER"]
        .iter()
        .filter_map(|var| std::env::var(var).ok())
        .find(|v| !v.is_empty())
        .unwrap_or_else(|| "postgres".to_owned())
}

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

fn socket_file(dir: &Path, port: u16) -> PathBuf {
    dir.join(format!(".s.PGSQL.{port}"))
}

fn parse_port(value: &str, ctx: &str) -> Result<u16> {
    match value.parse::<u16>() {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(Error::config(format!(
            "invalid port \"{value}\" {ctx}: expected a number from 1 to 65535"
        ))),
    }
}

fn parse_connect_timeout(value: &str, ctx: &str) -> Result<Option<Duration>> {
    if value.is_empty() {
        return Ok(None);
    }
    let secs: i64 = value.parse().map_err(|_| {
        Error::config(format!(
            "invalid connect_timeout \"{value}\" {ctx}: expected whole seconds"
        ))
    })?;
    // libpq reads zero or a negative number as "wait indefinitely".
    Ok(u64::try_from(secs)
        .ok()
        .filter(|&s| s > 0)
        .map(Duration::from_secs))
}

fn parse_ssl_mode(value: &str, ctx: &str) -> Result<SslMode> {
    match value {
        // `allow` tries plaintext first and only falls back to TLS, which we cannot do, so
        // plaintext is exactly what it would get.
        "disable" | "allow" => Ok(SslMode::Disable),
        "prefer" | "" => Ok(SslMode::Prefer),
        "require" | "verify-ca" | "verify-full" => Err(Error::config(format!(
            "sslmode \"{value}\" {ctx} is not supported: this client does not support TLS \
             (use sslmode=disable or sslmode=prefer)"
        ))),
        _ => Err(Error::config(format!(
            "invalid sslmode \"{value}\" {ctx}: expected disable, allow, prefer, require, \
             verify-ca or verify-full"
        ))),
    }
}

/// Returns what follows the scheme when `s` is a PostgreSQL URL. Schemes are
/// case-insensitive per RFC 3986.
fn strip_url_scheme(s: &str) -> Option<&str> {
    ["postgresql://", "postgres://"].iter().find_map(|scheme| {
        let head = s.get(..scheme.len())?;
        head.eq_ignore_ascii_case(scheme)
            .then(|| &s[scheme.len()..])
    })
}

fn decode(raw: &str, part: &str) -> Result<String> {
    percent_decode_str(raw)
        .decode_utf8()
        .map(|s| s.into_owned())
        .map_err(|_| {
            Error::config(format!(
                "{part} in connection URL is not valid UTF-8 after percent-decoding"
            ))
        })
}

/// Parses what follows `postgres://`.
fn parse_url(rest: &str) -> Result<Config> {
    let src = Source::Url;
    let mut config = Config::new();

    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (before_query, None),
    };

    // The last `@` ends the user info: a host cannot contain one, while a password someone
    // forgot to percent-encode often does.
    let hostport = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => {
            let (user, password) = match userinfo.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (userinfo, None),
            };
            config.apply("user", &decode(user, "user")?, src)?;
            if let Some(password) = password {
                config.password = Some(decode(password, "password")?);
            }
            hostport
        }
        None => authority,
    };

    if hostport.contains(',') {
        return Err(Error::config(format!(
            "multiple hosts are not supported; give replicas to the pool \
             (got \"{hostport}\" in connection URL)"
        )));
    }
    let (host, port) = split_host_port(hostport)?;
    config.apply("host", &decode(host, "host")?, src)?;
    if let Some(port) = port {
        config.port = parse_port(port, src.context())?;
    }

    if let Some(path) = path {
        if path.contains('/') {
            return Err(Error::config(format!(
                "invalid database name \"{path}\" in connection URL: \
                 a '/' in it must be written as %2F"
            )));
        }
        config.apply("dbname", &decode(path, "database name")?, src)?;
    }

    // Query parameters come last so that they override the URL's own parts, which is how
    // `?host=/var/run/postgresql` reaches a socket directory the authority cannot spell.
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Error::config(format!(
                "missing \"=\" after query parameter \"{pair}\" in connection URL"
            )));
        };
        let key = decode(key, "query parameter name")?;
        let value = decode(value, &format!("value of query parameter \"{key}\""))?;
        config.apply(&key, &value, src)?;
    }
    Ok(config)
}

/// Splits `host[:port]` or `[v6addr][:port]`; the host is still percent-encoded.
fn split_host_port(hostport: &str) -> Result<(&str, Option<&str>)> {
    if let Some(bracketed) = hostport.strip_prefix('[') {
        let Some((addr, after)) = bracketed.split_once(']') else {
            return Err(Error::config(format!(
                "invalid host \"{hostport}\" in connection URL: missing ']' after IPv6 address"
            )));
        };
        return match after {
            "" => Ok((addr, None)),
            _ => match after.strip_prefix(':') {
                Some(port) => Ok((addr, Some(port))),
                None => Err(Error::config(format!(
                    "invalid host \"{hostport}\" in connection URL: \
                     expected ':port' after ']'"
                ))),
            },
        };
    }
    match hostport.split_once(':') {
        // A second colon means an IPv6 address without the brackets that set off its port.
        Some((_, port)) if port.contains(':') => Err(Error::config(format!(
            "invalid host \"{hostport}\" in connection URL: IPv6 addresses must be in brackets"
        ))),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((hostport, None)),
    }
}

/// Parses libpq `key=value` pairs.
fn parse_key_value(s: &str) -> Result<Config> {
    let mut config = Config::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.peek().is_none() {
            break;
        }

        let mut key = String::new();
        while let Some(c) = chars.next_if(|&c| c != '=' && !c.is_whitespace()) {
            key.push(c);
        }
        if key.is_empty() {
            return Err(Error::config(
                "missing parameter name before \"=\" in connection string",
            ));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next_if_eq(&'=').is_none() {
            return Err(Error::config(format!(
                "missing \"=\" after \"{key}\" in connection string"
            )));
        }
        // Like libpq, whitespace after `=` is skipped, so `key = value` works.
        while chars.next_if(|c| c.is_whitespace()).is_some() {}

        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => match chars.next() {
                        Some(c) => value.push(c),
                        None => return Err(unterminated(&key)),
                    },
                    Some(c) => value.push(c),
                    None => return Err(unterminated(&key)),
                }
            }
        } else {
            while let Some(c) = chars.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    // A trailing lone backslash is dropped, as libpq does.
                    if let Some(escaped) = chars.next() {
                        value.push(escaped);
                    }
                } else {
                    value.push(c);
                }
            }
        }
        config.apply(&key, &value, Source::KeyValue)?;
    }
    Ok(config)
}

fn unterminated(key: &str) -> Error {
    Error::config(format!(
        "unterminated quoted value for \"{key}\" in connection string"
    ))
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
