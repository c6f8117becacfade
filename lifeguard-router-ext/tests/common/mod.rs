//! Shared test helpers: may configuration, the pool from the environment, a raw HTTP/1.1
//! client on std sockets (tests are not on the may path).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Once;
use std::time::{Duration, Instant};

use lifeguard_core::pool::{Pool, PoolConfig};

/// Configures may once per test binary, before any coroutine starts.
pub fn init_may() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Stack size is in words: 0x8000 words = 256 KiB.
        may::config().set_workers(2).set_stack_size(0x8000);
    });
}

/// A pool over the services of `scripts/services env`.
pub fn pool() -> Pool {
    init_may();
    let config = PoolConfig::from_env()
        .expect("run: scripts/services up && eval \"$(scripts/services env)\"")
        .monitor_interval(Duration::from_millis(100))
        .default_max_staleness(Duration::from_secs(5));
    Pool::connect(config).expect("pool")
}

/// A pool and a wait until its replica is healthy (routing to it is then possible).
pub fn pool_with_healthy_replica() -> Pool {
    let pool = pool();
    wait_for(Duration::from_secs(20), || {
        let h = pool.health();
        (!h.replicas.is_empty()
            && h.replicas
                .iter()
                .all(|(_, s)| *s == lifeguard_core::pool::NodeState::Healthy))
        .then_some(())
    })
    .expect("the replica becomes healthy");
    pool
}

/// Polls `check` until it yields or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() > end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port that was free a moment ago (may_minihttp's `start` does not report the bound
/// address, so bind 127.0.0.1:0, read the port, release it).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

/// Connects with a read timeout.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Builds a request with `headers` and an optional body (Content-Length added).
pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: test\r\n").into_bytes();
    for (n, v) in headers {
        out.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
    }
    if let Some(b) = body {
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", b.len()).as_bytes());
        out.extend_from_slice(b);
    } else {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads `n` responses from `stream` (every response has a Content-Length).
pub fn read_responses(stream: &mut TcpStream, n: usize) -> Vec<Resp> {
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut chunk = [0u8; 8192];
    while out.len() < n {
        if let Some((resp, used)) = parse_one(&buf) {
            buf.drain(..used);
            out.push(resp);
            continue;
        }
        let k = stream.read(&mut chunk).expect("read response");
        assert!(
            k > 0,
            "connection closed after {} of {n} responses",
            out.len()
        );
        buf.extend_from_slice(&chunk[..k]);
    }
    assert!(buf.is_empty(), "unexpected extra bytes");
    out
}

fn parse_one(buf: &[u8]) -> Option<(Resp, usize)> {
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..end]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    let start = end + 4;
    if buf.len() < start + len {
        return None;
    }
    Some((
        Resp {
            status,
            headers,
            body: buf[start..start + len].to_vec(),
        },
        start + len,
    ))
}

/// Sends one request on a fresh connection and reads its response.
pub fn roundtrip(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Resp {
    let mut s = connect(port);
    s.write_all(&request(method, path, headers, body)).unwrap();
    read_responses(&mut s, 1).remove(0)
}

/// Checks an RFC 9457 body naming `header`.
pub fn assert_problem(resp: &Resp, status: u16, header: Option<&str>) {
    assert_eq!(
        resp.status,
        status,
        "body: {}",
        String::from_utf8_lossy(&resp.body)
    );
    assert_eq!(
        resp.header("Content-Type"),
        Some("application/problem+json")
    );
    let v = resp.json();
    assert_eq!(v["status"], status);
    assert!(v["type"].is_string() && v["title"].is_string() && v["detail"].is_string());
    if let Some(h) = header {
        assert_eq!(v["header"], h);
        assert!(v["detail"].as_str().unwrap().contains(h));
    }
}
