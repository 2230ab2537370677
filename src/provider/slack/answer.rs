//! What a Slack incoming webhook's answer means: the pure [`classify`].
//!
//! Slack answers a delivered message with HTTP 200 and the plain-text body `ok`, and an error
//! with an HTTP 4xx and a short plain-text code (`invalid_token`, `channel_not_found`, …). The
//! code decides; the status only where the code is unknown. Over its limit Slack answers 429
//! with `Retry-After`, which the caller reads (ROBOTS.md §6).

use crate::provider::Outcome;

/// Classifies an answer by HTTP status and Slack's plain-text code.
pub fn classify(status: u16, body: &str) -> Outcome {
    let code = body.trim();
    let hint = super::super::hint(code);
    match status {
        // A 2xx is Slack having taken the message; sending it again would post it twice.
        200..=299 => return Outcome::Ok,
        429 => return Outcome::Throttled(format!("HTTP 429: {hint}"), None),
        408 | 500..=599 => return Outcome::Transient(format!("HTTP {status}: {hint}")),
        _ => {}
    }
    let why = |meaning: &str| format!("HTTP {status} {hint} ({meaning})");
    match code {
        "invalid_token" | "no_service" | "no_service_id" | "no_team" | "team_disabled"
        | "invalid_team" => Outcome::Robot(why("the webhook URL is revoked or wrong")),
        "channel_not_found" | "channel_is_archived" => {
            Outcome::Robot(why("the channel is gone or archived"))
        }
        "action_prohibited" | "posting_to_general_channel_denied" => {
            Outcome::Robot(why("the workspace does not let this webhook post"))
        }
        "invalid_payload"
        | "no_text"
        | "too_many_attachments"
        | "invalid_blocks"
        | "invalid_blocks_format" => Outcome::Message(why("the message is refused")),
        _ => match status {
            401 | 403 | 404 | 410 => Outcome::Robot(why("the webhook URL is refused")),
            _ => Outcome::Message(why("unrecognised error")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_in_robots_md_has_its_class() {
        let table: &[(u16, &str, &str)] = &[
            (200, "ok", "ok"),
            (200, "", "ok"),
            (429, "rate_limited", "throttled"),
            (500, "", "transient"),
            (503, "service unavailable", "transient"),
            (408, "", "transient"),
            (403, "invalid_token", "robot"),
            (404, "no_service", "robot"),
            (404, "channel_not_found", "robot"),
            (410, "channel_is_archived", "robot"),
            (403, "action_prohibited", "robot"),
            (400, "invalid_payload", "message"),
            (400, "no_text", "message"),
            (400, "something_new", "message"),
            (404, "something_new", "robot"),
        ];
        for &(status, body, class) in table {
            let got = classify(status, body);
            assert_eq!(got.class(), class, "{status} {body:?}: {got}");
        }
        assert_eq!(
            classify(403, "invalid_token\n").to_string(),
            "robot: HTTP 403 invalid_token (the webhook URL is revoked or wrong)"
        );
    }
}
