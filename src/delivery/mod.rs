//! One task per lane (a robot, or a pool of robots): window → permit → seal → render → send →
//! classify → next. The loop is [`lane`]'s, the same for both; [`RobotTask`] and [`PoolTask`]
//! are how the supervisor starts one.
//!
//! The task owns everything about its lane that changes: the rate guards, the outbox of sealed
//! digests, the retry timers. Nothing is shared with other robots, so one that is blocked,
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

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::alert::Alert;
use crate::config::{Robot, Timing};
use crate::digest::DigestSpec;
use crate::limit::{Clock, RateGuard};
use crate::mention::{self, Mention};
use crate::message::Prepared;
use crate::metrics::RobotMetrics;
use crate::provider::Provider;
use crate::store::{DigestRecord, Sealed, Store};

pub mod decide;
mod lane;
pub mod pool;
pub mod status;
mod test_message;

pub use decide::backoff;
pub use pool::{PoolMember, PoolTask};
pub use status::{QuotaStatus, RobotStatus, State};
pub use test_message::{TestRefused, TestSent};

/// Finds a running lane's handle by name (the supervisor's current ones), for a robot that
/// hands its queue to its `fallback`.
pub type Lanes = Arc<dyn Fn(&str) -> Option<RobotHandle> + Send + Sync>;

/// Most alerts one digest covers, which bounds the memory a seal needs. A larger backlog becomes
/// several digests.
pub const MAX_ALERTS_PER_DIGEST: u64 = 100_000;

/// How long an in-flight POST may still run after shutdown starts before it is abandoned (the
/// digest then stays queued and is sent again after the restart).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The handle the HTTP layer keeps for each robot.
#[derive(Clone)]
pub struct RobotHandle {
    pub config: Robot,
    pub wake: Arc<Notify>,
    /// Written only through the methods below (the task's own, and the few facts others
    /// learn first: duplicates at ingest, replays, a robot that cannot start).
    status: Arc<Mutex<RobotStatus>>,
    pub metrics: RobotMetrics,
    /// Lines for this lane's next digest from robots it stood in for (`fallback`): which robot
    /// and why. Kept in memory only: after a restart the moved alerts go out unmarked.
    stand_in: Arc<Mutex<Vec<String>>>,
    /// Test messages asked of this lane's task ([`RobotHandle::send_test`]).
    tests: Arc<test_message::Door>,
}

impl RobotHandle {
    pub fn new(config: Robot, status: RobotStatus, metrics: RobotMetrics) -> RobotHandle {
        RobotHandle {
            config,
            wake: Arc::new(Notify::new()),
            status: Arc::new(Mutex::new(status)),
            metrics,
            stand_in: Arc::default(),
            tests: Arc::default(),
        }
    }

    /// The same robot under a new config, keeping its status and counters (a reload).
    pub fn reconfigured(&self, config: Robot) -> RobotHandle {
        RobotHandle {
            config,
            ..self.clone()
        }
    }

    pub fn status(&self) -> RobotStatus {
        self.status.lock().expect("status lock").clone()
    }

    fn update(&self, f: impl FnOnce(&mut RobotStatus)) {
        f(&mut self.status.lock().expect("status lock"));
    }

    /// This lane now carries another robot's queue: its next digest says so (`note`, once).
    pub fn stand_in(&self, note: String) {
        let mut notes = self.stand_in.lock().expect("stand-in lock");
        if !notes.contains(&note) {
            notes.push(note);
        }
    }

    /// The stand-in lines for the digest being sealed now.
    pub(crate) fn take_stand_in(&self) -> Vec<String> {
        std::mem::take(&mut *self.stand_in.lock().expect("stand-in lock"))
    }

    /// Ingest acknowledged `n` repeats of dedup keys already queued.
    pub fn count_duplicates(&self, n: u64) {
        self.update(|s| s.duplicates_dropped += n);
    }

    /// How many of its digests are dead (read from the store at start).
    pub fn set_dead(&self, dead: u64) {
        self.update(|s| s.dead = dead);
    }

    /// One of its dead digests was replayed.
    pub fn replayed_dead(&self) {
        self.update(|s| s.dead = s.dead.saturating_sub(1));
    }

    /// Cluster mode: another node sends for this lane; it shows as `remote`.
    pub fn remote(&self, now_ms: i64) {
        self.update(|s| {
            if s.state != State::Remote {
                s.state = State::Remote;
                s.since_ms = now_ms;
            }
            s.next_attempt_ms = None;
        });
    }

    /// The robot cannot be started (`why`): it shows as blocked with the reason.
    pub fn cannot_start(&self, why: String, now_ms: i64) {
        self.update(|s| {
            if s.state != State::Blocked {
                s.state = State::Blocked;
                s.since_ms = now_ms;
            }
            s.last_error = Some(why);
            s.last_error_ms = Some(now_ms);
        });
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
    pub store: Arc<dyn Store>,
    pub provider: Provider,
    pub clock: Clock,
    pub run: watch::Receiver<Run>,
    pub public_url: Option<String>,
    /// `[owners]` from the config, for mentions.
    pub owners: Arc<BTreeMap<String, BTreeMap<String, Vec<String>>>>,
    /// Digests sealed before a restart and not yet delivered, oldest first.
    pub outbox: Vec<DigestRecord>,
    /// The other lanes, for the fallback.
    pub lanes: Lanes,
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

/// What sealing a digest needs: the queue it is sealed from, the platform it is rendered for
/// and the provider that prepares its message (a robot's own, or a pool member's), and how the
/// destination's digests look and whom they mention (`config`).
pub(crate) struct Sealing<'a> {
    pub(crate) name: &'a str,
    pub(crate) target: crate::provider::Target<'a>,
    pub(crate) provider: &'a Provider,
    pub(crate) config: &'a Robot,
    pub(crate) owners: &'a BTreeMap<String, BTreeMap<String, Vec<String>>>,
    pub(crate) public_url: Option<&'a str>,
    pub(crate) catch_up: Option<(i64, i64)>,
    /// Lines above the footer: a quota warning, stand-in notes.
    pub(crate) lines: Vec<String>,
}

/// The body a front door kept of a message that cannot be merged (a DingTalk feedCard, a
/// Feishu image, a WeCom news card), if `alert` carries one for a robot of `platform`. One that
/// came for another platform's robots means nothing here: it is an ordinary alert line (and so
/// is a body that is not a JSON object, which no platform takes). So is one for a robot with
/// keywords: a feedCard or an image has no text for the keyword check, and the platform's
/// refusal would block the robot instead of refusing one message (see [`Sealing::seal`]).
fn passthrough<'a>(alert: &'a Alert, platform: &str) -> Option<&'a serde_json::Value> {
    let x = alert.extra.as_deref()?;
    x.raw
        .as_ref()
        .filter(|raw| raw.is_object() && x.platform == platform)
}

impl Sealing<'_> {
    /// Digest `id` of the first of `alerts`: rendered in the target's dialect with its
    /// mentions, and its message prepared, which every try sends. A passthrough message is
    /// sent alone, in arrival order: the digest stops before the first one, or, when it comes
    /// first, is that one alone ([`Sealed::covers`]).
    pub(crate) fn seal(&self, id: u64, alerts: &[Alert]) -> Sealed {
        let platform = self.target.kind.as_str();
        let alone =
            |a: &Alert| self.target.keywords.is_empty() && passthrough(a, platform).is_some();
        match alerts.iter().position(alone) {
            Some(0) => self.seal_alone(&alerts[0], platform),
            Some(n) => Sealed {
                covers: Some(n as u64),
                ..self.seal_digest(id, &alerts[..n])
            },
            None => self.seal_digest(id, alerts),
        }
    }

    /// A passthrough message: its body as it came (the provider signs each try), titled as
    /// the alert; no footer, no mention line, no notes.
    fn seal_alone(&self, alert: &Alert, platform: &str) -> Sealed {
        let body = passthrough(alert, platform).cloned().unwrap_or_default();
        Sealed {
            message: Prepared {
                title: alert.title.clone(),
                text: alert.text.clone().unwrap_or_else(|| alert.title.clone()),
                body,
            },
            counts: crate::digest::Counts::of(std::slice::from_ref(alert)),
            listed: 1,
            covers: Some(1),
            passthrough: true,
        }
    }

    fn seal_digest(&self, id: u64, alerts: &[Alert]) -> Sealed {
        let c = self.config;
        let link = self.public_url.map(|u| format!("{u}/v1/digests/{id}"));
        let platform = self.target.kind.as_str();
        let mentions = mention::mentions_for(&c.mentions, platform, self.owners, alerts);
        let rendered = crate::provider::render_with_lines(
            &self.target,
            DigestSpec {
                robot: self.name,
                id,
                keyword: c.keywords.first().map(String::as_str),
                link: link.as_deref(),
                max_bytes: 0,
                tz: &c.look.timezone,
                catch_up: self.catch_up,
                templates: c.look.templates.as_deref(),
            },
            alerts,
            &mentions,
            &self.lines,
        );
        Sealed {
            counts: rendered.counts,
            listed: rendered.listed as u64,
            message: self
                .provider
                .prepare(id, rendered.title, rendered.text, &mentions),
            covers: None,
            passthrough: false,
        }
    }
}

impl RobotTask {
    /// Runs the robot's lane: one member, the robot itself.
    pub async fn run(self) {
        let lane = lane::Lane {
            handle: self.handle.clone(),
            store: self.store,
            clock: self.clock,
            run: self.run,
            public_url: self.public_url,
            owners: self.owners,
            lanes: self.lanes,
        };
        let member = PoolMember {
            handle: self.handle,
            provider: self.provider,
        };
        lane.run(vec![member], self.outbox).await;
    }
}

/// `name`'s rate guard, from its persisted send log, brought into this process's clock once,
/// whatever the wall clock did since the log was written; the newest send counts as late as its
/// answer could have come.
async fn load_guard(store: &dyn Store, clock: Clock, name: &str, timing: &Timing) -> RateGuard {
    let log = match store.send_log(name).await {
        Ok(stored) => crate::limit::resume(
            &stored,
            clock.reading(),
            timing.request_timeout.as_millis() as i64,
        ),
        Err(e) => {
            // Without the log we cannot prove the limit; assume a full period of sends.
            tracing::error!(robot = %name, "cannot read the send log ({e}); assuming the limit was just used up");
            let most = timing.windows().iter().map(|w| w.limit).max().unwrap_or(1);
            vec![clock.now_ms(); most as usize]
        }
    };
    RateGuard::with_windows(&timing.windows(), log)
}

/// Puts a send in `name`'s log, on disk, before the request leaves, stamped a little ahead:
/// the request must leave before its stamp, so the log never shows a send earlier than it
/// happened, also when read after a crash (the answer's time, which `complete` records, may not
/// reach the disk then). Sealing and the flush take time, so when the flush outlasts the stamp,
/// the send is stamped and flushed again.
async fn record_send(
    store: &dyn Store,
    clock: Clock,
    name: &str,
    guard: &mut RateGuard,
    timing: &Timing,
) -> Result<(), crate::store::StoreError> {
    let ahead = (crate::limit::margin(timing.rate_period) / 2).as_millis() as i64;
    let mut stamp = clock.now_ms() + ahead;
    guard.record(stamp);
    loop {
        store
            .set_send_log(name, &clock.stored(&guard.log()))
            .await?;
        let flushed = clock.now_ms();
        if flushed <= stamp {
            return Ok(());
        }
        stamp = flushed + ahead;
        guard.restamp_last(stamp);
    }
}

/// What to send for `digest`. A record sealed before messages were prepared at sealing gets
/// its message prepared now, from the title, text and mentions it kept.
fn message_of(provider: &Provider, digest: &DigestRecord) -> Prepared {
    match &digest.unprepared {
        None => digest.message(),
        Some(mentions) => {
            let mentions: Mention = serde_json::from_value(mentions.clone()).unwrap_or_default();
            provider.prepare(
                digest.id,
                digest.title.clone(),
                digest.text.clone(),
                &mentions,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{MsgType, ProviderKind, Target};

    fn dingtalk() -> Provider {
        let target = Target {
            name: "ops",
            kind: ProviderKind::DingTalk,
            webhook: Some("http://127.0.0.1:9/robot/send?access_token=t"),
            secret: None,
            keywords: &[],
            msgtype: MsgType::Markdown,
            request_timeout: Duration::from_secs(1),
            hook: None,
        };
        let client = crate::provider::http_client().unwrap();
        Provider::new(&target, None, Ok(&client)).unwrap()
    }

    /// A digest record written before messages were prepared at sealing (title, text and
    /// mentions, no body) still loads, and is sent as it would have been then.
    #[test]
    fn a_record_from_before_prepared_messages_is_sent_as_then() {
        let old = r#"{"id":7,"robot":"ops","first_seq":0,"end_seq":2,
            "counts":{"critical":2,"error":0,"warning":0,"info":0,"firing":2,"resolved":0},
            "listed":2,"state":"pending","attempts":1,"sealed_ms":5,"oldest_ms":4,
            "title":"ops: 2 critical","text":"**ops**\n\n@13800000000",
            "mentions":{"mobiles":["13800000000"]}}"#;
        let d: DigestRecord = serde_json::from_str(old).unwrap();
        assert!(d.body.is_null());
        let m = message_of(&dingtalk(), &d);
        assert_eq!(m.title, "ops: 2 critical");
        let mentions = Mention {
            mobiles: vec!["13800000000".into()],
            ..Mention::default()
        };
        assert_eq!(
            m.body,
            crate::provider::dingtalk::message_body(&d.title, &d.text, &mentions)
        );
        assert_eq!(m.body["at"]["atMobiles"][0], "13800000000", "{}", m.body);
    }

    /// A new record keeps its prepared body and no longer writes the old mentions field.
    #[test]
    fn a_new_record_keeps_its_prepared_body() {
        let provider = dingtalk();
        let message = provider.prepare(3, "t".into(), "x".into(), &Mention::default());
        let sealed = Sealed {
            message: message.clone(),
            counts: Default::default(),
            listed: 0,
            covers: None,
            passthrough: false,
        };
        let d = DigestRecord::sealed(3, "ops", (0, 1), sealed, 10, 9);
        let json = serde_json::to_value(&d).unwrap();
        assert!(json.get("mentions").is_none(), "{json}");
        assert_eq!(json["body"]["msgtype"], "markdown", "{json}");
        let back: DigestRecord = serde_json::from_value(json).unwrap();
        assert_eq!(message_of(&provider, &back), message);
    }

    #[test]
    fn only_an_object_body_for_the_robots_platform_passes_through() {
        let mut a = Alert {
            fingerprint: "f".into(),
            title: "news".into(),
            text: None,
            severity: crate::alert::Severity::Info,
            status: crate::alert::Status::Firing,
            labels: Default::default(),
            source: None,
            time_ms: None,
            ends_ms: None,
            received_ms: 0,
            extra: None,
        };
        assert!(passthrough(&a, "dingtalk").is_none());
        let card = serde_json::json!({"msgtype": "feedCard", "feedCard": {"links": []}});
        let raw = |platform: &str, raw: serde_json::Value| crate::alert::Extra {
            platform: platform.into(),
            raw: Some(raw),
            ..Default::default()
        };
        a.extra = Some(Box::new(raw("dingtalk", card.clone())));
        assert_eq!(passthrough(&a, "dingtalk"), Some(&card));
        assert!(passthrough(&a, "feishu").is_none());
        a.extra = Some(Box::new(raw(
            "dingtalk",
            serde_json::json!(["not", "a", "body"]),
        )));
        assert!(passthrough(&a, "dingtalk").is_none());
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
}
