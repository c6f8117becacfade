//! One service on both real servers, Lifeguard's own HTTP/1.1 server and may_minihttp, on
//! 127.0.0.1 over the real primary and replica. Tests of behaviour both share loop over
//! both ports; each server's own limits have their own tests.
//!
//! Needs `scripts/services up && eval "$(scripts/services env)"`.

mod common;

use std::io::Write;
use std::sync::OnceLock;
use std::time::Duration;

use common::*;
use lifeguard_core::pool::Pool;
use lifeguard_core::{Error, Executor};
use lifeguard_router_ext::service::{HttpRequest, Limits, ServiceBuilder};
use lifeguard_router_ext::{current, Lifeguard, ReadyPolicy, Reply, RequestExecutor, Settings};
use lifeguard_tests::replica::ReplayPaused;
use serde_json::json;

struct Server {
    /// Lifeguard's own server.
    own: u16,
    /// may_minihttp.
    mini: u16,
    table: String,
    pool: Pool,
}

fn where_am_i(_req: &HttpRequest, db: &RequestExecutor) -> Reply {
    match db.query_one("SELECT pg_is_in_recovery(), inet_server_port()", &[]) {
        Ok(row) => {
            let in_recovery: bool = row.get(0);
            let port: i32 = row.get(1);
            Reply::json(
                200,
                &json!({"in_recovery": in_recovery, "port": port,
                        "request_id": db.context().request_id()}),
            )
        }
        Err(e) => Reply::json(503, &json!({"error": e.to_string()})),
    }
}

/// The `id=N` query of the notes routes.
fn note_id(req: &HttpRequest) -> i64 {
    req.query()
        .and_then(|q| q.strip_prefix("id="))
        .unwrap()
        .parse()
        .unwrap()
}

fn server() -> &'static Server {
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(|| {
        let pool = pool_with_healthy_replica();
        let table = format!("rext_notes_{}", std::process::id());
        pool.primary()
            .batch_execute(&format!(
                "CREATE TABLE IF NOT EXISTS {table} (id bigint PRIMARY KEY, body text NOT NULL)"
            ))
            .unwrap();
        let settings = Settings {
            served_by: true,
            ..Settings::default()
        };
        let lg = Lifeguard::new(pool.clone(), settings);
        let t_insert = format!("INSERT INTO {table} (id, body) VALUES ($1, $2)");
        let t_select = format!("SELECT body, pg_is_in_recovery() FROM {table} WHERE id = $1");
        let service = ServiceBuilder::new(lg)
            .route("GET", "/where", "where", where_am_i)
            .route("POST", "/notes", "notes_create", move |req, db| {
                let id = note_id(req);
                let body = String::from_utf8_lossy(req.body()).into_owned();
                match db.execute(&t_insert, &[&id, &body]) {
                    Ok(n) => Reply::json(201, &json!({"inserted": n})),
                    Err(e) => Reply::json(500, &json!({"error": e.to_string()})),
                }
            })
            .route("GET", "/notes", "notes_get", move |req, db| {
                let id = note_id(req);
                match db.query_opt(&t_select, &[&id]) {
                    Ok(row) => Reply::json(
                        200,
                        &json!({
                            "found": row.as_ref().map(|r| r.get::<_, String>(0)),
                            "in_recovery": row.as_ref().map(|r| r.get::<_, bool>(1)),
                        }),
                    ),
                    Err(e) => Reply::json(500, &json!({"error": e.to_string()})),
                }
            })
            .route("GET", "/peek", "peek", |_req, db| {
                // The coroutine-local must be this request's executor.
                let cur = current().expect("a scope is installed");
                Reply::json(
                    200,
                    &json!({
                        "explicit": db.context().request_id(),
                        "current": cur.context().request_id(),
                        "preference": cur.context().read_options().preference.as_str(),
                        "token": cur.context().read_options().min_lsn.map(|t| t.to_string()),
                    }),
                )
            })
            .route("GET", "/panic", "panic", |_req, _db| {
                panic!("secret internal detail")
            })
            .route("GET", "/sleep", "sleep", |_req, db| {
                match db.execute("SELECT pg_sleep(2)", &[]) {
                    Err(Error::Timeout(d)) => {
                        Reply::json(504, &json!({"timeout_ms": d.as_millis() as u64}))
                    }
                    Ok(_) => Reply::json(200, &json!({"slept": true})),
                    Err(e) => Reply::json(500, &json!({"error": e.to_string()})),
                }
            })
            .route("GET", "/many-headers", "many_headers", |_req, _db| {
                let mut r = Reply::json(200, &json!({}));
                for i in 0..30 {
                    r = r.header(format!("X-Extra-{i}"), format!("value-{i}"));
                }
                r.header("Bad\r\nName", "x")
                    .header("X-Inject", "a\r\nSet-Cookie: evil=1")
            })
            .route("POST", "/echo", "echo", |req, _db| {
                Reply::json(200, &json!({"len": req.body().len()}))
            })
            .health(ReadyPolicy::default())
            .metrics()
            .limits(Limits {
                max_body: 1024,
                max_drain: 4096,
                ..Limits::default()
            })
            .build();
        let (own, mini) = (free_port(), free_port());
        service
            .clone()
            .start(("127.0.0.1", own))
            .expect("server starts");
        service
            .start_minihttp(("127.0.0.1", mini))
            .expect("server starts");
        for port in [own, mini] {
            wait_for(Duration::from_secs(5), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).ok()
            })
            .expect("server accepts");
        }
        Server {
            own,
            mini,
            table,
            pool,
        }
    })
}

/// Both servers' ports.
fn ports() -> [u16; 2] {
    [server().own, server().mini]
}

#[test]
fn read_preferences_route_as_specified() {
    for port in ports() {
        let primary = roundtrip(
            port,
            "GET",
            "/where",
            &[("Lifeguard-Read-Preference", "primary")],
            None,
        );
        assert_eq!(primary.status, 200);
        assert_eq!(primary.json()["in_recovery"], false);
        assert_eq!(primary.header("Lifeguard-Served-By"), Some("primary"));
        assert!(
            primary.header("Lifeguard-Consistency-Token").is_none(),
            "no write, no token"
        );

        // The replica may be paused by another test for a moment: retry until it is routable.
        let replica = wait_for(Duration::from_secs(20), || {
            let r = roundtrip(
                port,
                "GET",
                "/where",
                &[("Lifeguard-Read-Preference", "replica")],
                None,
            );
            (r.status == 200).then_some(r)
        })
        .expect("a replica read succeeds");
        assert_eq!(replica.json()["in_recovery"], true);
        assert_eq!(replica.header("Lifeguard-Served-By"), Some("replica"));

        let pp = roundtrip(
            port,
            "GET",
            "/where",
            &[("Lifeguard-Read-Preference", "primary-preferred")],
            None,
        );
        assert_eq!(pp.json()["in_recovery"], false);
        for pref in ["replica-preferred", "nearest"] {
            let r = roundtrip(
                port,
                "GET",
                "/where",
                &[("Lifeguard-Read-Preference", pref)],
                None,
            );
            assert_eq!(r.status, 200, "{pref}");
        }
    }
}

#[test]
fn write_then_read_with_the_token_sees_the_write_while_replay_is_paused() {
    let s = server();
    let url = std::env::var("LIFEGUARD_REPLICA_URLS").unwrap();
    let paused = ReplayPaused::on(url.split(',').next().unwrap().trim());
    for (n, port) in ports().into_iter().enumerate() {
        let id = 1_000 * (n as i64 + 1) + i64::from(std::process::id() % 1000);
        let w = roundtrip(
            port,
            "POST",
            &format!("/notes?id={id}"),
            &[("Lifeguard-Read-Preference", "replica-preferred")],
            Some(b"hello"),
        );
        assert_eq!(w.status, 201, "{}", String::from_utf8_lossy(&w.body));
        let token = w
            .header("Lifeguard-Consistency-Token")
            .expect("a committed write returns a token")
            .to_string();
        assert!(token.starts_with("v1."), "{token}");
        assert_eq!(w.header("Lifeguard-Served-By"), Some("primary"));

        let r = roundtrip(
            port,
            "GET",
            &format!("/notes?id={id}"),
            &[
                ("Lifeguard-Read-Preference", "replica-preferred"),
                ("Lifeguard-Consistency-Token", &token),
            ],
            None,
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["found"], "hello", "the read sees its write");
        assert_eq!(
            r.json()["in_recovery"],
            false,
            "the paused replica cannot satisfy the token"
        );
        assert!(
            r.header("Lifeguard-Consistency-Token").is_none(),
            "a read commits nothing"
        );
    }
    drop(paused);
    let _ = &s.table;
}

#[test]
fn malformed_headers_are_400_problems_and_never_reach_handlers() {
    for port in ports() {
        // (Control characters never get this far: httparse refuses them and may_minihttp
        // closes the connection.)
        let long_id = "x".repeat(200);
        for (name, value) in [
            ("Lifeguard-Read-Preference", "secondary"),
            ("Lifeguard-Max-Staleness", "soon"),
            ("Lifeguard-Consistency-Token", "v9.bad"),
            ("Lifeguard-Timeout", "0"),
            ("Lifeguard-Request-Id", "has space"),
            ("Lifeguard-Request-Id", &long_id),
        ] {
            // /panic would answer 500 if the handler ran.
            let r = roundtrip(port, "GET", "/panic", &[(name, value)], None);
            assert_problem(&r, 400, Some(name));
            assert!(r.header("Lifeguard-Request-Id").is_some());
        }
    }
}

#[test]
fn minihttp_closes_the_connection_unanswered_on_a_seventeenth_header() {
    // may_minihttp 0.1.11 parses at most 16 headers; the 17th fails the parse before any
    // service code runs. Host is one of them.
    let port = server().mini;
    let headers: Vec<(String, String)> = (0..16).map(|i| (format!("X-H{i}"), "1".into())).collect();
    let hs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let mut s = connect(port);
    s.write_all(&request("GET", "/where", &hs, None)).unwrap();
    let mut buf = Vec::new();
    let n = std::io::Read::read_to_end(&mut s, &mut buf).unwrap_or(0);
    assert_eq!(n, 0, "no response: {}", String::from_utf8_lossy(&buf));
    // 15 extra + Host = 16 is fine, and the server is still up.
    let r = roundtrip(port, "GET", "/where", &hs[..15], None);
    assert_eq!(r.status, 200);
}

#[test]
fn bad_content_length_is_a_400_and_the_server_survives() {
    for port in ports() {
        for cl in ["abc", "-1", "1 2", "+5", "99999999999999999999999"] {
            let mut s = connect(port);
            s.write_all(
                format!("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: {cl}\r\n\r\n")
                    .as_bytes(),
            )
            .unwrap();
            let r = read_responses(&mut s, 1).remove(0);
            assert_problem(&r, 400, Some("Content-Length"));
            assert_eq!(r.header("Connection"), Some("close"));
        }
        // Two different lengths.
        let mut s = connect(port);
        s.write_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        )
        .unwrap();
        assert_problem(&read_responses(&mut s, 1)[0], 400, Some("Content-Length"));
        // Chunked is not supported.
        let mut s = connect(port);
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap();
        assert_problem(&read_responses(&mut s, 1)[0], 501, None);
        // Still serving.
        assert_eq!(
            roundtrip(port, "POST", "/echo", &[], Some(b"abc")).json()["len"],
            3
        );
    }
}

#[test]
fn oversized_bodies_are_413_and_small_ones_keep_the_connection_in_sync() {
    for port in ports() {
        // Over max_body (1024) but within max_drain (4096): drained, the next request works.
        let mut s = connect(port);
        let big = vec![b'x'; 2000];
        let mut bytes = request(
            "POST",
            "/echo",
            &[("Lifeguard-Request-Id", "big")],
            Some(&big),
        );
        bytes.extend(request(
            "POST",
            "/echo",
            &[("Lifeguard-Request-Id", "small")],
            Some(b"ok"),
        ));
        s.write_all(&bytes).unwrap();
        let rs = read_responses(&mut s, 2);
        assert_problem(&rs[0], 413, None);
        assert_eq!(rs[0].header("Lifeguard-Request-Id"), Some("big"));
        assert_eq!(rs[1].status, 200);
        assert_eq!(rs[1].json()["len"], 2);
        assert_eq!(rs[1].header("Lifeguard-Request-Id"), Some("small"));

        // Over max_drain: 413 with Connection: close, body never read.
        let mut s = connect(port);
        s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n")
            .unwrap();
        let r = read_responses(&mut s, 1).remove(0);
        assert_problem(&r, 413, None);
        assert_eq!(r.header("Connection"), Some("close"));
    }
}

#[test]
fn pipelined_requests_get_their_own_headers() {
    for port in ports() {
        let mut s = connect(port);
        let n = 40;
        let mut bytes = Vec::new();
        for i in 0..n {
            let id = format!("pipe-{i}-{}", std::process::id());
            let pref = if i % 2 == 0 {
                "primary"
            } else {
                "primary-preferred"
            };
            let path = match i % 4 {
                0 => "/where",
                1 => "/peek",
                2 => "/where",
                _ => "/nowhere",
            };
            bytes.extend(request(
                "GET",
                path,
                &[
                    ("Lifeguard-Request-Id", &id),
                    ("Lifeguard-Read-Preference", pref),
                ],
                None,
            ));
        }
        s.write_all(&bytes).unwrap();
        let rs = read_responses(&mut s, n);
        for (i, r) in rs.iter().enumerate() {
            let id = format!("pipe-{i}-{}", std::process::id());
            assert_eq!(
                r.header("Lifeguard-Request-Id"),
                Some(id.as_str()),
                "response {i}"
            );
            assert!(r.headers.len() <= 16 + 3);
            match i % 4 {
                0 | 2 => assert_eq!(r.json()["request_id"], id),
                1 => {
                    assert_eq!(r.json()["explicit"], id);
                    assert_eq!(r.json()["current"], id);
                }
                _ => assert_problem(r, 404, None),
            }
        }
    }
}

#[test]
fn coroutine_local_never_leaks_across_requests_or_panics() {
    for port in ports() {
        let mut s = connect(port);
        let token = "v1.1.1.10";
        let mut bytes = request(
            "GET",
            "/peek",
            &[
                ("Lifeguard-Read-Preference", "primary"),
                ("Lifeguard-Consistency-Token", token),
            ],
            None,
        );
        bytes.extend(request(
            "GET",
            "/panic",
            &[
                ("Lifeguard-Read-Preference", "primary"),
                ("Lifeguard-Consistency-Token", token),
            ],
            None,
        ));
        bytes.extend(request("GET", "/peek", &[], None));
        s.write_all(&bytes).unwrap();
        let rs = read_responses(&mut s, 3);
        assert_eq!(rs[0].json()["preference"], "primary");
        assert_eq!(rs[0].json()["token"], token);
        // The panic is a generic 500: nothing of the panic message leaks.
        assert_problem(&rs[1], 500, None);
        assert!(!String::from_utf8_lossy(&rs[1].body).contains("secret"));
        // Same connection coroutine, no headers: defaults.
        assert_eq!(rs[2].json()["preference"], "replica-preferred");
        assert_eq!(rs[2].json()["token"], serde_json::Value::Null);
        assert_ne!(rs[2].json()["current"], rs[0].json()["current"]);
    }
}

#[test]
fn request_timeout_bounds_statements() {
    for port in ports() {
        let r = roundtrip(
            port,
            "GET",
            "/sleep",
            &[
                ("Lifeguard-Timeout", "200"),
                ("Lifeguard-Read-Preference", "primary"),
            ],
            None,
        );
        assert_eq!(r.status, 504, "{}", String::from_utf8_lossy(&r.body));
        // The budget starts when the headers are parsed; the statement gets what is left.
        let ms = r.json()["timeout_ms"].as_u64().unwrap();
        assert!((150..=200).contains(&ms), "{ms}");
    }
}

#[test]
fn minihttp_response_headers_stay_within_sixteen_and_are_sanitised() {
    let r = many_headers(server().mini);
    // may_minihttp adds Server, Date and Content-Length outside the 16.
    assert_eq!(r.headers.len(), 16 + 3, "{:?}", r.headers);
}

/// `GET /many-headers` (30 extra headers, two invalid ones) on `port`: the request id is
/// kept (Lifeguard headers come first, so they win any budget) and the invalid headers
/// are dropped.
fn many_headers(port: u16) -> Resp {
    let r = roundtrip(
        port,
        "GET",
        "/many-headers",
        &[("Lifeguard-Request-Id", "many")],
        None,
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Lifeguard-Request-Id"), Some("many"));
    assert!(r.header("Set-Cookie").is_none());
    assert!(r.header("X-Inject").is_none());
    r
}

#[test]
fn health_and_metrics() {
    for port in ports() {
        let live = roundtrip(port, "GET", "/health/live", &[], None);
        assert_eq!(live.status, 200);
        let ready = roundtrip(port, "GET", "/health/ready", &[], None);
        assert_eq!(
            ready.status,
            200,
            "{}",
            String::from_utf8_lossy(&ready.body)
        );
        assert_eq!(ready.json()["primary"]["answers"], true);

        // A policy needing more replicas than exist is not ready.
        let lg = Lifeguard::new(server().pool.clone(), Settings::default());
        let r = lg.ready(&ReadyPolicy {
            require_replicas: 5,
            ..ReadyPolicy::default()
        });
        assert_eq!(r.status, 503);

        roundtrip(
            port,
            "GET",
            "/where",
            &[("Lifeguard-Read-Preference", "primary")],
            None,
        );
        let m = roundtrip(port, "GET", "/metrics", &[], None);
        assert_eq!(m.status, 200);
        assert!(m
            .header("Content-Type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4"));
        let text = String::from_utf8(m.body).unwrap();
        assert!(
            text.contains("lifeguard_http_requests_total{route=\"where\",status=\"200\"}"),
            "{text}"
        );
        assert!(text.contains("lifeguard_http_request_duration_seconds_bucket{route=\"where\""));
        assert!(
            text.contains("lifeguard_pool"),
            "the pool's series are there too"
        );
    }
}

/// Reads to the end of the stream: the server closed the connection after its responses.
fn assert_closed(s: &mut std::net::TcpStream) {
    let mut rest = Vec::new();
    let n = std::io::Read::read_to_end(s, &mut rest).expect("the server closes");
    assert_eq!(n, 0, "nothing after: {}", String::from_utf8_lossy(&rest));
}

#[test]
fn own_server_takes_browser_sized_heads_and_answers_431_past_its_limits() {
    let port = server().own;
    let headers: Vec<(String, String)> = (0..64)
        .map(|i| (format!("Sec-Fetch-{i}"), "same-origin".into()))
        .collect();
    let hs: Vec<(&str, &str)> = headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    // 40 + Host: what a browser POST with cookies and client hints sends, and more.
    let r = roundtrip(port, "GET", "/where", &hs[..40], None);
    assert_eq!(r.status, 200, "{}", r.text());

    // 64 + Host: one past the default limit.
    let mut s = connect(port);
    s.write_all(&request("GET", "/where", &hs, None)).unwrap();
    let r = read_responses(&mut s, 1).remove(0);
    assert_problem(&r, 431, None);
    assert!(r.json()["detail"].as_str().unwrap().contains("64 headers"));
    assert_eq!(r.header("Connection"), Some("close"));
    assert!(r.header("Lifeguard-Request-Id").is_some());
    assert_closed(&mut s);

    // A head longer than 16 KiB, complete or not.
    let long = "v".repeat(20 << 10);
    for complete in [true, false] {
        let mut s = connect(port);
        let mut bytes = request("GET", "/where", &[("X-Long", &long)], None);
        if !complete {
            bytes.truncate(bytes.len() - 4);
        }
        s.write_all(&bytes).unwrap();
        let r = read_responses(&mut s, 1).remove(0);
        assert_problem(&r, 431, None);
        assert_closed(&mut s);
    }
    assert_eq!(roundtrip(port, "GET", "/where", &[], None).status, 200);
}

#[test]
fn own_server_sends_every_response_header_sanitised() {
    let r = many_headers(server().own);
    for i in 0..30 {
        let value = format!("value-{i}");
        assert_eq!(r.header(&format!("X-Extra-{i}")), Some(value.as_str()));
    }
    assert_eq!(r.header("Server"), Some("lifeguard"));
    assert!(r.header("Date").is_some_and(|d| d.ends_with(" GMT")));
}

#[test]
fn own_server_answers_malformed_heads_with_400_and_closes() {
    let port = server().own;
    for head in [
        &b"GET /where HTTP/1.1\r\nHost: t\r\nNo colon here\r\n\r\n"[..],
        b"GET /where HTTP/1.1\r\nHost: t\r\nX-Ctl: a\x01b\r\n\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        b"GET /where HTTP/9.9\r\n\r\n",
    ] {
        let mut s = connect(port);
        s.write_all(head).unwrap();
        let r = read_responses(&mut s, 1).remove(0);
        assert_problem(&r, 400, None);
        assert_eq!(r.header("Connection"), Some("close"));
        assert_closed(&mut s);
    }
}

#[test]
fn own_server_answers_expect_continue_and_honours_connection_close() {
    let port = server().own;
    // 100 Continue, then the body is read.
    let mut s = connect(port);
    s.write_all(
        b"POST /echo HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].status, 100);
    s.write_all(b"abc").unwrap();
    let r = read_responses(&mut s, 1).remove(0);
    assert_eq!(r.json()["len"], 3);
    assert_eq!(r.header("Connection"), None, "still open");

    // Refused before the body is read: answered without 100, then closed.
    s.write_all(
        b"POST /nowhere HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .unwrap();
    let r = read_responses(&mut s, 1).remove(0);
    assert_problem(&r, 404, None);
    assert_eq!(r.header("Connection"), Some("close"));
    assert_closed(&mut s);

    // Connection: close from the client.
    let mut s = connect(port);
    s.write_all(&request("GET", "/where", &[("Connection", "close")], None))
        .unwrap();
    let r = read_responses(&mut s, 1).remove(0);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("Connection"), Some("close"));
    assert_closed(&mut s);

    // HTTP/1.0 closes unless it asks to keep the connection.
    let mut s = connect(port);
    s.write_all(b"GET /health/live HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].status, 200);
    assert_closed(&mut s);
    let mut s = connect(port);
    let keep = b"GET /health/live HTTP/1.0\r\nConnection: keep-alive\r\n\r\n";
    s.write_all(&[&keep[..], &keep[..]].concat()).unwrap();
    for r in read_responses(&mut s, 2) {
        assert_eq!(r.status, 200);
        assert_eq!(r.header("Connection"), Some("keep-alive"));
    }
}
