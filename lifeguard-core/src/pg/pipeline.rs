//! The pipelined transport under a connection.
//!
//! Callers encode their messages straight into one shared outgoing buffer and, in the same
//! critical section, queue the reply slot they will wait on, so the order of the slots is the
//! order of the bytes on the wire. With the pipeline idle, the caller writes its own request
//! at once (the lowest latency); when requests are already in flight, a writer coroutine per
//! connection is woken instead and flushes everything queued by the time it runs, in as few
//! syscalls as the traffic allows. No caller ever keeps writing other callers' bytes, so none
//! waits behind the traffic it did not send. Once the server holds [`HOLD_BACK_AT`]
//! unanswered requests, new bytes wait for the next answer instead, and go out together.
//! One reader coroutine per connection splits the replies at each `ReadyForQuery` and hands
//! every caller its own messages. Every request ends in exactly one `Sync` or simple `Query`,
//! which is what makes that split sound.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use may::sync::Blocker;
use postgres_protocol::message::backend::Message;

use super::frame::next_message;
use super::notify::Notification;
use super::socket::{Closer, Socket};
use crate::error::{DbError, Error, Result};
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
    fn is_settled(&self) -> bool {
        let st = lock(&self.state);
        st.done || st.failed.is_some()
    }

    fn push(&self, batch: &mut Vec<Message>, done: bool) {
        {
            let mut st = lock(&self.state);
            st.messages.extend(batch.drain(..));
            st.done |= done;
        }
        self.blocker.unpark();
    }

    fn fail(&self, e: Error) {
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
enum Pending {
    /// Someone waits for these messages.
    Reply(Arc<Reply>),
    /// Nobody does (a rollback sent from a destructor); errors are only logged.
    Discard,
}

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
    notifications: Mutex<NotificationQueue>,
    parameters: Mutex<Vec<(String, String)>>,
    /// Replies whose callers gave up at a deadline, with when they did.
    abandoned: Mutex<Vec<(Arc<Reply>, Instant)>>,
    /// Mirrors `State::broken.is_some()` for lock-free checks.
    is_broken: std::sync::atomic::AtomicBool,
    /// The writer coroutine, woken when a busy pipeline has bytes to send.
    writer_co: std::sync::OnceLock<may::coroutine::Coroutine>,
}

/// How long an abandoned reply may take to finish after its caller's deadline. The server
/// stops the statement at that deadline itself, so a reply still missing after this means
/// the peer is gone without the socket noticing (a half-open connection).
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

impl State {
    /// Whether bytes in `out` should wait for an answer: the server already holds
    /// [`HOLD_BACK_AT`] requests of this connection, enough to stay busy until the answer to
    /// one of them brings the writer back.
    fn hold_back(&self) -> bool {
        self.pending.len().saturating_sub(self.unsent) >= HOLD_BACK_AT
    }
}

/// How many unanswered requests the server may hold before new bytes wait for an answer.
///
/// Writing each request as soon as it is queued costs a `send` per one or two requests on a
/// deep pipeline, and a `send` that finds the backend asleep wakes it. On a machine whose
/// cores the server shares, that traffic kept the backends queueing for a CPU with the
/// requests of their pipeline behind them: the p99 tail. Held back until the server is down
/// to three, requests go out in batches while the backend never runs dry. On the benchmark
/// (`fortunes`, 8 requests per connection) sends per request fell from 0.39 to 0.23 and the
/// backends' waits for a CPU longer than 0.3 ms from 292 to 22 in two seconds; at 64 per
/// connection sends fell from 0.09 to 0.02 per request.
/// Shallow pipelines, under the mark, are written at once as before. It must be at least 2:
/// a COPY keeps its request unanswered while its data follows, and that data must never wait
/// for an answer only its own end brings.
const HOLD_BACK_AT: usize = 4;

/// A registration on another `may` worker that a reply wakes as well, kept only while the
/// connection is shallow and its replies each fit one read.
///
/// The writer's and the reader's handles are polled by one worker, so under load a reply
/// wakes one thread: a 100-row insert at 256 callers took 28 to 33 µs of client CPU and 0.56
/// context switches, against 36 to 40 µs and 1.0 with the handles on both workers. A lone
/// caller is the other way round: woken on one worker only, its `update` round trip fell
/// into a slow mode (14k to 18k ops/s instead of 30k) in half the runs on this 2-vCPU
/// machine; the likely cause, not pinned down, is the idle worker's CPU going to sleep
/// between replies. The echo keeps the second worker stirring while a connection has at
/// most one request in flight, and goes away once the server holds [`ECHO_OFF_AT`] of them
/// or a reply streams over several reads.
#[derive(Default)]
struct Echo {
    handle: Option<Socket>,
    /// Consecutive reads at depth one or less; the echo comes back after [`ECHO_BACK_AFTER`].
    shallow_reads: u32,
}

/// Requests in flight at which the echo is dropped.
const ECHO_OFF_AT: usize = 4;

/// Shallow reads in a row after which the echo returns, so a pipeline that drains for a
/// moment does not re-register it.
const ECHO_BACK_AFTER: u32 = 64;

impl Echo {
    /// Called before each read with the connection's requests in flight and whether the
    /// read continues a reply already partly handed over. A reply that spans reads is
    /// streaming: its next bytes are on their way, and the echo would only wake the other
    /// worker once per read (an `eager` round trip at c=1 took 10 context switches with it,
    /// 3.6 without).
    fn adjust(&mut self, socket: &Socket, in_flight: usize, mid_reply: bool) {
        if in_flight >= ECHO_OFF_AT || mid_reply {
            self.handle = None;
            self.shallow_reads = 0;
        } else if in_flight <= 1 && self.handle.is_none() {
            self.shallow_reads += 1;
            if self.shallow_reads >= ECHO_BACK_AFTER {
                self.shallow_reads = 0;
                // A failed clone only costs a lone caller some speed; it is tried again later.
                self.handle = socket.echo().ok().flatten();
            }
        }
    }
}

#[derive(Default)]
pub(crate) struct NotificationQueue {
    pub(crate) queue: VecDeque<Notification>,
    /// Every coroutine waiting for a notification; all are woken and re-check the queue.
    pub(crate) waiters: Vec<Arc<Blocker>>,
}

/// How a request is queued.
pub(crate) enum Outgoing<'a> {
    /// Extended-protocol messages ending in `Sync`: pending statement closes may ride along.
    Extended(&'a [u8]),
    /// A simple `Query`, or `CopyData`/`CopyDone` of a running COPY: sent exactly as given.
    Raw(&'a [u8]),
}

impl Shared {
    /// Wraps a socket that has finished the start-up handshake and starts its reader.
    pub(crate) fn start(socket: Socket, parameters: Vec<(String, String)>) -> Result<Arc<Shared>> {
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
            notifications: Mutex::new(NotificationQueue::default()),
            parameters: Mutex::new(parameters),
            abandoned: Mutex::new(Vec::new()),
            is_broken: std::sync::atomic::AtomicBool::new(false),
            writer_co: std::sync::OnceLock::new(),
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

    pub(crate) fn notifications(&self) -> &Mutex<NotificationQueue> {
        &self.notifications
    }

    /// Remembers a server-side statement to close with the next extended-protocol request.
    pub(crate) fn defer_close(&self, name: String) {
        lock(&self.state).closes.push(name);
    }

    /// Remembers a reply whose caller gave up at its deadline.
    pub(crate) fn abandon(&self, reply: &Arc<Reply>) {
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
            list.iter().any(|(_, at)| at.elapsed() > ABANDON_GRACE)
        };
        if overdue {
            self.fail(Error::connection(
                format!("no reply within {ABANDON_GRACE:?} after a deadline; the connection is presumed dead"),
                None,
            ));
        }
        overdue
    }

    /// Queues `bytes` and returns the slot its reply will arrive in.
    pub(crate) fn request(&self, out: Outgoing<'_>) -> Result<Arc<Reply>> {
        let reply = Reply::new();
        self.enqueue(out, Some(Pending::Reply(reply.clone())))?;
        Ok(reply)
    }

    /// Queues a request whose reply nobody waits for (a rollback from a destructor).
    pub(crate) fn request_discard(&self, out: Outgoing<'_>) -> Result<()> {
        self.enqueue(out, Some(Pending::Discard))
    }

    /// Queues bytes that belong to a request already sent (COPY data): no new reply slot.
    pub(crate) fn send_raw(&self, bytes: &[u8]) -> Result<()> {
        self.enqueue(Outgoing::Raw(bytes), None)
    }

    fn enqueue(&self, out: Outgoing<'_>, pending: Option<Pending>) -> Result<()> {
        self.check_abandoned();
        let batch = {
            let mut st = lock(&self.state);
            if let Some(e) = &st.broken {
                return Err(Error::unsent(e));
            }
            match out {
                Outgoing::Extended(bytes) => {
                    for name in std::mem::take(&mut st.closes) {
                        // Close never fails for a missing statement, so it cannot abort the
                        // request it rides with; its CloseComplete is skipped by every parser.
                        let _ =
                            postgres_protocol::message::frontend::close(b'S', &name, &mut st.out);
                    }
                    st.out.extend_from_slice(bytes);
                }
                Outgoing::Raw(bytes) => st.out.extend_from_slice(bytes),
            }
            let counted = pending.is_some();
            if let Some(p) = pending {
                st.pending.push_back(p);
                st.unsent += 1;
                self.in_flight.fetch_add(1, Ordering::Relaxed);
            }
            // A write in progress takes these bytes along; held-back ones go with an answer.
            if st.writing || (counted && st.hold_back()) {
                return Ok(());
            }
            st.writing = true;
            // An idle pipeline: write at once. Requests already in flight: the server is
            // busy anyway, so the writer coroutine sends this with whatever else arrives
            // before it runs.
            st.pending.len() > 1
        };
        if batch {
            self.wake_writer();
        } else {
            self.write_own();
        }
        Ok(())
    }

    fn wake_writer(&self) {
        if let Some(co) = self.writer_co.get() {
            co.unpark();
        }
    }

    /// Writes the buffer once from the calling caller; anything appended meanwhile goes to
    /// the writer coroutine, so the caller returns to its own reply.
    fn write_own(&self) {
        let mut chunk = {
            let mut st = lock(&self.state);
            let mut chunk = std::mem::take(&mut st.spare);
            std::mem::swap(&mut st.out, &mut chunk);
            st.unsent = 0;
            chunk
        };
        let written = {
            let mut socket = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
            socket.write_all(&chunk)
        };
        chunk.clear();
        let more = {
            let mut st = lock(&self.state);
            st.spare = chunk;
            if written.is_ok() && !st.out.is_empty() && st.broken.is_none() && !st.hold_back() {
                true
            } else {
                st.writing = false;
                false
            }
        };
        match written {
            Err(e) => self.fail(Error::connection("write to server", Some(e))),
            Ok(()) if more => self.wake_writer(),
            Ok(()) => {}
        }
    }

    /// The writer coroutine: when woken, writes until the buffer stays empty, then sleeps.
    fn write_loop(self: Arc<Self>) {
        let mut chunk = BytesMut::new();
        loop {
            may::coroutine::park();
            loop {
                {
                    let mut st = lock(&self.state);
                    if st.broken.is_some() {
                        st.out.clear();
                        st.writing = false;
                        return;
                    }
                    if st.out.is_empty() || st.hold_back() {
                        st.writing = false;
                        break;
                    }
                    // Swap buffers so callers keep appending while this one is on the wire.
                    std::mem::swap(&mut st.out, &mut chunk);
                    st.unsent = 0;
                }
                let written = {
                    let mut socket = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
                    socket.write_all(&chunk)
                };
                chunk.clear();
                if let Err(e) = written {
                    self.fail(Error::connection("write to server", Some(e)));
                    return;
                }
            }
        }
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
        for p in drained {
            if let Pending::Reply(r) = p {
                r.fail(e.clone());
            }
        }
        self.closer.shutdown();
        // The writer coroutine wakes, finds the connection broken and ends.
        self.wake_writer();
        self.wake_listeners();
    }

    /// Closes the connection politely (Terminate) and wakes the reader so it exits.
    pub(crate) fn terminate(&self) {
        let mut bye = BytesMut::new();
        postgres_protocol::message::frontend::terminate(&mut bye);
        let _ = self.send_raw(&bye);
        self.fail(Error::connection("connection closed by the client", None));
    }

    /// The reader coroutine: parse replies and route each to its caller until the socket ends.
    fn read_loop(self: Arc<Self>, mut socket: Socket) {
        let mut buf = BytesMut::with_capacity(64 * 1024);
        // One copy per read is cheaper than handing `read` uninitialized memory safely.
        let mut scratch = vec![0u8; 64 * 1024];
        let mut current: Option<Pending> = None;
        let mut batch: Vec<Message> = Vec::new();
        let mut echo = Echo::default();
        let end = loop {
            loop {
                let message = match next_message(&mut buf) {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e) => return self.fail(e),
                };
                match message {
                    Message::NotificationResponse(body) => {
                        if let Some(n) = Notification::from_body(&body) {
                            self.notify(n);
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
                    m => {
                        let is_end = matches!(m, Message::ReadyForQuery(_));
                        if current.is_none() {
                            current = lock(&self.state).pending.front().map(|p| match p {
                                Pending::Reply(r) => Pending::Reply(r.clone()),
                                Pending::Discard => Pending::Discard,
                            });
                        }
                        match &current {
                            Some(Pending::Reply(_)) => batch.push(m),
                            Some(Pending::Discard) => {
                                if let Message::ErrorResponse(body) = &m {
                                    if let Ok(e) = DbError::parse(body.fields()) {
                                        tracing::debug!(target: "lifeguard::pg", "discarded reply failed: {e}");
                                    }
                                }
                            }
                            None => {
                                // Only a fatal error may arrive unasked (e.g. admin shutdown).
                                // It ends the session, so callers see a connection error that
                                // carries the server's reason, not a statement error.
                                let e = match &m {
                                    Message::ErrorResponse(body) => {
                                        match DbError::parse(body.fields()) {
                                            Ok(db) => Error::connection(
                                                format!("server closed the connection: {db}"),
                                                None,
                                            ),
                                            Err(e) => Error::protocol(e.to_string()),
                                        }
                                    }
                                    _ => Error::protocol(
                                        "unexpected message with no request pending",
                                    ),
                                };
                                return self.fail(e);
                            }
                        }
                        if is_end {
                            // Counted as done before its caller wakes: a caller that returns
                            // and asks the pool again must find this connection idle, or the
                            // pool opens a needless second one.
                            let flush = {
                                let mut st = lock(&self.state);
                                if st.pending.pop_front().is_some() {
                                    self.in_flight.fetch_sub(1, Ordering::Relaxed);
                                }
                                let flush = !st.writing && !st.out.is_empty() && !st.hold_back();
                                st.writing |= flush;
                                flush
                            };
                            if flush {
                                self.wake_writer();
                            }
                            if let Some(Pending::Reply(r)) = current.take() {
                                r.push(&mut batch, true);
                            }
                        }
                    }
                }
            }
            // Hand over what this read produced before parking in the next one, so large
            // results stream to their caller instead of piling up here.
            if let (Some(Pending::Reply(r)), false) = (&current, batch.is_empty()) {
                r.push(&mut batch, false);
            }
            echo.adjust(&socket, self.in_flight(), current.is_some());
            let n = match socket.read(&mut scratch) {
                Ok(0) => break Error::connection("server closed the connection", None),
                Ok(n) => n,
                Err(e) => break Error::connection("read from server", Some(e)),
            };
            buf.extend_from_slice(&scratch[..n]);
        };
        self.fail(end);
    }

    fn notify(&self, n: Notification) {
        lock(&self.notifications).queue.push_back(n);
        self.wake_listeners();
    }

    fn wake_listeners(&self) {
        let waiters = std::mem::take(&mut lock(&self.notifications).waiters);
        for w in waiters {
            w.unpark();
        }
    }
}
