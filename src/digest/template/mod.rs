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
//!   renderer's order (see [`crate::digest`]) and the first that fits is sent, refilled as the
//!   renderer refills (a partly listed section lists the longest prefix of its entries that
//!   fits, found by binary search); a
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
//! | `rest` | none, or when the section is partly listed (only its first alert lines, or at level 2 its first groups, fit) `{count, by, top: [{name, count}], others, others_count}`: the alerts not listed, split by the values of label `by` (the label rule, see README), or by group when `by` is none; the five largest parts, and how many more parts with how many alerts. The built-in line is `- … and {count} more: {by} {name} {count}, …, {others} other values {others_count}` (`other groups` when `by` is none) |
//! | `overflow` | none, or when the section is partly listed `{count, groups: [{name, count}], other_groups, other_count}`: the same alerts as `rest`, always split by group (a group partly listed counts its alerts not listed), the five largest groups, and how many more groups with how many alerts |
//!
//! A group: `name` (the `alertname` label, else `job`, else `other`), `count` (its alerts),
//! `alerts` (its merged alerts shown: all of them at levels 0 and 1, only the first ones when the
//! section is partly listed and stops in this group; at level 2 the ones its group line names: the
//! first three, and more while the digest has room, handed out in order as the renderer does),
//! `more` (its alerts not in `alerts`; the built-in line ends `… and {more} more`). A partly
//! listed section holds only the groups with something listed.
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
pub const BUILTIN_BODY: &str = include_str!("../../../templates/body.md.j2");

/// Most work one rendering of a template may do, in minijinja fuel: one unit per instruction,
/// per 64 bytes of data made or handed to a filter, per item a built-in filter visits.
///
/// Without a bound, a template looping twice over `range(100000)` hangs `check`, `serve` and
/// every reload at load, where it renders the samples. Fuel also bounds what a rendering can
/// allocate (about 64 bytes per unit, so 320 MB), which is why it is no larger. The built-in
/// template takes about 13 000 on ordinary floods of any size and 1 000 000 on the most hostile
/// content measured (1-byte titles and 16 KiB texts, where every listed line hands a filter
/// 16 KiB): at most `max_bytes / 4` entries are ever rendered, and a rendering stops once its
/// output cannot fit. A test holds it under a quarter of this (it was an eighth before a section
/// could be listed as far as it fits: up to `max_bytes / 8` lines of 16 KiB texts). A runaway
/// is stopped in about 0.2 s (release build).
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
            extra: None,
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
mod tests;
