//! The HTTP API's shapes that the daemon and the CLI both use: defined once, so what
//! `http/` writes and what `client.rs` reads cannot drift apart. Only `/metrics` (Prometheus
//! text) and `/healthz` (plain text) are not here.
//!
//! Answers are read leniently (`#[serde(default)]`), so a client reads an older or newer
//! daemon's answer as long as the fields it prints mean the same; requests are read strictly
//! (`deny_unknown_fields`), so a typo in a field name is an error, not a silent default.

use serde::{Deserialize, Serialize};

use crate::digest::Counts;

/// `202` to `POST /v1/alerts` and `POST /v1/alertmanager`: how many alerts the request held,
/// how many were repeats of dedup keys already queued, and one id per alert and robot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    pub accepted: usize,
    pub duplicates: usize,
    pub ids: Vec<String>,
}

/// The body of every error answer: what was wrong and where, in words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
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

/// `GET /v1/status`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub robots: Vec<RobotEntry>,
    /// Robots removed from the config whose alerts are still queued.
    pub unconfigured: Vec<Unconfigured>,
    pub store: StoreEntry,
    /// What keeps the process from working as configured (see `/healthz`).
    pub faults: Vec<String>,
    /// Where the running config came from.
    pub config: String,
    /// Cluster mode: this node, the live nodes, and whether NATS answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<ClusterEntry>,
}

/// The cluster as one node sees it, in [`Status`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClusterEntry {
    pub node: String,
    /// Nodes whose heartbeat is fresh.
    pub live: Vec<String>,
    /// Why the last round could not read or write NATS; `null` while it can.
    pub error: Option<String>,
    /// The last heartbeat write's round trip to NATS, in ms.
    pub rtt_ms: Option<f64>,
}

/// One configured robot in [`Status`]. `pending` and `oldest_pending_age_ms` are `null` while
/// the store cannot say.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RobotEntry {
    pub robot: String,
    pub provider: String,
    /// The webhook URL with its secrets redacted.
    pub webhook: Option<String>,
    /// `idle`, `waiting`, `sending`, `backoff`, `throttled`, `blocked`, `quota`, or, in
    /// cluster mode, `remote` (another node sends for it: `owner`).
    pub state: String,
    pub since_ms: i64,
    pub pending: Option<u64>,
    pub oldest_pending_age_ms: Option<i64>,
    pub outbox: usize,
    pub sends_in_period: usize,
    /// When those sends left (Unix ms, oldest first): the rate guard's log within the period.
    pub recent_sends: Vec<i64>,
    pub rate_limit: u32,
    /// Humane durations, e.g. `1m`.
    pub rate_period: String,
    pub window: String,
    pub digests_sent: u64,
    pub alerts_delivered: u64,
    pub dead: u64,
    pub duplicates_dropped: u64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    pub next_attempt_ms: Option<i64>,
    /// A robot with a `quota`: sends counted in the current period, the limit, when the period
    /// ends (Unix ms) and when the quota runs out at the period's rate so far (or `null`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_used: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_period_ends: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota_runs_out: Option<i64>,
    /// The robot or pool its queue goes to while its quota is spent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// A pool: its member robots, in config order (each also has an entry of its own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// A pool's member robot: its pool, which holds its queue (so its `pending` is the pool's;
    /// its state, sends, deliveries and last error are its own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Cluster mode: the node that holds the lane's lease and sends for it (empty: none yet).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
}

/// A robot no longer configured whose queue is still there.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Unconfigured {
    pub robot: String,
    pub pending: u64,
    pub digests: u64,
    pub digest_alerts: u64,
}

/// The store in [`Status`]: its figures while it is open, else only `data_dir` and `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StoreEntry {
    pub data_dir: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_on_disk: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commits: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub commit_requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub largest_commit_batch: Option<u64>,
    /// Why the store is down (it is being reopened); `null` while it is open.
    pub error: Option<String>,
}

/// `GET /v1/digests/{id}`: a digest and its alerts. `text` is the message as sealed (kept after
/// it was sent, until retention; `null` for digests sent by versions that dropped it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DigestAnswer {
    pub id: u64,
    pub robot: String,
    pub state: String,
    pub alerts_count: u64,
    pub listed: u64,
    pub counts: Counts,
    pub attempts: u32,
    pub sealed_ms: i64,
    pub sent_ms: Option<i64>,
    pub last_error: Option<String>,
    /// Its last [`TRIES_KEPT`](crate::store::TRIES_KEPT) tries, oldest first, with the
    /// robot's answer to each (`attempts` counts them all).
    pub tries: Vec<Attempt>,
    pub title: String,
    pub text: Option<String>,
    /// Each alert as it was accepted, with its `id` (`robot:seq`).
    pub alerts: Vec<serde_json::Value>,
}

/// One try at sending a digest, as the digest's attempt log keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Attempt {
    /// When the request went out (Unix ms), and how long the answer took.
    pub at_ms: i64,
    pub took_ms: i64,
    /// The robot it went to: the digest's own, or the pool member that carried it.
    pub robot: String,
    /// How the answer was taken: `ok`, `throttled`, `transient`, `robot`, `message` or `quota`.
    pub outcome: String,
    /// What the robot answered, or what went wrong on the way; `None` when it was delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub said: Option<String>,
}

/// `GET /v1/dead`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadList {
    pub dead: Vec<DeadEntry>,
}

/// A dead digest: refused for good by its robot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeadEntry {
    pub id: u64,
    pub robot: String,
    pub alerts: u64,
    pub title: String,
    pub attempts: u32,
    pub sealed_ms: i64,
    pub last_error: Option<String>,
    /// `dead`, or `replayed` (listed with `?include=replayed`).
    pub state: String,
    /// A replayed one: the robot its alerts were queued for again, and when (Unix ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed_ms: Option<i64>,
}

/// `GET /v1/digests`: delivered digests, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DigestList {
    pub digests: Vec<SentEntry>,
    /// The search read [`SEARCH_ALERTS_MAX`](crate::http) alerts and stopped: narrow it
    /// (`robot`, `since`) to see older matches.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SentEntry {
    pub id: u64,
    pub robot: String,
    pub alerts: u64,
    pub sent_ms: Option<i64>,
    pub title: String,
}

/// `POST /v1/dead/replay`: what was queued again.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Replayed {
    pub replayed: Vec<Requeued>,
    /// Alerts queued again, over every digest.
    pub alerts: u64,
}

/// One digest whose alerts were queued again, and for which robot. Also the answer to
/// `POST /v1/digests/{id}/redeliver`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Requeued {
    pub id: u64,
    pub alerts: u64,
    pub to: String,
}

/// `POST /v1/queue/move`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct QueueMoved {
    pub robot: String,
    pub to: String,
    pub alerts: u64,
    pub digests: u64,
}

/// `POST /-/reload`: what the reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Reloaded {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
    pub unchanged: Vec<String>,
    /// Keys that changed but take effect only after a restart; their old values stay.
    pub needs_restart: Vec<String>,
}

/// `POST /v1/robots/{name}/test`: a test message through the running daemon's own rate guard.
/// The same shape answers `200` (sent; `outcome` says what the robot made of it) and the
/// refusals that sent nothing (`429` no permit, `409` paused or not running here, `503`, `504`),
/// which also carry `error`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TestSent {
    /// The robot the test went to (a pool member goes through its pool's lane).
    pub robot: String,
    /// Whether a message left: counted against the rate limit and quota, and in the send log.
    pub sent: bool,
    /// The answer's class when sent: `ok`, `throttled`, `message`, `robot`, `transient`,
    /// `quota`.
    pub outcome: Option<String>,
    /// What the robot said, when it refused or failed.
    pub said: Option<String>,
    /// The robot's state when refused for being paused or not running (`blocked`, `remote`...).
    pub state: Option<String>,
    /// Until when it is paused (Unix ms), when known.
    pub until_ms: Option<i64>,
    /// Cluster mode: the node that sends for the robot, when another one does.
    pub owner: Option<String>,
    /// Sends in the trailing rate period (this one included when sent).
    pub sends_in_period: usize,
    pub rate_limit: u32,
    /// No permit: how long until the next one, in ms.
    pub next_permit_ms: Option<i64>,
    /// Why nothing was sent, or what went wrong; `None` on a `200`.
    pub error: Option<String>,
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
