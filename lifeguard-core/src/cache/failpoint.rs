//! A pause point for tests of races: between a fill's load from PostgreSQL and its store
//! in Redis, where the stale-set race lives (spec §3.9, test C2). Unset, it costs one
//! atomic load per miss.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::rt::lock;

/// Called with the row key after a fill's load and before its store.
pub type Hook = Arc<dyn Fn(&str) + Send + Sync>;

static SET: AtomicBool = AtomicBool::new(false);
static HOOK: Mutex<Option<Hook>> = Mutex::new(None);

/// Installs (or, with `None`, removes) the hook for the whole process.
pub fn set_after_load(hook: Option<Hook>) {
    SET.store(hook.is_some(), Ordering::Release);
    *lock(&HOOK) = hook;
}

pub(crate) fn after_load(row_key: &str) {
    if SET.load(Ordering::Acquire) {
        let hook = lock(&HOOK).clone();
        if let Some(hook) = hook {
            hook(row_key);
        }
    }
}
