//! The chat platforms `sluice demo --platforms` can simulate, and each one's published rules
//! (ROBOTS.md §2, §4–6) as the simulator enforces them.
//!
//! The rules here are written from the platforms' documents, not read from sluice's
//! [`ProviderKind::defaults`]: the demo configures sluice with its defaults and lets the
//! simulator hold it to the documents, so a default that drifted from a platform's limit would
//! show as a throttle.

use std::time::Duration;

use super::sim::{Limits, Window};
use crate::provider::ProviderKind;

const SECOND: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Platform {
    DingTalk,
    Feishu,
    WeCom,
    Slack,
}

impl Platform {
    pub const ALL: [Platform; 4] = [
        Platform::DingTalk,
        Platform::Feishu,
        Platform::WeCom,
        Platform::Slack,
    ];

    /// As `--platforms` and a robot's `provider =` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Platform::DingTalk => "dingtalk",
            Platform::Feishu => "feishu",
            Platform::WeCom => "wecom",
            Platform::Slack => "slack",
        }
    }

    pub fn kind(self) -> ProviderKind {
        match self {
            Platform::DingTalk => ProviderKind::DingTalk,
            Platform::Feishu => ProviderKind::Feishu,
            Platform::WeCom => ProviderKind::WeCom,
            Platform::Slack => ProviderKind::Slack,
        }
    }

    /// The platform's limits in real time: DingTalk 20 a minute and a 10-minute mute after a
    /// breach; Feishu 100 a minute and 5 a second; WeCom 20 a minute; Slack one a second. Only
    /// DingTalk documents a mute; the others refuse while a window is full.
    pub fn limits(self) -> Limits {
        let (windows, lockout) = match self {
            Platform::DingTalk => (vec![Window::new(20, MINUTE)], Some(MINUTE * 10)),
            Platform::Feishu => (vec![Window::new(100, MINUTE), Window::new(5, SECOND)], None),
            Platform::WeCom => (vec![Window::new(20, MINUTE)], None),
            Platform::Slack => (vec![Window::new(1, SECOND)], None),
        };
        Limits { windows, lockout }
    }

    /// The message form the demo's robot sends, as the summary names it.
    pub fn form(self) -> &'static str {
        match self {
            Platform::DingTalk => "markdown",
            Platform::Feishu => "post",
            Platform::WeCom => "markdown",
            Platform::Slack => "mrkdwn text",
        }
    }

    /// What the platform answers a request over its limit.
    pub fn throttle_answer(self) -> &'static str {
        match self {
            Platform::DingTalk => "130101",
            Platform::Feishu => "11232",
            Platform::WeCom => "45009",
            Platform::Slack => "HTTP 429",
        }
    }

    /// Whether its robots sign requests with a secret (DingTalk's 加签, Feishu's 签名校验);
    /// WeCom's key and Slack's URL are their only credentials.
    pub fn signs(self) -> bool {
        matches!(self, Platform::DingTalk | Platform::Feishu)
    }
}

/// The accepted values, for messages: `dingtalk, feishu, wecom, slack`.
fn accepted() -> String {
    Platform::ALL.map(Platform::name).join(", ")
}

/// `--platforms`: a comma-separated list of distinct platforms, in the order given. A platform
/// named twice is refused rather than merged: it would more likely be a typo for another one.
pub fn parse_platforms(s: &str) -> Result<Vec<Platform>, String> {
    let mut list = Vec::new();
    for word in s.split(',').map(str::trim) {
        let found = Platform::ALL
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(word));
        match found {
            None if word.is_empty() => {
                return Err(format!(
                    "an empty platform name in {s:?}; expected a comma-separated list of {}",
                    accepted()
                ));
            }
            None => {
                return Err(format!(
                    "unknown platform {word:?}; expected a comma-separated list of {}",
                    accepted()
                ));
            }
            Some(p) if list.contains(&p) => {
                return Err(format!(
                    "{} is named twice; name each platform once (from {})",
                    p.name(),
                    accepted()
                ));
            }
            Some(p) => list.push(p),
        }
    }
    Ok(list)
}

/// `period` in words, for "20/20 a minute": `minute`, `second`, else humantime's.
pub fn per(period: Duration) -> String {
    match period.as_secs() {
        1 => "second".into(),
        60 => "minute".into(),
        _ => humantime::format_duration(period).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platforms_are_parsed_in_order_and_each_once() {
        assert_eq!(parse_platforms("dingtalk"), Ok(vec![Platform::DingTalk]));
        assert_eq!(
            parse_platforms("slack, WeCom,feishu,dingtalk"),
            Ok(vec![
                Platform::Slack,
                Platform::WeCom,
                Platform::Feishu,
                Platform::DingTalk
            ])
        );
        assert_eq!(
            parse_platforms("teams").unwrap_err(),
            "unknown platform \"teams\"; expected a comma-separated list of dingtalk, feishu, wecom, slack"
        );
        assert!(
            parse_platforms("feishu,,slack")
                .unwrap_err()
                .starts_with("an empty platform name in \"feishu,,slack\"")
        );
        assert!(parse_platforms("").is_err());
        assert_eq!(
            parse_platforms("feishu,slack,feishu").unwrap_err(),
            "feishu is named twice; name each platform once (from dingtalk, feishu, wecom, slack)"
        );
    }

    #[test]
    fn the_rules_are_the_documents_and_sluice_s_defaults_keep_within_them() {
        for p in Platform::ALL {
            let rules = p.limits();
            let d = p.kind().defaults();
            // sluice's own window is no looser than the platform's first one.
            let main = rules.windows[0];
            assert_eq!(
                (d.rate.0 as usize, d.rate.1),
                (main.limit, main.period),
                "{p:?}"
            );
            let burst = rules.windows.get(1).map(|w| (w.limit as u32, w.period));
            assert_eq!(d.burst, burst, "{p:?}");
        }
        assert_eq!(per(Duration::from_secs(60)), "minute");
        assert_eq!(per(Duration::from_secs(1)), "second");
    }
}
