//! Failures: a backend killed under load, a server stopped mid-query, refused and silent
//! servers, and fake servers speaking a broken protocol. Every waiter must get an error in
//! bounded time; nothing may hang or panic.
//!
//! Tests that stop a server use a private [`ScratchServer`]; only the backend-termination
//! test touches the shared primary, and it kills nothing but its own backend.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use lifeguard_core::pg::Connection;
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::{in_coroutine_within, init};
use lifeguard_tests::primary_url;
use lifeguard_tests::scratch::{free_port, ScratchServer, StopMode};

fn open_in_coroutine(url: &str) -> Connection {
    let url = url.to_owned();
    in_coroutine_within(Duration::from_secs(20), move || {
        Connection::open(&url).unwrap_or_else(|e| panic!("connect to {url}: {e}"))
    })
}

/// Starts `n` coroutines each waiting on a long `pg_sleep` on `conn`; each returns its
/// result and how long after `Instant` zero it finished.
fn sleepers(
    conn: &Arc<Connection>,
    n: i32,
) -> Vec<may::coroutine::JoinHandle<(lifeguard_core::Result<i32>, Instant)>> {
    (0..n)
        .map(|i| {
            let conn = conn.clone();
            may::go!(move || {
                let r = conn
                    .query_one("SELECT $1::int4 FROM pg_sleep(30)", &[&i])
                    .map(|row| row.get::<_, i32>(0));
                (r, Instant::now())
            })
        })
        .collect()
}

/// Waits until backend `pid` runs a `pg_sleep` (seen from `admin`).
fn wait_until_sleeping(admin: &Arc<Connection>, pid: i32) {
    let admin = admin.clone();
    in_coroutine_within(Duration::from_secs(20), move || {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let n: i64 = admin
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity \
                     WHERE pid = $1 AND state = 'active' AND query LIKE '%pg_sleep%'",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            if n > 0 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "backend {pid} never started sleeping"
            );
            may::coroutine::sleep(Duration::from_millis(20));
        }
    });
}

/// Joins the sleepers: each must have failed with a connection error within `bound` of `since`.
fn expect_connection_errors(
    handles: Vec<may::coroutine::JoinHandle<(lifeguard_core::Result<i32>, Instant)>>,
    since: Instant,
    bound: Duration,
) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let results: Vec<_> = handles.into_iter().map(|h| h.join()).collect();
        let _ = tx.send(results);
    });
    let results = rx
        .recv_timeout(bound + Duration::from_secs(5))
        .expect("waiters hang after the connection died");
    for (i, r) in results.into_iter().enumerate() {
        let (r, at) = r.unwrap_or_else(|_| panic!("waiter {i} panicked"));
        match r {
            Err(e) if e.is_connection() => {}
            other => panic!("waiter {i}: wanted a connection error, got {other:?}"),
        }
        let took = at.saturating_duration_since(since);
        assert!(took < bound, "waiter {i} failed only after {took:?}");
    }
}

/// A later call on a broken connection fails at once with a connection error.
fn expect_fails_fast(conn: &Arc<Connection>) {
    assert!(conn.is_broken());
    let c = conn.clone();
    let (r, took) = in_coroutine_within(Duration::from_secs(10), move || {
        let t0 = Instant::now();
        let r = c.query("SELECT 1", &[]);
        (r, t0.elapsed())
    });
    match r {
        Err(e) if e.is_connection() => {}
        other => panic!("wanted a connection error, got {other:?}"),
    }
    assert!(took < Duration::from_millis(50), "failing took {took:?}");
}

#[test]
fn terminated_backend_fails_every_waiter() {
    let conn = Arc::new(open_in_coroutine(&primary_url()));
    let admin = Arc::new(open_in_coroutine(&primary_url()));
    let pid = conn.process_id();
    let handles = sleepers(&conn, 50);
    wait_until_sleeping(&admin, pid);
    let killed_at = Instant::now();
    let a = admin.clone();
    let ok: bool = in_coroutine_within(Duration::from_secs(10), move || {
        a.query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap()
            .get(0)
    });
    assert!(ok);
    expect_connection_errors(handles, killed_at, Duration::from_secs(5));
    expect_fails_fast(&conn);
    assert_eq!(conn.in_flight(), 0);
    assert!(!admin.is_broken());
}

#[test]
fn terminated_idle_connection_reports_connection_errors() {
    let conn = Arc::new(open_in_coroutine(&primary_url()));
    let admin = Arc::new(open_in_coroutine(&primary_url()));
    let pid = conn.process_id();
    let a = admin.clone();
    in_coroutine_within(Duration::from_secs(10), move || {
        a.query_one("SELECT pg_terminate_backend($1)", &[&pid])
            .unwrap();
    });
    let c = conn.clone();
    let broken = in_coroutine_within(Duration::from_secs(10), move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.is_broken() && Instant::now() < deadline {
            may::coroutine::sleep(Duration::from_millis(10));
        }
        c.is_broken()
    });
    assert!(broken, "the reader never noticed the terminated backend");
    expect_fails_fast(&conn);
}

#[test]
fn stopped_server_fails_waiters_and_a_new_connection_works_after_restart() {
    let mut server = ScratchServer::start_new();
    let url = server.url();
    for mode in [StopMode::Immediate, StopMode::Fast] {
        let conn = Arc::new(open_in_coroutine(&url));
        let admin = Arc::new(open_in_coroutine(&url));
        let idle = Arc::new(open_in_coroutine(&url));
        let handles = sleepers(&conn, 20);
        wait_until_sleeping(&admin, conn.process_id());
        let stopped_at = Instant::now();
        server.stop(mode);
        expect_connection_errors(handles, stopped_at, Duration::from_secs(10));
        expect_fails_fast(&conn);
        // The idle connection learns of the shutdown from its reader, without a request.
        let i = idle.clone();
        let broken = in_coroutine_within(Duration::from_secs(10), move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !i.is_broken() && Instant::now() < deadline {
                may::coroutine::sleep(Duration::from_millis(10));
            }
            i.is_broken()
        });
        assert!(broken, "{mode:?}: idle connection not marked broken");
        // While the server is down, connecting fails with the target in the message.
        let u = url.clone();
        let r = in_coroutine_within(Duration::from_secs(10), move || Connection::open(&u));
        let e = r.expect_err("connected to a stopped server");
        assert!(e.is_connection(), "{mode:?}: got {e:?}");
        let target = format!("127.0.0.1:{}", server.port());
        assert!(e.to_string().contains(&target), "{mode:?}: {e}");

        server.start();
        let fresh = open_in_coroutine(&url);
        let v: i32 = in_coroutine_within(Duration::from_secs(10), move || {
            fresh
                .query_one("SELECT $1::int4 + 1", &[&41i32])
                .unwrap()
                .get(0)
        });
        assert_eq!(v, 42, "{mode:?}");
        assert!(conn.is_broken() && idle.is_broken());
    }
    server.stop(StopMode::Fast);
}

#[test]
fn connect_refused_names_the_target() {
    let port = free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=5");
    let started = Instant::now();
    let r = in_coroutine_within(Duration::from_secs(10), move || Connection::open(&url));
    let e = r.expect_err("connected to a closed port");
    assert!(e.is_connection(), "got {e:?}");
    assert!(e.to_string().contains(&format!("127.0.0.1:{port}")), "{e}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[test]
fn connect_timeout_against_a_silent_listener() {
    init();
    // Accepted by the kernel (backlog), never read from or answered.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=1");
    let check = |r: lifeguard_core::Result<Connection>, took: Duration, ctx: &str| {
        let e = r.expect_err("connected to a silent listener");
        assert!(e.is_connection(), "{ctx}: got {e:?}");
        assert!(e.to_string().contains("timed out"), "{ctx}: {e}");
        assert!(
            took >= Duration::from_millis(900) && took < Duration::from_secs(3),
            "{ctx}: took {took:?}"
        );
    };
    let u = url.clone();
    let (r, took) = in_coroutine_within(Duration::from_secs(10), move || {
        let t0 = Instant::now();
        (Connection::open(&u), t0.elapsed())
    });
    check(r, took, "coroutine");
    // From a plain thread too (may sockets outside a coroutine).
    let (tx, rx) = mpsc::channel();
    let u = url.clone();
    std::thread::spawn(move || {
        let t0 = Instant::now();
        let _ = tx.send((Connection::open(&u), t0.elapsed()));
    });
    let (r, took) = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("connect from a thread hangs");
    check(r, took, "thread");
    drop(listener);
}

// ---------------------------------------------------------------- fake servers --

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn auth_ok() -> Vec<u8> {
    msg(b'R', &0i32.to_be_bytes())
}

/// AuthenticationOk, BackendKeyData, one ParameterStatus and ReadyForQuery.
fn good_startup() -> Vec<u8> {
    let mut out = auth_ok();
    let mut key = 4242i32.to_be_bytes().to_vec();
    key.extend_from_slice(&7i32.to_be_bytes());
    out.extend(msg(b'K', &key));
    out.extend(msg(b'S', b"server_version\x0015.0\x00"));
    out.extend(msg(b'Z', b"I"));
    out
}

/// Reads the length-prefixed startup packet.
fn read_startup(s: &mut TcpStream) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut rest = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    s.read_exact(&mut rest)
}

/// Reads frontend messages up to and including the next `Sync` or `Query`; returns the tags.
fn read_request(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut tags = Vec::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body)?;
        tags.push(head[0]);
        if head[0] == b'S' || head[0] == b'Q' {
            return Ok(tags);
        }
    }
}

/// A one-connection fake server: reads the startup packet, then runs `script`.
fn fake_server(script: impl FnOnce(&mut TcpStream) + Send + 'static) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            if read_startup(&mut s).is_ok() {
                script(&mut s);
            }
        }
    });
    (port, handle)
}

fn fake_url(port: u16) -> String {
    format!("postgres://postgres:pw@127.0.0.1:{port}/postgres?connect_timeout=1&sslmode=disable")
}

/// Connecting to a fake server that sends `reply` after the startup packet (then holds the
/// socket open for `hold`) fails with a protocol or connection error, in bounded time.
fn expect_startup_rejected(name: &str, reply: Vec<u8>, hold: Duration) -> Error {
    let (port, server) = fake_server(move |s| {
        let _ = s.write_all(&reply);
        std::thread::sleep(hold);
    });
    let url = fake_url(port);
    let started = Instant::now();
    let r = in_coroutine_within(Duration::from_secs(10), move || Connection::open(&url));
    let took = started.elapsed();
    let e = match r {
        Ok(_) => panic!("{name}: connected to a broken server"),
        Err(e) => e,
    };
    assert!(
        matches!(e, Error::Protocol(_) | Error::Connection(_)),
        "{name}: got {e:?}"
    );
    assert!(took < Duration::from_secs(4), "{name}: took {took:?}");
    server.join().unwrap();
    e
}

#[test]
fn fake_server_broken_startups_are_rejected() {
    let short = Duration::from_millis(100);
    // Not a message at all: the "length" is huge.
    let e = expect_startup_rejected(
        "garbage",
        b"HTTP/1.1 400 Bad Request\r\n\r\n".to_vec(),
        short,
    );
    assert!(matches!(e, Error::Protocol(_)), "garbage: {e:?}");
    // Lengths past the cap or below the minimum.
    let e = expect_startup_rejected("absurd length", b"R\xff\xff\xff\xff".to_vec(), short);
    assert!(matches!(e, Error::Protocol(_)), "absurd length: {e:?}");
    let e = expect_startup_rejected("length 2", b"R\x00\x00\x00\x02".to_vec(), short);
    assert!(matches!(e, Error::Protocol(_)), "length 2: {e:?}");
    // A truncated message, then the socket closes.
    let e = expect_startup_rejected("truncated", b"R\x00\x00\x00\x08\x00\x00".to_vec(), short);
    assert!(e.is_connection(), "truncated: {e:?}");
    // A truncated message, then silence: the connect timeout ends it.
    let e = expect_startup_rejected(
        "truncated then silent",
        b"R\x00\x00\x00\x08\x00".to_vec(),
        Duration::from_secs(3),
    );
    assert!(e.to_string().contains("timed out"), "{e}");
    // A plausible 64 MiB message that never comes.
    let e = expect_startup_rejected(
        "promised 64 MiB",
        b"D\x04\x00\x00\x00\x00\x01".to_vec(),
        Duration::from_secs(3),
    );
    assert!(e.to_string().contains("timed out"), "{e}");
    // Messages that make no sense at this point.
    let e = expect_startup_rejected("row instead of auth", msg(b'D', b"\x00\x00"), short);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let mut after_auth = auth_ok();
    after_auth.extend(msg(b'D', b"\x00\x00"));
    let e = expect_startup_rejected("row after auth", after_auth, short);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let e = expect_startup_rejected("unknown auth", msg(b'R', &99i32.to_be_bytes()), short);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let e = expect_startup_rejected("short auth", msg(b'R', b"\x00\x00"), short);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let mut bad_key = auth_ok();
    bad_key.extend(msg(b'K', b"\x01"));
    let e = expect_startup_rejected("short BackendKeyData", bad_key, short);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let e = expect_startup_rejected("unterminated error", msg(b'E', b"SFATAL\x00C28000"), short);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    let mut bad_sasl = msg(b'R', b"\x00\x00\x00\x0aSCRAM-SHA-256\x00\x00");
    bad_sasl.extend(msg(b'R', b"\x00\x00\x00\x0bnot a scram message"));
    let e = expect_startup_rejected("bogus SCRAM", bad_sasl, short);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
    // Unrelated server type: a Redis-like banner.
    let e = expect_startup_rejected("redis banner", b"-ERR unknown command\r\n".to_vec(), short);
    assert!(matches!(e, Error::Protocol(_)), "{e:?}");
}

#[test]
fn fake_server_error_during_startup_is_a_server_error() {
    let (port, server) = fake_server(|s| {
        let _ = s.write_all(&msg(
            b'E',
            b"SFATAL\x00VFATAL\x00C28000\x00Mno such role\x00\x00",
        ));
    });
    let url = fake_url(port);
    let r = in_coroutine_within(Duration::from_secs(10), move || Connection::open(&url));
    let e = r.expect_err("connected");
    assert_eq!(e.sqlstate(), Some("28000"), "{e:?}");
    server.join().unwrap();
}

/// A fake that completes the startup and then answers each request with `answer(n, tags)`
/// (`None` closes the connection).
fn fake_session(
    answer: impl Fn(usize, &[u8]) -> Option<Vec<u8>> + Send + 'static,
) -> (u16, JoinHandle<()>) {
    fake_server(move |s| {
        if s.write_all(&good_startup()).is_err() {
            return;
        }
        let mut n = 0;
        while let Ok(tags) = read_request(s) {
            match answer(n, &tags) {
                Some(bytes) => {
                    if s.write_all(&bytes).is_err() {
                        return;
                    }
                }
                None => return,
            }
            n += 1;
        }
    })
}

fn prepare_reply() -> Vec<u8> {
    let mut out = msg(b'1', b"");
    out.extend(msg(b't', b"\x00\x00"));
    // One int4 column named "v", binary.
    let mut field = b"v\x00".to_vec();
    field.extend_from_slice(&0i32.to_be_bytes());
    field.extend_from_slice(&0i16.to_be_bytes());
    field.extend_from_slice(&23i32.to_be_bytes());
    field.extend_from_slice(&4i16.to_be_bytes());
    field.extend_from_slice(&(-1i32).to_be_bytes());
    field.extend_from_slice(&1i16.to_be_bytes());
    let mut body = 1i16.to_be_bytes().to_vec();
    body.extend(field);
    out.extend(msg(b'T', &body));
    out.extend(msg(b'Z', b"I"));
    out
}

fn row_reply(values: &[i32]) -> Vec<u8> {
    let mut out = msg(b'2', b"");
    let mut body = (values.len() as i16).to_be_bytes().to_vec();
    for v in values {
        body.extend_from_slice(&4i32.to_be_bytes());
        body.extend_from_slice(&v.to_be_bytes());
    }
    out.extend(msg(b'D', &body));
    out.extend(msg(b'C', b"SELECT 1\x00"));
    out.extend(msg(b'Z', b"I"));
    out
}

fn open_fake(port: u16) -> Arc<Connection> {
    Arc::new(open_in_coroutine(&fake_url(port)))
}

#[test]
fn fake_server_malformed_row_fails_one_call_and_keeps_the_connection_in_sync() {
    let (port, server) = fake_session(|n, _| match n {
        0 => Some(prepare_reply()),
        // Two values for one column, then a good row for the next call.
        1 => Some(row_reply(&[1, 2])),
        2 => Some(row_reply(&[42])),
        _ => None,
    });
    let conn = open_fake(port);
    assert_eq!(conn.process_id(), 4242);
    assert_eq!(conn.parameter("server_version").as_deref(), Some("15.0"));
    let c = conn.clone();
    let (first, second) = in_coroutine_within(Duration::from_secs(10), move || {
        let first = c.query("SELECT v", &[]);
        let second = c.query_one("SELECT v", &[]).map(|r| r.get::<_, i32>(0));
        (first, second)
    });
    assert!(matches!(first, Err(Error::Protocol(_))), "got {first:?}");
    assert_eq!(second.unwrap(), 42);
    assert!(!conn.is_broken());
    drop(conn);
    server.join().unwrap();
}

#[test]
fn fake_server_garbage_reply_breaks_the_connection() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("absurd length", b"1\xff\xff\xff\xf0".to_vec()),
        ("malformed row description", {
            let mut out = msg(b'1', b"");
            out.extend(msg(b'T', b"\x00\x05v"));
            out.extend(msg(b'Z', b"I"));
            out
        }),
        ("malformed error", {
            let mut out = msg(b'E', b"SERROR\x00C4");
            out.extend(msg(b'Z', b"I"));
            out
        }),
        ("bad parameter description", msg(b't', b"\x00\x09\x00")),
    ];
    for (name, bytes) in cases {
        let (port, server) = fake_session(move |n, _| (n == 0).then(|| bytes.clone()));
        let conn = open_fake(port);
        let c = conn.clone();
        let r = in_coroutine_within(Duration::from_secs(10), move || c.query("SELECT v", &[]));
        match r {
            Err(Error::Protocol(_)) | Err(Error::Connection(_)) => {}
            other => panic!("{name}: got {other:?}"),
        }
        // Either the reader broke the connection, or the server's close does.
        let c = conn.clone();
        let later = in_coroutine_within(Duration::from_secs(10), move || {
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                let r = c.query("SELECT v", &[]);
                if r.is_err() || Instant::now() > deadline {
                    return r;
                }
            }
        });
        assert!(later.is_err(), "{name}: a later call succeeded");
        drop(conn);
        server.join().unwrap();
    }
}

#[test]
fn fake_server_unsolicited_message_breaks_an_idle_connection() {
    let (port, server) = fake_server(|s| {
        let _ = s.write_all(&good_startup());
        std::thread::sleep(Duration::from_millis(100));
        let _ = s.write_all(&msg(b'C', b"SELECT 1\x00"));
        std::thread::sleep(Duration::from_millis(500));
    });
    let conn = open_fake(port);
    let c = conn.clone();
    let broken = in_coroutine_within(Duration::from_secs(10), move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !c.is_broken() && Instant::now() < deadline {
            may::coroutine::sleep(Duration::from_millis(10));
        }
        c.is_broken()
    });
    assert!(broken);
    let c = conn.clone();
    let r = in_coroutine_within(Duration::from_secs(10), move || c.query("SELECT 1", &[]));
    // Later calls are refused unsent, naming the protocol failure that broke the connection.
    assert!(
        matches!(&r, Err(e) if e.is_unsent() && e.to_string().contains("protocol error")),
        "got {r:?}"
    );
    server.join().unwrap();
}

/// A listener on a connection whose abandoned reply is overdue gets the connection error:
/// the check that breaks the connection wakes the listeners, and must not do so while the
/// listener's own wait holds their queue (that self-deadlock hung `next_notification`).
#[test]
fn listener_sees_a_connection_broken_by_an_overdue_abandoned_reply() {
    // Reads every request and answers none, like a peer gone half-open.
    let (port, server) = fake_session(|_, _| Some(Vec::new()));
    let conn = open_fake(port);
    let c = conn.clone();
    let r = in_coroutine_within(Duration::from_secs(10), move || {
        let timed_out = c.timeout(Duration::from_millis(100)).query("SELECT v", &[]);
        assert!(matches!(timed_out, Err(Error::Timeout(_))), "{timed_out:?}");
        // Past the grace an abandoned reply gets (2 s): the next check breaks the connection.
        may::coroutine::sleep(Duration::from_millis(2300));
        c.next_notification(Duration::from_secs(1))
    });
    match r {
        Err(e) => assert!(
            e.is_connection() && e.to_string().contains("presumed dead"),
            "{e:?}"
        ),
        Ok(n) => panic!("expected the connection error, got {n:?}"),
    }
    assert!(conn.is_broken());
    drop(conn);
    server.join().unwrap();
}

#[test]
fn connect_timeout_bounds_a_trickling_startup() {
    let (port, server) = fake_server(|s| {
        let _ = s.write_all(&auth_ok());
        // One byte of an endless stream of ParameterStatus messages every 200 ms.
        let one = msg(b'S', b"a\x00b\x00");
        let t0 = Instant::now();
        'outer: while t0.elapsed() < Duration::from_secs(8) {
            for b in &one {
                if s.write_all(&[*b]).is_err() {
                    break 'outer;
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    });
    let url = fake_url(port);
    let t0 = Instant::now();
    let r = in_coroutine_within(Duration::from_secs(20), move || Connection::open(&url));
    let took = t0.elapsed();
    assert!(r.is_err());
    assert!(
        took < Duration::from_secs(3),
        "connect_timeout=1 but connect took {took:?}"
    );
    server.join().unwrap();
}

#[test]
fn cancel_request_is_bounded_when_the_server_never_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_startup(&mut s).unwrap();
        s.write_all(&good_startup()).unwrap();
        // The cancel request arrives on a second connection, which is held open for 10 s.
        let (mut cancel, _) = listener.accept().unwrap();
        let mut packet = [0u8; 16];
        let _ = cancel.read_exact(&mut packet);
        std::thread::sleep(Duration::from_secs(10));
        drop(cancel);
        drop(s);
    });
    let url =
        format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=1&sslmode=disable");
    let conn = open_in_coroutine(&url);
    let token = conn.cancel_token();
    let took = in_coroutine_within(Duration::from_secs(30), move || {
        let t0 = Instant::now();
        let _ = token.cancel();
        t0.elapsed()
    });
    // A timed exclusive call cancels through this path before returning Timeout, so an
    // unanswered cancel holds a caller far past its deadline.
    assert!(
        took < Duration::from_secs(3),
        "cancel() against a server that never closes took {took:?}"
    );
    drop(conn);
    server.join().unwrap();
}

/// The cancel request asks for TLS the way the session did (`sslmode=prefer`: an
/// `SSLRequest` first), so a cancel does not cross the network less protected than the
/// session; the server here has no TLS and answers `N`, as PostgreSQL without `ssl` does.
#[test]
fn the_cancel_request_negotiates_tls_like_the_session() {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let mut firsts = Vec::new();
        for round in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let mut first = [0u8; 8];
            s.read_exact(&mut first).unwrap();
            firsts.push(first);
            if first == SSL_REQUEST {
                s.write_all(b"N").unwrap();
            }
            if round == 0 {
                read_startup(&mut s).unwrap();
                s.write_all(&good_startup()).unwrap();
                // Keep the session open until the cancel has come and gone.
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_secs(3));
                    drop(s);
                });
            } else {
                let mut packet = [0u8; 16];
                s.read_exact(&mut packet).unwrap();
                assert_eq!(&packet[8..12], &4242i32.to_be_bytes(), "the backend's pid");
            }
        }
        firsts
    });
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres?connect_timeout=2");
    let conn = open_in_coroutine(&url);
    let token = conn.cancel_token();
    in_coroutine_within(Duration::from_secs(10), move || token.cancel()).expect("cancel");
    let firsts = server.join().unwrap();
    assert_eq!(
        firsts,
        [SSL_REQUEST, SSL_REQUEST],
        "session and cancel both ask for TLS"
    );
    drop(conn);
}
