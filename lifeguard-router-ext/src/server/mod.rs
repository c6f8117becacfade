//! Lifeguard's own HTTP/1.1 server on `may::net`: [`LifeguardService::start`].
//!
//! It runs the same service as the may_minihttp adapter ([`crate::service`]) without that
//! crate's limits:
//!
//! - **Request headers**: up to [`Limits::max_headers`] (default 64; browsers' `fetch`
//!   POSTs often send more than 16) and [`Limits::max_head_bytes`] of request line plus
//!   headers (default 16 KiB). Past either: `431` problem+json, then the connection closes.
//!   A head that is not HTTP/1.x: `400` problem+json, then close.
//! - **Response headers**: any number, written as owned bytes (no `'static` lines, no
//!   leaked memory), after `Server`, `Date`, `Content-Type`, `Content-Length` and
//!   `Connection`, which handlers cannot set.
//! - **Keep-alive**: HTTP/1.1 connections stay open until the client sends
//!   `Connection: close` or closes; HTTP/1.0 ones only with `Connection: keep-alive`.
//!   Pipelined requests are answered in order; responses are written once no complete
//!   request is left in the buffer, or before waiting for a body's bytes.
//! - **`Expect: 100-continue`**: `100 Continue` is sent when the body is about to be read;
//!   a request refused before its body is read (`404`, `413`) is answered and the
//!   connection closed, since the client may never send that body.
//! - **Body framing**: as in [`crate::service`]: `Content-Length` only (a malformed one is a
//!   `400`, too large a `413`), `Transfer-Encoding` is a `501`.
//!
//! - **Deadlines** ([`ServerConfig`]): a request head must arrive whole within
//!   [`ServerConfig::head_timeout`] of its first byte (of the accept, for the first
//!   request), a body within [`ServerConfig::body_timeout`] of when its read starts, the
//!   next request's first byte within [`ServerConfig::idle_timeout`] of the last response,
//!   each batch of responses must be taken by the client within
//!   [`ServerConfig::write_timeout`], and the read that lets a closing response arrive
//!   before the close ends after [`ServerConfig::linger_timeout`]. A connection that misses
//!   one is closed without an answer (a slowloris client, one that vanished, one that stops
//!   reading). The handler itself is not bounded by the server: its statements have their
//!   own deadlines. Deadlines are kept by one sweeper coroutine per server and act up to an
//!   eighth of the shortest timeout late (between 5 ms and 250 ms); no wait blocks a `may`
//!   worker thread.
//! - **TCP keepalive** on every accepted socket ([`ServerConfig::keepalives`]), so the
//!   kernel notices a peer that vanished during a long handler.
//! - **Connection cap** ([`ServerConfig::max_connections`]): past it, a connection is
//!   accepted, answered `503` problem+json with `Retry-After: 1` and `Connection: close`,
//!   and closed (it is never read); while [`MAX_REFUSING`] such answers are still being
//!   delivered, further ones are closed at once without an answer.
//! - **Heads across reads**: once a head is found incomplete, later reads only scan their
//!   new bytes for its end, so a head arriving in many small reads costs work in
//!   proportion to its length.

mod connection;
mod head;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub use head::fuzz_head;
mod watch;

use std::io;
use std::net::ToSocketAddrs;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::time::Duration;

use lifeguard_core::pg::Keepalives;
use lifeguard_core::rt;
use may::coroutine::JoinHandle;
use may::net::{TcpListener, TcpStream};
use socket2::{SockRef, TcpKeepalive};

use crate::endpoints::Reply;
use crate::problem::Problem;
#[cfg(doc)]
use crate::service::Limits;
use crate::service::{App, LifeguardService};
use watch::{Admission, Watches};

/// The most connections past [`ServerConfig::max_connections`] being answered `503` at
/// once; further ones are closed unanswered, so a flood costs no more coroutines.
pub const MAX_REFUSING: usize = 64;

/// The deadlines and limits of Lifeguard's own server ([`LifeguardService::start_with`]);
/// the request size limits are the service's ([`Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// How long a request head (request line and headers) may take to arrive whole,
    /// counted from its first byte, or from the accept for a connection's first request
    /// (default 10 s). Ends slowloris clients.
    pub head_timeout: Duration,
    /// How long a request body may take to arrive whole, counted from when the service
    /// starts reading it (after `100 Continue`, if asked for) (default 30 s).
    pub body_timeout: Duration,
    /// How long a keep-alive connection may wait for the next request's first byte after
    /// the last response (default 75 s: longer than the 60 s idle timeout of common load
    /// balancers, so they, not the server, close idle pooled connections and never send
    /// on one the server is closing).
    pub idle_timeout: Duration,
    /// How long writing one batch of responses may take (default 30 s), so a client that
    /// stops reading cannot hold the connection.
    pub write_timeout: Duration,
    /// How long, after a closing response, the server keeps reading and dropping what
    /// the client still sends so the close does not reset the connection before the
    /// response is read (default 1 s; at most 64 KiB are read either way).
    pub linger_timeout: Duration,
    /// The most connections served at once (default 10 000; keep it under the process's
    /// descriptor limit). Past it, see [`MAX_REFUSING`] and the module docs.
    pub max_connections: usize,
    /// TCP keepalive probes on accepted sockets (default: on, first probe after 30 s idle,
    /// then every 10 s, 3 unanswered probes end the connection).
    pub keepalives: Keepalives,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            head_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
            linger_timeout: Duration::from_secs(1),
            max_connections: 10_000,
            keepalives: Keepalives::default(),
        }
    }
}

impl ServerConfig {
    /// How often the sweeper looks for missed deadlines.
    fn sweep_period(&self) -> Duration {
        let shortest = [
            self.head_timeout,
            self.body_timeout,
            self.idle_timeout,
            self.write_timeout,
            self.linger_timeout,
        ]
        .into_iter()
        .min()
        .unwrap_or_default();
        (shortest / 8).clamp(Duration::from_millis(5), Duration::from_millis(250))
    }
}

impl LifeguardService {
    /// Starts the service on Lifeguard's own HTTP/1.1 server at `addr` with the default
    /// [`ServerConfig`]; see [`Self::start_with`].
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub fn start(self, addr: impl ToSocketAddrs) -> io::Result<JoinHandle<()>> {
        self.start_with(addr, ServerConfig::default())
    }

    /// Starts the service on Lifeguard's own HTTP/1.1 server at `addr`; cancel the
    /// returned coroutine to stop accepting (open connections are served until they
    /// close or miss a deadline). Configure `may` (workers, stack size in words) before
    /// calling this.
    ///
    /// # Errors
    ///
    /// The address cannot be bound, or the sweeper coroutine cannot start.
    pub fn start_with(
        self,
        addr: impl ToSocketAddrs,
        config: ServerConfig,
    ) -> io::Result<JoinHandle<()>> {
        let listener = TcpListener::bind(addr)?;
        let watches = Watches::start(config.max_connections, MAX_REFUSING, config.sweep_period())?;
        let busy = Arc::new(
            Reply::from(Problem::new(
                503,
                "urn:lifeguard:problem:server-busy",
                "Server busy",
                format!(
                    "the server is serving its maximum of {} connections",
                    config.max_connections
                ),
            ))
            .header("Retry-After", "1"),
        );
        let app = self.app;
        let accept = move || loop {
            match listener.accept() {
                Ok((stream, _)) => admit(stream, &watches, &app, &config, &busy),
                Err(e) => {
                    // Out of descriptors, mostly: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    may::coroutine::sleep(Duration::from_millis(20));
                }
            }
        };
        rt::spawn("lifeguard-http", may::config().get_stack_size(), accept)
    }
}

/// Serves `stream` on a coroutine of its own, or refuses it past the cap.
fn admit(
    stream: TcpStream,
    watches: &Arc<Watches>,
    app: &Arc<App>,
    config: &ServerConfig,
    busy: &Arc<Reply>,
) {
    let admission = match watches.admit(&stream) {
        Ok(admission) => admission,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch an accepted connection; closing it");
            return;
        }
    };
    let config = *config;
    // Handlers keep the contract of `rt::spawn`, as on may_minihttp.
    let spawned = match admission {
        Admission::Serve(guard) => {
            // One write per batch of responses: Nagle would only delay it.
            let _ = stream.set_nodelay(true);
            if let Err(e) = set_keepalives(&stream, &config.keepalives) {
                tracing::debug!(error = %e, "cannot set TCP keepalive on a connection");
            }
            let app = app.clone();
            let serve = move || connection::serve(stream, &app, &config, guard);
            rt::spawn("lifeguard-http-conn", may::config().get_stack_size(), serve)
        }
        Admission::Refuse(guard) => {
            let busy = busy.clone();
            let refuse = move || connection::refuse(stream, &busy, &config, guard);
            rt::spawn("lifeguard-http-busy", 0x2000, refuse)
        }
        // Dropping the stream closes it.
        Admission::Drop => return,
    };
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start a connection coroutine");
    }
}

/// Turns on (or off) keepalive probes on an accepted socket.
fn set_keepalives(stream: &TcpStream, k: &Keepalives) -> io::Result<()> {
    // SAFETY: `stream` keeps the descriptor open for as long as this borrow lives.
    let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let socket = SockRef::from(&fd);
    if !k.enabled {
        return socket.set_keepalive(false);
    }
    // The kernel takes whole seconds, at least one.
    let secs = |d: Duration| Duration::from_secs(d.as_secs_f64().ceil().max(1.0) as u64);
    let probes = TcpKeepalive::new()
        .with_time(secs(k.idle))
        .with_interval(secs(k.interval))
        .with_retries(k.count.max(1));
    socket.set_tcp_keepalive(&probes)
}
