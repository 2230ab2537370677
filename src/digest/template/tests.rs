//! Templates at load (syntax, undefined values, fuel) and at seal time (fitting, fallback,
//! escaping), and the built-in template held to the renderer byte for byte.

use proptest::prelude::*;

use super::*;
use crate::digest::plan::{ALL_EXTRAS, Plan};
use crate::digest::tests::model::{arb_alert, arb_spec_parts, zones};
use crate::digest::tests::{T0, UTC, alert, shanghai, size, spec};
use crate::digest::{DigestSpec, DingTalk, MIN_BUDGET, footer, render};

fn builtin() -> Templates {
    Templates::compile(None, Some(("body.md.j2", BUILTIN_BODY))).expect("the built-in compiles")
}

fn body(source: &str) -> Result<Templates, TemplateError> {
    Templates::compile(None, Some(("robots.ops.body_template", source)))
}

/// Renders the built-in template with the context of every configuration the renderer
/// writes for `alerts`, and compares it with the renderer's text without the footer.
fn assert_template_matches(spec: &DigestSpec, alerts: &[Alert]) -> usize {
    let t = builtin();
    let plan = Plan::new(&DingTalk, spec, alerts);
    let written = plan.written();
    for (choice, text) in &written {
        let want = text
            .strip_suffix(&format!("\n\n{}", plan.footer()))
            .expect("ends with the footer");
        let got = t.render_body(&plan.context(choice)).expect("renders");
        assert_eq!(got.trim_end(), want, "{choice:?}");
    }
    written.len()
}

#[test]
fn builtin_template_reproduces_the_renderer() {
    let tz = shanghai();
    let mut s = spec(19_000);
    s.tz = &tz;
    s.link = Some("https://sluice.example/r/ops?a=(1)");
    s.keyword = Some("告警");
    s.catch_up = Some((T0 - 3_600_000, T0 + 600_000));
    let sample = sample_alerts(T0 + 600_000);
    // Every configuration of the order: 4 per non-empty section, minus 1, plus the chosen.
    assert_eq!(assert_template_matches(&s, &sample), 5 * 3 + 1 + 1);

    // Nasty titles, texts and names, at every level.
    let mut nasty = Vec::new();
    for (i, sev) in Severity::ALL.into_iter().enumerate() {
        let mut a = alert(
            &format!("  \"quoted\" \\ {i} # > *x*\t{}", "数".repeat(90)),
            sev,
            Some(["a\nb", "  ", "数据质量"][i % 3]),
            &format!("fp{}", i % 2),
        );
        a.text = Some(format!(
            "\n\n first\u{2028}line\n{}\nthird\nfourth",
            "é".repeat(200)
        ));
        nasty.push(a.clone());
        a.status = Status::Resolved;
        a.time_ms = (i % 2 == 0).then_some(T0 - 7_200_000);
        nasty.push(a);
    }
    assert_template_matches(&spec(19_000), &nasty);
    assert_template_matches(&s, &nasty);

    // A flood: the floor lists some groups, then the overflow line with other groups.
    let flood: Vec<Alert> = (0..3_000)
        .map(|i| {
            alert(
                &format!("check {i}"),
                Severity::ALL[i % 2],
                Some(&format!("g{}", i % 400)),
                &format!("{}", i % 700),
            )
        })
        .collect();
    s.max_bytes = 5_000;
    let plan = Plan::new(&DingTalk, &s, &flood);
    let chosen = plan.written().pop().expect("chosen");
    assert!(chosen.0.partial.is_some(), "{}", chosen.1);
    assert!(chosen.1.contains(" other groups "));
    assert_template_matches(&s, &flood);

    // Counted only, bare, no alerts.
    assert_template_matches(&spec(MIN_BUDGET), &flood);
    assert_template_matches(&spec(MIN_BUDGET), &[]);
}

#[test]
fn the_builtin_template_keeps_the_space_that_ends_its_last_line() {
    // A title that shows as nothing leaves `- ` as the body's last line (or a level-2 group
    // line `… ×1: `); the renderer writes the space, so the template must keep it.
    let alerts = [alert("\u{7}\u{200B}", Severity::Info, Some("g"), "x")];
    let t = builtin();
    let mut s = spec(19_000);
    let plain = render(&s, &alerts);
    assert!(
        plain.text.ends_with("\n- \n\nsluice digest #42 · 1 alert"),
        "{}",
        plain.text
    );
    s.templates = Some(&t);
    assert_eq!(render(&s, &alerts).text, plain.text);
}

#[test]
fn templates_can_be_shared_between_robot_tasks() {
    fn shared<T: Send + Sync + Clone + PartialEq + fmt::Debug>(_: &T) {}
    let t = builtin();
    shared(&t);
    assert_eq!(t, t.clone());
    assert_ne!(t, body("other").expect("compiles"));
    assert_eq!(
        format!("{t:?}"),
        "Templates { title: None, body: Some(\"body.md.j2\") }"
    );
}

#[test]
fn syntax_error_names_the_template_and_line() {
    let e = body("### {{ title }}\n{% for s in sections %}\n{{ s.name }\n{% endfor %}")
        .expect_err("syntax error");
    assert_eq!(
        (e.name.as_str(), e.line),
        ("robots.ops.body_template", 3),
        "{e}"
    );
    assert!(e.message.starts_with("syntax error"), "{e}");
    assert!(
        e.to_string()
            .starts_with("robots.ops.body_template: line 3: syntax error")
    );

    let e = Templates::compile(Some(("title.txt.j2", "{% if robot %}x")), None)
        .expect_err("unclosed block");
    assert_eq!(e.name, "title.txt.j2");
    assert!(e.message.contains("syntax error"), "{e}");
}

#[test]
fn undefined_variables_fail_at_load_with_name_and_line() {
    let e = body("### {{ title }}\n\n{{ countz.total }}").expect_err("undefined");
    assert_eq!(
        (e.name.as_str(), e.line),
        ("robots.ops.body_template", 3),
        "{e}"
    );
    assert!(e.message.contains("undefined"), "{e}");
    // A misspelt attribute, even inside a filter or a condition.
    let e = body("{% for s in sections %}\n{{ s.groups[0].titel|line }}\n{% endfor %}")
        .expect_err("undefined attribute");
    assert_eq!(e.line, 2, "{e}");
    let e = body("a\nb\n{% if counts.totl > 1 %}x{% endif %}").expect_err("undefined");
    assert_eq!(e.line, 3, "{e}");
    // Optional values are none in the sparse sample: using one unguarded fails at load.
    let e = body("{{ catch_up.text }}").expect_err("none has no attributes");
    assert_eq!(e.line, 1, "{e}");
    body("{% if catch_up %}{{ catch_up.text }}{% endif %}").expect("guarded");
    // Branches that only some levels take are checked too.
    let e = body("{% for s in sections %}{% if s.level == 3 %}{{ s.nope }}{% endif %}{% endfor %}")
        .expect_err("level 3 is sampled");
    assert!(e.message.contains("undefined"), "{e}");
    let e = Templates::compile(Some(("robots.ops.title_template", "{{ robt }}")), None)
        .expect_err("undefined in the title");
    assert_eq!(e.name, "robots.ops.title_template");
    let e = body("{{ robot|upcase }}").expect_err("unknown filter");
    assert!(e.message.contains("unknown filter"), "{e}");
}

#[test]
fn runaway_templates_run_out_of_fuel_at_load() {
    for (source, line) in [
        // Nested loops: 10^10 steps.
        (
            "x\n{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
            2,
        ),
        // A string doubled in a loop: memory, not steps.
        (
            "{% set s = namespace(v='0123456789abcdef') %}\n\n\
             {% for i in range(100) %}{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v|length }}",
            3,
        ),
        // One huge value.
        ("{{ 'x' * 1000000000 }}", 1),
    ] {
        let started = std::time::Instant::now();
        let e = body(source).expect_err("runs out of fuel");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(
            (e.name.as_str(), e.line),
            ("robots.ops.body_template", line),
            "{e}"
        );
        assert!(
            e.message.starts_with(&format!(
                "uses more than {} steps of template work",
                crate::digest::thousands(FUEL)
            )),
            "{e}"
        );
        assert!(e.message.contains("range()"), "{e}");
    }
    // A title template is held to the same bound.
    let e = Templates::compile(
        Some((
            "title.txt.j2",
            "{% for i in range(100000) %}{% for j in range(9) %}{{ j }}{% endfor %}{% endfor %}",
        )),
        None,
    )
    .expect_err("runs out of fuel");
    assert_eq!(e.name, "title.txt.j2");
    assert!(e.message.contains("steps of template work"), "{e}");
}

#[test]
fn a_template_running_out_of_fuel_at_seal_falls_back_to_the_built_in() {
    // The sample has 10 alerts, so the check passes; 11 alerts take it into the loops.
    let t = body(
        "{% if counts.total > 10 %}\
         {% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}\
         {% endif %}fine",
    )
    .expect("compiles");
    let mut s = spec(19_000);
    s.templates = Some(&t);
    let few = vec![alert("a", Severity::Info, None, "x"); 3];
    assert!(render(&s, &few).text.starts_with("fine\n\n"));
    let many = vec![alert("a", Severity::Info, None, "x"); 11];
    let started = std::time::Instant::now();
    let r = render(&s, &many);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the robot waited {:?}",
        started.elapsed()
    );
    assert_eq!(r.text, render(&spec(19_000), &many).text);
}

#[test]
fn labels_and_group_names_render_as_plain_text() {
    let name = "*db* [x](https://e.example) <font color=red>";
    let shown = "＊db＊ [x］(https://e.example) ＜font color=red>";
    let mut a = alert("t", Severity::Critical, Some(name), "x");
    a.labels.insert(
        "instance".into(),
        "**web-1** @all _x_ ![](https://p)".into(),
    );
    let r = render(&spec(19_000), std::slice::from_ref(&a));
    assert!(
        r.text.contains(&format!("\n**{shown}** · 1\n")),
        "{}",
        r.text
    );
    // A group line and an overflow line, on a flood of such groups.
    let flood: Vec<Alert> = (0..400)
        .map(|i| {
            alert(
                &format!("t{i}"),
                Severity::Critical,
                Some(&format!("{name}{i}")),
                "x",
            )
        })
        .collect();
    let r = render(&spec(MIN_BUDGET), &flood);
    let wide = spec(19_000);
    let plan = Plan::new(&DingTalk, &wide, &flood[..10]);
    let (_, level2, _) = plan
        .write(&[2; 5], None, ALL_EXTRAS)
        .expect("group lines fit");
    assert!(
        level2.text.contains(&format!("\n- **{shown}0** ×1: t0\n")),
        "{}",
        level2.text
    );
    // Cut to 40 bytes of what it shows.
    assert!(
        r.text
            .contains("more: ＊db＊ [x］(https://e.example) ＜fon… 1, "),
        "{}",
        r.text
    );
    assert!(
        !r.text.contains("*db*") && !r.text.contains("<font"),
        "{}",
        r.text
    );

    // A template printing names and labels as they are, or through `line`.
    let t = body(
        "{% for s in sections %}{% for g in s.groups %}{{ g.name }}|{{ g.name|line }}\n\
         {% for a in g.alerts %}{{ a.labels.instance|default('') }}|\
         {% for k, v in a.labels|items %}{{ k }}={{ v }};{% endfor %}\n\
         {% endfor %}{% endfor %}{% endfor %}",
    )
    .expect("compiles");
    let mut s = spec(19_000);
    s.templates = Some(&t);
    let r = render(&s, std::slice::from_ref(&a));
    let label = "＊＊web-1＊＊ ＠all _x＿ ！[］(https://p)";
    assert_eq!(
        r.text,
        format!(
            "{shown}|{shown}\n{label}|alertname={shown};instance={label};\n\n\
             sluice digest #42 · 1 alert"
        )
    );
    // What sluice and the configuration wrote goes out as it is.
    let t = body(
        "{{ robot }} {{ keyword }} {{ link }}\n{{ title }}\n\
         {% autoescape false %}{% for s in sections %}{% for g in s.groups %}\
         {{ g.name }}{% endfor %}{% endfor %}{% endautoescape %}",
    )
    .expect("compiles");
    s.templates = Some(&t);
    s.robot = "*ops*_";
    s.keyword = Some("<告警>");
    s.link = Some("https://x.example/a_b");
    let r = render(&s, std::slice::from_ref(&a));
    assert_eq!(
        r.text,
        format!(
            "*ops*_ <告警> https://x.example/a_b\n<告警> *ops*_: 1 critical\n{name}\n\n\
             sluice digest #42 · 1 alert"
        )
    );
}

#[test]
fn custom_template_renders_with_the_footer_appended() {
    let t = body(
        "Digest {{ id }} for {{ robot }}: {{ counts.total }} alerts, {{ counts.resolved }} resolved\n\
         {% for s in sections %}\n\
         {{ s.name }} {{ s.count }}\n\
         {% endfor %}\n\n\n",
    )
    .expect("compiles");
    let mut s = spec(19_000);
    s.templates = Some(&t);
    let mut done = alert("b", Severity::Info, None, "y");
    done.status = Status::Resolved;
    let alerts = [
        alert("a", Severity::Critical, None, "x"),
        alert("c", Severity::Info, None, "z"),
        done,
    ];
    let r = render(&s, &alerts);
    assert_eq!(
        r.text,
        "Digest 42 for ops: 3 alerts, 1 resolved\nCritical 1\nInfo 1\n\n\
         sluice digest #42 · 3 alerts"
    );
    assert_eq!(r.title, "ops: 1 critical, 1 info, 1 resolved");
    assert_eq!((r.listed, r.summarized, r.level), (3, 0, 0));
}

#[test]
fn counts_count_each_alert_once_like_the_title() {
    let t = Templates::compile(
        Some((
            "title",
            "{{ robot }}: {{ counts.critical }} critical, {{ counts.error }} error, \
             {{ counts.warning }} warning, {{ counts.info }} info, \
             {{ counts.resolved }} resolved ({{ counts.firing }} firing, {{ counts.total }} in all)",
        )),
        None,
    )
    .expect("compiles");
    let mut s = spec(19_000);
    // A replication lag that fired and resolved, resolutions of an error and an info alert.
    let alerts = sample_alerts(T0);
    let plain = render(&s, &alerts);
    assert_eq!(
        plain.title,
        "ops: 3 critical, 1 error, 1 warning, 1 info, 4 resolved"
    );
    s.templates = Some(&t);
    let r = render(&s, &alerts);
    assert_eq!(r.title, format!("{} (6 firing, 10 in all)", plain.title));
}

#[test]
fn keyword_goes_into_a_body_and_a_title_that_lack_it() {
    let t = Templates::compile(
        Some(("title", "  {{ robot }}\n has {{ counts.total }} alerts  ")),
        Some(("body", "nothing here")),
    )
    .expect("compiles");
    let mut s = spec(19_000);
    s.templates = Some(&t);
    s.keyword = Some("告警");
    let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
    assert_eq!(r.title, "告警 ops  has 1 alerts");
    assert_eq!(
        r.text,
        "告警\n\nnothing here\n\nsluice digest #42 · 1 alert"
    );
    s.keyword = Some("nothing");
    let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
    assert_eq!(r.text, "nothing here\n\nsluice digest #42 · 1 alert");
    assert_eq!(r.title, "nothing ops  has 1 alerts");
}

#[test]
fn custom_title_is_one_line_of_at_most_200_bytes() {
    let t = Templates::compile(Some(("title", "{{ '数' * 100 }}\n{{ robot }}")), None)
        .expect("compiles");
    let mut s = spec(19_000);
    s.templates = Some(&t);
    let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
    assert_eq!(r.title, format!("{}…", "数".repeat(65)));
    assert!(r.title.len() <= 200);
    // The built-in body shows the custom title.
    assert!(r.text.starts_with(&format!("### {}\n\n", r.title)));
    // An empty title keeps the built-in one.
    let t = Templates::compile(Some(("title", "  {{ '' }} ")), None).expect("compiles");
    s.templates = Some(&t);
    let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
    assert_eq!(r.title, "ops: 1 critical");
}

#[test]
fn verbose_template_is_cut_and_still_ends_with_the_footer() {
    let t = body("{{ robot }} {% for i in range(3000) %}ab\"{% endfor %}").expect("compiles");
    let mut s = spec(MIN_BUDGET);
    s.templates = Some(&t);
    let alerts = [alert("a", Severity::Critical, None, "x")];
    let r = render(&s, &alerts);
    assert!(size(&r) <= MIN_BUDGET, "{}", size(&r));
    assert!(size(&r) > MIN_BUDGET - 8, "cut to the budget: {}", size(&r));
    assert!(r.text.starts_with("ops ab\"ab\""));
    assert!(
        r.text.ends_with("…\n\nsluice digest #42 · 1 alert"),
        "{}",
        r.text
    );
    assert_eq!((r.listed, r.summarized, r.level), (0, 1, 3));
    // Below what even the title and footer need, the footer still ends the text.
    s.max_bytes = 10;
    let r = render(&s, &alerts);
    assert_eq!(r.text, "\n\nsluice digest #42 · 1 alert");
}

#[test]
fn trailing_whitespace_does_not_count_against_the_budget() {
    // Rendering stops early once output cannot fit; whitespace at the end is trimmed, so it
    // must not be what stops it.
    let t = body("{{ robot }}\n{% for i in range(5000) %}  \n{% endfor %}").expect("compiles");
    let mut s = spec(MIN_BUDGET);
    s.templates = Some(&t);
    let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
    assert_eq!(r.text, "ops\n\nsluice digest #42 · 1 alert");
    assert_eq!(r.level, 0);
    // Multi-byte output is measured exactly too: 400 three-byte characters do not fit.
    let t = body("{{ '数' * 400 }}").expect("compiles");
    s.templates = Some(&t);
    let r = render(&s, &[alert("a", Severity::Critical, None, "x")]);
    assert!(size(&r) <= MIN_BUDGET);
    assert!(
        r.text.ends_with("…\n\nsluice digest #42 · 1 alert"),
        "{}",
        r.text
    );
}

#[test]
fn custom_template_degrades_by_the_same_order() {
    let t = body(
        "{% for s in sections + ([resolved] if resolved else []) %}\n\
         {% if s.level < 3 %}\n\
         {{ s.name }} (level {{ s.level }})\n\
         {% for g in s.groups %}{% for a in g.alerts %}\n\
         * {{ a.title|line }}{% if s.level == 0 %}: {{ a.text|excerpt }}{% endif +%}\n\
         {% endfor %}{% endfor %}\n\
         {% if s.overflow %}\n\
         and {{ s.overflow.count }} more\n\
         {% endif %}\n\
         {% else %}\n\
         {{ s.name }}: {{ s.count }}\n\
         {% endif %}\n\
         {% endfor %}",
    )
    .expect("compiles");
    let mut alerts = Vec::new();
    for i in 0..30 {
        let mut a = alert(
            &format!("critical {i} {}", "x".repeat(40)),
            Severity::Critical,
            Some(&format!("g{i}")),
            &format!("c{i}"),
        );
        a.text = Some("y".repeat(100));
        alerts.push(a);
        alerts.push(alert(
            &format!("warning {i} {}", "x".repeat(40)),
            Severity::Warning,
            Some("w"),
            &format!("w{i}"),
        ));
    }
    let mut s = spec(19_000);
    s.templates = Some(&t);
    let r = render(&s, &alerts);
    assert_eq!(r.level, 0);
    assert!(r.text.contains(&format!(
        "* critical 0 {}: {}\n",
        "x".repeat(40),
        "y".repeat(100)
    )));
    // Less room: warning goes first, critical keeps its texts; warning lists what fits at one
    // line per alert, then the rest.
    s.max_bytes = 6_000;
    let r = render(&s, &alerts);
    assert!(size(&r) <= 6_000);
    assert!(r.text.contains("Critical (level 0)\n"), "{}", r.text);
    assert!(
        r.text.contains("\nWarning (level 1)\n* warning 0 "),
        "{}",
        r.text
    );
    assert!(r.text.contains("\nand "), "{}", r.text);
    assert_eq!(r.level, 1);
    // Then critical loses its texts, and warning fills what that leaves.
    s.max_bytes = 3_000;
    let r = render(&s, &alerts);
    assert!(size(&r) <= 3_000);
    assert!(r.text.starts_with(&format!(
        "Critical (level 1)\n* critical 0 {}\n",
        "x".repeat(40)
    )));
    assert!(
        r.text.contains("\nWarning (level 1)\n* warning 0 "),
        "{}",
        r.text
    );
    // Less still: critical lists what fits at one line per alert, then an overflow line.
    s.max_bytes = MIN_BUDGET;
    let r = render(&s, &alerts);
    assert!(size(&r) <= MIN_BUDGET, "{}", size(&r));
    assert!(
        r.text.contains("Critical (level 1)\n* critical 0"),
        "{}",
        r.text
    );
    assert!(r.text.contains("\nand "), "{}", r.text);
    assert!(
        r.text
            .ends_with("\nWarning: 30\n\nsluice digest #42 · 60 alerts"),
        "{}",
        r.text
    );
    assert_eq!(r.level, 3);
}

#[test]
fn a_template_failing_at_run_time_falls_back_to_the_built_in() {
    // The sample has 10 alerts, so the check passes; 11 alerts reach the undefined name.
    let t = body("{% if counts.total > 10 %}{{ nowhere }}{% endif %}fine").expect("compiles");
    let mut s = spec(19_000);
    s.templates = Some(&t);
    let few = vec![alert("a", Severity::Info, None, "x"); 3];
    assert!(render(&s, &few).text.starts_with("fine\n\n"));
    let many = vec![alert("a", Severity::Info, None, "x"); 11];
    let r = render(&s, &many);
    assert_eq!(r.text, render(&spec(19_000), &many).text);
}

#[test]
fn sample_alerts_show_every_kind_of_line() {
    let tz = shanghai();
    let mut s = spec(19_000);
    s.tz = &tz;
    let r = render(&s, &sample_alerts(T0));
    for want in [
        "#### Critical · 3\n",
        "- ods_orders: 12% null user_id ×2\n> Check dq_orders_null",
        "#### ✅ Resolved · 4\n",
        "- replication lag 45s on db-2 — fired 09:52, resolved 09:57",
        "- queue depth back to normal — resolved 09:59",
        "**other** · 1\n- nightly backup finished late",
    ] {
        assert!(r.text.contains(want), "{want:?} not in {}", r.text);
    }
    assert_eq!(r.level, 0);
    let _ = UTC.clone();
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The built-in template used as a custom template gives the renderer's digest whenever
    /// the renderer lists whole sections; in every case it fits, ends with the footer and
    /// accounts for every alert.
    #[test]
    fn builtin_template_as_a_custom_one_fits_and_matches(
        alerts in prop::collection::vec(arb_alert(), 0..120),
        (max_bytes, robot, keyword, link, id, zone, catch_up) in arb_spec_parts(),
    ) {
        let t = builtin();
        let zones = zones();
        let plain = DigestSpec {
            robot, id, keyword, link, max_bytes,
            tz: &zones[zone],
            catch_up: catch_up.map(|(a, b)| (T0 + a, T0 + b)),
            templates: None,
        };
        let templated = DigestSpec { templates: Some(&t), ..plain };
        let want = render(&plain, &alerts);
        let got = render(&templated, &alerts);
        prop_assert!(size(&got) <= max_bytes, "{} > {}", size(&got), max_bytes);
        let foot = format!("\n\n{}", footer(id, alerts.len()));
        prop_assert!(got.text.ends_with(&foot), "{}", got.text);
        prop_assert_eq!(got.listed + got.summarized, alerts.len());
        if let Some(kw) = keyword {
            prop_assert!(got.text.contains(kw));
        }
        let plan = Plan::new(&DingTalk, &plain, &alerts);
        let (choice, _) = plan.written().pop().expect("chosen");
        if choice.partial.is_none() && !choice.bare && choice.extras == ALL_EXTRAS {
            prop_assert_eq!(&got.text, &want.text);
            prop_assert_eq!((got.listed, got.level), (want.listed, want.level));
        }
    }
}
