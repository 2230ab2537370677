//! Merging a batch of alerts into one digest for a chat robot, in its platform's dialect.
//!
//! # Modules
//!
//! - `plan` (with `index`): platform-neutral; what a digest says, block by block,
//!   and the accounting; `rest`: what a partly listed section says about the alerts it does
//!   not list (the label rule).
//! - `fit`: the budget search, generic over a [`Dialect`], in the dialect's [`Size`].
//! - [`dialect`]: the trait a platform implements, and what it must guarantee.
//! - [`dingtalk`]: DingTalk's dialect ([`DingTalk`]) and its escaping (`dingtalk::markdown`).
//! - [`wecom`]: WeCom's dialects ([`WeCom`], `markdown` and `markdown_v2`), in raw UTF-8 bytes.
//! - [`feishu`]: Feishu / Lark's two dialects ([`feishu::Post`], [`feishu::Card`]) and a post's
//!   escaping.
//! - `context` (the template context), `clock` (times), `text` (shared text helpers),
//!   [`template`] (custom templates).
//!
//! [`render`] writes DingTalk; [`render_in`] any dialect. The layout below is DingTalk's.
//!
//! # Layout
//!
//! ```text
//! ### <title>                                         robot, each section's count
//!
//! 2026-11-28 10:00:31 – 10:05:02 CST                  the alerts' time range, in `spec.tz`
//!
//! ⏪ Catch-up: the robot was unavailable …             only after an outage, throttle or block
//!
//! #### Critical · 3                                    firing alerts, most severe first
//! **dq_orders** · 3                                    groups: `alertname`, else `job`, else other
//! - ods_orders: 12% null user_id ×3 — first line of the text
//!
//! #### Warning · 673                                  a section listed as far as it fits …
//! **InstanceDown** · 673
//! - 127.0.0.1:20343 is down
//! - … and 324 more: rack r1 108, rack r2 108, rack r3 108   … then the rest, split
//!
//! #### ✅ Resolved · 2                                 resolved alerts, after every firing one
//! **replication** · 2
//! - replication lag 45s — fired 10:00, resolved 10:05
//!
//! [full alert list](<link>)
//!
//! sluice digest #<id> · <N> alerts                     always the last line
//! ```
//!
//! A firing alert whose (group, fingerprint) resolves later in the same digest is shown once, on
//! the resolved line, with both times: a robot that was down while a problem came and went should
//! not report it as two problems. A firing alert that arrives after the resolution is the problem
//! coming back, and stays in its firing section. Times read `HH:MM` (`MM-DD HH:MM` when the two
//! times of a line are not on one local day). The text uses only DingTalk's markdown subset
//! (headings, bold, list items, quotes, links); nothing from an alert can break a line or start
//! one of its own, and every cut is on a character boundary.
//!
//! Alert content is written in DingTalk's dialect by `dingtalk::markdown`: titles, group names and
//! labels as plain text, texts keeping only web links and emphasis; nothing from an alert is an
//! image, raw HTML, a mention, a bidi control or a line that reads as the footer. Every cost
//! below is measured on the escaped text, so the escaping never breaks the budget.
//!
//! # Levels
//!
//! Each section (four firing severities, then resolved) is shown at a level: (0) every merged
//! alert line with its text quoted, (1) one line per merged alert, (2) one line per group with its
//! count and first titles, (3) counted only, in a count block after the listed sections
//! (`- critical: 3 firing, 1 resolved`). Starting from everything at level 0, while the digest does
//! not fit, the least severe section not yet at level 3 is degraded one step (the resolved
//! section counts as least severe), so critical lines go last. Before that section goes from
//! level 1 to 2, and from 2 to 3, it is tried *partly listed*: its entries (alert lines with
//! their group headings, or group lines at level 2) in the section's order for as long as each
//! fits together with the rest line of what would then remain, then that rest line
//! (`- … and 322 more: rack r2 108, rack r3 107, rack r1 107`), which says how many alerts are
//! not listed and what tells them apart (the label rule in `rest`, else their groups). A partial
//! listing is used when it lists at least one entry; the most severe section at level 2 (the
//! floor before everything is counted only) may list none and show only its rest line. The first
//! configuration that fits is used; only when none does is everything counted. When it lists
//! every section it shows and one of them lost a level after the next less severe section was
//! counted only, what is left of the budget is refilled: that section comes back at the poorest
//! level of those before it (or poorer, down to level 2), fully listed or partly, and so on while
//! each comes back fully listed. So a section
//! uses the budget its more severe sections leave instead of falling to one line per group, more
//! severe sections are always fully listed when a less severe one lists anything, and resolved
//! alerts come after every firing one. [`Rendered::level`] is the level of the most degraded
//! section.
//!
//! # The fitting guarantee
//!
//! DingTalk rejects a message whose body is too large, and a rejected digest is worse than a short
//! one, so [`render`] never produces a digest larger than [`DigestSpec::max_bytes`], measured as
//! `json_escaped_len(title) + json_escaped_len(text)` (what the two strings cost inside the JSON
//! request body). For every `max_bytes >= MIN_BUDGET` the result fits, provided the keyword is at
//! most 64 bytes. The counted-only digest gives up, in this order, the link, the catch-up line and
//! the time range before it would not fit; below `MIN_BUDGET` the title heading and the footer are
//! kept even if they overflow, because a digest without them is useless to the reader.
//!
//! The cost of a text is additive over its characters, so sizes are tracked exactly while writing.
//! A configuration's fixed parts (headings, count block, link, footer) are measured first; lines
//! are then written until one would not fit, which rejects the configuration at once, so trying
//! one costs about `max_bytes` of formatting at most, whatever the batch size, and only what is
//! listed is ever formatted. In a partly listed section the rest line is reserved at an upper
//! bound (names in it are cut to 40 bytes, at most five are named, and a line split by a label is
//! used only up to 600 bytes) until an entry does not fit with the bound; from there each entry is
//! tried with the exact rest line after it, from counts of what remains that are updated entry by
//! entry, so the listing stops exactly where the next entry would not fit.
//!
//! Every alert is accounted for: `listed + summarized == total`, where listed alerts are those on
//! alert lines (levels 0 and 1), and the section headings, group lines, rest lines and count
//! lines give the numbers of the rest. The title counts each alert once, as the sections do:
//! `<robot>: 3 critical, 1 error, 2 resolved` is the firing sections' totals, most severe first,
//! then the resolved section's, so its numbers add up to the footer's and a resolved alert is not
//! counted under its severity too. [`Rendered::counts`] is another split: alert records by their
//! own severity and, separately, by their own status (a firing alert resolved later in the digest
//! counts as firing there).
//!
//! # Templates
//!
//! With [`DigestSpec::templates`], the title and/or body come from minijinja templates
//! ([`template`]) rendered against the context of each configuration in the same order;
//! the footer is appended by [`render`] in every case, so accounting never depends on a template.

use jiff::tz::TimeZone;

use crate::alert::{Alert, Severity, Status};
use plan::{Plan, custom_title};
use template::Templates;

mod blocks;
mod clock;
mod context;
pub mod dialect;
pub mod dingtalk;
pub mod feishu;
mod fit;
mod index;
mod plan;
mod rest;
pub mod slack;
pub mod template;
mod text;
pub mod wecom;

pub(crate) use context::sample_contexts;
pub use dialect::{Dialect, Size};
pub use dingtalk::{DingTalk, json_escaped_len};
pub(crate) use dingtalk::{plain, push_plain, push_quote, push_rich};
pub use plan::MIN_BUDGET;
pub use plan::{Entry, GroupLine, Overflow, Section, Summary, SummaryLine, footer, parse_footer};
pub use slack::Slack;
pub(crate) use text::excerpt;
pub use text::{cut_utf8, thousands};
pub use wecom::WeCom;

/// What to render.
#[derive(Debug, Clone, Copy)]
pub struct DigestSpec<'a> {
    /// Robot name, e.g. `ops`.
    pub robot: &'a str,
    /// Digest id, shown in the footer.
    pub id: u64,
    /// DingTalk keyword security: when set, title and text both contain it. It is inserted
    /// verbatim, so it should be a plain single-line word.
    pub keyword: Option<&'a str>,
    /// When set, a `[full alert list](<link>)` line goes before the footer.
    pub link: Option<&'a str>,
    /// Budget for the message, in the dialect's measure ([`Dialect::message_size`]); for
    /// DingTalk `json_escaped_len(title) + json_escaped_len(text)`. Given to
    /// `provider::render`, which sets the budget: the room to keep free for lines the delivery
    /// adds above the footer (`provider::render_with_lines`), 0 for none.
    pub max_bytes: usize,
    /// Time zone for every time shown.
    pub tz: &'a TimeZone,
    /// Set on the first digest after the robot came back from an outage, a throttle or a block:
    /// (since_ms, until_ms) of the trouble. The digest says it is a catch-up and the period its
    /// alerts cover.
    pub catch_up: Option<(i64, i64)>,
    /// Custom templates; `None` = the built-in format.
    pub templates: Option<&'a Templates>,
}

/// Alert records by their own severity and, separately, by their own status: both split the same
/// total. Not the split a digest shows, where a resolved alert counts only as resolved (see the
/// module documentation); a title built from these would count it twice.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Counts {
    pub critical: u64,
    pub error: u64,
    pub warning: u64,
    pub info: u64,
    pub firing: u64,
    pub resolved: u64,
}

impl Counts {
    /// Counts of a whole batch.
    pub fn of(alerts: &[Alert]) -> Counts {
        let mut c = Counts::default();
        for a in alerts {
            c.add(a);
        }
        c
    }

    /// Counts one more alert.
    pub fn add(&mut self, a: &Alert) {
        *self.slot(a.severity) += 1;
        match a.status {
            Status::Firing => self.firing += 1,
            Status::Resolved => self.resolved += 1,
        }
    }

    /// Sum over severities (which equals `firing + resolved`).
    pub fn total(&self) -> u64 {
        self.critical + self.error + self.warning + self.info
    }

    /// Alerts of severity `s`.
    pub fn get(&self, s: Severity) -> u64 {
        match s {
            Severity::Critical => self.critical,
            Severity::Error => self.error,
            Severity::Warning => self.warning,
            Severity::Info => self.info,
        }
    }

    fn slot(&mut self, s: Severity) -> &mut u64 {
        match s {
            Severity::Critical => &mut self.critical,
            Severity::Error => &mut self.error,
            Severity::Warning => &mut self.warning,
            Severity::Info => &mut self.info,
        }
    }
}

/// A rendered digest.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub title: String,
    /// Markdown; the footer is its last line.
    pub text: String,
    /// Alerts covered; always the number of alerts given.
    pub total: usize,
    /// Alerts shown on their own (merged) lines; a line `×12` counts 12.
    pub listed: usize,
    /// Alerts only counted in group, rest or count lines; `listed + summarized == total`.
    pub summarized: usize,
    /// Alert records by their own severity and status.
    pub counts: Counts,
    /// The level of the most degraded section: 0 (every alert with its text) to 3 (counts only).
    pub level: u8,
}

/// Renders `alerts` (in arrival order) into a DingTalk digest that fits `spec.max_bytes`; see
/// the module documentation for the layout, the levels and how they are fitted.
pub fn render(spec: &DigestSpec, alerts: &[Alert]) -> Rendered {
    render_in(&DingTalk, spec, alerts)
}

/// Renders `alerts` in `dialect`, with `spec.max_bytes` in the dialect's own measure.
pub fn render_in<D: Dialect>(dialect: &D, spec: &DigestSpec, alerts: &[Alert]) -> Rendered {
    let mut plan = Plan::new(dialect, spec, alerts);
    if let Some(t) = spec.templates {
        if t.has_title() {
            let ctx = plan.context(&plan.counted_only());
            match t.render_title(&ctx) {
                // An empty title would leave the message without one: keep the built-in.
                Ok(title) if title.trim().is_empty() => {}
                Ok(title) => plan.title = custom_title(&title, spec.keyword),
                Err(e) => tracing::warn!(robot = spec.robot, error = %e,
                    "title template failed; using the built-in title"),
            }
        }
        if t.has_body() {
            match plan.render_templated(t) {
                Ok(r) => return r,
                Err(e) => tracing::warn!(robot = spec.robot, error = %e,
                    "body template failed; using the built-in format"),
            }
        }
    }
    let (choice, out, listed) = plan.choose();
    plan.finish(out.text, listed, &choice)
}

#[cfg(test)]
pub(crate) mod tests;
