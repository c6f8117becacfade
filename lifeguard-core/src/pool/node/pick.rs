//! Which slot a caller gets: decided by [`choose`] from a snapshot of the node's slots, then
//! applied by [`Node::pick`] under the slots lock.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::waiters::Waiter;
use super::{Access, Node, Picked, Slot};
use crate::error::{Error, Result};
use crate::rt::lock;

/// What a caller does next, with what it needs for it.
pub(super) enum Pick {
    /// Use this slot.
    Use { picked: Picked, validate: Validate },
    /// Open a new connection (already counted in `Slots::opening`).
    Open,
    /// Park until woken (or, first in line for room, until the next recheck).
    Wait { waiter: Arc<Waiter>, place: Place },
}

/// Whether a picked connection is pinged before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Validate {
    /// It sat idle longer than `validate_after_idle`: the server may have dropped it since.
    First,
    /// It was used recently, or has requests in flight.
    Skip,
}

/// Where a waiting caller stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Place {
    /// First in line for pipeline room: it also looks again on its own every
    /// `ROOM_RECHECK`, since requests nobody waits for end without handing room on.
    First,
    /// Woken in turn, as a slot or room is handed on (or, waiting to share, with every
    /// other caller waiting to share when a slot comes free).
    Behind,
}

/// The queue a waiting caller joins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Queue {
    /// `Slots::waiters`, at the back: a lease waiting for a whole connection.
    Lease,
    /// `Slots::waiters`, at the front: a lease that was woken already and still found no
    /// connection keeps its turn.
    LeaseFront,
    /// `Slots::share_waiters`: a shared call finding no shared slot at all (every slot is
    /// leased or still opening). A freed slot wakes all of them, since all can share it.
    Share,
    /// `Slots::room_waiters`, at the back: a shared call arriving while every shared slot
    /// is at the depth limit (or behind callers already waiting for room).
    Room,
    /// `Slots::room_waiters`, at the front: a caller that waited for room already was first
    /// in line, and stays so.
    RoomFront,
}

/// The decision [`choose`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Choice {
    /// Use the slot at this position of the snapshot.
    Use { slot: usize, validate: Validate },
    /// Open a new connection, the circuit permitting.
    Open,
    /// Join `queue` and wait.
    Wait { queue: Queue, place: Place },
}

/// One slot as [`choose`] sees it.
#[derive(Debug, Clone, Copy)]
pub(super) struct SlotView {
    pub(super) leased: bool,
    /// Requests written and not yet answered.
    pub(super) in_flight: usize,
    pub(super) last_used: Instant,
}

impl SlotView {
    fn of(slot: &Slot) -> SlotView {
        SlotView {
            leased: slot.leased,
            in_flight: slot.conn.in_flight(),
            last_used: slot.last_used,
        }
    }
}

/// Everything about a node [`choose`] needs besides its slots.
#[derive(Debug, Clone, Copy)]
pub(super) struct PickInput {
    pub(super) access: Access,
    /// The caller waited already, so it goes before callers that did not.
    pub(super) woken: bool,
    /// Connections being opened (they count against `max_size`).
    pub(super) opening: usize,
    pub(super) max_size: usize,
    /// The most requests in flight on one shared connection (`usize::MAX`: no limit).
    pub(super) pipeline_depth: usize,
    /// No shared caller is waiting for pipeline room.
    pub(super) room_waiters_empty: bool,
    pub(super) validate_after_idle: Duration,
    pub(super) now: Instant,
}

/// Decides what a caller gets from a node whose slots are `slots` (in list order).
///
/// An idle shared slot goes first; when every slot is busy a new connection opens while
/// there is room, and otherwise a shared call pipelines on the least loaded slot under the
/// depth limit, while a lease takes the least loaded busy slot (queueing behind its
/// requests) when another slot stays shared, or when every slot is shared and none is
/// opening. A lease never waits for a slot to drain: under steady shared traffic none
/// does. It waits only for a connection that opens or a lease that ends. Shared callers
/// waiting for room keep their order: a newcomer neither takes nor opens a connection ahead
/// of them.
pub(super) fn choose(input: &PickInput, slots: impl Iterator<Item = SlotView>) -> Choice {
    let exclusive = input.access == Access::Exclusive;
    let mut total = input.opening;
    let mut free = 0;
    // The first of the least loaded shared slots: (position, in flight, last used).
    let mut best: Option<(usize, usize, Instant)> = None;
    for (i, slot) in slots.enumerate() {
        total += 1;
        if slot.leased {
            continue;
        }
        free += 1;
        if best.is_none_or(|(_, load, _)| slot.in_flight < load) {
            best = Some((i, slot.in_flight, slot.last_used));
        }
    }
    let room = total < input.max_size;
    let barging = !exclusive && !input.woken && !input.room_waiters_empty;
    let chosen = match best {
        _ if barging => None,
        Some(b @ (_, 0, _)) => Some(b),
        // Everything is busy: pipeline on the least loaded unless a new one may open.
        Some(_) if room => None,
        // `free == total`: nothing is leased or opening that could come free instead.
        Some(b) if exclusive && (free >= 2 || free == total) => Some(b),
        Some(b @ (_, load, _)) if !exclusive && load < input.pipeline_depth => Some(b),
        _ => None,
    };
    if let Some((slot, load, last_used)) = chosen {
        let idle = load == 0 && input.now.duration_since(last_used) > input.validate_after_idle;
        let validate = match idle {
            true => Validate::First,
            false => Validate::Skip,
        };
        return Choice::Use { slot, validate };
    }
    if room && !barging {
        return Choice::Open;
    }
    if exclusive {
        let queue = match input.woken {
            true => Queue::LeaseFront,
            false => Queue::Lease,
        };
        return Choice::Wait {
            queue,
            place: Place::Behind,
        };
    }
    if best.is_none() {
        return Choice::Wait {
            queue: Queue::Share,
            place: Place::Behind,
        };
    }
    // Every shared slot is at the depth limit, or callers wait for room already.
    let queue = match input.woken {
        true => Queue::RoomFront,
        false => Queue::Room,
    };
    let place = match input.woken || input.room_waiters_empty {
        true => Place::First,
        false => Place::Behind,
    };
    Choice::Wait { queue, place }
}

impl Node {
    /// What the caller gets now, decided by [`choose`] on the slots as they are; `woken`:
    /// the caller waited already.
    pub(super) fn pick(
        self: &Arc<Self>,
        access: Access,
        now: Instant,
        woken: bool,
    ) -> Result<Pick> {
        let mut s = lock(&self.slots);
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::PoolClosed);
        }
        // A connection whose reader saw the server go is never handed out again. (Checked
        // first: picks are hot and broken connections rare.)
        if s.list
            .iter()
            .any(|slot| !slot.leased && slot.conn.is_broken())
        {
            let before = s.list.len();
            s.list.retain(|slot| slot.leased || !slot.conn.is_broken());
            for _ in s.list.len()..before {
                self.metrics.closed(&self.label, "broken");
            }
        }
        let input = PickInput {
            access,
            woken,
            opening: s.opening,
            max_size: self.max_size,
            pipeline_depth: self.pipeline_depth,
            room_waiters_empty: s.room_waiters.is_empty(),
            validate_after_idle: self.validate_after_idle,
            now,
        };
        match choose(&input, s.list.iter().map(SlotView::of)) {
            Choice::Use { slot, validate } => {
                let slot = &mut s.list[slot];
                slot.last_used = now;
                slot.leased = access == Access::Exclusive;
                if access == Access::Shared {
                    slot.sharers.join();
                }
                let picked = Picked {
                    id: slot.id,
                    conn: slot.conn.clone(),
                    sharers: slot.sharers.clone(),
                };
                // Gauges change with leases; shared picks are too frequent to publish each,
                // and maintenance refreshes the gauges every second.
                if access == Access::Exclusive {
                    self.publish(&s);
                }
                Ok(Pick::Use { picked, validate })
            }
            Choice::Open => {
                s.circuit.check(&self.label)?;
                s.opening += 1;
                Ok(Pick::Open)
            }
            Choice::Wait { queue, place } => {
                let waiter = Waiter::new();
                match queue {
                    Queue::Lease => s.waiters.push_back(waiter.clone()),
                    Queue::LeaseFront => s.waiters.push_front(waiter.clone()),
                    Queue::Share => s.share_waiters.push_back(waiter.clone()),
                    Queue::Room => s.room_waiters.push_back(waiter.clone()),
                    Queue::RoomFront => s.room_waiters.push_front(waiter.clone()),
                }
                self.count_waiters(&s);
                Ok(Pick::Wait { waiter, place })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE_LIMIT: Duration = Duration::from_secs(1);

    /// A node of `max_size` connections with none opening, nobody waiting and no depth
    /// limit, at a `now` well past the slots' `last_used`.
    fn input(access: Access, max_size: usize) -> (PickInput, Instant) {
        let then = Instant::now();
        let input = PickInput {
            access,
            woken: false,
            opening: 0,
            max_size,
            pipeline_depth: usize::MAX,
            room_waiters_empty: true,
            validate_after_idle: IDLE_LIMIT,
            now: then + Duration::from_millis(100),
        };
        (input, then)
    }

    fn shared(in_flight: usize, last_used: Instant) -> SlotView {
        SlotView {
            leased: false,
            in_flight,
            last_used,
        }
    }

    fn leased(last_used: Instant) -> SlotView {
        SlotView {
            leased: true,
            in_flight: 0,
            last_used,
        }
    }

    fn run(input: &PickInput, slots: &[SlotView]) -> Choice {
        choose(input, slots.iter().copied())
    }

    fn use_slot(slot: usize) -> Choice {
        Choice::Use {
            slot,
            validate: Validate::Skip,
        }
    }

    const WAIT_TO_LEASE: Choice = Choice::Wait {
        queue: Queue::Lease,
        place: Place::Behind,
    };

    const WAIT_TO_SHARE: Choice = Choice::Wait {
        queue: Queue::Share,
        place: Place::Behind,
    };

    #[test]
    fn an_idle_slot_goes_first_even_with_room_to_open() {
        for access in [Access::Shared, Access::Exclusive] {
            let (input, t) = input(access, 10);
            let slots = [shared(3, t), leased(t), shared(0, t), shared(0, t)];
            assert_eq!(run(&input, &slots), use_slot(2), "{access:?}");
        }
    }

    #[test]
    fn a_shared_call_pipelines_on_the_least_loaded_slot_when_full() {
        let (input, t) = input(Access::Shared, 4);
        let slots = [shared(3, t), shared(1, t), leased(t), shared(1, t)];
        // The first of equally loaded slots.
        assert_eq!(run(&input, &slots), use_slot(1));
    }

    #[test]
    fn a_connection_opens_while_there_is_room() {
        let (input, t) = input(Access::Shared, 3);
        assert_eq!(run(&input, &[]), Choice::Open);
        assert_eq!(run(&input, &[shared(2, t), shared(1, t)]), Choice::Open);
        // Connections being opened count against the limit.
        let opening = PickInput {
            opening: 1,
            ..input
        };
        assert_eq!(run(&opening, &[shared(2, t), shared(1, t)]), use_slot(1));
        let (lease, _) = self::input(Access::Exclusive, 3);
        assert_eq!(run(&lease, &[leased(t), leased(t)]), Choice::Open);
    }

    #[test]
    fn a_lease_takes_a_busy_slot_only_when_another_stays_shared() {
        let (input, t) = input(Access::Exclusive, 3);
        assert_eq!(
            run(&input, &[shared(2, t), shared(4, t), leased(t)]),
            use_slot(0)
        );
        assert_eq!(
            run(&input, &[shared(2, t), leased(t), leased(t)]),
            WAIT_TO_LEASE
        );
        assert_eq!(
            run(&input, &[leased(t), leased(t), leased(t)]),
            WAIT_TO_LEASE
        );
        // The depth limit is for shared calls: a lease queues behind any number.
        let deep = PickInput {
            pipeline_depth: 1,
            ..input
        };
        assert_eq!(
            run(&deep, &[shared(5, t), shared(9, t), leased(t)]),
            use_slot(0)
        );
    }

    /// Shared traffic that never pauses never drains a slot, so a lease waiting for one to
    /// drain would wait out its timeout: with nothing leased or opening it takes the least
    /// loaded busy slot at once, even the last shared one.
    #[test]
    fn a_lease_never_waits_for_shared_calls_to_drain() {
        let (input, t) = input(Access::Exclusive, 1);
        assert_eq!(run(&input, &[shared(16, t)]), use_slot(0));
        let (two, _) = self::input(Access::Exclusive, 2);
        assert_eq!(run(&two, &[shared(9, t), shared(7, t)]), use_slot(1));
        // A lease that ends or a connection that opens wakes it: then it waits for those.
        assert_eq!(run(&two, &[shared(9, t), leased(t)]), WAIT_TO_LEASE);
        let opening = PickInput { opening: 1, ..two };
        assert_eq!(run(&opening, &[shared(9, t)]), WAIT_TO_LEASE);
        // Woken and still without a connection, it keeps its turn.
        let woken = PickInput {
            woken: true,
            ..opening
        };
        assert_eq!(
            run(&woken, &[shared(9, t)]),
            Choice::Wait {
                queue: Queue::LeaseFront,
                place: Place::Behind,
            }
        );
        // Shared callers that find no shared slot wait apart from leases, to be woken
        // together.
        let (share, _) = self::input(Access::Shared, 2);
        let share = PickInput {
            opening: 1,
            ..share
        };
        assert_eq!(run(&share, &[leased(t)]), WAIT_TO_SHARE);
    }

    #[test]
    fn shared_calls_stay_under_the_pipeline_depth() {
        let (input, t) = input(Access::Shared, 2);
        let input = PickInput {
            pipeline_depth: 2,
            ..input
        };
        assert_eq!(run(&input, &[shared(2, t), shared(1, t)]), use_slot(1));
        assert_eq!(
            run(&input, &[shared(2, t), shared(2, t)]),
            Choice::Wait {
                queue: Queue::Room,
                place: Place::First,
            }
        );
        // With every slot leased the wait is for a slot, not for room.
        assert_eq!(run(&input, &[leased(t), leased(t)]), WAIT_TO_SHARE);
    }

    #[test]
    fn a_newcomer_does_not_overtake_callers_waiting_for_room() {
        let (input, t) = input(Access::Shared, 3);
        let behind_waiters = PickInput {
            room_waiters_empty: false,
            ..input
        };
        let in_line = Choice::Wait {
            queue: Queue::Room,
            place: Place::Behind,
        };
        // Not the idle slot, and not a new connection either.
        assert_eq!(run(&behind_waiters, &[shared(0, t), shared(1, t)]), in_line);
        assert_eq!(run(&behind_waiters, &[]), WAIT_TO_SHARE);
        // A caller that was woken takes its turn, and stays first in line when it finds
        // no room after all.
        let woken = PickInput {
            woken: true,
            ..behind_waiters
        };
        assert_eq!(run(&woken, &[shared(0, t), shared(1, t)]), use_slot(0));
        let full = PickInput {
            pipeline_depth: 1,
            max_size: 2,
            ..woken
        };
        assert_eq!(
            run(&full, &[shared(1, t), shared(1, t)]),
            Choice::Wait {
                queue: Queue::RoomFront,
                place: Place::First,
            }
        );
        // Leases do not queue for room, so they do not wait behind it.
        let lease = PickInput {
            access: Access::Exclusive,
            ..behind_waiters
        };
        assert_eq!(run(&lease, &[shared(0, t), shared(1, t)]), use_slot(0));
    }

    #[test]
    fn a_connection_idle_past_the_limit_is_validated_first() {
        let (input, t) = input(Access::Shared, 1);
        let later = |by: Duration| PickInput {
            now: t + by,
            ..input
        };
        let validated = Choice::Use {
            slot: 0,
            validate: Validate::First,
        };
        assert_eq!(run(&later(IDLE_LIMIT * 2), &[shared(0, t)]), validated);
        assert_eq!(run(&later(IDLE_LIMIT), &[shared(0, t)]), use_slot(0));
        // A connection with requests in flight is evidently alive.
        assert_eq!(run(&later(IDLE_LIMIT * 2), &[shared(1, t)]), use_slot(0));
    }
}
