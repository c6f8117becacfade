//! The slot a caller waits on for its request's messages, and the request's place in the
//! reply order.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use may::sync::Blocker;
use postgres_protocol::message::backend::Message;

use crate::error::Error;
use crate::pg::connection::Connection;
use crate::rt::{lock, park, Parked};

/// Bytes of messages held in every reply of the process, not yet taken by their callers.
static BUFFERED: AtomicUsize = AtomicUsize::new(0);

/// A message with its size on the wire, which is what the buffer cap counts.
pub(super) type Framed = (Message, usize);

/// Where the reader puts the messages of one request.
pub(crate) struct Reply {
    state: Mutex<ReplyState>,
    blocker: Blocker,
}

#[derive(Default)]
struct ReplyState {
    messages: VecDeque<Framed>,
    /// The wire size of `messages`.
    bytes: usize,
    done: bool,
    failed: Option<Error>,
    /// When this request reached the head of the reply order: from then on the server is
    /// running it (everything before it has been answered).
    started: Option<Instant>,
    /// The caller gave up at its deadline: what still arrives is dropped, not kept.
    abandoned: bool,
    /// The reader, parked until `bytes` falls to the level given with it.
    reader: Option<(Arc<Blocker>, usize)>,
}

impl ReplyState {
    /// Wakes a reader waiting for room, whether or not there is room now: it re-checks.
    fn release_reader(&mut self) {
        if let Some((reader, _)) = self.reader.take() {
            reader.unpark();
        }
    }

    fn forget_messages(&mut self) {
        BUFFERED.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
        self.messages.clear();
    }
}

/// Why [`Reply::next`] returned no message.
pub(crate) enum Wait {
    /// The connection broke before the reply was complete.
    Failed(Error),
    /// The deadline passed first.
    TimedOut,
}

impl Reply {
    /// A slot owned by the calling coroutine (or thread): only its creator may wait on it.
    pub(crate) fn new() -> Arc<Reply> {
        Arc::new(Reply {
            state: Mutex::new(ReplyState::default()),
            blocker: Blocker::new(false),
        })
    }

    /// The next message of this reply, parking until one arrives or the deadline passes.
    /// After the final `ReadyForQuery` has been returned, there are no more messages.
    pub(crate) fn next(
        self: &Arc<Self>,
        deadline: Option<Instant>,
    ) -> std::result::Result<Message, Wait> {
        loop {
            {
                let mut st = lock(&self.state);
                if let Some((m, size)) = st.messages.pop_front() {
                    st.bytes -= size;
                    BUFFERED.fetch_sub(size, Ordering::Relaxed);
                    if st
                        .reader
                        .as_ref()
                        .is_some_and(|(_, room)| st.bytes <= *room)
                    {
                        st.release_reader();
                    }
                    return Ok(m);
                }
                if let Some(e) = &st.failed {
                    return Err(Wait::Failed(e.clone()));
                }
                if st.done {
                    return Err(Wait::Failed(Error::protocol(
                        "read past the end of a reply",
                    )));
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(Wait::TimedOut);
            }
            // A wake-up that raced ahead of this park is kept by the parker, so none is lost;
            // spurious wake-ups just loop.
            park(self, deadline);
        }
    }

    /// Whether the final message (or a failure) has arrived.
    pub(super) fn is_settled(&self) -> bool {
        let st = lock(&self.state);
        st.done || st.failed.is_some()
    }

    /// Notes that the server now works on this request (the one before it was answered).
    pub(super) fn mark_started(&self, at: Instant) {
        lock(&self.state).started.get_or_insert(at);
    }

    /// Whether this reply is still missing more than `grace` after both the server started
    /// its request and its caller gave up at `abandoned_at`. A request still queued behind
    /// another (a slow statement without a deadline) is not overdue, however long it waits:
    /// the server has not begun it, so its silence says nothing about the connection.
    pub(super) fn is_overdue(&self, abandoned_at: Instant, grace: Duration, now: Instant) -> bool {
        let st = lock(&self.state);
        if st.done || st.failed.is_some() {
            return false;
        }
        st.started
            .is_some_and(|started| now.saturating_duration_since(started.max(abandoned_at)) > grace)
    }

    /// Hands over `batch` (leaving it empty, its capacity kept); `done` when it ends the
    /// reply. An abandoned reply only takes note of its end.
    pub(super) fn push(&self, batch: &mut Vec<Framed>, done: bool) {
        {
            let mut st = lock(&self.state);
            if st.abandoned {
                batch.clear();
            } else {
                let size: usize = batch.iter().map(|(_, size)| size).sum();
                st.bytes += size;
                BUFFERED.fetch_add(size, Ordering::Relaxed);
                st.messages.extend(batch.drain(..));
            }
            st.done |= done;
        }
        self.blocker.unpark();
    }

    /// Whether the reader must wait before reading more of this reply: it holds over `cap`
    /// bytes its caller has not taken. If so, `reader` is woken once the caller has taken
    /// half of them, gave up, went away, or the connection failed.
    pub(super) fn holds_back(&self, reader: &Arc<Blocker>, cap: usize) -> bool {
        let mut st = lock(&self.state);
        let full = !st.abandoned && st.failed.is_none() && st.bytes > cap;
        st.reader = full.then(|| (reader.clone(), cap / 2));
        full
    }

    /// The caller gave up at its deadline: what it did not take, and what is still to come,
    /// goes, and a reader waiting for it to make room goes on.
    pub(super) fn abandon(&self) {
        let mut st = lock(&self.state);
        st.abandoned = true;
        st.forget_messages();
        st.release_reader();
    }

    pub(super) fn fail(&self, e: Error) {
        {
            let mut st = lock(&self.state);
            st.failed = Some(e);
            st.release_reader();
        }
        self.blocker.unpark();
    }
}

impl Drop for Reply {
    /// The caller went away: whatever it did not take leaves the gauge, and a reader that
    /// waited for it to make room goes on (and discards the rest of the reply).
    fn drop(&mut self) {
        let st = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        st.forget_messages();
        st.release_reader();
    }
}

impl Connection {
    /// Bytes of query results and `COPY TO STDOUT` data that all connections of the process
    /// have read from their servers and hold for callers that have not taken them yet. Each
    /// reply holds at most about its connection's
    /// [`reply_buffer`](crate::pg::Config::reply_buffer); a gauge for metrics and tests.
    pub fn buffered_reply_bytes() -> usize {
        BUFFERED.load(Ordering::Relaxed)
    }
}

impl Parked for Reply {
    fn blocker(&self) -> &Blocker {
        &self.blocker
    }
}

/// A request's place in the reply order.
#[derive(Clone)]
pub(super) enum Pending {
    /// Someone waits for these messages. The reply order does not keep the slot alive: once
    /// its caller dropped it, the rest of its reply is discarded as it arrives instead of
    /// piling up, or holding the reader back, for nobody.
    Reply(Weak<Reply>),
    /// Nobody does (a rollback sent from a destructor); errors are only logged.
    Discard,
}

impl Pending {
    /// The slot of a request whose caller is still there.
    pub(super) fn reply(&self) -> Option<Arc<Reply>> {
        match self {
            Pending::Reply(r) => r.upgrade(),
            Pending::Discard => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    /// A batch of `n` one-byte `CopyData` messages (6 bytes each on the wire).
    fn batch(n: usize) -> Vec<Framed> {
        (0..n)
            .map(|_| {
                let mut wire = BytesMut::from(&b"d\x00\x00\x00\x05x"[..]);
                match Message::parse(&mut wire) {
                    Ok(Some(m)) => (m, 6),
                    _ => unreachable!("a well-formed CopyData"),
                }
            })
            .collect()
    }

    #[test]
    fn a_full_reply_holds_the_reader_back_until_its_caller_takes_half() {
        let reader = Arc::new(Blocker::new(false));
        let reply = Reply::new();
        reply.push(&mut batch(10), false);
        assert!(!reply.holds_back(&reader, 60), "60 bytes fit a cap of 60");
        reply.push(&mut batch(1), false);
        assert!(reply.holds_back(&reader, 60));
        for _ in 0..5 {
            assert!(reply.next(None).is_ok());
            assert!(
                lock(&reply.state).reader.is_some(),
                "still over half the cap"
            );
        }
        assert!(reply.next(None).is_ok());
        assert!(
            lock(&reply.state).reader.is_none(),
            "released at half the cap"
        );
        assert!(!reply.holds_back(&reader, 60));
    }

    #[test]
    fn an_abandoned_reply_drops_what_it_holds_and_what_comes() {
        let reader = Arc::new(Blocker::new(false));
        let reply = Reply::new();
        reply.push(&mut batch(20), false);
        assert!(reply.holds_back(&reader, 60));
        reply.abandon();
        assert!(
            lock(&reply.state).reader.is_none(),
            "the reader is released"
        );
        assert!(!reply.holds_back(&reader, 60));
        let mut more = batch(20);
        reply.push(&mut more, true);
        assert!(more.is_empty());
        let st = lock(&reply.state);
        assert_eq!((st.messages.len(), st.bytes), (0, 0));
        assert!(st.done, "its end is still noted, for the overdue check");
    }

    #[test]
    fn a_reply_whose_caller_went_away_stops_holding_the_reader() {
        let reader = Arc::new(Blocker::new(false));
        let reply = Reply::new();
        let pending = Pending::Reply(Arc::downgrade(&reply));
        reply.push(&mut batch(20), false);
        assert!(reply.holds_back(&reader, 60));
        drop(reply);
        assert!(
            pending.reply().is_none(),
            "nobody is left to hold the reader for"
        );
        // The drop released the reader: its next park returns at once.
        let t0 = Instant::now();
        let _ = reader.park(Some(Duration::from_secs(5)));
        assert!(t0.elapsed() < Duration::from_secs(1));
    }
}
