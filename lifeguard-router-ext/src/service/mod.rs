//! The HTTP service every engine runs: routes, the `Lifeguard-*` headers, body framing,
//! and what a request turns into, independent of the server that parsed it.
//!
//! [`ServiceBuilder`] builds a [`LifeguardService`]; [`LifeguardService::start`] serves it on
//! Lifeguard's own HTTP/1.1 connection loop ([`crate::server`]), and
//! [`LifeguardService::start_minihttp`] on may_minihttp 0.1.11 ([`crate::minihttp`]). Both
//! run the same request path: the route is matched, the framing is checked **before** the
//! body is read, the `Lifeguard-*` headers are parsed (a `400` problem+json on any malformed
//! value), the handler runs in the connection coroutine with its [`RequestExecutor`] (also
//! the coroutine-local [`current`](crate::current)), and the response carries the request id
//! and, after a committed write, the consistency token. A panicking handler is answered with
//! a generic `500` problem+json (the panic goes to the log, not the client); compile with
//! unwinding, since under `panic = "abort"` a panic ends the process.
//!
//! ```no_run
//! use lifeguard_core::pool::{Pool, PoolConfig};
//! use lifeguard_core::Executor;
//! use lifeguard_router_ext::service::ServiceBuilder;
//! use lifeguard_router_ext::{Lifeguard, ReadyPolicy, Reply, Settings};
//!
//! may::config().set_workers(4).set_stack_size(0x8000); // words
//! let lg = Lifeguard::new(Pool::connect(PoolConfig::from_env()?)?, Settings::default());
//! let service = ServiceBuilder::new(lg)
//!     .route("GET", "/count", "count", |_req, db| {
//!         match db.query_one("SELECT count(*) FROM notes", &[]).and_then(|r| r.try_get::<_, i64>(0)) {
//!             Ok(n) => Reply::json(200, &serde_json::json!({ "count": n })),
//!             Err(_) => Reply::json(503, &serde_json::json!({ "error": "unavailable" })),
//!         }
//!     })
//!     .health(ReadyPolicy::default())
//!     .metrics()
//!     .build();
//! service.start("0.0.0.0:8080")?.join().ok();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod framing;
pub(crate) mod wire;

use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::context::{new_request_id, RequestContext, MAX_REQUEST_ID_LEN};
use crate::endpoints::{self, ReadyPolicy, Reply};
use crate::executor::RequestExecutor;
use crate::extension::Lifeguard;
use crate::problem::Problem;
use framing::{framing, FramingError};

/// A request as handlers see it: owned copies of the head and the (capped) body.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    params: Vec<(String, String)>,
}

impl HttpRequest {
    /// The method (`GET`, ...).
    pub fn method(&self) -> &str {
        &self.method
    }

    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The query string after `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// Every header, in order (values decoded lossily as UTF-8).
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body (empty without `Content-Length`).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The value of path parameter `name` of a pattern route (`/books/{id}` matched by
    /// `/books/42`: `param("id") == Some("42")`), as sent (not percent-decoded).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every path parameter, in pattern order.
    pub fn params(&self) -> &[(String, String)] {
        &self.params
    }
}

/// Matches `path` against a route pattern whose `{name}` segments match any one non-empty
/// segment; the captures, or `None`.
fn match_pattern(pattern: &str, path: &str) -> Option<Vec<(String, String)>> {
    let mut params = Vec::new();
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(g)) => {
                if let Some(name) = w.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
                    if g.is_empty() {
                        return None;
                    }
                    params.push((name.to_string(), g.to_string()));
                } else if w != g {
                    return None;
                }
            }
            _ => return None,
        }
    }
}

/// Request size limits.
///
/// `max_headers` and `max_head_bytes` apply to Lifeguard's own server
/// ([`LifeguardService::start`]); may_minihttp 0.1.11 fixes its own (16 headers, no cap
/// on head bytes).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest body read (default 1 MiB); larger is a `413`.
    pub max_body: usize,
    /// The largest over-limit body still drained to keep the connection usable (default
    /// 8 MiB); larger ones get `Connection: close` instead.
    pub max_drain: usize,
    /// The most request headers (default 64, above browsers' usual 20 to 30); more is a
    /// `431` and the connection closes.
    pub max_headers: usize,
    /// The most bytes of request line plus headers (default 16 KiB); more is a `431` and
    /// the connection closes, so a head that never ends cannot grow a buffer forever.
    pub max_head_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 1 << 20,
            max_drain: 8 << 20,
            max_headers: 64,
            max_head_bytes: 16 << 10,
        }
    }
}

type HandlerFn = dyn Fn(&HttpRequest, &RequestExecutor) -> Reply + Send + Sync;

struct Route {
    method: String,
    path: String,
    name: String,
    handler: Arc<HandlerFn>,
}

enum Target<'a> {
    App(&'a Route),
    Metrics,
    Live,
    Ready,
}

pub(crate) struct App {
    lg: Lifeguard,
    routes: Vec<Route>,
    ready: Option<ReadyPolicy>,
    metrics: bool,
    pub(crate) limits: Limits,
}

/// Builds a [`LifeguardService`]: routes by exact method and path, plus the optional
/// `/metrics`, `/health/live` and `/health/ready`.
pub struct ServiceBuilder {
    app: App,
}

impl ServiceBuilder {
    /// A service with no routes over `lg`.
    pub fn new(lg: Lifeguard) -> ServiceBuilder {
        ServiceBuilder {
            app: App {
                lg,
                routes: Vec::new(),
                ready: None,
                metrics: false,
                limits: Limits::default(),
            },
        }
    }

    /// Adds a route: `method` and `path` match exactly (path without query); `name` is its
    /// metric label (keep it a fixed name, not the path of a parameterised route).
    ///
    /// A `{name}` segment (`/books/{id}/reviews`) matches any one non-empty path segment,
    /// read back with [`HttpRequest::param`]. Exact routes are tried first, then patterns
    /// in the order they were added.
    pub fn route<F>(mut self, method: &str, path: &str, name: &str, handler: F) -> Self
    where
        F: Fn(&HttpRequest, &RequestExecutor) -> Reply + Send + Sync + 'static,
    {
        self.app.routes.push(Route {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            name: name.to_string(),
            handler: Arc::new(handler),
        });
        self
    }

    /// Serves `GET /health/live` and `GET /health/ready` (with `policy`).
    pub fn health(mut self, policy: ReadyPolicy) -> Self {
        self.app.ready = Some(policy);
        self
    }

    /// Serves `GET /metrics` (the pool's and the HTTP series).
    pub fn metrics(mut self) -> Self {
        self.app.metrics = true;
        self
    }

    /// Sets the request size limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.app.limits = limits;
        self
    }

    /// The service.
    pub fn build(self) -> LifeguardService {
        LifeguardService {
            app: Arc::new(self.app),
        }
    }
}

/// A built service; start it on Lifeguard's own HTTP/1.1 server ([`Self::start`]) or on
/// may_minihttp ([`Self::start_minihttp`]). Cloning is cheap (one shared app).
#[derive(Clone)]
pub struct LifeguardService {
    pub(crate) app: Arc<App>,
}

impl LifeguardService {
    /// The extension the service runs on.
    pub fn lifeguard(&self) -> &Lifeguard {
        &self.app.lg
    }
}

/// A request head as a server parsed it.
pub(crate) struct Head {
    pub(crate) method: String,
    /// Path and query.
    pub(crate) target: String,
    pub(crate) headers: Vec<(String, String)>,
}

impl Head {
    /// A head from parsed header fields (values decoded lossily as UTF-8).
    pub(crate) fn new(method: &str, target: &str, fields: &[httparse::Header<'_>]) -> Head {
        Head {
            method: method.to_string(),
            target: target.to_string(),
            headers: fields
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
        }
    }
}

/// Where a server gets a request's body from, once the service has validated its
/// length.
pub(crate) trait BodySource {
    /// Reads exactly `len` bytes (at most [`Limits::max_body`]).
    fn read(&mut self, len: usize) -> io::Result<Vec<u8>>;
    /// Discards `len` bytes (at most [`Limits::max_drain`]) so the next request starts in
    /// sync; `false` when it could not, and the connection must close.
    fn discard(&mut self, len: usize) -> bool;
}

/// What the service decided, before a server encodes it.
pub(crate) struct Outcome {
    pub(crate) reply: Reply,
    route: &'static str,
    route_name: Option<usize>,
    /// The connection must close after this response (its framing is lost).
    pub(crate) close: bool,
}

impl App {
    /// Runs one request and records its metrics.
    pub(crate) fn respond(&self, head: Head, body: &mut dyn BodySource) -> Outcome {
        let started = std::time::Instant::now();
        let outcome = self.serve(head, body);
        let label = match outcome.route_name {
            Some(i) => self.routes[i].name.as_str(),
            None => outcome.route,
        };
        self.lg
            .after(label, outcome.reply.status, started.elapsed());
        outcome
    }

    /// The answer to a request the server could not parse (no route, no handler): the
    /// problem with a fresh request id, counted under route `malformed`.
    pub(crate) fn refuse(&self, problem: Problem) -> Reply {
        let reply = Reply::from(problem).header(
            self.lg.settings().names.request_id.clone(),
            new_request_id(),
        );
        self.lg
            .after("malformed", reply.status, std::time::Duration::ZERO);
        reply
    }

    fn serve(&self, head: Head, body: &mut dyn BodySource) -> Outcome {
        let names = &self.lg.settings().names;
        let Head {
            method,
            target,
            headers,
        } = head;
        let fallback_id = headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(&names.request_id))
            .map(|(_, v)| v.trim())
            .find(|v| valid_request_id(v))
            .map_or_else(new_request_id, str::to_string);
        let reject = |p: Problem, route: &'static str, close: bool| Outcome {
            reply: Reply::from(p).header(names.request_id.clone(), fallback_id.clone()),
            route,
            route_name: None,
            close,
        };

        let path = target.split('?').next().unwrap_or("");
        let Some((target_kind, index, params)) = self.find(&method, path) else {
            // Drain a small body so the connection stays in sync; otherwise close.
            let close = match framing(&headers, &self.limits) {
                Ok(0) => false,
                Ok(len) => !body.discard(len),
                Err(_) => true,
            };
            let p = Problem::new(
                404,
                "urn:lifeguard:problem:not-found",
                "Not found",
                "no route for this method and path",
            );
            return reject(p, "not_found", close);
        };
        let route_label = match target_kind {
            Target::App(_) => "app",
            Target::Metrics => "metrics",
            Target::Live => "health_live",
            Target::Ready => "health_ready",
        };

        let body = match framing(&headers, &self.limits) {
            Ok(0) => Vec::new(),
            Ok(len) => match body.read(len) {
                Ok(b) => b,
                Err(_) => {
                    let p = Problem::new(
                        400,
                        "urn:lifeguard:problem:incomplete-body",
                        "Incomplete body",
                        "the body ended before Content-Length bytes",
                    );
                    return reject(p, route_label, true);
                }
            },
            Err(FramingError::TooLarge(len)) => {
                let close = len > self.limits.max_drain || !body.discard(len);
                let p = Problem::new(
                    413,
                    "urn:lifeguard:problem:body-too-large",
                    "Body too large",
                    format!("the body may be at most {} bytes", self.limits.max_body),
                );
                return reject(p, route_label, close);
            }
            Err(FramingError::Problem(p)) => return reject(p, route_label, true),
        };

        let ctx = match RequestContext::from_headers(
            self.lg.settings(),
            headers.iter().map(|(n, v)| (n.as_str(), v.as_str())),
        ) {
            Ok(ctx) => ctx,
            Err(p) => return reject(p, route_label, false),
        };
        let request = HttpRequest {
            method,
            target,
            headers,
            body,
            params,
        };
        let reply = match target_kind {
            Target::Metrics => self.lg.metrics(),
            Target::Live => endpoints::live(),
            Target::Ready => self.lg.ready(
                self.ready
                    .as_ref()
                    .expect("ready route only exists with a policy"),
            ),
            Target::App(route) => {
                let run = AssertUnwindSafe(|| {
                    self.lg.handle(ctx, |exec| (route.handler)(&request, exec))
                });
                match catch_unwind(run) {
                    Ok(done) => {
                        let mut reply = done.output;
                        // Lifeguard headers first: they win the header budget.
                        let mut hs = done.headers;
                        hs.append(&mut reply.headers);
                        reply.headers = hs;
                        return Outcome {
                            reply,
                            route: route_label,
                            route_name: index,
                            close: false,
                        };
                    }
                    Err(_) => {
                        tracing::error!(route = %route.name, request_id = %fallback_id, "handler panicked");
                        return Outcome {
                            route_name: index,
                            ..reject(Problem::internal(), route_label, false)
                        };
                    }
                }
            }
        };
        Outcome {
            reply: reply.header(names.request_id.clone(), ctx.request_id().to_string()),
            route: route_label,
            route_name: None,
            close: false,
        }
    }

    #[allow(clippy::type_complexity)]
    fn find(
        &self,
        method: &str,
        path: &str,
    ) -> Option<(Target<'_>, Option<usize>, Vec<(String, String)>)> {
        if let Some(i) = self
            .routes
            .iter()
            .position(|r| r.method == method && r.path == path)
        {
            return Some((Target::App(&self.routes[i]), Some(i), Vec::new()));
        }
        for (i, r) in self.routes.iter().enumerate() {
            if r.method == method && r.path.contains('{') {
                if let Some(params) = match_pattern(&r.path, path) {
                    return Some((Target::App(r), Some(i), params));
                }
            }
        }
        if method != "GET" {
            return None;
        }
        match path {
            "/metrics" if self.metrics => Some((Target::Metrics, None, Vec::new())),
            "/health/live" if self.ready.is_some() => Some((Target::Live, None, Vec::new())),
            "/health/ready" if self.ready.is_some() => Some((Target::Ready, None, Vec::new())),
            _ => None,
        }
    }
}

pub(crate) fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::match_pattern;

    #[test]
    fn patterns_capture_one_non_empty_segment() {
        let p = |pat, path| match_pattern(pat, path);
        assert_eq!(
            p("/books/{id}/reviews", "/books/42/reviews"),
            Some(vec![("id".into(), "42".into())])
        );
        assert_eq!(p("/books/{id}", "/books/"), None);
        assert_eq!(p("/books/{id}", "/books/1/2"), None);
        assert_eq!(p("/books/{id}", "/authors/1"), None);
        assert_eq!(p("/books", "/books"), Some(vec![]));
    }
}
