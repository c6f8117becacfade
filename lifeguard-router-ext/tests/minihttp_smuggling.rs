//! may_minihttp mode on raw sockets: a request whose body the service did not frame (a
//! `501` for Transfer-Encoding, a `400` for a bad Content-Length, a `413` past the drain
//! limit) ends the connection, so the bytes behind it are never answered as a request;
//! HEAD, 204 and 304 responses carry no body.
//!
//! Needs `scripts/services up && eval "$(scripts/services env)"` (the service runs on a
//! real pool, though no route here queries it).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::*;
use lifeguard_router_ext::service::{Limits, ServiceBuilder};
use lifeguard_router_ext::{Lifeguard, Reply, Settings};
use serde_json::json;

/// What `GET /smuggled` answers: it must never appear on the wire.
const MARKER: &str = "SMUGGLED-ANSWER";
/// A complete request on a route that would answer it.
const SMUGGLED: &[u8] = b"GET /smuggled HTTP/1.1\r\nHost: t\r\n\r\n";

fn port() -> u16 {
    static PORT: OnceLock<u16> = OnceLock::new();
    *PORT.get_or_init(|| {
        let lg = Lifeguard::new(pool(), Settings::default());
        let service = ServiceBuilder::new(lg)
            .route("GET", "/smuggled", "smuggled", |_req, _db| {
                Reply::json(200, &json!({ "answer": MARKER }))
            })
            .route("POST", "/echo", "echo", |req, _db| {
                Reply::json(200, &json!({ "len": req.body().len() }))
            })
            .route("HEAD", "/h", "head", |_req, _db| {
                Reply::json(200, &json!({ "a body": "that HEAD must not send" }))
            })
            .route("GET", "/nocontent", "nocontent", |_req, _db| {
                Reply::json(204, &json!({ "a body": "that 204 must not send" }))
            })
            .route("GET", "/plain", "plain", |_req, _db| {
                Reply::json(200, &json!({ "plain": true }))
            })
            // SMUGGLED is longer than max_drain: as a body it is refused, not drained.
            .limits(Limits {
                max_body: 4,
                max_drain: 8,
                ..Limits::default()
            })
            .build();
        let port = free_port();
        service
            .start_minihttp(("127.0.0.1", port))
            .expect("server starts");
        wait_for(Duration::from_secs(5), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        })
        .expect("server accepts");
        port
    })
}

/// Everything the server sends until it closes the connection (a reset after its last
/// byte counts as closing), and whether it did within 2 s.
fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, true),
            Err(e) => panic!("read: {e}"),
        }
    }
    (got, false)
}

/// Sends `refused` and then [`SMUGGLED`], in the same write or once the refusal is read,
/// and checks that the smuggled request is never answered: the connection closes after at
/// most the refusal (exactly the refusal when the bytes come later).
fn assert_not_smuggled(refused: &[u8], status: &str) {
    for same_write in [true, false] {
        let mut s = connect(port());
        let (got, closed) = if same_write {
            s.write_all(&[refused, SMUGGLED].concat()).unwrap();
            read_until_closed(&mut s)
        } else {
            // The server closes after the refusal without waiting for more bytes...
            s.write_all(refused).unwrap();
            let (mut got, closed) = read_until_closed(&mut s);
            // ...and whatever comes later is not answered (the write may fail: closed).
            let _ = s.write_all(SMUGGLED);
            got.extend(read_until_closed(&mut s).0);
            (got, closed)
        };
        let text = String::from_utf8_lossy(&got);
        let case = if same_write {
            "same write"
        } else {
            "later write"
        };
        assert!(
            !text.contains(MARKER),
            "{case}: smuggled request answered: {text}"
        );
        assert!(closed, "{case}: the connection stays open: {text}");
        let responses = text.matches("HTTP/1.1 ").count();
        if same_write {
            // The smuggled bytes were read with the refused request: the connection
            // ends without answering either (see the module docs of `minihttp`).
            assert!(responses <= 1, "{case}: {text}");
        } else {
            assert_eq!(responses, 1, "{case}: {text}");
        }
        if !got.is_empty() {
            assert!(
                text.starts_with(&format!("HTTP/1.1 {status} ")),
                "{case}: {text}"
            );
            assert!(text.contains("\r\nConnection: close\r\n"), "{case}: {text}");
        }
    }
}

#[test]
fn transfer_encoding_refusal_ends_the_connection() {
    assert_not_smuggled(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n",
        "501",
    );
}

#[test]
fn bad_content_length_refusal_ends_the_connection() {
    assert_not_smuggled(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1x\r\n\r\n",
        "400",
    );
}

#[test]
fn body_past_the_drain_limit_ends_the_connection() {
    // The body is exactly the smuggled request: a front end that forwards it as a body
    // must not see it answered as a request.
    let head = format!(
        "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {}\r\n\r\n",
        SMUGGLED.len()
    );
    assert_not_smuggled(head.as_bytes(), "413");
}

#[test]
fn head_204_and_404_to_head_carry_no_body() {
    let mut s = connect(port());
    let pipeline = [
        &b"HEAD /h HTTP/1.1\r\nHost: t\r\n\r\n"[..],
        b"HEAD /nowhere HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /nocontent HTTP/1.1\r\nHost: t\r\n\r\n",
        b"GET /plain HTTP/1.1\r\nHost: t\r\n\r\n",
    ]
    .concat();
    s.write_all(&pipeline).unwrap();
    let want = b"{\"plain\":true}";
    let deadline = Instant::now() + Duration::from_secs(2);
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    while !got.ends_with(want) && Instant::now() < deadline {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    // Each of the first three heads is followed at once by the next response.
    let parts: Vec<&str> = text.split("\r\n\r\n").collect();
    assert_eq!(parts.len(), 5, "{text}");
    for (i, status) in ["200", "404", "204"].iter().enumerate() {
        assert!(
            parts[i].contains(&format!("HTTP/1.1 {status} ")),
            "response {i}: {text}"
        );
        assert!(
            parts[i].contains("\r\nContent-Length: 0"),
            "response {i}: {text}"
        );
        assert!(
            parts[i + 1].starts_with("HTTP/1.1 "),
            "a body after {i}: {text}"
        );
    }
    assert!(parts[3].starts_with("HTTP/1.1 200 "), "{text}");
    assert_eq!(parts[4].as_bytes(), want, "{text}");
}
