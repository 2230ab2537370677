use std::time::Duration;

use serde_json::{Value, json};

use super::dingtalk::TIMESTAMP_TOLERANCE_MS;
use super::*;
use crate::provider::dingtalk::sign;

const SECRET: &str = "SEC0123456789abcdef";

fn dingtalk_limits(limit: usize, period_ms: u64, lockout_ms: u64) -> Limits {
    Limits {
        windows: vec![Window::new(limit, Duration::from_millis(period_ms))],
        lockout: Some(Duration::from_millis(lockout_ms)),
    }
}

async fn dingtalk_sim() -> Simulator {
    let sim = Simulator::start().await.unwrap();
    let limits = dingtalk_limits(20, 60_000, 600_000);
    sim.add_robot(Platform::DingTalk, "tok", Some(SECRET), limits);
    sim
}

async fn post(sim: &Simulator, token: &str, ts: i64, sign: &str, text: &str) -> Value {
    let body = json!({"msgtype": "markdown", "markdown": {"title": "t", "text": text}});
    reqwest::Client::new()
        .post(sim.webhook(Platform::DingTalk, token))
        .query(&[("timestamp", ts.to_string()), ("sign", sign.to_string())])
        .json(&body)
        .send()
        .await
        .expect("POST")
        .json()
        .await
        .expect("JSON answer")
}

async fn post_signed(sim: &Simulator, token: &str, text: &str) -> i64 {
    let ts = crate::unix_ms();
    post(sim, token, ts, &sign(SECRET, ts), text).await["errcode"]
        .as_i64()
        .expect("errcode")
}

/// POSTs `body` to a robot's webhook: (HTTP status, `Retry-After`, body as text).
async fn post_json(url: &str, body: &Value) -> (u16, Option<String>, String) {
    let answer = reqwest::Client::new()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("POST");
    let status = answer.status().as_u16();
    let retry = answer
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    (status, retry, answer.text().await.expect("a body"))
}

#[tokio::test]
async fn a_bad_signature_or_stale_timestamp_gets_310000() {
    let sim = dingtalk_sim().await;
    let ts = crate::unix_ms();

    let wrong_secret = post(&sim, "tok", ts, &sign("SECother", ts), "x").await;
    assert_eq!(wrong_secret["errcode"], 310000);
    assert_eq!(wrong_secret["errmsg"], "sign not match");

    let stale = ts - 2 * TIMESTAMP_TOLERANCE_MS;
    let old = post(&sim, "tok", stale, &sign(SECRET, stale), "x").await;
    assert_eq!(old["errcode"], 310000);
    assert_eq!(old["errmsg"], "invalid timestamp");

    let unknown = post(&sim, "nope", ts, &sign(SECRET, ts), "x").await;
    assert_eq!(unknown["errcode"], 300005);

    assert_eq!(
        post(&sim, "tok", ts, &sign(SECRET, ts), "x").await["errcode"],
        0
    );
    assert_eq!(sim.refused("tok"), 2);
    assert_eq!(sim.accepted("tok"), 1);
    assert_eq!(sim.messages("tok")[0].text, "x");
    sim.stop().await;
}

#[tokio::test]
async fn the_21st_message_in_a_period_gets_130101_and_mutes_the_robot() {
    let sim = dingtalk_sim().await;
    for i in 0..20 {
        assert_eq!(
            post_signed(&sim, "tok", &format!("m{i}")).await,
            0,
            "message {i}"
        );
    }
    assert_eq!(post_signed(&sim, "tok", "m20").await, 130101);
    assert_eq!(post_signed(&sim, "tok", "m21").await, 130101);
    assert_eq!(sim.accepted("tok"), 20);
    assert_eq!(sim.throttled("tok"), 2);
    assert_eq!(sim.busiest("tok"), vec![20]);
    sim.stop().await;
}

#[tokio::test]
async fn a_muted_robot_accepts_again_after_the_lockout() {
    // 2 a second, muted 2 s: wide margins for a busy machine.
    let sim = Simulator::start().await.unwrap();
    sim.add_robot(
        Platform::DingTalk,
        "tok",
        Some(SECRET),
        dingtalk_limits(2, 1_000, 2_000),
    );
    assert_eq!(post_signed(&sim, "tok", "1").await, 0);
    assert_eq!(post_signed(&sim, "tok", "2").await, 0);
    assert_eq!(post_signed(&sim, "tok", "too fast").await, 130101);
    // The period is over, but the lockout is not.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(post_signed(&sim, "tok", "muted").await, 130101);
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(post_signed(&sim, "tok", "back").await, 0);
    assert_eq!(sim.throttled("tok"), 2);
    assert_eq!(sim.accepted("tok"), 3);
    sim.stop().await;
}

#[tokio::test]
async fn feishu_checks_the_body_s_signature_and_holds_both_windows() {
    use crate::provider::feishu::sign as feishu_sign;
    let sim = Simulator::start().await.unwrap();
    // 3 a minute and 2 a second, unscaled: the minute's window fills first at the third.
    let limits = Limits {
        windows: vec![
            Window::new(3, Duration::from_secs(60)),
            Window::new(2, Duration::from_secs(1)),
        ],
        lockout: None,
    };
    sim.add_robot(Platform::Feishu, "hook", Some("s"), limits);
    let url = sim.webhook(Platform::Feishu, "hook");
    let post = |text: &str, secret: &str| {
        let ts = crate::unix_ms() / 1000;
        json!({
            "timestamp": ts.to_string(),
            "sign": feishu_sign(secret, ts),
            "msg_type": "post",
            "content": {"post": {"zh_cn": {"title": "T", "content": [
                [{"tag": "text", "text": text}],
                [{"tag": "a", "text": "full alert list", "href": "http://x/1"}],
            ]}}},
        })
    };
    let (status, _, body) = post_json(&url, &post("bad", "other")).await;
    assert_eq!((status, body.contains("19021")), (200, true), "{body}");
    let (_, _, body) = post_json(&url, &post("one", "s")).await;
    assert!(body.contains("\"code\":0"), "{body}");
    post_json(&url, &post("two", "s")).await;
    // The second's window is full: 11232 with HTTP 200.
    let (status, _, body) = post_json(&url, &post("three", "s")).await;
    assert_eq!((status, body.contains("11232")), (200, true), "{body}");
    // A bot without a secret takes unsigned requests, and a body it cannot read is 9499 with
    // HTTP 400.
    sim.add_robot(Platform::Feishu, "open", None, Platform::Feishu.limits());
    let open = sim.webhook(Platform::Feishu, "open");
    let (status, _, body) = post_json(&open, &json!({"msg_type": "text"})).await;
    assert_eq!((status, body.contains("9499")), (400, true), "{body}");
    let m = sim.messages("hook");
    assert_eq!(
        (m[0].title.as_str(), m[0].text.as_str()),
        ("T", "one\nfull alert list (http://x/1)")
    );
    assert_eq!((sim.throttled("hook"), sim.accepted("hook")), (1, 2));
    assert_eq!(sim.busiest("hook"), vec![2, 2]);
    sim.stop().await;
}

#[tokio::test]
async fn wecom_takes_markdown_up_to_4096_bytes_and_answers_45009_over_its_limit() {
    let sim = Simulator::start().await.unwrap();
    let limits = Limits {
        windows: vec![Window::new(2, Duration::from_secs(60))],
        lockout: None,
    };
    sim.add_robot(Platform::WeCom, "key", None, limits);
    let url = sim.webhook(Platform::WeCom, "key");
    let md = |c: &str| json!({"msgtype": "markdown", "markdown": {"content": c}});
    let full = "字".repeat(1365) + "a";
    assert_eq!(full.len(), 4096);
    let (_, _, body) = post_json(&url, &md(&format!("{full}b"))).await;
    assert!(body.contains("40058"), "{body}");
    let (_, _, body) = post_json(&url, &md(&full)).await;
    assert!(body.contains("\"errcode\":0"), "{body}");
    post_json(&url, &md("second")).await;
    let (_, _, body) = post_json(&url, &md("third")).await;
    assert!(body.contains("45009"), "{body}");
    let (_, _, body) = post_json(&sim.webhook(Platform::WeCom, "nope"), &md("x")).await;
    assert!(body.contains("93000"), "{body}");
    assert_eq!(
        (
            sim.accepted("key"),
            sim.throttled("key"),
            sim.refused("key")
        ),
        (2, 1, 1)
    );
    sim.stop().await;
}

#[tokio::test]
async fn slack_answers_ok_and_a_429_with_retry_after() {
    let sim = Simulator::start().await.unwrap();
    let limits = Limits {
        windows: vec![Window::new(1, Duration::from_secs(60))],
        lockout: None,
    };
    sim.add_robot(Platform::Slack, "T1/B2/x3", None, limits);
    let url = sim.webhook(Platform::Slack, "T1/B2/x3");
    assert!(url.ends_with("/services/T1/B2/x3"), "{url}");
    let text = json!({"text": "*ops*: 1 alert", "mrkdwn": true});
    assert_eq!(post_json(&url, &text).await, (200, None, "ok".into()));
    let (status, retry, body) = post_json(&url, &text).await;
    assert_eq!((status, body.as_str()), (429, "rate_limited"));
    let retry: u64 = retry.expect("Retry-After").parse().unwrap();
    assert!((59..=60).contains(&retry), "{retry}");
    let (status, _, body) = post_json(&url, &json!({"blocks": []})).await;
    assert_eq!(
        (status, body.as_str()),
        (429, "rate_limited"),
        "the window first"
    );
    // A DingTalk robot's token is no Slack hook.
    let other = sim.webhook(Platform::Slack, "T1/B2/none");
    assert_eq!(post_json(&other, &text).await.0, 404);
    assert_eq!(sim.messages("T1/B2/x3")[0].text, "*ops*: 1 alert");
    sim.stop().await;
}

/// sluice's own sender for each platform reaches the simulator's robot on that platform's URL,
/// as the demo configures it, and is taken.
#[tokio::test]
async fn sluice_s_own_senders_are_accepted_on_every_platform() {
    let sim = Simulator::start().await.unwrap();
    let client = crate::provider::http_client().unwrap();
    for platform in Platform::ALL {
        let token = match platform {
            Platform::Slack => "T0/B0/tok".to_string(),
            _ => format!("tok-{}", platform.name()),
        };
        let secret = platform.signs().then_some(SECRET);
        sim.add_robot(platform, &token, secret, platform.limits());
        let secret_line = secret.map_or(String::new(), |s| format!("secret = \"{s}\"\n"));
        let text = format!(
            "[robots.r]\nprovider = \"{}\"\nwebhook = \"{}\"\n{secret_line}",
            platform.name(),
            sim.webhook(platform, &token)
        );
        let config = crate::config::Config::parse(&text, "test", &|_| None).unwrap();
        let robot = &config.robots["r"];
        let provider = crate::provider::Provider::new(&robot.target(), None, Ok(&client)).unwrap();
        assert_eq!(
            provider.ping(&robot.target()).await,
            crate::provider::Outcome::Ok,
            "{platform:?}"
        );
        let m = sim.messages(&token);
        assert!(
            m.len() == 1 && m[0].text.contains("sluice can reach robot"),
            "{platform:?}: {m:?}"
        );
        assert_eq!(sim.refused(&token), 0, "{platform:?}");
    }
    sim.stop().await;
}
