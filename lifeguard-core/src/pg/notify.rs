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
#[derive(Default)]
pub(crate) struct NotificationQueue {
    state: Mutex<Queued>,
}

#[derive(Default)]
struct Queued {
    queue: VecDeque<Notification>,
    /// Every coroutine waiting for a notification; all are woken and re-check the queue.
    waiters: Vec<Arc<Blocker>>,
}

impl NotificationQueue {
    /// Queues a notification from the server and wakes every listener.
    pub(crate) fn deliver(&self, n: Notification) {
        lock(&self.state).queue.push_back(n);
        self.wake_all();
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
