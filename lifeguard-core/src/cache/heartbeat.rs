//! The reflector's heartbeat, as the leader writes it and as readers keep a view of it.
//!
//! The leader sets `lg:{ns}:hb` after each loop in which it caught up, to expire unless
//! renewed; its value is `"<epoch> <gen> <lsn> <unix ms>"`: the leader's epoch, the current
//! generation of the keys, and a WAL position every commit before which has been reflected
//! (the consistency-token rule). A reader that finds no heartbeat bypasses the cache: that
//! is what turns the staleness bound into a guarantee (spec §3.7).

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use may::sync::Blocker;

/// One heartbeat value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    /// The leader's epoch.
    pub epoch: u64,
    /// The generation of the keys.
    pub generation: u64,
    /// Every commit whose WAL ends at or before this position has been reflected.
    pub reflected_lsn: u64,
    /// When the leader wrote it (milliseconds since the Unix epoch, the leader's clock).
    pub written_at_ms: u64,
}

impl Heartbeat {
    /// Parses the stored form; `None` for anything else.
    pub fn parse(text: &str) -> Option<Heartbeat> {
        let mut parts = text.split(' ').map(str::parse::<u64>);
        let hb = Heartbeat {
            epoch: parts.next()?.ok()?,
            generation: parts.next()?.ok()?,
            reflected_lsn: parts.next()?.ok()?,
            written_at_ms: parts.next()?.ok()?,
        };
        parts.next().is_none().then_some(hb)
    }
}

impl fmt::Display for Heartbeat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.epoch, self.generation, self.reflected_lsn, self.written_at_ms
        )
    }
}

/// A reader's view of the heartbeat: looked up at most every `refresh`, and trusted for
/// at most `trust` after the lookup (the leader's heartbeat lifetime is `B` minus `trust`,
/// so a view never outlives the bound), and only while the Redis client has not reconnected
/// since (a connection that replaced a broken one may reach a restarted server, whose keys
/// the heartbeat seen on the old one does not vouch for).
pub(crate) struct View {
    /// The last lookup: when, what it found (`None`: no heartbeat), and the client's
    /// connection count then.
    last: Option<(Instant, Option<Heartbeat>, u64)>,
    /// A lookup is under way (others keep the last view meanwhile).
    refreshing: bool,
    /// Callers with no view to trust, waiting for the lookup under way.
    waiters: Vec<Arc<Blocker>>,
}

/// What a reader should do now.
#[derive(Debug)]
pub(crate) enum Look {
    /// The view is recent enough to use.
    Use(Option<Heartbeat>),
    /// The caller should look the heartbeat up (and then [`View::record`] it).
    Refresh,
    /// Another caller is looking it up and the last view is too old to use: wait on this
    /// (within the caller's deadline) and look again.
    Wait(Arc<Blocker>),
}

impl View {
    pub(crate) fn new() -> View {
        View {
            last: None,
            refreshing: false,
            waiters: Vec::new(),
        }
    }

    pub(crate) fn look(
        &mut self,
        now: Instant,
        refresh: Duration,
        trust: Duration,
        reconnects: u64,
    ) -> Look {
        let last = self.last.filter(|(_, _, seen)| *seen == reconnects);
        let age = last.map(|(at, _, _)| now.saturating_duration_since(at));
        match (age, last) {
            (Some(age), Some((_, hb, _))) if age < refresh => Look::Use(hb),
            _ if !self.refreshing => {
                self.refreshing = true;
                Look::Refresh
            }
            (Some(age), Some((_, hb, _))) if age < trust => Look::Use(hb),
            _ => {
                let waiter = Arc::new(Blocker::new(false));
                self.waiters.push(waiter.clone());
                Look::Wait(waiter)
            }
        }
    }

    /// Records a lookup's result (`Err` when Redis did not answer: nothing is known then),
    /// made with the client's reconnect count at `reconnects`, and returns the callers to
    /// wake.
    #[must_use]
    pub(crate) fn record(
        &mut self,
        at: Instant,
        found: Result<Option<Heartbeat>, ()>,
        reconnects: u64,
    ) -> Vec<Arc<Blocker>> {
        self.refreshing = false;
        self.last = found.ok().map(|hb| (at, hb, reconnects));
        std::mem::take(&mut self.waiters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_junk() {
        let hb = Heartbeat {
            epoch: 3,
            generation: 1,
            reflected_lsn: 0x1_6B37_4D48,
            written_at_ms: 1_700_000_000_000,
        };
        assert_eq!(Heartbeat::parse(&hb.to_string()), Some(hb));
        for junk in ["", "1 2 3", "1 2 3 4 5", "a b c d", "1  2 3 4"] {
            assert_eq!(Heartbeat::parse(junk), None, "{junk:?}");
        }
    }

    #[test]
    fn one_caller_refreshes_while_the_others_use_a_trusted_view() {
        let (refresh, trust) = (Duration::from_millis(100), Duration::from_millis(250));
        let t0 = Instant::now();
        let mut view = View::new();
        assert!(matches!(view.look(t0, refresh, trust, 1), Look::Refresh));
        assert!(matches!(view.look(t0, refresh, trust, 1), Look::Wait(_)));
        let hb = Heartbeat::parse("1 0 5 9");
        assert_eq!(view.record(t0, Ok(hb), 1).len(), 1, "the waiter is woken");
        let soon = t0 + Duration::from_millis(50);
        assert!(matches!(view.look(soon, refresh, trust, 1), Look::Use(h) if h == hb));
        let later = t0 + Duration::from_millis(150);
        assert!(matches!(view.look(later, refresh, trust, 1), Look::Refresh));
        assert!(matches!(view.look(later, refresh, trust, 1), Look::Use(h) if h == hb));
        // Past the trust window nobody uses the old view.
        let stale = t0 + Duration::from_millis(300);
        assert!(matches!(view.look(stale, refresh, trust, 1), Look::Wait(_)));
        // A new connection leaves nothing to trust either.
        let _ = view.record(later, Ok(hb), 1);
        assert!(matches!(view.look(later, refresh, trust, 2), Look::Refresh));
        let _ = view.record(later, Ok(hb), 2);
        assert!(matches!(view.look(later, refresh, trust, 2), Look::Use(h) if h == hb));
        // A failed lookup leaves nothing to trust.
        let _ = view.record(later, Err(()), 1);
        assert!(matches!(view.look(later, refresh, trust, 1), Look::Refresh));
    }
}
