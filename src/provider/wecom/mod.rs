//! WeCom (企业微信) group robots (群机器人, "消息推送"): the markdown message, its mentions, and
//! the answer table.
//!
//! The webhook's `key` is the only credential: there is no signing and no keyword security, so
//! a config that sets either is refused (`config.rs`), and the URL is printed only through
//! `redact_url`. A digest is one `markdown` (or `markdown_v2`) message whose content is at most
//! 4 096 raw UTF-8 bytes, title heading and mention line included ([`render`]).
//!
//! The folder: `config.rs` what its config table must hold (webhook, msgtype, mentions),
//! `message.rs` the JSON body, `answer.rs` what an answer means (the pure `classify`); this file
//! the mention line, the rendering within the cap, and the request.

mod answer;
pub mod config;
mod message;

pub use answer::classify;
pub use config::is_user_id;
pub use message::message_body;

use std::time::Duration;

use super::{MsgType, Outcome, Target};
use crate::alert::Alert;
use crate::digest::wecom::{Flavor, MAX_CONTENT, WeCom as Dialect, plain};
use crate::digest::{DigestSpec, Rendered};
use crate::mention::{self, Mention};

/// The most the mention line takes of the content; people beyond it are counted, not named, so
/// that the digest keeps at least three quarters of its room whoever the owners are.
pub const MENTION_LINE_BYTES: usize = 1024;

/// The dialect a robot sending `msgtype` writes.
pub fn dialect(msgtype: MsgType) -> Dialect {
    match msgtype {
        MsgType::MarkdownV2 => Dialect::MARKDOWN_V2,
        _ => Dialect::MARKDOWN,
    }
}

/// The line above the footer naming whom the digest is for. In `markdown`, a userid is written
/// `<@userid>`, which WeCom notifies; a mobile number (from `[owners]` or an `owner_mobile`
/// label: the robot's own list refuses them) is written `@13800000000`, which shows but does not
/// notify, since WeCom notifies mobiles only in text messages. In `markdown_v2`, which cannot @
/// anyone, every person is written that way. At most [`MENTION_LINE_BYTES`]: the rest are
/// counted (`… and 3 more`).
pub fn mention_line(mentions: &Mention, flavor: Flavor) -> String {
    let people = mentions.user_ids.len() + mentions.mobiles.len();
    let mut line = String::new();
    let ids = mentions.user_ids.iter().map(|u| (u, true));
    for (i, (who, is_id)) in ids
        .chain(mentions.mobiles.iter().map(|m| (m, false)))
        .enumerate()
    {
        let written = if is_id && flavor == Flavor::Markdown && is_user_id(who) {
            format!("<@{who}>")
        } else {
            format!("@{}", plain(flavor, who))
        };
        // Room for this one and, if any follow, for the count of those.
        let rest = people - i - 1;
        let tail = if rest > 0 {
            " … and 99 more".len()
        } else {
            0
        };
        if line.len() + 1 + written.len() + tail > MENTION_LINE_BYTES {
            line.push_str(&format!(" … and {} more", people - i));
            break;
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(&written);
    }
    line.trim_start().to_string()
}

/// A WeCom digest: the built-in renderer in WeCom's dialect for `msgtype`, within the 4 096
/// content bytes less the mention line, which goes just above the footer. WeCom robots take no
/// keyword and no custom template (the config refuses both), so neither is used here.
pub fn render(
    spec: DigestSpec,
    alerts: &[Alert],
    mentions: &Mention,
    msgtype: MsgType,
) -> Rendered {
    let d = dialect(msgtype);
    let line = mention_line(mentions, d.flavor);
    let spec = DigestSpec {
        // `insert_line` adds the line and a line break on each side of it.
        max_bytes: MAX_CONTENT
            .saturating_sub(spec.max_bytes + if line.is_empty() { 0 } else { line.len() + 2 }),
        keyword: None,
        templates: None,
        ..spec
    };
    let mut rendered = crate::digest::render_in(&d, &spec, alerts);
    if !line.is_empty() {
        rendered.text = mention::insert_line(&rendered.text, &line);
    }
    rendered
}

pub struct WeCom {
    client: reqwest::Client,
    timeout: Duration,
    webhook: String,
    msgtype: MsgType,
}

impl WeCom {
    /// A robot sending with the process's one HTTP `client` ([`super::http_client`]).
    pub fn new(robot: &Target, client: reqwest::Client) -> WeCom {
        WeCom {
            client,
            timeout: robot.request_timeout,
            webhook: robot.webhook.unwrap_or_default().to_string(),
            msgtype: robot.msgtype,
        }
    }

    /// The request body of a digest whose `text` is the whole content (title heading and
    /// mentions written in).
    pub fn body(&self, text: &str) -> serde_json::Value {
        message_body(self.msgtype, text)
    }

    /// Posts a prepared body (WeCom signs nothing: each try is the same request).
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
mod tests;
