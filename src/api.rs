//! The HTTP API's shapes that the daemon and the CLI both use: defined once, so what
//! `http/` writes and what `client.rs` reads cannot drift apart. Answers not listed here
//! (status, digests, metrics) are still built as JSON values by their routes.

use serde::{Deserialize, Serialize};

/// `202` to `POST /v1/alerts` and `POST /v1/alertmanager`: how many alerts the request held,
/// how many were repeats of dedup keys already queued, and one id per alert and robot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub accepted: usize,
    pub duplicates: usize,
    pub ids: Vec<String>,
}

/// Every error answer: what was wrong and where, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub error: String,
}

/// `POST /v1/dead/replay`: which dead digests to replay, and where to. No `id` and no `robot`:
/// all of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub id: Option<u64>,
    pub robot: Option<String>,
    /// Queue the alerts for this robot instead of their own.
    pub to: Option<String>,
}

/// `POST /v1/digests/{id}/redeliver`: the robot to queue a delivered digest's alerts for
/// (its own when `None`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedeliverRequest {
    pub to: Option<String>,
}

/// `POST /v1/queue/move`: a removed robot's queue, and the configured robot to give it to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MoveRequest {
    pub robot: String,
    pub to: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire form is the one the README documents, both ways.
    #[test]
    fn the_shapes_are_the_documented_json() {
        let a = Accepted {
            accepted: 2,
            duplicates: 1,
            ids: vec!["ops:0".into(), "ops:0".into()],
        };
        let text = serde_json::to_string(&a).unwrap();
        assert_eq!(
            text,
            r#"{"accepted":2,"duplicates":1,"ids":["ops:0","ops:0"]}"#
        );
        assert_eq!(serde_json::from_str::<Accepted>(&text).unwrap(), a);
        // What older clients send: explicit nulls, or fields left out.
        let r: ReplayRequest =
            serde_json::from_str(r#"{"robot": null, "id": 4, "to": "ops"}"#).unwrap();
        assert_eq!(
            (r.id, r.robot, r.to.as_deref()),
            (Some(4), None, Some("ops"))
        );
        let err = serde_json::from_str::<MoveRequest>(r#"{"robot": "a", "too": "b"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `too`"), "{err}");
    }
}
