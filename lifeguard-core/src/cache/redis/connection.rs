//! One pipelined Redis connection shared by many coroutines.
//!
//! Redis answers every command with exactly one reply, in order, so the connection keeps a
//! queue of reply slots in the order their bytes went into the outgoing buffer; one reader
//! coroutine parses replies and fills the slot at the front. It splits the stream into
//! whole replies itself and decodes the ones the cache reads by the thousand (a bulk
//! string, nil, an integer, `OK`); any other reply goes whole to the `redis` crate's
//! parser, so every reply means what that crate says it means.
//!
//! A lone caller on an idle connection writes its own request (the lowest latency); when
//! requests are already in flight the writer coroutine is woken instead, and sends
//! everything queued by the time it runs in one write, so no caller keeps writing other
//! callers' bytes and a busy connection costs far fewer sends than requests.
//!
//! Deadlines are kept per connection: a caller waiting for its reply records its deadline
//! in its slot and parks without a timer; the connection's keeper coroutine sleeps until
//! the earliest deadline it knows of, then wakes the callers whose deadline has passed.
//! With the replies on time, that is one timer per connection every call timeout or so,
//! instead of arming and disarming the process's shared alarm once per request.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use may::sync::Blocker;
use redis::Value;

use crate::error::{RedisError, RedisErrorKind};
use crate::pg::{Closer, Socket};
use crate::rt::{lock, park, Parked};

/// How long a reply may still take after its caller gave up at a deadline. Redis runs one
/// command at a time, so a reply this late means the peer is gone without the socket
/// noticing (a half-open connection), and the connection is failed.
const ABANDON_GRACE: Duration = Duration::from_secs(2);

/// Slots, on every connection of the process, whose caller gave up on them and which are
/// still alive (so possibly still waiting for their reply). Only such a slot can make a
/// connection overdue, so while there is none the check before each request is one load
/// of a word nothing writes, instead of two locks shared with the reader.
static ABANDONED: AtomicUsize = AtomicUsize::new(0);

/// A deadline no caller has: nobody to wake.
const UNWATCHED: u64 = u64::MAX;

/// `at` as nanoseconds after the process's first use of a deadline here, so that it fits
/// an atomic.
fn ticks(at: Instant) -> u64 {
    u64::try_from(at.saturating_duration_since(epoch()).as_nanos()).unwrap_or(UNWATCHED - 1)
}

/// The instant [`ticks`] counts from.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Where the reader puts the replies of one request (one command, or a pipeline of them).
struct Slot {
    /// How many replies complete it.
    want: usize,
    state: Mutex<SlotState>,
    blocker: Blocker,
    /// The deadline of the caller waiting on it ([`ticks`]), for the keeper; [`UNWATCHED`]
    /// while nobody waits.
    deadline: AtomicU64,
}

#[derive(Default)]
struct SlotState {
    replies: Vec<Value>,
    failed: Option<RedisError>,
    /// When its caller stopped waiting.
    abandoned: Option<Instant>,
}

impl Parked for Slot {
    fn blocker(&self) -> &Blocker {
        &self.blocker
    }
}

impl Slot {
    fn new(want: usize) -> Arc<Slot> {
        Arc::new(Slot {
            want,
            state: Mutex::new(SlotState {
                // Allocated here, by the caller that frees it, not by the reader as the
                // first reply arrives.
                replies: Vec::with_capacity(want),
                ..SlotState::default()
            }),
            blocker: Blocker::new(false),
            deadline: AtomicU64::new(UNWATCHED),
        })
    }

    /// Adds a reply; `true` once the slot is complete.
    fn push(&self, value: Value) -> bool {
        let mut st = lock(&self.state);
        st.replies.push(value);
        st.replies.len() >= self.want
    }

    fn fail(&self, e: RedisError) {
        lock(&self.state).failed = Some(e);
        self.blocker.unpark();
    }

    /// Whether the caller gave up on this slot more than [`ABANDON_GRACE`] ago.
    fn overdue(&self, now: Instant) -> bool {
        lock(&self.state)
            .abandoned
            .is_some_and(|at| now.duration_since(at) > ABANDON_GRACE)
    }
}

/// A request on its way: where its replies will arrive, and the connection that keeps its
/// caller's deadline.
pub(crate) struct Request<'a> {
    conn: &'a Connection,
    slot: Arc<Slot>,
}

impl Request<'_> {
    /// Waits for the replies until `deadline`.
    pub(crate) fn wait(&self, deadline: Instant) -> Result<Vec<Value>, RedisError> {
        let slot = &self.slot;
        let mut watched = false;
        loop {
            {
                let mut st = lock(&slot.state);
                if st.replies.len() >= slot.want {
                    return Ok(std::mem::take(&mut st.replies));
                }
                if let Some(e) = &st.failed {
                    return Err(e.clone());
                }
                // Before the first park there is no need to look at the clock: a deadline
                // already past has the keeper wake this caller at once.
                if watched && Instant::now() >= deadline {
                    slot.deadline.store(UNWATCHED, Ordering::SeqCst);
                    if st.abandoned.is_none() {
                        ABANDONED.fetch_add(1, Ordering::AcqRel);
                    }
                    st.abandoned = Some(Instant::now());
                    return Err(RedisError::new(
                        RedisErrorKind::Timeout,
                        "no reply from Redis within the call's deadline",
                    ));
                }
            }
            if !watched {
                self.conn.watch(slot, deadline);
                watched = true;
            }
            // A wake-up that raced ahead of this park is kept by the blocker.
            park(slot, None);
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let st = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if st.abandoned.is_some() {
            ABANDONED.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// One connection: its outgoing buffer, its queue of reply slots and its reader, writer and
/// deadline keeper coroutines.
pub(crate) struct Connection {
    target: String,
    state: Mutex<State>,
    /// The write half; only whoever set `State::writing` touches it. A `may` lock, as it is
    /// held across socket writes.
    writer: may::sync::Mutex<Socket>,
    /// Shuts the socket down from anywhere, waking a parked reader or writer.
    closer: Closer,
    writer_co: OnceLock<may::coroutine::Coroutine>,
    /// What the keeper coroutine parks on, set by the keeper as it starts.
    keeper: OnceLock<Arc<Blocker>>,
    /// The instant ([`ticks`]) by which the keeper will look at the deadlines next, or
    /// [`UNWATCHED`]: a caller whose deadline is earlier lowers it and wakes the keeper.
    /// Between the keeper's looks it only gets earlier, so with deadlines of one length
    /// arriving in time order callers only ever read it.
    watched: AtomicU64,
    broken: AtomicBool,
}

#[derive(Default)]
struct State {
    out: Vec<u8>,
    /// A second buffer, swapped with `out` for each write so writes do not allocate.
    spare: Vec<u8>,
    pending: VecDeque<Arc<Slot>>,
    writing: bool,
    broken: Option<RedisError>,
}

impl Connection {
    /// Wraps a connected socket and starts its reader, writer and keeper coroutines.
    pub(crate) fn start(socket: Socket, target: String) -> Result<Arc<Connection>, RedisError> {
        let io = |what: &str, e: std::io::Error| connection_error(&target, what, e);
        let closer = socket.closer().map_err(|e| io("clone the socket", e))?;
        let (writer, reader) = socket.split().map_err(|e| io("split the socket", e))?;
        let conn = Arc::new(Connection {
            target: target.clone(),
            state: Mutex::new(State::default()),
            writer: may::sync::Mutex::new(writer),
            closer,
            writer_co: OnceLock::new(),
            keeper: OnceLock::new(),
            watched: AtomicU64::new(UNWATCHED),
            broken: AtomicBool::new(false),
        });
        let for_reader = conn.clone();
        // The parser recurses once per nesting level of a reply; 64 KiB is ample for the
        // flat replies the cache reads.
        crate::rt::spawn("lifeguard-redis-reader", 0x2000, move || {
            for_reader.read_loop(reader)
        })
        .map_err(|e| io("spawn the reader", e))?;
        let for_writer = conn.clone();
        let writer = crate::rt::spawn("lifeguard-redis-writer", 0x1000, move || {
            for_writer.write_loop()
        })
        .map_err(|e| io("spawn the writer", e))?;
        // Set before the connection is handed out, so every request finds it.
        let _ = conn.writer_co.set(writer.coroutine().clone());
        let for_keeper = conn.clone();
        if let Err(e) = crate::rt::spawn("lifeguard-redis-keeper", 0x1000, move || {
            for_keeper.keep_loop()
        }) {
            let e = io("spawn the deadline keeper", e);
            conn.fail(e.clone());
            return Err(e);
        }
        Ok(conn)
    }

    /// Makes sure the keeper looks at the deadlines no later than `deadline`, the deadline
    /// of the caller now waiting on `slot`.
    ///
    /// Every access to `Slot::deadline` and `watched` is `SeqCst`, which is what makes this
    /// sound without a lock: either this load comes before the keeper's next reset of
    /// `watched`, and the scan after that reset sees the slot's deadline, or it sees the
    /// reset (or a later deadline) and lowers `watched` and wakes the keeper itself.
    fn watch(&self, slot: &Slot, deadline: Instant) {
        let at = ticks(deadline);
        slot.deadline.store(at, Ordering::SeqCst);
        if at < self.watched.load(Ordering::SeqCst) {
            self.watched.fetch_min(at, Ordering::SeqCst);
            self.wake_keeper();
        }
    }

    fn wake_keeper(&self) {
        if let Some(keeper) = self.keeper.get() {
            keeper.unpark();
        }
    }

    /// The keeper coroutine: wakes the callers whose deadline has passed, then sleeps until
    /// the earliest deadline still to come (or until a caller brings an earlier one).
    fn keep_loop(self: Arc<Self>) {
        // Made here, on the keeper's own coroutine, so that it parks the coroutine.
        let blocker = Arc::new(Blocker::new(false));
        let _ = self.keeper.set(blocker.clone());
        loop {
            // Reset before the scan: a caller that arrives during it finds no deadline
            // watched and wakes the keeper for another look (see `watch`).
            self.watched.store(UNWATCHED, Ordering::SeqCst);
            let now = ticks(Instant::now());
            let next = {
                let st = lock(&self.state);
                if st.broken.is_some() {
                    None
                } else {
                    let mut next = UNWATCHED;
                    for slot in &st.pending {
                        match slot.deadline.load(Ordering::SeqCst) {
                            UNWATCHED => {}
                            at if at <= now => slot.blocker.unpark(),
                            at => next = next.min(at),
                        }
                    }
                    Some(next)
                }
            };
            let Some(next) = next else {
                // Not straight back from the park: `may` may have run this coroutine from
                // inside the wake-up's own registration, and a coroutine that ends there
                // spins its worker forever waiting for that registration to finish (seen
                // as a hung test run). A yield lets it finish first.
                may::coroutine::yield_now();
                return;
            };
            self.watched.fetch_min(next, Ordering::SeqCst);
            let until = self.watched.load(Ordering::SeqCst);
            let wake_at = (until != UNWATCHED).then(|| epoch() + Duration::from_nanos(until));
            park(&blocker, wake_at);
        }
    }

    /// Whether the connection has failed (or a reply is overdue, which fails it now).
    pub(crate) fn is_broken(&self) -> bool {
        if !self.broken.load(Ordering::Acquire) {
            self.check_overdue();
        }
        self.broken.load(Ordering::Acquire)
    }

    /// Queues the bytes `pack` writes, which must hold exactly `replies` commands, and
    /// returns the request to wait on for their replies.
    pub(crate) fn request(
        &self,
        replies: usize,
        pack: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Request<'_>, RedisError> {
        self.check_overdue();
        let slot = Slot::new(replies);
        let batch = {
            let mut st = lock(&self.state);
            if let Some(e) = &st.broken {
                return Err(e.clone());
            }
            pack(&mut st.out);
            st.pending.push_back(slot.clone());
            // A write in progress takes these bytes along.
            if st.writing {
                return Ok(Request { conn: self, slot });
            }
            st.writing = true;
            // Others' requests in flight: the callers their replies woke are about to queue
            // theirs, and the writer coroutine, running after them, sends all in one write.
            st.pending.len() > 1
        };
        if batch {
            self.wake_writer();
        } else {
            self.write_own();
        }
        Ok(Request { conn: self, slot })
    }

    /// Writes the buffer once from the calling coroutine; bytes queued meanwhile go to the
    /// writer coroutine.
    fn write_own(&self) {
        let mut chunk = {
            let mut st = lock(&self.state);
            let mut chunk = std::mem::take(&mut st.spare);
            std::mem::swap(&mut st.out, &mut chunk);
            chunk
        };
        let written = self
            .writer
            .lock()
            .map(|mut socket| socket.write_all(&chunk));
        chunk.clear();
        let more = {
            let mut st = lock(&self.state);
            st.spare = chunk;
            let more = matches!(written, Ok(Ok(()))) && !st.out.is_empty();
            st.writing = more;
            more
        };
        match written {
            Ok(Ok(())) if more => self.wake_writer(),
            Ok(Ok(())) => {}
            Ok(Err(e)) => self.fail(connection_error(&self.target, "write", e)),
            // Poisoned: a writer panicked mid-write, so the stream is torn.
            Err(_) => self.fail(RedisError::new(
                RedisErrorKind::Connection,
                format!("the connection to {} was torn by a panic", self.target),
            )),
        }
    }

    fn wake_writer(&self) {
        if let Some(co) = self.writer_co.get() {
            co.unpark();
        }
    }

    /// The writer coroutine: once woken, writes until the buffer stays empty.
    fn write_loop(self: Arc<Self>) {
        let mut chunk = Vec::new();
        loop {
            may::coroutine::park();
            loop {
                {
                    let mut st = lock(&self.state);
                    if st.broken.is_some() {
                        return;
                    }
                    if st.out.is_empty() {
                        st.writing = false;
                        break;
                    }
                    std::mem::swap(&mut st.out, &mut chunk);
                }
                let written = match self.writer.lock() {
                    Ok(mut socket) => socket.write_all(&chunk),
                    Err(_) => Err(std::io::Error::other("a writer panicked mid-write")),
                };
                chunk.clear();
                if let Err(e) = written {
                    return self.fail(connection_error(&self.target, "write", e));
                }
            }
        }
    }

    /// The reader coroutine: parse replies and fill the slot at the front of the queue.
    fn read_loop(self: Arc<Self>, mut socket: Socket) {
        let mut replies = Replies::default();
        let end = loop {
            let value = match replies.next(&mut socket) {
                Ok(value) => value,
                Err(e) => break e.into_error(&self.target),
            };
            // Push messages (RESP3 invalidations) answer no request.
            if matches!(value, Value::Push { .. }) {
                continue;
            }
            let done = {
                let mut st = lock(&self.state);
                let Some(front) = st.pending.front() else {
                    break RedisError::new(
                        RedisErrorKind::Protocol,
                        format!("{} sent a reply nobody asked for", self.target),
                    );
                };
                if front.push(value) {
                    st.pending.pop_front()
                } else {
                    None
                }
            };
            if let Some(slot) = done {
                slot.blocker.unpark();
            }
        };
        self.fail(end);
    }

    /// Fails the connection when the oldest request's caller gave up long ago.
    fn check_overdue(&self) {
        if ABANDONED.load(Ordering::Acquire) == 0 {
            return;
        }
        let overdue = {
            let st = lock(&self.state);
            st.pending
                .front()
                .is_some_and(|slot| slot.overdue(Instant::now()))
        };
        if overdue {
            self.fail(RedisError::new(
                RedisErrorKind::Connection,
                format!(
                    "no reply from {} within {ABANDON_GRACE:?} after a deadline; the connection is presumed dead",
                    self.target
                ),
            ));
        }
    }

    /// Marks the connection broken and fails every request still waiting on it.
    pub(crate) fn fail(&self, e: RedisError) {
        let drained: Vec<Arc<Slot>> = {
            let mut st = lock(&self.state);
            if st.broken.is_none() {
                st.broken = Some(e.clone());
            }
            st.out.clear();
            st.pending.drain(..).collect()
        };
        self.broken.store(true, Ordering::Release);
        for slot in drained {
            slot.fail(e.clone());
        }
        self.closer.shutdown();
        // The writer and the keeper wake, find the connection broken and end.
        self.wake_writer();
        self.wake_keeper();
    }
}

fn connection_error(target: &str, what: &str, e: std::io::Error) -> RedisError {
    RedisError {
        source: Some(Arc::new(e)),
        ..RedisError::new(RedisErrorKind::Connection, format!("{what} on {target}"))
    }
}

/// How a connection's stream of replies ended.
#[derive(Debug)]
enum ReadError {
    /// The socket failed.
    Io(std::io::Error),
    /// The server closed the connection.
    Closed,
    /// Bytes that are not RESP, as this reader or the `redis` crate's parser saw them.
    Garbled(Option<redis::RedisError>),
}

impl ReadError {
    fn into_error(self, target: &str) -> RedisError {
        match self {
            ReadError::Io(e) => connection_error(target, "read", e),
            ReadError::Closed => RedisError::new(
                RedisErrorKind::Connection,
                format!("read from {target}: the server closed the connection"),
            ),
            ReadError::Garbled(source) => RedisError {
                source: source.map(|e| Arc::new(e) as _),
                ..RedisError::new(
                    RedisErrorKind::Protocol,
                    format!("read from {target}: a reply that is not RESP"),
                )
            },
        }
    }
}

/// How deep replies may nest (the `redis` crate's parser allows as much).
const MAX_DEPTH: usize = 100;

/// The replies arriving on a connection: bytes read in large chunks, split into whole
/// replies.
struct Replies {
    /// `buf[start..end]` holds bytes read and not yet handed out.
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Default for Replies {
    fn default() -> Replies {
        Replies {
            // Zeroed once and reused: reads go straight into it.
            buf: vec![0; 64 * 1024],
            start: 0,
            end: 0,
        }
    }
}

impl Replies {
    /// The next whole reply, reading as much as it takes.
    fn next(&mut self, socket: &mut Socket) -> Result<Value, ReadError> {
        loop {
            let unread = &self.buf[self.start..self.end];
            if let Some(len) = reply_len(unread, 0)? {
                let value = decode(&unread[..len])?;
                self.start += len;
                if self.start == self.end {
                    (self.start, self.end) = (0, 0);
                }
                return Ok(value);
            }
            // Incomplete: make room after what is there (moving it to the front, or
            // growing the buffer for a reply larger than it), then read.
            if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                (self.start, self.end) = (0, self.end - self.start);
            }
            if self.end == self.buf.len() {
                self.buf.resize(self.buf.len() * 2, 0);
            }
            match socket.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => self.end += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// The length of the whole reply at the start of `bytes`, `None` while it is incomplete.
/// Covers every RESP2 and RESP3 type, so that a reply of any kind is handed on whole.
fn reply_len(bytes: &[u8], depth: usize) -> Result<Option<usize>, ReadError> {
    if depth > MAX_DEPTH {
        return Err(ReadError::Garbled(None));
    }
    let Some(&kind) = bytes.first() else {
        return Ok(None);
    };
    let Some(cr) = bytes.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let line = cr + 2;
    let elements = match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => return Ok(Some(line)),
        b'$' | b'=' | b'!' => {
            return Ok(match usize::try_from(header(&bytes[1..cr])?) {
                // A negative length is the RESP2 nil: the line is all of it.
                Err(_) => Some(line),
                Ok(size) => {
                    let len = line.checked_add(size).and_then(|n| n.checked_add(2));
                    len.filter(|&len| len <= bytes.len())
                }
            });
        }
        b'*' | b'~' | b'>' => header(&bytes[1..cr])?,
        b'%' => header(&bytes[1..cr])?.saturating_mul(2),
        b'|' => header(&bytes[1..cr])?.saturating_mul(2).saturating_add(1),
        _ => return Err(ReadError::Garbled(None)),
    };
    let mut len = line;
    for _ in 0..elements.max(0) {
        match reply_len(&bytes[len..], depth + 1)? {
            Some(element) => len += element,
            None => return Ok(None),
        }
    }
    Ok(Some(len))
}

/// The integer of a reply's first line (a length or a count).
fn header(digits: &[u8]) -> Result<i64, ReadError> {
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or(ReadError::Garbled(None))
}

/// Decodes one whole reply: a bulk string, nil, an integer or `OK` here, as the `redis`
/// crate would; anything else by that crate's parser.
fn decode(reply: &[u8]) -> Result<Value, ReadError> {
    let body = &reply[1..reply.len() - 2];
    match reply[0] {
        b'$' => {
            // The first line as `reply_len` read it: a `\r` alone inside it is no end.
            let garbled = || ReadError::Garbled(None);
            let cr = reply
                .windows(2)
                .position(|w| w == b"\r\n")
                .ok_or_else(garbled)?;
            match usize::try_from(header(&reply[1..cr])?) {
                // A negative length is the RESP2 nil, and all of the reply.
                Err(_) if cr + 2 == reply.len() => Ok(Value::Nil),
                Err(_) => Err(garbled()),
                Ok(size) => {
                    let data = reply.get(cr + 2..reply.len() - 2).ok_or_else(garbled)?;
                    if data.len() != size || !reply.ends_with(b"\r\n") {
                        return Err(garbled());
                    }
                    Ok(Value::BulkString(data.to_vec()))
                }
            }
        }
        b':' => header(body).map(Value::Int),
        b'+' if body == b"OK" => Ok(Value::Okay),
        _ => redis::parse_redis_value(reply).map_err(|e| ReadError::Garbled(Some(e))),
    }
}

/// Fuzz entry point: splits `bytes` into replies as the reader does and decodes each;
/// any of it may fail, none of it may panic.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub fn fuzz_replies(mut bytes: &[u8]) {
    while let Ok(Some(len)) = reply_len(bytes, 0) {
        let _ = decode(&bytes[..len]);
        bytes = &bytes[len..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connection to a server that accepts and never answers.
    fn silent_connection() -> (Arc<Connection>, std::net::TcpListener) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a local port");
        let port = listener.local_addr().expect("its address").port();
        let socket = Socket::connect_tcp("127.0.0.1", port, Some(Duration::from_secs(5)), "test")
            .expect("connect to the local listener");
        let conn = Connection::start(socket, "test".into()).expect("start the connection");
        (conn, listener)
    }

    fn ping(conn: &Connection, wait: Duration) -> (RedisErrorKind, Duration) {
        let started = Instant::now();
        let e = conn
            .request(1, |out| out.extend_from_slice(b"PING\r\n"))
            .expect("queued")
            .wait(started + wait)
            .expect_err("the server never answers");
        (e.kind, started.elapsed())
    }

    /// Splits `stream` as the reader does, reading it in pieces of `chunk` bytes.
    fn split(stream: &[u8], chunk: usize) -> Vec<Value> {
        let mut replies = Replies {
            buf: vec![0; 8],
            start: 0,
            end: 0,
        };
        let mut fed = 0;
        let mut out = Vec::new();
        loop {
            let unread = &replies.buf[replies.start..replies.end];
            match reply_len(unread, 0).expect("valid RESP") {
                Some(len) => {
                    out.push(decode(&unread[..len]).expect("decodes"));
                    replies.start += len;
                }
                None if fed == stream.len() => return out,
                None => {
                    let piece = &stream[fed..(fed + chunk).min(stream.len())];
                    fed += piece.len();
                    let mut kept = replies.buf[replies.start..replies.end].to_vec();
                    kept.extend_from_slice(piece);
                    replies.end = kept.len();
                    replies.start = 0;
                    replies.buf = kept;
                }
            }
        }
    }

    #[test]
    fn replies_split_and_decode_as_the_redis_crate_reads_them() {
        let stream: &[u8] = b"$5\r\nhe\r\no\r\n$-1\r\n:42\r\n:-7\r\n+OK\r\n+PONG\r\n\
            -NOSCRIPT No matching script\r\n$0\r\n\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n*-1\r\n\
            %1\r\n+k\r\n:2\r\n_\r\n,1.5\r\n#t\r\n>2\r\n+message\r\n$1\r\nx\r\n";
        let mut expected = Vec::new();
        let mut rest = stream;
        while !rest.is_empty() {
            let len = reply_len(rest, 0).expect("valid").expect("whole");
            expected.push(redis::parse_redis_value(&rest[..len]).expect("the crate parses it"));
            rest = &rest[len..];
        }
        assert_eq!(expected.len(), 15);
        assert_eq!(expected[0], Value::BulkString(b"he\r\no".to_vec()));
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            assert_eq!(
                split(stream, chunk),
                expected,
                "read {chunk} bytes at a time"
            );
        }
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        // The last two: a lone `\r` in a bulk header (found by the fuzz target
        // resp_replies; it panicked the reader on an out-of-range slice).
        for bad in [
            &b"?\r\n"[..],
            b"$3\r\nabcde\r\n",
            b":x\r\n",
            b"$z\r\n",
            b"$-1\r\r\n",
            b"$-\x00\r\r\n",
        ] {
            let outcome =
                reply_len(bad, 0).and_then(|len| decode(&bad[..len.unwrap_or(bad.len())]));
            assert!(matches!(outcome, Err(ReadError::Garbled(_))), "{bad:?}");
        }
    }

    #[test]
    fn each_caller_is_woken_at_its_own_deadline_even_behind_a_later_one() {
        let (conn, _listener) = silent_connection();
        let long = {
            let conn = conn.clone();
            std::thread::spawn(move || ping(&conn, Duration::from_millis(600)))
        };
        std::thread::sleep(Duration::from_millis(20));
        // Queued behind a caller with a later deadline, which the keeper sleeps until.
        let (kind, waited) = ping(&conn, Duration::from_millis(40));
        assert_eq!(kind, RedisErrorKind::Timeout);
        assert!(
            waited >= Duration::from_millis(40) && waited < Duration::from_millis(400),
            "{waited:?}"
        );
        let (kind, waited) = long.join().expect("the first caller returns");
        assert_eq!(kind, RedisErrorKind::Timeout);
        assert!(waited >= Duration::from_millis(600), "{waited:?}");
        // Then a deadline that has already passed returns at once.
        let (kind, waited) = ping(&conn, Duration::ZERO);
        assert_eq!(kind, RedisErrorKind::Timeout);
        assert!(waited < Duration::from_millis(400), "{waited:?}");
        conn.fail(RedisError::new(RedisErrorKind::Connection, "test over"));
    }
}
