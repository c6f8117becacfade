//! The bound on how long a half-open connection can hold its callers.
//!
//! A peer can go silent without the socket noticing: a TCP proxy whose server side died
//! keeps acknowledging our bytes, so neither keepalive nor `TCP_USER_TIMEOUT` fires, and a
//! caller without a deadline (or a `BEGIN`/`COMMIT`, which deadlines never cut short) would
//! wait forever. Silence alone proves nothing, though: PostgreSQL sends nothing at all while
//! a statement runs, so a legitimately long statement looks the same from here.
//!
//! So silence only triggers a check. Each connection has a small watch coroutine that looks,
//! every quarter of the probe interval, at two counters the hot path already keeps (requests
//! in flight) or keeps for it (reads done by the reader, a plain store per read). When a
//! request has been in flight for the probe interval ([`DEFAULT_LIVENESS_PROBE`]) with not
//! one byte received, the watch opens a *new* connection to the same host and asks
//! `pg_stat_activity` about this connection's backend:
//!
//! - the check cannot connect or get an answer within the connect timeout: the path to the
//!   server is gone, and the connection is failed;
//! - the backend is idle (its reply was sent and never arrived), blocked sending to us
//!   (`ClientWrite`), or the server restarted since this connection opened: after a second
//!   more of silence, the connection is failed;
//! - the backend is running a statement: nothing is done, and the check repeats after
//!   another interval of silence;
//! - the answer cannot be trusted (a pooler in between, whose backend pids are not the
//!   server's; no such backend on a server older than the connection; a backend of that pid
//!   that started at another time, as behind a balancer across servers): nothing is done.
//!
//! Failing the connection gives every caller waiting on it `Error::Connection` ("... presumed
//! dead (half-open)"); a `COMMIT` gets `Error::CommitOutcomeUnknown`. With the defaults a
//! caller is held at most about 15 s + 4 s (the watch's step) + the connect timeout (10 s)
//! + 1 s past the last byte received, unless the check is inconclusive as above.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{OnceLock, Weak};
use std::time::{Duration, Instant};

use may::sync::mpsc;

use super::config::{Config, DEFAULT_CONNECT_TIMEOUT};
use super::connection::Connection;
use super::pipeline::Shared;
use super::row::SimpleQueryMessage;
use crate::error::Error;
use crate::executor::Executor;

/// How long a connection may receive nothing while a request is in flight before it checks
/// on its server, unless set otherwise ([`Connection::set_liveness_probe`],
/// [`PoolConfig::liveness_probe`](crate::pool::PoolConfig::liveness_probe)).
pub const DEFAULT_LIVENESS_PROBE: Duration = Duration::from_secs(15);

/// The watch's step while probing is off, so turning it on later takes effect.
const IDLE_STEP: Duration = Duration::from_secs(1);

/// How much longer a connection must stay silent after the server said its reply had gone
/// out (or that it cannot send it), before the connection is failed.
const SETTLE: Duration = Duration::from_secs(1);

/// What a connection's reader and its watch share.
pub(crate) struct Liveness {
    /// Reads done by the reader; only it writes this.
    reads: AtomicU64,
    /// The probe interval in milliseconds; 0 when off.
    probe_after_ms: AtomicU64,
    /// The watch, woken when the interval changes so it need not finish a step of the old
    /// one (a pool sets its interval just after the connection opened).
    watch: OnceLock<may::coroutine::Coroutine>,
}

impl Default for Liveness {
    fn default() -> Liveness {
        Liveness {
            reads: AtomicU64::new(0),
            probe_after_ms: AtomicU64::new(millis(Some(DEFAULT_LIVENESS_PROBE))),
            watch: OnceLock::new(),
        }
    }
}

impl Liveness {
    /// Counts one read of the reader: it runs on every read, and the reader is the only
    /// writer, so a plain store does instead of a locked increment.
    pub(crate) fn note_read(&self) {
        let n = self.reads.load(Ordering::Relaxed);
        self.reads.store(n.wrapping_add(1), Ordering::Relaxed);
    }

    fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn probe_after(&self) -> Option<Duration> {
        match self.probe_after_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

fn millis(d: Option<Duration>) -> u64 {
    d.map_or(0, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
    })
}

impl Connection {
    /// Sets how long this connection may receive nothing while a request is in flight
    /// before it checks on its server through a new connection (default
    /// [`DEFAULT_LIVENESS_PROBE`]); `None` turns the check off, leaving callers without a
    /// deadline to wait as long as the socket stays open.
    ///
    /// A statement that is still running is never interrupted by the check. A connection
    /// whose server cannot be reached, or whose server says the reply was already sent, is
    /// failed: every caller waiting on it gets `Error::Connection` (a `COMMIT`
    /// `Error::CommitOutcomeUnknown`). Behind a pooler such as PgBouncer the check can only
    /// tell that the pooler is unreachable.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use lifeguard_core::pg::Connection;
    ///
    /// let conn = Connection::open("postgres://postgres@127.0.0.1:55432/lifeguard")?;
    /// conn.set_liveness_probe(Some(Duration::from_secs(5)));
    /// assert_eq!(conn.liveness_probe(), Some(Duration::from_secs(5)));
    /// # Ok::<(), lifeguard_core::Error>(())
    /// ```
    pub fn set_liveness_probe(&self, after: Option<Duration>) {
        let liveness = self.shared().liveness();
        liveness
            .probe_after_ms
            .store(millis(after), Ordering::Relaxed);
        if let Some(watch) = liveness.watch.get() {
            watch.unpark();
        }
    }

    /// The liveness probe interval; see [`Connection::set_liveness_probe`].
    pub fn liveness_probe(&self) -> Option<Duration> {
        self.shared().liveness().probe_after()
    }
}

/// Starts `conn`'s watch and hands the connection back. A watch that cannot start (no
/// memory for its stack) leaves the connection working, only without the bound.
pub(crate) fn watched(conn: Connection) -> Connection {
    let target = Target {
        config: conn.config().clone(),
        label: conn.config().display_target(),
        process_id: conn.process_id(),
        opened: Instant::now(),
    };
    let shared = std::sync::Arc::downgrade(conn.shared());
    match crate::rt::spawn("lifeguard-pg-liveness", 0x1000, move || {
        watch(&shared, &target)
    }) {
        Ok(handle) => {
            let _ = conn
                .shared()
                .liveness()
                .watch
                .set(handle.coroutine().clone());
        }
        Err(e) => tracing::warn!(target: "lifeguard::pg", "liveness watch not started: {e}"),
    }
    conn
}

/// The connection a watch checks on.
struct Target {
    /// Its configuration: one host, the one it is connected to.
    config: Config,
    label: String,
    process_id: i32,
    /// When its start-up ended (its backend started up to a connect timeout before).
    opened: Instant,
}

/// What the check learned.
enum Verdict {
    /// The backend is running a statement.
    Running,
    /// The connection is dead; `settle` asks for [`SETTLE`] more silence first.
    Dead { why: String, settle: bool },
    /// Nothing the check saw can be trusted to say either way.
    Unknown(String),
}

/// The watch: ends when the connection is dropped or broken.
fn watch(shared: &Weak<Shared>, target: &Target) {
    let mut seen = None;
    let mut silent_since = Instant::now();
    loop {
        let step = match shared.upgrade() {
            Some(s) if !s.is_broken() => s.liveness().probe_after().map_or(IDLE_STEP, step_for),
            _ => return,
        };
        // Woken early when the interval changes; silence is measured in time, not steps.
        may::coroutine::park_timeout(step);
        let Some(s) = shared.upgrade().filter(|s| !s.is_broken()) else {
            return;
        };
        let reads = s.liveness().reads();
        let after = match s.liveness().probe_after() {
            Some(after) if s.in_flight() > 0 && seen == Some(reads) => after,
            _ => {
                seen = Some(reads);
                silent_since = Instant::now();
                continue;
            }
        };
        if silent_since.elapsed() < after {
            continue;
        }
        // The check takes a while; the connection must be free to drop meanwhile.
        drop(s);
        let verdict = check(target);
        let (why, settle) = match verdict {
            Verdict::Dead { why, settle } => (why, settle),
            Verdict::Running => {
                tracing::debug!(target: "lifeguard::pg", server = %target.label, "silent connection: its statement is still running");
                silent_since = Instant::now();
                continue;
            }
            Verdict::Unknown(why) => {
                tracing::debug!(target: "lifeguard::pg", server = %target.label, "silent connection, check inconclusive: {why}");
                silent_since = Instant::now();
                continue;
            }
        };
        if settle {
            may::coroutine::sleep(SETTLE);
        }
        let Some(s) = shared.upgrade().filter(|s| !s.is_broken()) else {
            return;
        };
        if s.liveness().reads() != reads || s.in_flight() == 0 {
            // A reply came in after all.
            continue;
        }
        let silent = silent_since.elapsed();
        tracing::warn!(target: "lifeguard::pg", server = %target.label, ?silent, "connection presumed dead: {why}");
        s.fail(Error::connection(
            format!(
                "no reply from {} for {silent:.1?} with a request in flight, and {why}; the connection is presumed dead (half-open)",
                target.label
            ),
            None,
        ));
        return;
    }
}

/// How often the watch looks: a quarter of the probe interval, so silence is noticed at
/// most a quarter late.
fn step_for(after: Duration) -> Duration {
    (after / 4).clamp(Duration::from_millis(10), Duration::from_secs(5))
}

/// Runs the check on a coroutine with room for a TLS handshake, bounded from outside too.
fn check(target: &Target) -> Verdict {
    let bound = target
        .config
        .get_connect_timeout()
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    let (done, verdict) = mpsc::channel();
    let config = target.config.clone().connect_timeout(bound);
    let (process_id, opened) = (target.process_id, target.opened);
    let spawned = crate::rt::spawn("lifeguard-pg-liveness-check", 0x8000, move || {
        let _ = done.send(ask(&config, process_id, opened, bound));
    });
    if let Err(e) = spawned {
        return Verdict::Unknown(format!("the check could not start: {e}"));
    }
    // The connect and the query are each bounded; this only guards against a check that
    // hangs anyway.
    verdict
        .recv_timeout(bound * 2 + SETTLE)
        .unwrap_or_else(|_| Verdict::Unknown("the check did not finish".into()))
}

/// Finds out what the server says about backend `process_id`.
const CHECK_SQL: &str = "SELECT pg_catalog.pg_backend_pid(), a.state, a.wait_event, \
     extract(epoch FROM pg_catalog.clock_timestamp() - a.backend_start), \
     extract(epoch FROM pg_catalog.clock_timestamp() - pg_catalog.pg_postmaster_start_time()) \
     FROM (VALUES (1)) AS one (x) LEFT JOIN pg_catalog.pg_stat_activity AS a ON a.pid = ";

/// Opens a check connection to the same host and asks about the watched backend.
fn ask(config: &Config, process_id: i32, opened: Instant, bound: Duration) -> Verdict {
    let check = match Connection::connect_one(config) {
        Ok(check) => check,
        Err(e @ Error::Connection(_)) => {
            return Verdict::Dead {
                why: format!("a check connection to the server failed ({e})"),
                settle: false,
            }
        }
        Err(e) => return Verdict::Unknown(format!("the check connection was refused: {e}")),
    };
    let asked = Instant::now();
    let answer = check
        .timeout(bound)
        .simple_query(&format!("{CHECK_SQL}{process_id}"));
    let row = match answer {
        Ok(messages) => messages.into_iter().find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(row),
            _ => None,
        }),
        Err(e @ (Error::Connection(_) | Error::Timeout(_))) => {
            return Verdict::Dead {
                why: format!("the server did not answer a check ({e})"),
                settle: false,
            }
        }
        Err(e) => return Verdict::Unknown(format!("the check failed: {e}")),
    };
    let Some(row) = row else {
        return Verdict::Unknown("the check returned no row".into());
    };
    let seconds = |i: usize| row.get(i).and_then(|v| v.parse::<f64>().ok());
    let report = Report {
        check_pid: check.process_id(),
        server_pid: row.get(0).and_then(|v| v.parse().ok()),
        state: row.get(1),
        wait_event: row.get(2),
        backend_age: seconds(3),
        server_uptime: seconds(4),
    };
    // Times are compared as ages on each side, so the two clocks need not agree; the slack
    // covers the check's own round trip.
    let ages = Ages {
        ours: opened.elapsed().as_secs_f64(),
        slack: asked.elapsed().as_secs_f64() + 1.0,
        startup: bound.as_secs_f64(),
    };
    report.verdict(process_id, &ages)
}

/// The check's answer.
struct Report<'a> {
    /// The check connection's backend pid as start-up reported it.
    check_pid: i32,
    /// ... and as the server reports it: a pooler's differ.
    server_pid: Option<i32>,
    state: Option<&'a str>,
    wait_event: Option<&'a str>,
    backend_age: Option<f64>,
    server_uptime: Option<f64>,
}

/// The watched connection's age in seconds, with the tolerances to compare it by.
struct Ages {
    ours: f64,
    /// The check's round trip and some.
    slack: f64,
    /// How long before the end of our start-up the backend may have started.
    startup: f64,
}

impl Report<'_> {
    fn verdict(&self, pid: i32, ages: &Ages) -> Verdict {
        if self.server_pid != Some(self.check_pid) {
            return Verdict::Unknown(
                "the check's backend pid is not the server's (a pooler in between?)".into(),
            );
        }
        let Some(age) = self.backend_age else {
            return match self.server_uptime {
                Some(up) if up + ages.slack < ages.ours => Verdict::Dead {
                    why: format!("the server restarted {up:.0} s ago, after the connection opened"),
                    settle: true,
                },
                _ => Verdict::Unknown(format!("no backend {pid} on the server the check reached")),
            };
        };
        if age + ages.slack < ages.ours || age > ages.ours + ages.startup + ages.slack {
            return Verdict::Unknown(format!(
                "backend {pid} on the server the check reached started at another time"
            ));
        }
        match (self.state, self.wait_event) {
            (Some("active"), Some("ClientWrite")) => Verdict::Dead {
                why: format!("the server reports backend {pid} blocked sending to it"),
                settle: true,
            },
            (Some("active"), _) => Verdict::Running,
            (Some(state), _) if state.starts_with("idle") => Verdict::Dead {
                why: format!("the server reports backend {pid} {state}, its reply sent"),
                settle: true,
            },
            (state, _) => Verdict::Unknown(format!("backend {pid} is in state {state:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(
        state: Option<&'static str>,
        wait: Option<&'static str>,
        age: Option<f64>,
    ) -> Report<'static> {
        Report {
            check_pid: 7,
            server_pid: Some(7),
            state,
            wait_event: wait,
            backend_age: age,
            server_uptime: Some(1000.0),
        }
    }

    const AGES: Ages = Ages {
        ours: 100.0,
        slack: 1.0,
        startup: 10.0,
    };

    fn dead(v: &Verdict) -> bool {
        matches!(v, Verdict::Dead { .. })
    }

    #[test]
    fn a_running_backend_is_left_alone() {
        assert!(matches!(
            report(Some("active"), None, Some(101.0)).verdict(1, &AGES),
            Verdict::Running
        ));
        assert!(matches!(
            report(Some("active"), Some("PgSleep"), Some(101.0)).verdict(1, &AGES),
            Verdict::Running
        ));
    }

    #[test]
    fn an_idle_or_blocked_backend_means_the_reply_is_lost() {
        assert!(dead(
            &report(Some("idle"), Some("ClientRead"), Some(101.0)).verdict(1, &AGES)
        ));
        assert!(dead(
            &report(Some("idle in transaction"), None, Some(101.0)).verdict(1, &AGES)
        ));
        assert!(dead(
            &report(Some("active"), Some("ClientWrite"), Some(101.0)).verdict(1, &AGES)
        ));
    }

    #[test]
    fn answers_that_may_be_about_another_session_decide_nothing() {
        // A pooler: the check's own pid is not the server's.
        let mut pooled = report(Some("idle"), None, Some(101.0));
        pooled.server_pid = Some(8);
        assert!(matches!(pooled.verdict(1, &AGES), Verdict::Unknown(_)));
        // The same pid, started long before or after our connection.
        for age in [50.0, 500.0] {
            assert!(matches!(
                report(Some("idle"), None, Some(age)).verdict(1, &AGES),
                Verdict::Unknown(_)
            ));
        }
        // No such backend on a server older than the connection.
        assert!(matches!(
            report(None, None, None).verdict(1, &AGES),
            Verdict::Unknown(_)
        ));
    }

    #[test]
    fn a_server_younger_than_the_connection_has_lost_its_backend() {
        let mut restarted = report(None, None, None);
        restarted.server_uptime = Some(20.0);
        assert!(dead(&restarted.verdict(1, &AGES)));
    }

    #[test]
    fn the_watch_looks_four_times_per_interval() {
        assert_eq!(
            step_for(Duration::from_secs(15)),
            Duration::from_millis(3750)
        );
        assert_eq!(
            step_for(Duration::from_millis(1)),
            Duration::from_millis(10)
        );
        assert_eq!(step_for(Duration::from_secs(600)), Duration::from_secs(5));
    }
}
