//! The reflector's Prometheus series (spec §3.10).

use prometheus::{
    Gauge, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Every series a reflector exports.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) is_leader: IntGauge,
    pub(crate) epoch: IntGauge,
    pub(crate) generation: IntGauge,
    pub(crate) leader_changes: IntCounter,
    pub(crate) events: IntCounterVec,
    pub(crate) lag: Gauge,
    pub(crate) checkpoint_lag: Gauge,
    pub(crate) backlog: IntGauge,
    pub(crate) batch_duration: Histogram,
    pub(crate) refresh_latency: Histogram,
    pub(crate) wakeups: IntCounterVec,
    pub(crate) redis_resets: IntCounter,
    pub(crate) generation_bumps: IntCounterVec,
    pub(crate) notification_queue: Gauge,
    pub(crate) errors: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> prometheus::Result<Metrics> {
        let gauge = |name: &str, help: &str| IntGauge::new(name, help);
        let counter_vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let seconds = |name: &str, help: &str| {
            Histogram::with_opts(HistogramOpts::new(name, help).buckets(vec![
                0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0,
            ]))
        };
        let m = Metrics {
            is_leader: gauge(
                "lifeguard_reflector_is_leader",
                "1 while this process leads",
            )?,
            epoch: gauge(
                "lifeguard_reflector_epoch",
                "The epoch this process leads with",
            )?,
            generation: gauge("lifeguard_reflector_generation", "The key generation")?,
            leader_changes: IntCounter::new(
                "lifeguard_reflector_leader_changes_total",
                "Times this process became the leader",
            )?,
            events: counter_vec(
                "lifeguard_reflector_events_total",
                "Changed keys reflected, by what the script did",
                &["result"],
            )?,
            lag: Gauge::new(
                "lifeguard_reflector_lag_seconds",
                "Age of the oldest committed change not yet reflected (must stay below B)",
            )?,
            checkpoint_lag: Gauge::new(
                "lifeguard_reflector_checkpoint_lag_seconds",
                "Age of the oldest outbox row past the stored checkpoint",
            )?,
            backlog: gauge(
                "lifeguard_reflector_backlog_events",
                "Outbox rows past the stored checkpoint (counted up to 100000)",
            )?,
            batch_duration: seconds(
                "lifeguard_reflector_batch_duration_seconds",
                "Time of one pass over the outbox",
            )?,
            refresh_latency: seconds(
                "lifeguard_reflector_commit_to_refresh_seconds",
                "From an outbox row's creation to its key's refresh in Redis",
            )?,
            wakeups: counter_vec(
                "lifeguard_reflector_wakeups_total",
                "Passes over the outbox, by what started them",
                &["source"],
            )?,
            redis_resets: IntCounter::new(
                "lifeguard_reflector_redis_resets_total",
                "Redis restarts or failovers detected (each bumps the generation)",
            )?,
            generation_bumps: counter_vec(
                "lifeguard_reflector_generation_bumps_total",
                "Generation bumps, by cause",
                &["cause"],
            )?,
            notification_queue: Gauge::new(
                "lifeguard_pg_notification_queue_usage_ratio",
                "pg_notification_queue_usage() on the primary",
            )?,
            errors: counter_vec(
                "lifeguard_reflector_errors_total",
                "Failed steps, by step",
                &["step"],
            )?,
            registry: Registry::new(),
        };
        for c in [
            Box::new(m.is_leader.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.epoch.clone()),
            Box::new(m.generation.clone()),
            Box::new(m.leader_changes.clone()),
            Box::new(m.events.clone()),
            Box::new(m.lag.clone()),
            Box::new(m.checkpoint_lag.clone()),
            Box::new(m.backlog.clone()),
            Box::new(m.batch_duration.clone()),
            Box::new(m.refresh_latency.clone()),
            Box::new(m.wakeups.clone()),
            Box::new(m.redis_resets.clone()),
            Box::new(m.generation_bumps.clone()),
            Box::new(m.notification_queue.clone()),
            Box::new(m.errors.clone()),
        ] {
            m.registry.register(c)?;
        }
        Ok(m)
    }

    pub(crate) fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn error(&self, step: &str) {
        self.errors.with_label_values(&[step]).inc();
    }
}
