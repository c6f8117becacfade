//! One HTTP/1.1 connection: parse heads, hand bodies to the service, write responses.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{SystemTime, UNIX_EPOCH};

use may::net::TcpStream;

use crate::endpoints::Reply;
use crate::problem::Problem;
use crate::service::wire::{reason, sendable, status, valid_value};
use crate::service::{App, BodySource, Head, Limits};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 << 10;
/// Bytes read and dropped after a closing response, so the close does not reset the
/// connection (losing the response) while the client is still sending.
const LINGER_BYTES: usize = 64 << 10;

/// Serves one accepted connection until the client closes it or it must close.
pub(super) fn serve(stream: TcpStream, app: &App) {
    // One write per batch of responses: Nagle would only delay it.
    let _ = stream.set_nodelay(true);
    let mut conn = Connection {
        stream,
        input: Vec::with_capacity(READ_CHUNK),
        pos: 0,
        output: Vec::with_capacity(READ_CHUNK),
        date: Date::default(),
    };
    if let Err(e) = conn.run(app) {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

struct Connection {
    stream: TcpStream,
    /// Bytes read; those before `pos` are consumed.
    input: Vec<u8>,
    pos: usize,
    /// Responses not yet written.
    output: Vec<u8>,
    date: Date,
}

/// A parsed head and how to treat its connection.
struct Parsed {
    head: Head,
    /// Bytes of request line and headers.
    len: usize,
    keep_alive: KeepAlive,
    expect_continue: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum KeepAlive {
    /// HTTP/1.1 default: stay open.
    Implicit,
    /// HTTP/1.0 with `Connection: keep-alive`: stay open and say so.
    Announced,
    /// Close after this response.
    Close,
}

impl Connection {
    fn run(&mut self, app: &App) -> io::Result<()> {
        let limits = app.limits;
        loop {
            let parsed = match self.parse(&limits) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    self.flush()?;
                    if self.read_more(READ_CHUNK)? == 0 {
                        return Ok(());
                    }
                    continue;
                }
                Err(problem) => {
                    let reply = app.refuse(problem);
                    self.encode(&reply, KeepAlive::Close, false);
                    return self.close();
                }
            };
            self.pos += parsed.len;
            let head_only = parsed.head.method == "HEAD";
            let mut body = ConnBody {
                conn: self,
                expect_continue: parsed.expect_continue,
            };
            let outcome = app.respond(parsed.head, &mut body);
            let keep_alive = if outcome.close {
                KeepAlive::Close
            } else {
                parsed.keep_alive
            };
            self.encode(&outcome.reply, keep_alive, head_only);
            if keep_alive == KeepAlive::Close {
                return self.close();
            }
        }
    }

    /// The next complete head in the buffer, `None` when more bytes are needed, or the
    /// problem that ends the connection.
    fn parse(&self, limits: &Limits) -> Result<Option<Parsed>, Problem> {
        let buf = &self.input[self.pos..];
        let too_large = |detail: String| {
            Problem::new(
                431,
                "urn:lifeguard:problem:header-fields-too-large",
                "Request header fields too large",
                detail,
            )
        };
        let head_bytes = || {
            too_large(format!(
                "the request line and headers may be at most {} bytes",
                limits.max_head_bytes
            ))
        };
        // On the coroutine's stack for the default limit: no allocation per request.
        let mut inline = [httparse::EMPTY_HEADER; 64];
        let mut spilled;
        let fields: &mut [httparse::Header<'_>] = if limits.max_headers <= inline.len() {
            &mut inline[..limits.max_headers]
        } else {
            spilled = vec![httparse::EMPTY_HEADER; limits.max_headers];
            &mut spilled
        };
        let mut req = httparse::Request::new(fields);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len > limits.max_head_bytes => {
                return Err(head_bytes())
            }
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) if buf.len() > limits.max_head_bytes => {
                return Err(head_bytes())
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(httparse::Error::TooManyHeaders) => {
                return Err(too_large(format!(
                    "a request may carry at most {} headers",
                    limits.max_headers
                )))
            }
            Err(e) => {
                return Err(Problem::new(
                    400,
                    "urn:lifeguard:problem:malformed-request",
                    "Malformed request",
                    format!("the request head is not valid HTTP/1.1: {e}"),
                ))
            }
        };
        // A complete parse always has a method, path and version; the defaults only
        // keep this total.
        let head = Head::new(
            req.method.unwrap_or_default(),
            req.path.unwrap_or_default(),
            req.headers,
        );
        let has_token = |name: &str, token: &str| {
            head.headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .flat_map(|(_, v)| v.split(','))
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        };
        let keep_alive = if has_token("connection", "close") {
            KeepAlive::Close
        } else if req.version == Some(1) {
            KeepAlive::Implicit
        } else if has_token("connection", "keep-alive") {
            KeepAlive::Announced
        } else {
            KeepAlive::Close
        };
        let expect_continue = req.version == Some(1) && has_token("expect", "100-continue");
        Ok(Some(Parsed {
            head,
            len,
            keep_alive,
            expect_continue,
        }))
    }

    /// Reads at least one byte more (up to `want`); 0 at end of stream.
    fn read_more(&mut self, want: usize) -> io::Result<usize> {
        if self.pos > 0 {
            self.input.drain(..self.pos);
            self.pos = 0;
        }
        let filled = self.input.len();
        self.input.resize(filled + want.max(READ_CHUNK), 0);
        let read = self.stream.read(&mut self.input[filled..]);
        let n = *read.as_ref().unwrap_or(&0);
        self.input.truncate(filled + n);
        read
    }

    /// Bytes buffered and not yet consumed.
    fn buffered(&self) -> usize {
        self.input.len() - self.pos
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.stream.write_all(&self.output)?;
            self.output.clear();
        }
        Ok(())
    }

    /// Writes what is pending, stops sending, and reads what the client still sends (up to
    /// [`LINGER_BYTES`]) so closing does not reset the connection under the response.
    fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        self.stream.shutdown(Shutdown::Write)?;
        let mut sink = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match self.stream.read(&mut sink) {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
        Ok(())
    }

    fn encode(&mut self, reply: &Reply, keep_alive: KeepAlive, head_only: bool) {
        let code = status(reply.status);
        // No body, and no Content-Length, for informational, 204 and 304 responses.
        let bodyless = matches!(code, 100..=199 | 204 | 304);
        let out = &mut self.output;
        // Writing into a Vec cannot fail.
        let _ = write!(
            out,
            "HTTP/1.1 {code} {}\r\nServer: lifeguard\r\nDate: {}\r\n",
            reason(code),
            self.date.now()
        );
        if !reply.content_type.is_empty() && valid_value(&reply.content_type) {
            let _ = write!(out, "Content-Type: {}\r\n", reply.content_type);
        }
        if !bodyless {
            let _ = write!(out, "Content-Length: {}\r\n", reply.body.len());
        }
        match keep_alive {
            KeepAlive::Close => out.extend_from_slice(b"Connection: close\r\n"),
            KeepAlive::Announced => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            KeepAlive::Implicit => {}
        }
        for (name, value) in &reply.headers {
            if sendable(name, value) {
                let _ = write!(out, "{name}: {value}\r\n");
            }
        }
        out.extend_from_slice(b"\r\n");
        if !bodyless && !head_only {
            out.extend_from_slice(&reply.body);
        }
    }
}

/// The body of the request being served, read from the buffer and then the socket.
struct ConnBody<'c> {
    conn: &'c mut Connection,
    /// The client waits for `100 Continue` before it sends the body.
    expect_continue: bool,
}

impl ConnBody<'_> {
    /// Makes sure the client will send: earlier responses first, then `100 Continue`.
    fn before_waiting(&mut self) -> io::Result<()> {
        if self.expect_continue {
            self.expect_continue = false;
            self.conn
                .output
                .extend_from_slice(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        self.conn.flush()
    }
}

impl BodySource for ConnBody<'_> {
    fn read(&mut self, len: usize) -> io::Result<Vec<u8>> {
        if self.conn.buffered() < len {
            self.before_waiting()?;
        }
        while self.conn.buffered() < len {
            let missing = len - self.conn.buffered();
            if self.conn.read_more(missing)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        let start = self.conn.pos;
        self.conn.pos += len;
        Ok(self.conn.input[start..start + len].to_vec())
    }

    fn discard(&mut self, len: usize) -> bool {
        if self.expect_continue {
            // The client may never send a body it was not asked for.
            return false;
        }
        let now = self.conn.buffered().min(len);
        self.conn.pos += now;
        let mut left = len - now;
        if left > 0 && self.conn.flush().is_err() {
            return false;
        }
        let mut sink = [0u8; 4096];
        while left > 0 {
            let want = left.min(sink.len());
            match self.conn.stream.read(&mut sink[..want]) {
                Ok(0) | Err(_) => return false,
                Ok(n) => left -= n,
            }
        }
        true
    }
}

/// The `Date` header's value, formatted once per second.
#[derive(Default)]
struct Date {
    second: u64,
    text: String,
}

impl Date {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let second = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        if second != self.second || self.text.is_empty() {
            self.second = second;
            self.text = httpdate::fmt_http_date(now);
        }
        &self.text
    }
}
