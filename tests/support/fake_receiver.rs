//! A fake generic webhook receiver (a Mattermost- or Discord-like endpoint) for integration
//! tests, independent of sluice's code: `POST /hooks/<id>` with a bearer token, a body cap, and
//! a rolling limit answered 429 with `Retry-After`; it records what it accepted.

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

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub limit: usize,
    pub period: Duration,
    /// Bodies larger than this are answered 413.
    pub max_body: usize,
}

#[derive(Debug, Clone)]
pub struct Accepted {
    pub body: Value,
    pub bytes: usize,
    pub at: Instant,
}

#[derive(Default)]
struct Hook {
    token: String,
    requests: Vec<Instant>,
    accepted: Vec<Accepted>,
    /// Status codes answered so far that were not 200.
    refused: Vec<u16>,
    /// Answer the next requests with this status (injected by a test).
    forced: Vec<u16>,
}

struct Shared {
    limits: Limits,
    hooks: Mutex<HashMap<String, Hook>>,
}

pub struct FakeReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for FakeReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeReceiver {
    pub async fn start(limits: Limits) -> FakeReceiver {
        let shared = Arc::new(Shared {
            limits,
            hooks: Mutex::new(HashMap::new()),
        });
        let app = Router::new()
            .route("/hooks/{id}", post(handle))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the fake receiver");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the fake receiver serves");
        });
        FakeReceiver { addr, shared, task }
    }

    /// A hook that takes `Authorization: Bearer <token>`.
    pub fn add_hook(&self, id: &str, token: &str) {
        self.hooks().insert(
            id.to_string(),
            Hook {
                token: token.to_string(),
                ..Hook::default()
            },
        );
    }

    pub fn url(&self, id: &str) -> String {
        format!("http://{}/hooks/{id}", self.addr)
    }

    /// The next requests to `id` are answered with these statuses, in order.
    pub fn force(&self, id: &str, statuses: &[u16]) {
        if let Some(h) = self.hooks().get_mut(id) {
            h.forced = statuses.to_vec();
        }
    }

    pub fn accepted(&self, id: &str) -> Vec<Accepted> {
        self.hooks()
            .get(id)
            .map(|h| h.accepted.clone())
            .unwrap_or_default()
    }

    pub fn refused(&self, id: &str) -> Vec<u16> {
        self.hooks()
            .get(id)
            .map(|h| h.refused.clone())
            .unwrap_or_default()
    }

    pub fn requests(&self, id: &str) -> usize {
        self.hooks().get(id).map_or(0, |h| h.requests.len())
    }

    /// Waits (bounded by `timeout`) until `done` holds for the accepted bodies of `id`.
    pub async fn wait_for(&self, id: &str, timeout: Duration, done: impl Fn(&[Accepted]) -> bool) {
        let deadline = Instant::now() + timeout;
        while !done(&self.accepted(id)) {
            assert!(
                Instant::now() < deadline,
                "fake receiver: not done in {timeout:?}; accepted {}, refused {:?}",
                self.accepted(id).len(),
                self.refused(id)
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn hooks(&self) -> std::sync::MutexGuard<'_, HashMap<String, Hook>> {
        self.shared.hooks.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let limits = shared.limits;
    let now = Instant::now();
    let mut hooks = shared.hooks.lock().unwrap_or_else(|e| e.into_inner());
    let Some(hook) = hooks.get_mut(&id) else {
        return (StatusCode::NOT_FOUND, "no such hook").into_response();
    };
    hook.requests.push(now);
    let refuse =
        |hook: &mut Hook, status: StatusCode, extra: Option<(header::HeaderName, &str)>| {
            hook.refused.push(status.as_u16());
            let mut h = HeaderMap::new();
            if let Some((k, v)) = extra {
                h.insert(k, v.parse().unwrap());
            }
            (status, h, status.canonical_reason().unwrap_or("")).into_response()
        };
    if !hook.forced.is_empty() {
        let status = StatusCode::from_u16(hook.forced.remove(0)).unwrap();
        return refuse(hook, status, None);
    }
    let bearer = format!("Bearer {}", hook.token);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&bearer)
    {
        return refuse(hook, StatusCode::UNAUTHORIZED, None);
    }
    let recent = hook
        .requests
        .iter()
        .filter(|&&t| now.duration_since(t) < limits.period)
        .count();
    if recent > limits.limit {
        return refuse(
            hook,
            StatusCode::TOO_MANY_REQUESTS,
            Some((header::RETRY_AFTER, "1")),
        );
    }
    if body.len() > limits.max_body {
        return refuse(hook, StatusCode::PAYLOAD_TOO_LARGE, None);
    }
    if headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        != Some("application/json")
    {
        return refuse(hook, StatusCode::UNSUPPORTED_MEDIA_TYPE, None);
    }
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return refuse(hook, StatusCode::BAD_REQUEST, None);
    };
    hook.accepted.push(Accepted {
        body: json,
        bytes: body.len(),
        at: now,
    });
    (StatusCode::OK, "").into_response()
}
