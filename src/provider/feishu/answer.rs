//! What Feishu's answer means: the pure [`classify`] over status and body, and what its `Date`
//! header says of the host clock when a signature is refused.
//!
//! A custom bot answers `{"code":N,"msg":"…","data":{}}` (a success also carries the legacy
//! `"StatusCode":0`), with HTTP 200 for the security checks and the 11232 throttle, and HTTP 400
//! for 9499, which is both "Bad Request" and, in its older form, the throttle ("too many
//! request"). So the body is read whatever the status, and the code decides; the message text
//! only tells the two 9499s apart.

use crate::provider::{Outcome, clock_skew, hint};

/// Classifies an answer by its `code` (ROBOTS.md §4), else by its HTTP status.
pub fn classify(status: u16, body: &str) -> Outcome {
    match status {
        // Feishu's Open API throttles with 429 (and says when to come back); a gateway may too.
        429 => return Outcome::Throttled(format!("HTTP {status}"), None),
        408 | 500..=599 => return Outcome::Transient(format!("HTTP {status}")),
        _ => {}
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        code: Option<i64>,
        msg: Option<String>,
        #[serde(rename = "StatusCode")]
        status_code: Option<i64>,
        #[serde(rename = "StatusMessage")]
        status_message: Option<String>,
    }
    let answer = serde_json::from_str::<Answer>(body).ok();
    let code = answer.as_ref().and_then(|a| a.code.or(a.status_code));
    let ok_status = (200..=299).contains(&status);
    let url_refused = matches!(status, 401 | 403 | 404 | 410);
    let Some(code) = code.filter(|&c| c != 0 || ok_status) else {
        return if ok_status {
            Outcome::Transient(format!("unreadable answer: {}", hint(body)))
        } else if url_refused {
            Outcome::Robot(format!("HTTP {status}: the webhook URL is refused"))
        } else {
            Outcome::Message(format!("HTTP {status}: {}", hint(body)))
        };
    };
    let msg = answer
        .and_then(|a| a.msg.or(a.status_message))
        .unwrap_or_default();
    let why = |meaning: &str| format!("code {code} ({meaning}): {}", hint(&msg));
    match code {
        0 => Outcome::Ok,
        11232 => Outcome::Throttled(why("frequency limited"), None),
        9499 if msg.to_ascii_lowercase().contains("too many request") => {
            Outcome::Throttled(why("too many requests"), None)
        }
        // The Open API's throttle; not documented for bots, and waiting is the safe answer.
        99991400 => Outcome::Throttled(why("frequency limited"), None),
        19021 => Outcome::Robot(why("signature or timestamp check failed")),
        19022 => Outcome::Robot(why("IP not allowed")),
        19024 => Outcome::Robot(why("keyword not found")),
        9499 => Outcome::Message(why("bad request: malformed or too large")),
        19036 => Outcome::Message(why("message too large")),
        _ if url_refused => Outcome::Robot(why("the webhook URL is refused")),
        _ => Outcome::Message(why("unrecognised error")),
    }
}

/// A refused signature (code 19021: "sign match fail or timestamp is not within one hour from
/// current time") gets what the robot's `Date` header says of the host clock, as DingTalk's does
/// ([`crate::provider::dingtalk::note_clock_skew`]). Pure, beside [`classify`].
pub fn note_clock_skew(outcome: Outcome, date: Option<&str>, host_ms: i64) -> Outcome {
    match outcome {
        Outcome::Robot(reason) if reason.starts_with("code 19021 ") => {
            match date.and_then(|d| clock_skew(d, host_ms, "Feishu")) {
                Some(note) => Outcome::Robot(format!("{reason}; {note}")),
                None => Outcome::Robot(reason),
            }
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_answer_is_classified() {
        let e = |code: i64, msg: &str| format!(r#"{{"code":{code},"data":{{}},"msg":"{msg}"}}"#);
        let table: &[(u16, String, &str)] = &[
            (
                200,
                r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#
                    .into(),
                "ok",
            ),
            (
                200,
                r#"{"StatusCode":0,"StatusMessage":"success"}"#.into(),
                "ok",
            ),
            (
                200,
                e(
                    11232,
                    "frequency limited psm[lark.oapi.app_platform_runtime]appID[1500]",
                ),
                "throttled",
            ),
            (400, e(9499, "too many request"), "throttled"),
            (200, e(9499, "Too Many Requests"), "throttled"),
            (
                400,
                e(99991400, "request trigger frequency limit"),
                "throttled",
            ),
            (429, String::new(), "throttled"),
            (429, e(0, "success"), "throttled"),
            (
                200,
                e(
                    19021,
                    "sign match fail or timestamp is not within one hour from current time",
                ),
                "robot",
            ),
            (200, e(19022, "Ip Not Allowed"), "robot"),
            (200, e(19024, "Key Words Not Found"), "robot"),
            (404, String::new(), "robot"),
            (404, "<html>not found</html>".into(), "robot"),
            (
                404,
                e(
                    19001,
                    "param invalid: incoming webhook access token invalid",
                ),
                "robot",
            ),
            (400, e(9499, "Bad Request"), "message"),
            (200, e(9499, "Bad Request"), "message"),
            (
                400,
                e(19036, "The message exceeds the size limit of 30KB"),
                "message",
            ),
            (200, e(19001, "param invalid"), "message"),
            (200, e(777777, "something new"), "message"),
            (400, "bad".into(), "message"),
            (400, e(0, "success"), "message"),
            (500, "oops".into(), "transient"),
            (502, String::new(), "transient"),
            (503, e(11232, "frequency limited"), "transient"),
            (408, String::new(), "transient"),
            (200, "<html>proxy error</html>".into(), "transient"),
            (200, "{}".into(), "transient"),
            (200, String::new(), "transient"),
        ];
        for (status, body, class) in table {
            let got = classify(*status, body);
            assert_eq!(got.class(), *class, "HTTP {status} {body}: got {got}");
        }
        // The reason carries the number and the server's words.
        assert_eq!(
            classify(200, &e(19024, "Key Words Not Found")).reason(),
            Some("code 19024 (keyword not found): Key Words Not Found")
        );
        assert_eq!(
            classify(400, &e(9499, "Bad Request")).reason(),
            Some("code 9499 (bad request: malformed or too large): Bad Request")
        );
    }

    #[test]
    fn a_refused_signature_says_how_far_the_host_clock_is_off() {
        let refused = || classify(200, r#"{"code":19021,"msg":"sign match fail"}"#);
        let host = 1_700_000_000_000; // Tue, 14 Nov 2023 22:13:20 GMT
        let got = note_clock_skew(refused(), Some("Wed, 15 Nov 2023 00:13:20 GMT"), host);
        assert_eq!(
            got.reason(),
            Some(
                "code 19021 (signature or timestamp check failed): sign match fail; the host clock is 2h 0m behind the robot's (its Date header: Wed, 15 Nov 2023 00:13:20 GMT); Feishu refuses signatures more than an hour off its clock, so set the host's time right (NTP)"
            )
        );
        // Within a minute, or another answer: as it was.
        let close = Some("Tue, 14 Nov 2023 22:13:50 GMT");
        assert_eq!(note_clock_skew(refused(), close, host), refused());
        let keyword = classify(200, r#"{"code":19024,"msg":"Key Words Not Found"}"#);
        assert_eq!(
            note_clock_skew(keyword.clone(), Some("Wed, 15 Nov 2023 00:13:20 GMT"), host),
            keyword
        );
    }
}
