//! Filling the budget (issue 12): a section lists its entries as long as they fit, then says
//! what tells the rest apart; the property of the fitter, and the label rule.

use super::model::{arb_alert, arb_spec_parts, zones};
use super::*;

/// Alerts of what `choice` lists on alert lines, by section.
fn listed_by_section(plan: &Plan<DingTalk>, choice: &Choice) -> [u64; SECTIONS] {
    let mut out = [0; SECTIONS];
    for (s, n) in out.iter_mut().enumerate() {
        if choice.bare || !plan.nonempty(s) || choice.levels[s] >= 2 {
            continue;
        }
        *n = match choice.partial {
            Some((p, k)) if p == s => plan.cut(s, choice.levels[s], k).listed,
            _ => plan.index.section_total[s],
        };
    }
    out
}

/// Many short alerts in few groups, so that sections overflow at one line per alert.
fn arb_batch() -> impl Strategy<Value = Vec<Alert>> {
    prop_oneof![
        prop::collection::vec(arb_alert(), 0..200),
        (1..600usize, 1..6usize, any::<u64>()).prop_map(|(n, groups, seed)| {
            (0..n)
                .map(|i| {
                    let r = seed.wrapping_mul(i as u64 + 1).rotate_left(17);
                    let mut a = alert(
                        &format!("host-{i} is down"),
                        Severity::ALL[(r % 4) as usize],
                        Some(&format!("g{}", r % groups as u64)),
                        &format!("{}", i % 97),
                    );
                    a.labels.insert("rack".into(), format!("r{}", r % 3));
                    a.labels.insert("instance".into(), format!("h{i}"));
                    if r % 5 == 0 {
                        a.status = Status::Resolved;
                    }
                    a
                })
                .collect()
        }),
        // Long titles and texts across many groups: sections that fall to one line per group,
        // whose lines then name what room is left.
        (1..400usize, 2..60usize, 150..300usize, any::<u64>()).prop_map(
            |(n, groups, width, seed)| {
                (0..n)
                    .map(|i| {
                        let r = seed.wrapping_mul(i as u64 + 1).rotate_left(23);
                        let mut a = alert(
                            &format!("{} {i}", "w".repeat(width + (r % 40) as usize)),
                            Severity::ALL[(r % 3) as usize],
                            Some(&format!("group-{}", r % groups as u64)),
                            &format!("{}", i % 53),
                        );
                        a.text = Some("x ".repeat(40 + (r % 100) as usize));
                        a
                    })
                    .collect()
            }
        ),
        // A few critical alerts with long texts, then warnings in a few large groups whose
        // alert lines are long: room for group lines but not for an alert line.
        (0..4usize, 4..120usize, 1..4usize, any::<u64>()).prop_map(|(crit, n, groups, seed)| {
            (0..crit + n)
                .map(|i| {
                    let r = seed.wrapping_mul(i as u64 + 1).rotate_left(29);
                    let sev = if i < crit {
                        Severity::Critical
                    } else {
                        Severity::Warning
                    };
                    let title = format!("{} {i}", "t".repeat(10 + (r % 240) as usize));
                    let group = format!("g{}", r % groups as u64);
                    let mut a = alert(&title, sev, Some(&group), &format!("{i}"));
                    a.text = Some(format!("{}\nmore", "y".repeat(100 + (r % 200) as usize)));
                    a
                })
                .collect()
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever the alerts: the digest fits, counts add up, a partly listed section stops only
    /// where its next entry (with the rest line of what would then remain) does not fit, and
    /// no alert of a more severe section is summarized while one of a less severe section (or
    /// a resolved one) is listed.
    #[test]
    fn the_fitter_lists_until_the_next_entry_would_not_fit(
        alerts in arb_batch(),
        (max_bytes, robot, keyword, link, id, zone, catch_up) in arb_spec_parts(),
    ) {
        let zones = zones();
        let spec = DigestSpec {
            robot, id, keyword, link, max_bytes,
            tz: &zones[zone],
            catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
            templates: None,
        };
        let r = render(&spec, &alerts);
        prop_assert!(size(&r) <= max_bytes, "{} > {}", size(&r), max_bytes);
        prop_assert_eq!(r.listed + r.summarized, alerts.len());
        prop_assert_eq!(parse_footer(&r.text), Some((id, alerts.len() as u64)));

        let plan = Plan::new(&DingTalk, &spec, &alerts);
        let (choice, _, listed) = plan.choose();
        prop_assert_eq!(listed as usize, r.listed);
        let by_section = listed_by_section(&plan, &choice);
        prop_assert_eq!(by_section.iter().sum::<u64>() as usize, r.listed);
        for s in 0..SECTIONS {
            if by_section[s] < plan.index.section_total[s] {
                for (t, &n) in by_section.iter().enumerate().skip(s + 1) {
                    prop_assert_eq!(
                        n, 0,
                        "section {} summarized while section {} is listed: {:?}", s, t, choice
                    );
                }
            }
        }
        if let Some((s, n)) = choice.partial {
            prop_assert!(r.summarized > 0);
            let next = render_partly(&spec, &alerts, choice.levels, s, n + 1);
            prop_assert!(
                cost(&r.title) + cost(&next) > max_bytes,
                "the next entry fits too:\n{}", next
            );
            if choice.titles == 0 {
                prop_assert_eq!(
                    render_partly(&spec, &alerts, choice.levels, s, n),
                    r.text.clone()
                );
            }
        }
        if let Err(e) = check_titles(&spec, &alerts, &plan, &choice, &r.text) {
            return Err(TestCaseError::fail(e));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(100))]

    /// Group lines (here every section at one line per group, fully or partly listed) name
    /// more titles while they fit: the text fits, naming one more title would not, and the
    /// built-in template names the same ones.
    #[test]
    fn group_lines_name_titles_until_the_next_would_not_fit(
        alerts in arb_batch(),
        (max_bytes, robot, keyword, link, id, zone, catch_up) in arb_spec_parts(),
        partly in any::<bool>(),
    ) {
        let zones = zones();
        let spec = DigestSpec {
            robot, id, keyword, link, max_bytes,
            tz: &zones[zone],
            catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
            templates: None,
        };
        let plan = Plan::new(&DingTalk, &spec, &alerts);
        let levels = [2; SECTIONS];
        let partial = plan
            .active(&levels)
            .filter(|_| partly)
            .map(|s| (s, None));
        let Some(first) = plan.write(&levels, partial, ALL_EXTRAS) else {
            return Ok(());
        };
        let (choice, out, _) = plan.name_more_titles(first);
        prop_assert!(choice.titles <= plan.unnamed_titles(&choice));
        prop_assert!(cost(&plan.title) + cost(&out.text) <= max_bytes);
        if let Err(e) = check_titles(&spec, &alerts, &plan, &choice, &out.text) {
            return Err(TestCaseError::fail(e));
        }
        // The template context hands out the same titles.
        let builtin = Templates::compile(None, Some(("body.md.j2", super::super::template::BUILTIN_BODY)))
            .expect("the built-in template compiles");
        let body = builtin.render_body(&plan.context(&choice)).expect("renders");
        prop_assert_eq!(plan.with_footer(&body), out.text);
    }
}

fn labelled(i: usize, labels: &[(&str, String)]) -> Alert {
    let mut a = alert(
        &format!("t{i}"),
        Severity::Warning,
        Some("g"),
        &format!("{i}"),
    );
    for (k, v) in labels {
        a.labels.insert(k.to_string(), v.clone());
    }
    a
}

/// The rest line of `alerts` when only the first alert line fits.
fn rest_of(alerts: &[Alert]) -> String {
    let spec = spec(19_000);
    let plan = Plan::new(&DingTalk, &spec, alerts);
    let s = plan.first_section().expect("alerts");
    let cut = plan.cut(s, 1, 1);
    let mut out = String::new();
    plan.push_rest(&mut out, &plan.rest_of(s, &plan.rest_stats(s, 1, &cut)));
    out
}

#[test]
fn the_rest_is_split_by_the_label_with_fewest_values() {
    // `rack` has 3 values, `zone` 2, `instance` one per alert: `zone` splits them.
    let alerts: Vec<Alert> = (0..13)
        .map(|i| {
            labelled(
                i,
                &[
                    ("rack", format!("r{}", i % 3)),
                    ("zone", ["b", "a"][i % 2].to_string()),
                    ("instance", format!("h{i}")),
                ],
            )
        })
        .collect();
    assert_eq!(rest_of(&alerts), "- … and 12 more: zone a 6, zone b 6");
    // A label some of the rest lack does not split them: then `rack`, ties by value.
    let mut alerts = alerts;
    alerts[5].labels.remove("zone");
    assert_eq!(
        rest_of(&alerts),
        "- … and 12 more: rack r0 4, rack r1 4, rack r2 4"
    );
    // Equal numbers of values: the label first by name.
    for (i, a) in alerts.iter_mut().enumerate() {
        a.labels.insert("dc".into(), format!("d{}", i % 3));
    }
    assert_eq!(
        rest_of(&alerts),
        "- … and 12 more: dc d0 4, dc d1 4, dc d2 4"
    );
}

#[test]
fn without_a_label_that_splits_the_rest_the_groups_do() {
    // One value per alert, one value for all, and the grouping labels: no split by label.
    let alerts: Vec<Alert> = (0..9)
        .map(|i| {
            let mut a = labelled(
                i,
                &[("instance", format!("h{i}")), ("env", "prod".to_string())],
            );
            a.labels.insert("alertname".into(), format!("g{}", i % 2));
            a.labels.insert("job".into(), format!("j{}", i % 3));
            a
        })
        .collect();
    assert_eq!(rest_of(&alerts), "- … and 8 more: g0 4, g1 4");
    // More than five values: the others are folded.
    let alerts: Vec<Alert> = (0..30)
        .map(|i| labelled(i, &[("rack", format!("r{}", i % 7))]))
        .collect();
    assert_eq!(
        rest_of(&alerts),
        "- … and 29 more: rack r1 5, rack r0 4, rack r2 4, rack r3 4, rack r4 4, \
         2 other values 8"
    );
}

#[test]
fn a_section_that_does_not_fit_lists_what_fits_then_the_rest() {
    // 40 critical lines, 300 warning lines: warnings are listed as far as they fit, not as one
    // group line.
    let mut alerts = Vec::new();
    for i in 0..340usize {
        let sev = if i < 40 {
            Severity::Critical
        } else {
            Severity::Warning
        };
        let mut a = alert(
            &format!("host-{i} is down"),
            sev,
            Some("down"),
            &format!("{i}"),
        );
        a.labels.insert("rack".into(), format!("r{}", i % 2));
        alerts.push(a);
    }
    let s = spec(6_000);
    let r = render(&s, &alerts);
    let c = chosen(&s, &alerts);
    assert_eq!(c.levels[0], 0);
    assert_eq!(c.levels[2], 1);
    let (p, n) = c.partial.expect("warnings partly listed");
    assert_eq!(p, 2);
    assert!(n > 100, "{n} warning lines");
    assert_eq!(r.listed, 40 + n);
    assert!(size(&r) > 5_900 && size(&r) <= 6_000, "{}", size(&r));
    assert!(
        r.text
            .contains("\n- host-39 is down\n\n#### Warning · 300\n**down** · 300\n")
    );
    let rest = r.text.lines().find(|l| l.starts_with("- … and ")).unwrap();
    let more = 300 - n as u64;
    let r0 = (40 + n..340).filter(|i| i % 2 == 0).count();
    let r1 = more as usize - r0;
    let (big, small) = if r0 >= r1 {
        (("r0", r0), ("r1", r1))
    } else {
        (("r1", r1), ("r0", r0))
    };
    assert_eq!(
        rest,
        format!(
            "- … and {more} more: rack {} {}, rack {} {}",
            big.0, big.1, small.0, small.1
        )
    );
}

#[test]
fn a_group_line_names_as_many_titles_as_fit_then_the_count_of_the_others() {
    let alerts: Vec<Alert> = (0..300usize)
        .map(|i| {
            alert(
                &format!("host-{i} is down"),
                Severity::Error,
                Some("down"),
                &format!("{i}"),
            )
        })
        .collect();
    let s = spec(2_000);
    let plan = Plan::new(&DingTalk, &s, &alerts);
    let first = plan
        .write(&[2; SECTIONS], None, ALL_EXTRAS)
        .expect("one group line fits");
    assert!(first.1.text.contains(
        "\n- **down** ×300: host-0 is down; host-1 is down; host-2 is down … and 297 more\n"
    ));
    let (choice, out, _) = plan.name_more_titles(first);
    let named = 3 + choice.titles;
    assert!(named > 60, "{named} titles named");
    let line = out
        .text
        .lines()
        .find(|l| l.starts_with("- **down**"))
        .unwrap();
    let want_end = format!("host-{} is down … and {} more", named - 1, 300 - named);
    assert!(line.ends_with(&want_end), "{line}");
    assert!(cost(&plan.title) + cost(&out.text) <= 2_000);
    let more = Choice {
        titles: choice.titles + 1,
        ..choice
    };
    let next = render_choice(&s, &alerts, &more);
    assert!(
        cost(&plan.title) + cost(&next) > 2_000,
        "one more title fits"
    );
}
