//! An in-test TCP proxy on loopback for network faults: severed connections, half-open
//! (blackholed) connections and added latency, without Toxiproxy.
//!
//! The proxy listens on `127.0.0.1:<ephemeral>` and forwards every accepted connection to a
//! target port on 127.0.0.1. It runs on plain OS threads (two per forwarded connection and
//! one acceptor), so it never competes with the `may` coroutines under test for their
//! worker threads.
//!
//! ```no_run
//! use std::time::Duration;
//! use lifeguard_tests::proxy::TcpProxy;
//!
//! let proxy = TcpProxy::start(55432);
//! let url = proxy.url_for("postgres://postgres@127.0.0.1:55432/lifeguard");
//! // ... connect through `url` ...
//! proxy.blackhole(); // half-open: nothing flows, nothing closes
//! proxy.resume(); // what was held back flows again
//! proxy.sever(); // every live connection ends at once
//! proxy.delay(Duration::from_millis(20));
//! # let _ = url;
//! // Dropping the proxy closes the listener and every connection.
//! ```

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long a blocked pump waits before re-checking its connection's flags.
const RECHECK: Duration = Duration::from_millis(20);

/// A TCP proxy from a loopback port to `127.0.0.1:<target>`, with fault controls.
///
/// Faults apply to the forwarded byte streams:
/// * [`TcpProxy::sever`] ends every live connection on both sides at once (the client sees
///   the connection end mid-request, as after a reset);
/// * [`TcpProxy::blackhole`] stops forwarding while keeping both sockets open, so either side
///   waits forever for the other (a half-open connection or a partition). Bytes are held,
///   not dropped: TCP never loses bytes on a connection that stays open, and after
///   [`TcpProxy::resume`] they are delivered in order;
/// * [`TcpProxy::blackhole_existing`] does the same to the connections open now only, while
///   new connections forward normally (a NAT or firewall that lost the state of old flows);
/// * [`TcpProxy::delay`] adds latency to every forwarded chunk in both directions.
///
/// Dropping the proxy stops accepting and closes every connection.
pub struct TcpProxy {
    port: u16,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

struct Shared {
    target: SocketAddr,
    state: Mutex<State>,
    changed: Condvar,
    stopped: AtomicBool,
    accepted: AtomicU64,
    forwarded_up: AtomicU64,
    forwarded_down: AtomicU64,
}

#[derive(Default)]
struct State {
    blackhole: bool,
    delay: Duration,
    next_id: u64,
    pairs: Vec<Pair>,
}

/// One forwarded connection: the accepted client socket and the socket to the target.
struct Pair {
    id: u64,
    client: TcpStream,
    server: TcpStream,
    flags: Arc<PairFlags>,
}

#[derive(Default)]
struct PairFlags {
    severed: AtomicBool,
    stalled: AtomicBool,
}

impl Pair {
    fn close(&self) {
        self.flags.severed.store(true, Ordering::SeqCst);
        let _ = self.client.shutdown(Shutdown::Both);
        let _ = self.server.shutdown(Shutdown::Both);
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl TcpProxy {
    /// Starts a proxy on `127.0.0.1:0` forwarding to `127.0.0.1:target_port`.
    ///
    /// # Panics
    ///
    /// Panics when the listening socket cannot be bound or its thread cannot start.
    pub fn start(target_port: u16) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy on 127.0.0.1:0");
        let port = listener.local_addr().expect("proxy local_addr").port();
        listener
            .set_nonblocking(true)
            .expect("make the proxy listener non-blocking");
        let shared = Arc::new(Shared {
            target: SocketAddr::from(([127, 0, 0, 1], target_port)),
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            stopped: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            forwarded_up: AtomicU64::new(0),
            forwarded_down: AtomicU64::new(0),
        });
        let acceptor = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("tcp-proxy-{port}"))
                .spawn(move || accept_loop(&shared, &listener))
                .expect("spawn the proxy acceptor")
        };
        TcpProxy {
            port,
            shared,
            acceptor: Some(acceptor),
        }
    }

    /// The loopback port the proxy listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `db_url` (a `postgres://` URL) with its host and port replaced by the proxy's
    /// `127.0.0.1:<port>`; user, database and query parameters are kept.
    ///
    /// # Panics
    ///
    /// Panics when `db_url` is not a `scheme://...` URL.
    pub fn url_for(&self, db_url: &str) -> String {
        let (scheme, rest) = db_url
            .split_once("://")
            .unwrap_or_else(|| panic!("not a URL: {db_url}"));
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let userinfo = authority
            .rsplit_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        format!("{scheme}://{userinfo}127.0.0.1:{}{tail}", self.port)
    }

    /// Ends every live connection on both sides at once: the client and the server each see
    /// their connection close, whatever was in flight. Connections made afterwards are
    /// forwarded normally. Returns how many connections were severed.
    pub fn sever(&self) -> usize {
        let mut st = lock(&self.shared.state);
        let pairs = std::mem::take(&mut st.pairs);
        for pair in &pairs {
            pair.close();
        }
        drop(st);
        self.shared.changed.notify_all();
        pairs.len()
    }

    /// Stops forwarding on every connection, current and future, while keeping all sockets
    /// open (half-open): both sides wait, nothing is lost. Undo with [`TcpProxy::resume`].
    pub fn blackhole(&self) {
        lock(&self.shared.state).blackhole = true;
        self.shared.changed.notify_all();
    }

    /// Stops forwarding on the connections open now only; connections made afterwards are
    /// forwarded normally. The stalled ones stay open until [`TcpProxy::resume`],
    /// [`TcpProxy::sever`] or the client closes them.
    pub fn blackhole_existing(&self) {
        let st = lock(&self.shared.state);
        for pair in &st.pairs {
            pair.flags.stalled.store(true, Ordering::SeqCst);
        }
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Undoes [`TcpProxy::blackhole`] and [`TcpProxy::blackhole_existing`]: bytes held back
    /// are delivered, in order, and forwarding continues.
    pub fn resume(&self) {
        let mut st = lock(&self.shared.state);
        st.blackhole = false;
        for pair in &st.pairs {
            pair.flags.stalled.store(false, Ordering::SeqCst);
        }
        drop(st);
        self.shared.changed.notify_all();
    }

    /// Adds `latency` before every forwarded chunk, in both directions (zero removes it).
    pub fn delay(&self, latency: Duration) {
        lock(&self.shared.state).delay = latency;
    }

    /// Connections being forwarded now.
    pub fn connections(&self) -> usize {
        lock(&self.shared.state).pairs.len()
    }

    /// Connections accepted since the proxy started.
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from clients to the target since the proxy started.
    pub fn bytes_to_server(&self) -> u64 {
        self.shared.forwarded_up.load(Ordering::SeqCst)
    }

    /// Bytes forwarded from the target to clients since the proxy started.
    pub fn bytes_to_client(&self) -> u64 {
        self.shared.forwarded_down.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.shared.stopped.store(true, Ordering::SeqCst);
        self.sever();
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener) {
    while !shared.stopped.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                if let Err(e) = forward(shared, client) {
                    eprintln!("tcp proxy: cannot forward to {}: {e}", shared.target);
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Connects to the target and starts the two pumps of a new pair. When the target cannot be
/// reached the client's socket is closed (it sees the connection refused or reset).
fn forward(shared: &Arc<Shared>, client: TcpStream) -> std::io::Result<()> {
    client.set_nonblocking(false)?;
    client.set_nodelay(true)?;
    let server = TcpStream::connect_timeout(&shared.target, Duration::from_secs(2))?;
    server.set_nodelay(true)?;
    let flags = Arc::new(PairFlags::default());
    let id = {
        let mut st = lock(&shared.state);
        let id = st.next_id;
        st.next_id += 1;
        st.pairs.push(Pair {
            id,
            client: client.try_clone()?,
            server: server.try_clone()?,
            flags: flags.clone(),
        });
        id
    };
    let up = (
        client.try_clone()?,
        server.try_clone()?,
        shared.clone(),
        flags.clone(),
    );
    std::thread::Builder::new()
        .name(format!("tcp-proxy-up-{id}"))
        .spawn(move || pump(&up.2, id, &up.3, up.0, up.1, true))?;
    let down = shared.clone();
    std::thread::Builder::new()
        .name(format!("tcp-proxy-down-{id}"))
        .spawn(move || pump(&down, id, &flags, server, client, false))?;
    Ok(())
}

/// Copies `from` into `to` until either ends or the pair is severed, holding each chunk
/// while the proxy or the pair is blackholed. Closes both sockets when done, so the end of
/// one side reaches the other.
fn pump(
    shared: &Shared,
    id: u64,
    flags: &PairFlags,
    mut from: TcpStream,
    mut to: TcpStream,
    upstream: bool,
) {
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let Some(delay) = wait_until_forwarding(shared, flags) else {
            break;
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        if flags.severed.load(Ordering::SeqCst) || to.write_all(&buf[..n]).is_err() {
            break;
        }
        let counter = if upstream {
            &shared.forwarded_up
        } else {
            &shared.forwarded_down
        };
        counter.fetch_add(n as u64, Ordering::SeqCst);
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
    let mut st = lock(&shared.state);
    if let Some(i) = st.pairs.iter().position(|p| p.id == id) {
        st.pairs.swap_remove(i).close();
    }
}

/// Waits while forwarding is stopped; `None` when the pair was severed or the proxy stopped,
/// else the delay to apply.
fn wait_until_forwarding(shared: &Shared, flags: &PairFlags) -> Option<Duration> {
    let mut st = lock(&shared.state);
    loop {
        if flags.severed.load(Ordering::SeqCst) || shared.stopped.load(Ordering::SeqCst) {
            return None;
        }
        if !st.blackhole && !flags.stalled.load(Ordering::SeqCst) {
            return Some(st.delay);
        }
        st = shared
            .changed
            .wait_timeout(st, RECHECK)
            .unwrap_or_else(PoisonError::into_inner)
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn echo_server() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for mut s in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 || s.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        port
    }

    fn roundtrip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
        s.write_all(msg)?;
        let mut got = vec![0u8; msg.len()];
        s.read_exact(&mut got)?;
        Ok(got)
    }

    #[test]
    fn forwards_blackholes_resumes_and_severs() {
        let proxy = TcpProxy::start(echo_server());
        let mut s = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        assert_eq!(roundtrip(&mut s, b"hello").unwrap(), b"hello");
        assert_eq!(proxy.connections(), 1);

        proxy.blackhole();
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s.write_all(b"held").unwrap();
        let mut buf = [0u8; 4];
        assert!(s.read_exact(&mut buf).is_err(), "blackhole forwarded data");
        proxy.resume();
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"held");

        assert_eq!(proxy.sever(), 1);
        let mut rest = Vec::new();
        let ended = s.read_to_end(&mut rest);
        assert!(ended.is_err() || rest.is_empty(), "{ended:?} {rest:?}");
        let mut s2 = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        assert_eq!(roundtrip(&mut s2, b"again").unwrap(), b"again");

        proxy.blackhole_existing();
        let mut s3 = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        assert_eq!(roundtrip(&mut s3, b"new").unwrap(), b"new");
        s2.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        assert!(roundtrip(&mut s2, b"old").is_err());
    }

    #[test]
    fn rewrites_urls() {
        let proxy = TcpProxy::start(1);
        let p = proxy.port();
        assert_eq!(
            proxy.url_for("postgres://postgres@127.0.0.1:5432/db?sslmode=disable"),
            format!("postgres://postgres@127.0.0.1:{p}/db?sslmode=disable")
        );
        assert_eq!(
            proxy.url_for("postgresql://u:pw@localhost/db"),
            format!("postgresql://u:pw@127.0.0.1:{p}/db")
        );
        assert_eq!(
            proxy.url_for("postgres://h:1"),
            format!("postgres://127.0.0.1:{p}")
        );
    }
}
