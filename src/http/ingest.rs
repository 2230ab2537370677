//! Ingest: `POST /v1/alerts` and `POST /v1/alertmanager`. Both resolve every alert's robots
//! before anything is written (a batch is accepted whole or not at all) and answer only once
//! the alerts are durable ([`enqueue`]).

use super::*;

/// One alert bound for one robot (an alert routed to several robots becomes several).
pub(super) struct Bound {
    robot: String,
    alert: Alert,
    dedup_key: Option<String>,
}

/// The robots an alert goes to: its own `robot` (or the request's), else the routes, else the
/// only configured robot. `path` names the alert in errors.
pub(super) fn resolve(
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
pub(super) async fn enqueue(
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
        let pending = state.store.pending(robot).await.map_err(|e| {
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
    let entries: Vec<Entry> = bound
        .iter()
        .map(|b| Entry {
            robot: b.robot.clone(),
            alert: b.alert.clone(),
            dedup_key: b.dedup_key.clone(),
        })
        .collect();
    let windows: BTreeMap<String, Duration> = by_robot
        .keys()
        .map(|robot| {
            let window = state
                .robots
                .get(*robot)
                .map_or(Duration::ZERO, |h| h.config.timing.retention);
            (robot.to_string(), window)
        })
        .collect();
    let window: crate::store::Retention =
        Arc::new(move |robot: &str| windows.get(robot).copied().unwrap_or_default());
    let request = idempotency_key.map(|(key, body)| RequestKey {
        key: key.to_string(),
        body: body.to_string(),
    });
    let all_slots = match state.store.append(entries, request, now, window).await {
        Ok(slots) => slots,
        Err(AppendError::Write(e)) => {
            tracing::error!("ingest: {e}");
            return Err(Box::new(unavailable(format!(
                "the store cannot accept alerts right now: {e}"
            ))));
        }
        Err(AppendError::NotDurable(e)) => {
            tracing::error!("ingest: {e}");
            return Err(Box::new(unavailable(format!(
                "the store cannot make alerts durable right now: {e}"
            ))));
        }
    };
    let mut ids = vec![String::new(); bound.len()];
    let mut duplicates = 0;
    let mut woken = Vec::new();
    for (robot, positions) in &by_robot {
        let slots: Vec<Slot> = positions.iter().map(|&i| all_slots[i]).collect();
        let mut new = 0u64;
        for (&i, slot) in positions.iter().zip(&slots) {
            ids[i] = alert_id(robot, slot.seq());
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
    for w in woken {
        w.notify_one();
    }
    Ok((ids, duplicates))
}

pub(super) const IDEMPOTENCY_KEY: &str = "idempotency-key";

pub(super) async fn post_alerts(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Response {
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

    // Only a keyed request needs its body's fingerprint (not worth a hash on every request).
    let keyed = idempotency_key
        .as_deref()
        .map(|k| (k, crate::store::request_fingerprint(&bytes)));
    if let Some((key, fingerprint)) = &keyed {
        let window = state
            .robots
            .values()
            .map(|h| h.config.timing.retention)
            .max()
            .unwrap_or_default();
        match state
            .store
            .claim_request(key, fingerprint, now, window)
            .await
        {
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
    let keyed = keyed.as_ref().map(|(k, f)| (*k, f.as_str()));
    match enqueue(&state, &bound, keyed).await {
        Ok((ids, duplicates)) => accepted(n, duplicates, ids),
        Err(resp) => {
            if let Some(key) = &idempotency_key {
                let _ = state.store.release_request(key).await;
            }
            *resp
        }
    }
}

pub(super) fn accepted(n: usize, duplicates: usize, ids: Vec<String>) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(crate::api::Accepted {
            accepted: n,
            duplicates,
            ids,
        }),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct AlertmanagerQuery {
    robot: Option<String>,
}

/// Alertmanager's webhook (payload version 4). 2xx only once durable; 5xx when the store cannot
/// take it (Alertmanager retries those); 4xx only for a payload that can never succeed.
pub(super) async fn post_alertmanager(
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

pub(super) fn rejected(e: AlertError) -> Response {
    match e {
        AlertError::Malformed(_) => error(StatusCode::BAD_REQUEST, e.to_string()),
        AlertError::Invalid { .. } => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
    }
}

/// Counts ingest requests by endpoint and answer.
pub(super) async fn count_ingest(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
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
