//! Slack's incoming webhook (ROBOTS.md §6): `POST /services/T…/B…/…` (the URL is the only
//! credential) with a JSON `text`, answered with plain text: `ok` (HTTP 200), an error code
//! (HTTP 4xx), or `rate_limited` (HTTP 429 with `Retry-After` in whole seconds).

use std::time::Duration;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{Content, Refusal, Request, Verdict};

/// Slack cuts a message's text at 40 000 characters; the simulator refuses longer instead, so
/// a cut never goes unseen.
const MAX_TEXT_CHARS: usize = 40_000;

/// The message's mrkdwn `text`; its first line is its title.
pub(super) fn read(req: &Request) -> Result<Content, Refusal> {
    let invalid = Refusal {
        code: 400,
        msg: "invalid_payload",
    };
    let message: Value = serde_json::from_slice(req.body).map_err(|_| invalid)?;
    match message["text"].as_str() {
        None | Some("") => Err(Refusal {
            code: 400,
            msg: "no_text",
        }),
        Some(t) if t.chars().count() > MAX_TEXT_CHARS => Err(invalid),
        Some(t) => Ok((String::new(), t.to_string())),
    }
}

/// `Retry-After` for a wait: whole seconds, rounded up, at least 1.
fn retry_after(wait: Duration) -> String {
    wait.as_millis().div_ceil(1000).max(1).to_string()
}

pub(super) fn reply(verdict: Verdict) -> Response {
    let plain = |status: StatusCode, body: &'static str| (status, body).into_response();
    match verdict {
        Verdict::Accepted => plain(StatusCode::OK, "ok"),
        Verdict::NoRobot => plain(StatusCode::NOT_FOUND, "no_service"),
        Verdict::Refused(r) => plain(
            StatusCode::from_u16(r.code as u16).unwrap_or(StatusCode::BAD_REQUEST),
            r.msg,
        ),
        Verdict::Throttled(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after(wait))],
            "rate_limited",
        )
            .into_response(),
    }
}
