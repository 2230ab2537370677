//! Alert content cannot impersonate sluice: end to end, in-process, to the fake DingTalk robot,
//! alerts that carry a forged footer, images, raw HTML, bidi overrides and @-mentions arrive as
//! inert text, through the built-in format and through a template that prints labels as they
//! are, and the message mentions only whom the configuration names.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::Daemon;
use support::fake_robot::{FakeRobot, Limits};

const SECRET: &str = "SECcontent0123456789";

fn config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "100ms"
retry_initial_backoff = "100ms"
request_timeout = "2s"

[robots.ops]
webhook = "{ops}"
secret = "{SECRET}"
keywords = ["告警"]
mention_mobiles = ["13800000000"]

[robots.tpl]
webhook = "{tpl}"
secret = "{SECRET}"
keywords = ["告警"]
body_template = '''
告警
{{% for s in sections %}}{{% for g in s.groups %}}{{% for a in g.alerts %}}
{{{{ a.title }}}}
{{{{ a.labels.instance|default("") }}}}
{{{{ a.text|excerpt }}}}
{{% endfor %}}{{% endfor %}}{{% endfor %}}'''

[owners.job]
dq_orders = ["alice"]
"#,
        ops = fake.webhook("ops-token"),
        tpl = fake.webhook("tpl-token"),
    )
}

const FORGED: &str = "sluice digest #999 · 99,999 alerts";

fn hostile(robot: &str) -> Value {
    json!([{
        "robot": robot,
        "title": FORGED,
        "severity": "critical",
        "text": "![](https://t.example/pixel.gif) <font color=red>PAID</font> <!-- hidden -->\n\
                 @all @13900000009 invoice\u{202E}fdp.exe [open](dingtalk://dingtalkclient/page/link)\n\
                 sluice digest #1000 · 1 alert",
        "labels": {
            "job": "dq_orders",
            "instance": "@13900000009 <b>db-1</b> *x*",
            "owner_mobile": "@13900000008",
        },
    }])
}

/// A line reads as a footer when its words, case and spacing aside, are the footer's and `#`.
fn reads_as_footer(line: &str) -> bool {
    let seen: String = line
        .chars()
        .filter(|c| !matches!(c, '*' | '_' | '~' | '`' | '\u{200B}'))
        .flat_map(char::to_lowercase)
        .collect();
    let seen = seen.split_whitespace().collect::<Vec<_>>().join(" ");
    seen.contains("sluice digest #") || seen.contains("sluice digest＃")
}

fn check_inert(text: &str, id_count: (u64, u64)) {
    let lines: Vec<&str> = text.lines().collect();
    let (last, rest) = lines.split_last().expect("lines");
    assert_eq!(sluice::digest::parse_footer(last), Some(id_count), "{text}");
    for l in rest {
        assert!(
            sluice::digest::parse_footer(l).is_none() && !reads_as_footer(l),
            "{l:?} reads as a footer in\n{text}"
        );
    }
    for bad in [
        "![",
        "<font",
        "<!--",
        "<b>",
        "\u{202E}",
        "](dingtalk",
        "@all",
        "@1390",
        "*x*",
    ] {
        assert!(!text.contains(bad), "{bad:?} in\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alert_content_reaches_dingtalk_inert_with_only_the_configured_mentions() {
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    })
    .await;
    fake.add_robot("ops-token", Some(SECRET), &["告警"]);
    fake.add_robot("tpl-token", Some(SECRET), &["告警"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;

    for robot in ["ops", "tpl"] {
        assert_eq!(d.post(&hostile(robot)).await.0, 202);
    }
    let ops = fake
        .wait_for("ops-token", Duration::from_secs(5), |a| !a.is_empty())
        .await;
    let tpl = fake
        .wait_for("tpl-token", Duration::from_secs(5), |a| !a.is_empty())
        .await;

    // The built-in format: the title, quoted text and group line are inert.
    let text = &ops[0].text;
    let (id, _) = sluice::digest::parse_footer(text).expect("a footer");
    check_inert(text, (id, 1));
    assert!(
        text.contains("\n- “sluice digest” #999 · 99,999 alerts\n"),
        "{text}"
    );
    assert!(
        text.contains("\n> [image](https://t.example/pixel.gif) ＜font color=red>PAID＜/font> ＜!-- hidden -->\n"),
        "{text}"
    );
    assert!(
        text.contains("\n> ＠all ＠13900000009 invoicefdp.exe [open］(dingtalk://"),
        "{text}"
    );
    // Only the configuration's people: the robot's own and the owner of job=dq_orders; the
    // label `owner_mobile` is not a phone number, and nothing an alert wrote reached `at`.
    assert_eq!(
        ops[0].body["at"],
        json!({"atMobiles": ["13800000000"], "atUserIds": ["alice"], "isAtAll": false})
    );
    let with_at: Vec<&str> = text.lines().filter(|l| l.contains('@')).collect();
    assert_eq!(with_at, ["@13800000000 @alice"], "{text}");
    assert_eq!(text.lines().rev().nth(2), Some("@13800000000 @alice"));

    // A template printing a title and a label as they are writes them as plain text.
    let text = &tpl[0].text;
    let (id, _) = sluice::digest::parse_footer(text).expect("a footer");
    check_inert(text, (id, 1));
    assert!(
        text.contains("\n“sluice digest” #999 · 99,999 alerts\n＠13900000009 ＜b>db-1＜/b> ＊x＊\n[image](https://t.example/pixel.gif)"),
        "{text}"
    );
    assert_eq!(
        tpl[0].body["at"],
        json!({"atMobiles": [], "atUserIds": ["alice"], "isAtAll": false})
    );
    let with_at: Vec<&str> = text.lines().filter(|l| l.contains('@')).collect();
    assert_eq!(with_at, ["@alice"], "{text}");
    d.stop().await;
}
