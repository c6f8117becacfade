//! Shared test helpers: may configuration, the pool from the environment, a raw HTTP/1.1
//! client on std sockets (tests are not on the may path).
#![allow(dead_code, unused_imports)]

use std::sync::Once;
use std::time::Duration;

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

pub use lifeguard_tests::http::*;
pub use lifeguard_tests::scratch::free_port;
pub use lifeguard_tests::wait_for;

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
