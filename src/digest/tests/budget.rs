//! Fitting the budget at its edges, counting what does not fit, and bounded work on a flood.

use super::*;

#[test]
fn footer_counts_alerts_singular_and_plural() {
    assert_eq!(footer(42, 1), "sluice digest #42 · 1 alert");
    assert_eq!(footer(7, 0), "sluice digest #7 · 0 alerts");
    assert_eq!(footer(7, 15), "sluice digest #7 · 15 alerts");
    assert_eq!(footer(7, 1_234_567), "sluice digest #7 · 1,234,567 alerts");
    let r = render(&spec(MIN_BUDGET), &[alert("a", Severity::Info, None, "x")]);
    assert!(
        r.text.ends_with("\n\nsluice digest #42 · 1 alert"),
        "{}",
        r.text
    );
}

#[test]
fn no_alerts_renders_a_digest_of_zero() {
    let r = render(&spec(MIN_BUDGET), &[]);
    assert_eq!(r.title, "ops: 0 alerts");
    assert_eq!(r.text, "### ops: 0 alerts\n\nsluice digest #42 · 0 alerts");
    assert_eq!((r.total, r.listed, r.summarized, r.level), (0, 0, 0, 0));
}

/// Lines of over 700 bytes once escaped (quotes and backslashes cost double).
fn unlistable(severity: Severity, group: &str, fingerprint: String) -> Alert {
    let mut a = alert(&"\"".repeat(300), severity, Some(group), &fingerprint);
    a.text = Some("\\".repeat(300));
    a
}

#[test]
fn overflow_line_names_five_largest_groups_then_the_rest() {
    let sizes = [("g7", 4), ("g2", 300), ("g6", 10), ("g1", 600), ("g4", 100)];
    let sizes = sizes
        .into_iter()
        .chain([("g3", 200), ("g5", 20), ("g8", 4)]);
    let mut alerts = Vec::new();
    for (g, n) in sizes {
        for i in 0..n {
            alerts.push(unlistable(Severity::Warning, g, format!("{g}-{i}")));
        }
    }
    // Room for the section but not for one group line.
    let r = render(&spec(600), &alerts);
    assert_eq!((r.listed, r.summarized, r.level), (0, 1238, 2));
    assert!(size(&r) <= 600);
    let want = "### ops: 1,238 warning\n\n2026-11-28 02:00:31 UTC\n\n\
                #### Warning · 1,238\n\
                - … and 1,238 more: g1 600, g2 300, g3 200, g4 100, g5 20, 3 other groups 18\n\n\
                sluice digest #42 · 1,238 alerts";
    assert_eq!(r.text, want);

    // One group left over is "1 other group".
    alerts.retain(|a| a.group() != Some("g7") && a.group() != Some("g8"));
    let r = render(&spec(600), &alerts);
    assert!(
        r.text.contains(
            "\n- … and 1,230 more: g1 600, g2 300, g3 200, g4 100, g5 20, 1 other group 10\n"
        ),
        "{}",
        r.text
    );
}

#[test]
fn every_budget_is_honoured_exactly_at_the_edge() {
    // Sweeping the budget byte by byte puts every configuration's edge, and every stop point
    // of the overflow listing, on some budget: that is where an off-by-one shows.
    let mut alerts = Vec::new();
    for i in 0..48 {
        let mut a = alert(
            &format!("t\"{i}\" {}", "x".repeat(60 + 13 * (i % 7))),
            Severity::ALL[i % 4],
            Some(&format!("g{}{}", i / 4 % 12, ["", "\\"][i % 2])),
            &format!("{}", i % 20),
        );
        a.text = (i % 3 == 0).then(|| format!("why {i}\nbecause"));
        if i % 5 == 0 {
            a.status = Status::Resolved;
        }
        alerts.push(a);
    }
    // A fully listed configuration has the same text whatever the budget, so its size,
    // measured once, says exactly which budgets it fits: the expected choice is the first
    // configuration of the order within the budget.
    let mut s = spec(usize::MAX);
    s.link = Some("https://sluice.example/r/ops");
    let seq = Plan::new(&DingTalk, &s, &alerts).sequence();
    let sizes: Vec<usize> = seq
        .iter()
        .map(|l| cost(&render_at(&s, &alerts, *l)) + cost(&Plan::new(&DingTalk, &s, &alerts).title))
        .collect();
    // Every byte where overflow listing happens, and around every configuration's edge.
    let mut budgets: Vec<usize> = (MIN_BUDGET..2_600).collect();
    for &size in &sizes {
        budgets.extend(size.saturating_sub(40).max(MIN_BUDGET)..size + 40);
    }
    let mut seen = std::collections::HashSet::new();
    for max_bytes in budgets {
        s.max_bytes = max_bytes;
        let plan = Plan::new(&DingTalk, &s, &alerts);
        let (choice, out, listed) = plan.choose();
        let r = plan.finish(out.text, listed, &choice);
        assert!(size(&r) <= max_bytes, "{} > {max_bytes}", size(&r));
        // The link is reserved for, so it is never what gives way.
        assert!(
            r.text
                .contains("\n[full alert list](https://sluice.example/r/ops)\n")
        );
        let first = seq[..seq.len() - 1]
            .iter()
            .zip(&sizes)
            .find(|(_, size)| **size <= max_bytes);
        // Before the first configuration that fits fully listed, one before it may fit partly
        // listed: it is then chosen.
        let at = |l: &Levels| seq.iter().position(|x| x == l).expect("in the order");
        match first {
            Some((levels, _)) if choice.partial.is_none() => {
                assert_eq!(choice.levels, *levels, "{max_bytes}")
            }
            Some((levels, _)) => assert!(at(&choice.levels) < at(levels), "{max_bytes}"),
            None => assert!(choice.partial.is_some(), "{max_bytes}"),
        }
        // Greedy: the overflow listing stops only where one more group line cannot fit.
        if let Some((_, shown)) = choice.partial {
            assert!(size(&r) + 250 > max_bytes, "{shown} groups in {max_bytes}");
        }
        seen.insert((choice.levels, choice.partial.is_some()));
    }
    // The sweep went through the whole order, fully or partly listed, but for a section at
    // level 2 (one line per group): where that fits, a partial listing of the section at one
    // line per alert, before it, fits too (the floor is left to the tests above).
    let plan = Plan::new(&DingTalk, &s, &alerts);
    for levels in &seq[..seq.len() - 1] {
        if plan.active(levels).is_some_and(|a| levels[a] == 2) {
            continue;
        }
        assert!(
            seen.contains(&(*levels, false)) || seen.contains(&(*levels, true)),
            "{levels:?} never chosen"
        );
    }
    assert!(seen.iter().any(|s| s.1));
}

#[test]
fn counted_only_when_even_the_floor_does_not_fit() {
    let mut alerts = Vec::new();
    for (i, sev) in Severity::ALL.into_iter().enumerate() {
        for j in 0..6 {
            // Six groups with long quoted names make the overflow line too big.
            let g = format!("{j}{}", "\"".repeat(100));
            alerts.push(unlistable(sev, &g, format!("{i}-{j}")));
        }
    }
    let mut s = spec(700);
    s.link = Some("https://sluice.example/r/ops");
    let r = render(&s, &alerts);
    assert!(size(&r) <= 700);
    assert_eq!((r.listed, r.summarized, r.level), (0, 24, 3));
    let want = "### ops: 6 critical, 6 error, 6 warning, 6 info\n\n\
                2026-11-28 02:00:31 UTC\n\n\
                - critical: 6 firing\n- error: 6 firing\n- warning: 6 firing\n- info: 6 firing\n\n\
                [full alert list](https://sluice.example/r/ops)\n\n\
                sluice digest #42 · 24 alerts";
    assert_eq!(r.text, want);
    // With more room the most severe section comes back, with its overflow line.
    let r = render(&spec(MIN_BUDGET), &alerts);
    assert!(
        r.text.contains("\n\n#### Critical · 6\n- … and 6 more: "),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("\n\n#### Counts · 18\n- error: 6 firing\n"),
        "{}",
        r.text
    );
}

#[test]
fn worst_case_title_still_fits_min_budget() {
    // A 64-byte keyword and a robot name that both cost double once escaped, and counts of
    // five digits: the title is as large as it gets, and it appears twice. Group names of
    // quotes leave no room for sections, so this is the last layout before giving up; the
    // link is what gives way, the catch-up line still fits.
    let keyword = "\"".repeat(64);
    let robot = "\\".repeat(100);
    let link = format!("https://sluice.example/{}", "x".repeat(80));
    let mut alerts = Vec::new();
    for sev in Severity::ALL {
        for g in 0..5 {
            // Firing after the resolutions: firing again, so both counts are long.
            let name = format!("{g}{}", "\"".repeat(50));
            let a = alert("x", sev, Some(&name), sev.as_str());
            alerts.extend(std::iter::repeat_n(resolved(a.clone(), T0), 1_000));
            alerts.extend(std::iter::repeat_n(a, 1_000));
        }
    }
    let s = DigestSpec {
        robot: &robot,
        id: u64::MAX,
        keyword: Some(&keyword),
        link: Some(&link),
        max_bytes: MIN_BUDGET,
        tz: &UTC,
        catch_up: Some((T0 - 60 * MIN, T0)),
        templates: None,
    };
    let r = render(&s, &alerts);
    assert!(size(&r) <= MIN_BUDGET, "{}", size(&r));
    assert!(r.title.starts_with(&keyword));
    assert!(
        r.text
            .contains("\n- critical: 5,000 firing, 5,000 resolved\n"),
        "{}",
        r.text
    );
    assert!(!r.text.contains("full alert list"), "{}", r.text);
    assert!(
        r.text
            .contains("\n\n⏪ Catch-up: the robot was unavailable 01:00 – 02:00 UTC")
    );
    assert!(r.text.ends_with(
        "\n- info: 5,000 firing, 5,000 resolved\n\n\
         sluice digest #18446744073709551615 · 40,000 alerts"
    ));
}

#[test]
fn below_min_budget_title_heading_and_footer_stay() {
    let alerts = [alert("a", Severity::Critical, None, "x")];
    let r = render(&spec(10), &alerts);
    assert_eq!(r.text, "### ops: 1 critical\n\nsluice digest #42 · 1 alert");
    assert_eq!((r.listed, r.summarized, r.level), (0, 1, 3));
}

/// A batch of `n` alerts in `groups` groups with `lines` fingerprints each, every severity
/// and status, each with a three-line text: the shapes a flood takes.
fn flood(n: usize, groups: usize, lines: usize) -> Vec<Alert> {
    (0..n)
        .map(|i| {
            let g = format!("group_{}", i % groups);
            let fp = format!("fp{}", (i / groups) % lines);
            let mut a = alert(
                &format!("{g}: check {fp} failed on partition {i}"),
                Severity::ALL[i % 4],
                Some(&g),
                &fp,
            );
            a.text = Some(format!(
                "Check {fp} failed on partition {i}.\nThreshold 1%, measured 12.3%.\nRunbook: dq/{g}"
            ));
            if i % 7 == 3 {
                a.status = Status::Resolved;
            }
            a.received_ms = T0 + i as i64;
            a
        })
        .collect()
}

/// The built-in template as a custom one, on the real rendering path, over the shapes a
/// flood takes and the most hostile content (1-byte titles, 16 KiB texts, which every
/// listed line hands to a filter): it must stay far from the fuel that stops a runaway (a
/// quarter of it: a section listed as far as it fits renders up to `max_bytes / 8` such lines).
#[test]
fn the_builtin_template_never_comes_near_its_fuel() {
    let t = Templates::compile(
        None,
        Some(("body.md.j2", crate::digest::template::BUILTIN_BODY)),
    )
    .expect("compiles");
    let mut peaks = Vec::new();
    // Hostile texts are 16 KiB each, so they stop at 5 000 alerts (80 MB); more would not
    // render more, as at most `max_bytes / 4` entries are ever rendered.
    for (n, hostile_too) in [(10, true), (1_000, true), (5_000, true), (100_000, false)] {
        let mut peak = (0, 0);
        for hostile in [false, true].into_iter().filter(|&h| hostile_too || !h) {
            for (groups, lines) in [(1, n), (n, 1), (100, 10), (10, 100), (1, 1)] {
                let mut alerts = flood(n, groups, lines);
                if hostile {
                    for (i, a) in alerts.iter_mut().enumerate() {
                        a.title = (i % 10).to_string();
                        a.text = Some(format!("x\ny\nz\n{}", "w".repeat(16 * 1024)));
                    }
                }
                crate::digest::template::PEAK_FUEL.with(|p| p.set(0));
                let mut s = spec(19_000);
                s.templates = Some(&t);
                let r = render(&s, &alerts);
                assert_eq!(r.total, n);
                let used = crate::digest::template::PEAK_FUEL.with(|p| p.get());
                if hostile {
                    peak.1 = peak.1.max(used);
                } else {
                    peak.0 = peak.0.max(used);
                }
            }
        }
        peaks.push((n, peak));
    }
    eprintln!(
        "built-in template fuel (ordinary, hostile) by alerts: {peaks:?} of {}",
        crate::digest::template::FUEL
    );
    for (n, (ordinary, hostile)) in peaks {
        assert!(
            ordinary > 0 && (n > 5_000 || hostile > 0),
            "no rendering measured"
        );
        assert!(
            hostile.max(ordinary) * 4 < crate::digest::template::FUEL,
            "{n} alerts took {ordinary} / {hostile} fuel"
        );
    }
}
