//! `Lifeguard-Timeout` cannot lift the pool's statement timeout: a client's budget is clamped
//! to it unless the service sets its own cap.

mod common;

use std::time::{Duration, Instant};

use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::{Error, Executor};
use lifeguard_router_ext::{Lifeguard, Settings};

const POOL_STATEMENT_TIMEOUT: Duration = Duration::from_millis(500);

fn pool_with_short_statement_timeout() -> Pool {
    common::init_may();
    let config = PoolConfig::from_env()
        .expect("run: scripts/services up && eval \"$(scripts/services env)\"")
        .session_timeouts(Some(POOL_STATEMENT_TIMEOUT), None);
    Pool::connect(config).expect("pool")
}

#[test]
fn a_day_long_header_is_clamped_to_the_pools_statement_timeout() {
    let lg = Lifeguard::new(pool_with_short_statement_timeout(), Settings::default());
    assert_eq!(lg.settings().max_timeout, Some(POOL_STATEMENT_TIMEOUT));
    let ctx = lg.context([("Lifeguard-Timeout", "86400000")]).unwrap();
    assert_eq!(ctx.timeout(), Some(POOL_STATEMENT_TIMEOUT));

    let exec = lg.executor(ctx);
    let started = Instant::now();
    let outcome = may::go!(move || exec.db().query("SELECT pg_sleep(1.5)", &[]))
        .join()
        .unwrap();
    // The request's deadline and the session's statement timeout coincide: either may stop it.
    assert!(
        matches!(&outcome, Err(Error::Timeout(_)))
            || matches!(&outcome, Err(e) if e.sqlstate() == Some("57014")),
        "the statement must stop at the pool's limit, got {outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_millis(1400));
}

#[test]
fn a_service_cap_overrides_the_pool_default() {
    let settings = Settings {
        max_timeout: Some(Duration::from_secs(5)),
        ..Settings::default()
    };
    let lg = Lifeguard::new(pool_with_short_statement_timeout(), settings);
    let ctx = lg.context([("Lifeguard-Timeout", "86400000")]).unwrap();
    assert_eq!(ctx.timeout(), Some(Duration::from_secs(5)));
    let ctx = lg.context([("Lifeguard-Timeout", "200")]).unwrap();
    assert_eq!(
        ctx.timeout(),
        Some(Duration::from_millis(200)),
        "shorter budgets pass"
    );
}
