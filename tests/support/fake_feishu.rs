//! A fake Feishu / Lark custom bot (自定义机器人) webhook server for integration tests.
//!
//! It reproduces what sluice depends on, as strictly as ROBOTS.md §4 allows, with its own code
//! (its own HMAC, its own limits, its own reading of the bodies), independent of sluice's:
//!
//! * `POST /open-apis/bot/v2/hook/<id>` with a JSON body, answered
//!   `{"code":N,"msg":"…","data":{}}` (a success also with `StatusCode`/`StatusMessage`);
//! * the signature check (timestamp in seconds within an hour of the fake's clock, `sign` =
//!   base64 of HMAC-SHA256 keyed with `"{timestamp}\n{secret}"` over nothing) → 19021, the IP
//!   allow-list → 19022, the keyword filter over text and title values only (never `href`) →
//!   19024, the 20 000-byte body limit and malformed bodies → 9499 with HTTP 400;
//! * both rate windows at once (Feishu: 5 a second and 100 a minute; tests scale them, e.g. 5 per
//!   100 ms and 100 per 2 s), counting **every** request that reaches a known bot, refused ones
//!   included, and answering 11232 with HTTP 200 past either limit.
//!
//! Accepted messages are recorded with their text as a reader sees it (a post's paragraphs
//! joined by line breaks, a card's markdown) and the people they mention, every request with
//! its time and answer. Timed with [`Instant`] on the real clock: do not use it under tokio's
//! paused clock.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The webhook path before the bot's id.
pub const HOOK_PATH: &str = "/open-apis/bot/v2/hook/";
/// Bad request: malformed JSON, an unknown `msg_type`, a body over [`MAX_BODY_BYTES`].
pub const CODE_BAD_REQUEST: i64 = 9499;
/// The signature is wrong or its timestamp more than an hour off.
pub const CODE_SIGN: i64 = 19021;
/// The sender's IP is not on the bot's allow-list.
pub const CODE_IP: i64 = 19022;
/// No keyword in the message's text or title values.
pub const CODE_KEYWORDS: i64 = 19024;
/// Over the rate limit.
pub const CODE_FREQUENCY: i64 = 11232;
/// An id that names no bot.
pub const CODE_NO_BOT: i64 = 19001;

/// The largest request body the fake accepts: Feishu documents 20 KB; the strict reading.
pub const MAX_BODY_BYTES: usize = 20_000;
/// How far a signed request's timestamp may be from the fake's clock.
pub const TIMESTAMP_TOLERANCE_S: i64 = 3600;

/// A bot's two rolling windows, both held at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub burst: usize,
    pub burst_period: Duration,
    pub rate: usize,
    pub rate_period: Duration,
}

impl Default for Limits {
    /// Feishu's: 5 a second and 100 a minute.
    fn default() -> Self {
        Limits {
            burst: 5,
            burst_period: Duration::from_secs(1),
            rate: 100,
            rate_period: Duration::from_secs(60),
        }
    }
}

/// A message the fake answered with code 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub at: Instant,
    /// `post`'s title (empty for a card).
    pub title: String,
    /// What a reader sees: a post's paragraphs joined by `\n` (an `a` element as its text, an
    /// `at` element as `@<user_id>`), a card's `lark_md` markdown.
    pub text: String,
    /// Whom it mentions: a post's `at` elements, a card's `<at id=…>`, in order.
    pub mentions: Vec<String>,
    /// The request body's size in bytes.
    pub bytes: usize,
    pub body: Value,
}

/// One request that reached a known bot, whatever its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub at: Instant,
    pub code: i64,
    pub http_status: u16,
}

/// A bot's security settings.
#[derive(Debug, Clone, Default)]
struct Bot {
    secret: Option<String>,
    keywords: Vec<String>,
    allowed_ips: Option<Vec<IpAddr>>,
}

#[derive(Debug, Default)]
struct BotState {
    bot: Bot,
    /// Arrivals counted by the windows, oldest first, trimmed to the longer period.
    arrivals: VecDeque<Instant>,
    requests: Vec<Request>,
    accepted: Vec<Accepted>,
    throttled: usize,
}

struct Shared {
    limits: Limits,
    bots: Mutex<HashMap<String, BotState>>,
}

impl Shared {
    fn bots(&self) -> MutexGuard<'_, HashMap<String, BotState>> {
        self.bots.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake Feishu on `127.0.0.1`; clones share one server.
#[derive(Clone)]
pub struct FakeFeishu {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

/// Feishu's signature: base64(HMAC-SHA256(key = "{timestamp_s}\n{secret}", message = empty)).
pub fn feishu_sign(secret: &str, timestamp_s: i64) -> String {
    let key = format!("{timestamp_s}\n{secret}");
    let mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.as_bytes()).expect("any key length");
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn unix_s() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The most of `times` in one half-open window `[t, t + window)`, over all `t`.
pub fn max_in_window_of(times: &[Instant], window: Duration) -> usize {
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    let mut best = 0;
    let mut end = 0;
    for (start, &first) in sorted.iter().enumerate() {
        end = end.max(start);
        while end < sorted.len() && sorted[end].duration_since(first) < window {
            end += 1;
        }
        best = best.max(end - start);
    }
    best
}

fn answer(status: StatusCode, code: i64, msg: &str) -> Response {
    let body = if code == 0 {
        json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
    } else {
        json!({"code": code, "data": {}, "msg": msg})
    };
    (status, axum::Json(body)).into_response()
}

impl FakeFeishu {
    /// Starts the fake on `127.0.0.1` with a port of the system's choosing.
    pub async fn start(limits: Limits) -> FakeFeishu {
        let shared = Arc::new(Shared {
            limits,
            bots: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/open-apis/bot/v2/hook/{id}", post(hook))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("fake feishu: cannot listen on 127.0.0.1");
        let addr = listener.local_addr().expect("fake feishu: no address");
        tokio::spawn(async move {
            let app = app.into_make_service_with_connect_info::<SocketAddr>();
            let _ = axum::serve(listener, app).await;
        });
        FakeFeishu { addr, shared }
    }

    /// Creates (or reconfigures) the bot `id`: with `secret` it demands signed requests, with
    /// `keywords` it takes only messages whose text or title holds one.
    pub fn add_bot(&self, id: &str, secret: Option<&str>, keywords: &[&str]) {
        let mut bots = self.shared.bots();
        let st = bots.entry(id.to_string()).or_default();
        st.bot.secret = secret.map(str::to_string);
        st.bot.keywords = keywords.iter().map(|k| k.to_string()).collect();
    }

    /// Takes requests for `id` only from these addresses.
    pub fn allow_ips(&self, id: &str, ips: &[IpAddr]) {
        let mut bots = self.shared.bots();
        bots.entry(id.to_string()).or_default().bot.allowed_ips = Some(ips.to_vec());
    }

    pub fn webhook(&self, id: &str) -> String {
        format!("http://{}{HOOK_PATH}{id}", self.addr)
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    fn read<T>(&self, id: &str, default: T, f: impl FnOnce(&BotState) -> T) -> T {
        self.shared.bots().get(id).map_or(default, f)
    }

    pub fn accepted(&self, id: &str) -> Vec<Accepted> {
        self.read(id, Vec::new(), |st| st.accepted.clone())
    }

    pub fn requests(&self, id: &str) -> Vec<Request> {
        self.read(id, Vec::new(), |st| st.requests.clone())
    }

    /// Requests answered 11232 because a window was full.
    pub fn throttled(&self, id: &str) -> usize {
        self.read(id, 0, |st| st.throttled)
    }

    /// The most requests for `id` (any answer) in one window of `window`.
    pub fn max_in_window(&self, id: &str, window: Duration) -> usize {
        let times: Vec<Instant> = self.requests(id).iter().map(|r| r.at).collect();
        max_in_window_of(&times, window)
    }

    /// Polls [`accepted`](Self::accepted) until `f` holds; panics after `timeout`.
    pub async fn wait_for<F: Fn(&[Accepted]) -> bool>(
        &self,
        id: &str,
        timeout: Duration,
        f: F,
    ) -> Vec<Accepted> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted(id);
            if f(&accepted) {
                return accepted;
            }
            if Instant::now() >= deadline {
                let codes: Vec<i64> = self.requests(id).iter().map(|r| r.code).collect();
                panic!(
                    "fake feishu: condition not met for bot {id:?} within {timeout:?}: {} accepted; answers {codes:?}",
                    accepted.len()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn hook(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let limits = shared.limits;
    let mut bots = shared.bots();
    let Some(st) = bots.get_mut(&id) else {
        return answer(
            StatusCode::NOT_FOUND,
            CODE_NO_BOT,
            "param invalid: incoming webhook access token invalid",
        );
    };
    let now = Instant::now();
    let (status, code, msg, accepted) = st.check(&limits, now, peer.ip(), &body);
    st.requests.push(Request {
        at: now,
        code,
        http_status: status.as_u16(),
    });
    if code == CODE_FREQUENCY {
        st.throttled += 1;
    }
    if let Some(a) = accepted {
        st.accepted.push(a);
    }
    answer(status, code, msg)
}

type Verdict = (StatusCode, i64, &'static str, Option<Accepted>);

impl BotState {
    /// Feishu's checks, in the order the fake assumes: the windows (every request counts), the
    /// body, the IP, the signature, the message, the keywords.
    fn check(&mut self, limits: &Limits, now: Instant, ip: IpAddr, body: &[u8]) -> Verdict {
        let longest = limits.rate_period.max(limits.burst_period);
        while self
            .arrivals
            .front()
            .is_some_and(|&t| now.duration_since(t) >= longest)
        {
            self.arrivals.pop_front();
        }
        let within = |p: Duration| {
            self.arrivals
                .iter()
                .filter(|&&t| now.duration_since(t) < p)
                .count()
        };
        let full = within(limits.burst_period) >= limits.burst
            || within(limits.rate_period) >= limits.rate;
        self.arrivals.push_back(now);
        if full {
            let msg = "frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]";
            return (StatusCode::OK, CODE_FREQUENCY, msg, None);
        }
        let bad = (
            StatusCode::BAD_REQUEST,
            CODE_BAD_REQUEST,
            "Bad Request",
            None,
        );
        if body.len() > MAX_BODY_BYTES {
            return bad;
        }
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return bad;
        };
        if let Some(ips) = &self.bot.allowed_ips
            && !ips.contains(&ip)
        {
            return (StatusCode::OK, CODE_IP, "Ip Not Allowed", None);
        }
        if let Some(secret) = &self.bot.secret {
            let ts = match &value["timestamp"] {
                Value::String(s) => s.parse::<i64>().ok(),
                Value::Number(n) => n.as_i64(),
                _ => None,
            };
            let signed = ts.is_some_and(|ts| {
                (ts - unix_s()).abs() <= TIMESTAMP_TOLERANCE_S
                    && value["sign"].as_str() == Some(feishu_sign(secret, ts).as_str())
            });
            if !signed {
                let msg = "sign match fail or timestamp is not within one hour from current time";
                return (StatusCode::OK, CODE_SIGN, msg, None);
            }
        }
        let Some((title, text, mentions, shown)) = read_message(&value) else {
            return bad;
        };
        if !self.bot.keywords.is_empty()
            && !self
                .bot
                .keywords
                .iter()
                .any(|k| shown.iter().any(|s| s.contains(k.as_str())))
        {
            return (StatusCode::OK, CODE_KEYWORDS, "Key Words Not Found", None);
        }
        let accepted = Accepted {
            at: now,
            title,
            text,
            mentions,
            bytes: body.len(),
            body: value,
        };
        (StatusCode::OK, 0, "success", Some(accepted))
    }
}

/// A well-formed post or card: (title, text, mentions, the text and title values the keyword
/// check reads); `None` for anything Feishu would refuse as a bad request.
fn read_message(v: &Value) -> Option<(String, String, Vec<String>, Vec<String>)> {
    match v["msg_type"].as_str()? {
        "post" => {
            let langs = v["content"]["post"].as_object()?;
            let post = langs.values().next()?;
            let title = post["title"].as_str().unwrap_or("").to_string();
            let mut shown = vec![title.clone()];
            let mut mentions = Vec::new();
            let mut lines = Vec::new();
            for paragraph in post["content"].as_array()? {
                let mut line = String::new();
                for e in paragraph.as_array()? {
                    match e["tag"].as_str()? {
                        "text" | "a" => {
                            let t = e["text"].as_str()?;
                            shown.push(t.to_string());
                            line.push_str(t);
                            if e["tag"] == "a" {
                                e["href"].as_str()?;
                            }
                        }
                        "at" => {
                            let who = e["user_id"].as_str()?;
                            mentions.push(who.to_string());
                            line.push('@');
                            line.push_str(who);
                        }
                        _ => return None,
                    }
                }
                lines.push(line);
            }
            Some((title, lines.join("\n"), mentions, shown))
        }
        "interactive" => {
            let card = v["card"].as_object()?;
            let mut shown = Vec::new();
            let mut text = String::new();
            for e in card.get("elements")?.as_array()? {
                if e["tag"] == "div" && e["text"]["tag"] == "lark_md" {
                    text.push_str(e["text"]["content"].as_str()?);
                }
                collect_contents(e, &mut shown);
            }
            let mentions = text
                .split("<at id=")
                .skip(1)
                .filter_map(|rest| rest.split_once("></at>").map(|(id, _)| id.to_string()))
                .collect();
            Some((String::new(), text, mentions, shown))
        }
        // ROBOTS.md §4: a group card and an image, by the id and key Feishu gave for them;
        // nothing in them is text a keyword could be found in.
        "share_chat" => {
            v["content"]["share_chat_id"].as_str()?;
            Some((String::new(), String::new(), Vec::new(), Vec::new()))
        }
        "image" => {
            v["content"]["image_key"].as_str()?;
            Some((String::new(), String::new(), Vec::new(), Vec::new()))
        }
        _ => None,
    }
}

/// Every `content` string in a card element (its texts), never a `url`.
fn collect_contents(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                match x {
                    Value::String(s) if k == "content" => out.push(s.clone()),
                    _ => collect_contents(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| collect_contents(x, out)),
        _ => {}
    }
}

/// How many alerts the accepted messages cover, by their footers; a passthrough message (an
/// image or a group card sent alone as it came) has none and is one alert.
pub fn footers_total(accepted: &[Accepted]) -> u64 {
    accepted
        .iter()
        .map(|a| match a.body["msg_type"].as_str() {
            Some("image" | "share_chat") => 1,
            _ => super::daemon::footer_of(&a.text).1,
        })
        .sum()
}
