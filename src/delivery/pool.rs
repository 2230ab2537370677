//! One task per pool: the robot task's loop (window → permit → seal → render → send → classify
//! → decide) over several member robots of one group, acting as one destination.
//!
//! Invariants:
//! 1. **Each member's limit holds as a robot's does.** Each member has its own [`RateGuard`],
//!    loaded from and written to its own send log (store key: the member's name) before each
//!    POST, and only this task drives it (a member has no task of its own), so a restart or
//!    `kill -9` cannot burst any member.
//! 2. **A digest goes out once.** The pool has one queue and one outbox. A sealed digest is
//!    tried through one member at a time; after an `Ok` it leaves the outbox, so it is never
//!    sent to a second member. Only an attempt without an answer we can trust (a transient:
//!    a timeout, a 5xx) may have reached the group and is retried, through whichever member is
//!    free next: at least once, as a robot retries today.
//! 3. **A member in trouble is skipped, not waited for.** A throttled, blocked or failing
//!    member pauses as [`decide::after_answer`] says for a robot; the same sealed digest (not
//!    re-sealed: every member renders the same platform's message) goes to the next free one.
//!    A paused member's pause ends with a real digest as its probe.
//! 4. **Pressure makes digests bigger.** A digest is sealed only once a member's permit is in
//!    hand, as for a robot.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{
    Jitter, MAX_ALERTS_PER_DIGEST, OldestPending, RobotHandle, Run, SHUTDOWN_GRACE, Sealing, State,
    decide, load_guard, message_of, record_send, release_freed_memory,
};
use crate::limit::{Clock, RateGuard};
use crate::provider::{Outcome, Provider};
use crate::store::{DigestRecord, DigestState, Store};

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

/// What the task keeps for each member.
struct Lane {
    member: PoolMember,
    guard: RateGuard,
    memory: decide::Memory,
    /// Until when the member is paused (throttled, blocked, backing off).
    paused_until: Option<i64>,
    /// The state it was paused in.
    paused_as: State,
    jitter: Jitter,
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
    pub async fn run(mut self) {
        let name = self.handle.config.name.clone();
        let window = self.handle.config.timing.window;
        let mut lanes = Vec::with_capacity(self.members.len());
        for member in std::mem::take(&mut self.members) {
            let m = &member.handle.config;
            let guard = load_guard(&*self.store, self.clock, &m.name, &m.timing).await;
            member.handle.update(|s| {
                s.recent_sends = guard.log();
                s.outbox = 0;
            });
            let jitter = Jitter::new(&m.name);
            lanes.push(Lane {
                member,
                guard,
                memory: decide::Memory::default(),
                paused_until: None,
                paused_as: State::Idle,
                jitter,
            });
        }
        // The pool's own memory: the trouble the destination as a whole had, for the catch-up.
        let mut memory = decide::Memory::default();
        let mut outbox: VecDeque<DigestRecord> = std::mem::take(&mut self.outbox).into();
        let mut oldest_pending = OldestPending::default();
        self.update_pool(&lanes, outbox.len());
        if !outbox.is_empty() {
            tracing::info!(pool = %name, digests = outbox.len(), "resuming digests sealed before the restart");
        }

        loop {
            if *self.run.borrow() != Run::Go {
                break;
            }
            let now = self.clock.now_ms();

            // 1. Is there anything to send, and is it time?
            if outbox.is_empty() {
                match self.store.oldest_pending_ms(&name).await {
                    Ok(None) => {
                        oldest_pending = OldestPending::default();
                        self.set_state(State::Idle, now, None);
                        let wake = self.handle.wake.clone();
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = self.run.changed() => {}
                        }
                        continue;
                    }
                    Ok(Some(oldest)) => {
                        let ready =
                            oldest_pending.received(oldest, now) + window.as_millis() as i64;
                        if now < ready {
                            self.set_state(State::Waiting, now, None);
                            self.sleep_ms(ready - now).await;
                            continue;
                        }
                    }
                    Err(e) => {
                        self.note_error(format!("store: {e}"), now);
                        self.sleep_ms(1000).await;
                        continue;
                    }
                }
            }

            // 2. A member with a permit, before anything is sealed.
            let paused: Vec<Option<i64>> = lanes.iter().map(|l| l.paused_until).collect();
            let i = match choose(now, &paused, |i| lanes[i].guard.acquire(now)) {
                Ok(i) => i,
                Err(wait) => {
                    // Every member paused: the pool is in the state of the one back first.
                    let first_back = lanes
                        .iter()
                        .filter(|l| l.paused_until.is_some_and(|t| t > now))
                        .min_by_key(|l| l.paused_until);
                    match first_back {
                        Some(l) if paused.iter().all(|p| p.is_some_and(|t| t > now)) => {
                            self.set_state(l.paused_as, now, l.paused_until)
                        }
                        _ => self.set_state(State::Waiting, now, None),
                    }
                    self.sleep_ms(wait).await;
                    continue;
                }
            };

            // 3. Seal whatever is pending into one digest, rendered for that member.
            if outbox.is_empty() {
                let lane = &lanes[i];
                // The pool's look and mentions (its members share keywords and msgtype), in the
                // member's platform, prepared by the member's provider.
                let sealing = Sealing {
                    name: &name,
                    target: lane.member.handle.config.target(),
                    provider: &lane.member.provider,
                    config: &self.handle.config,
                    owners: &self.owners,
                    public_url: self.public_url.as_deref(),
                    catch_up: memory.catch_up,
                    lines: self.handle.take_stand_in(),
                };
                let sealed = self
                    .store
                    .seal(
                        &name,
                        MAX_ALERTS_PER_DIGEST,
                        now,
                        Box::new(|id, alerts| sealing.seal(id, alerts)),
                    )
                    .await;
                match sealed {
                    Ok(Some(d)) => {
                        memory.catch_up = None;
                        tracing::debug!(pool = %name, digest = d.id, alerts = d.count(), "sealed");
                        if d.count() >= 10_000 {
                            release_freed_memory();
                        }
                        outbox.push_back(d);
                        self.update(|s| s.outbox = outbox.len());
                    }
                    Ok(None) => continue,
                    Err(e) => {
                        self.note_error(format!("store: cannot seal a digest: {e}"), now);
                        self.sleep_ms(1000).await;
                        continue;
                    }
                }
            }
            let Some(mut digest) = outbox.front().cloned() else {
                continue;
            };

            // 4. Send through member `i`, its send log on disk first.
            let lane = &mut lanes[i];
            let member = lane.member.handle.config.name.clone();
            let timing = lane.member.handle.config.timing.clone();
            let recorded =
                record_send(&*self.store, self.clock, &member, &mut lane.guard, &timing).await;
            if let Err(e) = recorded {
                self.note_error(format!("store: cannot record the send: {e}"), now);
                self.sleep_ms(1000).await;
                continue;
            }
            self.set_state(State::Sending, now, None);
            set_member_state(&lane.member.handle, State::Sending, now, None);
            lane.member
                .handle
                .update(|s| s.recent_sends = lane.guard.log());
            let Some(outcome) =
                send_unless_shutdown(&self.run, &lane.member.provider, &digest).await
            else {
                tracing::warn!(pool = %name, robot = %member, digest = digest.id, "shutdown: abandoned an unanswered send; the digest stays queued and is sent again after the restart");
                break;
            };
            let done = self.clock.now_ms();
            lane.guard.complete(done);
            let _ = self
                .store
                .set_send_log(&member, &self.clock.stored(&lane.guard.log()))
                .await;
            digest.attempts += 1;

            // 5. Act on the answer: the digest's fate is the pool's, the pause the member's.
            let (pm, mm) = (&self.handle.metrics, &lane.member.handle.metrics);
            pm.attempt(&outcome);
            mm.attempt(&outcome);
            match &outcome {
                Outcome::Ok => {
                    for m in [pm, mm] {
                        m.sent.increment(1);
                        m.delivered.increment(digest.count());
                    }
                    pm.per_digest.record(digest.count() as f64);
                    pm.latency
                        .record((done - digest.oldest_ms).max(0) as f64 / 1000.0);
                }
                Outcome::Message(_) => pm.dead.increment(1),
                _ => {}
            }
            digest.last_error = outcome.reason().map(|r| format!("{member}: {r}"));
            let random = lane.jitter.next();
            let next = decide::after_answer(&mut lane.memory, &outcome, now, done, &timing, random);
            let _ = decide::after_answer(&mut memory, &outcome, now, done, &timing, random);
            digest.state = next.digest;
            if next.digest == DigestState::Sent {
                digest.sent_ms = Some(done);
                digest.text = String::new();
                digest.body = serde_json::Value::Null;
                digest.unprepared = None;
            }
            lane.paused_until = next.retry_at;
            if let Some(state) = next.state {
                lane.paused_as = state;
                set_member_state(&lane.member.handle, state, done, next.retry_at);
            }
            if let Err(e) = self.store.update_digest(&digest).await {
                // The digest stays pending on disk: at worst it is sent once more after a restart.
                tracing::error!(pool = %name, digest = digest.id, "cannot record the answer: {e}");
            }
            if let Some(front) = outbox.front_mut() {
                *front = digest.clone();
            }
            let handle = &lane.member.handle;
            match outcome {
                Outcome::Ok => {
                    outbox.pop_front();
                    tracing::info!(pool = %name, robot = %member, digest = digest.id, alerts = digest.count(), attempts = digest.attempts, "delivered");
                    for h in [&self.handle, handle] {
                        h.update(|s| {
                            s.digests_sent += 1;
                            s.alerts_delivered += digest.count();
                        });
                    }
                }
                Outcome::Message(r) => {
                    outbox.pop_front();
                    tracing::warn!(pool = %name, robot = %member, digest = digest.id, alerts = digest.count(), "dead-lettered: {r}");
                    self.update(|s| s.dead += 1);
                    self.note_error(format!("{member}: {r}"), done);
                }
                Outcome::Throttled(r, _)
                | Outcome::Transient(r)
                | Outcome::Robot(r)
                | Outcome::Quota(r) => {
                    tracing::warn!(pool = %name, robot = %member, digest = digest.id, attempt = digest.attempts, "member paused ({}), the digest goes to the next free member: {r}", lane.paused_as.as_str());
                    note_error(handle, r.clone(), done);
                    self.note_error(format!("{member}: {r}"), done);
                }
            }
            self.update_pool(&lanes, outbox.len());
        }
    }

    /// The pool's outbox and its members' sends, as one log.
    fn update_pool(&self, lanes: &[Lane], outbox: usize) {
        let mut sends: Vec<i64> = lanes.iter().flat_map(|l| l.guard.log()).collect();
        sends.sort_unstable();
        self.update(|s| {
            s.outbox = outbox;
            s.recent_sends = sends;
        });
    }

    async fn sleep_ms(&mut self, ms: i64) {
        let d = Duration::from_millis(ms.max(1) as u64);
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.run.changed() => {}
        }
    }

    fn update(&self, f: impl FnOnce(&mut super::RobotStatus)) {
        self.handle.update(f);
    }

    fn set_state(&self, state: State, now: i64, next_attempt: Option<i64>) {
        set_member_state(&self.handle, state, now, next_attempt);
    }

    fn note_error(&self, error: String, now: i64) {
        note_error(&self.handle, error, now);
    }
}

/// Sets a status's state (and when the next attempt is due, for a paused one).
fn set_member_state(h: &RobotHandle, state: State, now: i64, next_attempt: Option<i64>) {
    h.update(|s| {
        if s.state != state {
            s.state = state;
            s.since_ms = now;
        }
        s.next_attempt_ms = next_attempt;
    });
}

fn note_error(h: &RobotHandle, error: String, now: i64) {
    h.update(|s| {
        s.last_error = Some(error);
        s.last_error_ms = Some(now);
    });
}

/// Sends through `provider`, but gives up [`SHUTDOWN_GRACE`] after shutdown begins (`None`).
async fn send_unless_shutdown(
    run: &watch::Receiver<Run>,
    provider: &Provider,
    digest: &DigestRecord,
) -> Option<Outcome> {
    let mut run = run.clone();
    let deadline = async move {
        let _ = run.wait_for(|r| *r == Run::Shutdown).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    let message = message_of(provider, digest);
    tokio::select! {
        outcome = provider.send(digest.id, &message) => Some(outcome),
        _ = deadline => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
