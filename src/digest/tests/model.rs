//! The reference model: a property test that holds every rendering to the rules, built from
//! them quadratically and obviously, and the hostile-content property test.

use super::*;

const GROUPS: [Option<(&str, &str)>; 8] = [
    None,
    Some(("alertname", "dq_orders")),
    Some(("alertname", "dq_users")),
    Some(("job", "etl")),
    Some(("alertname", "  ")),
    Some((
        "alertname",
        "数据质量数据质量数据质量数据质量数据质量数据质量数据质量数据质量",
    )),
    Some(("alertname", "a\"b\nc\\d")),
    Some((
        "job",
        "\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"\"",
    )),
];

pub(crate) fn arb_alert() -> impl Strategy<Value = Alert> {
    // Repeating a short random string reaches past the 200-byte cut cheaply.
    let long = |n| (nasty_string(n), 1..8usize).prop_map(|(s, k)| s.repeat(k));
    let times = (
        0..3 * 86_400_000i64,
        prop::option::of(-3_600_000..3_600_000i64),
        prop::option::of(0..3_600_000i64),
    );
    (
        long(30),
        prop::option::of(long(25)),
        0..4usize,
        prop::sample::select(vec![false, false, true]),
        0..GROUPS.len(),
        0..6u8,
        times,
        // Labels a rest line may be split by: a few racks, a value per fingerprint, a zone
        // on some alerts only.
        (0..4usize, prop::option::of(0..2usize)),
    )
        .prop_map(
            |(title, text, sev, resolved, g, fp, (at, time, ends), (rack, zone))| {
                let mut a = alert(&title, Severity::ALL[sev], None, &format!("fp{fp}"));
                a.text = text;
                a.received_ms = T0 + at;
                a.time_ms = time.map(|t| T0 + at + t);
                if resolved {
                    a.status = Status::Resolved;
                    a.ends_ms = ends.map(|e| T0 + at - e);
                }
                if let Some((k, v)) = GROUPS[g] {
                    a.labels.insert(k.to_string(), v.to_string());
                }
                if rack > 0 {
                    a.labels.insert("rack".into(), format!("r{rack}"));
                }
                a.labels.insert("instance".into(), format!("host-{fp}"));
                if let Some(z) = zone {
                    a.labels
                        .insert("zone".into(), ["a\"\\", "数据"][z].to_string());
                }
                a
            },
        )
}

/// Alert content made of what markdown, DingTalk and sluice's footer read.
fn hostile_string() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        2 => nasty_string(6),
        3 => prop::sample::select(vec![
            "sluice digest #", "SLUICE  digest ＃12 · 3 alerts", "sluice\u{200B} digest#",
            "sluice **digest** #1", "sluice digest #1 · 2 alerts", "@13800000000", "@all",
            "![x](http://p.example/x.gif)", "![](http://p)", "<font color=red>", "<!-- x -->",
            "<img src=x>", "<https://a>", "\u{202E}", "\u{2066}", "\u{200F}", "&#x202E;",
            "&lt;", "&amp;", "[a](dingtalk://x)", "[a]( javascript:x)", "[a](https://ok)",
            "[a]: http://e", "[b][a]", "# ", "> ", "- ", "+ ", "1. ", "***", "---", "=",
            "\n", "\n\n", "`", "_", "*", "~", "\\", "](", "[", "]", "!", "<", "&",
        ])
        .prop_map(str::to_string),
    ];
    prop::collection::vec(piece, 0..8).prop_map(|v| v.concat())
}

pub(crate) fn arb_hostile_alert() -> impl Strategy<Value = Alert> {
    (
        hostile_string(),
        prop::option::of(hostile_string()),
        prop::option::of(hostile_string()),
        hostile_string(),
        0..4usize,
        any::<bool>(),
        0..4u8,
    )
        .prop_map(|(title, text, group, label, sev, resolved, fp)| {
            let mut a = alert(
                &title,
                Severity::ALL[sev],
                group.as_deref(),
                &format!("fp{fp}"),
            );
            a.text = text;
            a.labels.insert("instance".into(), label);
            if resolved {
                a.status = Status::Resolved;
            }
            a
        })
}

/// A section as the rules say it should be: its groups, each with its merged lines
/// (first alert, alerts, occurrences).
#[derive(Default)]
struct RefSection {
    total: u64,
    groups: Vec<RefGroup>,
}

/// Name, alerts, lines (first alert, alerts, occurrences, the alerts themselves).
type RefGroup = (Option<String>, u64, Vec<RefLine>);
type RefLine = (usize, u64, u64, Vec<usize>);

/// Sections straight from the rules, quadratic and obvious.
fn reference(alerts: &[Alert]) -> Vec<RefSection> {
    let group = |a: &Alert| {
        a.group()
            .filter(|g| !g.trim().is_empty())
            .map(str::to_string)
    };
    let section_of = |i: usize| {
        let a = &alerts[i];
        let later_resolution = alerts[i + 1..].iter().any(|b| {
            b.status == Status::Resolved && b.fingerprint == a.fingerprint && group(b) == group(a)
        });
        if a.status == Status::Resolved || later_resolution {
            RESOLVED
        } else {
            a.severity.index()
        }
    };
    let mut out: Vec<RefSection> = (0..SECTIONS).map(|_| RefSection::default()).collect();
    for (s, section) in out.iter_mut().enumerate() {
        let members: Vec<usize> = (0..alerts.len()).filter(|&i| section_of(i) == s).collect();
        section.total = members.len() as u64;
        let mut names: Vec<Option<String>> = Vec::new();
        for &i in &members {
            if !names.contains(&group(&alerts[i])) {
                names.push(group(&alerts[i]));
            }
        }
        names.sort_by_key(|g| g.is_none());
        for name in names {
            let mut lines: Vec<RefLine> = Vec::new();
            let mut firing: Vec<u64> = Vec::new();
            let in_group: Vec<usize> = members
                .iter()
                .copied()
                .filter(|&i| group(&alerts[i]) == name)
                .collect();
            for &i in &in_group {
                let f = u64::from(alerts[i].status == Status::Firing);
                match lines
                    .iter()
                    .position(|l| alerts[l.0].fingerprint == alerts[i].fingerprint)
                {
                    Some(p) => {
                        lines[p].1 += 1;
                        lines[p].3.push(i);
                        firing[p] += f;
                    }
                    None => {
                        lines.push((i, 1, 0, vec![i]));
                        firing.push(f);
                    }
                }
            }
            for (l, f) in lines.iter_mut().zip(firing) {
                l.2 = if s == RESOLVED { f.max(l.1 - f) } else { l.1 };
            }
            section.groups.push((name, in_group.len() as u64, lines));
        }
    }
    out
}

/// The start of what a title shows: its plain text in DingTalk's dialect (which
/// `markdown`'s own tests check), 20 characters that no cut at 200 bytes reaches.
fn shown_title_start(title: &str) -> String {
    let t: String = plain(title).chars().take(20).collect();
    t.trim_end().to_string()
}

fn clean(s: Option<&str>, max: usize) -> String {
    let mut out = String::new();
    match s {
        Some(n) => push_plain(&mut out, n, max),
        None => out.push_str(OTHER_GROUP),
    }
    out
}

/// The rest line of the alerts `rest` ((group position, alert)) of a section, from the rule:
/// among the labels every one of them carries, but `alertname` and `job`, the one with the
/// fewest distinct values (at least two, fewer than the alerts; ties by name) names its values,
/// largest first (ties by value), five at most; without one, or when that line would cost more
/// than 600 bytes, the groups do, largest first (ties in the section's order).
fn rest_line(alerts: &[Alert], groups: &[RefGroup], rest: &[(usize, usize)]) -> String {
    let n = rest.len() as u64;
    let head = format!("- … and {} more: ", thousands(n));
    let values_of = |k: &str| {
        let mut values: Vec<(String, u64)> = Vec::new();
        for &(_, i) in rest {
            let v = alerts[i].labels[k].to_string();
            match values.iter_mut().find(|x| x.0 == v) {
                Some(x) => x.1 += 1,
                None => values.push((v, 1)),
            }
        }
        values
    };
    let best = alerts[rest[0].1]
        .labels
        .keys()
        .filter(|k| !["alertname", "job"].contains(k))
        .filter(|k| rest.iter().all(|&(_, i)| alerts[i].labels.contains_key(k)))
        .map(|k| (values_of(k).len(), k))
        .filter(|&(d, _)| d >= 2 && (d as u64) < n)
        .min();
    let tail = |parts: Vec<String>, others: &[u64], what: &str| {
        let mut line = format!("{head}{}", parts.join(", "));
        if !others.is_empty() {
            let k = others.len();
            line.push_str(&format!(
                ", {} other {what}{} {}",
                thousands(k as u64),
                if k == 1 { "" } else { "s" },
                thousands(others.iter().sum())
            ));
        }
        line
    };
    if let Some((_, k)) = best {
        let mut values = values_of(k);
        values.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        let parts = values
            .iter()
            .take(5)
            .map(|(v, c)| {
                format!(
                    "{} {} {}",
                    clean(Some(k), 40),
                    clean(Some(v), 40),
                    thousands(*c)
                )
            })
            .collect();
        let others: Vec<u64> = values.iter().skip(5).map(|v| v.1).collect();
        let line = tail(parts, &others, "value");
        if cost(&line) <= 600 {
            return line;
        }
    }
    let mut by_group: Vec<(usize, u64)> = Vec::new();
    for &(g, _) in rest {
        match by_group.iter_mut().find(|x| x.0 == g) {
            Some(x) => x.1 += 1,
            None => by_group.push((g, 1)),
        }
    }
    by_group.sort_by_key(|&(g, _)| g);
    by_group.sort_by_key(|g| std::cmp::Reverse(g.1));
    let parts = by_group
        .iter()
        .take(5)
        .map(|&(g, c)| format!("{} {}", clean(groups[g].0.as_deref(), 40), thousands(c)))
        .collect();
    let others: Vec<u64> = by_group.iter().skip(5).map(|g| g.1).collect();
    tail(parts, &others, "group")
}

/// Checks the text line by line against the reference sections and the chosen
/// configuration: every heading, group and count in place, every listed line the right
/// alert with the right count, and everything counted exactly once.
fn check_structure(
    r: &Rendered,
    choice: &Choice,
    alerts: &[Alert],
    spec: &DigestSpec,
) -> Result<(), TestCaseError> {
    let sections = reference(alerts);
    let lines: Vec<&str> = r.text.split('\n').collect();
    let at = std::cell::Cell::new(0);
    let next = || {
        at.set(at.get() + 1);
        lines.get(at.get()).copied().unwrap_or("<end>")
    };
    prop_assert_eq!(lines[0], format!("### {}", r.title));
    // The title counts each alert once, in the sections' split.
    let names = Severity::ALL.map(Severity::as_str);
    let parts: Vec<String> = sections
        .iter()
        .zip(names.into_iter().chain(["resolved"]))
        .filter(|(section, _)| section.total > 0)
        .map(|(section, what)| format!("{} {what}", thousands(section.total)))
        .collect();
    let parts = if parts.is_empty() {
        "0 alerts".to_string()
    } else {
        parts.join(", ")
    };
    prop_assert!(
        r.title.ends_with(&format!(": {parts}")),
        "{:?} does not end with {:?}",
        r.title,
        parts
    );
    if choice.bare {
        prop_assert_eq!(
            r.text.clone(),
            format!("### {}\n\n{}", r.title, footer(spec.id, alerts.len()))
        );
        return Ok(());
    }
    if !alerts.is_empty() && choice.extras.range {
        prop_assert_eq!(next(), "");
        let range = next();
        prop_assert!(range.starts_with("202"), "range line {:?}", range);
    }
    if spec.catch_up.is_some() && choice.extras.catch_up {
        prop_assert_eq!(next(), "");
        prop_assert!(next().starts_with("⏪ Catch-up: the robot was unavailable "));
    }
    let mut accounted = 0u64;
    let mut listed = 0u64;
    for (s, section) in sections.iter().enumerate() {
        let level = choice.levels[s];
        if section.total == 0 || level == 3 {
            continue;
        }
        prop_assert_eq!(next(), "");
        let mut heading = String::new();
        Plan::new(&DingTalk, spec, alerts).push_section_heading(&mut heading, s);
        prop_assert_eq!(next(), heading.as_str());
        let count = format!(" · {}", thousands(section.total));
        prop_assert!(heading.ends_with(&count), "{}", heading);
        // A partly listed section lists its first entries (alert lines, or group lines at
        // level 2), each group heading with the group's first listed line, then a rest line.
        let mut left = match choice.partial {
            Some((p, n)) if p == s => n,
            _ => usize::MAX,
        };
        let mut rest: Vec<(usize, usize)> = Vec::new();
        for (gpos, (name, total, glines)) in section.groups.iter().enumerate() {
            if level == 2 {
                if left == 0 {
                    rest.extend(glines.iter().flat_map(|l| l.3.iter().map(|&i| (gpos, i))));
                    continue;
                }
                left -= 1;
                accounted += total;
                let want = format!(
                    "- **{}** ×{}: ",
                    clean(name.as_deref(), 80),
                    thousands(*total)
                );
                let got = next();
                prop_assert!(
                    got.starts_with(&want),
                    "{:?} does not start with {:?}",
                    got,
                    want
                );
                continue;
            }
            let take = glines.len().min(left);
            left -= take;
            for l in &glines[take..] {
                rest.extend(l.3.iter().map(|&i| (gpos, i)));
            }
            if take == 0 {
                continue;
            }
            let want = format!("**{}** · {}", clean(name.as_deref(), 80), thousands(*total));
            prop_assert_eq!(next(), want.as_str());
            for &(first, count, occurrences, _) in &glines[..take] {
                let got = next();
                let want = format!("- {}", shown_title_start(&alerts[first].title));
                prop_assert!(
                    got.starts_with(&want),
                    "{:?} does not start with {:?}",
                    got,
                    want
                );
                if occurrences > 1 {
                    prop_assert!(
                        got.contains(&format!(" ×{}", thousands(occurrences))),
                        "{:?} ×{}",
                        got,
                        occurrences
                    );
                }
                if s == RESOLVED {
                    prop_assert!(
                        got.contains(" — fired ") || got.contains(" — resolved "),
                        "{:?}",
                        got
                    );
                }
                listed += count;
                accounted += count;
                if level == 0 {
                    while lines.get(at.get() + 1).is_some_and(|l| l.starts_with("> ")) {
                        next();
                    }
                }
            }
        }
        if !rest.is_empty() {
            let want = rest_line(alerts, &section.groups, &rest);
            prop_assert_eq!(next(), want.as_str());
            accounted += rest.len() as u64;
        }
    }
    let counted: Vec<(usize, u64)> = (0..SECTIONS)
        .filter(|&s| sections[s].total > 0 && choice.levels[s] == 3)
        .map(|s| (s, sections[s].total))
        .collect();
    if !counted.is_empty() {
        prop_assert_eq!(next(), "");
        let titled = (0..SECTIONS).any(|s| sections[s].total > 0 && choice.levels[s] < 3);
        if titled {
            let n: u64 = counted.iter().map(|c| c.1).sum();
            prop_assert_eq!(next(), format!("#### Counts · {}", thousands(n)));
        }
        for sev in Severity::ALL {
            let firing = counted
                .iter()
                .find(|c| c.0 == sev.index())
                .map_or(0, |c| c.1);
            let resolved = if counted.iter().any(|c| c.0 == RESOLVED) {
                alerts
                    .iter()
                    .enumerate()
                    .filter(|&(i, a)| {
                        a.severity == sev
                            && (a.status == Status::Resolved
                                || alerts[i + 1..].iter().any(|b| {
                                    b.status == Status::Resolved
                                        && b.fingerprint == a.fingerprint
                                        && group_of(b) == group_of(a)
                                }))
                    })
                    .count() as u64
            } else {
                0
            };
            let mut parts = Vec::new();
            if firing > 0 {
                parts.push(format!("{} firing", thousands(firing)));
            }
            if resolved > 0 {
                parts.push(format!("{} resolved", thousands(resolved)));
            }
            if !parts.is_empty() {
                prop_assert_eq!(next(), format!("- {}: {}", sev.as_str(), parts.join(", ")));
            }
            accounted += firing + resolved;
        }
    }
    if let Some(link) = spec.link.filter(|_| choice.extras.link) {
        prop_assert_eq!(next(), "");
        prop_assert_eq!(next(), format!("{LINK_PREFIX}{})", escape_link(link)));
    }
    prop_assert_eq!(next(), "");
    prop_assert_eq!(next(), footer(spec.id, alerts.len()));
    prop_assert_eq!(next(), "<end>");
    prop_assert_eq!(accounted, alerts.len() as u64);
    prop_assert_eq!(listed, r.listed as u64);
    Ok(())
}

/// Budget, robot, keyword, link, id, time zone (index into [`zones`]), catch-up.
pub(crate) type SpecParts = (
    usize,
    &'static str,
    Option<&'static str>,
    Option<&'static str>,
    u64,
    usize,
    Option<(i64, i64)>,
);

pub(crate) fn arb_spec_parts() -> impl Strategy<Value = SpecParts> {
    (
        // Tight budgets are where fitting goes wrong, so they get half of the cases.
        prop_oneof![MIN_BUDGET..=2_500usize, MIN_BUDGET..=20_000usize],
        prop::sample::select(vec![
            "ops",
            "数据质量",
            "r\"o\\b\not",
            "a-rather-long-robot-name-that-goes-on-and-on-and-on-past-sixty-four-bytes",
        ]),
        prop::sample::select(vec![
            None,
            Some("告警"),
            Some("ops"),
            Some("critical"),
            Some("k\"w\\"),
        ]),
        prop::sample::select(vec![
            None,
            Some("https://sluice.example/r/ops?from=1&to=2"),
            Some("https://x/a b(c)"),
        ]),
        any::<u64>(),
        0..3usize,
        prop::option::of((-86_400_000..0i64, 0..86_400_000i64)),
    )
}

pub(crate) fn zones() -> [TimeZone; 3] {
    [
        TimeZone::UTC,
        shanghai(),
        TimeZone::get("America/New_York").expect("bundled tzdb"),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn render_fits_accounts_for_every_alert_and_picks_the_richest_level(
        alerts in prop::collection::vec(arb_alert(), 0..200),
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
        let n = alerts.len();

        prop_assert!(size(&r) <= max_bytes, "{} > {max_bytes}", size(&r));
        prop_assert!(std::str::from_utf8(r.text.as_bytes()).is_ok());
        let foot = footer(id, n);
        prop_assert!(r.text.ends_with(&format!("\n\n{foot}")), "{}", r.text);
        prop_assert_eq!(r.total, n);
        prop_assert_eq!(r.listed + r.summarized, n);
        prop_assert_eq!(r.counts.total() as usize, n);
        prop_assert_eq!((r.counts.firing + r.counts.resolved) as usize, n);
        for sev in Severity::ALL {
            let want = alerts.iter().filter(|a| a.severity == sev).count();
            prop_assert_eq!(r.counts.get(sev) as usize, want);
        }
        if let Some(kw) = keyword {
            prop_assert!(r.title.contains(kw) && r.text.contains(kw));
        }
        prop_assert!(r.title.len() <= 200, "{}", r.title);

        let plan = Plan::new(&DingTalk, &spec, &alerts);
        let (choice, _, _) = plan.choose();
        prop_assert_eq!(r.level, plan.level(&choice.levels));
        if let Err(e) = check_richest(&spec, &alerts, &plan, &choice, &r.text) {
            return Err(TestCaseError::fail(e));
        }
        check_structure(&r, &choice, &alerts, &spec)?;
    }

    /// Whatever an alert holds, a digest (built-in or through a template that writes
    /// alert content at the start of lines, raw or filtered) still fits and counts every
    /// alert; its only footer is its last line, with the true id and count; and nothing
    /// from an alert is an image, raw HTML, a reference, a non-web link, a mention or a
    /// bidi control.
    #[test]
    fn no_alert_content_forges_the_footer_or_brings_markup(
        alerts in prop::collection::vec(arb_hostile_alert(), 0..40),
        (max_bytes, robot, keyword, link, id, zone, catch_up) in arb_spec_parts(),
    ) {
        let zones = zones();
        let t = exposing_template();
        let plain_spec = DigestSpec {
            robot, id, keyword, link, max_bytes,
            tz: &zones[zone],
            catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
            templates: None,
        };
        for spec in [plain_spec, DigestSpec { templates: Some(&t), ..plain_spec }] {
            let r = render(&spec, &alerts);
            prop_assert!(size(&r) <= max_bytes, "{} > {}", size(&r), max_bytes);
            prop_assert_eq!(r.listed + r.summarized, alerts.len());
            if let Err(e) = only_the_last_line_is_a_footer(&r, id, alerts.len()) {
                return Err(TestCaseError::fail(e));
            }
            let text = &r.text;
            prop_assert!(!text.contains(is_invisible), "{:?}", text);
            prop_assert!(!text.contains('@'), "{}", text);
            prop_assert!(!text.contains("!["), "{}", text);
            prop_assert!(!text.contains("][") && !text.contains("]:"), "{}", text);
            for (at, _) in text.match_indices('<') {
                let next = text[at + 1..].chars().next();
                prop_assert!(
                    !next.is_some_and(|c| c.is_ascii_alphabetic() || "/!?".contains(c)),
                    "raw HTML at {} in {}", at, text
                );
            }
            for (at, _) in text.match_indices("](") {
                let dest = text[at + 2..].trim_start().to_ascii_lowercase();
                prop_assert!(
                    dest.starts_with("http://") || dest.starts_with("https://"),
                    "a link to {:?} in {}", &text[at..], text
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
        }
    }
}
