//! Statement telemetry of the pool: the `db.statement` span, carrying the SQL text (never a
//! parameter value), the slow-statement log, and the limiter that keeps a burst of identical
//! warnings to one line a second.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::node::Node;
use super::operation::Operation;
use super::{metrics, PoolInner};
use crate::error::Result;
use crate::rt::lock;

/// SQL longer than this is cut in the slow-statement log (a generated `IN (...)` list can
/// run to megabytes).
const SLOW_SQL_LIMIT: usize = 2048;

impl PoolInner {
    /// Runs a statement under a span with the OpenTelemetry database attributes, logs it
    /// when it took longer than the slow-statement threshold, and says how long it took
    /// since `started`.
    ///
    /// The span is created and closed around the call but never entered: entering would push
    /// it on the worker thread's span stack, which other coroutines then run under while
    /// this one is parked. Subscribers still see its open and close times. Its fields borrow
    /// the SQL, so with no subscriber interested nothing is copied.
    pub(super) fn observe<T>(
        &self,
        node: &Node,
        kind: &'static str,
        sql: &str,
        op: Operation,
        started: Instant,
        f: impl FnOnce() -> Result<T>,
    ) -> (Result<T>, Duration) {
        // DEBUG, as sqlx logs its statements: one per statement is a volume an INFO
        // subscriber should not pay for (a formatting layer copies every field of an
        // enabled span, the SQL included, at creation).
        let span = tracing::debug_span!(
            "db.statement",
            db.system = "postgresql",
            db.operation = kind,
            db.operation.name = op.as_str(),
            db.query.text = sql,
            db.lifeguard.role = node.role.as_str(),
            server.address = %node.label,
            error.type = tracing::field::Empty,
        );
        let result = f();
        let took = started.elapsed();
        let error = result.as_ref().err().map(metrics::error_class);
        if let Some(class) = error {
            span.record("error.type", class);
        }
        if let Some(threshold) = self.config.slow_statement_threshold {
            if took >= threshold {
                log_slow(node, op, sql, took, threshold, error);
            }
        }
        (result, took)
    }
}

/// The WARN line of a slow statement: what sqlx's and SeaORM's users look for.
#[cold]
fn log_slow(
    node: &Node,
    op: Operation,
    sql: &str,
    took: Duration,
    threshold: Duration,
    error: Option<&'static str>,
) {
    let (text, truncated) = head(sql, SLOW_SQL_LIMIT);
    tracing::warn!(
        target: "lifeguard::statement",
        elapsed = ?took,
        elapsed_secs = took.as_secs_f64(),
        slow_threshold = ?threshold,
        db.operation.name = op.as_str(),
        db.lifeguard.role = node.role.as_str(),
        server.address = %node.label,
        db.query.text = text,
        db.query.truncated = truncated,
        error.type = error,
        "slow statement: {} took {took:.1?} on {}",
        op.as_str(),
        node.label,
    );
}

/// At most `limit` bytes of `sql`, cut at a character boundary, and whether it was cut.
fn head(sql: &str, limit: usize) -> (&str, bool) {
    if sql.len() <= limit {
        return (sql, false);
    }
    let mut end = limit;
    while !sql.is_char_boundary(end) {
        end -= 1;
    }
    (&sql[..end], true)
}

/// The most keys a [`WarnLimiter`] tracks; past it, a new key is logged untracked (so an
/// unbounded key space costs no memory, only its lines).
const MAX_KEYS: usize = 1024;

/// Lets one warning per key through per period and counts the ones it holds back, so a
/// fault that fails thousands of requests a second logs a line a second that says how many
/// it stood for, instead of a line each.
///
/// ```
/// use std::time::Duration;
/// use lifeguard_core::pool::WarnLimiter;
///
/// let quiet = WarnLimiter::new(Duration::from_secs(1));
/// for _ in 0..1000 {
///     if let Some(suppressed) = quiet.admit("database unavailable") {
///         // Once a second: the first time 0, then how many were held back since.
///         tracing::warn!(suppressed, "database unavailable");
///     }
/// }
/// assert_eq!(quiet.admit("another warning"), Some(0));
/// ```
pub struct WarnLimiter {
    period: Duration,
    /// Per key: when its last line went out, and how many were held back since.
    keys: Mutex<HashMap<String, (Instant, u64)>>,
}

impl WarnLimiter {
    /// At most one warning per key per `period`.
    pub fn new(period: Duration) -> WarnLimiter {
        WarnLimiter {
            period,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(n)` when a warning for `key` should be logged now, `n` being how many for it
    /// were held back since the last one; `None` when it is held back (and counted).
    pub fn admit(&self, key: &str) -> Option<u64> {
        let now = Instant::now();
        let mut keys = lock(&self.keys);
        if let Some((last, held)) = keys.get_mut(key) {
            if now.saturating_duration_since(*last) < self.period {
                *held += 1;
                return None;
            }
            let suppressed = *held;
            *last = now;
            *held = 0;
            return Some(suppressed);
        }
        if keys.len() >= MAX_KEYS {
            let period = self.period;
            keys.retain(|_, (last, _)| now.saturating_duration_since(*last) < period);
        }
        if keys.len() < MAX_KEYS {
            keys.insert(key.to_owned(), (now, 0));
        }
        Some(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_key_per_period_with_the_count_held_back() {
        let quiet = WarnLimiter::new(Duration::from_millis(50));
        assert_eq!(quiet.admit("a"), Some(0));
        for _ in 0..5 {
            assert_eq!(quiet.admit("a"), None);
        }
        assert_eq!(quiet.admit("b"), Some(0), "keys are limited apart");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(quiet.admit("a"), Some(5));
        assert_eq!(quiet.admit("a"), None);
    }

    #[test]
    fn long_sql_is_cut_at_a_character_boundary() {
        assert_eq!(head("SELECT 1", 2048), ("SELECT 1", false));
        let long = format!("SELECT '{}'", "é".repeat(2000));
        let (text, cut) = head(&long, SLOW_SQL_LIMIT);
        assert!(cut && text.len() <= SLOW_SQL_LIMIT && text.len() >= SLOW_SQL_LIMIT - 1);
        assert!(long.starts_with(text));
    }
}
