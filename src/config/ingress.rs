//! A robot's front-door keys (`require_sign`, `ingress_token`, `ingress_severity`,
//! `ingress_rules`): how sluice takes in messages sent to it on the robot platform's own webhook
//! path ([`crate::frontdoor`]). Only DingTalk, Feishu and WeCom robots have a front door.

use std::fmt;

use super::*;

/// How a robot's front door checks and reads what senders post to it.
#[derive(Clone)]
pub struct Ingress {
    /// Refuse a message without a valid sign when the robot has a secret (default true).
    pub require_sign: bool,
    /// `ingress_token`: when set, the only token that selects this robot at its front door
    /// (the real webhook token no longer does). Never printed.
    pub token: Option<String>,
    /// The severity of a message no rule matches (default warning).
    pub severity: Severity,
    /// `[[robots.X.ingress_rules]]`, first match on the title wins.
    pub rules: Vec<Rule>,
}

impl Default for Ingress {
    fn default() -> Ingress {
        Ingress {
            require_sign: true,
            token: None,
            severity: Severity::Warning,
            rules: Vec::new(),
        }
    }
}

impl Ingress {
    /// Whether `other` would take messages in exactly the same way.
    pub fn same_as(&self, other: &Ingress) -> bool {
        self.require_sign == other.require_sign
            && self.token == other.token
            && self.severity == other.severity
            && self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| a.pattern.as_str() == b.pattern.as_str() && a.then == b.then)
    }
}

impl fmt::Debug for Ingress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ingress")
            .field("require_sign", &self.require_sign)
            .field("token", &self.token.as_ref().map(|_| "***"))
            .field("severity", &self.severity)
            .field("rules", &self.rules)
            .finish()
    }
}

/// One severity rule: a title that `pattern` matches gets `then`.
#[derive(Debug, Clone)]
pub struct Rule {
    pub pattern: regex::Regex,
    pub then: RuleThen,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleThen {
    Severity(Severity),
    /// The message says the condition is over (`[RESOLVED]`, `[UP]`, 成功): the alert is
    /// resolved, and what the pattern matched is left out of its fingerprint.
    Resolved,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    #[serde(rename = "match")]
    pattern: Option<String>,
    severity: Option<String>,
    resolved: Option<bool>,
}

/// The robot's [`Ingress`] from its table. `section` is `robots.NAME`.
pub(super) fn ingress(
    section: &str,
    provider: ProviderKind,
    has_secret: bool,
    r: &RawRobot,
    expand: &dyn Fn(&str, &str) -> Result<String, ConfigError>,
    fail: &dyn Fn(String) -> ConfigError,
) -> Result<Ingress, ConfigError> {
    let given: Vec<&str> = [
        ("require_sign", r.require_sign.is_some()),
        ("ingress_token", r.ingress_token.is_some()),
        ("ingress_severity", r.ingress_severity.is_some()),
        ("ingress_rules", r.ingress_rules.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect();
    let has_door = matches!(
        provider,
        ProviderKind::DingTalk | ProviderKind::Feishu | ProviderKind::WeCom
    );
    if !has_door {
        if let Some(k) = given.first() {
            return Err(fail(format!(
                "{section}.{k}: front-door keys are for dingtalk, feishu and wecom robots; a {} robot has no front door",
                provider.as_str()
            )));
        }
        return Ok(Ingress::default());
    }
    if provider == ProviderKind::WeCom && r.require_sign.is_some() {
        return Err(fail(format!(
            "{section}.require_sign: WeCom robots have no signature; their front door checks the key only"
        )));
    }
    if r.require_sign == Some(true) && !has_secret {
        return Err(fail(format!(
            "{section}.require_sign: true, but the robot has no secret to check a sign with; set secret (or drop require_sign)"
        )));
    }
    let token = match &r.ingress_token {
        None => None,
        Some(t) => {
            let key = format!("{section}.ingress_token");
            let t = expand(&key, t)?;
            if !(8..=256).contains(&t.len())
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b))
            {
                return Err(fail(format!(
                    "{key}: expected 8 to 256 letters, digits, '-', '_', '.' or '~' (it goes into a URL)"
                )));
            }
            Some(t)
        }
    };
    let severity = match &r.ingress_severity {
        None => Severity::Warning,
        Some(s) => Severity::parse(s).ok_or_else(|| {
            fail(format!(
                "{section}.ingress_severity: unknown severity {s:?}; expected critical, error, warning or info"
            ))
        })?,
    };
    let mut rules = Vec::new();
    for (i, raw) in r.ingress_rules.iter().flatten().enumerate() {
        let at = format!("{section}.ingress_rules[{}]", i + 1);
        let Some(pattern) = &raw.pattern else {
            return Err(fail(format!(
                "{at}.match: missing; expected a regex on the title, e.g. match = '^\\[FIRING:\\d+\\]'"
            )));
        };
        let pattern = regex::Regex::new(pattern).map_err(|e| {
            fail(format!(
                "{at}.match: invalid regex {pattern:?}: {}",
                e.to_string().replace('\n', " ")
            ))
        })?;
        let then = match (&raw.severity, raw.resolved) {
            (Some(_), Some(true)) => {
                return Err(fail(format!(
                    "{at}: give severity or resolved = true, not both"
                )));
            }
            (Some(s), _) => RuleThen::Severity(Severity::parse(s).ok_or_else(|| {
                fail(format!(
                    "{at}.severity: unknown severity {s:?}; expected critical, error, warning or info"
                ))
            })?),
            (None, Some(true)) => RuleThen::Resolved,
            (None, _) => {
                return Err(fail(format!(
                    "{at}: says nothing to do; expected severity = \"critical|error|warning|info\" or resolved = true"
                )));
            }
        };
        rules.push(Rule { pattern, then });
    }
    Ok(Ingress {
        require_sign: r.require_sign.unwrap_or(has_secret),
        token,
        severity,
        rules,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(robot: &str) -> Result<Config, String> {
        let text = format!("[robots.x]\n{robot}\n");
        Config::parse(&text, "t", &|v| {
            (v == "DOOR").then(|| "door-token-1".to_string())
        })
        .map_err(|e| e.to_string())
    }

    const DD: &str = "webhook = \"https://oapi.dingtalk.com/robot/send?access_token=abc\"";

    #[test]
    fn the_defaults_follow_the_secret() {
        let c = parse(DD).unwrap();
        let i = &c.robots["x"].ingress;
        assert!(!i.require_sign && i.token.is_none() && i.rules.is_empty());
        assert_eq!(i.severity, Severity::Warning);
        let c = parse(&format!("{DD}\nsecret = \"SECx\"")).unwrap();
        assert!(c.robots["x"].ingress.require_sign);
    }

    #[test]
    fn keys_rules_and_tokens_are_read() {
        let c = parse(&format!(
            "{DD}\nsecret = \"SECx\"\nrequire_sign = false\ningress_token = \"${{DOOR}}\"\ningress_severity = \"error\"\n\
             [[robots.x.ingress_rules]]\nmatch = '^\\[UP\\]'\nresolved = true\n\
             [[robots.x.ingress_rules]]\nmatch = '^\\[DOWN\\]'\nseverity = \"critical\"\n"
        ))
        .unwrap();
        let i = &c.robots["x"].ingress;
        assert!(!i.require_sign);
        assert_eq!(i.token.as_deref(), Some("door-token-1"));
        assert_eq!(i.severity, Severity::Error);
        assert_eq!(i.rules[0].then, RuleThen::Resolved);
        assert_eq!(i.rules[1].then, RuleThen::Severity(Severity::Critical));
        let printed = format!("{:?}", c.robots["x"]);
        assert!(!printed.contains("door-token-1"), "{printed}");
    }

    #[test]
    fn bad_keys_name_the_key_and_what_was_expected() {
        let cases = [
            (
                format!("{DD}\n[[robots.x.ingress_rules]]\nmatch = '(['\nseverity = \"error\""),
                "robots.x.ingress_rules[1].match: invalid regex",
            ),
            (
                format!("{DD}\n[[robots.x.ingress_rules]]\nmatch = 'a'"),
                "robots.x.ingress_rules[1]: says nothing to do",
            ),
            (
                format!("{DD}\n[[robots.x.ingress_rules]]\nmatch = 'a'\nseverity = \"bad\""),
                "robots.x.ingress_rules[1].severity: unknown severity \"bad\"",
            ),
            (
                format!("{DD}\n[[robots.x.ingress_rules]]\nseverity = \"info\""),
                "robots.x.ingress_rules[1].match: missing",
            ),
            (
                format!("{DD}\ningress_severity = \"loud\""),
                "robots.x.ingress_severity: unknown severity",
            ),
            (format!("{DD}\ningress_token = \"a b\""), "robots.x.ingress_token: expected 8 to 256"),
            (format!("{DD}\nrequire_sign = true"), "robots.x.require_sign: true, but the robot has no secret"),
            (
                "provider = \"console\"\ningress_severity = \"info\"".to_string(),
                "robots.x.ingress_severity: front-door keys are for dingtalk, feishu and wecom robots",
            ),
            (
                "provider = \"wecom\"\nwebhook = \"https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=k\"\nrequire_sign = false".to_string(),
                "robots.x.require_sign: WeCom robots have no signature",
            ),
        ];
        for (robot, want) in cases {
            let e = parse(&robot).unwrap_err();
            assert!(e.contains(want), "{robot}\n→ {e}\nwanted {want}");
        }
    }
}
