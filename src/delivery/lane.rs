//! The one delivery loop, for a robot and for a pool: window → a member with a permit → seal →
//! render → send → classify → decide. A robot's lane has one member, itself; a pool's has its
//! member robots, which have no task of their own.
//!
//! Invariants:
//! 1. **Each member's limit holds.** Each member has its own [`RateGuard`], loaded from and
//!    written to its own send log (store key: the member's name) before each POST, and only
//!    this task drives it, so a restart or `kill -9` cannot burst any member.
//! 2. **A digest goes out once.** The lane has one queue and one outbox. A sealed digest is
//!    tried through one member at a time; after an `Ok` it leaves the outbox, so it is never
//!    sent to a second member. Only an attempt without an answer we can trust (a transient: a
//!    timeout, a 5xx) may have reached the group and is retried: at least once.
//! 3. **A member in trouble is skipped, not waited for.** A throttled, blocked or failing
//!    member pauses as [`decide::after_answer`] says; the same sealed digest (not re-sealed:
//!    every member renders the same platform's message) goes to the next free one. A paused
//!    member's pause ends with a real digest as its probe.
//! 4. **Pressure makes digests bigger.** A digest is sealed only once a member's permit is in
//!    hand, and while a digest waits to be retried nothing new is sealed. A message that
//!    cannot be merged (a front door's passthrough) is sealed alone, in arrival order: the
//!    alerts before it make one digest, it goes next, through the same permits and quota.
//! 5. **Never a send past a quota.** A member's send is counted on disk before it leaves; an
//!    unanswered one counts.
//! 6. **A lane that cannot send hands its queue on.** When every member is away (its quota
//!    spent, or refusing our messages for longer than `fallback_after`) and the lane has a
//!    `fallback`, its sealed digests and pending alerts move to the fallback's queue, which
//!    says in its next digest whom it stands in for and why. A member away because it refuses
//!    us is probed every `blocked_probe` with a short notice; once one is accepted, the lane's
//!    digests go to it again. Only the lane's own task moves its queue (store invariant 4).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::test_message::{Request, TestRefused, TestSent};
mod answer_test;

use super::{
    Jitter, Lanes, MAX_ALERTS_PER_DIGEST, OldestPending, PoolMember, RobotHandle, RobotStatus, Run,
    SHUTDOWN_GRACE, Sealing, State, decide, load_guard, message_of, record_send,
    release_freed_memory,
};
use crate::api::Attempt;
use crate::limit::{Clock, RateGuard};
use crate::mention::Mention;
use crate::message::Prepared;
use crate::provider::{Outcome, Provider};
use crate::quota::Quota;
use crate::store::{DigestRecord, DigestState, QuotaUsed, Store};

/// Everything a lane's task needs.
pub(super) struct Lane {
    /// The lane's own status and counters: the robot's, or the pool's.
    pub(super) handle: RobotHandle,
    pub(super) store: Arc<dyn Store>,
    pub(super) clock: Clock,
    pub(super) run: watch::Receiver<Run>,
    pub(super) public_url: Option<String>,
    pub(super) owners: Arc<BTreeMap<String, BTreeMap<String, Vec<String>>>>,
    /// The other lanes, for the fallback.
    pub(super) lanes: Lanes,
}

/// What the task keeps for each member.
struct Member {
    handle: RobotHandle,
    provider: Provider,
    guard: RateGuard,
    memory: decide::Memory,
    /// Until when the member is paused (throttled, blocked, backing off), and as what.
    paused_until: Option<i64>,
    paused_as: State,
    jitter: Jitter,
    /// Since when it has refused our messages: robot-level answers and no accepted one since
    /// (a transient in between does not count as accepted).
    blocked_since: Option<i64>,
    /// Until when the platform said its quota is spent, and what it said.
    platform_spent: Option<(i64, String)>,
    count: Option<Count>,
}

/// A member's quota and its durable count.
struct Count {
    quota: Quota,
    used: QuotaUsed,
}

/// Why a member cannot take the lane's digests, until when.
struct Away {
    until: i64,
    state: State,
    why: String,
}

impl Member {
    fn name(&self) -> &str {
        &self.handle.config.name
    }

    /// Whether the member is away at `now`: its quota spent (it then rolls its count into a
    /// new period first, and shows the count), or, when the lane has a fallback
    /// (`fallback_after`), refusing our messages for that long.
    fn away(&mut self, now: i64, fallback_after: Option<Duration>) -> Option<Away> {
        let tz = &self.handle.config.look.timezone;
        let mut spent = None;
        if let Some(c) = &mut self.count {
            let q = c.quota;
            let (start, end) = q.bounds(now, tz);
            if c.used.period_start_ms != start {
                c.used = QuotaUsed {
                    period_start_ms: start,
                    ..QuotaUsed::default()
                };
            }
            let used = c.used.used;
            self.handle.update(|s| {
                s.quota = Some(super::QuotaStatus {
                    used: used.min(q.limit),
                    limit: q.limit,
                    period_ends_ms: end,
                    runs_out_ms: crate::quota::runs_out(q.limit, used, start, end, now),
                })
            });
            if used >= q.limit {
                spent = Some(Away {
                    until: end,
                    state: State::Quota,
                    why: format!("its {} is spent", q.describe()),
                });
            }
        }
        if spent.is_some() {
            return spent;
        }
        if let Some((until, said)) = &self.platform_spent
            && now < *until
        {
            return Some(Away {
                until: *until,
                state: State::Quota,
                why: format!("the platform says its quota is spent ({said})"),
            });
        }
        let after = fallback_after?;
        let since = self.blocked_since?;
        if now - since < after.as_millis() as i64 {
            return None;
        }
        let said = self.handle.status().last_error.unwrap_or_default();
        Some(Away {
            until: self.paused_until.unwrap_or(now),
            state: State::Blocked,
            why: format!(
                "it has refused our messages for more than {} ({said})",
                humantime::format_duration(after)
            ),
        })
    }

    /// The 80 % line for the digest about to be sealed through this member, once a period.
    fn quota_line(&self, now: i64) -> Option<String> {
        let c = self.count.as_ref()?;
        if c.used.warned {
            return None;
        }
        let tz = &self.handle.config.look.timezone;
        let (start, end) = c.quota.bounds(now, tz);
        let n = c.used.used + 1;
        let out = crate::quota::runs_out(c.quota.limit, n, start, end, now);
        c.quota.warning(n, out, tz)
    }
}

/// A send's outcome, or why there was none.
enum Tried {
    Answered(Outcome, i64),
    /// The store could not count or record the send; it did not leave.
    Store(String),
    /// Shutdown: the send was abandoned without an answer.
    Shutdown,
}

impl Lane {
    /// Runs the lane until told to stop. `members` in config order, the order ties are broken
    /// in; `outbox`: digests sealed before a restart and not yet delivered, oldest first.
    pub(super) async fn run(mut self, members: Vec<PoolMember>, outbox: Vec<DigestRecord>) {
        let name = self.handle.config.name.clone();
        let config = self.handle.config.clone();
        let own = members.len() == 1 && members[0].handle.config.name == name;
        let mut members = self.load(members).await;
        // The lane's own memory: the trouble the destination as a whole had, for the catch-up.
        let mut memory = decide::Memory::default();
        let mut outbox: VecDeque<DigestRecord> = outbox.into();
        let mut oldest_pending = OldestPending::default();
        self.show(&members, own, outbox.len());
        if !outbox.is_empty() {
            tracing::info!(lane = %name, digests = outbox.len(), "resuming digests sealed before the restart");
        }
        let fallback_after = config
            .fallback
            .as_ref()
            .map(|_| config.timing.fallback_after);
        let tests = self.handle.tests.clone();
        let _running = tests.open();

        'lane: loop {
            if *self.run.borrow() != Run::Go {
                break;
            }
            // Test messages asked for meanwhile, each through its member's guard.
            while let Some(req) = tests.take() {
                if !self
                    .answer_test(&mut members, &mut memory, own, fallback_after, req)
                    .await
                {
                    break 'lane;
                }
            }
            let now = self.clock.now_ms();

            // 0. Every member away: the queue goes to the fallback (or waits), a member that
            // refuses us is probed, until one is back.
            let away: Vec<Option<Away>> = members
                .iter_mut()
                .map(|m| m.away(now, fallback_after))
                .collect();
            if away.iter().all(Option::is_some) {
                let first = away.iter().flatten().min_by_key(|a| a.until);
                let first = first.expect("a lane has at least one member");
                self.set_state(first.state, now, Some(first.until));
                if let Some(to) = &config.fallback
                    && let Err(e) = self.hand_over(&mut outbox, to, &first.why, now).await
                {
                    self.note_error(format!("store: cannot hand the queue to {to}: {e}"), now);
                    self.sleep_ms(1000).await;
                    continue;
                }
                let due = (0..members.len()).find(|&i| {
                    away[i].as_ref().is_some_and(|a| a.state == State::Blocked)
                        && members[i].paused_until.is_none_or(|t| t <= now)
                });
                if let Some(i) = due {
                    match members[i].guard.acquire(now) {
                        Ok(()) => {
                            if !self.probe(&mut members[i], &mut memory, own, now).await {
                                break;
                            }
                        }
                        Err(wait) => self.sleep_ms(wait.as_millis() as i64).await,
                    }
                    continue;
                }
                // Until the first is back; with a fallback, new alerts are handed over too.
                let wake = self.handle.wake.clone();
                let d = Duration::from_millis((first.until - now).max(1) as u64);
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = wake.notified(), if config.fallback.is_some() => {}
                    _ = self.run.changed() => {}
                    _ = tests.notify.notified() => {}
                }
                continue;
            }

            // 1. Is there anything to send, and is it time?
            if outbox.is_empty() {
                match self.store.oldest_pending_ms(&name).await {
                    Ok(None) => {
                        oldest_pending = OldestPending::default();
                        self.set_state(State::Idle, now, None);
                        let wake = self.handle.wake.clone();
                        let recheck = self.store.idle_recheck();
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = self.run.changed() => {}
                            _ = tests.notify.notified() => {}
                            // Cluster mode: another node may have taken alerts for this lane.
                            _ = tokio::time::sleep(recheck.unwrap_or_default()), if recheck.is_some() => {}
                        }
                        continue;
                    }
                    Ok(Some(oldest)) => {
                        let ready = oldest_pending.received(oldest, now)
                            + config.timing.window.as_millis() as i64;
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
            let paused: Vec<Option<i64>> = members
                .iter()
                .zip(&away)
                .map(|(m, a)| a.as_ref().map(|a| a.until.max(now + 1)).or(m.paused_until))
                .collect();
            let i = match super::pool::choose(now, &paused, |i| members[i].guard.acquire(now)) {
                Ok(i) => i,
                Err(wait) => {
                    // Every member paused: the lane is in the state of the one back first.
                    let first_back = members
                        .iter()
                        .filter(|m| m.paused_until.is_some_and(|t| t > now))
                        .min_by_key(|m| m.paused_until);
                    match first_back {
                        Some(m) if paused.iter().all(|p| p.is_some_and(|t| t > now)) => {
                            self.set_state(m.paused_as, now, m.paused_until)
                        }
                        _ => self.set_state(State::Waiting, now, None),
                    }
                    self.sleep_ms(wait).await;
                    continue;
                }
            };

            // 3. Seal whatever is pending into one digest, rendered for that member.
            if outbox.is_empty() {
                let m = &members[i];
                let mut lines = Vec::new();
                let warns = m.quota_line(now).map(|line| lines.push(line)).is_some();
                let notes = self.handle.take_stand_in();
                lines.extend(notes.iter().cloned());
                // The lane's look and mentions (a pool's members share keywords and msgtype),
                // in the member's platform, prepared by the member's provider.
                let sealing = Sealing {
                    name: &name,
                    target: m.handle.config.target(),
                    provider: &m.provider,
                    config: &config,
                    owners: &self.owners,
                    public_url: self.public_url.as_deref(),
                    catch_up: memory.catch_up,
                    lines,
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
                    Ok(Some(d)) if d.passthrough => {
                        // Sent alone as it came: the notes and the catch-up wait for the
                        // next digest.
                        for note in notes {
                            self.handle.stand_in(note);
                        }
                        tracing::debug!(lane = %name, digest = d.id, "sealed a passthrough message");
                        outbox.push_back(d);
                        self.update(|s| s.outbox = outbox.len());
                    }
                    Ok(Some(d)) => {
                        memory.catch_up = None;
                        // On disk with the count of the send that carries it.
                        if let (true, Some(c)) = (warns, &mut members[i].count) {
                            c.used.warned = true;
                        }
                        tracing::debug!(lane = %name, digest = d.id, alerts = d.count(), "sealed");
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

            // 4. Send through member `i`, counted and logged on disk first.
            let m = &mut members[i];
            let member = m.name().to_string();
            let timing = m.handle.config.timing.clone();
            let message = message_of(&m.provider, &digest);
            let (outcome, done) = match self.attempt(m, own, digest.id, &message, now).await {
                Tried::Answered(outcome, done) => (outcome, done),
                Tried::Store(e) => {
                    self.note_error(e, now);
                    self.sleep_ms(1000).await;
                    continue;
                }
                Tried::Shutdown => {
                    tracing::warn!(lane = %name, robot = %member, digest = digest.id, "shutdown: abandoned an unanswered send; the digest stays queued and is sent again after the restart");
                    break;
                }
            };
            digest.attempts += 1;
            digest.note_try(Attempt {
                at_ms: now,
                took_ms: (done - now).max(0),
                robot: member.clone(),
                outcome: outcome.class().to_string(),
                said: outcome.reason().map(str::to_string),
            });

            // 5. Act on the answer: the digest's fate is the lane's, the pause the member's.
            let lm = &self.handle.metrics;
            if let Outcome::Ok = &outcome {
                lm.per_digest.record(digest.count() as f64);
                lm.latency
                    .record((done - digest.oldest_ms).max(0) as f64 / 1000.0);
            }
            for h in self.handles(m, own) {
                match &outcome {
                    Outcome::Ok => {
                        h.metrics.sent.increment(1);
                        h.metrics.delivered.increment(digest.count());
                    }
                    Outcome::Message(_) if h.config.name == name => h.metrics.dead.increment(1),
                    _ => {}
                }
            }
            let said = |r: &str| {
                if own {
                    r.to_string()
                } else {
                    format!("{member}: {r}")
                }
            };
            digest.last_error = outcome.reason().map(said);
            let random = m.jitter.next();
            let next = self.after_answer(m, &mut memory, &outcome, now, done, &timing, random);
            digest.state = next.digest;
            if next.digest == DigestState::Sent {
                digest.sent_ms = Some(done);
                // The text stays until retention, for the console's "as the group saw it";
                // the request body is only needed to send it.
                digest.body = serde_json::Value::Null;
                digest.unprepared = None;
            }
            if let Err(e) = self.store.update_digest(&digest).await {
                // The digest stays pending on disk: at worst it is sent once more after a restart.
                tracing::error!(lane = %name, digest = digest.id, "cannot record the answer: {e}");
            }
            if let Some(front) = outbox.front_mut() {
                // The next attempt starts from what this one learned (attempts, last error).
                *front = digest.clone();
            }
            match outcome {
                Outcome::Ok => {
                    outbox.pop_front();
                    tracing::info!(lane = %name, robot = %member, digest = digest.id, alerts = digest.count(), attempts = digest.attempts, "delivered");
                    for h in self.handles(m, own) {
                        h.update(|s| {
                            s.digests_sent += 1;
                            s.alerts_delivered += digest.count();
                        });
                    }
                }
                Outcome::Message(r) => {
                    outbox.pop_front();
                    tracing::warn!(lane = %name, robot = %member, digest = digest.id, alerts = digest.count(), "dead-lettered: {r}");
                    self.update(|s| s.dead += 1);
                    self.note_error(said(&r), done);
                }
                Outcome::Throttled(r, wait) => {
                    let pause = wait.unwrap_or(timing.throttle_backoff);
                    tracing::warn!(lane = %name, robot = %member, digest = digest.id, "throttled by the robot, pausing {}: {r}", humantime::format_duration(pause));
                    self.note_trouble(m, own, &said(&r), &r, done);
                }
                Outcome::Transient(r) => {
                    tracing::warn!(lane = %name, robot = %member, digest = digest.id, attempt = digest.attempts, "send failed, will retry: {r}");
                    self.note_trouble(m, own, &said(&r), &r, done);
                }
                Outcome::Robot(r) => {
                    tracing::error!(lane = %name, robot = %member, digest = digest.id, "robot refuses our messages, paused until a probe succeeds: {r}");
                    self.note_trouble(m, own, &said(&r), &r, done);
                }
                Outcome::Quota(r) => {
                    tracing::warn!(lane = %name, robot = %member, digest = digest.id, "the platform says the robot's quota is spent: {r}");
                    self.note_trouble(m, own, &said(&r), &r, done);
                }
            }
            show_state(m, &next, done);
            self.show(&members, own, outbox.len());
        }
    }

    /// Each member with its rate guard from its send log, and its quota count as persisted (an
    /// unreadable one counts as spent).
    async fn load(&self, members: Vec<PoolMember>) -> Vec<Member> {
        let mut loaded = Vec::with_capacity(members.len());
        for PoolMember { handle, provider } in members {
            let c = &handle.config;
            let guard = load_guard(&*self.store, self.clock, &c.name, &c.timing).await;
            let mut count = None;
            if let Some(quota) = c.quota {
                let used = match self.store.quota_used(&c.name).await {
                    Ok(u) => u.unwrap_or_default(),
                    Err(e) => {
                        tracing::error!(robot = %c.name, "cannot read the quota count ({e}); assuming the quota is spent");
                        QuotaUsed {
                            period_start_ms: quota.bounds(self.clock.now_ms(), &c.look.timezone).0,
                            used: quota.limit,
                            warned: true,
                        }
                    }
                };
                count = Some(Count { quota, used });
            }
            let jitter = Jitter::new(&c.name);
            loaded.push(Member {
                handle,
                provider,
                guard,
                memory: decide::Memory::default(),
                paused_until: None,
                paused_as: State::Idle,
                jitter,
                blocked_since: None,
                platform_spent: None,
                count,
            });
        }
        loaded
    }

    /// One send through member `m`: counted against its quota and put in its send log, both
    /// on disk, before the request leaves; its answer, and the log with the answer's time.
    async fn attempt(
        &mut self,
        m: &mut Member,
        own: bool,
        id: u64,
        message: &Prepared,
        now: i64,
    ) -> Tried {
        let name = m.handle.config.name.clone();
        if let Some(c) = &mut m.count {
            c.used.used += 1;
            if let Err(e) = self.store.set_quota_used(&name, c.used).await {
                // Counted anyway: the write may have reached the disk.
                return Tried::Store(format!("store: cannot count the send: {e}"));
            }
        }
        let timing = &m.handle.config.timing;
        let recorded = record_send(&*self.store, self.clock, &name, &mut m.guard, timing).await;
        if let Err(e) = recorded {
            return Tried::Store(format!("store: cannot record the send: {e}"));
        }
        self.set_state(State::Sending, now, None);
        if !own {
            set_state(&m.handle, State::Sending, now, None);
        }
        m.handle.update(|s| s.recent_sends = m.guard.log());
        let Some(outcome) = send_unless_shutdown(&self.run, &m.provider, id, message).await else {
            return Tried::Shutdown;
        };
        let done = self.clock.now_ms();
        m.guard.complete(done);
        let _ = self
            .store
            .set_send_log(&name, &self.clock.stored(&m.guard.log()))
            .await;
        for h in self.handles(m, own) {
            h.metrics.attempt(&outcome);
        }
        Tried::Answered(outcome, done)
    }

    /// What member `m` learns from an answer: its pause, since when it refuses us, what the
    /// platform said of its quota; the lane's memory learns the trouble for the catch-up. The
    /// caller shows the new state ([`show_state`]) once the error is noted, so that no one sees
    /// a robot in trouble without its reason.
    #[allow(clippy::too_many_arguments)]
    fn after_answer(
        &self,
        m: &mut Member,
        memory: &mut decide::Memory,
        outcome: &Outcome,
        started: i64,
        done: i64,
        timing: &crate::config::Timing,
        random: u64,
    ) -> decide::Next {
        let next = decide::after_answer(&mut m.memory, outcome, started, done, timing, random);
        let _ = decide::after_answer(memory, outcome, started, done, timing, random);
        m.paused_until = next.retry_at;
        if let Some(state) = next.state {
            m.paused_as = state;
        }
        match outcome {
            Outcome::Robot(_) => {
                m.blocked_since.get_or_insert(started);
            }
            Outcome::Transient(_) => {}
            Outcome::Quota(r) => {
                m.blocked_since = None;
                if let Some(at) = next.retry_at {
                    m.platform_spent = Some((at, r.clone()));
                }
            }
            Outcome::Ok | Outcome::Message(_) | Outcome::Throttled(..) => m.blocked_since = None,
        }
        next
    }

    /// Member `m` refuses us, and its queue went to the fallback: a short notice, through its
    /// rate guard and quota, to learn whether it takes messages again. Any answer that is not
    /// a refusal or a failure means it does: the lane's digests go to it again. `false`: the
    /// send was abandoned for shutdown.
    async fn probe(
        &mut self,
        m: &mut Member,
        memory: &mut decide::Memory,
        own: bool,
        now: i64,
    ) -> bool {
        let (title, text) = m.provider.probe_text(&m.handle.config.target());
        let message = m.provider.prepare(0, title, text, &Mention::default());
        let (outcome, done) = match self.attempt(m, own, 0, &message, now).await {
            Tried::Answered(outcome, done) => (outcome, done),
            Tried::Store(e) => {
                self.note_error(e, now);
                self.sleep_ms(1000).await;
                return true;
            }
            Tried::Shutdown => return false,
        };
        let timing = m.handle.config.timing.clone();
        let random = m.jitter.next();
        let next = self.after_answer(m, memory, &outcome, now, done, &timing, random);
        let robot = m.name().to_string();
        match &outcome {
            Outcome::Robot(r) | Outcome::Transient(r) => {
                tracing::info!(lane = %self.handle.config.name, robot = %robot, "probe refused, the queue still goes to the fallback: {r}");
                self.note_trouble(m, own, r, r, done);
            }
            _ => {
                // Its alerts of the trouble went to the fallback: no catch-up to report.
                *memory = decide::Memory::default();
                m.memory = decide::Memory::default();
                tracing::info!(lane = %self.handle.config.name, robot = %robot, answer = outcome.class(), "probe accepted: the robot's digests go to it again");
            }
        }
        show_state(m, &next, done);
        self.show_member(m, own);
        true
    }

    /// Everything queued for this lane (its sealed digests, which are marked replayed, and its
    /// pending alerts) goes to the fallback lane `to`, which renders it in its own dialect and
    /// says in its next digest whom it stands in for and `why`.
    async fn hand_over(
        &mut self,
        outbox: &mut VecDeque<DigestRecord>,
        to: &str,
        why: &str,
        now: i64,
    ) -> Result<(), crate::store::StoreError> {
        let name = self.handle.config.name.clone();
        if outbox.is_empty() && self.store.pending(&name).await? == 0 {
            return Ok(());
        }
        let moved = self.store.move_queue(&name, to, now).await?;
        outbox.clear();
        self.update(|s| s.outbox = 0);
        if let Some(h) = (self.lanes)(to) {
            h.metrics.received.increment(moved.alerts);
            h.stand_in(format!("Standing in for robot {name}: {why}."));
            h.wake.notify_one();
        }
        tracing::warn!(lane = %name, fallback = to, alerts = moved.alerts, digests = moved.digests, "queue handed to the fallback: {why}");
        Ok(())
    }

    /// The handles an answer through `m` is counted in: the lane's, and the member's when it is
    /// not the lane itself.
    fn handles<'a>(&'a self, m: &'a Member, own: bool) -> impl Iterator<Item = &'a RobotHandle> {
        std::iter::once(&self.handle).chain((!own).then_some(&m.handle))
    }

    /// A member's trouble, on the member (its own words) and on the lane (`said`: naming the
    /// member, for a pool).
    fn note_trouble(&self, m: &Member, own: bool, said: &str, r: &str, now: i64) {
        if !own {
            note_error(&m.handle, r.to_string(), now);
        }
        self.note_error(said.to_string(), now);
    }

    /// The lane's outbox and its members' sends, as one log.
    fn show(&self, members: &[Member], own: bool, outbox: usize) {
        let mut sends: Vec<i64> = members.iter().flat_map(|m| m.guard.log()).collect();
        sends.sort_unstable();
        self.update(|s| {
            s.outbox = outbox;
            s.recent_sends = sends;
        });
        if !own {
            for m in members {
                m.handle.update(|s| {
                    s.recent_sends = m.guard.log();
                    s.outbox = 0;
                });
            }
        }
    }

    fn show_member(&self, m: &Member, own: bool) {
        let sends = m.guard.log();
        if own {
            self.update(|s| s.recent_sends = sends);
        } else {
            m.handle.update(|s| s.recent_sends = sends);
        }
    }

    async fn sleep_ms(&mut self, ms: i64) {
        let d = Duration::from_millis(ms.max(1) as u64);
        let tests = self.handle.tests.clone();
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.run.changed() => {}
            _ = tests.notify.notified() => {}
        }
    }

    fn update(&self, f: impl FnOnce(&mut RobotStatus)) {
        self.handle.update(f);
    }

    fn set_state(&self, state: State, now: i64, next_attempt: Option<i64>) {
        set_state(&self.handle, state, now, next_attempt);
    }

    fn note_error(&self, error: String, now: i64) {
        note_error(&self.handle, error, now);
    }
}

/// Shows member `m` in the state an answer left it in, if it changed any.
fn show_state(m: &Member, next: &decide::Next, done: i64) {
    if let Some(state) = next.state {
        set_state(&m.handle, state, done, next.retry_at);
    }
}

/// Sets a status's state (and when the next attempt is due, for a paused one).
fn set_state(h: &RobotHandle, state: State, now: i64, next_attempt: Option<i64>) {
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

/// Sends `message` through `provider`, but gives up [`SHUTDOWN_GRACE`] after shutdown begins
/// (`None`). A retiring task waits for the answer (the request timeout bounds it).
async fn send_unless_shutdown(
    run: &watch::Receiver<Run>,
    provider: &Provider,
    id: u64,
    message: &Prepared,
) -> Option<Outcome> {
    let mut run = run.clone();
    let deadline = async move {
        let _ = run.wait_for(|r| *r == Run::Shutdown).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        outcome = provider.send(id, message) => Some(outcome),
        _ = deadline => None,
    }
}
