//! The write path: after an ORM write commits, the keys it changed are dropped (with
//! their leases, so a fill in flight cannot store what it read before the write).
//! Outside a transaction that happens as the write returns; in a transaction, when it
//! ends. A write whose keys are unknown (a bulk statement) or could not be dropped (Redis
//! failed) makes this process read PostgreSQL for `B`, by when the reflector has dropped
//! or refreshed them (spec §3.5).

use super::key::{lease_key, KeySpace};
use super::redis::Pipeline;
use super::{Cache, Layout};
use crate::model::LifeModel;

/// What an ORM write changed, for the cache to forget.
#[doc(hidden)]
pub struct Written(Changed);

enum Changed {
    /// These rows (tenant text, key text) of a cached model.
    Rows {
        /// `M::TABLE`, the metrics' entity.
        entity: &'static str,
        table: String,
        layout: Layout,
        keys: Vec<(String, String)>,
    },
    /// Some rows of this table (`QUALIFIED`), which the statement does not say.
    Table(&'static str),
}

impl Written {
    /// Rows of `M`, each named by its tenant and key texts.
    pub(crate) fn rows<M: LifeModel>(keys: Vec<(String, String)>) -> Written {
        Written(Changed::Rows {
            entity: M::TABLE,
            table: super::capture::table_name::<M>(),
            layout: Layout::of::<M>(),
            keys,
        })
    }

    /// Rows of `M` that the write does not name.
    pub(crate) fn table<M: LifeModel>() -> Written {
        Written(Changed::Table(M::QUALIFIED))
    }
}

impl Cache {
    /// Forgets what `written` changed (see the module docs).
    pub(crate) fn invalidate(&self, written: &Written) {
        match &written.0 {
            Changed::Table(table) => self.suspect_table(table),
            Changed::Rows {
                entity,
                table,
                layout,
                keys,
            } => {
                let generation = match self.heartbeat(std::time::Instant::now()) {
                    Ok(Some(hb)) => hb.generation,
                    // No heartbeat: readers bypass now, and the reflector has processed
                    // this write before a heartbeat can come back.
                    Ok(None) => return,
                    // Unknown (Redis failed or slow): the heartbeat may well be there for
                    // the next reader, and the written keys with it.
                    Err(_) => {
                        tracing::warn!(target: "lifeguard::cache", "could not read the heartbeat to drop written keys; reading PostgreSQL for the staleness bound");
                        return self.suspect_all();
                    }
                };
                let space = KeySpace::new(&self.config().namespace, layout.0, generation, table);
                let mut pipe = Pipeline::new();
                for (tenant, pk) in keys {
                    let row = space.row(tenant, pk);
                    pipe.cmd("DEL").arg(&row).arg(lease_key(&row));
                }
                let deadline = std::time::Instant::now() + self.config().call_timeout;
                self.inner().metrics.invalidated(entity, keys.len());
                if self.redis().pipeline_until(&pipe, deadline).is_err() {
                    tracing::warn!(target: "lifeguard::cache", "could not drop written keys; reading PostgreSQL for the staleness bound");
                    self.suspect_all();
                }
            }
        }
    }
}
