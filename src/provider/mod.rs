//! Robot providers: how a sealed digest becomes a request, and what the answer means.
//!
//! Each provider exposes a pure `classify` over the HTTP status and body, table-tested against
//! every code in ROBOTS.md, and keeps the effects (signing with the current time, the POST) in
//! `send`. The robot loop acts only on the [`Outcome`] class.

pub mod console;
pub mod dingtalk;
pub mod feishu;
pub mod slack;
pub mod webhook;
pub mod wecom;

use std::fmt;
use std::time::Duration;

use crate::alert::Alert;
use crate::digest::{DigestSpec, Rendered};
use crate::mention::{Mention, Mentions};
use crate::message::Prepared;

/// The platforms a robot can be on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    DingTalk,
    Feishu,
    WeCom,
    Slack,
    Webhook,
    Console,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 6] = [
        ProviderKind::DingTalk,
        ProviderKind::Feishu,
        ProviderKind::WeCom,
        ProviderKind::Slack,
        ProviderKind::Webhook,
        ProviderKind::Console,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::DingTalk => "dingtalk",
            ProviderKind::Feishu => "feishu",
            ProviderKind::WeCom => "wecom",
            ProviderKind::Slack => "slack",
            ProviderKind::Webhook => "webhook",
            ProviderKind::Console => "console",
        }
    }

    /// What to look at when a robot of this kind refuses every message.
    pub fn what_to_check(self) -> &'static str {
        match self {
            ProviderKind::DingTalk | ProviderKind::Console => {
                "check its access_token, secret, keywords and IP allow-list"
            }
            ProviderKind::WeCom => {
                "check the key in its webhook URL (a robot removed from its group loses its key)"
            }
            ProviderKind::Slack => {
                "check its webhook URL (a removed app or an archived channel revokes it)"
            }
            ProviderKind::Webhook => "check its webhook URL and the credential in its headers",
            ProviderKind::Feishu => {
                "check its webhook's hook id, secret, keywords and IP allow-list"
            }
        }
    }

    /// The kind a config names (`provider = "dingtalk"`).
    pub fn parse(name: &str) -> Option<ProviderKind> {
        ProviderKind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// The names a config may use, for messages: `"dingtalk" or "console"`.
    pub fn expected() -> String {
        let names: Vec<String> = ProviderKind::ALL
            .iter()
            .map(|k| format!("{:?}", k.as_str()))
            .collect();
        match names.split_last() {
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
            None => String::new(),
        }
    }
}

/// The kind of message a robot's digests go out as (`msgtype`); each platform takes some.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    /// DingTalk's and WeCom's markdown.
    Markdown,
    /// DingTalk: a markdown card with one button to the digest's page on `server.public_url`.
    ActionCard,
    /// WeCom's `markdown_v2`: lists and tables, no colour, no @.
    MarkdownV2,
    /// Feishu: rich text, one paragraph per line, with `a` and `at` elements.
    Post,
    /// Feishu: a card with one `lark_md` element and, with `server.public_url`, a button to the
    /// digest's page.
    Interactive,
}

impl ProviderKind {
    /// Whether its robots may have custom templates: the template filters escape for DingTalk's
    /// markdown (the console prints DingTalk's text), so another platform's robot refuses them
    /// rather than send text escaped for the wrong dialect.
    pub fn takes_templates(self) -> bool {
        matches!(self, ProviderKind::DingTalk | ProviderKind::Console)
    }

    /// What a robot of this kind sends without a `msgtype`.
    pub fn default_msgtype(self) -> MsgType {
        match self {
            ProviderKind::DingTalk
            | ProviderKind::WeCom
            | ProviderKind::Slack
            | ProviderKind::Webhook
            | ProviderKind::Console => MsgType::Markdown,
            ProviderKind::Feishu => MsgType::Post,
        }
    }

    /// `msgtype = value` under `key` for a robot of this kind.
    pub fn msgtype(self, key: &str, value: &str, has_public_url: bool) -> Result<MsgType, String> {
        match self {
            ProviderKind::DingTalk | ProviderKind::Console => {
                dingtalk::config::msgtype(key, value, has_public_url)
            }
            ProviderKind::Feishu => feishu::config::msgtype(key, value),
            ProviderKind::WeCom => wecom::config::msgtype(key, value),
            ProviderKind::Webhook => Err(format!(
                "{key}: a webhook robot's body is its body_template; msgtype does not apply"
            )),
            ProviderKind::Slack => match value {
                "mrkdwn" => Ok(MsgType::Markdown),
                other => Err(format!(
                    "{key}: unknown msgtype {other:?} for a Slack robot; expected \"mrkdwn\""
                )),
            },
        }
    }
}

/// What a platform allows, as the defaults of its robots' timing (a config may set each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defaults {
    /// Requests per period.
    pub rate: (u32, Duration),
    /// A second, shorter window held at the same time, if the platform has one.
    pub burst: Option<(u32, Duration)>,
    /// How long a throttle answer that does not say how long lasts.
    pub throttle_backoff: Duration,
}

impl ProviderKind {
    /// The platform's limits (ROBOTS.md §8).
    pub fn defaults(self) -> Defaults {
        match self {
            // 20 a minute; exceeding it mutes the robot for 10 minutes.
            ProviderKind::DingTalk | ProviderKind::Console => Defaults {
                rate: (20, Duration::from_secs(60)),
                burst: None,
                throttle_backoff: Duration::from_secs(600),
            },
            // 100 a minute and 5 a second. Feishu documents no mute after a breach (its throttle
            // answer, 11232, says nothing of how long): a minute, the longer window, is waited.
            ProviderKind::Feishu => Defaults {
                rate: (100, Duration::from_secs(60)),
                burst: Some((5, Duration::from_secs(1))),
                throttle_backoff: Duration::from_secs(60),
            },
            // 20 a minute; no mute is documented, so a throttle waits out one period. That
            // 45009 is the webhook's throttle answer is UNCONFIRMED (`wecom::classify`).
            ProviderKind::WeCom => Defaults {
                rate: (20, Duration::from_secs(60)),
                burst: None,
                throttle_backoff: Duration::from_secs(60),
            },
            // A receiver we know nothing of: Discord's 30 a minute per webhook is the tightest
            // of the common ones; a table sets its own.
            ProviderKind::Webhook => Defaults {
                rate: (30, Duration::from_secs(60)),
                burst: None,
                throttle_backoff: Duration::from_secs(60),
            },
            // About one a second per webhook; a 429 says how long with `Retry-After`.
            ProviderKind::Slack => Defaults {
                rate: (1, Duration::from_secs(1)),
                burst: None,
                throttle_backoff: Duration::from_secs(30),
            },
        }
    }
}

/// A robot's endpoint as its config table gives it, for its provider to check.
pub struct Endpoint<'a> {
    pub webhook: Option<&'a str>,
    pub secret: Option<&'a str>,
    pub keywords: &'a [String],
}

/// Checks the endpoint of the robot table `robot` (`robots.ops`) for a provider of `kind`.
pub fn check(kind: ProviderKind, robot: &str, e: &Endpoint) -> Result<(), String> {
    match kind {
        ProviderKind::DingTalk => dingtalk::config::check(robot, e),
        ProviderKind::Feishu => feishu::config::check(robot, e),
        ProviderKind::WeCom => wecom::config::check(robot, e),
        ProviderKind::Slack => slack::config::check(robot, e),
        ProviderKind::Webhook => webhook::check(robot, e),
        ProviderKind::Console => console::check(robot, e),
    }
}

/// Checks whom the robot table `robot` asks to mention, for a provider of `kind` sending
/// `msgtype`: a platform refuses what it cannot deliver rather than send it as mere text
/// (Feishu custom bots and Slack take no mobile numbers; WeCom's markdown neither).
pub fn check_mentions(
    kind: ProviderKind,
    robot: &str,
    msgtype: MsgType,
    m: &Mentions,
) -> Result<(), String> {
    match kind {
        ProviderKind::DingTalk | ProviderKind::Webhook | ProviderKind::Console => Ok(()),
        ProviderKind::Feishu => feishu::config::check_mentions(robot, m),
        ProviderKind::WeCom => wecom::config::check_mentions(robot, msgtype, m),
        ProviderKind::Slack if !m.mobiles.is_empty() => Err(format!(
            "{robot}.mention_mobiles: Slack mentions people by member id, not by mobile; use mention_user_ids = [\"U0123ABCD\"]"
        )),
        ProviderKind::Slack => Ok(()),
    }
}

/// Renders the digest of `alerts` for a robot like `target`: in its platform's dialect, within
/// its platform's budget (`spec.max_bytes` is set here), with the people of `mentions` written
/// in as that platform notifies them. Every platform ends the text with the same footer.
pub fn render(target: &Target, spec: DigestSpec, alerts: &[Alert], mentions: &Mention) -> Rendered {
    match target.kind {
        ProviderKind::DingTalk | ProviderKind::Console => dingtalk::render(spec, alerts, mentions),
        ProviderKind::Feishu => feishu::render(spec, alerts, mentions, target.msgtype),
        ProviderKind::WeCom => wecom::render(spec, alerts, mentions, target.msgtype),
        ProviderKind::Slack => slack::render(spec, alerts, mentions),
        ProviderKind::Webhook => match target.hook {
            Some(hook) => webhook::render(spec, alerts, mentions, hook),
            // A target without its table's webhook keys: the built-in body's budget.
            None => dingtalk::render(spec, alerts, mentions),
        },
    }
}

/// [`render`], with `lines` (a quota warning, a stand-in note) written above the footer like the
/// mention line; the budget keeps room for them: their JSON-escaped bytes, and each line break
/// (theirs and the two `insert_line` adds) at the dearest any dialect counts one (a Feishu
/// post's new paragraph), so no dialect's measure of them is more than what is kept.
pub fn render_with_lines(
    target: &Target,
    spec: DigestSpec,
    alerts: &[Alert],
    mentions: &Mention,
    lines: &[String],
) -> Rendered {
    if lines.is_empty() {
        return render(target, spec, alerts, mentions);
    }
    let block = lines.join("\n\n");
    let breaks = block.matches('\n').count() + 2;
    let reserve =
        crate::digest::json_escaped_len(&block) + crate::digest::feishu::PARAGRAPH * breaks;
    let mut rendered = render(
        target,
        DigestSpec {
            max_bytes: reserve,
            ..spec
        },
        alerts,
        mentions,
    );
    rendered.text = crate::mention::insert_line(&rendered.text, &block);
    rendered
}

/// What a provider needs of a configured robot (`config::Robot::target`).
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub name: &'a str,
    pub kind: ProviderKind,
    /// Full webhook URL including its access token; print it only through [`redact_url`].
    pub webhook: Option<&'a str>,
    pub secret: Option<&'a str>,
    pub keywords: &'a [String],
    pub msgtype: MsgType,
    /// Bounds each whole request.
    pub request_timeout: Duration,
    /// A webhook robot's headers, body template and size cap.
    pub hook: Option<&'a std::sync::Arc<webhook::Spec>>,
}

/// A webhook URL fit to print: the query values (access tokens, signatures) become `***`, and
/// so does every path segment that looks like a credential (Slack's `/services/T…/B…/<secret>`,
/// Feishu's `/hook/<uuid>`, Discord's `/webhooks/<id>/<token>`): one of at least 20 characters,
/// or of at least 8 with a digit. Paths such as `/robot/send` or `/open-apis/bot/v2/hook` stay.
pub fn redact_url(url: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = redact_path(&feishu::config::redact_hook(base));
    let Some(query) = query else {
        return base;
    };
    let redacted: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((k, _)) => format!("{k}=***"),
            None => pair.to_string(),
        })
        .collect();
    format!("{base}?{}", redacted.join("&"))
}

/// `scheme://host/a/b` with its credential-like segments as `***` (see [`redact_url`]).
fn redact_path(base: &str) -> String {
    let path_at = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|host| base[host..].find('/').map(|p| host + p));
    let Some(at) = path_at else {
        return base.to_string();
    };
    let secret = |seg: &str| {
        let n = seg.chars().count();
        n >= 20 || (n >= 8 && seg.bytes().any(|b| b.is_ascii_digit()))
    };
    let path: Vec<&str> = base[at..]
        .split('/')
        .map(|seg| if secret(seg) { "***" } else { seg })
        .collect();
    format!("{}{}", &base[..at], path.join("/"))
}

/// What an answer means for the digest and the robot (DESIGN.md, "Answer classes").
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered.
    Ok,
    /// The robot is rate-limited: keep the digest, wait out the penalty, retry. The robot may
    /// say how long (HTTP `Retry-After`); otherwise the robot's `throttle_backoff` applies.
    Throttled(String, Option<Duration>),
    /// Network trouble or a busy server: keep the digest, retry with backoff.
    Transient(String),
    /// The robot itself is unusable (token, signature, keyword, IP, group gone): keep everything,
    /// mark the robot blocked, probe rarely.
    Robot(String),
    /// This message can never be accepted: dead-letter it and go on with the next.
    Message(String),
    /// The platform says the robot's own send quota is spent (DingTalk 90030, unconfirmed):
    /// keep the digest; the robot's task treats it as its own quota spent (fallback, or wait).
    Quota(String),
}

impl Outcome {
    pub fn class(&self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Throttled(..) => "throttled",
            Outcome::Transient(_) => "transient",
            Outcome::Robot(_) => "robot",
            Outcome::Message(_) => "message",
            Outcome::Quota(_) => "quota",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Ok => None,
            Outcome::Throttled(r, _)
            | Outcome::Transient(r)
            | Outcome::Robot(r)
            | Outcome::Message(r)
            | Outcome::Quota(r) => Some(r),
        }
    }
}

/// The longest `Retry-After` sluice honours; a longer one is taken as this (a robot that says
/// "a day" is better probed again within the hour).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// An HTTP date (`Tue, 14 Nov 2023 22:13:20 GMT`, as in `Date` and `Retry-After`) in Unix ms.
pub fn http_date_ms(text: &str) -> Option<i64> {
    static PARSER: jiff::fmt::rfc2822::DateTimeParser = jiff::fmt::rfc2822::DateTimeParser::new();
    Some(PARSER.parse_timestamp(text.trim()).ok()?.as_millisecond())
}

/// An HTTP `Retry-After` value (RFC 9110 §10.2.3: delay seconds, or an HTTP date) as a wait from
/// `now_ms`, at most [`MAX_RETRY_AFTER`]; `None` when absent or unreadable.
pub fn retry_after(value: Option<&str>, now_ms: i64) -> Option<Duration> {
    let value = value?.trim();
    let wait = match value.parse::<u64>() {
        Ok(secs) => Duration::from_secs(secs),
        Err(_) => Duration::from_millis((http_date_ms(value)? - now_ms).max(0) as u64),
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// The first reading of an answer in the `{"errcode": N, "errmsg": "…"}` form DingTalk and WeCom
/// share: by HTTP status (429 throttled, 408 and 5xx transient, 401/403/404/410 the webhook
/// refused, other non-2xx message-level), then a 2xx body's `errcode` and `errmsg` for the
/// platform's own table; a body without them is transient.
pub(crate) fn errcode_answer(status: u16, body: &str) -> Result<(i64, String), Outcome> {
    match status {
        200..=299 => {}
        // Not documented for WeCom's webhook; a gateway in front of either may say so.
        429 => return Err(Outcome::Throttled(format!("HTTP {status}"), None)),
        408 | 500..=599 => return Err(Outcome::Transient(format!("HTTP {status}"))),
        401 | 403 | 404 | 410 => {
            return Err(Outcome::Robot(format!(
                "HTTP {status}: the webhook URL is refused"
            )));
        }
        _ => return Err(Outcome::Message(format!("HTTP {status}: {}", hint(body)))),
    }
    #[derive(serde::Deserialize)]
    struct Answer {
        errcode: Option<i64>,
        errmsg: Option<String>,
    }
    let Ok(Answer { errcode, errmsg }) = serde_json::from_str::<Answer>(body) else {
        return Err(Outcome::Transient(format!(
            "unreadable answer: {}",
            hint(body)
        )));
    };
    let Some(code) = errcode else {
        return Err(Outcome::Transient(format!(
            "answer without errcode: {}",
            hint(body)
        )));
    };
    Ok((code, errmsg.unwrap_or_default()))
}

/// The first 200 bytes of a robot's text (an answer, its `errmsg`), on one line, for reasons.
pub(crate) fn hint(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let cut = crate::digest::cut_utf8(one_line.trim(), 200);
    if cut.len() < one_line.trim().len() {
        format!("{cut}…")
    } else {
        cut.to_string()
    }
}

/// Past this, a robot's clock and the host's differ by more than request latency and the `Date`
/// header's whole seconds explain.
pub const CLOCK_SKEW_NOTED: Duration = Duration::from_secs(60);

/// "the host clock is 2h 0m behind the robot's (its Date header: …)", or `None` when `date` is
/// not an HTTP date or is within [`CLOCK_SKEW_NOTED`] of `host_ms`. `platform` refuses a
/// signature more than an hour off its clock (DingTalk and Feishu both do), which is said too.
pub fn clock_skew(date: &str, host_ms: i64, platform: &str) -> Option<String> {
    let robot_ms = http_date_ms(date)?;
    let off_ms = robot_ms - host_ms;
    if off_ms.unsigned_abs() <= CLOCK_SKEW_NOTED.as_millis() as u64 {
        return None;
    }
    // A Date header has whole seconds, and the answer took a moment to come: round, so that two
    // hours off reads "2h 0m", not "1h 59m".
    let secs = (off_ms.unsigned_abs() + 500) / 1000;
    let by = if secs >= 3600 {
        let minutes = (secs + 30) / 60;
        format!("{}h {}m", minutes / 60, minutes % 60)
    } else {
        format!("{}m {}s", secs / 60, secs % 60)
    };
    let side = if off_ms > 0 { "behind" } else { "ahead of" };
    Some(format!(
        "the host clock is {by} {side} the robot's (its Date header: {}); {platform} refuses signatures more than an hour off its clock, so set the host's time right (NTP)",
        date.trim()
    ))
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
    Feishu(feishu::Feishu),
    WeCom(wecom::WeCom),
    Slack(slack::SlackWebhook),
    Webhook(webhook::Webhook),
    Console(console::Console),
}

/// How long connecting to a robot may take, whatever its `request_timeout` (which bounds the
/// whole request, per robot).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The one HTTP client every robot sends with: one connection pool and one TLS configuration
/// (each of 10 000 robots building its own took 39 s to start and 1.2–1.5 GB). Building it
/// reads the system's CA roots, which can fail (`SSL_CERT_FILE` pointing nowhere, an empty
/// store): the caller reports that and tries again later, it never panics.
pub fn http_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .user_agent(concat!("sluice/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| {
            format!(
                "cannot build the HTTP client for the robots: {}",
                crate::error_chain(&e)
            )
        })
}

/// What a robot answered: the status, the two headers sluice reads, and the whole body.
pub(crate) struct Answer {
    pub status: u16,
    /// `Date`: the robot's clock, for a refused signature.
    pub date: Option<String>,
    /// `Retry-After`, for a throttle answer ([`retry_after`]).
    pub retry_after: Option<String>,
    /// `x-ogw-ratelimit-reset`: Feishu's Open API says when its limit resets in its own header.
    pub ratelimit_reset: Option<String>,
    pub body: String,
}

/// Sends `request` and reads the whole answer; a transport error (connecting, timing out,
/// reading the body) is described without the URL, which carries the robot's credential.
pub(crate) async fn exchange(request: reqwest::RequestBuilder) -> Result<Answer, String> {
    let resp = request.send().await.map_err(describe_transport_error)?;
    let header = |name| {
        resp.headers()
            .get(name)
            .and_then(|v: &reqwest::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let (date, retry_after) = (
        header(reqwest::header::DATE),
        header(reqwest::header::RETRY_AFTER),
    );
    let ratelimit_reset = resp
        .headers()
        .get("x-ogw-ratelimit-reset")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = resp.status().as_u16();
    let body = resp.text().await.map_err(describe_transport_error)?;
    Ok(Answer {
        status,
        date,
        retry_after,
        ratelimit_reset,
        body,
    })
}

/// Sends `request` and classifies the answer with the platform's `classify`; a throttle gets
/// the wait its `Retry-After` says. For platforms whose answers need nothing else.
pub(crate) async fn send_classified(
    request: reqwest::RequestBuilder,
    classify: fn(u16, &str) -> Outcome,
) -> Outcome {
    match exchange(request).await {
        Err(why) => Outcome::Transient(why),
        Ok(a) => match classify(a.status, &a.body) {
            Outcome::Throttled(why, _) => {
                Outcome::Throttled(why, retry_after(a.retry_after.as_deref(), crate::unix_ms()))
            }
            other => other,
        },
    }
}

/// The error and its causes on one line, without the URL (it carries the access token or key).
pub(crate) fn describe_transport_error(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    format!("{kind}: {}", crate::error_chain(&e.without_url()))
}

impl Provider {
    /// The provider for `robot`. Robots that post over HTTP need `client`; without one this
    /// says why they cannot be started.
    pub fn new(
        robot: &Target,
        public_url: Option<&str>,
        client: Result<&reqwest::Client, &str>,
    ) -> Result<Provider, String> {
        match robot.kind {
            ProviderKind::DingTalk => Ok(Provider::DingTalk(dingtalk::DingTalk::new(
                robot,
                public_url,
                client.map_err(str::to_string)?.clone(),
            ))),
            ProviderKind::Feishu => Ok(Provider::Feishu(feishu::Feishu::new(
                robot,
                public_url,
                client.map_err(str::to_string)?.clone(),
            ))),
            ProviderKind::WeCom => Ok(Provider::WeCom(wecom::WeCom::new(
                robot,
                client.map_err(str::to_string)?.clone(),
            ))),
            ProviderKind::Slack => Ok(Provider::Slack(slack::SlackWebhook::new(
                robot,
                client.map_err(str::to_string)?.clone(),
            ))),
            ProviderKind::Webhook => {
                let hook = robot
                    .hook
                    .ok_or("a webhook robot without its table's webhook keys")?;
                Ok(Provider::Webhook(webhook::Webhook::new(
                    robot,
                    hook.clone(),
                    public_url,
                    client.map_err(str::to_string)?.clone(),
                )))
            }
            ProviderKind::Console => Ok(Provider::Console(console::Console::new(robot.name))),
        }
    }

    /// Whether robots of this kind post over HTTP (and so need [`http_client`]).
    pub fn uses_http(kind: ProviderKind) -> bool {
        match kind {
            ProviderKind::DingTalk
            | ProviderKind::Feishu
            | ProviderKind::WeCom
            | ProviderKind::Slack
            | ProviderKind::Webhook => true,
            ProviderKind::Console => false,
        }
    }

    /// Sends one test message (`sluice check --ping`). It does not go through a daemon's rate
    /// guard, so it counts against the robot's limit without the daemon knowing; a running
    /// daemon sends one through its guard instead (`POST /v1/robots/{name}/test`).
    pub async fn ping(&self, robot: &Target<'_>) -> Outcome {
        let (title, text) = self.ping_text(robot);
        let message = self.prepare(0, title, text, &Mention::default());
        self.send(0, &message).await
    }

    /// The test message's title and text, in the robot's dialect.
    pub fn ping_text(&self, robot: &Target<'_>) -> (String, String) {
        self.notice_text(robot, "sluice test message", "; digests will arrive here.")
    }

    /// The probe a robot whose queue went to its fallback gets now and then: when it is
    /// accepted, the robot's digests come back to it.
    pub fn probe_text(&self, robot: &Target<'_>) -> (String, String) {
        self.notice_text(
            robot,
            "sluice probe",
            " again; its digests come here again.",
        )
    }

    /// A short notice from sluice itself, in the robot's dialect: `title`, then "sluice can
    /// reach robot NAME" and `rest`. It carries the robot's first keyword, which a
    /// keyword-protected robot needs.
    fn notice_text(&self, robot: &Target<'_>, title: &str, rest: &str) -> (String, String) {
        let keyword = robot
            .keywords
            .first()
            .map_or(String::new(), |k| format!("{k} "));
        match self {
            // WeCom sends the content alone, so the title is its heading; no keyword exists.
            Provider::WeCom(_) => {
                let text = format!(
                    "### {title}\n\nsluice can reach robot **{}**{rest}",
                    robot.name
                );
                (title.to_string(), text)
            }
            Provider::Feishu(f) => {
                let title = format!("{keyword}{title}");
                let text = f.notice_text(&title, robot.name, rest);
                (title, text)
            }
            Provider::Slack(_) => {
                let text = format!("*{title}*\n\nsluice can reach robot *{}*{rest}", robot.name);
                (title.to_string(), text)
            }
            Provider::DingTalk(_) | Provider::Webhook(_) | Provider::Console(_) => {
                let title = format!("{keyword}{title}");
                let text = format!(
                    "### {title}\n\nsluice can reach robot **{}**{rest}",
                    robot.name
                );
                (title, text)
            }
        }
    }

    /// The message for digest `id` with this `title` and `text` (in this provider's dialect,
    /// mentions already written into it), mentioning `mentions`: what every try sends.
    pub fn prepare(&self, id: u64, title: String, text: String, mentions: &Mention) -> Prepared {
        let body = match self {
            Provider::DingTalk(d) => d.body(id, &title, &text, mentions),
            Provider::Feishu(f) => f.body(id, &title, &text, mentions),
            Provider::WeCom(w) => w.body(&text),
            Provider::Slack(_) => slack::body(&text),
            Provider::Webhook(w) => w.body(id, &title, &text, mentions),
            Provider::Console(_) => serde_json::Value::Null,
        };
        Prepared { title, text, body }
    }

    /// Sends digest `id`'s prepared message once; what the answer means.
    pub async fn send(&self, id: u64, message: &Prepared) -> Outcome {
        match self {
            Provider::DingTalk(d) => d.send(&message.body).await,
            Provider::Feishu(f) => f.send(&message.body).await,
            Provider::WeCom(w) => w.send(&message.body).await,
            Provider::Slack(s) => s.send(&message.body).await,
            Provider::Webhook(w) => w.send(&message.body).await,
            Provider::Console(c) => c.send(id, message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_names_read_back_and_are_listed_in_messages() {
        for k in ProviderKind::ALL {
            assert_eq!(ProviderKind::parse(k.as_str()), Some(k));
        }
        assert_eq!(ProviderKind::parse("teams"), None);
        assert_eq!(
            ProviderKind::expected(),
            r#""dingtalk", "feishu", "wecom", "slack", "webhook" or "console""#
        );
    }

    /// Each provider checks its own endpoint; the messages name the key.
    #[test]
    fn each_provider_checks_its_endpoint() {
        let keywords: Vec<String> = (0..11).map(|i| format!("k{i}")).collect();
        let e = |webhook, secret, keywords| Endpoint {
            webhook,
            secret,
            keywords,
        };
        let hook = Some("https://oapi.dingtalk.com/robot/send?access_token=t");
        assert_eq!(
            check(ProviderKind::DingTalk, "robots.ops", &e(hook, None, &[])),
            Ok(())
        );
        let err = check(
            ProviderKind::DingTalk,
            "robots.ops",
            &e(hook, None, &keywords),
        );
        assert_eq!(
            err.unwrap_err(),
            "robots.ops.keywords: DingTalk allows at most 10 keywords, found 11"
        );
        let err = check(ProviderKind::DingTalk, "robots.ops", &e(None, None, &[])).unwrap_err();
        assert!(
            err.starts_with("robots.ops.webhook: required for provider \"dingtalk\""),
            "{err}"
        );
        let err = check(
            ProviderKind::DingTalk,
            "robots.ops",
            &e(Some("https://example.com/hook?token=s3cret"), None, &[]),
        )
        .unwrap_err();
        assert!(
            err.contains("\"https://example.com/hook?token=***\" is not a DingTalk webhook"),
            "{err}"
        );
        let key = Some("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k");
        assert_eq!(
            check(ProviderKind::WeCom, "robots.wx", &e(key, None, &[])),
            Ok(())
        );
        let err = check(ProviderKind::WeCom, "robots.wx", &e(hook, None, &[])).unwrap_err();
        assert!(
            err.contains(
                "\"https://oapi.dingtalk.com/robot/send?access_token=***\" is not a WeCom webhook"
            ),
            "{err}"
        );
        assert_eq!(
            check(ProviderKind::Console, "robots.c", &e(None, None, &[])),
            Ok(())
        );
        assert_eq!(
            check(
                ProviderKind::Console,
                "robots.c",
                &e(None, Some("SEC"), &[])
            )
            .unwrap_err(),
            "robots.c: provider \"console\" prints digests and takes no webhook or secret"
        );
    }

    /// A WeCom webhook's only credential is its `key`: printed, it is `***`.
    #[test]
    fn a_wecom_key_is_redacted() {
        assert_eq!(
            redact_url("https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx"),
            "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***"
        );
        assert_eq!(
            redact_url("http://127.0.0.1:1/cgi-bin/webhook/send?debug=1&key=s3cret"),
            "http://127.0.0.1:1/cgi-bin/webhook/send?debug=***&key=***"
        );
    }

    #[test]
    fn credentials_in_paths_and_queries_are_redacted() {
        let cases = [
            (
                "https://oapi.dingtalk.com/robot/send?access_token=abc",
                "https://oapi.dingtalk.com/robot/send?access_token=***",
            ),
            (
                "https://hooks.slack.com/services/T0001ABCD/B0002EFGH/XXXXXXXXXXXXXXXXXXXXXXXX",
                "https://hooks.slack.com/services/***/***/***",
            ),
            (
                "https://open.feishu.cn/open-apis/bot/v2/hook/0c5f8a3e-1b2d-4c6e-9f00-123456789abc",
                "https://open.feishu.cn/open-apis/bot/v2/hook/***",
            ),
            (
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-7xxx",
                "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=***",
            ),
            ("http://127.0.0.1:9/hooks/a", "http://127.0.0.1:9/hooks/a"),
            ("no url", "no url"),
        ];
        for (url, want) in cases {
            assert_eq!(redact_url(url), want, "{url}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates_and_is_bounded() {
        let now = 1_700_000_000_000; // Tue, 14 Nov 2023 22:13:20 GMT
        assert_eq!(
            retry_after(Some("120"), now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(retry_after(Some(" 0 "), now), Some(Duration::ZERO));
        assert_eq!(
            retry_after(Some("Tue, 14 Nov 2023 22:14:20 GMT"), now),
            Some(Duration::from_secs(60))
        );
        // A date already past means "now"; a day is taken as the longest wait honoured.
        assert_eq!(
            retry_after(Some("Tue, 14 Nov 2023 22:00:00 GMT"), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(Some("86400"), now), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after(Some("soon"), now), None);
        assert_eq!(retry_after(Some("-5"), now), None);
        assert_eq!(retry_after(None, now), None);
    }
}
