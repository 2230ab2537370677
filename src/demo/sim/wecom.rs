//! WeCom's group robot (ROBOTS.md §5): `POST /cgi-bin/webhook/send?key=…` (the key is the only
//! credential), a markdown message whose content is at most 4 096 UTF-8 bytes, answered
//! `{"errcode":N,"errmsg":"…"}` with HTTP 200; 45009 over the limit.

use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{Content, Refusal, Request, Verdict};

/// The most `markdown.content` (and `markdown_v2.content`) holds, in raw UTF-8 bytes.
pub(super) const MAX_CONTENT: usize = 4096;

/// A markdown (or markdown_v2) message's content; WeCom has no title apart from it.
pub(super) fn read(req: &Request) -> Result<Content, Refusal> {
    let message: Value = serde_json::from_slice(req.body).map_err(|_| Refusal {
        code: 40058,
        msg: "invalid parameter: not JSON",
    })?;
    let content = match message["msgtype"].as_str() {
        Some(t @ ("markdown" | "markdown_v2")) => message[t]["content"].as_str(),
        _ => {
            return Err(Refusal {
                code: 40008,
                msg: "invalid message type",
            });
        }
    };
    match content {
        Some(c) if !c.is_empty() && c.len() <= MAX_CONTENT => Ok((String::new(), c.to_string())),
        Some(c) if !c.is_empty() => Err(Refusal {
            code: 40058,
            msg: "markdown.content exceed max length 4096",
        }),
        _ => Err(Refusal {
            code: 40058,
            msg: "invalid parameter: markdown.content missing",
        }),
    }
}

pub(super) fn reply(verdict: Verdict) -> Response {
    let (errcode, errmsg) = match verdict {
        Verdict::Accepted => (0, "ok"),
        Verdict::NoRobot => (93000, "invalid webhook url"),
        Verdict::Refused(r) => (r.code, r.msg),
        Verdict::Throttled(_) => (45009, "api freq out of limit"),
    };
    axum::Json(json!({"errcode": errcode, "errmsg": errmsg})).into_response()
}
