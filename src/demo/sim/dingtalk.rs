//! DingTalk's custom robot (ROBOTS.md §1–3): `POST /robot/send?access_token=…` signed with
//! `timestamp` (ms) and `sign` in the query, a markdown body of at most 20 000 bytes, answered
//! `{"errcode":N,"errmsg":"…"}` with HTTP 200 whatever happened.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Content, Refusal, Request, Verdict};
use crate::provider::dingtalk::sign;

/// DingTalk rejects a signature whose timestamp is more than an hour off.
pub(super) const TIMESTAMP_TOLERANCE_MS: i64 = 3_600_000;

/// The largest body DingTalk takes.
const MAX_BODY: usize = 20_000;

/// The 加签 check: a timestamp within the hour and its signature.
pub(super) fn check_signature(secret: &str, req: &Request) -> Result<(), Refusal> {
    // Query already undid the URL-encoding once; a sign encoded twice, or not at all, fails
    // here as it does at DingTalk.
    let ts = req
        .query
        .get("timestamp")
        .and_then(|t| t.parse::<i64>().ok());
    let Some(ts) = ts.filter(|ts| (req.now_ms - ts).abs() <= TIMESTAMP_TOLERANCE_MS) else {
        return Err(Refusal {
            code: 310000,
            msg: "invalid timestamp",
        });
    };
    if req.query.get("sign").map(String::as_str) != Some(sign(secret, ts).as_str()) {
        return Err(Refusal {
            code: 310000,
            msg: "sign not match",
        });
    }
    Ok(())
}

/// A markdown message: its title (the notification's) and its text.
pub(super) fn read(req: &Request) -> Result<Content, Refusal> {
    if req.body.len() > MAX_BODY {
        return Err(Refusal {
            code: 460101,
            msg: "message too long, exceed 20000 bytes",
        });
    }
    let message: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let field = |name: &str| message["markdown"][name].as_str().map(str::to_string);
    match (message["msgtype"].as_str(), field("title"), field("text")) {
        (Some("markdown"), Some(title), Some(text)) => Ok((title, text)),
        _ => Err(Refusal {
            code: 400105,
            msg: "不支持的消息类型",
        }),
    }
}

pub(super) fn reply(verdict: Verdict) -> Response {
    let (errcode, errmsg) = match verdict {
        Verdict::Accepted => (0, "ok"),
        Verdict::NoRobot => (300005, "token is not exist"),
        Verdict::Refused(r) => (r.code, r.msg),
        Verdict::Throttled(_) => (130101, "send too fast, exceed 20 times per minute"),
    };
    axum::Json(json!({"errcode": errcode, "errmsg": errmsg})).into_response()
}
