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
pub(crate) mod tests;
