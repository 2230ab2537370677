//! A fake Slack incoming webhook for integration tests, written from ROBOTS.md §6 and Slack's
//! documentation, independent of sluice's code.
//!
//! * `POST /services/<team>/<bot>/<secret>` with a JSON body `{"text": …}`;
//! * a delivered message is HTTP 200 with the plain-text body `ok`;
//! * errors are HTTP 4xx with Slack's plain-text codes: `no_service` (404) for an unknown hook,
//!   `invalid_token` (403) for a revoked one, `invalid_payload` (400) for a body that is not
//!   JSON, `no_text` (400) for a message without text;
//! * the rate limit (configurable, scaled down from about one a second) counts every request
//!   that reaches a known hook, and a request over it is answered 429 with `Retry-After`;
//!   until that time has passed every request gets 429 again;
//! * Slack cuts `text` past 40 000 characters: the fake refuses such a text with
//!   `invalid_payload`, so a digest that would be cut fails the test instead.
//!
//! Served with axum on 127.0.0.1 with `Connection: close` answers, on the real clock.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::Value;
use tokio::task::JoinHandle;

/// Slack keeps this many characters of a message's `text`.
pub const MAX_TEXT_CHARS: usize = 40_000;

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Requests per `period` per hook.
    pub limit: usize,
    pub period: Duration,
    /// What a 429 says in `Retry-After`, in seconds.
    pub retry_after_secs: u64,
}

/// One accepted message.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub text: String,
    pub at: Instant,
}

#[derive(Default)]
struct Hook {
    revoked: bool,
    /// Every request that reached the hook.
    requests: Vec<Instant>,
    accepted: Vec<Accepted>,
    throttled: usize,
    /// Until when every request is answered 429.
    muted_until: Option<Instant>,
    /// Answer the next requests with 429 whatever the rate (injected by a test).
    forced_429: usize,
}

struct Shared {
    limits: Limits,
    hooks: Mutex<HashMap<String, Hook>>,
}

pub struct FakeSlack {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeSlack {
    pub async fn start(limits: Limits) -> FakeSlack {
        let shared = Arc::new(Shared {
            limits,
            hooks: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/services/{team}/{bot}/{secret}", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake Slack");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the fake Slack serves");
        });
        FakeSlack { addr, shared, task }
    }

    /// Registers a hook; its webhook URL is [`FakeSlack::webhook`].
    pub fn add_hook(&self, path: &str) {
        self.hooks().insert(path.to_string(), Hook::default());
    }

    /// The incoming-webhook URL of hook `path` (`T000/B000/secret`).
    pub fn webhook(&self, path: &str) -> String {
        format!("http://{}/services/{path}", self.addr)
    }

    pub fn revoke(&self, path: &str) {
        if let Some(h) = self.hooks().get_mut(path) {
            h.revoked = true;
        }
    }

    /// The next `n` requests to `path` are answered 429 with `Retry-After`.
    pub fn force_429(&self, path: &str, n: usize) {
        if let Some(h) = self.hooks().get_mut(path) {
            h.forced_429 = n;
        }
    }

    pub fn accepted(&self, path: &str) -> Vec<Accepted> {
        self.hooks()
            .get(path)
            .map(|h| h.accepted.clone())
            .unwrap_or_default()
    }

    pub fn requests(&self, path: &str) -> Vec<Instant> {
        self.hooks()
            .get(path)
            .map(|h| h.requests.clone())
            .unwrap_or_default()
    }

    /// 429 answers given to `path`.
    pub fn throttled(&self, path: &str) -> usize {
        self.hooks().get(path).map_or(0, |h| h.throttled)
    }

    /// Waits (bounded by `timeout`) until `done` holds for the accepted messages of `path`.
    pub async fn wait_for(
        &self,
        path: &str,
        timeout: Duration,
        done: impl Fn(&[Accepted]) -> bool,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.accepted(path)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fake Slack: not done in {timeout:?}; accepted {:?}",
                self.accepted(path).len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn hooks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hook>> {
        self.shared.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn plain(status: StatusCode, body: &str, extra: Option<(header::HeaderName, String)>) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
    headers.insert(header::CONNECTION, "close".parse().unwrap());
    if let Some((k, v)) = extra {
        headers.insert(k, v.parse().unwrap());
    }
    (status, headers, body.to_string()).into_response()
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path((team, bot, secret)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let path = format!("{team}/{bot}/{secret}");
    let limits = shared.limits;
    let now = Instant::now();
    let mut hooks = shared.hooks.lock().unwrap_or_else(|e| e.into_inner());
    let Some(hook) = hooks.get_mut(&path) else {
        return plain(StatusCode::NOT_FOUND, "no_service", None);
    };
    hook.requests.push(now);
    if hook.revoked {
        return plain(StatusCode::FORBIDDEN, "invalid_token", None);
    }
    let recent = hook
        .requests
        .iter()
        .filter(|&&t| now.duration_since(t) < limits.period)
        .count();
    let muted = hook.muted_until.is_some_and(|until| now < until);
    if hook.forced_429 > 0 || muted || recent > limits.limit {
        hook.forced_429 = hook.forced_429.saturating_sub(1);
        hook.throttled += 1;
        if !muted {
            hook.muted_until = Some(now + Duration::from_secs(limits.retry_after_secs));
        }
        let wait = hook.muted_until.map_or(limits.retry_after_secs, |u| {
            u.duration_since(now).as_secs().max(1)
        });
        return plain(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            Some((header::RETRY_AFTER, wait.to_string())),
        );
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return plain(StatusCode::BAD_REQUEST, "invalid_payload", None);
    };
    let Some(text) = json
        .get("text")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
    else {
        return plain(StatusCode::BAD_REQUEST, "no_text", None);
    };
    if text.chars().count() > MAX_TEXT_CHARS {
        return plain(StatusCode::BAD_REQUEST, "invalid_payload", None);
    }
    hook.accepted.push(Accepted {
        text: text.to_string(),
        at: now,
    });
    plain(StatusCode::OK, "ok", None)
}
