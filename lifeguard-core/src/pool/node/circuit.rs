//! The circuit breaker on a server's connects.
//!
//! Closed, connects go ahead. A failed connect opens the circuit for a growing, jittered
//! pause, during which callers do not connect (the pool makes them wait for the server
//! within their deadline instead). When the pause ends the circuit is half-open: one connect
//! is the probe and the others keep off until it answers or `PROBE_WINDOW` passes. A
//! connect that succeeds closes the circuit, and so does the monitor when it connects anew,
//! so a server that is back is used again at once, whatever the pause had left.

use std::time::{Duration, Instant};

use super::{rand_unit, Node};
use crate::error::{Error, Result};
use crate::rt::lock;

/// How long the other callers leave a half-open circuit to its probe: a probe normally
/// answers (or is refused) within milliseconds, one that hangs gives way to another.
const PROBE_WINDOW: Duration = Duration::from_secs(1);

/// The longest pause after repeated failures. Short, because the monitor closes the
/// circuit as soon as it reaches the server again; the pause only spaces the probes.
const MAX_PAUSE: Duration = Duration::from_secs(2);

/// Connect failures of one server and what they mean for the next connect.
#[derive(Default)]
pub(super) struct Circuit {
    /// Failed rounds in a row: connects failing together (every caller of a server that
    /// just went away) count as one, so a burst does not push the pause to its maximum.
    failures: u32,
    /// When the circuit opened; `None` while it is closed.
    opened_at: Option<Instant>,
    /// The end of the current pause.
    open_until: Option<Instant>,
    /// The probe of a half-open circuit has the connect until then.
    probe_until: Option<Instant>,
    last_error: Option<String>,
}

impl Circuit {
    /// `Unavailable` while the circuit is open; when its pause is over, the first caller
    /// gets through as the probe and the others stay out until it answers.
    pub(super) fn check(&mut self, label: &str) -> Result<()> {
        let Some(until) = self.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now >= until && self.probe_until.is_none_or(|p| now >= p) {
            self.probe_until = Some(now + PROBE_WINDOW);
            return Ok(());
        }
        Err(Error::Unavailable {
            node: label.to_owned(),
            reason: format!(
                "circuit open after {} failed connect rounds (last: {})",
                self.failures,
                self.last_error.as_deref().unwrap_or("-")
            ),
        })
    }

    /// A connect failed. A failure while the circuit is closed or half-open opens it for
    /// twice as long as the previous pause (from 100 ms, at most `MAX_PAUSE`), less a
    /// random part of up to half; one while it is open (a connect begun before it opened)
    /// only updates the error.
    pub(super) fn failed(&mut self, e: &Error) {
        let now = Instant::now();
        self.last_error = Some(e.to_string());
        if self.open_until.is_some_and(|until| now < until) {
            return;
        }
        self.failures = self.failures.saturating_add(1);
        let base = Duration::from_millis(50) * 2u32.saturating_pow(self.failures.min(8));
        let pause = base.min(MAX_PAUSE).mul_f64(0.5 + rand_unit() * 0.5);
        self.opened_at.get_or_insert(now);
        self.open_until = Some(now + pause);
        self.probe_until = None;
    }

    /// A connect succeeded: the failures are forgotten.
    pub(super) fn succeeded(&mut self) {
        *self = Circuit::default();
    }

    /// Whether the circuit is open (or half-open) since before `at`.
    fn opened_before(&self, at: Instant) -> bool {
        self.opened_at.is_some_and(|opened| opened <= at)
    }
}

impl Node {
    /// A connect to this server that began at `at` succeeded outside the pool (the
    /// monitor's): a circuit opened before then closes, so callers waiting for the server
    /// connect at once instead of sitting out the rest of a pause.
    pub(crate) fn connect_proved(&self, at: Instant) {
        let mut s = lock(&self.slots);
        if s.circuit.opened_before(at) {
            s.circuit.succeeded();
            tracing::debug!(target: "lifeguard::pool", node = %self.label, "circuit closed: the monitor reached the server");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> Error {
        Error::connection("connect", None)
    }

    #[test]
    fn a_burst_of_failures_is_one_round() {
        let mut c = Circuit::default();
        for _ in 0..8 {
            c.failed(&refused());
        }
        assert_eq!(c.failures, 1);
        assert!(c.check("n").is_err());
    }

    #[test]
    fn a_half_open_circuit_lets_one_probe_through() {
        let mut c = Circuit::default();
        c.failed(&refused());
        // The pause is over: the first caller probes, the next one waits for it.
        c.open_until = Some(Instant::now());
        assert!(c.check("n").is_ok());
        assert!(c.check("n").is_err());
        // The probe failed: a second round, a longer pause.
        c.failed(&refused());
        assert_eq!(c.failures, 2);
        assert!(c.check("n").is_err());
        c.succeeded();
        assert!(c.check("n").is_ok());
    }

    #[test]
    fn only_a_connect_begun_after_the_opening_closes_it() {
        let mut c = Circuit::default();
        let before = Instant::now();
        std::thread::sleep(Duration::from_millis(2));
        c.failed(&refused());
        assert!(!c.opened_before(before));
        assert!(c.opened_before(Instant::now()));
    }
}
