//! The HTTP API (axum). Every error is JSON `{"error": "..."}` that says what was wrong and where.
//! [`guard`] decides which requests reach it at all.

pub mod guard;
pub mod listen;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::alert::{Alert, AlertError, parse_body};

use crate::alertmanager;
use crate::config::{Config, redact_url};
use crate::delivery::RobotHandle;
use crate::limit::Clock;
use crate::route::Subject;
use crate::store::{Claim, DigestRecord, DigestState, ReplayError, Slot, Store};
use crate::supervisor::{Control, Live, LiveCell, MoveError, ReloadError};

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// The running config, robots and store; replaced whole by reloads and store restarts.
    pub live: LiveCell,
    pub clock: Clock,
    pub metrics: Arc<crate::metrics::Metrics>,
    pub control: Control,
    /// The address sluice listens on (the Host rule applies on loopback).
    pub local: std::net::SocketAddr,
}

/// One request's view: the [`Live`] snapshot taken when it started, with the store open.
struct Ctx {
    config: Arc<Config>,
    robots: Arc<BTreeMap<String, RobotHandle>>,
    store: Arc<Store>,
    clock: Clock,
}

impl AppState {
    /// This request's view, or a 503 while the store is being reopened.
    fn ctx(&self) -> Result<Ctx, Rejection> {
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
            Err(why) => Err(Box::new(unavailable(why))),
        }
    }
}

/// The API. Tests can drive it with `tower::ServiceExt::oneshot` or over a socket.
pub fn router(state: AppState) -> Router {
    let ingest = Router::new()
        .route("/v1/alerts", post(post_alerts))
        .route("/v1/alertmanager", post(post_alertmanager))
        .route_layer(middleware::from_fn_with_state(state.clone(), count_ingest));
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
        .route("/-/reload", post(post_reload))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .merge(api)
        .route("/healthz", get(get_healthz))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such route; see README for the API",
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            guard_requests,
        ))
        .with_state(state)
}

/// Turns away what [`guard::check`] refuses, before any route (or token check) sees it.
async fn guard_requests(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let config = app.live.get().config;
    match guard::check(
        request.method(),
        request.headers(),
        app.local,
        &config.server,
    ) {
        Ok(()) => next.run(request).await,
        Err(r) => error(r.status, r.message),
    }
}

pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// 422 for a robot name that is not configured, listing the ones that are.
fn unknown_robot(state: &Ctx, field: &str, name: &str) -> Response {
    error(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!(
            "{field}: unknown robot {name:?}; configured robots: {}",
            state.config.robot_names()
        ),
    )
}

/// A JSON body whose fields are all optional: empty means `T::default()`. `shape` tells the
/// client what was expected.
fn optional_json<T: serde::de::DeserializeOwned + Default>(
    body: &[u8],
    shape: &str,
) -> Result<T, Rejection> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("expected {shape}: {e}"),
        ))
    })
}

/// The digests in `state` (of `robot`, if given) for which `keep` holds, oldest first.
fn digests_in(
    state: &Ctx,
    wanted: DigestState,
    robot: Option<&str>,
    keep: impl Fn(&DigestRecord) -> bool,
) -> Result<Vec<DigestRecord>, Rejection> {
    let mut out = Vec::new();
    for d in state.store.digests() {
        let d = d.map_err(|e| Box::new(unavailable(format!("cannot read the digests: {e}"))))?;
        if d.state == wanted && robot.is_none_or(|r| r == d.robot) && keep(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

fn unavailable(message: String) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    r
}

async fn require_token(State(app): State<AppState>, request: Request, next: Next) -> Response {
    let config = app.live.get().config;
    let tokens = &config.server.auth_tokens;
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

/// An error answer on its way out of a helper (boxed: a `Response` is large).
type Rejection = Box<Response>;

/// Reads a body, honouring `server.max_body`.
/// Alertmanager sends whole groups and cannot split them: it gets at least this much room, so a
/// large group is not refused with a 4xx it would resend forever.
const ALERTMANAGER_MIN_BODY: usize = 16 << 20;

async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, Rejection> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > max
    {
        return Err(Box::new(too_large(len, max)));
    }
    to_bytes(body, max).await.map_err(|e| {
        // The body failed: its deadline passed (408), or it outgrew `max` (413).
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(c) = cause {
            if let Some(t) = c.downcast_ref::<listen::BodyTimeout>() {
                return Box::new(listen::body_timeout_response(t));
            }
            cause = c.source();
        }
        Box::new(too_large(max + 1, max))
    })
}

fn rejected(e: AlertError) -> Response {
    match e {
        AlertError::Malformed(_) => error(StatusCode::BAD_REQUEST, e.to_string()),
        AlertError::Invalid { .. } => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// One alert bound for one robot (an alert routed to several robots becomes several).
struct Bound {
    robot: String,
    alert: Alert,
    dedup_key: Option<String>,
}

/// The robots an alert goes to: its own `robot` (or the request's), else the routes, else the
/// only configured robot. `path` names the alert in errors.
fn resolve(
    state: &Ctx,
    robot: Option<&str>,
    alert: &Alert,
    path: &str,
) -> Result<Vec<String>, Rejection> {
    let names = || state.config.robot_names();
    if let Some(r) = robot {
        return if state.robots.contains_key(r) {
            Ok(vec![r.to_string()])
        } else {
            Err(Box::new(unknown_robot(state, path, r)))
        };
    }
    let routes = &state.config.routes;
    let routed = routes.route(&Subject {
        labels: &alert.labels,
        severity: alert.severity.as_str(),
        source: alert.source.as_deref(),
    });
    if !routed.is_empty() {
        return Ok(routed);
    }
    if routes.is_empty() && state.robots.len() == 1 {
        return Ok(state.robots.keys().cloned().collect());
    }
    let why = if routes.is_empty() {
        "missing; name the robot to deliver to"
    } else {
        "missing, and the alert matches no route and there is no default_robot"
    };
    Err(Box::new(error(
        StatusCode::UNPROCESSABLE_ENTITY,
        format!("{path}: {why} (configured robots: {})", names()),
    )))
}

/// Queues bound alerts and waits until they are durable. Returns one id per bound alert, in
/// order (a duplicate gets the id it was first queued under), and how many were duplicates.
/// With an Idempotency-Key, its answer is recorded before the same flush, so a keyed request
/// costs no second fsync.
async fn enqueue(
    state: &Ctx,
    bound: &[Bound],
    idempotency_key: Option<(&str, &str)>,
) -> Result<(Vec<String>, usize), Rejection> {
    let now = state.clock.now_ms();
    let mut by_robot: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, b) in bound.iter().enumerate() {
        by_robot.entry(b.robot.as_str()).or_default().push(i);
    }
    // The pending cap is checked for every robot before anything is written.
    for (robot, positions) in &by_robot {
        let Some(h) = state.robots.get(*robot) else {
            continue;
        };
        let cap = h.config.timing.max_pending;
        let pending = state.store.pending(robot).map_err(|e| {
            Box::new(unavailable(format!(
                "the store cannot accept alerts right now: {e}"
            )))
        })?;
        if pending + positions.len() as u64 > cap {
            return Err(Box::new(unavailable(format!(
                "robot {robot} already has {pending} alerts pending (max_pending = {cap}); retry later"
            ))));
        }
    }
    let mut ids = vec![String::new(); bound.len()];
    let mut duplicates = 0;
    let mut woken = Vec::new();
    for (robot, positions) in &by_robot {
        let keyed: Vec<(&Alert, Option<&str>)> = positions
            .iter()
            .map(|&i| (&bound[i].alert, bound[i].dedup_key.as_deref()))
            .collect();
        let window = state
            .robots
            .get(*robot)
            .map_or(Duration::ZERO, |h| h.config.timing.retention);
        let slots = state
            .store
            .append_keyed(robot, &keyed, now, window)
            .map_err(|e| {
                tracing::error!("ingest: {e}");
                Box::new(unavailable(format!(
                    "the store cannot accept alerts right now: {e}"
                )))
            })?;
        let mut new = 0u64;
        for (&i, slot) in positions.iter().zip(&slots) {
            ids[i] = format!("{robot}:{}", slot.seq());
            match slot {
                Slot::New(_) => new += 1,
                Slot::Duplicate(_) => duplicates += 1,
            }
        }
        if let Some(h) = state.robots.get(*robot) {
            let dropped = positions.len() as u64 - new;
            h.metrics.received.increment(new);
            h.metrics.duplicates.increment(dropped);
            if dropped > 0 {
                h.count_duplicates(dropped);
            }
            if new > 0 {
                woken.push(h.wake.clone());
            }
        }
    }
    if let Some((key, fingerprint)) = idempotency_key
        && let Err(e) = state.store.finish_request(key, fingerprint, &ids, now)
    {
        // The alerts are queued either way; a retry would then be processed again.
        tracing::warn!("cannot record the Idempotency-Key answer: {e}");
    }
    state.store.commit().await.map_err(|e| {
        tracing::error!("ingest: {e}");
        unavailable(format!(
            "the store cannot make alerts durable right now: {e}"
        ))
    })?;
    for w in woken {
        w.notify_one();
    }
    Ok((ids, duplicates))
}

const IDEMPOTENCY_KEY: &str = "idempotency-key";

async fn post_alerts(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let state = match app.ctx() {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let bytes = match read_body(&headers, body, state.config.server.max_body).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let now = state.clock.now_ms();
    let incoming = match parse_body(&bytes, now) {
        Ok(a) => a,
        Err(e) => return rejected(e),
    };
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 256 => Some(k.to_string()),
        Some(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key header: expected 1 to 256 visible ASCII characters",
            );
        }
    };

    // Resolve every robot before writing anything: a batch is accepted whole or not at all.
    let n = incoming.len();
    let most = state.config.server.max_alerts_per_request;
    if n > most {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{n} alerts in one request, at most {most} (server.max_alerts_per_request); send them in smaller batches"
            ),
        );
    }
    let mut bound = Vec::with_capacity(n);
    for (i, inc) in incoming.into_iter().enumerate() {
        let path = if n == 1 {
            "robot".to_string()
        } else {
            format!("[{i}].robot")
        };
        let robots = match resolve(&state, inc.robot.as_deref(), &inc.alert, &path) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        let last = robots.len() - 1;
        let mut alert = Some(inc.alert);
        for (j, robot) in robots.into_iter().enumerate() {
            let alert = if j == last {
                alert.take().expect("moved once, at the last robot")
            } else {
                alert.clone().expect("still here before the last robot")
            };
            bound.push(Bound {
                robot,
                alert,
                dedup_key: inc.dedup_key.clone(),
            });
        }
    }

    let fingerprint = crate::store::request_fingerprint(&bytes);
    if let Some(key) = &idempotency_key {
        let window = state
            .robots
            .values()
            .map(|h| h.config.timing.retention)
            .max()
            .unwrap_or_default();
        match state.store.claim_request(key, &fingerprint, now, window) {
            Ok(None) => {}
            Ok(Some(ids)) => {
                return accepted(n, ids.len(), ids);
            }
            Err(e @ Claim::InFlight) => return error(StatusCode::CONFLICT, e.to_string()),
            Err(e @ Claim::Reused) => {
                return error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string());
            }
            Err(Claim::Store(e)) => {
                return unavailable(format!("the store cannot accept alerts right now: {e}"));
            }
        }
    }
    let keyed = idempotency_key
        .as_deref()
        .map(|k| (k, fingerprint.as_str()));
    match enqueue(&state, &bound, keyed).await {
        Ok((ids, duplicates)) => accepted(n, duplicates, ids),
        Err(resp) => {
            if let Some(key) = &idempotency_key {
                state.store.release_request(key);
            }
            *resp
        }
    }
}

fn accepted(n: usize, duplicates: usize, ids: Vec<String>) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({"accepted": n, "duplicates": duplicates, "ids": ids})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct AlertmanagerQuery {
    robot: Option<String>,
}

/// Alertmanager's webhook (payload version 4). 2xx only once durable; 5xx when the store cannot
/// take it (Alertmanager retries those); 4xx only for a payload that can never succeed.
async fn post_alertmanager(
    State(app): State<AppState>,
    Query(query): Query<AlertmanagerQuery>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let state = match app.ctx() {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let max = state.config.server.max_body.max(ALERTMANAGER_MIN_BODY);
    let bytes = match read_body(&headers, body, max).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let now = state.clock.now_ms();
    let notification =
        match alertmanager::parse_notification(&bytes, now, &state.config.severity_map) {
            Ok(n) => n,
            Err(e) => return rejected(e),
        };
    let robot = query.robot.as_deref().filter(|r| !r.is_empty());
    let mut bound = Vec::new();
    let n = notification.alerts.len();
    for (i, am) in notification.alerts.into_iter().enumerate() {
        let path = match robot {
            Some(_) => "robot (query parameter)".to_string(),
            None => format!("alerts[{i}]"),
        };
        let robots = match resolve(&state, robot, &am.alert, &path) {
            Ok(r) => r,
            Err(resp) => return *resp,
        };
        for r in robots {
            bound.push(Bound {
                robot: r,
                alert: am.alert.clone(),
                dedup_key: Some(am.dedup_key.clone()),
            });
        }
    }
    match enqueue(&state, &bound, None).await {
        Ok((ids, duplicates)) => accepted(n, duplicates, ids),
        Err(resp) => *resp,
    }
}

fn too_large(len: usize, max: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!(
            "request body of {len} bytes exceeds server.max_body ({max} bytes); send fewer alerts per request"
        ),
    )
}

/// Each robot's state, queue and rate use; robots removed from the config that still have
/// alerts queued; the store. Answers even while the store is being reopened (`store.error`).
async fn get_status(State(app): State<AppState>) -> Response {
    let live = app.live.get();
    let store = live.store.as_ref().ok();
    let now = app.clock.now_ms();
    let mut robots = Vec::new();
    for (name, h) in live.robots.iter() {
        let s = h.status();
        let t = &h.config.timing;
        let period_ms = t.rate_period.as_millis() as i64;
        let pending = store.and_then(|st| st.pending(name).ok());
        let oldest = store.and_then(|st| st.oldest_pending_ms(name).ok().flatten());
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
            "duplicates_dropped": s.duplicates_dropped,
            "last_error": s.last_error,
            "last_error_ms": s.last_error_ms,
            "next_attempt_ms": s.next_attempt_ms,
        }));
    }
    let unconfigured: Vec<Value> = live
        .orphans
        .iter()
        .map(|(name, o)| {
            json!({
                "robot": name,
                "pending": o.pending,
                "digests": o.digests,
                "digest_alerts": o.digest_alerts,
            })
        })
        .collect();
    let store_status = match &live.store {
        Ok(store) => {
            let stats = store.commit_stats();
            use std::sync::atomic::Ordering::Relaxed;
            json!({
                "data_dir": store.dir().display().to_string(),
                "size_on_disk": store.size_on_disk(),
                "commits": stats.flushes.load(Relaxed),
                "commit_requests": stats.requests.load(Relaxed),
                "largest_commit_batch": stats.largest_batch.load(Relaxed),
                "error": null,
            })
        }
        Err(why) => json!({
            "data_dir": live.config.server.data_dir.display().to_string(),
            "error": why,
        }),
    };
    Json(json!({
        "robots": robots,
        "unconfigured": unconfigured,
        "store": store_status,
        "faults": live.faults.list(),
        "config": live.config.origin,
    }))
    .into_response()
}

async fn get_digest(State(app): State<AppState>, Path(id): Path<String>) -> Response {
    let state = match app.ctx() {
        Ok(c) => c,
        Err(r) => return *r,
    };
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

#[derive(Deserialize)]
struct DeadQuery {
    robot: Option<String>,
}

fn dead_entry(d: &DigestRecord) -> Value {
    json!({
        "id": d.id,
        "robot": d.robot,
        "alerts": d.count(),
        "title": d.title,
        "attempts": d.attempts,
        "sealed_ms": d.sealed_ms,
        "last_error": d.last_error,
    })
}

/// Dead digests (refused for good by their robot), oldest first, optionally of one robot.
async fn get_dead(State(app): State<AppState>, Query(q): Query<DeadQuery>) -> Response {
    let state = match app.ctx() {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match digests_in(&state, DigestState::Dead, q.robot.as_deref(), |_| true) {
        Ok(dead) => {
            Json(json!({"dead": dead.iter().map(dead_entry).collect::<Vec<_>>()})).into_response()
        }
        Err(r) => *r,
    }
}

/// Which dead digests to replay, and where to. No `id` and no `robot`: all of them.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ReplayRequest {
    id: Option<u64>,
    robot: Option<String>,
    /// Queue the alerts for this robot instead of their own.
    to: Option<String>,
}

async fn post_replay(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let state = match app.ctx() {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let body = match read_body(&headers, body, state.config.server.max_body).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let req: ReplayRequest = match optional_json(
        &body,
        "{\"id\": N, \"robot\": \"R\", \"to\": \"OTHER\"} (all optional)",
    ) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    for (field, name) in [("robot", &req.robot), ("to", &req.to)] {
        if let Some(r) = name
            && !state.robots.contains_key(r)
        {
            return unknown_robot(&state, field, r);
        }
    }
    let ids: Vec<u64> = match req.id {
        Some(id) => vec![id],
        None => match digests_in(&state, DigestState::Dead, req.robot.as_deref(), |_| true) {
            Ok(dead) => dead.iter().map(|d| d.id).collect(),
            Err(r) => return *r,
        },
    };
    // Every target is checked before anything is replayed, so a request is done whole or not at all.
    let mut plan = Vec::with_capacity(ids.len());
    for id in ids {
        let target = match (&req.to, state.store.digest(id)) {
            (_, Ok(None)) => return error(StatusCode::NOT_FOUND, format!("no digest #{id}")),
            (_, Err(e)) => return unavailable(format!("cannot read digest #{id}: {e}")),
            (_, Ok(Some(d))) if d.state != DigestState::Dead => {
                return error(
                    StatusCode::CONFLICT,
                    ReplayError::NotDead(id, d.state).to_string(),
                );
            }
            (Some(to), Ok(Some(_))) => to.clone(),
            (None, Ok(Some(d))) => d.robot,
        };
        if !state.robots.contains_key(&target) {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "digest #{id} belongs to robot {target:?}, which is not configured; name one with \"to\" (configured robots: {})",
                    state.config.robot_names()
                ),
            );
        }
        plan.push((id, target));
    }
    let now = state.clock.now_ms();
    let mut replayed = Vec::new();
    let mut alerts = 0;
    for (id, target) in plan {
        match state.store.replay(id, &target, now) {
            Ok(d) => {
                alerts += d.count();
                if let Some(h) = state.robots.get(&d.robot) {
                    h.replayed_dead();
                }
                replayed.push(json!({"id": d.id, "alerts": d.count(), "to": target}));
            }
            Err(e @ ReplayError::NotFound(_)) => {
                return error(StatusCode::NOT_FOUND, e.to_string());
            }
            Err(e @ (ReplayError::NotDead(..) | ReplayError::NotSent(..))) => {
                return error(StatusCode::CONFLICT, e.to_string());
            }
            Err(ReplayError::Store(e)) => {
                return unavailable(format!("cannot replay digest #{id}: {e}"));
            }
        }
    }
    if let Err(e) = state.store.commit().await {
        return unavailable(format!("the replayed alerts are not durable: {e}"));
    }
    for r in &replayed {
        if let Some(h) = r["to"].as_str().and_then(|to| state.robots.get(to)) {
            h.wake.notify_one();
        }
    }
    Json(json!({"replayed": replayed, "alerts": alerts})).into_response()
}

/// Counts ingest requests by endpoint and answer.
async fn count_ingest(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let endpoint = request.uri().path().to_string();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    state
        .metrics
        .counter(
            "sluice_ingest_requests_total",
            &[("endpoint", endpoint.as_str()), ("status", status.as_str())],
        )
        .increment(1);
    response
}

/// Prometheus text format. The gauges describing the present are set here, at scrape time.
async fn get_metrics(State(app): State<AppState>) -> Response {
    let m = &app.metrics;
    let now = app.clock.now_ms();
    let live = app.live.get();
    let store = live.store.as_ref().ok();
    for (name, h) in live.robots.iter() {
        let r = [("robot", name.as_str())];
        let s = h.status();
        if let Some(store) = store {
            let pending = store.pending(name).unwrap_or(0);
            m.gauge("sluice_pending_alerts", &r).set(pending as f64);
            let age = store
                .oldest_pending_ms(name)
                .ok()
                .flatten()
                .map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
            m.gauge("sluice_oldest_pending_age_seconds", &r).set(age);
        }
        for st in crate::metrics::STATES {
            let on = if st == s.state { 1.0 } else { 0.0 };
            m.gauge(
                "sluice_robot_state",
                &[("robot", name.as_str()), ("state", st.as_str())],
            )
            .set(on);
        }
        let period_ms = h.config.timing.rate_period.as_millis() as i64;
        let in_period = s
            .recent_sends
            .iter()
            .filter(|&&t| t > now - period_ms)
            .count();
        m.gauge("sluice_sends_in_period", &r).set(in_period as f64);
        m.gauge("sluice_rate_limit", &r)
            .set(f64::from(h.config.timing.rate_limit));
        m.gauge("sluice_dead_digests", &r).set(s.dead as f64);
        m.gauge("sluice_outbox_digests", &r).set(s.outbox as f64);
    }
    // A removed robot's queue is still waiting for someone.
    for (name, o) in live.orphans.iter() {
        let r = [("robot", name.as_str())];
        m.gauge("sluice_pending_alerts", &r).set(o.pending as f64);
        m.gauge("sluice_outbox_digests", &r).set(o.digests as f64);
    }
    m.gauge("sluice_store_up", &[])
        .set(if store.is_some() { 1.0 } else { 0.0 });
    if let Some(store) = store {
        use std::sync::atomic::Ordering::Relaxed;
        let stats = store.commit_stats();
        m.counter("sluice_commit_flushes_total", &[])
            .absolute(stats.flushes.load(Relaxed));
        m.counter("sluice_commit_requests_total", &[])
            .absolute(stats.requests.load(Relaxed));
        m.gauge("sluice_commit_batch_largest", &[])
            .set(stats.largest_batch.load(Relaxed) as f64);
        m.gauge("sluice_store_size_bytes", &[])
            .set(store.size_on_disk() as f64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    robot: Option<String>,
    /// Delivered within this long before now ("2h").
    since: Option<String>,
}

/// Delivered digests, oldest first: `?robot=R&since=2h`.
async fn list_digests(State(app): State<AppState>, Query(q): Query<ListQuery>) -> Response {
    let state = match app.ctx() {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let since_ms = match q.since.as_deref().map(crate::config::parse_duration) {
        None => i64::MIN,
        Some(Ok(d)) => state.clock.now_ms() - d.as_millis() as i64,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("since: {e}")),
    };
    let sent = match digests_in(&state, DigestState::Sent, q.robot.as_deref(), |d| {
        d.sent_ms.is_some_and(|s| s >= since_ms)
    }) {
        Ok(sent) => sent,
        Err(r) => return *r,
    };
    let out: Vec<Value> = sent
        .iter()
        .map(|d| json!({"id": d.id, "robot": d.robot, "alerts": d.count(), "sent_ms": d.sent_ms, "title": d.title}))
        .collect();
    Json(json!({"digests": out})).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RedeliverRequest {
    to: Option<String>,
}

/// Queues a delivered digest's alerts again, for its own robot or `to`; they go out as new
/// digests, within the limits.
async fn post_redeliver(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let state = match app.ctx() {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let body = match read_body(&headers, body, state.config.server.max_body).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let req: RedeliverRequest = match optional_json(&body, "{\"to\": \"ROBOT\"} (optional)") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let target = match (&req.to, state.store.digest(id)) {
        (_, Ok(None)) => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no digest #{id} (never sealed, or past retention)"),
            );
        }
        (_, Err(e)) => return unavailable(format!("cannot read digest #{id}: {e}")),
        (Some(to), Ok(Some(_))) => to.clone(),
        (None, Ok(Some(d))) => d.robot,
    };
    let Some(handle) = state.robots.get(&target) else {
        return unknown_robot(&state, "to", &target);
    };
    let d = match state.store.redeliver(id, &target) {
        Ok(d) => d,
        Err(e @ ReplayError::NotFound(_)) => return error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (ReplayError::NotDead(..) | ReplayError::NotSent(..))) => {
            return error(StatusCode::CONFLICT, e.to_string());
        }
        Err(ReplayError::Store(e)) => {
            return unavailable(format!("cannot re-deliver digest #{id}: {e}"));
        }
    };
    if let Err(e) = state.store.commit().await {
        return unavailable(format!("the re-delivered alerts are not durable: {e}"));
    }
    handle.metrics.received.increment(d.count());
    handle.wake.notify_one();
    Json(json!({"id": id, "alerts": d.count(), "to": target})).into_response()
}

/// `ok` while sluice can take and deliver alerts; 503 with the reason while its store is being
/// reopened, or while a fault keeps it from delivering (a task panicked, robots not started).
async fn get_healthz(State(app): State<AppState>) -> Response {
    let live = app.live.get();
    if let Err(why) = live.store {
        return unavailable(why);
    }
    let faults = live.faults.list();
    if faults.is_empty() {
        "ok\n".into_response()
    } else {
        unavailable(faults.join("; "))
    }
}

/// Reads the config file again: robots added, removed or changed, queues and rate history kept.
async fn post_reload(State(app): State<AppState>) -> Response {
    match app.control.reload().await {
        Ok(r) => Json(r).into_response(),
        Err(e @ ReloadError::NoFile) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ ReloadError::Invalid(_)) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e @ ReloadError::Busy(_)) => unavailable(e.to_string()),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MoveRequest {
    robot: String,
    to: String,
}

/// Moves the queue of a robot removed from the config to a configured robot.
async fn post_move(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let max = app.live.get().config.server.max_body;
    let body = match read_body(&headers, body, max).await {
        Ok(b) => b,
        Err(r) => return *r,
    };
    let req: MoveRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("expected {{\"robot\": \"REMOVED\", \"to\": \"CONFIGURED\"}}: {e}"),
            );
        }
    };
    match app.control.move_queue(&req.robot, &req.to).await {
        Ok(m) => Json(
            json!({"robot": req.robot, "to": req.to, "alerts": m.alerts, "digests": m.digests}),
        )
        .into_response(),
        Err(e @ MoveError::Configured(_)) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ (MoveError::UnknownTarget(..) | MoveError::NothingQueued(_))) => {
            error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
        }
        Err(e @ (MoveError::Busy(_) | MoveError::Store(_))) => unavailable(e.to_string()),
    }
}
