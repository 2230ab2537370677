//! The Feishu/Lark front door, end to end in-process: senders post to sluice's
//! `/open-apis/bot/v2/hook/{token}` as they would to Feishu, sluice answers as Feishu does once
//! the message is durable, and the digest reaches the fake Feishu bot.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::daemon::{Daemon, door_answer};
use support::fake_feishu::{FakeFeishu, Limits, feishu_sign};

const BOT: &str = "3f1c2d4e-5a6b-7c8d-9e0f-feishubot0001";
const OPEN: &str = "3f1c2d4e-5a6b-7c8d-9e0f-feishubot0002";
const PICS: &str = "3f1c2d4e-5a6b-7c8d-9e0f-feishubot0003";
const SECRET: &str = "fs-secret-0123456789";

fn config(fake: &FakeFeishu) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "150ms"
rate_limit = 100
rate_period = "2s"
burst_limit = 5
burst_period = "100ms"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
request_timeout = "2s"

[robots.fs]
provider = "feishu"
webhook = "{bot}"
secret = "{SECRET}"
[[robots.fs.ingress_rules]]
match = '^\[UP\]'
resolved = true
[[robots.fs.ingress_rules]]
match = '^\[DOWN\]'
severity = "critical"

[robots.open]
provider = "feishu"
webhook = "{open}"
max_pending = 1
window = "1h"

[robots.pics]
provider = "feishu"
webhook = "{pics}"
window = "1h"
"#,
        pics = fake.webhook(PICS),
        bot = fake.webhook(BOT),
        open = fake.webhook(OPEN),
    )
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// `body` signed in the Feishu way (timestamp as a string, as Feishu's samples send it).
fn signed(mut body: Value, secret: &str) -> Value {
    let ts = now_s();
    body["timestamp"] = json!(ts.to_string());
    body["sign"] = json!(feishu_sign(secret, ts));
    body
}

async fn post(d: &Daemon, path: &str, body: &Value) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .post(d.url(path))
        .json(body)
        .send()
        .await
        .unwrap();
    door_answer(r).await
}

fn success() -> Value {
    json!({"StatusCode": 0, "StatusMessage": "success", "code": 0, "data": {}, "msg": "success"})
}

/// The alerts of every digest delivered so far, from the digest API.
async fn delivered_alerts(d: &Daemon, robot: &str) -> Vec<Value> {
    let (_, list) = d.get(&format!("/v1/digests?robot={robot}")).await;
    let mut out = Vec::new();
    for e in list["digests"].as_array().unwrap() {
        let (_, digest) = d.get(&format!("/v1/digests/{}", e["id"])).await;
        out.extend(digest["alerts"].as_array().unwrap().iter().cloned());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_post_and_cards_reach_the_bot_and_resolved_folds_with_firing() {
    let fake = FakeFeishu::start(Limits::default()).await;
    fake.add_bot(BOT, Some(SECRET), &[]);
    fake.add_bot(OPEN, None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    let hook = format!("/open-apis/bot/v2/hook/{BOT}");
    let messages = [
        json!({"msg_type": "text", "content": {"text": "deploy failed\nstep 3 <at user_id=\"ou_a\">Ann</at>"}}),
        json!({"msg_type": "post", "content": {"post": {"zh_cn": {"title": "周报",
            "content": [[{"tag": "text", "text": "见 "}, {"tag": "a", "text": "链接", "href": "https://w.example"}]]}}}}),
        json!({"msg_type": "interactive", "card": {"header": {"title": {"tag": "plain_text", "content": "[DOWN] api"}},
            "elements": [{"tag": "div", "text": {"tag": "lark_md", "content": "no answer"}}]}}),
        json!({"msg_type": "interactive", "card": {"schema": "2.0", "header": {"title": {"content": "[UP] api"}},
            "body": {"elements": [{"tag": "markdown", "content": "back after 3 min"}]}}}),
    ];
    for m in &messages {
        let (status, _, body) = post(&d, &hook, &signed(m.clone(), SECRET)).await;
        assert_eq!((status, &body), (200, &success()), "{m}");
    }
    // With a trailing slash (Apprise), and a Lark sender's numeric timestamp.
    let mut m = signed(
        json!({"msg_type": "text", "content": {"text": "slash"}}),
        SECRET,
    );
    m["timestamp"] = json!(now_s());
    m["sign"] = json!(feishu_sign(SECRET, now_s()));
    assert_eq!(
        post(&d, &format!("{hook}/?job=lark"), &m).await.2,
        success()
    );
    d.wait_status("fs", Duration::from_secs(10), |s| {
        s["alerts_delivered"].as_u64() >= Some(5)
    })
    .await;
    assert!(!fake.accepted(BOT).is_empty());
    let alerts = delivered_alerts(&d, "fs").await;
    let find = |t: &str| {
        alerts
            .iter()
            .find(|a| a["title"] == t)
            .unwrap_or_else(|| panic!("no {t:?} in {alerts:?}"))
            .clone()
    };
    let text = find("deploy failed");
    assert_eq!(text["text"], "step 3");
    assert_eq!(text["extra"]["user_ids"], json!(["ou_a"]));
    assert_eq!(text["extra"]["platform"], "feishu");
    assert_eq!(text["source"], "feishu:fs");
    assert_eq!(find("周报")["text"], "见 [链接](https://w.example)");
    let (down, up) = (find("[DOWN] api"), find("[UP] api"));
    assert_eq!(down["severity"], "critical");
    assert_eq!(up["status"], "resolved");
    assert_eq!(down["fingerprint"], up["fingerprint"]);
    assert_eq!(find("slash")["labels"]["job"], "lark");
    // The door's requests are counted under the route as written: the token is no label.
    let metrics = reqwest::get(d.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(
            r#"sluice_ingest_requests_total{endpoint="/open-apis/bot/v2/hook/{token}",status="200"}"#
        ),
        "{metrics}"
    );
    assert!(!metrics.contains(BOT), "the token is in /metrics");
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feishu_refusals_are_feishus_own() {
    let fake = FakeFeishu::start(Limits::default()).await;
    fake.add_bot(BOT, Some(SECRET), &[]);
    fake.add_bot(OPEN, None, &[]);
    fake.add_bot(PICS, None, &[]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    let hook = format!("/open-apis/bot/v2/hook/{BOT}");
    let text = json!({"msg_type": "text", "content": {"text": "x"}});
    // Unknown tokens: one answer for all.
    let (s1, _, a1) = post(&d, "/open-apis/bot/v2/hook/nope", &text).await;
    let (_, _, a2) = post(&d, "/open-apis/bot/v2/hook/0000-1111-2222", &text).await;
    assert_eq!((s1, a1["code"].as_i64()), (200, Some(19001)));
    assert_eq!(a1, a2);
    // Unsigned, wrongly signed, stale.
    for body in [
        text.clone(),
        signed(text.clone(), "other"),
        json!({"msg_type": "text", "content": {"text": "x"}, "timestamp": (now_s() - 7200).to_string(),
               "sign": feishu_sign(SECRET, now_s() - 7200)}),
    ] {
        let (status, _, a) = post(&d, &hook, &body).await;
        assert_eq!((status, a["code"].as_i64()), (200, Some(19021)), "{a}");
        assert!(a["msg"].as_str().unwrap().contains("(sluice:"));
        assert!(!a["msg"].as_str().unwrap().contains(SECRET));
    }
    // Bad JSON and unknown types: 9499 with HTTP 400.
    let r = reqwest::Client::new()
        .post(d.url(&hook))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 9499);
    let (status, _, a) = post(&d, &hook, &signed(json!({"msg_type": "audio"}), SECRET)).await;
    assert_eq!((status, a["code"].as_i64()), (400, Some(9499)));
    assert!(a["msg"].as_str().unwrap().contains("\"audio\""));
    let big = json!({"msg_type": "text", "content": {"text": "y".repeat(31 * 1024)}});
    assert_eq!(post(&d, &hook, &big).await.2["code"], 19036);

    // image and share_chat are stored whole (delivered alone, later or at once).
    let pics = format!("/open-apis/bot/v2/hook/{PICS}");
    let image = json!({"msg_type": "image", "content": {"image_key": "img_v2_1"}});
    let share = json!({"msg_type": "share_chat", "content": {"share_chat_id": "oc_1"}});
    assert_eq!(post(&d, &pics, &image).await.2, success());
    assert_eq!(post(&d, &pics, &share).await.2, success());
    let s = d.robot_status("pics").await;
    let taken = s["pending"].as_u64().unwrap_or(0) + s["alerts_delivered"].as_u64().unwrap();
    assert_eq!(taken, 2, "{s}");
    // A full queue (max_pending = 1): 503, Retry-After, Feishu's "frequency limited".
    let open = format!("/open-apis/bot/v2/hook/{OPEN}");
    assert_eq!(post(&d, &open, &text).await.2, success());
    let (status, retry, a) = post(&d, &open, &text).await;
    assert_eq!(status, 503);
    assert!(retry.is_some());
    assert_eq!(a["code"], 11232);
    assert!(
        a["msg"]
            .as_str()
            .unwrap()
            .starts_with("frequency limited (sluice: not stored")
    );
    assert_eq!(a["data"], json!({}));
    d.stop().await;
}
