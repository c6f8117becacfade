//! The read side: one coroutine per connection parses what the server sends, splits the
//! replies at each `ReadyForQuery` and routes every message to the request it answers.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use may::sync::Blocker;
use postgres_protocol::message::backend::Message;

use super::echo::Echo;
use super::reply::{Framed, Pending};
use super::Shared;
use crate::error::{DbError, Error, Result};
use crate::pg::frame::next_frame;
use crate::pg::notify::Notification;
use crate::pg::socket::Socket;
use crate::rt::{lock, park};

/// How long the reader parks at a time while a reply is full, before it checks again that
/// the connection still stands (wake-ups normally come sooner, from the caller).
const HOLD_STEP: Duration = Duration::from_secs(1);

/// Where the messages being read go.
#[derive(Default)]
struct Route {
    /// The request they answer, from the first message of its reply to its `ReadyForQuery`.
    current: Option<Pending>,
    /// Its messages parsed from the latest read, not yet handed over.
    batch: Vec<Framed>,
}

impl Shared {
    /// The reader coroutine: parse replies and route each to its caller until the socket ends.
    pub(super) fn read_loop(self: Arc<Self>, mut socket: Socket) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        // One copy per read is cheaper than handing `read` uninitialized memory safely.
        let mut scratch = vec![0u8; 64 * 1024];
        let mut route = Route::default();
        let mut echo = Echo::default();
        // Made here: a blocker belongs to the coroutine that creates it.
        let parked = Arc::new(Blocker::new(false));
        let end = loop {
            if let Err(e) = self.route_buffered(&mut buf, &mut route) {
                return self.fail(e);
            }
            // Hand over what this read produced before parking in the next one, so large
            // results stream to their caller instead of piling up here.
            if let (Some(current), false) = (&route.current, route.batch.is_empty()) {
                if let Some(r) = current.reply() {
                    r.push(&mut route.batch, false);
                }
                route.batch.clear();
                self.wait_for_room(current, &parked);
            }
            echo.adjust(&socket, self.in_flight(), route.current.is_some());
            let n = match socket.read(&mut scratch) {
                Ok(0) => break Error::connection("server closed the connection", None),
                Ok(n) => n,
                Err(e) => break Error::connection("read from server", Some(e)),
            };
            self.liveness.note_read();
            buf.extend_from_slice(&scratch[..n]);
        };
        self.fail(end);
    }

    /// Stops reading while the reply being read holds more than `reply_buffer` bytes its
    /// caller has not taken: the server then blocks on a full socket instead of this
    /// process buffering without bound. Ends when the caller has taken half of it, gave up
    /// or went away (the rest of its reply is discarded), or the connection failed.
    fn wait_for_room(&self, current: &Pending, parked: &Arc<Blocker>) {
        // The slot is upgraded for each check only: holding it across the park would keep
        // a caller that went away looking present.
        while current
            .reply()
            .is_some_and(|r| r.holds_back(parked, self.reply_buffer))
        {
            if self.is_broken() {
                return;
            }
            // The silence that follows is this side's doing: the liveness watch must not
            // take it for a dead server (which it would then confirm, the backend being
            // blocked on its write to us).
            self.liveness.note_read();
            park(parked, Some(Instant::now() + HOLD_STEP));
        }
    }

    /// Routes every complete message in `buf`; an error is one that breaks the connection.
    fn route_buffered(&self, buf: &mut BytesMut, route: &mut Route) -> Result<()> {
        while let Some((message, size)) = next_frame(buf, self.max_message)? {
            match message {
                m @ (Message::NotificationResponse(_)
                | Message::NoticeResponse(_)
                | Message::ParameterStatus(_)) => self.on_async_message(m),
                m => self.on_reply_message(m, size, route)?,
            }
        }
        Ok(())
    }

    /// A message the server may send at any time, outside any reply.
    fn on_async_message(&self, message: Message) {
        match message {
            Message::NotificationResponse(body) => {
                if let Some(n) = Notification::from_body(&body) {
                    self.notifications.deliver(n);
                }
            }
            Message::NoticeResponse(body) => {
                if let Ok(notice) = DbError::parse(body.fields()) {
                    tracing::info!(target: "lifeguard::pg::notice", code = %notice.code, "{}", notice.message);
                }
            }
            Message::ParameterStatus(body) => {
                if let (Ok(k), Ok(v)) = (body.name(), body.value()) {
                    let mut params = lock(&self.parameters);
                    params.retain(|(name, _)| name != k);
                    params.push((k.to_owned(), v.to_owned()));
                }
            }
            _ => {}
        }
    }

    /// A message of the reply to the oldest request in flight; its `ReadyForQuery` ends
    /// that request.
    fn on_reply_message(&self, m: Message, size: usize, route: &mut Route) -> Result<()> {
        let is_end = matches!(m, Message::ReadyForQuery(_));
        if route.current.is_none() {
            route.current = lock(&self.state).pending.front().cloned();
        }
        match &route.current {
            Some(Pending::Reply(_)) => route.batch.push((m, size)),
            Some(Pending::Discard) => {
                if let Message::ErrorResponse(body) = &m {
                    if let Ok(e) = DbError::parse(body.fields()) {
                        tracing::debug!(target: "lifeguard::pg", "discarded reply failed: {e}");
                    }
                }
            }
            None => return Err(unsolicited_error(&m)),
        }
        if is_end {
            self.finish_request();
            match route.current.take().as_ref().and_then(Pending::reply) {
                Some(r) => r.push(&mut route.batch, true),
                None => route.batch.clear(),
            }
        }
        Ok(())
    }

    /// Books the end of the oldest request in flight and lets held-back bytes go out.
    fn finish_request(&self) {
        // Counted as done before its caller wakes: a caller that returns and asks the pool
        // again must find this connection idle, or the pool opens a needless second one.
        let flush = {
            let mut st = lock(&self.state);
            if st.pending.pop_front().is_some() {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            if let Some(next) = st.pending.front().and_then(Pending::reply) {
                next.mark_started(Instant::now());
            }
            let flush = !st.writing && !st.out.is_empty() && !st.hold_back();
            st.writing |= flush;
            flush
        };
        if flush {
            self.wake_writer();
        }
    }
}

/// The error that ends the connection when `m` arrives with no request pending.
fn unsolicited_error(m: &Message) -> Error {
    // Only a fatal error may arrive unasked (e.g. admin shutdown). It ends the session, so
    // callers see a connection error that carries the server's reason, not a statement error.
    match m {
        Message::ErrorResponse(body) => match DbError::parse(body.fields()) {
            Ok(db) => Error::connection(format!("server closed the connection: {db}"), None),
            Err(e) => Error::protocol(e.to_string()),
        },
        _ => Error::protocol("unexpected message with no request pending"),
    }
}
