//! Query cancellation: a `CancelRequest` sent on a fresh socket, as the protocol requires.

use std::io::{Read, Write};
use std::time::Instant;

use bytes::BytesMut;
use postgres_protocol::message::frontend;

use super::config::Config;
use super::connect::cancel_socket;
use crate::error::{Error, Result};

/// How long a cancel may take to connect and be acknowledged when the connection's
/// configuration sets no connect timeout.
const CANCEL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Cancels the statement a connection is running. Cheap to clone and `Send`, so a watchdog
/// coroutine can hold one.
///
/// Cancellation is best-effort on the server's side: a statement that finishes first is not
/// affected, and on a connection shared by pipelined callers it would hit whichever statement
/// runs at that moment, so Lifeguard itself cancels only sessions used exclusively.
#[derive(Clone)]
pub struct CancelToken {
    config: Config,
    process_id: i32,
    secret_key: i32,
}

/// The secret key is what authorizes a cancel, so it stays out of logs: anyone holding it
/// and the process id can cancel that backend's statements.
impl std::fmt::Debug for CancelToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CancelToken")
            .field("config", &self.config)
            .field("process_id", &self.process_id)
            .field("secret_key", &"<redacted>")
            .finish()
    }
}

impl CancelToken {
    pub(crate) fn new(config: Config, process_id: i32, secret_key: i32) -> CancelToken {
        CancelToken {
            config,
            process_id,
            secret_key,
        }
    }

    /// Sends the cancel request and waits until the server has read it.
    pub fn cancel(&self) -> Result<()> {
        let bound = self.config.get_connect_timeout().unwrap_or(CANCEL_TIMEOUT);
        let config = self.config.clone().connect_timeout(bound);
        let (mut socket, watchdog) = cancel_socket(&config, Instant::now() + bound)?;
        let mut buf = BytesMut::new();
        frontend::cancel_request(self.process_id, self.secret_key, &mut buf);
        socket
            .write_all(&buf)
            .map_err(|e| Error::connection("send cancel request", Some(e)))?;
        // The server closes the socket once it has acted; waiting for that keeps a cancel
        // from racing past the caller's next statement. The watchdog bounds the wait when a
        // peer never closes.
        let mut sink = [0u8; 16];
        while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
        drop(watchdog);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_secret_key_and_the_password() {
        let config: Config = "postgres://app:hunter2@db.example/app".parse().unwrap();
        let token = CancelToken::new(config, 4242, 987_654_321);
        let shown = format!("{token:?}");
        assert!(shown.contains("4242"), "{shown}");
        assert!(!shown.contains("987654321"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
