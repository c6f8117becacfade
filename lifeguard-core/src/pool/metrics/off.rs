//! The pool's metrics without the `metrics` feature: every call the pool makes, recording
//! nothing. The signatures are those of the Prometheus-backed `PoolMetrics`.

use std::time::Duration;

use crate::error::Result;
use crate::pool::operation::Operation;
use crate::pool::{ReadPreference, Role};

/// Stands in for a server's waiters gauge.
pub(crate) struct Gauge;

impl Gauge {
    pub(crate) fn inc(&self) {}

    pub(crate) fn dec(&self) {}
}

/// The pool's metric handles; built without the `metrics` feature, they record nothing.
pub struct PoolMetrics {
    pool: String,
}

impl PoolMetrics {
    /// Handles that record nothing.
    pub(crate) fn new(name: &str) -> Result<PoolMetrics> {
        Ok(PoolMetrics {
            pool: name.to_owned(),
        })
    }

    /// Node labels name series, and there are none.
    pub(crate) fn with_node_labels(
        self,
        _labels: std::collections::HashMap<String, String>,
    ) -> PoolMetrics {
        self
    }

    /// The `pool` label value.
    pub fn pool(&self) -> &str {
        &self.pool
    }

    pub(crate) fn connections(&self, _node: &str, _idle: usize, _in_use: usize, _opening: usize) {}

    pub(crate) fn init_node(&self, _node: &str) {}

    pub(crate) fn max_connections(&self, _node: &str, _n: usize) {}

    pub(crate) fn waiters(&self, _node: &str) -> Gauge {
        Gauge
    }

    pub(crate) fn acquired(&self, _role: Role, _took: Duration) {}

    pub(crate) fn acquire_timeout(&self, _role: Role) {}

    pub(crate) fn opened(&self, _node: &str) {}

    pub(crate) fn connect_error(&self, _node: &str) {}

    pub(crate) fn closed(&self, _node: &str, _reason: &str) {}

    pub(crate) fn statement<T>(
        &self,
        _role: Role,
        _op: Operation,
        _took: Duration,
        _result: &Result<T>,
    ) {
    }

    pub(crate) fn node_state(&self, _node: &str, _from: &str, _to: &str) {}

    pub(crate) fn replica_sample(
        &self,
        _node: &str,
        _staleness: Duration,
        _lag_bytes: u64,
        _paused: bool,
    ) {
    }

    pub(crate) fn sample_age(&self, _node: &str, _age: Duration) {}

    pub(crate) fn routed(&self, _preference: ReadPreference, _target: Role, _reason: &str) {}

    pub(crate) fn fallback_rejected(&self) {}

    pub(crate) fn token_rejected(&self, _reason: &str) {}

    pub(crate) fn retried(&self, _reason: &str) {}

    pub(crate) fn consistency_wait(&self, _outcome: &str, _took: Duration) {}
}
