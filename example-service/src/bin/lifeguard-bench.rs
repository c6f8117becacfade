//! `lifeguard-bench`: Lifeguard as an extra peer of the shared benchmark harness
//! (`/work/shared/bench`, section "The contract for an extra peer").
//!
//! ```text
//! lifeguard-bench --mode raw|pool|orm --url URL --workload NAME --concurrency N --connections N --seconds S
//! ```
//!
//! `--mode orm` runs them through Lifeguard's models and query builder on the raw mode's
//! connections (peer `lifeguard-orm`).
//!
//! `--mode cached` runs `point` through the ORM with the Redis cache in front (`--redis
//! URL`, else `$LIFEGUARD_REDIS_URL`), every key warmed first, on the pool of `--mode
//! pool` (peer `lifeguard-cached`; see `bench/cached.rs`).
//!
//! `--mode pool` runs the same statements through a `Pool` of `--connections - 1` connections
//! (its monitor holds the last one; `--pool-size N` overrides) with the default read
//! preference, optionally with `--replica URL` in the pool and `--pipeline-depth N`
//! (`PoolConfig::pipeline_depth`); peer name `lifeguard-pool`.
//!
//! `--mode raw` opens `--connections` [`Connection`]s at start and shares them between all
//! workers: every operation goes to the connection with the fewest requests in flight (ties
//! rotate per worker), and concurrent workers' statements are pipelined on it. SQL text is
//! prepared once per connection by the connection's statement cache. Workers are `may`
//! coroutines on 2 worker threads (the machine has 2 cores, as the async peers' 2 Tokio
//! workers). After a 1 s warm-up the run is measured for `--seconds`; one JSON line goes to
//! stdout, everything else to stderr. Any error or wrong result fails the run (exit 1).

#[path = "../bench/args.rs"]
mod args;
#[path = "../bench/cached.rs"]
mod cached;
#[path = "../bench/histogram.rs"]
mod histogram;
#[path = "../bench/orm.rs"]
mod orm;

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lifeguard_core::pg::{Config, Connection, ToSql};
use lifeguard_core::pool::{Pool, PoolConfig};
use lifeguard_core::Executor;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use args::{Args, Mode, Workload};
use histogram::Histogram;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const USAGE: &str = "usage: lifeguard-bench --mode raw|pool|orm|cached --url URL \
--workload point|fortunes|update|insert_batch|eager [--concurrency N] [--connections N] [--seconds S] \
[--workers N] [--replica URL] [--pool-size N] [--pipeline-depth N] [--redis URL]";

/// Not measured; connections are opened and statements prepared before or during it.
const WARMUP: Duration = Duration::from_secs(1);

/// The workloads' SQL, exactly as the harness's raw peers send it.
mod sql {
    pub const POINT: &str = "SELECT id, randomnumber FROM world WHERE id = $1";
    pub const FORTUNES: &str = "SELECT id, message FROM fortune";
    pub const UPDATE: &str = "UPDATE world SET randomnumber = $1 WHERE id = $2";
    pub const AUTHORS: &str = "SELECT id, name FROM author WHERE id = ANY($1)";
    pub const POSTS: &str = "SELECT id, author_id, title, body FROM post WHERE author_id = ANY($1)";
    pub const TRUNCATE_INSERT: &str = "TRUNCATE bench_insert RESTART IDENTITY";

    /// `INSERT INTO bench_insert (a, b) VALUES ($1, $2), ($3, $4), ..., ($199, $200)`.
    pub fn insert_batch(rows: usize) -> String {
        let mut sql = String::from("INSERT INTO bench_insert (a, b) VALUES ");
        for row in 0..rows {
            if row > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("(${}, ${})", 2 * row + 1, 2 * row + 2));
        }
        sql
    }
}

const WORLD_ROWS: i32 = 10_000;
const FORTUNE_ROWS: usize = 12;
const AUTHOR_ROWS: i32 = 1_000;
const POSTS_PER_AUTHOR: usize = 10;
const EAGER_AUTHORS: usize = 20;
const INSERT_BATCH_ROWS: usize = 100;

// ---------------------------------------------------------------------------------------------
// Inputs and checks (as the built-in peers draw and check them)

fn world_id(rng: &mut StdRng) -> i32 {
    rng.gen_range(1..=WORLD_ROWS)
}

fn random_number(rng: &mut StdRng) -> i32 {
    rng.gen_range(1..=10_000)
}

fn author_ids(rng: &mut StdRng) -> Vec<i32> {
    let mut ids = Vec::with_capacity(EAGER_AUTHORS);
    while ids.len() < EAGER_AUTHORS {
        let id = rng.gen_range(1..=AUTHOR_ROWS);
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}

fn insert_rows(rng: &mut StdRng) -> Vec<(i32, String)> {
    (0..INSERT_BATCH_ROWS)
        .map(|_| {
            let a: i32 = rng.gen();
            (a, format!("row-{a:011}"))
        })
        .collect()
}

fn expect(what: &str, got: usize, want: usize) -> Result<(), BoxError> {
    if got == want {
        Ok(())
    } else {
        Err(format!("expected {want} {what}, got {got}").into())
    }
}

// ---------------------------------------------------------------------------------------------
// The rows, mapped into structs

struct World {
    id: i32,
    randomnumber: i32,
}

struct Fortune {
    id: i32,
    message: String,
}

struct Author {
    id: i32,
    name: String,
}

struct Post {
    id: i32,
    author_id: i32,
    title: String,
    body: String,
}

// ---------------------------------------------------------------------------------------------
// The peer

struct Peer {
    conns: Vec<Arc<Connection>>,
    /// Set in `--mode pool`: operations go through it instead of `conns`.
    pool: Option<Pool>,
    /// `--mode orm`: operations use the models of `orm`.
    orm: bool,
    /// `--mode cached`: operations use the cached model of `cached`.
    cached: bool,
    workload: Workload,
    insert_sql: String,
}

impl Peer {
    fn open(args: &Args) -> Result<Peer, BoxError> {
        let mut conns = Vec::new();
        let mut pool = None;
        match args.mode {
            Mode::Raw | Mode::Orm => {
                for _ in 0..args.connections {
                    // The error names the server, never the URL (it may hold a password).
                    let config = Config::parse(&args.url)?;
                    let conn = Connection::connect(&config)
                        .map_err(|e| format!("connect to {}: {e}", config.display_target()))?;
                    conns.push(Arc::new(conn));
                }
            }
            Mode::Pool | Mode::Cached => {
                // The pool's monitor holds one connection of its own; the contract allows
                // `--connections` in all.
                let size = args
                    .pool_size
                    .unwrap_or_else(|| args.connections.saturating_sub(1).max(1));
                let mut config = PoolConfig::new(Config::parse(&args.url)?).max_size(size);
                if let Some(depth) = args.pipeline_depth {
                    config = config.pipeline_depth(depth);
                }
                if let Some(replica) = &args.replica {
                    config = config.replica(Config::parse(replica)?);
                }
                let pool_ready = Pool::connect(config)?;
                if args.replica.is_some() {
                    // Reads go to the replica only once the monitor has sampled it.
                    let deadline = Instant::now() + Duration::from_secs(5);
                    while pool_ready.health().is_degraded() && Instant::now() < deadline {
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                pool = Some(match args.mode {
                    Mode::Cached => {
                        let redis = args
                            .redis
                            .as_deref()
                            .ok_or("--mode cached needs --redis URL or $LIFEGUARD_REDIS_URL")?;
                        cached::prepare(pool_ready, redis)?
                    }
                    _ => pool_ready,
                });
            }
        }
        Ok(Peer {
            conns,
            pool,
            orm: args.mode == Mode::Orm,
            cached: args.mode == Mode::Cached,
            workload: args.workload,
            insert_sql: sql::insert_batch(INSERT_BATCH_ROWS),
        })
    }

    /// The connection with the fewest requests in flight, the scan starting at `turn`
    /// (which the caller advances) so ties spread over the connections; except that a
    /// write takes the first idle connection when there is one, as the pool's pick does,
    /// so one server backend stays warm for writes. (At one client on this 2-core machine,
    /// spreading writes halved `update`, and sending reads to the first idle connection
    /// cost them 10 to 40 %.)
    fn pick(&self, turn: &mut usize) -> &Connection {
        if self.workload.writes() {
            if let Some(idle) = self.conns.iter().find(|c| c.in_flight() == 0) {
                return idle;
            }
        }
        let n = self.conns.len();
        let start = *turn % n;
        *turn = turn.wrapping_add(1);
        let mut best = start;
        let mut best_load = self.conns[start].in_flight();
        let mut k = 1;
        while best_load > 0 && k < n {
            let i = (start + k) % n;
            let load = self.conns[i].in_flight();
            if load < best_load {
                best = i;
                best_load = load;
            }
            k += 1;
        }
        &self.conns[best]
    }

    /// One operation, timed by the caller from before the pick to after the check.
    fn op(&self, rng: &mut StdRng, turn: &mut usize) -> Result<(), BoxError> {
        match &self.pool {
            Some(pool) => self.op_on(pool, rng),
            None => self.op_on(self.pick(turn), rng),
        }
    }

    fn op_on(&self, conn: &dyn Executor, rng: &mut StdRng) -> Result<(), BoxError> {
        if self.orm {
            return orm::op(self.workload, conn, rng);
        }
        if self.cached {
            return cached::op(self.workload, conn, rng);
        }
        match self.workload {
            Workload::Point => {
                let id = world_id(rng);
                let row = conn.query_one(sql::POINT, &[&id])?;
                let world = World {
                    id: row.try_get(0)?,
                    randomnumber: row.try_get(1)?,
                };
                expect("id", world.id as usize, id as usize)?;
                black_box(world.randomnumber);
            }
            Workload::Fortunes => {
                let fortunes = conn
                    .query(sql::FORTUNES, &[])?
                    .iter()
                    .map(|row| {
                        Ok(Fortune {
                            id: row.try_get(0)?,
                            message: row.try_get(1)?,
                        })
                    })
                    .collect::<lifeguard_core::Result<Vec<_>>>()?;
                expect("fortunes", fortunes.len(), FORTUNE_ROWS)?;
                black_box((fortunes[0].id, &fortunes[0].message));
            }
            Workload::Update => {
                let (number, id) = (random_number(rng), world_id(rng));
                let updated = conn.execute(sql::UPDATE, &[&number, &id])?;
                expect("updated rows", updated as usize, 1)?;
            }
            Workload::InsertBatch => {
                let rows = insert_rows(rng);
                let params: Vec<&(dyn ToSql + Sync)> = rows
                    .iter()
                    .flat_map(|(a, b)| [a as &(dyn ToSql + Sync), b])
                    .collect();
                let inserted = conn.execute(&self.insert_sql, &params)?;
                expect("inserted rows", inserted as usize, INSERT_BATCH_ROWS)?;
            }
            Workload::Eager => {
                let ids = author_ids(rng);
                let authors = conn
                    .query(sql::AUTHORS, &[&ids])?
                    .iter()
                    .map(|row| {
                        Ok(Author {
                            id: row.try_get(0)?,
                            name: row.try_get(1)?,
                        })
                    })
                    .collect::<lifeguard_core::Result<Vec<_>>>()?;
                let found: Vec<i32> = authors.iter().map(|a| a.id).collect();
                let posts = conn
                    .query(sql::POSTS, &[&found])?
                    .iter()
                    .map(|row| {
                        Ok(Post {
                            id: row.try_get(0)?,
                            author_id: row.try_get(1)?,
                            title: row.try_get(2)?,
                            body: row.try_get(3)?,
                        })
                    })
                    .collect::<lifeguard_core::Result<Vec<_>>>()?;
                expect("posts", posts.len(), EAGER_AUTHORS * POSTS_PER_AUTHOR)?;
                let loaded = group(authors, posts);
                expect("authors", loaded.len(), EAGER_AUTHORS)?;
                for (author, posts) in &loaded {
                    if posts.len() != POSTS_PER_AUTHOR {
                        return Err(format!(
                            "expected {POSTS_PER_AUTHOR} posts of author {}, got {}",
                            author.id,
                            posts.len()
                        )
                        .into());
                    }
                }
                let (author, posts) = &loaded[0];
                black_box((&author.name, posts[0].id, &posts[0].title, &posts[0].body));
            }
        }
        Ok(())
    }
}

/// Puts every post under its author, keeping the authors' order.
fn group(authors: Vec<Author>, posts: Vec<Post>) -> Vec<(Author, Vec<Post>)> {
    let slot: HashMap<i32, usize> = authors.iter().enumerate().map(|(i, a)| (a.id, i)).collect();
    let mut grouped: Vec<(Author, Vec<Post>)> = authors
        .into_iter()
        .map(|a| (a, Vec::with_capacity(POSTS_PER_AUTHOR)))
        .collect();
    for post in posts {
        if let Some(&i) = slot.get(&post.author_id) {
            grouped[i].1.push(post);
        }
    }
    grouped
}

// ---------------------------------------------------------------------------------------------
// Measurement

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

#[derive(Default)]
struct Meter {
    phase: AtomicU8,
    latencies: Histogram,
    failure: Mutex<Option<BoxError>>,
}

impl Meter {
    fn running(&self) -> bool {
        self.phase.load(Relaxed) != STOPPED
    }

    /// An operation that started at `started` finished; it counts if the window is open.
    fn done(&self, started: Instant) {
        let nanos = started.elapsed().as_nanos();
        if self.phase.load(Relaxed) == MEASURING {
            self.latencies
                .record(u64::try_from(nanos).unwrap_or(u64::MAX));
        }
    }

    fn fail(&self, error: BoxError) {
        self.phase.store(STOPPED, Relaxed);
        let mut first = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(error);
    }

    /// Sleeps the calling (non-coroutine) thread for `d`, returning early once stopped.
    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while self.running() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            std::thread::sleep((end - now).min(Duration::from_millis(20)));
        }
    }
}

struct Outcome {
    ops: u64,
    seconds: f64,
    p50_ns: u64,
    p99_ns: u64,
    /// Every operation completed, warm-up and priming included (for CPU per operation).
    all_ops: u64,
}

fn run(args: &Args) -> Result<Outcome, BoxError> {
    let peer = Peer::open(args)?;

    // Prime every connection with one operation, which prepares the workload's statements
    // there; then start `insert_batch` from an empty table.
    let mut prime_rng = StdRng::seed_from_u64(0x9121_0000);
    let mut turn = 0;
    for _ in 0..args.connections {
        peer.op(&mut prime_rng, &mut turn)?;
    }
    if args.workload == Workload::InsertBatch {
        match &peer.pool {
            Some(pool) => pool.batch_execute(sql::TRUNCATE_INSERT)?,
            None => peer.conns[0].batch_execute(sql::TRUNCATE_INSERT)?,
        }
    }
    let primed = args.connections as u64;

    let peer = Arc::new(peer);
    let meter = Arc::new(Meter::default());
    let workers: Vec<_> = (0..args.concurrency)
        .map(|i| {
            let (peer, meter) = (peer.clone(), meter.clone());
            may::go!(move || {
                let mut rng = StdRng::seed_from_u64(0x5eed_0000 + i as u64);
                let mut turn = i;
                let mut ops = 0u64;
                while meter.running() {
                    let started = Instant::now();
                    match peer.op(&mut rng, &mut turn) {
                        Ok(()) => {
                            meter.done(started);
                            ops += 1;
                        }
                        Err(e) => meter.fail(e),
                    }
                }
                ops
            })
        })
        .collect();

    meter.sleep(WARMUP);
    let _ = meter
        .phase
        .compare_exchange(WARMING, MEASURING, Relaxed, Relaxed);
    let opened = Instant::now();
    meter.sleep(Duration::from_secs_f64(args.seconds));
    meter.phase.store(STOPPED, Relaxed);
    let window = opened.elapsed();

    let mut all_ops = primed;
    for worker in workers {
        all_ops += worker.join().map_err(|_| "a worker coroutine panicked")?;
    }
    let meter = Arc::into_inner(meter).ok_or("a worker outlived the run")?;
    if let Some(e) = meter
        .failure
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
    {
        return Err(e);
    }
    let ops = meter.latencies.count();
    if ops == 0 {
        return Err("no operation completed in the measured window".into());
    }
    Ok(Outcome {
        ops,
        seconds: window.as_secs_f64(),
        p50_ns: meter.latencies.quantile(0.50),
        p99_ns: meter.latencies.quantile(0.99),
        all_ops,
    })
}

// ---------------------------------------------------------------------------------------------
// Report

/// Peak resident set (`VmHWM`) in KiB, 0 if unknown.
fn max_rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of the process so far, in microseconds.
fn cpu_us() -> u64 {
    // SAFETY: `getrusage` only writes the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) } != 0 {
        return 0;
    }
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(usage.ru_utime) + us(usage.ru_stime)
}

fn json_line(args: &Args, out: &Outcome) -> String {
    let cpu_us_per_op = cpu_us() as f64 / out.all_ops.max(1) as f64;
    format!(
        "{{\"peer\":\"{}\",\"workload\":\"{}\",\"concurrency\":{},\"connections\":{},\"ops\":{},\
\"seconds\":{:.3},\"ops_per_s\":{:.1},\"p50_us\":{:.1},\"p99_us\":{:.1},\"max_rss_kb\":{},\
\"cpu_us_per_op\":{:.2}}}",
        args.mode.peer_name(),
        args.workload.name(),
        args.concurrency,
        args.connections,
        out.ops,
        out.seconds,
        out.ops as f64 / out.seconds,
        out.p50_ns as f64 / 1_000.0,
        out.p99_ns as f64 / 1_000.0,
        max_rss_kb(),
        cpu_us_per_op,
    )
}

fn main() {
    let args = Args::parse(std::env::args().skip(1)).unwrap_or_else(|e| {
        eprintln!("lifeguard-bench: {e}\n{USAGE}");
        std::process::exit(2)
    });
    // Before any coroutine exists: 2 schedulers (one per core), 16 Ki words (128 KiB) stacks,
    // and a coroutine cache sized to what this process runs (workers + one reader per
    // connection): `may` pre-builds its whole cache at start, and its default of 1000 cached
    // coroutines alone touches ~8 MiB, which would be counted as this peer's peak RSS.
    may::config()
        .set_workers(args.workers)
        .set_stack_size(0x4000)
        .set_pool_capacity(args.concurrency + args.connections + 8);
    match run(&args) {
        Ok(out) => println!("{}", json_line(&args, &out)),
        Err(e) => {
            eprintln!(
                "lifeguard-bench ({} {} c={}): {e}",
                args.mode.peer_name(),
                args.workload.name(),
                args.concurrency
            );
            std::process::exit(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_sql_numbers_every_parameter() {
        let s = sql::insert_batch(INSERT_BATCH_ROWS);
        assert!(s.starts_with("INSERT INTO bench_insert (a, b) VALUES ($1, $2), ($3, $4)"));
        assert!(s.ends_with("($199, $200)"));
    }
}
