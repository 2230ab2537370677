//! Chat robots on loopback, for `sluice demo`: DingTalk, Feishu, WeCom and Slack webhooks on
//! their real URL shapes, each with its platform's signature check, answers, body cap and rate
//! limits (ROBOTS.md §1–6), the minutes and seconds scaled down.
//!
//! What every platform shares lives here: the robots by token, the rolling windows, the mute,
//! the messages kept. A request goes through the same steps on every platform, in this order:
//! the robot exists; its signature holds (where the platform signs); the robot is not muted and
//! every window has room (else the platform's throttle answer, and on DingTalk a mute for
//! `lockout`); the body is a message the platform takes. Then it is kept, and the robot answers
//! as its platform does on success. How a platform reads a request and words each answer is in
//! its own file (`dingtalk.rs`, `feishu.rs`, `wecom.rs`, `slack.rs`).
//!
//! The windows count accepted messages. Throttled and refused requests are counted apart: the
//! demo fails on any of them, so what they would have cost never matters.

mod dingtalk;
mod feishu;
mod slack;
mod wecom;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::post;
use tokio::sync::oneshot;

use super::platform::Platform;

/// At most `limit` messages in any rolling `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub limit: usize,
    pub period: Duration,
}

impl Window {
    pub const fn new(limit: usize, period: Duration) -> Window {
        Window { limit, period }
    }
}

/// A robot's limits: every window held at once; with a `lockout`, the first request over one
/// mutes the robot for that long (DingTalk's 10 minutes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub windows: Vec<Window>,
    pub lockout: Option<Duration>,
}

impl Limits {
    /// The same limits with every duration passed through `f` (the demo's time scale).
    pub fn scaled(&self, f: impl Fn(Duration) -> Duration) -> Limits {
        Limits {
            windows: self
                .windows
                .iter()
                .map(|w| Window::new(w.limit, f(w.period)))
                .collect(),
            lockout: self.lockout.map(&f),
        }
    }

    fn longest(&self) -> Duration {
        self.windows
            .iter()
            .map(|w| w.period)
            .max()
            .unwrap_or_default()
    }
}

/// A message a robot accepted.
#[derive(Debug, Clone)]
pub struct Message {
    /// When it arrived (Unix ms).
    pub at_ms: i64,
    /// Since the simulator started, for rolling-window checks.
    pub at: Duration,
    /// The notification's title (a Feishu post's title; empty where the platform has none).
    pub title: String,
    /// What the group reads: DingTalk's and WeCom's markdown, a Feishu post's paragraphs one a
    /// line, Slack's mrkdwn text.
    pub text: String,
}

/// Why a platform refused a request: its code (Slack: the HTTP status) and its words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Refusal {
    code: i64,
    msg: &'static str,
}

/// What happened to a request, for its platform to word.
enum Verdict {
    Accepted,
    NoRobot,
    Refused(Refusal),
    /// Over a window or muted; the robot takes messages again after this long.
    Throttled(Duration),
}

/// A request as the platforms read it.
struct Request<'a> {
    query: &'a HashMap<String, String>,
    body: &'a [u8],
    now_ms: i64,
}

/// The readable content of an accepted message: its title, and its text.
type Content = (String, String);

struct RobotState {
    platform: Platform,
    secret: Option<String>,
    limits: Limits,
    /// Arrival times of accepted messages within the longest period.
    recent: VecDeque<Instant>,
    muted_until: Option<Instant>,
    messages: Vec<Message>,
    throttled: u64,
    refused: u64,
}

impl RobotState {
    /// Room in every window now, or how long until there is; a breach starts the lockout.
    fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        let longest = self.limits.longest();
        while self
            .recent
            .front()
            .is_some_and(|&t| now.duration_since(t) >= longest)
        {
            self.recent.pop_front();
        }
        if let Some(until) = self.muted_until.filter(|&u| now < u) {
            return Err(until - now);
        }
        for w in &self.limits.windows {
            let inside: Vec<&Instant> = self
                .recent
                .iter()
                .filter(|&&t| now.duration_since(t) < w.period)
                .collect();
            if inside.len() >= w.limit {
                let wait = match self.limits.lockout {
                    Some(lockout) => {
                        self.muted_until = Some(now + lockout);
                        lockout
                    }
                    // The oldest message in the window leaves it first.
                    None => w.period - now.duration_since(*inside[0]),
                };
                return Err(wait);
            }
        }
        Ok(())
    }
}

struct Shared {
    started: Instant,
    robots: Mutex<HashMap<String, RobotState>>,
}

impl Shared {
    fn robots(&self) -> MutexGuard<'_, HashMap<String, RobotState>> {
        self.robots.lock().expect("simulator lock")
    }

    /// Takes a request to `platform`'s robot `token` through the steps in the module header.
    fn receive(&self, platform: Platform, token: &str, req: &Request) -> Verdict {
        let mut robots = self.robots();
        // Read under the lock, so each robot's arrival times are in order.
        let now = Instant::now();
        let Some(robot) = robots.get_mut(token).filter(|r| r.platform == platform) else {
            return Verdict::NoRobot;
        };
        let signed = match (&robot.secret, platform) {
            (Some(secret), Platform::DingTalk) => dingtalk::check_signature(secret, req),
            (Some(secret), Platform::Feishu) => feishu::check_signature(secret, req),
            _ => Ok(()),
        };
        if let Err(refusal) = signed {
            robot.refused += 1;
            return Verdict::Refused(refusal);
        }
        if let Err(wait) = robot.admit(now) {
            robot.throttled += 1;
            return Verdict::Throttled(wait);
        }
        let read = match platform {
            Platform::DingTalk => dingtalk::read(req),
            Platform::Feishu => feishu::read(req),
            Platform::WeCom => wecom::read(req),
            Platform::Slack => slack::read(req),
        };
        let (title, text) = match read {
            Ok(content) => content,
            Err(refusal) => {
                robot.refused += 1;
                return Verdict::Refused(refusal);
            }
        };
        robot.recent.push_back(now);
        robot.messages.push(Message {
            at_ms: req.now_ms,
            at: now.duration_since(self.started),
            title,
            text,
        });
        Verdict::Accepted
    }
}

/// The request's fate in `platform`'s words.
fn reply(platform: Platform, verdict: Verdict) -> Response {
    match platform {
        Platform::DingTalk => dingtalk::reply(verdict),
        Platform::Feishu => feishu::reply(verdict),
        Platform::WeCom => wecom::reply(verdict),
        Platform::Slack => slack::reply(verdict),
    }
}

/// One handler for every route: the platform and the robot's token, from where its URL has it.
fn serve(
    shared: &Shared,
    platform: Platform,
    token: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Response {
    let req = Request {
        query,
        body,
        now_ms: crate::unix_ms(),
    };
    reply(platform, shared.receive(platform, token, &req))
}

type Q = Query<HashMap<String, String>>;

async fn dingtalk_send(State(s): State<Arc<Shared>>, Query(q): Q, body: Bytes) -> Response {
    let token = q.get("access_token").cloned().unwrap_or_default();
    serve(&s, Platform::DingTalk, &token, &q, &body)
}

async fn feishu_hook(
    State(s): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    serve(&s, Platform::Feishu, &id, &HashMap::new(), &body)
}

async fn wecom_send(State(s): State<Arc<Shared>>, Query(q): Q, body: Bytes) -> Response {
    let key = q.get("key").cloned().unwrap_or_default();
    serve(&s, Platform::WeCom, &key, &q, &body)
}

async fn slack_hook(
    State(s): State<Arc<Shared>>,
    Path((team, bot, secret)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let path = format!("{team}/{bot}/{secret}");
    serve(&s, Platform::Slack, &path, &HashMap::new(), &body)
}

pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// Listens on 127.0.0.1 (a free port) and serves until [`stop`](Self::stop) or drop.
    pub async fn start() -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            started: Instant::now(),
            robots: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/robot/send", post(dingtalk_send))
            .route("/open-apis/bot/v2/hook/{id}", post(feishu_hook))
            .route("/cgi-bin/webhook/send", post(wecom_send))
            .route("/services/{team}/{bot}/{secret}", post(slack_hook))
            .with_state(shared.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Simulator {
            addr,
            shared,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Creates a chat group's robot on `platform`, known by `token` (DingTalk's access token,
    /// Feishu's hook id, WeCom's key, Slack's `T…/B…/…` path), held to `limits`. With a
    /// `secret`, it takes only requests signed with it (DingTalk and Feishu).
    pub fn add_robot(&self, platform: Platform, token: &str, secret: Option<&str>, limits: Limits) {
        self.shared.robots().insert(
            token.to_string(),
            RobotState {
                platform,
                secret: secret.map(str::to_string),
                limits,
                recent: VecDeque::new(),
                muted_until: None,
                messages: Vec::new(),
                throttled: 0,
                refused: 0,
            },
        );
    }

    /// The webhook to configure for a robot, on its platform's URL shape (sluice signs it).
    pub fn webhook(&self, platform: Platform, token: &str) -> String {
        let addr = self.addr;
        match platform {
            Platform::DingTalk => format!("http://{addr}/robot/send?access_token={token}"),
            Platform::Feishu => format!("http://{addr}/open-apis/bot/v2/hook/{token}"),
            Platform::WeCom => format!("http://{addr}/cgi-bin/webhook/send?key={token}"),
            Platform::Slack => format!("http://{addr}/services/{token}"),
        }
    }

    /// What the group saw, oldest first.
    pub fn messages(&self, token: &str) -> Vec<Message> {
        self.read(token, |r| r.messages.clone())
    }

    pub fn accepted(&self, token: &str) -> usize {
        self.read(token, |r| r.messages.len())
    }

    /// Requests given the platform's throttle answer (too fast, or while muted).
    pub fn throttled(&self, token: &str) -> u64 {
        self.read(token, |r| r.throttled)
    }

    /// Requests refused for a bad signature, timestamp or body.
    pub fn refused(&self, token: &str) -> u64 {
        self.read(token, |r| r.refused)
    }

    /// For each of the robot's windows, the most messages accepted within any rolling period
    /// of it (the limit held if each is at most its window's `limit`).
    pub fn busiest(&self, token: &str) -> Vec<usize> {
        self.read(token, |r| {
            let times: Vec<Duration> = r.messages.iter().map(|m| m.at).collect();
            r.limits
                .windows
                .iter()
                .map(|w| busiest_in(&times, w.period))
                .collect()
        })
    }

    fn read<T: Default>(&self, token: &str, f: impl FnOnce(&RobotState) -> T) -> T {
        self.shared.robots().get(token).map(f).unwrap_or_default()
    }

    /// Stops listening and waits for requests in flight.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Simulator {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// The most of `times` (in order) within any rolling `period`.
fn busiest_in(times: &[Duration], period: Duration) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= period {
            start += 1;
        }
        most = most.max(end + 1 - start);
    }
    most
}

#[cfg(test)]
mod tests;
