//! Pool configuration, from code or from the environment, validated before anything opens.

use std::time::Duration;

use crate::error::{Error, Result};
use crate::pg::Config;

/// Everything a [`Pool`](super::Pool) needs: the servers and the policies.
///
/// ```
/// use std::time::Duration;
/// use lifeguard_core::pool::PoolConfig;
///
/// let config = PoolConfig::new("postgres://app@10.0.0.1/orders".parse()?)
///     .replica("postgres://app@10.0.0.2/orders".parse()?)
///     .max_size(8)
///     .default_max_staleness(Duration::from_millis(500));
/// config.validate()?;
/// // A bound tighter than two monitor samples cannot be honoured, so it is refused.
/// assert!(config.clone().default_max_staleness(Duration::from_millis(100)).validate().is_err());
/// # Ok::<(), lifeguard_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct PoolConfig {
    pub(crate) primary: Config,
    pub(crate) replicas: Vec<Config>,
    pub(crate) max_size: usize,
    pub(crate) min_idle: usize,
    pub(crate) acquire_timeout: Duration,
    pub(crate) max_lifetime: Option<Duration>,
    pub(crate) lifetime_jitter: f64,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) validate_after_idle: Duration,
    pub(crate) monitor_interval: Duration,
    pub(crate) default_max_staleness: Duration,
    pub(crate) history_window: Duration,
    pub(crate) fallback_max_inflight: Option<usize>,
    pub(crate) lsn_wait: Duration,
    pub(crate) statement_timeout: Option<Duration>,
    pub(crate) pipeline_depth: Option<usize>,
    pub(crate) idle_in_transaction_timeout: Option<Duration>,
    pub(crate) name: String,
    pub(crate) slow_statement_threshold: Option<Duration>,
    pub(crate) liveness_probe: Option<Duration>,
    /// The `node` metric label of the primary, when named.
    pub(crate) primary_label: Option<String>,
    /// The `node` metric label of each replica (in `replicas` order), when named.
    pub(crate) replica_labels: Vec<Option<String>>,
}

impl PoolConfig {
    /// A pool over `primary` alone, with the defaults of the pool spec (§2.9).
    pub fn new(primary: Config) -> PoolConfig {
        PoolConfig {
            primary,
            replicas: Vec::new(),
            max_size: 10,
            min_idle: 0,
            acquire_timeout: Duration::from_secs(2),
            max_lifetime: Some(Duration::from_secs(30 * 60)),
            lifetime_jitter: 0.10,
            idle_timeout: Some(Duration::from_secs(10 * 60)),
            validate_after_idle: Duration::from_secs(1),
            monitor_interval: Duration::from_millis(250),
            default_max_staleness: Duration::from_secs(1),
            history_window: Duration::from_secs(60),
            fallback_max_inflight: None,
            lsn_wait: Duration::ZERO,
            statement_timeout: Some(Duration::from_secs(30)),
            pipeline_depth: None,
            idle_in_transaction_timeout: Some(Duration::from_secs(60)),
            name: "default".into(),
            slow_statement_threshold: Some(Duration::from_secs(1)),
            liveness_probe: Some(crate::pg::DEFAULT_LIVENESS_PROBE),
            primary_label: None,
            replica_labels: Vec::new(),
        }
    }

    /// Reads `LIFEGUARD_PRIMARY_URL` and `LIFEGUARD_REPLICA_URLS` (comma-separated), plus the
    /// optional `LIFEGUARD_POOL_MAX_SIZE`, `LIFEGUARD_POOL_ACQUIRE_TIMEOUT_MS`,
    /// `LIFEGUARD_POOL_MAX_STALENESS_MS` and `LIFEGUARD_SLOW_STATEMENT_MS` (0 turns the
    /// slow-statement log off).
    pub fn from_env() -> Result<PoolConfig> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let primary = var("LIFEGUARD_PRIMARY_URL")
            .ok_or_else(|| Error::config("LIFEGUARD_PRIMARY_URL is not set"))?;
        let mut config = PoolConfig::new(Config::parse(&primary)?);
        if let Some(list) = var("LIFEGUARD_REPLICA_URLS") {
            for url in list.split(',').map(str::trim).filter(|u| !u.is_empty()) {
                config = config.replica(Config::parse(url)?);
            }
        }
        let number = |name: &str| -> Result<Option<u64>> {
            var(name)
                .map(|v| {
                    v.trim()
                        .parse::<u64>()
                        .map_err(|_| Error::config(format!("{name}={v:?} is not a whole number")))
                })
                .transpose()
        };
        if let Some(n) = number("LIFEGUARD_POOL_MAX_SIZE")? {
            config = config.max_size(n as usize);
        }
        if let Some(ms) = number("LIFEGUARD_POOL_ACQUIRE_TIMEOUT_MS")? {
            config = config.acquire_timeout(Duration::from_millis(ms));
        }
        if let Some(ms) = number("LIFEGUARD_POOL_MAX_STALENESS_MS")? {
            config = config.default_max_staleness(Duration::from_millis(ms));
        }
        if let Some(ms) = number("LIFEGUARD_SLOW_STATEMENT_MS")? {
            config = config.slow_statement_threshold((ms > 0).then(|| Duration::from_millis(ms)));
        }
        Ok(config)
    }

    /// Adds a streaming replica.
    pub fn replica(mut self, replica: Config) -> Self {
        self.replicas.push(replica);
        self.replica_labels.push(None);
        self
    }

    /// Adds a streaming replica whose metrics carry `label` as their `node` label instead
    /// of its `host:port` (see [`PoolConfig::primary_label`]).
    pub fn replica_labeled(mut self, replica: Config, label: impl Into<String>) -> Self {
        self.replicas.push(replica);
        self.replica_labels.push(Some(label.into()));
        self
    }

    /// The `node` label of the primary's metrics, instead of its `host:port`.
    ///
    /// By default every server's series are labelled with its `host:port` (spec §2.8), which
    /// is what dashboards key on; a `/metrics` endpoint reachable by others then tells them
    /// where the databases are. Naming each server keeps addresses out of the metrics (the
    /// labels must be distinct; logs and errors still name `host:port`).
    ///
    /// ```
    /// # use lifeguard_core::pg::Config;
    /// # use lifeguard_core::pool::PoolConfig;
    /// let config = PoolConfig::new("postgres://app@10.0.0.1/orders".parse()?)
    ///     .primary_label("orders-primary")
    ///     .replica_labeled("postgres://app@10.0.0.2/orders".parse()?, "orders-replica-a");
    /// config.validate()?;
    /// # Ok::<(), lifeguard_core::Error>(())
    /// ```
    pub fn primary_label(mut self, label: impl Into<String>) -> Self {
        self.primary_label = Some(label.into());
        self
    }

    /// The `node` label of each server, by its `host:port`, for the servers that have one.
    pub(crate) fn node_labels(&self) -> std::collections::HashMap<String, String> {
        std::iter::once((&self.primary, &self.primary_label))
            .chain(self.replicas.iter().zip(&self.replica_labels))
            .filter_map(|(c, label)| Some((c.display_target(), label.clone()?)))
            .collect()
    }

    /// Connections per server (default 10).
    pub fn max_size(mut self, n: usize) -> Self {
        self.max_size = n;
        self
    }

    /// Connections each server keeps open even when idle (default 0).
    pub fn min_idle(mut self, n: usize) -> Self {
        self.min_idle = n;
        self
    }

    /// The longest a caller waits for a connection (default 2 s). It also bounds opening
    /// one (connect and start-up) when the server's URL sets no `connect_timeout`.
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Retire connections after this age, ± `jitter` (a fraction, default 0.1), so a fleet
    /// does not reconnect all at once; `None` keeps them forever.
    pub fn max_lifetime(mut self, lifetime: Option<Duration>, jitter: f64) -> Self {
        self.max_lifetime = lifetime;
        self.lifetime_jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Close connections idle this long, down to `min_idle` (default 10 min).
    pub fn idle_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// Ping a connection idle longer than this before handing it out (default 1 s).
    pub fn validate_after_idle(mut self, idle: Duration) -> Self {
        self.validate_after_idle = idle;
        self
    }

    /// How often each server's WAL position is sampled (default 250 ms).
    pub fn monitor_interval(mut self, interval: Duration) -> Self {
        self.monitor_interval = interval;
        self
    }

    /// The staleness a read accepts unless it says otherwise (default 1 s).
    pub fn default_max_staleness(mut self, bound: Duration) -> Self {
        self.default_max_staleness = bound;
        self
    }

    /// How far back the primary's WAL history is kept for measuring staleness (default 60 s).
    pub fn history_window(mut self, window: Duration) -> Self {
        self.history_window = window;
        self
    }

    /// The primary's fallback budget: while the primary is saturated (a request in flight
    /// or a lease on each of its `max_size` connections), at most this many reads that
    /// prefer a replica and find none eligible run there at once (default a quarter of
    /// `max_size`, at least 1). The others queue for a unit within their deadline and fail
    /// with `NoEligibleNode` only when it passes. While the primary has room, fallback reads
    /// need no unit: the budget sheds load from a busy primary, not from a healthy one.
    pub fn fallback_max_inflight(mut self, n: usize) -> Self {
        self.fallback_max_inflight = Some(n);
        self
    }

    /// At most `n` requests in flight on one shared connection (default: no limit). Past
    /// it, callers wait in arrival order for the first connection to answer one, instead
    /// of queueing behind a connection that may be stalled: under saturation this trades
    /// a little throughput for a shorter tail.
    ///
    /// ```
    /// # use lifeguard_core::pg::Config;
    /// # use lifeguard_core::pool::PoolConfig;
    /// let config = PoolConfig::new(Config::new()).max_size(4).pipeline_depth(8);
    /// ```
    pub fn pipeline_depth(mut self, n: usize) -> Self {
        self.pipeline_depth = Some(n.max(1));
        self
    }

    /// How long a read with a consistency token may wait for a replica to catch up before
    /// going to the primary (default 0: no wait).
    pub fn lsn_wait(mut self, wait: Duration) -> Self {
        self.lsn_wait = wait;
        self
    }

    /// Session defaults for every pooled connection: the server cancels statements running
    /// longer than `statement` (default 30 s) and ends sessions idle inside a transaction
    /// longer than `idle_in_transaction` (default 60 s). `None` leaves the server's setting.
    pub fn session_timeouts(
        mut self,
        statement: Option<Duration>,
        idle_in_transaction: Option<Duration>,
    ) -> Self {
        self.statement_timeout = statement;
        self.idle_in_transaction_timeout = idle_in_transaction;
        self
    }

    /// The server-side statement timeout of every pooled session
    /// ([`session_timeouts`](Self::session_timeouts)); `None` when the server's own setting
    /// applies.
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }

    /// Statements through the pool that take at least `threshold` (default 1 s) are logged
    /// at WARN, target `lifeguard::statement`, with their duration, operation, server and
    /// SQL text (never parameter values; past 2 KiB the text is cut); `None` logs none.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use lifeguard_core::pg::Config;
    /// # use lifeguard_core::pool::PoolConfig;
    /// let config = PoolConfig::new(Config::new())
    ///     .slow_statement_threshold(Some(Duration::from_millis(250)));
    /// ```
    pub fn slow_statement_threshold(mut self, threshold: Option<Duration>) -> Self {
        self.slow_statement_threshold = threshold;
        self
    }

    /// How long a pooled connection may receive nothing while a request is in flight
    /// before it checks on its server (default 15 s); see
    /// [`Connection::set_liveness_probe`](crate::pg::Connection::set_liveness_probe).
    /// `None` turns the check off.
    pub fn liveness_probe(mut self, after: Option<Duration>) -> Self {
        self.liveness_probe = after;
        self
    }

    /// The `pool` label on metrics (default `default`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The `options` start-up parameter carrying the session defaults, after any the
    /// server's configuration already had.
    pub(crate) fn session_options(&self, existing: Option<&str>) -> Option<String> {
        let mut parts: Vec<String> = existing.map(str::to_owned).into_iter().collect();
        if let Some(t) = self.statement_timeout {
            parts.push(format!("-c statement_timeout={}", t.as_millis()));
        }
        if let Some(t) = self.idle_in_transaction_timeout {
            parts.push(format!(
                "-c idle_in_transaction_session_timeout={}",
                t.as_millis()
            ));
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    pub(crate) fn fallback_limit(&self) -> usize {
        self.fallback_max_inflight
            .unwrap_or_else(|| (self.max_size / 4).max(1))
    }

    /// Checks the settings against each other; [`Pool::connect`](super::Pool::connect) calls it.
    pub fn validate(&self) -> Result<()> {
        if self.max_size == 0 {
            return Err(Error::config("max_size must be at least 1"));
        }
        if self.min_idle > self.max_size {
            return Err(Error::config(format!(
                "min_idle ({}) exceeds max_size ({})",
                self.min_idle, self.max_size
            )));
        }
        if self.monitor_interval.is_zero() {
            return Err(Error::config("monitor_interval must be positive"));
        }
        if self.default_max_staleness < self.monitor_interval * 2 {
            return Err(Error::config(format!(
                "default_max_staleness ({:?}) must be at least twice the monitor interval ({:?}): a tighter bound cannot be verified",
                self.default_max_staleness, self.monitor_interval
            )));
        }
        if self.history_window < self.default_max_staleness {
            return Err(Error::config(format!(
                "history_window ({:?}) must cover default_max_staleness ({:?})",
                self.history_window, self.default_max_staleness
            )));
        }
        if self.acquire_timeout.is_zero() {
            return Err(Error::config("acquire_timeout must be positive"));
        }
        self.validate_labels()
    }

    /// Node labels given must be non-empty and tell their servers apart from the others,
    /// or their series would merge.
    fn validate_labels(&self) -> Result<()> {
        let all: Vec<(String, bool)> = std::iter::once((&self.primary, &self.primary_label))
            .chain(self.replicas.iter().zip(&self.replica_labels))
            .map(|(c, label)| match label {
                Some(label) => (label.clone(), true),
                None => (c.display_target(), false),
            })
            .collect();
        for (label, _) in all.iter().filter(|(_, named)| *named) {
            if label.trim().is_empty() {
                return Err(Error::config("a node label is empty"));
            }
            if all.iter().filter(|(l, _)| l == label).count() > 1 {
                return Err(Error::config(format!(
                    "two servers share the node label {label:?}"
                )));
            }
        }
        Ok(())
    }
}
