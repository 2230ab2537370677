//! Mentions travel: whom a message taken in by a front door asked to mention (its
//! [`sluice::alert::Extra`]) is mentioned by the digest that carries it, in the platform's own
//! form, when the digest goes to a robot of that platform; dropped for a robot of another. The
//! alerts are put into the store as a front door would put them; the lane delivers over real
//! HTTP to each platform's fake.

mod support;

use std::time::Duration;

use sluice::alert::{Extra, Severity};
use support::fake_feishu::FakeFeishu;
use support::fake_robot::{FakeRobot, Limits};
use support::fake_wecom::FakeWeCom;
use support::lane::{Lane, alert};

const SECRET: &str = "SECtest0123456789";

fn timing() -> &'static str {
    r#"
window = "200ms"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
request_timeout = "2s"
"#
}

fn extra(platform: &str, mobiles: &[&str], user_ids: &[&str], all: bool) -> Option<Extra> {
    Some(Extra {
        platform: platform.into(),
        mobiles: mobiles.iter().map(|p| p.to_string()).collect(),
        user_ids: user_ids.iter().map(|p| p.to_string()).collect(),
        all,
        raw: None,
    })
}

async fn dingtalk(extra_config: &str) -> (FakeRobot, Lane) {
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    })
    .await;
    fake.add_robot("t", Some(SECRET), &[]);
    let config = format!(
        "[robots.ops]\nwebhook = \"{}\"\nsecret = \"{SECRET}\"\nmention_mobiles = [\"13800000000\"]\n{}{extra_config}\n",
        fake.webhook("t"),
        timing()
    );
    let lane = Lane::start(&config, "ops");
    (fake, lane)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dingtalk_mentions_the_union_in_at_and_in_the_text() {
    let (fake, lane) = dingtalk("").await;
    lane.push(vec![
        alert(
            "disk full",
            Severity::Critical,
            extra(
                "dingtalk",
                &["13800000000", "13900000002"],
                &["manager01"],
                false,
            ),
        ),
        alert("plain alert", Severity::Error, None),
        alert(
            "orders late",
            Severity::Warning,
            extra("dingtalk", &["13900000002"], &["manager01", "0147"], true),
        ),
    ])
    .await;
    let got = fake
        .wait_for("t", Duration::from_secs(10), |a| !a.is_empty())
        .await;
    assert_eq!(got.len(), 1, "one digest");
    let body = &got[0].body;
    assert_eq!(
        body["at"],
        serde_json::json!({"atMobiles": ["13800000000", "13900000002"], "atUserIds": ["manager01", "0147"], "isAtAll": true}),
        "{body}"
    );
    let text = &got[0].text;
    let line = "@13800000000 @13900000002 @manager01 @0147";
    assert_eq!(text.matches(line).count(), 1, "{text}");
    assert!(
        text.contains("disk full") && text.contains("orders late"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mentions_for_another_platform_and_at_all_without_honor_are_dropped() {
    let (fake, lane) = dingtalk("honor_at_all = false").await;
    lane.push(vec![
        alert(
            "from feishu",
            Severity::Critical,
            extra("feishu", &[], &["ou_abc"], true),
        ),
        alert(
            "from dingtalk",
            Severity::Critical,
            extra("dingtalk", &[], &["manager01"], true),
        ),
    ])
    .await;
    let got = fake
        .wait_for("t", Duration::from_secs(10), |a| !a.is_empty())
        .await;
    let body = &got[0].body;
    // The route's alert from Feishu still goes out, without its mentions.
    assert!(got[0].text.contains("from feishu"), "{}", got[0].text);
    assert_eq!(
        body["at"],
        serde_json::json!({"atMobiles": ["13800000000"], "atUserIds": ["manager01"], "isAtAll": false}),
        "{body}"
    );
    assert!(!got[0].text.contains("ou_abc"), "{}", got[0].text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feishu_mentions_the_union_as_at_elements() {
    let fake = FakeFeishu::start(Default::default()).await;
    fake.add_bot("hook", None, &[]);
    let config = format!(
        "[robots.lark]\nprovider = \"feishu\"\nwebhook = \"{}\"\nmention_user_ids = [\"ou_lead\"]\n{}",
        fake.webhook("hook"),
        timing()
    );
    let lane = Lane::start(&config, "lark");
    lane.push(vec![
        alert(
            "a",
            Severity::Critical,
            extra("feishu", &[], &["ou_a", "ou_lead"], false),
        ),
        // A mobile means nothing to a Feishu bot; an @all is kept (honor_at_all by default).
        alert(
            "b",
            Severity::Error,
            extra("feishu", &["13900000002"], &["ou_a"], true),
        ),
        alert(
            "c",
            Severity::Error,
            extra("dingtalk", &[], &["manager01"], false),
        ),
    ])
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.accepted("hook").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = fake.accepted("hook");
    assert_eq!(got.len(), 1, "one digest");
    assert_eq!(
        got[0].mentions,
        ["ou_lead", "ou_a", "all"],
        "{}",
        got[0].body
    );
    assert!(!got[0].text.contains("13900000002"), "{}", got[0].text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_mentions_user_ids_as_at_tags_and_shows_mobiles_as_text() {
    let fake = FakeWeCom::start(support::fake_wecom::Limits {
        limit: 20,
        period: Duration::from_secs(2),
    })
    .await;
    fake.add_robot("k");
    let config = format!(
        "[robots.wx]\nprovider = \"wecom\"\nwebhook = \"{}\"\n{}",
        fake.webhook("k"),
        timing()
    );
    let lane = Lane::start(&config, "wx");
    lane.push(vec![
        alert(
            "a",
            Severity::Critical,
            extra("wecom", &["13900000002"], &["zhangsan"], false),
        ),
        alert(
            "b",
            Severity::Error,
            extra("wecom", &[], &["lisi", "zhangsan"], false),
        ),
    ])
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.accepted("k").is_empty() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = fake.accepted("k");
    assert_eq!(got.len(), 1, "one digest");
    assert_eq!(got[0].mentions, ["zhangsan", "lisi"], "{}", got[0].content);
    // As the README says of mobiles in markdown: shown, not notified.
    assert!(
        got[0].content.contains("<@zhangsan> <@lisi> @13900000002"),
        "{}",
        got[0].content
    );
}
