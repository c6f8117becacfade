//! Fault drills: a bounded load of coroutines calling the pool in a loop while a test takes
//! a server down, and a report of what failed and when.
//!
//! ```no_run
//! use std::time::Duration;
//! use lifeguard_tests::drill::Load;
//!
//! let load = Load::start(8, |_worker| Ok(()));
//! std::thread::sleep(Duration::from_millis(100));
//! let report = load.stop();
//! println!("{}", report.summary(report.began()));
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lifeguard_core::Error;

use crate::pg::init;

/// One call of the load: when it started and ended, and its error if it failed.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// When the call began.
    pub started: Instant,
    /// When it returned.
    pub ended: Instant,
    /// The error's kind (its variant) and text, when it failed.
    pub error: Option<(String, String)>,
}

/// Coroutines calling one operation in a loop until stopped.
pub struct Load {
    began: Instant,
    stop: Arc<AtomicBool>,
    workers: Vec<may::coroutine::JoinHandle<Vec<Outcome>>>,
}

impl Load {
    /// Starts `workers` coroutines, each calling `op(worker index)` back to back.
    pub fn start<F>(workers: usize, op: F) -> Load
    where
        F: Fn(usize) -> lifeguard_core::Result<()> + Send + Sync + 'static,
    {
        init();
        let op = Arc::new(op);
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..workers)
            .map(|i| {
                let (op, stop) = (op.clone(), stop.clone());
                may::go!(move || {
                    let mut seen = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let started = Instant::now();
                        let error = op(i).err().map(|e| (kind(&e), e.to_string()));
                        seen.push(Outcome {
                            started,
                            ended: Instant::now(),
                            error,
                        });
                        // Keeps a failing loop from spinning a worker thread flat out.
                        if seen.last().is_some_and(|o| o.error.is_some()) {
                            may::coroutine::sleep(Duration::from_millis(1));
                        }
                    }
                    seen
                })
            })
            .collect();
        Load {
            began: Instant::now(),
            stop,
            workers,
        }
    }

    /// Stops the workers and collects every call they made.
    ///
    /// # Panics
    ///
    /// Panics when a worker panicked.
    pub fn stop(self) -> Report {
        self.stop.store(true, Ordering::Relaxed);
        let mut outcomes = Vec::new();
        for w in self.workers {
            outcomes.extend(w.join().expect("a load worker panicked"));
        }
        Report {
            began: self.began,
            outcomes,
        }
    }
}

/// The variant name of an error (`Unavailable`, `CommitOutcomeUnknown`, ...).
pub fn kind(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("")
        .to_owned()
}

/// Every call of a [`Load`].
pub struct Report {
    began: Instant,
    /// Every call, in no particular order.
    pub outcomes: Vec<Outcome>,
}

impl Report {
    /// When the load started.
    pub fn began(&self) -> Instant {
        self.began
    }

    /// The calls that failed.
    pub fn failures(&self) -> Vec<&Outcome> {
        self.outcomes.iter().filter(|o| o.error.is_some()).collect()
    }

    /// From the first failed call's end to the last one's, if any failed.
    pub fn failure_window(&self) -> Option<(Instant, Instant)> {
        let f = self.failures();
        let first = f.iter().map(|o| o.ended).min()?;
        let last = f.iter().map(|o| o.ended).max()?;
        Some((first, last))
    }

    /// Failures counted by error kind, with one message of each.
    pub fn kinds(&self) -> BTreeMap<String, (usize, String)> {
        let mut kinds = BTreeMap::new();
        for (k, msg) in self.outcomes.iter().filter_map(|o| o.error.as_ref()) {
            kinds.entry(k.clone()).or_insert((0, msg.clone())).0 += 1;
        }
        kinds
    }

    /// Calls, failures, the failure window (relative to `t0`) and the kinds, on one line.
    pub fn summary(&self, t0: Instant) -> String {
        let ms = |t: Instant| t.saturating_duration_since(t0).as_millis();
        let window = match self.failure_window() {
            Some((a, b)) => format!(
                "failures from {} ms to {} ms ({} ms)",
                ms(a),
                ms(b),
                (b - a).as_millis()
            ),
            None => "no failure".into(),
        };
        format!(
            "{} calls, {} failed, {window}; {:?}",
            self.outcomes.len(),
            self.failures().len(),
            self.kinds()
        )
    }
}
