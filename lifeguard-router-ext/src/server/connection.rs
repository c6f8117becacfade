//! One HTTP/1.1 connection: parse heads, hand bodies to the service, write responses,
//! each wait for the client bounded by a deadline.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{SystemTime, UNIX_EPOCH};

use may::net::TcpStream;

use super::head::{HeadReader, KeepAlive};
use super::watch::Guard;
use super::ServerConfig;
use crate::endpoints::Reply;
use crate::service::wire::{reason, sendable, status, valid_value};
use crate::service::{App, BodySource};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 8 << 10;
/// Bytes read and dropped after a closing response, so the close does not reset the
/// connection (losing the response) while the client is still sending.
const LINGER_BYTES: usize = 64 << 10;

/// Serves one accepted connection until the client closes it, it must close, or a
/// deadline passes.
pub(super) fn serve(stream: TcpStream, app: &App, config: &ServerConfig, guard: Guard) {
    let mut conn = Connection::new(stream, config, guard);
    // The first head is due `head_timeout` after the accept.
    conn.head_deadline = Some(conn.guard.deadline_in(config.head_timeout));
    let ended = conn.run(app);
    conn.log_end(ended);
}

/// Answers a connection past the cap with `reply` (sent with `Connection: close`) and
/// closes it.
pub(super) fn refuse(stream: TcpStream, reply: &Reply, config: &ServerConfig, guard: Guard) {
    let mut conn = Connection::new(stream, config, guard);
    conn.encode(reply, KeepAlive::Close, false);
    let ended = conn.close();
    conn.log_end(ended);
}

struct Connection {
    stream: TcpStream,
    /// The read buffer: bytes `pos..end` are read and not yet consumed. It is zeroed only
    /// when it grows, so a read does not clear the space it is about to fill.
    input: Vec<u8>,
    pos: usize,
    end: usize,
    /// Responses not yet written.
    output: Vec<u8>,
    date: Date,
    head: HeadReader,
    /// When the head being received is due, once its first byte came (or the connection
    /// was accepted).
    head_deadline: Option<u64>,
    guard: Guard,
    config: ServerConfig,
}

impl Connection {
    fn new(stream: TcpStream, config: &ServerConfig, guard: Guard) -> Connection {
        Connection {
            stream,
            input: Vec::new(),
            pos: 0,
            end: 0,
            output: Vec::with_capacity(READ_CHUNK),
            date: Date::default(),
            head: HeadReader::default(),
            head_deadline: None,
            guard,
            config: *config,
        }
    }

    fn log_end(&self, ended: io::Result<()>) {
        if self.guard.fired() {
            tracing::debug!("HTTP connection closed: the client missed a deadline");
        } else if let Err(e) = ended {
            tracing::debug!(error = %e, "HTTP connection ended");
        }
    }

    fn run(&mut self, app: &App) -> io::Result<()> {
        let limits = app.limits;
        loop {
            let parsed = match self.head.parse(&self.input[self.pos..self.end], &limits) {
                Ok(Some(parsed)) => parsed,
                Ok(None) => {
                    self.flush()?;
                    self.await_head()?;
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
            // The handler runs unbounded by the server: its own deadlines apply.
            self.head_deadline = None;
            self.guard.disarm()?;
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

    /// Arms the deadline of the wait for the next head's bytes: the idle timeout before
    /// its first byte, then the head timeout from that byte on.
    fn await_head(&mut self) -> io::Result<()> {
        if self.head_deadline.is_none() && self.buffered() == 0 {
            return self.guard.arm(self.config.idle_timeout);
        }
        let deadline = match self.head_deadline {
            Some(at) => at,
            None => self.guard.deadline_in(self.config.head_timeout),
        };
        self.head_deadline = Some(deadline);
        self.guard.arm_at(deadline)
    }

    /// Reads at least one byte more (up to `want`); 0 at end of stream.
    fn read_more(&mut self, want: usize) -> io::Result<usize> {
        if self.pos > 0 {
            self.input.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        let room = self.end + want.max(READ_CHUNK);
        if self.input.len() < room {
            self.input.resize(room, 0);
        }
        let n = self.stream.read(&mut self.input[self.end..room])?;
        self.end += n;
        Ok(n)
    }

    /// Bytes buffered and not yet consumed.
    fn buffered(&self) -> usize {
        self.end - self.pos
    }

    /// Writes the pending responses, within the write timeout.
    fn flush(&mut self) -> io::Result<()> {
        if !self.output.is_empty() {
            self.guard.arm(self.config.write_timeout)?;
            self.stream.write_all(&self.output)?;
            self.output.clear();
        }
        Ok(())
    }

    /// Writes what is pending, stops sending, and reads what the client still sends (up to
    /// [`LINGER_BYTES`], for at most the linger timeout) so closing does not reset the
    /// connection under the response.
    fn close(&mut self) -> io::Result<()> {
        self.flush()?;
        self.stream.shutdown(Shutdown::Write)?;
        self.guard.arm(self.config.linger_timeout)?;
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
        // Pieces pushed one by one: `write!` costs a formatter pass per response.
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(itoa::Buffer::new().format(code).as_bytes());
        out.push(b' ');
        out.extend_from_slice(reason(code).as_bytes());
        out.extend_from_slice(b"\r\nServer: lifeguard\r\nDate: ");
        out.extend_from_slice(self.date.now().as_bytes());
        out.extend_from_slice(b"\r\n");
        if !reply.content_type.is_empty() && valid_value(&reply.content_type) {
            header(out, "Content-Type", &reply.content_type);
        }
        if !bodyless {
            header(
                out,
                "Content-Length",
                itoa::Buffer::new().format(reply.body.len()),
            );
        }
        match keep_alive {
            KeepAlive::Close => out.extend_from_slice(b"Connection: close\r\n"),
            KeepAlive::Announced => out.extend_from_slice(b"Connection: keep-alive\r\n"),
            KeepAlive::Implicit => {}
        }
        for (name, value) in &reply.headers {
            if sendable(name, value) {
                header(out, name, value);
            }
        }
        out.extend_from_slice(b"\r\n");
        if !bodyless && !head_only {
            out.extend_from_slice(&reply.body);
        }
    }
}

/// Appends the header line `name: value`.
fn header(out: &mut Vec<u8>, name: &str, value: &str) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
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
            self.conn.guard.arm(self.conn.config.body_timeout)?;
        }
        while self.conn.buffered() < len {
            let missing = len - self.conn.buffered();
            if self.conn.read_more(missing)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        self.conn.guard.disarm()?;
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
        if left > 0
            && (self.conn.flush().is_err()
                || self.conn.guard.arm(self.conn.config.body_timeout).is_err())
        {
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
        self.conn.guard.disarm().is_ok()
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
