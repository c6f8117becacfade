//! Lifeguard's own HTTP/1.1 server against clients that misbehave: slowloris heads and
//! bodies, idle keep-alive connections, clients that stop reading or never close, more
//! connections than the cap, heads split over many reads. Raw TCP on 127.0.0.1; each test
//! starts its own server with small timeouts, so each runs in well under 5 s.
//!
//! Needs `scripts/services up && eval "$(scripts/services env)"` (the service runs over the
//! real pool).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use lifeguard_core::pg::Keepalives;
use lifeguard_core::pool::Pool;
use lifeguard_router_ext::server::ServerConfig;
use lifeguard_router_ext::service::ServiceBuilder;
use lifeguard_router_ext::{Lifeguard, Reply, Settings};
use serde_json::json;

/// The size of `GET /big`: far more than loopback's socket buffers hold.
const BIG: usize = 32 << 20;
/// The short timeout each test sets for the deadline it checks.
const SHORT: Duration = Duration::from_millis(300);
/// How late a deadline may act in these tests (the sweep runs every 37 ms here; the rest
/// is a loaded CI machine).
const SLACK: Duration = Duration::from_millis(1200);

fn shared_pool() -> Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(pool).clone()
}

/// Long timeouts everywhere, so a test's short one is the only one that can act.
fn patient() -> ServerConfig {
    ServerConfig {
        head_timeout: Duration::from_secs(30),
        body_timeout: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(30),
        write_timeout: Duration::from_secs(30),
        linger_timeout: Duration::from_secs(30),
        ..ServerConfig::default()
    }
}

/// A server with `config` on a free port: `GET /hi`, `GET /big` and `GET /header-len`
/// (the length of `X-Long`), `POST /echo` (the body's length).
fn start(config: ServerConfig) -> u16 {
    let lg = Lifeguard::new(shared_pool(), Settings::default());
    let service = ServiceBuilder::new(lg)
        .route("GET", "/hi", "hi", |_req, _db| {
            Reply::json(200, &json!({"hi": 1}))
        })
        .route("GET", "/big", "big", |_req, _db| {
            Reply::with_body(200, "application/octet-stream", vec![b'x'; BIG])
        })
        .route("GET", "/header-len", "header_len", |req, _db| {
            Reply::json(
                200,
                &json!({"len": req.header("X-Long").map_or(0, str::len)}),
            )
        })
        .route("POST", "/echo", "echo", |req, _db| {
            Reply::json(200, &json!({"len": req.body().len()}))
        })
        .build();
    let port = free_port();
    service
        .start_with(("127.0.0.1", port), config)
        .expect("the server starts");
    wait_for(Duration::from_secs(5), || {
        TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("the server accepts");
    port
}

/// A connection on which the server started answering `bytes` with `200` (its status line
/// read, nothing more). Retried on a `503`: the server frees a connection's slot only once
/// it has seen the close, a moment after the client closed (such as `start`'s probe).
fn served(port: u16, bytes: &[u8]) -> TcpStream {
    wait_for(Duration::from_secs(3), || {
        let mut s = connect(port);
        s.write_all(bytes).unwrap();
        let mut status = [0u8; 12];
        s.read_exact(&mut status).ok()?;
        (&status == b"HTTP/1.1 200").then_some(s)
    })
    .expect("a connection is served")
}

/// As [`served`] for `GET /hi`, its whole response read.
fn served_hi(port: u16) -> TcpStream {
    wait_for(Duration::from_secs(3), || {
        let mut s = connect(port);
        s.write_all(&request("GET", "/hi", &[], None)).unwrap();
        (read_responses(&mut s, 1)[0].status == 200).then_some(s)
    })
    .expect("a connection is served")
}

/// Whether the server has closed `s`: a read that ends the stream (or is reset) within
/// `wait`. Data instead is a test failure.
fn closed_within(s: &mut TcpStream, wait: Duration) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 1024];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(n) => panic!("unexpected bytes: {}", String::from_utf8_lossy(&buf[..n])),
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
        Err(_) => true,
    }
}

/// Sends `bytes` one every 100 ms (so no single read waits long) until the server closes
/// the connection or 4 s pass; when it closed, counted from the first byte.
fn trickle(port: u16, bytes: &[u8]) -> Option<Duration> {
    let mut s = connect(port);
    let started = Instant::now();
    for b in bytes.iter().cycle() {
        if started.elapsed() > Duration::from_secs(4) {
            return None;
        }
        if s.write_all(&[*b]).is_err() || closed_within(&mut s, Duration::from_millis(100)) {
            return Some(started.elapsed());
        }
    }
    None
}

fn assert_in_deadline(cut: Option<Duration>, deadline: Duration) {
    let cut = cut.expect("the server closes the connection");
    assert!(
        cut >= deadline - Duration::from_millis(50) && cut <= deadline + SLACK,
        "closed after {cut:?}, deadline {deadline:?}"
    );
}

#[test]
fn a_slowloris_head_is_cut_within_the_head_deadline() {
    let port = start(ServerConfig {
        head_timeout: SHORT,
        ..patient()
    });
    let head = b"GET /hi HTTP/1.1\r\nHost: t\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    assert_in_deadline(trickle(port, head), SHORT);
    // A second request's head gets the deadline from its first byte.
    let mut s = connect(port);
    s.write_all(&request("GET", "/hi", &[], None)).unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].status, 200);
    std::thread::sleep(SHORT);
    let started = Instant::now();
    s.write_all(b"GET /hi HTTP/1.1\r\n").unwrap();
    let mut cut = None;
    while started.elapsed() < Duration::from_secs(4) {
        if s.write_all(b"X").is_err() || closed_within(&mut s, Duration::from_millis(100)) {
            cut = Some(started.elapsed());
            break;
        }
    }
    assert_in_deadline(cut, SHORT);
}

#[test]
fn a_slow_body_is_cut_within_the_body_deadline() {
    let port = start(ServerConfig {
        body_timeout: SHORT,
        ..patient()
    });
    let mut s = connect(port);
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n0123456789")
        .unwrap();
    let started = Instant::now();
    let mut cut = None;
    while started.elapsed() < Duration::from_secs(4) {
        if s.write_all(b"x").is_err() || closed_within(&mut s, Duration::from_millis(100)) {
            cut = Some(started.elapsed());
            break;
        }
    }
    assert_in_deadline(cut, SHORT);
}

#[test]
fn an_idle_keep_alive_connection_is_closed_after_the_idle_deadline() {
    let port = start(ServerConfig {
        idle_timeout: SHORT,
        ..patient()
    });
    let mut s = connect(port);
    s.write_all(&request("GET", "/hi", &[], None)).unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].status, 200);
    let idle = Instant::now();
    let closed = closed_within(&mut s, Duration::from_secs(3));
    assert_in_deadline(closed.then(|| idle.elapsed()), SHORT);
}

#[test]
fn a_client_that_never_reads_a_large_response_is_dropped_within_the_write_deadline() {
    // One connection at most: the second is served only once the first is gone.
    let port = start(ServerConfig {
        write_timeout: SHORT,
        max_connections: 1,
        ..patient()
    });
    let mut stalled = served(port, &request("GET", "/big", &[], None));
    std::thread::sleep(SHORT + SLACK);
    let r = roundtrip(port, "GET", "/hi", &[], None);
    assert_eq!(r.status, 200, "the stalled connection still holds the slot");
    // What the stalled client gets now is what the socket buffers held: not all of it.
    stalled
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut got = 0;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match stalled.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("the stalled connection is not closed after {got} bytes: {e}"),
        }
    }
    assert!(got < BIG, "{got} bytes: the whole response was written");
}

#[test]
fn the_linger_read_after_a_close_is_bounded() {
    let port = start(ServerConfig {
        linger_timeout: SHORT,
        max_connections: 1,
        ..patient()
    });
    // The client reads its closing response and then keeps the connection open.
    let _lingering = served(
        port,
        &request("GET", "/hi", &[("Connection", "close")], None),
    );
    std::thread::sleep(SHORT + SLACK);
    let r = roundtrip(port, "GET", "/hi", &[], None);
    assert_eq!(
        r.status, 200,
        "the lingering connection still holds the slot"
    );
}

#[test]
fn past_the_connection_cap_new_connections_get_503_until_one_closes() {
    let port = start(ServerConfig {
        max_connections: 3,
        ..patient()
    });
    let mut held: Vec<TcpStream> = (0..3).map(|_| served_hi(port)).collect();

    let mut extra = connect(port);
    extra.write_all(&request("GET", "/hi", &[], None)).unwrap();
    let r = read_responses(&mut extra, 1).remove(0);
    assert_problem(&r, 503, None);
    assert_eq!(r.header("Connection"), Some("close"));
    assert_eq!(r.header("Retry-After"), Some("1"));
    assert!(closed_within(&mut extra, Duration::from_secs(3)));

    // The first three are still served.
    for s in &mut held {
        s.write_all(&request("GET", "/hi", &[], None)).unwrap();
        assert_eq!(read_responses(s, 1)[0].status, 200);
    }
    held.clear();
    // Once they close, new connections are served again.
    wait_for(Duration::from_secs(3), || {
        (roundtrip(port, "GET", "/hi", &[], None).status == 200).then_some(())
    })
    .expect("served once the held connections closed");
}

#[test]
fn a_head_split_over_many_reads_parses_and_one_over_the_limit_gets_431() {
    let port = start(patient());
    let long = "v".repeat(8 << 10);
    let bytes = request("GET", "/header-len", &[("X-Long", &long)], None);
    let mut s = connect(port);
    // 64 pieces, then the empty line that ends the head one byte per read.
    let (body, end) = bytes.split_at(bytes.len() - 4);
    for piece in body.chunks(body.len().div_ceil(64)).chain(end.chunks(1)) {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = read_responses(&mut s, 1).remove(0);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["len"], long.len());

    // Past the 16 KiB default, arriving in 1 KiB pieces and never ending.
    let mut s = connect(port);
    let mut bytes = b"GET /hi HTTP/1.1\r\nHost: t\r\nX-Long: ".to_vec();
    bytes.extend(std::iter::repeat_n(b'v', 20 << 10));
    for piece in bytes.chunks(1 << 10) {
        // The server may already have answered and be reading to its close.
        if s.write_all(piece).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let r = read_responses(&mut s, 1).remove(0);
    assert_problem(&r, 431, None);
    assert_eq!(r.header("Connection"), Some("close"));
}

#[test]
fn accepted_sockets_have_tcp_keepalive_with_the_configured_idle_time() {
    let port = start(ServerConfig {
        keepalives: Keepalives {
            enabled: true,
            idle: Duration::from_secs(7),
            interval: Duration::from_secs(2),
            count: 2,
        },
        ..patient()
    });
    let s = served_hi(port);
    let client_port = s.local_addr().unwrap().port();
    // The server's end of this connection in /proc/net/tcp: local port `port`, remote
    // port `client_port`; its timer is the keepalive timer (2), due within 7 s (in
    // USER_HZ ticks of 10 ms).
    let timer = wait_for(Duration::from_secs(3), || {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
        table.lines().skip(1).find_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local = u16::from_str_radix(f[1].rsplit(':').next()?, 16).ok()?;
            let remote = u16::from_str_radix(f[2].rsplit(':').next()?, 16).ok()?;
            let (kind, when) = f[5].split_once(':')?;
            let when = u64::from_str_radix(when, 16).ok()?;
            (local == port && remote == client_port && kind == "02").then_some(when)
        })
    });
    let when = timer.expect("the server's socket runs a keepalive timer");
    assert!(
        when <= 700,
        "next probe in {when} ticks: not the configured 7 s"
    );
}
