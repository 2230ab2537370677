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

use super::blocks::{
    Marks, write_counts, write_entry, write_group, write_group_line, write_overflow,
};
use super::dialect::{Dialect, Size};
use super::dingtalk::{ESCAPE_EXTRA, LINK_PREFIX, escape_link, push_plain, push_quote, push_rich};
use super::plan::{Entry, GroupLine, Overflow, Section, Summary};
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

/// Around a section's heading, in each dialect (the count block's heading has the same).
const POST_SECTION: (&str, &str) = ("【", "】");
const CARD_SECTION: (&str, &str) = ("**【", "】**");

const POST: Marks = Marks {
    bullet: "- ",
    counts: POST_SECTION,
    group: ("◆ ", ""),
    group_line: ("", ""),
    plain: push_post,
    rich: push_post,
    quote: push_post_quote,
};

const CARD: Marks = Marks {
    bullet: "- ",
    counts: CARD_SECTION,
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
        write_section(POST_SECTION, out, section);
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
        write_section(CARD_SECTION, out, section);
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
fn write_section(marks: (&str, &str), out: &mut String, section: &Section) {
    out.push_str(marks.0);
    if section.resolved {
        out.push_str("✅ ");
    }
    out.push_str(section.name);
    out.push_str(" · ");
    push_thousands(out, section.count);
    out.push_str(marks.1);
}
