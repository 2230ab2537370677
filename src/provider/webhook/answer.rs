//! What a generic webhook's answer means: the pure [`classify`], on the HTTP status alone.

use crate::provider::{Outcome, hint};

/// 2xx delivered; 429 throttled (the caller adds `Retry-After`); 408 and 5xx transient; 401,
/// 403, 404 and 410 robot-level (the URL or its credential is wrong, so nothing is dead-lettered
/// while it is); any other 4xx message-level.
pub fn classify(status: u16, body: &str) -> Outcome {
    let why = || {
        let h = hint(body);
        if h.is_empty() {
            format!("HTTP {status}")
        } else {
            format!("HTTP {status}: {h}")
        }
    };
    match status {
        200..=299 => Outcome::Ok,
        429 => Outcome::Throttled(why(), None),
        408 | 500..=599 => Outcome::Transient(why()),
        401 | 403 | 404 | 410 => Outcome::Robot(why()),
        _ => Outcome::Message(why()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_class_has_its_outcome() {
        let table: &[(u16, &str)] = &[
            (200, "ok"),
            (201, "ok"),
            (204, "ok"),
            (429, "throttled"),
            (408, "transient"),
            (500, "transient"),
            (502, "transient"),
            (401, "robot"),
            (403, "robot"),
            (404, "robot"),
            (410, "robot"),
            (400, "message"),
            (413, "message"),
            (422, "message"),
            (302, "message"),
        ];
        for &(status, class) in table {
            assert_eq!(classify(status, "").class(), class, "{status}");
        }
        assert_eq!(
            classify(413, "payload too large\n").to_string(),
            "message: HTTP 413: payload too large"
        );
    }
}
