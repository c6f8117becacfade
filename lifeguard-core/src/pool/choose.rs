//! Choosing the server for a read: eligibility, the routing table of spec §2.5, the
//! primary's fallback budget and the bounded wait for a consistency token.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::monitor::NodeState as State;
use super::node::Role;
use super::token::{self, format_pg_lsn, Vetted};
use super::{ConsistencyToken, Member, PoolInner, ReadOptions, ReadPreference};
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::rt::{lock, park};
use may::sync::Blocker;

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

/// How often a fallback read queued for the budget looks again whether the primary is
/// still saturated (a budget unit handed back wakes it at once).
const SATURATION_RECHECK: Duration = Duration::from_millis(5);

/// The primary's fallback budget: reads that prefer a replica and find none eligible run on
/// the primary freely while it has room, and only while it is saturated do they need one of
/// `limit` units, queueing for it within their deadline.
pub(super) struct Fallback {
    /// Units not taken.
    free: AtomicUsize,
    limit: usize,
    /// Every fallback read routed to the primary and not finished, with a unit or without.
    in_flight: AtomicUsize,
    /// Reads queued for a unit, woken in turn as units come back. (Not `may`'s semaphore:
    /// its timed-out waiters stay queued and a release recurses through all of them.)
    queue: Mutex<VecDeque<Arc<Blocker>>>,
}

impl Fallback {
    pub(super) fn new(limit: usize) -> Fallback {
        Fallback {
            free: AtomicUsize::new(limit),
            limit,
            in_flight: AtomicUsize::new(0),
            queue: Mutex::new(VecDeque::new()),
        }
    }

    fn take_unit(&self) -> bool {
        self.free
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
            .is_ok()
    }

    fn give_unit(&self) {
        self.free.fetch_add(1, Ordering::AcqRel);
        if let Some(next) = lock(&self.queue).pop_front() {
            next.unpark();
        }
    }

    /// Waits until a unit may have come back, or `until`; `false` when one was taken.
    fn wait_for_unit(&self, me: &Arc<Blocker>, until: Instant) -> bool {
        lock(&self.queue).push_back(me.clone());
        // A unit handed back between the caller's look and the push woke nobody.
        let taken = self.take_unit();
        if !taken {
            park(me, Some(until));
        }
        lock(&self.queue).retain(|b| !Arc::ptr_eq(b, me));
        !taken
    }
}

/// A server chosen for a read, holding a fallback slot when it is the primary standing in
/// for replicas.
pub(super) struct Routed<'a> {
    pub(super) member: &'a Member,
    _budget: Option<BudgetGuard<'a>>,
}

struct BudgetGuard<'a> {
    fallback: &'a Fallback,
    /// Whether it holds a unit of the budget (taken while the primary was saturated).
    unit: bool,
}

impl Drop for BudgetGuard<'_> {
    fn drop(&mut self) {
        self.fallback.in_flight.fetch_sub(1, Ordering::AcqRel);
        if self.unit {
            self.fallback.give_unit();
        }
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
        let vetted;
        let opts = match self.vet_token(opts) {
            Vetted::Kept => opts,
            Vetted::Foreign => {
                vetted = ReadOptions {
                    min_lsn: None,
                    ..*opts
                };
                &vetted
            }
            Vetted::Future => return self.beyond_the_primary(pref),
        };
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
                let budget = self.fallback_slot(deadline, reason)?;
                self.metrics.routed(pref, Role::Primary, reason.as_str());
                Ok(Routed {
                    member: &self.primary,
                    _budget: Some(budget),
                })
            }
        }
    }

    /// What the read's token is worth here ([`token::vet`]), counting the ones rejected.
    /// Its position is judged only on a fresh sample of the primary's.
    fn vet_token(&self, opts: &ReadOptions) -> Vetted {
        let Some(token) = opts.min_lsn else {
            return Vetted::Kept;
        };
        let h = self.primary.tracker.get();
        let fresh = h.fresh(Instant::now(), self.config.monitor_interval);
        let lsn = if fresh { h.lsn } else { u64::MAX };
        let verdict = token::vet(&token, h.system_id, h.timeline, lsn);
        if verdict != Vetted::Kept {
            self.metrics.token_rejected(verdict.reason());
        }
        verdict
    }

    /// A read whose token is ahead of the primary: the primary once (it holds everything
    /// that token could genuinely stand for), without waiting for a replica or taking a
    /// unit of the fallback budget, so a forged token costs one plain primary read.
    fn beyond_the_primary(&self, pref: ReadPreference) -> Result<Routed<'_>> {
        let ahead = "the consistency token is ahead of the primary's WAL position";
        if pref == ReadPreference::Replica {
            return Err(Error::NoEligibleNode(format!(
                "{ahead}: no replica can reach it"
            )));
        }
        if !self.primary_usable() {
            return Err(Error::NoEligibleNode(format!(
                "{ahead} and the primary is unavailable"
            )));
        }
        self.metrics
            .routed(pref, Role::Primary, Reason::TokenUnsatisfied.as_str());
        Ok(Routed {
            member: &self.primary,
            _budget: None,
        })
    }

    /// Whether the primary has room for one more fallback read, the caller already counted
    /// in `in_flight`: it is not saturated while some connection it may open has no request
    /// in flight (nor a lease), counting the fallback reads routed to it and not yet sent.
    fn primary_has_room(&self) -> bool {
        let max = self.config.max_size;
        self.primary.node.load() < max && self.fallback.in_flight.load(Ordering::Acquire) <= max
    }

    /// A fallback read's slot on the primary: at once while the primary has room or a unit
    /// of the budget is free; otherwise it queues for a unit (or for room) until `deadline`,
    /// and only then fails, with `NoEligibleNode`.
    fn fallback_slot(&self, deadline: Instant, reason: Reason) -> Result<BudgetGuard<'_>> {
        let fallback = &self.fallback;
        let mut slot = BudgetGuard {
            fallback,
            unit: false,
        };
        fallback.in_flight.fetch_add(1, Ordering::AcqRel);
        let started = Instant::now();
        let me = Arc::new(Blocker::new(false));
        loop {
            // Units first: a read holding one leaves the room to reads without.
            if fallback.take_unit() {
                slot.unit = true;
                return Ok(slot);
            }
            if self.primary_has_room() {
                return Ok(slot);
            }
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if !fallback.wait_for_unit(&me, deadline.min(now + SATURATION_RECHECK)) {
                slot.unit = true;
                return Ok(slot);
            }
        }
        self.metrics.fallback_rejected();
        let limit = fallback.limit;
        let waited = started.elapsed();
        if let Some(suppressed) = self.quiet.admit("fallback_shed") {
            tracing::warn!(target: "lifeguard::pool", suppressed, budget = limit, ?waited, "the primary is saturated: fallback reads shed after waiting for its budget");
        }
        Err(Error::NoEligibleNode(format!(
            "no replica is eligible ({}) and the primary is saturated: no unit of its fallback budget of {limit} reads came free in {waited:?}",
            reason.as_str()
        )))
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
