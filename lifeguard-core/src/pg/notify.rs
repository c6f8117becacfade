//! `LISTEN`/`NOTIFY`: notifications a coroutine can wait for with a timeout.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use may::sync::Blocker;
use postgres_protocol::message::backend::NotificationResponseBody;

use super::connection::Connection;
use super::session::{refusal, SessionFeature};
use crate::error::{Error, Result};
use crate::rt::{lock, park};

/// One `NOTIFY` delivered to this connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The backend process that sent it.
    pub process_id: i32,
    /// The channel it was sent on.
    pub channel: String,
    /// The payload (empty when none was given).
    pub payload: String,
}

impl Notification {
    pub(crate) fn from_body(body: &NotificationResponseBody) -> Option<Notification> {
        Some(Notification {
            process_id: body.process_id(),
            channel: body.channel().ok()?.to_owned(),
            payload: body.message().ok()?.to_owned(),
        })
    }
}

/// The notifications received on one connection and the coroutines waiting for them.
pub(crate) struct NotificationQueue {
    state: Mutex<Queued>,
    /// The most notifications kept (`notification_queue`).
    cap: usize,
}

#[derive(Default)]
struct Queued {
    queue: VecDeque<Notification>,
    /// Every coroutine waiting for a notification; all are woken and re-check the queue.
    waiters: Vec<Arc<Blocker>>,
    /// Notifications dropped at the cap since the connection opened.
    dropped: u64,
    /// When the last warning about drops went out.
    warned: Option<Instant>,
}

/// The least time between two warnings about dropped notifications: a flood drops thousands
/// a second, and one line with the running count says as much as a line for each.
const WARN_EVERY: Duration = Duration::from_secs(10);

impl NotificationQueue {
    /// An empty queue keeping at most `cap` notifications.
    pub(crate) fn new(cap: usize) -> NotificationQueue {
        NotificationQueue {
            state: Mutex::new(Queued::default()),
            cap: cap.max(1),
        }
    }

    /// Queues a notification from the server and wakes every listener.
    ///
    /// At the cap the oldest goes: the reader must never wait for a listener (nobody may be
    /// draining, and every statement on the connection would stall behind it), and keeping
    /// the newest means a flood on one channel cannot hide what is sent after it.
    pub(crate) fn deliver(&self, n: Notification) {
        {
            let mut st = lock(&self.state);
            if st.queue.len() >= self.cap {
                st.queue.pop_front();
                st.dropped += 1;
                let now = Instant::now();
                if st
                    .warned
                    .is_none_or(|at| now.duration_since(at) >= WARN_EVERY)
                {
                    st.warned = Some(now);
                    tracing::warn!(
                        target: "lifeguard::pg",
                        dropped = st.dropped,
                        cap = self.cap,
                        "notification queue full: the oldest notifications are dropped \
                         (drain them faster or raise notification_queue)"
                    );
                }
            }
            st.queue.push_back(n);
        }
        self.wake_all();
    }

    /// Notifications dropped at the cap so far.
    fn dropped(&self) -> u64 {
        lock(&self.state).dropped
    }

    /// Wakes every listener, to find a notification or the connection broken.
    pub(crate) fn wake_all(&self) {
        let waiters = std::mem::take(&mut lock(&self.state).waiters);
        for w in waiters {
            w.unpark();
        }
    }

    /// The oldest notification; with none queued, `blocker` is registered to be woken by
    /// the next [`wake_all`](Self::wake_all) instead.
    fn pop_or_wait(&self, blocker: &Arc<Blocker>) -> Option<Notification> {
        let mut st = lock(&self.state);
        let next = st.queue.pop_front();
        if next.is_none() {
            st.waiters.push(blocker.clone());
        }
        next
    }

    /// Withdraws a registration made by [`pop_or_wait`](Self::pop_or_wait).
    fn stop_waiting(&self, blocker: &Arc<Blocker>) {
        lock(&self.state)
            .waiters
            .retain(|w| !Arc::ptr_eq(w, blocker));
    }

    fn drain(&self) -> Vec<Notification> {
        lock(&self.state).queue.drain(..).collect()
    }
}

impl Connection {
    /// Waits up to `timeout` for the next notification on this connection's `LISTEN`ed
    /// channels. `Ok(None)` means the time ran out; a broken connection is an error.
    ///
    /// Notifications arrive only while the connection is alive, so a service usually keeps
    /// one connection for listening (the pool's leased connections fit). In unnamed mode
    /// ([`Prepare::Unnamed`](super::Prepare::Unnamed), for transaction-mode poolers) there
    /// is no `LISTEN`, and this fails at once with
    /// [`Error::InvalidUse`](crate::Error::InvalidUse) rather than wait for nothing.
    ///
    /// ```no_run
    /// # fn demo(conn: &lifeguard_core::pg::Connection) -> lifeguard_core::Result<()> {
    /// use std::time::Duration;
    /// conn.listen("jobs")?;
    /// if let Some(n) = conn.next_notification(Duration::from_secs(1))? {
    ///     println!("{}: {}", n.channel, n.payload);
    /// }
    /// # Ok(()) }
    /// ```
    pub fn next_notification(&self, timeout: Duration) -> Result<Option<Notification>> {
        if self.is_unnamed() {
            return Err(refusal(SessionFeature::Listen));
        }
        let deadline = Instant::now() + timeout;
        let blocker = Arc::new(Blocker::new(false));
        let queue = self.shared().notifications();
        loop {
            if let Some(n) = queue.pop_or_wait(&blocker) {
                return Ok(Some(n));
            }
            // Asked with the queue unlocked: `broken` may fail the connection, and a failure
            // wakes the listeners under that lock. Registered before asking, this coroutine
            // is woken by a failure or a notification that comes after the answer.
            if let Some(e) = self.shared().broken() {
                queue.stop_waiting(&blocker);
                return Err(e);
            }
            if Instant::now() >= deadline {
                queue.stop_waiting(&blocker);
                return Ok(None);
            }
            park(&blocker, Some(deadline));
        }
    }

    /// Every notification already received, without waiting.
    pub fn drain_notifications(&self) -> Vec<Notification> {
        self.shared().notifications().drain()
    }

    /// How many notifications this connection dropped since it opened because its queue
    /// was full ([`Config::notification_queue`](super::Config::notification_queue)): the
    /// oldest go first. A count that grew means some were missed; re-read whatever state
    /// they announce.
    pub fn notifications_dropped(&self) -> u64 {
        self.shared().notifications().dropped()
    }
}

/// Makes a channel name safe to splice into `LISTEN`/`UNLISTEN`, which take no parameters.
pub(crate) fn quote_channel(channel: &str) -> Result<String> {
    if channel.is_empty() || channel.contains('\0') {
        return Err(Error::invalid_use(format!(
            "invalid channel name {channel:?}"
        )));
    }
    Ok(format!("\"{}\"", channel.replace('"', "\"\"")))
}
