//! Why a Redis call failed.

use std::fmt;

use super::Cause;

/// What kind of Redis failure [`RedisError`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedisErrorKind {
    /// The connection could not be opened or was lost; the command may or may not have run.
    Connection,
    /// No reply came within the call's deadline.
    Timeout,
    /// Redis answered with an error reply ([`RedisError::code`] holds its first word:
    /// `ERR`, `NOSCRIPT`, `MOVED`, `WRONGTYPE`, ...).
    Server,
    /// A reply could not be parsed, or did not have the shape the caller expected.
    Protocol,
    /// The server is skipped for now after failed connects (the circuit is open).
    Unavailable,
}

/// A Redis failure: its kind, the server's error code when Redis sent one, and a message
/// naming the server and the command. Never carries a password or a value.
#[derive(Debug, Clone)]
pub struct RedisError {
    /// What went wrong.
    pub kind: RedisErrorKind,
    /// The server's error code (the first word of its error reply), for [`RedisErrorKind::Server`].
    pub code: Option<String>,
    /// What was attempted and what happened.
    pub message: String,
    /// The error underneath (an I/O error), when there was one.
    pub source: Option<Cause>,
}

impl RedisError {
    /// A failure of `kind` described by `message`.
    pub fn new(kind: RedisErrorKind, message: impl Into<String>) -> RedisError {
        RedisError {
            kind,
            code: None,
            message: message.into(),
            source: None,
        }
    }
}

impl fmt::Display for RedisError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        match &self.source {
            Some(source) => write!(f, ": {source}"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for RedisError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|e| e as _)
    }
}
