//! The HTTP API (axum). Every error is JSON `{"error": "..."}` that says what was wrong and where.
//! [`guard`] decides which requests reach it at all.
//!
//! Handlers return `Result<Json<T>, ApiError>` with `T` from [`crate::api`]: domain errors
//! become answers in one place (the `From` impls on [`ApiError`]), so a status code and a
//! message cannot drift apart between two routes that meet the same error.

mod digests;
mod gate;
pub mod guard;
mod ingest;
pub mod listen;
mod ops;
mod ui;

use digests::{get_dead, get_digest, list_digests, post_redeliver, post_replay};
use ingest::{post_alertmanager, post_alerts};
pub use ops::send_test;
use ops::{get_healthz, get_metrics, get_status, post_move, post_reload, post_test};

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::alert::{AlertError, parse_body};

use crate::alertmanager;
use crate::config::{Config, redact_url};
use crate::delivery::RobotHandle;
use crate::limit::Clock;
use crate::store::{Claim, DigestRecord, DigestState, ReplayError, Store, StoreError};
use crate::supervisor::{Control, Live, LiveCell, MoveError, ReloadError};

/// Shared by every request. axum clones the state for the handler and for each middleware, so it
/// is one `Arc`: a profile of 64 clients posting single alerts spent 2.8 % of the daemon's
/// samples dropping the clones of the plain struct.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
    /// The running config, robots and store; replaced whole by reloads and store restarts.
    pub live: LiveCell,
    pub clock: Clock,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub control: Control,
    /// The address sluice listens on (the Host rule applies on loopback).
    pub local: std::net::SocketAddr,
}

/// One request's view: the [`Live`] snapshot taken when it started, with the store open.
pub(crate) struct Ctx {
    config: Arc<Config>,
    robots: Arc<BTreeMap<String, RobotHandle>>,
    store: Arc<dyn Store>,
    clock: Clock,
}

impl AppState {
    /// This request's view and its body, of at most `server.max_body` (the POST routes that
    /// act on digests).
    async fn ctx_with_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<(Ctx, Bytes), ApiError> {
        let ctx = self.ctx()?;
        let bytes = read_body(headers, body, ctx.config.server.max_body).await?;
        Ok((ctx, bytes))
    }

    /// This request's view, or a 503 while the store is being reopened.
    fn ctx(&self) -> Result<Ctx, ApiError> {
        let Live {
            config,
            robots,
            store,
            ..
        } = self.live.get();
        match store {
            Ok(store) => Ok(Ctx {
                config,
                robots,
                store,
                clock: self.clock,
            }),
            Err(why) => Err(ApiError::unavailable(why)),
        }
    }
}

/// The API. Tests can drive it with `tower::ServiceExt::oneshot` or over a socket.
pub fn router(state: AppState) -> Router {
    let ingest = Router::new()
        .route("/v1/alerts", post(post_alerts))
        .route("/v1/alertmanager", post(post_alertmanager))
        .route_layer(gate::Count::new(state.clone()));
    let api = Router::new()
        .merge(ingest)
        .route("/metrics", get(get_metrics))
        .route("/v1/status", get(get_status))
        .route("/v1/digests", get(list_digests))
        .route("/v1/digests/{id}", get(get_digest))
        .route("/v1/digests/{id}/redeliver", post(post_redeliver))
        .route("/v1/dead", get(get_dead))
        .route("/v1/dead/replay", post(post_replay))
        .route("/v1/queue/move", post(post_move))
        .route("/v1/robots/{name}/test", post(post_test))
        .route("/-/reload", post(post_reload))
        .route_layer(gate::Token(state.clone()));
    // The robot platforms' own webhook paths: each checks its own token, not the bearer token.
    let doors = crate::frontdoor::router(crate::frontdoor::Door {
        live: state.live.clone(),
        clock: state.clock,
        tokens: Default::default(),
    })
    .route_layer(gate::Count::new(state.clone()));
    Router::new()
        .merge(api)
        .merge(doors)
        .merge(ui::router(state.clone()))
        .route("/healthz", get(get_healthz))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; see README for the API",
            )
        })
        .layer(gate::Guard(state.clone()))
        .with_state(state)
}

/// Every answer that is not a success: a status, the message for `{"error": ...}`, and the
/// headers that go with it (`Retry-After` on a 503).
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    pub(crate) message: String,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    /// A body other than `{"error": message}` (it then carries `error` itself).
    body: Option<Box<Value>>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
            body: None,
        }
    }

    /// 503 with `Retry-After: 5`: the same request may succeed in a moment.
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, message)
            .with_header(header::RETRY_AFTER, HeaderValue::from_static("5"))
    }

    /// 422: the request names something that cannot be.
    pub fn unprocessable(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, message)
    }

    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> ApiError {
        self.headers.push((name, value));
        self
    }

    /// Answers `body` (which should carry an `error` field) instead of `{"error": message}`.
    pub fn with_body(mut self, body: Value) -> ApiError {
        self.body = Some(Box::new(body));
        self
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    /// The JSON body this error answers.
    pub fn body(&self) -> Value {
        match &self.body {
            Some(b) => (**b).clone(),
            None => json!({ "error": self.message }),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = match self.body {
            Some(body) => (self.status, Json(*body)).into_response(),
            None => {
                let body = crate::api::ErrorBody {
                    error: self.message,
                };
                (self.status, Json(body)).into_response()
            }
        };
        for (name, value) in self.headers {
            r.headers_mut().insert(name, value);
        }
        r
    }
}

impl From<crate::ingest::IngestError> for ApiError {
    fn from(e: crate::ingest::IngestError) -> ApiError {
        use crate::ingest::IngestError as E;
        match &e {
            E::UnknownRobot { .. } | E::Unroutable { .. } => ApiError::unprocessable(e.to_string()),
            E::Claim(Claim::InFlight) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            E::Claim(Claim::Reused) => ApiError::unprocessable(e.to_string()),
            E::Claim(Claim::Store(_)) | E::Full { .. } | E::Store(_) | E::NotDurable(_) => {
                ApiError::unavailable(e.to_string())
            }
        }
    }
}

impl From<AlertError> for ApiError {
    fn from(e: AlertError) -> ApiError {
        match e {
            AlertError::Malformed(_) => ApiError::new(StatusCode::BAD_REQUEST, e.to_string()),
            AlertError::Invalid { .. } => ApiError::unprocessable(e.to_string()),
        }
    }
}

/// A replay or re-delivery refused: 404 for a digest that is not there, 409 for one in the
/// wrong state, 503 when the store cannot say.
impl From<ReplayError> for ApiError {
    fn from(e: ReplayError) -> ApiError {
        match e {
            ReplayError::NotFound(_) => ApiError::new(StatusCode::NOT_FOUND, e.to_string()),
            ReplayError::NotDead(..) | ReplayError::NotSent(..) => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            ReplayError::Store(_) | ReplayError::NotDurable(_) => {
                ApiError::unavailable(e.to_string())
            }
        }
    }
}

impl From<ReloadError> for ApiError {
    fn from(e: ReloadError) -> ApiError {
        match e {
            ReloadError::NoFile => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            ReloadError::Invalid(_) => ApiError::unprocessable(e.to_string()),
            ReloadError::Busy(_) => ApiError::unavailable(e.to_string()),
        }
    }
}

impl From<MoveError> for ApiError {
    fn from(e: MoveError) -> ApiError {
        match e {
            MoveError::Configured(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            MoveError::UnknownTarget(..) | MoveError::NothingQueued(_) => {
                ApiError::unprocessable(e.to_string())
            }
            MoveError::Busy(_) | MoveError::Store(_) => ApiError::unavailable(e.to_string()),
        }
    }
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into_response()
}

/// 422 for a robot name that is not configured, listing the ones that are.
fn unknown_robot(state: &Ctx, field: &str, name: &str) -> ApiError {
    ApiError::unprocessable(format!(
        "{field}: unknown robot {name:?}; configured robots: {}",
        state.config.robot_names()
    ))
}

/// A JSON body whose fields are all optional: empty means `T::default()`. `shape` tells the
/// client what was expected.
fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    shape: &str,
) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::unprocessable(format!("expected {shape}: {e}")))
}

/// Whether the request carries `Authorization: Bearer <one of tokens>`.
fn bearer_ok(headers: &HeaderMap, tokens: &[String]) -> bool {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    is_token(tokens, presented)
}

/// Whether `presented` is one of `tokens`, compared against every token without stopping early,
/// so timing tells nothing.
fn is_token(tokens: &[String], presented: &str) -> bool {
    tokens.iter().fold(false, |acc, t| {
        acc | constant_time_eq(t.as_bytes(), presented.as_bytes())
    })
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads a body, honouring `server.max_body`.
/// Alertmanager sends whole groups and cannot split them: it gets at least this much room, so a
/// large group is not refused with a 4xx it would resend forever.
const ALERTMANAGER_MIN_BODY: usize = 16 << 20;

async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ApiError> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > max
    {
        return Err(too_large(len, max));
    }
    to_bytes(body, max).await.map_err(|e| {
        // The body failed: its deadline passed (408), or it outgrew `max` (413).
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(t) = c.downcast_ref::<listen::BodyTimeout>() {
                return listen::body_timeout_error(t);
            }
            cause = c.source();
        }
        too_large(max + 1, max)
    })
}

fn too_large(len: usize, max: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "request body of {len} bytes exceeds server.max_body ({max} bytes); send fewer alerts per request"
        ),
    )
}
