//! The runtime helpers every Lifeguard crate runs on: spawning coroutines, parking one
//! with a deadline, and locking plain data.
//!
//! They exist so that the pool, the router extension, the cache and the reflector start
//! coroutines and bound their waits one way, with the one `unsafe` block `may` requires
//! kept here.
//!
//! ```
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use may::sync::Blocker;
//!
//! let blocker = Arc::new(Blocker::new(false));
//! let waker = blocker.clone();
//! let job = lifeguard_core::rt::spawn("example", 0x2000, move || waker.unpark())?;
//! // Woken by the job, or at the latest after a second.
//! lifeguard_core::rt::park(&blocker, Some(Instant::now() + Duration::from_secs(1)));
//! job.join().expect("the job does not panic");
//! # Ok::<(), std::io::Error>(())
//! ```

mod alarm;

use std::io;
use std::sync::{Mutex, MutexGuard, PoisonError};

use may::coroutine::{Builder, JoinHandle};

pub use alarm::{park, Parked};

/// Spawns a coroutine named `name` with a stack of `stack_words` machine words (the unit
/// `may` uses: `0x1000` is 32 KiB on 64-bit).
///
/// # Contract
///
/// `body` must not hold a borrow of thread-local storage across a point where it may park
/// (any `may` I/O, lock, channel, sleep or [`park`]): a parked coroutine may resume on
/// another worker thread and would then read that thread's value, or a freed one. This is
/// the rule `may` states by making its own spawn `unsafe`, and the one `may::go!` leaves to
/// its caller as well. Reading a thread-local between parks (`with` and drop the borrow) is
/// fine. Lifeguard's own bodies, and the handlers the router extension runs, keep it.
///
/// # Errors
///
/// The coroutine could not be created (out of memory for its stack).
pub fn spawn<F, T>(name: &str, stack_words: usize, body: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let builder = Builder::new().name(name.to_owned()).stack_size(stack_words);
    // SAFETY: the contract above is the whole of `Builder::spawn`'s safety requirement;
    // callers of this function take it on.
    unsafe { builder.spawn(body) }
}

/// Locks a mutex that guards plain data. A panic elsewhere cannot leave such data torn
/// (every critical section leaves it consistent before anything can panic), so a poisoned
/// lock is still usable and is taken rather than turned into a second panic.
///
/// Only for short critical sections that never park: a `std` lock held across a park
/// stalls the worker thread of whoever waits for it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
