//! Text helpers: cuts, thousands separators, counts, the JSON-escaped measure.

use super::*;

#[test]
fn cut_utf8_never_splits_a_char() {
    let s = "a数é😀b";
    let want = [
        "", "a", "a", "a", "a数", "a数", "a数é", "a数é", "a数é", "a数é",
    ];
    for (max, w) in want.iter().enumerate() {
        assert_eq!(cut_utf8(s, max), *w, "max {max}");
    }
    assert_eq!(cut_utf8(s, 10), "a数é😀");
    assert_eq!(cut_utf8(s, 11), s);
    assert_eq!(cut_utf8(s, 100), s);
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1_000), "1,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    for n in [0, 9, 10, 999, 1_000, 123_456, 1_000_000, u64::MAX] {
        assert_eq!(thousands_len(n), thousands(n).len(), "{n}");
    }
}

#[test]
fn counts_by_severity_and_status() {
    let mut r = alert("x", Severity::Error, None, "x");
    r.status = Status::Resolved;
    let alerts = [alert("x", Severity::Critical, None, "x"), r.clone(), r];
    let c = Counts::of(&alerts);
    assert_eq!(
        c,
        Counts {
            critical: 1,
            error: 2,
            warning: 0,
            info: 0,
            firing: 1,
            resolved: 2
        }
    );
    assert_eq!(
        (c.total(), c.get(Severity::Error), c.get(Severity::Info)),
        (3, 2, 0)
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn json_escaped_len_matches_serde_json(s in prop_oneof![any::<String>(), nasty_string(200)]) {
        let serialized = serde_json::to_string(&s).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(json_escaped_len(&s), serialized.len() - 2);
    }

    #[test]
    fn cut_utf8_is_the_longest_boundary_prefix(s in nasty_string(60), max in 0..200usize) {
        let cut = cut_utf8(&s, max);
        prop_assert!(s.starts_with(cut));
        prop_assert!(cut.len() <= max);
        if cut.len() < s.len() {
            let next = s[cut.len()..].chars().next().map_or(0, char::len_utf8);
            prop_assert!(cut.len() + next > max);
        }
    }

    #[test]
    fn cut_cost_is_the_longest_prefix_within_the_cost(s in nasty_string(60), max in 0..200usize) {
        let cut = cut_cost(&s, max);
        prop_assert!(s.starts_with(cut));
        prop_assert!(cost(cut) <= max);
        if cut.len() < s.len() {
            let next = s[cut.len()..].chars().next().map(|c| cost(&c.to_string())).unwrap_or(0);
            prop_assert!(cost(cut) + next > max);
        }
    }
}
