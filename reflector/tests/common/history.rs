//! A randomized concurrent workload that records every write and read, and the checker
//! of its history (C16): no cached read older than the bound, every writer sees its own
//! writes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lifeguard_core::model::{ActiveValue::Set, LifeModel, LifeRecord};
use lifeguard_core::pool::{Pool, ReadOptions};
use lifeguard_core::Executor;
use rand::Rng;

use super::Item;

/// A committed write: `key` got `n` (its writes are 1, 2, 3, ... in commit order), and
/// the call returned at `end` (the commit was before).
struct Write {
    n: i64,
    end: Instant,
}

/// A read of `key` that returned `n`, started at `start`.
struct Read {
    key: i64,
    n: i64,
    start: Instant,
}

/// The workload's shape.
pub struct Workload<'a> {
    /// The keys, all at `n = 0`; writer `w` owns every key whose index is `w` modulo
    /// `writers`, so each key's writes are sequential. Even writers write through the ORM
    /// (which drops the key after commit, and must then read its own write); odd ones
    /// write plain SQL, as another service would, so that only the reflector tells the
    /// cache.
    pub keys: &'a [i64],
    pub writers: usize,
    pub writes: usize,
    /// The pool writes go through (one handle per write, then a read on that handle).
    pub write_pool: &'a Pool,
    /// Pools the readers use (one reader thread per pool).
    pub read_pools: &'a [Pool],
    /// Called once, when this many writes have committed.
    pub at_write: Option<(usize, Box<dyn FnOnce() + Send + 'a>)>,
}

/// What the checker found.
pub struct Verdict {
    pub reads: usize,
    pub writes: usize,
    /// The largest `read start - end of the write that superseded the value read`: a
    /// lower bound of the staleness of the stalest read.
    pub max_staleness: Duration,
    /// Reads older than the bound, described.
    pub stale: Vec<String>,
    /// Writers' reads that did not see their own write.
    pub lost_own: Vec<String>,
}

impl Workload<'_> {
    /// Runs the workload; the readers stop when the writers are done.
    pub fn run(self, bound: Duration) -> Verdict {
        let writes: Mutex<HashMap<i64, Vec<Write>>> = Mutex::default();
        let reads: Mutex<Vec<Read>> = Mutex::default();
        let lost_own: Mutex<Vec<String>> = Mutex::default();
        let done = AtomicBool::new(false);
        let committed = AtomicUsize::new(0);
        let hook = Mutex::new(self.at_write);
        let per_writer = self.writes / self.writers;
        std::thread::scope(|s| {
            for pool in self.read_pools {
                let (reads, done, keys) = (&reads, &done, self.keys);
                s.spawn(move || {
                    let mut rng = rand::thread_rng();
                    let mut mine = Vec::new();
                    while !done.load(Ordering::Acquire) {
                        let key = keys[rng.gen_range(0..keys.len())];
                        let start = Instant::now();
                        if let Ok(Some(item)) = Item::find_by_id(key).one(pool) {
                            mine.push(Read {
                                key,
                                n: item.n,
                                start,
                            });
                        }
                    }
                    reads.lock().unwrap().extend(mine);
                });
            }
            let writers: Vec<_> = (0..self.writers)
                .map(|w| {
                    let (writes, lost_own, committed, hook) =
                        (&writes, &lost_own, &committed, &hook);
                    let owned: Vec<i64> = self
                        .keys
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| i % self.writers == w)
                        .map(|(_, k)| *k)
                        .collect();
                    let pool = self.write_pool;
                    s.spawn(move || {
                        let mut rng = rand::thread_rng();
                        let mut at: HashMap<i64, i64> = HashMap::new();
                        for _ in 0..per_writer {
                            let key = owned[rng.gen_range(0..owned.len())];
                            let n = at.get(&key).copied().unwrap_or(0) + 1;
                            let db = pool.db(ReadOptions::default());
                            let through_orm = w % 2 == 0;
                            if through_orm {
                                let mut record = Item {
                                    id: key,
                                    name: String::new(),
                                    n: 0,
                                }
                                .into_record();
                                record.n = Set(n);
                                record.name = Set(format!("w{w}"));
                                record.update(&db).expect("write");
                            } else {
                                db.execute(
                                    "UPDATE reflector_it.items SET n = $2 WHERE id = $1",
                                    &[&key, &n],
                                )
                                .expect("write");
                            }
                            let end = Instant::now();
                            at.insert(key, n);
                            writes
                                .lock()
                                .unwrap()
                                .entry(key)
                                .or_default()
                                .push(Write { n, end });
                            let seen = match through_orm {
                                true => Item::find_by_id(key).one(&db).expect("own read"),
                                false => None,
                            };
                            if through_orm && seen.as_ref().map(|i| i.n) < Some(n) {
                                lost_own
                                    .lock()
                                    .unwrap()
                                    .push(format!("key {key}: wrote {n}, read {seen:?}"));
                            }
                            let total = committed.fetch_add(1, Ordering::AcqRel) + 1;
                            let mut hook = hook.lock().unwrap();
                            if hook.as_ref().is_some_and(|(at, _)| total >= *at) {
                                if let Some((_, f)) = hook.take() {
                                    f();
                                }
                            }
                        }
                    })
                })
                .collect();
            for w in writers {
                w.join().expect("writer");
            }
            done.store(true, Ordering::Release);
        });
        check(
            writes.into_inner().unwrap(),
            reads.into_inner().unwrap(),
            lost_own.into_inner().unwrap(),
            bound,
        )
    }
}

fn check(
    writes: HashMap<i64, Vec<Write>>,
    reads: Vec<Read>,
    lost_own: Vec<String>,
    bound: Duration,
) -> Verdict {
    let mut max_staleness = Duration::ZERO;
    let mut stale = Vec::new();
    for read in &reads {
        let Some(history) = writes.get(&read.key) else {
            continue;
        };
        // The write that replaced the value read: writes of a key are 1, 2, 3, ...
        let Some(next) = history.iter().find(|w| w.n == read.n + 1) else {
            continue;
        };
        let behind = read.start.saturating_duration_since(next.end);
        max_staleness = max_staleness.max(behind);
        if behind > bound {
            stale.push(format!(
                "key {}: read {} {behind:?} after {} committed",
                read.key, read.n, next.n
            ));
        }
    }
    Verdict {
        reads: reads.len(),
        writes: writes.values().map(Vec::len).sum(),
        max_staleness,
        stale,
        lost_own,
    }
}
