//! One pipelined Redis connection shared by many coroutines.
//!
//! Redis answers every command with exactly one reply, in order, so the connection keeps a
//! queue of reply slots in the order their bytes went into the outgoing buffer; one reader
//! coroutine parses replies (with the `redis` crate's parser) and fills the slot at the
//! front. A caller that finds no write in progress writes the buffer itself (the lowest
//! latency for a lone caller); bytes queued while a write is on the wire go out with the
//! writer coroutine, so no caller keeps writing other callers' bytes.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Where the reader puts the replies of one request (one command, or a pipeline of them).
pub(crate) struct Slot {
    /// How many replies complete it.
    want: usize,
    state: Mutex<SlotState>,
    blocker: Blocker,
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
            state: Mutex::new(SlotState::default()),
            blocker: Blocker::new(false),
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

    /// Waits for the replies until `deadline`.
    pub(crate) fn wait(self: &Arc<Self>, deadline: Instant) -> Result<Vec<Value>, RedisError> {
        loop {
            {
                let mut st = lock(&self.state);
                if st.replies.len() >= self.want {
                    return Ok(std::mem::take(&mut st.replies));
                }
                if let Some(e) = &st.failed {
                    return Err(e.clone());
                }
                if Instant::now() >= deadline {
                    st.abandoned = Some(Instant::now());
                    return Err(RedisError::new(
                        RedisErrorKind::Timeout,
                        "no reply from Redis within the call's deadline",
                    ));
                }
            }
            // A wake-up that raced ahead of this park is kept by the blocker.
            park(self, Some(deadline));
        }
    }
}

/// One connection: its outgoing buffer, its queue of reply slots and its two coroutines.
pub(crate) struct Connection {
    target: String,
    state: Mutex<State>,
    /// The write half; only whoever set `State::writing` touches it. A `may` lock, as it is
    /// held across socket writes.
    writer: may::sync::Mutex<Socket>,
    /// Shuts the socket down from anywhere, waking a parked reader or writer.
    closer: Closer,
    writer_co: OnceLock<may::coroutine::Coroutine>,
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
    /// Wraps a connected socket and starts its reader and writer coroutines.
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
        Ok(conn)
    }

    /// Whether the connection has failed (or a reply is overdue, which fails it now).
    pub(crate) fn is_broken(&self) -> bool {
        if !self.broken.load(Ordering::Acquire) {
            self.check_overdue();
        }
        self.broken.load(Ordering::Acquire)
    }

    /// Queues the bytes `pack` writes, which must hold exactly `replies` commands, and
    /// returns the slot their replies will arrive in.
    pub(crate) fn request(
        &self,
        replies: usize,
        pack: impl FnOnce(&mut Vec<u8>),
    ) -> Result<Arc<Slot>, RedisError> {
        self.check_overdue();
        let slot = Slot::new(replies);
        let write_now = {
            let mut st = lock(&self.state);
            if let Some(e) = &st.broken {
                return Err(e.clone());
            }
            pack(&mut st.out);
            st.pending.push_back(slot.clone());
            !std::mem::replace(&mut st.writing, true)
        };
        if write_now {
            self.write_own();
        }
        Ok(slot)
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
        let mut parser = redis::Parser::new();
        let end = loop {
            let value = match parser.parse_value(&mut socket) {
                Ok(value) => value,
                Err(e) => break read_error(&self.target, e),
            };
            // Push messages (RESP3 invalidations) answer no request.
            if matches!(value, Value::Push { .. }) {
                continue;
            }
            let done = {
                let mut st = lock(&self.state);
                let Some(front) = st.pending.front().cloned() else {
                    break RedisError::new(
                        RedisErrorKind::Protocol,
                        format!("{} sent a reply nobody asked for", self.target),
                    );
                };
                if front.push(value) {
                    st.pending.pop_front();
                    Some(front)
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
        // The writer wakes, finds the connection broken and ends.
        self.wake_writer();
    }
}

fn connection_error(target: &str, what: &str, e: std::io::Error) -> RedisError {
    RedisError {
        source: Some(Arc::new(e)),
        ..RedisError::new(RedisErrorKind::Connection, format!("{what} on {target}"))
    }
}

fn read_error(target: &str, e: redis::RedisError) -> RedisError {
    let kind = match e.is_io_error() {
        true => RedisErrorKind::Connection,
        false => RedisErrorKind::Protocol,
    };
    RedisError {
        source: Some(Arc::new(e)),
        ..RedisError::new(kind, format!("read from {target}"))
    }
}
