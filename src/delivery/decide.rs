//! What a robot's task does after an answer, as a pure function: the answer's class decides the
//! digest's fate, the robot's state, when to try again and what the task remembers (failures
//! in a row, since when the robot has been in trouble, the catch-up the next digest reports).
//! The task ([`super::RobotTask`]) only carries out what [`after_answer`] says.

use std::time::Duration;

use super::State;
use crate::config::Timing;
use crate::provider::Outcome;
use crate::store::DigestState;

/// What the task keeps between answers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    /// Transient failures in a row, for the backoff.
    pub failures: u32,
    /// When the first attempt of the current trouble started.
    pub trouble_since: Option<i64>,
    /// Set when the robot comes back after trouble: the period the next digest reports as a
    /// catch-up. The task clears it once a digest carrying it is sealed.
    pub catch_up: Option<(i64, i64)>,
}

/// What to do after an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Next {
    /// The digest's state from now on: `Sent` and `Dead` leave the outbox, `Pending` stays
    /// first in it for the retry.
    pub digest: DigestState,
    /// The robot's state, or `None` to leave it as it is (a dead letter changes nothing about
    /// the robot: the next digest goes out as usual).
    pub state: Option<State>,
    /// When the next attempt may start (Unix ms), if the robot must be waited for.
    pub retry_at: Option<i64>,
}

/// Delay before retry number `failures` (1-based): `initial` doubling up to `max`, then "equal
/// jitter": a uniformly random point in the upper half, so retries from many robots spread out
/// while the delay never drops below half the nominal value.
pub fn backoff(failures: u32, initial: Duration, max: Duration, random: u64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let nominal = initial.saturating_mul(1u32 << exp).min(max);
    let half = nominal / 2;
    let span = (nominal - half).as_millis().max(1) as u64;
    half + Duration::from_millis(random % (span + 1))
}

/// The decision after `outcome`, for an attempt that started at `started_ms` and was answered at
/// `done_ms`; `random` feeds the backoff's jitter.
pub fn after_answer(
    memory: &mut Memory,
    outcome: &Outcome,
    started_ms: i64,
    done_ms: i64,
    timing: &Timing,
    random: u64,
) -> Next {
    let wait = |d: Duration| Some(done_ms + d.as_millis() as i64);
    let pending = |state, retry_at| Next {
        digest: DigestState::Pending,
        state: Some(state),
        retry_at,
    };
    match outcome {
        Outcome::Ok => {
            if let Some(since) = memory.trouble_since.take() {
                memory.catch_up = Some((since, done_ms));
            }
            memory.failures = 0;
            Next {
                digest: DigestState::Sent,
                state: Some(State::Idle),
                retry_at: None,
            }
        }
        Outcome::Message(_) => Next {
            digest: DigestState::Dead,
            state: None,
            retry_at: None,
        },
        Outcome::Throttled(_, after) => {
            memory.trouble_since.get_or_insert(started_ms);
            pending(
                State::Throttled,
                wait(after.unwrap_or(timing.throttle_backoff)),
            )
        }
        Outcome::Transient(_) => {
            memory.trouble_since.get_or_insert(started_ms);
            memory.failures += 1;
            let d = backoff(
                memory.failures,
                timing.retry_initial_backoff,
                timing.retry_max_backoff,
                random,
            );
            pending(State::Backoff, wait(d))
        }
        Outcome::Robot(_) => {
            memory.trouble_since.get_or_insert(started_ms);
            pending(State::Blocked, wait(timing.blocked_probe))
        }
        // The platform's own quota: like a throttle the robot cannot say the end of; the task
        // hands the queue to the fallback if there is one.
        Outcome::Quota(_) => {
            memory.trouble_since.get_or_insert(started_ms);
            pending(State::Quota, wait(timing.throttle_backoff))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn timing() -> Timing {
        Timing {
            retry_initial_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(300),
            throttle_backoff: Duration::from_secs(600),
            blocked_probe: Duration::from_secs(300),
            ..Timing::default()
        }
    }

    /// Memory before, answer, digest state, robot state, retry at, memory after.
    type Row = (
        Memory,
        Outcome,
        DigestState,
        Option<State>,
        Option<i64>,
        Memory,
    );

    /// Every answer class from a fresh memory and from one in trouble: the digest's fate, the
    /// robot's state, the wait, and what is remembered. `random = 0` puts the jitter at the
    /// bottom of its range: half the nominal backoff.
    #[test]
    fn every_answer_class_decides_the_same_way() {
        let calm = Memory::default();
        let troubled = Memory {
            failures: 2,
            trouble_since: Some(100),
            catch_up: None,
        };
        let r = || "why".to_string();
        let s = |secs: i64| Some(10_000 + secs * 1000);
        #[rustfmt::skip]
        let table: Vec<Row> = vec![
            (calm, Outcome::Ok, DigestState::Sent, Some(State::Idle), None, calm),
            (troubled, Outcome::Ok, DigestState::Sent, Some(State::Idle), None,
                Memory { failures: 0, trouble_since: None, catch_up: Some((100, 10_000)) }),
            (calm, Outcome::Message(r()), DigestState::Dead, None, None, calm),
            (troubled, Outcome::Message(r()), DigestState::Dead, None, None, troubled),
            (calm, Outcome::Throttled(r(), None), DigestState::Pending, Some(State::Throttled), s(600),
                Memory { trouble_since: Some(9_000), ..calm }),
            (calm, Outcome::Throttled(r(), Some(Duration::from_secs(7))), DigestState::Pending,
                Some(State::Throttled), s(7), Memory { trouble_since: Some(9_000), ..calm }),
            (troubled, Outcome::Throttled(r(), None), DigestState::Pending, Some(State::Throttled),
                s(600), troubled),
            (calm, Outcome::Transient(r()), DigestState::Pending, Some(State::Backoff), Some(10_500),
                Memory { failures: 1, trouble_since: Some(9_000), ..calm }),
            (troubled, Outcome::Transient(r()), DigestState::Pending, Some(State::Backoff), s(2),
                Memory { failures: 3, ..troubled }),
            (calm, Outcome::Robot(r()), DigestState::Pending, Some(State::Blocked), s(300),
                Memory { trouble_since: Some(9_000), ..calm }),
            (troubled, Outcome::Robot(r()), DigestState::Pending, Some(State::Blocked), s(300),
                troubled),
            (calm, Outcome::Quota(r()), DigestState::Pending, Some(State::Quota), s(600),
                Memory { trouble_since: Some(9_000), ..calm }),
        ];
        for (before, outcome, digest, state, retry_at, after) in table {
            let mut m = before;
            let next = after_answer(&mut m, &outcome, 9_000, 10_000, &timing(), 0);
            assert_eq!(
                next,
                Next {
                    digest,
                    state,
                    retry_at
                },
                "{before:?} + {outcome:?}"
            );
            assert_eq!(m, after, "{before:?} + {outcome:?}");
        }
    }

    /// A stretch of trouble ends in one catch-up that spans it, from its first attempt.
    #[test]
    fn a_catch_up_spans_the_whole_trouble() {
        let mut m = Memory::default();
        let t = timing();
        after_answer(&mut m, &Outcome::Transient("a".into()), 1_000, 1_100, &t, 0);
        after_answer(
            &mut m,
            &Outcome::Throttled("b".into(), None),
            5_000,
            5_100,
            &t,
            0,
        );
        after_answer(&mut m, &Outcome::Robot("c".into()), 9_000, 9_100, &t, 0);
        after_answer(&mut m, &Outcome::Ok, 20_000, 20_100, &t, 0);
        assert_eq!(m.catch_up, Some((1_000, 20_100)));
        assert_eq!((m.failures, m.trouble_since), (0, None));
    }

    proptest! {
        #[test]
        fn backoff_stays_between_half_and_the_nominal_delay(
            failures in 1u32..100, initial_ms in 10u64..5_000, max_ms in 5_000u64..600_000, random: u64,
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = Duration::from_millis(max_ms);
            let d = backoff(failures, initial, max, random);
            let nominal = (initial * 2u32.pow(failures.saturating_sub(1).min(20))).min(max);
            prop_assert!(d >= nominal / 2, "{d:?} < half of {nominal:?}");
            prop_assert!(d <= nominal + Duration::from_millis(1), "{d:?} > {nominal:?}");
        }
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum() {
        let s = Duration::from_secs(1);
        let top = |n| backoff(n, s, Duration::from_secs(300), u64::MAX - 1);
        assert!(top(1) <= s && top(1) >= s / 2);
        assert!(top(3) >= Duration::from_secs(2) && top(3) <= Duration::from_secs(4));
        assert!(top(20) >= Duration::from_secs(150) && top(20) <= Duration::from_secs(300));
    }
}
