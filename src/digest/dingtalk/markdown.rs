//! How alert content is written into DingTalk's markdown so that it shows as what it says.
//!
//! Everything an alert brings (title, text, labels, the group names taken from labels) goes
//! through [`escape`], one line at a time, whoever writes the digest: the renderer, the
//! template filters `line`, `excerpt` and `quote`, and the template formatter for values a
//! template prints as they are. What sluice writes itself (headings, counts, times, the footer,
//! the mention line) and what the configuration gives (robot name, keyword, link) do not.
//!
//! Whether DingTalk honours backslash escapes is not documented, and a backslash it does not
//! honour would both show and fail to escape. So a character that would act as markdown is
//! replaced by its fullwidth twin (`*` → `＊`, `<` → `＜`, `@` → `＠`, …), which no markdown
//! reads and a reader reads as the same character; characters that cannot act where they stand
//! are left alone, so `ods_orders`, `db-2`, `12.3%` and `a < b` read as sent.
//!
//! Both kinds:
//! - Line breaks and control characters become spaces; bidi controls (U+202A–E, U+2066–9,
//!   U+200E/F, U+061C) and invisible characters (zero-width space, word joiner, soft hyphen, BOM,
//!   …) are removed, and count as blank when trimming.
//! - No raw HTML, comments or autolinks: `<` before a letter, `/`, `!` or `?` becomes `＜`
//!   (`<font color=red>` shows as text); an entity or character reference (`&lt;`, `&#x202E;`)
//!   gets `＆`, so it cannot smuggle in what was removed.
//! - No mentions: `@` becomes `＠`. DingTalk notifies only the people in the message's `at`
//!   object, which only the configuration fills ([`crate::mention`]); this keeps an alert from
//!   writing text that looks like sluice's mention line, or like one of DingTalk's own.
//! - No block structure at the start of a line: a leading `#`, `>`, list marker (`- `, `+ `,
//!   `* `, `1. `, `1) `), thematic break or setext underline (`---`, `***`, `___`, `===`) is
//!   neutralized.
//! - No reference links or definitions: `]` before `[` or `:` becomes `］`.
//! - Nothing that reads as the footer: `sluice digest` followed by `#` (in any case, across
//!   spaces, emphasis markers and removed characters) is written `“sluice digest” #`, so only
//!   sluice's own last line parses as a footer and a reader sees a quotation.
//!
//! [`Kind::Plain`] (titles, group names, labels: plain text): also `*`, `~` and `` ` `` become
//! fullwidth everywhere, `_` where it could close emphasis (a run after a non-blank character
//! and not before a letter or digit; `snake_case` and a leading `__x` stay), `]` before `(`,
//! `!` before `[`, a leading `[` (a task list box, a definition), and `\` before punctuation or
//! at the end.
//!
//! [`Kind::Rich`] (alert texts): emphasis, inline code and links to `http://` / `https://` stay;
//! a link to anything else (`javascript:`, `dingtalk://`) loses its `]`, and an image
//! `![alt](url)` is written as the link `[alt](url)` (`[image](url)` without alt text), so
//! nothing is fetched when the digest is shown. A `\` at the end becomes `＼`, so it cannot
//! escape the markup sluice writes after the text.
//!
//! [`escape`] hands out its pieces in order and never takes one back, so a cut of what it wrote
//! is a prefix of the whole; the renderer cuts on what is shown and measures every cost on it.

use std::borrow::Cow;

use crate::digest::text::{breaks_line, footer_phrase, is_blank, is_invisible};

/// What alert content may do in the digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Shown as the characters it is: titles, group names, labels.
    Plain,
    /// Alert texts: links to the web and emphasis are kept.
    Rich,
}

/// Writes one line of alert content as `kind`, trimmed, piece by piece to `emit` (a character,
/// a few that belong together, or a run that goes out as it is), until `emit` returns false.
/// Any prefix of a piece cut on a character boundary is a fine place to stop.
pub(crate) fn escape(s: &str, kind: Kind, emit: &mut dyn FnMut(&str) -> bool) {
    let s = s.trim_matches(is_blank);
    let t: Cow<str> = if !s.is_ascii() && s.contains(is_invisible) {
        Cow::Owned(s.chars().filter(|&c| !is_invisible(c)).collect())
    } else {
        Cow::Borrowed(s)
    };
    let t = t.as_ref();
    let rule = block_rule(t);
    let ordered = ordered_marker(t);
    let plain = kind == Kind::Plain;
    // The footer's words matter only before a `#`; most alert content has none.
    let hash = t.contains('#') || (!t.is_ascii() && t.contains(['＃', '﹟']));
    // Characters no rule looks at in the middle of a line go out in runs, found byte by byte:
    // most of any line. Whether the character starting at byte `j` is one a rule looks at:
    let bytes = t.as_bytes();
    let special = |j: usize| match bytes[j] {
        b'!' | b'&' | b'<' | b'@' | b'\\' | b']' => true,
        b'*' | b'_' | b'`' | b'~' => plain,
        b's' | b'S' => hash,
        b if b < 0x20 || b == 0x7f => true,
        // C1 controls (U+0080–U+009F) and U+2028/U+2029 break lines.
        0xC2 => bytes.get(j + 1).is_some_and(|n| (0x80..=0x9F).contains(n)),
        0xE2 => bytes.get(j + 1) == Some(&0x80) && matches!(bytes.get(j + 2), Some(0xA8 | 0xA9)),
        _ => false,
    };
    let mut quote_ends: Option<usize> = None;
    let mut prev: Option<char> = None;
    let mut i = 0;
    let mut buf = [0u8; 4];
    while let Some(c) = t[i..].chars().next() {
        if quote_ends == Some(i) {
            quote_ends = None;
            if !emit("”") {
                return;
            }
        }
        if i > 0 && Some(i) != ordered {
            let stop = [quote_ends, ordered]
                .into_iter()
                .flatten()
                .filter(|&at| at > i)
                .min()
                .unwrap_or(t.len());
            let mut j = i;
            // Continuation bytes of a character are never special, so `j` stops on a boundary.
            while j < stop {
                if !special(j) {
                    j += 1;
                } else if plain && bytes[j] == b'_' {
                    let last = if j == i {
                        prev
                    } else {
                        t[..j].chars().next_back()
                    };
                    if underscores_close(t, j, last) {
                        break;
                    }
                    j += underscores(t, j);
                } else {
                    break;
                }
            }
            if j > i {
                if !emit(&t[i..j]) {
                    return;
                }
                prev = t[..j].chars().next_back();
                i = j;
                continue;
            }
        }
        let after = i + c.len_utf8();
        let rest = &t[after..];
        let next = rest.chars().next();
        if quote_ends.is_none()
            && matches!(c, 's' | 'S')
            && let Some(end) = footer_phrase(&t[i..])
        {
            quote_ends = Some(i + end);
            if !emit("“") {
                return;
            }
        }
        if plain && c == '_' {
            let run = underscores(t, i);
            let closes = underscores_close(t, i, prev) || (i == 0 && rule == Some(Block::Break));
            for _ in 0..run {
                if !emit(if closes { "＿" } else { "_" }) {
                    return;
                }
            }
            prev = Some('_');
            i += run;
            continue;
        }
        if c == '!' {
            let run = t[i..].bytes().take_while(|&b| b == b'!').count();
            let end = i + run;
            let image = t[end..].starts_with('[');
            // Before a `[`, the last `!` of a run makes an image, and any other would take its
            // place if it were dropped: they are made fullwidth, and in a text the last one
            // goes, so the image becomes the link it points to and nothing is fetched.
            let shown = if image && !plain { run - 1 } else { run };
            for _ in 0..shown {
                if !emit(if image { "！" } else { "!" }) {
                    return;
                }
            }
            prev = Some('!');
            i = end;
            if image && !plain && t[end..].starts_with("[]") {
                if !emit("[image") {
                    return;
                }
                prev = Some('[');
                i += 1;
            }
            continue;
        }
        let piece: &str = match c {
            c if breaks_line(c) => " ",
            '@' => "＠",
            '<' if next
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) =>
            {
                "＜"
            }
            '&' if is_reference(rest) => "＆",
            '\\' if next.is_none() || (plain && next.is_some_and(|n| n.is_ascii_punctuation())) => {
                "＼"
            }
            _ if i == 0 && rule.is_some() => fullwidth(c),
            '.' | ')' if Some(i) == ordered => fullwidth(c),
            ']' => match next {
                Some('[' | ':') => "］",
                // The image's `!` is dropped, so its `[` would follow.
                Some('!') if !plain && rest[1..].starts_with('[') => "］",
                Some('(') if plain || !web_destination(&rest[1..]) => "］",
                _ => "]",
            },
            '[' if plain && i == 0 => "［",
            '*' | '~' | '`' if plain => fullwidth(c),
            c => c.encode_utf8(&mut buf),
        };
        if !emit(piece) {
            return;
        }
        prev = Some(c);
        i = after;
    }
    if quote_ends.is_some() {
        emit("”");
    }
}

/// How many underscores start at `at`.
fn underscores(t: &str, at: usize) -> usize {
    t[at..].bytes().take_while(|&b| b == b'_').count()
}

/// Whether the run of underscores at `at`, after `prev`, could close emphasis: only after a
/// non-blank character and before something that is not a letter or digit. Such a run is made
/// fullwidth as a whole; any other can at most open emphasis, which then nothing closes.
fn underscores_close(t: &str, at: usize, prev: Option<char>) -> bool {
    let after = t[at + underscores(t, at)..].chars().next();
    prev.is_some_and(|p| !p.is_whitespace()) && !after.is_some_and(char::is_alphanumeric)
}

/// What the first character of a line would start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    /// A heading, quote, list item, HTML block or task list (`#`, `>`, `- `, `<div>`, …).
    Marker,
    /// A thematic break or setext underline: the line is one character repeated (`---`, `***`,
    /// `=`).
    Break,
}

/// Whether the line's first character starts block structure (then it is made fullwidth).
fn block_rule(t: &str) -> Option<Block> {
    let mut chars = t.chars();
    let first = chars.next()?;
    let second = chars.next();
    // A setext underline needs one `-` or `=`; a thematic break three `-`, `*` or `_`.
    if matches!(first, '-' | '*' | '_' | '=')
        && t.chars()
            .filter(|c| !matches!(c, ' ' | '\t'))
            .all(|c| c == first)
        && (matches!(first, '-' | '=') || t.chars().filter(|&c| c == first).count() >= 3)
    {
        return Some(Block::Break);
    }
    let spaced = second.is_none_or(|c| c == ' ' || c == '\t');
    match first {
        '#' | '>' => Some(Block::Marker),
        '-' | '+' | '*' if spaced => Some(Block::Marker),
        // Fences open code blocks that swallow the lines after them.
        '`' | '~' if t.starts_with("```") || t.starts_with("~~~") => Some(Block::Marker),
        _ => None,
    }
}

/// Where the `.` or `)` of an ordered list marker (`1. `, `12) `) is, if the line starts with
/// one.
fn ordered_marker(t: &str) -> Option<usize> {
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    let mark = *t.as_bytes().get(digits)?;
    let spaced = t
        .as_bytes()
        .get(digits + 1)
        .is_none_or(|&b| b == b' ' || b == b'\t');
    ((1..=9).contains(&digits) && matches!(mark, b'.' | b')') && spaced).then_some(digits)
}

/// Whether `rest` (what follows a `&`) is an entity or character reference, or would be with
/// the `;` sluice may write next (`; ` between titles).
pub(crate) fn is_reference(rest: &str) -> bool {
    let b = rest.as_bytes();
    let (body, max): (&[u8], usize) = match b {
        [b'#', b'x' | b'X', tail @ ..] => (tail, 6),
        [b'#', tail @ ..] => (tail, 7),
        _ => (b, 32),
    };
    let hex = matches!(b, [b'#', b'x' | b'X', ..]);
    let numeric = b.first() == Some(&b'#');
    let len = body
        .iter()
        .take_while(|c| {
            if hex {
                c.is_ascii_hexdigit()
            } else if numeric {
                c.is_ascii_digit()
            } else {
                c.is_ascii_alphanumeric()
            }
        })
        .count();
    (1..=max).contains(&len)
        && body.get(len).is_none_or(|&b| b == b';')
        && (numeric || body[0].is_ascii_alphabetic())
}

/// Whether a link destination (what follows its `(`) is a web address: the only links an alert
/// text keeps. Not in `<…>`: the `<` is made fullwidth, which would leave a relative link.
fn web_destination(dest: &str) -> bool {
    let dest = dest.trim_start_matches([' ', '\t']);
    let scheme = |s: &str| {
        dest.get(..s.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(s))
    };
    scheme("http://") || scheme("https://")
}

/// The fullwidth twin of an ASCII character that markdown reads (U+FF01–FF5E).
fn fullwidth(c: char) -> &'static str {
    match c {
        '!' => "！",
        '#' => "＃",
        '&' => "＆",
        ')' => "）",
        '*' => "＊",
        '+' => "＋",
        '-' => "－",
        '.' => "．",
        '<' => "＜",
        '=' => "＝",
        '>' => "＞",
        '@' => "＠",
        '[' => "［",
        '\\' => "＼",
        ']' => "］",
        '_' => "＿",
        '`' => "｀",
        '~' => "～",
        _ => unreachable!("no fullwidth twin is needed for {c:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(s: &str, kind: Kind) -> String {
        let mut out = String::new();
        escape(s, kind, &mut |p| {
            out.push_str(p);
            true
        });
        out
    }

    fn check(kind: Kind, cases: &[(&str, &str)]) {
        for (input, want) in cases {
            assert_eq!(written(input, kind), *want, "{kind:?} {input:?}");
            // Written twice, it stays the same: a value a template filters and then prints.
            assert_eq!(written(want, kind), *want, "{kind:?} twice {input:?}");
        }
    }

    #[test]
    fn plain_text_shows_as_the_characters_it_is() {
        check(
            Kind::Plain,
            &[
                // Ordinary alert content passes unchanged.
                (
                    "ods_orders: 12% null user_id",
                    "ods_orders: 12% null user_id",
                ),
                ("replication lag 45s on db-2", "replication lag 45s on db-2"),
                (
                    "p99 <= 1.5 s, -5% (a < b) #3 [prod]",
                    "p99 <= 1.5 s, -5% (a < b) #3 [prod]",
                ),
                ("__consumer_offsets lag", "__consumer_offsets lag"),
                ("C:\\Users\\etl", "C:\\Users\\etl"),
                ("数据质量告警 ×3", "数据质量告警 ×3"),
                // Emphasis, code and strikethrough cannot form.
                (
                    "*bold* **b** _it_ `code` ~~s~~",
                    "＊bold＊ ＊＊b＊＊ _it＿ ｀code｀ ～～s～～",
                ),
                ("__init__ and x_ y", "__init＿＿ and x＿ y"),
                ("a\\*b\\ end\\", "a＼＊b\\ end＼"),
                // No links, images, references or definitions.
                (
                    "see [x](https://a) or [y][z]",
                    "see [x］(https://a) or [y］[z]",
                ),
                ("![pixel](https://t/p.gif)", "！[pixel］(https://t/p.gif)"),
                ("wow! [x] ok!", "wow! [x] ok!"),
                ("!![x] x![y]", "！！[x] x！[y]"),
                ("[x]: https://evil", "［x］: https://evil"),
                ("[ ] task", "［ ] task"),
                // No block structure at the start.
                ("# big", "＃ big"),
                ("#3 failed", "＃3 failed"),
                ("> quote", "＞ quote"),
                ("- item", "－ item"),
                ("+ item", "＋ item"),
                ("* item", "＊ item"),
                ("1. one", "1． one"),
                ("12) two", "12） two"),
                ("1.5 GB", "1.5 GB"),
                ("-5%", "-5%"),
                ("---", "－--"),
                ("- - -", "－ - -"),
                ("___", "＿＿＿"),
                ("=", "＝"),
                ("```rust", "｀｀｀rust"),
            ],
        );
    }

    #[test]
    fn nothing_from_an_alert_is_html_a_mention_hidden_or_a_footer() {
        for kind in [Kind::Plain, Kind::Rich] {
            check(
                kind,
                &[
                    (
                        "<font color=red>x</font> <!-- hidden --> <https://x> <?php",
                        "＜font color=red>x＜/font> ＜!-- hidden --> ＜https://x> ＜?php",
                    ),
                    ("a<b", "a＜b"),
                    (
                        "AT&T &lt;b&gt; &#x202E; &#8238; & so",
                        "AT&T ＆lt;b＆gt; ＆#x202E; ＆#8238; & so",
                    ),
                    // What sluice writes next may be a `;`.
                    ("AT&T", "AT＆T"),
                    ("x &#x202E", "x ＆#x202E"),
                    ("call @13800000000 or @all", "call ＠13800000000 or ＠all"),
                    // Bidi controls and invisible characters go, also at the ends.
                    ("invoice\u{202E}fdp.exe", "invoicefdp.exe"),
                    ("\u{200B}# x\u{2066}y\u{2069}\u{FEFF}", "＃ xy"),
                    ("a\nb\tc\u{2028}d\u{85}e", "a b c d e"),
                    // Only sluice's own last line reads as a footer.
                    (
                        "sluice digest #999 · 99999 alerts",
                        "“sluice digest” #999 · 99999 alerts",
                    ),
                    ("SLUICE  Digest＃1", "“SLUICE  Digest”＃1"),
                    ("slu\u{200B}ice digest #1", "“sluice digest” #1"),
                    ("xsluice digest#1", "x“sluice digest”#1"),
                    ("the sluice digest was late", "the sluice digest was late"),
                ],
            );
        }
        // Emphasis markers cannot hide the footer's words either.
        assert_eq!(
            written("sluice **digest** #1", Kind::Rich),
            "“sluice **digest”** #1"
        );
        assert_eq!(
            written("sluice _digest_ #1", Kind::Plain),
            "“sluice _digest”＿ #1"
        );
    }

    #[test]
    fn rich_text_keeps_web_links_and_emphasis_only() {
        check(
            Kind::Rich,
            &[
                (
                    "**bold** _it_ `code` [runbook](https://wiki/x) [b]( HTTP://y)",
                    "**bold** _it_ `code` [runbook](https://wiki/x) [b]( HTTP://y)",
                ),
                ("[prod] disk at 91%", "[prod] disk at 91%"),
                ("a \\*b\\* c", "a \\*b\\* c"),
                (
                    "[x](<https://a>) [x](javascript:alert(1)) [y](dingtalk://open) [z](/rel)",
                    "[x］(＜https://a>) [x］(javascript:alert(1)) [y］(dingtalk://open) [z］(/rel)",
                ),
                ("![chart](https://t/p.gif)", "[chart](https://t/p.gif)"),
                ("![](https://t/p.gif)", "[image](https://t/p.gif)"),
                ("![x](dingtalk://y)", "[x］(dingtalk://y)"),
                ("wow![a][b]", "wow[a］[b]"),
                ("[a]![b](https://p)", "[a］[b](https://p)"),
                ("!!![b](https://p)", "！！[b](https://p)"),
                ("wow!! ok", "wow!! ok"),
                ("[a]: https://evil", "[a］: https://evil"),
                ("<img src=x>", "＜img src=x>"),
                ("- item", "－ item"),
                ("> q", "＞ q"),
                ("2. step", "2． step"),
                ("ends with \\", "ends with ＼"),
            ],
        );
    }

    #[test]
    fn a_cut_prefix_is_what_the_whole_starts_with() {
        // The renderer cuts what `escape` wrote; stopping early gives the same pieces.
        let s = "sluice digest #1 [x](dingtalk://a) ![](https://p) __x__ <b> @all";
        for kind in [Kind::Plain, Kind::Rich] {
            let whole = written(s, kind);
            for n in 0..whole.chars().count() {
                let mut out = String::new();
                let mut left = n;
                escape(s, kind, &mut |p| {
                    if left == 0 {
                        return false;
                    }
                    left -= 1;
                    out.push_str(p);
                    true
                });
                assert!(whole.starts_with(&out), "{kind:?} {n}: {out:?} / {whole:?}");
            }
        }
    }
}
