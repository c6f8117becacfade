//! The pool's side of the cache: attaching one, and what the pool, its per-request
//! handles and its leases tell the ORM about it.

use super::{Db, Lease, Pool, ReadOptions, ReadPreference};
use crate::cache::{Cache, CacheScope, Written};

impl Pool {
    /// This pool with `cache` attached: reads by primary key of cached models
    /// (`#[lifeguard(cache)]`) through it, its handles and its leases go to Redis first, and
    /// ORM writes of those models drop their keys after commit. The pool itself is shared,
    /// so the same connections serve handles with and without the cache.
    ///
    /// ```no_run
    /// use lifeguard_core::cache::{redis::{RedisClient, RedisConfig}, Cache, CacheConfig};
    /// use lifeguard_core::pool::{Pool, PoolConfig};
    ///
    /// let redis = RedisClient::new(RedisConfig::from_url("redis://127.0.0.1:56379/0")?);
    /// let pool = Pool::connect(PoolConfig::from_env()?)?
    ///     .with_cache(Cache::new(redis, CacheConfig::new("shop")));
    /// # Ok::<(), lifeguard_core::Error>(())
    /// ```
    pub fn with_cache(mut self, cache: Cache) -> Pool {
        self.cache = Some(cache);
        self
    }

    /// The attached cache, if any.
    pub fn cache(&self) -> Option<&Cache> {
        self.cache.as_ref()
    }

    /// The scope of a cached read with `opts` (`None` when there is no cache, or the read
    /// is pinned to the primary and so wants nothing older than the primary has).
    pub(crate) fn cache_scope_with(&self, opts: &ReadOptions, primary: Db) -> Option<CacheScope> {
        let cache = self.cache.clone()?;
        if opts.preference == ReadPreference::Primary {
            return None;
        }
        // A token from another timeline than the primary's cannot be compared with the
        // reflector's position: nothing cached may serve it.
        let min_lsn = opts.min_lsn.map(|token| match self.current_token() {
            Some(now)
                if now.system_id() == token.system_id() && now.timeline() == token.timeline() =>
            {
                token.lsn()
            }
            _ => u64::MAX,
        });
        Some(CacheScope {
            cache,
            primary,
            min_lsn,
            tenant: None,
        })
    }

    /// Whether the monitor has found the primary unreachable or no longer a primary, or
    /// has heard nothing from it for three sampling intervals: a cached read's miss is
    /// then not loaded there, where it would wait out the read's deadline, but read
    /// wherever the read's preference allows.
    pub(crate) fn primary_down(&self) -> bool {
        let h = self.inner.primary.tracker.get();
        // Before the first sample nothing is known against the primary.
        h.sampled_at.is_some()
            && (matches!(
                h.state,
                super::NodeState::Unreachable | super::NodeState::RoleMismatch
            ) || !h.fresh(
                std::time::Instant::now(),
                self.inner.config.monitor_interval,
            ))
    }

    /// Forgets what an ORM write outside a transaction changed.
    pub(crate) fn cache_forget(&self, written: &Written) {
        if let Some(cache) = &self.cache {
            cache.invalidate(written);
        }
    }
}

impl Db {
    /// The scope of this handle's cached reads: none once it has written (its reads then
    /// stay on the primary, and so do they for cached models), else its read options and
    /// its deadline.
    pub(crate) fn cache_scope_here(&self) -> Option<CacheScope> {
        if self.wrote() {
            return None;
        }
        let primary = self.pinned_to_primary();
        let mut scope = self.pool().cache_scope_with(self.options(), primary)?;
        scope.tenant = self.tenant_text().map(str::to_owned);
        Some(scope)
    }
}

impl Lease {
    /// This lease with the pool's cache, which its transactions and writes forget their
    /// ORM writes in.
    pub(crate) fn with_cache(mut self, cache: Option<Cache>) -> Lease {
        self.cache = cache;
        self
    }
}
