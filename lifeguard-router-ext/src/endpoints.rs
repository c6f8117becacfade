//! Framework-neutral responses and the reusable `/metrics`, `/health/live` and
//! `/health/ready` handlers.

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use lifeguard_core::pool::{NodeState, Pool};
use lifeguard_core::Executor;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

use crate::problem::{Problem, PROBLEM_JSON};

/// Content type of JSON bodies.
pub const JSON: &str = "application/json";
/// Content type of the Prometheus text exposition format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A response in no framework's types: status, content type, extra headers, body. Each
/// adapter turns it into its own response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: String,
    /// Further headers (`name`, `value`).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// A JSON reply.
    ///
    /// ```
    /// let r = lifeguard_router_ext::Reply::json(200, &serde_json::json!({"ok": true}));
    /// assert_eq!(r.body, br#"{"ok":true}"#);
    /// ```
    pub fn json(status: u16, value: &serde_json::Value) -> Reply {
        Reply {
            status,
            content_type: JSON.into(),
            headers: Vec::new(),
            body: serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// A reply with any content type.
    pub fn with_body(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            content_type: content_type.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }
}

impl From<&Problem> for Reply {
    fn from(p: &Problem) -> Reply {
        Reply::with_body(p.status, PROBLEM_JSON, p.to_json())
    }
}

impl From<Problem> for Reply {
    fn from(p: Problem) -> Reply {
        Reply::from(&p)
    }
}

/// `GET /health/live`: the process answers. Touches nothing else.
pub fn live() -> Reply {
    Reply::json(200, &serde_json::json!({"status": "live"}))
}

/// When `/health/ready` says ready.
#[derive(Debug, Clone)]
pub struct ReadyPolicy {
    /// Healthy replicas required (0: the primary alone is enough).
    pub require_replicas: usize,
    /// Budget of the `SELECT 1` on the primary.
    pub primary_timeout: Duration,
}

impl Default for ReadyPolicy {
    fn default() -> Self {
        ReadyPolicy {
            require_replicas: 0,
            primary_timeout: Duration::from_millis(500),
        }
    }
}

/// `GET /health/ready`: `200` when the primary answers `SELECT 1` within
/// [`ReadyPolicy::primary_timeout`], the monitor does not see it in the wrong role, and at
/// least [`ReadyPolicy::require_replicas`] replicas are healthy; else `503`. The body has
/// states and counts, never addresses.
pub fn ready(pool: &Pool, policy: &ReadyPolicy) -> Reply {
    let health = pool.health();
    let primary_answers = pool
        .primary()
        .with_timeout(policy.primary_timeout)
        .query_one("SELECT 1", &[])
        .is_ok();
    let healthy_replicas = health
        .replicas
        .iter()
        .filter(|(_, s)| *s == NodeState::Healthy)
        .count();
    let ok = primary_answers
        && health.primary != NodeState::RoleMismatch
        && healthy_replicas >= policy.require_replicas;
    Reply::json(
        if ok { 200 } else { 503 },
        &serde_json::json!({
            "status": if ok { "ready" } else { "not_ready" },
            "primary": { "answers": primary_answers, "state": health.primary.as_str() },
            "replicas": { "healthy": healthy_replicas, "configured": health.replicas.len(),
                          "required": policy.require_replicas },
        }),
    )
}

/// `GET /metrics`: the Prometheus text of every registry given (e.g. the pool's, which also
/// holds [`HttpMetrics`] when registered there). A registry listed twice is rendered once.
pub fn metrics(registries: &[&Registry]) -> Reply {
    let mut families = Vec::new();
    for (i, r) in registries.iter().enumerate() {
        if registries[..i].iter().any(|o| std::ptr::eq(*o, *r)) {
            continue;
        }
        families.extend(r.gather());
    }
    let mut body = Vec::new();
    match TextEncoder::new().encode(&families, &mut body) {
        Ok(()) => Reply::with_body(200, PROMETHEUS_TEXT, body),
        Err(e) => {
            tracing::error!(error = %e, "could not encode metrics");
            Problem::internal().into()
        }
    }
}

/// The request series: `lifeguard_http_requests_total{route,status}` and
/// `lifeguard_http_request_duration_seconds{route}`.
///
/// Route labels are bounded: after `max_routes` distinct names, new ones are counted as
/// `other`, so a caller passing raw paths by mistake cannot blow up the series count.
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
    routes: Mutex<HashSet<String>>,
    max_routes: usize,
}

impl HttpMetrics {
    /// Registers the series on `registry` with at most 256 route labels.
    pub fn register(registry: &Registry) -> prometheus::Result<HttpMetrics> {
        HttpMetrics::register_with_limit(registry, 256)
    }

    /// Registers the series on `registry` with at most `max_routes` route labels.
    pub fn register_with_limit(
        registry: &Registry,
        max_routes: usize,
    ) -> prometheus::Result<HttpMetrics> {
        let requests = IntCounterVec::new(
            Opts::new("lifeguard_http_requests_total", "HTTP requests answered"),
            &["route", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "lifeguard_http_request_duration_seconds",
                "Time from request head to response, by route",
            ),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(HttpMetrics {
            requests,
            duration,
            routes: Mutex::new(HashSet::new()),
            max_routes,
        })
    }

    /// Counts one answered request.
    pub fn observe(&self, route: &str, status: u16, latency: Duration) {
        let route = self.bounded(route);
        let mut code = [0u8; 3];
        let status_label = status_str(status, &mut code);
        self.requests
            .with_label_values(&[route.as_str(), status_label])
            .inc();
        self.duration
            .with_label_values(&[route.as_str()])
            .observe(latency.as_secs_f64());
    }

    fn bounded(&self, route: &str) -> String {
        let mut seen = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        if seen.contains(route) {
            return route.to_string();
        }
        if seen.len() < self.max_routes {
            seen.insert(route.to_string());
            return route.to_string();
        }
        "other".to_string()
    }
}

fn status_str(status: u16, buf: &mut [u8; 3]) -> &str {
    let s = status.clamp(100, 999);
    buf[0] = b'0' + (s / 100) as u8;
    buf[1] = b'0' + (s / 10 % 10) as u8;
    buf[2] = b'0' + (s % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("000")
}
