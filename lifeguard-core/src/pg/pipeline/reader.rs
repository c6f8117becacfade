//! The read side: one coroutine per connection parses what the server sends, splits the
//! replies at each `ReadyForQuery` and routes every message to the request it answers.

use std::io::Read;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;

use super::echo::Echo;
use super::reply::Pending;
use super::Shared;
use crate::error::{DbError, Error, Result};
use crate::pg::frame::next_message;
use crate::pg::notify::Notification;
use crate::pg::socket::Socket;
use crate::rt::lock;

/// Where the messages being read go.
#[derive(Default)]
struct Route {
    /// The request they answer, from the first message of its reply to its `ReadyForQuery`.
    current: Option<Pending>,
    /// Its messages parsed from the latest read, not yet handed over.
    batch: Vec<Message>,
}

impl Shared {
    /// The reader coroutine: parse replies and route each to its caller until the socket ends.
    pub(super) fn read_loop(self: Arc<Self>, mut socket: Socket) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        // One copy per read is cheaper than handing `read` uninitialized memory safely.
        let mut scratch = vec![0u8; 64 * 1024];
        let mut route = Route::default();
        let mut echo = Echo::default();
        let end = loop {
            if let Err(e) = self.route_buffered(&mut buf, &mut route) {
                return self.fail(e);
            }
            // Hand over what this read produced before parking in the next one, so large
            // results stream to their caller instead of piling up here.
            if let (Some(Pending::Reply(r)), false) = (&route.current, route.batch.is_empty()) {
                r.push(&mut route.batch, false);
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

    /// Routes every complete message in `buf`; an error is one that breaks the connection.
    fn route_buffered(&self, buf: &mut BytesMut, route: &mut Route) -> Result<()> {
        while let Some(message) = next_message(buf)? {
            match message {
                m @ (Message::NotificationResponse(_)
                | Message::NoticeResponse(_)
                | Message::ParameterStatus(_)) => self.on_async_message(m),
                m => self.on_reply_message(m, route)?,
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
    fn on_reply_message(&self, m: Message, route: &mut Route) -> Result<()> {
        let is_end = matches!(m, Message::ReadyForQuery(_));
        if route.current.is_none() {
            route.current = lock(&self.state).pending.front().cloned();
        }
        match &route.current {
            Some(Pending::Reply(_)) => route.batch.push(m),
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
            if let Some(Pending::Reply(r)) = route.current.take() {
                r.push(&mut route.batch, true);
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
            if let Some(Pending::Reply(next)) = st.pending.front() {
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
