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

use super::config::{
    mode_name, AuthMethod, ChannelBinding as Binding, Config, Host, Prepare, SslMode,
    SslNegotiation,
};
use super::frame::next_frame;
use super::socket::{Socket, Watchdog};
use super::tls;
use crate::error::{DbError, Error, Result};

/// What the server told us during start-up.
pub(crate) struct Startup {
    pub(crate) process_id: i32,
    pub(crate) secret_key: i32,
    pub(crate) parameters: Vec<(String, String)>,
}

/// Opens a socket and runs the handshake to the first `ReadyForQuery`, with TLS as
/// `sslmode` asks: `prefer` tries TLS first and `allow` plaintext first, each trying the
/// other way on a new connection when the server turns the first down (as libpq does, so a
/// wrong password is tried twice there).
pub(crate) fn handshake(config: &Config) -> Result<(Socket, Startup)> {
    if config.get_prepare() == Prepare::Unnamed && config.get_options().is_some() {
        return Err(Error::config(
            "the options start-up parameter is not sent with prepare=unnamed (PgBouncer in \
             transaction mode refuses it): set these defaults with ALTER ROLE ... SET instead",
        ));
    }
    let (first, fallback) = Encryption::plan(config);
    match (attempt(config, first), fallback) {
        (Err(e), Some(fallback)) if turned_down(&e) => {
            attempt(config, fallback).map_err(|second| {
                // An authentication rule that only matches the other way says less than
                // why the first way failed.
                if second.sqlstate() == Some(INVALID_AUTHORIZATION) {
                    e
                } else {
                    second
                }
            })
        }
        (outcome, _) => outcome,
    }
}

/// Opens a socket for a `CancelRequest`, encrypted as the first attempt of a connection
/// with `config` would be, so a cancel crosses the network as protected as the session.
/// The watchdog, armed before TLS starts, shuts the socket at `deadline`.
pub(crate) fn cancel_socket(config: &Config, deadline: Instant) -> Result<(Socket, Watchdog)> {
    let (first, _) = Encryption::plan(config);
    let socket = Socket::connect(config)?;
    let watchdog = Watchdog::arm(&socket, deadline)
        .map_err(|e| Error::connection("watch the cancel socket", Some(e)))?;
    let socket = negotiate(socket, config, first, &config.display_target())?;
    Ok((socket, watchdog))
}

/// SQLSTATE 28000: what a `pg_hba.conf` rejection (`hostssl`/`hostnossl`) gives.
const INVALID_AUTHORIZATION: &str = "28000";

/// Whether a failed attempt may go better the other way: the server refused it, or TLS
/// could not be set up. Not when the server was unreachable or a setting forbade it.
fn turned_down(e: &Error) -> bool {
    matches!(e, Error::Tls(_)) || e.db_error().is_some()
}

/// Whether one attempt asks for TLS.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Encryption {
    Plain,
    /// TLS; `optional` carries on in plaintext when the server answers that it has none.
    Tls {
        optional: bool,
    },
}

impl Encryption {
    /// The first attempt and the one to make if the server turns it down.
    fn plan(config: &Config) -> (Encryption, Option<Encryption>) {
        // libpq never uses TLS over a Unix-domain socket, whatever the mode.
        if matches!(config.get_host(), Host::Unix(_)) {
            return (Encryption::Plain, None);
        }
        match config.get_ssl_mode() {
            SslMode::Disable => (Encryption::Plain, None),
            SslMode::Allow => (Encryption::Plain, Some(Encryption::Tls { optional: false })),
            SslMode::Prefer => (Encryption::Tls { optional: true }, Some(Encryption::Plain)),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                (Encryption::Tls { optional: false }, None)
            }
        }
    }
}

/// One connection attempt: socket, TLS if asked for, start-up and authentication.
fn attempt(config: &Config, encryption: Encryption) -> Result<(Socket, Startup)> {
    let started = Instant::now();
    let socket = Socket::connect(config)?;
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
    let outcome = negotiate(socket, config, encryption, &target).and_then(|mut socket| {
        let mut stream = Handshake {
            socket: &mut socket,
            buf: BytesMut::with_capacity(4096),
            target: &target,
            watchdog: watchdog.as_ref(),
            max_message: config.limits().max_message_size,
        };
        stream.run(config).map(|startup| (socket, startup))
    });
    // The watch either stops here or has already shut the socket, whatever `run` saw;
    // a failure after it fired is the time-out's doing.
    let in_time = watchdog.is_none_or(Watchdog::disarm);
    match outcome {
        Ok(done) if in_time => Ok(done),
        Ok(_) | Err(_) if !in_time => Err(timed_out(&target, None)),
        outcome => outcome,
    }
}

/// Asks for TLS (an `SSLRequest`, or none with `sslnegotiation=direct`) and runs its
/// handshake, as `encryption` says; returns the socket to run the start-up on.
fn negotiate(
    socket: Socket,
    config: &Config,
    encryption: Encryption,
    target: &str,
) -> Result<Socket> {
    let (Encryption::Tls { optional }, Host::Tcp(host)) = (encryption, config.get_host()) else {
        return Ok(socket);
    };
    let Socket::Tcp(mut tcp) = socket else {
        return Ok(socket);
    };
    if config.get_ssl_negotiation() == SslNegotiation::Postgres {
        let mut request = BytesMut::new();
        frontend::ssl_request(&mut request);
        let io = |e| Error::connection(format!("ask {target} for TLS"), Some(e));
        tcp.write_all(&request).map_err(io)?;
        // Exactly one byte: anything the server sent after it belongs to the TLS handshake,
        // and bytes a man in the middle slipped in must not pass as encrypted ones.
        let mut answer = [0u8; 1];
        tcp.read_exact(&mut answer).map_err(io)?;
        match answer[0] {
            b'S' => {}
            b'N' if optional => return Ok(Socket::Tcp(tcp)),
            b'N' => {
                return Err(Error::tls(format!(
                    "{target} does not accept TLS connections, and sslmode={} requires TLS",
                    mode_name(config.get_ssl_mode())
                )))
            }
            other => {
                return Err(Error::protocol(format!(
                    "{target} answered the TLS request with {other:#04x}, not S or N"
                )))
            }
        }
    }
    tls::start(tcp, config, host, target).map(Socket::Tls)
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
    /// The connection's `max_message_size`, which holds from the first message on.
    max_message: usize,
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
        let request = self.read()?;
        self.allowed(config, asked_method(&request)?)?;
        let mut out = BytesMut::new();
        match request {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                frontend::password_message(password()?.as_bytes(), &mut out).map_err(encode)?;
            }
            Message::AuthenticationMd5Password(body) => {
                let hash = md5_hash(user.as_bytes(), password()?.as_bytes(), body.salt());
                frontend::password_message(hash.as_bytes(), &mut out).map_err(encode)?;
            }
            Message::AuthenticationSasl(body) => {
                let mut offered = Vec::new();
                let mut mechanisms = body.mechanisms();
                while let Some(m) = fallible_iterator::FallibleIterator::next(&mut mechanisms)
                    .map_err(|e| Error::protocol(e.to_string()))?
                {
                    offered.push(m.to_owned());
                }
                return self.scram(config, &offered, password()?);
            }
            _ => return Err(Error::protocol("unexpected message during authentication")),
        }
        self.send(&out)?;
        match self.read()? {
            Message::AuthenticationOk => Ok(()),
            _ => Err(Error::protocol("expected AuthenticationOk")),
        }
    }

    /// Refuses a method `require_auth` or `channel_binding=require` does not allow, before
    /// anything of the password leaves the process.
    fn allowed(&self, config: &Config, method: AuthMethod) -> Result<()> {
        let target = self.target;
        if let Some(allowed) = config.get_require_auth() {
            if !allowed.allows(method) {
                return Err(Error::config(format!(
                    "the server at {target} asks for {} authentication, which require_auth \
                     does not allow (allowed: {})",
                    method.name(),
                    allowed.describe()
                )));
            }
        }
        if config.get_channel_binding() == Binding::Require && method != AuthMethod::ScramSha256 {
            return Err(Error::config(format!(
                "channel_binding=require, but the server at {target} asks for {} \
                 authentication, which has no channel binding",
                method.name()
            )));
        }
        if matches!(method, AuthMethod::Gss | AuthMethod::Sspi) {
            return Err(Error::config(format!(
                "the server at {target} asks for an authentication method this client does \
                 not support ({})",
                method.name()
            )));
        }
        Ok(())
    }

    /// SCRAM-SHA-256, bound to the TLS channel (`-PLUS`) when both sides can and
    /// `channel_binding` does not forbid it.
    fn scram(&mut self, config: &Config, offered: &[String], password: &str) -> Result<()> {
        let target = self.target;
        let offers = |m: &str| offered.iter().any(|o| o == m);
        // `Some(None)`: TLS without a server certificate to bind to.
        let end_point = match &*self.socket {
            Socket::Tls(tls) => Some(tls.end_point().map(<[u8]>::to_vec)),
            _ => None,
        };
        let (mechanism, binding) = match (config.get_channel_binding(), end_point) {
            (Binding::Disable, _) => (sasl::SCRAM_SHA_256, ChannelBinding::unsupported()),
            (_, Some(Some(hash))) if offers(sasl::SCRAM_SHA_256_PLUS) => (
                sasl::SCRAM_SHA_256_PLUS,
                ChannelBinding::tls_server_end_point(hash),
            ),
            (Binding::Require, end_point) => {
                let why = match end_point {
                    None => "the connection is not TLS",
                    Some(None) => "the server sent no certificate",
                    Some(Some(_)) => "the server does not offer SCRAM-SHA-256-PLUS",
                };
                return Err(Error::config(format!(
                    "channel_binding=require, but {why} ({target})"
                )));
            }
            // We could bind but the server cannot: say so, so a server that does offer
            // binding sees a downgrade attempt.
            (Binding::Prefer, Some(_)) => (sasl::SCRAM_SHA_256, ChannelBinding::unrequested()),
            (Binding::Prefer, None) => (sasl::SCRAM_SHA_256, ChannelBinding::unsupported()),
        };
        if !offers(mechanism) {
            return Err(Error::config(format!(
                "the server at {target} offers no SASL mechanism this client supports \
                 (SCRAM-SHA-256): it offers {}",
                offered.join(", ")
            )));
        }
        let mut scram = ScramSha256::new(password.as_bytes(), binding);
        let mut out = BytesMut::new();
        frontend::sasl_initial_response(mechanism, scram.message(), &mut out).map_err(encode)?;
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
        scram
            .finish(body.data())
            .map_err(|e| Error::protocol(format!("SCRAM server signature did not verify: {e}")))?;
        match self.read()? {
            Message::AuthenticationOk => Ok(()),
            _ => Err(Error::protocol("expected AuthenticationOk after SCRAM")),
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
            if let Some((m, _)) = next_frame(&mut self.buf, self.max_message)? {
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

/// The method an authentication request asks for, as `require_auth` names it.
fn asked_method(request: &Message) -> Result<AuthMethod> {
    Ok(match request {
        Message::AuthenticationOk => AuthMethod::None,
        Message::AuthenticationCleartextPassword => AuthMethod::Password,
        Message::AuthenticationMd5Password(_) => AuthMethod::Md5,
        Message::AuthenticationSasl(_) => AuthMethod::ScramSha256,
        Message::AuthenticationGss | Message::AuthenticationKerberosV5 => AuthMethod::Gss,
        Message::AuthenticationSspi => AuthMethod::Sspi,
        Message::AuthenticationScmCredential => return Err(Error::config(
            "the server asks for SCM credential authentication, which this client does not support",
        )),
        _ => return Err(Error::protocol("unexpected message during authentication")),
    })
}

fn encode(e: std::io::Error) -> Error {
    Error::protocol(format!("encode start-up message: {e}"))
}
