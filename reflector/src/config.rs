//! The reflector's settings, from the environment.

use std::time::Duration;

use lifeguard_core::cache::CacheConfig;

/// Everything a reflector process runs with.
///
/// ```
/// use std::time::Duration;
/// use lifeguard_reflector::ReflectorConfig;
///
/// let config = ReflectorConfig::new("postgres://postgres@127.0.0.1/app", "redis://127.0.0.1/0")
///     .namespace("shop")
///     .staleness_bound(Duration::from_secs(1));
/// assert_eq!(config.cache().get_staleness_bound(), Duration::from_secs(1));
/// ```
#[derive(Debug, Clone)]
pub struct ReflectorConfig {
    /// The primary, reached directly (not through a transaction-pooling PgBouncer: the
    /// leader's advisory lock and `LISTEN` live on one session).
    pub database_url: String,
    /// The Redis the application caches in.
    pub redis_url: String,
    /// The namespace and bound `B`, as the applications configure them.
    pub namespace: String,
    /// `B`.
    pub bound: Duration,
    /// The schema of the outbox and the registry (`CaptureOptions::schema`).
    pub capture_schema: String,
    /// The `search_path` of the reflector's session, for models that name no schema.
    pub search_path: Option<String>,
    /// How often the leader looks at the outbox when no notification wakes it.
    pub poll_interval: Duration,
    /// The most outbox rows one pass takes.
    pub batch: usize,
    /// How often a standby tries to become the leader.
    pub election_retry: Duration,
    /// How long the server keeps a session that sends nothing (`idle_session_timeout`):
    /// a leader that stops (`SIGSTOP`, a hung host) loses its lock, and a standby takes
    /// over, this long after its last query.
    pub session_timeout: Duration,
    /// How long consumed outbox rows are kept.
    pub retention: Duration,
    /// The HTTP address of `/metrics` and the health endpoints (`None`: no HTTP).
    pub listen: Option<String>,
    /// How many shards split the namespace's outbox by key hash, and which of them this
    /// process serves: each shard elects its own leader (its own lock, epoch, checkpoint
    /// and heartbeat); the applications must be told the count
    /// (`CacheConfig::reflector_shards`).
    pub shards: u32,
    /// This process's shard, below `shards`.
    pub shard: u32,
}

/// The environment variables [`ReflectorConfig::from_env`] reads, for `--help`.
pub const ENVIRONMENT: &str = "\
  LIFEGUARD_REFLECTOR_DATABASE_URL  the primary, direct (default: LIFEGUARD_PRIMARY_URL)
  LIFEGUARD_REFLECTOR_REDIS_URL     the cache's Redis (default: LIFEGUARD_CACHE_REDIS_URL)
  LIFEGUARD_CACHE_NAMESPACE         the applications' cache namespace (default lifeguard)
  LIFEGUARD_CACHE_STALENESS_MS      the bound B the applications use (default 2000)
  LIFEGUARD_CAPTURE_SCHEMA          schema of the outbox and registry (default public)
  LIFEGUARD_REFLECTOR_SEARCH_PATH   search_path for models without a schema (default: the capture schema, then public)
  LIFEGUARD_REFLECTOR_POLL_MS       outbox poll interval without a notification (default 100)
  LIFEGUARD_REFLECTOR_BATCH         outbox rows per pass (default 1000)
  LIFEGUARD_REFLECTOR_RETRY_MS      how often a standby tries to lead (default 1000)
  LIFEGUARD_REFLECTOR_SESSION_TIMEOUT_MS  a silent leader's session is ended after this (default 5000)
  LIFEGUARD_REFLECTOR_RETENTION_S   consumed outbox rows are kept this long (default 300)
  LIFEGUARD_REFLECTOR_LISTEN        HTTP address of /metrics and /health/* (default 127.0.0.1:9187; 'off' for none)
  LIFEGUARD_REFLECTOR_SHARDS        shards splitting the outbox by key hash, as the applications are told (default 1)
  LIFEGUARD_REFLECTOR_SHARD         the shard this process serves (default 0)";

impl ReflectorConfig {
    /// The defaults for a primary and a Redis.
    pub fn new(database_url: impl Into<String>, redis_url: impl Into<String>) -> Self {
        ReflectorConfig {
            database_url: database_url.into(),
            redis_url: redis_url.into(),
            namespace: "lifeguard".to_owned(),
            bound: Duration::from_secs(2),
            capture_schema: "public".to_owned(),
            search_path: None,
            poll_interval: Duration::from_millis(100),
            batch: 1000,
            election_retry: Duration::from_secs(1),
            session_timeout: Duration::from_secs(5),
            retention: Duration::from_secs(300),
            listen: None,
            shards: 1,
            shard: 0,
        }
    }

    /// The namespace.
    pub fn namespace(mut self, ns: impl Into<String>) -> Self {
        self.namespace = ns.into();
        self
    }

    /// The bound `B`.
    pub fn staleness_bound(mut self, bound: Duration) -> Self {
        self.bound = bound;
        self
    }

    /// The capture schema.
    pub fn capture_schema(mut self, schema: impl Into<String>) -> Self {
        self.capture_schema = schema.into();
        self
    }

    /// Reads the settings from the process environment ([`ENVIRONMENT`]).
    ///
    /// # Errors
    ///
    /// A missing URL, or a value that does not parse (named in the message).
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// As [`from_env`](Self::from_env), from any source of variables.
    ///
    /// # Errors
    ///
    /// As [`from_env`](Self::from_env).
    pub fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let either = |a: &str, b: &str| var(a).or_else(|| var(b));
        let database_url = either("LIFEGUARD_REFLECTOR_DATABASE_URL", "LIFEGUARD_PRIMARY_URL")
            .ok_or("set LIFEGUARD_REFLECTOR_DATABASE_URL to the primary's URL")?;
        let redis_url = either("LIFEGUARD_REFLECTOR_REDIS_URL", "LIFEGUARD_CACHE_REDIS_URL")
            .ok_or("set LIFEGUARD_REFLECTOR_REDIS_URL to the cache's Redis URL")?;
        let number = |name: &str, default: u64| -> Result<u64, String> {
            match var(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse()
                    .map_err(|_| format!("{name} must be a whole number, not {v:?}")),
            }
        };
        let millis = |name: &str, default: u64| number(name, default).map(Duration::from_millis);
        let mut config = ReflectorConfig::new(database_url, redis_url);
        if let Some(ns) = var("LIFEGUARD_CACHE_NAMESPACE") {
            config.namespace = ns;
        }
        config.bound = millis("LIFEGUARD_CACHE_STALENESS_MS", 2000)?;
        if let Some(schema) = var("LIFEGUARD_CAPTURE_SCHEMA") {
            config.capture_schema = schema;
        }
        config.search_path = var("LIFEGUARD_REFLECTOR_SEARCH_PATH");
        config.poll_interval = millis("LIFEGUARD_REFLECTOR_POLL_MS", 100)?;
        config.batch = number("LIFEGUARD_REFLECTOR_BATCH", 1000)?
            .try_into()
            .map_err(|_| "LIFEGUARD_REFLECTOR_BATCH is too large")?;
        config.election_retry = millis("LIFEGUARD_REFLECTOR_RETRY_MS", 1000)?;
        config.session_timeout = millis("LIFEGUARD_REFLECTOR_SESSION_TIMEOUT_MS", 5000)?;
        config.retention = Duration::from_secs(number("LIFEGUARD_REFLECTOR_RETENTION_S", 300)?);
        config.listen = match var("LIFEGUARD_REFLECTOR_LISTEN") {
            Some(v) if v == "off" => None,
            Some(v) => Some(v),
            None => Some("127.0.0.1:9187".to_owned()),
        };
        let small = |name: &str, default: u64| -> Result<u32, String> {
            u32::try_from(number(name, default)?).map_err(|_| format!("{name} is too large"))
        };
        config.shards = small("LIFEGUARD_REFLECTOR_SHARDS", 1)?;
        config.shard = small("LIFEGUARD_REFLECTOR_SHARD", 0)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks that the settings can keep the bound.
    ///
    /// # Errors
    ///
    /// A setting that would let the bound or the election misbehave, named.
    pub fn validate(&self) -> Result<(), String> {
        if self.batch == 0 {
            return Err("the batch must hold at least one row".into());
        }
        if self.shards == 0 || self.shard >= self.shards {
            return Err(format!(
                "shard {} of {} does not exist (shards are numbered from 0)",
                self.shard, self.shards
            ));
        }
        if self.heartbeat_life() < self.poll_interval * 2 {
            return Err(format!(
                "a staleness bound of {:?} leaves the heartbeat {:?} to live, less than two polls of {:?}",
                self.bound,
                self.heartbeat_life(),
                self.poll_interval
            ));
        }
        // Both roles query at least this often, so the server's idle timeout ends only a
        // session whose process has stopped.
        let busiest_gap = self.poll_interval.max(self.election_retry);
        if self.session_timeout < busiest_gap * 2 {
            return Err(format!(
                "the session timeout {:?} must be at least twice the poll and retry intervals ({busiest_gap:?})",
                self.session_timeout
            ));
        }
        Ok(())
    }

    /// The cache settings the applications of this namespace use.
    pub fn cache(&self) -> CacheConfig {
        CacheConfig::new(self.namespace.clone())
            .staleness_bound(self.bound)
            .reflector_shards(self.shards)
    }

    /// The name this process's shard consumes the outbox under: the namespace, or
    /// `<namespace>#<shard>/<shards>` when it is split.
    pub fn consumer(&self) -> String {
        match self.shards {
            1 => self.namespace.clone(),
            n => format!("{}#{}/{n}", self.namespace, self.shard),
        }
    }

    /// How long a heartbeat lives, and the longest a pass may take for its heartbeat to be
    /// written: together with the readers' trust in a lookup they make up `B`. A value
    /// read under a heartbeat written after a pass that started at `S` reflects every
    /// commit before `S`, and is read before `S + pass + life + trust <= B`.
    pub fn heartbeat_life(&self) -> Duration {
        self.bound.saturating_sub(self.cache().heartbeat_trust()) / 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(vars: &[(&str, &str)]) -> Result<ReflectorConfig, String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ReflectorConfig::from_lookup(|name| map.get(name).cloned())
    }

    const URLS: [(&str, &str); 2] = [
        ("LIFEGUARD_PRIMARY_URL", "postgres://p@h/db"),
        ("LIFEGUARD_CACHE_REDIS_URL", "redis://h/0"),
    ];

    #[test]
    fn defaults_and_fallback_urls() {
        let c = from(&URLS).unwrap();
        assert_eq!(c.database_url, "postgres://p@h/db");
        assert_eq!(c.namespace, "lifeguard");
        assert_eq!(c.bound, Duration::from_secs(2));
        assert_eq!(c.listen.as_deref(), Some("127.0.0.1:9187"));
        // B = 2 s, readers trust a lookup for 250 ms: a pass and a heartbeat get 875 ms each.
        assert_eq!(c.heartbeat_life(), Duration::from_millis(875));
    }

    #[test]
    fn bad_values_are_named() {
        let mut vars = URLS.to_vec();
        vars.push(("LIFEGUARD_REFLECTOR_POLL_MS", "soon"));
        assert!(from(&vars)
            .unwrap_err()
            .contains("LIFEGUARD_REFLECTOR_POLL_MS"));
        assert!(from(&URLS[1..]).unwrap_err().contains("DATABASE_URL"));
        let mut vars = URLS.to_vec();
        vars.push(("LIFEGUARD_CACHE_STALENESS_MS", "300"));
        assert!(from(&vars).unwrap_err().contains("heartbeat"));
        let mut vars = URLS.to_vec();
        vars.push(("LIFEGUARD_REFLECTOR_SESSION_TIMEOUT_MS", "1500"));
        assert!(from(&vars).unwrap_err().contains("session timeout"));
        let mut vars = URLS.to_vec();
        vars.push(("LIFEGUARD_REFLECTOR_SHARDS", "2"));
        vars.push(("LIFEGUARD_REFLECTOR_SHARD", "2"));
        assert!(from(&vars).unwrap_err().contains("shard 2 of 2"));
        vars.pop();
        vars.push(("LIFEGUARD_REFLECTOR_SHARD", "1"));
        assert_eq!(from(&vars).unwrap().consumer(), "lifeguard#1/2");
    }
}
