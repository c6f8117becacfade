//! `LISTEN`/`NOTIFY`: notifications a coroutine can wait for with a timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use may::sync::Blocker;
use postgres_protocol::message::backend::NotificationResponseBody;

use super::connection::Connection;
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

impl Connection {
    /// Waits up to `timeout` for the next notification on this connection's `LISTEN`ed
    /// channels. `Ok(None)` means the time ran out; a broken connection is an error.
    ///
    /// Notifications arrive only while the connection is alive, so a service usually keeps
    /// one connection for listening (the pool's leased connections fit).
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
        let deadline = Instant::now() + timeout;
        let blocker = Arc::new(Blocker::new(false));
        loop {
            {
                let mut q = lock(self.shared().notifications());
                if let Some(n) = q.queue.pop_front() {
                    return Ok(Some(n));
                }
                if let Some(e) = self.shared().broken() {
                    return Err(e);
                }
                q.waiters.push(blocker.clone());
            }
            if Instant::now() >= deadline {
                lock(self.shared().notifications())
                    .waiters
                    .retain(|w| !Arc::ptr_eq(w, &blocker));
                return Ok(None);
            }
            park(&blocker, Some(deadline));
        }
    }

    /// Every notification already received, without waiting.
    pub fn drain_notifications(&self) -> Vec<Notification> {
        lock(self.shared().notifications())
            .queue
            .drain(..)
            .collect()
    }
}

/// Makes a channel name safe to splice into `LISTEN`/`UNLISTEN`, which take no parameters.
pub fn quote_channel(channel: &str) -> Result<String> {
    if channel.is_empty() || channel.contains('\0') {
        return Err(Error::invalid_use(format!(
            "invalid channel name {channel:?}"
        )));
    }
    Ok(format!("\"{}\"", channel.replace('"', "\"\"")))
}
