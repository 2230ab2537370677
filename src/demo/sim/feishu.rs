//! Feishu's custom bot (ROBOTS.md §4): `POST /open-apis/bot/v2/hook/<id>`, signed with
//! `timestamp` (seconds, a string) and `sign` in the JSON body, a `post` or `interactive` body of
//! at most 20 KB, answered `{"code":N,"msg":"…","data":{}}`: HTTP 200 for a success and for the
//! throttle (11232), 400 for a bad request (9499).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Content, Refusal, Request, Verdict};
use crate::provider::feishu::sign;

/// Feishu rejects a signature whose timestamp is more than an hour off.
const TIMESTAMP_TOLERANCE_S: i64 = 3_600;

/// 20 KB, read strictly (a size error seen in the wild says 30 KB).
const MAX_BODY: usize = 20_000;

const BAD_REQUEST: Refusal = Refusal {
    code: 9499,
    msg: "Bad Request",
};

/// The signature check: the body's `timestamp` within the hour and its `sign`.
pub(super) fn check_signature(secret: &str, req: &Request) -> Result<(), Refusal> {
    let body: Value = serde_json::from_slice(req.body).unwrap_or(Value::Null);
    let ts = match &body["timestamp"] {
        Value::String(s) => s.parse::<i64>().ok(),
        v => v.as_i64(),
    };
    let now_s = req.now_ms.div_euclid(1000);
    let signed = ts.is_some_and(|ts| {
        (now_s - ts).abs() <= TIMESTAMP_TOLERANCE_S
            && body["sign"].as_str() == Some(sign(secret, ts).as_str())
    });
    if signed {
        Ok(())
    } else {
        Err(Refusal {
            code: 19021,
            msg: "sign match fail or timestamp is not within one hour from current time",
        })
    }
}

/// A post (its title, and its paragraphs one a line: a link as its text and address, a mention
/// as `@id`), or a card (its markdown elements).
pub(super) fn read(req: &Request) -> Result<Content, Refusal> {
    if req.body.len() > MAX_BODY {
        return Err(BAD_REQUEST);
    }
    let message: Value = serde_json::from_slice(req.body).map_err(|_| BAD_REQUEST)?;
    match message["msg_type"].as_str() {
        Some("post") => {
            let post = &message["content"]["post"]["zh_cn"];
            let title = post["title"].as_str().ok_or(BAD_REQUEST)?;
            let paragraphs = post["content"].as_array().ok_or(BAD_REQUEST)?;
            let lines: Vec<String> = paragraphs.iter().map(paragraph).collect();
            Ok((title.to_string(), lines.join("\n")))
        }
        Some("interactive") => {
            let elements = message["card"]["elements"].as_array().ok_or(BAD_REQUEST)?;
            let markdown: Vec<&str> = elements
                .iter()
                .filter_map(|e| e["text"]["content"].as_str())
                .collect();
            Ok((String::new(), markdown.join("\n")))
        }
        _ => Err(BAD_REQUEST),
    }
}

/// One paragraph of a post as a reader sees it.
fn paragraph(elements: &Value) -> String {
    let Some(elements) = elements.as_array() else {
        return String::new();
    };
    elements
        .iter()
        .map(|e| match e["tag"].as_str() {
            Some("a") => format!(
                "{} ({})",
                e["text"].as_str().unwrap_or(""),
                e["href"].as_str().unwrap_or("")
            ),
            Some("at") => format!("@{}", e["user_id"].as_str().unwrap_or("")),
            _ => e["text"].as_str().unwrap_or("").to_string(),
        })
        .collect()
}

pub(super) fn reply(verdict: Verdict) -> Response {
    let (status, code, msg) = match verdict {
        Verdict::Accepted => {
            let body = json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"});
            return (StatusCode::OK, axum::Json(body)).into_response();
        }
        Verdict::NoRobot => (
            StatusCode::NOT_FOUND,
            19001,
            "param invalid: incoming webhook access token invalid",
        ),
        Verdict::Refused(r) if r.code == BAD_REQUEST.code => {
            (StatusCode::BAD_REQUEST, r.code, r.msg)
        }
        Verdict::Refused(r) => (StatusCode::OK, r.code, r.msg),
        Verdict::Throttled(_) => (
            StatusCode::OK,
            11232,
            "frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]",
        ),
    };
    (
        status,
        axum::Json(json!({"code": code, "data": {}, "msg": msg})),
    )
        .into_response()
}
