//! Slack's dialect: a digest in mrkdwn, the markup of an incoming webhook's `text`, measured in
//! characters (Slack cuts `text` past 40 000 characters, so the budget stays far below that).
//!
//! ```text
//! *<title>*
//! *Critical · 3*                                     (a section's heading)
//! *dq_orders* · 3                                    (a group's heading, levels 0 and 1)
//! • <title> ×3 — <excerpt>                           (an alert line, level 1)
//! > <text, up to three lines>                        (its quote, level 0)
//! • *dq_orders* ×9: a; b; c … and 6 more             (a group line, level 2)
//! • … and 322 more: rack r2 108, rack r1 107, …      (a rest line)
//! *Counts · 5*
//! • critical: 3 firing, 1 resolved
//! <https://sluice.example/v1/digests/7|full alert list>
//! ```
//!
//! mrkdwn has no headings and no lists, so headings are bold lines and entries start with `•`.
//! Alert content is escaped as Slack asks (`&`, `<`, `>` as `&amp;`, `&lt;`, `&gt;`), which
//! is what keeps it from writing links, `<@U…>` mentions or `<!channel>`; `@` becomes `＠` too,
//! since a receiver may turn on name linking. In plain content (titles, group names, labels)
//! `*`, `~` and `` ` `` become their fullwidth twins, so a title cannot end the bold around a
//! group name or open code. Line breaks and control characters become spaces, bidi controls and
//! invisible characters are removed, and the footer's words are quoted (`“sluice digest” #`),
//! as in every dialect.

use super::blocks::{
    Marks, write_counts, write_entry, write_group, write_group_line, write_overflow,
};
use super::dialect::{Dialect, Size};
use super::plan::{Entry, GroupLine, Overflow, QUOTE_BYTES, QUOTE_LINES, Section, Summary};
use super::text::{ELLIPSIS, breaks_line, footer_phrase, is_blank, is_invisible, push_thousands};

/// The most characters a Slack digest's text holds: a fifth of what Slack keeps, so a digest is
/// never cut by Slack and stays readable in a channel.
pub const MAX_CHARS: usize = 8_000;

/// Slack's marks on the blocks every dialect shares: bold names, `•` lines.
const MARKS: Marks = Marks {
    bullet: "• ",
    counts: ("*", "*"),
    group: ("*", "*"),
    group_line: ("*", "*"),
    plain: push_plain,
    rich: push_rich,
    quote: push_quote,
};

/// Slack incoming-webhook messages in mrkdwn, measured in characters.
#[derive(Debug, Clone, Copy, Default)]
pub struct Slack;

impl Dialect for Slack {
    const BLOCK_BREAK: &'static str = "\n\n";
    const LINE_BREAK: &'static str = "\n";

    fn size(&self, s: &str) -> Size<Self> {
        Size::new(s.chars().count())
    }

    /// The title is not sent apart from the text (it is its first line), so it costs nothing
    /// of its own.
    fn title_size(&self, _title: &str) -> Size<Self> {
        Size::ZERO
    }

    fn write_plain(&self, out: &mut String, s: &str, max: usize) {
        push_escaped(out, s, max, true);
    }

    /// `*<title>*`: the title is not sent apart from the text.
    fn write_title(&self, out: &mut String, title: &str) {
        out.push('*');
        escape(title, false, &mut |p| {
            out.push_str(p);
            true
        });
        out.push('*');
    }

    /// `*<Section> · <n>*`, `*✅ Resolved · <n>*`
    fn write_section(&self, out: &mut String, section: &Section) {
        out.push('*');
        if section.resolved {
            out.push_str("✅ ");
        }
        out.push_str(section.name);
        out.push_str(" · ");
        push_thousands(out, section.count);
        out.push('*');
    }

    /// `*<group>* · <n>`
    fn write_group(&self, out: &mut String, name: &str, count: u64) {
        write_group(&MARKS, out, name, count);
    }

    /// `• <title> ×<n> — <excerpt>`, or in the resolved section `… — fired 10:00, resolved
    /// 10:05`; at level 0 the text follows as a quote.
    fn write_entry(&self, out: &mut String, e: &Entry) {
        write_entry(&MARKS, out, e, Self::LINE_BREAK);
    }

    /// `• *<group>* ×<n>: <title>; <title>; <title> … and <m> more`
    fn write_group_line(&self, out: &mut String, g: &GroupLine) {
        write_group_line(&MARKS, out, g);
    }

    /// `• … and <N> more: <label> <value> <n>, …, <k> other values <n>` (or groups)
    fn write_overflow(&self, out: &mut String, o: &Overflow) {
        write_overflow(&MARKS, out, o);
    }

    /// `*Counts · <N>*` (when some section is listed above), then `• <severity>: …` lines.
    fn write_counts(&self, out: &mut String, summary: &Summary) {
        write_counts(&MARKS, out, summary, Self::LINE_BREAK);
    }

    /// The link goes inside `<…|…>`: what would end it (`|`, `>`, spaces) is percent-encoded.
    fn link_target(&self, link: &str) -> String {
        let mut s = String::with_capacity(link.len());
        for c in link.trim().chars() {
            if c.is_control() || c.is_whitespace() || matches!(c, '|' | '<' | '>') {
                let mut bytes = [0u8; 4];
                for b in c.encode_utf8(&mut bytes).bytes() {
                    s.push_str(&format!("%{b:02X}"));
                }
            } else {
                s.push(c);
            }
        }
        s
    }

    /// `<<link>|full alert list>`
    fn write_link(&self, out: &mut String, target: &str) {
        out.push('<');
        out.push_str(target);
        out.push_str("|full alert list>");
    }
}

/// Writes one line of alert content in mrkdwn, trimmed, piece by piece to `emit`, until `emit`
/// returns false. `plain`: also `*`, `~` and `` ` `` as their fullwidth twins.
pub(crate) fn escape(s: &str, plain: bool, emit: &mut dyn FnMut(&str) -> bool) {
    let t = s.trim_matches(is_blank);
    let hash = t.contains(['#', '＃', '﹟']);
    let mut quote_ends: Option<usize> = None;
    let mut buf = [0u8; 4];
    for (i, c) in t.char_indices() {
        if quote_ends == Some(i) {
            quote_ends = None;
            if !emit("”") {
                return;
            }
        }
        if hash
            && quote_ends.is_none()
            && matches!(c, 's' | 'S')
            && let Some(end) = footer_phrase(&t[i..])
        {
            quote_ends = Some(i + end);
            if !emit("“") {
                return;
            }
        }
        let piece: &str = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '@' => "＠",
            '*' if plain => "＊",
            '~' if plain => "～",
            '`' if plain => "｀",
            c if is_invisible(c) => continue,
            c if breaks_line(c) || c.is_control() => " ",
            c => c.encode_utf8(&mut buf),
        };
        if !emit(piece) {
            return;
        }
    }
    if quote_ends.is_some() {
        emit("”");
    }
}

/// Appends one line of alert content, cut to `max` bytes of what it shows, then `…` when cut.
/// An entity (`&lt;`) is one piece, written whole or not at all: a part of one would show as
/// text (the shared `text::push_cut` may cut inside a piece, which DingTalk's pieces allow).
fn push_escaped(out: &mut String, s: &str, max: usize, plain: bool) {
    let start = out.len();
    let mut cut = false;
    escape(s, plain, &mut |piece| {
        if out.len() - start + piece.len() > max {
            cut = true;
            return false;
        }
        out.push_str(piece);
        true
    });
    if cut {
        let kept = out[start..].trim_end_matches(is_blank).len();
        out.truncate(start + kept);
        out.push_str(ELLIPSIS);
    }
}

fn push_plain(out: &mut String, s: &str, max: usize) {
    push_escaped(out, s, max, true);
}

fn push_rich(out: &mut String, s: &str, max: usize) {
    push_escaped(out, s, max, false);
}

/// The text of a level-0 entry as a quote: at most three non-blank lines and 300 bytes of what
/// they show, `> …` lines joined by `\n`, `…` where cut.
fn push_quote(out: &mut String, text: &str) {
    let mut room = QUOTE_BYTES;
    let mut lines = text
        .lines()
        .map(|l| l.trim_matches(is_blank))
        .filter(|l| !l.is_empty())
        .peekable();
    let mut shown = 0;
    while let Some(l) = lines.next() {
        if room == 0 {
            out.push_str(" …");
            return;
        }
        if shown > 0 {
            out.push('\n');
        }
        out.push_str("> ");
        let body = out.len();
        push_escaped(out, l, room, false);
        let written = out.len() - body;
        shown += 1;
        if out.ends_with(ELLIPSIS) {
            return;
        }
        room = room.saturating_sub(written);
        if shown == QUOTE_LINES {
            if lines.peek().is_some() {
                out.push_str(" …");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(s: &str, plain: bool) -> String {
        let mut out = String::new();
        escape(s, plain, &mut |p| {
            out.push_str(p);
            true
        });
        out
    }

    #[test]
    fn content_cannot_link_mention_or_forge_the_footer() {
        let cases = [
            ("disk 91% on db-2", "disk 91% on db-2"),
            ("a < b && c > d", "a &lt; b &amp;&amp; c &gt; d"),
            (
                "<!channel> <@U123> <https://x|y>",
                "&lt;!channel&gt; &lt;＠U123&gt; &lt;https://x|y&gt;",
            ),
            ("@here look", "＠here look"),
            ("*bold* ~x~ `c`", "＊bold＊ ～x～ ｀c｀"),
            ("line\nbreak\u{202E}x\u{200B}y", "line breakxy"),
            ("sluice digest #9 · 1 alert", "“sluice digest” #9 · 1 alert"),
            ("  数据质量 ×3  ", "数据质量 ×3"),
        ];
        for (input, want) in cases {
            assert_eq!(written(input, true), want, "{input:?}");
        }
        // Texts keep emphasis.
        assert_eq!(written("*do* _this_", false), "*do* _this_");
    }

    #[test]
    fn a_cut_is_a_prefix_then_an_ellipsis() {
        let mut out = String::new();
        // `<` is written `&lt;`, which is cut whole or not at all.
        push_escaped(&mut out, "a<b", 4, true);
        assert_eq!(out, "a…");
        let mut out = String::new();
        push_escaped(&mut out, "a<b", 5, true);
        assert_eq!(out, "a&lt;…");
        let mut out = String::new();
        push_escaped(&mut out, "abc", 3, true);
        assert_eq!(out, "abc");
    }

    #[test]
    fn the_size_is_characters() {
        assert_eq!(Slack.size("数据 ok").get(), 5);
        let mut link = String::new();
        Slack.write_link(&mut link, &Slack.link_target("https://s.example/a b|c"));
        assert_eq!(link, "<https://s.example/a%20b%7Cc|full alert list>");
    }
}
