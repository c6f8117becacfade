//! Where a Redis server (or cluster) is and how to talk to it: `redis://` and
//! `redis+cluster://` URLs and the client's bounds.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use redis::{ConnectionAddr, IntoConnectionInfo};

use crate::error::{Error, Result};

/// The scheme of a cluster's URL; the rest is seed nodes in `redis://` syntax.
const CLUSTER_SCHEME: &str = "redis+cluster://";

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

/// How to reach a Redis server, or the seed nodes of a Redis Cluster, and the bounds every
/// call keeps.
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
    /// The server, or a cluster's first seed node.
    pub(crate) addr: RedisAddr,
    /// A cluster's seed nodes (`addr` first); `None` for one server.
    pub(crate) seeds: Option<Vec<RedisAddr>>,
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
    /// speak, and is refused), or a Redis Cluster's
    /// `redis+cluster://[user[:password]@]host:port[,host:port...][/]`: the seed nodes the
    /// client learns the cluster's slot map from (any one that answers will do; the
    /// credentials apply to every node, and a cluster has only database 0).
    ///
    /// ```
    /// use lifeguard_core::cache::redis::RedisConfig;
    ///
    /// let config = RedisConfig::from_url("redis+cluster://10.0.0.1:7000,10.0.0.2:7000/")?;
    /// let seeds: Vec<String> = config.cluster_seeds().unwrap().iter().map(|a| a.to_string()).collect();
    /// assert_eq!(seeds, ["10.0.0.1:7000", "10.0.0.2:7000"]);
    /// assert!(RedisConfig::from_url("redis://10.0.0.1:6379/0")?.cluster_seeds().is_none());
    /// # Ok::<(), lifeguard_core::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming what is wrong, without repeating the URL (it may hold a
    /// password).
    pub fn from_url(url: &str) -> Result<RedisConfig> {
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            return RedisConfig::from_cluster_url(rest);
        }
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
            seeds: None,
            user: settings.username().map(str::to_owned),
            password: settings.password().map(str::to_owned),
            db: settings.db(),
            connections: 2,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_millis(250),
            max_backoff: Duration::from_secs(5),
        })
    }

    /// The part of a `redis+cluster://` URL after its scheme: each seed is parsed as the
    /// `redis://` URL it would be alone, so that credentials and hosts read alike.
    fn from_cluster_url(rest: &str) -> Result<RedisConfig> {
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (format!("{userinfo}@"), hosts),
            None => (String::new(), authority),
        };
        let mut seeds = Vec::new();
        let mut first: Option<RedisConfig> = None;
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(Error::config(
                    "invalid Redis URL: an empty cluster seed node",
                ));
            }
            let node = RedisConfig::from_url(&format!("redis://{userinfo}{host}/{path}"))?;
            if node.db != 0 {
                return Err(Error::config(
                    "invalid Redis URL: a Redis Cluster has only database 0",
                ));
            }
            seeds.push(node.addr.clone());
            first.get_or_insert(node);
        }
        let mut config = first.ok_or_else(|| Error::config("invalid Redis URL: no seed node"))?;
        config.seeds = Some(seeds);
        Ok(config)
    }

    /// The configuration of one node of this cluster (or of another server): the same
    /// credentials and bounds, at `addr`.
    pub(crate) fn node(&self, addr: RedisAddr) -> RedisConfig {
        RedisConfig {
            addr,
            seeds: None,
            ..self.clone()
        }
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

    /// The server's address (a cluster's first seed node).
    pub fn addr(&self) -> &RedisAddr {
        &self.addr
    }

    /// The seed nodes of a Redis Cluster (`redis+cluster://`); `None` for one server.
    pub fn cluster_seeds(&self) -> Option<&[RedisAddr]> {
        self.seeds.as_deref()
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
            .field(
                "cluster_seeds",
                &self
                    .seeds
                    .as_ref()
                    .map(|seeds| seeds.iter().map(ToString::to_string).collect::<Vec<_>>()),
            )
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
    fn parses_cluster_seed_nodes() {
        let c = RedisConfig::from_url("redis+cluster://u:p%40w@a:7000,b:7001,[::1]:7002/").unwrap();
        let seeds: Vec<String> = c
            .cluster_seeds()
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(seeds, ["a:7000", "b:7001", "::1:7002"]);
        assert_eq!(c.addr().to_string(), "a:7000");
        assert_eq!(
            (c.user(), c.password.as_deref(), c.db()),
            (Some("u"), Some("p@w"), 0)
        );
        let c = RedisConfig::from_url("redis+cluster://127.0.0.1:7000").unwrap();
        assert_eq!(c.cluster_seeds().map(<[_]>::len), Some(1));
        let node = c.node(RedisAddr::Tcp {
            host: "h".into(),
            port: 1,
        });
        assert!(node.cluster_seeds().is_none());
        assert!(format!("{c:?}").contains("127.0.0.1:7000"));
    }

    #[test]
    fn errors_do_not_echo_the_url() {
        for url in [
            "http://u:hunter2@h/0",
            "redis://u:hunter2@h/notanumber",
            "rediss://u:hunter2@h",
            "redis+cluster://u:hunter2@a:7000,,b:7001/",
            "redis+cluster://u:hunter2@a:7000/2",
            "redis+cluster://u:hunter2@/",
        ] {
            match RedisConfig::from_url(url) {
                Err(e) => assert!(!e.to_string().contains("hunter2"), "{e}"),
                Ok(c) => panic!("{url} parsed: {c:?}"),
            }
        }
    }
}
