//! What DingTalk's answer means: the pure [`classify`] over status and body, and what its
//! `Date` header says of the host clock when a signature is refused.

use crate::provider::{Outcome, clock_skew, errcode_answer, hint};

/// Classifies an answer by HTTP status and, for 2xx, by `errcode` (ROBOTS.md §1.4, §1.5).
pub fn classify(status: u16, body: &str) -> Outcome {
    let (code, errmsg) = match errcode_answer(status, body) {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    let why = |meaning: &str| format!("errcode {code} ({meaning}): {}", hint(&errmsg));
    match code {
        0 => Outcome::Ok,
        130101 | 410100 => Outcome::Throttled(why("sending too fast"), None),
        // The robot's call quota (unconfirmed: DingTalk documents no period for it).
        90030 => Outcome::Quota(why("webhook call quota exceeded")),
        -1 => Outcome::Transient(why("system busy")),
        310000 => Outcome::Robot(why("keyword, signature, timestamp or IP check failed")),
        300001 | 300005 | 400101 => Outcome::Robot(why("access token does not exist")),
        400013 => Outcome::Robot(why("group dissolved")),
        400102 => Outcome::Robot(why("robot disabled")),
        400106 => Outcome::Robot(why("robot not in the group")),
        400105 => Outcome::Message(why("unsupported message type")),
        430101..=430104 => Outcome::Message(why("content refused")),
        460101 | 101002 => Outcome::Message(why("message too long")),
        _ => Outcome::Message(why("unrecognised error")),
    }
}

/// A refused security check (errcode 310000) gets what the robot's `Date` header says of the host
/// clock, when the two differ by more than [`CLOCK_SKEW_NOTED`](crate::provider::CLOCK_SKEW_NOTED): DingTalk refuses a signature whose
/// timestamp is more than an hour from its own clock ("invalid timestamp", but its words vary), and
/// "fix the host's clock" is the one useful hint then. `host_ms` is the host clock as the answer
/// came, the clock that signed the request. Pure, beside [`classify`].
pub fn note_clock_skew(outcome: Outcome, date: Option<&str>, host_ms: i64) -> Outcome {
    match outcome {
        Outcome::Robot(reason) if reason.starts_with("errcode 310000 ") => {
            match date.and_then(|d| clock_skew(d, host_ms, "DingTalk")) {
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
        let e = |code: i64, msg: &str| format!(r#"{{"errcode":{code},"errmsg":"{msg}"}}"#);
        let table: &[(u16, String, &str)] = &[
            (200, e(0, "ok"), "ok"),
            (
                200,
                e(130101, "send too fast, exceed 20 times per minute"),
                "throttled",
            ),
            (200, e(410100, "发送速度太快而限流"), "throttled"),
            (200, e(90030, "webhook over limit"), "quota"),
            (429, String::new(), "throttled"),
            (200, e(-1, "系统繁忙"), "transient"),
            (500, "oops".into(), "transient"),
            (502, String::new(), "transient"),
            (503, String::new(), "transient"),
            (200, "<html>proxy error</html>".into(), "transient"),
            (200, "{}".into(), "transient"),
            (200, e(310000, "keywords not in content"), "robot"),
            (200, e(310000, "sign not match"), "robot"),
            (200, e(310000, "invalid timestamp"), "robot"),
            (200, e(310000, "ip 1.2.3.4 not in whitelist"), "robot"),
            (200, e(300001, "token is not exist"), "robot"),
            (200, e(300005, "token is not exist"), "robot"),
            (200, e(400013, "群已被解散"), "robot"),
            (200, e(400101, "access_token不存在"), "robot"),
            (200, e(400102, "机器人已停用"), "robot"),
            (200, e(400106, "机器人不存在"), "robot"),
            (404, String::new(), "robot"),
            (200, e(400105, "不支持的消息类型"), "message"),
            (200, e(430101, "含有不安全的外链"), "message"),
            (200, e(430102, "含有不合适的文本"), "message"),
            (200, e(430103, "含有不合适的图片"), "message"),
            (200, e(430104, "含有不合适的内容"), "message"),
            (
                200,
                e(460101, "message too long, exceed 20000 bytes"),
                "message",
            ),
            (200, e(101002, "message is too long"), "message"),
            (200, e(777777, "something new"), "message"),
            (400, "bad".into(), "message"),
        ];
        for (status, body, class) in table {
            let got = classify(*status, body);
            assert_eq!(got.class(), *class, "HTTP {status} {body}: got {got}");
        }
        // The reason carries the number and the server's words.
        let got = classify(200, &e(310000, "sign not match"));
        assert_eq!(
            got.reason(),
            Some(
                "errcode 310000 (keyword, signature, timestamp or IP check failed): sign not match"
            )
        );
    }

    #[test]
    fn a_refused_timestamp_says_how_far_the_host_clock_is_off() {
        let refused = || classify(200, r#"{"errcode":310000,"errmsg":"invalid timestamp"}"#);
        let host = 1_700_000_000_000; // Tue, 14 Nov 2023 22:13:20 GMT
        let robot_ahead = "Wed, 15 Nov 2023 00:13:20 GMT";
        // The answer came 700 ms after the Date's whole second: still two hours.
        let got = note_clock_skew(refused(), Some(robot_ahead), host + 700);
        assert_eq!(got.class(), "robot");
        let reason = got.reason().unwrap();
        assert!(
            reason.starts_with("errcode 310000 (keyword, signature, timestamp or IP check failed): invalid timestamp; the host clock is 2h 0m behind the robot's (its Date header: Wed, 15 Nov 2023 00:13:20 GMT)"),
            "{reason}"
        );
        let robot_behind = "Tue, 14 Nov 2023 22:09:50 GMT";
        let got = note_clock_skew(refused(), Some(robot_behind), host);
        assert!(
            got.reason()
                .unwrap()
                .contains("the host clock is 3m 30s ahead of the robot's"),
            "{got}"
        );
        // Within a minute, without a Date or with an unreadable one: the answer as it was.
        for date in [
            Some("Tue, 14 Nov 2023 22:14:00 GMT"),
            None,
            Some("yesterday"),
        ] {
            assert_eq!(
                note_clock_skew(refused(), date, host),
                refused(),
                "{date:?}"
            );
        }
        // Other answers are not about the clock.
        let throttled = classify(200, r#"{"errcode":130101,"errmsg":"send too fast"}"#);
        assert_eq!(
            note_clock_skew(throttled.clone(), Some(robot_ahead), host),
            throttled
        );
        assert_eq!(
            note_clock_skew(Outcome::Ok, Some(robot_ahead), host),
            Outcome::Ok
        );
    }
}
