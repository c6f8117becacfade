//! The circuit breaker on a server's connects.

use std::time::{Duration, Instant};

use super::rand_unit;
use crate::error::{Error, Result};

/// Connect failures open the circuit for a growing, jittered while, so a dead server costs
/// callers a fast error instead of a connect timeout each.
#[derive(Default)]
pub(super) struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
    last_error: Option<String>,
}

impl Circuit {
    /// `Unavailable` while the circuit is open.
    pub(super) fn check(&self, label: &str) -> Result<()> {
        match self.open_until {
            Some(until) if Instant::now() < until => Err(Error::Unavailable {
                node: label.to_owned(),
                reason: format!(
                    "circuit open after {} failed connects (last: {})",
                    self.failures,
                    self.last_error.as_deref().unwrap_or("-")
                ),
            }),
            _ => Ok(()),
        }
    }

    /// A connect failed: the circuit opens for twice as long as after the previous failure
    /// (from 100 ms, at most 5 s), less a random part of up to half.
    pub(super) fn failed(&mut self, e: &Error) {
        self.failures = self.failures.saturating_add(1);
        let base = Duration::from_millis(50) * 2u32.saturating_pow(self.failures.min(8));
        let backoff = base
            .min(Duration::from_secs(5))
            .mul_f64(0.5 + rand_unit() * 0.5);
        self.open_until = Some(Instant::now() + backoff);
        self.last_error = Some(e.to_string());
    }

    /// A connect succeeded: the failures are forgotten.
    pub(super) fn succeeded(&mut self) {
        *self = Circuit::default();
    }
}
