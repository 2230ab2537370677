//! Severity and status of a front-door message, which carries neither: the robot's
//! `ingress_rules` on the title (first match wins), else its `ingress_severity`, firing.
//! And the title a fingerprint is computed on: without the status tokens senders put in it
//! (`[FIRING:n]`, `[RESOLVED]`, `[DOWN]`, `[UP]`, and what the robot's `resolved = true`
//! patterns match), so a resolved message folds with its firing one.

use std::sync::LazyLock;

use regex::Regex;

use crate::alert::{Severity, Status};
use crate::config::{Ingress, RuleThen};

/// Grafana/Alertmanager's and Uptime Kuma's status brackets.
static STATUS_TOKENS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)\[(?:FIRING(?::\s*\d+)?|RESOLVED|DOWN|UP)\]").expect("a valid regex")
});

/// The severity and status the robot's rules give `title`.
pub fn judge(ingress: &Ingress, title: &str) -> (Severity, Status) {
    for rule in &ingress.rules {
        if rule.pattern.is_match(title) {
            return match rule.then {
                RuleThen::Severity(s) => (s, Status::Firing),
                RuleThen::Resolved => (ingress.severity, Status::Resolved),
            };
        }
    }
    (ingress.severity, Status::Firing)
}

/// `title` without its status tokens, its spaces collapsed.
pub fn without_status(ingress: &Ingress, title: &str) -> String {
    let mut t = STATUS_TOKENS.replace_all(title, " ").into_owned();
    for rule in &ingress.rules {
        if rule.then == RuleThen::Resolved {
            t = rule.pattern.replace_all(&t, " ").into_owned();
        }
    }
    t.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rule;

    fn ingress(rules: &[(&str, RuleThen)]) -> Ingress {
        Ingress {
            rules: rules
                .iter()
                .map(|(p, then)| Rule {
                    pattern: Regex::new(p).unwrap(),
                    then: *then,
                })
                .collect(),
            ..Ingress::default()
        }
    }

    #[test]
    fn the_first_matching_rule_decides_else_the_robot_default() {
        let i = ingress(&[
            (r"^\[RESOLVED\]", RuleThen::Resolved),
            (r"^\[FIRING:\d+\]", RuleThen::Severity(Severity::Error)),
            (r"失败", RuleThen::Severity(Severity::Critical)),
        ]);
        assert_eq!(
            judge(&i, "[FIRING:2] disk full"),
            (Severity::Error, Status::Firing)
        );
        assert_eq!(
            judge(&i, "[RESOLVED] disk full"),
            (Severity::Warning, Status::Resolved)
        );
        assert_eq!(
            judge(&i, "build 失败"),
            (Severity::Critical, Status::Firing)
        );
        assert_eq!(judge(&i, "hello"), (Severity::Warning, Status::Firing));
    }

    #[test]
    fn status_tokens_and_resolved_patterns_leave_the_fingerprint_title() {
        let i = ingress(&[(r"(?:^|\s)已恢复(?:\s|$)", RuleThen::Resolved)]);
        assert_eq!(without_status(&i, "[FIRING:3] disk full"), "disk full");
        assert_eq!(without_status(&i, "[RESOLVED] disk full"), "disk full");
        assert_eq!(without_status(&i, "[DOWN] api"), "api");
        assert_eq!(without_status(&i, "[Up] api"), "api");
        assert_eq!(without_status(&i, "db 已恢复"), "db");
        assert_eq!(without_status(&i, "db 未恢复"), "db 未恢复");
        assert_eq!(without_status(&i, "[UPDATE] api"), "[UPDATE] api");
    }
}
