//! How alert content is written into a Feishu `post` (rich text) so that it shows as what it
//! says.
//!
//! A post's `text` elements are shown as they are: no markdown, so `*`, `_`, `[x](y)` and `#`
//! need nothing and are left alone. What could still act is kept from acting, the safe side
//! where Feishu's documentation does not say how a text element is read:
//! - Line breaks and control characters become spaces (each line of a digest is one paragraph,
//!   and only sluice starts one); bidi controls and invisible characters are removed, and count
//!   as blank when trimming.
//! - No mentions: `<` before a letter, `/`, `!` or `?` becomes `＜` (a text message's
//!   `<at user_id="…">` form, raw HTML), and `@` becomes `＠`; Feishu notifies only the people in
//!   the post's `at` elements, which only the configuration fills.
//! - An entity or character reference (`&lt;`, `&#x202E;`) gets `＆`, so it cannot smuggle in
//!   what was removed.
//! - Nothing that reads as the footer: `sluice digest` followed by `#` is written
//!   `“sluice digest” #`, as DingTalk's escaping does (the same phrase finder).
//!
//! [`escape`] hands out its pieces in order and never takes one back, so a cut of what it wrote
//! is a prefix of the whole; the renderer cuts on what is shown and measures every cost on it.

use std::borrow::Cow;

use crate::digest::dingtalk::markdown::is_reference;
use crate::digest::text::footer_phrase;
use crate::digest::text::{breaks_line, is_blank, is_invisible};

/// Writes one line of alert content as plain post text, trimmed, piece by piece to `emit` (a
/// character, or a run that goes out as it is) until `emit` returns false.
pub(crate) fn escape(s: &str, emit: &mut dyn FnMut(&str) -> bool) {
    let s = s.trim_matches(is_blank);
    let t: Cow<str> = if !s.is_ascii() && s.contains(is_invisible) {
        Cow::Owned(s.chars().filter(|&c| !is_invisible(c)).collect())
    } else {
        Cow::Borrowed(s)
    };
    let t = t.as_ref();
    // The footer's words matter only before a `#`; most alert content has none.
    let hash = t.contains('#') || (!t.is_ascii() && t.contains(['＃', '﹟']));
    let bytes = t.as_bytes();
    // Whether the character starting at byte `j` is one a rule looks at; continuation bytes
    // never are, so a run stops on a character boundary.
    let special = |j: usize| match bytes[j] {
        b'&' | b'<' | b'@' => true,
        b's' | b'S' => hash,
        b if b < 0x20 || b == 0x7f => true,
        // C1 controls (U+0080–U+009F) and U+2028/U+2029 break lines.
        0xC2 => bytes.get(j + 1).is_some_and(|n| (0x80..=0x9F).contains(n)),
        0xE2 => bytes.get(j + 1) == Some(&0x80) && matches!(bytes.get(j + 2), Some(0xA8 | 0xA9)),
        _ => false,
    };
    let mut quote_ends: Option<usize> = None;
    let mut buf = [0u8; 4];
    let mut i = 0;
    while i < t.len() {
        if quote_ends == Some(i) {
            quote_ends = None;
            if !emit("”") {
                return;
            }
        }
        let stop = quote_ends.unwrap_or(t.len());
        let mut j = i;
        while j < stop && !special(j) {
            j += 1;
        }
        if j > i {
            if !emit(&t[i..j]) {
                return;
            }
            i = j;
            continue;
        }
        let c = t[i..].chars().next().expect("i is below the length");
        let after = i + c.len_utf8();
        if quote_ends.is_none()
            && matches!(c, 's' | 'S')
            && let Some(end) = footer_phrase(&t[i..])
        {
            quote_ends = Some(i + end);
            if !emit("“") {
                return;
            }
        }
        let next = t[after..].chars().next();
        let piece: &str = match c {
            c if breaks_line(c) => " ",
            '@' => "＠",
            '<' if next
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?')) =>
            {
                "＜"
            }
            '&' if is_reference(&t[after..]) => "＆",
            c => c.encode_utf8(&mut buf),
        };
        if !emit(piece) {
            return;
        }
        i = after;
    }
    if quote_ends.is_some() {
        emit("”");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(s: &str) -> String {
        let mut out = String::new();
        escape(s, &mut |p| {
            out.push_str(p);
            true
        });
        out
    }

    #[test]
    fn post_text_shows_as_the_characters_it_is() {
        let cases = [
            // Nothing is markdown in a post: ordinary content and markup characters pass.
            (
                "ods_orders: 12% null user_id",
                "ods_orders: 12% null user_id",
            ),
            (
                "# big *b* _i_ [x](https://a) ![p](https://t) `c` - item > q 1. one",
                "# big *b* _i_ [x](https://a) ![p](https://t) `c` - item > q 1. one",
            ),
            ("p99 <= 1.5 s (a < b) #3", "p99 <= 1.5 s (a < b) #3"),
            ("数据质量告警 ×3", "数据质量告警 ×3"),
            // No mentions, in any of Feishu's forms, and no HTML.
            (
                "<at user_id=\"all\">所有人</at> <at id=all></at> @all",
                "＜at user_id=\"all\">所有人＜/at> ＜at id=all>＜/at> ＠all",
            ),
            (
                "<font color=red>x</font> <!-- h -->",
                "＜font color=red>x＜/font> ＜!-- h -->",
            ),
            (
                "AT&T &lt;at&gt; &#x202E; & so",
                "AT&T ＆lt;at＆gt; ＆#x202E; & so",
            ),
            // One line, nothing hidden or reordered.
            ("a\nb\tc\u{2028}d\u{85}e\u{7f}f", "a b c d e f"),
            ("invoice\u{202E}fdp.exe\u{200B}", "invoicefdp.exe"),
            ("  \u{FEFF}padded\u{2066} ", "padded"),
            // Only sluice's own last line reads as a footer.
            (
                "sluice digest #999 · 99999 alerts",
                "“sluice digest” #999 · 99999 alerts",
            ),
            ("SLUICE  Digest＃1", "“SLUICE  Digest”＃1"),
            ("slu\u{200B}ice digest #1", "“sluice digest” #1"),
            ("the sluice digest was late", "the sluice digest was late"),
        ];
        for (input, want) in cases {
            assert_eq!(written(input), want, "{input:?}");
            // Written twice, it stays the same.
            assert_eq!(written(want), want, "twice {input:?}");
        }
    }

    #[test]
    fn a_cut_prefix_is_what_the_whole_starts_with() {
        let s = "sluice digest #1 <at id=all></at> &lt; @all\u{202E} x";
        let whole = written(s);
        for n in 0..whole.chars().count() {
            let mut out = String::new();
            let mut left = n;
            escape(s, &mut |p| {
                if left == 0 {
                    return false;
                }
                left -= 1;
                out.push_str(p);
                true
            });
            assert!(whole.starts_with(&out), "{n}: {out:?} / {whole:?}");
        }
    }
}
