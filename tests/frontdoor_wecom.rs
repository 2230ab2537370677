//! The WeCom front door, end to end in-process: senders post to sluice's
//! `/cgi-bin/webhook/send?key=…` as they would to WeCom, sluice answers as WeCom does once the
//! message is durable, and the digest reaches the fake WeCom robot.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, door_answer};
use support::fake_wecom::{FakeWeCom, Limits};

const KEY: &str = "693a91f6-7aaa-4bbb-8ccc-frontdoor001";
const FULL: &str = "693a91f6-7aaa-4bbb-8ccc-frontdoor002";
const PICS: &str = "693a91f6-7aaa-4bbb-8ccc-frontdoor003";
const INGRESS: &str = "wecom-door-Zr81qP";

fn config(fake: &FakeWeCom) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "150ms"
rate_limit = 20
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
request_timeout = "2s"

[robots.wx]
provider = "wecom"
webhook = "{wx}"
ingress_severity = "error"

[robots.full]
provider = "wecom"
webhook = "{full}"
max_pending = 1
window = "1h"
ingress_token = "{INGRESS}"

[robots.pics]
provider = "wecom"
webhook = "{pics}"
window = "1h"
"#,
        wx = fake.webhook(KEY),
        full = fake.webhook(FULL),
        pics = fake.webhook(PICS),
    )
}

async fn post(d: &Daemon, query: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .post(d.url(&format!("/cgi-bin/webhook/send?{query}")))
        .header("user-agent", "Grafana/11.3.0")
        .json(body)
        .send()
        .await
        .unwrap();
    door_answer(r).await
}

fn ok() -> Value {
    json!({"errcode": 0, "errmsg": "ok"})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wecom_messages_are_taken_with_wecoms_answers() {
    let fake = FakeWeCom::start(Limits {
        limit: 20,
        period: Duration::from_secs(2),
    })
    .await;
    for k in [KEY, FULL, PICS] {
        fake.add_robot(k);
    }
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    let q = format!("key={KEY}");
    let messages = [
        json!({"msgtype": "text", "text": {"content": "cpu high on web1\nload 12",
            "mentioned_list": ["wangqing", "@all"], "mentioned_mobile_list": ["13800001111"]}}),
        json!({"msgtype": "markdown", "markdown": {"content": "**[FIRING:1] disk**\n> db1"}}),
        json!({"msgtype": "markdown_v2", "markdown_v2": {"content": "# report\n| a | b |"}}),
    ];
    for m in &messages {
        assert_eq!(post(&d, &q, m).await.2, ok(), "{m}");
    }
    d.wait_status("wx", Duration::from_secs(10), |s| {
        s["alerts_delivered"].as_u64() >= Some(3)
    })
    .await;
    assert!(!fake.accepted(KEY).is_empty());
    let (_, list) = d.get("/v1/digests?robot=wx").await;
    let mut alerts = Vec::new();
    for e in list["digests"].as_array().unwrap() {
        let (_, digest) = d.get(&format!("/v1/digests/{}", e["id"])).await;
        alerts.extend(digest["alerts"].as_array().unwrap().iter().cloned());
    }
    let text = alerts
        .iter()
        .find(|a| a["title"] == "cpu high on web1")
        .unwrap_or_else(|| panic!("{alerts:?}"));
    assert_eq!(text["text"], "load 12");
    assert_eq!(text["severity"], "error");
    assert_eq!(text["labels"]["job"], "Grafana");
    assert_eq!(text["labels"]["msgtype"], "text");
    assert_eq!(text["source"], "wecom:wx");
    assert_eq!(text["extra"]["user_ids"], json!(["wangqing"]));
    assert_eq!(text["extra"]["mobiles"], json!(["13800001111"]));
    assert_eq!(text["extra"]["all"], true);

    // news, image and template cards are stored whole.
    let p = format!("key={PICS}");
    for m in [
        json!({"msgtype": "news", "news": {"articles": [{"title": "t", "url": "https://n.example"}]}}),
        json!({"msgtype": "image", "image": {"base64": "aGk=", "md5": "49f68a5c8493ec2c0bf489821c21fc3b"}}),
        json!({"msgtype": "template_card", "template_card": {"card_type": "text_notice",
            "main_title": {"title": "T"}, "card_action": {"type": 1, "url": "https://c.example"}}}),
    ] {
        assert_eq!(post(&d, &p, &m).await.2, ok(), "{m}");
    }
    let s = d.robot_status("pics").await;
    let taken = s["pending"].as_u64().unwrap_or(0) + s["alerts_delivered"].as_u64().unwrap();
    assert_eq!(taken, 3, "{s}");

    // What WeCom would refuse, refused its way.
    let (_, _, a1) = post(&d, "key=nope", &messages[0]).await;
    let (_, _, a2) = post(&d, "key=693a91f6-0000-0000-0000-000000000000", &messages[0]).await;
    assert_eq!(a1["errcode"], 93000);
    assert_eq!(a1, a2);
    // file and voice carry a media_id uploaded to WeCom: refused with WeCom's "invalid
    // message type" and a message saying why and where to send them.
    for media in [
        json!({"msgtype": "file", "file": {"media_id": "m1"}}),
        json!({"msgtype": "voice", "voice": {"media_id": "m"}}),
    ] {
        let (status, _, a) = post(&d, &q, &media).await;
        assert_eq!((status, a["errcode"].as_i64()), (200, Some(40008)), "{a}");
        let msg = a["errmsg"].as_str().unwrap();
        assert!(
            msg.contains(media["msgtype"].as_str().unwrap()) && msg.contains("upload_media"),
            "{a}"
        );
    }
    assert_eq!(
        post(&d, &q, &json!({"msgtype": "video"})).await.2["errcode"],
        40008
    );
    assert_eq!(post(&d, &q, &json!([1])).await.2["errcode"], 40008);
    // ingress_token: only it selects `full`.
    assert_eq!(
        post(&d, &format!("key={FULL}"), &messages[0]).await.2["errcode"],
        93000
    );
    let door = format!("key={INGRESS}");
    assert_eq!(post(&d, &door, &messages[0]).await.2, ok());
    let (status, retry, a) = post(&d, &door, &messages[1]).await;
    assert_eq!((status, a["errcode"].as_i64()), (503, Some(-1)));
    assert!(retry.is_some());
    d.stop().await;
}
