//! Passthrough messages: a message a front door took in that cannot be merged (here a DingTalk
//! feedCard) is sent alone, its body as it came, signed by sluice for each try, in arrival
//! order among the robot's other alerts, within the robot's limit. The alerts are put into the
//! store as a front door would put them; the lane delivers over real HTTP to the fake DingTalk
//! robot, which checks the signature and enforces the limit.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use sluice::alert::{Extra, Severity};
use support::fake_feishu::FakeFeishu;
use support::fake_robot::{FakeRobot, Limits};
use support::lane::{Lane, alert};

const SECRET: &str = "SECtest0123456789";

async fn dingtalk() -> (FakeRobot, Lane) {
    dingtalk_with(&[]).await
}

/// The fake DingTalk robot `t`, signed, with these `keywords`, and a lane of robot ops on it.
async fn dingtalk_with(keywords: &[&str]) -> (FakeRobot, Lane) {
    let fake = FakeRobot::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    })
    .await;
    fake.add_robot("t", Some(SECRET), keywords);
    let config = format!(
        r#"
[robots.ops]
webhook = "{}"
secret = "{SECRET}"
keywords = {keywords:?}
window = "200ms"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
throttle_backoff = "1s"
request_timeout = "2s"
"#,
        fake.webhook("t")
    );
    let lane = Lane::start(&config, "ops");
    (fake, lane)
}

fn feed_card(title: &str) -> Value {
    json!({
        "msgtype": "feedCard",
        "feedCard": {"links": [{
            "title": title,
            "messageURL": "https://example.com/news/1",
            "picURL": "https://example.com/news/1.png",
        }]},
    })
}

/// An alert a DingTalk front door made of a feedCard: its body kept, sent alone.
fn raw(platform: &str, title: &str) -> sluice::alert::Alert {
    let extra = Extra {
        platform: platform.into(),
        raw: Some(feed_card(title)),
        ..Extra::default()
    };
    alert(title, Severity::Info, Some(extra))
}

fn texts(titles: &[&str]) -> Vec<sluice::alert::Alert> {
    titles
        .iter()
        .map(|t| alert(t, Severity::Error, None))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_card_goes_alone_between_the_digests_of_the_alerts_around_it() {
    let (fake, lane) = dingtalk().await;
    let mut alerts = texts(&["before one", "before two", "before three"]);
    alerts.push(raw("dingtalk", "news of the day"));
    alerts.extend(texts(&["after one", "after two"]));
    lane.push(alerts).await;

    let got = fake
        .wait_for("t", Duration::from_secs(10), |a| a.len() >= 3)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fake.accepted("t").len(), 3, "three messages");
    let (first, card, last) = (&got[0], &got[1], &got[2]);
    assert_eq!(
        sluice::digest::parse_footer(&first.text).map(|f| f.1),
        Some(3)
    );
    for t in ["before one", "before two", "before three"] {
        assert!(first.text.contains(t), "{}", first.text);
    }
    assert!(!first.text.contains("news of the day"), "{}", first.text);
    // The feedCard exactly as it came; the fake accepted its signature (sluice's, this try).
    assert_eq!(card.body, feed_card("news of the day"));
    assert_eq!(
        sluice::digest::parse_footer(&last.text).map(|f| f.1),
        Some(2)
    );
    assert!(last.text.contains("after one") && last.text.contains("after two"));
    let (id1, _) = sluice::digest::parse_footer(&first.text).unwrap();
    let (id3, _) = sluice::digest::parse_footer(&last.text).unwrap();
    assert_eq!(
        id3,
        id1 + 2,
        "the passthrough message is the digest in between"
    );
    assert!(fake.requests("t").iter().all(|r| r.errcode == Some(0)));

    let digests = lane.digests().await;
    let kinds: Vec<(u64, bool)> = digests.iter().map(|d| (d.count(), d.passthrough)).collect();
    assert_eq!(kinds, [(3, false), (1, true), (2, false)]);
    assert_eq!(digests[1].title, "news of the day");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_passthrough_messages_stays_within_the_limit() {
    let (fake, lane) = dingtalk().await;
    let titles: Vec<String> = (0..30).map(|i| format!("card {i}")).collect();
    lane.push(titles.iter().map(|t| raw("dingtalk", t)).collect())
        .await;
    let got = fake
        .wait_for("t", Duration::from_secs(15), |a| a.len() >= 30)
        .await;
    let sent: Vec<Value> = got.iter().map(|a| a.body.clone()).collect();
    let expected: Vec<Value> = titles.iter().map(|t| feed_card(t)).collect();
    assert_eq!(sent, expected, "each alone, in arrival order");
    assert_eq!(fake.throttled("t"), 0);
    assert!(fake.max_in_window("t", Duration::from_secs(2)) <= 20);
    // 30 at 20 per 2 s: the last ten waited for the window to move.
    let span = got[29].at - got[0].at;
    assert!(span >= Duration::from_millis(1500), "{span:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_message_for_another_platform_is_an_alert_line() {
    let (fake, lane) = dingtalk().await;
    let mut alerts = texts(&["plain"]);
    alerts.push(raw("feishu", "a feishu image"));
    lane.push(alerts).await;
    let got = fake
        .wait_for("t", Duration::from_secs(10), |a| !a.is_empty())
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fake.accepted("t").len(), 1, "one digest");
    assert_eq!(got[0].body["msgtype"], "markdown", "{}", got[0].body);
    assert!(got[0].text.contains("a feishu image"), "{}", got[0].text);
    assert_eq!(
        sluice::digest::parse_footer(&got[0].text).map(|f| f.1),
        Some(2)
    );
}

/// A robot with keywords would refuse a feedCard (it has no text to carry one) and be blocked
/// for it: the message goes as an alert line in a digest that carries the keyword.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passthrough_message_for_a_robot_with_keywords_is_an_alert_line() {
    let (fake, lane) = dingtalk_with(&["告警"]).await;
    lane.push(vec![raw("dingtalk", "a news card")]).await;
    let got = fake
        .wait_for("t", Duration::from_secs(10), |a| !a.is_empty())
        .await;
    assert_eq!(got[0].body["msgtype"], "markdown", "{}", got[0].body);
    assert!(got[0].text.contains("a news card"), "{}", got[0].text);
    assert!(fake.requests("t").iter().all(|r| r.errcode == Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feishu_share_chat_goes_as_it_came_with_sluices_signature_in_the_body() {
    let fake = FakeFeishu::start(Default::default()).await;
    fake.add_bot("hook", Some(SECRET), &[]);
    let config = format!(
        "[robots.lark]\nprovider = \"feishu\"\nwebhook = \"{}\"\nsecret = \"{SECRET}\"\nwindow = \"200ms\"\n",
        fake.webhook("hook")
    );
    let lane = Lane::start(&config, "lark");
    let share = json!({"msg_type": "share_chat", "content": {"share_chat_id": "oc_f5b1a7eb27ae2c7b6adc2a74faf339ff"}});
    let extra = Extra {
        platform: "feishu".into(),
        raw: Some(share.clone()),
        ..Extra::default()
    };
    let mut alerts = texts(&["first"]);
    alerts.push(alert("a group card", Severity::Info, Some(extra)));
    lane.push(alerts).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fake.accepted("hook").len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = fake.accepted("hook");
    assert_eq!(got.len(), 2, "a digest, then the card");
    assert_eq!(got[0].body["msg_type"], "post");
    let mut body = got[1].body.clone();
    let signed = body.as_object_mut().unwrap();
    assert!(signed.remove("timestamp").is_some() && signed.remove("sign").is_some());
    assert_eq!(body, share);
}
