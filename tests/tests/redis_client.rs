//! The coroutine Redis client against the real Redis of `scripts/services`: commands,
//! pipelining from many coroutines on few connections, scripts after a flush, ACL users and
//! database indexes, and the bounded failures (Redis gone, silent, refusing).

use std::time::{Duration, Instant};

use lifeguard_core::cache::redis::{cmd, Pipeline, RedisClient, RedisConfig, Script};
use lifeguard_core::error::RedisErrorKind;
use lifeguard_core::Error;
use lifeguard_tests::proxy::TcpProxy;
use lifeguard_tests::{redis_cli, redis_url, unique_name};

fn client() -> RedisClient {
    RedisClient::new(RedisConfig::from_url(&redis_url()).expect("LIFEGUARD_REDIS_URL parses"))
}

fn redis_port() -> u16 {
    match RedisConfig::from_url(&redis_url()).expect("parses").addr() {
        lifeguard_core::cache::redis::RedisAddr::Tcp { port, .. } => *port,
        other => panic!("the test Redis is not on TCP: {other}"),
    }
}

fn kind(e: &Error) -> RedisErrorKind {
    match e {
        Error::Redis(r) => r.kind,
        other => panic!("expected a Redis error, got {other:?}"),
    }
}

#[test]
fn commands_round_trip_and_convert() {
    let redis = client();
    let key = unique_name("lg_redis_rt");
    redis
        .query::<()>(cmd("SET").arg(&key).arg("hello"))
        .unwrap();
    let got: Option<String> = redis.query(cmd("GET").arg(&key)).unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    let n: i64 = redis
        .query(cmd("INCRBY").arg(format!("{key}:n")).arg(41))
        .unwrap();
    assert_eq!(n, 41);
    // A server error reply is typed, with its code, and leaves the connection usable.
    let e = redis.query::<i64>(cmd("INCR").arg(&key)).unwrap_err();
    assert_eq!(kind(&e), RedisErrorKind::Server);
    assert!(
        matches!(&e, Error::Redis(r) if r.code.as_deref() == Some("ERR")),
        "{e}"
    );
    // A reply of the wrong shape is a protocol error, not a panic.
    let e = redis.query::<Vec<i64>>(cmd("GET").arg(&key)).unwrap_err();
    assert_eq!(kind(&e), RedisErrorKind::Protocol);
    let got: Option<String> = redis.query(cmd("GET").arg(&key)).unwrap();
    assert_eq!(got.as_deref(), Some("hello"));
    redis
        .query::<()>(cmd("DEL").arg(&key).arg(format!("{key}:n")))
        .unwrap();
}

#[test]
fn concurrent_coroutines_share_two_connections() {
    let redis = client();
    let key = unique_name("lg_redis_many");
    let workers: Vec<_> = (0..200)
        .map(|i| {
            let redis = redis.clone();
            let key = format!("{key}:{i}");
            may::go!(move || {
                for round in 0..20i64 {
                    let deadline = Instant::now() + Duration::from_secs(5);
                    redis
                        .query_until::<()>(cmd("SET").arg(&key).arg(round), deadline)
                        .unwrap();
                    let back: i64 = redis.query_until(cmd("GET").arg(&key), deadline).unwrap();
                    assert_eq!(back, round, "{key} read another caller's reply");
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker panicked");
    }
    // Two connections served all of it (plus redis-cli's own).
    let clients = redis_cli(&redis_url(), &["CLIENT", "LIST"]);
    assert!(clients.lines().count() < 50, "{clients}");
    let mut pipe = Pipeline::new();
    for i in 0..200 {
        pipe.cmd("DEL").arg(format!("{key}:{i}"));
    }
    let replies = redis
        .pipeline_until(&pipe, Instant::now() + Duration::from_secs(5))
        .unwrap();
    assert_eq!(replies.len(), 200);
}

#[test]
fn scripts_load_themselves_after_a_flush() {
    let redis = client();
    let script = Script::new(&format!(
        "-- {}\nreturn redis.call('INCRBY', KEYS[1], ARGV[1])",
        unique_name("lg_script")
    ));
    let key = unique_name("lg_redis_script");
    let deadline = || Instant::now() + Duration::from_secs(5);
    // Never loaded: NOSCRIPT, then SCRIPT LOAD + EVALSHA in one round trip.
    let n: i64 = redis
        .eval_until(&script, &[key.as_bytes()], &[b"5"], deadline())
        .unwrap();
    assert_eq!(n, 5);
    let n: i64 = redis
        .eval_until(&script, &[key.as_bytes()], &[b"2"], deadline())
        .unwrap();
    assert_eq!(n, 7);
    redis.query::<()>(cmd("SCRIPT").arg("FLUSH")).unwrap();
    let n: i64 = redis
        .eval_until(&script, &[key.as_bytes()], &[b"1"], deadline())
        .unwrap();
    assert_eq!(n, 8);
    redis.query::<()>(cmd("DEL").arg(&key)).unwrap();
}

#[test]
fn acl_users_and_database_indexes() {
    let user = unique_name("lg_user");
    redis_cli(
        &redis_url(),
        &["ACL", "SETUSER", &user, "on", ">pw/with?odd", "~*", "+@all"],
    );
    let base = redis_url();
    let hostport = base
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .expect("host:port");
    let url = format!("redis://{user}:pw%2Fwith%3Fodd@{hostport}/3");
    let redis = RedisClient::new(RedisConfig::from_url(&url).unwrap());
    let key = unique_name("lg_db3");
    redis
        .query::<()>(cmd("SET").arg(&key).arg("in three"))
        .unwrap();
    let whoami: String = redis.query(cmd("ACL").arg("WHOAMI")).unwrap();
    assert_eq!(whoami, user);
    // The key is in database 3, not 0.
    assert_eq!(redis_cli(&base, &["EXISTS", &key]).trim(), "0");
    assert_eq!(
        redis_cli(&format!("redis://{hostport}/3"), &["EXISTS", &key]).trim(),
        "1"
    );
    redis.query::<()>(cmd("DEL").arg(&key)).unwrap();
    // A wrong password is refused without the password in the error.
    let wrong = format!("redis://{user}:nope-hunter2@{hostport}/0");
    let e = RedisClient::new(RedisConfig::from_url(&wrong).unwrap())
        .query::<String>(&cmd("PING"))
        .unwrap_err();
    assert_eq!(kind(&e), RedisErrorKind::Server, "{e}");
    assert!(!e.to_string().contains("hunter2"), "{e}");
    redis_cli(&base, &["ACL", "DELUSER", &user]);
}

#[test]
fn redis_down_fails_fast_and_the_client_recovers() {
    let proxy = TcpProxy::start(redis_port());
    let redis = RedisClient::new(
        RedisConfig::from_url(&format!("redis://127.0.0.1:{}/0", proxy.port()))
            .unwrap()
            .max_backoff(Duration::from_millis(200)),
    );
    let pong: String = redis.query(&cmd("PING")).unwrap();
    assert_eq!(pong, "PONG");
    // Silent: the call ends at its deadline.
    proxy.blackhole();
    let started = Instant::now();
    let e = redis
        .query_until::<String>(&cmd("PING"), Instant::now() + Duration::from_millis(100))
        .unwrap_err();
    assert_eq!(kind(&e), RedisErrorKind::Timeout);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    // Cut: live connections end; the same client reconnects by itself.
    proxy.resume();
    proxy.sever();
    let back = lifeguard_tests::wait_for(Duration::from_secs(5), || {
        redis.query::<String>(&cmd("PING")).ok()
    });
    assert_eq!(back.as_deref(), Some("PONG"));
    // Gone: calls fail with a connection error or, once the circuit opens, at once.
    drop(proxy);
    let started = Instant::now();
    let mut unavailable = 0;
    for _ in 0..20 {
        let e = redis.query::<String>(&cmd("PING")).unwrap_err();
        match kind(&e) {
            RedisErrorKind::Unavailable => unavailable += 1,
            RedisErrorKind::Connection => {}
            other => panic!("{other:?}: {e}"),
        }
    }
    assert!(unavailable > 0, "the circuit never opened");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn a_half_open_connection_is_replaced() {
    let proxy = TcpProxy::start(redis_port());
    let redis = RedisClient::new(
        RedisConfig::from_url(&format!("redis://127.0.0.1:{}/0", proxy.port()))
            .unwrap()
            .connections(1),
    );
    let _: String = redis.query(&cmd("PING")).unwrap();
    // The old flow goes silent; new connections work.
    proxy.blackhole_existing();
    let e = redis
        .query_until::<String>(&cmd("PING"), Instant::now() + Duration::from_millis(50))
        .unwrap_err();
    assert_eq!(kind(&e), RedisErrorKind::Timeout);
    // Past the grace after the deadline, the connection is presumed dead and replaced.
    let back = lifeguard_tests::wait_for(Duration::from_secs(10), || {
        std::thread::sleep(Duration::from_millis(200));
        redis
            .query_until::<String>(&cmd("PING"), Instant::now() + Duration::from_millis(200))
            .ok()
    });
    assert_eq!(back.as_deref(), Some("PONG"));
    assert!(proxy.accepted() >= 2, "a new connection was opened");
}
