//! Router extension for Lifeguard: the `Lifeguard-*` request headers, a per-request
//! executor, a BRRTRouter-shaped middleware and handler wrapper, a may_minihttp adapter,
//! and `/metrics` and health handlers.
//!
//! The framework-neutral core is [`RequestContext`] (parsed from any list of header pairs),
//! [`RequestExecutor`] (the pool seen through that context) and [`Lifeguard`] (the
//! `before` / handler-wrapper / `after` hooks). Adapters only translate types.
//!
//! # Headers
//!
//! | header | direction | value |
//! |---|---|---|
//! | `Lifeguard-Read-Preference` | request | `primary`, `primary-preferred`, `replica`, `replica-preferred`, `nearest` (case-insensitive); absent: [`Settings::default_preference`] |
//! | `Lifeguard-Max-Staleness` | request | whole milliseconds, `0..=86400000` |
//! | `Lifeguard-Consistency-Token` | request | `v1.<system-id>.<timeline>.<lsn hex>`; several values or comma lists: the newest |
//! | `Lifeguard-Timeout` | request | whole milliseconds `1..=86400000`, clamped to [`Settings::max_timeout`]: the budget of every database statement and transaction of the request, and of waiting for a connection ([`Db::with_timeout`](lifeguard_core::pool::Db::with_timeout)) |
//! | `Lifeguard-Request-Id` | both | 1–128 visible ASCII characters; echoed, or a UUID v4 is generated |
//! | `Lifeguard-Consistency-Token` | response | only when the request wrote something that may have committed |
//! | `Lifeguard-Served-By` | response | `primary` / `replica`; only with [`Settings::served_by`] |
//!
//! Any malformed value (or a single-valued header repeated with different values) is a
//! `400` with an `application/problem+json` body (RFC 9457: `type`, `title`, `status`,
//! `detail`, and `header` naming the header); the request never reaches a handler.
//! Names are configurable through [`HeaderNames`].
//!
//! # BRRTRouter
//!
//! BRRTRouter is not on crates.io, so this crate does not depend on it; a service pastes
//! the glue below (it is compiled and tested against shape-mirror types in
//! `tests/brrtrouter_shape.rs`). The middleware runs in the connection coroutine and
//! cannot hand anything to the handler (it only sees `&HandlerRequest`), so it validates
//! and counts; the handler wrapper, running in the handler coroutine, builds the executor.
//!
//! ```text
//! use std::sync::{Arc, OnceLock};
//! use std::time::Duration;
//! use brrtrouter::dispatcher::{HandlerRequest, HandlerResponse};
//! use brrtrouter::middleware::Middleware;
//! use lifeguard_router_ext::{Lifeguard, Reply, RequestExecutor};
//!
//! /// Set once at start-up (BRRTRouter's register callback is a plain fn pointer).
//! pub static LIFEGUARD: OnceLock<Lifeguard> = OnceLock::new();
//!
//! fn pairs(r: &HandlerRequest) -> impl Iterator<Item = (&str, &str)> {
//!     r.headers.iter().map(|(k, v)| (k.as_ref(), v.as_str()))
//! }
//!
//! fn to_response(reply: Reply) -> HandlerResponse {
//!     let body = serde_json::from_slice(&reply.body).unwrap_or(serde_json::Value::Null);
//!     let mut res = HandlerResponse::new(reply.status, Default::default(), body);
//!     res.set_header("content-type", reply.content_type);
//!     for (k, v) in reply.headers { res.set_header(&k, v); }
//!     res
//! }
//!
//! /// Rejects malformed Lifeguard-* headers (400 problem+json) and counts requests.
//! pub struct LifeguardMiddleware(pub Lifeguard);
//! impl Middleware for LifeguardMiddleware {
//!     fn before(&self, req: &HandlerRequest) -> Option<HandlerResponse> {
//!         self.0.before(pairs(req)).map(to_response)
//!     }
//!     fn after(&self, req: &HandlerRequest, res: &mut HandlerResponse, latency: Duration) {
//!         self.0.after(&req.handler_name, res.status, latency);
//!     }
//! }
//!
//! /// Wraps an untyped handler: it gets the request's executor; the response gets the
//! /// request id and, after a committed write, the consistency token.
//! pub fn lifeguarded<F>(f: F) -> impl Fn(HandlerRequest) -> HandlerResponse + Clone + Send + 'static
//! where F: Fn(HandlerRequest, &RequestExecutor) -> HandlerResponse + Clone + Send + 'static {
//!     move |req| {
//!         let lg = LIFEGUARD.get().expect("LIFEGUARD is set at start-up");
//!         let ctx = match lg.context(pairs(&req)) {
//!             Ok(ctx) => ctx.or_request_id(req.request_id.to_string()),
//!             Err(p) => return to_response(p.into()),
//!         };
//!         let done = lg.handle(ctx, |db| f(req, db));
//!         let mut res = done.output;
//!         for (k, v) in done.headers { res.set_header(&k, v); }
//!         res
//!     }
//! }
//!
//! // In the register callback:
//! //   d.add_middleware(Arc::new(LifeguardMiddleware(LIFEGUARD.get().unwrap().clone())));
//! //   let tx = spawn_untyped_with_stack_size_and_name(lifeguarded(list_pets), 0x8000, "list_pets");
//! //   d.add_route(route.clone(), tx);
//! // Typed handlers: wrap with `Lifeguarded<H>` (see tests/brrtrouter_shape.rs), whose
//! // `TryFrom<HandlerRequest>` builds the context in the handler coroutine.
//! // CORS: list the request headers in cors.allowed_headers and
//! // Lifeguard-Consistency-Token, Lifeguard-Request-Id in cors.expose_headers.
//! // /metrics: RunAppHooks::extra_prometheus can return the text of `lg.metrics().body`.
//! ```
//!
//! # Serving HTTP
//!
//! [`service::ServiceBuilder`] builds a service (routes, health, metrics) that runs on
//! Lifeguard's own HTTP/1.1 server over `may::net` ([`server`]: up to 64 request headers
//! by default, a `431` past that, owned response headers) or on may_minihttp 0.1.11
//! ([`minihttp`], whose docs list what that version imposes and how the adapter copes).
//!
//! # The coroutine-local convenience
//!
//! [`Lifeguard::handle`] also installs the executor as [`current`] for the duration of
//! the handler; explicit passing stays the primary API (see [`scope()`]).

#![warn(missing_docs)]

mod context;
mod endpoints;
mod executor;
mod extension;
mod headers;
pub mod minihttp;
mod problem;
mod scope;
pub mod server;
pub mod service;

pub use context::{RequestContext, Settings, MAX_REQUEST_ID_LEN};
pub use endpoints::{live, metrics, ready, HttpMetrics, ReadyPolicy, Reply, JSON, PROMETHEUS_TEXT};
pub use executor::RequestExecutor;
pub use extension::{Handled, Lifeguard};
pub use headers::{
    HeaderNames, CONSISTENCY_TOKEN, MAX_STALENESS, READ_PREFERENCE, REQUEST_ID, SERVED_BY, TIMEOUT,
};
pub use problem::{Problem, PROBLEM_JSON};
pub use scope::{current, scope};
