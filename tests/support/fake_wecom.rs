//! A fake WeCom (企业微信) group robot webhook for integration tests, written from ROBOTS.md §5
//! and independent of sluice's code: its own limits, its own byte count, its own parsing.
//!
//! * `POST /cgi-bin/webhook/send?key=<KEY>` with a JSON body, answered HTTP 200 with
//!   `{"errcode":N,"errmsg":"…"}` as WeCom's APIs answer;
//! * a key the fake was not told of answers 93000 `invalid webhook url` (a removed robot);
//! * the per-key rolling window (20 a minute at WeCom, scaled down in tests) counts *every*
//!   request that reaches a known key, refused ones included, and a request over it answers
//!   45009 `api freq out of limit`; no lockout is documented, so none is modelled;
//! * `msgtype` must be one WeCom knows (40008 otherwise); `markdown.content` and
//!   `markdown_v2.content` are held to 4 096 bytes and `text.content` to 2 048, counted in raw
//!   UTF-8 bytes of the decoded string (a CJK character is 3), answered 40058 when over, with
//!   the text WeCom is seen to answer;
//! * `news` holds 1 to 8 articles, each with a `title` and a `url` (`description` and `picurl`
//!   optional; WeCom cuts a long title or description itself, so length is not refused);
//!   `image` a `base64` JPG or PNG of at most 2 000 000 bytes decoded, whose lowercase hex
//!   `md5` it must match; `template_card` a `card_type` of `text_notice` or `news_notice`, a
//!   `main_title.title` and a `card_action` (`type` 1 with a `url`, or 2 with an `appid`).
//!   WeCom's codes for these refusals are UNCONFIRMED: the fake answers 40058 for each, and
//!   where the documentation leaves room (the "2M" cap, the md5's case) the stricter reading;
//! * injected faults ([`Fault`]) for the retry paths;
//! * every accepted message is recorded with the `<@userid>` mentions found in its content.
//!
//! Served with axum on 127.0.0.1; timed with [`std::time::Instant`] on the real clock.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine as _;
use serde_json::{Value, json};

/// The only path the fake serves, as WeCom's webhook URL has it.
pub const SEND_PATH: &str = "/cgi-bin/webhook/send";
pub const ERR_OK: i64 = 0;
/// errcode for a key that names no robot.
pub const ERR_INVALID_WEBHOOK: i64 = 93_000;
/// errcode for a request over the key's rolling window.
pub const ERR_FREQ: i64 = 45_009;
/// errcode for an unknown `msgtype`.
pub const ERR_MSGTYPE: i64 = 40_008;
/// errcode for a bad parameter: content over its cap, missing, not JSON.
pub const ERR_PARAMETER: i64 = 40_058;

/// The most `markdown.content` / `markdown_v2.content` may hold, in raw UTF-8 bytes.
pub const MAX_MARKDOWN_BYTES: usize = 4096;
/// The most `text.content` may hold, in raw UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 2048;
/// The most articles a `news` message may hold.
pub const MAX_ARTICLES: usize = 8;
/// The largest image, decoded: WeCom documents "2M"; the stricter reading.
pub const MAX_IMAGE_BYTES: usize = 2_000_000;

/// The rate limit the fake enforces per key: WeCom's is 20 per 60 s; tests scale the period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub limit: usize,
    pub period: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            limit: 20,
            period: Duration::from_secs(60),
        }
    }
}

/// A misbehaviour injected into the answer to the next request for a key; the request still
/// counts towards the key's window and is recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// HTTP 200 with this errcode and errmsg.
    Errcode(i64, &'static str),
    /// This HTTP status with a plain-text body, as a gateway in front of WeCom would answer.
    Http(u16),
}

/// A message the fake answered errcode 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    pub at: Instant,
    pub msgtype: String,
    /// The message's `content` (empty for `news`, `image` and `template_card`).
    pub content: String,
    /// The userids of the `<@userid>` mentions in the content, in order.
    pub mentions: Vec<String>,
    pub body: Value,
}

/// One request that reached a key, whatever its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub at: Instant,
    /// The errcode answered; `None` for [`Fault::Http`].
    pub errcode: Option<i64>,
    pub http_status: u16,
}

#[derive(Default)]
struct KeyState {
    known: bool,
    faults: VecDeque<Fault>,
    /// Arrivals counted by the window, oldest first, trimmed to the trailing period.
    window: VecDeque<Instant>,
    requests: Vec<Request>,
    accepted: Vec<Accepted>,
    throttled: usize,
}

struct Shared {
    limits: Limits,
    keys: Mutex<HashMap<String, KeyState>>,
}

impl Shared {
    fn keys(&self) -> MutexGuard<'_, HashMap<String, KeyState>> {
        self.keys.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A running fake WeCom webhook service on 127.0.0.1; clones share it.
#[derive(Clone)]
pub struct FakeWeCom {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeWeCom {
    pub async fn start(limits: Limits) -> FakeWeCom {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fake wecom: cannot listen on 127.0.0.1");
        let addr = listener.local_addr().expect("fake wecom: no address");
        let shared = Arc::new(Shared {
            limits,
            keys: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route(SEND_PATH, post(send))
            // Room for a 2 MB image in base64, so the fake's own cap answers, not axum's.
            .layer(DefaultBodyLimit::max(4 << 20))
            .with_state(Arc::clone(&shared));
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeWeCom { addr, shared }
    }

    /// Creates the robot behind `key`; earlier history is kept.
    pub fn add_robot(&self, key: &str) {
        self.shared.keys().entry(key.into()).or_default().known = true;
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT/cgi-bin/webhook/send?key=KEY`
    pub fn webhook(&self, key: &str) -> String {
        format!("http://{}{SEND_PATH}?key={key}", self.addr)
    }

    pub fn limits(&self) -> Limits {
        self.shared.limits
    }

    /// The next request for `key` without an earlier fault queued gets `fault`.
    pub fn push_fault(&self, key: &str, fault: Fault) {
        self.shared
            .keys()
            .entry(key.into())
            .or_default()
            .faults
            .push_back(fault);
    }

    pub fn accepted(&self, key: &str) -> Vec<Accepted> {
        self.shared
            .keys()
            .get(key)
            .map_or_else(Vec::new, |k| k.accepted.clone())
    }

    pub fn requests(&self, key: &str) -> Vec<Request> {
        self.shared
            .keys()
            .get(key)
            .map_or_else(Vec::new, |k| k.requests.clone())
    }

    /// Requests the window refused with 45009 (not injected faults).
    pub fn throttled(&self, key: &str) -> usize {
        self.shared.keys().get(key).map_or(0, |k| k.throttled)
    }

    /// The most requests for `key` in any half-open window `[t, t + window)`.
    pub fn max_in_window(&self, key: &str, window: Duration) -> usize {
        let times: Vec<Instant> = self.requests(key).iter().map(|r| r.at).collect();
        super::fake_robot::max_in_window_of(&times, window)
    }

    /// Polls [`accepted`](Self::accepted) until `f` holds; panics after `timeout` with what
    /// was answered.
    pub async fn wait_for<F: Fn(&[Accepted]) -> bool>(
        &self,
        key: &str,
        timeout: Duration,
        f: F,
    ) -> Vec<Accepted> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted(key);
            if f(&accepted) {
                return accepted;
            }
            if Instant::now() >= deadline {
                let answers: Vec<String> = self
                    .requests(key)
                    .iter()
                    .rev()
                    .take(8)
                    .map(|r| {
                        r.errcode
                            .map_or(format!("HTTP {}", r.http_status), |c| c.to_string())
                    })
                    .collect();
                panic!(
                    "fake wecom: condition not met for key {key:?} within {timeout:?}: {} accepted, last answers (newest first) {answers:?}, {} throttled",
                    accepted.len(),
                    self.throttled(key)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn answer(errcode: i64, errmsg: &str) -> Response {
    (
        StatusCode::OK,
        axum::Json(json!({"errcode": errcode, "errmsg": errmsg})),
    )
        .into_response()
}

async fn send(
    State(shared): State<Arc<Shared>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let key = query.get("key").cloned().unwrap_or_default();
    let limits = shared.limits;
    let mut keys = shared.keys();
    let st = keys.entry(key).or_default();
    let now = Instant::now();
    if !st.known {
        st.requests.push(Request {
            at: now,
            errcode: Some(ERR_INVALID_WEBHOOK),
            http_status: 200,
        });
        return answer(
            ERR_INVALID_WEBHOOK,
            "invalid webhook url, hint: [1700000000_fake], from ip: 127.0.0.1",
        );
    }
    while st
        .window
        .front()
        .is_some_and(|&t| now.duration_since(t) >= limits.period)
    {
        st.window.pop_front();
    }
    let earlier = st.window.len();
    st.window.push_back(now);
    let (code, msg): (i64, String) = match st.faults.pop_front() {
        Some(Fault::Http(status)) => {
            st.requests.push(Request {
                at: now,
                errcode: None,
                http_status: status,
            });
            let status = StatusCode::from_u16(status).expect("a valid status");
            return (status, "upstream error").into_response();
        }
        Some(Fault::Errcode(code, msg)) => (code, msg.into()),
        None if earlier >= limits.limit => {
            st.throttled += 1;
            (ERR_FREQ, "api freq out of limit".into())
        }
        None => match check(&body) {
            Ok((msgtype, content, value)) => {
                st.accepted.push(Accepted {
                    at: now,
                    msgtype,
                    mentions: mentions_in(&content),
                    content,
                    body: value,
                });
                (ERR_OK, "ok".into())
            }
            Err(e) => e,
        },
    };
    st.requests.push(Request {
        at: now,
        errcode: Some(code),
        http_status: 200,
    });
    answer(code, &msg)
}

/// The message's type and content, or the errcode and errmsg WeCom would answer.
fn check(body: &[u8]) -> Result<(String, String, Value), (i64, String)> {
    let value: Value = serde_json::from_slice(body).map_err(|_| bad("invalid json"))?;
    let msgtype = value["msgtype"].as_str().unwrap_or_default().to_string();
    let part = &value[msgtype.as_str()];
    let cap = match msgtype.as_str() {
        "markdown" | "markdown_v2" => MAX_MARKDOWN_BYTES,
        "text" => MAX_TEXT_BYTES,
        "news" | "image" | "template_card" => {
            match msgtype.as_str() {
                "news" => check_news(part)?,
                "image" => check_image(part)?,
                _ => check_card(part)?,
            }
            return Ok((msgtype, String::new(), value));
        }
        _ => return Err((ERR_MSGTYPE, "invalid message type".into())),
    };
    let Some(content) = part["content"].as_str() else {
        return Err(bad(&format!("missing {msgtype}.content")));
    };
    // Raw UTF-8 bytes of the decoded string: what WeCom's cap counts.
    if content.len() > cap {
        return Err(bad(&format!("{msgtype}.content exceed max length {cap}")));
    }
    let content = content.to_string();
    Ok((msgtype, content, value))
}

fn bad(what: &str) -> (i64, String) {
    (ERR_PARAMETER, format!("{what}. invalid Request Parameter"))
}

/// A non-empty string at `v[key]`, or a refusal naming `path`.
fn required<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, (i64, String)> {
    match v[key].as_str() {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(bad(&format!("missing {path}"))),
    }
}

fn check_news(news: &Value) -> Result<(), (i64, String)> {
    let Some(articles) = news["articles"].as_array() else {
        return Err(bad("missing news.articles"));
    };
    if articles.is_empty() || articles.len() > MAX_ARTICLES {
        return Err(bad(&format!(
            "news.articles: {} articles, expected 1 to {MAX_ARTICLES}",
            articles.len()
        )));
    }
    for (i, a) in articles.iter().enumerate() {
        required(a, "title", &format!("news.articles[{i}].title"))?;
        required(a, "url", &format!("news.articles[{i}].url"))?;
        for key in ["description", "picurl"] {
            if !a[key].is_null() && !a[key].is_string() {
                return Err(bad(&format!("news.articles[{i}].{key} is not a string")));
            }
        }
    }
    Ok(())
}

fn check_image(image: &Value) -> Result<(), (i64, String)> {
    let encoded = required(image, "base64", "image.base64")?;
    let md5 = required(image, "md5", "image.md5")?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| bad("image.base64 is not base64"))?;
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(bad(&format!(
            "image size {} exceeds {MAX_IMAGE_BYTES}",
            bytes.len()
        )));
    }
    if !(bytes.starts_with(b"\x89PNG\r\n\x1a\n") || bytes.starts_with(&[0xff, 0xd8, 0xff])) {
        return Err(bad("image is neither JPG nor PNG"));
    }
    if md5_hex(&bytes) != md5 {
        return Err(bad("image.md5 does not match the image"));
    }
    Ok(())
}

fn check_card(card: &Value) -> Result<(), (i64, String)> {
    let kind = required(card, "card_type", "template_card.card_type")?;
    if !matches!(kind, "text_notice" | "news_notice") {
        return Err(bad(&format!("template_card.card_type {kind:?} is unknown")));
    }
    required(
        &card["main_title"],
        "title",
        "template_card.main_title.title",
    )?;
    let action = &card["card_action"];
    match action["type"].as_i64() {
        Some(1) => required(action, "url", "template_card.card_action.url").map(drop),
        Some(2) => required(action, "appid", "template_card.card_action.appid").map(drop),
        _ => Err(bad("template_card.card_action.type: expected 1 or 2")),
    }
}

/// MD5 (RFC 1321) of `data` as lowercase hex: the fake's own, so it owes nothing to what it
/// checks.
pub fn md5_hex(data: &[u8]) -> String {
    const S: [u32; 64] = [
        7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 7, 12, 17, 22, 5, 9, 14, 20, 5, 9, 14, 20, 5,
        9, 14, 20, 5, 9, 14, 20, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 4, 11, 16, 23, 6, 10,
        15, 21, 6, 10, 15, 21, 6, 10, 15, 21, 6, 10, 15, 21,
    ];
    let k: Vec<u32> = (0..64)
        .map(|i| ((i as f64 + 1.0).sin().abs() * 4_294_967_296.0) as u32)
        .collect();
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&((data.len() as u64).wrapping_mul(8)).to_le_bytes());
    let mut h: [u32; 4] = [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476];
    for block in msg.chunks_exact(64) {
        let m: Vec<u32> = block
            .chunks_exact(4)
            .map(|w| u32::from_le_bytes([w[0], w[1], w[2], w[3]]))
            .collect();
        let [mut a, mut b, mut c, mut d] = h;
        for i in 0..64 {
            let (f, g) = match i / 16 {
                0 => ((b & c) | (!b & d), i),
                1 => ((d & b) | (!d & c), (5 * i + 1) % 16),
                2 => (b ^ c ^ d, (3 * i + 5) % 16),
                _ => (c ^ (b | !d), (7 * i) % 16),
            };
            let f = f.wrapping_add(a).wrapping_add(k[i]).wrapping_add(m[g]);
            a = d;
            d = c;
            c = b;
            b = b.wrapping_add(f.rotate_left(S[i]));
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter()
        .flat_map(|x| x.to_le_bytes())
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The userids of the `<@userid>` tags in `content`.
fn mentions_in(content: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = content;
    while let Some(at) = rest.find("<@") {
        rest = &rest[at + 2..];
        if let Some(end) = rest.find('>') {
            out.push(rest[..end].to_string());
            rest = &rest[end + 1..];
        }
    }
    out
}

/// How many alerts the accepted messages cover, by their footers; a passthrough message (news,
/// an image or a template card sent alone as it came) has none and is one alert.
pub fn footers_total(accepted: &[Accepted]) -> u64 {
    accepted
        .iter()
        .map(|a| match a.msgtype.as_str() {
            "news" | "image" | "template_card" => 1,
            _ => super::daemon::footer_of(&a.content).1,
        })
        .sum()
}
