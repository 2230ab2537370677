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

use super::blocks::{
    Marks, write_counts, write_entry, write_group, write_group_line, write_overflow,
};
use super::dialect::{Dialect, Size};
use super::dingtalk::markdown::{self, Kind};
use super::dingtalk::{LINK_PREFIX, escape_link, push_plain, push_quote, push_rich};
use super::plan::{Entry, GroupLine, Overflow, Section, Summary};
use super::text::{ELLIPSIS, push_cut, push_quote_with, push_thousands};

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

const MARKDOWN_MARKS: Marks = Marks {
    bullet: "• ",
    counts: ("#### ", ""),
    group: ("**", "**"),
    group_line: ("**", "**"),
    plain: push_plain,
    rich: push_rich,
    quote: push_quote,
};

const MARKDOWN_V2_MARKS: Marks = Marks {
    bullet: "- ",
    counts: ("#### ", ""),
    group: ("**", "**"),
    group_line: ("**", "**"),
    plain: push_plain_v2,
    rich: push_rich_v2,
    quote: push_quote_v2,
};

/// DingTalk's escaping, then `|` made fullwidth: `markdown_v2` draws tables.
fn escape_v2(s: &str, kind: Kind, emit: &mut dyn FnMut(&str) -> bool) {
    markdown::escape(s, kind, &mut |piece| {
        for (i, part) in piece.split('|').enumerate() {
            if (i > 0 && !emit("｜")) || (!part.is_empty() && !emit(part)) {
                return false;
            }
        }
        true
    });
}

fn push_plain_v2(out: &mut String, s: &str, max: usize) {
    if push_cut(out, s, max, &|s, emit| escape_v2(s, Kind::Plain, emit)) {
        out.push_str(ELLIPSIS);
    }
}

fn push_rich_v2(out: &mut String, s: &str, max: usize) {
    if push_cut(out, s, max, &|s, emit| escape_v2(s, Kind::Rich, emit)) {
        out.push_str(ELLIPSIS);
    }
}

fn push_quote_v2(out: &mut String, text: &str) {
    push_quote_with(out, text, &|s, emit| escape_v2(s, Kind::Rich, emit));
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

    /// Its marks on the blocks every dialect shares: `markdown` has no lists, so each line
    /// starts with `•`; `markdown_v2` writes list items and makes `|` fullwidth in alert content,
    /// so it cannot draw a table.
    fn marks(&self) -> &'static Marks {
        match self.flavor {
            Flavor::Markdown => &MARKDOWN_MARKS,
            Flavor::MarkdownV2 => &MARKDOWN_V2_MARKS,
        }
    }

    /// Appends alert content as plain text, cut to `max` bytes with `…`.
    pub(crate) fn push_plain(&self, out: &mut String, s: &str, max: usize) {
        (self.marks().plain)(out, s, max);
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
        write_group(self.marks(), out, name, count);
    }

    /// `• <title> ×<n> — <excerpt>`, or `— fired 10:00, resolved 10:05` in the resolved
    /// section; at level 0 the quote follows on its own `> ` lines.
    fn write_entry(&self, out: &mut String, e: &Entry) {
        write_entry(self.marks(), out, e, Self::LINE_BREAK);
    }

    /// `• **<group>** ×<n>: <title>; <title>; <title> … and <m> more`
    fn write_group_line(&self, out: &mut String, g: &GroupLine) {
        write_group_line(self.marks(), out, g);
    }

    /// `• … and <N> more: <group> <n>, …, <k> other groups <n>` (or by a label's values)
    fn write_overflow(&self, out: &mut String, o: &Overflow) {
        write_overflow(self.marks(), out, o);
    }

    /// `#### Counts · <N>` (when some section is listed above), then
    /// `• <severity>: <n> firing, <m> resolved` lines.
    fn write_counts(&self, out: &mut String, summary: &Summary) {
        write_counts(self.marks(), out, summary, Self::LINE_BREAK);
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
