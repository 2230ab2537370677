//! Whom a digest @-mentions: the robot's own list, the owners of the alerts' labels (`[owners]`),
//! an alert's own `owner_mobile` label, and whom a message taken in by a front door asked to
//! mention ([`crate::alert::Extra`]), when the digest goes to a robot of the platform it came
//! for (mobiles mean nothing to Feishu, and user ids differ per platform). DingTalk only notifies a person who is both in the
//! message's `at` object and written as `@<mobile>` / `@<userId>` in its text, so a digest carries
//! both, each person once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::alert::{Alert, Severity};

/// Whom a robot's digests @ (DingTalk shows an @ only if it is both in the `at` object and
/// written in the text).
#[derive(Debug, Clone, PartialEq)]
pub struct Mentions {
    pub mobiles: Vec<String>,
    pub user_ids: Vec<String>,
    pub all: bool,
    /// Only digests holding an alert at least this severe mention anyone (owners included).
    pub min_severity: Option<Severity>,
    /// Whether a message taken in by a front door that mentions everyone makes the digest
    /// mention everyone (`honor_at_all`, default true); some senders @all on every message.
    pub honor_at_all: bool,
}

impl Default for Mentions {
    fn default() -> Mentions {
        Mentions {
            mobiles: Vec::new(),
            user_ids: Vec::new(),
            all: false,
            min_severity: None,
            honor_at_all: true,
        }
    }
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

/// The people a digest mentions, decided when it is sealed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mention {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mobiles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

/// Most people one digest mentions; more would bury the message in @s.
pub const MAX_MENTIONS: usize = 50;

impl Mention {
    pub fn is_empty(&self) -> bool {
        self.mobiles.is_empty() && self.user_ids.is_empty() && !self.all
    }

    /// The line written into the text: `@13800000000 @alice`.
    pub fn line(&self) -> String {
        self.mobiles
            .iter()
            .chain(&self.user_ids)
            .map(|p| format!("@{p}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// DingTalk's `at` object.
    pub fn at_object(&self) -> serde_json::Value {
        serde_json::json!({
            "atMobiles": self.mobiles,
            "atUserIds": self.user_ids,
            "isAtAll": self.all,
        })
    }
}

/// Decides the mentions of a digest covering `alerts`, for a robot of `platform`
/// ([`crate::provider::ProviderKind::as_str`]): the union of everyone asked for, each once, at
/// most [`MAX_MENTIONS`]. An alert's front-door mentions count only on a robot of the platform
/// it came through; its @all only when the robot has `honor_at_all`.
pub fn mentions_for(
    robot: &Mentions,
    platform: &str,
    owners: &BTreeMap<String, BTreeMap<String, Vec<String>>>,
    alerts: &[Alert],
) -> Mention {
    if let Some(min) = robot.min_severity
        && !alerts.iter().any(|a| a.severity <= min)
    {
        return Mention::default();
    }
    let mut m = Mention {
        all: robot.all,
        ..Mention::default()
    };
    // A person in the list they belong to: a front door says which, the config is sorted by
    // the look of it (a numeric DingTalk user id stays a user id when a sender says so).
    let push = |person: &str, mobile: bool, m: &mut Mention| {
        if m.mobiles.len() + m.user_ids.len() >= MAX_MENTIONS {
            return;
        }
        let list = if mobile {
            &mut m.mobiles
        } else {
            &mut m.user_ids
        };
        if !list.iter().any(|p| p == person) {
            list.push(person.to_string());
        }
    };
    let add = |person: &str, m: &mut Mention| push(person, is_mobile(person), m);
    for p in &robot.mobiles {
        add(p, &mut m);
    }
    for p in &robot.user_ids {
        add(p, &mut m);
    }
    for a in alerts {
        if robot.min_severity.is_some_and(|min| a.severity > min) {
            continue;
        }
        for (label, value) in &a.labels {
            if let Some(people) = owners.get(label).and_then(|v| v.get(value)) {
                for p in people {
                    add(p, &mut m);
                }
            }
        }
        if let Some(mobile) = a.labels.get("owner_mobile")
            && is_mobile(mobile)
        {
            add(mobile, &mut m);
        }
        if let Some(x) = a.extra.as_deref().filter(|x| x.platform == platform) {
            for p in x.mobiles.iter().filter(|p| is_mobile(p)) {
                push(p, true, &mut m);
            }
            for p in x.user_ids.iter().filter(|p| is_person(p)) {
                push(p, false, &mut m);
            }
            m.all |= x.all && robot.honor_at_all;
        }
    }
    m
}

/// Writes the mention line into a rendered text, just above the footer (which stays last).
pub fn insert_line(text: &str, line: &str) -> String {
    match text.rfind('\n') {
        Some(i) => format!("{}\n{line}\n{}", &text[..i], &text[i..]),
        None => format!("{line}\n\n{text}"),
    }
}

/// The bytes [`insert_line`] adds, as JSON-escaped bytes, for the renderer's budget.
pub fn line_cost(line: &str) -> usize {
    if line.is_empty() {
        0
    } else {
        crate::digest::json_escaped_len(line) + 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::{Severity, Status, default_fingerprint};

    fn alert(severity: Severity, labels: &[(&str, &str)]) -> Alert {
        let labels: crate::alert::Labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Alert {
            fingerprint: default_fingerprint("t", severity, &labels),
            title: "t".into(),
            text: None,
            severity,
            status: Status::Firing,
            labels,
            source: None,
            time_ms: None,
            ends_ms: None,
            received_ms: 0,
            extra: None,
        }
    }

    fn owners() -> BTreeMap<String, BTreeMap<String, Vec<String>>> {
        let mut job = BTreeMap::new();
        job.insert(
            "dq_orders".to_string(),
            vec!["13800000001".to_string(), "alice".to_string()],
        );
        [("job".to_string(), job)].into_iter().collect()
    }

    #[test]
    fn robot_owner_and_label_mentions_are_merged_once_each() {
        let robot = Mentions {
            mobiles: vec!["13800000000".into(), "13800000001".into()],
            user_ids: vec!["bob".into()],
            all: false,
            min_severity: None,
            honor_at_all: true,
        };
        let alerts = [
            alert(Severity::Error, &[("job", "dq_orders")]),
            alert(
                Severity::Warning,
                &[("job", "dq_orders"), ("owner_mobile", "+852-61234567")],
            ),
            alert(Severity::Info, &[("owner_mobile", "not a phone")]),
        ];
        let m = mentions_for(&robot, "dingtalk", &owners(), &alerts);
        assert_eq!(m.mobiles, ["13800000000", "13800000001", "+852-61234567"]);
        assert_eq!(m.user_ids, ["bob", "alice"]);
        assert_eq!(
            m.line(),
            "@13800000000 @13800000001 @+852-61234567 @bob @alice"
        );
        assert_eq!(
            m.at_object(),
            serde_json::json!({"atMobiles": ["13800000000", "13800000001", "+852-61234567"], "atUserIds": ["bob", "alice"], "isAtAll": false})
        );
    }

    #[test]
    fn min_severity_silences_digests_without_a_severe_alert() {
        let robot = Mentions {
            mobiles: vec!["13800000000".into()],
            all: true,
            min_severity: Some(Severity::Error),
            ..Mentions::default()
        };
        let calm = [alert(Severity::Warning, &[("job", "dq_orders")])];
        assert!(mentions_for(&robot, "dingtalk", &owners(), &calm).is_empty());
        // A severe alert mentions the robot's people and its own owners, not the calm alert's.
        let mixed = [
            alert(Severity::Critical, &[]),
            alert(Severity::Warning, &[("job", "dq_orders")]),
        ];
        let m = mentions_for(&robot, "dingtalk", &owners(), &mixed);
        assert_eq!(m.mobiles, ["13800000000"]);
        assert!(m.all);
        assert!(m.user_ids.is_empty());
    }

    #[test]
    fn an_alert_cannot_mention_anyone_the_config_did_not_ask_for() {
        let robot = Mentions {
            mobiles: vec!["13800000000".into()],
            ..Mentions::default()
        };
        let mut a = alert(
            Severity::Critical,
            &[
                ("job", "dq_orders"),
                ("alertname", "@all"),
                ("owner_mobile", "@13900000009"),
            ],
        );
        a.title = "@13900000009 @all look".into();
        a.text = Some("@13900000009\n@all @alice\n<at user_id=\"bob\"></at>".into());
        // `owner_mobile` with a phone number is the documented way for an alert to name one.
        let owned = alert(Severity::Error, &[("owner_mobile", "13700000002")]);
        let alerts = [a, owned];
        let m = mentions_for(&robot, "dingtalk", &owners(), &alerts);
        assert_eq!(m.mobiles, ["13800000000", "13800000001", "13700000002"]);
        assert_eq!(m.user_ids, ["alice"]);
        assert!(!m.all);

        let tz = jiff::tz::TimeZone::UTC;
        for levels_budget in [19_000, 2_000] {
            let spec = crate::digest::DigestSpec {
                robot: "ops",
                id: 7,
                keyword: None,
                link: None,
                max_bytes: levels_budget - line_cost(&m.line()),
                tz: &tz,
                catch_up: None,
                templates: None,
            };
            let r = crate::digest::render(&spec, &alerts);
            let text = insert_line(&r.text, &m.line());
            // The only @s are the mention line's, right above the footer.
            let with_at: Vec<&str> = text.lines().filter(|l| l.contains('@')).collect();
            assert_eq!(with_at, [m.line()], "{text}");
            assert_eq!(text.lines().rev().nth(2), Some(m.line().as_str()));
            assert!(text.contains("＠13900000009"), "{text}");
        }
    }

    fn through(platform: &str, severity: Severity, extra: crate::alert::Extra) -> Alert {
        let mut a = alert(severity, &[]);
        a.extra = Some(Box::new(crate::alert::Extra {
            platform: platform.into(),
            ..extra
        }));
        a
    }

    fn people(mobiles: &[&str], user_ids: &[&str], all: bool) -> crate::alert::Extra {
        crate::alert::Extra {
            mobiles: mobiles.iter().map(|p| p.to_string()).collect(),
            user_ids: user_ids.iter().map(|p| p.to_string()).collect(),
            all,
            ..crate::alert::Extra::default()
        }
    }

    #[test]
    fn front_door_mentions_join_the_union_once_each_in_their_own_lists() {
        let robot = Mentions {
            mobiles: vec!["13800000000".into()],
            user_ids: vec!["bob".into()],
            ..Mentions::default()
        };
        let alerts = [
            through(
                "dingtalk",
                Severity::Error,
                // A numeric user id stays a user id; what is not a person is left out.
                people(
                    &["13800000000", "13900000002", "not a phone"],
                    &["bob", "0123", "a b"],
                    false,
                ),
            ),
            through(
                "dingtalk",
                Severity::Info,
                people(&["13900000002"], &["carol"], true),
            ),
        ];
        let m = mentions_for(&robot, "dingtalk", &BTreeMap::new(), &alerts);
        assert_eq!(m.mobiles, ["13800000000", "13900000002"]);
        assert_eq!(m.user_ids, ["bob", "0123", "carol"]);
        assert!(m.all);
        assert_eq!(m.line(), "@13800000000 @13900000002 @bob @0123 @carol");
        assert_eq!(
            m.at_object(),
            serde_json::json!({"atMobiles": ["13800000000", "13900000002"], "atUserIds": ["bob", "0123", "carol"], "isAtAll": true})
        );
    }

    #[test]
    fn mentions_from_another_platform_are_dropped() {
        let robot = Mentions::default();
        let alerts = [through(
            "feishu",
            Severity::Critical,
            people(&["13900000002"], &["ou_abc"], true),
        )];
        for platform in ["dingtalk", "wecom", "slack", "webhook", "console"] {
            assert!(
                mentions_for(&robot, platform, &BTreeMap::new(), &alerts).is_empty(),
                "{platform}"
            );
        }
        let m = mentions_for(&robot, "feishu", &BTreeMap::new(), &alerts);
        assert_eq!(m.user_ids, ["ou_abc"]);
        assert!(m.all);
    }

    #[test]
    fn without_honor_at_all_a_sender_cannot_mention_everyone() {
        let mut robot = Mentions {
            honor_at_all: false,
            ..Mentions::default()
        };
        let alerts = [through(
            "wecom",
            Severity::Critical,
            people(&[], &["zhangsan"], true),
        )];
        let m = mentions_for(&robot, "wecom", &BTreeMap::new(), &alerts);
        assert_eq!(m.user_ids, ["zhangsan"]);
        assert!(!m.all);
        // The robot's own mention_all still counts.
        robot.all = true;
        assert!(mentions_for(&robot, "wecom", &BTreeMap::new(), &alerts).all);
    }

    #[test]
    fn front_door_mentions_are_capped_after_the_robots_own() {
        let robot = Mentions {
            user_ids: vec!["lead".into()],
            ..Mentions::default()
        };
        let many: Vec<String> = (0..80).map(|i| format!("u{i}")).collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let alerts = [
            through("dingtalk", Severity::Error, people(&[], &many[..40], false)),
            through(
                "dingtalk",
                Severity::Error,
                people(&["13900000002"], &many[40..], false),
            ),
        ];
        let m = mentions_for(&robot, "dingtalk", &BTreeMap::new(), &alerts);
        assert_eq!(m.mobiles.len() + m.user_ids.len(), MAX_MENTIONS);
        assert_eq!(m.user_ids[0], "lead");
        // The second alert's mobile came before its user ids; the rest did not fit.
        assert_eq!(m.mobiles, ["13900000002"]);
        assert_eq!(m.user_ids.last().map(String::as_str), Some("u47"));
    }

    #[test]
    fn min_severity_skips_the_front_door_mentions_of_calm_alerts() {
        let robot = Mentions {
            min_severity: Some(Severity::Error),
            ..Mentions::default()
        };
        let calm = through(
            "dingtalk",
            Severity::Warning,
            people(&["13900000002"], &[], true),
        );
        assert!(
            mentions_for(
                &robot,
                "dingtalk",
                &BTreeMap::new(),
                std::slice::from_ref(&calm)
            )
            .is_empty()
        );
        let severe = through(
            "dingtalk",
            Severity::Critical,
            people(&[], &["alice"], false),
        );
        let m = mentions_for(&robot, "dingtalk", &BTreeMap::new(), &[calm, severe]);
        assert_eq!(m.user_ids, ["alice"]);
        assert!(m.mobiles.is_empty());
        assert!(!m.all);
    }

    #[test]
    fn the_line_goes_above_the_footer() {
        let text = "### t\n\n- a\n\nsluice digest #1 · 1 alert";
        assert_eq!(
            insert_line(text, "@138"),
            "### t\n\n- a\n\n@138\n\nsluice digest #1 · 1 alert"
        );
        assert_eq!(line_cost("@138"), 8);
        assert_eq!(
            insert_line(text, "@138").len() - text.len(),
            line_cost("@138") - 2
        );
    }
}
