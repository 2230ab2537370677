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
        tries: d.tries,
        title: d.title,
        text: Some(d.text).filter(|t| !t.is_empty()),
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

#[derive(Deserialize, Default)]
pub(super) struct DeadQuery {
    pub(super) robot: Option<String>,
    /// `replayed`: also the dead digests already replayed (with where and when).
    pub(super) include: Option<String>,
}

pub(super) fn dead_entry(d: &DigestRecord) -> DeadEntry {
    DeadEntry {
        id: d.id,
        robot: d.robot.clone(),
        alerts: d.count(),
        title: d.title.clone(),
        attempts: d.attempts,
        sealed_ms: d.sealed_ms,
        last_error: d.last_error.clone(),
        state: d.state.as_str().to_string(),
        replayed_to: d.replayed_to.clone(),
        replayed_ms: d.replayed_ms,
    }
}

/// The dead digests `q` asks for (with the replayed ones when it says so), oldest first.
pub(super) async fn dead_of(state: &Ctx, q: &DeadQuery) -> Result<Vec<DigestRecord>, ApiError> {
    let mut dead = digests_in(state, DigestState::Dead, q.robot.as_deref(), |_| true).await?;
    match q.include.as_deref() {
        None | Some("") => {}
        Some("replayed") => {
            dead.extend(
                digests_in(state, DigestState::Replayed, q.robot.as_deref(), |_| true).await?,
            );
            dead.sort_by_key(|d| d.id);
        }
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("include: {other:?}: expected \"replayed\""),
            ));
        }
    }
    Ok(dead)
}

/// Dead digests (refused for good by their robot), oldest first, optionally of one robot.
pub(super) async fn get_dead(
    State(app): State<AppState>,
    Query(q): Query<DeadQuery>,
) -> Result<Json<DeadList>, ApiError> {
    let state = app.ctx()?;
    let dead = dead_of(&state, &q).await?;
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
    Ok(Json(replay(&state, req).await?))
}

/// Queues dead digests' alerts again: the one `id`, or all of `robot`'s (or all), for their
/// own robot or `to`. Every target is checked first, so it is done whole or not at all.
pub(super) async fn replay(state: &Ctx, req: ReplayRequest) -> Result<Replayed, ApiError> {
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
            return Err(unknown_robot(state, field, r));
        }
    }
    let ids: Vec<u64> = match req.id {
        Some(id) => vec![id],
        None => digests_in(state, DigestState::Dead, req.robot.as_deref(), |_| true)
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
    Ok(answer)
}

#[derive(Deserialize, Default)]
pub(super) struct ListQuery {
    pub(super) robot: Option<String>,
    /// Delivered within this long before now ("2h").
    pub(super) since: Option<String>,
    /// A substring of the digest's title or of one of its alerts' titles (any case).
    pub(super) q: Option<String>,
    /// `name=value`: one of its alerts carries this label.
    pub(super) label: Option<String>,
    /// Only digests with a smaller id (the next page, going back in time).
    pub(super) before: Option<u64>,
    /// At most this many, the newest that match.
    pub(super) limit: Option<usize>,
}

/// Most alerts one search reads from the store (titles and labels live with the alerts); a
/// search that would read more stops there and says so (`truncated`).
pub const SEARCH_ALERTS_MAX: u64 = 200_000;

/// Delivered digests that match `q`, newest first, and whether the search stopped early.
pub(super) async fn search(
    state: &Ctx,
    q: &ListQuery,
) -> Result<(Vec<DigestRecord>, bool), ApiError> {
    let bad =
        |field: &str, e: String| ApiError::new(StatusCode::BAD_REQUEST, format!("{field}: {e}"));
    let since_ms = match q.since.as_deref().filter(|s| !s.trim().is_empty()) {
        None => i64::MIN,
        Some(s) => match crate::config::parse_duration(s.trim()) {
            Ok(d) => state.clock.now_ms() - d.as_millis() as i64,
            Err(e) => return Err(bad("since", e.to_string())),
        },
    };
    let label = match q.label.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        None => None,
        Some(l) => match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                Some((k.trim().to_string(), v.trim().to_string()))
            }
            _ => {
                return Err(bad(
                    "label",
                    format!("{l:?}: expected name=value, e.g. job=ods_orders"),
                ));
            }
        },
    };
    let needle =
        q.q.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
    let robot = q.robot.as_deref().filter(|r| !r.is_empty());
    let mut sent = digests_in(state, DigestState::Sent, robot, |d| {
        d.sent_ms.is_some_and(|s| s >= since_ms) && q.before.is_none_or(|b| d.id < b)
    })
    .await?;
    sent.sort_by_key(|d| std::cmp::Reverse(d.id));
    let limit = q.limit.unwrap_or(usize::MAX);
    let (mut found, mut read) = (Vec::new(), 0u64);
    for d in sent {
        if found.len() >= limit {
            break;
        }
        let title_hit = needle
            .as_ref()
            .is_none_or(|n| d.title.to_lowercase().contains(n));
        if title_hit && label.is_none() {
            found.push(d);
            continue;
        }
        if read + d.count() > SEARCH_ALERTS_MAX {
            return Ok((found, true));
        }
        read += d.count();
        let alerts = state
            .store
            .digest_alerts(&d)
            .await
            .map_err(|e| ApiError::unavailable(format!("cannot read digest #{}: {e}", d.id)))?;
        let hit = alerts.iter().any(|(_, a)| {
            label
                .as_ref()
                .is_none_or(|(k, v)| a.labels.get(k) == Some(v))
                && (title_hit
                    || needle
                        .as_ref()
                        .is_none_or(|n| a.title.to_lowercase().contains(n)))
        });
        if hit {
            found.push(d);
        }
    }
    Ok((found, false))
}

/// Delivered digests, oldest first: `?robot=R&since=2h&q=text&label=k=v&before=ID&limit=N`.
pub(super) async fn list_digests(
    State(app): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<DigestList>, ApiError> {
    let state = app.ctx()?;
    let (mut sent, truncated) = search(&state, &q).await?;
    sent.reverse();
    Ok(Json(DigestList {
        truncated,
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
    Ok(Json(redeliver(&state, id, req).await?))
}

/// Queues delivered digest `id`'s alerts again for `req.to` (its own robot when `None`).
pub(super) async fn redeliver(
    state: &Ctx,
    id: u64,
    req: RedeliverRequest,
) -> Result<Requeued, ApiError> {
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
        return Err(unknown_robot(state, "to", &target));
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
    Ok(Requeued {
        id,
        alerts: d.count(),
        to: target,
    })
}
