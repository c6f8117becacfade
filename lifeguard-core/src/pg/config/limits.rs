//! The caps on what a connection holds in memory for the server's sake: the size of one
//! message, the bytes of one reply waiting for its caller, and the notifications waiting
//! for a listener. Everything the server sends is untrusted input to them.

use super::Config;
use crate::error::{Error, Result};

/// The largest backend message accepted unless set otherwise: PostgreSQL caps a field (and
/// the buffer it builds a row in) at 1 GiB, so a longer message is corruption.
const DEFAULT_MAX_MESSAGE_SIZE: usize = (1 << 30) + 1024;

/// The least `max_message_size` taken: a server's error report must always fit.
const MIN_MAX_MESSAGE_SIZE: usize = 8 * 1024;

/// The bytes of one reply the reader holds for its caller unless set otherwise. Enough for
/// the reader to stay a few reads ahead of a fast caller; small enough that a slow one
/// costs little memory.
const DEFAULT_REPLY_BUFFER: usize = 4 << 20;

/// Notifications kept for a listener that has not taken them, unless set otherwise.
const DEFAULT_NOTIFICATION_QUEUE: usize = 10_000;

/// The caps, copied into each connection as it opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// The largest backend message, in bytes (type byte and length included).
    pub(crate) max_message_size: usize,
    /// Bytes of one reply held for its caller before the reader stops reading the socket.
    pub(crate) reply_buffer: usize,
    /// Notifications queued for a listener before the oldest are dropped.
    pub(crate) notification_queue: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            reply_buffer: DEFAULT_REPLY_BUFFER,
            notification_queue: DEFAULT_NOTIFICATION_QUEUE,
        }
    }
}

impl Limits {
    /// Applies one of the three connection-string parameters; an empty value restores its
    /// default.
    pub(super) fn apply(&mut self, key: &str, value: &str, ctx: &str) -> Result<()> {
        let defaults = Limits::default();
        let (slot, default, least, unit) = match key {
            "max_message_size" => (
                &mut self.max_message_size,
                defaults.max_message_size,
                MIN_MAX_MESSAGE_SIZE,
                "bytes",
            ),
            "reply_buffer" => (&mut self.reply_buffer, defaults.reply_buffer, 1, "bytes"),
            "notification_queue" => (
                &mut self.notification_queue,
                defaults.notification_queue,
                1,
                "notifications",
            ),
            _ => {
                return Err(Error::config(format!(
                    "unknown connection parameter \"{key}\""
                )))
            }
        };
        *slot = match value {
            "" => default,
            v => match v.parse::<usize>() {
                Ok(n) if n >= least => n,
                _ => {
                    return Err(Error::config(format!(
                        "invalid {key} \"{value}\" {ctx}: expected a number of {unit} from {least}"
                    )))
                }
            },
        };
        Ok(())
    }
}

impl Config {
    /// Sets the largest message the server may send (`max_message_size`, in bytes; default
    /// 1 GiB + 1 KiB, what PostgreSQL itself can produce; at least 8 KiB).
    ///
    /// A longer message (a row larger than this, or a corrupt length) fails the connection
    /// with [`Error::Protocol`] ("... exceeds max_message_size ..."): every caller waiting
    /// on it gets that error, and the pool replaces it. Lower it when rows are known to be
    /// small, to bound what one hostile or broken server can make the client hold.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.limits.max_message_size = bytes.max(MIN_MAX_MESSAGE_SIZE);
        self
    }

    /// The largest message the server may send, in bytes.
    pub fn get_max_message_size(&self) -> usize {
        self.limits.max_message_size
    }

    /// Sets how many bytes of one reply (rows, `COPY TO STDOUT` data) the connection holds
    /// for a caller that has not taken them yet (`reply_buffer`; default 4 MiB; at least 1).
    ///
    /// Past it the connection stops reading its socket until the caller catches up, so TCP
    /// slows the server down instead of the client buffering without bound; the other
    /// callers pipelined on the connection wait meanwhile, as they would behind a slow
    /// statement. A reply whose caller gave up (deadline) or went away is discarded as it
    /// arrives and never holds the connection back. One read (64 KiB) and one message may
    /// come on top of the cap.
    pub fn reply_buffer(mut self, bytes: usize) -> Self {
        self.limits.reply_buffer = bytes.max(1);
        self
    }

    /// The bytes of one reply held for its caller before the connection stops reading.
    pub fn get_reply_buffer(&self) -> usize {
        self.limits.reply_buffer
    }

    /// Sets how many notifications (`LISTEN`/`NOTIFY`) a connection keeps for a listener
    /// that has not taken them (`notification_queue`; default 10,000; at least 1).
    ///
    /// When a new one arrives at the cap, the oldest is dropped and counted
    /// ([`Connection::notifications_dropped`](crate::pg::Connection::notifications_dropped)),
    /// with a warning at most every 10 s: the connection never stops reading for a listener
    /// (every statement on it would stall), and the queue keeps the latest notifications, so
    /// a flood cannot hide the ones sent after it. An application that sees the count grow
    /// has missed some and should re-read the state they announce. PostgreSQL caps a payload
    /// below 8000 bytes, so the default holds at most about 80 MB.
    pub fn notification_queue(mut self, notifications: usize) -> Self {
        self.limits.notification_queue = notifications.max(1);
        self
    }

    /// How many notifications a connection keeps for a listener.
    pub fn get_notification_queue(&self) -> usize {
        self.limits.notification_queue
    }

    /// The caps a connection opened with this configuration applies.
    pub(crate) fn limits(&self) -> Limits {
        self.limits
    }
}
