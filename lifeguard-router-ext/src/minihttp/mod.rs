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
//!   budgets them: `Content-Type`, `Connection: close` (refusals), the `Lifeguard-*`
//!   headers, then the handler's headers in order; those past the budget are dropped with a
//!   warning. `Server`, `Date` and `Content-Length` are added by may_minihttp outside it.
//! - **At most 16 request headers.** A 17th makes may_minihttp close the connection with no
//!   response before any service code runs; nothing here can answer it. Browsers often send
//!   more: use Lifeguard's own server ([`LifeguardService::start`]), which answers `431`
//!   only past [`Limits::max_headers`](crate::service::Limits::max_headers).
//! - **Malformed `Content-Length`** (not decimal, several different values, too large for
//!   `usize`): `400`, body not read (0.1.11 panics on it inside `Request::body`, so
//!   `body()` is only called once every `Content-Length` is a plain decimal within the
//!   cap). **`Transfer-Encoding`** (chunked is not supported by 0.1.11): `501`. **Body
//!   over [`Limits::max_body`](crate::service::Limits::max_body)**: `413`; the body is
//!   drained when it is at most `max_drain` (the connection stays in sync), else not read.
//! - **A refusal whose body was not read ends the connection** (the three cases above
//!   when the body is not drained, whether or not a route matched, and a body that ends
//!   early): 0.1.11 ignores `Connection: close`
//!   and would parse the unread body as the next request (request smuggling). The
//!   adapter is made per connection (`HttpServiceFactory`, which is handed the socket's
//!   descriptor) and, from inside `call`, shuts the socket's read side: the refusal
//!   (with `Connection: close`) is written, then the next read finds nothing and
//!   may_minihttp closes the connection. Linux still delivers bytes queued or arriving
//!   after that shutdown, so a request parsed from them is never served: its `call`
//!   shuts both directions and the connection ends unanswered. When such bytes came in
//!   the same read as the refused request (pipelined in one segment), the refusal, and
//!   any earlier response of that batch, is still in may_minihttp's output buffer and is
//!   not sent either: the client sees the connection close without an answer. The
//!   refusal is a few hundred bytes; one that does not fit the socket's send buffer at
//!   once is cut.
//! - **HEAD, `1xx`, `204` and `304` responses carry no body**, but 0.1.11 announces the
//!   length of the bytes it writes, so they say `Content-Length: 0` (not the length a
//!   `GET` would have, which RFC 9110 allows to omit but not to misstate; 0.1.11 cannot
//!   omit it). A HEAD request matches only routes registered for `HEAD`.
//! - **`Err` from `call` becomes a `500` whose body is the error text.** `call` never
//!   returns `Err`.
//! - **No deadlines.** 0.1.11 waits on a client for ever (idle, slow head, slow body) and
//!   does not cap a head's bytes; Lifeguard's own server bounds each.
//! - **Spawning.** [`LifeguardService::start_minihttp`] returns the bind error. may
//!   0.3.51 reports no spawn error: a coroutine stack that cannot be allocated panics (for
//!   the accept coroutine, in the caller, as with every spawn of Lifeguard's own server).
//!   For a connection coroutine the panic is inside 0.1.11's accept loop, which also
//!   `unwrap`s the spawn result: the accept coroutine ends, the server stops accepting,
//!   and joining the returned handle yields the panic; nothing outside 0.1.11 can catch
//!   it. Each connection coroutine is queued on worker `descriptor % workers` (0.1.11's
//!   factory path), then may's work stealing applies.

mod slab;

use std::io::{self, Read};
use std::net::Shutdown;
use std::os::fd::{BorrowedFd, RawFd};
use std::sync::Arc;

use may::coroutine::JoinHandle;
use may_minihttp::{HttpService, HttpServiceFactory, Request, Response};
use socket2::SockRef;

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
    /// this. See the [module docs](self) for what that version imposes, and how a
    /// connection whose framing is lost is closed.
    pub fn start_minihttp(self, addr: impl std::net::ToSocketAddrs) -> io::Result<JoinHandle<()>> {
        MiniFactory { app: self.app }.start(addr)
    }
}

/// Makes one [`MiniConnection`] per accepted connection.
struct MiniFactory {
    app: Arc<App>,
}

impl HttpServiceFactory for MiniFactory {
    type Service = MiniConnection;

    fn new_service(&self, id: usize) -> MiniConnection {
        MiniConnection {
            app: self.app.clone(),
            // 0.1.11 passes the accepted socket's descriptor widened with
            // `as_raw_fd() as usize`; narrowing it back is exact.
            fd: id as RawFd,
            slab: None,
            closing: false,
        }
    }
}

/// The service of one connection: it owns the connection's header slab and knows the
/// connection's descriptor, to stop reading from it once its framing is lost.
struct MiniConnection {
    app: Arc<App>,
    /// Owned by may_minihttp's `TcpStream`, which outlives every `call` (the request
    /// borrows it); used only inside `call`, never closed here.
    fd: RawFd,
    slab: Option<HeaderSlab>,
    /// A response said `Connection: close`: whatever follows on the socket is bytes the
    /// service did not frame (an unread body), never a request.
    closing: bool,
}

impl MiniConnection {
    fn shutdown(&self, how: Shutdown) {
        // SAFETY: only called inside `call`, while the request borrows the `TcpStream`
        // that owns `fd`, so the descriptor is open (and is not closed here).
        let fd = unsafe { BorrowedFd::borrow_raw(self.fd) };
        if let Err(e) = SockRef::from(&fd).shutdown(how) {
            // The peer is gone already (ENOTCONN): nothing more can be read or sent.
            tracing::debug!(error = %e, "shutdown of a may_minihttp connection failed");
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

impl HttpService for MiniConnection {
    fn call(&mut self, req: Request, rsp: &mut Response) -> io::Result<()> {
        if self.closing {
            // Parsed from bytes that followed a closing request in the same read: the
            // closing response is still in may_minihttp's output buffer, behind this one.
            // Shutting both directions makes that buffer's write fail, so neither is
            // sent and the connection ends; a stray answer to a smuggled request would
            // be worse than no answer to the refused one.
            self.shutdown(Shutdown::Both);
            rsp.status_code(400, reason(400));
            rsp.header("Connection: close");
            return Ok(());
        }
        let head_only = req.method() == "HEAD";
        let head = Head::new(req.method(), req.path(), req.headers());
        let outcome = self.app.respond(head, &mut MiniBody(Some(req)));
        if outcome.close {
            // 0.1.11 ignores `Connection: close` and keeps parsing. Linux still delivers
            // what is queued or arrives after SHUT_RD, but a read of an empty queue now
            // ends the connection (after this response is written), and `closing` makes
            // any request parsed from later bytes end it unanswered.
            self.closing = true;
            self.shutdown(Shutdown::Read);
        }
        let slab = self.slab.get_or_insert_with(HeaderSlab::acquire);
        slab.reset();
        encode(outcome.reply, outcome.close, head_only, slab, rsp);
        Ok(())
    }
}

fn encode(
    reply: crate::Reply,
    close: bool,
    head_only: bool,
    slab: &mut HeaderSlab,
    rsp: &mut Response,
) {
    let status = status(reply.status);
    // 0.1.11 announces the length of the bytes it writes, so a body that must not be sent
    // cannot be announced either: these go out with `Content-Length: 0`.
    let bodyless = head_only || matches!(status, 100..=199 | 204 | 304);
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
    if !bodyless {
        rsp.body_vec(reply.body);
    }
}

/// may_minihttp moves the factory into its accept coroutine and each service into its
/// connection coroutine.
const _: fn() = || {
    fn check<T: Send + 'static>() {}
    check::<MiniFactory>();
    check::<MiniConnection>();
};
