//! The reflector's one PostgreSQL session: the advisory lock that makes a leader, the
//! `LISTEN` that wakes it, and every statement it runs. Leadership, notifications and
//! the checkpoint live and die together with this session.

use std::collections::HashMap;
use std::time::Duration;

use lifeguard_core::cache::{capture_base_sql, CacheMode, CaptureOptions};
use lifeguard_core::pg::{Config, Connection, Row};
use lifeguard_core::{Error, Executor, Result};

use crate::config::ReflectorConfig;
use crate::progress::{Position, Progress};

/// The channel the capture triggers notify.
const CHANNEL: &str = "lifeguard_outbox";

/// A session on the primary.
pub(crate) struct Session {
    conn: Connection,
    /// The namespace: its row holds the generation every shard shares.
    namespace: String,
    /// The namespace, or its shard: its row holds the epoch, and the checkpoint.
    consumer: String,
    shards: i64,
    shard: i64,
    lock_name: String,
    outbox: String,
    registry: String,
    leader: String,
    checkpoint: String,
    timeout: Duration,
}

/// What winning the election gave: the new epoch and what the previous leaders stored.
pub(crate) struct Elected {
    pub epoch: i64,
    pub generation: i64,
    /// The server identity (`system:timeline`) and Redis run id last seen (empty: never).
    pub pg_identity: String,
    pub redis_run_id: String,
}

/// One outbox row.
pub(crate) struct OutboxRow {
    pub position: Position,
    pub tbl: String,
    pub tenant: String,
    pub pk: String,
    pub version: i64,
    /// How long before the read the row was written.
    pub age: Duration,
}

/// A layout of a cached table, as an application registered it.
pub(crate) struct Registered {
    pub layout: u32,
    pub fetch_sql: String,
    pub mode: CacheMode,
}

/// The outbox past the checkpoint, for the metrics.
pub(crate) struct Backlog {
    pub rows: i64,
    pub oldest: Duration,
    pub notification_queue: f64,
}

impl Session {
    /// Connects, bounds how long the server keeps this session when it goes silent, and
    /// creates the outbox, the registry and the reflector's own tables when missing.
    pub(crate) fn open(config: &ReflectorConfig) -> Result<Session> {
        // The namespace in the name tells an operator which reflector a backend serves.
        let name: String = format!("lifeguard-reflector {}", config.namespace)
            .chars()
            .take(63)
            .collect();
        let pg = Config::parse(&config.database_url)?
            .application_name(name)
            .connect_timeout(Duration::from_secs(5));
        let conn = Connection::connect(&pg)?;
        let opts = CaptureOptions::new().schema(config.capture_schema.clone());
        let search_path = config.search_path.clone().unwrap_or_else(|| {
            format!(
                "{}, public",
                lifeguard_core::query::quote(&config.capture_schema)
            )
        });
        let ms = |d: Duration| d.as_millis();
        let timeout = Duration::from_secs(10);
        // The keepalives end the session of a host that vanished; the idle timeout ends
        // that of a process that stopped while its host still answers TCP.
        conn.batch_execute(&format!(
            "SET idle_session_timeout = {}; SET statement_timeout = {}; \
             SET idle_in_transaction_session_timeout = {}; SET tcp_keepalives_idle = 5; \
             SET tcp_keepalives_interval = 2; SET tcp_keepalives_count = 3; \
             SET client_min_messages = warning; SET search_path = {search_path}",
            ms(config.session_timeout),
            ms(timeout),
            ms(config.session_timeout),
        ))?;
        let leader = opts.qualify("lifeguard_reflector_leader");
        let checkpoint = opts.qualify("lifeguard_reflector_checkpoint");
        // One transaction, under the lock the base statements take.
        conn.batch_execute(&format!(
            "BEGIN;\n\
             {base}\
             CREATE TABLE IF NOT EXISTS {leader} (\n  \
               namespace text PRIMARY KEY,\n  \
               epoch bigint NOT NULL,\n  \
               generation bigint NOT NULL DEFAULT 0,\n  \
               holder text NOT NULL,\n  \
               elected_at timestamptz NOT NULL,\n  \
               pg_identity text NOT NULL DEFAULT '',\n  \
               redis_run_id text NOT NULL DEFAULT ''\n\
             );\n\
             CREATE TABLE IF NOT EXISTS {checkpoint} (\n  \
               namespace text PRIMARY KEY,\n  \
               txid xid8 NOT NULL,\n  \
               id bigint NOT NULL,\n  \
               updated_at timestamptz NOT NULL DEFAULT now()\n\
             );\n\
             COMMIT;",
            base = capture_base_sql(&opts),
        ))?;
        Ok(Session {
            conn,
            lock_name: format!(
                "lifeguard-reflector:{}:{}",
                config.capture_schema,
                config.consumer()
            ),
            namespace: config.namespace.clone(),
            consumer: config.consumer(),
            shards: i64::from(config.shards),
            shard: i64::from(config.shard),
            outbox: opts.qualify("lifeguard_outbox"),
            registry: opts.qualify("lifeguard_cache_tables"),
            leader,
            checkpoint,
            timeout,
        })
    }

    fn db(&self) -> lifeguard_core::pg::Timed<'_> {
        self.conn.timeout(self.timeout)
    }

    /// Tries the advisory lock of the namespace (or its shard) once; when it is granted,
    /// takes the next epoch.
    pub(crate) fn try_lead(&self, holder: &str) -> Result<Option<Elected>> {
        let granted: bool = self
            .db()
            .query_one(
                "SELECT pg_try_advisory_lock(hashtextextended($1, 0))",
                &[&self.lock_name],
            )?
            .try_get(0)?;
        if !granted {
            return Ok(None);
        }
        let epoch: i64 = self
            .db()
            .query_one(
                &format!(
                    "INSERT INTO {t} AS l (namespace, epoch, holder, elected_at) VALUES ($1, 1, $2, now()) \
                     ON CONFLICT (namespace) DO UPDATE SET epoch = l.epoch + 1, holder = EXCLUDED.holder, \
                       elected_at = now() \
                     RETURNING epoch",
                    t = self.leader
                ),
                &[&self.consumer, &holder],
            )?
            .try_get(0)?;
        // The namespace's own row (the consumer's, unless it is split) holds what all
        // shards share.
        let shared = self.db().query_one(
            &format!(
                "WITH made AS (INSERT INTO {t} (namespace, epoch, holder, elected_at) \
                   VALUES ($1, 0, '', now()) ON CONFLICT (namespace) DO NOTHING \
                   RETURNING generation, pg_identity, redis_run_id) \
                 SELECT generation, pg_identity, redis_run_id FROM made \
                 UNION ALL SELECT generation, pg_identity, redis_run_id FROM {t} WHERE namespace = $1",
                t = self.leader
            ),
            &[&self.namespace],
        )?;
        self.conn.listen(CHANNEL)?;
        Ok(Some(Elected {
            epoch,
            generation: shared.try_get(0)?,
            pg_identity: shared.try_get(1)?,
            redis_run_id: shared.try_get(2)?,
        }))
    }

    /// The server's identity and timeline (`system:timeline`): a failover to a replica
    /// changes the timeline, a restore elsewhere the system identifier.
    pub(crate) fn pg_identity(&self) -> Result<String> {
        let timeline: String = self
            .db()
            .query_one(
                "SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)",
                &[],
            )?
            .try_get(0)?;
        // Reading the control file needs privileges some roles lack; the timeline alone
        // still catches a failover.
        let system = self
            .db()
            .query_one(
                "SELECT system_identifier::text FROM pg_control_system()",
                &[],
            )
            .and_then(|row| row.try_get::<_, String>(0))
            .unwrap_or_default();
        Ok(format!("{system}:{timeline}"))
    }

    /// Stores the identities of PostgreSQL and Redis while `epoch` still leads, bumping
    /// the generation if `bump` and they differ from the stored ones (so that shards
    /// seeing the same restart bump once); `None` when a newer epoch leads.
    pub(crate) fn bump_generation(
        &self,
        epoch: i64,
        pg_identity: &str,
        redis_run_id: &str,
        bump: bool,
    ) -> Result<Option<i64>> {
        let row = self.db().query_opt(
            &format!(
                "WITH me AS (SELECT 1 FROM {t} WHERE namespace = $1 AND epoch = $2) \
                 UPDATE {t} SET generation = generation + \
                     CASE WHEN pg_identity = $4 AND redis_run_id = $5 THEN 0 ELSE $6::int8 END, \
                   pg_identity = $4, redis_run_id = $5 \
                 WHERE namespace = $3 AND EXISTS (SELECT 1 FROM me) RETURNING generation",
                t = self.leader
            ),
            &[
                &self.consumer,
                &epoch,
                &self.namespace,
                &pg_identity,
                &redis_run_id,
                &i64::from(bump),
            ],
        )?;
        row.map(|r| r.try_get(0)).transpose()
    }

    /// The stored checkpoint; for a namespace that has none, the present: before its first
    /// heartbeat no reader filled a key, so no earlier change can be in Redis to reflect.
    pub(crate) fn load_checkpoint(&self) -> Result<Position> {
        let row = self.db().query_one(
            &format!(
                "SELECT coalesce(c.txid, pg_snapshot_xmin(pg_current_snapshot()))::text, coalesce(c.id, 0) \
                 FROM (SELECT 1) one LEFT JOIN {} c ON c.namespace = $1",
                self.checkpoint
            ),
            &[&self.consumer],
        )?;
        Ok((parse_txid(&row.try_get::<_, String>(0)?)?, row.try_get(1)?))
    }

    /// Stores the checkpoint while `epoch` still leads; `false` when a newer one does.
    pub(crate) fn save_checkpoint(&self, at: Position, epoch: i64) -> Result<bool> {
        let stored = self.db().execute(
            &format!(
                "INSERT INTO {c} (namespace, txid, id) \
                   SELECT $1, $2::text::xid8, $3 FROM {l} WHERE namespace = $1 AND epoch = $4 \
                 ON CONFLICT (namespace) DO UPDATE SET txid = EXCLUDED.txid, id = EXCLUDED.id, \
                   updated_at = now()",
                c = self.checkpoint,
                l = self.leader
            ),
            &[&self.consumer, &at.0.to_string(), &at.1, &epoch],
        )?;
        Ok(stored == 1)
    }

    /// The primary's current WAL position, read before a pass's snapshot so that every
    /// commit whose WAL ends before it is visible to the pass, and the namespace's
    /// generation (another shard may have bumped it).
    pub(crate) fn pass_start(&self) -> Result<(u64, i64)> {
        let row = self.db().query_one(
            &format!(
                "SELECT pg_current_wal_lsn()::text, \
                   (SELECT generation FROM {} WHERE namespace = $1)",
                self.leader
            ),
            &[&self.namespace],
        )?;
        let text: String = row.try_get(0)?;
        let lsn = parse_lsn(&text)
            .ok_or_else(|| Error::invalid_use(format!("unexpected WAL position {text:?}")))?;
        Ok((lsn, row.try_get::<_, Option<i64>>(1)?.unwrap_or(0)))
    }

    /// The snapshot's `xmin` and up to `batch` outbox rows past the checkpoint that are
    /// not already handled, in `(txid, id)` order.
    pub(crate) fn read_outbox(
        &self,
        progress: &Progress,
        batch: usize,
    ) -> Result<(u64, Vec<OutboxRow>)> {
        let (txids, upto): (Vec<String>, Vec<i64>) =
            progress.handled().map(|(t, i)| (t.to_string(), i)).unzip();
        let (ckpt_txid, ckpt_id) = progress.checkpoint();
        let rows = self.db().query(
            &format!(
                "WITH s AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin) \
                 SELECT s.xmin::text, o.txid::text, o.id, o.tbl, o.tenant, o.pk, \
                   o.row_version, (extract(epoch FROM clock_timestamp() - o.created_at) * 1e6)::int8 \
                 FROM s LEFT JOIN LATERAL ( \
                   SELECT * FROM {outbox} o \
                   WHERE (o.txid, o.id) > ($1::text::xid8, $2::int8) \
                     AND NOT EXISTS (SELECT 1 FROM unnest($3::text[], $4::int8[]) AS h(txid, upto) \
                                     WHERE h.txid::xid8 = o.txid AND o.id <= h.upto) \
                     AND ($6::int8 = 1 OR mod(hashtext(o.tbl || ':' || o.tenant || ':' || o.pk)::int8 \
                                              + 2147483648, $6::int8) = $7::int8) \
                   ORDER BY o.txid, o.id LIMIT $5::int8 \
                 ) o ON true",
                outbox = self.outbox
            ),
            &[
                &ckpt_txid.to_string(),
                &ckpt_id,
                &txids,
                &upto,
                &i64::try_from(batch).unwrap_or(i64::MAX),
                &self.shards,
                &self.shard,
            ],
        )?;
        let mut xmin = 0;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            xmin = parse_txid(&row.try_get::<_, String>(0)?)?;
            let Some(txid) = row.try_get::<_, Option<String>>(1)? else {
                continue;
            };
            let age: i64 = row.try_get(7)?;
            out.push(OutboxRow {
                position: (parse_txid(&txid)?, row.try_get(2)?),
                tbl: row.try_get(3)?,
                tenant: row.try_get(4)?,
                pk: row.try_get(5)?,
                version: row.try_get(6)?,
                age: Duration::from_micros(age.max(0).unsigned_abs()),
            });
        }
        Ok((xmin, out))
    }

    /// Every registered layout of every cached table.
    pub(crate) fn registry(&self) -> Result<HashMap<String, Vec<Registered>>> {
        let rows = self.db().query(
            &format!("SELECT tbl, layout, fetch_sql, mode FROM {}", self.registry),
            &[],
        )?;
        let mut out: HashMap<String, Vec<Registered>> = HashMap::new();
        for row in rows {
            let layout: String = row.try_get(1)?;
            let mode: String = row.try_get(3)?;
            let (Ok(layout), Some(mode)) = (u32::from_str_radix(&layout, 16), parse_mode(&mode))
            else {
                tracing::warn!(%layout, %mode, "skipping a registry row this reflector cannot read");
                continue;
            };
            out.entry(row.try_get(0)?).or_default().push(Registered {
                layout,
                fetch_sql: row.try_get(2)?,
                mode,
            });
        }
        Ok(out)
    }

    /// The current rows of the keys `pks` by a registered fetch statement.
    pub(crate) fn fetch_rows(&self, fetch_sql: &str, pks: &[&str]) -> Result<Vec<Row>> {
        let pks: Vec<&str> = pks.to_vec();
        self.db().query(fetch_sql, &[&pks])
    }

    /// Deletes up to 10,000 outbox rows older than `retention` that every namespace's
    /// checkpoint has passed; returns how many.
    pub(crate) fn trim_outbox(&self, retention: Duration) -> Result<u64> {
        let ms = i64::try_from(retention.as_millis()).unwrap_or(i64::MAX);
        self.db().execute(
            &format!(
                "DELETE FROM {o} WHERE ctid = ANY (ARRAY( \
                   SELECT o.ctid FROM {o} o \
                   WHERE o.created_at < now() - $1::int8 * interval '1 millisecond' \
                     AND NOT EXISTS (SELECT 1 FROM {c} c WHERE (o.txid, o.id) > (c.txid, c.id)) \
                   LIMIT 10000))",
                o = self.outbox,
                c = self.checkpoint
            ),
            &[&ms],
        )
    }

    /// The backlog past `checkpoint` (counted up to 100,000 rows) and the notification
    /// queue's fill.
    pub(crate) fn backlog(&self, checkpoint: Position) -> Result<Backlog> {
        let row = self.db().query_one(
            &format!(
                "SELECT count(*), coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8, \
                   pg_notification_queue_usage() \
                 FROM (SELECT created_at FROM {o} WHERE (txid, id) > ($1::text::xid8, $2::int8) \
                       LIMIT 100000) b",
                o = self.outbox
            ),
            &[&checkpoint.0.to_string(), &checkpoint.1],
        )?;
        Ok(Backlog {
            rows: row.try_get(0)?,
            oldest: Duration::from_secs_f64(row.try_get::<_, f64>(1)?.max(0.0)),
            notification_queue: row.try_get(2)?,
        })
    }

    /// Waits up to `timeout` for a capture trigger's wake-up; `true` when one came.
    pub(crate) fn wait(&self, timeout: Duration) -> Result<bool> {
        let woken = self.conn.next_notification(timeout)?.is_some();
        // One pass covers every change so far: the rest are spent wake-ups.
        let _ = self.conn.drain_notifications();
        Ok(woken)
    }
}

fn parse_txid(text: &str) -> Result<u64> {
    text.parse()
        .map_err(|_| Error::invalid_use(format!("unexpected transaction id {text:?}")))
}

fn parse_mode(text: &str) -> Option<CacheMode> {
    match text {
        "refresh" => Some(CacheMode::Refresh),
        "invalidate" => Some(CacheMode::Invalidate),
        _ => None,
    }
}

/// `X/Y` (hex halves) as one number.
fn parse_lsn(text: &str) -> Option<u64> {
    let (hi, lo) = text.split_once('/')?;
    Some((u64::from_str_radix(hi, 16).ok()? << 32) | u64::from_str_radix(lo, 16).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_positions_parse() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(parse_lsn("0/0"), Some(0));
        assert_eq!(parse_lsn("junk"), None);
    }
}
