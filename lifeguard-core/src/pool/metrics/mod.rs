//! The pool's metrics (spec §2.8): names in base units, `_total` counters, labels bounded by
//! configuration (`pool`, `role`, `node`, fixed reason sets), never SQL text.
//!
//! With the `metrics` feature (on by default) they are Prometheus series; without it
//! [`PoolMetrics`] takes the same calls and records nothing, so the pool calls it the same
//! way either way.

#[cfg(not(feature = "metrics"))]
mod off;
#[cfg(feature = "metrics")]
mod prom;

#[cfg(not(feature = "metrics"))]
use off as recorder;
#[cfg(feature = "metrics")]
use prom as recorder;

pub(crate) use recorder::Gauge;
pub use recorder::PoolMetrics;

use crate::error::Error;

/// The bounded `class` label of a failed statement (also the `error.type` of its span).
pub(crate) fn error_class(e: &Error) -> &'static str {
    match e {
        Error::Connection(_) | Error::CommitOutcomeUnknown(_) | Error::Unavailable { .. } => {
            "connectivity"
        }
        Error::Timeout(_) | Error::PoolTimeout(_) => "timeout",
        Error::SerializationFailure(db) if db.message.contains("conflict with recovery") => {
            "recovery_conflict"
        }
        Error::SerializationFailure(_) | Error::Deadlock(_) => "serialization",
        Error::UniqueViolation { .. }
        | Error::ForeignKeyViolation { .. }
        | Error::NotNullViolation { .. }
        | Error::CheckViolation { .. } => "constraint",
        _ => "other",
    }
}
