//! The write side: queueing a request's bytes with its reply slot, a caller writing its own
//! request on an idle pipeline, and the writer coroutine flushing a busy one.

use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError};
use std::time::Instant;

use bytes::BytesMut;

use super::reply::{Pending, Reply};
use super::{Shared, State};
use crate::error::{Error, Result};
use crate::rt::lock;

/// How a request is queued.
pub(crate) enum Outgoing<'a> {
    /// Extended-protocol messages ending in `Sync`: pending statement closes may ride along.
    Extended(&'a [u8]),
    /// A simple `Query`, or `CopyData`/`CopyDone` of a running COPY: sent exactly as given.
    Raw(&'a [u8]),
}

/// How many unanswered requests the server may hold before new bytes wait for an answer.
///
/// Writing each request as soon as it is queued costs a `send` per one or two requests on a
/// deep pipeline, and a `send` that finds the backend asleep wakes it. On a machine whose
/// cores the server shares, that traffic kept the backends queueing for a CPU with the
/// requests of their pipeline behind them: the p99 tail. Held back until the server is down
/// to three, requests go out in batches while the backend never runs dry: fewer sends per
/// request and far fewer long waits of the backends for a CPU (BENCHMARKS.md, "Mechanisms").
/// Shallow pipelines, under the mark, are written at once as before. It must be at least 2:
/// a COPY keeps its request unanswered while its data follows, and that data must never wait
/// for an answer only its own end brings.
const HOLD_BACK_AT: usize = 4;

impl State {
    /// Whether bytes in `out` should wait for an answer: the server already holds
    /// [`HOLD_BACK_AT`] requests of this connection, enough to stay busy until the answer to
    /// one of them brings the writer back.
    pub(super) fn hold_back(&self) -> bool {
        self.pending.len().saturating_sub(self.unsent) >= HOLD_BACK_AT
    }
}

impl Shared {
    /// Queues `bytes` and returns the slot its reply will arrive in.
    pub(crate) fn request(&self, out: Outgoing<'_>) -> Result<Arc<Reply>> {
        let reply = Reply::new();
        self.enqueue(out, Some(Pending::Reply(Arc::downgrade(&reply))))?;
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
                if let (true, Some(r)) = (st.pending.is_empty(), p.reply()) {
                    r.mark_started(Instant::now());
                }
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

    pub(super) fn wake_writer(&self) {
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
    pub(super) fn write_loop(self: Arc<Self>) {
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
}
