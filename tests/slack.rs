//! End to end with Slack incoming webhooks: sluice (real store in a temp dir) → real HTTP on
//! 127.0.0.1 → the fake Slack webhook, which enforces its rate limit with 429 and
//! `Retry-After`. The limit is scaled down in the config (4 per 500 ms instead of one a second).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::daemon::{Daemon, footer_of, num};
use support::fake_slack::{Accepted, FakeSlack, Limits};

const HOOK: &str = "T0001ABCD/B0002EFGH/s3cr3tS3CR3Ts3cr3tXYZ";

fn limits() -> Limits {
    Limits {
        limit: 4,
        period: Duration::from_millis(500),
        retry_after_secs: 3,
    }
}

/// One Slack robot `eng` plus whatever `extra` adds to its table.
fn config(fake: &FakeSlack, window: &str, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "{{listen}}"
data_dir = "{{data_dir}}"

[robots.eng]
provider = "slack"
webhook = "{webhook}"
window = "{window}"
rate_limit = 4
rate_period = "500ms"
retry_initial_backoff = "100ms"
retry_max_backoff = "400ms"
blocked_probe = "400ms"
request_timeout = "2s"
{extra}
"#,
        webhook = fake.webhook(HOOK),
    )
}

async fn fake() -> FakeSlack {
    let fake = FakeSlack::start(limits()).await;
    fake.add_hook(HOOK);
    fake
}

fn alerts(prefix: &str, n: usize) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let severity = ["critical", "error", "warning", "info"][i % 4];
                json!({
                    "robot": "eng",
                    "title": format!("{prefix} {i} <@U999> & <!channel>"),
                    "severity": severity,
                    "labels": {"job": format!("dq_{}", i % 7), "owner": "alice"},
                })
            })
            .collect(),
    )
}

fn total(accepted: &[Accepted]) -> u64 {
    accepted.iter().map(|a| footer_of(&a.text).1).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_10000_alerts_reaches_slack_in_a_few_messages_without_a_429() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "mention_user_ids = [\"U0123ABCD\"]\n\n[owners.owner]\nalice = [\"W0456EFGH\"]\n";
    let d = Daemon::start(&config(&fake, "500ms", extra), dir.path()).await;
    let mut posts = Vec::new();
    for c in 0..10 {
        let body = alerts(&format!("check c{c}"), 1_000);
        let url = d.url("/v1/alerts");
        posts.push(tokio::spawn(async move {
            support::daemon::post_json(&reqwest::Client::new(), &url, &body).await
        }));
    }
    for p in posts {
        let (status, body) = p.await.unwrap();
        assert_eq!(status, 202, "{body}");
    }
    fake.wait_for(HOOK, Duration::from_secs(20), |a| total(a) >= 10_000)
        .await;
    let got = fake.accepted(HOOK);
    assert_eq!(total(&got), 10_000, "every alert counted exactly once");
    assert!(got.len() <= 6, "{} messages for one burst", got.len());
    assert_eq!(fake.throttled(HOOK), 0, "never a 429");
    for a in &got {
        let chars = a.text.chars().count();
        assert!(chars <= 8_000, "a text of {chars} characters");
        // The robot's and the owner's member ids mention them; alert content mentions no one.
        assert!(a.text.contains("<@U0123ABCD> <@W0456EFGH>"), "{}", a.text);
        assert!(!a.text.contains("<@U999>") && !a.text.contains("<!channel>"));
        assert!(
            a.text.contains("&lt;＠U999&gt; &amp; &lt;!channel&gt;"),
            "{}",
            a.text
        );
        assert!(a.text.starts_with("*eng: "), "{}", a.text);
    }
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_is_waited_out_for_its_retry_after_not_the_throttle_backoff() {
    let fake = fake().await;
    fake.force_429(HOOK, 1);
    let dir = tempfile::tempdir().unwrap();
    // A throttle backoff far longer than the test: only `Retry-After: 3` can explain a resend.
    let d = Daemon::start(
        &config(&fake, "50ms", "throttle_backoff = \"10m\""),
        dir.path(),
    )
    .await;
    let start = Instant::now();
    d.post(&alerts("slow down", 3)).await;
    fake.wait_for(HOOK, Duration::from_secs(8), |a| total(a) >= 3)
        .await;
    let requests = fake.requests(HOOK);
    assert_eq!(fake.throttled(HOOK), 1, "{requests:?}");
    assert_eq!(
        requests.len(),
        2,
        "one 429, then the digest, nothing in between"
    );
    let waited = requests[1].duration_since(requests[0]);
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(6),
        "resent after {waited:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(8));
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_webhook_blocks_the_robot_and_keeps_its_alerts() {
    let fake = fake().await;
    fake.revoke(HOOK);
    let dir = tempfile::tempdir().unwrap();
    let d = Daemon::start(&config(&fake, "50ms", ""), dir.path()).await;
    d.post(&alerts("revoked", 10)).await;
    let s = d
        .wait_status("eng", Duration::from_secs(3), |s| s["state"] == "blocked")
        .await;
    assert!(
        s["last_error"].as_str().unwrap().contains("invalid_token"),
        "{s}"
    );
    assert_eq!(num(&s, "outbox"), 1);
    assert_eq!(num(&s, "dead"), 0, "a robot-level error never dead-letters");
    // The status never shows the webhook's secret path.
    let (_, status) = d.get("/v1/status").await;
    assert!(!status.to_string().contains("s3cr3t"), "{status}");
    d.stop().await;
}

#[test]
fn check_prints_a_slack_sample_with_the_webhook_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sluice.toml");
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:9\"\ndata_dir = \"{}\"\n\n[robots.eng]\nprovider = \"slack\"\nwebhook = \"https://hooks.slack.com/services/{HOOK}\"\nmention_user_ids = [\"U0123ABCD\"]\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (code, out, err) =
        support::daemon::run_cli(&["check", "-c", path.to_str().unwrap()], None, &[]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(!out.contains("s3cr3t"), "{out}");
    assert!(
        out.contains("webhook https://hooks.slack.com/services/***/***/***"),
        "{out}"
    );
    assert!(out.contains("provider slack"), "{out}");
    // The sample is mrkdwn: bold lines for headings, • for entries, the mention, the footer.
    assert!(out.contains("  | *Critical · "), "{out}");
    assert!(out.contains("  | • "), "{out}");
    assert!(out.contains("<@U0123ABCD>"), "{out}");
    assert!(out.contains("  | sluice digest #1 · "), "{out}");

    // Mobiles cannot mention anyone on Slack: the config says so.
    std::fs::write(
        &path,
        format!(
            "[server]\nlisten = \"127.0.0.1:9\"\ndata_dir = \"{}\"\n\n[robots.eng]\nprovider = \"slack\"\nwebhook = \"https://hooks.slack.com/services/{HOOK}\"\nmention_mobiles = [\"13800000000\"]\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let (code, out, err) =
        support::daemon::run_cli(&["check", "-c", path.to_str().unwrap()], None, &[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        err.contains("robots.eng.mention_mobiles: Slack mentions people by member id"),
        "{err}"
    );
}
