//! Feishu / Lark custom bots (自定义机器人): signing, the post and card bodies, and the answer
//! table.
//!
//! A bot takes 100 requests a minute and 5 a second (the robot's two rate windows,
//! [`super::Defaults`]) and bodies of at most 20 KB. Its errors come in the body as `code` with
//! HTTP 200 or 400; we classify on the number and keep the text as a hint. A signed request
//! carries `timestamp` (seconds, a string) and `sign` next to `msg_type` in the body, not in the
//! URL, so they are put into the prepared body afresh for each try.
//!
//! The folder: `config.rs` what its config table must hold (and the hook id's redaction),
//! `message.rs` the JSON bodies and the mentions in Feishu's forms, `sign.rs` the signature,
//! `answer.rs` what an answer means; this file the budget, the digest and the request itself.
//! The dialects, what a block looks like and what it costs, are `digest::feishu`'s.

mod answer;
pub mod config;
mod message;
mod sign;

pub use super::MsgType;
pub use answer::{classify, note_clock_skew};
pub use config::MAX_BODY;
pub use message::{card_body, card_mention_line, people, post_body, post_mention_line};
pub use sign::sign;

use std::time::Duration;

use super::{Outcome, Target};
use crate::alert::Alert;
use crate::digest::feishu::{Card, Post};
use crate::digest::{Dialect, DigestSpec, Rendered, render_in};
use crate::mention::{self, Mention};

/// Budget for the digest in its dialect's measure. The rest of the 20 000-byte body is the
/// envelope (about 100 bytes for a post, 200 for a card with its button), the `timestamp` and
/// `sign` (about 80), and what a post's link element costs beyond its line (5); the mention line
/// is taken out of the budget by [`render`], at what it costs.
pub const TEXT_BUDGET: usize = MAX_BODY - 1_000;

/// A Feishu digest in the robot's `msgtype`: a post or a card, within [`TEXT_BUDGET`] less its
/// mention line, which goes just above the footer (a post sends it as `at` elements, a card as
/// `<at id=…>` in its markdown).
pub fn render(
    spec: DigestSpec,
    alerts: &[Alert],
    mentions: &Mention,
    msgtype: MsgType,
) -> Rendered {
    let people = people(mentions);
    let (line, cost) = match msgtype {
        MsgType::Interactive => {
            let line = card_mention_line(&people);
            let cost = if line.is_empty() {
                0
            } else {
                Card.size(&line).get() + Card.size(Card::BLOCK_BREAK).get()
            };
            (line, cost)
        }
        _ => (
            post_mention_line(&people),
            message::post_mention_cost(&people),
        ),
    };
    let spec = DigestSpec {
        max_bytes: TEXT_BUDGET.saturating_sub(cost + spec.max_bytes),
        ..spec
    };
    let mut rendered = match msgtype {
        MsgType::Interactive => render_in(&Card, &spec, alerts),
        _ => render_in(&Post, &spec, alerts),
    };
    if !line.is_empty() {
        rendered.text = mention::insert_line(&rendered.text, &line);
    }
    rendered
}

pub struct Feishu {
    client: reqwest::Client,
    timeout: Duration,
    webhook: String,
    secret: Option<String>,
    msgtype: MsgType,
    public_url: Option<String>,
}

impl Feishu {
    /// A robot sending with the process's one HTTP `client` ([`super::http_client`]).
    pub fn new(robot: &Target, public_url: Option<&str>, client: reqwest::Client) -> Feishu {
        Feishu {
            client,
            timeout: robot.request_timeout,
            webhook: robot.webhook.unwrap_or_default().to_string(),
            secret: robot.secret.map(str::to_string),
            msgtype: robot.msgtype,
            public_url: public_url.map(str::to_string),
        }
    }

    /// The request body for digest `id` (unsigned): a post, or a card whose button opens the
    /// digest's page.
    pub fn body(&self, id: u64, title: &str, text: &str, mentions: &Mention) -> serde_json::Value {
        let link = self
            .public_url
            .as_ref()
            .map(|base| format!("{base}/v1/digests/{id}"));
        match self.msgtype {
            MsgType::Interactive => card_body(text, link.as_deref()),
            _ => post_body(title, text, link.as_deref(), &people(mentions)),
        }
    }

    /// A notice from sluice itself (the `--ping` test message, the probe), in the robot's dialect.
    pub fn notice_text(&self, title: &str, robot: &str, rest: &str) -> String {
        let mut text = String::new();
        match self.msgtype {
            MsgType::Interactive => {
                Card.write_title(&mut text, title);
                text.push_str(Card::BLOCK_BREAK);
                text.push_str(&format!("sluice can reach robot **{robot}**{rest}"));
            }
            _ => {
                Post.write_title(&mut text, title);
                text.push_str(Post::BLOCK_BREAK);
                text.push_str(&format!("sluice can reach robot {robot}{rest}"));
            }
        }
        text
    }

    /// Posts a prepared body, signed for this try.
    pub async fn send(&self, body: &serde_json::Value) -> Outcome {
        let mut body = body.clone();
        if let Some(secret) = &self.secret {
            // A fresh timestamp per request: Feishu refuses one more than an hour off.
            let ts = crate::unix_ms().div_euclid(1000);
            body["timestamp"] = ts.to_string().into();
            body["sign"] = sign(secret, ts).into();
        }
        let request = self
            .client
            .post(&self.webhook)
            .timeout(self.timeout)
            .json(&body);
        match super::exchange(request).await {
            Err(why) => Outcome::Transient(why),
            Ok(answer) => {
                let now = crate::unix_ms();
                // Feishu's Open API says when its limit resets in its own header; honour either.
                let wait = answer.retry_after.or(answer.ratelimit_reset);
                match classify(answer.status, &answer.body) {
                    Outcome::Throttled(why, _) => {
                        Outcome::Throttled(why, super::retry_after(wait.as_deref(), now))
                    }
                    other => note_clock_skew(other, answer.date.as_deref(), now),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
