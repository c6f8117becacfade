//! The optional coroutine-local convenience: the current request's executor, for code that
//! cannot be handed one explicitly.
//!
//! Set only through [`scope`], whose guard restores the previous value on exit and during
//! unwinding, so a reused coroutine (may pools them; a keep-alive connection or a BRRTRouter
//! route coroutine serves many requests) never sees an earlier request's context.
//! Coroutine-locals are not inherited by coroutines spawned inside the scope: pass the
//! `Arc` explicitly there. Outside a coroutine, may backs them with a thread-local.

use std::cell::RefCell;
use std::sync::Arc;

use crate::executor::RequestExecutor;

may::coroutine_local!(static CURRENT: RefCell<Option<Arc<RequestExecutor>>> = RefCell::new(None));

/// Runs `f` with `exec` as the [`current`] executor of this coroutine, then restores the
/// previous one (also when `f` panics).
///
/// ```no_run
/// # fn demo(exec: std::sync::Arc<lifeguard_router_ext::RequestExecutor>) {
/// use lifeguard_router_ext::{current, scope};
/// scope(&exec, || assert!(current().is_some()));
/// assert!(current().is_none());
/// # }
/// ```
pub fn scope<R>(exec: &Arc<RequestExecutor>, f: impl FnOnce() -> R) -> R {
    let _guard = Guard {
        prev: CURRENT.with(|c| c.replace(Some(exec.clone()))),
    };
    f()
}

/// The executor of the innermost [`scope`] on this coroutine, if any.
pub fn current() -> Option<Arc<RequestExecutor>> {
    CURRENT.with(|c| c.borrow().clone())
}

struct Guard {
    prev: Option<Arc<RequestExecutor>>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let prev = self.prev.take();
        CURRENT.with(|c| *c.borrow_mut() = prev);
    }
}
