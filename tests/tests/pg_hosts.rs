//! Several hosts in one connection string, `target_session_attrs` and
//! `load_balance_hosts`, against the real primary and replica, and a failover in a scratch
//! pair where the same host list finds the promoted server.

use std::time::{Duration, Instant};

use lifeguard_core::pg::{Config, Connection};
use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::{Error, Executor};
use lifeguard_tests::pg::init;
use lifeguard_tests::proxy::TcpProxy;
use lifeguard_tests::replica::ScratchPair;
use lifeguard_tests::scratch::{free_port, StopMode};
use lifeguard_tests::{env_var, pg_port, wait_for};

fn replica_port() -> u16 {
    env_var("LIFEGUARD_REPLICA_PORT")
        .parse()
        .expect("replica port")
}

/// A URL over `ports` on loopback as the superuser.
fn url(ports: &[u16], params: &str) -> String {
    let hosts: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    format!("postgres://postgres@{}/lifeguard?{params}", hosts.join(","))
}

fn server_port(conn: &impl Executor) -> u16 {
    let port: i32 = conn
        .query_one("SELECT inet_server_port()", &[])
        .expect("inet_server_port")
        .get(0);
    u16::try_from(port).expect("a port")
}

fn open(url: &str) -> lifeguard_core::Result<Connection> {
    init();
    Connection::open(url)
}

#[test]
fn target_session_attrs_pick_the_right_server() {
    let (primary, replica) = (pg_port(), replica_port());
    let both = [replica, primary];
    for (attrs, expected) in [
        ("any", replica),
        ("read-write", primary),
        ("primary", primary),
        ("read-only", replica),
        ("standby", replica),
        ("prefer-standby", replica),
    ] {
        let conn = open(&url(&both, &format!("target_session_attrs={attrs}")))
            .unwrap_or_else(|e| panic!("{attrs}: {e}"));
        assert_eq!(server_port(&conn), expected, "target_session_attrs={attrs}");
    }
    // The other order gives the same answers where a kind is asked for.
    let conn = open(&url(&[primary, replica], "target_session_attrs=standby")).expect("standby");
    assert_eq!(server_port(&conn), replica);
    // prefer-standby settles for the primary when no standby answers.
    let nobody = free_port();
    let conn = open(&url(
        &[nobody, primary],
        "target_session_attrs=prefer-standby",
    ))
    .expect("prefer-standby without a standby");
    assert_eq!(server_port(&conn), primary);
}

#[test]
fn an_unreachable_host_is_skipped_and_a_misfit_is_named() {
    let nobody = free_port();
    let conn = open(&url(&[nobody, pg_port()], "connect_timeout=2")).expect("skip the dead host");
    assert_eq!(server_port(&conn), pg_port());
    let e = open(&url(
        &[replica_port(), nobody],
        "target_session_attrs=read-write",
    ))
    .expect_err("no read-write host");
    let m = e.to_string();
    assert!(matches!(e, Error::Connection(_)), "{e:?}");
    assert!(
        m.contains(&format!("127.0.0.1:{} is a standby", replica_port())),
        "{m}"
    );
    assert!(m.contains("read-write"), "{m}");
    // A single host keeps its own error.
    let e = open(&url(&[nobody], "")).expect_err("refused");
    assert!(
        e.to_string().contains(&format!("127.0.0.1:{nobody}")),
        "{e}"
    );
    // The key=value form lists hosts and ports the libpq way.
    let kv = format!(
        "host=127.0.0.1,127.0.0.1 port={},{} user=postgres dbname=lifeguard target_session_attrs=primary",
        replica_port(),
        pg_port()
    );
    assert_eq!(server_port(&open(&kv).expect("key=value hosts")), pg_port());
}

#[test]
fn load_balance_hosts_random_spreads_connections() {
    // Two routes to the primary, one through a counting proxy.
    let proxy = TcpProxy::start(pg_port());
    let ports = [pg_port(), proxy.port()];
    // In order, the first host always wins.
    let kept: Vec<Connection> = (0..10)
        .map(|_| open(&url(&ports, "")).expect("connect"))
        .collect();
    assert_eq!(proxy.connections(), 0);
    drop(kept);
    let kept: Vec<Connection> = (0..40)
        .map(|_| open(&url(&ports, "load_balance_hosts=random")).expect("connect"))
        .collect();
    let through_proxy = proxy.connections();
    assert!(
        (5..=35).contains(&through_proxy),
        "{through_proxy} of {} connections went through the second host",
        kept.len()
    );
}

#[test]
fn a_pool_over_both_hosts_finds_the_promoted_primary() {
    init();
    let mut pair = ScratchPair::start();
    let hosts = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/postgres?target_session_attrs=read-write&connect_timeout=2",
        pair.primary_port(),
        pair.replica_port()
    );
    let pool = Pool::connect(PoolConfig::new(Config::parse(&hosts).expect("parse")).max_size(2))
        .expect("pool");
    pool.batch_execute("CREATE TABLE failover_w (id int PRIMARY KEY)")
        .expect("create");
    pool.execute("INSERT INTO failover_w VALUES (1)", &[])
        .expect("insert");
    assert_eq!(server_port(&pool), pair.primary_port());
    pair.wait_caught_up(Duration::from_secs(10));

    pair.stop_primary(StopMode::Immediate);
    pair.promote_replica();
    let promoted = Instant::now();
    let served = wait_for(Duration::from_secs(30), || {
        pool.execute("INSERT INTO failover_w VALUES (2)", &[]).ok()
    });
    assert!(served.is_some(), "no write within 30 s of the promotion");
    assert_eq!(server_port(&pool), pair.replica_port());
    let rows: i64 = pool
        .query_one("SELECT count(*) FROM failover_w", &[])
        .expect("count")
        .get(0);
    assert_eq!(rows, 2);
    eprintln!(
        "writes resumed {:?} after the promotion",
        promoted.elapsed()
    );
}
