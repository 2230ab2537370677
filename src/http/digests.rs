//! Digests after the fact: one digest with its alerts, the delivered ones, dead letters, and
//! queueing their alerts again (replay, redeliver).

use super::*;
use crate::api::{RedeliverRequest, ReplayRequest};

/// The digests in `state` (of `robot`, if given) for which `keep` holds, oldest first.
pub(super) async fn digests_in(
    state: &Ctx,
    wanted: DigestState,
    robot: Option<&str>,
    keep: impl Fn(&DigestRecord) -> bool,
) -> Result<Vec<DigestRecord>, Rejection> {
    let mut out = Vec::new();
    let all = state.store.digests().await;
    for d in all.map_err(|e| Box::new(unavailable(format!("cannot read the digests: {e}"))))? {
        if d.state == wanted && robot.is_none_or(|r| r == d.robot) && keep(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

pub(super) async fn get_digest(State(app): State<AppState>, Path(id): Path<String>) -> Response {
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
    let d = match state.store.digest(id).await {
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
    let alerts = match state.store.digest_alerts(&d).await {
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
pub(super) struct DeadQuery {
    robot: Option<String>,
}

pub(super) fn dead_entry(d: &DigestRecord) -> Value {
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
pub(super) async fn get_dead(State(app): State<AppState>, Query(q): Query<DeadQuery>) -> Response {
    let state = match app.ctx() {
        Ok(c) => c,
        Err(r) => return *r,
    };
    match digests_in(&state, DigestState::Dead, q.robot.as_deref(), |_| true).await {
        Ok(dead) => {
            Json(json!({"dead": dead.iter().map(dead_entry).collect::<Vec<_>>()})).into_response()
        }
        Err(r) => *r,
    }
}

pub(super) async fn post_replay(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (state, body) = match app.ctx_with_body(&headers, body).await {
        Ok(v) => v,
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
        None => match digests_in(&state, DigestState::Dead, req.robot.as_deref(), |_| true).await {
            Ok(dead) => dead.iter().map(|d| d.id).collect(),
            Err(r) => return *r,
        },
    };
    // Every target is checked before anything is replayed, so a request is done whole or not at all.
    let mut plan = Vec::with_capacity(ids.len());
    for id in ids {
        let target = match (&req.to, state.store.digest(id).await) {
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
        match state.store.replay(id, &target, now).await {
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
            Err(ReplayError::NotDurable(e)) => {
                return unavailable(format!("the replayed alerts are not durable: {e}"));
            }
        }
    }
    for r in &replayed {
        if let Some(h) = r["to"].as_str().and_then(|to| state.robots.get(to)) {
            h.wake.notify_one();
        }
    }
    Json(json!({"replayed": replayed, "alerts": alerts})).into_response()
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    robot: Option<String>,
    /// Delivered within this long before now ("2h").
    since: Option<String>,
}

/// Delivered digests, oldest first: `?robot=R&since=2h`.
pub(super) async fn list_digests(
    State(app): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Response {
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
    })
    .await
    {
        Ok(sent) => sent,
        Err(r) => return *r,
    };
    let out: Vec<Value> = sent
        .iter()
        .map(|d| json!({"id": d.id, "robot": d.robot, "alerts": d.count(), "sent_ms": d.sent_ms, "title": d.title}))
        .collect();
    Json(json!({"digests": out})).into_response()
}

/// Queues a delivered digest's alerts again, for its own robot or `to`; they go out as new
/// digests, within the limits.
pub(super) async fn post_redeliver(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (state, body) = match app.ctx_with_body(&headers, body).await {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let req: RedeliverRequest = match optional_json(&body, "{\"to\": \"ROBOT\"} (optional)") {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let target = match (&req.to, state.store.digest(id).await) {
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
    let d = match state.store.redeliver(id, &target).await {
        Ok(d) => d,
        Err(e @ ReplayError::NotFound(_)) => return error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e @ (ReplayError::NotDead(..) | ReplayError::NotSent(..))) => {
            return error(StatusCode::CONFLICT, e.to_string());
        }
        Err(ReplayError::Store(e)) => {
            return unavailable(format!("cannot re-deliver digest #{id}: {e}"));
        }
        Err(ReplayError::NotDurable(e)) => {
            return unavailable(format!("the re-delivered alerts are not durable: {e}"));
        }
    };
    handle.metrics.received.increment(d.count());
    handle.wake.notify_one();
    Json(json!({"id": id, "alerts": d.count(), "to": target})).into_response()
}
