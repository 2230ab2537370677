//! Merging a batch of alerts into one markdown digest for a DingTalk robot.
//!
//! # The fitting guarantee
//!
//! DingTalk rejects a message whose body is too large, and a rejected digest is worse than a short
//! one, so [`render`] never produces a digest larger than [`DigestSpec::max_bytes`], measured as
//! `json_escaped_len(title) + json_escaped_len(text)` (what the two strings cost inside the JSON
//! request body). For every `max_bytes >= MIN_BUDGET` the result fits, provided the keyword is at
//! most 64 bytes; below that only the title heading and the footer are guaranteed, and they are
//! kept even if they overflow, because a digest without them is useless to the reader.
//!
//! The cost of a text is additive over its characters, so the size of what is written is tracked
//! exactly while it is written. Lines are listed greedily, most severe first, and listing stops at
//! the first line that does not fit together with a reserve for everything that must still follow:
//! the overflow line of the current section, every later section as heading plus overflow line,
//! the link line and the footer. Later sections are reserved at their exact size (all of their
//! alerts are unlisted, so their overflow lines are known up front); only the current section's
//! overflow line depends on where listing stops, and it is reserved at an upper bound (group names
//! in overflow lines are cut to 40 bytes, at most five of them are named). Before listing starts,
//! the layout with nothing listed is measured; when even that does not fit, the digest degrades to
//! one count line per severity (plus the link if there is still room for it), and below
//! `MIN_BUDGET` possibly to the title heading, the link and the footer, or the first and last alone.
//!
//! Every alert is accounted for: `listed + summarized == total`, and the numbers in the overflow
//! (or count) lines add up with the listed ones to the number of alerts.

use std::cmp::Reverse;
use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::alert::{Alert, Severity, Status};

/// Smallest `max_bytes` for which [`render`] honours the budget.
pub const MIN_BUDGET: usize = 1024;

/// Alert titles are cut to this many bytes (then `…` is appended).
const TITLE_BYTES: usize = 200;
/// The excerpt of an alert's text is cut to this many bytes (then `…` is appended).
const EXCERPT_BYTES: usize = 160;
/// Group names in group headings are cut to this many bytes (then `…` is appended).
const HEADING_GROUP_BYTES: usize = 80;
/// Group names in overflow lines are cut to this many bytes (then `…` is appended); this bound is
/// what lets the overflow line be reserved before it is known.
const OVERFLOW_GROUP_BYTES: usize = 40;
/// Groups named in one overflow line; the rest are folded into `<k> other groups <n>`.
const OVERFLOW_GROUPS: usize = 5;
/// The robot name in the title is cut to this many bytes, which keeps the title near 200 bytes.
const ROBOT_BYTES: usize = 64;

const ELLIPSIS: &str = "…";
const RESOLVED_PREFIX: &str = "✅ resolved: ";
const OTHER_GROUP: &str = "other";
const OVERFLOW_PREFIX: &str = "- … and ";
const OVERFLOW_MORE: &str = " more: ";
const OTHER_GROUPS: &str = " other groups ";

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
}

/// Alerts by severity and by status.
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
    /// Alerts only counted in overflow or count lines; `listed + summarized == total`.
    pub summarized: usize,
    pub counts: Counts,
}

/// Renders `alerts` (in arrival order) into a digest that fits `spec.max_bytes`; see the module
/// documentation for how it is fitted.
pub fn render(spec: &DigestSpec, alerts: &[Alert]) -> Rendered {
    let (mut index, counts) = Index::build(alerts);
    let title = make_title(spec, &counts);
    let footer = footer(spec.id, alerts.len());
    let link = spec.link.map(link_line);

    let mut out = Out::new(&title, spec.max_bytes);
    // The footer and the link each come after a blank line.
    let foot_cost = 4 + cost(&footer);
    let link_cost = link.as_deref().map_or(0, |l| 4 + cost(l));
    let budget = spec.max_bytes;

    // Exact cost of each section when none of its alerts is listed, and of the sections after it
    // (`tail[i]` covers sections i..): this is what listing must leave room for.
    let mut scratch = String::new();
    let mut section_cost = [0usize; 4];
    for sev in Severity::ALL {
        let groups = &index.sections[sev.index()];
        if groups.is_empty() {
            continue;
        }
        scratch.clear();
        push_section_heading(&mut scratch, sev, counts.get(sev));
        let heading = cost(&scratch);
        scratch.clear();
        push_overflow(&mut scratch, &index.groups, groups);
        section_cost[sev.index()] = 2 + 2 + heading + 2 + cost(&scratch);
    }
    let mut tail = [0usize; 5];
    for i in (0..4).rev() {
        tail[i] = tail[i + 1] + section_cost[i];
    }

    let listed = if out.used + tail[0] + link_cost + foot_cost <= budget {
        list_sections(
            &mut out,
            &mut index,
            alerts,
            &counts,
            &tail,
            link_cost + foot_cost,
        )
    } else {
        let count_lines: Vec<String> = Severity::ALL
            .into_iter()
            .filter(|&s| counts.get(s) > 0)
            .map(|s| format!("- {}: {}", s.as_str(), thousands(counts.get(s))))
            .collect();
        let counts_cost = match count_lines.len() {
            0 => 0,
            _ => 2 + count_lines.iter().map(|l| 2 + cost(l)).sum::<usize>(),
        };
        let with_counts = out.used + counts_cost + foot_cost <= budget;
        if with_counts {
            if !count_lines.is_empty() {
                out.blank();
                for l in &count_lines {
                    out.line(l);
                }
            }
        } else if out.used + foot_cost > budget {
            // Below MIN_BUDGET (or with an absurd keyword) the budget cannot be met; the title
            // heading and footer are kept anyway, the link is not.
            out.blank();
            out.line(&footer);
            return finish(out, title, alerts.len(), 0, counts);
        }
        0
    };

    if let Some(l) = &link
        && out.used + link_cost + foot_cost <= budget
    {
        out.blank();
        out.line(l);
    }
    out.blank();
    out.line(&footer);
    finish(out, title, alerts.len(), listed, counts)
}

fn finish(out: Out, title: String, total: usize, listed: u64, counts: Counts) -> Rendered {
    debug_assert_eq!(out.used, cost(&title) + cost(&out.text));
    let listed = usize::try_from(listed).unwrap_or(total).min(total);
    Rendered {
        title,
        text: out.text,
        total,
        listed,
        summarized: total - listed,
        counts,
    }
}

/// Lists lines greedily, most severe first, then closes each section that has unlisted alerts
/// with its overflow line. The caller has checked that the layout with nothing listed fits, so
/// every step here keeps `out.used + reserve <= budget`. Returns the number of listed alerts.
fn list_sections(
    out: &mut Out,
    index: &mut Index,
    alerts: &[Alert],
    counts: &Counts,
    tail: &[usize; 5],
    end_cost: usize,
) -> u64 {
    let mut listed = 0u64;
    let mut stopped = false;
    let mut buf = String::new();
    let mut merger = Merger::default();
    for sev in Severity::ALL {
        let si = sev.index();
        if index.sections[si].is_empty() {
            continue;
        }
        buf.clear();
        push_section_heading(&mut buf, sev, counts.get(sev));
        out.blank();
        out.line(&buf);

        if !stopped {
            let bound = overflow_bound(&index.groups, &index.sections[si], counts.get(sev));
            let last_group = index.sections[si].len() - 1;
            'groups: for (gpos, &g) in index.sections[si].iter().enumerate() {
                let group = &index.groups[g];
                let lines = merger.lines(alerts, index.members(g));
                for (pos, line) in lines.iter().enumerate() {
                    buf.clear();
                    if pos == 0 {
                        push_group_heading(&mut buf, group.name, group.total);
                        buf.push('\n');
                    }
                    push_alert_line(&mut buf, &alerts[line.first], line.count);
                    // Listing the last line of a section leaves nothing to summarize in it.
                    let last = gpos == last_group && pos + 1 == lines.len();
                    let reserve = if last { 0 } else { 2 + bound } + tail[si + 1] + end_cost;
                    if out.used + 2 + cost(&buf) + reserve > out.budget {
                        stopped = true;
                        break 'groups;
                    }
                    out.line(&buf);
                    index.listed[g] += line.count;
                    listed += line.count;
                }
            }
        }

        let groups = &index.sections[si];
        if groups
            .iter()
            .any(|&g| index.listed[g] < index.groups[g].total)
        {
            buf.clear();
            push_overflow_with(&mut buf, &index.groups, groups, &index.listed);
            debug_assert!(
                cost(&buf) <= overflow_bound(&index.groups, groups, counts.get(sev)),
                "overflow line over its bound: {buf}"
            );
            out.line(&buf);
        }
    }
    listed
}

/// The text being built, with its running cost (title included).
struct Out {
    text: String,
    used: usize,
    budget: usize,
}

impl Out {
    fn new(title: &str, budget: usize) -> Out {
        let mut text = String::with_capacity(budget.clamp(256, 64 * 1024));
        text.push_str("### ");
        text.push_str(title);
        Out {
            used: cost(title) + cost(&text),
            text,
            budget,
        }
    }

    /// Appends a line (which may itself hold several lines joined by `\n`).
    fn line(&mut self, s: &str) {
        self.text.push('\n');
        self.text.push_str(s);
        self.used += 2 + cost(s);
    }

    fn blank(&mut self) {
        self.text.push('\n');
        self.used += 2;
    }
}

struct Group<'a> {
    /// `None` is shown as `other`.
    name: Option<&'a str>,
    total: u64,
}

/// One digest line: alerts of one group with equal fingerprint and status.
struct Line {
    /// The first such alert, whose title and text the line shows.
    first: usize,
    count: u64,
}

/// Alerts grouped by severity and group. Lines are not merged here: a digest lists a few hundred
/// lines at most, so fingerprints are only looked at for the groups that listing reaches
/// ([`Merger`]); the rest of a large batch costs one group lookup per alert.
struct Index<'a> {
    groups: Vec<Group<'a>>,
    /// Alert indices grouped by group, in arrival order inside each group.
    members: Vec<usize>,
    /// Where each group's alerts start in `members`; one more entry than `groups`.
    starts: Vec<usize>,
    /// Alerts of each group listed so far.
    listed: Vec<u64>,
    /// Per severity, group indices in order of first appearance, `other` last.
    sections: [Vec<usize>; 4],
}

impl<'a> Index<'a> {
    /// Also counts the alerts, in the same pass: on a large batch each pass costs a trip
    /// through memory.
    fn build(alerts: &'a [Alert]) -> (Index<'a>, Counts) {
        let mut counts = Counts::default();
        // Keys borrow from the alerts: 100 000 alerts must not mean 100 000 allocations.
        let mut named: [HashMap<&'a str, usize>; 4] = Default::default();
        let mut unnamed: [Option<usize>; 4] = [None; 4];
        let mut groups: Vec<Group<'a>> = Vec::new();
        let mut sections: [Vec<usize>; 4] = Default::default();
        let mut group_of: Vec<usize> = Vec::with_capacity(alerts.len());
        for a in alerts {
            counts.add(a);
            let si = a.severity.index();
            let mut new_group = |name: Option<&'a str>| {
                sections[si].push(groups.len());
                groups.push(Group { name, total: 0 });
                groups.len() - 1
            };
            // A blank label would render as an empty bold heading; it groups with the unlabelled.
            let g = match a.group().filter(|g| !g.trim().is_empty()) {
                Some(name) => *named[si]
                    .entry(name)
                    .or_insert_with(|| new_group(Some(name))),
                None => *unnamed[si].get_or_insert_with(|| new_group(None)),
            };
            groups[g].total += 1;
            group_of.push(g);
        }
        for (si, section) in sections.iter_mut().enumerate() {
            if let Some(g) = unnamed[si] {
                section.retain(|&x| x != g);
                section.push(g);
            }
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
        for (i, &g) in group_of.iter().enumerate() {
            members[next[g]] = i;
            next[g] += 1;
        }
        let index = Index {
            listed: vec![0; groups.len()],
            groups,
            members,
            starts,
            sections,
        };
        (index, counts)
    }

    fn members(&self, g: usize) -> &[usize] {
        &self.members[self.starts[g]..self.starts[g + 1]]
    }
}

/// Merges one group's alerts into lines, reusing its allocations from group to group.
#[derive(Default)]
struct Merger<'a> {
    by_key: HashMap<(&'a str, Status), usize>,
    lines: Vec<Line>,
}

impl<'a> Merger<'a> {
    /// Lines of the alerts `members` (in arrival order), in order of first appearance.
    fn lines(&mut self, alerts: &'a [Alert], members: &[usize]) -> &[Line] {
        self.by_key.clear();
        self.lines.clear();
        for &i in members {
            let a = &alerts[i];
            match self.by_key.entry((a.fingerprint.as_str(), a.status)) {
                Entry::Occupied(e) => self.lines[*e.get()].count += 1,
                Entry::Vacant(e) => {
                    e.insert(self.lines.len());
                    self.lines.push(Line { first: i, count: 1 });
                }
            }
        }
        &self.lines
    }
}

fn make_title(spec: &DigestSpec, counts: &Counts) -> String {
    let mut t = String::with_capacity(128);
    push_clean(&mut t, spec.robot, ROBOT_BYTES);
    t.push(':');
    let mut first = true;
    let parts = Severity::ALL
        .into_iter()
        .map(|s| (counts.get(s), s.as_str()))
        .chain([(counts.resolved, "resolved")]);
    for (n, what) in parts {
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

/// The link goes inside `(...)` on one line, so what would end the destination or the line is
/// percent-encoded; ordinary URLs pass unchanged.
fn link_line(link: &str) -> String {
    let mut s = String::with_capacity(link.len() + 24);
    s.push_str("[full alert list](");
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
    s.push(')');
    s
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";

fn push_section_heading(out: &mut String, sev: Severity, n: u64) {
    out.push_str(match sev {
        Severity::Critical => "#### Critical · ",
        Severity::Error => "#### Error · ",
        Severity::Warning => "#### Warning · ",
        Severity::Info => "#### Info · ",
    });
    push_thousands(out, n);
}

fn push_group_heading(out: &mut String, name: Option<&str>, n: u64) {
    out.push_str("**");
    push_group_name(out, name, HEADING_GROUP_BYTES);
    out.push_str("** · ");
    push_thousands(out, n);
}

fn push_group_name(out: &mut String, name: Option<&str>, max: usize) {
    match name {
        Some(n) => push_clean(out, n, max),
        None => out.push_str(OTHER_GROUP),
    }
}

fn push_alert_line(out: &mut String, a: &Alert, count: u64) {
    out.push_str("- ");
    if a.status == Status::Resolved {
        out.push_str(RESOLVED_PREFIX);
    }
    push_clean(out, &a.title, TITLE_BYTES);
    if count > 1 {
        out.push_str(" ×");
        push_thousands(out, count);
    }
    let excerpt = a.text.as_deref().and_then(|t| {
        t.lines()
            .map(|l| l.trim_matches(is_blank))
            .find(|l| !l.is_empty())
    });
    if let Some(e) = excerpt {
        out.push_str(" — ");
        push_clean(out, e, EXCERPT_BYTES);
    }
}

/// The overflow line of a section with nothing listed.
fn push_overflow(out: &mut String, groups: &[Group], section: &[usize]) {
    let none = vec![0; groups.len()];
    push_overflow_with(out, groups, section, &none);
}

/// `- … and <N> more: <group> <n>, …, <k> other groups <n>`, over the alerts of `section` not
/// yet listed, largest groups first (ties in order of appearance).
fn push_overflow_with(out: &mut String, groups: &[Group], section: &[usize], listed: &[u64]) {
    let mut rest: Vec<(u64, usize)> = section
        .iter()
        .map(|&g| (groups[g].total - listed[g], g))
        .filter(|&(n, _)| n > 0)
        .collect();
    rest.sort_by_key(|r| Reverse(r.0));
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

/// An upper bound on the cost of the section's overflow line (without the newline before it),
/// whatever part of the section ends up listed: every count is at most the section total, and the
/// named groups are at most the five with the longest names.
fn overflow_bound(groups: &[Group], section: &[usize], total: u64) -> usize {
    let digits = thousands_len(total);
    let mut names: Vec<usize> = section
        .iter()
        .map(|&g| match groups[g].name {
            Some(n) => clean_cost(n, OVERFLOW_GROUP_BYTES),
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

/// Whitespace and control characters, trimmed from the ends of titles and excerpts.
fn is_blank(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// Characters that could end a markdown line (or render as one); they become spaces.
fn breaks_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

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

/// Appends `s` trimmed, with line-breaking characters made spaces, cut to `max` bytes with `…`.
fn push_clean(out: &mut String, s: &str, max: usize) {
    let (part, was_cut) = clean_part(s, max);
    out.extend(part.chars().map(|c| if breaks_line(c) { ' ' } else { c }));
    if was_cut {
        out.push_str(ELLIPSIS);
    }
}

/// The exact cost of what [`push_clean`] appends, without building it.
fn clean_cost(s: &str, max: usize) -> usize {
    let (part, was_cut) = clean_part(s, max);
    let body: usize = part
        .chars()
        .map(|c| match c {
            '"' | '\\' => 2,
            c if breaks_line(c) => 1,
            c => c.len_utf8(),
        })
        .sum();
    body + if was_cut { ELLIPSIS.len() } else { 0 }
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    fn alert(title: &str, severity: Severity, group: Option<&str>, fingerprint: &str) -> Alert {
        let mut labels = BTreeMap::new();
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
            received_ms: 0,
        }
    }

    fn spec(max_bytes: usize) -> DigestSpec<'static> {
        DigestSpec {
            robot: "ops",
            id: 42,
            keyword: None,
            link: None,
            max_bytes,
        }
    }

    fn size(r: &Rendered) -> usize {
        json_escaped_len(&r.title) + json_escaped_len(&r.text)
    }

    /// Lines that show alerts (not headings, overflow or count lines).
    fn alert_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("- ") && !l.starts_with("- … and "))
            .collect()
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
        for a in &alerts {
            assert!(r.text.contains(&format!("- {}", a.title)), "{}", r.text);
        }
        assert_eq!(r.title, "ops: 1 critical, 1 error, 1 warning, 1 info");
        assert!(
            r.text
                .starts_with("### ops: 1 critical, 1 error, 1 warning, 1 info\n\n")
        );
        assert!(
            r.text.ends_with("\n\nsluice digest #42 · 4 alerts"),
            "{}",
            r.text
        );
        assert_eq!((r.total, r.listed, r.summarized), (4, 4, 0));
        assert_eq!(r.counts.total(), 4);
        let want = "### ops: 1 critical, 1 error, 1 warning, 1 info\n\n\
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
    fn equal_fingerprint_and_status_merge_into_one_line() {
        let mut alerts = vec![alert("null rate", Severity::Critical, Some("dq"), "fp"); 12];
        alerts.push(alert("other fp", Severity::Critical, Some("dq"), "fp2"));
        let mut resolved = alert("null rate", Severity::Critical, Some("dq"), "fp");
        resolved.status = Status::Resolved;
        alerts.push(resolved.clone());
        alerts.push(resolved);
        // Same fingerprint in another group is another line.
        alerts.push(alert("null rate", Severity::Critical, Some("dq2"), "fp"));
        let r = render(&spec(19_000), &alerts);
        assert_eq!(
            alert_lines(&r.text),
            [
                "- null rate ×12",
                "- other fp",
                "- ✅ resolved: null rate ×2",
                "- null rate"
            ],
            "{}",
            r.text
        );
        assert_eq!((r.listed, r.summarized), (16, 0));
        assert!(r.text.contains("**dq** · 15\n"));
        assert_eq!(r.title, "ops: 16 critical, 2 resolved");
    }

    #[test]
    fn line_shows_first_non_empty_text_line() {
        let mut a = alert("t", Severity::Error, None, "x");
        a.text = Some("\n  \r\n\t first line\tof text \nsecond".to_string());
        let r = render(&spec(19_000), &[a]);
        assert_eq!(alert_lines(&r.text), ["- t — first line of text"]);
    }

    #[test]
    fn resolved_lines_are_prefixed() {
        let mut a = alert("disk full", Severity::Warning, None, "x");
        a.status = Status::Resolved;
        let r = render(
            &spec(19_000),
            &[a, alert("cpu", Severity::Warning, None, "y")],
        );
        assert_eq!(alert_lines(&r.text), ["- ✅ resolved: disk full", "- cpu"]);
        assert_eq!(r.title, "ops: 2 warning, 1 resolved");
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
        assert_eq!((r.total, r.listed, r.summarized), (0, 0, 0));
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
        // Room for the sections but not for one line.
        let r = render(&spec(600), &alerts);
        assert_eq!((r.listed, r.summarized), (0, 1238));
        assert!(size(&r) <= 600);
        let want = "### ops: 1,238 warning\n\n\
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
    fn listing_stops_at_the_budget_and_keeps_severity_order() {
        let mut alerts = Vec::new();
        for i in 0..400 {
            let sev = Severity::ALL[i % 4];
            alerts.push(alert(
                &format!("alert number {i} with a moderately long title"),
                sev,
                Some(["dq_orders", "dq_users", "etl"][i % 3]),
                &format!("fp{i}"),
            ));
        }
        let r = render(&spec(5_000), &alerts);
        assert!(size(&r) <= 5_000);
        // Greedy listing uses most of the budget.
        assert!(size(&r) > 4_000, "{}", size(&r));
        assert!(r.listed > 0 && r.summarized > 0);
        // Critical is listed before anything less severe.
        assert_eq!(r.listed, 100.min(r.listed));
        let text = &r.text;
        assert!(text.contains("#### Critical · 100\n"));
        assert!(text.contains("\n\n#### Info · 100\n- … and 100 more: "));
        let overflow: u64 = text
            .lines()
            .filter_map(|l| l.strip_prefix("- … and "))
            .map(|l| parse_num(l.split(" more: ").next().unwrap_or("")))
            .sum();
        assert_eq!(overflow as usize + r.listed, 400);
    }

    #[test]
    fn every_budget_is_honoured_exactly_at_the_edge() {
        // Sweeping the budget byte by byte puts the stop point on every boundary, which is where
        // an off-by-one in the reserve shows. Lines are longer than the overflow reserve, so the
        // last line of a section (listed with no overflow reserve) is sometimes where it stops.
        // Nine alerts a section keep every count one digit, so overflow lines meet their bound.
        let mut alerts = Vec::new();
        for i in 0..36 {
            let mut a = alert(
                &format!("t\"{i}\" {}", "x".repeat(60 + 13 * (i % 7))),
                Severity::ALL[i % 4],
                Some(["a", "b\\"][i % 2]),
                &format!("{}", i % 20),
            );
            a.text = (i % 3 == 0).then(|| format!("why {i}"));
            alerts.push(a);
        }
        for max_bytes in MIN_BUDGET..6_000 {
            let mut s = spec(max_bytes);
            s.link = Some("https://sluice.example/r/ops");
            let r = render(&s, &alerts);
            assert!(size(&r) <= max_bytes, "{} > {max_bytes}", size(&r));
            // The link is reserved for, so it is never what gives way.
            assert!(
                r.text
                    .contains("\n[full alert list](https://sluice.example/r/ops)\n")
            );
            // Greedy: what is left is less than one more line and its reserve.
            if r.summarized > 0 {
                assert!(size(&r) + 300 > max_bytes, "{} of {max_bytes}", size(&r));
            }
        }
    }

    #[test]
    fn tiny_budget_degrades_to_counts_per_severity() {
        let mut alerts = Vec::new();
        for (i, sev) in Severity::ALL.into_iter().enumerate() {
            for j in 0..6 {
                // Six groups with long quoted names make each overflow line too big.
                let g = format!("{j}{}", "\"".repeat(100));
                alerts.push(unlistable(sev, &g, format!("{i}-{j}")));
            }
        }
        let mut s = spec(MIN_BUDGET);
        s.link = Some("https://sluice.example/r/ops");
        let r = render(&s, &alerts);
        assert!(size(&r) <= MIN_BUDGET);
        assert_eq!((r.listed, r.summarized), (0, 24));
        let want = "### ops: 6 critical, 6 error, 6 warning, 6 info\n\n\
                    - critical: 6\n- error: 6\n- warning: 6\n- info: 6\n\n\
                    [full alert list](https://sluice.example/r/ops)\n\n\
                    sluice digest #42 · 24 alerts";
        assert_eq!(r.text, want);
        // With more room the same alerts get sections again.
        let r = render(&spec(4 * MIN_BUDGET), &alerts);
        assert!(r.text.contains("\n\n#### Info · 6\n"), "{}", r.text);
    }

    #[test]
    fn worst_case_title_still_fits_min_budget() {
        // A 64-byte keyword and a robot name that both cost double once escaped, and counts of
        // five digits: the title is as large as it gets, and it appears twice. Group names of
        // quotes leave no room for sections, so this is the last layout before giving up.
        let keyword = "\"".repeat(64);
        let robot = "\\".repeat(100);
        let mut alerts = Vec::new();
        for sev in Severity::ALL {
            for g in 0..5 {
                let mut a = alert("x", sev, Some(&format!("{g}{}", "\"".repeat(50))), "x");
                a.status = Status::Resolved;
                alerts.extend(std::iter::repeat_n(a, 2_000));
            }
        }
        let s = DigestSpec {
            robot: &robot,
            id: u64::MAX,
            keyword: Some(&keyword),
            link: None,
            max_bytes: MIN_BUDGET,
        };
        let r = render(&s, &alerts);
        assert!(size(&r) <= MIN_BUDGET, "{}", size(&r));
        assert!(r.title.starts_with(&keyword));
        assert!(r.text.contains("\n- critical: 10,000\n"), "{}", r.text);
        assert!(
            r.text.ends_with(
                "\n- info: 10,000\n\nsluice digest #18446744073709551615 · 40,000 alerts"
            )
        );
    }

    #[test]
    fn below_min_budget_title_heading_and_footer_stay() {
        let alerts = [alert("a", Severity::Critical, None, "x")];
        let r = render(&spec(10), &alerts);
        assert_eq!(r.text, "### ops: 1 critical\n\nsluice digest #42 · 1 alert");
    }

    #[test]
    fn titles_cannot_break_lines_or_become_headings() {
        let mut a = alert(
            "# big\n> quote\r\n\ttab\u{7}bell\u{2028}sep",
            Severity::Info,
            None,
            "x",
        );
        a.text = Some("line one\u{85}still one".to_string());
        let r = render(&spec(19_000), &[a]);
        assert_eq!(
            alert_lines(&r.text),
            ["- # big > quote   tab bell sep — line one still one"]
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
        let r = render(&spec(19_000), &[a]);
        let line = alert_lines(&r.text)[0];
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

    fn parse_num(s: &str) -> u64 {
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

    fn arb_alert() -> impl Strategy<Value = Alert> {
        // Repeating a short random string reaches past the 200-byte cut cheaply.
        let long = |n| (nasty_string(n), 1..8usize).prop_map(|(s, k)| s.repeat(k));
        (
            long(30),
            prop::option::of(long(25)),
            0..4usize,
            any::<bool>(),
            0..GROUPS.len(),
            0..6u8,
        )
            .prop_map(|(title, text, sev, resolved, g, fp)| {
                let mut a = alert(&title, Severity::ALL[sev], None, &format!("fp{fp}"));
                a.text = text;
                if resolved {
                    a.status = Status::Resolved;
                }
                if let Some((k, v)) = GROUPS[g] {
                    a.labels.insert(k.to_string(), v.to_string());
                }
                a
            })
    }

    /// Merged lines in digest order, straight from the rules: (first alert, count).
    fn reference_lines(alerts: &[Alert]) -> Vec<(usize, u64)> {
        fn group(a: &Alert) -> Option<&str> {
            a.group().filter(|g| !g.trim().is_empty())
        }
        let mut out = Vec::new();
        for sev in Severity::ALL {
            let mut groups: Vec<Option<&str>> = Vec::new();
            for a in alerts.iter().filter(|a| a.severity == sev) {
                if !groups.contains(&group(a)) {
                    groups.push(group(a));
                }
            }
            groups.sort_by_key(|g| g.is_none());
            for g in groups {
                let mut lines: Vec<(usize, u64)> = Vec::new();
                for (i, a) in alerts.iter().enumerate() {
                    if a.severity != sev || group(a) != g {
                        continue;
                    }
                    let same = |&&mut (j, _): &&mut (usize, u64)| {
                        alerts[j].fingerprint == a.fingerprint && alerts[j].status == a.status
                    };
                    match lines.iter_mut().find(same) {
                        Some(l) => l.1 += 1,
                        None => lines.push((i, 1)),
                    }
                }
                out.extend(lines);
            }
        }
        out
    }

    fn shown_title_start(title: &str) -> String {
        let t: String = title
            .trim_matches(|c: char| c.is_whitespace() || c.is_control())
            .chars()
            .take(20)
            .map(|c| {
                if c.is_control() || c == '\u{2028}' || c == '\u{2029}' {
                    ' '
                } else {
                    c
                }
            })
            .collect();
        t.trim_end().to_string()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        #[test]
        fn render_fits_and_accounts_for_every_alert(
            alerts in prop::collection::vec(arb_alert(), 0..300),
            // Tight budgets are where fitting goes wrong, so they get half of the cases.
            max_bytes in prop_oneof![MIN_BUDGET..=2_000usize, MIN_BUDGET..=20_000usize],
            robot in prop::sample::select(vec![
                "ops", "数据质量", "r\"o\\b\not", "a-rather-long-robot-name-that-goes-on-and-on-and-on-past-sixty-four-bytes",
            ]),
            keyword in prop::sample::select(vec![
                None, Some("告警"), Some("ops"), Some("critical"), Some("k\"w\\"),
            ]),
            link in prop::sample::select(vec![
                None, Some("https://sluice.example/r/ops?from=1&to=2"), Some("https://x/a b(c)"),
            ]),
            id in any::<u64>(),
        ) {
            let spec = DigestSpec { robot, id, keyword, link, max_bytes };
            let r = render(&spec, &alerts);
            let n = alerts.len();

            prop_assert!(size(&r) <= max_bytes, "{} > {max_bytes}", size(&r));
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

            let lines: Vec<&str> = r.text.split('\n').collect();
            prop_assert_eq!(lines[0], format!("### {}", r.title));
            let body = &lines[1..lines.len() - 1];
            // Every line has a known shape: nothing from an alert can start a line of its own.
            for l in body {
                prop_assert!(
                    l.is_empty() || l.starts_with("#### ") || l.starts_with("**")
                        || l.starts_with("- ") || l.starts_with("[full alert list]("),
                    "stray line {:?}", l
                );
            }

            let sectioned = body.iter().any(|l| l.starts_with("#### "));
            if sectioned {
                // Once a section overflows, later ones list nothing.
                let mut overflowed = false;
                let mut overflow_sum = 0u64;
                for l in body {
                    if let Some(rest) = l.strip_prefix("- … and ") {
                        overflowed = true;
                        let (num, groups) = rest.split_once(" more: ").unwrap_or(("", ""));
                        let num = parse_num(num);
                        overflow_sum += num;
                        let parts: u64 = groups
                            .split(", ")
                            .map(|p| parse_num(p.rsplit_once(' ').map_or(p, |x| x.1)))
                            .sum();
                        prop_assert_eq!(parts, num, "{}", l);
                    } else if overflowed {
                        prop_assert!(!l.starts_with("- ") && !l.starts_with("**"), "{}", l);
                    }
                }
                prop_assert_eq!(r.listed as u64 + overflow_sum, n as u64);
                if let Some(link) = link {
                    prop_assert!(r.text.contains(&link_line(link)), "{}", r.text);
                }
            } else if n > 0 {
                prop_assert_eq!(r.listed, 0);
                let counted: u64 = body
                    .iter()
                    .filter_map(|l| {
                        Severity::ALL.into_iter().find_map(|s| {
                            l.strip_prefix(&format!("- {}: ", s.as_str())).map(parse_num)
                        })
                    })
                    .sum();
                prop_assert_eq!(counted, n as u64, "{}", r.text);
            }

            // Listed lines are a prefix of the merged lines, in order, with their counts.
            let shown = alert_lines(&r.text);
            let shown = if sectioned { shown } else { Vec::new() };
            let reference = reference_lines(&alerts);
            prop_assert!(shown.len() <= reference.len());
            let mut listed = 0u64;
            for (line, &(first, count)) in shown.iter().zip(&reference) {
                let a = &alerts[first];
                let mut want = String::from("- ");
                if a.status == Status::Resolved {
                    want.push_str("✅ resolved: ");
                }
                want.push_str(&shown_title_start(&a.title));
                prop_assert!(line.starts_with(&want), "{:?} does not start with {:?}", line, want);
                if count > 1 {
                    prop_assert!(line.contains(&format!(" ×{count}")), "{:?} ×{}", line, count);
                }
                listed += count;
            }
            prop_assert_eq!(listed, r.listed as u64);
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
    }
}
