//! TLS against the real servers: every `sslmode`, the certificate checks, client
//! certificates, channel binding, `require_auth`, and the pipelined connection, COPY and
//! cancellation over TLS. `scripts/services` gives the servers a throw-away CA and
//! `hostssl`/`hostnossl` roles (`lifeguard_tls` only over TLS, `lifeguard_plain` only
//! without, `lifeguard_cert` by client certificate).

use std::fs;
use std::io::Write;
use std::time::{Duration, Instant};

use lifeguard_core::pg::{Config, Connection, SslMode};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::init;
use lifeguard_tests::scratch::ScratchServer;
use lifeguard_tests::{app_url, clear_url, env_var, md5_url, primary_url};

fn tls_url() -> String {
    env_var("LIFEGUARD_TLS_URL")
}

fn ca() -> String {
    env_var("LIFEGUARD_TLS_CA")
}

/// `url` with more query parameters.
fn with(url: &str, params: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{params}")
}

fn open(url: &str) -> lifeguard_core::Result<Connection> {
    init();
    Connection::open(url)
}

fn uses_tls(conn: &Connection) -> bool {
    conn.query_one(
        "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        &[],
    )
    .expect("read pg_stat_ssl")
    .get(0)
}

fn refused(url: &str) -> Error {
    match open(url) {
        Ok(_) => panic!("{url}: expected the connection to be refused"),
        Err(e) => e,
    }
}

fn tls_message(e: &Error) -> &str {
    match e {
        Error::Tls(m) => m,
        other => panic!("expected Error::Tls, got {other:?}"),
    }
}

fn config_message(e: &Error) -> &str {
    match e {
        Error::Config(m) => m,
        other => panic!("expected Error::Config, got {other:?}"),
    }
}

#[test]
fn every_sslmode_against_a_server_with_tls() {
    let app = app_url();
    for (mode, tls) in [
        ("disable", false),
        ("allow", false),
        ("prefer", true),
        ("require", true),
    ] {
        let conn = open(&with(&app, &format!("sslmode={mode}")))
            .unwrap_or_else(|e| panic!("sslmode={mode}: {e}"));
        assert_eq!(uses_tls(&conn), tls, "sslmode={mode}");
    }
    // Without sslmode a URL means prefer: TLS, as libpq.
    assert!(uses_tls(&open(&app).expect("default sslmode")));
    let ca = ca();
    // verify-ca checks the chain but not the name, so the IP address passes.
    let conn =
        open(&with(&app, &format!("sslmode=verify-ca&sslrootcert={ca}"))).expect("verify-ca");
    assert!(uses_tls(&conn));
    let conn = open(&tls_url()).expect("verify-full with the name in the certificate");
    assert!(uses_tls(&conn));
}

#[test]
fn prefer_and_allow_try_the_other_way_when_the_server_refuses() {
    // lifeguard_plain may only connect in plaintext: prefer's TLS attempt is refused and
    // it retries without TLS; require cannot.
    let plain = env_var("LIFEGUARD_PLAIN_URL");
    let conn = open(&with(&plain, "sslmode=prefer")).expect("prefer falls back");
    assert!(!uses_tls(&conn));
    let e = refused(&with(&plain, "sslmode=require"));
    assert_eq!(e.sqlstate(), Some("28000"), "{e}");
    // lifeguard_tls may only connect over TLS: allow's plaintext attempt is refused and it
    // retries with TLS; disable cannot.
    let tls_only = tls_url().replace("localhost", "127.0.0.1");
    let tls_only = tls_only.split('?').next().expect("url").to_owned();
    let conn = open(&with(&tls_only, "sslmode=allow")).expect("allow upgrades");
    assert!(uses_tls(&conn));
    let e = refused(&with(&tls_only, "sslmode=disable"));
    assert_eq!(e.sqlstate(), Some("28000"), "{e}");
}

#[test]
fn verification_failures_name_their_cause() {
    // The certificate names localhost only.
    let by_ip = tls_url().replace("localhost", "127.0.0.1");
    let m = tls_message(&refused(&by_ip)).to_owned();
    assert!(m.contains("does not name \"127.0.0.1\""), "{m}");
    let wrong_ca = tls_url().replace(&ca(), &env_var("LIFEGUARD_TLS_OTHER_CA"));
    let m = tls_message(&refused(&wrong_ca)).to_owned();
    assert!(m.contains("does not chain to the roots"), "{m}");
    let e = refused(&with(&app_url(), "sslmode=verify-ca"));
    assert!(config_message(&e).contains("sslrootcert"), "{e}");
    let e = refused(&with(
        &app_url(),
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.pem",
    ));
    assert!(tls_message(&e).contains("/nonexistent/ca.pem"), "{e}");
    // prefer never checks the certificate, so it does not read the roots either (libpq).
    let conn = open(&with(
        &app_url(),
        "sslmode=prefer&sslrootcert=/nonexistent/ca.pem",
    ))
    .expect("prefer ignores sslrootcert");
    assert!(uses_tls(&conn));
    // The setters are held to the parser's rules when connecting.
    let built = Config::parse(&app_url())
        .expect("parse")
        .ssl_system_roots()
        .ssl_mode(SslMode::Require);
    let e = Connection::connect(&built).expect_err("too weak for system roots");
    assert!(config_message(&e).contains("too weak"), "{e}");
}

/// A scratch server with `extra` appended to its configuration.
fn scratch_with(extra: &str) -> ScratchServer {
    let mut server = ScratchServer::init();
    let mut conf = fs::OpenOptions::new()
        .append(true)
        .open(server.data_dir().join("postgresql.conf"))
        .expect("open postgresql.conf");
    writeln!(conf, "{extra}").expect("write postgresql.conf");
    server.start();
    server
}

#[test]
fn an_expired_certificate_and_a_server_without_tls() {
    let expired = scratch_with(&format!(
        "ssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'",
        env_var("LIFEGUARD_TLS_EXPIRED_CERT"),
        env_var("LIFEGUARD_TLS_EXPIRED_KEY")
    ));
    let url = format!(
        "postgres://postgres@localhost:{}/postgres?sslmode=verify-full&sslrootcert={}",
        expired.port(),
        ca()
    );
    let m = tls_message(&refused(&url)).to_owned();
    assert!(m.contains("expired"), "{m}");
    // require without a root certificate does not look at the certificate, as libpq.
    let url = format!(
        "postgres://postgres@127.0.0.1:{}/postgres?sslmode=require",
        expired.port()
    );
    assert!(uses_tls(&open(&url).expect("require ignores the validity")));

    let plain = ScratchServer::start_new();
    let url = format!("postgres://postgres@127.0.0.1:{}/postgres", plain.port());
    let m = tls_message(&refused(&with(&url, "sslmode=require"))).to_owned();
    assert!(m.contains("does not accept TLS"), "{m}");
    assert!(!uses_tls(
        &open(&with(&url, "sslmode=prefer")).expect("prefer without TLS")
    ));
    // PostgreSQL 15 does not speak TLS before the start-up packet: a clear failure, in time.
    let started = Instant::now();
    let e = refused(&with(
        &url,
        "sslmode=require&sslnegotiation=direct&connect_timeout=5",
    ));
    assert!(started.elapsed() < Duration::from_secs(6), "{e}");
    assert!(matches!(e, Error::Tls(_) | Error::Connection(_)), "{e:?}");
}

#[test]
fn a_client_certificate_logs_in_where_only_a_certificate_may() {
    let conn = open(&env_var("LIFEGUARD_CERT_URL")).expect("client certificate login");
    assert!(uses_tls(&conn));
    let user: String = conn
        .query_one("SELECT current_user::text", &[])
        .expect("current_user")
        .get(0);
    assert_eq!(user, "lifeguard_cert");
    let without = tls_url().replace("lifeguard_tls:lifeguard_tls_pw", "lifeguard_cert");
    let e = refused(&without);
    assert_eq!(e.sqlstate(), Some("28000"), "{e}");
    let e = refused(&with(
        &without,
        &format!("sslcert={}", env_var("LIFEGUARD_TLS_CLIENT_CERT")),
    ));
    assert!(config_message(&e).contains("sslkey"), "{e}");
}

#[test]
fn channel_binding_binds_scram_to_the_tls_session() {
    // The server checks the binding: a wrong certificate hash fails the SCRAM exchange.
    let conn = open(&with(&tls_url(), "channel_binding=require")).expect("SCRAM-SHA-256-PLUS");
    assert!(uses_tls(&conn));
    let e = refused(&with(&app_url(), "sslmode=disable&channel_binding=require"));
    assert!(
        config_message(&e).contains("channel_binding=require"),
        "{e}"
    );
    // Binding cannot be had with MD5, so require refuses before sending the hash.
    let e = refused(&with(&md5_url(), "channel_binding=require"));
    assert!(config_message(&e).contains("md5"), "{e}");
    open(&with(&tls_url(), "channel_binding=disable")).expect("plain SCRAM over TLS");
}

#[test]
fn require_auth_refuses_weaker_methods_before_the_password_leaves() {
    // The man-in-the-middle case: a SCRAM user whose server asks for the clear password.
    let e = refused(&with(&clear_url(), "require_auth=scram-sha-256"));
    let m = config_message(&e).to_owned();
    assert!(m.contains("asks for password authentication"), "{m}");
    assert!(m.contains("allowed: scram-sha-256"), "{m}");
    assert!(
        config_message(&refused(&with(&clear_url(), "require_auth=!password")))
            .contains("password")
    );
    open(&with(&md5_url(), "require_auth=md5,scram-sha-256")).expect("md5 allowed");
    open(&with(&app_url(), "require_auth=scram-sha-256")).expect("scram allowed");
    // The superuser is trusted on loopback: no authentication at all is "none".
    let e = refused(&with(&primary_url(), "require_auth=scram-sha-256"));
    assert!(config_message(&e).contains("asks for none"), "{e}");
    open(&with(&primary_url(), "require_auth=none")).expect("none allowed");
    let e = refused(&with(&app_url(), "require_auth=!scram-sha-256"));
    assert!(config_message(&e).contains("scram-sha-256"), "{e}");
}

#[test]
fn pipelining_copy_and_cancel_work_over_tls() {
    let url = tls_url();
    let conn = std::sync::Arc::new(open(&url).expect("connect"));
    // Many coroutines share the connection's one TLS session.
    let handles: Vec<_> = (0..16)
        .map(|i| {
            let conn = conn.clone();
            may::go!(move || {
                for j in 0..50i32 {
                    let n = i * 1000 + j;
                    let back: i32 = conn
                        .query_one("SELECT $1::int4", &[&n])
                        .expect("select")
                        .get(0);
                    assert_eq!(back, n);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("worker");
    }
    // Rows larger than one TLS record.
    let big: String = conn
        .query_one("SELECT repeat('x', 100000)", &[])
        .expect("big row")
        .get(0);
    assert_eq!(big.len(), 100_000);
    let sent: String = "y".repeat(70_000);
    let echoed: String = conn
        .query_one("SELECT $1::text", &[&sent])
        .expect("big param")
        .get(0);
    assert_eq!(echoed, sent);

    let mut rows = String::new();
    for n in 0..5000 {
        rows.push_str(&format!("{n}\trow {n}\n"));
    }
    let mut session = open(&url).expect("connect");
    session
        .batch_execute("CREATE TEMP TABLE tls_copy (n int4, s text)")
        .expect("temp table");
    let mut copy = session
        .copy_in("COPY tls_copy FROM STDIN")
        .expect("copy in");
    copy.send(rows.as_bytes()).expect("copy data");
    assert_eq!(copy.finish().expect("copy finish"), 5000);
    let out = session
        .copy_out("COPY tls_copy TO STDOUT")
        .expect("copy out")
        .read_all()
        .expect("copy out data");
    assert_eq!(out, rows.as_bytes());

    // The cancel request goes over TLS too (it opens its own connection the same way).
    let session = open(&url).expect("connect");
    let token = session.cancel_token();
    let canceller = may::go!(move || {
        may::coroutine::sleep(Duration::from_millis(300));
        token.cancel()
    });
    let started = Instant::now();
    let e = session
        .query("SELECT pg_sleep(30)", &[])
        .expect_err("cancelled");
    assert_eq!(e.sqlstate(), Some("57014"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(10));
    canceller.join().expect("canceller").expect("cancel sent");
}
