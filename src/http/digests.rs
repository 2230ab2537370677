//! Digests after the fact: one digest with its alerts, the delivered ones, dead letters, and
//! queueing their alerts again (replay, redeliver).

use super::*;
use crate::api::{
    DeadEntry, DeadList, DigestAnswer, DigestList, RedeliverRequest, ReplayRequest, Replayed,
    Requeued, SentEntry,
};

/// The digests in `state` (of `robot`, if given) for which `keep` holds, oldest first.
pub(super) async fn digests_in(
    state: &Ctx,
    wanted: DigestState,
    robot: Option<&str>,
    keep: impl Fn(&DigestRecord) -> bool,
) -> Result<Vec<DigestRecord>, ApiError> {
    let mut out = Vec::new();
    let all = state.store.digests().await;
    for d in all.map_err(|e| ApiError::unavailable(format!("cannot read the digests: {e}")))? {
        if d.state == wanted && robot.is_none_or(|r| r == d.robot) && keep(&d) {
            out.push(d);
        }
    }
    Ok(out)
}

pub(super) async fn get_digest(
    State(app): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<DigestAnswer>, ApiError> {
    let state = app.ctx()?;
    let Ok(id) = id.trim_start_matches('#').parse::<u64>() else {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("digest id {id:?} is not a number"),
        ));
    };
    let unreadable =
        |e: StoreError| ApiError::unavailable(format!("cannot read digest #{id}: {e}"));
    let Some(d) = state.store.digest(id).await.map_err(unreadable)? else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no digest #{id}: never sealed, or delivered longer ago than its robot's retention"
            ),
        ));
    };
    let alerts = state.store.digest_alerts(&d).await.map_err(unreadable)?;
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
    Ok(Json(DigestAnswer {
        id: d.id,
        alerts_count: d.count(),
        state: d.state.as_str().to_string(),
        listed: d.listed,
        counts: d.counts,
        attempts: d.attempts,
        sealed_ms: d.sealed_ms,
        sent_ms: d.sent_ms,
        last_error: d.last_error,
        title: d.title,
        text: (d.state != DigestState::Sent).then_some(d.text),
        robot: d.robot,
        alerts,
    }))
}

/// A replay or re-delivery the store could not do (`cannot`: what could not be done) or not
/// make durable (the `done` alerts are not durable); the rest as [`ReplayError`] says.
fn requeue_error(e: ReplayError, cannot: &str, done: &str) -> ApiError {
    match e {
        ReplayError::Store(e) => ApiError::unavailable(format!("{cannot}: {e}")),
        ReplayError::NotDurable(e) => {
            ApiError::unavailable(format!("the {done} alerts are not durable: {e}"))
        }
        e => e.into(),
    }
}

#[derive(Deserialize)]
pub(super) struct DeadQuery {
    robot: Option<String>,
}

fn dead_entry(d: &DigestRecord) -> DeadEntry {
    DeadEntry {
        id: d.id,
        robot: d.robot.clone(),
        alerts: d.count(),
        title: d.title.clone(),
        attempts: d.attempts,
        sealed_ms: d.sealed_ms,
        last_error: d.last_error.clone(),
    }
}

/// Dead digests (refused for good by their robot), oldest first, optionally of one robot.
pub(super) async fn get_dead(
    State(app): State<AppState>,
    Query(q): Query<DeadQuery>,
) -> Result<Json<DeadList>, ApiError> {
    let state = app.ctx()?;
    let dead = digests_in(&state, DigestState::Dead, q.robot.as_deref(), |_| true).await?;
    Ok(Json(DeadList {
        dead: dead.iter().map(dead_entry).collect(),
    }))
}

pub(super) async fn post_replay(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Replayed>, ApiError> {
    let (state, body) = app.ctx_with_body(&headers, body).await?;
    let req: ReplayRequest = optional_json(
        &body,
        "{\"id\": N, \"robot\": \"R\", \"to\": \"OTHER\"} (all optional)",
    )?;
    let mut req = req;
    if let Some(to) = &req.to
        && let Some(lane) = state.config.destination(to)
    {
        // A pool's member has no queue of its own: its pool's is meant.
        req.to = Some(lane.to_string());
    }
    for (field, name) in [("robot", &req.robot), ("to", &req.to)] {
        if let Some(r) = name
            && !state.robots.contains_key(r)
        {
            return Err(unknown_robot(&state, field, r));
        }
    }
    let ids: Vec<u64> = match req.id {
        Some(id) => vec![id],
        None => digests_in(&state, DigestState::Dead, req.robot.as_deref(), |_| true)
            .await?
            .iter()
            .map(|d| d.id)
            .collect(),
    };
    // Every target is checked before anything is replayed, so a request is done whole or not at all.
    let mut plan = Vec::with_capacity(ids.len());
    for id in ids {
        let d = match state.store.digest(id).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    format!("no digest #{id}"),
                ));
            }
            Err(e) => {
                return Err(ApiError::unavailable(format!(
                    "cannot read digest #{id}: {e}"
                )));
            }
        };
        if d.state != DigestState::Dead {
            return Err(ReplayError::NotDead(id, d.state).into());
        }
        let target = req.to.clone().unwrap_or(d.robot);
        if !state.robots.contains_key(&target) {
            return Err(ApiError::unprocessable(format!(
                "digest #{id} belongs to robot {target:?}, which is not configured; name one with \"to\" (configured robots: {})",
                state.config.robot_names()
            )));
        }
        plan.push((id, target));
    }
    let now = state.clock.now_ms();
    let mut answer = Replayed::default();
    for (id, target) in plan {
        let d =
            state.store.replay(id, &target, now).await.map_err(|e| {
                requeue_error(e, &format!("cannot replay digest #{id}"), "replayed")
            })?;
        answer.alerts += d.count();
        if let Some(h) = state.robots.get(&d.robot) {
            h.replayed_dead();
        }
        answer.replayed.push(Requeued {
            id: d.id,
            alerts: d.count(),
            to: target,
        });
    }
    for r in &answer.replayed {
        if let Some(h) = state.robots.get(&r.to) {
            h.wake.notify_one();
        }
    }
    Ok(Json(answer))
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
) -> Result<Json<DigestList>, ApiError> {
    let state = app.ctx()?;
    let since_ms = match q.since.as_deref().map(crate::config::parse_duration) {
        None => i64::MIN,
        Some(Ok(d)) => state.clock.now_ms() - d.as_millis() as i64,
        Some(Err(e)) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("since: {e}"),
            ));
        }
    };
    let sent = digests_in(&state, DigestState::Sent, q.robot.as_deref(), |d| {
        d.sent_ms.is_some_and(|s| s >= since_ms)
    })
    .await?;
    Ok(Json(DigestList {
        digests: sent
            .into_iter()
            .map(|d| SentEntry {
                id: d.id,
                alerts: d.count(),
                robot: d.robot,
                sent_ms: d.sent_ms,
                title: d.title,
            })
            .collect(),
    }))
}

/// Queues a delivered digest's alerts again, for its own robot or `to`; they go out as new
/// digests, within the limits.
pub(super) async fn post_redeliver(
    State(app): State<AppState>,
    Path(id): Path<u64>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Requeued>, ApiError> {
    let (state, body) = app.ctx_with_body(&headers, body).await?;
    let req: RedeliverRequest = optional_json(&body, "{\"to\": \"ROBOT\"} (optional)")?;
    let target = match (&req.to, state.store.digest(id).await) {
        (_, Ok(None)) => {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no digest #{id} (never sealed, or past retention)"),
            ));
        }
        (_, Err(e)) => {
            return Err(ApiError::unavailable(format!(
                "cannot read digest #{id}: {e}"
            )));
        }
        (Some(to), Ok(Some(_))) => to.clone(),
        (None, Ok(Some(d))) => d.robot,
    };
    // A pool's member has no queue of its own: its pool's is meant.
    let target = state
        .config
        .destination(&target)
        .map_or(target.clone(), str::to_string);
    let Some(handle) = state.robots.get(&target) else {
        return Err(unknown_robot(&state, "to", &target));
    };
    let d = state.store.redeliver(id, &target).await.map_err(|e| {
        requeue_error(
            e,
            &format!("cannot re-deliver digest #{id}"),
            "re-delivered",
        )
    })?;
    handle.metrics.received.increment(d.count());
    handle.wake.notify_one();
    Ok(Json(Requeued {
        id,
        alerts: d.count(),
        to: target,
    }))
}
