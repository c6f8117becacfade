//! Deadlines for parked coroutines, kept by one watcher thread instead of a `may` timer per
//! park.
//!
//! A timed `may` park arms a timer and, when it ends early (the usual case: the reply or the
//! room came first), disarms it; `may` wakes its timer thread for both. On a busy pool or a
//! service that gives every call a deadline that is two thread wake-ups per call, which
//! measured as half the client CPU of a waiting caller. Here a deadline costs an insert into
//! and a removal from one ordered set. The watcher sleeps until the earliest deadline, and
//! arming wakes it only when the new deadline is earlier still: with deadlines of one
//! length armed in time order (a request timeout, an acquire timeout) that never happens.

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use may::sync::Blocker;

use super::lock;

/// Something a coroutine (or thread) parks on, which the watcher can wake.
pub trait Parked: Send + Sync + 'static {
    /// The blocker the owner parks on.
    fn blocker(&self) -> &Blocker;
}

impl Parked for Blocker {
    fn blocker(&self) -> &Blocker {
        self
    }
}

/// Parks the caller on `who` until it is woken or `deadline` passes, whichever comes first.
/// Wake-ups may be spurious (a waker that raced the deadline): callers re-check their state.
pub fn park<P: Parked>(who: &Arc<P>, deadline: Option<Instant>) {
    let Some(at) = deadline else {
        let _ = who.blocker().park(None);
        return;
    };
    park_with(alarms(), who, at);
}

fn park_with<P: Parked>(alarms: Option<&Alarms>, who: &Arc<P>, at: Instant) {
    let Some(alarms) = alarms else {
        // No watcher thread could be started: fall back to `may`'s timer, whose timeouts
        // are whole milliseconds (rounded up so a sub-millisecond rest is not "no timeout").
        let left = at.saturating_duration_since(Instant::now());
        let ms = left.as_nanos().div_ceil(1_000_000).max(1) as u64;
        let _ = who.blocker().park(Some(Duration::from_millis(ms)));
        return;
    };
    let key = alarms.arm(at, who.clone());
    let _ = who.blocker().park(None);
    alarms.disarm(key);
}

struct Alarms {
    armed: Mutex<Armed>,
    /// The watcher sleeps on it until the next deadline (or, with none armed, until one is).
    idle: Condvar,
}

#[derive(Default)]
struct Armed {
    /// Keyed by deadline, then by a sequence number that keeps equal deadlines apart.
    by_deadline: BTreeMap<(Instant, u64), Arc<dyn Parked>>,
    next_seq: u64,
    /// When the watcher means to look next (`None`: not until something is armed).
    wake_at: Option<Instant>,
}

/// The process's alarms; `None` only if the watcher thread could not be spawned.
fn alarms() -> Option<&'static Alarms> {
    static ALARMS: OnceLock<Option<&'static Alarms>> = OnceLock::new();
    *ALARMS.get_or_init(|| match Alarms::start() {
        Ok(alarms) => Some(alarms),
        Err(e) => {
            tracing::warn!(target: "lifeguard::pg", "no alarm thread ({e}); deadlines use may timers");
            None
        }
    })
}

impl Alarms {
    /// Alarms with their watcher thread; they live as long as the process.
    fn start() -> std::io::Result<&'static Alarms> {
        let alarms: &'static Alarms = Box::leak(Box::new(Alarms {
            armed: Mutex::new(Armed::default()),
            idle: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("lifeguard-alarm".into())
            .spawn(move || alarms.watch())?;
        Ok(alarms)
    }

    fn arm(&self, at: Instant, who: Arc<dyn Parked>) -> (Instant, u64) {
        let mut armed = lock(&self.armed);
        let key = (at, armed.next_seq);
        armed.next_seq += 1;
        armed.by_deadline.insert(key, who);
        if armed.wake_at.is_none_or(|planned| at < planned) {
            armed.wake_at = Some(at);
            self.idle.notify_one();
        }
        key
    }

    /// After this returns the watcher will not wake that park any more.
    fn disarm(&self, key: (Instant, u64)) {
        lock(&self.armed).by_deadline.remove(&key);
    }

    fn watch(&self) {
        let mut armed = lock(&self.armed);
        loop {
            let now = Instant::now();
            // Woken under the lock, so a park that disarmed is never woken afterwards.
            while let Some(entry) = armed.by_deadline.first_entry() {
                if entry.key().0 > now {
                    break;
                }
                entry.remove().blocker().unpark();
            }
            // Deadlines disarmed since are not looked for: waking for one finds nothing due
            // and sleeps again.
            armed.wake_at = armed.by_deadline.first_key_value().map(|((at, _), _)| *at);
            armed = match armed.wake_at {
                Some(at) => self
                    .idle
                    .wait_timeout(armed, at.saturating_duration_since(now))
                    .map(|(guard, _)| guard)
                    .unwrap_or_else(|poisoned| poisoned.into_inner().0),
                None => self
                    .idle
                    .wait(armed)
                    .unwrap_or_else(std::sync::PoisonError::into_inner),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn armed(alarms: &Alarms) -> usize {
        lock(&alarms.armed).by_deadline.len()
    }

    #[test]
    fn a_deadline_wakes_a_parked_thread() {
        let alarms = Alarms::start().expect("watcher thread");
        let blocker = Arc::new(Blocker::new(false));
        let started = Instant::now();
        park_with(Some(alarms), &blocker, started + Duration::from_millis(20));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(20), "woke after {waited:?}");
        assert_eq!(armed(alarms), 0);
    }

    #[test]
    fn an_early_wake_disarms_the_deadline() {
        let alarms = Alarms::start().expect("watcher thread");
        let blocker = Arc::new(Blocker::new(false));
        let waker = blocker.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            waker.unpark();
        });
        let started = Instant::now();
        park_with(Some(alarms), &blocker, started + Duration::from_secs(30));
        assert!(started.elapsed() < Duration::from_secs(10));
        t.join().expect("waker thread");
        assert_eq!(armed(alarms), 0, "the 30 s deadline is still armed");
    }

    #[test]
    fn an_earlier_deadline_wakes_the_sleeping_watcher() {
        let alarms = Alarms::start().expect("watcher thread");
        let late = Arc::new(Blocker::new(false));
        let late_key = alarms.arm(Instant::now() + Duration::from_secs(60), late.clone());
        // Let the watcher settle into its 60 s sleep first.
        std::thread::sleep(Duration::from_millis(20));
        let blocker = Arc::new(Blocker::new(false));
        let started = Instant::now();
        park_with(Some(alarms), &blocker, started + Duration::from_millis(10));
        let waited = started.elapsed();
        assert!(waited < Duration::from_secs(5), "woke after {waited:?}");
        alarms.disarm(late_key);
    }

    #[test]
    fn deadlines_fire_in_order_while_later_ones_wait() {
        let alarms = Alarms::start().expect("watcher thread");
        let late = Arc::new(Blocker::new(false));
        let late_key = alarms.arm(Instant::now() + Duration::from_secs(60), late.clone());
        for ms in [30, 5, 15] {
            let blocker = Arc::new(Blocker::new(false));
            let started = Instant::now();
            park_with(Some(alarms), &blocker, started + Duration::from_millis(ms));
            assert!(started.elapsed() >= Duration::from_millis(ms));
        }
        assert_eq!(armed(alarms), 1, "only the 60 s deadline is left");
        alarms.disarm(late_key);
    }
}
