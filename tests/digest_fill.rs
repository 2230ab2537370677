//! Issue 12's regression: the digest a new user got from the default console robot for 1 016
//! `InstanceDown` alerts used under half of DingTalk's budget (all 343 critical lines, then the
//! 673 warnings as one group line). A section that does not fit at one line per alert now lists
//! as many lines as fit, then says how the rest split across racks.

use jiff::tz::TimeZone;
use sluice::alert::{Alert, Labels, Severity, Status};
use sluice::digest::template::{BUILTIN_BODY, Templates};
use sluice::digest::{DigestSpec, json_escaped_len, render};
use sluice::provider::dingtalk::TEXT_BUDGET;

/// 343 critical then 673 warning `InstanceDown` alerts, each with its own `instance` and a
/// `rack` of r1/r2/r3 in turn.
fn instance_down() -> Vec<Alert> {
    (0..1_016)
        .map(|i| {
            let instance = format!("127.0.0.1:{}", 20_000 + i);
            let mut labels = Labels::new();
            labels.insert("alertname".into(), "InstanceDown".into());
            labels.insert("instance".into(), instance.clone());
            labels.insert("job".into(), "node".into());
            labels.insert("rack".into(), format!("r{}", i % 3 + 1));
            Alert {
                title: format!("{instance} is down"),
                text: None,
                severity: if i < 343 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                status: Status::Firing,
                labels,
                fingerprint: instance,
                source: None,
                time_ms: None,
                ends_ms: None,
                received_ms: 1_795_831_231_000 + i,
                extra: None,
            }
        })
        .collect()
}

#[test]
fn the_1016_instance_down_alerts_fill_the_dingtalk_budget() {
    let tz = TimeZone::UTC;
    // As delivery renders for the console robot: the DingTalk budget less the mention line,
    // which is empty without mentions.
    let max_bytes = TEXT_BUDGET - sluice::mention::line_cost("");
    assert_eq!(max_bytes, 19_000);
    let spec = DigestSpec {
        robot: "console",
        id: 1,
        keyword: None,
        link: None,
        max_bytes,
        tz: &tz,
        catch_up: None,
        templates: None,
    };
    let alerts = instance_down();
    let r = render(&spec, &alerts);
    let used = json_escaped_len(&r.title) + json_escaped_len(&r.text);
    assert!(used <= max_bytes, "{used} > {max_bytes}");
    assert!(
        used * 10 > max_bytes * 9,
        "only {used} of {max_bytes} bytes used"
    );

    let lines: Vec<&str> = r.text.lines().collect();
    let listed = lines
        .iter()
        .filter(|l| l.starts_with("- 127.0.0.1:") && l.ends_with(" is down"))
        .count();
    // Every critical line, then as many warning lines as fit.
    assert!(r.text.contains("\n- 127.0.0.1:20342 is down\n"));
    assert!(
        r.text
            .contains("\n#### Warning · 673\n**InstanceDown** · 673\n")
    );
    assert_eq!(listed, LISTED, "{}", r.text);
    assert_eq!((r.listed, r.summarized), (LISTED, 1_016 - LISTED));
    assert_eq!(used, USED);
    let rest = lines
        .iter()
        .find(|l| l.starts_with("- … and "))
        .expect("a rest line");
    assert_eq!(*rest, REST);
    assert!(
        r.text
            .ends_with(&format!("{REST}\n\nsluice digest #1 · 1,016 alerts")),
        "{}",
        r.text
    );

    // The built-in template, loaded as a custom one, fills the budget the same way.
    let t = Templates::compile(None, Some(("body.md.j2", BUILTIN_BODY))).expect("compiles");
    let templated = render(
        &DigestSpec {
            templates: Some(&t),
            ..spec
        },
        &alerts,
    );
    assert_eq!(templated.text, r.text);
    assert_eq!(templated.listed, r.listed);
}

/// 343 critical and 349 warning lines: the next warning line (27 bytes) would not fit.
const LISTED: usize = 692;
/// Of 19 000 (before issue 12: about 9 300, 49 %).
const USED: usize = 18_988;
const REST: &str = "- … and 324 more: rack r1 108, rack r2 108, rack r3 108";
