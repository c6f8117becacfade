//! Choosing the server for a read: eligibility, the routing table of spec §2.5, the
//! primary's fallback budget and the bounded wait for a consistency token.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::monitor::NodeState as State;
use super::node::Role;
use super::token::format_pg_lsn;
use super::{ConsistencyToken, Member, PoolInner, ReadOptions, ReadPreference};
use crate::error::{Error, Result};
use crate::executor::Executor;

/// Why a read went where it went (the `reason` label).
#[derive(Clone, Copy)]
pub(super) enum Reason {
    Eligible,
    TokenUnsatisfied,
    Stale,
    NoReplica,
    Pinned,
}

impl Reason {
    fn as_str(self) -> &'static str {
        match self {
            Reason::Eligible => "eligible",
            Reason::TokenUnsatisfied => "token_unsatisfied",
            Reason::Stale => "stale",
            Reason::NoReplica => "no_replica",
            Reason::Pinned => "pinned",
        }
    }
}

/// A server chosen for a read, holding a unit of the fallback budget when it is the primary
/// standing in for replicas.
pub(super) struct Routed<'a> {
    pub(super) member: &'a Member,
    _budget: Option<BudgetGuard<'a>>,
}

struct BudgetGuard<'a>(&'a AtomicUsize);

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl PoolInner {
    pub(super) fn primary_usable(&self) -> bool {
        !matches!(
            self.primary.tracker.get().state,
            State::Unreachable | State::RoleMismatch
        )
    }

    /// Picks the server for a read under `opts`, per the routing table of spec §2.5.
    pub(super) fn route(&self, opts: &ReadOptions, deadline: Instant) -> Result<Routed<'_>> {
        self.check_open()?;
        let pref = opts.preference;
        let primary = Routed {
            member: &self.primary,
            _budget: None,
        };
        if pref == ReadPreference::Primary {
            return if self.primary_usable() {
                self.metrics
                    .routed(pref, Role::Primary, Reason::Pinned.as_str());
                Ok(primary)
            } else {
                Err(Error::Unavailable {
                    node: self.primary.node.label.clone(),
                    reason: "the primary is unreachable or no longer a primary".into(),
                })
            };
        }
        if pref == ReadPreference::PrimaryPreferred && self.primary_usable() {
            self.metrics
                .routed(pref, Role::Primary, Reason::Pinned.as_str());
            return Ok(primary);
        }
        if self.replicas.is_empty() {
            // Nothing to prefer: the primary serves reads as a matter of course.
            if pref == ReadPreference::Replica {
                return Err(Error::NoEligibleNode("the pool has no replicas".into()));
            }
            self.metrics
                .routed(pref, Role::Primary, Reason::NoReplica.as_str());
            return Ok(primary);
        }
        let (best, reason) = self.best_replica(opts, pref == ReadPreference::Nearest);
        if let Some(member) = best {
            self.metrics
                .routed(pref, Role::Replica, Reason::Eligible.as_str());
            return Ok(Routed {
                member,
                _budget: None,
            });
        }
        if let (Reason::TokenUnsatisfied, Some(token)) = (reason, opts.min_lsn) {
            let wait = opts.lsn_wait.unwrap_or(self.config.lsn_wait);
            if !wait.is_zero() {
                if let Some(member) = self.wait_for_replica(opts, token, wait, deadline) {
                    self.metrics
                        .routed(pref, Role::Replica, Reason::Eligible.as_str());
                    return Ok(Routed {
                        member,
                        _budget: None,
                    });
                }
            }
        }
        match pref {
            ReadPreference::Replica => Err(Error::NoEligibleNode(format!(
                "no replica is eligible ({})",
                reason.as_str()
            ))),
            _ if !self.primary_usable() => Err(Error::NoEligibleNode(format!(
                "no replica is eligible ({}) and the primary is unavailable",
                reason.as_str()
            ))),
            _ => {
                let limit = self.config.fallback_limit();
                let taken = self.fallback_inflight.fetch_add(1, Ordering::AcqRel);
                let budget = BudgetGuard(&self.fallback_inflight);
                if taken >= limit {
                    self.metrics.fallback_rejected();
                    return Err(Error::NoEligibleNode(format!(
                        "no replica is eligible ({}) and the primary's fallback budget of {limit} reads is spent",
                        reason.as_str()
                    )));
                }
                self.metrics.routed(pref, Role::Primary, reason.as_str());
                Ok(Routed {
                    member: &self.primary,
                    _budget: Some(budget),
                })
            }
        }
    }

    /// The least loaded eligible replica, or why there is none. With `include_primary`
    /// (`Nearest`) the primary competes too.
    fn best_replica(&self, opts: &ReadOptions, include_primary: bool) -> (Option<&Member>, Reason) {
        let now = Instant::now();
        let interval = self.config.monitor_interval;
        let bound = opts
            .max_staleness
            .unwrap_or(self.config.default_max_staleness);
        let primary = self.primary.tracker.get();
        let mut reason = Reason::NoReplica;
        let mut best: Option<(&Member, usize)> = None;
        for m in &self.replicas {
            let h = m.tracker.get();
            if !matches!(h.state, State::Healthy | State::Lagging) {
                continue;
            }
            if !h.fresh(now, interval) {
                reason = Reason::Stale;
                continue;
            }
            if primary.system_id != 0 && h.system_id != primary.system_id {
                continue;
            }
            if h.staleness_upper(now) > bound {
                reason = Reason::Stale;
                continue;
            }
            if let Some(t) = opts.min_lsn {
                if t.timeline() != h.timeline || t.system_id() != h.system_id || h.lsn < t.lsn() {
                    reason = Reason::TokenUnsatisfied;
                    continue;
                }
            }
            let load = m.node.load();
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((m, load));
            }
        }
        if include_primary && self.primary_usable() {
            let load = self.primary.node.load();
            if best.is_none_or(|(_, l)| load < l) {
                best = Some((&self.primary, load));
            }
        }
        (best.map(|(m, _)| m), reason)
    }

    /// Waits (bounded) for the most advanced replica to replay past `token`.
    fn wait_for_replica(
        &self,
        opts: &ReadOptions,
        token: ConsistencyToken,
        wait: Duration,
        deadline: Instant,
    ) -> Option<&Member> {
        let started = Instant::now();
        let until = (started + wait).min(deadline);
        let relaxed = ReadOptions {
            min_lsn: None,
            ..*opts
        };
        let (candidate, _) = self.best_replica(&relaxed, false);
        let member = candidate?;
        if member.tracker.get().timeline != token.timeline() {
            return None;
        }
        let conn = member.node.shared(until).ok()?;
        let target = format_pg_lsn(token.lsn());
        let mut pause = Duration::from_millis(1);
        loop {
            let reached = conn
                .timeout(
                    until
                        .saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                )
                .query_one(
                    "SELECT pg_catalog.pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                    &[&target],
                )
                .and_then(|row| row.try_get::<_, Option<bool>>(0));
            match reached {
                Ok(Some(true)) => {
                    self.metrics
                        .consistency_wait("satisfied", started.elapsed());
                    return Some(member);
                }
                Ok(_) => {}
                Err(_) => break,
            }
            if Instant::now() + pause >= until {
                break;
            }
            may::coroutine::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(10));
        }
        self.metrics.consistency_wait("timeout", started.elapsed());
        None
    }
}
