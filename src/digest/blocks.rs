//! The blocks every dialect writes the same way but for its marks: an alert line, a group's
//! heading and its line at level 2, the rest line and the count lines. A dialect gives its
//! [`Marks`] (the bullet, what goes around names and the count block's heading, how it writes
//! alert content) and keeps only what is its own (title, section headings, the link).

use super::plan::{
    EXCERPT_BYTES, Entry, GROUP_TITLE_BYTES, GroupLine, HEADING_GROUP_BYTES, OVERFLOW_GROUP_BYTES,
    Overflow, Summary, TITLE_BYTES,
};
use super::text::push_thousands;

/// What sets one dialect's blocks apart from another's.
pub(crate) struct Marks {
    /// What starts an alert line, a group line, a rest line and a count line (`- `, `• `).
    pub(crate) bullet: &'static str,
    /// Around `Counts · <N>`, the count block's heading.
    pub(crate) counts: (&'static str, &'static str),
    /// Around a group's name in its heading (levels 0 and 1) and in its group line (level 2).
    pub(crate) group: (&'static str, &'static str),
    pub(crate) group_line: (&'static str, &'static str),
    /// Alert content as plain text and as text that keeps its links and emphasis, cut to a
    /// number of bytes of what they show with `…`; and a text as quote lines (`> …`).
    pub(crate) plain: fn(&mut String, &str, usize),
    pub(crate) rich: fn(&mut String, &str, usize),
    pub(crate) quote: fn(&mut String, &str),
}

/// `<group> · <n>` with the group's marks.
pub(crate) fn write_group(m: &Marks, out: &mut String, name: &str, count: u64) {
    out.push_str(m.group.0);
    (m.plain)(out, name, HEADING_GROUP_BYTES);
    out.push_str(m.group.1);
    out.push_str(" · ");
    push_thousands(out, count);
}

/// `- <title> ×<n> — <excerpt>` in a firing section, `- <title> ×<n> — fired 10:00, resolved
/// 10:05` in the resolved one; at level 0 the quote follows on its own lines.
pub(crate) fn write_entry(m: &Marks, out: &mut String, e: &Entry, line_break: &str) {
    out.push_str(m.bullet);
    (m.plain)(out, e.title, TITLE_BYTES);
    if e.occurrences > 1 {
        out.push_str(" ×");
        push_thousands(out, e.occurrences);
    }
    if let Some((fired, resolved)) = &e.times {
        out.push_str(" — ");
        if let Some(f) = fired {
            out.push_str("fired ");
            out.push_str(f);
            out.push_str(", ");
        }
        out.push_str("resolved ");
        out.push_str(resolved.as_deref().unwrap_or("?"));
    } else if let Some(x) = e.excerpt {
        out.push_str(" — ");
        (m.rich)(out, x, EXCERPT_BYTES);
    }
    if let Some(t) = e.quote {
        let start = out.len();
        out.push_str(line_break);
        (m.quote)(out, t);
        if out.len() == start + line_break.len() {
            out.truncate(start);
        }
    }
}

/// `- <group> ×<n>: <title>; <title>; <title> … and <m> more` (`m` of its alerts unnamed)
pub(crate) fn write_group_line(m: &Marks, out: &mut String, g: &GroupLine) {
    out.push_str(m.bullet);
    out.push_str(m.group_line.0);
    (m.plain)(out, g.name, HEADING_GROUP_BYTES);
    out.push_str(m.group_line.1);
    out.push_str(" ×");
    push_thousands(out, g.count);
    out.push_str(": ");
    for (i, title) in g.titles.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        (m.plain)(out, title, GROUP_TITLE_BYTES);
    }
    if g.more > 0 {
        out.push_str(" … and ");
        push_thousands(out, g.more);
        out.push_str(" more");
    }
}

/// `- … and <N> more: <group> <n>, …, <k> other groups <n>`, or split by a label
/// `- … and <N> more: <label> <value> <n>, …, <k> other values <n>`
pub(crate) fn write_overflow(m: &Marks, out: &mut String, o: &Overflow) {
    out.push_str(m.bullet);
    out.push_str("… and ");
    push_thousands(out, o.count);
    out.push_str(" more: ");
    for (i, &(name, n)) in o.groups.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        if let Some(label) = o.by {
            (m.plain)(out, label, OVERFLOW_GROUP_BYTES);
            out.push(' ');
        }
        (m.plain)(out, name, OVERFLOW_GROUP_BYTES);
        out.push(' ');
        push_thousands(out, n);
    }
    if o.other_groups > 0 {
        out.push_str(", ");
        push_thousands(out, o.other_groups);
        out.push_str(match (o.by.is_some(), o.other_groups == 1) {
            (false, true) => " other group ",
            (false, false) => " other groups ",
            (true, true) => " other value ",
            (true, false) => " other values ",
        });
        push_thousands(out, o.other_count);
    }
}

/// `Counts · <N>` with the count block's marks (when some section is listed above), then
/// `- <severity>: <n> firing, <m> resolved` lines.
pub(crate) fn write_counts(m: &Marks, out: &mut String, summary: &Summary, line_break: &str) {
    if summary.titled {
        out.push_str(m.counts.0);
        out.push_str("Counts · ");
        push_thousands(out, summary.count);
        out.push_str(m.counts.1);
    }
    for (i, l) in summary.lines.iter().enumerate() {
        if i > 0 || summary.titled {
            out.push_str(line_break);
        }
        out.push_str(m.bullet);
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
