//! Slack incoming webhooks: the digest as mrkdwn `text`, mentions as Slack writes them, and the
//! answer table (`answer.rs`). The webhook's URL is its only credential, so it is printed only
//! redacted ([`super::redact_url`] hides its path).

mod answer;
pub mod config;

pub use answer::classify;

use std::time::Duration;

use serde_json::json;

use super::{Outcome, Target};
use crate::alert::Alert;
use crate::digest::slack::{MAX_CHARS, escape};
use crate::digest::{DigestSpec, Rendered, Slack as Dialect};
use crate::mention::Mention;

/// A Slack digest: the built-in renderer in Slack's dialect within [`MAX_CHARS`], less the
/// mention line, which goes just above the footer.
pub fn render(spec: DigestSpec, alerts: &[Alert], mentions: &Mention) -> Rendered {
    let line = mention_line(mentions);
    let cost = if line.is_empty() {
        0
    } else {
        line.chars().count() + 1
    };
    let spec = DigestSpec {
        max_bytes: MAX_CHARS.saturating_sub(cost + spec.max_bytes),
        ..spec
    };
    let mut rendered = crate::digest::render_in(&Dialect, &spec, alerts);
    if !line.is_empty() {
        rendered.text = crate::mention::insert_line(&rendered.text, &line);
    }
    rendered
}

/// `<@U0123> <!channel>`: user ids as Slack mentions, `mention_all` as `<!channel>`. Mobiles
/// (from `[owners]` or an `owner_mobile` label) cannot mention anyone on Slack: they are written
/// as text, escaped, so the reader still sees whom the alert names.
pub fn mention_line(m: &Mention) -> String {
    let mut parts: Vec<String> = m.user_ids.iter().map(|u| format!("<@{u}>")).collect();
    if m.all {
        parts.push("<!channel>".to_string());
    }
    for mobile in &m.mobiles {
        let mut text = String::from("＠");
        escape(mobile, true, &mut |p| {
            text.push_str(p);
            true
        });
        parts.push(text);
    }
    parts.join(" ")
}

/// The body: the digest's text (its title is its first line), posted as mrkdwn.
pub fn body(text: &str) -> serde_json::Value {
    json!({ "text": text, "mrkdwn": true })
}

pub struct SlackWebhook {
    client: reqwest::Client,
    timeout: Duration,
    webhook: String,
}

impl SlackWebhook {
    pub fn new(robot: &Target, client: reqwest::Client) -> SlackWebhook {
        SlackWebhook {
            client,
            timeout: robot.request_timeout,
            webhook: robot.webhook.unwrap_or_default().to_string(),
        }
    }

    /// Posts a prepared body; a 429's `Retry-After` says how long to wait.
    pub async fn send(&self, body: &serde_json::Value) -> Outcome {
        let request = self
            .client
            .post(&self.webhook)
            .timeout(self.timeout)
            .json(body);
        super::send_classified(request, classify).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_are_written_as_slack_does() {
        let m = Mention {
            mobiles: vec!["13800000000".into()],
            user_ids: vec!["U0123".into(), "W9".into()],
            all: true,
        };
        assert_eq!(mention_line(&m), "<@U0123> <@W9> <!channel> ＠13800000000");
        assert_eq!(mention_line(&Mention::default()), "");
    }
}
