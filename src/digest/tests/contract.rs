//! The dialect contract: what every [`Dialect`] must guarantee for the plan's accounting and
//! the fit's budget to hold (see [`crate::digest::dialect`]), checked generically. A new
//! platform adds one line to the `proptest!` block below.

use super::model::{SpecParts, arb_alert, arb_hostile_alert, arb_spec_parts, zones};
use super::*;
use crate::digest::dialect::Dialect;
use crate::digest::{feishu, render_in};

/// Checks `d` on two strings, a cut length and a batch rendered with the spec `parts`.
fn keeps_the_contract<D: Dialect>(
    d: &D,
    (a, b, max): (&str, &str, usize),
    alerts: &[Alert],
    parts: SpecParts,
) -> Result<(), TestCaseError> {
    // 1. Sizes are additive, so a block costs the sum of its pieces.
    let ab = format!("{a}{b}");
    prop_assert_eq!(d.size(&ab), d.size(a) + d.size(b));
    prop_assert_eq!(d.size(""), Size::ZERO);

    // 2. A cut is the longest prefix within the size (a `&str`, so on a character boundary).
    let max_size = Size::new(max);
    let cut = d.cut(&ab, max_size);
    prop_assert!(ab.starts_with(cut));
    prop_assert!(d.size(cut) <= max_size);
    if let Some(c) = ab[cut.len()..].chars().next() {
        prop_assert!(d.size(cut) + d.size(c.encode_utf8(&mut [0u8; 4])) > max_size);
    }

    // 3. Alert content cut short is a prefix of the same content written whole, then `…`.
    let mut whole = String::new();
    d.write_plain(&mut whole, &ab, usize::MAX);
    let mut short = String::new();
    d.write_plain(&mut short, &ab, max);
    if short != whole {
        let shown = short
            .strip_suffix(ELLIPSIS)
            .ok_or_else(|| TestCaseError::fail("a cut without …"))?;
        prop_assert!(
            whole.starts_with(shown),
            "{:?} is not a prefix of {:?}",
            shown,
            whole
        );
        prop_assert!(shown.len() <= max);
    }

    // 4. Every block a digest is made of costs what its text costs: the fit measures the text
    //    the dialect wrote, piece by piece, and the sum is the whole digest's size.
    let (max_bytes, robot, keyword, link, id, zone, catch_up) = parts;
    let zones = zones();
    let spec = DigestSpec {
        robot,
        id,
        keyword,
        link,
        max_bytes,
        tz: &zones[zone],
        catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
        templates: None,
    };
    let r = render_in(d, &spec, alerts);
    let budget = d.budget(max_bytes);
    let size = d.message_size(&r.title, &r.text);
    prop_assert!(size <= budget, "{} > {}", size, budget);
    prop_assert_eq!(size, d.title_size(&r.title) + d.size(&r.text));

    // 5. Every alert is accounted for, and the footer is the last line with the true numbers.
    prop_assert_eq!(r.total, alerts.len());
    prop_assert_eq!(r.listed + r.summarized, r.total);
    prop_assert_eq!(parse_footer(&r.text), Some((id, alerts.len() as u64)));
    prop_assert!(r.text.ends_with(&footer(id, alerts.len())));
    Ok(())
}

/// The strings the contract is checked on: hostile text, any text.
fn pieces() -> impl Strategy<Value = (String, String, usize)> {
    (
        prop_oneof![nasty_string(40), any::<String>()],
        prop_oneof![nasty_string(40), any::<String>()],
        0..120usize,
    )
}

/// Batches of every kind: ordinary alerts and hostile ones.
fn batch() -> impl Strategy<Value = Vec<Alert>> {
    prop_oneof![
        prop::collection::vec(arb_alert(), 0..120),
        prop::collection::vec(arb_hostile_alert(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn every_dialect_keeps_the_contract(
        (a, b, max) in pieces(),
        alerts in batch(),
        parts in arb_spec_parts(),
    ) {
        keeps_the_contract(&DingTalk, (&a, &b, max), &alerts, parts)?;
        keeps_the_contract(&crate::digest::Slack, (&a, &b, max), &alerts, parts)?;
        keeps_the_contract(&WeCom::MARKDOWN, (&a, &b, max), &alerts, parts)?;
        keeps_the_contract(&WeCom::MARKDOWN_V2, (&a, &b, max), &alerts, parts)?;
        keeps_the_contract(&feishu::Post, (&a, &b, max), &alerts, parts)?;
        keeps_the_contract(&feishu::Card, (&a, &b, max), &alerts, parts)?;
    }
}
