//! Who gets a server's connection places: a cap on connections open at once, a share of
//! that cap for each client address, and, when a new connection finds either full, the
//! connection idle longest is shed to make room, so that nobody can hold the doors shut
//! with connections that do nothing. docs/protocol.md ("Limits") is the contract; the TCP
//! server loop (`server.rs`) and the HTTP one (crates/frontend/src/http/serve.rs) both
//! take their places here.
//!
//! A connection is **idle** while it is owed nothing and is sending nothing: from its
//! accept until its first request begins (a TLS handshake included), and between
//! requests. Only idle connections are shed, longest idle first: this address's own when
//! the address is at its share, anyone's when the server is at its cap; and those that
//! have never sent a request before those that have (a client's keep-alive connection
//! outlives a flood of silent ones). A connection with a request arriving or in hand is
//! never shed; when every place is taken by such connections, the new one is refused
//! ([`Full`]).
//!
//! A shed connection is told to go ([`Place::shed`]) and leaves its place at once; the
//! few it takes to close are bounded (`closing_max`), past which a new connection is
//! refused rather than shed for, so that sheds cannot pile up open sockets.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// Why a new connection got no place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// Its address holds its whole share, none of it idle.
    Address {
        /// The share: most connections from one address.
        share: usize,
    },
    /// The server holds its cap, none of it idle (or too many are still closing).
    Server {
        /// The cap: most connections at once.
        cap: usize,
    },
}

/// The connection places of one server; cheap to clone (one shared table).
#[derive(Debug, Clone)]
pub struct Admission {
    shared: Arc<Mutex<State>>,
}

#[derive(Debug)]
struct State {
    cap: usize,
    share: usize,
    closing_max: usize,
    next_id: u64,
    /// Every connection with a place, shed ones too until they are dropped.
    places: HashMap<u64, Entry>,
    /// Places taken, per address; shed connections no longer count.
    by_address: HashMap<IpAddr, Address>,
    /// Idle places, in the order they are shed.
    idle: BTreeSet<Idle>,
    /// Places taken, server-wide; shed connections no longer count.
    taken: usize,
    /// Shed connections not yet dropped.
    closing: usize,
}

#[derive(Debug, Default)]
struct Address {
    taken: usize,
    /// This address's idle places, in the order they are shed.
    idle: BTreeSet<Idle>,
}

/// An idle place as the shedding order sees it: those that never sent a request first,
/// then the longest idle, then the oldest place.
type Idle = (bool, Instant, u64);

#[derive(Debug)]
struct Entry {
    ip: IpAddr,
    /// Where it stands in the shedding order, if it is idle.
    idle: Option<Idle>,
    /// Whether a request ever arrived on it.
    spoken: bool,
    shed: bool,
    token: CancellationToken,
}

impl State {
    fn lock(shared: &Mutex<State>) -> MutexGuard<'_, State> {
        // Nothing awaits under this lock, and every change leaves the table consistent.
        shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_idle(&mut self, id: u64, idle: bool) {
        let Some(entry) = self.places.get_mut(&id) else { return };
        if entry.shed || entry.idle.is_some() == idle {
            return;
        }
        let address = self.by_address.entry(entry.ip).or_default();
        match entry.idle.take() {
            Some(key) => {
                // Busy now: a request is arriving or in hand.
                entry.spoken = true;
                self.idle.remove(&key);
                address.idle.remove(&key);
            }
            None => {
                let key = (entry.spoken, Instant::now(), id);
                entry.idle = Some(key);
                self.idle.insert(key);
                address.idle.insert(key);
            }
        }
    }

    /// Tells connection `id` to go and frees its place.
    fn shed(&mut self, id: u64) {
        let Some(entry) = self.places.get_mut(&id) else { return };
        entry.shed = true;
        entry.token.cancel();
        let (ip, key) = (entry.ip, entry.idle.take());
        if let Some(key) = key {
            self.idle.remove(&key);
            if let Some(address) = self.by_address.get_mut(&ip) {
                address.idle.remove(&key);
            }
        }
        self.release(ip);
        self.closing += 1;
    }

    /// One place fewer taken by `ip`, and server-wide.
    fn release(&mut self, ip: IpAddr) {
        self.taken = self.taken.saturating_sub(1);
        if let Some(address) = self.by_address.get_mut(&ip) {
            address.taken = address.taken.saturating_sub(1);
            if address.taken == 0 && address.idle.is_empty() {
                self.by_address.remove(&ip);
            }
        }
    }
}

impl Admission {
    /// Places for at most `cap` connections at once, at most `share` of them from one
    /// address (both at least 1; the share at most the cap).
    pub fn new(cap: usize, share: usize) -> Admission {
        let cap = cap.max(1);
        let state = State {
            cap,
            share: share.clamp(1, cap),
            closing_max: (cap / 4).clamp(1, 1024),
            next_id: 0,
            places: HashMap::new(),
            by_address: HashMap::new(),
            idle: BTreeSet::new(),
            taken: 0,
            closing: 0,
        };
        Admission { shared: Arc::new(Mutex::new(state)) }
    }

    /// A place for a new connection from `ip`, idle until it starts a request; if its
    /// address is at its share, or the server at its cap, an idle connection (this
    /// address's, or anyone's: one that never sent a request if there is one, the idle
    /// longest among them) is shed to make room. Refused when there is no idle
    /// connection to shed.
    pub fn admit(&self, ip: IpAddr) -> Result<Place, Full> {
        let mut state = State::lock(&self.shared);
        let (cap, share) = (state.cap, state.share);
        let from_address = state.by_address.get(&ip).map_or(0, |a| a.taken);
        let mut victims = Vec::new();
        if from_address >= share {
            let oldest = state.by_address.get(&ip).and_then(|a| a.idle.first().copied());
            let Some((_, _, id)) = oldest else { return Err(Full::Address { share }) };
            victims.push(id);
        }
        // Shedding this address's own frees a place server-wide too.
        if state.taken - victims.len() >= cap {
            let oldest = state.idle.iter().find(|(_, _, id)| !victims.contains(id)).copied();
            let Some((_, _, id)) = oldest else { return Err(Full::Server { cap }) };
            victims.push(id);
        }
        if state.closing + victims.len() > state.closing_max {
            return Err(Full::Server { cap });
        }
        for id in victims {
            state.shed(id);
        }
        let id = state.next_id;
        state.next_id += 1;
        let key = (false, Instant::now(), id);
        let token = CancellationToken::new();
        let entry = Entry { ip, idle: Some(key), spoken: false, shed: false, token: token.clone() };
        state.places.insert(id, entry);
        state.idle.insert(key);
        let address = state.by_address.entry(ip).or_default();
        address.taken += 1;
        address.idle.insert(key);
        state.taken += 1;
        Ok(Place {
            shared: self.shared.clone(),
            id,
            token,
            receiving: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
        })
    }
}

/// One connection's place. It is idle unless a request is arriving on it
/// ([`Place::receiving`] until [`Place::received`]) or in hand ([`Place::busy`]); dropping
/// it frees the place.
#[derive(Debug)]
pub struct Place {
    shared: Arc<Mutex<State>>,
    id: u64,
    token: CancellationToken,
    // This connection's own view, so that the shared table is locked only when the
    // connection turns idle or stops being idle, not on every read.
    receiving: AtomicBool,
    in_flight: AtomicUsize,
}

impl Place {
    /// Resolves once the connection is shed: the server is full and this one was idle
    /// longest. It should close (saying why, if its protocol can).
    pub async fn shed(&self) {
        self.token.cancelled().await;
    }

    /// Bytes of a request are arriving: not idle until [`Place::received`].
    pub fn receiving(&self) {
        if !self.receiving.swap(true, Ordering::AcqRel) {
            self.update();
        }
    }

    /// The request that was arriving is whole (and handed on, [`Place::busy`]); nothing
    /// more is arriving.
    pub fn received(&self) {
        if self.receiving.swap(false, Ordering::AcqRel) {
            self.update();
        }
    }

    /// A request is in hand until the guard is dropped: not idle meanwhile.
    pub fn busy(self: &Arc<Self>) -> Busy {
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            self.update();
        }
        Busy(self.clone())
    }

    /// Tells the table whether this connection is idle now.
    fn update(&self) {
        let mut state = State::lock(&self.shared);
        // Read under the lock: the last of two racing updates sees the final values.
        let idle =
            !self.receiving.load(Ordering::Acquire) && self.in_flight.load(Ordering::Acquire) == 0;
        state.set_idle(self.id, idle);
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut state = State::lock(&self.shared);
        let Some(entry) = state.places.remove(&self.id) else { return };
        if entry.shed {
            state.closing = state.closing.saturating_sub(1);
            return;
        }
        if let Some(key) = entry.idle {
            state.idle.remove(&key);
            if let Some(address) = state.by_address.get_mut(&entry.ip) {
                address.idle.remove(&key);
            }
        }
        state.release(entry.ip);
    }
}

/// A request in hand on a connection ([`Place::busy`]).
#[derive(Debug)]
pub struct Busy(Arc<Place>);

impl Drop for Busy {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.update();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    fn is_shed(place: &Place) -> bool {
        place.token.is_cancelled()
    }

    #[tokio::test(start_paused = true)]
    async fn an_address_at_its_share_sheds_its_own_idle_longest() {
        let admission = Admission::new(10, 2);
        let first = admission.admit(ip(1)).expect("a place");
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        let second = admission.admit(ip(1)).expect("a place");
        let other = admission.admit(ip(2)).expect("another address");
        let third = admission.admit(ip(1)).expect("a place, by shedding");
        assert!(is_shed(&first), "the idle longest of its address");
        assert!(!is_shed(&second) && !is_shed(&other) && !is_shed(&third));
        // Busy connections are never shed: with both busy, the address is refused.
        let (second, third) = (Arc::new(second), Arc::new(third));
        let _a = second.busy();
        third.receiving();
        assert_eq!(admission.admit(ip(1)).err(), Some(Full::Address { share: 2 }));
        // Another address is still let in.
        admission.admit(ip(3)).expect("another address");
        // Idle again, and shed first.
        third.received();
        let _fourth = admission.admit(ip(1)).expect("a place");
        assert!(is_shed(&third));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_server_sheds_the_idle_longest_of_anyone_and_refuses_when_none_is() {
        let admission = Admission::new(3, 3);
        let old = Arc::new(admission.admit(ip(1)).expect("a place"));
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        let busy = Arc::new(admission.admit(ip(1)).expect("a place"));
        let _working = busy.busy();
        let young = Arc::new(admission.admit(ip(2)).expect("a place"));
        // Idle longest: `old`, even though `busy` was admitted after it.
        let _new = admission.admit(ip(3)).expect("a place, by shedding");
        assert!(is_shed(&old) && !is_shed(&busy) && !is_shed(&young));
        let _r = young.busy();
        let _n = _new;
        assert_eq!(admission.admit(ip(4)).err(), Some(Full::Server { cap: 3 }));
        // A dropped place is free again.
        drop(_r);
        drop(young);
        admission.admit(ip(4)).expect("a freed place");
    }

    #[tokio::test(start_paused = true)]
    async fn connections_that_never_sent_a_request_go_before_those_that_did() {
        let admission = Admission::new(2, 2);
        let client = Arc::new(admission.admit(ip(1)).expect("a place"));
        drop(client.busy());
        tokio::time::advance(std::time::Duration::from_millis(1)).await;
        let silent = admission.admit(ip(2)).expect("a place");
        // `client` is idle longest, but it has been answered: `silent` goes first.
        let _new = admission.admit(ip(3)).expect("a place, by shedding");
        assert!(is_shed(&silent) && !is_shed(&client));
    }

    #[tokio::test(start_paused = true)]
    async fn sheds_are_bounded_while_the_shed_are_closing() {
        // A cap of 16: at most a quarter of it, 4, shed and still closing at a time.
        let admission = Admission::new(16, 16);
        let mut held: Vec<Place> =
            (0..16).map(|_| admission.admit(ip(1)).expect("a place")).collect();
        let newer: Vec<Place> =
            (0..4).map(|_| admission.admit(ip(2)).expect("sheds one")).collect();
        assert_eq!(held.iter().filter(|p| is_shed(p)).count(), 4);
        assert_eq!(admission.admit(ip(2)).err(), Some(Full::Server { cap: 16 }), "4 closing");
        // The shed ones close: sheds are possible again.
        held.retain(|p| !is_shed(p));
        admission.admit(ip(2)).expect("sheds another");
        drop(newer);
    }
}
