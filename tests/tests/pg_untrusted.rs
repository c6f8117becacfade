//! A hostile or corrupted server: sizes and shapes it claims must turn into an `Error`, never
//! an abort, an unbounded allocation or a stack overflow.
//!
//! The peer is a fake server on loopback (the real server cannot be made to lie), speaking
//! just enough of the extended protocol: it answers each request message by message, with
//! the columns and values the test scripts for each SQL text.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Duration;

use lifeguard_core::pg::Connection;
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::in_coroutine_within;

const INT4: u32 = 23;
const TEXT: u32 = 25;
const OID: u32 = 26;
const TEXT_ARRAY: u32 = 1009;

fn msg(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn startup() -> Vec<u8> {
    let mut out = msg(b'R', &0i32.to_be_bytes());
    let mut key = 4242i32.to_be_bytes().to_vec();
    key.extend_from_slice(&7i32.to_be_bytes());
    out.extend(msg(b'K', &key));
    out.extend(msg(b'S', b"server_version\x0015.0\x00"));
    out.extend(msg(b'Z', b"I"));
    out
}

fn row_description(columns: &[(&str, u32)]) -> Vec<u8> {
    let mut body = (columns.len() as i16).to_be_bytes().to_vec();
    for (name, oid) in columns {
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(&0i32.to_be_bytes());
        body.extend_from_slice(&0i16.to_be_bytes());
        body.extend_from_slice(&oid.to_be_bytes());
        body.extend_from_slice(&(-1i16).to_be_bytes());
        body.extend_from_slice(&(-1i32).to_be_bytes());
        body.extend_from_slice(&1i16.to_be_bytes());
    }
    msg(b'T', &body)
}

fn data_row(values: &[Option<Vec<u8>>]) -> Vec<u8> {
    let mut body = (values.len() as i16).to_be_bytes().to_vec();
    for v in values {
        match v {
            Some(v) => {
                body.extend_from_slice(&(v.len() as i32).to_be_bytes());
                body.extend_from_slice(v);
            }
            None => body.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    msg(b'D', &body)
}

/// What the fake says about one SQL text: its columns, and the row each execution returns
/// (`n` counts executions of that text).
struct Script {
    columns: fn(&str) -> Vec<(&'static str, u32)>,
    row: fn(&str, usize) -> Vec<Option<Vec<u8>>>,
}

fn cstr(body: &[u8]) -> (String, &[u8]) {
    let end = body.iter().position(|&b| b == 0).unwrap_or(body.len());
    let rest = body.get(end + 1..).unwrap_or(&[]);
    (String::from_utf8_lossy(&body[..end]).into_owned(), rest)
}

/// Answers every frontend message until the client goes away.
/// Reads the client's start-up packet (a length, then that many bytes less four).
fn read_startup(s: &mut TcpStream) -> std::io::Result<()> {
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut rest = vec![0u8; (u32::from_be_bytes(len) as usize).saturating_sub(4)];
    s.read_exact(&mut rest)
}

fn serve(s: &mut TcpStream, script: &Script) -> std::io::Result<()> {
    read_startup(s)?;
    s.write_all(&startup())?;
    let mut sql_of: HashMap<String, String> = HashMap::new();
    let mut runs: HashMap<String, usize> = HashMap::new();
    let mut bound = String::new();
    let mut out = Vec::new();
    loop {
        let mut head = [0u8; 5];
        s.read_exact(&mut head)?;
        let len = u32::from_be_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let mut body = vec![0u8; len.saturating_sub(4)];
        s.read_exact(&mut body)?;
        match head[0] {
            b'P' => {
                let (name, rest) = cstr(&body);
                let (sql, _) = cstr(rest);
                sql_of.insert(name, sql);
                out.extend(msg(b'1', b""));
            }
            b'D' => {
                let (name, _) = cstr(&body[1..]);
                let sql = sql_of.get(&name).cloned().unwrap_or_default();
                let params = if sql.contains("$1") { 1i16 } else { 0 };
                let mut t = params.to_be_bytes().to_vec();
                if params == 1 {
                    t.extend_from_slice(&OID.to_be_bytes());
                }
                out.extend(msg(b't', &t));
                out.extend(row_description(&(script.columns)(&sql)));
            }
            b'B' => {
                let (_, rest) = cstr(&body);
                let (stmt, _) = cstr(rest);
                bound = sql_of.get(&stmt).cloned().unwrap_or_default();
                out.extend(msg(b'2', b""));
            }
            b'E' => {
                let n = runs.entry(bound.clone()).or_default();
                out.extend(data_row(&(script.row)(&bound, *n)));
                *n += 1;
                out.extend(msg(b'C', b"SELECT 1\x00"));
            }
            b'S' => {
                out.extend(msg(b'Z', b"I"));
                s.write_all(&out)?;
                out.clear();
            }
            b'X' => return Ok(()),
            _ => {}
        }
    }
}

fn fake(script: Script) -> (u16, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(20)));
            let _ = serve(&mut s, &script);
        }
    });
    (port, handle)
}

fn url(port: u16) -> String {
    format!("postgres://postgres:pw@127.0.0.1:{port}/postgres?connect_timeout=2&sslmode=disable")
}

/// A binary array header of one dimension claiming `count` elements, and no elements.
fn lying_array(count: i32, elem: u32) -> Vec<u8> {
    let mut out = 1i32.to_be_bytes().to_vec();
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&elem.to_be_bytes());
    out.extend_from_slice(&count.to_be_bytes());
    out.extend_from_slice(&1i32.to_be_bytes());
    out
}

#[test]
fn an_array_header_claiming_two_billion_elements_is_a_decode_error_not_an_abort() {
    let (port, server) = fake(Script {
        columns: |_| vec![("xs", TEXT_ARRAY), ("n", INT4)],
        row: |_, _| {
            vec![
                Some(lying_array(i32::MAX, TEXT)),
                Some(7i32.to_be_bytes().to_vec()),
            ]
        },
    });
    let url = url(port);
    let (xs, n) = in_coroutine_within(Duration::from_secs(20), move || {
        let conn = Connection::open(&url).expect("connect to the fake");
        let row = conn
            .query_one("SELECT xs, n", &[])
            .expect("the row arrives");
        // Without the check, `Vec<String>::from_sql` reserves 2^31-1 Strings (48 GiB) and
        // the allocator aborts the process.
        let xs = row.try_get::<_, Vec<String>>(0);
        let n = row.try_get::<_, i32>(1);
        (xs.map(|v| v.len()), n)
    });
    match xs {
        Err(Error::Decode { source, .. }) => {
            let why = source.map(|s| s.to_string()).unwrap_or_default();
            assert!(why.contains("2147483647 elements"), "{why}");
        }
        other => panic!("expected a decode error, got {other:?}"),
    }
    assert_eq!(n.unwrap(), 7, "the row's other values stay readable");
    server.join().unwrap();
}

/// The type lookup query the client sends names `pg_type`; the fake describes an endless
/// chain of domains, each over the next unknown OID.
fn type_columns(sql: &str) -> Vec<(&'static str, u32)> {
    if sql.contains("pg_type") {
        vec![
            ("typname", TEXT),
            ("typtype", TEXT),
            ("nspname", TEXT),
            ("typelem", OID),
            ("typbasetype", OID),
            ("typrelid", OID),
            ("rngsubtype", OID),
            ("typcategory", TEXT),
            ("labels", TEXT_ARRAY),
        ]
    } else {
        vec![("v", 900_000)]
    }
}

fn type_row(sql: &str, n: usize) -> Vec<Option<Vec<u8>>> {
    if !sql.contains("pg_type") {
        return vec![Some(vec![0; 4])];
    }
    let base = 900_001 + n as u32;
    vec![
        Some(format!("d{n}").into_bytes()),
        Some(b"d".to_vec()),
        Some(b"public".to_vec()),
        Some(0u32.to_be_bytes().to_vec()),
        Some(base.to_be_bytes().to_vec()),
        Some(0u32.to_be_bytes().to_vec()),
        Some(0u32.to_be_bytes().to_vec()),
        Some(b"U".to_vec()),
        None,
    ]
}

#[test]
fn an_endless_chain_of_types_is_an_error_not_a_stack_overflow() {
    let (port, server) = fake(Script {
        columns: type_columns,
        row: type_row,
    });
    let url = url(port);
    let r = in_coroutine_within(Duration::from_secs(20), move || {
        let conn = Connection::open(&url).expect("connect to the fake");
        conn.query("SELECT v", &[]).map(|rows| rows.len())
    });
    match r {
        Err(Error::Protocol(m)) => assert!(m.contains("levels deep"), "{m}"),
        other => panic!("expected a protocol error, got {other:?}"),
    }
    server.join().unwrap();
}

#[test]
fn a_start_up_message_over_max_message_size_is_refused_at_its_header() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_startup(&mut s).unwrap();
        // A ParameterStatus claiming 100 KB, then silence: only the header can tell.
        let mut claim = vec![b'S'];
        claim.extend_from_slice(&100_000u32.to_be_bytes());
        s.write_all(&claim).unwrap();
        // Held open until the client gives up on it.
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.read(&mut [0u8; 1]);
    });
    let url = format!("{}&max_message_size=8192", url(port));
    let started = std::time::Instant::now();
    let outcome = in_coroutine_within(Duration::from_secs(10), move || {
        Connection::open(&url).map(|_| ())
    });
    let e = outcome.expect_err("the claim exceeds the connection's cap");
    assert!(
        matches!(&e, Error::Protocol(m) if m.contains("max_message_size")),
        "{e:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "refused at the header"
    );
    server.join().unwrap();
}
