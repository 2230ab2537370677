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

/// `POST /v1/robots/{name}/test` (the body may be empty; it is not read): [`send_test`].
pub(super) async fn post_test(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<crate::api::TestSent>, ApiError> {
    send_test(&app.live.get(), &name, None).await.map(Json)
}

/// Sends one test message to robot `robot` through the running daemon's own lane task, its
/// rate guard, quota and send log (a pool member through its pool's lane), and waits at most
/// `timeout` (default: twice the robot's `request_timeout` plus a second) for the outcome.
/// The web console calls this too. `Ok`: a message left (its `outcome` may still be a
/// refusal by the robot). `Err`: nothing was sent, or no answer came: 422 unknown robot, 429
/// no permit now (`Retry-After`), 409 paused or not running on this node (`remote`), 503
/// while its task is starting, 504 the task did not answer in time; each but the 422 with a
/// [`crate::api::TestSent`] body.
pub async fn send_test(
    live: &crate::supervisor::Live,
    robot: &str,
    timeout: Option<std::time::Duration>,
) -> Result<crate::api::TestSent, ApiError> {
    use crate::api::TestSent;
    use crate::delivery::{State as LaneState, TestRefused};
    let unknown = || {
        ApiError::unprocessable(format!(
            "robot: unknown robot {robot:?}; configured robots: {}",
            live.config.robot_names()
        ))
    };
    let member = live
        .robots
        .get(robot)
        .or_else(|| live.members.get(robot))
        .ok_or_else(unknown)?;
    let lane_name = live
        .config
        .pool_of(robot)
        .map_or(robot, |p| p.name.as_str());
    let t = &member.config.timing;
    let timeout = timeout.unwrap_or(t.request_timeout * 2 + std::time::Duration::from_secs(1));
    let base = TestSent {
        robot: robot.to_string(),
        rate_limit: t.rate_limit,
        ..TestSent::default()
    };
    let owner = || {
        live.cluster.as_ref().and_then(|v| {
            v.read()
                .expect("cluster view lock")
                .lanes
                .get(lane_name)
                .map(|o| o.owner.clone())
        })
    };
    let result = match live.robots.get(lane_name) {
        Some(lane) => lane.send_test(robot, timeout).await,
        None => Err(TestRefused::NotRunning {
            robot: robot.to_string(),
            state: member.status().state,
        }),
    };
    let refused = match result {
        Ok(sent) => {
            return Ok(TestSent {
                robot: sent.robot,
                sent: true,
                outcome: Some(sent.outcome.class().to_string()),
                said: sent.outcome.reason().map(str::to_string),
                sends_in_period: sent.sends_in_period,
                rate_limit: sent.rate_limit,
                ..base
            });
        }
        Err(r) => r,
    };
    let error = refused.to_string();
    let (status, answer) = match &refused {
        TestRefused::NoPermit {
            sends_in_period,
            rate_limit,
            next_permit_ms,
            ..
        } => (
            StatusCode::TOO_MANY_REQUESTS,
            TestSent {
                sends_in_period: *sends_in_period,
                rate_limit: *rate_limit,
                next_permit_ms: Some(*next_permit_ms),
                ..base
            },
        ),
        TestRefused::Paused {
            state,
            until_ms,
            why,
            ..
        } => (
            StatusCode::CONFLICT,
            TestSent {
                state: Some(state.as_str().to_string()),
                until_ms: *until_ms,
                said: (!why.is_empty()).then(|| why.clone()),
                ..base
            },
        ),
        TestRefused::NotRunning { state, .. } => {
            let s = member.status();
            let status = match state {
                LaneState::Remote | LaneState::Blocked => StatusCode::CONFLICT,
                _ => StatusCode::SERVICE_UNAVAILABLE,
            };
            (
                status,
                TestSent {
                    state: Some(state.as_str().to_string()),
                    owner: owner().filter(|o| !o.is_empty()),
                    said: s.last_error,
                    ..base
                },
            )
        }
        TestRefused::Timeout { .. } => (StatusCode::GATEWAY_TIMEOUT, base),
        TestRefused::Stopped { .. } | TestRefused::Store { .. } | TestRefused::NotMember { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, base)
        }
    };
    let error = match &answer.owner {
        Some(o) => format!("{error}; node {o} sends for it"),
        None => error,
    };
    let answer = TestSent {
        error: Some(error.clone()),
        ..answer
    };
    let mut e = ApiError::new(status, error)
        .with_body(serde_json::to_value(&answer).expect("a TestSent serializes"));
    match status {
        StatusCode::TOO_MANY_REQUESTS => {
            let secs = (answer.next_permit_ms.unwrap_or(1000).max(1) + 999) / 1000;
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                e = e.with_header(header::RETRY_AFTER, v);
            }
        }
        StatusCode::SERVICE_UNAVAILABLE => {
            e = e.with_header(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        _ => {}
    }
    Err(e)
}
