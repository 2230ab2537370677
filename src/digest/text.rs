//! Text helpers every dialect shares: the characters that do not show or that break a line,
//! cuts on character boundaries, thousands separators, and text sluice writes itself; and, for
//! alert content, the cut and the quote every dialect writes around its own escaping.

use super::plan::{QUOTE_BYTES, QUOTE_LINES};

/// Appended where a text is cut.
pub(crate) const ELLIPSIS: &str = "…";

/// Characters removed from alert content: they are invisible, and bidi controls reorder what
/// follows (`evil\u{202E}txt.exe`); between the letters of `sluice digest` they would hide it.
pub(crate) fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'
            | '\u{200E}'
            | '\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// Whitespace, control and invisible characters: trimmed from the ends of alert content.
pub(crate) fn is_blank(c: char) -> bool {
    c.is_whitespace() || c.is_control() || is_invisible(c)
}

/// Characters that could end a markdown line (or render as one); they become spaces.
pub(crate) fn breaks_line(c: char) -> bool {
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

/// Appends text that sluice or the configuration wrote (the robot name, a custom title): trimmed,
/// with line-breaking characters made spaces, cut to `max` bytes with `…`. Alert content goes
/// through the dialect's escaping instead.
pub(crate) fn push_clean(out: &mut String, s: &str, max: usize) {
    let (part, was_cut) = clean_part(s, max);
    out.extend(part.chars().map(|c| if breaks_line(c) { ' ' } else { c }));
    if was_cut {
        out.push_str(ELLIPSIS);
    }
}

/// A dialect's escaping of one line of alert content: writes it piece by piece to `emit` until
/// `emit` returns false, never taking a piece back.
pub(crate) type Escape<'a> = &'a dyn Fn(&str, &mut dyn FnMut(&str) -> bool);

/// Appends one line of alert content as `escape` writes it, cut to at most `max` bytes of what it
/// shows (trailing blanks dropped at a cut); true if cut. The cut is on what was written, so the
/// cost measured on it is what the platform receives.
pub(crate) fn push_cut(out: &mut String, s: &str, max: usize, escape: Escape) -> bool {
    let start = out.len();
    let mut cut = false;
    escape(s, &mut |piece| {
        let room = max - (out.len() - start);
        if piece.len() > room {
            out.push_str(cut_utf8(piece, room));
            cut = true;
            return false;
        }
        out.push_str(piece);
        true
    });
    if cut {
        let kept = out[start..].trim_end_matches(is_blank).len();
        out.truncate(start + kept);
    }
    cut
}

/// Appends the text's first non-blank lines as a quote (`> …` lines joined by `\n`), each as
/// `escape` writes it: at most [`QUOTE_LINES`] lines and [`QUOTE_BYTES`] bytes of what they show,
/// cut on a character boundary, `…` when there is more.
pub(crate) fn push_quote_with(out: &mut String, text: &str, escape: Escape) {
    let mut room = QUOTE_BYTES;
    let mut lines = text
        .lines()
        .map(|l| l.trim_matches(is_blank))
        .filter(|l| !l.is_empty())
        .peekable();
    let mut shown = 0;
    while let Some(l) = lines.next() {
        let line_start = out.len();
        if shown > 0 {
            out.push('\n');
        }
        out.push_str("> ");
        let body = out.len();
        let cut = push_cut(out, l, room, escape);
        let written = out.len() - body;
        if written == 0 {
            // No room left for even one character: mark the cut on the line before.
            out.truncate(line_start);
            if shown > 0 {
                out.push_str(" …");
            }
            return;
        }
        shown += 1;
        room -= written;
        if cut {
            out.push_str(ELLIPSIS);
            return;
        }
        if shown == QUOTE_LINES {
            if lines.peek().is_some() {
                out.push_str(" …");
            }
            return;
        }
    }
}

/// The first non-blank line of a text, trimmed.
pub(crate) fn excerpt(text: &str) -> Option<&str> {
    text.lines()
        .map(|l| l.trim_matches(is_blank))
        .find(|l| !l.is_empty())
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

pub(crate) fn push_thousands(out: &mut String, n: u64) {
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

#[cfg(test)]
pub(crate) fn thousands_len(n: u64) -> usize {
    let digits = n.checked_ilog10().unwrap_or(0) as usize + 1;
    digits + (digits - 1) / 3
}

/// If `s` starts with the footer's words followed by `#` (`sluice digest #`), where they end.
/// Case, spaces and emphasis markers between them do not hide them. Every dialect's escaping
/// quotes the words it finds (`“sluice digest” #`), so only sluice's own last line is a footer.
pub(crate) fn footer_phrase(s: &str) -> Option<usize> {
    let mut it = s.char_indices().peekable();
    let skip = |it: &mut std::iter::Peekable<std::str::CharIndices>, spaces: bool| {
        let mut seen = false;
        while let Some(&(_, c)) = it.peek() {
            if matches!(c, '*' | '_' | '~' | '`') {
                it.next();
            } else if spaces && c.is_whitespace() {
                seen = true;
                it.next();
            } else {
                break;
            }
        }
        seen
    };
    let word = |it: &mut std::iter::Peekable<std::str::CharIndices>, w: &str| {
        let mut end = 0;
        for want in w.chars() {
            skip(it, false);
            match it.next() {
                Some((at, c)) if c.eq_ignore_ascii_case(&want) => end = at + c.len_utf8(),
                _ => return None,
            }
        }
        Some(end)
    };
    word(&mut it, "sluice")?;
    if !skip(&mut it, true) {
        return None;
    }
    let end = word(&mut it, "digest")?;
    skip(&mut it, true);
    matches!(it.next(), Some((_, '#' | '＃' | '﹟'))).then_some(end)
}
