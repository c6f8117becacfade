//! Server health and replica staleness, measured on one clock (spec §2.4).
//!
//! The monitor samples the primary's WAL flush position into a history ring and each
//! replica's replay position. A replica's staleness is how long ago the primary first wrote
//! WAL the replica has not replayed, so an idle primary reads as zero lag, while a paused or
//! disconnected replica falls behind as soon as the primary writes. Only a fresh sample makes
//! a server eligible.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use super::node::Role;
use super::token::{parse_pg_lsn, record_end_in_row, wal_sizes_sql};
use super::{Member, PoolInner};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::pg::Connection;
use crate::rt::lock;

/// Good samples in a row a lagging replica needs before it is healthy again.
const RECOVERY_STREAK: u32 = 3;

/// The health of one server, as the monitor last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Not sampled yet, or the samples stopped: not eligible for reads.
    Unknown,
    /// Fresh samples, right role, within the staleness bound.
    Healthy,
    /// Behind by more than the bound, or replay is paused.
    Lagging,
    /// The monitor cannot reach it.
    Unreachable,
    /// A replica that is not in recovery (promoted) or a primary that is (demoted), or a
    /// server of another cluster.
    RoleMismatch,
}

impl NodeState {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Unknown => "unknown",
            NodeState::Healthy => "healthy",
            NodeState::Lagging => "lagging",
            NodeState::Unreachable => "unreachable",
            NodeState::RoleMismatch => "role_mismatch",
        }
    }
}

/// What routing needs to know about a server.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Health {
    pub(crate) state: NodeState,
    pub(crate) sampled_at: Option<Instant>,
    /// Replay LSN (replica) or insert LSN (primary) at the sample.
    pub(crate) lsn: u64,
    pub(crate) timeline: u32,
    pub(crate) system_id: u64,
    /// Staleness at the sample; add the sample's age for an upper bound.
    pub(crate) staleness: Duration,
    pub(crate) paused: bool,
    good_streak: u32,
}

impl Default for Health {
    fn default() -> Health {
        Health {
            state: NodeState::Unknown,
            sampled_at: None,
            lsn: 0,
            timeline: 0,
            system_id: 0,
            staleness: Duration::MAX,
            paused: false,
            good_streak: 0,
        }
    }
}

impl Health {
    /// Whether the newest sample is recent enough to route on.
    pub(crate) fn fresh(&self, now: Instant, interval: Duration) -> bool {
        self.sampled_at
            .is_some_and(|t| now.saturating_duration_since(t) <= interval * 3)
    }

    /// Staleness plus the age of the sample.
    pub(crate) fn staleness_upper(&self, now: Instant) -> Duration {
        match self.sampled_at {
            Some(t) => self
                .staleness
                .saturating_add(now.saturating_duration_since(t)),
            None => Duration::MAX,
        }
    }
}

/// The primary's recent WAL positions, oldest first.
pub(crate) struct History {
    samples: VecDeque<(Instant, u64)>,
    window: Duration,
}

impl History {
    pub(crate) fn new(window: Duration) -> History {
        History {
            samples: VecDeque::new(),
            window,
        }
    }

    pub(crate) fn push(&mut self, at: Instant, lsn: u64) {
        self.samples.push_back((at, lsn));
        while self.samples.len() > 1
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| at.saturating_duration_since(*t) > self.window)
        {
            self.samples.pop_front();
        }
    }

    /// How long the primary has held WAL past `replay`, as of `now`; `None` without samples.
    pub(crate) fn staleness(&self, replay: u64, now: Instant) -> Option<Duration> {
        let (_, latest) = *self.samples.back()?;
        if replay >= latest {
            return Some(Duration::ZERO);
        }
        let first_ahead = self
            .samples
            .iter()
            .find(|(_, lsn)| *lsn > replay)
            .map(|(t, _)| *t)?;
        Some(now.saturating_duration_since(first_ahead))
    }
}

/// One server's sample.
pub(crate) struct Sample {
    pub(crate) in_recovery: bool,
    pub(crate) lsn: u64,
    /// The primary's flush position (the history's measure); the replay position on a replica.
    pub(crate) flush_lsn: u64,
    pub(crate) timeline: u32,
    pub(crate) system_id: u64,
    pub(crate) paused: bool,
}

const PRIMARY_SQL: &str = concat!(
    "SELECT pg_catalog.pg_is_in_recovery(), \
     CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
          ELSE pg_catalog.pg_current_wal_insert_lsn() END::text, \
     CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_last_wal_replay_lsn() \
          ELSE pg_catalog.pg_current_wal_flush_lsn() END::text, \
     CASE WHEN pg_catalog.pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_catalog.pg_control_checkpoint()) \
          ELSE ('x' || substr(pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_insert_lsn()), 1, 8))::bit(32)::int END, \
     (SELECT system_identifier FROM pg_catalog.pg_control_system()), \
     CASE WHEN pg_catalog.pg_is_in_recovery() THEN pg_catalog.pg_get_wal_replay_pause_state() <> 'not paused' ELSE false END, ",
    wal_sizes_sql!()
);

/// Samples one server with a short deadline.
pub(crate) fn sample(conn: &Connection) -> Result<Sample> {
    let row = conn
        .timeout(Duration::from_secs(1))
        .query_one(PRIMARY_SQL, &[])?;
    let lsn_of = |i: usize| -> Result<u64> {
        let text: Option<String> = row.try_get(i)?;
        // A replica that has replayed nothing yet reports NULL: position zero.
        Ok(text.as_deref().and_then(parse_pg_lsn).unwrap_or(0))
    };
    let timeline: i32 = row.try_get(3)?;
    let system_id: i64 = row.try_get(4)?;
    let in_recovery: bool = row.try_get(0)?;
    let lsn = if in_recovery {
        lsn_of(1)?
    } else {
        // A primary's insert position, held to the same measure as the tokens it issues.
        record_end_in_row(&row, lsn_of(1)?, 6)?
    };
    Ok(Sample {
        in_recovery,
        lsn,
        flush_lsn: lsn_of(2)?,
        timeline: u32::try_from(timeline).map_err(|_| Error::protocol("negative timeline"))?,
        // system_identifier is unsigned in pg_control and only shown as bigint.
        system_id: system_id as u64,
        paused: row.try_get(5)?,
    })
}

/// A server's health record with its state machine.
pub(crate) struct Tracker {
    pub(crate) role: Role,
    health: Mutex<Health>,
}

impl Tracker {
    pub(crate) fn new(role: Role) -> Tracker {
        Tracker {
            role,
            health: Mutex::new(Health::default()),
        }
    }

    pub(crate) fn get(&self) -> Health {
        *lock(&self.health)
    }

    /// Applies a failed sample; returns (old, new) state.
    pub(crate) fn unreachable(&self) -> (NodeState, NodeState) {
        let mut h = lock(&self.health);
        let old = h.state;
        h.state = NodeState::Unreachable;
        h.good_streak = 0;
        (old, h.state)
    }

    /// Applies a sample; `expected_system` is the primary's identifier (0 when unknown) and
    /// `staleness` the measured lag (replicas only). Returns (old, new) state.
    pub(crate) fn record(
        &self,
        s: &Sample,
        at: Instant,
        expected_system: u64,
        staleness: Duration,
        lag_enter: Duration,
    ) -> (NodeState, NodeState) {
        let mut h = lock(&self.health);
        let old = h.state;
        h.sampled_at = Some(at);
        h.lsn = s.lsn;
        h.timeline = s.timeline;
        h.system_id = s.system_id;
        h.staleness = staleness;
        h.paused = s.paused;
        let wrong_role = match self.role {
            Role::Primary => s.in_recovery,
            Role::Replica => !s.in_recovery,
        };
        let wrong_system = expected_system != 0 && s.system_id != expected_system;
        h.state = if wrong_role || wrong_system {
            h.good_streak = 0;
            NodeState::RoleMismatch
        } else if self.role == Role::Primary {
            NodeState::Healthy
        } else if staleness > lag_enter || s.paused {
            h.good_streak = 0;
            NodeState::Lagging
        } else if old == NodeState::Lagging {
            // Hysteresis: come back only after several samples well inside the bound.
            if staleness <= lag_enter / 2 {
                h.good_streak += 1;
            } else {
                h.good_streak = 0;
            }
            if h.good_streak >= RECOVERY_STREAK {
                NodeState::Healthy
            } else {
                NodeState::Lagging
            }
        } else {
            NodeState::Healthy
        };
        (old, h.state)
    }
}

/// Starts one monitor coroutine per server, so a hung server delays only its own samples.
/// Each samples its server every `interval`, maintains that server's connections about once
/// a second, and ends when the pool is dropped or closed.
pub(super) fn start_monitors(pool: &Arc<PoolInner>, interval: Duration) -> Result<()> {
    for index in 0..=pool.replicas.len() {
        let weak = Arc::downgrade(pool);
        let name = format!("lifeguard-pool-monitor-{index}");
        crate::rt::spawn(&name, 0x4000, move || monitor_loop(weak, index, interval))
            .map_err(|e| Error::connection("spawn a pool monitor", Some(e)))?;
    }
    Ok(())
}

fn monitor_loop(pool: Weak<PoolInner>, index: usize, interval: Duration) {
    let mut conn: Option<Connection> = None;
    let every = (Duration::from_secs(1).as_millis() / interval.as_millis().max(1)).max(1) as u64;
    let mut tick: u64 = 0;
    loop {
        let Some(inner) = pool.upgrade() else { return };
        if inner.closed.load(Ordering::Acquire) {
            return;
        }
        let member = inner.member(index);
        inner.sample(member, &mut conn);
        if tick.is_multiple_of(every) {
            member.node.maintain();
        }
        tick += 1;
        drop(inner);
        may::coroutine::sleep(interval);
    }
}

impl PoolInner {
    /// Server `index`: 0 is the primary, then the replicas in configuration order.
    fn member(&self, index: usize) -> &Member {
        match index {
            0 => &self.primary,
            i => &self.replicas[i - 1],
        }
    }

    /// Samples one server on its monitor connection (reopened when needed) and applies the
    /// sample to its state. The primary's samples feed the WAL history replicas are
    /// measured against.
    fn sample(&self, m: &Member, conn: &mut Option<Connection>) {
        let label = &m.node.label;
        let result = match conn.as_ref().filter(|c| !c.is_broken()) {
            Some(c) => sample(c),
            None => {
                let mut config = m.node.config.clone();
                if config.get_connect_timeout().is_none() {
                    config = config.connect_timeout(Duration::from_secs(1));
                }
                config = config.application_name("lifeguard-monitor");
                let began = Instant::now();
                Connection::connect(&config).and_then(|c| {
                    // The server takes connections again: callers waiting out its outage
                    // need not wait for the circuit's pause to end.
                    m.node.connect_proved(began);
                    let s = sample(&c);
                    *conn = Some(c);
                    s
                })
            }
        };
        let now = Instant::now();
        let lag_enter = self.config.default_max_staleness;
        let (old, new) = match result {
            Ok(s) => {
                let primary = self.primary.tracker.get();
                let (expected, staleness) = match m.node.role {
                    Role::Primary => {
                        lock(&self.history).push(now, s.flush_lsn);
                        (0, Duration::ZERO)
                    }
                    Role::Replica => {
                        let Some(staleness) = lock(&self.history).staleness(s.lsn, now) else {
                            // The primary has not been sampled yet, so there is nothing to
                            // measure against: the replica stays unknown (ineligible).
                            return;
                        };
                        let lag = primary.lsn.saturating_sub(s.lsn);
                        let shown = staleness.min(Duration::from_secs(86_400));
                        self.metrics.replica_sample(label, shown, lag, s.paused);
                        (primary.system_id, staleness)
                    }
                };
                m.tracker.record(&s, now, expected, staleness, lag_enter)
            }
            Err(e) => {
                tracing::debug!(target: "lifeguard::pool", node = %label, "monitor sample failed: {e}");
                *conn = None;
                m.tracker.unreachable()
            }
        };
        if old != new {
            tracing::info!(target: "lifeguard::pool", node = %label, from = old.as_str(), to = new.as_str(), "server state changed");
        }
        self.metrics.node_state(label, old.as_str(), new.as_str());
        if let Some(t) = m.tracker.get().sampled_at {
            self.metrics
                .sample_age(label, now.saturating_duration_since(t));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_primary_means_zero_staleness() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(60));
        h.push(t0, 100);
        h.push(t0 + Duration::from_secs(5), 100);
        assert_eq!(
            h.staleness(100, t0 + Duration::from_secs(10)),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn staleness_counts_from_the_first_unreplayed_write() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(60));
        h.push(t0, 100);
        h.push(t0 + Duration::from_secs(1), 200);
        h.push(t0 + Duration::from_secs(2), 300);
        let now = t0 + Duration::from_secs(3);
        assert_eq!(h.staleness(150, now), Some(Duration::from_secs(2)));
        assert_eq!(h.staleness(250, now), Some(Duration::from_secs(1)));
        assert_eq!(h.staleness(300, now), Some(Duration::ZERO));
        assert_eq!(History::new(Duration::from_secs(1)).staleness(1, now), None);
    }

    #[test]
    fn window_drops_old_samples_but_keeps_the_newest() {
        let t0 = Instant::now();
        let mut h = History::new(Duration::from_secs(1));
        h.push(t0, 100);
        h.push(t0 + Duration::from_secs(5), 200);
        assert_eq!(h.samples.len(), 1);
    }

    #[test]
    fn lagging_replica_needs_a_streak_to_recover() {
        let tracker = Tracker::new(Role::Replica);
        let s = Sample {
            in_recovery: true,
            lsn: 1,
            flush_lsn: 1,
            timeline: 1,
            system_id: 7,
            paused: false,
        };
        let bound = Duration::from_secs(1);
        let now = Instant::now();
        assert_eq!(
            tracker.record(&s, now, 7, Duration::ZERO, bound).1,
            NodeState::Healthy
        );
        assert_eq!(
            tracker.record(&s, now, 7, Duration::from_secs(2), bound).1,
            NodeState::Lagging
        );
        for expected in [NodeState::Lagging, NodeState::Lagging, NodeState::Healthy] {
            assert_eq!(
                tracker.record(&s, now, 7, Duration::ZERO, bound).1,
                expected
            );
        }
        assert_eq!(
            tracker.record(&s, now, 8, Duration::ZERO, bound).1,
            NodeState::RoleMismatch
        );
        let promoted = Sample {
            in_recovery: false,
            ..s
        };
        assert_eq!(
            tracker.record(&promoted, now, 7, Duration::ZERO, bound).1,
            NodeState::RoleMismatch
        );
    }
}
