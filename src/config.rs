//! The TOML file, turned into a validated [`Config`].
//!
//! Every check lives here, so the rest of sluice can trust what it is given. Errors name the file,
//! the key (`robots.ops.window`) and what was expected. `${VAR}` is expanded from the environment
//! in every string value; an unset variable is an error that names it and the key that used it.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::alert::Severity;

/// The configuration used when `sluice serve` is given no file: everything local, one robot that
/// prints digests to standard output.
pub const DEFAULT_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:9780"
data_dir = "./sluice-data"

[robots.console]
provider = "console"
window = "5s"
"#;

/// The largest body DingTalk accepts is 20 000 bytes; a digest never serializes to more.
pub const DINGTALK_MAX_BODY: usize = 20_000;

/// The most `server.max_body` may be.
pub const MAX_BODY_LIMIT: u64 = 256 << 20;

#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file, with `:line:column` when known, or "built-in default".
    pub origin: String,
    pub message: String,
}

#[derive(Debug, Clone)]
pub struct Config {
    /// Where the configuration came from, for messages.
    pub origin: String,
    /// The file it was read from: what a reload reads again. `None` for the built-in default
    /// and for text parsed in code.
    pub path: Option<PathBuf>,
    pub server: Server,
    pub robots: BTreeMap<String, Robot>,
    /// Where alerts that name no robot go.
    pub routes: crate::route::Routes,
    /// `[owners]`: label → value → people to @ (mobiles or DingTalk user ids).
    pub owners: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// `[alertmanager] severity_map`: extra `severity` label values (lowercase) and their meaning.
    pub severity_map: BTreeMap<String, Severity>,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub auth_tokens: Vec<String>,
    pub public_url: Option<String>,
    /// Largest accepted request body, in bytes.
    pub max_body: usize,
    /// Most alerts in one `POST /v1/alerts`.
    pub max_alerts_per_request: usize,
    /// sled's page cache, in bytes.
    pub cache_bytes: u64,
    /// Host names (lowercase, no port) accepted besides the listen address, `localhost` and
    /// `public_url`'s host while sluice listens on loopback (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// How long a client may take to send a request's headers.
    pub header_timeout: Duration,
    /// How long a client may take to send a request's body.
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keepalive_timeout: Duration,
    /// Most connections open at once; further clients wait in the kernel's backlog.
    pub max_connections: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    DingTalk,
    Console,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::DingTalk => "dingtalk",
            ProviderKind::Console => "console",
        }
    }
}

#[derive(Clone)]
pub struct Robot {
    pub name: String,
    pub provider: ProviderKind,
    /// Full webhook URL including its access token; print it only through [`redact_url`].
    pub webhook: Option<String>,
    pub secret: Option<String>,
    pub keywords: Vec<String>,
    pub mentions: Mentions,
    pub timing: Timing,
    pub look: Look,
}

impl Robot {
    /// Whether `other` would run this robot exactly the same way (a reload leaves it alone).
    pub fn same_as(&self, other: &Robot) -> bool {
        let (a, b) = (&self.look, &other.look);
        let same_templates = match (&a.templates, &b.templates) {
            (None, None) => true,
            (Some(x), Some(y)) => x.same_sources(y),
            _ => false,
        };
        self.name == other.name
            && self.provider == other.provider
            && self.webhook == other.webhook
            && self.secret == other.secret
            && self.keywords == other.keywords
            && self.mentions == other.mentions
            && self.timing == other.timing
            && a.timezone_name == b.timezone_name
            && a.msgtype == b.msgtype
            && same_templates
    }
}

/// How a robot's digests look: time zone, templates, message type.
#[derive(Debug, Clone)]
pub struct Look {
    pub timezone: jiff::tz::TimeZone,
    /// The zone's name as configured ("Asia/Shanghai"), or "host" for the host's zone.
    pub timezone_name: String,
    /// Custom templates, compiled and checked against a sample at load; `None`: built-in format.
    pub templates: Option<std::sync::Arc<crate::template::Templates>>,
    pub msgtype: MsgType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgType {
    Markdown,
    /// A markdown card with one button to the digest's page on `server.public_url`.
    ActionCard,
}

/// Whom a robot's digests @ (DingTalk shows an @ only if it is both in the `at` object and
/// written in the text).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mentions {
    pub mobiles: Vec<String>,
    pub user_ids: Vec<String>,
    pub all: bool,
    /// Only digests holding an alert at least this severe mention anyone (owners included).
    pub min_severity: Option<Severity>,
}

/// A mobile number or a DingTalk user id: 1 to 64 characters, no spaces.
pub fn is_person(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A mobile number as DingTalk takes it: digits, optionally `+<country>-<number>`.
pub fn is_mobile(s: &str) -> bool {
    let digits = s.strip_prefix('+').unwrap_or(s);
    !digits.is_empty()
        && digits.len() <= 20
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'-')
        && digits.bytes().next().is_some_and(|b| b.is_ascii_digit())
}

impl fmt::Debug for Robot {
    // Hand-written so that a `{:?}` anywhere can never print the token or the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Robot")
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("webhook", &self.webhook.as_deref().map(redact_url))
            .field("secret", &self.secret.as_ref().map(|_| "***"))
            .field("keywords", &self.keywords)
            .field("mentions", &self.mentions)
            .field("look", &self.look)
            .field("timing", &self.timing)
            .finish()
    }
}

/// The per-robot durations and limits; `[defaults]` supplies each one a robot does not set.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub window: Duration,
    pub rate_limit: u32,
    pub rate_period: Duration,
    pub retry_initial_backoff: Duration,
    pub retry_max_backoff: Duration,
    pub throttle_backoff: Duration,
    pub blocked_probe: Duration,
    pub request_timeout: Duration,
    pub retention: Duration,
    /// Most alerts waiting for a digest; beyond it ingest answers 503 instead of growing.
    pub max_pending: u64,
}

impl Timing {
    /// Every rolling window the robot's rate guard holds. Today one, from `rate_limit` and
    /// `rate_period`; a platform with several limits at once adds its own here.
    pub fn windows(&self) -> Vec<crate::limit::Window> {
        vec![crate::limit::Window::new(self.rate_limit, self.rate_period)]
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            window: Duration::from_secs(30),
            rate_limit: 20,
            rate_period: Duration::from_secs(60),
            retry_initial_backoff: Duration::from_secs(1),
            retry_max_backoff: Duration::from_secs(300),
            throttle_backoff: Duration::from_secs(600),
            blocked_probe: Duration::from_secs(300),
            request_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 86_400),
            max_pending: 1_000_000,
        }
    }
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default_robot: Option<String>,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    defaults: RawTiming,
    #[serde(default)]
    robots: BTreeMap<String, RawRobot>,
    #[serde(default)]
    routes: Vec<crate::route::RawRoute>,
    #[serde(default)]
    owners: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    alertmanager: RawAlertmanager,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    severity_map: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    data_dir: Option<String>,
    #[serde(default)]
    auth_tokens: Vec<String>,
    auth_tokens_file: Option<String>,
    public_url: Option<String>,
    max_body: Option<RawSize>,
    max_alerts_per_request: Option<i64>,
    cache_size: Option<RawSize>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    keepalive_timeout: Option<String>,
    max_connections: Option<i64>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct RawTiming {
    window: Option<String>,
    rate_limit: Option<i64>,
    rate_period: Option<String>,
    retry_initial_backoff: Option<String>,
    retry_max_backoff: Option<String>,
    throttle_backoff: Option<String>,
    blocked_probe: Option<String>,
    request_timeout: Option<String>,
    retention: Option<String>,
    max_pending: Option<i64>,
    timezone: Option<String>,
    title_template: Option<String>,
    body_template: Option<String>,
    title_template_file: Option<String>,
    body_template_file: Option<String>,
    msgtype: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRobot {
    provider: Option<String>,
    webhook: Option<String>,
    webhook_file: Option<String>,
    secret: Option<String>,
    secret_file: Option<String>,
    #[serde(default)]
    keywords: Vec<String>,
    #[serde(default)]
    mention_mobiles: Vec<String>,
    #[serde(default)]
    mention_user_ids: Vec<String>,
    #[serde(default)]
    mention_all: bool,
    mention_min_severity: Option<String>,
    // The [defaults] keys, spelled out: serde cannot combine `flatten` with
    // `deny_unknown_fields`, and unknown keys must be rejected with their position.
    window: Option<String>,
    rate_limit: Option<i64>,
    rate_period: Option<String>,
    retry_initial_backoff: Option<String>,
    retry_max_backoff: Option<String>,
    throttle_backoff: Option<String>,
    blocked_probe: Option<String>,
    request_timeout: Option<String>,
    retention: Option<String>,
    max_pending: Option<i64>,
    timezone: Option<String>,
    title_template: Option<String>,
    body_template: Option<String>,
    title_template_file: Option<String>,
    body_template_file: Option<String>,
    msgtype: Option<String>,
}

impl RawRobot {
    fn timing(&self) -> RawTiming {
        RawTiming {
            window: self.window.clone(),
            rate_limit: self.rate_limit,
            rate_period: self.rate_period.clone(),
            retry_initial_backoff: self.retry_initial_backoff.clone(),
            retry_max_backoff: self.retry_max_backoff.clone(),
            throttle_backoff: self.throttle_backoff.clone(),
            blocked_probe: self.blocked_probe.clone(),
            request_timeout: self.request_timeout.clone(),
            retention: self.retention.clone(),
            max_pending: self.max_pending,
            timezone: self.timezone.clone(),
            title_template: self.title_template.clone(),
            body_template: self.body_template.clone(),
            title_template_file: self.title_template_file.clone(),
            body_template_file: self.body_template_file.clone(),
            msgtype: self.msgtype.clone(),
        }
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            origin: origin.clone(),
            message: format!("cannot read the config file: {e}"),
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        let mut config =
            Config::parse_in(&text, &origin, base_dir, &|name| std::env::var(name).ok())?;
        config.path = Some(path.to_path_buf());
        Ok(config)
    }

    /// The `server` keys that take effect only at start-up, named, where `self` and `next`
    /// differ.
    pub fn restart_only_changes(&self, next: &Config) -> Vec<&'static str> {
        let (a, b) = (&self.server, &next.server);
        let mut changed = Vec::new();
        if a.listen != b.listen {
            changed.push("server.listen");
        }
        if a.data_dir != b.data_dir {
            changed.push("server.data_dir");
        }
        if a.cache_bytes != b.cache_bytes {
            changed.push("server.cache_size");
        }
        if a.max_connections != b.max_connections {
            changed.push("server.max_connections");
        }
        changed
    }

    /// The built-in configuration (see [`DEFAULT_CONFIG`]).
    pub fn builtin() -> Config {
        Config::parse(DEFAULT_CONFIG, "built-in default", &|_| None)
            .expect("the built-in config is valid")
    }

    /// Parses and validates TOML text. `env` looks up `${VAR}`s; `origin` names the text in errors.
    pub fn parse(
        text: &str,
        origin: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        Config::parse_in(text, origin, Path::new("."), env)
    }

    /// Like [`parse`](Self::parse); `*_template_file` paths are relative to `base_dir`.
    pub fn parse_in(
        text: &str,
        origin: &str,
        base_dir: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError {
            origin: match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    format!("{origin}:{line}:{col}")
                }
                None => origin.to_string(),
            },
            message: e.message().trim().replace('\n', "; "),
        })?;
        let fail = |message: String| ConfigError {
            origin: origin.to_string(),
            message,
        };
        let expand = |key: &str, v: &str| {
            expand_vars(v, env)
                .map_err(|var| fail(format!("{key}: environment variable `{var}` is not set")))
        };
        let expand_opt = |key: &str, v: &Option<String>| -> Result<Option<String>, ConfigError> {
            v.as_deref().map(|v| expand(key, v)).transpose()
        };

        let s = &raw.server;
        let listen_text =
            expand_opt("server.listen", &s.listen)?.unwrap_or_else(|| "127.0.0.1:9780".to_string());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            fail(format!(
                "server.listen: {listen_text:?} is not an address; expected IP:PORT, e.g. \"127.0.0.1:9780\""
            ))
        })?;
        let data_dir = expand_opt("server.data_dir", &s.data_dir)?
            .unwrap_or_else(|| "./sluice-data".to_string());
        if data_dir.trim().is_empty() {
            return Err(fail("server.data_dir: must not be empty".into()));
        }
        let mut auth_tokens = Vec::new();
        for (i, t) in s.auth_tokens.iter().enumerate() {
            let key = format!("server.auth_tokens[{i}]");
            let t = expand(&key, t)?;
            if t.len() < 8 {
                return Err(fail(format!(
                    "{key}: a token must be at least 8 characters"
                )));
            }
            auth_tokens.push(t);
        }
        if let Some(path) = expand_opt("server.auth_tokens_file", &s.auth_tokens_file)? {
            let text =
                read_secret_file("server.auth_tokens_file", &path, base_dir).map_err(&fail)?;
            // One token per line; blank lines and `#` comments are skipped.
            for (n, line) in text.lines().enumerate() {
                let t = line.trim();
                if t.is_empty() || t.starts_with('#') {
                    continue;
                }
                if t.len() < 8 {
                    return Err(fail(format!(
                        "server.auth_tokens_file: line {}: a token must be at least 8 characters",
                        n + 1
                    )));
                }
                auth_tokens.push(t.to_string());
            }
        }
        let public_url = expand_opt("server.public_url", &s.public_url)?
            .filter(|u| !u.is_empty())
            .map(|u| {
                if u.starts_with("http://") || u.starts_with("https://") {
                    Ok(u.trim_end_matches('/').to_string())
                } else {
                    Err(fail(format!(
                        "server.public_url: {u:?} must start with http:// or https://"
                    )))
                }
            })
            .transpose()?;
        let size = |key: &str, v: &Option<RawSize>, default: u64| -> Result<u64, ConfigError> {
            match v {
                None => Ok(default),
                Some(RawSize::Bytes(n)) => Ok(*n),
                Some(RawSize::Text(t)) => {
                    parse_size(&expand(key, t)?).map_err(|m| fail(format!("{key}: {m}")))
                }
            }
        };
        let max_body = size("server.max_body", &s.max_body, 1 << 20)?;
        if max_body < 1024 {
            return Err(fail("server.max_body: at least 1KiB".into()));
        }
        // One request's alerts are stored as one chunk, which a segment reference addresses
        // with 32 bits; their binary form is at most about 3.3× their JSON (tiny alerts), so
        // this keeps every request storable with a wide margin.
        if max_body > MAX_BODY_LIMIT {
            return Err(fail(format!(
                "server.max_body: {max_body} bytes is more than the 256MiB one request may hold; send fewer alerts per request"
            )));
        }
        let cache_bytes = size("server.cache_size", &s.cache_size, 64 << 20)?;
        let max_alerts_per_request = match s.max_alerts_per_request {
            None => 10_000,
            Some(n) if (1..=1_000_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(fail(format!(
                    "server.max_alerts_per_request: {n} is out of range; expected 1 to 1000000"
                )));
            }
        };

        let mut allowed_hosts = Vec::new();
        for (i, h) in s.allowed_hosts.iter().enumerate() {
            let key = format!("server.allowed_hosts[{i}]");
            let h = expand(&key, h)?.trim().to_ascii_lowercase();
            let bare = h.trim_start_matches('[').trim_end_matches(']');
            let name = |h: &str| {
                h.split('.').all(|label| {
                    !label.is_empty()
                        && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                })
            };
            if bare.parse::<std::net::IpAddr>().is_err() && !name(&h) {
                return Err(fail(format!(
                    "{key}: {h:?} is not a host name; expected a name or an IP address without scheme, port or path, e.g. \"sluice.internal\""
                )));
            }
            allowed_hosts.push(bare.to_string());
        }
        let server_duration =
            |key: &str, v: &Option<String>, default: Duration| -> Result<Duration, ConfigError> {
                let Some(text) = expand_opt(key, v)? else {
                    return Ok(default);
                };
                let d = parse_duration(&text).map_err(|m| fail(format!("{key}: {m}")))?;
                if d < Duration::from_millis(10) {
                    return Err(fail(format!("{key}: at least 10ms")));
                }
                Ok(d)
            };
        let header_timeout = server_duration(
            "server.header_timeout",
            &s.header_timeout,
            Duration::from_secs(60),
        )?;
        let body_timeout = server_duration(
            "server.body_timeout",
            &s.body_timeout,
            Duration::from_secs(60),
        )?;
        let keepalive_timeout = server_duration(
            "server.keepalive_timeout",
            &s.keepalive_timeout,
            Duration::from_secs(75),
        )?;
        let max_connections = match s.max_connections {
            None => 4096,
            Some(n) if (1..=1_000_000).contains(&n) => n as usize,
            Some(n) => {
                return Err(fail(format!(
                    "server.max_connections: {n} is out of range; expected 1 to 1000000"
                )));
            }
        };

        let defaults = timing(
            &Timing::default(),
            &raw.defaults,
            "defaults",
            &expand,
            &fail,
        )?;

        let mut robots = BTreeMap::new();
        for (name, r) in &raw.robots {
            let at = |k: &str| format!("robots.{name}.{k}");
            if name.is_empty()
                || name.len() > 64
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(fail(format!(
                    "robots.{name}: a robot name is 1 to 64 letters, digits, '_' or '-'"
                )));
            }
            let provider = match expand_opt(&at("provider"), &r.provider)?.as_deref() {
                Some("dingtalk") | None => ProviderKind::DingTalk,
                Some("console") => ProviderKind::Console,
                Some(other) => {
                    return Err(fail(format!(
                        "{}: unknown provider {other:?}; expected \"dingtalk\" or \"console\"",
                        at("provider")
                    )));
                }
            };
            let from_file =
                |inline: &str, file: &str, iv: &Option<String>, fv: &Option<String>| match (
                    expand_opt(&at(inline), iv)?,
                    expand_opt(&at(file), fv)?,
                ) {
                    (Some(_), Some(_)) => Err(fail(format!(
                        "{} and {}: give one or the other, not both",
                        at(inline),
                        at(file)
                    ))),
                    (Some(v), None) => Ok(Some(v)),
                    (None, Some(path)) => read_secret_file(&at(file), &path, base_dir)
                        .map(|t| Some(t.trim().to_string()))
                        .map_err(&fail),
                    (None, None) => Ok(None),
                };
            let webhook = from_file("webhook", "webhook_file", &r.webhook, &r.webhook_file)?
                .filter(|w| !w.is_empty());
            let secret = from_file("secret", "secret_file", &r.secret, &r.secret_file)?
                .filter(|s| !s.is_empty());
            let mut keywords = Vec::new();
            for (i, k) in r.keywords.iter().enumerate() {
                let k = expand(&format!("{}[{i}]", at("keywords")), k)?;
                if k.trim().is_empty() || k.len() > 64 || k.chars().any(char::is_control) {
                    return Err(fail(format!(
                        "{}[{i}]: a keyword is 1 to 64 bytes of text on one line",
                        at("keywords")
                    )));
                }
                keywords.push(k);
            }
            if keywords.len() > 10 {
                return Err(fail(format!(
                    "{}: DingTalk allows at most 10 keywords, found {}",
                    at("keywords"),
                    keywords.len()
                )));
            }
            match provider {
                ProviderKind::DingTalk => {
                    let Some(w) = &webhook else {
                        return Err(fail(format!(
                            "{}: required for provider \"dingtalk\"; expected e.g. \"https://oapi.dingtalk.com/robot/send?access_token=${{OPS_TOKEN}}\"",
                            at("webhook")
                        )));
                    };
                    if !(w.starts_with("https://") || w.starts_with("http://"))
                        || !w.contains("access_token=")
                    {
                        return Err(fail(format!(
                            "{}: {:?} is not a DingTalk webhook; expected an http(s) URL with ?access_token=...",
                            at("webhook"),
                            redact_url(w)
                        )));
                    }
                }
                ProviderKind::Console => {
                    if webhook.is_some() || secret.is_some() {
                        return Err(fail(format!(
                            "robots.{name}: provider \"console\" prints digests and takes no webhook or secret"
                        )));
                    }
                }
            }
            let mut mentions = Mentions {
                all: r.mention_all,
                ..Mentions::default()
            };
            for (i, m) in r.mention_mobiles.iter().enumerate() {
                let m = expand(&format!("{}[{i}]", at("mention_mobiles")), m)?;
                if !is_mobile(&m) {
                    return Err(fail(format!(
                        "{}[{i}]: {m:?} is not a mobile number; expected digits, e.g. \"13800000000\" or \"+852-61234567\"",
                        at("mention_mobiles")
                    )));
                }
                mentions.mobiles.push(m);
            }
            for (i, u) in r.mention_user_ids.iter().enumerate() {
                let u = expand(&format!("{}[{i}]", at("mention_user_ids")), u)?;
                if !is_person(&u) {
                    return Err(fail(format!(
                        "{}[{i}]: {u:?} is not a DingTalk user id (1 to 64 characters, no spaces)",
                        at("mention_user_ids")
                    )));
                }
                mentions.user_ids.push(u);
            }
            if let Some(sev) = &r.mention_min_severity {
                mentions.min_severity = Some(Severity::parse(sev).ok_or_else(|| {
                    fail(format!(
                        "{}: unknown severity {sev:?}; expected critical, error, warning or info",
                        at("mention_min_severity")
                    ))
                })?);
            }
            let timing = timing(
                &defaults,
                &r.timing(),
                &format!("robots.{name}"),
                &expand,
                &fail,
            )?;
            let look = look(
                &raw.defaults,
                &r.timing(),
                &format!("robots.{name}"),
                public_url.is_some(),
                base_dir,
                &expand,
                &fail,
            )?;
            robots.insert(
                name.clone(),
                Robot {
                    name: name.clone(),
                    provider,
                    webhook,
                    secret,
                    keywords,
                    mentions,
                    timing,
                    look,
                },
            );
        }
        if robots.is_empty() {
            return Err(fail(
                "no robots configured; add a [robots.NAME] table (see config.toml.example)".into(),
            ));
        }

        let names: Vec<&str> = robots.keys().map(String::as_str).collect();
        let default_robot = expand_opt("default_robot", &raw.default_robot)?;
        let routes = crate::route::Routes::compile(&raw.routes, default_robot.as_deref(), &names)
            .map_err(|e| fail(e.to_string()))?;

        let mut owners = BTreeMap::new();
        for (label, values) in &raw.owners {
            let mut by_value = BTreeMap::new();
            for (value, people) in values {
                let mut list = Vec::new();
                for (i, p) in people.iter().enumerate() {
                    let key = format!("owners.{label}.{value}[{i}]");
                    let p = expand(&key, p)?;
                    if !is_person(&p) {
                        return Err(fail(format!(
                            "{key}: {p:?} is neither a mobile number nor a DingTalk user id"
                        )));
                    }
                    list.push(p);
                }
                by_value.insert(value.clone(), list);
            }
            owners.insert(label.clone(), by_value);
        }

        let mut severity_map = BTreeMap::new();
        for (value, sev) in &raw.alertmanager.severity_map {
            let parsed = Severity::parse(&sev.to_ascii_lowercase()).ok_or_else(|| {
                fail(format!(
                    "alertmanager.severity_map.{value}: unknown severity {sev:?}; expected critical, error, warning or info"
                ))
            })?;
            severity_map.insert(value.to_ascii_lowercase(), parsed);
        }

        Ok(Config {
            routes,
            owners,
            severity_map,
            origin: origin.to_string(),
            path: None,
            server: Server {
                listen,
                data_dir: PathBuf::from(data_dir),
                auth_tokens,
                public_url,
                max_body: max_body as usize,
                max_alerts_per_request,
                cache_bytes,
                allowed_hosts,
                header_timeout,
                body_timeout,
                keepalive_timeout,
                max_connections,
            },
            robots,
        })
    }

    /// Names of the configured robots, for error messages.
    pub fn robot_names(&self) -> String {
        self.robots.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

/// The robot's `look`: each key from the robot's table, else from `[defaults]`.
fn look(
    defaults: &RawTiming,
    robot: &RawTiming,
    section: &str,
    has_public_url: bool,
    base_dir: &Path,
    expand: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
    fail: &dyn Fn(String) -> ConfigError,
) -> Result<Look, ConfigError> {
    // (key as the user should fix it, value)
    let pick = |k: &str,
                r: &Option<String>,
                d: &Option<String>|
     -> Result<Option<(String, String)>, ConfigError> {
        match (r, d) {
            (Some(v), _) => {
                let key = format!("{section}.{k}");
                Ok(Some((key.clone(), expand(&key, v)?)))
            }
            (None, Some(v)) => {
                let key = format!("defaults.{k}");
                Ok(Some((key.clone(), expand(&key, v)?)))
            }
            (None, None) => Ok(None),
        }
    };
    let (timezone, timezone_name) = match pick("timezone", &robot.timezone, &defaults.timezone)? {
        None => (jiff::tz::TimeZone::system(), "host".to_string()),
        Some((key, name)) => match jiff::tz::TimeZone::get(&name) {
            Ok(tz) => (tz, name),
            Err(_) => {
                return Err(fail(format!(
                    "{key}: unknown time zone {name:?}; expected an IANA name such as \"Asia/Shanghai\" or \"UTC\""
                )));
            }
        },
    };
    let msgtype = match pick("msgtype", &robot.msgtype, &defaults.msgtype)? {
        None => MsgType::Markdown,
        Some((_, m)) if m == "markdown" => MsgType::Markdown,
        Some((key, m)) if m == "actionCard" => {
            if !has_public_url {
                return Err(fail(format!(
                    "{key}: \"actionCard\" needs server.public_url for its button to the digest's page"
                )));
            }
            MsgType::ActionCard
        }
        Some((key, m)) => {
            return Err(fail(format!(
                "{key}: unknown msgtype {m:?}; expected \"markdown\" or \"actionCard\""
            )));
        }
    };
    let source = |inline: &str,
                  file: &str,
                  r_inline: &Option<String>,
                  d_inline: &Option<String>,
                  r_file: &Option<String>,
                  d_file: &Option<String>|
     -> Result<Option<(String, String)>, ConfigError> {
        let text = pick(inline, r_inline, d_inline)?;
        let path = pick(file, r_file, d_file)?;
        match (text, path) {
            (Some((key, _)), Some((other, _))) => Err(fail(format!(
                "{key} and {other}: give the template inline or as a file, not both"
            ))),
            (Some(t), None) => Ok(Some(t)),
            (None, Some((key, path))) => {
                let full = base_dir.join(&path);
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| fail(format!("{key}: cannot read {}: {e}", full.display())))?;
                Ok(Some((full.display().to_string(), text)))
            }
            (None, None) => Ok(None),
        }
    };
    let title = source(
        "title_template",
        "title_template_file",
        &robot.title_template,
        &defaults.title_template,
        &robot.title_template_file,
        &defaults.title_template_file,
    )?;
    let body = source(
        "body_template",
        "body_template_file",
        &robot.body_template,
        &defaults.body_template,
        &robot.body_template_file,
        &defaults.body_template_file,
    )?;
    let templates = if title.is_none() && body.is_none() {
        None
    } else {
        let t = crate::template::Templates::compile(
            title.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
            body.as_ref().map(|(n, t)| (n.as_str(), t.as_str())),
        )
        .map_err(|e| fail(e.to_string()))?;
        Some(std::sync::Arc::new(t))
    };
    Ok(Look {
        timezone,
        timezone_name,
        templates,
        msgtype,
    })
}

fn timing(
    base: &Timing,
    raw: &RawTiming,
    section: &str,
    expand: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
    fail: &dyn Fn(String) -> ConfigError,
) -> Result<Timing, ConfigError> {
    let dur = |k: &str, v: &Option<String>, base: Duration| -> Result<Duration, ConfigError> {
        let key = format!("{section}.{k}");
        match v {
            None => Ok(base),
            Some(text) => {
                parse_duration(&expand(&key, text)?).map_err(|m| fail(format!("{key}: {m}")))
            }
        }
    };
    let t = Timing {
        window: dur("window", &raw.window, base.window)?,
        rate_limit: match raw.rate_limit {
            None => base.rate_limit,
            Some(n) if (1..=10_000).contains(&n) => n as u32,
            Some(n) => {
                return Err(fail(format!(
                    "{section}.rate_limit: {n} is out of range; expected 1 to 10000 requests per rate_period"
                )));
            }
        },
        rate_period: dur("rate_period", &raw.rate_period, base.rate_period)?,
        retry_initial_backoff: dur(
            "retry_initial_backoff",
            &raw.retry_initial_backoff,
            base.retry_initial_backoff,
        )?,
        retry_max_backoff: dur(
            "retry_max_backoff",
            &raw.retry_max_backoff,
            base.retry_max_backoff,
        )?,
        throttle_backoff: dur(
            "throttle_backoff",
            &raw.throttle_backoff,
            base.throttle_backoff,
        )?,
        blocked_probe: dur("blocked_probe", &raw.blocked_probe, base.blocked_probe)?,
        request_timeout: dur(
            "request_timeout",
            &raw.request_timeout,
            base.request_timeout,
        )?,
        retention: dur("retention", &raw.retention, base.retention)?,
        max_pending: match raw.max_pending {
            None => base.max_pending,
            Some(n) if (1..=1_000_000_000).contains(&n) => n as u64,
            Some(n) => {
                return Err(fail(format!(
                    "{section}.max_pending: {n} is out of range; expected 1 to 1000000000 alerts"
                )));
            }
        },
    };
    let positive = [
        ("rate_period", t.rate_period),
        ("retry_initial_backoff", t.retry_initial_backoff),
        ("retry_max_backoff", t.retry_max_backoff),
        ("throttle_backoff", t.throttle_backoff),
        ("blocked_probe", t.blocked_probe),
        ("request_timeout", t.request_timeout),
    ];
    for (k, d) in positive {
        if d < Duration::from_millis(10) {
            return Err(fail(format!("{section}.{k}: must be at least 10ms")));
        }
    }
    if t.retry_max_backoff < t.retry_initial_backoff {
        return Err(fail(format!(
            "{section}.retry_max_backoff: {} is shorter than retry_initial_backoff {}",
            humantime::format_duration(t.retry_max_backoff),
            humantime::format_duration(t.retry_initial_backoff)
        )));
    }
    Ok(t)
}

/// Reads a file holding a secret (a token, a webhook, a signing secret). The message names the
/// key and the path, never the content.
fn read_secret_file(key: &str, path: &str, base_dir: &Path) -> Result<String, String> {
    let full = base_dir.join(path);
    std::fs::read_to_string(&full)
        .map_err(|e| format!("{key}: cannot read {}: {e}", full.display()))
}

/// `"30s"`, `"1m 30s"`, `"250ms"`, `"7d"` (humantime's syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}); expected e.g. \"30s\", \"5m\", \"250ms\", \"7d\"")
    })
}

/// `"1MiB"`, `"512KiB"`, `"2000000"` bytes.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| {
        format!("invalid size {text:?}; expected e.g. \"1MiB\", \"512KiB\" or a number of bytes")
    })?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "KB" | "K" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        "GiB" | "GB" | "G" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?}; expected B, KiB, MiB or GiB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// Replaces `${NAME}` with the variable's value; returns the name of the first unset variable.
/// `$$` stands for a literal `$`.
fn expand_vars(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(format!("{} (no closing brace)", &rest[i..]));
            };
            let name = &body[..end];
            match env(name) {
                Some(v) => out.push_str(&v),
                None => return Err(name.to_string()),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

/// A webhook URL fit to print: the query values (access tokens, signatures) become `***`.
pub fn redact_url(url: &str) -> String {
    let Some((base, query)) = url.split_once('?') else {
        return url.to_string();
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let env = |name: &str| match name {
            "OPS_TOKEN" => Some("tok123".to_string()),
            "OPS_SECRET" => Some("SECabc".to_string()),
            _ => None,
        };
        Config::parse(text, "test.toml", &env)
    }

    const GOOD: &str = r#"
        [server]
        listen = "127.0.0.1:9999"
        [defaults]
        window = "10s"
        rate_limit = 10
        [robots.ops]
        webhook = "https://oapi.dingtalk.com/robot/send?access_token=${OPS_TOKEN}"
        secret = "${OPS_SECRET}"
        keywords = ["告警"]
        window = "2s"
        [robots.dq]
        provider = "console"
    "#;

    #[test]
    fn robots_inherit_defaults_and_override_them() {
        let c = parse(GOOD).unwrap();
        let ops = &c.robots["ops"];
        assert_eq!(
            ops.webhook.as_deref(),
            Some("https://oapi.dingtalk.com/robot/send?access_token=tok123")
        );
        assert_eq!(ops.secret.as_deref(), Some("SECabc"));
        assert_eq!(ops.timing.window, Duration::from_secs(2));
        assert_eq!(ops.timing.rate_limit, 10);
        assert_eq!(c.robots["dq"].timing.window, Duration::from_secs(10));
        assert_eq!(c.robots["dq"].timing.rate_period, Duration::from_secs(60));
        assert_eq!(c.server.listen.port(), 9999);
        assert_eq!(c.server.max_body, 1 << 20);
    }

    #[test]
    fn errors_name_the_key_and_the_expectation() {
        let cases = [
            (
                GOOD.replace("${OPS_SECRET}", "${NOPE}"),
                "robots.ops.secret: environment variable `NOPE` is not set",
            ),
            (
                GOOD.replace("window = \"2s\"", "window = \"2 parsecs\""),
                "robots.ops.window: invalid duration",
            ),
            (
                GOOD.replace("rate_limit = 10", "rate_limit = 0"),
                "defaults.rate_limit: 0 is out of range",
            ),
            (
                GOOD.replace("provider = \"console\"", "provider = \"slack\""),
                "robots.dq.provider: unknown provider \"slack\"",
            ),
            (
                GOOD.replace("listen = \"127.0.0.1:9999\"", "listen = \"localhost\""),
                "server.listen: \"localhost\" is not an address",
            ),
            (
                "[robots.x]\nprovider = \"dingtalk\"\n".to_string(),
                "robots.x.webhook: required",
            ),
            ("[server]\n".to_string(), "no robots configured"),
            (
                GOOD.replace("[server]", "[server]\nmax_body = \"1GiB\""),
                "server.max_body: 1073741824 bytes is more than the 256MiB",
            ),
            (
                "[robots.\"a b\"]\nprovider = \"console\"\n".to_string(),
                "robots.a b: a robot name",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(
                err.starts_with("test.toml: ") && err.contains(want),
                "got {err:?}, want {want:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_position() {
        let err = parse("[robots.ops]\nprovider = \"console\"\nwindw = \"1s\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("test.toml:3:1: unknown field `windw`"),
            "{err}"
        );
        let err = parse("[sever]\n").unwrap_err().to_string();
        assert!(err.contains("unknown field `sever`"), "{err}");
    }

    #[test]
    fn builtin_default_has_one_console_robot() {
        let c = Config::builtin();
        assert_eq!(c.robot_names(), "console");
        assert_eq!(c.robots["console"].provider, ProviderKind::Console);
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:9780");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = parse(GOOD).unwrap();
        let dbg = format!("{:?}", c.robots["ops"]);
        assert!(!dbg.contains("tok123") && !dbg.contains("SECabc"), "{dbg}");
        assert_eq!(
            redact_url("https://x/robot/send?access_token=abc&timestamp=1&sign=zz"),
            "https://x/robot/send?access_token=***&timestamp=***&sign=***"
        );
    }

    #[test]
    fn the_example_config_is_valid() {
        let c = Config::parse(
            include_str!("../config.toml.example"),
            "config.toml.example",
            &|_| Some("x".to_string()),
        )
        .unwrap();
        assert_eq!(c.robot_names(), "dq, local, ops");
        assert_eq!(c.robots["ops"].timing.window, Duration::from_secs(10));
        assert_eq!(
            c.robots["dq"].timing.throttle_backoff,
            Duration::from_secs(600)
        );
    }

    #[test]
    fn look_keys_are_checked_and_inherited() {
        let base = "[server]\npublic_url = \"https://sluice.example.com\"\n[defaults]\ntimezone = \"Asia/Shanghai\"\n[robots.ops]\nprovider = \"console\"\n";
        let c = parse(base).unwrap();
        let look = &c.robots["ops"].look;
        assert_eq!(look.timezone_name, "Asia/Shanghai");
        assert_eq!(look.msgtype, MsgType::Markdown);
        assert!(look.templates.is_none());

        let cases = [
            (
                base.replace("Asia/Shanghai", "Mars/Olympus"),
                "defaults.timezone: unknown time zone \"Mars/Olympus\"",
            ),
            (
                format!("{base}msgtype = \"card\"\n"),
                "robots.ops.msgtype: unknown msgtype \"card\"",
            ),
            (
                format!("{base}msgtype = \"actionCard\"\n")
                    .replace("public_url = \"https://sluice.example.com\"", ""),
                "robots.ops.msgtype: \"actionCard\" needs server.public_url",
            ),
            (
                format!("{base}body_template = \"x\"\nbody_template_file = \"y.j2\"\n"),
                "robots.ops.body_template and robots.ops.body_template_file: give the template inline or as a file, not both",
            ),
            (
                format!("{base}body_template_file = \"nope.j2\"\n"),
                "robots.ops.body_template_file: cannot read",
            ),
            (
                format!("{base}body_template = \"line one\\n{{{{ no_such_thing.x }}}}\"\n"),
                "robots.ops.body_template: line 2:",
            ),
            (
                format!("{base}title_template = \"{{% if %}}\"\n"),
                "robots.ops.title_template: line 1:",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "got {err:?}, want {want:?}");
        }
        let c = parse(&format!("{base}msgtype = \"actionCard\"\ntitle_template = \"{{{{ robot }}}}: {{{{ counts.total }}}}\"\n")).unwrap();
        assert_eq!(c.robots["ops"].look.msgtype, MsgType::ActionCard);
        assert!(c.robots["ops"].look.templates.is_some());
    }

    #[test]
    fn template_files_are_read_relative_to_the_config() {
        let text = "[defaults]\nbody_template_file = \"templates/body.md.j2\"\n[robots.ops]\nprovider = \"console\"\n";
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let c = Config::parse_in(text, "test.toml", repo, &|_| None).unwrap();
        assert!(c.robots["ops"].look.templates.is_some());
        let err = Config::parse_in(text, "test.toml", &repo.join("src"), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("defaults.body_template_file: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn secrets_can_come_from_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("secret"), "SECfromfile\n").unwrap();
        std::fs::write(
            dir.path().join("hook"),
            "https://oapi.dingtalk.com/robot/send?access_token=filetok\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("tokens"),
            "# ops team\nfirst-token-123\n\nsecond-token-456\n",
        )
        .unwrap();
        let text = "[server]\nauth_tokens = [\"inline-token-0\"]\nauth_tokens_file = \"tokens\"\n[robots.ops]\nwebhook_file = \"hook\"\nsecret_file = \"secret\"\n";
        let c = Config::parse_in(text, "t.toml", dir.path(), &|_| None).unwrap();
        assert_eq!(
            c.server.auth_tokens,
            ["inline-token-0", "first-token-123", "second-token-456"]
        );
        assert_eq!(c.robots["ops"].secret.as_deref(), Some("SECfromfile"));
        assert_eq!(
            c.robots["ops"].webhook.as_deref(),
            Some("https://oapi.dingtalk.com/robot/send?access_token=filetok")
        );
        let both = text.replace(
            "secret_file = \"secret\"",
            "secret_file = \"secret\"\nsecret = \"x\"",
        );
        let err = Config::parse_in(&both, "t.toml", dir.path(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("robots.ops.secret and robots.ops.secret_file: give one or the other"),
            "{err}"
        );
        let missing = text.replace("\"secret\"", "\"nope\"");
        let err = Config::parse_in(&missing, "t.toml", dir.path(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("robots.ops.secret_file: cannot read"), "{err}");
        std::fs::write(dir.path().join("tokens"), "short\n").unwrap();
        let err = Config::parse_in(text, "t.toml", dir.path(), &|_| None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("server.auth_tokens_file: line 1: a token must be at least 8 characters"),
            "{err}"
        );
        assert!(
            !err.contains("short"),
            "the file's content stays out of messages: {err}"
        );
    }

    #[test]
    fn sizes_and_vars() {
        assert_eq!(parse_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_size("512 KiB"), Ok(512 << 10));
        assert!(parse_size("1 parsec").is_err());
        let env = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(expand_vars("a${A}b$$c$d", &env), Ok("axb$c$d".into()));
        assert_eq!(expand_vars("${B}", &env), Err("B".into()));
    }
}
