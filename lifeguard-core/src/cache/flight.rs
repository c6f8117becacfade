//! Single-flight per key inside the process: of the coroutines that miss the same key at
//! once, one loads it and the others wait for its result (spec §3.4, G4).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use may::sync::Blocker;

use crate::rt::{lock, park};

/// What a load found: the row's payload, or that there is no such row.
pub(crate) type Loaded = Option<Arc<Vec<u8>>>;

/// The loads in progress, by key.
#[derive(Default)]
pub(crate) struct Flights {
    by_key: Mutex<HashMap<String, Arc<Flight>>>,
}

/// One load in progress and the coroutines waiting for it.
#[derive(Default)]
pub(crate) struct Flight {
    state: Mutex<FlightState>,
}

#[derive(Default)]
struct FlightState {
    /// `Some(None)`: the load failed; followers load for themselves.
    outcome: Option<Option<Loaded>>,
    waiters: Vec<Arc<Blocker>>,
}

/// The role a caller got for a key.
pub(crate) enum Join<'a> {
    /// Load it, then [`Leader::finish`].
    Leader(Leader<'a>),
    /// Wait for the leader with [`Flight::wait`].
    Follower(Arc<Flight>),
}

/// The caller that loads a key for everyone; finishing (or dropping) it wakes the others.
pub(crate) struct Leader<'a> {
    flights: &'a Flights,
    key: String,
    flight: Arc<Flight>,
}

impl Flights {
    /// Joins the load of `key`, starting it when none is in progress.
    pub(crate) fn join(&self, key: &str) -> Join<'_> {
        let mut by_key = lock(&self.by_key);
        if let Some(flight) = by_key.get(key) {
            return Join::Follower(flight.clone());
        }
        let flight = Arc::new(Flight::default());
        by_key.insert(key.to_owned(), flight.clone());
        Join::Leader(Leader {
            flights: self,
            key: key.to_owned(),
            flight,
        })
    }
}

impl Leader<'_> {
    /// Hands the result to every follower.
    pub(crate) fn finish(self, loaded: Loaded) {
        self.settle(Some(loaded));
    }

    fn settle(&self, outcome: Option<Loaded>) {
        // Out of the map first: a caller arriving after this starts a load of its own.
        lock(&self.flights.by_key).remove(&self.key);
        let waiters = {
            let mut st = lock(&self.flight.state);
            if st.outcome.is_some() {
                return;
            }
            st.outcome = Some(outcome);
            std::mem::take(&mut st.waiters)
        };
        for w in waiters {
            w.unpark();
        }
    }
}

impl Drop for Leader<'_> {
    fn drop(&mut self) {
        // A leader that failed (or panicked) releases its followers to load for themselves.
        self.settle(None);
    }
}

impl Flight {
    /// The leader's result, waiting no later than `deadline`; `None` when the leader failed
    /// or the deadline came first.
    pub(crate) fn wait(&self, deadline: Instant) -> Option<Loaded> {
        let blocker = Arc::new(Blocker::new(false));
        loop {
            {
                let mut st = lock(&self.state);
                if let Some(outcome) = &st.outcome {
                    return outcome.clone();
                }
                if Instant::now() >= deadline {
                    return None;
                }
                if !st.waiters.iter().any(|w| Arc::ptr_eq(w, &blocker)) {
                    st.waiters.push(blocker.clone());
                }
            }
            park(&blocker, Some(deadline));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn followers_get_the_leaders_result_and_a_new_miss_leads_again() {
        let flights = Flights::default();
        let Join::Leader(leader) = flights.join("k") else {
            panic!("the first caller leads")
        };
        let Join::Follower(follower) = flights.join("k") else {
            panic!("the second caller follows")
        };
        leader.finish(Some(Arc::new(vec![1, 2])));
        let got = follower.wait(Instant::now() + Duration::from_secs(1));
        assert_eq!(got, Some(Some(Arc::new(vec![1, 2]))));
        assert!(matches!(flights.join("k"), Join::Leader(_)));
    }

    #[test]
    fn a_dropped_leader_releases_its_followers() {
        let flights = Flights::default();
        let leader = flights.join("k");
        let Join::Follower(follower) = flights.join("k") else {
            panic!("follows")
        };
        drop(leader);
        assert_eq!(follower.wait(Instant::now() + Duration::from_secs(1)), None);
    }

    #[test]
    fn a_follower_stops_waiting_at_its_deadline() {
        let flights = Flights::default();
        let _leader = flights.join("k");
        let Join::Follower(follower) = flights.join("k") else {
            panic!("follows")
        };
        let started = Instant::now();
        assert_eq!(follower.wait(started + Duration::from_millis(20)), None);
        assert!(started.elapsed() >= Duration::from_millis(20));
    }
}
