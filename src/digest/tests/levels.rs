//! Each level exactly, the degradation order, overflow lines, keyword and link.

use super::*;

/// Two critical groups, a warning, a problem that fired and resolved: small enough to show
/// every level exactly.
fn levels_case() -> Vec<Alert> {
    let mut orders = alert(
        "ods_orders null",
        Severity::Critical,
        Some("dq_orders"),
        "a",
    );
    orders.text = Some("partition 2026-11-28\n\nthreshold 1%, measured 12%".into());
    let mut users = alert("ods_users dup", Severity::Critical, Some("dq_users"), "b");
    users.text = Some("3 rows".into());
    let cpu = alert("cpu high", Severity::Warning, Some("cpu"), "d");
    vec![
        orders.clone(),
        users,
        alert("disk 91%", Severity::Warning, Some("node"), "c"),
        cpu.clone(),
        orders,
        resolved(cpu, T0 + 3 * MIN),
    ]
}

const LEVELS_HEAD: &str = "### ops: 3 critical, 1 warning, 2 resolved\n\n\
                           2026-11-28 02:00:31 – 02:03:31 UTC\n\n";

#[test]
fn each_level_exactly() {
    let alerts = levels_case();
    let s = spec(19_000);
    let at = |l: u8| render_at(&s, &alerts, [l; SECTIONS]);
    let level0 = "#### Critical · 3\n\
                  **dq_orders** · 2\n- ods_orders null ×2\n\
                  > partition 2026-11-28\n> threshold 1%, measured 12%\n\
                  **dq_users** · 1\n- ods_users dup\n> 3 rows\n\n\
                  #### Warning · 1\n**node** · 1\n- disk 91%\n\n\
                  #### ✅ Resolved · 2\n**cpu** · 2\n\
                  - cpu high — fired 02:00, resolved 02:03\n\n\
                  sluice digest #42 · 6 alerts";
    assert_eq!(at(0), format!("{LEVELS_HEAD}{level0}"));
    let level1 = "#### Critical · 3\n\
                  **dq_orders** · 2\n- ods_orders null ×2 — partition 2026-11-28\n\
                  **dq_users** · 1\n- ods_users dup — 3 rows\n\n\
                  #### Warning · 1\n**node** · 1\n- disk 91%\n\n\
                  #### ✅ Resolved · 2\n**cpu** · 2\n\
                  - cpu high — fired 02:00, resolved 02:03\n\n\
                  sluice digest #42 · 6 alerts";
    assert_eq!(at(1), format!("{LEVELS_HEAD}{level1}"));
    let level2 = "#### Critical · 3\n\
                  - **dq_orders** ×2: ods_orders null\n- **dq_users** ×1: ods_users dup\n\n\
                  #### Warning · 1\n- **node** ×1: disk 91%\n\n\
                  #### ✅ Resolved · 2\n- **cpu** ×2: cpu high\n\n\
                  sluice digest #42 · 6 alerts";
    assert_eq!(at(2), format!("{LEVELS_HEAD}{level2}"));
    let level3 = "- critical: 3 firing\n- warning: 1 firing, 2 resolved\n\n\
                  sluice digest #42 · 6 alerts";
    assert_eq!(at(3), format!("{LEVELS_HEAD}{level3}"));
    // Mixed: sections at level 3 are counted in a block after the listed ones.
    let mixed = render_at(&s, &alerts, [1, 0, 3, 0, 3]);
    let want = "#### Critical · 3\n\
                **dq_orders** · 2\n- ods_orders null ×2 — partition 2026-11-28\n\
                **dq_users** · 1\n- ods_users dup — 3 rows\n\n\
                #### Counts · 3\n- warning: 1 firing, 2 resolved\n\n\
                sluice digest #42 · 6 alerts";
    assert_eq!(mixed, format!("{LEVELS_HEAD}{want}"));
}

#[test]
fn level_two_names_three_titles_then_the_count_of_the_others() {
    let mut alerts: Vec<Alert> = (0..5)
        .map(|i| {
            alert(
                &format!("t{i}"),
                Severity::Error,
                Some("g"),
                &format!("{i}"),
            )
        })
        .collect();
    alerts.push(alert("t0", Severity::Error, Some("g"), "0"));
    let text = render_at(&spec(19_000), &alerts, [2; SECTIONS]);
    // Four of its six alerts are named (t0 twice): the count of the other two follows.
    assert!(text.contains("\n- **g** ×6: t0; t1; t2 …"), "{text}");
    assert!(
        text.contains("\n- **g** ×6: t0; t1; t2 … and 2 more\n"),
        "{text}"
    );
    alerts.truncate(3);
    let text = render_at(&spec(19_000), &alerts, [2; SECTIONS]);
    assert!(text.contains("\n- **g** ×3: t0; t1; t2\n"), "{text}");
}

#[test]
fn quotes_keep_three_lines_and_300_bytes() {
    let mut a = alert("t", Severity::Info, None, "x");
    a.text = Some("one\n\n two \nthree\nfour".into());
    let text = render_at(&spec(19_000), std::slice::from_ref(&a), [0; SECTIONS]);
    assert!(text.contains("\n- t\n> one\n> two\n> three …\n"), "{text}");
    a.text = Some(format!("{}\nnext", "数".repeat(120)));
    let text = render_at(&spec(19_000), &[a], [0; SECTIONS]);
    // 100 three-byte characters fill the 300 bytes.
    let want = format!("\n- t\n> {}…\n", "数".repeat(100));
    assert!(text.contains(&want), "{text}");
}

#[test]
fn the_least_severe_section_degrades_first_and_critical_last() {
    let mut alerts = Vec::new();
    for i in 0..40 {
        let mut a = alert(
            &format!("critical number {i} with a title long enough to matter"),
            Severity::Critical,
            Some(["dq_orders", "dq_users"][i % 2]),
            &format!("c{i}"),
        );
        a.text = Some(format!(
            "why {i}\n{}\n{}",
            "details ".repeat(12),
            "more ".repeat(12)
        ));
        alerts.push(a);
        alerts.push(alert(
            &format!("info {i}"),
            Severity::Info,
            Some("etl"),
            &format!("i{i}"),
        ));
        alerts.push(resolved(
            alert(
                &format!("ok {i}"),
                Severity::Warning,
                Some("ok"),
                &format!("r{i}"),
            ),
            T0,
        ));
    }
    let plan_levels = |max| {
        let s = spec(max);
        (chosen(&s, &alerts), render(&s, &alerts))
    };
    let seq = Plan::new(&DingTalk, &spec(MIN_BUDGET), &alerts).sequence();
    assert_eq!(
        seq,
        [
            [0, 0, 0, 0, 0],
            [0, 0, 0, 0, 1],
            [0, 0, 0, 0, 2],
            [0, 0, 0, 0, 3],
            [0, 0, 0, 1, 3],
            [0, 0, 0, 2, 3],
            [0, 0, 0, 3, 3],
            [1, 0, 0, 3, 3],
            [2, 0, 0, 3, 3],
            [3, 0, 0, 3, 3],
        ]
    );
    // All at level 0 is 11 kB; the resolved lines go first (listed as far as they fit), then
    // info, and critical keeps its quotes (9 kB) while anything else can give way.
    let (c, r) = plan_levels(10_000);
    assert_eq!(
        (c.levels, c.partial),
        ([0, 0, 0, 0, 1], Some((4, 4))),
        "{}",
        r.text
    );
    assert!(r.text.contains("\n- … and 36 more: ok 36\n"), "{}", r.text);
    let (c, r) = plan_levels(9_600);
    assert_eq!(
        (c.levels, c.partial),
        ([0, 0, 0, 1, 3], Some((3, 14))),
        "{}",
        r.text
    );
    assert!(r.text.contains("\n> details details"));
    // With 7 kB critical loses its quotes; what that leaves brings info and resolved back, at
    // one line per alert too.
    let (c, r) = plan_levels(7_000);
    assert_eq!((c.levels, c.partial), ([1, 0, 0, 1, 1], None), "{}", r.text);
    assert!(!r.text.contains("#### Counts"), "{}", r.text);
    assert_eq!((r.listed, r.summarized, r.level), (120, 0, 1));
    // With 2 kB critical lists the lines that fit, then the rest.
    let (c, r) = plan_levels(2_000);
    assert_eq!(
        (c.levels, c.partial),
        ([1, 0, 0, 3, 3], Some((0, 25))),
        "{}",
        r.text
    );
    assert!(
        r.text.contains("\n- … and 15 more: dq_users 15\n"),
        "{}",
        r.text
    );
    assert_eq!((r.listed, r.summarized), (25, 95));
}

#[test]
fn a_flood_keeps_its_worst_groups_with_an_overflow_line() {
    let mut alerts = Vec::new();
    for i in 0..30_000usize {
        alerts.push(alert(
            &format!("check {} failed on ods_table_{}", i % 300, i % 977),
            [Severity::Critical, Severity::Warning, Severity::Info][i % 3],
            Some(&format!("dq_check_{}", i % 900)),
            &format!("{}", i % 5_000),
        ));
    }
    let r = render(&spec(19_000), &alerts);
    let c = chosen(&spec(19_000), &alerts);
    // No error or resolved section: their levels do not matter and stay 0. Critical lists
    // its alert lines as far as they fit, then the rest by group.
    assert_eq!(c.levels, [1, 0, 3, 3, 0]);
    let (s, shown) = c.partial.expect("a rest line");
    assert_eq!(s, 0);
    assert!(shown > 200, "{shown} lines shown");
    assert!(size(&r) <= 19_000 && size(&r) > 18_500, "{}", size(&r));
    let overflow = r
        .text
        .lines()
        .find(|l| l.starts_with("- … and "))
        .expect("overflow line");
    let rest: u64 = parse_num(&overflow["- … and ".len()..overflow.find(" more: ").unwrap()]);
    // Each line is one alert here.
    assert_eq!(rest, 10_000 - shown as u64, "{overflow}");
    assert!(overflow.contains(" other groups "), "{overflow}");
    assert!(
        r.text.contains(
            "\n\n#### Counts · 20,000\n- warning: 10,000 firing\n- info: 10,000 firing\n"
        )
    );
    assert_eq!(
        (r.listed, r.summarized, r.level),
        (shown, 30_000 - shown, 3)
    );
}

#[test]
fn keyword_is_added_to_title_and_text_when_missing() {
    let alerts = [alert("a", Severity::Critical, None, "x")];
    let mut s = spec(19_000);
    s.keyword = Some("告警");
    let r = render(&s, &alerts);
    assert_eq!(r.title, "告警 ops: 1 critical");
    assert!(r.text.starts_with("### 告警 ops: 1 critical\n"));

    // Already in the title: not repeated.
    s.keyword = Some("ops");
    let r = render(&s, &alerts);
    assert_eq!(r.title, "ops: 1 critical");
    s.keyword = Some("critical");
    assert_eq!(render(&s, &alerts).title, "ops: 1 critical");
}

#[test]
fn link_line_goes_before_the_footer() {
    let alerts = [alert("a", Severity::Critical, None, "x")];
    let mut s = spec(19_000);
    s.link = Some("https://sluice.example/r/ops?from=1&to=2");
    let r = render(&s, &alerts);
    assert!(
        r.text.ends_with(
            "\n\n[full alert list](https://sluice.example/r/ops?from=1&to=2)\n\n\
             sluice digest #42 · 1 alert"
        ),
        "{}",
        r.text
    );
    // A link can neither break the line nor close the destination early.
    s.link = Some("https://x/a b(c)\nd");
    let r = render(&s, &alerts);
    assert!(
        r.text
            .contains("\n[full alert list](https://x/a%20b%28c%29%0Ad)\n")
    );
    assert!(
        !render(&spec(19_000), &alerts)
            .text
            .contains("full alert list")
    );
}
