//! Running sluice: status, metrics, health, reload, and moving a removed robot's queue.

use super::*;
use crate::api::{
    ClusterEntry, MoveRequest, QueueMoved, Reloaded, RobotEntry, Status, StoreEntry, Unconfigured,
};

/// Each robot's state, queue and rate use; robots removed from the config that still have
/// alerts queued; the store. Answers even while the store is being reopened (`store.error`).
pub(super) async fn get_status(State(app): State<AppState>) -> Json<Status> {
    Json(status_of(&app).await)
}

/// What `GET /v1/status` answers, for the console too (the same figures at the same instant).
pub(super) async fn status_of(app: &AppState) -> Status {
    let live = app.live.get();
    let store = live.store.as_ref().ok();
    let now = app.clock.now_ms();
    let view = live
        .cluster
        .as_ref()
        .map(|v| v.read().expect("cluster view lock").clone());
    let mut robots = Vec::new();
    // Lanes first (robots, pools), each pool followed by its members.
    let mut entries: Vec<(&String, &crate::delivery::RobotHandle, Option<&String>)> = Vec::new();
    for (name, h) in live.robots.iter() {
        entries.push((name, h, None));
        if let Some(p) = live.config.pools.get(name) {
            for m in &p.members {
                if let Some(mh) = live.members.get(m) {
                    entries.push((m, mh, Some(name)));
                }
            }
        }
    }
    for (name, h, pool) in entries {
        let s = h.status();
        let t = &h.config.timing;
        let period_ms = t.rate_period.as_millis() as i64;
        let in_period: Vec<i64> = s
            .recent_sends
            .iter()
            .copied()
            .filter(|&t| t > now - period_ms)
            .collect();
        let (mut pending, mut oldest) = (None, None);
        let lane = pool.unwrap_or(name);
        if let Some(st) = store {
            pending = st.pending(lane).await.ok();
            oldest = st.oldest_pending_ms(lane).await.ok().flatten();
        }
        robots.push(RobotEntry {
            robot: name.clone(),
            provider: h.config.provider.as_str().to_string(),
            webhook: h.config.webhook.as_deref().map(redact_url),
            state: s.state.as_str().to_string(),
            since_ms: s.since_ms,
            pending,
            oldest_pending_age_ms: oldest.map(|o| (now - o).max(0)),
            outbox: s.outbox,
            sends_in_period: in_period.len(),
            recent_sends: in_period,
            rate_limit: t.rate_limit,
            rate_period: humantime::format_duration(t.rate_period).to_string(),
            window: humantime::format_duration(t.window).to_string(),
            digests_sent: s.digests_sent,
            alerts_delivered: s.alerts_delivered,
            dead: s.dead,
            duplicates_dropped: s.duplicates_dropped,
            last_error: s.last_error,
            last_error_ms: s.last_error_ms,
            next_attempt_ms: s.next_attempt_ms,
            quota_used: s.quota.map(|q| q.used),
            quota_limit: s.quota.map(|q| q.limit),
            quota_period_ends: s.quota.map(|q| q.period_ends_ms),
            quota_runs_out: s.quota.and_then(|q| q.runs_out_ms),
            fallback: h.config.fallback.clone(),
            members: live
                .config
                .pools
                .get(name)
                .map(|p| p.members.clone())
                .unwrap_or_default(),
            pool: pool.cloned(),
            owner: view.as_ref().map(|v| {
                v.lanes
                    .get(lane)
                    .map(|o| o.owner.clone())
                    .unwrap_or_default()
            }),
        });
    }
    let unconfigured = live
        .orphans
        .iter()
        .map(|(name, o)| Unconfigured {
            robot: name.clone(),
            pending: o.pending,
            digests: o.digests,
            digest_alerts: o.digest_alerts,
        })
        .collect();
    let status = match &live.store {
        Ok(store) => store.status().await.map_err(|e| e.to_string()),
        Err(why) => Err(why.clone()),
    };
    let store_status = match status {
        Ok(st) => StoreEntry {
            data_dir: st.location,
            size_on_disk: Some(st.bytes_on_disk),
            commits: Some(st.commits),
            commit_requests: Some(st.commit_requests),
            largest_commit_batch: Some(st.largest_commit_batch),
            error: None,
        },
        Err(why) => StoreEntry {
            data_dir: live.config.server.data_dir.display().to_string(),
            error: Some(why),
            ..StoreEntry::default()
        },
    };
    Status {
        robots,
        unconfigured,
        store: store_status,
        faults: live.faults.list(),
        config: live.config.origin.clone(),
        cluster: view.map(|v| ClusterEntry {
            node: v.node,
            live: v.live,
            error: v.error,
            rtt_ms: v.rtt_ms,
        }),
    }
}

/// Prometheus text format. The gauges describing the present are set here, at scrape time.
pub(super) async fn get_metrics(State(app): State<AppState>) -> Response {
    let m = &app.metrics;
    let now = app.clock.now_ms();
    let live = app.live.get();
    let store = live.store.as_ref().ok();
    // A pool's members: `sluice_pool_member{pool, robot}`, and their own state and sends
    // under the robot's name (their queue is the pool's).
    for (name, h) in live.members.iter() {
        let Some(pool) = live.config.pool_of(name) else {
            continue;
        };
        m.gauge(
            "sluice_pool_member",
            &[("pool", pool.name.as_str()), ("robot", name.as_str())],
        )
        .set(1.0);
        robot_gauges(m, name, h, now);
    }
    for (name, h) in live.robots.iter() {
        let r = [("robot", name.as_str())];
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
        let s = robot_gauges(m, name, h, now);
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
    if let Some(view) = &live.cluster {
        let v = view.read().expect("cluster view lock").clone();
        for name in live.robots.keys() {
            let mine = v.lanes.get(name).is_some_and(|o| o.owner == v.node);
            m.gauge("sluice_cluster_lane_owned", &[("robot", name.as_str())])
                .set(if mine { 1.0 } else { 0.0 });
        }
        m.gauge("sluice_cluster_nodes_live", &[])
            .set(v.live.len() as f64);
        m.gauge("sluice_cluster_nats_up", &[])
            .set(if v.error.is_none() { 1.0 } else { 0.0 });
        if let Some(rtt) = v.rtt_ms {
            m.gauge("sluice_cluster_nats_rtt_seconds", &[])
                .set(rtt / 1e3);
        }
    }
    if let Some(store) = store
        && let Ok(st) = store.status().await
    {
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

/// A robot's (or pool's) state, sends in its period and limit, set at scrape time; returns its
/// status for the lane's own gauges.
fn robot_gauges(
    m: &crate::metrics::Metrics,
    name: &str,
    h: &crate::delivery::RobotHandle,
    now: i64,
) -> crate::delivery::RobotStatus {
    let r = [("robot", name)];
    let s = h.status();
    for st in crate::delivery::State::ALL {
        let on = if st == s.state { 1.0 } else { 0.0 };
        m.gauge(
            "sluice_robot_state",
            &[("robot", name), ("state", st.as_str())],
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
    if let Some(q) = s.quota {
        m.gauge("sluice_quota_used", &r).set(q.used as f64);
        m.gauge("sluice_quota_limit", &r).set(q.limit as f64);
        m.gauge("sluice_quota_period_ends_seconds", &r)
            .set(q.period_ends_ms as f64 / 1000.0);
        // 0 while the quota lasts the period at its rate so far.
        m.gauge("sluice_quota_runs_out_seconds", &r)
            .set(q.runs_out_ms.map_or(0.0, |t| t as f64 / 1000.0));
    }
    s
}

/// `ok` while sluice can take and deliver alerts; 503 with the reason while its store is being
/// reopened, or while a fault keeps it from delivering (a task panicked, robots not started).
pub(super) async fn get_healthz(State(app): State<AppState>) -> Result<&'static str, ApiError> {
    let live = app.live.get();
    if let Err(why) = live.store {
        return Err(ApiError::unavailable(why));
    }
    let faults = live.faults.list();
    if faults.is_empty() {
        Ok("ok\n")
    } else {
        Err(ApiError::unavailable(faults.join("; ")))
    }
}

/// Reads the config file again: robots added, removed or changed, queues and rate history kept.
pub(super) async fn post_reload(State(app): State<AppState>) -> Result<Json<Reloaded>, ApiError> {
    Ok(Json(app.control.reload().await?))
}

/// Moves the queue of a robot removed from the config to a configured robot.
pub(super) async fn post_move(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<QueueMoved>, ApiError> {
    let max = app.live.get().config.server.max_body;
    let body = read_body(&headers, body, max).await?;
    let req: MoveRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::unprocessable(format!(
            "expected {{\"robot\": \"REMOVED\", \"to\": \"CONFIGURED\"}}: {e}"
        ))
    })?;
    let m = app.control.move_queue(&req.robot, &req.to).await?;
    Ok(Json(QueueMoved {
        robot: req.robot,
        to: req.to,
        alerts: m.alerts,
        digests: m.digests,
    }))
}
