//! The pipelined transport under a connection.
//!
//! Callers encode their messages straight into one shared outgoing buffer and, in the same
//! critical section, queue the reply slot they will wait on, so the order of the slots is the
//! order of the bytes on the wire. With the pipeline idle, the caller writes its own request
//! at once (the lowest latency); when requests are already in flight, a writer coroutine per
//! connection is woken instead and flushes everything queued by the time it runs, in as few
//! syscalls as the traffic allows. No caller ever keeps writing other callers' bytes, so none
//! waits behind the traffic it did not send. Once the server holds `HOLD_BACK_AT` (in
//! `writer`) unanswered requests, new bytes wait for the next answer instead, and go out
//! together.
//! One reader coroutine per connection splits the replies at each `ReadyForQuery` and hands
//! every caller its own messages. Every request ends in exactly one `Sync` or simple `Query`,
//! which is what makes that split sound.

mod echo;
mod reader;
mod reply;
mod writer;

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::config::Limits;
use super::liveness::Liveness;
use super::notify::NotificationQueue;
use super::socket::{Closer, Socket};
use crate::error::{Error, Result};
use crate::rt::lock;

pub(crate) use reply::{Reply, Wait};
pub(crate) use writer::Outgoing;

use reply::Pending;

/// The connection state shared by callers and the reader coroutine.
pub(crate) struct Shared {
    state: Mutex<State>,
    /// The write half. Only whoever set `State::writing` touches it, so this lock is never
    /// contended; it is a `may` lock all the same, as it is held across socket writes.
    writer: may::sync::Mutex<Socket>,
    /// A plain duplicate whose only use is `shutdown`, so a failure can unblock a writer
    /// stuck in a full socket buffer without waiting for its lock.
    closer: Closer,
    in_flight: AtomicUsize,
    notifications: NotificationQueue,
    parameters: Mutex<Vec<(String, String)>>,
    /// Replies whose callers gave up at a deadline, with when they did.
    abandoned: Mutex<Vec<(Arc<Reply>, Instant)>>,
    /// Mirrors `State::broken.is_some()` for lock-free checks.
    is_broken: AtomicBool,
    /// The writer coroutine, woken when a busy pipeline has bytes to send.
    writer_co: OnceLock<may::coroutine::Coroutine>,
    /// The reader's activity, watched for a connection gone silent (`pg::liveness`).
    liveness: Liveness,
    /// The largest message the server may send (`max_message_size`).
    max_message: usize,
    /// Bytes of one reply held for its caller before the reader waits (`reply_buffer`).
    reply_buffer: usize,
}

/// How long an abandoned reply may take to finish after its caller's deadline, counted from
/// when the server began the request (the reply before it was complete) if that came later.
/// The server stops the statement at that deadline itself, so a reply still missing after
/// this means the peer is gone without the socket noticing (a half-open connection). Counted
/// from the deadline alone, a timed request queued behind a slow untimed one would fail a
/// healthy connection and every write in flight on it.
const ABANDON_GRACE: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    out: BytesMut,
    pending: VecDeque<Pending>,
    writing: bool,
    broken: Option<Error>,
    /// Server-side statements whose last handle dropped; closed with the next request.
    closes: Vec<String>,
    /// A second buffer for callers writing their own request, kept so writes do not allocate.
    spare: BytesMut,
    /// Requests in `pending` whose bytes still wait in `out`.
    unsent: usize,
}

impl Shared {
    /// Wraps a socket that has finished the start-up handshake and starts its reader.
    pub(crate) fn start(
        socket: Socket,
        parameters: Vec<(String, String)>,
        limits: Limits,
    ) -> Result<Arc<Shared>> {
        let closer = socket
            .closer()
            .map_err(|e| Error::connection("clone socket for shutdown", Some(e)))?;
        let (socket, reader) = socket
            .split()
            .map_err(|e| Error::connection("clone socket for the reader", Some(e)))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            writer: may::sync::Mutex::new(socket),
            closer,
            in_flight: AtomicUsize::new(0),
            notifications: NotificationQueue::new(limits.notification_queue),
            parameters: Mutex::new(parameters),
            abandoned: Mutex::new(Vec::new()),
            is_broken: AtomicBool::new(false),
            writer_co: OnceLock::new(),
            liveness: Liveness::default(),
            max_message: limits.max_message_size,
            reply_buffer: limits.reply_buffer,
        });
        let for_reader = shared.clone();
        // The reader parses replies on its own stack; 64 KiB leaves room for deep rows.
        crate::rt::spawn("lifeguard-pg-reader", 0x2000, move || {
            for_reader.read_loop(reader)
        })
        .map_err(|e| Error::connection("spawn the reader coroutine", Some(e)))?;
        let for_writer = shared.clone();
        let writer = crate::rt::spawn("lifeguard-pg-writer", 0x1000, move || {
            for_writer.write_loop()
        })
        .map_err(|e| Error::connection("spawn the writer coroutine", Some(e)))?;
        // Set before the connection is handed out, so every enqueue finds it.
        let _ = shared.writer_co.set(writer.coroutine().clone());
        Ok(shared)
    }

    /// Requests queued and not yet answered: the load figure used to pick a connection.
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// The error that broke this connection, if it is broken (an overdue abandoned reply
    /// breaks it now).
    pub(crate) fn broken(&self) -> Option<Error> {
        self.check_abandoned();
        lock(&self.state).broken.clone()
    }

    /// Whether the connection is broken, without locks: pools ask this for every slot on
    /// every pick. An overdue abandoned reply counts only once a request or `broken`
    /// noticed it.
    pub(crate) fn is_broken(&self) -> bool {
        self.is_broken.load(Ordering::Acquire)
    }

    /// A server parameter reported at start-up or since (`server_version`, `TimeZone`, ...).
    pub(crate) fn parameter(&self, name: &str) -> Option<String> {
        lock(&self.parameters)
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }

    /// What the liveness watch looks at.
    pub(crate) fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    /// The notifications received on this connection and the coroutines waiting for them.
    pub(crate) fn notifications(&self) -> &NotificationQueue {
        &self.notifications
    }

    /// Remembers a server-side statement to close with the next extended-protocol request.
    pub(crate) fn defer_close(&self, name: String) {
        lock(&self.state).closes.push(name);
    }

    /// Remembers a reply whose caller gave up at its deadline; the rest of it is discarded.
    pub(crate) fn abandon(&self, reply: &Arc<Reply>) {
        reply.abandon();
        lock(&self.abandoned).push((reply.clone(), Instant::now()));
    }

    /// Fails the connection when an abandoned reply is overdue; returns whether it did.
    fn check_abandoned(&self) -> bool {
        let overdue = {
            let mut list = lock(&self.abandoned);
            if list.is_empty() {
                return false;
            }
            list.retain(|(reply, _)| !reply.is_settled());
            let now = Instant::now();
            list.iter()
                .any(|(reply, at)| reply.is_overdue(*at, ABANDON_GRACE, now))
        };
        if overdue {
            self.fail(Error::connection(
                format!("no reply within {ABANDON_GRACE:?} after a deadline; the connection is presumed dead"),
                None,
            ));
        }
        overdue
    }

    /// Marks the connection broken and fails every caller still waiting on it.
    pub(crate) fn fail(&self, e: Error) {
        let drained: Vec<Pending> = {
            let mut st = lock(&self.state);
            if st.broken.is_none() {
                st.broken = Some(e.clone());
            }
            self.is_broken.store(true, Ordering::Release);
            st.unsent = 0;
            st.pending.drain(..).collect()
        };
        self.in_flight.store(0, Ordering::Relaxed);
        // Failing a reply also wakes a reader waiting for its caller to make room.
        for r in drained.iter().filter_map(Pending::reply) {
            r.fail(e.clone());
        }
        self.closer.shutdown();
        // The writer coroutine wakes, finds the connection broken and ends.
        self.wake_writer();
        self.notifications.wake_all();
    }

    /// Closes the connection politely (Terminate) and wakes the reader so it exits.
    pub(crate) fn terminate(&self) {
        let mut bye = BytesMut::new();
        postgres_protocol::message::frontend::terminate(&mut bye);
        let _ = self.send_raw(&bye);
        self.fail(Error::connection("connection closed by the client", None));
    }
}
