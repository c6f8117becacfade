//! What an ORM write tells the cache it changed (see `cache::Written` for when the keys
//! are dropped). Models that are not cached, and builds without the `cache` feature, pay
//! nothing: the check is on a constant.

use super::LifeModel;
use crate::executor::Executor;

/// The write changed this stored row.
pub(crate) fn row<M: LifeModel>(db: &(impl Executor + ?Sized), model: &M) {
    #[cfg(feature = "cache")]
    if let Some(hooks) = M::CACHE.as_ref() {
        let (mut tenant, mut pk) = (String::new(), String::new());
        (hooks.write_tenant)(model, &mut tenant);
        (hooks.write_pk)(&model.primary_key(), &mut pk);
        db.cache_invalidate(crate::cache::Written::rows::<M>(vec![(tenant, pk)]));
    }
    #[cfg(not(feature = "cache"))]
    let _ = (db, model);
}

/// The write changed the row with this key (its tenant, if the model has one, is not
/// known here: the table is treated as changed).
pub(crate) fn key<M: LifeModel>(db: &(impl Executor + ?Sized), key: &M::PrimaryKey) {
    #[cfg(feature = "cache")]
    if let Some(hooks) = M::CACHE.as_ref() {
        if hooks.spec.tenant.is_some() {
            return table::<M>(db);
        }
        let mut pk = String::new();
        (hooks.write_pk)(key, &mut pk);
        db.cache_invalidate(crate::cache::Written::rows::<M>(vec![(String::new(), pk)]));
    }
    #[cfg(not(feature = "cache"))]
    let _ = (db, key);
}

/// The write changed rows of `M` it does not name (a bulk statement).
#[cfg_attr(not(feature = "cache"), allow(clippy::extra_unused_type_parameters))]
pub(crate) fn table<M: LifeModel>(db: &(impl Executor + ?Sized)) {
    #[cfg(feature = "cache")]
    if M::CACHE.is_some() {
        db.cache_invalidate(crate::cache::Written::table::<M>());
    }
    #[cfg(not(feature = "cache"))]
    let _ = db;
}
