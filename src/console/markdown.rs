//! A digest's text as the group saw it, as HTML that is safe to put in a page.
//!
//! Guarantees, whatever the input (tested below, also on arbitrary strings):
//! - raw HTML in the text is shown as text, escaped: no tag of the input reaches the page;
//! - a link keeps its target only for `http:`, `https:` and `dingtalk:` (any case, after any
//!   leading blanks or control characters); any other link is its text alone;
//! - an image is never fetched: it becomes a link to its source (same rule) labelled by its alt
//!   text;
//! - every line break of the text is a line break on the page, as in the chat (DingTalk breaks
//!   lines on every `\n`; CommonMark would join them).
//!
//! Slack's mrkdwn (`*bold*`, `<url|text>`) and the plain-text providers are shown as escaped
//! text with their line breaks: sluice's own digests for them carry no markup worth drawing.

use pulldown_cmark::{CowStr, Event, Options, Parser, Tag, TagEnd, html};

/// `text` (a digest's message for a robot of `provider`) as safe HTML.
pub fn to_html(provider: &str, text: &str) -> String {
    match provider {
        "dingtalk" | "feishu" | "wecom" => markdown(text),
        _ => plain(text),
    }
}

/// The link targets a page may carry.
pub fn allowed_url(url: &str) -> bool {
    let url = url.trim_start_matches(|c: char| c.is_whitespace() || c.is_control());
    let lower = url.get(..11).unwrap_or(url).to_ascii_lowercase();
    ["http://", "https://", "dingtalk://"]
        .iter()
        .any(|scheme| lower.starts_with(scheme))
        && !url.chars().any(|c| c.is_control())
}

fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            out.push_str("<br>\n");
        }
        escape(&mut out, line);
    }
    out
}

fn escape(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

fn markdown(text: &str) -> String {
    let parser = Parser::new_ext(text, Options::ENABLE_STRIKETHROUGH);
    // No tables: DingTalk shows none, and pulldown aligns cells with a style attribute, which
    // the CSP forbids. Links and images are written by hand (rel, the scheme rule); a refused link's text stays.
    let mut open: Vec<bool> = Vec::new();
    let mut in_image: Option<String> = None;
    let mut out = String::with_capacity(text.len() * 2);
    let mut events = Vec::new();
    for event in parser {
        let event = match event {
            Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
            Event::SoftBreak => Event::HardBreak,
            Event::Start(Tag::Link { dest_url, .. }) => {
                let ok = allowed_url(&dest_url);
                open.push(ok);
                if ok {
                    Event::InlineHtml(CowStr::from(anchor(&dest_url)))
                } else {
                    continue;
                }
            }
            Event::End(TagEnd::Link) => {
                if open.pop().unwrap_or(false) {
                    Event::InlineHtml(CowStr::from("</a>"))
                } else {
                    continue;
                }
            }
            Event::Start(Tag::Image { dest_url, .. }) => {
                in_image = Some(dest_url.to_string());
                continue;
            }
            Event::End(TagEnd::Image) => {
                let url = in_image.take().unwrap_or_default();
                if allowed_url(&url) {
                    // The alt text was written as text; close the link around it.
                    events.push(Event::Text(CowStr::from(" ")));
                    Event::InlineHtml(CowStr::from(format!("{}[image]</a>", anchor(&url))))
                } else {
                    continue;
                }
            }
            Event::Start(Tag::HtmlBlock) | Event::End(TagEnd::HtmlBlock) => continue,
            e => e,
        };
        events.push(event);
    }
    html::push_html(&mut out, events.into_iter());
    out
}

fn anchor(url: &str) -> String {
    let mut a = String::from("<a href=\"");
    escape(&mut a, url.trim());
    a.push_str("\" rel=\"noopener noreferrer\" target=\"_blank\">");
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const PROVIDERS: [&str; 6] = ["dingtalk", "feishu", "wecom", "slack", "webhook", "console"];

    /// The four rules every rendering keeps.
    fn assert_safe(html: &str, input: &str) {
        let lower = html.to_ascii_lowercase();
        assert!(!lower.contains("<script"), "{input:?} → {html}");
        assert!(!lower.contains("<img"), "{input:?} → {html}");
        assert!(!lower.contains("<svg"), "{input:?} → {html}");
        // No attribute of our making begins with "on"; the only attributes are href/rel/target
        // on our own <a> (and alignment on tables).
        for (i, _) in lower.match_indices('<') {
            let tag = &lower[i..lower[i..].find('>').map_or(lower.len(), |j| i + j)];
            // Only `name=value` tokens are attributes (`noreferrer"` is part of rel's value).
            for attr in tag.split_whitespace().skip(1).filter(|a| a.contains('=')) {
                let name = attr.split('=').next().unwrap_or("");
                assert!(
                    [
                        "href", "rel", "target", "align", "start", "type", "disabled", "checked",
                        "/"
                    ]
                    .contains(&name)
                        || name.is_empty(),
                    "attribute {name:?} in {tag:?} from {input:?}"
                );
                if name == "href" {
                    let v = attr.trim_start_matches("href=").trim_matches('"');
                    assert!(
                        allowed_url(&v.replace("&amp;", "&")),
                        "href {v:?} from {input:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_digest_renders_as_the_chat_shows_it() {
        let text = "### 3 alerts for ops\n**critical** ods_orders null check\n- row 12 has a null user_id\n- row 13 too\n\n> from job pyodps\nsecond line\n\nsluice digest #7 · 3 alerts";
        let html = to_html("dingtalk", text);
        for want in [
            "<h3>",
            "<strong>critical</strong>",
            "<li>",
            "<blockquote>",
            "<br",
            "sluice digest #7 · 3 alerts",
        ] {
            assert!(html.contains(want), "{want} missing in {html}");
        }
        assert_safe(&html, text);
        let plain = to_html("slack", "*a*\n<b>");
        assert_eq!(plain, "*a*<br>\n&lt;b&gt;");
    }

    #[test]
    fn the_xss_corpus_stays_text() {
        let corpus = [
            "<script>alert(1)</script>",
            "<img src=x onerror=alert(1)>",
            "[x](javascript:alert(1))",
            "[x](\tjavascript:alert(1))",
            "[x](JAVASCRIPT:alert(1))",
            "[x](  javascript:alert(1))",
            "<svg><a><set attributeName=href to=javascript:alert(1)>",
            "[x](data:text/html;base64,PHNjcmlwdD4=)",
            "[x](//evil.example/a)",
            "![p](https://evil.example/p.png)",
            "![p](javascript:alert(1))",
            "<a href=\"javascript:x\">y</a>",
            "[t](https://ok.example \"ti\\\"tle\" onmouseover=alert(1))",
            "a\"><script>alert(1)</script>",
            "<div style=\"background:red\">x</div>",
            "<details open ontoggle=alert(1)>",
        ];
        for p in PROVIDERS {
            for input in corpus {
                let html = to_html(p, input);
                assert_safe(&html, input);
            }
        }
        let html = to_html("dingtalk", "<script>alert(1)</script>");
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
            "{html}"
        );
        let html = to_html(
            "dingtalk",
            "[open](javascript:alert(1)) [ok](https://ok.example/?a=1&b=2)",
        );
        assert!(
            html.contains("open") && !html.contains("javascript"),
            "{html}"
        );
        assert!(
            html.contains("href=\"https://ok.example/?a=1&amp;b=2\" rel=\"noopener noreferrer\""),
            "{html}"
        );
        let html = to_html("dingtalk", "![chart](https://img.example/c.png)");
        assert!(
            html.contains("chart") && html.contains("[image]</a>"),
            "{html}"
        );
    }

    proptest! {
        #[test]
        fn any_text_renders_safely(s in "(\\PC|[<>\"'()\\[\\]!:\\n\\t]|javascript:|<script>|on[a-z]+=){0,40}") {
            for p in PROVIDERS {
                assert_safe(&to_html(p, &s), &s);
            }
        }
    }
}
