//! Host-name resolution off the `may` worker threads.
//!
//! The system resolver (`getaddrinfo`) blocks its thread for as long as DNS takes, which on
//! a worker thread would stall every coroutine polled there. Names are resolved on a few
//! plain threads instead, and the caller parks on a channel for at most its connect
//! timeout. IP literals never reach them.

use std::collections::VecDeque;
use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use may::sync::mpsc;

use crate::error::{Error, Result};
use crate::rt::lock;

/// At most this many resolver threads exist at once; further look-ups queue for them, so a
/// resolver that hangs costs a few idle threads, never one per connection attempt.
const MAX_RESOLVERS: usize = 4;

/// How long an idle resolver thread waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(30);

/// The bound on a look-up when the connection sets no connect timeout.
pub(crate) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(30);

/// How a resolver thread answers a name; the system resolver outside tests.
type Lookup = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

struct Job {
    host: String,
    port: u16,
    lookup: Lookup,
    /// Past this the caller has stopped waiting, and the look-up is skipped.
    deadline: Instant,
    answer: mpsc::Sender<io::Result<Vec<SocketAddr>>>,
}

#[derive(Default)]
struct Resolvers {
    queue: VecDeque<Job>,
    threads: usize,
    idle: usize,
}

static RESOLVERS: Mutex<Resolvers> = Mutex::new(Resolvers {
    queue: VecDeque::new(),
    threads: 0,
    idle: 0,
});
static WORK: Condvar = Condvar::new();

/// The addresses of `host:port`, waiting at most `timeout` (or [`RESOLVE_TIMEOUT`]) for the
/// resolver; `target` names the server in errors.
pub(crate) fn resolve(
    host: &str,
    port: u16,
    timeout: Option<Duration>,
    target: &str,
) -> Result<Vec<SocketAddr>> {
    resolve_with(
        host,
        port,
        timeout.unwrap_or(RESOLVE_TIMEOUT),
        target,
        system_lookup,
    )
}

fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    (host, port).to_socket_addrs().map(Iterator::collect)
}

fn resolve_with(
    host: &str,
    port: u16,
    timeout: Duration,
    target: &str,
    lookup: Lookup,
) -> Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let (answer, answered) = mpsc::channel();
    submit(Job {
        host: host.to_owned(),
        port,
        lookup,
        deadline: Instant::now() + timeout,
        answer,
    })
    .map_err(|e| Error::connection(format!("resolve {target}: no resolver thread"), Some(e)))?;
    match answered.recv_timeout(timeout) {
        Ok(Ok(addrs)) if addrs.is_empty() => Err(Error::connection(
            format!("resolve {target}: the name has no addresses"),
            None,
        )),
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(Error::connection(format!("resolve {target}"), Some(e))),
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => Err(Error::connection(
            format!("resolve {target} timed out after {timeout:?}"),
            Some(io::ErrorKind::TimedOut.into()),
        )),
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(Error::connection(
            format!("resolve {target}: the resolver ended without an answer"),
            None,
        )),
    }
}

/// Queues `job`, starting a resolver thread when none is idle and the cap allows one.
fn submit(job: Job) -> io::Result<()> {
    let start = {
        let mut r = lock(&RESOLVERS);
        r.queue.push_back(job);
        let start = r.idle == 0 && r.threads < MAX_RESOLVERS;
        r.threads += usize::from(start);
        start
    };
    if start {
        let spawned = std::thread::Builder::new()
            .name("lifeguard-resolve".into())
            .spawn(serve);
        if let Err(e) = spawned {
            let mut r = lock(&RESOLVERS);
            r.threads -= 1;
            // With no thread at all, nobody would ever take the job: take it back.
            if r.threads == 0 {
                r.queue.clear();
                return Err(e);
            }
        }
    } else {
        WORK.notify_one();
    }
    Ok(())
}

/// A resolver thread: answers queued jobs, and ends after [`IDLE_EXIT`] without any.
fn serve() {
    let mut r = lock(&RESOLVERS);
    loop {
        if let Some(job) = r.queue.pop_front() {
            drop(r);
            if Instant::now() < job.deadline {
                // The caller may have stopped waiting meanwhile; the answer then goes nowhere.
                let _ = job.answer.send((job.lookup)(&job.host, job.port));
            }
            r = lock(&RESOLVERS);
            continue;
        }
        r.idle += 1;
        let (guard, waited) = WORK
            .wait_timeout(r, IDLE_EXIT)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        r = guard;
        r.idle -= 1;
        if waited.timed_out() && r.queue.is_empty() {
            r.threads -= 1;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hangs(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
        std::thread::sleep(Duration::from_secs(3));
        Ok(Vec::new())
    }

    fn answers(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
    }

    #[test]
    fn ip_literals_skip_the_resolver() {
        let addrs = resolve_with("::1", 5, Duration::ZERO, "t", hangs).expect("a literal");
        assert_eq!(addrs, vec!["[::1]:5".parse().expect("an address")]);
    }

    #[test]
    fn a_resolver_that_never_answers_is_given_up_on_at_the_timeout() {
        let started = Instant::now();
        let e = resolve_with(
            "db.example",
            5432,
            Duration::from_millis(200),
            "db.example:5432",
            hangs,
        )
        .expect_err("no answer in time");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert!(
            e.is_connection()
                && e.to_string()
                    .contains("resolve db.example:5432 timed out after 200ms"),
            "{e}"
        );
    }

    #[test]
    fn names_resolve_on_a_resolver_thread() {
        let found =
            may::go!(|| resolve_with("db.example", 7, Duration::from_secs(5), "t", answers));
        let addrs = found.join().expect("no panic").expect("an answer");
        assert_eq!(addrs, vec![SocketAddr::from(([127, 0, 0, 1], 7))]);
    }

    #[test]
    fn hanging_look_ups_use_a_bounded_number_of_threads() {
        let handles: Vec<_> = (0..3 * MAX_RESOLVERS)
            .map(|_| {
                std::thread::spawn(|| {
                    resolve_with("slow.example", 1, Duration::from_millis(100), "t", hangs)
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().expect("no panic").is_err());
        }
        assert!(lock(&RESOLVERS).threads <= MAX_RESOLVERS);
    }
}
