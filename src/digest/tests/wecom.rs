//! WeCom's dialects through the whole renderer: within 4 096 raw UTF-8 bytes of content,
//! whatever the alerts hold (CJK, 4-byte characters, hostile markup), with the footer last and
//! every alert counted, in `markdown` and `markdown_v2` alike.

use super::model::{arb_alert, arb_hostile_alert, zones};
use super::*;
use crate::digest::render_in;
use crate::digest::wecom::{Flavor, MAX_CONTENT, WeCom};

/// Text of CJK (3 bytes each), 4-byte characters (CJK extension B, emoji) and ASCII: where a
/// byte cap differs most from a character count.
fn wide_string(max: usize) -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        4 => prop::char::range('\u{4e00}', '\u{9fa5}'),
        2 => prop::char::range('\u{20000}', '\u{2a6df}'),
        1 => prop::char::range('\u{1f600}', '\u{1f64f}'),
        2 => prop::char::range('a', 'z'),
        1 => prop::sample::select(vec![' ', '\n', '|', '@', '<', '>', '#', '*', '·', '•']),
    ];
    prop::collection::vec(ch, 0..max).prop_map(|v| v.into_iter().collect())
}

/// Alerts whose titles, texts and group names are wide text, at every severity.
fn arb_wide_alert() -> impl Strategy<Value = Alert> {
    (
        wide_string(120),
        prop::option::of(wide_string(300)),
        prop::option::of(wide_string(30)),
        0..4usize,
        any::<bool>(),
        0..40u8,
    )
        .prop_map(|(title, text, group, sev, resolved, fp)| {
            let mut a = alert(
                &title,
                Severity::ALL[sev],
                group.as_deref(),
                &format!("fp{fp}"),
            );
            a.text = text;
            a.labels.insert("instance".into(), format!("主机-{fp}"));
            if resolved {
                a.status = Status::Resolved;
            }
            a
        })
}

fn batch() -> impl Strategy<Value = Vec<Alert>> {
    prop_oneof![
        prop::collection::vec(arb_wide_alert(), 0..150),
        prop::collection::vec(arb_alert(), 0..200),
        prop::collection::vec(arb_hostile_alert(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The WeCom fitter: content within its budget in raw bytes (at most 4 096), the footer
    /// present and last with the true numbers, every alert accounted for, in both flavours;
    /// nothing from an alert mentions anyone, colours text or draws a table.
    #[test]
    fn wecom_digests_fit_their_raw_byte_cap_and_count_every_alert(
        alerts in batch(),
        max_bytes in prop_oneof![MIN_BUDGET..=MAX_CONTENT, Just(MAX_CONTENT)],
        id in any::<u64>(),
        zone in 0..3usize,
        link in prop::sample::select(vec![None, Some("https://sluice.example/v1/digests/7")]),
    ) {
        let zones = zones();
        let spec = DigestSpec {
            robot: "数据质量",
            id,
            keyword: None,
            link,
            max_bytes,
            tz: &zones[zone],
            catch_up: None,
            templates: None,
        };
        for d in [WeCom::MARKDOWN, WeCom::MARKDOWN_V2] {
            let r = render_in(&d, &spec, &alerts);
            let n = alerts.len();
            prop_assert!(r.text.len() <= max_bytes, "{:?}: {} > {}", d.flavor, r.text.len(), max_bytes);
            prop_assert!(std::str::from_utf8(r.text.as_bytes()).is_ok());
            prop_assert!(r.text.starts_with("### 数据质量: "), "{}", r.text);
            let foot = footer(id, n);
            prop_assert!(r.text.ends_with(&format!("\n\n{foot}")), "{}", r.text);
            if let Err(e) = only_the_last_line_is_a_footer(&r, id, n) {
                return Err(TestCaseError::fail(e));
            }
            prop_assert_eq!(r.total, n);
            prop_assert_eq!(r.listed + r.summarized, n);
            prop_assert_eq!(r.counts.total() as usize, n);
            let text = &r.text;
            prop_assert!(!text.contains('@'), "{}", text);
            prop_assert!(!text.contains(is_invisible), "{:?}", text);
            prop_assert!(!text.contains("!["), "{}", text);
            for (at, _) in text.match_indices('<') {
                let tag = &text[at..];
                let next = tag[1..].chars().next();
                // Only sluice's own colour tags, around a section heading.
                let own = d.flavor == Flavor::Markdown
                    && (tag.starts_with("<font color=\"") || tag.starts_with("</font>"));
                prop_assert!(
                    own || !next.is_some_and(|c| c.is_ascii_alphabetic() || "/!?@".contains(c)),
                    "markup at {} in {}", at, text
                );
            }
            for line in text.lines().filter(|l| l.contains("<font")) {
                prop_assert!(line.starts_with("#### <font color=\"") && line.ends_with("</font>"), "{}", line);
            }
            if d.flavor == Flavor::MarkdownV2 {
                prop_assert!(!text.contains('|') && !text.contains("<font"), "{}", text);
            }
        }
    }
}

#[test]
fn a_full_wecom_digest_uses_its_budget_in_raw_bytes() {
    // 3 000 CJK alerts: the JSON-escaped measure and the raw one agree on CJK, so what tells
    // them apart is that the title is not counted twice; the digest comes within a line of
    // its budget.
    let alerts: Vec<Alert> = (0..3_000)
        .map(|i| {
            let mut a = alert(
                &format!("订单表第{i}分区空值率过高"),
                Severity::ALL[i % 4],
                Some(&format!("数据质量检查{}", i % 5)),
                &format!("{i}"),
            );
            a.text = Some("用户编号为空的行占百分之十二".into());
            a
        })
        .collect();
    for d in [WeCom::MARKDOWN, WeCom::MARKDOWN_V2] {
        let r = render_in(&d, &spec(MAX_CONTENT), &alerts);
        assert!(r.text.len() <= MAX_CONTENT, "{}", r.text.len());
        assert!(
            r.text.len() > MAX_CONTENT - 300,
            "{:?}: {}",
            d.flavor,
            r.text.len()
        );
        assert_eq!(parse_footer(&r.text), Some((42, 3_000)));
    }
}
