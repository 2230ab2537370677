//! Robot providers: how a sealed digest becomes a request, and what the answer means.
//!
//! Each provider exposes a pure `classify` over the HTTP status and body, table-tested against
//! every code in ROBOTS.md, and keeps the effects (signing with the current time, the POST) in
//! `send`. The robot loop acts only on the [`Outcome`] class.

pub mod console;
pub mod dingtalk;

use std::fmt;

use crate::config::{ProviderKind, Robot};
use crate::store::DigestRecord;

/// What an answer means for the digest and the robot (DESIGN.md, "Answer classes").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Ok,
    /// The robot is rate-limited: keep the digest, wait out the penalty, retry.
    Throttled(String),
    /// Network trouble or a busy server: keep the digest, retry with backoff.
    Transient(String),
    /// The robot itself is unusable (token, signature, keyword, IP, group gone): keep everything,
    /// mark the robot blocked, probe rarely.
    Robot(String),
    /// This message can never be accepted: dead-letter it and go on with the next.
    Message(String),
}

impl Outcome {
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled(_) => "throttled",
            Outcome::Transient(_) => "transient",
            Outcome::Robot(_) => "robot",
            Outcome::Message(_) => "message",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Ok => None,
            Outcome::Throttled(r)
            | Outcome::Transient(r)
            | Outcome::Robot(r)
            | Outcome::Message(r) => Some(r),
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            None => f.write_str("ok"),
            Some(r) => write!(f, "{}: {r}", self.class()),
        }
    }
}

/// A configured robot's way of delivering digests.
pub enum Provider {
    DingTalk(dingtalk::DingTalk),
    Console(console::Console),
}

impl Provider {
    pub fn new(robot: &Robot, public_url: Option<&str>) -> Provider {
        match robot.provider {
            ProviderKind::DingTalk => {
                Provider::DingTalk(dingtalk::DingTalk::new(robot, public_url))
            }
            ProviderKind::Console => Provider::Console(console::Console::new(&robot.name)),
        }
    }

    /// The byte budget for a digest's title plus text, as JSON-escaped bytes.
    pub fn text_budget(&self) -> usize {
        match self {
            Provider::DingTalk(_) | Provider::Console(_) => dingtalk::TEXT_BUDGET,
        }
    }

    /// Sends one test message (`sluice check --ping`). It does not go through a daemon's rate
    /// guard, so it counts against the robot's limit without the daemon knowing.
    pub async fn ping(&self, robot: &Robot) -> Outcome {
        let now = crate::unix_ms();
        // A keyword-protected robot only takes messages that carry one.
        let keyword = robot
            .keywords
            .first()
            .map_or(String::new(), |k| format!("{k} "));
        let title = format!("{keyword}sluice test message");
        let text = format!(
            "### {title}\n\nsluice can reach robot **{}**; digests will arrive here.",
            robot.name
        );
        let record = DigestRecord {
            id: 0,
            robot: robot.name.clone(),
            first_seq: 0,
            end_seq: 0,
            counts: Default::default(),
            listed: 0,
            state: crate::store::DigestState::Pending,
            attempts: 0,
            sealed_ms: now,
            oldest_ms: now,
            sent_ms: None,
            last_error: None,
            title,
            text,
            mentions: Default::default(),
            replayed_to: None,
            replayed_ms: None,
        };
        self.send(&record).await
    }

    pub async fn send(&self, digest: &DigestRecord) -> Outcome {
        match self {
            Provider::DingTalk(d) => d.send(digest).await,
            Provider::Console(c) => c.send(digest),
        }
    }
}
