//! The pool's series on a Prometheus registry (the `metrics` feature).

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry,
};

use super::error_class;
use crate::error::{Error, Result};
use crate::pool::operation::{Operation, OPERATIONS};
use crate::pool::{ReadPreference, Role};

/// A gauge resolved for one label set.
pub(crate) type Gauge = prometheus::IntGauge;

/// Latency buckets from 100 µs to 10 s: pipelined point reads sit at the low end.
const BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The pool's metric handles, registered once per pool.
pub struct PoolMetrics {
    pool: String,
    registry: Registry,
    connections: IntGaugeVec,
    max_connections: IntGaugeVec,
    waiters: IntGaugeVec,
    acquire: [Histogram; 2],
    acquire_timeouts: [IntCounter; 2],
    opened: IntCounterVec,
    connect_errors: IntCounterVec,
    closed: IntCounterVec,
    query_vec: HistogramVec,
    /// `lifeguard_query_duration_seconds` by role and operation, each resolved on first
    /// use (so only operations that ran are exported) and lock-free after that.
    query: [[OnceLock<Histogram>; OPERATIONS.len()]; 2],
    query_errors: IntCounterVec,
    cancellations: [IntCounter; 2],
    commit_unknown: IntCounter,
    node_state: IntGaugeVec,
    transitions: IntCounterVec,
    staleness: prometheus::GaugeVec,
    lag_bytes: IntGaugeVec,
    paused: IntGaugeVec,
    sample_age: prometheus::GaugeVec,
    /// Every (preference, target, reason) counter of `lifeguard_read_routed_total`.
    routed_by: Vec<IntCounter>,
    fallback_rejected: IntCounter,
    /// The `node` label of each server whose configuration names one, by `host:port`.
    node_labels: HashMap<String, String>,
    token_rejected: IntCounterVec,
    retries: IntCounterVec,
    consistency_wait: HistogramVec,
}

/// The `reason` values of `lifeguard_read_routed_total`.
pub(crate) const ROUTE_REASONS: [&str; 5] = [
    "eligible",
    "token_unsatisfied",
    "stale",
    "no_replica",
    "pinned",
];

/// Preferences in declaration order, so `pref as usize` indexes them.
const PREFERENCES: [ReadPreference; 5] = [
    ReadPreference::Primary,
    ReadPreference::PrimaryPreferred,
    ReadPreference::Replica,
    ReadPreference::ReplicaPreferred,
    ReadPreference::Nearest,
];

fn role_index(role: Role) -> usize {
    match role {
        Role::Primary => 0,
        Role::Replica => 1,
    }
}

fn metric_error(e: prometheus::Error) -> Error {
    Error::config(format!("metrics registration failed: {e}"))
}

impl PoolMetrics {
    /// Registers the pool's series on a registry of their own.
    pub(crate) fn new(name: &str) -> Result<PoolMetrics> {
        PoolMetrics::register(&Registry::new(), name)
    }

    /// Registers the pool's series on `registry` under the `pool` label `name`.
    pub fn register(registry: &Registry, name: &str) -> Result<PoolMetrics> {
        let reg =
            |c: Box<dyn prometheus::core::Collector>| registry.register(c).map_err(metric_error);
        let opts = |n: &str, help: &str| Opts::new(n, help).const_label("pool", name);
        let hopts = |n: &str, help: &str| {
            HistogramOpts::new(n, help)
                .const_label("pool", name)
                .buckets(BUCKETS.to_vec())
        };
        macro_rules! make {
            ($ty:ident, $opts:expr, $labels:expr) => {{
                let m = prometheus::$ty::new($opts, $labels).map_err(metric_error)?;
                reg(Box::new(m.clone()))?;
                m
            }};
        }
        let connections = make!(
            IntGaugeVec,
            opts("lifeguard_pool_connections", "Connections by state."),
            &["node", "state"]
        );
        let max_connections = make!(
            IntGaugeVec,
            opts(
                "lifeguard_pool_max_connections",
                "Connection limit per server."
            ),
            &["node"]
        );
        let waiters = make!(
            IntGaugeVec,
            opts(
                "lifeguard_pool_waiters",
                "Callers waiting for a connection."
            ),
            &["node"]
        );
        let acquire_vec = make!(
            HistogramVec,
            hopts(
                "lifeguard_pool_acquire_duration_seconds",
                "Time to get a connection."
            ),
            &["role"]
        );
        let timeouts_vec = make!(
            IntCounterVec,
            opts(
                "lifeguard_pool_acquire_timeouts_total",
                "Acquires that timed out."
            ),
            &["role"]
        );
        let opened = make!(
            IntCounterVec,
            opts(
                "lifeguard_pool_connections_opened_total",
                "Connections opened."
            ),
            &["node"]
        );
        let connect_errors = make!(
            IntCounterVec,
            opts(
                "lifeguard_pool_connect_errors_total",
                "Failed connection attempts."
            ),
            &["node"]
        );
        let closed = make!(
            IntCounterVec,
            opts(
                "lifeguard_pool_connections_closed_total",
                "Connections closed, by reason."
            ),
            &["node", "reason"]
        );
        let query_vec = make!(
            HistogramVec,
            hopts(
                "lifeguard_query_duration_seconds",
                "Statement duration, by role and operation (the first SQL keyword)."
            ),
            &["role", "operation"]
        );
        let query_errors = make!(
            IntCounterVec,
            opts(
                "lifeguard_query_errors_total",
                "Failed statements by class."
            ),
            &["role", "class"]
        );
        let cancel_vec = make!(
            IntCounterVec,
            opts(
                "lifeguard_query_cancellations_total",
                "Statements cancelled at their deadline."
            ),
            &["role"]
        );
        let commit_unknown = IntCounter::with_opts(opts(
            "lifeguard_commit_outcome_unknown_total",
            "Writes whose commit outcome is unknown.",
        ))
        .map_err(metric_error)?;
        reg(Box::new(commit_unknown.clone()))?;
        let node_state = make!(
            IntGaugeVec,
            opts("lifeguard_node_state", "1 for each server's current state."),
            &["node", "state"]
        );
        let transitions = make!(
            IntCounterVec,
            opts(
                "lifeguard_node_state_transitions_total",
                "Server state changes."
            ),
            &["node", "from", "to"]
        );
        let staleness = make!(
            GaugeVec,
            opts(
                "lifeguard_replica_staleness_seconds",
                "Upper bound of a replica's staleness."
            ),
            &["node"]
        );
        let lag_bytes = make!(
            IntGaugeVec,
            opts(
                "lifeguard_replica_replay_lag_bytes",
                "Primary flush LSN minus replica replay LSN."
            ),
            &["node"]
        );
        let paused = make!(
            IntGaugeVec,
            opts(
                "lifeguard_replica_replay_paused",
                "1 when replay is paused."
            ),
            &["node"]
        );
        let sample_age = make!(
            GaugeVec,
            opts(
                "lifeguard_node_monitor_sample_age_seconds",
                "Age of the newest monitor sample."
            ),
            &["node"]
        );
        let routed = make!(
            IntCounterVec,
            opts(
                "lifeguard_read_routed_total",
                "Reads routed, by target and reason."
            ),
            &["preference", "target", "reason"]
        );
        let fallback_rejected = IntCounter::with_opts(opts(
            "lifeguard_read_fallback_rejected_total",
            "Reads refused because the primary fallback budget was spent.",
        ))
        .map_err(metric_error)?;
        reg(Box::new(fallback_rejected.clone()))?;
        let token_rejected = make!(
            IntCounterVec,
            opts(
                "lifeguard_consistency_token_rejected_total",
                "Consistency tokens this cluster cannot have issued, by reason."
            ),
            &["reason"]
        );
        for reason in ["foreign_system", "future_lsn"] {
            token_rejected.with_label_values(&[reason]);
        }
        let retries = make!(
            IntCounterVec,
            opts(
                "lifeguard_read_retries_total",
                "Reads retried on another server."
            ),
            &["reason"]
        );
        let consistency_wait = make!(
            HistogramVec,
            hopts(
                "lifeguard_consistency_wait_duration_seconds",
                "Waits for a replica to reach a token."
            ),
            &["outcome"]
        );
        let mut routed_by = Vec::new();
        for pref in PREFERENCES {
            for target in [Role::Primary, Role::Replica] {
                for reason in ROUTE_REASONS {
                    routed_by.push(routed.with_label_values(&[
                        pref.as_str(),
                        target.as_str(),
                        reason,
                    ]));
                }
            }
        }
        let by_role_h = |v: &HistogramVec| {
            [
                v.with_label_values(&["primary"]),
                v.with_label_values(&["replica"]),
            ]
        };
        let by_role_c = |v: &IntCounterVec| {
            [
                v.with_label_values(&["primary"]),
                v.with_label_values(&["replica"]),
            ]
        };
        Ok(PoolMetrics {
            pool: name.to_owned(),
            registry: registry.clone(),
            connections,
            max_connections,
            waiters,
            acquire: by_role_h(&acquire_vec),
            acquire_timeouts: by_role_c(&timeouts_vec),
            opened,
            connect_errors,
            closed,
            query: std::array::from_fn(|_| std::array::from_fn(|_| OnceLock::new())),
            query_vec,
            query_errors,
            cancellations: by_role_c(&cancel_vec),
            commit_unknown,
            node_state,
            transitions,
            staleness,
            lag_bytes,
            paused,
            sample_age,
            routed_by,
            fallback_rejected,
            node_labels: HashMap::new(),
            token_rejected,
            retries,
            consistency_wait,
        })
    }

    /// The `pool` label value.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    /// Labels the series of the servers in `labels` (by `host:port`) with the names given.
    pub(crate) fn with_node_labels(mut self, labels: HashMap<String, String>) -> PoolMetrics {
        self.node_labels = labels;
        self
    }

    /// The `node` label of the server `node` (`host:port`).
    fn label<'a>(&'a self, node: &'a str) -> &'a str {
        self.node_labels.get(node).map_or(node, String::as_str)
    }

    /// The registry the series are on.
    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn connections(&self, node: &str, idle: usize, in_use: usize, opening: usize) {
        for (state, n) in [("idle", idle), ("in_use", in_use), ("opening", opening)] {
            self.connections
                .with_label_values(&[self.label(node), state])
                .set(n as i64);
        }
    }

    /// Creates a server's series at zero, so dashboards show them before the first event.
    pub(crate) fn init_node(&self, node: &str) {
        self.waiters.with_label_values(&[self.label(node)]).set(0);
        self.connect_errors.with_label_values(&[self.label(node)]);
        self.opened.with_label_values(&[self.label(node)]);
        for reason in [
            "max_lifetime",
            "idle_timeout",
            "broken",
            "validation_failed",
            "reset_failed",
            "session_state",
            "shutdown",
        ] {
            self.closed.with_label_values(&[self.label(node), reason]);
        }
    }

    pub(crate) fn max_connections(&self, node: &str, n: usize) {
        self.max_connections
            .with_label_values(&[self.label(node)])
            .set(n as i64);
    }

    /// The waiters gauge of one server, resolved once: it moves on every wait.
    pub(crate) fn waiters(&self, node: &str) -> Gauge {
        self.waiters.with_label_values(&[self.label(node)])
    }

    pub(crate) fn acquired(&self, role: Role, took: Duration) {
        self.acquire[role_index(role)].observe(took.as_secs_f64());
    }

    pub(crate) fn acquire_timeout(&self, role: Role) {
        self.acquire_timeouts[role_index(role)].inc();
    }

    pub(crate) fn opened(&self, node: &str) {
        self.opened.with_label_values(&[self.label(node)]).inc();
    }

    pub(crate) fn connect_error(&self, node: &str) {
        self.connect_errors
            .with_label_values(&[self.label(node)])
            .inc();
    }

    pub(crate) fn closed(&self, node: &str, reason: &str) {
        self.closed
            .with_label_values(&[self.label(node), reason])
            .inc();
    }

    /// Records a finished statement and classifies its error, if any.
    pub(crate) fn statement<T>(
        &self,
        role: Role,
        op: Operation,
        took: Duration,
        result: &Result<T>,
    ) {
        let i = role_index(role);
        self.query[i][op.index()]
            .get_or_init(|| {
                self.query_vec
                    .with_label_values(&[role.as_str(), op.as_str()])
            })
            .observe(took.as_secs_f64());
        if let Err(e) = result {
            let class = error_class(e);
            if class == "timeout" {
                self.cancellations[i].inc();
            }
            if matches!(e, Error::CommitOutcomeUnknown(_)) {
                self.commit_unknown.inc();
            }
            self.query_errors
                .with_label_values(&[role.as_str(), class])
                .inc();
        }
    }

    pub(crate) fn node_state(&self, node: &str, from: &str, to: &str) {
        if from != to {
            self.node_state
                .with_label_values(&[self.label(node), from])
                .set(0);
            self.transitions
                .with_label_values(&[self.label(node), from, to])
                .inc();
        }
        self.node_state
            .with_label_values(&[self.label(node), to])
            .set(1);
    }

    pub(crate) fn replica_sample(
        &self,
        node: &str,
        staleness: Duration,
        lag_bytes: u64,
        paused: bool,
    ) {
        self.staleness
            .with_label_values(&[self.label(node)])
            .set(staleness.as_secs_f64());
        self.lag_bytes
            .with_label_values(&[self.label(node)])
            .set(i64::try_from(lag_bytes).unwrap_or(i64::MAX));
        self.paused
            .with_label_values(&[self.label(node)])
            .set(i64::from(paused));
    }

    pub(crate) fn sample_age(&self, node: &str, age: Duration) {
        self.sample_age
            .with_label_values(&[self.label(node)])
            .set(age.as_secs_f64());
    }

    /// Counts a routed read. Runs on every pooled read, so the counters are resolved once
    /// at registration rather than by label lookup here.
    pub(crate) fn routed(&self, preference: ReadPreference, target: Role, reason: &str) {
        let r = ROUTE_REASONS.iter().position(|x| *x == reason).unwrap_or(0);
        let i = (preference as usize * 2 + role_index(target)) * ROUTE_REASONS.len() + r;
        if let Some(counter) = self.routed_by.get(i) {
            counter.inc();
        }
    }

    pub(crate) fn fallback_rejected(&self) {
        self.fallback_rejected.inc();
    }

    pub(crate) fn token_rejected(&self, reason: &str) {
        self.token_rejected.with_label_values(&[reason]).inc();
    }

    pub(crate) fn retried(&self, reason: &str) {
        self.retries.with_label_values(&[reason]).inc();
    }

    pub(crate) fn consistency_wait(&self, outcome: &str, took: Duration) {
        self.consistency_wait
            .with_label_values(&[outcome])
            .observe(took.as_secs_f64());
    }
}
