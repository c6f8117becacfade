//! Issue 16 point 5: no wait without a bound. A connection through a proxy that stops
//! forwarding but keeps both sockets open (so neither keepalive nor `TCP_USER_TIMEOUT` can
//! fire: the proxy acknowledges everything) must release a caller without a deadline, a
//! `BEGIN` and a `COMMIT` within the liveness bound, while a statement that is merely long
//! and silent is left to finish. Also: names resolve off the worker threads, and every
//! socket carries the configured keepalive and user timeout.
//!
//! The bound here: probe after 500 ms of silence (checked every 125 ms), a check bounded by
//! the 2 s connect timeout, plus 1 s of settling when the server says the reply went out.
//! Every test allows 6 s, well under the 15 s + 4 s + 10 s the defaults would take.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeguard_core::pg::Connection;
use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{in_coroutine_within, init, scratch_table};
use lifeguard_tests::pool::cfg;
use lifeguard_tests::proxy::TcpProxy;
use lifeguard_tests::{pg_port, primary_url};

const PROBE: Duration = Duration::from_millis(500);
const BOUND: Duration = Duration::from_secs(6);

/// The primary's URL through `proxy`, with a 2 s connect timeout (libpq's least).
fn proxied_url(proxy: &TcpProxy) -> String {
    with_params(&proxy.url_for(&primary_url()), "connect_timeout=2")
}

fn with_params(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

/// A raw connection through a new proxy, probing after [`PROBE`].
fn proxied_connection() -> (Arc<TcpProxy>, Connection) {
    init();
    let proxy = Arc::new(TcpProxy::start(pg_port()));
    let conn = Connection::open(&proxied_url(&proxy)).expect("connect through the proxy");
    conn.set_liveness_probe(Some(PROBE));
    conn.query("SELECT 1", &[]).expect("the proxy forwards");
    (proxy, conn)
}

fn proxied_pool(name: &str) -> (Arc<TcpProxy>, Pool) {
    init();
    let proxy = Arc::new(TcpProxy::start(pg_port()));
    let config = PoolConfig::new(cfg(&proxied_url(&proxy)))
        .name(name)
        .max_size(1)
        .liveness_probe(Some(PROBE))
        // A validation ping (with its own deadline) must not be what ends the call.
        .validate_after_idle(Duration::from_secs(600));
    let pool = Pool::connect(config).expect("pool");
    pool.query("SELECT 1", &[]).expect("the proxy forwards");
    (proxy, pool)
}

/// Runs `f` in a coroutine, returning its result and how long it took; panics when it
/// takes more than twice [`BOUND`] (it hangs).
fn timed<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (T, Duration) {
    in_coroutine_within(BOUND * 2, move || {
        let started = Instant::now();
        let value = f();
        (value, started.elapsed())
    })
}

fn assert_presumed_dead(e: &Error, took: Duration) {
    assert!(took < BOUND, "took {took:?}: {e}");
    assert!(e.to_string().contains("presumed dead (half-open)"), "{e:?}");
}

#[test]
fn a_query_without_deadline_ends_when_the_network_goes_silent() {
    let (proxy, conn) = proxied_connection();
    proxy.blackhole();
    let (result, took) = timed(move || conn.query("SELECT 1", &[]).map(drop));
    let e = result.expect_err("no reply can come");
    println!("blackholed query: {e} after {took:?}");
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert_presumed_dead(&e, took);
    assert!(e.to_string().contains("check connection"), "{e}");
}

#[test]
fn a_query_on_a_lost_flow_ends_once_the_server_says_its_reply_went_out() {
    let (proxy, conn) = proxied_connection();
    // Only this connection's flow is stalled: the check gets through and asks the server.
    proxy.blackhole_existing();
    let (result, took) = timed(move || conn.query("SELECT 1", &[]).map(drop));
    let e = result.expect_err("the reply is held by the proxy");
    println!("stalled query: {e} after {took:?}");
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert_presumed_dead(&e, took);
    assert!(e.to_string().contains("idle"), "{e}");
}

#[test]
fn a_pooled_read_without_deadline_ends() {
    let (proxy, pool) = proxied_pool("half_open_read");
    proxy.blackhole();
    let (result, took) = timed(move || pool.query("SELECT 1", &[]).map(drop));
    // The lost read is retried on a new connection, which the silent network refuses too:
    // whichever error ends it, it ends in time.
    let e = result.expect_err("no reply can come");
    println!("blackholed pooled read: {e} after {took:?}");
    assert!(
        matches!(
            e,
            Error::Connection(_) | Error::PoolTimeout(_) | Error::Unavailable { .. }
        ),
        "{e:?}"
    );
    assert!(took < BOUND, "took {took:?}: {e}");
}

#[test]
fn a_pooled_write_without_deadline_ends_with_its_outcome_unknown() {
    let (proxy, pool) = proxied_pool("half_open_write");
    proxy.blackhole();
    let (result, took) = timed(move || pool.execute("SELECT 1 FOR UPDATE", &[]));
    let e = result.expect_err("no reply can come");
    assert!(matches!(e, Error::CommitOutcomeUnknown(_)), "{e:?}");
    assert_presumed_dead(&e, took);
}

#[test]
fn begin_on_a_silent_connection_ends() {
    let (proxy, mut conn) = proxied_connection();
    proxy.blackhole();
    let (result, took) = timed(move || conn.begin().map(drop));
    let e = result.expect_err("BEGIN cannot be answered");
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert_presumed_dead(&e, took);
}

#[test]
fn commit_on_a_silent_connection_ends_with_its_outcome_unknown() {
    let (proxy, mut conn) = proxied_connection();
    let table = scratch_table(&conn, "v int");
    let insert = format!("INSERT INTO {} (v) VALUES (1)", &*table);
    let (result, took) = timed(move || {
        let tx = conn.begin().expect("begin");
        tx.execute(&insert, &[]).expect("insert");
        proxy.blackhole();
        let started = Instant::now();
        (tx.commit(), started.elapsed())
    });
    let (result, took_commit) = (result.0, result.1.min(took));
    let e = result.expect_err("COMMIT cannot be answered");
    assert!(matches!(e, Error::CommitOutcomeUnknown(_)), "{e:?}");
    assert_presumed_dead(&e, took_commit);
}

#[test]
fn a_pooled_commit_on_a_silent_connection_ends_with_its_outcome_unknown() {
    let (proxy, pool) = proxied_pool("half_open_commit");
    let table = scratch_table(&pool, "v int");
    let insert = format!("INSERT INTO {} (v) VALUES (1)", &*table);
    let (result, took) = timed(move || {
        pool.transaction(|tx| {
            tx.execute(&insert, &[])?;
            proxy.blackhole();
            Ok(())
        })
    });
    let e = result.expect_err("COMMIT cannot be answered");
    assert!(matches!(e, Error::CommitOutcomeUnknown(_)), "{e:?}");
    assert_presumed_dead(&e, took);
}

#[test]
fn a_long_silent_statement_is_left_to_finish() {
    let (proxy, conn) = proxied_connection();
    conn.set_liveness_probe(Some(Duration::from_millis(300)));
    let accepted = proxy.accepted();
    let (result, _) = timed(move || {
        conn.query_one("SELECT 7::int4 FROM pg_sleep(2.5)", &[])
            .map(|row| row.get::<_, i32>(0))
    });
    assert_eq!(result.expect("the statement runs to its end"), 7);
    // The silence was checked on (each check is a connection through the proxy), and every
    // check found the statement running.
    assert!(
        proxy.accepted() >= accepted + 2,
        "only {} checks",
        proxy.accepted() - accepted
    );
}

#[test]
fn host_names_resolve_and_unknown_ones_fail_clearly() {
    init();
    let by_name = primary_url().replace("127.0.0.1", "localhost");
    assert!(by_name.contains("localhost"), "{by_name}");
    let (found, _) = timed(move || {
        Connection::open(&by_name).and_then(|c| {
            c.query_one("SELECT 1::int4", &[])
                .map(|r| r.get::<_, i32>(0))
        })
    });
    assert_eq!(found.expect("localhost resolves"), 1);

    let unknown = with_params(
        &primary_url().replace("127.0.0.1", "no-such-host.invalid"),
        "connect_timeout=5",
    );
    let (result, took) = timed(move || Connection::open(&unknown).map(drop));
    let e = result.expect_err("the name does not resolve");
    println!("unresolvable: {e} after {took:?}");
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert!(
        e.to_string().contains("resolve no-such-host.invalid:"),
        "{e}"
    );
}

/// The descriptors of this process's TCP sockets whose local port is `port`.
fn sockets_on_local_port(port: u16) -> Vec<RawFd> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc/self/fd").expect("list /proc/self/fd") {
        let Some(fd) = entry
            .ok()
            .and_then(|e| e.file_name().to_str()?.parse::<RawFd>().ok())
        else {
            continue;
        };
        // SAFETY: a zeroed sockaddr_in and its size; getsockname only writes into them, and
        // fails harmlessly on a descriptor that is not a socket (or was closed meanwhile).
        let local = unsafe {
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let ok =
                libc::getsockname(fd, (&mut addr as *mut libc::sockaddr_in).cast(), &mut len) == 0;
            (ok && i32::from(addr.sin_family) == libc::AF_INET).then(|| u16::from_be(addr.sin_port))
        };
        if local == Some(port) {
            found.push(fd);
        }
    }
    found
}

fn int_option(fd: RawFd, level: libc::c_int, name: libc::c_int) -> i32 {
    let mut value: libc::c_int = -1;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: an int and its size, as these options take.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "getsockopt({level}, {name}) on {fd}");
    value
}

/// (SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT) of the socket
/// under `conn`, read back from the kernel.
fn options_of(conn: &Connection) -> (i32, i32, i32, i32, i32) {
    let port: i32 = conn
        .query_one("SELECT inet_client_port()", &[])
        .expect("the client port")
        .get(0);
    let fds = sockets_on_local_port(u16::try_from(port).expect("a port"));
    assert!(!fds.is_empty(), "no socket on local port {port}");
    let read = |fd| {
        (
            int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE),
            int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
            int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            int_option(fd, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
        )
    };
    let first = read(fds[0]);
    // The reader's and writer's handles are duplicates of one socket.
    assert!(fds.iter().all(|fd| read(*fd) == first));
    first
}

#[test]
fn keepalive_and_user_timeout_are_set_on_the_socket() {
    init();
    let configured = Connection::open(&with_params(
        &primary_url(),
        "keepalives_idle=7&keepalives_interval=3&keepalives_count=4&tcp_user_timeout=12345",
    ))
    .expect("connect");
    assert_eq!(options_of(&configured), (1, 7, 3, 4, 12345));

    let defaults = Connection::open(&primary_url()).expect("connect");
    assert_eq!(options_of(&defaults), (1, 30, 10, 3, 30_000));

    let off = Connection::open(&with_params(
        &primary_url(),
        "keepalives=0&tcp_user_timeout=0",
    ))
    .expect("connect");
    let (keepalive, .., user_timeout) = options_of(&off);
    assert_eq!((keepalive, user_timeout), (0, 0));
}
