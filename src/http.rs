//! The HTTP API (axum). Every error is JSON `{"error": "..."}` that says what was wrong and where.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::{Body, to_bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::alert::{Alert, AlertError, parse_body};
use crate::config::{Config, redact_url};
use crate::limit::Clock;
use crate::robot::RobotHandle;
use crate::store::{DigestState, Store};

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<Store>,
    pub robots: Arc<BTreeMap<String, RobotHandle>>,
    pub clock: Clock,
}

/// The API. Tests can drive it with `tower::ServiceExt::oneshot` or over a socket.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/v1/alerts", post(post_alerts))
        .route("/v1/status", get(get_status))
        .route("/v1/digests/{id}", get(get_digest))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(api)
        .route("/healthz", get(|| async { "ok\n" }))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; see README for the API",
            )
        })
        .with_state(state)
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

fn unavailable(message: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let tokens = &state.config.server.auth_tokens;
    if tokens.is_empty() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Compare against every token without stopping early, so timing tells nothing.
    let ok = tokens.iter().fold(false, |acc, t| {
        acc | constant_time_eq(t.as_bytes(), presented.as_bytes())
    });
    if ok {
        next.run(request).await
    } else {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token; send Authorization: Bearer <token> (one of server.auth_tokens)",
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"sluice\""),
        );
        r
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn post_alerts(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let max = state.config.server.max_body;
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > max
    {
        return too_large(len, max);
    }
    let bytes = match to_bytes(body, max).await {
        Ok(b) => b,
        Err(_) => return too_large(max + 1, max),
    };
    let now = state.clock.now_ms();
    let incoming = match parse_body(&bytes, now) {
        Ok(a) => a,
        Err(e @ AlertError::Malformed(_)) => return error(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e @ AlertError::Invalid { .. }) => {
            return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
        }
    };

    // Resolve every robot before writing anything: a batch is accepted whole or not at all.
    let single = (state.robots.len() == 1)
        .then(|| state.robots.keys().next())
        .flatten();
    // Per robot: the alerts, and their positions in the request (for the ids' order).
    let mut by_robot: HashMap<&str, (Vec<Alert>, Vec<usize>)> = HashMap::new();
    let n = incoming.len();
    for (i, inc) in incoming.into_iter().enumerate() {
        let path = if n == 1 {
            "robot".to_string()
        } else {
            format!("[{i}].robot")
        };
        let robot = match inc.robot.as_deref() {
            Some(r) => match state.robots.get_key_value(r) {
                Some((k, _)) => k.as_str(),
                None => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "{path}: unknown robot {r:?}; configured robots: {}",
                            state.config.robot_names()
                        ),
                    );
                }
            },
            None => match single {
                Some(only) => only.as_str(),
                None => {
                    return error(
                        StatusCode::UNPROCESSABLE_ENTITY,
                        format!(
                            "{path}: missing; name the robot to deliver to (configured robots: {})",
                            state.config.robot_names()
                        ),
                    );
                }
            },
        };
        let (alerts, positions) = by_robot.entry(robot).or_default();
        alerts.push(inc.alert);
        positions.push(i);
    }

    let mut ids = vec![String::new(); n];
    for (robot, (alerts, positions)) in &by_robot {
        match state.store.append(robot, alerts) {
            Ok(seqs) => {
                for (&i, seq) in positions.iter().zip(seqs) {
                    ids[i] = format!("{robot}:{seq}");
                }
            }
            Err(e) => {
                tracing::error!("ingest: {e}");
                return unavailable(format!("the store cannot accept alerts right now: {e}"));
            }
        }
    }
    if let Err(e) = state.store.commit().await {
        tracing::error!("ingest: {e}");
        return unavailable(format!(
            "the store cannot make alerts durable right now: {e}"
        ));
    }
    for robot in by_robot.keys() {
        if let Some(h) = state.robots.get(*robot) {
            h.wake.notify_one();
        }
    }
    (
        StatusCode::ACCEPTED,
        Json(json!({"accepted": n, "ids": ids})),
    )
        .into_response()
}

fn too_large(len: usize, max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "request body of {len} bytes exceeds server.max_body ({max} bytes); send fewer alerts per request"
        ),
    )
}

async fn get_status(State(state): State<AppState>) -> Response {
    let now = state.clock.now_ms();
    let mut robots = Vec::new();
    for (name, h) in state.robots.iter() {
        let s = h.status();
        let t = &h.config.timing;
        let period_ms = t.rate_period.as_millis() as i64;
        let pending = state.store.pending(name).unwrap_or(0);
        let oldest = state.store.oldest_pending_ms(name).ok().flatten();
        robots.push(json!({
            "robot": name,
            "provider": h.config.provider.as_str(),
            "webhook": h.config.webhook.as_deref().map(redact_url),
            "state": s.state,
            "since_ms": s.since_ms,
            "pending": pending,
            "oldest_pending_age_ms": oldest.map(|o| (now - o).max(0)),
            "outbox": s.outbox,
            "sends_in_period": s.recent_sends.iter().filter(|&&t| t > now - period_ms).count(),
            "rate_limit": t.rate_limit,
            "rate_period": humantime::format_duration(t.rate_period).to_string(),
            "window": humantime::format_duration(t.window).to_string(),
            "digests_sent": s.digests_sent,
            "alerts_delivered": s.alerts_delivered,
            "dead": s.dead,
            "last_error": s.last_error,
            "last_error_ms": s.last_error_ms,
            "next_attempt_ms": s.next_attempt_ms,
        }));
    }
    let stats = state.store.commit_stats();
    use std::sync::atomic::Ordering::Relaxed;
    Json(json!({
        "robots": robots,
        "store": {
            "data_dir": state.store.dir().display().to_string(),
            "size_on_disk": state.store.size_on_disk(),
            "commits": stats.flushes.load(Relaxed),
            "commit_requests": stats.requests.load(Relaxed),
            "largest_commit_batch": stats.largest_batch.load(Relaxed),
        },
    }))
    .into_response()
}

async fn get_digest(State(state): State<AppState>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.trim_start_matches('#').parse::<u64>() else {
        return error(
            StatusCode::BAD_REQUEST,
            format!("digest id {id:?} is not a number"),
        );
    };
    let d = match state.store.digest(id) {
        Ok(Some(d)) => d,
        Ok(None) => {
            return error(
                StatusCode::NOT_FOUND,
                format!(
                    "no digest #{id}: never sealed, or delivered longer ago than its robot's retention"
                ),
            );
        }
        Err(e) => return unavailable(format!("cannot read digest #{id}: {e}")),
    };
    let alerts = match state.store.digest_alerts(&d) {
        Ok(a) => a,
        Err(e) => return unavailable(format!("cannot read digest #{id}: {e}")),
    };
    let alerts: Vec<Value> = alerts
        .into_iter()
        .map(|(seq, a)| {
            let mut v = serde_json::to_value(&a).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut v {
                m.insert("id".into(), json!(format!("{}:{seq}", d.robot)));
            }
            v
        })
        .collect();
    Json(json!({
        "id": d.id,
        "robot": d.robot,
        "state": d.state.as_str(),
        "alerts_count": d.count(),
        "listed": d.listed,
        "counts": d.counts,
        "attempts": d.attempts,
        "sealed_ms": d.sealed_ms,
        "sent_ms": d.sent_ms,
        "last_error": d.last_error,
        "title": d.title,
        "text": (d.state != DigestState::Sent).then_some(&d.text),
        "alerts": alerts,
    }))
    .into_response()
}
