//! The TOML file, turned into a validated [`Config`].
//!
//! Every check lives here, so the rest of sluice can trust what it is given. Errors name the file,
//! the key (`robots.ops.window`) and what was expected. `${VAR}` is expanded from the environment
//! in every string value; an unset variable is an error that names it and the key that used it.

use std::collections::BTreeMap;
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

#[derive(Debug, thiserror::Error)]
#[error("{origin}: {message}")]
pub struct ConfigError {
    /// The file, with `:line:column` when known, or "built-in default".
    pub origin: String,
    pub message: String,
}

mod cluster;
mod ingress;
mod pool;
mod robot;
mod server;

pub use crate::mention::{Mentions, is_mobile, is_person};
pub use crate::provider::MsgType;
pub use crate::provider::{ProviderKind, redact_url};
pub use cluster::{Cluster, NatsAuth};
pub use ingress::{Ingress, Rule, RuleThen};
pub use pool::{POOL_MEMBERS, Pool};
pub use robot::{Look, Robot, Timing};
pub use server::{MAX_BODY_LIMIT, Server};

use robot::{RawRobot, RawTiming, look, timing};

/// What every section's parser needs: where the text came from (for errors and relative paths)
/// and how to look up `${VAR}`s.
pub(crate) struct Parsing<'a> {
    origin: &'a str,
    base_dir: &'a Path,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Parsing<'_> {
    fn fail(&self, message: String) -> ConfigError {
        ConfigError {
            origin: self.origin.to_string(),
            message,
        }
    }

    /// `v` with its `${VAR}`s replaced; an unset variable is an error that names `key`.
    fn expand(&self, key: &str, v: &str) -> Result<String, ConfigError> {
        expand_vars(v, self.env)
            .map_err(|var| self.fail(format!("{key}: environment variable `{var}` is not set")))
    }

    fn expand_opt(&self, key: &str, v: &Option<String>) -> Result<Option<String>, ConfigError> {
        v.as_deref().map(|v| self.expand(key, v)).transpose()
    }
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
    /// `[pools.NAME]`: robots of one group acting as one destination (see [`Pool`]).
    pub pools: BTreeMap<String, Pool>,
    /// Where alerts that name no robot go.
    pub routes: crate::route::Routes,
    /// `[owners]`: label → value → people to @ (mobiles or user ids).
    pub owners: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    /// `[alertmanager] severity_map`: extra `severity` label values (lowercase) and their meaning.
    pub severity_map: BTreeMap<String, Severity>,
    /// `[cluster]`: the NATS JetStream servers this node shares its queue and budgets through;
    /// `None`: one node on the embedded store.
    pub cluster: Option<Cluster>,
}

// ---- the file as written -------------------------------------------------------------------

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    default_robot: Option<String>,
    #[serde(default)]
    server: server::RawServer,
    #[serde(default)]
    defaults: RawTiming,
    #[serde(default)]
    robots: BTreeMap<String, RawRobot>,
    #[serde(default)]
    pools: BTreeMap<String, pool::RawPool>,
    #[serde(default)]
    routes: Vec<crate::route::RawRoute>,
    #[serde(default)]
    owners: BTreeMap<String, BTreeMap<String, Vec<String>>>,
    #[serde(default)]
    alertmanager: RawAlertmanager,
    cluster: Option<cluster::RawCluster>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAlertmanager {
    #[serde(default)]
    severity_map: BTreeMap<String, String>,
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
        if self.cluster != next.cluster {
            changed.push("cluster");
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
        let p = Parsing {
            origin,
            base_dir,
            env,
        };
        let fail = |message: String| p.fail(message);
        let expand = |key: &str, v: &str| p.expand(key, v);
        let expand_opt = |key: &str, v: &Option<String>| p.expand_opt(key, v);

        let server = server::parse(&p, &raw.server)?;

        // `[defaults]` is checked once on its own, so that its errors come first.
        timing(
            &Timing::default(),
            &raw.defaults,
            "defaults",
            &expand,
            &fail,
        )?;

        let mut robots = BTreeMap::new();
        for (name, r) in &raw.robots {
            let at = |k: &str| format!("robots.{name}.{k}");
            if !pool::is_name(name) {
                return Err(fail(format!(
                    "robots.{name}: a robot name is 1 to 64 letters, digits, '_' or '-'"
                )));
            }
            let provider = match expand_opt(&at("provider"), &r.provider)?.as_deref() {
                None => ProviderKind::DingTalk,
                Some(kind) => ProviderKind::parse(kind).ok_or_else(|| {
                    fail(format!(
                        "{}: unknown provider {kind:?}; expected {}",
                        at("provider"),
                        ProviderKind::expected()
                    ))
                })?,
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
            crate::provider::check(
                provider,
                &format!("robots.{name}"),
                &crate::provider::Endpoint {
                    webhook: webhook.as_deref(),
                    secret: secret.as_deref(),
                    keywords: &keywords,
                },
            )
            .map_err(&fail)?;
            let mut mentions = Mentions {
                all: r.mention_all,
                honor_at_all: r.honor_at_all.unwrap_or(true),
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
                        "{}[{i}]: {u:?} is not a user id (1 to 64 characters, no spaces)",
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
            // The platform's limits, then `[defaults]`, then the robot's own keys.
            let base = timing(
                &Timing::for_provider(provider),
                &raw.defaults,
                "defaults",
                &expand,
                &fail,
            )?;
            let timing = timing(
                &base,
                &r.timing(),
                &format!("robots.{name}"),
                &expand,
                &fail,
            )?;
            // A webhook robot's `body_template` writes its request body, not the digest, and
            // `[defaults]`' digest templates do not apply to it.
            let hook = if provider == ProviderKind::Webhook {
                Some(std::sync::Arc::new(webhook_spec(&p, name, r, base_dir)?))
            } else {
                if r.headers.is_some() || r.max_bytes.is_some() {
                    return Err(fail(format!(
                        "robots.{name}: headers and max_bytes are for provider \"webhook\" robots; a {} robot's requests are the platform's",
                        provider.as_str()
                    )));
                }
                None
            };
            let (robot_look, defaults_look) = if hook.is_some() {
                let strip = |t: RawTiming| RawTiming {
                    title_template: None,
                    body_template: None,
                    title_template_file: None,
                    body_template_file: None,
                    ..t
                };
                let own = r.timing();
                if own.title_template.is_some() || own.title_template_file.is_some() {
                    return Err(fail(format!(
                        "robots.{name}.title_template: a webhook robot's title is the built-in one; its body_template writes the whole request body"
                    )));
                }
                (strip(own), strip(raw.defaults.clone()))
            } else {
                (r.timing(), raw.defaults.clone())
            };
            let has_public_url = server.public_url.is_some();
            let msgtype = |given: Option<(&str, &str)>| match given {
                None => Ok(provider.default_msgtype()),
                Some((key, value)) => provider.msgtype(key, value, has_public_url),
            };
            let look = look(
                &msgtype,
                &defaults_look,
                &robot_look,
                &format!("robots.{name}"),
                base_dir,
                &expand,
                &fail,
            )?;
            crate::provider::check_mentions(
                provider,
                &format!("robots.{name}"),
                look.msgtype,
                &mentions,
            )
            .map_err(&fail)?;
            let ingress = ingress::ingress(
                &format!("robots.{name}"),
                provider,
                secret.is_some(),
                r,
                &expand,
                &fail,
            )?;
            if look.templates.is_some() && !provider.takes_templates() {
                return Err(fail(format!(
                    "robots.{name}: custom templates (title_template, body_template and their _file forms, here or in [defaults]) are for DingTalk and console robots only; a {} robot uses the built-in format",
                    provider.as_str()
                )));
            }
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
                    hook,
                    ingress,
                    quota: match &r.quota {
                        None => None,
                        Some(q) => {
                            let key = format!("robots.{name}.quota");
                            Some(
                                crate::quota::Quota::parse(&expand(&key, q)?)
                                    .map_err(|e| fail(format!("{key}: {e}")))?,
                            )
                        }
                    },
                    fallback: match &r.fallback {
                        None if r.fallback_after.is_some() => {
                            return Err(fail(format!(
                                "robots.{name}.fallback_after: says when the queue goes to the fallback, and robots.{name} has none; set robots.{name}.fallback too"
                            )));
                        }
                        None => None,
                        Some(f) => Some(expand(&format!("robots.{name}.fallback"), f)?),
                    },
                },
            );
        }
        if robots.is_empty() {
            return Err(fail(
                "no robots configured; add a [robots.NAME] table (see config.toml.example)".into(),
            ));
        }

        let pools = pool::pools(&raw.pools, &robots).map_err(fail)?;
        check_fallbacks(&robots, &pools).map_err(fail)?;
        let names: Vec<&str> = robots
            .keys()
            .chain(pools.keys())
            .map(String::as_str)
            .collect();
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
                            "{key}: {p:?} is neither a mobile number nor a user id"
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

        let cluster = match &raw.cluster {
            None => None,
            Some(c) => {
                let timeouts: Vec<(String, Duration)> = robots
                    .values()
                    .map(|r| (r.name.clone(), r.timing.request_timeout))
                    .collect();
                Some(cluster::parse(&p, c, &timeouts)?)
            }
        };

        Ok(Config {
            routes,
            owners,
            severity_map,
            cluster,
            origin: origin.to_string(),
            path: None,
            server,
            robots,
            pools,
        })
    }

    /// Names of the configured robots (and pools, if any), for error messages.
    pub fn robot_names(&self) -> String {
        let robots = self.robots.keys().cloned().collect::<Vec<_>>().join(", ");
        if self.pools.is_empty() {
            return robots;
        }
        let pools = self.pools.keys().cloned().collect::<Vec<_>>().join(", ");
        format!("{robots}; pools: {pools}")
    }
}

/// Reads a file holding a secret (a token, a webhook, a signing secret). The message names the
/// key and the path, never the content.
fn read_secret_file(key: &str, path: &str, base_dir: &Path) -> Result<String, String> {
    let full = base_dir.join(path);
    std::fs::read_to_string(&full)
        .map_err(|e| format!("{key}: cannot read {}: {e}", full.display()))
}

/// A webhook robot's headers, body template (its own table's `body_template` or
/// `body_template_file`, else the built-in body) and `max_bytes`.
fn webhook_spec(
    p: &Parsing,
    name: &str,
    r: &RawRobot,
    base_dir: &Path,
) -> Result<crate::provider::webhook::Spec, ConfigError> {
    use crate::provider::webhook::{self, Payload};
    let at = |k: &str| format!("robots.{name}.{k}");
    let mut headers = Vec::new();
    for (k, v) in r.headers.iter().flatten() {
        let key = format!("{}.{k}", at("headers"));
        let value = p.expand(&key, v)?;
        headers.push(webhook::header(&at("headers"), k, &value).map_err(|m| p.fail(m))?);
    }
    let payload = match (&r.body_template, &r.body_template_file) {
        (Some(_), Some(_)) => {
            return Err(p.fail(format!(
                "{} and {}: give the template inline or as a file, not both",
                at("body_template"),
                at("body_template_file")
            )));
        }
        (Some(t), None) => Payload::compile(&at("body_template"), t),
        (None, Some(f)) => {
            let full = base_dir.join(f);
            let text = std::fs::read_to_string(&full).map_err(|e| {
                p.fail(format!(
                    "{}: cannot read {}: {e}",
                    at("body_template_file"),
                    full.display()
                ))
            })?;
            Payload::compile(&full.display().to_string(), &text)
        }
        (None, None) => Payload::compile("the built-in body", webhook::BUILTIN),
    }
    .map_err(|m| p.fail(m))?;
    let max_bytes = match &r.max_bytes {
        None => webhook::DEFAULT_MAX_BYTES as u64,
        Some(server::RawSize::Bytes(n)) => *n,
        Some(server::RawSize::Text(t)) => parse_size(&p.expand(&at("max_bytes"), t)?)
            .map_err(|m| p.fail(format!("{}: {m}", at("max_bytes"))))?,
    };
    let range = webhook::MIN_MAX_BYTES as u64..=webhook::MAX_MAX_BYTES as u64;
    if !range.contains(&max_bytes) {
        return Err(p.fail(format!(
            "{}: {max_bytes} is out of range; expected 2KiB to 16MiB",
            at("max_bytes")
        )));
    }
    Ok(webhook::Spec {
        headers,
        payload,
        max_bytes: max_bytes as usize,
    })
}

/// `"30s"`, `"1m 30s"`, `"250ms"`, `"7d"` (humantime's syntax).
/// A robot's `quota` and `fallback`: a pool member has no task of its own to count them; a
/// fallback is a robot in no pool, or a pool, other than the robot itself, and following
/// fallbacks never comes back to where it started. A fallback stands in while the robot's
/// quota is spent and while it refuses our messages, so it needs no quota.
fn check_fallbacks(
    robots: &BTreeMap<String, Robot>,
    pools: &BTreeMap<String, Pool>,
) -> Result<(), String> {
    let pool_of = |robot: &str| {
        pools
            .iter()
            .find(|(_, p)| p.members.iter().any(|m| m == robot))
            .map(|(n, _)| n.clone())
    };
    for (name, r) in robots {
        if let Some(pool) = pool_of(name)
            && (r.quota.is_some() || r.fallback.is_some())
        {
            return Err(format!(
                "robots.{name}: quota and fallback are for robots in no pool; {name} is a member of pool {pool}"
            ));
        }
        let Some(to) = &r.fallback else { continue };
        let key = format!("robots.{name}.fallback");
        if to == name {
            return Err(format!("{key}: a robot cannot stand in for itself"));
        }
        if let Some(pool) = pool_of(to) {
            return Err(format!(
                "{key}: {to} is a member of pool {pool}; name the pool ({pool:?}) instead"
            ));
        }
        if !robots.contains_key(to) && !pools.contains_key(to) {
            let lanes: Vec<&str> = robots
                .keys()
                .filter(|n| pool_of(n).is_none())
                .chain(pools.keys())
                .map(String::as_str)
                .collect();
            return Err(format!(
                "{key}: unknown robot or pool {to:?}; expected one of: {}",
                lanes.join(", ")
            ));
        }
        // Follow the chain; a robot seen twice is a cycle.
        let mut seen = vec![name.as_str()];
        let mut at = to.as_str();
        while let Some(next) = robots.get(at).and_then(|r| r.fallback.as_deref()) {
            seen.push(at);
            if seen.contains(&next) {
                seen.push(next);
                return Err(format!(
                    "{key}: fallbacks go round in a cycle: {}",
                    seen.join(" → ")
                ));
            }
            at = next;
        }
    }
    Ok(())
}

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
                GOOD.replace("provider = \"console\"", "provider = \"teams\""),
                "robots.dq.provider: unknown provider \"teams\"",
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
                GOOD.replace("[server]", "[server]\nmax_connections = 0"),
                "server.max_connections: 0 is out of range; expected 1 to 1000000",
            ),
            (
                GOOD.replace("[server]", "[server]\nheader_timeout = \"1ms\""),
                "server.header_timeout: at least 10ms",
            ),
            (
                GOOD.replace("[server]", "[server]\nbody_timeout = \"later\""),
                "server.body_timeout: invalid duration",
            ),
            (
                GOOD.replace(
                    "[server]",
                    "[server]\nallowed_hosts = [\"https://sluice.internal:9780/\"]",
                ),
                "server.allowed_hosts[0]: \"https://sluice.internal:9780/\" is not a host name; expected a name or an IP address without scheme, port or path",
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

    /// A fallback must be another lane outside any pool, and following fallbacks never comes
    /// back; `fallback_after` needs a fallback; quotas and fallbacks are not for pool members.
    #[test]
    fn fallbacks_are_checked_with_what_was_expected() {
        let base = r#"
            [robots.a]
            provider = "console"
            [robots.b]
            provider = "console"
            [robots.m1]
            provider = "console"
            [robots.m2]
            provider = "console"
            [pools.team]
            robots = ["m1", "m2"]
        "#;
        let with = |robot: &str, keys: &str| {
            base.replace(
                &format!("[robots.{robot}]\n"),
                &format!("[robots.{robot}]\n{keys}\n"),
            )
        };
        // A fallback needs no quota: it also stands in for a robot that refuses us.
        let c = parse(&with("a", "fallback = \"b\"\nfallback_after = \"2m\"")).unwrap();
        assert_eq!(c.robots["a"].fallback.as_deref(), Some("b"));
        assert_eq!(
            c.robots["a"].timing.fallback_after,
            Duration::from_secs(120)
        );
        assert_eq!(
            c.robots["b"].timing.fallback_after,
            Duration::from_secs(600)
        );
        let c = parse(&with("a", "fallback = \"team\"")).unwrap();
        assert_eq!(c.robots["a"].fallback.as_deref(), Some("team"));
        let cases = [
            (
                with("a", "fallback = \"a\""),
                "robots.a.fallback: a robot cannot stand in for itself",
            ),
            (
                with("a", "fallback = \"m1\""),
                "robots.a.fallback: m1 is a member of pool team; name the pool (\"team\") instead",
            ),
            (
                with("a", "fallback = \"c\""),
                "robots.a.fallback: unknown robot or pool \"c\"; expected one of: a, b, team",
            ),
            (
                with("a", "fallback = \"b\"")
                    .replace("[robots.b]\n", "[robots.b]\nfallback = \"a\"\n"),
                "fallbacks go round in a cycle: a → b → a",
            ),
            (
                with("a", "fallback_after = \"5m\""),
                "robots.a.fallback_after: says when the queue goes to the fallback, and robots.a has none; set robots.a.fallback too",
            ),
            (
                with("a", "fallback = \"b\"\nfallback_after = \"1ms\""),
                "robots.a.fallback_after: must be at least 10ms",
            ),
            (
                with("m1", "quota = \"10/day\""),
                "robots.m1: quota and fallback are for robots in no pool; m1 is a member of pool team",
            ),
            (with("a", "quota = \"10/fortnight\""), "robots.a.quota: "),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "got {err:?}, want {want:?}");
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
            include_str!("../../config.toml.example"),
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

    /// The example's commented blocks for the other platforms are valid once uncommented, and a
    /// `[defaults]` msgtype a platform does not take leaves that platform's default.
    #[test]
    fn the_example_configs_other_platforms_are_valid() {
        let text = include_str!("../../config.toml.example");
        let start = text.find("# Other platforms").unwrap();
        let end = text.find("[robots.local]").unwrap();
        let block: String = text[start..end]
            .lines()
            .skip(1)
            .map(|l| l.strip_prefix("# ").or(l.strip_prefix('#')).unwrap_or(l))
            .map(|l| format!("{l}\n"))
            .collect();
        let full = format!("{}{block}{}", &text[..start], &text[end..]);
        let c = Config::parse(&full, "config.toml.example", &|_| Some("x".to_string())).unwrap();
        assert_eq!(c.robots["eng"].provider, ProviderKind::Slack);
        assert_eq!(c.robots["eng"].timing.rate_limit, 1);
        assert_eq!(c.robots["eng"].timing.rate_period, Duration::from_secs(1));
        assert_eq!(c.robots["eng"].look.msgtype, MsgType::Markdown);
        assert_eq!(c.robots["mm"].provider, ProviderKind::Webhook);
        assert_eq!(c.robots["mm"].hook.as_ref().unwrap().max_bytes, 16 << 10);
        // The robot's own msgtype is checked strictly.
        let own = full.replace(
            "provider = \"slack\"",
            "provider = \"slack\"\nmsgtype = \"markdown\"",
        );
        let e = Config::parse(&own, "x.toml", &|_| Some("x".to_string())).unwrap_err();
        assert!(
            e.to_string()
                .contains("robots.eng.msgtype: unknown msgtype \"markdown\" for a Slack robot"),
            "{e}"
        );
    }

    #[test]
    fn a_feishu_robot_gets_feishus_limits_and_mentions_people_by_id() {
        let base = "[robots.fs]\nprovider = \"feishu\"\nwebhook = \"https://open.feishu.cn/open-apis/bot/v2/hook/${OPS_TOKEN}\"\n";
        let c = parse(base).unwrap();
        let fs = &c.robots["fs"];
        assert_eq!(fs.provider, ProviderKind::Feishu);
        assert_eq!(fs.look.msgtype, MsgType::Post);
        let t = &fs.timing;
        assert_eq!(
            (t.rate_limit, t.rate_period),
            (100, Duration::from_secs(60))
        );
        assert_eq!(t.burst, Some((5, Duration::from_secs(1))));
        assert_eq!(t.throttle_backoff, Duration::from_secs(60));
        let dbg = format!("{fs:?}");
        assert!(!dbg.contains("tok123"), "{dbg}");
        assert!(dbg.contains("/open-apis/bot/v2/hook/***"), "{dbg}");

        let c = parse(&format!(
            "{base}msgtype = \"interactive\"\nmention_user_ids = [\"ou_7d8a6e6df7621556ce0d21922b676706\"]\nmention_all = true\n"
        ))
        .unwrap();
        assert_eq!(c.robots["fs"].look.msgtype, MsgType::Interactive);
        let cases = [
            (
                format!("{base}mention_mobiles = [\"13800000000\"]\n"),
                "robots.fs.mention_mobiles: a Feishu custom bot cannot mention people by mobile number; use mention_user_ids with their open ids (\"ou_…\") or user ids",
            ),
            (
                format!("{base}mention_user_ids = [\"<at>\"]\n"),
                "robots.fs.mention_user_ids[0]: \"<at>\" is not a Feishu open id or user id",
            ),
            (
                format!("{base}msgtype = \"actionCard\"\n"),
                "robots.fs.msgtype: unknown msgtype \"actionCard\" for a Feishu robot; expected \"post\" or \"interactive\"",
            ),
            (
                base.replace("/open-apis/bot/v2/hook/", "/robot/send?access_token="),
                "robots.fs.webhook: \"https://open.feishu.cn/robot/send?access_token=***\" is not a Feishu webhook",
            ),
            (
                format!("{base}body_template = \"x\"\n"),
                "robots.fs: custom templates",
            ),
        ];
        for (text, want) in cases {
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains(want), "got {err:?}, want {want:?}");
        }
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
    fn a_wecom_robot_has_its_platforms_defaults_and_refuses_what_wecom_cannot_do() {
        let base = "[robots.wx]\nprovider = \"wecom\"\nwebhook = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=${OPS_TOKEN}\"\n";
        let c = parse(&format!("{base}mention_user_ids = [\"zhangsan\"]\n")).unwrap();
        let wx = &c.robots["wx"];
        assert_eq!(wx.provider, ProviderKind::WeCom);
        assert_eq!(wx.look.msgtype, MsgType::Markdown);
        assert_eq!(
            (wx.timing.rate_limit, wx.timing.rate_period),
            (20, Duration::from_secs(60))
        );
        assert_eq!(wx.timing.throttle_backoff, Duration::from_secs(60));
        assert!(!format!("{wx:?}").contains("tok123"), "{wx:?}");
        let v2 = parse(&format!("{base}msgtype = \"markdown_v2\"\n")).unwrap();
        assert_eq!(v2.robots["wx"].look.msgtype, MsgType::MarkdownV2);
        let cases = [
            (
                "secret = \"SECx\"",
                "robots.wx.secret: WeCom group robots have no signing",
            ),
            (
                "keywords = [\"告警\"]",
                "robots.wx.keywords: WeCom group robots have no keyword security",
            ),
            (
                "msgtype = \"actionCard\"",
                "robots.wx.msgtype: unknown msgtype \"actionCard\" for a WeCom robot",
            ),
            (
                "mention_mobiles = [\"13800000000\"]",
                "robots.wx.mention_mobiles: WeCom notifies by mobile number only in text messages",
            ),
            (
                "mention_all = true",
                "robots.wx.mention_all: WeCom can @ everyone only in text messages",
            ),
            (
                "msgtype = \"markdown_v2\"\nmention_user_ids = [\"zhangsan\"]",
                "robots.wx.mention_user_ids: markdown_v2 messages cannot @ anyone",
            ),
            (
                "mention_user_ids = [\"_x\"]",
                "robots.wx.mention_user_ids[0]: \"_x\" is not a WeCom userid",
            ),
            (
                "body_template = \"x\"",
                "custom templates (title_template, body_template and their _file forms, here or in [defaults]) are for DingTalk and console robots only; a wecom robot",
            ),
        ];
        for (extra, want) in cases {
            let err = parse(&format!("{base}{extra}\n")).unwrap_err().to_string();
            assert!(err.contains(want), "got {err:?}, want {want:?}");
        }
        let err = parse(&base.replace("?key=", "?access_token="))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("robots.wx.webhook: \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?access_token=***\" is not a WeCom webhook"),
            "{err}"
        );
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
