//! One task per robot: window → permit → seal → render → send → classify → next.
//!
//! The task owns everything about its robot that changes: the rate guard, the outbox of sealed
//! digests, the retry timer. Nothing is shared with other robots, so one that is blocked,
//! throttled or slow never delays another. Others see it only through [`RobotStatus`].
//!
//! Pressure makes digests bigger, not more frequent: a digest is sealed only once a send permit is
//! in hand, and while an earlier digest waits to be retried nothing new is sealed, so everything
//! that arrives meanwhile joins one later digest.
//!
//! The task works on this process's [`Clock`]. Times an earlier process left in the store, on a
//! wall clock that may have stepped since, are brought into it once, when first read: the send
//! log by [`crate::limit::resume`], the oldest pending alert's receipt by `OldestPending`. So a
//! step across a restart neither lets a burst through nor holds a robot back longer than one rate
//! period or one window.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{Notify, watch};

use crate::config::Robot;
use crate::digest::{DigestSpec, render};
use crate::limit::{Clock, RateGuard};
use crate::mention;
use crate::metrics::RobotMetrics;
use crate::provider::{Outcome, Provider};
use crate::store::{DigestRecord, DigestState, Store};

/// Most alerts one digest covers, which bounds the memory a seal needs. A larger backlog becomes
/// several digests.
pub const MAX_ALERTS_PER_DIGEST: u64 = 100_000;

/// How long an in-flight POST may still run after shutdown starts before it is abandoned (the
/// digest then stays queued and is sent again after the restart).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Nothing pending.
    Idle,
    /// Alerts pending: waiting for the window to close or for a send permit.
    Waiting,
    /// A request is in flight.
    Sending,
    /// A transient error: retrying with exponential backoff.
    Backoff,
    /// The robot said we are too fast: waiting out its penalty.
    Throttled,
    /// The robot refuses us (token, signature, keyword...): probing rarely until it accepts.
    Blocked,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Waiting => "waiting",
            State::Sending => "sending",
            State::Backoff => "backoff",
            State::Throttled => "throttled",
            State::Blocked => "blocked",
        }
    }
}

/// What a robot's task tells the rest of the process.
#[derive(Debug, Clone, Serialize)]
pub struct RobotStatus {
    pub state: State,
    /// When the robot entered `state` (Unix ms).
    pub since_ms: i64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Sealed digests not yet delivered.
    pub outbox: usize,
    /// Wall-clock ms of recent requests (the rate guard's log).
    pub recent_sends: Vec<i64>,
    pub digests_sent: u64,
    pub alerts_delivered: u64,
    pub dead: u64,
    /// Alerts acknowledged but not queued again: repeats of a dedup key already queued.
    pub duplicates_dropped: u64,
    /// When the next retry or probe is due (Unix ms).
    pub next_attempt_ms: Option<i64>,
}

impl RobotStatus {
    pub fn new(now_ms: i64) -> RobotStatus {
        RobotStatus {
            state: State::Idle,
            since_ms: now_ms,
            last_error: None,
            last_error_ms: None,
            outbox: 0,
            recent_sends: Vec::new(),
            digests_sent: 0,
            alerts_delivered: 0,
            dead: 0,
            duplicates_dropped: 0,
            next_attempt_ms: None,
        }
    }
}

/// The handle the HTTP layer keeps for each robot.
#[derive(Clone)]
pub struct RobotHandle {
    pub config: Robot,
    pub wake: Arc<Notify>,
    pub status: Arc<Mutex<RobotStatus>>,
    pub metrics: RobotMetrics,
}

impl RobotHandle {
    pub fn new(config: Robot, status: RobotStatus, metrics: RobotMetrics) -> RobotHandle {
        RobotHandle {
            config,
            wake: Arc::new(Notify::new()),
            status: Arc::new(Mutex::new(status)),
            metrics,
        }
    }

    pub fn status(&self) -> RobotStatus {
        self.status.lock().expect("status lock").clone()
    }
}

/// What a robot's task is told to do; its supervisor changes it through a `watch` channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Go,
    /// Stop for a reload or a store restart: an in-flight send is finished and its answer
    /// recorded first, so the next task for this robot starts from the truth.
    Retire,
    /// Shut down: an in-flight send gets [`SHUTDOWN_GRACE`], then it is abandoned (the digest
    /// stays queued).
    Shutdown,
}

/// Everything one robot's task needs.
pub struct RobotTask {
    pub handle: RobotHandle,
    pub store: Arc<Store>,
    pub provider: Provider,
    pub clock: Clock,
    pub run: watch::Receiver<Run>,
    pub public_url: Option<String>,
    /// `[owners]` from the config, for mentions.
    pub owners: Arc<BTreeMap<String, BTreeMap<String, Vec<String>>>>,
    /// Digests sealed before a restart and not yet delivered, oldest first.
    pub outbox: Vec<DigestRecord>,
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

/// Sealing a large digest decodes all its alerts at once (about 75 MB for 100 000); glibc keeps
/// what was freed, so without this the process stays that large after every big seal.
fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the system; it touches no live data.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// A small xorshift generator for jitter; no need for a crate.
struct Jitter(u64);

impl Jitter {
    fn new(seed: &str) -> Jitter {
        let mut s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x9e37_79b9, |d| d.as_nanos() as u64);
        for b in seed.bytes() {
            s = s.rotate_left(5) ^ u64::from(b);
        }
        Jitter(s | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// When the oldest pending alert counts as received, for its window. Its `received_ms` is on the
/// wall clock of the process that took it in; one whose clock was ahead (stepped back since, across
/// a restart) left a time in this process's future, which would hold the digest back for the
/// whole step. That alert was received before this task first saw it, so it counts as received
/// no later than that. Bounding it by "now" on every loop instead would keep it in the future.
#[derive(Debug, Default)]
struct OldestPending {
    /// The `received_ms` last seen as the oldest, and when it was first seen.
    seen: Option<(i64, i64)>,
}

impl OldestPending {
    fn received(&mut self, received_ms: i64, now_ms: i64) -> i64 {
        let first_seen = match self.seen {
            Some((r, at)) if r == received_ms => at,
            _ => {
                self.seen = Some((received_ms, now_ms));
                now_ms
            }
        };
        received_ms.min(first_seen)
    }
}

impl RobotTask {
    pub async fn run(mut self) {
        let name = self.handle.config.name.clone();
        let timing = self.handle.config.timing.clone();
        let log = match self.store.stamped_send_log(&name) {
            // Into this process's clock once, whatever the wall clock did since the log was
            // written; the newest send counts as late as its answer could have come.
            Ok(stored) => crate::limit::resume(
                &stored,
                self.clock.reading(),
                timing.request_timeout.as_millis() as i64,
            ),
            Err(e) => {
                // Without the log we cannot prove the limit; assume a full period of sends.
                tracing::error!(robot = %name, "cannot read the send log ({e}); assuming the limit was just used up");
                let most = timing.windows().iter().map(|w| w.limit).max().unwrap_or(1);
                vec![self.clock.now_ms(); most as usize]
            }
        };
        let mut guard = RateGuard::with_windows(&timing.windows(), log);
        let mut outbox: VecDeque<DigestRecord> = std::mem::take(&mut self.outbox).into();
        let mut retry_at: Option<i64> = None;
        let mut failures = 0u32;
        // Since when the robot has been failing us, and, once it is back, the period the next
        // digest reports as a catch-up.
        let mut trouble_since: Option<i64> = None;
        let mut catch_up: Option<(i64, i64)> = None;
        let mut jitter = Jitter::new(&name);
        let mut oldest_pending = OldestPending::default();
        self.update(|s| {
            s.outbox = outbox.len();
            s.recent_sends = guard.log();
        });
        if !outbox.is_empty() {
            tracing::info!(robot = %name, digests = outbox.len(), "resuming digests sealed before the restart");
        }

        loop {
            if *self.run.borrow() != Run::Go {
                break;
            }
            let now = self.clock.now_ms();

            // 1. Is there anything to send, and is it time?
            if outbox.is_empty() {
                match self.store.oldest_pending_ms(&name) {
                    Ok(None) => {
                        oldest_pending = OldestPending::default();
                        self.set_state(State::Idle, now);
                        let wake = self.handle.wake.clone();
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = self.run.changed() => {}
                        }
                        continue;
                    }
                    Ok(Some(oldest)) => {
                        let oldest = oldest_pending.received(oldest, now);
                        let ready = oldest + timing.window.as_millis() as i64;
                        if now < ready {
                            self.set_state(State::Waiting, now);
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
            } else if let Some(at) = retry_at
                && now < at
            {
                self.sleep_ms(at - now).await;
                continue;
            }

            // 2. A permit, before anything is sealed.
            if let Err(wait) = guard.acquire(now) {
                if retry_at.is_none() {
                    self.set_state(State::Waiting, now);
                }
                self.sleep_ms(wait.as_millis() as i64).await;
                continue;
            }

            // 3. Seal whatever is pending into one digest.
            if outbox.is_empty() {
                let budget = self.provider.text_budget();
                let keyword = self.handle.config.keywords.first().cloned();
                let public_url = self.public_url.clone();
                let (mention_config, owners) = (&self.handle.config.mentions, &self.owners);
                let look = &self.handle.config.look;
                let sealed = self
                    .store
                    .seal(&name, MAX_ALERTS_PER_DIGEST, now, |id, alerts| {
                        let link = public_url.map(|u| format!("{u}/v1/digests/{id}"));
                        let mentions = mention::mentions_for(mention_config, owners, alerts);
                        let line = mentions.line();
                        let mut rendered = render(
                            &DigestSpec {
                                robot: &name,
                                id,
                                keyword: keyword.as_deref(),
                                link: link.as_deref(),
                                max_bytes: budget - mention::line_cost(&line),
                                tz: &look.timezone,
                                catch_up,
                                templates: look.templates.as_deref(),
                            },
                            alerts,
                        );
                        if !line.is_empty() {
                            rendered.text = mention::insert_line(&rendered.text, &line);
                        }
                        (rendered, mentions)
                    });
                match sealed {
                    Ok(Some(d)) => {
                        catch_up = None;
                        tracing::debug!(robot = %name, digest = d.id, alerts = d.count(), "sealed");
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

            // 4. Send. The attempt is on disk in the send log before the request leaves, stamped
            // a little ahead: the request must leave before its stamp, so the log never shows a
            // send earlier than it happened, also when read after a crash (the answer's time,
            // which `complete` records, may not reach the disk then). Sealing and the flush take
            // time, so when the flush outlasts the stamp, the send is stamped and flushed again.
            let ahead = (crate::limit::margin(timing.rate_period) / 2).as_millis() as i64;
            let mut stamp = self.clock.now_ms() + ahead;
            guard.record(stamp);
            let recorded = loop {
                let stored = self.clock.stored(&guard.log());
                if let Err(e) = self.store.set_stamped_send_log(&name, &stored, true) {
                    break Err(e);
                }
                let flushed = self.clock.now_ms();
                if flushed <= stamp {
                    break Ok(());
                }
                stamp = flushed + ahead;
                guard.restamp_last(stamp);
            };
            if let Err(e) = recorded {
                self.note_error(format!("store: cannot record the send: {e}"), now);
                self.sleep_ms(1000).await;
                continue;
            }
            self.set_state(State::Sending, now);
            self.update(|s| s.recent_sends = guard.log());
            let Some(outcome) = self.send_unless_shutdown(&digest).await else {
                tracing::warn!(robot = %name, digest = digest.id, "shutdown: abandoned an unanswered send; the digest stays queued and is sent again after the restart");
                break;
            };
            let done = self.clock.now_ms();
            guard.complete(done);
            let _ = self
                .store
                .set_stamped_send_log(&name, &self.clock.stored(&guard.log()), false);
            digest.attempts += 1;

            // 5. Act on the answer.
            let m = &self.handle.metrics;
            m.attempt(&outcome);
            match &outcome {
                Outcome::Ok => {
                    m.sent.increment(1);
                    m.delivered.increment(digest.count());
                    m.per_digest.record(digest.count() as f64);
                    m.latency
                        .record((done - digest.oldest_ms).max(0) as f64 / 1000.0);
                }
                Outcome::Message(_) => m.dead.increment(1),
                _ => {}
            }
            let reason = outcome.reason().map(str::to_string);
            digest.last_error = reason.clone();
            match &outcome {
                Outcome::Ok => {
                    if let Some(since) = trouble_since.take() {
                        catch_up = Some((since, done));
                    }
                    digest.state = DigestState::Sent;
                    digest.sent_ms = Some(done);
                    digest.text = String::new();
                    failures = 0;
                    retry_at = None;
                }
                Outcome::Message(_) => {
                    digest.state = DigestState::Dead;
                    retry_at = None;
                }
                Outcome::Throttled(_, wait) => {
                    trouble_since.get_or_insert(now);
                    let wait = wait.unwrap_or(timing.throttle_backoff);
                    retry_at = Some(done + wait.as_millis() as i64);
                }
                Outcome::Transient(_) => {
                    trouble_since.get_or_insert(now);
                    failures += 1;
                    let d = backoff(
                        failures,
                        timing.retry_initial_backoff,
                        timing.retry_max_backoff,
                        jitter.next(),
                    );
                    retry_at = Some(done + d.as_millis() as i64);
                }
                Outcome::Robot(_) => {
                    trouble_since.get_or_insert(now);
                    retry_at = Some(done + timing.blocked_probe.as_millis() as i64);
                }
            }
            if let Err(e) = self.store.update_digest(&digest) {
                // The digest stays pending on disk: at worst it is sent once more after a restart.
                tracing::error!(robot = %name, digest = digest.id, "cannot record the answer: {e}");
            }
            if let Some(front) = outbox.front_mut() {
                // The next attempt starts from what this one learned (attempts, last error).
                *front = digest.clone();
            }
            match outcome {
                Outcome::Ok => {
                    outbox.pop_front();
                    tracing::info!(robot = %name, digest = digest.id, alerts = digest.count(), attempts = digest.attempts, "delivered");
                    self.update(|s| {
                        s.digests_sent += 1;
                        s.alerts_delivered += digest.count();
                    });
                    self.set_state(State::Idle, done);
                }
                Outcome::Message(r) => {
                    outbox.pop_front();
                    tracing::warn!(robot = %name, digest = digest.id, alerts = digest.count(), "dead-lettered: {r}");
                    self.update(|s| s.dead += 1);
                    self.note_error(r, done);
                }
                Outcome::Throttled(r, wait) => {
                    let pause = wait.unwrap_or(timing.throttle_backoff);
                    tracing::warn!(robot = %name, digest = digest.id, "throttled by the robot, pausing {}: {r}", humantime::format_duration(pause));
                    self.set_state(State::Throttled, done);
                    self.note_error(r, done);
                }
                Outcome::Transient(r) => {
                    tracing::warn!(robot = %name, digest = digest.id, attempt = digest.attempts, "send failed, will retry: {r}");
                    self.set_state(State::Backoff, done);
                    self.note_error(r, done);
                }
                Outcome::Robot(r) => {
                    tracing::error!(robot = %name, digest = digest.id, "robot refuses our messages, blocked until a probe succeeds: {r}");
                    self.set_state(State::Blocked, done);
                    self.note_error(r, done);
                }
            }
            self.update(|s| {
                s.outbox = outbox.len();
                s.recent_sends = guard.log();
                s.next_attempt_ms = retry_at;
            });
        }
    }

    /// Sends, but gives up [`SHUTDOWN_GRACE`] after shutdown begins (`None`). A retiring task
    /// waits for the answer (the request timeout bounds it).
    async fn send_unless_shutdown(&mut self, digest: &DigestRecord) -> Option<Outcome> {
        let mut run = self.run.clone();
        let deadline = async move {
            let _ = run.wait_for(|r| *r == Run::Shutdown).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        };
        tokio::select! {
            outcome = self.provider.send(digest) => Some(outcome),
            _ = deadline => None,
        }
    }

    async fn sleep_ms(&mut self, ms: i64) {
        let d = Duration::from_millis(ms.max(1) as u64);
        tokio::select! {
            _ = tokio::time::sleep(d) => {}
            _ = self.run.changed() => {}
        }
    }

    fn update(&self, f: impl FnOnce(&mut RobotStatus)) {
        f(&mut self.handle.status.lock().expect("status lock"));
    }

    fn set_state(&self, state: State, now: i64) {
        self.update(|s| {
            if s.state != state {
                s.state = state;
                s.since_ms = now;
            }
            if matches!(state, State::Idle | State::Waiting | State::Sending) {
                s.next_attempt_ms = None;
            }
        });
    }

    fn note_error(&self, error: String, now: i64) {
        self.update(|s| {
            s.last_error = Some(error);
            s.last_error_ms = Some(now);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

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
    fn an_alert_from_the_future_counts_as_received_when_first_seen() {
        let mut o = OldestPending::default();
        // An alert of this process: its own time.
        assert_eq!(o.received(1_000, 1_500), 1_000);
        assert_eq!(o.received(1_000, 9_000), 1_000);
        // One stamped an hour ahead: when it was first seen, and it stays so as time passes.
        let ahead = 10_000 + 3_600_000;
        assert_eq!(o.received(ahead, 10_000), 10_000);
        assert_eq!(o.received(ahead, 12_000), 10_000);
        // The next one is measured from when it became the oldest.
        assert_eq!(o.received(ahead + 5, 13_000), 13_000);
        assert_eq!(o.received(14_000, 14_500), 14_000);
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
