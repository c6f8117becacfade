//! The byte stream under a connection: a `may` TCP or Unix socket, never a blocking `std` one.
//!
//! Three `may` behaviours shape this module:
//! - `may`'s Unix stream closes its descriptor *before* taking it out of the poller. With a
//!   duplicate of the socket still open (a connection's writer and reader handles are
//!   duplicates) the stale registration keeps reporting events against freed bookkeeping,
//!   and without one the late deregistration can remove another socket that was just handed
//!   the same descriptor number. [`UnixSocket`] drops in the safe order.
//! - `may` polls descriptor `fd` on worker `fd % workers` and registers every duplicate on
//!   its own, so an arriving reply wakes each worker that polls one of the socket's
//!   handles. [`Socket::split`] puts the writer's and the reader's handles on one worker,
//!   the handle that only shuts down is a plain duplicate the poller never sees
//!   ([`Closer`]), and [`Socket::echo`] adds a registration on another worker for when
//!   waking it is wanted (see the pipeline's `Echo`).
//! - `may`'s per-socket I/O timeouts arm their timer from the worker thread while the poller
//!   thread may be firing it, which can leave a dangling timer behind. Nothing here uses
//!   them: connects are bounded by waiting on a channel, and other deadlines by a
//!   [`Watchdog`] that shuts the socket down.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream as StdTcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, RawFd};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::Arc;
use std::time::{Duration, Instant};

use may::io::CoIo;
use may::net::TcpStream;
use may::sync::mpsc;

use super::config::{Config, Host};
use super::tls::TlsSocket;
use crate::error::{Error, Result};

/// A connected socket; reads and writes park the calling coroutine, not its thread.
#[derive(Debug)]
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixSocket),
    Tls(TlsSocket),
}

impl Socket {
    /// Opens a socket to the configured server, bounded by the connect timeout.
    pub(crate) fn connect(config: &Config) -> Result<Socket> {
        let target = config.display_target();
        let timeout = config.get_connect_timeout();
        match config.get_host() {
            Host::Unix(_) => {
                let path = config
                    .socket_path()
                    .ok_or_else(|| Error::config("a Unix-socket host needs a socket directory"))?;
                Socket::connect_unix(&path, &target)
            }
            Host::Tcp(host) => {
                let tcp = TcpSettings::of(config);
                Socket::connect_tcp_with(host, config.get_port(), &tcp, timeout, &target)
            }
        }
    }

    /// Opens a TCP socket to `host:port` (trying each address the name resolves to), each
    /// attempt bounded by `timeout`, with Lifeguard's default keepalive and user timeout;
    /// `target` names the server in errors. (The Redis client's sockets, which have no
    /// PostgreSQL configuration.)
    #[cfg(feature = "cache")]
    pub(crate) fn connect_tcp(
        host: &str,
        port: u16,
        timeout: Option<Duration>,
        target: &str,
    ) -> Result<Socket> {
        Socket::connect_tcp_with(host, port, &TcpSettings::defaults(), timeout, target)
    }

    /// As [`Socket::connect_tcp`], with the keepalive and user timeout of `tcp`.
    pub(crate) fn connect_tcp_with(
        host: &str,
        port: u16,
        tcp: &TcpSettings,
        timeout: Option<Duration>,
        target: &str,
    ) -> Result<Socket> {
        // The look-up runs on a resolver thread (never this worker), within the timeout.
        let addrs = resolve::resolve(host, port, timeout, target)?;
        let mut last = None;
        for addr in addrs {
            match connect_tcp(addr, timeout) {
                Ok(stream) => {
                    // Small pipelined requests must not wait for Nagle's timer; keepalive
                    // and the user timeout let the kernel notice a peer that vanished.
                    stream
                        .set_nodelay(true)
                        .and_then(|()| tcp.apply(&stream))
                        .map_err(|e| {
                            Error::connection(format!("configure socket to {target}"), Some(e))
                        })?;
                    return Ok(Socket::Tcp(stream));
                }
                Err(e) => last = Some(e),
            }
        }
        let context = match &last {
            Some(e) if e.kind() == io::ErrorKind::TimedOut => format!(
                "connect to {target} timed out after {:?}",
                timeout.unwrap_or_default()
            ),
            _ => format!("connect to {target}"),
        };
        Err(Error::connection(context, last))
    }

    /// Opens a Unix-domain socket at `path`; `target` names the server in errors.
    pub(crate) fn connect_unix(path: &Path, target: &str) -> Result<Socket> {
        UnixSocket::connect(path)
            .map(Socket::Unix)
            .map_err(|e| Error::connection(format!("connect to {target}"), Some(e)))
    }

    /// A second handle on the same socket, so one coroutine reads while others write.
    fn try_clone(&self) -> io::Result<Socket> {
        match self {
            Socket::Tcp(s) => s.try_clone().map(Socket::Tcp),
            Socket::Unix(s) => s.try_clone().map(Socket::Unix),
            Socket::Tls(s) => s.try_clone().map(Socket::Tls),
        }
    }

    /// The writer's and the reader's handles on this socket, both polled by the next `may`
    /// worker in turn, so an arriving reply wakes one thread.
    pub(crate) fn split(self) -> io::Result<(Socket, Socket)> {
        static TURN: AtomicUsize = AtomicUsize::new(0);
        let workers = workers();
        let worker = TURN.fetch_add(1, Ordering::Relaxed) % workers;
        let writer = self.clone_polled_by(|w| w == worker)?;
        let reader = self.clone_polled_by(|w| w == worker)?;
        Ok((writer, reader))
    }

    /// A handle polled by another `may` worker than this one, whose only effect is that a
    /// reply arriving wakes that worker too; `None` with a single worker.
    pub(crate) fn echo(&self) -> io::Result<Option<Socket>> {
        if workers() < 2 {
            return Ok(None);
        }
        let own = self.worker();
        self.clone_polled_by(|w| w != own).map(Some)
    }

    /// A clone whose descriptor number puts it on a worker `wanted` accepts. Clones that
    /// fall elsewhere stay open until the end, so each try takes a new number; past a few
    /// misses (other threads taking numbers too) the last clone is taken as it is.
    fn clone_polled_by(&self, wanted: impl Fn(usize) -> bool) -> io::Result<Socket> {
        let mut misses = Vec::new();
        loop {
            let clone = self.try_clone()?;
            if wanted(clone.worker()) || misses.len() >= 2 * workers() {
                return Ok(clone);
            }
            misses.push(clone);
        }
    }

    /// The worker that polls this handle: `may` registers descriptor `fd` with worker
    /// `fd % workers`. Were that to change, handles would only be spread differently.
    fn worker(&self) -> usize {
        let fd = match self {
            Socket::Tcp(s) => s.as_raw_fd(),
            Socket::Unix(s) => s.owner.as_raw_fd(),
            Socket::Tls(s) => s.tcp().as_raw_fd(),
        };
        usize::try_from(fd).unwrap_or(0) % workers()
    }

    /// A handle that can only shut this socket down, from any thread or coroutine.
    pub(crate) fn closer(&self) -> io::Result<Closer> {
        // Duplicates made outside `may` stay out of its poller.
        let tcp = match self {
            Socket::Tcp(s) => s,
            Socket::Tls(s) => s.tcp(),
            Socket::Unix(s) => return Ok(Closer::Unix(s.owner.try_clone()?)),
        };
        // SAFETY: `tcp` keeps the descriptor open for as long as this borrow lives.
        let fd = unsafe { BorrowedFd::borrow_raw(tcp.as_raw_fd()) };
        Ok(Closer::Tcp(StdTcpStream::from(fd.try_clone_to_owned()?)))
    }
}

/// A duplicate of a connection's socket kept only to shut it down; the poller never sees it.
#[derive(Debug)]
pub(crate) enum Closer {
    Tcp(StdTcpStream),
    Unix(StdUnixStream),
}

impl Closer {
    /// Closes both directions, which also wakes a coroutine parked in a read.
    pub(crate) fn shutdown(&self) {
        // The peer may already be gone; there is nothing useful to do with that error.
        let _ = match self {
            Closer::Tcp(s) => s.shutdown(Shutdown::Both),
            Closer::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.io.read(buf),
            Socket::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.io.write(buf),
            Socket::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Socket::Tcp(s) => s.flush(),
            Socket::Unix(s) => s.io.flush(),
            Socket::Tls(s) => s.flush(),
        }
    }
}

/// How many `may` workers poll sockets.
fn workers() -> usize {
    may::config().get_workers().max(1)
}

/// Connects to one address. With a timeout the connect runs on its own coroutine and the
/// caller stops waiting when the time is up (the abandoned attempt ends when the kernel
/// gives up on it, and its socket is then closed). A caller on a plain thread always
/// connects through such a coroutine: `may`'s connect from a thread hands its wake-up to a
/// worker, and under load that hand-off was seen to panic the worker ("no data to deref
/// for OptionCell") and to leave the thread waiting.
fn connect_tcp(addr: SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
    if timeout.is_none() && may::coroutine::is_coroutine() {
        return TcpStream::connect(addr);
    }
    let (done, outcome) = mpsc::channel();
    crate::rt::spawn("lifeguard-connect", 0x1000, move || {
        // The caller may have stopped waiting; the stream then just closes.
        let _ = done.send(TcpStream::connect(addr));
    })?;
    let lost = || io::Error::other("the connecting coroutine ended without a result");
    match timeout {
        None => outcome.recv().map_err(|_| lost())?,
        Some(timeout) => match outcome.recv_timeout(timeout) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(io::ErrorKind::TimedOut.into()),
            Err(RecvTimeoutError::Disconnected) => Err(lost()),
        },
    }
}

mod resolve;
mod tcp;

use tcp::TcpSettings;

/// A Unix-domain stream whose poller registration is removed before its descriptor closes.
#[derive(Debug)]
pub(crate) struct UnixSocket {
    // Fields drop in order: `io` deregisters from the poller while `owner` still holds the
    // descriptor open; `owner` closes it last.
    io: CoIo<SharedUnix>,
    owner: Arc<StdUnixStream>,
}

/// The descriptor as `CoIo` sees it: reads and writes go through it, closing does not.
#[derive(Debug)]
struct SharedUnix(Arc<StdUnixStream>);

impl UnixSocket {
    fn connect(path: &Path) -> io::Result<UnixSocket> {
        // `may`'s connect parks the coroutine while the connection completes; taking the raw
        // descriptor back out deregisters it before anything else can close it.
        let fd: RawFd = may::os::unix::net::UnixStream::connect(path)?.into_raw_fd();
        // SAFETY: `into_raw_fd` just gave up the only handle to this open descriptor, so the
        // new `StdUnixStream` is its sole owner.
        let owner = unsafe { StdUnixStream::from_raw_fd(fd) };
        UnixSocket::register(owner)
    }

    fn register(owner: StdUnixStream) -> io::Result<UnixSocket> {
        let owner = Arc::new(owner);
        let io = CoIo::new(SharedUnix(owner.clone()))?;
        Ok(UnixSocket { io, owner })
    }

    fn try_clone(&self) -> io::Result<UnixSocket> {
        UnixSocket::register(self.owner.try_clone()?)
    }
}

impl AsRawFd for SharedUnix {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

impl Read for SharedUnix {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self.0).read(buf)
    }
}

impl Write for SharedUnix {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        (&*self.0).flush()
    }
}

const ARMED: u8 = 0;
const FIRED: u8 = 1;
const DISARMED: u8 = 2;

/// Shuts a socket down when a deadline passes, so whatever is parked on it returns.
///
/// The watch runs on a small coroutine parked on a channel; disarming (or dropping) the
/// watchdog wakes it and it ends. Exactly one of "fired" and "disarmed" wins, so a socket
/// the caller kept after [`Watchdog::disarm`] returned `true` is never shut down late.
pub(crate) struct Watchdog {
    state: Arc<AtomicU8>,
    // Dropping the sender is what wakes the watch early.
    _stop: mpsc::Sender<()>,
}

impl Watchdog {
    /// Starts watching `socket` until `deadline`.
    pub(crate) fn arm(socket: &Socket, deadline: Instant) -> io::Result<Watchdog> {
        let closer = socket.closer()?;
        let state = Arc::new(AtomicU8::new(ARMED));
        let (stop, stopped) = mpsc::channel::<()>();
        let watch = state.clone();
        crate::rt::spawn("lifeguard-pg-watchdog", 0x1000, move || {
            let left = deadline.saturating_duration_since(Instant::now());
            let timed_out = matches!(stopped.recv_timeout(left), Err(RecvTimeoutError::Timeout));
            if timed_out
                && watch
                    .compare_exchange(ARMED, FIRED, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                closer.shutdown();
            }
        })?;
        Ok(Watchdog { state, _stop: stop })
    }

    /// Whether the deadline passed and the socket was shut down.
    pub(crate) fn fired(&self) -> bool {
        self.state.load(Ordering::Acquire) == FIRED
    }

    /// Stops the watch; `false` when it had already fired (the socket is shut down).
    pub(crate) fn disarm(self) -> bool {
        self.state
            .compare_exchange(ARMED, DISARMED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_a_connection_on_one_worker_and_the_echo_on_another() {
        let workers = workers();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let mut kept = Vec::new();
        let mut used = std::collections::BTreeSet::new();
        for _ in 0..2 * workers {
            let socket = Socket::Tcp(TcpStream::connect(addr).expect("connect"));
            let (writer, reader) = socket.split().expect("split");
            assert_eq!(writer.worker(), reader.worker());
            match writer.echo().expect("echo") {
                Some(echo) => assert_ne!(echo.worker(), writer.worker()),
                None => assert_eq!(workers, 1),
            }
            used.insert(writer.worker());
            kept.push((writer, reader));
        }
        assert_eq!(used.len(), workers, "connections spread over every worker");
    }

    #[test]
    fn the_closer_wakes_a_parked_reader() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let addr = listener.local_addr().expect("its address");
        let (_writer, mut reader) = Socket::Tcp(TcpStream::connect(addr).expect("connect"))
            .split()
            .expect("split");
        let closer = reader.closer().expect("closer");
        let parked = may::go!(move || reader.read(&mut [0u8; 16]));
        std::thread::sleep(Duration::from_millis(50));
        closer.shutdown();
        let read = parked.join().expect("the reader returns");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
}
