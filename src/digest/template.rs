//! Custom digest titles and bodies: [minijinja](https://docs.rs/minijinja) templates, set per
//! robot (`title_template`, `body_template`, or their `*_file` forms).
//!
//! # Guarantees
//!
//! - [`Templates::compile`] rejects, at config load, a template with a syntax error or one that
//!   uses an undefined variable, attribute or filter: each template is rendered against sample
//!   contexts of every level (one with every optional value set, one with none), with
//!   [`UndefinedBehavior::Strict`]. The error names the template and the line.
//! - The footer (`sluice digest #<id> · <N> alerts`) is never part of a template: the renderer
//!   drops the body's trailing blank lines and appends a blank line and the footer, so the count
//!   of alerts a digest covers never depends on a template.
//! - A digest still fits its byte budget: the body is rendered for each configuration in the
//!   renderer's degradation order (see [`crate::digest`]) and the first that fits is sent (the
//!   most severe section's level-2 floor lists the longest prefix of its groups that fits); a
//!   body too long even with everything counted only is cut on a character boundary, before the
//!   footer. A body that lacks the robot's keyword gets it as its first line; a title that lacks
//!   it gets it as a prefix.
//! - Work stays bounded on a flood: a rendering is abandoned as soon as its output cannot fit,
//!   and a configuration whose context would hold more than `max_bytes / 4` entries (group
//!   headings, alert and group lines) is not tried. A template that prints at least 4 bytes per
//!   entry could not fit it anyway; one that prints its entries more tersely is rendered at a
//!   poorer level than it could be.
//! - Template work is bounded: a rendering may use at most [`FUEL`] steps of minijinja fuel
//!   (instructions, and bytes of data made). A template that runs out on the samples is refused
//!   at load with its name and line, so a loop over a huge `range()` cannot hang `check`,
//!   `serve` or a reload; one that runs out at seal time fails like any run-time error (below),
//!   so a robot waits at most a few renderings' worth of fuel on its template.
//! - A custom title is trimmed, made one line and cut to 200 bytes; an empty one keeps the
//!   built-in title. A template that fails at run time (which the load-time check makes
//!   unlikely) is logged and the built-in format is used.
//!
//! Templates use `trim_blocks` and `lstrip_blocks` (a line holding only a `{% … %}` tag
//! disappears; end a tag with `+%}` to keep the newline after it). A value printed without a
//! filter (`{{ a.labels.instance }}`, `{{ a.title }}`) is written as one line of plain text in
//! DingTalk's dialect, as `line` writes it (see [`crate::digest`]'s `markdown`), so an alert
//! cannot bring markup, mentions or a forged footer through a template either; what sluice
//! and the configuration wrote (`robot`, `title`, `keyword`, `link`, times, names of sections)
//! and the results of the text filters are printed as they are, and so is everything inside
//! `{% autoescape false %}` … `{% endautoescape %}`.
//! [`BUILTIN_BODY`] (`templates/body.md.j2`) reproduces the built-in format exactly from the
//! same context (a test holds it to that), and is the place to start from.
//!
//! # Context
//!
//! Times are shown in the robot's `timezone`. "none" is minijinja's `none`: test it with
//! `{% if x %}`; using an attribute of a none value fails at load. A configuration's context
//! holds only what that configuration shows. The title template sees the context of the
//! counted-only configuration (it is rendered once, before fitting), where `title` is the
//! built-in title.
//!
//! | variable | value |
//! |---|---|
//! | `robot` | robot name |
//! | `id` | digest id |
//! | `title` | the digest's title (the title template's, when there is one) |
//! | `keyword` | the robot's first keyword, or none |
//! | `link` | URL of the digest's page (percent-encoded where it would end a markdown link), or none |
//! | `counts` | `{critical, error, warning, info, firing, resolved, total}`: the built-in title's numbers, each alert counted once as in the sections: `critical` … `info` are the firing sections' counts, `resolved` the resolved section's (a firing alert whose resolution came later in the same digest included), `firing` the sum of the four, `total` = `firing + resolved` (the footer's N). Resolved alerts by severity are in `resolved.by_severity` |
//! | `time_range` | none without alerts, else `{from, to, text}`: the earliest time an alert fired and the latest it fired or resolved (`2026-11-28 10:00:31 CST`), and the built-in line (`2026-11-28 10:00:31 – 10:05:02 CST`) |
//! | `from_ms`, `to_ms` | the same as Unix milliseconds, or none |
//! | `catch_up` | none, or on the first digest after an outage, a throttle or a block `{since, until, since_ms, until_ms, text}`: when the trouble began and ended (`2026-11-28 10:00 CST`), and the built-in line |
//! | `level` | the level of the most degraded section, 0–3 |
//! | `sections` | the firing sections that have alerts, most severe first (below) |
//! | `resolved` | the resolved section, in the same shape, or none |
//! | `summary` | none, or the count block of the sections at level 3: `{titled, count, lines: [{severity, firing, resolved}]}`, one line per severity with alerts there; `titled` is true when some section is listed above the block |
//!
//! A section (`sections[i]`, `resolved`):
//!
//! | field | value |
//! |---|---|
//! | `name` | `Critical`, `Error`, `Warning`, `Info` or `Resolved` |
//! | `severity` | `critical` … `info`; none for the resolved section |
//! | `status` | `firing` or `resolved` |
//! | `count` | its alerts |
//! | `level` | 0 (every alert with its text), 1 (one line per alert), 2 (one line per group), 3 (counted only: `groups` is empty and `summary` counts it) |
//! | `by_severity` | `{critical, error, warning, info}`: its alerts by severity |
//! | `groups` | the groups shown, in order of first appearance, `other` last (below) |
//! | `overflow` | none, or when only the first groups are listed `{count, groups: [{name, count}], other_groups, other_count}`: the alerts not listed, the five largest groups not listed, and how many more groups with how many alerts |
//!
//! A group: `name` (the `alertname` label, else `job`, else `other`), `count` (its alerts),
//! `alerts` (its merged alerts shown: all of them at levels 0 and 1, the first three at level 2),
//! `more` (its alerts not in `alerts`).
//!
//! An alert is one merged line: the alerts of a group with the same fingerprint, shown through
//! the first of them.
//!
//! | field | value |
//! |---|---|
//! | `title`, `text`, `severity`, `labels`, `fingerprint`, `source`, `time_ms`, `ends_ms`, `received_ms` | the first alert's fields (`text`, `source`, `time_ms`, `ends_ms` may be none; `labels` is a map) |
//! | `status` | the section's: `firing`, or `resolved` (also for a firing alert that resolved later in the digest) |
//! | `count` | alerts merged into the line |
//! | `occurrences` | what the built-in shows as `×N`: `count`, except in the resolved section, where a firing alert and its resolution are one occurrence (the larger of the line's firing and resolved alerts) |
//! | `fired`, `fired_ms` | the earliest time one of them fired (`time_ms`, else when it arrived; for a resolution, its `time_ms` if given), or none |
//! | `resolved`, `resolved_ms` | in the resolved section, the latest time one resolved (`ends_ms`, else when it arrived); none in a firing section |
//!
//! `fired` and `resolved` read `HH:MM`; both get their date (`MM-DD HH:MM`) when they are not on
//! the same local day, and a time on its own gets it when it is not on the day of the digest's
//! first time.
//!
//! Filters, besides minijinja's built-ins: `thousands` (an integer with `,` separators:
//! `1234` → `1,234`), `line(max=200)` (one line of plain text: trimmed, line breaks made spaces,
//! anything markdown or DingTalk would read neutralized, cut to `max` bytes of what it shows
//! with `…`), `excerpt(max=160)` (the first non-blank line of a text, as `line` but keeping web
//! links and emphasis), `quote` (the first non-blank lines of a text as `> ` lines, each as
//! `excerpt` writes it: at most 3 lines and 300 bytes, `…` when there is more). The text
//! filters give an empty string for none.

use std::fmt;

use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, Error, ErrorKind, State, UndefinedBehavior, Value};

use crate::alert::{Alert, Severity, Status, default_fingerprint};

/// The built-in body format as a template (`templates/body.md.j2`): the starting point for a
/// custom one.
pub const BUILTIN_BODY: &str = include_str!("../../templates/body.md.j2");

/// Most work one rendering of a template may do, in minijinja fuel: one unit per instruction,
/// per 64 bytes of data made or handed to a filter, per item a built-in filter visits.
///
/// Without a bound, a template looping twice over `range(100000)` hangs `check`, `serve` and
/// every reload at load, where it renders the samples. Fuel also bounds what a rendering can
/// allocate (about 64 bytes per unit, so 320 MB), which is why it is no larger. The built-in
/// template takes about 13 000 on ordinary floods of any size and 600 000 on the most hostile
/// content measured (1-byte titles and 16 KiB texts, where every listed line hands a filter
/// 16 KiB): at most `max_bytes / 4` entries are ever rendered, and a rendering stops once its
/// output cannot fit. A test holds it under an eighth of this. A runaway is stopped in about
/// 0.2 s (release build).
pub const FUEL: u64 = 5_000_000;

/// A robot's compiled title and/or body templates.
#[derive(Clone)]
pub struct Templates {
    env: Environment<'static>,
    /// (name in the environment, name in errors, source)
    title: Option<(String, String, String)>,
    body: Option<(String, String, String)>,
}

/// Why a template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: line {line}: {message}")]
pub struct TemplateError {
    /// The config key or file the template came from.
    pub name: String,
    pub line: usize,
    pub message: String,
}

impl Templates {
    /// Whether both were compiled from the same sources (a reload keeps a robot that did not
    /// change).
    pub fn same_sources(&self, other: &Templates) -> bool {
        self.title == other.title && self.body == other.body
    }

    /// Compiles a title and/or body template (name = the config key or file, used in errors),
    /// and renders each once against rich sample contexts with [`UndefinedBehavior::Strict`],
    /// so syntax errors and undefined variables fail at config load with the template name and
    /// line.
    pub fn compile(
        title: Option<(&str, &str)>,
        body: Option<(&str, &str)>,
    ) -> Result<Templates, TemplateError> {
        let mut env = environment();
        // Internal names keep a title and a body from one file apart.
        let mut add = |key: &str, t: Option<(&str, &str)>| match t {
            None => Ok(None),
            Some((name, source)) => {
                env.add_template_owned(key.to_string(), source.to_string())
                    .map_err(|e| template_error(name, &e))?;
                Ok(Some((
                    key.to_string(),
                    name.to_string(),
                    source.to_string(),
                )))
            }
        };
        let title = add("title", title)?;
        let body = add("body", body)?;
        let t = Templates { env, title, body };
        for ctx in crate::digest::sample_contexts() {
            for (key, name, _) in [&t.title, &t.body].into_iter().flatten() {
                t.render(key, &ctx).map_err(|e| template_error(name, &e))?;
            }
        }
        Ok(t)
    }

    pub(crate) fn has_title(&self) -> bool {
        self.title.is_some()
    }

    pub(crate) fn has_body(&self) -> bool {
        self.body.is_some()
    }

    pub(crate) fn render_title(&self, ctx: &Value) -> Result<String, Error> {
        self.render("title", ctx)
    }

    pub(crate) fn render_body(&self, ctx: &Value) -> Result<String, Error> {
        self.render("body", ctx)
    }

    /// The body, or `None` as soon as it is sure to be longer than `limit` bytes once its
    /// trailing whitespace is trimmed (so that it cannot fit a budget of `limit`).
    pub(crate) fn render_body_within(
        &self,
        ctx: &Value,
        limit: usize,
    ) -> Result<Option<String>, Error> {
        let mut out = Within {
            buf: Vec::new(),
            solid: 0,
            limit,
        };
        match self
            .env
            .get_template("body")?
            .render_captured_to(ctx, &mut out)
        {
            Ok(_) => Ok(Some(String::from_utf8(out.buf).map_err(|e| {
                Error::new(ErrorKind::InvalidOperation, e.to_string())
            })?)),
            Err(_) if out.solid > limit => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn render(&self, key: &str, ctx: &Value) -> Result<String, Error> {
        self.env.get_template(key)?.render(ctx)
    }
}

impl fmt::Debug for Templates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Templates")
            .field("title", &self.title.as_ref().map(|t| &t.1))
            .field("body", &self.body.as_ref().map(|t| &t.1))
            .finish()
    }
}

impl PartialEq for Templates {
    fn eq(&self, other: &Self) -> bool {
        self.title == other.title && self.body == other.body
    }
}

/// Collects output until its part before any trailing whitespace is over `limit` bytes, then
/// fails the render. `solid` ends after the last ASCII byte that is not whitespace, so it never
/// exceeds the length of the trimmed output (a multi-byte character is not counted as solid
/// until an ASCII character follows it): the render is only stopped when it cannot fit.
struct Within {
    buf: Vec<u8>,
    solid: usize,
    limit: usize,
}

impl std::io::Write for Within {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Some(p) = bytes
            .iter()
            .rposition(|b| b.is_ascii() && !b.is_ascii_whitespace())
        {
            self.solid = self.buf.len() + p + 1;
        }
        self.buf.extend_from_slice(bytes);
        if self.solid > self.limit {
            return Err(std::io::Error::other("over the budget"));
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn template_error(name: &str, e: &Error) -> TemplateError {
    let message = match (e.kind(), e.detail()) {
        // Only the sample renderings at load spend fuel here, so say what was measured on what.
        (ErrorKind::OutOfFuel, _) => format!(
            "uses more than {} steps of template work (minijinja fuel) on a sample digest of \
             {} alerts; a loop over a large range(), loops nested in loops or a string grown \
             in a loop do that. sluice refuses it so that no digest, check or reload waits on it",
            crate::digest::thousands(FUEL),
            sample_alerts(0).len(),
        ),
        (kind, Some(d)) => format!("{kind}: {d}"),
        (kind, None) => kind.to_string(),
    };
    TemplateError {
        name: name.to_string(),
        line: e.line().unwrap_or(0),
        message,
    }
}

/// The auto-escape mode of every template: values printed as they are go out as plain text.
const MARKDOWN: &str = "markdown";

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    // Markdown, not HTML: a value printed as it is comes from an alert more often than not (a
    // label, a title), so it is written as plain text in DingTalk's dialect, as `line` writes
    // it; the text filters' results and the values sluice made are marked safe and go out as
    // they are. `{% autoescape false %}` turns this off for a block.
    env.set_auto_escape_callback(|_| AutoEscape::Custom(MARKDOWN.into()));
    env.set_formatter(|out, state, value| {
        let plain = matches!(state.auto_escape(), AutoEscape::Custom(m) if m == MARKDOWN);
        if value.is_safe() || !plain {
            return write!(out, "{value}").map_err(Error::from);
        }
        out.write_str(&crate::digest::plain(&value.to_string()))
            .map_err(Error::from)
    });
    env.set_syntax(
        SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .expect("the default delimiters are valid"),
    );
    env.add_filter("thousands", |v: Value| -> Result<Value, Error> {
        if let Ok(n) = u64::try_from(v.clone()) {
            return Ok(Value::from_safe_string(crate::digest::thousands(n)));
        }
        match i64::try_from(v.clone()) {
            Ok(n) => Ok(Value::from_safe_string(format!(
                "-{}",
                crate::digest::thousands(n.unsigned_abs())
            ))),
            Err(_) => Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("thousands expects an integer, got {}", v.kind()),
            )),
        }
    });
    env.add_filter(
        "line",
        |state: &State, v: Value, max: Option<usize>| -> Result<Value, Error> {
            note_fuel(state);
            let mut out = String::new();
            if let Some(s) = text_arg("line", &v)? {
                crate::digest::push_plain(&mut out, &s, max.unwrap_or(200));
            }
            Ok(Value::from_safe_string(out))
        },
    );
    env.add_filter(
        "excerpt",
        |state: &State, v: Value, max: Option<usize>| -> Result<Value, Error> {
            note_fuel(state);
            let mut out = String::new();
            if let Some(e) = text_arg("excerpt", &v)?
                .as_deref()
                .and_then(crate::digest::excerpt)
            {
                crate::digest::push_rich(&mut out, e, max.unwrap_or(160));
            }
            Ok(Value::from_safe_string(out))
        },
    );
    env.add_filter("quote", |state: &State, v: Value| -> Result<Value, Error> {
        note_fuel(state);
        let mut out = String::new();
        if let Some(s) = text_arg("quote", &v)? {
            crate::digest::push_quote(&mut out, &s);
        }
        Ok(Value::from_safe_string(out))
    });
    env
}

#[cfg(test)]
thread_local! {
    /// The most fuel a rendering on this thread had used when a text filter ran: how the fuel
    /// test measures renderings on the real path, where one stopped at the byte budget never
    /// returns its state. The built-in template calls a text filter on every line it writes.
    pub(crate) static PEAK_FUEL: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

fn note_fuel(_state: &State) {
    #[cfg(test)]
    if let Some((used, _)) = _state.fuel_levels() {
        PEAK_FUEL.with(|p| p.set(p.get().max(used)));
    }
}

/// A filter's text argument: none gives `None`; undefined is an error, so that a misspelt
/// attribute fails at load like any other undefined value.
fn text_arg(filter: &str, v: &Value) -> Result<Option<String>, Error> {
    if v.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            format!("{filter} got an undefined value"),
        ));
    }
    if v.is_none() {
        return Ok(None);
    }
    Ok(Some(match v.as_str() {
        Some(s) => s.to_string(),
        None => v.to_string(),
    }))
}

/// Alerts for `sluice check` to render a sample digest per robot: every severity, both
/// statuses, merged repeats, a problem that fired and resolved, texts and labels, ending at
/// `now_ms`.
pub fn sample_alerts(now_ms: i64) -> Vec<Alert> {
    const MIN: i64 = 60_000;
    let alert = |title: &str,
                 text: Option<&str>,
                 severity: Severity,
                 status: Status,
                 labels: &[(&str, &str)],
                 ago_min: i64| {
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let at = now_ms - ago_min * MIN;
        Alert {
            fingerprint: default_fingerprint(title, severity, &labels),
            title: title.to_string(),
            text: text.map(str::to_string),
            severity,
            status,
            labels,
            source: Some("sample".to_string()),
            time_ms: Some(at),
            ends_ms: None,
            received_ms: at,
        }
    };
    let orders = [("alertname", "dq_orders"), ("table", "ods_orders")];
    let null_text = "Check dq_orders_null failed on partition 2026-11-28.\n\
                     Threshold 1%, measured 12.3%.\nOwner: data platform\nRunbook: dq/null";
    let mut lag_resolved = alert(
        "replication lag 45s on db-2",
        None,
        Severity::Warning,
        Status::Resolved,
        &[("alertname", "replication"), ("instance", "db-2")],
        2,
    );
    lag_resolved.time_ms = Some(now_ms - 8 * MIN);
    lag_resolved.ends_ms = Some(now_ms - 3 * MIN);
    let mut cpu_resolved = alert(
        "cpu 95% on web-2",
        Some("load went back under 60%"),
        Severity::Error,
        Status::Resolved,
        &[("alertname", "cpu"), ("instance", "web-2")],
        1,
    );
    cpu_resolved.time_ms = Some(now_ms - 40 * MIN);
    cpu_resolved.ends_ms = Some(now_ms - 6 * MIN);
    let mut queue_resolved = alert(
        "queue depth back to normal",
        None,
        Severity::Info,
        Status::Resolved,
        &[],
        1,
    );
    queue_resolved.time_ms = None;
    vec![
        alert(
            "ods_orders: 12% null user_id",
            Some(null_text),
            Severity::Critical,
            Status::Firing,
            &orders,
            9,
        ),
        alert(
            "ods_users: 40 duplicate ids",
            Some("dq_users_unique failed"),
            Severity::Critical,
            Status::Firing,
            &[("alertname", "dq_users"), ("table", "ods_users")],
            8,
        ),
        alert(
            "replication lag 45s on db-2",
            None,
            Severity::Warning,
            Status::Firing,
            &[("alertname", "replication"), ("instance", "db-2")],
            8,
        ),
        alert(
            "api 5xx at 3%",
            Some("\n  p99 latency 2.1 s\nupstream: payments"),
            Severity::Error,
            Status::Firing,
            &[("job", "api")],
            7,
        ),
        alert(
            "disk 91% on db-3",
            Some("/var/lib/postgresql"),
            Severity::Warning,
            Status::Firing,
            &[("alertname", "disk"), ("instance", "db-3")],
            5,
        ),
        alert(
            "ods_orders: 12% null user_id",
            Some(null_text),
            Severity::Critical,
            Status::Firing,
            &orders,
            4,
        ),
        alert(
            "nightly backup finished late",
            None,
            Severity::Info,
            Status::Firing,
            &[],
            3,
        ),
        lag_resolved,
        cpu_resolved,
        queue_resolved,
    ]
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::digest::plan::{ALL_EXTRAS, Plan};
    use crate::digest::tests::model::{arb_alert, arb_spec_parts, zones};
    use crate::digest::tests::{T0, UTC, alert, shanghai, size, spec};
    use crate::digest::{DigestSpec, DingTalk, MIN_BUDGET, footer, render};

    fn builtin() -> Templates {
        Templates::compile(None, Some(("body.md.j2", BUILTIN_BODY))).expect("the built-in compiles")
    }

    fn body(source: &str) -> Result<Templates, TemplateError> {
        Templates::compile(None, Some(("robots.ops.body_template", source)))
    }

    /// Renders the built-in template with the context of every configuration the renderer
    /// writes for `alerts`, and compares it with the renderer's text without the footer.
    fn assert_template_matches(spec: &DigestSpec, alerts: &[Alert]) -> usize {
        let t = builtin();
        let plan = Plan::new(&DingTalk, spec, alerts);
        let written = plan.written();
        for (choice, text) in &written {
            let want = text
                .strip_suffix(&format!("\n\n{}", plan.footer()))
                .expect("ends with the footer");
            let got = t.render_body(&plan.context(choice)).expect("renders");
            assert_eq!(got.trim_end(), want, "{choice:?}");
        }
        written.len()
    }

    #[test]
    fn builtin_template_reproduces_the_renderer() {
        let tz = shanghai();
        let mut s = spec(19_000);
        s.tz = &tz;
        s.link = Some("https://sluice.example/r/ops?a=(1)");
        s.keyword = Some("告警");
        s.catch_up = Some((T0 - 3_600_000, T0 + 600_000));
        let sample = sample_alerts(T0 + 600_000);
        // Every configuration of the order: 4 per non-empty section, minus 1, plus the chosen.
        assert_eq!(assert_template_matches(&s, &sample), 5 * 3 + 1 + 1);

        // Nasty titles, texts and names, at every level.
        let mut nasty = Vec::new();
        for (i, sev) in Severity::ALL.into_iter().enumerate() {
            let mut a = alert(
                &format!("  \"quoted\" \\ {i} # > *x*\t{}", "数".repeat(90)),
                sev,
                Some(["a\nb", "  ", "数据质量"][i % 3]),
                &format!("fp{}", i % 2),
            );
            a.text = Some(format!(
                "\n\n first\u{2028}line\n{}\nthird\nfourth",
                "é".repeat(200)
            ));
            nasty.push(a.clone());
            a.status = Status::Resolved;
            a.time_ms = (i % 2 == 0).then_some(T0 - 7_200_000);
            nasty.push(a);
        }
        assert_template_matches(&spec(19_000), &nasty);
        assert_template_matches(&s, &nasty);

        // A flood: the floor lists some groups, then the overflow line with other groups.
        let flood: Vec<Alert> = (0..3_000)
            .map(|i| {
                alert(
                    &format!("check {i}"),
                    Severity::ALL[i % 2],
                    Some(&format!("g{}", i % 400)),
                    &format!("{}", i % 700),
                )
            })
            .collect();
        s.max_bytes = 5_000;
        let plan = Plan::new(&DingTalk, &s, &flood);
        let chosen = plan.written().pop().expect("chosen");
        assert!(chosen.0.partial.is_some(), "{}", chosen.1);
        assert!(chosen.1.contains(" other groups "));
        assert_template_matches(&s, &flood);

        // Counted only, bare, no alerts.
        assert_template_matches(&spec(MIN_BUDGET), &flood);
        assert_template_matches(&spec(MIN_BUDGET), &[]);
    }

    #[test]
    fn the_builtin_template_keeps_the_space_that_ends_its_last_line() {
        // A title that shows as nothing leaves `- ` as the body's last line (or a level-2 group
        // line `… ×1: `); the renderer writes the space, so the template must keep it.
        let alerts = [alert("\u{7}\u{200B}", Severity::Info, Some("g"), "x")];
        let t = builtin();
        let mut s = spec(19_000);
        let plain = render(&s, &alerts);
        assert!(
            plain.text.ends_with("\n- \n\nsluice digest #42 · 1 alert"),
            "{}",
            plain.text
        );
        s.templates = Some(&t);
        assert_eq!(render(&s, &alerts).text, plain.text);
    }

    #[test]
    fn templates_can_be_shared_between_robot_tasks() {
        fn shared<T: Send + Sync + Clone + PartialEq + fmt::Debug>(_: &T) {}
        let t = builtin();
        shared(&t);
        assert_eq!(t, t.clone());
        assert_ne!(t, body("other").expect("compiles"));
        assert_eq!(
            format!("{t:?}"),
            "Templates { title: None, body: Some(\"body.md.j2\") }"
        );
    }

    #[test]
    fn syntax_error_names_the_template_and_line() {
        let e = body("### {{ title }}\n{% for s in sections %}\n{{ s.name }\n{% endfor %}")
            .expect_err("syntax error");
        assert_eq!(
            (e.name.as_str(), e.line),
            ("robots.ops.body_template", 3),
            "{e}"
        );
        assert!(e.message.starts_with("syntax error"), "{e}");
        assert!(
            e.to_string()
                .starts_with("robots.ops.body_template: line 3: syntax error")
        );

        let e = Templates::compile(Some(("title.txt.j2", "{% if robot %}x")), None)
            .expect_err("unclosed block");
        assert_eq!(e.name, "title.txt.j2");
        assert!(e.message.contains("syntax error"), "{e}");
    }

    #[test]
    fn undefined_variables_fail_at_load_with_name_and_line() {
        let e = body("### {{ title }}\n\n{{ countz.total }}").expect_err("undefined");
        assert_eq!(
            (e.name.as_str(), e.line),
            ("robots.ops.body_template", 3),
            "{e}"
        );
        assert!(e.message.contains("undefined"), "{e}");
        // A misspelt attribute, even inside a filter or a condition.
        let e = body("{% for s in sections %}\n{{ s.groups[0].titel|line }}\n{% endfor %}")
            .expect_err("undefined attribute");
        assert_eq!(e.line, 2, "{e}");
        let e = body("a\nb\n{% if counts.totl > 1 %}x{% endif %}").expect_err("undefined");
        assert_eq!(e.line, 3, "{e}");
        // Optional values are none in the sparse sample: using one unguarded fails at load.
        let e = body("{{ catch_up.text }}").expect_err("none has no attributes");
        assert_eq!(e.line, 1, "{e}");
        body("{% if catch_up %}{{ catch_up.text }}{% endif %}").expect("guarded");
        // Branches that only some levels take are checked too.
        let e =
            body("{% for s in sections %}{% if s.level == 3 %}{{ s.nope }}{% endif %}{% endfor %}")
                .expect_err("level 3 is sampled");
        assert!(e.message.contains("undefined"), "{e}");
        let e = Templates::compile(Some(("robots.ops.title_template", "{{ robt }}")), None)
            .expect_err("undefined in the title");
        assert_eq!(e.name, "robots.ops.title_template");
        let e = body("{{ robot|upcase }}").expect_err("unknown filter");
        assert!(e.message.contains("unknown filter"), "{e}");
    }

    #[test]
    fn runaway_templates_run_out_of_fuel_at_load() {
        for (source, line) in [
            // Nested loops: 10^10 steps.
            (
                "x\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
                2,
            ),
            // A string doubled in a loop: memory, not steps.
            (
                "{% set s = namespace(v='0123456789abcdef') %}\n\n\
                 {% for i in range(100) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v|length }}",
                3,
            ),
            // One huge value.
            ("{{ 'x' * 1000000000 }}", 1),
        ] {
            let started = std::time::Instant::now();
            let e = body(source).expect_err("runs out of fuel");
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "took {:?}",
                started.elapsed()
            );
            assert_eq!(
                (e.name.as_str(), e.line),
                ("robots.ops.body_template", line),
                "{e}"
            );
            assert!(
                e.message.starts_with(&format!(
                    "uses more than {} steps of template work",
                    crate::digest::thousands(FUEL)
                )),
                "{e}"
            );
            assert!(e.message.contains("range()"), "{e}");
        }
        // A title template is held to the same bound.
        let e = Templates::compile(
            Some(("title.txt.j2", "{% for i in range(100000) %}{% for j in range(9) %}{{ j }}{% endfor %}{% endfor %}")),
            None,
        )
        .expect_err("runs out of fuel");
        assert_eq!(e.name, "title.txt.j2");
        assert!(e.message.contains("steps of template work"), "{e}");
    }

    #[test]
    fn a_template_running_out_of_fuel_at_seal_falls_back_to_the_built_in() {
        // The sample has 10 alerts, so the check passes; 11 alerts take it into the loops.
        let t = body(
            "{% if counts.total > 10 %}\
             {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\
             {% endif %}fine",
        )
        .expect("compiles");
        let mut s = spec(19_000);
        s.templates = Some(&t);
        let few = vec![alert("a", Severity::Info, None, "x"); 3];
        assert!(render(&s, &few).text.starts_with("fine\n\n"));
        let many = vec![alert("a", Severity::Info, None, "x"); 11];
        let started = std::time::Instant::now();
        let r = render(&s, &many);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the robot waited {:?}",
            started.elapsed()
        );
        assert_eq!(r.text, render(&spec(19_000), &many).text);
    }

    #[test]
    fn labels_and_group_names_render_as_plain_text() {
        let name = "*db* [x](https://e.example) <font color=red>";
        let shown = "＊db＊ [x］(https://e.example) ＜font color=red>";
        let mut a = alert("t", Severity::Critical, Some(name), "x");
        a.labels.insert(
            "instance".into(),
            "**web-1** @all _x_ ![](https://p)".into(),
        );
        let r = render(&spec(19_000), std::slice::from_ref(&a));
        assert!(
            r.text.contains(&format!("\n**{shown}** · 1\n")),
            "{}",
            r.text
        );
        // A group line and an overflow line, on a flood of such groups.
        let flood: Vec<Alert> = (0..400)
            .map(|i| {
                alert(
                    &format!("t{i}"),
                    Severity::Critical,
                    Some(&format!("{name}{i}")),
                    "x",
                )
            })
            .collect();
        let r = render(&spec(MIN_BUDGET), &flood);
        assert!(
            r.text.contains(&format!("\n- **{shown}0** ×1: t0\n")),
            "{}",
            r.text
        );
        // Cut to 40 bytes of what it shows.
        assert!(
            r.text
                .contains("more: ＊db＊ [x］(https://e.example) ＜fon… 1, "),
            "{}",
            r.text
        );
        assert!(
            !r.text.contains("*db*") && !r.text.contains("<font"),
            "{}",
            r.text
        );

        // A template printing names and labels as they are, or through `line`.
        let t = body(
            "{% for s in sections %}{% for g in s.groups %}{{ g.name }}|{{ g.name|line }}\n\
             {% for a in g.alerts %}{{ a.labels.instance|default('') }}|\
             {% for k, v in a.labels|items %}{{ k }}={{ v }};{% endfor %}\n\
             {% endfor %}{% endfor %}{% endfor %}",
        )
        .expect("compiles");
        let mut s = spec(19_000);
        s.templates = Some(&t);
        let r = render(&s, std::slice::from_ref(&a));
        let label = "＊＊web-1＊＊ ＠all _x＿ ！[］(https://p)";
        assert_eq!(
            r.text,
            format!(
                "{shown}|{shown}\n{label}|alertname={shown};instance={label};\n\n\
                 sluice digest #42 · 1 alert"
            )
        );
        // What sluice and the configuration wrote goes out as it is.
        let t = body(
            "{{ robot }} {{ keyword }} {{ link }}\n{{ title }}\n\
             {% autoescape false %}{% for s in sections %}{% for g in s.groups %}\
             {{ g.name }}{% endfor %}{% endfor %}{% endautoescape %}",
        )
        .expect("compiles");
        s.templates = Some(&t);
        s.robot = "*ops*_";
        s.keyword = Some("<告警>");
        s.link = Some("https://x.example/a_b");
        let r = render(&s, std::slice::from_ref(&a));
        assert_eq!(
            r.text,
            format!(
                "*ops*_ <告警> https://x.example/a_b\n<告警> *ops*_: 1 critical\n{name}\n\n\
                 sluice digest #42 · 1 alert"
            )
        );
    }

    #[test]
    fn custom_template_renders_with_the_footer_appended() {
        let t = body(
            "Digest {{ id }} for {{ robot }}: {{ counts.total }} alerts, {{ counts.resolved }} resolved\n\
             {% for s in sections %}\n\
             {{ s.name }} {{ s.count }}\n\
             {% endfor %}\n\n\n",
        )
        .expect("compiles");
        let mut s = spec(19_000);
        s.templates = Some(&t);
        let mut done = alert("b", Severity::Info, None, "y");
        done.status = Status::Resolved;
        let alerts = [
            alert("a", Severity::Critical, None, "x"),
            alert("c", Severity::Info, None, "z"),
            done,
        ];
        let r = render(&s, &alerts);
        assert_eq!(
            r.text,
            "Digest 42 for ops: 3 alerts, 1 resolved\nCritical 1\nInfo 1\n\n\
             sluice digest #42 · 3 alerts"
        );
        assert_eq!(r.title, "ops: 1 critical, 1 info, 1 resolved");
        assert_eq!((r.listed, r.summarized, r.level), (3, 0, 0));
    }

    #[test]
    fn counts_count_each_alert_once_like_the_title() {
        let t = Templates::compile(
            Some((
                "title",
                "{{ robot }}: {{ counts.critical }} critical, {{ counts.error }} error, \
                 {{ counts.warning }} warning, {{ counts.info }} info, \
                 {{ counts.resolved }} resolved ({{ counts.firing }} firing, {{ counts.total }} in all)",
            )),
            None,
        )
        .expect("compiles");
        let mut s = spec(19_000);
        // A replication lag that fired and resolved, resolutions of an error and an info alert.
        let alerts = sample_alerts(T0);
        let plain = render(&s, &alerts);
        assert_eq!(
            plain.title,
            "ops: 3 critical, 1 error, 1 warning, 1 info, 4 resolved"
        );
        s.templates = Some(&t);
        let r = render(&s, &alerts);
        assert_eq!(r.title, format!("{} (6 firing, 10 in all)", plain.title));
    }

    #[test]
    fn keyword_goes_into_a_body_and_a_title_that_lack_it() {
        let t = Templates::compile(
            Some(("title", "  {{ robot }}\n has {{ counts.total }} alerts  ")),
            Some(("body", "nothing here")),
        )
        .expect("compiles");
        let mut s = spec(19_000);
        s.templates = Some(&t);
        s.keyword = Some("告警");
        let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
        assert_eq!(r.title, "告警 ops  has 1 alerts");
        assert_eq!(
            r.text,
            "告警\n\nnothing here\n\nsluice digest #42 · 1 alert"
        );
        s.keyword = Some("nothing");
        let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
        assert_eq!(r.text, "nothing here\n\nsluice digest #42 · 1 alert");
        assert_eq!(r.title, "nothing ops  has 1 alerts");
    }

    #[test]
    fn custom_title_is_one_line_of_at_most_200_bytes() {
        let t = Templates::compile(Some(("title", "{{ '数' * 100 }}\n{{ robot }}")), None)
            .expect("compiles");
        let mut s = spec(19_000);
        s.templates = Some(&t);
        let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
        assert_eq!(r.title, format!("{}…", "数".repeat(65)));
        assert!(r.title.len() <= 200);
        // The built-in body shows the custom title.
        assert!(r.text.starts_with(&format!("### {}\n\n", r.title)));
        // An empty title keeps the built-in one.
        let t = Templates::compile(Some(("title", "  {{ '' }} ")), None).expect("compiles");
        s.templates = Some(&t);
        let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
        assert_eq!(r.title, "ops: 1 critical");
    }

    #[test]
    fn verbose_template_is_cut_and_still_ends_with_the_footer() {
        let t = body("{{ robot }} {% for i in range(3000) %}ab\"{% endfor %}").expect("compiles");
        let mut s = spec(MIN_BUDGET);
        s.templates = Some(&t);
        let alerts = [alert("a", Severity::Critical, None, "x")];
        let r = render(&s, &alerts);
        assert!(size(&r) <= MIN_BUDGET, "{}", size(&r));
        assert!(size(&r) > MIN_BUDGET - 8, "cut to the budget: {}", size(&r));
        assert!(r.text.starts_with("ops ab\"ab\""));
        assert!(
            r.text.ends_with("…\n\nsluice digest #42 · 1 alert"),
            "{}",
            r.text
        );
        assert_eq!((r.listed, r.summarized, r.level), (0, 1, 3));
        // Below what even the title and footer need, the footer still ends the text.
        s.max_bytes = 10;
        let r = render(&s, &alerts);
        assert_eq!(r.text, "\n\nsluice digest #42 · 1 alert");
    }

    #[test]
    fn trailing_whitespace_does_not_count_against_the_budget() {
        // Rendering stops early once output cannot fit; whitespace at the end is trimmed, so it
        // must not be what stops it.
        let t = body("{{ robot }}\n{% for i in range(5000) %}  \n{% endfor %}").expect("compiles");
        let mut s = spec(MIN_BUDGET);
        s.templates = Some(&t);
        let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
        assert_eq!(r.text, "ops\n\nsluice digest #42 · 1 alert");
        assert_eq!(r.level, 0);
        // Multi-byte output is measured exactly too: 400 three-byte characters do not fit.
        let t = body("{{ '数' * 400 }}").expect("compiles");
        s.templates = Some(&t);
        let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
        assert!(size(&r) <= MIN_BUDGET);
        assert!(
            r.text.ends_with("…\n\nsluice digest #42 · 1 alert"),
            "{}",
            r.text
        );
    }

    #[test]
    fn custom_template_degrades_by_the_same_order() {
        let t = body(
            "{% for s in sections + ([resolved] if resolved else []) %}\n\
             {% if s.level < 3 %}\n\
             {{ s.name }} (level {{ s.level }})\n\
             {% for g in s.groups %}{% for a in g.alerts %}\n\
             * {{ a.title|line }}{% if s.level == 0 %}: {{ a.text|excerpt }}{% endif +%}\n\
             {% endfor %}{% endfor %}\n\
             {% if s.overflow %}\n\
             and {{ s.overflow.count }} more\n\
             {% endif %}\n\
             {% else %}\n\
             {{ s.name }}: {{ s.count }}\n\
             {% endif %}\n\
             {% endfor %}",
        )
        .expect("compiles");
        let mut alerts = Vec::new();
        for i in 0..30 {
            let mut a = alert(
                &format!("critical {i} {}", "x".repeat(40)),
                Severity::Critical,
                Some(&format!("g{i}")),
                &format!("c{i}"),
            );
            a.text = Some("y".repeat(100));
            alerts.push(a);
            alerts.push(alert(
                &format!("warning {i} {}", "x".repeat(40)),
                Severity::Warning,
                Some("w"),
                &format!("w{i}"),
            ));
        }
        let mut s = spec(19_000);
        s.templates = Some(&t);
        let r = render(&s, &alerts);
        assert_eq!(r.level, 0);
        assert!(r.text.contains(&format!(
            "* critical 0 {}: {}\n",
            "x".repeat(40),
            "y".repeat(100)
        )));
        // Less room: warning goes first, critical keeps its texts.
        s.max_bytes = 6_000;
        let r = render(&s, &alerts);
        assert!(size(&r) <= 6_000);
        assert!(r.text.contains("Critical (level 0)\n"), "{}", r.text);
        assert!(
            r.text.contains("\nWarning (level 2)\n* warning 0 "),
            "{}",
            r.text
        );
        assert_eq!(r.level, 2);
        // Then warning is counted, and critical loses its texts.
        s.max_bytes = 3_000;
        let r = render(&s, &alerts);
        assert!(size(&r) <= 3_000);
        assert!(r.text.starts_with(&format!(
            "Critical (level 1)\n* critical 0 {}\n",
            "x".repeat(40)
        )));
        assert!(r.text.contains("\nWarning: 30\n"), "{}", r.text);
        // Less still: critical lists what fits as groups, then an overflow line.
        s.max_bytes = MIN_BUDGET;
        let r = render(&s, &alerts);
        assert!(size(&r) <= MIN_BUDGET, "{}", size(&r));
        assert!(
            r.text.contains("Critical (level 2)\n* critical 0"),
            "{}",
            r.text
        );
        assert!(r.text.contains("\nand "), "{}", r.text);
        assert!(
            r.text
                .ends_with("\nWarning: 30\n\nsluice digest #42 · 60 alerts"),
            "{}",
            r.text
        );
        assert_eq!(r.level, 3);
    }

    #[test]
    fn a_template_failing_at_run_time_falls_back_to_the_built_in() {
        // The sample has 10 alerts, so the check passes; 11 alerts reach the undefined name.
        let t = body("{% if counts.total > 10 %}{{ nowhere }}{% endif %}fine").expect("compiles");
        let mut s = spec(19_000);
        s.templates = Some(&t);
        let few = vec![alert("a", Severity::Info, None, "x"); 3];
        assert!(render(&s, &few).text.starts_with("fine\n\n"));
        let many = vec![alert("a", Severity::Info, None, "x"); 11];
        let r = render(&s, &many);
        assert_eq!(r.text, render(&spec(19_000), &many).text);
    }

    #[test]
    fn sample_alerts_show_every_kind_of_line() {
        let tz = shanghai();
        let mut s = spec(19_000);
        s.tz = &tz;
        let r = render(&s, &sample_alerts(T0));
        for want in [
            "#### Critical · 3\n",
            "- ods_orders: 12% null user_id ×2\n> Check dq_orders_null",
            "#### ✅ Resolved · 4\n",
            "- replication lag 45s on db-2 — fired 09:52, resolved 09:57",
            "- queue depth back to normal — resolved 09:59",
            "**other** · 1\n- nightly backup finished late",
        ] {
            assert!(r.text.contains(want), "{want:?} not in {}", r.text);
        }
        assert_eq!(r.level, 0);
        let _ = UTC.clone();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// The built-in template used as a custom template gives the renderer's digest whenever
        /// the renderer lists whole sections; in every case it fits, ends with the footer and
        /// accounts for every alert.
        #[test]
        fn builtin_template_as_a_custom_one_fits_and_matches(
            alerts in prop::collection::vec(arb_alert(), 0..120),
            (max_bytes, robot, keyword, link, id, zone, catch_up) in arb_spec_parts(),
        ) {
            let t = builtin();
            let zones = zones();
            let plain = DigestSpec {
                robot, id, keyword, link, max_bytes,
                tz: &zones[zone],
                catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
                templates: None,
            };
            let templated = DigestSpec { templates: Some(&t), ..plain };
            let want = render(&plain, &alerts);
            let got = render(&templated, &alerts);
            prop_assert!(size(&got) <= max_bytes, "{} > {}", size(&got), max_bytes);
            let foot = format!("\n\n{}", footer(id, alerts.len()));
            prop_assert!(got.text.ends_with(&foot), "{}", got.text);
            prop_assert_eq!(got.listed + got.summarized, alerts.len());
            if let Some(kw) = keyword {
                prop_assert!(got.text.contains(kw));
            }
            let plan = Plan::new(&DingTalk, &plain, &alerts);
            let (choice, _) = plan.written().pop().expect("chosen");
            if choice.partial.is_none() && !choice.bare && choice.extras == ALL_EXTRAS {
                prop_assert_eq!(&got.text, &want.text);
                prop_assert_eq!((got.listed, got.level), (want.listed, want.level));
            }
        }
    }
}
