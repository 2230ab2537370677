//! A robot's table (and `[defaults]`, read through the same raw struct): its provider, its
//! webhook and secrets, its timing and its look.

use std::fmt;

use super::*;

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
    /// A webhook robot's headers, body template and size cap (`provider = "webhook"`).
    pub hook: Option<std::sync::Arc<crate::provider::webhook::Spec>>,
    /// `quota = "5000/month"`: most sends per calendar (or fixed) period ([`crate::quota`]).
    pub quota: Option<crate::quota::Quota>,
    /// `fallback = "LANE"`: the robot or pool its queue goes to while its quota is spent, or
    /// once it has refused our messages for `fallback_after`.
    pub fallback: Option<String>,
    /// How its front door takes messages in ([`crate::frontdoor`]).
    pub ingress: super::ingress::Ingress,
}

impl Robot {
    /// What its provider needs of it.
    pub fn target(&self) -> crate::provider::Target<'_> {
        crate::provider::Target {
            name: &self.name,
            kind: self.provider,
            webhook: self.webhook.as_deref(),
            secret: self.secret.as_deref(),
            keywords: &self.keywords,
            msgtype: self.look.msgtype,
            request_timeout: self.timing.request_timeout,
            hook: self.hook.as_ref(),
        }
    }

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
            && self.quota == other.quota
            && self.fallback == other.fallback
            && self.ingress.same_as(&other.ingress)
            && a.timezone_name == b.timezone_name
            && a.msgtype == b.msgtype
            && same_templates
            && match (&self.hook, &other.hook) {
                (None, None) => true,
                (Some(x), Some(y)) => x.same_as(y),
                _ => false,
            }
    }
}

/// How a robot's digests look: time zone, templates, message type.
#[derive(Debug, Clone)]
pub struct Look {
    pub timezone: jiff::tz::TimeZone,
    /// The zone's name as configured ("Asia/Shanghai"), or "host" for the host's zone.
    pub timezone_name: String,
    /// Custom templates, compiled and checked against a sample at load; `None`: built-in format.
    pub templates: Option<std::sync::Arc<crate::digest::template::Templates>>,
    pub msgtype: MsgType,
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
            .field("ingress", &self.ingress)
            .field(
                "headers",
                &self.hook.as_ref().map(|h| {
                    h.headers
                        .iter()
                        .map(|(n, _)| format!("{n}: ***"))
                        .collect::<Vec<_>>()
                }),
            )
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
    /// How long a robot with a `fallback` may refuse our messages before its queue goes to
    /// the fallback.
    pub fallback_after: Duration,
    pub request_timeout: Duration,
    pub retention: Duration,
    /// Most alerts waiting for a digest; beyond it ingest answers 503 instead of growing.
    pub max_pending: u64,
    /// A second, shorter window held at the same time (`burst_limit` per `burst_period`):
    /// Feishu robots take 100 a minute and also 5 a second.
    pub burst: Option<(u32, Duration)>,
}

impl Timing {
    /// Every rolling window the robot's rate guard holds: `rate_limit` per `rate_period`, and
    /// the burst window when the robot has one.
    pub fn windows(&self) -> Vec<crate::limit::Window> {
        let mut w = vec![crate::limit::Window::new(self.rate_limit, self.rate_period)];
        if let Some((limit, period)) = self.burst {
            w.push(crate::limit::Window::new(limit, period));
        }
        w
    }

    /// The defaults for a robot on `kind`'s platform: its limits, and how long its throttling
    /// lasts when the answer does not say.
    pub fn for_provider(kind: ProviderKind) -> Timing {
        let d = kind.defaults();
        Timing {
            rate_limit: d.rate.0,
            rate_period: d.rate.1,
            burst: d.burst,
            throttle_backoff: d.throttle_backoff,
            ..Timing::default()
        }
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
            fallback_after: Duration::from_secs(600),
            request_timeout: Duration::from_secs(10),
            retention: Duration::from_secs(7 * 86_400),
            max_pending: 1_000_000,
            burst: None,
        }
    }
}

// ---- the tables as written ------------------------------------------------------------

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTiming {
    pub(super) window: Option<String>,
    pub(super) rate_limit: Option<i64>,
    pub(super) rate_period: Option<String>,
    pub(super) retry_initial_backoff: Option<String>,
    pub(super) retry_max_backoff: Option<String>,
    pub(super) throttle_backoff: Option<String>,
    pub(super) blocked_probe: Option<String>,
    pub(super) fallback_after: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) retention: Option<String>,
    pub(super) max_pending: Option<i64>,
    pub(super) burst_limit: Option<i64>,
    pub(super) burst_period: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) title_template: Option<String>,
    pub(super) body_template: Option<String>,
    pub(super) title_template_file: Option<String>,
    pub(super) body_template_file: Option<String>,
    pub(super) msgtype: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRobot {
    pub(super) provider: Option<String>,
    pub(super) webhook: Option<String>,
    pub(super) webhook_file: Option<String>,
    pub(super) secret: Option<String>,
    pub(super) secret_file: Option<String>,
    #[serde(default)]
    pub(super) keywords: Vec<String>,
    #[serde(default)]
    pub(super) mention_mobiles: Vec<String>,
    #[serde(default)]
    pub(super) mention_user_ids: Vec<String>,
    #[serde(default)]
    pub(super) mention_all: bool,
    /// Whether a front-door message that mentions everyone makes the digest do so.
    pub(super) honor_at_all: Option<bool>,
    /// Front door: refuse unsigned messages when the robot has a secret (default true).
    pub(super) require_sign: Option<bool>,
    /// Front door: the token senders use instead of the robot's own.
    pub(super) ingress_token: Option<String>,
    /// Front door: the severity of a message no rule matches.
    pub(super) ingress_severity: Option<String>,
    /// Front door: `[[robots.X.ingress_rules]]`.
    pub(super) ingress_rules: Option<Vec<super::ingress::RawRule>>,
    pub(super) mention_min_severity: Option<String>,
    /// A webhook robot's: sent with every request.
    pub(super) headers: Option<BTreeMap<String, String>>,
    /// A webhook robot's: the largest request body its receiver takes.
    pub(super) max_bytes: Option<super::server::RawSize>,
    /// `"5000/month"`, `"700/day"`, `"5/2s"` ([`crate::quota::Quota::parse`]).
    pub(super) quota: Option<String>,
    /// The robot or pool that stands in while the quota is spent or the robot refuses us.
    pub(super) fallback: Option<String>,
    // The [defaults] keys, spelled out: serde cannot combine `flatten` with
    // `deny_unknown_fields`, and unknown keys must be rejected with their position.
    pub(super) window: Option<String>,
    pub(super) rate_limit: Option<i64>,
    pub(super) rate_period: Option<String>,
    pub(super) retry_initial_backoff: Option<String>,
    pub(super) retry_max_backoff: Option<String>,
    pub(super) throttle_backoff: Option<String>,
    pub(super) blocked_probe: Option<String>,
    pub(super) fallback_after: Option<String>,
    pub(super) request_timeout: Option<String>,
    pub(super) retention: Option<String>,
    pub(super) max_pending: Option<i64>,
    pub(super) burst_limit: Option<i64>,
    pub(super) burst_period: Option<String>,
    pub(super) timezone: Option<String>,
    pub(super) title_template: Option<String>,
    pub(super) body_template: Option<String>,
    pub(super) title_template_file: Option<String>,
    pub(super) body_template_file: Option<String>,
    pub(super) msgtype: Option<String>,
}

impl RawRobot {
    pub(super) fn timing(&self) -> RawTiming {
        RawTiming {
            window: self.window.clone(),
            rate_limit: self.rate_limit,
            rate_period: self.rate_period.clone(),
            retry_initial_backoff: self.retry_initial_backoff.clone(),
            retry_max_backoff: self.retry_max_backoff.clone(),
            throttle_backoff: self.throttle_backoff.clone(),
            blocked_probe: self.blocked_probe.clone(),
            fallback_after: self.fallback_after.clone(),
            request_timeout: self.request_timeout.clone(),
            retention: self.retention.clone(),
            max_pending: self.max_pending,
            burst_limit: self.burst_limit,
            burst_period: self.burst_period.clone(),
            timezone: self.timezone.clone(),
            title_template: self.title_template.clone(),
            body_template: self.body_template.clone(),
            title_template_file: self.title_template_file.clone(),
            body_template_file: self.body_template_file.clone(),
            msgtype: self.msgtype.clone(),
        }
    }
}

/// A robot's platform's check of its `msgtype` (key, value); given `None`, its default.
pub(super) type MsgTypeCheck<'a> = &'a dyn Fn(Option<(&str, &str)>) -> Result<MsgType, String>;

/// The robot's `look`: each key from the robot's table, else from `[defaults]`.
pub(super) fn look(
    msgtype: MsgTypeCheck,
    defaults: &RawTiming,
    robot: &RawTiming,
    section: &str,
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
    // `[defaults]` serves every platform: a msgtype from there that this robot's platform does
    // not take leaves it its platform's default; the robot's own is checked strictly.
    let msgtype = match pick("msgtype", &robot.msgtype, &defaults.msgtype)? {
        None => msgtype(None).map_err(fail)?,
        Some((key, m)) if key.starts_with("defaults.") => match msgtype(Some((&key, &m))) {
            Ok(t) => t,
            Err(_) => msgtype(None).map_err(fail)?,
        },
        Some((key, m)) => msgtype(Some((&key, &m))).map_err(fail)?,
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
        let t = crate::digest::template::Templates::compile(
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

pub(super) fn timing(
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
        fallback_after: dur("fallback_after", &raw.fallback_after, base.fallback_after)?,
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
        burst: match (raw.burst_limit, &raw.burst_period, base.burst) {
            (None, None, b) => b,
            (Some(n), _, _) if !(1..=10_000).contains(&n) => {
                return Err(fail(format!(
                    "{section}.burst_limit: {n} is out of range; expected 1 to 10000 requests per burst_period"
                )));
            }
            (Some(n), Some(p), _) => Some((
                n as u32,
                dur("burst_period", &Some(p.clone()), base.rate_period)?,
            )),
            (Some(n), None, Some((_, p))) => Some((n as u32, p)),
            (None, Some(p), Some((n, _))) => {
                Some((n, dur("burst_period", &Some(p.clone()), base.rate_period)?))
            }
            (Some(_), None, None) | (None, Some(_), None) => {
                return Err(fail(format!(
                    "{section}: burst_limit and burst_period go together (this robot has no burst window to adjust)"
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
        ("fallback_after", t.fallback_after),
        ("request_timeout", t.request_timeout),
    ];
    for (k, d) in positive {
        if d < Duration::from_millis(10) {
            return Err(fail(format!("{section}.{k}: must be at least 10ms")));
        }
    }
    if let Some((_, p)) = t.burst
        && (p < Duration::from_millis(10) || p >= t.rate_period)
    {
        return Err(fail(format!(
            "{section}.burst_period: {} must be at least 10ms and shorter than rate_period {}",
            humantime::format_duration(p),
            humantime::format_duration(t.rate_period)
        )));
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
