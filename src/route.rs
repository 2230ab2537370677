//! Routing: which robot(s) receive an alert that names no robot itself.
//!
//! The `[[routes]]` tables are tried in the order written, Alertmanager style:
//!
//! - **First match wins.** The first route whose matchers all hold receives the alert and
//!   routing stops there, unless that route sets `continue = true`, in which case the following
//!   routes are tried too. That is how one alert fans out to several robots. Each robot is
//!   listed once, at its first matching route, however many routes name it.
//! - **Matchers.** `match` compares whole values exactly; `match_re` takes regular expressions
//!   that are **anchored**: the whole value must match (`dq` does not match `dq_orders`, write
//!   `dq.*` for a prefix). All matchers of a route must hold. A route with no matchers matches
//!   every alert, which makes it a catch-all at the end of the list.
//! - **Keys.** `severity` and `source` refer to the alert's own fields, not to labels of that
//!   name; every other key is a label.
//! - **Absent labels.** For `match`, an absent label (or an alert without `source`) never
//!   matches, not even `""`. For `match_re`, an absent label reads as the empty string, as in
//!   Alertmanager, so `match_re = { x = ".*" }` matches alerts without `x` and
//!   `match_re = { x = ".+" }` is how to require that `x` is present.
//! - **Fallback.** `default_robot` receives the alert only when no route matched. With no match
//!   and no default the alert has no robot (the HTTP API refuses it).
//!
//! Every robot a route or `default_robot` names is checked against the configured robots, and
//! every regex is compiled, when the configuration is loaded, so a typo fails at startup rather
//! than silently dropping alerts.

use std::collections::BTreeMap;

use regex::{Regex, RegexBuilder};

use crate::alert::Labels;

/// Compiled-program limit for one `match_re` regex: generous for any real label pattern, small
/// enough that a configuration cannot make the daemon allocate without bound (`a{1000}{1000}`).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// The severities an alert can have; an exact `match` on any other severity could never hold.
const SEVERITIES: [&str; 4] = ["critical", "error", "warning", "info"];

/// One `[[routes]]` table as written (serde, deny_unknown_fields).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    #[serde(default, rename = "match")]
    pub match_: BTreeMap<String, String>,
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    pub robot: String,
    #[serde(default, rename = "continue")]
    pub continue_: bool,
}

/// The routes of a configuration, checked and compiled; see the module docs for the semantics.
#[derive(Debug, Clone)]
pub struct Routes {
    routes: Vec<Route>,
    default_robot: Option<String>,
}

#[derive(Debug, Clone)]
struct Route {
    matchers: Vec<Matcher>,
    robot: String,
    continue_: bool,
}

#[derive(Debug, Clone)]
struct Matcher {
    key: String,
    test: Test,
}

#[derive(Debug, Clone)]
enum Test {
    Exact(String),
    /// `pattern` is the regex as written, kept for explanations; `re` is its anchored form.
    Regex {
        pattern: String,
        re: Regex,
    },
}

/// What an alert looks like to the router.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub labels: &'a Labels,
    pub severity: &'a str,
    pub source: Option<&'a str>,
}

impl<'a> Subject<'a> {
    /// The value a matcher key refers to; `None` when the alert does not have it.
    fn get(&self, key: &str) -> Option<&'a str> {
        match key {
            "severity" => Some(self.severity),
            "source" => self.source,
            _ => self.labels.get(key),
        }
    }
}

/// A configuration error in `[[routes]]` or `default_robot`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RouteError {
    /// Where, as a config path: `routes[2].match_re.job`, `default_robot`.
    pub key: String,
    pub message: String,
}

impl RouteError {
    fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        RouteError {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl Matcher {
    fn holds(&self, s: &Subject) -> bool {
        match &self.test {
            Test::Exact(want) => s.get(&self.key) == Some(want.as_str()),
            Test::Regex { re, .. } => re.is_match(s.get(&self.key).unwrap_or("")),
        }
    }

    /// The matcher as a person would write it: `job="x"` or `job=~"dq_.*"`.
    fn describe(&self) -> String {
        match &self.test {
            Test::Exact(want) => format!("{}={want:?}", self.key),
            Test::Regex { pattern, .. } => format!("{}=~{pattern:?}", self.key),
        }
    }

    /// Why this matcher does not hold for `s` (only meaningful when `holds` is false).
    fn why_not(&self, s: &Subject) -> String {
        let key = &self.key;
        match (&self.test, s.get(key)) {
            (Test::Exact(want), None) => format!("{key} is absent, wanted {want:?}"),
            (Test::Exact(want), Some(got)) => format!("{key} is {got:?}, wanted {want:?}"),
            (Test::Regex { pattern, .. }, None) => {
                format!("{key} is absent (read as \"\"), which does not match {pattern:?} whole")
            }
            (Test::Regex { pattern, .. }, Some(got)) => {
                format!("{key} is {got:?}, which does not match {pattern:?} whole")
            }
        }
    }
}

impl Route {
    fn first_failure(&self, s: &Subject) -> Option<&Matcher> {
        self.matchers.iter().find(|m| !m.holds(s))
    }
}

impl Routes {
    /// Compiles and checks: every robot named (routes and `default_robot`) must be in `robots`;
    /// every regex must compile, anchored and within a size limit.
    pub fn compile(
        routes: &[RawRoute],
        default_robot: Option<&str>,
        robots: &[&str],
    ) -> Result<Routes, RouteError> {
        let known = |key: String, robot: &str| -> Result<(), RouteError> {
            if robots.contains(&robot) {
                return Ok(());
            }
            let configured = if robots.is_empty() {
                "(none)".to_string()
            } else {
                robots.join(", ")
            };
            Err(RouteError::new(
                key,
                format!("unknown robot {robot:?}; configured robots: {configured}"),
            ))
        };

        let mut compiled = Vec::with_capacity(routes.len());
        for (i, raw) in routes.iter().enumerate() {
            let at = |k: &str| format!("routes[{i}].{k}");
            known(at("robot"), &raw.robot)?;
            let mut matchers = Vec::with_capacity(raw.match_.len() + raw.match_re.len());
            for (key, want) in &raw.match_ {
                if key.is_empty() {
                    return Err(RouteError::new(at("match"), "empty label name"));
                }
                // A misspelt severity would make the route silently never match.
                if key == "severity" && !SEVERITIES.contains(&want.as_str()) {
                    return Err(RouteError::new(
                        at("match.severity"),
                        format!(
                            "unknown severity {want:?}; expected one of {}",
                            SEVERITIES.join(", ")
                        ),
                    ));
                }
                matchers.push(Matcher {
                    key: key.clone(),
                    test: Test::Exact(want.clone()),
                });
            }
            for (key, pattern) in &raw.match_re {
                if key.is_empty() {
                    return Err(RouteError::new(at("match_re"), "empty label name"));
                }
                let re = compile_anchored(pattern)
                    .map_err(|e| RouteError::new(at(&format!("match_re.{key}")), e))?;
                matchers.push(Matcher {
                    key: key.clone(),
                    test: Test::Regex {
                        pattern: pattern.clone(),
                        re,
                    },
                });
            }
            compiled.push(Route {
                matchers,
                robot: raw.robot.clone(),
                continue_: raw.continue_,
            });
        }
        if let Some(d) = default_robot {
            known("default_robot".to_string(), d)?;
        }
        Ok(Routes {
            routes: compiled,
            default_robot: default_robot.map(str::to_string),
        })
    }

    /// No routes and no default: every alert must name its robot.
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty() && self.default_robot.is_none()
    }

    /// Robots for an alert that names none, in route order, without duplicates; falls back to
    /// `default_robot` when no route matched; empty when nothing matches and there is no
    /// default.
    pub fn route(&self, s: &Subject) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in &self.routes {
            if r.first_failure(s).is_some() {
                continue;
            }
            if !out.contains(&r.robot) {
                out.push(r.robot.clone());
            }
            if !r.continue_ {
                break;
            }
        }
        if out.is_empty()
            && let Some(d) = &self.default_robot
        {
            out.push(d.clone());
        }
        out
    }

    /// A human explanation of [`Routes::route`] for `sluice check --route`: one line per route
    /// tried (matched, or the first matcher that failed and why), then the outcome.
    pub fn explain(&self, s: &Subject) -> Vec<String> {
        let mut lines = Vec::new();
        let mut robots: Vec<&str> = Vec::new();
        if self.routes.is_empty() {
            lines.push("no routes configured".to_string());
        }
        for (i, r) in self.routes.iter().enumerate() {
            let head = format!("routes[{i}] (robot {:?})", r.robot);
            if let Some(m) = r.first_failure(s) {
                lines.push(format!("{head}: no match: {}", m.why_not(s)));
                continue;
            }
            let on = if r.matchers.is_empty() {
                "no matchers, matches every alert".to_string()
            } else {
                r.matchers
                    .iter()
                    .map(Matcher::describe)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let dup = if robots.contains(&r.robot.as_str()) {
                " (robot already chosen)"
            } else {
                robots.push(&r.robot);
                ""
            };
            if r.continue_ {
                lines.push(format!(
                    "{head}: matched on {on}{dup}; continue = true, trying the next routes"
                ));
            } else {
                lines.push(format!("{head}: matched on {on}{dup}; stopping here"));
                let left = self.routes.len() - i - 1;
                if left > 0 {
                    lines.push(format!("{left} later route(s) not tried"));
                }
                break;
            }
        }
        let outcome = match (robots.is_empty(), &self.default_robot) {
            (false, _) => format!("robots: {}", robots.join(", ")),
            (true, Some(d)) => format!("no route matched; default_robot: {d}"),
            (true, None) => "no robot: the alert would be refused with 422".to_string(),
        };
        lines.push(outcome);
        lines
    }
}

/// Compiles `pattern` so that it must match a whole value. Returns the error as one line.
fn compile_anchored(pattern: &str) -> Result<Regex, String> {
    let build = |p: &str| RegexBuilder::new(p).size_limit(REGEX_SIZE_LIMIT).build();
    // Checked alone first: wrapped, an unbalanced pattern such as `a)|(b` would compile to
    // `^(?:a)|(b)$` and escape the anchors; alone, it is rejected (and the error's positions
    // refer to the text the user wrote).
    let failed = |e: regex::Error| format!("invalid regex {pattern:?}: {}", one_line(&e));
    build(pattern).map_err(failed)?;
    build(&format!("^(?:{pattern})$")).map_err(failed)
}

/// The regex crate's syntax errors span several lines (the pattern, a caret, then
/// `error: ...`); config errors are one line, so keep the message and drop the drawing.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    if let Some(msg) = text.lines().find_map(|l| l.trim().strip_prefix("error: ")) {
        return msg.trim().to_string();
    }
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Parses the `--route` argument `k=v,k2=v2` into labels (`severity`/`source` come back as
/// labels too; the caller pulls them out). Values may contain `=` after the first one; they
/// cannot contain `,`. Whitespace around pairs, keys and values is trimmed. A blank argument
/// is an alert without labels.
pub fn parse_label_list(s: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    if s.trim().is_empty() {
        return Ok(labels);
    }
    for pair in s.split(',').map(str::trim) {
        if pair.is_empty() {
            return Err(format!("empty pair in {s:?}; expected k=v,k2=v2"));
        }
        let Some((k, v)) = pair.split_once('=') else {
            return Err(format!("{pair:?}: expected key=value"));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("{pair:?}: empty label name"));
        }
        if labels.insert(k.to_string(), v.to_string()).is_some() {
            return Err(format!("{pair:?}: label {k:?} given twice"));
        }
    }
    Ok(labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ROBOTS: &[&str] = &["ops", "dq", "db", "web"];

    fn map<T: FromIterator<(String, String)>>(pairs: &[(&str, &str)]) -> T {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn raw(m: &[(&str, &str)], re: &[(&str, &str)], robot: &str, cont: bool) -> RawRoute {
        RawRoute {
            match_: map(m),
            match_re: map(re),
            robot: robot.to_string(),
            continue_: cont,
        }
    }

    fn compile(routes: &[RawRoute], default: Option<&str>) -> Routes {
        Routes::compile(routes, default, ROBOTS).expect("test routes compile")
    }

    fn subj<'a>(labels: &'a Labels, severity: &'a str) -> Subject<'a> {
        Subject {
            labels,
            severity,
            source: None,
        }
    }

    fn route_labels(r: &Routes, pairs: &[(&str, &str)]) -> Vec<String> {
        let labels = map(pairs);
        r.route(&subj(&labels, "warning"))
    }

    #[test]
    fn first_match_wins() {
        let r = compile(
            &[
                raw(&[("job", "a")], &[], "dq", false),
                raw(&[("job", "a")], &[], "db", false),
                raw(&[], &[], "web", false),
            ],
            Some("ops"),
        );
        assert_eq!(route_labels(&r, &[("job", "a")]), ["dq"]);
        assert_eq!(route_labels(&r, &[("job", "b")]), ["web"]);
    }

    #[test]
    fn continue_fans_out_in_order_without_duplicates() {
        let r = compile(
            &[
                raw(&[("team", "data")], &[], "dq", true),
                raw(&[("job", "x")], &[], "ops", true), // does not match: skipped
                raw(&[], &[], "db", true),
                raw(&[("team", "data")], &[], "dq", true), // already chosen
                raw(&[], &[], "web", false),
                raw(&[], &[], "ops", false), // after a stop: never reached
            ],
            Some("ops"),
        );
        assert_eq!(route_labels(&r, &[("team", "data")]), ["dq", "db", "web"]);
        assert_eq!(route_labels(&r, &[("team", "web")]), ["db", "web"]);
    }

    #[test]
    fn default_only_when_nothing_matched_and_empty_without_default() {
        let routes = [raw(&[("job", "a")], &[], "dq", true)];
        let with = compile(&routes, Some("ops"));
        assert_eq!(route_labels(&with, &[("job", "a")]), ["dq"]);
        assert_eq!(route_labels(&with, &[("job", "b")]), ["ops"]);
        let without = compile(&routes, None);
        assert_eq!(
            route_labels(&without, &[("job", "b")]),
            Vec::<String>::new()
        );
        assert!(!without.is_empty());
        assert!(compile(&[], None).is_empty());
        assert!(!compile(&[], Some("ops")).is_empty());
        assert_eq!(
            route_labels(&compile(&[], Some("ops")), &[("job", "b")]),
            ["ops"]
        );
    }

    #[test]
    fn severity_and_source_are_the_alerts_own_fields() {
        let r = compile(
            &[
                raw(&[("severity", "critical")], &[], "ops", false),
                raw(&[], &[("source", "grafana|prom")], "dq", false),
            ],
            None,
        );
        // A label called `severity` is not the alert's severity.
        let labels = map(&[("severity", "critical")]);
        assert_eq!(r.route(&subj(&labels, "info")), Vec::<String>::new());
        assert_eq!(r.route(&subj(&labels, "critical")), ["ops"]);

        let labels = map(&[("source", "grafana")]);
        assert_eq!(r.route(&subj(&labels, "info")), Vec::<String>::new());
        let s = Subject {
            labels: &labels,
            severity: "info",
            source: Some("prom"),
        };
        assert_eq!(r.route(&s), ["dq"]);
    }

    #[test]
    fn match_re_is_anchored() {
        let r = compile(
            &[
                raw(&[], &[("job", "dq_.*")], "dq", false),
                raw(&[], &[("team", "dq")], "db", false),
            ],
            None,
        );
        assert_eq!(route_labels(&r, &[("job", "dq_orders")]), ["dq"]);
        assert_eq!(route_labels(&r, &[("job", "xdq_a")]), Vec::<String>::new());
        assert_eq!(route_labels(&r, &[("team", "dq")]), ["db"]);
        assert_eq!(
            route_labels(&r, &[("team", "dq_orders")]),
            Vec::<String>::new()
        );
        // Alternation binds inside the anchors, not across them.
        let alt = compile(&[raw(&[], &[("job", "a|b")], "dq", false)], None);
        assert_eq!(route_labels(&alt, &[("job", "b")]), ["dq"]);
        assert_eq!(route_labels(&alt, &[("job", "ab")]), Vec::<String>::new());
        assert_eq!(route_labels(&alt, &[("job", "xa")]), Vec::<String>::new());
    }

    #[test]
    fn absent_labels_never_match_exactly_but_read_as_empty_for_regex() {
        let exact_empty = compile(&[raw(&[("x", "")], &[], "dq", false)], None);
        assert_eq!(route_labels(&exact_empty, &[]), Vec::<String>::new());
        assert_eq!(route_labels(&exact_empty, &[("x", "")]), ["dq"]);

        let any = compile(&[raw(&[], &[("x", ".*")], "dq", false)], None);
        assert_eq!(route_labels(&any, &[]), ["dq"]);
        let present = compile(&[raw(&[], &[("x", ".+")], "dq", false)], None);
        assert_eq!(route_labels(&present, &[]), Vec::<String>::new());
        assert_eq!(route_labels(&present, &[("x", "1")]), ["dq"]);

        // An alert without `source` is absent for `match`, "" for `match_re`.
        let src = compile(&[raw(&[("source", "")], &[], "dq", false)], None);
        assert_eq!(route_labels(&src, &[]), Vec::<String>::new());
        let src_re = compile(&[raw(&[], &[("source", "")], "dq", false)], None);
        assert_eq!(route_labels(&src_re, &[]), ["dq"]);
    }

    #[test]
    fn all_matchers_of_a_route_must_hold() {
        let r = compile(
            &[raw(
                &[("severity", "critical"), ("job", "dq_orders")],
                &[("env", "prod.*")],
                "dq",
                false,
            )],
            None,
        );
        let ok = map(&[("job", "dq_orders"), ("env", "prod-eu")]);
        assert_eq!(r.route(&subj(&ok, "critical")), ["dq"]);
        assert!(r.route(&subj(&ok, "error")).is_empty());
        let bad_env = map(&[("job", "dq_orders"), ("env", "staging")]);
        assert!(r.route(&subj(&bad_env, "critical")).is_empty());
    }

    #[test]
    fn unknown_robot_is_rejected_with_exact_message() {
        let err = Routes::compile(
            &[
                raw(&[], &[], "a", true),
                raw(&[("job", "x")], &[], "nope", false),
            ],
            None,
            &["a", "b"],
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "routes[1].robot: unknown robot \"nope\"; configured robots: a, b"
        );
        let err = Routes::compile(&[], Some("gone"), &["a", "b"]).unwrap_err();
        assert_eq!(err.key, "default_robot");
        assert_eq!(
            err.to_string(),
            "default_robot: unknown robot \"gone\"; configured robots: a, b"
        );
    }

    #[test]
    fn bad_regex_is_rejected_naming_the_key_on_one_line() {
        let err = Routes::compile(
            &[
                raw(&[], &[("job", "ok.*")], "ops", true),
                raw(&[], &[("env", "prod"), ("job", "dq_(")], "ops", false),
            ],
            None,
            ROBOTS,
        )
        .unwrap_err();
        assert_eq!(err.key, "routes[1].match_re.job");
        let text = err.to_string();
        assert!(
            text.starts_with("routes[1].match_re.job: invalid regex \"dq_(\": "),
            "{text}"
        );
        assert!(text.contains("unclosed group"), "{text}");
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn unbalanced_regex_cannot_escape_the_anchors() {
        // Wrapped blindly this would be `^(?:x)|(?:.*)$`, a pattern that matches anything.
        let err = Routes::compile(
            &[raw(&[], &[("job", "x)|(?:.*")], "ops", false)],
            None,
            ROBOTS,
        )
        .unwrap_err();
        assert_eq!(err.key, "routes[0].match_re.job");
    }

    #[test]
    fn oversized_regex_is_rejected() {
        // Compiles under the regex crate's default limit (10 MiB), not under ours.
        let err = Routes::compile(
            &[raw(&[], &[("x", "\\w{100}")], "ops", false)],
            None,
            ROBOTS,
        )
        .unwrap_err();
        assert_eq!(err.key, "routes[0].match_re.x");
        assert!(err.message.contains("size limit"), "{}", err.message);
        assert!(!err.message.contains('\n'), "{}", err.message);
    }

    #[test]
    fn misspelt_severity_is_rejected() {
        let err = Routes::compile(
            &[raw(&[("severity", "crit")], &[], "ops", false)],
            None,
            ROBOTS,
        )
        .unwrap_err();
        assert_eq!(err.key, "routes[0].match.severity");
        assert!(err.message.contains("\"crit\""), "{}", err.message);
    }

    #[derive(Debug, serde::Deserialize)]
    struct Wrapper {
        default_robot: Option<String>,
        #[serde(default)]
        routes: Vec<RawRoute>,
    }

    #[test]
    fn toml_routes_deserialize_and_reject_unknown_fields() {
        let w: Wrapper = toml::from_str(
            r#"
            default_robot = "ops"
            [[routes]]
            match = { severity = "critical", job = "dq_orders" }
            match_re = { env = "prod.*" }
            robot = "dq"
            continue = true
            [[routes]]
            robot = "db"
            "#,
        )
        .expect("valid routes parse");
        assert_eq!(w.default_robot.as_deref(), Some("ops"));
        assert_eq!(w.routes.len(), 2);
        assert_eq!(w.routes[0].match_["job"], "dq_orders");
        assert_eq!(w.routes[0].match_re["env"], "prod.*");
        assert!(w.routes[0].continue_);
        assert!(w.routes[1].match_.is_empty() && !w.routes[1].continue_);
        let r = Routes::compile(&w.routes, w.default_robot.as_deref(), ROBOTS).expect("compiles");
        let labels = map(&[("job", "dq_orders"), ("env", "prod")]);
        assert_eq!(r.route(&subj(&labels, "critical")), ["dq", "db"]);

        let err =
            toml::from_str::<Wrapper>("[[routes]]\nrobot = \"dq\"\nmatches = { a = \"b\" }\n")
                .unwrap_err();
        assert!(err.to_string().contains("matches"), "{err}");
        assert!(toml::from_str::<Wrapper>("[[routes]]\nmatch = { a = \"b\" }\n").is_err());
    }

    #[test]
    fn explain_a_matching_alert() {
        let r = compile(
            &[
                raw(&[("job", "web")], &[], "web", false),
                raw(&[("severity", "critical")], &[("job", "dq_.*")], "dq", true),
                raw(&[], &[], "ops", false),
                raw(&[], &[], "db", false),
            ],
            Some("ops"),
        );
        let labels = map(&[("job", "dq_orders")]);
        assert_eq!(
            r.explain(&subj(&labels, "critical")),
            [
                "routes[0] (robot \"web\"): no match: job is \"dq_orders\", wanted \"web\"",
                "routes[1] (robot \"dq\"): matched on severity=\"critical\", job=~\"dq_.*\"; continue = true, trying the next routes",
                "routes[2] (robot \"ops\"): matched on no matchers, matches every alert; stopping here",
                "1 later route(s) not tried",
                "robots: dq, ops",
            ]
        );
    }

    #[test]
    fn explain_a_non_matching_alert() {
        let routes = [
            raw(&[("team", "data")], &[], "dq", false),
            raw(&[("job", "db")], &[("env", "prod.*")], "db", false),
            raw(&[], &[("env", "prod.*")], "web", false),
        ];
        let labels = map(&[("job", "db"), ("env", "staging")]);
        let lines = compile(&routes, None).explain(&subj(&labels, "info"));
        assert_eq!(
            lines,
            [
                "routes[0] (robot \"dq\"): no match: team is absent, wanted \"data\"",
                "routes[1] (robot \"db\"): no match: env is \"staging\", which does not match \"prod.*\" whole",
                "routes[2] (robot \"web\"): no match: env is \"staging\", which does not match \"prod.*\" whole",
                "no robot: the alert would be refused with 422",
            ]
        );
        let lines = compile(&routes, Some("ops")).explain(&subj(&labels, "info"));
        assert_eq!(
            lines.last().map(String::as_str),
            Some("no route matched; default_robot: ops")
        );
        let none = Labels::new();
        let lines = compile(&routes[2..], None).explain(&subj(&none, "info"));
        assert_eq!(
            lines[0],
            "routes[0] (robot \"web\"): no match: env is absent (read as \"\"), which does not match \"prod.*\" whole"
        );
        assert_eq!(
            compile(&[], None).explain(&subj(&none, "info")),
            [
                "no routes configured",
                "no robot: the alert would be refused with 422"
            ]
        );
    }

    #[test]
    fn explain_agrees_with_route_on_duplicates() {
        let r = compile(
            &[raw(&[], &[], "dq", true), raw(&[], &[], "dq", false)],
            None,
        );
        let none = Labels::new();
        let lines = r.explain(&subj(&none, "info"));
        assert!(lines[1].contains("(robot already chosen)"), "{lines:?}");
        assert_eq!(lines.last().map(String::as_str), Some("robots: dq"));
    }

    #[test]
    fn parse_label_list_accepts_good_input() {
        assert_eq!(
            parse_label_list("severity=critical,job=dq").unwrap(),
            map(&[("severity", "critical"), ("job", "dq")])
        );
        assert_eq!(
            parse_label_list(" a = 1 , q=x=y==z ,e= ").unwrap(),
            map(&[("a", "1"), ("q", "x=y==z"), ("e", "")])
        );
        assert!(parse_label_list("").unwrap().is_empty());
        assert!(parse_label_list("   ").unwrap().is_empty());
    }

    #[test]
    fn parse_label_list_names_the_bad_pair() {
        let cases = [
            ("a=1,job,b=2", "\"job\": expected key=value"),
            ("a=1,=x", "\"=x\": empty label name"),
            ("a=1, =x", "\"=x\": empty label name"),
            ("a=1,,b=2", "empty pair"),
            ("a=1,", "empty pair"),
            ("a=1,a=2", "\"a=2\": label \"a\" given twice"),
        ];
        for (input, want) in cases {
            let err = parse_label_list(input).unwrap_err();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    /// The semantics written the plainest way, for the property test to compare against.
    fn reference(
        routes: &[RawRoute],
        default: Option<&str>,
        labels: &Labels,
        severity: &str,
    ) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for r in routes {
            let all = r.match_.iter().all(|(k, v)| {
                let got = if k == "severity" {
                    Some(severity)
                } else {
                    labels.get(k)
                };
                got == Some(v.as_str())
            });
            if all {
                if !out.contains(&r.robot) {
                    out.push(r.robot.clone());
                }
                if !r.continue_ {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.extend(default.map(str::to_string));
        }
        out
    }

    fn small_map(keys: &'static [&'static str]) -> impl Strategy<Value = BTreeMap<String, String>> {
        proptest::collection::btree_map(
            proptest::sample::select(keys).prop_map(str::to_string),
            proptest::sample::select(&["x", "y", ""][..]).prop_map(str::to_string),
            0..3,
        )
    }

    fn raw_route() -> impl Strategy<Value = RawRoute> {
        (
            small_map(&["a", "b", "c"]),
            proptest::option::of(proptest::sample::select(&SEVERITIES[..2])),
            proptest::sample::select(ROBOTS),
            any::<bool>(),
        )
            .prop_map(|(mut match_, sev, robot, continue_)| {
                if let Some(sev) = sev {
                    match_.insert("severity".to_string(), sev.to_string());
                }
                RawRoute {
                    match_,
                    match_re: BTreeMap::new(),
                    robot: robot.to_string(),
                    continue_,
                }
            })
    }

    proptest! {
        #[test]
        fn route_equals_reference(
            routes in proptest::collection::vec(raw_route(), 0..6),
            default in proptest::option::of(proptest::sample::select(ROBOTS)),
            // `severity` among the label keys: a label of that name must not count.
            labels in small_map(&["a", "b", "c", "severity"]),
            severity in proptest::sample::select(&SEVERITIES[..2]),
        ) {
            let compiled = Routes::compile(&routes, default, ROBOTS).expect("valid routes");
            let labels = Labels::from(labels);
            let got = compiled.route(&Subject { labels: &labels, severity, source: None });
            prop_assert_eq!(got, reference(&routes, default, &labels, severity));
        }
    }
}
