//! Running sluice: status, metrics, health, reload, and moving a removed robot's queue.

use super::*;
use crate::api::MoveRequest;

/// Each robot's state, queue and rate use; robots removed from the config that still have
/// alerts queued; the store. Answers even while the store is being reopened (`store.error`).
pub(super) async fn get_status(State(app): State<AppState>) -> Response {
    let live = app.live.get();
    let store = live.store.as_ref().ok();
    let now = app.clock.now_ms();
    let mut robots = Vec::new();
    for (name, h) in live.robots.iter() {
        let s = h.status();
        let t = &h.config.timing;
        let period_ms = t.rate_period.as_millis() as i64;
        let (mut pending, mut oldest) = (None, None);
        if let Some(st) = store {
            pending = st.pending(name).await.ok();
            oldest = st.oldest_pending_ms(name).await.ok().flatten();
        }
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
    let status = match &live.store {
        Ok(store) => store.status().await.map_err(|e| e.to_string()),
        Err(why) => Err(why.clone()),
    };
    let store_status = match &status {
        Ok(st) => json!({
            "data_dir": st.location,
            "size_on_disk": st.bytes_on_disk,
            "commits": st.commits,
            "commit_requests": st.commit_requests,
            "largest_commit_batch": st.largest_commit_batch,
            "error": null,
        }),
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

/// Prometheus text format. The gauges describing the present are set here, at scrape time.
pub(super) async fn get_metrics(State(app): State<AppState>) -> Response {
    let m = &app.metrics;
    let now = app.clock.now_ms();
    let live = app.live.get();
    let store = live.store.as_ref().ok();
    for (name, h) in live.robots.iter() {
        let r = [("robot", name.as_str())];
        let s = h.status();
        if let Some(store) = store {
            let pending = store.pending(name).await.unwrap_or(0);
            m.gauge("sluice_pending_alerts", &r).set(pending as f64);
            let age = store
                .oldest_pending_ms(name)
                .await
                .ok()
                .flatten()
                .map_or(0.0, |o| (now - o).max(0) as f64 / 1000.0);
            m.gauge("sluice_oldest_pending_age_seconds", &r).set(age);
        }
        for st in crate::delivery::State::ALL {
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
    if let Some(Ok(st)) = match store {
        Some(store) => Some(store.status().await),
        None => None,
    } {
        m.counter("sluice_commit_flushes_total", &[])
            .absolute(st.commits);
        m.counter("sluice_commit_requests_total", &[])
            .absolute(st.commit_requests);
        m.gauge("sluice_commit_batch_largest", &[])
            .set(st.largest_commit_batch as f64);
        m.gauge("sluice_store_size_bytes", &[])
            .set(st.bytes_on_disk as f64);
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

/// `ok` while sluice can take and deliver alerts; 503 with the reason while its store is being
/// reopened, or while a fault keeps it from delivering (a task panicked, robots not started).
pub(super) async fn get_healthz(State(app): State<AppState>) -> Response {
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
pub(super) async fn post_reload(State(app): State<AppState>) -> Response {
    match app.control.reload().await {
        Ok(r) => Json(r).into_response(),
        Err(e @ ReloadError::NoFile) => error(StatusCode::CONFLICT, e.to_string()),
        Err(e @ ReloadError::Invalid(_)) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Err(e @ ReloadError::Busy(_)) => unavailable(e.to_string()),
    }
}

/// Moves the queue of a robot removed from the config to a configured robot.
pub(super) async fn post_move(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
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
