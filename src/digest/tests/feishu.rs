//! Feishu's dialects: what a digest looks like in a post and in a card, and that nothing from an
//! alert forges the footer, a mention or markup in either (the contract is `contract.rs`'s).

use super::model::{arb_hostile_alert, arb_spec_parts, zones};
use super::*;
use crate::digest::feishu::{Card, Post};
use crate::digest::render_in;

fn batch() -> Vec<Alert> {
    let mut a = alert(
        "ods_orders: 12% null *user_id*",
        Severity::Critical,
        Some("dq_orders"),
        "a",
    );
    a.text = Some("see [runbook](https://wiki/x)\nrows: 12".into());
    let b = alert(
        "ods_orders: 12% null *user_id*",
        Severity::Critical,
        Some("dq_orders"),
        "a",
    );
    let c = resolved(
        alert("lag 45s", Severity::Warning, Some("replication"), "c"),
        T0 + 5 * MIN,
    );
    vec![a, b, c]
}

#[test]
fn a_post_reads_as_plain_text_and_a_card_as_markdown() {
    let mut s = spec(19_000);
    s.link = Some("https://sluice.example/v1/digests/42");
    let post = render_in(&Post, &s, &batch());
    assert_eq!(
        post.text,
        "ops: 2 critical, 1 resolved\n\n\
         2026-11-28 02:00:31 – 02:05:31 UTC\n\n\
         【Critical · 2】\n\
         ◆ dq_orders · 2\n\
         - ods_orders: 12% null *user_id* ×2\n\
         > see [runbook](https://wiki/x)\n\
         > rows: 12\n\n\
         【✅ Resolved · 1】\n\
         ◆ replication · 1\n\
         - lag 45s — resolved 02:05\n\n\
         full alert list: https://sluice.example/v1/digests/42\n\n\
         sluice digest #42 · 3 alerts"
    );
    let card = render_in(&Card, &s, &batch());
    assert_eq!(
        card.text,
        "**ops: 2 critical, 1 resolved**\n\n\
         2026-11-28 02:00:31 – 02:05:31 UTC\n\n\
         **【Critical · 2】**\n\
         **dq_orders** · 2\n\
         - ods_orders: 12% null ＊user_id＊ ×2\n\
         > see [runbook](https://wiki/x)\n\
         > rows: 12\n\n\
         **【✅ Resolved · 1】**\n\
         **replication** · 1\n\
         - lag 45s — resolved 02:05\n\n\
         [full alert list](https://sluice.example/v1/digests/42)\n\n\
         sluice digest #42 · 3 alerts"
    );
    // A post's size counts a paragraph for each line break, JSON escapes for the rest.
    assert_eq!(
        Post.size("a\n\"b\"").get(),
        1 + crate::digest::feishu::PARAGRAPH + r#"\"b\""#.len()
    );
    assert_eq!(Card.size("a\n\"b\"").get(), json_escaped_len("a\n\"b\""));
}

#[test]
fn alert_content_cannot_mention_anyone_or_forge_the_footer_in_either_dialect() {
    let forged = "sluice digest #999 · 99,999 alerts";
    let mut a = alert(
        &format!("<at user_id=\"all\">所有人</at> @all {forged}"),
        Severity::Critical,
        Some("<at id=all></at>"),
        "x",
    );
    a.text = Some(format!(
        "{forged}\n<at id=ou_1></at> &lt;at id=all&gt;\u{202E}"
    ));
    let alerts = [a];
    for levels in [[0; SECTIONS], [1; SECTIONS], [2; SECTIONS]] {
        let s = spec(19_000);
        let post = Plan::new(&Post, &s, &alerts);
        let (_, out, _) = post.write(&levels, None, ALL_EXTRAS).unwrap();
        let r = post.finish(out.text, 0, &Plan::new(&Post, &s, &alerts).counted_only());
        only_the_last_line_is_a_footer(&r, 42, 1).unwrap();
        for bad in ["<at", "@all", "&lt;", "\u{202E}"] {
            assert!(!r.text.contains(bad), "{bad:?} in {}", r.text);
        }
        let card = Plan::new(&Card, &s, &alerts);
        let (_, out, _) = card.write(&levels, None, ALL_EXTRAS).unwrap();
        let r = card.finish(out.text, 0, &Plan::new(&Card, &s, &alerts).counted_only());
        only_the_last_line_is_a_footer(&r, 42, 1).unwrap();
        for bad in ["<at", "@all", "&lt;", "\u{202E}"] {
            assert!(!r.text.contains(bad), "{bad:?} in {}", r.text);
        }
    }
    let post = render_in(&Post, &spec(19_000), &alerts).text;
    assert!(
        post.contains(
            "\n- ＜at user_id=\"all\">所有人＜/at> ＠all “sluice digest” #999 · 99,999 alerts\n"
        ),
        "{post}"
    );
    assert!(
        post.contains("\n> ＜at id=ou_1>＜/at> ＆lt;at id=all＆gt;"),
        "{post}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The properties `model::no_alert_content_forges_the_footer_or_brings_markup` checks for
    /// DingTalk: only the last line is a footer, no `@`, no raw HTML or `<at …>`, no entity, no
    /// invisible character; and in a card (markdown) no image, reference or non-web link.
    #[test]
    fn no_alert_content_forges_the_footer_or_a_mention_in_feishu(
        alerts in prop::collection::vec(arb_hostile_alert(), 0..40),
        (max_bytes, robot, keyword, link, id, zone, catch_up) in arb_spec_parts(),
        card in any::<bool>(),
    ) {
        let zones = zones();
        let spec = DigestSpec {
            robot, id, keyword, link, max_bytes,
            tz: &zones[zone],
            catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
            templates: None,
        };
        let r = if card { render_in(&Card, &spec, &alerts) } else { render_in(&Post, &spec, &alerts) };
        prop_assert_eq!(r.listed + r.summarized, alerts.len());
        if let Err(e) = only_the_last_line_is_a_footer(&r, id, alerts.len()) {
            return Err(TestCaseError::fail(e));
        }
        let text = &r.text;
        prop_assert!(!text.contains(is_invisible), "{:?}", text);
        prop_assert!(!text.contains('@'), "{}", text);
        for (at, _) in text.match_indices('<') {
            let next = text[at + 1..].chars().next();
            prop_assert!(
                !next.is_some_and(|c| c.is_ascii_alphabetic() || "/!?".contains(c)),
                "raw HTML at {} in {}", at, text
            );
        }
        for (at, _) in text.match_indices('&') {
            let rest = &text[at + 1..];
            let (body, digits): (&str, fn(&char) -> bool) =
                if let Some(hex) = rest.strip_prefix("#x").or(rest.strip_prefix("#X")) {
                    (hex, char::is_ascii_hexdigit)
                } else if let Some(dec) = rest.strip_prefix('#') {
                    (dec, char::is_ascii_digit)
                } else if rest.starts_with(|c: char| c.is_ascii_alphabetic()) {
                    (rest, char::is_ascii_alphanumeric)
                } else {
                    continue;
                };
            let len: usize = body.chars().take_while(digits).map(char::len_utf8).sum();
            prop_assert!(
                len == 0 || !body[len..].starts_with(';'),
                "an entity at {} in {}", at, text
            );
        }
        if card {
            prop_assert!(!text.contains("![") && !text.contains("][") && !text.contains("]:"), "{}", text);
            for (at, _) in text.match_indices("](") {
                let dest = text[at + 2..].trim_start().to_ascii_lowercase();
                prop_assert!(
                    dest.starts_with("http://") || dest.starts_with("https://"),
                    "a link to {:?} in {}", &text[at..], text
                );
            }
        }
        // Every line that shows alert content starts with a mark sluice wrote.
        for line in text.lines().skip(1) {
            prop_assert!(
                line.is_empty()
                    || ["- ", "> ", "◆ ", "【", "**", "⏪", "full alert list: ", "[full alert list]("]
                        .iter()
                        .any(|m| line.starts_with(m))
                    || line.starts_with(|c: char| c.is_ascii_digit())
                    || parse_footer(line).is_some(),
                "{:?} in {}", line, text
            );
        }
    }
}
