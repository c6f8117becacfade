//! Spawning the library's own background coroutines (socket readers and writers, pool
//! monitors, connect and deadline watchdogs).

use std::io;

use may::coroutine::{Builder, JoinHandle};

/// Spawns one of the library's own coroutines with a name and a stack of `stack_words`
/// machine words (the unit `may` uses).
pub(crate) fn spawn<F, T>(name: &str, stack_words: usize, body: F) -> io::Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let builder = Builder::new().name(name.to_owned()).stack_size(stack_words);
    // SAFETY: `may` marks spawning unsafe because a coroutine that keeps thread-local state
    // across a park may resume on another thread and find someone else's. Every body passed
    // here is the library's own and touches no thread-local storage.
    unsafe { builder.spawn(body) }
}
