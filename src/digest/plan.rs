//! The platform-neutral plan of a digest: the batch indexed ([`super::index`]), the title and
//! footer, the degradation order of the levels, and the sequence of blocks each configuration
//! has (title, catch-up and time range, sections with their groups and entries or group lines,
//! an overflow line, the count block, the link, the footer), as values a dialect writes.
//!
//! Accounting is decided here, once for every platform: an alert is *listed* when it is on an
//! entry (its section at level 0 or 1, and the entry among those its section lists), and
//! *summarized* otherwise (a group line, a rest line or a count line gives its number);
//! `listed + summarized == total` whatever the dialect.
//!
//! The order of configurations ([`Plan::order`]): the degradation order of the levels, and after
//! each configuration whose least severe listed section is at level 1 or 2, the same with that
//! section *partly listed*: its entries in order as long as they fit, then a rest line
//! ([`super::rest`]) for the others. A fully listed choice is then refilled
//! ([`Plan::refills`]): the next less severe section comes back, no richer than those before it.

use std::cell::{Cell, OnceCell};

use serde::Serialize;

use super::clock::{Clock, short_time};
use super::dialect::{Dialect, Size};
use super::index::{Index, Line};
use super::text::{ELLIPSIS, push_clean, push_thousands};
use super::{Counts, DigestSpec, Rendered};
use crate::alert::{Alert, Severity};

/// Smallest `max_bytes` for which [`render`](super::render) honours the budget.
pub const MIN_BUDGET: usize = 1024;

/// Alert titles are cut to this many bytes of what they show (then `…` is appended).
pub(crate) const TITLE_BYTES: usize = 200;
/// The excerpt of an alert's text is cut to this many bytes of what it shows (then `…`).
pub(crate) const EXCERPT_BYTES: usize = 160;
/// A level-0 quote shows at most this many non-blank lines of the text …
pub(crate) const QUOTE_LINES: usize = 3;
/// … and at most this many bytes of what they show.
pub(crate) const QUOTE_BYTES: usize = 300;
/// Group names in group headings and group lines are cut to this many bytes.
pub(crate) const HEADING_GROUP_BYTES: usize = 80;
/// A level-2 group line names at least this many of its first titles (all when it has fewer);
/// room the chosen configuration leaves is then spent on more ([`Choice::titles`]) …
pub(crate) const GROUP_TITLES: usize = 3;
/// … each cut to this many bytes.
pub(crate) const GROUP_TITLE_BYTES: usize = 80;
/// Group names, label names and values in rest lines are cut to this many bytes (then `…` is
/// appended); this bound is what lets the rest line be reserved before it is known.
pub(crate) const OVERFLOW_GROUP_BYTES: usize = 40;
/// Groups named in one rest line; the rest are folded into `<k> other groups <n>`.
pub(crate) const OVERFLOW_GROUPS: usize = super::rest::REST_ITEMS;
/// The robot name in the title is cut to this many bytes, which keeps the title near 200 bytes.
pub(crate) const ROBOT_BYTES: usize = 64;
/// A custom title is cut to this many bytes.
pub(crate) const CUSTOM_TITLE_BYTES: usize = 200;

pub(crate) const OTHER_GROUP: &str = "other";

/// Sections in display order: the four firing severities, then resolved.
pub(crate) const SECTIONS: usize = 5;
pub(crate) const RESOLVED: usize = 4;
pub(crate) const SECTION_NAMES: [&str; SECTIONS] =
    ["Critical", "Error", "Warning", "Info", "Resolved"];

/// The level of each section, indexed like the sections.
pub(crate) type Levels = [u8; SECTIONS];

/// What a digest shows: each section's level, and the extras that are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Choice {
    pub levels: Levels,
    /// A section that lists only its first entries, and how many (alert lines at levels 0 and 1,
    /// group lines at level 2), then a rest line for the others.
    pub partial: Option<(usize, usize)>,
    /// Titles level-2 group lines name beyond their first [`GROUP_TITLES`], handed out in
    /// order: sections most severe first, their listed groups in order, each group's titles in
    /// order. Each group line ends with the count of its alerts left unnamed.
    pub titles: usize,
    pub extras: Extras,
    /// Title heading and footer only: nothing else fits (budget below [`MIN_BUDGET`]).
    pub bare: bool,
}

/// Optional lines, given up in this order by a counted-only digest that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extras {
    pub range: bool,
    pub catch_up: bool,
    pub link: bool,
}

pub(crate) const ALL_EXTRAS: Extras = Extras {
    range: true,
    catch_up: true,
    link: true,
};

/// A section's measured cost at one level: unknown yet, or known (`None` = over the budget).
pub(crate) type SectionCost<D> = Cell<Option<Option<Size<D>>>>;

/// A batch indexed for rendering, with everything that does not depend on the configuration.
pub(crate) struct Plan<'a, D: Dialect> {
    pub(crate) dialect: &'a D,
    pub(crate) spec: &'a DigestSpec<'a>,
    pub(crate) alerts: &'a [Alert],
    pub(crate) index: Index<'a>,
    pub(crate) counts: Counts,
    pub(crate) clock: Clock<'a>,
    pub(crate) title: String,
    pub(crate) footer: String,
    /// The link, made a safe destination by the dialect.
    pub(crate) link: Option<String>,
    pub(crate) range: Option<(i64, i64)>,
    pub(crate) range_text: Option<String>,
    pub(crate) catch_up_text: Option<String>,
    /// Template values of each group's alerts, all of them and the first three: contexts of
    /// successive configurations share them instead of converting them again.
    pub(crate) entry_values: Vec<[OnceCell<Vec<minijinja::Value>>; 2]>,
    /// [`Plan::section_cost`] of each section at levels 0–2, once measured.
    pub(crate) section_costs: [[SectionCost<D>; 3]; SECTIONS],
}

// ---- Blocks: what the plan asks a dialect to write ----

/// A section's heading.
pub struct Section<'a> {
    /// `Critical` … `Info`, `Resolved`.
    pub name: &'a str,
    pub resolved: bool,
    pub count: u64,
}

/// One merged alert (levels 0 and 1): its first alert's title, how often it occurred, and
/// what follows the title.
pub struct Entry<'a> {
    pub title: &'a str,
    pub occurrences: u64,
    /// In the resolved section: when it fired (if known) and resolved.
    pub times: Option<(Option<String>, Option<String>)>,
    /// At level 1 in a firing section: the first non-blank line of the text.
    pub excerpt: Option<&'a str>,
    /// At level 0: the text, shown as a quote.
    pub quote: Option<&'a str>,
}

/// One group at level 2: its name, count, first titles, and its alerts they leave unnamed.
pub struct GroupLine<'a> {
    pub name: &'a str,
    pub count: u64,
    pub titles: &'a [&'a str],
    pub more: u64,
}

/// What a partly listed section leaves out (its rest line): their alerts, the five largest parts
/// by name, and how many parts with how many alerts beyond them. The parts are the values of
/// label `by` (`rack r2 108`), or groups when `by` is `None`.
pub struct Overflow<'a> {
    pub count: u64,
    /// The label whose values name the parts; `None` when the parts are groups.
    pub by: Option<&'a str>,
    pub groups: &'a [(&'a str, u64)],
    pub other_groups: u64,
    pub other_count: u64,
}

/// The count block of the sections at level 3.
#[derive(Serialize)]
pub struct Summary {
    /// Some section is listed above the block.
    pub titled: bool,
    pub count: u64,
    pub lines: Vec<SummaryLine>,
}

#[derive(Serialize)]
pub struct SummaryLine {
    pub severity: &'static str,
    pub firing: u64,
    pub resolved: u64,
}

impl<'a, D: Dialect> Plan<'a, D> {
    pub(crate) fn new(dialect: &'a D, spec: &'a DigestSpec<'a>, alerts: &'a [Alert]) -> Self {
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
            link: spec.link.map(|l| dialect.link_target(l)),
            dialect,
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

    pub(crate) fn nonempty(&self, s: usize) -> bool {
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

    /// The least severe listed section of `levels`: the one a partial listing is tried for.
    pub(crate) fn active(&self, levels: &Levels) -> Option<usize> {
        (0..SECTIONS)
            .rev()
            .find(|&s| self.nonempty(s) && levels[s] < 3)
    }

    /// Every configuration tried, in order, but the counted-only one: each of the degradation
    /// order, fully listed (`None`), then, when its least severe listed section is at level 1
    /// or 2, that section partly listed (`Some(section)`).
    pub(crate) fn order(&self) -> Vec<(Levels, Option<usize>)> {
        let seq = self.sequence();
        let mut out = Vec::with_capacity(2 * seq.len());
        for levels in &seq[..seq.len() - 1] {
            out.push((*levels, None));
            if let Some(s) = self.active(levels).filter(|&s| matches!(levels[s], 1 | 2)) {
                out.push((*levels, Some(s)));
            }
        }
        out
    }

    /// What may fill the budget a fully listed `levels` leaves: the next less severe non-empty
    /// section after its least severe listed one, brought back from level 3 at the poorest level
    /// `l` of the sections listed before it, then `l + 1`, up to 2, each fully and then partly
    /// listed; nothing when every listed section is at level 0 (that was tried in the order).
    /// A section never comes back richer than a more severe one, and a more severe section is
    /// fully listed whenever it comes back.
    pub(crate) fn refills(&self, levels: &Levels) -> Vec<(Levels, Option<usize>)> {
        let Some(a) = self.active(levels) else {
            return Vec::new();
        };
        let floor = (0..=a)
            .filter(|&s| self.nonempty(s))
            .map(|s| levels[s])
            .max()
            .unwrap_or(0);
        let Some(t) = (a + 1..SECTIONS).find(|&t| self.nonempty(t)) else {
            return Vec::new();
        };
        if floor == 0 {
            return Vec::new();
        }
        let mut out = Vec::new();
        for l in floor..=2 {
            let mut next = *levels;
            next[t] = l;
            out.push((next, None));
            out.push((next, Some(t)));
        }
        out
    }

    /// Whether section `s` partly listed may list no entry at all (only its rest line): only
    /// the most severe section at level 2, the floor before everything is counted only.
    pub(crate) fn may_list_none(&self, levels: &Levels, s: usize) -> bool {
        levels[s] == 2 && Some(s) == self.first_section()
    }

    /// The configuration that counts everything, with every extra.
    pub(crate) fn counted_only(&self) -> Choice {
        Choice {
            levels: *self.sequence().last().expect("never empty"),
            partial: None,
            titles: 0,
            extras: ALL_EXTRAS,
            bare: false,
        }
    }

    /// The level of the most degraded non-empty section.
    pub(crate) fn level(&self, levels: &Levels) -> u8 {
        (0..SECTIONS)
            .filter(|&s| self.nonempty(s))
            .map(|s| levels[s])
            .max()
            .unwrap_or(0)
    }

    /// The most severe non-empty section: the one that keeps its lines longest.
    pub(crate) fn first_section(&self) -> Option<usize> {
        (0..SECTIONS).find(|&s| self.nonempty(s))
    }

    #[cfg(test)]
    pub(crate) fn footer(&self) -> &str {
        &self.footer
    }

    pub(crate) fn finish(&self, text: String, listed: u64, choice: &Choice) -> Rendered {
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

    /// Alerts on alert lines in `choice`.
    pub(crate) fn listed(&self, choice: &Choice) -> u64 {
        (0..SECTIONS)
            .filter(|&s| self.nonempty(s) && choice.levels[s] < 2 && !choice.bare)
            .map(|s| match choice.partial {
                Some((p, n)) if p == s => self.cut(s, choice.levels[s], n).listed,
                _ => self.index.section_total[s],
            })
            .sum()
    }

    /// Where section `s` at `level` stops after its first `n` entries.
    pub(crate) fn cut(&self, s: usize, level: u8, n: usize) -> Cut {
        let groups = &self.index.sections[s];
        if level == 2 {
            return Cut {
                group: n.min(groups.len()),
                line: 0,
                listed: 0,
            };
        }
        let (mut left, mut listed) = (n, 0u64);
        for (gpos, &g) in groups.iter().enumerate() {
            let lines = self.index.lines(g, self.alerts);
            if left < lines.len() {
                listed += lines[..left].iter().map(|l| l.count).sum::<u64>();
                return Cut {
                    group: gpos,
                    line: left,
                    listed,
                };
            }
            left -= lines.len();
            listed += self.index.groups[g].total;
        }
        Cut {
            group: groups.len(),
            line: 0,
            listed,
        }
    }

    // ---- The blocks of a configuration ----

    /// The title block: the title as the dialect heads a digest with it.
    pub(crate) fn title_block(&self) -> String {
        let mut out = String::with_capacity(self.spec.max_bytes.clamp(256, 64 * 1024));
        self.dialect.write_title(&mut out, &self.title);
        out
    }

    pub(crate) fn push_section_heading(&self, out: &mut String, s: usize) {
        self.dialect.write_section(
            out,
            &Section {
                name: SECTION_NAMES[s],
                resolved: s == RESOLVED,
                count: self.index.section_total[s],
            },
        );
    }

    /// Writes the lines of section `s` at `level` (0–2) one at a time, each with the line break
    /// before it, and passes each to `take` with whether it is the section's last line, until
    /// `take` returns false. Group lines name as many more titles as `titles` has left, which
    /// they use up. Returns the number of groups whose lines were all taken.
    pub(crate) fn each_line(
        &self,
        s: usize,
        level: u8,
        titles: &mut usize,
        take: &mut dyn FnMut(&str, bool) -> bool,
    ) -> usize {
        let groups = &self.index.sections[s];
        let mut buf = String::new();
        for (gpos, &g) in groups.iter().enumerate() {
            let last_group = gpos + 1 == groups.len();
            let merged = self.index.lines(g, self.alerts);
            let group = &self.index.groups[g];
            let name = group.name.unwrap_or(OTHER_GROUP);
            buf.clear();
            buf.push_str(D::LINE_BREAK);
            if level == 2 {
                self.push_group_line(&mut buf, g, titles);
                if !take(&buf, last_group) {
                    return gpos;
                }
                continue;
            }
            self.dialect.write_group(&mut buf, name, group.total);
            if !take(&buf, false) {
                return gpos;
            }
            for (i, line) in merged.iter().enumerate() {
                buf.clear();
                buf.push_str(D::LINE_BREAK);
                self.dialect
                    .write_entry(&mut buf, &self.entry(s, line, level));
                if !take(&buf, last_group && i + 1 == merged.len()) {
                    return gpos;
                }
            }
        }
        groups.len()
    }

    /// Writes group `g`'s line at level 2 (without the break before it): its first
    /// [`GROUP_TITLES`] titles and as many more as `titles` has left, which it uses up.
    pub(crate) fn push_group_line(&self, out: &mut String, g: usize, titles: &mut usize) {
        let group = &self.index.groups[g];
        let shown = self.group_line_titles(g, titles);
        let mut names = [""; GROUP_TITLES];
        let many: Vec<&str>;
        let named: &[&str] = if shown.len() <= GROUP_TITLES {
            for (t, line) in names.iter_mut().zip(shown) {
                *t = &self.alerts[line.first].title;
            }
            &names[..shown.len()]
        } else {
            many = shown
                .iter()
                .map(|l| self.alerts[l.first].title.as_str())
                .collect();
            &many
        };
        self.dialect.write_group_line(
            out,
            &GroupLine {
                name: group.name.unwrap_or(OTHER_GROUP),
                count: group.total,
                titles: named,
                more: group.total - shown.iter().map(|l| l.count).sum::<u64>(),
            },
        );
    }

    /// The merged lines whose titles group `g`'s line names: its first [`GROUP_TITLES`], then as
    /// many more as `titles` has left, which are used up.
    pub(crate) fn group_line_titles(&self, g: usize, titles: &mut usize) -> &[Line] {
        let lines = self.index.lines(g, self.alerts);
        let more = (*titles).min(lines.len().saturating_sub(GROUP_TITLES));
        *titles -= more;
        &lines[..lines.len().min(GROUP_TITLES) + more]
    }

    /// Titles the group lines of `choice` could name beyond their first [`GROUP_TITLES`]: the
    /// most [`Choice::titles`] can hand out.
    pub(crate) fn unnamed_titles(&self, choice: &Choice) -> usize {
        if choice.bare {
            return 0;
        }
        (0..SECTIONS)
            .filter(|&s| self.nonempty(s) && choice.levels[s] == 2)
            .flat_map(|s| {
                let groups = &self.index.sections[s];
                let listed = match choice.partial {
                    Some((p, n)) if p == s => n.min(groups.len()),
                    _ => groups.len(),
                };
                groups[..listed].iter()
            })
            .map(|&g| {
                self.index
                    .lines(g, self.alerts)
                    .len()
                    .saturating_sub(GROUP_TITLES)
            })
            .sum()
    }

    /// One merged alert at `level` (0 or 1) in section `s`.
    pub(crate) fn entry(&self, s: usize, line: &Line, level: u8) -> Entry<'a> {
        let a = &self.alerts[line.first];
        Entry {
            title: &a.title,
            occurrences: line.occurrences(s),
            times: (s == RESOLVED).then(|| self.entry_times(s, line)),
            excerpt: if s != RESOLVED && level == 1 {
                a.text.as_deref().and_then(super::text::excerpt)
            } else {
                None
            },
            quote: a.text.as_deref().filter(|_| level == 0),
        }
    }

    /// The fired and resolved times a line shows: `HH:MM` when on the same local day as each
    /// other (or, alone, as the digest's first time), else `MM-DD HH:MM`.
    pub(crate) fn entry_times(&self, s: usize, line: &Line) -> (Option<String>, Option<String>) {
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

    /// The count block of the sections at level 3 with the break before it, or nothing.
    pub(crate) fn push_summary(&self, out: &mut String, levels: &Levels) {
        if let Some(summary) = self.summary(levels) {
            out.push_str(D::BLOCK_BREAK);
            self.dialect.write_counts(out, &summary);
        }
    }

    pub(crate) fn summary(&self, levels: &Levels) -> Option<Summary> {
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
                lines.push(SummaryLine {
                    severity: sev.as_str(),
                    firing,
                    resolved,
                });
            }
        }
        Some(Summary {
            titled: (0..SECTIONS).any(|s| self.nonempty(s) && levels[s] < 3),
            count,
            lines,
        })
    }

    /// A template's body without its trailing blank lines (the footer follows a blank line of
    /// its own), with the keyword put first when it lacks it. Spaces that end its last line
    /// stay, as the renderer writes them: a level-2 group line ends `×1: ` when its title shows
    /// as nothing, and the built-in template must give the renderer's text.
    pub(crate) fn keyworded(&self, body: &str) -> String {
        let solid = body.trim_end().len();
        let line_end = body[solid..]
            .find(['\n', '\r'])
            .map_or(body.len(), |at| solid + at);
        let body = &body[..line_end];
        match self.spec.keyword {
            Some(kw) if !body.contains(kw) => format!("{kw}{}{body}", D::BLOCK_BREAK),
            _ => body.to_string(),
        }
    }

    pub(crate) fn with_footer(&self, body: &str) -> String {
        let mut text = self.keyworded(body);
        text.push_str(D::BLOCK_BREAK);
        text.push_str(&self.footer);
        text
    }

    /// Entries (group headings, alert lines, group lines) a fully listed configuration has.
    pub(crate) fn entries(&self, levels: &Levels) -> usize {
        (0..SECTIONS)
            .filter(|&s| self.nonempty(s) && levels[s] < 3)
            .map(|s| self.entries_partial_at(s, levels[s], self.index.sections[s].len()))
            .sum()
    }

    /// Entries (group headings, alert lines, group lines) of section `s` fully listed at `level`.
    pub(crate) fn entries_section(&self, s: usize, level: u8) -> usize {
        self.entries_partial_at(s, level, self.index.sections[s].len())
    }

    /// What a partial listing of section `s` at `level` counts as entries: its alert lines at
    /// levels 0 and 1, its groups at level 2.
    pub(crate) fn entry_count(&self, s: usize, level: u8) -> usize {
        let groups = &self.index.sections[s];
        if level == 2 {
            return groups.len();
        }
        groups
            .iter()
            .map(|&g| self.index.lines(g, self.alerts).len())
            .sum()
    }

    /// Entries (group headings, alert lines, group lines) section `s` at `level` has when it
    /// lists its first `n` entries.
    pub(crate) fn entries_partial(&self, s: usize, level: u8, n: usize) -> usize {
        let cut = self.cut(s, level, n);
        let mut entries = self.entries_partial_at(s, level, cut.group);
        if level < 2 && cut.line > 0 {
            entries += 1 + cut.line;
        }
        entries
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
}

/// Where a partly listed section stops: the position of the group it stops in and how many of
/// that group's lines are listed (0 at level 2, where whole groups are listed or not), and the
/// alerts listed on alert lines before it.
pub(crate) struct Cut {
    pub(crate) group: usize,
    pub(crate) line: usize,
    pub(crate) listed: u64,
}

/// A custom title: one line, at most 200 bytes, with the keyword when it lacks it.
pub(crate) fn custom_title(t: &str, keyword: Option<&str>) -> String {
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

/// `<robot>: 3 critical, 1 error, 2 resolved`: the section totals, so each alert is counted once
/// and the numbers add up to the footer's. Counting alert records by severity (as [`Counts`]
/// does) would count a resolved alert under its severity and again as resolved.
pub(crate) fn make_title(spec: &DigestSpec, section_total: &[u64; SECTIONS]) -> String {
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
