//! Passthrough messages: a message a front door took in that cannot be merged (here a DingTalk
//! feedCard) is sent alone, its body as it came, signed by sluice for each try, in arrival
//! order among the robot's other alerts, within the robot's limit. The alerts are put into the
//! store as a front door would put them; the lane delivers over real HTTP to the fake DingTalk
//! robot, which checks the signature and enforces the limit. WeCom's news, image and template
//! cards go the whole way, through sluice's WeCom door to the fake WeCom robot.

mod support;

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};
use sluice::alert::{Extra, Severity};
use support::daemon::{Daemon, post_json, titles_of_digests};
use support::fake_feishu::FakeFeishu;
use support::fake_robot::{FakeRobot, Limits};
use support::fake_wecom::{self, FakeWeCom};
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

/// A 1×1 PNG, and its MD5 as `md5sum` prints it (not the fake's own MD5).
const PNG_BASE64: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";
const PNG_MD5: &str = "f829b914fc47cfc9c0747c119c27cf1b";

fn wecom_news() -> Value {
    json!({"msgtype": "news", "news": {"articles": [
        {"title": "中秋节礼品领取", "description": "今年中秋节公司有豪礼相送",
         "url": "https://news.example/1", "picurl": "https://news.example/1.png"},
        {"title": "second", "url": "https://news.example/2"},
    ]}})
}

fn wecom_image() -> Value {
    json!({"msgtype": "image", "image": {"base64": PNG_BASE64, "md5": PNG_MD5}})
}

fn wecom_card() -> Value {
    json!({"msgtype": "template_card", "template_card": {
        "card_type": "text_notice",
        "source": {"desc": "企业微信"},
        "main_title": {"title": "欢迎使用企业微信", "desc": "您的好友正在邀请您加入企业微信"},
        "emphasis_content": {"title": "100", "desc": "数据含义"},
        "card_action": {"type": 1, "url": "https://work.weixin.qq.com/?from=openApi"},
    }})
}

fn wecom_text(title: &str) -> Value {
    json!({"msgtype": "text", "text": {"content": format!("{title}\nthrough the WeCom door")}})
}

fn is_wecom_passthrough(msgtype: &str) -> bool {
    matches!(msgtype, "news" | "image" | "template_card")
}

/// The fake answers each `body` posted to `key` with this errcode.
async fn fake_wecom_answer(fake: &FakeWeCom, key: &str, body: &Value) -> i64 {
    let (_, a) = post_json(&reqwest::Client::new(), &fake.webhook(key), body).await;
    a["errcode"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fake_wecom_checks_news_images_and_cards_as_wecom_does() {
    let fake = FakeWeCom::start(Default::default()).await;
    fake.add_robot("k");
    assert_eq!(fake_wecom::md5_hex(b""), "d41d8cd98f00b204e9800998ecf8427e");
    assert_eq!(
        fake_wecom::md5_hex(b"The quick brown fox jumps over the lazy dog"),
        "9e107d9d372bb6826bd81d3542a419d6"
    );
    for ok in [wecom_news(), wecom_image(), wecom_card()] {
        assert_eq!(fake_wecom_answer(&fake, "k", &ok).await, 0, "{ok}");
    }
    let article = json!({"title": "t", "url": "https://n.example"});
    // A PNG's signature, then one byte too many.
    let mut big = b"\x89PNG\r\n\x1a\n".to_vec();
    big.resize(fake_wecom::MAX_IMAGE_BYTES + 1, 0);
    let refused = [
        json!({"msgtype": "news", "news": {"articles": vec![article.clone(); 9]}}),
        json!({"msgtype": "news", "news": {"articles": []}}),
        json!({"msgtype": "news", "news": {"articles": [{"title": "no url"}]}}),
        json!({"msgtype": "image", "image": {"base64": PNG_BASE64, "md5": "0".repeat(32)}}),
        json!({"msgtype": "image", "image": {"base64": PNG_BASE64}}),
        json!({"msgtype": "image", "image": {"base64": "aGk=", "md5": "49f68a5c8493ec2c0bf489821c21fc3b"}}),
        json!({"msgtype": "image", "image": {"md5": fake_wecom::md5_hex(&big),
            "base64": base64::engine::general_purpose::STANDARD.encode(&big)}}),
        json!({"msgtype": "template_card", "template_card": {"card_type": "button_interaction",
            "main_title": {"title": "T"}, "card_action": {"type": 1, "url": "https://c.example"}}}),
        json!({"msgtype": "template_card", "template_card": {"card_type": "text_notice",
            "main_title": {"desc": "no title"}, "card_action": {"type": 1, "url": "https://c.example"}}}),
        json!({"msgtype": "template_card", "template_card": {"card_type": "news_notice",
            "main_title": {"title": "T"}}}),
    ];
    for body in &refused {
        assert_eq!(
            fake_wecom_answer(&fake, "k", body).await,
            fake_wecom::ERR_PARAMETER,
            "{body:.200}"
        );
    }
    assert_eq!(fake.accepted("k").len(), 3);
}

/// WeCom's news, image and template card, posted to sluice's WeCom door between text
/// messages, reach the fake WeCom robot each alone and as they were sent, where they came in
/// the stream of digests, within the robot's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_news_image_and_cards_through_the_door_go_alone_as_they_came_in_order() {
    let limits = support::fake_wecom::Limits {
        limit: 20,
        period: Duration::from_secs(2),
    };
    let fake = FakeWeCom::start(limits).await;
    fake.add_robot("wk");
    let config = format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[robots.wx]
provider = "wecom"
webhook = "{}"
window = "200ms"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
request_timeout = "2s"
"#,
        fake.webhook("wk")
    );
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config, dir.path()).await;
    let sent = [
        wecom_text("before one"),
        wecom_text("before two"),
        wecom_news(),
        wecom_text("between"),
        wecom_image(),
        wecom_card(),
        wecom_text("after one"),
        wecom_text("after two"),
    ];
    let http = reqwest::Client::new();
    let door = d.url("/cgi-bin/webhook/send?key=wk");
    for m in &sent {
        let (status, a) = post_json(&http, &door, m).await;
        assert_eq!(
            (status, a),
            (200, json!({"errcode": 0, "errmsg": "ok"})),
            "{m}"
        );
    }
    let got = fake
        .wait_for("wk", Duration::from_secs(10), |a| {
            fake_wecom::footers_total(a) >= sent.len() as u64
        })
        .await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let got_now = fake.accepted("wk");
    assert_eq!(got_now.len(), got.len(), "nothing more: {got_now:?}");
    // Each message as the robot received it, in order: a digest as the titles it covers (from
    // sluice's digest API), a passthrough message as its body.
    let mut received = Vec::new();
    for a in &got {
        if is_wecom_passthrough(&a.msgtype) {
            received.push(a.body.clone());
        } else {
            for t in titles_of_digests(&d.url(""), [a.content.as_str()]).await {
                received.push(json!(t));
            }
        }
    }
    let expected: Vec<Value> = sent
        .iter()
        .map(|m| match m["msgtype"].as_str() {
            Some("text") => json!(m["text"]["content"].as_str().unwrap().lines().next()),
            _ => m.clone(),
        })
        .collect();
    assert_eq!(received, expected);
    let alone = got
        .iter()
        .filter(|a| is_wecom_passthrough(&a.msgtype))
        .count();
    assert_eq!(alone, 3, "news, image and card, each one message");
    assert!(fake.requests("wk").iter().all(|r| r.errcode == Some(0)));
    assert_eq!(fake.throttled("wk"), 0);
    assert!(fake.max_in_window("wk", limits.period) <= limits.limit);
    eprintln!(
        "{} messages posted, {} sent to the robot",
        sent.len(),
        got.len()
    );
    d.stop().await;
}
