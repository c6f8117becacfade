//! The server's deadlines and its connection count: one sweeper coroutine shuts down the
//! socket of any connection whose deadline has passed, which wakes its coroutine from
//! whatever read or write it is parked in.
//!
//! `may`'s per-socket timeouts are not used (arming them races with the poller thread
//! firing them, see `lifeguard_core`'s socket module), nor a timer per wait: a deadline is
//! one atomic store into the connection's slot, which keeps the keep-alive path at the
//! cost it had without deadlines. The price is precision: a deadline is acted on up to one
//! sweep period late (an eighth of the shortest timeout, within 5 ms to 250 ms).

use std::io;
use std::net::{Shutdown, TcpStream as StdTcpStream};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use lifeguard_core::rt;
use may::net::TcpStream;

/// No deadline: the connection waits for nothing (its handler runs).
const NONE: u64 = 0;
/// The deadline passed and the socket was shut down.
const FIRED: u64 = u64::MAX;

/// Every open connection of one server, with its deadline.
pub(super) struct Watches {
    /// Deadlines are milliseconds after this instant.
    base: Instant,
    slots: Mutex<Slots>,
    max_served: usize,
    max_refusing: usize,
}

#[derive(Default)]
struct Slots {
    watched: Vec<Option<Arc<Watch>>>,
    free: Vec<usize>,
    served: usize,
    refusing: usize,
}

struct Watch {
    deadline: AtomicU64,
    /// A duplicate of the connection's socket, outside `may`'s poller, to shut it down.
    closer: StdTcpStream,
}

/// What to do with an accepted connection.
pub(super) enum Admission {
    /// Serve it.
    Serve(Guard),
    /// Over the connection cap: answer `503` and close.
    Refuse(Guard),
    /// Over the cap and as many refusals already lingering as allowed: close at once.
    Drop,
}

impl Watches {
    /// Watches for a server serving at most `max_served` connections at once and refusing
    /// at most `max_refusing` more; starts the sweeper, which looks every `period` and ends
    /// once the server and all its connections are gone.
    pub(super) fn start(
        max_served: usize,
        max_refusing: usize,
        period: Duration,
    ) -> io::Result<Arc<Watches>> {
        let watches = Arc::new(Watches {
            base: Instant::now(),
            slots: Mutex::new(Slots::default()),
            max_served,
            max_refusing,
        });
        let weak = Arc::downgrade(&watches);
        rt::spawn("lifeguard-http-sweeper", 0x2000, move || {
            sweep_until_gone(&weak, period)
        })?;
        Ok(watches)
    }

    /// Admits `stream` as served or refused, within the caps.
    pub(super) fn admit(self: &Arc<Watches>, stream: &TcpStream) -> io::Result<Admission> {
        // Cheap check first, so a flood past the cap costs no duplicate descriptor.
        let refusing = {
            let slots = rt::lock(&self.slots);
            if slots.served < self.max_served {
                false
            } else if slots.refusing < self.max_refusing {
                true
            } else {
                return Ok(Admission::Drop);
            }
        };
        // SAFETY: `stream` keeps the descriptor open for as long as this borrow lives.
        let fd = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        let watch = Arc::new(Watch {
            deadline: AtomicU64::new(NONE),
            closer: StdTcpStream::from(fd.try_clone_to_owned()?),
        });
        let mut slots = rt::lock(&self.slots);
        let slot = match slots.free.pop() {
            Some(i) => {
                slots.watched[i] = Some(watch.clone());
                i
            }
            None => {
                slots.watched.push(Some(watch.clone()));
                slots.watched.len() - 1
            }
        };
        // Only the accept coroutine admits, so the counts checked above still hold.
        if refusing {
            slots.refusing += 1;
        } else {
            slots.served += 1;
        }
        let guard = Guard {
            watches: self.clone(),
            watch,
            slot,
            refusing,
        };
        Ok(if refusing {
            Admission::Refuse(guard)
        } else {
            Admission::Serve(guard)
        })
    }

    /// Milliseconds from `base` to `timeout` from now, never [`NONE`] or [`FIRED`].
    fn deadline_in(&self, timeout: Duration) -> u64 {
        let at = self.base.elapsed().saturating_add(timeout).as_millis();
        u64::try_from(at).unwrap_or(FIRED - 1).clamp(1, FIRED - 1)
    }

    /// Shuts down every connection whose deadline has passed.
    fn sweep(&self) {
        let now = u64::try_from(self.base.elapsed().as_millis()).unwrap_or(FIRED - 1);
        let slots = rt::lock(&self.slots);
        for watch in slots.watched.iter().flatten() {
            let deadline = watch.deadline.load(Ordering::Acquire);
            // The exchange loses to a connection that moved on to another deadline in the
            // meantime, so a socket is never shut down for a wait that already ended.
            if deadline != NONE
                && deadline != FIRED
                && deadline <= now
                && watch
                    .deadline
                    .compare_exchange(deadline, FIRED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                // The peer may already be gone; nothing useful to do with that error.
                let _ = watch.closer.shutdown(Shutdown::Both);
            }
        }
    }
}

fn sweep_until_gone(watches: &Weak<Watches>, period: Duration) {
    loop {
        may::coroutine::sleep(period);
        // Not held across the sleep, so the last connection's end drops the watches.
        let Some(watches) = watches.upgrade() else {
            return;
        };
        watches.sweep();
    }
}

/// One admitted connection's slot: sets its deadlines, and frees the slot when dropped.
pub(super) struct Guard {
    watches: Arc<Watches>,
    watch: Arc<Watch>,
    slot: usize,
    refusing: bool,
}

impl Guard {
    /// The deadline `timeout` from now, for [`Guard::arm_at`].
    pub(super) fn deadline_in(&self, timeout: Duration) -> u64 {
        self.watches.deadline_in(timeout)
    }

    /// Shuts the socket down at `deadline` (from [`Guard::deadline_in`]) unless another
    /// deadline is armed first. Fails once a deadline has fired.
    pub(super) fn arm_at(&self, deadline: u64) -> io::Result<()> {
        self.set(deadline)
    }

    /// Shuts the socket down `timeout` from now unless another deadline is armed first.
    pub(super) fn arm(&self, timeout: Duration) -> io::Result<()> {
        self.set(self.deadline_in(timeout))
    }

    /// No deadline until the next [`Guard::arm`].
    pub(super) fn disarm(&self) -> io::Result<()> {
        self.set(NONE)
    }

    /// Whether a deadline fired and the socket was shut down.
    pub(super) fn fired(&self) -> bool {
        self.watch.deadline.load(Ordering::Acquire) == FIRED
    }

    fn set(&self, deadline: u64) -> io::Result<()> {
        let mut current = self.watch.deadline.load(Ordering::Acquire);
        loop {
            if current == FIRED {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the connection's deadline passed",
                ));
            }
            match self.watch.deadline.compare_exchange_weak(
                current,
                deadline,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(seen) => current = seen,
            }
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let mut slots = rt::lock(&self.watches.slots);
        slots.watched[self.slot] = None;
        slots.free.push(self.slot);
        if self.refusing {
            slots.refusing -= 1;
        } else {
            slots.served -= 1;
        }
    }
}
