//! WeCom's dialect: how each block of a digest is written in a WeCom group robot's markdown, and
//! what a message costs: the raw UTF-8 bytes of `markdown.content` (a CJK character is 3), which
//! is what WeCom's 4 096-byte cap counts (ROBOTS.md §5). The message is the content alone, so the
//! title is its first line, a heading, and has no cost of its own ([`Dialect::title_size`]).
//!
//! Two flavours, one measure:
//!
//! ```text
//! markdown                                           markdown_v2
//! ### <title>                                        ### <title>
//! #### <font color="warning">Critical · 3</font>     #### Critical · 3
//! **dq_orders** · 3                                  **dq_orders** · 3
//! • <title> ×3 — <excerpt>                           - <title> ×3 — <excerpt>
//! > <text, up to three lines>                        > <text, up to three lines>
//! • **dq_orders** ×9: a; b; c … and 6 more           - **dq_orders** ×9: a; b; c … and 6 more
//! • … and 322 more: rack r2 108, rack r1 107, …      - … and 322 more: rack r2 108, …
//! #### <font color="info">✅ Resolved · 2</font>      #### ✅ Resolved · 2
//! #### Counts · 5                                    #### Counts · 5
//! • critical: 3 firing, 1 resolved                   - critical: 3 firing, 1 resolved
//! [full alert list](<link>)                          [full alert list](<link>)
//! ```
//!
//! `markdown` has no lists (a `- ` shows as it is, or not, by client), so each entry is a line
//! of its own that starts with a bullet `•`: it reads as a list in every client and cannot be
//! taken for markup. It has three colours, which mark the section headings by how urgent they
//! are: `warning` (orange-red) for critical and error, none for warning, `comment` (grey) for
//! info, `info` (green) for resolved. `markdown_v2` has lists but no colour (and no @), so it is
//! written as DingTalk's markdown is, with list items.
//!
//! Alert content is escaped by DingTalk's rules (`super::dingtalk::markdown`), which cover what
//! WeCom's subsets read: nothing from an alert is a `<@userid>` mention (`@` becomes `＠`), a
//! `<font>` tag or any other HTML (`<` before a letter becomes `＜`), an image, a heading, a quote,
//! a list item, a code fence or a line that reads as the footer; titles, group names and labels
//! are plain text, alert texts keep only emphasis, inline code and links to the web. In
//! `markdown_v2`, which also draws tables, `|` from an alert becomes `｜`. The escaping hands out
//! its pieces in order, so a cut is a prefix of the whole, and every size is measured on what
//! is written.

use super::dialect::{Dialect, Size};
use super::dingtalk::markdown::{self, Kind};
use super::dingtalk::{Escape, LINK_PREFIX, escape_link, push_escaped_by, push_quote_by};
use super::plan::{
    EXCERPT_BYTES, Entry, GROUP_TITLE_BYTES, GroupLine, HEADING_GROUP_BYTES, OVERFLOW_GROUP_BYTES,
    Overflow, Section, Summary, TITLE_BYTES,
};
use super::text::{ELLIPSIS, push_thousands};

/// The most `markdown.content` (and `markdown_v2.content`) may hold, in raw UTF-8 bytes.
pub const MAX_CONTENT: usize = 4096;

/// Which of WeCom's markdown message types a digest is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `msgtype: markdown`: colours and `<@userid>` mentions, no lists.
    Markdown,
    /// `msgtype: markdown_v2`: lists and tables, no colour, no mentions.
    MarkdownV2,
}

/// WeCom's markdown messages, measured in raw UTF-8 bytes of the content.
#[derive(Debug, Clone, Copy)]
pub struct WeCom {
    pub flavor: Flavor,
}

impl WeCom {
    pub const MARKDOWN: WeCom = WeCom {
        flavor: Flavor::Markdown,
    };
    pub const MARKDOWN_V2: WeCom = WeCom {
        flavor: Flavor::MarkdownV2,
    };

    /// What starts each entry, group line, rest line and count line.
    fn bullet(&self) -> &'static str {
        match self.flavor {
            Flavor::Markdown => "• ",
            Flavor::MarkdownV2 => "- ",
        }
    }

    /// Alert content escaped as `kind`, then, in `markdown_v2`, `|` made fullwidth.
    fn escape(&self) -> impl Escape {
        let tables = self.flavor == Flavor::MarkdownV2;
        move |s: &str, kind: Kind, emit: &mut dyn FnMut(&str) -> bool| {
            if !tables {
                return markdown::escape(s, kind, emit);
            }
            markdown::escape(s, kind, &mut |piece| {
                for (i, part) in piece.split('|').enumerate() {
                    if (i > 0 && !emit("｜")) || (!part.is_empty() && !emit(part)) {
                        return false;
                    }
                }
                true
            });
        }
    }

    /// Appends alert content as plain text, cut to `max` bytes with `…`.
    pub(crate) fn push_plain(&self, out: &mut String, s: &str, max: usize) {
        if push_escaped_by(out, s, max, Kind::Plain, &self.escape()) {
            out.push_str(ELLIPSIS);
        }
    }

    /// Appends a line of an alert's text (emphasis, inline code and web links kept), cut to
    /// `max` bytes with `…`.
    fn push_rich(&self, out: &mut String, s: &str, max: usize) {
        if push_escaped_by(out, s, max, Kind::Rich, &self.escape()) {
            out.push_str(ELLIPSIS);
        }
    }

    /// The colour a section's heading is written in (`markdown` only).
    fn colour(&self, section: &Section) -> Option<&'static str> {
        if self.flavor == Flavor::MarkdownV2 {
            return None;
        }
        match (section.resolved, section.name) {
            (true, _) => Some("info"),
            (false, "Critical" | "Error") => Some("warning"),
            (false, "Info") => Some("comment"),
            _ => None,
        }
    }
}

impl Dialect for WeCom {
    const BLOCK_BREAK: &'static str = "\n\n";
    const LINE_BREAK: &'static str = "\n";

    fn size(&self, s: &str) -> Size<Self> {
        Size::new(s.len())
    }

    /// Only the content is sent; the title is its first block.
    fn title_size(&self, _title: &str) -> Size<Self> {
        Size::ZERO
    }

    fn write_plain(&self, out: &mut String, s: &str, max: usize) {
        self.push_plain(out, s, max);
    }

    /// `### <title>`
    fn write_title(&self, out: &mut String, title: &str) {
        out.push_str("### ");
        out.push_str(title);
    }

    /// `#### <font color="warning">Critical · 3</font>`, `#### Warning · 5`, `#### ✅ Resolved · 2`
    fn write_section(&self, out: &mut String, section: &Section) {
        out.push_str("#### ");
        let colour = self.colour(section);
        if let Some(c) = colour {
            out.push_str("<font color=\"");
            out.push_str(c);
            out.push_str("\">");
        }
        if section.resolved {
            out.push_str("✅ ");
        }
        out.push_str(section.name);
        out.push_str(" · ");
        push_thousands(out, section.count);
        if colour.is_some() {
            out.push_str("</font>");
        }
    }

    /// `**<group>** · <n>`
    fn write_group(&self, out: &mut String, name: &str, count: u64) {
        out.push_str("**");
        self.push_plain(out, name, HEADING_GROUP_BYTES);
        out.push_str("** · ");
        push_thousands(out, count);
    }

    /// `• <title> ×<n> — <excerpt>`, or `— fired 10:00, resolved 10:05` in the resolved
    /// section; at level 0 the quote follows on its own `> ` lines.
    fn write_entry(&self, out: &mut String, e: &Entry) {
        out.push_str(self.bullet());
        self.push_plain(out, e.title, TITLE_BYTES);
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
            self.push_rich(out, x, EXCERPT_BYTES);
        }
        if let Some(t) = e.quote {
            let start = out.len();
            out.push_str(Self::LINE_BREAK);
            push_quote_by(out, t, &self.escape());
            if out.len() == start + Self::LINE_BREAK.len() {
                out.truncate(start);
            }
        }
    }

    /// `• **<group>** ×<n>: <title>; <title>; <title> … and <m> more`
    fn write_group_line(&self, out: &mut String, g: &GroupLine) {
        out.push_str(self.bullet());
        out.push_str("**");
        self.push_plain(out, g.name, HEADING_GROUP_BYTES);
        out.push_str("** ×");
        push_thousands(out, g.count);
        out.push_str(": ");
        for (i, title) in g.titles.iter().enumerate() {
            if i > 0 {
                out.push_str("; ");
            }
            self.push_plain(out, title, GROUP_TITLE_BYTES);
        }
        if g.more > 0 {
            out.push_str(" … and ");
            push_thousands(out, g.more);
            out.push_str(" more");
        }
    }

    /// `• … and <N> more: <group> <n>, …, <k> other groups <n>` (or by a label's values)
    fn write_overflow(&self, out: &mut String, o: &Overflow) {
        out.push_str(self.bullet());
        out.push_str("… and ");
        push_thousands(out, o.count);
        out.push_str(" more: ");
        for (i, &(name, n)) in o.groups.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            if let Some(label) = o.by {
                self.push_plain(out, label, OVERFLOW_GROUP_BYTES);
                out.push(' ');
            }
            self.push_plain(out, name, OVERFLOW_GROUP_BYTES);
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

    /// `#### Counts · <N>` (when some section is listed above), then
    /// `• <severity>: <n> firing, <m> resolved` lines.
    fn write_counts(&self, out: &mut String, summary: &Summary) {
        if summary.titled {
            out.push_str("#### Counts · ");
            push_thousands(out, summary.count);
        }
        for (i, l) in summary.lines.iter().enumerate() {
            if i > 0 || summary.titled {
                out.push_str(Self::LINE_BREAK);
            }
            out.push_str(self.bullet());
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

    fn link_target(&self, link: &str) -> String {
        escape_link(link)
    }

    /// `[full alert list](<link>)`
    fn write_link(&self, out: &mut String, target: &str) {
        out.push_str(LINK_PREFIX);
        out.push_str(target);
        out.push(')');
    }
}

/// Text from the configuration (a person's name in a mention line that cannot notify) written
/// as plain text in WeCom's `flavor`, whole.
pub fn plain(flavor: Flavor, s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    WeCom { flavor }.push_plain(&mut out, s, usize::MAX);
    out
}
