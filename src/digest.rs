//! Merging a batch of alerts into one markdown digest for a DingTalk robot.
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
//! Alert content is written in DingTalk's dialect by `markdown`: titles, group names and
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
//! not fit *with every section fully listed*, the least severe section not yet at level 3 is
//! degraded one step (the resolved section counts as least severe), so critical lines go last. The
//! first configuration that fits is used. When none fits before everything would be counted only,
//! the most severe section stays at level 2 and lists the prefix of its groups that fits, then an
//! overflow line (`- … and 1,234 more: dq_orders 800, …`): a flood still shows its worst groups.
//! Only when even that does not fit is everything counted. [`Rendered::level`] is the level of
//! the most degraded section.
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
//! listed is ever formatted. The overflow line is reserved at an upper bound (group names in it
//! are cut to 40 bytes, at most five are named).
//!
//! Every alert is accounted for: `listed + summarized == total`, where listed alerts are those on
//! alert lines (levels 0 and 1), and the section headings, group lines, overflow lines and count
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
//! ([`crate::template`]) rendered against the context of each configuration in the same order;
//! the footer is appended by [`render`] in every case, so accounting never depends on a template.

use std::cell::{Cell, OnceCell};
use std::cmp::Reverse;
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};

use jiff::Timestamp;
use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use serde::Serialize;

use crate::alert::{Alert, Severity, Status};
use template::Templates;

pub(crate) mod markdown;
pub mod template;

use markdown::{Kind, breaks_line, is_blank};

/// Smallest `max_bytes` for which [`render`] honours the budget.
pub const MIN_BUDGET: usize = 1024;

/// Alert titles are cut to this many bytes of what they show (then `…` is appended).
const TITLE_BYTES: usize = 200;
/// The excerpt of an alert's text is cut to this many bytes of what it shows (then `…`).
const EXCERPT_BYTES: usize = 160;
/// A level-0 quote shows at most this many non-blank lines of the text …
const QUOTE_LINES: usize = 3;
/// … and at most this many bytes of what they show.
const QUOTE_BYTES: usize = 300;
/// Group names in group headings and group lines are cut to this many bytes.
const HEADING_GROUP_BYTES: usize = 80;
/// A level-2 group line names this many of its first titles …
const GROUP_TITLES: usize = 3;
/// … each cut to this many bytes.
const GROUP_TITLE_BYTES: usize = 80;
/// Group names in overflow lines are cut to this many bytes (then `…` is appended); this bound is
/// what lets the overflow line be reserved before it is known.
const OVERFLOW_GROUP_BYTES: usize = 40;
/// Groups named in one overflow line; the rest are folded into `<k> other groups <n>`.
const OVERFLOW_GROUPS: usize = 5;
/// The robot name in the title is cut to this many bytes, which keeps the title near 200 bytes.
const ROBOT_BYTES: usize = 64;
/// A custom title is cut to this many bytes.
const CUSTOM_TITLE_BYTES: usize = 200;

const ELLIPSIS: &str = "…";
const OTHER_GROUP: &str = "other";
const OVERFLOW_PREFIX: &str = "- … and ";
const OVERFLOW_MORE: &str = " more: ";
const OTHER_GROUPS: &str = " other groups ";

/// Sections in display order: the four firing severities, then resolved.
const SECTIONS: usize = 5;
const RESOLVED: usize = 4;
const SECTION_NAMES: [&str; SECTIONS] = ["Critical", "Error", "Warning", "Info", "Resolved"];

/// The level of each section, indexed like the sections.
pub(crate) type Levels = [u8; SECTIONS];

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
    /// Budget for `json_escaped_len(title) + json_escaped_len(text)`.
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
    /// Alerts only counted in group, overflow or count lines; `listed + summarized == total`.
    pub summarized: usize,
    /// Alert records by their own severity and status.
    pub counts: Counts,
    /// The level of the most degraded section: 0 (every alert with its text) to 3 (counts only).
    pub level: u8,
}

/// Renders `alerts` (in arrival order) into a digest that fits `spec.max_bytes`; see the module
/// documentation for the layout, the levels and how they are fitted.
pub fn render(spec: &DigestSpec, alerts: &[Alert]) -> Rendered {
    let mut plan = Plan::new(spec, alerts);
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

/// What a digest shows: each section's level, and the extras that are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Choice {
    pub levels: Levels,
    /// A section that lists only a prefix of its groups, and how many, then an overflow line.
    pub partial: Option<(usize, usize)>,
    pub extras: Extras,
    /// Title heading and footer only: nothing else fits (budget below [`MIN_BUDGET`]).
    pub bare: bool,
}

/// Optional lines, given up in this order by a counted-only digest that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extras {
    pub range: bool,
    pub catch_up: bool,
    pub link: bool,
}

pub(crate) const ALL_EXTRAS: Extras = Extras {
    range: true,
    catch_up: true,
    link: true,
};

/// A batch indexed for rendering, with everything that does not depend on the configuration.
pub(crate) struct Plan<'a> {
    spec: &'a DigestSpec<'a>,
    alerts: &'a [Alert],
    index: Index<'a>,
    counts: Counts,
    clock: Clock<'a>,
    pub(crate) title: String,
    footer: String,
    /// The link, percent-encoded where it would end a markdown link destination.
    link: Option<String>,
    range: Option<(i64, i64)>,
    range_text: Option<String>,
    catch_up_text: Option<String>,
    /// Template values of each group's alerts, all of them and the first three: contexts of
    /// successive configurations share them instead of converting them again.
    entry_values: Vec<[OnceCell<minijinja::Value>; 2]>,
    /// [`Plan::section_cost`] of each section at levels 0–2, once measured.
    section_costs: [[Cell<Option<Option<usize>>>; 3]; SECTIONS],
}

/// A text being built, with its running cost (title included).
struct Out {
    text: String,
    used: usize,
}

impl Out {
    fn push(&mut self, s: &str) {
        self.text.push_str(s);
        self.used += cost(s);
    }
}

impl<'a> Plan<'a> {
    pub(crate) fn new(spec: &'a DigestSpec<'a>, alerts: &'a [Alert]) -> Plan<'a> {
        let (index, counts, times) = Index::build(alerts);
        let range = times.map(|t| (t.from, t.to));
        let mut clock = Clock {
            tz: spec.tz,
            ref_day: None,
        };
        clock.ref_day = range
            .map(|r| r.0)
            .or(spec.catch_up.map(|c| c.0))
            .map(|ms| clock.civil(ms).date());
        let range_text = range.map(|(from, to)| clock.range(from, to));
        let catch_up_text = spec
            .catch_up
            .map(|(since, until)| clock.catch_up(since, until, times.map(|t| t.arrived)));
        Plan {
            entry_values: (0..index.groups.len())
                .map(|_| Default::default())
                .collect(),
            section_costs: Default::default(),
            title: make_title(spec, &index.section_total),
            footer: footer(spec.id, alerts.len()),
            link: spec.link.map(escape_link),
            spec,
            alerts,
            index,
            counts,
            clock,
            range,
            range_text,
            catch_up_text,
        }
    }

    fn nonempty(&self, s: usize) -> bool {
        !self.index.sections[s].is_empty()
    }

    /// The configurations in degradation order, from everything at level 0 to everything
    /// counted only: the least severe section not yet at level 3 goes down one step at a time.
    pub(crate) fn sequence(&self) -> Vec<Levels> {
        let mut levels = [0u8; SECTIONS];
        let mut seq = vec![levels];
        for s in (0..SECTIONS).rev().filter(|&s| self.nonempty(s)) {
            for l in 1..=3 {
                levels[s] = l;
                seq.push(levels);
            }
        }
        seq
    }

    /// The configuration that counts everything, with every extra.
    fn counted_only(&self) -> Choice {
        Choice {
            levels: *self.sequence().last().expect("never empty"),
            partial: None,
            extras: ALL_EXTRAS,
            bare: false,
        }
    }

    /// The level of the most degraded non-empty section.
    fn level(&self, levels: &Levels) -> u8 {
        (0..SECTIONS)
            .filter(|&s| self.nonempty(s))
            .map(|s| levels[s])
            .max()
            .unwrap_or(0)
    }

    /// The most severe non-empty section: the one that keeps its lines longest.
    fn first_section(&self) -> Option<usize> {
        (0..SECTIONS).find(|&s| self.nonempty(s))
    }

    /// Picks and writes the built-in digest: the first configuration in degradation order that
    /// fits fully listed; else the most severe section at level 2 with an overflow line; else
    /// counts only, giving up extras as needed; else the bare title heading and footer.
    fn choose(&self) -> (Choice, Out, u64) {
        let seq = self.sequence();
        let (last, richer) = seq.split_last().expect("never empty");
        for levels in richer {
            if let Some(r) = self.write(levels, None, ALL_EXTRAS) {
                return r;
            }
        }
        if let (Some(floor), Some(s)) = (richer.last(), self.first_section())
            && let Some(r) = self.write(floor, Some(s), ALL_EXTRAS)
        {
            return r;
        }
        let fewer = [
            ALL_EXTRAS,
            Extras {
                link: false,
                ..ALL_EXTRAS
            },
            Extras {
                range: true,
                catch_up: false,
                link: false,
            },
            Extras {
                range: false,
                catch_up: false,
                link: false,
            },
        ];
        for extras in fewer {
            if let Some(r) = self.write(last, None, extras) {
                return r;
            }
        }
        let mut out = self.start();
        out.push("\n\n");
        out.push(&self.footer);
        let choice = Choice {
            levels: *last,
            partial: None,
            extras: fewer[3],
            bare: true,
        };
        (choice, out, 0)
    }

    /// The built-in digest of every configuration that fits fully listed, and the chosen one,
    /// each with its text (for comparing the built-in template with the renderer).
    #[cfg(test)]
    pub(crate) fn written(&self) -> Vec<(Choice, String)> {
        let mut all: Vec<(Choice, String)> = self
            .sequence()
            .iter()
            .filter_map(|l| self.write(l, None, ALL_EXTRAS))
            .map(|(c, out, _)| (c, out.text))
            .collect();
        let (c, out, _) = self.choose();
        all.push((c, out.text));
        all
    }

    #[cfg(test)]
    pub(crate) fn footer(&self) -> &str {
        &self.footer
    }

    fn start(&self) -> Out {
        let mut out = Out {
            text: String::with_capacity(self.spec.max_bytes.clamp(256, 64 * 1024)),
            used: cost(&self.title),
        };
        out.push("### ");
        out.push(&self.title);
        out
    }

    /// Writes the digest of `levels` (footer included). Without `overflow` every section is fully
    /// listed, and `None` is returned when that does not fit. With `overflow = Some(s)`, section
    /// `s` (at level 2, the only one listed) lists the prefix of its groups that fits, then an
    /// overflow line; `None` if even the overflow line alone does not fit.
    fn write(
        &self,
        levels: &Levels,
        overflow: Option<usize>,
        extras: Extras,
    ) -> Option<(Choice, Out, u64)> {
        let budget = self.spec.max_bytes;
        let listed_sections: Vec<usize> = (0..SECTIONS)
            .filter(|&s| self.nonempty(s) && levels[s] < 3)
            .collect();
        let range = self.range_text.as_deref().filter(|_| extras.range);
        let catch_up = self.catch_up_text.as_deref().filter(|_| extras.catch_up);
        let link = self.link.as_deref().filter(|_| extras.link);
        let mut fixed = 2 * cost(&self.title) + 4;
        for line in [range, catch_up].into_iter().flatten() {
            fixed += 4 + cost(line);
        }
        let mut summary = String::new();
        self.push_summary(&mut summary, levels);
        fixed += cost(&summary);
        if let Some(l) = link {
            fixed += 4 + LINK_PREFIX.len() + cost(l) + 1;
        }
        fixed += 4 + cost(&self.footer);
        // Fully listed sections are measured (each once per plan) before anything is written.
        for &s in &listed_sections {
            fixed += if overflow == Some(s) {
                self.heading_cost(s)
            } else {
                self.section_cost(s, levels[s])?
            };
        }
        if fixed > budget {
            return None;
        }
        // The overflow line is reserved at its bound until the last group is listed.
        let reserve = match overflow {
            Some(s) => {
                // Listing nothing must fit; beyond that, the bound is what greedy listing keeps.
                let mut none_listed = String::from("\n");
                push_overflow(
                    &mut none_listed,
                    &self.index.groups,
                    &self.index.sections[s],
                );
                if fixed + cost(&none_listed) > budget {
                    return None;
                }
                2 + self.overflow_bound(s)
            }
            None => 0,
        };

        let mut out = self.start();
        for line in [range, catch_up].into_iter().flatten() {
            out.push("\n\n");
            out.push(line);
        }
        let mut listed = 0u64;
        let mut partial = None;
        let mut heading = String::new();
        for &s in &listed_sections {
            heading.clear();
            self.push_section_heading(&mut heading, s);
            out.push("\n\n");
            out.push(&heading);
            let groups = &self.index.sections[s];
            if overflow == Some(s) {
                // Greedy: a group line goes in only with room for the overflow line after it,
                // unless it is the last.
                let mut lines = 0;
                let shown = self.each_line(s, levels[s], &mut |line, last| {
                    let keep = if last { 0 } else { reserve };
                    if fixed + lines + cost(line) + keep > budget {
                        return false;
                    }
                    lines += cost(line);
                    out.push(line);
                    true
                });
                if shown < groups.len() {
                    partial = Some((s, shown));
                    let mut buf = String::from("\n");
                    push_overflow(&mut buf, &self.index.groups, &groups[shown..]);
                    debug_assert!(cost(&buf) <= reserve, "overflow line over its bound: {buf}");
                    out.push(&buf);
                }
            } else {
                self.each_line(s, levels[s], &mut |line, _| {
                    out.push(line);
                    true
                });
                if levels[s] < 2 {
                    listed += self.index.section_total[s];
                }
            }
        }
        out.push(&summary);
        if let Some(l) = link {
            out.push("\n\n");
            out.push(LINK_PREFIX);
            out.push(l);
            out.push(")");
        }
        out.push("\n\n");
        out.push(&self.footer);
        debug_assert!(out.used <= budget, "{} > {budget}", out.used);
        let choice = Choice {
            levels: *levels,
            partial,
            extras,
            bare: false,
        };
        Some((choice, out, listed))
    }

    /// `\n\n#### <Section> · <n>`
    fn heading_cost(&self, s: usize) -> usize {
        let mut heading = String::new();
        self.push_section_heading(&mut heading, s);
        4 + cost(&heading)
    }

    /// The exact cost of section `s` fully listed at `level` (heading included), or `None` when
    /// it alone is over the budget. A section's lines do not depend on the other sections, so
    /// each (section, level) is formatted once per plan however many configurations use it, and
    /// measuring stops at the budget: a flood costs about `max_bytes` of formatting here.
    fn section_cost(&self, s: usize, level: u8) -> Option<usize> {
        let memo = &self.section_costs[s][usize::from(level)];
        if let Some(known) = memo.get() {
            return known;
        }
        let budget = self.spec.max_bytes;
        let mut total = self.heading_cost(s);
        let mut over = total > budget;
        if !over {
            self.each_line(s, level, &mut |line, _| {
                total += cost(line);
                over = total > budget;
                !over
            });
        }
        let known = (!over).then_some(total);
        memo.set(Some(known));
        known
    }

    /// Formats the lines of section `s` at `level` (0–2) one at a time, each with the newline
    /// before it, and passes each to `take` with whether it is the section's last line, until
    /// `take` returns false. Returns the number of groups whose lines were all taken.
    fn each_line(&self, s: usize, level: u8, take: &mut dyn FnMut(&str, bool) -> bool) -> usize {
        let groups = &self.index.sections[s];
        let mut buf = String::new();
        for (gpos, &g) in groups.iter().enumerate() {
            let last_group = gpos + 1 == groups.len();
            let merged = self.index.lines(g, self.alerts);
            buf.clear();
            buf.push('\n');
            if level == 2 {
                self.push_group_line(&mut buf, g, merged);
                if !take(&buf, last_group) {
                    return gpos;
                }
                continue;
            }
            let group = &self.index.groups[g];
            push_group_heading(&mut buf, group.name, group.total);
            if !take(&buf, false) {
                return gpos;
            }
            for (i, line) in merged.iter().enumerate() {
                buf.clear();
                buf.push('\n');
                self.push_entry(&mut buf, s, line, level);
                if !take(&buf, last_group && i + 1 == merged.len()) {
                    return gpos;
                }
            }
        }
        groups.len()
    }

    fn finish(&self, text: String, listed: u64, choice: &Choice) -> Rendered {
        debug_assert!(text.ends_with(&self.footer));
        let total = self.alerts.len();
        let listed = usize::try_from(listed).unwrap_or(total).min(total);
        Rendered {
            title: self.title.clone(),
            text,
            total,
            listed,
            summarized: total - listed,
            counts: self.counts.clone(),
            level: if choice.bare {
                3
            } else {
                self.level(&choice.levels)
            },
        }
    }

    fn push_section_heading(&self, out: &mut String, s: usize) {
        out.push_str("#### ");
        if s == RESOLVED {
            out.push_str("✅ ");
        }
        out.push_str(SECTION_NAMES[s]);
        out.push_str(" · ");
        push_thousands(out, self.index.section_total[s]);
    }

    /// `- **<group>** ×<n>: <title>; <title>; <title> …`
    fn push_group_line(&self, out: &mut String, g: usize, lines: &[Line]) {
        let group = &self.index.groups[g];
        out.push_str("- **");
        push_group_name(out, group.name, HEADING_GROUP_BYTES);
        out.push_str("** ×");
        push_thousands(out, group.total);
        out.push_str(": ");
        let shown = &lines[..lines.len().min(GROUP_TITLES)];
        for (i, line) in shown.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            push_plain(out, &self.alerts[line.first].title, GROUP_TITLE_BYTES);
        }
        if shown.iter().map(|l| l.count).sum::<u64>() < group.total {
            out.push_str(" …");
        }
    }

    /// One merged alert: `- <title> ×<n> — <excerpt>` in a firing section,
    /// `- <title> ×<n> — fired 10:00, resolved 10:05` in the resolved one; at level 0 the text
    /// follows as a quote instead of the excerpt.
    fn push_entry(&self, out: &mut String, s: usize, line: &Line, level: u8) {
        let a = &self.alerts[line.first];
        out.push_str("- ");
        push_plain(out, &a.title, TITLE_BYTES);
        let occurrences = line.occurrences(s);
        if occurrences > 1 {
            out.push_str(" ×");
            push_thousands(out, occurrences);
        }
        if s == RESOLVED {
            let (fired, resolved) = self.entry_times(s, line);
            out.push_str(" — ");
            if let Some(f) = fired {
                out.push_str("fired ");
                out.push_str(&f);
                out.push_str(", ");
            }
            out.push_str("resolved ");
            out.push_str(resolved.as_deref().unwrap_or("?"));
        } else if level == 1
            && let Some(e) = a.text.as_deref().and_then(excerpt)
        {
            out.push_str(" — ");
            push_rich(out, e, EXCERPT_BYTES);
        }
        if level == 0
            && let Some(t) = a.text.as_deref()
        {
            let start = out.len();
            out.push('\n');
            push_quote(out, t);
            if out.len() == start + 1 {
                out.truncate(start);
            }
        }
    }

    /// The fired and resolved times a line shows: `HH:MM` when on the same local day as each
    /// other (or, alone, as the digest's first time), else `MM-DD HH:MM`.
    fn entry_times(&self, s: usize, line: &Line) -> (Option<String>, Option<String>) {
        let fired = line.fired;
        let resolved = if s == RESOLVED { line.resolved } else { None };
        match (fired, resolved) {
            (Some(f), Some(r)) => {
                let (f, r) = (self.clock.civil(f), self.clock.civil(r));
                let day = f.date() == r.date();
                (Some(short_time(f, day)), Some(short_time(r, day)))
            }
            (one, other) => {
                let f = one.map(|ms| self.clock.short_alone(ms));
                (f, other.map(|ms| self.clock.short_alone(ms)))
            }
        }
    }

    /// The count block of the sections at level 3: a blank line, a `#### Counts · N` heading when
    /// some section above is listed, and `- <severity>: <n> firing, <m> resolved` lines.
    fn push_summary(&self, out: &mut String, levels: &Levels) {
        let Some(summary) = self.summary(levels) else {
            return;
        };
        out.push('\n');
        if summary.titled {
            out.push_str("\n#### Counts · ");
            push_thousands(out, summary.count);
        }
        for l in &summary.lines {
            out.push_str("\n- ");
            out.push_str(l.severity);
            out.push_str(": ");
            if l.firing > 0 {
                push_thousands(out, l.firing);
                out.push_str(" firing");
            }
            if l.resolved > 0 {
                if l.firing > 0 {
                    out.push_str(", ");
                }
                push_thousands(out, l.resolved);
                out.push_str(" resolved");
            }
        }
    }

    fn summary(&self, levels: &Levels) -> Option<CtxSummary> {
        let counted = |s: usize| self.nonempty(s) && levels[s] == 3;
        if !(0..SECTIONS).any(counted) {
            return None;
        }
        let mut lines = Vec::new();
        let mut count = 0;
        for sev in Severity::ALL {
            let si = sev.index();
            let firing = if counted(si) {
                self.index.section_total[si]
            } else {
                0
            };
            let resolved = if counted(RESOLVED) {
                self.index.resolved_by_severity[si]
            } else {
                0
            };
            if firing + resolved > 0 {
                count += firing + resolved;
                lines.push(CtxSummaryLine {
                    severity: sev.as_str(),
                    firing,
                    resolved,
                });
            }
        }
        Some(CtxSummary {
            titled: (0..SECTIONS).any(|s| self.nonempty(s) && levels[s] < 3),
            count,
            lines,
        })
    }

    /// An upper bound on the cost of section `s`'s overflow line (without the newline before
    /// it), whatever prefix of its groups is listed: every count is at most the section total,
    /// and the named groups are at most the five with the longest names.
    fn overflow_bound(&self, s: usize) -> usize {
        let section = &self.index.sections[s];
        let groups = &self.index.groups;
        let digits = thousands_len(self.index.section_total[s]);
        let mut scratch = String::new();
        let mut names: Vec<usize> = section
            .iter()
            .map(|&g| match groups[g].name {
                Some(n) => plain_cost(&mut scratch, n, OVERFLOW_GROUP_BYTES),
                None => OTHER_GROUP.len(),
            })
            .collect();
        names.sort_unstable_by_key(|&n| Reverse(n));
        let shown = section.len().min(OVERFLOW_GROUPS);
        let mut bound = cost(OVERFLOW_PREFIX)
            + digits
            + OVERFLOW_MORE.len()
            + names.iter().take(shown).sum::<usize>()
            + shown * (1 + digits)
            + shown.saturating_sub(1) * 2;
        if section.len() > OVERFLOW_GROUPS {
            bound += 2 + thousands_len(section.len() as u64) + OTHER_GROUPS.len() + digits;
        }
        bound
    }

    // ---- Templates ----

    /// Renders with a custom body template: the same order of configurations as [`Plan::choose`],
    /// each rendered with its own context, the first that fits wins; the level-2 floor lists the
    /// longest prefix of groups that fits (binary search); a body that does not fit even counted
    /// only is cut.
    fn render_templated(&self, t: &Templates) -> Result<Rendered, minijinja::Error> {
        let budget = self.spec.max_bytes;
        let seq = self.sequence();
        let (last, richer) = seq.split_last().expect("never empty");
        // Work bound: a configuration with more entries than this cannot fit if each entry
        // prints at least 4 bytes, and on a flood its context alone would hold 100 000.
        let cap = budget / 4;
        // A body longer than this cannot fit, so its rendering is abandoned there: a
        // configuration that does not fit costs about `max_bytes` of output, not all of it.
        let limit = budget.saturating_sub(cost(&self.title) + 4 + cost(&self.footer));
        let try_choice = |choice: Choice| -> Result<Option<Rendered>, minijinja::Error> {
            let Some(body) = t.render_body_within(&self.context(&choice), limit)? else {
                return Ok(None);
            };
            let text = self.with_footer(&body);
            Ok((cost(&self.title) + cost(&text) <= budget)
                .then(|| self.finish(text, self.listed(&choice), &choice)))
        };
        let full = |levels: Levels| Choice {
            levels,
            partial: None,
            extras: ALL_EXTRAS,
            bare: false,
        };
        for levels in richer {
            if self.entries(levels) > cap {
                continue;
            }
            if let Some(r) = try_choice(full(*levels))? {
                return Ok(r);
            }
        }
        if let (Some(floor), Some(s)) = (richer.last(), self.first_section()) {
            // Invariant: `lo` groups fit (checked first), `hi` groups do not (the full floor
            // did not fit, or was over the cap).
            let partial = |n: usize| Choice {
                partial: Some((s, n)),
                ..full(*floor)
            };
            let (mut lo, mut hi) = (0, self.index.sections[s].len());
            if let Some(mut best) = try_choice(partial(0))? {
                while hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    if self.entries_partial(s, mid) > cap {
                        hi = mid;
                        continue;
                    }
                    match try_choice(partial(mid))? {
                        Some(r) => (lo, best) = (mid, r),
                        None => hi = mid,
                    }
                }
                return Ok(best);
            }
        }
        let choice = full(*last);
        let body = t.render_body(&self.context(&choice))?;
        let text = self.with_footer(&body);
        if cost(&self.title) + cost(&text) <= budget {
            return Ok(self.finish(text, self.listed(&choice), &choice));
        }
        // A verbose template: cut its body so that the footer still fits.
        let body = self.keyworded(&body);
        let room = budget.saturating_sub(cost(&self.title) + 4 + cost(&self.footer));
        let cut = if cost(&body) <= room {
            body.as_str()
        } else {
            cut_cost(&body, room.saturating_sub(ELLIPSIS.len()))
        };
        let mut text = String::with_capacity(cut.len() + 8 + self.footer.len());
        text.push_str(cut.trim_end());
        if cut.len() < body.len() && room >= ELLIPSIS.len() {
            text.push_str(ELLIPSIS);
        }
        text.push_str("\n\n");
        text.push_str(&self.footer);
        Ok(self.finish(text, self.listed(&choice), &choice))
    }

    /// A template's body without its trailing blank lines (the footer follows a blank line of
    /// its own), with the keyword put first when it lacks it. Spaces that end its last line
    /// stay, as the renderer writes them: a level-2 group line ends `×1: ` when its title shows
    /// as nothing, and the built-in template must give the renderer's text.
    fn keyworded(&self, body: &str) -> String {
        let solid = body.trim_end().len();
        let line_end = body[solid..]
            .find(['\n', '\r'])
            .map_or(body.len(), |at| solid + at);
        let body = &body[..line_end];
        match self.spec.keyword {
            Some(kw) if !body.contains(kw) => format!("{kw}\n\n{body}"),
            _ => body.to_string(),
        }
    }

    fn with_footer(&self, body: &str) -> String {
        let mut text = self.keyworded(body);
        text.push_str("\n\n");
        text.push_str(&self.footer);
        text
    }

    /// Alerts on alert lines in `choice`.
    fn listed(&self, choice: &Choice) -> u64 {
        (0..SECTIONS)
            .filter(|&s| self.nonempty(s) && choice.levels[s] < 2 && !choice.bare)
            .map(|s| self.index.section_total[s])
            .sum()
    }

    /// Entries (group headings, alert lines, group lines) a fully listed configuration has.
    fn entries(&self, levels: &Levels) -> usize {
        (0..SECTIONS)
            .filter(|&s| self.nonempty(s) && levels[s] < 3)
            .map(|s| self.entries_partial_at(s, levels[s], self.index.sections[s].len()))
            .sum()
    }

    fn entries_partial(&self, s: usize, groups: usize) -> usize {
        self.entries_partial_at(s, 2, groups)
    }

    fn entries_partial_at(&self, s: usize, level: u8, groups: usize) -> usize {
        self.index.sections[s][..groups]
            .iter()
            .map(|&g| {
                let lines = self.index.lines(g, self.alerts).len();
                if level < 2 {
                    1 + lines
                } else {
                    1 + lines.min(GROUP_TITLES)
                }
            })
            .sum()
    }

    /// The template context of `choice`: only what that configuration shows.
    pub(crate) fn context(&self, choice: &Choice) -> minijinja::Value {
        let levels = &choice.levels;
        let bare = choice.bare;
        let section = |s: usize| -> Option<CtxSection<'_>> {
            if !self.nonempty(s) {
                return None;
            }
            let level = if bare { 3 } else { levels[s] };
            let all = &self.index.sections[s];
            let shown = match choice.partial {
                Some((p, n)) if p == s => n,
                _ if level < 3 => all.len(),
                _ => 0,
            };
            let groups = all[..shown]
                .iter()
                .map(|&g| self.ctx_group(s, g, level))
                .collect();
            let overflow = (shown < all.len() && level < 3)
                .then(|| ctx_overflow(&self.index.groups, &all[shown..]));
            let mut by_severity = CtxSeverities::default();
            for sev in Severity::ALL {
                let n = if s == RESOLVED {
                    self.index.resolved_by_severity[sev.index()]
                } else if s == sev.index() {
                    self.index.section_total[s]
                } else {
                    0
                };
                match sev {
                    Severity::Critical => by_severity.critical = n,
                    Severity::Error => by_severity.error = n,
                    Severity::Warning => by_severity.warning = n,
                    Severity::Info => by_severity.info = n,
                }
            }
            Some(CtxSection {
                name: SECTION_NAMES[s],
                severity: (s != RESOLVED).then(|| Severity::ALL[s].as_str()),
                status: if s == RESOLVED { "resolved" } else { "firing" },
                count: self.index.section_total[s],
                level,
                by_severity,
                groups,
                overflow,
            })
        };
        let total = &self.index.section_total;
        let safe = |s: &str| minijinja::Value::from_safe_string(s.to_string());
        let ctx = Context {
            robot: safe(self.spec.robot),
            id: self.spec.id,
            title: safe(&self.title),
            keyword: self.spec.keyword.map(safe),
            link: self
                .link
                .as_deref()
                .filter(|_| choice.extras.link && !bare)
                .map(safe),
            // The title's split, not the records' (`Rendered::counts`): each alert once.
            counts: CtxCounts {
                critical: total[Severity::Critical.index()],
                error: total[Severity::Error.index()],
                warning: total[Severity::Warning.index()],
                info: total[Severity::Info.index()],
                firing: total[..RESOLVED].iter().sum(),
                resolved: total[RESOLVED],
                total: self.alerts.len() as u64,
            },
            time_range: self
                .range
                .filter(|_| choice.extras.range && !bare)
                .map(|(from, to)| CtxRange {
                    from: self.clock.full(from),
                    to: self.clock.full(to),
                    text: self.range_text.clone().unwrap_or_default(),
                }),
            from_ms: self.range.map(|r| r.0),
            to_ms: self.range.map(|r| r.1),
            catch_up: self
                .spec
                .catch_up
                .filter(|_| choice.extras.catch_up && !bare)
                .map(|(since, until)| CtxCatchUp {
                    since: self.clock.full_minutes(since),
                    until: self.clock.full_minutes(until),
                    since_ms: since,
                    until_ms: until,
                    text: self.catch_up_text.clone().unwrap_or_default(),
                }),
            level: if bare { 3 } else { self.level(levels) },
            sections: (0..RESOLVED).filter_map(section).collect(),
            resolved: section(RESOLVED),
            summary: if bare { None } else { self.summary(levels) },
        };
        minijinja::Value::from(minijinja::value::Serde(&ctx))
    }

    fn ctx_group(&self, s: usize, g: usize, level: u8) -> CtxGroup<'_> {
        let group = &self.index.groups[g];
        let lines = self.index.lines(g, self.alerts);
        let top = level == 2;
        let lines = if top {
            &lines[..lines.len().min(GROUP_TITLES)]
        } else {
            lines
        };
        let alerts = self.entry_values[g][usize::from(top)]
            .get_or_init(|| {
                lines
                    .iter()
                    .map(|l| minijinja::Value::from(minijinja::value::Serde(self.ctx_alert(s, l))))
                    .collect()
            })
            .clone();
        let shown: u64 = lines.iter().map(|l| l.count).sum();
        CtxGroup {
            name: group.name.unwrap_or(OTHER_GROUP),
            count: group.total,
            alerts,
            more: group.total - shown,
        }
    }

    fn ctx_alert(&self, s: usize, line: &Line) -> CtxAlert<'_> {
        let a = &self.alerts[line.first];
        let (fired, resolved) = self.entry_times(s, line);
        CtxAlert {
            title: &a.title,
            text: a.text.as_deref(),
            severity: a.severity.as_str(),
            status: if s == RESOLVED { "resolved" } else { "firing" },
            labels: &a.labels,
            fingerprint: &a.fingerprint,
            source: a.source.as_deref(),
            count: line.count,
            occurrences: line.occurrences(s),
            fired,
            resolved,
            fired_ms: line.fired,
            resolved_ms: if s == RESOLVED { line.resolved } else { None },
            time_ms: a.time_ms,
            ends_ms: a.ends_ms,
            received_ms: a.received_ms,
        }
    }
}

/// The template context; every field is documented in [`crate::template`].
#[derive(Serialize)]
struct Context<'a> {
    // What sluice or the configuration wrote goes out as it is, even printed without a filter
    // (a value that is not safe is written as plain text; see `crate::template`).
    robot: minijinja::Value,
    id: u64,
    title: minijinja::Value,
    keyword: Option<minijinja::Value>,
    link: Option<minijinja::Value>,
    counts: CtxCounts,
    time_range: Option<CtxRange>,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    catch_up: Option<CtxCatchUp>,
    level: u8,
    sections: Vec<CtxSection<'a>>,
    resolved: Option<CtxSection<'a>>,
    summary: Option<CtxSummary>,
}

#[derive(Serialize)]
struct CtxCounts {
    critical: u64,
    error: u64,
    warning: u64,
    info: u64,
    firing: u64,
    resolved: u64,
    total: u64,
}

#[derive(Serialize, Default)]
struct CtxSeverities {
    critical: u64,
    error: u64,
    warning: u64,
    info: u64,
}

#[derive(Serialize)]
struct CtxRange {
    from: String,
    to: String,
    text: String,
}

#[derive(Serialize)]
struct CtxCatchUp {
    since: String,
    until: String,
    since_ms: i64,
    until_ms: i64,
    text: String,
}

#[derive(Serialize)]
struct CtxSection<'a> {
    name: &'static str,
    severity: Option<&'static str>,
    status: &'static str,
    count: u64,
    level: u8,
    by_severity: CtxSeverities,
    groups: Vec<CtxGroup<'a>>,
    overflow: Option<CtxOverflow<'a>>,
}

#[derive(Serialize)]
struct CtxGroup<'a> {
    name: &'a str,
    count: u64,
    /// A list of [`CtxAlert`], converted once per group.
    alerts: minijinja::Value,
    more: u64,
}

#[derive(Serialize)]
struct CtxAlert<'a> {
    title: &'a str,
    text: Option<&'a str>,
    severity: &'static str,
    status: &'static str,
    labels: &'a crate::alert::Labels,
    fingerprint: &'a str,
    source: Option<&'a str>,
    count: u64,
    occurrences: u64,
    fired: Option<String>,
    resolved: Option<String>,
    fired_ms: Option<i64>,
    resolved_ms: Option<i64>,
    time_ms: Option<i64>,
    ends_ms: Option<i64>,
    received_ms: i64,
}

#[derive(Serialize)]
struct CtxOverflow<'a> {
    count: u64,
    groups: Vec<CtxNamed<'a>>,
    other_groups: u64,
    other_count: u64,
}

#[derive(Serialize)]
struct CtxNamed<'a> {
    name: &'a str,
    count: u64,
}

#[derive(Serialize)]
struct CtxSummary {
    titled: bool,
    count: u64,
    lines: Vec<CtxSummaryLine>,
}

#[derive(Serialize)]
struct CtxSummaryLine {
    severity: &'static str,
    firing: u64,
    resolved: u64,
}

fn ctx_overflow<'a>(groups: &[Group<'a>], rest: &[usize]) -> CtxOverflow<'a> {
    let sorted = overflow_order(groups, rest);
    let named = &sorted[..sorted.len().min(OVERFLOW_GROUPS)];
    let others = &sorted[named.len()..];
    CtxOverflow {
        count: sorted.iter().map(|r| r.0).sum(),
        groups: named
            .iter()
            .map(|&(count, g)| CtxNamed {
                name: groups[g].name.unwrap_or(OTHER_GROUP),
                count,
            })
            .collect(),
        other_groups: others.len() as u64,
        other_count: others.iter().map(|r| r.0).sum(),
    }
}

/// A custom title: one line, at most 200 bytes, with the keyword when it lacks it.
fn custom_title(t: &str, keyword: Option<&str>) -> String {
    let mut out = String::new();
    match keyword {
        Some(kw) if !t.contains(kw) => {
            out.push_str(kw);
            out.push(' ');
            push_clean(
                &mut out,
                t,
                CUSTOM_TITLE_BYTES.saturating_sub(kw.len() + 1 + ELLIPSIS.len()),
            );
        }
        _ => push_clean(
            &mut out,
            t,
            CUSTOM_TITLE_BYTES.saturating_sub(ELLIPSIS.len()),
        ),
    }
    out.trim_end().to_string()
}

// ---- Index ----

struct Group<'a> {
    /// `None` is shown as `other`.
    name: Option<&'a str>,
    total: u64,
}

/// One digest line: alerts of one group (in one section) with equal fingerprint.
#[derive(Debug, Clone)]
struct Line {
    /// The first such alert, whose title and text the line shows.
    first: usize,
    /// Alerts merged into the line.
    count: u64,
    /// Of which firing.
    firing: u64,
    /// Earliest time a member fired: firing members' `time_ms.unwrap_or(received_ms)`, and
    /// resolved members' `time_ms` when the sender gave it.
    fired: Option<i64>,
    /// Latest time a resolved member resolved (`ends_ms.unwrap_or(received_ms)`).
    resolved: Option<i64>,
}

impl Line {
    /// How often the line's problem occurred: its alerts in a firing section; in the resolved
    /// section a problem that fired and resolved is one occurrence, so the larger of its firing
    /// and resolved alerts.
    fn occurrences(&self, s: usize) -> u64 {
        if s == RESOLVED {
            self.firing.max(self.count - self.firing)
        } else {
            self.count
        }
    }
}

/// The alerts' times: the digest's range and when they arrived.
#[derive(Clone, Copy)]
struct Times {
    from: i64,
    to: i64,
    arrived: (i64, i64),
}

fn fired_ms(a: &Alert) -> i64 {
    a.time_ms.unwrap_or(a.received_ms)
}

fn resolved_ms(a: &Alert) -> i64 {
    a.ends_ms.unwrap_or(a.received_ms)
}

/// A blank label (spaces, or characters that are not shown) would render as an empty bold
/// heading; it groups with the unlabelled.
fn group_of(a: &Alert) -> Option<&str> {
    a.group().filter(|g| !g.trim_matches(is_blank).is_empty())
}

/// Alerts by section and group. Lines are not merged here: a digest lists a few hundred lines at
/// most, so fingerprints are only merged for the groups that listing reaches (once each); the
/// rest of a large batch costs a group lookup per alert.
struct Index<'a> {
    groups: Vec<Group<'a>>,
    /// Alert indices grouped by group, in arrival order inside each group.
    members: Vec<usize>,
    /// Where each group's alerts start in `members`; one more entry than `groups`.
    starts: Vec<usize>,
    /// Per section, group indices in order of first appearance, `other` last.
    sections: [Vec<usize>; SECTIONS],
    section_total: [u64; SECTIONS],
    /// Alerts of the resolved section by severity, for the count block.
    resolved_by_severity: [u64; 4],
    /// Merged lines of each group, computed when first needed.
    lines: Vec<OnceCell<Vec<Line>>>,
}

impl<'a> Index<'a> {
    /// One pass over the alerts, backwards: a firing alert belongs to the resolved section when
    /// a resolution of its (group, fingerprint) comes later, which a backward pass has already
    /// seen. The same pass counts the alerts and finds their times: on a large batch each pass
    /// is a trip through memory, and the labels behind `Alert::group` are its dearest part.
    fn build(alerts: &'a [Alert]) -> (Index<'a>, Counts, Option<Times>) {
        let mut counts = Counts::default();
        let mut times: Option<Times> = None;
        // Each group name is hashed once, to a small id (0 for no name) that keys the rest. Keys
        // borrow from the alerts: 100 000 alerts must not mean 100 000 allocations.
        let mut name_ids: HashMap<&'a str, usize> = HashMap::new();
        let mut names: Vec<Option<&'a str>> = vec![None];
        // The group of each name in each section.
        let mut slots: Vec<[Option<usize>; SECTIONS]> = vec![[None; SECTIONS]];
        let mut resolved_later: HashSet<(usize, &'a str)> = HashSet::new();
        let mut groups: Vec<Group<'a>> = Vec::new();
        // The first alert of each group, which orders the groups of a section.
        let mut first: Vec<usize> = Vec::new();
        let mut section_total = [0u64; SECTIONS];
        let mut resolved_by_severity = [0u64; 4];
        let mut group_ids: Vec<usize> = vec![0; alerts.len()];
        for (i, a) in alerts.iter().enumerate().rev() {
            counts.add(a);
            let fired = fired_ms(a);
            let end = match a.status {
                Status::Firing => fired,
                Status::Resolved => fired.max(resolved_ms(a)),
            };
            let t = times.get_or_insert(Times {
                from: fired,
                to: end,
                arrived: (a.received_ms, a.received_ms),
            });
            t.from = t.from.min(fired);
            t.to = t.to.max(end);
            t.arrived = (
                t.arrived.0.min(a.received_ms),
                t.arrived.1.max(a.received_ms),
            );

            let id = match group_of(a) {
                None => 0,
                Some(name) => *name_ids.entry(name).or_insert_with(|| {
                    names.push(Some(name));
                    slots.push([None; SECTIONS]);
                    names.len() - 1
                }),
            };
            let resolved = match a.status {
                Status::Resolved => {
                    resolved_later.insert((id, a.fingerprint.as_str()));
                    true
                }
                Status::Firing => {
                    !resolved_later.is_empty()
                        && resolved_later.contains(&(id, a.fingerprint.as_str()))
                }
            };
            let si = if resolved {
                resolved_by_severity[a.severity.index()] += 1;
                RESOLVED
            } else {
                a.severity.index()
            };
            section_total[si] += 1;
            let g = *slots[id][si].get_or_insert_with(|| {
                groups.push(Group {
                    name: names[id],
                    total: 0,
                });
                first.push(i);
                groups.len() - 1
            });
            groups[g].total += 1;
            first[g] = i;
            group_ids[i] = g;
        }
        // Groups in order of first appearance, `other` last.
        let mut sections: [Vec<usize>; SECTIONS] = Default::default();
        for (si, section) in sections.iter_mut().enumerate() {
            section.extend(slots[1..].iter().filter_map(|s| s[si]));
            section.sort_unstable_by_key(|&g| first[g]);
            section.extend(slots[0][si]);
        }
        // Counting sort by group keeps arrival order inside each group.
        let mut starts = Vec::with_capacity(groups.len() + 1);
        let mut at = 0;
        for g in &groups {
            starts.push(at);
            at += g.total as usize;
        }
        starts.push(at);
        let mut next = starts.clone();
        let mut members = vec![0; alerts.len()];
        for (i, &g) in group_ids.iter().enumerate() {
            members[next[g]] = i;
            next[g] += 1;
        }
        let index = Index {
            lines: (0..groups.len()).map(|_| OnceCell::new()).collect(),
            groups,
            members,
            starts,
            sections,
            section_total,
            resolved_by_severity,
        };
        (index, counts, times)
    }

    /// The merged lines of group `g`, in order of first appearance.
    fn lines(&self, g: usize, alerts: &[Alert]) -> &[Line] {
        self.lines[g].get_or_init(|| {
            let members = &self.members[self.starts[g]..self.starts[g + 1]];
            let mut by_fp: HashMap<&str, usize> = HashMap::new();
            let mut lines: Vec<Line> = Vec::new();
            for &i in members {
                let a = &alerts[i];
                let l = match by_fp.entry(a.fingerprint.as_str()) {
                    Entry::Occupied(e) => &mut lines[*e.get()],
                    Entry::Vacant(e) => {
                        e.insert(lines.len());
                        lines.push(Line {
                            first: i,
                            count: 0,
                            firing: 0,
                            fired: None,
                            resolved: None,
                        });
                        lines.last_mut().expect("just pushed")
                    }
                };
                l.count += 1;
                let fired = match a.status {
                    Status::Firing => {
                        l.firing += 1;
                        Some(fired_ms(a))
                    }
                    Status::Resolved => {
                        let r = resolved_ms(a);
                        l.resolved = Some(l.resolved.map_or(r, |x| x.max(r)));
                        a.time_ms
                    }
                };
                if let Some(f) = fired {
                    l.fired = Some(l.fired.map_or(f, |x| x.min(f)));
                }
            }
            lines
        })
    }
}

/// `<robot>: 3 critical, 1 error, 2 resolved`: the section totals, so each alert is counted once
/// and the numbers add up to the footer's. Counting alert records by severity (as [`Counts`]
/// does) would count a resolved alert under its severity and again as resolved.
fn make_title(spec: &DigestSpec, section_total: &[u64; SECTIONS]) -> String {
    let mut t = String::with_capacity(128);
    push_clean(&mut t, spec.robot, ROBOT_BYTES);
    t.push(':');
    let mut first = true;
    let names = Severity::ALL.map(Severity::as_str).into_iter();
    let parts = section_total.iter().zip(names.chain(["resolved"]));
    for (&n, what) in parts {
        if n == 0 {
            continue;
        }
        t.push_str(if first { " " } else { ", " });
        first = false;
        push_thousands(&mut t, n);
        t.push(' ');
        t.push_str(what);
    }
    if first {
        t.push_str(" 0 alerts");
    }
    match spec.keyword {
        Some(kw) if !t.contains(kw) => format!("{kw} {t}"),
        _ => t,
    }
}

/// `sluice digest #<id> · <n> alerts` (`· 1 alert` for one); always the last line of a digest.
pub fn footer(id: u64, n: usize) -> String {
    let mut s = format!("sluice digest #{id} · ");
    push_thousands(&mut s, n as u64);
    s.push_str(if n == 1 { " alert" } else { " alerts" });
    s
}

/// Reads [`footer`] back from a digest's text: `(id, alerts)` from its last non-blank line, or
/// `None` if that line is not a footer. For the tools and tests that count what a robot received.
pub fn parse_footer(text: &str) -> Option<(u64, u64)> {
    let last = text.lines().rev().find(|l| !l.trim().is_empty())?;
    let rest = last.trim().strip_prefix("sluice digest #")?;
    let (id, n) = rest.split_once(" · ")?;
    let n = n
        .strip_suffix(" alerts")
        .or_else(|| n.strip_suffix(" alert"))?;
    Some((id.parse().ok()?, n.replace(',', "").parse().ok()?))
}

const LINK_PREFIX: &str = "[full alert list](";

/// The link goes inside `(...)` on one line, so what would end the destination or the line is
/// percent-encoded; ordinary URLs pass unchanged.
fn escape_link(link: &str) -> String {
    let mut s = String::with_capacity(link.len() + 8);
    for c in link.trim().chars() {
        if c.is_control() || c.is_whitespace() || matches!(c, '(' | ')' | '<' | '>') {
            let mut bytes = [0u8; 4];
            for b in c.encode_utf8(&mut bytes).bytes() {
                s.push('%');
                s.push(char::from(HEX[usize::from(b >> 4)]));
                s.push(char::from(HEX[usize::from(b & 0xf)]));
            }
        } else {
            s.push(c);
        }
    }
    s
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_group_heading(out: &mut String, name: Option<&str>, n: u64) {
    out.push_str("**");
    push_group_name(out, name, HEADING_GROUP_BYTES);
    out.push_str("** · ");
    push_thousands(out, n);
}

fn push_group_name(out: &mut String, name: Option<&str>, max: usize) {
    match name {
        Some(n) => push_plain(out, n, max),
        None => out.push_str(OTHER_GROUP),
    }
}

/// Unlisted groups with their unlisted counts, largest first (ties in order of appearance).
fn overflow_order(groups: &[Group], rest: &[usize]) -> Vec<(u64, usize)> {
    let mut rest: Vec<(u64, usize)> = rest
        .iter()
        .map(|&g| (groups[g].total, g))
        .filter(|&(n, _)| n > 0)
        .collect();
    rest.sort_by_key(|r| Reverse(r.0));
    rest
}

/// `- … and <N> more: <group> <n>, …, <k> other groups <n>` over the groups `rest`.
fn push_overflow(out: &mut String, groups: &[Group], rest: &[usize]) {
    let rest = overflow_order(groups, rest);
    out.push_str(OVERFLOW_PREFIX);
    push_thousands(out, rest.iter().map(|r| r.0).sum());
    out.push_str(OVERFLOW_MORE);
    for (i, &(n, g)) in rest.iter().take(OVERFLOW_GROUPS).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        push_group_name(out, groups[g].name, OVERFLOW_GROUP_BYTES);
        out.push(' ');
        push_thousands(out, n);
    }
    let others = rest.get(OVERFLOW_GROUPS..).unwrap_or_default();
    if !others.is_empty() {
        out.push_str(", ");
        push_thousands(out, others.len() as u64);
        out.push_str(if others.len() == 1 {
            " other group "
        } else {
            OTHER_GROUPS
        });
        push_thousands(out, others.iter().map(|r| r.0).sum());
    }
}

// ---- Times ----

/// Formats times in the digest's time zone.
struct Clock<'a> {
    tz: &'a TimeZone,
    /// The local day of the digest's first time: a time on it is shown without its date.
    ref_day: Option<Date>,
}

/// Out-of-range milliseconds are clamped rather than refused: a time is shown, not validated.
fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 {
        Timestamp::MIN
    } else {
        Timestamp::MAX
    })
}

impl Clock<'_> {
    fn civil(&self, ms: i64) -> DateTime {
        self.tz.to_datetime(timestamp(ms))
    }

    /// The zone abbreviation at `ms` (jiff's `%Z`, e.g. `CST`), or the offset if it has none.
    fn zone(&self, ms: i64) -> String {
        let zdt = timestamp(ms).to_zoned_datetime(self.tz.clone());
        jiff::fmt::strtime::format("%Z", &zdt)
            .unwrap_or_else(|_| self.tz.to_offset(timestamp(ms)).to_string())
    }

    /// `2026-11-28 10:00:31 CST`
    fn full(&self, ms: i64) -> String {
        let mut s = String::with_capacity(32);
        push_date_time(&mut s, self.civil(ms), true);
        s.push(' ');
        s.push_str(&self.zone(ms));
        s
    }

    /// `2026-11-28 10:00 CST`
    fn full_minutes(&self, ms: i64) -> String {
        let mut s = String::with_capacity(32);
        push_date_time(&mut s, self.civil(ms), false);
        s.push(' ');
        s.push_str(&self.zone(ms));
        s
    }

    /// `2026-11-28 10:00:31 – 10:05:02 CST`: the date once when both are on one day, the zone
    /// once when both have the same abbreviation.
    fn range(&self, from: i64, to: i64) -> String {
        let (a, b) = (self.civil(from), self.civil(to));
        let (za, zb) = (self.zone(from), self.zone(to));
        let mut s = String::with_capacity(48);
        push_date_time(&mut s, a, true);
        if from.div_euclid(1000) == to.div_euclid(1000) {
            s.push(' ');
            s.push_str(&zb);
            return s;
        }
        if za != zb {
            s.push(' ');
            s.push_str(&za);
        }
        s.push_str(" – ");
        if a.date() == b.date() {
            push_clock(&mut s, b, true);
        } else {
            push_date_time(&mut s, b, true);
        }
        s.push(' ');
        s.push_str(&zb);
        s
    }

    /// `⏪ Catch-up: the robot was unavailable 10:00 – 10:42 CST; these alerts arrived
    /// 10:00:31 – 10:42:10 CST.` Dates (`MM-DD`) are added to the times when any of them is not
    /// on the digest's first day.
    fn catch_up(&self, since: i64, until: i64, arrived: Option<(i64, i64)>) -> String {
        let mut times = vec![since, until];
        times.extend(arrived.iter().flat_map(|&(a, b)| [a, b]));
        let dated = times
            .iter()
            .any(|&ms| Some(self.civil(ms).date()) != self.ref_day);
        let mut s = String::from("⏪ Catch-up: the robot was unavailable ");
        self.push_span(&mut s, since, until, false, dated);
        match arrived {
            Some((a, b)) if a.div_euclid(1000) == b.div_euclid(1000) => {
                s.push_str("; these alerts arrived ");
                self.push_at(&mut s, a, true, dated);
                s.push(' ');
                s.push_str(&self.zone(a));
            }
            Some((a, b)) => {
                s.push_str("; these alerts arrived ");
                self.push_span(&mut s, a, b, true, dated);
            }
            None => {}
        }
        s.push('.');
        s
    }

    fn push_at(&self, s: &mut String, ms: i64, seconds: bool, dated: bool) {
        let dt = self.civil(ms);
        if dated {
            push_month_day(s, dt);
            s.push(' ');
        }
        push_clock(s, dt, seconds);
    }

    fn push_span(&self, s: &mut String, a: i64, b: i64, seconds: bool, dated: bool) {
        let (za, zb) = (self.zone(a), self.zone(b));
        self.push_at(s, a, seconds, dated);
        if za != zb {
            s.push(' ');
            s.push_str(&za);
        }
        s.push_str(" – ");
        self.push_at(s, b, seconds, dated);
        s.push(' ');
        s.push_str(&zb);
    }

    /// A time on its own: `HH:MM` on the digest's first day, else `MM-DD HH:MM`.
    fn short_alone(&self, ms: i64) -> String {
        let dt = self.civil(ms);
        short_time(dt, Some(dt.date()) == self.ref_day)
    }
}

/// `HH:MM`, or `MM-DD HH:MM` when the day is not implied.
fn short_time(dt: DateTime, same_day: bool) -> String {
    let mut s = String::with_capacity(11);
    if !same_day {
        push_month_day(&mut s, dt);
        s.push(' ');
    }
    push_clock(&mut s, dt, false);
    s
}

fn push_two(s: &mut String, n: i8) {
    s.push(char::from(b'0' + (n / 10) as u8));
    s.push(char::from(b'0' + (n % 10) as u8));
}

fn push_month_day(s: &mut String, dt: DateTime) {
    push_two(s, dt.month());
    s.push('-');
    push_two(s, dt.day());
}

fn push_clock(s: &mut String, dt: DateTime, seconds: bool) {
    push_two(s, dt.hour());
    s.push(':');
    push_two(s, dt.minute());
    if seconds {
        s.push(':');
        push_two(s, dt.second());
    }
}

fn push_date_time(s: &mut String, dt: DateTime, seconds: bool) {
    use std::fmt::Write;
    let _ = write!(s, "{:04}-", dt.year());
    push_month_day(s, dt);
    s.push(' ');
    push_clock(s, dt, seconds);
}

// ---- Text ----

/// The part of `s` that [`push_clean`] shows, and whether it was cut.
fn clean_part(s: &str, max: usize) -> (&str, bool) {
    let s = s.trim_matches(is_blank);
    let cut = cut_utf8(s, max);
    if cut.len() < s.len() {
        (cut.trim_end_matches(is_blank), true)
    } else {
        (s, false)
    }
}

/// Appends text that sluice or the configuration wrote (the robot name, a custom title): trimmed,
/// with line-breaking characters made spaces, cut to `max` bytes with `…`. Alert content goes
/// through [`push_plain`] or [`push_rich`] instead.
pub(crate) fn push_clean(out: &mut String, s: &str, max: usize) {
    let (part, was_cut) = clean_part(s, max);
    out.extend(part.chars().map(|c| if breaks_line(c) { ' ' } else { c }));
    if was_cut {
        out.push_str(ELLIPSIS);
    }
}

/// Appends one line of alert content written as `kind` in DingTalk's dialect ([`markdown`]),
/// cut to at most `max` bytes of what it shows (trailing blanks dropped at a cut); true if cut.
fn push_escaped(out: &mut String, s: &str, max: usize, kind: Kind) -> bool {
    let start = out.len();
    let mut cut = false;
    markdown::escape(s, kind, &mut |piece| {
        let room = max - (out.len() - start);
        if piece.len() > room {
            out.push_str(cut_utf8(piece, room));
            cut = true;
            return false;
        }
        out.push_str(piece);
        true
    });
    if cut {
        let kept = out[start..].trim_end_matches(is_blank).len();
        out.truncate(start + kept);
    }
    cut
}

/// Appends alert content that must read as plain text (a title, a group name, a label), cut to
/// `max` bytes with `…`.
pub(crate) fn push_plain(out: &mut String, s: &str, max: usize) {
    if push_escaped(out, s, max, Kind::Plain) {
        out.push_str(ELLIPSIS);
    }
}

/// Appends a line of an alert's text, which keeps its web links and emphasis, cut to `max`
/// bytes with `…`.
pub(crate) fn push_rich(out: &mut String, s: &str, max: usize) {
    if push_escaped(out, s, max, Kind::Rich) {
        out.push_str(ELLIPSIS);
    }
}

/// Alert content as plain text, whole (for values a template prints as they are).
pub(crate) fn plain(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    push_plain(&mut out, s, usize::MAX);
    out
}

/// The exact cost of what [`push_plain`] appends: measured on the same output, in `scratch`.
fn plain_cost(scratch: &mut String, s: &str, max: usize) -> usize {
    scratch.clear();
    push_plain(scratch, s, max);
    cost(scratch)
}

/// The first non-blank line of a text, trimmed.
pub(crate) fn excerpt(text: &str) -> Option<&str> {
    text.lines()
        .map(|l| l.trim_matches(is_blank))
        .find(|l| !l.is_empty())
}

/// Appends the text's first non-blank lines as a markdown quote (`> …` lines joined by `\n`),
/// each written as rich alert content: at most 3 lines and 300 bytes of what they show, cut on a
/// character boundary, `…` when there is more.
pub(crate) fn push_quote(out: &mut String, text: &str) {
    let mut room = QUOTE_BYTES;
    let mut lines = text
        .lines()
        .map(|l| l.trim_matches(is_blank))
        .filter(|l| !l.is_empty())
        .peekable();
    let mut shown = 0;
    while let Some(l) = lines.next() {
        let line_start = out.len();
        if shown > 0 {
            out.push('\n');
        }
        out.push_str("> ");
        let body = out.len();
        let cut = push_escaped(out, l, room, Kind::Rich);
        let written = out.len() - body;
        if written == 0 {
            // No room left for even one character: mark the cut on the line before.
            out.truncate(line_start);
            if shown > 0 {
                out.push_str(" …");
            }
            return;
        }
        shown += 1;
        room -= written;
        if cut {
            out.push_str(ELLIPSIS);
            return;
        }
        if shown == QUOTE_LINES {
            if lines.peek().is_some() {
                out.push_str(" …");
            }
            return;
        }
    }
}

/// Extra bytes serde_json spends on each byte when escaping a string: `\"`, `\\`, the short
/// escapes `\b \t \n \f \r`, and `\u00XX` for the other control bytes. Bytes of multi-byte
/// characters are never escaped.
const ESCAPE_EXTRA: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 5;
        i += 1;
    }
    t[0x08] = 1;
    t[b'\t' as usize] = 1;
    t[b'\n' as usize] = 1;
    t[0x0c] = 1;
    t[b'\r' as usize] = 1;
    t[b'"' as usize] = 1;
    t[b'\\' as usize] = 1;
    t
};

/// Byte length of `s` once serde_json escapes it, without the surrounding quotes.
pub fn json_escaped_len(s: &str) -> usize {
    s.len()
        + s.bytes()
            .map(|b| usize::from(ESCAPE_EXTRA[usize::from(b)]))
            .sum::<usize>()
}

fn cost(s: &str) -> usize {
    json_escaped_len(s)
}

/// The longest prefix of `s` on a char boundary whose JSON-escaped length is at most `max`.
fn cut_cost(s: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, c) in s.char_indices() {
        let mut buf = [0u8; 4];
        used += cost(c.encode_utf8(&mut buf));
        if used > max {
            return &s[..i];
        }
    }
    s
}

/// The longest prefix of `s` of at most `max_bytes` bytes that ends on a char boundary.
pub fn cut_utf8(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    // Index 0 is always a boundary, so this stops.
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let mut s = String::with_capacity(26);
    push_thousands(&mut s, n);
    s
}

fn push_thousands(out: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut len = 0;
    let mut v = n;
    loop {
        digits[len] = b'0' + (v % 10) as u8;
        len += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for i in (0..len).rev() {
        out.push(char::from(digits[i]));
        if i > 0 && i % 3 == 0 {
            out.push(',');
        }
    }
}

fn thousands_len(n: u64) -> usize {
    let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
    digits + (digits - 1) / 3
}

/// Contexts that take a template down every branch it can have, for
/// [`Templates::compile`](crate::digest::template::Templates::compile): the sample alerts at every
/// configuration of the degradation order, with an overflow line, bare, and a digest of no alerts
/// with every optional value none.
pub(crate) fn sample_contexts() -> Vec<minijinja::Value> {
    /// 2026-11-28 10:05:02 in Shanghai.
    const NOW: i64 = 1_795_831_502_000;
    const MIN: i64 = 60_000;
    let tz = TimeZone::UTC;
    let alerts = crate::digest::template::sample_alerts(NOW);
    let spec = DigestSpec {
        robot: "sample",
        id: 1,
        keyword: Some("alert"),
        link: Some("https://sluice.example/v1/digests/1"),
        max_bytes: 20_000,
        tz: &tz,
        catch_up: Some((NOW - 45 * MIN, NOW - 2 * MIN)),
        templates: None,
    };
    let plan = Plan::new(&spec, &alerts);
    let seq = plan.sequence();
    let full = |levels: &Levels| Choice {
        levels: *levels,
        partial: None,
        extras: ALL_EXTRAS,
        bare: false,
    };
    let mut contexts: Vec<minijinja::Value> = seq.iter().map(|l| plan.context(&full(l))).collect();
    if let (Some(floor), Some(s)) = (seq.iter().rev().nth(1), plan.first_section()) {
        contexts.push(plan.context(&Choice {
            partial: Some((s, 1)),
            ..full(floor)
        }));
    }
    contexts.push(plan.context(&Choice {
        bare: true,
        ..plan.counted_only()
    }));
    let none = DigestSpec {
        keyword: None,
        link: None,
        catch_up: None,
        ..spec
    };
    let plan = Plan::new(&none, &[]);
    contexts.push(plan.context(&plan.counted_only()));
    contexts
}

#[cfg(test)]
pub(crate) mod tests {

    use proptest::prelude::*;

    use super::*;

    pub(crate) static UTC: TimeZone = TimeZone::UTC;
    /// 2026-11-28 10:00:31 in Shanghai, 02:00:31 UTC.
    pub(crate) const T0: i64 = 1_795_831_231_000;
    const MIN: i64 = 60_000;

    pub(crate) fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").expect("bundled tzdb")
    }

    pub(crate) fn alert(
        title: &str,
        severity: Severity,
        group: Option<&str>,
        fingerprint: &str,
    ) -> Alert {
        let mut labels = crate::alert::Labels::new();
        if let Some(g) = group {
            labels.insert("alertname".to_string(), g.to_string());
        }
        Alert {
            title: title.to_string(),
            text: None,
            severity,
            status: Status::Firing,
            labels,
            fingerprint: fingerprint.to_string(),
            source: None,
            time_ms: None,
            ends_ms: None,
            received_ms: T0,
        }
    }

    fn resolved(mut a: Alert, at: i64) -> Alert {
        a.status = Status::Resolved;
        a.received_ms = at;
        a
    }

    pub(crate) fn spec(max_bytes: usize) -> DigestSpec<'static> {
        DigestSpec {
            robot: "ops",
            id: 42,
            keyword: None,
            link: None,
            max_bytes,
            tz: &UTC,
            catch_up: None,
            templates: None,
        }
    }

    pub(crate) fn size(r: &Rendered) -> usize {
        json_escaped_len(&r.title) + json_escaped_len(&r.text)
    }

    /// Lines that show alerts (not headings, group, overflow or count lines).
    fn alert_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("- ") && !l.starts_with("- … and "))
            .collect()
    }

    /// The text of `levels`, every section fully listed.
    fn render_at(spec: &DigestSpec, alerts: &[Alert], levels: Levels) -> String {
        let plan = Plan::new(spec, alerts);
        let (_, out, _) = plan
            .write(&levels, None, ALL_EXTRAS)
            .expect("the configuration fits");
        out.text
    }

    /// The configuration `render` chose.
    pub(crate) fn chosen(spec: &DigestSpec, alerts: &[Alert]) -> Choice {
        Plan::new(spec, alerts).choose().0
    }

    /// The chosen configuration is the first in degradation order that fits fully listed; a
    /// partial listing is the floor (the most severe section at level 2, all else counted) and
    /// only when that did not fit fully listed; counting everything comes after the floor did
    /// not fit even with an overflow line.
    fn check_richest(
        spec: &DigestSpec,
        alerts: &[Alert],
        plan: &Plan,
        choice: &Choice,
    ) -> Result<(), String> {
        // Whether `levels` fits, from its whole text written without a budget: independent of
        // the measuring that choosing does.
        let unlimited = DigestSpec {
            max_bytes: usize::MAX,
            ..*spec
        };
        let fits = |levels: &Levels| {
            let text = render_at(&unlimited, alerts, *levels);
            cost(&plan.title) + cost(&text) <= spec.max_bytes
        };
        let seq = plan.sequence();
        let k = seq
            .iter()
            .position(|l| *l == choice.levels)
            .ok_or_else(|| format!("{:?} is not in the order", choice.levels))?;
        if choice.bare {
            return Ok(());
        }
        if let Some(j) = (0..k).find(|&j| fits(&seq[j])) {
            return Err(format!("{:?} fits before {:?}", seq[j], seq[k]));
        }
        let last = seq.len() - 1;
        match choice.partial {
            Some((s, _)) => {
                if k + 1 != last || Some(s) != plan.first_section() {
                    return Err(format!("partial listing outside the floor: {choice:?}"));
                }
                if fits(&seq[k]) {
                    return Err("the floor fits fully listed, yet overflows".into());
                }
            }
            None if k == last && last > 0 => {
                let floor = plan.write(&seq[last - 1], plan.first_section(), ALL_EXTRAS);
                if floor.is_some() {
                    return Err("counted only, though the floor fits with overflow".into());
                }
                if choice.extras != ALL_EXTRAS && fits(&seq[k]) {
                    return Err("extras given up though they fit".into());
                }
            }
            None => {}
        }
        Ok(())
    }

    #[test]
    fn a_footer_reads_back() {
        for (id, n) in [(1, 0), (42, 1), (7, 1_238), (u64::MAX, 40_000)] {
            let text = format!("### t\n\n- x\n\n{}\n", footer(id, n as usize));
            assert_eq!(parse_footer(&text), Some((id, n)));
        }
        assert_eq!(parse_footer("### t\n\nno footer"), None);
        assert_eq!(parse_footer("sluice digest #x · 3 alerts"), None);
    }

    #[test]
    fn small_batch_lists_every_title_and_the_footer() {
        let alerts = vec![
            alert(
                "ods_orders: 12% null user_id",
                Severity::Critical,
                Some("dq_orders"),
                "a",
            ),
            alert("disk 91% on db-3", Severity::Warning, Some("node"), "b"),
            alert("backup late", Severity::Info, None, "c"),
            alert("api 5xx at 3%", Severity::Error, Some("api"), "d"),
        ];
        let r = render(&spec(19_000), &alerts);
        assert_eq!(r.title, "ops: 1 critical, 1 error, 1 warning, 1 info");
        assert_eq!((r.total, r.listed, r.summarized, r.level), (4, 4, 0, 0));
        assert_eq!(r.counts.total(), 4);
        let want = "### ops: 1 critical, 1 error, 1 warning, 1 info\n\n\
                    2026-11-28 02:00:31 UTC\n\n\
                    #### Critical · 1\n**dq_orders** · 1\n- ods_orders: 12% null user_id\n\n\
                    #### Error · 1\n**api** · 1\n- api 5xx at 3%\n\n\
                    #### Warning · 1\n**node** · 1\n- disk 91% on db-3\n\n\
                    #### Info · 1\n**other** · 1\n- backup late\n\n\
                    sluice digest #42 · 4 alerts";
        assert_eq!(r.text, want);
    }

    #[test]
    fn sections_by_severity_groups_by_first_appearance_other_last() {
        let alerts = vec![
            alert("w1", Severity::Warning, None, "1"),
            alert("w2", Severity::Warning, Some("zeta"), "2"),
            alert("c1", Severity::Critical, Some("beta"), "3"),
            alert("w3", Severity::Warning, Some("alpha"), "4"),
            alert("w4", Severity::Warning, Some("zeta"), "5"),
        ];
        let r = render(&spec(19_000), &alerts);
        let order: Vec<&str> = r
            .text
            .lines()
            .filter(|l| l.starts_with("**") || l.starts_with("#### "))
            .collect();
        assert_eq!(
            order,
            [
                "#### Critical · 1",
                "**beta** · 1",
                "#### Warning · 4",
                "**zeta** · 2",
                "**alpha** · 1",
                "**other** · 1"
            ]
        );
        assert_eq!(
            alert_lines(&r.text),
            ["- c1", "- w2", "- w4", "- w3", "- w1"]
        );
    }

    #[test]
    fn equal_fingerprints_merge_and_a_resolution_takes_its_firing_alerts() {
        let mut alerts = vec![alert("null rate", Severity::Critical, Some("dq"), "fp"); 12];
        alerts.push(alert("other fp", Severity::Critical, Some("dq"), "fp2"));
        let done = resolved(
            alert("null rate", Severity::Critical, Some("dq"), "fp"),
            T0 + 5 * MIN,
        );
        alerts.push(done.clone());
        alerts.push(done);
        // The same fingerprint in another group is another problem: it stays firing.
        alerts.push(alert("null rate", Severity::Critical, Some("dq2"), "fp"));
        let r = render(&spec(19_000), &alerts);
        let want = "### ops: 2 critical, 14 resolved\n\n\
                    2026-11-28 02:00:31 – 02:05:31 UTC\n\n\
                    #### Critical · 2\n**dq** · 1\n- other fp\n**dq2** · 1\n- null rate\n\n\
                    #### ✅ Resolved · 14\n**dq** · 14\n\
                    - null rate ×12 — fired 02:00, resolved 02:05\n\n\
                    sluice digest #42 · 16 alerts";
        assert_eq!(r.text, want);
        assert_eq!((r.listed, r.summarized), (16, 0));
        assert_eq!((r.counts.firing, r.counts.resolved), (14, 2));
    }

    #[test]
    fn an_alert_firing_again_after_its_resolution_stays_firing() {
        let a = alert("lag", Severity::Warning, Some("db"), "fp");
        let alerts = [
            a.clone(),
            resolved(a.clone(), T0 + MIN),
            Alert {
                received_ms: T0 + 2 * MIN,
                ..a
            },
        ];
        let r = render(&spec(19_000), &alerts);
        let want = "### ops: 1 warning, 2 resolved\n\n\
                    2026-11-28 02:00:31 – 02:02:31 UTC\n\n\
                    #### Warning · 1\n**db** · 1\n- lag\n\n\
                    #### ✅ Resolved · 2\n**db** · 2\n- lag — fired 02:00, resolved 02:01\n\n\
                    sluice digest #42 · 3 alerts";
        assert_eq!(r.text, want);
    }

    #[test]
    fn title_counts_a_resolved_alert_once_not_under_its_severity_too() {
        // Warnings firing and resolved: one fires and resolves later in the digest, one is a
        // resolution on its own, two are still firing.
        let lag = alert("replication lag", Severity::Warning, Some("db"), "lag");
        let alerts = [
            alert("ods_orders null", Severity::Critical, Some("dq"), "c"),
            lag.clone(),
            alert("disk 91%", Severity::Warning, Some("node"), "w1"),
            resolved(
                alert("cpu high", Severity::Warning, Some("node"), "cpu"),
                T0 + MIN,
            ),
            alert("disk 93%", Severity::Warning, Some("node"), "w2"),
            resolved(lag, T0 + 2 * MIN),
        ];
        let r = render(&spec(19_000), &alerts);
        // Not "1 critical, 5 warning, 3 resolved": 9 for a digest of 6 alerts.
        assert_eq!(r.title, "ops: 1 critical, 2 warning, 3 resolved");
        // The title's numbers are the section headings' and add up to the footer's.
        let number = |n: &str| n.parse::<u64>().expect("a number");
        let title: Vec<(String, u64)> = r.title["ops: ".len()..]
            .split(", ")
            .map(|p| {
                let (n, what) = p.split_once(' ').expect("<n> <what>");
                (what.to_string(), number(n))
            })
            .collect();
        let headings: Vec<(String, u64)> = r
            .text
            .lines()
            .filter_map(|l| l.strip_prefix("#### "))
            .map(|h| {
                let (name, n) = h.split_once(" · ").expect("<name> · <n>");
                (name.trim_start_matches("✅ ").to_lowercase(), number(n))
            })
            .collect();
        assert_eq!(title, headings);
        assert_eq!(title.iter().map(|t| t.1).sum::<u64>(), 6);
        assert!(
            r.text.ends_with("\n\nsluice digest #42 · 6 alerts"),
            "{}",
            r.text
        );
        // The records' own split is another matter: five warnings, two resolutions.
        assert_eq!((r.counts.warning, r.counts.resolved), (5, 2));
    }

    #[test]
    fn fired_and_resolved_times_read_in_the_robot_zone() {
        let mut fired = alert("replication lag", Severity::Warning, Some("db"), "lag");
        fired.time_ms = Some(T0);
        let mut done = resolved(fired.clone(), T0 + 5 * MIN);
        done.ends_ms = Some(T0 + 4 * MIN + 30_000);
        let alerts = [fired.clone(), done.clone()];
        let tz = shanghai();
        let s = DigestSpec {
            tz: &tz,
            ..spec(19_000)
        };
        let r = render(&s, &alerts);
        assert_eq!(
            alert_lines(&r.text),
            ["- replication lag — fired 10:00, resolved 10:05"]
        );
        // The range ends when the condition ended, not when its resolution arrived.
        assert!(
            r.text
                .contains("\n\n2026-11-28 10:00:31 – 10:05:01 CST\n\n"),
            "{}",
            r.text
        );
        let r = render(&spec(19_000), &alerts);
        assert_eq!(
            alert_lines(&r.text),
            ["- replication lag — fired 02:00, resolved 02:05"]
        );

        // 23:58 to 00:03 in Shanghai spans two days there, but not in UTC.
        let late = 1_795_881_480_000; // 2026-11-28 15:58 UTC
        fired.time_ms = Some(late);
        fired.received_ms = late;
        done.time_ms = Some(late);
        done.received_ms = late + 5 * MIN;
        done.ends_ms = None;
        let alerts = [fired, done];
        let r = render(&s, &alerts);
        assert_eq!(
            alert_lines(&r.text),
            ["- replication lag — fired 11-28 23:58, resolved 11-29 00:03"]
        );
        assert!(
            r.text
                .contains("\n\n2026-11-28 23:58:00 – 2026-11-29 00:03:00 CST\n\n")
        );
        let r = render(&spec(19_000), &alerts);
        assert_eq!(
            alert_lines(&r.text),
            ["- replication lag — fired 15:58, resolved 16:03"]
        );
    }

    #[test]
    fn a_resolution_alone_shows_what_is_known() {
        // Only the resolution: the fired time is shown when the sender gave the start.
        let mut with_start = resolved(alert("cpu", Severity::Error, Some("cpu"), "c"), T0);
        with_start.time_ms = Some(T0 - 30 * MIN);
        let without = resolved(alert("queue", Severity::Info, None, "q"), T0);
        // On another day than the digest's first time, a lone time gets its date.
        let mut late = resolved(alert("disk", Severity::Info, Some("disk"), "d"), T0);
        late.ends_ms = Some(T0 + 24 * 60 * MIN);
        let r = render(&spec(19_000), &[with_start, without, late]);
        assert_eq!(
            alert_lines(&r.text),
            [
                "- cpu — fired 01:30, resolved 02:00",
                "- disk — resolved 11-29 02:00",
                "- queue — resolved 02:00",
            ]
        );
        assert!(
            r.text
                .contains("\n2026-11-28 01:30:31 – 2026-11-29 02:00:31 UTC\n")
        );
    }

    #[test]
    fn time_range_line_under_the_heading() {
        let tz = shanghai();
        let s = DigestSpec {
            tz: &tz,
            ..spec(19_000)
        };
        let at = |ms: i64| Alert {
            received_ms: ms,
            ..alert("a", Severity::Info, None, "x")
        };
        let r = render(&s, &[at(T0)]);
        assert!(
            r.text
                .starts_with("### ops: 1 info\n\n2026-11-28 10:00:31 CST\n\n#### Info · 1\n"),
            "{}",
            r.text
        );
        let r = render(&s, &[at(T0 + 271_000), at(T0)]);
        assert!(
            r.text
                .contains("\n\n2026-11-28 10:00:31 – 10:05:02 CST\n\n")
        );
        // The client's time wins over arrival.
        let mut early = at(T0);
        early.time_ms = Some(T0 - 60 * MIN);
        let r = render(&s, &[early]);
        assert!(
            r.text.contains("\n\n2026-11-28 09:00:31 CST\n\n"),
            "{}",
            r.text
        );
        // A range across a change of abbreviation names both.
        let ny = TimeZone::get("America/New_York").expect("bundled tzdb");
        let s = DigestSpec {
            tz: &ny,
            ..spec(19_000)
        };
        let r = render(&s, &[at(1_793_511_000_000), at(1_793_514_600_000)]);
        assert!(
            r.text
                .contains("\n\n2026-11-01 01:30:00 EDT – 01:30:00 EST\n\n"),
            "{}",
            r.text
        );
        // A fixed offset has no abbreviation: the offset stands for it.
        let plus8 = TimeZone::fixed(jiff::tz::Offset::constant(8));
        let s = DigestSpec {
            tz: &plus8,
            ..spec(19_000)
        };
        let r = render(&s, &[at(T0)]);
        assert!(
            r.text.contains("\n\n2026-11-28 10:00:31 +08\n\n"),
            "{}",
            r.text
        );
        // No alerts, no range.
        assert_eq!(
            render(&spec(MIN_BUDGET), &[]).text,
            "### ops: 0 alerts\n\nsluice digest #42 · 0 alerts"
        );
    }

    #[test]
    fn catch_up_line_right_under_the_time_range() {
        let tz = shanghai();
        let s = DigestSpec {
            tz: &tz,
            catch_up: Some((T0 - 31_000, T0 + 42 * MIN)),
            ..spec(19_000)
        };
        let mut late = alert("b", Severity::Info, None, "y");
        late.received_ms = T0 + 41 * MIN + 39_000;
        let alerts = [alert("a", Severity::Info, None, "x"), late];
        let r = render(&s, &alerts);
        let want = "### ops: 2 info\n\n\
                    2026-11-28 10:00:31 – 10:42:10 CST\n\n\
                    ⏪ Catch-up: the robot was unavailable 10:00 – 10:42 CST; \
                    these alerts arrived 10:00:31 – 10:42:10 CST.\n\n\
                    #### Info · 2\n";
        assert!(r.text.starts_with(want), "{}", r.text);

        // Trouble that began the day before: every time gets its date.
        let s = DigestSpec {
            catch_up: Some((T0 - 12 * 60 * MIN, T0 + 42 * MIN)),
            ..s
        };
        let r = render(&s, &alerts[..1]);
        assert!(
            r.text.contains(
                "\n\n⏪ Catch-up: the robot was unavailable 11-27 22:00 – 11-28 10:42 CST; \
                 these alerts arrived 11-28 10:00:31 CST.\n\n"
            ),
            "{}",
            r.text
        );
        // Without a catch-up there is no such line.
        assert!(!render(&spec(19_000), &alerts).text.contains("Catch-up"));
    }

    /// Two critical groups, a warning, a problem that fired and resolved: small enough to show
    /// every level exactly.
    fn levels_case() -> Vec<Alert> {
        let mut orders = alert(
            "ods_orders null",
            Severity::Critical,
            Some("dq_orders"),
            "a",
        );
        orders.text = Some("partition 2026-11-28\n\nthreshold 1%, measured 12%".into());
        let mut users = alert("ods_users dup", Severity::Critical, Some("dq_users"), "b");
        users.text = Some("3 rows".into());
        let cpu = alert("cpu high", Severity::Warning, Some("cpu"), "d");
        vec![
            orders.clone(),
            users,
            alert("disk 91%", Severity::Warning, Some("node"), "c"),
            cpu.clone(),
            orders,
            resolved(cpu, T0 + 3 * MIN),
        ]
    }

    const LEVELS_HEAD: &str = "### ops: 3 critical, 1 warning, 2 resolved\n\n\
                               2026-11-28 02:00:31 – 02:03:31 UTC\n\n";

    #[test]
    fn each_level_exactly() {
        let alerts = levels_case();
        let s = spec(19_000);
        let at = |l: u8| render_at(&s, &alerts, [l; SECTIONS]);
        let level0 = "#### Critical · 3\n\
                      **dq_orders** · 2\n- ods_orders null ×2\n\
                      > partition 2026-11-28\n> threshold 1%, measured 12%\n\
                      **dq_users** · 1\n- ods_users dup\n> 3 rows\n\n\
                      #### Warning · 1\n**node** · 1\n- disk 91%\n\n\
                      #### ✅ Resolved · 2\n**cpu** · 2\n\
                      - cpu high — fired 02:00, resolved 02:03\n\n\
                      sluice digest #42 · 6 alerts";
        assert_eq!(at(0), format!("{LEVELS_HEAD}{level0}"));
        let level1 = "#### Critical · 3\n\
                      **dq_orders** · 2\n- ods_orders null ×2 — partition 2026-11-28\n\
                      **dq_users** · 1\n- ods_users dup — 3 rows\n\n\
                      #### Warning · 1\n**node** · 1\n- disk 91%\n\n\
                      #### ✅ Resolved · 2\n**cpu** · 2\n\
                      - cpu high — fired 02:00, resolved 02:03\n\n\
                      sluice digest #42 · 6 alerts";
        assert_eq!(at(1), format!("{LEVELS_HEAD}{level1}"));
        let level2 = "#### Critical · 3\n\
                      - **dq_orders** ×2: ods_orders null\n- **dq_users** ×1: ods_users dup\n\n\
                      #### Warning · 1\n- **node** ×1: disk 91%\n\n\
                      #### ✅ Resolved · 2\n- **cpu** ×2: cpu high\n\n\
                      sluice digest #42 · 6 alerts";
        assert_eq!(at(2), format!("{LEVELS_HEAD}{level2}"));
        let level3 = "- critical: 3 firing\n- warning: 1 firing, 2 resolved\n\n\
                      sluice digest #42 · 6 alerts";
        assert_eq!(at(3), format!("{LEVELS_HEAD}{level3}"));
        // Mixed: sections at level 3 are counted in a block after the listed ones.
        let mixed = render_at(&s, &alerts, [1, 0, 3, 0, 3]);
        let want = "#### Critical · 3\n\
                    **dq_orders** · 2\n- ods_orders null ×2 — partition 2026-11-28\n\
                    **dq_users** · 1\n- ods_users dup — 3 rows\n\n\
                    #### Counts · 3\n- warning: 1 firing, 2 resolved\n\n\
                    sluice digest #42 · 6 alerts";
        assert_eq!(mixed, format!("{LEVELS_HEAD}{want}"));
    }

    #[test]
    fn level_two_names_three_titles_then_an_ellipsis() {
        let mut alerts: Vec<Alert> = (0..5)
            .map(|i| {
                alert(
                    &format!("t{i}"),
                    Severity::Error,
                    Some("g"),
                    &format!("{i}"),
                )
            })
            .collect();
        alerts.push(alert("t0", Severity::Error, Some("g"), "0"));
        let text = render_at(&spec(19_000), &alerts, [2; SECTIONS]);
        assert!(text.contains("\n- **g** ×6: t0; t1; t2 …\n"), "{text}");
        alerts.truncate(3);
        let text = render_at(&spec(19_000), &alerts, [2; SECTIONS]);
        assert!(text.contains("\n- **g** ×3: t0; t1; t2\n"), "{text}");
    }

    #[test]
    fn quotes_keep_three_lines_and_300_bytes() {
        let mut a = alert("t", Severity::Info, None, "x");
        a.text = Some("one\n\n two \nthree\nfour".into());
        let text = render_at(&spec(19_000), std::slice::from_ref(&a), [0; SECTIONS]);
        assert!(text.contains("\n- t\n> one\n> two\n> three …\n"), "{text}");
        a.text = Some(format!("{}\nnext", "数".repeat(120)));
        let text = render_at(&spec(19_000), &[a], [0; SECTIONS]);
        // 100 three-byte characters fill the 300 bytes.
        let want = format!("\n- t\n> {}…\n", "数".repeat(100));
        assert!(text.contains(&want), "{text}");
    }

    #[test]
    fn the_least_severe_section_degrades_first_and_critical_last() {
        let mut alerts = Vec::new();
        for i in 0..40 {
            let mut a = alert(
                &format!("critical number {i} with a title long enough to matter"),
                Severity::Critical,
                Some(["dq_orders", "dq_users"][i % 2]),
                &format!("c{i}"),
            );
            a.text = Some(format!(
                "why {i}\n{}\n{}",
                "details ".repeat(12),
                "more ".repeat(12)
            ));
            alerts.push(a);
            alerts.push(alert(
                &format!("info {i}"),
                Severity::Info,
                Some("etl"),
                &format!("i{i}"),
            ));
            alerts.push(resolved(
                alert(
                    &format!("ok {i}"),
                    Severity::Warning,
                    Some("ok"),
                    &format!("r{i}"),
                ),
                T0,
            ));
        }
        let plan_levels = |max| {
            let s = spec(max);
            (chosen(&s, &alerts), render(&s, &alerts))
        };
        let seq = Plan::new(&spec(MIN_BUDGET), &alerts).sequence();
        assert_eq!(
            seq,
            [
                [0, 0, 0, 0, 0],
                [0, 0, 0, 0, 1],
                [0, 0, 0, 0, 2],
                [0, 0, 0, 0, 3],
                [0, 0, 0, 1, 3],
                [0, 0, 0, 2, 3],
                [0, 0, 0, 3, 3],
                [1, 0, 0, 3, 3],
                [2, 0, 0, 3, 3],
                [3, 0, 0, 3, 3],
            ]
        );
        // All at level 0 is 11 kB; the resolved lines go first, then info, and critical keeps
        // its quotes (9 kB) while anything else can give way.
        let (c, r) = plan_levels(10_000);
        assert_eq!(c.levels, [0, 0, 0, 0, 2], "{}", r.text);
        let (c, r) = plan_levels(9_600);
        assert_eq!(c.levels, [0, 0, 0, 2, 3], "{}", r.text);
        assert!(r.text.contains("\n> details details"));
        // With 7 kB critical loses its quotes, and everything else is counted.
        let (c, r) = plan_levels(7_000);
        assert_eq!(c.levels, [1, 0, 0, 3, 3], "{}", r.text);
        assert!(
            r.text
                .contains("\n\n#### Counts · 80\n- warning: 40 resolved\n- info: 40 firing\n")
        );
        assert_eq!((r.listed, r.summarized, r.level), (40, 80, 3));
        // With 2 kB critical is down to a line per group.
        let (c, r) = plan_levels(2_000);
        assert_eq!(c.levels, [2, 0, 0, 3, 3], "{}", r.text);
        assert!(
            r.text
                .contains("\n- **dq_orders** ×20: critical number 0 with")
        );
        assert_eq!((r.listed, r.summarized), (0, 120));
    }

    #[test]
    fn a_flood_keeps_its_worst_groups_with_an_overflow_line() {
        let mut alerts = Vec::new();
        for i in 0..30_000usize {
            alerts.push(alert(
                &format!("check {} failed on ods_table_{}", i % 300, i % 977),
                [Severity::Critical, Severity::Warning, Severity::Info][i % 3],
                Some(&format!("dq_check_{}", i % 900)),
                &format!("{}", i % 5_000),
            ));
        }
        let r = render(&spec(19_000), &alerts);
        let c = chosen(&spec(19_000), &alerts);
        // No error or resolved section: their levels do not matter and stay 0.
        assert_eq!(c.levels, [2, 0, 3, 3, 0]);
        let (s, shown) = c.partial.expect("an overflow line");
        assert_eq!(s, 0);
        assert!(shown > 50, "{shown} groups shown");
        assert!(size(&r) <= 19_000 && size(&r) > 17_000, "{}", size(&r));
        let overflow = r
            .text
            .lines()
            .find(|l| l.starts_with("- … and "))
            .expect("overflow line");
        let rest: u64 = parse_num(&overflow["- … and ".len()..overflow.find(" more: ").unwrap()]);
        // Critical groups are every third of 900, in order; the first 100 have 34 alerts.
        let listed: u64 = (0..shown).map(|k| if k < 100 { 34 } else { 33 }).sum();
        assert_eq!(rest, 10_000 - listed, "{overflow}");
        assert!(r.text.contains(
            "\n\n#### Counts · 20,000\n- warning: 10,000 firing\n- info: 10,000 firing\n"
        ));
        assert_eq!((r.listed, r.summarized, r.level), (0, 30_000, 3));
    }

    #[test]
    fn keyword_is_added_to_title_and_text_when_missing() {
        let alerts = [alert("a", Severity::Critical, None, "x")];
        let mut s = spec(19_000);
        s.keyword = Some("告警");
        let r = render(&s, &alerts);
        assert_eq!(r.title, "告警 ops: 1 critical");
        assert!(r.text.starts_with("### 告警 ops: 1 critical\n"));

        // Already in the title: not repeated.
        s.keyword = Some("ops");
        let r = render(&s, &alerts);
        assert_eq!(r.title, "ops: 1 critical");
        s.keyword = Some("critical");
        assert_eq!(render(&s, &alerts).title, "ops: 1 critical");
    }

    #[test]
    fn link_line_goes_before_the_footer() {
        let alerts = [alert("a", Severity::Critical, None, "x")];
        let mut s = spec(19_000);
        s.link = Some("https://sluice.example/r/ops?from=1&to=2");
        let r = render(&s, &alerts);
        assert!(
            r.text.ends_with(
                "\n\n[full alert list](https://sluice.example/r/ops?from=1&to=2)\n\n\
                 sluice digest #42 · 1 alert"
            ),
            "{}",
            r.text
        );
        // A link can neither break the line nor close the destination early.
        s.link = Some("https://x/a b(c)\nd");
        let r = render(&s, &alerts);
        assert!(
            r.text
                .contains("\n[full alert list](https://x/a%20b%28c%29%0Ad)\n")
        );
        assert!(
            !render(&spec(19_000), &alerts)
                .text
                .contains("full alert list")
        );
    }

    /// Whether a line reads as a footer to a reader: the footer's words and `#`, whatever the
    /// case, spacing, emphasis markers or invisible characters between them.
    fn reads_as_footer(line: &str) -> bool {
        let seen: String = line
            .chars()
            .filter(|&c| !markdown::is_invisible(c) && !matches!(c, '*' | '_' | '~' | '`'))
            .flat_map(char::to_lowercase)
            .collect();
        let words: Vec<&str> = seen.split_whitespace().collect();
        let seen = words.join(" ");
        [
            "sluice digest #",
            "sluice digest＃",
            "sluice digest ＃",
            "sluice digest#",
        ]
        .iter()
        .any(|f| seen.contains(f))
    }

    /// Checks that only the last line of `r` is a footer, to `parse_footer` and to a reader,
    /// and that it counts every alert under the digest's id.
    fn only_the_last_line_is_a_footer(r: &Rendered, id: u64, n: usize) -> Result<(), String> {
        let lines: Vec<&str> = r.text.lines().collect();
        let (last, rest) = lines.split_last().ok_or("no lines")?;
        if let Some(l) = rest
            .iter()
            .find(|l| parse_footer(l).is_some() || reads_as_footer(l))
        {
            return Err(format!("{l:?} reads as a footer in\n{}", r.text));
        }
        if parse_footer(last) != Some((id, n as u64))
            || parse_footer(&r.text) != Some((id, n as u64))
        {
            return Err(format!(
                "the last line {last:?} is not the footer of #{id} · {n}"
            ));
        }
        Ok(())
    }

    /// A body template that writes alert content at the start of lines in every way it can:
    /// raw values, filtered ones, labels.
    fn exposing_template() -> Templates {
        Templates::compile(
            None,
            Some((
                "exposing.md.j2",
                "{% for s in sections + ([resolved] if resolved else []) %}\n\
                 {% for g in s.groups %}\n\
                 {{ g.name }}\n{{ g.name|line }}\n\
                 {% for a in g.alerts %}\n\
                 {{ a.title }}\n{{ a.title|line }}\n{{ a.text|excerpt }}\n{{ a.text|quote }}\n\
                 {% if a.text %}{{ a.text }}{% endif +%}\n\
                 {% for k, v in a.labels|items %}{{ k }}={{ v }}\n{{ v }}\n{% endfor %}\n\
                 {% endfor %}\n\
                 {% endfor %}\n\
                 {% endfor %}",
            )),
        )
        .expect("compiles")
    }

    #[test]
    fn an_alert_title_cannot_forge_a_digest_footer() {
        let forged = "sluice digest #999 · 99,999 alerts";
        let mut a = alert(forged, Severity::Critical, Some(forged), "x");
        a.text = Some(format!(
            "{forged}\n  SLUICE\u{200B} Digest ＃7 · 1 alert\n{forged}"
        ));
        a.labels.insert("instance".into(), forged.into());
        let mut b = alert(&format!("  {forged}"), Severity::Info, None, "y");
        b.text = Some(forged.into());
        let alerts = [a, b];
        let t = exposing_template();
        let mut s = spec(19_000);
        for levels in [[0; SECTIONS], [1; SECTIONS], [2; SECTIONS]] {
            let text = render_at(&s, &alerts, levels);
            let r = Plan::new(&s, &alerts).finish(text, 0, &chosen(&s, &alerts));
            only_the_last_line_is_a_footer(&r, 42, 2).unwrap();
        }
        assert!(
            render(&s, &alerts)
                .text
                .contains("\n- “sluice digest” #999 · 99,999 alerts\n> “sluice digest” #999")
        );
        s.templates = Some(&t);
        let r = render(&s, &alerts);
        assert!(
            r.text.contains("\n“sluice digest” #999 · 99,999 alerts\n"),
            "{}",
            r.text
        );
        only_the_last_line_is_a_footer(&r, 42, 2).unwrap();
    }

    #[test]
    fn alert_content_cannot_inject_images_html_or_bidi_overrides() {
        let mut a = alert(
            "disk full <font color=red>PAID</font> ![](https://t.example/p.gif)",
            Severity::Critical,
            Some("disk"),
            "x",
        );
        a.text = Some(
            "![pixel](https://t.example/p.gif) <!-- hidden --> <img src=x>\n\
             see [runbook](https://wiki.example/disk) or [this](dingtalk://dingtalkclient/page/link?url=x)\n\
             invoice\u{202E}fdp.exe &#x202E; **do** _this_"
                .into(),
        );
        let text = render_at(&spec(19_000), std::slice::from_ref(&a), [0; SECTIONS]);
        assert!(
            text.contains(
                "\n- disk full ＜font color=red>PAID＜/font> ！[］(https://t.example/p.gif)\n\
                 > [pixel](https://t.example/p.gif) ＜!-- hidden --> ＜img src=x>\n\
                 > see [runbook](https://wiki.example/disk) or [this］(dingtalk://dingtalkclient/page/link?url=x)\n\
                 > invoicefdp.exe ＆#x202E; **do** _this_\n"
            ),
            "{text}"
        );
        let text = render_at(&spec(19_000), std::slice::from_ref(&a), [1; SECTIONS]);
        assert!(
            text.contains(" — [pixel](https://t.example/p.gif) ＜!-- hidden --> ＜img src=x>\n"),
            "{text}"
        );
        // The same through a template.
        let t = exposing_template();
        let mut s = spec(19_000);
        s.templates = Some(&t);
        let r = render(&s, std::slice::from_ref(&a));
        for bad in ["<font", "<!--", "<img", "![", "\u{202E}", "](dingtalk"] {
            assert!(!r.text.contains(bad), "{bad:?} in {}", r.text);
        }
    }

    #[test]
    fn footer_counts_alerts_singular_and_plural() {
        assert_eq!(footer(42, 1), "sluice digest #42 · 1 alert");
        assert_eq!(footer(7, 0), "sluice digest #7 · 0 alerts");
        assert_eq!(footer(7, 15), "sluice digest #7 · 15 alerts");
        assert_eq!(footer(7, 1_234_567), "sluice digest #7 · 1,234,567 alerts");
        let r = render(&spec(MIN_BUDGET), &[alert("a", Severity::Info, None, "x")]);
        assert!(
            r.text.ends_with("\n\nsluice digest #42 · 1 alert"),
            "{}",
            r.text
        );
    }

    #[test]
    fn no_alerts_renders_a_digest_of_zero() {
        let r = render(&spec(MIN_BUDGET), &[]);
        assert_eq!(r.title, "ops: 0 alerts");
        assert_eq!(r.text, "### ops: 0 alerts\n\nsluice digest #42 · 0 alerts");
        assert_eq!((r.total, r.listed, r.summarized, r.level), (0, 0, 0, 0));
    }

    /// Lines of over 700 bytes once escaped (quotes and backslashes cost double).
    fn unlistable(severity: Severity, group: &str, fingerprint: String) -> Alert {
        let mut a = alert(&"\"".repeat(300), severity, Some(group), &fingerprint);
        a.text = Some("\\".repeat(300));
        a
    }

    #[test]
    fn overflow_line_names_five_largest_groups_then_the_rest() {
        let sizes = [("g7", 4), ("g2", 300), ("g6", 10), ("g1", 600), ("g4", 100)];
        let sizes = sizes
            .into_iter()
            .chain([("g3", 200), ("g5", 20), ("g8", 4)]);
        let mut alerts = Vec::new();
        for (g, n) in sizes {
            for i in 0..n {
                alerts.push(unlistable(Severity::Warning, g, format!("{g}-{i}")));
            }
        }
        // Room for the section but not for one group line.
        let r = render(&spec(600), &alerts);
        assert_eq!((r.listed, r.summarized, r.level), (0, 1238, 2));
        assert!(size(&r) <= 600);
        let want = "### ops: 1,238 warning\n\n2026-11-28 02:00:31 UTC\n\n\
                    #### Warning · 1,238\n\
                    - … and 1,238 more: g1 600, g2 300, g3 200, g4 100, g5 20, 3 other groups 18\n\n\
                    sluice digest #42 · 1,238 alerts";
        assert_eq!(r.text, want);

        // One group left over is "1 other group".
        alerts.retain(|a| a.group() != Some("g7") && a.group() != Some("g8"));
        let r = render(&spec(600), &alerts);
        assert!(
            r.text.contains(
                "\n- … and 1,230 more: g1 600, g2 300, g3 200, g4 100, g5 20, 1 other group 10\n"
            ),
            "{}",
            r.text
        );
    }

    #[test]
    fn every_budget_is_honoured_exactly_at_the_edge() {
        // Sweeping the budget byte by byte puts every configuration's edge, and every stop point
        // of the overflow listing, on some budget: that is where an off-by-one shows.
        let mut alerts = Vec::new();
        for i in 0..48 {
            let mut a = alert(
                &format!("t\"{i}\" {}", "x".repeat(60 + 13 * (i % 7))),
                Severity::ALL[i % 4],
                Some(&format!("g{}{}", i / 4 % 12, ["", "\\"][i % 2])),
                &format!("{}", i % 20),
            );
            a.text = (i % 3 == 0).then(|| format!("why {i}\nbecause"));
            if i % 5 == 0 {
                a.status = Status::Resolved;
            }
            alerts.push(a);
        }
        // A fully listed configuration has the same text whatever the budget, so its size,
        // measured once, says exactly which budgets it fits: the expected choice is the first
        // configuration of the order within the budget.
        let mut s = spec(usize::MAX);
        s.link = Some("https://sluice.example/r/ops");
        let seq = Plan::new(&s, &alerts).sequence();
        let sizes: Vec<usize> = seq
            .iter()
            .map(|l| cost(&render_at(&s, &alerts, *l)) + cost(&Plan::new(&s, &alerts).title))
            .collect();
        // Every byte where overflow listing happens, and around every configuration's edge.
        let mut budgets: Vec<usize> = (MIN_BUDGET..2_600).collect();
        for &size in &sizes {
            budgets.extend(size.saturating_sub(40).max(MIN_BUDGET)..size + 40);
        }
        let mut seen = std::collections::HashSet::new();
        for max_bytes in budgets {
            s.max_bytes = max_bytes;
            let plan = Plan::new(&s, &alerts);
            let (choice, out, listed) = plan.choose();
            let r = plan.finish(out.text, listed, &choice);
            assert!(size(&r) <= max_bytes, "{} > {max_bytes}", size(&r));
            // The link is reserved for, so it is never what gives way.
            assert!(
                r.text
                    .contains("\n[full alert list](https://sluice.example/r/ops)\n")
            );
            let first = seq[..seq.len() - 1]
                .iter()
                .zip(&sizes)
                .find(|(_, size)| **size <= max_bytes);
            match first {
                Some((levels, _)) => {
                    assert_eq!(
                        (choice.levels, choice.partial),
                        (*levels, None),
                        "{max_bytes}"
                    )
                }
                None => assert_eq!(choice.levels, seq[seq.len() - 2], "{max_bytes}"),
            }
            // Greedy: the overflow listing stops only where one more group line cannot fit.
            if let Some((_, shown)) = choice.partial {
                assert!(size(&r) + 250 > max_bytes, "{shown} groups in {max_bytes}");
            }
            seen.insert((choice.levels, choice.partial.is_some()));
        }
        // The sweep went through the whole order, the floor's overflow listing included.
        for levels in &seq[..seq.len() - 1] {
            assert!(seen.contains(&(*levels, false)), "{levels:?} never chosen");
        }
        assert!(seen.contains(&(seq[seq.len() - 2], true)));
        assert!(seen.iter().any(|s| s.1));
    }

    #[test]
    fn counted_only_when_even_the_floor_does_not_fit() {
        let mut alerts = Vec::new();
        for (i, sev) in Severity::ALL.into_iter().enumerate() {
            for j in 0..6 {
                // Six groups with long quoted names make the overflow line too big.
                let g = format!("{j}{}", "\"".repeat(100));
                alerts.push(unlistable(sev, &g, format!("{i}-{j}")));
            }
        }
        let mut s = spec(700);
        s.link = Some("https://sluice.example/r/ops");
        let r = render(&s, &alerts);
        assert!(size(&r) <= 700);
        assert_eq!((r.listed, r.summarized, r.level), (0, 24, 3));
        let want = "### ops: 6 critical, 6 error, 6 warning, 6 info\n\n\
                    2026-11-28 02:00:31 UTC\n\n\
                    - critical: 6 firing\n- error: 6 firing\n- warning: 6 firing\n- info: 6 firing\n\n\
                    [full alert list](https://sluice.example/r/ops)\n\n\
                    sluice digest #42 · 24 alerts";
        assert_eq!(r.text, want);
        // With more room the most severe section comes back, with its overflow line.
        let r = render(&spec(MIN_BUDGET), &alerts);
        assert!(
            r.text.contains("\n\n#### Critical · 6\n- … and 6 more: "),
            "{}",
            r.text
        );
        assert!(
            r.text.contains("\n\n#### Counts · 18\n- error: 6 firing\n"),
            "{}",
            r.text
        );
    }

    #[test]
    fn worst_case_title_still_fits_min_budget() {
        // A 64-byte keyword and a robot name that both cost double once escaped, and counts of
        // five digits: the title is as large as it gets, and it appears twice. Group names of
        // quotes leave no room for sections, so this is the last layout before giving up; the
        // link is what gives way, the catch-up line still fits.
        let keyword = "\"".repeat(64);
        let robot = "\\".repeat(100);
        let link = format!("https://sluice.example/{}", "x".repeat(80));
        let mut alerts = Vec::new();
        for sev in Severity::ALL {
            for g in 0..5 {
                // Firing after the resolutions: firing again, so both counts are long.
                let name = format!("{g}{}", "\"".repeat(50));
                let a = alert("x", sev, Some(&name), sev.as_str());
                alerts.extend(std::iter::repeat_n(resolved(a.clone(), T0), 1_000));
                alerts.extend(std::iter::repeat_n(a, 1_000));
            }
        }
        let s = DigestSpec {
            robot: &robot,
            id: u64::MAX,
            keyword: Some(&keyword),
            link: Some(&link),
            max_bytes: MIN_BUDGET,
            tz: &UTC,
            catch_up: Some((T0 - 60 * MIN, T0)),
            templates: None,
        };
        let r = render(&s, &alerts);
        assert!(size(&r) <= MIN_BUDGET, "{}", size(&r));
        assert!(r.title.starts_with(&keyword));
        assert!(
            r.text
                .contains("\n- critical: 5,000 firing, 5,000 resolved\n"),
            "{}",
            r.text
        );
        assert!(!r.text.contains("full alert list"), "{}", r.text);
        assert!(
            r.text
                .contains("\n\n⏪ Catch-up: the robot was unavailable 01:00 – 02:00 UTC")
        );
        assert!(r.text.ends_with(
            "\n- info: 5,000 firing, 5,000 resolved\n\n\
             sluice digest #18446744073709551615 · 40,000 alerts"
        ));
    }

    #[test]
    fn below_min_budget_title_heading_and_footer_stay() {
        let alerts = [alert("a", Severity::Critical, None, "x")];
        let r = render(&spec(10), &alerts);
        assert_eq!(r.text, "### ops: 1 critical\n\nsluice digest #42 · 1 alert");
        assert_eq!((r.listed, r.summarized, r.level), (0, 1, 3));
    }

    #[test]
    fn titles_cannot_break_lines_or_become_headings() {
        let mut a = alert(
            "# big\n> quote\r\n\ttab\u{7}bell\u{2028}sep",
            Severity::Info,
            None,
            "x",
        );
        a.text = Some("line one\u{85}still one\n#two".to_string());
        // A `#` that starts a list item's content (or a quote line) would make a heading in
        // it, so it is written as its fullwidth twin.
        let text = render_at(&spec(19_000), std::slice::from_ref(&a), [1; SECTIONS]);
        assert_eq!(
            alert_lines(&text),
            ["- ＃ big > quote   tab bell sep — line one still one"]
        );
        let text = render_at(&spec(19_000), &[a], [0; SECTIONS]);
        assert!(
            text.contains("\n- ＃ big > quote   tab bell sep\n> line one still one\n> ＃two\n")
        );
        // Group names are cleaned too.
        let b = alert("t", Severity::Info, Some("g\nh"), "y");
        assert!(render(&spec(19_000), &[b]).text.contains("\n**g h** · 1\n"));
    }

    #[test]
    fn long_titles_are_cut_on_char_boundaries() {
        // 100 CJK characters: 300 bytes, cut to 66 characters (198 bytes).
        let title: String = "数据质量告警".chars().cycle().take(100).collect();
        let mut a = alert(&title, Severity::Critical, None, "x");
        a.text = Some("表".repeat(100));
        let text = render_at(&spec(19_000), &[a], [1; SECTIONS]);
        let line = alert_lines(&text)[0];
        let shown: String = title.chars().take(66).collect();
        let excerpt = "表".repeat(53);
        assert_eq!(line, format!("- {shown}… — {excerpt}…"));

        let ascii = alert(&"x".repeat(250), Severity::Critical, None, "y");
        let r = render(&spec(19_000), &[ascii]);
        assert_eq!(alert_lines(&r.text)[0], format!("- {}…", "x".repeat(200)));
        let exact = alert(&"x".repeat(200), Severity::Critical, None, "y");
        let r = render(&spec(19_000), &[exact]);
        assert_eq!(alert_lines(&r.text)[0], format!("- {}", "x".repeat(200)));
    }

    #[test]
    fn cut_utf8_never_splits_a_char() {
        let s = "a数é😀b";
        let want = [
            "", "a", "a", "a", "a数", "a数", "a数é", "a数é", "a数é", "a数é",
        ];
        for (max, w) in want.iter().enumerate() {
            assert_eq!(cut_utf8(s, max), *w, "max {max}");
        }
        assert_eq!(cut_utf8(s, 10), "a数é😀");
        assert_eq!(cut_utf8(s, 11), s);
        assert_eq!(cut_utf8(s, 100), s);
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
        for n in [0, 9, 10, 999, 1_000, 123_456, 1_000_000, u64::MAX] {
            assert_eq!(thousands_len(n), thousands(n).len(), "{n}");
        }
    }

    #[test]
    fn counts_by_severity_and_status() {
        let mut r = alert("x", Severity::Error, None, "x");
        r.status = Status::Resolved;
        let alerts = [alert("x", Severity::Critical, None, "x"), r.clone(), r];
        let c = Counts::of(&alerts);
        assert_eq!(
            c,
            Counts {
                critical: 1,
                error: 2,
                warning: 0,
                info: 0,
                firing: 1,
                resolved: 2
            }
        );
        assert_eq!(
            (c.total(), c.get(Severity::Error), c.get(Severity::Info)),
            (3, 2, 0)
        );
    }

    /// A batch of `n` alerts in `groups` groups with `lines` fingerprints each, every severity
    /// and status, each with a three-line text: the shapes a flood takes.
    fn flood(n: usize, groups: usize, lines: usize) -> Vec<Alert> {
        (0..n)
            .map(|i| {
                let g = format!("group_{}", i % groups);
                let fp = format!("fp{}", (i / groups) % lines);
                let mut a = alert(
                    &format!("{g}: check {fp} failed on partition {i}"),
                    Severity::ALL[i % 4],
                    Some(&g),
                    &fp,
                );
                a.text = Some(format!(
                    "Check {fp} failed on partition {i}.\nThreshold 1%, measured 12.3%.\nRunbook: dq/{g}"
                ));
                if i % 7 == 3 {
                    a.status = Status::Resolved;
                }
                a.received_ms = T0 + i as i64;
                a
            })
            .collect()
    }

    /// The built-in template as a custom one, on the real rendering path, over the shapes a
    /// flood takes and the most hostile content (1-byte titles, 16 KiB texts, which every
    /// listed line hands to a filter): it must stay far from the fuel that stops a runaway.
    #[test]
    fn the_builtin_template_never_comes_near_its_fuel() {
        let t = Templates::compile(
            None,
            Some(("body.md.j2", crate::digest::template::BUILTIN_BODY)),
        )
        .expect("compiles");
        let mut peaks = Vec::new();
        // Hostile texts are 16 KiB each, so they stop at 5 000 alerts (80 MB); more would not
        // render more, as at most `max_bytes / 4` entries are ever rendered.
        for (n, hostile_too) in [(10, true), (1_000, true), (5_000, true), (100_000, false)] {
            let mut peak = (0, 0);
            for hostile in [false, true].into_iter().filter(|&h| hostile_too || !h) {
                for (groups, lines) in [(1, n), (n, 1), (100, 10), (10, 100), (1, 1)] {
                    let mut alerts = flood(n, groups, lines);
                    if hostile {
                        for (i, a) in alerts.iter_mut().enumerate() {
                            a.title = (i % 10).to_string();
                            a.text = Some(format!("x\ny\nz\n{}", "w".repeat(16 * 1024)));
                        }
                    }
                    crate::digest::template::PEAK_FUEL.with(|p| p.set(0));
                    let mut s = spec(19_000);
                    s.templates = Some(&t);
                    let r = render(&s, &alerts);
                    assert_eq!(r.total, n);
                    let used = crate::digest::template::PEAK_FUEL.with(|p| p.get());
                    if hostile {
                        peak.1 = peak.1.max(used);
                    } else {
                        peak.0 = peak.0.max(used);
                    }
                }
            }
            peaks.push((n, peak));
        }
        eprintln!(
            "built-in template fuel (ordinary, hostile) by alerts: {peaks:?} of {}",
            crate::digest::template::FUEL
        );
        for (n, (ordinary, hostile)) in peaks {
            assert!(
                ordinary > 0 && (n > 5_000 || hostile > 0),
                "no rendering measured"
            );
            assert!(
                hostile.max(ordinary) * 8 < crate::digest::template::FUEL,
                "{n} alerts took {ordinary} / {hostile} fuel"
            );
        }
    }

    pub(crate) fn parse_num(s: &str) -> u64 {
        s.replace(',', "")
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {s:?}"))
    }

    fn nasty_string(max: usize) -> impl Strategy<Value = String> {
        let ch = prop_oneof![
            3 => any::<char>(),
            3 => prop::char::range('a', 'z'),
            2 => prop::char::range('\u{4e00}', '\u{9fa5}'),
            2 => prop::sample::select(vec![
                '"', '\\', '\n', '\r', '\t', '\u{0}', '\u{1b}', '\u{7f}', '\u{85}', '\u{2028}',
                '#', '>', '*', ' ', '…', '×',
            ]),
        ];
        prop::collection::vec(ch, 0..max).prop_map(|v| v.into_iter().collect())
    }

    const GROUPS: [Option<(&str, &str)>; 8] = [
        None,
        Some(("alertname", "dq_orders")),
        Some(("alertname", "dq_users")),
        Some(("job", "etl")),
        Some(("alertname", "  ")),
        Some((
            "alertname",
            "数据质量数据质量数据质量数据质量数据质量数据质量数据质量数据质量",
        )),
        Some(("alertname", "a\"b\nc\\d")),
        Some((
            "job",
            "\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"",
        )),
    ];

    pub(crate) fn arb_alert() -> impl Strategy<Value = Alert> {
        // Repeating a short random string reaches past the 200-byte cut cheaply.
        let long = |n| (nasty_string(n), 1..8usize).prop_map(|(s, k)| s.repeat(k));
        let times = (
            0..3 * 86_400_000i64,
            prop::option::of(-3_600_000..3_600_000i64),
            prop::option::of(0..3_600_000i64),
        );
        (
            long(30),
            prop::option::of(long(25)),
            0..4usize,
            prop::sample::select(vec![false, false, true]),
            0..GROUPS.len(),
            0..6u8,
            times,
        )
            .prop_map(|(title, text, sev, resolved, g, fp, (at, time, ends))| {
                let mut a = alert(&title, Severity::ALL[sev], None, &format!("fp{fp}"));
                a.text = text;
                a.received_ms = T0 + at;
                a.time_ms = time.map(|t| T0 + at + t);
                if resolved {
                    a.status = Status::Resolved;
                    a.ends_ms = ends.map(|e| T0 + at - e);
                }
                if let Some((k, v)) = GROUPS[g] {
                    a.labels.insert(k.to_string(), v.to_string());
                }
                a
            })
    }

    /// Alert content made of what markdown, DingTalk and sluice's footer read.
    fn hostile_string() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            2 => nasty_string(6),
            3 => prop::sample::select(vec![
                "sluice digest #", "SLUICE  digest ＃12 · 3 alerts", "sluice\u{200B} digest#",
                "sluice **digest** #1", "sluice digest #1 · 2 alerts", "@13800000000", "@all",
                "![x](http://p.example/x.gif)", "![](http://p)", "<font color=red>", "<!-- x -->",
                "<img src=x>", "<https://a>", "\u{202E}", "\u{2066}", "\u{200F}", "&#x202E;",
                "&lt;", "&amp;", "[a](dingtalk://x)", "[a]( javascript:x)", "[a](https://ok)",
                "[a]: http://e", "[b][a]", "# ", "> ", "- ", "+ ", "1. ", "***", "---", "=",
                "\n", "\n\n", "`", "_", "*", "~", "\\", "](", "[", "]", "!", "<", "&",
            ])
            .prop_map(str::to_string),
        ];
        prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
    }

    fn arb_hostile_alert() -> impl Strategy<Value = Alert> {
        (
            hostile_string(),
            prop::option::of(hostile_string()),
            prop::option::of(hostile_string()),
            hostile_string(),
            0..4usize,
            any::<bool>(),
            0..4u8,
        )
            .prop_map(|(title, text, group, label, sev, resolved, fp)| {
                let mut a = alert(
                    &title,
                    Severity::ALL[sev],
                    group.as_deref(),
                    &format!("fp{fp}"),
                );
                a.text = text;
                a.labels.insert("instance".into(), label);
                if resolved {
                    a.status = Status::Resolved;
                }
                a
            })
    }

    /// A section as the rules say it should be: its groups, each with its merged lines
    /// (first alert, alerts, occurrences).
    #[derive(Default)]
    struct RefSection {
        total: u64,
        groups: Vec<RefGroup>,
    }

    /// Name, alerts, lines (first alert, alerts, occurrences).
    type RefGroup = (Option<String>, u64, Vec<(usize, u64, u64)>);

    /// Sections straight from the rules, quadratic and obvious.
    fn reference(alerts: &[Alert]) -> Vec<RefSection> {
        let group = |a: &Alert| {
            a.group()
                .filter(|g| !g.trim().is_empty())
                .map(str::to_string)
        };
        let section_of = |i: usize| {
            let a = &alerts[i];
            let later_resolution = alerts[i + 1..].iter().any(|b| {
                b.status == Status::Resolved
                    && b.fingerprint == a.fingerprint
                    && group(b) == group(a)
            });
            if a.status == Status::Resolved || later_resolution {
                RESOLVED
            } else {
                a.severity.index()
            }
        };
        let mut out: Vec<RefSection> = (0..SECTIONS).map(|_| RefSection::default()).collect();
        for (s, section) in out.iter_mut().enumerate() {
            let members: Vec<usize> = (0..alerts.len()).filter(|&i| section_of(i) == s).collect();
            section.total = members.len() as u64;
            let mut names: Vec<Option<String>> = Vec::new();
            for &i in &members {
                if !names.contains(&group(&alerts[i])) {
                    names.push(group(&alerts[i]));
                }
            }
            names.sort_by_key(|g| g.is_none());
            for name in names {
                let mut lines: Vec<(usize, u64, u64)> = Vec::new();
                let mut firing: Vec<u64> = Vec::new();
                let in_group: Vec<usize> = members
                    .iter()
                    .copied()
                    .filter(|&i| group(&alerts[i]) == name)
                    .collect();
                for &i in &in_group {
                    let f = u64::from(alerts[i].status == Status::Firing);
                    match lines
                        .iter()
                        .position(|l| alerts[l.0].fingerprint == alerts[i].fingerprint)
                    {
                        Some(p) => {
                            lines[p].1 += 1;
                            firing[p] += f;
                        }
                        None => {
                            lines.push((i, 1, 0));
                            firing.push(f);
                        }
                    }
                }
                for (l, f) in lines.iter_mut().zip(firing) {
                    l.2 = if s == RESOLVED { f.max(l.1 - f) } else { l.1 };
                }
                section.groups.push((name, in_group.len() as u64, lines));
            }
        }
        out
    }

    /// The start of what a title shows: its plain text in DingTalk's dialect (which
    /// `markdown`'s own tests check), 20 characters that no cut at 200 bytes reaches.
    fn shown_title_start(title: &str) -> String {
        let t: String = plain(title).chars().take(20).collect();
        t.trim_end().to_string()
    }

    fn clean(s: Option<&str>, max: usize) -> String {
        let mut out = String::new();
        push_group_name(&mut out, s, max);
        out
    }

    /// Checks the text line by line against the reference sections and the chosen
    /// configuration: every heading, group and count in place, every listed line the right
    /// alert with the right count, and everything counted exactly once.
    fn check_structure(
        r: &Rendered,
        choice: &Choice,
        alerts: &[Alert],
        spec: &DigestSpec,
    ) -> Result<(), TestCaseError> {
        let sections = reference(alerts);
        let lines: Vec<&str> = r.text.split('\n').collect();
        let at = std::cell::Cell::new(0);
        let next = || {
            at.set(at.get() + 1);
            lines.get(at.get()).copied().unwrap_or("<end>")
        };
        prop_assert_eq!(lines[0], format!("### {}", r.title));
        // The title counts each alert once, in the sections' split.
        let names = Severity::ALL.map(Severity::as_str);
        let parts: Vec<String> = sections
            .iter()
            .zip(names.into_iter().chain(["resolved"]))
            .filter(|(section, _)| section.total > 0)
            .map(|(section, what)| format!("{} {what}", thousands(section.total)))
            .collect();
        let parts = if parts.is_empty() {
            "0 alerts".to_string()
        } else {
            parts.join(", ")
        };
        prop_assert!(
            r.title.ends_with(&format!(": {parts}")),
            "{:?} does not end with {:?}",
            r.title,
            parts
        );
        if choice.bare {
            prop_assert_eq!(
                r.text.clone(),
                format!("### {}\n\n{}", r.title, footer(spec.id, alerts.len()))
            );
            return Ok(());
        }
        if !alerts.is_empty() && choice.extras.range {
            prop_assert_eq!(next(), "");
            let range = next();
            prop_assert!(range.starts_with("202"), "range line {:?}", range);
        }
        if spec.catch_up.is_some() && choice.extras.catch_up {
            prop_assert_eq!(next(), "");
            prop_assert!(next().starts_with("⏪ Catch-up: the robot was unavailable "));
        }
        let mut accounted = 0u64;
        let mut listed = 0u64;
        for (s, section) in sections.iter().enumerate() {
            let level = choice.levels[s];
            if section.total == 0 || level == 3 {
                continue;
            }
            prop_assert_eq!(next(), "");
            let mut heading = String::new();
            Plan::new(spec, alerts).push_section_heading(&mut heading, s);
            prop_assert_eq!(next(), heading.as_str());
            let count = format!(" · {}", thousands(section.total));
            prop_assert!(heading.ends_with(&count), "{}", heading);
            let shown = match choice.partial {
                Some((p, n)) if p == s => n,
                _ => section.groups.len(),
            };
            for (name, total, glines) in &section.groups[..shown] {
                accounted += total;
                if level == 2 {
                    let want = format!(
                        "- **{}** ×{}: ",
                        clean(name.as_deref(), 80),
                        thousands(*total)
                    );
                    let got = next();
                    prop_assert!(
                        got.starts_with(&want),
                        "{:?} does not start with {:?}",
                        got,
                        want
                    );
                    continue;
                }
                let want = format!("**{}** · {}", clean(name.as_deref(), 80), thousands(*total));
                prop_assert_eq!(next(), want.as_str());
                for &(first, count, occurrences) in glines {
                    let got = next();
                    let want = format!("- {}", shown_title_start(&alerts[first].title));
                    prop_assert!(
                        got.starts_with(&want),
                        "{:?} does not start with {:?}",
                        got,
                        want
                    );
                    if occurrences > 1 {
                        prop_assert!(
                            got.contains(&format!(" ×{}", thousands(occurrences))),
                            "{:?} ×{}",
                            got,
                            occurrences
                        );
                    }
                    if s == RESOLVED {
                        prop_assert!(
                            got.contains(" — fired ") || got.contains(" — resolved "),
                            "{:?}",
                            got
                        );
                    }
                    listed += count;
                    if level == 0 {
                        while lines.get(at.get() + 1).is_some_and(|l| l.starts_with("> ")) {
                            next();
                        }
                    }
                }
            }
            if shown < section.groups.len() {
                let rest: u64 = section.groups[shown..].iter().map(|g| g.1).sum();
                let got = next();
                prop_assert!(
                    got.starts_with(&format!("- … and {} more: ", thousands(rest))),
                    "{:?}",
                    got
                );
                accounted += rest;
            }
        }
        let counted: Vec<(usize, u64)> = (0..SECTIONS)
            .filter(|&s| sections[s].total > 0 && choice.levels[s] == 3)
            .map(|s| (s, sections[s].total))
            .collect();
        if !counted.is_empty() {
            prop_assert_eq!(next(), "");
            let titled = (0..SECTIONS).any(|s| sections[s].total > 0 && choice.levels[s] < 3);
            if titled {
                let n: u64 = counted.iter().map(|c| c.1).sum();
                prop_assert_eq!(next(), format!("#### Counts · {}", thousands(n)));
            }
            for sev in Severity::ALL {
                let firing = counted
                    .iter()
                    .find(|c| c.0 == sev.index())
                    .map_or(0, |c| c.1);
                let resolved = if counted.iter().any(|c| c.0 == RESOLVED) {
                    alerts
                        .iter()
                        .enumerate()
                        .filter(|&(i, a)| {
                            a.severity == sev
                                && (a.status == Status::Resolved
                                    || alerts[i + 1..].iter().any(|b| {
                                        b.status == Status::Resolved
                                            && b.fingerprint == a.fingerprint
                                            && group_of(b) == group_of(a)
                                    }))
                        })
                        .count() as u64
                } else {
                    0
                };
                let mut parts = Vec::new();
                if firing > 0 {
                    parts.push(format!("{} firing", thousands(firing)));
                }
                if resolved > 0 {
                    parts.push(format!("{} resolved", thousands(resolved)));
                }
                if !parts.is_empty() {
                    prop_assert_eq!(next(), format!("- {}: {}", sev.as_str(), parts.join(", ")));
                }
                accounted += firing + resolved;
            }
        }
        if let Some(link) = spec.link.filter(|_| choice.extras.link) {
            prop_assert_eq!(next(), "");
            prop_assert_eq!(next(), format!("{LINK_PREFIX}{})", escape_link(link)));
        }
        prop_assert_eq!(next(), "");
        prop_assert_eq!(next(), footer(spec.id, alerts.len()));
        prop_assert_eq!(next(), "<end>");
        prop_assert_eq!(accounted, alerts.len() as u64);
        prop_assert_eq!(listed, r.listed as u64);
        Ok(())
    }

    /// Budget, robot, keyword, link, id, time zone (index into [`zones`]), catch-up.
    pub(crate) type SpecParts = (
        usize,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        u64,
        usize,
        Option<(i64, i64)>,
    );

    pub(crate) fn arb_spec_parts() -> impl Strategy<Value = SpecParts> {
        (
            // Tight budgets are where fitting goes wrong, so they get half of the cases.
            prop_oneof![MIN_BUDGET..=2_500usize, MIN_BUDGET..=20_000usize],
            prop::sample::select(vec![
                "ops",
                "数据质量",
                "r\"o\\b\not",
                "a-rather-long-robot-name-that-goes-on-and-on-and-on-past-sixty-four-bytes",
            ]),
            prop::sample::select(vec![
                None,
                Some("告警"),
                Some("ops"),
                Some("critical"),
                Some("k\"w\\"),
            ]),
            prop::sample::select(vec![
                None,
                Some("https://sluice.example/r/ops?from=1&to=2"),
                Some("https://x/a b(c)"),
            ]),
            any::<u64>(),
            0..3usize,
            prop::option::of((-86_400_000..0i64, 0..86_400_000i64)),
        )
    }

    pub(crate) fn zones() -> [TimeZone; 3] {
        [
            TimeZone::UTC,
            shanghai(),
            TimeZone::get("America/New_York").expect("bundled tzdb"),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn render_fits_accounts_for_every_alert_and_picks_the_richest_level(
            alerts in prop::collection::vec(arb_alert(), 0..200),
            (max_bytes, robot, keyword, link, id, zone, catch_up) in arb_spec_parts(),
        ) {
            let zones = zones();
            let spec = DigestSpec {
                robot, id, keyword, link, max_bytes,
                tz: &zones[zone],
                catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
                templates: None,
            };
            let r = render(&spec, &alerts);
            let n = alerts.len();

            prop_assert!(size(&r) <= max_bytes, "{} > {max_bytes}", size(&r));
            prop_assert!(std::str::from_utf8(r.text.as_bytes()).is_ok());
            let foot = footer(id, n);
            prop_assert!(r.text.ends_with(&format!("\n\n{foot}")), "{}", r.text);
            prop_assert_eq!(r.total, n);
            prop_assert_eq!(r.listed + r.summarized, n);
            prop_assert_eq!(r.counts.total() as usize, n);
            prop_assert_eq!((r.counts.firing + r.counts.resolved) as usize, n);
            for sev in Severity::ALL {
                let want = alerts.iter().filter(|a| a.severity == sev).count();
                prop_assert_eq!(r.counts.get(sev) as usize, want);
            }
            if let Some(kw) = keyword {
                prop_assert!(r.title.contains(kw) && r.text.contains(kw));
            }
            prop_assert!(r.title.len() <= 200, "{}", r.title);

            let plan = Plan::new(&spec, &alerts);
            let (choice, _, _) = plan.choose();
            prop_assert_eq!(r.level, plan.level(&choice.levels));
            if let Err(e) = check_richest(&spec, &alerts, &plan, &choice) {
                return Err(TestCaseError::fail(e));
            }
            check_structure(&r, &choice, &alerts, &spec)?;
        }

        /// Whatever an alert holds, a digest (built-in or through a template that writes
        /// alert content at the start of lines, raw or filtered) still fits and counts every
        /// alert; its only footer is its last line, with the true id and count; and nothing
        /// from an alert is an image, raw HTML, a reference, a non-web link, a mention or a
        /// bidi control.
        #[test]
        fn no_alert_content_forges_the_footer_or_brings_markup(
            alerts in prop::collection::vec(arb_hostile_alert(), 0..40),
            (max_bytes, robot, keyword, link, id, zone, catch_up) in arb_spec_parts(),
        ) {
            let zones = zones();
            let t = exposing_template();
            let plain_spec = DigestSpec {
                robot, id, keyword, link, max_bytes,
                tz: &zones[zone],
                catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
                templates: None,
            };
            for spec in [plain_spec, DigestSpec { templates: Some(&t), ..plain_spec }] {
                let r = render(&spec, &alerts);
                prop_assert!(size(&r) <= max_bytes, "{} > {}", size(&r), max_bytes);
                prop_assert_eq!(r.listed + r.summarized, alerts.len());
                if let Err(e) = only_the_last_line_is_a_footer(&r, id, alerts.len()) {
                    return Err(TestCaseError::fail(e));
                }
                let text = &r.text;
                prop_assert!(!text.contains(markdown::is_invisible), "{:?}", text);
                prop_assert!(!text.contains('@'), "{}", text);
                prop_assert!(!text.contains("!["), "{}", text);
                prop_assert!(!text.contains("][") && !text.contains("]:"), "{}", text);
                for (at, _) in text.match_indices('<') {
                    let next = text[at + 1..].chars().next();
                    prop_assert!(
                        !next.is_some_and(|c| c.is_ascii_alphabetic() || "/!?".contains(c)),
                        "raw HTML at {} in {}", at, text
                    );
                }
                for (at, _) in text.match_indices("](") {
                    let dest = text[at + 2..].trim_start().to_ascii_lowercase();
                    prop_assert!(
                        dest.starts_with("http://") || dest.starts_with("https://"),
                        "a link to {:?} in {}", &text[at..], text
                    );
                }
                for (at, _) in text.match_indices('&') {
                    let rest = &text[at + 1..];
                    let (body, digits): (&str, fn(&char) -> bool) =
                        if let Some(hex) = rest.strip_prefix("#x").or(rest.strip_prefix("#X")) {
                            (hex, char::is_ascii_hexdigit)
                        } else if let Some(dec) = rest.strip_prefix('#') {
                            (dec, char::is_ascii_digit)
                        } else if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
                            (rest, char::is_ascii_alphanumeric)
                        } else {
                            continue;
                        };
                    let len: usize = body.chars().take_while(digits).map(char::len_utf8).sum();
                    prop_assert!(
                        len == 0 || !body[len..].starts_with(';'),
                        "an entity at {} in {}", at, text
                    );
                }
            }
        }

        #[test]
        fn json_escaped_len_matches_serde_json(s in prop_oneof![any::<String>(), nasty_string(200)]) {
            let serialized = serde_json::to_string(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(json_escaped_len(&s), serialized.len() - 2);
        }

        #[test]
        fn cut_utf8_is_the_longest_boundary_prefix(s in nasty_string(60), max in 0..200usize) {
            let cut = cut_utf8(&s, max);
            prop_assert!(s.starts_with(cut));
            prop_assert!(cut.len() <= max);
            if cut.len() < s.len() {
                let next = s[cut.len()..].chars().next().map_or(0, char::len_utf8);
                prop_assert!(cut.len() + next > max);
            }
        }

        #[test]
        fn cut_cost_is_the_longest_prefix_within_the_cost(s in nasty_string(60), max in 0..200usize) {
            let cut = cut_cost(&s, max);
            prop_assert!(s.starts_with(cut));
            prop_assert!(cost(cut) <= max);
            if cut.len() < s.len() {
                let next = s[cut.len()..].chars().next().map(|c| cost(&c.to_string())).unwrap_or(0);
                prop_assert!(cost(cut) + next > max);
            }
        }
    }
}
