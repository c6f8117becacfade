//! Callers waiting on a node, the shared calls counted on each slot, and how a freed slot or
//! a freed place in a pipeline is handed on to them.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use may::sync::Blocker;

use super::{Node, Picked, Slots};
use crate::error::{Error, Result};
use crate::pg::Connection;
use crate::rt::{lock, park, Parked};

/// A caller waiting in one of a node's queues.
pub(super) struct Waiter {
    pub(super) blocker: Blocker,
    /// Set, under the slots lock, when a finished shared call hands its place in a pipeline
    /// straight to this caller, or a freed slot is handed to it as a sharer (already taken
    /// out of the queue either way); it then uses that connection without picking again.
    pub(super) handed: OnceLock<Picked>,
}

impl Waiter {
    pub(super) fn new() -> Arc<Waiter> {
        Arc::new(Waiter {
            blocker: Blocker::new(false),
            handed: OnceLock::new(),
        })
    }
}

impl Parked for Waiter {
    fn blocker(&self) -> &Blocker {
        &self.blocker
    }
}

/// The shared calls in progress on one slot, counted from the pick (under the slots lock)
/// to the end of the call. A shared call picks its connection before it writes its
/// request, so a lease may take the slot in between; the lease then waits for the count to
/// drain, or that request would run inside the lease's transaction (and its caller would
/// answer before anything committed).
#[derive(Default)]
pub(super) struct Sharers {
    count: AtomicUsize,
    /// A lease that took the slot while shared calls were in progress.
    drainer: Mutex<Option<Arc<Waiter>>>,
}

impl Sharers {
    /// Counts a shared call in; only under the slots lock, with the slot not leased.
    pub(super) fn join(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
    }

    /// Counts a shared call out; `true` when it was the last.
    pub(super) fn leave(&self) -> bool {
        let last = self.count.fetch_sub(1, Ordering::AcqRel) == 1;
        if last {
            if let Some(w) = lock(&self.drainer).take() {
                w.blocker.unpark();
            }
        }
        last
    }

    pub(super) fn busy(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    /// How many shared calls are in progress.
    fn joined(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    /// Waits until no shared call is in progress (the slot is leased, so none starts).
    pub(super) fn drain(&self, deadline: Instant, started: Instant) -> Result<()> {
        if !self.busy() {
            return Ok(());
        }
        let waiter = Waiter::new();
        loop {
            *lock(&self.drainer) = Some(waiter.clone());
            // Checked after registering, so a last `leave` in between is not missed.
            if !self.busy() {
                lock(&self.drainer).take();
                return Ok(());
            }
            if Instant::now() >= deadline {
                lock(&self.drainer).take();
                return Err(Error::PoolTimeout(started.elapsed()));
            }
            park(&waiter, Some(deadline));
        }
    }
}

impl Node {
    /// A slot came free (a lease ended, a connection opened or closed, a slot drained):
    /// wakes the first lease waiting for a connection and every shared caller waiting for
    /// a slot to share, else the first caller waiting for room.
    ///
    /// All the sharers at once: any number of them can share what came free, and one
    /// woken alone would share it without passing the wake on, leaving the rest (and a
    /// lease queued behind them) to slots draining, which steady traffic never does.
    pub(super) fn wake_for_slot(&self) {
        let (lease, sharers, room) = {
            let mut s = lock(&self.slots);
            let lease = s.waiters.pop_front();
            let sharers = std::mem::take(&mut s.share_waiters);
            if !sharers.is_empty() {
                self.hand_to_sharers(&mut s, &sharers);
            }
            let room = match lease.is_none() && sharers.is_empty() {
                true => s.room_waiters.pop_front(),
                false => None,
            };
            self.count_waiters(&s);
            (lease, sharers, room)
        };
        // The lease first: it is the one that needs a whole slot.
        for w in lease.iter().chain(&sharers).chain(&room) {
            w.blocker.unpark();
        }
    }

    /// Hands the least loaded shared slot to `sharers`, under the depth limit. Handed,
    /// not left to their next pick: a lease picking first (the caller that just released
    /// one, leasing again) would take the slot back before they run, and shared callers
    /// would wait for a slot as long as leases follow each other. Handed, they are counted
    /// on the slot, so such a lease waits for their calls. A slot idle past the
    /// validation limit is not handed: the sharers pick, and validate it, themselves.
    fn hand_to_sharers(&self, s: &mut Slots, sharers: &VecDeque<Arc<Waiter>>) {
        let now = Instant::now();
        let usable = s.list.iter_mut().filter(|slot| {
            !slot.leased
                && !slot.conn.is_broken()
                && now.duration_since(slot.last_used) <= self.validate_after_idle
        });
        let Some(slot) = usable.min_by_key(|slot| slot.conn.in_flight()) else {
            return;
        };
        slot.last_used = now;
        for w in sharers {
            if slot.conn.in_flight().max(slot.sharers.joined()) >= self.pipeline_depth {
                break;
            }
            slot.sharers.join();
            let _ = w.handed.set(Picked {
                id: slot.id,
                conn: slot.conn.clone(),
                sharers: slot.sharers.clone(),
            });
        }
    }

    /// Publishes the queue lengths that shared calls read without the lock.
    pub(super) fn count_waiters(&self, s: &Slots) {
        self.waiting.store(s.room_waiters.len(), Ordering::Relaxed);
        self.waiting_for_slot
            .store(s.waiters.len(), Ordering::Relaxed);
    }

    /// A shared request on `conn` has been answered: its place in the pipeline goes to the
    /// first caller waiting for room, handed over with the connection when that still has
    /// room (the caller then skips picking again; otherwise it picks as usual). When it was
    /// the slot's last shared call, a caller waiting for a whole connection may take it.
    pub(super) fn shared_done(&self, conn: &Arc<Connection>, slot_drained: bool) {
        if slot_drained && self.waiting_for_slot.load(Ordering::Relaxed) > 0 {
            self.wake_for_slot();
        }
        if self.waiting.load(Ordering::Relaxed) == 0 {
            return;
        }
        let waiter = {
            let mut s = lock(&self.slots);
            let w = s.room_waiters.pop_front();
            self.count_waiters(&s);
            if let Some(w) = &w {
                let shared_slot = s
                    .list
                    .iter()
                    .find(|slot| !slot.leased && Arc::ptr_eq(&slot.conn, conn));
                if let Some(slot) = shared_slot {
                    if conn.in_flight() < self.pipeline_depth && !conn.is_broken() {
                        slot.sharers.join();
                        let _ = w.handed.set(Picked {
                            id: slot.id,
                            conn: conn.clone(),
                            sharers: slot.sharers.clone(),
                        });
                    }
                }
            }
            w
        };
        if let Some(w) = waiter {
            w.blocker.unpark();
        }
    }

    /// Takes a waiter out of its queue; returns the connection handed to it, if one was
    /// (handing happens under the same lock, so after this nothing more can be).
    pub(super) fn forget_waiter(&self, waiter: &Arc<Waiter>) -> Option<Picked> {
        let mut guard = lock(&self.slots);
        let s = &mut *guard;
        // Usually at the front: it was woken, or is the first in line looking again.
        for queue in [&mut s.waiters, &mut s.share_waiters, &mut s.room_waiters] {
            if let Some(at) = queue.iter().position(|w| Arc::ptr_eq(w, waiter)) {
                queue.remove(at);
            }
        }
        self.count_waiters(s);
        waiter.handed.get().cloned()
    }
}
