//! What a robot's task tells the rest of the process: its state and its counters. Only
//! [`super::RobotHandle`]'s methods write a [`RobotStatus`]; everyone else reads copies.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Nothing pending.
    Idle,
    /// Alerts pending: waiting for the window to close or for a send permit.
    Waiting,
    /// A request is in flight.
    Sending,
    /// A transient error: retrying with exponential backoff.
    Backoff,
    /// The robot said we are too fast: waiting out its penalty.
    Throttled,
    /// The robot refuses us (token, signature, keyword...): probing rarely until it accepts.
    Blocked,
    /// Its send quota for the period is spent (`quota`, or the platform said so): waiting for
    /// the next period; its queue goes to its `fallback` meanwhile, if it has one.
    Quota,
    /// Cluster mode: another node holds the robot's lease and sends for it (status names it).
    Remote,
}

impl State {
    /// Every state, for the one-hot state gauge.
    pub const ALL: [State; 8] = [
        State::Idle,
        State::Waiting,
        State::Sending,
        State::Backoff,
        State::Throttled,
        State::Blocked,
        State::Quota,
        State::Remote,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Waiting => "waiting",
            State::Sending => "sending",
            State::Backoff => "backoff",
            State::Throttled => "throttled",
            State::Blocked => "blocked",
            State::Quota => "quota",
            State::Remote => "remote",
        }
    }
}

/// What a robot's task tells the rest of the process.
#[derive(Debug, Clone, Serialize)]
pub struct RobotStatus {
    pub state: State,
    /// When the robot entered `state` (Unix ms).
    pub since_ms: i64,
    pub last_error: Option<String>,
    pub last_error_ms: Option<i64>,
    /// Sealed digests not yet delivered.
    pub outbox: usize,
    /// Wall-clock ms of recent requests (the rate guard's log).
    pub recent_sends: Vec<i64>,
    pub digests_sent: u64,
    pub alerts_delivered: u64,
    pub dead: u64,
    /// Alerts acknowledged but not queued again: repeats of a dedup key already queued.
    pub duplicates_dropped: u64,
    /// When the next retry or probe is due (Unix ms).
    pub next_attempt_ms: Option<i64>,
    /// The send quota, for a robot that has one.
    pub quota: Option<QuotaStatus>,
}

/// A robot's send quota as its task last saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct QuotaStatus {
    pub used: u64,
    pub limit: u64,
    /// When the current period ends (Unix ms).
    pub period_ends_ms: i64,
    /// When the quota runs out at the period's rate so far, if before the period ends.
    pub runs_out_ms: Option<i64>,
}

impl RobotStatus {
    pub fn new(now_ms: i64) -> RobotStatus {
        RobotStatus {
            state: State::Idle,
            since_ms: now_ms,
            last_error: None,
            last_error_ms: None,
            outbox: 0,
            recent_sends: Vec::new(),
            digests_sent: 0,
            alerts_delivered: 0,
            dead: 0,
            duplicates_dropped: 0,
            next_attempt_ms: None,
            quota: None,
        }
    }
}
