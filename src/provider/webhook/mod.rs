//! Generic webhook robots (`provider = "webhook"`): the digest POSTed as JSON to any URL
//! (Mattermost, Teams, Discord, an in-house receiver), the body written by a minijinja template
//! (`payload.rs`), with the headers, limits and size cap the robot's table gives, and an answer
//! classified on the HTTP status alone (`answer.rs`).
//!
//! The text is the built-in digest in DingTalk's markdown dialect (CommonMark's common ground:
//! headings, bold, lists, quotes, links), measured as the JSON-escaped bytes it costs in the
//! body; the budget is the robot's `max_bytes` less what the body costs around the text, and a
//! template that writes the text twice is caught by measuring the body itself.

mod answer;
pub mod payload;

pub use answer::classify;
pub use payload::{BUILTIN, Payload};

use std::time::Duration;

use super::{Outcome, Target};
use crate::alert::Alert;
use crate::digest::{DigestSpec, MIN_BUDGET, Rendered, parse_footer};
use crate::mention::{self, Mention};

/// The request body a receiver takes when the table does not say (`max_bytes`).
pub const DEFAULT_MAX_BYTES: usize = 20_000;
/// The smallest `max_bytes`: a digest needs room for its title, a few lines and the footer.
pub const MIN_MAX_BYTES: usize = 2_048;
/// The largest `max_bytes`.
pub const MAX_MAX_BYTES: usize = 16 << 20;

/// What a webhook robot's table adds to the common keys.
#[derive(Debug)]
pub struct Spec {
    /// Sent with every request (`Authorization`, …); values are credentials, never printed.
    pub headers: Vec<(reqwest::header::HeaderName, reqwest::header::HeaderValue)>,
    pub payload: Payload,
    /// The largest request body, in bytes.
    pub max_bytes: usize,
}

impl Spec {
    /// Whether `other` would send the same requests.
    pub fn same_as(&self, other: &Spec) -> bool {
        self.headers == other.headers
            && self.payload.source() == other.payload.source()
            && self.max_bytes == other.max_bytes
    }
}

/// Checks a header given under `key` and makes it sendable.
pub fn header(
    key: &str,
    name: &str,
    value: &str,
) -> Result<(reqwest::header::HeaderName, reqwest::header::HeaderValue), String> {
    let n = reqwest::header::HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{key}: {name:?} is not an HTTP header name"))?;
    if n == reqwest::header::CONTENT_LENGTH || n == reqwest::header::HOST {
        return Err(format!("{key}: {name} is set by sluice"));
    }
    let mut v = reqwest::header::HeaderValue::from_str(value).map_err(|_| {
        format!("{key}.{name}: not a valid header value (one line of visible text)")
    })?;
    v.set_sensitive(true);
    Ok((n, v))
}

/// The robot table `robot` for a webhook robot: an http(s) URL; no secret, no keywords.
pub fn check(robot: &str, e: &super::Endpoint) -> Result<(), String> {
    let Some(w) = e.webhook else {
        return Err(format!(
            "{robot}.webhook: required for provider \"webhook\"; expected the receiver's URL, e.g. \"https://chat.example.com/hooks/${{HOOK_ID}}\""
        ));
    };
    if !(w.starts_with("https://") || w.starts_with("http://")) {
        return Err(format!(
            "{robot}.webhook: {:?} is not an http(s) URL",
            super::redact_url(w)
        ));
    }
    if e.secret.is_some() {
        return Err(format!(
            "{robot}.secret: a webhook robot signs nothing; give a credential as a header instead (headers = {{ Authorization = \"Bearer ${{TOKEN}}\" }})"
        ));
    }
    if !e.keywords.is_empty() {
        return Err(format!(
            "{robot}.keywords: only DingTalk and Feishu robots have keyword security; remove the keywords"
        ));
    }
    Ok(())
}

/// A webhook digest: the built-in renderer within what `hook.max_bytes` leaves once the body
/// around the text is counted, with the mention line (`@alice @13800000000`, plain text: the
/// receiver decides what it means; a template also gets `mentions`) above the footer.
pub fn render(spec: DigestSpec, alerts: &[Alert], mentions: &Mention, hook: &Spec) -> Rendered {
    let line = mentions.line();
    let reserve = spec.max_bytes;
    let around = body_text(hook, spec.robot, spec.id, spec.link, "", "", mentions).len();
    let mut budget = hook
        .max_bytes
        .saturating_sub(around + mention::line_cost(&line) + reserve)
        .max(MIN_BUDGET);
    // A template that writes the text more than once costs more than the text: measure the
    // body and render again within what it allows, a few times at most.
    for _ in 0..4 {
        let mut rendered = crate::digest::render(
            &DigestSpec {
                max_bytes: budget,
                ..spec
            },
            alerts,
        );
        if !line.is_empty() {
            rendered.text = mention::insert_line(&rendered.text, &line);
        }
        let size = body_text(
            hook,
            spec.robot,
            spec.id,
            spec.link,
            &rendered.title,
            &rendered.text,
            mentions,
        )
        .len();
        if size + reserve <= hook.max_bytes || budget == MIN_BUDGET {
            return rendered;
        }
        budget = budget
            .saturating_sub(size + reserve - hook.max_bytes + 64)
            .max(MIN_BUDGET);
    }
    let mut rendered = crate::digest::render(
        &DigestSpec {
            max_bytes: MIN_BUDGET,
            ..spec
        },
        alerts,
    );
    if !line.is_empty() {
        rendered.text = mention::insert_line(&rendered.text, &line);
    }
    rendered
}

/// The body as text; the built-in one if the template fails at run time.
fn body_text(
    hook: &Spec,
    robot: &str,
    id: u64,
    link: Option<&str>,
    title: &str,
    text: &str,
    mentions: &Mention,
) -> String {
    let ctx = payload::Context {
        robot,
        id,
        alerts: parse_footer(text).map_or(0, |(_, n)| n),
        title,
        text,
        link,
        mentions: payload::Mentions {
            user_ids: &mentions.user_ids,
            mobiles: &mentions.mobiles,
            all: mentions.all,
        },
    };
    match hook.payload.render(&ctx) {
        Ok(body) if serde_json::from_str::<serde::de::IgnoredAny>(&body).is_ok() => body,
        outcome => {
            tracing::warn!(robot, digest = id, error = ?outcome.err(),
                "the body template failed or wrote no JSON; sending the built-in body");
            let builtin =
                Payload::compile("built-in body", BUILTIN).expect("the built-in compiles");
            builtin.render(&ctx).expect("the built-in renders")
        }
    }
}

pub struct Webhook {
    client: reqwest::Client,
    timeout: Duration,
    url: String,
    robot: String,
    public_url: Option<String>,
    hook: std::sync::Arc<Spec>,
}

impl Webhook {
    pub fn new(
        robot: &Target,
        hook: std::sync::Arc<Spec>,
        public_url: Option<&str>,
        client: reqwest::Client,
    ) -> Webhook {
        Webhook {
            client,
            timeout: robot.request_timeout,
            url: robot.webhook.unwrap_or_default().to_string(),
            robot: robot.name.to_string(),
            public_url: public_url.map(str::to_string),
            hook,
        }
    }

    /// The body for digest `id`, as the template writes it.
    pub fn body(&self, id: u64, title: &str, text: &str, mentions: &Mention) -> serde_json::Value {
        let link = self
            .public_url
            .as_ref()
            .map(|u| format!("{u}/v1/digests/{id}"));
        let body = body_text(
            &self.hook,
            &self.robot,
            id,
            link.as_deref(),
            title,
            text,
            mentions,
        );
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null)
    }

    /// Posts a prepared body with the robot's headers.
    pub async fn send(&self, body: &serde_json::Value) -> Outcome {
        let mut request = self.client.post(&self.url).timeout(self.timeout).json(body);
        for (name, value) in &self.hook.headers {
            request = request.header(name, value);
        }
        super::send_classified(request, classify).await
    }
}
