//! A [`may_minihttp`] (`=0.1.11`) service running Lifeguard handlers for real.
//!
//! Each request: the route is matched, the framing is checked **before** the body is read
//! (0.1.11 panics on a malformed `Content-Length` inside `Request::body`, so `body()` is
//! only called once every `Content-Length` is a plain decimal within the cap), the
//! `Lifeguard-*` headers are parsed (a `400` problem+json on any malformed value), the
//! handler runs in the connection coroutine with its [`RequestExecutor`] (also the
//! coroutine-local [`current`](crate::current)), and the response carries the request id
//! and, after a committed write, the consistency token.
//!
//! What 0.1.11 imposes, and how this adapter copes:
//!
//! - **Response header values must be `&'static str` lines.** Per-request lines (request
//!   id, token, handler headers) are written into a per-connection slab of leaked, recycled
//!   memory; see `slab.rs` for the invariant of 0.1.11 this relies on and why it is sound.
//!   Memory is bounded by the connections open at the peak, not by requests.
//! - **At most 16 response headers** (a 17th panics inside may_minihttp). The adapter
//!   budgets them: `Content-Type`, `Connection: close` (framing errors), the `Lifeguard-*`
//!   headers, then the handler's headers in order; those past the budget are dropped with a
//!   warning. `Server`, `Date` and `Content-Length` are added by may_minihttp outside it.
//! - **At most 16 request headers.** A 17th makes may_minihttp close the connection with no
//!   response before any service code runs; nothing here can answer it. Put a proxy in
//!   front if clients send more.
//! - **Malformed `Content-Length`** (not decimal, several different values, too large for
//!   `usize`): `400` with `Connection: close`, body not read. The body's framing is
//!   unknown, so any bytes the client still sends are parsed by may_minihttp as the next
//!   request (a parse error there closes the connection, possibly before the `400` is
//!   flushed). **Body over [`Limits::max_body`]**: `413`; the body is drained when it is at
//!   most [`Limits::max_drain`] (the connection stays in sync), else `Connection: close`
//!   and the same caveat. **`Transfer-Encoding`** (chunked is not supported by 0.1.11):
//!   `501` with `Connection: close`.
//! - **`Err` from `call` becomes a `500` whose body is the error text.** `call` never
//!   returns `Err`; a panicking handler is caught and answered with a generic `500`
//!   problem+json (the panic goes to the log, not the client). Compile with unwinding:
//!   under `panic = "abort"` a panic ends the process.
//!
//! ```no_run
//! use lifeguard_core::pool::{Pool, PoolConfig};
//! use lifeguard_core::Executor;
//! use lifeguard_router_ext::minihttp::ServiceBuilder;
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

mod slab;

use std::io::{self, Read};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Instant;

use may::coroutine::JoinHandle;
use may_minihttp::{HttpServer, HttpService, Request, Response};

use crate::context::{new_request_id, RequestContext, MAX_REQUEST_ID_LEN};
use crate::endpoints::{self, ReadyPolicy, Reply, JSON, PROMETHEUS_TEXT};
use crate::executor::RequestExecutor;
use crate::extension::Lifeguard;
use crate::problem::{Problem, PROBLEM_JSON};
use slab::HeaderSlab;

/// may_minihttp 0.1.11's response header array size.
pub const MAX_RESPONSE_HEADERS: usize = 16;

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

/// Body limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest body read (default 1 MiB); larger is a `413`.
    pub max_body: usize,
    /// The largest over-limit body still drained to keep the connection usable (default
    /// 8 MiB); larger ones get `Connection: close` instead.
    pub max_drain: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 1 << 20,
            max_drain: 8 << 20,
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

struct App {
    lg: Lifeguard,
    routes: Vec<Route>,
    ready: Option<ReadyPolicy>,
    metrics: bool,
    limits: Limits,
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

    /// Sets the body limits.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.app.limits = limits;
        self
    }

    /// The service.
    pub fn build(self) -> LifeguardService {
        LifeguardService {
            app: Arc::new(self.app),
            slab: None,
        }
    }
}

/// The may_minihttp service. may_minihttp clones it once per connection; each clone owns
/// the header slab of its connection.
pub struct LifeguardService {
    app: Arc<App>,
    slab: Option<HeaderSlab>,
}

impl Clone for LifeguardService {
    fn clone(&self) -> Self {
        LifeguardService {
            app: self.app.clone(),
            slab: None,
        }
    }
}

impl LifeguardService {
    /// Starts `HttpServer(self)` on `addr`; cancel the returned coroutine to stop
    /// accepting. Configure `may` (workers, stack size in words) before calling this.
    pub fn start(self, addr: impl std::net::ToSocketAddrs) -> io::Result<JoinHandle<()>> {
        HttpServer(self).start(addr)
    }

    /// The extension the service runs on.
    pub fn lifeguard(&self) -> &Lifeguard {
        &self.app.lg
    }
}

/// What the adapter decided, before encoding.
struct Outcome {
    reply: Reply,
    route: &'static str,
    route_name: Option<usize>,
    close: bool,
}

impl HttpService for LifeguardService {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        let started = Instant::now();
        let app = self.app.clone();
        let outcome = app.serve(req);
        let label = match outcome.route_name {
            Some(i) => app.routes[i].name.as_str(),
            None => outcome.route,
        };
        app.lg.after(label, outcome.reply.status, started.elapsed());
        let slab = self.slab.get_or_insert_with(HeaderSlab::acquire);
        slab.reset();
        encode(outcome.reply, outcome.close, slab, rsp);
        Ok(())
    }
}

impl App {
    fn serve(&self, req: Request) -> Outcome {
        let names = &self.lg.settings().names;
        let method = req.method().to_string();
        let target = req.path().to_string();
        let headers: Vec<(String, String)> = req
            .headers()
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
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
                Ok(_) => {
                    drop(req.body());
                    false
                }
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
            Ok(len) => match read_body(req, len) {
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
                let close = len > self.limits.max_drain;
                if !close {
                    drop(req.body()); // drains exactly `len` validated bytes
                }
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

enum FramingError {
    TooLarge(usize),
    Problem(Problem),
}

/// The body length the head announces, validated so that may_minihttp's own parse (which
/// unwraps) cannot fail: every `Content-Length` is ASCII digits, all agree, and fit `usize`.
fn framing(headers: &[(String, String)], limits: &Limits) -> Result<usize, FramingError> {
    if headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        return Err(FramingError::Problem(Problem::new(
            501,
            "urn:lifeguard:problem:transfer-encoding",
            "Transfer-Encoding not supported",
            "send the body with Content-Length",
        )));
    }
    let bad = || {
        FramingError::Problem(Problem::invalid_header(
            "Content-Length",
            "expected one decimal length",
        ))
    };
    let mut len: Option<usize> = None;
    for (_, v) in headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("content-length"))
    {
        // may_minihttp parses the raw value with `str::parse::<usize>`: no whitespace, no
        // sign; we require exactly that form.
        if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let n: usize = v.parse().map_err(|_| bad())?;
        if len.is_some_and(|l| l != n) {
            return Err(bad());
        }
        len = Some(n);
    }
    match len.unwrap_or(0) {
        n if n > limits.max_body => Err(FramingError::TooLarge(n)),
        n => Ok(n),
    }
}

/// Reads exactly `len` (already validated and capped) body bytes.
fn read_body(req: Request, len: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::with_capacity(len);
    // `BodyReader::read` stops at Content-Length; `fill_buf` alone would return only the
    // bytes already buffered.
    req.body().take(len as u64).read_to_end(&mut body)?;
    if body.len() != len {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(body)
}

pub(crate) fn valid_request_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.bytes().all(|b| b.is_ascii_graphic())
}

/// Header names a handler may not set: may_minihttp writes them, or the adapter does.
const RESERVED: [&str; 5] = [
    "content-length",
    "content-type",
    "date",
    "server",
    "transfer-encoding",
];

fn encode(reply: Reply, close: bool, slab: &mut HeaderSlab, rsp: &mut Response) {
    let status = if (100..=999).contains(&reply.status) {
        reply.status
    } else {
        500
    };
    rsp.status_code(status as usize, reason(status));
    let mut budget = MAX_RESPONSE_HEADERS;
    let mut push = |line: &'static str, rsp: &mut Response| {
        if budget > 0 {
            budget -= 1;
            rsp.header(line);
            true
        } else {
            false
        }
    };
    let ct = match reply.content_type.as_str() {
        JSON => Some("Content-Type: application/json"),
        PROBLEM_JSON => Some("Content-Type: application/problem+json"),
        PROMETHEUS_TEXT => Some("Content-Type: text/plain; version=0.0.4; charset=utf-8"),
        "text/plain; charset=utf-8" => Some("Content-Type: text/plain; charset=utf-8"),
        other if valid_value(other) => slab.line("Content-Type", other),
        _ => None,
    };
    if let Some(line) = ct {
        push(line, rsp);
    }
    if close {
        push("Connection: close", rsp);
    }
    for (name, value) in &reply.headers {
        if !valid_name(name)
            || !valid_value(value)
            || RESERVED.iter().any(|r| r.eq_ignore_ascii_case(name))
        {
            tracing::warn!(header = %name, "dropped an invalid or reserved response header");
            continue;
        }
        let Some(line) = slab.line(name, value) else {
            tracing::warn!(header = %name, "dropped a response header: header bytes exhausted");
            continue;
        };
        if !push(line, rsp) {
            tracing::warn!(header = %name, "dropped a response header: may_minihttp allows 16");
        }
    }
    rsp.body_vec(reply.body);
}

/// An RFC 9110 token.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Visible ASCII, spaces and tabs: nothing that could end the line.
fn valid_value(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b == b'\t' || (b' '..=b'~').contains(&b))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        412 => "Precondition Failed",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// may_minihttp's `HttpServer` needs `Clone + Send + Sync + 'static`.
const _: fn() = || {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<LifeguardService>();
};

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
