//! The slot a caller waits on for its request's messages, and the request's place in the
//! reply order.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use may::sync::Blocker;
use postgres_protocol::message::backend::Message;

use crate::error::Error;
use crate::rt::{lock, park, Parked};

/// Where the reader puts the messages of one request.
pub(crate) struct Reply {
    state: Mutex<ReplyState>,
    blocker: Blocker,
}

#[derive(Default)]
struct ReplyState {
    messages: VecDeque<Message>,
    done: bool,
    failed: Option<Error>,
    /// When this request reached the head of the reply order: from then on the server is
    /// running it (everything before it has been answered).
    started: Option<Instant>,
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
                if let Some(m) = st.messages.pop_front() {
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

    /// Hands over `batch` (leaving it empty, its capacity kept); `done` when it ends the reply.
    pub(super) fn push(&self, batch: &mut Vec<Message>, done: bool) {
        {
            let mut st = lock(&self.state);
            st.messages.extend(batch.drain(..));
            st.done |= done;
        }
        self.blocker.unpark();
    }

    pub(super) fn fail(&self, e: Error) {
        lock(&self.state).failed = Some(e);
        self.blocker.unpark();
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
    /// Someone waits for these messages.
    Reply(Arc<Reply>),
    /// Nobody does (a rollback sent from a destructor); errors are only logged.
    Discard,
}
