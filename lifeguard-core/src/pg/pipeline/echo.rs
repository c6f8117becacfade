//! The echo: a second registration of the reader's socket that keeps another `may` worker
//! stirring while a connection is shallow.

use crate::pg::socket::Socket;

/// A registration on another `may` worker that a reply wakes as well, kept only while the
/// connection is shallow and its replies each fit one read.
///
/// The writer's and the reader's handles are polled by one worker, so under load a reply
/// wakes one thread, which costs less client CPU and fewer context switches than handles
/// on both workers. A lone caller is the other way round: woken on one worker only, its
/// `update` round trip fell into a slow mode in half the runs on a 2-vCPU machine
/// (BENCHMARKS.md, "Mechanisms"); the likely cause, not pinned down, is the idle worker's
/// CPU going to sleep between replies. The echo keeps the second worker stirring while a connection has at
/// most one request in flight, and goes away once the server holds [`ECHO_OFF_AT`] of them
/// or a reply streams over several reads.
#[derive(Default)]
pub(super) struct Echo {
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
    pub(super) fn adjust(&mut self, socket: &Socket, in_flight: usize, mid_reply: bool) {
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
