//! A pool: several member robots of one group acting as one destination. Its task is the
//! lane loop of [`super::lane`] over its members; here are the pool's parts of it and the
//! choice of the member that sends next.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{RobotHandle, Run};
use crate::limit::Clock;
use crate::provider::Provider;
use crate::store::{DigestRecord, Store};

/// A member robot as its pool's task gets it: its handle (its config, its status) and its
/// provider.
pub struct PoolMember {
    pub handle: RobotHandle,
    pub provider: Provider,
}

/// Everything one pool's task needs; like [`super::RobotTask`], with members.
pub struct PoolTask {
    /// The pool's own lane: its queue's status and counters.
    pub handle: RobotHandle,
    /// In config order, the order ties are broken in.
    pub members: Vec<PoolMember>,
    pub store: Arc<dyn Store>,
    pub clock: Clock,
    pub run: watch::Receiver<Run>,
    pub public_url: Option<String>,
    pub owners: Arc<BTreeMap<String, BTreeMap<String, Vec<String>>>>,
    pub outbox: Vec<DigestRecord>,
}

/// Which member sends next: the first, in config order, that is not paused at `now` and whose
/// rate guard `admits` a send now (only that one is asked to hand out its permit: `admits` is
/// called in order and stops at the first yes). Otherwise `Err(ms)`: how long until the first
/// member may free up, its pause or its limit, whichever is later for it.
pub fn choose(
    now: i64,
    paused_until: &[Option<i64>],
    mut admits: impl FnMut(usize) -> Result<(), Duration>,
) -> Result<usize, i64> {
    let mut wait = i64::MAX;
    for (i, until) in paused_until.iter().enumerate() {
        match until {
            Some(at) if *at > now => wait = wait.min(at - now),
            _ => match admits(i) {
                Ok(()) => return Ok(i),
                Err(w) => wait = wait.min((w.as_millis() as i64).max(1)),
            },
        }
    }
    Err(if wait == i64::MAX { 1000 } else { wait })
}

impl PoolTask {
    /// Runs the pool's lane over its members.
    pub async fn run(self) {
        let lane = super::lane::Lane {
            handle: self.handle,
            store: self.store,
            clock: self.clock,
            run: self.run,
            public_url: self.public_url,
            owners: self.owners,
            // A pool has no fallback of its own.
            lanes: Arc::new(|_: &str| None),
        };
        lane.run(self.members, self.outbox).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limit::RateGuard;

    fn never(_: usize) -> Result<(), Duration> {
        panic!("a paused member is not asked for a permit")
    }

    #[test]
    fn the_first_free_member_in_config_order_sends() {
        let mut asked = Vec::new();
        let got = choose(1_000, &[None, None, None], |i| {
            asked.push(i);
            Ok(())
        });
        assert_eq!(got, Ok(0));
        assert_eq!(asked, [0], "only the chosen member hands out its permit");
    }

    #[test]
    fn a_member_at_its_limit_is_passed_over_for_the_next() {
        let mut asked = Vec::new();
        let got = choose(1_000, &[None, None, None], |i| {
            asked.push(i);
            if i == 0 {
                Err(Duration::from_millis(300))
            } else {
                Ok(())
            }
        });
        assert_eq!(got, Ok(1));
        assert_eq!(asked, [0, 1]);
    }

    #[test]
    fn a_paused_member_is_skipped_until_its_pause_ends() {
        let paused = [Some(5_000), None];
        assert_eq!(
            choose(1_000, &paused, |i| if i == 0 { never(i) } else { Ok(()) }),
            Ok(1)
        );
        // At its pause's end it is first again (a probe with a real digest).
        assert_eq!(choose(5_000, &paused, |_| Ok(())), Ok(0));
    }

    #[test]
    fn with_no_member_free_the_wait_is_for_the_first_to_free() {
        // Member 0 paused 4 s, member 1 at its limit for 0.7 s, member 2 for 2 s.
        let got = choose(1_000, &[Some(5_000), None, None], |i| match i {
            1 => Err(Duration::from_millis(700)),
            2 => Err(Duration::from_secs(2)),
            _ => never(i),
        });
        assert_eq!(got, Err(700));
        // Every member paused: until the first pause ends.
        assert_eq!(
            choose(1_000, &[Some(9_000), Some(3_000)], never),
            Err(2_000)
        );
    }

    /// With real rate guards, three members of 20 per period carry 60 in one period and none
    /// more than its 20.
    #[tokio::test(start_paused = true)]
    async fn three_guards_carry_three_limits_and_each_holds_its_own() {
        let period = Duration::from_secs(2);
        let mut guards: Vec<RateGuard> =
            (0..3).map(|_| RateGuard::new(20, period, vec![])).collect();
        let clock = Clock::starting_at(1_000_000);
        let start = clock.now_ms();
        let mut sent = [0usize; 3];
        let end = start + period.as_millis() as i64 * 3;
        let mut total = 0;
        while clock.now_ms() < end {
            let now = clock.now_ms();
            match choose(now, &[None, None, None], |i| guards[i].acquire(now)) {
                Ok(i) => {
                    guards[i].record(now);
                    sent[i] += 1;
                    total += 1;
                }
                Err(wait) => tokio::time::advance(Duration::from_millis(wait as u64)).await,
            }
            for g in &guards {
                assert!(g.sends_in_period(now) <= 20);
            }
        }
        // Three periods of three members: well above one robot's 60 in the same time.
        assert!(total > 100, "{sent:?}");
        assert!(
            sent.iter().all(|&n| n > 20),
            "every member carries its share: {sent:?}"
        );
    }
}
