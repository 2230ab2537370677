//! Feishu / Lark's dialects: how each block of a digest is written for a custom bot's two
//! message types, and what text costs in the 20 KB request body Feishu counts.
//!
//! - [`Post`] (`msg_type: post`, rich text): plain text, one paragraph per line. A post shows
//!   no markdown, so headings are marked with `【…】` and `◆`, and alert content is escaped only
//!   where a text element could still act (`text`: mentions, HTML, entities, the footer). Its
//!   measure is what a line costs once it is a paragraph of the post's `content`: the
//!   JSON-escaped bytes of its characters, and [`PARAGRAPH`] bytes for each line break (the
//!   closing of one paragraph and the opening of the next) in place of `\n`'s two.
//! - [`Card`] (`msg_type: interactive`): one `lark_md` markdown element, so it is written and
//!   escaped as DingTalk's markdown is (`digest::dingtalk::markdown`: emphasis and web links
//!   kept in texts, everything else an alert could mean made fullwidth; `<at id=…>` cannot
//!   form). Its measure is the markdown's JSON-escaped bytes.
//!
//! ```text
//! Post                                             Card (lark_md)
//! <title>                                          **<title>**
//! 【Critical · 3】                                  **【Critical · 3】**
//! ◆ dq_orders · 3                                  **dq_orders** · 3
//! - <title> ×3 — <excerpt>                         - <title> ×3 — <excerpt>
//! > <text, up to three lines>                      > <text, up to three lines>
//! - dq_orders ×9: a; b; c … and 6 more             - **dq_orders** ×9: a; b; c … and 6 more
//! - … and 322 more: rack r2 108, …                 - … and 322 more: rack r2 108, …
//! 【✅ Resolved · 2】                               **【✅ Resolved · 2】**
//! 【Counts · 5】                                    **【Counts · 5】**
//! - critical: 3 firing, 1 resolved                 - critical: 3 firing, 1 resolved
//! full alert list: <link>                          [full alert list](<link>)
//! ```
//!
//! The request body is the provider's (`provider::feishu`): a post's first line (its title, which
//! Feishu shows as the post's title) and a card's link line (which becomes its button) are
//! counted here and not sent, and the link line of a post becomes an `a` element a few bytes
//! longer than the text it replaces, which the provider's budget leaves room for. Every alert
//! line starts with a mark sluice writes, so no line from alert content can be taken for the
//! link line, the mention line or the footer.

mod text;

use super::dialect::{Dialect, Size};
use super::dingtalk::{ESCAPE_EXTRA, LINK_PREFIX, escape_link, push_plain, push_quote, push_rich};
use super::plan::{
    EXCERPT_BYTES, Entry, GROUP_TITLE_BYTES, GroupLine, HEADING_GROUP_BYTES, OVERFLOW_GROUP_BYTES,
    Overflow, Section, Summary, TITLE_BYTES,
};
use super::text::{ELLIPSIS, push_cut, push_quote_with, push_thousands};

/// What a line break costs in a post: `"}],[{"tag":"text","text":"` closes one paragraph (a
/// text element in its array) and opens the next.
pub const PARAGRAPH: usize = r#""}],[{"tag":"text","text":""#.len();

/// What a link line says before its link, in both dialects.
pub const LINK_TEXT: &str = "full alert list";

/// Feishu's rich-text messages (`msg_type: post`), measured in the bytes a line costs as a
/// paragraph of the post's content.
#[derive(Debug, Clone, Copy, Default)]
pub struct Post;

/// Feishu's card messages (`msg_type: interactive`) with one `lark_md` element, measured in its
/// JSON-escaped bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct Card;

/// Extra bytes a byte costs in a post: JSON escaping, and a line break is a new paragraph.
const POST_EXTRA: [u8; 256] = {
    let mut t = ESCAPE_EXTRA;
    t[b'\n' as usize] = (PARAGRAPH - 1) as u8;
    t
};

/// What sets the two dialects apart: the marks around sluice's headings and how alert content
/// is escaped. The blocks themselves are the same.
struct Marks {
    /// Around a section's heading and the count block's.
    section: (&'static str, &'static str),
    /// Around a group's name in its heading (levels 0 and 1) and in its group line (level 2).
    group: (&'static str, &'static str),
    group_line: (&'static str, &'static str),
    plain: fn(&mut String, &str, usize),
    rich: fn(&mut String, &str, usize),
    quote: fn(&mut String, &str),
}

const POST: Marks = Marks {
    section: ("【", "】"),
    group: ("◆ ", ""),
    group_line: ("", ""),
    plain: push_post,
    rich: push_post,
    quote: push_post_quote,
};

const CARD: Marks = Marks {
    section: ("**【", "】**"),
    group: ("**", "**"),
    group_line: ("**", "**"),
    plain: push_plain,
    rich: push_rich,
    quote: push_quote,
};

/// Appends alert content as post text, cut to `max` bytes with `…`.
fn push_post(out: &mut String, s: &str, max: usize) {
    if push_cut(out, s, max, &|s, emit| text::escape(s, emit)) {
        out.push_str(ELLIPSIS);
    }
}

/// Appends the text's first lines as `> …` lines of post text.
fn push_post_quote(out: &mut String, s: &str) {
    push_quote_with(out, s, &|s, emit| text::escape(s, emit));
}

impl Dialect for Post {
    const BLOCK_BREAK: &'static str = "\n\n";
    const LINE_BREAK: &'static str = "\n";

    fn size(&self, s: &str) -> Size<Self> {
        let extra: usize = s
            .bytes()
            .map(|b| usize::from(POST_EXTRA[usize::from(b)]))
            .sum();
        Size::new(s.len() + extra)
    }

    fn write_plain(&self, out: &mut String, s: &str, max: usize) {
        push_post(out, s, max);
    }

    /// `<title>`: the post's title as its first line (not sent: Feishu shows the title).
    fn write_title(&self, out: &mut String, title: &str) {
        out.push_str(title);
    }

    fn write_section(&self, out: &mut String, section: &Section) {
        write_section(&POST, out, section);
    }

    fn write_group(&self, out: &mut String, name: &str, count: u64) {
        write_group(&POST, out, name, count);
    }

    fn write_entry(&self, out: &mut String, e: &Entry) {
        write_entry(&POST, out, e, Self::LINE_BREAK);
    }

    fn write_group_line(&self, out: &mut String, g: &GroupLine) {
        write_group_line(&POST, out, g);
    }

    fn write_overflow(&self, out: &mut String, o: &Overflow) {
        write_overflow(&POST, out, o);
    }

    fn write_counts(&self, out: &mut String, summary: &Summary) {
        write_counts(&POST, out, summary, Self::LINE_BREAK);
    }

    fn link_target(&self, link: &str) -> String {
        escape_link(link)
    }

    /// `full alert list: <link>` (the provider sends it as a link element).
    fn write_link(&self, out: &mut String, target: &str) {
        out.push_str(LINK_TEXT);
        out.push_str(": ");
        out.push_str(target);
    }
}

impl Dialect for Card {
    const BLOCK_BREAK: &'static str = "\n\n";
    const LINE_BREAK: &'static str = "\n";

    fn size(&self, s: &str) -> Size<Self> {
        Size::new(super::json_escaped_len(s))
    }

    fn write_plain(&self, out: &mut String, s: &str, max: usize) {
        push_plain(out, s, max);
    }

    /// `**<title>**`: the card has no header, so that its keyword is in the markdown, the one
    /// part of a card Feishu surely checks.
    fn write_title(&self, out: &mut String, title: &str) {
        out.push_str("**");
        out.push_str(title);
        out.push_str("**");
    }

    fn write_section(&self, out: &mut String, section: &Section) {
        write_section(&CARD, out, section);
    }

    fn write_group(&self, out: &mut String, name: &str, count: u64) {
        write_group(&CARD, out, name, count);
    }

    fn write_entry(&self, out: &mut String, e: &Entry) {
        write_entry(&CARD, out, e, Self::LINE_BREAK);
    }

    fn write_group_line(&self, out: &mut String, g: &GroupLine) {
        write_group_line(&CARD, out, g);
    }

    fn write_overflow(&self, out: &mut String, o: &Overflow) {
        write_overflow(&CARD, out, o);
    }

    fn write_counts(&self, out: &mut String, summary: &Summary) {
        write_counts(&CARD, out, summary, Self::LINE_BREAK);
    }

    fn link_target(&self, link: &str) -> String {
        escape_link(link)
    }

    /// `[full alert list](<link>)` (the provider sends it as the card's button).
    fn write_link(&self, out: &mut String, target: &str) {
        out.push_str(LINK_PREFIX);
        out.push_str(target);
        out.push(')');
    }
}

/// The line a dialect writes for `link`, as the provider finds it in a digest's text.
pub fn link_line<D: Dialect>(d: &D, link: &str) -> String {
    let mut out = String::new();
    d.write_link(&mut out, &d.link_target(link));
    out
}

/// `<open>Critical · 3<close>`, `<open>✅ Resolved · 2<close>`
fn write_section(m: &Marks, out: &mut String, section: &Section) {
    out.push_str(m.section.0);
    if section.resolved {
        out.push_str("✅ ");
    }
    out.push_str(section.name);
    out.push_str(" · ");
    push_thousands(out, section.count);
    out.push_str(m.section.1);
}

/// `◆ <group> · <n>`, `**<group>** · <n>`
fn write_group(m: &Marks, out: &mut String, name: &str, count: u64) {
    out.push_str(m.group.0);
    (m.plain)(out, name, HEADING_GROUP_BYTES);
    out.push_str(m.group.1);
    out.push_str(" · ");
    push_thousands(out, count);
}

/// `- <title> ×<n> — <excerpt>` in a firing section, `- <title> ×<n> — fired 10:00, resolved
/// 10:05` in the resolved one; the quote (level 0) follows on its own lines.
fn write_entry(m: &Marks, out: &mut String, e: &Entry, line_break: &str) {
    out.push_str("- ");
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
fn write_group_line(m: &Marks, out: &mut String, g: &GroupLine) {
    out.push_str("- ");
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
fn write_overflow(m: &Marks, out: &mut String, o: &Overflow) {
    out.push_str("- … and ");
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

/// `【Counts · <N>】` (when some section is listed above), then `- <severity>: <n> firing, <m>
/// resolved` lines.
fn write_counts(m: &Marks, out: &mut String, summary: &Summary, line_break: &str) {
    if summary.titled {
        out.push_str(m.section.0);
        out.push_str("Counts · ");
        push_thousands(out, summary.count);
        out.push_str(m.section.1);
    }
    for (i, l) in summary.lines.iter().enumerate() {
        if i > 0 || summary.titled {
            out.push_str(line_break);
        }
        out.push_str("- ");
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
