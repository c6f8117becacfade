//! Keeping a node's connections in shape (retiring, refilling, closing) and reporting on
//! them.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use super::{Node, Opener, Slots};
use crate::pg::Connection;
use crate::rt::lock;

impl Node {
    /// Drops broken, expired and long-idle connections and refills `min_idle`; run by the
    /// pool's maintenance coroutine. Only slots with nothing in flight are retired.
    pub(crate) fn maintain(self: &Arc<Self>) {
        let now = Instant::now();
        let mut closed: Vec<&'static str> = Vec::new();
        let need = {
            let mut s = lock(&self.slots);
            let mut keep = Vec::with_capacity(s.list.len());
            let mut idle_kept = 0;
            for slot in std::mem::take(&mut s.list) {
                let quiet = !slot.leased && !slot.sharers.busy() && slot.conn.in_flight() == 0;
                let reason = if slot.conn.is_broken() && !slot.leased {
                    Some("broken")
                } else if quiet && slot.expires_at.is_some_and(|at| now >= at) {
                    Some("max_lifetime")
                } else if quiet
                    && idle_kept >= self.min_idle
                    && self
                        .idle_timeout
                        .is_some_and(|t| now.duration_since(slot.last_used) >= t)
                {
                    Some("idle_timeout")
                } else {
                    None
                };
                match reason {
                    Some(r) => closed.push(r),
                    None => {
                        if quiet {
                            idle_kept += 1;
                        }
                        keep.push(slot);
                    }
                }
            }
            s.list = keep;
            self.publish(&s);
            let have = s.list.len() + s.opening;
            let need = self.min_idle.saturating_sub(have);
            if need > 0 && s.circuit.check(&self.label).is_ok() {
                s.opening += need;
                need
            } else {
                0
            }
        };
        for reason in closed {
            self.metrics.closed(&self.label, reason);
        }
        for _ in 0..need {
            let _ = self.open(Opener::Pool, None);
        }
        self.wake_for_slot();
    }

    /// Closes every connection (pool shutdown).
    pub(crate) fn close_all(&self) {
        self.closed.store(true, Ordering::Release);
        let waiters = {
            let mut s = lock(&self.slots);
            for _ in s.list.drain(..) {
                self.metrics.closed(&self.label, "shutdown");
            }
            self.publish(&s);
            let mut all = std::mem::take(&mut s.waiters);
            all.append(&mut s.share_waiters);
            all.append(&mut s.room_waiters);
            self.count_waiters(&s);
            all
        };
        // Waiters wake to find the node closed.
        for w in waiters {
            w.blocker.unpark();
        }
    }

    /// Stops handing out a shared connection whose session state a statement changed; it
    /// closes once its last in-flight request is answered.
    pub(crate) fn retire_if_dirty(&self, conn: &Arc<Connection>) {
        if conn.take_session_dirty() {
            let id = lock(&self.slots)
                .list
                .iter()
                .find(|slot| Arc::ptr_eq(&slot.conn, conn))
                .map(|slot| slot.id);
            if let Some(id) = id {
                self.remove(id, "session_state");
            }
        }
    }

    /// Outstanding work on this server: requests in flight plus leases held.
    pub(crate) fn load(&self) -> usize {
        let s = lock(&self.slots);
        s.list
            .iter()
            .map(|slot| slot.conn.in_flight() + usize::from(slot.leased))
            .sum()
    }

    /// Open and leased connection counts.
    pub(crate) fn counts(&self) -> (usize, usize) {
        let s = lock(&self.slots);
        let leased = s.list.iter().filter(|slot| slot.leased).count();
        (s.list.len(), leased)
    }

    /// Sets the connection gauges from the slots as they are.
    pub(super) fn publish(&self, s: &Slots) {
        let leased = s.list.iter().filter(|slot| slot.leased).count();
        let busy = s
            .list
            .iter()
            .filter(|slot| !slot.leased && slot.conn.in_flight() > 0)
            .count();
        let idle = s.list.len() - leased - busy;
        self.metrics
            .connections(&self.label, idle, leased + busy, s.opening);
    }
}
