//! DingTalk's dialect: how each block of a digest is written in DingTalk's markdown subset
//! (headings, bold, list items, quotes, links), how alert content is escaped (`markdown`), and
//! what a message costs: the bytes its title and text take inside the JSON request body
//! ([`json_escaped_len`]), which is what DingTalk's size limit counts.
//!
//! ```text
//! ### <title>
//! #### Critical · 3                                  (a section's heading)
//! **dq_orders** · 3                                  (a group's heading, levels 0 and 1)
//! - <title> ×3 — <excerpt>                           (an alert line, level 1)
//! > <text, up to three lines>                        (its quote, level 0)
//! - **dq_orders** ×9: a; b; c … and 6 more           (a group line, level 2)
//! - … and 322 more: rack r2 108, rack r1 107, …      (a rest line, split by label)
//! - … and 1,234 more: dq_orders 800, …, 3 other groups 12     (or by group)
//! #### ✅ Resolved · 2
//! - replication lag 45s — fired 10:00, resolved 10:05
//! #### Counts · 5
//! - critical: 3 firing, 1 resolved
//! [full alert list](<link>)
//! ```
//!
//! Every piece of alert-derived text goes through `markdown::escape` (by `push_plain`,
//! `push_rich`, `push_quote`, which the template filters and formatter call too, so the
//! renderer and the built-in template agree byte for byte); what sluice or the configuration
//! wrote (headings, counts, times, the link, the keyword) goes out as it is. `escape` hands out
//! its pieces in order and never takes one back, so a cut on a character boundary is a prefix
//! of the whole, and every size is measured on the escaped output.
//!
//! It lives under `digest/`, not `provider/dingtalk/`, because the template engine
//! ([`super::template`]) calls its escaping in its filters and formatter when templates are
//! compiled at config load, and `digest` must not import `provider`.

pub(crate) mod markdown;

use markdown::Kind;

use super::blocks::{
    Marks, write_counts, write_entry, write_group, write_group_line, write_overflow,
};
use super::dialect::{Dialect, Size};
use super::plan::{Entry, GroupLine, Overflow, Section, Summary};
use super::text::{ELLIPSIS, push_cut, push_quote_with, push_thousands};

/// DingTalk's marks on the blocks every dialect shares.
const MARKS: Marks = Marks {
    bullet: "- ",
    counts: ("#### ", ""),
    group: ("**", "**"),
    group_line: ("**", "**"),
    plain: push_plain,
    rich: push_rich,
    quote: push_quote,
};

/// DingTalk's markdown messages (`msgtype: markdown`), measured in JSON-escaped bytes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DingTalk;

impl Dialect for DingTalk {
    const BLOCK_BREAK: &'static str = "\n\n";
    const LINE_BREAK: &'static str = "\n";

    fn size(&self, s: &str) -> Size<Self> {
        Size::new(json_escaped_len(s))
    }

    fn write_plain(&self, out: &mut String, s: &str, max: usize) {
        push_plain(out, s, max);
    }

    /// `### <title>`
    fn write_title(&self, out: &mut String, title: &str) {
        out.push_str("### ");
        out.push_str(title);
    }

    /// `#### <Section> · <n>`, `#### ✅ Resolved · <n>`
    fn write_section(&self, out: &mut String, section: &Section) {
        out.push_str("#### ");
        if section.resolved {
            out.push_str("✅ ");
        }
        out.push_str(section.name);
        out.push_str(" · ");
        push_thousands(out, section.count);
    }

    /// `**<group>** · <n>`
    fn write_group(&self, out: &mut String, name: &str, count: u64) {
        write_group(&MARKS, out, name, count);
    }

    /// `- <title> ×<n> — <excerpt>` in a firing section, `- <title> ×<n> — fired 10:00,
    /// resolved 10:05` in the resolved one; the quote (level 0) follows on its own lines.
    fn write_entry(&self, out: &mut String, e: &Entry) {
        write_entry(&MARKS, out, e, Self::LINE_BREAK);
    }

    /// `- **<group>** ×<n>: <title>; <title>; <title> … and <m> more` (`m` of its alerts unnamed)
    fn write_group_line(&self, out: &mut String, g: &GroupLine) {
        write_group_line(&MARKS, out, g);
    }

    /// `- … and <N> more: <group> <n>, …, <k> other groups <n>`, or split by a label
    /// `- … and <N> more: <label> <value> <n>, …, <k> other values <n>`
    fn write_overflow(&self, out: &mut String, o: &Overflow) {
        write_overflow(&MARKS, out, o);
    }

    /// `#### Counts · <N>` (when some section is listed above), then
    /// `- <severity>: <n> firing, <m> resolved` lines.
    fn write_counts(&self, out: &mut String, summary: &Summary) {
        write_counts(&MARKS, out, summary, Self::LINE_BREAK);
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

pub(crate) const LINK_PREFIX: &str = "[full alert list](";

/// The link goes inside `(...)` on one line, so what would end the destination or the line is
/// percent-encoded; ordinary URLs pass unchanged.
pub(crate) fn escape_link(link: &str) -> String {
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

/// Appends one line of alert content written as `kind` in DingTalk's dialect ([`markdown`]),
/// cut to at most `max` bytes of what it shows (trailing blanks dropped at a cut); true if cut.
fn push_escaped(out: &mut String, s: &str, max: usize, kind: Kind) -> bool {
    push_cut(out, s, max, &|s, emit| markdown::escape(s, kind, emit))
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

/// Appends the text's first non-blank lines as a markdown quote (`> …` lines joined by `\n`),
/// each written as rich alert content: at most 3 lines and 300 bytes of what they show, cut on a
/// character boundary, `…` when there is more.
pub(crate) fn push_quote(out: &mut String, text: &str) {
    push_quote_with(out, text, &|s, emit| markdown::escape(s, Kind::Rich, emit));
}

/// Extra bytes serde_json spends on each byte when escaping a string: `\"`, `\\`, the short
/// escapes `\b \t \n \f \r`, and `\u00XX` for the other control bytes. Bytes of multi-byte
/// characters are never escaped.
pub(crate) const ESCAPE_EXTRA: [u8; 256] = {
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
