//! The start-up handshake: startup message, authentication, and the server's initial report.
//!
//! It runs on the connecting coroutine before the reader starts, so it reads the socket
//! directly; the connect timeout bounds the whole exchange.

use std::io::{Read, Write};
use std::time::Instant;

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{self, ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::config::Config;
use super::frame::next_message;
use super::socket::{Socket, Watchdog};
use crate::error::{DbError, Error, Result};

/// What the server told us during start-up.
pub(crate) struct Startup {
    pub(crate) process_id: i32,
    pub(crate) secret_key: i32,
    pub(crate) parameters: Vec<(String, String)>,
}

/// Opens a socket and runs the handshake to the first `ReadyForQuery`.
pub(crate) fn handshake(config: &Config) -> Result<(Socket, Startup)> {
    let started = Instant::now();
    let mut socket = Socket::connect(config)?;
    let target = config.display_target();
    // The connect timeout bounds the whole exchange, not each read: a server trickling
    // bytes must not stretch it.
    let watchdog = match config.get_connect_timeout() {
        Some(timeout) => Some(
            Watchdog::arm(&socket, started + timeout)
                .map_err(|e| Error::connection(format!("watch start-up with {target}"), Some(e)))?,
        ),
        None => None,
    };
    let mut stream = Handshake {
        socket: &mut socket,
        buf: BytesMut::with_capacity(4096),
        target: &target,
        watchdog: watchdog.as_ref(),
    };
    let outcome = stream.run(config);
    // The watch either stops here or has already shut the socket, whatever `run` saw.
    let in_time = watchdog.is_none_or(Watchdog::disarm);
    match outcome {
        Ok(startup) if in_time => Ok((socket, startup)),
        Ok(_) => Err(timed_out(&target, None)),
        Err(e) => Err(e),
    }
}

fn timed_out(target: &str, source: Option<std::io::Error>) -> Error {
    let source = source.unwrap_or_else(|| std::io::ErrorKind::TimedOut.into());
    Error::connection(format!("start-up with {target} timed out"), Some(source))
}

struct Handshake<'a> {
    socket: &'a mut Socket,
    buf: BytesMut,
    target: &'a str,
    watchdog: Option<&'a Watchdog>,
}

impl Handshake<'_> {
    fn run(&mut self, config: &Config) -> Result<Startup> {
        let mut params: Vec<(&str, &str)> = vec![
            ("user", config.get_user()),
            ("database", config.get_dbname()),
            ("client_encoding", "UTF8"),
        ];
        if let Some(app) = config.get_application_name() {
            params.push(("application_name", app));
        }
        if let Some(options) = config.get_options() {
            params.push(("options", options));
        }
        let mut out = BytesMut::new();
        frontend::startup_message(params.iter().copied(), &mut out)
            .map_err(|e| Error::config(format!("startup parameters: {e}")))?;
        self.send(&out)?;
        self.authenticate(config)?;

        let mut startup = Startup {
            process_id: 0,
            secret_key: 0,
            parameters: Vec::new(),
        };
        loop {
            match self.read()? {
                Message::BackendKeyData(body) => {
                    startup.process_id = body.process_id();
                    startup.secret_key = body.secret_key();
                }
                Message::ParameterStatus(body) => {
                    if let (Ok(k), Ok(v)) = (body.name(), body.value()) {
                        startup.parameters.push((k.to_owned(), v.to_owned()));
                    }
                }
                Message::ReadyForQuery(_) => return Ok(startup),
                Message::NoticeResponse(_) => {}
                _ => return Err(Error::protocol("unexpected message during start-up")),
            }
        }
    }

    fn authenticate(&mut self, config: &Config) -> Result<()> {
        let user = config.get_user();
        let target = self.target;
        let password = || {
            config.get_password().ok_or_else(|| {
                Error::config(format!(
                    "the server at {target} asks user {user:?} for a password and none was given"
                ))
            })
        };
        let mut out = BytesMut::new();
        match self.read()? {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?.as_bytes(), &mut out).map_err(encode)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(user.as_bytes(), password()?.as_bytes(), body.salt());
                frontend::password_message(hash.as_bytes(), &mut out).map_err(encode)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut has_scram = false;
                let mut mechanisms = body.mechanisms();
                while let Some(m) = fallible_iterator::FallibleIterator::next(&mut mechanisms)
                    .map_err(|e| Error::protocol(e.to_string()))?
                {
                    has_scram |= m == sasl::SCRAM_SHA_256;
                }
                if !has_scram {
                    return Err(Error::config(
                        "the server offers no SASL mechanism this client supports (SCRAM-SHA-256)",
                    ));
                }
                // Without TLS there is no channel to bind to.
                let mut scram =
                    ScramSha256::new(password()?.as_bytes(), ChannelBinding::unsupported());
                frontend::sasl_initial_response(sasl::SCRAM_SHA_256, scram.message(), &mut out)
                    .map_err(encode)?;
                self.send(&out)?;
                out.clear();
                let body = match self.read()? {
                    Message::AuthenticationSaslContinue(body) => body,
                    _ => return Err(Error::protocol("expected SASL continue")),
                };
                scram
                    .update(body.data())
                    .map_err(|e| Error::protocol(format!("SCRAM: {e}")))?;
                frontend::sasl_response(scram.message(), &mut out).map_err(encode)?;
                self.send(&out)?;
                let body = match self.read()? {
                    Message::AuthenticationSaslFinal(body) => body,
                    _ => return Err(Error::protocol("expected SASL final")),
                };
                scram.finish(body.data()).map_err(|e| {
                    Error::protocol(format!("SCRAM server signature did not verify: {e}"))
                })?;
                return match self.read()? {
                    Message::AuthenticationOk => Ok(()),
                    _ => Err(Error::protocol("expected AuthenticationOk after SCRAM")),
                };
            }
            Message::AuthenticationKerberosV5
            | Message::AuthenticationScmCredential
            | Message::AuthenticationGss
            | Message::AuthenticationSspi => {
                return Err(Error::config(format!(
                    "the server at {} asks for an authentication method this client does not support (GSS/SSPI/Kerberos)",
                    self.target
                )));
            }
            _ => return Err(Error::protocol("unexpected message during authentication")),
        }
        self.send(&out)?;
        match self.read()? {
            Message::AuthenticationOk => Ok(()),
            _ => Err(Error::protocol("expected AuthenticationOk")),
        }
    }

    fn send(&mut self, bytes: &[u8]) -> Result<()> {
        self.socket
            .write_all(bytes)
            .map_err(|e| self.io_failure("write to", e))
    }

    /// The next message; a server `ErrorResponse` becomes the matching error kind.
    fn read(&mut self) -> Result<Message> {
        let mut scratch = [0u8; 4096];
        loop {
            if let Some(m) = next_message(&mut self.buf)? {
                if let Message::ErrorResponse(body) = m {
                    let db = DbError::parse(body.fields())
                        .map_err(|e| Error::protocol(format!("malformed error response: {e}")))?;
                    return Err(Error::from_db(db));
                }
                return Ok(m);
            }
            match self.socket.read(&mut scratch) {
                Ok(0) if self.watchdog_fired() => return Err(timed_out(self.target, None)),
                Ok(0) => {
                    return Err(Error::connection(
                        format!("{} closed the connection during start-up", self.target),
                        None,
                    ))
                }
                Ok(n) => self.buf.extend_from_slice(&scratch[..n]),
                Err(e) => return Err(self.io_failure("read from", e)),
            }
        }
    }

    fn watchdog_fired(&self) -> bool {
        self.watchdog.is_some_and(Watchdog::fired)
    }

    /// A socket error, reported as a time-out when the watchdog caused it.
    fn io_failure(&self, doing: &str, e: std::io::Error) -> Error {
        if self.watchdog_fired() {
            timed_out(self.target, Some(e))
        } else {
            Error::connection(format!("{doing} {}", self.target), Some(e))
        }
    }
}

fn encode(e: std::io::Error) -> Error {
    Error::protocol(format!("encode start-up message: {e}"))
}
