//! Issue 21, network faults: the suite's TCP proxy between the pool and the primary, the
//! pool and the replica, and the cache and Redis; each link is cut, made half-open (nothing
//! flows, nothing closes) or slowed while coroutines write, read through the cache and read
//! from the replica. Everywhere: no call outlives its deadline by more than the slack, every
//! caller gets an answer or a typed error, no write runs twice, a writer never reads an
//! older value of its own row than it committed, and once the link heals every call
//! succeeds again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use lifeguard_core::cache::redis::{RedisClient, RedisConfig};
use lifeguard_core::cache::{install_change_capture, Cache, CacheConfig, CaptureOptions};
use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord};
use lifeguard_core::pool::{Pool, PoolConfig, ReadOptions, ReadPreference};
use lifeguard_core::{Executor, LifeModel, LifeRecord};
use lifeguard_tests::cache::beat;
use lifeguard_tests::pg::{connect, init};
use lifeguard_tests::pool::cfg;
use lifeguard_tests::proxy::TcpProxy;
use lifeguard_tests::{pg_port, primary_url, redis_url, replica_url, unique_name};

#[derive(Debug, Clone, PartialEq, LifeModel, LifeRecord)]
#[lifeguard(
    table_name = "counters",
    schema_name = "fault_it",
    cache(ttl_ms = 60000)
)]
pub struct Counter {
    #[lifeguard(primary_key)]
    pub id: i64,
    pub n: i64,
}

/// Each call's own deadline.
const DEADLINE: Duration = Duration::from_millis(1500);
/// What a call may take beyond its deadline (the cancel's round trip, a scheduler tick).
const SLACK: Duration = Duration::from_millis(700);
const WORKERS: i64 = 6;

/// The port in `url` (`scheme://[user[:password]@]host:port[/...]`).
fn port_in(url: &str) -> u16 {
    let authority = url.split("://").nth(1).unwrap_or(url);
    let host_port = authority.split(['/', '?']).next().unwrap_or("");
    let host_port = host_port.rsplit('@').next().unwrap_or(host_port);
    host_port
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port in the URL")
}

/// Counter rows no other drill uses.
fn fresh_ids() -> Vec<i64> {
    static NEXT: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);
    let base = i64::from(std::process::id()) * 1_000_000;
    (0..WORKERS)
        .map(|_| base + NEXT.fetch_add(1, Ordering::Relaxed))
        .collect()
}

fn setup() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let conn = connect();
        conn.batch_execute(
            "CREATE SCHEMA IF NOT EXISTS fault_it;
             CREATE TABLE IF NOT EXISTS fault_it.counters (id bigint PRIMARY KEY, n bigint NOT NULL);
             CREATE TABLE IF NOT EXISTS fault_it.ledger (marker text NOT NULL)",
        )
        .expect("tables");
        install_change_capture::<Counter>(&conn, &CaptureOptions::new().schema("fault_it"))
            .expect("capture");
    });
}

#[derive(Clone, Copy, Debug)]
enum Link {
    Primary,
    Replica,
    Redis,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Every live connection ends at once.
    Cut,
    /// Nothing flows and nothing closes, for this long.
    HalfOpen(Duration),
    /// Every byte waits this long, for a while.
    Slow(Duration),
}

/// The three proxied links and a pool with a cache over them.
struct Rig {
    primary: TcpProxy,
    replica: TcpProxy,
    redis: TcpProxy,
    pool: Pool,
}

impl Rig {
    fn start() -> Rig {
        init();
        setup();
        let (primary, replica, redis) = (
            TcpProxy::start(pg_port()),
            TcpProxy::start(port_in(&replica_url())),
            TcpProxy::start(port_in(&redis_url())),
        );
        let url = |proxy: &TcpProxy, url: &str| {
            let url = proxy.url_for(url);
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}connect_timeout=2")
        };
        let redis_url = redis.url_for(&redis_url());
        let cache = Cache::new(
            RedisClient::new(RedisConfig::from_url(&redis_url).expect("redis url")),
            CacheConfig::new(unique_name("fault")),
        );
        let pool = Pool::connect(
            PoolConfig::new(cfg(&url(&primary, &primary_url())))
                .replica(cfg(&url(&replica, &replica_url())))
                .max_size(4)
                .monitor_interval(Duration::from_millis(100))
                .name(unique_name("fault")),
        )
        .expect("pool")
        .with_cache(cache.clone());
        beat(&cache, 0, u64::MAX, Duration::from_secs(120));
        Rig {
            primary,
            replica,
            redis,
            pool,
        }
    }

    fn proxy(&self, link: Link) -> &TcpProxy {
        match link {
            Link::Primary => &self.primary,
            Link::Replica => &self.replica,
            Link::Redis => &self.redis,
        }
    }
}

/// What one call did.
struct Call {
    what: &'static str,
    took: Duration,
    /// When it started, from the start of the run.
    at: Duration,
    outcome: Result<(), String>,
}

/// What one worker saw.
#[derive(Default)]
struct Seen {
    calls: Vec<Call>,
    /// Markers of ledger inserts, with whether each reported success.
    writes: Vec<(String, bool)>,
    /// Reads of its own counter older than the last value it committed.
    stale: Vec<String>,
}

impl Seen {
    /// Runs one call, keeping what it took and how it ended.
    fn timed<T>(
        &mut self,
        what: &'static str,
        start: Instant,
        call: impl FnOnce() -> lifeguard_core::Result<T>,
    ) -> lifeguard_core::Result<T> {
        let at = start.elapsed();
        let t = Instant::now();
        let r = call();
        self.calls.push(Call {
            what,
            took: t.elapsed(),
            at,
            outcome: r.as_ref().map(drop).map_err(|e| e.to_string()),
        });
        r
    }
}

/// One worker: its own counter row, bumped through the ORM and read back through the
/// cache, ledger inserts on the primary, counts from the replica.
fn work(pool: &Pool, id: i64, tag: &str, start: Instant, stop: &AtomicBool) -> Seen {
    let mut seen = Seen::default();
    let mut committed = 0i64;
    let mut i = 0u64;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let primary = pool.primary().with_timeout(DEADLINE);
        let marker = format!("{tag}-{id}-{i}");
        let r = seen.timed("ledger insert", start, || {
            primary.execute(
                "INSERT INTO fault_it.ledger (marker) VALUES ($1)",
                &[&marker],
            )
        });
        seen.writes.push((marker, r.is_ok()));

        // A request that bumps the counter, then the next request with its token, which
        // must read its own write (through the cache when the cache may serve it).
        let next = committed + 1;
        let writer = pool.db(ReadOptions::default()).with_timeout(DEADLINE);
        let r = seen.timed("counter update", start, || {
            CounterRecord {
                id: Set(id),
                n: Set(next),
            }
            .update(&writer)
            .and_then(|_| writer.token())
        });
        if r.is_ok() {
            committed = next;
        }
        let token = r.ok().flatten();

        let opts = match token {
            Some(token) => ReadOptions::default().min_lsn(token),
            None => ReadOptions::default(),
        };
        let reader = pool.db(opts).with_timeout(DEADLINE);
        let r = seen.timed("cached read", start, || {
            Counter::find_by_id(id).one(&reader)
        });
        if let (Ok(Some(c)), Some(_)) = (&r, token) {
            if c.n < committed {
                seen.stale.push(format!(
                    "counter {id}: read {} after committing {committed} (served by {:?}, token {token:?})",
                    c.n,
                    reader.served_by()
                ));
            }
        }

        let replica = pool
            .db(ReadOptions::new(ReadPreference::ReplicaPreferred))
            .with_timeout(DEADLINE);
        let _ = seen.timed("replica read", start, || {
            replica.query(
                "SELECT count(*) FROM fault_it.ledger WHERE marker LIKE $1",
                &[&format!("{tag}-{id}-%")],
            )
        });
    }
    seen
}

/// Runs the workers for 1 s, applies `fault` to `link`, heals it, runs 3 s more, and
/// checks every rule.
fn drill(link: Link, fault: Fault) {
    let rig = Arc::new(Rig::start());
    let tag = unique_name("drill");
    let ids = fresh_ids();
    let conn = connect();
    for id in &ids {
        conn.execute("INSERT INTO fault_it.counters (id, n) VALUES ($1, 0) ON CONFLICT (id) DO UPDATE SET n = 0", &[id]).expect("seed");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let results = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = ids
        .iter()
        .map(|&id| {
            let (rig, stop, tag, results) =
                (rig.clone(), stop.clone(), tag.clone(), results.clone());
            may::go!(move || {
                let seen = work(&rig.pool, id, &tag, start, &stop);
                results.lock().unwrap().push(seen);
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    let proxy = rig.proxy(link);
    let faulted = start.elapsed();
    match fault {
        Fault::Cut => {
            proxy.sever();
        }
        Fault::HalfOpen(d) => {
            proxy.blackhole();
            std::thread::sleep(d);
            proxy.resume();
        }
        Fault::Slow(d) => {
            proxy.delay(d);
            std::thread::sleep(Duration::from_secs(2));
            proxy.delay(Duration::ZERO);
        }
    }
    let healed = start.elapsed();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, Ordering::Relaxed);
    let joined = Instant::now();
    for h in handles {
        // A worker stuck past every deadline is the failure this test exists for.
        assert!(joined.elapsed() < DEADLINE * 4, "a worker hangs");
        h.join().expect("a worker panicked");
    }
    let seen = std::mem::take(&mut *results.lock().unwrap());
    assert_eq!(seen.len(), ids.len());
    check(&seen, faulted, healed, &tag, &format!("{link:?} {fault:?}"));
}

fn check(seen: &[Seen], faulted: Duration, healed: Duration, tag: &str, drill: &str) {
    let calls: Vec<&Call> = seen.iter().flat_map(|s| &s.calls).collect();
    let late: Vec<String> = calls
        .iter()
        .filter(|c| c.took > DEADLINE + SLACK)
        .map(|c| {
            format!(
                "{} took {:?} at {:?}: {:?}",
                c.what, c.took, c.at, c.outcome
            )
        })
        .collect();
    let mut failures: HashMap<String, usize> = HashMap::new();
    for c in calls.iter().filter(|c| c.outcome.is_err()) {
        *failures
            .entry(format!(
                "{}: {}",
                c.what,
                c.outcome
                    .as_ref()
                    .err()
                    .map_or("", |e| e.as_str())
                    .chars()
                    .take(90)
                    .collect::<String>()
            ))
            .or_default() += 1;
    }
    let settled = healed + Duration::from_secs(1);
    let after: Vec<String> = calls
        .iter()
        .filter(|c| c.at > settled && c.outcome.is_err())
        .map(|c| format!("{} at {:?}: {:?}", c.what, c.at, c.outcome))
        .collect();
    eprintln!(
        "{drill}: {} calls, fault at {faulted:?}, healed at {healed:?}, failures {failures:#?}",
        calls.len()
    );
    assert!(
        late.is_empty(),
        "{drill}: calls outlived their deadline: {late:#?}"
    );
    let stale: Vec<&String> = seen.iter().flat_map(|s| &s.stale).collect();
    assert!(
        stale.is_empty(),
        "{drill}: stale reads of own writes: {stale:?}"
    );
    assert!(
        after.is_empty(),
        "{drill}: failures 1 s after healing: {after:#?}"
    );
    let counts: HashMap<String, i64> = connect()
        .query(
            "SELECT marker, count(*) FROM fault_it.ledger WHERE marker LIKE $1 GROUP BY marker",
            &[&format!("{tag}-%")],
        )
        .expect("ledger")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (marker, ok) in seen.iter().flat_map(|s| &s.writes) {
        let n = counts.get(marker).copied().unwrap_or(0);
        assert!(n <= 1, "{drill}: {marker} was written {n} times");
        assert!(
            !ok || n == 1,
            "{drill}: {marker} reported success but is not in the ledger"
        );
    }
}

#[test]
fn primary_cut() {
    drill(Link::Primary, Fault::Cut);
}

#[test]
fn primary_half_open() {
    drill(Link::Primary, Fault::HalfOpen(Duration::from_secs(2)));
}

#[test]
fn primary_slow() {
    drill(Link::Primary, Fault::Slow(Duration::from_millis(300)));
}

#[test]
fn replica_cut() {
    drill(Link::Replica, Fault::Cut);
}

#[test]
fn replica_half_open() {
    drill(Link::Replica, Fault::HalfOpen(Duration::from_secs(2)));
}

#[test]
fn replica_slow() {
    drill(Link::Replica, Fault::Slow(Duration::from_millis(300)));
}

#[test]
fn redis_cut() {
    drill(Link::Redis, Fault::Cut);
}

#[test]
fn redis_half_open() {
    drill(Link::Redis, Fault::HalfOpen(Duration::from_secs(2)));
}

#[test]
fn redis_slow() {
    drill(Link::Redis, Fault::Slow(Duration::from_millis(300)));
}

/// A write that cannot learn the key generation (Redis silent when it looks up the
/// heartbeat) cannot drop its keys; this process then reads PostgreSQL for the bound, so
/// its next read is fresh once Redis answers again. Fails when such a write skips the
/// drop as if there were no heartbeat: the next reader finds the heartbeat and the old
/// value.
#[test]
fn a_write_that_cannot_read_the_heartbeat_keeps_this_process_fresh() {
    init();
    setup();
    let redis = TcpProxy::start(port_in(&redis_url()));
    let cache = Cache::new(
        RedisClient::new(RedisConfig::from_url(&redis.url_for(&redis_url())).expect("url")),
        CacheConfig::new(unique_name("fault")),
    );
    let pool = Pool::connect(PoolConfig::new(cfg(&primary_url())).max_size(2))
        .expect("pool")
        .with_cache(cache.clone());
    beat(&cache, 0, u64::MAX, Duration::from_secs(120));
    let id = fresh_ids()[0];
    connect()
        .execute(
            "INSERT INTO fault_it.counters (id, n) VALUES ($1, 1)",
            &[&id],
        )
        .expect("seed");
    let read = || {
        Counter::find_by_id(id)
            .one(&pool)
            .expect("read")
            .map(|c| c.n)
    };
    assert_eq!(read(), Some(1));
    let hits = || {
        lifeguard_tests::cache::cache_metric(
            &cache,
            "lifeguard_cache_requests_total",
            &[("entity", "counters"), ("result", "hit")],
        )
    };
    let before = hits();
    assert_eq!(read(), Some(1));
    assert_eq!(hits(), before + 1.0, "the key is in Redis");
    // Past the heartbeat's refresh interval, so the write looks it up again.
    std::thread::sleep(Duration::from_millis(300));
    redis.blackhole();
    CounterRecord {
        id: Set(id),
        n: Set(2),
    }
    .update(&pool)
    .expect("the write commits whatever Redis does");
    redis.resume();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(read(), Some(2), "this process read its own write");
}

/// A miss whose load cannot reach the primary is not an error for a read the replica may
/// serve: it is read there, uncached. Fails when the failed load fails the read.
#[test]
fn a_miss_with_the_primary_down_is_read_from_the_replica() {
    let rig = Rig::start();
    let id = fresh_ids()[0];
    connect()
        .execute(
            "INSERT INTO fault_it.counters (id, n) VALUES ($1, 7)",
            &[&id],
        )
        .expect("seed");
    let replica = lifeguard_tests::pg::connect_url(&replica_url());
    let replayed = lifeguard_tests::wait_for(Duration::from_secs(10), || {
        let row = replica
            .query_opt("SELECT n FROM fault_it.counters WHERE id = $1", &[&id])
            .ok()??;
        Some(row.get::<_, i64>(0))
    });
    assert_eq!(replayed, Some(7));
    rig.primary.blackhole();
    let down = lifeguard_tests::wait_for(Duration::from_secs(10), || {
        (rig.pool.health().primary != lifeguard_core::pool::NodeState::Healthy).then_some(())
    });
    assert!(down.is_some(), "the monitor never saw the primary go");
    let reader = rig
        .pool
        .db(ReadOptions::new(ReadPreference::ReplicaPreferred))
        .with_timeout(DEADLINE);
    let read = Counter::find_by_id(id).one(&reader);
    rig.primary.resume();
    assert_eq!(read.expect("served by the replica").map(|c| c.n), Some(7));
}
