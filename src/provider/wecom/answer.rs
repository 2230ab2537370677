//! What WeCom's answer means: the pure [`classify`] over status and body.
//!
//! WeCom's APIs answer business errors with HTTP 200 and a non-zero `errcode`, and the `errmsg`
//! carries a request-specific hint (`hint: [1632716322_160_…], from ip: …`), so the number alone
//! decides and the text is kept only for humans. Where ROBOTS.md §5 could not confirm what the
//! webhook answers, the safe side is taken: a code that may mean "too fast" is a throttle (the
//! digest waits and is kept), and a code not known is message-level (that digest is
//! dead-lettered with its alerts and the reason, replayable, and the next one goes out).

use crate::provider::{Outcome, errcode_answer, hint};

/// Classifies an answer by HTTP status and, for 2xx, by `errcode` (ROBOTS.md §5).
pub fn classify(status: u16, body: &str) -> Outcome {
    let (code, errmsg) = match errcode_answer(status, body) {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    let why = |meaning: &str| format!("errcode {code} ({meaning}): {}", hint(&errmsg));
    match code {
        0 => Outcome::Ok,
        // WeCom's "api freq out of limit"; that the webhook answers it past 20 a minute is
        // UNCONFIRMED, and a throttle is the safe reading.
        45009 => Outcome::Throttled(why("sending too fast"), None),
        // WeCom's global "system busy, try again later".
        -1 => Outcome::Transient(why("system busy")),
        // A removed or mistyped key (UNCONFIRMED: seen in OSS fixtures only).
        93000 => Outcome::Robot(why("invalid webhook url: the key names no robot")),
        40008 => Outcome::Message(why("invalid message type")),
        // `markdown.content exceed max length 4096` (OBSERVED), and other bad parameters.
        40058 => Outcome::Message(why("invalid parameter, e.g. content over 4096 bytes")),
        _ => Outcome::Message(why("unrecognised error")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_answer_is_classified() {
        let e = |code: i64, msg: &str| format!(r#"{{"errcode":{code},"errmsg":"{msg}"}}"#);
        let table: &[(u16, String, &str)] = &[
            (200, e(0, "ok"), "ok"),
            (200, e(45009, "api freq out of limit"), "throttled"),
            (429, String::new(), "throttled"),
            (200, e(-1, "system busy"), "transient"),
            (500, "oops".into(), "transient"),
            (502, String::new(), "transient"),
            (503, String::new(), "transient"),
            (504, String::new(), "transient"),
            (408, String::new(), "transient"),
            (200, "<html>proxy error</html>".into(), "transient"),
            (200, String::new(), "transient"),
            (200, r#"{"errmsg":"ok"}"#.into(), "transient"),
            (200, e(93000, "invalid webhook url"), "robot"),
            (401, String::new(), "robot"),
            (403, String::new(), "robot"),
            (404, String::new(), "robot"),
            (410, String::new(), "robot"),
            (200, e(40008, "invalid message type"), "message"),
            (
                200,
                e(
                    40058,
                    "markdown.content exceed max length 4096. invalid Request Parameter, hint: [1704540159128593240839785], from ip: 103.56.76.2",
                ),
                "message",
            ),
            (200, e(777777, "something new"), "message"),
            (400, "bad".into(), "message"),
            (413, String::new(), "message"),
        ];
        for (status, body, class) in table {
            let got = classify(*status, body);
            assert_eq!(got.class(), *class, "HTTP {status} {body}: got {got}");
        }
        // The reason carries the number and the server's words.
        let got = classify(200, &e(93000, "invalid webhook url"));
        assert_eq!(
            got.reason(),
            Some(
                "errcode 93000 (invalid webhook url: the key names no robot): invalid webhook url"
            )
        );
        // A throttle without Retry-After: the robot's throttle_backoff applies.
        assert_eq!(
            classify(200, &e(45009, "api freq out of limit")),
            Outcome::Throttled(
                "errcode 45009 (sending too fast): api freq out of limit".into(),
                None
            )
        );
    }
}
