//! Ingest: `POST /v1/alerts` and `POST /v1/alertmanager`. Each reads its own shape, then hands
//! the alerts to the one ingest service ([`crate::ingest`]), which resolves every robot before
//! anything is written (a batch is accepted whole or not at all) and answers only once the
//! alerts are durable.

use super::*;
use crate::api::Accepted;
use crate::ingest::{Ingest, Item, Keyed};

pub(super) const IDEMPOTENCY_KEY: &str = "idempotency-key";

impl Ctx {
    /// The ingest service over this request's view.
    fn ingest(&self) -> Ingest<'_> {
        Ingest {
            config: &self.config,
            robots: &self.robots,
            store: &self.store,
            clock: self.clock,
        }
    }
}

/// `202 Accepted` with the ids, once durable.
type Taken = (StatusCode, Json<Accepted>);

pub(super) async fn post_alerts(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<Taken, ApiError> {
    let state = app.ctx()?;
    let bytes = read_body(&headers, body, state.config.server.max_body).await?;
    let incoming = parse_body(&bytes, state.clock.now_ms())?;
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY).map(|v| v.to_str()) {
        None => None,
        Some(Ok(k)) if !k.is_empty() && k.len() <= 256 => Some(k.to_string()),
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "Idempotency-Key header: expected 1 to 256 visible ASCII characters",
            ));
        }
    };
    let n = incoming.len();
    let most = state.config.server.max_alerts_per_request;
    if n > most {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{n} alerts in one request, at most {most} (server.max_alerts_per_request); send them in smaller batches"
            ),
        ));
    }
    let items = incoming
        .into_iter()
        .enumerate()
        .map(|(i, inc)| Item {
            robot: inc.robot,
            alert: inc.alert,
            dedup_key: inc.dedup_key,
            path: if n == 1 {
                "robot".to_string()
            } else {
                format!("[{i}].robot")
            },
        })
        .collect();
    // Only a keyed request needs its body's fingerprint (not worth a hash on every request).
    let keyed = idempotency_key.map(|key| Keyed {
        key,
        fingerprint: crate::store::request_fingerprint(&bytes),
    });
    let accepted = state.ingest().accept(items, keyed).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
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
) -> Result<Taken, ApiError> {
    let state = app.ctx()?;
    let max = state.config.server.max_body.max(ALERTMANAGER_MIN_BODY);
    let bytes = read_body(&headers, body, max).await?;
    let now = state.clock.now_ms();
    let notification = alertmanager::parse_notification(&bytes, now, &state.config.severity_map)?;
    let robot = query.robot.filter(|r| !r.is_empty());
    let items = notification
        .alerts
        .into_iter()
        .enumerate()
        .map(|(i, am)| Item {
            robot: robot.clone(),
            alert: am.alert,
            dedup_key: Some(am.dedup_key),
            path: match robot {
                Some(_) => "robot (query parameter)".to_string(),
                None => format!("alerts[{i}]"),
            },
        })
        .collect();
    let accepted = state.ingest().accept(items, None).await?;
    Ok((StatusCode::ACCEPTED, Json(accepted)))
}
