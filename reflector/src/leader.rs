//! Election and leadership: a standby tries the advisory lock every
//! [`election_retry`](crate::ReflectorConfig::election_retry); the leader passes over the
//! outbox until its session, Redis or a newer epoch tells it to stop.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lifeguard_core::cache::key::{shard_epoch_key, shard_heartbeat_key};
use lifeguard_core::cache::redis::{cmd, RedisClient};
use lifeguard_core::cache::{scripts, Heartbeat};
use lifeguard_core::Error;

use crate::progress::{Pass, Progress};
use crate::reflect::{reflect, Stop, Target};
use crate::session::{Elected, Registered, Session};
use crate::{Role, Shared};

/// How often the leader counts its backlog and reloads the registry, and trims the
/// outbox.
const STATS_EVERY: Duration = Duration::from_secs(2);
const REGISTRY_EVERY: Duration = Duration::from_secs(10);
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// The election coroutine's body: connect, wait to lead, lead, and again, until shutdown.
pub(crate) fn run(shared: &Shared) {
    let holder = format!("pid {}", std::process::id());
    while !shared.stopping() {
        shared.set_role(Role::Connecting);
        let session = match Session::open(&shared.config) {
            Ok(s) => s,
            Err(e) => {
                shared.failed("connect", &e);
                shared.sleep(shared.config.election_retry);
                continue;
            }
        };
        shared.set_role(Role::Standby);
        while !shared.stopping() {
            match session.try_lead(&holder) {
                Ok(Some(elected)) => {
                    lead(shared, &session, elected);
                    break;
                }
                Ok(None) => {
                    shared.passed();
                    shared.sleep(shared.config.election_retry);
                }
                Err(e) => {
                    shared.failed("election", &e);
                    break;
                }
            }
        }
        shared.metrics.is_leader.set(0);
        // Dropping the session ends it, which releases the lock at once.
    }
}

/// The leader's state between passes.
struct Leader<'a> {
    shared: &'a Shared,
    session: &'a Session,
    redis: &'a RedisClient,
    epoch: i64,
    generation: i64,
    /// The Redis server's run id as this leader last saw it (`None`: not yet asked).
    run_id: Option<String>,
    /// The Redis identity stored with the generation (see [`Leader::ask_run_ids`]): the
    /// servers the generation's keys live on.
    stored_run_id: String,
    /// Whether Redis is a cluster.
    clustered: bool,
    pg_identity: String,
    progress: Progress,
    registry: HashMap<String, Vec<Registered>>,
    registry_at: Instant,
}

fn lead(shared: &Shared, session: &Session, elected: Elected) {
    let m = &shared.metrics;
    m.is_leader.set(1);
    m.epoch.set(elected.epoch);
    m.leader_changes.inc();
    tracing::info!(epoch = elected.epoch, "leading");
    let mut leader = match Leader::start(shared, session, elected) {
        Ok(l) => l,
        Err(Stop::Fenced) => return,
        Err(Stop::Failed(step, e)) => return shared.failed(step, &e),
    };
    shared.set_role(Role::Leader {
        epoch: leader.epoch,
        generation: leader.generation,
    });
    let (mut stats_at, mut trim_at) = (Instant::now(), Instant::now());
    let mut woken_by = "poll";
    while !shared.stopping() {
        m.wakeups.with_label_values(&[woken_by]).inc();
        let full = match leader.pass() {
            Ok(full) => full,
            Err(Stop::Fenced) => {
                tracing::warn!(
                    epoch = leader.epoch,
                    "fenced by a newer leader; stepping down"
                );
                return;
            }
            Err(Stop::Failed(step, e)) => {
                shared.failed(step, &e);
                if e.is_connection() {
                    return;
                }
                shared.sleep(shared.config.poll_interval);
                woken_by = "retry";
                continue;
            }
        };
        shared.passed();
        if stats_at.elapsed() >= STATS_EVERY {
            stats_at = Instant::now();
            leader.measure_backlog();
        }
        if trim_at.elapsed() >= TRIM_EVERY {
            trim_at = Instant::now();
            if let Err(e) = session.trim_outbox(shared.config.retention) {
                shared.failed("trim", &e);
            }
        }
        woken_by = match full {
            true => "backlog",
            false => match session.wait(shared.config.poll_interval) {
                Ok(true) => "notify",
                Ok(false) => "poll",
                Err(e) => return shared.failed("listen", &e),
            },
        };
    }
}

impl<'a> Leader<'a> {
    /// Takes over: bumps the generation when PostgreSQL or Redis is not the server the
    /// last leader saw, loads the checkpoint and the registry.
    fn start(shared: &'a Shared, session: &'a Session, elected: Elected) -> Result<Self, Stop> {
        let failed = |e| Stop::Failed("leader start", e);
        let pg_identity = session.pg_identity().map_err(failed)?;
        let mut leader = Leader {
            shared,
            session,
            redis: &shared.redis,
            epoch: elected.epoch,
            generation: elected.generation,
            run_id: None,
            stored_run_id: String::new(),
            clustered: shared.redis.config().cluster_seeds().is_some(),
            pg_identity,
            progress: Progress::from_checkpoint(session.load_checkpoint().map_err(failed)?),
            registry: session.registry().map_err(failed)?,
            registry_at: Instant::now(),
        };
        let failover = !elected.pg_identity.is_empty() && elected.pg_identity != leader.pg_identity;
        if failover {
            tracing::warn!(was = %elected.pg_identity, now = %leader.pg_identity, "PostgreSQL changed (failover or restore)");
        }
        if failover || elected.pg_identity.is_empty() {
            leader.store_identities(elected.redis_run_id, failover, "pg_identity")?;
        } else {
            leader.stored_run_id = elected.redis_run_id;
        }
        // Stored at once: a successor must resume here even if this leader never moves
        // it (a new namespace's checkpoint is the present, which would otherwise be the
        // successor's present, past whatever was committed in between).
        let stored = session
            .save_checkpoint(leader.progress.checkpoint(), leader.epoch)
            .map_err(failed)?;
        if !stored {
            return Err(Stop::Fenced);
        }
        // A Redis down now is asked again before the first heartbeat.
        if let Err(Stop::Fenced) = leader.learn_run_id() {
            return Err(Stop::Fenced);
        }
        Ok(leader)
    }

    /// Asks Redis for its run id; one that differs from the stored one (a server that
    /// restarted, or another one, since a leader last vouched for it) bumps the generation.
    fn learn_run_id(&mut self) -> Result<(), Stop> {
        let (hb_node, now) = self.ask_run_ids().map_err(|e| Stop::Failed("redis", e))?;
        let reset = !self.stored_run_id.is_empty() && self.stored_run_id != now;
        if reset {
            tracing::warn!(was = %self.stored_run_id, %now, "Redis restarted or failed over");
            self.shared.metrics.redis_resets.inc();
        }
        if reset || self.stored_run_id.is_empty() {
            self.store_identities(now, reset, "redis_reset")?;
        }
        self.run_id = Some(hb_node);
        Ok(())
    }

    /// Stores what PostgreSQL and Redis are now, bumping the generation if `bump`.
    fn store_identities(&mut self, run_id: String, bump: bool, cause: &str) -> Result<(), Stop> {
        match self
            .session
            .bump_generation(self.epoch, &self.pg_identity, &run_id, bump)
            .map_err(|e| Stop::Failed("generation", e))?
        {
            Some(generation) => {
                if bump {
                    tracing::warn!(
                        generation,
                        cause,
                        "generation bumped: every cached key is retired"
                    );
                    self.shared
                        .metrics
                        .generation_bumps
                        .with_label_values(&[cause])
                        .inc();
                }
                self.generation = generation;
                self.stored_run_id = run_id;
                self.shared.metrics.generation.set(generation);
                self.shared.set_role(Role::Leader {
                    epoch: self.epoch,
                    generation,
                });
                Ok(())
            }
            None => Err(Stop::Fenced),
        }
    }

    /// The run id of the node holding the heartbeat (the one its script checks), and the
    /// identity of the Redis the keys live on: that run id, or in a cluster every
    /// master's address and run id, so that a restart of any of them is seen.
    fn ask_run_ids(&self) -> Result<(String, String), Error> {
        let config = &self.shared.config;
        let info = || cmd("INFO").arg("server").to_owned();
        let hb = shard_heartbeat_key(&config.namespace, config.shard, config.shards);
        let hb_node = run_id(&self.redis.query_for_key::<String>(hb.as_bytes(), &info())?)?;
        if !self.clustered {
            return Ok((hb_node.clone(), hb_node));
        }
        let deadline = Instant::now() + config.heartbeat_life();
        let masters = self
            .redis
            .query_each_master::<String>(&info(), deadline)?
            .into_iter()
            .map(|(addr, info)| Ok(format!("{addr}={}", run_id(&info)?)))
            .collect::<Result<Vec<_>, Error>>()?;
        Ok((hb_node, masters.join(",")))
    }

    /// One pass: the changes visible now, reflected; the checkpoint stored when it moved;
    /// the heartbeat renewed when the pass saw everything and was quick enough for the
    /// bound. Returns whether the pass was full (more is waiting).
    fn pass(&mut self) -> Result<bool, Stop> {
        let config = &self.shared.config;
        let started = Instant::now();
        let (lsn, generation) = self
            .session
            .pass_start()
            .map_err(|e| Stop::Failed("outbox", e))?;
        if generation != self.generation {
            // Another shard bumped it (and stored the identities it saw).
            self.generation = generation;
            self.shared.metrics.generation.set(generation);
            self.shared.set_role(Role::Leader {
                epoch: self.epoch,
                generation,
            });
        }
        let (xmin, rows) = self
            .session
            .read_outbox(&self.progress, config.batch)
            .map_err(|e| Stop::Failed("outbox", e))?;
        let read_at = Instant::now();
        let full = rows.len() >= config.batch;
        let target = Target {
            session: self.session,
            redis: self.redis,
            metrics: &self.shared.metrics,
            registry: &self.registry,
            namespace: &config.namespace,
            epoch: self.epoch,
            generation: self.generation,
        };
        let unknown_table = reflect(&target, &rows, read_at)?;
        let positions: Vec<_> = rows.iter().map(|r| r.position).collect();
        if self.progress.advance(&Pass {
            xmin,
            rows: &positions,
            full,
        }) {
            let stored = self
                .session
                .save_checkpoint(self.progress.checkpoint(), self.epoch)
                .map_err(|e| Stop::Failed("checkpoint", e))?;
            if !stored {
                return Err(Stop::Fenced);
            }
        }
        let m = &self.shared.metrics;
        m.batch_duration.observe(started.elapsed().as_secs_f64());
        m.lag.set(match (full, rows.last()) {
            (true, Some(last)) => (last.age + read_at.elapsed()).as_secs_f64(),
            _ => 0.0,
        });
        if !full && started.elapsed() <= config.heartbeat_life() {
            self.beat(lsn)?;
        }
        let registry_due = match unknown_table {
            true => Duration::from_secs(1),
            false => REGISTRY_EVERY,
        };
        if self.registry_at.elapsed() >= registry_due {
            self.registry_at = Instant::now();
            match self.session.registry() {
                Ok(r) => self.registry = r,
                Err(e) => self.shared.failed("registry", &e),
            }
        }
        Ok(full)
    }

    /// Renews the heartbeat, vouching that every commit before `lsn` is reflected, on the
    /// Redis server this leader knows; on another (restarted) one the generation is bumped
    /// first and the next pass vouches.
    fn beat(&mut self, lsn: u64) -> Result<(), Stop> {
        // One server's restart is seen by the heartbeat script; a cluster's other masters
        // are asked before every heartbeat.
        if self.run_id.is_none() || self.clustered {
            self.learn_run_id()?;
        }
        let run_id = self.run_id.clone().unwrap_or_default();
        let config = &self.shared.config;
        let written_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let value = Heartbeat {
            epoch: self.epoch.max(0).unsigned_abs(),
            generation: self.generation.max(0).unsigned_abs(),
            reflected_lsn: lsn,
            written_at_ms,
        }
        .to_string();
        let ns = &config.namespace;
        let reply: i64 = self
            .redis
            .eval_until(
                scripts::heartbeat(),
                &[
                    shard_heartbeat_key(ns, config.shard, config.shards).as_bytes(),
                    shard_epoch_key(ns, config.shard, config.shards).as_bytes(),
                ],
                &[
                    self.epoch.to_string().as_bytes(),
                    value.as_bytes(),
                    config.heartbeat_life().as_millis().to_string().as_bytes(),
                    run_id.as_bytes(),
                ],
                Instant::now() + config.heartbeat_life(),
            )
            .map_err(|e| Stop::Failed("heartbeat", e))?;
        match reply {
            1 => Ok(()),
            0 => Err(Stop::Fenced),
            _ => self.learn_run_id(),
        }
    }

    fn measure_backlog(&self) {
        match self.session.backlog(self.progress.checkpoint()) {
            Ok(b) => {
                let m = &self.shared.metrics;
                m.backlog.set(b.rows);
                m.checkpoint_lag.set(b.oldest.as_secs_f64());
                m.notification_queue.set(b.notification_queue);
            }
            Err(e) => self.shared.failed("backlog", &e),
        }
    }
}

/// The `run_id` in the reply to `INFO server`.
fn run_id(info: &str) -> Result<String, Error> {
    info.lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|id| id.trim().to_owned())
        .ok_or_else(|| Error::protocol("INFO server has no run_id"))
}
