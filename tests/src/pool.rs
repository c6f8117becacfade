//! Helpers shared by the pool tests: configs, health waits, metric reads and a background
//! writer that keeps the primary's WAL moving.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use lifeguard_core::pg::Config;
use lifeguard_core::pool::{NodeState, Pool};
use lifeguard_core::Executor;

use crate::pg::connect_url;
use crate::wait_for;

/// A parsed connection config, or a panic naming the URL.
pub fn cfg(url: &str) -> Config {
    Config::parse(url).unwrap_or_else(|e| panic!("parse {url}: {e}"))
}

/// Waits until the primary and every replica are `Healthy`, or panics with the health.
pub fn wait_healthy(pool: &Pool, timeout: Duration) {
    let ok = wait_for(timeout, || {
        let h = pool.health();
        (h.primary == NodeState::Healthy
            && h.replicas.iter().all(|(_, s)| *s == NodeState::Healthy))
        .then_some(())
    });
    assert!(ok.is_some(), "pool not healthy: {:?}", pool.health());
}

/// The pool's metrics in the Prometheus text format.
pub fn metrics_text(pool: &Pool) -> String {
    registry_text(pool.registry())
}

/// A registry's metrics in the Prometheus text format.
pub fn registry_text(registry: &prometheus::Registry) -> String {
    prometheus::TextEncoder::new()
        .encode_to_string(&registry.gather())
        .expect("encode metrics")
}

/// The sum of every sample of `name` whose labels include `labels`.
pub fn metric(pool: &Pool, name: &str, labels: &[(&str, &str)]) -> f64 {
    registry_metric(pool.registry(), name, labels)
}

/// The sum of every sample of `name` on `registry` whose labels include `labels`.
pub fn registry_metric(
    registry: &prometheus::Registry,
    name: &str,
    labels: &[(&str, &str)],
) -> f64 {
    text_metric(&registry_text(registry), name, labels)
}

/// The sum of every sample of `name` in the Prometheus text `text` whose labels include
/// `labels` (0 when none).
pub fn text_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .filter(|(series, _)| {
            (*series == name || series.starts_with(&format!("{name}{{")))
                && labels
                    .iter()
                    .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .map(|(_, v)| v.parse::<f64>().unwrap_or(0.0))
        .sum()
}

/// Inserts a row into `table` on `url` every `period` until dropped.
pub struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl Writer {
    /// Starts writing on a thread of its own.
    pub fn start(url: &str, table: &str, period: Duration) -> Writer {
        let conn = connect_url(url);
        let sql = format!("INSERT INTO {table} (v) VALUES (1)");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let _ = conn.execute(&sql, &[]);
                std::thread::sleep(period);
            }
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
