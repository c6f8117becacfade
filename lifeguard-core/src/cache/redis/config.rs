//! Where a Redis server is and how to talk to it: `redis://` URLs and the client's bounds.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::error::{Error, Result};

/// The address of a Redis server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisAddr {
    /// A TCP host and port.
    Tcp {
        /// Host name or IP literal.
        host: String,
        /// Port.
        port: u16,
    },
    /// A Unix-domain socket.
    Unix(PathBuf),
}

impl fmt::Display for RedisAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedisAddr::Tcp { host, port } => write!(f, "{host}:{port}"),
            RedisAddr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// How to reach a Redis server and the bounds every call keeps.
///
/// ```
/// use std::time::Duration;
/// use lifeguard_core::cache::redis::RedisConfig;
///
/// let config = RedisConfig::from_url("redis://app:s3cret@127.0.0.1:6379/2")?
///     .command_timeout(Duration::from_millis(50));
/// assert_eq!(config.db(), 2);
/// assert_eq!(config.user(), Some("app"));
/// // The password never shows up in logs.
/// assert!(!format!("{config:?}").contains("s3cret"));
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
#[derive(Clone)]
pub struct RedisConfig {
    pub(crate) addr: RedisAddr,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    pub(crate) connections: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) command_timeout: Duration,
    pub(crate) max_backoff: Duration,
}

impl RedisConfig {
    /// Parses a `redis://[user[:password]@]host[:port][/db]` or `redis+unix:///path` URL
    /// (the `redis` crate's syntax; `rediss://` needs TLS, which this client does not
    /// speak, and is refused).
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming what is wrong, without repeating the URL (it may hold a
    /// password).
    pub fn from_url(url: &str) -> Result<RedisConfig> {
        let info = url
            .into_connection_info()
            .map_err(|e| Error::config(format!("invalid Redis URL: {}", e.category())))?;
        let addr = match info.addr() {
            ConnectionAddr::Tcp(host, port) => RedisAddr::Tcp {
                host: host.clone(),
                port: *port,
            },
            ConnectionAddr::Unix(path) => RedisAddr::Unix(path.clone()),
            _ => {
                return Err(Error::config(
                    "invalid Redis URL: TLS (rediss://) is not supported by this client",
                ))
            }
        };
        let settings = info.redis_settings();
        Ok(RedisConfig {
            addr,
            user: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            db: settings.db(),
            connections: 2,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        })
    }

    /// How many connections the client keeps open and pipelines on (default 2).
    pub fn connections(mut self, n: usize) -> RedisConfig {
        self.connections = n.max(1);
        self
    }

    /// The longest a connect (with its `AUTH` and `SELECT`) may take (default 1 s).
    pub fn connect_timeout(mut self, d: Duration) -> RedisConfig {
        self.connect_timeout = d;
        self
    }

    /// The deadline of a call that brings none of its own (default 250 ms).
    pub fn command_timeout(mut self, d: Duration) -> RedisConfig {
        self.command_timeout = d;
        self
    }

    /// The longest pause between reconnect attempts after failed connects (default 5 s;
    /// the pause starts at 50 ms and doubles).
    pub fn max_backoff(mut self, d: Duration) -> RedisConfig {
        self.max_backoff = d;
        self
    }

    /// The server's address.
    pub fn addr(&self) -> &RedisAddr {
        &self.addr
    }

    /// The ACL user, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// The database index.
    pub fn db(&self) -> i64 {
        self.db
    }

    /// The deadline of calls that bring none of their own.
    pub fn get_command_timeout(&self) -> Duration {
        self.command_timeout
    }
}

impl fmt::Debug for RedisConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisConfig")
            .field("addr", &self.addr.to_string())
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("db", &self.db)
            .field("connections", &self.connections)
            .field("connect_timeout", &self.connect_timeout)
            .field("command_timeout", &self.command_timeout)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_password_and_db() {
        let c = RedisConfig::from_url("redis://u:p%2Fw@localhost:7000/3").unwrap();
        assert_eq!(
            c.addr(),
            &RedisAddr::Tcp {
                host: "localhost".into(),
                port: 7000
            }
        );
        assert_eq!(
            (c.user(), c.password.as_deref(), c.db()),
            (Some("u"), Some("p/w"), 3)
        );
        let c = RedisConfig::from_url("redis://127.0.0.1").unwrap();
        assert_eq!(c.addr().to_string(), "127.0.0.1:6379");
        assert_eq!((c.user(), c.db()), (None, 0));
    }

    #[test]
    fn errors_do_not_echo_the_url() {
        for url in [
            "http://u:hunter2@h/0",
            "redis://u:hunter2@h/notanumber",
            "rediss://u:hunter2@h",
        ] {
            match RedisConfig::from_url(url) {
                Err(e) => assert!(!e.to_string().contains("hunter2"), "{e}"),
                Ok(c) => panic!("{url} parsed: {c:?}"),
            }
        }
    }
}
