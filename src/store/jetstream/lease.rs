//! Who works on which lane: the pure rules, kept apart from NATS so that they can be tested
//! exhaustively. The ownership loop feeds them what it read and carries out what they say.
//!
//! - **Lease.** An owner holds a lane while its last winning write to the lane's control record
//!   was *sent* less than `lease − clock_skew` ago on its own monotonic clock ([`Lease::valid`]).
//!   Every write renews it; the loop writes at least every `renew`.
//! - **Sending.** An owner starts a POST only while the lease has more than the request's
//!   whole timeout plus `clock_skew` left ([`Lease::may_send`]), and the send's reservation is a
//!   write, so right after it the lease is fresh.
//! - **Takeover.** A contender records the revision it read and when, on *its* monotonic clock.
//!   If the revision has not moved for `lease`, the owner has not written for that long: its
//!   lease has run out on its own clock too (it sent its last write before we first read it), so
//!   its last POST is over, and a CAS against that revision makes us the owner
//!   ([`Watch::stale`]). Safety needs bounded clock *rate* drift, not synchronized clocks.
//! - **Placement.** Lanes spread over the live nodes by rendezvous hashing ([`preferred`]): each
//!   lane goes to the live node with the highest hash of (node, lane), so a node's death or
//!   arrival moves only the lanes it would win or held.

use std::collections::HashMap;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::time::Instant;

/// Lease timings from `[cluster]`.
#[derive(Debug, Clone, Copy)]
pub struct Lease {
    pub lease: Duration,
    pub renew: Duration,
    pub clock_skew: Duration,
}

impl Lease {
    /// Whether a lease renewed by a write sent at `renewed` still holds at `now`.
    pub fn valid(&self, renewed: Instant, now: Instant) -> bool {
        now < renewed + self.lease.saturating_sub(self.clock_skew)
    }

    /// Whether a POST that may take `request_timeout` can start at `now`: it ends before the
    /// lease would run out, with `clock_skew` to spare.
    pub fn may_send(&self, renewed: Instant, now: Instant, request_timeout: Duration) -> bool {
        now + request_timeout + self.clock_skew
            < renewed + self.lease.saturating_sub(self.clock_skew)
    }

    /// Whether the lease written at `renewed` is due for renewal at `now`.
    pub fn due(&self, renewed: Instant, now: Instant) -> bool {
        now >= renewed + self.renew
    }
}

/// What a contender has seen of other nodes' lanes: a revision and when it first saw it.
#[derive(Debug, Default)]
pub struct Watch {
    seen: HashMap<String, (u64, Instant)>,
}

impl Watch {
    /// Notes `lane` at `revision` read at `now`; true once that revision has stood still for
    /// `lease` on this node's clock (its owner is gone, or paused past its lease).
    pub fn stale(&mut self, lane: &str, revision: u64, now: Instant, lease: Duration) -> bool {
        let entry = self.seen.entry(lane.to_string()).or_insert((revision, now));
        if entry.0 != revision {
            *entry = (revision, now);
        }
        now >= entry.1 + lease
    }

    /// Forgets `lane` (taken, or no longer configured).
    pub fn forget(&mut self, lane: &str) {
        self.seen.remove(lane);
    }
}

/// The live node that should own `lane`: the highest SHA-256 of `node \0 lane`, ties by name.
/// `None` when no node is live.
pub fn preferred<'a>(lane: &str, live: &'a [String]) -> Option<&'a str> {
    live.iter()
        .map(|n| (score(n, lane), n.as_str()))
        .max()
        .map(|(_, n)| n)
}

fn score(node: &str, lane: &str) -> u64 {
    let mut h = Sha256::new();
    h.update(node.as_bytes());
    h.update([0]);
    h.update(lane.as_bytes());
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// What the ownership loop does about one lane, given what it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Nothing: someone else's lane, still alive, or ours and not due.
    Wait,
    /// Ours: write to renew the lease.
    Renew,
    /// Ours but its lease ran out on our clock before a renewal won: stop its task now.
    Drop,
    /// Ours, another live node is preferred and the lane is idle: stop its task, then release.
    Release,
    /// Free, or stale, and we are the preferred live node (or the owner is gone and no
    /// preferred node is live): take it over.
    Take,
}

/// The facts [`decide`] weighs for one lane.
#[derive(Debug, Clone)]
pub struct Facts<'a> {
    pub me: &'a str,
    /// The owner the record names (empty: none), and whether this node holds the lane.
    pub owner: &'a str,
    pub held_since: Option<Instant>,
    /// Whether the record's revision stood still for a lease ([`Watch::stale`]).
    pub stale: bool,
    /// The live nodes ranked for this lane, best first ([`ranked`]).
    pub live: &'a [String],
    /// Whether the lane's task is between sends (nothing in flight).
    pub idle: bool,
}

pub fn decide(f: &Facts, lease: &Lease, now: Instant) -> Step {
    let preferred = preferred_or_me(f);
    if let Some(renewed) = f.held_since {
        if !lease.valid(renewed, now) {
            return Step::Drop;
        }
        if preferred != f.me && f.live.iter().any(|n| n == preferred) && f.idle {
            return Step::Release;
        }
        return if lease.due(renewed, now) {
            Step::Renew
        } else {
            Step::Wait
        };
    }
    let free = f.owner.is_empty() || f.stale;
    if free && preferred == f.me {
        return Step::Take;
    }
    Step::Wait
}

/// The preferred live node for the lane; this node when no node is live in its view (its own
/// heartbeat may not be visible yet).
fn preferred_or_me<'a>(f: &'a Facts) -> &'a str {
    f.live.first().map_or(f.me, |n| n.as_str())
}

/// `live` ranked for `lane`, best first, as [`Facts::live`] expects.
pub fn ranked(lane: &str, live: &[String]) -> Vec<String> {
    let mut v: Vec<(u64, &String)> = live.iter().map(|n| (score(n, lane), n)).collect();
    v.sort_by(|a, b| b.cmp(a));
    v.into_iter().map(|(_, n)| n.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            lease: Duration::from_secs(4),
            renew: Duration::from_millis(500),
            clock_skew: Duration::from_millis(200),
        }
    }

    #[test]
    fn a_lease_holds_for_lease_minus_skew_and_a_send_must_fit_in_it() {
        let l = lease();
        let t = Instant::now();
        assert!(l.valid(t, t + Duration::from_millis(3_799)));
        assert!(!l.valid(t, t + Duration::from_millis(3_800)));
        let timeout = Duration::from_secs(2);
        assert!(l.may_send(t, t + Duration::from_millis(1_500), timeout));
        assert!(!l.may_send(t, t + Duration::from_millis(1_600), timeout));
        assert!(!l.due(t, t + Duration::from_millis(499)));
        assert!(l.due(t, t + Duration::from_millis(500)));
    }

    #[test]
    fn a_revision_is_stale_only_after_it_stood_still_for_a_lease() {
        let mut w = Watch::default();
        let t = Instant::now();
        let l = Duration::from_secs(4);
        assert!(!w.stale("a", 7, t, l));
        assert!(!w.stale("a", 7, t + Duration::from_secs(3), l));
        // It moved: the clock starts again.
        assert!(!w.stale("a", 8, t + Duration::from_secs(3), l));
        assert!(!w.stale("a", 8, t + Duration::from_secs(6), l));
        assert!(w.stale("a", 8, t + Duration::from_secs(7), l));
    }

    #[test]
    fn placement_spreads_lanes_and_moves_few_when_a_node_goes() {
        let three: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let lanes: Vec<String> = (0..300).map(|i| format!("robot-{i}")).collect();
        let mut count = HashMap::new();
        for lane in &lanes {
            *count.entry(preferred(lane, &three).unwrap()).or_insert(0) += 1;
        }
        for n in ["n1", "n2", "n3"] {
            assert!((70..=130).contains(&count[n]), "{count:?}");
        }
        // n3 goes: only its lanes move.
        let two: Vec<String> = three[..2].to_vec();
        for lane in &lanes {
            let before = preferred(lane, &three).unwrap();
            let after = preferred(lane, &two).unwrap();
            assert!(before == "n3" || before == after);
        }
        assert_eq!(preferred("x", &[]), None);
        assert_eq!(
            ranked("robot-1", &three)[0],
            preferred("robot-1", &three).unwrap()
        );
    }

    #[test]
    fn the_loop_takes_free_lanes_it_prefers_and_drops_expired_ones() {
        let l = lease();
        let t = Instant::now();
        let live = ranked("ops", &["n1".to_string(), "n2".to_string()]);
        let (b, o) = (live[0].as_str(), live[1].as_str());
        let step = |me: &str, owner: &str, held: Option<Instant>, stale: bool, idle: bool, now| {
            let facts = Facts {
                me,
                owner,
                held_since: held,
                stale,
                live: &live,
                idle,
            };
            decide(&facts, &l, now)
        };
        let ms = Duration::from_millis;
        // A free lane: the preferred node takes it, the other waits.
        assert_eq!(step(b, "", None, false, true, t), Step::Take);
        assert_eq!(step(o, "", None, false, true, t), Step::Wait);
        // Owned by a node that went quiet: taken only once it is stale.
        assert_eq!(step(b, o, None, false, true, t), Step::Wait);
        assert_eq!(step(b, o, None, true, true, t), Step::Take);
        // Held: renewed when due, dropped once expired, released to the preferred when idle.
        assert_eq!(step(b, b, Some(t), false, true, t), Step::Wait);
        assert_eq!(step(b, b, Some(t), false, true, t + ms(600)), Step::Renew);
        assert_eq!(step(b, b, Some(t), false, false, t + ms(5_000)), Step::Drop);
        assert_eq!(step(o, o, Some(t), false, true, t), Step::Release);
        assert_eq!(step(o, o, Some(t), false, false, t + ms(600)), Step::Renew);
    }
}
