//! Front doors: sluice answering on the robot platforms' own webhook paths, as the platforms
//! do, so a sender that posts to a DingTalk, Feishu/Lark or WeCom robot changes only the host
//! of its webhook URL.
//!
//! Every door runs the same flow ([`take`]): read the body (at most the platform's own limit),
//! select the robot by its token (every candidate compared, in constant time, so an unknown
//! token costs the same and tells nothing), check the sender's sign when the robot has a
//! secret, map the message to one alert (its platform file), and hand it to the one ingest
//! service ([`crate::ingest`]). The success answer goes out only once the ingest service says
//! the alert is durable; anything that cannot be stored gets a 503 with `Retry-After` in the
//! platform's shape, so no sender takes a lost message for a delivered one ([`answer`]).
//!
//! Never logged or answered: tokens, keys, signs, secrets, or which tokens exist.

mod answer;
mod dingtalk;
mod feishu;
mod rules;
mod wecom;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::post;
use serde_json::Value;

use crate::alert::{Alert, Extra, Labels, MAX_TEXT_BYTES, MAX_TITLE_BYTES, default_fingerprint};
use crate::config::{Config, ProviderKind, Robot};
use crate::ingest::{Ingest, IngestError, Item};
use crate::limit::Clock;
use crate::supervisor::{Live, LiveCell};

pub use answer::Refusal;

/// What the doors need: the running config, robots and store, and the clock.
#[derive(Clone)]
pub struct Door {
    pub live: LiveCell,
    pub clock: Clock,
    pub tokens: Tokens,
}

/// The token that selects each front-door robot, worked out once per config rather than on
/// every request (parsing each robot's webhook URL per request was 3.5 % of the DingTalk door's
/// samples with one robot, and grows with the robots).
#[derive(Clone, Default)]
pub struct Tokens(Arc<Mutex<Option<Known>>>);

/// A robot's provider, the token that selects it, and its name.
type DoorToken = (ProviderKind, String, String);

/// The tokens of one config, with the config they were made from.
type Known = (Arc<Config>, Arc<[DoorToken]>);

impl Tokens {
    /// The tokens of `config`'s robots (made again when the config has been replaced).
    fn of(&self, config: &Arc<Config>) -> Arc<[DoorToken]> {
        let mut cached = self.0.lock().expect("tokens lock");
        if let Some((seen, tokens)) = &*cached
            && Arc::ptr_eq(seen, config)
        {
            return tokens.clone();
        }
        let tokens: Arc<[DoorToken]> = (config.robots.values())
            .filter_map(|robot| {
                let platform = Platform::of(robot.provider)?;
                let token = match &robot.ingress.token {
                    Some(t) => t.clone(),
                    None => platform.webhook_token(robot.webhook.as_deref()?)?,
                };
                Some((robot.provider, token, robot.name.clone()))
            })
            .collect();
        *cached = Some((config.clone(), tokens.clone()));
        tokens
    }
}

/// The three doors, at the root of sluice's listener (beside `/v1`).
pub fn router<S: Clone + Send + Sync + 'static>(door: Door) -> Router<S> {
    Router::new()
        .route("/robot/send", post(post_dingtalk))
        .route("/open-apis/bot/v2/hook/{token}", post(post_feishu))
        .route("/open-apis/bot/v2/hook/{token}/", post(post_feishu))
        .route("/cgi-bin/webhook/send", post(post_wecom))
        .with_state(door)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    DingTalk,
    Feishu,
    WeCom,
}

impl Platform {
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::DingTalk => "dingtalk",
            Platform::Feishu => "feishu",
            Platform::WeCom => "wecom",
        }
    }

    /// The platform whose door a provider's robots have, if any.
    fn of(provider: ProviderKind) -> Option<Platform> {
        [Platform::DingTalk, Platform::Feishu, Platform::WeCom]
            .into_iter()
            .find(|p| p.provider() == provider)
    }

    fn provider(self) -> ProviderKind {
        match self {
            Platform::DingTalk => ProviderKind::DingTalk,
            Platform::Feishu => ProviderKind::Feishu,
            Platform::WeCom => ProviderKind::WeCom,
        }
    }

    /// The largest body the platform takes (DingTalk 20 000 B; Feishu's error text says 30 KB;
    /// WeCom's images are up to 2 MB before base64).
    pub fn max_body(self) -> usize {
        match self {
            Platform::DingTalk => 20_000,
            Platform::Feishu => 30 * 1024,
            Platform::WeCom => 3 << 20,
        }
    }

    /// The robot's token as this platform's webhook URL carries it.
    fn webhook_token(self, url: &str) -> Option<String> {
        let url = reqwest::Url::parse(url).ok()?;
        let query = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        match self {
            Platform::DingTalk => query("access_token"),
            Platform::WeCom => query("key"),
            Platform::Feishu => url
                .path_segments()?
                .rev()
                .find(|s| !s.is_empty())
                .map(str::to_string),
        }
    }
}

/// One robot message, read: what becomes the alert.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub title: String,
    pub text: String,
    pub msgtype: String,
    /// Mentions and, for a type that cannot merge, the raw body (`platform` is set later).
    pub extra: Extra,
}

/// A request as a door received it.
struct Call {
    platform: Platform,
    token: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Body,
}

/// A door's query string, or why it could not be read.
type QueryString = Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>;

async fn post_dingtalk(
    State(door): State<Door>,
    query: QueryString,
    headers: HeaderMap,
    body: Body,
) -> Response {
    door.receive(Platform::DingTalk, None, query, headers, body)
        .await
}

async fn post_feishu(
    State(door): State<Door>,
    Path(token): Path<String>,
    query: QueryString,
    headers: HeaderMap,
    body: Body,
) -> Response {
    door.receive(Platform::Feishu, Some(token), query, headers, body)
        .await
}

async fn post_wecom(
    State(door): State<Door>,
    query: QueryString,
    headers: HeaderMap,
    body: Body,
) -> Response {
    door.receive(Platform::WeCom, None, query, headers, body)
        .await
}

impl Door {
    /// A request to `platform`'s door: its token from the path (Feishu) or the query
    /// (DingTalk's `access_token`, WeCom's `key`).
    async fn receive(
        &self,
        platform: Platform,
        path_token: Option<String>,
        query: QueryString,
        headers: HeaderMap,
        body: Body,
    ) -> Response {
        let Ok(Query(query)) = query else {
            return answer::refuse(platform, &Refusal::BadQuery);
        };
        let token = path_token.unwrap_or_else(|| {
            let key = match platform {
                Platform::WeCom => "key",
                Platform::DingTalk | Platform::Feishu => "access_token",
            };
            query.get(key).cloned().unwrap_or_default()
        });
        self.answer(Call {
            platform,
            token,
            query,
            headers,
            body,
        })
        .await
    }

    async fn answer(&self, call: Call) -> Response {
        let platform = call.platform;
        match self.take(call).await {
            Ok(()) => answer::success(platform),
            Err(r) => answer::refuse(platform, &r),
        }
    }

    /// The whole flow; `Ok` only once the alert is durable.
    async fn take(&self, call: Call) -> Result<(), Refusal> {
        let Call {
            platform,
            token,
            query,
            headers,
            body,
        } = call;
        let bytes = read_body(&headers, body, platform.max_body()).await?;
        let live = self.live.get();
        let tokens = self.tokens.of(&live.config);
        let robot = select(&live, &tokens, platform, &token).ok_or(Refusal::BadToken)?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| Refusal::Malformed(format!("the body is not JSON: {e}")))?;
        if !value.is_object() {
            return Err(Refusal::Malformed(format!(
                "the body is {}, expected a JSON object",
                crate::alert::kind(&value)
            )));
        }
        let now = self.clock.now_ms();
        let ingress = &robot.ingress;
        let (secret, required) = (robot.secret.as_deref(), ingress.require_sign);
        let message = match platform {
            Platform::DingTalk => {
                dingtalk::check_sign(secret, required, &query, now)?;
                dingtalk::read(&value)?
            }
            Platform::Feishu => {
                feishu::check_sign(secret, required, &value, now)?;
                feishu::read(&value)?
            }
            Platform::WeCom => wecom::read(&value)?,
        };
        let job = job_label(platform, &query, &headers);
        let alert = to_alert(platform, robot, message, job, now);
        let store = live
            .store
            .as_ref()
            .map_err(|why| Refusal::NotStored(why.clone()))?;
        let ingest = Ingest {
            config: &live.config,
            robots: &live.robots,
            store,
            clock: self.clock,
        };
        let item = Item {
            robot: Some(robot.name.clone()),
            alert,
            dedup_key: None,
            path: format!("{} front door", platform.as_str()),
        };
        match ingest.accept(vec![item], None).await {
            Ok(_) => Ok(()),
            Err(e @ IngestError::Full { .. }) => Err(Refusal::NotStored(e.to_string())),
            Err(e) => {
                tracing::warn!(
                    "{} front door: robot {}: not stored: {e}",
                    platform.as_str(),
                    robot.name
                );
                Err(Refusal::NotStored(e.to_string()))
            }
        }
    }
}

async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, Refusal> {
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > max
    {
        return Err(Refusal::TooLarge(max));
    }
    // A body that fails midway (too long, or its deadline passed) is refused the same way:
    // nothing of it was taken, and the sender should not resend it as it is.
    to_bytes(body, max)
        .await
        .map_err(|_| Refusal::TooLarge(max))
}

/// The robot of `platform` whose front-door token is `token`: its `ingress_token` when it has
/// one, else its webhook's own token. Every candidate is compared, without stopping at a
/// match, so the time taken does not depend on which token (if any) matched.
fn select<'a>(
    live: &'a Live,
    tokens: &[DoorToken],
    platform: Platform,
    token: &str,
) -> Option<&'a Robot> {
    let mut found = None;
    for (provider, expected, name) in tokens {
        if *provider != platform.provider() {
            continue;
        }
        let hit = !token.is_empty() && constant_time_eq(expected.as_bytes(), token.as_bytes());
        if hit && found.is_none() {
            found = Some(name);
        }
    }
    live.config.robots.get(found?)
}

/// Equal length and bytes, comparing every byte (lengths are not secret: tokens of one
/// platform all have the same length).
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The sign a sender gave against the one the robot's secret makes; `expected_how` says how it
/// is made, for the refusal (never the secret itself).
pub(crate) fn same_sign(expected: &str, given: &str, expected_how: &str) -> Result<(), Refusal> {
    if constant_time_eq(expected.as_bytes(), given.as_bytes()) {
        Ok(())
    } else {
        Err(Refusal::BadSign(expected_how.to_string()))
    }
}

/// `job`: the URL's `job=` parameter, else the User-Agent's product token, else the platform.
fn job_label(platform: Platform, query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
            .take(64)
            .collect()
    };
    if let Some(job) = query.get("job").map(|j| clean(j)).filter(|j| !j.is_empty()) {
        return job;
    }
    let ua = headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split(['/', ' ']).next())
        .map(clean)
        .unwrap_or_default();
    if ua.is_empty() {
        platform.as_str().to_string()
    } else {
        ua
    }
}

/// The alert a message becomes on `robot`.
fn to_alert(platform: Platform, robot: &Robot, m: Message, job: String, now: i64) -> Alert {
    let title = truncate(m.title.trim(), MAX_TITLE_BYTES);
    let text = truncate(m.text.trim(), MAX_TEXT_BYTES);
    let labels = Labels::from_pairs([("job", job.as_str()), ("msgtype", m.msgtype.as_str())]);
    let (severity, status) = rules::judge(&robot.ingress, &title);
    // The robot's base severity, not the rule's, and the title without its status tokens: a
    // later "[RESOLVED] x" folds with its "[FIRING:1] x".
    let fingerprint = default_fingerprint(
        &rules::without_status(&robot.ingress, &title),
        robot.ingress.severity,
        &labels,
    );
    let mut extra = m.extra;
    extra.platform = platform.as_str().to_string();
    Alert {
        title,
        text: (!text.is_empty()).then_some(text),
        severity,
        status,
        labels,
        fingerprint,
        source: Some(format!("{}:{}", platform.as_str(), robot.name)),
        time_ms: None,
        ends_ms: None,
        received_ms: now,
        extra: (!extra.is_empty()).then(|| Box::new(extra)),
    }
}

const TRUNCATED: &str = " …(truncated by sluice)";

/// `s` cut to at most `max` bytes at a character boundary, with a marker when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max - TRUNCATED.len();
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{TRUNCATED}", &s[..end])
}

/// The first non-empty line as the title (without a markdown heading's `#`s or a bold line's
/// `**`, so rules see `[FIRING:1] …`), the rest as the text.
pub fn split_title(s: &str) -> (String, String) {
    let s = s.trim_start();
    let (first, rest) = s.split_once('\n').unwrap_or((s, ""));
    let mut title = first.trim().trim_start_matches('#').trim();
    if let Some(inner) = title
        .strip_prefix("**")
        .and_then(|t| t.strip_suffix("**"))
        .filter(|t| !t.is_empty())
    {
        title = inner.trim();
    }
    (title.to_string(), rest.trim().to_string())
}

/// `text` without the `@mobile` / `@userid` tokens that only echo its mentions (DingtalkChatbot
/// appends `\n@138…`), and without the lines they leave empty.
pub fn strip_echoes(text: &str, extra: &Extra) -> String {
    let echoes: Vec<String> = extra
        .mobiles
        .iter()
        .chain(&extra.user_ids)
        .map(|p| format!("@{p}"))
        .chain(extra.all.then(|| "@all".to_string()))
        .collect();
    if echoes.is_empty() {
        return text.to_string();
    }
    let mut out = Vec::new();
    for line in text.lines() {
        let kept: Vec<&str> = line
            .split(' ')
            .filter(|w| !echoes.iter().any(|e| e == w.trim()))
            .collect();
        let kept = kept.join(" ");
        if kept.trim().is_empty() && !line.trim().is_empty() {
            continue;
        }
        out.push(kept.trim_end().to_string());
    }
    out.join("\n").trim_end().to_string()
}

/// A string at `v[key]`, or a refusal naming `path`.
fn string_at<'a>(v: &'a Value, key: &str, path: &str) -> Result<&'a str, Refusal> {
    match v.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(Refusal::Malformed(format!(
            "{path}: expected a string, found {}",
            crate::alert::kind(other)
        ))),
        None => Err(Refusal::Malformed(format!("{path}: missing"))),
    }
}

/// An optional string at `v[key]` (empty when absent).
fn opt_string(v: &Value, key: &str) -> String {
    v.get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// The object at `v[key]`, or a refusal naming it.
fn object_at<'a>(v: &'a Value, key: &str) -> Result<&'a Value, Refusal> {
    match v.get(key) {
        Some(o @ Value::Object(_)) => Ok(o),
        Some(other) => Err(Refusal::Malformed(format!(
            "{key}: expected an object, found {}",
            crate::alert::kind(other)
        ))),
        None => Err(Refusal::Malformed(format!("{key}: missing"))),
    }
}

/// Strings of a list at `v[key]` (others ignored).
fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// A markdown link, or the bare title/url when one is missing.
fn link(title: &str, url: &str) -> String {
    match (title.trim(), url.trim()) {
        ("", "") => String::new(),
        (t, "") => t.to_string(),
        ("", u) => format!("[open]({u})"),
        (t, u) => format!("[{t}]({u})"),
    }
}

#[cfg(test)]
mod tests;
