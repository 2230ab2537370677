//! DingTalk custom robots: 加签 signing, the markdown message, and the answer table.
//!
//! DingTalk answers business errors with HTTP 200 and a non-zero `errcode`; the `errmsg` text has
//! changed over the years (English, then Chinese), so we classify on the number alone and keep the
//! text only as a hint for humans.
//!
//! The folder: `config.rs` what its config table must hold, `message.rs` the JSON body (markdown or actionCard, the `at` object), `sign.rs`
//! 加签, `answer.rs` what an answer means (the pure `classify`, and what a `Date` header says of
//! the host clock); this file the request itself.

mod answer;
pub mod config;
mod message;
mod sign;

pub use super::MsgType;
pub use answer::{classify, note_clock_skew};
pub use config::MAX_BODY;
pub use message::{action_card_body, message_body};
pub use sign::sign;

use std::time::Duration;

use super::{Outcome, Target};
use crate::alert::Alert;
use crate::digest::{DigestSpec, Rendered};
use crate::mention::{self, Mention};

/// Budget for title + text (JSON-escaped bytes). The rest of the 20 000-byte body is the JSON
/// envelope (about 60 bytes) and room for the `at` object.
pub const TEXT_BUDGET: usize = MAX_BODY - 1_000;

/// A DingTalk digest: the built-in renderer within [`TEXT_BUDGET`], less the mention line
/// (`@13800000000 @alice`, DingTalk notifies only who is written in the text and named in the
/// `at` object), which goes just above the footer.
pub fn render(spec: DigestSpec, alerts: &[Alert], mentions: &Mention) -> Rendered {
    let line = mentions.line();
    let spec = DigestSpec {
        max_bytes: TEXT_BUDGET.saturating_sub(mention::line_cost(&line) + spec.max_bytes),
        ..spec
    };
    let mut rendered = crate::digest::render(&spec, alerts);
    if !line.is_empty() {
        rendered.text = mention::insert_line(&rendered.text, &line);
    }
    rendered
}

pub struct DingTalk {
    client: reqwest::Client,
    timeout: Duration,
    webhook: String,
    secret: Option<String>,
    msgtype: MsgType,
    public_url: Option<String>,
}

impl DingTalk {
    /// A robot sending with the process's one HTTP `client` ([`super::http_client`]).
    pub fn new(robot: &Target, public_url: Option<&str>, client: reqwest::Client) -> DingTalk {
        DingTalk {
            client,
            timeout: robot.request_timeout,
            webhook: robot.webhook.unwrap_or_default().to_string(),
            secret: robot.secret.map(str::to_string),
            msgtype: robot.msgtype,
            public_url: public_url.map(str::to_string),
        }
    }

    /// The request body for digest `id`: markdown, or an action card whose button opens the
    /// digest's page.
    pub fn body(&self, id: u64, title: &str, text: &str, mentions: &Mention) -> serde_json::Value {
        match (self.msgtype, &self.public_url) {
            (MsgType::ActionCard, Some(base)) => {
                action_card_body(title, text, mentions, &format!("{base}/v1/digests/{id}"))
            }
            _ => message_body(title, text, mentions),
        }
    }

    /// Posts a prepared body, signed for this try.
    pub async fn send(&self, body: &serde_json::Value) -> Outcome {
        let mut request = self
            .client
            .post(&self.webhook)
            .timeout(self.timeout)
            .json(body);
        if let Some(secret) = &self.secret {
            // A fresh timestamp per request: DingTalk rejects one more than an hour off.
            let ts = crate::unix_ms();
            // `.query` percent-encodes, so the raw base64 goes in: encoded exactly once.
            request = request.query(&[("timestamp", ts.to_string()), ("sign", sign(secret, ts))]);
        }
        match super::exchange(request).await {
            Err(e) => Outcome::Transient(e),
            Ok(answer) => {
                let now = crate::unix_ms();
                match classify(answer.status, &answer.body) {
                    Outcome::Throttled(why, _) => Outcome::Throttled(
                        why,
                        super::retry_after(answer.retry_after.as_deref(), now),
                    ),
                    other => note_clock_skew(other, answer.date.as_deref(), now),
                }
            }
        }
    }
}
