//! `POST /v1/robots/{name}/test`: a test message through the running daemon's own rate guard,
//! end to end against the fake DingTalk robot (signatures, keywords, the rolling limit).
//! Durations are scaled down in the config (3 per 2 s).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{Daemon, num};
use support::fake_robot::{FakeRobot, Fault, Limits};

const SECRET: &str = "SECtest0123456789";
const TOKEN: &str = "ops-token";

fn limits() -> Limits {
    Limits {
        limit: 3,
        period: Duration::from_secs(2),
        lockout: Duration::from_secs(3),
    }
}

fn config(fake: &FakeRobot) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[defaults]
window = "50ms"
rate_limit = 3
rate_period = "2s"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
throttle_backoff = "1s"
blocked_probe = "30s"
request_timeout = "2s"

[robots.ops]
webhook = "{webhook}"
secret = "{SECRET}"
keywords = ["告警"]
"#,
        webhook = fake.webhook(TOKEN),
    )
}

async fn start() -> (FakeRobot, Daemon, tempfile::TempDir) {
    let fake = FakeRobot::start(limits()).await;
    fake.add_robot(TOKEN, Some(SECRET), &["告警"]);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake), dir.path()).await;
    (fake, d, dir)
}

/// Presses "send test" for `robot`: status, `Retry-After`, body.
async fn press(d: &Daemon, robot: &str) -> (u16, Option<String>, Value) {
    let r = reqwest::Client::new()
        .post(d.url(&format!("/v1/robots/{robot}/test")))
        .send()
        .await
        .expect("POST test");
    let status = r.status().as_u16();
    let retry = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_test_on_an_idle_robot_sends_one_marked_message_counted_in_its_limit() {
    let (fake, d, _dir) = start().await;
    let before = num(&d.robot_status("ops").await, "sends_in_period");
    let (status, _, body) = press(&d, "ops").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sent"], true, "{body}");
    assert_eq!(body["outcome"], "ok", "{body}");
    assert_eq!(body["robot"], "ops", "{body}");
    assert_eq!(body["rate_limit"], 3, "{body}");
    assert_eq!(num(&body, "sends_in_period"), before + 1, "{body}");
    let got = fake.accepted(TOKEN);
    assert_eq!(got.len(), 1, "{got:?}");
    let m = &got[0];
    assert!(m.title.contains("告警") && m.text.contains("告警"), "{m:?}");
    assert!(m.title.contains("test") && m.text.contains("test"), "{m:?}");
    let s = d.robot_status("ops").await;
    assert_eq!(num(&s, "sends_in_period"), before + 1, "{s}");
    d.stop().await;
}

#[tokio::test]
async fn pressing_test_at_the_limit_is_refused_and_never_breaks_the_rolling_window() {
    let (fake, d, _dir) = start().await;
    // The first press finds the robot idle, so at least one test goes out whatever the race
    // with the digests below does to the later ones.
    let (status, _, body) = press(&d, "ops").await;
    assert_eq!(status, 200, "{body}");
    let mut sent = 1;
    // Alerts compete for the same permits meanwhile.
    let (s, _) = d
        .post(&json!([{"robot": "ops", "title": "disk full", "severity": "critical"}]))
        .await;
    assert_eq!(s, 202);
    let mut refused = 0;
    let end = Instant::now() + Duration::from_millis(2500);
    let mut i = 0;
    while Instant::now() < end {
        let (status, retry, body) = press(&d, "ops").await;
        match status {
            200 => {
                assert_eq!(body["sent"], true, "{body}");
                sent += 1;
            }
            429 => {
                refused += 1;
                assert_eq!(body["sent"], false, "{body}");
                assert!(
                    body["error"].as_str().unwrap().contains("no send permit"),
                    "{body}"
                );
                assert!(num(&body, "sends_in_period") <= 3, "{body}");
                assert!(body["next_permit_ms"].as_i64().unwrap() > 0, "{body}");
                let secs: u64 = retry.expect("Retry-After on a 429").parse().unwrap();
                assert!((1..=2).contains(&secs), "Retry-After {secs}");
            }
            _ => panic!("unexpected answer {status}: {body}"),
        }
        i += 1;
        if i % 4 == 0 {
            d.post(&json!([{"robot": "ops", "title": format!("more {i}")}]))
                .await;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(sent >= 1, "no test message went out");
    assert!(refused >= 10, "only {refused} refusals");
    let window = limits().period;
    assert!(
        fake.max_in_window(TOKEN, window) <= 3,
        "{} requests in one rolling window",
        fake.max_in_window(TOKEN, window)
    );
    assert_eq!(fake.throttled(TOKEN), 0, "the fake robot throttled us");
    let tests = fake
        .accepted(TOKEN)
        .iter()
        .filter(|m| m.title.contains("test message"))
        .count();
    assert_eq!(
        tests, sent,
        "the fake saw {tests} test messages, we were told {sent}"
    );
    d.stop().await;
}

#[tokio::test]
async fn an_unknown_robot_is_422_listing_the_configured_ones() {
    let (fake, d, _dir) = start().await;
    let (status, _, body) = press(&d, "nope").await;
    assert_eq!(status, 422, "{body}");
    let e = body["error"].as_str().unwrap();
    assert!(e.contains("nope") && e.contains("ops"), "{e}");
    assert!(fake.requests(TOKEN).is_empty());
    d.stop().await;
}

#[tokio::test]
async fn a_blocked_robot_answers_409_with_its_reason_and_nothing_is_sent() {
    let (fake, d, _dir) = start().await;
    fake.set_sticky(TOKEN, Some(Fault::Errcode(300001, "token is not exist")));
    d.post(&json!([{"robot": "ops", "title": "disk full"}]))
        .await;
    d.wait_status("ops", Duration::from_secs(3), |s| s["state"] == "blocked")
        .await;
    let before = fake.requests(TOKEN).len();
    let (status, _, body) = press(&d, "ops").await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["sent"], false, "{body}");
    assert_eq!(body["state"], "blocked", "{body}");
    assert!(body["said"].as_str().unwrap().contains("300001"), "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("blocked"),
        "{body}"
    );
    assert!(body["until_ms"].as_i64().is_some(), "{body}");
    assert_eq!(
        fake.requests(TOKEN).len(),
        before,
        "a test went to a blocked robot"
    );
    d.stop().await;
}

/// `sluice test ROBOT` asks the running daemon: one accepted, the next at once refused for want
/// of a permit, with the daemon's words.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_sends_a_test_through_the_daemon() {
    let (fake, d, _dir) = start().await;
    let server = d.addr.to_string();
    let (code, out, err) =
        support::daemon::run_cli(&["test", "ops", "--server", &server], None, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("accepted the test message"), "{out}");
    let (code, _, err) = support::daemon::run_cli(&["test", "ops", "--server", &server], None, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("429") && err.contains("no send permit"),
        "{err}"
    );
    assert_eq!(fake.accepted(TOKEN).len(), 1);
    d.stop().await;
}
