//! What a digest shows: sections, groups, merged lines, times, the title, the footer.

use super::*;

#[test]
fn a_footer_reads_back() {
    for (id, n) in [(1, 0), (42, 1), (7, 1_238), (u64::MAX, 40_000)] {
        let text = format!("### t\n\n- x\n\n{}\n", footer(id, n as usize));
        assert_eq!(parse_footer(&text), Some((id, n)));
    }
    assert_eq!(parse_footer("### t\n\nno footer"), None);
    assert_eq!(parse_footer("sluice digest #x · 3 alerts"), None);
}

#[test]
fn small_batch_lists_every_title_and_the_footer() {
    let alerts = vec![
        alert(
            "ods_orders: 12% null user_id",
            Severity::Critical,
            Some("dq_orders"),
            "a",
        ),
        alert("disk 91% on db-3", Severity::Warning, Some("node"), "b"),
        alert("backup late", Severity::Info, None, "c"),
        alert("api 5xx at 3%", Severity::Error, Some("api"), "d"),
    ];
    let r = render(&spec(19_000), &alerts);
    assert_eq!(r.title, "ops: 1 critical, 1 error, 1 warning, 1 info");
    assert_eq!((r.total, r.listed, r.summarized, r.level), (4, 4, 0, 0));
    assert_eq!(r.counts.total(), 4);
    let want = "### ops: 1 critical, 1 error, 1 warning, 1 info\n\n\
                2026-11-28 02:00:31 UTC\n\n\
                #### Critical · 1\n**dq_orders** · 1\n- ods_orders: 12% null user_id\n\n\
                #### Error · 1\n**api** · 1\n- api 5xx at 3%\n\n\
                #### Warning · 1\n**node** · 1\n- disk 91% on db-3\n\n\
                #### Info · 1\n**other** · 1\n- backup late\n\n\
                sluice digest #42 · 4 alerts";
    assert_eq!(r.text, want);
}

#[test]
fn sections_by_severity_groups_by_first_appearance_other_last() {
    let alerts = vec![
        alert("w1", Severity::Warning, None, "1"),
        alert("w2", Severity::Warning, Some("zeta"), "2"),
        alert("c1", Severity::Critical, Some("beta"), "3"),
        alert("w3", Severity::Warning, Some("alpha"), "4"),
        alert("w4", Severity::Warning, Some("zeta"), "5"),
    ];
    let r = render(&spec(19_000), &alerts);
    let order: Vec<&str> = r
        .text
        .lines()
        .filter(|l| l.starts_with("**") || l.starts_with("#### "))
        .collect();
    assert_eq!(
        order,
        [
            "#### Critical · 1",
            "**beta** · 1",
            "#### Warning · 4",
            "**zeta** · 2",
            "**alpha** · 1",
            "**other** · 1"
        ]
    );
    assert_eq!(
        alert_lines(&r.text),
        ["- c1", "- w2", "- w4", "- w3", "- w1"]
    );
}

#[test]
fn equal_fingerprints_merge_and_a_resolution_takes_its_firing_alerts() {
    let mut alerts = vec![alert("null rate", Severity::Critical, Some("dq"), "fp"); 12];
    alerts.push(alert("other fp", Severity::Critical, Some("dq"), "fp2"));
    let done = resolved(
        alert("null rate", Severity::Critical, Some("dq"), "fp"),
        T0 + 5 * MIN,
    );
    alerts.push(done.clone());
    alerts.push(done);
    // The same fingerprint in another group is another problem: it stays firing.
    alerts.push(alert("null rate", Severity::Critical, Some("dq2"), "fp"));
    let r = render(&spec(19_000), &alerts);
    let want = "### ops: 2 critical, 14 resolved\n\n\
                2026-11-28 02:00:31 – 02:05:31 UTC\n\n\
                #### Critical · 2\n**dq** · 1\n- other fp\n**dq2** · 1\n- null rate\n\n\
                #### ✅ Resolved · 14\n**dq** · 14\n\
                - null rate ×12 — fired 02:00, resolved 02:05\n\n\
                sluice digest #42 · 16 alerts";
    assert_eq!(r.text, want);
    assert_eq!((r.listed, r.summarized), (16, 0));
    assert_eq!((r.counts.firing, r.counts.resolved), (14, 2));
}

#[test]
fn an_alert_firing_again_after_its_resolution_stays_firing() {
    let a = alert("lag", Severity::Warning, Some("db"), "fp");
    let alerts = [
        a.clone(),
        resolved(a.clone(), T0 + MIN),
        Alert {
            received_ms: T0 + 2 * MIN,
            ..a
        },
    ];
    let r = render(&spec(19_000), &alerts);
    let want = "### ops: 1 warning, 2 resolved\n\n\
                2026-11-28 02:00:31 – 02:02:31 UTC\n\n\
                #### Warning · 1\n**db** · 1\n- lag\n\n\
                #### ✅ Resolved · 2\n**db** · 2\n- lag — fired 02:00, resolved 02:01\n\n\
                sluice digest #42 · 3 alerts";
    assert_eq!(r.text, want);
}

#[test]
fn title_counts_a_resolved_alert_once_not_under_its_severity_too() {
    // Warnings firing and resolved: one fires and resolves later in the digest, one is a
    // resolution on its own, two are still firing.
    let lag = alert("replication lag", Severity::Warning, Some("db"), "lag");
    let alerts = [
        alert("ods_orders null", Severity::Critical, Some("dq"), "c"),
        lag.clone(),
        alert("disk 91%", Severity::Warning, Some("node"), "w1"),
        resolved(
            alert("cpu high", Severity::Warning, Some("node"), "cpu"),
            T0 + MIN,
        ),
        alert("disk 93%", Severity::Warning, Some("node"), "w2"),
        resolved(lag, T0 + 2 * MIN),
    ];
    let r = render(&spec(19_000), &alerts);
    // Not "1 critical, 5 warning, 3 resolved": 9 for a digest of 6 alerts.
    assert_eq!(r.title, "ops: 1 critical, 2 warning, 3 resolved");
    // The title's numbers are the section headings' and add up to the footer's.
    let number = |n: &str| n.parse::<u64>().expect("a number");
    let title: Vec<(String, u64)> = r.title["ops: ".len()..]
        .split(", ")
        .map(|p| {
            let (n, what) = p.split_once(' ').expect("<n> <what>");
            (what.to_string(), number(n))
        })
        .collect();
    let headings: Vec<(String, u64)> = r
        .text
        .lines()
        .filter_map(|l| l.strip_prefix("#### "))
        .map(|h| {
            let (name, n) = h.split_once(" · ").expect("<name> · <n>");
            (name.trim_start_matches("✅ ").to_lowercase(), number(n))
        })
        .collect();
    assert_eq!(title, headings);
    assert_eq!(title.iter().map(|t| t.1).sum::<u64>(), 6);
    assert!(
        r.text.ends_with("\n\nsluice digest #42 · 6 alerts"),
        "{}",
        r.text
    );
    // The records' own split is another matter: five warnings, two resolutions.
    assert_eq!((r.counts.warning, r.counts.resolved), (5, 2));
}

#[test]
fn fired_and_resolved_times_read_in_the_robot_zone() {
    let mut fired = alert("replication lag", Severity::Warning, Some("db"), "lag");
    fired.time_ms = Some(T0);
    let mut done = resolved(fired.clone(), T0 + 5 * MIN);
    done.ends_ms = Some(T0 + 4 * MIN + 30_000);
    let alerts = [fired.clone(), done.clone()];
    let tz = shanghai();
    let s = DigestSpec {
        tz: &tz,
        ..spec(19_000)
    };
    let r = render(&s, &alerts);
    assert_eq!(
        alert_lines(&r.text),
        ["- replication lag — fired 10:00, resolved 10:05"]
    );
    // The range ends when the condition ended, not when its resolution arrived.
    assert!(
        r.text
            .contains("\n\n2026-11-28 10:00:31 – 10:05:01 CST\n\n"),
        "{}",
        r.text
    );
    let r = render(&spec(19_000), &alerts);
    assert_eq!(
        alert_lines(&r.text),
        ["- replication lag — fired 02:00, resolved 02:05"]
    );

    // 23:58 to 00:03 in Shanghai spans two days there, but not in UTC.
    let late = 1_795_881_480_000; // 2026-11-28 15:58 UTC
    fired.time_ms = Some(late);
    fired.received_ms = late;
    done.time_ms = Some(late);
    done.received_ms = late + 5 * MIN;
    done.ends_ms = None;
    let alerts = [fired, done];
    let r = render(&s, &alerts);
    assert_eq!(
        alert_lines(&r.text),
        ["- replication lag — fired 11-28 23:58, resolved 11-29 00:03"]
    );
    assert!(
        r.text
            .contains("\n\n2026-11-28 23:58:00 – 2026-11-29 00:03:00 CST\n\n")
    );
    let r = render(&spec(19_000), &alerts);
    assert_eq!(
        alert_lines(&r.text),
        ["- replication lag — fired 15:58, resolved 16:03"]
    );
}

#[test]
fn a_resolution_alone_shows_what_is_known() {
    // Only the resolution: the fired time is shown when the sender gave the start.
    let mut with_start = resolved(alert("cpu", Severity::Error, Some("cpu"), "c"), T0);
    with_start.time_ms = Some(T0 - 30 * MIN);
    let without = resolved(alert("queue", Severity::Info, None, "q"), T0);
    // On another day than the digest's first time, a lone time gets its date.
    let mut late = resolved(alert("disk", Severity::Info, Some("disk"), "d"), T0);
    late.ends_ms = Some(T0 + 24 * 60 * MIN);
    let r = render(&spec(19_000), &[with_start, without, late]);
    assert_eq!(
        alert_lines(&r.text),
        [
            "- cpu — fired 01:30, resolved 02:00",
            "- disk — resolved 11-29 02:00",
            "- queue — resolved 02:00",
        ]
    );
    assert!(
        r.text
            .contains("\n2026-11-28 01:30:31 – 2026-11-29 02:00:31 UTC\n")
    );
}

#[test]
fn time_range_line_under_the_heading() {
    let tz = shanghai();
    let s = DigestSpec {
        tz: &tz,
        ..spec(19_000)
    };
    let at = |ms: i64| Alert {
        received_ms: ms,
        ..alert("a", Severity::Info, None, "x")
    };
    let r = render(&s, &[at(T0)]);
    assert!(
        r.text
            .starts_with("### ops: 1 info\n\n2026-11-28 10:00:31 CST\n\n#### Info · 1\n"),
        "{}",
        r.text
    );
    let r = render(&s, &[at(T0 + 271_000), at(T0)]);
    assert!(
        r.text
            .contains("\n\n2026-11-28 10:00:31 – 10:05:02 CST\n\n")
    );
    // The client's time wins over arrival.
    let mut early = at(T0);
    early.time_ms = Some(T0 - 60 * MIN);
    let r = render(&s, &[early]);
    assert!(
        r.text.contains("\n\n2026-11-28 09:00:31 CST\n\n"),
        "{}",
        r.text
    );
    // A range across a change of abbreviation names both.
    let ny = TimeZone::get("America/New_York").expect("bundled tzdb");
    let s = DigestSpec {
        tz: &ny,
        ..spec(19_000)
    };
    let r = render(&s, &[at(1_793_511_000_000), at(1_793_514_600_000)]);
    assert!(
        r.text
            .contains("\n\n2026-11-01 01:30:00 EDT – 01:30:00 EST\n\n"),
        "{}",
        r.text
    );
    // A fixed offset has no abbreviation: the offset stands for it.
    let plus8 = TimeZone::fixed(jiff::tz::Offset::constant(8));
    let s = DigestSpec {
        tz: &plus8,
        ..spec(19_000)
    };
    let r = render(&s, &[at(T0)]);
    assert!(
        r.text.contains("\n\n2026-11-28 10:00:31 +08\n\n"),
        "{}",
        r.text
    );
    // No alerts, no range.
    assert_eq!(
        render(&spec(MIN_BUDGET), &[]).text,
        "### ops: 0 alerts\n\nsluice digest #42 · 0 alerts"
    );
}

#[test]
fn catch_up_line_right_under_the_time_range() {
    let tz = shanghai();
    let s = DigestSpec {
        tz: &tz,
        catch_up: Some((T0 - 31_000, T0 + 42 * MIN)),
        ..spec(19_000)
    };
    let mut late = alert("b", Severity::Info, None, "y");
    late.received_ms = T0 + 41 * MIN + 39_000;
    let alerts = [alert("a", Severity::Info, None, "x"), late];
    let r = render(&s, &alerts);
    let want = "### ops: 2 info\n\n\
                2026-11-28 10:00:31 – 10:42:10 CST\n\n\
                ⏪ Catch-up: the robot was unavailable 10:00 – 10:42 CST; \
                these alerts arrived 10:00:31 – 10:42:10 CST.\n\n\
                #### Info · 2\n";
    assert!(r.text.starts_with(want), "{}", r.text);

    // Trouble that began the day before: every time gets its date.
    let s = DigestSpec {
        catch_up: Some((T0 - 12 * 60 * MIN, T0 + 42 * MIN)),
        ..s
    };
    let r = render(&s, &alerts[..1]);
    assert!(
        r.text.contains(
            "\n\n⏪ Catch-up: the robot was unavailable 11-27 22:00 – 11-28 10:42 CST; \
             these alerts arrived 11-28 10:00:31 CST.\n\n"
        ),
        "{}",
        r.text
    );
    // Without a catch-up there is no such line.
    assert!(!render(&spec(19_000), &alerts).text.contains("Catch-up"));
}
