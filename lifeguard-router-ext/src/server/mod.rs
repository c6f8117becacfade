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
//! Like may_minihttp it has no idle timeout: put a proxy with one in front when clients
//! are not trusted to close their connections.

mod connection;

use std::io;
use std::net::ToSocketAddrs;
use std::time::Duration;

use lifeguard_core::rt;
use may::coroutine::JoinHandle;
use may::net::TcpListener;

use crate::service::LifeguardService;
#[cfg(doc)]
use crate::service::Limits;

impl LifeguardService {
    /// Starts the service on Lifeguard's own HTTP/1.1 server at `addr`; cancel the
    /// returned coroutine to stop accepting (open connections are served until they
    /// close). Configure `may` (workers, stack size in words) before calling this.
    ///
    /// # Errors
    ///
    /// The address cannot be bound.
    pub fn start(self, addr: impl ToSocketAddrs) -> io::Result<JoinHandle<()>> {
        let listener = TcpListener::bind(addr)?;
        let app = self.app;
        let accept = move || loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    let app = app.clone();
                    let serve = move || connection::serve(stream, &app);
                    // Handlers keep the contract of `rt::spawn`, as on may_minihttp.
                    let spawned =
                        rt::spawn("lifeguard-http-conn", may::config().get_stack_size(), serve);
                    if let Err(e) = spawned {
                        tracing::error!(error = %e, "cannot start a connection coroutine");
                    }
                }
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
