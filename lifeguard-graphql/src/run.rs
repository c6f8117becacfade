//! Driving the engine from the request's coroutine, with no async runtime.
//!
//! Every resolver of the generated schema finishes when it is first called: it calls
//! Lifeguard, which parks the *coroutine* (never the worker thread) until the database
//! answers, and returns a ready value. So the engine's future completes on its first
//! poll. [`block_on`] still honours a `Pending` (the engine's own futures are allowed one):
//! the waker unparks this coroutine, and the wait is bounded.

use std::cell::Cell;
use std::future::Future;
use std::pin::pin;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use lifeguard_core::Executor;

/// Wakes the coroutine (or thread) that polls.
struct Signal {
    woken: AtomicBool,
    coroutine: Option<may::coroutine::Coroutine>,
    thread: std::thread::Thread,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        match &self.coroutine {
            Some(co) => co.unpark(),
            None => self.thread.unpark(),
        }
    }
}

/// Polls `fut` to completion on this coroutine; `None` if it is still pending after `limit`.
pub(crate) fn block_on<F: Future>(fut: F, limit: Duration) -> Option<F::Output> {
    let signal = Arc::new(Signal {
        woken: AtomicBool::new(false),
        coroutine: may::coroutine::is_coroutine().then(may::coroutine::current),
        thread: std::thread::current(),
    });
    let waker = Waker::from(signal.clone());
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    let end = Instant::now() + limit;
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        while !signal.woken.swap(false, Ordering::AcqRel) {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            if signal.coroutine.is_some() {
                may::coroutine::park_timeout(left);
            } else {
                std::thread::park_timeout(left);
            }
        }
    }
}

type DbPtr = NonNull<dyn Executor + 'static>;

may::coroutine_local!(static DB: Cell<Option<DbPtr>> = Cell::new(None));
may::coroutine_local!(static RAN: Cell<bool> = Cell::new(false));

/// Runs `f` with `db` as the executor the resolvers of this coroutine use.
///
/// The engine's per-request data must be `'static`, and a transaction is not, so the
/// executor is lent through a coroutine-local for the duration of `f` instead.
pub(crate) fn with_db<R>(db: &dyn Executor, f: impl FnOnce() -> R) -> R {
    let ptr: NonNull<dyn Executor + '_> = NonNull::from(db);
    // SAFETY: only the lifetime is erased. The pointer is readable only through `db()`,
    // on this coroutine, while `f` runs; the guard restores the previous value before
    // `with_db` returns or unwinds, so it never outlives the borrow of `db`.
    let ptr: DbPtr = unsafe { std::mem::transmute::<NonNull<dyn Executor + '_>, DbPtr>(ptr) };
    struct Restore(Option<DbPtr>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DB.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(DB.with(|c| c.replace(Some(ptr))));
    RAN.with(|r| r.set(false));
    f()
}

/// Notes that a field of the request being executed ran (validation passed).
pub(crate) fn field_ran() {
    RAN.with(|r| r.set(true));
}

/// Whether a field ran in the innermost [`with_db`] so far.
pub(crate) fn fields_ran() -> bool {
    RAN.with(Cell::get)
}

/// Runs `f` on the executor lent by the innermost [`with_db`] of this coroutine.
pub(crate) fn db<R>(f: impl FnOnce(&dyn Executor) -> R) -> Option<R> {
    let ptr = DB.with(Cell::get)?;
    // SAFETY: set by `with_db`, whose borrow outlives this call (see there).
    Some(f(unsafe { ptr.as_ref() }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ready_future_completes_and_a_pending_one_is_bounded() {
        assert_eq!(block_on(async { 7 }, Duration::from_millis(10)), Some(7));
        let started = Instant::now();
        assert_eq!(
            block_on(std::future::pending::<()>(), Duration::from_millis(50)),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
