//! Serving a [`LifeguardService`] on [`may_minihttp`] (`=0.1.11`):
//! [`LifeguardService::start_minihttp`].
//!
//! The service itself (routes, `Lifeguard-*` headers, body framing) is the same on every
//! server; see [`crate::service`]. What 0.1.11 imposes, and how this adapter copes:
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
//!   response before any service code runs; nothing here can answer it. Browsers often send
//!   more: use Lifeguard's own server ([`LifeguardService::start`]), which answers `431`
//!   only past [`Limits::max_headers`](crate::service::Limits::max_headers).
//! - **Malformed `Content-Length`** (not decimal, several different values, too large for
//!   `usize`): `400` with `Connection: close`, body not read (0.1.11 panics on it inside
//!   `Request::body`, so `body()` is only called once every `Content-Length` is a plain
//!   decimal within the cap). The body's framing is unknown, so any bytes the client still
//!   sends are parsed by may_minihttp as the next request (a parse error there closes the
//!   connection, possibly before the `400` is flushed). **Body over
//!   [`Limits::max_body`](crate::service::Limits::max_body)**: `413`; the body is drained
//!   when it is at most `max_drain` (the connection stays in sync), else `Connection: close`
//!   and the same caveat. **`Transfer-Encoding`** (chunked is not supported by 0.1.11):
//!   `501` with `Connection: close`.
//! - **`Err` from `call` becomes a `500` whose body is the error text.** `call` never
//!   returns `Err`.

mod slab;

use std::io::{self, Read};
use std::sync::Arc;

use may::coroutine::JoinHandle;
use may_minihttp::{HttpServer, HttpService, Request, Response};

use crate::endpoints::{JSON, PROMETHEUS_TEXT};
use crate::problem::PROBLEM_JSON;
use crate::service::wire::{reason, sendable, status, valid_value};
use crate::service::{App, BodySource, Head, LifeguardService};
use slab::HeaderSlab;

/// may_minihttp 0.1.11's response header array size.
pub const MAX_RESPONSE_HEADERS: usize = 16;

impl LifeguardService {
    /// Starts the service on may_minihttp 0.1.11 at `addr`; cancel the returned coroutine
    /// to stop accepting. Configure `may` (workers, stack size in words) before calling
    /// this. See the [module docs](self) for what that version imposes.
    pub fn start_minihttp(self, addr: impl std::net::ToSocketAddrs) -> io::Result<JoinHandle<()>> {
        HttpServer(MiniService {
            app: self.app,
            slab: None,
        })
        .start(addr)
    }
}

/// The may_minihttp service. may_minihttp clones it once per connection; each clone owns
/// the header slab of its connection.
struct MiniService {
    app: Arc<App>,
    slab: Option<HeaderSlab>,
}

impl Clone for MiniService {
    fn clone(&self) -> Self {
        MiniService {
            app: self.app.clone(),
            slab: None,
        }
    }
}

/// The body of a may_minihttp request, which `Request::body` consumes.
struct MiniBody<'buf, 'header, 'stream>(Option<Request<'buf, 'header, 'stream>>);

impl BodySource for MiniBody<'_, '_, '_> {
    fn read(&mut self, len: usize) -> io::Result<Vec<u8>> {
        let req = self.0.take().ok_or(io::ErrorKind::UnexpectedEof)?;
        let mut body = Vec::with_capacity(len);
        // `BodyReader::read` stops at Content-Length; `fill_buf` alone would return only
        // the bytes already buffered.
        req.body().take(len as u64).read_to_end(&mut body)?;
        if body.len() != len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(body)
    }

    fn discard(&mut self, _len: usize) -> bool {
        // Dropping the reader drains exactly the validated Content-Length.
        self.0.take().map(Request::body).is_some()
    }
}

impl HttpService for MiniService {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        let head = Head::new(req.method(), req.path(), req.headers());
        let outcome = self.app.respond(head, &mut MiniBody(Some(req)));
        let slab = self.slab.get_or_insert_with(HeaderSlab::acquire);
        slab.reset();
        encode(outcome.reply, outcome.close, slab, rsp);
        Ok(())
    }
}

fn encode(reply: crate::Reply, close: bool, slab: &mut HeaderSlab, rsp: &mut Response) {
    let status = status(reply.status);
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
        if !sendable(name, value) {
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

/// may_minihttp's `HttpServer` needs `Clone + Send + Sync + 'static`.
const _: fn() = || {
    fn check<T: Clone + Send + Sync + 'static>() {}
    check::<MiniService>();
};
