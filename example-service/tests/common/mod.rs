//! Shared helpers of the end-to-end tests: a hand-written HTTP/1.1 client on std sockets,
//! the services' URLs, and schema housekeeping.
#![allow(dead_code, unused_imports)]

use std::time::Duration;

use example_service::{AppConfig, Running};
use lifeguard_core::pg::Connection;
use lifeguard_core::Executor;

/// `LIFEGUARD_PRIMARY_URL`, or a clear panic.
pub fn primary_url() -> String {
    std::env::var("LIFEGUARD_PRIMARY_URL").expect(
        "LIFEGUARD_PRIMARY_URL is not set: run scripts/services up and eval \"$(scripts/services env)\"",
    )
}

/// `LIFEGUARD_REPLICA_URLS`, or a clear panic (these tests prove replica routing).
pub fn replica_urls() -> String {
    std::env::var("LIFEGUARD_REPLICA_URLS")
        .expect("LIFEGUARD_REPLICA_URLS is not set: run scripts/services up and eval \"$(scripts/services env)\"")
}

/// The port of a postgres:// URL.
pub fn port_of(url: &str) -> i32 {
    lifeguard_core::pg::Config::parse(url).unwrap().get_port() as i32
}

pub use lifeguard_tests::http::*;
pub use lifeguard_tests::scratch::free_port;
pub use lifeguard_tests::wait_for;

/// Drops the schemas named `<prefix><pid>` whose process is gone (left by a killed run).
pub fn drop_stale_schemas(conn: &Connection, prefix: &str) {
    let rows = conn
        .query(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)",
            &[&prefix],
        )
        .unwrap();
    for row in rows {
        let name: String = row.get(0);
        let pid = name[prefix.len()..].split('_').next().unwrap_or("");
        let alive = !pid.is_empty() && std::path::Path::new(&format!("/proc/{pid}")).exists();
        if !alive {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"));
        }
    }
}

/// `GET path`.
pub fn get(port: u16, path: &str, headers: &[(&str, &str)]) -> Resp {
    roundtrip(port, "GET", path, headers, None)
}

/// A JSON request.
pub fn send_json(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &serde_json::Value,
) -> Resp {
    let mut hs = vec![("Content-Type", "application/json")];
    hs.extend_from_slice(headers);
    roundtrip(port, method, path, &hs, Some(body.to_string().as_bytes()))
}

/// Checks a problem+json reply of `status`.
pub fn assert_problem(resp: &Resp, status: u16) -> serde_json::Value {
    assert_eq!(resp.status, status, "body: {}", resp.text());
    assert_eq!(
        resp.header("Content-Type"),
        Some("application/problem+json")
    );
    let v = resp.json();
    assert_eq!(v["status"], status);
    assert!(
        v["type"].is_string() && v["title"].is_string() && v["detail"].is_string(),
        "{v}"
    );
    v
}

/// The service started in-process on a free port, in a schema of its own.
pub struct Server {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The schema its tables live in.
    pub schema: String,
    _running: Running,
}

/// Starts the service against the local primary and replicas in a fresh schema named
/// `prefix<pid>` (dropping stale ones), and waits until the replica is eligible.
pub fn start_server(prefix: &str) -> Server {
    // Before anything touches may (opening a connection starts its scheduler).
    may::config().set_workers(2).set_stack_size(0x10000);
    let conn = Connection::open(&primary_url()).expect("primary");
    drop_stale_schemas(&conn, prefix);
    let schema = format!("{prefix}{}", std::process::id());
    let port = free_port();
    let vars = [
        ("LIFEGUARD_PRIMARY_URL", primary_url()),
        ("LIFEGUARD_REPLICA_URLS", replica_urls()),
        ("LIFEGUARD_SCHEMA", schema.clone()),
        ("LIFEGUARD_DEBUG_ENDPOINTS", "1".into()),
        ("LIFEGUARD_MAX_BODY", "4096".into()),
        ("LIFEGUARD_LISTEN", format!("127.0.0.1:{port}")),
    ];
    let config = AppConfig::from_lookup(
        |n| vars.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()),
        Vec::new(),
    )
    .unwrap();
    let running = example_service::start(&config).expect("the service starts");
    wait_for(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    })
    .expect("the service listens");
    // Reads can go to the replica only once the monitor has seen it healthy.
    wait_for(Duration::from_secs(30), || {
        let r = get(
            port,
            "/debug/where",
            &[("Lifeguard-Read-Preference", "replica")],
        );
        (r.status == 200 && r.json()["in_recovery"] == true).then_some(())
    })
    .expect("the replica becomes eligible");
    Server {
        port,
        schema,
        _running: running,
    }
}
