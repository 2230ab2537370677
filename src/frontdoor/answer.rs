//! The doors' answers, in each platform's own shape (FRONTDOORS.md §2.3): the exact success
//! bodies the senders check (`errmsg` exactly "ok"; Feishu's `code` and `StatusCode`), the
//! platforms' own codes for what they would refuse, each message also saying what sluice
//! expected, and a 503 with `Retry-After` for anything that could not be stored, so no sender
//! takes a lost message for a delivered one. No answer names a token, a sign or a secret.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Platform;

/// Why a door did not take a message.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// No robot of this platform has this token (or `ingress_token`).
    BadToken,
    /// The query string cannot be read.
    BadQuery,
    /// The sign is missing or wrong; the text says what was expected.
    BadSign(String),
    /// The timestamp is missing, unreadable or over an hour away.
    BadTimestamp(String),
    /// Not JSON, or a field of the wrong shape.
    Malformed(String),
    /// A `msgtype` the platform does not have.
    UnknownType(String),
    /// A type sluice cannot make durable (WeCom file and voice need media uploaded first).
    Unsupported(String),
    /// Over the platform's body limit (bytes).
    TooLarge(usize),
    /// Not stored: the store is down, or the robot's `max_pending` is reached. Retry later.
    NotStored(String),
}

pub fn success(platform: Platform) -> Response {
    let body = match platform {
        Platform::DingTalk | Platform::WeCom => json!({"errcode": 0, "errmsg": "ok"}),
        Platform::Feishu => json!({
            "StatusCode": 0,
            "StatusMessage": "success",
            "code": 0,
            "data": {},
            "msg": "success"
        }),
    };
    respond(StatusCode::OK, body)
}

pub fn refuse(platform: Platform, r: &Refusal) -> Response {
    let (status, body) = shape(platform, r);
    let mut response = respond(status, body);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

const SEE: &str = "see README, \"Already sending to a robot? Change the host\"";

/// The status and body for a refusal on `platform`.
pub fn shape(platform: Platform, r: &Refusal) -> (StatusCode, Value) {
    use Platform::*;
    use Refusal::*;
    let ok = StatusCode::OK;
    let errcode = |code: i64, msg: String| json!({"errcode": code, "errmsg": msg});
    let feishu = |code: i64, msg: String| json!({"code": code, "msg": msg, "data": {}});
    match (platform, r) {
        (_, NotStored(why)) => {
            let body = match platform {
                Feishu => feishu(
                    11232,
                    format!("frequency limited (sluice: not stored, retry later: {why})"),
                ),
                _ => errcode(
                    -1,
                    format!("系统繁忙 (sluice: not stored, retry later: {why})"),
                ),
            };
            (StatusCode::SERVICE_UNAVAILABLE, body)
        }
        (DingTalk, BadToken) => (
            ok,
            errcode(
                300005,
                format!(
                    "token is not exist (sluice: expected the access_token of a configured dingtalk robot, or its ingress_token; {SEE})"
                ),
            ),
        ),
        (Feishu, BadToken) => (
            ok,
            feishu(
                19001,
                format!(
                    "param invalid: incoming webhook access token invalid (sluice: expected the hook token of a configured feishu robot, or its ingress_token; {SEE})"
                ),
            ),
        ),
        (WeCom, BadToken) => (
            ok,
            errcode(
                93000,
                format!(
                    "invalid webhook url (sluice: expected key= of a configured wecom robot, or its ingress_token; {SEE})"
                ),
            ),
        ),
        (DingTalk, BadSign(why)) => (ok, errcode(310000, format!("sign not match (sluice: {why})"))),
        (DingTalk, BadTimestamp(why)) => (
            ok,
            errcode(310000, format!("invalid timestamp (sluice: {why})")),
        ),
        (Feishu, BadSign(why) | BadTimestamp(why)) => (
            ok,
            feishu(
                19021,
                format!(
                    "sign match fail or timestamp is not within one hour from current time (sluice: {why})"
                ),
            ),
        ),
        (DingTalk, TooLarge(max)) => (
            ok,
            errcode(
                460101,
                format!(
                    "message too long, exceed {max} bytes (sluice: the body is over DingTalk's limit; send a shorter message)"
                ),
            ),
        ),
        (Feishu, TooLarge(max)) => (
            ok,
            feishu(
                19036,
                format!(
                    "The message exceeds the size limit of 30KB (sluice: expected a body of at most {max} bytes)"
                ),
            ),
        ),
        (WeCom, TooLarge(max)) => (
            ok,
            errcode(
                45002,
                format!("content size out of limit (sluice: expected a body of at most {max} bytes)"),
            ),
        ),
        (DingTalk, UnknownType(t)) => (
            ok,
            errcode(
                400105,
                format!(
                    "不支持的消息类型 (sluice: msgtype {t:?}; expected text, markdown, link, actionCard, feedCard or image)"
                ),
            ),
        ),
        (Feishu, UnknownType(t)) => (
            StatusCode::BAD_REQUEST,
            feishu(
                9499,
                format!(
                    "Bad Request (sluice: msg_type {t:?}; expected text, post, interactive, image or share_chat)"
                ),
            ),
        ),
        (WeCom, UnknownType(t)) => (
            ok,
            errcode(
                40008,
                format!(
                    "invalid message type (sluice: msgtype {t:?}; expected text, markdown, markdown_v2, news, image or template_card)"
                ),
            ),
        ),
        (_, Unsupported(why)) => (
            ok,
            match platform {
                Feishu => feishu(9499, format!("Bad Request (sluice: {why})")),
                _ => errcode(40008, format!("invalid message type (sluice: {why})")),
            },
        ),
        (DingTalk, Malformed(why)) => (
            ok,
            errcode(
                40035,
                format!(
                    "缺少参数 json (sluice: expected a JSON object with msgtype and its content: {why})"
                ),
            ),
        ),
        (DingTalk, BadQuery) => (
            ok,
            errcode(
                40035,
                "缺少参数 (sluice: the query string cannot be read; expected access_token=…[&timestamp=…&sign=…][&job=…])".to_string(),
            ),
        ),
        (Feishu, Malformed(why)) => (
            StatusCode::BAD_REQUEST,
            feishu(
                9499,
                format!("Bad Request (sluice: expected a JSON object with msg_type and content: {why})"),
            ),
        ),
        (Feishu, BadQuery) => (
            StatusCode::BAD_REQUEST,
            feishu(
                9499,
                "Bad Request (sluice: the query string cannot be read; only job=… is read)".to_string(),
            ),
        ),
        (WeCom, Malformed(why)) => (
            ok,
            errcode(
                40008,
                format!("invalid message type (sluice: expected a JSON object with msgtype and its content: {why})"),
            ),
        ),
        (WeCom, BadQuery) => (
            ok,
            errcode(
                93000,
                "invalid webhook url (sluice: the query string cannot be read; expected key=…[&job=…])".to_string(),
            ),
        ),
        (WeCom, BadSign(why) | BadTimestamp(why)) => (
            ok,
            errcode(93000, format!("invalid webhook url (sluice: {why})")),
        ),
    }
}

fn respond(status: StatusCode, body: Value) -> Response {
    // axum's Json sets `Content-Type: application/json`.
    (status, axum::Json(body)).into_response()
}
