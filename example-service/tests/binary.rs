//! The `example-service` binary as an operator runs it: configuration from the environment
//! and `--listen`, at most `HTTP_POOL_SIZE` PostgreSQL connections per server under load,
//! and a graceful shutdown on SIGTERM (requests in flight finish, exit code 0).
//!
//! Needs `scripts/services up` and `eval "$(scripts/services env)"` (or `scripts/test`).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use lifeguard_core::pg::Connection;
use lifeguard_core::Executor;

const BIN: &str = env!("CARGO_BIN_EXE_example-service");
const SCHEMA_PREFIX: &str = "example_bin_";

/// The child process and its schema; both go away at the end, also on panic.
struct Service {
    child: Child,
    schema: String,
    port: u16,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Ok(conn) = Connection::open(&primary_url()) {
            let _ = conn.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// Starts the binary on `http_server` (`LIFEGUARD_HTTP_SERVER`).
fn spawn(pool_size: &str, http_server: &str) -> Service {
    let conn = Connection::open(&primary_url()).unwrap();
    drop_stale_schemas(&conn, SCHEMA_PREFIX);
    let schema = format!("{SCHEMA_PREFIX}{}_{http_server}", std::process::id());
    let port = free_port();
    let mut cmd = Command::new(BIN);
    cmd.args(["--listen", &format!("127.0.0.1:{port}")])
        .env_remove("LIFEGUARD_PRIMARY_URL")
        .env("DATABASE_URL", primary_url())
        .env("LIFEGUARD_REPLICA_URLS", replica_urls())
        .env("HTTP_POOL_SIZE", pool_size)
        .env("LIFEGUARD_SCHEMA", &schema)
        .env("LIFEGUARD_SHUTDOWN_GRACE_MS", "5000")
        .env("LIFEGUARD_HTTP_SERVER", http_server)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // SAFETY: prctl is async-signal-safe; the child dies with this test's thread.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn example-service");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(
        line.trim(),
        format!("example-service listening on http://127.0.0.1:{port}")
    );
    Service {
        child,
        schema,
        port,
    }
}

/// Connections the service holds on the server of `url`.
fn connections(url: &str, schema: &str) -> i64 {
    let conn = Connection::open(url).unwrap();
    conn.query_one(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
        &[&format!("example-service:{schema}")],
    )
    .unwrap()
    .get(0)
}

#[test]
fn binary_stays_within_its_pool_and_shuts_down_gracefully() {
    stays_within_its_pool_and_shuts_down_gracefully("lifeguard");
}

#[test]
fn binary_on_may_minihttp_stays_within_its_pool_and_shuts_down_gracefully() {
    stays_within_its_pool_and_shuts_down_gracefully("minihttp");
}

fn stays_within_its_pool_and_shuts_down_gracefully(http_server: &str) {
    let svc = spawn("3", http_server);
    let port = svc.port;
    let replica = replica_urls().split(',').next().unwrap().to_string();

    // Load from 24 clients with every read preference, while sampling connections.
    let stop = Instant::now() + Duration::from_secs(2);
    let clients: Vec<_> = (0..24)
        .map(|i| {
            std::thread::spawn(move || {
                let prefs = ["primary", "replica-preferred", "nearest"];
                let h = [("Lifeguard-Read-Preference", prefs[i % 3])];
                let mut s = connect(port);
                let mut n = 0;
                while Instant::now() < stop {
                    let path = if i % 4 == 0 {
                        "/updates?q=5"
                    } else {
                        "/queries?q=20"
                    };
                    s.write_all(&request("GET", path, &h, None)).unwrap();
                    let r = read_responses(&mut s, 1).remove(0);
                    assert_eq!(r.status, 200, "{}", r.text());
                    n += 1;
                }
                n
            })
        })
        .collect();
    let (mut max_primary, mut max_replica) = (0, 0);
    while Instant::now() < stop {
        max_primary = max_primary.max(connections(&primary_url(), &svc.schema));
        max_replica = max_replica.max(connections(&replica, &svc.schema));
        std::thread::sleep(Duration::from_millis(50));
    }
    let served: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert!(served > 24, "{served}");
    assert!(
        (1..=3).contains(&max_primary),
        "primary connections: {max_primary}"
    );
    assert!(max_replica <= 3, "replica connections: {max_replica}");
    eprintln!("served {served} requests; at most {max_primary} primary and {max_replica} replica connections");

    // A request in flight when SIGTERM arrives still gets its answer.
    let mut s = connect(port);
    s.write_all(&request("GET", "/db", &[], None)).unwrap();
    assert_eq!(read_responses(&mut s, 1)[0].status, 200);
    s.write_all(&request("GET", "/updates?q=500", &[], None))
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let pid = svc.child.id() as i32;
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let r = read_responses(&mut s, 1).remove(0);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json().as_array().unwrap().len(), 500);

    let mut svc = svc;
    let status = wait_for(Duration::from_secs(10), || svc.child.try_wait().unwrap())
        .expect("the service exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "nothing listens after shutdown"
    );
    // Every database connection was closed.
    let gone = wait_for(Duration::from_secs(5), || {
        (connections(&primary_url(), &svc.schema) == 0 && connections(&replica, &svc.schema) == 0)
            .then_some(())
    });
    assert!(gone.is_some(), "connections left open after exit");
}

#[test]
fn usage_errors_exit_2() {
    let o = Command::new(BIN)
        .arg("--bogus")
        .env("DATABASE_URL", "postgres://x@127.0.0.1:1/x")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown argument"));
    let o = Command::new(BIN)
        .env_remove("DATABASE_URL")
        .env_remove("LIFEGUARD_PRIMARY_URL")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("DATABASE_URL"));
    let o = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stdout).contains("--listen ADDR"));
}
