//! A fake DingTalk custom robot (自定义机器人) webhook server for integration tests.
//!
//! sluice must deliver alert digests to DingTalk robots without ever breaking
//! their rate limit, because a robot that exceeds it is locked out for minutes
//! and every alert sent in that time is lost. The real service cannot be used
//! in tests, so this module reproduces the parts of its behaviour that sluice
//! depends on, as strictly as the public documentation allows:
//!
//! * `POST /robot/send?access_token=…[&timestamp=…&sign=…]` with a JSON body,
//!   always answered HTTP 200 with `{"errcode":N,"errmsg":"…"}`;
//! * signature checking (加签), the keyword filter, the 20000-byte size limit
//!   and the body validation, each with DingTalk's own error codes;
//! * the per-token rolling-window rate limit and the lockout that follows a
//!   breach, counting *every* request that reaches a known token (rejected
//!   ones included), because DingTalk cannot be assumed to be kinder;
//! * injected faults ([`Fault`]) and outages ([`FakeRobot::go_offline`]), so
//!   retry, timeout and backoff paths can be exercised;
//! * its own clock, in the `Date` header of every answer and in the check of
//!   a signed timestamp, which [`FakeRobot::set_clock_skew`] can put off the
//!   host's (a host whose clock is wrong, as DingTalk sees it).
//!
//! The server is written directly on tokio TCP with a minimal HTTP/1.1 parser
//! instead of a web framework: that gives full control over the connection,
//! which is what [`Fault::Drop`] (read the request, then close the socket
//! without answering) and [`FakeRobot::go_offline`] (close the listening
//! socket so that connects are refused) need. Every response carries
//! `Connection: close` and the connection is closed after it, so no client
//! ever reuses a connection and each request is observed on its own.
//!
//! Everything is timed with [`std::time::Instant`] on the real clock: do not
//! use the fake under tokio's paused test clock.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The only path the fake serves, as DingTalk's webhook URL has it.
pub const SEND_PATH: &str = "/robot/send";
/// errcode of a delivered message.
pub const ERR_OK: i64 = 0;
/// errcode for an `access_token` that names no robot (also: a revoked robot).
pub const ERR_TOKEN_NOT_EXIST: i64 = 300_001;
/// errcode for every security-setting failure: timestamp, sign or keywords.
pub const ERR_SECURITY: i64 = 310_000;
/// errcode for a rate-limit breach and for every request during the lockout.
pub const ERR_SEND_TOO_FAST: i64 = 130_101;
/// errcode for a body over [`MAX_MESSAGE_BYTES`].
pub const ERR_TOO_LONG: i64 = 460_101;
/// errcode for a body that is not JSON or has no known `msgtype`.
pub const ERR_MISSING_JSON: i64 = 40_035;

/// errmsg of [`ERR_TOKEN_NOT_EXIST`].
pub const MSG_TOKEN_NOT_EXIST: &str = "token is not exist";
/// errmsg of [`ERR_SECURITY`] for a missing, unparsable or stale timestamp.
pub const MSG_INVALID_TIMESTAMP: &str = "invalid timestamp";
/// errmsg of [`ERR_SECURITY`] for a missing or wrong sign.
pub const MSG_SIGN_NOT_MATCH: &str = "sign not match";
/// errmsg of [`ERR_SECURITY`] when no configured keyword is in the text.
pub const MSG_KEYWORDS: &str = "keywords not in content";
/// errmsg of [`ERR_SEND_TOO_FAST`] (DingTalk's text, whatever the scaled limit).
pub const MSG_SEND_TOO_FAST: &str = "send too fast, exceed 20 times per minute";
/// errmsg of [`ERR_TOO_LONG`].
pub const MSG_TOO_LONG: &str = "message too long, exceed 20000 bytes";
/// errmsg of [`ERR_MISSING_JSON`].
pub const MSG_MISSING_JSON: &str = "缺少参数 json";

/// Largest request body DingTalk accepts, in bytes.
pub const MAX_MESSAGE_BYTES: usize = 20_000;
/// How far a signed request's timestamp may be from the server's clock.
pub const TIMESTAMP_TOLERANCE_MS: u64 = 60 * 60 * 1000;

/// Largest request head (request line and headers) the parser accepts.
const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest chunk-size or trailer line the parser accepts.
const MAX_LINE_BYTES: usize = 4 * 1024;
/// Largest HTTP body the parser reads; larger ones get a 413.
const MAX_HTTP_BODY_BYTES: usize = 1024 * 1024;
/// A client that has not sent a whole request by then gets a 408.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long, after answering, unread client bytes are drained so that closing
/// the socket does not reset the connection before the client has read the
/// answer.
const LINGER: Duration = Duration::from_millis(500);

/// The rate limit a robot enforces per access token.
///
/// DingTalk allows 20 messages per minute and locks the robot out for 10
/// minutes after a breach; tests scale these down (e.g. 20 per 2 s, 3 s
/// lockout) to stay fast while keeping the same shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most requests allowed in any rolling `period`.
    pub limit: usize,
    /// Length of the rolling window.
    pub period: Duration,
    /// How long a token answers 130101 to everything after a breach.
    pub lockout: Duration,
}

impl Default for Limits {
    /// DingTalk's documented limits: 20 per 60 s, 10 minutes of lockout.
    fn default() -> Self {
        Limits {
            limit: 20,
            period: Duration::from_secs(60),
            lockout: Duration::from_secs(600),
        }
    }
}

/// A misbehaviour injected into the answer to one request (or, as a sticky
/// fault, to every request) for a token. Faults take precedence over the
/// normal checks; the request is still recorded in [`FakeRobot::requests`]
/// and still counts towards the token's rate limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Answer HTTP 200 with this errcode and errmsg (e.g. 310000, 300001,
    /// 460101, -1 "系统繁忙", 410100 "发送速度太快而限流").
    Errcode(i64, &'static str),
    /// Answer with this HTTP status and the body `upstream error`, as a
    /// gateway in front of DingTalk would.
    Http(u16),
    /// Sleep this long, then process the request normally (it is timed,
    /// checked and counted when the sleep ends). A client that gives up
    /// meanwhile may still have its message delivered, as with the real
    /// service.
    Slow(Duration),
    /// Read the whole request, then close the connection without answering.
    Drop,
    /// Answer HTTP 429 with `Retry-After: <seconds>`, as a gateway in front of the robot might.
    RetryAfter(u64),
}

/// A message the fake answered with errcode 0.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// When the fake processed it.
    pub at: Instant,
    /// `markdown.title` (also `link.title`, `actionCard.title`); empty for
    /// text messages.
    pub title: String,
    /// `markdown.text` or `text.content` (also `link.text`, `actionCard.text`).
    pub text: String,
    /// The whole JSON body.
    pub body: Value,
}

/// One request that reached the handler for a token, whatever its answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// When the fake processed it (after the sleep of a [`Fault::Slow`]).
    pub at: Instant,
    /// The errcode answered, `None` for [`Fault::Http`] and [`Fault::Drop`].
    pub errcode: Option<i64>,
    /// The HTTP status answered, 0 for [`Fault::Drop`] (no answer at all).
    pub http_status: u16,
}

/// Computes DingTalk's signature (加签) of `timestamp_ms` for `secret`: the
/// standard, padded base64 of HMAC-SHA256 keyed with the secret over
/// `"{timestamp_ms}\n{secret}"`. The raw base64 is returned; a client must
/// percent-encode it once in the query string.
pub fn sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .expect("HMAC-SHA256 accepts keys of any length");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The current Unix time in milliseconds, as DingTalk's `timestamp` wants it.
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The most of `times` that fall in one half-open window `[t, t + window)`,
/// over all `t`; `times` need not be sorted. sluice keeps a token within its
/// limit exactly when this is at most `limit` for `window == period`.
pub fn max_in_window_of(times: &[Instant], window: Duration) -> usize {
    if window.is_zero() {
        return 0;
    }
    let mut sorted = times.to_vec();
    sorted.sort_unstable();
    // A best window can always be slid right until it starts at an arrival.
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

/// Percent-encodes a query-string value: everything but RFC 3986's
/// unreserved characters becomes `%XX`.
pub fn encode_query_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes a query-string component as form encoding does: `%XX` becomes the
/// byte, `+` becomes a space, a malformed escape is kept as it is. A client
/// that forgets to encode a signature's `+` (or encodes it twice) therefore
/// fails the sign check, as it would against DingTalk.
pub fn decode_query_value(raw: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        char::from(b)
            .to_digit(16)
            .and_then(|d| u8::try_from(d).ok())
    }
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let pair = bytes
                    .get(i + 1)
                    .copied()
                    .and_then(hex)
                    .zip(bytes.get(i + 2).copied().and_then(hex));
                if let Some((hi, lo)) = pair {
                    out.push(hi << 4 | lo);
                    i += 2;
                } else {
                    out.push(b'%');
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a query string into decoded parameters; the first of a repeated
/// name wins.
fn parse_query(query: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        params
            .entry(decode_query_value(name))
            .or_insert_with(|| decode_query_value(value));
    }
    params
}

/// A running fake DingTalk robot service on `127.0.0.1`. Cheap to clone: all
/// clones share one server. The listener stops when the last clone is dropped
/// (or with the test's runtime).
#[derive(Clone)]
pub struct FakeRobot {
    inner: Arc<Inner>,
}

struct Inner {
    addr: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop while online, `None` while offline.
    server: tokio::sync::Mutex<Option<Server>>,
}

/// The accept loop task and the switch that stops it.
struct Server {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

/// What the connection handlers and the test both see.
struct Shared {
    limits: Limits,
    tokens: Mutex<HashMap<String, TokenState>>,
    /// How far the fake's clock is ahead of the host's, in ms (negative: behind).
    skew_ms: AtomicI64,
}

/// A robot's security settings (安全设置).
#[derive(Debug, Clone)]
struct RobotConfig {
    secret: Option<String>,
    keywords: Vec<String>,
}

/// Everything the fake knows about one access token.
#[derive(Debug, Default)]
struct TokenState {
    /// `None` until [`FakeRobot::add_robot`]: the token does not exist.
    robot: Option<RobotConfig>,
    faults: VecDeque<Fault>,
    sticky: Option<Fault>,
    /// Arrival times counted by the rate limiter, oldest first, trimmed to
    /// the trailing period.
    window: VecDeque<Instant>,
    lockout_until: Option<Instant>,
    requests: Vec<Request>,
    accepted: Vec<Accepted>,
    throttled: usize,
}

impl TokenState {
    /// Counts an arrival for the rate limiter (only a known token has one)
    /// and returns how many earlier arrivals fall in the trailing period.
    fn count_arrival(&mut self, now: Instant, period: Duration) -> usize {
        while let Some(&oldest) = self.window.front() {
            if now.saturating_duration_since(oldest) >= period {
                self.window.pop_front();
            } else {
                break;
            }
        }
        let earlier = self.window.len();
        if self.robot.is_some() {
            self.window.push_back(now);
        }
        earlier
    }

    /// Applies DingTalk's checks, in DingTalk's order as far as it is known,
    /// to a request that no fault intercepted.
    fn check(
        &mut self,
        limits: &Limits,
        now: Instant,
        clock_ms: i64,
        params: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<Accepted, (i64, &'static str)> {
        let Some(robot) = self.robot.clone() else {
            return Err((ERR_TOKEN_NOT_EXIST, MSG_TOKEN_NOT_EXIST));
        };

        let earlier = self.count_arrival(now, limits.period);
        let locked = self.lockout_until.is_some_and(|until| now < until);
        if locked || earlier >= limits.limit {
            if !locked {
                self.lockout_until = Some(now + limits.lockout);
            }
            self.throttled += 1;
            return Err((ERR_SEND_TOO_FAST, MSG_SEND_TOO_FAST));
        }

        if let Some(secret) = &robot.secret {
            let timestamp = params
                .get("timestamp")
                .and_then(|t| t.parse::<i64>().ok())
                .filter(|&t| t.abs_diff(clock_ms) <= TIMESTAMP_TOLERANCE_MS);
            let Some(timestamp) = timestamp else {
                return Err((ERR_SECURITY, MSG_INVALID_TIMESTAMP));
            };
            if params.get("sign") != Some(&sign(secret, timestamp)) {
                return Err((ERR_SECURITY, MSG_SIGN_NOT_MATCH));
            }
        }

        if body.len() > MAX_MESSAGE_BYTES {
            return Err((ERR_TOO_LONG, MSG_TOO_LONG));
        }
        let Ok(value) = serde_json::from_slice::<Value>(body) else {
            return Err((ERR_MISSING_JSON, MSG_MISSING_JSON));
        };
        let Some((title, text)) = message_parts(&value) else {
            return Err((ERR_MISSING_JSON, MSG_MISSING_JSON));
        };

        // Strict: only the message text counts, never its title.
        if !robot.keywords.is_empty() && !robot.keywords.iter().any(|k| text.contains(k.as_str())) {
            return Err((ERR_SECURITY, MSG_KEYWORDS));
        }

        Ok(Accepted {
            at: now,
            title,
            text,
            body: value,
        })
    }
}

/// The `(title, text)` of a well-formed message of a known `msgtype`, or
/// `None` when the body would be refused as missing its JSON.
fn message_parts(body: &Value) -> Option<(String, String)> {
    fn field(object: &Value, name: &str) -> Option<String> {
        object.get(name)?.as_str().map(str::to_owned)
    }
    let msgtype = body.get("msgtype")?.as_str()?;
    let content = body.get(msgtype).filter(|c| c.is_object())?;
    match msgtype {
        "text" => Some((String::new(), field(content, "content")?)),
        "markdown" | "actionCard" => Some((field(content, "title")?, field(content, "text")?)),
        "link" => {
            field(content, "messageUrl")?;
            Some((field(content, "title")?, field(content, "text")?))
        }
        "feedCard" => {
            content.get("links")?.as_array()?;
            Some((String::new(), String::new()))
        }
        _ => None,
    }
}

impl Shared {
    fn tokens(&self) -> MutexGuard<'_, HashMap<String, TokenState>> {
        // A panicking test thread must not take the server down with it.
        self.tokens.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Reads `f` from a token's state, or `default` for a token never seen.
    fn read<T>(&self, token: &str, default: T, f: impl FnOnce(&TokenState) -> T) -> T {
        self.tokens().get(token).map_or(default, f)
    }

    /// Changes a token's state, creating it if need be.
    fn update<T>(&self, token: &str, f: impl FnOnce(&mut TokenState) -> T) -> T {
        f(self.tokens().entry(token.to_owned()).or_default())
    }

    /// Answers one parsed HTTP request; `None` means close without answering.
    async fn handle(&self, request: HttpRequest) -> Option<Response> {
        let target = request.target.as_str();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        if path != SEND_PATH {
            return Some(Response::plain(404, "not found"));
        }
        if request.method != "POST" {
            return Some(Response::plain(405, "method not allowed"));
        }
        let params = parse_query(query);
        let token = params.get("access_token").map_or("", String::as_str);

        let fault = self.update(token, |st| {
            st.faults.pop_front().or_else(|| st.sticky.clone())
        });
        let (errcode, status, response) = match fault {
            None => return Some(self.process(token, &params, &request.body)),
            Some(Fault::Slow(delay)) => {
                tokio::time::sleep(delay).await;
                return Some(self.process(token, &params, &request.body));
            }
            Some(Fault::Errcode(code, msg)) => {
                (Some(code), 200, Some(Response::dingtalk(code, msg)))
            }
            Some(Fault::Http(status)) => (
                None,
                status,
                Some(Response::plain(status, "upstream error")),
            ),
            Some(Fault::Drop) => (None, 0, None),
            Some(Fault::RetryAfter(secs)) => {
                let mut r = Response::plain(429, "slow down");
                r.header = Some(format!("Retry-After: {secs}\r\n"));
                (None, 429, Some(r))
            }
        };
        let period = self.limits.period;
        self.update(token, |st| {
            let now = Instant::now();
            st.count_arrival(now, period);
            st.requests.push(Request {
                at: now,
                errcode,
                http_status: status,
            });
        });
        response
    }

    /// The fake's own clock, Unix ms: the host's, put off by [`FakeRobot::set_clock_skew`].
    fn clock_ms(&self) -> i64 {
        unix_ms() + self.skew_ms.load(Ordering::Relaxed)
    }

    /// Runs the normal checks on a request and records the outcome.
    fn process(&self, token: &str, params: &HashMap<String, String>, body: &[u8]) -> Response {
        let limits = self.limits;
        let clock_ms = self.clock_ms();
        self.update(token, |st| {
            // Taken under the lock, so arrival times are recorded in order.
            let now = Instant::now();
            let (code, msg) = match st.check(&limits, now, clock_ms, params, body) {
                Ok(accepted) => {
                    st.accepted.push(accepted);
                    (ERR_OK, "ok")
                }
                Err(error) => error,
            };
            st.requests.push(Request {
                at: now,
                errcode: Some(code),
                http_status: 200,
            });
            Response::dingtalk(code, msg)
        })
    }
}

impl FakeRobot {
    /// Starts the fake on `127.0.0.1` with a port of the system's choosing,
    /// serving from a task on the current tokio runtime.
    ///
    /// # Panics
    /// If no loopback port can be bound.
    pub async fn start(limits: Limits) -> FakeRobot {
        let listener = listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("fake robot: cannot listen on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("fake robot: listener has no address");
        let shared = Arc::new(Shared {
            limits,
            tokens: Mutex::new(HashMap::new()),
            skew_ms: AtomicI64::new(0),
        });
        let server = spawn_server(listener, Arc::clone(&shared));
        FakeRobot {
            inner: Arc::new(Inner {
                addr,
                shared,
                server: tokio::sync::Mutex::new(Some(server)),
            }),
        }
    }

    /// The address the fake listens on (kept across offline periods).
    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// The rate limits the fake enforces.
    pub fn limits(&self) -> Limits {
        self.inner.shared.limits
    }

    /// Creates (or reconfigures) the robot behind `token`: with `secret` it
    /// demands signed requests, with `keywords` it only accepts messages
    /// whose text contains one of them. Earlier history is kept.
    pub fn add_robot(&self, token: &str, secret: Option<&str>, keywords: &[&str]) {
        let config = RobotConfig {
            secret: secret.map(str::to_owned),
            keywords: keywords.iter().map(|k| (*k).to_owned()).collect(),
        };
        self.inner
            .shared
            .update(token, |st| st.robot = Some(config));
    }

    /// The robot's webhook URL, unsigned:
    /// `http://127.0.0.1:PORT/robot/send?access_token=TOKEN`.
    pub fn webhook(&self, token: &str) -> String {
        format!("http://{}{SEND_PATH}?access_token={token}", self.inner.addr)
    }

    /// The webhook URL signed as a correct client signs it, with the sign
    /// percent-encoded once.
    pub fn signed_webhook(&self, token: &str, secret: &str, timestamp_ms: i64) -> String {
        format!(
            "{}&timestamp={timestamp_ms}&sign={}",
            self.webhook(token),
            encode_query_value(&sign(secret, timestamp_ms))
        )
    }

    /// Queues a one-shot fault: the next request for `token` that has no
    /// earlier fault queued gets it, whether or not the robot exists.
    pub fn push_fault(&self, token: &str, fault: Fault) {
        self.inner
            .shared
            .update(token, |st| st.faults.push_back(fault));
    }

    /// Sets (or with `None` clears) a fault applied to every request for
    /// `token` that no one-shot fault intercepts, e.g. a sticky
    /// `Errcode(300001, "token is not exist")` for a revoked robot.
    pub fn set_sticky(&self, token: &str, fault: Option<Fault>) {
        self.inner.shared.update(token, |st| st.sticky = fault);
    }

    /// Runs the fake's clock `skew_ms` ahead of the host's (behind, if
    /// negative), for every token: a signed timestamp more than
    /// [`TIMESTAMP_TOLERANCE_MS`] off that clock is refused with 310000
    /// "invalid timestamp", as DingTalk refuses it, and every answer's `Date`
    /// header shows that clock. 0 (the start) is the host's clock.
    pub fn set_clock_skew(&self, skew_ms: i64) {
        self.inner.shared.skew_ms.store(skew_ms, Ordering::Relaxed);
    }

    /// Locks `token` out for `d` from now, as if another sender sharing the
    /// robot had exhausted its limit: every request meanwhile gets 130101.
    pub fn lock_out(&self, token: &str, d: Duration) {
        let until = Instant::now() + d;
        self.inner
            .shared
            .update(token, |st| st.lockout_until = Some(until));
    }

    /// Stops listening: the listening socket is closed before this returns,
    /// so new connections are refused. Connections already accepted are
    /// still answered. Does nothing if already offline.
    pub async fn go_offline(&self) {
        let mut server = self.inner.server.lock().await;
        if let Some(Server { stop, task }) = server.take() {
            let _ = stop.send(());
            // The accept loop owns the listener and drops it as it ends.
            let _ = task.await;
        }
    }

    /// Listens again on the same port. Does nothing if already online.
    ///
    /// # Panics
    /// If the port cannot be bound again within 5 s (e.g. another process
    /// took it meanwhile).
    pub async fn come_online(&self) {
        let mut server = self.inner.server.lock().await;
        if server.is_some() {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match listen(self.inner.addr) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() >= deadline => {
                    panic!(
                        "fake robot: cannot listen on {} again: {e}",
                        self.inner.addr
                    )
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        *server = Some(spawn_server(listener, Arc::clone(&self.inner.shared)));
    }

    /// The messages answered errcode 0 for `token`, in arrival order.
    pub fn accepted(&self, token: &str) -> Vec<Accepted> {
        self.inner
            .shared
            .read(token, Vec::new(), |st| st.accepted.clone())
    }

    /// Every request that reached the handler for `token`, in arrival order.
    pub fn requests(&self, token: &str) -> Vec<Request> {
        self.inner
            .shared
            .read(token, Vec::new(), |st| st.requests.clone())
    }

    /// How many requests for `token` were answered 130101 by the rate limiter
    /// (injected `Errcode(130101, …)` faults are not counted).
    pub fn throttled(&self, token: &str) -> usize {
        self.inner.shared.read(token, 0, |st| st.throttled)
    }

    /// The most requests for `token` (any answer) whose arrival times fall in
    /// one half-open window `[t, t + window)`; see [`max_in_window_of`].
    pub fn max_in_window(&self, token: &str, window: Duration) -> usize {
        let times: Vec<Instant> = self.inner.shared.read(token, Vec::new(), |st| {
            st.requests.iter().map(|r| r.at).collect()
        });
        max_in_window_of(&times, window)
    }

    /// Polls [`accepted`](Self::accepted) every 20 ms until `f` holds for it,
    /// and returns it.
    ///
    /// # Panics
    /// After `timeout`, with what was accepted and answered so far.
    pub async fn wait_for<F: Fn(&[Accepted]) -> bool>(
        &self,
        token: &str,
        timeout: Duration,
        f: F,
    ) -> Vec<Accepted> {
        let deadline = Instant::now() + timeout;
        loop {
            let accepted = self.accepted(token);
            if f(&accepted) {
                return accepted;
            }
            if Instant::now() >= deadline {
                let titles: Vec<&str> = accepted
                    .iter()
                    .rev()
                    .take(5)
                    .rev()
                    .map(|a| a.title.as_str())
                    .collect();
                let requests = self.requests(token);
                let answers: Vec<String> = requests
                    .iter()
                    .rev()
                    .take(5)
                    .rev()
                    .map(|r| match r.errcode {
                        Some(code) => code.to_string(),
                        None => format!("HTTP {}", r.http_status),
                    })
                    .collect();
                panic!(
                    "fake robot: condition not met for token {token:?} within {timeout:?}: \
                     {} accepted (last titles {titles:?}); {} requests (last answers {answers:?}); \
                     {} throttled",
                    accepted.len(),
                    requests.len(),
                    self.throttled(token),
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl fmt::Debug for FakeRobot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeRobot")
            .field("addr", &self.inner.addr)
            .field("limits", &self.inner.shared.limits)
            .finish_non_exhaustive()
    }
}

/// Opens a listening socket with `SO_REUSEADDR`, so that the port can be
/// bound again by [`FakeRobot::come_online`] while old connections linger in
/// `TIME_WAIT`.
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Runs the accept loop until stopped (or until its [`Server`] is dropped),
/// serving each connection in its own task.
fn spawn_server(listener: TcpListener, shared: Arc<Shared>) -> Server {
    let (stop, mut stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        loop {
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_connection(stream, Arc::clone(&shared)));
                    }
                    // E.g. out of file descriptors: back off, keep serving.
                    Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                },
            }
        }
        drop(listener);
    });
    Server { stop, task }
}

/// Serves one request on one connection, then closes it.
async fn serve_connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let response = match tokio::time::timeout(READ_TIMEOUT, read_request(&mut stream)).await {
        Err(_) => Some(Response::plain(408, "request timeout")),
        Ok(Err(ReadError::Closed)) => return,
        Ok(Err(ReadError::Bad(status, msg))) => Some(Response::plain(status, msg)),
        Ok(Ok(request)) => shared.handle(request).await,
    };
    if let Some(response) = response {
        let _ = stream
            .write_all(&response.to_bytes(shared.clock_ms()))
            .await;
    }
    let _ = stream.shutdown().await;
    // Closing a socket with unread input resets the connection, which can
    // destroy the answer before the client reads it: drain a little first.
    let mut scratch = [0u8; 4096];
    let mut drained = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while drained < MAX_HTTP_BODY_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// A request as far as the fake cares: headers other than the framing ones
/// are read and ignored.
#[derive(Debug)]
struct HttpRequest {
    method: String,
    target: String,
    body: Vec<u8>,
}

/// Why no request could be read.
#[derive(Debug)]
enum ReadError {
    /// The client went away (or the socket failed): nothing to answer.
    Closed,
    /// The request is malformed: answer this status and message.
    Bad(u16, &'static str),
}

/// Buffered reading from the connection.
struct Reader<'a> {
    stream: &'a mut TcpStream,
    buf: Vec<u8>,
}

impl Reader<'_> {
    /// Reads more bytes into the buffer.
    async fn fill(&mut self) -> Result<(), ReadError> {
        let mut chunk = [0u8; 8192];
        match self.stream.read(&mut chunk).await {
            Ok(0) | Err(_) => Err(ReadError::Closed),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// Reads up to the next CRLF (which is consumed and not returned).
    async fn line(&mut self, max: usize, too_long: ReadError) -> Result<Vec<u8>, ReadError> {
        loop {
            if let Some(pos) = find(&self.buf, b"\r\n") {
                let mut line: Vec<u8> = self.buf.drain(..pos + 2).collect();
                line.truncate(pos);
                return Ok(line);
            }
            if self.buf.len() > max {
                return Err(too_long);
            }
            self.fill().await?;
        }
    }

    /// Reads exactly `n` bytes.
    async fn exact(&mut self, n: usize) -> Result<Vec<u8>, ReadError> {
        while self.buf.len() < n {
            self.fill().await?;
        }
        Ok(self.buf.drain(..n).collect())
    }

    /// Reads a `Transfer-Encoding: chunked` body, trailers included.
    async fn chunked(&mut self) -> Result<Vec<u8>, ReadError> {
        let mut body = Vec::new();
        loop {
            let line = self
                .line(
                    MAX_LINE_BYTES,
                    ReadError::Bad(400, "chunk size line too long"),
                )
                .await?;
            let line = String::from_utf8_lossy(&line);
            let size = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| ReadError::Bad(400, "invalid chunk size"))?;
            if size == 0 {
                loop {
                    let trailer = self
                        .line(MAX_LINE_BYTES, ReadError::Bad(400, "trailer line too long"))
                        .await?;
                    if trailer.is_empty() {
                        return Ok(body);
                    }
                }
            }
            if size > MAX_HTTP_BODY_BYTES - body.len() {
                return Err(ReadError::Bad(413, "request body too large"));
            }
            body.extend(self.exact(size).await?);
            let end = self
                .line(
                    MAX_LINE_BYTES,
                    ReadError::Bad(400, "chunk not followed by CRLF"),
                )
                .await?;
            if !end.is_empty() {
                return Err(ReadError::Bad(400, "chunk not followed by CRLF"));
            }
        }
    }
}

/// The position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads one HTTP/1.x request: request line, headers, and a body framed by
/// `Content-Length` or chunked transfer encoding.
async fn read_request(stream: &mut TcpStream) -> Result<HttpRequest, ReadError> {
    let mut reader = Reader {
        stream,
        buf: Vec::new(),
    };
    let head_end = loop {
        if let Some(pos) = find(&reader.buf, b"\r\n\r\n") {
            break pos;
        }
        if reader.buf.len() > MAX_HEAD_BYTES {
            return Err(ReadError::Bad(431, "request header fields too large"));
        }
        reader.fill().await?;
    };
    let head: Vec<u8> = reader.buf.drain(..head_end + 4).collect();
    let head = std::str::from_utf8(&head[..head_end])
        .map_err(|_| ReadError::Bad(400, "request head is not UTF-8"))?;

    let mut lines = head.split("\r\n");
    let mut parts = lines.next().unwrap_or("").split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(400, "malformed request line"));
    };
    if method.is_empty() || !target.starts_with('/') || !version.starts_with("HTTP/1.") {
        return Err(ReadError::Bad(400, "malformed request line"));
    }

    let mut content_length: Option<usize> = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err(ReadError::Bad(400, "malformed header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let length = value
                .parse::<usize>()
                .map_err(|_| ReadError::Bad(400, "invalid content-length"))?;
            if content_length.is_some_and(|earlier| earlier != length) {
                return Err(ReadError::Bad(400, "conflicting content-length"));
            }
            content_length = Some(length);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if !value.eq_ignore_ascii_case("chunked") {
                return Err(ReadError::Bad(501, "unsupported transfer-encoding"));
            }
            chunked = true;
        }
    }

    let body = if chunked {
        reader.chunked().await?
    } else {
        let length = content_length.unwrap_or(0);
        if length > MAX_HTTP_BODY_BYTES {
            return Err(ReadError::Bad(413, "request body too large"));
        }
        reader.exact(length).await?
    };
    Ok(HttpRequest {
        method: method.to_owned(),
        target: target.to_owned(),
        body,
    })
}

/// An HTTP response, always sent with `Connection: close`.
struct Response {
    status: u16,
    content_type: &'static str,
    body: Vec<u8>,
    /// One more header line, with its CRLF.
    header: Option<String>,
}

impl Response {
    /// DingTalk's answer: HTTP 200 with `{"errcode":…,"errmsg":…}`.
    fn dingtalk(errcode: i64, errmsg: &str) -> Response {
        Response {
            status: 200,
            content_type: "application/json;charset=UTF-8",
            body: json!({ "errcode": errcode, "errmsg": errmsg })
                .to_string()
                .into_bytes(),
            header: None,
        }
    }

    /// A plain-text answer, for HTTP-level errors.
    fn plain(status: u16, message: &str) -> Response {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: message.as_bytes().to_vec(),
            header: None,
        }
    }

    /// The whole answer, dated `clock_ms` (the fake's clock) as an HTTP
    /// server dates its answers.
    fn to_bytes(&self, clock_ms: i64) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            408 => "Request Timeout",
            413 => "Payload Too Large",
            429 => "Too Many Requests",
            431 => "Request Header Fields Too Large",
            500 => "Internal Server Error",
            501 => "Not Implemented",
            502 => "Bad Gateway",
            503 => "Service Unavailable",
            504 => "Gateway Timeout",
            _ => "Fault",
        };
        let date = jiff::Timestamp::from_millisecond(clock_ms)
            .ok()
            .and_then(|t| {
                jiff::fmt::rfc2822::DateTimePrinter::new()
                    .timestamp_to_rfc9110_string(&t)
                    .ok()
            })
            .map_or(String::new(), |d| format!("Date: {d}\r\n"));
        let mut bytes = format!(
            "HTTP/1.1 {} {reason}\r\n{date}{}Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.status,
            self.header.as_deref().unwrap_or(""),
            self.content_type,
            self.body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}
