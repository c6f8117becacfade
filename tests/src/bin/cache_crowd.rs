//! One process of the multi-process stampede test (`tests/tests/cache_stampede.rs`):
//! `cache_crowd NAMESPACE ID COROUTINES` reads row `ID` of `cache_crowd.crowd` from that
//! many coroutines at once through a cache in `NAMESPACE`, then prints how many times this
//! process loaded it from PostgreSQL.

use std::sync::Arc;
use std::time::Duration;

use lifeguard_core::model::LifeModel;
use lifeguard_tests::cache::{cache_metric, cached_pool_in, Crowd};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [ns, id, coroutines] = &args[..] else {
        eprintln!("usage: cache_crowd NAMESPACE ID COROUTINES");
        std::process::exit(2);
    };
    let id: i64 = id.parse().expect("ID is a number");
    let coroutines: usize = coroutines.parse().expect("COROUTINES is a number");
    let (pool, cache) = cached_pool_in(ns, |c| {
        c.lease_wait(Duration::from_secs(3))
            .call_timeout(Duration::from_secs(2))
    });
    let pool = Arc::new(pool);
    // Everyone is ready: say so, and read once the test lets the table go.
    println!("ready");
    let readers: Vec<_> = (0..coroutines)
        .map(|_| {
            let pool = pool.clone();
            may::go!(move || Crowd::find_by_id(id).one(&*pool))
        })
        .collect();
    for r in readers {
        let row = r.join().expect("reader").expect("read");
        assert_eq!(row.map(|c| c.id), Some(id));
    }
    let loads = cache_metric(
        &cache,
        "lifeguard_cache_loads_total",
        &[("entity", "crowd")],
    );
    println!("loads {loads}");
}
