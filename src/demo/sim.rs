//! A DingTalk custom robot on loopback, for `sluice demo`: the same URL, signature check, answers
//! and rate limit as the real one (ROBOTS.md §1), with the minute and the lockout scaled down.
//!
//! Per access token it checks, in this order: the token exists (else 300005), the 加签 timestamp
//! is within an hour of now and the signature matches (else 310000), the robot is not muted and
//! has accepted fewer than `limit` messages in the rolling `period` (else 130101, and the robot is
//! muted for `lockout`, as DingTalk does for 10 minutes), the body is a markdown message of at
//! most 20 000 bytes (else 400105 / 460101). Then it answers `{"errcode":0,"errmsg":"ok"}` and
//! keeps the message, so the demo can show what the group saw and prove the limit held.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::routing::post;
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::provider::dingtalk::MAX_BODY as DINGTALK_MAX_BODY;
use crate::provider::dingtalk::sign;

/// DingTalk rejects a signature whose timestamp is more than an hour off.
const TIMESTAMP_TOLERANCE_MS: i64 = 3_600_000;

/// The robot's limit: `limit` messages in any rolling `period`; the next one is answered 130101
/// and mutes the robot for `lockout`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub limit: usize,
    pub period: Duration,
    pub lockout: Duration,
}

/// A message the robot accepted.
#[derive(Debug, Clone)]
pub struct Message {
    /// When it arrived (Unix ms).
    pub at_ms: i64,
    /// Since the simulator started, for rolling-window checks.
    pub at: Duration,
    pub title: String,
    pub text: String,
}

#[derive(Default)]
struct RobotState {
    secret: Option<String>,
    /// Arrival times of accepted messages within the last period.
    recent: VecDeque<Instant>,
    muted_until: Option<Instant>,
    messages: Vec<Message>,
    throttled: u64,
    refused: u64,
}

struct Shared {
    limits: Limits,
    started: Instant,
    robots: Mutex<HashMap<String, RobotState>>,
}

impl Shared {
    fn robots(&self) -> MutexGuard<'_, HashMap<String, RobotState>> {
        self.robots.lock().expect("simulator lock")
    }
}

pub struct Simulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Simulator {
    /// Listens on 127.0.0.1 (a free port) and serves until [`stop`](Self::stop) or drop.
    pub async fn start(limits: Limits) -> std::io::Result<Simulator> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            limits,
            started: Instant::now(),
            robots: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/robot/send", post(robot_send))
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

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// Creates a robot (a chat group's custom robot) with its access token and 加签 secret.
    pub fn add_robot(&self, token: &str, secret: Option<&str>) {
        self.shared.robots().insert(
            token.to_string(),
            RobotState {
                secret: secret.map(str::to_string),
                ..RobotState::default()
            },
        );
    }

    /// The webhook to configure for a robot (sluice adds `timestamp` and `sign`).
    pub fn webhook(&self, token: &str) -> String {
        format!("http://{}/robot/send?access_token={token}", self.addr)
    }

    /// What the group saw, oldest first.
    pub fn messages(&self, token: &str) -> Vec<Message> {
        self.read(token, |r| r.messages.clone())
    }

    pub fn accepted(&self, token: &str) -> usize {
        self.read(token, |r| r.messages.len())
    }

    /// Requests answered 130101 (too fast, or while muted).
    pub fn throttled(&self, token: &str) -> u64 {
        self.read(token, |r| r.throttled)
    }

    /// Requests refused for a bad signature, timestamp or body.
    pub fn refused(&self, token: &str) -> u64 {
        self.read(token, |r| r.refused)
    }

    /// The most messages accepted within any rolling period (the limit held if ≤ `limit`).
    pub fn busiest_period(&self, token: &str) -> usize {
        let period = self.shared.limits.period;
        self.read(token, |r| {
            let times: Vec<Duration> = r.messages.iter().map(|m| m.at).collect();
            let mut most = 0;
            let mut start = 0;
            for end in 0..times.len() {
                while times[end] - times[start] >= period {
                    start += 1;
                }
                most = most.max(end + 1 - start);
            }
            most
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

fn answer(errcode: i64, errmsg: &str) -> axum::Json<Value> {
    axum::Json(json!({"errcode": errcode, "errmsg": errmsg}))
}

async fn robot_send(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> axum::Json<Value> {
    let limits = shared.limits;
    let mut robots = shared.robots();
    // Read under the lock, so each robot's arrival times are in order.
    let now = Instant::now();
    let now_ms = crate::unix_ms();
    let token = query.get("access_token").map_or("", String::as_str);
    let Some(robot) = robots.get_mut(token) else {
        return answer(300005, "token is not exist");
    };

    if let Some(secret) = &robot.secret {
        // Query already undid the URL-encoding once; a sign encoded twice, or not at all, fails
        // here as it does at DingTalk.
        let ts = query.get("timestamp").and_then(|t| t.parse::<i64>().ok());
        let Some(ts) = ts.filter(|ts| (now_ms - ts).abs() <= TIMESTAMP_TOLERANCE_MS) else {
            robot.refused += 1;
            return answer(310000, "invalid timestamp");
        };
        if query.get("sign").map(String::as_str) != Some(sign(secret, ts).as_str()) {
            robot.refused += 1;
            return answer(310000, "sign not match");
        }
    }

    while robot
        .recent
        .front()
        .is_some_and(|&t| now.duration_since(t) >= limits.period)
    {
        robot.recent.pop_front();
    }
    let muted = robot.muted_until.is_some_and(|until| now < until);
    if muted || robot.recent.len() >= limits.limit {
        if !muted {
            robot.muted_until = Some(now + limits.lockout);
        }
        robot.throttled += 1;
        return answer(130101, "send too fast, exceed 20 times per minute");
    }

    if body.len() > DINGTALK_MAX_BODY {
        robot.refused += 1;
        return answer(460101, "message too long, exceed 20000 bytes");
    }
    let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |name: &str| message["markdown"][name].as_str().map(str::to_string);
    let (Some("markdown"), Some(title), Some(text)) =
        (message["msgtype"].as_str(), field("title"), field("text"))
    else {
        robot.refused += 1;
        return answer(400105, "不支持的消息类型");
    };
    robot.recent.push_back(now);
    robot.messages.push(Message {
        at_ms: now_ms,
        at: now.duration_since(shared.started),
        title,
        text,
    });
    answer(0, "ok")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "SEC0123456789abcdef";

    async fn post(sim: &Simulator, token: &str, ts: i64, sign: &str, text: &str) -> Value {
        let body = json!({"msgtype": "markdown", "markdown": {"title": "t", "text": text}});
        reqwest::Client::new()
            .post(sim.webhook(token))
            .query(&[("timestamp", ts.to_string()), ("sign", sign.to_string())])
            .json(&body)
            .send()
            .await
            .expect("POST")
            .json()
            .await
            .expect("JSON answer")
    }

    async fn post_signed(sim: &Simulator, token: &str, text: &str) -> i64 {
        let ts = crate::unix_ms();
        post(sim, token, ts, &sign(SECRET, ts), text).await["errcode"]
            .as_i64()
            .expect("errcode")
    }

    fn sim_limits(period_ms: u64, lockout_ms: u64) -> Limits {
        Limits {
            limit: 20,
            period: Duration::from_millis(period_ms),
            lockout: Duration::from_millis(lockout_ms),
        }
    }

    #[tokio::test]
    async fn a_bad_signature_or_stale_timestamp_gets_310000() {
        let sim = Simulator::start(sim_limits(60_000, 600_000)).await.unwrap();
        sim.add_robot("tok", Some(SECRET));
        let ts = crate::unix_ms();

        let wrong_secret = post(&sim, "tok", ts, &sign("SECother", ts), "x").await;
        assert_eq!(wrong_secret["errcode"], 310000);
        assert_eq!(wrong_secret["errmsg"], "sign not match");

        let stale = ts - 2 * TIMESTAMP_TOLERANCE_MS;
        let old = post(&sim, "tok", stale, &sign(SECRET, stale), "x").await;
        assert_eq!(old["errcode"], 310000);
        assert_eq!(old["errmsg"], "invalid timestamp");

        let unknown = post(&sim, "nope", ts, &sign(SECRET, ts), "x").await;
        assert_eq!(unknown["errcode"], 300005);

        assert_eq!(
            post(&sim, "tok", ts, &sign(SECRET, ts), "x").await["errcode"],
            0
        );
        assert_eq!(sim.refused("tok"), 2);
        assert_eq!(sim.accepted("tok"), 1);
        assert_eq!(sim.messages("tok")[0].text, "x");
        sim.stop().await;
    }

    #[tokio::test]
    async fn the_21st_message_in_a_period_gets_130101_and_mutes_the_robot() {
        let sim = Simulator::start(sim_limits(60_000, 600_000)).await.unwrap();
        sim.add_robot("tok", Some(SECRET));
        for i in 0..20 {
            assert_eq!(
                post_signed(&sim, "tok", &format!("m{i}")).await,
                0,
                "message {i}"
            );
        }
        assert_eq!(post_signed(&sim, "tok", "m20").await, 130101);
        assert_eq!(post_signed(&sim, "tok", "m21").await, 130101);
        assert_eq!(sim.accepted("tok"), 20);
        assert_eq!(sim.throttled("tok"), 2);
        assert_eq!(sim.busiest_period("tok"), 20);
        sim.stop().await;
    }

    #[tokio::test]
    async fn a_muted_robot_accepts_again_after_the_lockout() {
        // 2 a second, muted 2 s: wide margins for a busy machine.
        let sim = Simulator::start(Limits {
            limit: 2,
            period: Duration::from_secs(1),
            lockout: Duration::from_secs(2),
        })
        .await
        .unwrap();
        sim.add_robot("tok", Some(SECRET));
        assert_eq!(post_signed(&sim, "tok", "1").await, 0);
        assert_eq!(post_signed(&sim, "tok", "2").await, 0);
        assert_eq!(post_signed(&sim, "tok", "too fast").await, 130101);
        // The period is over, but the lockout is not.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        assert_eq!(post_signed(&sim, "tok", "muted").await, 130101);
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        assert_eq!(post_signed(&sim, "tok", "back").await, 0);
        assert_eq!(sim.throttled("tok"), 2);
        assert_eq!(sim.accepted("tok"), 3);
        sim.stop().await;
    }

    #[tokio::test]
    async fn sluice_s_own_dingtalk_sender_is_accepted() {
        let sim = Simulator::start(sim_limits(60_000, 600_000)).await.unwrap();
        sim.add_robot("tok", Some(SECRET));
        let text = format!(
            r#"
            [robots.r]
            provider = "dingtalk"
            webhook = "{}"
            secret = "{SECRET}"
            "#,
            sim.webhook("tok")
        );
        let config = crate::config::Config::parse(&text, "test", &|_| None).unwrap();
        let robot = &config.robots["r"];
        let client = crate::provider::http_client().unwrap();
        let provider = crate::provider::Provider::new(&robot.target(), None, Ok(&client)).unwrap();
        assert_eq!(
            provider.ping(&robot.target()).await,
            crate::provider::Outcome::Ok
        );
        assert!(
            sim.messages("tok")[0]
                .text
                .contains("sluice can reach robot")
        );
        sim.stop().await;
    }
}
