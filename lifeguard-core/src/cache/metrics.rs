//! The cache's metrics (spec §3.10): what reads found, what fills did, why reads bypassed
//! and what writes dropped, labelled by entity (`schema.table`, bounded by the models) and
//! fixed result sets. Without the `metrics` feature every call records nothing.

#[cfg(feature = "metrics")]
use std::sync::OnceLock;

#[cfg(feature = "metrics")]
use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry};

use crate::error::Result;

/// What a cached read found (the `result` label of `lifeguard_cache_requests_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Found {
    /// Served from Redis.
    Hit,
    /// Not in Redis: loaded (or waited for another load).
    Miss,
    /// The cache could not vouch for the value: read from PostgreSQL.
    Bypass,
    /// Redis failed or the payload was unusable: read from PostgreSQL.
    Error,
}

#[cfg(feature = "metrics")]
impl Found {
    const ALL: [Found; 4] = [Found::Hit, Found::Miss, Found::Bypass, Found::Error];

    fn as_str(self) -> &'static str {
        match self {
            Found::Hit => "hit",
            Found::Miss => "miss",
            Found::Bypass => "bypass",
            Found::Error => "error",
        }
    }
}

/// The cache's metric handles.
pub(crate) struct CacheMetrics {
    #[cfg(feature = "metrics")]
    series: Series,
}

#[cfg(feature = "metrics")]
struct Series {
    registry: Registry,
    requests: IntCounterVec,
    fills: IntCounterVec,
    loads: IntCounterVec,
    coalesced: IntCounterVec,
    bypass: IntCounterVec,
    invalidations: IntCounterVec,
    lease_wait: HistogramVec,
    /// `requests`' handles of each entity seen so far, in the order they were first read.
    /// `with_label_values` hashes the labels and takes the vector's lock on every call, and
    /// every cached read counts one request; a handle looked up once costs one atomic add.
    entities: [OnceLock<EntityRequests>; ENTITY_HANDLES],
}

/// How many entities get handles of their own; the requests of any more are counted
/// through the labelled vector, as correctly, only slower.
#[cfg(feature = "metrics")]
const ENTITY_HANDLES: usize = 32;

/// One entity's `lifeguard_cache_requests_total` series, each taken from the vector on its
/// first count (so that a series shows up once something is counted in it, as with
/// `with_label_values` on every count).
#[cfg(feature = "metrics")]
struct EntityRequests {
    entity: &'static str,
    /// By [`Found`], in the order of [`Found::ALL`].
    series: [OnceLock<IntCounter>; Found::ALL.len()],
}

#[cfg(feature = "metrics")]
impl EntityRequests {
    fn new(entity: &'static str) -> EntityRequests {
        EntityRequests {
            entity,
            series: std::array::from_fn(|_| OnceLock::new()),
        }
    }

    fn is(&self, entity: &str) -> bool {
        // The same constant string is usually the same pointer; the text decides otherwise.
        std::ptr::eq(self.entity, entity) || self.entity == entity
    }

    fn series(&self, requests: &IntCounterVec, found: Found) -> &IntCounter {
        self.series[found as usize]
            .get_or_init(|| requests.with_label_values(&[self.entity, found.as_str()]))
    }
}

#[cfg(feature = "metrics")]
impl Series {
    /// The handles of `entity`, made on its first read; `None` once every slot holds
    /// another entity's.
    fn entity(&self, entity: &'static str) -> Option<&EntityRequests> {
        for slot in &self.entities {
            // An empty slot is claimed for this entity; one that another caller filled at
            // the same moment (with this entity or another) is simply looked at.
            let handles = slot.get_or_init(|| EntityRequests::new(entity));
            if handles.is(entity) {
                return Some(handles);
            }
        }
        None
    }
}

impl CacheMetrics {
    /// Handles on a registry of the cache's own.
    #[cfg(feature = "metrics")]
    pub(crate) fn new() -> Result<CacheMetrics> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| -> Result<IntCounterVec> {
            let c = IntCounterVec::new(Opts::new(name, help), labels).map_err(metrics_error)?;
            registry
                .register(Box::new(c.clone()))
                .map_err(metrics_error)?;
            Ok(c)
        };
        let series = Series {
            requests: counter(
                "lifeguard_cache_requests_total",
                "Cached reads by what they found: hit, miss, bypass or error.",
                &["entity", "result"],
            )?,
            fills: counter(
                "lifeguard_cache_fills_total",
                "Fills after a miss: stored, rejected_lease, rejected_version or error.",
                &["entity", "result"],
            )?,
            loads: counter(
                "lifeguard_cache_loads_total",
                "Rows the cache read from the primary after a miss.",
                &["entity"],
            )?,
            coalesced: counter(
                "lifeguard_cache_singleflight_coalesced_total",
                "Misses that waited for another coroutine's load instead of loading.",
                &["entity"],
            )?,
            bypass: counter(
                "lifeguard_cache_bypass_total",
                "Reads that went to PostgreSQL because the cache could not vouch for them.",
                &["reason"],
            )?,
            invalidations: counter(
                "lifeguard_cache_invalidations_total",
                "Keys dropped after writes, by who dropped them.",
                &["entity", "source"],
            )?,
            lease_wait: {
                let h = HistogramVec::new(
                    HistogramOpts::new(
                        "lifeguard_cache_lease_wait_seconds",
                        "How long readers that lost the lease waited for the winner's fill.",
                    )
                    .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25]),
                    &["entity"],
                )
                .map_err(metrics_error)?;
                registry
                    .register(Box::new(h.clone()))
                    .map_err(metrics_error)?;
                h
            },
            entities: std::array::from_fn(|_| OnceLock::new()),
            registry,
        };
        Ok(CacheMetrics { series })
    }

    /// Handles that record nothing (no `metrics` feature).
    #[cfg(not(feature = "metrics"))]
    pub(crate) fn new() -> Result<CacheMetrics> {
        Ok(CacheMetrics {})
    }

    /// The registry the series are on.
    #[cfg(feature = "metrics")]
    pub(crate) fn registry(&self) -> &Registry {
        &self.series.registry
    }

    pub(crate) fn request(&self, entity: &'static str, found: Found) {
        #[cfg(feature = "metrics")]
        match self.series.entity(entity) {
            Some(handles) => handles.series(&self.series.requests, found).inc(),
            None => self
                .series
                .requests
                .with_label_values(&[entity, found.as_str()])
                .inc(),
        }
        #[cfg(not(feature = "metrics"))]
        let _ = (entity, found);
    }

    pub(crate) fn fill(&self, entity: &str, result: &str) {
        #[cfg(feature = "metrics")]
        self.series.fills.with_label_values(&[entity, result]).inc();
        #[cfg(not(feature = "metrics"))]
        let _ = (entity, result);
    }

    pub(crate) fn load(&self, entity: &str) {
        #[cfg(feature = "metrics")]
        self.series.loads.with_label_values(&[entity]).inc();
        #[cfg(not(feature = "metrics"))]
        let _ = entity;
    }

    pub(crate) fn coalesced(&self, entity: &str) {
        #[cfg(feature = "metrics")]
        self.series.coalesced.with_label_values(&[entity]).inc();
        #[cfg(not(feature = "metrics"))]
        let _ = entity;
    }

    pub(crate) fn bypass(&self, reason: &'static str) {
        #[cfg(feature = "metrics")]
        self.series.bypass.with_label_values(&[reason]).inc();
        #[cfg(not(feature = "metrics"))]
        let _ = reason;
    }

    pub(crate) fn invalidated(&self, entity: &str, keys: usize) {
        #[cfg(feature = "metrics")]
        self.series
            .invalidations
            .with_label_values(&[entity, "writer"])
            .inc_by(keys as u64);
        #[cfg(not(feature = "metrics"))]
        let _ = (entity, keys);
    }

    pub(crate) fn lease_wait(&self, entity: &str, waited: std::time::Duration) {
        #[cfg(feature = "metrics")]
        self.series
            .lease_wait
            .with_label_values(&[entity])
            .observe(waited.as_secs_f64());
        #[cfg(not(feature = "metrics"))]
        let _ = (entity, waited);
    }
}

#[cfg(feature = "metrics")]
fn metrics_error(e: prometheus::Error) -> crate::error::Error {
    crate::error::Error::config(format!("cache metrics registration failed: {e}"))
}
